"""`compose-kfp plan` shows the requirements' reproducibility warnings (text and --json); nothing is installed."""

from __future__ import annotations

import json

from tests.fixtures.cli import run

H = "sha256:" + "cd" * 32


def test_plan_shows_unpinned_requirements(project_factory):
    root = project_factory(requirements=f"six --hash={H}\nrequests>=2\n")
    code, out, err = run("-C", str(root), "plan")
    assert code == 0, err
    lines = out.splitlines()
    at = lines.index("Warnings:")
    assert "requirements.txt:1: `six` is not pinned" in lines[at + 1]
    assert "requirements.txt:2: `requests` is not pinned" in lines[at + 2]
    assert lines[-1].startswith("Plan: ")
    code, out, err = run("-C", str(root), "plan", "--json")
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert [w.split(":")[:2] for w in warnings] == [["requirements.txt", "1"], ["requirements.txt", "2"]]


def test_plan_without_requirements_has_no_warnings(project_factory):
    root = project_factory()
    code, out, err = run("-C", str(root), "plan", "--json")
    assert code == 0, err
    assert json.loads(out)["warnings"] == []
