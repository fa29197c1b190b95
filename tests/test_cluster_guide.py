"""The in-cluster guide (docs/cluster.md) and its example manifests (docs/cluster/*.yaml): every document valid
against the Kubernetes OpenAPI schemas (kubernetes-validate, offline; a Kubeflow PodDefault part by part, its env
and selector against the core schemas), the pieces consistent with each other and with the variables compose-kfp
reads, and the registry configuration of the Deployment, run with the CNCF registry, accepting a push made with
the notebook environment's credentials and refusing an anonymous one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from compose_kfp.manifest.load import ENV_VARS
from compose_kfp.oci import auth as oci_auth
from tests.fixtures.paths import REPO

kubernetes_validate = pytest.importorskip("kubernetes_validate")

DOCS = REPO / "docs"
MANIFESTS = sorted((DOCS / "cluster").glob("*.yaml"))
K8S_VERSION = "1.30"  # validate against the Kubernetes 1.30 API (what Kubeflow 1.9 supports)


def _documents() -> list[tuple[str, dict]]:
    out = []
    for path in MANIFESTS:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                out.append((f"{path.name}#{i}", doc))
    return out


def _by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in _documents() if doc["kind"] == kind]


def _core_check(instance: object, name: str) -> None:
    """Validate ``instance`` against a core definition (``envvar-v1``, ``labelselector-meta-v1``) of
    kubernetes-validate's strict schemas, with its definitions, as ``kubernetes_validate.validate`` does."""
    import jsonschema
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    folder = f"kubernetes-json-schema/v{K8S_VERSION}.0-local-strict"
    schema = schema_contents(f"{folder}/{name}.json", K8S_VERSION)
    registry = Resource.from_contents(schema_contents(f"{folder}/_definitions.json", K8S_VERSION)) @ (
        Resource.from_contents(schema) @ Registry())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)


def test_the_guide_ships_and_links_its_manifests():
    guide = (DOCS / "cluster.md").read_text()
    assert {p.name for p in MANIFESTS} == {"registry.yaml", "notebook-env.yaml"}
    for path in MANIFESTS:
        assert f"(cluster/{path.name})" in guide
    assert "docs/cluster.md" in (REPO / "README.md").read_text()
    assert {doc["kind"] for _, doc in _documents()} == {"PersistentVolumeClaim", "Deployment", "Service",
                                                        "PodDefault", "Pod"}


@pytest.mark.parametrize("where, doc", [d for d in _documents() if d[1]["kind"] != "PodDefault"],
                         ids=[w for w, d in _documents() if d["kind"] != "PodDefault"])
def test_every_kubernetes_document_is_valid(where, doc):
    from kubernetes_validate.utils import validate

    validate(doc, K8S_VERSION, strict=True)  # raises ValidationError with the path of the bad key


def test_the_schemas_refuse_a_misspelled_key():
    import copy

    from kubernetes_validate.utils import ValidationError, validate

    (dep,) = _by_kind("Deployment")
    bad = copy.deepcopy(dep)
    port = bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    port["containerport"] = port.pop("containerPort")
    with pytest.raises(ValidationError):
        validate(bad, K8S_VERSION, strict=True)


def test_the_pod_default_is_valid_part_by_part():
    import jsonschema

    (pd,) = _by_kind("PodDefault")
    assert pd["apiVersion"] == "kubeflow.org/v1alpha1" and set(pd) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(pd["spec"]) <= {"desc", "selector", "env", "envFrom", "volumes", "volumeMounts", "annotations",
                               "labels", "serviceAccountName", "tolerations", "command", "args"}
    assert isinstance(pd["spec"]["desc"], str) and re.fullmatch(r"[a-z0-9-]+", pd["metadata"]["name"])
    _core_check(pd["spec"]["selector"], "labelselector-meta-v1")
    for var in pd["spec"]["env"]:
        _core_check(var, "envvar-v1")
    with pytest.raises(jsonschema.ValidationError):  # the schemas do check: a misspelled key is refused
        _core_check({"name": "X", "valueFrom": {"secretKeyRf": {"name": "s", "key": "k"}}}, "envvar-v1")


def _service_host() -> str:
    (svc,) = _by_kind("Service")
    return f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local:{svc['spec']['ports'][0]['port']}"


def test_the_pieces_fit_together():
    (pvc,), (dep,), (svc,) = _by_kind("PersistentVolumeClaim"), _by_kind("Deployment"), _by_kind("Service")
    pod = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert svc["spec"]["ports"][0]["targetPort"] in ports
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["REGISTRY_HTTP_ADDR"] == f":{ports['http']}"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert mounts["data"] == env["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"]
    assert env["REGISTRY_AUTH_HTPASSWD_PATH"].startswith(mounts["auth"] + "/")

    read = {v.name for v in ENV_VARS} | {oci_auth.ENV_USERNAME, oci_auth.ENV_PASSWORD, oci_auth.ENV_REGISTRY}
    (pd,), (shell,) = _by_kind("PodDefault"), _by_kind("Pod")
    assert pd["spec"]["selector"]["matchLabels"].items() <= shell["metadata"]["labels"].items()
    for env_list in (pd["spec"]["env"], shell["spec"]["containers"][0]["env"]):
        names = {e["name"] for e in env_list}
        assert names <= read, names - read  # every variable is one compose-kfp reads
        values = {e["name"]: e.get("value") for e in env_list}
        assert values["COMPOSE_KFP_REPOSITORY"].startswith(_service_host() + "/")
        assert values["COMPOSE_KFP_REGISTRY"] == _service_host()
        secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in env_list if "valueFrom" in e}
        assert secrets == {"registry-push"}  # credentials only by reference
    assert pd["spec"]["env"] == shell["spec"]["containers"][0]["env"]


@pytest.mark.registry
def test_the_deployed_configuration_takes_the_notebook_push_and_refuses_anonymous(tmp_path, monkeypatch):
    """The Deployment's REGISTRY_* variables on the real registry (its listen address and folders this test's),
    and build_image with the PodDefault's variables (the cluster host replaced by the test registry's)."""
    from compose_kfp import build_image
    from compose_kfp.errors import AuthError
    from tests.fixtures.registry import REGISTRY_BIN, RegistryServer, bcrypt_hash

    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed")
    (container,) = _by_kind("Deployment")[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if e["name"] not in (
        "REGISTRY_HTTP_ADDR", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")}
    user, password = "pusher", "guide-Pa55-" + "x" * 8
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "htpasswd").write_text(f"{user}:{bcrypt_hash(password)}\n")
    env["REGISTRY_AUTH_HTPASSWD_PATH"] = str(tmp_path / "auth" / "htpasswd")
    server = RegistryServer(tmp_path / "registry", env=env)
    try:
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "app.py").write_text("print('hi')\n")
        monkeypatch.chdir(tmp_path)
        (pd,) = _by_kind("PodDefault")
        secret = {"username": user, "password": password}
        for e in pd["spec"]["env"]:
            value = secret[e["valueFrom"]["secretKeyRef"]["key"]] if "valueFrom" in e else e["value"]
            monkeypatch.setenv(e["name"], value.replace(_service_host(), server.host))
        repository = f"{server.host}/team/pipelines"
        ref = build_image("scratch", ["src"], repository, progress=None)
        assert ref.startswith(repository + "@sha256:")
        monkeypatch.delenv("COMPOSE_KFP_PASSWORD")
        with pytest.raises(AuthError):
            build_image("scratch", ["src"], f"{server.host}/team/other", progress=None)
    finally:
        server.stop()
