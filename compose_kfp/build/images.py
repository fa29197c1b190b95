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
   ``function`` or ``notebook`` step runs in it (so always for step images, and for ``main``
   when some such step uses it). An image that no Python step runs in
   (a base image built from a ``rootfs`` layer, say) stays free of it. It sits
   lowest because it changes only when compose-kfp is upgraded.
1b. ``notebook-runtime``: when a ``notebook`` step runs in the image, a requirements layer of
   :data:`compose_kfp.steps.notebook.NOTEBOOK_REQUIREMENTS` (papermill, nbclient, ipykernel), built and cached
   like any requirements layer; it too changes only with compose-kfp.
2. the ``[[image.layers]]`` entries, in file order (``requirements`` via
   :mod:`compose_kfp.build.deps`, ``paths``, ``rootfs``);
3. for a step image: ``<step>-deps`` for the step's ``requirements``, then the
   step's ``layers``.

Config: the base image's ``Env``, then ``PYTHONPATH``/``PATH`` additions
(``/opt/compose-kfp`` for the runtime; ``/opt/compose-kfp/site-packages`` and
``/opt/compose-kfp/bin`` when there is a dependency layer), then ``image.env``
(wins). ``workdir``, ``labels`` and ``user`` come from ``[image]``.

Outputs and state are never layer inputs: a ``paths``/``rootfs`` layer whose sources hold the output
folder, ``kfp.lock``, ``.compose-kfp`` or an ``oci:`` destination layout leaves them out
(:attr:`~compose_kfp.build.spec.LayerSpec.exclude`, from :func:`compose_kfp.manifest.fences.exclusions`),
so an ``apply`` never changes what the next plan reads. A layer whose sources hold none of them is
specified as it always was (same key, same digest).

This module reads nothing but the manifest and the real paths of what it names (no file content, no
network): the observation of files happens in :mod:`compose_kfp.build.observe`. The value types
(:class:`~compose_kfp.build.spec.ImageSpec`, :class:`~compose_kfp.build.spec.LayerSpec`) and the
config ``Env`` rules are in :mod:`compose_kfp.build.spec`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from compose_kfp import runtime as runtime_mod
from compose_kfp.build.requirements import lock_status
from compose_kfp.build.spec import MAIN_IMAGE, RUNTIME_LAYER, ImageSpec, LayerSpec
from compose_kfp.errors import ConfigError
from compose_kfp.manifest.fences import exclusions, owned_paths
from compose_kfp.schema import LayerConfig, Manifest, PathMapping
from compose_kfp.steps.notebook import NOTEBOOK_LAYER, NOTEBOOK_REQUIREMENTS

log = logging.getLogger(__name__)


def runtime_layer() -> LayerSpec:
    """The runtime layer: every file of :func:`compose_kfp.runtime.runtime_files` at its in-image path."""
    files = tuple((dst, str(src)) for dst, src in runtime_mod.runtime_files().items())
    return LayerSpec(name=RUNTIME_LAYER, kind="runtime", files=files, where="(runtime)")


def requirements_layer(name: str, requirements: str, where: str, ignore: tuple[str, ...] = ()) -> LayerSpec:
    """The spec of a layer installing the absolute file ``requirements``: from its lock (``<stem>.lock.txt``)
    when ``compose-kfp lock`` wrote that from the file as it is now, as ``poetry install`` and ``uv sync`` use
    a current lock (:func:`compose_kfp.build.requirements.lock_status`), else from the file itself. Reads the
    requirements files only when such a lock exists.

    Raises:
        ConfigError: a lock exists and the requirements file (or one it includes) cannot be read.
    """
    lock, status = lock_status(requirements)
    if status == "current":
        return LayerSpec(name, "requirements", requirements=str(lock), locked_from=requirements, ignore=ignore,
                         where=where)
    return LayerSpec(name, "requirements", requirements=requirements, ignore=ignore, where=where)


def notebook_layer() -> LayerSpec:
    """The requirements layer that lets an image run notebook steps (papermill, nbclient, ipykernel)."""
    return LayerSpec(name=NOTEBOOK_LAYER, kind="requirements", requirements=str(NOTEBOOK_REQUIREMENTS),
                     where="(notebook runtime)")


def _layer_spec(layer: LayerConfig, root: Path, workdir: str, where: str, owned: tuple[str, ...] = ()) -> LayerSpec:
    def resolve(rel: str) -> str:
        return str((root / Path(rel).expanduser()).resolve())

    if layer.requirements:
        return requirements_layer(layer.name, resolve(layer.requirements), where, tuple(layer.ignore))
    if layer.rootfs:
        rootfs = resolve(layer.rootfs)
        return LayerSpec(layer.name, "rootfs", rootfs=rootfs, ignore=tuple(layer.ignore), where=where,
                         exclude=exclusions([rootfs], owned))
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
                    f"{where}.paths.{i}: {src!r} is outside the project folder; give it a destination "
                    f'with {{ src = "{src}", dst = "/abs/path" }}'
                )
            dst = workdir.rstrip("/") + "/" + rel.as_posix().strip("/")
        includes.append((resolve(src), dst))
    return LayerSpec(layer.name, "paths", includes=tuple(includes), ignore=tuple(layer.ignore), where=where,
                     exclude=exclusions([src for src, _ in includes], owned))


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
    owned = owned_paths(manifest, root)
    shared = tuple(_layer_spec(layer, root, img.workdir, f"image.layers.{i}", owned)
                   for i, layer in enumerate(img.layers or ()))
    function_steps = [n for n, s in manifest.steps.items() if s.builds_image]
    own = [n for n in function_steps if manifest.steps[n].requirements or manifest.steps[n].layers]
    main_steps = tuple(n for n in function_steps if n not in own)
    common = dict(
        repository=img.repository, base=img.base, platforms=tuple(img.platforms),
        env=tuple(img.env.items()), workdir=img.workdir, labels=tuple(sorted(img.labels.items())),
        user=img.user, tags=tuple(img.tags), format=img.format, compression=img.compression,
        python=img.python, libc=img.libc, index_url=img.index_url, extra_index_urls=tuple(img.extra_index_urls),
    )
    runtime = (runtime_layer(),)
    notebook = (notebook_layer(),)

    def runtimes(steps: tuple[str, ...]) -> tuple[LayerSpec, ...]:
        if not steps:
            return ()
        return runtime + (notebook if any(manifest.steps[n].notebook for n in steps) else ())

    images = [ImageSpec(name=MAIN_IMAGE, steps=main_steps, layers=runtimes(main_steps) + shared, **common)]
    shared_names = {layer.name for layer in shared} | {RUNTIME_LAYER, NOTEBOOK_LAYER}
    for layer in shared:
        if layer.name == NOTEBOOK_LAYER:
            raise ConfigError(f"{layer.where}: layer name {NOTEBOOK_LAYER!r} is reserved for the layer that runs "
                              "notebook steps; give the layer another name")
    for name in own:
        step = manifest.steps[name]
        extra: list[LayerSpec] = []
        if step.requirements:
            extra.append(requirements_layer(f"{name}-deps", str((root / step.requirements).resolve()),
                                            f"steps.{name}.requirements"))
        extra += [_layer_spec(layer, root, img.workdir, f"steps.{name}.layers.{i}", owned)
                  for i, layer in enumerate(step.layers)]
        for layer in extra:
            if layer.name in shared_names:
                raise ConfigError(
                    f"{layer.where}: layer name {layer.name!r} is already used by [[image.layers]] "
                    "(or the runtime layer); give the step's layer another name"
                )
        if name == MAIN_IMAGE:
            raise ConfigError(f"steps.{name}: a step with its own image cannot be called {MAIN_IMAGE!r}; rename it")
        images.append(ImageSpec(name=name, steps=(name,), layers=runtimes((name,)) + shared + tuple(extra), **common))
    return tuple(images)


__all__ = ["desired_images", "notebook_layer", "runtime_layer"]
