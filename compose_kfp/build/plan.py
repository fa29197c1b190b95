"""Planning a project: ONE complete plan, made in one place (:func:`plan_project`).

observe (:func:`compose_kfp.build.observe.observe`: base, destination, layers, rendered files on disk)
-> pin the third-party component images (:func:`compose_kfp.build.pins.pin_images`)
-> the pure planner (:func:`compose_kfp.planner.plan`) -> the digests of the files rendering would write
(:func:`compose_kfp.pipeline.outputs.rendered_digests`; they pin the image digests the planner computed, so
they come after it) -> :func:`compose_kfp.planner.with_files` -> the tasks against the cache keys recorded in
``.compose-kfp/task-keys.json`` (:func:`task_cache`) -> whether kfp.lock would change (with
``frozen``: refused, :class:`~compose_kfp.errors.StaleError`). Nothing else calls these steps in sequence.

:func:`load_saved_plan` reads a plan saved by ``plan --out`` for ``apply --plan``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from compose_kfp import planner as planner_mod
from compose_kfp.build import lock as lock_mod
from compose_kfp.build.destination import registries_for
from compose_kfp.build.images import desired_images
from compose_kfp.build.observe import observe
from compose_kfp.build.pins import component_images, pin_images
from compose_kfp.build.registries import Registries
from compose_kfp.build.statedir import ProjectState, in_state_dir, state_dir_error
from compose_kfp.errors import ConfigError, StaleError
from compose_kfp.pipeline.outputs import (managed_prefixes, pinned_graph, render_warnings, rendered_digests,
                                          rendered_names)
from compose_kfp.planner import Plan, TaskCache

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project
    from compose_kfp.build.destination import StreamedUploads

#: Progress callback: ``(event, name or digest, done bytes, total bytes)``.
Progress = Callable[[str, str, int, int], None]


def plan_project(project: Project, *, registries: Registries | None = None, frozen: bool = False,
                 installer: Any = None, progress: Progress | None = None,
                 streams: StreamedUploads | None = None) -> Plan:
    """The complete plan of ``project``, in one call (module docstring): observe, pin, plan, rendered-file digests,
    ``lock_changes``.

    Layers whose files changed are built into the local blob store as part of observing (module
    :mod:`compose_kfp.build.observe`); requirements are never installed here. ``registries`` (default: made with
    :func:`~compose_kfp.build.destination.registries_for` and closed at the end); ``installer``: the requirements
    installer (default: found when a requirements key is needed); ``progress``: ``(event, name, done, total)``;
    ``streams``: only ``apply`` gives one (:class:`~compose_kfp.build.destination.StreamedUploads`): each layer
    built is uploaded as it is compressed. Without it nothing remote is changed.

    Raises:
        StaleError: ``frozen`` and kfp.lock would change.
        BuildError: a layer must be built and the state folder ``.compose-kfp`` cannot be written (read-only
            checkout; a plan whose layers are all cached needs no writes).
        ConfigError, BuildError, RegistryError, AuthError: as observation fails.
    """
    root = project.root
    own = registries is None
    registries = registries or registries_for(project)
    try:
        images = desired_images(project.manifest, root)
        lock = lock_mod.read_lock(root)
        ProjectState(root).dir.mkdir(exist_ok=True)  # no state folder: every layer must be built into it
        observed = observe(images, root, registries=registries, lock=lock, frozen=frozen,
                           output_dir=project.loaded.output_dir, installer=installer, progress=progress,
                           where=project.loaded.display_path, streams=streams)
        pinned = pin_images(component_images(project), registries,
                            locked=(lock or {}).get("components") if frozen else None)
        p = planner_mod.plan(images, observed, project=project.manifest.project.name, root=str(root),
                             component_images=pinned)
        # The rendered files pin the images by the digests the planner just computed: render (or look up the
        # memoized digests), then put the file changes into the plan.
        if _all_refs_known(p):
            rendered: dict[str, str | None] = dict(rendered_digests(project, step_refs(p)))
        else:
            rendered = {name: None for name in rendered_names(project)}
        p = planner_mod.with_files(p, planner_mod.plan_files(rendered, observed.rendered, managed_prefixes(project)))
        p = dataclasses.replace(p, warnings=p.warnings + render_warnings(project), tasks=task_cache(project, p))
        new_lock = _lock_of(p)
        if frozen:
            lock_mod.check_frozen(root, lock, new_lock)
        stale = new_lock is None or lock is None or lock_mod.dumps(new_lock) != lock_mod.dumps(lock)
        return dataclasses.replace(p, lock_changes=stale)
    except OSError as e:
        state = ProjectState(root)
        if in_state_dir(state, e):
            raise state_dir_error(state, e) from None
        raise
    finally:
        if own:
            registries.close()


def task_cache(project: Project, plan: Plan) -> tuple[TaskCache, ...]:
    """Each task of the pipeline against the keys the last apply or run recorded
    (:func:`compose_kfp.pipeline.cache.compare`), with the layers that changed in its image as the reason's
    detail; empty without a pipeline. Reads ``.compose-kfp/task-keys.json``; writes nothing."""
    from compose_kfp.pipeline.cache import compare, task_keys

    if project.graph is None:
        return ()
    notes: dict[str, str] = {}
    for image in plan.images:
        changed = [f"layer {ly.name} {_DONE[ly.action]}" for pp in image.platforms[:1] for ly in pp.layers
                   if ly.action != "keep"]
        changed += ["base moved"] if any(pp.base.action == "replace" for pp in image.platforms) else []
        notes.update({step: ", ".join(changed) for step in image.steps if changed})
    graph = pinned_graph(project, step_refs(plan)) if _all_refs_known(plan) else project.graph
    keys = task_keys(graph) if _all_refs_known(plan) else {}
    return compare(graph, project.manifest, keys, ProjectState(project.root).task_keys(), notes)


_DONE = {"add": "added", "replace": "replaced", "remove": "removed"}


def step_refs(plan: Plan) -> dict[str, str]:
    """Step -> pinned image reference: function steps (images whose digest is known) and the pinned
    third-party component images."""
    out = dict(plan.component_images)
    for image in plan.images:
        if image.reference:
            for step in image.steps:
                out[step] = image.reference
    return out


def _all_refs_known(plan: Plan) -> bool:
    """Whether every image a step runs in has a known digest (else the rendered files are known only after apply)."""
    return all(image.after for image in plan.images if image.steps)


def _lock_of(p: Plan) -> dict[str, Any] | None:
    """The kfp.lock ``p`` would write, or ``None`` while a rendered file's digest is known only after apply."""
    files = {f.path: f.after for f in p.files if f.action != "remove"}
    if any(v is None for v in files.values()):
        return None
    return lock_mod.lock_from_plan(p, files)  # type: ignore[arg-type]


def load_saved_plan(path: Path, project: Project) -> Plan:
    """The plan saved in ``path`` by ``plan --out``, checked to be for ``project``'s folder.

    Raises:
        ConfigError: no such file, or not a saved plan (the message names ``--plan`` and the file).
        StaleError: the plan was made for a project in another folder.
    """
    try:
        p = Plan.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--plan {path}: no such file.") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--plan {path}: not a plan saved by `compose-kfp plan --out` ({e}).") from None
    if Path(p.root).resolve() != project.root.resolve():
        raise StaleError(f"--plan {path} was made for the project in {p.root}, not {project.root}.")
    return p


__all__ = ["load_saved_plan", "plan_project", "step_refs"]
