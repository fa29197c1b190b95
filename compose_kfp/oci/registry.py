"""A client for the OCI distribution API (``/v2/``), one method per protocol step.

Shaped after go-containerregistry's ``remote/write.go``: for each blob
*exists -> mount -> upload -> commit*, then the config, then the manifest by
digest, and only then the tags, so that a tag never points at an image whose
blobs are not all in the registry.

Each step builds its request (path, token scopes, headers), sends it through a
:class:`~compose_kfp.oci.transport.Transport` (session, TLS, retries, the auth
challenge and token cache, error answers mapped to :mod:`compose_kfp.oci.errors`)
and reads the answer. Steps that resume rather than repeat (chunked uploads that
ask the upload URL how far they got, downloads continued with ``Range``) are here.

Secrets never reach a log line, an exception message or ``repr()``.

Progress callbacks have the signature ``progress(digest: str, done_bytes: int,
total_bytes: int)`` and may be called from worker threads.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import logging
import os
import pathlib
import queue
import re
import tempfile
import threading
import urllib.parse
from typing import BinaryIO, Callable, Iterable, Protocol, Sequence

from compose_kfp.oci import transport as _transport  # noqa: F401 - first: it defers requests' charset import

import requests
import urllib3.exceptions

from compose_kfp.oci.auth import Keychain, default_keychain
from compose_kfp.oci.errors import Unauthorized, DigestMismatch, NotFound, DistributionError
from compose_kfp.oci.image import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
)
from compose_kfp.oci.reference import Reference, validate_digest
from compose_kfp.oci.transport import DEFAULT_RETRIES, DEFAULT_TIMEOUT, RETRY_STATUSES, Transport

__all__ = [
    "RegistryClient",
    "BlobSource",
    "BytesBlob",
    "FileBlob",
    "StreamUpload",
    "ImageBlobs",
    "push_image",
    "push_index",
    "MANIFEST_ACCEPT",
    "DEFAULT_CHUNK_SIZE",
    "UploadInterrupted",
]

log = logging.getLogger(__name__)

#: Media types accepted for manifests (OCI and Docker v2.2 manifests and indexes), most preferred first.
MANIFEST_ACCEPT: tuple[str, ...] = (
    MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST)
_INDEX_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})

#: Bytes per upload ``PATCH``; blobs up to this size are uploaded with one ``PUT``.
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
#: Bytes per ``PATCH`` of a :class:`StreamUpload` at most: with its queue, a stream holds about four of them.
STREAM_CHUNK_SIZE = 8 * 1024 * 1024
_READ_BLOCK = 1024 * 1024
_MAX_MANIFEST = 8 * 1024 * 1024

ProgressCallback = Callable[[str, int, int], None]


class UploadInterrupted(DistributionError):
    """A blob upload failed after its retries and resumes; nothing was committed for it."""


class BlobSource(Protocol):
    """What :meth:`RegistryClient.upload_blob` needs: a digest, a size in bytes, and a way to reopen the bytes.

    ``open()`` should return a seekable binary file so that a broken upload can be resumed
    at the offset the registry reports; an unseekable one is restarted instead.
    """

    digest: str
    size: int

    def open(self) -> BinaryIO: ...


@dataclasses.dataclass(frozen=True, repr=False)
class BytesBlob:
    """A blob held in memory (configs, manifests, small test layers). ``digest`` is its sha256."""

    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def __repr__(self) -> str:
        return f"BytesBlob({self.digest}, {self.size} bytes)"


@dataclasses.dataclass(frozen=True)
class FileBlob:
    """A blob stored in a file; ``digest`` and ``size`` are computed from the file when not given."""

    path: pathlib.Path
    digest: str = ""
    size: int = -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", pathlib.Path(self.path))
        if not self.digest or self.size < 0:
            h, n = hashlib.sha256(), 0
            with open(self.path, "rb") as f:
                while block := f.read(_READ_BLOCK):
                    h.update(block)
                    n += len(block)
            object.__setattr__(self, "digest", self.digest or "sha256:" + h.hexdigest())
            object.__setattr__(self, "size", n)

    def open(self) -> BinaryIO:
        return open(self.path, "rb")


def _iter_available(resp: requests.Response) -> Iterable[bytes]:
    """The body in blocks of what has arrived (``read1``), so that a transfer that breaks off
    keeps every byte received before the break (``iter_content`` would drop a partial block)."""
    while True:
        block = resp.raw.read1(_READ_BLOCK)
        if not block:
            return
        yield block


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _digest_of(data: bytes, algo: str) -> str:
    return f"{algo}:" + hashlib.new(algo, data).hexdigest()


class RegistryClient:
    """Speaks the distribution API to one registry.

    Args:
        registry: API host, ``host[:port]`` (use ``Reference.api_host``; ``registry-1.docker.io`` for Docker Hub).
        keychain: resolves credentials; default :func:`~compose_kfp.oci.auth.default_keychain`.
        insecure: ``None`` (default): plain HTTP for loopback hosts, HTTPS otherwise; ``True``: plain HTTP;
            ``False``: always HTTPS.
        ca_dirs: certificate folders to look in for ``<dir>/<registry>/``
            (default :data:`~compose_kfp.oci.transport.DEFAULT_CERT_DIRS`).
        ca_file: an extra CA bundle (PEM) trusted in addition to the system CAs.
        client_cert: ``(cert_path, key_path)`` for TLS client authentication.
        timeout: seconds to wait to connect and between bytes of a response.
        retries: how many times a failed request (or an upload chunk) is retried.
        backoff: base of the exponential backoff in seconds (jitter of the same size is added).
        chunk_size: bytes per ``PATCH``; blobs up to this size are uploaded with one ``PUT``.
        auth_registry: the host credentials are looked up under (default ``registry``;
            pass ``docker.io`` when talking to ``registry-1.docker.io``).

    Everything but ``chunk_size`` configures the :class:`~compose_kfp.oci.transport.Transport`
    (``self.transport``) the steps send their requests through.

    The client is safe to use from several threads (one pooled session, a locked token cache).
    """

    def __init__(
        self,
        registry: str,
        keychain: Keychain | None = None,
        *,
        insecure: bool | None = None,
        ca_dirs: Sequence[str | os.PathLike[str]] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        client_cert: tuple[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        auth_registry: str | None = None,
        user_agent: str = "compose-kfp",
    ):
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1 byte")
        self.registry = registry
        self.retries = retries
        self.chunk_size = chunk_size
        self.transport = Transport(
            registry, keychain if keychain is not None else default_keychain(), insecure=insecure,
            ca_dirs=ca_dirs, ca_file=ca_file, client_cert=client_cert, timeout=timeout, retries=retries,
            backoff=backoff, auth_registry=auth_registry, user_agent=user_agent)
        self._lock = threading.Lock()
        self._pending_uploads: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    @property
    def base_url(self) -> str:
        """``<scheme>://<registry>``: ``http`` for loopback (or ``insecure=True``), else ``https``."""
        return self.transport.base_url

    @property
    def auth_registry(self) -> str:
        """The host credentials are looked up under (``docker.io`` for ``registry-1.docker.io``)."""
        return self.transport.auth_registry

    @classmethod
    def for_reference(cls, ref: "Reference | str", keychain: Keychain | None = None, **options) -> "RegistryClient":
        """A client for the registry of ``ref`` (API host ``registry-1.docker.io`` for Docker Hub,
        credentials looked up under ``docker.io``). ``options`` are those of the constructor."""
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        return cls(ref.api_host, keychain, auth_registry=ref.registry, **options)

    def close(self) -> None:
        """Close pooled connections."""
        self.transport.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ version check and auth

    def ping(self) -> str | None:
        """``GET /v2/`` (spec: "Determining support"): learn how the registry wants to be authenticated.

        Returns ``None`` (no auth), ``"basic"`` or ``"bearer"``. Raises :class:`DistributionError`
        if the registry cannot be reached or does not speak the v2 API.
        """
        return self.transport.ping()

    def authorize(self, repo: str, *, push: bool = False, mount_from: Sequence[str] = ()) -> None:
        """Ping if needed and fetch one token up front for everything an operation on ``repo`` needs.

        With Bearer auth this asks for ``pull`` (and ``push``) on ``repo`` and ``pull`` on each
        ``mount_from`` repository in one token request, so parallel steps share it. No-op for
        Basic auth or an open registry. Raises :class:`Unauthorized` if the token service refuses.
        """
        scopes = (self._push(repo) if push else self._pull(repo)) + \
            [f"repository:{src}:pull" for src in mount_from if src != repo]
        self.transport.authorize(scopes, repo)

    @staticmethod
    def _pull(repo: str) -> list[str]:
        return [f"repository:{repo}:pull"]

    @staticmethod
    def _push(repo: str) -> list[str]:
        return [f"repository:{repo}:pull,push"]

    # ------------------------------------------------------------------ manifests

    def get_manifest(self, repo: str, ref: str, accept: Sequence[str] = MANIFEST_ACCEPT) -> tuple[bytes, str, str]:
        """``GET /v2/<repo>/manifests/<ref>`` (spec §Pulling manifests); ``ref`` is a tag or a digest.

        Returns ``(manifest bytes, media type, digest)``. The digest is computed from the
        bytes and checked against ``ref`` when it is a digest and against the
        ``Docker-Content-Digest`` header when there is one; a mismatch raises
        :class:`DigestMismatch`. Raises :class:`NotFound` for an unknown repository or manifest.
        """
        resp = self.transport.send("GET", f"/v2/{repo}/manifests/{ref}", scopes=self._pull(repo), repository=repo,
                                   headers={"Accept": ", ".join(accept)}, stream=True)
        with resp:
            if resp.status_code != 200:
                raise self.transport.error(resp, f"GET manifest {repo}:{ref}")
            data = resp.raw.read(_MAX_MANIFEST + 1, decode_content=True)
            if len(data) > _MAX_MANIFEST:
                raise DistributionError(f"{self.registry}: manifest {repo}:{ref} is larger than {_MAX_MANIFEST} bytes")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest")
        digest = self._check_manifest_digest(repo, ref, data, header_digest)
        if not media_type or media_type in ("application/json", "text/plain", "application/octet-stream"):
            try:
                media_type = json.loads(data).get("mediaType") or media_type
            except (ValueError, AttributeError):
                pass
        return data, media_type, digest

    def _check_manifest_digest(self, repo: str, ref: str, data: bytes, header_digest: str | None) -> str:
        if ":" in ref:
            algo = ref.split(":", 1)[0]
            got = _digest_of(data, algo)
            if got != ref:
                raise DigestMismatch(f"{self.registry}: manifest {repo}@{ref} has digest {got}")
            return ref
        digest = _sha256(data)
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise DigestMismatch(f"{self.registry}: manifest {repo}:{ref} hashes to {digest} but the registry "
                                 f"says {header_digest}")
        return digest

    def head_manifest(self, repo: str, ref: str, accept: Sequence[str] = MANIFEST_ACCEPT) -> tuple[str, str, int] | None:
        """``HEAD /v2/<repo>/manifests/<ref>`` (spec §Checking if content exists).

        Returns ``(media type, digest, size in bytes)``, or ``None`` when the registry answers 404.
        If the registry omits ``Docker-Content-Digest`` the manifest is fetched to compute it.
        Any other error status raises.
        """
        resp = self.transport.send("HEAD", f"/v2/{repo}/manifests/{ref}", scopes=self._pull(repo), repository=repo,
                                   headers={"Accept": ", ".join(accept)})
        with resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise self.transport.error(resp, f"HEAD manifest {repo}:{ref}")
            digest = resp.headers.get("Docker-Content-Digest")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            size = int(resp.headers.get("Content-Length") or -1)
        if not digest or size < 0:
            data, media_type, digest = self.get_manifest(repo, ref, accept)
            size = len(data)
        return media_type, digest, size

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """``PUT /v2/<repo>/manifests/<ref>`` (spec §Pushing Manifests) with ``Content-Type: media_type``.

        ``ref`` is a tag or the manifest's own digest. Returns the sha256 digest of ``data``.
        Raises :class:`DigestMismatch` if ``ref`` is a digest ``data`` does not hash to, and
        :class:`DistributionError` (code ``MANIFEST_BLOB_UNKNOWN``...) when the registry rejects it.
        """
        digest = _sha256(data)
        if ":" in ref and _digest_of(data, ref.split(":", 1)[0]) != ref:
            raise DigestMismatch(f"manifest for {repo}@{ref} hashes to {digest}")
        resp = self.transport.send("PUT", f"/v2/{repo}/manifests/{ref}", scopes=self._push(repo), repository=repo,
                                   headers={"Content-Type": media_type}, data=data)
        with resp:
            if resp.status_code not in (200, 201, 202):
                raise self.transport.error(resp, f"PUT manifest {repo}:{ref}")
            echoed = resp.headers.get("Docker-Content-Digest")
        if echoed and echoed.startswith("sha256:") and echoed != digest:
            raise DigestMismatch(f"{self.registry} stored manifest {repo}:{ref} as {echoed}, expected {digest}")
        log.debug("pushed manifest %s:%s (%s)", repo, ref, digest)
        return digest

    def delete_manifest(self, repo: str, ref: str) -> None:
        """``DELETE /v2/<repo>/manifests/<digest>`` (spec §Deleting Manifests).

        A tag is first resolved to its digest (the spec deletes by digest), which deletes
        every tag pointing at that manifest. Raises :class:`NotFound` if absent.
        """
        if ":" not in ref:
            head = self.head_manifest(repo, ref)
            if head is None:
                raise NotFound(f"{self.registry}: manifest {repo}:{ref} not found", status=404)
            ref = head[1]
        resp = self.transport.send("DELETE", f"/v2/{repo}/manifests/{ref}", scopes=[f"repository:{repo}:delete"],
                                   repository=repo)
        with resp:
            if resp.status_code not in (200, 202):
                raise self.transport.error(resp, f"DELETE manifest {repo}@{ref}")

    def list_tags(self, repo: str, page_size: int | None = None) -> list[str]:
        """``GET /v2/<repo>/tags/list`` (spec §Listing Tags), following ``Link: <...>; rel="next"`` pages.

        Returns the tags in the order the registry gives them (lexical for the distribution registry).
        Raises :class:`NotFound` for an unknown repository.
        """
        url = f"/v2/{repo}/tags/list" + (f"?n={page_size}" if page_size else "")
        tags: list[str] = []
        while url:
            resp = self.transport.send("GET", url, scopes=self._pull(repo), repository=repo)
            with resp:
                if resp.status_code != 200:
                    raise self.transport.error(resp, f"list tags of {repo}")
                tags.extend(resp.json().get("tags") or [])
                link = resp.headers.get("Link", "")
            m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
            url = m.group(1) if m else ""
        return tags

    # ------------------------------------------------------------------ blobs

    def blob_exists(self, repo: str, digest: str) -> bool:
        """``HEAD /v2/<repo>/blobs/<digest>`` (spec §Checking if content exists).

        True on 200, False on 404; any other answer raises (never taken as "missing").
        """
        resp = self.transport.send("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=self._pull(repo), repository=repo)
        with resp:
            if resp.status_code == 200:
                return True
            if resp.status_code == 404:
                return False
            raise self.transport.error(resp, f"HEAD blob {repo}@{digest}")

    def get_blob(self, repo: str, digest: str, dest_path: str | os.PathLike[str], expected_size: int | None = None,
                 progress: ProgressCallback | None = None) -> int:
        """``GET /v2/<repo>/blobs/<digest>`` (spec §Pulling blobs), streamed to ``dest_path``.

        Redirects (to object storage) are followed without credentials. A broken download
        is resumed with a ``Range`` request. The bytes are hashed as they arrive; on a digest
        or size mismatch the file is removed and :class:`DigestMismatch` raised. Writes
        through a temporary file of its own in the folder of ``dest_path``
        (``<name>.<random>.part``, mode 0644), renamed to ``dest_path`` at the end, so
        several downloads to the same path (threads or processes) never mix their bytes:
        the last rename wins and every one of them leaves a verified file. Returns the size
        in bytes.
        """
        validate_digest(digest)
        dest = pathlib.Path(dest_path)
        algo = digest.split(":", 1)[0]
        h, done, total = hashlib.new(algo), 0, expected_size if expected_size is not None else -1
        failures = 0
        fd, part_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        part = pathlib.Path(part_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    headers = {"Range": f"bytes={done}-"} if done else {}
                    resp = self.transport.send("GET", f"/v2/{repo}/blobs/{digest}", scopes=self._pull(repo),
                                               repository=repo, headers=headers, stream=True)
                    with resp:
                        if resp.status_code == 200 and done:
                            out.seek(0)
                            out.truncate()
                            h, done = hashlib.new(algo), 0
                        elif resp.status_code not in (200, 206):
                            raise self.transport.error(resp, f"GET blob {repo}@{digest}")
                        if total < 0 and resp.status_code == 200 and resp.headers.get("Content-Length"):
                            total = int(resp.headers["Content-Length"])
                        try:
                            for block in _iter_available(resp):
                                out.write(block)
                                h.update(block)
                                done += len(block)
                                if progress:
                                    progress(digest, done, max(total, done))
                        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                                requests.exceptions.Timeout, urllib3.exceptions.HTTPError, OSError):
                            failures += 1
                            if failures > self.retries:
                                raise DistributionError(f"{self.registry}: download of blob {repo}@{digest} kept "
                                                    f"breaking off after {done} bytes") from None
                            log.debug("download of %s broke off at %d bytes; resuming", digest, done)
                            self.transport.sleep(failures, None)
                            continue
                    break
            got = f"{algo}:" + h.hexdigest()
            if got != digest or (expected_size is not None and done != expected_size):
                raise DigestMismatch(f"{self.registry}: blob {repo}@{digest} downloaded as {got} ({done} bytes"
                                     + (f", expected {expected_size}" if expected_size is not None else "") + ")")
            os.chmod(part, 0o644)
            os.replace(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return done

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """``POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from_repo>`` (spec §Mounting a blob from another repository).

        Asks for push on ``repo`` and pull on ``from_repo``. Returns True when the registry
        mounted the blob (201); False when it started a normal upload instead (202; that
        upload session is then used by :meth:`upload_blob`) or refused the source repository.
        """
        query = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        try:
            resp = self.transport.send("POST", f"/v2/{repo}/blobs/uploads/?{query}",
                                       scopes=self._push(repo) + [f"repository:{from_repo}:pull"], repository=repo)
        except Unauthorized as e:
            log.debug("cannot mount %s from %s into %s: %s", digest, from_repo, repo, e)
            return False
        with resp:
            if resp.status_code == 201:
                log.debug("mounted %s from %s into %s", digest, from_repo, repo)
                return True
            if resp.status_code == 202 and resp.headers.get("Location"):
                with self._lock:
                    self._pending_uploads[(repo, digest)] = self.transport.url(resp.headers["Location"])
                return False
            if resp.status_code in (401, 403, 404):
                return False
            raise self.transport.error(resp, f"mount blob {digest} from {from_repo} into {repo}")

    def start_upload(self, repo: str) -> str:
        """``POST /v2/<repo>/blobs/uploads/`` (spec §Pushing blobs): open an upload session; returns its URL."""
        resp = self.transport.send("POST", f"/v2/{repo}/blobs/uploads/", scopes=self._push(repo), repository=repo,
                                   headers={"Content-Length": "0"})
        with resp:
            if resp.status_code != 202 or not resp.headers.get("Location"):
                raise self.transport.error(resp, f"start upload to {repo}")
            return self.transport.url(resp.headers["Location"])

    def upload_status(self, repo: str, location: str) -> tuple[int, str] | None:
        """``GET <upload URL>`` (spec §Getting an upload's status): how many bytes the registry holds.

        Returns ``(offset, upload URL to continue with)``, or ``None`` when the session is gone
        or unusable (404 ``BLOB_UPLOAD_UNKNOWN``, 400 ``BLOB_UPLOAD_INVALID``, 416).
        """
        resp = self.transport.send("GET", location, scopes=self._push(repo), repository=repo)
        with resp:
            if resp.status_code in (400, 404, 416):
                return None
            if resp.status_code not in (200, 204):
                raise self.transport.error(resp, f"upload status for {repo}")
            rng = resp.headers.get("Range", "")
            m = re.fullmatch(r"(?:bytes=)?0-(-?\d+)", rng.strip())
            end = int(m.group(1)) if m else -1
            # The distribution registry reports "0-0" both for an empty session and for one byte;
            # 0 is far more likely, and if wrong the next PATCH gets 416 and the upload restarts.
            offset = end + 1 if end > 0 else 0
            return offset, self.transport.url(resp.headers.get("Location") or location)

    def patch_chunk(self, repo: str, location: str, offset: int, chunk: bytes) -> requests.Response:
        """``PATCH <upload URL>`` with ``Content-Range: <first>-<last>`` (spec §Pushing a blob in chunks).

        Returns the response (the caller reads ``Location`` from a 202); raises only on
        transport failure after connect retries (:class:`DistributionError`).
        """
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
        return self.transport.send("PATCH", location, scopes=self._push(repo), repository=repo, headers=headers,
                                   data=chunk)

    def finish_upload(self, repo: str, location: str, digest: str, data: bytes = b"") -> None:
        """``PUT <upload URL>?digest=<digest>`` (spec §Pushing blobs: closing the upload / monolithic upload).

        ``data`` is the whole blob for a monolithic upload, empty after chunks. Raises
        :class:`DistributionError` (``DIGEST_INVALID`` when the bytes do not hash to ``digest``).
        """
        parts = urllib.parse.urlsplit(location)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + [("digest", digest)]
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        headers = {"Content-Type": "application/octet-stream"}
        resp = self.transport.send("PUT", url, scopes=self._push(repo), repository=repo, headers=headers, data=data)
        with resp:
            if resp.status_code not in (201, 204):
                raise self.transport.error(resp, f"commit blob {digest} to {repo}")

    def cancel_upload(self, repo: str, location: str) -> None:
        """``DELETE <upload URL>`` (spec §Canceling an upload): end an upload session whose bytes are not wanted.

        Best effort: any answer is accepted (404 when the session is already gone); raises only
        :class:`DistributionError` on transport failure.
        """
        resp = self.transport.send("DELETE", location, scopes=self._push(repo), repository=repo)
        resp.close()

    def upload_blob(self, repo: str, source: BlobSource, progress: ProgressCallback | None = None) -> str:
        """Upload ``source`` into ``repo`` and commit it under ``source.digest``; returns the digest.

        Blobs up to ``chunk_size`` bytes: ``POST`` then one ``PUT ?digest=`` with the body
        (spec §Monolithic upload). Larger: ``POST``, ``PATCH`` chunks of ``chunk_size`` with
        ``Content-Range``, ``PUT ?digest=``. When a chunk fails (broken connection, 5xx, 429
        with ``Retry-After``) the client asks the upload URL how far it got and continues from
        there; if the registry dropped the session, the upload starts over. Bounded by
        ``retries`` consecutive failures, then :class:`UploadInterrupted`. Does not check
        whether the blob already exists (see :meth:`ensure_blob`).
        """
        digest, total = source.digest, source.size
        validate_digest(digest)
        with self._lock:
            location = self._pending_uploads.pop((repo, digest), None)
        if location is None:
            location = self.start_upload(repo)
        if progress:
            progress(digest, 0, total)
        if total <= self.chunk_size:
            with source.open() as f:
                data = f.read()
            if len(data) != total:
                raise DistributionError(f"blob {digest} has {len(data)} bytes, expected {total}")
            try:
                self.finish_upload(repo, location, digest, data)
            except DistributionError as e:
                if isinstance(e, Unauthorized) or not self.blob_exists(repo, digest):
                    raise
            if progress:
                progress(digest, total, total)
            return digest
        failures, offset = 0, 0
        with source.open() as f:
            seekable = f.seekable()
            while offset < total:
                if seekable:
                    f.seek(offset)
                chunk = f.read(min(self.chunk_size, total - offset))
                if not chunk:
                    raise DistributionError(f"blob {digest} ended after {offset} bytes, expected {total}")
                retry_after, why = None, ""
                try:
                    resp = self.patch_chunk(repo, location, offset, chunk)
                except Unauthorized:
                    raise
                except DistributionError as e:
                    why = str(e)
                else:
                    with resp:
                        if resp.status_code in (202, 204):
                            location = self.transport.url(resp.headers.get("Location") or location)
                            offset += len(chunk)
                            failures = 0
                            if progress:
                                progress(digest, offset, total)
                            continue
                        if resp.status_code not in RETRY_STATUSES | {400, 404, 416}:
                            raise self.transport.error(resp, f"upload chunk of {digest} to {repo}")
                        why = f"HTTP {resp.status_code}"
                        retry_after = self.transport.retry_after(resp)
                failures += 1
                if failures > self.retries:
                    raise UploadInterrupted(f"{self.registry}: upload of blob {digest} to {repo} failed at byte "
                                            f"{offset} of {total} after {self.retries} retries ({why})")
                log.debug("chunk at %d of %s failed (%s); asking the registry how far it got", offset, digest, why)
                self.transport.sleep(failures, retry_after)
                status = self.upload_status(repo, location) if seekable else None
                if status is None:
                    log.debug("upload session for %s is gone; starting over", digest)
                    location, offset = self.start_upload(repo), 0
                else:
                    offset, location = status
                    if offset > total:
                        location, offset = self.start_upload(repo), 0
                if not seekable and offset:
                    raise UploadInterrupted(f"{self.registry}: upload of blob {digest} broke off and its source "
                                            "cannot be reread")
                if progress:
                    progress(digest, offset, total)
        for attempt in range(1, self.retries + 2):
            try:
                self.finish_upload(repo, location, digest)
                return digest
            except Unauthorized:
                raise
            except DistributionError:
                if self.blob_exists(repo, digest):
                    return digest
                if attempt > self.retries:
                    raise
                self.transport.sleep(attempt, None)
        return digest

    def stream_upload(self, repo: str, chunk_size: int | None = None) -> "StreamUpload":
        """A chunked upload into ``repo`` of a blob whose digest is known only at its end (a layer being built):
        a :class:`StreamUpload` (a :class:`~compose_kfp.oci.layer.LayerSink`). ``chunk_size``: bytes per
        ``PATCH`` (default: this client's, at most :data:`STREAM_CHUNK_SIZE`)."""
        return StreamUpload(self, repo, chunk_size or min(self.chunk_size, STREAM_CHUNK_SIZE))

    def ensure_blob(self, repo: str, source: BlobSource, mount_from: Sequence[str] = (),
                    progress: ProgressCallback | None = None) -> str:
        """Make ``source.digest`` present in ``repo``: exists? -> mount from each of ``mount_from`` -> upload.

        Returns what happened: ``"present"``, ``"mounted"`` or ``"uploaded"``. A mount the
        registry answers with 202 costs no extra request: the upload session it opened is used
        for the upload. ``progress`` is called with ``(digest, size, size)`` for a blob that
        needed no upload.
        """
        digest = source.digest
        if self.blob_exists(repo, digest):
            result = "present"
        elif any(self.mount_blob(repo, digest, src) for src in mount_from if src != repo):
            result = "mounted"
        else:
            self.upload_blob(repo, source, progress)
            return "uploaded"
        if progress:
            progress(digest, source.size, source.size)
        return result


class StreamUpload:
    """One blob sent while it is produced: distribution spec §Pushing a blob in chunks, with the digest given
    only at the end (``POST /v2/<repo>/blobs/uploads/``, ``PATCH`` chunks with ``Content-Range``, then
    ``PUT <location>?digest=<digest>``; go-containerregistry's ``remote.Write`` of a streaming layer does the
    same). Make it with :meth:`RegistryClient.stream_upload`; it is a :class:`~compose_kfp.oci.layer.LayerSink`.

    :meth:`write` gathers bytes into chunks of at least ``chunk_size`` bytes (the pieces written, joined once)
    and hands each to a sender thread (started with the first chunk) through a queue of at most
    :attr:`QUEUE_CHUNKS` chunks, so compressing and sending overlap and memory stays about
    ``(QUEUE_CHUNKS + 2) * chunk_size`` bytes; when the registry is
    slower than the producer, :meth:`write` waits (the build is then bound by the upload). :meth:`finish`
    asks the repository for the digest (one ``HEAD``; a stream cannot ask before it knows it) and, when the
    blob is missing, commits it with the buffered rest as the final chunk; when it is there, the session is
    cancelled and :attr:`present` is set (a layer smaller than one chunk is then never sent at all; a bigger
    one stops after the chunks already handed over). :meth:`abort` gives up.

    Best effort by design: a failed request (any error, any unexpected status) ends the stream quietly
    (:attr:`error` says why, :attr:`committed` stays false) and what is written afterwards is dropped; the
    caller sends the blob again from its stored copy with :meth:`RegistryClient.upload_blob`, which resumes
    and retries. Nothing here raises, and an uncommitted upload session is left for the registry to purge.
    """

    #: Chunks waiting for the sender at most (each about ``chunk_size`` bytes): one being sent, one waiting, one
    #: being gathered is enough to keep both sides busy.
    QUEUE_CHUNKS = 1

    def __init__(self, client: RegistryClient, repo: str, chunk_size: int):
        self.client, self.repo, self.chunk_size = client, repo, max(1, chunk_size)
        self.error: str | None = None
        self.committed = False
        self.present = False
        self.sent = 0
        self._pieces: list[bytes] = []
        self._gathered = 0
        self._queue: queue.Queue = queue.Queue(self.QUEUE_CHUNKS)
        self._thread: threading.Thread | None = None
        self._location: str | None = None
        self._stop = threading.Event()

    def write(self, data: bytes) -> None:
        """Add ``data`` to the blob (dropped once the stream failed)."""
        if self.error is not None or self._stop.is_set():
            return
        self._pieces.append(data)
        self._gathered += len(data)
        if self._gathered >= self.chunk_size:  # one copy: the pieces joined into one chunk (a little over the size)
            self._put(self._take())

    def _take(self) -> bytes:
        chunk = b"".join(self._pieces)
        self._pieces, self._gathered = [], 0
        return chunk

    def finish(self, digest: str, size: int) -> None:
        """Wait for the chunks already handed to the sender, then ask the repository for ``digest`` (one
        ``HEAD``): when it has the blob, the session (if one was opened) is cancelled and :attr:`present` is
        set, so what was still buffered is never sent; otherwise the blob is committed as ``digest``
        (``size`` bytes) with ``PUT ?digest=`` carrying the buffered rest as its final chunk (a blob smaller
        than one chunk is one ``POST`` and one ``PUT``). :attr:`committed` tells whether it worked."""
        rest = self._take() if self.error is None else b""
        self._pieces, self._gathered = [], 0
        self._end()
        if self.error is not None:
            return
        if self.sent + len(rest) != size:
            self.error = f"sent {self.sent + len(rest)} bytes of a {size}-byte blob"
            return
        try:
            if self.client.blob_exists(self.repo, digest):  # keep the one already there; send no more
                self.present = True
                if self._location is not None:
                    self.client.cancel_upload(self.repo, self._location)
                return
            if self._location is None:  # no chunk was sent: one monolithic PUT
                self._location = self.client.start_upload(self.repo)
            self.client.finish_upload(self.repo, self._location, digest, rest)
            self.sent += len(rest)
            self.committed = True
        except Exception as e:  # noqa: BLE001 - best effort: the caller uploads the stored blob instead
            self.error = f"commit: {e}"
            log.debug("streamed upload of %s to %s not committed: %s", digest, self.repo, e)

    def abort(self) -> None:
        """Stop sending (the blob will not be committed). Does not wait for a chunk being sent (Ctrl-C must not
        wait for the network): the sender thread, a daemon, ends after that request."""
        self._stop.set()
        self._pieces, self._gathered = [], 0
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread = None

    def _put(self, chunk: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_all, name="stream-push", daemon=True)
            self._thread.start()
        while self.error is None and not self._stop.is_set():
            try:
                self._queue.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue

    def _end(self) -> None:
        if self._thread is None:
            return
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._thread = None

    def _send_all(self) -> None:
        """The sender thread: ``POST`` once, then one ``PATCH`` per chunk, in order."""
        try:
            location = self.client.start_upload(self.repo)
            while True:
                chunk = self._queue.get()
                if chunk is None or self._stop.is_set():
                    break
                resp = self.client.patch_chunk(self.repo, location, self.sent, chunk)
                with resp:
                    if resp.status_code not in (202, 204):
                        raise DistributionError(f"HTTP {resp.status_code} for a chunk at byte {self.sent}")
                    location = self.client.transport.url(resp.headers.get("Location") or location)
                self.sent += len(chunk)
            self._location = location
        except Exception as e:  # noqa: BLE001 - best effort (class docstring)
            self.error = str(e) or type(e).__name__
            log.debug("streamed upload to %s stopped: %s", self.repo, self.error)
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self._queue.get_nowait() is None:
                        break
                except queue.Empty:
                    break


# ---------------------------------------------------------------------- high level


@dataclasses.dataclass(frozen=True)
class ImageBlobs:
    """One image to push: its manifest (bytes and media type), its config and its layers.

    ``config`` is the config JSON bytes or a :class:`BlobSource`. ``layers`` need only the
    blobs the registry may lack; layers referenced by the manifest but not given must be
    present or mountable from ``mount_from``.
    """

    manifest: bytes
    media_type: str
    config: bytes | BlobSource
    layers: Sequence[BlobSource] = ()


def _referenced(manifest: bytes) -> list[tuple[str, int]]:
    try:
        doc = json.loads(manifest)
        items = [doc["config"]] + list(doc.get("layers") or [])
        return [(d["digest"], int(d.get("size", -1))) for d in items]
    except (ValueError, KeyError, TypeError) as e:
        raise DistributionError(f"manifest is not a valid image manifest ({type(e).__name__}: {e})") from None


@dataclasses.dataclass(frozen=True)
class _Absent:
    digest: str
    size: int

    def open(self) -> BinaryIO:
        raise DistributionError(f"blob {self.digest} is referenced by the manifest but was not given, is not in the "
                            "repository and could not be mounted")


def _push_blobs(client: RegistryClient, repo: str, image: ImageBlobs, mount_from: Sequence[str],
                progress: ProgressCallback | None, max_workers: int) -> None:
    config = BytesBlob(image.config) if isinstance(image.config, (bytes, bytearray)) else image.config
    given: dict[str, BlobSource] = {}
    for layer in image.layers:
        given.setdefault(layer.digest, layer)
    refs = _referenced(image.manifest)
    config_digest = refs[0][0]
    if config.digest != config_digest:
        raise DigestMismatch(f"the manifest names config {config_digest} but the config given is {config.digest}")
    layers = [given.get(d, _Absent(d, size)) for d, size in refs[1:]]
    unique = list({src.digest: src for src in layers if src.digest != config_digest}.values())
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, max_workers),
                                               thread_name_prefix="blob-push") as pool:
        futures = [pool.submit(client.ensure_blob, repo, src, mount_from, progress) for src in unique]
        try:
            for fut in concurrent.futures.as_completed(futures):
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    client.ensure_blob(repo, config, mount_from, progress)


def push_image(client: RegistryClient, repo: str, tags: Sequence[str], manifest_bytes: bytes, media_type: str,
               config: bytes | BlobSource, layer_sources: Sequence[BlobSource] = (),
               mount_from: str | Sequence[str] | None = None, progress: ProgressCallback | None = None,
               max_workers: int = 3) -> str:
    """Push one image and return its manifest digest.

    Order: every layer the manifest references (in parallel on ``max_workers`` threads: exists
    -> mount from ``mount_from`` -> upload), then the config, then ``PUT`` the manifest by
    digest, then each tag in ``tags``. If anything fails before the manifest is written, no tag
    is touched, so a tag never names an image with missing blobs. Layers referenced by the
    manifest but absent from ``layer_sources`` (base layers) must already be in ``repo`` or be
    mountable, else :class:`DistributionError`. Raises :class:`DigestMismatch` if ``config`` is not
    the blob the manifest names.
    """
    mounts = [mount_from] if isinstance(mount_from, str) else list(mount_from or ())
    image = ImageBlobs(manifest_bytes, media_type, config, tuple(layer_sources))
    client.authorize(repo, push=True, mount_from=mounts)
    _push_blobs(client, repo, image, mounts, progress, max_workers)
    digest = client.put_manifest(repo, _sha256(manifest_bytes), manifest_bytes, media_type)
    for tag in tags:
        client.put_manifest(repo, tag, manifest_bytes, media_type)
    return digest


def push_index(client: RegistryClient, repo: str, tags: Sequence[str], index_bytes: bytes, media_type: str,
               images: Sequence[ImageBlobs], mount_from: str | Sequence[str] | None = None,
               progress: ProgressCallback | None = None, max_workers: int = 3) -> str:
    """Push a multi-platform index: each image (blobs, then manifest by digest), then the index by digest, then tags.

    Every manifest the index lists must be among ``images`` or already in ``repo``; otherwise
    :class:`DistributionError` is raised before the index is written. Returns the index digest.
    """
    if media_type not in _INDEX_TYPES:
        raise DistributionError(f"{media_type!r} is not an index media type")
    mounts = [mount_from] if isinstance(mount_from, str) else list(mount_from or ())
    client.authorize(repo, push=True, mount_from=mounts)
    pushed = set()
    for image in images:
        _push_blobs(client, repo, image, mounts, progress, max_workers)
        pushed.add(client.put_manifest(repo, _sha256(image.manifest), image.manifest, image.media_type))
    try:
        listed = [m["digest"] for m in json.loads(index_bytes).get("manifests") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DistributionError("index is not valid JSON with a 'manifests' list") from None
    for d in listed:
        if d not in pushed and client.head_manifest(repo, d) is None:
            raise DistributionError(f"the index lists manifest {d}, which was not given and is not in {repo}")
    digest = client.put_manifest(repo, _sha256(index_bytes), index_bytes, media_type)
    for tag in tags:
        client.put_manifest(repo, tag, index_bytes, media_type)
    return digest