"""Notebook steps (compose_kfp/steps/notebook.py): ``[steps.NAME] notebook = "..."`` to a component the KFP SDK
loads, the notebook layer in the step's image, and errors in kfp.toml's words naming the cell."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose_kfp.build.images import desired_images
from compose_kfp.errors import ConfigError, StepError
from compose_kfp.manifest.project import load_project
from compose_kfp.pipeline.render.component import render_component
from compose_kfp.steps.notebook import NOTEBOOK_LAYER, NOTEBOOK_REQUIREMENTS, notebook_component
from tests.fixtures.cli import run
from tests.fixtures.notebooks import SCALE_CELLS, write_notebook

IMAGE = "localhost:5000/demo@sha256:" + "a" * 64

MANIFEST = '''\
[project]
name = "nb"

[image]
base = "scratch"
repository = "oci:build/image"

[[image.layers]]
name = "src"
paths = ["nb", "src"]

[steps.make]
function = "src/steps.py:make"

[steps.scale]
notebook = "nb/scale.ipynb"

[pipeline]
params = { n = 3 }

[pipeline.tasks.make]
step = "make"
args.n = { param = "n" }

[pipeline.tasks.scale]
step = "scale"
args.values = { task = "make", output = "output" }
args.scale = 0.5
'''

STEPS = 'def make(n: int) -> list:\n    """Numbers."""\n    return list(range(n))\n'


@pytest.fixture
def nb_project(tmp_path) -> Path:
    write_notebook(tmp_path / "nb" / "scale.ipynb", SCALE_CELLS)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "steps.py").write_text(STEPS)
    (tmp_path / "kfp.toml").write_text(MANIFEST)
    return tmp_path


def test_a_notebook_becomes_a_component_the_kfp_sdk_loads(nb_project, tmp_path):
    from kfp import components

    spec = notebook_component(nb_project, "nb/scale.ipynb", step_name="scale")
    assert spec.command == ("python3", "-m", "compose_kfp.runtime.notebook", "nb/scale.ipynb")
    assert spec.description == "Scale the values" and spec.python_function is None
    assert [(i.name, i.type, i.default) for i in spec.inputs] == [
        ("values", "JsonArray", "[1, 2, 3]"), ("scale", "Float", "2.0"), ("label", "String", "run")]
    assert [(o.name, o.type) for o in spec.outputs] == [("report", None), ("total", "Float"), ("count", "Integer"),
                                                         ("notebook", "JupyterNotebook")]
    assert spec.args[:1] == ({"if": {"cond": {"isPresent": "values"}, "then": ["--in", "values",
                                                                               {"inputValue": "values"}]}},)
    assert ("--out", "notebook", {"outputPath": "notebook"}) == spec.args[-3:]
    path = tmp_path / "scale.yaml"
    path.write_text(render_component(spec.with_image(IMAGE)))
    op = components.load_component_from_file(str(path))
    assert op.component_spec.name == "scale"
    assert list(op.component_spec.outputs) == ["report", "total", "count", "notebook"]


def test_the_notebook_step_image_gets_the_runtime_and_the_notebook_layer(nb_project):
    project = load_project(nb_project)
    (main,) = desired_images(project.manifest, project.root)
    assert main.steps == ("make", "scale")
    assert [(ly.name, ly.kind) for ly in main.layers] == [("runtime", "runtime"), (NOTEBOOK_LAYER, "requirements"),
                                                         ("src", "paths")]
    assert main.layers[1].requirements == str(NOTEBOOK_REQUIREMENTS)
    assert {"papermill", "ipykernel", "nbclient"} <= {
        line.split("==")[0] for line in NOTEBOOK_REQUIREMENTS.read_text().splitlines() if not line.startswith("#")}
    # a project without notebook steps keeps the image it had (no notebook layer)
    text = MANIFEST.split("[steps.scale]")[0] + "[pipeline]\n[pipeline.tasks.make]\nstep = \"make\"\nargs.n = 1\n"
    (nb_project / "kfp.toml").write_text(text)
    (main,) = desired_images(load_project(nb_project).manifest, nb_project)
    assert [ly.name for ly in main.layers] == ["runtime", "src"]


def test_validate_names_the_notebook_cell_and_the_kfp_toml_line(nb_project):
    write_notebook(nb_project / "nb" / "scale.ipynb", [("markdown", "# t"), ("code", "n = 3", ["parameters"])])
    code, out, err = run("-C", str(nb_project), "validate")
    assert code == 1
    assert err.strip() == (f"error: {nb_project / 'kfp.toml'}:16: steps.scale.notebook: nb/scale.ipynb: cell 2 (tagged parameters), "
                           "line 1: 'n': untyped parameter: give it a type, as `n: int = ...` (types: int, float, "
                           "str, bool, list, dict, InputPath, OutputPath)")
    (nb_project / "nb" / "scale.ipynb").write_text("{not json")
    with pytest.raises(StepError, match=r"kfp.toml:16: steps.scale.notebook: nb/scale.ipynb: not valid JSON"):
        load_project(nb_project)


def test_a_notebook_outside_every_layer_or_with_a_bad_name_is_refused(nb_project):
    (nb_project / "kfp.toml").write_text(MANIFEST.replace('paths = ["nb", "src"]', 'paths = ["src"]'))
    with pytest.raises(ConfigError, match=r"steps.scale.notebook: nb/scale.ipynb is not in the main image at "
                                          r"/app/nb/scale.ipynb.*python3 -m compose_kfp.runtime.notebook"):
        load_project(nb_project)
    (nb_project / "kfp.toml").write_text(MANIFEST.replace('notebook = "nb/scale.ipynb"', 'notebook = "nb/scale.py"'))
    code, _, err = run("-C", str(nb_project), "validate")
    assert code == 1 and "steps.scale.notebook: expected `path/to/notebook.ipynb`" in err
    both = MANIFEST.replace('notebook = "nb/scale.ipynb"', 'notebook = "nb/scale.ipynb"\nfunction = "src/steps.py:make"')
    (nb_project / "kfp.toml").write_text(both)
    code, _, err = run("-C", str(nb_project), "validate")
    assert code == 1 and "exactly one of `function`, `notebook` or `component`" in err


@pytest.mark.slow
def test_apply_renders_the_notebook_component_and_the_workflow(nb_project, argo_workflow_check):
    """The notebook layer is installed from the package index (papermill, ipykernel and what they need)."""
    import yaml

    text = MANIFEST.replace('repository = "oci:build/image"', 'repository = "oci:build/image"\npython = "3.11"')
    (nb_project / "kfp.toml").write_text(text)
    code, out, err = run("-C", str(nb_project), "apply", "-y")
    assert code == 0, err
    component = yaml.safe_load((nb_project / "build" / "components" / "scale.yaml").read_text())
    assert component["implementation"]["container"]["command"] == [
        "python3", "-m", "compose_kfp.runtime.notebook", "nb/scale.ipynb"]
    workflow = argo_workflow_check((nb_project / "build" / "workflow.yaml").read_text())
    template = next(t for t in workflow["spec"]["templates"] if t["name"] == "scale")
    assert {a["name"] for a in template["outputs"].get("artifacts", [])} | {
        p["name"] for p in template["outputs"].get("parameters", [])} >= {"notebook", "report", "total", "count"}
