"""The in-image entrypoint of Python steps: ``python3 -m compose_kfp.runtime FILE.py:FUNCTION --in ... --out ...``.

This package, :mod:`compose_kfp.types` and the top-level ``compose_kfp/__init__.py``
are copied into every image as one small layer under :data:`RUNTIME_PREFIX`, with
:data:`RUNTIME_ENV` set in the image config, so an image runs its steps with
nothing else installed. Everything here is standard library only and Python 3.8+.

Modules: :mod:`.signature` (reads the step's interface with :mod:`ast`, shared with
``compose_kfp.introspect``), :mod:`.marshal` (non-JSON values), :mod:`.entrypoint`
(argument parsing, calling the function, writing outputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

__all__ = ["RUNTIME_PREFIX", "RUNTIME_ENV", "RUNTIME_MODULE", "runtime_files"]

#: Folder inside the image that holds the ``compose_kfp`` package of the runtime.
RUNTIME_PREFIX = "/opt/compose-kfp"

#: Environment the image config must set so ``python3 -m compose_kfp.runtime`` finds the package.
RUNTIME_ENV = {"PYTHONPATH": RUNTIME_PREFIX}

#: Module run by ``python3 -m`` in a Python step's command.
RUNTIME_MODULE = "compose_kfp.runtime"

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # .../compose_kfp


def runtime_files() -> Dict[str, Path]:
    """Files of the runtime layer: in-image absolute path -> local source file, sorted by in-image path.

    Contains ``compose_kfp/__init__.py``, ``compose_kfp/types.py`` and every ``*.py`` of
    ``compose_kfp/runtime/`` under :data:`RUNTIME_PREFIX` (e.g.
    ``/opt/compose-kfp/compose_kfp/runtime/__main__.py``). No bytecode is included, so the
    layer is the same whatever Python built it.
    """
    files: Dict[str, Path] = {}
    for rel in ("__init__.py", "types.py"):
        files["{}/compose_kfp/{}".format(RUNTIME_PREFIX, rel)] = _PACKAGE_DIR / rel
    for src in (_PACKAGE_DIR / "runtime").glob("*.py"):
        files["{}/compose_kfp/runtime/{}".format(RUNTIME_PREFIX, src.name)] = src
    return dict(sorted(files.items()))
