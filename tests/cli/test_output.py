"""What the build commands print (cli/build.py) besides the plan: plain progress lines when stderr is not a
terminal (issue 20, item 10a), the pushed references only with ``apply --print-reference`` (item 10d)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compose_kfp import cli


def run(*args: str) -> tuple[int, str, str]:
    """Run ``main`` in-process; return (exit code, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as info:
        cli.main(list(args))
    return info.value.code, out.getvalue(), err.getvalue()


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
