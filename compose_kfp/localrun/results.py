"""The values a local run produces: :class:`TaskResult` per task, :class:`RunResult` per run, :class:`TaskEvent` progress.

Plain frozen dataclasses (no I/O), made by :func:`compose_kfp.localrun.runner.run_local` and read by the
reports (:mod:`compose_kfp.localrun.report`) and the CLI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

__all__ = ["Status", "TaskResult", "RunResult", "TaskEvent", "EventCallback"]

Status = Literal["succeeded", "failed", "skipped"]


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """What happened to one task.

    Attributes:
        name: task name (``kfp.toml``); ``k8s_name`` its folder name under the run folder.
        status: ``succeeded``, ``failed`` or ``skipped``.
        duration: seconds the command ran (all attempts; 0 for skipped tasks).
        outputs: output name -> its value (``str``, for parameter outputs up to
            :data:`~compose_kfp.localrun.runner.MAX_VALUE_BYTES`, one trailing newline removed) or its host path (files, folders).
            Empty unless the task succeeded.
        output_paths: output name -> host path of every output written.
        log_path: the task's log (stdout + stderr), ``None`` for skipped tasks.
        exit_code: the command's exit status (``None`` when it did not run or was stopped).
        error: why it failed or was skipped, ``None`` when it succeeded.
        argv: the command line that ran (after placeholder and Argo variable substitution).
        image: the image reference it ran in.
        attempts: how many times the command ran (all iterations, for a ``for_each`` task).
        iterations: for a ``for_each`` task, one result per item, in item order (named ``task[i]``).
        item: for one iteration, its item.
        cached: it succeeded without running: its outputs came from the result cache (for a ``for_each`` task:
            every iteration did); ``duration`` and ``attempts`` are then 0.
    """

    name: str
    k8s_name: str
    status: Status
    duration: float = 0.0
    outputs: Mapping[str, str | Path] = dataclasses.field(default_factory=dict)
    output_paths: Mapping[str, Path] = dataclasses.field(default_factory=dict)
    log_path: Path | None = None
    exit_code: int | None = None
    error: str | None = None
    argv: tuple[str, ...] = ()
    image: str | None = None
    attempts: int = 0
    iterations: tuple["TaskResult", ...] = ()
    item: Any = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings)."""
        return {
            "name": self.name, "status": self.status, "duration": round(self.duration, 3),
            "outputs": {k: (str(v) if isinstance(v, Path) else v) for k, v in self.outputs.items()},
            "output_paths": {k: str(v) for k, v in self.output_paths.items()},
            "log": str(self.log_path) if self.log_path else None, "exit_code": self.exit_code,
            "error": self.error, "argv": list(self.argv), "image": self.image, "attempts": self.attempts,
            "cached": self.cached,
            **({"iterations": [it.to_dict() for it in self.iterations]} if self.iterations else {}),
            **({"item": self.item} if self.item is not None else {}),
        }


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The result of :func:`~compose_kfp.localrun.runner.run_local`: one :class:`TaskResult` per task, in graph order."""

    pipeline: str
    run_dir: Path
    executor: str
    tasks: tuple[TaskResult, ...]
    duration: float
    params: Mapping[str, str]

    @property
    def ok(self) -> bool:
        """No task failed (tasks skipped by a condition, an empty loop or a failed upstream task do not count;
        a failed upstream task is itself in :attr:`failed`)."""
        return not self.failed

    @property
    def failed(self) -> tuple[TaskResult, ...]:
        """The failed tasks (not the skipped ones), in graph order."""
        return tuple(t for t in self.tasks if t.status == "failed")

    def task(self, name: str) -> TaskResult:
        """The result of task ``name``; ``KeyError`` if there is none."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"pipeline": self.pipeline, "run_dir": str(self.run_dir), "executor": self.executor,
                "ok": self.ok, "duration": round(self.duration, 3), "params": dict(self.params),
                "tasks": [t.to_dict() for t in self.tasks]}


@dataclasses.dataclass(frozen=True)
class TaskEvent:
    """A progress event: ``kind`` is ``fetching`` (image), ``started``, ``finished`` or ``skipped``.

    ``result`` is set for ``finished`` and ``skipped``. Events may come from worker threads.
    """

    task: str
    kind: Literal["fetching", "started", "finished", "skipped"]
    result: TaskResult | None = None
    message: str = ""


EventCallback = Callable[[TaskEvent], None]
