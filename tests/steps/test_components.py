"""Third-party component files: the real-world corpus, compiled KFP v2 files, refusals, and step_components."""

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from compose_kfp.steps.component import InputSpec, OutputSpec
from compose_kfp.steps.components import load_component_file, load_component_text, step_components
from compose_kfp.errors import StepError
from compose_kfp.schema import Manifest

# file -> (expected outcome, regex the reason must match). Loaded files: the reason is a summary we check.
CORPUS_V1 = {
    "Etheredge-Works__gloves__component.yaml": ("loaded", None),
    "Nannakaroliina__kubeflow-pipeline-demo__component.yaml": (
        "refused", r"args\[1\]: placeholder \{executorInput: None\} needs the KFP v2 executor input"),
    "kubeflow__pipelines__components__XGBoost__Train__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__diagnostics__diagnose_me__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__gcp__dataproc__submit_pyspark_job__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__git__clone__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__google-cloud__google_cloud_pipeline_components__experimental__evaluation__"
    "component.yaml": ("refused", r"args\[46\]: placeholder \{outputUri: 'evaluation_metrics'\} needs the URI"),
    "kubeflow__pipelines__components__json__Build_dict__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__kubeflow__dnntrainer__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__kubernetes__Apply_object__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__local__confusion_matrix__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__nuclio__deploy__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__sample__Shell_script__component.yaml": ("loaded", None),
    "kubeflow__pipelines__components__web__Download__component.yaml": ("loaded", None),
    "kubeflow__pipelines__test_data__sdk_uncompiled_pipelines__v1__fancy_trainer_component.yaml": (
        "refused", r"args\[1\]: placeholder \{inputUri: 'examples'\} needs the URI of an input artifact"),
    "kubeflow__pipelines__test_data__sdk_uncompiled_pipelines__v1__if_placeholder_component.yaml": ("loaded", None),
}

CORPUS_V2 = {
    "kubeflow__pipelines__test_data__sdk_compiled_pipelines__valid__component_with_metadata_fields.yaml": (
        "refused", r"args\[1\]: placeholder \{\{\$\}\} needs the KFP v2 executor input"),
    "kubeflow__pipelines__test_data__sdk_compiled_pipelines__valid__container_with_concat_placeholder.yaml": (
        "refused", r"command\[1\]\.Concat\[2\]: placeholder \{\{\$\.outputs\.artifacts\['text2'\]\.uri\}\} needs"),
    "kubeflow__pipelines__test_data__sdk_compiled_pipelines__valid__critical__add_numbers.yaml": (
        "refused", r"args\[1\]: placeholder \{\{\$\}\} needs the KFP v2 executor input"),
    "kubeflow__pipelines__test_data__sdk_compiled_pipelines__valid__critical__flip_coin.yaml": (
        "refused", r"root\.dag: a compiled pipeline with 3 tasks .* is not a single container component"),
    "kubeflow__pipelines__test_data__sdk_compiled_pipelines__valid__critical__parallel_for_after_dependency.yaml": (
        "refused", r"root\.dag: a compiled pipeline with 3 tasks .* is not a single container component"),
    "kubeflow__pipelines__test_data__sdk_compiled_pipelines__valid__critical__pipeline_with_retry.yaml": (
        "refused", r"args\[1\]: placeholder \{\{\$\}\} needs the KFP v2 executor input"),
}

_TABLE: list[tuple[str, str, str]] = []


def _classify(path: Path) -> tuple[str, str]:
    try:
        spec = load_component_file(path)
    except StepError as exc:
        return "refused", str(exc)
    kinds = sorted({k for k, _ in spec.placeholders()})
    return "loaded", (f"{len(spec.inputs)} inputs, {len(spec.outputs)} outputs, placeholders: "
                      f"{', '.join(kinds) or 'none'}" + (", fileOutputs" if spec.file_outputs else ""))


@pytest.mark.parametrize("name", sorted(CORPUS_V1) + sorted(CORPUS_V2))
def test_corpus_component_is_loaded_or_refused_clearly(corpus, name):
    folder = "kfp_v1_components" if name in CORPUS_V1 else "kfp_v2_components"
    path = corpus / folder / name
    expected, pattern = {**CORPUS_V1, **CORPUS_V2}[name]
    outcome, why = _classify(path)
    _TABLE.append((f"{folder}/{name}", outcome, why.replace(str(path) + ": ", "")))
    assert outcome == expected, why
    if outcome == "refused":
        assert why.startswith(f"{path}: "), why  # the message names the file
        assert re.search(pattern, why), why


def test_corpus_covers_every_file(corpus):
    assert sorted(p.name for p in (corpus / "kfp_v1_components").iterdir()) == sorted(CORPUS_V1)
    assert sorted(p.name for p in (corpus / "kfp_v2_components").iterdir()) == sorted(CORPUS_V2)


def test_zz_print_corpus_table(corpus):
    """Print the classification table (visible with -s or in -rA output) once all corpus files were checked."""
    for name in sorted(CORPUS_V1) + sorted(CORPUS_V2):
        folder = "kfp_v1_components" if name in CORPUS_V1 else "kfp_v2_components"
        if not any(row[0] == f"{folder}/{name}" for row in _TABLE):
            outcome, why = _classify(corpus / folder / name)
            _TABLE.append((f"{folder}/{name}", outcome, why.replace(str(corpus / folder / name) + ": ", "")))
    width = max(len(r[0]) for r in _TABLE)
    lines = [f"{'file':<{width}}  {'result':<7}  why", "-" * (width + 40)]
    lines += [f"{f:<{width}}  {o:<7}  {w}" for f, o, w in sorted(_TABLE)]
    print("\nKFP component corpus:\n" + "\n".join(lines))
    assert len({r[0] for r in _TABLE}) == len(CORPUS_V1) + len(CORPUS_V2)


def test_v1_command_and_args_are_kept_verbatim(corpus):
    for name, (outcome, _) in CORPUS_V1.items():
        if outcome != "loaded":
            continue
        path = corpus / "kfp_v1_components" / name
        raw = yaml.safe_load(path.read_text())["implementation"]["container"]
        spec = load_component_file(path)
        assert list(spec.command) == (raw.get("command") or []), name
        assert list(spec.args) == (raw.get("args") or []), name
        assert spec.image == raw["image"]


def test_same_name_input_and_output_are_kept_apart(corpus):
    spec = load_component_file(corpus / "kfp_v1_components" /
                               "kubeflow__pipelines__components__kubernetes__Apply_object__component.yaml")
    assert spec.input("Object") is not None and spec.output("Object") is not None
    assert ("inputPath", "Object") in set(spec.placeholders()) and ("outputPath", "Object") in set(spec.placeholders())
    trainer = load_component_file(corpus / "kfp_v1_components" /
                                  "kubeflow__pipelines__components__kubeflow__dnntrainer__component.yaml")
    assert trainer.input_usage("Training output dir") == "value"
    assert trainer.output("Training output dir") is not None


def test_interface_details_of_real_files(corpus):
    xgb = load_component_file(corpus / "kfp_v1_components" /
                              "kubeflow__pipelines__components__XGBoost__Train__component.yaml")
    assert xgb.input("starting_model").optional and xgb.input("starting_model").required is False
    assert xgb.input("num_iterations").default == "10"
    download = load_component_file(corpus / "kfp_v1_components" /
                                   "kubeflow__pipelines__components__web__Download__component.yaml")
    assert download.image.startswith("byrnedo/alpine-curl@sha256:")
    nuclio = load_component_file(corpus / "kfp_v1_components" /
                                 "kubeflow__pipelines__components__nuclio__deploy__component.yaml")
    assert nuclio.file_outputs == (("Endpoint", "/tmp/output"),)
    assert nuclio.input("Tag").default == ""
    dataproc = load_component_file(corpus / "kfp_v1_components" /
                                   "kubeflow__pipelines__components__gcp__dataproc__submit_pyspark_job__component.yaml")
    assert ("KFP_POD_NAME", "{{pod.name}}") in dataproc.env
    git = load_component_file(corpus / "kfp_v1_components" / "kubeflow__pipelines__components__git__clone__component.yaml")
    raw_annotations = yaml.safe_load(git.source and Path(git.source).read_text())["metadata"]["annotations"]
    assert dict(git.annotations) == {k: str(v) for k, v in raw_annotations.items()}
    assert dict(git.annotations)["volatile_component"] == "true"


# ---- compiled KFP v2 --------------------------------------------------------------------------


def test_compiled_v2_container_component_is_translated(tmp_path):
    from kfp import compiler, dsl

    @dsl.container_component
    def copy_text(text: str, data: dsl.Input[dsl.Dataset], out: dsl.Output[dsl.Dataset], size: dsl.OutputPath(int),
                  suffix: str = "!", extra: str = None):
        return dsl.ContainerSpec(
            image="alpine@sha256:" + "1" * 64,
            command=["sh", "-c", 'cat "$0" > "$1"; echo "$2" >> "$1"; wc -c < "$1" > "$3"'],
            args=[data.path, out.path, dsl.ConcatPlaceholder([text, "-", suffix]), size,
                  dsl.IfPresentPlaceholder(input_name="extra", then=["--extra", extra], else_=["--none"])],
        )

    path = tmp_path / "copy_text.yaml"
    compiler.Compiler().compile(copy_text, str(path))
    spec = load_component_file(path)
    assert spec.name == "copy-text"
    assert [(i.name, i.type, i.default, i.optional) for i in spec.inputs] == [
        ("extra", "String", None, True), ("suffix", "String", "!", False), ("text", "String", None, False),
        ("data", "Dataset", None, False)]
    assert {(o.name, o.type) for o in spec.outputs} == {("size", "Integer"), ("out", "Dataset")}
    assert spec.args == (
        {"inputPath": "data"}, {"outputPath": "out"},
        {"concat": [{"inputValue": "text"}, "-", {"inputValue": "suffix"}]},
        {"outputPath": "size"},
        {"if": {"cond": {"isPresent": "extra"}, "then": ["--extra", {"inputValue": "extra"}], "else": ["--none"]}},
    )
    assert spec.image == "alpine@sha256:" + "1" * 64
    text = path.read_text().replace("alpine@sha256:" + "1" * 64, "Alpine:::bad")
    with pytest.raises(StepError, match=r"copy_text.yaml: deploymentSpec\.executors\.exec-copy-text\.container"
                                        r"\.image: invalid image reference 'Alpine:::bad'"):
        load_component_text(text, source="copy_text.yaml")


def test_v2_placeholder_inside_a_longer_string_becomes_concat():
    text = textwrap.dedent("""\
        components:
          comp-echo:
            executorLabel: exec-echo
            inputDefinitions:
              parameters:
                msg: {parameterType: STRING}
        deploymentSpec:
          executors:
            exec-echo:
              container:
                image: alpine
                command: [echo, "--msg={{$.inputs.parameters['msg']}}!"]
        pipelineInfo: {name: echo}
        root:
          dag:
            tasks:
              echo:
                componentRef: {name: comp-echo}
                taskInfo: {name: echo}
          inputDefinitions:
            parameters:
              msg: {parameterType: STRING}
        schemaVersion: 2.1.0
        sdkVersion: kfp-2.17.0
        """)
    spec = load_component_text(text, source="echo.yaml")
    assert spec.command == ("echo", {"concat": ["--msg=", {"inputValue": "msg"}, "!"]})


def test_v2_file_with_a_platform_document_is_refused_by_name(tmp_path):
    """The v2 compiler appends a second YAML document for kfp-kubernetes settings (here a secret as env): valid
    YAML the SDK loads, refused because compose-kfp would run the step without those settings."""
    from kfp import compiler, dsl, kubernetes
    from kfp import components as kfp_components

    @dsl.container_component
    def echo(msg: str):
        return dsl.ContainerSpec(image="alpine@sha256:" + "1" * 64, command=["echo", msg])

    @dsl.pipeline(name="echo")
    def pipeline(msg: str = "hi"):
        task = echo(msg=msg)
        kubernetes.use_secret_as_env(task, secret_name="db", secret_key_to_env={"password": "DB_PASSWORD"})

    path = tmp_path / "echo.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    text = path.read_text()
    assert "\n---\nplatforms:\n" in text
    kfp_components.load_component_from_text(text)  # the SDK takes it
    with pytest.raises(StepError) as err:
        load_component_file(path)
    assert str(err.value) == (
        f"{path}: YAML document 2: `platforms` holds KFP v2 platform settings (kubernetes: secretAsEnv), which "
        f"kfp-kubernetes writes, e.g. for secrets as environment variables; compose-kfp does not apply them, so the "
        f"step would run without them. Remove that document (from the `---` on) and provide those settings another "
        f"way (a secret through your cluster, a plain value in [steps.NAME] env)")
    assert "DB_PASSWORD" not in str(err.value)
    first = text.split("\n---\n")[0]
    assert load_component_text(first, source="echo.yaml").command == ("echo", {"inputValue": "msg"})
    with pytest.raises(StepError, match=r"^x.yaml: YAML document 2: a component file holds one YAML document, this "
                                        r"one has 2; remove what follows the first `---`"):
        load_component_text(_v1({}) + "---\nname: again\n", source="x.yaml")


# ---- v1 refusals --------------------------------------------------------------------------------

V1_BASE = {
    "name": "t",
    "inputs": [{"name": "a", "type": "String"}, {"name": "b", "optional": True}],
    "outputs": [{"name": "y"}],
}


def _v1(container=None, **top):
    doc = {**V1_BASE, **top}
    if container is not None:
        doc["implementation"] = {"container": {"image": "alpine", **container}}
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (yaml.safe_dump({**V1_BASE, "implementation": {"graph": {"tasks": {}}}}),
         r"x.yaml: implementation.graph: a graph component"),
        (yaml.safe_dump({**V1_BASE, "implementation": {}}), r"x.yaml: implementation.container is missing"),
        (_v1({"args": [{"inputValue": "nope"}]}),
         r"x.yaml: implementation.container.args\[0\]: placeholder \{inputValue: 'nope'\} names no input .*inputs: a, b"),
        (_v1({"args": [{"inputPath": "y"}]}), r"args\[0\]: placeholder \{inputPath: 'y'\} names no input"),
        (_v1({"command": ["x", {"outputPath": "a"}]}),
         r"command\[1\]: placeholder \{outputPath: 'a'\} names no output .*outputs: y"),
        (_v1({"args": [{"if": {"cond": {"isPresent": "zz"}, "then": ["x"]}}]}),
         r"args\[0\].if.cond: placeholder \{isPresent: 'zz'\} names no input"),
        (_v1({"args": [{"concat": ["a", {"inputValue": "q"}]}]}), r"args\[0\].concat\[1\]: placeholder \{inputValue: 'q'\}"),
        (_v1({"args": [{"if": {"then": ["x"]}}]}), r"args\[0\]: placeholder \{if: ...\} needs a mapping with `cond`"),
        (_v1({"args": [{"if": {"cond": True, "then": ["x"], "otherwise": []}}]}), r"needs a mapping with `cond`"),
        (_v1({"args": [{"concat": "notalist"}]}), r"\{concat: ...\} needs a list"),
        (_v1({"args": [{"inputValue": "a", "inputPath": "a"}]}), r"expected a string or a one-key placeholder"),
        (_v1({"args": [{"frobnicate": "a"}]}), r"unknown placeholder \{frobnicate: 'a'\}; supported: inputValue"),
        (_v1({"args": [{"outputUri": "y"}]}), r"placeholder \{outputUri: 'y'\} needs the URI of an output artifact"),
        (_v1({"args": ["--executor_input", "{{$}}"]}), r"args\[1\]: the string '\{\{\$\}\}' is the KFP v2"),
        (_v1({"fileOutputs": {"zz": "/tmp/x"}}), r"fileOutputs.zz: names no output"),
        (_v1({"fileOutputs": {"y": "relative"}}), r"fileOutputs.y: expected an absolute path"),
        (_v1({"fileOutputs": {"y": "/tmp/../etc/passwd"}}), r"fileOutputs.y: expected an absolute path without '\.\.'"),
        (_v1({"image": "UPPER:::bad"}), r"x.yaml: implementation\.container\.image: invalid image reference 'UPPER:::bad'"),
        (_v1({"image": "bob:s3cret@localhost:5000/x"}), r"implementation\.container\.image: invalid image reference '\*\*\*@"),
        (_v1({"image": ["alpine"]}), r"implementation\.container\.image must be a string"),
        (_v1({"args": "not a list"}), r"implementation.container.args must be a list"),
        (_v1({"env": ["A=1"]}), r"env must be a mapping"),
        (_v1({}, inputs=[{"name": "a"}, {"name": "a"}]), r"inputs\[1\]: two inputs are named 'a'"),
        (_v1({}, inputs=[{"type": "String"}]), r"inputs\[0\] must be a mapping with a non-empty `name`"),
        (_v1({}, outputs={"y": {}}), r"`outputs` must be a list"),
        ("name: [unclosed\n", r"x.yaml:\d+: not valid YAML"),
        ("- a list\n", r"x.yaml: a component file must be a YAML mapping, got list"),
        ("name: x\n", r"x.yaml: not a KFP component"),
    ],
)
def test_v1_refusals_name_the_file_and_placeholder(text, message):
    with pytest.raises(StepError, match=message) as err:
        load_component_text(text, source="x.yaml")
    assert str(err.value).startswith("x.yaml")


def test_v1_default_must_be_a_scalar():
    # the v1 specification takes a string, number or boolean as a default (kfp.components.structures.InputSpec)
    text = _v1({"args": [{"inputValue": "a"}]}, inputs=[{"name": "a", "default": [1, 2]}])
    with pytest.raises(StepError, match=r"^x.yaml: inputs\[0\]\.default: a default must be a string, number or "
                                        r"boolean, got \[1, 2\]; write a list or mapping as a JSON string \('\[1, 2\]'\)"):
        load_component_text(text, source="x.yaml")


def test_v1_defaults_and_types_become_strings():
    text = _v1({"args": [{"inputValue": "a"}, {"inputValue": "b"}, {"outputPath": "y"}]},
               inputs=[{"name": "a", "type": "Integer", "default": 5}, {"name": "b", "type": "Boolean", "default": True},
                       {"name": "c", "type": {"GCSPath": {"data_type": "CSV"}}, "default": 0.5}],
               description="multi\nline: #")
    spec = load_component_text(text, source="x.yaml")
    assert spec.inputs == (InputSpec("a", "Integer", None, "5"), InputSpec("b", "Boolean", None, "true"),
                           InputSpec("c", "GCSPath", None, "0.5"))
    assert spec.outputs == (OutputSpec("y"),)
    assert spec.description == "multi\nline: #"
    assert spec.source == "x.yaml"


def test_v2_refusals():
    base = yaml.safe_load(textwrap.dedent("""\
        components:
          comp-a:
            executorLabel: exec-a
            inputDefinitions: {parameters: {p: {parameterType: STRING}}}
        deploymentSpec:
          executors:
            exec-a: {container: {image: alpine, command: [echo]}}
        pipelineInfo: {name: a}
        root: {dag: {tasks: {a: {componentRef: {name: comp-a}, taskInfo: {name: a}}}}}
        schemaVersion: 2.1.0
        sdkVersion: kfp-2.17.0
        """))

    def refused(mutate, message):
        doc = yaml.safe_load(yaml.safe_dump(base))
        mutate(doc)
        with pytest.raises(StepError, match=message):
            load_component_text(yaml.safe_dump(doc), source="v2.yaml")

    def bad_param(d):
        d["deploymentSpec"]["executors"]["exec-a"]["container"]["command"] = ["{{$.inputs.parameters['q']}}"]

    def metadata(d):
        d["deploymentSpec"]["executors"]["exec-a"]["container"]["args"] = ["{{$.inputs.artifacts['p'].metadata}}"]

    def importer(d):
        d["deploymentSpec"]["executors"]["exec-a"] = {"importer": {"artifactUri": {"constant": "gs://x"}}}

    def missing_ref(d):
        d["root"]["dag"]["tasks"]["a"]["componentRef"]["name"] = "comp-z"

    refused(bad_param, r"v2.yaml: deploymentSpec container command\[0\]: placeholder .* names no input 'q'")
    refused(metadata, r"names no input 'p'|unsupported placeholder")
    refused(importer, r"only container executors can be steps")
    refused(missing_ref, r"componentRef 'comp-z' is not in `components`")
    assert load_component_text(yaml.safe_dump(base), source="v2.yaml").command == ("echo",)


# ---- step_components --------------------------------------------------------------------------


def test_step_components_for_functions_and_component_files(tmp_path, corpus):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "steps.py").write_text('def hello(name: str = "world") -> str:\n    """Greet."""\n'
                                               '    return "hi " + name\n')
    (tmp_path / "components").mkdir()
    shell = corpus / "kfp_v1_components" / "kubeflow__pipelines__components__sample__Shell_script__component.yaml"
    (tmp_path / "components" / "shell.yaml").write_text(shell.read_text())
    manifest = Manifest.model_validate({
        "project": {"name": "p"},
        "image": {"base": "python:3.11-slim", "repository": "localhost:5000/p"},
        "steps": {
            "hello": {"function": "src/steps.py:hello"},
            "shell": {"component": "components/shell.yaml", "description": "Run a script: # really"},
        },
    })
    specs = step_components(manifest, tmp_path)
    assert list(specs) == ["hello", "shell"]
    assert specs["hello"].image is None and specs["hello"].description == "Greet."
    assert specs["hello"].python_function == "src/steps.py:hello"
    assert specs["shell"].description == "Run a script: # really"
    assert specs["shell"].source == "components/shell.yaml"
    assert specs["shell"].image == yaml.safe_load(shell.read_text())["implementation"]["container"]["image"]


def test_step_components_errors_name_the_step(tmp_path):
    (tmp_path / "bad.yaml").write_text(_v1({"args": [{"inputValue": "nope"}]}))
    manifest = Manifest.model_validate({
        "project": {"name": "p"},
        "image": {"base": "python:3.11-slim", "repository": "localhost:5000/p"},
        "steps": {"third": {"component": "bad.yaml"}},
    })
    with pytest.raises(StepError, match=r"^steps.third.component: .*bad.yaml: implementation.container.args\[0\]"):
        step_components(manifest, tmp_path)
    missing = Manifest.model_validate({**manifest.model_dump(exclude_none=True),
                                       "steps": {"gone": {"component": "nope.yaml"}}})
    with pytest.raises(StepError, match=r"steps.gone.component: nope.yaml does not exist"):
        step_components(missing, tmp_path)
