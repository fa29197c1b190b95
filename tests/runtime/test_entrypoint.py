"""The in-image runtime, run as ``python3 -m compose_kfp.runtime`` in a subprocess.

PYTHONPATH points at a copy of only :func:`compose_kfp.runtime.runtime_files` (laid out as
in the image), and the stdlib-only tests run with ``python -S`` (no site-packages at all)
and, when available, Python 3.8.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compose_kfp.runtime import RUNTIME_ENV, RUNTIME_PREFIX, runtime_files
from compose_kfp.runtime import marshal
from tests.fixtures.paths import DATA



def _find_python38() -> str | None:
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    candidates = [shutil.which("python3.8") or ""]
    for root in filter(None, roots):
        candidates += sorted(glob.glob(os.path.join(root, "versions", "3.8*", "bin", "python3.8")))
    for c in filter(None, candidates):
        try:
            out = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=30)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 8)":
            return c
    return None


PYTHON38 = _find_python38()  # found at import time, before HOME is isolated


@pytest.fixture(scope="module")
def runtime_root(tmp_path_factory) -> Path:
    """A folder holding only the runtime files, at their in-image paths below RUNTIME_PREFIX."""
    root = tmp_path_factory.mktemp("image-root")
    for image_path, src in runtime_files().items():
        dest = root / image_path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return root / RUNTIME_PREFIX.lstrip("/")


@pytest.fixture
def workdir(tmp_path) -> Path:
    """The image's workdir: the step files at their relative paths."""
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    for name in ("typed_steps.py", "ml_steps.py"):
        shutil.copyfile(DATA / name, app / "src" / name)
    return app


class Runner:
    def __init__(self, runtime_root: Path, workdir: Path, python: str = sys.executable, flags=()):
        self.runtime_root, self.workdir, self.python, self.flags = runtime_root, workdir, python, list(flags)

    def __call__(self, ref: str, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        env["PYTHONPATH"] = RUNTIME_ENV["PYTHONPATH"].replace(RUNTIME_PREFIX, str(self.runtime_root))
        cmd = [self.python, *self.flags, "-m", "compose_kfp.runtime", ref, *args]
        return subprocess.run(cmd, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def run_stdlib(runtime_root, workdir):
    """Run under ``python -S``: no site-packages, so only the standard library and the copied runtime exist."""
    return Runner(runtime_root, workdir, flags=["-S"])


@pytest.fixture
def run(runtime_root, workdir):
    """Run with the test interpreter's site-packages (numpy, pandas, ...) but the copied runtime first."""
    return Runner(runtime_root, workdir)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


# ---- packaging --------------------------------------------------------------------------------


def test_runtime_files_layout():
    files = runtime_files()
    assert RUNTIME_ENV == {"PYTHONPATH": RUNTIME_PREFIX} and RUNTIME_PREFIX == "/opt/compose-kfp"
    expected = {f"{RUNTIME_PREFIX}/compose_kfp/{p}" for p in (
        "__init__.py", "types.py", "runtime/__init__.py", "runtime/__main__.py", "runtime/entrypoint.py",
        "runtime/marshal.py", "runtime/notebook.py", "runtime/signature.py")}
    assert set(files) == expected
    assert list(files) == sorted(files)
    assert all(src.is_file() for src in files.values())


#: Imports beyond the standard library a runtime file may make, inside a function only: the notebook runner's
#: papermill comes from the requirements layer compose-kfp adds to images with notebook steps.
_LAYER_IMPORTS = {"runtime/notebook.py": {"papermill"}}


def test_runtime_files_import_only_the_standard_library():
    for image_path, src in runtime_files().items():
        tree = ast.parse(src.read_text(), filename=str(src))
        extra = _LAYER_IMPORTS.get(image_path.split("/compose_kfp/", 1)[1], set())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top in extra and id(node) not in top_level:
                    continue
                assert top in sys.stdlib_module_names or top in ("compose_kfp", "__future__"), (image_path, name)


def test_runtime_parses_with_python38_grammar():
    for src in runtime_files().values():
        ast.parse(src.read_text(), filename=str(src), feature_version=(3, 8))


# ---- values, paths and outputs ------------------------------------------------------------------


def _value_chain(run_step, workdir: Path) -> None:
    out = workdir.parent / "outputs"
    ok(run_step("src/typed_steps.py:make_rows", "--in", "n", "4", "--in", "label", "r: #1", "--in", "shuffle", "True",
                "--out", "rows", str(out / "rows" / "data"), "--out", "output", str(out / "count" / "data")))
    lines = (out / "rows" / "data").read_text().splitlines()
    assert [json.loads(x)["label"] for x in lines] == ["r: #1-3", "r: #1-2", "r: #1-1", "r: #1-0"]
    assert (out / "count" / "data").read_text() == "4"

    ok(run_step("src/typed_steps.py:summarize", "--in", "rows", str(out / "rows" / "data"),
                "--in", "weights", '{"r: #1-1": 10}', "--in", "keep", '["r: #1-0", "r: #1-3"]',
                "--out", "total", str(out / "total"), "--out", "count", str(out / "count2"),
                "--out", "labels", str(out / "labels")))
    assert (out / "total").read_text() == repr(1.5 * 10 + 1.5 * 2 + 1.5 * 3)
    assert (out / "count2").read_text() == "4"
    assert json.loads((out / "labels").read_text()) == ["r: #1-3", "r: #1-0"]

    proc = ok(run_step("src/typed_steps.py:report", "--in", "total", (out / "total").read_text(),
                       "--in", "count", "4", "--in", "labels", (out / "labels").read_text(),
                       "--in", "source", str(out / "rows" / "data"), "--out", "report", str(out / "r" / "x" / "data")))
    size = (out / "rows" / "data").stat().st_size
    assert (out / "r" / "x" / "data").read_text() == f"22.5 4 r: #1-3,r: #1-0 {size}\n"
    assert "running src/typed_steps.py:report" in proc.stderr


def test_value_and_file_chain_with_standard_library_only(run_stdlib, workdir):
    _value_chain(run_stdlib, workdir)


@pytest.mark.skipif(PYTHON38 is None, reason="Python 3.8 not installed")
def test_value_and_file_chain_on_python38(runtime_root, workdir):
    _value_chain(Runner(runtime_root, workdir, python=PYTHON38, flags=["-S"]), workdir)


def test_optional_inputs_use_the_function_defaults(run_stdlib, workdir):
    out = workdir / "o"
    ok(run_stdlib("src/typed_steps.py:make_rows", "--in", "n", "2", "--out", "rows", str(out / "rows"),
                  "--out", "output", str(out / "n")))
    rows = [json.loads(x) for x in (out / "rows").read_text().splitlines()]
    assert rows == [{"label": "row-0", "value": 0.0}, {"label": "row-1", "value": 1.5}]


def test_user_module_sees_its_folder_and_the_workdir_on_sys_path(run_stdlib, workdir):
    (workdir / "src" / "helper.py").write_text("FACTOR = 3\n")
    (workdir / "shared.py").write_text("OFFSET = 1\n")
    (workdir / "src" / "uses_helper.py").write_text(
        "import os\nfrom helper import FACTOR\nfrom shared import OFFSET\n"
        "def go(x: int) -> str:\n    return f'{x * FACTOR + OFFSET} {os.getcwd()}'\n")
    ok(run_stdlib("src/uses_helper.py:go", "--in", "x", "5", "--out", "output", str(workdir / "o")))
    assert (workdir / "o").read_text() == f"16 {workdir}"


def test_async_and_positional_only_functions(run_stdlib, workdir):
    (workdir / "src" / "forms.py").write_text(
        "import asyncio\n"
        "async def slow(x: int) -> int:\n    await asyncio.sleep(0)\n    return x + 1\n"
        "def pos(a: int = 1, b: int = 2, /, *, c: int = 3) -> list:\n    return [a, b, c]\n")
    ok(run_stdlib("src/forms.py:slow", "--in", "x", "41", "--out", "output", str(workdir / "slow")))
    assert (workdir / "slow").read_text() == "42"
    ok(run_stdlib("src/forms.py:pos", "--in", "b", "20", "--out", "output", str(workdir / "pos")))
    assert json.loads((workdir / "pos").read_text()) == [1, 20, 3]


def test_compose_kfp_comes_from_the_runtime_copy(run, workdir, runtime_root):
    (workdir / "src" / "where.py").write_text("import compose_kfp\ndef where() -> str:\n    return compose_kfp.__file__\n")
    ok(run("src/where.py:where", "--out", "output", str(workdir / "w")))
    assert (workdir / "w").read_text() == str(runtime_root / "compose_kfp" / "__init__.py")


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--in", "n", "four"], "input 'n': expected an Integer, got 'four'"),
        (["--in", "n", "4", "--in", "scale", "1,5"], "input 'scale': expected a Float, got '1,5'"),
        (["--in", "n", "4", "--in", "shuffle", "yes"], "input 'shuffle': expected a Boolean (true or false), got 'yes'"),
        (["--in", "n", "4", "--in", "n", "5"], "--in n: given twice"),
        (["--in", "m", "4"], "--in m: make_rows has no input 'm' (inputs: n, scale, label, shuffle)"),
        (["--in", "scale", "2"], "input 'n': required but not given"),
        (["--in", "n"], "--in needs a NAME and a VALUE"),
        (["--in", "n", "4", "extra"], "unexpected argument 'extra'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_input(run_stdlib, workdir, args, message):
    outs = ["--out", "rows", str(workdir / "rows"), "--out", "output", str(workdir / "n")]
    proc = run_stdlib("src/typed_steps.py:make_rows", *(args if "extra" in args or args == ["--in", "n"]
                                                        else args + outs))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_json_names_the_input(run_stdlib, workdir):
    proc = run_stdlib("src/typed_steps.py:summarize", "--in", "rows", str(DATA / "typed_steps.py"),
                      "--in", "keep", '{"not": "a list"}', "--out", "total", "t", "--out", "count", "c",
                      "--out", "labels", "l")
    assert proc.returncode == 2
    assert "input 'keep': expected a JsonArray" in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "usage: python3 -m compose_kfp.runtime"),
        (["src/typed_steps.py"], "is not FILE.py:FUNCTION"),
        (["src/nope.py:f"], "src/nope.py: no such file"),
        (["src/typed_steps.py:nope"], "no top-level function 'nope'"),
        (["src/typed_steps.py:make_rows", "--in", "n", "1", "--out", "rows", "r"], "output 'output': no --out"),
        (["src/typed_steps.py:make_rows", "--in", "n", "1", "--out", "rows", "r", "--out", "output", "o",
          "--out", "zzz", "z"], "--out zzz: make_rows has no output 'zzz'"),
        (["src/typed_steps.py:report", "--in", "total", "1", "--in", "count", "1", "--in", "labels", "[]",
          "--in", "source", "/no/such/file", "--out", "report", "r"], "input 'source': the file /no/such/file does not"),
    ],
)
def test_usage_errors_exit_2(run_stdlib, argv, message):
    proc = run_stdlib(*argv) if argv else run_stdlib("--help")
    assert proc.returncode == 2
    assert message in proc.stderr


def test_failing_step_exits_1_with_traceback(run_stdlib, workdir):
    (workdir / "src" / "bad.py").write_text("def boom(x: int) -> int:\n    return 1 // x\n")
    proc = run_stdlib("src/bad.py:boom", "--in", "x", "0", "--out", "output", str(workdir / "o"))
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ZeroDivisionError: integer division or modulo by zero" in proc.stderr
    assert 'bad.py", line 2, in boom' in proc.stderr
    assert not (workdir / "o").exists()


def test_import_error_of_the_module_exits_1_with_traceback(run_stdlib, workdir):
    (workdir / "src" / "needs.py").write_text("import not_installed_anywhere\ndef f() -> None:\n    pass\n")
    proc = run_stdlib("src/needs.py:f")
    assert proc.returncode == 1
    assert "ModuleNotFoundError: No module named 'not_installed_anywhere'" in proc.stderr


def test_user_sys_exit_code_is_kept(run_stdlib, workdir):
    (workdir / "src" / "ex.py").write_text("import sys\ndef f() -> None:\n    sys.exit(5)\n")
    assert run_stdlib("src/ex.py:f").returncode == 5


def test_missing_output_file_is_an_error(run_stdlib, workdir):
    (workdir / "src" / "lazy.py").write_text(
        "from compose_kfp.types import OutputPath\ndef f(out: OutputPath()) -> None:\n    pass\n")
    proc = run_stdlib("src/lazy.py:f", "--out", "out", str(workdir / "out" / "data"))
    assert proc.returncode == 1
    assert f"output 'out': the function did not write {workdir / 'out' / 'data'}" in proc.stderr
    assert (workdir / "out").is_dir()  # the parent folder was created for the function


@pytest.mark.parametrize(
    ("body", "annotation", "message"),
    [
        ("return 'x'", "int", "output 'output': the function returned str 'x', but the declared type is int"),
        ("return True", "int", "returned bool True"),
        ("return None", "float", "output 'output': the function returned None"),
        ("return {'a': 1}", "list", "returned dict"),
        ("return (1,)", "NamedTuple('O', [('a', int), ('b', int)])", "must return a NamedTuple with fields a, b"),
    ],
)
def test_wrong_return_values_are_errors(run_stdlib, workdir, body, annotation, message):
    (workdir / "src" / "ret.py").write_text(f"from typing import NamedTuple\ndef f() -> {annotation}:\n    {body}\n")
    outs = ["a", "b"] if "NamedTuple" in annotation else ["output"]
    args = [x for o in outs for x in ("--out", o, str(workdir / o))]
    proc = run_stdlib("src/ret.py:f", *args)
    assert proc.returncode == 1
    assert message in proc.stderr


# ---- marshalling --------------------------------------------------------------------------------


def test_object_defined_in_the_step_module_is_pickled_without_joblib(run_stdlib, workdir):
    out = workdir / "out" / "tally"
    ok(run_stdlib("src/typed_steps.py:tally", "--in", "words", '["a", "b", "a"]', "--out", "output", str(out)))
    meta = json.loads((out / marshal.METADATA_FILE).read_text())
    assert meta["format"] == "pickle" and meta["python_type"] == "typed_steps.Tally" and meta["file"] == "data.pkl"
    ok(run_stdlib("src/typed_steps.py:read_tally", "--in", "tally", str(out), "--in", "word", "a",
                  "--out", "output", str(workdir / "n")))
    assert (workdir / "n").read_text() == "2"


def test_object_is_written_with_joblib_when_importable(run, workdir):
    pytest.importorskip("joblib")
    out = workdir / "out" / "tally"
    ok(run("src/typed_steps.py:tally", "--in", "words", '["a", "b", "b"]', "--out", "output", str(out)))
    assert json.loads((out / marshal.METADATA_FILE).read_text())["format"] == "joblib"
    ok(run("src/typed_steps.py:read_tally", "--in", "tally", str(out), "--in", "word", "b",
           "--out", "output", str(workdir / "n")))
    assert (workdir / "n").read_text() == "2"


@pytest.mark.slow
def test_dataframe_array_and_model_pass_between_steps(run, workdir):
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    out = workdir.parent / "outputs"
    ok(run("src/ml_steps.py:make_data", "--in", "n", "8",
           "--out", "frame", str(out / "frame" / "data"), "--out", "matrix", str(out / "matrix" / "data")))
    frame_meta = json.loads((out / "frame" / "data" / marshal.METADATA_FILE).read_text())
    matrix_meta = json.loads((out / "matrix" / "data" / marshal.METADATA_FILE).read_text())
    assert frame_meta["format"] == ("parquet" if _importable("pyarrow") else "pandas-pickle")
    assert frame_meta["python_type"].startswith("pandas.") and frame_meta["python_type"].endswith(".DataFrame")
    assert matrix_meta["format"] == "npy"
    # the reading side of this test process loads them too
    frame = marshal.read_artifact(str(out / "frame" / "data"))
    pd.testing.assert_frame_equal(frame, pd.DataFrame({"x": np.arange(8, dtype=float),
                                                       "label": ["low"] * 4 + ["high"] * 4}))
    assert np.load(out / "matrix" / "data" / "data.npy").tolist() == np.arange(16).reshape(8, 2).tolist()

    ok(run("src/ml_steps.py:fit", "--in", "frame", str(out / "frame" / "data"), "--out", "output",
           str(out / "model" / "data")))
    model_meta = json.loads((out / "model" / "data" / marshal.METADATA_FILE).read_text())
    assert model_meta["format"] == ("joblib" if _importable("joblib") else "pickle")
    assert model_meta["python_type"] == "sklearn.linear_model._logistic.LogisticRegression"

    ok(run("src/ml_steps.py:check", "--in", "model", str(out / "model" / "data"),
           "--in", "frame", str(out / "frame" / "data"), "--in", "matrix", str(out / "matrix" / "data"),
           "--out", "predictions", str(out / "p"), "--out", "matrix_sum", str(out / "s"),
           "--out", "shape", str(out / "shape")))
    assert json.loads((out / "p").read_text()) == ["low"] * 4 + ["high"] * 4
    assert (out / "s").read_text() == str(sum(range(16)))
    assert json.loads((out / "shape").read_text()) == [8, 2]


def test_plain_files_from_other_components_are_recognised(run, workdir):
    np = pytest.importorskip("numpy")
    plain = workdir / "matrix.npy"
    np.save(plain, np.arange(6).reshape(3, 2))
    (workdir / "src" / "arr.py").write_text("import numpy as np\ndef total(a: np.ndarray) -> int:\n"
                                            "    return int(a.sum())\n")
    ok(run("src/arr.py:total", "--in", "a", str(plain), "--out", "output", str(workdir / "t")))
    assert (workdir / "t").read_text() == "15"


@pytest.mark.parametrize("annotation", ["Any", "typing.Any", "object"])
def test_any_input_takes_a_plain_file_as_json_or_text(run_stdlib, workdir, annotation):
    """A literal passed to an `Any` input arrives as a plain file (Argo raw artifact): JSON, else text."""
    imports = "import typing\nfrom typing import Any\n"
    (workdir / "src" / "anyin.py").write_text(
        imports + f"def describe(a: {annotation}) -> str:\n    return type(a).__name__ + ':' + repr(a)\n")
    (workdir / "obj.json").write_text('{"k": 1}')
    (workdir / "words.txt").write_text("plain words\n")
    ok(run_stdlib("src/anyin.py:describe", "--in", "a", str(workdir / "obj.json"), "--out", "output",
                  str(workdir / "o1")))
    assert (workdir / "o1").read_text() == "dict:{'k': 1}"
    ok(run_stdlib("src/anyin.py:describe", "--in", "a", str(workdir / "words.txt"), "--out", "output",
                  str(workdir / "o2")))
    assert (workdir / "o2").read_text() == "str:'plain words\\n'"


def test_unreadable_artifact_input_names_the_input(run_stdlib, workdir):
    (workdir / "not-an-artifact").write_text("hello")
    proc = run_stdlib("src/typed_steps.py:read_tally", "--in", "tally", str(workdir / "not-an-artifact"),
                      "--in", "word", "a", "--out", "output", str(workdir / "n"))
    assert proc.returncode == 2
    assert "input 'tally':" in proc.stderr and "neither a compose-kfp artifact folder" in proc.stderr


def test_artifact_needing_a_missing_library_says_which(run_stdlib, workdir):
    folder = workdir / "frame"
    folder.mkdir()
    (folder / marshal.METADATA_FILE).write_text(json.dumps({"format": "parquet", "file": "data.parquet"}))
    (folder / "data.parquet").write_bytes(b"PAR1")
    proc = run_stdlib("src/typed_steps.py:read_tally", "--in", "tally", str(folder), "--in", "word", "a",
                      "--out", "output", str(workdir / "n"))
    assert proc.returncode == 2
    assert "input 'tally' was written as 'parquet', which needs the Python package 'pyarrow'" in proc.stderr


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def test_dataframe_falls_back_to_pandas_pickle_without_pyarrow(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    real = marshal._optional_module
    monkeypatch.setattr(marshal, "_optional_module", lambda name: None if name == "pyarrow" else real(name))
    frame = pd.DataFrame({"a": [1, 2]})
    meta = marshal.write_artifact(frame, str(tmp_path / "f"))
    assert meta["format"] == "pandas-pickle"
    pd.testing.assert_frame_equal(marshal.read_artifact(str(tmp_path / "f")), frame)


def test_dataframe_parquet_refuses_falls_back_to_pickle(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({1: [1, 2], "b": [3, 4]})  # mixed column name types: parquet refuses
    meta = marshal.write_artifact(frame, str(tmp_path / "f"))
    assert meta["format"] == "pandas-pickle"
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["compose-kfp.json", "data.pkl"]
    pd.testing.assert_frame_equal(marshal.read_artifact(str(tmp_path / "f")), frame)


def test_object_arrays_are_not_npy(tmp_path):
    np = pytest.importorskip("numpy")
    meta = marshal.write_artifact(np.array([{"a": 1}, None], dtype=object), str(tmp_path / "o"))
    assert meta["format"] in ("joblib", "pickle")
    assert marshal.read_artifact(str(tmp_path / "o")).tolist() == [{"a": 1}, None]


def test_write_artifact_replaces_an_existing_output(tmp_path):
    target = tmp_path / "out"
    target.write_text("stale file")
    marshal.write_artifact({"x"}, str(target))
    assert marshal.read_artifact(str(target)) == {"x"}


def test_read_artifact_errors(tmp_path):
    with pytest.raises(marshal.MarshalError, match="input 'a': .* does not exist"):
        marshal.read_artifact(str(tmp_path / "missing"), "input 'a'")
    (tmp_path / "empty").mkdir()
    with pytest.raises(marshal.MarshalError, match="is a folder without compose-kfp.json"):
        marshal.read_artifact(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / marshal.METADATA_FILE).write_text("{not json")
    with pytest.raises(marshal.MarshalError, match="is not valid compose-kfp metadata"):
        marshal.read_artifact(str(tmp_path / "bad"))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / marshal.METADATA_FILE).write_text('{"format": "feather", "file": "x"}')
    with pytest.raises(marshal.MarshalError, match="unknown format 'feather'"):
        marshal.read_artifact(str(tmp_path / "odd"))
