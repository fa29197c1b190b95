"""Layer build throughput: compose_kfp.oci.layer against ``tar -c | gzip | sha256sum``.

Generates a tree of mixed data (small compressible text files and large
incompressible binary files), then, on the same tree in the same run:

* builds it with :func:`compose_kfp.oci.layer.build_layer` as three gzip layers
  (the shape of DESIGN.md's target) and as one layer, in a child process
  whose peak RSS is recorded;
* the same work in one thread (tar, hash, compress, hash, write serially) to
  show what the two-thread pipeline gains;
* ``tar -c | gzip | sha256sum`` (GNU tar, gzip default level 6) and
  ``tar -c | gzip -1 | sha256sum`` as baselines.

Results go to ``bench/results/layer.md`` (and into ``BENCHMARKS.md`` when it
does not have a layer section yet). Default tree: 460 MB, a few seconds per
run; ``--full`` uses the 1 GiB tree of the issue.

    python3 bench/bench_layer.py [--full] [--size-mb N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compose_kfp.oci import layer as L  # noqa: E402
from compose_kfp.oci.blobs import BlobStore  # noqa: E402

WORDS = ("import numpy as np def train model data loss epoch batch return self value "
         "pipeline component kubeflow tensor gradient optimizer config path file").split()


def generate(root: pathlib.Path, total_bytes: int, seed: int = 7) -> dict[str, int]:
    """Write ~``total_bytes``: 40% small text files (1-64 KiB) in 3 folders, 60% binary files (8-64 MiB)."""
    rng = random.Random(seed)
    text_budget = int(total_bytes * 0.4)
    counts = {"text_files": 0, "binary_files": 0, "bytes": 0}
    i = 0
    chunk = " ".join(rng.choice(WORDS) for _ in range(200_000)).encode()
    while counts["bytes"] < text_budget:
        d = root / f"part{i % 3}" / "src" / f"mod{i // 300:03}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(1024, 64 * 1024)
        off = rng.randint(0, len(chunk) - n)
        (d / f"file{i:05}.py").write_bytes(chunk[off:off + n])
        counts["text_files"] += 1
        counts["bytes"] += n
        i += 1
    j = 0
    while counts["bytes"] < total_bytes:
        n = min(rng.randint(8, 64) << 20, total_bytes - counts["bytes"])
        d = root / f"part{j % 3}" / "data"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"blob{j:03}.bin", "wb") as f:
            left = n
            while left:
                k = min(left, 4 << 20)
                f.write(os.urandom(k))
                left -= k
        counts["binary_files"] += 1
        counts["bytes"] += n
        j += 1
    return counts


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from compose_kfp.oci.layer import build_layer
root, store, parts = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
t0 = time.perf_counter()
layers = [build_layer([(p, "/" + p)], context=root, store=store) for p in parts]
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "compressed": sum(l.size for l in layers)}))
"""


def ours(root: pathlib.Path, parts: list[str], store: pathlib.Path) -> dict:
    shutil.rmtree(store, ignore_errors=True)
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(root), str(store), json.dumps(parts)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def sequential(root: pathlib.Path, parts: list[str], store: pathlib.Path) -> float:
    """The same tar/hash/compress/hash/write work in one thread (no pipeline)."""
    shutil.rmtree(store, ignore_errors=True)
    bs = BlobStore(store)
    t0 = time.perf_counter()
    for p in parts:
        plan = L.plan_layer([(p, "/" + p)], context=root)
        comp = L._compressor(plan.compression, plan.level)
        diff = hashlib.sha256()
        with bs.writer() as w:
            for chunk in L._iter_tar(plan):
                diff.update(chunk)
                w.write(comp.compress(chunk))
            w.write(comp.flush())
    return time.perf_counter() - t0


def shell(cmd: str, cwd: pathlib.Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="use the 1 GiB tree (default: 460 MB)")
    ap.add_argument("--size-mb", type=int, help="tree size in MB (overrides --full)")
    ap.add_argument("--keep", type=pathlib.Path, help="generate/reuse the tree in this folder")
    ap.add_argument("--out", type=pathlib.Path, default=REPO / "bench" / "results" / "layer.md")
    args = ap.parse_args()
    size = (args.size_mb * 10**6) if args.size_mb else (2**30 if args.full else 460 * 10**6)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-layer-"))
    root = args.keep or (work / "tree")
    try:
        if not (root / "part0").is_dir():
            root.mkdir(parents=True, exist_ok=True)
            counts = generate(root, size)
        else:
            counts = {"text_files": sum(1 for _ in root.rglob("*.py")),
                      "binary_files": sum(1 for _ in root.rglob("*.bin")),
                      "bytes": sum(p.stat().st_size for p in root.rglob("*") if p.is_file())}
        parts = sorted(p.name for p in root.iterdir() if p.is_dir())
        mb = counts["bytes"] / 1e6
        shell("tar -cf - . | sha256sum", root)  # warm the page cache
        r3 = ours(root, parts, work / "store3")
        seq = sequential(root, parts, work / "store-seq")
        t_gzip = shell("tar -cf - --sort=name . | gzip | sha256sum", root)
        t_gzip1 = shell("tar -cf - --sort=name . | gzip -1 | sha256sum", root)
        rows = [
            ("compose-kfp build_layer, 3 gzip layers (isal, 2 threads)" if L.GZIP_IMPL == "isal"
             else "compose-kfp build_layer, 3 gzip layers (zlib, 2 threads)", r3["seconds"]),
            ("same work in one thread (no pipeline)", seq),
            ("`tar -c | gzip | sha256sum` (gzip -6)", t_gzip),
            ("`tar -c | gzip -1 | sha256sum`", t_gzip1),
        ]
        lines = [
            "## Layer build throughput (`bench/bench_layer.py`)",
            "",
            f"Tree: {mb:.0f} MB in {counts['text_files']} small text files (1-64 KiB, ~40% of bytes) and "
            f"{counts['binary_files']} random binary files (8-64 MiB), split in 3 folders = 3 layers. "
            f"Machine: {os.cpu_count()} CPUs (shared), Python {sys.version.split()[0]}, gzip via {L.GZIP_IMPL} "
            f"level {L.DEFAULT_GZIP_LEVEL}. Files in the page cache (warmed by one `tar` pass).",
            "",
            "| what | seconds | MB/s |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {name} | {t:.2f} | {mb / t:.0f} |" for name, t in rows]
        lines += [
            "",
            f"Peak RSS of the build process (3 layers, {mb:.0f} MB): {r3['rss_kib'] / 1024:.0f} MiB; "
            f"compressed total {r3['compressed'] / 1e6:.0f} MB. Regenerate with "
            f"`python3 bench/bench_layer.py{' --full' if size >= 2**30 else ''}`"
            f"{'' if size >= 2**30 else ' (`--full` for the 1 GiB tree)'}.",
            "",
        ]
        text = "\n".join(lines)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        bm = REPO / "BENCHMARKS.md"
        if not bm.exists():
            bm.write_text("# Benchmarks\n\nAssembled from `bench/results/*.md` by `bench/run.py`.\n\n" + text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
