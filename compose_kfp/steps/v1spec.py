"""Our own reader of the KFP v1 component specification: a ``component.yaml`` -> :class:`ComponentSpec`.

The specification is https://www.kubeflow.org/docs/components/pipelines/v1/reference/component-spec/
(the data model of ``kfp.components.structures`` of KFP 1.8, resolved by
``kfp.components._components._resolve_command_line_and_paths``). What is read:

- ``name``, ``description``, ``metadata.annotations``;
- ``inputs`` / ``outputs``: lists of ``{name, type, description, default, optional}``
  (``default`` and ``optional`` for inputs only); ``default`` is a string, number or
  boolean; ``type`` a name or a one-key mapping (``{GCSPath: {...}}``);
- ``implementation.container``: ``image``, ``command``, ``args``, ``env`` and
  ``fileOutputs`` (an output the command writes at a fixed path of its own);
- every command-line placeholder, nested to any depth: ``{inputValue: x}``,
  ``{inputPath: x}``, ``{outputPath: y}``, ``{concat: [...]}``, ``{isPresent: x}`` and
  ``{if: {cond: ..., then: ..., else: ...}}`` whose branches are a single argument or a
  list of arguments (both are the specification's forms).

Refused with a :class:`~compose_kfp.errors.StepError` naming the file and the key path:
a ``graph`` implementation, a placeholder naming an input or output that does not exist,
an output given both by ``fileOutputs`` and by ``{outputPath}`` (KFP v1 refuses the two
different paths), ``inputUri`` / ``outputUri`` / ``executorInput`` and the executor-input
string ``{{$}}`` (KFP v1 turns them into KFP v2 launcher placeholders that a plain Argo
workflow leaves unresolved), unknown placeholder kinds, and malformed files.

YAML: component files are read with :func:`load_yaml`, where only ``true`` / ``false``
(any case) are booleans, as in YAML 1.2. The YAML 1.1 words ``yes``, ``no``, ``on``,
``off`` stay the strings the author wrote, so ``- {name: off}`` is an input called
``off``; where the specification expects a boolean (``optional``) they are read as
booleans, the way ``strtobool`` reads them. A name that YAML still reads as something
else (``true``, ``1``, ``null``) is refused with the value and the fix: quote it.

:func:`kfp_v2_obstacles` lists what the KFP v2 SDK cannot express of a component that
this reader accepts (the ``kfp`` render target refuses such a step; Argo renders it).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compose_kfp.errors import StepError
from compose_kfp.steps.component import Arg, ComponentSpec, InputSpec, OutputSpec

__all__ = ["SUPPORTED_PLACEHOLDERS", "check_image", "check_placeholders", "kfp_v2_obstacles", "load_yaml",
           "read_v1_component", "text_value"]

#: Placeholder kinds a loaded component may use.
SUPPORTED_PLACEHOLDERS = ("inputValue", "inputPath", "outputPath", "concat", "if", "isPresent")

#: Placeholders that only the KFP v2 launcher resolves, with what they stand for.
KFP_V2_ONLY = {
    "inputUri": "the URI of an input artifact in the KFP v2 artifact store",
    "outputUri": "the URI of an output artifact in the KFP v2 artifact store",
    "executorInput": "the KFP v2 executor input (JSON given to the component by the KFP v2 launcher)",
    "inputMetadata": "KFP v2 artifact metadata",
    "outputMetadata": "KFP v2 artifact metadata",
}
#: The end of a refusal of a :data:`KFP_V2_ONLY` placeholder.
V2_REFUSAL = ("; compose-kfp renders plain Argo workflows that pass files, where this does not exist. "
              "Use a component that takes {inputPath}/{outputPath} instead")

_TRUE_WORDS = {"y", "yes", "t", "true", "on", "1"}
_FALSE_WORDS = {"n", "no", "f", "false", "off", "0"}
_BOOL_TAG = "tag:yaml.org,2002:bool"


@functools.cache
def _component_loader() -> type:
    """``yaml.SafeLoader`` whose only booleans are ``true``/``false`` (YAML 1.2 core schema); built on first use,
    so that a project of function steps never imports yaml."""
    import yaml

    class ComponentLoader(yaml.SafeLoader):
        pass

    ComponentLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    ComponentLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                          list("tTfF"))
    return ComponentLoader


def load_yaml(text: str, *, source: str) -> list[Any]:
    """The YAML documents of a component file, read as described in the module docstring.

    Returns:
        Every non-empty document, in order (normally one).

    Raises:
        StepError: ``<source>:<line>: not valid YAML: ...``.
    """
    import yaml

    try:
        docs = list(yaml.load_all(text, Loader=_component_loader()))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise StepError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    return [d for d in docs if d is not None]


def text_value(value: Any) -> str | None:
    """A v1 default/description/env value as the string KFP v1 stores (JSON for lists and mappings)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _flag(value: Any, source: str, at: str) -> bool:
    """A boolean of the specification: ``true``/``false``, or a ``strtobool`` word (``yes``, ``off``, ...)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise StepError(f"{source}: {at}: expected true or false, got {value!r}")


def _type_name(value: Any, source: str, at: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        return str(next(iter(value)))
    raise StepError(f"{source}: {at}.type: expected a type name or a one-key mapping, got {value!r}")


def _yaml_word(value: Any) -> str:
    """How a non-string scalar was most likely written: ``true``, ``1``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _interface(doc: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise StepError(f"{source}: `{key}` must be a list of {{name: ...}} mappings, got {type(items).__name__}")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise StepError(f"{source}: {key}[{i}] must be a mapping with a non-empty `name`, got {item!r}")
        name = item.get("name")
        if "name" in item and (name is None or isinstance(name, (bool, int, float))):
            word = _yaml_word(name)
            what = "a boolean" if isinstance(name, bool) else "null" if name is None else "a number"
            raise StepError(f"{source}: {key}[{i}].name: YAML reads {word} as {what}, not as a name; quote it "
                            f"(name: '{word}') to call the {key[:-1]} {word!r}")
        if not isinstance(name, str) or not name:
            raise StepError(f"{source}: {key}[{i}] must be a mapping with a non-empty `name`, got {item!r}")
        if name in seen:
            raise StepError(f"{source}: {key}[{i}]: two {key} are named {name!r}")
        seen.add(name)
    return items


def _default(value: Any, source: str, at: str) -> str | None:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise StepError(f"{source}: {at}: a default must be a string, number or boolean, got {value!r}; "
                        f"write a list or mapping as a JSON string ('{json.dumps(value)}')")
    return text_value(value)


def read_v1_component(doc: Mapping[str, Any], source: str) -> ComponentSpec:
    """The :class:`ComponentSpec` of a KFP v1 component document (a mapping with ``implementation``).

    Args:
        doc: the document as :func:`load_yaml` read it.
        source: the file, named at the start of every message.

    Returns:
        A spec with the file's own ``image`` (``None`` if it has none), inputs and outputs in
        file order, ``command``/``args`` exactly as written and ``fileOutputs`` as pairs.

    Raises:
        StepError: see the module docstring.
    """
    impl = doc["implementation"]
    if not isinstance(impl, Mapping):
        raise StepError(f"{source}: `implementation` must be a mapping with `container`")
    if "graph" in impl:
        raise StepError(f"{source}: implementation.graph: a graph component (a pipeline of other components) "
                        f"cannot be a step; add its components as separate steps and connect them in "
                        f"[pipeline.tasks]")
    container = impl.get("container")
    if not isinstance(container, Mapping):
        raise StepError(f"{source}: implementation.container is missing; only container components can be steps")
    inputs = tuple(
        InputSpec(
            name=item["name"],
            type=_type_name(item.get("type"), source, f"inputs[{i}]"),
            description=text_value(item.get("description")),
            default=_default(item.get("default"), source, f"inputs[{i}].default"),
            optional=_flag(item.get("optional"), source, f"inputs[{i}].optional"),
        )
        for i, item in enumerate(_interface(doc, "inputs", source))
    )
    outputs = tuple(
        OutputSpec(
            name=item["name"],
            type=_type_name(item.get("type"), source, f"outputs[{i}]"),
            description=text_value(item.get("description")),
        )
        for i, item in enumerate(_interface(doc, "outputs", source))
    )
    image = container.get("image")
    check_image(image, source, "implementation.container.image")
    command = _arg_list(container.get("command"), source, "implementation.container.command")
    args = _arg_list(container.get("args"), source, "implementation.container.args")
    env = container.get("env") or {}
    if not isinstance(env, Mapping):
        raise StepError(f"{source}: implementation.container.env must be a mapping of names to values")
    file_outputs = _file_outputs(container.get("fileOutputs"), {o.name for o in outputs}, source)
    metadata = doc.get("metadata") or {}
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    spec = ComponentSpec(
        name=str(doc.get("name") or Path(source).stem),
        description=text_value(doc.get("description")),
        inputs=inputs,
        outputs=outputs,
        image=image,
        command=command,
        args=args,
        env=tuple((str(k), text_value(v) or "") for k, v in env.items()),
        source=source,
        annotations=tuple((str(k), text_value(v) or "") for k, v in (annotations or {}).items()),
        file_outputs=file_outputs,
    )
    check_placeholders(spec, source)
    written = {name for kind, name in spec.placeholders() if kind == "outputPath"}
    for name, path in file_outputs:
        if name in written:
            raise StepError(f"{source}: implementation.container.fileOutputs.{name}: output {name!r} is also given "
                            f"by an {{outputPath: {name}}} placeholder; KFP v1 takes one path per output (keep "
                            f"either the placeholder or {path})")
    return spec


def _file_outputs(value: Any, out_names: set[str], source: str) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    if not isinstance(value, Mapping):
        raise StepError(f"{source}: implementation.container.fileOutputs must map output names to paths")
    for name, out_path in value.items():
        if name not in out_names:
            raise StepError(f"{source}: implementation.container.fileOutputs.{name}: names no output of the "
                            f"component (outputs: {', '.join(sorted(out_names)) or 'none'})")
        if not isinstance(out_path, str) or not out_path.startswith("/") or ".." in out_path.split("/"):
            raise StepError(f"{source}: implementation.container.fileOutputs.{name}: expected an absolute path "
                            f"without '..', got {out_path!r}")
    return tuple((str(k), str(v)) for k, v in value.items())


def check_image(image: Any, source: str, at: str) -> None:
    """Refuse a component image that is not a valid image reference (the distribution reference grammar,
    :meth:`compose_kfp.oci.reference.Reference.parse`); ``None`` (no image) passes.

    Raises:
        StepError: ``<source>: <at>: invalid image reference ...`` (credentials in it are never shown).
    """
    if image is None:
        return
    from compose_kfp.oci.errors import InvalidReference
    from compose_kfp.oci.reference import Reference, redact_userinfo

    if not isinstance(image, str):
        raise StepError(f"{source}: {at} must be a string, got {type(image).__name__}")
    try:
        Reference.parse(image)
    except InvalidReference as exc:
        raise StepError(f"{source}: {at}: {redact_userinfo(str(exc))}") from None


def _arg_list(value: Any, source: str, at: str) -> tuple[Arg, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise StepError(f"{source}: {at} must be a list, got {type(value).__name__}")
    return tuple(value)


def check_placeholders(spec: ComponentSpec, source: str) -> None:
    """Check every argument of ``spec.command`` and ``spec.args`` against the v1 specification.

    An argument is a string, number or boolean, or a one-key placeholder mapping; ``concat``
    takes a list of arguments, ``if`` a mapping of ``cond``, ``then`` and optionally ``else``
    whose branches are one argument or a list of arguments. Placeholders must name declared
    inputs (``inputValue``, ``inputPath``, ``isPresent``) or outputs (``outputPath``).

    Raises:
        StepError: ``<source>: implementation.container.<key path>: ...`` naming the placeholder.
    """
    inputs = {i.name for i in spec.inputs}
    outputs = {o.name for o in spec.outputs}

    def where(at: str) -> str:
        return f"{source}: implementation.container.{at}"

    def walk_list(items: Any, at: str) -> None:
        for n, item in enumerate(items):
            walk(item, f"{at}[{n}]")

    def walk(arg: Any, at: str) -> None:
        if arg is None or isinstance(arg, (bool, int, float)):
            return
        if isinstance(arg, str):
            if "{{$}}" in arg:
                raise StepError(f"{where(at)}: the string {arg!r} is the KFP v2 executor-input placeholder "
                                f"({KFP_V2_ONLY['executorInput']}){V2_REFUSAL}")
            return
        if not isinstance(arg, Mapping) or len(arg) != 1:
            raise StepError(f"{where(at)}: expected a string or a one-key placeholder mapping, got {arg!r}")
        (kind, inner), = arg.items()
        shown = f"{{{kind}: {inner!r}}}" if not isinstance(inner, (Mapping, list)) else f"{{{kind}: ...}}"
        if kind in KFP_V2_ONLY:
            raise StepError(f"{where(at)}: placeholder {shown} needs {KFP_V2_ONLY[kind]}{V2_REFUSAL}")
        if kind in ("inputValue", "inputPath", "isPresent"):
            if not isinstance(inner, str) or inner not in inputs:
                raise StepError(f"{where(at)}: placeholder {shown} names no input of the component "
                                f"(inputs: {', '.join(sorted(inputs)) or 'none'})")
            return
        if kind == "outputPath":
            if not isinstance(inner, str) or inner not in outputs:
                raise StepError(f"{where(at)}: placeholder {shown} names no output of the component "
                                f"(outputs: {', '.join(sorted(outputs)) or 'none'})")
            return
        if kind == "concat":
            if not isinstance(inner, list):
                raise StepError(f"{where(at)}: placeholder {{concat: ...}} needs a list, got {inner!r}")
            walk_list(inner, f"{at}.concat")
            return
        if kind == "if":
            if not isinstance(inner, Mapping) or "cond" not in inner or not set(inner) <= {"cond", "then", "else"}:
                raise StepError(f"{where(at)}: placeholder {{if: ...}} needs a mapping with `cond`, `then` and "
                                f"optionally `else`, got {inner!r}")
            walk(inner["cond"], f"{at}.if.cond")
            for branch in ("then", "else"):
                value = inner.get(branch)
                if isinstance(value, list):
                    walk_list(value, f"{at}.if.{branch}")
                else:
                    walk(value, f"{at}.if.{branch}")
            return
        raise StepError(f"{where(at)}: unknown placeholder {shown}; supported: {', '.join(SUPPORTED_PLACEHOLDERS)}")

    walk_list(spec.command, "command")
    walk_list(spec.args, "args")


def kfp_v2_obstacles(spec: ComponentSpec) -> tuple[str, ...]:
    """What of ``spec`` (valid KFP v1) the KFP v2 SDK (``kfp.components.load_component_from_text``) cannot express.

    Returns:
        One sentence per obstacle, starting with its key path (``command[1].if.else: ...``),
        in command-then-args order, then ``fileOutputs``; empty when the SDK can load it as
        it is. The obstacles, as KFP 2.x reads v1 files: an ``if`` whose condition is not
        ``{isPresent: x}``; an ``if`` branch that is a single placeholder rather than a string
        or a list; an ``if`` with list branches inside ``concat``; ``fileOutputs`` (the SDK
        drops them, so the output would never be collected).
    """
    found: list[str] = []

    def walk(arg: Any, at: str, in_concat: bool) -> None:
        if isinstance(arg, list):
            for n, item in enumerate(arg):
                walk(item, f"{at}[{n}]", in_concat)
            return
        if not isinstance(arg, Mapping) or len(arg) != 1:
            return
        (kind, inner), = arg.items()
        if kind == "concat" and isinstance(inner, list):
            for n, item in enumerate(inner):
                walk(item, f"{at}.concat[{n}]", True)
        if kind != "if" or not isinstance(inner, Mapping):
            return
        cond = inner.get("cond")
        if not (isinstance(cond, Mapping) and set(cond) == {"isPresent"}):
            found.append(f"{at}.if.cond: the condition {cond!r} is not {{isPresent: INPUT}}, the only condition "
                         f"KFP v2 has")
        for branch in ("then", "else"):
            value = inner.get(branch)
            if isinstance(value, Mapping):
                found.append(f"{at}.if.{branch}: the branch is a single placeholder ({_short(value)}), which KFP v2 "
                             f"takes only as a string or a list")
            elif isinstance(value, list) and in_concat:
                found.append(f"{at}.if.{branch}: a list branch of an `if` inside `concat`, which KFP v2 does not "
                             f"allow (only a single string or placeholder there)")
            if value is not None:
                walk(value, f"{at}.if.{branch}", in_concat)

    for n, arg in enumerate(spec.command):
        walk(arg, f"command[{n}]", False)
    for n, arg in enumerate(spec.args):
        walk(arg, f"args[{n}]", False)
    for name, path in spec.file_outputs:
        found.append(f"fileOutputs.{name}: output {name!r} is written at the fixed path {path}, which KFP v2 cannot "
                     f"collect (its SDK drops fileOutputs)")
    return tuple(found)


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (Mapping, list)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

