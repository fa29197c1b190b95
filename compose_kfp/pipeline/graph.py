"""The resolved task graph of a pipeline: the one structure every renderer and the local runner read.

:func:`resolve_graph` turns ``[pipeline]`` of ``kfp.toml`` plus the step
interfaces (:class:`~compose_kfp.steps.component.ComponentSpec`, one per
``[steps.*]`` entry) into a frozen :class:`TaskGraph`:

- pipeline params with their defaults and KFP v1 types;
- tasks in a stable topological order (a task comes after every task it
  depends on; among tasks that are ready at the same time, the one declared
  first in ``kfp.toml`` comes first);
- for each task: its step, component and image, one :class:`Argument` per input
  that has a value (an explicit literal, a param, another task's output, or the
  component's default), how the command consumes each input (by value, as a
  path, both), its dependencies (data and ``after``), and for each output who
  consumes it and how (:class:`OutputUse`).

The Argo renderer (:mod:`compose_kfp.pipeline.render.workflow`), the KFP renderer
(:mod:`compose_kfp.pipeline.render.kfp`) and the local runner all read this graph; the
command line of a task comes from :meth:`Task.command_line`, which uses
:func:`compose_kfp.steps.placeholders.resolve_command_line` like the Argo renderer.

Validation errors are :class:`~compose_kfp.errors.ConfigError` whose message
names the manifest file and the key path (``pipeline.tasks.train.args.dataset.output``)
and, where a name is misspelt, the closest known name.
"""

from __future__ import annotations

import difflib
import heapq
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from compose_kfp import schema
from compose_kfp.steps.component import PARAMETER_TYPES, ComponentSpec, canonical_type, types_compatible
from compose_kfp.errors import ConfigError
from compose_kfp.manifest.keys import key_part
from compose_kfp.steps.placeholders import Bindings, CommandLine, resolve_command_line
from compose_kfp.pipeline.conditions import ResolvedCondition, comparisons, resolve_condition
from compose_kfp.pipeline.loops import Loop, item_value, resolve_loop

__all__ = [
    "Argument",
    "OutputUse",
    "Param",
    "Task",
    "TaskGraph",
    "dns1123_name",
    "literal_text",
    "literal_type",
    "resolve_graph",
]

log = logging.getLogger(__name__)

_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _key(name: str) -> str:
    """``name`` as one part of a key path in messages (:func:`compose_kfp.manifest.keys.key_part`: bare when it
    can be, else quoted: ``"Data file"``)."""
    return key_part(name)


def dns1123_name(text: str, max_length: int = 63) -> str:
    """``text`` as a DNS-1123 label (RFC 1123): lowercase ``[a-z0-9-]``, starting and ending alphanumeric.

    Each run of other characters becomes one ``-``; the result is cut to
    ``max_length`` (1..63) characters. ``"Iris Classifier_v2"`` -> ``"iris-classifier-v2"``.
    Returns ``""`` when ``text`` has no ASCII letter or digit (callers report that).
    """
    if not 1 <= max_length <= 63:
        raise ValueError(f"max_length must be 1..63, got {max_length}")
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name[:max_length].rstrip("-")


def literal_text(value: Any) -> str:
    """The command-line text of a literal: strings as they are, ``true``/``false``, numbers, JSON for lists and dicts.

    This is also how KFP v1 stores defaults and how the in-image runtime parses values
    (JSON for ``JsonArray``/``JsonObject``, ``true``/``false`` for ``Boolean``).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


def literal_type(value: Any) -> str:
    """The KFP v1 type of a TOML literal: ``Boolean``, ``Integer``, ``Float``, ``String``, ``JsonArray`` or ``JsonObject``."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, (list, tuple)):
        return "JsonArray"
    if isinstance(value, Mapping):
        return "JsonObject"
    return "String"


@dataclass(frozen=True)
class Param:
    """A pipeline parameter (``[pipeline.params]``): its name, default (TOML value) and KFP v1 type."""

    name: str
    default: Any
    type: str

    @property
    def default_text(self) -> str:
        """The default as the text a command receives (see :func:`literal_text`)."""
        return literal_text(self.default)


@dataclass(frozen=True)
class Argument:
    """The value one task passes to one input of its component.

    Attributes:
        input: the component input name.
        source: ``"literal"`` (``value``/``text``), ``"param"`` (``param``), ``"task"`` (``task``, ``output``),
            ``"item"`` (the task's ``for_each`` item, or its field ``item_field``) or ``"status"`` (the
            pipeline's final status, in the exit handler only).
        uses_value: the command reads it through ``{inputValue: ...}``.
        uses_path: the command reads it through ``{inputPath: ...}`` (a file).
        value: for literals, the TOML value (or the component default string).
        text: for literals, the text the command receives (:func:`literal_text`).
        param / task / output: the referenced param, or task and output.
        from_default: the literal is the component's default (no argument in ``kfp.toml``).
        key: the ``kfp.toml`` key path of the argument, for messages.
        collect: for ``task``: the list of the output's values over all iterations of a ``for_each`` task.
        item_field: for ``item``: the field of an object item (``None``: the whole item).
    """

    input: str
    source: Literal["literal", "param", "task", "item", "status"]
    uses_value: bool
    uses_path: bool
    value: Any = None
    text: str | None = None
    param: str | None = None
    task: str | None = None
    output: str | None = None
    from_default: bool = False
    key: str = ""
    collect: bool = False
    item_field: str | None = None


@dataclass(frozen=True)
class OutputUse:
    """One output of a task and how downstream tasks consume it.

    Attributes:
        name: the component output name.
        type: its KFP v1 type (or ``None``).
        consumers: ``(task, input)`` pairs, in task order.
        by_value: some consumer reads it as a value (Argo: an output parameter is needed).
        by_path: some consumer reads it as a file (Argo: an output artifact is needed).
    """

    name: str
    type: str | None
    consumers: tuple[tuple[str, str], ...]
    by_value: bool
    by_path: bool

    @property
    def is_parameter_type(self) -> bool:
        """Its type is a parameter type (``String``, ``Integer``, ... ``JsonObject``)."""
        return canonical_type(self.type) in PARAMETER_TYPES

    @property
    def as_parameter(self) -> bool:
        """Export as an Argo output parameter: a consumer needs the value, or nobody consumes it and it is a small typed value."""
        return self.by_value or (not self.consumers and self.is_parameter_type)

    @property
    def as_artifact(self) -> bool:
        """Export as an Argo output artifact: a consumer needs the file, or nobody consumes it and it is not a parameter type."""
        return self.by_path or (not self.consumers and not self.is_parameter_type)


@dataclass(frozen=True)
class Task:
    """One task of the pipeline: a use of a step with its arguments.

    Attributes:
        name: the task name in ``kfp.toml``.
        k8s_name: ``name`` as a DNS-1123 label (Argo DAG task name); unique in the graph.
        step: the ``[steps.*]`` name.
        component: the step's component.
        image: pinned image reference (``repository@sha256:...``), or ``None`` when the
            graph was resolved without images (validation only).
        arguments: one per input that has a value, in the component's input order.
        after: explicit ``after`` tasks, as written.
        dependencies: every task this one waits for (data and ``after``), in graph order.
        outputs: one per component output, in declaration order.
        settings: the step's ``[steps.NAME]`` settings (resources, retries, ...).
        where: ``"<kfp.toml path>[:LINE]: pipeline.tasks.<name>"``, the prefix of messages about this task
            (see the ``where`` argument of :func:`resolve_graph`).
        when: the task's condition (``None``: always runs); see :mod:`compose_kfp.pipeline.conditions`.
        loop: its ``for_each`` (``None``: runs once); see :mod:`compose_kfp.pipeline.loops`.
        when_upstream_skipped: ``skip`` (a skipped upstream task skips this one) or ``run``.
        env_refs: ``(variable, SecretKeyRef | ConfigMapKeyRef)`` pairs, in kfp.toml order.
        secret_volumes: the Secrets mounted as files.
        exit_handler: this is the ``pipeline.on_exit`` task (runs after all others, outside the DAG).
    """

    name: str
    k8s_name: str
    step: str
    component: ComponentSpec
    image: str | None
    arguments: tuple[Argument, ...]
    after: tuple[str, ...]
    dependencies: tuple[str, ...]
    outputs: tuple[OutputUse, ...]
    settings: schema.StepConfig
    where: str = ""
    when: ResolvedCondition | None = None
    loop: Loop | None = None
    when_upstream_skipped: str = "skip"
    env_refs: tuple[tuple[str, Any], ...] = ()
    secret_volumes: tuple[schema.SecretVolume, ...] = ()
    exit_handler: bool = False

    def argument(self, input_name: str) -> Argument | None:
        """The argument of input ``input_name``, or ``None`` when the input is absent."""
        return next((a for a in self.arguments if a.input == input_name), None)

    def output(self, name: str) -> OutputUse | None:
        """The output called ``name``, or ``None``."""
        return next((o for o in self.outputs if o.name == name), None)

    @property
    def present_inputs(self) -> frozenset[str]:
        """Names of inputs that have a value (argument or default): ``isPresent`` is true for these."""
        return frozenset(a.input for a in self.arguments)

    @property
    def known_values(self) -> dict[str, str]:
        """Input name -> text, for inputs whose value is known before run time (literals and defaults)."""
        return {a.input: a.text for a in self.arguments if a.source == "literal" and a.text is not None}

    def command_line(self, *, values: Mapping[str, str], input_paths: Mapping[str, str],
                     output_paths: Mapping[str, str], known_values: Mapping[str, str] | None = None) -> CommandLine:
        """The task's command line with placeholders resolved (:func:`compose_kfp.steps.placeholders.resolve_command_line`).

        Args:
            values: text for each input consumed by value (concrete values for a local run,
                Argo expressions when rendering). Inputs not consumed by value may be left out.
            input_paths: file path for each input consumed as a path.
            output_paths: file path for every output.
            known_values: for rendering, the values known now (normally :attr:`known_values`);
                ``None`` when ``values`` are concrete.

        Raises:
            ConfigError: see :func:`~compose_kfp.steps.placeholders.resolve_command_line`.
        """
        bindings = Bindings(values=values, input_paths=input_paths, output_paths=output_paths,
                            known_values=known_values, present=self.present_inputs)
        return resolve_command_line(self.component, bindings, where=self.where)


@dataclass(frozen=True)
class TaskGraph:
    """The whole resolved pipeline (frozen; see the module docstring).

    Attributes:
        name: the pipeline name (``pipeline.name`` or ``project.name``).
        k8s_name: ``name`` as a DNS-1123 label of at most 57 characters, so that Argo's
            ``generateName`` suffix keeps pod names within 63 characters.
        description: ``pipeline.description`` or ``project.description``.
        params: in ``kfp.toml`` order.
        tasks: in topological order (ties: declaration order); the exit handler is not among them.
        manifest_path: the ``kfp.toml`` this came from.
        exit_task: the ``pipeline.on_exit`` task, or ``None``.
    """

    name: str
    k8s_name: str
    description: str | None
    params: tuple[Param, ...]
    tasks: tuple[Task, ...]
    manifest_path: Path
    exit_task: Task | None = None

    @property
    def all_tasks(self) -> tuple[Task, ...]:
        """:attr:`tasks`, then the exit handler when there is one."""
        return self.tasks + ((self.exit_task,) if self.exit_task is not None else ())

    @property
    def has_control_flow(self) -> bool:
        """Some task has a condition or a loop, or there is an exit handler (renderers then use
        Argo's ``depends`` instead of ``dependencies``; plain pipelines render as before)."""
        return self.exit_task is not None or any(t.when is not None or t.loop is not None for t in self.tasks)

    def may_skip(self, name: str) -> bool:
        """Whether task ``name`` can be skipped by a condition: it has one, or an upstream task that
        can be skipped skips it (``when_upstream_skipped = "skip"``)."""
        task = self.task(name)
        if task.when is not None:
            return True
        return task.when_upstream_skipped == "skip" and any(self.may_skip(d) for d in task.dependencies)

    def task(self, name: str) -> Task:
        """The task called ``name`` (the exit handler included); ``KeyError`` if there is none."""
        for task in self.all_tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def param(self, name: str) -> Param:
        """The param called ``name``; ``KeyError`` if there is none."""
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def steps(self) -> tuple[str, ...]:
        """Names of the steps used by tasks, in the order of first use."""
        return tuple(dict.fromkeys(t.step for t in self.all_tasks))

    def downstream(self, name: str) -> tuple[str, ...]:
        """Tasks that depend on task ``name`` directly or indirectly, in graph order."""
        reached = {name}
        for task in self.tasks:
            if any(d in reached for d in task.dependencies):
                reached.add(task.name)
        return tuple(t.name for t in self.tasks if t.name in reached and t.name != name)


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(repr(k) for k in known) if known else "none"
    return f"{hint} (known: {listing})"


def resolve_graph(manifest: schema.Manifest, components: Mapping[str, ComponentSpec], *,
                  manifest_path: Path, images: Mapping[str, str] | None = None,
                  where: Callable[[str], str] | None = None) -> TaskGraph:
    """Resolve and validate ``[pipeline]`` of ``manifest`` into a :class:`TaskGraph`.

    Args:
        manifest: the loaded ``kfp.toml``.
        components: step name -> its component (every step used by a task must be here).
        manifest_path: the ``kfp.toml`` path, named in error messages.
        images: step name -> pinned image reference (``repository@sha256:...``). When
            given, every task gets its step's image (or the component's own image for a
            third-party step missing here), and a task without one is an error. ``None``
            resolves for validation only: images stay as the components have them.
        where: key path (``pipeline.tasks."Data file".args.x``) -> the ``FILE:LINE`` to put in front of a
            message about it (:meth:`compose_kfp.manifest.load.LoadedManifest.where`: the path as messages
            show it, and the key's line, quoted keys included); default: ``manifest_path`` as given. Errors
            read ``<where(key)>: <key>: ...`` and :attr:`Task.where` is ``<where(task key)>: <task key>``, so
            messages that reach the user without the CLI's error boundary (a task failed in a local run, a
            render warning) carry the line too.

    Returns:
        The frozen graph.

    Raises:
        ConfigError: no ``[pipeline]`` or no tasks; an invalid param name; an unknown
            task, step, input, output or param; a required input without an argument;
            a type mismatch between an argument and an input; a cycle (the message names
            its tasks); two task names that map to the same Kubernetes name; a missing image.
    """
    locate = where or (lambda key: str(manifest_path))

    def error(key: str, message: str) -> ConfigError:
        return ConfigError(f"{locate(key)}: {key}: {message}")

    pipeline = manifest.pipeline
    if pipeline is None or not pipeline.tasks:
        raise error("pipeline.tasks", "no tasks; add at least one [pipeline.tasks.NAME] table with `step = ...`")

    name = pipeline.name or manifest.project.name
    k8s_name = dns1123_name(name, 57)
    if not k8s_name:
        raise error("pipeline.name" if pipeline.name else "project.name",
                    f"{name!r} has no letter or digit to make a Kubernetes name from")

    params: list[Param] = []
    for pname, default in pipeline.params.items():
        if not _PARAM_NAME.match(pname):
            raise error(f"pipeline.params.{_key(pname)}",
                        "a param name must be an identifier (letters, digits, `_`, not starting with a digit)")
        params.append(Param(pname, default, literal_type(default)))
    params_by_name = {p.name: p for p in params}
    param_types = {p.name: p.type for p in params}
    exit_name = pipeline.on_exit
    if exit_name is not None and exit_name not in pipeline.tasks:
        raise error("pipeline.on_exit", f"unknown task {exit_name!r}" + _suggest(exit_name, list(pipeline.tasks)))

    def output_type(task_name: str, output: str, key: str) -> str | None:
        """The type of ``output`` of task ``task_name`` (errors at ``key`` for an unknown task or output)."""
        if task_name not in pipeline.tasks:
            raise error(f"{key}.task", f"unknown task {task_name!r}" + _suggest(task_name, task_names))
        up_step = pipeline.tasks[task_name].step
        up_component = components.get(up_step)
        if up_step not in manifest.steps or up_component is None:
            raise error(f"pipeline.tasks.{_key(task_name)}.step", f"unknown step {up_step!r}"
                        + _suggest(up_step, list(manifest.steps)))
        up_out = up_component.output(output)
        if up_out is None:
            raise error(f"{key}.output", f"task {task_name!r} (step {up_step!r}) has no output {output!r}"
                        + _suggest(output, [o.name for o in up_component.outputs]))
        return up_out.type

    task_names = list(pipeline.tasks)
    seen_k8s: dict[str, str] = {}
    for tname in task_names:
        kname = dns1123_name(tname)
        if not kname:
            raise error(f"pipeline.tasks.{_key(tname)}", "a task name needs at least one letter or digit")
        if kname in seen_k8s:
            raise error(f"pipeline.tasks.{_key(tname)}",
                        f"tasks {seen_k8s[kname]!r} and {tname!r} both become {kname!r} on the cluster; rename one")
        seen_k8s[kname] = tname

    # First pass: arguments and dependencies of each task.
    resolved: dict[str, dict[str, Any]] = {}
    for tname, tconf in pipeline.tasks.items():
        tkey = f"pipeline.tasks.{_key(tname)}"
        if tconf.step not in manifest.steps:
            raise error(f"{tkey}.step", f"unknown step {tconf.step!r}" + _suggest(tconf.step, list(manifest.steps)))
        component = components.get(tconf.step)
        if component is None:
            raise error(f"{tkey}.step", f"step {tconf.step!r} has no component interface (it could not be loaded)")
        for arg_name in tconf.args:
            if component.input(arg_name) is None:
                raise error(f"{tkey}.args.{_key(arg_name)}",
                            f"step {tconf.step!r} has no input {arg_name!r}"
                            + _suggest(arg_name, [i.name for i in component.inputs]))
        arguments: list[Argument] = []
        deps: list[str] = []
        loop = resolve_loop(tconf, tkey, params=pipeline.params, param_types=param_types, output_type=output_type,
                            error=error)
        if loop is not None and loop.task is not None:
            deps.append(loop.task)
        when = None
        if tconf.when is not None:
            when = resolve_condition(tconf.when, f"{tkey}.when", params=param_types, output_type=output_type,
                                     error=error)
            for comparison in comparisons(when):
                for side in (comparison.left, comparison.right):
                    if side.task is not None and side.task not in deps:
                        deps.append(side.task)
        for spec_in in component.inputs:
            usage = {k for k, n in component.placeholders() if n == spec_in.name}
            uses_value, uses_path = "inputValue" in usage, "inputPath" in usage
            akey = f"{tkey}.args.{_key(spec_in.name)}"
            if spec_in.name not in tconf.args:
                if spec_in.default is not None:
                    arguments.append(Argument(spec_in.name, "literal", uses_value, uses_path, value=spec_in.default,
                                              text=spec_in.default, from_default=True, key=akey))
                elif spec_in.required:
                    raise error(f"{tkey}.args",
                                f"required input {spec_in.name!r} of step {tconf.step!r} has no argument; add "
                                f"`{spec_in.name} = ...` (a literal, {{ param = ... }} or "
                                f"{{ task = ..., output = ... }})")
                continue
            raw = tconf.args[spec_in.name]
            if isinstance(raw, schema.ParamRef):
                param = params_by_name.get(raw.param)
                if param is None:
                    raise error(f"{akey}.param", f"unknown param {raw.param!r}"
                                + _suggest(raw.param, list(params_by_name)))
                _check_value_type(error, akey, param.type, spec_in, f"param {param.name!r}")
                arguments.append(Argument(spec_in.name, "param", uses_value, uses_path, param=param.name, key=akey))
            elif isinstance(raw, schema.TaskOutputRef):
                up_type = output_type(raw.task, raw.output, akey)
                if raw.collect:
                    _check_collect(error, akey, pipeline, raw, up_type, spec_in, uses_path)
                elif pipeline.tasks[raw.task].for_each is not None:
                    raise error(akey, _per_iteration(raw.task, tconf.for_each is not None))
                elif not types_compatible(up_type, spec_in.type):
                    raise error(akey, f"type mismatch: output {raw.output!r} of task {raw.task!r} is "
                                      f"{up_type}, input {spec_in.name!r} of step {tconf.step!r} expects "
                                      f"{spec_in.type}")
                arguments.append(Argument(spec_in.name, "task", uses_value, uses_path, task=raw.task,
                                          output=raw.output, key=akey, collect=raw.collect))
                if raw.task not in deps:
                    deps.append(raw.task)
            elif isinstance(raw, schema.ItemRef):
                field = raw.item if isinstance(raw.item, str) else None
                _check_item(error, akey, loop, field, spec_in)
                arguments.append(Argument(spec_in.name, "item", uses_value, uses_path, item_field=field, key=akey))
            elif isinstance(raw, schema.StatusRef):
                if tname != exit_name:
                    raise error(f"{akey}.status", "the pipeline's status is known only to the exit handler; name "
                                                  "this task in `pipeline.on_exit` or remove the argument")
                if canonical_type(spec_in.type) not in (None, "String"):
                    raise error(akey, f"the status is a String; input {spec_in.name!r} expects {spec_in.type}")
                arguments.append(Argument(spec_in.name, "status", uses_value, uses_path, key=akey))
            else:
                value = raw.value if isinstance(raw, schema.LiteralValue) else raw
                _check_value_type(error, akey, literal_type(value), spec_in, f"literal {literal_text(value)[:60]!r}")
                arguments.append(Argument(spec_in.name, "literal", uses_value, uses_path, value=value,
                                          text=literal_text(value), key=akey))
        for i, other in enumerate(tconf.after):
            if other not in pipeline.tasks:
                raise error(f"{tkey}.after.{i}", f"unknown task {other!r}" + _suggest(other, task_names))
            if other not in deps:
                deps.append(other)
        image = component.image
        if images is not None:
            image = images.get(tconf.step, component.image)
            if image is None:
                raise error(f"steps.{_key(tconf.step)}", f"no image digest for step {tconf.step!r}; build it first "
                                                    f"(`compose-kfp apply`) or check kfp.lock")
        resolved[tname] = {"conf": tconf, "component": component, "arguments": tuple(arguments), "deps": deps,
                           "image": image, "when": when, "loop": loop}

    _check_control_flow(error, pipeline, resolved)
    order = _topological_order(task_names, {t: r["deps"] for t, r in resolved.items()}, error)
    if exit_name is not None:
        order.remove(exit_name)
    position = {t: i for i, t in enumerate(order)}

    consumers: dict[tuple[str, str], list[tuple[str, Argument]]] = {}
    read_as_value: set[tuple[str, str]] = set()  # outputs a condition or a for_each reads (Argo output parameters)
    for tname in order:
        for arg in resolved[tname]["arguments"]:
            if arg.source == "task":
                consumers.setdefault((arg.task, arg.output), []).append((tname, arg))
        loop = resolved[tname]["loop"]
        if loop is not None and loop.task is not None:
            read_as_value.add((loop.task, loop.output))
        read_as_value.update((c.left.task, c.left.output) for c in comparisons(resolved[tname]["when"])
                             if c.left.task is not None)

    tasks: list[Task] = []
    for tname in order + ([exit_name] if exit_name else []):
        r = resolved[tname]
        outputs = []
        for spec_out in r["component"].outputs:
            uses = consumers.get((tname, spec_out.name), [])
            outputs.append(OutputUse(
                name=spec_out.name, type=spec_out.type,
                consumers=tuple((t, a.input) for t, a in uses),
                by_value=any(a.uses_value for _, a in uses) or (tname, spec_out.name) in read_as_value,
                by_path=any(a.uses_path for _, a in uses)))
        tasks.append(Task(
            name=tname, k8s_name=dns1123_name(tname), step=r["conf"].step, component=r["component"],
            image=r["image"], arguments=r["arguments"], after=tuple(r["conf"].after),
            dependencies=tuple(sorted(r["deps"], key=position.__getitem__)), outputs=tuple(outputs),
            settings=manifest.steps[r["conf"].step],
            where=f"{locate(f'pipeline.tasks.{_key(tname)}')}: pipeline.tasks.{_key(tname)}",
            when=r["when"], loop=r["loop"], when_upstream_skipped=r["conf"].when_upstream_skipped,
            env_refs=tuple(r["conf"].env.items()), secret_volumes=tuple(r["conf"].secret_volumes),
            exit_handler=tname == exit_name))
    exit_task = tasks.pop() if exit_name else None
    graph = TaskGraph(name=name, k8s_name=k8s_name,
                      description=pipeline.description or manifest.project.description,
                      params=tuple(params), tasks=tuple(tasks), manifest_path=Path(manifest_path),
                      exit_task=exit_task)
    log.debug("resolved pipeline %s: %d tasks, %d params", name, len(tasks), len(params))
    return graph


def _check_collect(error, key: str, pipeline: schema.PipelineConfig, raw: schema.TaskOutputRef,
                   up_type: str | None, spec_in, uses_path: bool) -> None:
    """A ``collect = true`` argument: the upstream task loops, its output is a parameter, the input takes a list."""
    if pipeline.tasks[raw.task].for_each is None:
        raise error(f"{key}.collect", f"task {raw.task!r} has no `for_each`, so there is nothing to collect; "
                                      f"remove `collect = true` to take its output as it is")
    if canonical_type(up_type) not in PARAMETER_TYPES:
        raise error(f"{key}.output", f"output {raw.output!r} of task {raw.task!r} is {up_type or 'untyped'}: only "
                                     f"values (String, Integer, Float, Boolean, JsonArray, JsonObject) can be "
                                     f"collected, not files")
    if canonical_type(spec_in.type) not in (None, "JsonArray") or uses_path:
        raise error(key, f"input {spec_in.name!r} receives the collected list as a value: it must be a list "
                         f"(JsonArray, `list` in Python) read by value, not {spec_in.type or 'a file'}")


def _check_item(error, key: str, loop: Loop | None, field: str | None, spec_in) -> None:
    """An ``{ item = ... }`` argument: the task loops, and known items have ``field`` and fit the input's type."""
    if loop is None:
        raise error(f"{key}.item", "`{ item = ... }` takes the item of the task's `for_each`, and this task has "
                                   "none; add `for_each = [...]` to the task")
    for i, item in enumerate(loop.items or ()):
        try:
            value = item_value(item, field)
        except KeyError:
            raise error(f"{key}.item", f"item {i} of {loop.key} ({literal_text(item)[:60]}) has no field "
                                       f"{field!r}") from None
        _check_value_type(error, key, literal_type(value), spec_in, f"item {i} ({literal_text(value)[:60]!r})")


def _per_iteration(upstream: str, looped: bool) -> str:
    inner = " (a loop inside a loop is not supported)" if looped else ""
    return f"task {upstream!r} runs once per item of its `for_each`; take its outputs as a list with `collect = true`{inner}"


def _check_control_flow(error, pipeline: schema.PipelineConfig, resolved: Mapping[str, dict[str, Any]]) -> None:
    """Cross-task rules of loops, skipping and the exit handler (see :mod:`compose_kfp.pipeline.loops`).

    Raises:
        ConfigError: a per-iteration output read outside ``collect`` (a loop inside a loop); a task with
            ``when_upstream_skipped = "run"`` reading an output of a task that may be skipped; the exit
            handler reading other tasks, looping, having a condition, or a task depending on it.
    """
    exit_name = pipeline.on_exit
    skippable: dict[str, bool] = {}

    def may_skip(name: str) -> bool:
        if name not in skippable:
            skippable[name] = False  # cycles are reported later, by the topological sort
            r = resolved[name]
            skippable[name] = r["when"] is not None or (
                r["conf"].when_upstream_skipped == "skip" and any(may_skip(d) for d in r["deps"]))
        return skippable[name]

    for tname, r in resolved.items():
        tkey = f"pipeline.tasks.{_key(tname)}"
        refs = [(a.key, a.task, a.collect) for a in r["arguments"] if a.source == "task"]
        if r["loop"] is not None and r["loop"].task is not None:
            refs.append((r["loop"].key, r["loop"].task, False))
        for comparison in comparisons(r["when"]):
            if comparison.left.task is not None:
                refs.append((comparison.key, comparison.left.task, False))
        for key, up, collect in refs:
            if up == exit_name:
                raise error(key, f"task {up!r} is the exit handler (`pipeline.on_exit`); it runs after every other "
                                 f"task, so no task can take its outputs")
            if resolved[up]["loop"] is not None and not collect:
                raise error(key, _per_iteration(up, r["loop"] is not None))
            if r["conf"].when_upstream_skipped == "run" and may_skip(up):
                raise error(f"{tkey}.when_upstream_skipped",
                            f"this task reads an output of task {up!r}, which may be skipped by a condition, so "
                            f"it cannot run without it; take the dependency with `after` only, or use \"skip\"")
        for i, other in enumerate(r["conf"].after):
            if other == exit_name:
                raise error(f"{tkey}.after.{i}", f"task {other!r} is the exit handler (`pipeline.on_exit`); it "
                                                 f"always runs last")
    if exit_name is not None:
        conf = resolved[exit_name]["conf"]
        ekey = f"pipeline.tasks.{_key(exit_name)}"
        for field, what in (("for_each", "a loop"), ("when", "a condition")):
            if getattr(conf, field) is not None:
                raise error(f"{ekey}.{field}", f"the exit handler (`pipeline.on_exit`) always runs once; it "
                                               f"cannot have {what}")
        if resolved[exit_name]["deps"]:
            raise error(ekey, "the exit handler (`pipeline.on_exit`) runs after every task whatever happened, so it "
                              "takes only params, literals and `{ status = \"pipeline\" }`, not other tasks' "
                              f"outputs or `after` (it depends on {resolved[exit_name]['deps'][0]!r})")


def _check_value_type(error, key: str, value_type: str, spec_in, what: str) -> None:
    """A literal or param may feed an input of a parameter type only when the types are compatible.

    Inputs of other types (``URI``, ``GCSPath``, artifacts, untyped) accept any value, as KFP v1 does.
    """
    in_type = canonical_type(spec_in.type)
    if in_type in PARAMETER_TYPES and not types_compatible(value_type, in_type):
        raise error(key, f"type mismatch: {what} is {value_type}, input {spec_in.name!r} expects {spec_in.type}")


def _topological_order(names: list[str], deps: Mapping[str, list[str]], error) -> list[str]:
    """Kahn's algorithm; ready tasks leave in declaration order. A cycle raises ConfigError naming its tasks."""
    index = {n: i for i, n in enumerate(names)}
    waiting = {n: set(deps[n]) for n in names}
    dependents: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for d in deps[n]:
            dependents[d].append(n)
    ready = [index[n] for n in names if not waiting[n]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        n = names[heapq.heappop(ready)]
        order.append(n)
        for m in dependents[n]:
            waiting[m].discard(n)
            if not waiting[m]:
                heapq.heappush(ready, index[m])
    if len(order) == len(names):
        return order
    cycle = _find_cycle([n for n in names if waiting[n]], deps)
    raise error("pipeline.tasks", "tasks form a cycle: " + " -> ".join(cycle)
                + "; remove one of these dependencies (an argument from another task or `after`)")


def _find_cycle(remaining: list[str], deps: Mapping[str, list[str]]) -> list[str]:
    """A cycle among ``remaining`` (each has an unfinished dependency), as ``[a, b, ..., a]`` in dependency order."""
    rest = set(remaining)
    start = remaining[0]
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(d for d in deps[node] if d in rest)
    cycle = path[seen[node]:] + [node]
    cycle.reverse()  # "a -> b" reads "a runs before b"
    return cycle
