"""The compose-kfp command line: global options, schema/init/validate, the one error boundary, exit codes."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from compose_kfp import cli, errors
from compose_kfp.manifest import docs, load
from compose_kfp.oci import errors as oci_errors
from tests.fixtures.cli import VALID, run
from tests.fixtures.paths import REPO


@pytest.fixture
def project(cli_project) -> Path:
    return cli_project


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    logger = logging.getLogger("compose_kfp")
    for handler in list(logger.handlers):
        if getattr(handler, "_compose_kfp_cli", False):
            logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_schema_prints_the_json_schema():
    code, out, err = run("schema")
    assert code == 0 and err == ""
    assert json.loads(out) == docs.json_schema()


def test_schema_markdown_is_the_readme_reference():
    code, out, _ = run("schema", "--format", "markdown")
    assert code == 0 and out.strip() == docs.reference_markdown().strip()


def test_validate_ok(project):
    code, out, err = run("-C", str(project), "validate")
    assert (code, err) == (0, "")
    assert re.fullmatch(r"OK \S*kfp\.toml: 1 step\(s\), 1 task\(s\), 1 layer\(s\)\n", out)


def test_validate_quiet_prints_nothing(project):
    assert run("-q", "-C", str(project), "validate") == (0, "", "")


def test_file_option_is_relative_to_project_dir(project):
    (project / "other.toml").write_text(VALID.replace('name = "demo"', 'name = "other"'))
    (project / "kfp.toml").write_text("broken = ")
    code, out, _ = run("-C", str(project), "-f", "other.toml", "validate")
    assert code == 0 and "other.toml" in out
    assert run("-C", str(project), "validate")[0] == 1


def test_validate_reports_graph_errors_with_line(project):
    (project / "kfp.toml").write_text(VALID.replace('args.x = { param = "x" }', 'args.y = 1'))
    code, out, err = run("-C", str(project), "validate")
    assert code == 1 and out == ""
    assert re.match(r"error: \S*kfp\.toml:16: pipeline\.tasks\.double\.args\.y: ", err), err
    assert "Traceback" not in err


def test_missing_manifest(tmp_path):
    code, _, err = run("-C", str(tmp_path), "validate")
    assert code == 1 and "no such file" in err and "compose-kfp init" in err


def test_missing_project_dir(tmp_path):
    code, _, err = run("-C", str(tmp_path / "nope"), "validate")
    assert code == 1 and err == f"error: -C {tmp_path / 'nope'}: no such folder.\n"


@pytest.mark.parametrize("args", [("--bogus",), ("validate", "extra"), ("schema", "--format", "xml"), ("nosuch",)])
def test_usage_errors_exit_1(args):
    code, _, err = run(*args)
    assert code == 1 and "Usage:" in err and "Traceback" not in err


def test_no_arguments_shows_help():
    code, out, err = run()
    assert "Usage:" in out + err and "validate" in out + err


def test_version():
    from compose_kfp import __version__

    assert run("--version") == (0, f"compose-kfp {__version__}\n", "")


def test_debug_shows_traceback(tmp_path):
    (tmp_path / "kfp.toml").write_text('[project]\nname = "x"\n')
    code, _, err = run("--debug", "-C", str(tmp_path), "validate")
    assert code == 1 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("error,code", [
    (errors.BuildError("layer failed"), 3),
    (errors.BusyError("locked"), 9),
    (oci_errors.Unauthorized("denied", status=401), 5),
    (oci_errors.DistributionError("boom", status=500), 4),
    (oci_errors.InvalidReference("bad ref"), 1),
])
def test_error_boundary_maps_exit_codes(monkeypatch, project, error, code):
    def fail(*_a, **_k):
        raise error

    monkeypatch.setattr("compose_kfp.manifest.project.load_project", fail)
    got, out, err = run("-C", str(project), "validate")
    assert got == code and out == "" and err == f"error: {error}\n"


def test_unexpected_exception_is_reported_as_a_bug(monkeypatch, project):
    def fail(*_a, **_k):
        raise RuntimeError("oops")

    monkeypatch.setattr("compose_kfp.manifest.project.load_project", fail)
    code, _, err = run("-C", str(project), "validate")
    assert code == 1 and "internal error: RuntimeError: oops" in err and "--debug" in err
    assert "Traceback" not in err


def test_keyboard_interrupt_exits_130(monkeypatch, project):
    def fail(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr("compose_kfp.manifest.project.load_project", fail)
    assert run("-C", str(project), "validate")[0] == 130


def test_verbose_logs_to_stderr(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "kfp.toml").write_text('[project]\nname = "x"\n[image]\nbase = "scratch"\nrepository = "oci:o"\n')
    code, out, err = run("-vv", "-C", str(tmp_path), "validate")
    assert code == 0 and "using the defaults ['src']" in err and out.startswith("OK")


# --------------------------------------------------------------------------- init


def test_init_writes_a_valid_manifest(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "requirements.txt").write_text("pandas\n")
    (tmp_path / "src" / "model.py").write_text("def fit(n: int, rate: float = 0.1) -> float:\n    return n * rate\n")
    code, out, err = run("-C", str(tmp_path), "init", "--repository", "localhost:5000/demo/model")
    assert code == 0, err
    assert re.match(r"wrote \S*kfp\.toml: 3 layer\(s\), 1 step\(s\): fit\n", out), out
    data = tomllib.loads((tmp_path / "kfp.toml").read_text())
    assert data["steps"]["fit"]["function"] == "src/model.py:fit"
    assert data["image"]["repository"] == "localhost:5000/demo/model"
    assert load.load_manifest(tmp_path, env={}).manifest.project.name == tmp_path.name.lower().replace("_", "-")
    assert run("-C", str(tmp_path), "validate")[0] == 0


def test_init_says_what_it_skipped(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("def f(x: int) -> int:\n    return x\n\ndef g(x):\n    return x\n")
    (tmp_path / "src" / "b.py").write_text("def (:\n")
    code, out, err = run("-C", str(tmp_path), "init")
    assert code == 0, err
    assert "1 step(s): f" in out
    assert "init: skipped src/a.py:g: parameter(s) x have no type annotation" in err
    assert "init: skipped src/b.py: it does not parse" in err


def test_init_makes_gitignore_ignore_the_state_folder(tmp_path):
    code, out, err = run("-C", str(tmp_path), "init")
    assert code == 0, err
    assert re.search(r"wrote \S*\.gitignore: ignores \.compose-kfp/", out), out
    assert (tmp_path / ".gitignore").read_text().splitlines()[-1] == ".compose-kfp/"
    code, out, err = run("-C", str(tmp_path), "init", "--force")  # a second init does not repeat the line
    assert code == 0 and re.search(r"\S*\.gitignore already ignores \.compose-kfp/", out), out
    assert (tmp_path / ".gitignore").read_text().count(".compose-kfp") == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / ".gitignore").write_text("__pycache__/\n*.pyc")  # no newline at the end
    code, out, err = run("-C", str(other), "init")
    assert code == 0 and re.search(r"added \.compose-kfp/ .*to \S*\.gitignore", out), out
    lines = (other / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["__pycache__/", "*.pyc"] and lines[-1] == ".compose-kfp/"


def test_init_refuses_to_overwrite(tmp_path):
    (tmp_path / "kfp.toml").write_text("# mine\n")
    code, _, err = run("-C", str(tmp_path), "init")
    assert code == 1 and "already exists" in err and "--force" in err
    assert (tmp_path / "kfp.toml").read_text() == "# mine\n"
    assert run("-C", str(tmp_path), "init", "--force")[0] == 0
    assert "[project]" in (tmp_path / "kfp.toml").read_text()


def test_init_with_invalid_option_leaves_no_file(tmp_path):
    code, _, err = run("-C", str(tmp_path), "init", "--base", "Not A Reference")
    assert code == 1 and "image.base" in err
    assert not (tmp_path / "kfp.toml").exists()


def test_init_honours_file_option_and_detects_next_to_it(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "sub" / "src").mkdir(parents=True)
    assert run("-C", str(tmp_path), "-f", "sub/kfp.toml", "init")[0] == 0
    loaded = load.load_manifest(tmp_path / "sub" / "kfp.toml", env={})
    assert [layer.name for layer in loaded.manifest.image.layers] == ["src"]
    assert loaded.resolve("src") == (tmp_path / "sub" / "src").resolve()


# --------------------------------------------------------------------------- the real entry point


def test_entry_point_runs_as_a_program(tmp_path):
    (tmp_path / "kfp.toml").write_text('[project]\nname = "x"\n[image]\nbase = "python:3.11-slim"\n'
                                       'repository = "ghcr.io/a/b"\n[image.auth]\npassword = "hunter2-canary"\n')
    proc = subprocess.run([sys.executable, "-m", "compose_kfp.cli", "validate"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: kfp.toml:7: image.auth.password: ")
    assert "hunter2" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_readme_documents_every_exit_code():
    readme = (REPO / "README.md").read_text()
    codes = re.findall(r"^(\d+)\s{2,}\S", errors.__doc__, flags=re.M)
    assert len(codes) >= 9
    for code in codes:
        assert re.search(rf"^\| {code} \| ", readme, flags=re.M), f"exit code {code} missing from README"


def test_escaped_os_error_is_shown_as_path_and_reason(monkeypatch, project):
    def fail(*_a, **_k):
        raise PermissionError(13, "Permission denied", "/somewhere/file")

    monkeypatch.setattr("compose_kfp.manifest.project.load_project", fail)
    code, _, err = run("-C", str(project), "validate")
    assert (code, err) == (1, "error: /somewhere/file: Permission denied\n")


# --- unwritable output folder / state folder (scratch base, oci: destination: no registry needed)

SCRATCH = VALID.replace('base = "python:3.11-slim"', 'base = "scratch"')


@pytest.fixture
def scratch_project(project) -> Path:
    (project / "kfp.toml").write_text(SCRATCH)
    return project


def test_apply_into_an_unwritable_output_dir_changes_nothing(scratch_project, monkeypatch):
    root = scratch_project
    assert run("-C", str(root), "-q", "apply", "--yes")[0] == 0
    lock, index = (root / "kfp.lock").read_bytes(), (root / "build" / "image" / "index.json").read_bytes()
    (root / "src" / "steps.py").write_text("def double(x: int) -> int:\n    return x + x\n")
    monkeypatch.setenv("COMPOSE_KFP_OUTPUT_DIR", "kfp.toml/out")  # under a regular file: NotADirectoryError
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == errors.RenderError.exit_code, err
    assert "render.output_dir (kfp.toml/out)" in err and "Not a directory" in err and "internal error" not in err
    # checked before anything was sent: the image layout and kfp.lock still say the old state
    assert (root / "kfp.lock").read_bytes() == lock
    assert (root / "build" / "image" / "index.json").read_bytes() == index
    monkeypatch.delenv("COMPOSE_KFP_OUTPUT_DIR")
    code, out, _ = run("-C", str(root), "plan", "--exit-code")
    assert code == 2 and "kfp.lock will be written" in out


def test_failed_render_write_leaves_kfp_lock_unchanged(scratch_project, monkeypatch):
    """Files are written before kfp.lock: a failure while writing them keeps the old lock (plan shows the change)."""
    root = scratch_project
    assert run("-C", str(root), "-q", "apply", "--yes")[0] == 0
    lock = (root / "kfp.lock").read_bytes()
    (root / "src" / "steps.py").write_text("def double(x: int) -> int:\n    return x + x\n")
    import os

    real = os.write

    def full_disk(fd, data):  # the write(2) of a rendered file fails as on a full disk
        if "build/components" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == errors.RenderError.exit_code
    assert "render.output_dir (build): no space left on device writing build/components/double.yaml: free" in err
    assert (root / "kfp.lock").read_bytes() == lock
    monkeypatch.undo()
    code, out, _ = run("-C", str(root), "plan", "--exit-code")
    assert code == 2 and "kfp.lock will be written" in out


def test_state_folder_that_cannot_be_created_is_a_build_error(scratch_project):
    (scratch_project / ".compose-kfp").write_text("not a folder")
    for command in ("plan", "apply"):
        code, _, err = run("-C", str(scratch_project), *([command] if command == "plan" else [command, "--yes"]))
        assert code == errors.BuildError.exit_code, err
        assert err.startswith("error: .compose-kfp (the state folder") and "internal error" not in err


def test_plan_with_a_read_only_state_folder_works_when_everything_is_cached(scratch_project, monkeypatch):
    """A read-only checkout whose state is complete: plan writes nothing (the render cache is skipped)."""
    from compose_kfp.oci import blobs

    root = scratch_project
    assert run("-C", str(root), "-q", "apply", "--yes")[0] == 0
    import shutil

    shutil.rmtree(root / ".compose-kfp" / "cache" / "render")

    def read_only(path, data):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(blobs, "atomic_write", read_only)
    monkeypatch.setattr("compose_kfp.pipeline.outputs.atomic_write", read_only)
    code, out, err = run("-C", str(root), "plan", "--exit-code")
    assert code == 0, err


# --- -q and --json, global flags after the command

def test_json_result_prints_even_with_quiet(scratch_project):
    code, out, err = run("-C", str(scratch_project), "-q", "apply", "--json")
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["changed"] is True and result["result"]["lock_written"] is True
    code, out, _ = run("-C", str(scratch_project), "-q", "plan", "--json")
    assert code == 0 and json.loads(out)["root"] == str(scratch_project)
    code, out, _ = run("-C", str(scratch_project), "-q", "apply", "--json")  # nothing to do: still a result
    assert code == 0 and json.loads(out) == {"plan": json.loads(run("-C", str(scratch_project), "plan",
                                                                     "--json")[1]), "result": None,
                                             "changed": False}


def test_global_flags_after_the_command(scratch_project):
    code, out, err = run("-C", str(scratch_project), "apply", "-y", "-q")
    assert (code, out, err) == (0, "", "")
    assert (scratch_project / "kfp.lock").is_file()
    code, out, err = run("-C", str(scratch_project), "validate", "-q")
    assert (code, out) == (0, "")
    # a value of the command's own option is not taken for a flag
    code, _, err = run("-C", str(scratch_project), "plan", "--repository", "-q")
    assert code == 1 and "'-q'" in err
    # after `--` nothing moves
    assert cli._hoist_global_flags(["run", "--", "-q"]) == ["run", "--", "-q"]
    assert cli._hoist_global_flags(["-C", "x", "plan", "-v", "--json", "--debug"]) == [
        "-C", "x", "-v", "--debug", "plan", "--json"]


def test_apply_that_waited_for_the_lock_plans_again(scratch_project):
    """A second apply that had to wait applies (and prints) a plan made after the first one finished."""
    from compose_kfp.build.apply import apply_plan
    from compose_kfp.build.plan import plan_project
    from compose_kfp.build.projectlock import holding_project_lock
    from compose_kfp.manifest.project import load_project

    root = scratch_project
    project = load_project(root / "kfp.toml", env={})
    with holding_project_lock(root):
        proc = subprocess.Popen([sys.executable, "-m", "compose_kfp", "-C", str(root), "apply", "-y"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()
            while line.startswith("built "):  # plain progress lines (stderr is a pipe) of the plan made first
                line = proc.stderr.readline()
            assert "Waiting for another `compose-kfp apply`" in line
            apply_plan(project, plan_project(project), lock_held=True)  # the "other" apply does everything
        except BaseException:
            proc.kill()
            raise
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    first, _, after = out.partition("The other apply changed what is to be done; the plan is now:")
    assert "kfp.lock will be written" in first and after, out
    assert "kfp.lock will be written" not in after and after.rstrip().endswith("Nothing to do: nothing uploaded.")
