"""``compose-kfp gc`` (:mod:`compose_kfp.build.gc`): prune ``.compose-kfp/`` to what kfp.lock and the next plan need,
against the real CNCF registry (fixture ``registry``)."""

from __future__ import annotations

import json
import os
import time

import pytest

from compose_kfp import cli  # noqa: F401 - registers the commands
from compose_kfp.build.apply import apply_plan
from compose_kfp.build.gc import collect_garbage
from compose_kfp.build.plan import plan_project
from compose_kfp.build.projectlock import project_lock
from compose_kfp.cli import main
from compose_kfp.errors import BusyError
from compose_kfp.manifest.project import load_project
from compose_kfp.oci.auth import StaticKeychain
from compose_kfp.oci.image import Manifest
from compose_kfp.oci.registry import RegistryClient
from tests.fixtures.project import uploads

pytestmark = pytest.mark.registry

BIG = 2_000_000  # bytes of the data file edited between applies (incompressible)


def _apply(root, **kw):
    project = load_project(root)
    return apply_plan(project, plan_project(project, **kw))


def _layer(result, name):
    return next(ly for ly in result.plan.image("main").platforms[0].layers if ly.name == name)


def _blob(root, digest):
    return root / ".compose-kfp" / "blobs" / "sha256" / digest.split(":", 1)[1]


def _state_files(root):
    state = root / ".compose-kfp"
    return sorted(str(p.relative_to(state)) for p in state.rglob("*") if p.is_file() or p.is_symlink())


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _edited_twice(project_factory):
    """A project applied, its data file replaced by 2 MB of new bytes and applied again: (root, first, second)."""
    root = project_factory()
    (root / "data" / "big.bin").write_bytes(os.urandom(BIG))
    first = _apply(root)
    (root / "data" / "big.bin").write_bytes(os.urandom(BIG))
    second = _apply(root)
    return root, first, second


def test_gc_removes_the_old_layer_and_keeps_what_the_lock_and_inputs_need(project_factory, registry, base_image,
                                                                          capsys):
    root, first, second = _edited_twice(project_factory)
    old, new = _layer(first, "data"), _layer(second, "data")
    assert old.after != new.after and _blob(root, old.after).is_file()
    before = _state_files(root)

    dry = collect_garbage(load_project(root), dry_run=True)
    assert _state_files(root) == before  # --dry-run removes nothing
    paths = {e.path for e in dry.removed}
    hex_old = old.after.split(":", 1)[1]
    assert f".compose-kfp/blobs/sha256/{hex_old}" in paths
    assert f".compose-kfp/cache/files/{hex_old}.json" in paths
    assert any(e.kind == "layer-cache" for e in dry.removed)  # the old layer's record
    assert any(e.kind == "fingerprint" for e in dry.removed)  # the old inputs' fingerprint
    assert dry.freed >= BIG and dry.freed == sum(e.size for e in dry.removed)

    done = collect_garbage(load_project(root))
    assert (done.removed, done.freed, done.kept) == (dry.removed, dry.freed, dry.kept) and not done.dry_run
    assert not _blob(root, old.after).exists()
    assert len(_state_files(root)) == len(before) - len(done.removed)
    # Every layer blob kfp.lock names is still there, and so is the base config (the plan reads it locally).
    lock = json.loads((root / "kfp.lock").read_text())
    for layer in lock["images"]["main"]["platforms"]["linux/amd64"]["layers"]:
        assert _blob(root, layer["digest"]).is_file()
    client = RegistryClient(registry.host, StaticKeychain({}))
    try:
        raw, mt, _ = client.get_manifest(base_image.repository.split("/", 1)[1], base_image.tag)
    finally:
        client.close()
    assert _blob(root, Manifest.from_bytes(raw, mt).config.digest).is_file()

    # A second gc finds nothing; gc then plan rebuilds nothing, downloads nothing; apply uploads nothing.
    again = collect_garbage(load_project(root))
    assert again.removed == () and again.kept == done.kept
    events = []
    since = len(registry.requests())
    p = plan_project(load_project(root), progress=lambda ev, name, d, t: events.append(ev))
    assert not p.has_changes and not p.needs_build and "build" not in events
    assert not [r for r in registry.requests()[since:] if r.method == "GET" and "/blobs/" in r.path]
    since = len(registry.requests())
    code, out, _ = _run(["-C", str(root), "apply", "--yes"], capsys)
    assert code == 0 and "Nothing to do: nothing uploaded." in out
    assert uploads(registry, since) == []


def test_gc_state_left_after_gc_is_exactly_what_plan_uses(project_factory, registry):
    """A plan right after gc writes no new cache entry: everything it looked up was kept."""
    root, _, _ = _edited_twice(project_factory)
    collect_garbage(load_project(root))
    kept = _state_files(root)
    assert not plan_project(load_project(root)).has_changes
    assert _state_files(root) == kept


def test_cli_gc_text_json_dry_run_and_quiet(project_factory, registry, capsys):
    root, first, _ = _edited_twice(project_factory)
    code, out, _ = _run(["-C", str(root), "gc", "--dry-run"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    hex_old = _layer(first, "data").after.split(":", 1)[1]
    assert f"would remove .compose-kfp/blobs/sha256/{hex_old} (blob, 2.0 MB)" in lines
    assert lines[-1].startswith("Would remove ") and "nothing was removed: --dry-run" in lines[-1]
    code, out, _ = _run(["-C", str(root), "gc", "--dry-run", "--json"], capsys)
    dry = json.loads(out)
    assert code == 0 and dry["dry_run"] and dry["freed"] >= BIG and dry["state_dir"]
    assert _blob(root, _layer(first, "data").after).is_file()
    code, out, _ = _run(["-C", str(root), "-q", "gc"], capsys)
    assert code == 0 and out == ""
    assert not _blob(root, _layer(first, "data").after).exists()
    code, out, _ = _run(["-C", str(root), "gc"], capsys)
    assert code == 0 and out.startswith("Nothing to remove in .compose-kfp; kept ")
    code, out, _ = _run(["-C", str(root), "gc", "--json"], capsys)
    doc = json.loads(out)
    assert doc["removed"] == [] and doc["freed"] == 0 and doc["kept"] == dry["kept"]


def test_gc_removed_equals_dry_run_numbers_in_the_cli(project_factory, registry, capsys):
    root, _, _ = _edited_twice(project_factory)
    _, out, _ = _run(["-C", str(root), "gc", "--dry-run", "--json"], capsys)
    dry = json.loads(out)
    _, out, _ = _run(["-C", str(root), "gc", "--json"], capsys)
    done = json.loads(out)
    assert (done["removed"], done["freed"], done["kept"]) == (dry["removed"], dry["freed"], dry["kept"])


def test_gc_without_state_folder_has_nothing_to_remove(project_factory, capsys):
    root = project_factory()
    code, out, _ = _run(["-C", str(root), "gc"], capsys)
    assert code == 0 and out.startswith("Nothing to remove: ") and "no .compose-kfp folder" in out
    assert not (root / ".compose-kfp").exists()  # gc created nothing
    code, out, _ = _run(["-C", str(root), "gc", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"removed": [], "freed": 0, "kept": 0, "skipped": [],
                                             "dry_run": False, "state_dir": False}


def test_gc_never_follows_a_symlink_out_of_the_state_folder(project_factory, registry, tmp_path, capsys):
    root = project_factory()
    _apply(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / ("e" * 64)
    secret.write_bytes(b"not yours")
    (outside / ("f" * 64 + ".key")).write_text("0" * 64)
    state = root / ".compose-kfp"
    (state / "blobs" / "sha256" / ("e" * 64)).symlink_to(secret)         # an unreferenced "blob"
    (state / "cache" / "files" / ("d" * 64 + ".json")).symlink_to(secret)  # an unreferenced record
    fps = state / "cache" / "fingerprints"
    for p in fps.iterdir():
        p.unlink()
    fps.rmdir()
    fps.symlink_to(outside, target_is_directory=True)                    # a whole cache folder
    code, out, err = _run(["-C", str(root), "gc"], capsys)
    assert code == 0
    assert secret.read_bytes() == b"not yours" and (outside / ("f" * 64 + ".key")).is_file()
    assert (state / "blobs" / "sha256" / ("e" * 64)).is_symlink() and fps.is_symlink()
    for link in ("blobs/sha256/" + "e" * 64, "cache/files/" + "d" * 64 + ".json", "cache/fingerprints"):
        assert f"left alone: .compose-kfp/{link} (a symbolic link" in err
    assert not _plan_changes(root)


def _plan_changes(root):
    return plan_project(load_project(root)).has_changes


def test_gc_refuses_a_state_folder_that_is_a_symlink(project_factory, tmp_path, capsys):
    root = project_factory()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "blobs" / "sha256").mkdir(parents=True)
    (elsewhere / "blobs" / "sha256" / ("a" * 64)).write_bytes(b"x")
    (root / ".compose-kfp").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = _run(["-C", str(root), "gc"], capsys)
    assert code == 3 and "is not a folder (a symbolic link or a file)" in err
    assert (elsewhere / "blobs" / "sha256" / ("a" * 64)).is_file()


def test_gc_removes_old_temporary_files_and_keeps_recent_ones(project_factory, registry):
    root = project_factory()
    _apply(root)
    blobs = root / ".compose-kfp" / "blobs" / "sha256"
    old, recent, part = blobs / ".tmp-abc123", blobs / ".tmp-def456", blobs / (("1" * 64) + ".x1.part")
    for p in (old, recent, part):
        p.write_bytes(b"partial")
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    os.utime(part, (long_ago, long_ago))
    result = collect_garbage(load_project(root))
    assert {e.path.rsplit("/", 1)[1] for e in result.removed if e.kind == "temp"} == {old.name, part.name}
    assert recent.is_file() and not old.exists() and not part.exists()


def test_gc_waits_for_the_project_lock(project_factory, registry):
    root = project_factory()
    _apply(root)
    lk = project_lock(root)
    lk.acquire()
    try:
        with pytest.raises(BusyError):
            collect_garbage(load_project(root), lock_timeout=0.2)
    finally:
        lk.release()
    assert collect_garbage(load_project(root)).removed == ()


def test_gc_keeps_a_docker_archive_base_import(project_factory, registry):
    from tests.fixtures.oci_tools import write_docker_save

    root = project_factory(base="docker-archive:base.tar")
    write_docker_save(root / "base.tar", {"etc/os-release": b"ID=archive\n"})
    _apply(root)
    archives = sorted((root / ".compose-kfp" / "cache" / "archives").glob("*.json"))
    assert len(archives) == 1
    stale = archives[0].with_name("0" * 64 + ".json")
    stale.write_bytes(archives[0].read_bytes())  # the record of an older version of the archive
    result = collect_garbage(load_project(root))
    assert [e.path for e in result.removed] == [f".compose-kfp/cache/archives/{stale.name}"]
    before = _state_files(root)
    assert not _plan_changes(root)
    assert _state_files(root) == before  # not imported again


def test_gc_keeps_the_locked_requirements_layer_and_drops_the_replaced_one(project_factory, registry, make_wheel,
                                                                           simple_index, tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinylib", "1.0", modules={"tinylib/__init__.py": "X = 1\n"})
    make_wheel(wheels, "tinylib", "1.1", modules={"tinylib/__init__.py": "X = 2\n"})
    index = simple_index(wheels)
    root = project_factory(requirements="tinylib==1.0\n", extra_image=f'index_url = "{index.url}"\n')
    old = _layer(_apply(root), "deps")
    (root / "requirements.txt").write_text("tinylib==1.1\n")
    new = _layer(_apply(root), "deps")
    assert old.after != new.after
    result = collect_garbage(load_project(root))
    deps_removed = [e.path for e in result.removed if e.kind == "deps-cache"]
    hex_old = old.key.split(":", 1)[1]
    assert deps_removed == [f".compose-kfp/cache/deps/{hex_old[:2]}/{hex_old}.json"]
    assert not _blob(root, old.after).exists() and _blob(root, new.after).is_file()
    hex_new = new.key.split(":", 1)[1]
    if hex_old[:2] != hex_new[:2]:
        assert not (root / ".compose-kfp" / "cache" / "deps" / hex_old[:2]).exists()  # emptied fan-out folder
    assert (root / ".compose-kfp" / "cache" / "deps" / hex_new[:2] / f"{hex_new}.json").is_file()
    p = plan_project(load_project(root))
    assert not p.has_changes and not p.needs_build


def test_gc_drops_the_config_of_a_base_that_moved_and_keeps_the_new_one(project_factory, registry, base_image):
    from tests.fixtures.project import push_base_image

    root = project_factory()
    _apply(root)
    store = root / ".compose-kfp" / "blobs" / "sha256"
    configs_before = {p.name for p in store.iterdir()}
    repo = base_image.repository.split("/", 1)[1]
    push_base_image(registry, repo, files={"/etc/os-release": b"ID=tiny\nVERSION_ID=2\n"})
    _apply(root)
    client = RegistryClient(registry.host, StaticKeychain({}))
    try:
        raw, mt, _ = client.get_manifest(repo, base_image.tag)
    finally:
        client.close()
    new_config = Manifest.from_bytes(raw, mt).config.digest.split(":", 1)[1]
    assert new_config not in configs_before and (store / new_config).is_file()
    result = collect_garbage(load_project(root))
    removed = {e.path.rsplit("/", 1)[1] for e in result.removed if e.kind == "blob"}
    assert (store / new_config).is_file()
    assert len(removed) == 1 and removed < configs_before  # the old base config (no layer changed)
    assert not plan_project(load_project(root)).has_changes
