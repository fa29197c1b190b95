"""Task caching end to end, as a user meets it: a project whose three Python steps each have a layer of their own,
applied to the real registry on the real Debian base, run with ``run --local`` (twice: the second run reports every
task cached and runs nothing), then a one-line edit of one step's file: ``plan`` says only that task and its
dependents re-run, ``apply`` rebuilds only its image, ``run --local`` re-runs only them; the rendered Workflow's
memoize keys follow and it validates against the Argo schema; ``--no-cache`` runs everything.

Each step returns a fresh ``uuid4`` with its result, so a task whose output keeps its token did not execute.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.fixtures.e2e import read_outputs

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.registry]

EXECUTOR = "bwrap" if shutil.which("bwrap") else "chroot"

STEP = '''\
import uuid


def {name}({args}) -> str:
    """{doc}"""
    return {expr} + " " + uuid.uuid4().hex
'''
FILES = {
    "make": dict(args="n: int", doc="A starting value.", expr='str(n * 2)'),
    "grow": dict(args="start: str", doc="Grows the value.", expr='start.split()[0] + "-grown"'),
    "report": dict(args="grown: str, start: str", doc="Reports both.", expr='grown.split()[0] + "|" + start.split()[0]'),
}


def _kfp_toml(base: str, repository: str) -> str:
    steps = "".join(f'[steps.{n}]\nfunction = "{n}/{n}.py:{n}"\nlayers = [{{ name = "{n}", paths = ["{n}"] }}]\n\n'
                    for n in FILES)
    return textwrap.dedent(f"""\
        [project]
        name = "cachedemo"

        [image]
        base = "{base}"
        repository = "{repository}"

        [[image.layers]]
        name = "common"
        paths = ["common"]

        """) + steps + textwrap.dedent("""\
        [pipeline]
        params = { n = 4 }

        [pipeline.tasks.make]
        step = "make"
        args.n = { param = "n" }

        [pipeline.tasks.grow]
        step = "grow"
        args.start = { task = "make", output = "output" }

        [pipeline.tasks.report]
        step = "report"
        args.grown = { task = "grow", output = "output" }
        args.start = { task = "make", output = "output" }
        """)


def _run(cli, root: Path, run_dir: Path, *extra: str):
    result = cli(root, "run", "--local", "--executor", EXECUTOR, "--run-dir", str(run_dir), *extra)
    return result, read_outputs(run_dir)


def _tokens(tasks: dict) -> dict[str, str]:
    return {name: t["outputs"]["output"].split(" ")[1] for name, t in tasks.items()}


def _memo_keys(root: Path) -> dict[str, str]:
    doc = yaml.safe_load((root / "build" / "workflow.yaml").read_text())
    return {t["name"]: t["memoize"]["key"] for t in doc["spec"]["templates"] if "memoize" in t}


def test_edit_one_step_and_only_it_and_its_dependents_rerun(e2e_cli, e2e_base, registry, tmp_path,
                                                           argo_workflow_check):
    root = tmp_path / "cachedemo"
    for name, parts in FILES.items():
        (root / name).mkdir(parents=True)
        (root / name / f"{name}.py").write_text(STEP.format(name=name, **parts))
    (root / "common").mkdir()
    (root / "common" / "README.txt").write_text("shared by every step\n")
    (root / "kfp.toml").write_text(_kfp_toml(e2e_base.reference, f"{registry.host}/e2e/cachedemo"))

    e2e_cli(root, "apply", "--yes")
    plan = e2e_cli.json(root, "plan")
    assert [(t["task"], t["status"]) for t in plan["tasks"]] == [("make", "cached"), ("grow", "cached"),
                                                                  ("report", "cached")]
    keys_before = _memo_keys(root)
    argo_workflow_check((root / "build" / "workflow.yaml").read_text())

    first, tasks = _run(e2e_cli, root, tmp_path / "run-1")
    assert {n: (t["status"], t["cached"]) for n, t in tasks.items()} == {
        "make": ("succeeded", False), "grow": ("succeeded", False), "report": ("succeeded", False)}
    assert tasks["report"]["outputs"]["output"].startswith("8-grown|8 ")
    tokens_1 = _tokens(tasks)

    second, tasks = _run(e2e_cli, root, tmp_path / "run-2")
    assert {n: t["cached"] for n, t in tasks.items()} == {"make": True, "grow": True, "report": True}
    assert _tokens(tasks) == tokens_1  # nothing executed: the outputs are the first run's
    assert all(t["attempts"] == 0 for t in tasks.values())
    summary = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in second.stdout.splitlines()
               if line.count("│") >= 4 and line.split("│")[1].strip() in FILES}
    assert summary == {"make": "cached", "grow": "cached", "report": "cached"}, second.stdout
    assert "■ make cached" in second.stderr

    source = root / "grow" / "grow.py"
    source.write_text(source.read_text().replace('"-grown"', '"-grown-more"'))
    text = e2e_cli(root, "plan").stdout
    assert "  make    cached" in text, text
    assert "  grow    re-runs: its image changed (layer grow replaced)" in text, text
    assert "  report  re-runs: an upstream task re-runs (grow)" in text, text
    assert "Tasks: 1 cached, 2 to re-run." in text
    plan = e2e_cli.json(root, "plan")
    assert [(t["task"], t["status"]) for t in plan["tasks"]] == [("make", "cached"), ("grow", "re-runs"),
                                                                  ("report", "re-runs")]
    changed = {im["name"] for im in plan["images"] if im["status"] != "unchanged"}
    assert len(changed) == 1 and plan["images"][[im["name"] for im in plan["images"]].index(next(iter(changed)))][
        "steps"] == ["grow"]

    e2e_cli(root, "apply", "--yes")
    keys_after = _memo_keys(root)
    assert keys_after["make"] == keys_before["make"]
    assert keys_after["grow"] != keys_before["grow"] and keys_after["report"] != keys_before["report"]
    argo_workflow_check((root / "build" / "workflow.yaml").read_text())
    assert [t["status"] for t in e2e_cli.json(root, "plan")["tasks"]] == ["cached"] * 3  # apply recorded them

    _, tasks = _run(e2e_cli, root, tmp_path / "run-3")
    assert {n: t["cached"] for n, t in tasks.items()} == {"make": True, "grow": False, "report": False}
    tokens_3 = _tokens(tasks)
    assert tokens_3["make"] == tokens_1["make"] and tokens_3["grow"] != tokens_1["grow"]
    assert tasks["report"]["outputs"]["output"].startswith("8-grown-more|8 ")

    _, tasks = _run(e2e_cli, root, tmp_path / "run-4", "--no-cache")
    assert not any(t["cached"] for t in tasks.values())
    assert all(_tokens(tasks)[n] != tokens_3[n] for n in FILES)
    state = json.loads((root / ".compose-kfp" / "task-keys.json").read_text())
    assert set(state["tasks"]) == set(FILES)

    # A project applied before keys were recorded: plan cannot tell; an apply with nothing to change records them.
    (root / ".compose-kfp" / "task-keys.json").unlink()
    assert {t["reason"] for t in e2e_cli.json(root, "plan")["tasks"]} == {"no key recorded by an apply or run yet"}
    e2e_cli(root, "apply", "--yes")
    assert [t["status"] for t in e2e_cli.json(root, "plan")["tasks"]] == ["cached"] * 3
