"""The ``run`` command (``compose-kfp run --local``), registered on :data:`compose_kfp.cli.app.app`.

Thin: parses the options, loads the project and calls :func:`compose_kfp.localrun.project.run_project`
(the images kfp.lock pins, the stale-layer warnings, the run itself), prints its warnings and notes and
one line per task event on stderr and the summary table on stdout. A run with a failed task prints the
failing tasks' log tails (their tracebacks) on stderr and raises
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
    secrets_dir: Annotated[Optional[Path], typer.Option(
        "--secrets-dir", help="Folder of SECRET/KEY files for tasks' Secret and ConfigMap references (an environment "
                              "variable of the same name wins).", file_okay=False)] = None,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Run every task, reusing no cached result (fresh results are still cached).")] = False,
) -> None:
    """Run the pipeline in the images kfp.lock pins: outputs and logs under the run folder, a summary table."""
    from compose_kfp.localrun.project import run_project
    from compose_kfp.localrun.report import failure_report, format_summary, raise_for_failure

    settings = _settings(ctx)
    settings.json = as_json  # errors as JSON on stderr too (cli.boundary)
    if not local:
        raise ConfigError("only local runs are supported so far: use `compose-kfp run --local`")
    params = parse_params(param or [])
    project = settings.project()

    def on_notice(kind: str, text: str) -> None:
        settings.err.print(f"{kind}: {text}", markup=False)

    def on_event(event: Any) -> None:
        if as_json:
            return
        if event.kind == "started":
            settings.err.print(f"▶ {event.task} started" + (f" ({event.message})" if event.message else ""),
                               markup=False)
        elif event.kind in ("finished", "skipped") and event.result is not None:
            r = event.result
            extra = f" in {r.duration:.1f} s" if event.kind == "finished" and not r.cached else ""
            status = "cached" if r.cached else r.status
            settings.err.print(f"■ {event.task} {status}{extra}" + (f": {r.error}" if r.error else ""),
                               markup=False)

    result = run_project(project, params=params, run_dir=run_dir, executor=executor.value,  # type: ignore[arg-type]
                         max_parallel=parallel, on_event=on_event, on_notice=on_notice, secrets_dir=secrets_dir,
                         reuse_results=not no_cache)
    if as_json:
        settings.result.print(json.dumps(result.to_dict(), indent=2), markup=False)
    else:
        settings.out.print(format_summary(result))
        settings.out.print(f"Outputs and logs: {result.run_dir}", markup=False)
        if not result.ok:
            settings.err.print(failure_report(result), markup=False)
    raise_for_failure(result)
