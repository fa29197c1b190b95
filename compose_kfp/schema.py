"""The ``kfp.toml`` manifest: pydantic v2 models (strict, frozen) and loading.

Every model forbids unknown keys and is immutable. Field descriptions are the
documentation: they appear in ``compose-kfp schema`` (JSON Schema for editors)
and in the README's key reference.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = Union[bool, int, float, str]
JsonValue = Union[bool, int, float, str, list, dict]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ProjectConfig(_Model):
    """``[project]``: what this repository is called."""

    name: str = Field(description="Project name; used for the default pipeline name and image labels.")
    description: str | None = Field(default=None, description="One line describing the project.")


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


class PathMapping(_Model):
    """A path put into a layer at a chosen place: ``{ src = "data", dst = "/mnt/data" }``."""

    src: str = Field(description="File or folder, relative to the folder of kfp.toml.")
    dst: str | None = Field(
        default=None,
        description="Absolute destination inside the image. Default: `src` under `image.workdir`.",
    )


class LayerConfig(_Model):
    """One ``[[image.layers]]`` entry: one layer blob. Exactly one of ``paths``, ``requirements``, ``rootfs``."""

    name: str = Field(description="Layer name, unique within the image; shown in plans.")
    paths: list[Union[str, PathMapping]] = Field(
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

    @model_validator(mode="after")
    def _one_source(self) -> "LayerConfig":
        given = [k for k in ("paths", "requirements", "rootfs") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "a layer needs exactly one of `paths`, `requirements` or `rootfs`"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


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
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables set in the image config.")
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
    layers: list[LayerConfig] | None = Field(
        default=None,
        description="Layers on top of the base, base first. Default: `requirements.txt` if present, "
        "then `data/`, then `src/`.",
    )


class Resources(_Model):
    """Container resources of a step (Kubernetes quantities)."""

    cpu: str | None = Field(default=None, description='CPU request and limit, e.g. "1" or "500m".')
    memory: str | None = Field(default=None, description='Memory request and limit, e.g. "2Gi".')
    gpu: int | None = Field(default=None, ge=0, description="Number of `nvidia.com/gpu` to request.")


class Toleration(_Model):
    """A Kubernetes toleration."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


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
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for this step.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Kubernetes node selector.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Kubernetes tolerations.")
    requirements: str | None = Field(
        default=None, description="Extra requirements for this step only; the step then gets its own image."
    )
    layers: list[LayerConfig] = Field(
        default_factory=list, description="Extra layers for this step only; the step then gets its own image."
    )

    @model_validator(mode="after")
    def _function_or_component(self) -> "StepConfig":
        if (self.function is None) == (self.component is None):
            raise ValueError("a step needs exactly one of `function` or `component`")
        return self


class ParamRef(_Model):
    """An argument taken from a pipeline parameter: ``{ param = "n_estimators" }``."""

    param: str = Field(description="Name of a key of `[pipeline.params]`.")


class TaskOutputRef(_Model):
    """An argument taken from another task's output: ``{ task = "load", output = "train_set" }``."""

    task: str = Field(description="Name of a task of `[pipeline.tasks]`.")
    output: str = Field(description="Name of an output of that task's step.")


class LiteralValue(_Model):
    """An explicit literal, needed for tables: ``{ value = { a = 1 } }``."""

    value: JsonValue


ArgValue = Union[ParamRef, TaskOutputRef, LiteralValue, bool, int, float, str, list]


class TaskConfig(_Model):
    """``[pipeline.tasks.NAME]``: one use of a step in the pipeline."""

    step: str = Field(description="Name of a `[steps.*]` entry.")
    args: dict[str, ArgValue] = Field(
        default_factory=dict,
        description="Arguments by input name: a literal, `{param = ...}`, `{task = ..., output = ...}`, "
        "or `{value = ...}` for a literal table.",
    )
    after: list[str] = Field(default_factory=list, description="Tasks that must finish first (besides data dependencies).")


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

    project: ProjectConfig
    image: ImageSettings
    steps: dict[str, StepConfig] = Field(default_factory=dict)
    pipeline: PipelineConfig | None = None
    render: RenderSettings = Field(default_factory=RenderSettings)
