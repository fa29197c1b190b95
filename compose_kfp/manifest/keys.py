"""Where keys are in a ``kfp.toml`` text: a hand-written scanner from key paths to line numbers.

:class:`KeyIndex` maps a key path (``("pipeline", "tasks", "train", "args", "n")``; array-of-tables
entries by index) to the line where it is set, so every message about a key can name
``kfp.toml:LINE``; :func:`dotted` writes a key path the way messages show it. Pure text
work: no file is read here and nothing is validated.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

#: A key path as messages write it (:func:`dotted`): bare or double-quoted parts joined by ``.``.
KEY_PATH = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*")(?:\.(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"))*'
_PART = re.compile(r'[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"')


def key_part(part: Any) -> str:
    """One part of a key path as messages write it: a list index or a TOML bare key as it is
    (``0``, ``train``), any other name quoted as a TOML basic string (``"Data file"``, ``"a.b"``)."""
    text = str(part)
    return text if isinstance(part, int) or _BARE_KEY.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def dotted(loc: Sequence[Any]) -> str:
    """A key path as messages show it, the one notation of every message: its parts (keys and list
    indexes, :func:`key_part`) joined by ``.`` (``("image", "layers", 0, "paths", 1)`` ->
    ``image.layers.0.paths.1``; ``("pipeline", "tasks", "Data file")`` -> ``pipeline.tasks."Data file"``);
    ``()`` -> ``""``."""
    return ".".join(key_part(p) for p in loc)


def split_key(text: str) -> tuple[Any, ...]:
    """The parts of a key path written by :func:`dotted` (the inverse): quoted parts unquoted, all-digit
    parts as list indexes (``'image.layers.0."a b"'`` -> ``("image", "layers", 0, "a b")``).

    Raises:
        ValueError: ``text`` is not a key path in that notation.
    """
    parts: list[Any] = []
    pos = 0
    while True:
        m = _PART.match(text, pos)
        if not m:
            raise ValueError(f"not a key path: {text!r}")
        raw = m.group(0)
        parts.append(json.loads(raw) if raw.startswith('"') else int(raw) if raw.isdigit() else raw)
        pos = m.end()
        if pos == len(text):
            return tuple(parts)
        if text[pos] != ".":
            raise ValueError(f"not a key path: {text!r}")
        pos += 1


class KeyIndex:
    """Line numbers of the keys of a TOML document, by key path (array-of-tables entries by index).

    A light scanner, not a parser: it follows table headers, arrays of tables,
    dotted and quoted keys, and skips the inside of strings (multi-line ones
    included) and of values spanning several lines. Keys inside inline tables
    and arrays are found through their enclosing key (:meth:`line_for` falls back
    to the longest known prefix). ``duplicates`` lists ``(key path, line, first line)``
    for keys set twice, to explain tomllib's "Cannot overwrite a value".
    """

    def __init__(self, text: str):
        # The text is scanned on first use: a valid kfp.toml needs no line numbers (a 100,000-key
        # image.env would spend a third of its load time here for nothing).
        self._text: str | None = text
        self._lines: dict[tuple, int] = {}
        self._duplicates: list[tuple[tuple, int, int]] = []
        self._aot: dict[tuple, int] = {}
        self._tables: dict[tuple, int] = {}  # explicitly declared [tables] -> line

    def _scanned(self) -> None:
        if self._text is not None:
            text, self._text = self._text, None
            self._scan(text)

    @property
    def lines(self) -> dict[tuple, int]:
        """Key path -> 1-based line where it is set (or its table / array-of-tables entry is declared)."""
        self._scanned()
        return self._lines

    @property
    def duplicates(self) -> list[tuple[tuple, int, int]]:
        """``(key path, line, first line)`` of every key set twice, in document order."""
        self._scanned()
        return self._duplicates

    def line_for(self, loc: Sequence[Any]) -> int | None:
        """The line of ``loc`` or of its longest prefix that appears in the text, else ``None``."""
        loc = tuple(loc)
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None

    def _record(self, path: tuple, line: int, *, value: bool) -> None:
        if path in self.lines:
            if value:
                self.duplicates.append((path, line, self.lines[path]))
            return
        self.lines[path] = line

    def _resolve(self, keys: list[str]) -> tuple:
        out: list[Any] = []
        for k in keys:
            out.append(k)
            if tuple(out) in self._aot:
                out.append(self._aot[tuple(out)])
        return tuple(out)

    def _scan(self, text: str) -> None:
        table: tuple = ()
        pending: str | None = None  # open multi-line string delimiter
        depth = 0
        for lineno, line in enumerate(text.splitlines(), start=1):
            pos = 0
            if pending:
                end = line.find(pending)
                if end < 0:
                    continue
                pending = None
                pos = end + 3
                pending, depth = _scan_value(line, pos, depth)
                continue
            if depth > 0:
                pending, depth = _scan_value(line, 0, depth)
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                keys, _ = _parse_key(stripped, 2)
                if keys is None:
                    continue
                parent = self._resolve(keys[:-1])
                aot_path = parent + (keys[-1],)
                self._aot[aot_path] = self._aot.get(aot_path, -1) + 1
                table = aot_path + (self._aot[aot_path],)
                self._record(aot_path, lineno, value=False)
                self._record(table, lineno, value=False)
                continue
            if stripped.startswith("["):
                keys, _ = _parse_key(stripped, 1)
                if keys is None:
                    continue
                table = self._resolve(keys)
                if table in self._tables:
                    self.duplicates.append((table, lineno, self._tables[table]))
                self._tables.setdefault(table, lineno)
                for n in range(1, len(table) + 1):
                    self._record(table[:n], lineno, value=False)
                continue
            indent = len(line) - len(line.lstrip())
            keys, end = _parse_key(line, indent)
            if keys is None or end >= len(line) or line[end] != "=":
                continue
            full = table + tuple(keys)
            for n in range(len(table) + 1, len(full)):
                self._record(full[:n], lineno, value=False)
            self._record(full, lineno, value=True)
            pending, depth = _scan_value(line, end + 1, 0)


def _parse_key(s: str, pos: int) -> tuple[list[str] | None, int]:
    """Parse a dotted key starting at ``pos``; return (parts, index after it and trailing blanks/``]``)."""
    parts: list[str] = []
    n = len(s)
    while True:
        while pos < n and s[pos] in " \t":
            pos += 1
        if pos >= n:
            return None, pos
        c = s[pos]
        if c in "\"'":
            end = pos + 1
            buf = []
            while end < n and s[end] != c:
                if c == '"' and s[end] == "\\" and end + 1 < n:
                    buf.append(s[end: end + 2].encode().decode("unicode_escape"))
                    end += 2
                    continue
                buf.append(s[end])
                end += 1
            if end >= n:
                return None, end
            parts.append("".join(buf))
            pos = end + 1
        else:
            m = _BARE_KEY.match(s, pos)
            if not m:
                return None, pos
            parts.append(m.group(0))
            pos = m.end()
        while pos < n and s[pos] in " \t":
            pos += 1
        if pos < n and s[pos] == ".":
            pos += 1
            continue
        while pos < n and s[pos] in " \t]":
            pos += 1
        return parts, pos


def _scan_value(line: str, pos: int, depth: int) -> tuple[str | None, int]:
    """Follow a value from ``pos`` to the end of ``line``: bracket depth, and an unclosed multi-line string."""
    n = len(line)
    while pos < n:
        c = line[pos]
        if c == "#":
            break
        if line.startswith('"""', pos) or line.startswith("'''", pos):
            delim = line[pos: pos + 3]
            end = line.find(delim, pos + 3)
            if end < 0:
                return delim, depth
            pos = end + 3
            continue
        if c == '"':
            pos += 1
            while pos < n and line[pos] != '"':
                pos += 2 if line[pos] == "\\" else 1
            pos += 1
            continue
        if c == "'":
            end = line.find("'", pos + 1)
            pos = n if end < 0 else end + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        pos += 1
    return None, depth
