"""Running a checked project on this machine (``compose-kfp run --local``): the one library call of ``run``.

:func:`run_project` checks the params, pins every step to the image kfp.lock records (:func:`run_images`:
the same images the rendered files use), reports the file layers whose inputs changed since kfp.lock was
written (:func:`stale_layers`), resolves the task graph with those images, resolves the registry options
from ``[image]`` (:func:`registry_options`) and calls :func:`compose_kfp.localrun.runner.run_local`.
It prints nothing: warnings and notes go to its ``on_notice`` callback, progress to ``on_event``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compose_kfp.errors import ConfigError
from compose_kfp.localrun.results import EventCallback, RunResult
from compose_kfp.localrun.rootfs import RegistryOptions

if TYPE_CHECKING:
    from compose_kfp.localrun.runner import Executor
    from compose_kfp.manifest.project import Project

__all__ = ["run_project", "run_images", "stale_layers", "registry_options", "NoticeCallback"]

#: ``on_notice(kind, text)``: ``kind`` is ``"warning"`` (a stale layer) or ``"note"``; ``text`` has no prefix.
NoticeCallback = Callable[[str, str], None]


def _layout_refs(project: Any, refs: dict[str, str]) -> dict[str, str]:
    """``oci:PATH@digest`` references with PATH made absolute against the project folder."""
    out = {}
    for step, ref in refs.items():
        if ref.startswith("oci:"):
            path, _, digest = ref[len("oci:"):].rpartition("@")
            folder = Path(path).expanduser()
            ref = f"oci:{(folder if folder.is_absolute() else project.root / folder).resolve()}@{digest}"
        out[step] = ref
    return out


def run_images(project: Project) -> dict[str, str]:
    """Step name -> the image ``run --local`` runs it in: the digests kfp.lock pins, as in the rendered files.

    Function steps get their image from kfp.lock ``images`` (:func:`compose_kfp.build.apply.lock_images`;
    ``oci:PATH@sha256:...`` with PATH made absolute against the project folder); third-party
    component steps get the digest kfp.lock ``components`` pins for the image their file names
    (:func:`compose_kfp.build.apply.lock_component_images`). A project with no function step and no
    kfp.lock yet gets an empty map: its component steps run by the reference their files name.

    Raises:
        StaleError: a function step and no kfp.lock, or kfp.lock lacks a step's image (run ``apply``).
        ConfigError: kfp.lock is not readable JSON of a known version.
    """
    from compose_kfp.build.lock import lock_component_images, lock_images
    from compose_kfp.build.lock import read_lock

    needs_lock = any(step.function for step in project.manifest.steps.values())
    if not needs_lock and read_lock(project.root) is None:
        return {}
    return _layout_refs(project, {**lock_images(project), **lock_component_images(project)})


def stale_layers(project: Project) -> list[str]:
    """One line per file layer of a used image whose inputs changed since kfp.lock was written (cheap check).

    For every ``paths``/``rootfs`` layer of an image some function step runs in, the inputs are
    fingerprinted (:func:`compose_kfp.build.observe.input_fingerprint`: one ``stat`` per file); the fingerprint
    must be one a ``plan``/``apply`` in this checkout recorded, and the layer it planned to (in the
    layer cache) must have the digest kfp.lock pins for that layer on some platform. A layer whose
    inputs were never planned here, or planned to another digest, is reported; nothing is reported
    when there is no kfp.lock or no local state (a fresh checkout: nothing to compare with).
    Never raises for a missing or unreadable cache entry (the check is only advisory).
    """
    from compose_kfp.build.images import desired_images
    from compose_kfp.build.lock import read_lock
    from compose_kfp.build.observe import input_fingerprint
    from compose_kfp.build.statedir import ProjectState

    lock = read_lock(project.root)
    state = ProjectState(project.root)
    if lock is None or not (state.dir / "cache" / "fingerprints").is_dir():
        return []
    lines = []
    for image in desired_images(project.manifest, project.root):
        entry = (lock.get("images") or {}).get(image.name) or {}
        if not image.steps or not entry:
            continue
        locked: dict[str, set[str]] = {}
        for plat in (entry.get("platforms") or {}).values():
            for layer in plat.get("layers") or ():
                locked.setdefault(layer.get("name"), set()).add(layer.get("digest"))
        for spec in image.layers:
            if spec.kind not in ("paths", "rootfs") or spec.name not in locked:
                continue
            fp = input_fingerprint(spec, image.compression, project.root)
            key = state.fingerprint_key(fp) if fp else None
            cached = state.layer_cache.get(key) if key else None
            if cached is not None and cached.get("digest") in locked[spec.name]:
                continue
            lines.append(f"layer {spec.name!r} of image {image.name!r} ({spec.where}): its files changed since "
                         f"kfp.lock was written; this run uses the image kfp.lock pins, built from the old files. "
                         f"Run `compose-kfp apply` to rebuild it")
    return lines


def registry_options(project: Project) -> RegistryOptions:
    """How a local run fetches images, from ``[image]``: ``insecure``, the ``[image.auth]`` keychain and auth file.

    ``insecure = true`` -> plain HTTP for every registry (else ``None``: only for loopback registries);
    the keychain is :func:`compose_kfp.build.credentials.keychain_for` for ``[image.auth]`` (for every
    registry); ``authfile`` (for ``podman pull --authfile``) is ``image.auth.config`` with ``~`` expanded,
    made absolute against the project folder (``None`` when not set).

    The auth-file path is :func:`compose_kfp.build.credentials.auth_config_path`, the one that
    ``keychain_for`` reads for its keychain.

    Raises:
        ConfigError: from ``keychain_for`` (``image.auth.config`` is not a file, ``username_env``
            without ``password_env``).
    """
    from compose_kfp.build.credentials import auth_config_path, keychain_for

    image_settings = project.manifest.image
    auth_file = auth_config_path(image_settings.auth, project.root)
    return RegistryOptions(insecure=True if image_settings.insecure else None,
                           keychain=keychain_for(image_settings.auth, project.root), authfile=auth_file)


def run_project(project: Project, *, params: Mapping[str, Any], run_dir: Path | None = None,
                executor: Executor = "auto", max_parallel: int = 2, on_event: EventCallback | None = None,
                on_notice: NoticeCallback | None = None, secrets_dir: Path | None = None,
                reuse_results: bool = True) -> RunResult:
    """Run the pipeline of ``project`` on this machine in the images kfp.lock pins (the one call of ``run``).

    In order: the project must have a ``[pipeline]``; ``params`` (name -> value) must fit the params'
    types (:func:`compose_kfp.localrun.runner.resolve_params`, before any image is read); the images are
    :func:`run_images`; each line of :func:`stale_layers` goes to ``on_notice("warning", line)``; a project
    with component images but no kfp.lock yet gets ``on_notice("note", ...)`` (they run by the references
    their files name); the graph is resolved with those images; the run folder defaults to
    ``<output dir>/runs/<YYYYmmdd-HHMMSS>`` (local time); then
    :func:`~compose_kfp.localrun.runner.run_local` runs it with :func:`registry_options`, ``executor``,
    ``max_parallel`` (tasks at the same time), ``on_event`` and ``secrets_dir`` (files for tasks' Secret and
    ConfigMap references; relative to the current folder). With ``[pipeline.cache] enabled`` (the default), results
    are cached by task key in ``.compose-kfp/cache/tasks`` (``reuse_results=False``, ``--no-cache``: nothing is
    reused, fresh results are still stored; tasks with ``cache = false`` are neither) and the keys of the tasks that
    succeeded are recorded in ``.compose-kfp/task-keys.json`` for ``plan``.

    Returns:
        the :class:`~compose_kfp.localrun.results.RunResult`; task failures are in it, not raised
        (:func:`compose_kfp.localrun.report.raise_for_failure` turns them into an error).

    Raises:
        ConfigError: no ``[pipeline]``; an unknown param or a value that does not fit; see :func:`registry_options`
            and :func:`~compose_kfp.localrun.runner.run_local`.
        StaleError: see :func:`run_images`.
        RunError: the executor is not available (:func:`compose_kfp.localrun.runner.select_executor`).
    """
    from compose_kfp.build.pins import component_images
    from compose_kfp.build.statedir import ProjectState
    from compose_kfp.pipeline.cache import cache_settings, caches, task_keys
    from compose_kfp.pipeline.graph import resolve_graph
    from compose_kfp.localrun.runner import resolve_params, run_local

    def notice(kind: str, text: str) -> None:
        if on_notice is not None:
            on_notice(kind, text)

    if project.graph is None:
        raise ConfigError(f"{project.loaded.display_path}: no [pipeline] to run; add [pipeline.tasks.NAME] tables")
    resolve_params(project.graph, params)  # a value of the wrong type fails here, before any image is read
    images = run_images(project)
    for line in stale_layers(project):
        notice("warning", line)
    if not images and component_images(project):
        notice("note", "no kfp.lock yet, so component images run by the references their files name; "
                       "`compose-kfp apply` pins them by digest")
    graph = resolve_graph(project.manifest, project.components, manifest_path=project.path, images=images,
                          where=project.loaded.where)
    if run_dir is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = project.loaded.output_dir / "runs" / stamp
    options = registry_options(project)
    state = ProjectState(project.root)
    results = state.results_dir if cache_settings(project.manifest).enabled else None
    uncached = [t.name for t in graph.all_tasks if not caches(project.manifest, t)]
    result = run_local(graph, run_dir=run_dir, params=params, executor=executor, max_parallel=max_parallel,
                       registry=options, on_event=on_event,
                       secrets_dir=Path(secrets_dir).absolute() if secrets_dir else None,
                       results_cache=results, reuse_results=reuse_results, uncached=uncached)
    keys = task_keys(graph, resolve_params(graph, params))
    state.record_task_keys({t.name: keys[t.name].to_dict() for t in result.tasks
                            if t.status == "succeeded" and t.name in keys and t.name not in uncached})
    return result
