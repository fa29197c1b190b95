"""Keychains: docker config, containers auth.json, credential helpers, environment (compose_kfp.oci.auth)."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest

from compose_kfp.oci.auth import (
    ANONYMOUS,
    AuthFileKeychain,
    ChainKeychain,
    Credential,
    EnvKeychain,
    StaticKeychain,
    default_keychain,
)
from compose_kfp.oci.errors import Unauthorized

CANARY = "canary-s3cr3t-" + "91b7d2"  # must never show up in output, logs, reprs or messages


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture(autouse=True)
def _no_registry_scope(monkeypatch):
    monkeypatch.delenv("COMPOSE_KFP_REGISTRY", raising=False)


@pytest.fixture
def helper_bin(tmp_path, monkeypatch):
    """Install ``docker-credential-<name>`` scripts on PATH; each records the server URL it was asked for."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    def install(name: str, answers: dict[str, dict], fail: bool = False):
        script = bindir / f"docker-credential-{name}"
        log = tmp_path / f"{name}.log"
        script.write_text(
            "#!/usr/bin/env python3\n"
            "import json, sys\n"
            f"answers = {json.dumps(answers)!r}\n"
            "answers = json.loads(answers)\n"
            "server = sys.stdin.read().strip()\n"
            f"open({str(log)!r}, 'a').write(sys.argv[1] + ' ' + server + '\\n')\n"
            + (f"sys.stderr.write('boom {CANARY}\\n'); print('{CANARY}'); sys.exit(3)\n" if fail else "")
            + "if server not in answers:\n"
            "    print('credentials not found in native keychain'); sys.exit(1)\n"
            "print(json.dumps(dict(ServerURL=server, **answers[server])))\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return log

    return install


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_docker_config_auths_forms(tmp_path):
    cfg = write_json(tmp_path / "config.json", {"auths": {
        "ghcr.io": {"auth": b64(f"alice:{CANARY}")},
        "quay.io": {"username": "bob", "password": CANARY},
        "https://index.docker.io/v1/": {"auth": b64(f"carol:{CANARY}")},
        "registry.example.com:5000": {"identitytoken": CANARY},
        "http://legacy.example.com/v2/": {"auth": b64(f"dan:{CANARY}")},
        "reg.example.org": {"registrytoken": CANARY},
    }})
    kc = AuthFileKeychain(cfg)
    assert kc.resolve("ghcr.io").username == "alice" and kc.resolve("ghcr.io").password == CANARY
    assert kc.resolve("quay.io").username == "bob"
    hub = kc.resolve("docker.io")
    assert hub.username == "carol" and kc.resolve("registry-1.docker.io").username == "carol"
    tok = kc.resolve("registry.example.com:5000")
    assert tok.identity_token == CANARY and tok.username is None
    assert kc.resolve("legacy.example.com").username == "dan"
    assert kc.resolve("reg.example.org").registry_token == CANARY
    assert kc.resolve("other.example.com") is ANONYMOUS
    assert kc.resolve("registry.example.com") is ANONYMOUS  # port matters


def test_containers_auth_json_most_specific_namespace_wins(tmp_path):
    path = write_json(tmp_path / "auth.json", {"auths": {
        "quay.io": {"auth": b64(f"host-user:{CANARY}")},
        "quay.io/team": {"auth": b64(f"team-user:{CANARY}")},
        "quay.io/team/app": {"auth": b64(f"app-user:{CANARY}")},
    }})
    kc = AuthFileKeychain(path)
    assert kc.resolve("quay.io", "team/app").username == "app-user"
    assert kc.resolve("quay.io", "team/other").username == "team-user"
    assert kc.resolve("quay.io", "else/x").username == "host-user"
    assert kc.resolve("quay.io").username == "host-user"


def test_cred_helpers_and_creds_store(tmp_path, helper_bin):
    per_host = helper_bin("gcloudish", {"us-docker.pkg.dev": {"Username": "oauth2accesstoken", "Secret": CANARY}})
    store = helper_bin("storeish", {
        "ghcr.io": {"Username": "<token>", "Secret": CANARY},
        "https://index.docker.io/v1/": {"Username": "hubuser", "Secret": CANARY},
        "both.example.com": {"Username": "store-user", "Secret": CANARY},
    })
    cfg = write_json(tmp_path / "config.json", {
        "auths": {"ghcr.io": {}, "quay.io": {"auth": b64(f"quayuser:{CANARY}")},
                  "both.example.com": {"auth": b64(f"file-user:{CANARY}")}},
        "credHelpers": {"us-docker.pkg.dev": "gcloudish"},
        "credsStore": "storeish",
    })
    kc = AuthFileKeychain(cfg)
    gar = kc.resolve("us-docker.pkg.dev")
    assert (gar.username, gar.password, gar.source) == ("oauth2accesstoken", CANARY, "docker-credential-gcloudish")
    gh = kc.resolve("ghcr.io")
    assert gh.identity_token == CANARY and gh.username is None  # "<token>" user = identity token
    assert kc.resolve("docker.io").username == "hubuser"
    assert kc.resolve("quay.io").username == "quayuser"  # the store has none: the file's entry is used
    assert kc.resolve("both.example.com").username == "store-user"  # docker: the store answers first
    assert kc.resolve("nothing.example.com") is ANONYMOUS  # helper says "credentials not found"
    assert per_host.read_text().split() == ["get", "us-docker.pkg.dev"]
    assert "get https://index.docker.io/v1/" in store.read_text()


def test_missing_and_failing_helpers_raise_without_leaking(tmp_path, helper_bin, caplog):
    helper_bin("broken", {}, fail=True)
    cfg = write_json(tmp_path / "config.json", {"credHelpers": {"a.example.com": "broken", "b.example.com": "absent"}})
    kc = AuthFileKeychain(cfg)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(Unauthorized) as exc:
            kc.resolve("a.example.com")
    assert "docker-credential-broken" in str(exc.value) and "exit status 3" in str(exc.value)
    assert CANARY not in str(exc.value) and CANARY not in caplog.text
    with pytest.raises(Unauthorized, match="docker-credential-absent.*not on PATH"):
        kc.resolve("b.example.com")


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"auths": {"x.io": {"auth": "' + CANARY + '"')
    with pytest.raises(Unauthorized, match="bad.json is not valid JSON") as exc:
        AuthFileKeychain(bad).resolve("x.io")
    assert CANARY not in str(exc.value)
    notuser = write_json(tmp_path / "c.json", {"auths": {"x.io": {"auth": b64(CANARY)}}})
    with pytest.raises(Unauthorized, match="does not decode to 'user:password'") as exc:
        AuthFileKeychain(notuser).resolve("x.io")
    assert CANARY not in str(exc.value)
    assert AuthFileKeychain(tmp_path / "missing.json").resolve("x.io") is ANONYMOUS


def test_env_keychain_scoping(monkeypatch):
    monkeypatch.setenv("COMPOSE_KFP_USERNAME", "ci")
    monkeypatch.setenv("COMPOSE_KFP_PASSWORD", CANARY)
    assert EnvKeychain().resolve("ghcr.io").username == "ci"
    monkeypatch.setenv("COMPOSE_KFP_REGISTRY", "ghcr.io, docker.io")
    assert EnvKeychain().resolve("ghcr.io").password == CANARY
    assert EnvKeychain().resolve("registry-1.docker.io").username == "ci"
    assert EnvKeychain().resolve("quay.io") is ANONYMOUS
    monkeypatch.setenv("COMPOSE_KFP_USERNAME", "<token>")
    assert EnvKeychain().resolve("ghcr.io").identity_token == CANARY


def test_default_keychain_order(tmp_path, monkeypatch, helper_bin):
    home = tmp_path / "h"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("COMPOSE_KFP_USERNAME", "from-env")
    monkeypatch.setenv("COMPOSE_KFP_PASSWORD", CANARY)

    def who(**kw):
        return default_keychain(**kw).resolve("r.example.com").username

    assert who() == "from-env"
    write_json(home / ".docker" / "config.json", {"auths": {"r.example.com": {"auth": b64(f"docker:{CANARY}")}}})
    assert who() == "docker"
    docker_cfg = tmp_path / "dockercfg"
    write_json(docker_cfg / "config.json", {"auths": {"r.example.com": {"auth": b64(f"dockerenv:{CANARY}")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_cfg))
    assert who() == "dockerenv"
    write_json(home / ".config" / "containers" / "auth.json", {"auths": {"r.example.com": {"auth": b64(f"cfg:{CANARY}")}}})
    assert who() == "cfg"
    write_json(home / "run" / "containers" / "auth.json", {"auths": {"r.example.com": {"auth": b64(f"xdg:{CANARY}")}}})
    assert who() == "xdg"
    f = write_json(tmp_path / "raf.json", {"auths": {"r.example.com": {"auth": b64(f"raf:{CANARY}")}}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(f))
    assert who() == "raf"
    explicit = write_json(tmp_path / "explicit.json", {"auths": {"r.example.com": {"auth": b64(f"explicit:{CANARY}")}}})
    assert who(auth_file=explicit) == "explicit"
    # a source without an entry for the host falls through to the next
    assert default_keychain(auth_file=explicit).resolve("other.example.com").username == "from-env"


def test_credential_never_shows_secret(capsys, caplog):
    creds = [Credential(username="u", password=CANARY, source="s"), Credential(identity_token=CANARY),
             Credential(registry_token=CANARY)]
    with caplog.at_level(logging.DEBUG):
        for c in creds:
            print(c, repr(c), f"{c}", [c], {"c": c})
            logging.getLogger("test").debug("cred %s %r", c, c)
    out = capsys.readouterr()
    assert "secret=***" in out.out
    assert CANARY not in out.out + out.err + caplog.text
    assert CANARY in creds[0].secrets()
    assert Credential().anonymous and not creds[2].anonymous
    assert ChainKeychain([StaticKeychain({}), StaticKeychain({"x": creds[0]})]).resolve("x") is creds[0]
