"""What ``run --local`` shows about a finished run: the summary table, the failing tasks' log tails, the error.

Reads a :class:`~compose_kfp.localrun.results.RunResult`; prints nothing (the CLI prints what these return).
"""

from __future__ import annotations

import json
from pathlib import Path

from compose_kfp.errors import RunError
from compose_kfp.localrun.results import RunResult

__all__ = ["format_summary", "failure_report", "raise_for_failure"]


def _shown_output(value: str | Path, run_dir: Path, width: int = 48) -> str:
    if isinstance(value, Path):
        try:
            return str(value.relative_to(run_dir))
        except ValueError:
            return str(value)
    one_line = value.replace("\n", "\\n")
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def format_summary(result: RunResult):
    """A :class:`rich.table.Table` of the run: task, status (``cached`` for a task whose result was reused), duration (s), outputs (values, or file paths relative to the run folder), and the reason for failed and skipped tasks."""
    from rich.table import Table

    table = Table(title=f"{result.pipeline}: {sum(t.status == 'succeeded' for t in result.tasks)}/"
                        f"{len(result.tasks)} tasks succeeded in {result.duration:.1f} s ({result.executor})",
                  title_justify="left")
    table.add_column("Task")
    table.add_column("Status")
    table.add_column("Duration", justify="right")
    table.add_column("Outputs / reason")
    style = {"succeeded": "green", "failed": "bold red", "skipped": "yellow", "cached": "cyan"}
    for t in result.tasks:
        rows = [t, *t.iterations]
        for row in rows:
            if row.iterations:
                detail = f"{len(row.iterations)} iterations" + (f"; {row.error}" if row.error else "")
            elif row.status == "succeeded":
                detail = "\n".join(f"{k} = {_shown_output(v, result.run_dir)}" for k, v in row.outputs.items()) or "-"
            else:
                detail = row.error or ""
            if row is not t:
                detail = f"item {_shown_output(json.dumps(row.item), result.run_dir)}: {detail}"
            status = "cached" if row.cached else row.status
            table.add_row(row.name, f"[{style[status]}]{status}[/]",
                          f"{row.duration:.1f} s" if row.attempts else "-", detail)
    return table


def failure_report(result: RunResult, tail_lines: int = 40) -> str:
    """For each failed task: its name, why, its log path and the last ``tail_lines`` lines of its log (the traceback)."""
    parts = []
    for t in result.failed:
        lines = []
        if t.log_path and t.log_path.is_file():
            lines = t.log_path.read_text(errors="replace").splitlines()[-tail_lines:]
        head = f"task {t.name!r} failed: {t.error}" + (f" (log: {t.log_path})" if t.log_path else "")
        parts.append("\n".join([head, *("  " + line for line in lines)]))
    return "\n\n".join(parts)


def raise_for_failure(result: RunResult) -> None:
    """Raise :class:`~compose_kfp.errors.RunError` (exit code 7) naming the failed and skipped tasks, unless all succeeded."""
    if result.ok:
        return
    failed = ", ".join(repr(t.name) for t in result.failed)
    skipped = [t.name for t in result.tasks if t.status == "skipped"]
    message = f"pipeline {result.pipeline!r}: task {failed} failed"
    if skipped:
        message += f"; skipped: {', '.join(repr(s) for s in skipped)}"
    raise RunError(message + f"; logs are in {result.run_dir}")
