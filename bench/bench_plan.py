"""``plan`` with nothing changed, and ``apply`` after a one-file edit, on a 10,000-file / 1 GiB project.

Against a real CNCF registry (``docker-registry``) on loopback with a tiny base image
pushed there first. The project has a big ``data`` layer (10,000 - 8 files, ~1 GiB:
text files of 1-64 KiB plus a few large binary files) and a small ``src`` layer with
two step functions. Measured, in one run:

* cold: ``plan`` + ``apply`` with an empty project state (every layer built, every blob pushed);
* no-op ``plan`` once the cache is warm: in process (``load_project`` + ``plan_project``, median
  of 5) and as a ``compose-kfp plan`` subprocess (Python start-up and imports included);
* ``plan`` + ``apply`` after editing one file in ``src/`` (the DESIGN's case: code changes often,
  data seldom), and, for completeness, after editing one file of the 1 GiB ``data/`` layer
  (that layer is rebuilt and pushed whole: a layer is one blob);
* ``plan`` of a small project whose ``image.env`` has ``--env-keys`` keys (100,000; issue 20 item 7:
  merging them into the base's ``Env`` was quadratic), warm cache, median of 3.

Targets (issue 4): no-op plan < 0.5 s; one-file re-apply < 5% of the cold apply. Issue 20: the
100,000-key ``image.env`` plans in under a second.
Results: ``bench/results/plan.md`` (not rewritten with ``--only-env``, which runs just the env case).

    python3 bench/bench_plan.py [--size-mb 1024] [--files 10000] [--env-keys 100000] [--only-env] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compose_kfp.build.apply import apply_plan  # noqa: E402
from compose_kfp.build.plan import plan_project  # noqa: E402
from compose_kfp.manifest.project import load_project  # noqa: E402
from tests.fixtures.project import push_base_image, write_project  # noqa: E402
from tests.fixtures.registry import RegistryServer  # noqa: E402

WORDS = ("import numpy as np def train model data loss epoch batch return self value "
         "pipeline component kubeflow tensor gradient optimizer config path file").split()


def generate(data: pathlib.Path, files: int, total_bytes: int, seed: int = 11) -> int:
    """Fill ``data`` with ``files`` files, ~``total_bytes`` in all (8 binary files hold 60%). Returns bytes."""
    rng = random.Random(seed)
    n_bin = 8
    bin_each = int(total_bytes * 0.6) // n_bin
    text_budget = total_bytes - bin_each * n_bin
    n_text = files - n_bin
    chunk = " ".join(rng.choice(WORDS) for _ in range(200_000)).encode()
    written = 0
    avg = text_budget // n_text
    for i in range(n_text):
        d = data / f"shard{i // 500:02}"
        d.mkdir(parents=True, exist_ok=True)
        n = max(1, min(len(chunk) - 1, int(avg * rng.uniform(0.2, 1.8))))
        off = rng.randint(0, len(chunk) - n)
        (d / f"rec{i:05}.txt").write_bytes(chunk[off:off + n])
        written += n
    for i in range(n_bin):
        with open(data / f"blob{i}.bin", "wb") as f:
            left = bin_each
            while left:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
        written += bin_each
    return written


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def plan_apply(root: pathlib.Path):
    project = load_project(root)
    p = plan_project(project)
    return p, apply_plan(project, p)


def env_case(server: RegistryServer, work: pathlib.Path, base: str, keys: int) -> dict[str, float]:
    """Plan a small project whose ``image.env`` has ``keys`` keys; seconds (median of 3, after a first plan).

    Returns ``{"load": load_project, "plan": plan_project, "total": both}``.
    """
    env = {f"VAR_{i:06}": f"value-{i}" for i in range(keys)}
    root = write_project(work / "env-project", base=base, repository=f"{server.host}/bench/env-{uuid.uuid4().hex[:6]}",
                         env=env, data_files=1)
    plan_project(load_project(root))  # first plan: builds the layers into the cache
    loads, plans = [], []
    for _ in range(3):
        t_load, project = timed(lambda: load_project(root))
        t_plan, _ = timed(lambda: plan_project(project))
        loads.append(t_load)
        plans.append(t_plan)
    totals = [a + b for a, b in zip(loads, plans)]
    return {"load": statistics.median(loads), "plan": statistics.median(plans), "total": statistics.median(totals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--env-keys", type=int, default=100_000, help="keys of image.env in the env case")
    ap.add_argument("--only-env", action="store_true", help="run only the image.env case; plan.md is not rewritten")
    ap.add_argument("--keep", type=pathlib.Path, help="work in this folder and keep it")
    args = ap.parse_args()
    work = args.keep or pathlib.Path(tempfile.mkdtemp(prefix="bench-plan-"))
    work.mkdir(parents=True, exist_ok=True)
    server = RegistryServer(work / "registry")
    try:
        base = push_base_image(server, f"bench/base-{uuid.uuid4().hex[:6]}")
        if args.only_env:
            t_env = env_case(server, work, base.reference, args.env_keys)
            print(f"image.env with {args.env_keys} keys: {t_env['total']:.3f}s (load {t_env['load']:.3f}s, "
                  f"plan {t_env['plan']:.3f}s); {REPO / 'bench' / 'results' / 'plan.md'} not rewritten", flush=True)
            return
        root = write_project(work / "project", base=base.reference,
                             repository=f"{server.host}/bench/app-{uuid.uuid4().hex[:6]}", data_files=0)
        t_gen, size = timed(lambda: generate(root / "data", args.files, args.size_mb << 20))
        n_files = sum(1 for p in (root / "data").rglob("*") if p.is_file()) + 2
        print(f"generated {n_files} files, {size / 1e6:.0f} MB in {t_gen:.1f}s", flush=True)

        t_cold, (p_cold, r_cold) = timed(lambda: plan_apply(root))
        print(f"cold plan+apply: {t_cold:.2f}s, uploaded {r_cold.uploaded_bytes / 1e6:.0f} MB", flush=True)

        noop = []
        for _ in range(5):
            t, p = timed(lambda: plan_project(load_project(root)))
            assert not p.has_changes, "the no-op plan found changes"
            noop.append(t)
        noop_plan_only = []
        project = load_project(root)
        for _ in range(5):
            t, _ = timed(lambda: plan_project(project))
            noop_plan_only.append(t)
        cli = []
        for _ in range(3):
            t, proc = timed(lambda: subprocess.run([sys.executable, "-m", "compose_kfp", "-C", str(root), "plan",
                                                    "--exit-code"], capture_output=True, text=True))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            cli.append(t)
        print(f"no-op plan: {statistics.median(noop):.3f}s (load+plan), "
              f"{statistics.median(noop_plan_only):.3f}s (plan only), CLI {statistics.median(cli):.3f}s", flush=True)

        model = root / "src" / "model.py"
        model.write_text(model.read_text() + "\n# edited\n")
        t_edit, (p_edit, r_edit) = timed(lambda: plan_apply(root))
        replaced = [ly.name for ly in p_edit.image("main").platforms[0].layers if ly.action == "replace"]
        print(f"src edit plan+apply: {t_edit:.3f}s ({100 * t_edit / t_cold:.2f}% of cold), replaced {replaced}, "
              f"uploaded {r_edit.uploaded_bytes} B", flush=True)

        victim = next((root / "data").rglob("rec00007.txt"))
        victim.write_bytes(victim.read_bytes() + b" edited")
        t_data, (p_data, r_data) = timed(lambda: plan_apply(root))
        print(f"data edit plan+apply: {t_data:.2f}s ({100 * t_data / t_cold:.1f}% of cold), "
              f"uploaded {r_data.uploaded_bytes / 1e6:.0f} MB", flush=True)

        t_env = env_case(server, work, base.reference, args.env_keys)
        print(f"image.env with {args.env_keys} keys: {t_env['total']:.3f}s (load {t_env['load']:.3f}s, "
              f"plan {t_env['plan']:.3f}s)", flush=True)

        out = REPO / "bench" / "results" / "plan.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(f"""# plan / apply benchmark (`bench/bench_plan.py`)

Project: {n_files} files, {size / 1e6:.0f} MB in a `data` layer (text files of 1-64 KiB and 8 binary
files holding 60% of the bytes), a `src` layer (one Python file) and the runtime layer, on a tiny base
image; destination: a CNCF `docker-registry` on loopback. Machine: {os.cpu_count()} cores, shared.

| measurement | seconds | notes |
| --- | ---: | --- |
| cold `plan` + `apply` (empty state) | {t_cold:.2f} | uploaded {r_cold.uploaded_bytes / 1e6:.0f} MB |
| no-op plan, warm cache: `load_project` + `plan_project` (median of 5) | {statistics.median(noop):.3f} | target < 0.5 s |
| no-op plan, warm cache: `plan_project` alone (median of 5) | {statistics.median(noop_plan_only):.3f} | |
| no-op `compose-kfp plan --exit-code` subprocess (median of 3) | {statistics.median(cli):.3f} | includes Python start-up and imports |
| `plan` + `apply` after editing one file in `src/` | {t_edit:.3f} | {100 * t_edit / t_cold:.2f}% of cold (target < 5%); replaced {', '.join(replaced)}; uploaded {r_edit.uploaded_bytes} B |
| `plan` + `apply` after editing one file in `data/` | {t_data:.2f} | {100 * t_data / t_cold:.1f}% of cold: the 1 GiB layer is one blob, rebuilt and pushed whole ({r_data.uploaded_bytes / 1e6:.0f} MB) |
| `image.env` with {args.env_keys:,} keys, small project: `load_project` + `plan_project` (median of 3) | {t_env['total']:.3f} | target < 1 s (issue 20); `load_project` {t_env['load']:.3f} s, `plan_project` {t_env['plan']:.3f} s |

Layers split by how often they change (Jib's lesson) are what make an edit cheap: keep
data that changes in its own layer, or in several.
""")
        print(f"wrote {out}")
    finally:
        server.stop()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
