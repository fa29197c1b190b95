"""The ``kfp.toml`` manifest: pydantic v2 models (strict, frozen) and their field validators.

Every model forbids unknown keys, is immutable and validates in strict mode
(TOML has real types: ``retries = "2"`` is an error, not a 2). Field
descriptions are the documentation: they appear in ``compose-kfp schema``
(JSON Schema for editors, :func:`compose_kfp.manifest.docs.json_schema`) and in
the README's key reference (:func:`compose_kfp.manifest.docs.reference_markdown`).

A validator raises ``ValueError`` with the text a user reads; the loader turns it
into a :class:`~compose_kfp.errors.ConfigError` naming the file, the line and the key.
This module reads no file and no environment variable: loading (TOML parsing,
overrides, literal secrets refused, default layers, files and references checked)
is :func:`compose_kfp.manifest.load.load_manifest`; what needs the step interfaces
(outputs, types) is checked by :func:`compose_kfp.manifest.project.load_project`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from compose_kfp.oci.errors import InvalidReference
from compose_kfp.oci.reference import Reference

MANIFEST_NAME = "kfp.toml"

JsonValue = Union[bool, int, float, str, list, dict]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?\Z")
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
# A key can only look secret when one of these occurs in it: each SECRET_WORDS word, and "key" (every pair ends in it).
_SECRET_HINT = re.compile("|".join(sorted(SECRET_WORDS | {"key"})))
_WORD_SPLIT = re.compile(r"[_\-.\s]+")


def looks_secret(key: str) -> bool:
    """Whether a key or variable name looks like it holds a secret.

    ``password``, ``HF_TOKEN``, ``aws_secret_access_key``, ``API_KEY``, ``auth``
    do; ``TOKENIZERS_PARALLELISM``, ``password_env`` (it names a variable) and
    ``username`` do not. Matching is per word, case-insensitive.
    """
    low = key.lower()
    if not _SECRET_HINT.search(low):  # fast path: no secret word, no "key" of the pairs
        return False
    words = [w for w in _WORD_SPLIT.split(low) if w]
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

    Raises ``ValueError`` (turned into a :class:`~compose_kfp.errors.ConfigError` by the loader) naming the wrong part.
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

    src: str = Field(description="File or folder, relative to the folder of kfp.toml and inside it (symlinks "
                                 "followed), or an absolute path to take it from elsewhere on purpose.")
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
        "Python into this layer (nothing runs inside the base image), from its `compose-kfp lock` file "
        "(`<stem>.lock.txt`) while that matches it.",
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


def _check_step_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"step name {name!r}: use ASCII letters, digits, `_` and `-`, starting with a "
                         "letter or digit")
    return name


def _check_task_name(name: str) -> str:
    if not re.search(r"[A-Za-z0-9]", name):
        raise ValueError(f"task name {name!r} needs at least one ASCII letter or digit: the task's "
                         "Kubernetes name keeps only `a-z`, `0-9` and `-`")
    return name


#: A key of ``[steps]``: ASCII ``[A-Za-z0-9][A-Za-z0-9_-]*`` (checked per key, so an error names the key's line).
StepName = Annotated[str, AfterValidator(_check_step_name)]
#: A key of ``[pipeline.tasks]``: any string with at least one ASCII letter or digit (its Kubernetes name).
TaskName = Annotated[str, AfterValidator(_check_task_name)]


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
        default=None,
        description="Manifest format; default: the base image's format (OCI for `scratch` and for an `oci:` "
                    "layout, which holds OCI media types only: a Docker base is converted).",
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
    """``[steps.NAME]``: a Python function, a Jupyter notebook or a third-party component file."""

    function: str | None = Field(
        default=None, description="`path/to/file.py:function`, relative to kfp.toml; run by the in-image runtime."
    )
    component: str | None = Field(
        default=None, description="Path to a KFP component YAML file (v1, or a single-container v2 file)."
    )
    notebook: str | None = Field(
        default=None, description="`path/to/analysis.ipynb`, relative to kfp.toml: a Jupyter notebook run with "
        "papermill; the cell tagged `parameters` gives the typed inputs, a cell tagged `outputs` the outputs."
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

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, v: str | None) -> str | None:
        if v is not None and not v.endswith(".ipynb"):
            raise ValueError(f"expected `path/to/notebook.ipynb`, got {v!r}")
        return _check_relative_path(v, "`notebook`") if v is not None else v

    @model_validator(mode="after")
    def _function_or_component(self) -> "StepConfig":
        if [self.function, self.component, self.notebook].count(None) != 2:
            raise ValueError("a step needs exactly one of `function`, `notebook` or `component`")
        if self.component is not None and (self.requirements or self.layers):
            raise ValueError("`requirements` and `layers` only apply to `function` and `notebook` steps; "
                             "a component file brings its own image")
        return self

    @property
    def builds_image(self) -> bool:
        """The step runs in an image compose-kfp builds (a ``function`` or ``notebook`` step)."""
        return self.component is None

    @property
    def step_file(self) -> str | None:
        """The file the image must hold at ``<workdir>/<file>``: :attr:`function_file` or :attr:`notebook`."""
        return self.function_file or self.notebook

    @property
    def function_file(self) -> str | None:
        """The ``path/to/file.py`` part of :attr:`function`, or ``None`` for a component or notebook step."""
        return self.function.rpartition(":")[0] if self.function else None

    @property
    def function_name(self) -> str | None:
        """The function name part of :attr:`function`, or ``None`` for a component step."""
        return self.function.rpartition(":")[2] if self.function else None


class ParamRef(_Model):
    """An argument taken from a pipeline parameter: ``{ param = "n_estimators" }``."""

    param: str = Field(description="Name of a key of `[pipeline.params]`.")


class TaskOutputRef(_Model):
    """An argument taken from another task's output: ``{ task = "load", output = "train_set" }``.

    With ``collect = true`` the task is a ``for_each`` loop and the argument is the list of
    that output's values over all iterations (fan-in; Argo's aggregated output parameter,
    KFP's ``dsl.Collected``).
    """

    task: str = Field(description="Name of a task of `[pipeline.tasks]`.")
    output: str = Field(description="Name of an output of that task's step.")
    collect: bool = Field(default=False, description="The task is a `for_each` loop: pass the list of this output's "
                                                     "values over all its iterations (fan-in), `[]` when it ran none.")


class ItemRef(_Model):
    """An argument taken from the current ``for_each`` item: ``{ item = true }``, or a field of an object item ``{ item = "lr" }``."""

    item: bool | str = Field(description="`true` for the whole item of the task's `for_each`, or the name of a "
                                         "field of an object (table) item.")

    @field_validator("item")
    @classmethod
    def _item(cls, v: bool | str) -> bool | str:
        if v is False:
            raise ValueError("`item = false` means nothing; write `item = true` for the item or "
                             "`item = \"FIELD\"` for a field of an object item")
        if isinstance(v, str) and not _IDENTIFIER.match(v):
            raise ValueError(f"expected a field name (letters, digits, `_`), got {v!r}")
        return v


class StatusRef(_Model):
    """An argument of the exit handler: the pipeline's final status, ``{ status = "pipeline" }``
    (``Succeeded``, ``Failed`` or ``Error``, Argo's ``{{workflow.status}}``)."""

    status: Literal["pipeline"] = Field(description="`\"pipeline\"`: the final status of the pipeline "
                                                    "(`Succeeded`, `Failed` or `Error`); only in the `pipeline.on_exit` task.")


class LiteralValue(_Model):
    """An explicit literal, needed for tables: ``{ value = { a = 1 } }``."""

    value: JsonValue = Field(description="The literal: any TOML value, a table included.")


_ARG_MARKERS = {"param": "ParamRef", "task": "TaskOutputRef", "value": "LiteralValue", "item": "ItemRef",
                "status": "StatusRef"}


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
        Annotated[ItemRef, Tag("ItemRef")],
        Annotated[StatusRef, Tag("StatusRef")],
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
        '{ task = "...", output = "..." }, { item = true }, { status = "pipeline" } or { value = ... } for a '
        'literal table',
    ),
]


#: Comparison operators of a condition (``when``), as Argo's ``when`` (govaluate) and KFP's ``dsl.If`` write them.
Operator = Literal["==", "!=", "<", "<=", ">", ">="]
#: The constant side of a comparison: a TOML scalar, or ``{ param = ... }``.
ConditionValue = Union[bool, int, float, str, ParamRef]


class Condition(_Model):
    """A condition (``when``): one comparison, or ``all``/``any``/``not`` of conditions.

    A comparison names what is compared (``param``, or ``task`` + ``output``), ``op`` and
    ``value`` (a constant or ``{ param = ... }``): ``{ task = "evaluate", output = "accuracy",
    op = ">", value = { param = "threshold" } }``. Strings compare as strings, numbers as numbers.
    """

    param: str | None = Field(default=None, description="Compare this pipeline param (a key of `[pipeline.params]`).")
    task: str | None = Field(default=None, description="Compare an output of this task (with `output`).")
    output: str | None = Field(default=None, description="The output of `task` to compare.")
    op: Operator | None = Field(default=None, description="The comparison: `==`, `!=`, `<`, `<=`, `>`, `>=`.")
    value: ConditionValue | None = Field(default=None, description="What to compare with: a constant (string, "
                                         "number, boolean) or `{ param = ... }`.")
    all: list["Condition"] | None = Field(default=None, description="True when every condition in the list is (and).")
    any: list["Condition"] | None = Field(default=None, description="True when at least one condition in the list "
                                                                   "is (or).")
    not_: "Condition | None" = Field(default=None, alias="not", description="True when this condition is not.")

    @model_validator(mode="after")
    def _one_form(self) -> "Condition":
        compare = [k for k in ("param", "task", "output", "op", "value") if getattr(self, k) is not None]
        logical = [k for k, v in (("all", self.all), ("any", self.any), ("not", self.not_)) if v is not None]
        if logical and compare or len(logical) > 1:
            raise ValueError("a condition is one comparison ({ param|task = ..., op = ..., value = ... }) or one "
                             f"of `all`, `any`, `not`; got {', '.join(logical + compare)}")
        if logical:
            if (self.all is not None and not self.all) or (self.any is not None and not self.any):
                raise ValueError(f"`{logical[0]}` needs at least one condition")
            return self
        if (self.param is None) == (self.task is None):
            raise ValueError("a comparison names exactly one of `param` or `task` (with `output`)")
        if self.task is not None and self.output is None:
            raise ValueError("a comparison of a task names its `output`")
        if self.param is not None and self.output is not None:
            raise ValueError("`output` goes with `task`, not with `param`")
        if self.op is None or self.value is None:
            raise ValueError("a comparison needs `op` (==, !=, <, <=, >, >=) and `value`")
        return self


class SecretKeyRef(_Model):
    """An environment variable from a key of a Kubernetes Secret: ``{ secret = "db", key = "password" }``."""

    secret: str = Field(description="Name of the Kubernetes Secret.")
    key: str = Field(description="Key in the Secret.")


class ConfigMapKeyRef(_Model):
    """An environment variable from a key of a Kubernetes ConfigMap: ``{ config_map = "settings", key = "region" }``."""

    config_map: str = Field(description="Name of the Kubernetes ConfigMap.")
    key: str = Field(description="Key in the ConfigMap.")


def _env_ref_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "secret" in value and "config_map" not in value:
            return "SecretKeyRef"
        if "config_map" in value and "secret" not in value:
            return "ConfigMapKeyRef"
    return None


EnvRef = Annotated[
    Union[Annotated[SecretKeyRef, Tag("SecretKeyRef")], Annotated[ConfigMapKeyRef, Tag("ConfigMapKeyRef")]],
    Discriminator(
        _env_ref_tag,
        custom_error_type="env_reference",
        custom_error_message='a task\'s env takes references only: { secret = "NAME", key = "KEY" } or '
        '{ config_map = "NAME", key = "KEY" }; a literal value is refused here (it is not shown) because it would '
        'be written in clear into the rendered files. Put plain settings in [steps.NAME] env',
    ),
]


class SecretVolume(_Model):
    """A Kubernetes Secret mounted as files: ``{ secret = "tls", mount_path = "/etc/tls" }`` (one file per key)."""

    secret: str = Field(description="Name of the Kubernetes Secret.")
    mount_path: str = Field(description="Absolute folder in the container; each key of the Secret becomes a file.")

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, v: str) -> str:
        if not v.startswith("/") or v == "/":
            raise ValueError(f"expected an absolute folder other than `/`, got {v!r}")
        return v


class TaskConfig(_Model):
    """``[pipeline.tasks.NAME]``: one use of a step in the pipeline."""

    step: str = Field(description="Name of a `[steps.*]` entry.")
    args: dict[str, ArgValue] = Field(
        default_factory=dict,
        description="Arguments by input name: a literal, `{param = ...}`, `{task = ..., output = ...}`, "
        "or `{value = ...}` for a literal table.",
    )
    after: list[str] = Field(default_factory=list, description="Tasks that must finish first (besides data dependencies).")
    when: Condition | None = Field(default=None, description="Run the task only when this condition holds; "
                                   "otherwise it is skipped, and so are the tasks that depend on it.")
    when_upstream_skipped: Literal["skip", "run"] = Field(
        default="skip", description="What to do when a task this one runs `after` was skipped by its condition: "
        "`skip` this task too, or `run` it anyway (a task reading a skipped task's output cannot run).")
    for_each: Union[ParamRef, TaskOutputRef, list] | None = Field(
        default=None, description="Run the task once per item (fan-out): a literal array, `{ param = ... }` "
        "(a list param) or `{ task = ..., output = ... }` (an upstream output typed as a list). Arguments take "
        "the item with `{ item = true }` or a field of an object item with `{ item = \"FIELD\" }`.")
    parallelism: int | None = Field(default=None, gt=0, description="With `for_each`: at most this many "
                                    "iterations at once.")
    env: Annotated[dict[str, EnvRef], AfterValidator(_check_env_names)] = Field(
        default_factory=dict, description="Environment variables from Kubernetes Secrets and ConfigMaps, by "
        "reference only: `{ secret = ..., key = ... }` or `{ config_map = ..., key = ... }`.")
    secret_volumes: list[SecretVolume] = Field(default_factory=list, description="Kubernetes Secrets mounted "
                                               "as files.")
    cache: bool = Field(default=True, description="`false`: never reuse or record a cached result of this task.")

    @field_validator("for_each", mode="before")
    @classmethod
    def _for_each(cls, v: Any) -> Any:
        if isinstance(v, dict) and not ("param" in v or "task" in v):
            raise ValueError('expected an array, { param = "..." } or { task = "...", output = "..." }')
        return v

    @model_validator(mode="after")
    def _loop_settings(self) -> "TaskConfig":
        if self.parallelism is not None and self.for_each is None:
            raise ValueError("`parallelism` limits the iterations of `for_each`; this task has no `for_each`")
        if isinstance(self.for_each, TaskOutputRef) and self.for_each.collect:
            raise ValueError("`for_each` takes the upstream output as it is; `collect` belongs to arguments")
        return self

    def dependencies(self) -> list[str]:
        """Names of the tasks this one waits for: data dependencies (in argument order), then ``after``; no repeats."""
        refs = [a.task for a in self.args.values() if isinstance(a, TaskOutputRef)]
        if isinstance(self.for_each, TaskOutputRef):
            refs.append(self.for_each.task)
        refs += [c.task for c in _comparisons(self.when) if c.task is not None]
        deps = refs + list(self.after)
        return list(dict.fromkeys(deps))


def _comparisons(condition: Condition | None) -> list[Condition]:
    """The comparisons of ``condition``, depth first (none for ``None``)."""
    if condition is None:
        return []
    if condition.all is not None or condition.any is not None:
        return [c for inner in (condition.all or condition.any or []) for c in _comparisons(inner)]
    if condition.not_ is not None:
        return _comparisons(condition.not_)
    return [condition]


class VolumeConfig(_Model):
    """Shared volume for data passing (``pipeline.data_passing = "volume"``)."""

    size: str = Field(default="1Gi", description="Requested size of the volume.")
    storage_class: str | None = Field(default=None, description="Storage class; default: the cluster's.")
    access_modes: list[str] = Field(default_factory=lambda: ["ReadWriteOnce"], description="PVC access modes.")


#: A duration as Argo's ``memoize.maxAge`` reads it (Go's ``time.ParseDuration``), plus ``d`` (days, rendered as hours).
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h|d))+\Z")
_DNS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?\Z")


class CacheConfig(_Model):
    """``[pipeline.cache]``: step caching (Argo ``memoize``, ``run --local`` results); README "Caching"."""

    enabled: bool = Field(default=True, description="Cache task results by their cache key (image digest, command, "
                          "inputs): Argo `memoize` on each step template and reused results in `run --local`.")
    max_age: str = Field(default="7d", description="How long a cached result stays valid on Argo (`maxAge`): a "
                         "Go duration such as `\"24h\"` or `\"90m\"`; `d` (days) is written as hours (`7d` -> `168h`).")
    config_map: str = Field(default="compose-kfp-cache", description="The ConfigMap Argo keeps cache entries in.")

    @field_validator("max_age")
    @classmethod
    def _max_age(cls, v: str) -> str:
        if not _DURATION.match(v) or not re.search(r"[1-9]", v):
            raise ValueError(f"expected a positive duration such as \"24h\", \"90m\" or \"7d\" (a number and a unit "
                             f"of ns, us, ms, s, m, h, d, repeated as in \"1h30m\"), got {v!r}")
        return v

    @field_validator("config_map")
    @classmethod
    def _config_map(cls, v: str) -> str:
        if not _DNS_NAME.match(v):
            raise ValueError(f"expected a Kubernetes ConfigMap name (lowercase letters, digits, `-` and `.`, "
                             f"starting and ending alphanumeric), got {v!r}")
        return v


class PipelineConfig(_Model):
    """``[pipeline]``: how the steps are connected."""

    name: str | None = Field(default=None, description="Pipeline name; default: the project name.")
    description: str | None = Field(default=None, description="Pipeline description.")
    params: dict[str, JsonValue] = Field(default_factory=dict, description="Pipeline parameters and their defaults.")
    tasks: dict[TaskName, TaskConfig] = Field(default_factory=dict, description="The tasks, by name.")
    on_exit: str | None = Field(default=None, description="Name of a task of `[pipeline.tasks]` that runs after "
                                "all the others, whatever happened (the exit handler); it may take "
                                "`{ status = \"pipeline\" }`, params and literals, not other tasks' outputs.")
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
    cache: CacheConfig = Field(default_factory=CacheConfig, description="Step caching by cache key.")


class RenderSettings(_Model):
    """``[render]``: where and how outputs are rendered."""

    output_dir: str = Field(default="build", description="Folder for rendered files, relative to kfp.toml and "
                            "inside the project folder (only `--output-dir` or `COMPOSE_KFP_OUTPUT_DIR` may name "
                            "an absolute folder elsewhere).")
    templates: str | None = Field(default=None, description="Folder of templates that override the built-in ones.")
    targets: list[Literal["argo", "kfp"]] = Field(
        default_factory=lambda: ["argo"], description="What to render besides component files."
    )


Condition.model_rebuild()


class Manifest(_Model):
    """The whole ``kfp.toml``."""

    project: ProjectConfig = Field(description="The project: its name and description.")
    image: ImageSettings = Field(description="The image: base, destination, layers, credentials.")
    steps: dict[StepName, StepConfig] = Field(
        default_factory=dict, description="Pipeline steps by name: Python functions, notebooks or component files."
    )
    pipeline: PipelineConfig | None = Field(
        default=None, description="How the steps are wired into a pipeline; without it only components are rendered."
    )
    render: RenderSettings = Field(default_factory=RenderSettings, description="Where rendered files go.")

    @property
    def pipeline_name(self) -> str:
        """``pipeline.name``, or the project name when there is none."""
        return (self.pipeline.name if self.pipeline and self.pipeline.name else None) or self.project.name
