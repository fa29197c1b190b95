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


_WARM_PROBE = '''
import json, sys, threading
started = []
_start = threading.Thread.start


def start(self, *a, **k):
    started.append(self.name)
    return _start(self, *a, **k)


threading.Thread.start = start
out = sys.argv[1]
sys.argv = ["compose-kfp"] + sys.argv[2:]
try:
    from compose_kfp.cli import main
    main()
finally:
    with open(out, "w") as f:
        json.dump({"threads": started, "modules": sorted(sys.modules)}, f)
'''

#: Libraries a command on an unchanged project must not load: what it does needs none of them. (pathspec is
#: loaded: ``load_project`` checks that no ignore pattern leaves a step's file out of its image.)
_WARM_UNUSED = ("jinja2", "yaml", "filelock", "kfp", "rich", "charset_normalizer.api")


@pytest.mark.registry
@pytest.mark.parametrize("command", [["plan", "--exit-code"], ["apply", "-y"]])
def test_unchanged_project_starts_no_thread_and_loads_no_unused_library(project_factory, registry, tmp_path,
                                                                        command):
    """Issue 17: a no-op plan/apply recognises every layer from its files' lstat on the calling thread (no
    observe-layer pool, no layer-tar thread) and imports neither the template engine, YAML, the file lock, the KFP SDK, rich (-q prints nothing) nor the charset detector of requests."""
    import json
    import os
    import subprocess
    import sys

    root = project_factory()
    assert run("-C", str(root), "-q", "apply", "-y")[0] == 0
    report = tmp_path / "probe.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", _WARM_PROBE, str(report), "-q", "-C", str(root), *command],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(report.read_text())
    assert found["threads"] == [], found["threads"]
    loaded = set(found["modules"])
    assert not [m for m in _WARM_UNUSED if m in loaded or any(x.startswith(m + ".") for x in loaded)]
