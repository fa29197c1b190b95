"""Two-phase writes of a set of files: stage every file first, move them all into place later.

``apply`` renders its outputs (component files, the workflow, kfp.lock) into bytes and stages them with
:class:`StagedFiles` *before* any tag is written, then commits them *after* the tags. Staging writes each file
in full (``fsync``-ed) as a temporary file in the folder of its target, so everything that can fail for lack
of space or for a bad name fails while nothing is tagged yet, and the staged file is on the same file system
as its target (a temporary folder beside the output folder would not be when the output folder is a mount
point of its own). Committing is renames only (``os.replace``, no new data blocks), then an ``fsync`` of each
folder. A failed stage removes every temporary file it made: no target is touched.

:func:`name_max` / :func:`check_name_fits` check a file name against the limit of the file system that will
hold it (``os.pathconf`` ``PC_NAME_MAX``, ``PC_PATH_MAX``), for ``validate`` and for apply before anything is
sent.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

#: Prefix of the temporary files (the same as :data:`compose_kfp.oci.blobs.TEMP_PREFIX`); the names are short
#: (``.tmp-stage-`` and 12 hex digits) so that a target whose name is near the limit still stages.
STAGE_PREFIX = ".tmp-stage-"

#: The limits assumed when the file system does not say (Linux's).
DEFAULT_NAME_MAX = 255
DEFAULT_PATH_MAX = 4096


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing ancestor (the file system a new file under ``folder`` lands on)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _pathconf(folder: Path, name: str, default: int) -> int:
    try:
        value = os.pathconf(_existing(folder), name)
    except (OSError, ValueError):
        return default
    return value if value and value > 0 else default


def name_max(folder: Path | str) -> int:
    """The longest file name, in bytes, the file system of ``folder`` (or of its nearest existing ancestor,
    when it does not exist yet) accepts: ``os.pathconf(..., "PC_NAME_MAX")``, 255 when it does not say."""
    return _pathconf(Path(folder), "PC_NAME_MAX", DEFAULT_NAME_MAX)


def check_name_fits(path: Path | str) -> None:
    """Raise ``OSError(ENAMETOOLONG)`` when the file ``path`` cannot be created because its name (in bytes, as
    the file system sees it) is longer than :func:`name_max` of its folder, or its absolute path longer than
    ``PC_PATH_MAX``. The error's ``strerror`` says how long it is and what the limit is; reads nothing else.
    """
    path = Path(os.path.abspath(path))
    size, limit = len(os.fsencode(path.name)), name_max(path.parent)
    if size > limit:
        raise OSError(errno.ENAMETOOLONG, f"File name too long ({size} bytes; the file system allows {limit})",
                      str(path))
    size, limit = len(os.fsencode(str(path))), _pathconf(path.parent, "PC_PATH_MAX", DEFAULT_PATH_MAX)
    if size >= limit:
        raise OSError(errno.ENAMETOOLONG, f"File name too long (the path is {size} bytes; the file system allows "
                      f"{limit - 1})", str(path))


class StagedFiles:
    """Files written in full beside their targets, moved into place by :meth:`commit` (or removed by
    :meth:`discard`). A context manager: leaving the ``with`` block by an exception discards what is staged.

    Attributes:
        targets: the target paths staged so far, in order.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (temporary file, target)

    @property
    def targets(self) -> list[Path]:
        """The targets staged so far, in the order they were added."""
        return [target for _, target in self._staged]

    def add(self, target: Path | str, data: bytes) -> None:
        """Write ``data`` to a new temporary file in ``target``'s folder (made if missing) and ``fsync`` it.

        The temporary file is created with mode ``0o666`` less the umask, as ``open(target, "wb")`` would.

        Raises:
            OSError: the folder cannot be made or written, the disk is full (``ENOSPC``), the target's name is too
                long (``ENAMETOOLONG``, checked first), or the target is a folder (``EISDIR``). The error's
                ``filename`` is ``target``; the temporary file is removed.
        """
        target = Path(target)
        check_name_fits(target)
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{STAGE_PREFIX}{secrets.token_hex(6)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                view = memoryview(data)
                while view:  # os.write may write less than asked
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(e, OSError) and not e.filename:
                raise OSError(e.errno, e.strerror, str(target)) from None
            raise
        self._staged.append((tmp, target))

    def commit(self) -> list[Path]:
        """Rename every staged file over its target, in the order they were added, then ``fsync`` their folders.
        Returns the targets.

        Raises:
            OSError: a rename failed (the folder became read-only since staging, say); the targets before it are
                in place, the remaining temporary files are removed.
        """
        done: list[Path] = []
        try:
            while self._staged:
                tmp, target = self._staged[0]
                os.replace(tmp, target)
                self._staged.pop(0)
                done.append(target)
        finally:
            self.discard()
        for folder in dict.fromkeys(t.parent for t in done):
            with contextlib.suppress(OSError):
                fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return done

    def discard(self) -> None:
        """Remove every staged temporary file; the targets are left as they were."""
        while self._staged:
            tmp, _ = self._staged.pop()
            with contextlib.suppress(OSError):
                tmp.unlink()

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.discard()


__all__ = ["DEFAULT_NAME_MAX", "STAGE_PREFIX", "StagedFiles", "check_name_fits", "name_max"]
