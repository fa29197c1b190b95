"""The ``kfp.toml`` manifest: pydantic v2 models (strict, frozen) and loading.

Every model forbids unknown keys, is immutable and validates in strict mode
(TOML has real types: ``retries = "2"`` is an error, not a 2). Field
descriptions are the documentation: they appear in ``compose-kfp schema``
(JSON Schema for editors, :func:`json_schema`) and in the README's key
reference (:func:`reference_markdown`).

:func:`load_manifest` is the one way in: it reads the file, applies the
environment and command-line overrides (:data:`ENV_VARS`), refuses literal
secrets, validates, fills the default layers and checks what can be checked
from the manifest alone (files that must exist, names that tasks refer to,
cycles). Every problem becomes one :class:`~compose_kfp.errors.ConfigError`
whose message names the file, the line, the key path and what was expected.
What needs the step interfaces (outputs, types) is checked by
:func:`compose_kfp.manifest.project.load_project`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Literal, Mapping, Sequence, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from compose_kfp.errors import ConfigError
from compose_kfp.oci.errors import InvalidReference
from compose_kfp.oci.reference import Reference

log = logging.getLogger(__name__)

MANIFEST_NAME = "kfp.toml"

JsonValue = Union[bool, int, float, str, list, dict]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_URL_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*@")
#: Transports accepted by ``image.base`` besides a registry reference (skopeo spelling).
BASE_TRANSPORTS = ("oci:", "dir:", "docker-archive:")


# --------------------------------------------------------------------------- secrets

#: Words that make a key name look like it holds a secret (matched per ``_``/``-``-separated word).
SECRET_WORDS = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "token", "auth", "apikey", "credential",
    "credentials", "identitytoken", "registrytoken", "privatekey",
})
_SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key")}


def looks_secret(key: str) -> bool:
    """Whether a key or variable name looks like it holds a secret.

    ``password``, ``HF_TOKEN``, ``aws_secret_access_key``, ``API_KEY``, ``auth``
    do; ``TOKENIZERS_PARALLELISM``, ``password_env`` (it names a variable) and
    ``username`` do not. Matching is per word, case-insensitive.
    """
    words = [w for w in re.split(r"[_\-.\s]+", key.lower()) if w]
    if not words or words[-1] == "env":
        return False
    if any(w in SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:]))


def has_userinfo(reference: str) -> bool:
    """Whether an image reference or URL carries ``user:password@`` credentials.

    A ``name@sha256:...`` digest is not userinfo; ``user:pass@host/repo`` and
    ``https://user:pass@host/simple`` are.
    """
    if _URL_USERINFO.match(reference):
        return True
    if "://" in reference:
        return False
    from compose_kfp.oci.reference import has_userinfo as reference_has_userinfo

    return reference_has_userinfo(reference)


def _refuse_userinfo(value: str, what: str) -> None:
    if has_userinfo(value):
        raise ValueError(
            f"{what} contains credentials (`user:password@`); the value is not shown. Remove them and "
            "let compose-kfp find credentials the way docker and podman do, or use [image.auth]"
        )


# --------------------------------------------------------------------------- value checks

def check_base(value: str) -> str:
    """Validate ``image.base``: ``scratch``, ``oci:PATH[:TAG]``, ``dir:PATH``, ``docker-archive:PATH``,
    ``docker://REF`` or a registry reference by the distribution grammar. Returns ``value`` unchanged.

    Raises ``ValueError`` (turned into a :class:`ConfigError` by the loader) naming the wrong part.
    """
    _refuse_userinfo(value, "the base image reference")
    if value == "scratch":
        return value
    for transport in BASE_TRANSPORTS:
        if value.startswith(transport):
            if not value[len(transport):]:
                raise ValueError(f"`{transport}` needs a path after it, e.g. `{transport}build/base`")
            return value
    _parse_reference(value.removeprefix("docker://"))
    return value


def check_repository(value: str) -> str:
    """Validate ``image.repository``: ``oci:PATH`` or a registry repository without tag or digest.

    Raises ``ValueError`` naming the wrong part; a tag or digest is refused with a pointer to ``image.tags``.
    """
    _refuse_userinfo(value, "the destination repository")
    if value.startswith("oci:"):
        if not value[4:]:
            raise ValueError("`oci:` needs a path after it, e.g. `oci:build/image`")
        return value
    ref = _parse_reference(value.removeprefix("docker://"))
    if ref.digest:
        raise ValueError(f"{value!r} has a digest; a destination is a repository, the digest is computed")
    if ref.tag:
        raise ValueError(
            f"{value!r} has a tag; give the repository only and put {ref.tag!r} in `image.tags`"
        )
    return value


def _parse_reference(value: str) -> Reference:
    try:
        return Reference.parse(value)
    except InvalidReference as e:
        raise ValueError(str(e)) from None


def _check_relative_path(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value


# --------------------------------------------------------------------------- models

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class ProjectConfig(_Model):
    """``[project]``: what this repository is called."""

    name: str = Field(description="Project name; used for the default pipeline name and image labels.")
    description: str | None = Field(default=None, description="One line describing the project.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the project name is empty")
        return v


class AuthConfig(_Model):
    """``[image.auth]``: where credentials come from. References only, never a secret."""

    config: str | None = Field(
        default=None,
        description="Path to a docker config.json or containers auth.json to read credentials from "
        "(`~` expanded). Default: the docker/podman/skopeo search order.",
    )
    helper: str | None = Field(
        default=None,
        description="Name of a docker credential helper (`docker-credential-<helper>`) to ask.",
    )
    username_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the username."
    )
    password_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the password or token."
    )

    @field_validator("username_env", "password_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(
                "expected the NAME of an environment variable (letters, digits, `_`), not its value; "
                "the value is not shown"
            )
        return v


class PathMapping(_Model):
    """A path put into a layer at a chosen place: ``{ src = "data", dst = "/mnt/data" }``."""

    src: str = Field(description="File or folder, relative to the folder of kfp.toml.")
    dst: str | None = Field(
        default=None,
        description="Absolute destination inside the image. Default: `src` under `image.workdir`.",
    )

    @field_validator("src")
    @classmethod
    def _src(cls, v: str) -> str:
        return _check_relative_path(v, "`src`")

    @field_validator("dst")
    @classmethod
    def _dst(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"expected an absolute path inside the image (starting with `/`), got {v!r}")
        return v


def _path_entry_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "path"
    if isinstance(value, dict):
        return "PathMapping"
    return None


PathEntry = Annotated[
    Union[Annotated[str, Tag("path")], Annotated[PathMapping, Tag("PathMapping")]],
    Discriminator(
        _path_entry_tag,
        custom_error_type="path_entry",
        custom_error_message='expected a path string or a table { src = "...", dst = "/..." }',
    ),
]


class LayerConfig(_Model):
    """One ``[[image.layers]]`` entry: one layer blob. Exactly one of ``paths``, ``requirements``, ``rootfs``."""

    name: str = Field(description="Layer name, unique within the image; shown in plans.")
    paths: list[PathEntry] = Field(
        default_factory=list,
        description="Files and folders to add. A plain string goes under `image.workdir` at the same "
        "relative path; a table `{src, dst}` chooses the destination.",
    )
    requirements: str | None = Field(
        default=None,
        description="A requirements file; its packages are installed for the image's platform and "
        "Python into this layer (nothing runs inside the base image).",
    )
    rootfs: str | None = Field(
        default=None,
        description="A root filesystem folder (e.g. from debootstrap) added at `/` as-is; used to "
        "build a base image on top of `scratch`.",
    )
    ignore: list[str] = Field(
        default_factory=list, description="Extra gitignore-style patterns to leave out of this layer."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"expected a name of letters, digits, `_`, `.`, `-`, got {v!r}")
        return v

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list) -> list:
        for entry in v:
            if isinstance(entry, str):
                _check_relative_path(entry, "a path")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "LayerConfig":
        given = [k for k in ("paths", "requirements", "rootfs") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "a layer needs exactly one of `paths`, `requirements` or `rootfs`"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


def _unique_layer_names(layers: list[LayerConfig]) -> list[LayerConfig]:
    seen: set[str] = set()
    for layer in layers:
        if layer.name in seen:
            raise ValueError(f"two layers are called {layer.name!r}; layer names must be unique")
        seen.add(layer.name)
    return layers


def _check_env_names(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name (letters, digits, `_`)")
    return env


#: Environment variables of a container: names checked.
EnvMap = Annotated[dict[str, str], AfterValidator(_check_env_names)]
#: Layers of an image, names unique.
LayerList = Annotated[list[LayerConfig], AfterValidator(_unique_layer_names)]


class ImageSettings(_Model):
    """``[image]``: the base, the destination and what goes on top."""

    base: str = Field(
        description="Base image: a registry reference (`python:3.11-slim`), `oci:PATH[:TAG]`, `dir:PATH`, "
        "`docker-archive:PATH`, or `scratch`."
    )
    repository: str = Field(
        description="Destination repository (`ghcr.io/acme/iris`), or `oci:PATH` for a local OCI layout."
    )
    platforms: list[str] = Field(default_factory=lambda: ["linux/amd64"],
                                 description="Platforms to build, as `os/arch[/variant]`.")
    workdir: str = Field(default="/app", description="Working directory in the image; plain `paths` go here.")
    env: EnvMap = Field(default_factory=dict, description="Environment variables set in the image config.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels set in the image config.")
    user: str | None = Field(default=None, description="User the steps run as (`uid[:gid]` or a name).")
    tags: list[str] = Field(
        default_factory=list,
        description="Extra tags to push, besides the content-derived tag that is always pushed.",
    )
    format: Literal["oci", "docker"] | None = Field(
        default=None, description="Manifest format; default: the base image's format (OCI for `scratch`)."
    )
    compression: Literal["gzip", "zstd"] = Field(default="gzip", description="Layer compression.")
    python: str | None = Field(
        default=None,
        description="Python version of the base image (`3.11`), for the dependency layer; default: "
        "`PYTHON_VERSION` from the base image config.",
    )
    libc: Literal["glibc", "musl"] = Field(default="glibc", description="C library of the base, for wheel tags.")
    index_url: str | None = Field(default=None, description="Package index for requirements (no credentials here).")
    extra_index_urls: list[str] = Field(default_factory=list, description="Extra package indexes.")
    insecure: bool = Field(
        default=False, description="Allow plain HTTP to this registry (always allowed for loopback)."
    )
    auth: AuthConfig | None = Field(default=None, description="Where credentials come from.")
    layers: LayerList | None = Field(
        default=None,
        description="Layers on top of the base, base first. Default: `requirements.txt` if present, "
        "then `data/`, then `src/`.",
    )

    @field_validator("base")
    @classmethod
    def _base(cls, v: str) -> str:
        return check_base(v)

    @field_validator("repository")
    @classmethod
    def _repository(cls, v: str) -> str:
        return check_repository(v)

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("expected at least one platform, e.g. [\"linux/amd64\"]")
        for p in v:
            if not _PLATFORM.match(p):
                raise ValueError(f"expected `os/arch[/variant]` such as `linux/amd64` or `linux/arm64/v8`, got {p!r}")
        if len(set(v)) != len(v):
            raise ValueError("a platform is listed twice")
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"expected an absolute path (starting with `/`), got {v!r}")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not _TAG.match(t):
                raise ValueError(
                    f"{t!r} is not a valid tag: 1-128 of letters, digits, `_`, `.`, `-`, not starting with `.` or `-`"
                )
        return v

    @field_validator("python")
    @classmethod
    def _python(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"3\.\d+", v):
            raise ValueError(f"expected a Python version such as \"3.11\", got {v!r}")
        return v

    @field_validator("index_url")
    @classmethod
    def _index_url(cls, v: str | None) -> str | None:
        if v is not None:
            _refuse_userinfo(v, "the index URL")
        return v

    @field_validator("extra_index_urls")
    @classmethod
    def _extra_index_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            _refuse_userinfo(url, "an index URL")
        return v



class Resources(_Model):
    """Container resources of a step (Kubernetes quantities)."""

    cpu: str | None = Field(default=None, description='CPU request and limit, e.g. "1" or "500m".')
    memory: str | None = Field(default=None, description='Memory request and limit, e.g. "2Gi".')
    gpu: int | None = Field(default=None, ge=0, description="Number of `nvidia.com/gpu` to request.")

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+(\.\d+)?m?", v):
            raise ValueError(f'expected a CPU quantity such as "1", "0.5" or "500m", got {v!r}')
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+(\.\d+)?([EPTGMk]i?|[eE]\d+)?", v):
            raise ValueError(f'expected a memory quantity such as "512Mi", "2Gi" or "1G", got {v!r}')
        return v


class Toleration(_Model):
    """A Kubernetes toleration."""

    key: str | None = Field(default=None, description="Taint key the toleration matches; empty matches all.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="`Equal` (default in Kubernetes) or `Exists`."
    )
    value: str | None = Field(default=None, description="Taint value to match, with `operator = \"Equal\"`.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )


class StepConfig(_Model):
    """``[steps.NAME]``: a Python function or a third-party component file."""

    function: str | None = Field(
        default=None, description="`path/to/file.py:function`, relative to kfp.toml; run by the in-image runtime."
    )
    component: str | None = Field(
        default=None, description="Path to a KFP component YAML file (v1, or a single-container v2 file)."
    )
    description: str | None = Field(default=None, description="Overrides the docstring's first paragraph.")
    resources: Resources | None = Field(default=None, description="CPU, memory and GPU.")
    retries: int = Field(default=0, ge=0, description="Retries on failure (with exponential backoff).")
    timeout: int | None = Field(default=None, gt=0, description="Seconds before the step is stopped.")
    env: EnvMap = Field(default_factory=dict, description="Extra environment for this step.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Kubernetes node selector.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Kubernetes tolerations.")
    requirements: str | None = Field(
        default=None, description="Extra requirements for this step only; the step then gets its own image."
    )
    layers: LayerList = Field(
        default_factory=list, description="Extra layers for this step only; the step then gets its own image."
    )

    @field_validator("function")
    @classmethod
    def _function(cls, v: str | None) -> str | None:
        if v is None:
            return v
        file, sep, name = v.rpartition(":")
        if not sep or not file or not file.endswith(".py") or not _IDENTIFIER.match(name):
            raise ValueError(f"expected `path/to/file.py:function_name`, got {v!r}")
        return v

    @model_validator(mode="after")
    def _function_or_component(self) -> "StepConfig":
        if (self.function is None) == (self.component is None):
            raise ValueError("a step needs exactly one of `function` or `component`")
        if self.component is not None and (self.requirements or self.layers):
            raise ValueError("`requirements` and `layers` only apply to `function` steps; "
                             "a component file brings its own image")
        return self

    @property
    def function_file(self) -> str | None:
        """The ``path/to/file.py`` part of :attr:`function`, or ``None`` for a component step."""
        return self.function.rpartition(":")[0] if self.function else None

    @property
    def function_name(self) -> str | None:
        """The function name part of :attr:`function`, or ``None`` for a component step."""
        return self.function.rpartition(":")[2] if self.function else None


class ParamRef(_Model):
    """An argument taken from a pipeline parameter: ``{ param = "n_estimators" }``."""

    param: str = Field(description="Name of a key of `[pipeline.params]`.")


class TaskOutputRef(_Model):
    """An argument taken from another task's output: ``{ task = "load", output = "train_set" }``."""

    task: str = Field(description="Name of a task of `[pipeline.tasks]`.")
    output: str = Field(description="Name of an output of that task's step.")


class LiteralValue(_Model):
    """An explicit literal, needed for tables: ``{ value = { a = 1 } }``."""

    value: JsonValue = Field(description="The literal: any TOML value, a table included.")


_ARG_MARKERS = {"param": "ParamRef", "task": "TaskOutputRef", "value": "LiteralValue"}


def _arg_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        found = [tag for key, tag in _ARG_MARKERS.items() if key in value]
        return found[0] if len(found) == 1 else None
    for t, tag in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list")):
        if isinstance(value, t):
            return tag
    return None


ArgValue = Annotated[
    Union[
        Annotated[ParamRef, Tag("ParamRef")],
        Annotated[TaskOutputRef, Tag("TaskOutputRef")],
        Annotated[LiteralValue, Tag("LiteralValue")],
        Annotated[bool, Tag("bool")],
        Annotated[int, Tag("int")],
        Annotated[float, Tag("float")],
        Annotated[str, Tag("str")],
        Annotated[list, Tag("list")],
    ],
    Discriminator(
        _arg_tag,
        custom_error_type="argument",
        custom_error_message='expected a literal (string, number, boolean, array), { param = "..." }, '
        '{ task = "...", output = "..." } or { value = ... } for a literal table',
    ),
]


class TaskConfig(_Model):
    """``[pipeline.tasks.NAME]``: one use of a step in the pipeline."""

    step: str = Field(description="Name of a `[steps.*]` entry.")
    args: dict[str, ArgValue] = Field(
        default_factory=dict,
        description="Arguments by input name: a literal, `{param = ...}`, `{task = ..., output = ...}`, "
        "or `{value = ...}` for a literal table.",
    )
    after: list[str] = Field(default_factory=list, description="Tasks that must finish first (besides data dependencies).")

    def dependencies(self) -> list[str]:
        """Names of the tasks this one waits for: data dependencies (in argument order), then ``after``; no repeats."""
        deps = [a.task for a in self.args.values() if isinstance(a, TaskOutputRef)] + list(self.after)
        return list(dict.fromkeys(deps))


class VolumeConfig(_Model):
    """Shared volume for data passing (``pipeline.data_passing = "volume"``)."""

    size: str = Field(default="1Gi", description="Requested size of the volume.")
    storage_class: str | None = Field(default=None, description="Storage class; default: the cluster's.")
    access_modes: list[str] = Field(default_factory=lambda: ["ReadWriteOnce"], description="PVC access modes.")


class PipelineConfig(_Model):
    """``[pipeline]``: how the steps are connected."""

    name: str | None = Field(default=None, description="Pipeline name; default: the project name.")
    description: str | None = Field(default=None, description="Pipeline description.")
    params: dict[str, JsonValue] = Field(default_factory=dict, description="Pipeline parameters and their defaults.")
    tasks: dict[str, TaskConfig] = Field(default_factory=dict, description="The tasks, by name.")
    service_account: str | None = Field(default=None, description="Kubernetes service account for the pods.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Names of image pull secrets.")
    parallelism: int | None = Field(default=None, gt=0, description="At most this many pods at once.")
    ttl: int | None = Field(default=None, ge=0, description="Seconds to keep the workflow after it finishes.")
    pod_gc: Literal["OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"] | None = Field(
        default=None, description="When to delete pods."
    )
    data_passing: Literal["artifacts", "volume"] = Field(
        default="artifacts", description="Pass files through the artifact repository, or a shared volume."
    )
    volume: VolumeConfig = Field(default_factory=VolumeConfig, description="The shared volume, for `volume` passing.")


class RenderSettings(_Model):
    """``[render]``: where and how outputs are rendered."""

    output_dir: str = Field(default="build", description="Folder for rendered files, relative to kfp.toml.")
    templates: str | None = Field(default=None, description="Folder of templates that override the built-in ones.")
    targets: list[Literal["argo", "kfp"]] = Field(
        default_factory=lambda: ["argo"], description="What to render besides component files."
    )


class Manifest(_Model):
    """The whole ``kfp.toml``."""

    project: ProjectConfig = Field(description="The project: its name and description.")
    image: ImageSettings = Field(description="The image: base, destination, layers, credentials.")
    steps: dict[str, StepConfig] = Field(
        default_factory=dict, description="Pipeline steps by name: Python functions or component files."
    )
    pipeline: PipelineConfig | None = Field(
        default=None, description="How the steps are wired into a pipeline; without it only components are rendered."
    )
    render: RenderSettings = Field(default_factory=RenderSettings, description="Where rendered files go.")

    @field_validator("steps")
    @classmethod
    def _step_names(cls, v: dict[str, StepConfig]) -> dict[str, StepConfig]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
                raise ValueError(f"step name {name!r}: use letters, digits, `_` and `-`")
        return v

    @property
    def pipeline_name(self) -> str:
        """``pipeline.name``, or the project name when there is none."""
        return (self.pipeline.name if self.pipeline and self.pipeline.name else None) or self.project.name


# --------------------------------------------------------------------------- environment

@dataclasses.dataclass(frozen=True)
class EnvVar:
    """One environment variable that overrides a key of ``kfp.toml``.

    ``kind`` says how the text is parsed: ``str`` as is, ``list`` split on commas
    (blanks dropped), ``bool`` from ``1/true/yes/on`` or ``0/false/no/off``.
    """

    name: str
    key: str
    kind: Literal["str", "list", "bool"]
    description: str


#: Environment variables read by :func:`load_manifest`, in documentation order. An empty value counts as unset.
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("COMPOSE_KFP_BASE", "image.base", "str", "Base image reference."),
    EnvVar("COMPOSE_KFP_REPOSITORY", "image.repository", "str", "Destination repository (or `oci:PATH`)."),
    EnvVar("COMPOSE_KFP_PLATFORMS", "image.platforms", "list", "Comma-separated platforms, e.g. `linux/amd64,linux/arm64`."),
    EnvVar("COMPOSE_KFP_TAGS", "image.tags", "list", "Comma-separated extra tags."),
    EnvVar("COMPOSE_KFP_COMPRESSION", "image.compression", "str", "`gzip` or `zstd`."),
    EnvVar("COMPOSE_KFP_INDEX_URL", "image.index_url", "str", "Package index for requirements."),
    EnvVar("COMPOSE_KFP_INSECURE", "image.insecure", "bool", "Allow plain HTTP to the registry (`1`/`0`)."),
    EnvVar("COMPOSE_KFP_OUTPUT_DIR", "render.output_dir", "str", "Folder for rendered files."),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_value(var: EnvVar, text: str) -> Any:
    if var.kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if var.kind == "bool":
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise ConfigError(f"environment variable {var.name}: expected 1/true/yes or 0/false/no, got {text!r}.")
    return text


# --------------------------------------------------------------------------- loading

@dataclasses.dataclass(frozen=True)
class LoadedManifest:
    """A validated ``kfp.toml`` with where it came from.

    Attributes:
        path: absolute path of the ``kfp.toml`` file.
        root: the folder holding it; every relative path in the manifest is relative to it.
        manifest: the validated model, with the default layers filled in and overrides applied.
        layers_defaulted: True when ``[[image.layers]]`` was absent and the defaults were used.
        sources: key path (``image.repository``) -> where a value other than kfp.toml came from
            (``environment variable COMPOSE_KFP_REPOSITORY`` or ``command line``).
    """

    path: Path
    root: Path
    manifest: Manifest
    layers_defaulted: bool = False
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def resolve(self, relative: str) -> Path:
        """``relative`` (a path written in kfp.toml, ``~`` expanded) made absolute against :attr:`root`."""
        return (self.root / Path(relative).expanduser()).resolve()

    @property
    def output_dir(self) -> Path:
        """The absolute folder for rendered files (``render.output_dir``)."""
        return self.resolve(self.manifest.render.output_dir)

    @property
    def display_path(self) -> str:
        """:attr:`path` as messages show it (relative to the current directory when below it)."""
        return display_path(self.path)

    @functools.cached_property
    def _index(self) -> "_KeyIndex":
        try:
            return _KeyIndex(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return _KeyIndex("")

    def line_of(self, key: str | Sequence[Any]) -> int | None:
        """The line of ``kfp.toml`` where ``key`` (``pipeline.tasks.train.args.dataset``, or a
        sequence of keys and list indexes) or its longest present prefix is set; ``None`` if
        none is, or when the value came from the environment or the command line."""
        parts = tuple(int(p) if isinstance(p, str) and p.isdigit() else p
                      for p in (key.split(".") if isinstance(key, str) else key))
        for n in range(len(parts), 0, -1):
            if _dotted(parts[:n]) in self.sources:
                return None
        return self._index.line_for(parts)

    def where(self, key: str | Sequence[Any]) -> str:
        """``file:line`` (or just ``file``) for messages about ``key``; see :meth:`line_of`."""
        line = self.line_of(key)
        return f"{self.display_path}:{line}" if line else self.display_path


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it is below it, else absolute (for messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def find_manifest(path: Path | str | None = None) -> Path:
    """The ``kfp.toml`` a user means by ``path``: the file itself, or ``kfp.toml`` in a folder (default: cwd).

    Raises :class:`ConfigError` when there is none, saying how to create one.
    """
    p = Path(path) if path is not None else Path.cwd()
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.is_file():
        raise ConfigError(
            f"{display_path(p)}: no such file. Run `compose-kfp init` in the project folder to create one, "
            "or point to it with `-f PATH` / `-C FOLDER`."
        )
    return p.resolve()


def load_manifest(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedManifest:
    """Read, override, validate and complete a ``kfp.toml``.

    Args:
        path: the ``kfp.toml`` file, or a folder holding one.
        env: environment to read :data:`ENV_VARS` from; ``None`` means ``os.environ``.
        overrides: command-line values by dotted key path (``{"image.repository": "oci:out"}``);
            ``None`` values are ignored. They win over the environment, which wins over the file.

    Order of work: TOML parsing; literal secrets refused (before anything could echo them);
    overrides applied; model validation; default layers (``requirements.txt`` if present,
    then ``data/``, then ``src/``, relative to the file's folder) when ``[[image.layers]]``
    is absent; files named by layers and steps must exist; task references
    (``step``, ``param``, ``task``, ``after``) must name existing entries and the task
    graph must have no cycle.

    Raises:
        ConfigError: one message naming the file, the line, the key path and what was
            expected (several lines when there are several problems; the first in the
            file comes first). A secret value is never part of the message.
    """
    file = find_manifest(path)
    shown = display_path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {e.start}); TOML files must be UTF-8.") from None
    except OSError as e:
        raise ConfigError(f"{shown}: cannot read: {e.strerror}.") from None
    index = _KeyIndex(text)
    data = _parse_toml(text, shown, index)
    problems = _Problems(shown, index, data)
    _scan_secrets(data, (), problems)
    problems.raise_if_any()

    sources: dict[str, str] = {}
    env = os.environ if env is None else env
    for var in ENV_VARS:
        raw = env.get(var.name)
        if raw:
            _set_override(data, var.key, _env_value(var, raw), f"environment variable {var.name}", sources)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_override(data, key, value, "command line", sources)
    problems.sources = sources
    _scan_secrets(data, (), problems)
    problems.raise_if_any()

    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
    else:
        errors = []
    if errors:
        for err in errors:
            problems.add_pydantic(err)
        problems.merge_typos()
        problems.raise_if_any()

    root = file.parent
    layers_defaulted = manifest.image.layers is None
    if layers_defaulted:
        defaults = default_layers(root)
        log.debug("no [[image.layers]] in %s; using the defaults %s", shown, [l.name for l in defaults])
        manifest = manifest.model_copy(update={"image": manifest.image.model_copy(update={"layers": defaults})})
    _check_files(manifest, root, problems, check_layers=not layers_defaulted)
    check_references(manifest, problems.add)
    problems.raise_if_any()
    return LoadedManifest(path=file, root=root, manifest=manifest, layers_defaulted=layers_defaulted,
                          sources=sources)


def default_layers(root: Path) -> list[LayerConfig]:
    """The layers used when ``[[image.layers]]`` is absent, base first.

    ``deps`` from ``requirements.txt`` if that file exists, then ``data`` from ``data/``,
    then ``src`` from ``src/``, each only if present under ``root``. May be empty.
    """
    layers = []
    if (root / "requirements.txt").is_file():
        layers.append(LayerConfig(name="deps", requirements="requirements.txt"))
    if (root / "data").is_dir():
        layers.append(LayerConfig(name="data", paths=["data"]))
    if (root / "src").is_dir():
        layers.append(LayerConfig(name="src", paths=["src"]))
    return layers


def _parse_toml(text: str, shown: str, index: "_KeyIndex") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
        line = col = None
        if m:
            line, col = int(m.group(1)), int(m.group(2))
            msg = msg[: m.start()]
        elif msg.endswith("(at end of document)"):
            msg = msg[: -len("(at end of document)")].rstrip()
            line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        if msg.startswith("Cannot overwrite a value") or msg.startswith("Cannot declare"):
            dup = index.duplicates[0] if index.duplicates else None
            if dup is not None:
                key, line, first = dup
                what = "table" if msg.startswith("Cannot declare") else "key"
                raise ConfigError(
                    f"{shown}:{line}: {_dotted(key)}: invalid TOML: this {what} is already defined on line "
                    f"{first}; each {what} may be defined once (merge the two, or remove one)."
                ) from None
        where = f"{shown}:{line}" + (f":{col}" if col else "") if line else shown
        source_line = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
        excerpt = ""
        if source_line.strip():
            key_part = source_line.split("=", 1)[0] if "=" in source_line else ""
            if looks_secret(key_part.strip().strip("\"'").split(".")[-1]):
                excerpt = " (the line is not shown: it may hold a secret)"
            else:
                excerpt = f" in `{source_line.strip()[:120]}`"
        raise ConfigError(
            f"{where}: invalid TOML: {msg[:1].lower() + msg[1:]}{excerpt}. "
            "See https://toml.io for the syntax (strings need quotes, one `key = value` per line)."
        ) from None


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _scan_secrets(node: Any, loc: tuple, problems: "_Problems") -> None:
    """Refuse literal secrets: any secret-looking key in ``[image.auth]``, and secret-looking
    environment variables set to a literal in ``image.env`` or ``steps.*.env`` (they would be
    stored in the image config or the rendered workflow)."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        here = loc + (key,)
        if loc == ("image", "auth") and (looks_secret(key) or key in ("username", "user")) \
                and key not in AuthConfig.model_fields:
            problems.add(here, _secret_message(key))
        elif len(loc) >= 1 and loc[-1] == "env" and isinstance(key, str) and looks_secret(key) and \
                (loc == ("image", "env") or (len(loc) == 3 and loc[0] == "steps")):
            problems.add(here, f"{key} looks like a secret and would be stored in clear in the "
                               "image or the rendered workflow (the value is not shown). Set it at run "
                               "time from a Kubernetes secret instead")
        elif isinstance(value, dict):
            _scan_secrets(value, here, problems)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                _scan_secrets(item, here + (i,), problems)


def _secret_message(key: str) -> str:
    if key in ("username", "user"):
        return ('a literal user name is not accepted here; name the environment variable that holds it '
                'with `username_env = "REGISTRY_USER"`')
    return (f"a literal {key} is refused: kfp.toml is committed and must not hold secrets "
            "(the value is not shown; remove it, and rotate it if it was ever committed). Name the "
            'environment variable that holds it with `password_env = "REGISTRY_PASSWORD"`, use a '
            'credential helper (`helper = "..."`) or a docker config file (`config = "..."`)')


def _set_override(data: dict, key: str, value: Any, source: str, sources: dict[str, str]) -> None:
    parts = key.split(".")
    model: Any = Manifest
    node = data
    for i, part in enumerate(parts):
        if isinstance(model, type) and issubclass(model, BaseModel):
            if part not in model.model_fields:
                raise ConfigError(f"{source}: unknown key {key!r}{_did_you_mean(part, model.model_fields)}.")
            model = _field_model(model.model_fields[part].annotation)
        elif model is dict:
            model = None
        else:
            raise ConfigError(f"{source}: {key!r} cannot be set: {'.'.join(parts[:i])} is not a table.")
        if i == len(parts) - 1:
            node[part] = value
        else:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
    sources[key] = source


def _field_model(annotation: Any) -> Any:
    """The model class (or ``dict``) a field annotation holds a table of, else ``None``."""
    for t in _flatten(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
        if typing.get_origin(t) is dict or t is dict:
            return dict
    return None


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [t for a in typing.get_args(annotation) for t in _flatten(a)]
    return [annotation]


def _did_you_mean(word: str, known: Sequence[str] | Mapping[str, Any]) -> str:
    match = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _check_files(manifest: Manifest, root: Path, problems: "_Problems", *, check_layers: bool) -> None:
    def must_exist(loc: tuple, rel: str, kind: Literal["file", "dir", "any"]) -> None:
        p = (root / Path(rel).expanduser())
        ok = p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists()
        if ok:
            return
        what = {"file": "file", "dir": "folder", "any": "file or folder"}[kind]
        parent = p.parent
        hint = ""
        if parent.is_dir():
            hint = _did_you_mean(p.name, sorted(c.name for c in parent.iterdir()))
        problems.add(loc, f"{what} {rel!r} not found (relative to {root}){hint}")

    def layers(prefix: tuple, items: Sequence[LayerConfig]) -> None:
        for i, layer in enumerate(items):
            for j, entry in enumerate(layer.paths):
                src = entry if isinstance(entry, str) else entry.src
                loc = prefix + (i, "paths", j) + (() if isinstance(entry, str) else ("src",))
                must_exist(loc, src, "any")
            if layer.requirements:
                must_exist(prefix + (i, "requirements"), layer.requirements, "file")
            if layer.rootfs:
                must_exist(prefix + (i, "rootfs"), layer.rootfs, "dir")

    if check_layers:
        layers(("image", "layers"), manifest.image.layers or ())
    image_layer_names = {layer.name for layer in manifest.image.layers or ()}
    for name, step in manifest.steps.items():
        if step.function_file:
            must_exist(("steps", name, "function"), step.function_file, "file")
        if step.component:
            must_exist(("steps", name, "component"), step.component, "file")
        if step.requirements:
            must_exist(("steps", name, "requirements"), step.requirements, "file")
        layers(("steps", name, "layers"), step.layers)
        for i, layer in enumerate(step.layers):
            if layer.name in image_layer_names:
                problems.add(("steps", name, "layers", i, "name"),
                             f"layer {layer.name!r} is already a layer of [image]; give it another name")
    if manifest.render.templates:
        must_exist(("render", "templates"), manifest.render.templates, "dir")


def check_references(manifest: Manifest, report: Callable[[tuple, str], None]) -> None:
    """Check what ``[pipeline]`` refers to by name, from the manifest alone.

    Reports (by calling ``report(key_path, message)``, in file order) a task whose ``step``
    is not a ``[steps.*]`` entry, a ``{param = ...}`` not in ``pipeline.params``, a
    ``{task = ...}`` or ``after`` entry that is not a task (or is the task itself), and
    each cycle in the task graph, named as ``a -> b -> a``. Output names and types
    need the step interfaces and are checked by :func:`compose_kfp.pipeline.graph.resolve_graph`.
    """
    pipeline = manifest.pipeline
    if pipeline is None:
        return
    tasks = pipeline.tasks
    for name, task in tasks.items():
        base = ("pipeline", "tasks", name)
        if task.step not in manifest.steps:
            known = ", ".join(manifest.steps) or "none are defined"
            report(base + ("step",), f"no step called {task.step!r}{_did_you_mean(task.step, manifest.steps)} "
                                     f"(steps: {known})")
        for arg, value in task.args.items():
            loc = base + ("args", arg)
            if isinstance(value, ParamRef) and value.param not in pipeline.params:
                report(loc + ("param",), f"no pipeline parameter called {value.param!r}"
                                         f"{_did_you_mean(value.param, pipeline.params)}; define it in "
                                         f"[pipeline.params]")
            elif isinstance(value, TaskOutputRef):
                if value.task == name:
                    report(loc + ("task",), "a task cannot take its own output")
                elif value.task not in tasks:
                    report(loc + ("task",), f"no task called {value.task!r}{_did_you_mean(value.task, tasks)}")
        for i, dep in enumerate(task.after):
            if dep == name:
                report(base + ("after", i), "a task cannot run after itself")
            elif dep not in tasks:
                report(base + ("after", i), f"no task called {dep!r}{_did_you_mean(dep, tasks)}")
    for cycle in find_cycles({n: [d for d in t.dependencies() if d in tasks and d != n] for n, t in tasks.items()}):
        report(("pipeline", "tasks", cycle[0]),
               f"the tasks form a cycle: {' -> '.join(cycle + [cycle[0]])}; remove one of these "
               "dependencies (an argument `{ task = ... }` or an `after` entry)")


def find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Cycles in a dependency graph (``node -> nodes it depends on``), each as a list of nodes.

    Each cycle is reported once, starting at its node that comes first in ``deps``'s order,
    following dependency edges; nodes absent from ``deps`` are ignored. Deterministic.
    """
    order = {n: i for i, n in enumerate(deps)}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, ()):
            if dep not in order:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    start = min(range(len(cycle)), key=lambda k: order[cycle[k]])
                    cycles.append(cycle[start:] + cycle[:start])
            elif state.get(dep) is None:
                visit(dep)
        stack.pop()
        state[node] = 2

    for n in deps:
        if n not in state:
            visit(n)
    return cycles


# --------------------------------------------------------------------------- error messages

_EXPECTED_BY_TYPE = {
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "bool_type": "true or false", "list_type": "an array",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
    "dataclass_type": "a table",
}


def _describe_input(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} value"


_ALTERNATIVE_NAMES = {"true or false": "a boolean"}


class _Problems:
    """Collects (key path, message) problems and turns them into one :class:`ConfigError`."""

    def __init__(self, shown: str, index: "_KeyIndex", data: dict):
        self.shown = shown
        self.index = index
        self.data = data
        self.sources: Mapping[str, str] = {}
        self.items: list[tuple[tuple, str, list[str]]] = []  # loc, message, expected alternatives

    def add(self, loc: Sequence[Any], message: str) -> None:
        self.items.append((tuple(loc), message, []))

    def add_pydantic(self, err: Mapping[str, Any]) -> None:
        loc = self._clean_loc(err["loc"], keep_last=err["type"] == "missing")
        etype = err["type"]
        if etype == "extra_forbidden":
            parent, key = loc[:-1], loc[-1]
            known = _known_keys(parent, self.data)
            table = f"[{_dotted(parent)}]" if parent else "the top level"
            if looks_secret(str(key)):
                self.items.append((loc, f"unknown key {key!r} (its value is not shown); kfp.toml holds no secrets. "
                                        f"Known keys of {table}: {', '.join(known)}", []))
                return
            self.items.append((loc, f"unknown key{_did_you_mean(key, known)} Known keys of {table}: "
                                    f"{', '.join(known)}", []))
            return
        if etype == "missing":
            desc = _field_description(loc, self.data)
            self.items.append((loc, "required key is missing" + (f": {desc}" if desc else ""), []))
            return
        if etype in _EXPECTED_BY_TYPE:
            expected = _EXPECTED_BY_TYPE[etype]
            for prev_loc, _msg, alternatives in self.items:
                if prev_loc == loc and alternatives:
                    alternatives.append(expected)
                    return
            self.items.append((loc, f"got {_describe_input(err.get('input'))}", [expected]))
            return
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif msg.startswith("Input should be "):
            what = msg[len("Input should be "):]
            if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
                what = "a number " + what
            msg = "expected " + what + f", got {_describe_input(err.get('input'))}"
        self.items.append((loc, msg, []))

    def merge_typos(self) -> None:
        """Drop "required key is missing" for a key that an unknown key next to it is a typo of."""
        typos = set()
        for loc, _message, _alt in self.items:
            if loc and "did you mean" in _message and _message.startswith("unknown key"):
                known = _known_keys(loc[:-1], self.data)
                match = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
                if match:
                    typos.add(loc[:-1] + (match[0],))
        self.items = [item for item in self.items
                      if not (item[0] in typos and item[1].startswith("required key is missing"))]

    def _clean_loc(self, loc: Sequence[Any], *, keep_last: bool) -> tuple:
        """Drop pydantic's union tags from ``loc``, keeping only keys and indexes present in the data."""
        out: list[Any] = []
        node: Any = self.data
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, dict) and part in node:
                out.append(part)
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                out.append(part)
                node = node[part]
            elif last and keep_last:
                out.append(part)
        return tuple(out)

    def _where(self, loc: tuple) -> tuple[str, int]:
        for n in range(len(loc), 0, -1):
            source = self.sources.get(_dotted(loc[:n]))
            if source:
                return f"{self.shown} (value from {source})", 0
        line = self.index.line_for(loc)
        return (f"{self.shown}:{line}" if line else self.shown), line or 0

    def raise_if_any(self) -> None:
        if not self.items:
            return
        rendered = []
        for loc, message, alternatives in self.items:
            where, line = self._where(loc)
            if alternatives:
                uniq = list(dict.fromkeys(alternatives))
                if len(uniq) > 1:
                    uniq = [_ALTERNATIVE_NAMES.get(u, u) for u in uniq]
                expected = uniq[0] if len(uniq) == 1 else ", ".join(uniq[:-1]) + " or " + uniq[-1]
                message = f"expected {expected}, {message}"
            key = _dotted(loc) if loc else "(top level)"
            end = "" if message.endswith(("?", ".")) else "."
            rendered.append((line, f"{where}: {key}: {message}{end}"))
        rendered.sort(key=lambda r: r[0])
        lines = [r[1] for r in rendered]
        self.items.clear()
        if len(lines) == 1:
            raise ConfigError(lines[0])
        raise ConfigError(lines[0] + "\n" + f"{len(lines) - 1} more problem(s):\n" +
                          "\n".join("  " + line for line in lines[1:]))


def _model_path(loc: Sequence[Any], data: Any = None) -> tuple[Any, Any]:
    """Walk the model types (and ``data``, to choose between union members) along ``loc``.

    Returns (the model class the path ends in, or ``None``; the field info of its last key, or ``None``).
    """
    current: Any = Manifest
    info = None
    node = data
    for part in loc:
        model = _pick_model(current, node)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            info = model.model_fields[part]
            current = info.annotation
        else:
            nxt = None
            for t in _flatten(current):
                origin, args = typing.get_origin(t), typing.get_args(t)
                if isinstance(part, int) and origin is list and args:
                    nxt = args[0]
                    break
                if isinstance(part, str) and origin is dict and len(args) == 2:
                    nxt = args[1]
                    break
            if nxt is None:
                return None, None
            current, info = nxt, None
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return _pick_model(current, node), info


def _pick_model(annotation: Any, node: Any) -> type[BaseModel] | None:
    models = [t for t in _flatten(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    if not models:
        return None
    if len(models) == 1 or not isinstance(node, dict):
        return models[0]
    return max(models, key=lambda m: len(set(node) & set(m.model_fields)))


def _known_keys(parent: Sequence[Any], data: Any) -> list[str]:
    model, _ = _model_path(parent, data)
    return list(model.model_fields) if model is not None else []


def _field_description(loc: Sequence[Any], data: Any) -> str | None:
    _, info = _model_path(loc, data)
    return info.description if info is not None else None


# --------------------------------------------------------------------------- TOML key lines

class _KeyIndex:
    """Line numbers of the keys of a TOML document, by key path (array-of-tables entries by index).

    A light scanner, not a parser: it follows table headers, arrays of tables,
    dotted and quoted keys, and skips the inside of strings (multi-line ones
    included) and of values spanning several lines. Keys inside inline tables
    and arrays are found through their enclosing key (:meth:`line_for` falls back
    to the longest known prefix). ``duplicates`` lists ``(key path, line, first line)``
    for keys set twice, to explain tomllib's "Cannot overwrite a value".
    """

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        self.duplicates: list[tuple[tuple, int, int]] = []
        self._aot: dict[tuple, int] = {}
        self._tables: dict[tuple, int] = {}  # explicitly declared [tables] -> line
        self._scan(text)

    def line_for(self, loc: Sequence[Any]) -> int | None:
        """The line of ``loc`` or of its longest prefix that appears in the text, else ``None``."""
        loc = tuple(loc)
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None

    def _record(self, path: tuple, line: int, *, value: bool) -> None:
        if path in self.lines:
            if value:
                self.duplicates.append((path, line, self.lines[path]))
            return
        self.lines[path] = line

    def _resolve(self, keys: list[str]) -> tuple:
        out: list[Any] = []
        for k in keys:
            out.append(k)
            if tuple(out) in self._aot:
                out.append(self._aot[tuple(out)])
        return tuple(out)

    def _scan(self, text: str) -> None:
        table: tuple = ()
        pending: str | None = None  # open multi-line string delimiter
        depth = 0
        for lineno, line in enumerate(text.splitlines(), start=1):
            pos = 0
            if pending:
                end = line.find(pending)
                if end < 0:
                    continue
                pending = None
                pos = end + 3
                pending, depth = _scan_value(line, pos, depth)
                continue
            if depth > 0:
                pending, depth = _scan_value(line, 0, depth)
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                keys, _ = _parse_key(stripped, 2)
                if keys is None:
                    continue
                parent = self._resolve(keys[:-1])
                aot_path = parent + (keys[-1],)
                self._aot[aot_path] = self._aot.get(aot_path, -1) + 1
                table = aot_path + (self._aot[aot_path],)
                self._record(aot_path, lineno, value=False)
                self._record(table, lineno, value=False)
                continue
            if stripped.startswith("["):
                keys, _ = _parse_key(stripped, 1)
                if keys is None:
                    continue
                table = self._resolve(keys)
                if table in self._tables:
                    self.duplicates.append((table, lineno, self._tables[table]))
                self._tables.setdefault(table, lineno)
                for n in range(1, len(table) + 1):
                    self._record(table[:n], lineno, value=False)
                continue
            indent = len(line) - len(line.lstrip())
            keys, end = _parse_key(line, indent)
            if keys is None or end >= len(line) or line[end] != "=":
                continue
            full = table + tuple(keys)
            for n in range(len(table) + 1, len(full)):
                self._record(full[:n], lineno, value=False)
            self._record(full, lineno, value=True)
            pending, depth = _scan_value(line, end + 1, 0)


def _parse_key(s: str, pos: int) -> tuple[list[str] | None, int]:
    """Parse a dotted key starting at ``pos``; return (parts, index after it and trailing blanks/``]``)."""
    parts: list[str] = []
    n = len(s)
    while True:
        while pos < n and s[pos] in " \t":
            pos += 1
        if pos >= n:
            return None, pos
        c = s[pos]
        if c in "\"'":
            end = pos + 1
            buf = []
            while end < n and s[end] != c:
                if c == '"' and s[end] == "\\" and end + 1 < n:
                    buf.append(s[end: end + 2].encode().decode("unicode_escape"))
                    end += 2
                    continue
                buf.append(s[end])
                end += 1
            if end >= n:
                return None, end
            parts.append("".join(buf))
            pos = end + 1
        else:
            m = _BARE_KEY.match(s, pos)
            if not m:
                return None, pos
            parts.append(m.group(0))
            pos = m.end()
        while pos < n and s[pos] in " \t":
            pos += 1
        if pos < n and s[pos] == ".":
            pos += 1
            continue
        while pos < n and s[pos] in " \t]":
            pos += 1
        return parts, pos


def _scan_value(line: str, pos: int, depth: int) -> tuple[str | None, int]:
    """Follow a value from ``pos`` to the end of ``line``: bracket depth, and an unclosed multi-line string."""
    n = len(line)
    while pos < n:
        c = line[pos]
        if c == "#":
            break
        if line.startswith('"""', pos) or line.startswith("'''", pos):
            delim = line[pos: pos + 3]
            end = line.find(delim, pos + 3)
            if end < 0:
                return delim, depth
            pos = end + 3
            continue
        if c == '"':
            pos += 1
            while pos < n and line[pos] != '"':
                pos += 2 if line[pos] == "\\" else 1
            pos += 1
            continue
        if c == "'":
            end = line.find("'", pos + 1)
            pos = n if end < 0 else end + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        pos += 1
    return None, depth


# --------------------------------------------------------------------------- schema and reference

def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``kfp.toml``, from the models, with a description on every key.

    Editors (taplo, Even Better TOML) use it for completion and checks; ``compose-kfp schema`` prints it.
    It checks shape and types; what needs the file system or several keys at once
    (paths exist, references resolve, no cycles) is only checked by :func:`load_manifest`.
    """
    schema = Manifest.model_json_schema(mode="validation")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **schema, "title": "kfp.toml",
              "description": "The compose-kfp project manifest (kfp.toml)."}
    return schema


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One documented key of ``kfp.toml``: dotted path (``image.layers[].paths``, ``steps.<name>.retries``),
    TOML type, default (as TOML text, or ``None`` when required or not set), and description."""

    path: str
    type: str
    default: str | None
    required: bool
    description: str


def iter_keys(model: type[BaseModel] = Manifest, prefix: str = "") -> Iterator[KeyDoc]:
    """Every key of the manifest, depth first in declaration order (tables before their keys)."""
    import json

    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = info.annotation
        default = None
        if not info.is_required():
            value = info.get_default(call_default_factory=True)
            if isinstance(value, BaseModel):
                default = None
            elif value is not None and value != [] and value != {}:
                default = json.dumps(value)
        yield KeyDoc(path, _toml_type(ann), default, info.is_required(), info.description or "")
        for t in _flatten(ann):
            origin, args = typing.get_origin(t), typing.get_args(t)
            if isinstance(t, type) and issubclass(t, BaseModel):
                yield from iter_keys(t, path + ".")
            elif origin is list and args:
                for m in _flatten(args[0]):
                    if isinstance(m, type) and issubclass(m, BaseModel):
                        yield from iter_keys(m, path + "[].")
            elif origin is dict and len(args) == 2:
                placeholder = {"steps": "<step>", "tasks": "<task>", "args": "<input>"}.get(name, "<name>")
                seen: set[type] = set()
                for m in _flatten(args[1]):
                    if isinstance(m, type) and issubclass(m, BaseModel) and m not in seen:
                        seen.add(m)
                        yield from iter_keys(m, f"{path}.{placeholder}.")


def _toml_type(annotation: Any) -> str:
    names = []
    for t in _flatten(annotation):
        origin = typing.get_origin(t)
        if t is type(None):
            continue
        if origin is Literal:
            names.append("one of " + ", ".join(f'"{a}"' for a in typing.get_args(t)))
        elif origin is list or t is list:
            names.append("array")
        elif origin is dict or t is dict or (isinstance(t, type) and issubclass(t, BaseModel)):
            names.append("table")
        else:
            names.append({str: "string", int: "integer", float: "float", bool: "boolean"}.get(t, str(t)))
    return " or ".join(dict.fromkeys(names))


def reference_markdown() -> str:
    """The README's ``kfp.toml`` key reference (Markdown): every key, the environment variables
    (:data:`ENV_VARS`), generated from the model descriptions. A test keeps the README in sync."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for k in iter_keys():
        default = "required" if k.required else (f"`{k.default}`" if k.default else "")
        description = k.description.replace("|", "\\|")
        rows.append(f"| `{k.path}` | {k.type} | {default} | {description} |")
    env = ["| variable | sets | meaning |", "| --- | --- | --- |"]
    for v in ENV_VARS:
        env.append(f"| `{v.name}` | `{v.key}` | {v.description} |")
    return "\n".join(rows) + "\n\nEnvironment variables (they win over kfp.toml; command-line flags win over them):\n\n" \
        + "\n".join(env) + "\n"
