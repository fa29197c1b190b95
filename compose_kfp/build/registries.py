"""Registry clients: one :class:`~compose_kfp.oci.registry.RegistryClient` per host (:class:`Registries`), the
parsing of a registry image reference (:func:`registry_ref`) and the download of a blob into a blob store.

:mod:`compose_kfp.oci.registry` (and with it ``requests``) is imported only when a first client is made.
(:func:`compose_kfp.build.destination.registries_for` makes the pool of a project.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from compose_kfp.oci.blobs import BlobStore
from compose_kfp.oci.reference import Reference


class Registries:
    """One :class:`~compose_kfp.oci.registry.RegistryClient` per registry host, made on first use.

    Args:
        keychain: credentials resolver (default: the docker/podman search order, or ``[image.auth]``).
        insecure: passed to every client (``None``: plain HTTP for loopback only).
    """

    def __init__(self, keychain: Any = None, insecure: bool | None = None):
        self.keychain = keychain
        self.insecure = insecure
        self._clients: dict[str, Any] = {}

    def client(self, host: str) -> Any:
        """The :class:`~compose_kfp.oci.registry.RegistryClient` for ``host`` (``host[:port]``), made once."""
        from compose_kfp.oci.registry import RegistryClient

        if host not in self._clients:
            self._clients[host] = RegistryClient(host, self.keychain, insecure=self.insecure)
        return self._clients[host]

    def close(self) -> None:
        """Close every client's connection pool."""
        for c in self._clients.values():
            c.close()
        self._clients.clear()


def registry_ref(text: str) -> Reference:
    """``text`` (an ``image.base`` / ``image.repository`` / component image, ``docker://`` allowed) parsed as a registry
    reference.

    Raises:
        InvalidReference (:mod:`compose_kfp.oci.errors`): not a valid reference.
    """
    return Reference.parse(text.removeprefix("docker://"))


def download_blob(client: Any, repo: str, digest: str, size: int | None, store: BlobStore,
                  progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Download blob ``digest`` of ``repo`` into ``store``; return the stored path.

    :meth:`~compose_kfp.oci.registry.RegistryClient.get_blob` verifies the bytes and writes
    through a temporary file of its own in the store's folder, renamed at the end, so
    concurrent runs downloading the same blob never collide.
    """
    dest = store.path(digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    client.get_blob(repo, digest, dest, expected_size=size, progress=progress)
    return dest


__all__ = ["Registries", "download_blob", "registry_ref"]
