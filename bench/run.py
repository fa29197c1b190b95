"""compose-kfp against the tools users would pick instead, in one run; rewrites BENCHMARKS.md.

    python3 bench/run.py                 # the full comparison (make bench); < 15 min on 2 cores
    python3 bench/run.py --quick         # small inputs, 1 run each (~30 s); writes bench/.work/BENCHMARKS.quick.md
    python3 bench/run.py --rerun-sections   # also re-run bench/bench_*.py first (short options)

What it does, on this machine, with one registry binary and the same inputs for every tool:

1. Generates the workloads from a seed (``bench/peers.py``; cached under ``bench/.work``):
   a project of 300 MB data (CSV + random binary), 2,000 source files and a ~100 MB
   dependency folder; and one 2 GiB file. Builds the base image once with compose-kfp's OCI
   core (the debootstrap rootfs of ``scripts/make-rootfs.sh`` when it is cached here, else a
   small synthetic base; ``--base``).
2. For each tool (compose-kfp CLI, buildah, skopeo + umoci, the floor) runs the workloads
   *cold* (a fresh ``docker-registry`` holding only the base, so the destination is empty and
   no tool has blob-location caches for it; no local state), *one-file edit* (one source file
   changed, on the state the cold runs left) and *no change*; then the 2 GiB file cold.
   Every tool talks to the registry through a byte-counting proxy (``bench/proxy.py``); the
   registry's access log tells which blobs were downloaded (base layers) and uploaded.
3. Each run is one shell script timed from outside; peak RSS comes from ``wait4`` (the
   largest process of the tool's tree). Median over the runs; inputs are in the page cache.
4. Checks the targets of issue 9 and, for each compose-kfp target missed, profiles one run
   of that workload with py-spy (``pip install py-spy``; skipped when absent) and reports
   where the time goes.
5. Writes ``BENCHMARKS.md`` from scratch: machine, tool versions, workloads, the table,
   targets, profiles, and the sections from ``bench/results/*.md`` that the other bench
   scripts wrote (included as they are with the time they were measured, unless
   ``--rerun-sections`` re-runs them first). Raw samples go to ``bench/.work/results.json``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import peers  # noqa: E402
from peers import Ctx, Registry, Timed  # noqa: E402
from proxy import CountingProxy  # noqa: E402

WORKLOADS = ("cold", "edit", "nochange", "big")
WORKLOAD_TITLES = {"cold": "1. cold", "edit": "2. one-file edit", "nochange": "3. no change", "big": "4. one 2 GiB file"}
TOOLS = ("compose-kfp", "compose-kfp plan (layer build)", "buildah", "skopeo+umoci",
         "floor: tar + gzip + sha256sum", "floor: curl upload")
#: Which (workload, tool) pairs are measured; the others appear in the table as "n/a" with the reason.
NOT_APPLICABLE = {
    ("edit", "compose-kfp plan (layer build)"): "cold only",
    ("nochange", "compose-kfp plan (layer build)"): "cold only",
    ("big", "compose-kfp plan (layer build)"): "cold only",
    ("nochange", "floor: tar + gzip + sha256sum"): "nothing to build",
    ("nochange", "floor: curl upload"): "nothing to upload",
}
#: Warm commands timed after the no-change runs (``compose-kfp -q -f kfp.toml ARGS``), and how often.
WARM_COMMANDS = {"help": "--help", "validate": "validate", "plan": "plan --exit-code"}
WARM_RUNS = 5
WARM_TITLES = {"help": "`compose-kfp --help`", "validate": "`compose-kfp validate`",
               "plan": "`compose-kfp plan --exit-code` (no change)"}
PROJECT_FOLDERS = [("deps", "/opt/deps"), ("data", "/app/data"), ("src", "/app/src")]
BIG_FOLDERS = [("model", "/app/model")]
EDIT_FOLDERS = [("src", "/app/src")]  # the floor of an edit: rebuild and upload the layer holding the file


@dataclasses.dataclass
class Sample:
    """One measured run."""

    workload: str
    tool: str
    seconds: float
    max_rss_kib: int
    up: int
    down: int
    base_down: int
    commits: list[str]
    mounts: list[str]
    manifest_puts: int
    returncode: int
    tail: str = ""


#: Runs per (workload, tool). The slow peers rebuild everything on every run, so they get fewer runs
#: on the warm workloads to keep the whole comparison within 15 minutes; the table shows the count.
FULL_RUNS: dict[str, dict[str, int]] = {
    "compose-kfp": {"cold": 3, "edit": 3, "nochange": 5, "big": 1},
    "compose-kfp plan (layer build)": {"cold": 3},
    "buildah": {"cold": 2, "edit": 2, "nochange": 1, "big": 1},
    "skopeo+umoci": {"cold": 3, "edit": 2, "nochange": 2, "big": 1},
    "floor": {"cold": 3, "edit": 3, "big": 1},
}


def quick_runs() -> dict[str, dict[str, int]]:
    return {tool: {w: 1 for w in runs} for tool, runs in FULL_RUNS.items()}


class Bench:
    """Runs every tool through every workload (module docstring) and keeps the samples."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.sizes = peers.QUICK if args.quick else peers.FULL
        if args.scale:
            f = args.scale
            self.sizes = dataclasses.replace(self.sizes, csv_bytes=int(self.sizes.csv_bytes * f),
                                             bin_bytes=int(self.sizes.bin_bytes * f),
                                             deps_bytes=int(self.sizes.deps_bytes * f),
                                             big_bytes=int(self.sizes.big_bytes * f))
        self.runs = quick_runs() if args.quick else {t: dict(r) for t, r in FULL_RUNS.items()}
        if args.runs:
            self.runs = {t: {w: args.runs for w in r} for t, r in self.runs.items()}
        self.profiles: dict[str, str] = {}
        self.work = peers.WORK / ("quick" if args.quick else "full" if not args.scale else f"scale-{args.scale:g}")
        self.logs = self.work / "logs"
        shutil.rmtree(self.logs, ignore_errors=True)
        self.samples: list[Sample] = []
        self.notes: list[str] = []
        self.skipped: dict[str, str] = {}
        self.registry: Registry | None = None
        self.proxy: CountingProxy | None = None

    # ---------------------------------------------------------------- setup

    def setup(self) -> None:
        kind = self.args.base
        if kind == "auto":
            kind = "synthetic" if self.args.quick or not (peers.ROOTFS.parent / (peers.ROOTFS.name + ".done")).exists() \
                else "debootstrap"
        self.base = peers.build_base(kind)
        # What `make deps` does at install: with PYTHONDONTWRITEBYTECODE set (CI, this machine) Python would compile
        # every module of the editable checkout again on every command.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(REPO / "compose_kfp")], check=False)
        t = time.perf_counter()
        self.project, self.project_counts, reused = peers.cached_workload(
            "project", self.sizes, lambda root: peers.generate_project(root, self.sizes))
        self.big, self.big_counts, reused_big = peers.cached_workload(
            "big", self.sizes, lambda root: peers.generate_big(root, self.sizes.big_bytes))
        self.generate_seconds = time.perf_counter() - t
        self.generated = not (reused and reused_big)
        self.edit_original = (self.project / peers.EDIT_FILE).read_bytes()
        self.edits = 0
        peers.warm_page_cache(self.project, [f for f, _ in PROJECT_FOLDERS])
        peers.warm_page_cache(self.big, [f for f, _ in BIG_FOLDERS])
        self.ckfp = peers.ComposeKfp("apply")
        self.ckfp_plan = peers.ComposeKfp("plan")
        self.tools = {"compose-kfp": self.ckfp, "compose-kfp plan (layer build)": self.ckfp_plan,
                      "buildah": peers.Buildah(), "skopeo+umoci": peers.SkopeoUmoci(),
                      "floor: tar + gzip + sha256sum": peers.FloorBuild(), "floor: curl upload": peers.FloorUpload()}
        for name, tool in self.tools.items():
            why = tool.available()
            if why:
                self.skipped[name] = why
        for name in ("compose-kfp", "compose-kfp plan (layer build)"):
            if name in self.skipped:
                raise SystemExit(f"cannot benchmark compose-kfp: {self.skipped[name]}")

    def fresh_registry(self) -> None:
        """Stop the current registry and start an empty one holding only the base image (not timed)."""
        self.stop_registry()
        self.registry = Registry(self.work / "registry")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.proxy = CountingProxy(("127.0.0.1", self.registry.port)).start()
        self.base.push(self.registry.host)

    def stop_registry(self) -> None:
        if self.proxy:
            self.proxy.stop()
            self.proxy = None
        if self.registry:
            self.registry_count = getattr(self, "registry_count", 0) + 1
            shutil.copy(self.registry.log_path, self.logs / f"registry-{self.registry_count:02}.log")
            self.registry.stop()
            self.registry = None

    def ctx(self, workload: str, tool: str, cold: bool) -> Ctx:
        assert self.proxy is not None
        slug = "floor" if tool.startswith("floor") else "".join(c if c.isalnum() else "-" for c in tool).strip("-")
        project = self.big if workload == "big" else self.project
        folders = BIG_FOLDERS if workload == "big" else PROJECT_FOLDERS
        if workload == "edit" and tool.startswith("floor"):
            folders = EDIT_FOLDERS
        return Ctx(host=self.proxy.host, base_ref=f"{self.proxy.host}/bench/base:v1", project=project,
                   folders=folders, repo=f"bench/{slug}-{'big' if workload == 'big' else 'project'}",
                   scratch=self.work / "scratch" / slug, cold=cold)

    # ---------------------------------------------------------------- measuring

    def measure(self, workload: str, tool_name: str, ctx: Ctx, *, script: str | None = None,
                keep: bool = True) -> Sample:
        assert self.registry is not None and self.proxy is not None
        tool = self.tools[tool_name]
        tool.prepare(ctx)
        mark = len(self.registry.requests())
        self.proxy.take()
        t: Timed = peers.timed(script or tool.script(ctx), cwd=ctx.project,
                               log=self.logs / f"{ctx.scratch.name}.log")
        time.sleep(0.2)  # let the proxy threads and the access log catch up
        up, down = self.proxy.take()
        if self.proxy.errors:
            print(f"  proxy errors: {self.proxy.errors}", file=sys.stderr)
            self.proxy.errors.clear()
        rows = self.registry.requests()[mark:]
        s = Sample(workload, tool_name, t.seconds, t.max_rss_kib, up, down,
                   peers.blob_downloads(rows, self.base.layer_digests), peers.blob_commits(rows),
                   peers.blob_mounts(rows), peers.manifest_puts(rows), t.returncode,
                   t.tail if t.returncode else "")
        if keep:
            self.samples.append(s)
        status = "ok" if t.returncode == 0 else f"FAILED rc={t.returncode} (see {self.logs / (ctx.scratch.name + '.log')})"
        print(f"  {workload:8} {tool_name:32} {t.seconds:8.2f} s  rss {t.max_rss_kib / 1024:7.1f} MiB  "
              f"up {up / 1e6:8.1f} MB  down {down / 1e6:8.1f} MB  {status}", file=sys.stderr, flush=True)
        return s

    def edit_file(self) -> None:
        """Change one source file (a line appended; deterministic per edit number)."""
        self.edits += 1
        path = self.project / peers.EDIT_FILE
        path.write_bytes(path.read_bytes() + f"# bench edit {self.edits}\n".encode())

    def restore_edit_file(self) -> None:
        (self.project / peers.EDIT_FILE).write_bytes(self.edit_original)

    def project_sequence(self, tool: str) -> None:
        """cold runs (fresh registry each), then edits and no-change runs on the last cold state."""
        runs = self.runs[tool]
        self.restore_edit_file()
        for i in range(runs["cold"]):
            self.fresh_registry()
            self.measure("cold", tool, self.ctx("cold", tool, cold=True))
        for i in range(runs["edit"]):
            self.edit_file()
            self.measure("edit", tool, self.ctx("edit", tool, cold=False))
        for i in range(runs["nochange"]):
            self.measure("nochange", tool, self.ctx("nochange", tool, cold=False))
        if tool == "compose-kfp":
            self.warm_commands()
        if tool == "compose-kfp" and not self.args.no_profile:
            # Profile the warm workloads now, on the state the runs left, if their targets are missed.
            missed = {key for _, _, met, key in self.targets() if met is False}
            for key in ("edit", "nochange", "help", "validate", "plan"):
                if key in missed:
                    self.profile(key, fresh=False)
        self.restore_edit_file()

    def warm_commands(self) -> None:
        """``compose-kfp --help``, ``validate`` and a no-op ``plan`` on the state the no-change runs left (issue 17:
        commands users run dozens of times a day), :data:`WARM_RUNS` times each."""
        ctx = self.ctx("nochange", "compose-kfp", cold=False)
        for key, args in WARM_COMMANDS.items():
            script = f"{shlex.quote(sys.executable)} -m compose_kfp -q -f {shlex.quote(str(ctx.project / 'kfp.toml'))} {args}"
            for i in range(1 if self.args.quick else WARM_RUNS):
                self.measure(key, "compose-kfp", ctx, script=script)

    def floor_sequence(self) -> None:
        build, upload = "floor: tar + gzip + sha256sum", "floor: curl upload"
        self.restore_edit_file()
        for i in range(self.runs["floor"]["cold"]):
            self.fresh_registry()
            self.measure("cold", build, self.ctx("cold", build, cold=True))
            self.measure("cold", upload, self.ctx("cold", upload, cold=True))
        for i in range(self.runs["floor"]["edit"]):
            self.edit_file()
            self.measure("edit", build, self.ctx("edit", build, cold=False))
            self.measure("edit", upload, self.ctx("edit", upload, cold=False))
        self.restore_edit_file()

    def big_sequence(self, tool: str) -> None:
        for i in range(self.runs[tool]["big"]):
            self.fresh_registry()
            if tool == "floor":
                for name in ("floor: tar + gzip + sha256sum", "floor: curl upload"):
                    self.measure("big", name, self.ctx("big", name, cold=True))
            else:
                self.measure("big", tool, self.ctx("big", tool, cold=True))
            # the storage of a 2 GiB run is large: free it now
            self._clean_scratch(tool)

    def _clean_scratch(self, tool: str) -> None:
        """Free the disk a tool's big state takes (GiBs for the big file) once its runs are done."""
        if tool == "buildah":
            peers._rm_storage(self.work / "scratch" / "buildah")
        elif tool == "skopeo+umoci":
            shutil.rmtree(self.work / "scratch" / "skopeo-umoci", ignore_errors=True)
        elif tool == "compose-kfp":
            shutil.rmtree(self.big / ".compose-kfp", ignore_errors=True)
        elif tool == "floor":
            (self.work / "scratch" / "floor" / "floor.tar.gz").unlink(missing_ok=True)

    def plan_sequence(self) -> None:
        name = "compose-kfp plan (layer build)"
        self.fresh_registry()
        for i in range(self.runs[name]["cold"]):
            self.measure("cold", name, self.ctx("cold", name, cold=True))

    def run_all(self) -> None:
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.load_start = os.getloadavg()
        t0 = time.perf_counter()
        try:
            print("compose-kfp", file=sys.stderr)
            self.project_sequence("compose-kfp")
            self.plan_sequence()
            for peer in ("buildah", "skopeo+umoci"):
                if peer in self.skipped:
                    continue
                print(peer, file=sys.stderr)
                self.project_sequence(peer)
                self._clean_scratch(peer)
            print("floor", file=sys.stderr)
            self.floor_sequence()
            print("2 GiB file" if not self.args.quick else "big file", file=sys.stderr)
            for tool in ("compose-kfp", "buildah", "skopeo+umoci", "floor"):
                if tool not in self.skipped:
                    self.big_sequence(tool)
            if not self.args.no_profile:
                self.profile_missed()
        finally:
            self.stop_registry()
        self.elapsed = time.perf_counter() - t0
        self.load_end = os.getloadavg()

    # ---------------------------------------------------------------- results

    def of(self, workload: str, tool: str) -> list[Sample]:
        return [s for s in self.samples if s.workload == workload and s.tool == tool]

    def median(self, workload: str, tool: str) -> float | None:
        ok = [s.seconds for s in self.of(workload, tool) if s.returncode == 0]
        return statistics.median(ok) if ok else None

    def targets(self) -> list[tuple[str, str, bool | None, str]]:
        """``(target, measured, met, limit-note key)`` for each target of issue 9 (met None: not measured)."""
        out = []
        ck_cold = self.median("cold", "compose-kfp")
        for peer, factor in (("buildah", 2.0), ("skopeo+umoci", 3.0)):
            m = self.median("cold", peer)
            if ck_cold is None or m is None:
                out.append((f"cold at least {factor:g}x faster than {peer}", "not measured", None, "cold"))
                continue
            ratio = m / ck_cold
            need = m / factor
            met = ratio >= factor
            detail = f"{ratio:.2f}x ({ck_cold:.2f} s vs {m:.2f} s)"
            if not met:
                detail += f"; missed by {ck_cold - need:.2f} s: compose-kfp would need {need:.2f} s ({(1 - need / ck_cold) * 100:.0f}% less)"
            out.append((f"cold at least {factor:g}x faster than {peer}", detail, met, "cold"))
        ck_edit = self.median("edit", "compose-kfp")
        if ck_cold and ck_edit is not None:
            share = ck_edit / ck_cold
            detail = f"{share * 100:.1f}% of cold ({ck_edit:.2f} s vs {ck_cold:.2f} s)"
            if share >= 0.05:
                detail += f"; missed by {ck_edit - 0.05 * ck_cold:.2f} s"
            out.append(("one-file edit under 5% of the cold time", detail, share < 0.05, "edit"))
        edits = [s for s in self.of("edit", "compose-kfp") if s.returncode == 0]
        if edits:
            counts = sorted({len(s.commits) for s in edits})
            layers_ok = all(len(s.commits) == 2 for s in edits)
            mounts = sum(len(s.mounts) for s in edits)
            src_layer = self.src_layer_bytes()
            ups = [s.up for s in edits]
            detail = (f"blobs uploaded per edit: {'/'.join(map(str, counts))} (changed layer + config); "
                      f"manifest PUTs per edit: {'/'.join(str(n) for n in sorted({s.manifest_puts for s in edits}))} "
                      f"(by digest + each tag); bytes up {_mb(min(ups))}-{_mb(max(ups))}")
            if src_layer:
                detail += f" (the src layer blob is {_mb(src_layer)})"
            if mounts:
                detail += f"; {mounts} mounts"
            out.append(("one-file edit uploads only the changed layer + config + manifest", detail, layers_ok, "edit"))
        ck_same = self.median("nochange", "compose-kfp")
        if ck_same is not None:
            same = [s for s in self.of("nochange", "compose-kfp") if s.returncode == 0]
            detail = f"{ck_same:.2f} s (bytes up {_mb(max(s.up for s in same))}, blobs uploaded {sum(len(s.commits) for s in same)})"
            if ck_same >= 0.5:
                detail += f"; missed by {ck_same - 0.5:.2f} s"
            out.append(("no change under 0.5 s", detail, ck_same < 0.5, "nochange"))
        ck = [s for s in self.samples if s.tool.startswith("compose-kfp") and s.returncode == 0]
        if ck:
            base = sum(s.base_down for s in ck)
            per = ", ".join(f"{w}: {_mb(sum(s.base_down for s in ck if s.workload == w))}" for w in WORKLOADS
                            if any(s.workload == w for s in ck))
            out.append(("zero base-layer bytes downloaded in every workload",
                        f"{base} bytes in {len(ck)} compose-kfp runs ({per})", base == 0, "base"))
        big = [s for s in self.of("big", "compose-kfp") if s.returncode == 0]
        if big:
            rss = max(s.max_rss_kib for s in big) / 1024
            size = self.sizes.big_bytes / (1 << 30)
            label = f"peak RSS under 150 MiB for the {size:g} GiB file" if size >= 1 else \
                f"peak RSS under 150 MiB for the big file ({self.sizes.big_bytes / 2**20:.0f} MiB in --quick)"
            detail = f"{rss:.0f} MiB"
            if rss >= 150:
                detail += f"; missed by {rss - 150:.0f} MiB"
            out.append((label, detail, rss < 150, "rss"))
        out += self.targets_17()
        build = self.median("cold", "compose-kfp plan (layer build)")
        floor = self.median("cold", "floor: tar + gzip + sha256sum")
        if build is not None and floor:
            r = build / floor
            detail = f"{r:.2f}x the floor ({build:.2f} s vs {floor:.2f} s)"
            if r > 1.5:
                detail += f"; missed by {build - 1.5 * floor:.2f} s"
            out.append(("cold layer build within 1.5x of the floor pipeline", detail, r <= 1.5, "build"))
        return out

    def targets_17(self) -> list[tuple[str, str, bool | None, str]]:
        """The targets of issue 17: cold and 2 GiB within 1.2x the curl upload floor of the same run, warm
        commands in fixed wall times (seconds, median of the runs)."""
        out = []
        for w, key, label in (("cold", "cold", "cold"), ("big", "big", "one 2 GiB file")):
            ck, floor = self.median(w, "compose-kfp"), self.median(w, "floor: curl upload")
            name = f"{label} within 1.2x the curl upload floor (issue 17)"
            if ck is None or not floor:
                out.append((name, "not measured", None, key))
                continue
            r = ck / floor
            detail = f"{r:.2f}x ({ck:.2f} s vs {floor:.2f} s)"
            if r > 1.2:
                detail += f"; missed by {ck - 1.2 * floor:.2f} s"
            out.append((name, detail, r <= 1.2, key))
        for w, limit, label in (("edit", 0.4, "one-file edit"), ("nochange", 0.25, "no change"),
                                ("help", 0.15, "`--help`"), ("validate", 0.3, "`validate`"),
                                ("plan", 0.25, "no-op `plan`")):
            ck = self.median(w, "compose-kfp")
            name = f"{label} at most {limit:g} s wall (issue 17)"
            if ck is None:
                out.append((name, "not measured", None, w))
                continue
            detail = f"{ck:.3f} s"
            if ck > limit:
                detail += f"; missed by {ck - limit:.3f} s"
            out.append((name, detail, ck <= limit, w))
        return out

    def src_layer_bytes(self) -> int | None:
        try:
            lock = json.loads((self.project / "kfp.lock").read_text())
        except (OSError, ValueError):
            return None
        found = []

        def walk(v):
            if isinstance(v, dict):
                if v.get("name") == "src" and isinstance(v.get("size"), int):
                    found.append(v["size"])
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
        walk(lock)
        return found[0] if found else None

    # ---------------------------------------------------------------- profiling

    def profile_missed(self) -> None:
        """Profile one compose-kfp run for each cold-workload target missed (edit and no-change were
        profiled in :meth:`project_sequence`)."""
        keys = {key for _, _, met, key in self.targets() if met is False} & {"cold", "build", "base", "big"}
        for key in sorted(keys):
            self.profile(key, fresh=True)

    def profile(self, key: str, *, fresh: bool) -> None:
        """py-spy one compose-kfp run of the workload behind target ``key`` into :attr:`profiles`.

        ``fresh``: start from a fresh registry and a cold project (cold and layer-build profiles);
        otherwise profile on the current state (edit: one more file edit first).
        """
        if key in self.profiles:
            return
        pyspy = shutil.which("py-spy")
        if not pyspy:
            note = ("Targets were missed but py-spy is not installed (`pip install py-spy`), so no profile "
                    "was taken.")
            if note not in self.notes:
                self.notes.append(note)
            return
        print(f"profiling: {key}", file=sys.stderr)
        try:
            self.profiles[key] = self._profile(key, pyspy, fresh)
        except Exception as e:  # the report must still be written
            self.profiles[key] = f"profile failed: {e!r}"

    def _profile(self, key: str, pyspy: str, fresh: bool) -> str:
        workload, tool = {"cold": ("cold", "compose-kfp"), "edit": ("edit", "compose-kfp"),
                          "nochange": ("nochange", "compose-kfp"), "base": ("cold", "compose-kfp"),
                          "build": ("cold", "compose-kfp plan (layer build)"), "big": ("big", "compose-kfp"),
                          "help": ("help", "compose-kfp"), "validate": ("validate", "compose-kfp"),
                          "plan": ("plan", "compose-kfp")}[key]
        if fresh:
            self.restore_edit_file()
            self.fresh_registry()
        ctx = self.ctx("nochange" if workload in WARM_COMMANDS else workload, tool, cold=fresh)
        if workload == "edit":
            self.edit_file()
        command = self.tools[tool].script(ctx)
        if workload in WARM_COMMANDS:
            command = (f"{shlex.quote(sys.executable)} -m compose_kfp -q -f "
                       f"{shlex.quote(str(ctx.project / 'kfp.toml'))} {WARM_COMMANDS[workload]}")
        raw = self.work / f"profile-{key}.txt"
        raw.unlink(missing_ok=True)
        script = (f"{shlex.quote(pyspy)} record --idle --threads --nonblocking -r 200 -f raw -o {shlex.quote(str(raw))} "
                  f"-- {command}")
        s = self.measure(workload, tool, ctx, script=script, keep=False)
        if not raw.exists():
            return f"py-spy wrote no profile (rc={s.returncode}): {s.tail[-500:]}"
        text = summarize_profile(raw, s.seconds)
        if workload in ("edit", "nochange") or workload in WARM_COMMANDS:
            # Start-up cost: which imports the same command spends its time on (python -X importtime).
            if workload == "edit":
                self.edit_file()
            env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
            r = subprocess.run(["bash", "-c", command], cwd=ctx.project, env=env,
                               capture_output=True, text=True)
            text += "\n\n" + summarize_importtime(r.stderr)
        return text


WAITS = ("SocketIO.readinto (socket.py)", "wait (threading.py)", "_worker (thread.py)", "acquire", "select (selectors.py)", "get (queue.py)",
         "_wait_for_tstate_lock", "join (threading.py)", "result (_base.py)", "wait (_base.py)", "as_completed")


def summarize_profile(raw: pathlib.Path, seconds: float, top: int = 10) -> str:
    """Markdown summary of a py-spy ``raw`` file (collapsed stacks, ``--threads --idle``).

    The main thread's samples account for the wall time (one sample every 5 ms, working or
    waiting), so they are broken down by the compose-kfp functions on the stack (inclusive) and by
    where they end (self); module imports are counted apart. Worker threads are reported by their
    busy samples (those not ending in a wait).
    """
    main: list[tuple[list[str], int]] = []
    busy: collections.Counter[str] = collections.Counter()
    busy_leaf: collections.Counter[str] = collections.Counter()
    text = raw.read_text(errors="replace")
    # "thread (ID): NAME" (py-spy does not always read the name): the main thread by its id.
    main_id = next((line.split(":", 1)[0] for line in text.splitlines() if ": MainThread;" in line), None)
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread, n = frames[0], int(count)
        if main_id is not None and thread.split(":", 1)[0] == main_id:
            main.append((frames[1:], n))
            continue
        leaf = _frame(frames[-1]) if len(frames) > 1 else "(no Python frame)"
        if any(w in leaf for w in WAITS):
            continue
        name = thread.split(": ", 1)[-1] if ": " in thread else "unnamed thread"
        busy[name.rstrip("_0123456789")] += n
        busy_leaf[leaf] += n
    total = sum(n for _, n in main)
    if not total:
        return "py-spy recorded no samples of the main thread."
    imports = sum(n for fr, n in main if any("importlib._bootstrap" in f for f in fr))
    ours: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    for fr, n in main:
        leaf[_frame(fr[-1]) if fr else "(no Python frame: interpreter start or native code)"] += n
        seen = set()
        for f in fr:
            name = _frame(f)
            if "compose_kfp" in f and name not in seen:
                seen.add(name)
                ours[name] += n
    ms = 1000 / 200
    reading = [f"importing modules (start-up) takes **{imports / total * 100:.0f}%** of the wall"]
    plan_share = ours.get("plan_project (build/plan.py)", 0) / total
    push_share = ours.get("apply_plan (build/apply.py)", 0) / total
    if plan_share > 0.1 and push_share > 0.1:
        reading.append(f"observing, building and (apply -y) streaming the layers (`plan_project`) "
                       f"{plan_share * 100:.0f}%, then pushing what is left (`apply_plan`) {push_share * 100:.0f}%")
    elif plan_share:
        reading.append(f"`plan_project` (observe, build changed layers) {plan_share * 100:.0f}%")
    if busy_leaf:
        top_busy = ", ".join(f"`{f}` {n / total * 100:.0f}%" for f, n in busy_leaf.most_common(3))
        reading.append(f"worker threads are busy mostly in {top_busy} (shares of the wall)")
    codecs = sum(n for fr, n in main if any("charset_normalizer" in f for f in fr))
    if codecs / total > 0.02:
        reading.append(f"`charset_normalizer` (imported by `requests`) loads every codec module at import: "
                       f"{codecs / total * 100:.0f}%")
    lines = [f"py-spy (200 Hz, all threads, idle included): {seconds:.2f} s wall under the profiler, "
             f"{total} main-thread samples (= {total * ms / 1000:.2f} s).", "",
             "Reading: " + "; ".join(reading) + ".", "",
             "| main thread: compose-kfp function on the stack (inclusive) | share of wall |", "| --- | ---: |"]
    for f, n in ours.most_common(top):
        lines.append(f"| `{f}` | {n / total * 100:.1f}% |")
    lines += ["", "| main thread: where samples end (self) | share of wall |", "| --- | ---: |"]
    for f, n in leaf.most_common(top):
        lines.append(f"| `{f}` | {n / total * 100:.1f}% |")
    if busy:
        lines += ["", "| worker threads: busy samples (not waiting), as a share of the main thread's wall | share |",
                  "| --- | ---: |"]
        for t, n in busy.most_common(5):
            lines.append(f"| {t} | {n / total * 100:.0f}% |")
        lines += ["", "| worker threads: where busy samples end | share of wall |", "| --- | ---: |"]
        for f, n in busy_leaf.most_common(6):
            lines.append(f"| `{f}` | {n / total * 100:.1f}% |")
    return "\n".join(lines)


def summarize_importtime(stderr: str, top: int = 12) -> str:
    """Markdown table of the slowest imports in ``python -X importtime`` output: modules imported at
    nesting level 0 (by the program) and 1 (by those), with cumulative seconds."""
    rows = []
    total = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2][1:]
        level = (len(name) - len(name.lstrip(" "))) // 2
        us = int(parts[1])
        if level == 0:
            total += us
        if level <= 1:
            rows.append((us, level, name.strip()))
    if not rows:
        return "(`python -X importtime` gave no output.)"
    lines = [f"`python -X importtime` on the same command: {total / 1e6:.2f} s importing modules in all. "
             "Slowest imports (cumulative, including what they import; level 0 = imported by the program, "
             "1 = by a level-0 module):", "", "| module | level | seconds |", "| --- | ---: | ---: |"]
    for us, level, name in sorted(rows, reverse=True)[:top]:
        lines.append(f"| `{name}` | {level} | {us / 1e6:.3f} |")
    return "\n".join(lines)


def _frame(f: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = f.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    short = "/".join(file.split("/")[-2:]) if "compose_kfp" in file else file.split("/")[-1]
    return f"{name} ({short})"


# --------------------------------------------------------------------------- report


def _mb(n: int | float | None) -> str:
    if n is None:
        return "-"
    if n < 10_000:
        return f"{int(n)} B"
    if n < 1_000_000:
        return f"{n / 1e3:.1f} kB"
    return f"{n / 1e6:.1f} MB"


def machine() -> dict[str, str]:
    """CPU model, cores, memory, kernel, disk and load of this machine."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    disk = "unknown"
    r = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(peers.WORK.parent)],
                       capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        src, fstype = (r.stdout.split() + ["", ""])[:2]
        disk = f"{src} ({fstype})"
        dev = os.path.basename(src)
        rota = pathlib.Path(f"/sys/block/{dev}/queue/rotational")
        size = pathlib.Path(f"/sys/block/{dev}/size")
        bits = []
        if size.exists():
            bits.append(f"{int(size.read_text()) * 512 / 2**30:.0f} GiB")
        if rota.exists():
            bits.append("reports rotational" if rota.read_text().strip() == "1" else "non-rotational")
        if dev.startswith("vd"):
            bits.append("virtio block device")
        if bits:
            disk += ", " + ", ".join(bits)
    return {"CPU": f"{cpu}, {os.cpu_count()} cores visible (`nproc`: "
                   f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()})",
            "Memory": mem, "Kernel": f"{platform.system()} {platform.release()} ({platform.machine()})",
            "Disk (bench/.work)": disk}


def table(bench: Bench) -> tuple[list[str], list[dict]]:
    """The peer comparison table (Markdown lines) and its rows as data."""
    lines = ["| workload | tool | runs | median s | ratio to compose-kfp | bytes up | bytes down | "
             "base-layer bytes down | peak RSS |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows = []
    for w in WORKLOADS:
        ref = bench.median(w, "compose-kfp")
        for tool in TOOLS:
            ss = bench.of(w, tool)
            ok = [s for s in ss if s.returncode == 0]
            row = {"workload": w, "tool": tool, "runs": len(ss)}
            if (w, tool) in NOT_APPLICABLE:
                cells = ["-", "n/a", "-", "-", "-", "-", "-"]
                row["status"] = "n/a: " + NOT_APPLICABLE[(w, tool)]
                cells[1] = f"n/a ({NOT_APPLICABLE[(w, tool)]})"
            elif tool in bench.skipped:
                cells = ["0", "skipped", "-", "-", "-", "-", "-"]
                row["status"] = "skipped: " + bench.skipped[tool]
            elif not ok:
                cells = [str(len(ss)), "failed", "-", "-", "-", "-", "-"]
                row["status"] = "failed"
            else:
                med = statistics.median(s.seconds for s in ok)
                ratio = (f"{med / ref:.2f}x" if ref else "-") if tool != "compose-kfp" else "1.00x"
                up = statistics.median(s.up for s in ok)
                down = statistics.median(s.down for s in ok)
                base = max(s.base_down for s in ok)
                rss = max(s.max_rss_kib for s in ok) / 1024
                runs = f"{len(ok)}" + (f" ({len(ss) - len(ok)} failed)" if len(ss) != len(ok) else "")
                cells = [runs, f"{med:.2f}", ratio, _mb(up), _mb(down), _mb(base), f"{rss:.0f} MiB"]
                row.update(status="ok", median_s=med, up=up, down=down, base_down=base, peak_rss_mib=rss)
            lines.append(f"| {WORKLOAD_TITLES[w]} | {tool} | " + " | ".join(cells) + " |")
            rows.append(row)
    return lines, rows


#: Short options for the other bench scripts when ``--rerun-sections`` re-runs them.
SECTION_OPTIONS = {
    "bench_layer.py": ("--full",),                         # the 1 GiB tree of the issue
    "bench_deps.py": ("--no-pip", "--repeat", "5"),        # uv only; needs the package index
    "bench_plan.py": (),                                   # 10,000 files / 1 GiB, as issue 4 asks
}


def section_files(rerun: bool, quick: bool) -> list[tuple[str, str, str]]:
    """``(name, when measured, markdown)`` for each ``bench/results/*.md``, re-running the scripts first if asked."""
    if rerun:
        for script in sorted(HERE.glob("bench_*.py")):
            helptext = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
            opts = list(SECTION_OPTIONS.get(script.name, ()))
            if not opts and "--quick" in helptext:
                opts.append("--quick")
            print(f"re-running {script.name} {' '.join(opts)}", file=sys.stderr, flush=True)
            r = subprocess.run([sys.executable, str(script), *opts], cwd=REPO)
            if r.returncode:
                print(f"  {script.name} failed (rc={r.returncode}); its last results are kept", file=sys.stderr)
    out = []
    for path in sorted((HERE / "results").glob("*.md")):
        text = path.read_text().strip()
        committed = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%cI %h", "--", str(path)],
                                   capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", str(path)],
                               capture_output=True, text=True).stdout.strip()
        mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        when = f"file written {mtime}" + (f"; last committed {committed}" if committed and not dirty else
                                          "; not committed yet" if not committed else "; changed since last commit")
        out.append((path.stem, when, text))
    return out


def write_report(bench: Bench, out: pathlib.Path, versions: dict[str, str], sections) -> list[dict]:
    lines, rows = table(bench)
    targets = bench.targets()
    m = machine()
    sz = bench.sizes
    pc = bench.project_counts
    quick = bench.args.quick
    doc = ["# Benchmarks", "",
           "Generated by `python3 bench/run.py` (`make bench`) and rewritten from scratch on every run; do not edit "
           "by hand. " + ("**QUICK MODE: tiny inputs, one run each: these numbers only show that the harness works.**"
                          if quick else ""),
           "", f"Run: {bench.started.strftime('%Y-%m-%d %H:%M UTC')}, {bench.elapsed / 60:.1f} min "
           f"(plus {bench.generate_seconds:.0f} s {'generating' if bench.generated else 'checking'} the inputs).", "",
           "## Machine", ""]
    for k, v in m.items():
        doc.append(f"- {k}: {v}")
    la, lb = bench.load_start, bench.load_end
    doc.append(f"- Load average (1/5/15 min) at start: {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}; at end: "
               f"{lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}.")
    if la[0] > 1.0 or lb[0] > 1.0:
        doc.append("- **The load average was above 1**: other work on the machine, or this command's own earlier "
                   "stages (`--rerun-sections` runs the other bench scripts just before). Check `uptime` before "
                   "comparing runs: figures taken under load are slower, and the tools are not equally affected.")
    doc += ["", "## Versions", "", "| tool | version |", "| --- | --- |"]
    for k, v in versions.items():
        doc.append(f"| {k} | {v} |")
    doc += ["", "## Workloads and method", "",
            f"- Inputs (seeded, `bench/peers.py`): a project with `data/` ({sz.csv_bytes / 1e6:.0f} MB CSV text and "
            f"{sz.bin_bytes / 1e6:.0f} MB random binary, {pc['data_files']} files), `src/` ({pc['src_files']} small "
            f"`.py` files) and `deps/` (a plain folder standing for installed packages: "
            f"{sz.deps_bytes / 1e6:.0f} MB in {pc['deps_files']} `.py` and `.so` files; no installer runs); "
            f"{pc['bytes'] / 1e6:.0f} MB in all. The big workload is one file of {sz.big_bytes / 2**30:.3g} GiB of "
            "random bytes.",
            "- Image: the base below plus `deps/` at `/opt/deps`, `data/` at `/app/data`, `src/` at `/app/src` "
            "(the big file at `/app/model`). compose-kfp makes one layer per folder (three `[[image.layers]]` "
            "`paths` entries); skopeo+umoci one per `umoci insert`; buildah one per commit (the three copies go "
            "into one layer).",
            f"- Base image, already in the registry before each run: {bench.base.description}; one gzip layer of "
            f"{_mb(bench.base.size)}, built with compose-kfp's OCI core (`compose_kfp.oci.layer`) and pushed with "
            "`compose_kfp.oci.registry.push_image` (setup, not timed).",
            "- Registry: CNCF distribution (`docker-registry serve`) on loopback. **Cold** runs each get a fresh, empty "
            "registry holding only the base (so the destination repository is empty and no tool knows blob locations "
            "from earlier runs) and no local state: compose-kfp's `.compose-kfp/` and `kfp.lock` removed, buildah's "
            "storage (`--root`) emptied so `buildah from` pulls the base. **One-file edit**: one line appended to "
            f"`{peers.EDIT_FILE}`, then the same command on the state the cold runs left. **No change**: the same "
            "command again. skopeo+umoci has no cache (the thesis's method copies the base every time).",
            "- compose-kfp: " + bench.ckfp.description + ". Its `plan` on a cold project builds every layer into "
            "the local blob store and pushes nothing: that is the *layer build* row compared with the floor.",
            f"- buildah: `from --tls-verify=false` the base, `copy` each folder, `commit`, `push`, storage driver "
            f"`{getattr(bench.tools['buildah'], 'driver', None) or 'n/a'}`.",
            "- skopeo+umoci: `skopeo copy docker://base oci:layout:image`, `umoci insert` per folder, "
            "`skopeo copy oci:layout:image docker://dest`.",
            f"- Floor: `tar -cf - FOLDERS | {peers.gzip_command()[0]} | tee BLOB | sha256sum` (all folders as one "
            "stream; for the edit, only `src/`, the layer holding the edited file), then `curl` uploads the blob "
            "(`POST /v2/<repo>/blobs/uploads/`, one `PUT <location>&digest=` streaming the file).",
            "- Timing: each run is one `bash` script started and timed by `bench/run.py`; peak RSS is GNU time's "
            "`%M` (`ru_maxrss`: the largest single process of the script's tree: the tool itself, or the largest "
            "stage of the floor's pipeline). Inputs are read once before measuring, so they are in the page cache "
            "for every tool. Median of the runs shown; the *runs* column says how many (the slow peers, which "
            "rebuild everything on every run, get fewer runs on the warm workloads to keep the whole comparison "
            "within 15 minutes).",
            "- Profiles: for each compose-kfp target missed, one more run of that workload under `py-spy record "
            "--idle --threads` (not counted in the table), and for the warm workloads `python -X importtime` of "
            "the same command.",
            "- Bytes: every tool reaches the registry through a counting TCP proxy (`bench/proxy.py`); *bytes up* / "
            "*bytes down* are what crossed it (HTTP headers included); *base-layer bytes down* are response bytes "
            "of `GET` requests for the base image's layer blobs in the registry's access log.",
            "", "## Peer comparison", ""] + lines
    doc += ["", "Ratio to compose-kfp: the tool's median divided by compose-kfp's median for the same workload "
            "(above 1: compose-kfp is faster)."]
    warm = [(key, [s for s in bench.of(key, "compose-kfp") if s.returncode == 0]) for key in WARM_COMMANDS]
    if any(ss for _, ss in warm):
        doc += ["", "## Warm commands (issue 17)", "",
                "On the project the no-change runs left (every layer cached, the image in the registry), "
                "`python3 -m compose_kfp -q -f kfp.toml ...`; bytecode compiled beforehand, as `make deps` does.", "",
                "| command | runs | median s | min s | bytes up | peak RSS |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for key, ss in warm:
            if ss:
                doc.append(f"| {WARM_TITLES[key]} | {len(ss)} | {statistics.median(s.seconds for s in ss):.3f} | "
                           f"{min(s.seconds for s in ss):.3f} | {_mb(max(s.up for s in ss))} | "
                           f"{max(s.max_rss_kib for s in ss) / 1024:.0f} MiB |")
    fails = [s for s in bench.samples if s.returncode]
    if fails:
        doc += ["", "Failed runs (last lines of output):", ""]
        for s in fails[:6]:
            doc += [f"- {s.workload} / {s.tool}, rc {s.returncode}:", "", "```", s.tail[-1500:], "```"]
    doc += ["", "## Targets", "", "| target | measured | status |", "| --- | --- | --- |"]
    for name, detail, met, _ in targets:
        status = "met" if met else ("not measured" if met is None else "**missed**")
        doc.append(f"| {name} | {detail} | {status} |")
    profiles = bench.profiles
    if profiles:
        doc += ["", "## Where the time goes (targets missed)", ""]
        titles = {"cold": "Cold apply", "edit": "One-file edit apply", "nochange": "No-change apply",
                  "base": "Cold apply (base-layer downloads)", "build": "Cold layer build (`plan` on a cold project)",
                  "big": "One 2 GiB file, cold apply", **WARM_TITLES}
        for key, text in profiles.items():
            doc += [f"### {titles[key]}", "", text, ""]
    for note in bench.notes:
        doc += ["", note]
    if sections:
        doc += ["", "## Other benchmarks (from `bench/results/*.md`)", "",
                "Written by the other scripts in `bench/` (`bench_layer.py`, `bench_deps.py`, `bench_plan.py`, ...). "
                + ("They were re-run by this command (`--rerun-sections`)." if bench.args.rerun_sections else
                   "`bench/run.py` includes their last results as they are, with the time they were measured, "
                   "because together they take longer than this command's 15-minute budget on this machine; "
                   "`python3 bench/run.py --rerun-sections` re-runs them first (short options).")]
        for name, when, text in sections:
            doc += ["", f"<!-- bench/results/{name}.md ({when}) -->", "", _demote(text), "",
                    f"*Measured: {when}.*"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(doc).rstrip() + "\n")
    return rows


def _demote(text: str) -> str:
    """Shift the headings of an included section one level down (``#`` -> ``###``, ``##`` -> ``###``)."""
    res = []
    for line in text.splitlines():
        if line.startswith("#"):
            hashes = len(line) - len(line.lstrip("#"))
            line = "#" * max(3, hashes + 1) + line[hashes:]
        res.append(line)
    return "\n".join(res)


def parse_table(markdown: str) -> list[dict[str, str]]:
    """Rows of the peer comparison table in a BENCHMARKS.md written by this script (for tests and tools)."""
    part = markdown.split("## Peer comparison", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in part.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    out = []
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out.append(dict(zip(header, cells)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny inputs, one run each (checks the harness)")
    ap.add_argument("--out", type=pathlib.Path, help="report path (default: BENCHMARKS.md; "
                    "bench/.work/BENCHMARKS.quick.md with --quick)")
    ap.add_argument("--scale", type=float, help="multiply every input size in bytes (not the file count) by this")
    ap.add_argument("--runs", type=int, help="runs per workload for compose-kfp and cold runs of every tool")
    ap.add_argument("--base", choices=("auto", "debootstrap", "synthetic"), default="auto",
                    help="base image (auto: the debootstrap rootfs when cached here, synthetic with --quick)")
    ap.add_argument("--rerun-sections", action="store_true",
                    help="re-run bench/bench_*.py (short options) before including bench/results/*.md")
    ap.add_argument("--no-profile", action="store_true", help="do not profile missed targets with py-spy")
    ap.add_argument("--work", type=pathlib.Path, help="folder for inputs, registries and tool state "
                    "(default: bench/.work)")
    args = ap.parse_args(argv)
    if args.work:
        peers.WORK = args.work.resolve()
    out = args.out or (peers.WORK / "BENCHMARKS.quick.md" if args.quick else REPO / "BENCHMARKS.md")
    bench = Bench(args)
    bench.setup()
    versions = peers.tool_versions()
    sections = section_files(args.rerun_sections, args.quick)
    bench.run_all()
    rows = write_report(bench, out, versions, sections)
    (bench.work / "results.json").write_text(json.dumps({
        "samples": [dataclasses.asdict(s) for s in bench.samples], "rows": rows,
        "targets": [{"target": t, "measured": d, "met": m} for t, d, m, _ in bench.targets()],
        "versions": versions}, indent=1))
    print(f"wrote {out} ({bench.elapsed / 60:.1f} min)", file=sys.stderr)
    ck = [x for x in bench.samples if x.tool.startswith("compose-kfp")]
    if any(x.returncode for x in ck) or any(x.base_down for x in ck):
        print("compose-kfp failed a run or downloaded base-layer bytes: see the report", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
