"""Task cache keys (compose_kfp.pipeline.cache) and the Argo ``memoize`` they become: keys are pure functions of the
graph (image digest, command template, inputs, upstream keys); the rendered Workflow validates against the Argo schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compose_kfp.errors import ConfigError
from compose_kfp.manifest.load import load_manifest
from compose_kfp.pipeline import cache
from compose_kfp.pipeline.graph import resolve_graph
from compose_kfp.pipeline.render.workflow import CACHE_KEY_PARAM, render_workflow
from tests.fixtures.pipeline_graphs import COMPONENTS, IMAGE, SCENARIOS, STEPS_TOML, manifest_from_toml, scenario_graph

OTHER = "registry.example.com/acme/pipe@sha256:" + "ef" * 32
ARGO_KEY = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")  # Argo's cacheKeyRegex (workflow/controller/cache)

#: load -> train -> evaluate (the "artifacts" scenario) with a param n that the tests wire in where they need it.
CHAIN = STEPS_TOML + "[pipeline]\nparams = { n = 10 }\n" + SCENARIOS["artifacts"]


def graph_of(body: str, images: dict[str, str] | None = None):
    manifest = manifest_from_toml(body)
    images = images or {s: IMAGE for s, c in COMPONENTS.items() if c.image is None}
    return manifest, resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"), images=images)


def memoized(doc) -> dict[str, dict]:
    return {t["name"]: t["memoize"] for t in doc["spec"]["templates"] if "memoize" in t}


def test_keys_are_stable_distinct_and_hex():
    _, graph = graph_of(CHAIN)
    keys = cache.task_keys(graph)
    assert list(keys) == ["load", "train", "evaluate"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", k.key) for k in keys.values())
    assert len({k.key for k in keys.values()}) == 3
    assert cache.task_keys(graph_of(CHAIN)[1]) == keys  # a fresh resolve gives the same keys
    assert keys["evaluate"].upstream == ("train", "load")


def test_an_image_change_propagates_downstream_only():
    _, graph = graph_of(CHAIN)
    before = cache.task_keys(graph)
    images = {s: IMAGE for s, c in COMPONENTS.items() if c.image is None}
    _, changed = graph_of(CHAIN, {**images, "train": OTHER})
    after = cache.task_keys(changed)
    assert after["load"] == before["load"]
    assert after["train"].key != before["train"].key and after["train"].image != before["train"].image
    assert after["evaluate"].key != before["evaluate"].key
    assert after["evaluate"].image == before["evaluate"].image  # its own image did not change


def test_the_repository_is_not_part_of_the_key():
    _, graph = graph_of(CHAIN)
    moved = {s: IMAGE.replace("registry.example.com", "other.example:5000") for s, c in COMPONENTS.items()
             if c.image is None}
    assert cache.task_keys(graph_of(CHAIN, moved)[1]) == cache.task_keys(graph)


def test_inputs_and_params_change_the_key():
    _, graph = graph_of(CHAIN)
    base = cache.task_keys(graph)
    _, edited = graph_of(CHAIN.replace("args.test_size = 0.3", "args.test_size = 0.4"))
    edited_keys = cache.task_keys(edited)
    assert all(edited_keys[t].key != base[t].key for t in base)  # load's input, and everything downstream
    _, with_param = graph_of(CHAIN.replace("n = 7 }", "n = { param = \"n\" } }"))
    assert cache.task_keys(with_param, {"n": "10"}) == cache.task_keys(with_param)  # the default
    assert cache.task_keys(with_param, {"n": "11"})["train"].key != cache.task_keys(with_param)["train"].key


def test_the_version_is_in_the_material(monkeypatch):
    _, graph = graph_of(CHAIN)
    before = cache.task_keys(graph)["load"].key
    monkeypatch.setattr(cache, "KEY_VERSION", "compose-kfp-task-key/2")
    assert cache.task_keys(graph)["load"].key != before


def test_loop_iterations_have_their_own_keys():
    body = STEPS_TOML + """
[pipeline]
params = { grid = [1, 2] }
[pipeline.tasks.load]
step = "load"
args.test_size = 0.2
[pipeline.tasks.train]
step = "train"
for_each = { param = "grid" }
args = { dataset = { task = "load", output = "train_set" }, n = { item = true } }
"""
    _, graph = graph_of(body)
    keys = cache.task_keys(graph)
    one, two = (cache.iteration_key(keys["train"].base, item) for item in (1, 2))
    assert one != two
    grown = cache.task_keys(graph, {"grid": "[1, 2, 3]"})
    assert grown["train"].base == keys["train"].base  # the items do not change an iteration's key...
    assert grown["train"].key != keys["train"].key  # ...but do change the task's (collectors re-run)


def test_a_loop_iteration_key_names_its_item_and_the_params_upstream(argo_workflow_check):
    body = CHAIN.replace("n = 7 }", "n = { item = true } }").replace(
        '[pipeline.tasks.train]\n', '[pipeline.tasks.train]\nfor_each = [1, 2]\n').replace(
        "args.test_size = 0.3", 'args.test_size = { param = "size" }').replace("n = 10 }", "n = 10, size = 0.3 }")
    body = body[:body.index("[pipeline.tasks.evaluate]")]
    manifest, graph = graph_of(body)
    memo = memoized(argo_workflow_check(render_workflow(graph, manifest)))
    base = cache.task_keys(graph)["train"].base
    assert memo["train"]["key"] == (f"{{{{=sprig.sha256sum('{base}' + '/' + workflow.parameters['size'] + '/' + "
                                    f"inputs.parameters['n'])}}}}")


def test_compare_names_the_reasons():
    manifest, graph = graph_of(CHAIN)
    keys = cache.task_keys(graph)
    recorded = {name: k.to_dict() for name, k in keys.items()}
    assert [c.status for c in cache.compare(graph, manifest, keys, recorded)] == ["cached"] * 3
    images = {s: IMAGE for s, c in COMPONENTS.items() if c.image is None}
    _, changed = graph_of(CHAIN, {**images, "train": OTHER})
    lines = cache.compare(changed, manifest, cache.task_keys(changed), recorded, {"train": "layer src replaced"})
    assert [(c.task, c.status, c.reason) for c in lines] == [
        ("load", "cached", ""), ("train", "re-runs", "its image changed (layer src replaced)"),
        ("evaluate", "re-runs", "an upstream task re-runs (train)")]
    _, edited = graph_of(CHAIN.replace("n = 7 }", "n = 6 }"))
    lines = cache.compare(edited, manifest, cache.task_keys(edited), recorded)
    assert [c.reason for c in lines][1:] == ["its inputs changed", "an upstream task re-runs (train)"]
    assert cache.compare(graph, manifest, keys, {})[0].reason == "no key recorded by an apply or run yet"
    off = manifest_from_toml(CHAIN + "cache = false\n")  # the last table is pipeline.tasks.evaluate
    assert cache.compare(graph, off, keys, recorded)[2].reason == "caching is off for this task"


def test_argo_max_age():
    assert cache.argo_max_age("24h") == "24h"
    assert cache.argo_max_age("7d") == "168h"
    assert cache.argo_max_age("1d30m") == "88200s"


def test_workflow_memoizes_each_task_with_its_key(argo_workflow_check):
    manifest, graph = graph_of(CHAIN)
    text = render_workflow(graph, manifest)
    assert render_workflow(graph_of(CHAIN)[1], manifest) == text  # stable across renders
    doc = argo_workflow_check(text)
    memo = memoized(doc)
    keys = cache.task_keys(graph)
    assert {m["key"] for m in memo.values()} == {k.key for k in keys.values()}
    assert all(m["maxAge"] == "168h" and m["cache"] == {"configMap": {"name": "compose-kfp-cache"}}
               for m in memo.values())
    assert all(ARGO_KEY.match(m["key"]) for m in memo.values())
    images = {s: IMAGE for s, c in COMPONENTS.items() if c.image is None}
    changed = argo_workflow_check(render_workflow(graph_of(CHAIN, {**images, "train": OTHER})[1], manifest))
    after = memoized(changed)
    assert after["load"] == memo["load"] and after["train"]["key"] != memo["train"]["key"]
    assert after["evaluate"]["key"] != memo["evaluate"]["key"]


def test_shared_templates_and_params_reach_the_key(argo_workflow_check):
    manifest, graph = scenario_graph("fan_out")
    doc = argo_workflow_check(render_workflow(graph, manifest))
    dag = {t["name"]: t for t in doc["spec"]["templates"] if t["name"] == doc["spec"]["entrypoint"]}
    tasks = {t["name"]: t for t in next(iter(dag.values()))["dag"]["tasks"]}
    keys = cache.task_keys(graph)
    passed = {name: {p["name"]: p["value"] for p in tasks[name]["arguments"]["parameters"]}[CACHE_KEY_PARAM]
              for name in ("train-a", "train-b", "train-c")}
    # train_a takes the param n: its key adds the submitted value; the others pass their literal keys
    assert passed["train-a"] == f"{{{{=sprig.sha256sum('{keys['train_a'].base}' + '/' + workflow.parameters['n'])}}}}"
    assert passed["train-b"] == keys["train_b"].key and passed["train-c"] == keys["train_c"].key
    train = next(t for t in doc["spec"]["templates"] if t["name"] == "train")
    assert train["memoize"]["key"] == f"{{{{inputs.parameters.{CACHE_KEY_PARAM}}}}}"
    assert {"name": CACHE_KEY_PARAM} in train["inputs"]["parameters"]


def test_cache_settings_and_opt_out(argo_workflow_check):
    body = CHAIN.replace("[pipeline]\n", '[pipeline]\ncache = { max_age = "36h", config_map = "team-cache" }\n')
    manifest, graph = graph_of(body + "cache = false\n")
    memo = memoized(argo_workflow_check(render_workflow(graph, manifest)))
    assert set(memo) == {"load", "train"}  # evaluate opted out
    assert memo["load"]["maxAge"] == "36h" and memo["load"]["cache"]["configMap"]["name"] == "team-cache"
    off = body.replace('max_age = "36h"', 'enabled = false, max_age = "36h"')
    manifest, graph = graph_of(off)
    assert memoized(argo_workflow_check(render_workflow(graph, manifest))) == {}


def test_exit_handler_is_never_memoized(argo_workflow_check):
    manifest, graph = graph_of(STEPS_TOML + """
[pipeline]
on_exit = "done"
[pipeline.tasks.load]
step = "load"
args.test_size = 0.2
[pipeline.tasks.done]
step = "combine"
args = { a = 1.0, b = 2.0 }
""")
    memo = memoized(argo_workflow_check(render_workflow(graph, manifest)))
    assert list(memo) == ["load"]


@pytest.mark.parametrize("value", ["7 days", "0s", "1w", "", "h"])
def test_a_bad_max_age_names_the_file_and_key(tmp_path, value):
    path = tmp_path / "kfp.toml"
    path.write_text(f'[project]\nname = "p"\n[image]\nbase = "scratch"\nrepository = "oci:out"\n'
                    f'[pipeline.cache]\nmax_age = "{value}"\n')
    with pytest.raises(ConfigError) as e:
        load_manifest(path, env={})
    assert "kfp.toml" in str(e.value) and "pipeline.cache.max_age" in str(e.value)
    assert '"24h"' in str(e.value)


def test_kfp_package_keeps_kfp_caching_and_records_our_keys(tmp_path):
    from kfp import components as kfp_components

    from compose_kfp.pipeline.render.kfp import CACHE_KEYS_COMMENT, render_kfp_pipeline
    from tests.pipeline.render.test_kfp import component_texts

    manifest, graph = graph_of(CHAIN + "cache = false\n")  # evaluate opts out
    out = render_kfp_pipeline(graph, component_texts(graph), tmp_path / "pipeline.yaml", manifest)
    kfp_components.load_component_from_file(str(out))  # loads back with the SDK
    text = out.read_text()
    keys = cache.task_keys(graph)
    block = text[text.index(CACHE_KEYS_COMMENT):].splitlines()[1:]
    assert block == [f"#   {name}: {k.key}" for name, k in keys.items()]
    import yaml

    tasks = yaml.safe_load(text)["root"]["dag"]["tasks"]
    assert tasks["load"]["cachingOptions"] == {"enableCache": True}  # KFP's own caching stays on
    assert tasks["evaluate"]["cachingOptions"] == {}  # set_caching_options(False)


def test_the_plan_carries_the_task_section_in_text_and_json():
    from compose_kfp.planner import Plan, TaskCache, format_plan

    p = Plan(project="p", root="/x", images=(), tasks=(
        TaskCache("load", "cached", key="ab"), TaskCache("train", "re-runs", "its inputs changed", "cd")))
    text = format_plan(p)
    assert ("tasks (cache keys against the last apply or run):\n  load   cached\n"
            "  train  re-runs: its inputs changed\nTasks: 1 cached, 1 to re-run.\n") in text
    assert text.endswith("No changes. The images and rendered files match kfp.toml.\n")  # tasks are no change
    assert Plan.from_json(p.to_json()) == p
    assert "tasks" not in format_plan(Plan(project="p", root="/x", images=()))
