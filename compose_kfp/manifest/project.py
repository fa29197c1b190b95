"""A compose-kfp project: the validated ``kfp.toml``, its step components and its task graph.

:func:`load_project` is what every command that needs more than the manifest
calls. It fails early, at load time, for everything that can be known without
the network: the manifest itself (:func:`compose_kfp.manifest.load.load_manifest`),
each step's interface (:func:`compose_kfp.steps.components.step_components`: missing
function, untyped parameter, broken component file) and the pipeline's task
graph (:func:`compose_kfp.pipeline.graph.resolve_graph`: a missing step, task, output or
param, a type mismatch between an output and the input it feeds, a cycle).

The starting ``kfp.toml`` of ``compose-kfp init`` is written by :mod:`compose_kfp.manifest.scaffold`.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from compose_kfp.errors import ComposeError, ConfigError
from compose_kfp.manifest.load import LoadedManifest, load_manifest
from compose_kfp.schema import Manifest

if TYPE_CHECKING:  # imported for types only; the modules are imported when a project is loaded
    from compose_kfp.steps.component import ComponentSpec
    from compose_kfp.pipeline.graph import TaskGraph

log = logging.getLogger(__name__)

__all__ = ["Project", "load_project"]


@dataclass(frozen=True)
class Project:
    """A loaded and checked project.

    Attributes:
        loaded: the manifest with its path, folder and value sources.
        components: step name -> its component interface, in ``[steps.*]`` order
            (images not pinned yet: ``ComponentSpec.image`` is ``None`` for Python steps).
        graph: the resolved task graph, or ``None`` when kfp.toml has no ``[pipeline]``.
    """

    loaded: LoadedManifest
    components: Mapping[str, "ComponentSpec"]
    graph: "TaskGraph | None"

    @property
    def manifest(self) -> Manifest:
        """The validated ``kfp.toml`` model."""
        return self.loaded.manifest

    @property
    def root(self) -> Path:
        """The project folder (the folder of ``kfp.toml``); relative paths in the manifest start here."""
        return self.loaded.root

    @property
    def path(self) -> Path:
        """The absolute path of ``kfp.toml``."""
        return self.loaded.path


def load_project(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Project:
    """Load ``kfp.toml`` (a file, or a folder holding one; default: the current directory) and check it whole.

    ``env`` and ``overrides`` are passed to :func:`compose_kfp.manifest.load.load_manifest`
    (``None`` env means ``os.environ``; overrides are dotted key paths from the command line).

    Raises:
        ConfigError: the manifest is invalid, or a task refers to a missing step, task,
            output or param, an output's type does not fit the input it feeds, or the
            tasks form a cycle. Messages name ``kfp.toml``, the line where it can be
            found, and the key path.
        ConfigError: a ``function`` step's file does not land at ``<image.workdir>/<file>`` in the
            image the step runs in (it is in no layer's ``paths``/``rootfs``, or ``.kfpignore``/a
            layer's ``ignore`` leaves it out): the in-image runtime could not find it.
        StepError: a step's function or component file cannot be turned into a component.
    """
    loaded = load_manifest(Path(path) if path is not None else Path.cwd(), env=env, overrides=overrides)
    from compose_kfp.steps.components import step_components
    from compose_kfp.pipeline.graph import resolve_graph

    try:
        _check_step_files(loaded.manifest, loaded.root)
        components = step_components(loaded.manifest, loaded.root)
        graph = None
        if loaded.manifest.pipeline is not None:
            graph = resolve_graph(loaded.manifest, components, manifest_path=loaded.path, where=loaded.where)
    except ComposeError as error:
        located = loaded.locate(error)
        if located is error:
            raise
        raise located from error
    log.debug("loaded %s: %d steps, %d tasks", loaded.display_path, len(components),
              len(graph.tasks) if graph else 0)
    return Project(loaded=loaded, components=components, graph=graph)


def _check_step_files(manifest: Manifest, root: Path) -> None:
    """Every ``function`` step's file must be in the image the step runs in, where the runtime looks for it.

    The in-image runtime runs ``python3 -m compose_kfp.runtime FILE:FUNCTION`` in ``image.workdir``
    with ``FILE`` relative to the folder of kfp.toml, so ``FILE`` must be at ``<workdir>/FILE`` in
    that image (:func:`compose_kfp.build.images.desired_images`: the main image's layers, plus the step's
    own layers for a step with its own image). A ``paths`` entry covers it when its destination is
    that path or a folder above it whose local source holds the file and the ignore patterns
    (``.kfpignore`` and the layer's ``ignore``, as :func:`compose_kfp.oci.layer.plan_layer` applies
    them) keep it; a ``rootfs`` layer covers it when its tree has the path.

    Raises:
        ConfigError: ``steps.<name>.function: ...`` naming the file, the in-image path and every
            layer/path considered.
    """
    from compose_kfp.build.images import desired_images

    for image in desired_images(manifest, root):
        for step_name in image.steps:
            step = manifest.steps[step_name]
            file = step.step_file or ""
            target = posixpath.normpath(posixpath.join(image.workdir, file))
            considered: list[str] = []
            reasons: list[str] = []
            found = False
            for layer in image.layers:
                if layer.kind == "paths":
                    for src, dst in layer.includes:
                        considered.append(f"{layer.where} ({layer.name}): {_shown(src, root)} -> {dst}")
                        verdict = _include_has(layer, src, dst, target, root)
                        if verdict is True:
                            found = True
                        elif verdict:
                            reasons.append(verdict)
                elif layer.kind == "rootfs" and layer.rootfs:
                    considered.append(f"{layer.where} ({layer.name}): rootfs {_shown(layer.rootfs, root)} -> /")
                    verdict = _include_has(layer, layer.rootfs, "/", target, root, rootfs=True)
                    if verdict is True:
                        found = True
                    elif verdict:
                        reasons.append(verdict)
            if found:
                continue
            image_name = "the main image" if image.name == "main" else f"the step's own image {image.name!r}"
            why = "; ".join(reasons) if reasons else "no layer puts a file there"
            listed = "; ".join(considered) if considered else "none (the image has no paths/rootfs layer)"
            key, runs = (("function", f"compose_kfp.runtime {file}:{step.function_name}") if step.function else
                         ("notebook", f"compose_kfp.runtime.notebook {file}"))
            raise ConfigError(
                f"steps.{step_name}.{key}: {file} is not in {image_name} at {target}, where the step runs it "
                f"(`python3 -m {runs}` in "
                f"{image.workdir}): {why}. Layers considered: {listed}. " + (
                    "Change the ignore patterns so that they keep it" if reasons else
                    f"Add the file (or its folder) to a layer's paths, e.g. paths = [{json.dumps(file.split('/')[0])}]")
            )


def _shown(path: str, root: Path) -> str:
    """``path`` relative to the project folder when it is inside it (posix), else as given."""
    try:
        return Path(path).relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return path


def _include_has(layer: Any, src: str, dst: str, target: str, root: Path, *, rootfs: bool = False) -> "bool | str":
    """Whether the include ``src -> dst`` of ``layer`` puts a file at the in-image path ``target``.

    Returns ``True`` when it does, ``False`` when it does not cover ``target`` at all, or a
    string saying why a covering include leaves the file out (missing source, ignored).
    """
    from compose_kfp.oci.layer import load_ignore_spec

    src_path = Path(src)
    if not src_path.is_dir():
        if dst.endswith("/"):
            dst = posixpath.join(dst, src_path.name)
        return posixpath.normpath(dst) == target and src_path.is_file()
    dst = posixpath.normpath(dst)
    if dst == target:
        return False  # a folder where the file should be
    inside = target[len(dst):].lstrip("/") if dst == "/" or target.startswith(dst + "/") else None
    if not inside:
        return False
    local = src_path / inside
    if not local.is_file():
        return False
    shown = f"{layer.where} ({layer.name})"
    if rootfs:
        spec = load_ignore_spec(None, layer.ignore, use_ignore_file=False, default_ignores=False)
        prefix = ""
    else:
        spec = load_ignore_spec(root, layer.ignore)
        prefix = ""
        real, ctx = os.path.realpath(src), os.path.realpath(root)
        if real.startswith(ctx.rstrip("/") + "/"):
            rel_root = Path(os.path.relpath(real, ctx)).as_posix()
            if not spec.match_file(rel_root + "/"):
                prefix = rel_root + "/"
    parts = inside.split("/")
    for i in range(len(parts)):
        rel = prefix + "/".join(parts[: i + 1]) + ("/" if i < len(parts) - 1 else "")
        if spec.match_file(rel):
            return (f"{shown} would put {_shown(str(local), root)} there, but its ignore patterns "
                    f"(.kfpignore, the layer's `ignore` or the default ignores) leave out {rel}")
    return True
