"""The HTTP transport under :class:`~compose_kfp.oci.registry.RegistryClient`: session, TLS, retries, auth.

Shaped after go-containerregistry's ``pkg/v1/remote/transport``: the protocol steps
(:mod:`compose_kfp.oci.registry`) build request paths and read answers; this module
gets each request to the registry and back.

* ``requests`` with a pooled :class:`~requests.adapters.HTTPAdapter` and urllib3
  :class:`~urllib3.util.Retry`: connection errors (except a refused connection
  and a host name that does not resolve, which fail at once: asking again gets
  the same answer), timeouts and HTTP 408, 429, 500, 502, 503, 504 are retried
  with exponential backoff and jitter, honouring ``Retry-After`` (capped at
  :data:`MAX_RETRY_AFTER` seconds), at most ``retries`` times. ``PATCH`` (not idempotent) is not retried by urllib3: a
  failed chunk is resumed by asking the upload URL how far it got.
* Auth from the ``WWW-Authenticate`` challenge of ``GET /v2/``: Basic, or Bearer
  tokens fetched from the realm (with credentials, an identity token, or
  anonymously), cached per scope until they expire, and refreshed once when a
  request is answered 401 in the middle of an operation.
* TLS with the system CAs plus the per-registry certificate folders docker and
  podman use (``<dir>/<host[:port]>/*.crt`` CA files, ``*.cert``/``*.key``
  client pairs; dirs in :data:`DEFAULT_CERT_DIRS`), or explicit paths. Plain
  HTTP only for loopback hosts (``insecure=None``) or when ``insecure=True``;
  credentials are never sent over plain HTTP to a non-loopback host.
* Error answers mapped to :mod:`compose_kfp.oci.errors` (:meth:`Transport.error`).

Secrets never reach a log line, an exception message or ``repr()``: URLs in
messages are shown as their path only (:meth:`Transport.shown`), the
``Authorization`` header is never formatted.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import logging
import os
import pathlib
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
import sys
import types
from typing import Any, Iterable, Iterator, Mapping, Sequence


class _DeferredCharsetDetector(types.ModuleType):
    """Stands in ``sys.modules`` for ``charset_normalizer`` until something uses it.

    ``requests`` imports a character-set detector when it is imported (``requests.compat``), and
    ``charset_normalizer`` loads every codec module it knows at import: about 40 ms of every command's
    start-up, for a feature (guessing the encoding of a response that does not declare one, ``Response.text``)
    that the registry protocol never uses: we read bytes and JSON. This module answers ``__version__`` (read
    from the installed package's ``version.py`` without importing it, for requests' compatibility check)
    and replaces itself by the real package on any other attribute (``detect``, ...), which from then on is
    what ``sys.modules`` holds and what this object forwards to.
    """

    def __init__(self, name: str, version: str, spec: Any = None):
        super().__init__(name)
        self.__version__ = version
        # What a look at the module without using it may ask (importlib.util.find_spec, a submodule import).
        self.__spec__ = spec
        if spec is not None:
            self.__file__ = spec.origin
            self.__path__ = list(spec.submodule_search_locations or [])

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr != "__all__":
            raise AttributeError(attr)
        import importlib

        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update({k: v for k, v in vars(real).items() if k != "__name__"})
        return getattr(real, attr)


def _defer_charset_detection() -> None:
    """Put a :class:`_DeferredCharsetDetector` in ``sys.modules`` before ``requests`` is first imported
    (nothing when requests, chardet or charset_normalizer is loaded already, or the package is not installed)."""
    if any(name in sys.modules for name in ("requests", "chardet", "charset_normalizer")):
        return
    import importlib.util

    try:
        spec = importlib.util.find_spec("chardet")
        if spec is not None:  # requests prefers chardet, which imports cheaply: leave it alone
            return
        spec = importlib.util.find_spec("charset_normalizer")
        if spec is None or not spec.submodule_search_locations:
            return
        text = (pathlib.Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text("utf-8")
    except (ImportError, OSError, ValueError, StopIteration):
        return
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.M)
    if found:
        sys.modules["charset_normalizer"] = _DeferredCharsetDetector("charset_normalizer", found.group(1), spec)


_defer_charset_detection()

import requests  # noqa: E402 - after _defer_charset_detection
import requests.adapters  # noqa: E402
import urllib3.exceptions  # noqa: E402
from urllib3.util.retry import Retry  # noqa: E402

from compose_kfp.oci.auth import Credential, Keychain
from compose_kfp.oci.errors import Unauthorized, NotFound, DistributionError

__all__ = [
    "Transport",
    "is_loopback",
    "connection_refused",
    "name_not_resolved",
    "parse_www_authenticate",
    "DEFAULT_TIMEOUT",
    "DEFAULT_RETRIES",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "DEFAULT_CERT_DIRS",
]

log = logging.getLogger(__name__)

#: Seconds to wait to connect and between bytes of a response.
DEFAULT_TIMEOUT = 60.0
#: How many times a failed request is retried.
DEFAULT_RETRIES = 5
#: Upper bound in seconds of one wait between retries (``Retry-After`` included).
MAX_RETRY_AFTER = 60.0
#: HTTP statuses that are retried (the request may succeed later).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Folders holding ``<host[:port]>/`` certificate folders, as docker and podman read them.
DEFAULT_CERT_DIRS: tuple[str, ...] = (
    "/etc/containers/certs.d",
    "/etc/docker/certs.d",
    "~/.config/containers/certs.d",
)
_TOKEN_MARGIN = 10.0

@dataclasses.dataclass(frozen=True)
class _Challenge:
    scheme: str  # "basic" or "bearer"
    params: Mapping[str, str]


_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_www_authenticate(header: str) -> tuple[str, dict[str, str]]:
    """Parse one ``WWW-Authenticate`` challenge into (lowercase scheme, params). ``("", {})`` if empty."""
    header = (header or "").strip()
    if not header:
        return "", {}
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (with or without ``:port`` / brackets)."""
    h = host
    if h.startswith("["):
        h = h[1:h.find("]")]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    if h.lower() == "localhost" or h.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and every exception it wraps: ``__cause__``, ``__context__``, urllib3's ``reason``, ``args``."""
    todo, seen = [error], set()
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:  # ``reason`` can be a str (SSLError)
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]


def connection_refused(error: BaseException | None) -> bool:
    """Whether ``error`` (a requests/urllib3 exception, walked through its causes) is a refused TCP connection:
    nothing listens at the address, so retrying with backoff would only delay the same answer."""
    return any(isinstance(e, ConnectionRefusedError) for e in _causes(error))


#: ``getaddrinfo`` answers that mean the name has no address (RFC 3493 EAI_* codes); ``EAI_AGAIN``
#: (temporary failure, e.g. a DNS server that did not answer) is not among them and is retried.
_UNRESOLVED = frozenset(getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA", "EAI_FAIL")
                        if hasattr(socket, name))


def name_not_resolved(error: BaseException | None) -> bool:
    """Whether ``error`` (a requests/urllib3 exception, walked through its causes) is a host name that does
    not resolve (``socket.gaierror`` with ``EAI_NONAME``, ``EAI_NODATA`` or ``EAI_FAIL``): asking again
    would get the same answer, so it is not retried."""
    return any(isinstance(e, socket.gaierror) and e.errno in _UNRESOLVED for e in _causes(error))


class _CappedRetry(Retry):
    """urllib3 Retry whose ``Retry-After`` sleeps are capped at :data:`MAX_RETRY_AFTER` seconds and that does not
    retry a refused connection or a host name that does not resolve (resets, timeouts, temporary DNS failures
    and retryable statuses are still retried)."""

    def get_retry_after(self, response):  # type: ignore[override]
        value = super().get_retry_after(response)
        return None if value is None else min(value, MAX_RETRY_AFTER)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,  # type: ignore[override]
                  _stacktrace=None):
        if error is not None and (connection_refused(error) or name_not_resolved(error)):
            raise urllib3.exceptions.MaxRetryError(_pool, url, error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _scope_key(scopes: Iterable[str]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for s in scopes:
        kind, _, rest = s.partition(":")
        name, _, actions = rest.rpartition(":")
        out.setdefault(f"{kind}:{name}", set()).update(a for a in actions.split(",") if a)
    return {k: frozenset(v) for k, v in out.items()}


def _covers(have: dict[str, frozenset[str]], need: dict[str, frozenset[str]]) -> bool:
    return all(k in have and v <= have[k] for k, v in need.items())


class Transport:
    """Gets requests to one registry's ``/v2/`` API and back: pooled session, TLS, retries, auth.

    Args:
        registry: API host, ``host[:port]``.
        keychain: resolves credentials (looked up under ``auth_registry`` and the repository).
        insecure: ``None`` (default): plain HTTP for loopback hosts, HTTPS otherwise; ``True``: plain HTTP;
            ``False``: always HTTPS.
        ca_dirs: certificate folders to look in for ``<dir>/<registry>/`` (default :data:`DEFAULT_CERT_DIRS`).
        ca_file: an extra CA bundle (PEM) trusted in addition to the system CAs.
        client_cert: ``(cert_path, key_path)`` for TLS client authentication.
        timeout: seconds to wait to connect and between bytes of a response.
        retries: how many times a failed request is retried.
        backoff: base of the exponential backoff in seconds (jitter of the same size is added).
        auth_registry: the host credentials are looked up under (default ``registry``;
            ``docker.io`` for ``registry-1.docker.io``).
        user_agent: the ``User-Agent`` header of every request.

    Safe to use from several threads (one pooled session, a locked token cache).
    """

    def __init__(
        self,
        registry: str,
        keychain: Keychain,
        *,
        insecure: bool | None = None,
        ca_dirs: Sequence[str | os.PathLike[str]] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        client_cert: tuple[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        auth_registry: str | None = None,
        user_agent: str = "compose-kfp",
    ):
        self.registry = registry
        self.auth_registry = auth_registry or ("docker.io" if registry == "registry-1.docker.io" else registry)
        self.keychain = keychain
        self.loopback = is_loopback(registry)
        self.insecure = insecure
        self.scheme = "http" if (insecure or (insecure is None and self.loopback)) else "https"
        self.base_url = f"{self.scheme}://{registry}"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._challenge: _Challenge | None = None
        self._pinged = False
        self._tokens: list[tuple[dict[str, frozenset[str]], str, float]] = []
        self._creds: dict[str | None, Credential] = {}
        self.session = self._make_session(ca_dirs, ca_file, client_cert, user_agent)

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r})"

    def _ssl_context(self, ca_dirs, ca_file, client_cert) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        bases = DEFAULT_CERT_DIRS if ca_dirs is None else ca_dirs
        for base in bases:
            d = pathlib.Path(os.path.expanduser(str(base))) / self.registry.replace("[", "").replace("]", "")
            d2 = pathlib.Path(os.path.expanduser(str(base))) / self.registry
            for folder in {d, d2}:
                if not folder.is_dir():
                    continue
                for crt in sorted(folder.glob("*.crt")):
                    log.debug("trusting CA %s for %s", crt, self.registry)
                    ctx.load_verify_locations(cafile=str(crt))
                if client_cert is None:
                    for cert in sorted(folder.glob("*.cert")):
                        key = cert.with_suffix(".key")
                        if key.exists():
                            log.debug("using client certificate %s for %s", cert, self.registry)
                            ctx.load_cert_chain(str(cert), str(key))
                            break
        if ca_file:
            ctx.load_verify_locations(cafile=str(ca_file))
        if client_cert:
            ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        return ctx

    def _make_session(self, ca_dirs, ca_file, client_cert, user_agent) -> requests.Session:
        retry = _CappedRetry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            other=0,
            allowed_methods=frozenset({"GET", "HEAD", "PUT", "DELETE", "POST"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff,
            backoff_jitter=self.backoff,
            backoff_max=MAX_RETRY_AFTER,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        ctx = self._ssl_context(ca_dirs, ca_file, client_cert) if self.scheme == "https" else None

        class _Adapter(requests.adapters.HTTPAdapter):
            def init_poolmanager(self, *args, **kwargs):  # noqa: D401 - requests hook
                if ctx is not None:
                    kwargs["ssl_context"] = ctx
                super().init_poolmanager(*args, **kwargs)

        session = requests.Session()
        adapter = _Adapter(max_retries=retry, pool_connections=4, pool_maxsize=16)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = user_agent
        session.auth = lambda r: r  # never pick up ~/.netrc credentials implicitly
        return session

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, path_or_url: str) -> str:
        """``path_or_url`` (``/v2/...`` or an absolute ``Location``) resolved against :attr:`base_url`."""
        return urllib.parse.urljoin(self.base_url + "/", path_or_url)

    @staticmethod
    def shown(url: str) -> str:
        """A URL as it may appear in messages: path only, no query (upload state)."""
        return urllib.parse.urlsplit(url).path

    def credential(self, repository: str | None) -> Credential:
        """The keychain's credential for ``auth_registry`` and ``repository``, resolved once per repository."""
        with self._lock:
            if repository not in self._creds:
                self._creds[repository] = self.keychain.resolve(self.auth_registry, repository)
            return self._creds[repository]

    def may_send_secret(self, url: str) -> bool:
        """Whether a credential may go to ``url``: over HTTPS, or plain HTTP to a loopback host only."""
        parts = urllib.parse.urlsplit(url)
        return parts.scheme == "https" or is_loopback(parts.netloc)

    def raw(self, method: str, url: str, *, headers=None, data=None, stream=False,
            allow_redirects=True) -> requests.Response:
        """Send one request as given (no auth added), with the session's retries and timeouts.

        Returns the response whatever its status (the caller closes it). Raises
        :class:`DistributionError` when no answer came: TLS verification failed, nothing
        listens at the address (at once, not retried), or the connection kept failing or
        timing out after ``retries`` retries. A refused connection and a host name that
        does not resolve fail at once, with a message saying so.
        """
        try:
            return self.session.request(method, url, headers=headers, data=data, stream=stream,
                                        timeout=(self.timeout, self.timeout), allow_redirects=allow_redirects)
        except requests.exceptions.SSLError:
            raise DistributionError(
                f"TLS verification of {self.registry} failed; put its CA certificate in "
                f"/etc/containers/certs.d/{self.registry}/ca.crt (or pass a CA file)"
            ) from None
        except requests.exceptions.RetryError as e:
            raise DistributionError(f"{self.registry}: {method} {self.shown(url)} kept failing after "
                                f"{self.retries} retries ({type(e).__name__})") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            if connection_refused(e):
                raise DistributionError(f"cannot reach the registry {self.registry}: nothing is listening at "
                                    f"{self.scheme}://{self.registry} (connection refused on {method} "
                                    f"{self.shown(url)}); start the registry or fix the host and port") from None
            if name_not_resolved(e):
                host = urllib.parse.urlsplit(url).hostname or self.registry
                raise DistributionError(f"cannot reach the registry {self.registry}: the host name {host} does not "
                                    f"resolve (name lookup failed on {method} {self.shown(url)}); check the "
                                    "spelling of the host name") from None
            kind = "timed out" if isinstance(e, requests.exceptions.Timeout) or "timed out" in str(e).lower() \
                else "connection failed"
            raise DistributionError(f"cannot reach {self.registry}: {method} {self.shown(url)} {kind} "
                                f"after {self.retries} retries") from None

    def ping(self) -> str | None:
        """``GET /v2/`` (spec: "Determining support"): learn how the registry wants to be authenticated.

        Returns ``None`` (no auth), ``"basic"`` or ``"bearer"``. Raises :class:`DistributionError`
        if the registry cannot be reached or does not speak the v2 API.
        """
        resp = self.raw("GET", self.url("/v2/"))
        with resp:
            if resp.status_code == 200:
                challenge = None
            elif resp.status_code == 401:
                scheme, params = parse_www_authenticate(resp.headers.get("WWW-Authenticate", ""))
                if scheme not in ("basic", "bearer"):
                    raise DistributionError(f"{self.registry} asks for unsupported authentication {scheme or '(none)'!r}",
                                        status=401)
                challenge = _Challenge(scheme, params)
            else:
                raise self.error(resp, "GET /v2/ (API version check)")
        with self._lock:
            self._challenge, self._pinged = challenge, True
        return challenge.scheme if challenge else None

    def ensure_pinged(self) -> None:
        """:meth:`ping` unless it has been done (the challenge is then known)."""
        if not self._pinged:
            self.ping()

    def _fetch_token(self, challenge: _Challenge, scopes: Sequence[str], repository: str | None) -> tuple[str, float]:
        """Ask the challenge's realm for a token (distribution token auth spec; OAuth2 refresh with an identity token).

        Returns ``(token, expiry as time.time())``.
        """
        realm = challenge.params.get("realm")
        if not realm:
            raise DistributionError(f"{self.registry} sent a Bearer challenge without a realm", status=401)
        cred = self.credential(repository)
        service = challenge.params.get("service")
        if cred.registry_token:
            return cred.registry_token, time.time() + 300
        if not cred.anonymous and not self.may_send_secret(realm):
            raise Unauthorized(f"refusing to send credentials for {self.registry} over plain HTTP to the token "
                            f"service {urllib.parse.urlsplit(realm).netloc}", status=401)
        if cred.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": cred.identity_token,
                    "client_id": "compose-kfp", "scope": " ".join(scopes)}
            if service:
                form["service"] = service
            resp = self.raw("POST", realm, data=form)
        else:
            query = [("scope", s) for s in scopes] + ([("service", service)] if service else [])
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
            headers = {}
            if cred.username or cred.password:
                raw = f"{cred.username or ''}:{cred.password or ''}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            resp = self.raw("GET", url, headers=headers)
        with resp:
            if resp.status_code in (401, 403):
                raise self._refused(cred, resp.status_code)
            if resp.status_code != 200:
                raise DistributionError(f"the token service of {self.registry} answered HTTP {resp.status_code}",
                                    status=resp.status_code)
            try:
                body = resp.json()
                token = body.get("token") or body.get("access_token")
                expires_in = float(body.get("expires_in") or 60)
            except (ValueError, AttributeError, TypeError):
                token = None
            if not token:
                raise DistributionError(f"the token service of {self.registry} returned no token", status=resp.status_code)
        return token, time.time() + max(expires_in - _TOKEN_MARGIN, expires_in / 2)

    def _refused(self, cred: Credential, status: int) -> Unauthorized:
        if cred.anonymous:
            return Unauthorized(
                f"{self.registry} requires credentials and none were found for it; log in with "
                f"`podman login {self.auth_registry}` / `docker login {self.auth_registry}`, or set "
                f"COMPOSE_KFP_USERNAME and COMPOSE_KFP_PASSWORD", status=status)
        who = f" for user {cred.username!r}" if cred.username else ""
        return Unauthorized(f"{self.registry} refused the credentials{who} from {cred.source}; "
                         "check the user name and password or token", status=status)

    def _token(self, scopes: Sequence[str], repository: str | None, *, stale: str | None = None) -> str:
        """A cached token covering ``scopes``; ``stale`` (a token the registry just refused) is never returned."""
        need = _scope_key(scopes)

        def cached() -> str | None:
            now = time.time()
            with self._lock:
                self._tokens = [t for t in self._tokens if t[2] > now and t[1] != stale]
                for have, token, _exp in self._tokens:
                    if _covers(have, need):
                        return token
            return None

        if (token := cached()) is not None:
            return token
        with self._fetch_lock:  # one fetch at a time: parallel uploads share the token
            if (token := cached()) is not None:
                return token
            challenge = self._challenge
            assert challenge is not None
            token, expiry = self._fetch_token(challenge, scopes, repository)
            with self._lock:
                self._tokens = [t for t in self._tokens if not _covers(need, t[0])]
                self._tokens.append((need, token, expiry))
        return token

    def _auth_header(self, url: str, scopes: Sequence[str], repository: str | None,
                     stale: str | None) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            cred = self.credential(repository)
            if cred.anonymous:
                raise self._refused(cred, 401)
            if not self.may_send_secret(url):
                raise Unauthorized(f"refusing to send credentials to {self.registry} over plain HTTP; "
                                "use HTTPS for registries that are not on this machine", status=401)
            raw = f"{cred.username or ''}:{cred.password or cred.identity_token or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {"Authorization": "Bearer " + self._token(scopes, repository, stale=stale)}

    def authorize(self, scopes: Sequence[str], repository: str | None) -> None:
        """Ping if needed and, with Bearer auth, fetch one token covering every scope in ``scopes`` now.

        ``scopes`` are token scopes (``repository:<name>:pull,push``...); the token is cached,
        so later requests whose scopes it covers (parallel ones too) share it. No-op for
        Basic auth or an open registry. Raises :class:`Unauthorized` if the token service refuses.
        """
        self.ensure_pinged()
        if self._challenge is not None and self._challenge.scheme == "bearer":
            self._token(scopes, repository)

    def send(self, method: str, url: str, *, scopes: Sequence[str], repository: str | None,
             headers: Mapping[str, str] | None = None, data=None, stream: bool = False) -> requests.Response:
        """Send one authenticated request; on a 401 refresh the token once and resend.

        ``url`` is a path (``/v2/...``) or an absolute URL (an upload ``Location``);
        ``scopes`` are the token scopes the request needs and ``repository`` the one whose
        credential is used. Returns the response whatever its status except 401 (the caller
        closes it and maps errors with :meth:`error`). Raises :class:`Unauthorized` when the
        registry still answers 401 after one refresh, or when credentials are missing or
        may not be sent; :class:`DistributionError` as :meth:`raw` does.
        """
        self.ensure_pinged()
        url = self.url(url)
        stale = None
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            hdrs.update(self._auth_header(url, scopes, repository, stale))
            if attempt == 0 and hdrs.get("Authorization", "").startswith("Bearer "):
                stale = hdrs["Authorization"][7:]
            log.debug("%s %s", method, self.shown(url))
            resp = self.raw(method, url, headers=hdrs, data=data, stream=stream)
            if resp.status_code != 401:
                return resp
            scheme, params = parse_www_authenticate(resp.headers.get("WWW-Authenticate", ""))
            resp.close()
            if attempt == 0 and scheme == "bearer" and self._challenge and self._challenge.scheme == "bearer":
                log.debug("%s answered 401 (%s); fetching a new token", self.registry, params.get("error", "no error"))
                with self._lock:
                    self._challenge = _Challenge("bearer", {**self._challenge.params,
                                                             **{k: v for k, v in params.items() if k != "scope"}})
                continue
            if scheme == "bearer" and self._challenge is None and attempt == 0:
                with self._lock:
                    self._challenge = _Challenge("bearer", params)
                continue
            if scheme == "basic" and self._challenge is None and attempt == 0:
                with self._lock:
                    self._challenge = _Challenge("basic", params)
                continue
            cred = self.credential(repository)
            if params.get("error") == "insufficient_scope" and not cred.anonymous:
                raise Unauthorized(f"{self.registry} denied {cred.source} access to {', '.join(scopes)}; check that "
                                "the account may read (and, to push, write) this repository", status=401)
            raise self._refused(cred, 401)
        raise AssertionError("unreachable")

    def error(self, resp: requests.Response, what: str) -> DistributionError:
        """The exception for an error answer to ``what`` (distribution spec §Error codes).

        The message is ``<registry>: <what> failed: HTTP <status> [<code>][: <message>]``
        with the first error of the JSON body; 404 gives :class:`NotFound`, 401 and 403
        :class:`Unauthorized`, anything else :class:`DistributionError` (``status`` and ``code`` set).
        """
        code = message = None
        try:
            errors = resp.json().get("errors") or []
            if errors:
                code, message = errors[0].get("code"), errors[0].get("message")
        except (ValueError, AttributeError, TypeError):
            pass
        detail = f" {code}" if code else ""
        detail += f": {message}" if message else ""
        text = f"{self.registry}: {what} failed: HTTP {resp.status_code}{detail}"
        if resp.status_code == 404:
            return NotFound(text, status=404, code=code)
        if resp.status_code in (401, 403):
            return Unauthorized(text, status=resp.status_code, code=code)
        return DistributionError(text, status=resp.status_code, code=code)

    def sleep(self, attempt: int, retry_after: float | None) -> None:
        """Wait before retry number ``attempt`` (1-based) of a step retried by its caller (upload chunks, downloads).

        ``retry_after`` seconds when the registry said so, else ``backoff * 2**(attempt-1)``
        plus up to ``backoff`` of jitter; never more than :data:`MAX_RETRY_AFTER` (+ jitter).
        """
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER)
        else:
            delay = min(self.backoff * (2 ** (attempt - 1)), MAX_RETRY_AFTER) + random.uniform(0, self.backoff)
        time.sleep(delay)

    @staticmethod
    def retry_after(resp: requests.Response) -> float | None:
        """The ``Retry-After`` of ``resp`` in seconds when given as a number, else ``None`` (HTTP dates are ignored)."""
        value = resp.headers.get("Retry-After")
        if value and value.strip().isdigit():
            return float(value)
        return None
