"""kfp.lock: format, stability, atomic writes, --frozen checks."""

from __future__ import annotations

import json

import pytest

from compose_kfp.errors import ConfigError, StaleError
from compose_kfp.build.lock import check_frozen, diff_locks, dumps, lock_from_plan, read_lock, write_lock
from compose_kfp.planner import plan
from tests.fixtures.planning import image_spec, layers_v, observed


def _lock():
    p = plan([image_spec()], observed(), project="demo", root="/p")
    return p, lock_from_plan(p, {"build/components/train.yaml": "ab" * 32})


def test_lock_content():
    p, lock = _lock()
    ip = p.image("main")
    entry = lock["images"]["main"]
    assert entry["digest"] == ip.after and entry["repository"] == "reg:5000/app"
    assert entry["tags"] == list(ip.tags) and entry["steps"] == ["train"]
    plat = entry["platforms"]["linux/amd64"]
    assert plat["manifest"] == ip.platforms[0].manifest_after and plat["config"] == ip.platforms[0].config_after
    assert plat["base_layers"] == 1 and plat["base"] == ip.platforms[0].base.after
    assert [ly["name"] for ly in plat["layers"]] == ["runtime", "deps", "src"]
    # requirements keys are portable and recorded; file-layer keys (inodes, mtimes) are not
    assert "key" in plat["layers"][1] and "key" not in plat["layers"][0] and "key" not in plat["layers"][2]
    assert lock["base"]["platforms"]["linux/amd64"]["digest"] == ip.platforms[0].base.after
    assert lock["rendered"] == {"build/components/train.yaml": "sha256:" + "ab" * 32}


def test_lock_unknown_digest_gives_none():
    from compose_kfp.build.state import LayerState

    unknown = LayerState("deps", "requirements", "sha256:" + "1" * 64, None, None, None, "x", local=False)
    p = plan([image_spec()], observed(layers=(layers_v()[0], unknown, layers_v()[2])))
    assert lock_from_plan(p, {}) is None


def test_write_is_stable_and_atomic(tmp_path):
    _, lock = _lock()
    path = write_lock(tmp_path, lock)
    text = path.read_text()
    assert text == dumps(lock) and text.endswith("\n")
    assert list(json.loads(text)) == sorted(json.loads(text))
    write_lock(tmp_path, json.loads(text))
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["kfp.lock"]  # no temporary file left
    assert read_lock(tmp_path) == lock


def test_read_missing_and_corrupt(tmp_path):
    assert read_lock(tmp_path) is None
    (tmp_path / "kfp.lock").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_lock(tmp_path)
    (tmp_path / "kfp.lock").write_text('{"version": 7}')
    with pytest.raises(ConfigError, match="version 1"):
        read_lock(tmp_path)


def test_diff_and_frozen(tmp_path):
    _, lock = _lock()
    changed = json.loads(json.dumps(lock))
    changed["images"]["main"]["digest"] = "sha256:" + "f" * 64
    assert diff_locks(lock, changed) == ["images.main.digest"]
    assert diff_locks(lock, lock) == []
    check_frozen(tmp_path, lock, json.loads(json.dumps(lock)))
    with pytest.raises(StaleError, match="images.main.digest would change"):
        check_frozen(tmp_path, lock, changed)
    with pytest.raises(StaleError, match="needs a kfp.lock"):
        check_frozen(tmp_path, None, lock)
    with pytest.raises(StaleError, match="rebuilt"):
        check_frozen(tmp_path, lock, None)


def test_failed_write_leaves_the_old_lock_and_no_temporary_file(tmp_path, monkeypatch):
    """A rename that fails (kfp.lock immutable, say) -> BuildError naming kfp.lock; old file kept, no temp file."""
    import os

    from compose_kfp.errors import BuildError

    _, lock = _lock()
    write_lock(tmp_path, lock)
    before = (tmp_path / "kfp.lock").read_bytes()
    changed = json.loads(json.dumps(lock))
    changed["images"]["main"]["digest"] = "sha256:" + "f" * 64

    def refuse(src, dst):
        raise PermissionError(1, "Operation not permitted", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(BuildError, match=r"kfp.lock: cannot write .*kfp.lock: Operation not permitted"):
        write_lock(tmp_path, changed)
    monkeypatch.undo()
    assert (tmp_path / "kfp.lock").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["kfp.lock"]


def test_lock_in_a_folder_that_is_a_file_is_a_clear_error(tmp_path):
    from compose_kfp.errors import BuildError

    _, lock = _lock()
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match="kfp.lock: cannot write"):
        write_lock(tmp_path / "file", lock)
