"""Registry errors met while observing name the kfp.toml key whose value named the registry."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.cli import run
from tests.fixtures.registry import closed_port as _closed_port


@pytest.fixture
def project(scratch_project):
    """The one-step project on `scratch` (oci: destination)."""
    return scratch_project


@pytest.mark.parametrize("flag, key, value", [
    ("--repository", "image.repository", "127.0.0.1:{port}/team/app"),
    ("--base", "image.base", "127.0.0.1:{port}/team/base:1"),
])
def test_registry_that_is_down_fails_fast_naming_the_key(project, flag, key, value):  # noqa: F811
    value = value.format(port=_closed_port())
    started = time.monotonic()
    code, out, err = run("-C", str(project), "plan", flag, value)
    assert time.monotonic() - started < 5  # was 18 s of retries with backoff
    assert code == 4, err
    assert f"{key}: {value!r}: " in err and "nothing is listening" in err
    assert value.split("/")[0] in err
