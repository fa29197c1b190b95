"""Image documents: descriptors, manifests, indexes, configs, platforms, and :func:`append`.

Follows the OCI image spec (``descriptor.md``, ``manifest.md``,
``image-index.md``, ``config.md``, ``media-types.md``) and the Docker image
manifest v2 schema 2 (manifest, manifest list, ``container.image.v1`` config).

Every model is a frozen pydantic model that keeps unknown fields (so a Docker
config's ``container_config`` or a manifest's ``subject`` survive a round trip).

Bytes and digests:

* :meth:`to_bytes` is canonical JSON (keys sorted, no insignificant
  whitespace, UTF-8, ``null`` fields omitted), so the same document always has
  the same digest.
* A document parsed with ``from_bytes`` remembers the bytes it came from:
  :meth:`raw_bytes` and :attr:`digest` use *those* bytes, because the digest of
  a fetched manifest is the digest of the bytes received, never of a
  re-serialisation. A copy made with ``model_copy(update=...)`` forgets them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from compose_kfp.oci.digest import sha256_digest, split_digest
from compose_kfp.oci.errors import ImageError, PlatformNotFound

# --------------------------------------------------------------------------- media types

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
MEDIA_TYPE_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MEDIA_TYPE_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MEDIA_TYPE_OCTET_STREAM = "application/octet-stream"

MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})
#: Config media types of runnable images (Docker configs are sometimes served as octet-stream).
IMAGE_CONFIG_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_OCTET_STREAM})
#: What to send in ``Accept`` when fetching a manifest by tag.
ACCEPT_MANIFESTS = (MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST,
                    MEDIA_TYPE_DOCKER_MANIFEST)

_OCI_TO_DOCKER_LAYER = {
    MEDIA_TYPE_OCI_LAYER_GZIP: MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER: MEDIA_TYPE_DOCKER_LAYER,
    MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP: MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP,
}
_DOCKER_TO_OCI_LAYER = {v: k for k, v in _OCI_TO_DOCKER_LAYER.items()}

Family = Literal["oci", "docker"]

# Annotation keys (OCI ``annotations.md``).
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_REVISION = "org.opencontainers.image.revision"
ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, ``,``/``:`` separators, UTF-8 (no ``\\u`` escapes of non-ASCII)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _base_type(media_type: str | None) -> str | None:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    if media_type is None:
        return None
    return media_type.split(";", 1)[0].strip().lower() or None


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def _load_json(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object")
    return doc


# --------------------------------------------------------------------------- base model


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (spec field names; ``null`` members left out at every depth)."""
        return _strip_none(self.model_dump(mode="json", by_alias=True, exclude_none=True))

    def to_bytes(self) -> bytes:
        """Canonical JSON serialisation (see the module docstring)."""
        return canonical_json(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Model):
            return NotImplemented
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_bytes())


class _Document(_Model):
    """A top-level document (manifest, index, config) that remembers the bytes it was parsed from."""

    _raw: bytes | None = PrivateAttr(default=None)

    def raw_bytes(self) -> bytes:
        """The bytes this document was parsed from, or :meth:`to_bytes` when built in code."""
        return self._raw if self._raw is not None else self.to_bytes()

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of :meth:`raw_bytes`."""
        return sha256_digest(self.raw_bytes())

    @property
    def size(self) -> int:
        """Length of :meth:`raw_bytes` in bytes."""
        return len(self.raw_bytes())

    def _with_raw(self, raw: bytes) -> Any:
        self.__pydantic_private__["_raw"] = raw  # type: ignore[index]
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any:  # noqa: D102
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy.__pydantic_private__["_raw"] = None  # type: ignore[index]
        return copy


# --------------------------------------------------------------------------- platform


#: How deep :func:`platform_candidates` follows an index nested in an index (the OCI image spec allows any depth).
MAX_INDEX_DEPTH = 8

_VARIANT_SPELLING = re.compile(r"(?:arm(?:64)?|aarch64)?v?(\d+(?:\.\d+)?)")


def normalize_platform(os_name: str, architecture: str, variant: str | None = None) -> tuple[str, str, str]:
    """``(os, architecture, variant)`` in containerd's canonical form (``platforms.Normalize``).

    The one normalization every platform comparison goes through. As containerd's ``normalizeArch``:
    everything lower-cased; ``i386`` -> ``386`` (no variant); ``x86_64``/``x86-64`` -> ``amd64``, variant
    ``v1`` -> ``""``; ``aarch64`` -> ``arm64``, variant ``8``/``v8``/``v8.0`` -> ``""`` and ``9``/``9.0``/``v9.0``
    -> ``v9``; ``armhf`` -> ``arm/v7``; ``armel`` -> ``arm/v6``; ``arm`` with no variant or ``7`` -> ``v7``,
    ``5``/``6``/``8`` -> ``v5``/``v6``/``v8``; ``macos`` -> ``darwin``. One spelling more than containerd: a variant
    written with the architecture in front (``armv7``, ``armv8``, ``arm64v8``, as some indexes and ``uname -m``
    write it) is read as ``v7``, ``v8``, ``v8``, then normalized as above.

    Returns:
        the normalized triple; ``variant`` is ``""`` when the architecture's default applies.
    """
    osname = os_name.lower()
    if osname == "macos":
        osname = "darwin"
    arch = architecture.lower()
    var = (variant or "").lower()
    spelled = _VARIANT_SPELLING.fullmatch(var)
    if spelled and var != spelled.group(1):
        var = "v" + spelled.group(1)
    if arch == "i386":
        arch, var = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        var = "" if var in ("v1", "1") else var
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        var = {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(var, var)
    elif arch == "armhf":
        arch, var = "arm", "v7"
    elif arch == "armel":
        arch, var = "arm", "v6"
    elif arch == "arm":
        var = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(var, var)
    return osname, arch, var


def compatible_variants(architecture: str, variant: str) -> tuple[str, ...]:
    """Variants (normalized, :func:`normalize_platform`) a CPU of ``architecture``/``variant`` also runs, best
    first: containerd's ``platformVector`` within one architecture (arm/v8 runs v8, v7, v6, v5; amd64/v3 runs v3,
    v2, v1; arm64/v9 runs v9, v8). containerd's cross-architecture fallbacks (amd64 -> 386, arm64 -> arm) are
    left out: a base for one architecture is never another's."""
    m = re.fullmatch(r"v(\d+)", variant)
    if architecture == "arm" and m and int(m.group(1)) > 5:
        return tuple(f"v{n}" for n in range(int(m.group(1)), 4, -1))
    if architecture == "amd64" and m and int(m.group(1)) > 1:
        return tuple(f"v{n}" for n in range(int(m.group(1)), 1, -1)) + ("",)
    if architecture == "arm64" and variant == "v9":
        return ("v9", "")
    return (variant,)


class Platform(_Model):
    """A descriptor's platform (``image-index.md``): ``os``, ``architecture``, optional ``variant``.

    :meth:`parse` reads ``"os/arch[/variant]"``; :meth:`normalized` is containerd's canonical form
    (:func:`normalize_platform`: ``x86_64`` -> ``amd64``, ``aarch64`` -> ``arm64``, arm64/v8 -> arm64, arm -> arm/v7).
    """

    architecture: str
    os: str
    os_version: str | None = Field(default=None, alias="os.version")
    os_features: list[str] | None = Field(default=None, alias="os.features")
    variant: str | None = None
    features: list[str] | None = None

    @classmethod
    def parse(cls, text: str | Platform) -> Platform:
        """``"linux/arm64/v8"`` -> ``Platform(os="linux", architecture="arm64", variant="v8")``.

        Raises:
            ImageError: not ``os/arch`` or ``os/arch/variant``.
        """
        if isinstance(text, Platform):
            return text
        parts = [p.strip() for p in str(text).split("/")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ImageError(f"invalid platform {text!r}: expected 'os/architecture[/variant]', e.g. 'linux/amd64'")
        return cls(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else None)

    def normalized(self) -> tuple[str, str, str]:
        """``(os, architecture, variant)`` as :func:`normalize_platform` gives them (``""``: the default variant)."""
        return normalize_platform(self.os, self.architecture, self.variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


# --------------------------------------------------------------------------- descriptor


class Descriptor(_Model):
    """A content descriptor (``descriptor.md``): what a blob is, its digest and its size in bytes."""

    media_type: str = Field(alias="mediaType")
    digest: str
    size: int = Field(ge=0)
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    data: str | None = None
    platform: Platform | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")

    @field_validator("digest")
    @classmethod
    def _check_digest(cls, v: str) -> str:
        split_digest(v)
        return v

    def embedded_data(self) -> bytes | None:
        """The base64 ``data`` field decoded and checked against ``digest`` and ``size``, or None.

        Raises:
            ImageError: the embedded data does not match the descriptor.
        """
        if self.data is None:
            return None
        raw = base64.b64decode(self.data, validate=True)
        if len(raw) != self.size or sha256_digest(raw) != self.digest:
            raise ImageError(f"descriptor {self.digest}: embedded data does not match its digest or size")
        return raw

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None) -> Descriptor:
        """Parse a descriptor JSON object. Raises ImageError when malformed."""
        doc = _load_json(data, "descriptor")
        return _validate(cls, doc, "descriptor")

    @classmethod
    def of(cls, document: _Document | bytes, media_type: str, **fields: Any) -> Descriptor:
        """A descriptor of a document or blob (digest and size of its raw bytes)."""
        raw = document if isinstance(document, bytes) else document.raw_bytes()
        return cls(media_type=media_type, digest=sha256_digest(raw), size=len(raw), **fields)


def _validate(model: type[Any], doc: dict[str, Any], what: str) -> Any:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ImageError(f"invalid {what}: {loc}: {first['msg']}") from None
    except ImageError as exc:
        raise ImageError(f"invalid {what}: {exc}") from None


# --------------------------------------------------------------------------- manifests


class Manifest(_Document):
    """An image manifest: OCI ``manifest.md`` or Docker v2.2 (``mediaType`` tells which).

    ``layers`` are ordered base first. ``media_type`` may be absent in OCI
    manifests written by older tools; :attr:`family` then looks at the config.
    """

    schema_version: int = Field(default=2, alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    config: Descriptor
    layers: list[Descriptor] = Field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")

    @field_validator("layers", mode="before")
    @classmethod
    def _null_layers(cls, v: Any) -> Any:
        return [] if v is None else v

    @property
    def family(self) -> Family:
        """``"docker"`` for Docker v2.2 manifests, ``"oci"`` otherwise."""
        if self.media_type == MEDIA_TYPE_DOCKER_MANIFEST:
            return "docker"
        if self.media_type is None and self.config.media_type == MEDIA_TYPE_DOCKER_CONFIG:
            return "docker"
        return "oci"

    @property
    def effective_media_type(self) -> str:
        """``media_type``, or the one implied by :attr:`family` when the field is absent."""
        return self.media_type or (MEDIA_TYPE_DOCKER_MANIFEST if self.family == "docker" else MEDIA_TYPE_OCI_MANIFEST)

    def descriptor(self, **fields: Any) -> Descriptor:
        """Descriptor of this manifest (raw bytes' digest and size)."""
        return Descriptor.of(self, self.effective_media_type, **fields)

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None, *, allow_artifacts: bool = False) -> Manifest:
        """Parse an image manifest, keeping ``data`` as its raw bytes.

        Raises:
            ImageError: not JSON, schema 1, an index, malformed, or (unless
                ``allow_artifacts``) an artifact whose config is not an image config.
        """
        result = parse_manifest(data, media_type, allow_artifacts=allow_artifacts)
        if not isinstance(result, Manifest):
            raise ImageError("expected an image manifest but got an image index / manifest list; "
                             "select a platform first")
        return result


class Index(_Document):
    """An OCI image index (``image-index.md``) or a Docker manifest list."""

    schema_version: int = Field(default=2, alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    manifests: list[Descriptor] = Field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")

    @field_validator("manifests", mode="before")
    @classmethod
    def _null_manifests(cls, v: Any) -> Any:
        return [] if v is None else v

    @property
    def effective_media_type(self) -> str:
        return self.media_type or MEDIA_TYPE_OCI_INDEX

    def descriptor(self, **fields: Any) -> Descriptor:
        return Descriptor.of(self, self.effective_media_type, **fields)

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None) -> Index:
        """Parse an index or manifest list. Raises ImageError when it is something else or malformed."""
        result = parse_manifest(data, media_type)
        if not isinstance(result, Index):
            raise ImageError("expected an image index / manifest list but got an image manifest")
        return result


def parse_manifest(data: bytes, media_type: str | None = None, *,
                   allow_artifacts: bool = False) -> Manifest | Index:
    """Parse manifest bytes as fetched, dispatching on ``media_type`` (e.g. the Content-Type) or the content.

    The document's own ``mediaType`` wins over a generic ``media_type``
    (``application/json``...); without either, ``manifests`` means an index and
    ``config`` an image manifest. The result keeps ``data`` as its raw bytes.

    Raises:
        ImageError: invalid JSON, Docker schema 1, unknown media type, malformed
            fields, or an artifact manifest ("not a runnable image") unless ``allow_artifacts``.
    """
    doc = _load_json(data, "manifest")
    declared = _base_type(media_type)
    inner = doc.get("mediaType")
    mt = inner if isinstance(inner, str) and inner else declared
    if doc.get("schemaVersion") == 1 or mt in (MEDIA_TYPE_DOCKER_SCHEMA1, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED):
        raise ImageError("Docker image manifest schema 1 is not supported; push the image again with a "
                         "current client to get a v2 schema 2 or OCI manifest")
    if mt in INDEX_MEDIA_TYPES or (mt not in MANIFEST_MEDIA_TYPES and "manifests" in doc):
        return _validate(Index, doc, "image index")._with_raw(bytes(data))
    if mt in MANIFEST_MEDIA_TYPES or "config" in doc:
        config = doc.get("config")
        config_type = config.get("mediaType") if isinstance(config, dict) else None
        if not allow_artifacts and config_type not in IMAGE_CONFIG_MEDIA_TYPES:
            what = doc.get("artifactType") or config_type
            raise ImageError(f"manifest is not a runnable image: its config media type is {config_type!r}"
                             f"{f' (artifact type {what!r})' if what and what != config_type else ''}; "
                             "it is an artifact (signature, SBOM, chart...) that cannot be used as a base image")
        return _validate(Manifest, doc, "image manifest")._with_raw(bytes(data))
    raise ImageError(f"unsupported manifest media type {mt!r}: expected one of "
                     f"{', '.join(sorted(MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES))}")


# --------------------------------------------------------------------------- config


class _ConfigModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class ContainerConfig(_ConfigModel):
    """The ``config`` object of an image config (``config.md`` "Properties"): how to run the image."""

    user: str | None = Field(default=None, alias="User")
    exposed_ports: dict[str, Any] | None = Field(default=None, alias="ExposedPorts")
    env: list[str] | None = Field(default=None, alias="Env")
    entrypoint: list[str] | None = Field(default=None, alias="Entrypoint")
    cmd: list[str] | None = Field(default=None, alias="Cmd")
    volumes: dict[str, Any] | None = Field(default=None, alias="Volumes")
    working_dir: str | None = Field(default=None, alias="WorkingDir")
    labels: dict[str, str] | None = Field(default=None, alias="Labels")
    stop_signal: str | None = Field(default=None, alias="StopSignal")


class RootFS(_ConfigModel):
    """``rootfs``: ``type`` is ``"layers"``; ``diff_ids`` are the uncompressed layer digests, base first."""

    type: str = "layers"
    diff_ids: list[str] = Field(default_factory=list)

    @field_validator("diff_ids", mode="before")
    @classmethod
    def _null_ids(cls, v: Any) -> Any:
        return [] if v is None else v


class History(_ConfigModel):
    """One ``history`` entry; ``empty_layer`` entries have no layer (``config.md``)."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None


class ImageConfig(_Document):
    """An image configuration: OCI ``config.md`` or Docker ``container.image.v1`` (same shape).

    ``rootfs.diff_ids`` has one entry per manifest layer, base first.
    """

    created: str | None = None
    author: str | None = None
    architecture: str
    os: str
    os_version: str | None = Field(default=None, alias="os.version")
    os_features: list[str] | None = Field(default=None, alias="os.features")
    variant: str | None = None
    config: ContainerConfig | None = None
    rootfs: RootFS
    history: list[History] | None = None

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant)

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None) -> ImageConfig:
        """Parse an image config, keeping ``data`` as its raw bytes.

        ``media_type`` may be the OCI or Docker config type, ``application/octet-stream``,
        ``application/json`` or None.

        Raises:
            ImageError: another media type (an artifact config), invalid JSON, or no ``rootfs``.
        """
        mt = _base_type(media_type)
        if mt is not None and mt not in IMAGE_CONFIG_MEDIA_TYPES and mt != "application/json":
            raise ImageError(f"config media type {mt!r} is not an image config: not a runnable image")
        doc = _load_json(data, "image config")
        if "rootfs" not in doc:
            raise ImageError("image config has no 'rootfs': not a runnable image")
        return _validate(cls, doc, "image config")._with_raw(bytes(data))

    @classmethod
    def scratch(cls, platform: str | Platform = "linux/amd64") -> ImageConfig:
        """The config of an empty image (no layers) for ``platform``."""
        p = Platform.parse(platform)
        return cls(architecture=p.architecture, os=p.os, variant=p.variant, config=ContainerConfig(),
                   rootfs=RootFS(diff_ids=[]), history=[])


# --------------------------------------------------------------------------- platform selection


def _platforms(entries: Sequence[Descriptor]) -> list[str]:
    seen = []
    for d in entries:
        if d.platform is None or d.platform.os == "unknown" or d.platform.architecture == "unknown":
            continue
        s = str(d.platform)
        if s not in seen:
            seen.append(s)
    return seen


#: Reads the index a descriptor points to (its raw bytes; ``None`` when it is not available), for
#: :func:`platform_candidates`.
FetchIndex = Callable[[Descriptor], "bytes | None"]


def _walk(entries: Sequence[Descriptor], fetch: FetchIndex | None, depth: int, max_depth: int,
          found: list[Descriptor], nested: list[Descriptor]) -> None:
    """Image manifest entries of ``entries`` and of the indexes nested in them, depth first, in document order;
    nested indexes not read (no ``fetch``, or it has none) go to ``nested``."""
    for d in entries:
        if d.media_type not in INDEX_MEDIA_TYPES:
            found.append(d)
            continue
        if depth >= max_depth:
            raise ImageError(f"image index {d.digest}: indexes nested more than {max_depth} deep")
        raw = fetch(d) if fetch is not None else None
        if raw is None:
            nested.append(d)
        else:
            _walk(Index.from_bytes(raw, d.media_type).manifests, fetch, depth + 1, max_depth, found, nested)


def platform_candidates(index_or_list: Index | Sequence[Descriptor], platform: str | Platform, *,
                        fetch: FetchIndex | None = None, max_depth: int = MAX_INDEX_DEPTH) -> list[Descriptor]:
    """Every image manifest descriptor of ``index_or_list`` that runs on ``platform``, best first.

    As containerd's ``platforms.Only`` matcher within one architecture: both sides are normalized
    (:func:`normalize_platform`), an exact variant ranks first, then the compatible older variants of
    :func:`compatible_variants` (an arm/v7 host runs arm/v6 images); equal ranks keep document order.
    Entries without a platform and attestation entries (``unknown/unknown``) never match. An entry that is
    itself an index (OCI ``image-index.md`` allows nesting) is read with ``fetch`` and its entries are
    matched in its place, up to ``max_depth`` levels.

    Raises:
        PlatformNotFound: nothing matches; the message lists the platforms present, those of nested
            indexes included, and names a nested index that could not be read (no ``fetch``, or it gave ``None``).
        ImageError: a nested index is malformed or nested deeper than ``max_depth``.
    """
    want = Platform.parse(platform)
    entries = list(index_or_list.manifests if isinstance(index_or_list, Index) else index_or_list)
    found: list[Descriptor] = []
    nested: list[Descriptor] = []
    _walk(entries, fetch, 0, max_depth, found, nested)
    w_os, w_arch, w_var = want.normalized()
    order = compatible_variants(w_arch, w_var)
    ranked = []
    for position, d in enumerate(found):
        if d.platform is None:
            continue
        os_, arch, var = d.platform.normalized()
        if os_ == w_os and arch == w_arch and var in order:
            ranked.append((order.index(var), position, d))
    if not ranked:
        available = _platforms(found)
        message = (f"no image for platform {want} in this index; available: "
                   f"{', '.join(available) if available else 'none'}")
        if nested:
            message += "; not searched: nested index " + ", ".join(
                d.digest + (f" ({d.platform})" if d.platform else "") for d in nested)
        raise PlatformNotFound(message)
    return [d for _, _, d in sorted(ranked, key=lambda r: r[:2])]


def select_platform(index_or_list: Index | Sequence[Descriptor], platform: str | Platform, *,
                    fetch: FetchIndex | None = None, present: Callable[[Descriptor], bool] | None = None
                    ) -> Descriptor:
    """The best manifest descriptor of ``index_or_list`` for ``platform`` (:func:`platform_candidates`).

    Args:
        fetch: reads a nested index (see :func:`platform_candidates`); without it nested indexes are only named
            in the error.
        present: whether a candidate's manifest can be read (a layout whose index lists platforms it holds no
            blobs of); the first candidate for which it is true wins. ``None``: the first candidate.

    Raises:
        PlatformNotFound: no entry matches, or (with ``present``) no matching entry's manifest is there;
            the message lists the platforms present.
        ImageError: see :func:`platform_candidates`.
    """
    candidates = platform_candidates(index_or_list, platform, fetch=fetch)
    if present is None:
        return candidates[0]
    for d in candidates:
        if present(d):
            return d
    raise PlatformNotFound(f"the index lists an image for platform {Platform.parse(platform)} "
                           f"({', '.join(d.digest for d in candidates)}) but its manifest is not stored here")


# --------------------------------------------------------------------------- append


class LayerLike(Protocol):
    """What :func:`append` needs of a layer (``compose_kfp.oci.layer.Layer`` has it)."""

    media_type: str
    digest: str
    diff_id: str
    size: int


def _convert_layer_type(media_type: str, family: Family) -> str:
    if family == "docker":
        if media_type in _DOCKER_TO_OCI_LAYER:
            return media_type
        if media_type in _OCI_TO_DOCKER_LAYER:
            return _OCI_TO_DOCKER_LAYER[media_type]
        raise ImageError(f"layer media type {media_type!r} has no Docker v2.2 equivalent (zstd layers need an "
                         "OCI manifest): build gzip layers or ask for the 'oci' media type family")
    return _DOCKER_TO_OCI_LAYER.get(media_type, media_type)


def format_created(value: str | _dt.datetime | int | None = None) -> str:
    """RFC 3339 UTC timestamp: ``value`` as given, else ``$SOURCE_DATE_EPOCH``, else the epoch (reproducible)."""
    if isinstance(value, str):
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if value is None:
        env = os.environ.get("SOURCE_DATE_EPOCH") or "0"
        try:
            value = int(env)
        except ValueError:
            raise ImageError(f"SOURCE_DATE_EPOCH={env!r} is not an integer number of seconds") from None
    return _dt.datetime.fromtimestamp(int(value), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_env(base: Sequence[str] | None, env: Mapping[str, str] | Sequence[str] | None) -> list[str]:
    """``KEY=VALUE`` list (an image config's ``Env``): ``base`` with each key of ``env`` replaced in place or appended.

    ``env`` is a mapping or ``KEY=VALUE`` / ``KEY`` strings (``KEY`` means ``KEY=``). A key
    already in the list has its first entry replaced where it stands; a new key is
    appended, in ``env`` order; a key given twice in ``env`` ends with its last value.
    Linear in ``len(base) + len(env)``. Raises :class:`ImageError` for an empty key or
    one containing ``=``.
    """
    result = list(base or [])
    if not env:
        return result
    where: dict[str, int] = {}  # key -> index of its first entry in ``result``
    for i, existing in enumerate(result):
        where.setdefault(existing.split("=", 1)[0], i)
    items = env.items() if isinstance(env, Mapping) else (e.split("=", 1) if "=" in e else (e, "") for e in env)
    for key, value in items:
        if not key or "=" in key:
            raise ImageError(f"invalid environment variable name {key!r}")
        entry = f"{key}={value}"
        i = where.get(key)
        if i is None:
            where[key] = len(result)
            result.append(entry)
        else:
            result[i] = entry
    return result


def append(base_manifest: Manifest | None, base_config: ImageConfig | None, layers: Sequence[LayerLike], *,
           env: Mapping[str, str] | Sequence[str] | None = None, workdir: str | None = None,
           entrypoint: Sequence[str] | None = None, cmd: Sequence[str] | None = None,
           labels: Mapping[str, str] | None = None, user: str | None = None,
           annotations: Mapping[str, str] | None = None, created: str | _dt.datetime | int | None = None,
           history_comment: str | Sequence[str] | None = "compose-kfp", created_by: str = "compose-kfp",
           family: Family | None = None, platform: str | Platform | None = None,
           base_name: str | None = None, base_digest: str | None = None,
           layer_annotations: Sequence[Mapping[str, str] | None] | None = None) -> tuple[Manifest, ImageConfig]:
    """A new image: the base plus ``layers`` on top (go-containerregistry ``mutate.Append``).

    Pure: the base objects are not modified. Layers are ordered base first;
    each new layer adds its descriptor to ``manifest.layers``, its ``diff_id``
    to ``config.rootfs.diff_ids`` and a ``history`` entry (``created``,
    ``created_by``, ``comment``).

    Args:
        base_manifest, base_config: the base image, or both None for an image
            from scratch (then ``platform`` gives os/architecture).
        layers: new layers, lowest first (anything with media_type, digest, diff_id, size).
        env: merged by key into the base ``Env`` (:func:`merge_env`); no ``$VAR`` expansion.
        workdir, entrypoint, cmd, user, labels: set when given (labels merged into the base's).
            Setting ``entrypoint`` without ``cmd`` clears the base ``Cmd``, as Docker does.
        annotations: manifest annotations; ``org.opencontainers.image.created`` and,
            with a base, ``.base.digest`` (the base manifest's digest) and
            ``.base.name`` (``base_name``) are added. Docker v2.2 manifests have no
            annotations: they become config labels there.
        created: timestamp of the config and history (default: ``SOURCE_DATE_EPOCH`` or the epoch).
        history_comment: one comment for all new layers, or one per layer.
        family: ``"oci"`` or ``"docker"``; default: the base's (OCI from scratch).
            Base layer media types are converted to the family.
        layer_annotations: optional annotations per new layer descriptor.

    Returns:
        ``(manifest, config)``; the manifest's config descriptor carries the
        new config's digest and size (``config.to_bytes()``).

    Raises:
        ImageError: base manifest and config disagree on the layer count, zstd
            layers in a Docker manifest, only one of manifest/config given, or no platform from scratch.
    """
    if (base_manifest is None) != (base_config is None):
        raise ImageError("append needs both the base manifest and its config, or neither (from scratch)")
    if base_config is None:
        if platform is None:
            raise ImageError("an image from scratch needs a platform, e.g. 'linux/amd64'")
        base_config = ImageConfig.scratch(platform)
        base_layers: list[Descriptor] = []
        fam: Family = family or "oci"
    else:
        assert base_manifest is not None
        base_layers = list(base_manifest.layers)
        if len(base_layers) != len(base_config.rootfs.diff_ids):
            raise ImageError(f"base manifest has {len(base_layers)} layers but its config lists "
                             f"{len(base_config.rootfs.diff_ids)} diff_ids")
        fam = family or base_manifest.family
    if isinstance(history_comment, str) or history_comment is None:
        comments = [history_comment] * len(layers)
    else:
        comments = list(history_comment)
        if len(comments) != len(layers):
            raise ImageError("history_comment needs one comment per layer")
    stamp = format_created(created)

    # Config.
    cc = base_config.config or ContainerConfig()
    cc_update: dict[str, Any] = {}
    if env:
        cc_update["env"] = merge_env(cc.env, env)
    if workdir is not None:
        if not workdir.startswith("/"):
            raise ImageError(f"working directory {workdir!r} is not absolute")
        cc_update["working_dir"] = workdir
    if entrypoint is not None:
        cc_update["entrypoint"] = list(entrypoint)
        if cmd is None:
            cc_update["cmd"] = None
    if cmd is not None:
        cc_update["cmd"] = list(cmd)
    if user is not None:
        cc_update["user"] = user
    all_labels = dict(cc.labels or {})
    all_labels.update(labels or {})
    notes = dict(annotations or {})
    notes.setdefault(ANNOTATION_CREATED, stamp)
    if base_manifest is not None:
        notes.setdefault(ANNOTATION_BASE_DIGEST, base_digest or base_manifest.digest)
        if base_name:
            notes.setdefault(ANNOTATION_BASE_NAME, base_name)
    if fam == "docker":
        for k, v in notes.items():
            all_labels.setdefault(k, v)
    if all_labels != (cc.labels or {}):
        cc_update["labels"] = all_labels
    new_cc = cc.model_copy(update=cc_update) if cc_update else cc
    history = list(base_config.history or [])
    history += [History(created=stamp, created_by=created_by, comment=c) for c in comments]
    config = base_config.model_copy(update={
        "created": stamp,
        "config": new_cc,
        "rootfs": RootFS(type="layers", diff_ids=list(base_config.rootfs.diff_ids) + [ly.diff_id for ly in layers]),
        "history": history,
    })
    config = ImageConfig.model_validate(config.to_dict())  # drop cleared (None) fields, forget raw bytes

    # Manifest.
    per_layer = list(layer_annotations) if layer_annotations is not None else [None] * len(layers)
    if len(per_layer) != len(layers):
        raise ImageError("layer_annotations needs one entry per layer")
    new_layers = [d.model_copy(update={"media_type": _convert_layer_type(d.media_type, fam)}) for d in base_layers]
    new_layers += [Descriptor(media_type=_convert_layer_type(ly.media_type, fam), digest=ly.digest, size=ly.size,
                              annotations=dict(a) if a else None) for ly, a in zip(layers, per_layer)]
    config_raw = config.to_bytes()
    config_desc = Descriptor(media_type=MEDIA_TYPE_DOCKER_CONFIG if fam == "docker" else MEDIA_TYPE_OCI_CONFIG,
                             digest=sha256_digest(config_raw), size=len(config_raw))
    manifest = Manifest(
        schema_version=2,
        media_type=MEDIA_TYPE_DOCKER_MANIFEST if fam == "docker" else MEDIA_TYPE_OCI_MANIFEST,
        config=config_desc,
        layers=new_layers,
        annotations=None if fam == "docker" else notes,
    )
    return manifest, config


__all__ = [name for name in dir() if name.startswith("MEDIA_TYPE_")] + [
    "ACCEPT_MANIFESTS", "ANNOTATION_BASE_DIGEST", "ANNOTATION_BASE_NAME", "ANNOTATION_CREATED",
    "ANNOTATION_REF_NAME", "ANNOTATION_REVISION", "ANNOTATION_SOURCE", "ContainerConfig", "Descriptor",
    "History", "INDEX_MEDIA_TYPES", "IMAGE_CONFIG_MEDIA_TYPES", "ImageConfig", "Index", "LayerLike",
    "MANIFEST_MEDIA_TYPES", "Manifest", "Platform", "RootFS", "append", "canonical_json", "format_created",
    "MAX_INDEX_DEPTH", "FetchIndex", "compatible_variants", "merge_env", "normalize_platform", "parse_manifest",
    "platform_candidates", "select_platform",
]
