"""A local content-addressed blob store in the OCI image layout format.

Blobs live at ``<root>/blobs/<algorithm>/<hex>`` (OCI image spec
``image-layout.md``, "Blobs"), so an OCI layout directory *is* a blob store and
a blob store can be turned into a layout by adding ``oci-layout`` and
``index.json``. Every write goes to a temporary file in the same directory,
is hashed while written, ``fsync``-ed and renamed into place: a reader never sees
a partial blob under its final name, and a crash leaves only ``.tmp-*`` files
(and ``<hex>.*.part`` files of downloads,
:meth:`compose_kfp.oci.registry.RegistryClient.get_blob`), removed by
:meth:`BlobStore.clean_temp`.

A store with ``flat=True`` reads the skopeo ``dir:`` layout instead, where a
blob is ``<root>/<hex>`` (sha256 only).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import tempfile
import threading
from collections.abc import Iterator
from typing import BinaryIO

from compose_kfp.oci.digest import CHUNK, split_digest
from compose_kfp.oci.errors import DigestMismatch, LayoutError

TEMP_PREFIX = ".tmp-"


class BlobWriter:
    """A file being written into a :class:`BlobStore`; hashes (sha256) and counts bytes as they pass.

    Use through :meth:`BlobStore.writer`. ``digest`` and ``size`` are final once
    the ``with`` block exits without an error.
    """

    def __init__(self, fileobj: BinaryIO, tmp_path: pathlib.Path):
        self._file = fileobj
        self.tmp_path = tmp_path
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; return the number of bytes written."""
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class BlobStore:
    """Content-addressed blobs under ``root`` (``blobs/sha256/<hex>``, or ``<hex>`` when ``flat``).

    Args:
        root: the directory; created on the first write unless ``flat``.
        flat: read-only ``dir:`` naming (skopeo), no ``blobs/`` level.
    """

    def __init__(self, root: str | os.PathLike[str], *, flat: bool = False):
        self.root = pathlib.Path(root)
        self.flat = flat

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r}{', flat=True' if self.flat else ''})"

    def path(self, digest: str) -> pathlib.Path:
        """Where the blob with ``digest`` is (or would be) stored. Raises ImageError on a malformed digest."""
        algorithm, encoded = split_digest(digest)
        if self.flat:
            return self.root / encoded
        return self.root / "blobs" / algorithm / encoded

    def has(self, digest: str) -> bool:
        """True when a blob file exists for ``digest`` (one ``stat``; content is not re-hashed)."""
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        """Size in bytes of a stored blob. Raises LayoutError when absent."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise LayoutError(f"blob {digest} not found in {self.root}") from None

    def open(self, digest: str) -> BinaryIO:
        """Open a stored blob for reading. Raises LayoutError when absent."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise LayoutError(f"blob {digest} not found in {self.root}") from None

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        """Read a whole (small) blob, such as a manifest or config, checking its digest.

        Raises:
            LayoutError: the blob is absent.
            DigestMismatch: ``verify`` and the content does not hash to ``digest``.
        """
        with self.open(digest) as f:
            data = f.read()
        if verify:
            algorithm, encoded = split_digest(digest)
            actual = hashlib.new(algorithm, data).hexdigest()
            if actual != encoded:
                raise DigestMismatch(f"blob {self.path(digest)} is corrupt: expected {digest}, got {algorithm}:{actual}")
        return data

    @contextlib.contextmanager
    def writer(self, expected_digest: str | None = None) -> Iterator[BlobWriter]:
        """Write a new blob atomically; yields a :class:`BlobWriter`.

        On a clean exit the temporary file is fsync-ed and renamed to
        ``blobs/sha256/<hex>`` (an existing identical blob is kept). On an
        exception the temporary file is removed.

        Raises:
            DigestMismatch: ``expected_digest`` is given and the content hashes to something else.
        """
        if self.flat:
            raise LayoutError(f"{self.root} is a read-only dir: blob source")
        directory = self.root / "blobs" / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        tmp_path = pathlib.Path(tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                w = BlobWriter(f, tmp_path)
                yield w
                f.flush()
                os.fsync(f.fileno())
            digest = "sha256:" + w.hexdigest()
            if expected_digest is not None and expected_digest != digest:
                raise DigestMismatch(f"blob content hashes to {digest}, expected {expected_digest}")
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, self.path(digest))
            w.digest = digest
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
            raise

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(digest, size)``. Skips the write when the blob exists."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            with self.writer() as w:
                w.write(data)
        return digest, len(data)

    def put_stream(self, stream: BinaryIO, expected_digest: str | None = None) -> tuple[str, int]:
        """Copy a stream into the store (one pass, ``CHUNK`` bytes at a time); return ``(digest, size)``.

        When ``expected_digest`` is given and already stored, nothing is read.

        Raises:
            DigestMismatch: the content does not hash to ``expected_digest``.
        """
        if expected_digest is not None and self.has(expected_digest):
            return expected_digest, self.size(expected_digest)
        with self.writer(expected_digest) as w:
            while chunk := stream.read(CHUNK):
                w.write(chunk)
        assert w.digest is not None
        return w.digest, w.size

    def put_file(self, path: str | os.PathLike[str], expected_digest: str | None = None) -> tuple[str, int]:
        """Copy a file into the store (hashed while copied); return ``(digest, size)``.

        Raises DigestMismatch like :meth:`put_stream`.
        """
        with open(path, "rb") as f:
            return self.put_stream(f, expected_digest)

    def copy_from(self, other: BlobStore, digest: str) -> None:
        """Make ``digest`` present here, copying it from ``other`` (verified) when missing."""
        if self.has(digest):
            return
        src = other.path(digest)
        if not src.is_file():
            raise LayoutError(f"blob {digest} is in neither {self.root} nor {other.root}")
        with open(src, "rb") as f:
            self.put_stream(f, digest)

    def digests(self) -> list[str]:
        """Every ``sha256`` blob stored, sorted (temporary files excluded)."""
        d = self.root if self.flat else self.root / "blobs" / "sha256"
        if not d.is_dir():
            return []
        return sorted(f"sha256:{p.name}" for p in d.iterdir()
                      if len(p.name) == 64 and not p.name.startswith(TEMP_PREFIX))

    def clean_temp(self) -> int:
        """Remove leftover temporary files of interrupted writes and downloads; return how many were removed."""
        d = self.root / "blobs" / "sha256"
        n = 0
        if d.is_dir():
            for p in [*d.glob(TEMP_PREFIX + "*"), *d.glob("*.part")]:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    n += 1
        return n


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file ``path`` with ``data`` atomically: readers see the old bytes or the new, never a part.

    Writes a temporary file in the same folder (``.tmp-<name>-<pid>-<thread id>``, so concurrent
    writers never share one; the missing parent folders are made first), ``fsync``-s it, renames
    it over ``path`` and ``fsync``-s the folder so the rename survives a crash. On an error the
    temporary file is removed and the error raised (``OSError``).
    """
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TEMP_PREFIX}{target.name}-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_blob(src: BlobStore, dst: BlobStore, digest: str) -> None:
    """Copy one blob between stores (see :meth:`BlobStore.copy_from`)."""
    dst.copy_from(src, digest)


__all__ = ["BlobStore", "BlobWriter", "atomic_write", "copy_blob", "TEMP_PREFIX"]
