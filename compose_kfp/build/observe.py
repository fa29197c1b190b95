"""Observation: every read of registries and disk that planning needs, in one place.

:func:`observe` looks at the world for a list of desired images
(:func:`compose_kfp.build.images.desired_images`) and returns an :class:`Observed`
value, which :func:`compose_kfp.planner.plan` turns into a plan without any
further I/O. What it reads:

- **Base image** per platform: a registry reference is resolved with
  ``GET manifest`` (tag -> index or manifest -> the platform's manifest) and its
  config blob; ``oci:PATH[:TAG]``, ``dir:PATH`` and ``docker-archive:PATH`` are read
  from disk; ``scratch`` has nothing. Never a base layer. With ``locked_bases``
  (``--frozen``) the locked manifest digest is fetched instead of the tag.
- **Current image** at the destination: the digest recorded in ``kfp.lock`` if
  any (and whether the registry still has it), else the first of ``image.tags``;
  its index/manifests (small JSON), never its layers.
- **Layers**: each layer's :class:`~compose_kfp.oci.layer.LayerPlan` key (``lstat``
  only) and a :class:`~compose_kfp.oci.layer.LayerCache` lookup. On a miss, a
  ``paths``/``rootfs``/``runtime`` layer is built right away into the project's
  content-addressed blob store (fast, and it makes the plan exact: a ``touch``
  that does not change content yields the same digest and shows as unchanged).
  A ``requirements`` layer is looked up by :func:`compose_kfp.build.requirements.requirements_key`;
  on a miss the installer is **not** run: the digest is "known after apply",
  unless ``kfp.lock`` records the same key and the destination already holds
  that blob.
- **Destination blobs**: ``HEAD`` of every blob the desired images reference
  whose digest is known.
- **Rendered files** under ``render.output_dir``: sha256 of each file there.

The values it returns are in :mod:`compose_kfp.build.state`; the state folder it caches into is
:class:`compose_kfp.build.statedir.ProjectState`; the destination is read through
:class:`compose_kfp.build.destination.Destination`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from compose_kfp.build import deps as deps_mod
from compose_kfp.build.destination import Destination, StreamedUploads, destination_for, map_in_threads
from compose_kfp.build.registries import Registries, download_blob, registry_ref
from compose_kfp.build.requirements import (
    DepsTarget,
    reproducibility_warnings,
    requirements_key,
    resolve_python_version,
)
from compose_kfp.build.spec import LAYER_NAME_ANNOTATION, ImageSpec, LayerSpec
from compose_kfp.build.state import (
    BASE_LAYERS_ANNOTATION,
    BaseState,
    CurrentImage,
    LayerState,
    Observed,
    PlatformImageState,
)
from compose_kfp.build.statedir import ProjectState
from compose_kfp.errors import BuildError, ComposeError, ConfigError, from_oci
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.blobs import atomic_write
from compose_kfp.oci.image import (
    ANNOTATION_BASE_DIGEST,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_manifest,
    select_platform,
)
from compose_kfp.oci.layer import LayerPlan, plan_layer, write_layer
from compose_kfp.oci.reference import redact_userinfo

log = logging.getLogger(__name__)

#: Progress callback: ``(event, name or digest, done bytes, total bytes)``; ``built`` (a layer was just built:
#: name ``"<layer> <digest>"``, done = total = the blob's size) follows a layer's last ``build`` event.
Progress = Callable[[str, str, int, int], None]


# --------------------------------------------------------------------------- base


def resolve_base(reference: str, platforms: Sequence[str], registries: Registries, state: ProjectState, *,
                 locked: Mapping[str, str] | None = None) -> dict[str, BaseState]:
    """Resolve the base image for each platform: manifest digest, manifest and config (never its layers).

    Args:
        reference: ``image.base`` as written.
        platforms: the platforms to resolve.
        locked: platform -> locked manifest digest (``--frozen``): fetched by digest instead of the tag.

    Raises:
        ConfigError: the base is not usable as it is, wherever it lives (registry, ``oci:``, ``dir:``,
            ``docker-archive:``): not found, no image for a platform (nested indexes searched), an artifact
            rather than a runnable image, not an image layout; one message per problem, made by
            :func:`base_error`, so the same base gives the same message and exit code (1) from a registry
            and from disk.
        RegistryError / AuthError: the registry could not be read (network, HTTP, credentials), also from
            :func:`base_error` (:func:`~compose_kfp.errors.from_oci` with the ``image.base`` key).
    """
    try:
        if reference == "scratch":
            return {p: BaseState(reference, p) for p in platforms}
        if reference.startswith(("oci:", "dir:", "docker-archive:")):
            return _local_base(reference, platforms, state)
        return _registry_base(reference, platforms, registries, state, locked)
    except oci_errors.OCIError as e:
        raise base_error(reference, e) from None


def base_error(reference: str, error: oci_errors.OCIError) -> ComposeError:
    """A problem met reading the base image as our error, the same wherever the base lives: the message is
    ``image.base: '<reference>': <what>`` (user info redacted) and the kind is
    :func:`~compose_kfp.errors.from_oci`'s with ``input_image=True`` (the image itself unusable: ConfigError,
    exit 1; the registry or credentials failing: exit 4 or 5)."""
    return from_oci(error, f"image.base: {redact_userinfo(reference)!r}", input_image=True)


def _registry_base(reference: str, platforms: Sequence[str], registries: Registries, state: ProjectState,
                   locked: Mapping[str, str] | None) -> dict[str, BaseState]:
    """:func:`resolve_base` for a registry reference (OCI errors propagate to it)."""
    out: dict[str, BaseState] = {}
    ref = registry_ref(reference)
    client = registries.client(ref.api_host)
    top_digest = None
    top: Manifest | Index | None = None
    for p in platforms:
        if locked and locked.get(p):
            digest = locked[p]
            raw, mt, _ = client.get_manifest(ref.repository, digest)
            manifest = Manifest.from_bytes(raw, mt)
            top_d = digest
        else:
            if top is None:
                try:
                    raw, mt, top_digest = client.get_manifest(ref.repository, ref.identifier)
                except oci_errors.NotFound:
                    raise ConfigError(f"image.base: {redact_userinfo(reference)!r}: the image was not found in "
                                      f"{ref.api_host} "
                                      "(no such repository or tag); check the name and tag, or push the base image "
                                      "first") from None
                top = parse_manifest(raw, mt)
            if isinstance(top, Index):
                desc = select_platform(top, p, fetch=lambda d: client.get_manifest(ref.repository, d.digest)[0])
                raw, mt, digest = client.get_manifest(ref.repository, desc.digest)
                manifest = Manifest.from_bytes(raw, mt)
            else:
                manifest, digest = top, top_digest
            top_d = top_digest
        config_raw = _fetch_config(client, ref.repository, manifest, state)
        config = ImageConfig.from_bytes(config_raw, manifest.config.media_type)
        _check_platform(config, p, reference)
        out[p] = BaseState(reference, p, digest=digest, top_digest=top_d, manifest=manifest.raw_bytes().decode(),
                           config=config_raw.decode(), registry=ref.api_host, repository=ref.repository)
    return out


def _fetch_config(client: Any, repo: str, manifest: Manifest, state: ProjectState) -> bytes:
    """The base config blob: from the project's blob store when it was fetched before (content-addressed,
    digest verified), else downloaded into it."""
    store = state.store
    digest = manifest.config.digest
    if store.has(digest):
        try:
            return store.read_bytes(digest)
        except oci_errors.OCIError:
            store.path(digest).unlink(missing_ok=True)
    download_blob(client, repo, digest, manifest.config.size, store)
    return store.read_bytes(digest)


def _check_platform(config: ImageConfig, platform: str, reference: str) -> None:
    want = Platform.parse(platform).normalized()
    have = config.platform.normalized()
    if want[:2] != have[:2]:
        raise ConfigError(f"image.base: {redact_userinfo(reference)!r}: is for {config.platform}, not {platform}; "
                          "choose a base for that platform or change image.platforms")


def _local_base(reference: str, platforms: Sequence[str], state: ProjectState) -> dict[str, BaseState]:
    from compose_kfp.oci.layout import OCILayout, read_docker_archive, read_docker_dir

    out: dict[str, BaseState] = {}
    for p in platforms:
        try:
            if reference.startswith("oci:"):
                body = reference[4:]
                path, tag = body, None
                if ":" in body and not (state.root / body).exists():
                    path, _, tag = body.rpartition(":")
                path = str((state.root / path).resolve())
                layout = OCILayout.open(path)
                img = layout.read_image(tag, platform=p)
                store, flat, top = str(layout.path), False, None
            elif reference.startswith("dir:"):
                path = str((state.root / reference[4:]).resolve())
                img = read_docker_dir(path, platform=p)
                store, flat, top = path, True, None
            else:
                path = str((state.root / reference[len("docker-archive:"):]).resolve())
                img = _docker_archive(path, state)
                store, flat, top = str(state.dir), False, None
        except OSError as e:
            raise ConfigError(f"image.base: {redact_userinfo(reference)!r}: cannot read it: {e}") from None
        _check_platform(img.config, p, reference)
        out[p] = BaseState(reference, p, digest=img.digest, top_digest=top.digest if top else img.digest,
                           manifest=img.manifest.raw_bytes().decode(), config=img.config.raw_bytes().decode(),
                           local_store=store, local_flat=flat)
    return out


def docker_archive_key(path: str) -> str | None:
    """The ``cache/archives`` key (64 hex) of the ``docker save`` archive at ``path`` (absolute) as it is now:
    sha256 of its path, size, mtime (ns) and inode, so a rewritten archive gets a new key. ``None`` when the
    file cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode()).hexdigest()


def _docker_archive(path: str, state: ProjectState) -> Any:
    """A ``docker save`` archive imported into the project's blob store, once per archive version.

    Importing compresses every layer, so the resulting manifest is remembered under a key of the
    archive's path, size, mtime and inode (``cache/archives``); later plans read it back when its
    blobs are still in the store.
    """
    from compose_kfp.oci.layout import LocalImage, read_docker_archive

    key = docker_archive_key(path)
    if key is None:
        raise ConfigError(f"image.base: 'docker-archive:{path}': no such file") from None
    record = state.dir / "cache" / "archives" / f"{key}.json"
    store = state.store
    try:
        raw = record.read_bytes()
        manifest = Manifest.from_bytes(raw)
        if all(store.has(d.digest) for d in [manifest.config, *manifest.layers]):
            config = ImageConfig.from_bytes(store.read_bytes(manifest.config.digest), manifest.config.media_type)
            return LocalImage(manifest, config, store, manifest.descriptor(), path)
    except (OSError, oci_errors.OCIError):
        pass
    img = read_docker_archive(path, store)
    atomic_write(record, img.manifest.raw_bytes())
    return img


# --------------------------------------------------------------------------- layers


def layer_plan(spec: LayerSpec, compression: str, root: Path) -> LayerPlan:
    """The :class:`LayerPlan` of a ``runtime``/``paths``/``rootfs`` layer (``lstat`` only).

    ``root`` is the project folder: ``.kfpignore`` is read there. ``spec.exclude`` (what compose-kfp writes
    below the sources: the output folder, ``kfp.lock``, ``.compose-kfp``) is left out.

    Raises:
        BuildError: a source is missing or unusable (the message names the kfp.toml key).
    """
    try:
        if spec.kind == "runtime":
            return plan_layer((), files=dict(spec.files), default_ignores=False, use_ignore_file=False,
                              compression=compression)
        if spec.kind == "rootfs":
            return plan_layer([(spec.rootfs, "/")], rootfs=True, ignore=spec.ignore, compression=compression,
                              exclude=spec.exclude)
        if spec.kind == "paths":
            return plan_layer(list(spec.includes), context=root, ignore=spec.ignore, compression=compression,
                              exclude=spec.exclude)
    except oci_errors.LayerError as e:
        raise BuildError(f"{spec.where}: layer {spec.name!r}: {e}") from None
    raise BuildError(f"{spec.where}: layer kind {spec.kind!r} has no file plan")


def input_fingerprint(spec: LayerSpec, compression: str, root: Path) -> str | None:
    """A cheap fingerprint of everything :func:`layer_plan` reads for a ``paths``/``rootfs`` layer, or ``None``
    for other kinds.

    sha256 over the layer options (kind, sources and destinations, ignore patterns, compression,
    ``SOURCE_DATE_EPOCH``, the tar format version and gzip implementation), the content of
    ``<root>/.kfpignore``, and the ``lstat`` fields (mode, size, mtime_ns, inode, links, owner) of every
    entry under each source, ignored ones included. Equal fingerprints mean :func:`layer_plan` would give the
    same key, so the (slower) plan can be skipped: one ``stat`` per file, no ignore matching, no sorting of the
    whole tree. Any difference, even in an ignored file, only means the full plan runs. ``spec.exclude``
    (when not empty, it is one of the options) is not walked, so what ``apply`` writes there (kfp.lock, the
    output folder, ``.compose-kfp``) does not change the fingerprint.
    """
    from compose_kfp.oci import layer as layer_mod

    if spec.kind not in ("paths", "rootfs"):
        return None
    h = hashlib.sha256()
    options = {"kind": spec.kind, "includes": spec.includes, "rootfs": spec.rootfs,
               "ignore": spec.ignore, "compression": compression,
               "sde": os.environ.get("SOURCE_DATE_EPOCH"), "format": layer_mod.FORMAT_VERSION,
               "gzip": layer_mod.GZIP_IMPL, "root": str(root)}
    if spec.exclude:  # only then: the fingerprints of the other layers stay what they were
        options["exclude"] = spec.exclude
    h.update(json.dumps(options, sort_keys=True).encode())
    excluded = frozenset(spec.exclude)
    try:
        h.update((root / layer_mod.IGNORE_FILE).read_bytes())
    except OSError:
        h.update(b"\0no-ignore-file")
    sources = [spec.rootfs] if spec.kind == "rootfs" else [src for src, _ in spec.includes]
    for src in sources:
        real = os.path.realpath(src or "")
        if real in excluded:
            continue
        try:
            st = os.stat(real)
        except OSError:
            return None
        h.update(f"\n{real}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
        if not os.path.isdir(real):
            continue
        stack = [real]
        while stack:
            d = stack.pop()
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                return None
            parts = []
            for de in entries:
                if de.path in excluded:
                    continue
                est = de.stat(follow_symlinks=False)
                parts.append(f"{de.path}\0{est.st_mode}\0{est.st_size}\0{est.st_mtime_ns}\0{est.st_ino}\0"
                             f"{est.st_nlink}\0{est.st_uid}\0{est.st_gid}\n")
                if de.is_dir(follow_symlinks=False):
                    stack.append(de.path)
            h.update("".join(parts).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def file_stamps(plan: LayerPlan) -> tuple[tuple[str, int, int], ...]:
    """``(path, size, mtime_ns)`` of the regular files of ``plan``, in tar order."""
    return tuple((e.path, e.size, e.stamp[0]) for e in plan.entries if e.kind == "file")


def deps_target(image: ImageSpec, platform: str, base: BaseState, where: str) -> DepsTarget:
    """The :class:`~compose_kfp.build.requirements.DepsTarget` of ``image`` on ``platform`` (Python from the base
    config)."""
    env = None
    if base.config:
        cfg = ImageConfig.from_bytes(base.config.encode())
        env = cfg.config.env if cfg.config else None
    python = resolve_python_version(image.python, env, source=where)
    plat = "/".join(platform.split("/")[:2]) if platform.startswith("linux/arm64") else platform
    return DepsTarget(platform=plat, python=python, libc=image.libc, index_url=image.index_url,
                               extra_index_urls=image.extra_index_urls)


def _media_type(compression: str) -> str:
    return "application/vnd.oci.image.layer.v1.tar+zstd" if compression == "zstd" \
        else "application/vnd.oci.image.layer.v1.tar+gzip"


def observe_layers(images: Sequence[ImageSpec], bases: Mapping[str, BaseState], state: ProjectState, *,
                   lock: Mapping[str, Any] | None = None, installer: Any = None,
                   progress: Progress | None = None, where: str = "kfp.toml",
                   streams: StreamedUploads | None = None,
                   ) -> dict[tuple[str, str], tuple[LayerState, ...]]:
    """Observe every layer of every image and platform (module docstring, "Layers").

    ``streams`` (``apply`` uploading while building; ``plan`` passes none): each layer that must be built also
    goes to ``streams.sink_for(key)`` (:class:`~compose_kfp.build.destination.StreamedUploads`) as it is
    compressed.

    ``paths``/``rootfs``/``runtime`` layers do not depend on the platform and are
    planned and (on a cache miss) built once. An unchanged layer is recognised from its input fingerprint
    (``lstat`` only) on the calling thread; when two or more ``paths``/``rootfs`` layers are not recognised, they
    are planned and built on two threads (no thread is started otherwise).
    """
    store, cache = state.store, state.layer_cache
    file_layers: dict[tuple[str, str], LayerSpec] = {}
    for image in images:
        for spec in image.layers:
            if spec.kind != "requirements":
                file_layers.setdefault((spec.name, image.compression), spec)
    results: dict[tuple[str, str], LayerState] = {}

    def recognised(spec: LayerSpec, compression: str) -> tuple[str | None, LayerState | None]:
        """The input fingerprint and, when the layer cache knows it, the layer's state (stat only, no reads)."""
        fp = input_fingerprint(spec, compression, state.root)
        if fp is not None:
            key = state.fingerprint_key(fp)
            hit = cache.lookup(key, store) if key else None
            if hit is not None:
                # files are loaded later, only if a reason must name them
                return fp, LayerState(spec.name, spec.kind, key, hit.digest,  # type: ignore[arg-type]
                                      hit.diff_id, hit.size, hit.media_type, True)
        return fp, None

    def one(item: tuple[tuple[str, str], tuple[LayerSpec, str | None]]) -> tuple[tuple[str, str], LayerState]:
        (name, compression), (spec, fp) = item
        lp = layer_plan(spec, compression, state.root)
        stamps = file_stamps(lp)
        hit = cache.lookup(lp.key, store)
        if hit is None:
            total = lp.content_bytes
            if progress:
                progress("build", spec.name, 0, total)
            layer = write_layer(lp, store, cache=cache,
                                progress=(lambda done, tot, n=spec.name: progress("build", n, done, tot))
                                if progress else None, sink=streams.sink_for(lp.key) if streams is not None else None)
            if progress:
                progress("build", spec.name, total, total)
                progress("built", f"{spec.name} {layer.digest}", layer.size, layer.size)
            state.record_files(layer.digest, stamps)
        else:
            layer = hit
        if fp is not None:
            state.record_fingerprint(fp, lp.key)
        return (name, compression), LayerState(spec.name, spec.kind, lp.key, layer.digest, layer.diff_id,
                                               layer.size, layer.media_type, True, stamps)

    # Recognising an unchanged layer is one lstat per file: done here, in order, without starting a thread.
    # Only the layers it does not recognise are planned (and built when the cache misses), two at a time.
    unknown: dict[tuple[str, str], tuple[LayerSpec, str | None]] = {}
    for (name, compression), spec in file_layers.items():
        fp, known = recognised(spec, compression)
        if known is not None:
            results[(name, compression)] = known
        else:
            unknown[(name, compression)] = (spec, fp)
    # The runtime layer (a few files from memory, normally in the cache) and a single changed layer are planned
    # on this thread; a thread pool only when two or more layers may have to be read from disk.
    from_disk = [item for item in unknown.items() if item[1][0].kind != "runtime"]
    inline = [item for item in unknown.items() if item[1][0].kind == "runtime" or len(from_disk) < 2]
    for item in inline:
        key, value = one(item)
        results[key] = value
    if len(from_disk) >= 2:
        results.update(map_in_threads(one, from_disk, workers=2, name="observe-layer"))
    results = {key: results[key] for key in file_layers}  # in kfp.toml's order, as before

    locked_deps = _locked_deps(lock)
    out: dict[tuple[str, str], tuple[LayerState, ...]] = {}
    deps_cache = state.deps_cache
    for image in images:
        for platform in image.platforms:
            layers: list[LayerState] = []
            for spec in image.layers:
                if spec.kind != "requirements":
                    layers.append(results[(spec.name, image.compression)])
                    continue
                if installer is None:
                    installer = deps_mod.find_installer()
                target = deps_target(image, platform, bases[platform], where)
                if not Path(spec.requirements or "").is_file():
                    raise ConfigError(f"{where}: {spec.where}: {spec.requirements} does not exist")
                key = requirements_key(spec.requirements, target, installer.label)
                hit = deps_cache.lookup(key, store)
                mt = _media_type(image.compression)
                if hit is not None:
                    layers.append(LayerState(spec.name, spec.kind, key, hit.digest, hit.diff_id, hit.size,
                                             hit.media_type, True))
                elif key in locked_deps:
                    d = locked_deps[key]
                    layers.append(LayerState(spec.name, spec.kind, key, d["digest"], d["diff_id"], d["size"],
                                             d.get("media_type", mt), False, note="locked"))
                else:
                    layers.append(LayerState(spec.name, spec.kind, key, None, None, None, mt, False,
                                             note="requirements changed"))
            out[(image.name, platform)] = tuple(layers)
    return out


def _locked_deps(lock: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for image in (lock or {}).get("images", {}).values():
        for plat in image.get("platforms", {}).values():
            for layer in plat.get("layers", []):
                if str(layer.get("key", "")).startswith("sha256:") and layer.get("digest"):
                    found[layer["key"]] = layer
    return found


# --------------------------------------------------------------------------- destination


def _platform_state_from_manifest(manifest: Manifest, bases: Mapping[str, tuple[str, ...]],
                                  locked: Mapping[str, Any] | None) -> PlatformImageState:
    """The current image's state from its manifest; ``bases``: observed base manifest digest -> its layer digests.

    How many layers are the base's, in order of trust: the ``io.compose-kfp.base-layers`` annotation;
    kfp.lock when it records this manifest; the observed base when the manifest names its digest or starts
    with its layers; else the layers below the first one carrying a layer-name annotation (a base built by
    compose-kfp has annotated layers too, so this is last)."""
    notes = manifest.annotations or {}
    base_digest = notes.get(ANNOTATION_BASE_DIGEST)
    n_base: int | None = None
    if (notes.get(BASE_LAYERS_ANNOTATION) or "").isdigit():
        n_base = int(notes[BASE_LAYERS_ANNOTATION])
    elif locked and locked.get("manifest") == manifest.digest and "base_layers" in locked:
        n_base = int(locked["base_layers"])
    elif base_digest and base_digest in bases:
        n_base = len(bases[base_digest])
    elif any(tuple(d.digest for d in manifest.layers[:len(b)]) == b for b in bases.values() if b):
        n_base = max(len(b) for b in bases.values() if b and tuple(d.digest for d in manifest.layers[:len(b)]) == b)
    else:
        annotated = [i for i, d in enumerate(manifest.layers) if (d.annotations or {}).get(LAYER_NAME_ANNOTATION)]
        n_base = annotated[0] if annotated else 0
    n_base = max(0, min(n_base, len(manifest.layers)))
    layers = tuple(((d.annotations or {}).get(LAYER_NAME_ANNOTATION), d.digest, d.size)
                   for d in manifest.layers[n_base:])
    return PlatformImageState(manifest=manifest.digest, config=manifest.config.digest, base=base_digest,
                              layers=layers, base_layers=n_base)


def _platform_state_from_lock(entry: Mapping[str, Any]) -> PlatformImageState:
    return PlatformImageState(manifest=entry.get("manifest", ""), config=entry.get("config", ""),
                              base=entry.get("base"),
                              layers=tuple((ly.get("name"), ly.get("digest"), int(ly.get("size", 0)))
                                           for ly in entry.get("layers", [])),
                              base_layers=int(entry.get("base_layers", 0)))


def observe_current(image: ImageSpec, dest: Destination, lock: Mapping[str, Any] | None,
                    base_layers: Mapping[str, tuple[str, ...]]) -> CurrentImage:
    """Find the image at the destination: kfp.lock's digest first, else the first ``image.tags`` entry."""
    locked = ((lock or {}).get("images") or {}).get(image.name)
    if locked and locked.get("repository") != image.repository:
        locked = None
    ref, source = None, ""
    if locked and locked.get("digest"):
        ref, source = locked["digest"], "lock"
    elif image.tags:
        ref, source = image.tags[0], f"tag:{image.tags[0]}"
    if ref is None:
        return CurrentImage()
    got = dest.get_manifest(ref)
    if got is None:
        if source == "lock":
            plats = {p: _platform_state_from_lock(e) for p, e in (locked.get("platforms") or {}).items()}
            return CurrentImage(digest=ref, source=source, exists=False, platforms=plats)
        return CurrentImage()
    raw, mt, digest = got
    doc = parse_manifest(raw, mt or None)
    locked_plats = (locked or {}).get("platforms") or {}
    plats: dict[str, PlatformImageState] = {}
    if isinstance(doc, Index):
        for desc in doc.manifests:
            if desc.platform is None or desc.media_type not in (
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"):
                continue
            sub = dest.get_manifest(desc.digest)
            if sub is None:
                continue
            m = Manifest.from_bytes(sub[0], desc.media_type)
            key = _match_platform(str(desc.platform), image.platforms)
            plats[key] = _name_layers(_platform_state_from_manifest(m, base_layers, locked_plats.get(key)),
                                      locked_plats.get(key), image)
    else:
        key = image.platforms[0]
        plats[key] = _name_layers(_platform_state_from_manifest(doc, base_layers, locked_plats.get(key)),
                                  locked_plats.get(key), image)
    return CurrentImage(digest=digest, source=source, exists=True, platforms=plats)


def _name_layers(found: PlatformImageState, locked: Mapping[str, Any] | None, image: ImageSpec) -> PlatformImageState:
    """Layer names for a manifest without ``io.compose-kfp.layer`` annotations (Docker v2.2 manifests have
    none): from kfp.lock when it records this very manifest, else by position when the layer count matches."""
    if all(name for name, _, _ in found.layers):
        return found
    names: list[str | None] | None = None
    if locked and locked.get("manifest") == found.manifest:
        names = [ly.get("name") for ly in locked.get("layers", [])]
    elif len(found.layers) == len(image.layers):
        names = [spec.name for spec in image.layers]
    if names is None or len(names) != len(found.layers):
        return found
    layers = tuple((name or n, digest, size) for (name, digest, size), n in zip(found.layers, names))
    return dataclasses.replace(found, layers=layers)


def _match_platform(found: str, wanted: Sequence[str]) -> str:
    norm = Platform.parse(found).normalized()
    for w in wanted:
        if Platform.parse(w).normalized() == norm:
            return w
    return found


# --------------------------------------------------------------------------- rendered files


def observe_rendered(output_dir: Path, root: Path) -> dict[str, str]:
    """sha256 hex of every file under ``output_dir``, by path relative to ``root`` (POSIX)."""
    out: dict[str, str] = {}
    if not output_dir.is_dir():
        return out
    for path in sorted(output_dir.rglob("*")):
        if path.is_file() and not path.name.startswith(".tmp-"):
            rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# --------------------------------------------------------------------------- all together


def observe(images: Sequence[ImageSpec], root: Path, *, registries: Registries, lock: Mapping[str, Any] | None = None,
            frozen: bool = False, output_dir: Path | None = None, installer: Any = None,
            progress: Progress | None = None, where: str = "kfp.toml",
            streams: StreamedUploads | None = None) -> Observed:
    """Read everything :func:`compose_kfp.planner.plan` needs (module docstring).

    Args:
        images: from :func:`compose_kfp.build.images.desired_images` (all share base, repository and platforms).
        root: the project folder.
        registries: registry clients.
        lock: the parsed ``kfp.lock`` or ``None``.
        frozen: use the locked base digests instead of resolving the base tag.
        output_dir: ``render.output_dir`` (absolute), for the rendered files on disk.
        installer: the requirements installer (default :func:`compose_kfp.build.deps.find_installer`, found lazily).
        progress: ``(event, name, done, total)`` callback; events ``build`` (layer built into the local store).
        streams: see :func:`observe_layers` (``apply`` only). The blobs it uploaded count as missing from the
            destination, as they were before this command: the plan shows what the command sends.

    Raises:
        ConfigError, BuildError, RegistryError, AuthError: as the reads fail; nothing is written but the
        local, content-addressed cache (and, with ``streams``, the layers being uploaded). A registry error while reading the base or the destination starts
        with the kfp.toml key that names that registry (``image.base: '...': cannot reach ...``).
    """
    if not images:
        raise ConfigError(f"{where}: no image to build")
    first = images[0]
    state = ProjectState(Path(root))
    locked_bases = None
    if frozen and lock:
        base_entry = lock.get("base") or {}
        if base_entry.get("reference") == first.base:
            locked_bases = {p: e.get("digest") for p, e in (base_entry.get("platforms") or {}).items()}
    bases = resolve_base(first.base, first.platforms, registries, state, locked=locked_bases)  # errors: base_error
    key = None  # which kfp.toml key names the registry being read
    try:
        layers = observe_layers(images, bases, state, lock=lock, installer=installer, progress=progress, where=where,
                                streams=streams)
        warnings = requirements_warnings(images, state.root)
        key = f"image.repository: {redact_userinfo(first.repository)!r}"
        dest = destination_for(first.repository, state.root, registries)
        counts = {b.digest: tuple(d for d, _, _ in b.layers) for b in bases.values() if b.digest}
        current = {image.name: observe_current(image, dest, lock, counts) for image in images}
        wanted: set[str] = set()
        for (name, platform), states in layers.items():
            wanted.update(s.digest for s in states if s.digest)
            wanted.update(d for d, _, _ in bases[platform].layers)
        for cur in current.values():
            for p in cur.platforms.values():
                wanted.add(p.config)
        # Blobs a manifest in the destination references are there (a registry accepts a manifest only
        # when its blobs are): no HEAD needed for them.
        known = set()
        for cur in current.values():
            if cur.exists:
                for p in cur.platforms.values():
                    known.add(p.config)
                    known.update(digest for _, digest, _ in p.layers)
                    if p.base and p.base_layers:
                        known.update(_base_digests_of(cur, p, bases))
        sent_now = set(streams.pushed) if streams is not None else set()
        present = frozenset(d for d in sorted(wanted) if d not in sent_now and (d in known or dest.has_blob(d)))
        tags: dict[str, str | None] = {}
        for image in images:
            for tag in image.tags:
                if tag not in tags:
                    tags[tag] = dest.tag_digest(tag)
        desired_digests = {s.digest for states in layers.values() for s in states if s.digest}
        records = {}
        for cur in current.values():
            for p in cur.platforms.values():
                for _, digest, _ in p.layers:
                    if digest and digest not in desired_digests and digest not in records:
                        rec = state.files_of(digest)
                        if rec is not None:
                            records[digest] = rec
        layers = _with_reason_files(layers, current, state)
        # A requirements layer known only from kfp.lock is usable only if the destination has its blob.
        layers = {k: tuple(dataclasses.replace(s, digest=None, diff_id=None, size=None,
                                               note="to be installed (not built on this machine)")
                           if s.note == "locked" and s.digest not in present else s for s in v)
                  for k, v in layers.items()}
        base0 = next(iter(bases.values()))
        same = base0.registry is not None and base0.registry == dest.host  # a layout has no host
        rendered = observe_rendered(output_dir, state.root) if output_dir is not None else {}
    except oci_errors.DistributionError as e:
        raise from_oci(e, key) from None
    return Observed(bases=bases, layers=layers, current=current, remote_blobs=present, tags=tags,
                    file_records=records, rendered=rendered, same_registry=same, warnings=warnings)


def requirements_warnings(images: Sequence[ImageSpec], root: Path) -> tuple[str, ...]:
    """:func:`compose_kfp.build.requirements.reproducibility_warnings` of every requirements file the images'
    layers name (each file once, in image and layer order; duplicate messages dropped), with paths under ``root``
    shown relative to it. Reads files only.

    Raises:
        ConfigError: a requirements file (or one it includes) cannot be read.
    """
    seen: set[str] = set()
    out: list[str] = []
    prefix = str(Path(root).resolve()) + os.sep
    for image in images:
        for spec in image.layers:
            if spec.kind != "requirements" or not spec.requirements or spec.requirements in seen:
                continue
            seen.add(spec.requirements)
            for message in reproducibility_warnings(spec.requirements):
                message = message.removeprefix(prefix)
                if message not in out:
                    out.append(message)
    return tuple(out)


def _with_reason_files(layers: Mapping[tuple[str, str], tuple[LayerState, ...]], current: Mapping[str, CurrentImage],
                       state: ProjectState) -> dict[tuple[str, str], tuple[LayerState, ...]]:
    """Fill ``files`` of layers recognised by fingerprint whose digest differs from the current image's layer
    of the same name (their reason names files), from the records written when they were built."""
    out = {}
    for (image, platform), states in layers.items():
        cur = current.get(image)
        plat = cur.platforms.get(platform) if cur else None
        before = {name: digest for name, digest, _ in (plat.layers if plat else ())}
        fixed = []
        for s in states:
            if not s.files and s.digest and s.kind in ("paths", "rootfs") and before.get(s.name) not in (None, s.digest):
                s = dataclasses.replace(s, files=state.files_of(s.digest) or ())
            fixed.append(s)
        out[(image, platform)] = tuple(fixed)
    return out


def _base_digests_of(cur: CurrentImage, p: PlatformImageState, bases: Mapping[str, BaseState]) -> set[str]:
    """Base layer digests of the current image, when its base is the one observed now (else unknown)."""
    for b in bases.values():
        if b.digest == p.base:
            return {d for d, _, _ in b.layers}
    return set()


__all__ = ["deps_target", "file_stamps", "input_fingerprint", "layer_plan", "observe", "observe_current",
           "observe_layers", "observe_rendered", "requirements_warnings", "resolve_base"]
