"""Third-party component files -> :class:`~compose_kfp.steps.component.ComponentSpec`, and the spec of every step.

:func:`load_component_file` reads

- a **KFP v1 component file** (``name``/``inputs``/``outputs``/``implementation.container``,
  https://www.kubeflow.org/docs/components/pipelines/v1/reference/component-spec/): its
  ``command`` and ``args`` are kept verbatim, never rewritten;
- a **compiled KFP v2 file** (``PipelineSpec`` IR, as written by ``kfp.compiler.Compiler``)
  when it holds a single container component: its v2 placeholder strings are translated
  to the equivalent v1 placeholders (``{{$.inputs.parameters['x']}}`` -> ``{inputValue: x}``,
  ``{{$.inputs.artifacts['x'].path}}`` -> ``{inputPath: x}``,
  ``{{$.outputs.parameters['y'].output_file}}`` / ``{{$.outputs.artifacts['y'].path}}`` ->
  ``{outputPath: y}``, ``{"Concat": [...]}`` -> ``{concat: [...]}``,
  ``{"IfPresent": {...}}`` -> ``{if: {cond: {isPresent: x}, then: ..., else: ...}}``; a
  placeholder inside a longer string becomes a ``concat``).

Both are also loaded with the KFP SDK (``kfp.components.load_component_from_text``), so a
file the SDK refuses is refused here too, with the SDK's reason.

Placeholders understood (what the task graph and the Argo renderer resolve):
``inputValue``, ``inputPath``, ``outputPath``, ``concat``, ``if`` (``cond``/``then``/``else``),
``isPresent``, and ``fileOutputs`` (an output the command writes at a fixed path).
Refused with a :class:`~compose_kfp.errors.StepError` naming the file and the placeholder:
a ``graph`` implementation, a placeholder naming an input or output that does not exist,
``inputUri``/``outputUri``/``executorInput`` and the v2 executor-input string ``{{$}}``
(they need the KFP v2 launcher and its artifact store, which a plain Argo workflow does
not have), unknown placeholder kinds, and malformed files.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compose_kfp.steps.component import Arg, ComponentSpec, InputSpec, OutputSpec
from compose_kfp.errors import StepError

__all__ = ["SUPPORTED_PLACEHOLDERS", "load_component_file", "load_component_text", "step_components"]

log = logging.getLogger(__name__)

#: Placeholder kinds a loaded component may use.
SUPPORTED_PLACEHOLDERS = ("inputValue", "inputPath", "outputPath", "concat", "if", "isPresent")

_KFP_V2_ONLY = {
    "inputUri": "the URI of an input artifact in the KFP v2 artifact store",
    "outputUri": "the URI of an output artifact in the KFP v2 artifact store",
    "executorInput": "the KFP v2 executor input (JSON given to the component by the KFP v2 launcher)",
    "inputMetadata": "KFP v2 artifact metadata",
    "outputMetadata": "KFP v2 artifact metadata",
}
_V2_REFUSAL = ("; compose-kfp renders plain Argo workflows that pass files, where this does not exist. "
               "Use a component that takes {inputPath}/{outputPath} instead")


def load_component_file(path: Path) -> ComponentSpec:
    """Load a KFP v1 component file, or a compiled KFP v2 single-container component, from ``path``.

    Returns:
        A spec with the file's own ``image`` (``None`` if the file has none), ``source``
        set to ``str(path)``, inputs and outputs in file order, and for v1 files the
        ``command``/``args`` exactly as written.

    Raises:
        StepError: the file cannot be read, is not YAML, is not a component, has a ``graph``
            implementation, or uses a placeholder that is unsupported or names a missing
            input/output; the message names the file and the placeholder or key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StepError(f"{path}: cannot read the component file: {exc}") from exc
    return load_component_text(text, source=str(path))


def load_component_text(text: str, *, source: str) -> ComponentSpec:
    """Like :func:`load_component_file` for the file's text; ``source`` names it in messages."""
    import yaml  # here: a project of function steps reads no YAML

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise StepError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if not isinstance(doc, Mapping):
        raise StepError(f"{source}: a component file must be a YAML mapping, got {type(doc).__name__}")
    if "implementation" in doc:
        spec = _load_v1(doc, source)
    elif "deploymentSpec" in doc or "pipelineInfo" in doc or "root" in doc:
        spec = _load_v2(doc, source)
    else:
        raise StepError(f"{source}: not a KFP component: expected `implementation` (a KFP v1 component) or "
                        f"`deploymentSpec`/`root` (a compiled KFP v2 file)")
    _check_with_kfp(text, source)
    return spec


def _check_with_kfp(text: str, source: str) -> None:
    """Let the KFP SDK parse the file too; its refusal becomes a StepError."""
    from kfp import components as kfp_components  # imported lazily: slow to import

    try:
        kfp_components.load_component_from_text(text)
    except Exception as exc:  # noqa: BLE001 - the SDK raises many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StepError(f"{source}: the KFP SDK refuses this component: {type(exc).__name__}: {first}") from exc


# ---- KFP v1 -------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A v1 default/description as the string KFP v1 stores."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _type_name(value: Any, source: str, at: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        return str(next(iter(value)))
    raise StepError(f"{source}: {at}.type: expected a type name or a one-key mapping, got {value!r}")


def _v1_interface(doc: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise StepError(f"{source}: `{key}` must be a list of {{name: ...}} mappings, got {type(items).__name__}")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
            raise StepError(f"{source}: {key}[{i}] must be a mapping with a non-empty `name`, got {item!r}")
        if item["name"] in seen:
            raise StepError(f"{source}: {key}[{i}]: two {key} are named {item['name']!r}")
        seen.add(item["name"])
    return items


def _load_v1(doc: Mapping[str, Any], source: str) -> ComponentSpec:
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
            description=_text(item.get("description")),
            default=_text(item.get("default")),
            optional=bool(item.get("optional", False)),
        )
        for i, item in enumerate(_v1_interface(doc, "inputs", source))
    )
    outputs = tuple(
        OutputSpec(
            name=item["name"],
            type=_type_name(item.get("type"), source, f"outputs[{i}]"),
            description=_text(item.get("description")),
        )
        for i, item in enumerate(_v1_interface(doc, "outputs", source))
    )
    image = container.get("image")
    if image is not None and not isinstance(image, str):
        raise StepError(f"{source}: implementation.container.image must be a string, got {image!r}")
    _check_image(image, source, "implementation.container.image")
    command = _arg_list(container.get("command"), source, "implementation.container.command")
    args = _arg_list(container.get("args"), source, "implementation.container.args")
    env = container.get("env") or {}
    if not isinstance(env, Mapping):
        raise StepError(f"{source}: implementation.container.env must be a mapping of names to values")
    file_outputs = container.get("fileOutputs") or {}
    if not isinstance(file_outputs, Mapping):
        raise StepError(f"{source}: implementation.container.fileOutputs must map output names to paths")
    out_names = {o.name for o in outputs}
    for name, out_path in file_outputs.items():
        if name not in out_names:
            raise StepError(f"{source}: implementation.container.fileOutputs.{name}: names no output of the "
                            f"component (outputs: {', '.join(sorted(out_names)) or 'none'})")
        if not isinstance(out_path, str) or not out_path.startswith("/"):
            raise StepError(f"{source}: implementation.container.fileOutputs.{name}: expected an absolute path, "
                            f"got {out_path!r}")
    spec_kwargs: dict[str, Any] = {}
    if file_outputs:
        spec_kwargs["file_outputs"] = tuple((str(k), str(v)) for k, v in file_outputs.items())
    metadata = doc.get("metadata") or {}
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    spec = ComponentSpec(
        name=str(doc.get("name") or Path(source).stem),
        description=_text(doc.get("description")),
        inputs=inputs,
        outputs=outputs,
        image=image,
        command=command,
        args=args,
        env=tuple((str(k), _text(v) or "") for k, v in env.items()),
        source=source,
        annotations=tuple((str(k), _text(v) or "") for k, v in (annotations or {}).items()),
        **spec_kwargs,
    )
    _check_placeholders(spec, source)
    return spec


def _check_image(image: Any, source: str, at: str) -> None:
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


def _check_placeholders(spec: ComponentSpec, source: str) -> None:
    inputs = {i.name for i in spec.inputs}
    outputs = {o.name for o in spec.outputs}

    def where(at: str) -> str:
        return f"{source}: implementation.container.{at}"

    def walk(arg: Any, at: str) -> None:
        if arg is None or isinstance(arg, (bool, int, float)):
            return
        if isinstance(arg, str):
            if "{{$}}" in arg:
                raise StepError(f"{where(at)}: the string {arg!r} is the KFP v2 executor-input placeholder "
                                f"({_KFP_V2_ONLY['executorInput']}){_V2_REFUSAL}")
            return
        if isinstance(arg, list):
            for n, item in enumerate(arg):
                walk(item, f"{at}[{n}]")
            return
        if not isinstance(arg, Mapping) or len(arg) != 1:
            raise StepError(f"{where(at)}: expected a string or a one-key placeholder mapping, got {arg!r}")
        (kind, inner), = arg.items()
        shown = f"{{{kind}: {inner!r}}}" if not isinstance(inner, (Mapping, list)) else f"{{{kind}: ...}}"
        if kind in _KFP_V2_ONLY:
            raise StepError(f"{where(at)}: placeholder {shown} needs {_KFP_V2_ONLY[kind]}{_V2_REFUSAL}")
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
            walk(inner, f"{at}.concat")
            return
        if kind == "if":
            if not isinstance(inner, Mapping) or "cond" not in inner or not set(inner) <= {"cond", "then", "else"}:
                raise StepError(f"{where(at)}: placeholder {{if: ...}} needs a mapping with `cond`, `then` and "
                                f"optionally `else`, got {inner!r}")
            walk(inner["cond"], f"{at}.if.cond")
            for branch in ("then", "else"):
                if branch in inner:
                    walk(inner[branch], f"{at}.if.{branch}")
            return
        raise StepError(f"{where(at)}: unknown placeholder {shown}; supported: {', '.join(SUPPORTED_PLACEHOLDERS)}")

    for n, arg in enumerate(spec.command):
        walk(arg, f"command[{n}]")
    for n, arg in enumerate(spec.args):
        walk(arg, f"args[{n}]")


# ---- compiled KFP v2 ----------------------------------------------------------------------------

_V2_TYPES = {
    "STRING": "String",
    "NUMBER_INTEGER": "Integer",
    "NUMBER_DOUBLE": "Float",
    "BOOLEAN": "Boolean",
    "LIST": "JsonArray",
    "STRUCT": "JsonObject",
}
_V2_PLACEHOLDER = re.compile(r"\{\{\$(?:\.(?P<path>[^}]*))?\}\}")
_V2_REFERENCE = re.compile(
    r"^(?P<side>inputs|outputs)\.(?P<what>parameters|artifacts)\[['\"](?P<name>[^'\"]+)['\"]\](?P<rest>.*)$")


def _load_v2(doc: Mapping[str, Any], source: str) -> ComponentSpec:
    components = doc.get("components") or {}
    executors = (doc.get("deploymentSpec") or {}).get("executors") or {}
    root = doc.get("root") or {}
    if not isinstance(components, Mapping) or not isinstance(executors, Mapping) or not isinstance(root, Mapping):
        raise StepError(f"{source}: malformed compiled KFP v2 file (components/deploymentSpec/root)")
    tasks = ((root.get("dag") or {}).get("tasks") or {})
    if len(tasks) != 1 or len(executors) != 1:
        raise StepError(f"{source}: root.dag: a compiled pipeline with {len(tasks)} tasks and {len(executors)} "
                        f"executors is not a single container component; add its components as separate steps "
                        f"(or load each one from its own component file)")
    (task_name, task), = tasks.items()
    comp_name = ((task or {}).get("componentRef") or {}).get("name")
    comp = components.get(comp_name) if isinstance(components, Mapping) else None
    if not isinstance(comp, Mapping):
        raise StepError(f"{source}: root.dag.tasks.{task_name}: componentRef {comp_name!r} is not in `components`")
    if "dag" in comp:
        raise StepError(f"{source}: components.{comp_name}: a graph (sub-DAG) component cannot be a step")
    executor = executors.get(comp.get("executorLabel"))
    container = (executor or {}).get("container") if isinstance(executor, Mapping) else None
    if not isinstance(container, Mapping):
        raise StepError(f"{source}: deploymentSpec.executors.{comp.get('executorLabel')}: only container "
                        f"executors can be steps")
    inputs: list[InputSpec] = []
    in_defs = comp.get("inputDefinitions") or {}
    for name, p in (in_defs.get("parameters") or {}).items():
        default = p.get("defaultValue")
        inputs.append(InputSpec(name=name, type=_V2_TYPES.get(p.get("parameterType"), p.get("parameterType")),
                                description=p.get("description"), default=_text(default),
                                optional=bool(p.get("isOptional")) and default is None))
    for name, a in (in_defs.get("artifacts") or {}).items():
        inputs.append(InputSpec(name=name, type=_v2_artifact_type(a), description=a.get("description"),
                                optional=bool(a.get("isOptional"))))
    outputs: list[OutputSpec] = []
    out_defs = comp.get("outputDefinitions") or {}
    for name, p in (out_defs.get("parameters") or {}).items():
        outputs.append(OutputSpec(name=name, type=_V2_TYPES.get(p.get("parameterType"), p.get("parameterType")),
                                  description=p.get("description")))
    for name, a in (out_defs.get("artifacts") or {}).items():
        outputs.append(OutputSpec(name=name, type=_v2_artifact_type(a), description=a.get("description")))
    in_names = {i.name for i in inputs}
    out_names = {o.name for o in outputs}
    convert = _V2Converter(source, in_names, out_names)
    command = tuple(convert.arg(a, f"command[{n}]") for n, a in enumerate(container.get("command") or []))
    args = tuple(convert.arg(a, f"args[{n}]") for n, a in enumerate(container.get("args") or []))
    env = tuple((str(e.get("name")), str(e.get("value", ""))) for e in (container.get("env") or []))
    image = container.get("image")
    _check_image(image, source, f"deploymentSpec.executors.{comp.get('executorLabel')}.container.image")
    info = doc.get("pipelineInfo") or {}
    spec = ComponentSpec(
        name=str(info.get("name") or comp_name),
        description=info.get("description"),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        image=image,
        command=command,
        args=args,
        env=env,
        source=source,
    )
    _check_placeholders(spec, source)
    return spec


def _v2_artifact_type(artifact: Mapping[str, Any]) -> str | None:
    title = (artifact.get("artifactType") or {}).get("schemaTitle")
    if not title:
        return None
    return str(title).split(".", 1)[-1] if str(title).startswith("system.") else str(title)


class _V2Converter:
    """Translate v2 IR placeholder strings into v1 placeholder structures."""

    def __init__(self, source: str, inputs: set[str], outputs: set[str]) -> None:
        self.source = source
        self.inputs = inputs
        self.outputs = outputs

    def fail(self, at: str, message: str) -> StepError:
        return StepError(f"{self.source}: deploymentSpec container {at}: {message}")

    def arg(self, value: Any, at: str) -> Arg:
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("{") and ('"Concat"' in stripped or '"IfPresent"' in stripped):
                try:
                    structured = json.loads(stripped)
                except ValueError:
                    structured = None
                if isinstance(structured, Mapping):
                    return self.structured(structured, at)
            return self.string(value, at)
        if isinstance(value, Mapping):
            return self.structured(value, at)
        raise self.fail(at, f"expected a string, got {value!r}")

    def structured(self, value: Mapping[str, Any], at: str) -> Arg:
        if set(value) == {"Concat"} and isinstance(value["Concat"], list):
            return {"concat": [self.arg(v, f"{at}.Concat[{n}]") for n, v in enumerate(value["Concat"])]}
        if set(value) == {"IfPresent"} and isinstance(value["IfPresent"], Mapping):
            inner = value["IfPresent"]
            name = inner.get("InputName")
            if name not in self.inputs:
                raise self.fail(at, f"IfPresent names no input {name!r} (inputs: {', '.join(sorted(self.inputs))})")
            out: dict[str, Any] = {"cond": {"isPresent": name}}
            for key, v1 in (("Then", "then"), ("Else", "else")):
                if key in inner:
                    branch = inner[key]
                    items = branch if isinstance(branch, list) else [branch]
                    out[v1] = [self.arg(v, f"{at}.IfPresent.{key}[{n}]") for n, v in enumerate(items)]
            return {"if": out}
        raise self.fail(at, f"unknown structured placeholder {json.dumps(value)[:80]}")

    def string(self, value: str, at: str) -> Arg:
        parts: list[Arg] = []
        pos = 0
        for m in _V2_PLACEHOLDER.finditer(value):
            if m.start() > pos:
                parts.append(value[pos:m.start()])
            parts.append(self.reference(m.group(0), m.group("path"), at))
            pos = m.end()
        if pos < len(value):
            parts.append(value[pos:])
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return value
        return {"concat": parts}

    def reference(self, text: str, path: str | None, at: str) -> Arg:
        if path is None:
            raise self.fail(at, f"placeholder {text} needs {_KFP_V2_ONLY['executorInput']}{_V2_REFUSAL}")
        m = _V2_REFERENCE.match(path)
        if m is None:
            raise self.fail(at, f"unsupported placeholder {text}")
        side, what, name, rest = m.group("side"), m.group("what"), m.group("name"), m.group("rest")
        known = self.inputs if side == "inputs" else self.outputs
        if name not in known:
            raise self.fail(at, f"placeholder {text} names no {side[:-1]} {name!r} "
                                f"({side}: {', '.join(sorted(known)) or 'none'})")
        if side == "inputs" and what == "parameters" and rest == "":
            return {"inputValue": name}
        if side == "inputs" and what == "artifacts" and rest == ".path":
            return {"inputPath": name}
        if side == "outputs" and ((what == "parameters" and rest == ".output_file")
                                  or (what == "artifacts" and rest == ".path")):
            return {"outputPath": name}
        if rest == ".uri":
            kind = "inputUri" if side == "inputs" else "outputUri"
            raise self.fail(at, f"placeholder {text} needs {_KFP_V2_ONLY[kind]}{_V2_REFUSAL}")
        raise self.fail(at, f"unsupported placeholder {text}")


# ---- every step ---------------------------------------------------------------------------------


def step_components(manifest: Any, root: Path) -> dict[str, ComponentSpec]:
    """The component spec of every ``[steps.*]`` entry, in manifest order.

    Args:
        manifest: a :class:`compose_kfp.schema.Manifest`.
        root: the folder of ``kfp.toml``; step paths are relative to it.

    Returns:
        step name -> spec. Function steps (:func:`compose_kfp.steps.introspect.function_component`)
        have ``image=None`` until the image digest is known; component-file steps keep the
        file's own image. ``[steps.NAME] description`` replaces the spec's description.

    Raises:
        StepError: a step's function or component file is refused (the message names the
            step, the file and what is wrong).
    """
    from dataclasses import replace

    from compose_kfp.steps.introspect import function_component

    specs: dict[str, ComponentSpec] = {}
    root = Path(root)
    for name, step in manifest.steps.items():
        if step.function is not None:
            spec = function_component(root, step.function, step_name=name)
        else:
            file = root / step.component
            if not file.is_file():
                raise StepError(f"steps.{name}.component: {step.component} does not exist (looked in {root})")
            try:
                spec = load_component_file(file)
            except StepError as exc:
                raise StepError(f"steps.{name}.component: {exc}") from exc
            spec = replace(spec, source=step.component)
        if step.description is not None:
            spec = replace(spec, description=step.description)
        specs[name] = spec
    return specs
