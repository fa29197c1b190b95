"""``run --local`` with control flow, in a real image (static busybox in the real registry, run with bwrap or chroot).

Conditions (numbers vs strings, ``all``/``any``/``not``, skip propagation and ``when_upstream_skipped``),
``for_each`` loops (literal items, a list param, object items, an upstream list, parallelism, an empty list
collected as ``[]``), the exit handler after a failed task reading the status, and Secret/ConfigMap
references taken from the environment or a ``--secrets-dir`` folder, never written to ``task.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from compose_kfp.localrun.report import format_summary
from compose_kfp.localrun.runner import run_local
from compose_kfp.pipeline.graph import resolve_graph
from compose_kfp.steps.component import InputSpec, OutputSpec
from tests.fixtures.localrun import executor_or_skip, sh
from tests.fixtures.pipeline_graphs import manifest_from_toml

pytestmark = pytest.mark.registry

EXECUTOR = "bwrap" if shutil.which("bwrap") else "chroot"

COMPONENTS = {
    "number": sh("number", 'mkdir -p "$(dirname "$1")"; printf "%s" "$0" > "$1"',
                 inputs=[InputSpec("N", type="Float")], outputs=[OutputSpec("Value", type="Float")],
                 args=[{"inputValue": "N"}, {"outputPath": "Value"}]),
    "text": sh("text", 'mkdir -p "$(dirname "$1")"; printf "%s" "$0" > "$1"',
               inputs=[InputSpec("S", type="String")], outputs=[OutputSpec("Value", type="String")],
               args=[{"inputValue": "S"}, {"outputPath": "Value"}]),
    "square": sh("square", 'sleep 1; mkdir -p "$(dirname "$1")"; expr "$0" \\* "$0" > "$1"',
                 inputs=[InputSpec("X", type="Integer")], outputs=[OutputSpec("Y", type="Integer")],
                 args=[{"inputValue": "X"}, {"outputPath": "Y"}]),
    "pair": sh("pair", 'mkdir -p "$(dirname "$2")"; printf "%s=%s" "$0" "$1" > "$2"',
               inputs=[InputSpec("K", type="String"), InputSpec("V", type="Integer")],
               outputs=[OutputSpec("Out", type="String")],
               args=[{"inputValue": "K"}, {"inputValue": "V"}, {"outputPath": "Out"}]),
    "gather": sh("gather", 'mkdir -p "$(dirname "$1")"; printf "%s" "$0" > "$1"',
                 inputs=[InputSpec("Items", type="JsonArray")], outputs=[OutputSpec("All", type="String")],
                 args=[{"inputValue": "Items"}, {"outputPath": "All"}]),
    "list": sh("list", 'mkdir -p "$(dirname "$0")"; printf "[3, 4]" > "$0"',
               outputs=[OutputSpec("Items", type="JsonArray")], args=[{"outputPath": "Items"}]),
    "fail": sh("fail", 'echo "ValueError: boom" >&2; exit 3', outputs=[OutputSpec("Never", type="String")],
               args=[{"outputPath": "Never"}]),
    "secrets": sh("secrets", 'mkdir -p "$(dirname "$0")"; printf "%s|%s|%s" "${#API_TOKEN}" "$REGION" '
                             '"$(cat /etc/creds/password)" > "$0"',
                  outputs=[OutputSpec("Seen", type="String")], args=[{"outputPath": "Seen"}]),
}
STEPS = "".join(f'[steps.{name}]\ncomponent = "components/{name}.yaml"\n' for name in COMPONENTS)


def summary_rows(result) -> dict[str, list[str]]:
    """The run summary table as printed (no colour, wide): task -> [status, duration, outputs / reason]."""
    from rich.console import Console

    console = Console(width=240, record=True, color_system=None)
    console.print(format_summary(result))
    rows = {}
    for line in console.export_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 4 and cells[0] != "Task":
            rows[cells[0]] = cells[1:]
    return rows


def run(image: str, body: str, tmp_path: Path, run_cache: Path, **kwargs):
    manifest = manifest_from_toml(STEPS + body)
    graph = resolve_graph(manifest, COMPONENTS, manifest_path=Path("proj/kfp.toml"),
                          images={name: image for name in COMPONENTS})
    executor = executor_or_skip(EXECUTOR, run_cache)
    result = run_local(graph, run_dir=tmp_path / "run", executor=executor, cache_dir=run_cache, **kwargs)
    return {t.name: t for t in result.tasks}, result


CONDITIONS = """
[pipeline]
params = { threshold = 9, mode = "10", n = 10 }
[pipeline.tasks.score]
step = "number"
args.N = { param = "n" }
[pipeline.tasks.mode]
step = "text"
args.S = { param = "mode" }
[pipeline.tasks.above]
step = "text"
args.S = "deploy"
when = { task = "score", output = "Value", op = ">", value = { param = "threshold" } }
[pipeline.tasks.below]
step = "text"
args.S = "keep"
when = { task = "score", output = "Value", op = "<=", value = { param = "threshold" } }
[pipeline.tasks.after_below]
step = "text"
args.S = { task = "below", output = "Value" }
[pipeline.tasks.anyway]
step = "text"
args.S = "report"
after = ["after_below"]
when_upstream_skipped = "run"
[pipeline.tasks.string_eq]
step = "text"
args.S = "string"
when = { task = "mode", output = "Value", op = "==", value = "10" }
[pipeline.tasks.string_ne]
step = "text"
args.S = "not 9"
when = { task = "mode", output = "Value", op = "!=", value = "9" }
[pipeline.tasks.logic]
step = "text"
args.S = "logic"
when = { all = [{ param = "n", op = ">=", value = 10 }, { not = { param = "n", op = "<", value = 2 } }, { any = [{ param = "n", op = "==", value = 1 }, { param = "mode", op = "==", value = "10" }] }] }
[pipeline.tasks.never]
step = "text"
args.S = "never"
when = { any = [{ param = "n", op = "!=", value = 10 }, { not = { param = "mode", op = "==", value = "10" } }] }
"""


def test_conditions_skip_tasks_and_their_dependents(busybox_image, run_cache, tmp_path):
    tasks, result = run(busybox_image, CONDITIONS, tmp_path, run_cache)
    assert result.ok and not result.failed
    status = {name: t.status for name, t in tasks.items()}
    assert status == {"score": "succeeded", "mode": "succeeded", "above": "succeeded", "below": "skipped",
                      "after_below": "skipped", "anyway": "succeeded", "string_eq": "succeeded",
                      "string_ne": "succeeded", "logic": "succeeded", "never": "skipped"}
    assert tasks["below"].error == "condition is false: score.Value <= threshold"
    assert tasks["after_below"].error == "upstream task 'below' skipped"
    assert tasks["above"].outputs["Value"] == "deploy"
    # numbers compare as numbers: 10 > 9 (as text "10" < "9"); the string "10" equals "10" and differs from "9"
    rows = summary_rows(result)
    assert [name for name, row in rows.items() if row[0] == "skipped"] == ["below", "after_below", "never"]
    assert rows["below"][2] == "condition is false: score.Value <= threshold"


def test_a_lower_score_takes_the_other_branch(busybox_image, run_cache, tmp_path):
    tasks, _ = run(busybox_image, CONDITIONS, tmp_path, run_cache, params={"n": "9", "threshold": "10"})
    assert tasks["above"].status == "skipped" and tasks["below"].status == "succeeded"
    assert tasks["after_below"].outputs["Value"] == "keep"
    assert tasks["logic"].status == "skipped"  # n >= 10 is false


LOOPS = """
[pipeline]
params = { xs = [2, 3, 5], empty = [], pairs = [{ k = "a", v = 1 }, { k = "b", v = 2 }] }
[pipeline.tasks.squares]
step = "square"
for_each = { param = "xs" }
parallelism = 2
args.X = { item = true }
[pipeline.tasks.collect]
step = "gather"
args.Items = { task = "squares", output = "Y", collect = true }
[pipeline.tasks.literal]
step = "square"
for_each = [7]
args.X = { item = true }
[pipeline.tasks.objects]
step = "pair"
for_each = { param = "pairs" }
args = { K = { item = "k" }, V = { item = "v" } }
[pipeline.tasks.collect_objects]
step = "gather"
args.Items = { task = "objects", output = "Out", collect = true }
[pipeline.tasks.none]
step = "square"
for_each = { param = "empty" }
args.X = { item = true }
[pipeline.tasks.collect_none]
step = "gather"
args.Items = { task = "none", output = "Y", collect = true }
[pipeline.tasks.source]
step = "list"
[pipeline.tasks.from_output]
step = "square"
for_each = { task = "source", output = "Items" }
args.X = { item = true }
[pipeline.tasks.collect_output]
step = "gather"
args.Items = { task = "from_output", output = "Y", collect = true }
"""


def test_loops_fan_out_within_the_parallelism_and_collect_in_item_order(busybox_image, run_cache, tmp_path):
    started = time.monotonic()
    tasks, result = run(busybox_image, LOOPS, tmp_path, run_cache, max_parallel=3)
    assert result.ok, [(t.name, t.error) for t in result.tasks]
    squares = tasks["squares"]
    assert [it.name for it in squares.iterations] == ["squares[0]", "squares[1]", "squares[2]"]
    assert [it.item for it in squares.iterations] == [2, 3, 5]
    assert [it.outputs["Y"] for it in squares.iterations] == ["4", "9", "25"]
    assert json.loads(tasks["collect"].outputs["All"]) == ["4", "9", "25"]  # Argo's aggregate: the output texts
    assert json.loads(tasks["collect_objects"].outputs["All"]) == ["a=1", "b=2"]
    assert json.loads(tasks["collect_output"].outputs["All"]) == ["9", "16"]
    assert tasks["literal"].iterations[0].outputs["Y"] == "49"
    # an empty list runs no iteration; the collector runs and gets []
    assert tasks["none"].status == "skipped" and tasks["none"].iterations == ()
    assert tasks["collect_none"].outputs["All"] == "[]"
    run_json = json.loads((result.run_dir / "run.json").read_text())
    squares_json = next(t for t in run_json["tasks"] if t["name"] == "squares")
    assert [it["item"] for it in squares_json["iterations"]] == [2, 3, 5]
    assert (result.run_dir / "squares" / "2" / "log.txt").is_file()
    rows = summary_rows(result)
    assert rows["squares"][0] == "succeeded" and rows["squares"][2] == "3 iterations"
    assert rows["squares[2]"][0] == "succeeded" and rows["squares[2]"][2] == "item 5: Y = 25"
    assert rows["none"] == ["skipped", "-", "for_each has no items: no iteration ran"]
    # parallelism = 2: three 1-second iterations take two rounds, not one and not three
    starts = sorted(it.duration for it in squares.iterations)
    assert len(starts) == 3 and time.monotonic() - started >= 2


EXIT = """
[pipeline]
on_exit = "notify"
[pipeline.tasks.ok]
step = "text"
args.S = "fine"
[pipeline.tasks.broken]
step = "fail"
[pipeline.tasks.after_broken]
step = "text"
args.S = { task = "broken", output = "Never" }
[pipeline.tasks.notify]
step = "text"
args.S = { status = "pipeline" }
"""


def test_the_exit_handler_runs_after_a_failed_task_and_reads_the_status(busybox_image, run_cache, tmp_path):
    tasks, result = run(busybox_image, EXIT, tmp_path, run_cache)
    assert [t.name for t in result.tasks] == ["ok", "broken", "after_broken", "notify"]
    assert tasks["broken"].status == "failed" and tasks["after_broken"].status == "skipped"
    assert tasks["notify"].status == "succeeded" and tasks["notify"].outputs["Value"] == "Failed"
    assert not result.ok
    tasks, result = run(busybox_image, EXIT.replace('step = "fail"', 'step = "text"\nargs.S = "x"')
                        .replace('output = "Never"', 'output = "Value"'), tmp_path / "2", run_cache)
    assert result.ok and tasks["notify"].outputs["Value"] == "Succeeded"


SECRETS = """
[pipeline.tasks.use]
step = "secrets"
env = { API_TOKEN = { secret = "creds", key = "token" }, REGION = { config_map = "settings", key = "region" } }
secret_volumes = [{ secret = "creds", mount_path = "/etc/creds" }]
"""


def test_secret_references_come_from_the_environment_or_files_and_are_never_recorded(
        busybox_image, run_cache, tmp_path, monkeypatch):
    secrets = tmp_path / "secrets"
    (secrets / "creds").mkdir(parents=True)
    (secrets / "creds" / "password").write_text("pa55word-from-file")
    (secrets / "creds" / "token").write_text("unused-token-file")
    (secrets / "settings").mkdir()
    (secrets / "settings" / "region").write_text("eu-west-1")
    monkeypatch.setenv("API_TOKEN", "s3cr3t-from-env")
    tasks, result = run(busybox_image, SECRETS, tmp_path, run_cache, secrets_dir=secrets)
    assert result.ok, tasks["use"].error
    assert tasks["use"].outputs["Seen"] == f"{len('s3cr3t-from-env')}|eu-west-1|pa55word-from-file"
    log = tasks["use"].log_path.read_text()
    assert "env API_TOKEN (secret creds, key token): from the environment variable API_TOKEN" in log
    assert f"env REGION (config map settings, key region): from the file {secrets / 'settings' / 'region'}" in log
    for path in result.run_dir.rglob("*"):  # the output holds only the token's length, so no file may hold it
        assert not path.is_file() or "s3cr3t-from-env" not in path.read_text(errors="replace"), path
    task_json = json.loads((result.run_dir / "use" / "task.json").read_text())
    assert task_json["env"] == {} and "eu-west-1" not in json.dumps(task_json["argv"])
    monkeypatch.delenv("API_TOKEN")
    tasks, result = run(busybox_image, SECRETS, tmp_path / "2", run_cache)
    assert tasks["use"].status == "failed"
    assert "secret 'creds' (key 'token') is a cluster reference; for a local run set the environment variable " \
           "API_TOKEN or pass --secrets-dir" in tasks["use"].error
