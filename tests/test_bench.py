"""The benchmark harness (bench/run.py, bench/peers.py, bench/proxy.py) works end to end.

The full comparison is not part of the suite (it takes ~15 minutes); ``--quick`` runs every
tool on tiny inputs once, against a real registry, and the test reads the report it wrote.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import peers  # noqa: E402
import run  # noqa: E402
from proxy import CountingProxy  # noqa: E402


def _tree_digest(root: pathlib.Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def test_workload_is_deterministic_and_sized(tmp_path):
    sizes = peers.Sizes(csv_bytes=300_000, bin_bytes=200_000, src_files=30, deps_bytes=200_000, big_bytes=1 << 20)
    a = peers.generate_project(tmp_path / "a", sizes)
    b = peers.generate_project(tmp_path / "b", sizes)
    assert a == b
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert a["src_files"] == 30 + 20  # modules + one __init__.py per package
    assert peers.tree_bytes(tmp_path / "a" / "data") == 500_000
    assert peers.tree_bytes(tmp_path / "a" / "deps") == 200_000
    assert (tmp_path / "a" / peers.EDIT_FILE).is_file()
    peers.generate_big(tmp_path / "c", 1 << 20)
    assert (tmp_path / "c" / "model" / "weights.bin").stat().st_size == 1 << 20


def test_proxy_counts_bytes_both_ways():
    body = os.urandom(300_000)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_PUT(self):
            n = int(self.headers["Content-Length"])
            got = self.rfile.read(n)
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if got else b"")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = CountingProxy(("127.0.0.1", server.server_address[1])).start()
    try:
        payload = os.urandom(1_000_000)
        req = urllib.request.Request(f"http://{proxy.host}/x", data=payload, method="PUT")
        with urllib.request.urlopen(req) as resp:
            assert resp.read() == body
        up, down = proxy.take()
        assert len(payload) < up < len(payload) + 2000   # body plus request headers
        assert len(body) < down < len(body) + 2000
        assert proxy.take() == (0, 0)
    finally:
        proxy.stop()
        server.shutdown()


def test_timed_reports_peak_rss_of_the_command(tmp_path):
    small = peers.timed("true", cwd=tmp_path, log=tmp_path / "log")
    big = peers.timed(f"{sys.executable} -c 'b = bytearray(200 << 20); b[::4096] = b\"x\" * len(b[::4096])'",
                      cwd=tmp_path, log=tmp_path / "log")
    assert small.returncode == big.returncode == 0
    assert big.max_rss_kib > 200 * 1024
    if peers.TIME_BIN:  # without GNU time the figure includes this process's own size
        assert small.max_rss_kib < 50 * 1024
    failed = peers.timed("echo oops; exit 3", cwd=tmp_path, log=tmp_path / "log")
    assert failed.returncode == 3 and "oops" in failed.tail


def test_profile_summaries_read_py_spy_and_importtime_output(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "thread (7): MainThread;<module> (compose_kfp/__main__.py:6);plan (compose_kfp/planner.py:10) 30\n"
        "thread (7);<module> (compose_kfp/__main__.py:6);_find_and_load (<frozen importlib._bootstrap>:1) 10\n"
        "thread (9): layer-tar;_iter_tar (compose_kfp/oci/layer.py:600) 20\n"
        "thread (9): layer-tar;wait (threading.py:320) 50\n")
    text = run.summarize_profile(raw, 0.2)
    assert "40 main-thread samples" in text and "**25%**" in text  # 10 of 40 samples import
    assert "| `plan (compose_kfp/planner.py)` | 75.0% |" in text
    assert "| layer-tar | 50% |" in text  # busy samples only, against the main thread's 40
    it = ("import time: self [us] | cumulative | imported package\n"
          "import time:       100 |        100 |   sub\n"
          "import time:       200 |     500000 | compose_kfp.cli\n")
    table = run.summarize_importtime(it)
    assert "0.50 s importing" in table and "| `compose_kfp.cli` | 0 | 0.500 |" in table


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("docker-registry"), reason="docker-registry is not installed")
def test_quick_run_writes_every_workload_and_tool(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--no-profile",
                        "--work", str(tmp_path / "work"), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    for heading in ("## Machine", "## Versions", "## Peer comparison", "## Targets"):
        assert heading in text
    for tool in ("compose-kfp", "python", "isal", "buildah", "skopeo", "umoci", "docker-registry", "curl",
                 "pigz/gzip"):
        assert f"| {tool} |" in text
    rows = run.parse_table(text)
    seen = {(row["workload"], row["tool"]) for row in rows}
    expected = {(run.WORKLOAD_TITLES[w], t) for w in run.WORKLOADS for t in run.TOOLS}
    assert seen == expected and len(rows) == len(expected)
    by = {(row["workload"], row["tool"]): row for row in rows}
    for w in run.WORKLOADS:
        ck = by[(run.WORKLOAD_TITLES[w], "compose-kfp")]
        assert float(ck["median s"]) > 0, ck
        assert ck["base-layer bytes down"] == "0 B", ck
        assert ck["ratio to compose-kfp"] == "1.00x"
    cold = by[(run.WORKLOAD_TITLES["cold"], "compose-kfp")]
    assert cold["bytes up"] != "0 B"
    for peer in ("buildah", "skopeo+umoci", "floor: tar + gzip + sha256sum", "floor: curl upload"):
        row = by[(run.WORKLOAD_TITLES["cold"], peer)]
        if row["median s"] != "skipped":
            assert float(row["median s"]) > 0, row
            assert row["ratio to compose-kfp"].endswith("x")
    # A peer that extends the base downloads its layers; compose-kfp never does.
    if by[(run.WORKLOAD_TITLES["cold"], "buildah")]["median s"] != "skipped":
        assert by[(run.WORKLOAD_TITLES["cold"], "buildah")]["base-layer bytes down"] != "0 B"
    assert "one-file edit uploads only the changed layer + config + manifest" in text
    assert "| zero base-layer bytes downloaded in every workload |" in text
    assert "QUICK MODE" in text


def test_a_stopped_proxy_never_takes_another_proxys_connections():
    """Regression: a stopped proxy's accept thread must not accept on a reused descriptor."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for _ in range(20):
            proxy = CountingProxy(("127.0.0.1", server.server_address[1])).start()
            for _ in range(3):
                with urllib.request.urlopen(f"http://{proxy.host}/") as resp:
                    assert resp.read() == b"ok"
            assert not proxy.errors
            proxy.stop()
    finally:
        server.shutdown()
