"""Apply a plan: :func:`apply_plan` executes a :class:`~compose_kfp.planner.Plan` and decides nothing;
:func:`apply_project` is the ``apply`` command's flow (plan or take a saved plan, confirm, lock, re-plan
after waiting for another apply, apply).

Under the project file lock (:mod:`compose_kfp.build.projectlock`; a second apply waits
``lock_timeout`` seconds, then fails with :class:`~compose_kfp.errors.BusyError`) :func:`apply_plan`

1. re-checks what can have moved since planning: the base reference's digest and the
   destination tags (a moved one raises :class:`~compose_kfp.errors.StaleError`);
2. builds what the plan says is known only after apply (requirements layers, via
   :func:`compose_kfp.build.deps.build_deps_layer`) and makes sure every other layer it must
   send is in the local blob store (rebuilt from its files if not, and refused if its
   digest differs from the plan: the files changed since);
3. assembles config and manifest (:func:`compose_kfp.planner.assemble`);
4. writes each changed image to its :class:`~compose_kfp.build.destination.Destination`
   (:meth:`~compose_kfp.build.destination.Destination.write_image`: blobs the destination lacks,
   the config, each manifest, the index for several platforms, and only then the tags: the content tag
   (:func:`compose_kfp.planner.content_tag`) and ``image.tags``; a tag never names an incomplete image);
5. renders every output into bytes and, before the first tag of step 4, stages the changed ones and the new
   ``kfp.lock``: each written in full to a temporary file beside its target
   (:func:`compose_kfp.pipeline.outputs.stage_rendered`, :func:`compose_kfp.build.lock.stage_lock`), so a full
   disk ("no space left on device") fails with nothing tagged and no file changed; after the tags the staged
   files are renamed into place, the rendered files first and ``kfp.lock`` last, so that a failure to move the
   files leaves kfp.lock describing the previous state and the next plan shows the change again. Whether the
   output folder and kfp.lock's folder can be written, and whether every output's name fits the file system
   (``PC_NAME_MAX``), is checked before step 2, so those fail before anything is sent.

Progress goes through a callback ``progress(event, name, done_bytes, total_bytes)``;
events: ``build`` (a layer being tarred and compressed; name = layer), ``built`` (once per layer built,
done = total = its blob's size; name = ``"<layer> <digest>"``), ``install``
(the requirements installer; name = layer), ``upload`` / ``mount`` / ``present`` /
``copy`` (name = blob digest). Nothing here prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

from compose_kfp import planner as planner_mod
from compose_kfp.build import deps as deps_mod
from compose_kfp.build import lock as lock_mod
from compose_kfp.build.destination import (
    Destination,
    EarlyUploads,
    Recorder,
    StreamedUploads,
    destination_for,
    registries_for,
    streamed_uploads,
)
from compose_kfp.build.images import desired_images
from compose_kfp.build.observe import deps_target, layer_plan, resolve_base
from compose_kfp.build.plan import plan_project, step_refs
from compose_kfp.build.projectlock import LOCK_TIMEOUT, holding_project_lock
from compose_kfp.build.registries import Registries, registry_ref
from compose_kfp.build.spec import ImageSpec
from compose_kfp.build.state import BaseState
from compose_kfp.build.statedir import ProjectState
from compose_kfp.errors import BuildError, ComposeError, Interrupted, RenderError, StaleError, from_oci
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.image import ACCEPT_MANIFESTS
from compose_kfp.oci.layer import Layer, write_layer
from compose_kfp.pipeline.outputs import (
    check_output_writable,
    digests_of,
    pinned_graph,
    render_outputs,
    rendered_names,
    stage_rendered,
)
from compose_kfp.planner import ImagePlan, LayerChange, Plan, PlatformPlan, format_plan

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project

log = logging.getLogger(__name__)

Progress = Callable[[str, str, int, int], None]


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


def apply_plan(project: Project, plan: Plan, *, registries: Registries | None = None, frozen: bool = False,
               installer: Any = None, progress: Progress | None = None,
               lock_timeout: float = LOCK_TIMEOUT, lock_held: bool = False,
               streamed: StreamedUploads | None = None) -> ApplyResult:
    """Execute ``plan`` for ``project`` (module docstring). Decides nothing the plan does not say.

    Takes the project lock (waiting up to ``lock_timeout`` seconds) unless ``lock_held``: the caller holds it
    already (:func:`~compose_kfp.build.projectlock.holding_project_lock`, with the plan made inside it).
    ``streamed``: the layers the planning already uploaded while building them (:func:`apply_project`); they
    count as uploaded and are not sent again.

    Raises:
        BusyError: another apply holds the project lock for longer than ``lock_timeout`` seconds.
        StaleError: the base or a destination tag moved since the plan; a layer's files changed since
            the plan; ``frozen`` and kfp.lock would change.
        BuildError, RegistryError, AuthError, RenderError: as the steps fail (RenderError, naming
            ``render.output_dir``, before anything is sent when the output folder cannot be written or a
            file name is too long; before anything is tagged when the disk is full).
            Tags are only written once every blob and manifest of the image is in place, and every output
            is staged.
        Interrupted: Ctrl-C; the message says what was done (nothing tagged, or which tags were set). Worker
            threads still sending a blob are left running (not waited for); see ``cli.main``.
    """
    own = registries is None
    registries = registries or registries_for(project)
    rec = Recorder()
    pushed: set[str] = set()
    if streamed is not None:
        with streamed.rec.lock:
            rec.uploaded.extend(streamed.rec.uploaded)
            pushed |= streamed.pushed
    try:
        with contextlib.nullcontext() if lock_held else holding_project_lock(project.root, lock_timeout):
            return _apply_locked(project, plan, registries, frozen, installer, progress, rec, pushed)
    except KeyboardInterrupt:
        if rec.tags:
            raise Interrupted(f"interrupted after tagging {', '.join(rec.tags)} (each tag names a complete image); "
                              "kfp.lock and the rendered files may not be written yet: run `compose-kfp apply` "
                              "again to finish") from None
        raise Interrupted(_INTERRUPTED_UNTAGGED) from None
    except oci_errors.DistributionError as e:
        raise from_oci(e) from None
    finally:
        if own:
            registries.close()


def _apply_locked(project: Project, plan: Plan, registries: Registries, frozen: bool, installer: Any,
                  progress: Progress | None, rec: Recorder, pushed: set[str]) -> ApplyResult:
    root = project.root
    state = ProjectState(root)
    destinations: dict[str, Destination] = {}

    def dest_of(repository: str) -> Destination:
        if repository not in destinations:
            destinations[repository] = destination_for(repository, root, registries)
        return destinations[repository]

    images = {i.name: i for i in desired_images(project.manifest, root)}
    for ip in plan.images:
        if ip.name not in images or images[ip.name].repository != ip.repository:
            raise StaleError(f"the plan is for image {ip.name!r} in {ip.repository}, which kfp.toml no longer "
                             "describes; run `compose-kfp plan` again.")
    _recheck(plan, registries, state, dest_of)
    # Before anything is sent (even the early layer uploads): an output folder or project folder that cannot be
    # written fails now, not after the push with the registry, kfp.lock and the rendered files disagreeing.
    check_output_writable(project, rendered_names(project))
    if plan.lock_changes:
        _check_lock_writable(root)
    resolved_images = []
    built_cache: dict[tuple[str, str], Layer] = {}
    pushed_blobs = pushed
    # --frozen must fail before anything is sent, so it builds first and uploads after the lock check.
    early = None if frozen else EarlyUploads(rec, pushed_blobs, progress)
    try:
        for ip in plan.images:
            spec = images[ip.name]
            plats = []
            for pp in ip.platforms:
                plats.append(_resolve_platform(spec, pp, state, installer, progress, rec, built_cache,
                                               dest_of(spec.repository), early))
            resolved_images.append(_resolve_image(ip, tuple(plats)))
    except BaseException as e:
        if early is not None:
            early.cancel(wait=not isinstance(e, KeyboardInterrupt))
        raise
    if early is not None:
        early.wait()
    resolved = dataclasses.replace(plan, images=tuple(resolved_images))

    rendered = render_outputs(project, step_refs(resolved))
    files = digests_of(rendered)
    new_lock = lock_mod.lock_from_plan(resolved, files)
    old_lock = lock_mod.read_lock(root)
    if frozen:
        lock_mod.check_frozen(root, old_lock, new_lock)
    write_lock = new_lock is not None and (old_lock is None or lock_mod.dumps(old_lock) != lock_mod.dumps(new_lock))

    # Every output is written in full (beside its target) before the first tag: a full disk or a bad name fails
    # now, with nothing tagged and no file changed. After the tags only renames are left.
    try:
        staged = stage_rendered(project, rendered)
    except RenderError as e:
        raise RenderError(f"{e} {_NOTHING_TAGGED}") from None
    staged_lock = None
    try:
        if write_lock:
            try:
                staged_lock = lock_mod.stage_lock(root, new_lock)  # type: ignore[arg-type]
            except BuildError as e:
                raise BuildError(f"{e} {_NOTHING_TAGGED}") from None
        for ip in resolved.images:
            if ip.status == "unchanged":
                continue
            dest_of(ip.repository).write_image(ip, state, rec, progress, pushed_blobs)
        # Rendered files first, kfp.lock last: if moving the files into place fails, kfp.lock still describes the
        # previous state, so the next plan shows the change again (and apply finishes it without sending again).
        written = staged.commit()
        if staged_lock is not None:
            lock_mod.commit_lock(root, staged_lock)
        _record_task_keys(project, step_refs(resolved), state)
    finally:
        staged.discard()
        if staged_lock is not None:
            staged_lock.discard()
    return ApplyResult(plan=resolved, uploaded=tuple(rec.uploaded), mounted=tuple(rec.mounted),
                       manifests=tuple(rec.manifests), tags=tuple(rec.tags), built=tuple(rec.built),
                       files=tuple(written), lock_written=write_lock)


_NOTHING_TAGGED = "Nothing was tagged; kfp.lock and the rendered files are unchanged."
_INTERRUPTED_UNTAGGED = ("interrupted: nothing was tagged (blobs already sent stay in the registry and are not sent "
                         "again; the registry keeps only complete blobs)")


def _record_task_keys(project: Project, refs: dict[str, str], state: ProjectState) -> None:
    """Record the cache keys of every task as applied (``.compose-kfp/task-keys.json``), for the next plan."""
    from compose_kfp.pipeline.cache import task_keys

    graph = pinned_graph(project, refs)
    if graph is not None:
        state.record_task_keys({name: k.to_dict() for name, k in task_keys(graph).items()}, replace=True)


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


def _recheck(plan: Plan, registries: Registries, state: ProjectState,
             dest_of: Callable[[str], Destination]) -> None:
    """Refuse the plan when the base reference or a destination tag moved since it was made."""
    checked_base: set[str] = set()
    for ip in plan.images:
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
        dest_of(ip.repository).check_tags(ip)


def _layer_for(spec: ImageSpec, pp: PlatformPlan, ly: LayerChange, state: ProjectState, installer: Any,
               progress: Progress | None, rec: Recorder, built: dict[tuple[str, str], Layer]) -> Layer:
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
        if progress:
            progress("built", f"{ly.name} {layer.digest}", layer.size, layer.size)
    if ly.after is not None and layer.digest != ly.after:
        raise StaleError(f"{layer_spec.where}: layer {ly.name!r}: its files changed since the plan was made (planned "
                         f"{ly.after}, built {layer.digest}); run `compose-kfp plan` again.")
    built[key] = layer
    return layer


def _base_state_of(pp: PlatformPlan) -> BaseState:
    return BaseState(pp.base.reference, pp.platform, digest=pp.base.after, manifest=pp.recipe.base_manifest,
                     config=pp.recipe.base_config)


def _resolve_platform(spec: ImageSpec, pp: PlatformPlan, state: ProjectState, installer: Any,
                      progress: Progress | None, rec: Recorder, built: dict[tuple[str, str], Layer],
                      dest: Destination, early: EarlyUploads | None = None) -> PlatformPlan:
    layers: list[Layer] = []
    changes: list[LayerChange] = []
    local = dest.copies_every_layer
    to_send = {t.what for t in pp.transfers}
    if early is not None and dest.uploads_early:
        # Layers already built (by plan) start uploading now, while the others (requirements) build.
        for ly in pp.layers:
            if (ly.action != "remove" and f"layer {ly.name}" in to_send and ly.after is not None
                    and state.store.has(ly.after)):
                early.submit(dest, Layer.from_store(state.store, ly.after, ly.diff_id or "",  # type: ignore[arg-type]
                                                    ly.media_type))
    for ly in pp.layers:
        if ly.action == "remove":
            changes.append(ly)
            continue
        sent = f"layer {ly.name}" in to_send
        if ly.build or sent or local:
            layer = _layer_for(spec, pp, ly, state, installer, progress, rec, built)
            if early is not None and sent and dest.uploads_early:
                early.submit(dest, layer)  # type: ignore[arg-type]  # a no-op for a layer submitted above
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


# --------------------------------------------------------------------------- the apply command's flow


@dataclasses.dataclass(frozen=True)
class ApplyOutcome:
    """What :func:`apply_project` did.

    Attributes:
        plan: the plan shown last (the one applied, when something was).
        result: what :func:`apply_plan` did; ``None`` when nothing was applied (no changes, or cancelled).
        cancelled: ``confirm`` said no; nothing was changed.
    """

    plan: Plan
    result: ApplyResult | None = None
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``apply --json`` and the Python API: ``{"plan": Plan.to_dict(), "result":
        ApplyResult.to_dict() or None (nothing applied), "changed": whether anything was written}``."""
        return {"plan": self.plan.to_dict(), "result": self.result.to_dict() if self.result is not None else None,
                "changed": self.result.changed if self.result is not None else False}


def _no_progress() -> ContextManager[Progress | None]:
    return contextlib.nullcontext(None)


def apply_project(project: Project, saved: Plan | None = None, *, frozen: bool = False,
                  lock_timeout: float = LOCK_TIMEOUT,
                  progress: Callable[[], ContextManager[Progress | None]] = _no_progress,
                  describe: Callable[[Plan], str] = format_plan,
                  on_plan: Callable[[Plan, str], None] | None = None,
                  confirm: Callable[[Plan], bool] | None = None,
                  on_wait: Callable[[], None] | None = None,
                  on_replanned: Callable[[Plan, str], None] | None = None) -> ApplyOutcome:
    """Plan (or take the ``saved`` plan) and apply it under the project lock, re-planning if another apply ran first.

    1. ``saved`` or :func:`~compose_kfp.build.plan.plan_project`; ``on_plan(plan, describe(plan))``.
    2. No changes: return (``result`` ``None``). ``confirm(plan)`` (when given) false: return ``cancelled``.
    3. Take the project lock (``on_wait()`` once if another apply holds it; up to ``lock_timeout`` seconds).
    4. When it had to wait and there is no ``saved`` plan, the other apply may have done some or all of it:
       plan again under the lock; when ``describe`` of the new plan differs from the first,
       ``on_replanned(plan, text)`` and, if there are changes, ``confirm(plan)`` again. No changes: return.
    5. :func:`apply_plan` with the lock held; return its result.

    ``progress()`` is entered around each planning and around applying, and yields the ``(event, name, done,
    total)`` callback to use (or ``None``).

    Without ``saved``, ``confirm`` and ``frozen`` (``apply -y``, or no terminal to ask on), building and
    uploading are one stream (issue 17): the planning uploads each layer it builds while compressing it,
    several at once (:class:`~compose_kfp.build.destination.StreamedUploads`), once the output folder and
    kfp.lock's folder are known to be writable; config, manifests and tags still go last, in step 5. A
    question to ask, a saved plan or ``--frozen`` keeps the planning free of remote writes, as ``plan``.

    Raises:
        as :func:`~compose_kfp.build.plan.plan_project` and :func:`apply_plan`; BusyError: the lock stayed held.
    """
    registries = registries_for(project)
    try:
        return _apply_project(project, saved, registries, frozen, lock_timeout, progress, describe, on_plan, confirm,
                              on_wait, on_replanned)
    finally:
        registries.close()


def _apply_project(project: Project, saved: Plan | None, registries: Registries, frozen: bool, lock_timeout: float,
                   progress: Callable[[], ContextManager[Progress | None]], describe: Callable[[Plan], str],
                   on_plan: Callable[[Plan, str], None] | None, confirm: Callable[[Plan], bool] | None,
                   on_wait: Callable[[], None] | None,
                   on_replanned: Callable[[Plan, str], None] | None) -> ApplyOutcome:
    streams: list[StreamedUploads | None] = []

    def make_plan() -> Plan:
        with progress() as bars:
            if saved is None and confirm is None and not frozen and not streams:
                streams.append(_streams_for(project, registries, bars))
            stream = streams[0] if streams else None
            try:
                return plan_project(project, registries=registries, frozen=frozen, progress=bars, streams=stream)
            except KeyboardInterrupt:
                if stream is None:
                    raise
                raise Interrupted(_INTERRUPTED_UNTAGGED) from None

    p = saved if saved is not None else make_plan()
    shown = describe(p)
    if on_plan is not None:
        on_plan(p, shown)
    if not p.has_changes:
        state = ProjectState(project.root)
        if p.tasks and not state.task_keys():  # applied before task keys were recorded: record them now
            _record_task_keys(project, step_refs(p), state)
        return ApplyOutcome(p)
    if confirm is not None and not confirm(p):
        return ApplyOutcome(p, cancelled=True)
    waited = []

    def waiting() -> None:
        waited.append(True)
        if on_wait is not None:
            on_wait()

    with holding_project_lock(project.root, lock_timeout, on_wait=waiting):
        if waited and saved is None:
            p = make_plan()
            again = describe(p)
            if again != shown and on_replanned is not None:
                on_replanned(p, again)
            if not p.has_changes:
                return ApplyOutcome(p)
            if again != shown and confirm is not None and not confirm(p):
                return ApplyOutcome(p, cancelled=True)
        with progress() as bars:
            result = apply_plan(project, p, registries=registries, frozen=frozen, progress=bars, lock_held=True,
                                streamed=streams[0] if streams else None)
    return ApplyOutcome(p, result)


def _streams_for(project: Project, registries: Registries, progress: Progress | None) -> StreamedUploads | None:
    """The :class:`StreamedUploads` of ``project``'s destination, or ``None`` (several repositories, an ``oci:``
    layout, or an output folder or kfp.lock folder that cannot be written: then :func:`apply_plan` fails with
    that error before anything is sent, as without streaming)."""
    root = project.root
    try:
        images = desired_images(project.manifest, root)
        check_output_writable(project, rendered_names(project))
        _check_lock_writable(root)
        return streamed_uploads([i.repository for i in images], root, registries, ProjectState(root).layer_cache,
                                progress)
    except (ComposeError, oci_errors.OCIError, OSError) as e:
        log.debug("not uploading while building: %s", e)
        return None


__all__ = ["ApplyOutcome", "ApplyResult", "apply_plan", "apply_project"]
