"""Run one step function with inputs from the command line and write its outputs to files.

Usage (the exact form a rendered component's ``command`` + ``args`` produce)::

    python3 -m compose_kfp.runtime src/iris.py:train \\
        --in dataset /tmp/inputs/dataset/data --in n_estimators 100 \\
        --out model /tmp/outputs/model/data --out output /tmp/outputs/output/data

Steps, in order:

1. read the function's interface from its source with :mod:`compose_kfp.runtime.signature`
   (the same analysis that produced the component file);
2. check the arguments: every ``--in`` names an input, every required input is given,
   every output has an ``--out``; parse each value by its declared type (``Integer``,
   ``Float``, ``String``, ``Boolean`` as ``true``/``false``, ``JsonArray``/``JsonObject``
   as JSON); a path input is passed as a path (``pathlib.Path`` if so annotated);
3. import the file by path, as ``python FILE.py`` would see it: the file's folder first
   on ``sys.path``, then the working directory (the image's ``workdir``); the module is
   registered under the file's stem so pickled classes it defines can be loaded again;
   then artifact inputs are unmarshalled (:mod:`compose_kfp.runtime.marshal`);
4. call the function (``async def`` functions through :func:`asyncio.run`), creating the
   parent folders of ``OutputPath`` parameters first;
5. write outputs: ``OutputPath`` files must exist afterwards; a returned value is checked
   against its declared type and written as text (``str`` as-is, numbers with ``repr``,
   booleans ``true``/``false``) or JSON (lists, dicts); other values are marshalled into
   the output path as an artifact folder. Parent folders are created.

Exit status: 0 success; 1 the function (or importing its module) raised — the traceback
is on stderr — or an output is missing or of the wrong type; 2 bad command line or a
bad input value (the message names the input). Progress lines go to stderr.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from compose_kfp.runtime import marshal
from compose_kfp.runtime.signature import Output, Parameter, Signature, SignatureError, analyze_file

__all__ = ["main", "UsageError", "parse_value", "format_value"]

USAGE = "usage: python3 -m compose_kfp.runtime FILE.py:FUNCTION [--in NAME VALUE]... [--out NAME PATH]..."


class UsageError(Exception):
    """Bad command line or input value (exit status 2)."""


class StepFailure(Exception):
    """The step ran but its outputs are wrong (exit status 1)."""


def _log(message: str) -> None:
    sys.stderr.write("compose-kfp runtime: {}\n".format(message))
    sys.stderr.flush()


def parse_args(argv: Sequence[str]) -> Tuple[str, List[Tuple[str, str]], List[Tuple[str, str]]]:
    """Split ``argv`` into ``(FILE.py:FUNCTION, [(name, value)...], [(name, path)...])`` in order.

    ``--in`` and ``--out`` each take the next two words verbatim (values may start with ``-``).

    Raises:
        UsageError: no function reference, an unknown option, or an option missing its words.
    """
    if not argv or argv[0] in ("-h", "--help"):
        raise UsageError(USAGE)
    ref = argv[0]
    ins: List[Tuple[str, str]] = []
    outs: List[Tuple[str, str]] = []
    i = 1
    while i < len(argv):
        opt = argv[i]
        if opt not in ("--in", "--out"):
            raise UsageError("unexpected argument {!r}; expected --in NAME VALUE or --out NAME PATH\n{}".format(
                opt, USAGE))
        if i + 2 >= len(argv):
            raise UsageError("{} needs a NAME and a {} (got {})".format(
                opt, "VALUE" if opt == "--in" else "PATH", " ".join(argv[i + 1:]) or "nothing"))
        pair = (argv[i + 1], argv[i + 2])
        (ins if opt == "--in" else outs).append(pair)
        i += 3
    return ref, ins, outs


_BOOLEANS = {"true": True, "false": False}


def parse_value(text: str, type_name: Optional[str], what: str) -> Any:
    """Parse the command-line ``text`` of a value input by its KFP type.

    ``Integer`` -> ``int``; ``Float`` -> ``float``; ``Boolean`` -> ``true``/``false`` (any case);
    ``JsonArray``/``JsonObject`` -> JSON list/object; ``String`` or untyped -> ``text``.

    Raises:
        UsageError: the text is not a valid value; the message names ``what`` and the type.
    """
    try:
        if type_name == "Integer":
            return int(text.strip())
        if type_name == "Float":
            return float(text.strip())
        if type_name == "Boolean":
            return _BOOLEANS[text.strip().lower()]
        if type_name in ("JsonArray", "JsonObject"):
            value = json.loads(text)
            expected = list if type_name == "JsonArray" else dict
            if not isinstance(value, expected):
                raise ValueError("not a JSON {}".format("array" if expected is list else "object"))
            return value
    except (ValueError, KeyError) as exc:
        detail = "" if isinstance(exc, KeyError) else " ({})".format(exc)
        hint = " (true or false)" if type_name == "Boolean" else ""
        raise UsageError("{}: expected {} {}{}, got {!r}{}".format(
            what, "an" if (type_name or "")[:1] in "AEIOU" else "a", type_name, hint, text, detail))
    return text


def format_value(value: Any, output: Output) -> str:
    """Text written for a value output (``str`` as-is, numbers, ``true``/``false``, JSON).

    Raises:
        StepFailure: ``value`` does not match the output's declared type.
    """
    t = output.type
    ok = {
        "Integer": isinstance(value, int) and not isinstance(value, bool),
        "Float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "String": isinstance(value, str),
        "Boolean": isinstance(value, bool),
        "JsonArray": isinstance(value, (list, tuple)),
        "JsonObject": isinstance(value, dict),
    }.get(t or "", True)
    if not ok:
        raise StepFailure("output '{}': the function returned {} {!r}, but the declared type is {} ({})".format(
            output.name, type(value).__name__, value, output.annotation, t))
    if isinstance(value, bool):
        return "true" if value else "false"
    if t == "Float":
        return repr(float(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StepFailure("output '{}': the returned value is not JSON: {}".format(output.name, exc))


def _convert_inputs(sig: Signature, ins: List[Tuple[str, str]]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Parse value inputs and check path inputs; return ``(values, artifact input name -> path)``."""
    given: Dict[str, str] = {}
    for name, text in ins:
        p = sig.parameter(name)
        if p is None or p.kind == "output_path":
            known = ", ".join(q.name for q in sig.inputs) or "none"
            raise UsageError("--in {}: {} has no input '{}' (inputs: {})".format(name, sig.function, name, known))
        if name in given:
            raise UsageError("--in {}: given twice".format(name))
        given[name] = text
    values: Dict[str, Any] = {}
    artifacts: Dict[str, str] = {}
    for p in sig.inputs:
        what = "input '{}'".format(p.name)
        if p.name not in given:
            if not p.optional:
                raise UsageError("{}: required but not given (--in {} VALUE)".format(what, p.name))
            continue
        text = given[p.name]
        if p.kind == "value":
            values[p.name] = parse_value(text, p.type, what)
        elif p.kind == "input_path":
            if not os.path.exists(text):
                raise UsageError("{}: the file {} does not exist".format(what, text))
            values[p.name] = Path(text) if p.python_path else text
        else:  # artifact: loaded after the module is imported
            if not os.path.exists(text):
                raise UsageError("{}: {} does not exist".format(what, text))
            artifacts[p.name] = text
    return values, artifacts


def _output_paths(sig: Signature, outs: List[Tuple[str, str]]) -> Dict[str, str]:
    paths: Dict[str, str] = {}
    for name, path in outs:
        if sig.output(name) is None:
            known = ", ".join(o.name for o in sig.outputs) or "none"
            raise UsageError("--out {}: {} has no output '{}' (outputs: {})".format(name, sig.function, name, known))
        if name in paths:
            raise UsageError("--out {}: given twice".format(name))
        paths[name] = path
    for o in sig.outputs:
        if o.name not in paths:
            raise UsageError("output '{}': no --out {} PATH given".format(o.name, o.name))
    return paths


def _import(file: Path) -> Any:
    """Import ``file`` as a module named after its stem, with its folder and the cwd on ``sys.path``."""
    folder = str(file.parent)
    cwd = os.getcwd()
    for entry in (cwd, folder):  # folder ends up first, as for `python FILE.py`
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
    name = file.stem
    if name in sys.modules or not name.isidentifier():
        name = "_compose_kfp_step_" + "".join(c if c.isalnum() else "_" for c in file.stem)
    spec = importlib.util.spec_from_file_location(name, str(file))
    if spec is None or spec.loader is None:
        raise UsageError("cannot import {}".format(file))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _call(fn: Any, sig: Signature, values: Dict[str, Any]) -> Any:
    positional: List[Any] = []
    posonly = [p for p in sig.parameters if p.positional_only]
    if posonly:
        py_params = inspect.signature(fn).parameters
        for p in posonly:
            if p.name in values:
                positional.append(values.pop(p.name))
            else:
                positional.append(py_params[p.name].default)
    result = fn(*positional, **values)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return result


def _write_outputs(sig: Signature, result: Any, paths: Dict[str, str]) -> None:
    if sig.returns == "namedtuple":
        fields = [o for o in sig.outputs if o.source == "field"]
        if not isinstance(result, tuple) or len(result) != len(fields):
            raise StepFailure("the function must return a NamedTuple with fields {}, got {} {!r}".format(
                ", ".join(o.name for o in fields), type(result).__name__, result))
        for o in fields:
            _write_one(o, result[o.index], paths[o.name])  # type: ignore[index]
    elif sig.returns == "single":
        o = next(o for o in sig.outputs if o.source == "return")
        _write_one(o, result, paths[o.name])
    for o in sig.outputs:
        if o.kind == "output_path" and not os.path.exists(paths[o.name]):
            raise StepFailure("output '{}': the function did not write {}".format(o.name, paths[o.name]))


def _write_one(o: Output, value: Any, path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if o.kind == "value":
        if value is None:
            raise StepFailure("output '{}': the function returned None, but the declared type is {}".format(
                o.name, o.annotation))
        text = format_value(value, o)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        _log("wrote output '{}' to {}".format(o.name, path))
    else:
        try:
            meta = marshal.write_artifact(value, path)
        except marshal.MarshalError as exc:
            raise StepFailure("output '{}': {}".format(o.name, exc))
        _log("wrote output '{}' ({}, {}) to {}".format(o.name, meta["python_type"], meta["format"], path))


#: Annotations that accept any object: such an input also takes a plain file (a literal, raw artifact).
_ANY_ANNOTATIONS = frozenset({"Any", "typing.Any", "t.Any", "object"})


def run(argv: Sequence[str]) -> int:
    """Run the step described by ``argv``; see the module docstring. Returns the exit status."""
    ref, ins, outs = parse_args(argv)
    if ":" not in ref:
        raise UsageError("{!r} is not FILE.py:FUNCTION\n{}".format(ref, USAGE))
    file_part, function = ref.rsplit(":", 1)
    file = Path(file_part)
    if not file.is_absolute():
        file = Path(os.getcwd()) / file
    if not file.is_file():
        raise UsageError("{}: no such file (working directory {})".format(file_part, os.getcwd()))
    try:
        sig = analyze_file(file, function, display_path=file_part)
    except SignatureError as exc:
        raise UsageError(str(exc))
    values, artifacts = _convert_inputs(sig, ins)
    paths = _output_paths(sig, outs)
    try:
        module = _import(file)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:  # noqa: BLE001 - report an import failure of user code like a step failure
        sys.stderr.write("compose-kfp runtime: importing {} failed:\n".format(file_part))
        traceback.print_exc()
        return 1
    # Artifacts are loaded after the import, so pickled classes of the step's own module resolve.
    untyped = {p.name for p in sig.parameters if p.annotation in _ANY_ANNOTATIONS}
    for name, path in artifacts.items():
        try:
            values[name] = marshal.read_artifact(path, "input '{}'".format(name), plain=name in untyped)
        except marshal.MarshalError as exc:
            raise UsageError(str(exc))
    for o in sig.outputs:
        if o.kind == "output_path":
            os.makedirs(os.path.dirname(os.path.abspath(paths[o.name])), exist_ok=True)
            values[o.name] = paths[o.name]
    try:
        fn = getattr(module, function)
        fn = getattr(fn, "python_func", fn)  # a KFP @component-decorated function
        _log("running {}:{}".format(file_part, function))
        result = _call(fn, sig, values)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:  # noqa: BLE001 - any failure of user code is reported the same way
        sys.stderr.write("compose-kfp runtime: step {} failed:\n".format(ref))
        traceback.print_exc()
        return 1
    _write_outputs(sig, result, paths)
    return 0


def main(argv: Optional[Sequence[str]] = None, runner: Optional[Callable[[Sequence[str]], int]] = None,
         log: Optional[Callable[[str], None]] = None) -> int:
    """Command-line entry point; returns the exit status (0, 1 or 2) instead of raising.

    ``runner`` (default :func:`run`) and ``log`` (default: ``compose-kfp runtime: ...`` on stderr) let the
    notebook runner (:mod:`compose_kfp.runtime.notebook`) share this exit-status mapping.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    log = log or _log
    try:
        return (runner or run)(args)
    except UsageError as exc:
        log("error: {}".format(exc))
        return 2
    except StepFailure as exc:
        log("error: {}".format(exc))
        return 1
