"""The project lock: one ``apply`` at a time per project (``<project>/.compose-kfp/lock``, a file lock).

A second ``apply`` waits up to :data:`LOCK_TIMEOUT` seconds (``--lock-timeout``), then fails with
:class:`~compose_kfp.errors.BusyError` (exit 9).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from compose_kfp.build.statedir import ProjectState, state_dir_error
from compose_kfp.errors import BusyError

if TYPE_CHECKING:  # imported when a lock is taken: a plan with no changes takes none
    import filelock

#: Default seconds a second ``apply`` waits for the project lock before :class:`BusyError`.
LOCK_TIMEOUT = 30.0


def project_lock(root: Path, timeout: float = LOCK_TIMEOUT) -> filelock.FileLock:
    """The file lock serializing ``apply`` runs of the project at ``root`` (``<root>/.compose-kfp/lock``).

    Raises:
        BuildError: the state folder cannot be created (read-only checkout; names ``.compose-kfp``).
    """
    state = ProjectState(Path(root))
    try:
        state.dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise state_dir_error(state, e) from None
    import filelock

    return filelock.FileLock(str(state.lock_path), timeout=timeout)


@contextlib.contextmanager
def holding_project_lock(root: Path, timeout: float = LOCK_TIMEOUT,
                         on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the project lock (:func:`project_lock`) for the ``with`` block.

    ``on_wait()`` is called once when another apply holds it (before waiting up to ``timeout`` seconds), so
    a caller can say why it pauses. ``apply`` plans inside this block, so the plan it prints and applies is
    made after any other apply finished (pass ``lock_held=True`` to :func:`apply_plan` there).

    Raises:
        BusyError: still held after ``timeout`` seconds.
        BuildError: the state folder or its lock file cannot be created (names ``.compose-kfp``).
    """
    import filelock

    lk = project_lock(root, timeout)
    try:
        try:
            lk.acquire(timeout=0)
        except filelock.Timeout:
            if on_wait is not None:
                on_wait()
            lk.acquire()
    except filelock.Timeout:
        raise BusyError(f"another `compose-kfp apply` is running for {root} (lock {lk.lock_file} held for "
                        f"more than {timeout:.0f} s); wait for it to finish and run again.") from None
    except OSError as e:  # the lock file cannot be created (read-only state folder)
        raise state_dir_error(ProjectState(Path(root)), e) from None
    try:
        yield
    finally:
        lk.release()


__all__ = ["LOCK_TIMEOUT", "holding_project_lock", "project_lock"]
