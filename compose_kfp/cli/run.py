"""The ``run`` command (``compose-kfp run --local``), registered on :data:`compose_kfp.cli.app`.

Thin: loads the project, pins each step to the image digest recorded in kfp.lock
(:func:`run_images`: the same images the rendered files use), resolves the task graph
with those images, calls :func:`compose_kfp.localrun.runner.run_local`, prints one line per task event on
stderr and the summary table on stdout. A run with a failed task prints the failing
tasks' log tails (their tracebacks) on stderr and raises
:class:`~compose_kfp.errors.RunError` (exit code 7). Importing this module registers
the command.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from compose_kfp.cli.app import _settings, app
from compose_kfp.errors import ConfigError


class ExecutorChoice(str, enum.Enum):
    """Accepted values of ``--executor`` (see :func:`compose_kfp.localrun.runner.select_executor`)."""

    auto = "auto"
    podman = "podman"
    bwrap = "bwrap"
    chroot = "chroot"


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["n=10", "name=x"]`` -> ``{"n": "10", "name": "x"}``; values stay text, as Argo passes them.

    Raises:
        ConfigError: an item without ``=`` or with an empty name.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE, e.g. --param n_estimators=200")
        params[key.strip()] = value
    return params


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


def run_images(project: Any) -> dict[str, str]:
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


def stale_layers(project: Any) -> list[str]:
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


@app.command()
def run(
    ctx: typer.Context,
    local: Annotated[bool, typer.Option(
        "--local", help="Run every task on this machine, inside its image (the only mode so far).")] = False,
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", "-p", help="Pipeline param NAME=VALUE (repeatable); defaults come from [pipeline.params].")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(
        "--run-dir", help="Folder for task outputs and logs (default: <output dir>/runs/<timestamp>).",
        file_okay=False)] = None,
    executor: Annotated[ExecutorChoice, typer.Option(
        "--executor", help="auto (podman if usable, else bwrap, else chroot as root), podman, bwrap or chroot.")
    ] = ExecutorChoice.auto,
    parallel: Annotated[int, typer.Option("--parallel", help="Tasks run at the same time at most.", min=1)] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run result as JSON.")] = False,
) -> None:
    """Run the pipeline in the images kfp.lock pins: outputs and logs under the run folder, a summary table."""
    import datetime as _dt

    from compose_kfp.build.pins import component_images
    from compose_kfp.pipeline.graph import resolve_graph
    from compose_kfp.localrun.runner import RegistryOptions, failure_report, format_summary, raise_for_failure, run_local
    from compose_kfp.build.credentials import keychain_for

    settings = _settings(ctx)
    if not local:
        raise ConfigError("only local runs are supported so far: use `compose-kfp run --local`")
    params = parse_params(param or [])
    project = settings.project()
    if project.graph is None:
        raise ConfigError(f"{project.loaded.display_path}: no [pipeline] to run; add [pipeline.tasks.NAME] tables")
    from compose_kfp.localrun.runner import resolve_params

    resolve_params(project.graph, params)  # a value of the wrong type fails here, before any image is read
    images = run_images(project)
    for line in stale_layers(project):
        settings.err.print(f"warning: {line}", markup=False)
    if not images and component_images(project):
        settings.err.print("note: no kfp.lock yet, so component images run by the references their files name; "
                           "`compose-kfp apply` pins them by digest", markup=False)
    graph = resolve_graph(project.manifest, project.components, manifest_path=project.path, images=images)
    if run_dir is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = project.loaded.output_dir / "runs" / stamp
    image_settings = project.manifest.image
    auth_file = None
    if image_settings.auth is not None and image_settings.auth.config:
        auth_file = Path(image_settings.auth.config).expanduser()
        auth_file = auth_file if auth_file.is_absolute() else project.root / auth_file
    options = RegistryOptions(insecure=True if image_settings.insecure else None,
                              keychain=keychain_for(image_settings.auth, project.root), authfile=auth_file)

    def on_event(event: Any) -> None:
        if as_json:
            return
        if event.kind == "started":
            settings.err.print(f"▶ {event.task} started" + (f" ({event.message})" if event.message else ""),
                               markup=False)
        elif event.kind in ("finished", "skipped") and event.result is not None:
            r = event.result
            extra = f" in {r.duration:.1f} s" if event.kind == "finished" else ""
            settings.err.print(f"■ {event.task} {r.status}{extra}" + (f": {r.error}" if r.error else ""),
                               markup=False)

    result = run_local(graph, run_dir=run_dir, params=params, executor=executor.value,  # type: ignore[arg-type]
                       max_parallel=parallel, registry=options, on_event=on_event)
    if as_json:
        settings.result.print(json.dumps(result.to_dict(), indent=2), markup=False)
    else:
        settings.out.print(format_summary(result))
        settings.out.print(f"Outputs and logs: {result.run_dir}", markup=False)
        if not result.ok:
            settings.err.print(failure_report(result), markup=False)
    raise_for_failure(result)
