"""The ``gc`` command, registered on :data:`compose_kfp.cli.app`: prune the project's state folder ``.compose-kfp/``.

Thin: parses options, calls :func:`compose_kfp.build.gc.collect_garbage`, prints (``--json``: the
:class:`~compose_kfp.build.gc.GcResult` as JSON, printed even with ``-q``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from compose_kfp.cli.app import _settings, app


@app.command()
def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    lock_timeout: Annotated[float, typer.Option(
        "--lock-timeout", min=0, max=86400,
        help="Seconds to wait for an apply of this project to finish.")] = 30.0,
) -> None:
    """Remove from .compose-kfp/ every blob and cache entry the project no longer needs (kept: what kfp.lock
    references and what the next plan of the current kfp.toml would hit); print what was removed and the bytes
    freed."""
    from compose_kfp.build.gc import collect_garbage
    from compose_kfp.build.statedir import STATE_DIR
    from compose_kfp.planner import human_bytes

    settings = _settings(ctx)
    settings.json = as_json  # errors as JSON on stderr too (cli.boundary)
    project = settings.project()
    result = collect_garbage(project, dry_run=dry_run, lock_timeout=lock_timeout)
    if as_json:  # the command's result: printed even with -q
        settings.result.print(json.dumps(result.to_dict(), indent=2, sort_keys=True), markup=False)
        return
    out = settings.out
    if not result.state_dir:
        out.print(f"Nothing to remove: {project.root} has no {STATE_DIR} folder.", markup=False)
        return
    verb = "would remove" if dry_run else "removed"
    for entry in result.removed:
        out.print(f"{verb} {entry.path} ({entry.kind}, {human_bytes(entry.size)})", markup=False)
    for link in result.skipped:
        settings.err.print(f"left alone: {link} (a symbolic link; gc does not follow links)", markup=False)
    if not result.removed:
        out.print(f"Nothing to remove in {STATE_DIR}; kept {result.kept} entr{'y' if result.kept == 1 else 'ies'}.",
                  markup=False)
        return
    n = len(result.removed)
    what = f"{n} entr{'y' if n == 1 else 'ies'}"
    if dry_run:
        out.print(f"Would remove {what} and free {human_bytes(result.freed)}; would keep {result.kept} "
                  "(nothing was removed: --dry-run).", markup=False)
    else:
        out.print(f"Removed {what}, freed {human_bytes(result.freed)}; kept {result.kept}.", markup=False)
