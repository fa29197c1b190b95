"""Fan-out (``for_each``), fan-in (``collect``), the exit handler and task env references: the resolved graph,
and the load-time errors with file, line and key path through ``compose-kfp validate`` (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose_kfp.manifest.project import load_project
from tests.fixtures.cli import run
from tests.fixtures.control import CONTROL_HEAD, control_project

LOOP = '''\
[pipeline]
params = { ns = [1, 2, 3], one = 4, pairs = [{ x = 1 }, { x = 2 }] }
on_exit = "notify"

[pipeline.tasks.numbers]
step = "numbers"

[pipeline.tasks.square]
step = "square"
for_each = { param = "ns" }
parallelism = 2
args.x = { item = true }

[pipeline.tasks.square_output]
step = "square"
for_each = { task = "numbers", output = "output" }
args.x = { item = true }

[pipeline.tasks.square_field]
step = "square"
for_each = { param = "pairs" }
args.x = { item = "x" }

[pipeline.tasks.summarize]
step = "summarize"
args.values = { task = "square", output = "output", collect = true }

[pipeline.tasks.notify]
step = "notify"
args.status = { status = "pipeline" }
'''


def test_loops_collect_and_exit_handler_resolve(tmp_path):
    graph = load_project(control_project(tmp_path, LOOP)).graph
    assert [t.name for t in graph.tasks] == ["numbers", "square", "square_output", "square_field", "summarize"]
    assert graph.exit_task.name == "notify" and graph.exit_task.exit_handler
    assert graph.all_tasks[-1] is graph.exit_task and "notify" in graph.steps
    square = graph.task("square")
    assert (square.loop.source, square.loop.items, square.loop.parallelism) == ("param", (1, 2, 3), 2)
    assert square.argument("x").source == "item" and square.argument("x").item_field is None
    assert graph.task("square_field").argument("x").item_field == "x"
    assert graph.task("square_output").dependencies == ("numbers",)
    assert graph.task("numbers").output("output").by_value  # withParam reads it as an output parameter
    collect = graph.task("summarize").argument("values")
    assert collect.collect and graph.task("summarize").dependencies == ("square",)
    assert graph.has_control_flow


def expect_error(tmp_path: Path, pipeline: str, key: str, message: str, line_of: str) -> None:
    project = control_project(tmp_path, pipeline)
    code, _, err = run("-C", str(project), "validate")
    text = CONTROL_HEAD + pipeline
    line = text[:text.index(line_of)].count("\n") + 1
    assert code == 1, err
    assert err.startswith(f"error: {project / 'kfp.toml'}:{line}: {key}: "), err
    assert message in err, err


@pytest.mark.parametrize("old, new, key, message, line_of", [
    ('for_each = { param = "ns" }', 'for_each = { param = "one" }', "pipeline.tasks.square.for_each.param",
     "for_each loops over a list, but param 'one' is Integer (default 4)", 'for_each = { param = "one" }'),
    ('for_each = { task = "numbers", output = "output" }', "for_each = { task = \"square_field\", output = \"output\" }",
     "pipeline.tasks.square_output.for_each.output",
     "for_each loops over a list, but output 'output' of task 'square_field' is Integer", 'for_each = { task = "sq'),
    ('args.values = { task = "square", output = "output", collect = true }',
     'args.values = { task = "numbers", output = "output", collect = true }',
     "pipeline.tasks.summarize.args.values.collect", "task 'numbers' has no `for_each`, so there is nothing to collect",
     'args.values = { task = "numbers"'),
    ('args.values = { task = "square", output = "output", collect = true }',
     'args.values = { task = "square", output = "output" }', "pipeline.tasks.summarize.args.values",
     "task 'square' runs once per item of its `for_each`; take its outputs as a list with `collect = true`",
     'args.values = { task = "square"'),
    ('args.x = { item = "x" }', 'args.x = { item = "y" }', "pipeline.tasks.square_field.args.x.item",
     "item 0 of pipeline.tasks.square_field.for_each ({\"x\": 1}) has no field 'y'", 'args.x = { item = "y" }'),
    ('[pipeline.tasks.numbers]\nstep = "numbers"\n', '[pipeline.tasks.numbers]\nstep = "numbers"\n'
     'args.bad = { item = true }\n', "pipeline.tasks.numbers.args.bad", "step 'numbers' has no input 'bad'",
     "args.bad"),
    ('args.status = { status = "pipeline" }', 'args.status = { task = "numbers", output = "output" }',
     "pipeline.tasks.notify", "the exit handler (`pipeline.on_exit`) runs after every task whatever happened",
     "[pipeline.tasks.notify]"),
    ('on_exit = "notify"', 'on_exit = "notfy"', "pipeline.on_exit", "unknown task 'notfy'; did you mean 'notify'?",
     'on_exit = "notfy"'),
    ('[pipeline.tasks.numbers]\nstep = "numbers"\n', '[pipeline.tasks.numbers]\nstep = "numbers"\n'
     'env = { API_TOKEN = "hunter2" }\n', "pipeline.tasks.numbers.env.API_TOKEN",
     "a task's env takes references only", "env = {"),
])
def test_loop_exit_and_reference_errors(tmp_path, old, new, key, message, line_of):
    assert old in LOOP
    expect_error(tmp_path, LOOP.replace(old, new), key, message, line_of)


def test_a_loop_inside_a_loop_is_refused(tmp_path):
    pipeline = LOOP + '''
[pipeline.tasks.nested]
step = "square"
for_each = [1]
args.x = { task = "square", output = "output" }
'''
    expect_error(tmp_path, pipeline, "pipeline.tasks.nested.args.x",
                 "take its outputs as a list with `collect = true` (a loop inside a loop is not supported)",
                 'args.x = { task = "square", output = "output" }')


def test_the_status_is_only_for_the_exit_handler_and_a_literal_secret_is_never_echoed(tmp_path):
    pipeline = LOOP.replace('args.x = { item = "x" }', 'args.x = { item = "x" }\nargs.y = { status = "pipeline" }')
    project = control_project(tmp_path / "a", pipeline)
    code, _, err = run("-C", str(project), "validate")
    assert code == 1 and "no input 'y'" in err
    project = control_project(tmp_path / "b", LOOP.replace('step = "numbers"\n', 'step = "numbers"\n'
                                                           'env = { DB_PASSWORD = "hunter2" }\n', 1))
    code, _, err = run("-C", str(project), "validate")
    assert code == 1 and "hunter2" not in err and "references only" in err


def test_run_after_a_skipped_task_cannot_read_its_output(tmp_path):
    pipeline = LOOP + '''
[pipeline.tasks.maybe]
step = "square"
args.x = 2
when = { param = "one", op = ">", value = 5 }

[pipeline.tasks.after_maybe]
step = "square"
args.x = { task = "maybe", output = "output" }
when_upstream_skipped = "run"
'''
    expect_error(tmp_path, pipeline, "pipeline.tasks.after_maybe.when_upstream_skipped",
                 "reads an output of task 'maybe', which may be skipped", 'when_upstream_skipped = "run"')
