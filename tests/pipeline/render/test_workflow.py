"""Rendering the Argo Workflow: every scenario validates against the real Argo schema and hera's model.

Golden files live in tests/golden/; regenerate deliberately with ``UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
import yaml

from compose_kfp import schema
from compose_kfp.errors import ConfigError, RenderError
from compose_kfp.pipeline.graph import resolve_graph
from compose_kfp.manifest.project import load_project
from compose_kfp.steps.component import ComponentSpec, InputSpec, OutputSpec
from compose_kfp.steps.placeholders import input_path, io_name, output_path
from compose_kfp.pipeline.render import TEMPLATES_DIR
from compose_kfp.pipeline.render.workflow import VOLUME_MOUNT, render_workflow, workflow_context
from tests.fixtures.pipeline_graphs import (
    COMPONENTS,
    IMAGE,
    MANIFEST_HEAD,
    SCENARIOS,
    STEPS_TOML,
    THIRD_PARTY,
    manifest_from_toml,
    scenario_graph,
)
from tests.fixtures.paths import EXAMPLES as EXAMPLES_DIR
from tests.fixtures.paths import GOLDEN

EXAMPLES = sorted(EXAMPLES_DIR.glob("*/kfp.toml"))


def render(name: str) -> tuple[str, object]:
    manifest, graph = scenario_graph(name)
    return render_workflow(graph, manifest), graph


def dag_tasks(doc) -> dict[str, dict]:
    dag = next(t for t in doc["spec"]["templates"] if t["name"] == doc["spec"]["entrypoint"])
    return {t["name"]: t for t in dag["dag"]["tasks"]}


def templates(doc) -> dict[str, dict]:
    return {t["name"]: t for t in doc["spec"]["templates"] if "container" in t}


def args_of(task) -> dict[str, str]:
    return {p["name"]: p["value"] for p in task.get("arguments", {}).get("parameters", [])}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario_validates_against_argo_schema_and_hera(scenario, argo_workflow_check):
    text, graph = render(scenario)
    doc = argo_workflow_check(text)
    assert doc["apiVersion"] == "argoproj.io/v1alpha1" and doc["kind"] == "Workflow"
    assert doc["metadata"]["generateName"] == "demo-"
    tasks = dag_tasks(doc)
    assert list(tasks) == [t.k8s_name for t in graph.tasks]
    for task in graph.tasks:
        assert tasks[task.k8s_name].get("dependencies", []) == [graph.task(d).k8s_name for d in task.dependencies]
    for template in templates(doc).values():
        assert "@sha256:" in template["container"]["image"]


def test_params_only(argo_workflow_check):
    doc = argo_workflow_check(render("params_only")[0])
    assert doc["spec"]["arguments"]["parameters"] == [
        {"name": "message", "value": "hi"}, {"name": "times", "value": "3"}, {"name": "flag", "value": "true"},
        {"name": "items", "value": '[1, "a"]'}, {"name": "opts", "value": '{"k": "v"}'}]
    echo = dag_tasks(doc)["echo"]
    assert args_of(echo)["items"] == "{{workflow.parameters.items}}"
    assert "artifacts" not in templates(doc)["echo"].get("inputs", {})


def test_fan_out_shares_one_template_and_fan_in_joins(argo_workflow_check):
    doc = argo_workflow_check(render("fan_out")[0])
    tasks = dag_tasks(doc)
    assert {tasks[n]["template"] for n in ("train-a", "train-b", "train-c")} == {"train"}
    assert args_of(tasks["train-b"])["n"] == "50"
    assert tasks["train-c"]["arguments"]["artifacts"] == [
        {"name": "dataset", "from": "{{tasks.load.outputs.artifacts.test_set}}"}]
    doc = argo_workflow_check(render("fan_in")[0])
    join = dag_tasks(doc)["join"]
    assert join["dependencies"] == ["left", "right"]
    assert args_of(join) == {"a": "{{tasks.left.outputs.parameters.rows}}",
                             "b": "{{tasks.right.outputs.parameters.rows}}"}
    load = templates(doc)["load"]
    assert load["outputs"]["parameters"] == [{"name": "rows", "valueFrom": {"path": "/tmp/outputs/rows/data"}}]


def test_diamond_dependencies(argo_workflow_check):
    doc = argo_workflow_check(render("diamond")[0])
    tasks = dag_tasks(doc)
    assert [n for n in tasks] == ["a", "b", "c", "d"]
    assert tasks["d"]["dependencies"] == ["b", "c"]
    assert tasks["b"]["dependencies"] == tasks["c"]["dependencies"] == ["a"]


def test_artifacts_wiring(argo_workflow_check):
    doc = argo_workflow_check(render("artifacts")[0])
    evaluate = templates(doc)["evaluate"]
    assert evaluate["inputs"]["artifacts"] == [{"name": "model", "path": "/tmp/inputs/model/data"},
                                               {"name": "test_set", "path": "/tmp/inputs/test_set/data"}]
    assert dag_tasks(doc)["evaluate"]["arguments"]["artifacts"] == [
        {"name": "model", "from": "{{tasks.train.outputs.artifacts.model}}"},
        {"name": "test_set", "from": "{{tasks.load.outputs.artifacts.test_set}}"}]
    train = templates(doc)["train"]
    assert train["outputs"]["artifacts"] == [{"name": "model", "path": "/tmp/outputs/model/data"}]
    assert train["outputs"]["parameters"] == [{"name": "score", "valueFrom": {"path": "/tmp/outputs/score/data"}}]
    assert "/tmp/inputs/dataset/data" in train["container"]["args"]


def test_volume_passing(argo_workflow_check):
    doc = argo_workflow_check(render("volume")[0])
    claim = doc["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "fast",
                             "resources": {"requests": {"storage": "5Gi"}}}
    name = claim["metadata"]["name"]
    for template in templates(doc).values():
        assert template["container"]["volumeMounts"] == [{"name": name, "mountPath": VOLUME_MOUNT}]
        assert "artifacts" not in template.get("inputs", {}) and "artifacts" not in template.get("outputs", {})
    tasks = dag_tasks(doc)
    evaluate = args_of(tasks["evaluate"])
    assert evaluate["model-path"] == f"{VOLUME_MOUNT}/train/model/data"
    assert evaluate["test_set-path"] == f"{VOLUME_MOUNT}/load/test_set/data"
    assert evaluate["compose-kfp-task-dir"] == f"{VOLUME_MOUNT}/evaluate"
    ev_args = templates(doc)["evaluate"]["container"]["args"]
    assert "{{inputs.parameters.model-path}}" in ev_args
    assert "{{inputs.parameters.compose-kfp-task-dir}}/accuracy/data" in ev_args
    assert templates(doc)["evaluate"]["outputs"]["parameters"] == [
        {"name": "accuracy", "valueFrom": {"path": "{{inputs.parameters.compose-kfp-task-dir}}/accuracy/data"}}]
    assert args_of(tasks["sum"])["b"] == "{{tasks.evaluate.outputs.parameters.accuracy}}"


def test_retries_timeout_and_pipeline_settings(argo_workflow_check):
    doc = argo_workflow_check(render("retries")[0])
    spec = doc["spec"]
    assert spec["ttlStrategy"] == {"secondsAfterCompletion": 3600}
    assert spec["podGC"] == {"strategy": "OnPodSuccess"}
    assert spec["parallelism"] == 2
    assert spec["serviceAccountName"] == "pipeline-runner"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    train = templates(doc)["train"]
    assert train["retryStrategy"] == {"limit": "3", "retryPolicy": "Always",
                                      "backoff": {"duration": "10s", "factor": "2", "cap": "5m"}}
    assert train["activeDeadlineSeconds"] == "900"
    assert "retryStrategy" not in templates(doc)["load"]


def test_resources_env_node_selector(argo_workflow_check):
    doc = argo_workflow_check(render("resources")[0])
    container = templates(doc)["train"]["container"]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"},
                                      "limits": {"cpu": "500m", "memory": "2Gi"}}
    assert container["env"] == [{"name": "OMP_NUM_THREADS", "value": "2"}, {"name": "NOTE", "value": "x: y # z"}]
    assert templates(doc)["train"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}


def test_gpu(argo_workflow_check):
    doc = argo_workflow_check(render("gpu")[0])
    train = templates(doc)["train"]
    assert train["container"]["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_third_party_concat_if_and_argo_expressions(argo_workflow_check):
    doc = argo_workflow_check(render("third_party")[0])
    tasks, temps = dag_tasks(doc), templates(doc)
    plain = temps[tasks["report"]["template"]]
    verbose = temps[tasks["report-verbose"]["template"]]
    assert tasks["report"]["template"] == "report" and tasks["report-verbose"]["template"] == "report-2"
    assert plain["container"]["command"] == list(THIRD_PARTY.command)  # {{workflow.uid}} passes unchanged
    assert plain["container"]["args"] == ["/tmp/inputs/Data-file/data",
                                          "label={{inputs.parameters.Label}}/{{pod.name}}",
                                          "/tmp/outputs/Report/data", "--no-extra"]
    assert verbose["container"]["args"] == ["/tmp/inputs/Data-file/data",
                                            "label={{inputs.parameters.Label}}/{{pod.name}}",
                                            "/tmp/outputs/Report/data", "--extra", "{{inputs.parameters.Extra}}",
                                            "--verbose"]
    assert plain["container"]["env"] == [{"name": "KFP_POD_NAME", "value": "{{pod.name}}"}]
    # Verbose only decides an `if` at render time: it is not passed to the pod.
    assert args_of(tasks["report"]) == {"Label": "{{workflow.parameters.label}}"}
    assert args_of(tasks["report-verbose"]) == {"Label": "fixed", "Extra": "x y"}
    assert args_of(tasks["total"])["note"] == "{{tasks.report.outputs.parameters.Report}}"


def test_runtime_condition_is_refused_for_argo():
    manifest = manifest_from_toml(STEPS_TOML + """
[pipeline]
params = { verbose = true }
[pipeline.tasks.r]
step = "report"
args = { "Data file" = "inline data", Label = "l", Verbose = { param = "verbose" } }
""")
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"))
    with pytest.raises(ConfigError, match=r"kfp.toml: pipeline.tasks.r: .*reads input 'Verbose'"):
        render_workflow(graph, manifest)


def test_literal_and_param_consumed_as_file_become_raw_artifacts(argo_workflow_check):
    manifest = manifest_from_toml(STEPS_TOML + """
[pipeline]
params = { data = "1,2\\n3,4" }
[pipeline.tasks.a]
step = "report"
args = { "Data file" = { param = "data" }, Label = "l" }
[pipeline.tasks.b]
step = "report"
args = { "Data file" = "x,y", Label = "l" }
""")
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"))
    doc = argo_workflow_check(render_workflow(graph, manifest))
    tasks = dag_tasks(doc)
    assert tasks["a"]["arguments"]["artifacts"] == [{"name": "Data-file", "raw": {"data": "{{workflow.parameters.data}}"}}]
    assert tasks["b"]["arguments"]["artifacts"] == [{"name": "Data-file", "raw": {"data": "x,y"}}]
    assert tasks["a"]["template"] == tasks["b"]["template"]


def test_missing_image_is_a_render_error():
    manifest, _ = scenario_graph("artifacts")
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"))
    with pytest.raises(RenderError, match="kfp.toml: pipeline.tasks.load: step 'load' has no image"):
        render_workflow(graph, manifest)


TRICKY = [
    "a: b # {{c}}\n- d",
    "ünïcødé ✓ 日本語 🚀",
    "x" * 20000,
    "{% raw %}{{ not jinja }}{% endraw %}",
    "null", "true", "123", "0x1F", "", " leading and trailing ", "- item", "'quoted' \"double\"",
    "tab\there\r\nwindows", "back\\slash", "\u2028line sep", "~", "*alias", "&anchor", "!tag", "%YAML",
    "@at", "`tick`", "key: {flow: [1, 2]}", "---", "...",
]


@pytest.mark.parametrize("value", TRICKY, ids=[repr(v)[:24] for v in TRICKY])
def test_tricky_strings_round_trip_as_param_defaults_and_literal_args(value, argo_workflow_check):
    data = tomllib.loads(MANIFEST_HEAD + STEPS_TOML)
    data["pipeline"] = {
        "params": {"text": value},
        "tasks": {
            "from_param": {"step": "echo", "args": {"message": {"param": "text"}, "times": 1, "flag": False,
                                                    "items": [value], "opts": {"value": {"k": value}}}},
            "from_literal": {"step": "echo", "args": {"message": value, "times": 2, "flag": True,
                                                      "items": [], "opts": {"value": {}}}},
        },
    }
    manifest = schema.Manifest.model_validate(data)
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"), images={"echo": IMAGE})
    text = render_workflow(graph, manifest)
    doc = argo_workflow_check(text)
    assert doc["spec"]["arguments"]["parameters"] == [{"name": "text", "value": value}]
    tasks = dag_tasks(doc)
    assert args_of(tasks["from-literal"])["message"] == value
    assert json.loads(args_of(tasks["from-param"])["items"]) == [value]
    assert json.loads(args_of(tasks["from-param"])["opts"]) == {"k": value}


def test_user_template_folder_adds_a_label_to_every_pod(tmp_path, argo_workflow_check):
    folder = tmp_path / "templates"
    folder.mkdir()
    builtin = (TEMPLATES_DIR / "workflow.yaml.j2").read_text()
    marker = "spec:\n  entrypoint:"
    assert marker in builtin
    custom = builtin.replace(marker, 'spec:\n  podMetadata:\n    labels:\n      team: "ml-platform"\n  entrypoint:')
    (folder / "workflow.yaml.j2").write_text(custom)
    manifest, graph = scenario_graph("artifacts")
    doc = argo_workflow_check(render_workflow(graph, manifest, templates_dir=folder))
    assert doc["spec"]["podMetadata"]["labels"] == {"team": "ml-platform"}
    # The same folder named in kfp.toml ([render] templates, relative to the manifest) is used by default.
    manifest = manifest.model_copy(update={"render": manifest.render.model_copy(update={"templates": "templates"})})
    graph = graph.__class__(**{**graph.__dict__, "manifest_path": tmp_path / "kfp.toml"})
    doc = argo_workflow_check(render_workflow(graph, manifest))
    assert doc["spec"]["podMetadata"]["labels"] == {"team": "ml-platform"}
    # Without it, the built-in template has no such label.
    assert "podMetadata" not in yaml.safe_load(render_workflow(graph, manifest, templates_dir=TEMPLATES_DIR))["spec"]


def test_argo_and_local_command_lines_agree():
    """Substituting concrete values into the rendered args gives exactly Task.command_line with those values."""
    for scenario in ("artifacts", "third_party", "params_only", "fan_in"):
        manifest, graph = scenario_graph(scenario)
        doc = yaml.safe_load(render_workflow(graph, manifest))
        tasks, temps = dag_tasks(doc), templates(doc)
        for task in graph.tasks:
            concrete = {a.input: f"<value of {a.input}>" for a in task.arguments if a.uses_value}
            concrete.update(task.known_values)
            in_paths = {a.input: f"/run/{task.name}/in/{a.input}" for a in task.arguments if a.uses_path}
            out_paths = {o.name: f"/run/{task.name}/out/{o.name}" for o in task.outputs}
            local = task.command_line(values=concrete, input_paths=in_paths, output_paths=out_paths)
            template = temps[tasks[task.k8s_name]["template"]]

            def substitute(part: str) -> str:
                for spec_in in task.component.inputs:
                    part = part.replace("{{inputs.parameters.%s}}" % io_name(spec_in.name),
                                        concrete.get(spec_in.name, ""))
                    part = part.replace(input_path(spec_in.name), in_paths.get(spec_in.name, ""))
                for out in task.outputs:
                    part = part.replace(output_path(out.name), out_paths[out.name])
                return part

            rendered = [substitute(p) for p in template["container"].get("command", []) +
                        template["container"].get("args", [])]
            assert rendered == local.argv, (scenario, task.name)


def test_golden_demo_workflow():
    manifest, graph = scenario_graph("third_party")
    check_golden("workflow-third_party.yaml", render_workflow(graph, manifest))
    manifest, graph = scenario_graph("retries")
    check_golden("workflow-retries.yaml", render_workflow(graph, manifest))


@pytest.mark.parametrize("kfp_toml", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_golden_example_workflow(kfp_toml, argo_workflow_check):
    loaded = load_project(kfp_toml)
    digest = "sha256:" + "ab" * 32
    images = {step: f"{loaded.manifest.image.repository}@{digest}" for step in loaded.components}
    graph = resolve_graph(loaded.manifest, loaded.components, manifest_path=kfp_toml, images=images)
    text = render_workflow(graph, loaded.manifest)
    argo_workflow_check(text)
    check_golden(f"workflow-example-{kfp_toml.parent.name}.yaml", text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    if not path.is_file():
        pytest.fail(f"golden file {path} is missing; run with UPDATE_GOLDEN=1 and review it")
    assert text == path.read_text(), f"{name} changed; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"


def test_context_is_plain_data():
    manifest, graph = scenario_graph("volume")
    context = workflow_context(graph, manifest)

    def walk(value):
        if isinstance(value, dict):
            for k, v in value.items():
                assert isinstance(k, str)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or isinstance(value, (str, int, float, bool)), value

    walk(context)
    assert context["workflow"]["volume"]["mount_path"] == VOLUME_MOUNT


FILE_OUTPUT = ComponentSpec(name="fo", outputs=(OutputSpec("result", type="String"),), image=IMAGE,
                            command=("sh", "-c", "echo hello > /output.txt"), file_outputs=(("result", "/output.txt"),))
READER = ComponentSpec(name="read", inputs=(InputSpec("text", type="String"), InputSpec("file")), image=IMAGE,
                       command=("cat", {"inputPath": "file"}), args=({"inputValue": "text"},))


def _file_output_graph(passing: str, file_arg: bool):
    args = 'text = { task = "fo", output = "result" }'
    if file_arg:
        args += ', file = { task = "fo", output = "result" }'
    manifest = manifest_from_toml(f"""
[steps.fo]
component = "fo.yaml"
[steps.read]
component = "read.yaml"
[pipeline]
data_passing = "{passing}"
[pipeline.tasks.fo]
step = "fo"
[pipeline.tasks.read]
step = "read"
args = {{ {args} }}
""")
    comps = {"fo": FILE_OUTPUT, "read": READER if file_arg else
             ComponentSpec(name="read", inputs=(InputSpec("text", type="String"),), image=IMAGE,
                           command=("echo", {"inputValue": "text"}))}
    return manifest, resolve_graph(manifest, comps, manifest_path=Path("kfp.toml"), images={"fo": IMAGE, "read": IMAGE})


@pytest.mark.parametrize("passing", ["artifacts", "volume"])
def test_file_outputs_are_the_argo_output_path(argo_workflow_check, passing):
    manifest, graph = _file_output_graph(passing, file_arg=passing == "artifacts")
    doc = argo_workflow_check(render_workflow(graph, manifest))
    fo = templates(doc)["fo"]
    assert fo["container"]["command"] == ["sh", "-c", "echo hello > /output.txt"]
    assert fo["outputs"]["parameters"] == [{"name": "result", "valueFrom": {"path": "/output.txt"}}]
    if passing == "artifacts":
        assert fo["outputs"]["artifacts"] == [{"name": "result", "path": "/output.txt"}]
        assert dag_tasks(doc)["read"]["arguments"]["artifacts"] == [
            {"name": "file", "from": "{{tasks.fo.outputs.artifacts.result}}"}]


def test_file_outputs_read_as_a_file_from_the_volume_are_refused():
    manifest, graph = _file_output_graph("volume", file_arg=True)
    with pytest.raises(RenderError, match=r"kfp.toml: pipeline.tasks.fo: output 'result' of step 'fo' is written at "
                                          r"the fixed path /output.txt \(fileOutputs\), which is not on the shared "
                                          r"volume, and a task reads it as a file; use pipeline.data_passing = "
                                          r"\"artifacts\""):
        render_workflow(graph, manifest)
