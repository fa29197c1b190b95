"""Local image storage checked with real tools: skopeo and umoci (compose_kfp.oci.layout)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from compose_kfp.oci import image as I
from compose_kfp.oci import layer as L
from compose_kfp.oci.blobs import BlobStore, atomic_write
from compose_kfp.oci.errors import DigestMismatch, LayoutError
from compose_kfp.oci.layout import OCILayout, read_docker_archive, read_docker_dir, write_docker_dir
from tests.fixtures.oci_tools import make_tree, run


@pytest.fixture
def base_layout(umoci_base, tmp_path):
    """A private copy of the umoci-written base layout (tests write into it)."""
    import shutil
    src, tag = umoci_base
    dst = tmp_path / "layout"
    shutil.copytree(src, dst)
    return OCILayout.open(dst), tag


def test_thesis_worked_example_requirements_txt(base_layout, sample_tree, umoci_unpack, skopeo_inspect):
    layout, tag = base_layout
    base = layout.read_image(tag)
    lay = L.build_layer([("requirements.txt", "/app/requirements.txt")], context=sample_tree, store=layout.store)
    m, c = I.append(base.manifest, base.config, [lay])
    layout.write_image("extended", m, c)
    assert len(m.layers) == len(base.manifest.layers) + 1
    assert c.rootfs.diff_ids == base.config.rootfs.diff_ids + [lay.diff_id]
    info = skopeo_inspect(f"oci:{layout.path}:extended")
    assert info["Layers"][-1] == lay.digest
    rootfs = umoci_unpack(layout.path, "extended")
    assert (rootfs / "app" / "requirements.txt").read_text() == "numpy==1.26.4\n"
    assert (rootfs / "etc" / "os-release").read_text() == "ID=testos\n"


def _tree(root):
    """{relative path: (kind, mode, content or link target)} of an unpacked root file system."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), open(p, "rb").read())
    return out


def test_unpacked_tree_equals_expected_files_modes_links(tmp_path, sample_tree, umoci_unpack, skopeo_inspect):
    layout = OCILayout.create(tmp_path / "out")
    lay = L.build_layer([("pkg", "/app/pkg")], context=sample_tree, store=layout.store)
    m, c = I.append(None, None, [lay], platform="linux/amd64", cmd=["/app/pkg/run.sh"])
    layout.write_image("scratch", m, c)
    assert skopeo_inspect(f"oci:{layout.path}:scratch")["Architecture"] == "amd64"
    got = _tree(umoci_unpack(layout.path, "scratch"))
    mod = (sample_tree / "pkg" / "mod.py").read_bytes()
    deep = "app/pkg/" + "d" * 60 + "/" + "e" * 60
    expected = {
        "app": ("dir", 0o755, None), "app/pkg": ("dir", 0o755, None),
        "app/pkg/__init__.py": ("file", 0o644, b""), "app/pkg/mod.py": ("file", 0o644, mod),
        "app/pkg/run.sh": ("file", 0o755, b"#!/bin/sh\necho run\n"), "app/pkg/link.py": ("link", None, "mod.py"),
        "app/pkg/sub": ("dir", 0o755, None), "app/pkg/sub/same.py": ("file", 0o644, mod),
        "app/pkg/" + "d" * 60: ("dir", 0o755, None), deep: ("dir", 0o755, None),
        deep + "/ünïcode-file.txt": ("file", 0o644, b"x"),
    }
    assert got == expected
    rootfs = umoci_unpack(layout.path, "scratch")
    assert os.stat(rootfs / "app/pkg/mod.py").st_ino == os.stat(rootfs / "app/pkg/sub/same.py").st_ino


def test_reproducible_manifest_digest_across_dirs(tmp_path, umoci_base):
    digests = []
    for i, (umask, mtime) in enumerate([(0o022, 1_000_000), (0o077, 1_600_000_000)]):
        ctx = make_tree(tmp_path / f"run{i}" / ("nested/" * i) / "ctx", umask=umask, mtime=mtime)
        layout = OCILayout.create(tmp_path / f"out{i}")
        base_src = OCILayout.open(umoci_base[0]).read_image(umoci_base[1])
        lay = L.build_layer(["pkg", "requirements.txt"], context=ctx, store=layout.store)
        m, c = I.append(base_src.manifest, base_src.config, [lay], env={"PYTHONPATH": "/pkg"})
        desc = layout.write_image("v1", m, c, sources=[base_src.store])
        digests.append((lay.digest, desc.digest))
    assert digests[0] == digests[1]


def test_several_tags_share_blobs_and_retag(base_layout, tmp_path, skopeo_inspect):
    layout, tag = base_layout
    base = layout.read_image(tag)
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    la = L.build_layer(["a.txt"], context=tmp_path, store=layout.store)
    lb = L.build_layer(["b.txt"], context=tmp_path, store=layout.store)
    ma, ca = I.append(base.manifest, base.config, [la])
    mb, cb = I.append(base.manifest, base.config, [la, lb])
    layout.write_image("a", ma, ca)
    layout.write_image("b", mb, cb)
    assert set(layout.tags()) == {tag, "a", "b"}
    blobs_before = set(layout.store.digests())
    assert skopeo_inspect(f"oci:{layout.path}:b")["Layers"][-2:] == [la.digest, lb.digest]
    # retag "a" to the "b" image: index entry replaced, nothing duplicated
    layout.write_image("a", mb, cb)
    assert [d.digest for d in layout.index().manifests].count(mb.digest) == 2
    assert len(layout.index().manifests) == 3
    assert set(layout.store.digests()) == blobs_before
    with pytest.raises(LayoutError) as info:
        layout.read_image("nope")
    assert "base" in str(info.value) and "nope" in str(info.value)
    layout.remove_tag("a")
    assert set(layout.tags()) == {tag, "b"}


def test_missing_blob_leaves_index_untouched(base_layout, tmp_path):
    layout, tag = base_layout
    base = layout.read_image(tag)
    (tmp_path / "a.txt").write_text("a")
    other = BlobStore(tmp_path / "elsewhere")
    lay = L.build_layer(["a.txt"], context=tmp_path, store=other)
    m, c = I.append(base.manifest, base.config, [lay])
    index_before = (layout.path / "index.json").read_bytes()
    with pytest.raises(LayoutError, match=lay.digest):
        layout.write_image("broken", m, c)
    assert (layout.path / "index.json").read_bytes() == index_before
    # the same write with the blob's source succeeds and copies it (verified)
    layout.write_image("ok", m, c, sources=[other])
    assert layout.store.has(lay.digest)
    with pytest.raises(DigestMismatch):
        layout.write_image("bad", m, base.config)


def test_interrupted_blob_write_leaves_no_blob(tmp_path):
    store = BlobStore(tmp_path / "s")
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.write(b"partial")
            raise RuntimeError("crash")
    assert store.digests() == []
    assert list((tmp_path / "s" / "blobs" / "sha256").iterdir()) == []


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "new" / "folder" / "index.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["index.json"]


def test_whiteout_layer_deletes_base_file(base_layout, tmp_path, umoci_unpack):
    layout, tag = base_layout
    base = layout.read_image(tag)
    lay = L.build_layer([], whiteouts=["/etc/passwd"], opaque=["/tmp"], store=layout.store)
    m, c = I.append(base.manifest, base.config, [lay])
    layout.write_image("deleted", m, c)
    rootfs = umoci_unpack(layout.path, "deleted")
    assert not (rootfs / "etc" / "passwd").exists()
    assert (rootfs / "etc" / "os-release").exists()
    assert not any(p.name.startswith(".wh.") for p in rootfs.rglob("*"))


def test_skopeo_dir_and_docker_archive_as_bases(base_layout, tmp_path, skopeo, skopeo_inspect, umoci_unpack):
    layout, tag = base_layout
    base = layout.read_image(tag)
    d = tmp_path / "dir-image"
    run(skopeo, "copy", "--format", "v2s2", f"oci:{layout.path}:{tag}", f"dir:{d}")
    from_dir = read_docker_dir(d)
    assert from_dir.manifest.family == "docker"
    assert from_dir.config.rootfs.diff_ids == base.config.rootfs.diff_ids
    archive = tmp_path / "image.tar"
    run(skopeo, "copy", f"oci:{layout.path}:{tag}", f"docker-archive:{archive}:example/base:1")
    from_tar = read_docker_archive(archive, tmp_path / "imported")
    assert from_tar.name == "docker.io/example/base:1"  # skopeo writes the normalized name
    assert read_docker_archive(archive, tmp_path / "imported", tag="example/base:1").digest == from_tar.digest
    assert from_tar.config.rootfs.diff_ids == base.config.rootfs.diff_ids
    (tmp_path / "r.txt").write_text("r")
    for name, src in (("from-dir", from_dir), ("from-tar", from_tar)):
        lay = L.build_layer(["r.txt"], context=tmp_path, store=layout.store)
        m, c = I.append(src.manifest, src.config, [lay])
        assert m.media_type == I.MEDIA_TYPE_DOCKER_MANIFEST
        out = tmp_path / f"{name}-dir"
        write_docker_dir(out, m, c, sources=[src.store, layout.store])
        info = skopeo_inspect(f"dir:{out}")
        assert info["Layers"][-1] == lay.digest and len(info["Layers"]) == len(src.manifest.layers) + 1
        assert read_docker_dir(out).manifest.digest == m.digest
        mo, co = I.append(src.manifest, src.config, [lay], family="oci")
        layout.write_image(name + "-oci", mo, co, sources=[src.store])
        assert (umoci_unpack(layout.path, name + "-oci") / "r.txt").read_text() == "r"
    with pytest.raises(LayoutError, match="nope"):
        read_docker_archive(archive, tmp_path / "imported", tag="nope")
    with pytest.raises(LayoutError, match=str(tmp_path / "x")):
        read_docker_dir(tmp_path / "x")


def test_multi_platform_index_in_layout(tmp_path, skopeo_inspect):
    layout = OCILayout.create(tmp_path / "multi")
    (tmp_path / "f").write_text("f")
    images, layers, descs = [], [], []
    for plat in ("linux/amd64", "linux/arm64/v8"):
        lay = L.build_layer(["f"], context=tmp_path, store=tmp_path / "elsewhere")
        m, c = I.append(None, None, [lay], platform=plat)
        images.append((m, c))
        layers.append(lay)
        descs.append(m.descriptor(platform=I.Platform.parse(plat)))
    index = I.Index(schema_version=2, media_type=I.MEDIA_TYPE_OCI_INDEX, manifests=descs)
    index_before = (layout.path / "index.json").read_bytes()
    # A manifest the index lists but nobody gives: nothing is tagged, index.json untouched.
    with pytest.raises(LayoutError, match=descs[1].digest):
        layout.write_index("multi", index, images[:1], layers=layers)
    assert (layout.path / "index.json").read_bytes() == index_before
    entries = layout.write_index(["multi", "v1"], index, images, layers=layers)
    assert [e.annotations[I.ANNOTATION_REF_NAME] for e in entries] == ["multi", "v1"]
    # index.json lists the index once per tag, not the per-platform manifests
    assert [(d.media_type, d.digest) for d in layout.index().manifests] == [(I.MEDIA_TYPE_OCI_INDEX, index.digest)] * 2
    assert layout.store.has(index.digest) and all(layout.store.has(d.digest) for d in descs)
    img = layout.read_image("multi", platform="linux/arm64")
    assert img.config.architecture == "arm64"
    assert skopeo_inspect(f"oci:{layout.path}:v1", "--override-arch", "arm64")["Architecture"] == "arm64"
    with pytest.raises(LayoutError, match="platform"):
        layout.read_image("multi")
    # rewriting a tag replaces its entry; the manifests already stored need not be given again
    layout.write_index("v1", index)
    assert len(layout.index().manifests) == 2
    assert json.loads((layout.path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
