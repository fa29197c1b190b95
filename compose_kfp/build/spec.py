"""The desired images as values: :class:`ImageSpec` and :class:`LayerSpec`, and how an image's config ``Env`` is made.

:func:`compose_kfp.build.images.desired_images` makes these from ``kfp.toml``; the planner
(:mod:`compose_kfp.planner`), observation and apply read them. This module is pure: it imports
nothing that opens a file, runs a process or opens a socket (the planner depends on that).

In-image layout of what compose-kfp adds (absolute POSIX paths): the runtime package under
:data:`IMAGE_ROOT`, installed requirements under :data:`SITE_PACKAGES`, their console scripts
under :data:`BIN_DIR`; :func:`image_env` puts them on ``PYTHONPATH`` / ``PATH``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Mapping, Sequence

from compose_kfp import runtime as runtime_mod
from compose_kfp.oci.image import merge_env

#: Name of the shared image.
MAIN_IMAGE = "main"
#: Name of the runtime layer.
RUNTIME_LAYER = "runtime"
#: The lock file ``apply`` writes next to ``kfp.toml`` (:mod:`compose_kfp.build.lock`).
LOCK_NAME = "kfp.lock"
#: Manifest layer annotation naming the ``kfp.toml`` layer a blob was built from.
LAYER_NAME_ANNOTATION = "io.compose-kfp.layer"

#: Root of everything compose-kfp puts into an image.
IMAGE_ROOT = "/opt/compose-kfp"
#: Where the installed packages go in the image.
SITE_PACKAGES = "/opt/compose-kfp/site-packages"
#: Where console scripts of the installed packages go in the image.
BIN_DIR = "/opt/compose-kfp/bin"
#: ``PYTHONPATH`` entries, in order: the in-image runtime (``/opt/compose-kfp/compose_kfp``) first, so that a
#: requirement can never shadow it, then the dependency layer.
PYTHONPATH_ENTRIES: tuple[str, ...] = (IMAGE_ROOT, SITE_PACKAGES)
#: Image config ``Env`` changes of the dependency layer: variable -> entries to put in front of the base value
#: (``:``-separated). Data for the image builder; see :func:`merge_image_env`.
DEPS_ENV: Mapping[str, tuple[str, ...]] = {"PYTHONPATH": PYTHONPATH_ENTRIES, "PATH": (BIN_DIR,)}
#: Default ``PATH`` of a Linux image whose config sets none (the one docker and podman use).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

LayerKind = Literal["runtime", "paths", "requirements", "rootfs"]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer to build, as the manifest describes it (no file read yet).

    Attributes:
        name: layer name shown in plans (unique within an image).
        kind: ``runtime``, ``paths``, ``requirements`` or ``rootfs``.
        includes: for ``paths``: ``(absolute local source, absolute in-image destination)`` pairs, in order.
        files: for ``runtime``: in-image path -> absolute local file, sorted.
        requirements: for ``requirements``: the absolute requirements file installed: the file kfp.toml names,
            or its lock when ``compose-kfp lock`` wrote one from the file as it is now (then ``locked_from``).
        locked_from: for ``requirements`` installed from a current lock: the absolute file kfp.toml names.
        rootfs: for ``rootfs``: the absolute root file system folder (goes to ``/``).
        ignore: extra gitignore-style patterns.
        exclude: absolute real paths below the sources that are left out whatever the patterns say: what
            compose-kfp writes there (the output folder, ``kfp.lock``, ``.compose-kfp``, an ``oci:`` layout;
            :func:`compose_kfp.manifest.fences.exclusions`). Usually empty.
        where: the key path in ``kfp.toml`` (``image.layers.1``), for messages.
    """

    name: str
    kind: LayerKind
    includes: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    requirements: str | None = None
    locked_from: str | None = None
    rootfs: str | None = None
    ignore: tuple[str, ...] = ()
    where: str = ""
    exclude: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """One image to build and push.

    Attributes:
        name: ``main`` or the step name.
        steps: the ``function`` steps that run in this image, in manifest order.
        repository: destination (registry repository or ``oci:PATH``).
        base: base reference as written (``python:3.11-slim``, ``oci:PATH[:TAG]``, ``dir:PATH``,
            ``docker-archive:PATH``, ``scratch``).
        platforms: ``os/arch[/variant]`` strings, in manifest order.
        layers: base first (see the module docstring).
        env: ``image.env`` items in manifest order (applied last, they win).
        workdir, labels, user: from ``[image]``.
        tags: ``image.tags`` (the content-derived tag is added by the planner).
        format: ``oci``, ``docker`` or ``None`` (the base's).
        compression: ``gzip`` or ``zstd``.
        python, libc, index_url, extra_index_urls: the dependency layer target.
    """

    name: str
    steps: tuple[str, ...]
    repository: str
    base: str
    platforms: tuple[str, ...]
    layers: tuple[LayerSpec, ...]
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/app"
    labels: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    tags: tuple[str, ...] = ()
    format: str | None = None
    compression: str = "gzip"
    python: str | None = None
    libc: str = "glibc"
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()

    @property
    def has_runtime(self) -> bool:
        """Whether the runtime layer is part of this image."""
        return any(layer.kind == "runtime" for layer in self.layers)

    @property
    def has_deps(self) -> bool:
        """Whether a dependency layer is part of this image."""
        return any(layer.kind == "requirements" for layer in self.layers)


def step_images(images: tuple[ImageSpec, ...]) -> dict[str, str]:
    """Step name -> the name of the image it runs in (function steps only)."""
    return {step: image.name for image in images for step in image.steps}


def image_env(image: ImageSpec, base_env: list[str] | None) -> list[str]:
    """The config ``Env`` of ``image`` on a base whose ``Env`` is ``base_env`` (``KEY=VALUE`` strings).

    Order of application (module docstring): the base, then ``PYTHONPATH`` (runtime:
    ``/opt/compose-kfp``; dependency layer: also ``/opt/compose-kfp/site-packages``) and ``PATH``
    (``/opt/compose-kfp/bin`` with a dependency layer) put in front of the base values, then ``image.env``.
    """
    env = list(base_env or ())
    if image.has_deps:
        env = merge_image_env(env)
    elif image.has_runtime:
        env = prepend_env(env, "PYTHONPATH", [runtime_mod.RUNTIME_PREFIX])
    return merge_env(env, dict(image.env))


def labels_of(image: ImageSpec) -> Mapping[str, str]:
    """``[image] labels`` as a dict."""
    return dict(image.labels)


def merge_image_env(config_env: Sequence[str] | None) -> list[str]:
    """The base image's ``Env`` with the dependency layer's entries put in front (:data:`DEPS_ENV`).

    ``PYTHONPATH`` becomes ``/opt/compose-kfp:/opt/compose-kfp/site-packages[:<base value>]`` and ``PATH``
    ``/opt/compose-kfp/bin:<base value or DEFAULT_PATH>``. Entries already present are not repeated; other
    variables keep their order; new variables are appended.
    """
    env = list(config_env or ())
    for var, entries in DEPS_ENV.items():
        env = prepend_env(env, var, entries, default=DEFAULT_PATH if var == "PATH" else "")
    return env


def prepend_env(env: Sequence[str], var: str, entries: Sequence[str], *, default: str = "") -> list[str]:
    """A copy of an image config ``Env`` list (``KEY=value``) with ``entries`` put first in the ``:``-separated
    variable ``var``; entries already in it move to the front instead of repeating. ``default`` is the value
    assumed when ``var`` is not set (e.g. :data:`DEFAULT_PATH`); a new variable is appended at the end."""
    out = list(env)
    index = next((i for i, item in enumerate(out) if item.split("=", 1)[0] == var), None)
    current = out[index].split("=", 1)[1] if index is not None and "=" in out[index] else default
    rest = [p for p in current.split(":") if p and p not in entries]
    value = f"{var}={':'.join([*entries, *rest])}"
    if index is None:
        out.append(value)
    else:
        out[index] = value
    return out


__all__ = ["BIN_DIR", "DEFAULT_PATH", "DEPS_ENV", "IMAGE_ROOT", "ImageSpec", "LAYER_NAME_ANNOTATION", "LOCK_NAME",
           "LayerKind", "LayerSpec", "MAIN_IMAGE", "PYTHONPATH_ENTRIES", "RUNTIME_LAYER", "SITE_PACKAGES", "image_env", "labels_of",
           "merge_image_env", "prepend_env", "step_images"]
