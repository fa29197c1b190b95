"""KFP v2 control flow: a task graph with conditions, loops and an exit handler as ``dsl`` context managers.

KFP v2 groups tasks in blocks (``dsl.If``, ``dsl.ParallelFor``, ``dsl.ExitHandler``); a task may only
depend on tasks of its own block or of a block around it (``dsl.Collected`` excepted, which reads a
``ParallelFor`` from outside). So each task gets a *scope*, a path of blocks from the outside in:

- one ``dsl.If`` block per comparison of its ``when`` (an ``and`` is nested blocks; ``not`` is pushed
  into the comparisons by negating their operators; an ``or`` cannot be nested and is refused);
- the blocks of the upstream tasks that may skip it (a task skipped with its upstream task is simply in
  that task's ``dsl.If`` block: KFP v2 skips a block as a whole, which is Argo's ``.Succeeded`` rule);
- a ``dsl.ParallelFor`` block when it has ``for_each``.

Upstream scopes must nest (one a prefix of the other), else a :class:`~compose_kfp.errors.RenderError`
says which tasks; ``when_upstream_skipped = "run"`` after a task in a ``dsl.If`` block has no KFP v2 form
and is refused too. ``pipeline.on_exit`` becomes ``dsl.ExitHandler(exit_task)`` around all other blocks.
Blocks are opened in a dependency order of their contents (ties: graph order).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Any

from compose_kfp.errors import RenderError
from compose_kfp.pipeline.conditions import Comparison, conjuncts
from compose_kfp.pipeline.graph import Task, TaskGraph

__all__ = ["add_with_control_flow", "task_scopes"]

Scope = tuple[tuple[Any, ...], ...]


def task_scopes(graph: TaskGraph) -> dict[str, Scope]:
    """Task name -> its scope (see the module docstring): ``("if", task, i)`` and ``("loop", task)`` entries.

    Raises:
        RenderError: an ``or`` in a condition; upstream scopes that do not nest; a task that runs after a
            skipped task (``when_upstream_skipped = "run"``) from outside that task's ``dsl.If`` block.
    """
    conditions: dict[str, Scope] = {}
    scopes: dict[str, Scope] = {}
    for task in graph.tasks:
        inherited: Scope = ()
        for d in task.dependencies:
            up = conditions[d]
            if task.when_upstream_skipped == "run" and graph.may_skip(d):
                raise RenderError(f"{task.where}: KFP v2 cannot run a task after task {d!r}, which may be skipped, "
                                  f"from outside that task's dsl.If block (when_upstream_skipped = \"run\"); "
                                  f"render this pipeline for Argo only")
            if up[:len(inherited)] == inherited:
                inherited = up
            elif inherited[:len(up)] != up:
                raise RenderError(f"{task.where}: its upstream tasks are skipped by unrelated conditions "
                                  f"({_owners(inherited)} and {_owners(up)}); KFP v2 cannot nest this task in both "
                                  f"dsl.If blocks: give it one condition of its own instead")
        own: Scope = ()
        if task.when is not None:
            parts = conjuncts(task.when)
            if parts is None:
                raise RenderError(f"{task.where}.when: KFP v2 nests dsl.If blocks, which makes `all` (and) but not "
                                  f"`any` (or); write the condition without `any`, or render it for Argo only")
            own = tuple(("if", task.name, i) for i in range(len(parts)))
        conditions[task.name] = inherited + own
        scopes[task.name] = conditions[task.name] + ((("loop", task.name),) if task.loop is not None else ())
    return scopes


def _owners(scope: Scope) -> str:
    return ", ".join(dict.fromkeys(repr(entry[1]) for entry in scope)) or "none"


def add_with_control_flow(graph: TaskGraph, add: Callable[[Task, Any], Any], by_param: Mapping[str, Any],
                          tasks: dict[str, Any]) -> None:
    """Create every task of ``graph`` (``add(task, loop_item) -> pipeline task``, stored in ``tasks``) inside
    its ``dsl`` blocks; called inside the ``@dsl.pipeline`` function.

    Raises:
        RenderError: see :func:`task_scopes`.
    """
    from kfp import dsl

    scopes = task_scopes(graph)
    order = {t.name: i for i, t in enumerate(graph.tasks)}
    items: dict[str, Any] = {}

    def emit(prefix: Scope, members: list[Task]) -> None:
        level = len(prefix)
        # Items at this level: a task whose scope is the prefix, or the block (next scope entry) holding others.
        key_of = {t.name: (scopes[t.name][level] if len(scopes[t.name]) > level else ("task", t.name)) for t in members}
        keys = list(dict.fromkeys(key_of[t.name] for t in members))
        first = {k: min(order[t.name] for t in members if key_of[t.name] == k) for k in keys}
        needs = {k: {key_of[d] for t in members if key_of[t.name] == k for d in t.dependencies
                     if d in key_of and key_of[d] != k} for k in keys}
        ready = [(first[k], i) for i, k in enumerate(keys) if not needs[k]]
        heapq.heapify(ready)
        done: set = set()
        while ready:
            _, i = heapq.heappop(ready)
            key = keys[i]
            done.add(key)
            inside = [t for t in members if key_of[t.name] == key]
            if key[0] == "task":
                task = inside[0]
                tasks[task.name] = add(task, items.get(task.name))
            else:
                with _block(key, graph, by_param, tasks, items, dsl):
                    emit(prefix + (key,), inside)
            for j, other in enumerate(keys):
                if other not in done and key in needs[other]:
                    needs[other].discard(key)
                    if not needs[other]:
                        heapq.heappush(ready, (first[other], j))
        if len(done) != len(keys):
            raise RenderError(f"{graph.manifest_path}: pipeline {graph.name!r}: the tasks' dsl blocks depend on "
                              f"each other both ways; KFP v2 cannot order them")

    if graph.exit_task is not None:
        exit_task = add(graph.exit_task, None)
        tasks[graph.exit_task.name] = exit_task
        with dsl.ExitHandler(exit_task):
            emit((), list(graph.tasks))
    else:
        emit((), list(graph.tasks))


def _block(key: tuple[Any, ...], graph: TaskGraph, by_param: Mapping[str, Any], tasks: Mapping[str, Any],
           items: dict[str, Any], dsl: Any):
    """The context manager of one scope entry (``dsl.If`` for a comparison, ``dsl.ParallelFor`` for a loop)."""
    from kfp.dsl import utils as kfp_utils
    from kfp.dsl.pipeline_channel import ConditionOperation

    task = graph.task(key[1])
    if key[0] == "if":
        comparison: Comparison = (conjuncts(task.when) or [])[key[2]]

        def operand(o):
            if o.source == "param":
                return by_param[o.param]
            if o.source == "task":
                return tasks[o.task].outputs[kfp_utils.sanitize_input_name(o.output)]
            return o.value

        return dsl.If(ConditionOperation(comparison.op, operand(comparison.left), operand(comparison.right)),
                      name=f"{task.name} when {key[2]}" if key[2] else f"{task.name} when")
    loop = task.loop
    if loop.source == "literal":
        source = list(loop.items or ())
    elif loop.source == "param":
        source = by_param[loop.param]
    else:
        source = tasks[loop.task].outputs[kfp_utils.sanitize_input_name(loop.output)]
    block = dsl.ParallelFor(source, parallelism=loop.parallelism or 0)

    class _Loop:
        def __enter__(self):
            items[task.name] = block.__enter__()
            return items[task.name]

        def __exit__(self, *exc):
            return block.__exit__(*exc)

    return _Loop()
