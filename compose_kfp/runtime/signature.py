"""Read a step function's interface from its source with :mod:`ast` (standard library only, Python 3.8+).

The same analysis runs in two places, so both always agree:

- at ``plan``/``apply`` time, :mod:`compose_kfp.introspect` turns it into a KFP
  component spec (the user's dependencies need not be installed);
- inside the image, :mod:`compose_kfp.runtime` uses it to parse ``--in`` values by
  their declared types and to know which outputs to write.

The user's module is never imported here.

Annotation forms understood (names are resolved through the module's imports, so
``typing.List``, ``List`` and ``t.List`` are the same):

===========================================  =========================================
annotation                                   interface
===========================================  =========================================
``int`` ``float`` ``str`` ``bool``           value input ``Integer`` ``Float`` ``String``
                                             ``Boolean``
``list`` ``List[...]`` ``list[...]``         value input ``JsonArray``
``dict`` ``Dict[...]`` ``dict[...]``         value input ``JsonObject``
``Optional[X]``, ``Union[X, None]``,         like ``X``, optional (no argument -> Python default
``X | None``, or a default value             or ``None``)
``InputPath`` / ``InputPath("T")``           ``inputPath`` input (type ``T``), function gets a ``str``
``pathlib.Path``                             ``inputPath`` input, function gets a ``Path``
``OutputPath`` / ``OutputPath("T")``         ``outputPath`` *output* (type ``T``), function gets a ``str``
anything else (``pd.DataFrame``, a model)    artifact input (``inputPath``) unmarshalled by the runtime
return ``int``/``float``/``str``/...         value output named ``output``
return ``NamedTuple``                        one output per field (each a value or an artifact)
return anything else                         artifact output ``output`` marshalled by the runtime
===========================================  =========================================

Refused, with :class:`SignatureError` naming the file, line and parameter:
a missing function, ``*args``/``**kwargs``, a parameter without annotation, a
return value without a return annotation, a name the module neither defines nor
imports, ``Union`` of several types, an ``Optional`` output, a path marker as
a return type or inside a container, a default that does not fit the type.
"""

from __future__ import annotations

import ast
import builtins
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

__all__ = [
    "RETURN_OUTPUT",
    "VALUE_TYPES",
    "SignatureError",
    "Parameter",
    "Output",
    "Signature",
    "analyze_file",
    "analyze_source",
]

#: Name of the output that carries a function's single (non-NamedTuple) return value.
RETURN_OUTPUT = "output"

#: KFP v1 type names passed by value, by the Python builtin they come from.
VALUE_TYPES = {
    "builtins.int": "Integer",
    "builtins.float": "Float",
    "builtins.str": "String",
    "builtins.bool": "Boolean",
    "builtins.list": "JsonArray",
    "builtins.dict": "JsonObject",
    "typing.List": "JsonArray",
    "typing.Dict": "JsonObject",
}

_INPUT_PATH_MARKERS = {
    "compose_kfp.types.InputPath",
    "kfp.components.InputPath",
    "kfp.dsl.InputPath",
    "kfp.v2.dsl.InputPath",
}
_OUTPUT_PATH_MARKERS = {
    "compose_kfp.types.OutputPath",
    "kfp.components.OutputPath",
    "kfp.dsl.OutputPath",
    "kfp.v2.dsl.OutputPath",
}
_PATH_TYPES = {"pathlib.Path", "pathlib.PosixPath", "pathlib.PurePath", "pathlib.PurePosixPath"}
_OPTIONAL = {"typing.Optional"}
_UNION = {"typing.Union"}
_NAMEDTUPLE = {"typing.NamedTuple", "typing_extensions.NamedTuple"}
_ANNOTATED = {"typing.Annotated", "typing_extensions.Annotated"}
_UNTYPED = {"typing.Any", "builtins.object"}


class SignatureError(Exception):
    """A step function cannot be turned into a component interface.

    Attributes:
        path: the source file (as given).
        lineno: 1-based line of the offending node, or ``None``.
        parameter: the parameter (or output) concerned, or ``None``.
        reason: what is wrong and what to do.
    """

    def __init__(self, path: str, lineno: Optional[int], parameter: Optional[str], reason: str) -> None:
        self.path = path
        self.lineno = lineno
        self.parameter = parameter
        self.reason = reason
        where = path if lineno is None else "{}:{}".format(path, lineno)
        what = "" if parameter is None else "parameter '{}': ".format(parameter)
        super().__init__("{}: {}{}".format(where, what, reason))


@dataclass
class Parameter:
    """One parameter of the step function.

    Attributes:
        name: the Python parameter name (also the component input/output name).
        kind: ``"value"`` (``inputValue``), ``"input_path"`` (``inputPath``, a path marker or
            ``pathlib.Path``), ``"artifact"`` (``inputPath``, unmarshalled to an object) or
            ``"output_path"`` (an output: ``outputPath``).
        type: KFP v1 type name (``Integer`` ... ``JsonObject``, the marker's type, the
            artifact class name such as ``DataFrame``) or ``None`` when untyped.
        annotation: the annotation as written (for messages), e.g. ``Optional[int]``.
        optional: the function may be called without it (a default, or ``Optional``).
        has_default: the function declares a default.
        default: the default as a Python literal when ``default_is_literal``, else ``None``.
        default_is_literal: the default could be read with :func:`ast.literal_eval`.
        positional_only: declared before ``/``; the runtime passes it positionally.
        python_path: for ``input_path``: ``True`` when annotated ``pathlib.Path``.
        lineno: line of the parameter.
    """

    name: str
    kind: str
    type: Optional[str]
    annotation: str
    optional: bool = False
    has_default: bool = False
    default: Any = None
    default_is_literal: bool = False
    positional_only: bool = False
    python_path: bool = False
    lineno: int = 0


@dataclass
class Output:
    """One output of the step.

    Attributes:
        name: output name (``output`` for a single return value, the field name for a
            ``NamedTuple``, the parameter name for ``OutputPath``).
        kind: ``"value"`` (written as text/JSON), ``"artifact"`` (marshalled) or
            ``"output_path"`` (written by the function itself).
        type: KFP v1 type name or ``None``.
        source: ``"return"``, ``"field"`` or ``"parameter"``.
        index: position of the field in the returned ``NamedTuple`` (``source == "field"``).
        annotation: as written.
        lineno: line of the annotation.
    """

    name: str
    kind: str
    type: Optional[str]
    source: str
    index: Optional[int] = None
    annotation: str = ""
    lineno: int = 0


@dataclass
class Signature:
    """The interface of one step function: parameters in declaration order, then outputs.

    ``outputs`` lists ``OutputPath`` parameters first (in parameter order), then the
    return value(s) (in ``NamedTuple`` field order).
    """

    path: str
    function: str
    lineno: int
    docstring: Optional[str]
    parameters: List[Parameter] = field(default_factory=list)
    outputs: List[Output] = field(default_factory=list)
    returns: str = "none"  # "none", "single" or "namedtuple"
    is_async: bool = False

    @property
    def inputs(self) -> List[Parameter]:
        """Parameters that are component inputs (everything but ``OutputPath``)."""
        return [p for p in self.parameters if p.kind != "output_path"]

    def parameter(self, name: str) -> Optional[Parameter]:
        """The parameter called ``name`` or ``None``."""
        for p in self.parameters:
            if p.name == name:
                return p
        return None

    def output(self, name: str) -> Optional[Output]:
        """The output called ``name`` or ``None``."""
        for o in self.outputs:
            if o.name == name:
                return o
        return None


def analyze_file(path: "str | Path", function: str, display_path: Optional[str] = None) -> Signature:
    """Analyze ``function`` in the Python file ``path``.

    Args:
        path: the source file.
        function: name of a top-level ``def`` or ``async def`` in it.
        display_path: how to name the file in messages (default: ``path``).

    Raises:
        SignatureError: the file cannot be read or parsed, or the function is refused
            (see the module docstring).
    """
    shown = display_path or str(path)
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(shown, None, None, "cannot read the file: {}".format(exc))
    return analyze_source(source, function, shown)


def analyze_source(source: str, function: str, path: str = "<string>") -> Signature:
    """Analyze ``function`` in the module source text ``source`` (``path`` is used in messages).

    Raises:
        SignatureError: see :func:`analyze_file`.
    """
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise SignatureError(path, exc.lineno, None, "not valid Python: {}".format(exc.msg))
    return _Analyzer(tree, path).signature(function)


# --------------------------------------------------------------------------------------------
# implementation


def _expr_text(node: Optional[ast.AST]) -> str:
    """A readable rendering of an annotation expression (``ast.unparse`` is 3.9+)."""
    if node is None:
        return ""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return "{}.{}".format(_expr_text(node.value), node.attr)
    if isinstance(node, ast.Constant):
        return repr(node.value) if node.value is not None else "None"
    if isinstance(node, ast.Subscript):
        return "{}[{}]".format(_expr_text(node.value), _expr_text(_subscript_slice(node)))
    if isinstance(node, ast.Tuple):
        return ", ".join(_expr_text(e) for e in node.elts)
    if isinstance(node, ast.List):
        return "[" + ", ".join(_expr_text(e) for e in node.elts) + "]"
    if isinstance(node, ast.Call):
        parts = [_expr_text(a) for a in node.args]
        parts += ["{}={}".format(k.arg, _expr_text(k.value)) for k in node.keywords]
        return "{}({})".format(_expr_text(node.func), ", ".join(parts))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return "{} | {}".format(_expr_text(node.left), _expr_text(node.right))
    return "<{}>".format(type(node).__name__)


def _subscript_slice(node: ast.Subscript) -> ast.AST:
    inner = node.slice
    index_cls = getattr(ast, "Index", None)  # Python 3.8 wraps the slice in ast.Index
    if index_cls is not None and isinstance(inner, index_cls):
        inner = inner.value  # type: ignore[attr-defined]
    return inner


def _subscript_args(node: ast.Subscript) -> List[ast.AST]:
    inner = _subscript_slice(node)
    if isinstance(inner, ast.Tuple):
        return list(inner.elts)
    return [inner]


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


class _Analyzer:
    """Resolves names through the module's imports and classifies annotations."""

    def __init__(self, tree: ast.Module, path: str) -> None:
        self.tree = tree
        self.path = path
        self.aliases: Dict[str, str] = {}  # local name -> qualified name
        self.local: Dict[str, ast.AST] = {}  # names defined by the module itself
        self.star_import = False
        self.functions: Dict[str, ast.AST] = {}
        self._collect(tree.body)

    # ---- module scan -------------------------------------------------------------------------

    def _collect(self, body: List[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        head = a.name.split(".")[0]
                        self.aliases[head] = head
            elif isinstance(node, ast.ImportFrom):
                module = ("." * (node.level or 0)) + (node.module or "")
                for a in node.names:
                    if a.name == "*":
                        self.star_import = True
                        continue
                    self.aliases[a.asname or a.name] = "{}.{}".format(module, a.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.local[node.name] = node
                self.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.local[node.name] = node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    for name in self._target_names(target):
                        self.local[name] = node
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                for name in self._target_names(node.target):
                    self.local[name] = node
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for sub in ("body", "orelse", "finalbody"):
                    self._collect(getattr(node, sub, []) or [])
                for handler in getattr(node, "handlers", []) or []:
                    self._collect(handler.body)

    @staticmethod
    def _target_names(target: ast.AST) -> List[str]:
        if isinstance(target, ast.Name):
            return [target.id]
        if isinstance(target, (ast.Tuple, ast.List)):
            names: List[str] = []
            for e in target.elts:
                names.extend(_Analyzer._target_names(e))
            return names
        return []

    # ---- name resolution ---------------------------------------------------------------------

    def qualname(self, node: ast.AST, lineno: int, param: Optional[str]) -> Optional[str]:
        """Qualified name of a ``Name``/``Attribute`` chain, or ``None`` for other nodes.

        Raises SignatureError for a head name the module neither defines nor imports.
        """
        parts: List[str] = []
        cur = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name):
            return None
        head = cur.id
        if head in self.aliases:
            base = self.aliases[head]
        elif head in self.local:
            base = "<module>." + head
        elif hasattr(builtins, head):
            base = "builtins." + head
        elif self.star_import:
            base = "<star>." + head
        else:
            known = sorted(set(self.aliases) | set(self.local) | {"int", "float", "str", "bool", "list", "dict"})
            close = difflib.get_close_matches(head, known, n=1)
            hint = " (did you mean '{}'?)".format(close[0]) if close else ""
            raise SignatureError(
                self.path, lineno, param,
                "unknown name '{}' in annotation '{}'{}: define or import it in this file".format(
                    head, _expr_text(node), hint))
        return ".".join([base] + list(reversed(parts)))

    # ---- the function ------------------------------------------------------------------------

    def signature(self, function: str) -> Signature:
        node = self.functions.get(function)
        if node is None:
            close = difflib.get_close_matches(function, sorted(self.functions), n=1)
            hint = " (did you mean '{}'?)".format(close[0]) if close else ""
            available = ", ".join(sorted(self.functions)) or "none"
            raise SignatureError(
                self.path, None, None,
                "no top-level function '{}'{}; functions defined here: {}".format(function, hint, available))
        assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        sig = Signature(
            path=self.path,
            function=function,
            lineno=node.lineno,
            docstring=ast.get_docstring(node),
            is_async=isinstance(node, ast.AsyncFunctionDef),
        )
        args = node.args
        if args.vararg is not None:
            raise SignatureError(self.path, args.vararg.lineno, "*" + args.vararg.arg,
                                 "*args cannot be a component input; declare each input as a parameter")
        if args.kwarg is not None:
            raise SignatureError(self.path, args.kwarg.lineno, "**" + args.kwarg.arg,
                                 "**kwargs cannot be a component input; declare each input as a parameter")
        posonly = list(getattr(args, "posonlyargs", []))
        positional = posonly + list(args.args)
        defaults: List[Optional[ast.expr]] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = [(a, d, i < len(posonly)) for i, (a, d) in enumerate(zip(positional, defaults))]
        pairs += [(a, d, False) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
        for arg, default, is_posonly in pairs:
            sig.parameters.append(self._parameter(arg, default, is_posonly))
        for p in sig.parameters:
            if p.kind == "output_path":
                sig.outputs.append(Output(p.name, "output_path", p.type, "parameter",
                                          annotation=p.annotation, lineno=p.lineno))
        self._returns(node, sig)
        seen: Dict[str, Output] = {}
        for o in sig.outputs:
            if o.name in seen:
                raise SignatureError(self.path, o.lineno, o.name,
                                     "two outputs are named '{}'; rename the parameter or the field".format(o.name))
            seen[o.name] = o
        return sig

    def _parameter(self, arg: ast.arg, default: Optional[ast.expr], posonly: bool) -> Parameter:
        name = arg.arg
        lineno = arg.lineno
        if arg.annotation is None:
            raise SignatureError(self.path, lineno, name,
                                 "missing type annotation; annotate it (int, float, str, bool, list, dict, "
                                 "InputPath, OutputPath, pathlib.Path or a class for an artifact)")
        ann = self._string_annotation(arg.annotation, lineno, name)
        kind, type_name, optional, python_path = self._classify(ann, lineno, name, allow_output=True)
        p = Parameter(name=name, kind=kind, type=type_name, annotation=_expr_text(ann),
                      optional=optional, positional_only=posonly, python_path=python_path, lineno=lineno)
        if optional and kind == "output_path":
            raise SignatureError(self.path, lineno, name, "an output cannot be Optional; the runtime always passes it")
        if default is not None and kind == "output_path":
            # Python needs a default after defaulted parameters; it is never used: the runtime always passes it.
            p.has_default = True
        elif default is not None:
            p.has_default = True
            p.optional = True
            try:
                p.default = ast.literal_eval(default)
                p.default_is_literal = True
            except ValueError:
                p.default = None
                p.default_is_literal = False
            if p.default_is_literal and p.default is not None and kind == "value":
                _check_default(self.path, lineno, name, type_name, p.default)
        return p

    def _string_annotation(self, ann: ast.expr, lineno: int, name: Optional[str]) -> ast.expr:
        """Parse a string annotation (``x: "int"`` or under ``from __future__ import annotations``)."""
        if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
            try:
                parsed = ast.parse(ann.value.strip(), mode="eval").body
            except SyntaxError:
                raise SignatureError(self.path, lineno, name,
                                     "annotation {!r} is not a valid expression".format(ann.value))
            return parsed
        return ann

    def _classify(self, ann: ast.expr, lineno: int, name: Optional[str],
                  allow_output: bool) -> Tuple[str, Optional[str], bool, bool]:
        """Return ``(kind, type, optional, is_pathlib)`` for an annotation."""
        ann = self._string_annotation(ann, lineno, name)
        inner, optional = self._strip_optional(ann, lineno, name)
        if optional:
            kind, type_name, _, python_path = self._classify(inner, lineno, name, allow_output)
            return kind, type_name, True, python_path
        if _is_none(ann):
            raise SignatureError(self.path, lineno, name, "None is not a type for an input")
        # Call: a marker with its type, InputPath("CSV")
        if isinstance(ann, ast.Call):
            q = self.qualname(ann.func, lineno, name)
            kind = self._marker_kind(q)
            if kind is None:
                raise SignatureError(self.path, lineno, name,
                                     "unsupported annotation '{}': only InputPath(...)/OutputPath(...) may be "
                                     "called in an annotation".format(_expr_text(ann)))
            type_name = None
            if ann.args:
                first = ann.args[0]
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    raise SignatureError(self.path, lineno, name,
                                         "the type of {} must be a string literal, e.g. {}(\"CSV\")".format(
                                             _expr_text(ann.func), _expr_text(ann.func)))
                type_name = first.value
            return self._check_output(kind, allow_output, ann, lineno, name), type_name, False, False
        if isinstance(ann, ast.Subscript):
            q = self.qualname(ann.value, lineno, name)
            if q in _ANNOTATED:
                return self._classify(_subscript_args(ann)[0], lineno, name, allow_output)
            if q in VALUE_TYPES:
                for sub in _subscript_args(ann):
                    self._check_no_marker(sub, lineno, name)
                return "value", VALUE_TYPES[q], False, False
            if q in _UNION:
                raise SignatureError(self.path, lineno, name,
                                     "'{}' is a Union of several types; use one type (or Optional[X])".format(
                                         _expr_text(ann)))
            if q is None:
                raise SignatureError(self.path, lineno, name, "unsupported annotation '{}'".format(_expr_text(ann)))
            for sub in _subscript_args(ann):
                self._check_no_marker(sub, lineno, name)
            return "artifact", q.rsplit(".", 1)[-1], False, False
        if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):
            raise SignatureError(self.path, lineno, name,
                                 "'{}' is a union of several types; use one type (or X | None)".format(_expr_text(ann)))
        q = self.qualname(ann, lineno, name)
        if q is None:
            raise SignatureError(self.path, lineno, name, "unsupported annotation '{}'".format(_expr_text(ann)))
        if q in VALUE_TYPES:
            return "value", VALUE_TYPES[q], False, False
        marker = self._marker_kind(q)
        if marker is not None:
            return self._check_output(marker, allow_output, ann, lineno, name), None, False, False
        if q in _PATH_TYPES:
            return self._check_output("input_path", allow_output, ann, lineno, name), None, False, True
        if q in _UNTYPED:
            return "artifact", None, False, False
        if q in _OPTIONAL or q in _UNION:
            raise SignatureError(self.path, lineno, name, "'{}' needs a type argument".format(_expr_text(ann)))
        return "artifact", q.rsplit(".", 1)[-1], False, False

    def _check_output(self, kind: str, allow_output: bool, ann: ast.AST, lineno: int, name: Optional[str]) -> str:
        if kind in ("output_path", "input_path") and not allow_output:
            raise SignatureError(self.path, lineno, name,
                                 "'{}' can only annotate a parameter, not a return value or field".format(_expr_text(ann)))
        return kind

    def _marker_kind(self, q: Optional[str]) -> Optional[str]:
        if q in _INPUT_PATH_MARKERS:
            return "input_path"
        if q in _OUTPUT_PATH_MARKERS:
            return "output_path"
        return None

    def _check_no_marker(self, node: ast.AST, lineno: int, name: Optional[str]) -> None:
        """Path markers are only allowed at the top of an annotation (or inside Optional)."""
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Name, ast.Attribute)):
                try:
                    q = self.qualname(sub, lineno, name)
                except SignatureError:
                    raise
                if self._marker_kind(q) is not None or q in _PATH_TYPES:
                    raise SignatureError(self.path, lineno, name,
                                         "'{}' cannot be used inside a container type".format(_expr_text(sub)))

    def _strip_optional(self, ann: ast.expr, lineno: int, name: Optional[str]) -> Tuple[ast.expr, bool]:
        """``Optional[X]``, ``Union[X, None]``, ``X | None`` -> ``(X, True)``; anything else -> ``(ann, False)``."""
        if isinstance(ann, ast.Subscript) and isinstance(ann.value, (ast.Name, ast.Attribute)):
            q = self.qualname(ann.value, lineno, name)
            members = _subscript_args(ann)
            if q in _OPTIONAL:
                return self._string_annotation(members[0], lineno, name), True  # type: ignore[arg-type]
            if q in _UNION:
                rest = [m for m in members if not _is_none(m)]
                if len(rest) == 1 and len(members) == 2:
                    return self._string_annotation(rest[0], lineno, name), True  # type: ignore[arg-type]
        if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):
            if _is_none(ann.right) and not _is_none(ann.left):
                return ann.left, True
            if _is_none(ann.left) and not _is_none(ann.right):
                return ann.right, True
        return ann, False

    # ---- return value ------------------------------------------------------------------------

    def _returns(self, node: ast.AST, sig: Signature) -> None:
        ann = node.returns  # type: ignore[attr-defined]
        lineno = node.lineno  # type: ignore[attr-defined]
        if ann is None:
            value_return = _value_return(node)
            if value_return is not None:
                raise SignatureError(self.path, value_return.lineno, "return",
                                     "the function returns a value but has no return annotation; annotate "
                                     "it (-> int, -> NamedTuple(...), -> pd.DataFrame, ...) or return nothing")
            return
        lineno = getattr(ann, "lineno", lineno)
        ann = self._string_annotation(ann, lineno, "return")
        if _is_none(ann):
            return
        fields = self._namedtuple_fields(ann, lineno)
        if fields is not None:
            sig.returns = "namedtuple"
            for index, (fname, fann) in enumerate(fields):
                kind, type_name = self._output_kind(fann, lineno, fname)
                sig.outputs.append(Output(fname, kind, type_name, "field", index=index,
                                          annotation=_expr_text(fann), lineno=lineno))
            return
        kind, type_name = self._output_kind(ann, lineno, "return")
        sig.returns = "single"
        sig.outputs.append(Output(RETURN_OUTPUT, kind, type_name, "return", annotation=_expr_text(ann), lineno=lineno))

    def _output_kind(self, ann: ast.expr, lineno: int, name: str) -> Tuple[str, Optional[str]]:
        ann = self._string_annotation(ann, lineno, name)
        _, optional = self._strip_optional(ann, lineno, name)
        if optional:
            raise SignatureError(self.path, lineno, name,
                                 "an output cannot be Optional ('{}'): a step must always write its outputs".format(
                                     _expr_text(ann)))
        kind, type_name, _, _ = self._classify(ann, lineno, name, allow_output=False)
        return ("value" if kind == "value" else "artifact"), type_name

    def _namedtuple_fields(self, ann: ast.expr, lineno: int) -> Optional[List[Tuple[str, ast.expr]]]:
        """Fields of a NamedTuple return annotation (inline call, or a class/assignment of this module)."""
        if isinstance(ann, ast.Call):
            q = self.qualname(ann.func, lineno, "return")
            if q in _NAMEDTUPLE:
                return self._namedtuple_call_fields(ann, lineno)
            return None
        if not isinstance(ann, ast.Name) or ann.id not in self.local or ann.id in self.aliases:
            return None
        definition = self.local[ann.id]
        if isinstance(definition, ast.ClassDef):
            bases = []
            for b in definition.bases:
                try:
                    bases.append(self.qualname(b, definition.lineno, "return"))
                except SignatureError:
                    bases.append(None)
            if not any(b in _NAMEDTUPLE for b in bases):
                return None
            fields = [(s.target.id, s.annotation) for s in definition.body
                      if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
            if not fields:
                raise SignatureError(self.path, definition.lineno, "return",
                                     "NamedTuple '{}' has no annotated fields".format(ann.id))
            return fields
        if isinstance(definition, ast.Assign) and isinstance(definition.value, ast.Call):
            q = self.qualname(definition.value.func, definition.lineno, "return")
            if q in _NAMEDTUPLE:
                return self._namedtuple_call_fields(definition.value, definition.lineno)
            if q in ("collections.namedtuple",):
                raise SignatureError(self.path, definition.lineno, "return",
                                     "collections.namedtuple '{}' has no field types; use typing.NamedTuple".format(
                                         ann.id))
        return None

    def _namedtuple_call_fields(self, call: ast.Call, lineno: int) -> List[Tuple[str, ast.expr]]:
        fields: List[Tuple[str, ast.expr]] = []
        if len(call.args) >= 2:
            spec = call.args[1]
            if not isinstance(spec, (ast.List, ast.Tuple)):
                raise SignatureError(self.path, lineno, "return",
                                     "NamedTuple fields must be a literal list of (name, type) pairs")
            for item in spec.elts:
                if not (isinstance(item, (ast.Tuple, ast.List)) and len(item.elts) == 2
                        and isinstance(item.elts[0], ast.Constant) and isinstance(item.elts[0].value, str)):
                    raise SignatureError(self.path, lineno, "return",
                                         "NamedTuple field '{}' must be a (\"name\", type) pair".format(
                                             _expr_text(item)))
                fields.append((item.elts[0].value, item.elts[1]))  # type: ignore[union-attr]
        for kw in call.keywords:
            if kw.arg is None:
                raise SignatureError(self.path, lineno, "return", "NamedTuple fields cannot come from **kwargs")
            fields.append((kw.arg, kw.value))
        if not fields:
            raise SignatureError(self.path, lineno, "return", "NamedTuple return type has no fields")
        return fields


def _value_return(func: ast.AST) -> Optional[ast.Return]:
    """The first ``return <value>`` of ``func`` itself (not of nested functions or classes)."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return) and node.value is not None and not _is_none(node.value):
            return node
        stack.extend(ast.iter_child_nodes(node))
    return None


_DEFAULT_TYPES = {
    "Integer": (int,),
    "Float": (int, float),
    "String": (str,),
    "Boolean": (bool,),
    "JsonArray": (list, tuple),
    "JsonObject": (dict,),
}


def _check_default(path: str, lineno: int, name: str, type_name: Optional[str], value: Any) -> None:
    allowed = _DEFAULT_TYPES.get(type_name or "")
    if allowed is None:
        return
    ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    if not ok:
        raise SignatureError(path, lineno, name,
                             "default {!r} is not a valid {} value".format(value, type_name))
