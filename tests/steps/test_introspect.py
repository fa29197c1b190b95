"""Introspection of step functions: every annotation form, docstrings, and every refusal."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compose_kfp.steps.component import InputSpec, OutputSpec
from compose_kfp.errors import StepError
from compose_kfp.steps.introspect import RETURN_OUTPUT, function_component, parse_docstring
from compose_kfp.runtime.signature import analyze_source
from tests.fixtures.paths import EXAMPLES as EXAMPLES_DIR


def component(tmp_path: Path, source: str, function: str = "step", *, file: str = "src/steps.py"):
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return function_component(tmp_path, f"{file}:{function}", step_name="my-step")


HEADER = """\
import pathlib
import typing
import typing as t
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Union
import pandas as pd
import numpy
from compose_kfp.types import InputPath, OutputPath
from compose_kfp import types as ck
from kfp.components import InputPath as KfpInputPath
from kfp import dsl
"""


@pytest.mark.parametrize(
    ("annotation", "kind", "type_name"),
    [
        ("int", "inputValue", "Integer"),
        ("float", "inputValue", "Float"),
        ("str", "inputValue", "String"),
        ("bool", "inputValue", "Boolean"),
        ("list", "inputValue", "JsonArray"),
        ("List", "inputValue", "JsonArray"),
        ("List[int]", "inputValue", "JsonArray"),
        ("list[str]", "inputValue", "JsonArray"),
        ("typing.List[float]", "inputValue", "JsonArray"),
        ("t.List[Dict[str, int]]", "inputValue", "JsonArray"),
        ("dict", "inputValue", "JsonObject"),
        ("Dict", "inputValue", "JsonObject"),
        ("Dict[str, float]", "inputValue", "JsonObject"),
        ("dict[str, list[int]]", "inputValue", "JsonObject"),
        ("'int'", "inputValue", "Integer"),
        ("typing.Annotated[int, 'meta']", "inputValue", "Integer"),
        ("InputPath", "inputPath", None),
        ("InputPath()", "inputPath", None),
        ("InputPath('CSV')", "inputPath", "CSV"),
        ("ck.InputPath('Model')", "inputPath", "Model"),
        ("KfpInputPath('CSV')", "inputPath", "CSV"),
        ("dsl.InputPath('Dataset')", "inputPath", "Dataset"),
        ("Path", "inputPath", None),
        ("pathlib.Path", "inputPath", None),
        ("pd.DataFrame", "inputPath", "DataFrame"),
        ("numpy.ndarray", "inputPath", "ndarray"),
        ("'pd.DataFrame'", "inputPath", "DataFrame"),
        ("Any", "inputPath", None),
        ("object", "inputPath", None),
        ("set", "inputPath", "set"),
        ("Model", "inputPath", "Model"),  # a class of the module itself
    ],
)
def test_parameter_annotation_forms(tmp_path, annotation, kind, type_name):
    spec = component(tmp_path, HEADER + f"class Model: pass\ndef step(x: {annotation}):\n    pass\n")
    assert spec.inputs == (InputSpec(name="x", type=type_name),)
    assert spec.outputs == ()
    assert spec.args == ("--in", "x", {kind: "x"})
    assert spec.input_usage("x") == ("value" if kind == "inputValue" else "path")


@pytest.mark.parametrize(
    ("annotation", "type_name"),
    [
        ("Optional[int]", "Integer"),
        ("typing.Optional[str]", "String"),
        ("Union[float, None]", "Float"),
        ("Union[None, bool]", "Boolean"),
        ("int | None", "Integer"),
        ("None | List[int]", "JsonArray"),
        ("'Optional[Dict[str, int]]'", "JsonObject"),
        ("Optional[InputPath('CSV')]", "CSV"),
        ("Optional[pd.DataFrame]", "DataFrame"),
    ],
)
def test_optional_forms_make_an_optional_input_wrapped_in_is_present(tmp_path, annotation, type_name):
    spec = component(tmp_path, HEADER + f"def step(x: {annotation} = None):\n    pass\n")
    (inp,) = spec.inputs
    assert (inp.type, inp.default, inp.optional, inp.required) == (type_name, None, True, False)
    placeholder = "inputValue" if type_name in ("Integer", "String", "Float", "Boolean", "JsonArray",
                                                 "JsonObject") else "inputPath"
    assert spec.args == ({"if": {"cond": {"isPresent": "x"}, "then": ["--in", "x", {placeholder: "x"}]}},)


def test_optional_without_default_is_a_required_input(tmp_path):
    # as KFP's create_component_from_func and @dsl.component make it: Python has nothing to call f() with otherwise
    spec = component(tmp_path, HEADER + "def step(x: Optional[int], y: Optional[str] = None):\n    pass\n")
    assert [(i.name, i.type, i.optional, i.required) for i in spec.inputs] == [
        ("x", "Integer", False, True), ("y", "String", True, False)]
    assert spec.args == ("--in", "x", {"inputValue": "x"},
                         {"if": {"cond": {"isPresent": "y"}, "then": ["--in", "y", {"inputValue": "y"}]}})


def test_validate_asks_for_an_optional_without_default(tmp_path):
    from tests.fixtures.cli import VALID, run, write_cli_project

    write_cli_project(tmp_path, VALID.replace('args.x = { param = "x" }\n', ""))
    (tmp_path / "src" / "steps.py").write_text(
        "from typing import Optional\n\n\ndef double(n: Optional[int]) -> str:\n    return str(n)\n")
    code, out, err = run("-C", str(tmp_path), "validate")
    assert code == 1, out
    assert "pipeline.tasks.double.args: required input 'n' of step 'double' has no argument" in err


@pytest.mark.parametrize(
    ("declaration", "default"),
    [
        ("x: int = 100", "100"),
        ("x: int = -3", "-3"),
        ("x: float = 0.3", "0.3"),
        ("x: float = 2", "2.0"),
        ("x: bool = True", "true"),
        ("x: bool = False", "false"),
        ("x: str = 'a: b # c'", "a: b # c"),
        ("x: str = ''", ""),
        ("x: list = [1, 'two', None]", '[1, "two", null]'),
        ("x: List[int] = (1, 2)", "[1, 2]"),
        ("x: dict = {'a': {'b': [1.5]}}", '{"a": {"b": [1.5]}}'),
    ],
)
def test_defaults_become_kfp_v1_default_strings(tmp_path, declaration, default):
    spec = component(tmp_path, HEADER + f"def step({declaration}):\n    pass\n")
    (inp,) = spec.inputs
    assert inp.default == default
    assert not inp.required
    assert spec.args[0]["if"]["cond"] == {"isPresent": "x"}


def test_non_literal_default_is_optional_without_component_default(tmp_path):
    spec = component(tmp_path, HEADER + "SEED = 7\ndef step(seed: int = SEED, p: Path = Path('x')):\n    pass\n")
    assert [(i.name, i.default, i.optional) for i in spec.inputs] == [("seed", None, True), ("p", None, True)]


def test_keyword_only_and_positional_only_parameters(tmp_path):
    spec = component(tmp_path, "def step(a: int, /, b: str, *, c: float = 1.0, d: bool):\n    pass\n")
    assert [i.name for i in spec.inputs] == ["a", "b", "c", "d"]
    assert [i.required for i in spec.inputs] == [True, True, False, True]


def test_output_path_parameters_are_outputs(tmp_path):
    spec = component(tmp_path, HEADER + textwrap.dedent("""\
        def step(data: InputPath('CSV'), n: int = 3, model: OutputPath('Model') = '',
                 log: ck.OutputPath = None, other: dsl.OutputPath()  = None):
            pass
        """))
    assert [i.name for i in spec.inputs] == ["data", "n"]
    assert spec.outputs == (OutputSpec("model", "Model"), OutputSpec("log", None), OutputSpec("other", None))
    assert spec.args[-9:] == ("--out", "model", {"outputPath": "model"}, "--out", "log", {"outputPath": "log"},
                              "--out", "other", {"outputPath": "other"})


@pytest.mark.parametrize(
    ("returns", "outputs"),
    [
        ("int", [(RETURN_OUTPUT, "Integer")]),
        ("float", [(RETURN_OUTPUT, "Float")]),
        ("str", [(RETURN_OUTPUT, "String")]),
        ("bool", [(RETURN_OUTPUT, "Boolean")]),
        ("List[str]", [(RETURN_OUTPUT, "JsonArray")]),
        ("dict", [(RETURN_OUTPUT, "JsonObject")]),
        ("pd.DataFrame", [(RETURN_OUTPUT, "DataFrame")]),
        ("'numpy.ndarray'", [(RETURN_OUTPUT, "ndarray")]),
        ("Any", [(RETURN_OUTPUT, None)]),
        ("None", []),
        ("NamedTuple('Out', [('a', int), ('b', pd.DataFrame)])", [("a", "Integer"), ("b", "DataFrame")]),
        ("typing.NamedTuple('Out', a=float, b=List[int])", [("a", "Float"), ("b", "JsonArray")]),
        ("Split", [("train", "DataFrame"), ("rows", "Integer")]),
        ("Pair", [("left", "String"), ("right", "JsonObject")]),
    ],
)
def test_return_forms(tmp_path, returns, outputs):
    source = HEADER + textwrap.dedent("""\
        class Split(NamedTuple):
            train: pd.DataFrame
            rows: int
        Pair = NamedTuple('Pair', [('left', str), ('right', dict)])
        """) + f"def step() -> {returns}:\n    pass\n"
    spec = component(tmp_path, source)
    assert [(o.name, o.type) for o in spec.outputs] == outputs
    assert spec.inputs == ()
    assert list(spec.args) == [a for name, _ in outputs for a in ("--out", name, {"outputPath": name})]


def test_no_return_annotation_and_no_value_returned_means_no_outputs(tmp_path):
    spec = component(tmp_path, "def step(x: int):\n    def inner():\n        return 1\n    return\n")
    assert spec.outputs == ()


def test_command_and_source_fields(tmp_path):
    spec = component(tmp_path, "def step(x: int) -> int:\n    return x\n", file="pkg/sub/mod.py")
    assert spec.command == ("python3", "-m", "compose_kfp.runtime", "pkg/sub/mod.py:step")
    assert spec.python_function == "pkg/sub/mod.py:step"
    assert spec.source == "pkg/sub/mod.py:step"
    assert spec.name == "my-step"
    assert spec.image is None


def test_async_function_is_accepted(tmp_path):
    spec = component(tmp_path, "async def step(x: int) -> int:\n    return x\n")
    assert [i.name for i in spec.inputs] == ["x"]


def test_last_definition_wins(tmp_path):
    spec = component(tmp_path, "def step(a: int):\n    pass\ndef step(b: str):\n    pass\n")
    assert [i.name for i in spec.inputs] == ["b"]


def test_google_docstring(tmp_path):
    spec = component(tmp_path, HEADER + textwrap.dedent('''\
        def step(data: pd.DataFrame, n: int = 1, out: OutputPath('CSV') = '') -> NamedTuple('O', [('acc', float), ('n_rows', int)]):
            """Train the model: fast.
            Second line of the summary.

            More details that are not the description.

            Args:
                data: training rows; one per
                    sample, continued here.
                n (int): number of trees.
                out: where the CSV goes.

            Returns:
                acc: the accuracy.
                n_rows: rows seen.

            Raises:
                ValueError: never.
            """
        '''))
    assert spec.description == "Train the model: fast. Second line of the summary."
    assert [(i.name, i.description) for i in spec.inputs] == [
        ("data", "training rows; one per sample, continued here."), ("n", "number of trees.")]
    assert [(o.name, o.description) for o in spec.outputs] == [
        ("out", "where the CSV goes."), ("acc", "the accuracy."), ("n_rows", "rows seen.")]


def test_numpy_docstring(tmp_path):
    spec = component(tmp_path, HEADER + textwrap.dedent('''\
        def step(alpha: float, beta: str = "x") -> float:
            """Fit a curve.

            Parameters
            ----------
            alpha : float
                Learning rate,
                in (0, 1).
            beta : str, optional
                A label.

            Returns
            -------
            float
                The loss.
            """
        '''))
    assert spec.description == "Fit a curve."
    assert [(i.name, i.description) for i in spec.inputs] == [("alpha", "Learning rate, in (0, 1)."),
                                                             ("beta", "A label.")]
    assert spec.outputs[0].description == "The loss."


def test_google_plain_returns_describes_the_single_output():
    doc = parse_docstring("Do it.\n\nReturns:\n    The fitted model,\n    ready to use.")
    assert doc.returns == "The fitted model, ready to use."
    assert parse_docstring(None).summary is None
    assert parse_docstring("Args:\n    x: only args").summary is None


# ---- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "parameter", "message"),
    [
        ("def step(x):\n    pass\n", 1, "x", "missing type annotation"),
        ("def step(a: int,\n         b):\n    pass\n", 2, "b", "missing type annotation"),
        ("def step(*args: int):\n    pass\n", 1, "*args", r"\*args cannot be a component input"),
        ("def step(a: int, **kw: str):\n    pass\n", 1, "**kw", r"\*\*kwargs cannot be a component input"),
        ("def step(x: DataFrame):\n    pass\n", 1, "x", "unknown name 'DataFrame'"),
        ("def step(x: pd.DataFrame):\n    pass\n", 1, "x", "unknown name 'pd'"),
        ("from typing import List\ndef step(x: Lst[int]):\n    pass\n", 2, "x", "unknown name 'Lst'.*did you mean 'List'"),
        ("from typing import Union\ndef step(x: Union[int, str]):\n    pass\n", 2, "x", "Union of several types"),
        ("def step(x: int | str):\n    pass\n", 1, "x", "union of several types"),
        ("from typing import Optional\ndef step(x: Optional):\n    pass\n", 2, "x", "needs a type argument"),
        ("def step(x: None):\n    pass\n", 1, "x", "None is not a type"),
        ("def step(x: int = 'a'):\n    pass\n", 1, "x", "default 'a' is not a valid Integer"),
        ("def step(x: bool = 1):\n    pass\n", 1, "x", "default 1 is not a valid Boolean"),
        ("def step(x: str = 3):\n    pass\n", 1, "x", "default 3 is not a valid String"),
        ("def step(x: 'not valid(('):\n    pass\n", 1, "x", "is not a valid expression"),
        ("def step(x: make_type()):\n    pass\ndef make_type():\n    pass\n", 1, "x", "only InputPath"),
        ("from compose_kfp.types import InputPath\nN='CSV'\ndef step(x: InputPath(N)):\n    pass\n", 3, "x",
         "must be a string literal"),
        ("from compose_kfp.types import InputPath\ndef step(x: list[InputPath]):\n    pass\n", 2, "x",
         "cannot be used inside a container type"),
        ("from typing import Optional\nfrom compose_kfp.types import OutputPath\n"
         "def step(x: Optional[OutputPath] = None):\n    pass\n", 3, "x", "an output cannot be Optional"),
        ("def step():\n    return 42\n", 2, "return", "returns a value but has no return annotation"),
        ("from typing import Optional\ndef step() -> Optional[int]:\n    pass\n", 2, "return",
         "an output cannot be Optional"),
        ("from compose_kfp.types import OutputPath\ndef step() -> OutputPath:\n    pass\n", 2, "return",
         "can only annotate a parameter"),
        ("from pathlib import Path\ndef step() -> Path:\n    pass\n", 2, "return", "can only annotate a parameter"),
        ("from typing import NamedTuple\ndef step() -> NamedTuple('O', [('a', int), ('b', Frame)]):\n    pass\n",
         2, "b", "unknown name 'Frame'"),
        ("from typing import NamedTuple\nfrom compose_kfp.types import InputPath\n"
         "def step() -> NamedTuple('O', [('a', InputPath)]):\n    pass\n", 3, "a", "can only annotate a parameter"),
        ("from typing import NamedTuple\ndef step() -> NamedTuple('O', []):\n    pass\n", 2, "return",
         "has no fields"),
        ("from typing import NamedTuple\nF = [('a', int)]\ndef step() -> NamedTuple('O', F):\n    pass\n", 3,
         "return", "literal list"),
        ("import collections\nPair = collections.namedtuple('Pair', 'a b')\ndef step() -> Pair:\n    pass\n", 2,
         "return", "has no field types"),
        ("from typing import NamedTuple\nclass O(NamedTuple):\n    pass\ndef step() -> O:\n    pass\n", 2,
         "return", "has no annotated fields"),
        ("from typing import NamedTuple\nfrom compose_kfp.types import OutputPath\n"
         "def step(a: OutputPath) -> NamedTuple('O', [('a', int)]):\n    pass\n", 3, "a", "two outputs are named 'a'"),
        ("from compose_kfp.types import OutputPath\ndef step(output: OutputPath) -> int:\n    pass\n", 2, "output",
         "two outputs are named 'output'"),
    ],
)
def test_refusals_name_file_line_and_parameter(tmp_path, source, line, parameter, message):
    with pytest.raises(StepError) as err:
        component(tmp_path, source)
    text = str(err.value)
    assert text.startswith(f"steps.my-step.function: src/steps.py:{line}: parameter '{parameter}': "), text
    assert __import__("re").search(message, text), text


def test_input_and_output_with_the_same_name_is_refused(tmp_path):
    with pytest.raises(StepError, match=r"src/steps.py:2: output 'x' has the same name as an input"):
        component(tmp_path, "from typing import NamedTuple\ndef step(x: int) -> NamedTuple('O', [('x', int)]):\n"
                            "    pass\n")


def test_missing_function_suggests_a_close_name(tmp_path):
    with pytest.raises(StepError, match=r"src/steps.py: no top-level function 'trian' \(did you mean 'train'\?\); "
                                        r"functions defined here: evaluate, train"):
        component(tmp_path, "def train():\n    pass\ndef evaluate():\n    pass\n", function="trian")


def test_nested_function_is_not_a_step(tmp_path):
    with pytest.raises(StepError, match="no top-level function 'inner'"):
        component(tmp_path, "def outer():\n    def inner():\n        pass\n", function="inner")


def test_syntax_error_names_the_line(tmp_path):
    with pytest.raises(StepError, match=r"src/steps.py:2: not valid Python"):
        component(tmp_path, "def step():\n    return (\n")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("src/steps.py", "is not 'path/to/file.py:function'"),
        ("src/steps.py:", "is not 'path/to/file.py:function'"),
        ("src/steps.py:not-a-name", "is not a Python function name"),
        ("src/steps.txt:step", "is not a .py file"),
        ("../steps.py:step", "without '..'"),
        ("/abs/steps.py:step", "must be a path relative"),
        ("src/missing.py:step", "src/missing.py does not exist"),
    ],
)
def test_bad_function_references(tmp_path, ref, message):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "steps.py").write_text("def step():\n    pass\n")
    with pytest.raises(StepError, match=message) as err:
        function_component(tmp_path, ref, step_name="s")
    assert str(err.value).startswith("steps.s.function: ")


def test_star_import_lets_unknown_names_through_as_artifacts():
    sig = analyze_source("from somewhere import *\ndef step(x: Frame) -> Model:\n    pass\n", "step")
    assert [(p.name, p.kind, p.type) for p in sig.parameters] == [("x", "artifact", "Frame")]
    assert [(o.name, o.kind, o.type) for o in sig.outputs] == [("output", "artifact", "Model")]


def test_imports_under_if_type_checking_and_try_are_seen():
    sig = analyze_source(textwrap.dedent("""\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import pandas as pd
        try:
            import numpy as np
        except ImportError:
            np = None
        def step(a: 'pd.DataFrame', b: 'np.ndarray'):
            pass
        """), "step")
    assert [p.type for p in sig.parameters] == ["DataFrame", "ndarray"]


def test_iris_example_interfaces():
    root = EXAMPLES_DIR / "iris"
    if not (root / "src" / "iris.py").is_file():
        pytest.skip("examples/iris not present")
    load = function_component(root, "src/iris.py:load_data", step_name="load")
    assert [(i.name, i.type, i.default) for i in load.inputs] == [("test_size", "Float", "0.3"),
                                                                  ("seed", "Integer", "7")]
    assert [(o.name, o.type) for o in load.outputs] == [("train_set", "DataFrame"), ("test_set", "DataFrame"),
                                                        ("n_rows", "Integer")]
    train = function_component(root, "src/iris.py:train", step_name="train")
    assert [(o.name, o.type) for o in train.outputs] == [("output", "RandomForestClassifier")]
    assert train.input_usage("dataset") == "path"
