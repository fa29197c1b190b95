"""The planner: desired images + observed state -> :class:`Plan`, a pure function.

:func:`plan` reads nothing and writes nothing: every input comes from
:func:`compose_kfp.build.images.desired_images` and :func:`compose_kfp.build.observe.observe`
(value types of :mod:`compose_kfp.build.spec` and :mod:`compose_kfp.build.state` only),
so it is unit-tested with in-memory values. :mod:`compose_kfp.build.plan` makes the complete plan,
:mod:`compose_kfp.build.apply` executes a plan; the CLI renders it (:func:`format_plan`) or prints :meth:`Plan.to_json`.

The plan is a frozen dataclass tree (after Terraform's ``internal/plans``):

- :class:`Plan`: per image (:class:`ImagePlan`), per platform
  (:class:`PlatformPlan`): the base (:class:`BaseChange`), per layer
  (:class:`LayerChange`) an action ``keep`` / ``add`` / ``replace`` / ``remove``
  with before/after digests, size and a reason for display only; config and
  manifest digests before/after; the blobs to upload (:class:`BlobTransfer`)
  with byte counts (a blob the destination already holds counts zero, a base
  layer mounted from the same registry counts zero); then the rendered files
  that would change (:class:`FileChange`).
- A digest that only apply can know (a requirements layer whose key changed)
  is ``None``: "known after apply"; so are the config, manifest and tag above it.

Layer actions compare the desired layer with the current image's layer of the
same name (names come from the ``io.compose-kfp.layer`` annotation, or kfp.lock):
same digest -> ``keep``; other digest -> ``replace``; no such name -> ``add``;
a current layer whose name is no longer desired -> ``remove``.

The content-derived tag pushed with every image is :func:`content_tag`:
``kfp-`` and the first 16 hex digits of the image digest (the index digest for
several platforms, else the manifest digest).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal, Mapping, Sequence

from compose_kfp.build.spec import LAYER_NAME_ANNOTATION, ImageSpec, image_env, labels_of
from compose_kfp.build.state import BASE_LAYERS_ANNOTATION, BaseState, CurrentImage, LayerState, Observed
from compose_kfp.oci.image import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    append,
)

PLAN_VERSION = 1

Action = Literal["keep", "add", "replace", "remove"]
ImageStatus = Literal["create", "update", "restore", "retag", "unchanged"]


# --------------------------------------------------------------------------- plan values


@dataclasses.dataclass(frozen=True)
class LayerChange:
    """One layer of one image and platform.

    Attributes:
        name, kind: the layer (``runtime``, ``paths``, ``requirements``, ``rootfs``).
        action: ``keep``, ``add``, ``replace`` or ``remove``.
        before: digest in the current image (``None`` for ``add``).
        after: digest in the new image (``None`` for ``remove``, or when known only after apply).
        diff_id, size, media_type: of ``after`` (``None`` when unknown).
        key: the layer's cache key (LayerPlan key, or the ``sha256:`` requirements key).
        build: apply must build it (requirements changed; the installer runs during apply).
        reason: for display only (``src/iris.py changed``, ``requirements changed``).
    """

    name: str
    kind: str
    action: Action
    before: str | None
    after: str | None
    diff_id: str | None = None
    size: int | None = None
    media_type: str = ""
    key: str = ""
    build: bool = False
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class BlobTransfer:
    """A blob apply sends to the destination.

    Attributes:
        digest: the blob (``None``: a layer apply must build first).
        size: bytes to send (0 when mounted).
        what: ``layer <name>``, ``base layer``, ``config``.
        how: ``upload`` (from the local store), ``mount`` (from the base repository, same registry),
            ``copy`` (a base layer streamed from another registry or a local base).
    """

    digest: str | None
    size: int
    what: str
    how: Literal["upload", "mount", "copy"] = "upload"


@dataclasses.dataclass(frozen=True)
class BaseChange:
    """The base image of one platform.

    Attributes:
        reference: ``image.base`` as written.
        before: base manifest digest of the current image (``None`` when unknown).
        after: base manifest digest now (``None`` for ``scratch``).
        action: ``keep`` or ``replace`` (the base digest moved).
        top_digest: what ``reference`` resolved to (index or manifest), re-checked by apply.
    """

    reference: str
    before: str | None
    after: str | None
    action: Action
    top_digest: str | None = None


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What apply needs to assemble the config and manifest once every layer digest is known.

    Attributes:
        base_manifest, base_config: raw JSON text of the base (``None`` for ``scratch``).
        platform: ``os/arch[/variant]``.
        env: the full config ``Env`` (``KEY=VALUE``).
        workdir, user, labels: config fields.
        family: ``oci`` or ``docker``.
        base_name: the base reference (manifest annotation ``org.opencontainers.image.base.name``).
        layer_names: names of the layers above the base, base first.
    """

    base_manifest: str | None
    base_config: str | None
    platform: str
    env: tuple[str, ...]
    workdir: str
    user: str | None
    labels: tuple[tuple[str, str], ...]
    family: str
    base_name: str | None
    layer_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PlatformPlan:
    """One platform of one image.

    Attributes:
        platform: ``os/arch[/variant]``.
        base: the :class:`BaseChange`.
        layers: desired layers (base first) followed by removed ones.
        recipe: how to assemble config and manifest.
        config_before / config_after, manifest_before / manifest_after: digests (``None``: absent / unknown).
        manifest_size: bytes of the new manifest (``None`` when unknown).
        transfers: blobs to send (layers, base layers, config), each counted once per image.
    """

    platform: str
    base: BaseChange
    layers: tuple[LayerChange, ...]
    recipe: Recipe
    config_before: str | None
    config_after: str | None
    manifest_before: str | None
    manifest_after: str | None
    manifest_size: int | None = None
    transfers: tuple[BlobTransfer, ...] = ()

    @property
    def config_changed(self) -> bool:
        """The config blob differs from the current image's (or is known only after apply)."""
        return self.config_after is None or self.config_after != self.config_before

    @property
    def manifest_changed(self) -> bool:
        """The manifest differs from the current image's (or is known only after apply)."""
        return self.manifest_after is None or self.manifest_after != self.manifest_before


@dataclasses.dataclass(frozen=True)
class ImagePlan:
    """One image.

    Attributes:
        name: ``main`` or the step name; ``steps``: the function steps that run in it.
        repository: destination.
        status: ``create`` (nothing there yet), ``update``, ``restore`` (kfp.lock names an image the
            destination no longer has), ``retag`` (image unchanged, a tag points elsewhere), ``unchanged``.
        before: current top-level digest (lock or tag); ``after``: new one (``None`` when known after apply).
        before_source: ``lock``, ``tag:<tag>`` or ``""``.
        platforms: per platform, in manifest order; more than one -> an index is pushed.
        tags: every tag to point at the image: the content tag (when known) then ``image.tags``.
        stale_tags: tags in ``image.tags`` that point elsewhere now.
        observed_tags: ``(tag, digest or None)`` for each of ``image.tags`` as observed; apply refuses the
            plan when one of them moved since.
    """

    name: str
    steps: tuple[str, ...]
    repository: str
    status: ImageStatus
    before: str | None
    after: str | None
    before_source: str
    platforms: tuple[PlatformPlan, ...]
    tags: tuple[str, ...]
    stale_tags: tuple[str, ...] = ()
    observed_tags: tuple[tuple[str, str | None], ...] = ()

    @property
    def is_index(self) -> bool:
        """Several platforms: an image index is pushed above the manifests."""
        return len(self.platforms) > 1

    @property
    def reference(self) -> str | None:
        """``repository@digest`` of the new image, or ``None`` when known after apply."""
        return f"{self.repository}@{self.after}" if self.after else None


@dataclasses.dataclass(frozen=True)
class FileChange:
    """A rendered file.

    Attributes:
        path: relative to the project folder (POSIX).
        action: ``add``, ``change``, ``remove`` or ``keep``.
        before / after: sha256 hex (``None``: absent, or for ``after`` known after apply).
    """

    path: str
    action: Literal["add", "change", "remove", "keep"]
    before: str | None
    after: str | None


@dataclasses.dataclass(frozen=True)
class TaskCache:
    """One task of the pipeline against the cache keys the last ``apply`` or ``run --local`` recorded
    (:func:`compose_kfp.pipeline.cache.compare`): ``cached`` (same key) or ``re-runs`` with the reason (its image
    changed, its command changed, an upstream task re-runs, its inputs changed, ...). ``key``: its key now
    (``None`` while an image digest is known only after apply). Display only: it never makes a plan have changes."""

    task: str
    status: Literal["cached", "re-runs"]
    reason: str = ""
    key: str | None = None


@dataclasses.dataclass(frozen=True)
class Summary:
    """Counts for the last line of ``plan``: layers to add/replace/remove, bytes to upload (``unknown``:
    some layer size is known only after apply), images whose config or manifest change, files that change."""

    add: int
    replace: int
    remove: int
    upload_bytes: int
    unknown_upload: bool
    images_changed: int
    files_changed: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """The whole plan (module docstring). ``project``: project name; ``root``: the project folder;
    ``lock_changes``: ``kfp.lock`` would be written (missing, or different from what apply records);
    ``component_images``: ``(step, repository@sha256:...)`` pins of third-party component images;
    ``warnings``: messages to show with the plan (requirements that are not pinned or not hash-locked, from
    :attr:`compose_kfp.build.observe.Observed.warnings`), in order; ``tasks``: the pipeline's tasks against the
    recorded cache keys (:class:`TaskCache`, graph order; empty without a ``[pipeline]``)."""

    project: str
    root: str
    images: tuple[ImagePlan, ...]
    files: tuple[FileChange, ...] = ()
    lock_changes: bool = False
    component_images: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    version: int = PLAN_VERSION
    tasks: tuple[TaskCache, ...] = ()

    @property
    def summary(self) -> Summary:
        """The :class:`Summary`; upload bytes count each blob digest once across images and platforms."""
        add = replace = remove = 0
        for image in self.images:
            for p in image.platforms:
                for ly in p.layers:
                    add += ly.action == "add"
                    replace += ly.action == "replace"
                    remove += ly.action == "remove"
                replace += p.base.action == "replace"
        seen: dict[str, int] = {}
        unknown = False
        for image in self.images:
            for p in image.platforms:
                for t in p.transfers:
                    if t.digest is None:
                        unknown = True
                    else:
                        seen[t.digest] = t.size
        return Summary(add, replace, remove, sum(seen.values()), unknown,
                       sum(1 for i in self.images if i.status != "unchanged"),
                       sum(1 for f in self.files if f.action != "keep"))

    @property
    def has_changes(self) -> bool:
        """Whether apply would change anything (an image, a tag, a rendered file or kfp.lock)."""
        s = self.summary
        return s.images_changed > 0 or s.files_changed > 0 or self.lock_changes

    @property
    def needs_build(self) -> bool:
        """Whether some layer is known only after apply (the installer runs)."""
        return any(ly.build for i in self.images for p in i.platforms for ly in p.layers)

    def image(self, name: str) -> ImagePlan:
        """The :class:`ImagePlan` called ``name``. Raises KeyError."""
        for i in self.images:
            if i.name == name:
                return i
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready); ``summary`` and ``has_changes`` included for readers."""
        d = dataclasses.asdict(self)
        d["summary"] = dataclasses.asdict(self.summary)
        d["has_changes"] = self.has_changes
        return d

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict` (keys sorted)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """Read a plan written by :meth:`to_json`. Raises ValueError when it is not one (or another version)."""
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("version") != PLAN_VERSION or "images" not in d:
            raise ValueError(f"not a compose-kfp plan of version {PLAN_VERSION}")
        images = []
        for i in d["images"]:
            plats = []
            for p in i["platforms"]:
                r = p["recipe"]
                recipe = Recipe(**{**r, "env": tuple(r["env"]), "labels": tuple(tuple(x) for x in r["labels"]),
                                   "layer_names": tuple(r["layer_names"])})
                plats.append(PlatformPlan(
                    platform=p["platform"], base=BaseChange(**p["base"]),
                    layers=tuple(LayerChange(**ly) for ly in p["layers"]), recipe=recipe,
                    config_before=p["config_before"], config_after=p["config_after"],
                    manifest_before=p["manifest_before"], manifest_after=p["manifest_after"],
                    manifest_size=p["manifest_size"], transfers=tuple(BlobTransfer(**t) for t in p["transfers"])))
            images.append(ImagePlan(
                name=i["name"], steps=tuple(i["steps"]), repository=i["repository"], status=i["status"],
                before=i["before"], after=i["after"], before_source=i["before_source"], platforms=tuple(plats),
                tags=tuple(i["tags"]), stale_tags=tuple(i["stale_tags"]),
                observed_tags=tuple((t, d) for t, d in i.get("observed_tags", []))))
        return cls(project=d["project"], root=d["root"], images=tuple(images),
                   files=tuple(FileChange(**f) for f in d.get("files", [])),
                   lock_changes=bool(d.get("lock_changes", False)),
                   component_images=tuple((a, b) for a, b in d.get("component_images", [])),
                   warnings=tuple(d.get("warnings", [])), version=d["version"],
                   tasks=tuple(TaskCache(**t) for t in d.get("tasks", [])))


# --------------------------------------------------------------------------- helpers


def content_tag(digest: str) -> str:
    """The content-derived tag of an image digest: ``kfp-<first 16 hex digits>`` (``kfp-3f2a9c...``)."""
    return "kfp-" + digest.split(":", 1)[1][:16]


def assemble(recipe: Recipe, layers: Sequence[Any]) -> tuple[Manifest, ImageConfig]:
    """Config and manifest of the image: ``recipe``'s base plus ``layers`` (anything with media_type,
    digest, diff_id, size; base first, one per ``recipe.layer_names``). OCI manifests carry an
    ``io.compose-kfp.layer`` annotation per new layer and ``io.compose-kfp.base-layers`` (how many layers are the
    base's), so a later plan can match layers by name. Pure and deterministic: the
    planner and apply call it with the same inputs and get the same bytes."""
    base_manifest = Manifest.from_bytes(recipe.base_manifest.encode()) if recipe.base_manifest else None
    base_config = ImageConfig.from_bytes(recipe.base_config.encode()) if recipe.base_config else None
    oci = recipe.family == "oci"
    layer_notes = [{LAYER_NAME_ANNOTATION: n} for n in recipe.layer_names] if oci else None
    notes = {BASE_LAYERS_ANNOTATION: str(len(base_manifest.layers) if base_manifest else 0)} if oci else None
    return append(base_manifest, base_config, list(layers), env=list(recipe.env), workdir=recipe.workdir,
                  labels=dict(recipe.labels), user=recipe.user, family=recipe.family,  # type: ignore[arg-type]
                  platform=recipe.platform, base_name=recipe.base_name, layer_annotations=layer_notes,
                  annotations=notes)


def build_index(manifests: Sequence[tuple[str, int, str]], family: str) -> Index:
    """The image index of per-platform ``(manifest digest, manifest size, platform)``, in the given order."""
    descs = []
    manifest_type = MEDIA_TYPE_DOCKER_MANIFEST if family == "docker" else MEDIA_TYPE_OCI_MANIFEST
    for digest, size, platform in manifests:
        descs.append(Descriptor(media_type=manifest_type, digest=digest, size=size,
                                platform=Platform.parse(platform)))
    mt = MEDIA_TYPE_DOCKER_MANIFEST_LIST if family == "docker" else MEDIA_TYPE_OCI_INDEX
    return Index(schema_version=2, media_type=mt, manifests=descs)


@dataclasses.dataclass(frozen=True)
class _KnownLayer:
    media_type: str
    digest: str
    diff_id: str
    size: int


def _files_reason(now: Sequence[tuple[str, int, int]], before: Sequence[tuple[str, int, int]] | None,
                  workdir: str = "/") -> str:
    """``src/a.py changed; src/c.py added`` from the file stamps of the new and the old layer (paths under
    ``workdir`` shown relative to it, as they are written in kfp.toml)."""
    if before is None:
        return "content changed"
    prefix = workdir.strip("/") + "/" if workdir.strip("/") else ""

    def shown_path(path: str) -> str:
        return path[len(prefix):] if prefix and path.startswith(prefix) else "/" + path
    old = {p: (s, m) for p, s, m in before}
    new = {p: (s, m) for p, s, m in now}
    changed = [p for p in new if p in old and old[p] != new[p]]
    added = [p for p in new if p not in old]
    removed = [p for p in old if p not in new]
    parts = []
    for label, items in (("changed", changed), ("added", added), ("removed", removed)):
        if not items:
            continue
        shown = ", ".join(shown_path(i) for i in items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
        parts.append(f"{shown} {label}")
    return "; ".join(parts) or "content changed"


def _family(image: ImageSpec, base: BaseState) -> str:
    """The media type family of the image: ``image.format``; else OCI for an ``oci:`` layout destination (a
    Docker v2.2 base is converted, as ``skopeo copy docker://... oci:...`` does: its layers keep their digests
    and get the OCI layer media types, the manifest and config are new documents; skopeo and umoci read only
    OCI media types in a layout); else the base's family (a registry gets what the base is); OCI from scratch."""
    if image.format:
        return image.format
    if image.repository.startswith("oci:"):
        return "oci"
    if base.manifest:
        return Manifest.from_bytes(base.manifest.encode()).family
    return "oci"


# --------------------------------------------------------------------------- planning


def plan_platform(image: ImageSpec, platform: str, observed: Observed, current: CurrentImage) -> PlatformPlan:
    """The :class:`PlatformPlan` of ``image`` on ``platform`` (see :func:`plan`)."""
    base = observed.bases[platform]
    states: tuple[LayerState, ...] = observed.layers[(image.name, platform)]
    cur = current.platforms.get(platform)
    cur_by_name: dict[str, tuple[str, int]] = {}
    if cur is not None:
        for i, (name, digest, size) in enumerate(cur.layers):
            cur_by_name[name or f"#{i}"] = (digest, size)
    changes: list[LayerChange] = []
    for s in states:
        old = cur_by_name.get(s.name)
        before = old[0] if old else None
        if old is None:
            action: Action = "add"
            reason = s.note if s.digest is None else ("new layer" if cur is not None else "")
        elif s.digest is not None and s.digest == before:
            action, reason = "keep", ""
        else:
            action = "replace"
            if s.kind == "requirements":
                reason = s.note or "requirements changed"
            elif s.kind == "runtime":
                reason = "compose-kfp runtime changed"
            else:
                reason = _files_reason(s.files, observed.file_records.get(before or ""), image.workdir)
        changes.append(LayerChange(s.name, s.kind, action, before, s.digest, s.diff_id, s.size, s.media_type, s.key,
                                   build=s.digest is None, reason=reason))
    desired_names = {s.name for s in states}
    for name, (digest, size) in cur_by_name.items():
        if name not in desired_names:
            changes.append(LayerChange(name, "", "remove", digest, None, size=size, reason="no longer in kfp.toml"))

    base_before = cur.base if cur is not None else None
    base_action: Action = "replace" if (base_before and base.digest and base_before != base.digest) else "keep"
    base_change = BaseChange(base.reference, base_before, base.digest, base_action, base.top_digest)

    base_env = None
    if base.config:
        cfg = ImageConfig.from_bytes(base.config.encode())
        base_env = cfg.config.env if cfg.config else None
    family = _family(image, base)
    recipe = Recipe(base_manifest=base.manifest, base_config=base.config, platform=platform,
                    env=tuple(image_env(image, base_env)), workdir=image.workdir, user=image.user,
                    labels=tuple(sorted(labels_of(image).items())), family=family,
                    base_name=None if base.reference == "scratch" else base.reference,
                    layer_names=tuple(s.name for s in states))

    config_after = manifest_after = None
    manifest_size = None
    config_size = None
    if all(s.digest for s in states):
        manifest, config = assemble(recipe, [_KnownLayer(s.media_type, s.digest, s.diff_id, s.size)  # type: ignore[arg-type]
                                             for s in states])
        config_after, manifest_after = manifest.config.digest, manifest.digest
        manifest_size, config_size = manifest.size, manifest.config.size

    transfers: list[BlobTransfer] = []
    remote = observed.remote_blobs
    for s in states:
        if s.digest is None:
            transfers.append(BlobTransfer(None, 0, f"layer {s.name}"))
        elif s.digest not in remote:
            transfers.append(BlobTransfer(s.digest, s.size or 0, f"layer {s.name}"))
    for digest, size, _ in base.layers:
        if digest in remote:
            continue
        if observed.same_registry:
            transfers.append(BlobTransfer(digest, 0, "base layer", "mount"))
        else:
            transfers.append(BlobTransfer(digest, size, "base layer", "copy"))
    if config_after is None:
        transfers.append(BlobTransfer(None, 0, "config"))
    elif config_after not in remote:
        transfers.append(BlobTransfer(config_after, config_size or 0, "config"))
    return PlatformPlan(platform=platform, base=base_change, layers=tuple(changes), recipe=recipe,
                        config_before=cur.config if cur else None, config_after=config_after,
                        manifest_before=cur.manifest if cur else None, manifest_after=manifest_after,
                        manifest_size=manifest_size, transfers=tuple(transfers))


def plan_image(image: ImageSpec, observed: Observed) -> ImagePlan:
    """The :class:`ImagePlan` of one image (see :func:`plan`)."""
    current = observed.current.get(image.name, CurrentImage())
    platforms = tuple(plan_platform(image, p, observed, current) for p in image.platforms)
    after: str | None = None
    if all(p.manifest_after for p in platforms):
        if len(platforms) == 1:
            after = platforms[0].manifest_after
        else:
            after = build_index([(p.manifest_after, p.manifest_size, p.platform) for p in platforms],  # type: ignore[misc]
                                platforms[0].recipe.family).digest
    tags = ((content_tag(after),) if after else ()) + tuple(t for t in image.tags)
    stale = tuple(t for t in image.tags if after is None or observed.tags.get(t) != after)
    if current.digest is None:
        status: ImageStatus = "create"
    elif not current.exists:
        status = "restore"
    elif after is None or after != current.digest:
        status = "update"
    elif stale:
        status = "retag"
    else:
        status = "unchanged"
    return ImagePlan(name=image.name, steps=image.steps, repository=image.repository, status=status,
                     before=current.digest, after=after, before_source=current.source, platforms=platforms,
                     tags=tags, stale_tags=stale,
                     observed_tags=tuple((t, observed.tags.get(t)) for t in image.tags))


def plan(images: Sequence[ImageSpec], observed: Observed, *, project: str = "", root: str = "",
         rendered: Mapping[str, str | None] | None = None, component_images: Mapping[str, str] | None = None) -> Plan:
    """The plan to turn ``observed`` into ``images``. Pure: no I/O.

    Args:
        images: desired images (:func:`compose_kfp.build.images.desired_images`).
        observed: :func:`compose_kfp.build.observe.observe` result.
        project, root: recorded in the plan.
        rendered: desired rendered files, path -> sha256 hex (``None``: depends on a digest known after apply);
            ``None`` leaves rendered files out of the plan (see :func:`plan_files`).
        component_images: step -> third-party component image pinned by digest (``repository@sha256:...``,
            :func:`compose_kfp.build.pins.pin_images`); recorded sorted by step in :attr:`Plan.component_images`.

    Raises:
        KeyError: ``observed`` lacks a platform or image layer list the images need (a bug in the caller).
    """
    planned = tuple(plan_image(image, observed) for image in images)
    files = plan_files(rendered, observed.rendered) if rendered is not None else ()
    return Plan(project=project, root=root, images=planned, files=files, warnings=tuple(observed.warnings),
                component_images=tuple(sorted((component_images or {}).items())))


def plan_files(desired: Mapping[str, str | None], on_disk: Mapping[str, str],
               managed_prefixes: Sequence[str] = ()) -> tuple[FileChange, ...]:
    """Rendered files that would change: ``add`` / ``change`` / ``keep``, and ``remove`` for files on disk
    under one of ``managed_prefixes`` that are no longer rendered. Sorted by path."""
    out = []
    for path in sorted(set(desired) | set(on_disk)):
        want, have = desired.get(path, "absent"), on_disk.get(path)
        if want == "absent":
            if any(path.startswith(p) for p in managed_prefixes):
                out.append(FileChange(path, "remove", have, None))
            continue
        if have is None:
            out.append(FileChange(path, "add", None, want))
        elif want is None or want != have:
            out.append(FileChange(path, "change", have, want))
        else:
            out.append(FileChange(path, "keep", have, want))
    return tuple(out)


def with_files(p: Plan, files: Sequence[FileChange]) -> Plan:
    """``p`` with its rendered-file changes replaced by ``files``."""
    return dataclasses.replace(p, files=tuple(files))


# --------------------------------------------------------------------------- text


_SYMBOL = {"keep": " ", "add": "+", "replace": "~", "remove": "-", "change": "~"}


def short(digest: str | None) -> str:
    """``sha256:ab12cd34ef56…`` (12 hex digits), or ``(known after apply)``."""
    if not digest:
        return "(known after apply)"
    algo, _, hexd = digest.partition(":")
    return f"{algo}:{hexd[:12]}…"


def human_bytes(n: int) -> str:
    """Decimal units as registries and browsers show them: ``12.3 kB``, ``1.0 GB``, ``512 B``."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def format_plan(p: Plan, *, verbose: bool = False) -> str:
    """Terraform-style text of ``p``: legend, one line per layer, files, ``Warnings:`` (if any) and the
    ``Plan: N to add, M to replace, K to remove; X to upload; F rendered files to change; I images to push.``
    (or ``No changes.``) line. The config and manifest of an image that did not exist are shown with ``+``.

    Unchanged layers are listed too (with a blank symbol) unless nothing in the image changed and
    ``verbose`` is off.
    """
    lines = ["Symbols: + add, ~ replace/change, - remove", ""]
    for image in p.images:
        head = {"create": "will be created", "update": "will be updated", "restore":
                "is missing from the destination and will be restored", "retag": "will be re-tagged",
                "unchanged": "is up to date"}[image.status]
        where = f"{image.repository}@{short(image.after)}" if image.after else image.repository
        lines.append(f"image {image.name} ({where}) {head}")
        if image.steps:
            lines.append(f"  steps: {', '.join(image.steps)}")
        show_all = verbose or image.status != "unchanged"
        for pp in image.platforms:
            if len(image.platforms) > 1:
                lines.append(f"  {pp.platform}:")
            ind = "    " if len(image.platforms) > 1 else "  "
            b = pp.base
            if b.action == "replace":
                lines.append(f"{ind}~ (base) {b.reference}  {short(b.before)} -> {short(b.after)}  (base digest moved)")
            elif show_all:
                lines.append(f"{ind}  (base) {b.reference}  {short(b.after) if b.after else 'scratch'}")
            for ly in pp.layers:
                if ly.action == "keep" and not show_all:
                    continue
                sym = _SYMBOL[ly.action]
                if ly.action == "keep":
                    text = f"{short(ly.after)}"
                elif ly.action == "add":
                    text = f"{short(ly.after)}"
                elif ly.action == "remove":
                    text = f"{short(ly.before)}"
                else:
                    text = f"{short(ly.before)} -> {short(ly.after)}"
                size = f", {human_bytes(ly.size)}" if ly.size is not None and ly.action != "remove" else ""
                reason = f"  ({ly.reason}{size})" if ly.reason else (f"  ({size[2:]})" if size else "")
                lines.append(f"{ind}{sym} {ly.name:<10} {text}{reason}")
            if image.status != "unchanged":
                if pp.config_changed:
                    lines.append(_blob_line(ind, "config", pp.config_before, pp.config_after))
                if pp.config_changed or pp.manifest_changed:
                    lines.append(_blob_line(ind, "manifest", pp.manifest_before, pp.manifest_after))
        if image.status != "unchanged":
            tags = ", ".join(image.tags) if image.tags else ""
            if image.after is None:
                tags = ", ".join(["kfp-(known after apply)", *image.tags])
            lines.append(f"  tags: {tags}")
        lines.append("")
    changed_files = [f for f in p.files if f.action != "keep"]
    if changed_files:
        lines.append("rendered files:")
        for f in changed_files:
            note = "  (known after apply)" if f.after is None and f.action != "remove" else ""
            lines.append(f"  {_SYMBOL[f.action]} {f.path}{note}")
        lines.append("")
    if p.lock_changes:
        lines.append("kfp.lock will be written.")
        lines.append("")
    if p.warnings:
        lines.append("Warnings:")
        lines.extend(f"  ! {w}" for w in p.warnings)
        lines.append("")
    lines.extend(format_task_cache(p.tasks))
    s = p.summary
    if not p.has_changes:
        lines.append("No changes. The images and rendered files match kfp.toml.")
        return "\n".join(lines) + "\n"
    upload = human_bytes(s.upload_bytes) + (" + layers known after apply" if s.unknown_upload else "")
    lines.append(f"Plan: {s.add} to add, {s.replace} to replace, {s.remove} to remove; {upload} to upload; "
                 f"{_count(s.files_changed, 'rendered file')} to change; {_count(s.images_changed, 'image')} to push.")
    return "\n".join(lines) + "\n"


def format_task_cache(tasks: Sequence[TaskCache]) -> list[str]:
    """The plan's task section (no lines without tasks): one line per task, ``cached`` or ``re-runs: REASON``,
    then ``Tasks: N cached, M to re-run.`` and a blank line."""
    if not tasks:
        return []
    width = max(len(t.task) for t in tasks)
    lines = ["tasks (cache keys against the last apply or run):"]
    for t in tasks:
        text = "cached" if t.status == "cached" else f"re-runs: {t.reason}"
        lines.append(f"  {t.task:<{width}}  {text}")
    cached = sum(t.status == "cached" for t in tasks)
    lines += [f"Tasks: {cached} cached, {len(tasks) - cached} to re-run.", ""]
    return lines


def _blob_line(ind: str, what: str, before: str | None, after: str | None) -> str:
    """A config or manifest line: ``+`` when the image had none before (a new image), else ``~ before -> after``."""
    if before is None:
        return f"{ind}+ {what:<10} {short(after)}"
    return f"{ind}~ {what:<10} {short(before)} -> {short(after)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


__all__ = ["BaseChange", "BlobTransfer", "FileChange", "ImagePlan", "LayerChange", "PLAN_VERSION", "Plan",
           "PlatformPlan", "Recipe", "Summary", "assemble", "build_index", "content_tag", "format_plan",
           "human_bytes", "plan", "plan_files", "plan_image", "plan_platform", "short", "with_files"]
