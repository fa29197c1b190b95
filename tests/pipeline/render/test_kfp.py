"""The KFP v2 pipeline package: compiled with the real kfp SDK from rendered component files, and loaded back."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
import yaml
from kfp import components as kfp_components

from compose_kfp import schema
from compose_kfp.errors import RenderError
from compose_kfp.pipeline.graph import resolve_graph
from compose_kfp.manifest.project import load_project
from compose_kfp.pipeline.render.component import render_component
from compose_kfp.pipeline.render.kfp import render_kfp_pipeline
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

EXAMPLES = sorted(EXAMPLES_DIR.glob("*/kfp.toml"))

#: THIRD_PARTY without its `if` on an inputValue (KFP v2 only supports isPresent conditions).
KFP_THIRD_PARTY = dataclasses.replace(THIRD_PARTY, args=THIRD_PARTY.args[:-1])
KFP_COMPONENTS = {**COMPONENTS, "report": KFP_THIRD_PARTY}


def component_texts(graph, comps=KFP_COMPONENTS) -> dict[str, str]:
    return {s: render_component(comps[s] if comps[s].image else comps[s].with_image(IMAGE)) for s in graph.steps}


def compile_graph(graph, tmp_path, comps=KFP_COMPONENTS) -> dict:
    out = render_kfp_pipeline(graph, component_texts(graph, comps), tmp_path / "pipeline" / "pipeline.yaml")
    loaded = kfp_components.load_component_from_file(str(out))  # loads back with the SDK
    doc = yaml.safe_load(out.read_text())
    assert loaded.name == graph.k8s_name == doc["pipelineInfo"]["name"]
    return {"doc": doc, "loaded": loaded}


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "third_party"])
def test_scenario_compiles_and_loads_back(scenario, tmp_path):
    manifest, graph = scenario_graph(scenario)
    result = compile_graph(graph, tmp_path)
    tasks = result["doc"]["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(t.k8s_name for t in graph.tasks)
    for task in graph.tasks:
        kfp_task = tasks[task.k8s_name]
        assert sorted(kfp_task.get("dependentTasks", [])) == sorted(graph.task(d).k8s_name for d in task.dependencies)
        for arg in task.arguments:
            if arg.source == "task":
                where = kfp_task["inputs"]["artifacts" if arg.uses_path else "parameters"][arg.input]
                producer = where.get("taskOutputArtifact") or where.get("taskOutputParameter")
                assert producer["producerTask"] == graph.task(arg.task).k8s_name
    inputs = result["loaded"].component_spec.inputs or {}
    assert sorted(inputs) == sorted(p.name for p in graph.params)
    for param in graph.params:
        assert inputs[param.name].default == param.default


def test_settings_reach_the_ir(tmp_path):
    _, graph = scenario_graph("gpu")
    doc = compile_graph(graph, tmp_path)["doc"]
    resources = doc["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["resourceCpuLimit"] == "4" and resources["resourceMemoryLimit"] == "16Gi"
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "2"
    _, graph = scenario_graph("retries")
    doc = compile_graph(graph, tmp_path)["doc"]
    assert doc["root"]["dag"]["tasks"]["train"]["retryPolicy"]["maxRetryCount"] == 3
    _, graph = scenario_graph("resources")
    doc = compile_graph(graph, tmp_path)["doc"]
    env = doc["deploymentSpec"]["executors"]["exec-train"]["container"]["env"]
    assert {"name": "NOTE", "value": "x: y # z"} in env


def test_images_come_from_the_graph(tmp_path):
    manifest = scenario_graph("artifacts")[0]
    other = "registry.example.com/acme/other@sha256:" + "ef" * 32
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"),
                          images={"load": IMAGE, "train": other, "evaluate": IMAGE})
    doc = compile_graph(graph, tmp_path)["doc"]
    assert doc["deploymentSpec"]["executors"]["exec-train"]["container"]["image"] == other
    assert doc["deploymentSpec"]["executors"]["exec-load"]["container"]["image"] == IMAGE


def test_third_party_concat_and_ispresent(tmp_path):
    _, graph = scenario_graph("third_party")
    doc = compile_graph(graph, tmp_path)["doc"]
    args = doc["deploymentSpec"]["executors"]["exec-report"]["container"]["args"]
    assert any("Concat" in a and "{{pod.name}}" in a for a in args), args
    assert any("IfPresent" in a for a in args), args
    assert doc["deploymentSpec"]["executors"]["exec-report"]["container"]["command"] == list(THIRD_PARTY.command)
    tasks = doc["root"]["dag"]["tasks"]
    assert tasks["total"]["inputs"]["parameters"]["note"]["taskOutputParameter"] == \
        {"outputParameterKey": "report", "producerTask": "report"}


def test_if_on_a_value_is_refused_with_a_clear_error(tmp_path):
    _, graph = scenario_graph("third_party")
    with pytest.raises(RenderError, match=r"steps.report: the KFP v2 SDK cannot express this component .*is not "
                                          r"\{isPresent: INPUT\}, the only condition KFP v2 has\. The Argo target renders it"):
        render_kfp_pipeline(graph, component_texts(graph, COMPONENTS), tmp_path / "p.yaml")


def test_literal_for_an_artifact_input_is_refused(tmp_path):
    manifest = manifest_from_toml(STEPS_TOML + """
[pipeline.tasks.train]
step = "train"
args = { dataset = "1,2,3", n = 1 }
""")
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"), images={"train": IMAGE})
    with pytest.raises(RenderError, match=r"kfp.toml: pipeline.tasks.train.args.dataset: KFP v2 cannot pass a literal to input 'dataset'"):
        render_kfp_pipeline(graph, component_texts(graph), tmp_path / "p.yaml")


def test_missing_component_text_is_an_error(tmp_path):
    _, graph = scenario_graph("fan_in")
    with pytest.raises(RenderError, match="steps.combine: no rendered component file"):
        render_kfp_pipeline(graph, {"load": component_texts(graph)["load"]}, tmp_path / "p.yaml")


TRICKY = ["a: b # {{c}}\n- d", "ünïcødé ✓ 日本語 🚀", "y" * 5000, "{% if x %}{{ y }}{% endif %}", "", "null"]


@pytest.mark.parametrize("value", TRICKY, ids=[repr(v)[:20] for v in TRICKY])
def test_tricky_strings_round_trip(value, tmp_path):
    data = tomllib.loads(MANIFEST_HEAD + STEPS_TOML)
    data["pipeline"] = {"params": {"text": value}, "tasks": {
        "echo": {"step": "echo", "args": {"message": value, "times": 1, "flag": True,
                                          "items": [value], "opts": {"value": {"k": value}}}},
        "echo2": {"step": "echo", "args": {"message": {"param": "text"}, "times": 2, "flag": False,
                                           "items": [], "opts": {"value": {}}}}}}
    manifest = schema.Manifest.model_validate(data)
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"), images={"echo": IMAGE})
    result = compile_graph(graph, tmp_path)
    assert result["loaded"].component_spec.inputs["text"].default == value
    constants = result["doc"]["root"]["dag"]["tasks"]["echo"]["inputs"]["parameters"]
    assert constants["message"]["runtimeValue"]["constant"] == value
    assert constants["items"]["runtimeValue"]["constant"] == [value]
    assert constants["opts"]["runtimeValue"]["constant"] == {"k": value}


@pytest.mark.parametrize("kfp_toml", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_example_compiles_and_loads_back(kfp_toml, tmp_path):
    project = load_project(kfp_toml)
    digest = "sha256:" + "ab" * 32
    images = {step: f"{project.manifest.image.repository}@{digest}"
              for step, comp in project.components.items() if comp.image is None}
    graph = resolve_graph(project.manifest, project.components, manifest_path=kfp_toml, images=images)
    texts = {s: render_component(project.components[s].with_image(images[s]) if s in images
                                 else project.components[s]) for s in graph.steps}
    out = render_kfp_pipeline(graph, texts, tmp_path / "pipeline.yaml")
    loaded = kfp_components.load_component_from_file(str(out))
    assert loaded.name == graph.k8s_name
    doc = yaml.safe_load(out.read_text())
    dags = [doc["root"]["dag"], *(c["dag"] for c in doc["components"].values() if "dag" in c)]
    # every task of the graph (the exit handler included) is one container task, in whatever dsl block
    containers = [name for dag in dags for name, t in dag["tasks"].items()
                  if "executorLabel" in doc["components"][t["componentRef"]["name"]]]
    assert sorted(containers) == sorted(t.k8s_name for t in graph.all_tasks)
