"""Conditions of tasks (``when`` in ``[pipeline.tasks.*]``): resolved, type-checked, and turned into each target's form.

:func:`resolve_condition` turns a :class:`compose_kfp.schema.Condition` into a frozen
tree of :class:`Comparison` and :class:`Logic` nodes, checking at load time that every
param, task and output exists and that both sides of each comparison have the same kind
of value:

- ``number``: ``Integer`` and ``Float`` params and outputs, TOML integers and floats;
  every operator applies;
- ``string``: ``String`` params and outputs, TOML strings; ``==`` and ``!=`` only;
- ``boolean``: ``Boolean`` params and outputs, TOML booleans; ``==`` and ``!=`` only.

Other types (lists, objects, files) cannot be compared.

The same tree gives :func:`argo_expression` (Argo's ``when``, evaluated by govaluate:
numbers are written bare, so ``10 > 9``; strings and booleans are quoted on both sides,
``'{{...}}' == 'fast'``, so they compare as text), :func:`evaluate` (the local run, with
the same rules) and :func:`conjuncts` (KFP v2, where ``dsl.If`` takes one comparison and
nested ``dsl.If`` blocks make an ``and``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from compose_kfp import schema
from compose_kfp.manifest.keys import key_part
from compose_kfp.steps.component import canonical_type

__all__ = ["Operand", "Comparison", "Logic", "ResolvedCondition", "resolve_condition", "argo_expression",
           "evaluate", "conjuncts", "comparisons", "describe", "NEGATED"]

Kind = Literal["number", "string", "boolean"]

_KINDS = {"Integer": "number", "Float": "number", "String": "string", "Boolean": "boolean"}
_OPERATORS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
              ">=": operator.ge}
#: The operator that is true exactly when ``op`` is false.
NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


@dataclass(frozen=True)
class Operand:
    """One side of a comparison: a param, a task's output, or a constant (``value``), and its kind."""

    source: Literal["param", "task", "literal"]
    kind: Kind
    param: str | None = None
    task: str | None = None
    output: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Comparison:
    """``left op right``; ``key`` is the kfp.toml key path of the comparison (for messages)."""

    left: Operand
    op: str
    right: Operand
    key: str

    @property
    def kind(self) -> Kind:
        """The kind both sides share."""
        return self.left.kind


@dataclass(frozen=True)
class Logic:
    """``all`` (and), ``any`` (or) or ``not`` of conditions (``not`` has one item)."""

    kind: Literal["all", "any", "not"]
    items: tuple["ResolvedCondition", ...]


ResolvedCondition = Union[Comparison, Logic]


def _kind_of(type_name: str | None) -> str | None:
    return _KINDS.get(canonical_type(type_name) or "")


def _literal_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def resolve_condition(condition: schema.Condition, key: str, *, params: Mapping[str, str],
                      output_type: Callable[[str, str, str], str | None],
                      error: Callable[[str, str], Exception]) -> ResolvedCondition:
    """Resolve and check ``condition`` found at key path ``key``.

    Args:
        params: param name -> its KFP v1 type.
        output_type: ``(task, output, key) -> type`` of a task's output; raises through ``error``
            for an unknown task or output.
        error: ``(key, message) -> exception`` to raise.

    Raises:
        whatever ``error`` makes: an unknown param, a type that cannot be compared, a constant or
        param of another kind than the compared value, an ordering operator on strings or booleans,
        a string constant holding a quote or ``{{``.
    """
    if condition.all is not None or condition.any is not None:
        kind, items = ("all", condition.all) if condition.all is not None else ("any", condition.any)
        return Logic(kind, tuple(resolve_condition(c, f"{key}.{kind}.{i}", params=params, output_type=output_type,
                                                   error=error) for i, c in enumerate(items or [])))
    if condition.not_ is not None:
        return Logic("not", (resolve_condition(condition.not_, f"{key}.not", params=params,
                                               output_type=output_type, error=error),))
    if condition.param is not None:
        if condition.param not in params:
            raise error(f"{key}.param", f"unknown param {condition.param!r}" + _known(params))
        type_name, what = params[condition.param], f"param {condition.param!r}"
        left = Operand("param", "string", param=condition.param)
        where = f"{key}.param"
    else:
        type_name = output_type(condition.task, condition.output, key)
        what = f"output {condition.output!r} of task {condition.task!r}"
        left = Operand("task", "string", task=condition.task, output=condition.output)
        where = f"{key}.output"
    kind = _kind_of(type_name)
    if kind is None:
        raise error(where, f"{what} is {type_name or 'untyped'}; a condition compares numbers (Integer, Float), "
                           f"strings (String) or booleans (Boolean)")
    left = Operand(left.source, kind, param=left.param, task=left.task, output=left.output)
    value = condition.value
    if isinstance(value, schema.ParamRef):
        if value.param not in params:
            raise error(f"{key}.value.param", f"unknown param {value.param!r}" + _known(params))
        right_kind = _kind_of(params[value.param])
        right = Operand("param", right_kind or "string", param=value.param)
        right_what = f"param {value.param!r} ({params[value.param]})"
    else:
        right_kind = _literal_kind(value)
        right = Operand("literal", right_kind, value=value)
        right_what = f"the constant {value!r}" if right_kind != "string" else "a string constant"
    if right_kind != kind:
        raise error(f"{key}.value", f"type mismatch: {what} is {type_name} (a {kind}), but {right_what} is "
                                    f"{'not comparable' if right_kind is None else 'a ' + right_kind}; "
                                    f"compare {kind}s with {kind}s")
    if kind != "number" and condition.op not in ("==", "!="):
        raise error(f"{key}.op", f"{condition.op!r} orders numbers; {what} is a {kind}, compare it with == or !=")
    if right.source == "literal" and isinstance(value, str) and ("'" in value or "{{" in value):
        raise error(f"{key}.value", "a string constant in a condition cannot hold `'` or `{{` (Argo's `when` "
                                    "quotes strings with `'` and substitutes `{{...}}`)")
    return Comparison(left, condition.op, right, key)


def _known(names: Mapping[str, Any]) -> str:
    return f" (known: {', '.join(map(repr, names)) or 'none'})"


def comparisons(condition: ResolvedCondition | None) -> list[Comparison]:
    """Every comparison of ``condition`` (none for ``None``), depth first."""
    if condition is None:
        return []
    if isinstance(condition, Comparison):
        return [condition]
    return [c for item in condition.items for c in comparisons(item)]


# --------------------------------------------------------------------------- Argo

def argo_expression(condition: ResolvedCondition, task_expr: Callable[[str, str], str]) -> str:
    """Argo's ``when`` text of ``condition`` (govaluate syntax).

    Args:
        task_expr: ``(task, output) -> "{{tasks.<k8s name>.outputs.parameters.<name>}}"``.

    Numbers are written bare on both sides (``{{...}} > 0.9``); strings and booleans are quoted
    with ``'`` on both sides so govaluate compares text (``'{{...}}' == '10'``); ``all`` ->
    ``&&``, ``any`` -> ``||``, ``not`` -> ``!``, each part in parentheses.
    """
    if isinstance(condition, Logic):
        parts = [f"({argo_expression(c, task_expr)})" for c in condition.items]
        if condition.kind == "not":
            return f"!{parts[0]}"
        return (" && " if condition.kind == "all" else " || ").join(parts)

    def side(operand: Operand) -> str:
        if operand.source == "param":
            text = f"{{{{workflow.parameters.{operand.param}}}}}"
        elif operand.source == "task":
            text = task_expr(operand.task, operand.output)
        else:
            text = _literal_text(operand.value)
        return text if condition.kind == "number" else f"'{text}'"

    return f"{side(condition.left)} {condition.op} {side(condition.right)}"


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- local run

def evaluate(condition: ResolvedCondition, value_of: Callable[[Operand], str]) -> bool:
    """Whether ``condition`` holds, the way Argo's ``when`` decides it.

    Args:
        value_of: the run-time text of a param or task operand (an output one trailing newline removed).

    Raises:
        ValueError: a number operand whose text is not a number (the message names it).
    """
    if isinstance(condition, Logic):
        if condition.kind == "not":
            return not evaluate(condition.items[0], value_of)
        results = (evaluate(c, value_of) for c in condition.items)
        return all(results) if condition.kind == "all" else any(results)

    def side(operand: Operand) -> Any:
        text = _literal_text(operand.value) if operand.source == "literal" else value_of(operand)
        if condition.kind == "number":
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{condition.key}: {text!r} is not a number") from None
        return text.strip().lower() if condition.kind == "boolean" else text

    return _OPERATORS[condition.op](side(condition.left), side(condition.right))


# --------------------------------------------------------------------------- KFP v2

def conjuncts(condition: ResolvedCondition) -> list[Comparison] | None:
    """``condition`` as an ``and`` of comparisons (``not`` pushed inside by De Morgan and by negating
    operators), or ``None`` when an ``or`` remains (KFP v2's nested ``dsl.If`` blocks only make ``and``)."""

    def walk(c: ResolvedCondition, negate: bool) -> list[Comparison] | None:
        if isinstance(c, Comparison):
            return [Comparison(c.left, NEGATED[c.op], c.right, c.key) if negate else c]
        if c.kind == "not":
            return walk(c.items[0], not negate)
        if (c.kind == "all") == negate:  # an or (any, or not of all)
            if len(c.items) == 1:
                return walk(c.items[0], negate)
            return None
        out: list[Comparison] = []
        for item in c.items:
            part = walk(item, negate)
            if part is None:
                return None
            out += part
        return out

    return walk(condition, False)


def describe(condition: ResolvedCondition) -> str:
    """A one-line human form of ``condition`` (for the run summary): ``evaluate.accuracy > threshold``."""
    if isinstance(condition, Logic):
        parts = [f"({describe(c)})" for c in condition.items]
        return f"not {parts[0]}" if condition.kind == "not" else (
            " and " if condition.kind == "all" else " or ").join(parts)

    def side(o: Operand) -> str:
        if o.source == "param":
            return o.param or ""
        if o.source == "task":
            return f"{key_part(o.task or '')}.{key_part(o.output or '')}"
        return repr(o.value)

    return f"{side(condition.left)} {condition.op} {side(condition.right)}"
