"""The resolved task graph: order, arguments, consumers, validation errors, and command lines for the local runner."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from compose_kfp.steps.component import ComponentSpec, InputSpec, OutputSpec
from compose_kfp.errors import ConfigError
from compose_kfp.pipeline.graph import dns1123_name, literal_text, resolve_graph
from compose_kfp.steps.placeholders import Bindings, input_path, io_name, output_path, resolve_command_line
from tests.fixtures.pipeline_graphs import COMPONENTS, IMAGE, STEPS_TOML, THIRD_PARTY, manifest_from_toml, scenario_graph


def resolve(body: str, images=None, components=COMPONENTS):
    return resolve_graph(manifest_from_toml(STEPS_TOML + body), components, manifest_path=Path("proj/kfp.toml"),
                         images=images)


def test_diamond_declared_out_of_order_is_topological_with_declaration_ties():
    _, graph = scenario_graph("diamond")
    assert [t.name for t in graph.tasks] == ["a", "b", "c", "d"]
    assert graph.task("d").dependencies == ("b", "c")
    assert graph.downstream("b") == ("d",)
    assert graph.downstream("a") == ("b", "c", "d")
    assert graph.steps == ("load", "train", "combine")


def test_ties_follow_declaration_order_not_names():
    graph = resolve("""
[pipeline.tasks.zeta]
step = "load"
args.test_size = 0.1
[pipeline.tasks.alpha]
step = "load"
args.test_size = 0.2
""")
    assert [t.name for t in graph.tasks] == ["zeta", "alpha"]


def test_arguments_params_defaults_and_literals():
    _, graph = scenario_graph("fan_out")
    assert [(p.name, p.default, p.type, p.default_text) for p in graph.params] == [("n", 10, "Integer", "10")]
    load = graph.task("load")
    seed = load.argument("seed")
    assert (seed.source, seed.text, seed.from_default) == ("literal", "1", True)
    assert load.argument("test_size").text == "0.2"
    assert load.present_inputs == {"test_size", "seed"}
    train_a = graph.task("train_a")
    dataset = train_a.argument("dataset")
    assert (dataset.source, dataset.task, dataset.output, dataset.uses_path, dataset.uses_value) == \
        ("task", "load", "train_set", True, False)
    assert dataset.key == "pipeline.tasks.train_a.args.dataset"
    assert train_a.argument("n").param == "n"
    assert graph.task("train_b").argument("n").text == "50"
    assert train_a.image == IMAGE and train_a.k8s_name == "train-a"


def test_output_consumers_decide_parameter_or_artifact():
    _, graph = scenario_graph("third_party")
    load = graph.task("load")
    train_set, test_set, rows = (load.output(n) for n in ("train_set", "test_set", "rows"))
    assert train_set.consumers == (("report_verbose", "Data file"),)
    assert (train_set.by_path, train_set.by_value, train_set.as_artifact, train_set.as_parameter) == \
        (True, False, True, False)
    assert test_set.consumers == (("report", "Data file"),)
    assert (rows.by_value, rows.as_parameter, rows.as_artifact) == (True, True, False)
    report = graph.task("report").output("Report")
    assert report.consumers == (("total", "note"),) and report.as_parameter
    # Not consumed: a typed scalar becomes a parameter, anything else an artifact.
    assert graph.task("report_verbose").output("Report").as_parameter
    _, graph = scenario_graph("artifacts")
    model_out = graph.task("train").output("model")
    score_out = graph.task("train").output("score")
    assert model_out.as_artifact and not model_out.as_parameter
    assert score_out.as_parameter and not score_out.as_artifact and score_out.consumers == ()


def test_after_adds_dependencies():
    _, graph = scenario_graph("retries")
    assert graph.task("train").after == ("load",)
    assert graph.task("train").dependencies == ("load",)
    graph = resolve("""
[pipeline.tasks.first]
step = "load"
args.test_size = 0.1
[pipeline.tasks.second]
step = "load"
args.test_size = 0.2
after = ["first"]
""")
    assert graph.task("second").dependencies == ("first",)


def test_pipeline_name_is_dns1123_and_validation_only_keeps_images_none():
    graph = resolve("""
[pipeline]
name = "Iris Training_v2!"
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
""")
    assert graph.name == "Iris Training_v2!" and graph.k8s_name == "iris-training-v2"
    assert graph.task("load").image is None  # no images: validation only


@pytest.mark.parametrize("text, expected", [
    ("iris", "iris"), ("Iris Classifier_v2", "iris-classifier-v2"), ("--a--b--", "a-b"),
    ("x" * 80, "x" * 63), ("ünïcode", "n-code"), ("***", ""),
])
def test_dns1123_name(text, expected):
    assert dns1123_name(text) == expected


def test_dns1123_truncation_never_ends_with_dash():
    assert dns1123_name("a" * 56 + "-bcd", 57) == "a" * 56


@pytest.mark.parametrize("value, text", [
    ("a: b", "a: b"), (True, "true"), (False, "false"), (3, "3"), (0.1, "0.1"),
    ([1, "a"], '[1, "a"]'), ({"k": "ü"}, '{"k": "ü"}'),
])
def test_literal_text(value, text):
    assert literal_text(value) == text


ERRORS = {
    "unknown step": ("""
[pipeline.tasks.t]
step = "laod"
args.test_size = 0.1
""", ["proj/kfp.toml: pipeline.tasks.t.step:", "unknown step 'laod'", "did you mean 'load'?"]),
    "unknown task": ("""
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
[pipeline.tasks.train]
step = "train"
args = { dataset = { task = "lood", output = "train_set" }, n = 1 }
""", ["pipeline.tasks.train.args.dataset.task:", "unknown task 'lood'", "did you mean 'load'?"]),
    "unknown output": ("""
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
[pipeline.tasks.train]
step = "train"
args = { dataset = { task = "load", output = "trian_set" }, n = 1 }
""", ["pipeline.tasks.train.args.dataset.output:", "no output 'trian_set'", "did you mean 'train_set'?"]),
    "unknown input": ("""
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
args.seeed = 3
""", ["pipeline.tasks.load.args.seeed:", "no input 'seeed'", "did you mean 'seed'?"]),
    "unknown input quoted key": ("""
[pipeline.tasks.r]
step = "report"
args = { "Data fle" = "x", Label = "l" }
""", ['pipeline.tasks.r.args."Data fle":', "did you mean 'Data file'?"]),
    "unknown param": ("""
[pipeline]
params = { test_size = 0.2 }
[pipeline.tasks.load]
step = "load"
args.test_size = { param = "tset_size" }
""", ["pipeline.tasks.load.args.test_size.param:", "unknown param 'tset_size'", "did you mean 'test_size'?"]),
    "required input missing": ("""
[pipeline.tasks.load]
step = "load"
""", ["pipeline.tasks.load.args:", "required input 'test_size'", "has no argument"]),
    "type mismatch output": ("""
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
[pipeline.tasks.ev]
step = "evaluate"
args = { model = { task = "load", output = "train_set" }, test_set = { task = "load", output = "test_set" } }
""", ["pipeline.tasks.ev.args.model:", "type mismatch", "Dataset", "Model"]),
    "type mismatch literal": ("""
[pipeline.tasks.load]
step = "load"
args.test_size = "big"
""", ["pipeline.tasks.load.args.test_size:", "type mismatch", "String", "Float"]),
    "type mismatch param": ("""
[pipeline]
params = { flag = true }
[pipeline.tasks.load]
step = "load"
args.test_size = { param = "flag" }
""", ["pipeline.tasks.load.args.test_size:", "param 'flag' is Boolean"]),
    "cycle": ("""
[pipeline.tasks.start]
step = "load"
args.test_size = 0.1
[pipeline.tasks.a]
step = "combine"
args = { a = { task = "c", output = "total" }, b = 1.0 }
[pipeline.tasks.b]
step = "combine"
args = { a = { task = "a", output = "total" }, b = 1.0 }
[pipeline.tasks.c]
step = "combine"
args = { a = { task = "b", output = "total" }, b = 1.0 }
after = ["start"]
""", ["pipeline.tasks:", "cycle", "a -> b -> c -> a"]),
    "self after": ("""
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
after = ["load"]
""", ["cycle: load -> load"]),
    "unknown after": ("""
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
after = ["nothing"]
""", ["pipeline.tasks.load.after.0:", "unknown task 'nothing'"]),
    "k8s name collision": ("""
[pipeline.tasks.train_model]
step = "load"
args.test_size = 0.1
[pipeline.tasks.train-model]
step = "load"
args.test_size = 0.1
""", ["both become 'train-model'"]),
    "bad param name": ("""
[pipeline]
params = { "my-param" = 1 }
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
""", ["pipeline.params.my-param:", "identifier"]),
    "no tasks": ("""
[pipeline]
params = { a = 1 }
""", ["pipeline.tasks:", "no tasks"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_validation_errors_name_file_key_and_suggestion(case):
    body, fragments = ERRORS[case]
    with pytest.raises(ConfigError) as info:
        resolve(body)
    message = str(info.value)
    assert message.startswith("proj/kfp.toml: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_image_is_an_error_when_images_are_given():
    with pytest.raises(ConfigError, match=r"steps.train: no image digest for step 'train'"):
        resolve("""
[pipeline.tasks.load]
step = "load"
args.test_size = 0.1
[pipeline.tasks.train]
step = "train"
args = { dataset = { task = "load", output = "train_set" }, n = 1 }
""", images={"load": IMAGE})


def test_third_party_image_is_kept_when_images_lack_the_step():
    _, graph = scenario_graph("third_party")
    assert graph.task("report").image == THIRD_PARTY.image
    assert graph.task("load").image == IMAGE


# --------------------------------------------------------------------------- command lines (local runner side)


def test_command_line_of_a_python_step_with_concrete_values():
    _, graph = scenario_graph("artifacts")
    evaluate = graph.task("evaluate")
    line = evaluate.command_line(values={}, input_paths={"model": "/run/train/model", "test_set": "/run/load/ts"},
                                 output_paths={"accuracy": "/run/evaluate/accuracy"})
    assert line.argv == ["python3", "-m", "compose_kfp.runtime", "src/p.py:evaluate",
                         "--in", "model", "/run/train/model", "--in", "test_set", "/run/load/ts",
                         "--out", "accuracy", "/run/evaluate/accuracy"]


def test_command_line_of_third_party_concat_if_ispresent():
    _, graph = scenario_graph("third_party")
    plain = graph.task("report").command_line(
        values={"Label": "run 1", "Verbose": "false"}, input_paths={"Data file": "/d"},
        output_paths={"Report": "/o"})
    assert plain.command == THIRD_PARTY.command  # Argo expressions in literal strings are untouched
    assert plain.args == ("/d", "label=run 1/{{pod.name}}", "/o", "--no-extra")
    verbose = graph.task("report_verbose")
    line = verbose.command_line(values={"Label": "fixed", "Verbose": "true", "Extra": "x y"},
                                input_paths={"Data file": "/d"}, output_paths={"Report": "/o"})
    assert line.args == ("/d", "label=fixed/{{pod.name}}", "/o", "--extra", "x y", "--verbose")


def test_absent_optional_input_is_dropped_and_present_one_kept():
    _, graph = scenario_graph("fan_in")
    join = graph.task("join")
    assert "note" not in join.present_inputs
    line = join.command_line(values={"a": "1", "b": "2"}, input_paths={}, output_paths={"total": "/t"})
    assert line.args == ("src/p.py:combine", "--in", "a", "1", "--in", "b", "2", "--out", "total", "/t")


def test_placeholder_errors():
    bad = dataclasses.replace(THIRD_PARTY, args=({"inputValue": "Nope"},))
    with pytest.raises(ConfigError, match=r"names no input of the component \(inputs: Data file, Label"):
        resolve_command_line(bad, Bindings())
    bad = dataclasses.replace(THIRD_PARTY, args=({"outputUri": "Report"},))
    with pytest.raises(ConfigError, match="unknown placeholder 'outputUri'"):
        resolve_command_line(bad, Bindings(output_paths={"Report": "/o"}))
    bad = dataclasses.replace(THIRD_PARTY, args=({"if": {"cond": "maybe", "then": ["x"]}},))
    with pytest.raises(ConfigError, match="not a boolean"):
        resolve_command_line(bad, Bindings())
    with pytest.raises(ConfigError, match="required input 'Label' has no argument"):
        resolve_command_line(THIRD_PARTY, Bindings(input_paths={"Data file": "/d"}, output_paths={"Report": "/o"}))


def test_condition_on_a_runtime_value_cannot_be_rendered():
    bindings = Bindings(values={"Label": "{{inputs.parameters.Label}}", "Verbose": "{{inputs.parameters.Verbose}}"},
                        input_paths={"Data file": "/d"}, output_paths={"Report": "/o"},
                        known_values={"Label": "x"}, present={"Label", "Verbose", "Data file"})
    with pytest.raises(ConfigError, match="reads input 'Verbose', whose value is only known when the pipeline runs"):
        resolve_command_line(THIRD_PARTY, bindings, where="kfp.toml: pipeline.tasks.r")


def test_paths_and_io_names():
    assert io_name("Training output dir") == "Training-output-dir"
    assert input_path("Data file") == "/tmp/inputs/Data-file/data"
    assert output_path("model") == "/tmp/outputs/model/data"
    assert io_name("***") == "input"


def test_graph_accepts_component_without_inputs():
    hello = ComponentSpec(name="hello", outputs=(OutputSpec("out", "String"),), image="busybox@sha256:" + "0" * 64,
                          command=("sh", "-c", "echo hi > $0"), args=({"outputPath": "out"},))
    manifest = manifest_from_toml("""
[steps.hello]
component = "hello.yaml"
[pipeline.tasks.hello]
step = "hello"
""")
    graph = resolve_graph(manifest, {"hello": hello}, manifest_path=Path("kfp.toml"), images={})
    assert graph.task("hello").image == hello.image
    assert graph.task("hello").arguments == ()
    with pytest.raises(ConfigError, match="has no component interface"):
        resolve_graph(manifest, {}, manifest_path=Path("kfp.toml"))
    optional = dataclasses.replace(hello, inputs=(InputSpec("x", "String", optional=True),))
    graph = resolve_graph(manifest, {"hello": optional}, manifest_path=Path("kfp.toml"))
    assert graph.task("hello").present_inputs == frozenset()


NOTEBOOK_COMPONENT = """\
name: Run notebook
inputs:
- {name: Notebook, type: String}
- {name: Parameters, type: JsonObject, default: '{}'}
- {name: Packages to install, type: JsonArray, default: '[]'}
implementation:
  container:
    image: "python@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    command: [sh, -c, 'echo "$0" "$1" "$2"', {inputValue: Notebook}, {inputValue: Parameters},
              {inputValue: Packages to install}]
"""


@pytest.mark.parametrize("arg", ['args."Packages to install" = 5', "args.Parameters = 5"])
def test_a_quoted_key_has_its_line_and_a_relative_path_like_a_bare_one(tmp_path, monkeypatch, arg):
    """Issue 19.5: ``args."Packages to install" = 5`` is reported like ``args.Parameters = 5``:
    ``kfp.toml:LINE: KEY: ...``, also where no error boundary locates it (a task's messages in a local run)."""
    from compose_kfp.manifest.project import load_project

    text = ('[project]\nname = "demo"\n\n[image]\nbase = "scratch"\nrepository = "oci:build/image"\n\n'
            '[steps.nb]\ncomponent = "run_notebook.yaml"\n\n[pipeline.tasks."Run nb"]\nstep = "nb"\n'
            f'args.Notebook = "in.ipynb"\n{arg}\n')
    (tmp_path / "kfp.toml").write_text(text)
    (tmp_path / "run_notebook.yaml").write_text(NOTEBOOK_COMPONENT)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    line = text.splitlines().index(arg) + 1
    key = 'pipeline.tasks."Run nb".args.' + arg.split(".", 1)[1].split(" = ")[0]
    assert str(info.value).startswith(f"kfp.toml:{line}: {key}: type mismatch: literal '5' is Integer"), info.value
    assert (info.value.file, info.value.line, info.value.key) == ("kfp.toml", line, key)
    (tmp_path / "kfp.toml").write_text(text.replace(arg, ""))
    task = load_project(tmp_path).graph.tasks[0]
    table = text.splitlines().index('[pipeline.tasks."Run nb"]') + 1
    assert task.where == f'kfp.toml:{table}: pipeline.tasks."Run nb"'
