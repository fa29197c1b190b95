"""The Python API: what the CLI does, as typed functions for a notebook cell or a script.

One implementation, two front doors: every function here calls the library functions the CLI commands call
(:func:`~compose_kfp.manifest.project.load_project`, :func:`~compose_kfp.build.plan.plan_project`,
:func:`~compose_kfp.build.apply.apply_project` / :func:`~compose_kfp.build.apply.apply_plan`,
:func:`~compose_kfp.pipeline.outputs.render_from_lock`, :func:`~compose_kfp.localrun.project.run_project`,
:func:`~compose_kfp.steps.introspect.function_component`,
:func:`~compose_kfp.pipeline.render.component.render_component`) and returns the objects whose ``to_dict()`` the
CLI prints with ``--json``; the same inputs give the same digests and the same rendered files.

- Project functions: :func:`plan`, :func:`apply`, :func:`render`, :func:`run_local` take the ``kfp.toml`` (or
  its folder) as the CLI's ``-f`` / ``-C`` do.
- Image functions without a ``kfp.toml``, as the thesis's notebook API had them: :func:`build_image` (a base
  plus files, pushed to a registry or written to an OCI layout) and :func:`extend_image` (files on top of an
  image in a local OCI layout, written back into it). They describe the image as a ``kfp.toml`` of its own
  (no steps) in a work folder, so the image is exactly the one ``compose-kfp apply`` builds for that file.
- Components: :func:`save_component` (a typed Python function to a KFP v1 component file, as ``apply``
  renders ``build/components/<step>.yaml``) and :func:`load_component` (a component file to the
  :class:`~compose_kfp.steps.component.ComponentSpec` the planner and renderer use).

Nothing here prints. Progress, ``(event, name, done bytes, total bytes)`` as the CLI's bars get it
(``build``, ``built``, ``upload``, ``copy``, ``install``), goes to the ``progress`` callback; the default
``"auto"`` shows a progress bar (tqdm, else rich) when running in a Jupyter kernel and nothing elsewhere;
``None`` turns it off. Errors are the classes of :mod:`compose_kfp.errors` (``exit_code`` is the CLI's exit
status for them), located as the CLI locates them (``kfp.toml:LINE: KEY: ...``); an OCI error is turned into
one of them (:func:`compose_kfp.errors.from_oci`).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence, Union

from compose_kfp.errors import ComposeError, ConfigError, located
from compose_kfp.oci.errors import OCIError

if TYPE_CHECKING:
    from compose_kfp.build.apply import ApplyResult
    from compose_kfp.localrun.results import RunResult
    from compose_kfp.manifest.project import Project
    from compose_kfp.planner import Plan
    from compose_kfp.steps.component import ComponentSpec

__all__ = ["IncludePath", "Progress", "apply", "build_image", "extend_image", "load_component", "plan", "render",
           "run_local", "save_component"]

#: Progress callback: ``(event, name or digest, done bytes, total bytes)``.
Progress = Callable[[str, str, int, int], None]
#: What the ``progress`` argument takes: a callback, ``"auto"`` (a bar in a notebook) or ``None`` (nothing).
ProgressArg = Union[Progress, Literal["auto"], None]
#: An entry of ``include_paths``: a path (put under the image's workdir at the same relative path) or a
#: ``(src, dst)`` pair (``dst`` absolute in the image).
IncludePath = Union[str, os.PathLike, "tuple[str | os.PathLike[str], str]"]

#: Name of the generated ``kfp.toml`` of :func:`build_image` / :func:`extend_image` in its work folder.
IMAGE_MANIFEST = "kfp.toml"


# --------------------------------------------------------------------------- errors and progress


@contextlib.contextmanager
def _errors(project: Project | None = None) -> Iterator[list[Any]]:
    """Turn OCI errors into ours and locate errors in the loaded manifest, as the CLI's error boundary does.

    Yields a one-item list the caller may fill with the :class:`~compose_kfp.manifest.load.LoadedManifest`
    once it has one (so errors after loading name its lines)."""
    holder: list[Any] = [project.loaded if project is not None else None]
    try:
        yield holder
    except (ComposeError, OCIError) as error:
        ours = located(error, holder[0])
        if ours is error:
            raise
        raise ours from error


def _notebook_bars() -> contextlib.AbstractContextManager[Progress | None]:
    """Progress bars for a Jupyter kernel (tqdm's notebook bars, else rich's), or nothing outside a kernel or
    without either library."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is None or "ipykernel" not in sys.modules:
        return contextlib.nullcontext(None)
    try:
        import warnings

        with warnings.catch_warnings():  # without ipywidgets tqdm.auto draws text bars and warns about it
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        return _TqdmBars(tqdm)
    try:
        from rich.progress import Progress as RichProgress
    except ImportError:  # pragma: no cover - rich is a dependency
        return contextlib.nullcontext(None)
    return _RichBars(RichProgress)


_LABELS = {"build": "building", "upload": "uploading", "copy": "copying base", "install": "installing"}


class _TqdmBars:
    """One tqdm bar per ``(event, name)`` of the ``progress`` callback; closed on exit."""

    def __init__(self, tqdm: Any) -> None:
        self.tqdm, self.bars = tqdm, {}  # type: ignore[var-annotated]

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        for bar in self.bars.values():
            bar.close()

    def __call__(self, event: str, name: str, done: int, total: int) -> None:
        if event not in _LABELS:
            return
        bar = self.bars.get((event, name))
        if bar is None:
            shown = name[:19] + "…" if name.startswith("sha256:") else name
            bar = self.bars[(event, name)] = self.tqdm(total=total or None, desc=f"{_LABELS[event]} {shown}",
                                                       unit="B", unit_scale=True)
        bar.total = total or bar.total
        bar.update(done - bar.n)


class _RichBars:
    """The same with rich (which draws in a notebook output area)."""

    def __init__(self, progress_cls: Any) -> None:
        self.progress, self.tasks = progress_cls(), {}  # type: ignore[var-annotated]

    def __enter__(self) -> Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, event: str, name: str, done: int, total: int) -> None:
        if event not in _LABELS:
            return
        key = (event, name)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{_LABELS[event]} {name[:19]}", total=total or None)
        self.progress.update(self.tasks[key], completed=done, total=total or None)


def _progress(progress: ProgressArg) -> contextlib.AbstractContextManager[Progress | None]:
    if progress == "auto":
        return _notebook_bars()
    return contextlib.nullcontext(progress)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- projects


def _load(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None,
          overrides: Mapping[str, Any] | None = None) -> Project:
    from compose_kfp.manifest.project import load_project

    with _errors():
        return load_project(Path(path) if path is not None else None, env=env, overrides=overrides)


def plan(path: str | os.PathLike[str] = "kfp.toml", *, frozen: bool = False, repository: str | None = None,
         base: str | None = None, env: Mapping[str, str] | None = None, progress: ProgressArg = "auto") -> Plan:
    """What ``apply`` would change, as ``compose-kfp plan --json`` computes it.

    Args:
        path: the ``kfp.toml`` (or its folder); relative paths in it are relative to its folder.
        frozen: use the base digests of ``kfp.lock`` and fail if it would change (``--frozen``).
        repository, base: override ``image.repository`` / ``image.base`` (``--repository`` / ``--base``).
        env: the environment to read ``COMPOSE_KFP_*`` from (default: ``os.environ``).
        progress: see the module docstring (changed layers are built into the local store while planning).

    Returns:
        the :class:`~compose_kfp.planner.Plan`; ``to_dict()`` / ``to_json()`` are ``plan --json``'s output,
        ``has_changes`` whether ``apply`` would change anything.

    Raises:
        ConfigError, StepError, BuildError, RegistryError, AuthError, StaleError: as ``compose-kfp plan``.
    """
    from compose_kfp.build.plan import plan_project

    project = _load(path, env, {"image.repository": repository, "image.base": base})
    with _errors(project), _progress(progress) as bars:
        return plan_project(project, frozen=frozen, progress=bars)


def apply(path: str | os.PathLike[str] = "kfp.toml", *, frozen: bool = False, repository: str | None = None,
          base: str | None = None, lock_timeout: float = 30.0, env: Mapping[str, str] | None = None,
          progress: ProgressArg = "auto") -> ApplyResult:
    """Build, push and render as ``compose-kfp apply -y`` does (without asking).

    Args: as :func:`plan`; ``lock_timeout``: seconds to wait for another apply of the project (``--lock-timeout``).

    Returns:
        the :class:`~compose_kfp.build.apply.ApplyResult`: ``to_dict()`` equals the ``result`` of
        ``apply --json`` (``plan.images[i].reference`` is each image's ``repository@sha256:...``, main first).
        When nothing had to change (where ``--json`` gives ``"result": null``) it is the plan with nothing
        uploaded, tagged or written (``changed`` false), so the references are there either way.

    Raises:
        as ``compose-kfp apply``: ConfigError, BuildError, RegistryError, AuthError, RenderError,
        StaleError (``frozen`` and kfp.lock would change), BusyError (the project lock stayed held).
    """
    from compose_kfp.build.apply import ApplyResult, apply_project

    project = _load(path, env, {"image.repository": repository, "image.base": base})
    with _errors(project):
        outcome = apply_project(project, frozen=frozen, lock_timeout=lock_timeout,
                                progress=lambda: _progress(progress))
    return outcome.result if outcome.result is not None else ApplyResult(plan=outcome.plan)


def render(path: str | os.PathLike[str] = "kfp.toml", *, targets: Sequence[Literal["argo", "kfp"]] | None = None,
           output_dir: str | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """Render the component files and the workflow from the digests in ``kfp.lock`` (``compose-kfp render``).

    Args:
        targets: ``argo`` and/or ``kfp`` (default: ``render.targets``); ``output_dir``: overrides
            ``render.output_dir`` (relative to the project folder and inside it, or absolute).

    Returns:
        the absolute paths of the files written or removed, in rendering order (empty: all up to date).

    Raises:
        ConfigError, RenderError, StaleError: as ``compose-kfp render`` (no kfp.lock yet: run :func:`apply`).
    """
    from compose_kfp.pipeline.outputs import render_from_lock

    project = _load(path, env, {"render.targets": list(targets) if targets else None, "render.output_dir": output_dir})
    with _errors(project):
        return [project.root / name for name in render_from_lock(project)]


def run_local(path: str | os.PathLike[str] = "kfp.toml", *, params: Mapping[str, Any] | None = None,
              run_dir: str | os.PathLike[str] | None = None,
              executor: Literal["auto", "podman", "bwrap", "chroot"] = "auto", parallel: int = 2,
              on_event: Callable[[Any], None] | None = None, on_notice: Callable[[str, str], None] | None = None,
              check: bool = True, env: Mapping[str, str] | None = None, cache: bool = True) -> RunResult:
    """Run the pipeline on this machine in the images ``kfp.lock`` pins (``compose-kfp run --local``).

    Args:
        params: pipeline params by name (text or values; defaults from ``[pipeline.params]``).
        run_dir: folder for outputs and logs (default ``<output dir>/runs/<timestamp>``).
        executor, parallel: as ``--executor`` / ``--parallel``.
        on_event: called with each task's started / finished / skipped event; ``on_notice(kind, text)``
            with the warnings and notes the CLI prints on stderr.
        check: raise :class:`~compose_kfp.errors.RunError` when a task failed (as the CLI exits 7); with
            ``False`` the failures are only in the result.
        cache: reuse cached task results (``False``: as ``--no-cache``, every task runs; results are still stored).

    Returns:
        the :class:`~compose_kfp.localrun.results.RunResult` (``to_dict()`` is ``run --local --json``'s output).

    Raises:
        RunError: a task failed (``check``) or no executor is usable; ConfigError: no ``[pipeline]`` or a bad
        param; StaleError: the images are not applied yet.
    """
    from compose_kfp.localrun.project import run_project
    from compose_kfp.localrun.report import raise_for_failure

    project = _load(path, env)
    with _errors(project):
        result = run_project(project, params=dict(params or {}), run_dir=Path(run_dir) if run_dir else None,
                             executor=executor, max_parallel=parallel, on_event=on_event, on_notice=on_notice,
                             reuse_results=cache)
        if check:
            raise_for_failure(result)
    return result


# --------------------------------------------------------------------------- images without a kfp.toml


def _toml(value: Any) -> str:
    """``value`` (str, bool, int, list, dict of those) as a TOML value; strings as JSON strings, which TOML reads."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} into kfp.toml")


def _includes(include_paths: Sequence[IncludePath], context: Path, workdir: str) -> list[dict[str, str]]:
    """``include_paths`` as ``{src, dst}`` tables with absolute sources (``context`` resolves relative ones)."""
    if isinstance(include_paths, (str, os.PathLike)):
        include_paths = [include_paths]
    entries = []
    for i, entry in enumerate(include_paths):
        if isinstance(entry, (tuple, list)):
            if len(entry) != 2 or not str(entry[1]).startswith("/"):
                raise ConfigError(f"include_paths[{i}]: expected a path or a (src, dst) pair with dst an absolute "
                                  f"path in the image, got {entry!r}")
            src, dst = Path(os.fspath(entry[0])).expanduser(), str(entry[1])
        else:
            src, dst = Path(os.fspath(entry)).expanduser(), ""
        full = src if src.is_absolute() else context / src
        if not full.exists():
            raise ConfigError(f"include_paths[{i}]: {os.fspath(src)!r} does not exist (looked in {context})")
        if not dst:
            if src.is_absolute() or ".." in src.parts:
                raise ConfigError(f"include_paths[{i}]: {os.fspath(src)!r} is not below {context}; give it a place "
                                  f"in the image as a pair ({os.fspath(src)!r}, '/abs/path')")
            dst = workdir.rstrip("/") + "/" + src.as_posix().strip("/")
        entries.append({"src": str(full.resolve()), "dst": dst})
    if not entries:
        raise ConfigError("include_paths: give at least one path to put into the image")
    return entries


def image_manifest(base: str, include_paths: Sequence[IncludePath], repository: str, *,
                   tags: Sequence[str] = (), platform: str | Sequence[str] = "linux/amd64",
                   auth: Mapping[str, str] | None = None, workdir: str = "/app", name: str | None = None,
                   context: str | os.PathLike[str] | None = None) -> str:
    """The ``kfp.toml`` text :func:`build_image` builds (arguments as there): ``[project]``, ``[image]`` and one
    layer ``files`` of ``{ src = "/abs/path", dst = "/in/image" }`` entries, no steps. Writing it anywhere and
    running ``compose-kfp apply`` on it gives the same image.

    Raises:
        ConfigError: an include path that does not exist, a plain path outside ``context``, a malformed pair.
    """
    ctx = Path(context) if context is not None else Path.cwd()
    layer = _includes(include_paths, ctx.resolve(), workdir)
    image: dict[str, Any] = {"base": base, "repository": repository,
                             "platforms": [platform] if isinstance(platform, str) else list(platform),
                             "workdir": workdir}
    if tags:
        image["tags"] = list(tags)
    lines = ["[project]", f"name = {_toml(name or _default_name(repository))}", "", "[image]"]
    lines += [f"{key} = {_toml(value)}" for key, value in image.items()]
    if auth:
        lines += ["", "[image.auth]"] + [f"{key} = {_toml(str(value))}" for key, value in auth.items()]
    lines += ["", "[[image.layers]]", 'name = "files"', "paths = ["] + [f"  {_toml(e)}," for e in layer] + ["]"]
    return "\n".join(lines) + "\n"


def _default_name(repository: str) -> str:
    tail = repository.rstrip("/").rsplit("/", 1)[-1].split(":")[-1]
    return tail or "image"


def _work_folder(repository: str, workspace: str | os.PathLike[str] | None) -> Path:
    """Where the generated project lives: ``workspace``, else one folder per repository under the cache
    (``$XDG_CACHE_HOME/compose-kfp/images/<hash>``), so a second build of the same image reuses its layer cache."""
    if workspace is not None:
        return Path(workspace).resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compose-kfp" / "images"
    return cache / hashlib.sha256(repository.encode()).hexdigest()[:16]


def _absolute_layout(reference: str, context: Path) -> str:
    """``oci:relative/path[:tag]`` resolved against ``context`` (the generated kfp.toml lives elsewhere)."""
    if not reference.startswith("oci:"):
        return reference
    rest = reference[4:]
    return reference if rest.startswith("/") else "oci:" + str(context / rest)


def build_image(base: str, include_paths: Sequence[IncludePath], repository: str, *, tags: Sequence[str] = (),
                platform: str | Sequence[str] = "linux/amd64", auth: Mapping[str, str] | None = None,
                workdir: str = "/app", name: str | None = None, context: str | os.PathLike[str] | None = None,
                workspace: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                progress: ProgressArg = "auto") -> str:
    """Build ``base`` plus ``include_paths`` into one new layer and push it to ``repository``; return its reference.

    The image is the one ``compose-kfp apply`` builds for :func:`image_manifest`'s ``kfp.toml``: reproducible
    layers, the base never downloaded (its layers are mounted), only missing blobs uploaded, the tags
    ``kfp-<first 16 hex of the digest>`` plus ``tags`` written last.

    Args:
        base: the base image (``python:3.11-slim``, ``host:5000/repo:tag``, ``oci:PATH[:TAG]``, ``scratch``).
        include_paths: paths relative to ``context`` (each goes to the same relative path under ``workdir``) and
            ``(src, dst)`` pairs (``src`` anywhere, ``dst`` an absolute path in the image).
        repository: a registry repository (``host/name``, no tag) or ``oci:PATH`` for a local OCI layout.
        tags: extra tags; platform: one platform or several (``linux/amd64``); auth: the ``[image.auth]`` keys
            (``config``, ``helper``, ``username_env``, ``password_env``), references to credentials, never secrets.
        name: the project name recorded in the image labels (default: the repository's last part).
        context: the folder relative paths start from (default: the current directory).
        workspace: the folder of the generated ``kfp.toml``, its ``kfp.lock`` and the ``.compose-kfp`` layer cache
            (default: a folder per repository under ``$XDG_CACHE_HOME/compose-kfp/images``).
        env: as :func:`plan`, except that ``COMPOSE_KFP_BASE``, ``_REPOSITORY``, ``_PLATFORMS`` and ``_TAGS`` are
            not read (the arguments say those); ``COMPOSE_KFP_INSECURE``, ``_INDEX_URL``, ``_COMPRESSION`` are.
        progress: as :func:`plan`.

    Returns:
        ``repository@sha256:<manifest or index digest>`` (for a layout, ``oci:/abs/path@sha256:...``).

    Raises:
        ConfigError: a bad argument (the message names ``include_paths[i]`` or the ``kfp.toml`` key);
        BuildError, RegistryError, AuthError: as ``compose-kfp apply``.
    """
    ctx = (Path(context) if context is not None else Path.cwd()).resolve()
    repository, base = _absolute_layout(repository, ctx), _absolute_layout(base, ctx)
    text = image_manifest(base, include_paths, repository, tags=tags, platform=platform, auth=auth, workdir=workdir,
                          name=name, context=ctx)
    folder = _work_folder(repository, workspace)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / IMAGE_MANIFEST
    if not manifest.is_file() or manifest.read_text(encoding="utf-8") != text:
        manifest.write_text(text, encoding="utf-8")
    result = apply(manifest, env=_without_argument_vars(env), progress=progress)
    return result.plan.images[0].reference or ""


#: The kfp.toml keys :func:`build_image` takes as arguments: their ``COMPOSE_KFP_*`` variables must not override
#: them (a notebook server's ``COMPOSE_KFP_REPOSITORY`` is for kfp.toml projects, not for an explicit argument).
_ARGUMENT_KEYS = frozenset({"image.base", "image.repository", "image.platforms", "image.tags"})


def _without_argument_vars(env: Mapping[str, str] | None) -> dict[str, str]:
    from compose_kfp.manifest.load import ENV_VARS

    dropped = {var.name for var in ENV_VARS if var.key in _ARGUMENT_KEYS}
    return {k: v for k, v in (os.environ if env is None else env).items() if k not in dropped}


def extend_image(layout_or_ref: str | os.PathLike[str], include_paths: Sequence[IncludePath], *,
                 repository: str | None = None, tags: Sequence[str] = (), **options: Any) -> str:
    """Put ``include_paths`` on top of an image in a local OCI layout and write the result back into it.

    Args:
        layout_or_ref: an OCI layout folder (its only image, or ``PATH:TAG``) or any base reference
            :func:`build_image` takes (``oci:PATH[:TAG]``, a registry reference).
        include_paths: as :func:`build_image`.
        repository: where the new image goes (default: the same layout, for a layout; required otherwise).
        tags, options: as :func:`build_image` (``platform``, ``auth``, ``workdir``, ``context``, ...).

    Returns:
        the new image's reference, ``oci:/abs/layout@sha256:...`` for a layout.

    Raises:
        ConfigError: no ``repository`` for a registry base; as :func:`build_image` otherwise.
    """
    ref = os.fspath(layout_or_ref)
    ctx = Path(options.get("context") or Path.cwd()).resolve()
    if not ref.startswith(("oci:", "dir:", "docker-archive:")) and (ctx / ref.split(":")[0]).is_dir():
        ref = "oci:" + ref
    if repository is None:
        if not ref.startswith("oci:"):
            raise ConfigError(f"extend_image({ref!r}): give repository= for an image that is not in a local layout")
        path, _, _tag = ref[4:].partition(":")
        repository = "oci:" + path
    return build_image(ref, include_paths, repository, tags=tags, **options)


# --------------------------------------------------------------------------- components


def _function_ref(function: Callable[..., Any] | str, root: Path) -> tuple[str, str]:
    """``(file relative to root : function, function name)`` for a function object or a ``file.py:function``."""
    if isinstance(function, str):
        return function, function.rpartition(":")[2]
    target = inspect.unwrap(function)
    source = inspect.getsourcefile(target)
    if source is None or not source.endswith(".py"):
        raise ConfigError(f"save_component: {getattr(function, '__qualname__', function)!r} is not defined in a .py "
                          "file (a function typed into a notebook cell has none); move it into a module, or "
                          "pass 'file.py:function'")
    try:
        rel = Path(source).resolve().relative_to(root)
    except ValueError:
        raise ConfigError(f"save_component: {source} is not inside {root}, the folder whose files the image "
                          "holds; pass root= (the folder copied to the image's workdir)") from None
    return f"{rel.as_posix()}:{target.__name__}", target.__name__


def save_component(function: Callable[..., Any] | str, *, image: str, output: str | os.PathLike[str] | None = None,
                   name: str | None = None, description: str | None = None,
                   root: str | os.PathLike[str] | None = None) -> Path:
    """Write the KFP v1 component file of a typed Python function, as ``apply`` renders a ``function`` step.

    Args:
        function: the function itself (defined in a ``.py`` file below ``root``) or ``"path/file.py:function"``
            relative to ``root``. It is read with ``ast``, never called.
        image: the image that holds the file at ``<workdir>/<path>`` and the runtime (normally the
            ``repository@sha256:...`` of :func:`build_image` or :func:`apply`).
        output: the file to write (default ``<name>.yaml`` in the current directory); parent folders are made.
        name: the component name (the step name; default: the function's name); description: replaces the
            docstring's first paragraph (``[steps.NAME] description``).
        root: the folder of the project (the one ``kfp.toml`` would be in; default: the current directory).

    Returns:
        the absolute path written: byte for byte what ``apply`` writes to ``build/components/<name>.yaml`` for
        ``[steps.<name>] function = "<ref>"`` and the same image.

    Raises:
        StepError: the function is refused (untyped parameter, unknown type; the message names the file, line
        and parameter); ConfigError: a function not in a file below ``root``; RenderError: the template failed.
    """
    import dataclasses

    from compose_kfp.pipeline.render.component import render_component
    from compose_kfp.steps.introspect import function_component

    base = (Path(root) if root is not None else Path.cwd()).resolve()
    ref, default_name = _function_ref(function, base)
    step = name or default_name
    with _errors():
        spec = function_component(base, ref, step_name=step).with_image(image)
        if description is not None:
            spec = dataclasses.replace(spec, description=description)
        text = render_component(spec)
    path = (Path(output) if output is not None else Path(f"{step}.yaml")).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_component(path: str | os.PathLike[str]) -> ComponentSpec:
    """Read a KFP component file (v1 ``component.yaml`` or a v2 single-component IR file) into the
    :class:`~compose_kfp.steps.component.ComponentSpec` the planner and renderer use (what a ``[steps.NAME]
    component = "..."`` step loads).

    Raises:
        StepError: not a component file, or one that uses what compose-kfp cannot render (the message names the
        file and key).
    """
    from compose_kfp.steps.components import load_component_file

    with _errors():
        return load_component_file(Path(path))
