"""The one error hierarchy of compose-kfp, with a stable exit code per kind.

The CLI has a single handler (``cli.main``) that prints ``str(error)`` and exits
with :func:`exit_code_for`. Library code raises these (or the
:mod:`compose_kfp.oci.errors` ones, which :func:`from_oci` maps here, the one place that does) and never prints.

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

from typing import Any

from compose_kfp.oci import errors as oci_errors


class ComposeError(Exception):
    """Base class; ``exit_code`` is the process exit status the CLI uses.

    An error about a key of ``kfp.toml`` reads ``FILE:LINE: KEY: what is wrong`` and carries the parts as
    :attr:`file`, :attr:`line` and :attr:`key` (``None`` when not known), set by :meth:`at` where the
    location becomes known (:meth:`compose_kfp.manifest.load.LoadedManifest.locate`, the manifest loader);
    ``--json`` error output reports them.
    """

    exit_code = 1
    file: str | None = None
    line: int | None = None
    key: str | None = None

    def at(self, file: str | None, line: int | None, key: str | None) -> "ComposeError":
        """Record where in ``kfp.toml`` the error is (the message already says it); returns ``self``."""
        self.file, self.line, self.key = file, line, key
        return self


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


#: OCI error class -> our error class (the most specific match along the MRO wins).
_OCI_KINDS: dict[type, type[ComposeError]] = {
    oci_errors.Unauthorized: AuthError,
    oci_errors.DistributionError: RegistryError,
    oci_errors.LayoutError: RegistryError,
    oci_errors.DigestMismatch: RegistryError,
    oci_errors.InvalidReference: ConfigError,
    oci_errors.LayerError: BuildError,
    oci_errors.ImageError: BuildError,
}


#: OCI error classes that, for an image the user names as input (``image.base``), mean the input is unusable.
_OCI_INPUT_KINDS: tuple[type, ...] = (oci_errors.ImageError, oci_errors.LayoutError, oci_errors.InvalidReference)


def from_oci(error: oci_errors.OCIError, context: str | None = None, *, input_image: bool = False) -> ComposeError:
    """The one way an error of :mod:`compose_kfp.oci` becomes one of ours.

    Kinds: ``Unauthorized`` -> :class:`AuthError` (exit 5); any other ``DistributionError`` (HTTP or transport
    failure, ``NotFound``...), ``LayoutError`` and ``DigestMismatch`` -> :class:`RegistryError` (exit 4);
    ``InvalidReference`` -> :class:`ConfigError` (exit 1); ``LayerError`` and ``ImageError`` (``PlatformNotFound``
    included) -> :class:`BuildError` (exit 3); any other ``OCIError`` -> :class:`ComposeError` (exit 1).

    Args:
        error: the OCI error; its message is kept as it is.
        context: put in front of the message as ``"<context>: <message>"`` (the kfp.toml key or the step that
            names the registry being read), or ``None``.
        input_image: the error is about an image the user names as input (the base image), read from a
            registry or from disk alike: a problem of the image itself (``ImageError``: an artifact, no image for
            the platform, a malformed document; ``LayoutError``: not an image layout, an unknown tag;
            ``InvalidReference``) is then invalid input, :class:`ConfigError` (exit 1); the registry and
            credential kinds stay as above.

    Returns:
        a new :class:`ComposeError` (not raised); raise it ``from None`` to drop the OCI traceback.
    """
    message = f"{context}: {error}" if context else str(error)
    if input_image and isinstance(error, _OCI_INPUT_KINDS):
        return ConfigError(message)
    for cls in type(error).__mro__:
        if cls in _OCI_KINDS:
            return _OCI_KINDS[cls](message)
    return ComposeError(message)


def located(error: ComposeError | oci_errors.OCIError, loaded: Any = None) -> ComposeError:
    """``error`` as one of ours (:func:`from_oci`), in the ``kfp.toml:LINE: KEY:`` form when it is about a key of
    ``loaded`` (a :class:`~compose_kfp.manifest.load.LoadedManifest`, through its ``locate``; ``None``: no manifest
    loaded yet): what the CLI prints and what the Python API raises, so both name the same file, line and key.

    Returns:
        ``error`` itself when it is already ours and not about a key of ``loaded``, else a new error (not raised).
    """
    ours = from_oci(error) if isinstance(error, oci_errors.OCIError) else error
    return loaded.locate(ours) if loaded is not None else ours


def exit_code_for(error: BaseException) -> int:
    """Return the process exit status for ``error`` (see the module docstring); 1 for anything unknown.

    An OCI error gets the exit code of the error :func:`from_oci` makes of it.
    """
    if isinstance(error, ComposeError):
        return error.exit_code
    if isinstance(error, oci_errors.OCIError):
        return from_oci(error).exit_code
    return 1
