"""Rendering the KFP v2 pipeline package (IR YAML) of a pipeline with the ``kfp`` SDK.

The SDK is the reference for the KFP v2 format, so this module does not write IR
itself: it loads each step's rendered component file with
:func:`kfp.components.load_component_from_text`, calls the components the way a
hand-written ``@dsl.pipeline`` function would, wired exactly as the
:class:`~compose_kfp.pipeline.graph.TaskGraph` says, and compiles with
:class:`kfp.compiler.Compiler` (https://www.kubeflow.org/docs/components/pipelines/user-guides/core-functions/compile-a-pipeline/).

Mapping from the graph:

- pipeline params -> pipeline inputs with their defaults (``str``, ``int``, ``float``,
  ``bool``, ``list``, ``dict`` by the default's type);
- each task -> one pipeline task named after the task (its component is the step's
  component renamed to the task name, with the image the graph pinned);
- type declarations adapted where KFP v2 is stricter than KFP v1 (see :func:`_adapt_types`);
- literal arguments -> constants converted to the input's type; component defaults are
  left to KFP; params -> pipeline inputs; task outputs -> ``task.outputs[...]``
  (names as KFP sanitizes them: ``"Data file"`` -> ``data_file``);
- ``after`` -> ``.after(...)``; data dependencies are implied by the wiring;
- a component the SDK cannot express (:func:`compose_kfp.steps.v1spec.kfp_v2_obstacles`: an ``if``
  branch that is a single placeholder, list branches inside ``concat``, a condition other than
  ``isPresent``, ``fileOutputs``) is refused with a :class:`~compose_kfp.errors.RenderError` naming the
  step and the form, and pointing at the Argo target, which renders it;
- step settings: ``resources`` -> cpu/memory requests and limits, GPUs as
  ``nvidia.com/gpu`` accelerator; ``retries`` -> ``set_retry`` with the same backoff as
  the Argo Workflow; ``env`` -> ``set_env_variable``. ``timeout``, ``node_selector`` and
  ``tolerations`` have no KFP v2 IR form without the ``kfp-kubernetes`` extension; they
  are left out with a warning in the log;
- control flow (:mod:`compose_kfp.pipeline.control_kfp`): ``when`` -> nested ``dsl.If`` blocks (one per
  comparison of an ``and``; an ``or`` cannot be nested and is refused), a task whose upstream task may be
  skipped is placed in the same ``dsl.If`` block (KFP v2 skips a block as a whole); ``for_each`` ->
  ``dsl.ParallelFor`` (``parallelism``), ``collect`` -> ``dsl.Collected``; ``pipeline.on_exit`` ->
  ``dsl.ExitHandler`` around every other task, its ``{ status = "pipeline" }`` input typed
  ``PipelineTaskFinalStatus`` (KFP passes a JSON object, ``{"state": "SUCCEEDED", ...}``, where Argo passes
  ``Succeeded``); task ``env`` and ``secret_volumes`` -> kfp-kubernetes
  ``use_secret_as_env``, ``use_config_map_as_env``, ``use_secret_as_volume`` (references only);
- caching stays KFP's own (its fingerprint of the task, on by default): our task cache keys
  (:mod:`compose_kfp.pipeline.cache`; a loop's task key) are recorded in a comment block at the end of the
  package (``# compose-kfp task cache keys``, one ``#   <task>: <key>`` line each), not as KFP's ``cache_key``
  (which would ignore params given at submission) and not as a pod annotation (kfp-kubernetes would add a
  platform document to every package); with ``manifest`` given, a task with ``cache = false`` (or every task
  with ``[pipeline.cache] enabled = false``) gets ``set_caching_options(False)``.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from compose_kfp.steps.component import ComponentSpec, canonical_type
from compose_kfp.steps.v1spec import kfp_v2_obstacles
from compose_kfp.errors import RenderError
from compose_kfp import schema
from compose_kfp.pipeline.cache import KEY_VERSION, caches, task_keys
from compose_kfp.pipeline.graph import Argument, Task, TaskGraph

__all__ = ["render_kfp_pipeline", "build_kfp_pipeline", "CACHE_KEYS_COMMENT"]

#: The first line of the comment block listing each task's compose-kfp cache key (KFP keeps its own caching).
CACHE_KEYS_COMMENT = "# compose-kfp task cache keys"

log = logging.getLogger(__name__)

_PY_TYPES = {"String": str, "Integer": int, "Float": float, "Boolean": bool, "JsonArray": list, "JsonObject": dict}


def render_kfp_pipeline(graph: TaskGraph, component_yaml: Mapping[str, str], out_path: Path,
                        manifest: schema.Manifest | None = None) -> Path:
    """Compile ``graph`` into a KFP v2 pipeline package (IR YAML) at ``out_path``.

    Args:
        graph: the resolved graph (with images).
        component_yaml: step name -> the text of its rendered KFP component file (v1 ``component.yaml``).
        out_path: the file to write (parent folders are created); overwritten if present.
        manifest: the kfp.toml the graph came from, for the cache settings (``None``: KFP's defaults).

    Returns:
        ``out_path``.

    Raises:
        RenderError: a step's component text is missing or invalid, or the SDK refuses the
            wiring (for example a literal for an artifact input, which KFP v2 cannot pass).
    """
    from kfp import compiler

    pipeline = build_kfp_pipeline(graph, component_yaml, manifest)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(out_path))
    except Exception as exc:  # the SDK raises many unrelated types; all mean "cannot compile"
        raise RenderError(f"{graph.manifest_path}: pipeline {graph.name!r}: the KFP compiler failed: {exc}") from exc
    _repair_header(pipeline, graph, out_path)
    lines = "".join(f"#   {name}: {k.key}\n" for name, k in task_keys(graph).items())
    with open(out_path, "a", encoding="utf-8") as f:
        f.write(f"{CACHE_KEYS_COMMENT} ({KEY_VERSION}; KFP caches by its own fingerprint):\n{lines}")
    log.info("wrote KFP pipeline package %s (%d tasks)", out_path, len(graph.tasks))
    return out_path


def _repair_header(pipeline: Any, graph: TaskGraph, out_path: Path) -> None:
    """Comment out the lines a multi-line param default breaks out of the compiler's ``# Inputs:`` header.

    ``kfp.compiler`` writes a header comment listing the pipeline inputs with their
    defaults verbatim (``pipeline_spec_builder.extract_comments_from_pipeline_spec``); a
    default holding a line break ends the comment early and the package no longer loads.
    The header is recomputed with the same SDK function; when the file starts with it,
    every line of it that is not a comment gets ``#`` in front. The YAML body is untouched.
    """
    from google.protobuf import json_format
    from kfp.compiler import pipeline_spec_builder

    text = out_path.read_text(encoding="utf-8")
    try:
        header = pipeline_spec_builder.extract_comments_from_pipeline_spec(
            json_format.MessageToDict(pipeline.pipeline_spec), graph.description)
    except Exception:  # an SDK without this helper: nothing to repair the same way
        header = ""
    if header and text.startswith(header):
        fixed = "".join(line if line.startswith("#") else "#    " + line for line in header.splitlines(True))
        if fixed != header:
            out_path.write_text(fixed + text[len(header):], encoding="utf-8")
    try:
        list(yaml.safe_load_all(out_path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise RenderError(f"{out_path}: the KFP compiler wrote a package that is not valid YAML: {exc}") from exc


def build_kfp_pipeline(graph: TaskGraph, component_yaml: Mapping[str, str], manifest: schema.Manifest | None = None):
    """The ``kfp`` pipeline object (a ``GraphComponent``) of ``graph``, ready for ``Compiler().compile``.

    Raises:
        RenderError: see :func:`render_kfp_pipeline`.
    """
    from kfp import dsl

    docs = {step: _component_doc(graph, step, component_yaml) for step in graph.steps}
    params = list(graph.params)
    off = {t.name for t in graph.all_tasks if manifest is not None and not t.exit_handler and not caches(manifest, t)}

    def add(task: Task, by_param: Mapping[str, Any], tasks: Mapping[str, Any], item: Any = None) -> Any:
        kfp_task = _add_task(graph, task, docs[task.step], by_param, tasks, item)
        if task.name in off:
            kfp_task.set_caching_options(False)
        return kfp_task

    def pipeline_func(*channels: Any) -> None:
        by_param = {p.name: channel for p, channel in zip(params, channels)}
        tasks: dict[str, Any] = {}
        if not graph.has_control_flow:
            for task in graph.tasks:
                tasks[task.name] = add(task, by_param, tasks)
            return
        from compose_kfp.pipeline.render.control_kfp import add_with_control_flow

        add_with_control_flow(graph, lambda task, items: add(task, by_param, tasks, items), by_param, tasks)

    pipeline_func.__name__ = graph.k8s_name.replace("-", "_")
    pipeline_func.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default,
                          annotation=_PY_TYPES[p.type])
        for p in params
    ])
    try:
        return dsl.pipeline(name=graph.k8s_name, description=graph.description)(pipeline_func)
    except RenderError:
        raise
    except Exception as exc:
        raise RenderError(f"{graph.manifest_path}: pipeline {graph.name!r}: the KFP SDK refused it: {exc}") from exc


def _component_doc(graph: TaskGraph, step: str, component_yaml: Mapping[str, str]) -> dict[str, Any]:
    text = component_yaml.get(step)
    if text is None:
        raise RenderError(f"{graph.manifest_path}: steps.{step}: no rendered component file for this step")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderError(f"{graph.manifest_path}: steps.{step}: the rendered component is not YAML: {exc}") from exc
    if not isinstance(doc, dict) or "implementation" not in doc:
        raise RenderError(f"{graph.manifest_path}: steps.{step}: the rendered component has no `implementation`")
    container = doc["implementation"].get("container") if isinstance(doc["implementation"], dict) else None
    container = container if isinstance(container, dict) else {}
    source = next((t.component.source for t in graph.tasks if t.step == step), "") or f"components/{step}.yaml"
    obstacles = kfp_v2_obstacles(ComponentSpec(
        name=str(doc.get("name")), command=tuple(container.get("command") or ()),
        args=tuple(container.get("args") or ()), file_outputs=tuple((container.get("fileOutputs") or {}).items())))
    if obstacles:
        raise RenderError(f"{graph.manifest_path}: steps.{step}: the KFP v2 SDK cannot express this component "
                          f"({source}), which is valid KFP v1: {'; '.join(obstacles)}. The Argo "
                          f"target renders it: keep \"argo\" in render.targets and remove \"kfp\" "
                          f"(or `compose-kfp render --target argo`)")
    return doc


def _add_task(graph: TaskGraph, task: Task, doc: dict[str, Any], by_param: Mapping[str, Any],
              tasks: Mapping[str, Any], item: Any = None) -> Any:
    from kfp import components
    from kfp.dsl import utils as kfp_utils

    doc = _adapt_types(graph, task, doc)
    try:
        component = components.load_component_from_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        kwargs: dict[str, Any] = {}
        for arg in task.arguments:
            if arg.from_default:
                continue
            name = kfp_utils.sanitize_input_name(arg.input)
            if arg.source == "param":
                kwargs[name] = by_param[arg.param]
            elif arg.source == "task" and arg.collect:
                from kfp import dsl

                kwargs[name] = dsl.Collected(tasks[arg.task].outputs[kfp_utils.sanitize_input_name(arg.output)])
            elif arg.source == "task":
                kwargs[name] = tasks[arg.task].outputs[kfp_utils.sanitize_input_name(arg.output)]
            elif arg.source == "item":
                kwargs[name] = getattr(item, arg.item_field) if arg.item_field else item
            elif arg.source == "status":
                continue  # typed PipelineTaskFinalStatus by _adapt_types: KFP fills it in the exit task
            else:
                kwargs[name] = _constant(graph, task, arg)
        kfp_task = component(**kwargs)
        after = [tasks[name] for name in task.after]
        if after:
            kfp_task.after(*after)
        _apply_settings(task, kfp_task)
        _apply_references(task, kfp_task)
    except RenderError:
        raise
    except Exception as exc:
        raise RenderError(f"{task.where}: the KFP SDK refused task {task.name!r} (step {task.step!r}): {exc}") from exc
    return kfp_task


def _kfp_parameter_type(type_name: Any) -> bool:
    """Whether KFP v2 reads this v1 type name as a parameter (``String``, ``Text``, ``Integer``, ...), not an artifact."""
    from kfp.dsl.types import type_utils

    return isinstance(type_name, str) and type_name.lower() in type_utils.PARAMETER_TYPES_MAPPING


def _adapt_types(graph: TaskGraph, task: Task, doc: dict[str, Any]) -> dict[str, Any]:
    """A private copy of ``doc`` for ``task``: renamed to the task, the graph's image, and types KFP v2 accepts.

    KFP v1 (and Argo) let a file carry a parameter type (``{name: text, type: Text}`` read
    with ``inputPath``) and let ``Integer`` feed ``Float`` or ``String``; KFP v2 refuses
    both. Only type declarations change, never ``command``/``args``:

    - an input read as a file whose type KFP v2 takes for a parameter, and an output some
      consumer reads as a file, lose their type (a generic ``system.Artifact``);
    - an untyped input read as a value becomes ``String`` (KFP v2 takes untyped for an artifact);
    - a value input fed by a param or output of another parameter type takes that type.

    Raises:
        RenderError: an input read both as a value and as a file from another task, or an
            output read as a value by one task and as a file by another (KFP v2 has no such form).
    """
    doc = json.loads(json.dumps(doc))
    doc["name"] = task.name
    container = doc.get("implementation", {}).get("container")
    if task.image is not None and isinstance(container, dict):
        container["image"] = task.image
    inputs = {i.get("name"): i for i in doc.get("inputs") or [] if isinstance(i, dict)}
    outputs = {o.get("name"): o for o in doc.get("outputs") or [] if isinstance(o, dict)}
    for arg in task.arguments:
        entry = inputs.get(arg.input)
        if entry is None or arg.from_default:
            continue
        if arg.source == "status":
            entry["type"] = "PipelineTaskFinalStatus"
            continue
        if arg.uses_path and arg.uses_value and arg.source == "task":
            raise RenderError(f"{graph.manifest_path}: {arg.key}: input {arg.input!r} is read both as a value and "
                              f"as a file; KFP v2 cannot pass one task output both ways")
        if arg.uses_path:
            if _kfp_parameter_type(entry.get("type")) and arg.source == "task":
                entry.pop("type", None)
            continue
        source_type = None
        if arg.source == "param":
            source_type = graph.param(arg.param).type
        elif arg.source == "task" and arg.collect:
            source_type = "JsonArray"  # dsl.Collected: a list of the loop's values
        elif arg.source == "task":
            source_type = graph.task(arg.task).component.output(arg.output).type
        if entry.get("type") is None:
            entry["type"] = source_type if _kfp_parameter_type(source_type) else "String"
        elif (_kfp_parameter_type(source_type) and _kfp_parameter_type(entry["type"])
              and canonical_type(source_type) != canonical_type(entry["type"])):
            entry["type"] = source_type
    for out in task.outputs:
        entry = outputs.get(out.name)
        if entry is None or not out.by_path:
            continue
        if out.by_value:
            raise RenderError(f"{task.where}: output {out.name!r} is read as a value by one task and as a file by "
                              f"another; KFP v2 cannot pass one output both ways")
        if _kfp_parameter_type(entry.get("type")):
            entry.pop("type", None)
    return doc


def _constant(graph: TaskGraph, task: Task, arg: Argument) -> Any:
    """A literal converted to the Python type KFP expects for the input's type (text for untyped inputs)."""
    spec_in = task.component.input(arg.input)
    in_type = canonical_type(spec_in.type) if spec_in is not None else None
    value = arg.value
    if in_type == "String" or in_type is None:
        return arg.text
    if in_type in ("JsonArray", "JsonObject") and isinstance(value, str):
        return json.loads(value)
    if in_type == "Float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if in_type in _PY_TYPES:
        return value
    raise RenderError(f"{graph.manifest_path}: {arg.key}: KFP v2 cannot pass a literal to input {arg.input!r} of type {spec_in.type} "
                      f"(an artifact); pass it from another task's output or change the input's type")


def _apply_references(task: Task, kfp_task: Any) -> None:
    """Task ``env`` from Secrets and ConfigMaps and ``secret_volumes``, through kfp-kubernetes (names and keys only)."""
    if not task.env_refs and not task.secret_volumes:
        return
    from kfp import kubernetes

    for name, ref in task.env_refs:
        if isinstance(ref, schema.SecretKeyRef):
            kubernetes.use_secret_as_env(kfp_task, secret_name=ref.secret, secret_key_to_env={ref.key: name})
        else:
            kubernetes.use_config_map_as_env(kfp_task, config_map_name=ref.config_map,
                                             config_map_key_to_env={ref.key: name})
    for volume in task.secret_volumes:
        kubernetes.use_secret_as_volume(kfp_task, secret_name=volume.secret, mount_path=volume.mount_path)


def _apply_settings(task: Task, kfp_task: Any) -> None:
    settings = task.settings
    res = settings.resources
    if res is not None:
        if res.cpu:
            kfp_task.set_cpu_request(res.cpu).set_cpu_limit(res.cpu)
        if res.memory:
            kfp_task.set_memory_request(res.memory).set_memory_limit(res.memory)
        if res.gpu:
            kfp_task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(res.gpu)
    if settings.retries:
        kfp_task.set_retry(num_retries=settings.retries, backoff_duration="10s", backoff_factor=2.0,
                           backoff_max_duration="300s")
    for name, value in settings.env.items():
        kfp_task.set_env_variable(name, value)
    skipped = [k for k in ("timeout", "node_selector", "tolerations") if getattr(settings, k)]
    if skipped:
        log.warning("%s: %s not expressible in a KFP v2 pipeline package without kfp-kubernetes; left out",
                    task.where, ", ".join(skipped))
