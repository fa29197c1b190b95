"""What a dependency layer is made from: the target it is installed for, the requirements files it reads,
and its cache key. Reads files only; never starts an installer (that is :mod:`compose_kfp.build.deps`).

- :class:`DepsTarget`: platform, Python version, libc and index URLs of one dependency layer
  (:func:`resolve_python_version` takes the Python version from ``image.python`` or the base config's
  ``Env``); :func:`check_index_url` refuses URLs carrying credentials.
- :func:`read_requirements`: a requirements file and every file it includes (``-r``/``-c``, followed
  recursively), as :class:`RequirementsSet`; :func:`reproducibility_warnings` names unpinned entries.
- :func:`requirements_key`: the ``sha256:`` cache key of a dependency layer (module docstring of
  :mod:`compose_kfp.build.deps`, "Cache key and reuse").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from compose_kfp.build.spec import BIN_DIR, SITE_PACKAGES
from compose_kfp.errors import BuildError, ConfigError

log = logging.getLogger(__name__)

#: Shebang written into console scripts (the installer writes this machine's interpreter path).
SCRIPT_SHEBANG = b"#!/usr/bin/env python3"
#: Environment variables holding the username / password for ``image.index_url``.
INDEX_USERNAME_ENV = "COMPOSE_KFP_INDEX_USERNAME"
INDEX_PASSWORD_ENV = "COMPOSE_KFP_INDEX_PASSWORD"
#: Bumped whenever the installed tree for the same inputs would change (flags, normalization, layout).
KEY_VERSION = 2
DEFAULT_INDEX_URL = "https://pypi.org/simple"
_LIBCS = ("glibc", "musl")
_ARCHES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm64/v8": "aarch64"}
#: glibc versions uv can target (``--python-platform <arch>-manylinux_<v>``).
_UV_GLIBC = ("2.17", "2.28", "2.31", "2.32", "2.33", "2.34", "2.35", "2.36", "2.37", "2.38", "2.39", "2.40")


# --------------------------------------------------------------------------------------------------------------
# Target


def _normalize_python(version: str, key: str) -> str:
    m = re.fullmatch(r"\s*(3)\.(\d+)(?:\.\d+(?:(?:a|b|rc)\d+)?)?\s*", str(version))
    if not m:
        raise ConfigError(f"{key}: expected a CPython 3 version such as \"3.11\", got {version!r}")
    return f"{m.group(1)}.{int(m.group(2))}"


def check_index_url(url: str, key: str, *, source: str = "kfp.toml") -> str:
    """Validate a package index URL from ``kfp.toml``; return it unchanged.

    Args:
        url: the URL (``https://host/simple``; ``http`` and ``file`` are accepted too).
        key: the key path that holds it, for the message (``image.index_url``, ``image.extra_index_urls[0]``).
        source: the file it came from.

    Raises:
        ConfigError: the URL has userinfo (``user:password@``): credentials never go into kfp.toml, they come
            from ``~/.netrc`` or ``COMPOSE_KFP_INDEX_USERNAME``/``COMPOSE_KFP_INDEX_PASSWORD``; or it is not an
            ``http``/``https``/``file`` URL.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.hostname):
        raise ConfigError(f"{source}: {key}: expected an http(s) or file URL of a package index, got {url!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ConfigError(
            f"{source}: {key}: the index URL contains credentials (user:password@host); remove them and put "
            f"them in ~/.netrc or the environment variables {INDEX_USERNAME_ENV} / {INDEX_PASSWORD_ENV}"
        )
    return url


@dataclasses.dataclass(frozen=True)
class DepsTarget:
    """What the requirements are installed for. Frozen; validated on construction.

    Attributes:
        platform: image platform ``os/arch`` (``linux/amd64`` -> x86_64 wheels, ``linux/arm64`` -> aarch64).
        python: CPython ``major.minor`` of the base image (``"3.11"``; ``"3.11.7"`` is reduced to ``"3.11"``).
        libc: ``"glibc"`` (manylinux wheels) or ``"musl"`` (musllinux wheels, Alpine bases).
        index_url: the package index (PEP 503 simple API); ``None`` = PyPI. No credentials.
        extra_index_urls: more indexes, searched too (uv: before ``index_url``). No credentials.
        glibc_version: newest manylinux glibc the base supports (``"2.28"`` default: Debian 10+/Ubuntu 20.04+/
            UBI 8+; ``"2.17"`` for older bases). Ignored for musl.
        musl_version: newest musllinux version the base supports (``"1.2"``: Alpine 3.13+).

    Raises:
        ConfigError: unsupported platform, libc, Python or glibc version, or an index URL with credentials;
            the message names the kfp.toml key.
    """

    platform: str = "linux/amd64"
    python: str = "3.11"
    libc: str = "glibc"
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    glibc_version: str = "2.28"
    musl_version: str = "1.2"

    def __post_init__(self) -> None:
        if self.platform not in _ARCHES:
            raise ConfigError(
                f"image.platforms: the dependency layer cannot be built for {self.platform!r}; "
                f"supported: {', '.join(sorted(_ARCHES))}"
            )
        if self.libc not in _LIBCS:
            raise ConfigError(f"image.libc: expected 'glibc' or 'musl', got {self.libc!r}")
        object.__setattr__(self, "python", _normalize_python(self.python, "image.python"))
        if self.libc == "glibc" and not re.fullmatch(r"2\.\d+", self.glibc_version):
            raise ConfigError(f"glibc_version: expected e.g. '2.28', got {self.glibc_version!r}")
        if self.libc == "musl" and not re.fullmatch(r"1\.\d+", self.musl_version):
            raise ConfigError(f"musl_version: expected e.g. '1.2', got {self.musl_version!r}")
        object.__setattr__(self, "extra_index_urls", tuple(self.extra_index_urls))
        if self.index_url is not None:
            check_index_url(self.index_url, "image.index_url")
        for i, url in enumerate(self.extra_index_urls):
            check_index_url(url, f"image.extra_index_urls.{i}")

    @property
    def arch(self) -> str:
        """Wheel architecture: ``x86_64`` or ``aarch64``."""
        return _ARCHES[self.platform]

    @property
    def wheel_platform(self) -> str:
        """The newest wheel platform tag accepted, e.g. ``manylinux_2_28_x86_64``, ``musllinux_1_2_aarch64``."""
        if self.libc == "musl":
            return f"musllinux_{self.musl_version.replace('.', '_')}_{self.arch}"
        return f"manylinux_{self.glibc_version.replace('.', '_')}_{self.arch}"

    def uv_platform(self) -> str:
        """Value for ``uv pip install --python-platform`` (``x86_64-manylinux_2_28``, ``aarch64-unknown-linux-musl``).

        Raises:
            BuildError: uv cannot target this glibc version (use pip, or another ``glibc_version``).
        """
        if self.libc == "musl":
            return f"{self.arch}-unknown-linux-musl"
        if self.glibc_version not in _UV_GLIBC:
            raise BuildError(
                f"uv cannot target glibc {self.glibc_version}; choose one of {', '.join(_UV_GLIBC)}"
            )
        return f"{self.arch}-manylinux_{self.glibc_version.replace('.', '_')}"

    def pip_platforms(self) -> list[str]:
        """Values for pip's repeated ``--platform``: every compatible tag, newest first.

        pip does not expand ``manylinux_2_28`` to older glibc levels by itself, so the list is spelled out
        (``manylinux_2_28_x86_64`` ... ``manylinux_2_17_x86_64``, ``manylinux2014_x86_64``, ..., ``manylinux1``).
        """
        arch = self.arch
        if self.libc == "musl":
            newest = int(self.musl_version.split(".")[1])
            return [f"musllinux_1_{m}_{arch}" for m in range(newest, -1, -1)]
        newest = int(self.glibc_version.split(".")[1])
        tags = [f"manylinux_2_{m}_{arch}" for m in range(newest, 16, -1)]
        if newest >= 17:
            tags.append(f"manylinux2014_{arch}")
        if arch == "x86_64":
            if newest >= 12:
                tags += [f"manylinux_2_{m}_{arch}" for m in range(min(newest, 16), 11, -1)]
                tags.append(f"manylinux2010_{arch}")
            if newest >= 5:
                tags += [f"manylinux_2_{m}_{arch}" for m in range(min(newest, 11), 4, -1)]
                tags.append(f"manylinux1_{arch}")
        return tags

    def describe(self) -> str:
        """Human description for messages: ``linux/amd64 (manylinux_2_28_x86_64), Python 3.11``."""
        return f"{self.platform} ({self.wheel_platform}), Python {self.python}"

    def key_fields(self) -> dict[str, object]:
        """Everything about the target that changes what gets installed (input of :func:`requirements_key`)."""
        return {
            "platform": self.platform,
            "python": self.python,
            "libc": self.libc,
            "wheel_platform": self.wheel_platform,
            "index_url": self.index_url or DEFAULT_INDEX_URL,
            "extra_index_urls": list(self.extra_index_urls),
        }


def python_version_from_config(config_env: Sequence[str] | None) -> str | None:
    """Python ``major.minor`` from a base image config's ``Env`` (``["PYTHON_VERSION=3.11.7", ...]``).

    Official ``python`` images set ``PYTHON_VERSION``. Returns ``"3.11"`` for ``3.11.7``/``3.11.0rc1``;
    ``None`` when the variable is absent or not a version (the last assignment wins, as in a shell).
    """
    value = None
    for item in config_env or ():
        name, sep, val = item.partition("=")
        if sep and name == "PYTHON_VERSION":
            value = val
    if value is None:
        return None
    m = re.match(r"\s*(\d+)\.(\d+)", value)
    if not m:
        log.warning("base image config has PYTHON_VERSION=%r, which is not a version; ignoring it", value)
        return None
    return f"{m.group(1)}.{int(m.group(2))}"


def resolve_python_version(image_python: str | None, config_env: Sequence[str] | None, *,
                           source: str = "kfp.toml") -> str:
    """The Python version the dependency layer is built for: ``image.python`` > base config > error.

    Args:
        image_python: ``image.python`` from kfp.toml, or ``None``.
        config_env: ``config.Env`` of the base image (``KEY=value`` strings), or ``None`` (``scratch``).
        source: the kfp.toml path, for messages.

    Returns:
        ``major.minor``, e.g. ``"3.11"``.

    Raises:
        ConfigError: ``image.python`` is malformed, or neither it nor ``PYTHON_VERSION`` gives the version
            (the message says to set ``image.python``).
    """
    if image_python is not None:
        return _normalize_python(image_python, f"{source}: image.python")
    found = python_version_from_config(config_env)
    if found is not None:
        return found
    raise ConfigError(
        f"{source}: the Python version of the base image is unknown (its config Env has no PYTHON_VERSION), "
        f"and it is needed to install requirements: set `python = \"3.11\"` (the base image's version) "
        f"under [image] (key image.python)"
    )


# --------------------------------------------------------------------------------------------------------------
# Requirements files


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One requirement or constraint line of a requirements file.

    Attributes:
        file: the file it is in; ``line``: its 1-based line number (first line of a continued line).
        text: the logical line without comment.
        name: the normalized project name (PEP 503), or ``None`` for a bare local wheel path.
        pinned: ``==``/``===`` to one version without wildcard, or a wheel file/URL.
        hashed: has at least one ``--hash`` option.
        constraint: it comes from a ``-c`` file.
    """

    file: Path
    line: int
    text: str
    name: str | None
    pinned: bool
    hashed: bool
    constraint: bool


@dataclasses.dataclass(frozen=True)
class RequirementsSet:
    """A requirements file and everything it includes, in reading order (each file once)."""

    root: Path
    files: tuple[Path, ...]
    requirements: tuple[Requirement, ...]
    local_wheels: tuple[Path, ...]


_NAME_RE = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)$", re.S)
_INCLUDE_RE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?<=-r)|(?<=-c))(\S.*)$")
_EDITABLE_RE = re.compile(r"^(-e|--editable)\b")
_HASH_RE = re.compile(r"\s--hash[=\s]\s*\S+")
_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def canonical_name(name: str) -> str:
    """PEP 503 normalized project name (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _logical_lines(path: Path) -> list[tuple[int, str]]:
    """Lines joined on trailing backslashes, comments removed, blanks dropped: ``(first line number, text)``."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the requirements file: {e}") from e
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, line in enumerate(raw.splitlines(), 1):
        if not buf:
            start = number
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        text = re.sub(r"(^|\s)#.*$", "", buf + line).strip()
        buf = ""
        if text:
            out.append((start, text))
    text = re.sub(r"(^|\s)#.*$", "", buf).strip()
    if text:
        out.append((start, text))
    return out


def _is_pinned(spec: str) -> bool:
    spec = spec.split(";", 1)[0].strip()
    return bool(re.fullmatch(r"(===?)\s*[A-Za-z0-9._+!-]+", spec)) and "*" not in spec


def read_requirements(requirements_file: str | os.PathLike[str]) -> RequirementsSet:
    """Read a requirements file, following ``-r``/``-c`` includes (paths relative to the including file).

    Option lines (``--index-url``, ``--find-links``, ``--pre``...) are kept as file content (they are part of
    the cache key) but not interpreted. Lines naming a local ``.whl`` file (``./x.whl``, ``name @ file:///x.whl``)
    are recorded so that the key covers the wheel's content.

    Raises:
        ConfigError: a file is missing or unreadable (the message names the including file and line), an
            include is a URL, or a line is an editable (``-e``) or a local source folder: compose-kfp installs
            wheels only.
    """
    root = Path(requirements_file)
    files: list[Path] = []
    reqs: list[Requirement] = []
    wheels: list[Path] = []
    seen: set[Path] = set()

    def visit(path: Path, constraint: bool, origin: str) -> None:
        resolved = path.resolve()
        if resolved in seen:
            return
        seen.add(resolved)
        if not path.is_file():
            raise ConfigError(f"{origin}: requirements file {path} does not exist")
        files.append(path)
        for number, text in _logical_lines(path):
            where = f"{path}:{number}"
            inc = _INCLUDE_RE.match(text)
            if inc:
                target = inc.group(2).strip()
                if _URL_RE.match(target):
                    raise ConfigError(f"{where}: including a requirements file by URL ({target}) is not supported; "
                                      f"download it next to {path.name} and include it by path")
                visit(path.parent / target, constraint or inc.group(1) in ("-c", "--constraint"), where)
                continue
            if _EDITABLE_RE.match(text):
                raise ConfigError(f"{where}: editable requirements ({text}) cannot go into an image layer; "
                                  f"build a wheel and name the wheel file instead")
            if text.startswith("-"):
                continue  # an installer option (--index-url, --find-links, --pre, ...): content is in the key
            hashed = bool(_HASH_RE.search(" " + text))
            body = _HASH_RE.sub("", " " + text).strip()
            local = _local_path(body, path)
            if local is not None:
                if local.is_dir() or local.suffix != ".whl":
                    raise ConfigError(f"{where}: {body} is a local source ({local}); compose-kfp installs wheels "
                                      f"only: build a wheel (`uv build` / `pip wheel`) and name the .whl file")
                if not local.is_file():
                    raise ConfigError(f"{where}: wheel file {local} does not exist")
                wheels.append(local)
                name = canonical_name(local.name.split("-", 1)[0])
                reqs.append(Requirement(path, number, text, name, True, hashed, constraint))
                continue
            m = _NAME_RE.match(body)
            if not m:
                raise ConfigError(f"{where}: cannot read requirement {text!r}: expected e.g. 'pandas==2.2.3'")
            spec = m.group(3).strip()
            if spec.startswith("@"):
                url = spec[1:].split(";", 1)[0].strip()
                pinned = url.split("#", 1)[0].endswith(".whl")
            else:
                pinned = _is_pinned(spec)
            reqs.append(Requirement(path, number, text, canonical_name(m.group(1)), pinned, hashed, constraint))

    visit(root, False, "requirements")
    return RequirementsSet(root, tuple(files), tuple(reqs), tuple(wheels))


def _local_path(body: str, base: Path) -> Path | None:
    """The local file or folder a requirement line names, or ``None`` when it names a project."""
    spec = body.split(";", 1)[0].strip()
    if " @ " in spec or spec.startswith("@"):
        url = spec.split("@", 1)[1].strip()
        if url.startswith("file:"):
            return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
        return None
    if spec.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(spec).path))
    if _URL_RE.match(spec):
        return None
    if spec.startswith((".", "/", "~")) or "/" in spec or spec.endswith(".whl"):
        return (base.parent / os.path.expanduser(spec)).resolve()
    return None


def reproducibility_warnings(requirements_file: str | os.PathLike[str]) -> list[str]:
    """Warnings for the planner when the dependency layer would not be reproducible. Reads files only.

    One warning per requirement that is not pinned to one version (``==``) by itself or by a constraint;
    and, when everything is pinned but not hash-locked, one warning that the dependencies of the named
    packages may still change. Each says what to do next: run ``compose-kfp lock`` (again, when its lock is
    stale: :func:`lock_status`). A file written by :func:`compose_kfp.build.deps.lock_requirements` gives no
    warning; a layer whose file has a current lock installs from the lock, so its warnings are the lock's (none).

    Returns:
        messages, in file order, each naming ``file:line`` and the package.

    Raises:
        ConfigError: as :func:`read_requirements`.
    """
    rs = read_requirements(requirements_file)
    lock, status = lock_status(rs.root)
    if status == "stale":
        what = (f"run `compose-kfp lock` again ({lock.name} was locked from an earlier {rs.root.name} and is not "
                "used until it matches)")
    elif status == "foreign":
        what = (f"run `compose-kfp lock` (it replaces {lock.name}, which it did not write; plan and apply then "
                f"install from the lock while {rs.root.name} is unchanged)")
    else:
        what = (f"run `compose-kfp lock` (it writes {lock.name}, which plan and apply then install from while "
                f"{rs.root.name} is unchanged)")
    pinned_by_constraint = {r.name for r in rs.requirements if r.constraint and r.pinned}
    warnings = []
    for r in rs.requirements:
        if r.constraint or r.pinned or r.name in pinned_by_constraint:
            continue
        warnings.append(
            f"{r.file}:{r.line}: `{r.name}` is not pinned to one version ({r.text!r}): the dependency layer is "
            f"not reproducible; pin it (name==version) or {what}"
        )
    if not warnings and not all(r.hashed for r in rs.requirements if not r.constraint):
        warnings.append(
            f"{rs.root}: requirements are pinned but not locked: their own dependencies may resolve to newer "
            f"versions, so the dependency layer is not reproducible; {what} to pin everything with hashes"
        )
    return warnings


#: What ``compose-kfp lock`` names the lock of ``requirements.txt``: ``requirements.lock.txt`` next to it.
LOCK_SUFFIX = ".lock.txt"
#: The first line of a lock written by ``compose-kfp lock``: ``LOCK_STAMP + "<source file name> sha256:<hex>"``.
LOCK_STAMP = "# compose-kfp lock of "


def lock_file_for(requirements_file: str | os.PathLike[str]) -> Path:
    """The lock ``compose-kfp lock`` writes for ``requirements_file``: ``<stem>.lock.txt`` in its folder."""
    src = Path(requirements_file)
    return src.with_name(src.stem + LOCK_SUFFIX)


def lock_stamp(requirements_file: str | os.PathLike[str]) -> str:
    """The first line of the lock of ``requirements_file`` as it is now: :data:`LOCK_STAMP`, its name and the
    sha256 of its content and of every file and local wheel it includes (their paths relative to its folder),
    so that editing any of them makes an earlier lock stale. Reads files only.

    Raises:
        ConfigError: as :func:`read_requirements`.
    """
    rs = read_requirements(requirements_file)
    base = rs.root.parent
    doc = {"files": [[_rel(p, base), file_sha256(p)] for p in rs.files],
           "wheels": [[p.name, file_sha256(p)] for p in rs.local_wheels]}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{LOCK_STAMP}{rs.root.name} sha256:{digest}"


def lock_status(requirements_file: str | os.PathLike[str]) -> tuple[Path, str]:
    """Whether ``requirements_file`` has a lock that plans and builds install from instead (as ``poetry install``
    uses a current ``poetry.lock`` and ``uv sync`` a current ``uv.lock``).

    Returns:
        ``(lock path, status)``: ``"current"`` (the lock's first line is :func:`lock_stamp` of the file as it
        is now), ``"stale"`` (written by ``compose-kfp lock`` from other contents: run it again), ``"foreign"``
        (a file of that name without the stamp: not ours, never used) or ``"absent"``. A file that is itself
        a lock (its name ends in :data:`LOCK_SUFFIX`) is ``"absent"``: it is installed as it is.

    Raises:
        ConfigError: the lock exists and ``requirements_file`` cannot be read (:func:`read_requirements`).
    """
    src = Path(requirements_file)
    lock = lock_file_for(src)
    if src.name.endswith(LOCK_SUFFIX) or not lock.is_file():
        return lock, "absent"
    try:
        with open(lock, encoding="utf-8") as f:
            first = f.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return lock, "foreign"
    if not first.startswith(LOCK_STAMP):
        return lock, "foreign"
    return lock, "current" if first == lock_stamp(src) else "stale"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def bytecode_compiler(target: DepsTarget) -> str | None:
    """The interpreter that can compile bytecode for ``target`` (``"cpython-3.11.7"``), or ``None``.

    Only CPython of exactly the target's ``major.minor`` qualifies: bytecode is specific to that
    version. The full version is returned because it is part of the cache key.
    """
    if sys.implementation.name != "cpython":
        return None
    if "{}.{}".format(*sys.version_info[:2]) != target.python:
        return None
    return "cpython-{}.{}.{}".format(*sys.version_info[:3])


def requirements_key(requirements_file: str | os.PathLike[str], target: DepsTarget, installer_version: str) -> str:
    """Cache key of a dependency layer: ``"sha256:<hex>"``. Reads files only; never starts the installer.

    Inputs: :data:`KEY_VERSION`; the content (sha256) of the requirements file and of every file it includes
    with ``-r``/``-c`` (each named by its path relative to the top file's folder, in reading order); the
    content of local wheel files it names; :meth:`DepsTarget.key_fields`; ``installer_version`` (e.g.
    ``"uv 0.13.9"``, see :attr:`Installer.label`); and the in-image layout. The absolute location of the
    project does not matter, so two checkouts share keys.

    Raises:
        ConfigError: as :func:`read_requirements`.
    """
    rs = read_requirements(requirements_file)
    base = rs.root.parent
    doc = {
        "key_version": KEY_VERSION,
        "files": [[_rel(p, base), file_sha256(p)] for p in rs.files],
        "wheels": [[p.name, file_sha256(p)] for p in rs.local_wheels],
        "target": target.key_fields(),
        "installer": installer_version,
        "bytecode": bytecode_compiler(target),
        "layout": [SITE_PACKAGES, BIN_DIR, SCRIPT_SHEBANG.decode()],
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


__all__ = ["DEFAULT_INDEX_URL", "DepsTarget", "INDEX_PASSWORD_ENV", "INDEX_USERNAME_ENV", "KEY_VERSION",
           "Requirement", "RequirementsSet", "SCRIPT_SHEBANG", "bytecode_compiler", "canonical_name",
           "LOCK_STAMP", "LOCK_SUFFIX", "check_index_url", "file_sha256", "lock_file_for", "lock_stamp",
           "lock_status", "python_version_from_config", "read_requirements",
           "reproducibility_warnings", "requirements_key", "resolve_python_version"]
