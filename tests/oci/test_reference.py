"""Image reference grammar and normalization (compose_kfp.oci.reference)."""

from __future__ import annotations

import pytest

from compose_kfp.oci.errors import InvalidReference
from compose_kfp.oci.reference import Reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest, canonical",
    [
        ("python", "docker.io", "library/python", None, None, "docker.io/library/python"),
        ("python:3.11-slim", "docker.io", "library/python", "3.11-slim", None, "docker.io/library/python:3.11-slim"),
        ("kubeflow/pipelines", "docker.io", "kubeflow/pipelines", None, None, "docker.io/kubeflow/pipelines"),
        ("index.docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None,
         "docker.io/library/busybox:1"),
        ("docker.io/busybox", "docker.io", "library/busybox", None, None, "docker.io/library/busybox"),
        ("localhost/app", "localhost", "app", None, None, "localhost/app"),
        ("localhost:5000/team/app:v1", "localhost:5000", "team/app", "v1", None, "localhost:5000/team/app:v1"),
        ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", None, None, "127.0.0.1:5000/a/b/c"),
        ("[::1]:5000/app:t", "[::1]:5000", "app", "t", None, "[::1]:5000/app:t"),
        ("ghcr.io/org/img@" + D, "ghcr.io", "org/img", None, D, "ghcr.io/org/img@" + D),
        ("quay.io/org/img:v2@" + D, "quay.io", "org/img", "v2", D, "quay.io/org/img:v2@" + D),
        ("us-docker.pkg.dev/p/r/img_a.b-c__d:T_1.x", "us-docker.pkg.dev", "p/r/img_a.b-c__d", "T_1.x", None,
         "us-docker.pkg.dev/p/r/img_a.b-c__d:T_1.x"),
        ("My.Registry:443/x", "My.Registry:443", "x", None, None, "My.Registry:443/x"),
    ],
)
def test_parse_and_normalize(text, registry, repository, tag, digest, canonical):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == canonical
    assert Reference.parse(str(ref)) == ref  # canonical form round-trips


def test_docker_hub_api_host_and_familiar_form():
    ref = Reference.parse("python:3.11")
    assert ref.api_host == "registry-1.docker.io"
    assert ref.familiar() == "python:3.11"
    assert Reference.parse("kubeflow/x").familiar() == "kubeflow/x"
    assert Reference.parse("ghcr.io/o/x:1").api_host == "ghcr.io"
    assert Reference.parse("ghcr.io/o/x:1").familiar() == "ghcr.io/o/x:1"


def test_identifier_context_with_tag_with_digest():
    ref = Reference.parse("ghcr.io/o/x")
    assert ref.identifier == "latest"
    assert ref.with_tag("v1").identifier == "v1"
    pinned = ref.with_tag("v1").with_digest(D)
    assert pinned.identifier == D and pinned.tag == "v1"
    assert str(pinned) == f"ghcr.io/o/x:v1@{D}"
    assert str(pinned.context()) == "ghcr.io/o/x" and pinned.context().name == "ghcr.io/o/x"
    assert pinned.with_tag("v2").digest is None


@pytest.mark.parametrize(
    "text, wrong",
    [
        ("", "empty"),
        ("Python:3", "lowercase"),
        ("ghcr.io/Org/img", "lowercase"),
        ("ghcr.io/org/img:", "tag ''"),
        ("ghcr.io/org/img:-bad", "tag '-bad'"),
        ("ghcr.io/org/img:" + "t" * 129, "tag"),
        ("ghcr.io/org/img@sha256:abc", "digest 'sha256:abc'"),
        ("ghcr.io/org/img@md5", "digest 'md5'"),
        ("ghcr.io/org/img@sha256:" + "A" * 64, "64 lowercase hex"),
        ("ghcr.io:99999/img", "port '99999'"),
        ("ghcr.io:abc/img", "port 'abc'"),
        ("bad_host.io/img", "registry 'bad_host.io'"),
        ("ghcr.io//img", "component ''"),
        ("ghcr.io/org/im..g", "component 'im..g'"),
        ("ghcr.io/", "repository path"),
        ("ghcr.io/org/img name", "spaces"),
        ("a/" * 130 + "b", "exceed 255"),
    ],
)
def test_invalid_references_name_the_wrong_part(text, wrong):
    with pytest.raises(InvalidReference) as exc:
        Reference.parse(text)
    message = str(exc.value)
    assert repr(text) in message or text == ""
    assert wrong in message


def test_with_tag_and_digest_validate():
    ref = Reference.parse("ghcr.io/o/x")
    with pytest.raises(InvalidReference, match="tag '.bad'"):
        ref.with_tag(".bad")
    with pytest.raises(InvalidReference, match="digest 'sha256:zz'"):
        ref.with_digest("sha256:zz")
