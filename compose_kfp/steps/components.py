"""Third-party component files -> :class:`~compose_kfp.steps.component.ComponentSpec`, and the spec of every step.

:func:`load_component_file` reads

- a **KFP v1 component file** (``name``/``inputs``/``outputs``/``implementation.container``):
  read by our own reader of the v1 specification, :mod:`compose_kfp.steps.v1spec`, never by
  the KFP v2 SDK (which refuses forms the v1 specification allows); ``command`` and ``args``
  are kept verbatim, never rewritten;
- a **compiled KFP v2 file** (``PipelineSpec`` IR, as written by ``kfp.compiler.Compiler``)
  when it holds a single container component: its v2 placeholder strings are translated
  to the equivalent v1 placeholders (``{{$.inputs.parameters['x']}}`` -> ``{inputValue: x}``,
  ``{{$.inputs.artifacts['x'].path}}`` -> ``{inputPath: x}``,
  ``{{$.outputs.parameters['y'].output_file}}`` / ``{{$.outputs.artifacts['y'].path}}`` ->
  ``{outputPath: y}``, ``{"Concat": [...]}`` -> ``{concat: [...]}``,
  ``{"IfPresent": {...}}`` -> ``{if: {cond: {isPresent: x}, then: ..., else: ...}}``; a
  placeholder inside a longer string becomes a ``concat``). The KFP SDK, the reference of
  that format, loads it too (``kfp.components.load_component_from_text``), so a file the SDK
  refuses is refused here with the SDK's reason. A second YAML document (``platforms:``, the
  ``kfp-kubernetes`` settings the v2 compiler appends, such as secrets as environment
  variables) is refused by name: compose-kfp does not apply it.

Placeholders understood and refused: see :mod:`compose_kfp.steps.v1spec`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compose_kfp.steps.component import Arg, ComponentSpec, InputSpec, OutputSpec
from compose_kfp.steps.v1spec import (KFP_V2_ONLY, V2_REFUSAL, SUPPORTED_PLACEHOLDERS, check_image,
                                      check_placeholders, load_yaml, read_v1_component, text_value)
from compose_kfp.errors import StepError

__all__ = ["SUPPORTED_PLACEHOLDERS", "load_component_file", "load_component_text", "step_components"]

log = logging.getLogger(__name__)


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
    docs = load_yaml(text, source=source)
    doc = docs[0] if docs else None
    if not isinstance(doc, Mapping):
        shown = type(doc).__name__ if doc is not None else "an empty file"
        raise StepError(f"{source}: a component file must be a YAML mapping, got {shown}")
    if "implementation" in doc:
        _only_one_document(docs, source, v2=False)
        return read_v1_component(doc, source)
    if "deploymentSpec" in doc or "pipelineInfo" in doc or "root" in doc:
        _only_one_document(docs, source, v2=True)
        spec = _load_v2(doc, source)
        _check_with_kfp(text, source)
        return spec
    raise StepError(f"{source}: not a KFP component: expected `implementation` (a KFP v1 component) or "
                    f"`deploymentSpec`/`root` (a compiled KFP v2 file)")


def _only_one_document(docs: list[Any], source: str, *, v2: bool) -> None:
    """Refuse YAML documents after the component: say what they are (the KFP v2 platform document) and the way out."""
    if len(docs) < 2:
        return
    extra = docs[1]
    platforms = extra.get("platforms") if isinstance(extra, Mapping) else None
    if v2 and isinstance(platforms, Mapping):
        found = []
        for platform, config in platforms.items():
            deployment = (config.get("deploymentSpec") or {}) if isinstance(config, Mapping) else {}
            executors = deployment.get("executors") if isinstance(deployment, Mapping) else None
            settings = sorted({k for e in (executors or {}).values() if isinstance(e, Mapping) for k in e})
            found.append(f"{platform}: {', '.join(settings)}" if settings else str(platform))
        raise StepError(f"{source}: YAML document 2: `platforms` holds KFP v2 platform settings "
                        f"({'; '.join(found) or 'empty'}), which kfp-kubernetes writes, e.g. for secrets as "
                        f"environment variables; compose-kfp does not apply them, so the step would run without "
                        f"them. Remove that document (from the `---` on) and provide those settings another way "
                        f"(a secret through your cluster, a plain value in [steps.NAME] env)")
    raise StepError(f"{source}: YAML document 2: a component file holds one YAML document, this one has "
                    f"{len(docs)}; remove what follows the first `---`")


def _check_with_kfp(text: str, source: str) -> None:
    """Let the KFP SDK parse the file too; its refusal becomes a StepError."""
    from kfp import components as kfp_components  # imported lazily: slow to import

    try:
        kfp_components.load_component_from_text(text)
    except Exception as exc:  # noqa: BLE001 - the SDK raises many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StepError(f"{source}: the KFP SDK refuses this component: {type(exc).__name__}: {first}") from exc


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
                                description=p.get("description"), default=text_value(default),
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
    check_image(image, source, f"deploymentSpec.executors.{comp.get('executorLabel')}.container.image")
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
    check_placeholders(spec, source)
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
            raise self.fail(at, f"placeholder {text} needs {KFP_V2_ONLY['executorInput']}{V2_REFUSAL}")
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
            raise self.fail(at, f"placeholder {text} needs {KFP_V2_ONLY[kind]}{V2_REFUSAL}")
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
        elif step.notebook is not None:
            from compose_kfp.steps.notebook import notebook_component

            spec = notebook_component(root, step.notebook, step_name=name)
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
