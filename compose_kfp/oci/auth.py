"""Registry credentials, resolved the way docker, podman and skopeo resolve them.

A *keychain* maps a registry host (and optionally a repository) to a
:class:`Credential`. :func:`default_keychain` tries these sources in order and
the first non-anonymous answer wins:

1. an explicit auth file (``auth_file=`` argument, e.g. from ``kfp.toml``);
2. ``$REGISTRY_AUTH_FILE`` (containers-auth.json format);
3. ``$XDG_RUNTIME_DIR/containers/auth.json`` (podman's default), then
   ``$XDG_CONFIG_HOME/containers/auth.json`` (default ``~/.config``);
4. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``;
5. environment variables (for CI):

   ``COMPOSE_KFP_USERNAME``
       user name; ``<token>`` means the password is an identity (refresh) token.
   ``COMPOSE_KFP_PASSWORD``
       password or access token.
   ``COMPOSE_KFP_REGISTRY``
       optional comma-separated list of registry hosts (``ghcr.io,quay.io``)
       the two variables above apply to; unset means every registry.

6. anonymous.

Auth files use the ``auths`` map (keys are hosts, ``host:port``, a legacy URL
such as ``https://index.docker.io/v1/``, or — containers format — a
``host/namespace/repo`` prefix, most specific first) with base64 ``auth`` or
``username``/``password``, plus ``identitytoken`` and ``registrytoken``;
``credHelpers`` (per host) and ``credsStore`` (default) run
``docker-credential-<name> get`` with the server URL on stdin and read
``{"ServerURL", "Username", "Secret"}`` from stdout.

Secrets never appear in ``repr()``, in log lines or in exception messages.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import subprocess
from typing import Iterable, Protocol

from compose_kfp.oci.errors import Unauthorized

__all__ = [
    "Credential",
    "Keychain",
    "AuthFileKeychain",
    "EnvKeychain",
    "StaticKeychain",
    "ChainKeychain",
    "ANONYMOUS",
    "default_keychain",
    "run_credential_helper",
    "ENV_USERNAME",
    "ENV_PASSWORD",
    "ENV_REGISTRY",
]

log = logging.getLogger(__name__)

ENV_USERNAME = "COMPOSE_KFP_USERNAME"
ENV_PASSWORD = "COMPOSE_KFP_PASSWORD"
ENV_REGISTRY = "COMPOSE_KFP_REGISTRY"

_DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")
_HELPER_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True, repr=False)
class Credential:
    """What to authenticate with. All fields optional; all empty means anonymous.

    Attributes:
        username, password: for Basic auth and for the token endpoint.
        identity_token: an OAuth2 refresh token (docker's ``identitytoken``, or a helper's
            ``<token>`` user); exchanged at the token realm with ``grant_type=refresh_token``.
        registry_token: a bearer token sent to the registry as is (``registrytoken``).
        source: where it came from, for messages (``"~/.docker/config.json"``); never secret.

    ``repr()`` and ``str()`` show the user name and source only.
    """

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    registry_token: str | None = None
    source: str = "anonymous"

    @property
    def anonymous(self) -> bool:
        """True when there is nothing to authenticate with."""
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def secrets(self) -> tuple[str, ...]:
        """The secret strings of this credential (for redaction by callers that log transport details)."""
        return tuple(s for s in (self.password, self.identity_token, self.registry_token) if s)

    def __repr__(self) -> str:
        kind = ("anonymous" if self.anonymous else "registry-token" if self.registry_token
                else "identity-token" if self.identity_token else "password")
        return f"Credential(username={self.username!r}, kind={kind}, secret=***, source={self.source!r})"

    __str__ = __repr__


ANONYMOUS = Credential()


class Keychain(Protocol):
    """Anything that resolves a registry host (and repository) to a credential."""

    def resolve(self, registry: str, repository: str | None = None) -> Credential:
        """Return the credential for ``registry`` (``host[:port]``, ``docker.io`` for Docker Hub); anonymous if none."""
        ...


def _hub_aliases(registry: str) -> tuple[str, ...]:
    return _DOCKER_HUB_KEYS if registry in _DOCKER_HUB_KEYS else (registry,)


def _normalize_key(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port``; keys without a scheme (``host/ns``) are kept as is."""
    key = key.strip()
    if "://" in key:
        key = key.split("://", 1)[1].split("/", 1)[0]
    return key.rstrip("/")


def run_credential_helper(helper: str, server: str, *, origin: str = "the docker config") -> Credential | None:
    """Run ``docker-credential-<helper> get`` with ``server`` on stdin.

    ``origin`` says where the helper was named (``"~/.docker/config.json (credHelpers)"``,
    ``"kfp.toml (image.auth.helper)"``), for messages only.

    Returns the credential, or ``None`` when the helper says it has none
    ("credentials not found"). Raises :class:`Unauthorized` when the helper is not
    on ``PATH`` (naming ``origin``, where to fix it), times out, or fails otherwise;
    the message never includes the helper's output (it could contain a secret).
    """
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        raise Unauthorized(
            f"credential helper 'docker-credential-{helper}' for {server}, named by {origin}, is not on PATH; "
            f"install it or remove it from {origin}"
        )
    try:
        proc = subprocess.run([exe, "get"], input=server.encode(), capture_output=True, timeout=_HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Unauthorized(f"credential helper docker-credential-{helper} timed out for {server}") from None
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        if "credentials not found" in out.lower() or "credentials not found" in proc.stderr.decode("utf-8", "replace").lower():
            return None
        raise Unauthorized(f"credential helper docker-credential-{helper} failed for {server} (exit status {proc.returncode})")
    try:
        data = json.loads(out)
        user, secret = data.get("Username") or "", data.get("Secret") or ""
    except (ValueError, AttributeError):
        raise Unauthorized(f"credential helper docker-credential-{helper} returned malformed output for {server}") from None
    if not secret and not user:
        return None
    source = f"docker-credential-{helper}"
    if user == "<token>":
        return Credential(identity_token=secret, source=source)
    return Credential(username=user, password=secret, source=source)


def _decode_entry(entry: dict, source: str) -> Credential | None:
    if not isinstance(entry, dict):
        return None
    user, password = entry.get("username") or None, entry.get("password") or None
    raw = entry.get("auth")
    if raw:
        try:
            decoded = base64.b64decode(raw, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Unauthorized(f"the 'auth' value in {source} is not valid base64 of 'user:password'") from None
        if ":" not in decoded:
            raise Unauthorized(f"the 'auth' value in {source} does not decode to 'user:password'")
        user, password = decoded.split(":", 1)
    cred = Credential(
        username=user or None,
        password=password or None,
        identity_token=entry.get("identitytoken") or None,
        registry_token=entry.get("registrytoken") or None,
        source=source,
    )
    return None if cred.anonymous else cred


class AuthFileKeychain:
    """Credentials from one docker ``config.json`` or containers ``auth.json`` file.

    A missing file resolves everything to anonymous; a malformed one raises
    :class:`Unauthorized` naming the file. Lookup order for ``registry`` (and
    ``repository``): ``credHelpers[registry]``, then ``credsStore`` (as docker
    does), then the most specific ``auths`` key (``host/repo/path`` prefixes
    first, then the host, Docker Hub aliases included).
    """

    def __init__(self, path: str | os.PathLike[str], label: str | None = None):
        self.path = pathlib.Path(path)
        self.label = label or str(path)

    def __repr__(self) -> str:
        return f"AuthFileKeychain({self.label!r})"

    def _load(self) -> dict:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise Unauthorized(f"cannot read credentials file {self.label}: {e.strerror}") from None
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError as e:
            raise Unauthorized(f"credentials file {self.label} is not valid JSON (line {e.lineno})") from None  # type: ignore[attr-defined]
        if not isinstance(data, dict):
            raise Unauthorized(f"credentials file {self.label} must contain a JSON object")
        return data

    def resolve(self, registry: str, repository: str | None = None) -> Credential:
        """See the class docstring. Returns :data:`ANONYMOUS` when the file has nothing for ``registry``."""
        data = self._load()
        if not data:
            return ANONYMOUS
        aliases = _hub_aliases(registry)
        helpers = {_normalize_key(k): v for k, v in (data.get("credHelpers") or {}).items()}
        for alias in aliases:
            if helpers.get(_normalize_key(alias)):
                server = "https://index.docker.io/v1/" if alias in _DOCKER_HUB_KEYS else registry
                cred = run_credential_helper(helpers[_normalize_key(alias)], server,
                                             origin=f"{self.label} (credHelpers)")
                if cred:
                    log.debug("credentials for %s from credential helper %s", registry, helpers[_normalize_key(alias)])
                    return cred
                break
        store = data.get("credsStore")
        if store:  # docker: the store answers first; the file's own entry only if the store has none
            server = "https://index.docker.io/v1/" if registry in _DOCKER_HUB_KEYS else registry
            cred = run_credential_helper(store, server, origin=f"{self.label} (credsStore)")
            if cred:
                log.debug("credentials for %s from credential store %s", registry, store)
                return cred
        auths = {}
        for k, v in (data.get("auths") or {}).items():
            auths.setdefault(_normalize_key(k), v)
        candidates: list[str] = []
        if repository:
            parts = repository.split("/")
            for n in range(len(parts), 0, -1):
                candidates += [f"{a}/{'/'.join(parts[:n])}" for a in aliases]
        candidates += list(aliases)
        for key in candidates:
            if key in auths:
                cred = _decode_entry(auths[key], f"{self.label} (auths[{key!r}])")
                if cred:
                    log.debug("credentials for %s from %s", registry, self.label)
                    return dataclasses.replace(cred, source=self.label)
        return ANONYMOUS


class EnvKeychain:
    """Credentials from ``COMPOSE_KFP_USERNAME`` / ``COMPOSE_KFP_PASSWORD``, optionally limited by ``COMPOSE_KFP_REGISTRY``.

    The environment is read at each :meth:`resolve` call. A user name of
    ``<token>`` makes the password an identity (refresh) token.
    """

    def __init__(self, environ: dict[str, str] | None = None):
        self._environ = environ

    def __repr__(self) -> str:
        return "EnvKeychain()"

    def resolve(self, registry: str, repository: str | None = None) -> Credential:
        env = os.environ if self._environ is None else self._environ
        user, password = env.get(ENV_USERNAME) or "", env.get(ENV_PASSWORD) or ""
        if not password:
            return ANONYMOUS
        scope = [h.strip() for h in (env.get(ENV_REGISTRY) or "").split(",") if h.strip()]
        if scope and not any(set(_hub_aliases(_normalize_key(h))) & set(_hub_aliases(registry)) for h in scope):
            return ANONYMOUS
        source = f"${ENV_USERNAME}/${ENV_PASSWORD}"
        if user == "<token>":
            return Credential(identity_token=password, source=source)
        return Credential(username=user or None, password=password, source=source)


class StaticKeychain:
    """A fixed mapping ``{registry host: Credential}`` (for tests and programmatic use)."""

    def __init__(self, mapping: dict[str, Credential]):
        self._mapping = dict(mapping)

    def __repr__(self) -> str:
        return f"StaticKeychain({sorted(self._mapping)!r})"

    def resolve(self, registry: str, repository: str | None = None) -> Credential:
        for alias in _hub_aliases(registry):
            if alias in self._mapping:
                return self._mapping[alias]
        return ANONYMOUS


class ChainKeychain:
    """Tries keychains in order; the first non-anonymous credential wins, else anonymous."""

    def __init__(self, keychains: Iterable[Keychain]):
        self.keychains = tuple(keychains)

    def __repr__(self) -> str:
        return f"ChainKeychain({list(self.keychains)!r})"

    def resolve(self, registry: str, repository: str | None = None) -> Credential:
        for kc in self.keychains:
            cred = kc.resolve(registry, repository)
            if not cred.anonymous:
                return cred
        log.debug("no credentials found for %s; using anonymous access", registry)
        return ANONYMOUS


def default_keychain(auth_file: str | os.PathLike[str] | None = None) -> ChainKeychain:
    """The keychain docker/podman users expect (order in the module docstring).

    Paths are read from the environment when this is called; files are read at each resolve.
    """
    chain: list[Keychain] = []
    if auth_file:
        chain.append(AuthFileKeychain(auth_file))
    if os.environ.get("REGISTRY_AUTH_FILE"):
        chain.append(AuthFileKeychain(os.environ["REGISTRY_AUTH_FILE"], "$REGISTRY_AUTH_FILE"))
    if os.environ.get("XDG_RUNTIME_DIR"):
        chain.append(AuthFileKeychain(pathlib.Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"))
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    chain.append(AuthFileKeychain(pathlib.Path(config_home) / "containers" / "auth.json"))
    docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    chain.append(AuthFileKeychain(pathlib.Path(docker_dir) / "config.json"))
    chain.append(EnvKeychain())
    return ChainKeychain(chain)
