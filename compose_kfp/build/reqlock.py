"""``compose-kfp lock``: pin every requirements layer of a project into ``<file>.lock.txt`` next to its file.

Each requirements file named by a layer is locked once (in image and layer order), with uv, for the first
image's first platform and the Python of its base image (:func:`compose_kfp.build.deps.lock_requirements`).
As ``poetry lock`` / ``uv lock``, nothing else changes in the project: while the requirements file (and what it
includes) stays as it was locked, ``plan`` and ``apply`` install the layer from the ``.lock.txt`` file
(hash-checked, reproducible; :func:`compose_kfp.build.images.requirements_layer`), and after an edit they
install the file as written and warn until ``lock`` runs again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from compose_kfp.build import deps as deps_mod
from compose_kfp.build.destination import registries_for
from compose_kfp.build.images import desired_images
from compose_kfp.build.observe import deps_target, resolve_base
from compose_kfp.build.requirements import lock_file_for
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
        source: the requirements file locked (absolute), as kfp.toml names it.
        where: the kfp.toml key of the first layer that names it (``image.layers.0``).
    """

    path: Path
    pins: int
    target: str
    source: Path | None = None
    where: str = ""


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
                source = spec.locked_from or spec.requirements  # the file kfp.toml names, not its lock
                if spec.kind != "requirements" or source in seen or spec.name == NOTEBOOK_LAYER:
                    continue  # the notebook layer's requirements are compose-kfp's own file, pinned there
                seen.add(source)  # type: ignore[arg-type]
                if bases is None:
                    bases = resolve_base(first.base, [platform], registries, ProjectState(project.root))
                target = deps_target(image, platform, bases[platform], project.loaded.display_path)
                src = Path(source)  # type: ignore[arg-type]
                out = lock_file_for(src)
                pins = deps_mod.lock_requirements(src, target, out)
                item = LockedRequirements(out, len(pins), target.describe(), src, spec.where)
                done.append(item)
                if on_locked is not None:
                    on_locked(item)
    finally:
        registries.close()
    return done


__all__ = ["LockedRequirements", "lock_project_requirements"]
