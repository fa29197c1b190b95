"""Run one command inside an unpacked image tree: the child process of the local runner's fallback executors.

Standard library only, started as ``python3 -I sandbox.py SPEC.json``
by :mod:`compose_kfp.localrun.runner` when podman is not usable. It gives the command
a writable root without touching the cached tree, the way a container runtime
does:

1. a private mount namespace (and, when not root, a user namespace mapping the
   caller to uid 0, so the next step needs no privileges);
2. an overlay mount (``lowerdir`` = the cached tree, read-only; ``upperdir`` and
   ``workdir`` in the task's folder) at ``merged``; everything the task writes
   outside its bind mounts lands in ``upperdir`` and is thrown away afterwards;
3. then either

   * ``mode = "bwrap"``: ``exec bwrap --bind merged / --dev /dev --proc /proc``
     with new network, pid, ipc and uts namespaces, the bind mounts, ``--chdir``,
     ``--clearenv`` + ``--setenv``, and ``--uid``/``--gid`` for a non-root image user;
   * ``mode = "chroot"`` (root only): new network, pid, ipc and uts namespaces;
     a forked child binds the inputs and outputs under a staging folder,
     ``chroot``s into ``merged``, mounts ``/proc``, a small ``/dev`` (``null``,
     ``zero``, ``full``, ``random``, ``urandom``, ``tty`` bound from the host) and
     ``/dev/shm``, moves the staged mounts to their destinations (resolved inside
     the new root, so image symlinks cannot point them at host paths), drops to
     the image user, changes to the working directory and ``execvpe``s the command.

The spec (JSON object): ``mode``, ``lower``, ``upper``, ``work``, ``merged``,
``binds`` (``[[host source, container destination, read_only], ...]``), ``env``
(``[[name, value], ...]``), ``cwd``, ``argv``, ``uid``, ``gid``, ``hostname``
and, for bwrap, ``bwrap`` (its path). The exit status is the command's (128 +
signal when it was killed); 125 means the sandbox itself could not be set up
(the reason is written to stderr), 127 that the command was not found.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

SETUP_FAILED = 125
NOT_FOUND = 127

_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """The sandbox could not be set up (exit status 125)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _unshare(flags: int, what: str) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({what})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None, what: str) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), what)


def _umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(MNT_DETACH)), f"umount {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_mount_namespace() -> None:
    """A private mount namespace; as a normal user inside a new user namespace where the caller is root."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        _unshare(CLONE_NEWNS, "mount namespace")
    else:
        _unshare(CLONE_NEWUSER | CLONE_NEWNS, "user and mount namespaces")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None, "making mounts private")


def _overlay(spec: dict) -> None:
    for key in ("lower", "upper", "work"):
        if any(c in spec[key] for c in ",:"):
            raise SetupError(f"overlay {key}dir {spec[key]!r} contains ',' or ':'")
    data = f"lowerdir={spec['lower']},upperdir={spec['upper']},workdir={spec['work']}"
    _mount("overlay", spec["merged"], "overlay", 0, data, f"overlay mount at {spec['merged']}")


def _make_workdir(merged: str, cwd: str) -> None:
    """Create the working directory in the overlay when missing (as podman does), never through a symlink."""
    current = merged
    for part in [p for p in cwd.split("/") if p not in ("", ".")]:
        if part == "..":
            return
        current = os.path.join(current, part)
        if os.path.islink(current):
            return  # bwrap resolves it inside the new root
        if not os.path.lexists(current):
            os.mkdir(current, 0o755)


def _bwrap(spec: dict) -> None:
    _make_workdir(spec["merged"], spec["cwd"])
    args = [spec["bwrap"], "--bind", spec["merged"], "/", "--dev", "/dev", "--proc", "/proc",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", spec["hostname"],
            "--die-with-parent", "--new-session"]
    if spec["uid"] != 0 or spec["gid"] != 0:
        args += ["--unshare-user", "--uid", str(spec["uid"]), "--gid", str(spec["gid"])]
    for src, dst, read_only in spec["binds"]:
        args += ["--ro-bind" if read_only else "--bind", src, dst]
    args += ["--chdir", spec["cwd"], "--clearenv"]
    for name, value in spec["env"]:
        args += ["--setenv", name, value]
    args += ["--", *spec["argv"]]
    os.execv(spec["bwrap"], args)


def _prepare_target(path: str, is_dir: bool) -> None:
    """Create a mount point at ``path`` (inside the current root) of the right kind."""
    if os.path.islink(path) or (os.path.lexists(path) and os.path.isdir(path) != is_dir):
        raise SetupError(f"cannot mount over {path}: the image has a {'symlink' if os.path.islink(path) else 'different kind of entry'} there")
    if is_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        if not os.path.exists(path):
            open(path, "a").close()


def _chroot_child(spec: dict) -> None:
    merged = spec["merged"]
    stage_name = f".compose-kfp-stage-{os.getpid()}"
    stage = os.path.join(merged, stage_name)
    os.mkdir(stage, 0o700)
    staged: list[tuple[str, str, bool, bool]] = []  # (staged path inside the root, destination, read_only, is_dir)
    sources = [(src, dst, ro) for src, dst, ro in spec["binds"]]
    sources += [(f"/dev/{d}", f"/dev/{d}", False) for d in _DEVICES if os.path.exists(f"/dev/{d}")]
    for i, (src, dst, read_only) in enumerate(sources):
        is_dir = os.path.isdir(src)
        point = os.path.join(stage, str(i))
        _prepare_target(point, is_dir)
        _mount(src, point, None, MS_BIND | MS_REC, None, f"bind {src}")
        staged.append((f"/{stage_name}/{i}", dst, read_only, is_dir))
    os.chroot(merged)
    os.chdir("/")
    if os.path.islink("/proc") or os.path.islink("/dev"):
        raise SetupError("the image has /proc or /dev as a symlink")
    os.makedirs("/proc", exist_ok=True)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "mount /proc")
    os.makedirs("/dev", exist_ok=True)
    _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k", "mount /dev")
    os.makedirs("/dev/shm")
    _mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k", "mount /dev/shm")
    os.makedirs("/dev/pts")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")
    for point, dst, read_only, is_dir in staged:
        _prepare_target(dst, is_dir)
        _mount(point, dst, None, MS_MOVE, None, f"move mount to {dst}")
        if read_only:
            _mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None, f"read-only {dst}")
    for point, _, _, is_dir in staged:  # the emptied mount points
        (os.rmdir if is_dir else os.unlink)(point)
    os.rmdir(f"/{stage_name}")
    env = dict(spec["env"])
    os.makedirs(spec["cwd"], exist_ok=True)
    if spec["gid"] != 0 or spec["uid"] != 0:
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
    os.chdir(spec["cwd"])
    _exec(spec["argv"], env)


def _exec(argv: list[str], env: dict[str, str]) -> None:
    """``execve`` ``argv``, looking ``argv[0]`` up in the image's ``PATH`` (no imports: the host stdlib is gone)."""
    name = argv[0]
    candidates = [name] if "/" in name else [os.path.join(d or ".", name)
                                             for d in env.get("PATH", "/usr/bin:/bin").split(":")]
    last: OSError | None = None
    for path in candidates:
        try:
            os.execve(path, argv, env)
        except (FileNotFoundError, NotADirectoryError) as e:
            last = last or e
        except PermissionError as e:
            last = e
    if isinstance(last, PermissionError):
        sys.stderr.write(f"compose-kfp sandbox: cannot run {name}: permission denied\n")
        os._exit(NOT_FOUND - 1)
    sys.stderr.write(f"compose-kfp sandbox: {name}: command not found in the image\n")
    os._exit(NOT_FOUND)


def _chroot(spec: dict) -> int:
    if os.geteuid() != 0:
        raise SetupError("the chroot executor needs root; use bwrap instead")
    _unshare(CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS, "network, pid, ipc and uts namespaces")
    _check(_libc.sethostname(spec["hostname"].encode(), ctypes.c_size_t(len(spec["hostname"].encode()))),
           "sethostname")
    pid = os.fork()
    if pid == 0:
        try:
            _chroot_child(spec)
        except SetupError as e:
            sys.stderr.write(f"compose-kfp sandbox: {e}\n")
        except BaseException as e:  # noqa: BLE001 - after chroot no traceback can be printed
            sys.stderr.write(f"compose-kfp sandbox: {type(e).__name__}: {e}\n")
        os._exit(SETUP_FAILED)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main(argv: list[str]) -> int:
    """Entry point: ``argv[1]`` is the spec file. Returns the exit status (see the module docstring)."""
    with open(argv[1]) as f:
        spec = json.load(f)
    try:
        _enter_mount_namespace()
        _overlay(spec)
        if spec["mode"] == "bwrap":
            _bwrap(spec)  # does not return
        return _chroot(spec)
    except (SetupError, OSError) as e:
        sys.stderr.write(f"compose-kfp sandbox: {e}\n")
        return SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
