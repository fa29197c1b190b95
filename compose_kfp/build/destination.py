"""The destination of the images: a registry repository or an OCI image layout (``repository = "oci:PATH"``).

:func:`destination_for` returns a :class:`Destination` for ``image.repository``: a
:class:`RegistryDestination` (``registry/repository``: the distribution API through a
:class:`~compose_kfp.build.registries.Registries` client) or a :class:`LayoutDestination`
(``oci:PATH``: an OCI image layout folder, relative paths against the project folder). Both
answer the same reads (observation: blobs present, manifests, tags); no other module looks at
the form of ``image.repository``.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING

from compose_kfp.build.credentials import keychain_for
from compose_kfp.build.registries import Registries, registry_ref
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.image import ACCEPT_MANIFESTS

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project

#: The prefix of an ``image.repository`` that is an OCI image layout folder.
LAYOUT_PREFIX = "oci:"


def destination_host(repository: str) -> str | None:
    """The registry host (``host[:port]``) ``image.repository`` pushes to, or ``None`` for an ``oci:PATH`` layout.

    Raises:
        InvalidReference (:mod:`compose_kfp.oci.errors`): a registry repository that is not a valid reference.
    """
    return None if repository.startswith(LAYOUT_PREFIX) else registry_ref(repository).api_host


def registries_for(project: Project) -> Registries:
    """Registry clients with the project's ``[image.auth]`` keychain and ``image.insecure`` setting.

    Credentials from environment variables (``username_env`` / ``password_env``) go to the destination's
    registry host only (:func:`destination_host`; none for an ``oci:PATH`` layout).

    Raises:
        ConfigError: ``[image.auth]`` is inconsistent (:func:`~compose_kfp.build.credentials.keychain_for`).
    """
    image = project.manifest.image
    host = destination_host(image.repository)
    return Registries(keychain_for(image.auth, project.root, host), insecure=True if image.insecure else None)


class Destination(abc.ABC):
    """Where the images of a project go, read side: what is there already.

    Attributes:
        repository: ``image.repository`` as written.
        host: the registry host (``host[:port]``) for a registry repository, ``None`` for a layout.
    """

    repository: str
    host: str | None = None

    @abc.abstractmethod
    def has_blob(self, digest: str) -> bool:
        """Whether the destination holds blob ``digest`` (``sha256:<hex>``)."""

    @abc.abstractmethod
    def get_manifest(self, ref: str) -> tuple[bytes, str, str] | None:
        """``(raw bytes, media type or "", digest)`` of the manifest or index ``ref`` (a tag or a digest) names,
        or ``None`` when there is none. Raises DistributionError / Unauthorized (registry) on other failures."""

    @abc.abstractmethod
    def tag_digest(self, tag: str) -> str | None:
        """The digest tag ``tag`` points at, or ``None`` when the tag does not exist."""


class RegistryDestination(Destination):
    """A repository in a registry (distribution API), read through ``registries``."""

    def __init__(self, repository: str, registries: Registries):
        self.repository = repository
        ref = registry_ref(repository)
        self.host, self.repo = ref.api_host, ref.repository
        self.registries = registries
        self.client = registries.client(self.host)

    def has_blob(self, digest: str) -> bool:
        return self.client.blob_exists(self.repo, digest)

    def get_manifest(self, ref: str) -> tuple[bytes, str, str] | None:
        try:
            return self.client.get_manifest(self.repo, ref, ACCEPT_MANIFESTS)
        except oci_errors.NotFound:
            return None

    def tag_digest(self, tag: str) -> str | None:
        head = self.client.head_manifest(self.repo, tag, ACCEPT_MANIFESTS)
        return head[1] if head else None


class LayoutDestination(Destination):
    """An OCI image layout folder (``oci:PATH``); it may not exist yet (then it holds nothing)."""

    def __init__(self, repository: str, root: Path):
        from compose_kfp.oci.layout import OCILayout

        self.repository = repository
        self.path = layout_path(repository, root)
        self.layout = OCILayout(self.path) if (self.path / "oci-layout").is_file() else None

    def has_blob(self, digest: str) -> bool:
        return self.layout is not None and self.layout.store.has(digest)

    def get_manifest(self, ref: str) -> tuple[bytes, str, str] | None:
        if self.layout is None:
            return None
        if ref.startswith("sha256:"):
            if not self.layout.store.has(ref):
                return None
            raw = self.layout.store.read_bytes(ref)
            return raw, "", ref
        desc = self.layout.tags().get(ref)
        if desc is None:
            return None
        return self.layout.store.read_bytes(desc.digest), desc.media_type, desc.digest

    def tag_digest(self, tag: str) -> str | None:
        if self.layout is None:
            return None
        desc = self.layout.tags().get(tag)
        return desc.digest if desc else None


def is_local_destination(repository: str) -> bool:
    """Whether ``image.repository`` is an ``oci:PATH`` layout rather than a registry."""
    return repository.startswith(LAYOUT_PREFIX)


def layout_path(repository: str, root: Path) -> Path:
    """The folder of an ``oci:PATH`` destination, relative paths against the project ``root``."""
    return (root / repository[len(LAYOUT_PREFIX):]).resolve()


def destination_for(repository: str, root: Path, registries: Registries) -> Destination:
    """The :class:`Destination` ``image.repository`` names: a :class:`LayoutDestination` for ``oci:PATH``, else a
    :class:`RegistryDestination` (its client is made now; nothing is sent yet).

    Raises:
        InvalidReference (:mod:`compose_kfp.oci.errors`): a registry repository that is not a valid reference.
    """
    if repository.startswith(LAYOUT_PREFIX):
        return LayoutDestination(repository, root)
    return RegistryDestination(repository, registries)


__all__ = ["Destination", "LAYOUT_PREFIX", "LayoutDestination", "RegistryDestination", "destination_for",
           "destination_host", "layout_path", "registries_for"]
