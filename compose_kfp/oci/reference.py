"""Image references: parsing and normalization by the distribution reference grammar.

Grammar (``github.com/distribution/reference``, with Docker's normalization)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component ( "/" path-component )*
    domain     := host [ ":" port ]          host: DNS name, IPv4 or "[" IPv6 "]"
    path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" encoded     (sha256: 64 lowercase hex digits)

The first path component is a registry host only if it contains ``.`` or ``:``
or is ``localhost`` (Docker's rule); otherwise the registry is ``docker.io`` and,
for a single-component name there, ``library/`` is prepended. ``index.docker.io``
is normalized to ``docker.io``; its API host is ``registry-1.docker.io``.

Credentials are never part of a reference: ``user:password@host/repo`` (with or
without a ``scheme://``) is refused by :meth:`Reference.parse` with a message that
shows the reference with its userinfo replaced by ``***@`` (see :func:`redact_userinfo`).
"""

from __future__ import annotations

import dataclasses
import re

from compose_kfp.oci.errors import InvalidReference

__all__ = ["Reference", "DOCKER_HUB", "DOCKER_HUB_API", "has_userinfo", "redact_userinfo"]

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")
_HEX = re.compile(r"[a-f0-9]+\Z")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DOMAIN_LABEL = re.compile(r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\Z")
_IPV6 = re.compile(r"\[[a-fA-F0-9:.]+(?:%[A-Za-z0-9_.-]+)?\]\Z")
_NAME_MAX = 255
#: A digest as the distribution *reference* grammar spells it after ``@``: ``algorithm ":" hex{32,}``.
_REFERENCE_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _userinfo_end(text: str) -> int | None:
    """Index just past the ``@`` that ends a ``user[:password]@`` prefix of ``text``, or ``None`` if it has none.

    An ``@`` followed by a digest of the reference grammar (``algorithm:`` and at least 32 hex digits)
    separates the digest. Any other ``@`` ends userinfo when the text after it has a ``/``
    (``host/path``: a digest never does) or when the text before it is ``x:y`` without a ``/``
    (``user:password@host[:port]``, which cannot be told from ``name:tag@bad-digest``, so it is not
    shown either). The *last* such ``@`` is used, so a password containing ``@`` is covered whole.
    Other malformed digests (``ghcr.io/org/img@md5``) are not userinfo.
    """
    scheme = _SCHEME.match(text)
    start = scheme.end() if scheme else 0
    body = text[start:]
    at = body.rfind("@")
    if at < 0:
        return None
    if _REFERENCE_DIGEST.match(body[at + 1:]):
        at = body.rfind("@", 0, at)
        return None if at < 0 else start + at + 1
    left, right = body[:at], body[at + 1:]
    if "/" in right or (":" in left and "/" not in left):
        return start + at + 1
    return None


def has_userinfo(text: str) -> bool:
    """Whether an image reference (``user:pw@host/repo``, ``docker://user:pw@host/repo``) carries credentials.

    ``name@sha256:<hex>`` (a digest) is not userinfo; ``user:pw@host/repo`` and ``user:pw@host:port`` are
    (the rule is in ``_userinfo_end``).
    """
    return isinstance(text, str) and _userinfo_end(text) is not None


def redact_userinfo(text: str) -> str:
    """``text`` with any ``user[:password]@`` prefix replaced by ``***@`` (a ``scheme://`` is kept).

    Safe to put in messages and logs: ``"bob:pw@localhost:5000/x"`` -> ``"***@localhost:5000/x"``;
    text without userinfo is returned unchanged.
    """
    end = _userinfo_end(text) if isinstance(text, str) else None
    if end is None:
        return text
    scheme = _SCHEME.match(text)
    return (text[: scheme.end()] if scheme else "") + "***@" + text[end:]


def _fail(ref: str, part: str, why: str) -> InvalidReference:
    return InvalidReference(f"invalid image reference {ref!r}: {part} — {why}")


def validate_digest(digest: str, *, ref: str | None = None) -> str:
    """Return ``digest`` if it is a well-formed ``algorithm:encoded`` digest, else raise :class:`InvalidReference`.

    Known algorithms (sha256, sha384, sha512) must have the right number of lowercase hex digits.
    """
    shown = ref if ref is not None else digest
    if not _DIGEST.match(digest):
        raise _fail(shown, f"digest {digest!r}", "expected 'algorithm:hex', e.g. 'sha256:' and 64 hex digits")
    algo, _, encoded = digest.partition(":")
    want = _DIGEST_LENGTHS.get(algo)
    if want is not None and (len(encoded) != want or not _HEX.match(encoded)):
        raise _fail(shown, f"digest {digest!r}", f"{algo} needs exactly {want} lowercase hex digits")
    return digest


def _validate_domain(ref: str, domain: str) -> None:
    host, port = domain, None
    if domain.startswith("["):
        end = domain.find("]")
        host, rest = domain[: end + 1], domain[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _fail(ref, f"registry {domain!r}", "unexpected text after the IPv6 address")
            port = rest[1:]
        if not _IPV6.match(host):
            raise _fail(ref, f"registry {domain!r}", "not a valid IPv6 address")
    else:
        if domain.count(":") > 1:
            raise _fail(ref, f"registry {domain!r}", "IPv6 addresses must be in brackets, e.g. [::1]:5000")
        host, _, port = domain.partition(":")
        port = port if ":" in domain else None
        labels = host.split(".")
        if not host or not all(_DOMAIN_LABEL.match(lab) for lab in labels):
            raise _fail(ref, f"registry {domain!r}", "not a valid host name")
    if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
        raise _fail(ref, f"registry port {port!r}", "must be a number from 1 to 65535")


@dataclasses.dataclass(frozen=True)
class Reference:
    """A parsed, normalized image reference.

    Attributes:
        registry: normalized registry host, with ``:port`` if one was given (``docker.io`` when implicit).
        repository: the repository path inside the registry (``library/python``).
        tag: the tag, or ``None`` when the reference had none (see :attr:`identifier`).
        digest: the ``algorithm:hex`` digest, or ``None``.

    ``str()`` gives the canonical, fully qualified form ``registry/repository[:tag][@digest]``.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, s: str) -> "Reference":
        """Parse ``s`` by the distribution reference grammar and normalize it (see the module docstring).

        Raises :class:`InvalidReference` naming the reference and the wrong part
        (empty name, uppercase repository, bad tag, bad digest, bad host or port, too long).
        A reference carrying credentials (``user:password@host/repo``, with or without a scheme) is
        refused; that message shows the reference with the userinfo replaced by ``***@``, never the secret.
        """
        if not isinstance(s, str) or not s:
            raise InvalidReference("invalid image reference '': the reference is empty")
        if has_userinfo(s):
            raise InvalidReference(
                f"invalid image reference {redact_userinfo(s)!r}: it starts with `user:password@` credentials "
                "(not shown); credentials in an image reference are refused. Remove them and log in with "
                "`docker login` / `podman login`, or use [image.auth] in kfp.toml (a digest is written "
                "NAME@sha256: followed by 64 hex digits)"
            )
        if s != s.strip() or any(c.isspace() for c in s):
            raise _fail(s, "whitespace", "references cannot contain spaces")
        rest, digest = s, None
        if "@" in rest:
            rest, _, digest = rest.partition("@")
            validate_digest(digest, ref=s)
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG.match(tag):
                raise _fail(s, f"tag {tag!r}", "a tag is 1-128 of letters, digits, '_', '.', '-', not starting with '.' or '-'")
        if not rest:
            raise _fail(s, "name", "the repository name is empty")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            domain, path = first, remainder
            _validate_domain(s, domain)
        else:
            domain, path = DOCKER_HUB, rest
        if domain.lower() in _DOCKER_HUB_ALIASES:
            domain = DOCKER_HUB
        if not path:
            raise _fail(s, "repository", "the repository path after the registry is empty")
        for comp in path.split("/"):
            if not _PATH_COMPONENT.match(comp):
                if comp.lower() != comp and _PATH_COMPONENT.match(comp.lower()):
                    raise _fail(s, f"repository {path!r}", "repository names must be lowercase")
                raise _fail(
                    s, f"repository component {comp!r}",
                    "use lowercase letters and digits, separated by '.', '_', '__' or '-'",
                )
        if domain == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if len(domain) + 1 + len(path) > _NAME_MAX:
            raise _fail(s, "name", f"registry and repository together exceed {_NAME_MAX} characters")
        return cls(registry=domain, repository=path, tag=tag, digest=digest)

    @property
    def api_host(self) -> str:
        """The host (and port) to send distribution API requests to: ``registry-1.docker.io`` for Docker Hub."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"

    def context(self) -> "Reference":
        """The repository this reference lives in (same registry and repository, no tag or digest)."""
        return Reference(self.registry, self.repository)

    def with_tag(self, tag: str) -> "Reference":
        """A copy pointing at ``tag`` (any digest dropped). Raises :class:`InvalidReference` for a bad tag."""
        if not _TAG.match(tag or ""):
            raise _fail(f"{self.name}:{tag}", f"tag {tag!r}", "a tag is 1-128 of letters, digits, '_', '.', '-'")
        return Reference(self.registry, self.repository, tag=tag)

    def with_digest(self, digest: str) -> "Reference":
        """A copy pinned to ``digest``, keeping the tag for display. Raises :class:`InvalidReference` for a bad digest."""
        validate_digest(digest, ref=f"{self.name}@{digest}")
        return Reference(self.registry, self.repository, tag=self.tag, digest=digest)

    def familiar(self) -> str:
        """The short form people type: ``python:3.11`` for ``docker.io/library/python:3.11``."""
        name = self.name
        if self.registry == DOCKER_HUB:
            name = self.repository.removeprefix("library/") if self.repository.count("/") == 1 else self.repository
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
