"""The dependency layer: requirements installed for the image's platform and Python, into a folder.

Nothing runs inside the base image. An installer that can target another
platform (``uv pip install --python-platform ... --python-version ...``; ``pip
install --platform ... --python-version ... --implementation cp`` as the
fallback) downloads **wheels only** for the target and unpacks them into a
folder on this machine; that folder becomes one layer.

Layout
------
``dest_dir/site-packages`` goes to :data:`SITE_PACKAGES`
(``/opt/compose-kfp/site-packages``) in the image and ``dest_dir/bin`` (console
scripts) to :data:`BIN_DIR` (``/opt/compose-kfp/bin``).
:meth:`InstalledDeps.layer_entries` gives that mapping (in-image path -> local
path) for the layer builder, and :data:`~compose_kfp.build.spec.DEPS_ENV` /
:func:`~compose_kfp.build.spec.merge_image_env`
give the image config ``Env`` changes: ``PYTHONPATH`` gets
``/opt/compose-kfp`` (the in-image runtime package ``compose_kfp`` lives there)
then ``/opt/compose-kfp/site-packages``; ``PATH`` gets ``/opt/compose-kfp/bin``
first. Because the packages are found through ``PYTHONPATH``, ``.pth`` files
in them are *not* processed; :attr:`InstalledDeps.warnings` says when a package
ships one.

Reproducibility
---------------
Two installs of the same requirements in different folders give byte-identical
trees (and so, with the layer builder's fixed timestamps and owners, the same
layer digest): the installer compiles no bytecode (see "Bytecode" below), the installer's ``.lock`` file is
removed, console-script shebangs (which name this machine's interpreter) are
rewritten to :data:`SCRIPT_SHEBANG`, ``direct_url.json`` files (absolute local
paths, PEP 610) and uv's ``uv_cache.json`` (timestamps) are dropped, and every ``RECORD`` touched is rewritten with
fresh hashes and sorted rows. The installer is run with an environment cleared
of ``UV_*``/``PIP_*`` settings and without reading its config files, so only
what the cache key covers can change the result.

Bytecode
--------
Importing pandas and scikit-learn from sources alone costs each step seconds of
compiling on every run (a container starts with a fresh writable layer). When
this machine's interpreter is CPython of the target's major.minor version, the
installed tree is compiled with ``compileall --invalidation-mode unchecked-hash``
(PEP 552: no source mtimes in the ``.pyc``, so the output depends on the sources
and the compiler only) and with ``co_filename`` rewritten to the in-image path
under :data:`SITE_PACKAGES` (so tracebacks name the files as they are in the
image). The interpreter's full version is part of the cache key. For another
target version nothing is compiled, and Python compiles at import time as usual.

Cache key and reuse
-------------------
:func:`~compose_kfp.build.requirements.requirements_key` hashes the content of the requirements file and every
file it includes (``-r``/``-c``, followed recursively), local wheel files it
names, the target (platform, Python version, libc, index URLs) and the
installer version. It reads files only and never starts the installer.
:class:`DepsCache` maps a key to the layer built last time for it; when the key
is unchanged the installer does not run at all (:func:`build_deps_layer`). The
installer's download cache lives in :func:`default_cache_dir` (``uv`` or
``pip`` under ``$XDG_CACHE_HOME/compose-kfp``) and is kept between runs.

Index credentials
-----------------
``image.index_url`` / ``image.extra_index_urls`` in ``kfp.toml`` must not hold
credentials (:func:`~compose_kfp.build.requirements.check_index_url` raises :class:`ConfigError`). Credentials
come from ``~/.netrc`` (``$NETRC``; read by both installers) or from the
environment variables :data:`INDEX_USERNAME_ENV` / :data:`INDEX_PASSWORD_ENV`,
which apply to ``index_url`` and are handed to the installer through its
environment (never on its command line, never logged: installer output is
redacted).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from compose_kfp.build.requirements import (
    DEFAULT_INDEX_URL,
    DepsTarget,
    INDEX_PASSWORD_ENV,
    INDEX_USERNAME_ENV,
    LOCK_STAMP,
    RequirementsSet,
    SCRIPT_SHEBANG,
    bytecode_compiler,
    canonical_name,
    file_sha256,
    lock_stamp,
    read_requirements,
    reproducibility_warnings,
    requirements_key,
)
from compose_kfp.build.spec import BIN_DIR, SITE_PACKAGES
from compose_kfp.errors import BuildError
from compose_kfp.oci.blobs import BlobStore, atomic_write
from compose_kfp.oci.layer import Layer, LayerCache, build_mapping_layer

log = logging.getLogger(__name__)


#: Environment variable forcing the installer: ``uv`` or ``pip``.
INSTALLER_ENV = "COMPOSE_KFP_INSTALLER"


#: Installer settings that change *how* it talks to the network but not *what* it installs; kept in its env.
_KEEP_ENV = frozenset({
    "UV_NATIVE_TLS", "UV_HTTP_TIMEOUT", "UV_CONCURRENT_DOWNLOADS", "UV_REQUEST_TIMEOUT", "UV_HTTP_RETRIES",
    "PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_TIMEOUT", "PIP_PROXY", "PIP_RETRIES",
})

ProgressCallback = Callable[[str], None]


# --------------------------------------------------------------------------------------------------------------
# Installer


@dataclasses.dataclass(frozen=True)
class Installer:
    """An installer found on this machine.

    Attributes:
        kind: ``"uv"`` or ``"pip"``.
        command: argv prefix that runs it (``("/…/uv",)`` or ``(sys.executable, "-m", "pip")``).
        version: its version string (``"0.13.9"``), read without running it when it is a Python package.
    """

    kind: str
    command: tuple[str, ...]
    version: str

    @property
    def label(self) -> str:
        """``"uv 0.13.9"``: the ``installer_version`` input of :func:`requirements_key`."""
        return f"{self.kind} {self.version}"


_VERSION_CACHE: dict[tuple[str, int, int], str] = {}


def _uv_installer() -> Installer | None:
    try:
        import importlib.metadata

        import uv  # the PyPI package ships the binary

        path = uv.find_uv_bin()
        return Installer("uv", (path,), importlib.metadata.version("uv"))
    except (ImportError, FileNotFoundError) as e:
        log.debug("uv Python package not usable (%s); looking for uv on PATH", e)
    path = shutil.which("uv")
    if not path:
        return None
    st = os.stat(path)
    cache_key = (path, st.st_size, int(st.st_mtime))
    if cache_key not in _VERSION_CACHE:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        m = re.search(r"uv (\S+)", out.stdout)
        if out.returncode != 0 or not m:
            return None
        _VERSION_CACHE[cache_key] = m.group(1)
    return Installer("uv", (path,), _VERSION_CACHE[cache_key])


def _pip_installer() -> Installer | None:
    import importlib.metadata

    try:
        return Installer("pip", (sys.executable, "-m", "pip"), importlib.metadata.version("pip"))
    except importlib.metadata.PackageNotFoundError:
        return None


def find_installer(prefer: str | None = None) -> Installer:
    """The installer to use: uv (the ``uv`` Python package, else ``uv`` on ``PATH``), else pip.

    Args:
        prefer: ``"uv"`` or ``"pip"`` to require one; default: ``$COMPOSE_KFP_INSTALLER``, else uv then pip.

    Raises:
        BuildError: the required installer (or any installer) is not available.
    """
    prefer = prefer or os.environ.get(INSTALLER_ENV) or None
    if prefer not in (None, "uv", "pip"):
        raise BuildError(f"{INSTALLER_ENV}={prefer!r}: expected 'uv' or 'pip'")
    if prefer in (None, "uv"):
        found = _uv_installer()
        if found or prefer == "uv":
            if not found:
                raise BuildError("uv is not installed: `pip install uv` (or `pip install compose-kfp[deps]`)")
            return found
    found = _pip_installer()
    if not found:
        raise BuildError("no installer for requirements: install uv (`pip install uv`) or pip")
    return found


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/compose-kfp`` (default ``~/.cache/compose-kfp``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "compose-kfp"


def default_cache_dir(installer: Installer) -> Path:
    """The installer's download cache, kept between runs: ``<user cache>/uv`` or ``<user cache>/pip``."""
    return user_cache_dir() / installer.kind


def _installer_env(target: DepsTarget, installer: Installer) -> tuple[dict[str, str], list[str]]:
    """Environment for the installer and the secrets to redact from its output."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("UV_", "PIP_")) and k not in _KEEP_ENV)}
    env.update(PYTHONDONTWRITEBYTECODE="1", NO_COLOR="1")
    secrets: list[str] = []
    index_url = target.index_url
    user, password = os.environ.get(INDEX_USERNAME_ENV), os.environ.get(INDEX_PASSWORD_ENV)
    if index_url and (user or password):
        parts = urllib.parse.urlsplit(index_url)
        userinfo = urllib.parse.quote(user or "", safe="") + (
            ":" + urllib.parse.quote(password, safe="") if password else "")
        index_url = urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))
        secrets += [s for s in (password, urllib.parse.quote(password or "", safe="")) if s]
    elif (user or password) and not index_url:
        log.warning("%s/%s are set but image.index_url is not: they are not sent to PyPI",
                    INDEX_USERNAME_ENV, INDEX_PASSWORD_ENV)
    if installer.kind == "uv":
        env["UV_PYTHON_DOWNLOADS"] = "never"
        if index_url:
            env["UV_DEFAULT_INDEX"] = index_url
        if target.extra_index_urls:
            env["UV_INDEX"] = " ".join(target.extra_index_urls)
    else:
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
                   PIP_ROOT_USER_ACTION="ignore")
        if index_url:
            env["PIP_INDEX_URL"] = index_url
        if target.extra_index_urls:
            env["PIP_EXTRA_INDEX_URL"] = " ".join(target.extra_index_urls)
    return env, secrets


def _install_argv(installer: Installer, requirements_file: Path, target: DepsTarget, site: Path,
                  cache_dir: Path) -> list[str]:
    if installer.kind == "uv":
        return [*installer.command, "pip", "install", "--target", str(site), "--python", sys.executable,
                "--python-platform", target.uv_platform(), "--python-version", target.python,
                "--only-binary", ":all:", "--no-compile-bytecode", "--link-mode", "copy",
                "--no-config", "--no-progress", "--color", "never", "--cache-dir", str(cache_dir),
                "-r", str(requirements_file)]
    argv = [*installer.command, "install", "--target", str(site)]
    for tag in target.pip_platforms():
        argv += ["--platform", tag]
    return argv + ["--python-version", target.python, "--implementation", "cp", "--only-binary=:all:",
                   "--no-compile", "--no-warn-conflicts", "--progress-bar", "off", "--cache-dir", str(cache_dir),
                   "-r", str(requirements_file)]


def _run(argv: list[str], env: dict[str, str], secrets: list[str], progress: ProgressCallback | None,
         cwd: Path) -> tuple[int, list[str]]:
    """Run the installer, streaming its merged output line by line (redacted) to ``progress`` and the log."""
    log.debug("running %s", " ".join(argv))
    lines: list[str] = []
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, text=True, encoding="utf-8", errors="replace")
    except OSError as e:
        raise BuildError(f"cannot start the installer {argv[0]}: {e}") from e
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            for s in secrets:
                line = line.replace(s, "****")
            lines.append(line)
            log.debug("installer: %s", line)
            if progress is not None:
                progress(line)
    return proc.returncode, lines


_PKG = r"([A-Za-z0-9][A-Za-z0-9._-]*?)"
_UV_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("no_wheel", re.compile(r"(?:all versions of |)" + _PKG + r"(?:[=<>!~]=?[^\s,]*)? (?:has|have) no usable wheels")),
    ("no_wheel", re.compile(r"Wheels are required for `" + _PKG + r"`")),
    ("unknown", re.compile(_PKG + r" was not found in the package registry")),
    ("no_version", re.compile(r"there is no version of " + _PKG + r"(?:[=<>!~]=?[^\s,]*)?[\s,]")),
    ("python", re.compile(_PKG + r"(?:[=<>!~]=?[^\s,]*)? depends on Python")),
    ("python", re.compile(r"requires a different Python[^']*'" + _PKG)),
]
_PIP_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("python", re.compile(r"Package '" + _PKG + r"' requires a different Python")),
    ("no_dist", re.compile(r"No matching distribution found for " + _PKG + r"(?:[\s=<>!~\[;]|$)")),
]


def _installer_error(lines: list[str], installer: Installer, rs: RequirementsSet, target: DepsTarget,
                     returncode: int) -> BuildError:
    """Turn a failed install into a BuildError naming the package(s), the platform and the Python version."""
    text = "\n".join(lines)
    found: dict[str, str] = {}
    for kind, pattern in (_UV_PATTERNS if installer.kind == "uv" else _PIP_PATTERNS):
        for m in pattern.finditer(text):
            name = canonical_name(m.group(1))
            if name in ("the", "you", "your", "because"):
                continue
            found.setdefault(name, kind)
    detail = [ln.strip() for ln in lines if re.match(r"\s*(error|cause|ERROR|hint|\s+And because)", ln)]
    tail = "\n".join(detail or lines[-12:])
    where = f"{rs.root} for {target.describe()}"
    index = target.index_url or DEFAULT_INDEX_URL
    if not found:
        if re.search(r"unsatisfiable|ResolutionImpossible|conflict", text):
            names = sorted({canonical_name(n) for n in re.findall(r"\b" + _PKG + r"(?:==|>=|<=|>|<|!=|~=)", text)})
            return BuildError(f"cannot install requirements from {where}: the requirements conflict"
                              + (f" (packages involved: {', '.join(names)})" if names else "")
                              + f"; {installer.label} said:\n{tail}")
        return BuildError(f"installing requirements from {where} failed ({installer.label} exited with "
                          f"{returncode}):\n{tail}")
    parts = []
    for name, kind in found.items():
        if kind == "no_wheel":
            parts.append(f"`{name}` has no wheel for {target.describe()} (compose-kfp installs wheels only, "
                         f"never builds from source): pin a version that publishes a {target.wheel_platform} "
                         f"or pure-Python wheel for Python {target.python}, or change image.python")
        elif kind == "unknown":
            parts.append(f"`{name}` was not found on the package index ({index}); check its name in the "
                         f"requirements, or set image.index_url / image.extra_index_urls")
        elif kind == "no_version":
            parts.append(f"`{name}` has no version matching the requirement on {index}")
        elif kind == "python":
            parts.append(f"`{name}` does not support Python {target.python} (its Requires-Python excludes it); "
                         f"pin another version or change image.python")
        else:  # pip's "No matching distribution": it cannot tell an unknown name from a missing wheel
            parts.append(f"`{name}` has no wheel for {target.describe()}, or no such package or version exists "
                         f"on {index} (compose-kfp installs wheels only)")
    return BuildError(f"cannot install requirements from {where}: " + "; ".join(parts)
                      + f"\n{installer.label} said:\n{tail}")


# --------------------------------------------------------------------------------------------------------------
# Normalization of the installed tree


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _rewrite_shebang(data: bytes) -> bytes | None:
    """New content of a console script whose shebang names a Python interpreter, or ``None`` to keep it."""
    if not data.startswith(b"#!"):
        return None
    lines = data.split(b"\n")
    # pip/distlib's launcher for long interpreter paths: #!/bin/sh / '''exec' /path/python "$0" "$@" / ' '''
    if lines[0].strip() == b"#!/bin/sh" and len(lines) > 2 and lines[1].startswith(b"'''exec'") \
            and b"python" in lines[1] and lines[2].strip() == b"' '''":
        return b"\n".join([SCRIPT_SHEBANG, *lines[3:]])
    first = lines[0]
    if b"python" in first.split(b"/")[-1] or first.strip() == b"#!python" or first.rstrip().endswith(b"python"):
        if first.rstrip() == SCRIPT_SHEBANG:
            return None
        return b"\n".join([SCRIPT_SHEBANG, *lines[1:]])
    return None


#: Installer-written ``*.dist-info`` files that vary between runs or machines: ``direct_url.json`` (PEP 610; the
#: absolute path of a local wheel) and uv's ``uv_cache.json`` (a timestamp, for local sources).
_DROPPED_METADATA = ("direct_url.json", "uv_cache.json")


def _normalize_tree(root: Path, site: Path) -> list[str]:
    """Make an installed tree reproducible and lay it out as ``root/site-packages`` + ``root/bin``.

    Returns warnings (``.pth`` files that ``PYTHONPATH`` will not process).
    """
    (site / ".lock").unlink(missing_ok=True)
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    moved: dict[str, str] = {}
    if (site / "bin").is_dir():
        for entry in sorted((site / "bin").iterdir()):
            dest = bin_dir / entry.name
            if dest.exists():
                raise BuildError(f"two packages install the console script {entry.name}")
            os.replace(entry, dest)
            moved[f"bin/{entry.name}"] = f"../bin/{entry.name}"
        (site / "bin").rmdir()
    rewritten: dict[str, bytes] = {}
    for script in sorted(bin_dir.iterdir()):
        if script.is_file() and not script.is_symlink():
            new = _rewrite_shebang(script.read_bytes())
            if new is not None:
                mode = script.stat().st_mode
                script.write_bytes(new)
                os.chmod(script, mode)
                rewritten[f"../bin/{script.name}"] = new
    for dist in sorted(site.glob("*.dist-info")):
        dropped = set()
        for name in _DROPPED_METADATA:
            if (dist / name).exists():
                (dist / name).unlink()
                dropped.add(f"{dist.name}/{name}")
        record = dist / "RECORD"
        if not record.is_file():
            continue
        rows = list(csv.reader(io.StringIO(record.read_text(encoding="utf-8"))))
        out = []
        changed = bool(dropped)
        for row in rows:
            if not row:
                continue
            path = row[0]
            if path in dropped:
                continue
            m = re.fullmatch(r"(?:\.\./)*bin/([^/]+)", path)
            if m and f"bin/{m.group(1)}" in moved:
                # uv writes bin/X (relative to --target), pip ../../bin/X (relative to its temporary scheme)
                path, changed = moved[f"bin/{m.group(1)}"], True
            if path in rewritten:
                data = rewritten[path]
                row = [path, _record_hash(data), str(len(data))]
                changed = True
            else:
                row = [path, *row[1:]]
            out.append(row)
        if changed:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerows(sorted(out, key=lambda r: r[0]))
            record.write_text(buf.getvalue(), encoding="utf-8")
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        # only bytecode the installer compiled (wheels do not ship __pycache__); keeps the tree reproducible
        shutil.rmtree(cache)
    return [f"{p.relative_to(site).as_posix()}: .pth files are not processed for packages on PYTHONPATH; "
            f"the package that ships it may not work" for p in sorted(site.glob("*.pth"))]


def tree_digest(root: str | os.PathLike[str]) -> str:
    """``sha256:`` over a folder's sorted relative paths, file types, executable bits, link targets and contents.

    Used to compare installs; two trees with the same digest give the same layer.
    """
    root = Path(root)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                h.update(f"L {rel} {os.readlink(p)}\n".encode())
            elif p.is_dir():
                h.update(f"D {rel}\n".encode())
            else:
                exe = os.access(p, os.X_OK)
                h.update(f"F {rel} {int(exe)} {file_sha256(p)}\n".encode())
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Installing


@dataclasses.dataclass(frozen=True)
class InstalledDeps:
    """The result of :func:`install_requirements`.

    Attributes:
        root: the destination folder; ``site_packages`` and ``bin_dir`` are ``root/site-packages`` and
            ``root/bin``.
        packages: ``(name, version)`` of every installed distribution, sorted by name (from ``*.dist-info``).
        key: :func:`requirements_key` of the inputs.
        installer: :attr:`Installer.label`.
        target: what it was installed for.
        seconds: wall time of the installer run and normalization.
        warnings: things the user should know (``.pth`` files, unpinned requirements).
    """

    root: Path
    packages: tuple[tuple[str, str], ...]
    key: str
    installer: str
    target: DepsTarget
    seconds: float
    warnings: tuple[str, ...] = ()

    @property
    def site_packages(self) -> Path:
        return self.root / "site-packages"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    def layer_entries(self) -> dict[str, Path]:
        """In-image path -> local folder, for the layer builder: site-packages and bin under ``/opt/compose-kfp``."""
        return {SITE_PACKAGES: self.site_packages, BIN_DIR: self.bin_dir}


def compile_bytecode(site: Path, target: DepsTarget) -> bool:
    """Compile every ``.py`` under ``site`` into reproducible ``__pycache__/*.pyc`` when this interpreter can.

    Uses ``python -m compileall -q -j 0 --invalidation-mode unchecked-hash -s SITE -p`` :data:`SITE_PACKAGES`,
    so the ``.pyc`` files carry no timestamps and name their sources by in-image path. Files that do not
    compile (Python 2 leftovers in some packages' test folders) are skipped, as pip does. Returns whether
    anything was compiled (False when :func:`bytecode_compiler` is ``None``).
    """
    label = bytecode_compiler(target)
    if label is None:
        log.info("not compiling bytecode: this interpreter is %s, the image's Python is %s",
                 sys.version.split()[0], target.python)
        return False
    argv = [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
            "-s", str(site), "-p", SITE_PACKAGES, str(site)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        log.info("compileall skipped files it could not compile: %s", proc.stdout.strip()[-2000:])
    log.info("compiled bytecode with %s in %.1fs", label, time.monotonic() - started)
    return True


def install_requirements(
    requirements_file: str | os.PathLike[str],
    target: DepsTarget,
    dest_dir: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    installer: Installer | None = None,
    progress: ProgressCallback | None = None,
) -> InstalledDeps:
    """Install the requirements (wheels only) for ``target`` into ``dest_dir``; run nothing from the packages.

    Runs ``uv pip install --target DIR/site-packages --python-platform <arch>-manylinux_<glibc>
    --python-version X.Y --only-binary :all: --no-compile-bytecode --link-mode copy`` (or pip's ``--target
    --platform ... --python-version --implementation cp --only-binary=:all: --no-compile``), then normalizes
    the tree (module docstring, "Reproducibility").

    Args:
        requirements_file: the top requirements file (``-r``/``-c`` includes are followed by the installer).
        target: platform, Python version, libc and indexes.
        dest_dir: an empty or missing folder; receives ``site-packages/`` and ``bin/``.
        cache_dir: the installer's download cache; default :func:`default_cache_dir`.
        installer: default :func:`find_installer`.
        progress: called with each line the installer prints (credentials redacted).

    Returns:
        :class:`InstalledDeps`.

    Raises:
        ConfigError: as :func:`read_requirements`.
        BuildError: the installer failed; for a requirement without a wheel for the target, an unknown
            package or an unsupported Python version the message names the package, the platform and the
            Python version. ``dest_dir`` is not empty.
    """
    started = time.monotonic()
    requirements_file = Path(requirements_file).absolute()
    rs = read_requirements(requirements_file)
    installer = installer or find_installer()
    key = requirements_key(requirements_file, target, installer.label)
    root = Path(dest_dir).absolute()
    if root.exists() and any(root.iterdir()):
        raise BuildError(f"{root}: the dependency folder must be empty")
    site = root / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(installer)
    cache.mkdir(parents=True, exist_ok=True)
    env, secrets = _installer_env(target, installer)
    argv = _install_argv(installer, requirements_file, target, site, cache)
    log.info("installing %s for %s with %s", requirements_file, target.describe(), installer.label)
    returncode, lines = _run(argv, env, secrets, progress, requirements_file.parent)
    if returncode != 0:
        raise _installer_error(lines, installer, rs, target, returncode)
    warnings = _normalize_tree(root, site)
    compile_bytecode(site, target)
    packages = []
    for dist in sorted(site.glob("*.dist-info")):
        name = version = None
        meta = dist / "METADATA"
        if meta.is_file():
            for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
                if not line:
                    break
                if line.startswith("Name:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("Version:"):
                    version = line.split(":", 1)[1].strip()
        if name and version:
            packages.append((canonical_name(name), version))
    seconds = time.monotonic() - started
    log.info("installed %d packages in %.1fs", len(packages), seconds)
    return InstalledDeps(root, tuple(sorted(packages)), key, installer.label, target, seconds,
                         tuple(warnings))


def lock_requirements(
    requirements_file: str | os.PathLike[str],
    target: DepsTarget,
    out_file: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    installer: Installer | None = None,
    progress: ProgressCallback | None = None,
) -> list[tuple[str, str]]:
    """Pin every requirement and dependency, with hashes, into ``out_file`` (for ``compose-kfp lock``).

    Runs ``uv pip compile REQ --generate-hashes --python-platform ... --python-version ... --only-binary
    :all: -o OUT``; the result resolves for ``target`` only. Its first line is
    :func:`~compose_kfp.build.requirements.lock_stamp` of the sources as they were read, so that a layer naming
    ``requirements_file`` installs from ``out_file`` (when it is the file's
    :func:`~compose_kfp.build.requirements.lock_file_for`) while the sources are unchanged
    (:func:`~compose_kfp.build.requirements.lock_status`). Installing from ``out_file`` makes the layer
    reproducible (hash-checked installs, no :func:`reproducibility_warnings`).

    Returns:
        the pinned ``(name, version)`` pairs, in file order.

    Raises:
        BuildError: uv is not available (pip cannot lock), or resolution failed (package named as in
            :func:`install_requirements`).
    """
    requirements_file = Path(requirements_file).absolute()
    rs = read_requirements(requirements_file)
    installer = installer or find_installer("uv")
    if installer.kind != "uv":
        raise BuildError("locking requirements needs uv: `pip install uv`")
    out = Path(out_file).absolute()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(installer)
    env, secrets = _installer_env(target, installer)
    argv = [*installer.command, "pip", "compile", str(requirements_file), "--generate-hashes",
            "--python", sys.executable,
            "--python-platform", target.uv_platform(), "--python-version", target.python,
            "--only-binary", ":all:", "--no-config", "--no-progress", "--color", "never",
            "--cache-dir", str(cache), "--custom-compile-command", "compose-kfp lock",
            "--output-file", str(out)]
    stamp = lock_stamp(requirements_file)  # of the sources as they are read now
    returncode, lines = _run(argv, env, secrets, progress, requirements_file.parent)
    if returncode != 0:
        raise _installer_error(lines, installer, rs, target, returncode)
    text = out.read_text(encoding="utf-8")
    if text.startswith(LOCK_STAMP):  # uv kept the first line of the lock it updated
        text = text.split("\n", 1)[1] if "\n" in text else ""
    atomic_write(out, f"{stamp}\n{text}".encode("utf-8"))
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", text, re.M)
    return [(canonical_name(n), v) for n, v in pins]


# --------------------------------------------------------------------------------------------------------------
# The layer and its cache


class DepsCache:
    """Dependency layers by :func:`requirements_key`: key -> the layer built last time (media type, digest,
    diff_id, size), one small JSON record per key, stored with :class:`compose_kfp.oci.layer.LayerCache`.

    Args:
        directory: where records live; default ``<user cache>/deps`` (:func:`user_cache_dir`).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = Path(directory) if directory is not None else user_cache_dir() / "deps"
        self._layers = LayerCache(self.directory)

    @staticmethod
    def _hex(key: str) -> str:
        algorithm, _, encoded = key.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", encoded):
            raise BuildError(f"invalid dependency layer key {key!r}: expected 'sha256:' + 64 hex digits")
        return encoded

    def lookup(self, key: str, store: BlobStore | str | os.PathLike[str] | None = None) -> Layer | None:
        """The layer recorded for ``key``; with ``store``, only when its blob is still there (one ``stat``)."""
        return self._layers.lookup(self._hex(key), store)

    def record(self, key: str, layer: Layer) -> None:
        """Remember ``layer`` as the dependency layer for ``key`` (atomic write)."""
        self._layers.record(self._hex(key), layer)


@dataclasses.dataclass(frozen=True)
class DepsLayer:
    """The result of :func:`build_deps_layer`.

    Attributes:
        layer: the finished layer (blob in the store given).
        key: its :func:`requirements_key`.
        reused: ``True`` when it came from the :class:`DepsCache` and the installer did not run.
        installed: the install that produced it (``None`` when reused; its folder is removed unless
            ``keep_dir`` was given).
        warnings: :func:`reproducibility_warnings` plus the install's warnings.
    """

    layer: Layer
    key: str
    reused: bool
    installed: InstalledDeps | None
    warnings: tuple[str, ...]


def build_deps_layer(
    requirements_file: str | os.PathLike[str],
    target: DepsTarget,
    *,
    store: BlobStore | str | os.PathLike[str],
    cache: DepsCache | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    installer: Installer | None = None,
    keep_dir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    **layer_options: object,
) -> DepsLayer:
    """The dependency layer for ``requirements_file``: from the cache when its key is known, else installed
    (:func:`install_requirements`) into a temporary folder and packed with
    :func:`compose_kfp.oci.layer.build_mapping_layer` at :data:`SITE_PACKAGES` / :data:`BIN_DIR`.

    On a cache hit only files are read (requirements for the key, one ``stat`` of the blob): the installer
    is not started.

    Args:
        store: the blob store that receives (or already holds) the layer blob.
        cache: key -> layer records; default :class:`DepsCache` under the user cache dir.
        cache_dir, installer, progress: as :func:`install_requirements`.
        keep_dir: install into this (empty) folder and keep it, instead of a temporary one.
        layer_options: passed to ``build_mapping_layer`` (``compression``, ``level``, ``source_date_epoch``).

    Raises:
        ConfigError, BuildError: as :func:`install_requirements`;
        compose_kfp.oci.errors.LayerError: the folder could not be packed.
    """
    import tempfile

    installer = installer or find_installer()
    cache = cache if cache is not None else DepsCache()
    store = store if isinstance(store, BlobStore) else BlobStore(store)
    warnings = reproducibility_warnings(requirements_file)
    key = requirements_key(requirements_file, target, installer.label)
    hit = cache.lookup(key, store)
    if hit is not None:
        log.info("requirements unchanged (%s): reusing dependency layer %s", key, hit.digest)
        return DepsLayer(hit, key, True, None, tuple(warnings))

    def build(folder: Path) -> DepsLayer:
        installed = install_requirements(requirements_file, target, folder, cache_dir=cache_dir,
                                         installer=installer, progress=progress)
        layer = build_mapping_layer(installed.layer_entries(), store=store, **layer_options)
        cache.record(key, layer)
        log.info("dependency layer %s built (%d bytes)", layer.digest, layer.size)
        return DepsLayer(layer, key, False, installed, tuple(warnings) + installed.warnings)

    if keep_dir is not None:
        return build(Path(keep_dir))
    with tempfile.TemporaryDirectory(prefix="compose-kfp-deps-") as tmp:
        return build(Path(tmp) / "deps")
