"""Error text for ``kfp.toml``: problems collected by key path and turned into one message.

:class:`Problems` collects ``(key path, message)`` pairs (pydantic validation errors
rewritten in the manifest's terms, problems found by the loader and the checks) and
raises them as one :class:`~compose_kfp.errors.ConfigError` whose lines read
``FILE:LINE: KEY: MESSAGE.``, in file order. :func:`did_you_mean` suggests the closest
known name; :func:`scan_secrets` refuses literal secrets before anything could echo them.
The model walking here (:func:`_model_path`) finds the known keys and the description
of a key path from the models of :mod:`compose_kfp.schema`.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, Mapping, Sequence

from pydantic import BaseModel

from compose_kfp.errors import ConfigError
from compose_kfp.manifest.keys import KeyIndex, dotted
from compose_kfp.manifest.annotations import flatten_annotation
from compose_kfp.schema import AuthConfig, Manifest, looks_secret


def did_you_mean(word: str, known: Sequence[str] | Mapping[str, Any]) -> str:
    """``"; did you mean 'NAME'?"`` for the name of ``known`` (a sequence, or a mapping's keys)
    closest to ``word`` (difflib, cutoff 0.6), or ``""`` when none is close enough."""
    match = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def scan_secrets(node: Any, loc: tuple, problems: "Problems") -> None:
    """Refuse literal secrets: any secret-looking key in ``[image.auth]``, and secret-looking
    environment variables set to a literal in ``image.env`` or ``steps.*.env`` (they would be
    stored in the image config or the rendered workflow)."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        here = loc + (key,)
        if loc == ("image", "auth") and (looks_secret(key) or key in ("username", "user")) \
                and key not in AuthConfig.model_fields:
            problems.add(here, _secret_message(key))
        elif len(loc) >= 1 and loc[-1] == "env" and isinstance(key, str) and looks_secret(key) and \
                (loc == ("image", "env") or (len(loc) == 3 and loc[0] == "steps")):
            problems.add(here, f"{key} looks like a secret and would be stored in clear in the "
                               "image or the rendered workflow (the value is not shown). Set it at run "
                               "time from a Kubernetes secret instead")
        elif isinstance(value, dict):
            scan_secrets(value, here, problems)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                scan_secrets(item, here + (i,), problems)


def _secret_message(key: str) -> str:
    if key in ("username", "user"):
        return ('a literal user name is not accepted here; name the environment variable that holds it '
                'with `username_env = "REGISTRY_USER"`')
    return (f"a literal {key} is refused: kfp.toml is committed and must not hold secrets "
            "(the value is not shown; remove it, and rotate it if it was ever committed). Name the "
            'environment variable that holds it with `password_env = "REGISTRY_PASSWORD"`, use a '
            'credential helper (`helper = "..."`) or a docker config file (`config = "..."`)')


_EXPECTED_BY_TYPE = {
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "bool_type": "true or false", "list_type": "an array",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
    "dataclass_type": "a table",
}


def _describe_input(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} value"


_ALTERNATIVE_NAMES = {"true or false": "a boolean"}


class Problems:
    """Collects (key path, message) problems and turns them into one :class:`ConfigError`.

    Args:
        shown: the manifest's path as messages show it (:func:`compose_kfp.manifest.load.display_path`).
        index: the key positions of its text, for ``FILE:LINE``.
        data: the parsed TOML (a dict), to name known keys and pick between union members.

    :attr:`sources` (dotted key path -> where an overriding value came from) is set by the
    loader once overrides are applied; a problem under such a key names that source instead
    of a line.
    """

    def __init__(self, shown: str, index: "KeyIndex", data: dict):
        self.shown = shown
        self.index = index
        self.data = data
        self.sources: Mapping[str, str] = {}
        self.items: list[tuple[tuple, str, list[str]]] = []  # loc, message, expected alternatives

    def add(self, loc: Sequence[Any], message: str) -> None:
        """Record ``message`` (no trailing period needed) about the key path ``loc``."""
        self.items.append((tuple(loc), message, []))

    def add_pydantic(self, err: Mapping[str, Any]) -> None:
        """Record one pydantic error (an item of ``ValidationError.errors()``) in the manifest's terms:
        unknown keys with "did you mean" and the known keys, missing keys with their description,
        type errors as "expected X, got Y" (several expected types at one key merged)."""
        loc = self._clean_loc(err["loc"], keep_last=err["type"] == "missing")
        etype = err["type"]
        if etype == "extra_forbidden":
            parent, key = loc[:-1], loc[-1]
            known = _known_keys(parent, self.data)
            table = f"[{dotted(parent)}]" if parent else "the top level"
            if looks_secret(str(key)):
                self.items.append((loc, f"unknown key {key!r} (its value is not shown); kfp.toml holds no secrets. "
                                        f"Known keys of {table}: {', '.join(known)}", []))
                return
            self.items.append((loc, f"unknown key{did_you_mean(key, known) or '.'} Known keys of {table}: "
                                    f"{', '.join(known)}", []))
            return
        if etype == "missing":
            desc = _field_description(loc, self.data)
            self.items.append((loc, "required key is missing" + (f": {desc}" if desc else ""), []))
            return
        if etype in _EXPECTED_BY_TYPE:
            expected = _EXPECTED_BY_TYPE[etype]
            for prev_loc, _msg, alternatives in self.items:
                if prev_loc == loc and alternatives:
                    alternatives.append(expected)
                    return
            self.items.append((loc, f"got {_describe_input(err.get('input'))}", [expected]))
            return
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif msg.startswith("Input should be "):
            what = msg[len("Input should be "):]
            if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
                what = "a number " + what
            msg = "expected " + what + f", got {_describe_input(err.get('input'))}"
        self.items.append((loc, msg, []))

    def merge_typos(self) -> None:
        """Drop "required key is missing" for a key that an unknown key next to it is a typo of."""
        typos = set()
        for loc, _message, _alt in self.items:
            if loc and "did you mean" in _message and _message.startswith("unknown key"):
                known = _known_keys(loc[:-1], self.data)
                match = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
                if match:
                    typos.add(loc[:-1] + (match[0],))
        self.items = [item for item in self.items
                      if not (item[0] in typos and item[1].startswith("required key is missing"))]

    def _clean_loc(self, loc: Sequence[Any], *, keep_last: bool) -> tuple:
        """Drop pydantic's union tags from ``loc``, keeping only keys and indexes present in the data."""
        out: list[Any] = []
        node: Any = self.data
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, dict) and part in node:
                out.append(part)
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                out.append(part)
                node = node[part]
            elif last and keep_last:
                out.append(part)
        return tuple(out)

    def _where(self, loc: tuple) -> tuple[str, int]:
        for n in range(len(loc), 0, -1):
            source = self.sources.get(dotted(loc[:n]))
            if source:
                return f"{self.shown} (value from {source})", 0
        line = self.index.line_for(loc)
        return (f"{self.shown}:{line}" if line else self.shown), line or 0

    def raise_if_any(self) -> None:
        """Raise the recorded problems as one :class:`ConfigError` and forget them; return if there are none.

        Each problem is one line ``FILE:LINE: KEY: MESSAGE.`` (``FILE (value from SOURCE)`` for an
        overridden key), sorted by line (unknown lines first, then in recording order); with
        several, the first line is followed by ``N more problem(s):`` and the others, indented.
        """
        if not self.items:
            return
        rendered = []  # (line, text, key)
        for loc, message, alternatives in self.items:
            where, line = self._where(loc)
            if alternatives:
                uniq = list(dict.fromkeys(alternatives))
                if len(uniq) > 1:
                    uniq = [_ALTERNATIVE_NAMES.get(u, u) for u in uniq]
                expected = uniq[0] if len(uniq) == 1 else ", ".join(uniq[:-1]) + " or " + uniq[-1]
                message = f"expected {expected}, {message}"
            key = dotted(loc) if loc else "(top level)"
            end = "" if message.endswith(("?", ".")) else "."
            rendered.append((line, f"{where}: {key}: {message}{end}", key if loc else None))
        rendered.sort(key=lambda r: r[0])
        lines = [r[1] for r in rendered]
        first_line, first_key = rendered[0][0] or None, rendered[0][2]
        self.items.clear()
        if len(lines) == 1:
            raise ConfigError(lines[0]).at(self.shown, first_line, first_key)
        raise ConfigError(lines[0] + "\n" + f"{len(lines) - 1} more problem(s):\n" +
                          "\n".join("  " + line for line in lines[1:])).at(self.shown, first_line, first_key)


def _model_path(loc: Sequence[Any], data: Any = None) -> tuple[Any, Any]:
    """Walk the model types (and ``data``, to choose between union members) along ``loc``.

    Returns (the model class the path ends in, or ``None``; the field info of its last key, or ``None``).
    """
    current: Any = Manifest
    info = None
    node = data
    for part in loc:
        model = _pick_model(current, node)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            info = model.model_fields[part]
            current = info.annotation
        else:
            nxt = None
            for t in flatten_annotation(current):
                origin, args = typing.get_origin(t), typing.get_args(t)
                if isinstance(part, int) and origin is list and args:
                    nxt = args[0]
                    break
                if isinstance(part, str) and origin is dict and len(args) == 2:
                    nxt = args[1]
                    break
            if nxt is None:
                return None, None
            current, info = nxt, None
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return _pick_model(current, node), info


def _pick_model(annotation: Any, node: Any) -> type[BaseModel] | None:
    models = [t for t in flatten_annotation(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    if not models:
        return None
    if len(models) == 1 or not isinstance(node, dict):
        return models[0]
    return max(models, key=lambda m: len(set(node) & set(m.model_fields)))


def _known_keys(parent: Sequence[Any], data: Any) -> list[str]:
    model, _ = _model_path(parent, data)
    return list(model.model_fields) if model is not None else []


def _field_description(loc: Sequence[Any], data: Any) -> str | None:
    _, info = _model_path(loc, data)
    return info.description if info is not None else None
