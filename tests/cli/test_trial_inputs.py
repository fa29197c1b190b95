"""Bad inputs from a newcomer's trial that ended in an internal error or a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.cli import SCRATCH_MANIFEST, run, write_cli_project


@pytest.fixture
def project(tmp_path) -> Path:
    return write_cli_project(tmp_path, SCRATCH_MANIFEST)


def test_a_kfpignore_that_is_not_utf8_is_a_clear_error(project):
    (project / ".kfpignore").write_bytes(b"\xff\xfe\n")
    code, _, err = run("-C", str(project), "plan")
    assert code == 3, err
    assert err.splitlines()[-1] == (f"error: {project / '.kfpignore'}: not UTF-8 text (byte 0); write the ignore "
                                    "patterns as UTF-8 text, one gitignore-style pattern a line"), err
    assert "internal error" not in err


@pytest.mark.parametrize("command", ["gc", "apply"])
@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_a_lock_timeout_that_is_not_a_number_of_seconds_is_a_usage_error(project, command, value):
    code, _, err = run("-C", str(project), command, "--lock-timeout", value)
    assert code == 1, err
    assert "Invalid value for '--lock-timeout'" in err, err
    assert not (project / ".compose-kfp").exists()


def test_an_unknown_key_without_a_close_match_reads_as_a_sentence(project):
    text = (project / "kfp.toml").read_text().replace('[pipeline.tasks.double]\n', '[pipeline.tasks.double]\nzzz = 1\n')
    (project / "kfp.toml").write_text(text)
    code, _, err = run("-C", str(project), "validate")
    assert code == 1, err
    assert ": pipeline.tasks.double.zzz: unknown key. Known keys of [pipeline.tasks.double]: " in err, err
