"""Dependency layer: cold (install + layer build) and warm (requirements unchanged) paths.

Uses the example's requirements (``examples/iris/requirements.txt``: scikit-learn, pandas, numpy,
scipy and what they pull in) for ``linux/amd64`` and this machine's Python, in a fresh temporary
folder (nothing of the user's caches is read or written):

* **cold, empty download cache**: uv downloads every wheel from the index, installs, and the tree
  is packed as one gzip layer (:func:`compose_kfp.build.deps.build_deps_layer`);
* **cold, warm download cache**: the same into a new blob store and dependency cache, with uv's
  download cache kept (what a changed requirements file costs on a developer machine);
  its digest is compared with the first build (reproducibility);
* **warm**: requirements unchanged: the key is computed and the layer found in the dependency
  cache; the installer does not start (median of ``--repeat`` runs, and ``requirements_key``
  alone);
* **pip fallback** (unless ``--no-pip``): cold install with pip's ``--platform`` flags, empty
  download cache, and the same layer build.

Results go to ``bench/results/deps.md`` (``bench/run.py`` assembles ``BENCHMARKS.md``).

    python3 bench/bench_deps.py [--repeat N] [--no-pip] [--requirements FILE]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compose_kfp.build import deps, requirements  # noqa: E402
from compose_kfp.oci.blobs import BlobStore  # noqa: E402


def tree_stats(root: pathlib.Path) -> tuple[int, int]:
    """(number of files, total bytes) under ``root``."""
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                files += 1
                size += os.path.getsize(p)
    return files, size


def cold(req: pathlib.Path, target: requirements.DepsTarget, work: pathlib.Path, name: str, installer: deps.Installer,
         download_cache: pathlib.Path) -> dict:
    """Install + layer build into a fresh store and dependency cache; split install and layer times."""
    store = BlobStore(work / f"store-{name}")
    cache = deps.DepsCache(work / f"deps-{name}")
    started = time.perf_counter()
    result = deps.build_deps_layer(req, target, store=store, cache=cache, cache_dir=download_cache,
                                   installer=installer, keep_dir=work / f"tree-{name}")
    total = time.perf_counter() - started
    assert not result.reused
    files, size = tree_stats(result.installed.root)
    return {"total": total, "install": result.installed.seconds, "layer_build": total - result.installed.seconds,
            "digest": result.layer.digest, "layer_size": result.layer.size, "files": files, "tree_bytes": size,
            "packages": len(result.installed.packages), "store": store, "cache": cache}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requirements", type=pathlib.Path, default=REPO / "examples" / "iris" / "requirements.txt")
    ap.add_argument("--repeat", type=int, default=20, help="runs of the warm path (median reported)")
    ap.add_argument("--no-pip", action="store_true", help="skip the pip fallback run")
    ap.add_argument("--out", type=pathlib.Path, default=REPO / "bench" / "results" / "deps.md")
    args = ap.parse_args()

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = requirements.DepsTarget(platform="linux/amd64", python=python)
    uv = deps.find_installer("uv")
    with tempfile.TemporaryDirectory(prefix="bench-deps-") as tmp:
        work = pathlib.Path(tmp)
        print(f"cold, empty download cache ({uv.label}) ...", flush=True)
        first = cold(args.requirements, target, work, "cold", uv, work / "uv-cache")
        print(f"  {first['total']:.1f} s", flush=True)
        print("cold, warm download cache ...", flush=True)
        second = cold(args.requirements, target, work, "warmcache", uv, work / "uv-cache")
        print(f"  {second['total']:.1f} s", flush=True)

        warm_times, key_times = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            hit = deps.build_deps_layer(args.requirements, target, store=second["store"], cache=second["cache"],
                                        installer=deps.find_installer("uv"))
            warm_times.append(time.perf_counter() - t0)
            assert hit.reused and hit.layer.digest == second["digest"]
            t0 = time.perf_counter()
            requirements.requirements_key(args.requirements, target, uv.label)
            key_times.append(time.perf_counter() - t0)
        warm, key = statistics.median(warm_times), statistics.median(key_times)
        print(f"warm: {warm * 1000:.1f} ms", flush=True)

        pip = None
        if not args.no_pip:
            print("pip fallback, empty download cache ...", flush=True)
            pip_installer = deps.find_installer("pip")
            pip = cold(args.requirements, target, work, "pip", pip_installer, work / "pip-cache")
            pip["label"] = pip_installer.label
            print(f"  {pip['total']:.1f} s", flush=True)

    mb = 1e6
    rows = [
        ("cold: download + install + layer build (uv, empty download cache)", first),
        ("cold: install + layer build (uv, download cache kept)", second),
    ]
    if pip:
        rows.append((f"cold: download + install + layer build ({pip['label']} fallback, empty cache)", pip))
    lines = [
        "## Dependency layer",
        "",
        f"`bench/bench_deps.py`: `{args.requirements.relative_to(REPO) if args.requirements.is_relative_to(REPO) else args.requirements}` "
        f"({first['packages']} packages, {first['files']} files, {first['tree_bytes'] / mb:.0f} MB installed) "
        f"for {target.describe()}; {platform.machine()}, {os.cpu_count()} cores (shared), "
        f"Python {platform.python_version()}, {uv.label}. PyPI over the network for empty download caches.",
        "",
        "| path | total | install | layer build | layer (gzip) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['total']:.1f} s | {r['install']:.1f} s | {r['layer_build']:.1f} s | "
                     f"{r['layer_size'] / mb:.0f} MB |")
    lines += [
        f"| warm: requirements unchanged, layer reused (installer not started; median of {args.repeat}) | "
        f"{warm * 1000:.1f} ms | - | - | - |",
        f"| `requirements_key` alone (median of {args.repeat}) | {key * 1000:.2f} ms | - | - | - |",
        "",
        f"Reproducible: the two uv builds (different folders, stores and caches) gave "
        f"{'the same' if first['digest'] == second['digest'] else 'DIFFERENT'} layer digest "
        f"(`{first['digest'][:19]}…`)"
        + (f"; the pip build gave {'the same digest' if pip['digest'] == first['digest'] else 'another digest'} "
           f"(INSTALLER files and script launchers differ between installers, which is why the installer is part "
           f"of the cache key)." if pip else "."),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
