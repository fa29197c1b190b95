"""Config discovery (cli Settings + manifest.load.discover_manifest): without ``-C``/``-f`` the nearest kfp.toml
from the current folder up is used, as git finds ``.git``; the search stops at the top of a git repository or
the filesystem root (issue 20, item 10c)."""

from __future__ import annotations

from pathlib import Path

from compose_kfp.manifest.load import discover_manifest
from tests.fixtures.cli import LAYERED_MANIFEST as MANIFEST
from tests.fixtures.cli import run



def make(folder: Path) -> Path:
    (folder / "src" / "deep").mkdir(parents=True)
    (folder / "src" / "steps.py").write_text('def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n')
    (folder / "kfp.toml").write_text(MANIFEST)
    return folder


def test_plan_and_apply_from_a_subfolder_use_the_project_above(tmp_path, monkeypatch):
    project = make(tmp_path / "project")
    (project / ".git").mkdir()  # the repository's top holds kfp.toml: it is searched too
    monkeypatch.chdir(project / "src" / "deep")
    code, out, err = run("plan")
    assert code == 0, err
    assert "+ src" in out
    code, out, err = run("apply", "-y")
    assert code == 0, err
    # every relative path stays relative to kfp.toml's folder, not to the current one
    assert (project / "build" / "workflow.yaml").is_file() and (project / "kfp.lock").is_file()
    assert (project / "build" / "image" / "index.json").is_file()
    assert not (project / "src" / "build").exists() and not (project / "src" / "deep" / "build").exists()
    assert not (project / "src" / "deep" / "kfp.lock").exists()
    code, out, _ = run("validate")
    assert code == 0 and str(project / "kfp.toml") in out


def test_the_search_stops_at_the_top_of_a_git_repository(tmp_path, monkeypatch):
    make(tmp_path)  # a kfp.toml above the repository is not used
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    code, out, err = run("plan")
    assert code == 1 and out == ""
    assert f"no kfp.toml in {repo / 'sub'} or any folder above it (searched up to the top of the git repository " \
           f"{repo})" in err
    assert discover_manifest(repo / "sub") == (None, repo)
    assert discover_manifest(tmp_path / "src" / "deep") == (tmp_path / "kfp.toml", tmp_path)


def test_a_git_file_also_marks_the_top(tmp_path):
    make(tmp_path)
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text("gitdir: /elsewhere\n")  # a worktree or submodule
    assert discover_manifest(tmp_path / "wt") == (None, tmp_path / "wt")


def test_project_dir_and_file_do_not_search_upward(tmp_path, monkeypatch):
    project = make(tmp_path / "project")
    code, _, err = run("-C", str(project / "src"), "validate")
    assert code == 1 and "no such file" in err
    monkeypatch.chdir(project / "src")
    code, _, err = run("-f", "kfp.toml", "validate")
    assert code == 1 and "no such file" in err


def test_init_still_writes_in_the_current_folder(tmp_path, monkeypatch):
    project = make(tmp_path / "project")
    monkeypatch.chdir(project / "src")
    code, _, err = run("init", "--name", "inner")
    assert code == 0, err
    assert (project / "src" / "kfp.toml").is_file() and (project / "kfp.toml").read_text() == MANIFEST
