"""``compose-kfp lock``: pin every requirements layer of a project into ``<file>.lock.txt`` next to its file.

Each requirements file named by a layer is locked once (in image and layer order), with uv, for the first
image's first platform and the Python of its base image (:func:`compose_kfp.build.deps.lock_requirements`);
pointing the layer's ``requirements`` at the ``.lock.txt`` file makes its installs hash-checked and
reproducible.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from compose_kfp.build import deps as deps_mod
from compose_kfp.build.destination import registries_for
from compose_kfp.build.images import desired_images
from compose_kfp.build.observe import deps_target, resolve_base
from compose_kfp.build.statedir import ProjectState
from compose_kfp.steps.notebook import NOTEBOOK_LAYER

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project


@dataclasses.dataclass(frozen=True)
class LockedRequirements:
    """One requirements file locked.

    Attributes:
        path: the lock file written (``<file stem>.lock.txt`` next to the requirements file).
        pins: number of pinned packages in it.
        target: what it resolves for (:meth:`~compose_kfp.build.requirements.DepsTarget.describe`).
    """

    path: Path
    pins: int
    target: str


def lock_project_requirements(project: Project,
                              on_locked: Callable[[LockedRequirements], None] | None = None
                              ) -> list[LockedRequirements]:
    """Lock every requirements file the project's layers name (module docstring), in image and layer order.

    The base image is resolved (manifest and config only) when the first file is locked. ``on_locked`` is
    called after each file, so a caller can report progress before the next one resolves.

    Returns:
        the files locked, in order (empty: no requirements layer).

    Raises:
        BuildError: uv is missing or resolution failed; ConfigError, DistributionError / Unauthorized: the base
        image cannot be resolved.
    """
    images = desired_images(project.manifest, project.root)
    seen: set[str] = set()
    done: list[LockedRequirements] = []
    registries = registries_for(project)
    try:
        first = images[0]
        platform = first.platforms[0]
        bases = None
        for image in images:
            for spec in image.layers:
                if spec.kind != "requirements" or spec.requirements in seen or spec.name == NOTEBOOK_LAYER:
                    continue  # the notebook layer's requirements are compose-kfp's own file, pinned there
                seen.add(spec.requirements)  # type: ignore[arg-type]
                if bases is None:
                    bases = resolve_base(first.base, [platform], registries, ProjectState(project.root))
                target = deps_target(image, platform, bases[platform], project.loaded.display_path)
                src = Path(spec.requirements)  # type: ignore[arg-type]
                out = src.with_name(src.stem + ".lock.txt")
                pins = deps_mod.lock_requirements(src, target, out)
                item = LockedRequirements(out, len(pins), target.describe())
                done.append(item)
                if on_locked is not None:
                    on_locked(item)
    finally:
        registries.close()
    return done


__all__ = ["LockedRequirements", "lock_project_requirements"]
