"""Component rendering: the YAML-safe filter, the shared Jinja environment, component files in the real KFP SDK."""

# No `from __future__ import annotations` here: kfp reads the pipeline functions' annotations as objects.


import math
from pathlib import Path

import pytest
import yaml

from compose_kfp.steps.component import ComponentSpec, InputSpec, OutputSpec
from compose_kfp.errors import RenderError
from compose_kfp.steps.introspect import function_component
from compose_kfp.pipeline.render import make_environment, render_template
from compose_kfp.pipeline.render.component import component_path, render_component
from compose_kfp.pipeline.render.filters import quote_string, to_yaml
from tests.fixtures.paths import DATA, REPO

IMAGE = "localhost:5000/examples/typed@sha256:" + "0123456789abcdef" * 4

TRICKY_STRINGS = [
    "key: value # not a comment",
    "# starts like a comment",
    "'single' and \"double\" quotes",
    "line one\nline two\n\nafter a blank line\n",
    "{{ workflow.name }} and {% raw %} and ${HOME}",
    "ünïcødé ✓ 日本語 😀 emoji",
    "tab\there, carriage\rreturn, nul\0, bell\a, del\x7f, nbsp\xa0",
    "line separators \u2028 \u2029 \x85 and bom \ufeff",
    "- looks like a list item",
    "[flow] {mapping}: &anchor *alias !tag |literal >folded",
    "   leading and trailing spaces   ",
    "", "null", "~", "true", "no", "1e3", "0x10", "010", ".inf", "2024-01-01",
    "back\\slash \\n not a newline",
    "x" * 300 + " long line that must not be folded " + "y" * 300,
]


@pytest.mark.parametrize("value", TRICKY_STRINGS + [0, -7, 10**30, 0.1, -2.5e-12, 1e300, True, False, None,
                                                     [1, "a: b", None, [True]], {"k: v": {"#": ["x\ny"]}}, {}])
@pytest.mark.parametrize("context", ["key: {}\n", "- {}\n", "outer:\n  inner:\n  - [{}]\n"])
def test_yaml_filter_round_trips_exactly(value, context):
    text = context.format(to_yaml(value))
    assert "\n" not in to_yaml(value)
    doc = yaml.safe_load(text)
    if isinstance(doc, dict) and "outer" in doc:
        got = doc["outer"]["inner"][0][0]
    elif isinstance(doc, dict):
        got = doc["key"]
    else:
        got = doc[0]
    assert got == value
    assert type(got) is type(value)


def test_yaml_filter_special_floats():
    assert math.isnan(yaml.safe_load(f"v: {to_yaml(float('nan'))}")["v"])
    assert yaml.safe_load(f"v: {to_yaml(float('inf'))}")["v"] == float("inf")
    assert yaml.safe_load(f"v: {to_yaml(float('-inf'))}")["v"] == float("-inf")


def test_yaml_filter_refuses_other_types():
    with pytest.raises(TypeError, match="cannot render a value of type object"):
        to_yaml(object())


def test_quote_string_keeps_printable_unicode_readable():
    assert quote_string("ünï 😀") == '"ünï 😀"'
    assert quote_string("a\nb\u2028") == '"a\\nb\\L"'


def test_environment_is_strict_and_user_folder_overrides(tmp_path):
    user = tmp_path / "templates"
    user.mkdir()
    (user / "component.yaml.j2").write_text("# custom\nname: {{ spec.name | yaml }}\n{{ missing }}\n")
    env = make_environment(user)
    with pytest.raises(RenderError, match="'missing' is undefined"):
        render_template(env, "component.yaml.j2", spec=ComponentSpec(name="x"))
    # the built-in is used for names the user folder lacks
    assert make_environment(user).get_template("component.yaml.j2").filename == str(user / "component.yaml.j2")
    assert make_environment(None).get_template("component.yaml.j2").filename.startswith(
        str(REPO / "compose_kfp" / "pipeline" / "render" / "templates"))


def test_environment_refuses_missing_template_folder(tmp_path):
    with pytest.raises(RenderError, match="is not a folder"):
        make_environment(tmp_path / "nope")


def test_template_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "component.yaml.j2").write_text("name: x\n{% if %}\n")
    with pytest.raises(RenderError, match=r"component.yaml.j2, line 2"):
        render_template(make_environment(tmp_path), "component.yaml.j2", spec=ComponentSpec(name="x"))


def _tricky_spec() -> ComponentSpec:
    inputs = tuple(InputSpec(name=f"in{i}", type="String", description=s, default=s)
                   for i, s in enumerate(TRICKY_STRINGS))
    return ComponentSpec(
        name="tricky: component # name",
        description="Description with: colon, # hash, 'quotes', \"double\", {{ braces }}\nand a second line ✓",
        inputs=inputs,
        outputs=(OutputSpec(name="out", type="String", description="out: #1"),),
        image=IMAGE,
        command=("sh", "-c", 'echo "$0" > "$1"  # {{not argo}}'),
        args=tuple(arg for i in range(len(inputs)) for arg in ({"inputValue": f"in{i}"},)) + ({"outputPath": "out"},),
        env=(("A_VAR", "x: y # z"),),
        source="tricky.yaml",
    )


def test_rendered_component_round_trips_tricky_values():
    spec = _tricky_spec()
    text = render_component(spec)
    doc = yaml.safe_load(text)
    assert doc == {k: v for k, v in spec.to_dict().items()}
    assert doc["description"] == spec.description
    assert [i["default"] for i in doc["inputs"]] == TRICKY_STRINGS


def test_rendered_component_loads_in_kfp_with_values_intact(tmp_path):
    from kfp import components

    spec = _tricky_spec()
    path = tmp_path / "tricky.yaml"
    path.write_text(render_component(spec), encoding="utf-8")
    loaded = components.load_component_from_file(str(path))
    kfp_spec = loaded.component_spec
    assert kfp_spec.description == spec.description
    defaults = [i.default for i in kfp_spec.inputs.values()]
    assert defaults == TRICKY_STRINGS
    assert kfp_spec.implementation.container.image == IMAGE


def test_render_needs_an_image():
    with pytest.raises(RenderError, match="no image to render"):
        render_component(ComponentSpec(name="x"))


def test_user_template_that_changes_the_interface_is_refused(tmp_path):
    (tmp_path / "component.yaml.j2").write_text("name: {{ spec.name | yaml }}\nimplementation: {container: {image: x}}\n")
    spec = function_component(DATA, "typed_steps.py:make_rows", step_name="make").with_image(IMAGE)
    with pytest.raises(RenderError, match=r"rendered .description. differs .*got None"):
        render_component(spec, templates_dir=tmp_path)


def test_user_template_override_is_used(tmp_path):
    builtin = (REPO / "compose_kfp" / "pipeline" / "render" / "templates" / "component.yaml.j2").read_text()
    (tmp_path / "component.yaml.j2").write_text("# house style header\n" + builtin)
    spec = function_component(DATA, "typed_steps.py:make_rows", step_name="make").with_image(IMAGE)
    text = render_component(spec, templates_dir=tmp_path)
    assert text.startswith("# house style header")
    assert yaml.safe_load(text) == spec.to_dict()


def test_component_path():
    assert component_path(Path("build"), "train") == Path("build/components/train.yaml")


def _render_steps(root: Path, refs: dict[str, str], out: Path) -> dict[str, Path]:
    paths = {}
    for step, ref in refs.items():
        spec = function_component(root, ref, step_name=step).with_image(IMAGE)
        path = component_path(out, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_component(spec), encoding="utf-8")
        paths[step] = path
    return paths


def test_typed_example_components_compile_into_a_kfp_v2_pipeline(tmp_path):
    from kfp import compiler, components, dsl

    paths = _render_steps(DATA, {"make": "typed_steps.py:make_rows", "summarize": "typed_steps.py:summarize",
                                 "report": "typed_steps.py:report"}, tmp_path / "build")
    make_op = components.load_component_from_file(str(paths["make"]))
    summarize_op = components.load_component_from_file(str(paths["summarize"]))
    report_op = components.load_component_from_file(str(paths["report"]))
    assert set(make_op.component_spec.inputs) == {"n", "scale", "label", "shuffle"}
    assert make_op.component_spec.inputs["scale"].default == 1.5
    assert make_op.component_spec.inputs["shuffle"].default is False
    assert set(summarize_op.component_spec.outputs) == {"total", "count", "labels"}

    @dsl.pipeline(name="typed-example")
    def pipeline(n: int = 4, label: str = "row"):
        made = make_op(n=n, label=label)
        summary = summarize_op(rows=made.outputs["rows"], weights={"row-1": 2.0})
        report_op(total=summary.outputs["total"], count=summary.outputs["count"],
                  labels=summary.outputs["labels"], source=made.outputs["rows"])

    package = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(package))
    ir = yaml.safe_load(package.read_text())
    executors = ir["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    summarize_exec = next(e for k, e in executors.items() if "summarize" in k)["container"]
    assert summarize_exec["command"] == ["python3", "-m", "compose_kfp.runtime", "typed_steps.py:summarize"]
    assert "{{$.inputs.artifacts['rows'].path}}" in summarize_exec["args"]
    tasks = ir["root"]["dag"]["tasks"]
    assert set(tasks) == {"make", "summarize", "report"}
    assert tasks["summarize"]["inputs"]["artifacts"]["rows"]["taskOutputArtifact"]["producerTask"] == "make"
    assert tasks["report"]["inputs"]["parameters"]["total"]["taskOutputParameter"]["producerTask"] == "summarize"


def test_iris_example_components_compile_into_a_kfp_v2_pipeline(tmp_path):
    from kfp import compiler, components, dsl

    root = REPO / "examples" / "iris"
    if not (root / "src" / "iris.py").is_file():
        pytest.skip("examples/iris not present")
    paths = _render_steps(root, {"load": "src/iris.py:load_data", "train": "src/iris.py:train",
                                 "evaluate": "src/iris.py:evaluate"}, tmp_path / "build")
    ops = {k: components.load_component_from_file(str(p)) for k, p in paths.items()}

    @dsl.pipeline(name="iris")
    def pipeline(n_estimators: int = 100, test_size: float = 0.3):
        load = ops["load"](test_size=test_size)
        train = ops["train"](dataset=load.outputs["train_set"], n_estimators=n_estimators)
        ops["evaluate"](model=train.outputs["output"], test_set=load.outputs["test_set"])

    package = tmp_path / "iris.yaml"
    compiler.Compiler().compile(pipeline, str(package))
    ir = yaml.safe_load(package.read_text())
    assert len(ir["deploymentSpec"]["executors"]) == 3
