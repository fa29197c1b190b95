"""Exceptions raised by :mod:`compose_kfp.oci`.

Every message says what happened and, where it can, what to do. Messages never
contain credentials: code that formats an error from a request must use the
URL without userinfo and never the ``Authorization`` header.
"""

from __future__ import annotations


class OCIError(Exception):
    """Base class of every error raised by ``compose_kfp.oci``."""


class LayerError(OCIError):
    """An input cannot be put into a layer (escaping path, socket, device, bad destination...).

    The message names the offending path and says why it was refused.
    """


class ImageError(OCIError):
    """A manifest, index or config is malformed, of an unknown media type, or not a runnable image."""


class PlatformNotFound(ImageError):
    """An index or manifest list has no entry for the requested platform; the message lists those it has."""


class LayoutError(OCIError):
    """An OCI image layout, ``dir:`` folder or ``docker save`` archive cannot be read or written."""


class DigestMismatch(OCIError):
    """Content read from disk or from a registry does not hash to the digest it was asked by."""


class InvalidReference(OCIError):
    """An image reference does not follow the distribution reference grammar.

    The message shows the whole reference and the part that is wrong.
    """


class DistributionError(OCIError):
    """A registry answered with an error, or could not be reached after the configured retries.

    Attributes:
        status: the last HTTP status code, or ``None`` when no response was received.
        code: the first distribution-spec error code from the body (``MANIFEST_UNKNOWN``...), if any.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class NotFound(DistributionError):
    """The registry has no such repository, manifest, tag or blob (HTTP 404)."""


class Unauthorized(DistributionError):
    """The registry refused the credentials (or demanded some and none were found)."""
