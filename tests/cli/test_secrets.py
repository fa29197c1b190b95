"""A `user:password@` prefix in an image reference is refused everywhere without echoing the secret.

Runs the real command line in-process (``tests.fixtures.cli.run``) with a canary password in ``image.repository``,
``image.base``, ``--repository`` and ``--base``, for ``validate`` and ``plan``; nothing reaches a registry
because the reference is refused while the manifest is loaded.
"""

from __future__ import annotations

import pytest

from compose_kfp.oci.errors import InvalidReference
from compose_kfp.oci.reference import Reference, has_userinfo, redact_userinfo
from tests.fixtures.cli import SCRATCH_MANIFEST as MANIFEST
from tests.fixtures.cli import run


@pytest.fixture
def project(scratch_project):
    """The one-step project on `scratch` (oci: destination)."""
    return scratch_project

CANARY = "hunter2CANARY"
D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, shown", [
    (f"bob:{CANARY}@localhost:5000/tester/myproj", "***@localhost:5000/tester/myproj"),
    (f"bob:{CANARY}@localhost:5000", "***@localhost:5000"),
    (f"bob:{CANARY}@ghcr.io/o/x:v1", "***@ghcr.io/o/x:v1"),
    (f"bob:{CANARY}@ghcr.io/o/x@{D}", f"***@ghcr.io/o/x@{D}"),
    (f"bob:p@ss/{CANARY}@ghcr.io/o/x", "***@ghcr.io/o/x"),
    (f"https://bob:{CANARY}@ghcr.io/o/x", "https://***@ghcr.io/o/x"),
    (f"bob@{CANARY}.io/o/x", f"***@{CANARY}.io/o/x"),  # username only: the host is kept, the user is not
])
def test_parse_refuses_userinfo_and_shows_it_redacted(text, shown):
    assert has_userinfo(text)
    assert redact_userinfo(text) == shown
    with pytest.raises(InvalidReference) as exc:
        Reference.parse(text)
    message = str(exc.value)
    assert "credentials" in message and repr(shown) in message
    assert "bob" not in message and ("p@ss" not in message)
    if CANARY not in shown:
        assert CANARY not in message


@pytest.mark.parametrize("text", [f"ghcr.io/o/x@{D}", f"ghcr.io/o/x:v1@{D}", "python:3.11", "localhost:5000/a/b",
                                  "ghcr.io/o/x@md5", "ghcr.io/o/x@sha256:abc"])
def test_digests_and_plain_references_are_not_userinfo(text):
    assert not has_userinfo(text)
    assert redact_userinfo(text) == text


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("key, ref", [
    ("repository", f"bob:{CANARY}@localhost:5000/tester/myproj"),
    ("base", f"bob:{CANARY}@localhost:5000/tester/base:1"),
    ("base", f"docker://bob:{CANARY}@localhost:5000/tester/base:1"),
])
def test_canary_secret_in_kfp_toml_is_never_printed(project, command, key, ref):
    current = {"repository": 'repository = "oci:build/image"', "base": 'base = "scratch"'}[key]
    (project / "kfp.toml").write_text(MANIFEST.replace(current, f'{key} = "{ref}"'))
    code, out, err = run("-C", str(project), command)
    assert code == 1, err
    assert f"image.{key}" in err
    assert CANARY not in out + err


@pytest.mark.parametrize("command", [("plan",), ("apply", "--yes")])
@pytest.mark.parametrize("flag, ref", [
    ("--repository", f"bob:{CANARY}@localhost:5000/tester/myproj"),
    ("--base", f"bob:{CANARY}@localhost:5000/tester/base:1"),
])
def test_canary_secret_in_a_flag_is_never_printed(project, command, flag, ref):
    code, out, err = run("-C", str(project), *command, flag, ref)
    assert code == 1, err
    assert f"image.{flag[2:]}" in err and "credentials" in err
    assert CANARY not in out + err


@pytest.mark.parametrize("flag, ref", [
    ("--repository", f"bob:{CANARY}@localhost:5000/tester/myproj"),
    ("--base", f"bob:{CANARY}@localhost:5000/tester/base:1"),
])
def test_canary_secret_given_to_init_is_never_printed_nor_written(tmp_path, flag, ref):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("def f(x: int) -> int:\n    return x\n")
    code, out, err = run("-C", str(tmp_path), "init", flag, ref)
    assert code != 0
    assert CANARY not in out + err
    assert not (tmp_path / "kfp.toml").exists() or CANARY not in (tmp_path / "kfp.toml").read_text()
