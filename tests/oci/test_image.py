"""Image documents, platform selection and append (compose_kfp.oci.image), with the real corpus."""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

import pytest

from compose_kfp.oci import image as I
from compose_kfp.oci.errors import ImageError, PlatformNotFound

CORPUS_CONFIGS = ("containers__image__internal__image__fixtures__schema2-config.json",
                  "opencontainers__image-spec__config.md__example-image-config-with-history.json")
ARTIFACT = "containers__image__internal__manifest__testdata__ociv1.artifact.json"
DESCRIPTOR = "opencontainers__image-spec__manifest.md__example-empty-config-descriptor.json"


def _strip_none(value):
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def corpus_docs(corpus):
    for path in sorted((corpus / "oci").glob("*.json")):
        if path.name in (ARTIFACT, DESCRIPTOR):
            continue
        data = path.read_bytes()
        doc = I.ImageConfig.from_bytes(data) if path.name in CORPUS_CONFIGS else I.parse_manifest(data)
        yield path, data, doc


def test_corpus_parses_round_trips_and_keeps_raw_digest(corpus):
    docs = list(corpus_docs(corpus))
    assert len(docs) == 9
    for path, data, doc in docs:
        assert doc.digest == "sha256:" + hashlib.sha256(data).hexdigest(), path.name
        canon = doc.to_bytes()
        again = type(doc).from_bytes(canon) if isinstance(doc, I.ImageConfig) else I.parse_manifest(canon)
        assert again == doc, path.name
        assert again.to_bytes() == canon
        # the canonical form is the same object (unknown fields kept, nulls dropped), sorted and compact
        assert json.loads(canon) == _strip_none(json.loads(data)), path.name
        assert canon == I.canonical_json(json.loads(canon))


def test_canonical_file_round_trips_to_the_same_digest(corpus):
    data = (corpus / "oci" / "containers__image__internal__image__fixtures__schema2.json").read_bytes()
    canon = I.parse_manifest(data).to_bytes()
    assert canon != data  # the upstream file is indented, so its digest differs from the canonical one
    assert I.parse_manifest(canon).to_bytes() == canon
    assert I.parse_manifest(canon).digest == "sha256:" + hashlib.sha256(canon).hexdigest()


def test_docker_config_as_octet_stream_matches_manifests(corpus):
    oci = corpus / "oci"
    cfg_raw = (oci / "containers__image__internal__image__fixtures__schema2-config.json").read_bytes()
    schema2 = I.Manifest.from_bytes((oci / "containers__image__internal__image__fixtures__schema2.json").read_bytes())
    oci1 = I.Manifest.from_bytes((oci / "containers__image__internal__image__fixtures__oci1.json").read_bytes())
    cfg = I.ImageConfig.from_bytes(cfg_raw, schema2.config.media_type)
    assert schema2.config.media_type == I.MEDIA_TYPE_OCTET_STREAM
    assert cfg.digest == schema2.config.digest == oci1.config.digest
    assert cfg.size == schema2.config.size
    assert schema2.family == "docker" and oci1.family == "oci"
    assert len(cfg.rootfs.diff_ids) == len(schema2.layers) == 5
    assert len(cfg.history) == 15 and sum(bool(h.empty_layer) for h in cfg.history) == 10
    assert cfg.to_dict()["container_config"]["Hostname"] == "383850eeb47b"  # unknown fields kept
    assert oci1.layers[2].urls == ["https://layer.url"]
    assert oci1.config.annotations == {"test-annotation-1": "one"}


def test_embedded_empty_config_descriptor(corpus):
    d = I.Descriptor.from_bytes((corpus / "oci" / DESCRIPTOR).read_bytes())
    assert d.media_type == I.MEDIA_TYPE_OCI_EMPTY
    assert d.embedded_data() == b"{}"


def test_artifact_is_not_a_runnable_image(corpus):
    data = (corpus / "oci" / ARTIFACT).read_bytes()
    with pytest.raises(ImageError, match="not a runnable image"):
        I.parse_manifest(data)
    with pytest.raises(ImageError, match="not a runnable image"):
        I.ImageConfig.from_bytes(b"{}", "application/vnd.oci.custom.artifact.config.v1+json")


def test_manifest_with_annotations_and_subject(corpus):
    m = I.Manifest.from_bytes((corpus / "oci" /
                               "opencontainers__image-spec__manifest.md__example-manifest-with-annotations.json")
                              .read_bytes())
    assert m.subject is not None and m.subject.size == 7682
    assert m.annotations == {"com.example.key1": "value1", "com.example.key2": "value2"}


@pytest.mark.parametrize("want,digest_prefix", [
    ("linux/amd64", "sha256:59eec8"),
    ("linux/arm/v6", "sha256:f36562"),
    ("linux/arm", "sha256:c84b0a"),      # no variant means v7, the default of arm
    ("linux/arm/v7", "sha256:c84b0a"),
    ("linux/arm/v8", "sha256:c84b0a"),   # v8 runs v7 images: best compatible
])
def test_select_platform_variants(corpus, want, digest_prefix):
    idx = I.Index.from_bytes((corpus / "oci" /
                              "containers__image__internal__manifest__testdata__schema2list-variants.json").read_bytes())
    assert I.select_platform(idx, want).digest.startswith(digest_prefix)


def test_select_platform_not_found_lists_available(corpus):
    idx = I.Index.from_bytes((corpus / "oci" /
                              "opencontainers__image-spec__image-index.md__example-multiplatform-index.json").read_bytes())
    assert I.select_platform(idx, "linux/x86_64").platform.architecture == "amd64"
    assert I.select_platform(idx.manifests, I.Platform.parse("linux/ppc64le")).size == 7143
    with pytest.raises(PlatformNotFound) as info:
        I.select_platform(idx, "linux/arm64")
    assert "linux/ppc64le" in str(info.value) and "linux/amd64" in str(info.value)
    docker_list = I.parse_manifest((corpus / "oci" /
                                    "distribution__distribution__docs__content__spec__manifest-v2-2.md__"
                                    "example-manifest-list.json").read_bytes())
    assert I.select_platform(docker_list, "linux/amd64").platform.features == ["sse4"]


@pytest.mark.parametrize("written, canonical", [
    # containerd platforms.Normalize (database.go normalizeArch)
    (("linux", "x86_64", None), ("linux", "amd64", "")),
    (("linux", "amd64", "v1"), ("linux", "amd64", "")),
    (("linux", "amd64", "v3"), ("linux", "amd64", "v3")),
    (("linux", "i386", "v1"), ("linux", "386", "")),
    (("linux", "aarch64", None), ("linux", "arm64", "")),
    (("linux", "arm64", "v8"), ("linux", "arm64", "")),
    (("linux", "arm64", "8"), ("linux", "arm64", "")),
    (("linux", "arm64", "v8.0"), ("linux", "arm64", "")),
    (("linux", "arm64", "9"), ("linux", "arm64", "v9")),
    (("linux", "armhf", None), ("linux", "arm", "v7")),
    (("linux", "armel", None), ("linux", "arm", "v6")),
    (("linux", "arm", None), ("linux", "arm", "v7")),
    (("linux", "arm", "7"), ("linux", "arm", "v7")),
    (("linux", "arm", "6"), ("linux", "arm", "v6")),
    (("Linux", "ARM", "V5"), ("linux", "arm", "v5")),
    (("macos", "arm64", None), ("darwin", "arm64", "")),
    # the variant written with the architecture in front, as some indexes do
    (("linux", "arm", "armv7"), ("linux", "arm", "v7")),
    (("linux", "arm64", "armv8"), ("linux", "arm64", "")),
    (("linux", "arm", "unrecognized-present"), ("linux", "arm", "unrecognized-present")),
])
def test_normalize_platform_as_containerd(written, canonical):
    assert I.normalize_platform(*written) == canonical
    assert I.Platform(os=written[0], architecture=written[1], variant=written[2]).normalized() == canonical


def _desc(n: int, platform: str | None, media_type: str = I.MEDIA_TYPE_OCI_MANIFEST) -> I.Descriptor:
    return I.Descriptor(media_type=media_type, digest="sha256:" + f"{n:x}" * 64, size=n,
                        platform=I.Platform.parse(platform) if platform else None)


def test_variants_spelled_armv7_armv8_in_a_base_index_match():
    """Issue 19.9: an index whose entries write the variant as ``armv7`` / ``armv8``."""
    idx = I.Index.from_bytes(json.dumps({"schemaVersion": 2, "mediaType": I.MEDIA_TYPE_OCI_INDEX, "manifests": [
        {"mediaType": I.MEDIA_TYPE_OCI_MANIFEST, "digest": "sha256:" + "a" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": I.MEDIA_TYPE_OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 2,
         "platform": {"os": "linux", "architecture": "arm", "variant": "armv7"}},
        {"mediaType": I.MEDIA_TYPE_OCI_MANIFEST, "digest": "sha256:" + "c" * 64, "size": 3,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "armv8"}},
    ]}).encode())
    assert I.select_platform(idx, "linux/arm/v7").size == 2
    assert I.select_platform(idx, "linux/arm").size == 2
    assert I.select_platform(idx, "linux/arm64").size == 3
    assert I.select_platform(idx, "linux/arm64/v8").size == 3
    assert I.select_platform(idx, "linux/aarch64").size == 3


def test_candidates_best_first_and_the_first_present_wins(corpus):
    """Issue 19.9: for arm/v6 the v6 entry ranks first, then v5; a candidate whose blob is absent is skipped."""
    idx = I.Index.from_bytes((corpus / "oci" /
                              "containers__image__internal__manifest__testdata__schema2list-variants.json").read_bytes())
    v5 = _desc(9, "linux/arm/v5", I.MEDIA_TYPE_DOCKER_MANIFEST)
    entries = list(idx.manifests) + [v5]
    ranked = I.platform_candidates(entries, "linux/arm/v6")
    assert [d.digest[:13] for d in ranked] == ["sha256:f36562", v5.digest[:13]]
    absent = {ranked[0].digest}
    assert I.select_platform(entries, "linux/arm/v6", present=lambda d: d.digest not in absent) == v5
    with pytest.raises(PlatformNotFound, match="not stored"):
        I.select_platform(entries, "linux/arm/v6", present=lambda d: False)
    # v8 runs v7, v6, v5 (best first); arm64 does not fall back to 32-bit arm (a base is for one architecture)
    assert [d.digest[:13] for d in I.platform_candidates(entries, "linux/arm/v8")] == [
        "sha256:c84b0a", "sha256:f36562", v5.digest[:13]]
    with pytest.raises(PlatformNotFound):
        I.platform_candidates(entries, "linux/arm64")


def test_nested_index_is_searched_or_named(corpus):
    """Issue 19.10: the OCI image spec's nested index; the wanted platform is only inside the nested index."""
    outer = I.Index.from_bytes((corpus / "oci" /
                                "opencontainers__image-spec__image-index.md__example-multiplatform-index.json")
                               .read_bytes())
    inner = I.Index(schema_version=2, media_type=I.MEDIA_TYPE_OCI_INDEX,
                    manifests=[_desc(7, "linux/arm64/v8"), _desc(8, "linux/s390x")])
    nested = I.Descriptor.of(inner, I.MEDIA_TYPE_OCI_INDEX)
    top = outer.model_copy(update={"manifests": list(outer.manifests) + [nested]})
    blobs = {nested.digest: inner.raw_bytes()}
    found = I.select_platform(top, "linux/arm64", fetch=lambda d: blobs[d.digest])
    assert found.size == 7
    # without a way to read it, the error names the nested index, not only the outer platforms
    with pytest.raises(PlatformNotFound) as info:
        I.select_platform(top, "linux/arm64")
    assert "linux/ppc64le" in str(info.value) and nested.digest in str(info.value)
    with pytest.raises(PlatformNotFound, match=nested.digest):  # a nested index whose blob is not there
        I.select_platform(top, "linux/arm64", fetch=lambda d: None)
    assert I.select_platform(top, "linux/amd64", fetch=lambda d: None).platform.architecture == "amd64"
    # when read and still not found, the nested index's platforms are listed too
    with pytest.raises(PlatformNotFound, match="linux/s390x"):
        I.select_platform(top, "linux/riscv64", fetch=lambda d: blobs[d.digest])
    # an index that refers to itself is stopped at the depth limit
    loop = I.Descriptor(media_type=I.MEDIA_TYPE_OCI_INDEX, digest="sha256:" + "e" * 64, size=1)
    looping = I.Index(schema_version=2, media_type=I.MEDIA_TYPE_OCI_INDEX, manifests=[loop])
    with pytest.raises(ImageError, match="nested more than"):
        I.select_platform(looping, "linux/amd64", fetch=lambda d: looping.raw_bytes())


def test_platform_parse_and_errors():
    p = I.Platform.parse("linux/arm64/v8")
    assert (p.os, p.architecture, p.variant, str(p)) == ("linux", "arm64", "v8", "linux/arm64/v8")
    assert I.Platform.parse("linux/aarch64").normalized() == ("linux", "arm64", "")  # containerd: v8 is the default
    with pytest.raises(ImageError, match="linux"):
        I.Platform.parse("linux")


def test_schema1_and_garbage_refused():
    with pytest.raises(ImageError, match="schema 1"):
        I.parse_manifest(b'{"schemaVersion": 1, "name": "x", "fsLayers": []}')
    with pytest.raises(ImageError, match="JSON"):
        I.parse_manifest(b"not json")
    with pytest.raises(ImageError, match="digest"):
        I.parse_manifest(json.dumps({"schemaVersion": 2, "config": {
            "mediaType": I.MEDIA_TYPE_OCI_CONFIG, "digest": "sha256:xyz", "size": 1}, "layers": []}).encode())


def test_manifest_without_media_type_is_oci():
    cfg = I.ImageConfig.scratch("linux/amd64")
    raw = json.dumps({"schemaVersion": 2, "config": {"mediaType": I.MEDIA_TYPE_OCI_CONFIG,
                                                     "digest": cfg.digest, "size": cfg.size}, "layers": []}).encode()
    m = I.parse_manifest(raw, "application/json; charset=utf-8")
    assert isinstance(m, I.Manifest) and m.family == "oci" and m.effective_media_type == I.MEDIA_TYPE_OCI_MANIFEST


class _L:
    def __init__(self, n: int, media_type: str = I.MEDIA_TYPE_OCI_LAYER_GZIP):
        self.media_type = media_type
        self.digest = "sha256:" + hashlib.sha256(b"blob%d" % n).hexdigest()
        self.diff_id = "sha256:" + hashlib.sha256(b"tar%d" % n).hexdigest()
        self.size = 100 + n


def _docker_base(corpus):
    oci = corpus / "oci"
    m = I.Manifest.from_bytes((oci / "containers__image__internal__image__fixtures__schema2.json").read_bytes())
    c = I.ImageConfig.from_bytes((oci / "containers__image__internal__image__fixtures__schema2-config.json")
                                 .read_bytes())
    return m, c


def test_append_is_pure_and_extends_everything(corpus):
    base_m, base_c = _docker_base(corpus)
    before = (base_m.raw_bytes(), base_c.raw_bytes(), base_m.to_bytes(), base_c.to_bytes())
    m, c = I.append(base_m, base_c, [_L(1), _L(2)], env={"HTTPD_PREFIX": "/opt", "NEW": "1"},
                    workdir="/app", entrypoint=["python"], labels={"a": "b"}, user="1000",
                    base_name="docker.io/library/httpd:2.4.23")
    assert before == (base_m.raw_bytes(), base_c.raw_bytes(), base_m.to_bytes(), base_c.to_bytes())
    assert len(m.layers) == 7 and len(c.rootfs.diff_ids) == 7
    assert c.rootfs.diff_ids[-2:] == [_L(1).diff_id, _L(2).diff_id]
    assert len(c.history) == 17 and c.history[-1].created_by == "compose-kfp"
    env = c.config.env
    assert env[1] == "HTTPD_PREFIX=/opt" and env[-1] == "NEW=1" and len(env) == 7
    assert (c.config.working_dir, c.config.entrypoint, c.config.cmd, c.config.user) == ("/app", ["python"], None, "1000")
    # Docker base stays Docker: manifest, config and layer media types
    assert m.media_type == I.MEDIA_TYPE_DOCKER_MANIFEST and m.config.media_type == I.MEDIA_TYPE_DOCKER_CONFIG
    assert {d.media_type for d in m.layers} == {I.MEDIA_TYPE_DOCKER_LAYER_GZIP}
    assert m.config.digest == c.digest == I.sha256_digest(c.to_bytes())
    assert c.config.labels[I.ANNOTATION_BASE_DIGEST] == base_m.digest  # annotations become labels in Docker
    assert c.config.labels[I.ANNOTATION_BASE_NAME] == "docker.io/library/httpd:2.4.23"
    assert c.to_dict()["container_config"] == base_c.to_dict()["container_config"]


def test_append_oci_family_override_and_annotations(corpus):
    base_m, base_c = _docker_base(corpus)
    m, c = I.append(base_m, base_c, [_L(1, I.MEDIA_TYPE_OCI_LAYER_ZSTD)], family="oci",
                    annotations={I.ANNOTATION_SOURCE: "https://example.com/repo"}, created=1700000000)
    assert m.media_type == I.MEDIA_TYPE_OCI_MANIFEST and m.config.media_type == I.MEDIA_TYPE_OCI_CONFIG
    assert [d.media_type for d in m.layers][:5] == [I.MEDIA_TYPE_OCI_LAYER_GZIP] * 5
    assert m.layers[-1].media_type == I.MEDIA_TYPE_OCI_LAYER_ZSTD
    assert m.annotations[I.ANNOTATION_CREATED] == "2023-11-14T22:13:20Z" == c.created
    assert m.annotations[I.ANNOTATION_BASE_DIGEST] == base_m.digest
    with pytest.raises(ImageError, match="zstd"):
        I.append(base_m, base_c, [_L(1, I.MEDIA_TYPE_OCI_LAYER_ZSTD)])


def test_append_from_scratch_and_errors(corpus):
    m, c = I.append(None, None, [_L(1)], platform="linux/arm64/v8", cmd=["/app"])
    assert (c.os, c.architecture, c.variant, c.rootfs.diff_ids) == ("linux", "arm64", "v8", [_L(1).diff_id])
    assert m.family == "oci" and len(m.layers) == 1 and c.created == "1970-01-01T00:00:00Z"
    assert I.ANNOTATION_BASE_DIGEST not in m.annotations
    with pytest.raises(ImageError, match="platform"):
        I.append(None, None, [_L(1)])
    base_m, base_c = _docker_base(corpus)
    with pytest.raises(ImageError, match="layers"):
        I.append(base_m.model_copy(update={"layers": base_m.layers[:2]}), base_c, [])


def test_to_bytes_is_canonical_and_copies_forget_raw(corpus):
    base_m, _ = _docker_base(corpus)
    canon = base_m.to_bytes()
    assert canon == json.dumps(json.loads(canon), sort_keys=True, separators=(",", ":")).encode()
    changed = base_m.model_copy(update={"annotations": {"x": "y"}})
    assert changed.raw_bytes() == changed.to_bytes() != base_m.raw_bytes()
    assert I.merge_env(["A=1", "B=2"], ["B=3", "C"]) == ["A=1", "B=3", "C="]


def test_merge_env_replaces_first_entry_in_place_and_appends_new_keys_in_order():
    base = ["A=1", "B=2", "A=3", "C"]
    assert I.merge_env(base, ["A=x", "C=y", "D", "D=z"]) == ["A=x", "B=2", "A=3", "C=y", "D=z"]
    assert base == ["A=1", "B=2", "A=3", "C"]  # not modified
    assert I.merge_env(None, {"E": "1", "F": ""}) == ["E=1", "F="]
    assert I.merge_env(["A=1"], None) == ["A=1"]
    with pytest.raises(ImageError, match="invalid environment variable name"):
        I.merge_env([], {"": "x"})


def test_merge_env_with_100k_keys():
    # issue 20 item 7: was quadratic (100k keys took 11 minutes); the result must not change.
    # In a child process: these lists take ~50 MB, and a child's ru_maxrss starts at its parent's peak,
    # which would count against the memory bound of test_layer.py's large-layer test.
    code = (
        "from compose_kfp.oci.image import merge_env\n"
        "base = [f'K{i}=base' for i in range(50_000)]\n"
        "env = {f'K{i}': f'v{i}' for i in range(25_000, 125_000)}\n"
        "expected = [f'K{i}=base' for i in range(25_000)] + [f'K{i}=v{i}' for i in range(25_000, 125_000)]\n"
        "assert merge_env(base, env) == expected\n"
        "assert merge_env(None, env) == [f'K{i}=v{i}' for i in range(25_000, 125_000)]\n"
        "print('ok')\n"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr
