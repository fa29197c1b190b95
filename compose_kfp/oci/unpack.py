"""Unpacking image layers into a root file system tree (OCI image spec ``layer.md``, "Applying Changesets").

:func:`unpack_layer` applies one layer (a tar, optionally gzip- or
zstd-compressed) on top of a folder; :func:`unpack_image` applies an image's
layers in order (base first) into a new folder, atomically (built under a
temporary sibling name and renamed into place).

Semantics, as containerd's ``archive.Apply`` and ``umoci unpack``:

* Whiteouts: ``.wh.<name>`` deletes ``<name>`` from the layers below;
  ``.wh..wh..opq`` in folder ``D`` hides everything the layers below put
  in ``D`` (entries of the same layer stay, wherever the marker sits in the
  tar). Whiteout entries are never written to the tree.
* An entry replaces what is at its path, except that a folder entry over an
  existing folder merges into it (mode, owner and mtime updated).
* Hard links point at a path already in the tree (this layer or below).
* Symlinks are stored exactly as written (an absolute target is meaningful
  inside the container); they are never followed while writing.

Safety: member names with ``..`` components are refused (:class:`LayerError`);
a leading ``/`` or ``./`` is dropped. The parent folders of an entry are
resolved *inside* the tree: a symlink met on the way is followed as if the
tree were ``/`` (absolute targets restart at the tree's root, ``..`` stops at
it), so no entry, hard link or whiteout can reach outside the tree whatever the
symlinks of earlier layers say. Final path components are never followed.

Ownership and devices: running as root, numeric uid/gid of each entry are
applied and character/block devices are created; otherwise owners are left to
the current user, device entries are skipped (logged), and folders keep the
owner's ``rwx`` bits so later layers can still write into them. Extended
attributes (pax ``SCHILY.xattr.*``) are not applied. Modes keep setuid,
setgid and sticky bits; mtimes come from the tar.

When a layer object has a ``diff_id`` attribute, the uncompressed bytes are
hashed as they are read and compared with it at the end (:class:`DigestMismatch`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from compose_kfp.oci.errors import DigestMismatch, LayerError

__all__ = ["LayerSource", "UnpackStats", "decompressed", "unpack_layer", "unpack_image", "remove_tree",
           "WHITEOUT_PREFIX", "WHITEOUT_OPAQUE"]

log = logging.getLogger(__name__)

#: Prefix of a whiteout entry's base name (``layer.md`` "Whiteouts").
WHITEOUT_PREFIX = ".wh."
#: Base name of an opaque whiteout entry.
WHITEOUT_OPAQUE = ".wh..wh..opq"

_MAX_SYMLINKS = 40  # as Linux's MAXSYMLINKS
_BLOCK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerSource(Protocol):
    """What :func:`unpack_image` needs of a layer: ``open()`` over the blob and its ``media_type``.

    :class:`compose_kfp.oci.layer.Layer` fits; ``diff_id`` is checked when present.
    """

    media_type: str

    def open(self) -> BinaryIO: ...


@dataclass
class UnpackStats:
    """Counts of what :func:`unpack_layer` did (entries of each kind, whiteouts applied, entries skipped)."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    whiteouts: int = 0
    skipped: int = 0
    bytes: int = 0


class _HashingReader(io.RawIOBase):
    """A read-only stream over ``raw`` that sha256-hashes every byte read through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        return n


def decompressed(stream: BinaryIO, media_type: str | None = None) -> BinaryIO:
    """``stream`` (a layer blob) as an uncompressed tar stream.

    The compression comes from ``media_type`` (``...tar+gzip``, ``...tar+zstd``,
    Docker's ``...tar.gzip``, plain ``...tar``) or, when it names none, from the
    first bytes (gzip or zstd magic). gzip uses ``isal`` when it is installed.

    Raises:
        LayerError: zstd without the ``zstandard`` module.
    """
    kind: str | None = None
    mt = (media_type or "").lower()
    if mt.endswith("+gzip") or mt.endswith(".gzip"):
        kind = "gzip"
    elif mt.endswith("+zstd") or mt.endswith(".zstd"):
        kind = "zstd"
    elif mt.endswith(".tar") or mt.endswith(".v1.tar"):
        kind = "none"
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream, _BLOCK)  # type: ignore[arg-type]
    if kind is None:
        head = buffered.peek(4)[:4]  # type: ignore[union-attr]
        kind = "gzip" if head.startswith(_GZIP_MAGIC) else "zstd" if head.startswith(_ZSTD_MAGIC) else "none"
    if kind == "gzip":
        try:
            from isal import igzip

            return igzip.IGzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
        except ImportError:  # pragma: no cover - isal is a declared dependency
            return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise LayerError("layer is zstd-compressed but the 'zstandard' module is not installed "
                             "(pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(buffered)  # type: ignore[return-value]
    return buffered  # type: ignore[return-value]


def _on_rm_error(func: Callable[..., Any], path: str, exc: BaseException) -> None:
    """``shutil.rmtree`` error handler: make the parent writable and retry once (read-only folders)."""
    parent = os.path.dirname(path)
    try:
        os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | stat.S_IRWXU)
            shutil.rmtree(path, onerror=_on_rm_error)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete ``path`` (file, symlink or folder tree), also when folders in it are read-only; missing is fine."""
    p = os.fspath(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(p, onerror=_on_rm_error)
    else:
        os.unlink(p)


class _Applier:
    """Applies the entries of one layer to ``root``."""

    def __init__(self, root: str, where: str):
        self.root = root
        self.where = where
        self.is_root = os.geteuid() == 0
        self.added: set[str] = set()  # relative paths written by this layer (and their parent folders)
        self.dir_meta: list[tuple[str, int, int, int, float]] = []  # (host path, mode, uid, gid, mtime)
        self.stats = UnpackStats()

    # ---------------------------------------------------------------- paths

    def fail(self, name: str, why: str) -> LayerError:
        return LayerError(f"{self.where}: entry {name!r}: {why}")

    def clean(self, name: str) -> list[str]:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.fail(name, "the path contains '..' and would leave the root file system; refusing the layer")
        return parts

    def resolve_dir(self, parts: list[str], name: str, *, create: bool) -> str | None:
        """Host path of the folder ``parts`` inside the tree, following symlinks scoped to the tree.

        Missing folders are created (``create``) or answer ``None``.
        """
        pending = list(reversed(parts))
        current: list[str] = []
        links = 0
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if current:
                    current.pop()
                continue
            host = os.path.join(self.root, *current, comp)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(host, 0o755)
                self.added.add("/".join([*current, comp]))
                current.append(comp)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise self.fail(name, f"more than {_MAX_SYMLINKS} symlinks on the way to its folder")
                target = os.readlink(host)
                if target.startswith("/"):
                    current = []
                pending.extend(reversed(target.split("/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                if not create:
                    return None
                raise self.fail(name, f"/{'/'.join([*current, comp])} is not a folder in the layers below")
            current.append(comp)
        return os.path.join(self.root, *current)

    def place(self, parts: list[str], name: str) -> str:
        """Host path where entry ``parts`` goes: its parent resolved in the tree plus its own name."""
        parent = self.resolve_dir(parts[:-1], name, create=True)
        assert parent is not None
        return os.path.join(parent, parts[-1])

    # ---------------------------------------------------------------- whiteouts

    def whiteout(self, parts: list[str], name: str) -> None:
        base = parts[-1]
        parent = self.resolve_dir(parts[:-1], name, create=False)
        self.stats.whiteouts += 1
        if parent is None:
            return
        if base == WHITEOUT_OPAQUE:
            self._opaque(parent, "/".join(parts[:-1]))
            return
        target = base[len(WHITEOUT_PREFIX):]
        if not target or target in (".", ".."):
            raise self.fail(name, "a whiteout must name a file")
        rel = "/".join([*parts[:-1], target])
        if rel in self.added:
            log.debug("%s: whiteout %s names a path the same layer adds; kept", self.where, rel)
            return
        remove_tree(os.path.join(parent, target))

    def _opaque(self, host_dir: str, rel_dir: str) -> None:
        """Remove everything under ``host_dir`` that this layer did not add."""
        try:
            entries = list(os.scandir(host_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if rel in self.added:
                if entry.is_dir(follow_symlinks=False):
                    self._opaque(entry.path, rel)
                continue
            remove_tree(entry.path)

    # ---------------------------------------------------------------- entries

    def _clear(self, path: str, keep_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if keep_dir and stat.S_ISDIR(st.st_mode):
            return
        remove_tree(path)

    def _meta(self, path: str, member: tarfile.TarInfo, *, is_dir: bool = False) -> None:
        mode = member.mode & 0o7777
        if is_dir:
            if not self.is_root:
                mode |= stat.S_IRWXU
            self.dir_meta.append((path, mode, member.uid, member.gid, member.mtime))
            return
        if self.is_root:
            os.lchown(path, member.uid, member.gid)
        if not member.issym():
            os.chmod(path, mode)
        try:
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
        except (OSError, NotImplementedError):
            pass

    def apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = self.clean(name)
        if not parts:
            return  # the root folder itself
        rel = "/".join(parts)
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, name)
            return
        path = self.place(parts, name)
        if member.isdir():
            self._clear(path, keep_dir=True)
            if not os.path.isdir(path) or os.path.islink(path):
                os.mkdir(path, 0o755)
            self.added.add(rel)
            self._meta(path, member, is_dir=True)
            self.stats.dirs += 1
            return
        if member.islnk():
            link_parts = self.clean(member.linkname)
            if not link_parts:
                raise self.fail(name, "a hard link to the root folder")
            link_dir = self.resolve_dir(link_parts[:-1], name, create=False)
            source = os.path.join(link_dir, link_parts[-1]) if link_dir else None
            if source is None or not os.path.lexists(source) or os.path.isdir(source) and not os.path.islink(source):
                raise self.fail(name, f"hard link to {member.linkname!r}, which is not a file in the tree")
            if source == path:
                self.added.add(rel)
                return
            self._clear(path, keep_dir=False)
            os.link(source, path, follow_symlinks=False)
            self.added.add(rel)
            self.stats.hardlinks += 1
            return
        self._clear(path, keep_dir=False)
        if member.issym():
            os.symlink(member.linkname, path)
            self.stats.symlinks += 1
        elif member.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                src = tar.extractfile(member)
                assert src is not None
                shutil.copyfileobj(src, out, _BLOCK)
            self.stats.files += 1
            self.stats.bytes += member.size
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        elif member.ischr() or member.isblk():
            if not self.is_root:
                log.debug("%s: skipping device %s (not running as root)", self.where, rel)
                self.stats.skipped += 1
                return
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            log.warning("%s: skipping entry %s of unsupported tar type %r", self.where, rel, member.type)
            self.stats.skipped += 1
            return
        self.added.add(rel)
        self._meta(path, member)

    def finish(self) -> None:
        """Apply folder modes, owners and mtimes, deepest folders first."""
        for path, mode, uid, gid, mtime in sorted(self.dir_meta, key=lambda m: m[0].count(os.sep), reverse=True):
            if self.is_root:
                os.lchown(path, uid, gid)
            os.chmod(path, mode)
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def unpack_layer(stream: BinaryIO, root: str | os.PathLike[str], *, media_type: str | None = None,
                 diff_id: str | None = None, name: str = "layer") -> UnpackStats:
    """Apply the layer blob read from ``stream`` on top of the folder ``root`` (see the module docstring).

    Args:
        stream: the blob as stored (compressed or not); read once, to its end.
        root: an existing folder holding the layers below (empty for the first layer).
        media_type: the layer's media type (picks the decompressor; sniffed when absent).
        diff_id: ``sha256:<hex>`` of the uncompressed tar; checked when given.
        name: how to name the layer in error messages (e.g. its digest).

    Returns:
        counts of what was written.

    Raises:
        LayerError: a damaged tar, a ``..`` path, a hard link to nothing, an entry under
            something that is not a folder.
        DigestMismatch: the uncompressed bytes do not hash to ``diff_id``.
    """
    root_s = os.path.realpath(os.fspath(root))
    if not os.path.isdir(root_s):
        raise LayerError(f"{name}: unpack target {root_s} is not a folder")
    hashing = _HashingReader(decompressed(stream, media_type))
    applier = _Applier(root_s, name)
    try:
        with tarfile.open(fileobj=io.BufferedReader(hashing, _BLOCK), mode="r|") as tar:  # type: ignore[arg-type]
            for member in tar:
                applier.apply(tar, member)
            # Read the end-of-archive blocks and any padding, so the whole tar is hashed.
            while tar.fileobj.read(_BLOCK):  # type: ignore[union-attr]
                pass
    except tarfile.TarError as e:
        raise LayerError(f"{name}: not a valid tar layer: {e}") from None
    except (EOFError, OSError) as e:
        if isinstance(e, LayerError):
            raise
        raise LayerError(f"{name}: reading or writing the layer failed: {e}") from None
    applier.finish()
    if diff_id is not None:
        got = "sha256:" + hashing.hash.hexdigest()
        if got != diff_id:
            raise DigestMismatch(f"{name}: uncompressed layer hashes to {got}, expected diff_id {diff_id}")
    log.debug("%s: %s", name, applier.stats)
    return applier.stats


def unpack_image(layers: Iterable[LayerSource], dest: str | os.PathLike[str], *, check_diff_ids: bool = True) -> Path:
    """Unpack ``layers`` (base first) into the new folder ``dest`` and return it.

    The tree is built in a temporary sibling folder and renamed to ``dest`` when
    every layer is applied, so ``dest`` is either absent or complete. When
    ``dest`` already exists it is returned as it is (a cache hit). Each layer's
    ``digest`` (if it has one) names it in messages; ``diff_id`` is verified when
    ``check_diff_ids``.

    Raises:
        LayerError, DigestMismatch: see :func:`unpack_layer`; the temporary folder is removed.
    """
    target = Path(dest)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(mode=0o755)
    try:
        for i, layer in enumerate(layers):
            label = getattr(layer, "digest", None) or f"layer {i}"
            with layer.open() as blob:
                unpack_layer(blob, tmp, media_type=layer.media_type,
                             diff_id=getattr(layer, "diff_id", None) if check_diff_ids else None, name=label)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            remove_tree(tmp)  # another process finished the same tree first
    except BaseException:
        remove_tree(tmp)
        raise
    return target
