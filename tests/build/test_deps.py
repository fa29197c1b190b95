"""Tests of compose_kfp.build.deps: the dependency layer.

Installs run the real installers (uv from PyPI, pip as the fallback) against PyPI (small, pure
packages) or against a local PEP 503 index served on loopback (``simple_index`` fixture). One slow
test installs the example's scikit-learn/pandas requirements and trains a model with them.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from compose_kfp.build import deps
from compose_kfp.build.deps import (
    DepsCache,
    build_deps_layer,
    find_installer,
    install_requirements,
    lock_requirements,
    tree_digest,
)
from compose_kfp.build.requirements import (
    SCRIPT_SHEBANG,
    DepsTarget,
    python_version_from_config,
    read_requirements,
    reproducibility_warnings,
    requirements_key,
    resolve_python_version,
)
from compose_kfp.build.spec import BIN_DIR, SITE_PACKAGES, merge_image_env
from compose_kfp.errors import BuildError, ConfigError
from compose_kfp.oci.blobs import BlobStore
from tests.fixtures.paths import REPO

EXAMPLE_REQUIREMENTS = REPO / "examples" / "iris" / "requirements.txt"
HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
#: small pure-Python wheels from PyPI; wheel ships a console script
SMALL = "six==1.16.0\nwheel==0.43.0\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ target


def test_target_maps_platform_and_libc_to_installer_tags():
    t = DepsTarget()
    assert (t.platform, t.python, t.libc) == ("linux/amd64", "3.11", "glibc")
    assert t.uv_platform() == "x86_64-manylinux_2_28"
    assert t.wheel_platform == "manylinux_2_28_x86_64"
    tags = t.pip_platforms()
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux2014_x86_64" in tags and tags[-1] == "manylinux1_x86_64"
    assert tags.index("manylinux_2_17_x86_64") < tags.index("manylinux2014_x86_64")
    arm = DepsTarget(platform="linux/arm64", python="3.12.4", libc="musl")
    assert arm.python == "3.12"
    assert arm.uv_platform() == "aarch64-unknown-linux-musl"
    assert arm.pip_platforms() == ["musllinux_1_2_aarch64", "musllinux_1_1_aarch64", "musllinux_1_0_aarch64"]
    assert "linux/arm64" in arm.describe() and "3.12" in arm.describe()


@pytest.mark.parametrize("kwargs, key", [
    ({"platform": "linux/s390x"}, "image.platforms"),
    ({"platform": "windows/amd64"}, "image.platforms"),
    ({"libc": "uclibc"}, "image.libc"),
    ({"python": "2.7"}, "image.python"),
    ({"python": "three"}, "image.python"),
    ({"index_url": "https://user:secret@pypi.example.com/simple"}, "image.index_url"),
    ({"extra_index_urls": ["https://pypi.org/simple", "https://tok@x.example/simple"]},
     "image.extra_index_urls.1"),
    ({"index_url": "pypi.example.com/simple"}, "image.index_url"),
])
def test_target_rejects_bad_settings_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as e:
        DepsTarget(**kwargs)
    assert key in str(e.value)
    assert "secret" not in str(e.value)


def test_python_version_from_base_config_and_resolution_order():
    env = ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "PYTHON_VERSION=3.11.7", "GPG_KEY=ABC"]
    assert python_version_from_config(env) == "3.11"
    assert python_version_from_config(["PYTHON_VERSION=3.13.0rc1"]) == "3.13"
    assert python_version_from_config(["PATH=/bin"]) is None
    assert python_version_from_config(None) is None
    assert python_version_from_config(["PYTHON_VERSION=latest"]) is None
    # image.python wins over the base config, which wins over nothing
    assert resolve_python_version("3.12", env) == "3.12"
    assert resolve_python_version(None, env) == "3.11"
    with pytest.raises(ConfigError) as e:
        resolve_python_version(None, ["PATH=/bin"], source="proj/kfp.toml")
    assert "image.python" in str(e.value) and "proj/kfp.toml" in str(e.value)
    with pytest.raises(ConfigError, match="image.python"):
        resolve_python_version("3.x", env)


def test_merge_image_env_puts_runtime_and_deps_first():
    env = merge_image_env(["PATH=/usr/local/bin:/usr/bin", "PYTHONPATH=/app", "LANG=C.UTF-8"])
    assert env == [f"PATH={BIN_DIR}:/usr/local/bin:/usr/bin",
                   f"PYTHONPATH=/opt/compose-kfp:{SITE_PACKAGES}:/app", "LANG=C.UTF-8"]
    assert merge_image_env(env) == env  # idempotent
    fresh = dict(item.split("=", 1) for item in merge_image_env([]))
    assert fresh["PYTHONPATH"] == f"/opt/compose-kfp:{SITE_PACKAGES}"
    assert fresh["PATH"].startswith(f"{BIN_DIR}:") and "/usr/bin" in fresh["PATH"]


# ------------------------------------------------------------------------------------------ requirements


def test_read_requirements_follows_nested_includes(tmp_path):
    write(tmp_path / "requirements.txt", "# top\n-r base/common.txt\n--constraint=constraints.txt\n"
          "pandas>=2 ; python_version >= '3.9'\nrequests==2.32.3 \\\n    --hash=sha256:abc\n")
    write(tmp_path / "base" / "common.txt", "-rmore.txt\nnumpy==2.0.1  # pinned\n")
    write(tmp_path / "base" / "more.txt", "Scikit_Learn\n-r ../requirements.txt\n")  # cycle: read once
    write(tmp_path / "constraints.txt", "scikit-learn==1.5.1\n")
    rs = read_requirements(tmp_path / "requirements.txt")
    assert [p.relative_to(tmp_path).as_posix() for p in rs.files] == [
        "requirements.txt", "base/common.txt", "base/more.txt", "constraints.txt"]
    by_name = {r.name: r for r in rs.requirements}
    assert by_name["scikit-learn"].pinned is True and by_name["scikit-learn"].constraint is True
    assert by_name["numpy"].pinned and not by_name["pandas"].pinned
    assert by_name["requests"].hashed and by_name["requests"].line == 5
    assert by_name["pandas"].line == 4


@pytest.mark.parametrize("line, match", [
    ("-r missing.txt", r"requirements.txt:2: requirements file .*missing.txt does not exist"),
    ("-e ./src", "editable"),
    ("-r https://example.com/reqs.txt", "by URL"),
    ("./src", "wheels only"),
])
def test_read_requirements_errors_name_file_and_line(tmp_path, line, match):
    (tmp_path / "src").mkdir()
    req = write(tmp_path / "requirements.txt", f"six==1.16.0\n{line}\n")
    with pytest.raises(ConfigError, match=match):
        read_requirements(req)


def test_unpinned_requirements_warn_and_locked_ones_do_not(tmp_path):
    req = write(tmp_path / "requirements.txt", "pandas>=2\nnumpy==2.*\nsix==1.16.0\nscipy\n-c c.txt\n")
    write(tmp_path / "c.txt", "scipy==1.14.0\n")
    warnings = reproducibility_warnings(req)
    assert len(warnings) == 2
    assert "`pandas`" in warnings[0] and "requirements.txt:1" in warnings[0] and "not reproducible" in warnings[0]
    assert "`numpy`" in warnings[1]
    pinned = write(tmp_path / "pinned.txt", "six==1.16.0\n")
    (only,) = reproducibility_warnings(pinned)
    assert "not locked" in only and "compose-kfp lock" in only
    locked = write(tmp_path / "locked.txt", "six==1.16.0 \\\n    --hash=sha256:" + "a" * 64 + "\n")
    assert reproducibility_warnings(locked) == []


# ------------------------------------------------------------------------------------------------- key


def _key_inputs(tmp_path: Path) -> Path:
    write(tmp_path / "requirements.txt", "-r nested/base.txt\n-c constraints.txt\nsix\n")
    write(tmp_path / "nested" / "base.txt", "wheel==0.43.0\n")
    write(tmp_path / "constraints.txt", "six==1.16.0\n")
    return tmp_path / "requirements.txt"


def test_requirements_key_covers_every_input_and_not_the_location(tmp_path):
    req = _key_inputs(tmp_path / "a")
    target = DepsTarget(python="3.11")
    key = requirements_key(req, target, "uv 0.13.9")
    assert key.startswith("sha256:") and len(key) == 71
    # same content in another folder -> same key
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert requirements_key(tmp_path / "b" / "requirements.txt", target, "uv 0.13.9") == key
    variants = {
        "installer": requirements_key(req, target, "uv 0.14.0"),
        "python": requirements_key(req, DepsTarget(python="3.12"), "uv 0.13.9"),
        "platform": requirements_key(req, DepsTarget(platform="linux/arm64"), "uv 0.13.9"),
        "libc": requirements_key(req, DepsTarget(libc="musl"), "uv 0.13.9"),
        "glibc": requirements_key(req, DepsTarget(glibc_version="2.17"), "uv 0.13.9"),
        "index": requirements_key(req, DepsTarget(index_url="https://mirror.example/simple"), "uv 0.13.9"),
        "extra": requirements_key(req, DepsTarget(extra_index_urls=("https://x.example/simple",)), "uv 0.13.9"),
    }
    write(tmp_path / "a" / "nested" / "base.txt", "wheel==0.44.0\n")
    variants["nested file"] = requirements_key(req, target, "uv 0.13.9")
    write(tmp_path / "a" / "nested" / "base.txt", "wheel==0.43.0\n")
    assert requirements_key(req, target, "uv 0.13.9") == key
    write(tmp_path / "a" / "constraints.txt", "six==1.17.0\n")
    variants["constraints file"] = requirements_key(req, target, "uv 0.13.9")
    assert len(set(variants.values()) | {key}) == len(variants) + 1, variants


def test_requirements_key_covers_local_wheel_content(tmp_path, make_wheel):
    whl = make_wheel(tmp_path / "wheels", "tinypkg", "1.0", {"tinypkg/__init__.py": "X = 1\n"})
    req = write(tmp_path / "requirements.txt", f"./wheels/{whl.name}\n")
    key = requirements_key(req, DepsTarget(), "uv 0.13.9")
    make_wheel(tmp_path / "wheels", "tinypkg", "1.0", {"tinypkg/__init__.py": "X = 2\n"})
    assert requirements_key(req, DepsTarget(), "uv 0.13.9") != key
    assert reproducibility_warnings(req)[0].endswith("to pin everything with hashes")  # pinned, not hashed


# --------------------------------------------------------------------------------------------- installs


def _assert_normalized(installed):
    root = installed.root
    assert sorted(p.name for p in root.iterdir()) == ["bin", "site-packages"]
    site = installed.site_packages
    assert not (site / ".lock").exists() and not (site / "bin").exists()
    # bytecode only as reproducible PEP 552 unchecked-hash .pyc in __pycache__ (installed.target is this Python's)
    pycs = list(root.rglob("*.pyc"))
    assert bool(pycs) == (deps.bytecode_compiler(installed.target) is not None)
    assert all(p.parent.name == "__pycache__" and p.read_bytes()[4:8] == b"\x01\x00\x00\x00" for p in pycs)
    assert not list(root.rglob("direct_url.json")) and not list(root.rglob("uv_cache.json"))
    script = installed.bin_dir / "wheel"
    data = script.read_bytes()
    assert data.splitlines()[0] == SCRIPT_SHEBANG and os.access(script, os.X_OK)
    assert sys.executable.encode() not in data
    (dist,) = site.glob("wheel-0.43.0.dist-info")
    rows = {r[0]: r for r in csv.reader((dist / "RECORD").read_text().splitlines())}
    assert "../bin/wheel" in rows and "bin/wheel" not in rows
    assert rows["../bin/wheel"][1] == deps._record_hash(data) and rows["../bin/wheel"][2] == str(len(data))
    assert ("six", "1.16.0") in installed.packages and ("wheel", "0.43.0") in installed.packages


@pytest.mark.parametrize("kind", ["uv", "pip"])
def test_install_twice_in_different_folders_is_byte_identical(tmp_path, uv_cache, kind):
    req = write(tmp_path / "proj" / "requirements.txt", SMALL)
    installer = find_installer(kind)
    assert installer.kind == kind
    target = DepsTarget(python=HOST_PYTHON)
    lines: list[str] = []
    first = install_requirements(req, target, tmp_path / "one", cache_dir=uv_cache / kind, installer=installer,
                                 progress=lines.append)
    second = install_requirements(req, target, tmp_path / "elsewhere" / "two", cache_dir=uv_cache / kind,
                                  installer=installer)
    assert any("six" in line for line in lines)
    assert first.installer == installer.label and first.key == requirements_key(req, target, installer.label)
    _assert_normalized(first)
    assert tree_digest(first.root) == tree_digest(second.root)
    # the installed packages import and the console script runs, from the tree via PYTHONPATH/PATH
    env = {**os.environ, "PYTHONPATH": str(first.site_packages), "PATH": f"{first.bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-c", "import six, wheel; print(six.__file__)"], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith(str(first.site_packages))
    assert subprocess.run(["wheel", "version"], env=env, capture_output=True, text=True, check=True).stdout.strip() \
        == "wheel 0.43.0"
    # both trees give the same layer, byte for byte
    layers = [build_deps_layer(req, target, store=tmp_path / f"store{i}", cache=DepsCache(tmp_path / f"c{i}"),
                               cache_dir=uv_cache / kind, installer=installer) for i in (1, 2)]
    assert layers[0].layer.digest == layers[1].layer.digest
    assert layers[0].layer.diff_id == layers[1].layer.diff_id


def test_installer_environment_ignores_user_installer_settings(tmp_path, uv_cache, monkeypatch):
    # settings that would change what gets installed must not leak in: only the key's inputs count
    monkeypatch.setenv("UV_COMPILE_BYTECODE", "1")
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    req = write(tmp_path / "requirements.txt", "six==1.16.0\n")
    installed = install_requirements(req, DepsTarget(python=HOST_PYTHON), tmp_path / "out", cache_dir=uv_cache / "uv")
    assert installed.packages == (("six", "1.16.0"),)
    # uv's own bytecode (UV_COMPILE_BYTECODE) would be timestamp-based; ours is PEP 552 unchecked-hash only
    pycs = list(installed.root.rglob("*.pyc"))
    assert pycs and all(p.read_bytes()[4:8] == b"\x01\x00\x00\x00" for p in pycs)


@pytest.mark.parametrize("requirement, python, package", [
    ("docopt==0.6.2", "3.11", "docopt"),  # sdist only: no wheel for any platform
    ("compose-kfp-no-such-package-4f9c2e", "3.11", "compose-kfp-no-such-package-4f9c2e"),
    ("numpy==1.24.4", "3.13", "numpy"),  # released before Python 3.13: no cp313 wheels
])
def test_install_errors_name_package_platform_and_python(tmp_path, uv_cache, requirement, python, package):
    req = write(tmp_path / "requirements.txt", f"{requirement}\n")
    with pytest.raises(BuildError) as e:
        install_requirements(req, DepsTarget(python=python), tmp_path / "out", cache_dir=uv_cache / "uv")
    message = str(e.value)
    assert f"`{package}`" in message
    assert "linux/amd64" in message and f"Python {python}" in message
    assert e.value.exit_code == 3
    if package.startswith("compose-kfp-no-such"):
        assert "not found on the package index" in message
    else:
        assert "has no wheel" in message


def test_missing_version_is_named(tmp_path, uv_cache):
    req = write(tmp_path / "requirements.txt", "six==99.0\n")
    with pytest.raises(BuildError, match=r"`six` has no version matching the requirement on https://pypi.org/simple"):
        install_requirements(req, DepsTarget(python=HOST_PYTHON), tmp_path / "out", cache_dir=uv_cache / "uv")


def test_pip_fallback_error_names_package(tmp_path, uv_cache):
    req = write(tmp_path / "requirements.txt", "docopt==0.6.2\n")
    with pytest.raises(BuildError) as e:
        install_requirements(req, DepsTarget(python="3.11"), tmp_path / "out", cache_dir=uv_cache / "pip",
                             installer=find_installer("pip"))
    assert "`docopt`" in str(e.value) and "linux/amd64" in str(e.value) and "Python 3.11" in str(e.value)


def test_install_refuses_non_empty_destination(tmp_path, uv_cache):
    req = write(tmp_path / "requirements.txt", "six==1.16.0\n")
    write(tmp_path / "out" / "stale.txt", "x")
    with pytest.raises(BuildError, match="must be empty"):
        install_requirements(req, DepsTarget(), tmp_path / "out", cache_dir=uv_cache / "uv")


# ------------------------------------------------------------------------------------- cache and reuse


def test_unchanged_requirements_reuse_the_layer_without_starting_the_installer(tmp_path, uv_cache, monkeypatch):
    req = write(tmp_path / "requirements.txt", SMALL)
    target = DepsTarget(python=HOST_PYTHON)
    store, cache = BlobStore(tmp_path / "store"), DepsCache(tmp_path / "deps-cache")
    installer = find_installer("uv")
    first = build_deps_layer(req, target, store=store, cache=cache, cache_dir=uv_cache / "uv", installer=installer)
    assert first.reused is False and first.installed is not None and store.has(first.layer.digest)

    def forbidden(*args, **kwargs):
        raise AssertionError(f"a process was started: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    started = time.perf_counter()
    again = build_deps_layer(req, target, store=store, cache=cache, installer=find_installer("uv"))
    elapsed = time.perf_counter() - started
    assert again.reused is True and again.installed is None
    assert (again.layer.digest, again.layer.diff_id, again.key) == (first.layer.digest, first.layer.diff_id, first.key)
    assert elapsed < 0.5, elapsed
    assert any("not locked" in w for w in again.warnings)
    with again.layer.open() as f:
        assert f.read(2) == b"\x1f\x8b"

    # a changed requirement is a miss (and would need the installer)
    write(tmp_path / "requirements.txt", SMALL + "click==8.1.7\n")
    with pytest.raises(AssertionError, match="a process was started"):
        build_deps_layer(req, target, store=store, cache=cache, installer=installer, cache_dir=uv_cache / "uv")


def test_cache_record_without_blob_is_a_miss(tmp_path, uv_cache):
    req = write(tmp_path / "requirements.txt", "six==1.16.0\n")
    target = DepsTarget(python=HOST_PYTHON)
    cache = DepsCache(tmp_path / "deps-cache")
    first = build_deps_layer(req, target, store=tmp_path / "s1", cache=cache, cache_dir=uv_cache / "uv")
    other = build_deps_layer(req, target, store=tmp_path / "s2", cache=cache, cache_dir=uv_cache / "uv")
    assert other.reused is False and other.layer.digest == first.layer.digest
    with pytest.raises(BuildError, match="invalid dependency layer key"):
        cache.lookup("md5:abc")


def test_layer_contents_are_under_the_fixed_prefix(tmp_path, uv_cache):
    req = write(tmp_path / "requirements.txt", SMALL)
    built = build_deps_layer(req, DepsTarget(python=HOST_PYTHON), store=tmp_path / "store",
                             cache=DepsCache(tmp_path / "c"), cache_dir=uv_cache / "uv", keep_dir=tmp_path / "tree")
    assert built.installed.root == tmp_path / "tree" and (tmp_path / "tree" / "site-packages" / "six.py").is_file()
    with built.layer.open() as f, tarfile.open(fileobj=f, mode="r:gz") as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert {"opt", "opt/compose-kfp", "opt/compose-kfp/site-packages", "opt/compose-kfp/bin"} <= members.keys()
    assert "opt/compose-kfp/site-packages/six.py" in members
    script = members["opt/compose-kfp/bin/wheel"]
    assert script.mode & 0o111 and script.uid == 0 and script.mtime == 0
    assert all(name.startswith("opt") for name in members)


# ------------------------------------------------------------------------------- indexes and credentials


def test_private_index_credentials_from_environment_never_on_argv_or_in_output(
        tmp_path, uv_cache, make_wheel, simple_index, monkeypatch):
    make_wheel(tmp_path / "wheels", "tinypkg", "1.0", {"tinypkg/__init__.py": "VALUE = 42\n"},
               scripts={"tiny": "tinypkg:main"})
    index = simple_index(tmp_path / "wheels", username="alice", password="s3cr3t-Pa55")
    req = write(tmp_path / "requirements.txt", "tinypkg==1.0\n")
    target = DepsTarget(python=HOST_PYTHON, index_url=index.url)
    argvs: list[list[str]] = []
    real_popen = subprocess.Popen

    def spy(argv, *args, **kwargs):
        argvs.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    # without credentials the index refuses: the error says so and names the package
    with pytest.raises(BuildError) as e:
        install_requirements(req, target, tmp_path / "denied", cache_dir=uv_cache / "uv-private")
    assert "tinypkg" in str(e.value)
    monkeypatch.setenv(deps.INDEX_USERNAME_ENV, "alice")
    monkeypatch.setenv(deps.INDEX_PASSWORD_ENV, "s3cr3t-Pa55")
    lines: list[str] = []
    installed = install_requirements(req, target, tmp_path / "ok", cache_dir=uv_cache / "uv-private",
                                     progress=lines.append)
    assert installed.packages == (("tinypkg", "1.0"),)
    assert (installed.site_packages / "tinypkg" / "__init__.py").read_text() == "VALUE = 42\n"
    assert any(authorized for _, authorized in index.requests)
    assert all("s3cr3t" not in " ".join(argv) for argv in argvs)
    assert all("s3cr3t" not in line for line in lines)


def test_private_index_credentials_from_netrc(tmp_path, uv_cache, make_wheel, simple_index, monkeypatch):
    make_wheel(tmp_path / "wheels", "tinypkg", "2.0", {"tinypkg/__init__.py": "VALUE = 2\n"})
    index = simple_index(tmp_path / "wheels", username="bob", password="netrc-pw")
    netrc = write(Path(os.environ["HOME"]) / ".netrc", "machine 127.0.0.1 login bob password netrc-pw\n")
    netrc.chmod(0o600)
    req = write(tmp_path / "requirements.txt", "tinypkg==2.0\n")
    installed = install_requirements(req, DepsTarget(python=HOST_PYTHON, index_url=index.url), tmp_path / "out",
                                     cache_dir=uv_cache / "uv-netrc")
    assert installed.packages == (("tinypkg", "2.0"),)


def test_local_wheel_with_direct_url_installs_reproducibly(tmp_path, uv_cache, make_wheel):
    whl = make_wheel(tmp_path / "wheels", "tinypkg", "3.0", {"tinypkg/__init__.py": "VALUE = 3\n"})
    req = write(tmp_path / "requirements.txt", f"tinypkg @ {whl.as_uri()}\n")
    a = install_requirements(req, DepsTarget(python=HOST_PYTHON), tmp_path / "a", cache_dir=uv_cache / "uv")
    copy = tmp_path / "moved"
    shutil.copytree(tmp_path / "wheels", copy / "wheels")
    req2 = write(copy / "requirements.txt", f"tinypkg @ {(copy / 'wheels' / whl.name).as_uri()}\n")
    b = install_requirements(req2, DepsTarget(python=HOST_PYTHON), tmp_path / "b", cache_dir=uv_cache / "uv")
    assert a.packages == (("tinypkg", "3.0"),)
    assert tree_digest(a.root) == tree_digest(b.root)  # direct_url.json (absolute path) was dropped


# ------------------------------------------------------------------------------------------------- lock


def test_lock_pins_with_hashes_and_the_lock_installs(tmp_path, uv_cache):
    req = write(tmp_path / "requirements.txt", "six>=1.15,<1.17\n")
    assert reproducibility_warnings(req)
    target = DepsTarget(python=HOST_PYTHON)
    pins = lock_requirements(req, target, tmp_path / "requirements.lock", cache_dir=uv_cache / "uv")
    assert pins == [("six", "1.16.0")]
    text = (tmp_path / "requirements.lock").read_text()
    assert "six==1.16.0" in text and "--hash=sha256:" in text and "compose-kfp lock" in text
    assert reproducibility_warnings(tmp_path / "requirements.lock") == []
    installed = install_requirements(tmp_path / "requirements.lock", target, tmp_path / "out",
                                     cache_dir=uv_cache / "uv")
    assert installed.packages == (("six", "1.16.0"),)


# ------------------------------------------------------------------------------------------ the example


@pytest.mark.slow
def test_example_requirements_install_for_linux_amd64_and_train_a_model(tmp_path, uv_cache):
    target = DepsTarget(platform="linux/amd64", python=HOST_PYTHON)
    installed = install_requirements(EXAMPLE_REQUIREMENTS, target, tmp_path / "deps", cache_dir=uv_cache / "uv")
    names = dict(installed.packages)
    assert {"scikit-learn", "pandas", "numpy", "scipy"} <= names.keys()
    pycs = list(installed.root.rglob("*.pyc"))  # compiled for this Python: reproducible PEP 552 bytecode only
    assert pycs and all(p.read_bytes()[4:8] == b"\x01\x00\x00\x00" for p in pycs)
    so_files = list(installed.site_packages.rglob("*.so"))
    assert so_files and all("darwin" not in p.name and "win" not in p.suffix for p in so_files)
    program = (
        "import json, pandas as pd, sklearn\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        f"df = pd.read_csv({str(REPO / 'examples' / 'iris' / 'data' / 'iris.csv')!r})\n"
        "X, y = df.iloc[:, :4], df.iloc[:, 4]\n"
        "model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)\n"
        "print(json.dumps({'sklearn': sklearn.__file__, 'pandas': pd.__version__, 'accuracy': model.score(X, y)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed.site_packages)
    out = subprocess.run([sys.executable, "-s", "-c", program], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["sklearn"].startswith(str(installed.site_packages))
    assert result["pandas"] == names["pandas"]
    assert result["accuracy"] > 0.9


ROOTFS = Path(os.environ.get("COMPOSE_KFP_ROOTFS", "/var/cache/compose-kfp/rootfs/bookworm-python3"))


@pytest.mark.slow
def test_example_deps_layer_trains_a_model_inside_the_built_image(tmp_path, uv_cache, umoci_unpack):
    """Base rootfs layer (Debian + python3, scripts/make-rootfs.sh) + dependency layer -> OCI layout ->
    ``umoci unpack`` -> ``chroot`` with the image config's Env: the step's imports come from the layer."""
    from compose_kfp.oci.image import append
    from compose_kfp.oci.layer import build_rootfs_layer
    from compose_kfp.oci.layout import OCILayout

    if not Path(f"{ROOTFS}.done").is_file():
        pytest.skip(f"no base root file system at {ROOTFS} (build it with scripts/make-rootfs.sh)")
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("chroot needs root")
    base_python = subprocess.run(["chroot", str(ROOTFS), "/usr/bin/python3", "-c",
                                  "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    base_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                f"PYTHON_VERSION={base_python}"]
    target = DepsTarget(platform="linux/amd64", python=resolve_python_version(None, base_env))
    layout = OCILayout.create(tmp_path / "layout")
    base = build_rootfs_layer(ROOTFS, store=layout.store)
    built = build_deps_layer(EXAMPLE_REQUIREMENTS, target, store=layout.store, cache=DepsCache(tmp_path / "c"),
                             cache_dir=uv_cache / "uv")
    manifest, config = append(None, None, [base, built.layer], env=merge_image_env(base_env), platform="linux/amd64")
    layout.write_image("deps", manifest, config, layers=[base, built.layer])
    rootfs = umoci_unpack(tmp_path / "layout", "deps")
    shutil.copy(REPO / "examples" / "iris" / "data" / "iris.csv", rootfs / "tmp" / "iris.csv")
    program = (
        "import json, sys, pandas as pd, sklearn\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "df = pd.read_csv('/tmp/iris.csv')\n"
        "model = RandomForestClassifier(n_estimators=10, random_state=0).fit(df.iloc[:, :4], df.iloc[:, 4])\n"
        "print(json.dumps({'sklearn': sklearn.__file__, 'python': sys.version, "
        "'accuracy': model.score(df.iloc[:, :4], df.iloc[:, 4])}))\n"
    )
    out = subprocess.run(["chroot", str(rootfs), "/usr/bin/env", "-i", *config.config.env, "python3", "-c", program],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["sklearn"].startswith(f"{SITE_PACKAGES}/sklearn/")
    assert result["python"].startswith(base_python)
    assert result["accuracy"] > 0.9
    # a console script of the layer runs from PATH inside the image (numpy ships f2py)
    f2py = subprocess.run(["chroot", str(rootfs), "/usr/bin/env", "-i", *config.config.env, "f2py", "-v"],
                          capture_output=True, text=True, timeout=120)
    assert f2py.returncode == 0, f2py.stderr


def test_bytecode_compiled_for_the_same_python_only(tmp_path, uv_cache):
    """Same major.minor as this interpreter: reproducible unchecked-hash .pyc naming in-image paths; else none."""
    import importlib.util
    import marshal

    req = write(tmp_path / "requirements.txt", "six==1.16.0\n")
    same = install_requirements(req, DepsTarget(python=HOST_PYTHON), tmp_path / "same", cache_dir=uv_cache / "uv")
    (pyc,) = (same.site_packages / "__pycache__").glob("six.*.pyc")
    data = pyc.read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b01  # PEP 552: hash-based, unchecked
    code = marshal.loads(data[16:])
    assert code.co_filename == "/opt/compose-kfp/site-packages/six.py"
    other = "3.12" if HOST_PYTHON != "3.12" else "3.13"
    assert deps.bytecode_compiler(DepsTarget(python=other)) is None
    elsewhere = install_requirements(req, DepsTarget(python=other), tmp_path / "other", cache_dir=uv_cache / "uv")
    assert not list(elsewhere.root.rglob("*.pyc"))
    assert requirements_key(req, DepsTarget(python=HOST_PYTHON), "uv x") != \
        requirements_key(req, DepsTarget(python=other), "uv x")
