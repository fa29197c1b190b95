"""Plan and apply a project: the one place that wires observe -> plan -> apply -> lock -> render.

- :func:`plan_project`: desired images (:mod:`compose_kfp.build.images`), observation
  (:mod:`compose_kfp.build.observe`), the pure planner (:mod:`compose_kfp.planner`) and
  the rendered files that would change. With ``frozen`` it also refuses a plan
  that would change ``kfp.lock`` (:class:`~compose_kfp.errors.StaleError`).
- :func:`apply_plan`: executes a plan and decides nothing. Under the project
  file lock (``<root>/.compose-kfp/lock``; a second apply waits ``lock_timeout``
  seconds, then fails with :class:`~compose_kfp.errors.BusyError`) it

  1. re-checks what can have moved since planning: the base reference's digest and the
     destination tags (a moved one raises :class:`~compose_kfp.errors.StaleError`);
  2. builds what the plan says is known only after apply (requirements layers, via
     :func:`compose_kfp.build.deps.build_deps_layer`) and makes sure every other layer it must
     send is in the local blob store (rebuilt from its files if not, and refused if its
     digest differs from the plan: the files changed since);
  3. assembles config and manifest (:func:`compose_kfp.planner.assemble`);
  4. sends blobs the destination lacks (``HEAD`` -> mount from the base repository when
     it is in the same registry -> upload; base layers from another registry or a local
     base are copied blob by blob), then the config, each manifest by digest, the index
     for several platforms, and only then the tags: the content tag
     (:func:`compose_kfp.planner.content_tag`) and ``image.tags``. A tag never names an
     incomplete image. An ``oci:PATH`` destination gets an OCI image layout instead;
  5. writes the rendered files, then ``kfp.lock`` (each atomically: temporary file, rename), so that a
     failure to write the files leaves kfp.lock describing the previous state and the next plan shows
     the change again. Whether the output folder and kfp.lock's folder can be written is checked before
     step 2, so an unwritable folder fails before anything is sent.

- :func:`render_outputs` / :func:`render_from_lock`: the rendered files
  (``<output_dir>/components/<step>.yaml``, ``<output_dir>/workflow.yaml`` for the
  ``argo`` target, ``<output_dir>/pipeline.yaml`` for the ``kfp`` target), every image
  pinned as ``repository@sha256:...``.

Progress goes through a callback ``progress(event, name, done_bytes, total_bytes)``;
events: ``build`` (a layer being tarred and compressed; name = layer), ``install``
(the requirements installer; name = layer), ``upload`` / ``mount`` / ``present`` /
``copy`` (name = blob digest). Nothing here prints.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import filelock

from compose_kfp.build import deps as deps_mod
from compose_kfp.build import lock as lock_mod
from compose_kfp import planner as planner_mod
from compose_kfp.errors import BuildError, BusyError, Interrupted, RegistryError, RenderError, StaleError, from_oci
from compose_kfp.build.destination import is_local_destination, layout_path, registries_for
from compose_kfp.build.images import desired_images
from compose_kfp.build.lock import lock_component_images, lock_images
from compose_kfp.build.observe import deps_target, layer_plan, observe, resolve_base
from compose_kfp.build.pins import component_images, pin_images
from compose_kfp.build.registries import Registries, download_blob, registry_ref
from compose_kfp.build.spec import ImageSpec
from compose_kfp.build.statedir import ProjectState, in_state_dir, state_dir_error
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.blobs import atomic_write
from compose_kfp.oci.image import ACCEPT_MANIFESTS, ImageConfig, Manifest
from compose_kfp.oci.layer import Layer, write_layer
from compose_kfp.planner import ImagePlan, LayerChange, Plan, PlatformPlan

log = logging.getLogger(__name__)

Progress = Callable[[str, str, int, int], None]

#: Default seconds a second ``apply`` waits for the project lock before :class:`BusyError`.
LOCK_TIMEOUT = 30.0
#: Rendered file names under ``render.output_dir``.
WORKFLOW_FILE = "workflow.yaml"
KFP_PIPELINE_FILE = "pipeline.yaml"


# --------------------------------------------------------------------------- helpers


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- rendering


def render_outputs(project: Any, images: Mapping[str, str]) -> dict[str, bytes]:
    """Render every output of ``project`` with steps pinned to ``images`` (step -> ``repo@sha256:...``): every
    function step must be there; a component-file step found there gets that image instead of its own.

    Returns:
        path relative to the project folder -> file bytes: ``<output_dir>/components/<step>.yaml`` for each
        step, ``<output_dir>/workflow.yaml`` (target ``argo``) and ``<output_dir>/pipeline.yaml`` (target
        ``kfp``) when kfp.toml has a ``[pipeline]``.

    Raises:
        RenderError: a template or the KFP compiler failed; ConfigError: the graph cannot be resolved.
    """
    from compose_kfp.pipeline.graph import resolve_graph
    from compose_kfp.pipeline.render.component import component_path, render_component

    manifest, root = project.manifest, project.root
    out_dir = project.loaded.output_dir
    templates = (root / manifest.render.templates) if manifest.render.templates else None
    specs = {}
    for name, spec in project.components.items():
        if manifest.steps[name].function and name not in images:
            raise RenderError(f"step {name!r}: its image digest is not known; run `compose-kfp apply` first")
        if name in images:
            spec = dataclasses.replace(spec, image=images[name])
        specs[name] = spec
    files: dict[str, bytes] = {}
    texts: dict[str, str] = {}
    for name, spec in specs.items():
        text = render_component(spec, templates_dir=templates)
        texts[name] = text
        files[_rel(component_path(out_dir, name), root)] = text.encode("utf-8")
    if manifest.pipeline is not None and manifest.pipeline.tasks:
        pinned = {name: spec.image for name, spec in specs.items() if spec.image}
        graph = resolve_graph(manifest, specs, manifest_path=project.loaded.path, images=pinned)
        if "argo" in manifest.render.targets:
            from compose_kfp.pipeline.render.workflow import render_workflow

            files[_rel(out_dir / WORKFLOW_FILE, root)] = render_workflow(graph, manifest).encode("utf-8")
        if "kfp" in manifest.render.targets:
            from compose_kfp.pipeline.render.kfp import render_kfp_pipeline

            with tempfile.TemporaryDirectory(prefix="compose-kfp-render-") as tmp:
                out = render_kfp_pipeline(graph, texts, Path(tmp) / KFP_PIPELINE_FILE)
                files[_rel(out_dir / KFP_PIPELINE_FILE, root)] = Path(out).read_bytes()
    return files


def _render_inputs_key(project: Any, images: Mapping[str, str]) -> str:
    """A digest of everything :func:`render_outputs` depends on: the validated manifest (overrides applied),
    the step components (already introspected by ``load_project``), the pinned images, the user's template
    folder (file names and contents), and the versions of compose-kfp, Jinja and (target ``kfp``) the KFP SDK."""
    import importlib.metadata
    import json as _json

    from compose_kfp import __version__

    h = hashlib.sha256()
    h.update(project.manifest.model_dump_json(warnings=False).encode())
    h.update(repr(sorted(project.components.items())).encode())
    h.update(_json.dumps(sorted(images.items())).encode())
    h.update(str(project.loaded.output_dir).encode())
    versions = [__version__, importlib.metadata.version("jinja2")]
    if "kfp" in project.manifest.render.targets:
        versions.append(importlib.metadata.version("kfp"))
    h.update(repr(versions).encode())
    if project.manifest.render.templates:
        folder = project.root / project.manifest.render.templates
        for f in sorted(folder.rglob("*")) if folder.is_dir() else ():
            if f.is_file():
                h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
    from compose_kfp.pipeline.render import TEMPLATES_DIR

    for f in sorted(TEMPLATES_DIR.glob("*")):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def rendered_digests(project: Any, images: Mapping[str, str]) -> dict[str, str]:
    """sha256 hex of each file :func:`render_outputs` would write, by relative path.

    Memoized in ``.compose-kfp/cache/render/<inputs key>.json`` (see :func:`_render_inputs_key`), so a
    no-op ``plan`` does not compile templates or run the KFP compiler again. When the state folder cannot be
    written (a read-only checkout), the digests are computed without being cached.
    """
    import json as _json

    state = ProjectState(project.root)
    path = state.dir / "cache" / "render" / f"{_render_inputs_key(project, images)}.json"
    try:
        cached = _json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, dict):
            return {str(k): str(v) for k, v in cached.items()}
    except (OSError, ValueError):
        pass
    digests = {k: _sha(v) for k, v in render_outputs(project, images).items()}
    try:
        atomic_write(path, _json.dumps(digests, sort_keys=True).encode())
    except OSError as e:  # a read-only checkout: plan works, only without this cache
        log.debug("not caching rendered digests in %s: %s", path, e)
    return digests


def _rendered_names(project: Any) -> list[str]:
    from compose_kfp.pipeline.render.component import component_path

    manifest, root, out_dir = project.manifest, project.root, project.loaded.output_dir
    names = [_rel(component_path(out_dir, n), root) for n in project.components]
    if manifest.pipeline is not None and manifest.pipeline.tasks:
        if "argo" in manifest.render.targets:
            names.append(_rel(out_dir / WORKFLOW_FILE, root))
        if "kfp" in manifest.render.targets:
            names.append(_rel(out_dir / KFP_PIPELINE_FILE, root))
    return names


def _managed_prefixes(project: Any) -> list[str]:
    from compose_kfp.pipeline.render.component import COMPONENTS_DIR

    return [_rel(project.loaded.output_dir / COMPONENTS_DIR, project.root) + "/"]


def step_refs(plan: Plan) -> dict[str, str]:
    """Step -> pinned image reference: function steps (images whose digest is known) and the pinned
    third-party component images."""
    out = dict(plan.component_images)
    for image in plan.images:
        if image.reference:
            for step in image.steps:
                out[step] = image.reference
    return out


def _all_refs_known(plan: Plan) -> bool:
    return all(image.after for image in plan.images if image.steps)


def _output_error(project: Any, error: OSError, path: Path | str | None = None) -> RenderError:
    """A :class:`RenderError` for a file-system ``error`` while writing under ``render.output_dir``."""
    where = Path(path) if path is not None else Path(error.filename) if error.filename else project.loaded.output_dir
    return RenderError(f"render.output_dir ({_rel(project.loaded.output_dir, project.root)}): cannot write "
                       f"{_rel(where, project.root)}: {error.strerror or error}. The output folder must be a "
                       "writable folder: fix its permissions, or set render.output_dir in kfp.toml (or "
                       "COMPOSE_KFP_OUTPUT_DIR) to another one.")


def check_output_writable(project: Any, files: Sequence[str]) -> None:
    """Make sure the rendered files ``files`` (paths relative to the project folder) can be written: create
    their folders and create and remove a probe file in each. Used by apply before anything is sent, so an
    unwritable output folder fails before the registry or kfp.lock change.

    Raises:
        RenderError: a folder cannot be created or written (names ``render.output_dir`` and the path).
    """
    for folder in sorted({(project.root / rel).parent for rel in files}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise _output_error(project, e, folder) from None


def write_rendered(project: Any, files: Mapping[str, bytes]) -> list[str]:
    """Write ``files`` (from :func:`render_outputs`) atomically, and delete component files of steps that no
    longer exist. Returns the paths written or removed (relative, sorted); unchanged files are not touched.

    Raises:
        RenderError: a file cannot be written or removed (read-only folder, a path under a regular file); the
            message names ``render.output_dir`` and the path. Files written before the failure stay written.
    """
    root = project.root
    touched = []
    for rel, data in sorted(files.items()):
        path = root / rel
        try:
            if path.read_bytes() == data:
                continue
        except OSError:
            pass
        try:
            atomic_write(path, data)
        except OSError as e:
            raise _output_error(project, e, path) from None
        touched.append(rel)
    from compose_kfp.pipeline.render.component import COMPONENTS_DIR

    comp_dir = project.loaded.output_dir / COMPONENTS_DIR
    if comp_dir.is_dir():
        for path in sorted(comp_dir.glob("*.yaml")):
            rel = _rel(path, root)
            if rel not in files:
                try:
                    path.unlink()
                except OSError as e:
                    raise _output_error(project, e, path) from None
                touched.append(rel)
    return sorted(touched)


def render_from_lock(project: Any) -> list[str]:
    """``compose-kfp render``: render the outputs with the image digests recorded in kfp.lock; build and push nothing.

    Returns the paths written (relative to the project folder).

    Raises:
        StaleError: there is no kfp.lock, or it lacks an image a function step needs (run ``apply``).
    """
    return write_rendered(project, render_outputs(project, {**lock_images(project),
                                                            **lock_component_images(project)}))


# --------------------------------------------------------------------------- planning


def plan_project(project: Any, *, registries: Registries | None = None, frozen: bool = False,
                 installer: Any = None, progress: Progress | None = None) -> Plan:
    """Observe and plan ``project`` (a :class:`compose_kfp.manifest.project.Project`).

    Layers whose files changed are built into the local blob store as part of observing (module
    :mod:`compose_kfp.build.observe`); requirements are never installed here.

    Raises:
        StaleError: ``frozen`` and kfp.lock would change.
        BuildError: a layer must be built and the state folder ``.compose-kfp`` cannot be written (read-only
            checkout; a plan whose layers are all cached needs no writes).
        ConfigError, BuildError, RegistryError, AuthError: as observation fails.
    """
    root = project.root
    own = registries is None
    registries = registries or registries_for(project)
    try:
        images = desired_images(project.manifest, root)
        lock = lock_mod.read_lock(root)
        ProjectState(root).dir.mkdir(exist_ok=True)  # no state folder: every layer must be built into it
        observed = observe(images, root, registries=registries, lock=lock, frozen=frozen,
                           output_dir=project.loaded.output_dir, installer=installer, progress=progress,
                           where=project.loaded.display_path)
        p = planner_mod.plan(images, observed, project=project.manifest.project.name, root=str(root))
        p = dataclasses.replace(p, component_images=tuple(sorted(pin_images(
            component_images(project), registries,
            locked=(lock or {}).get("components") if frozen else None).items())))
        if _all_refs_known(p):
            rendered: dict[str, str | None] = dict(rendered_digests(project, step_refs(p)))
        else:
            rendered = {name: None for name in _rendered_names(project)}
        p = planner_mod.with_files(p, planner_mod.plan_files(rendered, observed.rendered, _managed_prefixes(project)))
        new_lock = _lock_of(p)
        if frozen:
            lock_mod.check_frozen(root, lock, new_lock)
        stale = new_lock is None or lock is None or lock_mod.dumps(new_lock) != lock_mod.dumps(lock)
        return dataclasses.replace(p, lock_changes=stale)
    except OSError as e:
        state = ProjectState(root)
        if in_state_dir(state, e):
            raise state_dir_error(state, e) from None
        raise
    finally:
        if own:
            registries.close()


def _lock_of(p: Plan) -> dict[str, Any] | None:
    files = {f.path: f.after for f in p.files if f.action != "remove"}
    if any(v is None for v in files.values()):
        return None
    return lock_mod.lock_from_plan(p, files)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply_plan` did.

    Attributes:
        plan: the plan with every digest resolved (what kfp.lock records).
        uploaded: ``(digest, bytes)`` of blobs sent (layers, configs, base layers copied), in order.
        mounted: digests mounted from the base repository.
        manifests: manifest and index digests written (by digest), in order.
        tags: ``image:tag`` references set.
        built: names of the layers built during apply (requirements).
        files: rendered files written or removed (relative paths).
        lock_written: kfp.lock changed.
    """

    plan: Plan
    uploaded: tuple[tuple[str, int], ...] = ()
    mounted: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    built: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    lock_written: bool = False

    @property
    def uploaded_bytes(self) -> int:
        """Total bytes of :attr:`uploaded`."""
        return sum(n for _, n in self.uploaded)

    @property
    def changed(self) -> bool:
        """Whether anything was written anywhere."""
        return bool(self.uploaded or self.mounted or self.manifests or self.tags or self.files or self.lock_written)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``apply --json``: what was sent, and each image's digest, reference and tags."""
        return {"uploaded": [{"digest": d, "size": n} for d, n in self.uploaded], "uploaded_bytes": self.uploaded_bytes,
                "mounted": list(self.mounted), "manifests": list(self.manifests), "tags": list(self.tags),
                "built": list(self.built), "files": list(self.files), "lock_written": self.lock_written,
                "changed": self.changed,
                "images": {i.name: {"repository": i.repository, "digest": i.after, "reference": i.reference,
                                    "tags": list(i.tags), "steps": list(i.steps)} for i in self.plan.images}}


# --------------------------------------------------------------------------- apply


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.uploaded: list[tuple[str, int]] = []
        self.mounted: list[str] = []
        self.manifests: list[str] = []
        self.tags: list[str] = []
        self.built: list[str] = []


def project_lock(root: Path, timeout: float = LOCK_TIMEOUT) -> filelock.FileLock:
    """The file lock serializing ``apply`` runs of the project at ``root`` (``<root>/.compose-kfp/lock``).

    Raises:
        BuildError: the state folder cannot be created (read-only checkout; names ``.compose-kfp``).
    """
    state = ProjectState(Path(root))
    try:
        state.dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise state_dir_error(state, e) from None
    return filelock.FileLock(str(state.lock_path), timeout=timeout)


@contextlib.contextmanager
def holding_project_lock(root: Path, timeout: float = LOCK_TIMEOUT,
                         on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the project lock (:func:`project_lock`) for the ``with`` block.

    ``on_wait()`` is called once when another apply holds it (before waiting up to ``timeout`` seconds), so
    a caller can say why it pauses. ``apply`` plans inside this block, so the plan it prints and applies is
    made after any other apply finished (pass ``lock_held=True`` to :func:`apply_plan` there).

    Raises:
        BusyError: still held after ``timeout`` seconds.
        BuildError: the state folder or its lock file cannot be created (names ``.compose-kfp``).
    """
    lk = project_lock(root, timeout)
    try:
        try:
            lk.acquire(timeout=0)
        except filelock.Timeout:
            if on_wait is not None:
                on_wait()
            lk.acquire()
    except filelock.Timeout:
        raise BusyError(f"another `compose-kfp apply` is running for {root} (lock {lk.lock_file} held for "
                        f"more than {timeout:.0f} s); wait for it to finish and run again.") from None
    except OSError as e:  # the lock file cannot be created (read-only state folder)
        raise state_dir_error(ProjectState(Path(root)), e) from None
    try:
        yield
    finally:
        lk.release()


def apply_plan(project: Any, plan: Plan, *, registries: Registries | None = None, frozen: bool = False,
               installer: Any = None, progress: Progress | None = None,
               lock_timeout: float = LOCK_TIMEOUT, lock_held: bool = False) -> ApplyResult:
    """Execute ``plan`` for ``project`` (module docstring). Decides nothing the plan does not say.

    Takes the project lock (waiting up to ``lock_timeout`` seconds) unless ``lock_held``: the caller holds it
    already (:func:`holding_project_lock`, with the plan made inside it).

    Raises:
        BusyError: another apply holds the project lock for longer than ``lock_timeout`` seconds.
        StaleError: the base or a destination tag moved since the plan; a layer's files changed since
            the plan; ``frozen`` and kfp.lock would change.
        BuildError, RegistryError, AuthError, RenderError: as the steps fail (RenderError, naming
            ``render.output_dir``, before anything is sent when the output folder cannot be written).
            Tags are only written once every blob and manifest of the image is in place.
        Interrupted: Ctrl-C; the message says what was done (nothing tagged, or which tags were set). Worker
            threads still sending a blob are left running (not waited for); see ``cli.main``.
    """
    own = registries is None
    registries = registries or registries_for(project)
    rec = _Recorder()
    try:
        with contextlib.nullcontext() if lock_held else holding_project_lock(project.root, lock_timeout):
            return _apply_locked(project, plan, registries, frozen, installer, progress, rec)
    except KeyboardInterrupt:
        if rec.tags:
            raise Interrupted(f"interrupted after tagging {', '.join(rec.tags)} (each tag names a complete image); "
                              "kfp.lock and the rendered files may not be written yet: run `compose-kfp apply` "
                              "again to finish") from None
        raise Interrupted("interrupted: nothing was tagged (blobs already sent stay in the registry and are not "
                          "sent again; the registry keeps only complete blobs)") from None
    except oci_errors.DistributionError as e:
        raise from_oci(e) from None
    finally:
        if own:
            registries.close()


def _apply_locked(project: Any, plan: Plan, registries: Registries, frozen: bool, installer: Any,
                  progress: Progress | None, rec: _Recorder) -> ApplyResult:
    root = project.root
    state = ProjectState(root)
    images = {i.name: i for i in desired_images(project.manifest, root)}
    for ip in plan.images:
        if ip.name not in images or images[ip.name].repository != ip.repository:
            raise StaleError(f"the plan is for image {ip.name!r} in {ip.repository}, which kfp.toml no longer "
                             "describes; run `compose-kfp plan` again.")
    _recheck(plan, images, registries, state)
    # Before anything is sent (even the early layer uploads): an output folder or project folder that cannot be
    # written fails now, not after the push with the registry, kfp.lock and the rendered files disagreeing.
    check_output_writable(project, _rendered_names(project))
    if plan.lock_changes:
        _check_lock_writable(root)
    resolved_images = []
    built_cache: dict[tuple[str, str], Layer] = {}
    pushed_blobs: set[str] = set()
    # --frozen must fail before anything is sent, so it builds first and uploads after the lock check.
    early = None if frozen else _EarlyUploads(registries, rec, pushed_blobs, progress)
    try:
        for ip in plan.images:
            spec = images[ip.name]
            plats = []
            for pp in ip.platforms:
                plats.append(_resolve_platform(spec, pp, state, installer, progress, rec, built_cache, early))
            resolved_images.append(_resolve_image(ip, tuple(plats)))
    except BaseException as e:
        if early is not None:
            early.cancel(wait=not isinstance(e, KeyboardInterrupt))
        raise
    if early is not None:
        early.wait()
    resolved = dataclasses.replace(plan, images=tuple(resolved_images))

    rendered = render_outputs(project, step_refs(resolved))
    files = {k: _sha(v) for k, v in rendered.items()}
    new_lock = lock_mod.lock_from_plan(resolved, files)
    old_lock = lock_mod.read_lock(root)
    if frozen:
        lock_mod.check_frozen(root, old_lock, new_lock)
    write_lock = new_lock is not None and (old_lock is None or lock_mod.dumps(old_lock) != lock_mod.dumps(new_lock))

    for ip in resolved.images:
        if ip.status == "unchanged":
            continue
        if is_local_destination(ip.repository):
            _write_layout(ip, state, registries, rec, progress)
        else:
            _push_image(ip, state, registries, rec, progress, pushed_blobs)

    # Rendered files first, kfp.lock last: if writing the files fails, kfp.lock still describes the previous
    # state, so the next plan shows the change again (and apply finishes it without sending anything again).
    written = write_rendered(project, rendered)
    if write_lock:
        lock_mod.write_lock(root, new_lock)  # type: ignore[arg-type]
    return ApplyResult(plan=resolved, uploaded=tuple(rec.uploaded), mounted=tuple(rec.mounted),
                       manifests=tuple(rec.manifests), tags=tuple(rec.tags), built=tuple(rec.built),
                       files=tuple(written), lock_written=write_lock)


def _check_lock_writable(root: Path) -> None:
    """Refuse early when kfp.lock's folder cannot take a new file (the lock is written by temporary file + rename).

    Raises:
        BuildError: names kfp.lock, the folder and the system's reason.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{lock_mod.LOCK_NAME}.probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BuildError(f"{lock_mod.LOCK_NAME}: cannot write {lock_mod.lock_path(root)}: {e.strerror or e}; make "
                         "the project folder writable. Nothing was sent.") from None


def _recheck(plan: Plan, images: Mapping[str, ImageSpec], registries: Registries, state: ProjectState) -> None:
    """Refuse the plan when the base reference or a destination tag moved since it was made."""
    checked_base: set[str] = set()
    for ip in plan.images:
        spec = images[ip.name]
        for pp in ip.platforms:
            ref = pp.base.reference
            if ref == "scratch" or ref in checked_base or pp.base.top_digest is None:
                continue
            checked_base.add(ref)
            if ref.startswith(("oci:", "dir:", "docker-archive:")):
                now = resolve_base(ref, [pp.platform], registries, state)[pp.platform]
                moved = now.digest != pp.base.after
            else:
                r = registry_ref(ref)
                if r.digest:
                    continue
                head = registries.client(r.api_host).head_manifest(r.repository, r.identifier, ACCEPT_MANIFESTS)
                moved = head is None or head[1] != pp.base.top_digest
            if moved:
                raise StaleError(f"the base image {ref} moved since the plan was made (it was "
                                 f"{pp.base.top_digest}); run `compose-kfp plan` again.")
        if is_local_destination(ip.repository):
            continue
        dest = registry_ref(ip.repository)
        client = registries.client(dest.api_host)
        if ip.before_source.startswith("tag:"):
            tag = ip.before_source[4:]
            head = client.head_manifest(dest.repository, tag, ACCEPT_MANIFESTS)
            now = head[1] if head else None
            if now != ip.before:
                raise StaleError(f"{ip.repository}:{tag} moved since the plan was made (planned on "
                                 f"{ip.before or 'nothing'}, now {now or 'absent'}); run `compose-kfp plan` again.")
        for tag, seen in ip.observed_tags:
            head = client.head_manifest(dest.repository, tag, ACCEPT_MANIFESTS)
            now = head[1] if head else None
            if now != seen:
                raise StaleError(f"{ip.repository}:{tag} moved since the plan was made (it was "
                                 f"{seen or 'absent'}, now {now or 'absent'}); run `compose-kfp plan` again.")


def _layer_for(spec: ImageSpec, pp: PlatformPlan, ly: LayerChange, state: ProjectState, installer: Any,
               progress: Progress | None, rec: _Recorder, built: dict[tuple[str, str], Layer]) -> Layer:
    """The layer ``ly`` as a :class:`Layer` whose blob is in the local store (built if the plan says so)."""
    store = state.store
    layer_spec = next((s for s in spec.layers if s.name == ly.name), None)
    if layer_spec is None:
        raise StaleError(f"layer {ly.name!r} of image {spec.name!r} is no longer in kfp.toml; run `compose-kfp plan` "
                         "again.")
    if ly.after is not None and store.has(ly.after):
        return Layer.from_store(store, ly.after, ly.diff_id or "", ly.media_type)
    key = (ly.key, ly.media_type)
    if key in built:
        return built[key]
    if layer_spec.kind == "requirements":
        installer = installer or deps_mod.find_installer()
        target = deps_target(spec, pp.platform, _base_state_of(pp), layer_spec.where)
        if progress:
            progress("install", ly.name, 0, 0)
        result = deps_mod.build_deps_layer(layer_spec.requirements, target, store=store, cache=state.deps_cache,
                                           installer=installer, compression=spec.compression)
        if result.key != ly.key:
            raise StaleError(f"{layer_spec.where}: the requirements changed since the plan was made; run "
                             "`compose-kfp plan` again.")
        layer = result.layer
        if not result.reused:
            with rec.lock:
                rec.built.append(ly.name)
    else:
        lp = layer_plan(layer_spec, spec.compression, state.root)
        layer = write_layer(lp, store, cache=state.layer_cache,
                            progress=(lambda d, t: progress("build", ly.name, d, t)) if progress else None)
    if ly.after is not None and layer.digest != ly.after:
        raise StaleError(f"{layer_spec.where} ({ly.name}): its files changed since the plan was made (planned "
                         f"{ly.after}, built {layer.digest}); run `compose-kfp plan` again.")
    built[key] = layer
    return layer


def _base_state_of(pp: PlatformPlan) -> Any:
    from compose_kfp.build.state import BaseState

    return BaseState(pp.base.reference, pp.platform, digest=pp.base.after, manifest=pp.recipe.base_manifest,
                     config=pp.recipe.base_config)


def _resolve_platform(spec: ImageSpec, pp: PlatformPlan, state: ProjectState, installer: Any,
                      progress: Progress | None, rec: _Recorder, built: dict[tuple[str, str], Layer],
                      early: _EarlyUploads | None = None) -> PlatformPlan:
    layers: list[Layer] = []
    changes: list[LayerChange] = []
    local = is_local_destination(spec.repository)
    to_send = {t.what for t in pp.transfers}
    if early is not None and not local:
        # Layers already built (by plan) start uploading now, while the others (requirements) build.
        for ly in pp.layers:
            if (ly.action != "remove" and f"layer {ly.name}" in to_send and ly.after is not None
                    and state.store.has(ly.after)):
                early.submit(spec.repository, Layer.from_store(state.store, ly.after, ly.diff_id or "",
                                                               ly.media_type))
    for ly in pp.layers:
        if ly.action == "remove":
            changes.append(ly)
            continue
        sent = f"layer {ly.name}" in to_send
        if ly.build or sent or local:
            layer = _layer_for(spec, pp, ly, state, installer, progress, rec, built)
            if early is not None and sent and not local:
                early.submit(spec.repository, layer)  # a no-op for a layer submitted above
        else:  # already in the destination: only its digests are needed
            layer = Layer(ly.media_type, ly.after or "", ly.diff_id or "", ly.size or 0,
                          opener=functools.partial(_not_local, ly.name))
        layers.append(layer)
        changes.append(dataclasses.replace(ly, after=layer.digest, diff_id=layer.diff_id, size=layer.size,
                                           build=False, action=ly.action if ly.action != "replace" or
                                           ly.before != layer.digest else "keep"))
    manifest, config = planner_mod.assemble(pp.recipe, layers)
    if pp.manifest_after is not None and manifest.digest != pp.manifest_after:
        raise StaleError(f"image {spec.name} ({pp.platform}): the manifest differs from the plan "
                         f"({manifest.digest} instead of {pp.manifest_after}); run `compose-kfp plan` again.")
    transfers = tuple(dataclasses.replace(t, digest=manifest.config.digest, size=manifest.config.size)
                      if t.what == "config" and t.digest is None else
                      (dataclasses.replace(t, digest=_digest_for(t, changes), size=_size_for(t, changes))
                       if t.digest is None else t) for t in pp.transfers)
    return dataclasses.replace(pp, layers=tuple(changes), config_after=manifest.config.digest,
                               manifest_after=manifest.digest, manifest_size=manifest.size, transfers=transfers)


def _not_local(name: str) -> Any:
    raise BuildError(f"layer {name}: its blob is in the destination but not on this machine")


def _digest_for(t: Any, changes: Sequence[LayerChange]) -> str | None:
    for ly in changes:
        if t.what == f"layer {ly.name}":
            return ly.after
    return None


def _size_for(t: Any, changes: Sequence[LayerChange]) -> int:
    for ly in changes:
        if t.what == f"layer {ly.name}":
            return ly.size or 0
    return 0


def _resolve_image(ip: ImagePlan, plats: tuple[PlatformPlan, ...]) -> ImagePlan:
    if len(plats) == 1:
        after = plats[0].manifest_after
    else:
        after = planner_mod.build_index([(p.manifest_after, p.manifest_size, p.platform) for p in plats],  # type: ignore[misc]
                                        plats[0].recipe.family).digest
    if ip.after is not None and after != ip.after:
        raise StaleError(f"image {ip.name}: digest {after} differs from the plan's {ip.after}; run `compose-kfp plan` "
                         "again.")
    user_tags = tuple(t for t in ip.tags if not (t.startswith("kfp-") and ip.after and t == planner_mod.content_tag(ip.after)))
    tags = (planner_mod.content_tag(after),) + user_tags  # type: ignore[arg-type]
    status = ip.status
    if status == "update" and after == ip.before:
        status = "retag" if ip.stale_tags else "unchanged"
    return dataclasses.replace(ip, platforms=plats, after=after, tags=tags, status=status)


# --------------------------------------------------------------------------- sending


def _base_source(pp: PlatformPlan, state: ProjectState) -> tuple[str | None, str | None, Path | None, bool]:
    """(registry host, repository, local store folder, flat) of the base of ``pp``."""
    ref = pp.base.reference
    if ref == "scratch":
        return None, None, None, False
    if ref.startswith("oci:"):
        body = ref[4:]
        path = body
        if ":" in body and not (state.root / body).exists():
            path = body.rpartition(":")[0]
        return None, None, (state.root / path).resolve(), False
    if ref.startswith("dir:"):
        return None, None, (state.root / ref[4:]).resolve(), True
    if ref.startswith("docker-archive:"):
        return None, None, state.dir, False
    r = registry_ref(ref)
    return r.api_host, r.repository, None, False


def _local_blob_path(store_dir: Path, digest: str, flat: bool) -> Path:
    hexd = digest.split(":", 1)[1]
    return store_dir / hexd if flat else store_dir / "blobs" / "sha256" / hexd


def _fetch_base_layer(pp: PlatformPlan, digest: str, size: int, state: ProjectState, registries: Registries,
                      progress: Progress | None) -> Path:
    """A local file holding base layer ``digest``: from a local base, or downloaded into the blob store."""
    host, repo, store_dir, flat = _base_source(pp, state)
    if store_dir is not None:
        path = _local_blob_path(store_dir, digest, flat)
        if path.is_file():
            return path
    local = state.store.path(digest)
    if local.is_file():
        return local
    if host is None:
        raise RegistryError(f"base layer {digest} of {pp.base.reference} is not available locally")
    return download_blob(registries.client(host), repo, digest, size, state.store,
                         progress=(lambda d, done, total: progress("copy", d, done, total)) if progress else None)


def _send_blob(client: Any, repo: str, source: Any, mount: Sequence[str], rec: _Recorder, pushed: set[str],
               progress: Progress | None) -> None:
    """Make blob ``source`` present in ``repo``: already there, mounted from one of ``mount``, or uploaded
    (distribution spec: HEAD blob, then POST ``?mount=&from=``, then the upload), and record which."""
    if client.blob_exists(repo, source.digest):
        how = "present"
    elif mount and any(client.mount_blob(repo, source.digest, m) for m in mount):
        how = "mount"
    else:
        client.upload_blob(repo, source, (lambda d, done, total: progress("upload", d, done, total))
                           if progress else None)
        how = "upload"
    with rec.lock:
        if how == "upload":
            rec.uploaded.append((source.digest, source.size))
        elif how == "mount":
            rec.mounted.append(source.digest)
        pushed.add(source.digest)
    if progress and how != "upload":
        progress(how, source.digest, source.size, source.size)


class _EarlyUploads:
    """Uploads each freshly built layer while the next one builds (DESIGN: start uploading a layer as soon
    as it is finished). Only blobs go up early; manifests and tags still wait for every blob."""

    def __init__(self, registries: Registries, rec: _Recorder, pushed: set[str], progress: Progress | None):
        self.registries, self.rec, self.pushed, self.progress = registries, rec, pushed, progress
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.futures: list[concurrent.futures.Future] = []
        self.submitted: set[tuple[str, str]] = set()

    def submit(self, repository: str, layer: Layer) -> None:
        """Start sending ``layer`` to ``repository`` (a registry reference) in the background."""
        if (repository, layer.digest) in self.submitted:
            return
        self.submitted.add((repository, layer.digest))
        if self.pool is None:
            self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="early-push")
        dest = registry_ref(repository)
        client = self.registries.client(dest.api_host)
        self.futures.append(self.pool.submit(_send_blob, client, dest.repository, layer, (), self.rec,
                                             self.pushed, self.progress))

    def wait(self) -> None:
        """Wait for every upload started; the first failure is raised. On Ctrl-C the running uploads are not
        waited for (see :meth:`cancel`)."""
        try:
            for fut in self.futures:
                fut.result()
        except KeyboardInterrupt:
            self.cancel(wait=False)
            raise
        finally:
            self.cancel()

    def cancel(self, wait: bool = True) -> None:
        """Drop uploads not yet started and, when ``wait``, wait for the running ones (their failures are not
        raised). ``wait=False`` (Ctrl-C): running uploads go on in their threads; ``cli.main`` ends the process
        without waiting for them."""
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)
            self.pool = None


def _push_image(ip: ImagePlan, state: ProjectState, registries: Registries, rec: _Recorder,
                progress: Progress | None, pushed: set[str]) -> None:
    from compose_kfp.oci.registry import BytesBlob, FileBlob  # lazy: requests is only needed to push

    dest = registry_ref(ip.repository)
    client = registries.client(dest.api_host)
    repo = dest.repository
    manifests: list[tuple[Manifest, ImageConfig, PlatformPlan]] = []
    for pp in ip.platforms:
        layers = [ly for ly in pp.layers if ly.action != "remove"]
        manifest, config = planner_mod.assemble(pp.recipe, [_Known(ly) for ly in layers])
        manifests.append((manifest, config, pp))
        base_host, base_repo, _, _ = _base_source(pp, state)
        jobs: list[tuple[Any, list[str]]] = []
        for ly in layers:
            if ly.after in pushed:
                continue
            jobs.append((FileBlob(state.store.path(ly.after), ly.after or "", ly.size or 0), []))
        base_m = Manifest.from_bytes(pp.recipe.base_manifest.encode()) if pp.recipe.base_manifest else None
        for d in (base_m.layers if base_m else []):
            if d.digest in pushed:
                continue
            mount = [base_repo] if base_host == dest.api_host and base_repo else []
            jobs.append((_LazyBase(pp, d.digest, d.size, state, registries, progress), mount))

        def send(job: tuple[Any, list[str]]) -> None:
            _send_blob(client, repo, job[0], job[1], rec, pushed, progress)

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=3, thread_name_prefix="push")
        try:
            for fut in [pool.submit(send, j) for j in jobs]:
                fut.result()
        except KeyboardInterrupt:  # do not wait for a blob being sent (cli.main ends the process)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        config_raw = config.raw_bytes()
        if manifest.config.digest not in pushed:
            send((BytesBlob(config_raw), []))
        client.put_manifest(repo, manifest.digest, manifest.raw_bytes(), manifest.effective_media_type)
        rec.manifests.append(manifest.digest)
    if len(manifests) > 1:
        index = planner_mod.build_index([(m.digest, m.size, pp.platform) for m, _, pp in manifests],
                                        ip.platforms[0].recipe.family)
        top_raw, top_type = index.raw_bytes(), index.effective_media_type
        client.put_manifest(repo, index.digest, top_raw, top_type)
        rec.manifests.append(index.digest)
    else:
        top_raw, top_type = manifests[0][0].raw_bytes(), manifests[0][0].effective_media_type
    for tag in ip.tags:
        client.put_manifest(repo, tag, top_raw, top_type)
        rec.tags.append(f"{ip.repository}:{tag}")


class _Known:
    def __init__(self, ly: LayerChange):
        self.media_type, self.digest, self.diff_id, self.size = ly.media_type, ly.after, ly.diff_id, ly.size


class _LazyBase:
    """A base layer that is fetched to a local file only if it must be uploaded (another registry)."""

    def __init__(self, pp: PlatformPlan, digest: str, size: int, state: ProjectState, registries: Registries,
                 progress: Progress | None):
        self.pp, self.digest, self.size, self.state, self.registries, self.progress = (
            pp, digest, size, state, registries, progress)

    def open(self) -> Any:
        return open(_fetch_base_layer(self.pp, self.digest, self.size, self.state, self.registries, self.progress),
                    "rb")


def _write_layout(ip: ImagePlan, state: ProjectState, registries: Registries, rec: _Recorder,
                  progress: Progress | None) -> None:
    from compose_kfp.oci.blobs import BlobStore
    from compose_kfp.oci.layout import OCILayout

    layout = OCILayout.create(layout_path(ip.repository, state.root))
    sources = [state.store, BlobStore(state.dir)]
    manifests = []
    for pp in ip.platforms:
        layers = [ly for ly in pp.layers if ly.action != "remove"]
        manifest, config = planner_mod.assemble(pp.recipe, [_Known(ly) for ly in layers])
        base_m = Manifest.from_bytes(pp.recipe.base_manifest.encode()) if pp.recipe.base_manifest else None
        for d in (base_m.layers if base_m else []):
            if not layout.store.has(d.digest):
                path = _fetch_base_layer(pp, d.digest, d.size, state, registries, progress)
                with open(path, "rb") as f:
                    layout.store.put_stream(f, d.digest)
                rec.uploaded.append((d.digest, d.size))
        for ly in layers:
            if not layout.store.has(ly.after):  # type: ignore[arg-type]
                layout.store.copy_from(state.store, ly.after)  # type: ignore[arg-type]
                rec.uploaded.append((ly.after, ly.size or 0))  # type: ignore[arg-type]
        if not layout.store.has(manifest.config.digest):
            rec.uploaded.append((manifest.config.digest, manifest.config.size))
        if len(ip.platforms) == 1:
            layout.write_image(ip.tags[0], manifest, config, sources=sources)
        rec.manifests.append(manifest.digest)
        manifests.append((manifest, config, pp))
    if len(manifests) > 1:
        # Blobs and manifests of every platform, then the index, then index.json once (a tag never names
        # an incomplete image).
        index = planner_mod.build_index([(m.digest, m.size, pp.platform) for m, _, pp in manifests],
                                        ip.platforms[0].recipe.family)
        layout.write_index(ip.tags, index, [(m, cfg) for m, cfg, _ in manifests], sources=sources)
        rec.manifests.append(index.digest)
        rec.tags.extend(f"{ip.repository}:{tag}" for tag in ip.tags)
    else:
        m, cfg, _ = manifests[0]
        for tag in ip.tags:
            layout.write_image(tag, m, cfg, sources=[state.store])
            rec.tags.append(f"{ip.repository}:{tag}")


__all__ = ["ApplyResult", "KFP_PIPELINE_FILE", "LOCK_TIMEOUT", "WORKFLOW_FILE", "apply_plan", "plan_project",
           "holding_project_lock", "lock_images", "project_lock", "registries_for", "render_from_lock", "render_outputs", "step_refs",
           "write_rendered"]
