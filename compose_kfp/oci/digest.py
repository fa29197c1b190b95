"""Content digests (OCI image spec ``descriptor.md``, section "Digests").

A digest is a string ``<algorithm>:<encoded>``; we produce ``sha256`` digests
(64 lowercase hex characters) and accept ``sha256`` and ``sha512`` when reading.
"""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from compose_kfp.oci.errors import DigestMismatch, ImageError

#: Grammar of the descriptor ``digest`` field (``descriptor.md``), with the
#: encoded-part length checked for the two registered algorithms.
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX_LEN = {"sha256": 64, "sha512": 128}

#: Read size used when hashing files (bytes).
CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    """Return ``"sha256:<hex>"`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def split_digest(digest: str) -> tuple[str, str]:
    """Split and validate a digest; return ``(algorithm, hex)``.

    Raises:
        ImageError: the string is not a well-formed ``sha256``/``sha512`` digest.
    """
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ImageError(f"malformed digest {digest!r}: expected '<algorithm>:<hex>', e.g. 'sha256:' + 64 hex digits")
    algorithm, encoded = digest.split(":", 1)
    want = _HEX_LEN.get(algorithm)
    if want is None:
        raise ImageError(f"unsupported digest algorithm in {digest!r}: only sha256 and sha512 are supported")
    if len(encoded) != want or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise ImageError(f"malformed digest {digest!r}: {algorithm} needs {want} lowercase hex digits")
    return algorithm, encoded


def hash_stream(stream: BinaryIO, algorithm: str = "sha256") -> tuple[str, int]:
    """Hash a binary stream to its end; return ``(digest, size_in_bytes)``."""
    h = hashlib.new(algorithm)
    size = 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return f"{algorithm}:{h.hexdigest()}", size


def verify_bytes(data: bytes, digest: str, *, what: str = "content") -> None:
    """Raise :class:`DigestMismatch` unless ``data`` hashes to ``digest``."""
    algorithm, encoded = split_digest(digest)
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != encoded:
        raise DigestMismatch(f"{what} does not match its digest: expected {digest}, got {algorithm}:{actual}")
