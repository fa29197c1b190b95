"""Results of ``run --local`` kept by task cache key (:mod:`compose_kfp.pipeline.cache`), so a task whose key has
not changed is not run again: its outputs are restored.

Layout, under the project's ``.compose-kfp/cache/tasks/`` (:class:`ResultCache`)::

    <key>/manifest.json        {"version": 1, "key": KEY, "task": NAME,
                                "outputs": {OUTPUT: {"files": {RELATIVE PATH: "sha256:<hex>" or "link:<target>"}}}}
    <key>/outputs/<io name>/data   each output, a file ("" is its relative path) or a folder, as the task wrote it

An entry is written only after the task succeeded, into ``.tmp-<key>-<random>/`` beside it and renamed into place,
so a reader sees a whole entry or none. Before reuse every output file is hashed again; an entry with a missing
or extra output, a file whose digest differs, a malformed ``manifest.json`` or no manifest at all (a folder left
by a killed run) is never used: it is removed (with leftover temporary folders of that key) and the task runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compose_kfp.oci.unpack import remove_tree
from compose_kfp.steps.placeholders import io_name

__all__ = ["ResultCache", "ENTRY_VERSION"]

log = logging.getLogger(__name__)

ENTRY_VERSION = 1
_TMP = ".tmp-"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _files_of(path: Path) -> dict[str, str]:
    """Relative path -> ``sha256:<hex>`` (or ``link:<target>``) of the output at ``path`` (``""`` for a file)."""
    if path.is_symlink():
        return {"": "link:" + os.readlink(path)}
    if not path.is_dir():
        return {"": _file_digest(path)}
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if (Path(folder) / d).is_symlink()]):
            full = Path(folder) / name
            rel = full.relative_to(path).as_posix()
            out[rel] = "link:" + os.readlink(full) if full.is_symlink() else _file_digest(full)
    return out


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copy2(src, dest, follow_symlinks=False)


class ResultCache:
    """The results of succeeded tasks by cache key, in ``root`` (see the module docstring).

    ``reuse``: entries are looked up (``False``: ``run --local --no-cache``, which still stores fresh results).
    """

    def __init__(self, root: Path, *, reuse: bool = True):
        self.root = Path(root)
        self.reuse = reuse

    def _output_path(self, entry: Path, output: str) -> Path:
        return entry / "outputs" / io_name(output) / "data"

    def lookup(self, key: str, outputs: Sequence[str]) -> Path | None:
        """The folder of a complete, valid entry for ``key`` holding exactly ``outputs``, or ``None`` (a broken
        entry is removed first; with ``reuse`` off, always ``None``)."""
        if not self.reuse:
            return None
        entry = self.root / key
        if not entry.exists():
            return None
        problem = self._problem(entry, key, outputs)
        if problem is None:
            return entry
        log.warning("cached result %s is not usable (%s); removing it, the task runs", entry, problem)
        self._discard(key)
        return None

    def _problem(self, entry: Path, key: str, outputs: Sequence[str]) -> str | None:
        try:
            manifest: Any = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "no manifest.json (a partial entry)"
        except (OSError, ValueError) as e:
            return f"manifest.json cannot be read: {e}"
        if not isinstance(manifest, dict) or manifest.get("version") != ENTRY_VERSION or manifest.get("key") != key:
            return "manifest.json is not an entry of this key"
        recorded = manifest.get("outputs")
        if not isinstance(recorded, dict) or sorted(recorded) != sorted(outputs):
            return f"it holds outputs {sorted(recorded) if isinstance(recorded, dict) else '?'}, not {sorted(outputs)}"
        for output in outputs:
            files = recorded[output].get("files") if isinstance(recorded[output], dict) else None
            path = self._output_path(entry, output)
            try:
                if not os.path.lexists(path):
                    return f"output {output!r} is missing"
                if files != _files_of(path):
                    return f"output {output!r} does not match its recorded sha256"
            except OSError as e:
                return f"output {output!r} cannot be read: {e}"
        return None

    def restore(self, entry: Path, outputs: Sequence[str], outputs_dir: Path) -> None:
        """Copy each output of ``entry`` to ``<outputs_dir>/<io name>/data`` (what the task would have written)."""
        for output in outputs:
            _copy(self._output_path(entry, output), outputs_dir / io_name(output) / "data")

    def store(self, key: str, task: str, outputs: Sequence[str], outputs_dir: Path) -> None:
        """Record the outputs of a task that succeeded (``<outputs_dir>/<io name>/data`` each) under ``key``:
        written to a temporary folder, then renamed into place. A failure is logged, never raised (the run
        does not depend on its cache)."""
        tmp = self.root / f"{_TMP}{key}-{uuid.uuid4().hex[:8]}"
        try:
            recorded = {}
            for output in outputs:
                dest = self._output_path(tmp, output)
                _copy(outputs_dir / io_name(output) / "data", dest)
                recorded[output] = {"files": _files_of(dest)}
            (tmp / "manifest.json").write_text(json.dumps(
                {"version": ENTRY_VERSION, "key": key, "task": task, "outputs": recorded}, indent=1, sort_keys=True))
            if (self.root / key).exists():
                remove_tree(self.root / key)
            os.rename(tmp, self.root / key)
        except OSError as e:
            log.warning("cannot cache the result of %s in %s: %s", task, self.root, e)
        finally:
            remove_tree(tmp)

    def _discard(self, key: str) -> None:
        remove_tree(self.root / key)
        for leftover in self.root.glob(f"{_TMP}{key}-*"):
            remove_tree(leftover)
