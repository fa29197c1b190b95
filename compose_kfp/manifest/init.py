"""``compose-kfp init``: write a starting kfp.toml for a project folder and make git ignore the state folder.

:func:`init_project` is the one library call of the ``init`` command: it writes the text
:func:`compose_kfp.manifest.project.scaffold_manifest` makes, checks it loads, detects the steps
(:func:`compose_kfp.manifest.project.detect_steps`) and updates ``.gitignore``
(:func:`compose_kfp.manifest.project.ignore_state_dir`). It prints nothing; the command formats
what it returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from compose_kfp.errors import ConfigError

__all__ = ["WrittenManifest", "Initialized", "init_project"]


@dataclasses.dataclass(frozen=True)
class WrittenManifest:
    """The kfp.toml :func:`init_project` wrote, checked.

    Attributes:
        path: the kfp.toml written (the ``target`` given).
        layers: how many ``[[image.layers]]`` it has.
        steps: the names of the steps detected in the project folder, in detection order.
    """

    path: Path
    layers: int
    steps: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Initialized:
    """What :func:`init_project` did.

    Attributes:
        manifest: the kfp.toml written (:class:`WrittenManifest`).
        gitignore: the ``.gitignore`` beside it.
        gitignore_change: ``"created"``, ``"added"`` or ``"present"``
            (:func:`compose_kfp.manifest.project.ignore_state_dir`).
        state_entry: the line that ignores the state folder (``.compose-kfp/``).
    """

    manifest: WrittenManifest
    gitignore: Path
    gitignore_change: Literal["created", "added", "present"]
    state_entry: str


def init_project(target: Path, *, force: bool = False, name: str | None = None, base: str = "python:3.11-slim",
                 repository: str | None = None,
                 on_written: Callable[[WrittenManifest], None] | None = None) -> Initialized:
    """Write a starting kfp.toml at ``target`` for the project in its folder, then make ``.gitignore`` ignore
    the state folder.

    In order: refuse an existing ``target`` unless ``force``; create its folder; write the text of
    :func:`~compose_kfp.manifest.project.scaffold_manifest` (``name``, ``base``, ``repository`` as there; paths
    in kfp.toml are relative to its folder, so detection runs there); load it with an empty environment
    (when that fails, the previous file is put back, or the new one removed, so no broken file is left);
    detect the steps; call ``on_written`` (before ``.gitignore`` is touched); update ``.gitignore``.

    Returns:
        the :class:`Initialized` summary.

    Raises:
        ConfigError: ``target`` exists and not ``force`` (the message says to use ``--force``); ``name``,
            ``base`` or ``repository`` make an invalid kfp.toml; ``.gitignore`` cannot be read or written.
        OSError: the folder or kfp.toml cannot be written.
    """
    from compose_kfp.manifest.scaffold import detect_steps, ignore_state_dir, scaffold_manifest
    from compose_kfp.manifest.load import display_path, load_manifest

    if target.exists() and not force:
        raise ConfigError(f"{display_path(target)} already exists; use `compose-kfp init --force` to replace it.")
    folder = target.parent  # paths in kfp.toml are relative to its folder: detect there
    folder.mkdir(parents=True, exist_ok=True)
    text = scaffold_manifest(folder, name=name, base=base, repository=repository)
    previous = target.read_bytes() if target.exists() else None
    target.write_text(text, encoding="utf-8")
    try:
        loaded = load_manifest(target, env={})
    except ConfigError:
        # --name/--base/--repository were not valid: leave no broken file behind.
        if previous is None:
            target.unlink()
        else:
            target.write_bytes(previous)
        raise
    steps = detect_steps(folder)
    written = WrittenManifest(path=target, layers=len(loaded.manifest.image.layers or []),
                              steps=tuple(s.name for s in steps))
    if on_written is not None:
        on_written(written)
    from compose_kfp.build.statedir import STATE_DIR

    change = ignore_state_dir(folder)
    return Initialized(manifest=written, gitignore=folder / ".gitignore", gitignore_change=change,  # type: ignore[arg-type]
                       state_entry=f"{STATE_DIR}/")
