"""``compose-kfp run --local``: run the resolved task graph on this machine, each task inside its image.

:func:`run_local` executes the same :class:`~compose_kfp.pipeline.graph.TaskGraph` the
Argo renderer receives, and passes data the way the rendered Workflow makes
Argo pass it (:mod:`compose_kfp.pipeline.render.workflow`):

- a task's command line comes from :meth:`Task.command_line
  <compose_kfp.pipeline.graph.Task.command_line>` (the shared placeholder resolver):
  ``inputValue`` -> the value text, ``inputPath`` -> ``/tmp/inputs/<input>/data``,
  ``outputPath`` -> ``/tmp/outputs/<output>/data``; Argo variables that Argo
  would substitute in the pod (``{{workflow.name}}``, ``{{workflow.uid}}``,
  ``{{workflow.namespace}}``, ``{{workflow.creationTimestamp}}``,
  ``{{workflow.parameters.<p>}}``, ``{{pod.name}}``) are substituted in the
  command, args and env; other ``{{...}}`` text is left as it is;
- values: literals and defaults as written, params from ``params`` or their
  defaults, upstream outputs read from the upstream output file with one
  trailing newline removed (as Argo's ``valueFrom.path``);
- files: an upstream output file or folder is mounted read-only at the input
  path; a literal or param consumed as a file is written to a file first (Argo's
  ``raw`` artifact) and mounted the same way;
- outputs: ``/tmp/outputs`` is a writable bind mount of
  ``<run_dir>/<task>/outputs``; an output the component writes at a fixed path of
  its own (``fileOutputs``, :func:`~compose_kfp.steps.placeholders.component_output_path`)
  is copied from the finished container to ``outputs/<output>/data``, as Argo's
  executor collects it; after the command exits 0, every output of the
  component must exist, else the task fails (as an Argo output parameter or
  artifact that is missing);
- ``env`` of the component and ``[steps.NAME] env`` are added to the image's
  ``Env``; the image's ``Entrypoint``/``Cmd`` apply as Kubernetes applies them
  (``command`` replaces the entrypoint, ``args`` the cmd); ``[steps.NAME]
  timeout`` (seconds) and ``retries`` are honoured (retries run at once, without
  Argo's backoff).

Executors (``executor=``):

``podman``
    ``podman --runtime runc run --rm --network none -v ...:ro -v ... IMAGE``,
    with a ``containers.conf`` (``default_ulimits = []``, ``cgroup_manager =
    "cgroupfs"``) written under the cache folder and named by ``CONTAINERS_CONF``;
    ``--tls-verify=false`` only for loopback or ``insecure`` registries. Podman
    applies the image's ``Env``, ``WorkingDir`` and ``User`` itself.
``bwrap`` / ``chroot``
    the image's manifest, config and layers are pulled with
    :class:`compose_kfp.oci.registry.RegistryClient` (or read from a local OCI
    layout), unpacked with :func:`compose_kfp.oci.unpack.unpack_image` into a tree
    cached per manifest digest under ``<cache_dir>/rootfs/`` (:mod:`compose_kfp.localrun.rootfs`), and the command runs
    in an overlay over that tree (see :mod:`compose_kfp.localrun.sandbox`) with
    ``Env``, ``WorkingDir`` and ``User`` from the image config; ``chroot`` needs root.
    Images pinned as ``oci:PATH@sha256:...`` (``image.repository = "oci:..."``) are
    read from that layout and always use these executors.
``auto``
    podman when ``podman info`` succeeds, else bwrap when it is installed, else
    chroot when running as root.

Independent tasks run in parallel, at most ``max_parallel`` at a time, started in
graph order. Control flow follows the rendered Workflow (:mod:`compose_kfp.localrun.control`): a task
is decided once every task it depends on has finished; a false ``when`` skips it (and, through the
``depends`` rules, its dependents); a ``for_each`` task runs one iteration per item (at most its
``parallelism`` and ``max_parallel`` at once), each in ``<run_dir>/<task>/<index>/``, and its result
holds one result per iteration; an empty list skips it and its collectors get ``[]``; the exit handler
runs last with the status ``Succeeded`` or ``Failed``. A task that fails (non-zero exit, missing output, timeout, image
that cannot be fetched) makes every task downstream of it ``skipped``; the
other tasks still run. Task failures are reported in the :class:`~compose_kfp.localrun.results.RunResult`,
never raised; the CLI turns a failed run into :class:`~compose_kfp.errors.RunError`
(exit code 7) and prints the failing task's log tail (:mod:`compose_kfp.localrun.report`).
Running a checked project (the images kfp.lock pins, stale-layer warnings) is
:func:`compose_kfp.localrun.project.run_project`.

Cached results (``results_cache``, :mod:`compose_kfp.localrun.cache`): a task (each loop iteration on its own)
whose cache key (:func:`compose_kfp.pipeline.cache.task_keys` with the run's params; an iteration's
:func:`~compose_kfp.pipeline.cache.iteration_key`) has a valid entry is not run: its outputs are restored into
its folder and its result says ``cached``; a task that succeeded is stored under its key. Never cached: the
exit handler, the tasks in ``uncached`` (``cache = false``), failed and skipped tasks.

Run folder layout: ``<run_dir>/<task k8s name>/`` holds ``log.txt`` (stdout and
stderr of the command, interleaved), ``outputs/<output>/data``, ``inputs/<input>/data``
(raw inputs only) and ``task.json`` (image, command line, status);
``<run_dir>/run.json`` holds the whole :class:`~compose_kfp.localrun.results.RunResult`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from compose_kfp.errors import ConfigError, RegistryError, RunError
from compose_kfp.localrun import control
from compose_kfp.localrun.cache import ResultCache
from compose_kfp.localrun.results import EventCallback, RunResult, TaskEvent, TaskResult
from compose_kfp.pipeline.cache import iteration_key, task_keys
from compose_kfp.pipeline.loops import collected_text, item_value
from compose_kfp.localrun.rootfs import ImageStore, RegistryOptions, image_user
from compose_kfp.pipeline.graph import Task, TaskGraph, literal_text
from compose_kfp.oci import errors as oci_errors
from compose_kfp.oci.reference import Reference
from compose_kfp.oci.transport import is_loopback
from compose_kfp.oci.unpack import remove_tree
from compose_kfp.steps.placeholders import OUTPUTS_ROOT, component_output_path, input_path, io_name

__all__ = [
    "Executor",
    "run_local",
    "resolve_params",
    "select_executor",
    "podman_usable",
    "CONTAINERS_CONF",
    "MAX_VALUE_BYTES",
]

log = logging.getLogger(__name__)

Executor = Literal["auto", "podman", "bwrap", "chroot"]

#: The ``containers.conf`` podman is run with (``$CONTAINERS_CONF``): no default ulimits, cgroupfs.
CONTAINERS_CONF = """\
# Written by compose-kfp for `run --local` (podman is started with CONTAINERS_CONF pointing here).
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

#: Outputs up to this size (bytes) that are parameters are reported as values (Argo's parameter limit).
MAX_VALUE_BYTES = 256 * 1024
#: Exit status of the sandbox helper when it could not set the sandbox up.
_SANDBOX_SETUP_FAILED = 125
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ARGO_VAR = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")
_SANDBOX = Path(__file__).with_name("sandbox.py")
_UNSAFE_MOUNT_CHARS = (":", ",")


# ---------------------------------------------------------------------------- executors


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "compose-kfp" / "local-run"


def _podman_env(cache: Path) -> dict[str, str]:
    conf = cache / "podman" / "containers.conf"
    if not conf.is_file() or conf.read_text() != CONTAINERS_CONF:
        conf.parent.mkdir(parents=True, exist_ok=True)
        tmp = conf.with_name(f".containers.conf.{uuid.uuid4().hex[:8]}")
        tmp.write_text(CONTAINERS_CONF)
        os.replace(tmp, conf)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


_usable: dict[str, bool] = {}
_usable_lock = threading.Lock()


def podman_usable(cache_dir: Path | None = None) -> bool:
    """Whether ``podman --runtime runc info`` succeeds with our ``containers.conf`` (checked once per process)."""
    podman = shutil.which("podman")
    if podman is None or shutil.which("runc") is None:
        return False
    cache = _cache_root(cache_dir)
    with _usable_lock:
        key = str(cache)
        if key not in _usable:
            try:
                proc = subprocess.run([podman, "--runtime", "runc", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
                                      env=_podman_env(cache), capture_output=True, text=True, timeout=60)
                _usable[key] = proc.returncode == 0
                if proc.returncode != 0:
                    log.info("podman is not usable: %s", proc.stderr.strip()[-500:])
            except (OSError, subprocess.TimeoutExpired) as e:
                log.info("podman is not usable: %s", e)
                _usable[key] = False
        return _usable[key]


def select_executor(requested: Executor = "auto", cache_dir: Path | None = None) -> str:
    """The executor to use: ``requested`` when it is available, for ``auto`` the first of podman, bwrap, chroot.

    Raises:
        RunError: the requested executor is not available here (the message says why), or none is.
    """
    if requested == "podman":
        if not podman_usable(cache_dir):
            raise RunError("podman is not usable here (`podman --runtime runc info` failed or podman/runc are "
                           "missing); use --executor bwrap or chroot")
        return "podman"
    if requested == "bwrap":
        if shutil.which("bwrap") is None:
            raise RunError("bwrap is not installed (apt-get install bubblewrap); use --executor chroot as root")
        return "bwrap"
    if requested == "chroot":
        if os.geteuid() != 0:
            raise RunError("the chroot executor needs root; use --executor bwrap")
        return "chroot"
    if requested != "auto":
        raise ConfigError(f"unknown executor {requested!r}; expected auto, podman, bwrap or chroot")
    if podman_usable(cache_dir):
        return "podman"
    if shutil.which("bwrap") is not None:
        return "bwrap"
    if os.geteuid() == 0:
        return "chroot"
    raise RunError("no way to run containers here: podman is not usable, bwrap is not installed and this is not "
                   "root; install podman and runc, or bubblewrap")


# ---------------------------------------------------------------------------- one task


@dataclasses.dataclass
class _Prepared:
    """Everything needed to start one task's command."""

    argv: list[str]
    command: list[str]
    args: list[str]
    env: dict[str, str]
    binds: list[tuple[Path, str, bool]]  # (host source, container destination, read-only)
    outputs_dir: Path
    secret_env: dict[str, str] = dataclasses.field(default_factory=dict)  # never written to task.json
    sources: list[str] = dataclasses.field(default_factory=list)  # where each secret_env value came from


def _substitute(text: str, variables: Mapping[str, str]) -> str:
    return _ARGO_VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def _written_inside(src: Path, root: Path) -> bool:
    """Whether ``src`` exists, is no symlink and resolves inside ``root`` (a file the container wrote, never a host
    file a symlink of the container points at)."""
    real, top = os.path.realpath(src), os.path.realpath(root)
    return src.exists() and not src.is_symlink() and (real == top or real.startswith(top + os.sep))


def _copy_out(src: Path, dest: Path) -> None:
    """Copy an output file or folder ``src`` to ``dest`` (replacing what is there; symlinks are not followed)."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copyfile(src, dest, follow_symlinks=False)


def _read_value(path: Path) -> str | None:
    """The output parameter text at ``path`` (one trailing newline removed), or ``None`` when it is not one."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_VALUE_BYTES:
            return None
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text[:-1] if text.endswith("\n") else text


class _Runner:
    """Runs the tasks of one graph (see :func:`run_local`)."""

    def __init__(self, graph: TaskGraph, run_dir: Path, params: Mapping[str, str], executor: str, cache: Path,
                 options: RegistryOptions, on_event: EventCallback | None, secrets_dir: Path | None = None,
                 results: ResultCache | None = None, uncached: frozenset[str] = frozenset()):
        self.graph = graph
        self.results_cache = results
        self.uncached = uncached
        self.keys = task_keys(graph, params)
        self.secrets_dir = secrets_dir
        self.status_text = "Running"
        self.run_dir = run_dir
        self.params = params
        self.executor = executor
        self.cache = cache
        self.options = options
        self.on_event = on_event
        self.results: dict[str, TaskResult] = {}
        self.run_id = uuid.uuid4().hex[:8]
        self.workflow_name = f"{graph.k8s_name[:48]}-{self.run_id}"
        self.workflow_vars = {
            "workflow.name": self.workflow_name,
            "workflow.uid": str(uuid.uuid4()),
            "workflow.namespace": "local",
            "workflow.serviceAccountName": "default",
            "workflow.creationTimestamp": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **{f"workflow.parameters.{k}": v for k, v in params.items()},
        }
        self.images = ImageStore(cache, options) if executor in ("bwrap", "chroot") else None
        self._pulled: dict[str, threading.Lock] = {}
        self._pulled_ok: set[str] = set()
        self._guard = threading.Lock()
        self.podman_env = _podman_env(cache) if executor == "podman" else None

    def emit(self, event: TaskEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a display problem must not stop the run
                log.exception("progress callback failed")

    # ------------------------------------------------------------ inputs

    def _upstream_path(self, task: Task, arg_task: str, output: str) -> Path:
        up = self.results.get(arg_task)
        if up is None or up.status != "succeeded" or output not in up.output_paths:
            raise RunError(f"{task.where}: output {output!r} of task {arg_task!r} is not available")
        return up.output_paths[output]

    def _collected(self, task: Task, arg_task: str, output: str) -> str:
        up = self.results.get(arg_task)
        if up is None:
            raise RunError(f"{task.where}: output {output!r} of task {arg_task!r} is not available")
        texts = []
        for it in up.iterations:
            value = _read_value(it.output_paths[output]) if output in it.output_paths else None
            if value is None:
                raise RunError(f"{task.where}: output {output!r} of {it.name} is not a value to collect")
            texts.append(value)
        return collected_text(texts)

    def _output_text(self, task: Task, arg_task: str, output: str) -> str:
        src = self._upstream_path(task, arg_task, output)
        value = _read_value(src)
        if value is None:
            raise RunError(f"{task.where}: output {output!r} of task {arg_task!r} is not a UTF-8 text value")
        return value

    def prepare(self, task: Task, task_dir: Path, item: Any = None) -> _Prepared:
        values: dict[str, str] = {}
        in_paths: dict[str, str] = {}
        binds: list[tuple[Path, str, bool]] = []
        raw_dir = task_dir / "inputs"
        for arg in task.arguments:
            if arg.source == "literal":
                text = arg.text if arg.text is not None else literal_text(arg.value)
            elif arg.source == "param":
                text = self.params[arg.param]
            elif arg.source == "item":
                text = literal_text(item_value(item, arg.item_field))
            elif arg.source == "status":
                text = self.status_text
            elif arg.collect:
                text = self._collected(task, arg.task, arg.output)
            else:
                text = None
            if arg.uses_value:
                if text is None:
                    src = self._upstream_path(task, arg.task, arg.output)
                    value = _read_value(src)
                    if value is None:
                        raise RunError(f"{task.where}: input {arg.input!r} reads output {arg.output!r} of task "
                                       f"{arg.task!r} as a value, but {src} is not a UTF-8 text file of at most "
                                       f"{MAX_VALUE_BYTES} bytes")
                    values[arg.input] = value
                else:
                    values[arg.input] = text
            if arg.uses_path:
                if text is None:
                    src = self._upstream_path(task, arg.task, arg.output)
                else:
                    src = raw_dir / io_name(arg.input) / "data"
                    src.parent.mkdir(parents=True, exist_ok=True)
                    src.write_text(text)
                binds.append((src, input_path(arg.input), True))
                in_paths[arg.input] = input_path(arg.input)
        outputs_dir = task_dir / "outputs"
        out_paths = {o.name: component_output_path(task.component, o.name) for o in task.outputs}
        line = task.command_line(values=values, input_paths=in_paths, output_paths=out_paths)
        variables = {**self.workflow_vars, "pod.name": f"{self.workflow_name}-{task.k8s_name}"[:63]}
        command = [_substitute(a, variables) for a in line.command]
        args = [_substitute(a, variables) for a in line.args]
        env = {k: _substitute(v, variables) for k, v in task.component.env}
        env.update({k: _substitute(str(v), variables) for k, v in task.settings.env.items()})
        binds.append((outputs_dir, OUTPUTS_ROOT, False))
        secret_env, sources = control.reference_values(task, self.secrets_dir)
        binds += [(folder, mount, True) for folder, mount in control.secret_folders(task, self.secrets_dir)]
        return _Prepared(argv=[*command, *args], command=command, args=args, env=env, binds=binds,
                         outputs_dir=outputs_dir, secret_env=secret_env, sources=sources)

    # ------------------------------------------------------------ execution

    def _insecure(self, image: str) -> bool:
        if self.options.insecure is not None:
            return self.options.insecure
        return is_loopback(Reference.parse(image).registry)

    def _podman_pull(self, task: Task, log_file) -> None:
        image = task.image
        with self._guard:
            lock = self._pulled.setdefault(image, threading.Lock())
        with lock:
            if image in self._pulled_ok:
                return
            self.emit(TaskEvent(task.name, "fetching", message=image))
            cmd = ["podman", "--runtime", "runc", "pull", "--quiet"]
            if self._insecure(image):
                cmd.append("--tls-verify=false")
            if self.options.authfile:
                cmd += ["--authfile", str(self.options.authfile)]
            proc = subprocess.run([*cmd, image], env=self.podman_env, capture_output=True, text=True)
            if proc.returncode != 0:
                log_file.write(proc.stderr)
                raise RegistryError(f"podman pull {image} failed: {proc.stderr.strip()[-500:]}")
            self._pulled_ok.add(image)

    def _podman_argv(self, task: Task, prep: _Prepared, name: str) -> list[str]:
        # A container with fileOutputs is kept until they are copied out of it (then removed).
        keep = ["--rm"] if not task.component.file_outputs else []
        cmd = ["podman", "--runtime", "runc", "run", *keep, "--name", name, "--network", "none",
               "--hostname", task.k8s_name, "--pull", "never"]
        if self._insecure(task.image):
            cmd.append("--tls-verify=false")
        for src, dst, read_only in prep.binds:
            cmd += ["-v", f"{src}:{dst}" + (":ro" if read_only else "")]
        for key, value in prep.env.items():
            cmd += ["-e", f"{key}={value}"]
        for key in prep.secret_env:  # the value comes from podman's own environment, not the command line
            cmd += ["-e", key]
        if prep.command:
            cmd += ["--entrypoint", json.dumps(prep.command)]
        return [*cmd, task.image, *prep.args]

    def _sandbox_argv(self, task: Task, prep: _Prepared, task_dir: Path) -> tuple[list[str], Path]:
        assert self.images is not None
        self.emit(TaskEvent(task.name, "fetching", message=task.image))
        tree = self.images.tree(task.image)
        cc = tree.config.config
        uid, gid, home = image_user(tree.root, cc.user if cc else None)
        env: dict[str, str] = {}
        for item in (cc.env if cc and cc.env else []):
            key, _, value = item.partition("=")
            env[key] = value
        env.setdefault("PATH", _DEFAULT_PATH)
        env.setdefault("HOME", home)
        env["HOSTNAME"] = task.k8s_name
        env.update(prep.env)
        env.update(prep.secret_env)
        if prep.command:
            argv = prep.argv
        else:
            argv = list(cc.entrypoint or []) if cc else []
            argv += prep.args if prep.args else list(cc.cmd or []) if cc else []
        if not argv:
            raise RunError(f"{task.where}: the component has no command and the image no Entrypoint or Cmd")
        box = task_dir / ".sandbox"
        remove_tree(box)
        for sub in ("upper", "work", "merged"):
            (box / sub).mkdir(parents=True)
        spec = {"mode": self.executor, "lower": str(tree.root), "upper": str(box / "upper"),
                "work": str(box / "work"), "merged": str(box / "merged"),
                "binds": [[str(s), d, ro] for s, d, ro in prep.binds], "env": sorted(env.items()),
                "cwd": (cc.working_dir if cc and cc.working_dir else "/"), "argv": argv, "uid": uid, "gid": gid,
                "hostname": task.k8s_name, "bwrap": shutil.which("bwrap") or "bwrap"}
        spec_path = box / "spec.json"
        fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold secret values
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(spec, indent=1))
        return [sys.executable, "-I", "-S", str(_SANDBOX), str(spec_path)], box

    def run_loop(self, task: Task, items: list[Any], max_parallel: int) -> TaskResult:
        """Run one iteration of ``task`` per item (at most ``parallelism`` and ``max_parallel`` at once)."""
        folder = self.run_dir / task.k8s_name
        remove_tree(folder)
        workers = max(1, min(max_parallel, task.loop.parallelism or max_parallel))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="item") as pool:
            futures = [pool.submit(self.run_task, task, folder / str(i), item, f"{task.name}[{i}]")
                       for i, item in enumerate(items)]
            iterations = tuple(f.result() for f in futures)
        failed = [it for it in iterations if it.status != "succeeded"]
        return TaskResult(name=task.name, k8s_name=task.k8s_name, image=task.image,
                          status="failed" if failed else "succeeded",
                          error=f"{failed[0].name} failed: {failed[0].error}" if failed else None,
                          duration=sum(it.duration for it in iterations),
                          attempts=sum(it.attempts for it in iterations), iterations=iterations,
                          cached=bool(iterations) and all(it.cached for it in iterations))

    def _key(self, task: Task, item: Any, name: str | None) -> str | None:
        """The cache key of this run of ``task`` (an iteration's own key), or ``None`` when it is not cached."""
        if self.results_cache is None or task.exit_handler or task.name in self.uncached:
            return None
        k = self.keys[task.name]
        return iteration_key(k.base, item) if name is not None else k.key

    def _cached(self, task: Task, key: str, task_dir: Path, base: dict[str, Any], log_file) -> TaskResult | None:
        """The result of ``task`` restored from a valid cache entry of ``key``, or ``None`` (it must run)."""
        assert self.results_cache is not None
        names = [o.name for o in task.outputs]
        entry = self.results_cache.lookup(key, names)
        if entry is None:
            return None
        self.results_cache.restore(entry, names, task_dir / "outputs")
        log_file.write(f"compose-kfp: not run: the result of cache key {key} was reused ({entry})\n")
        outputs, paths, _ = self._outputs_of(task, task_dir / "outputs")
        return TaskResult(status="succeeded", outputs=outputs, output_paths=paths, cached=True, **base)

    def run_task(self, task: Task, task_dir: Path | None = None, item: Any = None,
                 name: str | None = None) -> TaskResult:
        task_dir = task_dir or self.run_dir / task.k8s_name
        remove_tree(task_dir)
        task_dir.mkdir(parents=True)
        log_path = task_dir / "log.txt"
        base = dict(name=name or task.name, k8s_name=task.k8s_name, log_path=log_path, image=task.image)
        if name is not None:
            base["item"] = item
        attempts = 1 + max(0, task.settings.retries)
        total = 0.0
        argv: list[str] = []
        key = self._key(task, item, name)
        with open(log_path, "w", buffering=1) as log_file:
            restored = self._cached(task, key, task_dir, base, log_file) if key else None
            if restored is not None:
                (task_dir / "task.json").write_text(json.dumps({**restored.to_dict(), "cache_key": key}, indent=1))
                return restored
            try:
                if not task.image:
                    raise RunError(f"{task.where}: step {task.step!r} has no image; run `compose-kfp apply` first")
                prep = self.prepare(task, task_dir, item)
                argv = prep.argv
                for line in prep.sources:
                    log_file.write(f"compose-kfp: {line}\n")
                    log.info("%s: %s", base["name"], line)
            except (RunError, ConfigError) as e:
                log_file.write(f"compose-kfp: {e}\n")
                return TaskResult(status="failed", error=str(e), **base)
            result: TaskResult | None = None
            for attempt in range(1, attempts + 1):
                if attempts > 1:
                    log_file.write(f"--- compose-kfp: attempt {attempt} of {attempts} ---\n")
                remove_tree(prep.outputs_dir)
                prep.outputs_dir.mkdir(parents=True)
                os.chmod(prep.outputs_dir, 0o1777)  # the image's user may not be ours
                self.emit(TaskEvent(task.name, "started", message=f"attempt {attempt}" if attempt > 1 else ""))
                code, seconds, error = self._execute(task, prep, task_dir, log_file)
                total += seconds
                result = self._finish(task, prep, code, error, total, attempt, base)
                if result.status == "succeeded":
                    break
            assert result is not None
        if key and result.status == "succeeded":
            assert self.results_cache is not None
            self.results_cache.store(key, base["name"], [o.name for o in task.outputs], prep.outputs_dir)
        (task_dir / "task.json").write_text(json.dumps(
            {**result.to_dict(), "executor": self.executor, "env": prep.env, "cache_key": key}, indent=1))
        return result

    def _execute(self, task: Task, prep: _Prepared, task_dir: Path, log_file) -> tuple[int | None, float, str | None]:
        """Run the command once; ``(exit code or None, seconds, error or None)``."""
        box: Path | None = None
        try:
            if self.executor == "podman":
                self._podman_pull(task, log_file)
                name = f"compose-kfp-{self.run_id}-{task.k8s_name}"[:63]
                argv = self._podman_argv(task, prep, name)
                env = self.podman_env
            else:
                name = ""
                argv, box = self._sandbox_argv(task, prep, task_dir)
                env = {"PATH": os.environ.get("PATH", _DEFAULT_PATH)}
        except (RunError, RegistryError) as e:
            log_file.write(f"compose-kfp: {e}\n")
            return None, 0.0, str(e)
        except (oci_errors.OCIError, OSError) as e:
            message = f"cannot get image {task.image}: {e}"
            log_file.write(f"compose-kfp: {message}\n")
            return None, 0.0, message
        log.debug("task %s: %s", task.name, argv)
        timeout = task.settings.timeout
        start = time.monotonic()
        try:
            if prep.secret_env:
                env = {**(env or os.environ), **prep.secret_env} if self.executor == "podman" else env
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if name:
                    subprocess.run(["podman", "--runtime", "runc", "kill", name], env=env, capture_output=True)
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
                proc.wait()
                return None, time.monotonic() - start, f"timed out after {timeout} s"
            if code == 0:
                self._collect_file_outputs(task, prep, name, box, log_file)
        finally:
            if name and task.component.file_outputs:
                subprocess.run(["podman", "--runtime", "runc", "rm", "-f", name], env=env, capture_output=True)
            if box is not None:
                remove_tree(box)
        seconds = time.monotonic() - start
        if box is not None and code == _SANDBOX_SETUP_FAILED:
            return code, seconds, "the sandbox could not be set up (see the log)"
        return code, seconds, None

    def _collect_file_outputs(self, task: Task, prep: _Prepared, container: str, box: Path | None,
                              log_file) -> None:
        """Copy each ``fileOutputs`` file out of the finished container to ``<outputs>/<output>/data``, as Argo's
        executor collects an output from the container's file system; a file that is not there stays missing."""
        for out_name, path in task.component.file_outputs:
            dest = prep.outputs_dir / io_name(out_name) / "data"
            bound = next(((src, dst) for src, dst, _ in prep.binds if path == dst or path.startswith(dst + "/")), None)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                if bound is not None:
                    src = bound[0] / path[len(bound[1]):].lstrip("/") if path != bound[1] else bound[0]
                    if src.resolve() != dest.resolve() and _written_inside(src, bound[0]):
                        _copy_out(src, dest)
                elif box is not None:
                    src = box / "upper" / path.lstrip("/")
                    if _written_inside(src, box / "upper"):
                        _copy_out(src, dest)
                else:
                    proc = subprocess.run(["podman", "--runtime", "runc", "cp", f"{container}:{path}", str(dest)],
                                          env=self.podman_env, capture_output=True, text=True)
                    if proc.returncode != 0:
                        log.debug("podman cp %s:%s: %s", container, path, proc.stderr.strip())
            except OSError as e:
                log_file.write(f"compose-kfp: cannot collect output {out_name!r} from {path}: {e}\n")

    def _finish(self, task: Task, prep: _Prepared, code: int | None, error: str | None, seconds: float,
                attempts: int, base: dict[str, Any]) -> TaskResult:
        common = dict(base, duration=seconds, exit_code=code, argv=tuple(prep.argv), attempts=attempts)
        if error is not None:
            return TaskResult(status="failed", error=error, **common)
        if code != 0:
            return TaskResult(status="failed", error=f"exit code {code}", **common)
        outputs, paths, missing = self._outputs_of(task, prep.outputs_dir)
        if missing:
            return TaskResult(status="failed", error="output " + ", ".join(missing) + " was not written",
                              output_paths=paths, **common)
        return TaskResult(status="succeeded", outputs=outputs, output_paths=paths, **common)

    def _outputs_of(self, task: Task, outputs_dir: Path) -> tuple[dict[str, str | Path], dict[str, Path], list[str]]:
        """``(outputs, output paths, missing)`` of ``task`` in ``outputs_dir``: values for parameter outputs (and
        outputs read by value), host paths otherwise; ``missing`` names the outputs not written."""
        outputs: dict[str, str | Path] = {}
        paths: dict[str, Path] = {}
        missing = []
        for out in task.outputs:
            host = outputs_dir / io_name(out.name) / "data"
            if not os.path.lexists(host) or host.is_symlink():
                missing.append(f"{out.name!r} ({component_output_path(task.component, out.name)})")
                continue
            paths[out.name] = host
            value = _read_value(host) if (out.is_parameter_type or out.by_value) else None
            outputs[out.name] = value if value is not None else host
        return outputs, paths, missing

    # ------------------------------------------------------------ scheduling

    def _operand_text(self, task: Task):
        def value_of(operand) -> str:
            if operand.source == "param":
                return self.params[operand.param]
            return self._output_text(task, operand.task, operand.output)
        return value_of

    def _start(self, task: Task, phases: dict[str, str], pool, max_parallel: int):
        """Decide ``task`` (its upstream tasks finished): a skipped result now, or a future running it."""
        try:
            verdict = control.gate(self.graph, task, phases, self._operand_text(task))
            items = None
            if verdict is None and task.loop is not None:
                items = control.loop_items(task, self.params, lambda t, o: self._output_text(task, t, o))
                if not items:
                    verdict = ("Skipped", "for_each has no items: no iteration ran")
        except RunError as e:
            return TaskResult(name=task.name, k8s_name=task.k8s_name, status="failed", error=str(e),
                              image=task.image), "Failed"
        if verdict is not None:
            phase, reason = verdict
            return TaskResult(name=task.name, k8s_name=task.k8s_name, status="skipped", error=reason,
                              image=task.image), phase
        if items is not None:
            return pool.submit(self.run_loop, task, items, max_parallel), None
        return pool.submit(self.run_task, task), None

    def run(self, max_parallel: int) -> tuple[TaskResult, ...]:
        phases: dict[str, str] = {}
        pending = list(self.graph.tasks)
        running: dict[concurrent.futures.Future[TaskResult], Task] = {}

        def record(task: Task, result: TaskResult, phase: str | None = None) -> None:
            self.results[task.name] = result
            phases[task.name] = phase or {"succeeded": "Succeeded", "failed": "Failed"}.get(result.status, "Omitted")

        with concurrent.futures.ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="task") as pool:
            while pending or running:
                progressed = True
                while progressed:
                    progressed = False
                    for task in list(pending):
                        if not all(d in phases for d in task.dependencies):
                            continue
                        if len(running) >= max_parallel:
                            break
                        pending.remove(task)
                        started, phase = self._start(task, phases, pool, max_parallel)
                        if isinstance(started, TaskResult):
                            record(task, started, phase)
                            self.emit(TaskEvent(task.name, "skipped" if started.status == "skipped" else "finished",
                                                started, started.error or ""))
                            progressed = True
                        else:
                            running[started] = task
                if not running:
                    break
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    try:
                        result = future.result()
                    except Exception as e:  # a bug or an unexpected OS error: fail the task, keep the run going
                        log.exception("task %s crashed", task.name)
                        result = TaskResult(name=task.name, k8s_name=task.k8s_name, status="failed",
                                            error=f"{type(e).__name__}: {e}", image=task.image)
                    record(task, result)
                    self.emit(TaskEvent(task.name, "finished", result))
        order = [t.name for t in self.graph.tasks]
        if self.graph.exit_task is not None:
            exit_task = self.graph.exit_task
            self.status_text = "Failed" if any(p == "Failed" for p in phases.values()) else "Succeeded"
            try:
                result = self.run_task(exit_task)
            except Exception as e:
                log.exception("task %s crashed", exit_task.name)
                result = TaskResult(name=exit_task.name, k8s_name=exit_task.k8s_name, status="failed",
                                    error=f"{type(e).__name__}: {e}", image=exit_task.image)
            self.results[exit_task.name] = result
            self.emit(TaskEvent(exit_task.name, "finished", result))
            order.append(exit_task.name)
        if self.images is not None:
            self.images.close()
        return tuple(self.results[name] for name in order)


_PARAM_EXAMPLES = {"Integer": "a whole number such as 10", "Float": "a number such as 0.5",
                   "Boolean": "true or false", "JsonArray": 'a JSON array such as [1, 2]',
                   "JsonObject": 'a JSON object such as {"k": 1}'}


def _fits(text: str, kfp_type: str) -> bool:
    """Whether the run-time text of a param fits the KFP v1 type of its default (what its inputs expect)."""
    try:
        if kfp_type == "Integer":
            int(text.strip())
        elif kfp_type == "Float":
            float(text.strip())
        elif kfp_type == "Boolean":
            return text.strip().lower() in ("true", "false")
        elif kfp_type in ("JsonArray", "JsonObject"):
            return isinstance(json.loads(text), list if kfp_type == "JsonArray" else dict)
    except ValueError:
        return False
    return True


def resolve_params(graph: TaskGraph, params: Mapping[str, Any] | None) -> dict[str, str]:
    """Param name -> the text its inputs receive: the defaults of ``[pipeline.params]``, then ``params``.

    Each given value must fit the type of the param's default (:func:`compose_kfp.pipeline.graph.literal_type`):
    an ``Integer`` param takes ``int()``-readable text, a ``Float`` one ``float()``-readable text, a
    ``Boolean`` one ``true``/``false``, a ``JsonArray``/``JsonObject`` one a JSON array/object; a
    ``String`` param takes anything. Checked before any task runs.

    Raises:
        ConfigError: an unknown param, or a value that does not fit (naming the param, the value and the type).
    """
    declared = {p.name: p for p in graph.params}
    values = {p.name: p.default_text for p in graph.params}
    for key, value in (params or {}).items():
        if key not in values:
            known = ", ".join(values) or "none"
            raise ConfigError(f"{graph.manifest_path}: pipeline.params: unknown param {key!r} given for the run "
                              f"(known: {known})")
        text = literal_text(value)
        kfp_type = declared[key].type
        if not _fits(text, kfp_type):
            raise ConfigError(
                f"{graph.manifest_path}: pipeline.params.{key}: the run was given {text!r}, but the param is "
                f"{'an' if kfp_type[0] in 'AEIOU' else 'a'} {kfp_type} (its default is {declared[key].default_text}); "
                f"expected {_PARAM_EXAMPLES.get(kfp_type, kfp_type)}")
        values[key] = text
    return values


def run_local(graph: TaskGraph, *, run_dir: Path, params: Mapping[str, Any] | None = None,
              executor: Executor = "auto", max_parallel: int = 2, registry: RegistryOptions | None = None,
              cache_dir: Path | None = None, on_event: EventCallback | None = None,
              secrets_dir: Path | None = None, results_cache: Path | None = None, reuse_results: bool = True,
              uncached: Collection[str] = ()) -> RunResult:
    """Run every task of ``graph`` on this machine, each inside its image (see the module docstring).

    Args:
        graph: the resolved graph with pinned images (``resolve_graph(..., images=...)``).
        run_dir: the run folder (created; a task's previous folder there is replaced).
        params: pipeline param overrides, name -> value (strings or TOML-like values,
            turned into text as :func:`~compose_kfp.pipeline.graph.literal_text` does).
        executor: ``auto``, ``podman``, ``bwrap`` or ``chroot`` (see :func:`select_executor`).
        max_parallel: how many tasks may run at the same time (>= 1).
        registry: how to fetch images (insecure registries, credentials, a local layout).
        cache_dir: where unpacked image trees and podman's ``containers.conf`` are kept
            (default ``$XDG_CACHE_HOME/compose-kfp/local-run``).
        on_event: called with a :class:`TaskEvent` when a task is fetching its image, starts,
            finishes or is skipped; may be called from worker threads.
        secrets_dir: a folder of ``<secret or config map>/<key>`` files for tasks' ``env`` references and
            ``secret_volumes`` (:mod:`compose_kfp.localrun.control`); environment variables win.
        results_cache: the folder of cached task results (module docstring); ``None``: no caching.
        reuse_results: look results up there (``False``: every task runs; results are still stored).
        uncached: names of tasks never cached (``cache = false``).

    Returns:
        the :class:`RunResult` (also written to ``<run_dir>/run.json``). Task failures are in it,
        not raised.

    Raises:
        ConfigError: an unknown param; ``max_parallel`` < 1; a run folder path podman cannot mount
            (``:`` or ``,`` in it).
        RunError: the requested executor is not available (see :func:`select_executor`), or
            ``podman`` was asked for images in a local OCI layout (``oci:PATH@sha256:...``, which
            ``auto`` runs with bwrap or chroot).
    """
    if max_parallel < 1:
        raise ConfigError(f"max_parallel must be at least 1, got {max_parallel}")
    values = resolve_params(graph, params)
    run_dir = Path(run_dir).absolute()
    if any(c in str(run_dir) for c in _UNSAFE_MOUNT_CHARS):
        raise ConfigError(f"run folder {run_dir}: a path with ':' or ',' cannot be mounted into a container; "
                          f"choose another --run-dir")
    cache = _cache_root(cache_dir).absolute()
    cache.mkdir(parents=True, exist_ok=True)
    layout_images = sorted({t.image for t in graph.all_tasks if t.image and t.image.startswith("oci:")})
    if layout_images and executor == "podman":
        raise RunError(f"image {layout_images[0]} is in a local OCI layout, which podman cannot run by digest; "
                       f"use --executor bwrap or chroot (or push the image to a registry)")
    if layout_images and executor == "auto":
        executor = "bwrap" if shutil.which("bwrap") else "chroot"
    chosen = select_executor(executor, cache)
    run_dir.mkdir(parents=True, exist_ok=True)
    log.info("running pipeline %s locally with %s in %s", graph.name, chosen, run_dir)
    start = time.monotonic()
    results = ResultCache(Path(results_cache).absolute(), reuse=reuse_results) if results_cache else None
    runner = _Runner(graph, run_dir, values, chosen, cache, registry or RegistryOptions(), on_event, secrets_dir,
                     results, frozenset(uncached))
    tasks = runner.run(max_parallel)
    result = RunResult(pipeline=graph.name, run_dir=run_dir, executor=chosen, tasks=tasks,
                       duration=time.monotonic() - start, params=values)
    (run_dir / "run.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result
