"""End to end: a pipeline with a notebook step, built on the real Debian + python3 base (the notebook layer's
papermill and ipykernel installed from the package index) and run with ``run --local`` by the CLI and by the
Python API (``compose_kfp.run_local``): the executed notebook and the outputs it wrote are checked, and both front
doors give the same outputs."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.e2e import read_outputs
from tests.fixtures.notebooks import SCALE_CELLS, write_notebook

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.registry]

EXECUTOR = "bwrap" if shutil.which("bwrap") else "chroot"

STEPS_PY = '''\
from compose_kfp.types import InputPath


def make(n: int) -> list:
    """The numbers 1..n."""
    return list(range(1, n + 1))


def check(total: float, count: int, report: InputPath()) -> str:
    """What the notebook reported."""
    with open(report) as f:
        return f"{count} values, total {total}, report {f.read()}"
'''


@pytest.fixture(scope="module")
def notebook_project(e2e_cli, e2e_base, registry, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("notebook-e2e")
    write_notebook(root / "notebooks" / "scale.ipynb", SCALE_CELLS)
    (root / "src").mkdir()
    (root / "src" / "steps.py").write_text(STEPS_PY)
    (root / "kfp.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "notebook-e2e"

        [image]
        base = "{e2e_base.reference}"
        repository = "{registry.host}/e2e/notebook"

        [[image.layers]]
        name = "src"
        paths = ["src", "notebooks"]

        [steps.make]
        function = "src/steps.py:make"

        [steps.scale]
        notebook = "notebooks/scale.ipynb"

        [steps.check]
        function = "src/steps.py:check"

        [pipeline]
        name = "notebook-e2e"
        params = {{ n = 4 }}

        [pipeline.tasks.make]
        step = "make"
        args.n = {{ param = "n" }}

        [pipeline.tasks.scale]
        step = "scale"
        args.values = {{ task = "make", output = "output" }}
        args.scale = 0.5
        args.label = "e2e"

        [pipeline.tasks.check]
        step = "check"
        args.total = {{ task = "scale", output = "total" }}
        args.count = {{ task = "scale", output = "count" }}
        args.report = {{ task = "scale", output = "report" }}
        """))
    e2e_cli(root, "apply", "--yes", timeout=1200)
    return root


def _check_run(run_dir: Path) -> dict:
    tasks = read_outputs(run_dir)
    assert [tasks[t]["status"] for t in ("make", "scale", "check")] == ["succeeded"] * 3, tasks
    assert tasks["scale"]["outputs"]["total"] == "5.0" and tasks["scale"]["outputs"]["count"] == "4"
    assert tasks["check"]["outputs"]["output"] == "4 values, total 5.0, report 0.5,1.0,1.5,2.0"
    executed = Path(tasks["scale"]["outputs"]["notebook"])
    assert executed == run_dir / "scale" / "outputs" / "notebook" / "data"
    nb = json.loads(executed.read_text())
    injected = next(c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert "scale = 0.5" in "".join(injected["source"]) and "label = \"e2e\"" in "".join(injected["source"])
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "e2e [0.5, 1.0, 1.5, 2.0]" in printed
    assert all(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")
    return {t: {k: v.replace(str(run_dir), "<run>") for k, v in tasks[t]["outputs"].items()} for t in tasks}


def test_a_notebook_step_runs_locally_with_the_cli_and_the_api(notebook_project, e2e_cli, tmp_path, monkeypatch):
    from compose_kfp import run_local

    plan = e2e_cli.json(notebook_project, "plan")
    layers = [row for image in plan["images"] for p in image["platforms"] for row in p["layers"]]
    assert "notebook-runtime" in {row["name"] for row in layers}
    assert not any(row["action"] != "keep" for row in layers)  # applied: nothing to rebuild

    cli_dir = tmp_path / "cli-run"
    e2e_cli(notebook_project, "run", "--local", "--executor", EXECUTOR, "--run-dir", str(cli_dir), timeout=900)
    by_cli = _check_run(cli_dir)

    # the API, in this process, with the session's cache (the unpacked image) and without printing
    monkeypatch.setenv("XDG_CACHE_HOME", str(e2e_cli.cache_home))
    api_dir = tmp_path / "api-run"
    result = run_local(notebook_project / "kfp.toml", run_dir=api_dir, executor=EXECUTOR)
    assert result.ok and result.run_dir == api_dir
    assert _check_run(api_dir) == by_cli
