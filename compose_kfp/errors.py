"""The one error hierarchy of compose-kfp, with a stable exit code per kind.

The CLI has a single handler (``cli.main``) that prints ``str(error)`` and exits
with :func:`exit_code_for`. Library code raises these (or the
:mod:`compose_kfp.oci.errors` ones, which are mapped here) and never prints.

Exit codes (documented in the README, stable across releases):

====  ===========================================================
0     success (``plan --exit-code``: no changes)
1     invalid input: ``kfp.toml``, a step function, a component file, CLI usage
2     ``plan --exit-code`` only: changes pending (never used for errors)
3     building a layer or image failed (files, installer, cache)
4     registry or local image store failed (network, HTTP errors, digests)
5     credentials missing or refused
6     rendering failed (templates, KFP compiler)
7     a pipeline step failed in ``run --local``
8     the lock file is stale (``--frozen``) or a saved plan no longer applies
9     another ``apply`` holds the project lock
130   interrupted (Ctrl-C)
====  ===========================================================
"""

from __future__ import annotations

from compose_kfp.oci import errors as oci_errors


class ComposeError(Exception):
    """Base class; ``exit_code`` is the process exit status the CLI uses."""

    exit_code = 1


class ConfigError(ComposeError):
    """``kfp.toml`` (or a file it names) is invalid. The message names the file, the key path and what was expected."""

    exit_code = 1


class StepError(ConfigError):
    """A step's function or component file cannot be turned into a component (file, line, parameter named)."""


class BuildError(ComposeError):
    """A layer or image could not be built (missing files, installer failure, no wheel for the platform)."""

    exit_code = 3


class RegistryError(ComposeError):
    """Pushing to or reading from a registry or a local image store failed."""

    exit_code = 4


class AuthError(ComposeError):
    """Credentials were not found, or the registry refused them."""

    exit_code = 5


class RenderError(ComposeError):
    """A template or the KFP compiler failed."""

    exit_code = 6


class RunError(ComposeError):
    """One or more pipeline tasks failed in a local run."""

    exit_code = 7


class StaleError(ComposeError):
    """``--frozen`` and the lock would change, or a saved plan no longer matches the registry."""

    exit_code = 8


class BusyError(ComposeError):
    """Another ``compose-kfp apply`` holds this project's lock."""

    exit_code = 9


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was done when it came: ``str()`` is the message the CLI prints (exit 130).

    A ``KeyboardInterrupt`` (not a :class:`ComposeError`) so that every ``except Exception`` lets it through.
    """

    exit_code = 130


_OCI_EXIT = {
    oci_errors.Unauthorized: AuthError.exit_code,
    oci_errors.DistributionError: RegistryError.exit_code,
    oci_errors.LayoutError: RegistryError.exit_code,
    oci_errors.DigestMismatch: RegistryError.exit_code,
    oci_errors.InvalidReference: ConfigError.exit_code,
    oci_errors.LayerError: BuildError.exit_code,
    oci_errors.ImageError: BuildError.exit_code,
}


def exit_code_for(error: BaseException) -> int:
    """Return the process exit status for ``error`` (see the module docstring); 1 for anything unknown."""
    if isinstance(error, ComposeError):
        return error.exit_code
    for cls in type(error).__mro__:
        if cls in _OCI_EXIT:
            return _OCI_EXIT[cls]
    return 1
