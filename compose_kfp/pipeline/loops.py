"""Fan-out loops of tasks (``for_each`` in ``[pipeline.tasks.*]``) and their fan-in (``collect = true``).

A task with ``for_each`` runs once per item of a list: a literal array, a list param
(``JsonArray``), or an upstream output typed ``JsonArray``. Its arguments take the item
with ``{ item = true }`` or a field of an object item with ``{ item = "FIELD" }``; a
downstream task takes the list of one of its outputs over all iterations with
``{ task = ..., output = ..., collect = true }``.

Rules, checked at load time by :func:`resolve_loop` and :func:`compose_kfp.pipeline.graph.resolve_graph`:

- loops are one level deep: a looped task cannot read a per-iteration output of another
  looped task (that is a loop inside a loop, or per-iteration chaining); collect it instead;
- an item field must exist in every item when the items are known (literal, param default);
- only parameter outputs (``String``, ``Integer``, ``Float``, ``Boolean``, ``JsonArray``,
  ``JsonObject``) can be collected, and the collecting input must take a list
  (``JsonArray`` or untyped); files cannot be collected (Argo aggregates output parameters only);
- the collected list holds each iteration's output text, in item order, as JSON strings
  (``["0.95", "0.93"]``), which is what Argo's aggregated ``{{tasks.T.outputs.parameters.P}}``
  gives; an empty list runs no iteration and the collector receives ``[]``.

Argo: ``withItems`` (literal) or ``withParam`` (param, output) on the DAG task, ``parallelism``
on it; KFP v2: ``dsl.ParallelFor(items, parallelism)`` and ``dsl.Collected``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from compose_kfp import schema
from compose_kfp.steps.component import canonical_type

__all__ = ["Loop", "resolve_loop", "item_value", "collected_text"]


@dataclass(frozen=True)
class Loop:
    """The ``for_each`` of a task.

    Attributes:
        source: ``literal`` (``items``), ``param`` (``param``) or ``task`` (``task``, ``output``).
        items: the literal items, or the param's default items (``None`` for an upstream output).
        parallelism: at most this many iterations at once (``None``: no limit of its own).
        key: the kfp.toml key path of ``for_each``.
    """

    source: Literal["literal", "param", "task"]
    items: tuple[Any, ...] | None
    param: str | None = None
    task: str | None = None
    output: str | None = None
    parallelism: int | None = None
    key: str = ""


def resolve_loop(conf: schema.TaskConfig, key: str, *, params: Mapping[str, Any], param_types: Mapping[str, str],
                 output_type: Callable[[str, str, str], str | None],
                 error: Callable[[str, str], Exception]) -> Loop | None:
    """The :class:`Loop` of a task's ``for_each`` (``None`` without one), checked.

    Args:
        conf: the task's settings; ``key`` its key path (``pipeline.tasks.train``).
        params: param name -> default; ``param_types`` param name -> KFP v1 type.
        output_type: ``(task, output, key) -> type`` of an upstream output (raises for unknown ones).

    Raises:
        what ``error`` makes: an unknown param; a loop over a param or output that is not a list.
    """
    each = conf.for_each
    lkey = f"{key}.for_each"
    if each is None:
        return None
    if isinstance(each, list):
        return Loop("literal", tuple(each), parallelism=conf.parallelism, key=lkey)
    if isinstance(each, schema.ParamRef):
        if each.param not in params:
            raise error(f"{lkey}.param", f"unknown param {each.param!r} (known: "
                                         f"{', '.join(map(repr, params)) or 'none'})")
        if param_types[each.param] != "JsonArray":
            raise error(f"{lkey}.param", f"for_each loops over a list, but param {each.param!r} is "
                                         f"{param_types[each.param]} (default {json.dumps(params[each.param])}); "
                                         f"give it an array default such as [1, 2]")
        return Loop("param", tuple(params[each.param]), param=each.param, parallelism=conf.parallelism, key=lkey)
    out_type = output_type(each.task, each.output, lkey)
    if canonical_type(out_type) != "JsonArray":
        raise error(f"{lkey}.output", f"for_each loops over a list, but output {each.output!r} of task {each.task!r} "
                                      f"is {out_type or 'untyped'}; the output must be typed as a list (JsonArray)")
    return Loop("task", None, task=each.task, output=each.output, parallelism=conf.parallelism, key=lkey)


def item_value(item: Any, field: str | None) -> Any:
    """The value an ``{ item = ... }`` argument gets from one item: the item, or its ``field``.

    Raises:
        KeyError: ``field`` is given and the item is not an object holding it.
    """
    if field is None:
        return item
    if not isinstance(item, dict) or field not in item:
        raise KeyError(field)
    return item[field]


def collected_text(values: list[str]) -> str:
    """The text a collecting input receives: a JSON array of the iterations' output texts, in item order."""
    return json.dumps(list(values), ensure_ascii=False)
