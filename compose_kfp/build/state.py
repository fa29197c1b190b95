"""The observed state the planner reads: value types only (frozen dataclasses, no I/O).

:func:`compose_kfp.build.observe.observe` fills an :class:`Observed` from registries and
disk; :func:`compose_kfp.planner.plan` reads it without any further I/O, so planner tests
build these values in memory. Digests are ``sha256:<hex>`` strings, sizes are bytes,
platforms are ``os/arch[/variant]`` strings; every sequence is ordered base layer first.
This module imports nothing that opens a file or a socket.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from compose_kfp.oci.image import Manifest

#: Manifest annotation recording how many of the manifest's layers belong to the base image.
BASE_LAYERS_ANNOTATION = "io.compose-kfp.base-layers"


@dataclasses.dataclass(frozen=True)
class BaseState:
    """The base image for one platform.

    Attributes:
        reference: as written in kfp.toml (``python:3.11-slim``, ``oci:base:v1``, ``scratch``).
        platform: ``os/arch[/variant]``.
        digest: manifest digest for this platform (``None`` for ``scratch``).
        top_digest: what the reference resolved to (an index or the manifest itself).
        manifest: raw manifest JSON text (``None`` for ``scratch``).
        config: raw config JSON text (``None`` for ``scratch``).
        registry, repository: where a registry base lives (for mounting its layers); else ``None``.
        local_store: blob store folder of a local base (``oci:``, ``dir:``, ``docker-archive:``); else ``None``.
        local_flat: whether ``local_store`` uses skopeo ``dir:`` naming.
    """

    reference: str
    platform: str
    digest: str | None = None
    top_digest: str | None = None
    manifest: str | None = None
    config: str | None = None
    registry: str | None = None
    repository: str | None = None
    local_store: str | None = None
    local_flat: bool = False

    @property
    def layers(self) -> tuple[tuple[str, int, str], ...]:
        """``(digest, size, media type)`` of the base layers, base first."""
        if self.manifest is None:
            return ()
        m = Manifest.from_bytes(self.manifest.encode())
        return tuple((d.digest, d.size, d.media_type) for d in m.layers)


@dataclasses.dataclass(frozen=True)
class LayerState:
    """One desired layer for one image and platform, as found on this machine.

    Attributes:
        name, kind: from the :class:`~compose_kfp.build.images.LayerSpec`.
        key: the cache key (LayerPlan key; ``sha256:...`` requirements key for ``requirements``).
        digest, diff_id, size: the built layer, or ``None`` when only apply can know (requirements changed).
        media_type: the layer media type.
        local: the blob is in the project's blob store.
        files: ``(in-image path, size, mtime_ns)`` of its regular files (empty for ``requirements``).
        note: a reason known at observation (``requirements changed``).
    """

    name: str
    kind: str
    key: str
    digest: str | None
    diff_id: str | None
    size: int | None
    media_type: str
    local: bool = True
    files: tuple[tuple[str, int, int], ...] = ()
    note: str = ""


@dataclasses.dataclass(frozen=True)
class PlatformImageState:
    """What the destination holds for one platform of the current image.

    Attributes:
        manifest: manifest digest; ``config``: config digest; ``base``: base manifest digest it was built on.
        layers: ``(layer name or None, digest, size)`` of the layers above the base, base first.
        base_layers: number of base layers at the bottom of the manifest.
    """

    manifest: str
    config: str
    base: str | None
    layers: tuple[tuple[str | None, str, int], ...]
    base_layers: int = 0


@dataclasses.dataclass(frozen=True)
class CurrentImage:
    """The image currently at the destination for one desired image.

    Attributes:
        digest: top-level digest (index or manifest) recorded in kfp.lock or found by tag; ``None``: nothing known.
        source: ``"lock"``, ``"tag:<tag>"`` or ``""``.
        exists: the destination holds ``digest``.
        platforms: platform -> :class:`PlatformImageState` (from the destination, else from kfp.lock).
    """

    digest: str | None = None
    source: str = ""
    exists: bool = False
    platforms: Mapping[str, PlatformImageState] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Observed:
    """Everything the planner needs, read once.

    Attributes:
        bases: platform -> :class:`BaseState`.
        layers: ``(image name, platform)`` -> the image's :class:`LayerState` list, base first.
        current: image name -> :class:`CurrentImage`.
        remote_blobs: digests the destination repository holds (of those asked about).
        tags: tag -> digest it points at in the destination (``None``: absent), for every tag asked.
        file_records: layer digest -> file stamps recorded when it was built (for reasons).
        rendered: path relative to the project -> sha256 hex of the rendered file on disk.
        same_registry: the base registry is the destination registry (base layers can be mounted).
        warnings: reproducibility warnings of the requirements files (:func:`requirements_warnings`), in order.
    """

    bases: Mapping[str, BaseState]
    layers: Mapping[tuple[str, str], tuple[LayerState, ...]]
    current: Mapping[str, CurrentImage]
    remote_blobs: frozenset[str] = frozenset()
    tags: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    file_records: Mapping[str, tuple[tuple[str, int, int], ...]] = dataclasses.field(default_factory=dict)
    rendered: Mapping[str, str] = dataclasses.field(default_factory=dict)
    same_registry: bool = False
    warnings: tuple[str, ...] = ()


__all__ = ["BASE_LAYERS_ANNOTATION", "BaseState", "CurrentImage", "LayerState", "Observed", "PlatformImageState"]
