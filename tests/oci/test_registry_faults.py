"""Pushes and pulls through a fault-injecting proxy in front of the real registry.

Each push either completes with the right digests or fails with a clear error after its
retries; afterwards the tag is absent or complete, never broken.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time

import pytest

from compose_kfp.oci.auth import Credential, StaticKeychain
from compose_kfp.oci.errors import DistributionError
from compose_kfp.oci.registry import RegistryClient, UploadInterrupted, push_image
from tests.fixtures.registry import BASIC_PASSWORD, Fault, image_json, tar_layer

pytestmark = pytest.mark.registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHUNK = 4096
UPLOADS = r"/blobs/uploads/"


def image(seed: str, size: int = 5 * CHUNK + 100):
    layers = [tar_layer({"big.bin": random.Random(seed).randbytes(size)}), tar_layer({"small.txt": seed.encode()})]
    manifest, config = image_json(layers)
    return manifest, config, layers


def via(proxy, *, keychain=None, **kw) -> RegistryClient:
    kw.setdefault("retries", 3)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 10)
    return RegistryClient(proxy.host, keychain or StaticKeychain({}), chunk_size=CHUNK, **kw)


def assert_complete(server, repo: str, tag: str, manifest: bytes, blobs) -> None:
    """The tag resolves to ``manifest`` and every blob reads back with its digest (checked by get_blob)."""
    keychain = StaticKeychain({server.host: Credential(server.username, server.password)} if server.username else {})
    direct = RegistryClient(server.host, keychain)
    data, _, digest = direct.get_manifest(repo, tag)
    assert data == manifest and digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    for blob in blobs:
        assert direct.blob_exists(repo, blob.digest)


def tag_absent(server, repo: str, tag: str) -> bool:
    return RegistryClient(server.host, StaticKeychain({})).head_manifest(repo, tag) is None


def test_reset_before_the_chunk_reaches_the_registry_resumes_in_place(registry, fault_proxy, unique_repo):
    proxy = fault_proxy(registry)
    proxy.add(Fault("PATCH", UPLOADS, "reset", skip=2))
    manifest, config, layers = image(unique_repo)
    client = via(proxy)
    push_image(client, unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers)
    assert_complete(registry, unique_repo, "v1", manifest, layers)
    statuses = proxy.records("GET", UPLOADS)
    assert len(statuses) == 1 and statuses[0].status == 204  # asked how far it got...
    posts = [r for r in proxy.records("POST", UPLOADS) if "mount=" not in r.path]
    assert len(posts) == 3  # ...and continued the same session (one POST per blob and config, none restarted)
    patched = sum(r.bytes_in for r in proxy.records("PATCH") if r.status == 202)
    assert patched == layers[0].size  # every byte of the big layer went over exactly once


@pytest.mark.parametrize("action", ["reset_midway", "drop_response"])
def test_broken_chunk_upload_completes(registry, fault_proxy, unique_repo, action):
    proxy = fault_proxy(registry)
    proxy.add(Fault("PATCH", UPLOADS, action, skip=1))
    manifest, config, layers = image(unique_repo)
    push_image(via(proxy), unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers)
    assert_complete(registry, unique_repo, "v1", manifest, layers)
    assert proxy.records("GET", UPLOADS), "the client asked the upload URL how far it got"


def test_503_and_429_with_retry_after_are_retried(registry, fault_proxy, unique_repo):
    proxy = fault_proxy(registry)
    proxy.add(Fault("PATCH", UPLOADS, "status", status=503, skip=1, times=2))
    proxy.add(Fault("HEAD", r"/blobs/sha256:", "status", status=429, headers={"Retry-After": "1"}))
    proxy.add(Fault("PUT", r"/manifests/", "status", status=503, times=2))
    proxy.add(Fault("POST", UPLOADS, "status", status=502))
    manifest, config, layers = image(unique_repo)
    started = time.monotonic()
    push_image(via(proxy), unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers, max_workers=1)
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert_complete(registry, unique_repo, "v1", manifest, layers)
    injected = [r.status for r in proxy.records() if r.fault]
    assert sorted(injected) == [429, 502, 503, 503, 503, 503]


def test_slow_response_past_the_timeout_is_retried(registry, fault_proxy, unique_repo):
    manifest, config, layers = image(unique_repo, size=100)
    push_image(via(fault_proxy(registry)), unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers)
    proxy = fault_proxy(registry)
    slow = proxy.add(Fault("GET", r"/manifests/v1", "delay", delay=1.5))
    client = via(proxy, timeout=0.5)
    started = time.monotonic()
    assert client.get_manifest(unique_repo, "v1")[0] == manifest
    assert time.monotonic() - started < 1.5  # gave up on the slow answer and asked again
    assert (slow.seen, slow.fired) == (2, 1)


@pytest.mark.parametrize(
    "fault, expected",
    [
        (Fault("PATCH", UPLOADS, "status", status=503, times=-1), UploadInterrupted),
        (Fault("PATCH", UPLOADS, "reset_midway", times=-1), UploadInterrupted),
        (Fault("PUT", r"/manifests/sha256:", "status", status=500, times=-1), DistributionError),
        (Fault("PUT", r"/manifests/v1", "reset", times=-1), DistributionError),
        (Fault("HEAD", r"/blobs/", "delay", delay=1.0, times=-1), DistributionError),
    ],
    ids=["patch-503", "patch-reset", "manifest-500", "tag-reset", "head-timeout"],
)
def test_persistent_faults_fail_clearly_and_leave_no_broken_tag(registry, fault_proxy, unique_repo, fault, expected,
                                                                caplog):
    proxy = fault_proxy(registry)
    proxy.add(fault)
    manifest, config, layers = image(unique_repo)
    with caplog.at_level(logging.DEBUG), pytest.raises(expected) as exc:
        push_image(via(proxy, retries=2, timeout=0.4), unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers)
    message = str(exc.value)
    assert proxy.host in message and ("retries" in message or "HTTP" in message)
    assert tag_absent(registry, unique_repo, "v1")


def test_rejected_token_midway_through_a_push_is_refreshed(registry_token, fault_proxy, unique_repo):
    tokens = registry_token.token_server
    tokens.expire_next = 1
    expired = tokens.issue("tester", [f"repository:{unique_repo}:pull,push"])["token"]
    proxy = fault_proxy(registry_token)
    proxy.add(Fault("PATCH", UPLOADS, "set_headers", headers={"Authorization": "Bearer " + expired}, skip=2))
    proxy.add(Fault("PUT", r"/manifests/", "strip_auth"))
    keychain = StaticKeychain({proxy.host: Credential("tester", BASIC_PASSWORD)})
    manifest, config, layers = image(unique_repo)
    before = len(tokens.issued)
    push_image(via(proxy, keychain=keychain), unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers)
    issued = len(tokens.issued) - before
    assert_complete(registry_token, unique_repo, "v1", manifest, layers)
    rejected = [r for r in proxy.records() if r.status == 401 and r.path != "/v2/"]
    assert [r.method for r in rejected] == ["PATCH", "PUT"]  # the registry's own 401 answers
    assert issued == 3  # the first token, then one refresh per rejection


def test_broken_download_is_resumed_with_a_range_request(registry, fault_proxy, unique_repo, tmp_path):
    manifest, config, layers = image(unique_repo, size=50_000)
    push_image(via(fault_proxy(registry)), unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers)
    proxy = fault_proxy(registry)
    proxy.add(Fault("GET", r"/blobs/sha256:", "truncate_response"))
    seen = []
    size = via(proxy).get_blob(unique_repo, layers[0].digest, tmp_path / "blob",
                               progress=lambda d, done, total: seen.append((done, total)))
    assert size == layers[0].size and (tmp_path / "blob").read_bytes() == layers[0].data
    gets = proxy.records("GET", r"/blobs/sha256:")
    assert [g.fault for g in gets] == ["truncate_response", None]
    assert gets[0].bytes_out + gets[1].bytes_out == layers[0].size  # the rest, not the whole blob again
    assert seen[-1] == (layers[0].size, layers[0].size)


# --------------------------------------------------------------------------- streamed uploads (issue 17)


def _stream(client: RegistryClient, repo: str, data: bytes, piece: int = CHUNK // 4):
    """Feed ``data`` to a StreamUpload ``piece`` bytes at a time, then finish it under its digest."""
    s = client.stream_upload(repo)
    for i in range(0, len(data), piece):
        s.write(data[i:i + piece])
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    s.finish(digest, len(data))
    return s, digest


def test_streamed_upload_sends_chunks_and_commits_with_the_digest_at_the_end(registry, fault_proxy, unique_repo):
    proxy = fault_proxy(registry)
    data = random.Random(unique_repo).randbytes(5 * CHUNK + 123)
    s, digest = _stream(via(proxy), unique_repo, data)
    assert s.committed and s.error is None
    assert RegistryClient(registry.host, StaticKeychain({})).blob_exists(unique_repo, digest)
    patches = proxy.records("PATCH", UPLOADS)
    assert [r.status for r in patches] == [202] * 5 and sum(r.bytes_in for r in patches) == 5 * CHUNK
    puts = proxy.records("PUT", UPLOADS)  # the rest (123 bytes) is the closing PUT's final chunk
    assert len(puts) == 1 and "digest=sha256%3A" in puts[0].path and puts[0].status == 201
    assert puts[0].bytes_in == 123
    assert len([r for r in proxy.records("POST", UPLOADS)]) == 1


def test_streamed_upload_of_a_blob_the_repository_has_cancels_the_session(registry, fault_proxy, unique_repo):
    """The digest is known only at the end: then one HEAD finds the blob there, the upload session is cancelled
    (DELETE) and nothing is committed, so the blob counts as present, not as uploaded (the twin-project case)."""
    data = random.Random(unique_repo).randbytes(2 * CHUNK + 5)
    first, digest = _stream(RegistryClient(registry.host, StaticKeychain({})), unique_repo, data)
    assert first.committed and not first.present
    proxy = fault_proxy(registry)
    again, _ = _stream(via(proxy), unique_repo, data)
    assert not again.committed and again.present and again.error is None
    assert [r.status for r in proxy.records("HEAD", f"/blobs/{digest}")] == [200]
    assert not proxy.records("PUT", UPLOADS)
    deletes = proxy.records("DELETE", UPLOADS)
    assert len(deletes) == 1 and deletes[0].status == 204
    assert RegistryClient(registry.host, StaticKeychain({})).blob_exists(unique_repo, digest)

    proxy = fault_proxy(registry)  # smaller than one chunk: asked for before a byte is sent, and never sent
    small = random.Random(digest).randbytes(CHUNK // 2)
    _stream(RegistryClient(registry.host, StaticKeychain({})), unique_repo, small)
    third, _ = _stream(via(proxy), unique_repo, small)
    assert third.present and not third.committed
    assert [r.method for r in proxy.log if r.path != "/v2/"] == ["HEAD"]  # after the client's ping


@pytest.mark.parametrize("fault", [Fault("PATCH", UPLOADS, "reset", skip=2), Fault("PUT", UPLOADS, "status", status=500)])
def test_streamed_upload_that_breaks_gives_up_quietly_and_commits_nothing(registry, fault_proxy, unique_repo, fault):
    """A stream cannot resume (its bytes are gone once sent): any failure ends it without raising, nothing is
    committed, and the blob stays absent for the caller to upload from its stored copy."""
    proxy = fault_proxy(registry)
    proxy.add(fault)
    data = random.Random(unique_repo).randbytes(5 * CHUNK + 7)
    s, digest = _stream(via(proxy, retries=0), unique_repo, data)
    assert not s.committed and s.error
    assert not RegistryClient(registry.host, StaticKeychain({})).blob_exists(unique_repo, digest)
    if fault.method == "PATCH":  # nothing more was sent after the broken chunk
        assert len(proxy.records("PATCH", UPLOADS)) == 3 and not proxy.records("PUT", UPLOADS)
