"""Registry errors met while observing name the kfp.toml key whose value named the registry."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.cli import run
from tests.fixtures.registry import closed_port as _closed_port


@pytest.fixture
def project(scratch_project):
    """The one-step project on `scratch` (oci: destination)."""
    return scratch_project


@pytest.mark.parametrize("flag, key, value", [
    ("--repository", "image.repository", "127.0.0.1:{port}/team/app"),
    ("--base", "image.base", "127.0.0.1:{port}/team/base:1"),
])
def test_registry_that_is_down_fails_fast_naming_the_key(project, flag, key, value):  # noqa: F811
    value = value.format(port=_closed_port())
    started = time.monotonic()
    code, out, err = run("-C", str(project), "plan", flag, value)
    assert time.monotonic() - started < 5  # was 18 s of retries with backoff
    assert code == 4, err
    assert f"{key}: {value!r}: " in err and "nothing is listening" in err
    assert value.split("/")[0] in err


# --------------------------------------------------------------------------- the base image, wherever it lives

import json  # noqa: E402

from compose_kfp.oci import image as I  # noqa: E402
from compose_kfp.oci.auth import StaticKeychain  # noqa: E402
from compose_kfp.oci.layer import build_mapping_layer  # noqa: E402
from compose_kfp.oci.layout import OCILayout  # noqa: E402
from compose_kfp.oci.registry import RegistryClient  # noqa: E402
from tests.fixtures.cli import SCRATCH_MANIFEST, write_cli_project  # noqa: E402
from tests.fixtures.registry import MemBlob, tar_layer  # noqa: E402

ARTIFACT_CONFIG = "application/vnd.oci.custom.artifact.config.v1+json"


def _artifact() -> tuple[bytes, list[MemBlob]]:
    """An OCI artifact manifest (custom config media type) and its blobs (config, one layer)."""
    config = MemBlob(b"{}", ARTIFACT_CONFIG)
    layer = tar_layer({"/hello.txt": b"hi\n"})
    manifest = {"schemaVersion": 2, "mediaType": I.MEDIA_TYPE_OCI_MANIFEST, "config": config.descriptor(),
                "layers": [layer.descriptor()]}
    return json.dumps(manifest, separators=(",", ":")).encode(), [config, layer]


def _project_on(folder, base: str, platforms: str | None = None):
    text = SCRATCH_MANIFEST.replace('base = "scratch"', f'base = "{base}"')
    if platforms:
        text = text.replace('repository = "oci:build/image"', f'repository = "oci:build/image"\nplatforms = {platforms}')
    return write_cli_project(folder, text)


def _plan_json(project) -> dict:
    code, out, err = run("-C", str(project), "plan", "--json")
    assert code in (0, 2), err
    return json.loads(out)


def _base_of(plan: dict) -> str:
    return plan["images"][0]["platforms"][0]["base"]["after"]


def _image(platform: str, store, marker: bytes = b"") -> tuple[I.Manifest, I.ImageConfig, object]:
    layer = build_mapping_layer({"/etc/os-release": b"ID=tiny\n", "/etc/platform": platform.encode() + marker},
                                store=str(store))
    manifest, config = I.append(None, None, [layer], env={"PYTHON_VERSION": "3.11.7"}, platform=platform)
    return manifest, config, layer


def test_an_artifact_base_is_the_same_input_error_from_a_layout_and_a_registry(tmp_path, registry, unique_repo):
    """Issue 19.6: exit 1 and the image.base key with its line, from an OCI layout and from a registry alike."""
    raw, blobs = _artifact()
    client = RegistryClient(registry.host, StaticKeychain({}))
    try:
        for blob in blobs:
            client.upload_blob(unique_repo, blob)
        client.put_manifest(unique_repo, "v1", raw, I.MEDIA_TYPE_OCI_MANIFEST)
    finally:
        client.close()
    layout = OCILayout.create(tmp_path / "from-layout" / "base")
    for blob in blobs:
        layout.store.put_bytes(blob.data)
    layout.store.put_bytes(raw)
    (layout.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": I.MEDIA_TYPE_OCI_MANIFEST, "digest": I.sha256_digest(raw), "size": len(raw),
        "annotations": {I.ANNOTATION_REF_NAME: "v1"}}]}))
    answers = []
    for folder, base in ((tmp_path / "from-layout", "oci:base:v1"),
                         (tmp_path / "from-registry", f"{registry.host}/{unique_repo}:v1")):
        folder.mkdir(exist_ok=True)
        project = _project_on(folder, base)
        code, _, err = run("-C", str(project), "plan")
        assert code == 1, err
        line = next(i for i, text in enumerate(SCRATCH_MANIFEST.splitlines(), 1) if text.startswith("base ="))
        prefix = f"error: {project / 'kfp.toml'}:{line}: image.base: {base!r}: "
        assert err.startswith(prefix), err
        answers.append(err[len(prefix):])
    assert answers[0] == answers[1]
    assert "not a runnable image" in answers[0] and ARTIFACT_CONFIG in answers[0]


def test_a_platform_only_in_a_nested_index_is_found_in_a_registry_and_a_layout(tmp_path, registry, unique_repo):
    """Issue 19.10: the OCI image spec's nested index; linux/arm64 is only in the inner index."""
    from compose_kfp.oci.registry import ImageBlobs, push_index
    from compose_kfp.planner import build_index

    amd = _image("linux/amd64", tmp_path / "blobs")
    arm = _image("linux/arm64", tmp_path / "blobs")
    inner = build_index([(arm[0].digest, arm[0].size, "linux/arm64")], "oci")
    inner_desc = I.Descriptor.of(inner, I.MEDIA_TYPE_OCI_INDEX)
    outer = build_index([(amd[0].digest, amd[0].size, "linux/amd64")], "oci")
    outer = outer.model_copy(update={"manifests": list(outer.manifests) + [inner_desc]})
    client = RegistryClient(registry.host, StaticKeychain({}))
    try:
        push_index(client, unique_repo, [], inner.raw_bytes(), I.MEDIA_TYPE_OCI_INDEX,
                   [ImageBlobs(arm[0].raw_bytes(), arm[0].effective_media_type, arm[1].raw_bytes(), [arm[2]])])
        push_index(client, unique_repo, ["v1"], outer.raw_bytes(), I.MEDIA_TYPE_OCI_INDEX,
                   [ImageBlobs(amd[0].raw_bytes(), amd[0].effective_media_type, amd[1].raw_bytes(), [amd[2]])])
    finally:
        client.close()
    layout = OCILayout.create(tmp_path / "from-layout" / "base")
    layout.write_index([], inner, [arm[:2]], layers=[arm[2]])
    layout.write_index("v1", outer, [amd[:2]], layers=[amd[2]])
    for folder, base in ((tmp_path / "from-layout", "oci:base:v1"),
                         (tmp_path / "from-registry", f"{registry.host}/{unique_repo}:v1")):
        folder.mkdir(exist_ok=True)
        project = _project_on(folder, base, '["linux/arm64"]')
        assert _base_of(_plan_json(project)) == arm[0].digest


def test_a_layout_base_skips_a_listed_platform_whose_manifest_is_absent(tmp_path):
    """Issue 19.9: the index lists linux/arm/v6 twice; the first entry's blobs were never copied."""
    absent = _image("linux/arm/v6", tmp_path / "elsewhere", b" (not copied)")
    there = _image("linux/arm/v6", tmp_path / "blobs")
    index = I.Index(schema_version=2, media_type=I.MEDIA_TYPE_OCI_INDEX, manifests=[
        absent[0].descriptor(platform=I.Platform.parse("linux/arm/v6")),
        there[0].descriptor(platform=I.Platform(os="linux", architecture="arm", variant="6"))])
    layout = OCILayout.create(tmp_path / "base")
    layout.write_image(None, there[0], there[1], layers=[there[2]])
    layout.store.put_bytes(index.raw_bytes())
    (layout.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": I.MEDIA_TYPE_OCI_INDEX, "digest": index.digest, "size": index.size,
        "annotations": {I.ANNOTATION_REF_NAME: "v1"}}]}))
    project = _project_on(tmp_path, "oci:base:v1", '["linux/arm/v6"]')
    assert _base_of(_plan_json(project)) == there[0].digest


_WARM_PROBE = '''
import json, sys, threading
started = []
_start = threading.Thread.start


def start(self, *a, **k):
    started.append(self.name)
    return _start(self, *a, **k)


threading.Thread.start = start
out = sys.argv[1]
sys.argv = ["compose-kfp"] + sys.argv[2:]
try:
    from compose_kfp.cli import main
    main()
finally:
    with open(out, "w") as f:
        json.dump({"threads": started, "modules": sorted(sys.modules)}, f)
'''

#: Libraries a command on an unchanged project must not load: what it does needs none of them. (pathspec is
#: loaded: ``load_project`` checks that no ignore pattern leaves a step's file out of its image.)
_WARM_UNUSED = ("jinja2", "yaml", "filelock", "kfp", "rich", "charset_normalizer.api")


@pytest.mark.registry
@pytest.mark.parametrize("command", [["plan", "--exit-code"], ["apply", "-y"]])
def test_unchanged_project_starts_no_thread_and_loads_no_unused_library(project_factory, registry, tmp_path,
                                                                        command):
    """Issue 17: a no-op plan/apply recognises every layer from its files' lstat on the calling thread (no
    observe-layer pool, no layer-tar thread) and imports neither the template engine, YAML, the file lock, the KFP SDK, rich (-q prints nothing) nor the charset detector of requests."""
    import json
    import os
    import subprocess
    import sys

    root = project_factory()
    assert run("-C", str(root), "-q", "apply", "-y")[0] == 0
    report = tmp_path / "probe.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", _WARM_PROBE, str(report), "-q", "-C", str(root), *command],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(report.read_text())
    assert found["threads"] == [], found["threads"]
    loaded = set(found["modules"])
    assert not [m for m in _WARM_UNUSED if m in loaded or any(x.startswith(m + ".") for x in loaded)]
