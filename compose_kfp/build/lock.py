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

Reading checks the file (:func:`read_lock`: UTF-8 JSON, version, the types above, every digest's form), and
the readers of the image digests check each against what is known offline (:func:`lock_images`), so a
damaged or hand-edited kfp.lock is a :class:`~compose_kfp.errors.ConfigError` naming its line and key, not a
value rendered into the outputs.

``--frozen`` (CI): the locked base digests are used instead of resolving the
base tag, and :func:`check_frozen` raises :class:`~compose_kfp.errors.StaleError`
when the lock the run would write differs from the committed one.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from compose_kfp.build.destination import LAYOUT_PREFIX, layout_path
from compose_kfp.build.images import desired_images
from compose_kfp.build import spec as spec_mod
from compose_kfp.build.pins import component_images
from compose_kfp.build.staging import StagedFiles
from compose_kfp.errors import BuildError, ConfigError, StaleError
from compose_kfp.manifest.keys import dotted
from compose_kfp.oci.digest import split_digest
from compose_kfp.oci.errors import ImageError, InvalidReference
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

    Checked at read time, so that nothing downstream renders or pulls a damaged value: UTF-8 text, JSON, an
    object of version :data:`LOCK_VERSION`, and every entry of the format above of the right type, each
    digest (``sha256:`` and 64 lowercase hex digits, or ``sha512:`` and 128) and each ``components`` pin
    (``repository@digest``) well formed (:func:`check_lock`).

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 JSON (binary bytes, truncated), or is not a valid
            kfp.lock; the message is ``kfp.lock[:LINE]: KEY: what is wrong`` and says what to do (fix the
            entry, or delete kfp.lock and run ``compose-kfp apply``, or restore it from version control).
    """
    path = lock_path(root)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}), so not a kfp.lock written by compose-kfp; "
                          f"{_REWRITE}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); {_REWRITE}") from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION or isinstance(data.get("version"), bool):
        raise ConfigError(f"{path}: not a kfp.lock of version {LOCK_VERSION}; delete it and run "
                          "`compose-kfp apply` to write it again.")
    check_lock(data, path, text)
    return data


_REWRITE = ("delete it and run `compose-kfp apply` to write it again, or restore it from version control.")


def _lock_error(path: Path, text: str | None, key: tuple[Any, ...], what: str) -> ConfigError:
    """``kfp.lock:LINE: a.b.c: what; fix the entry, or delete kfp.lock and run apply.``"""
    line = _line_of(text, key) if text else None
    where = f"{path}:{line}" if line else str(path)
    shown = dotted(key)
    return ConfigError(f"{where}: {shown}: {what}. kfp.lock was edited or damaged: fix the entry, or delete "
                       f"{LOCK_NAME} and run `compose-kfp apply` to write it again.")


def _line_of(text: str, key: tuple[Any, ...]) -> int | None:
    """The line of ``text`` (kfp.lock as :func:`dumps` writes it: one key per line) where ``key`` is set: each
    object key looked for after the previous one; a list index stops the search (the list's line)."""
    pos, found = 0, None
    for part in key:
        if not isinstance(part, str):
            break
        at = text.find(json.dumps(part) + ":", pos)
        if at < 0:
            break
        pos, found = at + 1, at
    return text.count("\n", 0, found) + 1 if found is not None else None


def check_lock(lock: Mapping[str, Any], path: Path | str = LOCK_NAME, text: str | None = None) -> None:
    """Check the structure of a parsed kfp.lock (the format in the module docstring): the types of the known
    entries (unknown keys are left alone), every digest well formed (``None`` only where apply writes none:
    a base without a digest, ``top_digest`` of a local base), every ``components`` pin a reference with a digest.
    ``text``, the file's text, gives the line of a bad entry.

    Raises:
        ConfigError: ``kfp.lock[:LINE]: KEY: what is wrong`` and what to do.
    """
    path = Path(path)

    def fail(key: tuple[Any, ...], what: str) -> ConfigError:
        return _lock_error(path, text, key, what)

    def table(value: Any, key: tuple[Any, ...]) -> Mapping[str, Any]:
        # an absent table is {} (the callers' .get default); apply never writes null for one
        if not isinstance(value, dict):
            raise fail(key, f"expected an object, got {_kind(value)}")
        return value

    def digest(value: Any, key: tuple[Any, ...], *, optional: bool = False) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str):
            raise fail(key, f"expected a digest ('sha256:' and 64 hex digits), got {_kind(value)}")
        try:
            split_digest(value)
        except ImageError:
            raise fail(key, f"{value!r} is not a digest: expected 'sha256:' and 64 lowercase hex digits") from None

    def typed(value: Any, key: tuple[Any, ...], kind: type | tuple[type, ...], name: str) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):  # no entry is a boolean
            raise fail(key, f"expected {name}, got {_kind(value)}")

    def strings(value: Any, key: tuple[Any, ...]) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise fail(key, f"expected a list of strings, got {_kind(value)}")
        for i, item in enumerate(value):
            typed(item, key + (i,), str, "a string")

    base = table(lock.get("base", {}), ("base",))
    typed(base.get("reference"), ("base", "reference"), str, "a string")
    for plat, entry in table(base.get("platforms", {}), ("base", "platforms")).items():
        key = ("base", "platforms", plat)
        entry = table(entry, key)
        digest(entry.get("digest"), key + ("digest",), optional=True)
        digest(entry.get("top_digest"), key + ("top_digest",), optional=True)
    for name, image in table(lock.get("images", {}), ("images",)).items():
        key = ("images", name)
        image = table(image, key)
        typed(image.get("repository"), key + ("repository",), str, "a string")
        if "digest" in image:
            digest(image["digest"], key + ("digest",))
        strings(image.get("tags"), key + ("tags",))
        strings(image.get("steps"), key + ("steps",))
        platforms = table(image.get("platforms", {}), key + ("platforms",))
        for plat, entry in platforms.items():
            pkey = key + ("platforms", plat)
            entry = table(entry, pkey)
            for field in ("manifest", "config"):
                if field in entry:
                    digest(entry[field], pkey + (field,))
            if len(platforms) == 1 and entry.get("manifest") and image.get("digest") not in (None, entry["manifest"]):
                raise fail(key + ("digest",), f"{image['digest']} is not the digest of the image's manifest recorded "
                                              f"beside it ({dotted(pkey + ('manifest',))} is {entry['manifest']}; for "
                                              "one platform they are the same)")
            digest(entry.get("base"), pkey + ("base",), optional=True)
            typed(entry.get("base_layers"), pkey + ("base_layers",), int, "a number")
            layers = entry.get("layers", [])
            if not isinstance(layers, list):
                raise fail(pkey + ("layers",), f"expected a list, got {_kind(layers)}")
            for i, layer in enumerate(layers):
                lkey = pkey + ("layers", i)
                layer = table(layer, lkey)
                for field in ("name", "kind", "media_type"):
                    typed(layer.get(field), lkey + (field,), str, "a string")
                typed(layer.get("size"), lkey + ("size",), int, "a number")
                for field in ("digest", "diff_id", "key"):
                    digest(layer.get(field), lkey + (field,), optional=True)
    for rel, value in table(lock.get("rendered", {}), ("rendered",)).items():
        digest(value, ("rendered", rel))
    for step, pin in table(lock.get("components", {}), ("components",)).items():
        key = ("components", step)
        typed(pin, key, str, "an image reference pinned by digest")
        try:
            ref = Reference.parse(pin)
        except InvalidReference as e:
            raise fail(key, str(e)) from None
        if not ref.digest:
            raise fail(key, f"{pin!r} is not pinned by digest (expected repository@sha256:...)")


def _kind(value: Any) -> str:
    """How a JSON value is named in messages: ``a string ('x')``, ``a number (3)``, ``null``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value[:80]!r})"
    return "a list" if isinstance(value, list) else "an object"


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


def _write_error(path: Path, error: OSError) -> BuildError:
    """The :class:`BuildError` for ``error`` while writing kfp.lock at ``path`` (a full disk said as such)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        what, fix = f"no space left on device writing {path}: free some space", "free some space"
    else:
        what, fix = f"cannot write {path}: {error.strerror or error}", "make the file and its folder writable"
    return BuildError(f"{LOCK_NAME}: {what}. The previous {LOCK_NAME} is unchanged; {fix} and run `compose-kfp "
                      "apply` again (it will write the lock without sending anything again).")


def stage_lock(root: Path | str, lock: Mapping[str, Any]) -> StagedFiles:
    """Write the text of ``lock`` in full (fsync-ed) to a temporary file next to ``kfp.lock``, for
    :func:`commit_lock` to move into place; kfp.lock itself is not touched yet. Apply stages the lock before any
    tag is written, so a full disk fails while nothing is tagged.

    Raises:
        BuildError: the temporary file cannot be written (read-only folder, disk full: "no space left on
            device"); the message names kfp.lock and the path. Nothing is left behind.
    """
    path = lock_path(root)
    staged = StagedFiles()
    try:
        staged.add(path, dumps(lock).encode("utf-8"))
    except OSError as e:
        raise _write_error(path, e) from None
    return staged


def commit_lock(root: Path | str, staged: StagedFiles) -> Path:
    """Rename the lock staged by :func:`stage_lock` over ``kfp.lock`` (atomic: readers see the old file or the
    new); return its path.

    Raises:
        BuildError: the rename failed (an immutable kfp.lock, say); the previous kfp.lock is unchanged and the
            temporary file removed.
    """
    path = lock_path(root)
    try:
        staged.commit()
    except OSError as e:
        raise _write_error(path, e) from None
    return path


def write_lock(root: Path | str, lock: Mapping[str, Any]) -> Path:
    """Write ``kfp.lock`` atomically (:func:`stage_lock`: temporary file in the same folder, fsync; then
    :func:`commit_lock`: rename; the temporary file is removed when any step fails); return its path.

    Raises:
        BuildError: the file cannot be written (read-only folder, immutable file, disk full); the message
            names kfp.lock, the path and the system's reason. The previous kfp.lock is left as it was.
    """
    return commit_lock(root, stage_lock(root, lock))


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

    Each digest used is checked first, as far as can be done without the network: by :func:`read_lock` (also
    for plan and apply), well formed and, for a single-platform image, equal to the manifest digest recorded
    beside it (the image digest *is* that manifest's digest); by :func:`check_image_entry`, for an ``oci:PATH``
    destination whose layout exists, a blob of that layout. A digest of a multi-platform image (an index, whose bytes kfp.lock does not record) in a
    registry is only checked for its form: a consistent edit of it is seen only when the image is pulled.

    Raises:
        StaleError: there is no kfp.lock, it lacks an image a function step needs, or the ``oci:`` layout does not
            hold the locked image (run ``apply``).
        ConfigError: kfp.lock is damaged (:func:`read_lock`), or an image digest differs from the manifest
            digest recorded beside it (fix the entry, or delete kfp.lock and run ``apply``).
    """
    lock = _require_lock(project.root)
    images = desired_images(project.manifest, project.root)
    refs: dict[str, str] = {}
    for image in images:
        entry = (lock.get("images") or {}).get(image.name)
        if image.steps and (not entry or entry.get("repository") != image.repository or not entry.get("digest")):
            raise StaleError(f"{lock_path(project.root)} has no digest for image {image.name!r} in "
                             f"{image.repository}; run `compose-kfp apply`.")
        if image.steps:
            check_image_entry(project.root, image.name, entry)  # type: ignore[arg-type]
        for step in image.steps:
            refs[step] = f"{image.repository}@{entry['digest']}"  # type: ignore[index]
    return refs


def check_image_entry(root: Path | str, name: str, entry: Mapping[str, Any]) -> None:
    """Check the digest of image ``name`` in kfp.lock (``entry`` = ``images.<name>``, already read by
    :func:`read_lock`) against what can be known without the network (see :func:`lock_images`).

    Raises:
        StaleError: the ``oci:PATH`` layout exists and holds no blob of that digest.
    """
    path = lock_path(root)
    image_digest = entry["digest"]
    repository = entry.get("repository") or ""
    if repository.startswith(LAYOUT_PREFIX):
        folder = layout_path(repository, Path(root))
        algorithm, _, encoded = image_digest.partition(":")
        if (folder / "oci-layout").is_file() and not (folder / "blobs" / algorithm / encoded).is_file():
            raise StaleError(f"{path}: images.{name}.digest: {image_digest} is not in the image layout {folder} "
                             "(kfp.lock was edited, or the layout changed since the last apply); run "
                             "`compose-kfp apply` to build it and write kfp.lock again.")


def _text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


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


__all__ = ["LOCK_NAME", "LOCK_VERSION", "check_frozen", "check_image_entry", "check_lock", "commit_lock",
           "diff_locks", "dumps", "lock_component_images", "lock_from_plan", "lock_images", "lock_path", "read_lock",
           "stage_lock", "write_lock"]
