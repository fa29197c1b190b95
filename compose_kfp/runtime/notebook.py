"""Notebook steps: read a notebook's interface (standard library only) and run it in the image with papermill.

Usage (what a rendered notebook component's ``command`` + ``args`` produce)::

    python3 -m compose_kfp.runtime.notebook notebooks/analysis.ipynb \\
        --in n 10 --in data /tmp/inputs/data/data \\
        --out report /tmp/outputs/report/data --out accuracy /tmp/outputs/accuracy/data \\
        --out notebook /tmp/outputs/notebook/data

The interface follows papermill's conventions, with types (:func:`analyze_notebook`, shared with
``compose_kfp.steps.notebook`` at plan time, as :mod:`.signature` is for functions):

- the code cell tagged ``parameters`` holds one typed assignment per input, ``n: int = 10``
  (``int`` ``float`` ``str`` ``bool`` ``list`` ``dict``, ``Optional[...]``), the value being the default
  (a literal becomes the component's default; any other expression is the notebook's own default, so the
  input is optional); ``data: InputPath = "data.csv"`` is a file input (the notebook gets its path) and
  ``report: OutputPath = "report.html"`` a file output (the notebook gets the path to write); imports,
  comments and docstrings may stand between them;
- an optional code cell tagged ``outputs`` declares value outputs, ``accuracy: float`` (any other type, a
  DataFrame, is an artifact marshalled as a function step's return value is): after the last cell the
  runner writes each such variable of the notebook's namespace to its output;
- every notebook step has the output ``notebook``: the executed notebook (``.ipynb``), kept even when a
  cell fails;
- the component's description is the first paragraph of the first Markdown cell.

Running (:func:`run`): the values are parsed as a function step's are (:mod:`.entrypoint`); papermill
injects them after the ``parameters`` cell (its ``injected-parameters`` cell), executes every cell with
the ``python3`` kernel (ipykernel) in the notebook's folder, and saves the executed notebook as the
``notebook`` output. papermill, nbclient and ipykernel come from the requirements layer compose-kfp adds
to an image with notebook steps; this module imports them only in :func:`run`.

Exit status: 0 success; 1 a cell raised (its error is on stderr, the executed notebook is written) or
an output is missing; 2 bad command line, a bad input value or a notebook whose interface is refused.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from compose_kfp.runtime.entrypoint import StepFailure, UsageError, _convert_inputs, _output_paths, _write_one
from compose_kfp.runtime.entrypoint import main as entrypoint_main, parse_args
from compose_kfp.runtime.signature import Output, Parameter, Signature, SignatureError

__all__ = ["NOTEBOOK_MODULE", "NOTEBOOK_OUTPUT", "NotebookError", "analyze_notebook", "main", "write_outputs"]

#: Module run by ``python3 -m`` in a notebook step's command.
NOTEBOOK_MODULE = "compose_kfp.runtime.notebook"
#: The output that carries the executed notebook.
NOTEBOOK_OUTPUT = "notebook"
#: KFP type of :data:`NOTEBOOK_OUTPUT`.
NOTEBOOK_TYPE = "JupyterNotebook"
PARAMETERS_TAG = "parameters"
OUTPUTS_TAG = "outputs"
#: Tag of the cell the runner appends to write the ``outputs`` variables (removed from the saved notebook).
CAPTURE_TAG = "compose-kfp-outputs"

_VALUE_TYPES = {"int": "Integer", "float": "Float", "str": "String", "bool": "Boolean", "list": "JsonArray",
                "dict": "JsonObject", "List": "JsonArray", "Dict": "JsonObject"}
_DEFAULT_TYPES = {"Integer": (int,), "Float": (int, float), "String": (str,), "Boolean": (bool,),
                  "JsonArray": (list, tuple), "JsonObject": (dict,)}
_USAGE = ("usage: python3 -m compose_kfp.runtime.notebook NOTEBOOK.ipynb [--in NAME VALUE]... "
          "[--out NAME PATH]...")


class NotebookError(SignatureError):
    """A notebook cannot be turned into a step: ``str()`` is ``FILE: cell N (tagged T), line L: what``.

    Attributes (besides :class:`~.signature.SignatureError`'s ``path``, ``lineno``, ``parameter``, ``reason``):
        cell: 1-based index of the cell among all cells, or ``None`` (the whole file).
    """

    def __init__(self, path: str, cell: Optional[int], lineno: Optional[int], parameter: Optional[str],
                 reason: str, tag: str = PARAMETERS_TAG) -> None:
        self.path, self.cell, self.lineno, self.parameter, self.reason = path, cell, lineno, parameter, reason
        where = path
        if cell is not None:
            where += ": cell {} (tagged {})".format(cell, tag) if tag else ": cell {}".format(cell)
            if lineno is not None:
                where += ", line {}".format(lineno)
        what = "" if parameter is None else "'{}': ".format(parameter)
        Exception.__init__(self, "{}: {}{}".format(where, what, reason))


def read_notebook(path: "str | Path", display_path: Optional[str] = None) -> Dict[str, Any]:
    """The notebook JSON of ``path`` (nbformat 4: a ``cells`` list).

    Raises:
        NotebookError: not UTF-8, not JSON (with the line and column), or not a notebook.
    """
    shown = display_path or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookError(shown, None, None, None, "not UTF-8 text (byte {})".format(exc.start))
    except OSError as exc:
        raise NotebookError(shown, None, None, None, "cannot read: {}".format(exc.strerror))
    try:
        nb = json.loads(text)
    except ValueError as exc:
        line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        raise NotebookError(shown, None, None, None, "not valid JSON (line {}, column {}: {}); a notebook is a "
                            "JSON file: save it again from Jupyter".format(line, col, getattr(exc, "msg", exc)))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(shown, None, None, None, "not a Jupyter notebook (no `cells` list; nbformat 4 expected)")
    if nb.get("nbformat", 4) < 4:
        raise NotebookError(shown, None, None, None, "nbformat {} is too old; save it with Jupyter (nbformat 4)"
                            .format(nb.get("nbformat")))
    return nb


def cell_source(cell: Dict[str, Any]) -> str:
    """A cell's source as one string (nbformat stores a string or a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _tagged(nb: Dict[str, Any], tag: str, shown: str) -> Optional[Tuple[int, Dict[str, Any]]]:
    found = [(i + 1, c) for i, c in enumerate(nb["cells"])
             if tag in ((c.get("metadata") or {}).get("tags") or ())]
    if len(found) > 1:
        raise NotebookError(shown, found[1][0], None, None, "a second cell tagged {!r} (the first is cell {}); tag "
                            "one cell only".format(tag, found[0][0]), tag=tag)
    if found and found[0][1].get("cell_type") != "code":
        raise NotebookError(shown, found[0][0], None, None, "the cell tagged {!r} is not a code cell".format(tag),
                            tag=tag)
    return found[0] if found else None


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    return ""


def _annotation(node: ast.AST) -> Tuple[str, Optional[str], bool]:
    """``(kind, KFP type, optional)`` of an annotation: kind ``value``, ``input_path``, ``output_path``,
    ``artifact`` or ``""`` (not understood)."""
    optional = False
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | None
        sides = [node.left, node.right]
        rest = [s for s in sides if not (isinstance(s, ast.Constant) and s.value is None)]
        if len(rest) == 1:
            node, optional = rest[0], True
    if isinstance(node, ast.Subscript) and _dotted(node.value).split(".")[-1] in ("Optional", "Union"):
        inner = node.slice
        if type(inner).__name__ == "Index":  # Python 3.8 wraps the subscript in ast.Index
            inner = inner.value  # type: ignore[attr-defined]
        items = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
        rest = [s for s in items if not (isinstance(s, ast.Constant) and s.value is None)]
        if len(rest) != 1:
            return "", None, False
        node, optional = rest[0], True
    call_type: Optional[str] = None
    if isinstance(node, ast.Call):
        if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            call_type = node.args[0].value
        node = node.func
    if isinstance(node, ast.Subscript):  # List[int], dict[str, float]
        node = node.value
    name = _dotted(node).split(".")[-1]
    if name == "InputPath":
        return "input_path", call_type, optional
    if name == "OutputPath":
        return "output_path", call_type, optional
    if name in _VALUE_TYPES:
        return "value", _VALUE_TYPES[name], optional
    return ("artifact", name, optional) if name else ("", None, False)


def _suggest(target: str, value: Optional[ast.AST]) -> str:
    try:
        literal = ast.literal_eval(value) if value is not None else None
    except ValueError:
        literal = None
    kind = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(literal), "int")
    return "`{}: {} = ...`".format(target, kind)


def _parameters(nb: Dict[str, Any], shown: str) -> Tuple[List[Parameter], Optional[int]]:
    found = _tagged(nb, PARAMETERS_TAG, shown)
    if found is None:
        raise NotebookError(shown, None, None, None, "no cell tagged 'parameters': tag the code cell that sets the "
                            "inputs (in Jupyter: View > Cell Toolbar > Tags, as for papermill), one typed "
                            "assignment per input, e.g. `n: int = 10`")
    index, cell = found
    try:
        tree = ast.parse(cell_source(cell))
    except SyntaxError as exc:
        raise NotebookError(shown, index, exc.lineno, None, "not valid Python: {}".format(exc.msg))
    params: List[Parameter] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        if isinstance(node, ast.Assign):
            names = [_dotted(t) or "?" for t in node.targets]
            raise NotebookError(shown, index, node.lineno, names[0], "untyped parameter: give it a type, as "
                                "{} (types: int, float, str, bool, list, dict, InputPath, OutputPath)"
                                .format(_suggest(names[0], node.value)))
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            raise NotebookError(shown, index, getattr(node, "lineno", None), None, "the parameters cell may hold "
                                "only typed assignments such as `n: int = 10` (and imports or comments); move "
                                "other code to a later cell")
        name = node.target.id
        kind, type_name, optional = _annotation(node.annotation)
        if kind in ("", "artifact"):
            raise NotebookError(shown, index, node.lineno, name, "type `{}` is not supported for a notebook input; "
                                "use int, float, str, bool, list, dict, Optional[...], InputPath or OutputPath"
                                .format(ast.get_source_segment(cell_source(cell), node.annotation) or type_name))
        if name == NOTEBOOK_OUTPUT:
            raise NotebookError(shown, index, node.lineno, name, "the name is taken by the executed notebook "
                                "output; rename the parameter")
        if any(p.name == name for p in params):
            raise NotebookError(shown, index, node.lineno, name, "set twice in the parameters cell")
        literal, is_literal = None, False
        if node.value is not None and kind == "value":
            try:
                literal, is_literal = ast.literal_eval(node.value), True
            except ValueError:
                pass
            if is_literal and literal is not None and not (
                    isinstance(literal, _DEFAULT_TYPES[type_name or ""])
                    and not (type_name != "Boolean" and isinstance(literal, bool))):
                raise NotebookError(shown, index, node.lineno, name, "the value {!r} does not fit the type {}"
                                    .format(literal, type_name))
        annotation = ast.get_source_segment(cell_source(cell), node.annotation) or ""
        params.append(Parameter(
            name=name, kind=kind, type=type_name, annotation=annotation,
            optional=kind == "value" and (node.value is not None or optional),
            has_default=node.value is not None, default=literal if is_literal else None,
            default_is_literal=is_literal, lineno=node.lineno))
    return params, index


def _outputs(nb: Dict[str, Any], shown: str, params: List[Parameter]) -> List[Output]:
    found = _tagged(nb, OUTPUTS_TAG, shown)
    outputs: List[Output] = []
    for p in params:
        if p.kind == "output_path":
            outputs.append(Output(name=p.name, kind="output_path", type=p.type, source="parameter",
                                  annotation=p.annotation, lineno=p.lineno))
    if found is not None:
        index, cell = found
        source = cell_source(cell)
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise NotebookError(shown, index, exc.lineno, None, "not valid Python: {}".format(exc.msg), tag=OUTPUTS_TAG)
        fields = 0
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)) or (
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
                continue
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                raise NotebookError(shown, index, getattr(node, "lineno", None), None, "the outputs cell may hold "
                                    "only declarations such as `accuracy: float`", tag=OUTPUTS_TAG)
            name = node.target.id
            kind, type_name, optional = _annotation(node.annotation)
            if kind not in ("value", "artifact") or optional:
                raise NotebookError(shown, index, node.lineno, name, "an output is a value (int, float, str, bool, "
                                    "list, dict) or an object; a file output is an OutputPath parameter",
                                    tag=OUTPUTS_TAG)
            if name == NOTEBOOK_OUTPUT or any(o.name == name for o in outputs) or any(p.name == name for p in params):
                raise NotebookError(shown, index, node.lineno, name, "the name is already an input or output "
                                    "(`notebook` is the executed notebook); rename it", tag=OUTPUTS_TAG)
            outputs.append(Output(name=name, kind=kind, type=type_name, source="field", index=fields,
                                  annotation=ast.get_source_segment(source, node.annotation) or "",
                                  lineno=node.lineno))
            fields += 1
    outputs.append(Output(name=NOTEBOOK_OUTPUT, kind="output_path", type=NOTEBOOK_TYPE, source="parameter",
                          annotation="OutputPath('{}')".format(NOTEBOOK_TYPE)))
    return outputs


def _description(nb: Dict[str, Any]) -> Optional[str]:
    for cell in nb["cells"]:
        if cell.get("cell_type") == "markdown":
            paragraph = cell_source(cell).strip().split("\n\n")[0]
            text = " ".join(line.strip().lstrip("#").strip() for line in paragraph.splitlines()).strip()
            return text or None
    return None


def analyze_notebook(path: "str | Path", display_path: Optional[str] = None) -> Signature:
    """The interface of the notebook at ``path`` as a :class:`~.signature.Signature` (module docstring):
    ``parameters`` from the ``parameters`` cell in order, ``outputs``: ``OutputPath`` parameters, the
    ``outputs`` cell's variables (``source="field"``), then :data:`NOTEBOOK_OUTPUT`; ``docstring``: the first
    Markdown paragraph; ``function``: the file name; ``lineno``: the ``parameters`` cell's index (1-based).

    Raises:
        NotebookError: invalid JSON, no (or two) ``parameters`` cells, an untyped or unsupported parameter, a
        default that does not fit its type, a bad ``outputs`` cell; the message names the file, the cell,
        the line and the parameter.
    """
    shown = display_path or str(path)
    nb = read_notebook(path, shown)
    params, index = _parameters(nb, shown)
    outputs = _outputs(nb, shown, params)
    fields = [o for o in outputs if o.source == "field"]
    return Signature(path=shown, function=Path(shown).name, lineno=index or 0, docstring=_description(nb),
                     parameters=params, outputs=outputs, returns="namedtuple" if fields else "none")


# --------------------------------------------------------------------------- in the image


def write_outputs(namespace: Dict[str, Any], spec: str) -> None:
    """Called by the cell the runner appends, in the notebook's kernel: write each ``outputs`` variable of
    ``namespace`` to its path as a function step's return value is written (values as text or JSON, other
    objects marshalled). ``spec``: JSON ``[[name, kind, type, annotation, path], ...]``.

    Raises:
        StepFailure: a variable the notebook never set, or a value that does not fit its declared type.
    """
    for name, kind, type_name, annotation, path in json.loads(spec):
        if name not in namespace:
            raise StepFailure("output '{}': the notebook never set the variable {} declared in its outputs cell"
                              .format(name, name))
        _write_one(Output(name=name, kind=kind, type=type_name, source="field", annotation=annotation),
                   namespace[name], path)


def _capture_cell(sig: Signature, paths: Dict[str, str]) -> Dict[str, Any]:
    spec = [[o.name, o.kind, o.type, o.annotation, os.path.abspath(paths[o.name])]
            for o in sig.outputs if o.source == "field"]
    source = ("from compose_kfp.runtime.notebook import write_outputs as _compose_kfp_write_outputs\n"
              "_compose_kfp_write_outputs(globals(), {!r})\n".format(json.dumps(spec)))
    return {"cell_type": "code", "execution_count": None, "id": "compose-kfp-outputs",
            "metadata": {"tags": [CAPTURE_TAG]}, "outputs": [], "source": source}


def _strip_capture(path: str) -> None:
    """Remove the appended capture cell from the executed notebook at ``path`` (when it is there)."""
    try:
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
    except (OSError, ValueError):
        return
    cells = [c for c in nb.get("cells", []) if CAPTURE_TAG not in ((c.get("metadata") or {}).get("tags") or ())]
    if len(cells) != len(nb.get("cells", [])):
        nb["cells"] = cells
        with open(path, "w", encoding="utf-8") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")


def _failed_cell(nb: Dict[str, Any], source: str) -> str:
    """Where the cell whose source is ``source`` is in the user's notebook ``nb`` (as papermill reports it; the
    executed notebook has papermill's cells too): ``in cell N`` (1-based), ``writing the outputs...`` for the
    appended cell, or ``in the injected parameters``."""
    for i, cell in enumerate(nb["cells"]):
        if cell_source(cell) == source:
            if CAPTURE_TAG in ((cell.get("metadata") or {}).get("tags") or ()):
                return "writing the outputs of its outputs cell"
            return "in cell {}".format(i + 1)
    return "in the injected parameters"


def _log(message: str) -> None:
    sys.stderr.write("compose-kfp notebook: {}\n".format(message))
    sys.stderr.flush()


def run(argv: Sequence[str]) -> int:
    """Run the notebook step described by ``argv`` (module docstring); returns the exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        raise UsageError(_USAGE)
    file_part, ins, outs = parse_args(argv)
    file = Path(file_part) if Path(file_part).is_absolute() else Path(os.getcwd()) / file_part
    if not file.is_file():
        raise UsageError("{}: no such file (working directory {})".format(file_part, os.getcwd()))
    try:
        sig = analyze_notebook(file, display_path=file_part)
    except SignatureError as exc:
        raise UsageError(str(exc))
    values, _ = _convert_inputs(sig, ins)
    paths = _output_paths(sig, outs)
    for o in sig.outputs:
        os.makedirs(os.path.dirname(os.path.abspath(paths[o.name])), exist_ok=True)
        if o.kind == "output_path" and o.name != NOTEBOOK_OUTPUT:
            values[o.name] = os.path.abspath(paths[o.name])
    for p in sig.inputs:
        if p.kind == "input_path" and p.name in values:
            values[p.name] = os.path.abspath(str(values[p.name]))
    import papermill  # from the notebook requirements layer compose-kfp adds to the image

    nb = read_notebook(file, file_part)
    if any(o.source == "field" for o in sig.outputs):
        nb["cells"].append(_capture_cell(sig, paths))
    executed = os.path.abspath(paths[NOTEBOOK_OUTPUT])
    with tempfile.TemporaryDirectory(prefix="compose-kfp-notebook-") as tmp:
        source = os.path.join(tmp, file.name)
        with open(source, "w", encoding="utf-8") as f:
            json.dump(nb, f)
        _log("running {} with {}".format(file_part, ", ".join("{}={!r}".format(k, v) for k, v in values.items())
                                         or "its defaults"))
        try:
            papermill.execute_notebook(source, executed, parameters=values, kernel_name="python3",
                                       cwd=str(file.parent), progress_bar=False, log_output=True)
        except papermill.PapermillExecutionError as exc:
            where = _failed_cell(nb, exc.source)
            _strip_capture(executed)
            sys.stderr.write("compose-kfp notebook: {} failed {}: {}: {}\n{}\n".format(
                file_part, where, exc.ename, exc.evalue, "\n".join(exc.traceback or ())))
            _log("the executed notebook is in {}".format(executed))
            return 1
    _strip_capture(executed)
    for o in sig.outputs:
        if o.kind == "output_path" and not os.path.exists(paths[o.name]):
            raise StepFailure("output '{}': the notebook did not write {}".format(o.name, paths[o.name]))
    _log("wrote the executed notebook to {}".format(executed))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status (0, 1 or 2) instead of raising."""
    return entrypoint_main(argv, runner=run, log=_log)


if __name__ == "__main__":
    sys.exit(main())
