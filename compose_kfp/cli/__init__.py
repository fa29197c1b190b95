"""The ``compose-kfp`` command line: :data:`app` (typer) and :func:`main`, the one error boundary.

Importing this package registers every command on :data:`app`, in the order ``--help`` lists them:
the project commands (``schema``, ``init``, ``validate``) from :mod:`.project`, the build commands
(``plan``, ``apply``, ``render``, ``lock``) from :mod:`.build`, ``run`` from :mod:`.run`, ``gc`` from
:mod:`.gc`. The app, its global options and :class:`~compose_kfp.cli.app.Settings` are in :mod:`.app`;
:func:`main` and :func:`_hoist_global_flags` in :mod:`.boundary`. Command modules import :mod:`.app`,
never this package.
"""

from __future__ import annotations

from compose_kfp.cli.app import app
from compose_kfp.cli import project, build, run, gc  # noqa: F401 - register their commands on ``app``, in this order
from compose_kfp.cli.boundary import _hoist_global_flags, main

__all__ = ["app", "main"]
