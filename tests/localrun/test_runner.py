"""``run_local``: a real image (static busybox) in the real registry, run with podman, bwrap and chroot.

The image is built with our own OCI code from Debian's ``busybox-static`` binary, pushed to
the ``registry`` fixture, and referenced by digest. The pipeline uses third-party-style
components (``sh -c`` scripts) wired through ``kfp.toml`` and :func:`resolve_graph`, the same
path the Argo renderer takes. It covers value passing, file passing (upstream outputs and a
param consumed as a file), fan-out/fan-in running in parallel, the image config (``Env``,
``WorkingDir``), Argo variables, a failing task that skips its dependents while the others run,
a missing output, and a read-only input.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from compose_kfp.localrun import runner as localrun
from compose_kfp.steps.component import ComponentSpec, InputSpec, OutputSpec
from compose_kfp.errors import ConfigError, RunError
from compose_kfp.pipeline.graph import resolve_graph
from compose_kfp.localrun.report import failure_report, format_summary, raise_for_failure
from compose_kfp.localrun.results import TaskEvent
from compose_kfp.localrun.rootfs import RegistryOptions
from compose_kfp.localrun.runner import run_local
from tests.fixtures.localrun import executor_or_skip, sh
from tests.fixtures.pipeline_graphs import manifest_from_toml

pytestmark = pytest.mark.registry


COMPONENTS = {
    "produce": sh(
        "produce",
        'mkdir -p "$(dirname "$1")" "$(dirname "$2")"; printf "%s-%s\\n" "$0" "$GREETING" > "$1"; '
        'seq 1 "$3" > "$2"; echo "wrote $1 and $2 in $(pwd) as {{workflow.name}}"',
        inputs=[InputSpec("Text", type="String"), InputSpec("Lines", type="Integer")],
        outputs=[OutputSpec("Message", type="String"), OutputSpec("Data")],
        args=[{"inputValue": "Text"}, {"outputPath": "Message"}, {"outputPath": "Data"}, {"inputValue": "Lines"}]),
    "count": sh(
        "count",
        'sleep 1; mkdir -p "$(dirname "$2")"; n=$(wc -l < "$0"); printf "%s:%s" "$1" "$n" > "$2"; '
        'if touch "$0" 2>/dev/null; then echo "input was writable"; exit 9; fi',
        inputs=[InputSpec("Data"), InputSpec("Label", type="String")],
        outputs=[OutputSpec("Count", type="String")],
        args=[{"inputPath": "Data"}, {"inputValue": "Label"}, {"outputPath": "Count"}]),
    "join": sh(
        "join",
        'mkdir -p "$(dirname "$3")" "$(dirname "$4")"; echo "$0|$1|$(cat "$2")" > "$3"; '
        'mkdir -p "$4"; cat "$2" > "$4/notes.txt"; cat /usr/share/greeting >> "$4/notes.txt"',
        inputs=[InputSpec("A", type="String"), InputSpec("B", type="String"), InputSpec("Notes", type="String")],
        outputs=[OutputSpec("Joined", type="String"), OutputSpec("Report dir")],
        args=[{"inputValue": "A"}, {"inputValue": "B"}, {"inputPath": "Notes"}, {"outputPath": "Joined"},
              {"outputPath": "Report dir"}]),
    "fail": sh(
        "fail",
        'echo "Traceback (most recent call last):" >&2; echo "ValueError: boom from $0" >&2; exit 3',
        inputs=[InputSpec("Text", type="String")], outputs=[OutputSpec("Never", type="String")],
        args=[{"inputValue": "Text"}, {"outputPath": "Never"}]),
    "lazy": sh(
        "lazy", 'echo "forgot to write $0"',
        outputs=[OutputSpec("Result", type="String")], args=[{"outputPath": "Result"}]),
}

STEPS = "".join(f'[steps.{name}]\ncomponent = "components/{name}.yaml"\n' for name in COMPONENTS)

PIPELINE = STEPS + """
[pipeline]
params = { text = "hi", notes = "a note from a param" }
[pipeline.tasks.produce]
step = "produce"
args = { Text = { param = "text" }, Lines = 4 }
[pipeline.tasks.count_a]
step = "count"
args = { Data = { task = "produce", output = "Data" }, Label = "a" }
[pipeline.tasks.count_b]
step = "count"
args = { Data = { task = "produce", output = "Data" }, Label = { task = "produce", output = "Message" } }
[pipeline.tasks.join]
step = "join"
args = { A = { task = "count_a", output = "Count" }, B = { task = "count_b", output = "Count" }, Notes = { param = "notes" } }
[pipeline.tasks.fail]
step = "fail"
args = { Text = { param = "text" } }
[pipeline.tasks.after_fail]
step = "count"
args = { Data = { task = "produce", output = "Data" }, Label = { task = "fail", output = "Never" } }
[pipeline.tasks.after_after]
step = "lazy"
after = ["after_fail"]
[pipeline.tasks.lazy]
step = "lazy"
after = ["produce"]
"""


def make_graph(image: str, body: str = PIPELINE):
    manifest = manifest_from_toml(body)
    return resolve_graph(manifest, COMPONENTS, manifest_path=Path("proj/kfp.toml"),
                         images={name: image for name in COMPONENTS})


@pytest.mark.parametrize("executor", [pytest.param("podman", marks=pytest.mark.podman), "bwrap", "chroot"])
def test_pipeline_runs_in_its_image(busybox_image, run_cache, tmp_path, executor):
    executor_or_skip(executor, run_cache)
    events: list[tuple[float, TaskEvent]] = []
    lock = threading.Lock()

    def on_event(event: TaskEvent) -> None:
        with lock:
            events.append((time.monotonic(), event))

    result = run_local(make_graph(busybox_image), run_dir=tmp_path / "run", params={"text": "hello"},
                       executor=executor, max_parallel=2, cache_dir=run_cache, on_event=on_event)
    status = {t.name: t.status for t in result.tasks}
    assert status == {"produce": "succeeded", "count_a": "succeeded", "count_b": "succeeded", "join": "succeeded",
                      "fail": "failed", "after_fail": "skipped", "after_after": "skipped", "lazy": "failed"}, \
        failure_report(result)
    assert result.executor == executor and not result.ok

    # Values: param override, image Env, one trailing newline dropped (Argo valueFrom.path).
    produce = result.task("produce")
    assert produce.outputs["Message"] == "hello-from-image"
    assert isinstance(produce.outputs["Data"], Path) and produce.outputs["Data"].read_text() == "1\n2\n3\n4\n"
    log_text = produce.log_path.read_text()
    assert "in /work as " in log_text and "{{workflow.name}}" not in log_text  # WorkingDir, Argo variable
    # Files mounted at the input path (read-only), values from upstream outputs.
    assert result.task("count_a").outputs["Count"] == "a:4"
    assert result.task("count_b").outputs["Count"] == "hello-from-image:4"
    join = result.task("join")
    assert join.outputs["Joined"] == "a:4|hello-from-image:4|a note from a param"
    notes = join.outputs["Report dir"] / "notes.txt"
    assert notes.read_text() == "a note from a paramhello from the image\n"  # raw artifact: text as written
    assert join.argv[:2] == ("sh", "-ec") and "/tmp/inputs/Notes/data" in join.argv
    # Fan-out ran in parallel: the second count started before the first finished.
    starts = {e.task: t for t, e in events if e.kind == "started"}
    ends = {e.task: t for t, e in events if e.kind == "finished"}
    first, second = sorted(["count_a", "count_b"], key=starts.__getitem__)
    assert starts[second] < ends[first]
    # The failure: exit code, traceback in the log, dependents skipped, others ran.
    fail = result.task("fail")
    assert fail.exit_code == 3 and fail.error == "exit code 3"
    assert "ValueError: boom from hello" in fail.log_path.read_text()
    assert result.task("after_fail").error == "upstream task 'fail' failed"
    assert result.task("after_after").error == "upstream task 'after_fail' skipped"
    assert result.task("after_fail").log_path is None
    lazy = result.task("lazy")
    assert lazy.exit_code == 0 and "'Result' (/tmp/outputs/Result/data) was not written" in lazy.error

    report = failure_report(result)
    assert "task 'fail' failed: exit code 3" in report and "ValueError: boom from hello" in report
    with pytest.raises(RunError, match="task 'fail', 'lazy' failed; skipped: 'after_fail', 'after_after'") as info:
        raise_for_failure(result)
    assert info.value.exit_code == 7
    assert (tmp_path / "run" / "run.json").is_file() and (tmp_path / "run" / "join" / "task.json").is_file()
    assert not (tmp_path / "run" / "join" / ".sandbox").exists()

    from rich.console import Console

    console = Console(width=140, record=True)
    console.print(format_summary(result))
    text = console.export_text()
    assert "Message = hello-from-image" in text and "upstream task 'fail' failed" in text
    assert "Data = produce/outputs/Data/data" in text


def test_auto_prefers_podman_and_reuses_the_unpacked_tree(busybox_image, run_cache, tmp_path):
    body = STEPS + """
[pipeline.tasks.produce]
step = "produce"
args = { Text = "x", Lines = 2 }
"""
    chosen = executor_or_skip("auto", run_cache)
    assert chosen == "podman" if localrun.podman_usable(run_cache) else chosen in ("bwrap", "chroot")
    fallback = "bwrap" if shutil.which("bwrap") else "chroot"
    executor_or_skip(fallback, run_cache)
    inodes = []
    for attempt in range(2):
        result = run_local(make_graph(busybox_image, body), run_dir=tmp_path / f"run{attempt}", executor=fallback,
                           cache_dir=run_cache)
        assert result.ok, failure_report(result)
        assert result.task("produce").outputs["Message"] == "x-from-image"
        trees = list((run_cache / "rootfs").glob("*/rootfs"))
        assert len(trees) == 1 and (trees[0] / "bin" / "busybox").is_file()
        inodes.append(os.stat(trees[0]).st_ino)
    assert inodes[0] == inodes[1]  # unpacked once, reused
    assert not (trees[0] / "work").exists()  # the task's writes went to the overlay, not the cache
    assert not list((run_cache / "blobs").rglob("sha256/*"))  # blobs dropped once unpacked


def test_params_and_options_are_checked(busybox_image, run_cache, tmp_path):
    graph = make_graph(busybox_image)
    with pytest.raises(ConfigError, match="unknown param 'txt'.*known: text, notes"):
        run_local(graph, run_dir=tmp_path / "r", params={"txt": "x"}, cache_dir=run_cache)
    with pytest.raises(ConfigError, match="':' or ','"):
        run_local(graph, run_dir=tmp_path / "a:b", cache_dir=run_cache)
    with pytest.raises(ConfigError, match="max_parallel"):
        run_local(graph, run_dir=tmp_path / "r", max_parallel=0, cache_dir=run_cache)


def test_an_image_that_cannot_be_fetched_fails_its_task_only(busybox_image, run_cache, tmp_path, registry):
    fallback = "bwrap" if shutil.which("bwrap") else "chroot"
    executor_or_skip(fallback, run_cache)
    body = STEPS + """
[pipeline.tasks.ok]
step = "lazy"
[pipeline.tasks.missing]
step = "produce"
args = { Text = "x", Lines = 1 }
"""
    manifest = manifest_from_toml(body)
    missing = f"{registry.host}/test/nothing-here@sha256:" + "0" * 64
    images = {name: busybox_image for name in COMPONENTS} | {"produce": missing}
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("kfp.toml"), images=images)
    result = run_local(graph, run_dir=tmp_path / "run", executor=fallback, cache_dir=run_cache,
                       registry=RegistryOptions())
    assert result.task("missing").status == "failed"
    assert "cannot get image" in result.task("missing").error
    assert result.task("ok").status == "failed" and "was not written" in result.task("ok").error


def component_yaml(spec: ComponentSpec, image: str) -> str:
    """A KFP v1 component file for ``spec`` with ``image`` (what a third-party component file looks like)."""
    import yaml

    doc = spec.to_dict()
    doc["implementation"]["container"]["image"] = image
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def cli_project(tmp_path, busybox_image, registry) -> Path:
    """A project folder whose steps are third-party component files running in the busybox image."""
    (tmp_path / "components").mkdir()
    for name, spec in COMPONENTS.items():
        (tmp_path / "components" / f"{name}.yaml").write_text(component_yaml(spec, busybox_image))
    head = f'[project]\nname = "cli-demo"\n\n[image]\nbase = "scratch"\nrepository = "{registry.host}/test/cli-demo"\n\n'
    (tmp_path / "kfp.toml").write_text(head + PIPELINE)
    return tmp_path


def cli_run(*args: str) -> tuple[int, str, str]:
    """``compose-kfp ARGS`` in-process (with the run command registered); ``(exit code, stdout, stderr)``."""
    import contextlib
    import io
    import logging

    from compose_kfp import cli  # noqa: F401 - registers `run`

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as info:
            cli.main(list(args))
    finally:
        logger = logging.getLogger("compose_kfp")
        for handler in list(logger.handlers):
            if getattr(handler, "_compose_kfp_cli", False):
                logger.removeHandler(handler)
        logger.propagate = True
    return info.value.code, out.getvalue(), err.getvalue()


def test_run_images_are_the_digests_kfp_lock_pins(tmp_path):
    """run --local runs a third-party component by the digest kfp.lock pins (as rendered), not by its file's tag."""
    import json

    from compose_kfp.localrun.project import run_images
    from compose_kfp.errors import StaleError
    from compose_kfp.manifest.project import load_project

    (tmp_path / "components").mkdir()
    tagged = "registry.example:5000/acme/tools:1.0"
    for name, spec in COMPONENTS.items():
        (tmp_path / "components" / f"{name}.yaml").write_text(component_yaml(spec, tagged))
    head = '[project]\nname = "pins"\n\n[image]\nbase = "scratch"\nrepository = "registry.example:5000/acme/pins"\n\n'
    (tmp_path / "kfp.toml").write_text(head + PIPELINE)
    project = load_project(tmp_path, env={})
    assert run_images(project) == {}  # nothing applied yet: the files' references are used as they are
    pinned = {name: f"registry.example:5000/acme/tools@sha256:{i:064x}" for i, name in enumerate(COMPONENTS)}
    (tmp_path / "kfp.lock").write_text(json.dumps({"version": 1, "images": {}, "components": pinned}))
    assert run_images(project) == pinned
    graph = resolve_graph(project.manifest, project.components, manifest_path=project.path,
                          images=run_images(project))
    assert {t.name: t.image for t in graph.tasks}["count_a"] == pinned["count"]
    (tmp_path / "kfp.lock").write_text(json.dumps({"version": 1, "images": {},
                                                   "components": {"produce": pinned["produce"]}}))
    with pytest.raises(StaleError, match="does not pin the image of step"):
        run_images(project)
    # the component file now names another repository than the pin: the pin is stale, not silently used
    (tmp_path / "kfp.lock").write_text(json.dumps({"version": 1, "images": {}, "components": pinned}))
    (tmp_path / "components" / "count.yaml").write_text(
        component_yaml(COMPONENTS["count"], "registry.example:5000/acme/other-tools:1.0"))
    with pytest.raises(StaleError, match="component file now names registry.example:5000/acme/other-tools:1.0"):
        run_images(load_project(tmp_path, env={}))


def test_cli_run_local_reports_the_failure_and_exits_7(cli_project, run_cache, monkeypatch, tmp_path):
    fallback = "bwrap" if shutil.which("bwrap") else "chroot"
    executor_or_skip(fallback, run_cache)
    monkeypatch.setenv("XDG_CACHE_HOME", str(run_cache.parent / "cli-cache"))
    code, out, err = cli_run("-C", str(cli_project), "run", "--local", "--executor", fallback,
                             "--param", "text=yo", "--run-dir", str(tmp_path / "run"))
    assert code == 7, err
    assert "Message = yo-from-image" in out and "Joined = a:4|yo-from-image:4|a note" in out
    assert "▶ produce started" in err and "■ after_fail skipped: upstream task 'fail' failed" in err
    assert "ValueError: boom from yo" in err  # the failing task's traceback
    assert "error: pipeline 'cli-demo': task 'fail', 'lazy' failed" in err


def test_cli_run_local_json_and_bad_params(cli_project, run_cache, monkeypatch, tmp_path):
    fallback = "bwrap" if shutil.which("bwrap") else "chroot"
    executor_or_skip(fallback, run_cache)
    monkeypatch.setenv("XDG_CACHE_HOME", str(run_cache.parent / "cli-cache"))
    toml = cli_project / "kfp.toml"
    text = toml.read_text()
    toml.write_text(text[: text.index("[pipeline.tasks.fail]")])  # only the tasks that succeed
    code, out, err = cli_run("-C", str(cli_project), "run", "--local", "--json", "--executor", fallback)
    assert code == 0, err
    import json

    doc = json.loads(out)
    assert doc["ok"] and doc["params"] == {"text": "hi", "notes": "a note from a param"}
    assert {t["name"]: t["status"] for t in doc["tasks"]} == dict.fromkeys(["produce", "count_a", "count_b", "join"],
                                                                            "succeeded")
    assert Path(doc["run_dir"]).parent == cli_project / "build" / "runs"
    code, out, err = cli_run("-C", str(cli_project), "run", "--local", "--param", "oops")
    assert code == 1 and "--param 'oops': expected NAME=VALUE" in err
    code, out, err = cli_run("-C", str(cli_project), "run", "--local", "--param", "nope=1")
    assert code == 1 and "unknown param 'nope'" in err


# --------------------------------------------------------------------------- params and stale images (no registry)

PARAM_TOML = '''
[steps.s]
component = "c.yaml"
[pipeline]
params = { n = 3, rate = 0.5, flag = true, names = ["a"], opts = { k = 1 }, label = "x" }
[pipeline.tasks.t]
step = "s"
args.a = { param = "n" }
'''


@pytest.mark.parametrize("name,good,bad,kind", [
    ("n", ["10", "-2", 7], ["abc", "1.5", ""], "an Integer"),
    ("rate", ["1", "2.5e-3", 1], ["fast"], "a Float"),
    ("flag", ["true", "False", True], ["yes", "1"], "a Boolean"),
    ("names", ['["b", "c"]', ["b"]], ['{"k": 1}', "b"], "a JsonArray"),
    ("opts", ['{"k": 2}', {"k": 2}], ["[1]", "k=2"], "a JsonObject"),
    ("label", ["anything", "1"], [], "a String"),
])
def test_param_values_must_fit_the_default_type(tmp_path, name, good, bad, kind):
    (tmp_path / "c.yaml").write_text("name: c\ninputs: [{name: a}]\nimplementation:\n  container:\n"
                                     "    image: busybox\n    command: [echo, {inputValue: a}]\n")
    from compose_kfp.manifest.project import load_project

    (tmp_path / "kfp.toml").write_text('[project]\nname = "p"\n[image]\nbase = "scratch"\n'
                                       'repository = "oci:build/image"\n' + PARAM_TOML)
    graph = load_project(tmp_path, env={}).graph
    for value in good:
        assert localrun.resolve_params(graph, {name: value})[name] == localrun.literal_text(value)
    for value in bad:
        with pytest.raises(ConfigError, match=re.escape(f"pipeline.params.{name}: the run was given {value!r}, "
                                                        f"but the param is {kind} ")):
            localrun.resolve_params(graph, {name: value})


def test_cli_run_checks_param_types_and_warns_about_a_stale_image(tmp_path):
    from compose_kfp.localrun.project import stale_layers
    from compose_kfp.manifest.project import load_project
    from tests.fixtures.cli import VALID, run

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "steps.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    (tmp_path / "kfp.toml").write_text(VALID.replace('base = "python:3.11-slim"', 'base = "scratch"'))
    assert stale_layers(load_project(tmp_path, env={})) == []  # no kfp.lock yet: nothing to compare
    code, _, err = run("-C", str(tmp_path), "run", "--local", "-p", "x=abc")
    assert code == 1 and "pipeline.params.x: the run was given 'abc', but the param is an Integer" in err
    assert run("-C", str(tmp_path), "-q", "apply", "--yes")[0] == 0
    assert stale_layers(load_project(tmp_path, env={})) == []
    time.sleep(0.01)
    (tmp_path / "src" / "steps.py").write_text("def double(x: int) -> int:\n    return 3 * x\n")
    [line] = stale_layers(load_project(tmp_path, env={}))
    assert "layer 'src' of image 'main' (image.layers.0)" in line and "compose-kfp apply" in line
    assert run("-C", str(tmp_path), "-q", "apply", "--yes")[0] == 0
    assert stale_layers(load_project(tmp_path, env={})) == []
