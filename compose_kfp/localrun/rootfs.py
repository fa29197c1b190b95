"""The images tasks run in under the ``bwrap`` and ``chroot`` executors: pulled once, unpacked into cached trees.

:class:`RegistryOptions` says how images are fetched (also for ``podman pull``); :class:`ImageStore`
pulls an image's manifest, config and layers with :class:`compose_kfp.oci.registry.RegistryClient` (or
reads them from a local OCI layout) and unpacks them with :func:`compose_kfp.oci.unpack.unpack_image` into a
tree cached per manifest digest; :func:`image_user` maps the config's ``User`` to ids with the image's
``/etc/passwd`` and ``/etc/group``. Used by :mod:`compose_kfp.localrun.runner`.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import threading
from pathlib import Path

from compose_kfp.errors import RunError
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.auth import Keychain
from compose_kfp.oci.blobs import BlobStore
from compose_kfp.oci.image import ImageConfig, Index, Manifest, Platform, parse_manifest, select_platform
from compose_kfp.oci.layer import Layer
from compose_kfp.oci.reference import Reference
from compose_kfp.oci.registry import RegistryClient
from compose_kfp.oci.unpack import remove_tree, unpack_image

__all__ = ["RegistryOptions", "ImageTree", "ImageStore", "image_user"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RegistryOptions:
    """How images are fetched.

    Attributes:
        insecure: ``None``: plain HTTP (and podman ``--tls-verify=false``) only for loopback
            registries; ``True``: for every registry; ``False``: never.
        keychain: credentials for the fallback executors (default: docker/podman auth files, env).
        authfile: an auth file for ``podman pull --authfile``.
        layout: a local OCI image layout folder; blobs found there are not downloaded.
    """

    insecure: bool | None = None
    keychain: Keychain | None = None
    authfile: Path | None = None
    layout: Path | None = None


@dataclasses.dataclass(frozen=True)
class ImageTree:
    """An unpacked image: ``root`` is its file tree, ``config`` its image config."""

    root: Path
    config: ImageConfig


def _host_platform() -> Platform:
    return Platform.parse(f"linux/{platform.machine()}")


class ImageStore:
    """Unpacked image trees cached per manifest digest (``<cache>/rootfs/<hex>/{rootfs,config.json}``).

    Thread-safe: one image is fetched and unpacked once (a thread lock and a file lock per digest);
    one :class:`~compose_kfp.oci.registry.RegistryClient` per registry host, closed by :meth:`close`.
    """

    def __init__(self, cache: Path, options: RegistryOptions):
        self.cache = cache
        self.options = options
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._clients: dict[str, RegistryClient] = {}

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _client(self, host: str) -> RegistryClient:
        with self._guard:
            if host not in self._clients:
                self._clients[host] = RegistryClient(host, self.options.keychain, insecure=self.options.insecure)
            return self._clients[host]

    def close(self) -> None:
        """Close the registry clients opened so far."""
        for client in self._clients.values():
            client.close()

    def _local(self) -> BlobStore | None:
        return BlobStore(self.options.layout) if self.options.layout else None

    def _manifest(self, ref: Reference) -> tuple[Manifest, str]:
        local = self._local()
        if local is not None and ref.digest and local.has(ref.digest):
            doc = parse_manifest(local.read_bytes(ref.digest))
            digest = ref.digest
        else:
            data, media_type, digest = self._client(ref.api_host).get_manifest(ref.repository, ref.identifier)
            doc = parse_manifest(data, media_type)
        if isinstance(doc, Index):
            desc = select_platform(doc, _host_platform())
            return self._manifest(Reference(ref.registry, ref.repository, digest=desc.digest))
        return doc, digest

    def _blob(self, ref: Reference, digest: str, size: int, dest: BlobStore) -> None:
        local = self._local()
        if local is not None and local.has(digest):
            dest.copy_from(local, digest)
            return
        if not dest.has(digest):
            dest.path(digest).parent.mkdir(parents=True, exist_ok=True)
            self._client(ref.api_host).get_blob(ref.repository, digest, dest.path(digest), expected_size=size)

    def _from_layout(self, image: str) -> tuple[Reference, Manifest, str, BlobStore]:
        """``oci:PATH@sha256:...``: the manifest straight from that OCI layout's blobs."""
        path, sep, digest = image[len("oci:"):].rpartition("@")
        if not sep or not digest.startswith("sha256:"):
            raise RunError(f"image {image!r}: an OCI layout image must be pinned as oci:PATH@sha256:...")
        store = BlobStore(path)
        if not store.has(digest):
            raise RunError(f"image {image!r}: {path} has no manifest {digest}; run `compose-kfp apply`")
        doc = parse_manifest(store.read_bytes(digest))
        if isinstance(doc, Index):
            digest = select_platform(doc, _host_platform()).digest
            doc = parse_manifest(store.read_bytes(digest))
        return Reference("localhost", "layout", digest=digest), doc, digest, store

    def tree(self, image: str) -> ImageTree:
        """The unpacked tree and config of ``image``, fetched and unpacked on first use.

        ``image`` is ``repository@sha256:...`` (pulled from its registry, blobs from the
        ``layout`` option first when given) or ``oci:PATH@sha256:...`` (read from that layout).
        An index is resolved to the manifest of this machine's platform (``linux/<machine>``).

        Raises:
            RunError: an ``oci:`` image not pinned by digest, or not in its layout.
            ImageError: the manifest and config disagree on the number of layers.
            OCIError: the registry could not be read (see :mod:`compose_kfp.oci.errors`).
        """
        from filelock import FileLock

        layout: BlobStore | None = None
        if image.startswith("oci:"):
            ref, manifest, digest, layout = self._from_layout(image)
        else:
            ref = Reference.parse(image)
            manifest, digest = self._manifest(ref)
        hexd = digest.split(":", 1)[1]
        folder = self.cache / "rootfs" / hexd
        with self._lock(hexd), FileLock(str(self.cache / "rootfs" / f"{hexd}.lock")):
            config_path = folder / "config.json"
            if not config_path.is_file() or not (folder / "rootfs").is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                blobs = layout or BlobStore(self.cache / "blobs")
                if layout is None:
                    self._blob(ref, manifest.config.digest, manifest.config.size, blobs)
                config = ImageConfig.from_bytes(blobs.read_bytes(manifest.config.digest), manifest.config.media_type)
                if len(config.rootfs.diff_ids) != len(manifest.layers):
                    raise oci_errors.ImageError(f"{image}: the manifest has {len(manifest.layers)} layers but the "
                                                f"config lists {len(config.rootfs.diff_ids)} diff_ids")
                layers = []
                for desc, diff_id in zip(manifest.layers, config.rootfs.diff_ids):
                    if layout is None:
                        self._blob(ref, desc.digest, desc.size, blobs)
                    layers.append(Layer.from_store(blobs, desc.digest, diff_id, desc.media_type))
                remove_tree(folder / "rootfs")
                unpack_image(layers, folder / "rootfs")
                config_path.write_bytes(config.raw_bytes())
                if layout is None:
                    for desc in [manifest.config, *manifest.layers]:
                        blobs.path(desc.digest).unlink(missing_ok=True)  # the tree is the cache
                log.info("unpacked %s (%d layers) into %s", image, len(layers), folder / "rootfs")
            config = ImageConfig.from_bytes(config_path.read_bytes())
        return ImageTree(folder / "rootfs", config)


def _lookup_id(root: Path, table: str, name: str) -> tuple[int, int] | None:
    """``(id, primary gid)`` of ``name`` in the image's ``/etc/passwd`` (or ``(gid, gid)`` in ``/etc/group``)."""
    try:
        lines = (root / "etc" / table).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name:
            try:
                ident = int(fields[2])
                gid = int(fields[3]) if table == "passwd" and len(fields) > 3 else ident
            except ValueError:
                return None
            return ident, gid
    return None


def image_user(root: Path, user: str | None) -> tuple[int, int, str]:
    """``(uid, gid, home)`` for the image config's ``User`` (``name``, ``uid``, ``name:group``, ``uid:gid``).

    Raises:
        RunError: a name that is not in the image's ``/etc/passwd`` or ``/etc/group``.
    """
    if not user:
        return 0, 0, "/root"
    name, _, group = user.partition(":")
    if name.isdigit():
        uid, gid = int(name), int(name)
        passwd = None
    else:
        passwd = _lookup_id(root, "passwd", name)
        if passwd is None:
            raise RunError(f"image user {name!r} is not in the image's /etc/passwd")
        uid, gid = passwd
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = _lookup_id(root, "group", group)
            if found is None:
                raise RunError(f"image group {group!r} is not in the image's /etc/group")
            gid = found[0]
    home = "/root" if uid == 0 else "/"
    try:
        for line in (root / "etc" / "passwd").read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 6 and fields[2] == str(uid):
                home = fields[5] or home
                break
    except OSError:
        pass
    return uid, gid, home

