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
  A ``requirements`` layer is looked up by :func:`compose_kfp.build.deps.requirements_key`;
  on a miss the installer is **not** run: the digest is "known after apply",
  unless ``kfp.lock`` records the same key and the destination already holds
  that blob.
- **Destination blobs**: ``HEAD`` of every blob the desired images reference
  whose digest is known.
- **Rendered files** under ``render.output_dir``: sha256 of each file there.

State lives under ``<project>/.compose-kfp/`` (:class:`ProjectState`): ``blobs/``
(blob store), ``cache/layers`` (layer cache), ``cache/files`` (per layer digest,
the ``(path, size, mtime_ns)`` of its files, so a plan can name the files that
changed), ``lock`` (the apply lock file).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from compose_kfp.build import deps as deps_mod
from compose_kfp.errors import BuildError, ConfigError, from_oci
from compose_kfp.build.images import ImageSpec, LayerSpec
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.blobs import BlobStore, atomic_write
from compose_kfp.oci.image import (
    ACCEPT_MANIFESTS,
    ANNOTATION_BASE_DIGEST,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_manifest,
    select_platform,
)
from compose_kfp.oci.layer import LayerCache, LayerPlan, plan_layer, write_layer
from compose_kfp.oci.reference import Reference, redact_userinfo

log = logging.getLogger(__name__)

#: The project's state folder (relative to the folder of kfp.toml).
STATE_DIR = ".compose-kfp"

#: Progress callback: ``(event, name or digest, done bytes, total bytes)``.
Progress = Callable[[str, str, int, int], None]


# --------------------------------------------------------------------------- state folder


@dataclasses.dataclass(frozen=True)
class ProjectState:
    """Where a project keeps its local state: ``<root>/.compose-kfp``.

    Attributes:
        root: the project folder (holds ``kfp.toml``).
    """

    root: Path

    @property
    def dir(self) -> Path:
        """``<root>/.compose-kfp``."""
        return self.root / STATE_DIR

    @property
    def store(self) -> BlobStore:
        """Content-addressed blob store (``blobs/sha256/<hex>``)."""
        return BlobStore(self.dir)

    @property
    def layer_cache(self) -> LayerCache:
        """Finished layers by layer plan key (``cache/layers``)."""
        return LayerCache(self.dir / "cache" / "layers")

    @property
    def deps_cache(self) -> deps_mod.DepsCache:
        """Dependency layers by requirements key (``cache/deps``)."""
        return deps_mod.DepsCache(self.dir / "cache" / "deps")

    @property
    def files_dir(self) -> Path:
        """Per layer digest, the file stamps recorded when it was built (``cache/files``)."""
        return self.dir / "cache" / "files"

    @property
    def lock_path(self) -> Path:
        """The file lock that serializes ``apply`` runs."""
        return self.dir / "lock"

    def record_files(self, digest: str, files: Sequence[tuple[str, int, int]]) -> None:
        """Remember the ``(path, size, mtime_ns)`` of the files of layer ``digest`` (atomic write)."""
        path = self.files_dir / f"{digest.split(':', 1)[1]}.json"
        if path.exists():
            return
        atomic_write(path, json.dumps([list(f) for f in files]).encode("utf-8"))

    def fingerprint_key(self, fingerprint: str) -> str | None:
        """The layer plan key recorded for an input fingerprint (:func:`input_fingerprint`), or ``None``."""
        try:
            return (self.dir / "cache" / "fingerprints" / f"{fingerprint}.key").read_text(encoding="ascii").strip()
        except OSError:
            return None

    def record_fingerprint(self, fingerprint: str, key: str) -> None:
        """Remember that inputs with ``fingerprint`` plan to layer key ``key`` (atomic write)."""
        path = self.dir / "cache" / "fingerprints" / f"{fingerprint}.key"
        atomic_write(path, key.encode("ascii"))

    def files_of(self, digest: str) -> tuple[tuple[str, int, int], ...] | None:
        """The file stamps recorded for layer ``digest``, or ``None``."""
        try:
            rows = json.loads((self.files_dir / f"{digest.split(':', 1)[1]}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, IndexError):
            return None
        return tuple((str(r[0]), int(r[1]), int(r[2])) for r in rows)


# --------------------------------------------------------------------------- observed values


@dataclasses.dataclass(frozen=True)
class BaseState:
    """The base image for one platform.

    Attributes:
        reference: as written in kfp.toml (``python:3.11-slim``, ``oci:base:v1``, ``scratch``).
        platform: ``os/arch[/variant]``.
        digest: manifest digest for this platform (``None`` for ``scratch``).
        top_digest: what the reference resolved to (an index or the manifest itself).
        manifest: raw manifest JSON text (``None`` for ``scratch``).
        config: raw config JSON text (``None`` for ``scratch``).
        registry, repository: where a registry base lives (for mounting its layers); else ``None``.
        local_store: blob store folder of a local base (``oci:``, ``dir:``, ``docker-archive:``); else ``None``.
        local_flat: whether ``local_store`` uses skopeo ``dir:`` naming.
    """

    reference: str
    platform: str
    digest: str | None = None
    top_digest: str | None = None
    manifest: str | None = None
    config: str | None = None
    registry: str | None = None
    repository: str | None = None
    local_store: str | None = None
    local_flat: bool = False

    @property
    def layers(self) -> tuple[tuple[str, int, str], ...]:
        """``(digest, size, media type)`` of the base layers, base first."""
        if self.manifest is None:
            return ()
        m = Manifest.from_bytes(self.manifest.encode())
        return tuple((d.digest, d.size, d.media_type) for d in m.layers)


@dataclasses.dataclass(frozen=True)
class LayerState:
    """One desired layer for one image and platform, as found on this machine.

    Attributes:
        name, kind: from the :class:`~compose_kfp.build.images.LayerSpec`.
        key: the cache key (LayerPlan key; ``sha256:...`` requirements key for ``requirements``).
        digest, diff_id, size: the built layer, or ``None`` when only apply can know (requirements changed).
        media_type: the layer media type.
        local: the blob is in the project's blob store.
        files: ``(in-image path, size, mtime_ns)`` of its regular files (empty for ``requirements``).
        note: a reason known at observation (``requirements changed``).
    """

    name: str
    kind: str
    key: str
    digest: str | None
    diff_id: str | None
    size: int | None
    media_type: str
    local: bool = True
    files: tuple[tuple[str, int, int], ...] = ()
    note: str = ""


@dataclasses.dataclass(frozen=True)
class PlatformImageState:
    """What the destination holds for one platform of the current image.

    Attributes:
        manifest: manifest digest; ``config``: config digest; ``base``: base manifest digest it was built on.
        layers: ``(layer name or None, digest, size)`` of the layers above the base, base first.
        base_layers: number of base layers at the bottom of the manifest.
    """

    manifest: str
    config: str
    base: str | None
    layers: tuple[tuple[str | None, str, int], ...]
    base_layers: int = 0


@dataclasses.dataclass(frozen=True)
class CurrentImage:
    """The image currently at the destination for one desired image.

    Attributes:
        digest: top-level digest (index or manifest) recorded in kfp.lock or found by tag; ``None``: nothing known.
        source: ``"lock"``, ``"tag:<tag>"`` or ``""``.
        exists: the destination holds ``digest``.
        platforms: platform -> :class:`PlatformImageState` (from the destination, else from kfp.lock).
    """

    digest: str | None = None
    source: str = ""
    exists: bool = False
    platforms: Mapping[str, PlatformImageState] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Observed:
    """Everything the planner needs, read once.

    Attributes:
        bases: platform -> :class:`BaseState`.
        layers: ``(image name, platform)`` -> the image's :class:`LayerState` list, base first.
        current: image name -> :class:`CurrentImage`.
        remote_blobs: digests the destination repository holds (of those asked about).
        tags: tag -> digest it points at in the destination (``None``: absent), for every tag asked.
        file_records: layer digest -> file stamps recorded when it was built (for reasons).
        rendered: path relative to the project -> sha256 hex of the rendered file on disk.
        same_registry: the base registry is the destination registry (base layers can be mounted).
        warnings: reproducibility warnings of the requirements files (:func:`requirements_warnings`), in order.
    """

    bases: Mapping[str, BaseState]
    layers: Mapping[tuple[str, str], tuple[LayerState, ...]]
    current: Mapping[str, CurrentImage]
    remote_blobs: frozenset[str] = frozenset()
    tags: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    file_records: Mapping[str, tuple[tuple[str, int, int], ...]] = dataclasses.field(default_factory=dict)
    rendered: Mapping[str, str] = dataclasses.field(default_factory=dict)
    same_registry: bool = False
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- clients


class Registries:
    """One :class:`~compose_kfp.oci.registry.RegistryClient` per registry host, made on first use.

    Args:
        keychain: credentials resolver (default: the docker/podman search order, or ``[image.auth]``).
        insecure: passed to every client (``None``: plain HTTP for loopback only).
    """

    def __init__(self, keychain: Any = None, insecure: bool | None = None):
        self.keychain = keychain
        self.insecure = insecure
        self._clients: dict[str, Any] = {}

    def client(self, host: str) -> Any:
        """The :class:`~compose_kfp.oci.registry.RegistryClient` for ``host`` (``host[:port]``), made once."""
        from compose_kfp.oci.registry import RegistryClient

        if host not in self._clients:
            self._clients[host] = RegistryClient(host, self.keychain, insecure=self.insecure)
        return self._clients[host]

    def close(self) -> None:
        """Close every client's connection pool."""
        for c in self._clients.values():
            c.close()
        self._clients.clear()


def keychain_for(auth: Any, root: Path, destination_host: str | None = None) -> Any:
    """The keychain for ``[image.auth]`` (``None`` -> the default search order).

    ``config`` names a docker config / containers auth.json; ``helper`` a credential helper; both
    are asked per registry host like docker does. ``username_env`` / ``password_env`` name
    environment variables whose values are sent to the destination registry
    (``destination_host``; ``None``: every registry) only, never to the base image's registry or any other.
    With no ``destination_host``, unset variables are logged as a warning and no credentials are sent.

    Raises:
        ConfigError: ``image.auth.config`` names a file that does not exist (the message names the key
            and the path), or ``username_env`` is given without ``password_env``.
        AuthError (from the keychain's ``resolve``, when the destination registry is first asked for
            credentials): a variable named by ``image.auth.username_env`` / ``password_env`` is unset or
            empty; the message names the key and the variable, never a value.
    """
    from compose_kfp.oci import auth as auth_mod

    if auth is None:
        return auth_mod.default_keychain()
    chains: list[Any] = []
    if auth.username_env and not auth.password_env:
        raise ConfigError(f"image.auth.username_env = {auth.username_env!r} is set but image.auth.password_env "
                          "is not; name the variable that holds the password or token too")
    if auth.password_env:
        chains.append(_EnvPairKeychain(auth.username_env, auth.password_env, destination_host))
    if auth.helper:
        chains.append(_HelperKeychain(auth.helper))
    if auth.config:
        path = Path(auth.config).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            why = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"image.auth.config: the credentials file {auth.config!r} ({path}) {why}; create it "
                              "(e.g. `docker login` / `podman login --authfile PATH`) or fix the path")
        chains.append(auth_mod.AuthFileKeychain(path, f"{path} (kfp.toml image.auth.config)"))
    chains.append(auth_mod.default_keychain())
    return auth_mod.ChainKeychain(chains)


class _EnvPairKeychain:
    """Credentials from the variables ``[image.auth]`` names, read at each ``resolve`` for ``host`` only."""

    def __init__(self, username_env: str | None, password_env: str, host: str | None):
        self._user_env, self._password_env, self._host = username_env, password_env, host

    def resolve(self, registry: str, repository: str | None = None) -> Any:
        from compose_kfp.oci.auth import ANONYMOUS, Credential
        from compose_kfp.oci.errors import Unauthorized

        if self._host is not None and registry != self._host:
            return ANONYMOUS
        names = [("image.auth.username_env", self._user_env), ("image.auth.password_env", self._password_env)]
        unset = [f"{key} = {var!r}" for key, var in names if var and not os.environ.get(var)]
        if unset and self._host is None:  # no known destination: do not break anonymous pulls elsewhere
            log.warning("kfp.toml %s: unset or empty; not sending [image.auth] credentials to %s",
                        " and ".join(unset), registry)
            return ANONYMOUS
        if unset:
            raise Unauthorized(
                f"credentials for {registry}: the environment variable{'s' if len(unset) > 1 else ''} named by "
                f"{' and '.join(unset)} in kfp.toml {'are' if len(unset) > 1 else 'is'} unset or empty; export "
                f"{'them' if len(unset) > 1 else 'it'} (or remove the key to use docker/podman logins)")
        user = os.environ.get(self._user_env) if self._user_env else None
        source = "kfp.toml [image.auth] " + (f"${self._user_env}/${self._password_env}" if self._user_env
                                             else f"${self._password_env}")
        return Credential(username=user or None, password=os.environ[self._password_env], source=source)

    def __repr__(self) -> str:
        return f"_EnvPairKeychain({self._user_env!r}, {self._password_env!r})"


class _HelperKeychain:
    """The credential helper ``[image.auth] helper`` names, asked for every registry."""

    def __init__(self, helper: str):
        self.helper = helper

    def resolve(self, registry: str, repository: str | None = None) -> Any:
        from compose_kfp.oci.auth import ANONYMOUS, run_credential_helper

        return run_credential_helper(self.helper, registry, origin="kfp.toml (image.auth.helper)") or ANONYMOUS


# --------------------------------------------------------------------------- base


def _registry_ref(text: str) -> Reference:
    return Reference.parse(text.removeprefix("docker://"))


def resolve_base(reference: str, platforms: Sequence[str], registries: Registries, state: ProjectState, *,
                 locked: Mapping[str, str] | None = None) -> dict[str, BaseState]:
    """Resolve the base image for each platform: manifest digest, manifest and config (never its layers).

    Args:
        reference: ``image.base`` as written.
        platforms: the platforms to resolve.
        locked: platform -> locked manifest digest (``--frozen``): fetched by digest instead of the tag.

    Raises:
        ConfigError: the base lacks a platform, or a local base path is not an image.
        RegistryError / AuthError (from the client): the registry could not be read.
    """
    out: dict[str, BaseState] = {}
    if reference == "scratch":
        return {p: BaseState(reference, p) for p in platforms}
    if reference.startswith(("oci:", "dir:", "docker-archive:")):
        return _local_base(reference, platforms, state)
    ref = _registry_ref(reference)
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
                    raise ConfigError(f"image.base: {reference} was not found in {ref.api_host} (no such repository "
                                      "or tag); check the name and tag, or push the base image first") from None
                top = parse_manifest(raw, mt)
            if isinstance(top, Index):
                try:
                    desc = select_platform(top, p)
                except oci_errors.PlatformNotFound as e:
                    raise ConfigError(f"image.base: {reference} has no image for {p}: {e}") from None
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


def download_blob(client: Any, repo: str, digest: str, size: int | None, store: BlobStore,
                  progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Download blob ``digest`` of ``repo`` into ``store``; return the stored path.

    :meth:`~compose_kfp.oci.registry.RegistryClient.get_blob` verifies the bytes and writes
    through a temporary file of its own in the store's folder, renamed at the end, so
    concurrent runs downloading the same blob never collide.
    """
    dest = store.path(digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    client.get_blob(repo, digest, dest, expected_size=size, progress=progress)
    return dest


def _check_platform(config: ImageConfig, platform: str, reference: str) -> None:
    want = Platform.parse(platform).normalized()
    have = config.platform.normalized()
    if want[:2] != have[:2]:
        raise ConfigError(f"image.base: {reference} is for {config.platform}, not {platform}; "
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
        except (oci_errors.LayoutError, oci_errors.ImageError) as e:
            raise ConfigError(f"image.base: {reference}: {e}") from None
        _check_platform(img.config, p, reference)
        out[p] = BaseState(reference, p, digest=img.digest, top_digest=top.digest if top else img.digest,
                           manifest=img.manifest.raw_bytes().decode(), config=img.config.raw_bytes().decode(),
                           local_store=store, local_flat=flat)
    return out


def _docker_archive(path: str, state: ProjectState) -> Any:
    """A ``docker save`` archive imported into the project's blob store, once per archive version.

    Importing compresses every layer, so the resulting manifest is remembered under a key of the
    archive's path, size, mtime and inode (``cache/archives``); later plans read it back when its
    blobs are still in the store.
    """
    from compose_kfp.oci.layout import LocalImage, read_docker_archive

    try:
        st = os.stat(path)
    except OSError:
        raise ConfigError(f"image.base: docker-archive:{path}: no such file") from None
    key = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode()).hexdigest()
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

    ``root`` is the project folder: ``.kfpignore`` is read there.

    Raises:
        BuildError: a source is missing or unusable (the message names the kfp.toml key).
    """
    try:
        if spec.kind == "runtime":
            return plan_layer((), files=dict(spec.files), default_ignores=False, use_ignore_file=False,
                              compression=compression)
        if spec.kind == "rootfs":
            return plan_layer([(spec.rootfs, "/")], rootfs=True, ignore=spec.ignore, compression=compression)
        if spec.kind == "paths":
            return plan_layer(list(spec.includes), context=root, ignore=spec.ignore, compression=compression)
    except oci_errors.LayerError as e:
        raise BuildError(f"{spec.where} ({spec.name}): {e}") from None
    raise BuildError(f"{spec.where}: layer kind {spec.kind!r} has no file plan")


def input_fingerprint(spec: LayerSpec, compression: str, root: Path) -> str | None:
    """A cheap fingerprint of everything :func:`layer_plan` reads for a ``paths``/``rootfs`` layer, or ``None``
    for other kinds.

    sha256 over the layer options (kind, sources and destinations, ignore patterns, compression,
    ``SOURCE_DATE_EPOCH``, the tar format version and gzip implementation), the content of
    ``<root>/.kfpignore``, and the ``lstat`` fields (mode, size, mtime_ns, inode, links, owner) of every
    entry under each source, ignored ones included. Equal fingerprints mean :func:`layer_plan` would give the
    same key, so the (slower) plan can be skipped: one ``stat`` per file, no ignore matching, no sorting of the
    whole tree. Any difference, even in an ignored file, only means the full plan runs.
    """
    from compose_kfp.oci import layer as layer_mod

    if spec.kind not in ("paths", "rootfs"):
        return None
    h = hashlib.sha256()
    h.update(json.dumps({"kind": spec.kind, "includes": spec.includes, "rootfs": spec.rootfs,
                         "ignore": spec.ignore, "compression": compression,
                         "sde": os.environ.get("SOURCE_DATE_EPOCH"), "format": layer_mod.FORMAT_VERSION,
                         "gzip": layer_mod.GZIP_IMPL, "root": str(root)}, sort_keys=True).encode())
    try:
        h.update((root / layer_mod.IGNORE_FILE).read_bytes())
    except OSError:
        h.update(b"\0no-ignore-file")
    sources = [spec.rootfs] if spec.kind == "rootfs" else [src for src, _ in spec.includes]
    for src in sources:
        real = os.path.realpath(src or "")
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


def deps_target(image: ImageSpec, platform: str, base: BaseState, where: str) -> deps_mod.DepsTarget:
    """The :class:`~compose_kfp.build.deps.DepsTarget` of ``image`` on ``platform`` (Python from the base config)."""
    env = None
    if base.config:
        cfg = ImageConfig.from_bytes(base.config.encode())
        env = cfg.config.env if cfg.config else None
    python = deps_mod.resolve_python_version(image.python, env, source=where)
    plat = "/".join(platform.split("/")[:2]) if platform.startswith("linux/arm64") else platform
    return deps_mod.DepsTarget(platform=plat, python=python, libc=image.libc, index_url=image.index_url,
                               extra_index_urls=image.extra_index_urls)


def _media_type(compression: str) -> str:
    return "application/vnd.oci.image.layer.v1.tar+zstd" if compression == "zstd" \
        else "application/vnd.oci.image.layer.v1.tar+gzip"


def observe_layers(images: Sequence[ImageSpec], bases: Mapping[str, BaseState], state: ProjectState, *,
                   lock: Mapping[str, Any] | None = None, installer: Any = None,
                   progress: Progress | None = None, where: str = "kfp.toml") -> dict[tuple[str, str], tuple[LayerState, ...]]:
    """Observe every layer of every image and platform (module docstring, "Layers").

    ``paths``/``rootfs``/``runtime`` layers do not depend on the platform and are
    planned and (on a cache miss) built once; the builds run on two threads.
    """
    store, cache = state.store, state.layer_cache
    file_layers: dict[tuple[str, str], LayerSpec] = {}
    for image in images:
        for spec in image.layers:
            if spec.kind != "requirements":
                file_layers.setdefault((spec.name, image.compression), spec)
    results: dict[tuple[str, str], LayerState] = {}

    def one(item: tuple[tuple[str, str], LayerSpec]) -> tuple[tuple[str, str], LayerState]:
        (name, compression), spec = item
        fp = input_fingerprint(spec, compression, state.root)
        if fp is not None:
            key = state.fingerprint_key(fp)
            hit = cache.lookup(key, store) if key else None
            if hit is not None:
                # files are loaded later, only if a reason must name them
                return (name, compression), LayerState(spec.name, spec.kind, key, hit.digest,  # type: ignore[arg-type]
                                                       hit.diff_id, hit.size, hit.media_type, True)
        lp = layer_plan(spec, compression, state.root)
        stamps = file_stamps(lp)
        hit = cache.lookup(lp.key, store)
        if hit is None:
            total = lp.content_bytes
            if progress:
                progress("build", spec.name, 0, total)
            layer = write_layer(lp, store, cache=cache,
                                progress=(lambda done, tot, n=spec.name: progress("build", n, done, tot))
                                if progress else None)
            if progress:
                progress("build", spec.name, total, total)
            state.record_files(layer.digest, stamps)
        else:
            layer = hit
        if fp is not None:
            state.record_fingerprint(fp, lp.key)
        return (name, compression), LayerState(spec.name, spec.kind, lp.key, layer.digest, layer.diff_id,
                                               layer.size, layer.media_type, True, stamps)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="observe-layer") as pool:
        for key, value in pool.map(one, file_layers.items()):
            results[key] = value

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
                key = deps_mod.requirements_key(spec.requirements, target, installer.label)
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


def is_local_destination(repository: str) -> bool:
    """Whether ``image.repository`` is an ``oci:PATH`` layout rather than a registry."""
    return repository.startswith("oci:")


def layout_path(repository: str, root: Path) -> Path:
    """The folder of an ``oci:PATH`` destination, relative paths against the project ``root``."""
    return (root / repository[4:]).resolve()


#: Manifest annotation recording how many of the manifest's layers belong to the base image.
BASE_LAYERS_ANNOTATION = "io.compose-kfp.base-layers"


def _platform_state_from_manifest(manifest: Manifest, bases: Mapping[str, tuple[str, ...]],
                                  locked: Mapping[str, Any] | None) -> PlatformImageState:
    """The current image's state from its manifest; ``bases``: observed base manifest digest -> its layer digests.

    How many layers are the base's, in order of trust: the ``io.compose-kfp.base-layers`` annotation;
    kfp.lock when it records this manifest; the observed base when the manifest names its digest or starts
    with its layers; else the layers below the first one carrying a layer-name annotation (a base built by
    compose-kfp has annotated layers too, so this is last)."""
    from compose_kfp.build.images import LAYER_NAME_ANNOTATION

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


class _Destination:
    """Reads of the destination (a registry repository or an OCI layout)."""

    def __init__(self, repository: str, root: Path, registries: Registries):
        self.local = is_local_destination(repository)
        if self.local:
            from compose_kfp.oci.layout import OCILayout

            self.path = layout_path(repository, root)
            self.layout = OCILayout(self.path) if (self.path / "oci-layout").is_file() else None
        else:
            ref = _registry_ref(repository)
            self.host, self.repo = ref.api_host, ref.repository
            self.client = registries.client(self.host)

    def has_blob(self, digest: str) -> bool:
        if self.local:
            return self.layout is not None and self.layout.store.has(digest)
        return self.client.blob_exists(self.repo, digest)

    def get_manifest(self, ref: str) -> tuple[bytes, str, str] | None:
        if self.local:
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
        try:
            return self.client.get_manifest(self.repo, ref, ACCEPT_MANIFESTS)
        except oci_errors.NotFound:
            return None

    def tag_digest(self, tag: str) -> str | None:
        if self.local:
            if self.layout is None:
                return None
            desc = self.layout.tags().get(tag)
            return desc.digest if desc else None
        head = self.client.head_manifest(self.repo, tag, ACCEPT_MANIFESTS)
        return head[1] if head else None


def observe_current(image: ImageSpec, dest: _Destination, lock: Mapping[str, Any] | None,
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


# --------------------------------------------------------------------------- third-party images


def pin_images(images: Mapping[str, str], registries: Registries, *,
               locked: Mapping[str, str] | None = None) -> dict[str, str]:
    """Pin third-party component images by digest: step -> ``registry/repository@sha256:...``.

    A reference that already has a digest keeps it (its tag is dropped); a tag is resolved with one
    ``HEAD`` of the manifest (the digest of what the tag names: an index for a multi-platform image).
    With ``locked`` (``--frozen``: step -> pinned reference from kfp.lock) a step whose reference is
    recorded there for the same repository is not resolved again.

    Raises:
        ConfigError: an image reference is malformed.
        RegistryError / AuthError: a tag cannot be resolved (the message names the step and image).
    """
    out: dict[str, str] = {}
    for step, text in images.items():
        try:
            ref = _registry_ref(text)
        except oci_errors.InvalidReference as e:
            raise ConfigError(f"steps.{step}.component: image {redact_userinfo(text)!r} is not a valid "
                              f"reference: {e}") from None
        if ref.digest:
            out[step] = f"{ref.name}@{ref.digest}"
            continue
        pinned = (locked or {}).get(step)
        if pinned and pinned.split("@", 1)[0] == ref.name:
            out[step] = pinned
            continue
        try:
            head = registries.client(ref.api_host).head_manifest(ref.repository, ref.identifier, ACCEPT_MANIFESTS)
        except oci_errors.DistributionError as e:
            raise from_oci(e, f"steps.{step}: cannot pin the component image {text} by digest") from None
        if head is None:
            raise ConfigError(f"steps.{step}: the component image {text} does not exist in {ref.api_host}; fix "
                              "the image in the component file")
        out[step] = f"{ref.name}@{head[1]}"
    return out


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
            progress: Progress | None = None, where: str = "kfp.toml") -> Observed:
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

    Raises:
        ConfigError, BuildError, RegistryError, AuthError: as the reads fail; nothing is written but the
        local, content-addressed cache. A registry error while reading the base or the destination starts
        with the kfp.toml key that names that registry (``image.base = '...': cannot reach ...``).
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
    key = f"image.base = {redact_userinfo(first.base)!r}"  # which kfp.toml key names the registry being read
    try:
        bases = resolve_base(first.base, first.platforms, registries, state, locked=locked_bases)
        key = None
        layers = observe_layers(images, bases, state, lock=lock, installer=installer, progress=progress, where=where)
        warnings = requirements_warnings(images, state.root)
        key = f"image.repository = {redact_userinfo(first.repository)!r}"
        dest = _Destination(first.repository, state.root, registries)
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
        present = frozenset(d for d in sorted(wanted) if d in known or dest.has_blob(d))
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
        same = False
        if not dest.local:
            base0 = next(iter(bases.values()))
            same = base0.registry is not None and base0.registry == dest.host
        rendered = observe_rendered(output_dir, state.root) if output_dir is not None else {}
    except oci_errors.DistributionError as e:
        raise from_oci(e, key) from None
    return Observed(bases=bases, layers=layers, current=current, remote_blobs=present, tags=tags,
                    file_records=records, rendered=rendered, same_registry=same, warnings=warnings)


def requirements_warnings(images: Sequence[ImageSpec], root: Path) -> tuple[str, ...]:
    """:func:`compose_kfp.build.deps.reproducibility_warnings` of every requirements file the images' layers name
    (each file once, in image and layer order; duplicate messages dropped), with paths under ``root``
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
            for message in deps_mod.reproducibility_warnings(spec.requirements):
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


__all__ = ["BaseState", "CurrentImage", "LayerState", "Observed", "PlatformImageState", "ProjectState", "Registries",
           "STATE_DIR", "deps_target", "file_stamps", "is_local_destination", "keychain_for", "layer_plan", "requirements_warnings",
           "layout_path", "observe", "observe_current", "pin_images", "observe_layers", "observe_rendered", "resolve_base"]
