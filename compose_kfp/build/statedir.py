"""The project's local state folder, ``<project>/.compose-kfp/`` (:class:`ProjectState`).

It holds ``blobs/`` (the content-addressed blob store), ``cache/layers`` (layer cache),
``cache/deps`` (dependency layers by requirements key), ``cache/files`` (per layer digest,
the ``(path, size, mtime_ns)`` of its files, so a plan can name the files that changed),
``cache/fingerprints``, ``cache/archives``, ``cache/render``, ``cache/tasks`` (results of ``run --local`` by task
cache key, :mod:`compose_kfp.localrun.cache`), ``task-keys.json`` (the task cache keys the last ``apply`` or
``run --local`` recorded, which ``plan`` compares with) and ``lock`` (the apply lock file).
Everything in it can be rebuilt; it is never committed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from compose_kfp.build import deps as deps_mod
from compose_kfp.errors import BuildError
from compose_kfp.oci.blobs import BlobStore, atomic_write
from compose_kfp.oci.layer import LayerCache

log = logging.getLogger(__name__)

#: The project's state folder (relative to the folder of kfp.toml).
STATE_DIR = ".compose-kfp"


@dataclasses.dataclass(frozen=True)
class ProjectState:
    """Where a project keeps its local state: ``<root>/.compose-kfp``.

    Attributes:
        root: the project folder (holds ``kfp.toml``).
    """

    root: Path

    @property
    def dir(self) -> Path:
        """``<root>/.compose-kfp``."""
        return self.root / STATE_DIR

    @property
    def store(self) -> BlobStore:
        """Content-addressed blob store (``blobs/sha256/<hex>``)."""
        return BlobStore(self.dir)

    @property
    def layer_cache(self) -> LayerCache:
        """Finished layers by layer plan key (``cache/layers``)."""
        return LayerCache(self.dir / "cache" / "layers")

    @property
    def deps_cache(self) -> deps_mod.DepsCache:
        """Dependency layers by requirements key (``cache/deps``)."""
        return deps_mod.DepsCache(self.dir / "cache" / "deps")

    @property
    def files_dir(self) -> Path:
        """Per layer digest, the file stamps recorded when it was built (``cache/files``)."""
        return self.dir / "cache" / "files"

    @property
    def lock_path(self) -> Path:
        """The file lock that serializes ``apply`` runs."""
        return self.dir / "lock"

    @property
    def results_dir(self) -> Path:
        """Results of ``run --local`` by task cache key (``cache/tasks``)."""
        return self.dir / "cache" / "tasks"

    def task_keys(self) -> dict[str, dict[str, Any]]:
        """Task -> its recorded key parts (``task-keys.json``: :meth:`compose_kfp.pipeline.cache.TaskKey.to_dict`);
        empty when none were recorded or the file is not readable JSON."""
        try:
            data = json.loads((self.dir / "task-keys.json").read_text(encoding="utf-8"))
            tasks = data["tasks"] if data.get("version") == 1 else {}
            return {str(k): dict(v) for k, v in tasks.items() if isinstance(v, dict)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def record_task_keys(self, keys: Mapping[str, Mapping[str, Any]], *, replace: bool = False) -> None:
        """Record task keys (atomic write): ``replace`` (apply: the whole pipeline) or merged into what is there
        (a run: the tasks that succeeded). A state folder that cannot be written is logged, not raised."""
        tasks = {} if replace else self.task_keys()
        tasks.update({name: dict(v) for name, v in keys.items()})
        try:
            atomic_write(self.dir / "task-keys.json",
                         json.dumps({"version": 1, "tasks": tasks}, indent=1, sort_keys=True).encode("utf-8"))
        except OSError as e:
            log.debug("cannot record task keys in %s: %s", self.dir, e)

    def record_files(self, digest: str, files: Sequence[tuple[str, int, int]]) -> None:
        """Remember the ``(path, size, mtime_ns)`` of the files of layer ``digest`` (atomic write)."""
        path = self.files_dir / f"{digest.split(':', 1)[1]}.json"
        if path.exists():
            return
        atomic_write(path, json.dumps([list(f) for f in files]).encode("utf-8"))

    def fingerprint_key(self, fingerprint: str) -> str | None:
        """The layer plan key recorded for an input fingerprint (:func:`input_fingerprint`), or ``None``."""
        try:
            return (self.dir / "cache" / "fingerprints" / f"{fingerprint}.key").read_text(encoding="ascii").strip()
        except OSError:
            return None

    def record_fingerprint(self, fingerprint: str, key: str) -> None:
        """Remember that inputs with ``fingerprint`` plan to layer key ``key`` (atomic write)."""
        path = self.dir / "cache" / "fingerprints" / f"{fingerprint}.key"
        atomic_write(path, key.encode("ascii"))

    def files_of(self, digest: str) -> tuple[tuple[str, int, int], ...] | None:
        """The file stamps recorded for layer ``digest``, or ``None``."""
        try:
            rows = json.loads((self.files_dir / f"{digest.split(':', 1)[1]}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, IndexError):
            return None
        return tuple((str(r[0]), int(r[1]), int(r[2])) for r in rows)


def state_dir_error(state: ProjectState, error: OSError) -> BuildError:
    """A :class:`BuildError` for a file-system ``error`` in the project's state folder ``.compose-kfp``."""
    where = STATE_DIR
    if error.filename:
        path = Path(error.filename)
        where = _rel(path.parent if path.name.startswith(".tmp-") else path, state.root)
    return BuildError(f"{STATE_DIR} (the state folder: blob store, layer cache, apply lock): cannot write {where}: "
                      f"{error.strerror or error}. compose-kfp needs a writable {state.dir} to build layers; make "
                      "the project folder writable (or work in a writable copy).")


def in_state_dir(state: ProjectState, error: OSError) -> bool:
    """Whether the file-system ``error`` names a path inside the state folder of ``state``."""
    if not error.filename:
        return False
    try:
        Path(error.filename).resolve().relative_to(state.dir.resolve())
        return True
    except (ValueError, OSError):
        return False


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


__all__ = ["STATE_DIR", "ProjectState", "in_state_dir", "state_dir_error"]
