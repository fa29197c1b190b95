"""``run_local`` with a result cache: the real runner (bwrap or chroot) in the busybox image of the real registry.

Each step writes a fresh random token (``/proc/sys/kernel/random/uuid``) into its output, so a task whose output
keeps its token did not execute; a re-run gets a new one. Covers: a second run reports every task cached, a
changed input re-runs that task and its dependents, ``--no-cache`` (``reuse_results=False``), each kind of broken
entry (removed and rebuilt, never used), failed and skipped tasks, loop iterations and the exit handler.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compose_kfp.localrun.report import failure_report
from compose_kfp.localrun.runner import run_local
from compose_kfp.pipeline import cache
from compose_kfp.pipeline.graph import resolve_graph
from compose_kfp.steps.component import InputSpec, OutputSpec
from tests.fixtures.localrun import executor_or_skip, sh
from tests.fixtures.pipeline_graphs import manifest_from_toml
from tests.localrun.test_control import summary_rows

pytestmark = pytest.mark.registry

EXECUTOR = "bwrap" if shutil.which("bwrap") else "chroot"
TOKEN = "$(cat /proc/sys/kernel/random/uuid)"

COMPONENTS = {
    "make": sh("make", f'mkdir -p "$(dirname "$1")"; printf "%s %s" "$0" "{TOKEN}" > "$1"',
               inputs=[InputSpec("N", type="String")], outputs=[OutputSpec("Out", type="String")],
               args=[{"inputValue": "N"}, {"outputPath": "Out"}]),
    "wrap": sh("wrap", f'mkdir -p "$1"; cat "$0" > "$1/in.txt"; echo "{TOKEN}" > "$1/token"',
               inputs=[InputSpec("In")], outputs=[OutputSpec("Dir")],
               args=[{"inputPath": "In"}, {"outputPath": "Dir"}]),
    "fail": sh("fail", 'echo "ValueError: boom" >&2; exit 3', outputs=[OutputSpec("Never", type="String")],
               args=[{"outputPath": "Never"}]),
}
STEPS = "".join(f'[steps.{name}]\ncomponent = "components/{name}.yaml"\n' for name in COMPONENTS)

PIPELINE = STEPS + """
[pipeline]
params = { n = "one", grid = ["a", "b"] }
on_exit = "bye"
[pipeline.tasks.first]
step = "make"
args.N = { param = "n" }
[pipeline.tasks.second]
step = "wrap"
args.In = { task = "first", output = "Out" }
[pipeline.tasks.other]
step = "make"
args.N = "other"
[pipeline.tasks.loop]
step = "make"
for_each = { param = "grid" }
args.N = { item = true }
[pipeline.tasks.never]
step = "make"
args.N = "never"
when = { param = "n", op = "==", value = "nothing" }
[pipeline.tasks.broken]
step = "fail"
[pipeline.tasks.bye]
step = "make"
args.N = "bye"
"""


@pytest.fixture
def runner(busybox_image, run_cache, tmp_path):
    executor_or_skip(EXECUTOR, run_cache)
    results = tmp_path / "results"
    graph = resolve_graph(manifest_from_toml(PIPELINE), COMPONENTS, manifest_path=Path("proj/kfp.toml"),
                          images={name: busybox_image for name in COMPONENTS})
    count = iter(range(100))

    def run(params=None, **kwargs):
        kwargs.setdefault("results_cache", results)
        result = run_local(graph, run_dir=tmp_path / f"run-{next(count)}", params=params, executor=EXECUTOR,
                           cache_dir=run_cache, **kwargs)
        assert {t.name: t.status for t in result.tasks if t.name != "broken"} == {
            "first": "succeeded", "second": "succeeded", "other": "succeeded", "loop": "succeeded",
            "never": "skipped", "bye": "succeeded"}, failure_report(result)
        return result

    run.graph = graph
    run.results = results
    return run


def tokens(result) -> dict[str, str]:
    """Task (and iteration) -> the token its output holds."""
    out = {}
    for t in result.tasks:
        for row in (t.iterations or (t,)):
            if "Out" in row.outputs:
                out[row.name] = row.outputs["Out"].split(" ", 1)[1]
            elif "Dir" in row.outputs:
                out[row.name] = (row.outputs["Dir"] / "token").read_text()
    return out


def cached(result) -> dict[str, bool]:
    return {row.name: row.cached for t in result.tasks for row in (t.iterations or (t,))}


def test_a_second_run_reuses_every_result(runner):
    first = runner()
    assert not any(cached(first).values())
    second = runner()
    assert cached(second) == {"first": True, "second": True, "other": True, "loop[0]": True, "loop[1]": True,
                              "never": False, "broken": False, "bye": False}
    before, after = tokens(first), tokens(second)
    assert {k: after[k] for k in before if k != "bye"} == {k: before[k] for k in before if k != "bye"}
    assert after["bye"] != before["bye"]  # the exit handler always runs
    assert second.task("broken").status == "failed" and second.task("broken").attempts == 1  # never cached
    assert second.task("first").attempts == 0 and second.task("first").duration == 0
    assert "not run: the result of cache key" in second.task("first").log_path.read_text()
    assert (second.task("second").outputs["Dir"] / "in.txt").read_text().startswith("one ")  # restored files
    rows = summary_rows(second)
    assert rows["first"][0] == "cached" and rows["loop[1]"][0] == "cached" and rows["bye"][0] == "succeeded"
    assert rows["never"][0] == "skipped" and rows["broken"][0] == "failed"
    assert json.loads((second.run_dir / "run.json").read_text())["tasks"][0]["cached"] is True
    keys = cache.task_keys(runner.graph)
    entries = {p.name for p in runner.results.iterdir()}
    assert keys["first"].key in entries and keys["broken"].key not in entries and keys["never"].key not in entries
    assert keys["bye"].key not in entries
    assert {cache.iteration_key(keys["loop"].base, item) for item in ("a", "b")} <= entries


def test_a_changed_param_reruns_the_task_and_its_dependents_and_new_items_only(runner):
    first = runner()
    second = runner({"n": "two", "grid": '["a", "b", "c"]'})
    assert cached(second) == {"first": False, "second": False, "other": True, "loop[0]": True, "loop[1]": True,
                              "loop[2]": False, "never": False, "broken": False, "bye": False}
    assert tokens(second)["other"] == tokens(first)["other"]
    assert tokens(second)["second"] != tokens(first)["second"]


def test_no_cache_runs_everything_and_refreshes_the_entries(runner):
    first = runner()
    fresh = runner(reuse_results=False)
    assert not any(cached(fresh).values())
    assert all(tokens(fresh)[k] != tokens(first)[k] for k in tokens(first))
    assert tokens(runner())["first"] == tokens(fresh)["first"]  # what --no-cache ran was stored
    off = runner(results_cache=None)
    assert not any(cached(off).values())


def _corrupt_missing_file(entry: Path) -> None:
    (entry / "outputs" / "Out" / "data").unlink()


def _corrupt_digest(entry: Path) -> None:
    (entry / "outputs" / "Out" / "data").write_text("one tampered")


def _corrupt_json(entry: Path) -> None:
    (entry / "manifest.json").write_text('{"version": 1, "key": ')


def _corrupt_partial(entry: Path) -> None:
    (entry / "manifest.json").unlink()  # what a run killed before the rename leaves under a final name


@pytest.mark.parametrize("corrupt", [_corrupt_missing_file, _corrupt_digest, _corrupt_json, _corrupt_partial],
                         ids=["missing-file", "sha-mismatch", "malformed-json", "partial-dir"])
def test_a_broken_entry_is_removed_and_rebuilt_never_used(runner, corrupt):
    first = runner()
    key = cache.task_keys(runner.graph)["first"].key
    entry = runner.results / key
    corrupt(entry)
    leftover = runner.results / f".tmp-{key}-deadbeef"  # a temporary folder of a killed run
    (leftover / "outputs").mkdir(parents=True)
    second = runner()
    assert cached(second)["first"] is False and second.task("first").attempts == 1
    assert tokens(second)["first"] != tokens(first)["first"]
    assert not leftover.exists()
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["key"] == key and manifest["outputs"]["Out"]["files"][""].startswith("sha256:")
    assert (entry / "outputs" / "Out" / "data").read_text().endswith(tokens(second)["first"])
    third = runner()
    assert cached(third)["first"] is True and tokens(third)["first"] == tokens(second)["first"]
