"""The ``plan``, ``apply``, ``render`` and ``lock`` commands, registered on :data:`compose_kfp.cli.app`.

Thin: each parses options, calls :mod:`compose_kfp.build.apply` (or :mod:`compose_kfp.build.deps`),
and prints through the CLI's consoles. Importing this module registers the commands
(``compose_kfp.cli`` imports it).

Exit codes (``compose_kfp.errors``): ``plan --exit-code`` returns 0 when nothing would
change and 2 when something would; errors have their own codes (1 input, 3 build,
4 registry, 5 credentials, 6 rendering, 8 stale lock or saved plan, 9 busy).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from compose_kfp.cli.app import Settings, _settings, app
from compose_kfp.errors import ConfigError, StaleError


def _overrides(repository: str | None, base: str | None) -> dict[str, Any]:
    return {"image.repository": repository, "image.base": base}


class _Bars:
    """Rich progress bars for the library's ``progress(event, name, done, total)`` callbacks (stderr).

    One bar per (event, name): ``build`` (tar + compress), ``upload``, ``copy``; ``install`` shows a
    spinner-less line. Silenced by ``-q`` (the console is quiet) and when stderr is not a terminal.
    """

    LABELS = {"build": "building", "upload": "uploading", "copy": "copying base", "install": "installing"}

    def __init__(self, settings: Settings, enabled: bool = True):
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.enabled = enabled and not settings.quiet and settings.err.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=settings.err,
                                 transient=False)
        self.tasks: dict[tuple[str, str], Any] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> "_Bars":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.stop()

    def __call__(self, event: str, name: str, done: int, total: int) -> None:
        if not self.enabled or event not in self.LABELS:
            return
        with self.lock:
            key = (event, name)
            shown = name[:19] + "…" if name.startswith("sha256:") else name
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(f"{self.LABELS[event]} {shown}", total=total or None)
            self.progress.update(self.tasks[key], completed=done, total=total or None)


def _load(settings: Settings, repository: str | None, base: str | None) -> Any:
    return settings.project(overrides=_overrides(repository, base))


@app.command()
def plan(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    exit_code: Annotated[bool, typer.Option(
        "--exit-code", help="Exit 0 when nothing would change, 2 when something would (errors: other codes).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also save the plan to FILE for `apply --plan`.",
                                                dir_okay=False)] = None,
    frozen: Annotated[bool, typer.Option(
        "--frozen", help="Use the base digests of kfp.lock and fail if kfp.lock would change.")] = False,
    repository: Annotated[Optional[str], typer.Option("--repository", help="Override image.repository.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Override image.base.")] = None,
) -> int:
    """Show what apply would change: layers to add, replace or remove, bytes to upload, rendered files."""
    from compose_kfp.build.apply import plan_project
    from compose_kfp.planner import format_plan

    settings = _settings(ctx)
    project = _load(settings, repository, base)
    with _Bars(settings, enabled=not as_json) as bars:
        p = plan_project(project, frozen=frozen, progress=bars)
    if out is not None:
        out.write_text(p.to_json(), encoding="utf-8")
    if as_json:  # the command's result: printed even with -q
        settings.result.print(p.to_json(), markup=False)
    else:
        settings.out.print(format_plan(p, verbose=settings.verbose > 0), markup=False, end="")
        if out is not None:
            settings.out.print(f"Saved the plan to {out}; run `compose-kfp apply --plan {out}` to apply it.",
                               markup=False)
    if exit_code:
        return 2 if p.has_changes else 0
    return 0


@app.command()
def apply(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")] = False,
    plan_file: Annotated[Optional[Path], typer.Option(
        "--plan", help="Apply a plan saved with `plan --out` (refused if the base or a tag moved since).",
        exists=False, dir_okay=False)] = None,
    frozen: Annotated[bool, typer.Option(
        "--frozen", help="Use the base digests of kfp.lock and fail if kfp.lock would change (CI).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan and the result as JSON.")] = False,
    repository: Annotated[Optional[str], typer.Option("--repository", help="Override image.repository.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Override image.base.")] = None,
    lock_timeout: Annotated[float, typer.Option(
        "--lock-timeout", help="Seconds to wait for another apply of this project to finish.")] = 30.0,
) -> None:
    """Build changed layers, push missing blobs, manifests and tags, write kfp.lock and render the outputs."""
    from compose_kfp.build.apply import apply_plan, holding_project_lock, plan_project
    from compose_kfp.planner import Plan, format_plan, human_bytes

    settings = _settings(ctx)
    project = _load(settings, repository, base)
    interactive = not yes and sys.stdin.isatty() and sys.stdout.isatty() and not as_json

    def make_plan() -> Plan:
        with _Bars(settings, enabled=not as_json) as bars:
            return plan_project(project, frozen=frozen, progress=bars)

    def nothing_to_do(p: Plan) -> None:
        if as_json:
            settings.result.print(json.dumps({"plan": p.to_dict(), "result": None, "changed": False}, indent=2,
                                             sort_keys=True), markup=False)
        else:
            settings.out.print("Nothing to do: nothing uploaded.", markup=False)

    if plan_file is not None:
        try:
            p = Plan.from_json(plan_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--plan {plan_file}: no such file.") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"--plan {plan_file}: not a plan saved by `compose-kfp plan --out` ({e}).") from None
        if Path(p.root).resolve() != project.root.resolve():
            raise StaleError(f"--plan {plan_file} was made for the project in {p.root}, not {project.root}.")
    else:
        p = make_plan()
    shown = format_plan(p, verbose=settings.verbose > 0)
    if not as_json:
        settings.out.print(shown, markup=False, end="")
    if not p.has_changes:
        nothing_to_do(p)
        return
    if interactive and not typer.confirm("Apply these changes?", default=False):
        settings.err.print("Cancelled; nothing was changed.", markup=False)
        raise typer.Exit(1)
    waited = []

    def on_wait() -> None:
        waited.append(True)
        settings.err.print(f"Waiting for another `compose-kfp apply` of this project to finish (up to "
                           f"{lock_timeout:.0f} s)...", markup=False)

    with holding_project_lock(project.root, lock_timeout, on_wait=on_wait):
        if waited and plan_file is None:
            # The other apply may have done some or all of it: plan again, under the lock, and apply (and
            # print) that plan, not the one made before the wait.
            p = make_plan()
            again = format_plan(p, verbose=settings.verbose > 0)
            if again != shown and not as_json:
                settings.out.print("The other apply changed what is to be done; the plan is now:", markup=False)
                settings.out.print(again, markup=False, end="")
            if not p.has_changes:
                nothing_to_do(p)
                return
            if again != shown and interactive and not typer.confirm("Apply these changes?", default=False):
                settings.err.print("Cancelled; nothing was changed.", markup=False)
                raise typer.Exit(1)
        with _Bars(settings, enabled=not as_json) as bars:
            result = apply_plan(project, p, frozen=frozen, progress=bars, lock_held=True)
    if as_json:
        settings.result.print(json.dumps({"plan": p.to_dict(), "result": result.to_dict(),
                                          "changed": result.changed}, indent=2, sort_keys=True), markup=False)
        return
    if result.uploaded:
        settings.out.print(f"Uploaded {len(result.uploaded)} blob(s), {human_bytes(result.uploaded_bytes)}"
                           + (f"; mounted {len(result.mounted)}" if result.mounted else "") + ".", markup=False)
    else:
        settings.out.print("Nothing uploaded" + (f" (mounted {len(result.mounted)} base layer(s))"
                                                 if result.mounted else "") + ".", markup=False)
    for image in result.plan.images:
        settings.out.print(f"{image.name}: {image.reference}", markup=False)
    if result.lock_written:
        settings.out.print("Wrote kfp.lock.", markup=False)
    for f in result.files:
        settings.out.print(f"Rendered {f}", markup=False)


@app.command()
def render(
    ctx: typer.Context,
    target: Annotated[Optional[list[str]], typer.Option(
        "--target", help="What to render besides component files: argo (Argo Workflow) or kfp (KFP v2 pipeline "
        "package); repeatable. Default: render.targets of kfp.toml.")] = None,
    output_dir: Annotated[Optional[str], typer.Option(
        "--output-dir", help="Override render.output_dir (relative to kfp.toml's folder).")] = None,
) -> None:
    """Render component files and the workflow from the digests in kfp.lock (builds and pushes nothing)."""
    from compose_kfp.build.apply import render_from_lock

    settings = _settings(ctx)
    project = settings.project(overrides={"render.targets": list(target) if target else None,
                                          "render.output_dir": output_dir})
    written = render_from_lock(project)
    if not written:
        settings.out.print("Rendered files are up to date.", markup=False)
    for f in written:
        settings.out.print(f"Rendered {f}", markup=False)


@app.command()
def lock(
    ctx: typer.Context,
    repository: Annotated[Optional[str], typer.Option("--repository", help="Override image.repository.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Override image.base.")] = None,
) -> None:
    """Pin every requirements layer (versions and hashes, for the image's first platform and Python) into
    ``<file>.lock.txt`` next to it, with uv; point the layer's ``requirements`` at that file to use it."""
    from compose_kfp.build import deps as deps_mod
    from compose_kfp.build.destination import registries_for
    from compose_kfp.build.images import desired_images
    from compose_kfp.build.observe import deps_target, resolve_base
    from compose_kfp.build.statedir import ProjectState

    settings = _settings(ctx)
    project = _load(settings, repository, base)
    images = desired_images(project.manifest, project.root)
    seen: set[str] = set()
    registries = registries_for(project)
    try:
        first = images[0]
        platform = first.platforms[0]
        bases = None
        for image in images:
            for spec in image.layers:
                if spec.kind != "requirements" or spec.requirements in seen:
                    continue
                seen.add(spec.requirements)  # type: ignore[arg-type]
                if bases is None:
                    bases = resolve_base(first.base, [platform], registries, ProjectState(project.root))
                target = deps_target(image, platform, bases[platform], project.loaded.display_path)
                src = Path(spec.requirements)  # type: ignore[arg-type]
                out = src.with_name(src.stem + ".lock.txt")
                pins = deps_mod.lock_requirements(src, target, out)
                settings.out.print(f"{out}: {len(pins)} pinned package(s) for {target.describe()}", markup=False)
    finally:
        registries.close()
    if not seen:
        settings.out.print("No requirements layer to lock.", markup=False)
