"""Third-party KFP v1 component files the KFP v2 SDK refuses, end to end through the CLI: ``apply`` renders them for
Argo (schema-valid), ``run --local`` starts the command lines the v1 spec gives (podman and the sandbox executor),
``fileOutputs`` arrive on both sides, and ``render --target kfp`` refuses what the SDK cannot express, by name.

The image is the static busybox of :mod:`tests.localrun.test_runner`, in the fixture registry, pinned by digest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.fixtures.pipeline_graphs import argo_workflow_check  # noqa: F401 - fixture
from tests.fixtures.localrun import executor_or_skip
from tests.localrun.test_runner import cli_run
from tests.steps.test_v1spec import BOOLEAN_NAMES, BUSYBOX, IF_IN_CONCAT, SINGLE_BRANCH

pytestmark = pytest.mark.registry

#: Issue 19, item 1: an output the command writes at a fixed path of its own.
FILE_OUTPUT = f"""\
name: fo
outputs: [{{name: result, type: String}}]
implementation:
  container:
    image: {BUSYBOX}
    command: [sh, -c, 'echo hello > /output.txt']
    fileOutputs: {{result: /output.txt}}
"""
SHOW = f"""\
name: show
inputs: [{{name: text, type: String}}, {{name: file}}]
implementation:
  container:
    image: {BUSYBOX}
    command: [sh, -c, 'echo "value=$0 file=$(cat "$1")"', {{inputValue: text}}, {{inputPath: file}}]
"""
FILES = {"flags": SINGLE_BRANCH, "concat": IF_IN_CONCAT, "switches": BOOLEAN_NAMES, "fo": FILE_OUTPUT, "show": SHOW}

TASKS = """
[pipeline.tasks.flags_opt]
step = "flags"
args = { opt = "A", other = "B" }
[pipeline.tasks.flags_other]
step = "flags"
args = { other = "B" }
[pipeline.tasks.flags_none]
step = "flags"
[pipeline.tasks.concat_opt]
step = "concat"
args = { opt = "1" }
[pipeline.tasks.concat_none]
step = "concat"
[pipeline.tasks.switches]
step = "switches"
args = { off = "0", yes = "1", on = "2" }
[pipeline.tasks.fo]
step = "fo"
[pipeline.tasks.show]
step = "show"
args = { text = { task = "fo", output = "result" }, file = { task = "fo", output = "result" } }
"""

EXPECTED_ARGV = {
    "flags_opt": ["echo", "A"], "flags_other": ["echo", "B"], "flags_none": ["echo"],
    "concat_opt": ["echo", "--flag=x"], "concat_none": ["echo", "--flag=y"],
    "switches": ["echo", "0", "1", "2", "no"],
    "fo": ["sh", "-c", "echo hello > /output.txt"],
}


def k8s(task: str) -> str:
    return task.replace("_", "-")


def write_project(folder: Path, image: str, registry_host: str, steps=FILES, tasks: str = TASKS) -> Path:
    (folder / "components").mkdir(parents=True)
    body = f'[project]\nname = "v1-files"\n\n[image]\nbase = "scratch"\nrepository = "{registry_host}/test/v1-files"\n\n'
    for name in steps:
        (folder / "components" / f"{name}.yaml").write_text(FILES[name].replace(BUSYBOX, image))
        body += f'[steps.{name}]\ncomponent = "components/{name}.yaml"\n\n'
    (folder / "kfp.toml").write_text(body + "[pipeline]\n" + tasks)
    return folder


@pytest.fixture
def project(tmp_path, busybox_image, registry) -> Path:
    return write_project(tmp_path / "p", busybox_image, registry.host)


def test_apply_renders_the_v1_files_for_argo(project, argo_workflow_check, busybox_image):
    code, out, err = cli_run("-C", str(project), "apply", "-y")
    assert code == 0, err
    doc = argo_workflow_check((project / "build" / "workflow.yaml").read_text())
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    dag = {t["name"]: t for t in next(t for t in doc["spec"]["templates"] if "dag" in t)["dag"]["tasks"]}

    def argv(task: str) -> list[str]:
        container = templates[dag[k8s(task)]["template"]]["container"]
        params = {p["name"]: p["value"] for p in dag[k8s(task)].get("arguments", {}).get("parameters", [])}
        line = [*container.get("command", []), *container.get("args", [])]
        return [params.get(a[len("{{inputs.parameters."):-2], a) if a.startswith("{{inputs.parameters.") else a
                for a in line]

    assert {t: argv(t) for t in EXPECTED_ARGV} == EXPECTED_ARGV
    assert templates[dag["switches"]["template"]]["container"]["command"] == [
        "echo", "{{inputs.parameters.off}}", "{{inputs.parameters.yes}}", "{{inputs.parameters.on}}",
        "{{inputs.parameters.no}}"]
    assert [p["name"] for p in templates[dag["switches"]["template"]]["inputs"]["parameters"]] == ["off", "yes", "on", "no"]
    # fileOutputs: the Argo output is the file the command writes, as KFP v1 compiled it
    fo = templates[dag["fo"]["template"]]
    assert fo["outputs"] == {"parameters": [{"name": "result", "valueFrom": {"path": "/output.txt"}}],
                             "artifacts": [{"name": "result", "path": "/output.txt"}]}
    assert all(t["container"]["image"] == busybox_image for t in templates.values() if "container" in t)
    rendered = yaml.safe_load((project / "build" / "components" / "switches.yaml").read_text())
    assert [i["name"] for i in rendered["inputs"]] == ["off", "yes", "on", "no"]


@pytest.mark.parametrize("executor", [pytest.param("podman", marks=pytest.mark.podman), "bwrap"])
def test_run_local_starts_the_command_lines_of_the_v1_spec(project, run_cache, tmp_path, executor, monkeypatch):
    executor_or_skip(executor, run_cache)
    monkeypatch.setenv("XDG_CACHE_HOME", str(run_cache.parent / "cli-cache"))
    code, out, err = cli_run("-C", str(project), "run", "--local", "--executor", executor,
                             "--run-dir", str(tmp_path / "run"))
    assert code == 0, err
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    tasks = {t["name"]: t for t in run["tasks"]}
    assert {name: tasks[name]["argv"] for name in EXPECTED_ARGV} == EXPECTED_ARGV
    for name, argv in EXPECTED_ARGV.items():
        if argv[0] == "echo":
            assert (tmp_path / "run" / k8s(name) / "log.txt").read_text() == " ".join(argv[1:]) + "\n"
    # the fileOutputs file was collected from the container and passed on, by value and as a file
    assert tasks["fo"]["outputs"] == {"result": "hello"}
    assert (tmp_path / "run" / "show" / "log.txt").read_text() == "value=hello file=hello\n"


@pytest.mark.parametrize(("script", "path"), [
    ("echo forgot", "/output.txt"),
    # the container links /tmp/x to /etc: its file would be the image's /etc/hostname, never the host's; the sandbox
    # executors collect only what the container wrote inside its own tree, so the output is reported missing
    ("ln -s /etc /tmp/x", "/tmp/x/hostname"),
])
def test_run_local_says_which_fixed_path_was_not_written(tmp_path, busybox_image, registry, run_cache, monkeypatch,
                                                         script, path):
    fallback = "bwrap" if shutil.which("bwrap") else "chroot"
    executor_or_skip(fallback, run_cache)
    monkeypatch.setenv("XDG_CACHE_HOME", str(run_cache.parent / "cli-cache"))
    folder = write_project(tmp_path / "p", busybox_image, registry.host, steps={"fo": None},
                           tasks='[pipeline.tasks.fo]\nstep = "fo"\n')
    text = (folder / "components" / "fo.yaml").read_text()
    (folder / "components" / "fo.yaml").write_text(
        text.replace("echo hello > /output.txt", script).replace("/output.txt", path))
    code, out, err = cli_run("-C", str(folder), "run", "--local", "--executor", fallback, "--run-dir",
                             str(tmp_path / "r"))
    assert code == 7
    assert f"output 'result' ({path}) was not written" in err
    assert not (tmp_path / "r" / "fo" / "outputs" / "result" / "data").exists()


@pytest.mark.parametrize(("step", "obstacle"), [
    ("flags", r"command\[1\]\.if\.then: the branch is a single placeholder \(\{\"inputValue\": \"opt\"\}\), which KFP "
              r"v2 takes only as a string or a list; command\[1\]\.if\.else: "),
    ("concat", r"command\[1\]\.concat\[1\]\.if\.then: a list branch of an `if` inside `concat`, which KFP v2 does not "
               r"allow"),
    ("fo", r"fileOutputs\.result: output 'result' is written at the fixed path /output.txt, which KFP v2 cannot "
           r"collect \(its SDK drops fileOutputs\)"),
])
def test_target_kfp_refuses_what_its_sdk_cannot_express(tmp_path, busybox_image, registry, step, obstacle):
    import re

    tasks = TASKS.split("[pipeline.tasks.")
    mine = "".join("[pipeline.tasks." + t for t in tasks[1:] if f'step = "{step}"' in t)
    folder = write_project(tmp_path / "p", busybox_image, registry.host, steps={step: None}, tasks=mine)
    code, out, err = cli_run("-C", str(folder), "apply", "-y")
    assert code == 0, err  # the Argo target renders it
    code, out, err = cli_run("-C", str(folder), "render", "--target", "kfp")
    assert code == 6, err
    assert re.search(rf"steps\.{step}: the KFP v2 SDK cannot express this component \(components/{step}\.yaml\), "
                     rf"which is valid KFP v1: {obstacle}", err), err
    assert 'The Argo target renders it: keep "argo" in render.targets and remove "kfp"' in err
    assert not (folder / "build" / "pipeline.yaml").exists()


def test_target_kfp_renders_the_boolean_names(tmp_path, busybox_image, registry):
    folder = write_project(tmp_path / "p", busybox_image, registry.host, steps={"switches": None},
                           tasks='[pipeline.tasks.switches]\nstep = "switches"\nargs = { off = "0", yes = "1" }\n')
    code, out, err = cli_run("-C", str(folder), "apply", "-y")
    assert code == 0, err
    code, out, err = cli_run("-C", str(folder), "render", "--target", "kfp")
    assert code == 0, err
    doc = yaml.safe_load((folder / "build" / "pipeline.yaml").read_text())
    params = doc["components"]["comp-switches"]["inputDefinitions"]["parameters"]
    assert sorted(params) == ["no", "off", "on", "yes"]
