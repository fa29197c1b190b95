"""What the build commands print (cli/build.py) besides the plan: plain progress lines when stderr is not a
terminal (issue 20, item 10a), the pushed references only with ``apply --print-reference`` (item 10d)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.cli import run


_BUILT = re.compile(r"^built (?P<layer>\S+) sha256:[0-9a-f]{12}… \d+(\.\d+)? [kMG]?B$")
_UPLOADED = re.compile(r"^uploaded sha256:[0-9a-f]{12}… \d+(\.\d+)? [kMG]?B$")


def test_plain_progress_lines_when_stderr_is_not_a_terminal(project_factory):
    project = project_factory()
    code, out, err = run("-C", str(project), "apply", "-y")  # stderr is a StringIO: not a terminal
    assert code == 0, err
    lines = err.splitlines()
    built = [m.group("layer") for m in map(_BUILT.match, lines) if m]
    assert sorted(built) == ["data", "runtime", "src"], err
    uploaded = [line for line in lines if _UPLOADED.match(line)]
    assert len(uploaded) >= 3, err  # the three layers (and the config) were sent
    assert len(uploaded) == len(set(uploaded))  # one line per blob
    assert "built" not in out and "uploaded sha256" not in out  # progress is on stderr only
    # nothing changed: nothing built, nothing uploaded, no progress line
    code, _, err = run("-C", str(project), "apply", "-y")
    assert code == 0 and not [line for line in err.splitlines() if _BUILT.match(line) or _UPLOADED.match(line)]


def test_no_progress_lines_with_quiet_or_json(project_factory):
    project = project_factory()
    code, _, err = run("-q", "-C", str(project), "plan")
    assert code == 0 and err == ""
    (project / "src" / "model.py").write_text((project / "src" / "model.py").read_text() + "\n# changed\n")
    code, _, err = run("-C", str(project), "plan", "--json")
    assert code == 0 and err == ""
    (project / "src" / "model.py").write_text((project / "src" / "model.py").read_text() + "\n# again\n")
    code, _, err = run("-C", str(project), "plan")
    assert code == 0 and [_BUILT.match(line).group("layer") for line in err.splitlines()] == ["src"]


SCRATCH = '''\
[project]
name = "demo"

[image]
base = "scratch"
repository = "oci:build/image"

[[image.layers]]
name = "src"
paths = ["src"]

[steps.double]
function = "src/steps.py:double"

[steps.triple]
function = "src/steps.py:triple"
layers = [{ name = "extra", paths = ["extra"] }]
'''


@pytest.fixture
def scratch(tmp_path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "steps.py").write_text('def double(x: int) -> int:\n    return 2 * x\n\n\n'
                                               'def triple(x: int) -> int:\n    return 3 * x\n')
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "notes.txt").write_text("more\n")
    (tmp_path / "kfp.toml").write_text(SCRATCH)
    return tmp_path


def test_print_reference_puts_only_the_references_on_stdout(scratch):
    import json

    code, ref, err = run("-C", str(scratch), "apply", "-y", "--print-reference")  # ref=$(compose-kfp apply ...)
    assert code == 0, err
    lines = ref.splitlines()
    assert ref.endswith("\n") and len(lines) == 2, ref  # main and the step's own image
    assert all(re.fullmatch(r"oci:build/image@sha256:[0-9a-f]{64}", line) for line in lines), ref
    assert "Plan: " in err and "Rendered " in err  # the human text went to stderr
    layout = json.loads((scratch / "build" / "image" / "index.json").read_text())
    digests = {m["digest"] for m in layout["manifests"]}
    assert {line.split("@", 1)[1] for line in lines} <= digests
    # nothing to do: the same references, and with -q nothing else at all
    code, again, err = run("-q", "-C", str(scratch), "apply", "-y", "--print-reference")
    assert code == 0 and again == ref and err == ""


def test_print_reference_and_json_exclude_each_other(scratch):
    code, out, err = run("-C", str(scratch), "apply", "-y", "--print-reference", "--json")
    assert code == 1 and out == "" and "--print-reference" in err
    assert not (scratch / "kfp.lock").exists()
