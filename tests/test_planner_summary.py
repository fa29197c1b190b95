"""The plan's last line counts layers, bytes, rendered files and images, and a new image's config and manifest
are additions (planner.format_plan; issue 20, item 10b). Runs the real CLI on a project on ``scratch`` that
goes to an ``oci:build/image`` layout (no registry)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.cli import LAYERED_MANIFEST as MANIFEST
from tests.fixtures.cli import run


_SUMMARY = re.compile(r"^Plan: (\d+) to add, (\d+) to replace, (\d+) to remove; (.+) to upload; "
                      r"(\d+) rendered files? to change; (\d+) images? to push\.$")


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "steps.py").write_text('def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n')
    (tmp_path / "kfp.toml").write_text(MANIFEST)
    return tmp_path


def test_a_new_image_is_all_additions_and_the_summary_counts_files_and_images(project):
    code, out, err = run("-C", str(project), "plan")
    assert code == 0, err
    lines = out.rstrip().splitlines()
    m = _SUMMARY.match(lines[-1])
    assert m, lines[-1]
    assert m.groups()[:3] == ("2", "0", "0")  # runtime and src layers
    assert (m.group(5), m.group(6)) == ("2", "1")  # components/double.yaml and workflow.yaml; image main
    assert any(re.fullmatch(r"  \+ config     sha256:[0-9a-f]{12}…", line) for line in lines), out
    assert any(re.fullmatch(r"  \+ manifest   sha256:[0-9a-f]{12}…", line) for line in lines), out
    assert "(none)" not in out and not any(line.startswith("  ~") for line in lines)


def test_a_changed_image_shows_replacements_and_counts_one_image(project):
    assert run("-C", str(project), "apply", "-y")[0] == 0
    (project / "src" / "steps.py").write_text((project / "src" / "steps.py").read_text() + "# changed\n")
    code, out, _ = run("-C", str(project), "plan")
    assert code == 0
    lines = out.rstrip().splitlines()
    m = _SUMMARY.match(lines[-1])
    assert m and m.groups()[:3] == ("0", "1", "0") and (m.group(5), m.group(6)) == ("2", "1"), lines[-1]
    assert lines[-1].endswith("; 2 rendered files to change; 1 image to push.")
    assert any(re.fullmatch(r"  ~ config     sha256:[0-9a-f]{12}… -> sha256:[0-9a-f]{12}…", line) for line in lines)
    assert any(re.fullmatch(r"  ~ manifest   sha256:[0-9a-f]{12}… -> sha256:[0-9a-f]{12}…", line) for line in lines)
    assert not any(re.match(r"  \+ (config|manifest) ", line) for line in lines)


def test_json_summary_keeps_its_keys(project):
    code, out, _ = run("-C", str(project), "plan", "--json")
    import json

    summary = json.loads(out)["summary"]
    assert {"add", "replace", "remove", "upload_bytes", "unknown_upload", "images_changed",
            "files_changed"} <= set(summary)
    assert (summary["files_changed"], summary["images_changed"]) == (2, 1)
