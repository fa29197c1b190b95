"""``compose-kfp gc``: prune the project's state folder ``<project>/.compose-kfp/`` (:func:`collect_garbage`).

Everything in the state folder can be rebuilt, but rebuilding costs time (and, for a requirements layer, an
install), so gc removes only what the project's current state cannot use. What it **keeps**:

- every blob ``kfp.lock`` references: each image's top digest and, per platform, its manifest, config and
  layers (``blobs/sha256/<hex>``; a registry destination's manifests and configs are normally not stored
  locally, and are kept when they are), and the base manifest digests it records;
- the layer cache entries the current ``kfp.toml`` hits on the next plan: for each ``paths``/``rootfs`` layer
  the record of its input fingerprint (``cache/fingerprints``, :func:`compose_kfp.build.observe.input_fingerprint`)
  and the layer record it names; when that chain is broken, the record of the layer's plan key
  (:func:`compose_kfp.build.observe.layer_plan`, ``lstat`` only); the same for the runtime layer
  (``cache/layers``); each kept record's blob;
- the dependency layer records (``cache/deps``) whose requirements key ``kfp.lock`` records (the key the next
  plan looks up as long as the requirements, the installer and the base's Python did not change since the
  last apply; gc never starts the installer to compute a key), and their blobs;
- the file stamps (``cache/files``) of every kept layer blob (a plan reads them to name changed files);
- the memoized rendered digests (``cache/render``) of the current kfp.toml with the images kfp.lock pins;
- for a ``docker-archive:`` base, the import record of the archive as it is now (``cache/archives``, keyed by
  its path, size, mtime and inode) and the config and layer blobs it names (else the next plan imports and
  compresses the archive again);
- for a registry base, the base's config blob (a plan reads it from the store instead of downloading it): the
  store does not record which base manifest a config belongs to, so gc keeps, per platform, the newest stored
  blob that is an image config for that platform with as many layers as ``kfp.lock`` says the base has. A
  wrongly dropped base config only costs one small download on the next plan, never a rebuild;
- the project lock file, every file and folder gc does not know (it only prunes ``blobs/sha256`` and the
  cache folders above), and every symbolic link (never followed, never removed: listed as ``skipped``).

It removes the rest of those folders: blobs nothing kept references (old layers, base layers downloaded
to copy them to another registry), stale cache records, and the temporary files of interrupted writes
(``.tmp-*``, ``*.part``) older than ``min_temp_age`` seconds.

Concurrency: gc holds the project lock (:func:`compose_kfp.build.projectlock.holding_project_lock`, the one
``apply`` takes) while it decides and removes, so it never races an ``apply``. ``plan`` does not take that
lock; a plan running at the same moment keeps its temporary files (younger than ``min_temp_age``), and a layer
it finished building in the meantime may be removed, which costs it a rebuild on the next plan, never a wrong
image (every cache lookup checks that the blob is there and has the recorded size).

Safety: every folder is opened with ``O_NOFOLLOW`` relative to its parent's descriptor, every file read to
decide is opened the same way, and every removal is an ``unlink`` relative to the folder's descriptor, so no
symbolic link is followed (for reading or removing), even one swapped in while gc runs, and nothing outside
the state folder is read or touched. A state folder that is itself a symbolic link is
refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from compose_kfp.build import lock as lock_mod
from compose_kfp.build.images import desired_images
from compose_kfp.build.observe import docker_archive_key, input_fingerprint, layer_plan
from compose_kfp.build.projectlock import LOCK_TIMEOUT, holding_project_lock
from compose_kfp.build.statedir import STATE_DIR, ProjectState, state_dir_error
from compose_kfp.errors import BuildError, StaleError
from compose_kfp.oci.blobs import TEMP_PREFIX

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project

log = logging.getLogger(__name__)

#: Temporary files younger than this many seconds are kept (a concurrent writer may still be using them).
MIN_TEMP_AGE = 600.0

#: Blobs up to this size are read to recognise a base image config.
_CONFIG_MAX = 4 * 1024 * 1024

_HEX = r"[0-9a-f]{64}"

#: The folders gc prunes: (folder under the state folder, entry kind, entry name pattern, two-level fan-out).
#: The captured group is the key that decides whether an entry is kept.
_AREAS: tuple[tuple[str, str, re.Pattern[str], bool], ...] = (
    ("blobs/sha256", "blob", re.compile(f"({_HEX})"), False),
    ("cache/layers", "layer-cache", re.compile(rf"({_HEX})\.json"), True),
    ("cache/deps", "deps-cache", re.compile(rf"({_HEX})\.json"), True),
    ("cache/files", "file-stamps", re.compile(rf"({_HEX})\.json"), False),
    ("cache/fingerprints", "fingerprint", re.compile(rf"({_HEX})\.key"), False),
    ("cache/render", "render-cache", re.compile(rf"({_HEX})\.json"), False),
    ("cache/archives", "archive", re.compile(rf"({_HEX})\.json"), False),
)


@dataclasses.dataclass(frozen=True)
class GcEntry:
    """One file gc removed (or, with ``dry_run``, would remove).

    Attributes:
        path: relative to the project folder, POSIX (``.compose-kfp/blobs/sha256/<hex>``).
        kind: ``blob``, ``layer-cache``, ``deps-cache``, ``file-stamps``, ``fingerprint``, ``render-cache``,
            ``archive`` or ``temp`` (a leftover temporary file).
        size: its size in bytes (``st_size``).
    """

    path: str
    kind: str
    size: int


@dataclasses.dataclass(frozen=True)
class GcResult:
    """What :func:`collect_garbage` did.

    Attributes:
        removed: the entries removed (or that would be, with ``dry_run``), sorted by path.
        freed: bytes removed (or that would be): the sum of ``removed`` sizes.
        kept: how many entries of the pruned folders were kept.
        skipped: symbolic links found in the pruned folders (relative POSIX paths, sorted), neither followed
            nor removed.
        dry_run: nothing was removed.
        state_dir: whether the project has a state folder (``False``: nothing to do).
    """

    removed: tuple[GcEntry, ...] = ()
    freed: int = 0
    kept: int = 0
    skipped: tuple[str, ...] = ()
    dry_run: bool = False
    state_dir: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"removed": [{"path", "kind", "size"}...], "freed", "kept", "skipped", "dry_run",
        "state_dir"}`` (sizes in bytes)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Keep:
    """Keys to keep, per area (the captured group of :data:`_AREAS`)."""

    blobs: set[str] = dataclasses.field(default_factory=set)
    areas: dict[str, set[str]] = dataclasses.field(default_factory=lambda: {a: set() for a, *_ in _AREAS})

    def blob(self, digest: Any) -> None:
        if isinstance(digest, str) and digest.startswith("sha256:"):
            self.blobs.add(digest[7:])


def collect_garbage(project: Project, *, dry_run: bool = False, lock_timeout: float = LOCK_TIMEOUT,
                    min_temp_age: float = MIN_TEMP_AGE) -> GcResult:
    """Remove from ``<project>/.compose-kfp/`` every blob and cache entry the current state does not need
    (module docstring: what is kept and why), holding the project lock.

    Args:
        project: the loaded project (its kfp.toml decides which cache entries the next plan hits).
        dry_run: decide and report, remove nothing (the result has the same numbers).
        lock_timeout: seconds to wait for a running ``apply`` to release the project lock.
        min_temp_age: temporary files younger than this many seconds are kept.

    Returns:
        A :class:`GcResult`; with no state folder, an empty one with ``state_dir=False`` (nothing is created).

    Raises:
        BusyError: an ``apply`` still holds the project lock after ``lock_timeout`` seconds.
        BuildError: the state folder is a symbolic link, a layer source of kfp.toml is unusable, or a file
            cannot be removed (the message names the state folder).
        ConfigError: kfp.lock cannot be read.
    """
    root = Path(project.root)
    state = ProjectState(root)
    try:
        st = os.lstat(state.dir)
    except FileNotFoundError:
        return GcResult(dry_run=dry_run, state_dir=False)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise BuildError(f"{STATE_DIR} in {root} is not a folder (a symbolic link or a file); gc does not follow "
                         f"links out of the project: remove what it points at by hand, or replace it with a folder.")
    with holding_project_lock(root, lock_timeout):
        keep = _needed(project, state)
        try:
            return _sweep(state, keep, dry_run=dry_run, min_temp_age=min_temp_age)
        except OSError as e:
            raise state_dir_error(state, e) from None


# --------------------------------------------------------------------------- what is needed


def _needed(project: Project, state: ProjectState) -> _Keep:
    keep = _Keep()
    lock = lock_mod.read_lock(project.root)
    _from_lock(lock, keep)
    images = desired_images(project.manifest, project.root)
    _current_layers(images, state, keep)
    if images and images[0].base.startswith("docker-archive:"):
        _archive(images[0].base, state, keep)
    elif images and images[0].base != "scratch" and not images[0].base.startswith(("oci:", "dir:")):
        _base_configs(images[0].platforms, lock, state, keep)
    _render_key(project, keep)
    # The file stamps of every kept layer blob.
    keep.areas["cache/files"] |= keep.blobs
    return keep


def _from_lock(lock: Mapping[str, Any] | None, keep: _Keep) -> None:
    for entry in ((lock or {}).get("base") or {}).get("platforms", {}).values():
        keep.blob(entry.get("digest"))
        keep.blob(entry.get("top_digest"))
    for image in ((lock or {}).get("images") or {}).values():
        keep.blob(image.get("digest"))
        for plat in (image.get("platforms") or {}).values():
            for name in ("manifest", "config", "base"):
                keep.blob(plat.get(name))
            for layer in plat.get("layers") or []:
                keep.blob(layer.get("digest"))
                key = str(layer.get("key") or "")
                if re.fullmatch(f"sha256:{_HEX}", key):
                    keep.areas["cache/deps"].add(key[7:])


def _record_path(area: str, hexkey: str) -> tuple[str, ...]:
    """The record ``hexkey`` of a two-level cache (``cache/layers``, ``cache/deps``), as path parts."""
    return (*area.split("/"), hexkey[:2], f"{hexkey}.json")


def _record_digest(state: ProjectState, parts: tuple[str, ...]) -> str | None:
    try:
        record = json.loads(_read_inside(state, parts, 1 << 20))
    except (OSError, ValueError):
        return None
    return record.get("digest") if isinstance(record, dict) else None


def _current_layers(images: Any, state: ProjectState, keep: _Keep) -> None:
    """The layer records the next plan hits for the current inputs (and the locked deps records' blobs)."""
    for hexkey in keep.areas["cache/deps"]:
        keep.blob(_record_digest(state, _record_path("cache/deps", hexkey)))
    seen: set[tuple[str, str]] = set()
    for image in images:
        for spec in image.layers:
            if spec.kind == "requirements" or (spec.name, image.compression) in seen:
                continue
            seen.add((spec.name, image.compression))
            fp = input_fingerprint(spec, image.compression, state.root)
            key = None
            if fp is not None:
                key = _fingerprint_key(state, fp)
                if key is not None:
                    keep.areas["cache/fingerprints"].add(fp)
            digest = _record_digest(state, _record_path("cache/layers", key)) if key and re.fullmatch(_HEX, key) \
                else None
            if digest is None:  # what the plan does when the fingerprint does not lead to a record
                key = layer_plan(spec, image.compression, state.root).key
                digest = _record_digest(state, _record_path("cache/layers", key))
            keep.areas["cache/layers"].add(key)
            keep.blob(digest)


def _archive(base: str, state: ProjectState, keep: _Keep) -> None:
    """The import record of a ``docker-archive:`` base as it is now and its blobs (the key as
    :func:`compose_kfp.build.observe.docker_archive_key`)."""
    key = docker_archive_key(str((state.root / base[len("docker-archive:"):]).resolve()))
    if key is None:
        return
    keep.areas["cache/archives"].add(key)
    try:
        manifest = json.loads(_read_inside(state, ("cache", "archives", f"{key}.json"), _CONFIG_MAX))
    except (OSError, ValueError):
        return
    if isinstance(manifest, dict):
        for desc in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
            if isinstance(desc, dict):
                keep.blob(desc.get("digest"))


def _base_configs(platforms: tuple[str, ...], lock: Mapping[str, Any] | None, state: ProjectState,
                  keep: _Keep) -> None:
    """Per platform, the newest stored image config for it with the locked number of base layers."""
    counts: dict[str, int] = {}
    for image in ((lock or {}).get("images") or {}).values():
        for p, plat in (image.get("platforms") or {}).items():
            if isinstance(plat.get("base_layers"), int):
                counts.setdefault(p, plat["base_layers"])
    best: dict[str, tuple[int, str]] = {}
    for name, mtime in _small_blobs(state):
        if name in keep.blobs:
            continue
        try:
            if _read_inside(state, ("blobs", "sha256", name), 1) != b"{":  # a layer: not read further
                continue
            doc = json.loads(_read_inside(state, ("blobs", "sha256", name), _CONFIG_MAX))
        except (OSError, ValueError):
            continue
        rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
            continue
        n = len(rootfs["diff_ids"])
        for p in platforms:
            os_, _, rest = p.partition("/")
            arch = rest.partition("/")[0]
            if doc.get("os") == os_ and doc.get("architecture") == arch and counts.get(p, n) == n:
                if p not in best or (mtime, name) > best[p]:
                    best[p] = (mtime, name)
    for _, name in best.values():
        keep.blobs.add(name)


def _small_blobs(state: ProjectState) -> Iterator[tuple[str, int]]:
    """``(hex, mtime_ns)`` of the regular blob files up to :data:`_CONFIG_MAX` bytes (links are not looked at)."""
    try:
        fd = _open_dir_chain(state.dir, ("blobs", "sha256"))
    except OSError:
        return
    try:
        with os.scandir(fd) as it:
            for de in it:
                if not re.fullmatch(_HEX, de.name):
                    continue
                st = de.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_size <= _CONFIG_MAX:
                    yield de.name, st.st_mtime_ns
    finally:
        os.close(fd)


def _render_key(project: Project, keep: _Keep) -> None:
    from compose_kfp.pipeline.outputs import render_inputs_key

    try:
        refs = {**lock_mod.lock_images(project), **lock_mod.lock_component_images(project)}
    except StaleError:
        return
    keep.areas["cache/render"].add(render_inputs_key(project, refs))


# --------------------------------------------------------------------------- removing


def _read_inside(state: ProjectState, parts: tuple[str, ...], limit: int) -> bytes:
    """Up to ``limit`` bytes of ``state.dir/parts...``, no level followed if it is a link (``OSError`` then)."""
    fd = _open_dir_chain(state.dir, parts[:-1])
    try:
        ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(ffd, "rb") as f:
        return f.read(limit)


def _fingerprint_key(state: ProjectState, fingerprint: str) -> str | None:
    """As :meth:`ProjectState.fingerprint_key`, without following links."""
    try:
        return _read_inside(state, ("cache", "fingerprints", f"{fingerprint}.key"), 4096).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _open_dir_chain(top: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of ``top/parts...``, each level opened with ``O_NOFOLLOW`` (``ELOOP``/``ENOTDIR``: a link)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    fd = os.open(top, flags)
    for part in parts:
        try:
            nxt = os.open(part, flags, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def _is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) or ".tmp-" in name or name.endswith(".part")


def _sweep(state: ProjectState, keep: _Keep, *, dry_run: bool, min_temp_age: float) -> GcResult:
    removed: list[GcEntry] = []
    skipped: list[str] = []
    kept = 0
    now = time.time()
    for area, kind, pattern, fanout in _AREAS:
        parts = tuple(area.split("/"))
        try:
            fd = _open_dir_chain(state.dir, parts)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                skipped.extend(_links_on_the_way(state, parts))
            elif e.errno != errno.ENOENT:
                raise
            continue
        wanted = keep.blobs if area == "blobs/sha256" else keep.areas[area]
        rel = f"{STATE_DIR}/{area}"
        try:
            folders = [(fd, rel, None)]
            if fanout:
                folders = []
                with os.scandir(fd) as it:
                    for de in sorted(it, key=lambda d: d.name):
                        if de.is_symlink():
                            skipped.append(f"{rel}/{de.name}")
                        elif de.is_dir(follow_symlinks=False) and re.fullmatch("[0-9a-f]{2}", de.name):
                            try:
                                sub = os.open(de.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                            except OSError as e:  # swapped for a link since it was listed
                                if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                                    raise
                                continue
                            folders.append((sub, f"{rel}/{de.name}", de.name))
            for dfd, drel, subname in folders:
                try:
                    n, empty = _sweep_folder(dfd, drel, kind, pattern, wanted, removed, skipped, dry_run,
                                             now, min_temp_age)
                    kept += n
                finally:
                    if dfd != fd:
                        os.close(dfd)
                if subname is not None and empty and not dry_run:
                    with contextlib.suppress(OSError):  # a writer may have just put a record there
                        os.rmdir(subname, dir_fd=fd)
        finally:
            os.close(fd)
    removed.sort(key=lambda e: e.path)
    return GcResult(removed=tuple(removed), freed=sum(e.size for e in removed), kept=kept,
                    skipped=tuple(sorted(skipped)), dry_run=dry_run, state_dir=True)


def _sweep_folder(fd: int, rel: str, kind: str, pattern: re.Pattern[str], wanted: set[str],
                  removed: list[GcEntry], skipped: list[str], dry_run: bool, now: float,
                  min_temp_age: float) -> tuple[int, bool]:
    """Prune one folder (descriptor ``fd``); return (entries kept, whether it is empty afterwards)."""
    kept = 0
    left = 0
    with os.scandir(fd) as it:
        entries = sorted(it, key=lambda d: d.name)
    for de in entries:
        try:
            st = de.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            skipped.append(f"{rel}/{de.name}")
            left += 1
            continue
        if not stat.S_ISREG(st.st_mode):
            left += 1
            continue
        m = pattern.fullmatch(de.name)
        if m is not None:
            if m.group(1) in wanted:
                kept += 1
                left += 1
                continue
            entry = GcEntry(f"{rel}/{de.name}", kind, st.st_size)
        elif _is_temp(de.name):
            if now - st.st_mtime < min_temp_age:
                kept += 1
                left += 1
                continue
            entry = GcEntry(f"{rel}/{de.name}", "temp", st.st_size)
        else:  # not ours to judge
            left += 1
            continue
        if not dry_run:
            try:
                os.unlink(de.name, dir_fd=fd)
            except FileNotFoundError:
                continue
        removed.append(entry)
        log.info("%s %s (%s, %d bytes)", "would remove" if dry_run else "removed", entry.path, kind, entry.size)
    return kept, left == 0


def _links_on_the_way(state: ProjectState, parts: tuple[str, ...]) -> list[str]:
    """The symbolic link among ``state.dir/parts...`` that stopped the walk (relative POSIX path)."""
    path = state.dir
    for i, part in enumerate(parts):
        path = path / part
        if path.is_symlink():
            return [f"{STATE_DIR}/{'/'.join(parts[:i + 1])}"]
    return []


__all__ = ["GcEntry", "GcResult", "MIN_TEMP_AGE", "collect_garbage"]
