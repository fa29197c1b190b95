"""Reproducible image layers (OCI image spec ``layer.md``; Docker image spec v1.2 "layers").

A layer is a tar archive of a file-system changeset, usually compressed. This
module turns local files into such archives, byte for byte reproducibly:

* entries sorted by path component (a directory's whiteouts before its other
  children, as ``layer.md`` "Whiteouts" recommends), every parent directory
  written explicitly, names relative (``opt/app/x.py``, directories with a
  trailing ``/``), POSIX pax format (pax records only where ustar cannot hold a
  field: long or non-ASCII names, files of 8 GiB or more);
* uid/gid 0 and empty uname/gname, modes 0755 (directories and files with any
  execute bit) or 0644 (other files), symlinks 0777, mtime ``SOURCE_DATE_EPOCH``
  (0 by default); the ``rootfs`` mode keeps owners and full permission bits;
* hard links written once (the first path in sort order) and linked after;
  symlinks kept as links; gzip with no file name and mtime 0.

Building happens in three steps that other code can call separately:

1. :func:`plan_layer` walks the inputs with ``lstat`` only and returns a
   :class:`LayerPlan`: the sorted entries plus a :attr:`LayerPlan.key` over
   every input's path, size, mtime_ns, inode and mode and the options. This is
   cheap (no file is read), so a planner can ask :class:`LayerCache` whether the
   layer is already built.
2. :func:`write_layer` streams the plan once: one thread reads files, frames
   them as tar and hashes the tar (``diff_id``); a second compresses, hashes the
   compressed bytes (``digest``) and writes them to a temporary file of a
   :class:`~compose_kfp.oci.blobs.BlobStore`, renamed to ``blobs/sha256/<hex>``
   at the end. Memory stays bounded (a few MiB of queued chunks).
3. The result is a :class:`Layer`, an immutable value.

:func:`build_layer` does all three.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import posixpath
import queue
import stat
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, Union

if TYPE_CHECKING:  # imported where an ignore spec is made (a cached layer needs none)
    import pathspec

from compose_kfp.oci.blobs import BlobStore
from compose_kfp.oci.errors import LayerError
from compose_kfp.oci.image import (
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
    Descriptor,
)

try:  # isal is a declared dependency; zlib keeps the module usable without it.
    from isal import isal_zlib as _gzip_impl

    GZIP_IMPL = "isal"
    DEFAULT_GZIP_LEVEL = 1
except ImportError:  # pragma: no cover - exercised only where isal is missing
    _gzip_impl = zlib  # type: ignore[assignment]
    GZIP_IMPL = "zlib"
    DEFAULT_GZIP_LEVEL = 6

log = logging.getLogger(__name__)

#: Name of the ignore file read from the context directory (gitignore syntax).
IGNORE_FILE = ".kfpignore"
#: The tool's own state folder, never put into an image unless named explicitly.
STATE_DIR = ".compose-kfp"
#: Patterns left out of every layer built from includes (gitignore syntax). An
#: include that names such a path itself still adds it.
DEFAULT_IGNORES: tuple[str, ...] = (".git/", "__pycache__/", "*.pyc", ".env", ".netrc", "*.pem", "*.key",
                                    f"{STATE_DIR}/")
WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
#: Size of the chunks passed between the tar and the compression thread (bytes).
CHUNK = 1 << 20
_QUEUE_DEPTH = 8
#: Bumped whenever the tar format we write changes, so old cache keys miss.
FORMAT_VERSION = 1

Compression = Union[str, None]
ProgressFn = Callable[[int, int], None]


class LayerSink(Protocol):
    """Where a layer's compressed bytes also go while :func:`write_layer` writes them into the blob store (a
    registry upload in progress: :class:`compose_kfp.oci.registry.StreamUpload`).

    Called from the compressing thread, in order: :meth:`write` with each piece of the blob as it is
    compressed, then exactly one of :meth:`finish` (the blob is complete and stored; its digest and size in
    bytes are final) or :meth:`abort` (the build failed). A sink never raises: a sink that cannot go on
    drops what it is given, and the blob in the store stays the truth.
    """

    def write(self, data: bytes) -> None: ...

    def finish(self, digest: str, size: int) -> None: ...

    def abort(self) -> None: ...


# --------------------------------------------------------------------------- values


@dataclasses.dataclass(frozen=True)
class Layer:
    """An immutable, finished layer blob.

    Attributes:
        media_type: ``application/vnd.oci.image.layer.v1.tar+gzip`` (or ``+zstd``, or plain ``tar``).
        digest: ``sha256:<hex>`` of the blob as stored and pushed (the compressed bytes).
        diff_id: ``sha256:<hex>`` of the uncompressed tar (goes into the config's ``rootfs.diff_ids``).
        size: length of the blob in bytes.
        opener: callable returning a fresh binary stream over the blob; use :meth:`open`.
    """

    media_type: str
    digest: str
    diff_id: str
    size: int
    opener: Callable[[], BinaryIO] = dataclasses.field(compare=False, repr=False)

    def open(self) -> BinaryIO:
        """A new binary stream over the (compressed) blob; the caller closes it."""
        return self.opener()

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> Descriptor:
        """The OCI descriptor of the blob (``descriptor.md``)."""
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size,
                          annotations=dict(annotations) if annotations else None)

    @classmethod
    def from_store(cls, store: BlobStore, digest: str, diff_id: str, media_type: str) -> Layer:
        """A layer whose blob is already in ``store``. Raises LayoutError when it is not."""
        return cls(media_type=media_type, digest=digest, diff_id=diff_id, size=store.size(digest),
                   opener=lambda: store.open(digest))


@dataclasses.dataclass(frozen=True)
class Include:
    """One input of a layer: the local file or folder ``src`` placed at ``dst`` in the image.

    Attributes:
        src: absolute local path (a top-level symlink is followed when walked).
        dst: absolute in-image POSIX path; for a folder, where its contents go;
            for a file ending in ``/``, the folder that receives it.
    """

    src: pathlib.Path
    dst: str

    @classmethod
    def parse(cls, spec: IncludeSpec, *, context: str | os.PathLike[str] | None = None,
              relative_root: str = "/") -> Include:
        """Turn ``"path"``, a path object or a ``(src, dst)`` pair into an :class:`Include`.

        A plain absolute path goes to the same path in the image; a plain
        relative path is resolved against ``context`` and goes to
        ``relative_root/<path>``. A pair's ``src`` is resolved the same way and
        its ``dst`` must be absolute.

        Raises:
            LayerError: (naming the path) ``src`` does not exist, a relative
                ``src`` escapes the context with ``..``, or ``dst`` is not
                absolute or contains ``..``.
        """
        if isinstance(spec, Include):
            return spec
        ctx = pathlib.Path(context if context is not None else os.getcwd()).absolute()
        if isinstance(spec, (tuple, list)):
            if len(spec) != 2:
                raise LayerError(f"include {spec!r}: expected a path or a (src, dst) pair")
            src_raw, dst = os.fspath(spec[0]), spec[1]
            if not isinstance(dst, str):
                dst = os.fspath(dst)
        else:
            src_raw, dst = os.fspath(spec), None
        src = _resolve_src(src_raw, ctx)
        if dst is None:
            if os.path.isabs(src_raw):
                dst = pathlib.PurePath(os.path.normpath(src_raw)).as_posix()
            else:
                dst = posixpath.join(relative_root, pathlib.PurePath(os.path.normpath(src_raw)).as_posix())
        _check_dst(dst)
        if not os.path.lexists(src):
            raise LayerError(f"include {src_raw!r}: {src} does not exist")
        return cls(src=src, dst=dst)


@dataclasses.dataclass(frozen=True)
class Content:
    """Bytes placed at ``dst`` (absolute in-image path) as a regular file with ``mode``."""

    dst: str
    data: bytes
    mode: int = 0o644


IncludeSpec = Union[str, os.PathLike, tuple, list, Include]
MappingValue = Union[str, os.PathLike, bytes, Content]


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry of a :class:`LayerPlan`.

    ``path`` is relative without a leading ``/`` (``opt/app/x.py``); ``kind`` is
    ``dir``, ``file``, ``symlink``, ``hardlink`` or ``data`` (regular file from
    bytes, including whiteouts); ``src`` the local file read for ``file``;
    ``size`` in bytes; ``stamp`` the stat fields that key the cache.
    """

    path: str
    kind: str
    mode: int
    size: int = 0
    src: str | None = None
    data: bytes | None = None
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    stamp: tuple[int, int, int] = (0, 0, 0)  # (mtime_ns, inode, device)
    nlink: int = 1


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """What a layer will contain, computed from ``lstat`` alone (see :func:`plan_layer`).

    Attributes:
        entries: tar entries in the order they will be written.
        compression: ``"gzip"``, ``"zstd"`` or ``None``.
        level: compression level.
        mtime: the mtime written for every entry (seconds since the epoch).
        skipped: in-image paths left out (device nodes, sockets, FIFOs in ``rootfs`` mode).
        key: hex sha256 over the inputs and options (the :class:`LayerCache` key).
    """

    entries: tuple[Entry, ...]
    compression: Compression
    level: int
    mtime: int
    skipped: tuple[str, ...]
    key: str

    @property
    def media_type(self) -> str:
        return _media_type(self.compression)

    @property
    def content_bytes(self) -> int:
        """Total size of the regular files' contents (bytes); the progress total."""
        return sum(e.size for e in self.entries if e.kind in ("file", "data"))


# --------------------------------------------------------------------------- helpers


def _resolve_src(src_raw: str, ctx: pathlib.Path) -> pathlib.Path:
    if os.path.isabs(src_raw):
        return pathlib.Path(os.path.normpath(src_raw))
    norm = os.path.normpath(src_raw)
    if norm == ".." or norm.startswith(".." + os.sep):
        raise LayerError(f"include {src_raw!r} escapes the context directory {ctx} with '..'; "
                         "use an absolute path or move the file under the context")
    return pathlib.Path(os.path.normpath(ctx / norm))


def _check_dst(dst: str) -> None:
    if not dst.startswith("/"):
        raise LayerError(f"destination {dst!r} is not absolute: in-image paths must start with '/'")
    if ".." in dst.split("/"):
        raise LayerError(f"destination {dst!r} contains '..': in-image paths may not escape their parent")
    if "\x00" in dst:
        raise LayerError(f"destination {dst!r} contains a NUL byte")


def _rel(dst: str) -> str:
    """In-image absolute path -> tar name without leading slash ('' for the root)."""
    return posixpath.normpath(dst).lstrip("/") if dst.strip("/") else ""


def _media_type(compression: Compression) -> str:
    if compression == "gzip":
        return MEDIA_TYPE_OCI_LAYER_GZIP
    if compression == "zstd":
        return MEDIA_TYPE_OCI_LAYER_ZSTD
    if compression is None:
        return MEDIA_TYPE_OCI_LAYER
    raise LayerError(f"unknown compression {compression!r}: use 'gzip', 'zstd' or None")


def _sort_key(path: str) -> tuple:
    parts = path.split("/")
    key = [(1, p.encode("utf-8", "surrogateescape")) for p in parts[:-1]]
    last = parts[-1]
    key.append((0 if last.startswith(WHITEOUT_PREFIX) else 1, last.encode("utf-8", "surrogateescape")))
    return tuple(key)


def resolve_source_date_epoch(value: int | None = None) -> int:
    """The layer mtime: ``value``, else ``$SOURCE_DATE_EPOCH``, else 0. Raises LayerError when not an integer."""
    if value is not None:
        return int(value)
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env in (None, ""):
        return 0
    try:
        return int(env)
    except ValueError:
        raise LayerError(f"SOURCE_DATE_EPOCH={env!r} is not an integer number of seconds") from None


def load_ignore_spec(context: str | os.PathLike[str] | None, extra: Iterable[str] = (), *,
                     use_ignore_file: bool = True, default_ignores: bool = True) -> pathspec.PathSpec:
    """Ignore patterns (gitignore syntax): the defaults, then ``<context>/.kfpignore``, then ``extra``.

    Later patterns win, so ``!pattern`` in ``.kfpignore`` can re-include a default.

    Raises:
        LayerError: ``.kfpignore`` cannot be read or is not UTF-8 text (the message names the file and the byte).
    """
    lines: list[str] = list(DEFAULT_IGNORES) if default_ignores else []
    if use_ignore_file and context is not None:
        f = pathlib.Path(context) / IGNORE_FILE
        if f.is_file():
            try:
                lines += f.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as e:
                raise LayerError(f"{f}: not UTF-8 text (byte {e.start}); write the ignore patterns as UTF-8 "
                                 "text, one gitignore-style pattern a line") from None
            except OSError as e:
                raise LayerError(f"{f}: cannot be read: {e.strerror or e}") from None
    lines += list(extra)
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _kind_name(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISCHR(mode):
        return "a character device"
    return "not a regular file, folder or symlink"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# --------------------------------------------------------------------------- planning


class _Collector:
    """Accumulates entries from includes, refusing what cannot go into a layer."""

    def __init__(self, *, rootfs: bool, preserve_owners: bool, spec: pathspec.PathSpec | None,
                 context: pathlib.Path | None, exclude: Iterable[str] = ()):
        self.rootfs = rootfs
        self.exclude = frozenset(os.path.realpath(p) for p in exclude)
        self.emptied: set[str] = set()  # in-image folders that had an excluded child
        self.roots: set[str] = set()  # in-image folders of the includes themselves
        self.preserve_owners = preserve_owners
        self.spec = spec
        self.context = context
        self.entries: dict[str, Entry] = {}
        self.origin: dict[str, str] = {}
        self.skipped: list[str] = []

    # -- adding
    def add(self, entry: Entry, origin: str) -> None:
        old = self.entries.get(entry.path)
        if old is not None:
            if old.kind == "dir" and entry.kind == "dir":
                return
            if old.src != entry.src or old.data != entry.data or old.kind != entry.kind:
                raise LayerError(f"/{entry.path} would come from both {self.origin[entry.path]} and {origin}: "
                                 "each in-image path may have one source")
            return
        self.entries[entry.path] = entry
        self.origin[entry.path] = origin

    def _mode_owner(self, st: os.stat_result) -> tuple[int, int, int]:
        if self.rootfs:
            mode = stat.S_IMODE(st.st_mode)
        elif stat.S_ISDIR(st.st_mode):
            mode = 0o755
        elif stat.S_ISLNK(st.st_mode):
            mode = 0o777
        else:
            mode = 0o755 if st.st_mode & 0o111 else 0o644
        if self.preserve_owners:
            return mode, st.st_uid, st.st_gid
        return mode, 0, 0

    def _entry_for(self, src: str, dst_rel: str, st: os.stat_result, link_root: tuple[str, str, str] | None) -> Entry | None:
        name = dst_rel.rsplit("/", 1)[-1]
        if name.startswith(WHITEOUT_PREFIX):
            raise LayerError(f"{src}: names starting with '{WHITEOUT_PREFIX}' are reserved for whiteouts "
                             "(OCI layer.md) and cannot be put in an image")
        mode, uid, gid = self._mode_owner(st)
        stamp = (st.st_mtime_ns, st.st_ino, st.st_dev)
        if stat.S_ISREG(st.st_mode):
            return Entry(dst_rel, "file", mode, st.st_size, src=src, uid=uid, gid=gid, stamp=stamp,
                         nlink=st.st_nlink)
        if stat.S_ISDIR(st.st_mode):
            return Entry(dst_rel, "dir", mode, uid=uid, gid=gid, stamp=stamp)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(src)
            if not self.rootfs:
                assert link_root is not None
                target = self._check_symlink(src, target, *link_root)
            return Entry(dst_rel, "symlink", mode, linkname=target, uid=uid, gid=gid, stamp=stamp)
        if self.rootfs:
            log.warning("skipping %s: %s cannot be put in a layer", src, _kind_name(st.st_mode))
            self.skipped.append("/" + dst_rel)
            return None
        raise LayerError(f"{src} is {_kind_name(st.st_mode)}: only regular files, folders and symlinks "
                         "can be put in a layer")

    @staticmethod
    def _check_symlink(src: str, target: str, real_root: str, abs_root: str, dst_root: str) -> str:
        """Refuse a link leading outside its include; rewrite an absolute in-tree target to its image path."""
        base = os.path.dirname(src)
        lexical = os.path.normpath(target if os.path.isabs(target) else os.path.join(base, target))
        real = os.path.realpath(os.path.join(base, target))
        for root in (real_root, abs_root):
            if _inside(lexical, root) and (_inside(real, real_root) or _inside(real, root)):
                if os.path.isabs(target):
                    rel = os.path.relpath(lexical, root)
                    return posixpath.normpath(posixpath.join(dst_root, pathlib.PurePath(rel).as_posix()))
                return target
        raise LayerError(f"symlink {src} -> {target} points outside the included tree {abs_root}; "
                         "include the target too, or replace the link by a copy")

    def drop_emptied(self) -> None:
        """Leave out the folders that hold nothing but excluded paths (and folders above them emptied the same
        way, up to an include's own folder): a folder made only to hold excluded outputs (``build/`` around an
        ``oci:build/image`` layout) must not appear in the layer when it appears on disk."""
        pending = set(self.emptied)
        while pending:
            d = max(pending, key=lambda p: (p.count("/"), p))
            pending.discard(d)
            entry = self.entries.get(d)
            if not d or d in self.roots or entry is None or entry.kind != "dir":
                continue
            if any(p.startswith(d + "/") for p in self.entries):
                continue
            del self.entries[d]
            del self.origin[d]
            pending.add(posixpath.dirname(d))

    def _ignored(self, rel: str, is_dir: bool) -> bool:
        return self.spec is not None and self.spec.match_file(rel + "/" if is_dir else rel)

    # -- walking
    def include(self, inc: Include) -> None:
        abs_root = str(inc.src)
        real_root = os.path.realpath(abs_root)
        if real_root in self.exclude:
            return
        try:
            st = os.stat(real_root) if os.path.islink(abs_root) else os.lstat(abs_root)
        except FileNotFoundError:
            raise LayerError(f"include {abs_root}: it does not exist (a dangling symlink?)") from None
        origin = abs_root
        if not stat.S_ISDIR(st.st_mode):
            dst = inc.dst
            if dst.endswith("/"):
                dst = posixpath.join(dst, os.path.basename(abs_root))
            rel = _rel(dst)
            if not rel:
                raise LayerError(f"include {abs_root}: a file cannot be placed at '/'")
            e = self._entry_for(real_root, rel, st, None)
            if e is not None:
                self.add(e, origin)
            return
        # Which paths do the ignore patterns see? Relative to the context for includes inside
        # it, unless the include itself is ignored (then it was named on purpose: match relative
        # to the include, so only patterns about its contents apply).
        prefix, spec_on = "", self.spec is not None
        if spec_on and self.context is not None and _inside(real_root, str(self.context)):
            rel_root = os.path.relpath(real_root, self.context)
            if rel_root != "." and not self._ignored(pathlib.PurePath(rel_root).as_posix(), True):
                prefix = pathlib.PurePath(rel_root).as_posix() + "/"
        dst_root_rel = _rel(inc.dst)
        self.roots.add(dst_root_rel)
        if dst_root_rel:
            mode, uid, gid = self._mode_owner(st)
            self.add(Entry(dst_root_rel, "dir", mode, uid=uid, gid=gid,
                           stamp=(st.st_mtime_ns, st.st_ino, st.st_dev)), origin)
        link_root = (real_root, os.path.normpath(abs_root), "/" + dst_root_rel)
        stack = [(real_root, dst_root_rel, "")]
        while stack:
            d, d_rel, ign_rel = stack.pop()
            try:
                it = os.scandir(d)
            except PermissionError:
                raise LayerError(f"{d}: permission denied while reading the folder") from None
            with it:
                for de in it:
                    if de.path in self.exclude:  # a real path: the walk starts at real_root, follows no link
                        self.emptied.add(d_rel)
                        continue
                    child_ign = ign_rel + de.name
                    is_dir = de.is_dir(follow_symlinks=False)
                    if spec_on and self._ignored(prefix + child_ign, is_dir):
                        continue
                    st = de.stat(follow_symlinks=False)
                    child_rel = f"{d_rel}/{de.name}" if d_rel else de.name
                    e = self._entry_for(de.path, child_rel, st, link_root)
                    if e is None:
                        continue
                    self.add(e, de.path)
                    if is_dir:
                        stack.append((de.path, child_rel, child_ign + "/"))


def plan_layer(includes: Iterable[IncludeSpec] = (), *, context: str | os.PathLike[str] | None = None,
               files: Mapping[str, MappingValue] | None = None, rootfs: bool = False,
               ignore: Iterable[str] = (), use_ignore_file: bool | None = None,
               default_ignores: bool | None = None, whiteouts: Iterable[str] = (), opaque: Iterable[str] = (),
               compression: Compression = "gzip", level: int | None = None,
               source_date_epoch: int | None = None, relative_root: str = "/",
               preserve_owners: bool | None = None, exclude: Iterable[str] = ()) -> LayerPlan:
    """Plan a layer from local inputs without reading any file's content.

    Args:
        includes: paths or ``(src, dst)`` pairs, see :meth:`Include.parse`.
        context: directory that relative sources and ``.kfpignore`` are relative to (default: cwd).
        files: in-image path -> local file/folder path, ``bytes`` or :class:`Content`
            (e.g. ``{"/opt/compose-kfp/site-packages": Path("build/site")}``).
        rootfs: the inputs are a whole root file system (e.g. a debootstrap tree at
            ``("tree", "/")``): symlinks are kept verbatim (absolute targets
            resolve inside the image), full permission bits (setuid, sticky) and
            numeric owners are kept, device nodes, sockets and FIFOs are skipped
            (logged and listed in :attr:`LayerPlan.skipped`), no default ignores.
        ignore: extra gitignore-style patterns, applied after ``.kfpignore``.
        use_ignore_file / default_ignores: read ``.kfpignore`` / apply
            :data:`DEFAULT_IGNORES` (both default to ``not rootfs``).
        whiteouts: in-image paths this layer deletes from the layers below
            (``.wh.<name>`` entries, ``layer.md`` "Whiteouts").
        opaque: in-image folders whose lower-layer contents this layer hides (``.wh..wh..opq``).
        compression: ``"gzip"`` (isal, else zlib), ``"zstd"`` or ``None``.
        level: compression level (gzip default: 1 with isal, 6 with zlib; zstd default 3).
        source_date_epoch: mtime of every entry; default ``$SOURCE_DATE_EPOCH`` or 0.
        relative_root: in-image folder receiving plain relative includes.
        preserve_owners: keep numeric uid/gid (default: ``rootfs``).
        exclude: local paths (files or folders; symlinks in them resolved) left out with everything below
            them, whatever the ignore patterns say (``!pattern`` cannot bring them back); an include that is
            itself excluded adds nothing, and a folder left empty only by exclusions is left out too. For what
            the caller writes next to its inputs (build outputs, state).
            Only the entries left out change the plan: an exclusion that matches nothing leaves the key as is.

    Returns:
        a :class:`LayerPlan`.

    Raises:
        LayerError: naming the path, for a missing source, a ``..`` escape, a
            relative destination, a symlink leading outside its include, a
            socket/FIFO/device (outside ``rootfs``), a ``.wh.`` name, two
            sources for one path, or a whiteout of a path the layer adds.
    """
    _media_type(compression)
    if compression == "gzip":
        lvl = DEFAULT_GZIP_LEVEL if level is None else level
    elif compression == "zstd":
        lvl = 3 if level is None else level
    else:
        lvl = 0
    mtime = resolve_source_date_epoch(source_date_epoch)
    ctx = pathlib.Path(context if context is not None else os.getcwd()).absolute()
    use_file = (not rootfs) if use_ignore_file is None else use_ignore_file
    defaults = (not rootfs) if default_ignores is None else default_ignores
    ignore = list(ignore)
    spec = None
    if use_file or defaults or ignore:
        spec = load_ignore_spec(ctx, ignore, use_ignore_file=use_file, default_ignores=defaults)
    col = _Collector(rootfs=rootfs, preserve_owners=rootfs if preserve_owners is None else preserve_owners,
                     spec=spec, context=pathlib.Path(os.path.realpath(ctx)), exclude=exclude)
    for spec_item in includes:
        col.include(Include.parse(spec_item, context=ctx, relative_root=relative_root))
    for dst, value in (files or {}).items():
        _check_dst(dst)
        if isinstance(value, Content):
            _check_dst(value.dst)
            col.add(Entry(_rel(value.dst), "data", value.mode, len(value.data), data=value.data), f"bytes for {dst}")
        elif isinstance(value, (bytes, bytearray)):
            data = bytes(value)
            col.add(Entry(_rel(dst), "data", 0o644, len(data), data=data), f"bytes for {dst}")
        else:
            col.include(Include.parse((value, dst), context=ctx, relative_root=relative_root))
    col.drop_emptied()
    for target in whiteouts:
        _check_dst(target)
        rel = _rel(target)
        if not rel:
            raise LayerError("whiteout '/': the root cannot be deleted; use opaque=['/...'] on folders")
        parent, name = posixpath.split(rel)
        col.add(Entry(posixpath.join(parent, WHITEOUT_PREFIX + name), "data", 0o644, 0, data=b""),
                f"whiteout of {target}")
        for p in col.entries:
            if p == rel or p.startswith(rel + "/"):
                raise LayerError(f"whiteout of {target} conflicts with /{p} added by the same layer "
                                 "(OCI layer.md: a whiteout only hides lower layers)")
    for folder in opaque:
        _check_dst(folder)
        rel = _rel(folder)
        col.add(Entry(posixpath.join(rel, WHITEOUT_OPAQUE) if rel else WHITEOUT_OPAQUE, "data", 0o644, 0, data=b""),
                f"opaque whiteout of {folder}")
    entries = col.entries
    # Parent directories, explicitly.
    for path in list(entries):
        parent = posixpath.dirname(path)
        while parent and parent not in entries:
            entries[parent] = Entry(parent, "dir", 0o755)
            parent = posixpath.dirname(parent)
    ordered = [entries[p] for p in sorted(entries, key=_sort_key)]
    # Hard links: the first path of an inode (in written order) carries the data.
    first_of: dict[tuple[int, int], str] = {}
    final: list[Entry] = []
    for e in ordered:
        if e.kind == "file" and e.nlink > 1:
            ino = (e.stamp[2], e.stamp[1])
            if ino in first_of:
                e = dataclasses.replace(e, kind="hardlink", linkname=first_of[ino], size=0)
            else:
                first_of[ino] = e.path
        final.append(e)
    key = _plan_key(final, compression, lvl, mtime, col.skipped)
    return LayerPlan(tuple(final), compression, lvl, mtime, tuple(col.skipped), key)


def _plan_key(entries: Sequence[Entry], compression: Compression, level: int, mtime: int,
              skipped: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT_VERSION, "compression": compression, "level": level,
                         "gzip": GZIP_IMPL if compression == "gzip" else None, "mtime": mtime,
                         "skipped": list(skipped)}, sort_keys=True).encode())
    for e in entries:
        data_hash = hashlib.sha256(e.data).hexdigest() if e.data is not None else ""
        h.update(f"\n{e.path}\0{e.kind}\0{e.mode:o}\0{e.uid}\0{e.gid}\0{e.size}\0{e.linkname}\0"
                 f"{e.src or ''}\0{e.stamp[0]}\0{e.stamp[1]}\0{data_hash}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def layer_key(includes: Iterable[IncludeSpec] = (), **options: Any) -> str:
    """The :class:`LayerCache` key of the layer :func:`plan_layer` would plan (stat only, no reads)."""
    return plan_layer(includes, **options).key


# --------------------------------------------------------------------------- writing


def _tar_header(e: Entry, mtime: int) -> bytes:
    ti = tarfile.TarInfo(e.path)
    ti.mode = e.mode
    ti.uid, ti.gid = e.uid, e.gid
    ti.uname = ti.gname = ""
    ti.mtime = mtime
    if e.kind == "dir":
        ti.type = tarfile.DIRTYPE
    elif e.kind == "symlink":
        ti.type = tarfile.SYMTYPE
        ti.linkname = e.linkname
    elif e.kind == "hardlink":
        ti.type = tarfile.LNKTYPE
        ti.linkname = e.linkname
    else:
        ti.type = tarfile.REGTYPE
        ti.size = e.size
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _iter_tar(plan: LayerPlan) -> Iterator[bytes | bytearray]:
    """Yield the tar stream of ``plan`` in chunks of about :data:`CHUNK` bytes (large files pass through)."""
    buf = bytearray()
    for e in plan.entries:
        buf += _tar_header(e, plan.mtime)
        if e.kind == "data":
            buf += e.data or b""
        elif e.kind == "file":
            assert e.src is not None
            if e.size >= CHUNK:
                if buf:
                    yield buf
                    buf = bytearray()
                yield from _read_file(e)
            else:
                buf += _read_small(e)
        else:
            continue
        pad = -e.size % 512
        if pad:
            buf += b"\0" * pad
        if len(buf) >= CHUNK:
            yield buf
            buf = bytearray()
    buf += b"\0" * 1024
    yield buf


def _open_checked(e: Entry) -> BinaryIO:
    try:
        f = open(e.src, "rb")  # type: ignore[arg-type]
    except OSError as exc:
        raise LayerError(f"{e.src}: cannot read ({exc.strerror})") from None
    st = os.fstat(f.fileno())
    if st.st_size != e.size or st.st_mtime_ns != e.stamp[0]:
        f.close()
        raise LayerError(f"{e.src} changed while the layer was being built; build again")
    return f


def _read_small(e: Entry) -> bytes:
    with _open_checked(e) as f:
        data = f.read(e.size + 1)
    if len(data) != e.size:
        raise LayerError(f"{e.src} changed size while the layer was being built; build again")
    return data


def _read_file(e: Entry) -> Iterator[bytes]:
    with _open_checked(e) as f:
        left = e.size
        while left:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise LayerError(f"{e.src} shrank while the layer was being built; build again")
            left -= len(chunk)
            yield chunk


def _compressor(compression: Compression, level: int) -> Any:
    if compression == "gzip":
        # wbits=31: gzip wrapper, header without name and with mtime 0 (RFC 1952).
        return _gzip_impl.compressobj(level, _gzip_impl.DEFLATED, 31)
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise LayerError("zstd compression needs the 'zstandard' package: pip install 'compose-kfp[zstd]'") from None
        return zstandard.ZstdCompressor(level=level).compressobj()
    return None


class _Abort(Exception):
    pass


def _pipeline(chunks: Iterator[bytes | bytearray], store: BlobStore, compression: Compression, level: int,
              progress: ProgressFn | None, total: int, sink: LayerSink | None = None) -> tuple[str, str, int]:
    """Run tar+hash (worker thread) and compress+hash+write (this thread, also to ``sink``); return
    (digest, diff_id, size)."""
    q: queue.Queue = queue.Queue(_QUEUE_DEPTH)
    stop = threading.Event()
    diff = hashlib.sha256()

    def produce() -> None:
        try:
            for chunk in chunks:
                diff.update(chunk)
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)

    worker = threading.Thread(target=produce, name="layer-tar", daemon=True)
    comp = _compressor(compression, level)
    done = 0
    try:
        with store.writer() as w:
            worker.start()
            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                done += len(item)
                out = comp.compress(item) if comp is not None else item
                w.write(out)
                if sink is not None and out:
                    sink.write(bytes(out))
                if progress is not None:
                    progress(min(done, total), total)
            if comp is not None:
                out = comp.flush()
                w.write(out)
                if sink is not None and out:
                    sink.write(out)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        stop.set()
        if worker.ident is not None:  # not started when store.writer() failed (read-only store)
            worker.join()
    assert w.digest is not None
    if sink is not None:
        sink.finish(w.digest, w.size)
    return w.digest, "sha256:" + diff.hexdigest(), w.size


def write_layer(plan: LayerPlan, store: BlobStore | str | os.PathLike[str], *, cache: LayerCache | None = None,
                progress: ProgressFn | None = None, sink: LayerSink | None = None) -> Layer:
    """Write ``plan`` as a blob into ``store`` in one streaming pass and return the :class:`Layer`.

    When ``cache`` knows ``plan.key`` and the blob is in ``store``, nothing is
    read or written. ``progress(done, total)`` is called from this thread with
    tar bytes produced so far and the planned total (bytes, approximate). ``sink`` (:class:`LayerSink`) gets the
    compressed bytes too, as they are written (the same bytes, so the same digest), then ``finish`` once the
    blob is stored, or ``abort``; it is not called at all on a cache hit.

    Raises:
        LayerError: a file vanished, changed or became unreadable since planning.
    """
    store = store if isinstance(store, BlobStore) else BlobStore(store)
    if cache is not None:
        hit = cache.lookup(plan.key, store)
        if hit is not None:
            return hit
    total = plan.content_bytes + 512 * (len(plan.entries) + 2)
    digest, diff_id, size = _pipeline(_iter_tar(plan), store, plan.compression, plan.level, progress, total, sink)
    layer = Layer(plan.media_type, digest, diff_id, size, opener=lambda: store.open(digest))
    if cache is not None:
        cache.record(plan.key, layer)
    return layer


def build_layer(includes: Iterable[IncludeSpec] = (), *, store: BlobStore | str | os.PathLike[str],
                context: str | os.PathLike[str] | None = None, cache: LayerCache | None = None,
                progress: ProgressFn | None = None, **options: Any) -> Layer:
    """Plan (:func:`plan_layer`, same keyword options) and write (:func:`write_layer`) a layer."""
    return write_layer(plan_layer(includes, context=context, **options), store, cache=cache, progress=progress)


def build_mapping_layer(mapping: Mapping[str, MappingValue], *, store: BlobStore | str | os.PathLike[str],
                        **options: Any) -> Layer:
    """A layer from ``{in-image path: local path | bytes | Content}``; folders are added recursively.

    Default ignores and ``.kfpignore`` do not apply (the caller chose each
    source) unless ``default_ignores`` / ``use_ignore_file`` say otherwise.
    """
    options.setdefault("default_ignores", False)
    options.setdefault("use_ignore_file", False)
    return build_layer((), files=mapping, store=store, **options)


def build_rootfs_layer(root: str | os.PathLike[str], *, store: BlobStore | str | os.PathLike[str],
                       **options: Any) -> Layer:
    """A base layer from a whole root file system folder (``plan_layer(rootfs=True)`` semantics)."""
    return build_layer([(os.fspath(root), "/")], store=store, rootfs=True, **options)


def compress_tar(stream: BinaryIO, store: BlobStore, compression: Compression = "gzip",
                 level: int | None = None) -> Layer:
    """Store an existing uncompressed tar stream as a layer blob, compressing it on the way (one pass)."""
    lvl = (DEFAULT_GZIP_LEVEL if compression == "gzip" else 3) if level is None else level

    def chunks() -> Iterator[bytes]:
        while chunk := stream.read(CHUNK):
            yield chunk

    digest, diff_id, size = _pipeline(chunks(), store, compression, lvl, None, 0)
    return Layer(_media_type(compression), digest, diff_id, size, opener=lambda: store.open(digest))


# --------------------------------------------------------------------------- cache


class LayerCache:
    """Finished layers by :attr:`LayerPlan.key`: one small JSON file per key under ``directory``.

    A record holds media type, digest, diff_id and size. :meth:`lookup` reads
    that record and ``stat``-s the blob: no input file is read, so with
    :func:`plan_layer` an unchanged layer of 10,000 files is recognised in a
    fraction of a second.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = pathlib.Path(directory)

    def _path(self, key: str) -> pathlib.Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise LayerError(f"invalid layer cache key {key!r}")
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The raw record ``{"media_type", "digest", "diff_id", "size"}`` for ``key``, or None."""
        try:
            record = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(record, dict) or not {"media_type", "digest", "diff_id", "size"} <= record.keys():
            return None
        return record

    def lookup(self, key: str, store: BlobStore | str | os.PathLike[str] | None = None) -> Layer | None:
        """The cached :class:`Layer` for ``key``, or None.

        With ``store``, a record whose blob is missing from the store (or has a
        different size) counts as a miss. Without it, the returned layer's
        :meth:`Layer.open` raises LayerError: use it for its digests only.
        """
        record = self.get(key)
        if record is None:
            return None
        digest = record["digest"]
        if store is None:
            def opener() -> BinaryIO:
                raise LayerError(f"layer {digest} was looked up without a blob store; it cannot be opened")
            return Layer(record["media_type"], digest, record["diff_id"], int(record["size"]), opener=opener)
        bs = store if isinstance(store, BlobStore) else BlobStore(store)
        try:
            if bs.path(digest).stat().st_size != int(record["size"]):
                return None
        except (FileNotFoundError, Exception):
            return None
        return Layer(record["media_type"], digest, record["diff_id"], int(record["size"]),
                     opener=lambda: bs.open(digest))

    def record(self, key: str, layer: Layer) -> None:
        """Remember ``layer`` as the result for ``key`` (atomic write)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps({"media_type": layer.media_type, "digest": layer.digest,
                                   "diff_id": layer.diff_id, "size": layer.size}), encoding="utf-8")
        os.replace(tmp, path)


__all__ = [
    "Content", "DEFAULT_IGNORES", "Entry", "IGNORE_FILE", "Include", "Layer", "LayerCache", "LayerPlan", "LayerSink",
    "WHITEOUT_OPAQUE", "WHITEOUT_PREFIX", "build_layer", "build_mapping_layer", "build_rootfs_layer",
    "compress_tar", "layer_key", "load_ignore_spec", "plan_layer", "resolve_source_date_epoch", "write_layer",
]
