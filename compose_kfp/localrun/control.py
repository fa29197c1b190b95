"""Control flow of ``run --local``: which tasks run, with Argo's rules, and where secret references come from.

The local runner (:mod:`compose_kfp.localrun.runner`) asks :func:`gate` whether a task whose
upstream tasks have all finished may run, :func:`loop_items` for the items of a ``for_each``, and
:func:`reference_values` for the values of a task's ``env`` references and the folders of its
``secret_volumes``.

Phases are Argo's node phases: ``Succeeded``, ``Failed``, ``Skipped`` (a condition was false, or a
``for_each`` had no items) and ``Omitted`` (the ``depends`` rule was not met). In a pipeline with control
flow (:attr:`~compose_kfp.pipeline.graph.TaskGraph.has_control_flow`) a dependency is met as the
rendered ``depends`` says (see :meth:`compose_kfp.pipeline.render.workflow._Builder._depends`): the
upstream ``Succeeded``; with ``when_upstream_skipped = "run"`` also ``Skipped``/``Omitted`` for an
upstream that may be skipped; for a collected loop without a condition also ``Skipped``. Without control
flow a dependency is met when the upstream task succeeded, as Argo's ``dependencies`` behave with a
failed task.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from compose_kfp import schema
from compose_kfp.errors import RunError
from compose_kfp.pipeline.conditions import describe, evaluate
from compose_kfp.pipeline.graph import Task, TaskGraph

__all__ = ["gate", "loop_items", "reference_values", "secret_folders"]


def gate(graph: TaskGraph, task: Task, phases: Mapping[str, str],
         value_of: Callable[[Any], str]) -> tuple[str, str] | None:
    """Whether ``task`` runs, once every task it depends on has a phase.

    Args:
        phases: task name -> Argo phase of every finished task.
        value_of: the run-time text of a condition operand (see :func:`compose_kfp.pipeline.conditions.evaluate`).

    Returns:
        ``None`` to run it, or ``(phase, reason)``: ``("Omitted", "upstream task 'x' failed")`` or
        ``("Skipped", "condition is false: ...")``.

    Raises:
        RunError: a number in the condition is not a number at run time.
    """
    collected = {a.task for a in task.arguments if a.source == "task" and a.collect}
    for d in task.dependencies:
        phase = phases[d]
        if phase == "Succeeded":
            continue
        if graph.has_control_flow:
            if task.when_upstream_skipped == "run" and graph.may_skip(d) and phase in ("Skipped", "Omitted"):
                continue
            if d in collected and graph.task(d).when is None and phase == "Skipped":
                continue
        word = {"Failed": "failed", "Skipped": "skipped", "Omitted": "skipped"}[phase]
        return "Omitted", f"upstream task {d!r} {word}"
    if task.when is not None:
        try:
            holds = evaluate(task.when, value_of)
        except ValueError as e:
            raise RunError(f"{task.where}.when: {e}") from None
        if not holds:
            return "Skipped", f"condition is false: {describe(task.when)}"
    return None


def loop_items(task: Task, params: Mapping[str, str], output_text: Callable[[str, str], str]) -> list[Any]:
    """The items of ``task``'s ``for_each``: the literal list, the param's run-time JSON, or the upstream output's JSON.

    Raises:
        RunError: the param or output text is not a JSON array.
    """
    loop = task.loop
    assert loop is not None
    if loop.source == "literal":
        return list(loop.items or ())
    if loop.source == "param":
        text, what = params[loop.param], f"param {loop.param!r}"
    else:
        text, what = output_text(loop.task, loop.output), f"output {loop.output!r} of task {loop.task!r}"
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list):
        raise RunError(f"{task.where}.for_each: {what} is not a JSON array: {text[:80]!r}")
    return items


def reference_values(task: Task, secrets_dir: Path | None,
                     environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """The values of ``task``'s ``env`` references for a local run, and one line per variable saying where it came from.

    Each variable ``NAME`` (``{ secret = S, key = K }`` or ``{ config_map = C, key = K }``) is taken from
    the environment variable ``NAME`` of this process, else from the file ``<secrets_dir>/<S or C>/<K>``
    (the layout of a mounted Secret or ConfigMap). The lines name the variable and its source, never the value.

    Raises:
        RunError: a variable found in neither place (the message says both places).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    lines: list[str] = []
    for name, ref in task.env_refs:
        kind, source = ("secret", ref.secret) if isinstance(ref, schema.SecretKeyRef) else ("config map", ref.config_map)
        if name in environ:
            values[name] = environ[name]
            lines.append(f"env {name} ({kind} {source}, key {ref.key}): from the environment variable {name}")
            continue
        path = secrets_dir / source / ref.key if secrets_dir is not None else None
        if path is not None and path.is_file():
            values[name] = path.read_text()
            lines.append(f"env {name} ({kind} {source}, key {ref.key}): from the file {path}")
            continue
        where = f" or write the file {path}" if path is not None else " or pass --secrets-dir DIR with DIR/" \
                                                                       f"{source}/{ref.key}"
        raise RunError(f"{task.where}.env.{name}: the {kind} {source!r} (key {ref.key!r}) is a cluster reference; "
                       f"for a local run set the environment variable {name}{where}")
    return values, lines


def secret_folders(task: Task, secrets_dir: Path | None) -> list[tuple[Path, str]]:
    """``(host folder, mount path)`` of each of ``task``'s ``secret_volumes``: ``<secrets_dir>/<secret>``.

    Raises:
        RunError: no ``secrets_dir``, or the folder is missing.
    """
    folders = []
    for i, volume in enumerate(task.secret_volumes):
        folder = secrets_dir / volume.secret if secrets_dir is not None else None
        if folder is None or not folder.is_dir():
            raise RunError(f"{task.where}.secret_volumes.{i}: secret {volume.secret!r} is mounted at "
                           f"{volume.mount_path}; for a local run pass --secrets-dir DIR with a folder "
                           f"DIR/{volume.secret}/ holding one file per key")
        folders.append((folder, volume.mount_path))
    return folders
