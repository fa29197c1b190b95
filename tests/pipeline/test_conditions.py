"""Conditions (``when``): every operator, numbers vs strings, all/any/not, Argo's ``when`` text, KFP conjuncts,
and the load-time errors (unknown names, type mismatches) with file, line and key path through ``validate``."""

from __future__ import annotations

import pytest

from compose_kfp.pipeline.conditions import Comparison, Logic, Operand, argo_expression, conjuncts, evaluate
from tests.fixtures.cli import run
from tests.fixtures.control import CONTROL_HEAD, control_project


def number(op: str, value) -> Comparison:
    return Comparison(Operand("task", "number", task="score", output="output"), op,
                      Operand("literal", "number", value=value), "pipeline.tasks.t.when")


def string(op: str, value: str) -> Comparison:
    return Comparison(Operand("param", "string", param="mode"), op, Operand("literal", "string", value=value),
                      "pipeline.tasks.t.when")


TASK_EXPR = lambda task, output: f"{{{{tasks.{task}.outputs.parameters.{output}}}}}"  # noqa: E731


@pytest.mark.parametrize("op, value, text, expected", [
    ("==", 10, "10", True), ("==", 10, "10.0", True), ("!=", 10, "10", False),
    ("<", 9, "10", False), ("<=", 10, "10", True), (">", 9, "10", True), (">=", 10.5, "10", False),
    (">", 0.9, "0.955", True), ("<", 0.9, "0.955", False),
])
def test_every_number_operator_compares_numbers(op, value, text, expected):
    assert evaluate(number(op, value), lambda operand: text) is expected
    assert argo_expression(number(op, value), TASK_EXPR) == f"{{{{tasks.score.outputs.parameters.output}}}} {op} {value}"


@pytest.mark.parametrize("op, value, text, expected", [
    ("==", "10", "10", True), ("==", "10", "10.0", False), ("!=", "9", "10", True), ("==", "fast", "fast", True),
])
def test_strings_compare_as_text_and_are_quoted_for_argo(op, value, text, expected):
    assert evaluate(string(op, value), lambda operand: text) is expected
    # quoted on both sides, so govaluate compares "10" and "9" as text, not as numbers
    assert argo_expression(string(op, value), TASK_EXPR) == f"'{{{{workflow.parameters.mode}}}}' {op} '{value}'"


def test_all_any_not_and_their_kfp_conjuncts():
    high, fast = number(">", 0.9), string("==", "fast")
    cond = Logic("all", (high, Logic("not", (Logic("any", (string("==", "slow"), number("<", 0.1))),))))
    assert evaluate(cond, lambda o: "0.95" if o.source == "task" else "fast") is True
    assert evaluate(cond, lambda o: "0.95" if o.source == "task" else "slow") is False
    assert argo_expression(cond, TASK_EXPR) == (
        "({{tasks.score.outputs.parameters.output}} > 0.9) && (!(('{{workflow.parameters.mode}}' == 'slow') || "
        "({{tasks.score.outputs.parameters.output}} < 0.1)))")
    # not(a or b) = not a and not b: three nested dsl.If blocks, operators negated
    assert [(c.op, c.right.value) for c in conjuncts(cond)] == [(">", 0.9), ("!=", "slow"), (">=", 0.1)]
    assert conjuncts(Logic("any", (high, fast))) is None  # an or cannot be nested
    assert conjuncts(Logic("not", (Logic("all", (high, fast)),))) is None


def test_a_number_that_is_not_a_number_at_run_time_is_an_error():
    with pytest.raises(ValueError, match="pipeline.tasks.t.when: 'n/a' is not a number"):
        evaluate(number(">", 1), lambda o: "n/a")


PIPELINE = '''\
[pipeline]
params = { threshold = 0.5, mode = "fast" }

[pipeline.tasks.score]
step = "score"
args.n = 3

[pipeline.tasks.deploy]
step = "label"
args.s = "go"
'''


@pytest.mark.parametrize("when, line_key, message", [
    ('{ task = "scor", output = "output", op = ">", value = 1 }', "pipeline.tasks.deploy.when.task",
     "unknown task 'scor'; did you mean 'score'?"),
    ('{ task = "score", output = "out", op = ">", value = 1 }', "pipeline.tasks.deploy.when.output",
     "task 'score' (step 'score') has no output 'out'"),
    ('{ param = "treshold", op = ">", value = 1 }', "pipeline.tasks.deploy.when.param",
     "unknown param 'treshold'"),
    ('{ task = "score", output = "output", op = ">", value = "0.5" }', "pipeline.tasks.deploy.when.value",
     "type mismatch: output 'output' of task 'score' is Float (a number), but a string constant is a string"),
    ('{ param = "mode", op = "==", value = 1 }', "pipeline.tasks.deploy.when.value",
     "type mismatch: param 'mode' is String (a string), but the constant 1 is a number"),
    ('{ param = "mode", op = ">", value = "a" }', "pipeline.tasks.deploy.when.op",
     "'>' orders numbers; param 'mode' is a string, compare it with == or !="),
    ('{ all = [{ param = "mode", op = "==", value = { param = "threshold" } }] }',
     "pipeline.tasks.deploy.when.all.0.value", "but param 'threshold' (Float) is a number"),
])
def test_condition_errors_name_file_line_and_key(tmp_path, when, line_key, message):
    project = control_project(tmp_path, PIPELINE + f"when = {when}\n")
    code, _, err = run("-C", str(project), "validate")
    line = (CONTROL_HEAD + PIPELINE).count("\n") + 1
    assert code == 1
    assert err.startswith(f"error: {project / 'kfp.toml'}:{line}: {line_key}: "), err
    assert message in err


def test_a_comparison_needs_an_operator_and_a_value(tmp_path):
    project = control_project(tmp_path, PIPELINE + 'when = { param = "mode", value = "x" }\n')
    code, _, err = run("-C", str(project), "validate")
    assert code == 1 and "pipeline.tasks.deploy.when" in err and "needs `op`" in err
