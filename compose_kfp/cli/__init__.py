"""The ``compose-kfp`` command line: :data:`app` (typer) and :func:`main`, the one error boundary.

Importing this package registers every command on :data:`app`: the global options and the
project commands (``init``, ``validate``, ``schema``) are in :mod:`.app`, the build commands
(``plan``, ``apply``, ``render``, ``lock``) in :mod:`.build`, ``run`` in :mod:`.run`, ``gc`` in :mod:`.gc`.
"""

from __future__ import annotations

from compose_kfp.cli.app import _hoist_global_flags, app, main
from compose_kfp.cli import build, run  # noqa: F401 - register their commands on ``app``
from compose_kfp.cli import gc  # noqa: F401,E402 - registered after the existing commands

__all__ = ["app", "main"]
