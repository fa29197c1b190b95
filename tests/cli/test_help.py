"""``--help`` is plain text: no reStructuredText markup leaks from docstrings into any command's help
(issue 20, item 10e)."""

from __future__ import annotations

import re

import pytest
import typer

from compose_kfp.cli.app import app
from tests.fixtures.cli import run


def _command_paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, prefix + (name,))


_RST = re.compile(r"``|:(func|mod|class|meth|data|attr|exc|obj|ref|doc|py:[a-z]+):`")

COMMANDS = list(_command_paths(typer.main.get_command(app)))


def test_every_command_is_walked():
    names = {path[0] for path in COMMANDS if path}
    assert {"init", "validate", "schema", "plan", "apply", "render", "run", "lock", "gc"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "compose-kfp")
def test_help_has_no_rst_markup(path):
    code, out, err = run(*path, "--help")
    assert code == 0, err
    assert "Usage:" in out
    found = [line for line in out.splitlines() if _RST.search(line)]
    assert not found, found
