"""The component interface every step resolves to: a KFP v1 component spec.

A step of ``kfp.toml`` is either a Python function (turned into a spec by
:mod:`compose_kfp.steps.introspect`) or a third-party component file (parsed by
:mod:`compose_kfp.steps.components`). Both end as a :class:`ComponentSpec`, the
in-memory form of the KFP v1 ``component.yaml`` format
(https://www.kubeflow.org/docs/components/pipelines/v1/reference/component-spec/),
which is what renderers, the task graph and the local runner consume.

Command-line arguments keep the v1 placeholder structure verbatim: a ``str``
or a one-key ``dict`` such as ``{"inputValue": "x"}``, ``{"inputPath": "x"}``,
``{"outputPath": "y"}``, ``{"concat": [...]}``,
``{"if": {"cond": {"isPresent": "x"}, "then": [...], "else": [...]}}``.
Third-party commands are never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Literal, Mapping, Union

Arg = Union[str, Mapping[str, Any]]
"""One element of ``command``/``args``: a literal string or a v1 placeholder dict."""

#: KFP v1 type names passed by value (``inputValue``), with the Python type they carry.
PARAMETER_TYPES: dict[str, type] = {
    "String": str,
    "Integer": int,
    "Float": float,
    "Boolean": bool,
    "JsonArray": list,
    "JsonObject": dict,
}

#: Legacy/alias spellings found in real v1 component files, mapped to the names above.
TYPE_ALIASES: dict[str, str] = {
    "str": "String", "Str": "String", "string": "String",
    "int": "Integer", "Int": "Integer", "integer": "Integer",
    "float": "Float", "Double": "Float",
    "bool": "Boolean", "Bool": "Boolean", "boolean": "Boolean",
    "list": "JsonArray", "List": "JsonArray", "dict": "JsonObject", "Dict": "JsonObject",
}


def canonical_type(type_name: Any) -> str | None:
    """Return the canonical v1 type name for ``type_name`` (``None`` stays ``None``; unknown names pass through).

    A dict type such as ``{"GCSPath": {...}}`` is reduced to its key.
    """
    if type_name is None:
        return None
    if isinstance(type_name, Mapping):
        type_name = next(iter(type_name), None)
        if type_name is None:
            return None
    name = str(type_name)
    return TYPE_ALIASES.get(name, name)


def types_compatible(output_type: str | None, input_type: str | None) -> bool:
    """Whether an output of ``output_type`` may feed an input of ``input_type``.

    Untyped on either side is compatible (as in KFP v1); ``Integer`` may feed
    ``Float``; ``String`` accepts any parameter type; otherwise the canonical
    names must be equal.
    """
    out_t, in_t = canonical_type(output_type), canonical_type(input_type)
    if out_t is None or in_t is None or out_t == in_t:
        return True
    if (out_t, in_t) == ("Integer", "Float"):
        return True
    if in_t == "String" and out_t in PARAMETER_TYPES:
        return True
    return False


@dataclass(frozen=True)
class InputSpec:
    """One component input.

    ``default`` is kept as the string KFP v1 stores (``"100"``, ``"0.2"``,
    ``"true"``, JSON for lists and dicts), or ``None`` when there is none.
    An input with a default, or marked ``optional``, need not get an argument.
    """

    name: str
    type: str | None = None
    description: str | None = None
    default: str | None = None
    optional: bool = False

    @property
    def required(self) -> bool:
        """True when a task must pass an argument for this input."""
        return self.default is None and not self.optional


@dataclass(frozen=True)
class OutputSpec:
    """One component output; it is always written to a file (``outputPath``)."""

    name: str
    type: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class ComponentSpec:
    """A container component: interface plus ``implementation.container``.

    Attributes:
        name: human-readable component name.
        description: first docstring paragraph or the file's ``description``.
        inputs / outputs: in declaration order.
        image: image reference; ``None`` for a Python step until the image digest is known.
        command / args: v1 argument lists (see module docstring).
        env: extra container environment, in order.
        source: where the spec came from (``src/iris.py:train`` or a file path), for messages.
        python_function: ``"path.py:function"`` when the step runs through ``compose_kfp.runtime``.
        file_outputs: KFP v1 ``fileOutputs``: ``(output name, absolute path)`` pairs for outputs the
            command writes at a fixed path of its own instead of an ``outputPath`` placeholder.
    """

    name: str
    description: str | None = None
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    image: str | None = None
    command: tuple[Arg, ...] = ()
    args: tuple[Arg, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    source: str = ""
    python_function: str | None = None
    annotations: tuple[tuple[str, str], ...] = field(default=())
    file_outputs: tuple[tuple[str, str], ...] = ()

    def input(self, name: str) -> InputSpec | None:
        """The input called ``name``, or ``None``."""
        return next((i for i in self.inputs if i.name == name), None)

    def output(self, name: str) -> OutputSpec | None:
        """The output called ``name``, or ``None``."""
        return next((o for o in self.outputs if o.name == name), None)

    def with_image(self, image: str) -> "ComponentSpec":
        """A copy whose ``image`` is ``image`` (normally ``repository@sha256:...``)."""
        return replace(self, image=image)

    def placeholders(self) -> Iterator[tuple[str, str]]:
        """Yield ``(kind, name)`` for every placeholder in command and args, nested ones included.

        ``kind`` is one of ``inputValue``, ``inputPath``, ``outputPath``, ``isPresent``.
        """
        yield from _walk_placeholders(list(self.command) + list(self.args))

    def input_usage(self, name: str) -> Literal["value", "path", "unused"]:
        """How the command consumes input ``name``: by value, as a file path, or not at all.

        An input used both ways is reported as ``"path"`` (the value is then also
        available, which the renderer handles).
        """
        kinds = {k for k, n in self.placeholders() if n == name and k in ("inputValue", "inputPath")}
        if "inputPath" in kinds:
            return "path"
        if "inputValue" in kinds:
            return "value"
        return "unused"

    def to_dict(self) -> dict[str, Any]:
        """The KFP v1 ``component.yaml`` structure (plain dicts and lists, ready for YAML)."""
        doc: dict[str, Any] = {"name": self.name}
        if self.description:
            doc["description"] = self.description
        if self.inputs:
            doc["inputs"] = [_drop_none({"name": i.name, "type": i.type, "description": i.description,
                                         "default": i.default, "optional": i.optional or None})
                             for i in self.inputs]
        if self.outputs:
            doc["outputs"] = [_drop_none({"name": o.name, "type": o.type, "description": o.description})
                              for o in self.outputs]
        container: dict[str, Any] = {"image": self.image}
        if self.command:
            container["command"] = [_plain(a) for a in self.command]
        if self.args:
            container["args"] = [_plain(a) for a in self.args]
        if self.env:
            container["env"] = dict(self.env)
        if self.file_outputs:
            container["fileOutputs"] = dict(self.file_outputs)
        doc["implementation"] = {"container": container}
        return doc


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _walk_placeholders(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk_placeholders(v)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if key in ("inputValue", "inputPath", "outputPath", "isPresent") and isinstance(inner, str):
                yield key, inner
            else:
                yield from _walk_placeholders(inner)
