"""Images pushed by our client, checked with tools nobody here wrote (skopeo, podman).

Also: extending a base that is already in the registry reads only its manifest and config,
never a base layer (asserted on the registry's own access log).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

from compose_kfp.localrun.runner import CONTAINERS_CONF  # the podman settings `run --local` uses (runc is asked for below)
from compose_kfp.oci.auth import StaticKeychain
from compose_kfp.oci.registry import RegistryClient, push_image
from tests.fixtures.registry import image_json, tar_layer

pytestmark = pytest.mark.registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def shell_rootfs() -> dict[str, pathlib.Path]:
    """``/bin/sh`` and the shared libraries ``ldd`` says it needs, as {path in image: host file}."""
    sh = pathlib.Path(os.path.realpath("/bin/sh"))
    files = {"bin/sh": sh}
    out = subprocess.run(["ldd", str(sh)], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+)\s+\(0x", out):
        files[lib.lstrip("/")] = pathlib.Path(os.path.realpath(lib))
    return files


@pytest.fixture(scope="module")
def base_image(registry):
    """A runnable base (``/bin/sh`` + libs) pushed to ``<registry>/base/shell:1``: (repo, manifest dict, config dict)."""
    if not shutil.which("ldd"):
        pytest.skip("ldd is not available to collect /bin/sh's libraries")
    layer = tar_layer(shell_rootfs())
    manifest, config = image_json([layer], cmd=["/bin/sh"])
    repo = "base/shell"
    push_image(RegistryClient(registry.host, StaticKeychain({})), repo, ["1"], manifest, OCI_MANIFEST, config, [layer])
    return repo, json.loads(manifest), json.loads(config)


def extend(client: RegistryClient, base_repo: str, repo: str, tag: str, files: dict[str, bytes], tmp_path):
    """Extend ``base_repo:1`` the way compose-kfp does: read its manifest and config only, add one layer."""
    data, _, _ = client.get_manifest(base_repo, "1")
    base_manifest = json.loads(data)
    config_path = tmp_path / "base-config.json"
    client.get_blob(base_repo, base_manifest["config"]["digest"], config_path)
    layer = tar_layer(files)
    manifest, config = image_json([layer], base=(base_manifest, json.loads(config_path.read_text())),
                                  cmd=["/bin/sh", "-c", "read line < /hello.txt; echo \"$line\""])
    digest = push_image(client, repo, [tag], manifest, OCI_MANIFEST, config, [layer], mount_from=base_repo)
    return digest, manifest, layer


def test_extending_a_base_downloads_no_base_layer(registry, base_image, unique_repo, tmp_path):
    base_repo, base_manifest, _ = base_image
    mark = len(registry.requests())
    client = RegistryClient(registry.host, StaticKeychain({}))
    extend(client, base_repo, unique_repo, "v1", {"hello.txt": b"hi\n"}, tmp_path)
    rows = registry.requests()[mark:]
    blob_gets = [r for r in rows if r.method == "GET" and "/blobs/sha256:" in r.path]
    assert [r.path.rsplit("/", 1)[1] for r in blob_gets] == [base_manifest["config"]["digest"]]
    base_layers = {d["digest"] for d in base_manifest["layers"]}
    assert registry.bytes_served("|".join(re.escape(d) for d in base_layers)) == 0
    posts = {r.path.split("mount=")[1].split("&")[0].replace("%3A", ":"): r.status
             for r in rows if r.method == "POST" and "mount=" in r.path}
    assert {posts[d] for d in base_layers} == {201}  # base layers mounted, not uploaded
    # other blobs: the 202 upload session the mount attempt opened is used for the upload (no extra POST)
    assert set(posts.values()) <= {201, 202}
    assert not [r for r in rows if r.method == "POST" and "mount=" not in r.path]


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed")
def test_skopeo_copies_and_inspects_our_image(registry, base_image, unique_repo, tmp_path):
    client = RegistryClient(registry.host, StaticKeychain({}))
    digest, manifest, layer = extend(client, base_image[0], unique_repo, "v1", {"hello.txt": b"hi\n"}, tmp_path)
    src = f"docker://{registry.host}/{unique_repo}:v1"
    (tmp_path / "auth.json").write_text("{}")
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", src], capture_output=True, text=True,
                             env=env, timeout=120)
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout)
    assert info["Digest"] == digest and info["Layers"][-1] == layer.digest
    dest = tmp_path / "copy"
    copy = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", src, f"oci:{dest}:v1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert copy.returncode == 0, copy.stderr
    index = json.loads((dest / "index.json").read_text())
    copied = index["manifests"][0]["digest"]
    assert (dest / "blobs" / "sha256" / copied.split(":")[1]).read_bytes() == manifest


@pytest.mark.podman
@pytest.mark.skipif(not (shutil.which("podman") and shutil.which("runc")), reason="podman and runc are needed")
def test_podman_pulls_and_runs_our_extended_image(registry, base_image, unique_repo, tmp_path):
    client = RegistryClient(registry.host, StaticKeychain({}))
    extend(client, base_image[0], unique_repo, "v1", {"hello.txt": b"hello from compose-kfp\n"}, tmp_path)
    conf = tmp_path / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    (tmp_path / "auth.json").write_text("{}")
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    runroot = pathlib.Path(tempfile.mkdtemp(prefix="ckfp-"))  # podman wants a runroot under 50 characters
    podman = ["podman", "--root", str(tmp_path / "root"), "--runroot", str(runroot), "--storage-driver", "vfs"]
    ref = f"{registry.host}/{unique_repo}:v1"
    try:
        pull = subprocess.run(podman + ["pull", "--tls-verify=false", ref], capture_output=True, text=True, env=env,
                              timeout=300)
        assert pull.returncode == 0, pull.stderr
        run = subprocess.run(podman + ["run", "--rm", "--runtime", "runc", "--network", "none", ref],
                             capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "hello from compose-kfp\n"
    finally:
        subprocess.run(podman + ["system", "reset", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(runroot, ignore_errors=True)
