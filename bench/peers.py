"""Workloads, a registry, a base image and the tools compared by ``bench/run.py``.

Everything here is driven from the command line of each tool, the way a user would run it,
as one shell script per measured run; ``bench/run.py`` times the script and records the
peak RSS of its process tree (:func:`timed`).

Workloads (generated deterministically from a seed by :func:`generate_project` and
:func:`generate_big`, cached under ``bench/.work/workloads``):

* ``project``: ``data/`` (CSV text and incompressible binary), ``src/`` (small ``.py`` files in
  packages) and ``deps/`` (a plain folder standing for installed packages: ``.py`` text and
  partly compressible ``.so`` binaries). Three layers for compose-kfp: deps at ``/opt/deps``,
  data at ``/app/data``, src at ``/app/src``; the peers copy the same folders to the same places.
* ``big``: ``model/weights.bin``, one incompressible file, at ``/app/model``.

Tools (:class:`Tool` subclasses): compose-kfp (its CLI; see :class:`ComposeKfp`), buildah,
skopeo + umoci, and the floor (``tar | pigz -1 | sha256sum``, then ``curl`` uploads the
blob). A fresh registry (:class:`Registry`) per cold run gives every tool an empty
destination and no blob location caches from earlier runs.

compose-kfp is always driven through its CLI (``python3 -m compose_kfp``), never its library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work"
ROOTFS = pathlib.Path(os.environ.get("COMPOSE_KFP_ROOTFS", "/var/cache/compose-kfp/rootfs/bookworm-python3"))
EDIT_FILE = "src/pkg00/mod0000.py"
MiB = 1 << 20

# --------------------------------------------------------------------------- workloads


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Sizes of the generated inputs, in bytes (``src_files``: a count)."""

    csv_bytes: int
    bin_bytes: int
    src_files: int
    deps_bytes: int
    big_bytes: int

    @property
    def data_bytes(self) -> int:
        return self.csv_bytes + self.bin_bytes


FULL = Sizes(csv_bytes=150_000_000, bin_bytes=150_000_000, src_files=2000, deps_bytes=100_000_000,
             big_bytes=2 << 30)
QUICK = Sizes(csv_bytes=3_000_000, bin_bytes=3_000_000, src_files=200, deps_bytes=3_000_000, big_bytes=24 * MiB)

WORDS = ("import numpy as np def train model data loss epoch batch return self value pipeline component "
         "kubeflow tensor gradient optimizer config path file for in if else while class yield with as "
         "lambda None True False try except raise assert").split()


def _rand_bytes(rng: random.Random, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += rng.randbytes(min(4 * MiB, n - len(out)))
    return bytes(out)


def _csv_pool(rng: random.Random, n: int) -> bytes:
    rows = ["id,timestamp,sepal_length,sepal_width,petal_length,petal_width,score,label\n"]
    size = len(rows[0])
    i = 0
    labels = ("setosa", "versicolor", "virginica")
    while size < n:
        row = (f"{i},2024-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}T{rng.randint(0, 23):02}:"
               f"{rng.randint(0, 59):02}:{rng.randint(0, 59):02},{rng.uniform(4, 8):.3f},{rng.uniform(2, 4.5):.3f},"
               f"{rng.uniform(1, 7):.3f},{rng.uniform(0.1, 2.5):.3f},{rng.random():.6f},{rng.choice(labels)}\n")
        rows.append(row)
        size += len(row)
        i += 1
    return "".join(rows).encode()


def _text_pool(rng: random.Random, n: int) -> bytes:
    lines = []
    size = 0
    while size < n:
        indent = "    " * rng.randint(0, 3)
        line = indent + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()


def _slices(rng: random.Random, pool: bytes, n: int, piece: int = 256 * 1024) -> bytes:
    """``n`` bytes made of random slices of ``pool`` (so the text never repeats within gzip's window)."""
    out = bytearray()
    while len(out) < n:
        k = min(piece, n - len(out))
        off = rng.randint(0, len(pool) - k)
        out += pool[off:off + k]
    return bytes(out)


def _write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def generate_project(root: pathlib.Path, sizes: Sizes, seed: int = 20241129) -> dict[str, int]:
    """Write ``data/``, ``src/`` and ``deps/`` under ``root`` from ``seed``; return counts.

    data: ``csv_bytes`` of CSV in files of up to 25 MB and ``bin_bytes`` of random bytes in files of
    up to 30 MB. src: ``src_files`` files of 0.5-8 KiB in 20 packages. deps: ``deps_bytes``, 40%
    ``.py`` text in files of 1-32 KiB and 60% ``.so`` files of 0.5-4 MiB (half random, half
    repeated, so gzip halves them), in 40 package folders. Same seed, same bytes.
    """
    rng = random.Random(seed)
    counts = {"data_files": 0, "src_files": 0, "deps_files": 0, "bytes": 0}
    csv_pool = _csv_pool(rng, min(8 * MiB, max(sizes.csv_bytes, MiB)))
    text_pool = _text_pool(rng, 2 * MiB)
    left, i = sizes.csv_bytes, 0
    while left > 0:
        n = min(left, 25_000_000)
        _write(root / "data" / "csv" / f"part-{i:03}.csv", _slices(rng, csv_pool, n))
        left -= n
        i += 1
        counts["data_files"] += 1
    left, i = sizes.bin_bytes, 0
    while left > 0:
        n = min(left, 30_000_000)
        _write(root / "data" / "bin" / f"shard-{i:03}.bin", _rand_bytes(rng, n))
        left -= n
        i += 1
        counts["data_files"] += 1
    for i in range(sizes.src_files):
        n = rng.randint(512, 8192)
        _write(root / "src" / f"pkg{i % 20:02}" / f"mod{i:04}.py", _slices(rng, text_pool, n, piece=n))
        counts["src_files"] += 1
    for p in range(20):
        (root / "src" / f"pkg{p:02}" / "__init__.py").write_text(f'"""Package {p}."""\n')
        counts["src_files"] += 1
    text_left = int(sizes.deps_bytes * 0.4)
    bin_left = sizes.deps_bytes - text_left
    i = 0
    while text_left > 0:
        n = min(text_left, rng.randint(1024, 32 * 1024))
        _write(root / "deps" / f"package{i % 40:02}" / f"module{i:05}.py", _slices(rng, text_pool, n, piece=n))
        text_left -= n
        i += 1
        counts["deps_files"] += 1
    i = 0
    while bin_left > 0:
        n = min(bin_left, rng.randint(MiB // 2, 4 * MiB))
        half = n // 2
        blob = _rand_bytes(rng, half) + bytes(range(256)) * ((n - half) // 256) + b"\0" * ((n - half) % 256)
        _write(root / "deps" / f"package{i % 40:02}" / f"_native{i:03}.cpython-311-x86_64-linux-gnu.so", blob)
        bin_left -= n
        i += 1
        counts["deps_files"] += 1
    counts["bytes"] = tree_bytes(root)
    return counts


def generate_big(root: pathlib.Path, size: int, seed: int = 20241130) -> dict[str, int]:
    """Write ``model/weights.bin`` under ``root``: ``size`` random bytes from ``seed`` (written in 4 MiB pieces)."""
    rng = random.Random(seed)
    path = root / "model" / "weights.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            k = min(left, 4 * MiB)
            f.write(rng.randbytes(k))
            left -= k
    return {"data_files": 1, "bytes": size}


def tree_bytes(root: pathlib.Path) -> int:
    """Total size of the regular files under ``root`` (no state folders)."""
    total = 0
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in names if not n.startswith("."))
    return total


def cached_workload(kind: str, sizes: Sizes, make) -> tuple[pathlib.Path, dict[str, int], bool]:
    """Generate a workload once per (kind, sizes) under ``bench/.work/workloads``; ``(folder, counts, reused)``."""
    key = hashlib.sha256(repr((kind, dataclasses.astuple(sizes), 2)).encode()).hexdigest()[:10]
    root = WORK / "workloads" / f"{kind}-{key}"
    stamp = root.with_name(root.name + ".json")
    if stamp.exists() and root.exists():
        return root, json.loads(stamp.read_text()), True
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    counts = make(root)
    stamp.write_text(json.dumps(counts))
    return root, counts, False


def warm_page_cache(root: pathlib.Path, folders: list[str]) -> None:
    """Read every file once so all tools start with the inputs in the page cache."""
    subprocess.run(["tar", "-cf", "/dev/null", "-C", str(root), *folders], check=True)
    # GNU tar skips reading file data when writing to /dev/null; cat does read it.
    subprocess.run(f"find {' '.join(shlex.quote(str(root / f)) for f in folders)} -type f -print0 "
                   "| xargs -0 cat > /dev/null", shell=True, check=True)


# --------------------------------------------------------------------------- processes


@dataclasses.dataclass
class Timed:
    """One measured command: wall ``seconds``, peak RSS of its largest process in KiB, exit code, log tail."""

    seconds: float
    max_rss_kib: int
    returncode: int
    tail: str


TIME_BIN = shutil.which("time", path="/usr/bin:/bin")


def timed(script: str, *, cwd: pathlib.Path, log: pathlib.Path, env: dict[str, str] | None = None,
          timeout: float = 1800) -> Timed:
    """Run ``script`` with ``bash -euo pipefail -c``, time it, and record its peak RSS.

    Peak RSS is ``ru_maxrss`` of the script as GNU time (``/usr/bin/time -f %M``) reports it: the
    largest resident set of the shell or of any process it waited for (for a pipeline, its
    biggest stage; for a tool, the tool). GNU time, a small process, forks the shell: a fork
    straight from this Python process would start the child's high-water mark at the parent's
    RSS. Without GNU time the value from :func:`os.wait4` is used (an upper bound).
    Output (stdout and stderr) is appended to ``log``; ``tail`` holds its last lines when it fails.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    rss_file = log.with_suffix(".rss")
    argv = ["bash", "-euo", "pipefail", "-c", script]
    if TIME_BIN:
        argv = [TIME_BIN, "-q", "-f", "%M", "-o", str(rss_file), *argv]
    with open(log, "ab") as out:
        out.write(f"\n$ {script}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        seconds = time.perf_counter() - start
    rss = 0
    if TIME_BIN:
        try:
            rss = int(rss_file.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            rss = 0
    if not rss:
        rss = int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if proc.returncode else ""
    return Timed(seconds, rss, proc.returncode, tail)


# --------------------------------------------------------------------------- registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) (?P<size>\d+|-)')


@dataclasses.dataclass(frozen=True)
class Request:
    """One access-log row of the registry: method, path (with query), status, response body bytes."""

    method: str
    path: str
    status: int
    size: int


class Registry:
    """``docker-registry serve`` (CNCF distribution) on a free loopback port with its own storage and access log."""

    def __init__(self, workdir: pathlib.Path):
        self.workdir = workdir
        shutil.rmtree(workdir, ignore_errors=True)
        (workdir / "storage").mkdir(parents=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "registry.log"
        config = {"version": "0.1",
                  "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
                  "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}, "delete": {"enabled": True},
                              "maintenance": {"uploadpurging": {"enabled": False}}},
                  "http": {"addr": self.host, "secret": "bench"}}
        (workdir / "config.yml").write_text(json.dumps(config))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([shutil.which("docker-registry") or "/usr/bin/docker-registry", "serve",
                                      str(workdir / "config.yml")], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not answer within 20 s; see {self.log_path}")
                time.sleep(0.05)

    def requests(self) -> list[Request]:
        """Every request logged so far, oldest first."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = _ACCESS.search(line)
            if m:
                size = m.group("size")
                out.append(Request(m.group("method"), m.group("path"), int(m.group("status")),
                                   0 if size == "-" else int(size)))
        return out

    def stop(self, remove: bool = True) -> None:
        """Stop the registry (and remove its folder when ``remove``)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)


def blob_commits(rows: list[Request]) -> list[str]:
    """Digests of blob uploads completed in ``rows`` (``PUT .../blobs/uploads/...?digest=`` or monolithic ``POST``)."""
    out = []
    for r in rows:
        if r.status >= 300 or "/blobs/uploads/" not in r.path or r.method not in ("PUT", "POST"):
            continue
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(r.path).query)
        if "mount" in q:
            continue
        out.extend(q.get("digest", []))
    return out


def blob_mounts(rows: list[Request]) -> list[str]:
    """Digests mounted from another repository in ``rows`` (``POST ...?mount=&from=`` answered 201)."""
    out = []
    for r in rows:
        if r.method == "POST" and r.status == 201 and "/blobs/uploads/" in r.path:
            out.extend(urllib.parse.parse_qs(urllib.parse.urlsplit(r.path).query).get("mount", []))
    return out


def blob_downloads(rows: list[Request], digests: set[str]) -> int:
    """Response bytes of ``GET`` requests for blobs in ``digests``."""
    total = 0
    for r in rows:
        if r.method == "GET" and r.status < 300 and "/blobs/" in r.path:
            if urllib.parse.urlsplit(r.path).path.rsplit("/", 1)[-1] in digests:
                total += r.size
    return total


def manifest_puts(rows: list[Request]) -> int:
    return sum(1 for r in rows if r.method == "PUT" and "/manifests/" in r.path and r.status < 300)


# --------------------------------------------------------------------------- base image


@dataclasses.dataclass(frozen=True)
class BaseImage:
    """A base image built once with compose-kfp's OCI core (:mod:`compose_kfp.oci`) into a local blob store."""

    kind: str           # "debootstrap" or "synthetic"
    description: str
    store: pathlib.Path
    manifest: bytes
    media_type: str
    config: bytes
    layers: tuple[dict, ...]  # {"digest", "diff_id", "size", "media_type"}

    @property
    def layer_digests(self) -> set[str]:
        return {d["digest"] for d in self.layers}

    @property
    def size(self) -> int:
        return sum(d["size"] for d in self.layers)

    def push(self, host: str, repo: str = "bench/base", tag: str = "v1") -> str:
        """Push to the registry at ``host`` as ``repo:tag`` with :func:`compose_kfp.oci.registry.push_image`."""
        sys.path.insert(0, str(REPO))
        from compose_kfp.oci.auth import StaticKeychain
        from compose_kfp.oci.blobs import BlobStore
        from compose_kfp.oci.layer import Layer
        from compose_kfp.oci.registry import RegistryClient, push_image

        store = BlobStore(self.store)
        layers = [Layer.from_store(store, d["digest"], d["diff_id"], d["media_type"]) for d in self.layers]
        client = RegistryClient(host, StaticKeychain({}))
        try:
            return push_image(client, repo, [tag], self.manifest, self.media_type, self.config, layers)
        finally:
            client.close()


def build_base(kind: str) -> BaseImage:
    """The base image: ``debootstrap`` (the rootfs of ``scripts/make-rootfs.sh``, cached on this machine)
    or ``synthetic`` (a few MB of seeded files with ``/usr/bin/python3`` as a stub). Cached under bench/.work."""
    sys.path.insert(0, str(REPO))
    from compose_kfp.oci.blobs import BlobStore
    from compose_kfp.oci.image import append
    from compose_kfp.oci.layer import build_mapping_layer, build_rootfs_layer

    root = WORK / f"base-{kind}"
    meta = root / "image.json"
    if meta.exists():
        m = json.loads(meta.read_text())
        return BaseImage(kind, m["description"], root / "store", m["manifest"].encode(), m["media_type"],
                         m["config"].encode(), tuple(m["layers"]))
    shutil.rmtree(root, ignore_errors=True)
    store = BlobStore(root / "store")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "PYTHON_VERSION": "3.11.2"}
    if kind == "debootstrap":
        if not (ROOTFS.parent / (ROOTFS.name + ".done")).exists():
            raise RuntimeError(f"{ROOTFS} is not built; run scripts/make-rootfs.sh or use --base synthetic")
        layer = build_rootfs_layer(ROOTFS, store=store)
        description = (f"Debian bookworm minbase + python3 (debootstrap tree of scripts/make-rootfs.sh, "
                       f"{tree_bytes(ROOTFS) / 1e6:.0f} MB unpacked)")
    else:
        rng = random.Random(7)
        files: dict[str, bytes] = {"/etc/os-release": b"ID=synthetic\nVERSION_ID=1\n",
                                   "/usr/bin/python3": b"#!/bin/sh\nexit 0\n"}
        pool = _text_pool(rng, 256 * 1024)
        for i in range(200):
            files[f"/usr/lib/python3/module{i:03}.py"] = _slices(rng, pool, 8192, piece=8192)
        for i in range(4):
            files[f"/usr/lib/lib{i}.so"] = _rand_bytes(rng, 512 * 1024)
        layer = build_mapping_layer(files, store=store)
        description = f"synthetic: {len(files)} seeded files, {sum(map(len, files.values())) / 1e6:.1f} MB"
    manifest, config = append(None, None, [layer], env=env, workdir="/", platform="linux/amd64")
    layers = ({"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size, "media_type": layer.media_type},)
    m = {"description": description, "manifest": manifest.raw_bytes().decode(),
         "media_type": manifest.effective_media_type, "config": config.raw_bytes().decode(), "layers": list(layers)}
    meta.write_text(json.dumps(m))
    return BaseImage(kind, description, root / "store", manifest.raw_bytes(), manifest.effective_media_type,
                     config.raw_bytes(), layers)


# --------------------------------------------------------------------------- tools


@dataclasses.dataclass
class Ctx:
    """What a tool needs for one run.

    Attributes:
        host: registry address the tool must use (the counting proxy).
        base_ref: ``host/bench/base:v1``.
        project: the workload folder (holds the input folders; compose-kfp's kfp.toml goes here).
        folders: ``(src folder, destination in the image)`` pairs.
        repo: destination repository (``bench/<tool>-<workload>``).
        scratch: a folder the tool may use for its own state in this workload sequence.
        cold: this run starts from nothing (no local state; fresh registry).
    """

    host: str
    base_ref: str
    project: pathlib.Path
    folders: list[tuple[str, str]]
    repo: str
    scratch: pathlib.Path
    cold: bool


class Tool:
    """One way to build and push the image: ``prepare`` (not timed) then ``script`` (timed)."""

    name = "tool"
    description = ""

    def available(self) -> str | None:
        """None when the tool can run here, else why not."""
        return None

    def prepare(self, ctx: Ctx) -> None:
        """Reset local state before a cold run (not timed)."""

    def script(self, ctx: Ctx) -> str:
        raise NotImplementedError


class ComposeKfp(Tool):
    """compose-kfp through its CLI: ``python3 -m compose_kfp -q -f PROJECT/kfp.toml apply --yes``.

    ``kfp.toml`` names the base in the registry, the destination repository and three
    ``paths`` layers (or one for the big file). A cold run deletes the project's
    ``.compose-kfp`` state (blob store, content cache), ``kfp.lock`` and rendered files.
    ``mode="plan"`` runs ``plan`` instead (on a cold project: every layer built into the
    local store, nothing pushed): the layer-build time compared with the floor.
    """

    name = "compose-kfp"

    def __init__(self, mode: str = "apply"):
        self.mode = mode
        if mode == "plan":
            self.name = "compose-kfp plan (layer build)"
        self.description = "CLI `python3 -m compose_kfp -q -f kfp.toml " + (
            "apply --yes`" if mode == "apply" else "plan`")

    def available(self) -> str | None:
        r = subprocess.run([sys.executable, "-m", "compose_kfp", self.mode, "--help"], cwd=REPO,
                           capture_output=True, text=True)
        return None if r.returncode == 0 else f"`python3 -m compose_kfp {self.mode}` is not available: " \
            + (r.stderr or r.stdout).strip()[-300:]

    def prepare(self, ctx: Ctx) -> None:
        if ctx.cold:
            for p in (ctx.project / ".compose-kfp", ctx.project / "build"):
                shutil.rmtree(p, ignore_errors=True)
            (ctx.project / "kfp.lock").unlink(missing_ok=True)
        layers = []
        for src, dst in ctx.folders:
            if dst == f"/app/{src}":
                layers.append(f'[[image.layers]]\nname = "{src}"\npaths = ["{src}"]\n')
            else:
                layers.append(f'[[image.layers]]\nname = "{src}"\npaths = [{{ src = "{src}", dst = "{dst}" }}]\n')
        (ctx.project / "kfp.toml").write_text(
            f'[project]\nname = "bench"\n\n[image]\nbase = "{ctx.base_ref}"\n'
            f'repository = "{ctx.host}/{ctx.repo}"\nworkdir = "/app"\n\n' + "\n".join(layers))

    def script(self, ctx: Ctx) -> str:
        toml = shlex.quote(str(ctx.project / "kfp.toml"))
        tail = "apply --yes" if self.mode == "apply" else "plan"
        return f"{shlex.quote(sys.executable)} -m compose_kfp -q -f {toml} {tail}"


class Buildah(Tool):
    """buildah: ``from`` the base in the registry, ``copy`` each folder, ``commit``, ``push``.

    Own storage per workload sequence (``--root``/``--runroot`` under the scratch folder; a
    cold run starts empty, so ``from`` pulls the base). overlay when it mounts here, else vfs.
    One commit: the three copies become one layer (what `buildah copy` + `commit` gives).
    """

    name = "buildah"

    def __init__(self) -> None:
        self.driver = None

    def available(self) -> str | None:
        return None if shutil.which("buildah") else "buildah is not installed"

    def _driver(self, scratch: pathlib.Path) -> str:
        if self.driver is None:
            probe = scratch.parent / "buildah-probe"
            base = ["buildah", "--root", str(probe / "root"), "--runroot", str(probe / "run"), "--storage-driver"]
            try:
                c = subprocess.run(base + ["overlay", "from", "scratch"], capture_output=True, text=True, timeout=60)
                ok = c.returncode == 0 and subprocess.run(
                    base + ["overlay", "mount", c.stdout.strip()], capture_output=True, timeout=60).returncode == 0
                if ok:
                    subprocess.run(base + ["overlay", "rm", "--all"], capture_output=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            self.driver = "overlay" if ok else "vfs"
            subprocess.run(["buildah", "--root", str(probe / "root"), "--runroot", str(probe / "run"),
                            "--storage-driver", self.driver, "rm", "--all"], capture_output=True)
            _rm_storage(probe)
        return self.driver

    def _flags(self, ctx: Ctx) -> str:
        return (f"--root {shlex.quote(str(ctx.scratch / 'root'))} --runroot {shlex.quote(str(ctx.scratch / 'run'))} "
                f"--storage-driver {self._driver(ctx.scratch)}")

    def prepare(self, ctx: Ctx) -> None:
        self._driver(ctx.scratch)
        if ctx.cold:
            _rm_storage(ctx.scratch)
        ctx.scratch.mkdir(parents=True, exist_ok=True)

    def script(self, ctx: Ctx) -> str:
        b = f"buildah {self._flags(ctx)}"
        lines = [f"ctr=$({b} from --quiet --tls-verify=false {ctx.base_ref})"]
        for src, dst in ctx.folders:
            lines.append(f"{b} copy --quiet \"$ctr\" {shlex.quote(src)} {shlex.quote(dst)} >/dev/null")
        lines.append(f"{b} commit --quiet \"$ctr\" bench-image >/dev/null")
        lines.append(f"{b} push --quiet --tls-verify=false bench-image docker://{ctx.host}/{ctx.repo}:latest")
        lines.append(f"{b} rm \"$ctr\" >/dev/null")
        return "\n".join(lines)


def _rm_storage(path: pathlib.Path) -> None:
    """Remove a buildah storage folder (unmounting overlay mounts left under it first)."""
    if not path.exists():
        return
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
        for m in sorted((m for m in mounts if m.startswith(str(path))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)


class SkopeoUmoci(Tool):
    """The thesis's method: ``skopeo copy`` the whole base to an OCI layout, ``umoci insert``
    each folder as a new layer, ``skopeo copy`` the result to the registry. No cache between
    runs (the method has none): every run copies the base again into a fresh layout."""

    name = "skopeo+umoci"

    def available(self) -> str | None:
        missing = [t for t in ("skopeo", "umoci") if not shutil.which(t)]
        return f"not installed: {', '.join(missing)}" if missing else None

    def prepare(self, ctx: Ctx) -> None:
        shutil.rmtree(ctx.scratch / "layout", ignore_errors=True)
        ctx.scratch.mkdir(parents=True, exist_ok=True)

    def script(self, ctx: Ctx) -> str:
        layout = shlex.quote(str(ctx.scratch / "layout"))
        lines = [f"rm -rf {layout}",
                 f"skopeo copy --quiet --src-tls-verify=false docker://{ctx.base_ref} oci:{layout}:image"]
        for src, dst in ctx.folders:
            lines.append(f"umoci insert --image {layout}:image {shlex.quote(src)} {shlex.quote(dst)}")
        lines.append(f"skopeo copy --quiet --dest-tls-verify=false oci:{layout}:image "
                     f"docker://{ctx.host}/{ctx.repo}:latest")
        return "\n".join(lines)


def gzip_command() -> tuple[str, str]:
    """The fastest gzip here: ``pigz -1`` (all cores) if installed, else ``gzip -1``; ``(command, version)``."""
    if shutil.which("pigz"):
        v = subprocess.run(["pigz", "--version"], capture_output=True, text=True)
        return "pigz -1", (v.stdout or v.stderr).strip()
    v = subprocess.run(["gzip", "--version"], capture_output=True, text=True)
    return "gzip -1", v.stdout.splitlines()[0]


class FloorBuild(Tool):
    """``tar -c FOLDERS | <fastest gzip> | tee BLOB | sha256sum``: the least work that makes a gzip layer
    and its digest (one stream over the same files; the blob kept for :class:`FloorUpload`)."""

    name = "floor: tar + gzip + sha256sum"

    def script(self, ctx: Ctx) -> str:
        gz = gzip_command()[0]
        blob = shlex.quote(str(ctx.scratch / "floor.tar.gz"))
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        folders = " ".join(shlex.quote(src) for src, _ in ctx.folders)
        return (f"tar -cf - {folders} | {gz} | tee {blob} | sha256sum | cut -d' ' -f1 "
                f"> {shlex.quote(str(ctx.scratch / 'floor.sha256'))}")


class FloorUpload(Tool):
    """``curl`` uploads the floor's blob: ``POST /v2/<repo>/blobs/uploads/`` then a monolithic
    ``PUT <location>&digest=sha256:...`` with the file streamed (``-T``)."""

    name = "floor: curl upload"

    def script(self, ctx: Ctx) -> str:
        blob = shlex.quote(str(ctx.scratch / "floor.tar.gz"))
        sha = shlex.quote(str(ctx.scratch / "floor.sha256"))
        return "\n".join([
            f"loc=$(curl -sS -f -X POST -D - -o /dev/null http://{ctx.host}/v2/{ctx.repo}/blobs/uploads/ "
            "| tr -d '\\r' | awk 'tolower($1)==\"location:\" {print $2}')",
            f"case \"$loc\" in http*) ;; *) loc=\"http://{ctx.host}$loc\" ;; esac",
            "case \"$loc\" in *\\?*) sep='&' ;; *) sep='?' ;; esac",
            f"curl -sS -f -o /dev/null -T {blob} -H 'Content-Type: application/octet-stream' "
            f"\"$loc${{sep}}digest=sha256:$(cat {sha})\"",
        ])


def tool_versions() -> dict[str, str]:
    """Version strings of every tool the benchmark runs (``"missing"`` when absent)."""
    def first(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "missing"
        text = (r.stdout or r.stderr).strip().splitlines()
        return text[0].strip() if text else "missing"

    out = {}
    try:
        r = subprocess.run([sys.executable, "-m", "compose_kfp", "--version"], cwd=REPO, capture_output=True, text=True)
        ver = (r.stdout or r.stderr).strip().splitlines()[-1] if r.returncode == 0 else None
    except OSError:
        ver = None
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "compose_kfp"],
                           capture_output=True, text=True).stdout.strip()
    out["compose-kfp"] = f"{ver or 'unknown'} (git {commit}{', compose_kfp/ has uncommitted changes' if dirty else ''})"
    out["python"] = sys.version.split()[0]
    try:
        import isal  # type: ignore[import-not-found]

        out["isal"] = getattr(isal, "__version__", "installed")
    except ImportError:
        out["isal"] = "missing (zlib fallback)"
    out["buildah"] = first(["buildah", "--version"])
    out["skopeo"] = first(["skopeo", "--version"])
    out["umoci"] = first(["umoci", "--version"])
    out["docker-registry"] = first(["docker-registry", "--version"])
    out["curl"] = first(["curl", "--version"])
    out["pigz/gzip"] = gzip_command()[1]
    out["tar"] = first(["tar", "--version"])
    return out
