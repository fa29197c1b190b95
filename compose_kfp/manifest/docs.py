"""Documentation of ``kfp.toml`` generated from the models: the JSON Schema and the README's key reference.

:func:`json_schema` is what ``compose-kfp schema`` prints (editors use it for completion
and checks); :func:`reference_markdown` is the README's table of keys and environment
variables (``compose-kfp schema --format markdown``; a test keeps the README in sync).
Both come from the field descriptions of :mod:`compose_kfp.schema`.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterator, Literal

from pydantic import BaseModel

from compose_kfp.manifest.load import ENV_VARS
from compose_kfp.manifest.annotations import flatten_annotation
from compose_kfp.schema import Manifest


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``kfp.toml``, from the models, with a description on every key.

    Editors (taplo, Even Better TOML) use it for completion and checks; ``compose-kfp schema`` prints it.
    It checks shape and types; what needs the file system or several keys at once
    (paths exist, references resolve, no cycles) is only checked by :func:`compose_kfp.manifest.load.load_manifest`.
    """
    schema = Manifest.model_json_schema(mode="validation")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **schema, "title": "kfp.toml",
              "description": "The compose-kfp project manifest (kfp.toml)."}
    return schema


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One documented key of ``kfp.toml``: dotted path (``image.layers[].paths``, ``steps.<name>.retries``),
    TOML type, default (as TOML text, or ``None`` when required or not set), and description."""

    path: str
    type: str
    default: str | None
    required: bool
    description: str


def iter_keys(model: type[BaseModel] = Manifest, prefix: str = "",
              _open: tuple[type[BaseModel], ...] = ()) -> Iterator[KeyDoc]:
    """Every key of the manifest, depth first in declaration order (tables before their keys).

    Keys are written as in TOML (a field's alias, such as ``not``, when it has one). A model that
    contains itself (a condition's ``all``/``any``/``not``) is listed once: its inner keys are not repeated.
    """
    import json

    _open = _open + (model,)
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        ann = info.annotation
        default = None
        if not info.is_required():
            value = info.get_default(call_default_factory=True)
            if isinstance(value, BaseModel):
                default = None
            elif value is not None and value != [] and value != {}:
                default = json.dumps(value)
        yield KeyDoc(path, _toml_type(ann), default, info.is_required(), info.description or "")
        for t in flatten_annotation(ann):
            origin, args = typing.get_origin(t), typing.get_args(t)
            if isinstance(t, type) and issubclass(t, BaseModel):
                if t not in _open:
                    yield from iter_keys(t, path + ".", _open)
            elif origin is list and args:
                for m in flatten_annotation(args[0]):
                    if isinstance(m, type) and issubclass(m, BaseModel) and m not in _open:
                        yield from iter_keys(m, path + "[].", _open)
            elif origin is dict and len(args) == 2:
                placeholder = {"steps": "<step>", "tasks": "<task>", "args": "<input>", "env": "<variable>"}.get(
                    name, "<name>")
                seen: set[type] = set()
                for m in flatten_annotation(args[1]):
                    if isinstance(m, type) and issubclass(m, BaseModel) and m not in seen and m not in _open:
                        seen.add(m)
                        yield from iter_keys(m, f"{path}.{placeholder}.", _open)


def _toml_type(annotation: Any) -> str:
    names = []
    for t in flatten_annotation(annotation):
        origin = typing.get_origin(t)
        if t is type(None):
            continue
        if origin is Literal:
            names.append("one of " + ", ".join(f'"{a}"' for a in typing.get_args(t)))
        elif origin is list or t is list:
            names.append("array")
        elif origin is dict or t is dict or (isinstance(t, type) and issubclass(t, BaseModel)):
            names.append("table")
        else:
            names.append({str: "string", int: "integer", float: "float", bool: "boolean"}.get(t, str(t)))
    return " or ".join(dict.fromkeys(names))


def reference_markdown() -> str:
    """The README's ``kfp.toml`` key reference (Markdown): every key, the environment variables
    (:data:`compose_kfp.manifest.load.ENV_VARS`), generated from the model descriptions. A test keeps the README in sync."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for k in iter_keys():
        default = "required" if k.required else (f"`{k.default}`" if k.default else "")
        description = k.description.replace("|", "\\|")
        rows.append(f"| `{k.path}` | {k.type} | {default} | {description} |")
    env = ["| variable | sets | meaning |", "| --- | --- | --- |"]
    for v in ENV_VARS:
        env.append(f"| `{v.name}` | `{v.key}` | {v.description} |")
    return "\n".join(rows) + "\n\nEnvironment variables (they win over kfp.toml; command-line flags win over them):\n\n" \
        + "\n".join(env) + "\n"
