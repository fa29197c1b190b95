"""A symlink under the output folder, or an oci: layout path inside the project that is a symlink, never
leads a write or a removal out of the project (issue 20 item 1-2, found again by a newcomer's trial)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.cli import SCRATCH_MANIFEST, run, write_cli_project


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "p").mkdir()
    return write_cli_project(tmp_path / "p", SCRATCH_MANIFEST)


def _victims(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.yaml").write_text("precious\n")
    (outside / "double.yaml").write_text("precious\n")
    return outside


@pytest.mark.parametrize("command", [("apply", "-y"), ("render",)])
def test_a_components_symlink_out_of_the_output_folder_is_refused_and_nothing_outside_changes(
        project, tmp_path, command):
    outside = _victims(tmp_path)
    if command == ("render",):
        assert run("-C", str(project), "apply", "-y")[0] == 0
        (project / "build" / "components" / "double.yaml").unlink()
        (project / "build" / "components").rmdir()
    (project / "build").mkdir(exist_ok=True)
    (project / "build" / "components").symlink_to(outside)
    code, _, err = run("-C", str(project), *command)
    assert code == 1, err
    error = err.splitlines()[-1]  # after the plain progress lines of the layers built before it
    assert error.startswith("error: render.output_dir (build): build/components is a symlink to "
                            f"{outside}, outside the output folder"), err
    assert sorted(p.name for p in outside.iterdir()) == ["double.yaml", "victim.yaml"]
    assert (outside / "victim.yaml").read_text() == "precious\n"
    assert (outside / "double.yaml").read_text() == "precious\n"


def test_an_oci_layout_path_that_is_a_symlink_out_of_the_project_is_refused(project, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project / "build").mkdir()
    (project / "build" / "image").symlink_to(outside)
    code, _, err = run("-C", str(project), "apply", "-y")
    assert code == 1, err
    assert "image.repository = 'oci:build/image': build/image leads to " in err, err
    assert "through a symlink, outside the project folder" in err
    assert list(outside.iterdir()) == []
    assert not (project / "kfp.lock").exists()
