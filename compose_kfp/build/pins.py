"""Third-party component images pinned by digest: the image a component file names -> ``repository@sha256:...``.

Rendered files never name an image by tag: :func:`pin_images` resolves each tag with one ``HEAD``
of the manifest (or takes the pin ``kfp.lock`` recorded, with ``--frozen``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from compose_kfp.build.registries import Registries, registry_ref
from compose_kfp.errors import ConfigError, from_oci
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.image import ACCEPT_MANIFESTS
from compose_kfp.oci.reference import redact_userinfo

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project

def component_images(project: Project) -> dict[str, str]:
    """Component-file step -> the image its file names (steps whose file names a registry image)."""
    out = {}
    for name, step in project.manifest.steps.items():
        spec = project.components.get(name)
        if step.component and spec is not None and spec.image:
            out[name] = spec.image
    return out


def pin_images(images: Mapping[str, str], registries: Registries, *,
               locked: Mapping[str, str] | None = None) -> dict[str, str]:
    """Pin third-party component images by digest: step -> ``registry/repository@sha256:...``.

    A reference that already has a digest keeps it (its tag is dropped); a tag is resolved with one
    ``HEAD`` of the manifest (the digest of what the tag names: an index for a multi-platform image).
    With ``locked`` (``--frozen``: step -> pinned reference from kfp.lock) a step whose reference is
    recorded there for the same repository is not resolved again.

    Raises:
        ConfigError: an image reference is malformed.
        RegistryError / AuthError (:func:`~compose_kfp.errors.from_oci`): a tag cannot be resolved (the message
            names the step and image).
    """
    out: dict[str, str] = {}
    for step, text in images.items():
        try:
            ref = registry_ref(text)
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


__all__ = ["component_images", "pin_images"]
