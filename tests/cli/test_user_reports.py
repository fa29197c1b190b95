"""Regression tests for bugs found by trying compose-kfp as a new user (README on a clean clone, then bad input).

Each test runs the real command line in-process on a small project in ``tmp_path``; nothing needs a registry
(the image goes to a local ``oci:build/image`` layout on top of ``scratch``). Tests for bugs still present are marked
``xfail(strict=True)`` so that they start failing (and must be un-marked) once the bug is fixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.cli import SCRATCH_MANIFEST as MANIFEST
from tests.fixtures.cli import run  # run: cli.main in-process -> (exit code, stdout, stderr)


@pytest.fixture
def project(scratch_project) -> Path:
    return scratch_project


@pytest.mark.parametrize("key", ["repository", "base"])
def test_credentials_in_a_reference_without_scheme_are_not_echoed(project, key):
    ref = {"repository": "bob:hunter2PW@localhost:5000/team/demo",
           "base": "bob:hunter2PW@localhost:5000/team/base:1"}[key]
    current = {"repository": 'repository = "oci:build/image"', "base": 'base = "scratch"'}[key]
    (project / "kfp.toml").write_text(MANIFEST.replace(current, f'{key} = "{ref}"'))
    code, out, err = run("-C", str(project), "validate")
    assert code == 1
    assert f"image.{key}" in err
    assert "hunter2PW" not in out + err


def test_unwritable_output_dir_is_a_clear_error(project, monkeypatch):
    assert run("-C", str(project), "-q", "apply", "--yes")[0] == 0
    monkeypatch.setenv("COMPOSE_KFP_OUTPUT_DIR", "kfp.toml/out")
    code, _, err = run("-C", str(project), "render")
    assert code != 0
    assert "internal error" not in err
    assert "kfp.toml/out" in err


def test_step_file_outside_every_layer_is_refused(project):
    (project / "toplevel.py").write_text("def top(a: int) -> int:\n    return a + 1\n")
    (project / "kfp.toml").write_text(MANIFEST.replace(
        "[steps.double]",
        '[[image.layers]]\nname = "src"\npaths = ["src"]\n\n'
        '[steps.top]\nfunction = "toplevel.py:top"\n\n[steps.double]'))
    code, _, err = run("-C", str(project), "validate")
    assert code == 1
    assert "steps.top" in err and "toplevel.py" in err


def test_init_accepts_a_non_ascii_function_name(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("def f(x: int) -> int:\n    return x\n\n"
                                            "def ünï(x: int) -> int:\n    return x\n")
    code, _, err = run("-C", str(tmp_path), "init")
    assert code == 0, err
    assert run("-C", str(tmp_path), "validate")[0] == 0


def test_init_handles_a_source_file_with_a_space(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("def f(x: int) -> int:\n    return x\n")
    (tmp_path / "src" / "sp ace.py").write_text("def f(x: str) -> str:\n    return x\n")
    code, _, err = run("-C", str(tmp_path), "init")
    assert code == 0, err
    assert run("-C", str(tmp_path), "validate")[0] == 0


def test_ctrl_c_says_interrupted(project, monkeypatch):
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr("compose_kfp.manifest.project.load_project", interrupted)
    code, _, err = run("-C", str(project), "validate")
    assert code == 130
    assert "interrupted" in err
