"""The notebook runner (compose_kfp/runtime/notebook.py): the interface read from the cells, the refusals naming
the cell, and ``python3 -m compose_kfp.runtime.notebook`` executing a notebook with papermill in a subprocess
(PYTHONPATH: a copy of only the runtime files, laid out as in the image; papermill and ipykernel from the test
interpreter, as the notebook layer brings them into an image)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compose_kfp.runtime import RUNTIME_ENV, RUNTIME_PREFIX
from compose_kfp.runtime.notebook import NotebookError, analyze_notebook
from tests.fixtures.notebooks import SCALE_CELLS, write_notebook
from tests.runtime.test_entrypoint import runtime_root  # noqa: F401 - the fixture: the runtime files alone


def test_the_interface_comes_from_the_parameters_and_outputs_cells(tmp_path):
    sig = analyze_notebook(write_notebook(tmp_path / "nb" / "scale.ipynb", SCALE_CELLS), display_path="nb/scale.ipynb")
    assert [(p.name, p.kind, p.type, p.optional, p.default) for p in sig.parameters] == [
        ("values", "value", "JsonArray", True, [1, 2, 3]), ("scale", "value", "Float", True, 2.0),
        ("label", "value", "String", True, "run"), ("report", "output_path", None, False, None)]
    assert [(o.name, o.kind, o.type, o.source) for o in sig.outputs] == [
        ("report", "output_path", None, "parameter"), ("total", "value", "Float", "field"),
        ("count", "value", "Integer", "field"), ("notebook", "output_path", "JupyterNotebook", "parameter")]
    assert sig.docstring == "Scale the values" and sig.lineno == 2


@pytest.mark.parametrize("cells, text, message", [
    ([("code", "x = 1")], None, r"scale.ipynb: no cell tagged 'parameters': tag the code cell"),
    ([("markdown", "# t"), ("code", "import os\nn: int = 1\nx = 'a'", ["parameters"])], None,
     r"scale.ipynb: cell 2 \(tagged parameters\), line 3: 'x': untyped parameter: give it a type, as `x: str = \.\.\.`"),
    ([("code", "df: pd.DataFrame = None", ["parameters"])], None,
     r"cell 1 \(tagged parameters\), line 1: 'df': type `pd.DataFrame` is not supported"),
    ([("code", "n: int = 'ten'", ["parameters"])], None, r"line 1: 'n': the value 'ten' does not fit the type Integer"),
    ([("code", "n: int = 1\nprint(n)", ["parameters"])], None, r"line 2: the parameters cell may hold only typed"),
    ([("code", "n: int = 1", ["parameters"]), ("code", "m: int = 2", ["parameters"])], None,
     r"cell 2 \(tagged parameters\): a second cell tagged 'parameters' \(the first is cell 1\)"),
    ([("code", "n: int = 1", ["parameters"]), ("code", "n: float", ["outputs"])], None,
     r"cell 2 \(tagged outputs\), line 1: 'n': the name is already an input or output"),
    ([("code", "notebook: str = 'x'", ["parameters"])], None, r"'notebook': the name is taken by the executed"),
    (None, '{"cells": [', r"scale.ipynb: not valid JSON \(line 1, column 12"),
    (None, '{"worksheets": []}', r"not a Jupyter notebook \(no `cells` list"),
])
def test_bad_notebooks_are_refused_naming_the_cell(tmp_path, cells, text, message):
    path = tmp_path / "scale.ipynb"
    if cells is not None:
        write_notebook(path, cells)
    else:
        path.write_text(text)
    with pytest.raises(NotebookError, match=message):
        analyze_notebook(path, display_path="scale.ipynb")


def _run(runtime_root: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = RUNTIME_ENV["PYTHONPATH"].replace(RUNTIME_PREFIX, str(runtime_root))
    return subprocess.run([sys.executable, "-m", "compose_kfp.runtime.notebook", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_runner_executes_the_notebook_and_writes_its_outputs(runtime_root, tmp_path):  # noqa: F811
    pytest.importorskip("papermill")
    pytest.importorskip("ipykernel")
    work = tmp_path / "app"
    write_notebook(work / "nb" / "scale.ipynb", SCALE_CELLS)
    out = tmp_path / "outputs"
    proc = _run(runtime_root, work, "nb/scale.ipynb", "--in", "values", "[1, 2, 5]", "--in", "scale", "1.5",
                "--out", "report", str(out / "report" / "data"), "--out", "total", str(out / "total" / "data"),
                "--out", "count", str(out / "count" / "data"), "--out", "notebook", str(out / "notebook" / "data"))
    assert proc.returncode == 0, proc.stderr
    assert (out / "report" / "data").read_text() == "1.5,3.0,7.5"
    assert (out / "total" / "data").read_text() == "12.0" and (out / "count" / "data").read_text() == "3"
    executed = json.loads((out / "notebook" / "data").read_text())
    tags = [c["metadata"].get("tags", []) for c in executed["cells"]]
    assert ["injected-parameters"] in tags and not any("compose-kfp-outputs" in t for t in tags)
    injected = next(c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert "scale = 1.5" in "".join(injected["source"]) and "values = [1, 2, 5]" in "".join(injected["source"])
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "run [1.5, 3.0, 7.5]" in printed  # the default of `label` was kept
    assert executed["metadata"]["papermill"]["parameters"]["scale"] == 1.5


@pytest.mark.slow
def test_a_failing_cell_exits_1_and_keeps_the_executed_notebook(runtime_root, tmp_path):  # noqa: F811
    pytest.importorskip("papermill")
    work = tmp_path / "app"
    write_notebook(work / "boom.ipynb", [("code", "n: int = 1", ["parameters"]), ("code", "raise ValueError(n)"),
                                        ("code", "x: int", ["outputs"])])
    out = tmp_path / "outputs"
    proc = _run(runtime_root, work, "boom.ipynb", "--in", "n", "7", "--out", "x", str(out / "x"),
                "--out", "notebook", str(out / "nb.ipynb"))
    assert proc.returncode == 1
    assert "boom.ipynb failed in cell 2: ValueError: 7" in proc.stderr  # the notebook's cell 2 (not counting
    # papermill's injected cell)
    executed = json.loads((out / "nb.ipynb").read_text())
    assert any(o.get("ename") == "ValueError" for c in executed["cells"] for o in c.get("outputs", []))
    assert not (out / "x").exists()
    # an output the notebook never sets: the capture cell fails, naming the output
    write_notebook(work / "unset.ipynb", [("code", "n: int = 1", ["parameters"]), ("code", "x: int", ["outputs"])])
    proc = _run(runtime_root, work, "unset.ipynb", "--out", "x", str(out / "x"), "--out", "notebook",
                str(out / "nb3.ipynb"))
    assert proc.returncode == 1 and "failed writing the outputs of its outputs cell" in proc.stderr
    assert "output 'x': the notebook never set the variable x" in proc.stderr
    # a bad value is a usage error (exit 2) naming the input, before any kernel starts
    proc = _run(runtime_root, work, "boom.ipynb", "--in", "n", "seven", "--out", "x", str(out / "x"),
                "--out", "notebook", str(out / "nb2.ipynb"))
    assert proc.returncode == 2 and "input 'n': expected an Integer" in proc.stderr
    assert not (out / "nb2.ipynb").exists()
