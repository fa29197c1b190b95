"""The ``plan``, ``apply``, ``render`` and ``lock`` commands, registered on :data:`compose_kfp.cli.app`.

Thin: each parses options, calls one library function
(:func:`compose_kfp.build.plan.plan_project`, :func:`compose_kfp.build.apply.apply_project`,
:func:`compose_kfp.pipeline.outputs.render_from_lock`,
:func:`compose_kfp.build.reqlock.lock_project_requirements`) and prints through the CLI's
consoles. Importing this module registers the commands (``compose_kfp.cli`` imports it).

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


def _overrides(repository: str | None, base: str | None) -> dict[str, Any]:
    return {"image.repository": repository, "image.base": base}


class _Bars:
    """Progress for the library's ``progress(event, name, done, total)`` callbacks, on stderr.

    On a terminal: rich progress bars, one per (event, name): ``build`` (tar + compress), ``upload``,
    ``copy``; ``install`` shows a line. When stderr is not a terminal (CI logs, a pipe): one plain line per
    layer built, blob uploaded or copied and installer started (``built src sha256:abcd… 12.3 MiB``,
    ``uploaded sha256:abcd… 12.3 MiB``), as each happens. Silenced by ``-q`` (the console is quiet) and
    ``--json`` (``enabled=False``).
    """

    LABELS = {"build": "building", "upload": "uploading", "copy": "copying base", "install": "installing"}

    def __init__(self, settings: Settings, enabled: bool = True):
        on = enabled and not settings.quiet
        terminal = on and settings.err.is_terminal  # silenced: neither rich nor the terminal is asked
        self.enabled = terminal
        self.plain = on and not terminal
        self.console = settings.err
        self.progress: Any = None
        if self.enabled:  # rich.progress is imported only to draw bars
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), console=settings.err.console,
                                     transient=False)
        self.tasks: dict[tuple[str, str], Any] = {}
        self.done: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def __enter__(self) -> "_Bars":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.stop()

    def __call__(self, event: str, name: str, done: int, total: int) -> None:
        if self.plain:
            self._line(event, name, done, total)
            return
        if not self.enabled or event not in self.LABELS:
            return
        with self.lock:
            key = (event, name)
            shown = name[:19] + "…" if name.startswith("sha256:") else name
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(f"{self.LABELS[event]} {shown}", total=total or None)
            self.progress.update(self.tasks[key], completed=done, total=total or None)

    def _line(self, event: str, name: str, done: int, total: int) -> None:
        """The plain line for an event that finished something (each once), else nothing."""
        from compose_kfp.planner import human_bytes

        if event == "built":
            layer, _, digest = name.partition(" ")
            text = f"built {layer} {_short(digest)} {human_bytes(total)}"
        elif event in ("upload", "copy") and total and done >= total:
            text = f"{'uploaded' if event == 'upload' else 'copied base layer'} {_short(name)} {human_bytes(total)}"
        elif event == "install":
            text = f"installing the requirements of layer {name}"
        else:
            return
        with self.lock:
            if (event, name) in self.done:
                return
            self.done.add((event, name))
            self.console.print(text, markup=False)


def _short(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits of ``digest``, then ``…`` (a plain progress line's digest)."""
    return digest[:19] + "…" if digest.startswith("sha256:") else digest


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
    from compose_kfp.build.plan import plan_project
    from compose_kfp.planner import format_plan

    settings = _settings(ctx)
    settings.json = as_json  # errors as JSON on stderr too (cli.boundary)
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
        "--lock-timeout", min=0, max=86400,
        help="Seconds to wait for another apply of this project to finish.")] = 30.0,
    print_reference: Annotated[bool, typer.Option(
        "--print-reference", help="Print only each image's repository@sha256:... on stdout, one line per image "
        "(as ko build does); the plan and everything else go to stderr.")] = False,
) -> None:
    """Build changed layers, push missing blobs, manifests and tags, write kfp.lock and render the outputs."""
    from compose_kfp.build.apply import apply_project
    from compose_kfp.build.plan import load_saved_plan
    from compose_kfp.planner import Plan, format_plan, human_bytes

    settings = _settings(ctx)
    settings.json = as_json  # errors as JSON on stderr too (cli.boundary)
    if as_json and print_reference:
        raise typer.BadParameter("give --json or --print-reference, not both", param_hint="--print-reference")
    project = _load(settings, repository, base)
    out = settings.err if print_reference else settings.out  # the human text
    interactive = not yes and sys.stdin.isatty() and (sys.stdout.isatty() or print_reference) and not as_json

    def shown(p: Plan, text: str) -> None:
        if not as_json:
            out.print(text, markup=False, end="")

    def replanned(p: Plan, text: str) -> None:
        if not as_json:
            out.print("The other apply changed what is to be done; the plan is now:", markup=False)
            out.print(text, markup=False, end="")

    def on_wait() -> None:
        settings.err.print(f"Waiting for another `compose-kfp apply` of this project to finish (up to "
                           f"{lock_timeout:.0f} s)...", markup=False)

    outcome = apply_project(
        project, load_saved_plan(plan_file, project) if plan_file is not None else None, frozen=frozen,
        lock_timeout=lock_timeout, progress=lambda: _Bars(settings, enabled=not as_json),
        describe=lambda p: format_plan(p, verbose=settings.verbose > 0), on_plan=shown, on_wait=on_wait,
        confirm=(lambda p: typer.confirm("Apply these changes?", default=False, err=print_reference))
        if interactive else None,
        on_replanned=replanned)
    p, result = outcome.plan, outcome.result
    if outcome.cancelled:
        settings.err.print("Cancelled; nothing was changed.", markup=False)
        raise typer.Exit(1)
    if result is None:
        if as_json:
            settings.result.print(json.dumps(outcome.to_dict(), indent=2, sort_keys=True), markup=False)
        else:
            out.print("Nothing to do: nothing uploaded.", markup=False)
            _print_references(settings, p, print_reference)
        return
    if as_json:
        settings.result.print(json.dumps(outcome.to_dict(), indent=2, sort_keys=True), markup=False)
        return
    if result.uploaded:
        out.print(f"Uploaded {len(result.uploaded)} blob(s), {human_bytes(result.uploaded_bytes)}"
                           + (f"; mounted {len(result.mounted)}" if result.mounted else "") + ".", markup=False)
    else:
        out.print("Nothing uploaded" + (f" (mounted {len(result.mounted)} base layer(s))"
                                                 if result.mounted else "") + ".", markup=False)
    for image in result.plan.images:
        out.print(f"{image.name}: {image.reference}", markup=False)
    if result.lock_written:
        out.print("Wrote kfp.lock.", markup=False)
    for f in result.files:
        out.print(f"Rendered {f}", markup=False)
    _print_references(settings, result.plan, print_reference)


def _print_references(settings: Settings, plan: Any, wanted: bool) -> None:
    """``apply --print-reference``: each image's ``repository@sha256:...`` on stdout (even with -q), one a line."""
    if wanted:
        for image in plan.images:
            settings.result.print(image.reference or "", markup=False)


@app.command()
def render(
    ctx: typer.Context,
    target: Annotated[Optional[list[str]], typer.Option(
        "--target", help="What to render besides component files: argo (Argo Workflow) or kfp (KFP v2 pipeline "
        "package); repeatable. Default: render.targets of kfp.toml.")] = None,
    output_dir: Annotated[Optional[str], typer.Option(
        "--output-dir", help="Override render.output_dir: relative to kfp.toml's folder and inside it, or an "
        "absolute folder anywhere.")] = None,
) -> None:
    """Render component files and the workflow from the digests in kfp.lock (builds and pushes nothing)."""
    from compose_kfp.pipeline.outputs import render_from_lock, render_warnings

    settings = _settings(ctx)
    project = settings.project(overrides={"render.targets": list(target) if target else None,
                                          "render.output_dir": output_dir})
    written = render_from_lock(project)
    for warning in render_warnings(project):
        settings.err.print(f"warning: {warning}", markup=False)
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
    <file>.lock.txt next to it, with uv; plan and apply then install from it while <file> is unchanged."""
    from compose_kfp.build.reqlock import lock_project_requirements

    settings = _settings(ctx)
    project = _load(settings, repository, base)
    def shown(path: Any) -> str:
        return str(path.relative_to(project.root)) if path.is_relative_to(project.root) else str(path)

    def on_locked(item: Any) -> None:
        settings.out.print(f"{shown(item.path)}: {item.pins} pinned package(s) for {item.target}; `plan` and "
                           f"`apply` install {item.where} from it while {shown(item.source)} is unchanged (run "
                           "`compose-kfp lock` again after editing it)", markup=False)

    locked = lock_project_requirements(project, on_locked=on_locked)
    if not locked:
        settings.out.print("No requirements layer to lock.", markup=False)
