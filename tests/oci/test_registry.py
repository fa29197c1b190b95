"""The distribution API client against the real CNCF registry, in its three auth variants."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import pathlib
import socket

import pytest

from compose_kfp.oci.auth import AuthFileKeychain, Credential, StaticKeychain
from compose_kfp.oci.errors import Unauthorized, DigestMismatch, NotFound, DistributionError
from compose_kfp.oci.registry import (
    MANIFEST_ACCEPT,
    BytesBlob,
    FileBlob,
    ImageBlobs,
    RegistryClient,
    push_image,
    push_index,
)
from tests.fixtures.registry import BASIC_PASSWORD, Fault, FaultProxy, closed_port, image_json, tar_layer

pytestmark = pytest.mark.registry

VARIANTS = ["registry", "registry_basic", "registry_token"]
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(params=VARIANTS)
def server(request):
    return request.getfixturevalue(request.param)


def client_for(server, *, password=None, chunk_size=4096, **kw) -> RegistryClient:
    if server.username:
        cred = Credential(username=server.username, password=password or server.password, source="test keychain")
        keychain = StaticKeychain({server.host: cred})
    else:
        keychain = StaticKeychain({})
    kw.setdefault("backoff", 0.01)
    return RegistryClient(server.host, keychain, chunk_size=chunk_size, **kw)


def small_image(seed: str, big: int = 10_000):
    """Two layers: one larger than the 4 KiB test chunk size (chunked upload), one small (monolithic)."""
    big_data = random.Random(seed).randbytes(big)  # incompressible
    layers = [tar_layer({"data/big.bin": big_data}), tar_layer({"etc/hello.txt": f"hello {seed}\n".encode()})]
    manifest, config = image_json(layers, cmd=["/bin/true"])
    return manifest, config, layers


def test_push_pull_roundtrip_by_tag_and_digest(server, unique_repo, tmp_path, caplog):
    manifest, config, layers = small_image(unique_repo)
    assert layers[0].size > 4096 >= layers[1].size
    seen: dict[str, tuple[int, int]] = {}
    with caplog.at_level(logging.DEBUG), client_for(server) as client:
        digest = push_image(client, unique_repo, ["v1", "latest"], manifest, OCI_MANIFEST, config, layers,
                            progress=lambda d, done, total: seen.__setitem__(d, (done, total)))
        assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
        for ref in ("v1", "latest", digest):
            data, media_type, got = client.get_manifest(unique_repo, ref)
            assert (data, media_type, got) == (manifest, OCI_MANIFEST, digest)
        assert client.head_manifest(unique_repo, "v1") == (OCI_MANIFEST, digest, len(manifest))
        for blob in [*layers, BytesBlob(config)]:
            dest = tmp_path / blob.digest.replace(":", "_")
            assert client.get_blob(unique_repo, blob.digest, dest, expected_size=blob.size) == blob.size
            assert FileBlob(dest).digest == blob.digest
            assert seen[blob.digest] == (blob.size, blob.size)
        assert client.list_tags(unique_repo) == ["latest", "v1"]
        assert client.list_tags(unique_repo, page_size=1) == ["latest", "v1"]  # Link pagination
    if server.password:
        assert server.password not in caplog.text


def test_push_an_image_built_with_the_oci_core(server, unique_repo, tmp_path):
    from compose_kfp.oci.image import ImageConfig, Manifest, append
    from compose_kfp.oci.layer import build_mapping_layer

    store = tmp_path / "store"
    layers = [
        build_mapping_layer({"/app/data.bin": random.Random(unique_repo).randbytes(9000)}, store=store),
        build_mapping_layer({"/app/main.py": b"print('hi')\n"}, store=store),
    ]
    manifest, config = append(None, None, layers, platform="linux/amd64", cmd=["python3", "/app/main.py"])
    with client_for(server) as client:
        digest = push_image(client, unique_repo, ["core"], manifest.to_bytes(), manifest.effective_media_type,
                            config.to_bytes(), layers)
        assert digest == manifest.digest
        for ref in ("core", digest):
            data, media_type, got = client.get_manifest(unique_repo, ref)
            pulled = Manifest.from_bytes(data, media_type)
            assert got == digest and pulled.digest == digest
        assert [d.digest for d in pulled.layers] == [layer.digest for layer in layers]
        client.get_blob(unique_repo, pulled.config.digest, tmp_path / "config.json")
        pulled_config = ImageConfig.from_bytes((tmp_path / "config.json").read_bytes())
        assert pulled_config.rootfs.diff_ids == [layer.diff_id for layer in layers]
        for layer in layers:
            client.get_blob(unique_repo, layer.digest, tmp_path / "layer", expected_size=layer.size)
            with layer.open() as f:
                assert (tmp_path / "layer").read_bytes() == f.read()


def test_second_push_uploads_nothing(registry, fault_proxy, unique_repo):
    proxy = fault_proxy(registry)
    manifest, config, layers = small_image(unique_repo)
    client = RegistryClient(proxy.host, StaticKeychain({}), chunk_size=4096)
    first = push_image(client, unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers)
    uploaded = proxy.bytes_in
    assert uploaded >= sum(blob.size for blob in layers) + len(config)
    assert push_image(client, unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers) == first
    assert proxy.bytes_in - uploaded == 2 * len(manifest)  # only the manifest PUTs (by digest, by tag)
    assert not proxy.records("PATCH", rf"/v2/{unique_repo}/blobs/uploads/")[3:]  # 3 PATCHes, first push only


def test_wrong_credentials_are_refused(request, unique_repo, caplog, capsys):
    for name in ("registry_basic", "registry_token"):
        server = request.getfixturevalue(name)
        with caplog.at_level(logging.DEBUG):
            client = client_for(server, password="wrong-" + BASIC_PASSWORD)
            with pytest.raises(Unauthorized) as exc:
                client.blob_exists(unique_repo, "sha256:" + "0" * 64)
        message = str(exc.value)
        assert server.host in message and "refused the credentials" in message and "'tester'" in message
        assert BASIC_PASSWORD not in message + caplog.text + repr(client) + str(capsys.readouterr())
        anonymous = RegistryClient(server.host, StaticKeychain({}))
        with pytest.raises(Unauthorized, match=rf"{server.host} requires credentials and none were found"):
            anonymous.head_manifest(unique_repo, "latest")


def test_credentials_from_docker_config_file(registry_basic, unique_repo, tmp_path):
    import base64

    cfg = tmp_path / "config.json"
    auth = base64.b64encode(f"{registry_basic.username}:{registry_basic.password}".encode()).decode()
    cfg.write_text(json.dumps({"auths": {f"http://{registry_basic.host}": {"auth": auth}}}))
    client = RegistryClient(registry_basic.host, AuthFileKeychain(cfg))
    assert client.ping() == "basic"
    assert client.head_manifest(unique_repo, "nope") is None


def test_identity_token_and_token_cache(registry_token, unique_repo):
    tokens = registry_token.token_server
    tokens.refresh_tokens["refresh-" + BASIC_PASSWORD] = registry_token.username
    keychain = StaticKeychain({registry_token.host: Credential(identity_token="refresh-" + BASIC_PASSWORD)})
    client = RegistryClient(registry_token.host, keychain, chunk_size=4096)
    before = len(tokens.issued)
    manifest, config, layers = small_image(unique_repo)
    digest = push_image(client, unique_repo, ["t"], manifest, OCI_MANIFEST, config, layers)
    assert client.get_manifest(unique_repo, "t")[2] == digest
    assert client.blob_exists(unique_repo, layers[0].digest)
    issued = tokens.issued[before:]
    # one pull+push token serves the whole push and the pulls after it
    assert issued == [("tester", [f"repository:{unique_repo}:pull,push"])]


def test_expired_token_is_refreshed_once(registry_token, unique_repo):
    tokens = registry_token.token_server
    client = client_for(registry_token)
    manifest, config, layers = small_image(unique_repo)
    push_image(client, unique_repo, ["t"], manifest, OCI_MANIFEST, config, layers)
    before = len(tokens.issued)
    tokens.expire_next = 1  # the next token is already expired: the registry itself answers 401
    client2 = client_for(registry_token)
    assert client2.get_manifest(unique_repo, "t")[0] == manifest
    assert len(tokens.issued) - before == 2
    tokens.expire_next = 2  # expired twice in a row: refreshed only once, then a clear error
    client3 = client_for(registry_token)
    with pytest.raises(Unauthorized, match="refused the credentials"):
        client3.get_manifest(unique_repo, "t")
    tokens.expire_next = 0


def test_missing_things(server, unique_repo, tmp_path):
    client = client_for(server)
    missing = "sha256:" + "1" * 64
    assert client.blob_exists(unique_repo, missing) is False
    assert client.head_manifest(unique_repo, "nope") is None
    with pytest.raises(NotFound) as exc:
        client.get_manifest(unique_repo, "nope")
    assert exc.value.status == 404 and exc.value.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
    with pytest.raises(NotFound):
        client.get_blob(unique_repo, missing, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary .part file
    with pytest.raises(NotFound):
        client.list_tags(unique_repo)


def test_concurrent_downloads_of_one_blob_to_one_path(registry, unique_repo, tmp_path):
    """Two threads download the same blob to the same path at the same time: both succeed, the file verifies."""
    import concurrent.futures
    import threading

    manifest, config, layers = small_image(unique_repo, big=300_000)
    blob = layers[0]
    dest = tmp_path / "blob"
    started = threading.Barrier(2)
    first_block = threading.local()

    def hold_at_first_block(digest, done, total):
        # Both downloads have opened their temporary file and written a block before either goes on, so the
        # old shared ``<dest>.part`` would be truncated by one under the other and renamed away from it.
        if not getattr(first_block, "seen", False):
            first_block.seen = True
            started.wait(timeout=30)

    with client_for(registry) as client:
        push_image(client, unique_repo, ["v1"], manifest, OCI_MANIFEST, config, layers)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(client.get_blob, unique_repo, blob.digest, dest, blob.size, hold_at_first_block)
                       for _ in range(2)]
            sizes = [f.result() for f in futures]
    assert sizes == [blob.size, blob.size]
    assert FileBlob(dest).digest == blob.digest and dest.stat().st_size == blob.size
    assert [p.name for p in tmp_path.iterdir()] == ["blob"]  # no temporary file left behind


def test_delete_manifest(registry, unique_repo):
    client = client_for(registry)
    manifest, config, layers = small_image(unique_repo)
    digest = push_image(client, unique_repo, ["gone"], manifest, OCI_MANIFEST, config, layers)
    client.delete_manifest(unique_repo, "gone")
    assert client.head_manifest(unique_repo, digest) is None
    with pytest.raises(NotFound):
        client.delete_manifest(unique_repo, "gone")


def _blob_data_path(server, digest: str) -> pathlib.Path:
    hexd = digest.split(":", 1)[1]
    return server.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def test_corrupted_blob_and_manifest_are_detected(registry, unique_repo, tmp_path):
    client = client_for(registry)
    manifest, config, layers = small_image(unique_repo)
    digest = push_image(client, unique_repo, ["t"], manifest, OCI_MANIFEST, config, layers)
    path = _blob_data_path(registry, layers[1].digest)
    path.write_bytes(b"X" * layers[1].size)  # same size, other bytes
    with pytest.raises(DigestMismatch, match=layers[1].digest):
        client.get_blob(unique_repo, layers[1].digest, tmp_path / "layer")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
    _blob_data_path(registry, digest).write_bytes(manifest.replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    with pytest.raises(DigestMismatch):
        client.get_manifest(unique_repo, digest)
    with pytest.raises(DigestMismatch):
        client.get_manifest(unique_repo, "t")  # by tag: body vs Docker-Content-Digest


def test_push_refuses_incomplete_images(registry, unique_repo):
    client = client_for(registry)
    manifest, config, layers = small_image(unique_repo)
    with pytest.raises(DistributionError, match="referenced by the manifest but was not given"):
        push_image(client, unique_repo, ["t"], manifest, OCI_MANIFEST, config, layers[:1])
    with pytest.raises(DigestMismatch, match="config"):
        push_image(client, unique_repo, ["t"], manifest, OCI_MANIFEST, config + b" ", layers)
    assert client.head_manifest(unique_repo, "t") is None
    # the registry itself also refuses a manifest whose blobs are missing
    with pytest.raises(DistributionError) as exc:
        client.put_manifest(unique_repo, "t", manifest, OCI_MANIFEST)
    assert exc.value.code == "MANIFEST_BLOB_UNKNOWN"


def test_cross_repository_mount(server, unique_repo):
    client = client_for(server)
    manifest, config, layers = small_image(unique_repo)
    push_image(client, unique_repo + "-base", ["b"], manifest, OCI_MANIFEST, config, layers)
    other = client_for(server)
    assert other.mount_blob(unique_repo + "-app", layers[0].digest, unique_repo + "-base") is True
    assert other.blob_exists(unique_repo + "-app", layers[0].digest)
    # the layer sources are not needed: blobs are mounted from the base repository
    descriptors = [type("D", (), {"digest": b.digest, "size": b.size})() for b in layers]
    digest = push_image(other, unique_repo + "-app", ["a"], manifest, OCI_MANIFEST, config, descriptors,
                        mount_from=unique_repo + "-base")
    assert other.get_manifest(unique_repo + "-app", "a")[2] == digest
    # unknown blob in the source repository: 202, falls back to an upload through that session
    fresh = tar_layer({"new.txt": unique_repo.encode()})
    assert other.mount_blob(unique_repo + "-app", fresh.digest, unique_repo + "-base") is False
    other.upload_blob(unique_repo + "-app", fresh)
    assert other.blob_exists(unique_repo + "-app", fresh.digest)


def test_push_index(server, unique_repo):
    client = client_for(server)
    images, entries = [], []
    for arch in ("amd64", "arm64"):
        layers = [tar_layer({"arch.txt": arch.encode()})]
        manifest, config = image_json(layers)
        config = config.replace(b'"amd64"', f'"{arch}"'.encode())
        doc = json.loads(manifest)
        doc["config"]["digest"] = BytesBlob(config).digest
        doc["config"]["size"] = len(config)
        manifest = json.dumps(doc).encode()
        images.append(ImageBlobs(manifest, OCI_MANIFEST, config, layers))
        entries.append({"mediaType": OCI_MANIFEST, "digest": BytesBlob(manifest).digest, "size": len(manifest),
                        "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    digest = push_index(client, unique_repo, ["multi"], index, OCI_INDEX, images)
    assert client.get_manifest(unique_repo, "multi") == (index, OCI_INDEX, digest)
    for entry in entries:
        assert client.get_manifest(unique_repo, entry["digest"])[2] == entry["digest"]
    bad = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                      "manifests": [{**entries[0], "digest": "sha256:" + "2" * 64}]}).encode()
    with pytest.raises(DistributionError, match="not given and is not in"):
        push_index(client, unique_repo, ["bad"], bad, OCI_INDEX, [])
    assert client.head_manifest(unique_repo, "bad") is None


def test_accept_list_covers_oci_and_docker():
    assert set(MANIFEST_ACCEPT) == {
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json"}


def _non_loopback_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def test_no_credentials_over_plain_http_to_remote_hosts(registry_basic, unique_repo, caplog):
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback address on this machine")
    proxy = FaultProxy(registry_basic, bind=ip)
    try:
        client = RegistryClient(proxy.host, StaticKeychain({proxy.host: Credential("tester", BASIC_PASSWORD)}),
                                insecure=True)
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(Unauthorized, match="refusing to send credentials .* over plain HTTP"):
                client.head_manifest(unique_repo, "latest")
        assert proxy.records() and all(r.authorization is None for r in proxy.records())
        assert BASIC_PASSWORD not in caplog.text
    finally:
        proxy.stop()


def _issue_certs(work: pathlib.Path) -> dict[str, pathlib.Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, key, issuer, issuer_key, *, ca=False, san=None, usage=None):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(path, obj):
        if isinstance(obj, ec.EllipticCurvePrivateKey):
            data = obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        else:
            data = obj.public_bytes(serialization.Encoding.PEM)
        path.write_bytes(data)
        return path

    ca_key, srv_key, cli_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = cert("compose-kfp test CA", ca_key, "compose-kfp test CA", ca_key, ca=True)
    srv = cert("127.0.0.1", srv_key, "compose-kfp test CA", ca_key,
               san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], usage=ExtendedKeyUsageOID.SERVER_AUTH)
    cli = cert("compose-kfp test client", cli_key, "compose-kfp test CA", ca_key,
               usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"ca": write(work / "ca.pem", ca), "server_cert": write(work / "server.pem", srv),
            "server_key": write(work / "server.key", srv_key), "client_cert": write(work / "client.pem", cli),
            "client_key": write(work / "client.key", cli_key)}


@pytest.fixture(scope="module")
def registry_tls(tmp_path_factory):
    """A registry serving HTTPS with a test CA and requiring a client certificate from that CA."""
    from tests.fixtures.registry import RegistryServer, _require_registry

    _require_registry()
    work = tmp_path_factory.mktemp("registry-tls")
    certs = _issue_certs(work)
    server = RegistryServer(work, tls={"certificate": str(certs["server_cert"]), "key": str(certs["server_key"]),
                                       "clientcas": [str(certs["ca"])]})
    server.certs = certs
    yield server
    server.stop()


def test_tls_with_certs_d_folder(registry_tls, unique_repo, tmp_path):
    certs = registry_tls.certs
    certs_d = tmp_path / "certs.d"
    folder = certs_d / registry_tls.host
    folder.mkdir(parents=True)
    (folder / "ca.crt").write_bytes(certs["ca"].read_bytes())
    (folder / "client.cert").write_bytes(certs["client_cert"].read_bytes())
    (folder / "client.key").write_bytes(certs["client_key"].read_bytes())
    client = RegistryClient(registry_tls.host, StaticKeychain({}), insecure=False, ca_dirs=[certs_d],
                            chunk_size=4096)
    assert client.base_url.startswith("https://")
    manifest, config, layers = small_image(unique_repo)
    digest = push_image(client, unique_repo, ["tls"], manifest, OCI_MANIFEST, config, layers)
    assert client.get_manifest(unique_repo, "tls")[2] == digest
    # explicit paths instead of a certs.d folder
    explicit = RegistryClient(registry_tls.host, StaticKeychain({}), insecure=False, ca_dirs=[],
                              ca_file=certs["ca"], client_cert=(str(certs["client_cert"]), str(certs["client_key"])))
    assert explicit.head_manifest(unique_repo, "tls")[1] == digest
    # unknown CA: a clear TLS error that says where the CA certificate goes
    with pytest.raises(DistributionError, match=r"TLS verification of 127\.0\.0\.1:\d+ failed.*certs\.d"):
        RegistryClient(registry_tls.host, StaticKeychain({}), insecure=False, ca_dirs=[], retries=0).ping()
    # trusted CA but no client certificate: the handshake is refused
    with pytest.raises(DistributionError):
        RegistryClient(registry_tls.host, StaticKeychain({}), insecure=False, ca_dirs=[], ca_file=certs["ca"],
                       retries=0).ping()


def test_refused_connection_fails_at_once_and_says_nothing_listens():
    import time

    host = f"127.0.0.1:{closed_port()}"
    client = RegistryClient(host, StaticKeychain({}), retries=5, backoff=0.5)  # defaults would wait ~18 s
    started = time.monotonic()
    with pytest.raises(DistributionError) as exc:
        client.head_manifest("team/app", "v1")
    assert time.monotonic() - started < 1.0  # not retried with backoff
    message = str(exc.value)
    assert host in message and "nothing is listening" in message and "connection refused" in message
    assert "retries" not in message


def test_refused_connection_is_told_from_a_reset(registry, fault_proxy):
    from compose_kfp.oci.transport import connection_refused

    proxy = fault_proxy(registry)
    proxy.add(Fault("GET", r"/v2/", "reset", times=-1))
    with pytest.raises(DistributionError) as exc:
        RegistryClient(proxy.host, StaticKeychain({}), retries=2, backoff=0.01).ping()
    assert "after 2 retries" in str(exc.value) and "nothing is listening" not in str(exc.value)
    assert len(proxy.records("GET", r"/v2/")) == 3  # a reset is still retried
    assert connection_refused(ConnectionRefusedError(111, "Connection refused"))
    assert not connection_refused(ConnectionResetError(104, "Connection reset by peer"))
