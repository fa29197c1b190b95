"""Desired images: what ``kfp.toml`` says the images should be, before anything is read from a registry.

:func:`desired_images` turns a validated manifest into a tuple of :class:`ImageSpec`:

- ``main``: the shared image, used by every ``function`` step without own
  ``requirements``/``layers`` (and built even when no step uses it, so a
  project can be just an image);
- one image per ``function`` step that has its own ``requirements`` or
  ``layers``, named after the step. It has every layer of ``main`` first (the
  very same blobs: the layers are specified identically, so their cache keys and
  digests are equal) and its own layers on top.

Layer order, base first:

1. ``runtime``: the in-image step runtime (:func:`compose_kfp.runtime.runtime_files`)
   under ``/opt/compose-kfp``. **Decision:** it is added to an image exactly when a
   ``function`` step runs in it (so always for step images, and for ``main``
   when some function step uses it). An image that no Python step runs in
   (a base image built from a ``rootfs`` layer, say) stays free of it. It sits
   lowest because it changes only when compose-kfp is upgraded.
2. the ``[[image.layers]]`` entries, in file order (``requirements`` via
   :mod:`compose_kfp.build.deps`, ``paths``, ``rootfs``);
3. for a step image: ``<step>-deps`` for the step's ``requirements``, then the
   step's ``layers``.

Config: the base image's ``Env``, then ``PYTHONPATH``/``PATH`` additions
(``/opt/compose-kfp`` for the runtime; ``/opt/compose-kfp/site-packages`` and
``/opt/compose-kfp/bin`` when there is a dependency layer), then ``image.env``
(wins). ``workdir``, ``labels`` and ``user`` come from ``[image]``.

This module reads nothing but the manifest (no file system, no network): the
observation of files happens in :mod:`compose_kfp.build.observe`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal, Mapping

from compose_kfp.build import deps as deps_mod
from compose_kfp import runtime as runtime_mod
from compose_kfp.errors import ConfigError
from compose_kfp.oci.image import merge_env
from compose_kfp.schema import LayerConfig, Manifest, PathMapping

log = logging.getLogger(__name__)

#: Name of the shared image.
MAIN_IMAGE = "main"
#: Name of the runtime layer.
RUNTIME_LAYER = "runtime"
#: Manifest layer annotation naming the ``kfp.toml`` layer a blob was built from.
LAYER_NAME_ANNOTATION = "io.compose-kfp.layer"

LayerKind = Literal["runtime", "paths", "requirements", "rootfs"]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer to build, as the manifest describes it (no file read yet).

    Attributes:
        name: layer name shown in plans (unique within an image).
        kind: ``runtime``, ``paths``, ``requirements`` or ``rootfs``.
        includes: for ``paths``: ``(absolute local source, absolute in-image destination)`` pairs, in order.
        files: for ``runtime``: in-image path -> absolute local file, sorted.
        requirements: for ``requirements``: the absolute requirements file.
        rootfs: for ``rootfs``: the absolute root file system folder (goes to ``/``).
        ignore: extra gitignore-style patterns.
        where: the key path in ``kfp.toml`` (``image.layers[1]``), for messages.
    """

    name: str
    kind: LayerKind
    includes: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    requirements: str | None = None
    rootfs: str | None = None
    ignore: tuple[str, ...] = ()
    where: str = ""


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


def runtime_layer() -> LayerSpec:
    """The runtime layer: every file of :func:`compose_kfp.runtime.runtime_files` at its in-image path."""
    files = tuple((dst, str(src)) for dst, src in runtime_mod.runtime_files().items())
    return LayerSpec(name=RUNTIME_LAYER, kind="runtime", files=files, where="(runtime)")


def _layer_spec(layer: LayerConfig, root: Path, workdir: str, where: str) -> LayerSpec:
    def resolve(rel: str) -> str:
        return str((root / Path(rel).expanduser()).resolve())

    if layer.requirements:
        return LayerSpec(layer.name, "requirements", requirements=resolve(layer.requirements),
                         ignore=tuple(layer.ignore), where=where)
    if layer.rootfs:
        return LayerSpec(layer.name, "rootfs", rootfs=resolve(layer.rootfs), ignore=tuple(layer.ignore), where=where)
    includes = []
    for i, entry in enumerate(layer.paths):
        if isinstance(entry, PathMapping):
            src, dst = entry.src, entry.dst
        else:
            src, dst = entry, None
        if dst is None:
            rel = Path(src)
            if rel.is_absolute() or ".." in rel.parts:
                raise ConfigError(
                    f"{where}.paths[{i}]: {src!r} is outside the project folder; give it a destination "
                    f'with {{ src = "{src}", dst = "/abs/path" }}'
                )
            dst = workdir.rstrip("/") + "/" + rel.as_posix().strip("/")
        includes.append((resolve(src), dst))
    return LayerSpec(layer.name, "paths", includes=tuple(includes), ignore=tuple(layer.ignore), where=where)


def desired_images(manifest: Manifest, root: Path | str) -> tuple[ImageSpec, ...]:
    """The images ``manifest`` describes: ``main`` first, then step images in manifest order.

    Args:
        manifest: a validated manifest (``image.layers`` filled with defaults by ``load_manifest``).
        root: the folder of ``kfp.toml``; relative paths are resolved against it.

    Raises:
        ConfigError: a step layer's name collides with a shared layer's name, or a plain path leaves the project.
    """
    root = Path(root).resolve()
    img = manifest.image
    shared = tuple(_layer_spec(layer, root, img.workdir, f"image.layers[{i}]")
                   for i, layer in enumerate(img.layers or ()))
    function_steps = [n for n, s in manifest.steps.items() if s.function]
    own = [n for n in function_steps if manifest.steps[n].requirements or manifest.steps[n].layers]
    main_steps = tuple(n for n in function_steps if n not in own)
    common = dict(
        repository=img.repository, base=img.base, platforms=tuple(img.platforms),
        env=tuple(img.env.items()), workdir=img.workdir, labels=tuple(sorted(img.labels.items())),
        user=img.user, tags=tuple(img.tags), format=img.format, compression=img.compression,
        python=img.python, libc=img.libc, index_url=img.index_url, extra_index_urls=tuple(img.extra_index_urls),
    )
    runtime = (runtime_layer(),)
    images = [ImageSpec(name=MAIN_IMAGE, steps=main_steps, layers=(runtime if main_steps else ()) + shared,
                        **common)]
    shared_names = {layer.name for layer in shared} | {RUNTIME_LAYER}
    for name in own:
        step = manifest.steps[name]
        extra: list[LayerSpec] = []
        if step.requirements:
            extra.append(LayerSpec(f"{name}-deps", "requirements",
                                   requirements=str((root / step.requirements).resolve()),
                                   where=f"steps.{name}.requirements"))
        extra += [_layer_spec(layer, root, img.workdir, f"steps.{name}.layers[{i}]")
                  for i, layer in enumerate(step.layers)]
        for layer in extra:
            if layer.name in shared_names:
                raise ConfigError(
                    f"{layer.where}: layer name {layer.name!r} is already used by [[image.layers]] "
                    "(or the runtime layer); give the step's layer another name"
                )
        if name == MAIN_IMAGE:
            raise ConfigError(f"steps.{name}: a step with its own image cannot be called {MAIN_IMAGE!r}; rename it")
        images.append(ImageSpec(name=name, steps=(name,), layers=runtime + shared + tuple(extra), **common))
    return tuple(images)


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
        env = deps_mod.merge_image_env(env)
    elif image.has_runtime:
        env = deps_mod.prepend_env(env, "PYTHONPATH", [runtime_mod.RUNTIME_PREFIX])
    return merge_env(env, dict(image.env))


def labels_of(image: ImageSpec) -> Mapping[str, str]:
    """``[image] labels`` as a dict."""
    return dict(image.labels)


__all__ = ["ImageSpec", "LAYER_NAME_ANNOTATION", "LayerSpec", "MAIN_IMAGE", "RUNTIME_LAYER", "desired_images",
           "image_env", "labels_of", "runtime_layer", "step_images"]
