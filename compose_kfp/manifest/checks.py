"""Checks of a validated ``kfp.toml`` that need more than one key: files that must exist,
names that tasks refer to, cycles in the task graph, names too long for the output folder.

They report through a callback or :class:`~compose_kfp.manifest.problems.Problems`
(key path, message) and raise nothing themselves; :func:`compose_kfp.manifest.load.load_manifest`
runs them and raises the collected problems as one :class:`~compose_kfp.errors.ConfigError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Container, Literal, Mapping, Sequence

from compose_kfp.manifest.problems import Problems, did_you_mean
from compose_kfp.schema import LayerConfig, Manifest, ParamRef, TaskOutputRef


def check_files(manifest: Manifest, root: Path, problems: "Problems", *, check_layers: bool,
                skip: Container[tuple] = ()) -> None:
    """Add to ``problems`` each file or folder named by the manifest that is missing under ``root``.

    Checked, in this order: the sources of ``[[image.layers]]`` (``paths`` entries, which may be
    files or folders; ``requirements`` files; ``rootfs`` folders), only when ``check_layers``
    (the default layers are known to exist); each step's ``function`` file, ``component`` file,
    ``requirements`` file and own layers, and a step layer named like an ``[image]`` layer;
    ``render.templates`` (a folder). A missing name gets a "did you mean" from its folder's entries.
    Key paths in ``skip`` (already reported as outside the project, :mod:`.fences`) are not checked.
    """
    def must_exist(loc: tuple, rel: str, kind: Literal["file", "dir", "any"]) -> None:
        if loc in skip:
            return
        p = (root / Path(rel).expanduser())
        ok = p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists()
        if ok:
            return
        what = {"file": "file", "dir": "folder", "any": "file or folder"}[kind]
        parent = p.parent
        hint = ""
        if parent.is_dir():
            hint = did_you_mean(p.name, sorted(c.name for c in parent.iterdir()))
        problems.add(loc, f"{what} {rel!r} not found (relative to {root}){hint}")

    def layers(prefix: tuple, items: Sequence[LayerConfig]) -> None:
        for i, layer in enumerate(items):
            for j, entry in enumerate(layer.paths):
                src = entry if isinstance(entry, str) else entry.src
                loc = prefix + (i, "paths", j) + (() if isinstance(entry, str) else ("src",))
                must_exist(loc, src, "any")
            if layer.requirements:
                must_exist(prefix + (i, "requirements"), layer.requirements, "file")
            if layer.rootfs:
                must_exist(prefix + (i, "rootfs"), layer.rootfs, "dir")

    if check_layers:
        layers(("image", "layers"), manifest.image.layers or ())
    image_layer_names = {layer.name for layer in manifest.image.layers or ()}
    for name, step in manifest.steps.items():
        if step.function_file:
            must_exist(("steps", name, "function"), step.function_file, "file")
        if step.notebook:
            must_exist(("steps", name, "notebook"), step.notebook, "file")
        if step.component:
            must_exist(("steps", name, "component"), step.component, "file")
        if step.requirements:
            must_exist(("steps", name, "requirements"), step.requirements, "file")
        layers(("steps", name, "layers"), step.layers)
        for i, layer in enumerate(step.layers):
            if layer.name in image_layer_names:
                problems.add(("steps", name, "layers", i, "name"),
                             f"layer {layer.name!r} is already a layer of [image]; give it another name")
    if manifest.render.templates:
        must_exist(("render", "templates"), manifest.render.templates, "dir")


def check_output_names(manifest: Manifest, root: Path, report: Callable[[tuple, str], None]) -> None:
    """Report (``report(("steps", name), message)``) each step whose component file name,
    ``<step>.yaml`` in ``<render.output_dir>/components/``, is longer than the file system of the output
    folder (or of its nearest existing ancestor) allows for a name (``PC_NAME_MAX`` bytes, 255 when it does not
    say), so that ``validate`` refuses it rather than ``apply`` failing after the build. Task names name no file.
    """
    from compose_kfp.build.staging import name_max  # stdlib only; the limit of the file system at hand

    folder = (root / Path(manifest.render.output_dir).expanduser()) / "components"
    limit = name_max(folder)
    for name in manifest.steps:
        size = len(os.fsencode(f"{name}.yaml"))
        if size > limit:
            report(("steps", name), f"step name of {len(name)} characters is too long: its component file "
                                    f"components/<step>.yaml would have a name of {size} bytes, and the file "
                                    f"system of render.output_dir allows {limit}; use a step name of at most "
                                    f"{limit - len('.yaml')} characters")


def check_references(manifest: Manifest, report: Callable[[tuple, str], None]) -> None:
    """Check what ``[pipeline]`` refers to by name, from the manifest alone.

    Reports (by calling ``report(key_path, message)``, in file order) a task whose ``step``
    is not a ``[steps.*]`` entry, a ``{param = ...}`` not in ``pipeline.params``, a
    ``{task = ...}`` or ``after`` entry that is not a task (or is the task itself), and
    each cycle in the task graph, named as ``a -> b -> a``. Output names and types
    need the step interfaces and are checked by :func:`compose_kfp.pipeline.graph.resolve_graph`.
    """
    pipeline = manifest.pipeline
    if pipeline is None:
        return
    tasks = pipeline.tasks
    for name, task in tasks.items():
        base = ("pipeline", "tasks", name)
        if task.step not in manifest.steps:
            known = ", ".join(manifest.steps) or "none are defined"
            report(base + ("step",), f"no step called {task.step!r}{did_you_mean(task.step, manifest.steps)} "
                                     f"(steps: {known})")
        for arg, value in task.args.items():
            loc = base + ("args", arg)
            if isinstance(value, ParamRef) and value.param not in pipeline.params:
                report(loc + ("param",), f"no pipeline parameter called {value.param!r}"
                                         f"{did_you_mean(value.param, pipeline.params)}; define it in "
                                         f"[pipeline.params]")
            elif isinstance(value, TaskOutputRef):
                if value.task == name:
                    report(loc + ("task",), "a task cannot take its own output")
                elif value.task not in tasks:
                    report(loc + ("task",), f"no task called {value.task!r}{did_you_mean(value.task, tasks)}")
        for i, dep in enumerate(task.after):
            if dep == name:
                report(base + ("after", i), "a task cannot run after itself")
            elif dep not in tasks:
                report(base + ("after", i), f"no task called {dep!r}{did_you_mean(dep, tasks)}")
    for cycle in find_cycles({n: [d for d in t.dependencies() if d in tasks and d != n] for n, t in tasks.items()}):
        report(("pipeline", "tasks", cycle[0]),
               f"the tasks form a cycle: {' -> '.join(cycle + [cycle[0]])}; remove one of these "
               "dependencies (an argument `{ task = ... }` or an `after` entry)")


def check_image_format(manifest: Manifest, report: Callable[[tuple, str], None]) -> None:
    """An ``oci:PATH`` destination is an OCI image layout, which holds OCI media types: ``image.format =
    "docker"`` with it is reported at ``image.format`` (skopeo and umoci find no Docker v2.2 manifest there).
    Without ``image.format`` such a destination gets OCI manifests, a Docker base converted
    (:func:`compose_kfp.planner.plan`)."""
    image = manifest.image
    if image.format == "docker" and image.repository.startswith("oci:"):
        report(("image", "format"), f"Docker v2.2 manifests cannot go into the OCI image layout "
                                    f"{image.repository!r} (image.repository): skopeo and umoci read only OCI "
                                    "media types there. Remove `format` (the layout gets OCI manifests, a Docker "
                                    "base converted as `skopeo copy` does) or push to a registry")


def find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Cycles in a dependency graph (``node -> nodes it depends on``), each as a list of nodes.

    Each cycle is reported once, starting at its node that comes first in ``deps``'s order,
    following dependency edges; nodes absent from ``deps`` are ignored. Deterministic.
    """
    order = {n: i for i, n in enumerate(deps)}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, ()):
            if dep not in order:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    start = min(range(len(cycle)), key=lambda k: order[cycle[k]])
                    cycles.append(cycle[start:] + cycle[:start])
            elif state.get(dep) is None:
                visit(dep)
        stack.pop()
        state[node] = 2

    for n in deps:
        if n not in state:
            visit(n)
    return cycles
