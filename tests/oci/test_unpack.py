"""Unpacking layers into a tree: whiteouts, opaque folders, links, and refusal of paths leaving the tree.

Layers are built with :mod:`compose_kfp.oci.layer` (the same code that builds our images) or,
for hostile archives nobody should build, hand-written with :mod:`tarfile` and stored with
:func:`compose_kfp.oci.layer.compress_tar`. One test cross-checks the result against
``umoci unpack`` on the same OCI layout.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from compose_kfp.oci.blobs import BlobStore
from compose_kfp.oci.errors import DigestMismatch, LayerError
from compose_kfp.oci.image import append
from compose_kfp.oci.layer import Content, Layer, build_mapping_layer, compress_tar
from compose_kfp.oci.layout import OCILayout
from compose_kfp.oci.unpack import remove_tree, unpack_image, unpack_layer


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def tar_layer(store: BlobStore, entries: list[tuple], compression="gzip") -> Layer:
    """A layer from raw tar entries: ``(name, kind, data_or_linkname[, mode])``; kind: file, dir, sym, hard."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, *rest in entries:
            info = tarfile.TarInfo(name)
            info.mode = rest[0] if rest else (0o755 if kind == "dir" else 0o644)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = payload
            tar.addfile(info)
    buf.seek(0)
    return compress_tar(buf, store, compression)


def listing(root: Path) -> dict[str, str]:
    """``{relative path: "dir" | "file:<content>" | "link:<target>"}`` of a tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "file:" + p.read_bytes().decode()
    return out


def test_layers_apply_in_order_with_whiteouts_and_opaque_folders(store, tmp_path):
    base = build_mapping_layer({
        "/etc/app.conf": b"v1",
        "/etc/keep.conf": b"keep",
        "/opt/data/a.txt": b"a",
        "/opt/data/sub/b.txt": b"b",
        "/usr/bin/tool": Content("/usr/bin/tool", b"#!/bin/sh\n", 0o755),
        "/var/old/x": b"x",
    }, store=store)
    upper = build_mapping_layer({
        "/etc/app.conf": b"v2",
        "/opt/data/new.txt": b"new",
    }, store=store, whiteouts=["/var/old", "/etc/keep.conf"], opaque=["/opt/data"])
    root = unpack_image([base, upper], tmp_path / "tree")
    assert listing(root) == {
        "etc": "dir", "etc/app.conf": "file:v2",
        "opt": "dir", "opt/data": "dir", "opt/data/new.txt": "file:new",
        "usr": "dir", "usr/bin": "dir", "usr/bin/tool": "file:#!/bin/sh\n",
        "var": "dir",
    }
    assert stat.S_IMODE(os.stat(root / "usr/bin/tool").st_mode) == 0o755
    assert not any(n.startswith(".wh.") for n in listing(root))


def test_opaque_marker_after_the_layers_own_entries_keeps_them(store, tmp_path):
    base = tar_layer(store, [("d/", "dir", None), ("d/lower", "file", b"lower"), ("d/sub/", "dir", None),
                             ("d/sub/old", "file", b"old")])
    # Not the recommended order: the layer's own entries come before the opaque marker.
    upper = tar_layer(store, [("d/", "dir", None), ("d/sub/", "dir", None), ("d/sub/mine", "file", b"mine"),
                              ("d/.wh..wh..opq", "file", b"")])
    root = unpack_image([base, upper], tmp_path / "tree")
    assert listing(root) == {"d": "dir", "d/sub": "dir", "d/sub/mine": "file:mine"}


def test_hard_links_and_symlinks_are_kept(store, tmp_path):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "busybox").write_bytes(b"BB")
    os.link(src / "bin" / "busybox", src / "bin" / "sh")
    os.symlink("/bin/busybox", src / "bin" / "ls")  # absolute: resolves inside the image
    layer = build_mapping_layer({"/bin": src / "bin"}, store=store, rootfs=True)
    root = unpack_image([layer], tmp_path / "tree")
    a, b = os.stat(root / "bin/busybox"), os.stat(root / "bin/sh")
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    assert os.readlink(root / "bin/ls") == "/bin/busybox"


def test_a_file_replaces_a_folder_and_a_folder_replaces_a_symlink(store, tmp_path):
    base = tar_layer(store, [("x/", "dir", None), ("x/inner", "file", b"i"), ("lib", "sym", "usr/lib"),
                             ("usr/", "dir", None), ("usr/lib/", "dir", None), ("usr/lib/libc", "file", b"c")])
    upper = tar_layer(store, [("x", "file", b"now a file"), ("lib/", "dir", None), ("lib/own", "file", b"o")])
    root = unpack_image([base, upper], tmp_path / "tree")
    tree = listing(root)
    assert tree["x"] == "file:now a file" and "x/inner" not in tree
    assert tree["lib"] == "dir" and tree["lib/own"] == "file:o"
    assert tree["usr/lib/libc"] == "file:c" and "usr/lib/own" not in tree


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/../evil"])
def test_dotdot_names_are_refused(store, tmp_path, name):
    layer = tar_layer(store, [(name, "file", b"pwned")])
    with pytest.raises(LayerError, match=r"'\.\.'"):
        unpack_image([layer], tmp_path / "tree")
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "tree").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("link", ["/", "../../..", "/etc/../.."])
def test_symlinked_parents_cannot_reach_outside_the_tree(store, tmp_path, link):
    outside = tmp_path / "outside"
    outside.mkdir()
    # Layer 1 plants a symlink; layer 2 writes through it. Both must land inside the tree.
    first = tar_layer(store, [("escape", "sym", link)])
    second = tar_layer(store, [("escape/outside/pwned", "file", b"pwned")])
    root = unpack_image([first, second], tmp_path / "tree")
    assert not (outside / "pwned").exists()
    assert (root / "outside" / "pwned").read_bytes() == b"pwned"
    assert os.readlink(root / "escape") == link


def test_absolute_symlink_to_a_host_folder_is_scoped_to_the_tree(store, tmp_path):
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    first = tar_layer(store, [("etc", "sym", str(host_dir))])
    second = tar_layer(store, [("etc/passwd", "file", b"root::0:0")])
    root = unpack_image([first, second], tmp_path / "tree")
    assert list(host_dir.iterdir()) == []
    assert (root / str(host_dir).lstrip("/") / "passwd").read_bytes() == b"root::0:0"


def test_whiteout_through_a_symlink_does_not_delete_host_files(store, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_bytes(b"p")
    first = tar_layer(store, [("v", "sym", str(victim))])
    second = tar_layer(store, [("v/.wh.precious", "file", b"")])
    unpack_image([first, second], tmp_path / "tree")
    assert (victim / "precious").read_bytes() == b"p"


def test_hard_link_to_a_host_file_is_refused(store, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"s")
    layer = tar_layer(store, [("stolen", "hard", str(secret))])
    with pytest.raises(LayerError, match="hard link"):
        unpack_image([layer], tmp_path / "tree")


def test_diff_id_is_verified(store, tmp_path):
    layer = build_mapping_layer({"/a": b"a"}, store=store)
    forged = Layer(layer.media_type, layer.digest, "sha256:" + "0" * 64, layer.size, opener=layer.opener)
    with pytest.raises(DigestMismatch, match="diff_id"):
        unpack_image([forged], tmp_path / "tree")
    assert not (tmp_path / "tree").exists()


def test_uncompressed_and_zstd_layers(store, tmp_path):
    pytest.importorskip("zstandard")
    plain = tar_layer(store, [("p", "file", b"plain")], compression=None)
    zstd = tar_layer(store, [("z", "file", b"zstd")], compression="zstd")
    root = unpack_image([plain, zstd], tmp_path / "tree")
    assert listing(root) == {"p": "file:plain", "z": "file:zstd"}


def test_existing_destination_is_reused(store, tmp_path):
    layer = build_mapping_layer({"/a": b"a"}, store=store)
    root = unpack_image([layer], tmp_path / "tree")
    (root / "marker").write_bytes(b"m")
    assert unpack_image([layer], tmp_path / "tree") == root
    assert (root / "marker").exists()


def test_read_only_folders_can_be_removed(store, tmp_path):
    layer = tar_layer(store, [("ro/", "dir", None, 0o555), ("ro/f", "file", b"f", 0o444)])
    root = unpack_image([layer], tmp_path / "tree")
    remove_tree(root)
    assert not root.exists()


def test_matches_umoci_unpack(store, tmp_path, umoci_unpack):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_bytes(b"T")
    os.link(src / "bin" / "tool", src / "bin" / "tool2")
    os.symlink("tool", src / "bin" / "alias")
    base = build_mapping_layer({"/bin": src / "bin", "/etc/a": b"a", "/etc/b": b"b", "/data/x/y": b"y"},
                               store=store, rootfs=True)
    upper = build_mapping_layer({"/etc/a": b"A", "/data/z": b"z"}, store=store,
                                whiteouts=["/etc/b"], opaque=["/data"])
    manifest, config = append(None, None, [base, upper], platform="linux/amd64")
    layout = OCILayout.create(tmp_path / "layout")
    layout.write_image("t", manifest, config, layers=[base, upper])
    theirs = umoci_unpack(tmp_path / "layout", "t")
    ours = unpack_image([base, upper], tmp_path / "ours")
    assert listing(ours) == listing(theirs)
