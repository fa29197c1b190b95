"""A compose-kfp project: the validated ``kfp.toml``, its step components and its task graph.

:func:`load_project` is what every command that needs more than the manifest
calls. It fails early, at load time, for everything that can be known without
the network: the manifest itself (:func:`compose_kfp.schema.load_manifest`),
each step's interface (:func:`compose_kfp.steps.components.step_components`: missing
function, untyped parameter, broken component file) and the pipeline's task
graph (:func:`compose_kfp.pipeline.graph.resolve_graph`: a missing step, task, output or
param, a type mismatch between an output and the input it feeds, a cycle).

:func:`scaffold_manifest` writes the starting ``kfp.toml`` of ``compose-kfp init``;
:func:`ignore_state_dir` makes the project's ``.gitignore`` ignore the tool's state folder.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from compose_kfp.errors import ComposeError, ConfigError
from compose_kfp.schema import LoadedManifest, Manifest, load_manifest

if TYPE_CHECKING:  # imported for types only; the modules are imported when a project is loaded
    from compose_kfp.steps.component import ComponentSpec
    from compose_kfp.pipeline.graph import TaskGraph

log = logging.getLogger(__name__)

__all__ = ["Project", "load_project", "scaffold_manifest", "detect_steps", "DetectedStep", "SkippedStep",
           "ignore_state_dir"]


@dataclass(frozen=True)
class Project:
    """A loaded and checked project.

    Attributes:
        loaded: the manifest with its path, folder and value sources.
        components: step name -> its component interface, in ``[steps.*]`` order
            (images not pinned yet: ``ComponentSpec.image`` is ``None`` for Python steps).
        graph: the resolved task graph, or ``None`` when kfp.toml has no ``[pipeline]``.
    """

    loaded: LoadedManifest
    components: Mapping[str, "ComponentSpec"]
    graph: "TaskGraph | None"

    @property
    def manifest(self) -> Manifest:
        """The validated ``kfp.toml`` model."""
        return self.loaded.manifest

    @property
    def root(self) -> Path:
        """The project folder (the folder of ``kfp.toml``); relative paths in the manifest start here."""
        return self.loaded.root

    @property
    def path(self) -> Path:
        """The absolute path of ``kfp.toml``."""
        return self.loaded.path


def load_project(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Project:
    """Load ``kfp.toml`` (a file, or a folder holding one; default: the current directory) and check it whole.

    ``env`` and ``overrides`` are passed to :func:`compose_kfp.schema.load_manifest`
    (``None`` env means ``os.environ``; overrides are dotted key paths from the command line).

    Raises:
        ConfigError: the manifest is invalid, or a task refers to a missing step, task,
            output or param, an output's type does not fit the input it feeds, or the
            tasks form a cycle. Messages name ``kfp.toml``, the line where it can be
            found, and the key path.
        ConfigError: a ``function`` step's file does not land at ``<image.workdir>/<file>`` in the
            image the step runs in (it is in no layer's ``paths``/``rootfs``, or ``.kfpignore``/a
            layer's ``ignore`` leaves it out): the in-image runtime could not find it.
        StepError: a step's function or component file cannot be turned into a component.
    """
    loaded = load_manifest(Path(path) if path is not None else Path.cwd(), env=env, overrides=overrides)
    from compose_kfp.steps.components import step_components
    from compose_kfp.pipeline.graph import resolve_graph

    try:
        _check_step_files(loaded.manifest, loaded.root)
        components = step_components(loaded.manifest, loaded.root)
        graph = None
        if loaded.manifest.pipeline is not None:
            graph = resolve_graph(loaded.manifest, components, manifest_path=loaded.path)
    except ComposeError as error:
        raise _located(error, loaded) from error
    log.debug("loaded %s: %d steps, %d tasks", loaded.display_path, len(components),
              len(graph.tasks) if graph else 0)
    return Project(loaded=loaded, components=components, graph=graph)


def _check_step_files(manifest: Manifest, root: Path) -> None:
    """Every ``function`` step's file must be in the image the step runs in, where the runtime looks for it.

    The in-image runtime runs ``python3 -m compose_kfp.runtime FILE:FUNCTION`` in ``image.workdir``
    with ``FILE`` relative to the folder of kfp.toml, so ``FILE`` must be at ``<workdir>/FILE`` in
    that image (:func:`compose_kfp.build.images.desired_images`: the main image's layers, plus the step's
    own layers for a step with its own image). A ``paths`` entry covers it when its destination is
    that path or a folder above it whose local source holds the file and the ignore patterns
    (``.kfpignore`` and the layer's ``ignore``, as :func:`compose_kfp.oci.layer.plan_layer` applies
    them) keep it; a ``rootfs`` layer covers it when its tree has the path.

    Raises:
        ConfigError: ``steps.<name>.function: ...`` naming the file, the in-image path and every
            layer/path considered.
    """
    from compose_kfp.build.images import desired_images

    for image in desired_images(manifest, root):
        for step_name in image.steps:
            file = manifest.steps[step_name].function_file
            target = posixpath.normpath(posixpath.join(image.workdir, file))
            considered: list[str] = []
            reasons: list[str] = []
            found = False
            for layer in image.layers:
                if layer.kind == "paths":
                    for src, dst in layer.includes:
                        considered.append(f"{layer.where} ({layer.name}): {_shown(src, root)} -> {dst}")
                        verdict = _include_has(layer, src, dst, target, root)
                        if verdict is True:
                            found = True
                        elif verdict:
                            reasons.append(verdict)
                elif layer.kind == "rootfs" and layer.rootfs:
                    considered.append(f"{layer.where} ({layer.name}): rootfs {_shown(layer.rootfs, root)} -> /")
                    verdict = _include_has(layer, layer.rootfs, "/", target, root, rootfs=True)
                    if verdict is True:
                        found = True
                    elif verdict:
                        reasons.append(verdict)
            if found:
                continue
            image_name = "the main image" if image.name == "main" else f"the step's own image {image.name!r}"
            why = "; ".join(reasons) if reasons else "no layer puts a file there"
            listed = "; ".join(considered) if considered else "none (the image has no paths/rootfs layer)"
            raise ConfigError(
                f"steps.{step_name}.function: {file} is not in {image_name} at {target}, where the step runs it "
                f"(`python3 -m compose_kfp.runtime {file}:{manifest.steps[step_name].function_name}` in "
                f"{image.workdir}): {why}. Layers considered: {listed}. " + (
                    "Change the ignore patterns so that they keep it" if reasons else
                    f"Add the file (or its folder) to a layer's paths, e.g. paths = [{json.dumps(file.split('/')[0])}]")
            )


def _shown(path: str, root: Path) -> str:
    """``path`` relative to the project folder when it is inside it (posix), else as given."""
    try:
        return Path(path).relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return path


def _include_has(layer: Any, src: str, dst: str, target: str, root: Path, *, rootfs: bool = False) -> "bool | str":
    """Whether the include ``src -> dst`` of ``layer`` puts a file at the in-image path ``target``.

    Returns ``True`` when it does, ``False`` when it does not cover ``target`` at all, or a
    string saying why a covering include leaves the file out (missing source, ignored).
    """
    from compose_kfp.oci.layer import load_ignore_spec

    src_path = Path(src)
    if not src_path.is_dir():
        if dst.endswith("/"):
            dst = posixpath.join(dst, src_path.name)
        return posixpath.normpath(dst) == target and src_path.is_file()
    dst = posixpath.normpath(dst)
    if dst == target:
        return False  # a folder where the file should be
    inside = target[len(dst):].lstrip("/") if dst == "/" or target.startswith(dst + "/") else None
    if not inside:
        return False
    local = src_path / inside
    if not local.is_file():
        return False
    shown = f"{layer.where} ({layer.name})"
    if rootfs:
        spec = load_ignore_spec(None, layer.ignore, use_ignore_file=False, default_ignores=False)
        prefix = ""
    else:
        spec = load_ignore_spec(root, layer.ignore)
        prefix = ""
        real, ctx = os.path.realpath(src), os.path.realpath(root)
        if real.startswith(ctx.rstrip("/") + "/"):
            rel_root = Path(os.path.relpath(real, ctx)).as_posix()
            if not spec.match_file(rel_root + "/"):
                prefix = rel_root + "/"
    parts = inside.split("/")
    for i in range(len(parts)):
        rel = prefix + "/".join(parts[: i + 1]) + ("/" if i < len(parts) - 1 else "")
        if spec.match_file(rel):
            return (f"{shown} would put {_shown(str(local), root)} there, but its ignore patterns "
                    f"(.kfpignore, the layer's `ignore` or the default ignores) leave out {rel}")
    return True


_KEY_PATH = re.compile(r"(?P<key>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*): ")


def _located(error: ComposeError, loaded: LoadedManifest) -> ComposeError:
    """``error`` with ``kfp.toml:LINE`` in front of the key path its message starts with.

    The component and graph modules start their messages with ``<kfp.toml path>: <key path>: ``
    or just ``<key path>: `` (``steps.train.function: src/iris.py:12: ...``); the line is known
    here (from the manifest text), so it is added here. Any other message is returned
    unchanged (the same object).
    """
    message = str(error)
    rest = message
    for prefix in (str(loaded.path), loaded.display_path):
        if message.startswith(prefix + ": "):
            rest = message[len(prefix) + 2:]
            break
    m = _KEY_PATH.match(rest)
    if not m or m.group("key").split(".")[0] not in Manifest.model_fields:
        return error
    return type(error)(f"{loaded.where(m.group('key'))}: {rest}")


# --------------------------------------------------------------------------- init

_SIMPLE_NAME = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class DetectedStep:
    """A function that ``init`` proposes as a step: ``file`` (relative, posix) and ``function`` name."""

    name: str
    file: str
    function: str


@dataclass(frozen=True)
class SkippedStep:
    """A file or function that ``init`` leaves out: ``file`` (relative, posix), ``function`` (``None`` for a
    whole file) and ``reason`` (one sentence, lowercase start)."""

    file: str
    function: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.file}{':' + self.function if self.function else ''}: {self.reason}"


_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # what `steps.*.function` accepts after the colon


def _step_name(text: str) -> str:
    """``text`` made into a valid step name ``[A-Za-z0-9][A-Za-z0-9_-]*``: runs of other characters -> ``_``,
    leading/trailing ``_``/``-`` dropped (``"sp ace_f"`` -> ``"sp_ace_f"``, ``"é_f"`` -> ``"f"``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_-")


def detect_steps(root: Path, folder: str = "src", *, skipped: list[SkippedStep] | None = None) -> list[DetectedStep]:
    """Public top-level functions in ``root/folder/**/*.py`` with a fully typed signature.

    A function qualifies when every parameter has an annotation, it has a return
    annotation, it takes no ``*args``/``**kwargs``, its name does not start with
    ``_`` and is ASCII (``steps.<name>.function`` takes ``[A-Za-z_][A-Za-z0-9_]*``); test
    files (``test_*.py``, ``*_test.py``, ``tests/``) are skipped. The code is parsed
    (``ast``), never imported. Files are visited in sorted order, functions in file order.
    The step name is the function name; a name already taken gets the file stem as prefix
    (``other_load``), with characters a step name cannot hold (space, ``.``, non-ASCII)
    replaced by ``_`` (``sp ace.py`` -> ``sp_ace_load``), then ``_2``, ``_3``... if still taken.
    The ``function`` reference keeps the file path as it is (spaces and non-ASCII file names are fine there).

    Args:
        skipped: when given, one :class:`SkippedStep` is appended for every file that does
            not parse and every public function left out (untyped, ``*args``, a name that
            cannot be referenced), in the order met. Private functions and test files are
            not listed.
    """
    base = root / folder
    if not base.is_dir():
        return []
    found: list[DetectedStep] = []
    taken: set[str] = set()

    def skip(rel: str, function: str | None, reason: str) -> None:
        log.debug("init: skipping %s%s: %s", rel, ":" + function if function else "", reason)
        if skipped is not None:
            skipped.append(SkippedStep(rel, function, reason))

    for file in sorted(base.rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        if file.name.startswith("test_") or file.stem.endswith("_test") or "tests" in file.relative_to(base).parts:
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=rel)
        except SyntaxError as e:
            skip(rel, None, f"it does not parse (line {e.lineno}: {e.msg})")
            continue
        except (UnicodeDecodeError, ValueError) as e:
            skip(rel, None, f"it cannot be read as UTF-8 Python source ({e})")
            continue
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            a = node.args
            params = a.posonlyargs + a.args + a.kwonlyargs
            untyped = [p.arg for p in params if p.annotation is None]
            if a.vararg or a.kwarg:
                skip(rel, node.name, "it takes *args/**kwargs; a step takes named, typed parameters only")
            elif untyped:
                skip(rel, node.name, f"parameter(s) {', '.join(untyped)} have no type annotation")
            elif node.returns is None:
                skip(rel, node.name, "it has no return annotation (use `-> None` for no output)")
            elif not _FUNCTION_NAME.match(node.name):
                skip(rel, node.name, "`steps.<name>.function` takes ASCII names only "
                                     "([A-Za-z_][A-Za-z0-9_]*); rename it or wrap it in an ASCII-named function")
            else:
                name = node.name
                if name in taken:
                    # node.name is an ASCII identifier without a leading `_`: something valid is left
                    name = _step_name(f"{file.stem}_{node.name}")
                    stem, n = name, 2
                    while name in taken:
                        name, n = f"{stem}_{n}", n + 1
                taken.add(name)
                found.append(DetectedStep(name=name, file=rel, function=node.name))
    return found


def _toml_str(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_str(key)


def scaffold_manifest(root: Path, *, name: str | None = None, base: str = "python:3.11-slim",
                      repository: str | None = None) -> str:
    """The text of a starting ``kfp.toml`` for the project in ``root``.

    Detects ``requirements.txt``, ``data/`` and ``src/`` (one layer each, in that order,
    as the defaults of ``[[image.layers]]``) and typed functions in ``src/`` as steps
    (:func:`detect_steps`); what it leaves out is logged as a warning (``init: skipped
    FILE[:FUNCTION]: REASON``, one line each) and listed in a comment. ``name`` defaults to the folder name made lowercase
    (``[a-z0-9-]``); ``repository`` defaults to ``oci:build/image`` (a local OCI
    layout: works without a registry). The result is valid for
    :func:`compose_kfp.schema.load_manifest` as it is; a commented ``[pipeline]``
    shows how to connect the steps.
    """
    project = name or _SIMPLE_NAME.sub("-", root.resolve().name.lower()).strip("-") or "project"
    repo = repository or "oci:build/image"
    out = [
        f"# kfp.toml of {project}: written by `compose-kfp init`; edit freely.",
        "# Every key is described in the README (\"kfp.toml reference\") and in `compose-kfp schema`.",
        "",
        "[project]",
        f"name = {_toml_str(project)}",
        "",
        "[image]",
        f"base = {_toml_str(base)}",
        "# Where images go: a registry repository such as \"ghcr.io/you/" + project + "\", or oci:PATH",
        "# for a local OCI image layout. Credentials are never written here (see [image.auth]).",
        f"repository = {_toml_str(repo)}",
        'workdir = "/app"',
        'env = { PYTHONUNBUFFERED = "1" }',
    ]
    layers = []
    if (root / "requirements.txt").is_file():
        layers.append(("deps", 'requirements = "requirements.txt"'))
    if (root / "data").is_dir():
        layers.append(("data", 'paths = ["data"]'))
    if (root / "src").is_dir():
        layers.append(("src", 'paths = ["src"]'))
    if layers:
        out += ["", "# Layers on top of the base, base first: what changes least comes first."]
    for layer_name, line in layers:
        out += ["", "[[image.layers]]", f"name = {_toml_str(layer_name)}", line]
    skipped: list[SkippedStep] = []
    steps = detect_steps(root, skipped=skipped)
    for item in skipped:
        log.warning("init: skipped %s", item)
    if skipped:
        out += ["", "# Left out by `compose-kfp init`:"] + [f"#   {item}" for item in skipped]
    for step in steps:
        out += ["", f"[steps.{_toml_key(step.name)}]", f"function = {_toml_str(step.file + ':' + step.function)}"]
    out += ["", "# Connect the steps into a pipeline, e.g.:", "# [pipeline]", f"# name = {_toml_str(project)}",
            "# params = { n_estimators = 100 }"]
    if steps:
        first = steps[0].name
        out += [f"# [pipeline.tasks.{_toml_key(first)}]", f"# step = {_toml_str(first)}",
                '# args.some_input = { param = "n_estimators" }',
                '# args.other_input = { task = "upstream_task", output = "output" }']
    else:
        out += ["# [steps.train]", '# function = "src/model.py:train"',
                "# [pipeline.tasks.train]", '# step = "train"']
    return "\n".join(out) + "\n"


def ignore_state_dir(root: Path) -> str:
    """Make ``root/.gitignore`` ignore the tool's state folder ``.compose-kfp/`` (blob store, layer cache).

    The state folder is :data:`compose_kfp.build.observe.STATE_DIR` under the project folder (the folder of
    kfp.toml). A missing ``.gitignore`` is created; an existing one gets the line ``.compose-kfp/``
    (and a comment) appended unless a line already ignores the folder (``.compose-kfp``,
    ``.compose-kfp/``, ``/.compose-kfp``, ``/.compose-kfp/``, or any of these after ``**/``);
    other lines are left as they are. The file is read and written as UTF-8.

    Returns:
        ``"created"`` (there was no ``.gitignore``), ``"added"`` (the line was appended) or
        ``"present"`` (already ignored; the file is not touched).

    Raises:
        ConfigError: ``.gitignore`` cannot be read or written (the message names the file).
    """
    from compose_kfp.build.statedir import STATE_DIR

    path = root / ".gitignore"
    entry = f"{STATE_DIR}/"
    block = f"# compose-kfp's state (blob store, layer cache): not for version control\n{entry}\n"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it to add {entry}: {e}") from None
    if text is not None:
        ignored = {f"{lead}{STATE_DIR}{trail}" for lead in ("", "/", "**/") for trail in ("", "/")}
        if any(line.strip() in ignored for line in text.splitlines()):
            return "present"
    try:
        if text is None:
            path.write_text(block, encoding="utf-8")
            return "created"
        with open(path, "a", encoding="utf-8") as f:
            f.write(("\n" if text and not text.endswith("\n") else "") + block)
    except OSError as e:
        raise ConfigError(f"{path}: cannot add {entry}: {e.strerror or e}") from None
    return "added"
