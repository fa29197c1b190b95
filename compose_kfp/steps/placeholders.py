"""Resolving a component's ``command`` and ``args`` placeholders into a concrete argument list.

One function, :func:`resolve_command_line`, serves both places a command line is
needed, so that what runs locally is what would run on the cluster:

- the local runner passes concrete values, input file paths and output file paths;
- the Argo renderer passes Argo expressions (``{{inputs.parameters.x}}``) for
  values and the in-container paths (``/tmp/inputs/x/data``) for files, plus the
  values that are known before run time (literals and defaults) so that ``if``
  conditions can be decided when rendering.

The semantics follow the KFP v1 resolver (``kfp.components._components.
_resolve_command_line_and_paths`` of KFP 1.8):

- ``{inputValue: x}`` / ``{inputPath: x}`` -> the value / path of input ``x``;
  when ``x`` is absent (no argument and no default) and optional, the element is
  dropped; when absent and required, it is an error;
- ``{outputPath: y}`` -> the path of output ``y``;
- ``{concat: [...]}`` -> the items resolved and joined into one string (absent
  optional items contribute nothing);
- ``{if: {cond: C, then: [...], else: [...]}}`` -> ``C`` resolved to a string and
  read as a boolean (``true/false``, ``yes/no``, ``1/0``, ``on/off``, as
  ``strtobool``); the chosen branch's items are spliced in place (a missing
  branch contributes nothing);
- ``{isPresent: x}`` -> ``"True"`` when input ``x`` has an argument (or a
  default), else ``"False"``;
- literal strings pass through unchanged, so Argo expressions in third-party
  commands such as ``{{workflow.uid}}`` or ``{{pod.name}}`` reach the pod as written.

Paths used inside a container for files (the same in Argo and in a local run):
:func:`input_path` and :func:`output_path`; where a component writes each output is
:func:`component_output_path` (its ``fileOutputs`` path, else :func:`output_path`), the one
rule the Argo renderer and the local runner both follow.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from compose_kfp.steps.component import Arg, ComponentSpec, _walk_placeholders
from compose_kfp.errors import ConfigError

__all__ = [
    "CommandLine",
    "Bindings",
    "resolve_command_line",
    "input_path",
    "output_path",
    "component_output_path",
    "io_name",
    "INPUTS_ROOT",
    "OUTPUTS_ROOT",
]

log = logging.getLogger(__name__)

#: Folder under which input files are placed inside a container: ``/tmp/inputs/<name>/data``.
INPUTS_ROOT = "/tmp/inputs"
#: Folder under which a command writes its outputs inside a container: ``/tmp/outputs/<name>/data``.
OUTPUTS_ROOT = "/tmp/outputs"

_TRUE = {"y", "yes", "t", "true", "on", "1"}
_FALSE = {"n", "no", "f", "false", "off", "0"}


def io_name(name: str) -> str:
    """The Argo parameter/artifact name and path segment for a component input or output name.

    Argo names must match ``[-a-zA-Z0-9_]+``; KFP v1 component names may hold spaces
    and other characters (``Training output dir``). Each run of other characters
    becomes ``-`` and leading/trailing ``-`` are dropped: ``"Training output dir"``
    -> ``"Training-output-dir"``. Returns ``"input"`` for a name with no usable character.
    """
    cleaned = re.sub(r"[^-a-zA-Z0-9_]+", "-", name).strip("-")
    return cleaned or "input"


def input_path(name: str) -> str:
    """Path of input file ``name`` inside the container: ``/tmp/inputs/<io_name>/data``."""
    return f"{INPUTS_ROOT}/{io_name(name)}/data"


def output_path(name: str) -> str:
    """Path the command writes output ``name`` to inside the container: ``/tmp/outputs/<io_name>/data``."""
    return f"{OUTPUTS_ROOT}/{io_name(name)}/data"


def component_output_path(spec: ComponentSpec, name: str) -> str:
    """Where the container of ``spec`` leaves output ``name``: as KFP v1 compiles it, the path given in
    ``fileOutputs`` when the component names one for this output (the command writes there itself), else
    :func:`output_path` (what the ``outputPath`` placeholder becomes)."""
    return dict(spec.file_outputs).get(name) or output_path(name)


@dataclass(frozen=True)
class Bindings:
    """What each placeholder of one task's command line stands for.

    Attributes:
        values: input name -> the text an ``inputValue`` placeholder becomes (a concrete
            value, or an expression such as ``{{inputs.parameters.x}}``). Only present inputs.
        input_paths: input name -> the path an ``inputPath`` placeholder becomes. Only present inputs.
        output_paths: output name -> the path an ``outputPath`` placeholder becomes; every output.
        known_values: input name -> concrete value, for deciding ``if`` conditions that read an
            ``inputValue``. ``None`` means ``values`` are concrete (the local runner's case).
        present: names of inputs that have an argument or a default (``isPresent`` is true).
            ``None`` means: the keys of ``values`` and ``input_paths``.
    """

    values: Mapping[str, str] = field(default_factory=dict)
    input_paths: Mapping[str, str] = field(default_factory=dict)
    output_paths: Mapping[str, str] = field(default_factory=dict)
    known_values: Mapping[str, str] | None = None
    present: Set[str] | None = None

    def is_present(self, name: str) -> bool:
        """Whether input ``name`` has an argument or a default."""
        if self.present is not None:
            return name in self.present
        return name in self.values or name in self.input_paths


@dataclass(frozen=True)
class CommandLine:
    """A resolved container command line: ``command`` then ``args``, every element a string."""

    command: tuple[str, ...]
    args: tuple[str, ...]

    @property
    def argv(self) -> list[str]:
        """``command + args``: what a local runner executes."""
        return [*self.command, *self.args]


def resolve_command_line(spec: ComponentSpec, bindings: Bindings, *, where: str = "") -> CommandLine:
    """Resolve every placeholder of ``spec.command`` and ``spec.args`` with ``bindings``.

    Args:
        spec: the component (its ``command``/``args`` hold KFP v1 placeholders).
        bindings: what the placeholders stand for (see :class:`Bindings`).
        where: the place to name in error messages, e.g. ``"kfp.toml: pipeline.tasks.train"``;
            defaults to ``spec.source``.

    Returns:
        The command line, in order, with absent optional elements dropped and ``if``
        branches spliced in.

    Raises:
        ConfigError: a placeholder names an input or output the component does not declare;
            a required input is absent; an ``if`` condition is not a boolean or cannot be
            decided before run time (it reads a value only known when the pipeline runs);
            a placeholder dict is of an unknown kind.
    """
    resolver = _Resolver(spec, bindings, where or spec.source or spec.name)
    return CommandLine(tuple(resolver.expand_list(spec.command, "command")),
                       tuple(resolver.expand_list(spec.args, "args")))


class _Resolver:
    def __init__(self, spec: ComponentSpec, bindings: Bindings, where: str) -> None:
        self.spec = spec
        self.b = bindings
        self.where = where

    def fail(self, at: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: component {self.spec.name!r}, {at}: {message}")

    def expand_list(self, items: Any, at: str) -> list[str]:
        if items is None:
            return []
        if not isinstance(items, (list, tuple)):
            items = [items]
        out: list[str] = []
        for i, item in enumerate(items):
            part = self.expand(item, f"{at}[{i}]")
            if part is None:
                continue
            if isinstance(part, list):
                out.extend(part)
            else:
                out.append(part)
        return out

    def _input(self, name: Any, kind: str, at: str) -> str:
        if not isinstance(name, str) or self.spec.input(name) is None:
            known = ", ".join(i.name for i in self.spec.inputs) or "none"
            raise self.fail(at, f"{{{kind}: {name!r}}} names no input of the component (inputs: {known})")
        return name

    def expand(self, arg: Arg | Any, at: str) -> str | list[str] | None:
        if arg is None:
            return None
        if isinstance(arg, bool):
            return "true" if arg else "false"
        if isinstance(arg, (str, int, float)):
            return str(arg)
        if not isinstance(arg, Mapping) or len(arg) != 1:
            raise self.fail(at, f"expected a string or a one-key placeholder, got {arg!r}")
        (kind, inner), = arg.items()
        if kind in ("inputValue", "inputPath"):
            name = self._input(inner, kind, at)
            table = self.b.values if kind == "inputValue" else self.b.input_paths
            if name in table:
                return table[name]
            spec_in = self.spec.input(name)
            if self.b.is_present(name):
                raise self.fail(at, f"input {name!r} has no {'value' if kind == 'inputValue' else 'path'} bound")
            if spec_in is not None and not spec_in.required:
                return None
            raise self.fail(at, f"required input {name!r} has no argument")
        if kind == "outputPath":
            if not isinstance(inner, str) or self.spec.output(inner) is None:
                known = ", ".join(o.name for o in self.spec.outputs) or "none"
                raise self.fail(at, f"{{outputPath: {inner!r}}} names no output of the component (outputs: {known})")
            if inner not in self.b.output_paths:
                raise self.fail(at, f"output {inner!r} has no path bound")
            return self.b.output_paths[inner]
        if kind == "isPresent":
            name = self._input(inner, kind, at)
            return "True" if self.b.is_present(name) else "False"
        if kind == "concat":
            return "".join(self.expand_list(inner, f"{at}.concat"))
        if kind == "if":
            if not isinstance(inner, Mapping) or "cond" not in inner:
                raise self.fail(at, f"`if` needs a mapping with `cond`, `then` and optionally `else`, got {inner!r}")
            unknown = set(inner) - {"cond", "then", "else"}
            if unknown:
                raise self.fail(at, f"`if` has unknown keys {sorted(unknown)}; expected cond, then, else")
            chosen = "then" if self.condition(inner["cond"], f"{at}.if.cond") else "else"
            branch = inner.get(chosen)
            if branch is None:
                return []
            if isinstance(branch, (list, tuple)):
                return self.expand_list(branch, f"{at}.if.{chosen}")
            return self.expand(branch, f"{at}.if.{chosen}")
        raise self.fail(at, f"unknown placeholder {kind!r}; supported: inputValue, inputPath, outputPath, "
                            f"concat, if, isPresent")

    def condition(self, cond: Any, at: str) -> bool:
        if isinstance(cond, bool):
            return cond
        if self.b.known_values is not None:
            # Rendering: a condition may only read values known now (literals, defaults).
            for kind, name in _walk_placeholders(cond):
                if kind == "inputValue" and name not in self.b.known_values and self.b.is_present(name):
                    raise self.fail(at, f"the condition reads input {name!r}, whose value is only known when the "
                                        f"pipeline runs; pass a literal for it or use {{isPresent: {name!r}}}")
            resolver = _Resolver(self.spec, Bindings(values=self.b.known_values, input_paths=self.b.input_paths,
                                                     output_paths=self.b.output_paths, present=self.b.present),
                                 self.where)
            text = resolver.expand(cond, at)
        else:
            text = self.expand(cond, at)
        if isinstance(text, list):
            text = "".join(text)
        if text is None:
            return False
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise self.fail(at, f"condition resolved to {text!r}, which is not a boolean (true/false)")

