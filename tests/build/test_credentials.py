"""``[image.auth]`` in kfp.toml: clear errors for unset variables, a missing config file or helper (observe.keychain_for).

Unit tests use the real keychains from :mod:`compose_kfp.oci.auth`; the end-to-end test runs ``compose-kfp plan``
against the real CNCF registry with Basic auth (``registry_basic``).
"""

from __future__ import annotations

import logging
import uuid

import pytest

from compose_kfp.errors import ConfigError
from compose_kfp.build.credentials import keychain_for
from compose_kfp.oci.auth import ANONYMOUS
from compose_kfp.oci.errors import Unauthorized
from compose_kfp.schema import AuthConfig
from tests.fixtures.project import write_project
from tests.fixtures.cli import run

CANARY = "canary-pw-" + "5d1e0c"
DEST = "registry.example.com:5000"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("CKFP_USER", "CKFP_PASS", "COMPOSE_KFP_USERNAME", "COMPOSE_KFP_PASSWORD", "COMPOSE_KFP_REGISTRY"):
        monkeypatch.delenv(name, raising=False)


def _env_auth() -> AuthConfig:
    return AuthConfig(username_env="CKFP_USER", password_env="CKFP_PASS")


def test_both_variables_unset_names_both_keys(tmp_path):
    kc = keychain_for(_env_auth(), tmp_path, DEST)
    with pytest.raises(Unauthorized) as exc:
        kc.resolve(DEST, "team/app")
    message = str(exc.value)
    assert "image.auth.username_env = 'CKFP_USER'" in message
    assert "image.auth.password_env = 'CKFP_PASS'" in message and DEST in message
    assert kc.resolve("ghcr.io", "other/base") is ANONYMOUS  # never sent to, nor required by, other registries


def test_only_one_variable_set_names_the_missing_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CKFP_PASS", CANARY)
    with pytest.raises(Unauthorized) as exc:
        keychain_for(_env_auth(), tmp_path, DEST).resolve(DEST)
    message = str(exc.value)
    assert "image.auth.username_env = 'CKFP_USER'" in message and "password_env" not in message
    assert CANARY not in message
    monkeypatch.setenv("CKFP_USER", "")  # empty is as good as unset
    with pytest.raises(Unauthorized, match="username_env"):
        keychain_for(_env_auth(), tmp_path, DEST).resolve(DEST)


def test_both_variables_set_give_the_credential(tmp_path, monkeypatch):
    monkeypatch.setenv("CKFP_USER", "bob")
    monkeypatch.setenv("CKFP_PASS", CANARY)
    kc = keychain_for(_env_auth(), tmp_path, DEST)
    cred = kc.resolve(DEST, "team/app")
    assert (cred.username, cred.password) == ("bob", CANARY)
    assert "image.auth" in cred.source and CANARY not in repr(cred) + repr(kc)


def test_password_env_alone_is_a_token_without_user(tmp_path, monkeypatch):
    monkeypatch.setenv("CKFP_PASS", CANARY)
    cred = keychain_for(AuthConfig(password_env="CKFP_PASS"), tmp_path, DEST).resolve(DEST)
    assert cred.username is None and cred.password == CANARY


def test_username_env_without_password_env_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"image\.auth\.username_env = 'CKFP_USER'.*image\.auth\.password_env"):
        keychain_for(AuthConfig(username_env="CKFP_USER"), tmp_path, DEST)


def test_no_known_destination_warns_and_stays_anonymous(tmp_path, caplog):
    logger = logging.getLogger("compose_kfp.build.credentials")
    logger.addHandler(caplog.handler)  # the CLI tests may have stopped propagation to the root logger
    try:
        with caplog.at_level(logging.WARNING, logger="compose_kfp.build.credentials"):
            assert keychain_for(_env_auth(), tmp_path, None).resolve("docker.io", "library/python") is ANONYMOUS
    finally:
        logger.removeHandler(caplog.handler)
    assert "CKFP_PASS" in caplog.text


def test_missing_config_file_names_the_key_and_path(tmp_path):
    with pytest.raises(ConfigError) as exc:
        keychain_for(AuthConfig(config="auth/missing.json"), tmp_path, DEST)
    message = str(exc.value)
    assert "image.auth.config" in message and "auth/missing.json" in message and "does not exist" in message
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "there.json").write_text('{"auths": {"%s": {"username": "u", "password": "p"}}}' % DEST)
    cred = keychain_for(AuthConfig(config="auth/there.json"), tmp_path, DEST).resolve(DEST)
    assert cred.username == "u" and "image.auth.config" in cred.source


def test_missing_helper_from_kfp_toml_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker-credential-* anywhere
    with pytest.raises(Unauthorized) as exc:
        keychain_for(AuthConfig(helper="nosuch"), tmp_path, DEST).resolve(DEST)
    message = str(exc.value)
    assert "docker-credential-nosuch" in message and "image.auth.helper" in message and "kfp.toml" in message
    assert "docker config" not in message


def test_plan_against_a_registry_with_auth_names_the_unset_variables(tmp_path, registry_basic, monkeypatch):
    monkeypatch.setenv("CKFP_USER", registry_basic.username)
    root = write_project(tmp_path / "p", base="scratch",
                         repository=f"{registry_basic.host}/test/app-{uuid.uuid4().hex[:8]}",
                         extra_image='[image.auth]\nusername_env = "CKFP_USER"\npassword_env = "CKFP_PASS"\n\n')
    code, out, err = run("-C", str(root), "plan")
    assert code == 5, err
    assert "image.auth.password_env = 'CKFP_PASS'" in err and "unset" in err
    assert "COMPOSE_KFP_USERNAME" not in err  # not the generic "log in" hint
    monkeypatch.setenv("CKFP_PASS", registry_basic.password)
    code, out, err = run("-C", str(root), "plan")
    assert code == 0, err
    assert registry_basic.password not in out + err
