"""The one error boundary (cli/boundary.py): every error about a kfp.toml key reads ``error: kfp.toml:LINE: KEY:``
in one key notation (dotted, names that are no TOML bare key quoted), and after ``--json`` it is one JSON object
on stderr (issue 20, item 9). Nothing here needs a registry: the base is ``scratch`` or a loopback port where
nothing listens, the image goes to ``oci:build/image``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.cli import LAYERED_MANIFEST, run

# a task name that is not a bare TOML key, so that key notation shows
MANIFEST = LAYERED_MANIFEST.replace("[pipeline.tasks.double]", '[pipeline.tasks."Data file"]')
assert '"Data file"' in MANIFEST


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "steps.py").write_text('def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n')
    (tmp_path / "kfp.toml").write_text(MANIFEST)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project: Path, old: str, new: str) -> str:
    text = MANIFEST.replace(old, new, 1)
    assert text != MANIFEST
    (project / "kfp.toml").write_text(text)
    return text


def test_a_registry_error_names_the_line_of_image_base(project):
    text = write(project, 'base = "scratch"', 'base = "127.0.0.1:1/nothing:1"')
    code, out, err = run("plan")
    assert code == 4, err
    assert err.startswith(f"error: kfp.toml:{line_of(text, 'base =')}: image.base: '127.0.0.1:1/nothing:1': "
                          "cannot reach the registry 127.0.0.1:1"), err


def test_a_task_name_error_with_a_quoted_name_has_its_line(project):
    text = write(project, 'step = "double"', 'step = "dubble"')
    code, _, err = run("validate")
    assert code == 1
    assert err == (f'error: kfp.toml:{line_of(text, "dubble")}: pipeline.tasks."Data file".step: no step called '
                   "'dubble'; did you mean 'double'? (steps: double).\n")


def test_a_graph_error_with_a_quoted_task_name_has_its_line(project):
    text = write(project, 'args.x = { param = "x" }', "args.y = 3")
    code, _, err = run("validate")
    assert code == 1
    assert err.startswith(f'error: kfp.toml:{line_of(text, "args.y")}: pipeline.tasks."Data file".args.y: '), err


def test_an_outside_path_is_named_in_dotted_notation_with_its_line(project, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    rel = Path("..") / outside.name
    text = write(project, 'paths = ["src"]', f'paths = ["src", "{rel.as_posix()}"]')
    code, _, err = run("validate")
    assert code == 1
    # the fence of manifest/fences.py (issue 20 item 1) names it first, at load time
    assert err.startswith(f"error: kfp.toml:{line_of(text, 'paths =')}: image.layers.0.paths.1: "
                          f"'{rel.as_posix()}' resolves to {outside.resolve()}, outside the project folder"), err
    assert "[0]" not in err and "[1]" not in err


def test_a_symlink_leaving_the_layer_is_named_by_its_layer_and_line(project):
    (project / "src" / "etc").symlink_to("/etc")
    code, _, err = run("plan")
    assert code == 3, err
    error = err.splitlines()[-1]  # after the plain progress lines of the layers built before it
    assert error.startswith(f"error: kfp.toml:{line_of(MANIFEST, '[[image.layers]]')}: image.layers.0: "
                            "layer 'src': symlink "), err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [error]


def test_json_errors_are_one_object_on_stderr(project):
    text = write(project, 'base = "scratch"', 'base = "127.0.0.1:1/nothing:1"')
    code, out, err = run("plan", "--json")
    assert code == 4 and out == ""
    error = json.loads(err)["error"]
    assert error == {"message": error["message"], "kind": "RegistryError", "exit_code": 4, "file": "kfp.toml",
                     "line": line_of(text, "base ="), "key": "image.base"}
    assert error["message"].startswith(f"kfp.toml:{error['line']}: image.base: ")


def test_json_error_of_a_task_name_has_the_quoted_key(project):
    text = write(project, 'step = "double"', 'step = "dubble"')
    code, _, err = run("apply", "-y", "--json")
    assert code == 1
    error = json.loads(err)["error"]
    assert (error["kind"], error["line"], error["key"]) == ("ConfigError", line_of(text, "dubble"),
                                                            'pipeline.tasks."Data file".step')


def test_json_error_without_a_location_has_null_fields_and_no_secret(project):
    write(project, 'base = "scratch"', 'base = "bob:hunter2PW@localhost:5000/team/base:1"')
    code, _, err = run("plan", "--json")
    assert code == 1
    assert "hunter2PW" not in err
    error = json.loads(err)["error"]
    assert error["kind"] == "ConfigError" and error["exit_code"] == 1
    assert error["key"] == "image.base" and error["file"] == "kfp.toml"
    (project / "kfp.toml").write_text(MANIFEST)
    code, _, err = run("run", "--json")  # no --local: an error not about any key
    error = json.loads(err)["error"]
    assert code == 1 and (error["file"], error["line"], error["key"]) == (None, None, None)


def test_without_json_errors_stay_text(project):
    write(project, 'step = "double"', 'step = "dubble"')
    code, _, err = run("plan")
    assert code == 1 and err.startswith("error: kfp.toml:") and not err.lstrip().startswith("{")
