"""Credentials for the registries a project talks to: the keychain of ``[image.auth]``.

The transport (:mod:`compose_kfp.oci.registry`) never parses credentials itself: it asks a keychain
(``resolve(registry, repository) -> Credential``). :func:`keychain_for` builds that keychain from
kfp.toml: environment variables (sent to the destination registry only), a credential helper, a
docker config / containers auth.json file, then the docker/podman default search order
(:func:`compose_kfp.oci.auth.default_keychain`). A secret never appears in a message or a log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from compose_kfp.errors import ConfigError

log = logging.getLogger(__name__)


def auth_config_path(auth: Any, root: Path) -> Path | None:
    """The credentials file ``image.auth.config`` names, or ``None`` when there is no ``[image.auth]`` or no ``config``.

    ``~`` is expanded and a relative path is taken against the project folder ``root``. The file is not read
    and may not exist (:func:`keychain_for` refuses a missing one).
    """
    if auth is None or not auth.config:
        return None
    path = Path(auth.config).expanduser()
    return path if path.is_absolute() else root / path


def keychain_for(auth: Any, root: Path, destination_host: str | None = None) -> Any:
    """The keychain for ``[image.auth]`` (``None`` -> the default search order).

    ``config`` names a docker config / containers auth.json; ``helper`` a credential helper; both
    are asked per registry host like docker does. ``username_env`` / ``password_env`` name
    environment variables whose values are sent to the destination registry
    (``destination_host``; ``None``: every registry) only, never to the base image's registry or any other.
    With no ``destination_host``, unset variables are logged as a warning and no credentials are sent.

    Raises:
        ConfigError: ``image.auth.config`` names a file that does not exist (the message names the key
            and the path), or ``username_env`` is given without ``password_env``.
        Unauthorized (:mod:`compose_kfp.oci.errors`; from the keychain's ``resolve``, when the destination
            registry is first asked for credentials): a variable named by ``image.auth.username_env`` /
            ``password_env`` is unset or empty; the message names the key and the variable, never a value.
    """
    from compose_kfp.oci import auth as auth_mod

    if auth is None:
        return auth_mod.default_keychain()
    chains: list[Any] = []
    if auth.username_env and not auth.password_env:
        raise ConfigError(f"image.auth.username_env = {auth.username_env!r} is set but image.auth.password_env "
                          "is not; name the variable that holds the password or token too")
    if auth.password_env:
        chains.append(_EnvPairKeychain(auth.username_env, auth.password_env, destination_host))
    if auth.helper:
        chains.append(_HelperKeychain(auth.helper))
    path = auth_config_path(auth, root)
    if path is not None:
        if not path.is_file():
            why = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"image.auth.config: the credentials file {auth.config!r} ({path}) {why}; create it "
                              "(e.g. `docker login` / `podman login --authfile PATH`) or fix the path")
        chains.append(auth_mod.AuthFileKeychain(path, f"{path} (kfp.toml image.auth.config)"))
    chains.append(auth_mod.default_keychain())
    return auth_mod.ChainKeychain(chains)


class _EnvPairKeychain:
    """Credentials from the variables ``[image.auth]`` names, read at each ``resolve`` for ``host`` only."""

    def __init__(self, username_env: str | None, password_env: str, host: str | None):
        self._user_env, self._password_env, self._host = username_env, password_env, host

    def resolve(self, registry: str, repository: str | None = None) -> Any:
        from compose_kfp.oci.auth import ANONYMOUS, Credential
        from compose_kfp.oci.errors import Unauthorized

        if self._host is not None and registry != self._host:
            return ANONYMOUS
        names = [("image.auth.username_env", self._user_env), ("image.auth.password_env", self._password_env)]
        unset = [f"{key} = {var!r}" for key, var in names if var and not os.environ.get(var)]
        if unset and self._host is None:  # no known destination: do not break anonymous pulls elsewhere
            log.warning("kfp.toml %s: unset or empty; not sending [image.auth] credentials to %s",
                        " and ".join(unset), registry)
            return ANONYMOUS
        if unset:
            raise Unauthorized(
                f"credentials for {registry}: the environment variable{'s' if len(unset) > 1 else ''} named by "
                f"{' and '.join(unset)} in kfp.toml {'are' if len(unset) > 1 else 'is'} unset or empty; export "
                f"{'them' if len(unset) > 1 else 'it'} (or remove the key to use docker/podman logins)")
        user = os.environ.get(self._user_env) if self._user_env else None
        source = "kfp.toml [image.auth] " + (f"${self._user_env}/${self._password_env}" if self._user_env
                                             else f"${self._password_env}")
        return Credential(username=user or None, password=os.environ[self._password_env], source=source)

    def __repr__(self) -> str:
        return f"_EnvPairKeychain({self._user_env!r}, {self._password_env!r})"


class _HelperKeychain:
    """The credential helper ``[image.auth] helper`` names, asked for every registry."""

    def __init__(self, helper: str):
        self.helper = helper

    def resolve(self, registry: str, repository: str | None = None) -> Any:
        from compose_kfp.oci.auth import ANONYMOUS, run_credential_helper

        return run_credential_helper(self.helper, registry, origin="kfp.toml (image.auth.helper)") or ANONYMOUS


__all__ = ["auth_config_path", "keychain_for"]
