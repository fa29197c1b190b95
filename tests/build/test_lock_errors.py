"""A damaged or edited kfp.lock is a clear error naming kfp.lock (issue 20, item 5).

The cases as reported: a binary kfp.lock (was ``internal error: UnicodeDecodeError``), a truncated one, and a
digest edited into it (was rendered without a check; ``run`` then failed on the pull). The project is on
``scratch`` into ``oci:build/image`` (no registry needed); the command line runs in-process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compose_kfp import errors
from compose_kfp.build.lock import check_lock, dumps, read_lock
from tests.fixtures.project import write_project
from tests.fixtures.cli import run

RENDERED = ["build/components/load.yaml", "build/components/train.yaml", "build/workflow.yaml"]
OTHER = "sha256:" + "ab" * 32  # a well-formed digest of no image here


@pytest.fixture
def applied(tmp_path) -> Path:
    """A project applied once (kfp.lock, the layout and the three rendered files written)."""
    root = write_project(tmp_path / "proj", base="scratch", repository="oci:build/image")
    code, _, err = run("-C", str(root), "-q", "apply", "--yes")
    assert code == 0, err
    return root


def outputs(root: Path) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in RENDERED if (root / rel).exists()}


def edit(root: Path, change) -> str:
    """Apply ``change(lock)`` to kfp.lock, write it back as apply would; return the new text."""
    lock = json.loads((root / "kfp.lock").read_text())
    change(lock)
    text = dumps(lock)
    (root / "kfp.lock").write_text(text)
    return text


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def assert_clear(err: str, code: int, expected_code: int = errors.ConfigError.exit_code) -> None:
    assert code == expected_code, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "kfp.lock" in err and "internal error" not in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["render"], ["plan"], ["-q", "apply", "--yes"]])
def test_a_binary_kfp_lock_is_a_clear_error(applied, command):
    root = applied
    before = outputs(root)
    (root / "kfp.lock").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x80binary")
    code, _, err = run("-C", str(root), *command)
    assert_clear(err, code)
    assert "not UTF-8 text (byte 0)" in err and "delete it and run `compose-kfp apply`" in err
    assert outputs(root) == before


def test_a_truncated_kfp_lock_is_a_clear_error(applied):
    root = applied
    before = outputs(root)
    text = (root / "kfp.lock").read_text()
    (root / "kfp.lock").write_text(text[: len(text) // 2])
    code, _, err = run("-C", str(root), "render")
    assert_clear(err, code)
    assert "not valid JSON" in err and "delete it and run `compose-kfp apply`" in err
    assert outputs(root) == before


def test_a_malformed_digest_is_refused_with_its_line_and_key(applied):
    root = applied
    before = outputs(root)
    text = edit(root, lambda lock: lock["images"]["main"].update(digest="sha256:not-a-digest"))
    code, _, err = run("-C", str(root), "render")
    assert_clear(err, code)
    line = line_of(text, '"sha256:not-a-digest"')
    assert f"kfp.lock:{line}: images.main.digest: 'sha256:not-a-digest' is not a digest" in err, err
    assert "fix the entry, or delete kfp.lock and run `compose-kfp apply`" in err
    assert outputs(root) == before


def test_a_valid_looking_digest_of_another_image_is_refused(applied):
    """The digest no longer matches the manifest digest recorded beside it: refused before rendering (or a run)."""
    root = applied
    before = outputs(root)
    text = edit(root, lambda lock: lock["images"]["main"].update(digest=OTHER))
    code, _, err = run("-C", str(root), "render")
    assert_clear(err, code)
    assert f"kfp.lock:{line_of(text, OTHER)}: images.main.digest: {OTHER} is not the digest of the image's " \
           "manifest recorded beside it" in err, err
    assert outputs(root) == before
    code, _, err = run("-C", str(root), "run", "--local")  # refused before any image is looked for
    assert_clear(err, code)
    assert "images.main.digest" in err
    for command in (["plan"], ["-q", "apply", "--yes"]):  # read_lock refuses it for plan and apply too
        code, _, err = run("-C", str(root), *command)
        assert_clear(err, code)
        assert "images.main.digest" in err and "is not the digest of the image's manifest" in err, err
    assert (root / "kfp.lock").read_text() == text


def test_a_consistent_edit_is_caught_by_the_layout(applied):
    """Image and manifest digests both edited: the oci: layout holds no such image (stale: run apply)."""
    root = applied

    def both(lock):
        image = lock["images"]["main"]
        image["digest"] = OTHER
        for plat in image["platforms"].values():
            plat["manifest"] = OTHER

    edit(root, both)
    code, _, err = run("-C", str(root), "render")
    assert_clear(err, code, errors.StaleError.exit_code)
    assert f"images.main.digest: {OTHER} is not in the image layout" in err and "compose-kfp apply" in err


@pytest.mark.parametrize(("change", "key", "expected"), [
    (lambda lock: lock["images"]["main"].update(digest=5), "images.main.digest", "got a number (5)"),
    (lambda lock: lock["images"]["main"].update(tags="latest"), "images.main.tags", "expected a list of strings"),
    (lambda lock: lock["images"]["main"]["platforms"]["linux/amd64"].update(config="sha256:" + "A" * 64),
     'images.main.platforms."linux/amd64".config', "is not a digest"),
    (lambda lock: lock["images"]["main"]["platforms"]["linux/amd64"]["layers"][0].update(digest="md5:x"),
     'images.main.platforms."linux/amd64".layers.0.digest', "is not a digest"),
    (lambda lock: lock["rendered"].update({"build/workflow.yaml": "sha256:123"}), 'rendered."build/workflow.yaml"',
     "is not a digest"),
    (lambda lock: lock.update(components={"echo": "ghcr.io/acme/echo:1.0"}), "components.echo",
     "is not pinned by digest"),
    (lambda lock: lock.update(images=[]), "images", "expected an object, got a list"),
])
def test_wrong_types_and_digests_name_the_key(applied, change, key, expected):
    root = applied
    edit(root, change)
    code, _, err = run("-C", str(root), "render")
    assert_clear(err, code)
    assert f": {key}: " in err and expected in err, err


@pytest.mark.parametrize("version", ['"1"', "true", "2"])
def test_a_wrong_version_is_refused(tmp_path, version):
    (tmp_path / "kfp.lock").write_text(f'{{"version": {version}, "images": {{}}}}')
    with pytest.raises(errors.ConfigError, match="not a kfp.lock of version 1"):
        read_lock(tmp_path)


def test_every_lock_apply_writes_passes_the_check(applied):
    """The check accepts what apply writes (and the hand-written minimal locks other tests use)."""
    root = applied
    assert read_lock(root) == json.loads((root / "kfp.lock").read_text())
    check_lock({"version": 1, "images": {}, "components": {"a": "registry.example:5000/x@sha256:" + "0" * 64}})
    code, _, err = run("-C", str(root), "render")
    assert code == 0, err


@pytest.mark.parametrize("where", ["images", "image", "platforms", "layers", "base"])
@pytest.mark.parametrize("command", [["plan"], ["-q", "apply", "--yes"], ["render"]])
def test_a_null_table_in_kfp_lock_is_refused_with_its_key(applied, where, command):
    def change(lock):
        image = lock["images"]["main"]
        platform = next(iter(image["platforms"].values()))
        {"images": lambda: lock.update(images=None), "image": lambda: lock["images"].update(main=None),
         "platforms": lambda: image.update(platforms=None), "layers": lambda: platform.update(layers=None),
         "base": lambda: lock.update(base=None)}[where]()

    root = applied
    edit(root, change)
    code, _, err = run("-C", str(root), *command)
    assert_clear(err, code)
    assert "expected an object, got null" in err or "expected a list, got null" in err, err
