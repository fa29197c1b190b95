"""Python step functions -> KFP v1 component specs, without importing the user's code.

``function_component(root, "src/iris.py:train", step_name="train")`` parses the file
with :mod:`ast` (through :mod:`compose_kfp.runtime.signature`, the analysis the in-image
runtime repeats, so both sides always agree) and returns a
:class:`~compose_kfp.steps.component.ComponentSpec` whose container runs the function through
the runtime:

.. code-block:: yaml

    command: [python3, -m, compose_kfp.runtime, "src/iris.py:train"]
    args:
    - --in
    - dataset
    - {inputPath: dataset}          # artifact input (a marshalled DataFrame)
    - {if: {cond: {isPresent: n_estimators},
            then: [--in, n_estimators, {inputValue: n_estimators}]}}   # optional input
    - --out
    - output
    - {outputPath: output}          # the return value

Rules (see :mod:`compose_kfp.runtime.signature` for the full annotation table):

- inputs in parameter order; required inputs always get ``--in NAME {placeholder}``,
  optional ones (those with a default) are wrapped in ``if``/``isPresent`` so a
  task may leave them out and the function's own default applies; ``Optional[X]``
  without a default is a required input of type ``X``, as KFP's own
  ``create_component_from_func`` and ``@dsl.component`` make it (Python would call the
  function without it and fail), so ``validate`` asks for its argument;
- value inputs use ``inputValue``; ``InputPath``, ``pathlib.Path`` and artifact
  (object) inputs use ``inputPath``;
- outputs: ``OutputPath`` parameters (in parameter order), then the return value
  (one output named ``output``, see :data:`RETURN_OUTPUT`) or one output per
  ``NamedTuple`` field; each is ``--out NAME {outputPath: NAME}``;
- defaults are stored as KFP v1 strings: ``"100"``, ``"0.3"``, ``"true"``/``"false"``,
  the string itself, JSON for lists and dicts; a default that is not a literal
  (``seed: int = SEED``) makes the input optional without a component default;
- the description is the docstring's first paragraph; input and output
  descriptions come from a Google-style (``Args:``/``Returns:``) or NumPy-style
  (``Parameters``/``Returns`` with dashes) docstring.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

from compose_kfp.steps.component import Arg, ComponentSpec, InputSpec, OutputSpec
from compose_kfp.errors import StepError
from compose_kfp.runtime import RUNTIME_MODULE
from compose_kfp.runtime.signature import RETURN_OUTPUT, Parameter, Signature, SignatureError, analyze_file

__all__ = ["RETURN_OUTPUT", "function_component", "runtime_command", "parse_docstring", "split_function_ref"]

log = logging.getLogger(__name__)


def split_function_ref(function_ref: str, *, step_name: str) -> tuple[str, str]:
    """Split ``"path/to/file.py:function"`` into ``("path/to/file.py", "function")``.

    Raises:
        StepError: not of that form (the message names the step and what was expected).
    """
    path, sep, function = function_ref.rpartition(":")
    if not sep or not path or not function:
        raise StepError(f"steps.{step_name}.function: {function_ref!r} is not 'path/to/file.py:function'")
    if not function.isidentifier():
        raise StepError(f"steps.{step_name}.function: {function!r} in {function_ref!r} is not a Python function name")
    if not path.endswith(".py"):
        raise StepError(f"steps.{step_name}.function: {path!r} in {function_ref!r} is not a .py file")
    return path, function


def runtime_command(relative_path: str, function: str) -> tuple[str, ...]:
    """The container ``command`` of a Python step: ``("python3", "-m", "compose_kfp.runtime", "src/x.py:f")``."""
    return ("python3", "-m", RUNTIME_MODULE, f"{relative_path}:{function}")


def function_component(root: Path, function_ref: str, *, step_name: str) -> ComponentSpec:
    """Read ``function_ref`` (``path/to/file.py:function``, relative to ``root``) into a component spec.

    Args:
        root: the folder of ``kfp.toml``; the file must lie inside it (it is copied into
            the image at the same relative path under ``image.workdir``).
        function_ref: ``path/to/file.py:function``, POSIX separators.
        step_name: the ``[steps.NAME]`` key; becomes the component ``name``.

    Returns:
        A spec with ``image=None``, ``python_function`` set to the normalised reference,
        ``source`` set to ``function_ref``; inputs and outputs as described in the module
        docstring.

    Raises:
        StepError: the reference is malformed, the file is missing or outside ``root``, or
            the function is refused; the message names the step, the file, the line and the
            parameter (see :mod:`compose_kfp.runtime.signature` for what is refused).
    """
    rel, function = split_function_ref(function_ref, step_name=step_name)
    root = Path(root).resolve()
    rel_posix = PurePosixPath(rel)
    if rel_posix.is_absolute() or ".." in rel_posix.parts:
        raise StepError(f"steps.{step_name}.function: {rel!r} must be a path relative to the folder of kfp.toml "
                        f"without '..' (it is copied into the image at that relative path)")
    file = root / rel_posix
    if not file.is_file():
        raise StepError(f"steps.{step_name}.function: {rel} does not exist (looked in {root})")
    rel_norm = file.relative_to(root).as_posix()
    try:
        sig = analyze_file(file, function, display_path=rel_norm)
    except SignatureError as exc:
        raise StepError(f"steps.{step_name}.function: {exc}") from exc
    return _spec_from_signature(sig, rel_norm, step_name, function_ref)


def _spec_from_signature(sig: Signature, rel: str, step_name: str, source: str) -> ComponentSpec:
    doc = parse_docstring(sig.docstring)
    inputs: list[InputSpec] = []
    args: list[Arg] = []
    for p in sig.inputs:
        default = _default_text(p)
        optional = p.has_default  # not p.optional: `Optional[X]` alone gives Python no value to fall back on
        inputs.append(InputSpec(
            name=p.name,
            type=p.type,
            description=doc.params.get(p.name),
            default=default,
            optional=optional and default is None,
        ))
        placeholder = {"inputValue": p.name} if p.kind == "value" else {"inputPath": p.name}
        triple: list[Arg] = ["--in", p.name, placeholder]
        if optional:
            args.append({"if": {"cond": {"isPresent": p.name}, "then": triple}})
        else:
            args.extend(triple)
    outputs: list[OutputSpec] = []
    single = [o for o in sig.outputs if o.source == "return"]
    for o in sig.outputs:
        if o.source == "parameter":
            description = doc.params.get(o.name)
        elif o.source == "field":
            description = doc.returns_by_name.get(o.name)
        else:
            description = doc.returns if single else None
        outputs.append(OutputSpec(name=o.name, type=o.type, description=description))
        args.extend(["--out", o.name, {"outputPath": o.name}])
    clash = {i.name for i in inputs} & {o.name for o in outputs}
    if clash:
        name = sorted(clash)[0]
        line = next(o.lineno for o in sig.outputs if o.name == name)
        raise StepError(f"steps.{step_name}.function: {rel}:{line}: output '{name}' has the same name as an input; "
                        f"rename the parameter or the NamedTuple field")
    return ComponentSpec(
        name=step_name,
        description=doc.summary,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        image=None,
        command=runtime_command(rel, sig.function),
        args=tuple(args),
        source=source,
        python_function=f"{rel}:{sig.function}",
    )


def _default_text(p: Parameter) -> str | None:
    """The KFP v1 string form of a value input's literal default, or ``None``."""
    if p.kind != "value" or not p.default_is_literal or p.default is None:
        return None
    value: Any = p.default
    if p.type == "Boolean":
        return "true" if value else "false"
    if p.type == "Float":
        return repr(float(value))
    if p.type in ("JsonArray", "JsonObject"):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


# ---- docstrings ---------------------------------------------------------------------------------


class Docstring:
    """The parts of a docstring used for a component.

    Attributes:
        summary: the first paragraph, lines joined with spaces, or ``None``.
        params: parameter name -> description (Google ``Args:`` or NumPy ``Parameters``).
        returns: description of the return value as a whole, or ``None``.
        returns_by_name: ``NamedTuple`` field name -> description (``name: text`` lines in ``Returns``).
    """

    def __init__(self) -> None:
        self.summary: str | None = None
        self.params: dict[str, str] = {}
        self.returns: str | None = None
        self.returns_by_name: dict[str, str] = {}


_GOOGLE_SECTIONS = {
    "args": "params", "arguments": "params", "parameters": "params", "params": "params",
    "keyword args": "params", "keyword arguments": "params", "other parameters": "params",
    "returns": "returns", "return": "returns", "yields": "returns",
    "raises": None, "examples": None, "example": None, "note": None, "notes": None, "see also": None,
    "references": None, "attributes": None, "warning": None, "warnings": None, "todo": None,
}
_GOOGLE_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_GOOGLE_ITEM = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NUMPY_TYPED = re.compile(r"^\*{0,2}[A-Za-z_][A-Za-z0-9_]*\s+:(\s|$)")  # "name : type"
_NUMPY_ITEM = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*(.*))?$")


def parse_docstring(text: str | None) -> Docstring:
    """Parse a (cleaned, :func:`inspect.cleandoc`-style) docstring; Google and NumPy styles.

    Never raises: text that is not understood is simply not used.
    """
    doc = Docstring()
    if not text:
        return doc
    lines = text.expandtabs().splitlines()
    # summary: first paragraph, unless it is already a section
    first: list[str] = []
    for line in lines:
        if not line.strip():
            break
        first.append(line.strip())
    if first and not _is_section_start(lines, 0):
        doc.summary = " ".join(first)
    sections = _split_sections(lines)
    for kind, body in sections:
        if kind == "params":
            doc.params.update(_items(body))
        elif kind == "returns":
            items = _items(body)
            plain = " ".join(ln.strip() for ln in body if ln.strip())
            if items and all(_looks_like_item(ln) for ln in _top_lines(body)):
                doc.returns_by_name.update(items)
                if len(items) == 1:
                    doc.returns = next(iter(items.values()))
            else:
                doc.returns = plain or None
    return doc


def _is_section_start(lines: list[str], i: int) -> bool:
    line = lines[i].strip()
    m = _GOOGLE_HEADER.match(line)
    if m and m.group(1).lower() in _GOOGLE_SECTIONS:
        return True
    return (line.lower() in _GOOGLE_SECTIONS and i + 1 < len(lines)
            and set(lines[i + 1].strip()) == {"-"})


def _split_sections(lines: list[str]) -> list[tuple[str | None, list[str]]]:
    """``[(kind, body lines)]`` for each Google (``Args:``) or NumPy (``Parameters`` + dashes) section."""
    out: list[tuple[str | None, list[str]]] = []
    current: tuple[str | None, list[str]] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        m = _GOOGLE_HEADER.match(stripped)
        numpy = (stripped.lower() in _GOOGLE_SECTIONS and i + 1 < len(lines)
                 and len(lines[i + 1].strip()) >= 3 and set(lines[i + 1].strip()) == {"-"})
        if numpy:
            current = (_GOOGLE_SECTIONS[stripped.lower()], [])
            out.append(current)
            i += 2
            continue
        if m and m.group(1).lower() in _GOOGLE_SECTIONS and line == line.lstrip():
            current = (_GOOGLE_SECTIONS[m.group(1).lower()], [])
            out.append(current)
            i += 1
            continue
        if current is not None:
            current[1].append(line)
        i += 1
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _top_lines(body: list[str]) -> list[str]:
    non_empty = [ln for ln in body if ln.strip()]
    if not non_empty:
        return []
    base = min(_indent(ln) for ln in non_empty)
    return [ln.strip() for ln in non_empty if _indent(ln) == base]


def _looks_like_item(line: str) -> bool:
    return bool(_GOOGLE_ITEM.match(line) or _NUMPY_ITEM.match(line))


def _items(body: list[str]) -> dict[str, str]:
    """``name -> description`` from a section body: items at the smallest indent, continuation lines deeper."""
    non_empty = [ln for ln in body if ln.strip()]
    if not non_empty:
        return {}
    base = min(_indent(ln) for ln in non_empty)
    items: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in body:
        if not line.strip():
            continue
        if _indent(line) == base:
            stripped = line.strip()
            n = _NUMPY_ITEM.match(stripped)
            g = None if _NUMPY_TYPED.match(stripped) else _GOOGLE_ITEM.match(stripped)
            if g:
                current = items.setdefault(g.group(1), [])
                if g.group(3).strip():
                    current.append(g.group(3).strip())
            elif n:  # NumPy: "name : type" then the description indented below
                current = items.setdefault(n.group(1), [])
            else:
                current = None
        elif current is not None:
            current.append(line.strip())
    return {k: " ".join(v) for k, v in items.items() if v}
