"""Jinja filters that put user values into YAML without changing the document's structure.

Every value a template takes from ``kfp.toml``, a docstring or a component file
goes through :func:`to_yaml` (registered as the ``yaml`` filter). It returns a
*single-line flow* YAML node:

- strings become double-quoted scalars (YAML 1.2 section 7.3.1) in which ``\\``,
  ``"``, control characters, the YAML line breaks (U+0085, U+2028, U+2029), the
  byte-order mark and every character outside the printable ranges are escaped;
  so ``: ``, ``#``, quotes, newlines, ``{{`` and any unicode text load back
  exactly, in PyYAML (YAML 1.1), go-yaml (Argo, Kubernetes) and any YAML 1.2
  parser;
- ``None`` -> ``null``, booleans -> ``true``/``false``, integers as decimal,
  floats with ``repr`` (``.nan``, ``.inf``, ``-.inf`` for the special values);
- lists and tuples -> flow sequences ``[a, b]``, mappings -> flow mappings
  ``{"k": v}`` (keys quoted like strings), recursively.

Because the result never contains a raw line break, it is safe after ``key: ``,
after ``- `` and inside flow collections, at any indentation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["to_yaml", "quote_string", "FILTERS"]

_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\0": "\\0",
    "\x07": "\\a",
    "\x08": "\\b",
    "\x0b": "\\v",
    "\x0c": "\\f",
    "\x1b": "\\e",
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
}


def _printable(code: int) -> bool:
    """Characters emitted as they are: printable ASCII and the YAML printable unicode ranges minus BOM/line breaks."""
    if 0x20 <= code <= 0x7E:
        return True
    if code in (0x85, 0xFEFF, 0x2028, 0x2029):
        return False
    return 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF


def quote_string(text: str) -> str:
    """Return ``text`` as a YAML double-quoted scalar on one line (``"a: b\\n"``) that loads back to ``text``.

    Args:
        text: any Python ``str`` (lone surrogates are escaped as ``\\uXXXX`` and cannot
            round-trip through UTF-8; everything else does).
    """
    out = ['"']
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        code = ord(ch)
        if _printable(code):
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02X}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    out.append('"')
    return "".join(out)


def to_yaml(value: Any) -> str:
    """Return ``value`` as a one-line YAML flow node that loads back to an equal value (the ``yaml`` filter).

    Args:
        value: ``None``, ``bool``, ``int``, ``float``, ``str``, a list/tuple or a mapping of these
            (mapping keys are converted with ``str``). Jinja ``Undefined`` never reaches here because
            the environment uses ``StrictUndefined``.

    Raises:
        TypeError: for any other type (a template bug: only plain data may be rendered).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        # PyYAML (YAML 1.1) reads "1e-05" as a string; give it a dot and a signed exponent.
        if "e" in text or "E" in text:
            mantissa, exponent = text.lower().split("e")
            if "." not in mantissa:
                mantissa += ".0"
            sign = "-" if exponent.startswith("-") else "+"
            text = f"{mantissa}e{sign}{exponent.lstrip('+-')}"
        return text
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{quote_string(str(k))}: {to_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_yaml(v) for v in value) + "]"
    raise TypeError(f"cannot render a value of type {type(value).__name__} into YAML: {value!r}")


#: Filters registered on every environment made by :func:`compose_kfp.pipeline.render.make_environment`.
FILTERS = {"yaml": to_yaml}
