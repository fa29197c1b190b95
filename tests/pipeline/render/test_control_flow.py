"""Control flow rendered for Argo (strict Argo JSON schema, hera) and for KFP v2 (the kfp SDK compiler, with
kfp-kubernetes for Secret and ConfigMap references): conditions, loops, collect, the exit handler, references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp import components as kfp_components

from compose_kfp.errors import RenderError
from compose_kfp.manifest.project import load_project
from compose_kfp.pipeline.graph import resolve_graph
from compose_kfp.pipeline.render.component import render_component
from compose_kfp.pipeline.render.kfp import render_kfp_pipeline
from compose_kfp.pipeline.render.workflow import render_workflow
from tests.fixtures.control import control_project
from tests.fixtures.pipeline_graphs import IMAGE

PIPELINE = '''\
[pipeline]
params = { threshold = 0.5, mode = "10", ns = [1, 2, 3] }
on_exit = "notify"

[pipeline.tasks.score]
step = "score"
args.n = 7

[pipeline.tasks.deploy]
step = "label"
args.s = "go"
when = { all = [{ task = "score", output = "output", op = ">", value = { param = "threshold" } }, { not = { param = "mode", op = "==", value = "9" } }] }
env = { API_TOKEN = { secret = "deploy-creds", key = "token" }, REGION = { config_map = "deploy-cfg", key = "region" } }
secret_volumes = [{ secret = "tls", mount_path = "/etc/tls" }]

[pipeline.tasks.after_deploy]
step = "label"
args.s = { task = "deploy", output = "output" }

[pipeline.tasks.square]
step = "square"
for_each = { param = "ns" }
parallelism = 2
args.x = { item = true }

[pipeline.tasks.square_literal]
step = "square"
for_each = [4, 5]
args.x = { item = true }

[pipeline.tasks.square_field]
step = "square"
for_each = [{ x = 2 }, { x = 3 }]
args.x = { item = "x" }

[pipeline.tasks.numbers]
step = "numbers"

[pipeline.tasks.square_output]
step = "square"
for_each = { task = "numbers", output = "output" }
args.x = { item = true }

[pipeline.tasks.summarize]
step = "summarize"
args.values = { task = "square", output = "output", collect = true }

[pipeline.tasks.notify]
step = "notify"
args.status = { status = "pipeline" }
'''


def graph_of(tmp_path: Path, pipeline: str = PIPELINE):
    project = load_project(control_project(tmp_path, pipeline))
    images = {name: IMAGE for name in project.components}
    graph = resolve_graph(project.manifest, project.components, manifest_path=project.path, images=images)
    return project, graph


def test_argo_workflow_has_when_loops_depends_and_on_exit(tmp_path, argo_workflow_check):
    project, graph = graph_of(tmp_path)
    text = render_workflow(graph, project.manifest)
    doc = argo_workflow_check(text)
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    dag = {t["name"]: t for t in templates["control"]["dag"]["tasks"]}
    assert doc["spec"]["onExit"] == "control-exit"
    (exit_task,) = templates["control-exit"]["dag"]["tasks"]
    assert exit_task["arguments"]["parameters"] == [{"name": "status", "value": "{{workflow.status}}"}]
    # numbers bare, strings quoted on both sides (govaluate compares "10" and "9" as text)
    assert dag["deploy"]["when"] == ("({{tasks.score.outputs.parameters.output}} > {{workflow.parameters.threshold}})"
                                     " && (!('{{workflow.parameters.mode}}' == '9'))")
    assert dag["deploy"]["depends"] == "score.Succeeded"
    assert dag["after-deploy"]["depends"] == "deploy.Succeeded"  # a skipped deploy skips (omits) it
    assert all("dependencies" not in t for t in dag.values())
    assert dag["square-literal"]["withItems"] == [4, 5]
    assert dag["square-field"]["withItems"] == [{"x": 2}, {"x": 3}]
    # square-literal and square-field share one template, so each passes its cache key to its memoize key
    assert dag["square-field"]["arguments"]["parameters"][:1] == [{"name": "x", "value": "{{item.x}}"}]
    assert [p["name"] for p in dag["square-field"]["arguments"]["parameters"][1:]] == ["compose-kfp-cache-key"]
    assert dag["square-output"]["withParam"] == "{{tasks.numbers.outputs.parameters.output}}"
    # parallelism: the loop runs in a DAG template of its own that limits it and re-exports the aggregate
    assert dag["square"]["template"] == "square-loop"
    loop = templates["square-loop"]
    assert loop["parallelism"] == 2
    (inner,) = loop["dag"]["tasks"]
    assert inner["withParam"] == "{{workflow.parameters.ns}}"
    assert inner["arguments"]["parameters"][:1] == [{"name": "x", "value": "{{item}}"}]  # then its cache key
    assert loop["outputs"]["parameters"] == [{"name": "output", "valueFrom": {
        "parameter": "{{tasks.square.outputs.parameters.output}}"}}]
    assert dag["summarize"]["depends"] == "(square.Succeeded || square.Skipped)"  # an empty loop is Skipped
    assert dag["summarize"]["arguments"]["parameters"] == [
        {"name": "values", "value": "{{tasks.square.outputs.parameters.output}}"}]
    # references only: names and keys of the Secret and ConfigMap, never a value
    deploy = templates[dag["deploy"]["template"]]
    env = {e["name"]: e for e in deploy["container"]["env"]}
    assert env["API_TOKEN"] == {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "deploy-creds",
                                                                                      "key": "token"}}}
    assert env["REGION"]["valueFrom"] == {"configMapKeyRef": {"name": "deploy-cfg", "key": "region"}}
    assert deploy["volumes"] == [{"name": "secret-0-tls", "secret": {"secretName": "tls"}}]
    assert {"name": "secret-0-tls", "mountPath": "/etc/tls", "readOnly": True} in deploy["container"]["volumeMounts"]


def test_run_after_a_skipped_task_depends_on_skipped_and_omitted(tmp_path, argo_workflow_check):
    pipeline = PIPELINE + '''
[pipeline.tasks.report]
step = "label"
args.s = "report"
after = ["after_deploy"]
when_upstream_skipped = "run"
'''
    project, graph = graph_of(tmp_path, pipeline)
    doc = argo_workflow_check(render_workflow(graph, project.manifest))
    dag = {t["name"]: t for t in doc["spec"]["templates"][0]["dag"]["tasks"]}
    assert dag["report"]["depends"] == "(after-deploy.Succeeded || after-deploy.Skipped || after-deploy.Omitted)"
    with pytest.raises(RenderError, match="KFP v2 cannot run a task after task 'after_deploy', which may be skipped"):
        compile_kfp(graph, project, tmp_path)


def component_texts(graph, project) -> dict[str, str]:
    return {s: render_component(project.components[s].with_image(IMAGE)) for s in graph.steps}


def compile_kfp(graph, project, tmp_path: Path) -> list[dict]:
    out = render_kfp_pipeline(graph, component_texts(graph, project), tmp_path / "kfp" / "pipeline.yaml")
    kfp_components.load_component_from_file(str(out))
    return list(yaml.safe_load_all(out.read_text()))


def without_status(pipeline: str) -> str:
    return pipeline.replace('args.status = { status = "pipeline" }', 'args.status = "done"')


def test_kfp_pipeline_nests_if_parallel_for_collected_and_exit_handler(tmp_path):
    project, graph = graph_of(tmp_path)
    spec, platform = compile_kfp(graph, project, tmp_path)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "notify"}
    assert root["notify"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert root["notify"]["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    assert spec["components"]["comp-notify"]["inputDefinitions"]["parameters"]["status"]["parameterType"] == \
        "TASK_FINAL_STATUS"
    comps = spec["components"]
    body = comps["comp-exit-handler-1"]["dag"]["tasks"]
    conditions = [t for t in body.values() if "triggerPolicy" in t and "condition" in t["triggerPolicy"]]
    assert len(conditions) == 1  # deploy when: the outer dsl.If (score > threshold)
    outer = conditions[0]
    assert "> " in outer["triggerPolicy"]["condition"] and "pipelinechannel--threshold" in \
        outer["triggerPolicy"]["condition"]
    inner = comps[outer["componentRef"]["name"]]["dag"]["tasks"]
    (nested,) = [t for t in inner.values() if "condition" in t.get("triggerPolicy", {})]
    assert "!= '9'" in nested["triggerPolicy"]["condition"]  # not (mode == "9") -> mode != "9"
    innermost = comps[nested["componentRef"]["name"]]["dag"]["tasks"]
    assert set(innermost) == {"deploy", "after-deploy"}  # a task skipped with deploy sits in its dsl.If block
    loops = {t["taskInfo"]["name"]: t for t in body.values() if "parameterIterator" in t}
    assert {t["parameterIterator"]["itemInput"] for t in loops.values()} >= {"pipelinechannel--ns-loop-item"}
    assert any(t.get("iteratorPolicy", {}).get("parallelismLimit") == 2 for t in loops.values())
    field_loop = next(t for t in loops.values() if t["taskInfo"]["name"].startswith("for-loop")
                      and t["parameterIterator"]["items"].get("raw") == '[{"x": 2}, {"x": 3}]')
    field_body = comps[field_loop["componentRef"]["name"]]["dag"]["tasks"]
    assert field_body["square-field"]["inputs"]["parameters"]["x"]["parameterExpressionSelector"] == \
        'parseJson(string_value)["x"]'
    summarize = body["summarize"]["inputs"]["parameters"]["values"]
    assert "taskOutputParameter" in summarize  # dsl.Collected of the loop's output
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    deploy = executors["exec-deploy"]
    assert deploy["secretAsEnv"][0]["keyToEnv"] == [{"envVar": "API_TOKEN", "secretKey": "token"}]
    assert deploy["configMapAsEnv"][0]["keyToEnv"] == [{"configMapKey": "region", "envVar": "REGION"}]
    assert deploy["secretAsVolume"][0]["mountPath"] == "/etc/tls"


def test_secrets_are_references_only_in_every_rendered_file(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "s3cr3t-value")
    project, graph = graph_of(tmp_path, without_status(PIPELINE))
    out = render_kfp_pipeline(graph, component_texts(graph, project), tmp_path / "kfp" / "pipeline.yaml")
    texts = [render_workflow(graph, project.manifest), out.read_text(), *component_texts(graph, project).values()]
    for text in texts:
        assert "s3cr3t-value" not in text
    assert "deploy-creds" in texts[0] and "deploy-creds" in texts[1]


@pytest.mark.parametrize("old, new, message", [
    ('{ not = { param = "mode", op = "==", value = "9" } }',
     '{ any = [{ param = "mode", op = "==", value = "9" }, { param = "mode", op = "==", value = "8" }] }',
     "KFP v2 nests dsl.If blocks, which makes `all` (and) but not `any` (or)"),
])
def test_what_kfp_v2_cannot_express_is_a_render_error(tmp_path, old, new, message):
    pipeline = without_status(PIPELINE)
    assert old in pipeline
    project, graph = graph_of(tmp_path, pipeline.replace(old, new))
    with pytest.raises(RenderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_kfp(graph, project, tmp_path)


def test_plain_pipelines_keep_dependencies_not_depends(tmp_path, argo_workflow_check):
    project, graph = graph_of(tmp_path, '''\
[pipeline.tasks.score]
step = "score"
args.n = 7
[pipeline.tasks.label]
step = "label"
args.s = "x"
after = ["score"]
''')
    doc = argo_workflow_check(render_workflow(graph, project.manifest))
    (_, label) = doc["spec"]["templates"][0]["dag"]["tasks"]
    assert label["dependencies"] == ["score"] and "depends" not in label and not graph.has_control_flow
    assert json.dumps(doc).count("onExit") == 0
