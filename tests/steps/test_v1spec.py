"""Our reader of the KFP v1 component spec (compose_kfp.steps.v1spec): the forms the KFP v2 SDK refuses, YAML 1.1
booleans as names, what the KFP v2 SDK cannot express, and the whole v1 corpus rendered for Argo and resolved by
``run --local`` the same way."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from compose_kfp.errors import StepError
from compose_kfp.localrun import runner as localrun
from compose_kfp.localrun.rootfs import RegistryOptions
from compose_kfp.pipeline.graph import resolve_graph
from compose_kfp.pipeline.render.workflow import render_workflow
from compose_kfp.schema import Manifest
from compose_kfp.steps.components import load_component_text
from compose_kfp.steps.placeholders import Bindings, component_output_path, io_name, resolve_command_line
from compose_kfp.steps.v1spec import kfp_v2_obstacles, load_yaml
from tests.fixtures.pipeline_graphs import argo_workflow_check  # noqa: F401 - fixture

BUSYBOX = "busybox@sha256:2919d0172f7524b2d8df9e50066a682669e6d170ac0f6a49676d54358fe970b5"

#: Issue 18, case 1: `if` with a single argument in `then`/`else`.
SINGLE_BRANCH = textwrap.dedent(f"""\
    name: Optional flags
    inputs:
    - {{name: opt, type: String, optional: true}}
    - {{name: other, type: String, optional: true}}
    implementation:
      container:
        image: {BUSYBOX}
        command: [echo, {{if: {{cond: {{isPresent: opt}}, then: {{inputValue: opt}}, else: {{inputValue: other}}}}}}]
    """)
#: Issue 18, case 2: `if` with list branches inside `concat`.
IF_IN_CONCAT = textwrap.dedent(f"""\
    name: Flag in concat
    inputs:
    - {{name: opt, type: String, optional: true}}
    implementation:
      container:
        image: {BUSYBOX}
        command:
        - echo
        - concat: ['--flag=', {{if: {{cond: {{isPresent: opt}}, then: [x], else: [y]}}}}]
    """)
#: Issue 18, case 3: input names YAML 1.1 reads as booleans.
BOOLEAN_NAMES = textwrap.dedent(f"""\
    name: Switches
    inputs:
    - {{name: off, type: String}}
    - {{name: yes, type: String, optional: yes}}
    - {{name: on, type: String, optional: on}}
    - {{name: no, type: String, default: no}}
    implementation:
      container:
        image: {BUSYBOX}
        command: [echo, {{inputValue: off}}, {{if: {{cond: {{isPresent: yes}}, then: [{{inputValue: yes}}]}}}},
                  {{if: {{cond: {{isPresent: on}}, then: [{{inputValue: on}}]}}}}, {{inputValue: no}}]
    """)


def argv(spec, **values):
    line = resolve_command_line(spec, Bindings(values=values))
    return line.argv


def test_single_argument_branches_are_read_and_resolved():
    spec = load_component_text(SINGLE_BRANCH, source="flags.yaml")
    assert spec.command[1] == {"if": {"cond": {"isPresent": "opt"}, "then": {"inputValue": "opt"},
                                      "else": {"inputValue": "other"}}}
    assert argv(spec, opt="A", other="B") == ["echo", "A"]
    assert argv(spec, other="B") == ["echo", "B"]
    assert argv(spec) == ["echo"]


def test_list_branches_inside_concat_are_read_and_joined():
    spec = load_component_text(IF_IN_CONCAT, source="concat.yaml")
    assert argv(spec, opt="1") == ["echo", "--flag=x"]
    assert argv(spec) == ["echo", "--flag=y"]


def test_yaml_1_1_booleans_stay_the_names_the_author_wrote():
    spec = load_component_text(BOOLEAN_NAMES, source="switches.yaml")
    assert [(i.name, i.optional, i.default) for i in spec.inputs] == [
        ("off", False, None), ("yes", True, None), ("on", True, None), ("no", False, "no")]
    assert argv(spec, off="0", yes="1", on="2", no="3") == ["echo", "0", "1", "2", "3"]
    assert argv(spec, off="0", no="3") == ["echo", "0", "3"]
    # only true/false are booleans; the YAML 1.1 words keep their text everywhere, keys included
    assert load_yaml("a: [yes, No, ON, off, true, False]\nno: 1\n", source="x.yaml") == [
        {"a": ["yes", "No", "ON", "off", True, False], "no": 1}]


@pytest.mark.parametrize(("name", "word", "what"), [("true", "true", "a boolean"), ("1", "1", "a number"),
                                                    ("null", "null", "null"), ("1.5", "1.5", "a number")])
def test_a_name_yaml_still_reads_as_no_string_is_refused_with_the_fix(name, word, what):
    text = f"name: t\ninputs:\n- {{name: {name}, type: String}}\nimplementation: {{container: {{image: alpine}}}}\n"
    with pytest.raises(StepError) as err:
        load_component_text(text, source="t.yaml")
    assert str(err.value) == (f"t.yaml: inputs[0].name: YAML reads {word} as {what}, not as a name; quote it "
                              f"(name: '{word}') to call the input '{word}'")


@pytest.mark.parametrize(("text", "message"), [
    ("optional: maybe", r"t.yaml: inputs\[0\]\.optional: expected true or false, got 'maybe'"),
    ("default: {a: 1}", r"t.yaml: inputs\[0\]\.default: a default must be a string, number or boolean"),
])
def test_interface_values_follow_the_spec(text, message):
    doc = f"name: t\ninputs:\n- {{name: a, {text}}}\nimplementation: {{container: {{image: alpine}}}}\n"
    with pytest.raises(StepError, match=message):
        load_component_text(doc, source="t.yaml")


def test_file_outputs_and_output_path_for_the_same_output_are_refused():
    text = textwrap.dedent("""\
        name: t
        outputs: [{name: r}]
        implementation:
          container:
            image: alpine
            command: [sh, -c, 'echo > $0', {outputPath: r}]
            fileOutputs: {r: /r.txt}
        """)
    with pytest.raises(StepError, match=r"t.yaml: implementation.container.fileOutputs.r: output 'r' is also given by "
                                        r"an \{outputPath: r\} placeholder; KFP v1 takes one path per output"):
        load_component_text(text, source="t.yaml")


def test_file_outputs_give_the_output_path():
    spec = load_component_text(textwrap.dedent("""\
        name: fo
        outputs: [{name: result, type: String}, {name: other}]
        implementation:
          container:
            image: alpine
            command: [sh, -c, 'echo hello > /output.txt; echo x > "$0"', {outputPath: other}]
            fileOutputs: {result: /output.txt}
        """), source="fo.yaml")
    assert component_output_path(spec, "result") == "/output.txt"
    assert component_output_path(spec, "other") == "/tmp/outputs/other/data"


def test_what_kfp_v2_cannot_express_is_named():
    assert kfp_v2_obstacles(load_component_text(SINGLE_BRANCH, source="f.yaml")) == (
        'command[1].if.then: the branch is a single placeholder ({"inputValue": "opt"}), which KFP v2 takes only '
        'as a string or a list',
        'command[1].if.else: the branch is a single placeholder ({"inputValue": "other"}), which KFP v2 takes '
        'only as a string or a list')
    assert kfp_v2_obstacles(load_component_text(IF_IN_CONCAT, source="c.yaml")) == (
        "command[1].concat[1].if.then: a list branch of an `if` inside `concat`, which KFP v2 does not allow "
        "(only a single string or placeholder there)",
        "command[1].concat[1].if.else: a list branch of an `if` inside `concat`, which KFP v2 does not allow "
        "(only a single string or placeholder there)")
    assert kfp_v2_obstacles(load_component_text(BOOLEAN_NAMES, source="s.yaml")) == ()


def test_what_kfp_v2_cannot_express_is_what_its_sdk_refuses():
    """The obstacles agree with the SDK itself: each refused file fails to load, each other file loads."""
    from kfp import components as kfp_components

    from compose_kfp.pipeline.render.component import render_component

    for text in (SINGLE_BRANCH, IF_IN_CONCAT, BOOLEAN_NAMES):
        spec = load_component_text(text, source="x.yaml")
        rendered = render_component(spec)
        if kfp_v2_obstacles(spec):
            with pytest.raises(Exception):
                kfp_components.load_component_from_text(rendered)
        else:
            kfp_components.load_component_from_text(rendered)


# ---- the v1 corpus -----------------------------------------------------------------------------

_LITERALS = {"Integer": 3, "Float": 0.5, "Boolean": True, "JsonArray": [1, 2], "JsonObject": {"k": "v"}}
_TABLE: list[tuple[str, str, str]] = []


def _corpus_files(corpus) -> list[Path]:
    return sorted((corpus / "kfp_v1_components").glob("*.yaml"))


def _literal(spec_in):
    from compose_kfp.steps.component import canonical_type

    return _LITERALS.get(canonical_type(spec_in.type), f"v-{re.sub(r'[^a-z0-9]', '', spec_in.name.lower())}")


def _graph(spec, all_inputs: bool):
    args = {i.name: _literal(i) for i in spec.inputs if all_inputs or i.required}
    manifest = Manifest.model_validate({
        "project": {"name": "corpus"},
        "image": {"base": "scratch", "repository": "localhost:5000/corpus"},
        "steps": {"comp": {"component": "comp.yaml"}},
        "pipeline": {"tasks": {"t": {"step": "comp", "args": {k: {"value": v} for k, v in args.items()}}}},
    })
    image = spec.image if spec.image and "@sha256:" in spec.image else "example.com/c@sha256:" + "ab" * 32
    return manifest, resolve_graph(manifest, {"comp": spec}, manifest_path=Path("kfp.toml"), images={"comp": image})


def _argo_argv(doc, variables) -> list[str]:
    """The command line Argo starts: the template's command and args with the task's parameters substituted."""
    (task,) = doc["spec"]["templates"][0]["dag"]["tasks"]
    template = next(t for t in doc["spec"]["templates"] if t["name"] == task["template"])
    params = {p["name"]: p["value"] for p in (task.get("arguments") or {}).get("parameters", [])}
    container = template["container"]

    def sub(text: str) -> str:
        text = re.sub(r"\{\{inputs\.parameters\.([-\w]+)\}\}", lambda m: params[m.group(1)], text)
        return localrun._substitute(text, variables)

    return [sub(a) for a in [*container.get("command", []), *container.get("args", [])]]


def test_v1_corpus_renders_for_argo_and_resolves_the_same_in_run_local(corpus, argo_workflow_check, tmp_path):
    """Every v1 corpus file the spec allows: read, rendered for Argo (schema-valid), and the command line the Argo
    pod gets equals the one ``run --local`` starts, with all inputs given and with only the required ones."""
    for path in _corpus_files(corpus):
        try:
            spec = load_component_text(path.read_text(encoding="utf-8"), source=path.name)
        except StepError as exc:
            reason = str(exc).removeprefix(f"{path.name}: ")
            # refused only for placeholders the KFP v2 launcher alone resolves (not in the v1 specification)
            assert re.search(r"placeholder \{(inputUri|outputUri|executorInput)\b", reason), reason
            _TABLE.append((path.name, "refused", reason[:110]))
            continue
        checked = []
        for all_inputs in (True, False):
            manifest, graph = _graph(spec, all_inputs)
            doc = argo_workflow_check(render_workflow(graph, manifest))
            (task,) = graph.tasks
            runner = localrun._Runner(graph, tmp_path / "run", {}, "podman", tmp_path / "cache", RegistryOptions(),
                                      None)
            prep = runner.prepare(task, tmp_path / "run" / task.k8s_name)
            variables = {**runner.workflow_vars, "pod.name": f"{runner.workflow_name}-{task.k8s_name}"[:63]}
            assert _argo_argv(doc, variables) == prep.argv, path.name
            template = next(t for t in doc["spec"]["templates"] if "container" in t)
            outputs = template.get("outputs", {})
            for out in outputs.get("parameters", []) + outputs.get("artifacts", []):
                path_of = out.get("valueFrom", {}).get("path") or out.get("path")
                original = next(o.name for o in spec.outputs if io_name(o.name) == out["name"])
                assert path_of == component_output_path(spec, original), (path.name, out)
            checked.append(len(prep.argv))
        kinds = sorted({k for k, _ in spec.placeholders()})
        _TABLE.append((path.name, "argo+local", f"argv {checked[0]}/{checked[1]} args (all/required inputs); "
                       f"{', '.join(kinds) or 'no placeholders'}" + ("; fileOutputs" if spec.file_outputs else "")))
    width = max(len(r[0]) for r in _TABLE)
    print("\nKFP v1 corpus through compose_kfp.steps.v1spec:\n" + "\n".join(
        f"{name:<{width}}  {outcome:<10}  {why}" for name, outcome, why in _TABLE))
    refused = [r[0] for r in _TABLE if r[1] == "refused"]
    assert len(_TABLE) == len(_corpus_files(corpus)) and len(refused) <= 3, refused
