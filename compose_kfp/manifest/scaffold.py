"""``compose-kfp init``: a starting ``kfp.toml`` for a project folder, and its ``.gitignore`` line.

:func:`scaffold_manifest` writes the text of a ``kfp.toml`` from what it finds
(``requirements.txt``, ``data/``, ``src/``, and typed functions as steps:
:func:`detect_steps`, which parses the code and never imports it);
:func:`ignore_state_dir` makes the project's ``.gitignore`` ignore the tool's state folder.
Nothing here validates: ``init`` loads the written file with
:func:`compose_kfp.manifest.load.load_manifest` afterwards.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from compose_kfp.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["scaffold_manifest", "detect_steps", "DetectedStep", "SkippedStep", "ignore_state_dir"]


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
    :func:`compose_kfp.manifest.load.load_manifest` as it is; a commented ``[pipeline]``
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
