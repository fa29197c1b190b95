"""Images on local disk: OCI image layouts, skopeo ``dir:`` folders and ``docker save`` archives.

* :class:`OCILayout` reads and writes an OCI image layout (OCI image spec
  ``image-layout.md``): ``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``.
  Several tags share one layout (``org.opencontainers.image.ref.name``
  annotations on ``index.json`` entries) and share blobs. Writes are atomic:
  blobs go to a temporary file and are renamed into place, then ``index.json``
  is replaced by rename, last, under an ``flock`` on the layout folder, so a
  crash never leaves an index pointing at a missing or partial blob.
* :func:`read_docker_dir` reads the ``dir:`` format skopeo writes
  (``manifest.json``, ``version``, blobs named by their hex digest).
* :func:`read_docker_archive` imports a ``docker save`` archive (legacy
  ``manifest.json`` + ``<id>/layer.tar`` format, or the OCI-layout-inside form
  of Docker 25+) into a :class:`~compose_kfp.oci.blobs.BlobStore`.

Each reader returns a :class:`LocalImage` that :func:`compose_kfp.oci.image.append`
can extend and :meth:`OCILayout.write_image` can store (:meth:`OCILayout.write_index` stores several
platforms behind one image index).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from compose_kfp.oci.blobs import BlobStore, atomic_write
from compose_kfp.oci.digest import sha256_digest
from compose_kfp.oci.errors import DigestMismatch, ImageError, LayoutError
from compose_kfp.oci.image import (
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MAX_INDEX_DEPTH,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_INDEX,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_manifest,
    select_platform,
)
from compose_kfp.oci.layer import Layer, compress_tar

OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_VERSION = "1.0.0"
INDEX_FILE = "index.json"
DIR_VERSION = "Directory Transport Version: 1.1\n"


@dataclasses.dataclass(frozen=True)
class LocalImage:
    """An image whose manifest, config and blobs are on local disk.

    Attributes:
        manifest: the image manifest (raw bytes kept, so ``manifest.digest`` is the stored digest).
        config: its config.
        store: where the config and layer blobs are.
        descriptor: descriptor of the manifest as referenced (digest/size of its bytes).
        name: the tag or reference it was read by, if any.
    """

    manifest: Manifest
    config: ImageConfig
    store: BlobStore
    descriptor: Descriptor
    name: str | None = None

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def layers(self) -> list[Layer]:
        """The image's layers, base first, each with its diff_id from the config.

        Raises:
            ImageError: the manifest and config disagree on the number of layers.
        """
        diff_ids = self.config.rootfs.diff_ids
        if len(diff_ids) != len(self.manifest.layers):
            raise ImageError(f"manifest has {len(self.manifest.layers)} layers but config has {len(diff_ids)} diff_ids")
        store = self.store
        return [Layer(d.media_type, d.digest, diff, d.size, opener=(lambda dg=d.digest: store.open(dg)))
                for d, diff in zip(self.manifest.layers, diff_ids)]

    def blob_digests(self) -> list[str]:
        """Config digest, then layer digests (base first)."""
        return [self.manifest.config.digest] + [d.digest for d in self.manifest.layers]


def _read_image(store: BlobStore, manifest_raw: bytes, media_type: str | None, name: str | None,
                config_raw: bytes | None = None) -> LocalImage:
    manifest = Manifest.from_bytes(manifest_raw, media_type)
    if config_raw is None:
        config_raw = store.read_bytes(manifest.config.digest)
    elif sha256_digest(config_raw) != manifest.config.digest:
        raise DigestMismatch(f"config of {name or 'image'} does not match {manifest.config.digest}")
    config = ImageConfig.from_bytes(config_raw, manifest.config.media_type)
    desc = manifest.descriptor()
    return LocalImage(manifest, config, store, desc, name)


def _choose(items: Sequence[Any], tags_of: Any, tag: str | None, where: object) -> Any:
    """The item tagged ``tag`` (the last one wins), or the only item when ``tag`` is None. Raises LayoutError."""
    all_tags = [t for item in items for t in tags_of(item) if t]
    if tag is None:
        if len(items) != 1:
            raise LayoutError(f"{where} holds {len(items)} images; name one of the tags: "
                              f"{', '.join(all_tags) or 'none are tagged'}")
        return items[0]
    matches = [item for item in items if tag in tags_of(item)]
    if not matches:
        raise LayoutError(f"tag {tag!r} not found in {where}; tags: {', '.join(all_tags) or 'none'}")
    return matches[-1]


class OCILayout:
    """An OCI image layout directory (``image-layout.md``).

    Use :meth:`create` to make (or reuse) one for writing and :meth:`open` to
    read an existing one.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = pathlib.Path(path)
        self.store = BlobStore(self.path)

    def __repr__(self) -> str:
        return f"OCILayout({str(self.path)!r})"

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> OCILayout:
        """Create the layout (``oci-layout``, empty ``index.json``, ``blobs/sha256``) unless it exists.

        Raises:
            LayoutError: ``path`` exists and is a file, or an ``oci-layout`` file of another version.
        """
        p = pathlib.Path(path)
        if p.exists() and not p.is_dir():
            raise LayoutError(f"{p} exists and is not a folder")
        (p / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        layout = cls(p)
        if (p / OCI_LAYOUT_FILE).exists():
            layout._check_version()
        else:
            atomic_write(p / OCI_LAYOUT_FILE, json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode())
        if not (p / INDEX_FILE).exists():
            atomic_write(p / INDEX_FILE, Index(schema_version=2, media_type=MEDIA_TYPE_OCI_INDEX).to_bytes())
        return layout

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> OCILayout:
        """Open an existing layout. Raises LayoutError when ``path`` is not an OCI image layout."""
        layout = cls(path)
        if not (layout.path / OCI_LAYOUT_FILE).is_file():
            raise LayoutError(f"{layout.path} is not an OCI image layout: no {OCI_LAYOUT_FILE} file")
        layout._check_version()
        return layout

    def _check_version(self) -> None:
        try:
            version = json.loads((self.path / OCI_LAYOUT_FILE).read_bytes()).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            raise LayoutError(f"{self.path / OCI_LAYOUT_FILE} is not valid JSON") from None
        if version != OCI_LAYOUT_VERSION:
            raise LayoutError(f"{self.path}: unsupported imageLayoutVersion {version!r} (expected {OCI_LAYOUT_VERSION})")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- reading
    def index(self) -> Index:
        """The top-level ``index.json``. Raises LayoutError when missing, ImageError when malformed."""
        try:
            raw = (self.path / INDEX_FILE).read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.path} has no {INDEX_FILE}") from None
        return Index.from_bytes(raw, MEDIA_TYPE_OCI_INDEX)

    def tags(self) -> dict[str, Descriptor]:
        """``{ref.name: descriptor}`` of the tagged entries of ``index.json``, in index order."""
        out: dict[str, Descriptor] = {}
        for d in self.index().manifests:
            name = (d.annotations or {}).get(ANNOTATION_REF_NAME)
            if name:
                out[name] = d
        return out

    def resolve(self, tag: str | None = None, *, platform: str | Platform | None = None) -> Descriptor:
        """The image manifest descriptor for ``tag`` (or the only entry), following nested indexes.

        With ``platform``, the best match (:func:`~compose_kfp.oci.image.select_platform`, nested indexes read)
        whose manifest blob the layout holds.

        Raises:
            LayoutError: unknown tag (the message lists the tags), several entries and no tag,
                or an index and no platform.
            PlatformNotFound: the platform is not in the index or the indexes nested in it, or no manifest
                of that platform it lists is stored in the layout.
            ImageError: indexes nested deeper than :data:`~compose_kfp.oci.image.MAX_INDEX_DEPTH`.
        """
        desc = _choose(self.index().manifests, lambda d: [(d.annotations or {}).get(ANNOTATION_REF_NAME, "")],
                       tag, self.path)
        if platform is None:
            for _ in range(MAX_INDEX_DEPTH):
                if desc.media_type not in INDEX_MEDIA_TYPES:
                    return desc
                nested = Index.from_bytes(self.store.read_bytes(desc.digest), desc.media_type)
                if len(nested.manifests) != 1:
                    raise LayoutError(f"{tag or 'the image'} in {self.path} is a multi-platform index; "
                                      "pass a platform")
                desc = nested.manifests[0]
            raise LayoutError(f"{self.path}: indexes nested too deeply")
        if desc.media_type not in INDEX_MEDIA_TYPES:
            return desc
        top = Index.from_bytes(self.store.read_bytes(desc.digest), desc.media_type)
        # The index may list platforms whose blobs were never copied here (a single-platform export).
        return select_platform(top, platform,
                               fetch=lambda d: self.store.read_bytes(d.digest) if self.store.has(d.digest) else None,
                               present=lambda d: self.store.has(d.digest))

    def read_image(self, tag: str | None = None, *, platform: str | Platform | None = None) -> LocalImage:
        """Read manifest and config of ``tag`` (see :meth:`resolve`); blobs are verified by digest."""
        desc = self.resolve(tag, platform=platform)
        return _read_image(self.store, self.store.read_bytes(desc.digest), desc.media_type, tag)

    # -- writing
    def write_image(self, tag: str | None, manifest: Manifest, config: ImageConfig, *,
                    layers: Iterable[Layer] = (), sources: Sequence[BlobStore] = (),
                    annotations: Mapping[str, str] | None = None) -> Descriptor:
        """Store an image and point ``tag`` at it; return the manifest descriptor written to ``index.json``.

        Layer blobs are taken, in this order, from this layout, from ``layers``
        (anything with ``digest`` and ``open()``), or from ``sources``. The
        config is stored as ``config.raw_bytes()`` and must match
        ``manifest.config``; the manifest as ``manifest.raw_bytes()``. An
        existing entry with the same tag is replaced; other entries are kept.
        Docker v2.2 manifests may be stored too (the spec allows any
        descriptor), but some tools (skopeo 1.9) only list OCI manifests in a
        layout: use :func:`write_docker_dir` for those. For a multi-platform
        image use :meth:`write_index`.

        Raises:
            LayoutError: a layer blob is in none of the places above, or ``tag`` is empty or has whitespace.
            DigestMismatch: the config or a copied blob does not match its descriptor.
        """
        self._check_tags([tag] if tag is not None else [])
        raw = self._store_image(manifest, config, {ly.digest: ly for ly in layers}, sources)
        desc = Descriptor(media_type=manifest.effective_media_type, digest=sha256_digest(raw), size=len(raw),
                          annotations=dict(annotations or {}) or None)
        return self._point_tags(desc, [tag] if tag is not None else [])[0]

    def write_index(self, tags: str | Sequence[str] | None, index: Index,
                    images: Iterable[tuple[Manifest, ImageConfig]] = (), *,
                    layers: Iterable[Layer] = (), sources: Sequence[BlobStore] = (),
                    annotations: Mapping[str, str] | None = None) -> list[Descriptor]:
        """Store a multi-platform image (an image index and its images) and point each of ``tags`` at the index.

        OCI image spec ``image-layout.md``: every blob (layers, configs, the
        per-platform manifests, then the index itself, section "Blobs") is
        written first, each atomically (temporary file, rename); ``index.json``
        (section "index.json file") is replaced last, once, under the layout's
        lock, with one entry per tag (``org.opencontainers.image.ref.name``)
        whose descriptor is the index (media type
        ``application/vnd.oci.image.index.v1+json`` or the Docker manifest
        list type). The per-platform manifests are reachable through the index
        only; they get no ``index.json`` entry of their own. An existing entry
        with one of ``tags`` is replaced; other entries are kept. A crash at
        any point leaves ``index.json`` as it was or fully updated.

        Args:
            tags: the tags (a single string is one tag); ``None`` or empty adds one untagged entry.
            index: the image index (stored as ``index.raw_bytes()``).
            images: ``(manifest, config)`` of the platforms to store; blobs as in :meth:`write_image`.
                Every manifest the index lists must be among them or already in this layout.
            layers, sources: where layer blobs come from (see :meth:`write_image`).
            annotations: extra annotations on each new ``index.json`` entry.

        Returns:
            the ``index.json`` entries written, in ``tags`` order (one untagged entry when there are no tags).

        Raises:
            LayoutError: a tag is empty or has whitespace, a layer blob is unavailable, or the index
                lists a manifest that is neither among ``images`` nor in the layout.
            DigestMismatch: a config or a copied blob does not match its descriptor.
        """
        tag_list = [tags] if isinstance(tags, str) else list(tags or [])
        self._check_tags(tag_list)
        by_digest = {ly.digest: ly for ly in layers}
        for manifest, config in images:
            self._store_image(manifest, config, by_digest, sources)
        missing = [d for d in index.manifests if not self.store.has(d.digest)]
        if missing:
            raise LayoutError(f"the index lists manifest {missing[0].digest}"
                              + (f" ({missing[0].platform})" if missing[0].platform else "")
                              + f", which is neither among the images given nor in {self.path}")
        raw = index.raw_bytes()
        self.store.put_bytes(raw)
        desc = Descriptor(media_type=index.effective_media_type, digest=sha256_digest(raw), size=len(raw),
                          annotations=dict(annotations or {}) or None)
        return self._point_tags(desc, tag_list)

    def _check_tags(self, tags: Sequence[str]) -> None:
        for tag in tags:
            if not tag or any(c.isspace() for c in tag):
                raise LayoutError(f"invalid tag {tag!r} for {self.path}")

    def _store_image(self, manifest: Manifest, config: ImageConfig, layers: Mapping[str, Layer],
                     sources: Sequence[BlobStore]) -> bytes:
        """Store config, layer blobs and manifest (in that order); return the manifest bytes stored."""
        config_raw = config.raw_bytes()
        if sha256_digest(config_raw) != manifest.config.digest or len(config_raw) != manifest.config.size:
            raise DigestMismatch(f"config does not match the manifest's config descriptor {manifest.config.digest}")
        self.store.put_bytes(config_raw)
        for d in manifest.layers:
            if self.store.has(d.digest):
                continue
            if d.digest in layers:
                with layers[d.digest].open() as f:
                    self.store.put_stream(f, d.digest)
                continue
            for src in sources:
                if src.has(d.digest):
                    self.store.copy_from(src, d.digest)
                    break
            else:
                raise LayoutError(f"layer {d.digest} of the image is not available: not in {self.path}, "
                                  "not among the given layers or sources")
        raw = manifest.raw_bytes()
        self.store.put_bytes(raw)
        return raw

    def _point_tags(self, desc: Descriptor, tags: Sequence[str]) -> list[Descriptor]:
        """Add ``desc`` to ``index.json`` once per tag (or once untagged), replacing entries with those tags.

        One read-modify-write of ``index.json`` under the layout lock, replaced by rename.
        """
        entries = [desc.model_copy(update={"annotations": {**(desc.annotations or {}), ANNOTATION_REF_NAME: t}})
                   for t in tags] or [desc]
        with self._locked():
            index = self.index()
            kept = [d for d in index.manifests
                    if not (tags and (d.annotations or {}).get(ANNOTATION_REF_NAME) in tags)
                    and not (not tags and d.digest == desc.digest and not d.annotations)]
            new = index.model_copy(update={"manifests": kept + entries, "schema_version": 2,
                                           "media_type": MEDIA_TYPE_OCI_INDEX})
            atomic_write(self.path / INDEX_FILE, new.to_bytes())
        return entries

    def remove_tag(self, tag: str) -> None:
        """Drop ``tag`` from ``index.json`` (blobs stay). Raises LayoutError when absent."""
        with self._locked():
            index = self.index()
            kept = [d for d in index.manifests if (d.annotations or {}).get(ANNOTATION_REF_NAME) != tag]
            if len(kept) == len(index.manifests):
                raise LayoutError(f"tag {tag!r} not found in {self.path}")
            atomic_write(self.path / INDEX_FILE, index.model_copy(update={"manifests": kept}).to_bytes())


# --------------------------------------------------------------------------- skopeo dir:


def read_docker_dir(path: str | os.PathLike[str], *, platform: str | Platform | None = None) -> LocalImage:
    """Read an image from a skopeo ``dir:`` folder (``manifest.json`` + blobs named ``<hex>``).

    A multi-image folder (``skopeo copy --all``) has an index in
    ``manifest.json`` and per-platform manifests in ``<hex>.manifest.json``;
    ``platform`` selects one.

    Raises:
        LayoutError: not such a folder, or an index without ``platform``.
    """
    p = pathlib.Path(path)
    manifest_file = p / "manifest.json"
    if not manifest_file.is_file():
        raise LayoutError(f"{p} is not a skopeo dir: image (no manifest.json)")
    store = BlobStore(p, flat=True)
    raw = manifest_file.read_bytes()
    doc = parse_manifest(raw)
    if isinstance(doc, Index):
        if platform is None:
            raise LayoutError(f"{p} holds a multi-platform image; pass a platform")
        desc = select_platform(doc, platform, present=lambda d: (p / f"{d.digest.split(':', 1)[1]}.manifest.json")
                               .is_file())
        _, hexd = desc.digest.split(":", 1)
        try:
            raw = (p / f"{hexd}.manifest.json").read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{p}: manifest for {platform} ({desc.digest}) was not copied") from None
    return _read_image(store, raw, None, str(p))


def write_docker_dir(path: str | os.PathLike[str], manifest: Manifest, config: ImageConfig, *,
                     layers: Iterable[Layer] = (), sources: Sequence[BlobStore] = ()) -> Descriptor:
    """Write one image as a skopeo ``dir:`` folder (OCI or Docker v2.2 manifest); return its descriptor.

    Blobs are taken from ``layers`` or ``sources`` like :meth:`OCILayout.write_image`
    and written atomically (temporary file, rename); ``manifest.json`` comes last.

    Raises:
        LayoutError: a blob is unavailable. DigestMismatch: config or a blob does not match.
    """
    p = pathlib.Path(path)
    p.mkdir(parents=True, exist_ok=True)
    config_raw = config.raw_bytes()
    if sha256_digest(config_raw) != manifest.config.digest:
        raise DigestMismatch(f"config does not match the manifest's config descriptor {manifest.config.digest}")
    atomic_write(p / manifest.config.digest.split(":", 1)[1], config_raw)
    by_digest = {ly.digest: ly for ly in layers}
    for d in manifest.layers:
        target = p / d.digest.split(":", 1)[1]
        if target.is_file() and target.stat().st_size == d.size:
            continue
        if d.digest in by_digest:
            opener = by_digest[d.digest].open
        else:
            src = next((s for s in sources if s.has(d.digest)), None)
            if src is None:
                raise LayoutError(f"layer {d.digest} is not available for {p}: not among the given layers or sources")
            opener = lambda s=src, dg=d.digest: s.open(dg)  # noqa: E731
        staging = BlobStore(p / ".staging")
        with opener() as f:
            staging.put_stream(f, d.digest)
        os.replace(staging.path(d.digest), target)
    with contextlib.suppress(OSError):
        for leftover in (p / ".staging" / "blobs" / "sha256", p / ".staging" / "blobs", p / ".staging"):
            leftover.rmdir()
    atomic_write(p / "version", DIR_VERSION.encode())
    raw = manifest.raw_bytes()
    atomic_write(p / "manifest.json", raw)
    return manifest.descriptor()


# --------------------------------------------------------------------------- docker save


def _repo_tags(entry: Mapping[str, Any]) -> list[str]:
    """An archive entry's RepoTags, plus their short forms (``docker.io/library/x:1`` also as ``x:1``)."""
    out: list[str] = []
    for t in entry.get("RepoTags") or []:
        out.append(t)
        for prefix in ("docker.io/library/", "docker.io/"):
            if t.startswith(prefix):
                out.append(t[len(prefix):])
                break
    return out


def _is_gzip(f: Any) -> bool:
    head = f.read(2)
    f.seek(0)
    return head == b"\x1f\x8b"


def read_docker_archive(path: str | os.PathLike[str], store: BlobStore | str | os.PathLike[str], *,
                        tag: str | None = None, compression: str | None = "gzip") -> LocalImage:
    """Import an image from a ``docker save`` archive into ``store``; return it as a Docker v2.2 image.

    The archive's uncompressed layers are compressed (``compression``: ``"gzip"``
    or None to keep them as ``application/vnd.docker.image.rootfs.diff.tar``) in
    one pass each; their diff_ids are checked against the config. The config
    blob is kept byte for byte.

    Args:
        tag: which image (a ``RepoTags`` entry such as ``"busybox:latest"``) when the archive holds several.

    Raises:
        LayoutError: not a docker-save archive, unknown tag (tags listed), missing members.
        DigestMismatch: a layer does not hash to the diff_id the config lists.
    """
    bs = store if isinstance(store, BlobStore) else BlobStore(store)
    p = pathlib.Path(path)
    try:
        tar = tarfile.open(p, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise LayoutError(f"{p} is not a readable docker save archive: {exc}") from None
    with tar:
        def member(name: str) -> Any:
            try:
                f = tar.extractfile(name)
            except KeyError:
                f = None
            if f is None:
                raise LayoutError(f"{p}: archive member {name!r} is missing")
            return f

        try:
            entries = json.loads(member("manifest.json").read())
        except ValueError:
            raise LayoutError(f"{p}: manifest.json is not valid JSON") from None
        if not isinstance(entries, list) or not entries:
            raise LayoutError(f"{p}: manifest.json lists no images")
        entry = _choose(entries, _repo_tags, tag, p)
        config_raw = member(entry["Config"]).read()
        config = ImageConfig.from_bytes(config_raw, MEDIA_TYPE_DOCKER_CONFIG)
        diff_ids = config.rootfs.diff_ids
        layer_names = entry.get("Layers") or []
        if len(layer_names) != len(diff_ids):
            raise LayoutError(f"{p}: {len(layer_names)} layers but the config lists {len(diff_ids)} diff_ids")
        descs = []
        for name, diff_id in zip(layer_names, diff_ids):
            f = member(name)
            if _is_gzip(f):
                digest, size = bs.put_stream(f)
                descs.append(Descriptor(media_type=MEDIA_TYPE_DOCKER_LAYER_GZIP, digest=digest, size=size))
                continue
            if compression is None:
                digest, size = bs.put_stream(f)
                if digest != diff_id:
                    raise DigestMismatch(f"{p}: layer {name} hashes to {digest}, config says {diff_id}")
                descs.append(Descriptor(media_type=MEDIA_TYPE_DOCKER_LAYER, digest=digest, size=size))
                continue
            layer = compress_tar(f, bs, compression)
            if layer.diff_id != diff_id:
                raise DigestMismatch(f"{p}: layer {name} hashes to {layer.diff_id}, config says {diff_id}")
            descs.append(Descriptor(media_type=MEDIA_TYPE_DOCKER_LAYER_GZIP, digest=layer.digest, size=layer.size))
    bs.put_bytes(config_raw)
    manifest = Manifest(schema_version=2, media_type=MEDIA_TYPE_DOCKER_MANIFEST,
                        config=Descriptor.of(config_raw, MEDIA_TYPE_DOCKER_CONFIG), layers=descs)
    tags = entry.get("RepoTags") or []
    return LocalImage(manifest, config, bs, manifest.descriptor(), tag or (tags[0] if tags else None))


__all__ = ["DIR_VERSION", "LocalImage", "OCILayout", "read_docker_archive", "read_docker_dir", "write_docker_dir"]
