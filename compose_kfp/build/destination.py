"""The destination of the images: a registry repository or an OCI image layout (``repository = "oci:PATH"``).

:func:`destination_for` returns a :class:`Destination` for ``image.repository``: a
:class:`RegistryDestination` (``registry/repository``: the distribution API through a
:class:`~compose_kfp.build.registries.Registries` client) or a :class:`LayoutDestination`
(``oci:PATH``: an OCI image layout folder, relative paths against the project folder). Both
answer the same reads (observation: blobs present, manifests, tags) and the same writes (apply:
:meth:`Destination.write_image`, :meth:`Destination.check_tags`); no other module looks at the form
of ``image.repository``.
"""

from __future__ import annotations

import abc
import concurrent.futures
import errno
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from compose_kfp import planner as planner_mod
from compose_kfp.build.credentials import keychain_for
from compose_kfp.build.registries import Registries, download_blob, registry_ref
from compose_kfp.build.statedir import ProjectState
from compose_kfp.errors import ConfigError, RegistryError, StaleError
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.image import ACCEPT_MANIFESTS, ImageConfig, Manifest
from compose_kfp.oci.layer import Layer, LayerCache, LayerSink
from compose_kfp.planner import ImagePlan, LayerChange, PlatformPlan

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project

#: Progress callback: ``(event, name or digest, done bytes, total bytes)``; events ``upload`` / ``mount`` /
#: ``present`` / ``copy`` (name = blob digest).
Progress = Callable[[str, str, int, int], None]

#: The prefix of an ``image.repository`` that is an OCI image layout folder.
LAYOUT_PREFIX = "oci:"


def destination_host(repository: str) -> str | None:
    """The registry host (``host[:port]``) ``image.repository`` pushes to, or ``None`` for an ``oci:PATH`` layout.

    Raises:
        InvalidReference (:mod:`compose_kfp.oci.errors`): a registry repository that is not a valid reference.
    """
    return None if repository.startswith(LAYOUT_PREFIX) else registry_ref(repository).api_host


def registries_for(project: Project) -> Registries:
    """Registry clients with the project's ``[image.auth]`` keychain and ``image.insecure`` setting.

    Credentials from environment variables (``username_env`` / ``password_env``) go to the destination's
    registry host only (:func:`destination_host`; none for an ``oci:PATH`` layout).

    Raises:
        ConfigError: ``[image.auth]`` is inconsistent (:func:`~compose_kfp.build.credentials.keychain_for`).
    """
    image = project.manifest.image
    host = destination_host(image.repository)
    return Registries(keychain_for(image.auth, project.root, host), insecure=True if image.insecure else None)


class Destination(abc.ABC):
    """Where the images of a project go: what is there already (observation) and how an image is written (apply).

    Attributes:
        repository: ``image.repository`` as written.
        host: the registry host (``host[:port]``) for a registry repository, ``None`` for a layout.
    """

    repository: str
    host: str | None = None
    #: Layers reach the destination only by :meth:`write_image` copying them from the project's blob store, so
    #: apply must have every layer of the image there (a layout); else only the layers the plan sends.
    copies_every_layer: bool = False
    #: Layers can be sent while others still build (:class:`EarlyUploads`).
    uploads_early: bool = False

    @abc.abstractmethod
    def has_blob(self, digest: str) -> bool:
        """Whether the destination holds blob ``digest`` (``sha256:<hex>``)."""

    @abc.abstractmethod
    def get_manifest(self, ref: str) -> tuple[bytes, str, str] | None:
        """``(raw bytes, media type or "", digest)`` of the manifest or index ``ref`` (a tag or a digest) names,
        or ``None`` when there is none. Raises DistributionError / Unauthorized (registry) on other failures."""

    @abc.abstractmethod
    def tag_digest(self, tag: str) -> str | None:
        """The digest tag ``tag`` points at, or ``None`` when the tag does not exist."""

    @abc.abstractmethod
    def check_tags(self, ip: ImagePlan) -> None:
        """Refuse ``ip`` when a tag it was planned on moved since the plan was made.

        Raises:
            StaleError: names the tag, what the plan saw and what is there now.
        """

    @abc.abstractmethod
    def write_image(self, ip: ImagePlan, state: ProjectState, rec: Recorder, progress: Progress | None,
                    pushed: set[str]) -> None:
        """Write image ``ip`` (every digest resolved by apply): the blobs the destination lacks (layers from the
        project's blob store, base layers mounted, copied or fetched), the config, each platform's manifest, the
        index for several platforms, and the tags last, so a tag never names an incomplete image. What was sent
        goes into ``rec``; ``pushed``: digests already sent during this apply (added to).

        Raises:
            DistributionError / Unauthorized (registry), LayoutError (layout), RegistryError (a base layer
            is available nowhere).
        """


class RegistryDestination(Destination):
    """A repository in a registry (distribution API), read and written through ``registries``."""

    uploads_early = True

    def __init__(self, repository: str, registries: Registries):
        self.repository = repository
        ref = registry_ref(repository)
        self.host, self.repo = ref.api_host, ref.repository
        self.registries = registries
        self.client = registries.client(self.host)

    def has_blob(self, digest: str) -> bool:
        return self.client.blob_exists(self.repo, digest)

    def get_manifest(self, ref: str) -> tuple[bytes, str, str] | None:
        try:
            return self.client.get_manifest(self.repo, ref, ACCEPT_MANIFESTS)
        except oci_errors.NotFound:
            return None

    def tag_digest(self, tag: str) -> str | None:
        head = self.client.head_manifest(self.repo, tag, ACCEPT_MANIFESTS)
        return head[1] if head else None

    def check_tags(self, ip: ImagePlan) -> None:
        client = self.client
        if ip.before_source.startswith("tag:"):
            tag = ip.before_source[4:]
            head = client.head_manifest(self.repo, tag, ACCEPT_MANIFESTS)
            now = head[1] if head else None
            if now != ip.before:
                raise StaleError(f"{ip.repository}:{tag} moved since the plan was made (planned on "
                                 f"{ip.before or 'nothing'}, now {now or 'absent'}); run `compose-kfp plan` again.")
        for tag, seen in ip.observed_tags:
            head = client.head_manifest(self.repo, tag, ACCEPT_MANIFESTS)
            now = head[1] if head else None
            if now != seen:
                raise StaleError(f"{ip.repository}:{tag} moved since the plan was made (it was "
                                 f"{seen or 'absent'}, now {now or 'absent'}); run `compose-kfp plan` again.")

    def write_image(self, ip: ImagePlan, state: ProjectState, rec: Recorder, progress: Progress | None,
                    pushed: set[str]) -> None:
        """Distribution spec, per blob: ``HEAD`` -> mount from the base repository when it is in this registry ->
        upload (three at a time); then the config, each manifest by digest, the index, and the tags."""
        from compose_kfp.oci.registry import BytesBlob, FileBlob  # lazy: requests is only needed to push

        client, repo, registries = self.client, self.repo, self.registries
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
                mount = [base_repo] if base_host == self.host and base_repo else []
                jobs.append((_LazyBase(pp, d.digest, d.size, state, registries, progress), mount))

            def send(job: tuple[Any, list[str]]) -> None:
                _send_blob(client, repo, job[0], job[1], rec, pushed, progress)

            map_in_threads(send, jobs, workers=3, name="push")
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


class LayoutDestination(Destination):
    """An OCI image layout folder (``oci:PATH``); it may not exist yet (then it holds nothing). ``registries``
    serve base layers a registry base must provide."""

    copies_every_layer = True

    def __init__(self, repository: str, root: Path, registries: Registries):
        from compose_kfp.oci.layout import OCILayout

        self.repository = repository
        self.registries = registries
        self.path = layout_path(repository, root)
        self.layout = OCILayout(self.path) if (self.path / "oci-layout").is_file() else None

    def has_blob(self, digest: str) -> bool:
        return self.layout is not None and self.layout.store.has(digest)

    def get_manifest(self, ref: str) -> tuple[bytes, str, str] | None:
        if self.layout is None:
            return None
        if ref.startswith("sha256:"):
            if not self.layout.store.has(ref):
                return None
            raw = self.layout.store.read_bytes(ref)
            return raw, "", ref
        desc = self.layout.tags().get(ref)
        if desc is None:
            return None
        return self.layout.store.read_bytes(desc.digest), desc.media_type, desc.digest

    def tag_digest(self, tag: str) -> str | None:
        if self.layout is None:
            return None
        desc = self.layout.tags().get(tag)
        return desc.digest if desc else None

    def check_tags(self, ip: ImagePlan) -> None:
        """A layout is this machine's own folder: its tags are not re-checked."""

    def write_image(self, ip: ImagePlan, state: ProjectState, rec: Recorder, progress: Progress | None,
                    pushed: set[str]) -> None:
        """The layout is created if needed; blobs are copied from the project's blob store (base layers from the
        local base or fetched), then ``index.json`` names the image once everything is in place.

        Raises:
            RegistryError: also for a file-system error in the layout folder (a full disk said as such: "no
                space left on device"); ``index.json`` is written last, so no tag names a partial image.
        """
        tagged = len(rec.tags)
        try:
            self._write_image(ip, state, rec, progress, pushed)
        except OSError as e:
            where = e.filename or self.path
            what = (f"no space left on device writing {where}: free some space" if e.errno in
                    (errno.ENOSPC, errno.EDQUOT) else f"cannot write {where}: {e.strerror or e}")
            done = rec.tags[tagged:]
            raise RegistryError(f"image.repository ({ip.repository}): {what}. " + (
                f"Tagged before the failure (each names a complete image): {', '.join(done)}." if done else
                "No tag of this image was written.")) from None

    def _write_image(self, ip: ImagePlan, state: ProjectState, rec: Recorder, progress: Progress | None,
                     pushed: set[str]) -> None:
        from compose_kfp.oci.blobs import BlobStore
        from compose_kfp.oci.layout import OCILayout

        registries = self.registries
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


def layout_path(repository: str, root: Path) -> Path:
    """The folder of an ``oci:PATH`` destination, relative paths against the project ``root``, symlinks resolved.

    A ``PATH`` written inside the project must stay inside it once symlinks are followed: ``build/image``
    being a link to ``/elsewhere`` would make apply write the image layout there (a ``PATH`` written outside
    the project, ``oci:../images`` or ``oci:/srv/images``, is taken as the user wrote it).

    Raises:
        ConfigError: names ``image.repository``, the path and where its symlink leads.
    """
    written = Path(os.path.abspath(root / repository[len(LAYOUT_PREFIX):]))
    real = written.resolve()
    top = Path(os.path.abspath(root))
    if written.is_relative_to(top) and not real.is_relative_to(top.resolve()):
        raise ConfigError(f"image.repository = {repository!r}: {written.relative_to(top)} leads to {real} through a "
                          "symlink, outside the project folder; remove the symlink, or write the layout's path "
                          "outside the project on purpose (oci:/absolute/path).")
    return real


def destination_for(repository: str, root: Path, registries: Registries) -> Destination:
    """The :class:`Destination` ``image.repository`` names: a :class:`LayoutDestination` for ``oci:PATH``, else a
    :class:`RegistryDestination` (its client is made now; nothing is sent yet).

    Raises:
        InvalidReference (:mod:`compose_kfp.oci.errors`): a registry repository that is not a valid reference.
    """
    if repository.startswith(LAYOUT_PREFIX):
        return LayoutDestination(repository, root, registries)
    return RegistryDestination(repository, registries)


# --------------------------------------------------------------------------- sending


def map_in_threads(fn: Callable[[Any], Any], items: Sequence[Any], *, workers: int, name: str) -> list[Any]:
    """``[fn(item) for item in items]`` on a pool of ``workers`` threads named ``name-N``, results in order; the first
    failure is raised once the running calls end. On Ctrl-C the running calls are not waited for (a blob being
    sent, a layer being built): ``cli.main`` ends the process."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        results = [fut.result() for fut in [pool.submit(fn, item) for item in items]]
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results



class Recorder:
    """What was sent, filled while applying (thread-safe through :attr:`lock`): ``uploaded`` ``(digest, bytes)``,
    ``mounted`` digests, ``manifests`` digests and ``tags`` (``repository:tag``) in the order they were written,
    ``built`` names of the layers built."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.uploaded: list[tuple[str, int]] = []
        self.mounted: list[str] = []
        self.manifests: list[str] = []
        self.tags: list[str] = []
        self.built: list[str] = []


class EarlyUploads:
    """Uploads each freshly built layer while the next one builds (DESIGN: start uploading a layer as soon
    as it is finished). Only blobs go up early; manifests and tags still wait for every blob."""

    def __init__(self, rec: Recorder, pushed: set[str], progress: Progress | None):
        self.rec, self.pushed, self.progress = rec, pushed, progress
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.futures: list[concurrent.futures.Future] = []
        self.submitted: set[tuple[str, str]] = set()

    def submit(self, dest: RegistryDestination, layer: Layer) -> None:
        """Start sending ``layer`` to the registry repository ``dest`` in the background."""
        if (dest.repository, layer.digest) in self.submitted:
            return
        self.submitted.add((dest.repository, layer.digest))
        if self.pool is None:
            self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="early-push")
        self.futures.append(self.pool.submit(_send_blob, dest.client, dest.repo, layer, (), self.rec,
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


class StreamedUploads:
    """Layers sent to the destination registry while they are built (issue 17): ``apply`` without a question to
    ask plans with :meth:`sink_for` as the builder's sink, so each layer built is compressed, stored and
    uploaded in one pass, several at once (the builds run two at a time), instead of being built first and
    uploaded after. Only blobs go up early; config, manifests and tags still wait for every blob
    (:meth:`RegistryDestination.write_image`), so a failure leaves no tag on an incomplete image.

    :attr:`rec` and :attr:`pushed` record what was committed (for :func:`compose_kfp.build.apply.apply_plan`,
    which then does not send those blobs again); a stream that failed records nothing, and the blob is sent
    from the local store as before.
    """

    def __init__(self, dest: RegistryDestination, cache: LayerCache, progress: Progress | None = None):
        self.dest, self.cache, self.progress = dest, cache, progress
        self.rec = Recorder()
        self.pushed: set[str] = set()

    def sink_for(self, key: str) -> LayerSink | None:
        """A sink uploading the layer with cache key ``key`` as it is built, or ``None`` when nothing needs to
        be sent: the layer cache remembers the digest an earlier build with the same inputs gave (the blob
        has since left the local store) and the destination has that blob (one ``HEAD``)."""
        record = self.cache.get(key)
        if record is not None and self.dest.has_blob(record["digest"]):
            return None
        return _RecordedStream(self, self.dest.client.stream_upload(self.dest.repo))


class _RecordedStream:
    """A :class:`~compose_kfp.oci.registry.StreamUpload` whose commit is recorded in its :class:`StreamedUploads`."""

    def __init__(self, owner: StreamedUploads, stream: Any):
        self.owner, self.stream = owner, stream

    def write(self, data: bytes) -> None:
        self.stream.write(data)

    def abort(self) -> None:
        self.stream.abort()

    def finish(self, digest: str, size: int) -> None:
        self.stream.finish(digest, size)
        if not self.stream.committed:
            return
        owner = self.owner
        with owner.rec.lock:
            owner.rec.uploaded.append((digest, size))
            owner.pushed.add(digest)
        if owner.progress:
            owner.progress("upload", digest, size, size)


def streamed_uploads(repositories: Sequence[str], root: Path, registries: Registries, cache: LayerCache,
                     progress: Progress | None = None) -> StreamedUploads | None:
    """A :class:`StreamedUploads` when every image goes to the same registry repository, else ``None`` (an
    ``oci:`` layout destination, or images in several repositories: they are written as before)."""
    if len(set(repositories)) != 1:
        return None
    dest = destination_for(repositories[0], root, registries)
    return StreamedUploads(dest, cache, progress) if isinstance(dest, RegistryDestination) else None


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


def _send_blob(client: Any, repo: str, source: Any, mount: Sequence[str], rec: Recorder, pushed: set[str],
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


class _Known:
    """A planned layer's descriptor fields (digest, diff_id, size, media type) without its bytes, for assembling."""

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


__all__ = ["Destination", "EarlyUploads", "LAYOUT_PREFIX", "LayoutDestination", "Recorder", "RegistryDestination",
           "StreamedUploads", "destination_for", "destination_host", "layout_path", "map_in_threads", "registries_for",
           "streamed_uploads"]
