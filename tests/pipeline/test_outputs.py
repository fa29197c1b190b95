"""Output-folder failures (issue 20, item 4): they fail before anything is tagged, say what is wrong, and never
leave part of the rendered set written.

A full disk is simulated by fault injection: ``os.write`` (what :class:`compose_kfp.build.staging.StagedFiles`
writes a file with) raises ``OSError(ENOSPC)`` for a file in the chosen folder, as write(2) does on a full file
system. Everything else is real: the command line in-process, an OCI layout on top of ``scratch`` (no registry),
or the CNCF registry fixture with its access log.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from compose_kfp import errors
from compose_kfp.build import staging
from compose_kfp.manifest.project import load_project
from compose_kfp.pipeline.outputs import render_warnings
from tests.fixtures.project import manifest_puts, write_project
from tests.fixtures.cli import SCRATCH_MANIFEST, run

RENDERED = ["build/components/load.yaml", "build/components/train.yaml", "build/workflow.yaml"]


def full_disk(monkeypatch, inside: str, *, after: int = 0) -> list[str]:
    """From now on, write(2) of a file whose path contains ``inside`` fails with ENOSPC, after ``after`` such
    files were written; returns the list of paths refused (filled as they are)."""
    real, written, refused = os.write, set(), []

    def write(fd, data):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if inside in path:
            if path not in written and len(written) >= after:
                refused.append(path)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written.add(path)
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    return refused


def layout_tags(root: Path) -> list[str]:
    """The tags index.json of the ``oci:build/image`` layout names (none when there is no layout)."""
    index = root / "build" / "image" / "index.json"
    if not index.is_file():
        return []
    return [m.get("annotations", {}).get("org.opencontainers.image.ref.name")
            for m in json.loads(index.read_text())["manifests"]]


def leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(f"{staging.STAGE_PREFIX}*"))


@pytest.fixture
def scratch(tmp_path) -> Path:
    """Two steps and a pipeline (three rendered files) on ``scratch``, into ``oci:build/image``."""
    return write_project(tmp_path / "proj", base="scratch", repository="oci:build/image")


def test_disk_full_on_the_second_rendered_file_tags_nothing_and_writes_no_file(scratch, monkeypatch):
    """The case as reported: build/ full; apply used to tag, write one of three files, no kfp.lock, and advise
    fixing permissions."""
    root = scratch
    refused = full_disk(monkeypatch, "/build/", after=1)
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert refused, "the fault was not injected"
    assert code == errors.RenderError.exit_code, err
    assert "no space left on device writing build/" in err and "free some space" in err, err
    assert "permissions" not in err and "Nothing was tagged" in err
    assert err.startswith("error: render.output_dir (build): ") and err.count("\n") == 1
    assert layout_tags(root) == []  # no tag (the layout is written only after every output is staged)
    assert [rel for rel in RENDERED if (root / rel).exists()] == []  # not one of three
    assert not (root / "kfp.lock").exists()
    assert leftovers(root) == []
    monkeypatch.undo()
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == 0, err
    assert len(layout_tags(root)) == 1 and all((root / rel).is_file() for rel in RENDERED)
    assert (root / "kfp.lock").is_file() and leftovers(root) == []


def test_disk_full_on_a_later_apply_keeps_the_previous_set(scratch, monkeypatch):
    root = scratch
    assert run("-C", str(root), "-q", "apply", "--yes")[0] == 0
    before = {rel: (root / rel).read_bytes() for rel in [*RENDERED, "kfp.lock", "build/image/index.json"]}
    (root / "src" / "model.py").write_text((root / "src" / "model.py").read_text() + "\n# changed\n")
    full_disk(monkeypatch, "/build/", after=1)
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == errors.RenderError.exit_code and "no space left on device" in err, err
    assert {rel: (root / rel).read_bytes() for rel in before} == before  # old tags, old files, old lock
    assert leftovers(root) == []


def test_disk_full_writing_kfp_lock_tags_nothing(scratch, monkeypatch):
    root = scratch
    full_disk(monkeypatch, "/proj/.tmp-stage-")  # only kfp.lock is staged in the project folder itself
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == errors.BuildError.exit_code, err
    assert "kfp.lock: no space left on device writing" in err and "free some space" in err, err
    assert layout_tags(root) == []
    assert [rel for rel in RENDERED if (root / rel).exists()] == [] and not (root / "kfp.lock").exists()
    assert leftovers(root) == []


def test_disk_full_pushing_to_a_registry_puts_no_tag(tmp_path, registry, base_image, monkeypatch):
    """Against the real registry: the outputs fail to stage before any manifest or tag PUT (the access log)."""
    root = write_project(tmp_path / "proj", base=base_image.reference,
                         repository=f"{registry.host}/test/app-disk-full", tags=("latest",))
    since = len(registry.requests())
    full_disk(monkeypatch, "/build/", after=2)
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == errors.RenderError.exit_code and "no space left on device writing build/" in err, err
    assert manifest_puts(registry, since) == []  # no tag, not even a manifest by digest
    assert [rel for rel in RENDERED if (root / rel).exists()] == [] and not (root / "kfp.lock").exists()
    monkeypatch.undo()
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == 0, err
    puts = manifest_puts(registry, since)
    assert "latest" in puts and all((root / rel).is_file() for rel in RENDERED)


def test_render_on_a_full_disk_writes_no_file(scratch, monkeypatch):
    root = scratch
    assert run("-C", str(root), "-q", "apply", "--yes")[0] == 0
    for rel in RENDERED:
        (root / rel).unlink()
    full_disk(monkeypatch, "/build/", after=2)
    code, _, err = run("-C", str(root), "render")
    assert code == errors.RenderError.exit_code and "no space left on device writing build/" in err, err
    assert [rel for rel in RENDERED if (root / rel).exists()] == [] and leftovers(root) == []


LONG = "s" * 300


def test_a_300_character_step_name_is_refused_by_validate_with_its_key_and_line(scratch):
    root = scratch
    text = (root / "kfp.toml").read_text().replace("[steps.train]", f"[steps.{LONG}]")
    text = text.replace('step = "train"', f'step = "{LONG}"')
    (root / "kfp.toml").write_text(text)
    line = text.splitlines().index(f"[steps.{LONG}]") + 1
    code, _, err = run("-C", str(root), "validate")
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"kfp.toml:{line}: steps.{LONG}: step name of 300 characters is too long" in err
    assert "components/<step>.yaml" in err and "allows 255" in err and "at most 250 characters" in err
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")  # apply: refused before anything is built
    assert code == 1 and f"kfp.toml:{line}: steps.{LONG}" in err
    assert not (root / "build").exists() and not (root / "kfp.lock").exists()


def test_the_name_limit_is_the_output_file_systems(scratch, monkeypatch):
    """The limit is os.pathconf(PC_NAME_MAX) of the output folder (or its nearest existing ancestor)."""
    root = scratch
    real = os.pathconf
    asked = []

    def small(path, name):
        if name == "PC_NAME_MAX":
            asked.append(str(path))
            return 9  # "load.yaml" fits exactly, "train.yaml" does not
        return real(path, name)

    monkeypatch.setattr(os, "pathconf", small)
    code, _, err = run("-C", str(root), "validate")
    assert code == 1 and "steps.train: step name of 5 characters is too long" in err and "steps.load" not in err
    assert asked and all(Path(p) in (root, *root.parents) or Path(p).is_relative_to(root) for p in asked)


def test_apply_refuses_a_name_too_long_before_anything_is_sent(scratch, monkeypatch):
    """Safety net behind validate: the workflow file name is checked (PC_NAME_MAX) before the first upload."""
    root = scratch
    real = os.pathconf

    def small(path, name):  # long enough for every step file, too short for "workflow.yaml"
        if name == "PC_NAME_MAX" and Path(path) == root / "build":
            return 12
        return real(path, name)

    (root / "build").mkdir()
    monkeypatch.setattr(os, "pathconf", small)
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == errors.RenderError.exit_code, err
    assert "cannot write build/workflow.yaml: File name too long (13 bytes; the file system allows 12)" in err
    assert not (root / "build" / "image").exists() and not (root / "kfp.lock").exists()


def test_staged_files_commit_and_discard(tmp_path):
    """StagedFiles: nothing in place before commit; discard leaves the targets as they were."""
    (tmp_path / "a.txt").write_bytes(b"old")
    with staging.StagedFiles() as staged:
        staged.add(tmp_path / "a.txt", b"new")
        staged.add(tmp_path / "sub" / "b.txt", b"b")
        assert (tmp_path / "a.txt").read_bytes() == b"old" and not (tmp_path / "sub" / "b.txt").exists()
        staged.discard()
    assert (tmp_path / "a.txt").read_bytes() == b"old" and leftovers(tmp_path) == []
    staged = staging.StagedFiles()
    staged.add(tmp_path / "a.txt", b"new")
    staged.add(tmp_path / "sub" / "b.txt", b"b")
    assert staged.commit() == [tmp_path / "a.txt", tmp_path / "sub" / "b.txt"]
    assert (tmp_path / "a.txt").read_bytes() == b"new" and (tmp_path / "sub" / "b.txt").read_bytes() == b"b"
    assert oct((tmp_path / "a.txt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert leftovers(tmp_path) == []
    with pytest.raises(OSError) as info:
        staging.StagedFiles().add(tmp_path / ("x" * 300), b"")
    assert info.value.errno == errno.ENAMETOOLONG and leftovers(tmp_path) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_oci_layout_destination_warns_that_no_cluster_can_pull_the_rendered_images(scratch_project, monkeypatch):
    """Issue 19.8: ``repository = "oci:..."`` renders ``oci:build/image@sha256:...``: plan, apply and render say so."""
    line = SCRATCH_MANIFEST.splitlines().index('repository = "oci:build/image"') + 1
    expected = (f"kfp.toml:{line}: image.repository: 'oci:build/image' is an OCI image layout on this machine, so "
                "the rendered files name the images oci:build/image@sha256:..., which no cluster can pull")
    monkeypatch.chdir(scratch_project)
    code, out, err = run("plan", "--json")
    assert code == 0, err
    assert [w[:len(expected)] for w in json.loads(out)["warnings"]] == [expected]
    code, out, err = run("apply", "-y")
    assert code == 0, err
    assert f"  ! {expected}" in out
    workflow = (scratch_project / "build" / "workflow.yaml").read_text()
    assert "image: \"oci:build/image@sha256:" in workflow
    code, out, err = run("render")
    assert code == 0 and err.startswith(f"warning: {expected}"), err
    # a registry destination renders pullable references: no warning
    (scratch_project / "kfp.toml").write_text(SCRATCH_MANIFEST.replace("oci:build/image", "127.0.0.1:5999/team/app"))
    assert render_warnings(load_project(scratch_project)) == ()
