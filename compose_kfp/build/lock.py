"""``kfp.lock``: what the last ``apply`` resolved, meant to be committed next to ``kfp.toml``.

Format (JSON, keys sorted, two-space indent, newline at the end; written
atomically: temporary file in the same folder, then rename)::

    {
      "version": 1,
      "base": {"reference": "python:3.11-slim",
               "platforms": {"linux/amd64": {"digest": "sha256:…", "top_digest": "sha256:…"}}},
      "images": {
        "main": {"repository": "ghcr.io/acme/iris", "digest": "sha256:…",
                 "tags": ["kfp-…", "latest"], "steps": ["load", "train"],
                 "platforms": {"linux/amd64": {
                     "manifest": "sha256:…", "config": "sha256:…", "base": "sha256:…", "base_layers": 3,
                     "layers": [{"name": "deps", "kind": "requirements", "key": "sha256:…",
                                 "digest": "sha256:…", "diff_id": "sha256:…", "size": 123,
                                 "media_type": "application/vnd.oci.image.layer.v1.tar+gzip"}, …]}}}},
      "rendered": {"build/components/train.yaml": "sha256:…"},
      "components": {"report": "ghcr.io/acme/report@sha256:…"}
    }

``components`` (only when there are component-file steps with a registry image): each third-party
component image pinned by digest, as rendered.

``digest`` of an image is the index digest for several platforms, else the
manifest digest. ``key`` is recorded for ``requirements`` layers only (the
requirements key does not depend on where the project is checked out; the file
layers' keys contain inode numbers and modification times and would make the
lock differ between two checkouts of the same commit).

``--frozen`` (CI): the locked base digests are used instead of resolving the
base tag, and :func:`check_frozen` raises :class:`~compose_kfp.errors.StaleError`
when the lock the run would write differs from the committed one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from compose_kfp.build.images import desired_images
from compose_kfp.build import spec as spec_mod
from compose_kfp.build.pins import component_images
from compose_kfp.errors import BuildError, ConfigError, StaleError
from compose_kfp.oci.blobs import atomic_write
from compose_kfp.oci.reference import Reference
from compose_kfp.planner import Plan

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project

#: File name, next to kfp.toml.
LOCK_NAME = spec_mod.LOCK_NAME
LOCK_VERSION = 1


def lock_path(root: Path | str) -> Path:
    """``<root>/kfp.lock``."""
    return Path(root) / LOCK_NAME


def read_lock(root: Path | str) -> dict[str, Any] | None:
    """The parsed ``kfp.lock`` of the project at ``root``, or ``None`` when there is none.

    Raises:
        ConfigError: the file is not JSON, or not a kfp.lock of a known version (the message says how to fix it).
    """
    path = lock_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}.") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); delete it and run `compose-kfp apply` to write it again, "
                          "or restore it from version control.") from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise ConfigError(f"{path}: not a kfp.lock of version {LOCK_VERSION}; delete it and run "
                          "`compose-kfp apply` to write it again.")
    return data


def lock_from_plan(plan: Plan, rendered: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The lock describing ``plan`` once applied, or ``None`` when some digest is known only after apply.

    Args:
        plan: a plan (from :func:`compose_kfp.planner.plan`, or the resolved plan apply returns).
        rendered: rendered file path (relative to the project) -> sha256 hex.
    """
    images: dict[str, Any] = {}
    base: dict[str, Any] = {}
    for image in plan.images:
        if image.after is None:
            return None
        plats: dict[str, Any] = {}
        for p in image.platforms:
            if p.manifest_after is None:
                return None
            layers = []
            for ly in p.layers:
                if ly.action == "remove":
                    continue
                entry = {"name": ly.name, "kind": ly.kind, "digest": ly.after, "diff_id": ly.diff_id,
                         "size": ly.size, "media_type": ly.media_type}
                if ly.kind == "requirements":
                    entry["key"] = ly.key
                layers.append(entry)
            n_base = 0
            if p.recipe.base_manifest:
                n_base = len(json.loads(p.recipe.base_manifest).get("layers") or [])
            plats[p.platform] = {"manifest": p.manifest_after, "config": p.config_after, "base": p.base.after,
                                 "base_layers": n_base, "layers": layers}
            base.setdefault("reference", p.base.reference)
            base.setdefault("platforms", {})[p.platform] = {"digest": p.base.after, "top_digest": p.base.top_digest}
        images[image.name] = {"repository": image.repository, "digest": image.after, "tags": list(image.tags),
                              "steps": list(image.steps), "platforms": plats}
    out = {"version": LOCK_VERSION, "base": base, "images": images,
           "rendered": {k: f"sha256:{v}" for k, v in sorted((rendered or {}).items())}}
    if plan.component_images:
        out["components"] = dict(sorted(plan.component_images))
    return out


def dumps(lock: Mapping[str, Any]) -> str:
    """The file text of ``lock``: sorted keys, two-space indent, trailing newline (stable across runs)."""
    return json.dumps(lock, indent=2, sort_keys=True) + "\n"


def write_lock(root: Path | str, lock: Mapping[str, Any]) -> Path:
    """Write ``kfp.lock`` atomically (:func:`compose_kfp.oci.blobs.atomic_write`: temporary file in the same
    folder, fsync, rename; the temporary file is removed when any step fails); return its path.

    Raises:
        BuildError: the file cannot be written (read-only folder, immutable file, disk full); the message
            names kfp.lock, the path and the system's reason. The previous kfp.lock is left as it was.
    """
    path = lock_path(root)
    try:
        atomic_write(path, dumps(lock).encode("utf-8"))
    except OSError as e:
        raise BuildError(f"{LOCK_NAME}: cannot write {path}: {e.strerror or e}. The previous {LOCK_NAME} is "
                         f"unchanged; make the file and its folder writable and run `compose-kfp apply` again "
                         "(it will write the lock without sending anything again).") from None
    return path


def diff_locks(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """Dotted key paths where ``old`` and ``new`` differ (``images.main.digest``), sorted; empty when equal."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        elif a != b:
            out.append(path or "(whole file)")

    walk(old, new, "")
    return out


def check_frozen(root: Path | str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
    """``--frozen``: raise :class:`StaleError` unless the lock would stay exactly as committed.

    ``new`` is ``None`` when a digest can only be known after building (a requirements layer whose key is not
    in the lock), which also counts as a change.
    """
    path = lock_path(root)
    if old is None:
        raise StaleError(f"{path}: --frozen needs a kfp.lock; run `compose-kfp apply` without --frozen and commit "
                         "kfp.lock.")
    if new is None:
        raise StaleError(f"{path} is out of date (--frozen): a layer would have to be rebuilt (its inputs are not "
                         "the locked ones). Run `compose-kfp apply` without --frozen and commit kfp.lock.")
    changed = diff_locks(old, new)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise StaleError(f"{path} is out of date (--frozen): {shown} would change. Run `compose-kfp apply` "
                         "without --frozen and commit kfp.lock.")


# --------------------------------------------------------------------------- readers of the digests


def _require_lock(root: Path) -> dict[str, Any]:
    """kfp.lock of the project at ``root``. Raises StaleError (run ``apply``) when there is none."""
    lock = read_lock(root)
    if lock is None:
        raise StaleError(f"{lock_path(root)}: no kfp.lock, so the image digests are unknown. "
                         "Run `compose-kfp apply` first (it builds, pushes and writes kfp.lock).")
    return lock


def lock_images(project: Project) -> dict[str, str]:
    """Step name -> pinned image reference (``repository@sha256:...``) of every function step, from kfp.lock.

    Used by ``render`` and ``run --local``. Third-party component steps are not in the map: their
    images, pinned by digest, come from :func:`lock_component_images`.

    Raises:
        StaleError: there is no kfp.lock, or it lacks an image a function step needs (run ``apply``).
    """
    lock = _require_lock(project.root)
    images = desired_images(project.manifest, project.root)
    refs: dict[str, str] = {}
    for image in images:
        entry = (lock.get("images") or {}).get(image.name)
        if image.steps and (not entry or entry.get("repository") != image.repository or not entry.get("digest")):
            raise StaleError(f"{lock_path(project.root)} has no digest for image {image.name!r} in "
                             f"{image.repository}; run `compose-kfp apply`.")
        for step in image.steps:
            refs[step] = f"{image.repository}@{entry['digest']}"  # type: ignore[index]
    return refs


def lock_component_images(project: Project) -> dict[str, str]:
    """Component-file step -> its image pinned by digest in kfp.lock (``components``).

    Raises:
        StaleError: there is no kfp.lock, it does not pin a component step's image, or the pin is for
            another repository (or another digest) than the component file now names (run ``apply``).
    """
    lock = _require_lock(project.root)
    locked = lock.get("components") or {}
    out = {}
    for step, image_ref in component_images(project).items():
        if step not in locked:
            raise StaleError(f"{lock_path(project.root)} does not pin the image of step {step!r} "
                             f"({image_ref}); run `compose-kfp apply`.")
        wanted, pinned = Reference.parse(image_ref), Reference.parse(locked[step])
        if wanted.name != pinned.name or (wanted.digest and wanted.digest != pinned.digest):
            raise StaleError(f"{lock_path(project.root)} pins step {step!r} to {locked[step]}, but its "
                             f"component file now names {image_ref}; run `compose-kfp apply` to pin it again.")
        out[step] = locked[step]
    return out


__all__ = ["LOCK_NAME", "LOCK_VERSION", "check_frozen", "diff_locks", "dumps", "lock_component_images",
           "lock_from_plan", "lock_images", "lock_path", "read_lock", "write_lock"]
