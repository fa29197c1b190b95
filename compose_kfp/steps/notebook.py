"""Notebook steps: ``[steps.NAME] notebook = "analysis.ipynb"`` to a component spec.

The notebook is read as JSON and its ``parameters`` (and optional ``outputs``) cell with :mod:`ast`, by
:func:`compose_kfp.runtime.notebook.analyze_notebook`, the same analysis the in-image runner does, so the
component file and the run always agree; the notebook is never executed here. The interface becomes a
component the way a function's signature does (:mod:`compose_kfp.steps.introspect`): typed parameters are
value inputs (``n: int = 10`` an optional ``Integer`` input with default ``10``), ``InputPath`` /
``OutputPath`` parameters file inputs and outputs, the ``outputs`` cell's variables value or artifact
outputs, plus the output ``notebook`` (the executed notebook, type ``JupyterNotebook``). The command is
``python3 -m compose_kfp.runtime.notebook <path> --in ... --out ...``, run in ``image.workdir`` of an
image that holds the notebook at ``<workdir>/<path>`` and the notebook requirements layer
(:data:`NOTEBOOK_REQUIREMENTS`, added by :func:`compose_kfp.build.images.desired_images`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath

from compose_kfp.errors import StepError
from compose_kfp.runtime.notebook import NOTEBOOK_MODULE, analyze_notebook
from compose_kfp.runtime.signature import SignatureError
from compose_kfp.steps.component import ComponentSpec

__all__ = ["NOTEBOOK_LAYER", "NOTEBOOK_REQUIREMENTS", "notebook_command", "notebook_component"]

#: The requirements file of the layer that lets an image execute notebooks (papermill, nbclient, ipykernel).
NOTEBOOK_REQUIREMENTS = Path(__file__).with_name("notebook-requirements.txt")
#: Name of that layer in plans (reserved: a layer of kfp.toml cannot have it).
NOTEBOOK_LAYER = "notebook-runtime"


def notebook_command(relative_path: str) -> tuple[str, ...]:
    """The container ``command`` of a notebook step: ``("python3", "-m", "compose_kfp.runtime.notebook", path)``."""
    return ("python3", "-m", NOTEBOOK_MODULE, relative_path)


def notebook_component(root: Path, notebook: str, *, step_name: str) -> ComponentSpec:
    """Read the notebook ``notebook`` (relative to ``root``, POSIX separators) into a component spec.

    Returns:
        a spec with ``image=None`` (known after the build), ``source`` the notebook path, the inputs and
        outputs of the module docstring in cell order, the description from the first Markdown cell.

    Raises:
        StepError: ``steps.<name>.notebook: ...``: the path leaves ``root`` or does not exist, or the notebook
        is refused (invalid JSON, no ``parameters`` cell, an untyped parameter...; the message names the
        notebook, the cell, the line and the parameter).
    """
    from compose_kfp.steps.introspect import _spec_from_signature

    rel_posix = PurePosixPath(notebook)
    if rel_posix.is_absolute() or ".." in rel_posix.parts:
        raise StepError(f"steps.{step_name}.notebook: {notebook!r} must be a path relative to the folder of kfp.toml "
                        "without '..' (it is copied into the image at that relative path)")
    root = Path(root).resolve()
    file = root / rel_posix
    if not file.is_file():
        raise StepError(f"steps.{step_name}.notebook: {notebook} does not exist (looked in {root})")
    rel = file.relative_to(root).as_posix()
    try:
        sig = analyze_notebook(file, display_path=rel)
    except SignatureError as exc:
        raise StepError(f"steps.{step_name}.notebook: {exc}") from exc
    spec = _spec_from_signature(sig, rel, step_name, notebook)
    return dataclasses.replace(spec, command=notebook_command(rel), python_function=None)
