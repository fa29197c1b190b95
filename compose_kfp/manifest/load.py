"""Loading ``kfp.toml``: finding the file, parsing, overrides, validation, default layers.

:func:`load_manifest` is the one way in: it reads the file, applies the
environment and command-line overrides (:data:`ENV_VARS`), refuses literal
secrets, validates against :class:`compose_kfp.schema.Manifest`, fills the
default layers and checks what can be checked from the manifest alone (files
that must exist, names that tasks refer to, cycles: :mod:`.checks`). Every
problem becomes one :class:`~compose_kfp.errors.ConfigError` whose message names
the file, the line, the key path and what was expected (:mod:`.problems`, with
lines from :mod:`.keys`). What needs the step interfaces (outputs, types) is
checked by :func:`compose_kfp.manifest.project.load_project`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ValidationError

from compose_kfp.errors import ComposeError, ConfigError
from compose_kfp.manifest.checks import check_files, check_image_format, check_output_names, check_references
from compose_kfp.manifest.fences import check_output_dir, check_sources, output_warnings
from compose_kfp.manifest.keys import KEY_PATH, KeyIndex, dotted, split_key
from compose_kfp.manifest.problems import Problems, did_you_mean, scan_secrets
from compose_kfp.manifest.annotations import flatten_annotation
from compose_kfp.schema import MANIFEST_NAME, LayerConfig, Manifest, looks_secret

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EnvVar:
    """One environment variable that overrides a key of ``kfp.toml``.

    ``kind`` says how the text is parsed: ``str`` as is, ``list`` split on commas
    (blanks dropped), ``bool`` from ``1/true/yes/on`` or ``0/false/no/off``.
    """

    name: str
    key: str
    kind: Literal["str", "list", "bool"]
    description: str


#: Environment variables read by :func:`load_manifest`, in documentation order. An empty value counts as unset.
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("COMPOSE_KFP_BASE", "image.base", "str", "Base image reference."),
    EnvVar("COMPOSE_KFP_REPOSITORY", "image.repository", "str", "Destination repository (or `oci:PATH`)."),
    EnvVar("COMPOSE_KFP_PLATFORMS", "image.platforms", "list", "Comma-separated platforms, e.g. `linux/amd64,linux/arm64`."),
    EnvVar("COMPOSE_KFP_TAGS", "image.tags", "list", "Comma-separated extra tags."),
    EnvVar("COMPOSE_KFP_COMPRESSION", "image.compression", "str", "`gzip` or `zstd`."),
    EnvVar("COMPOSE_KFP_INDEX_URL", "image.index_url", "str", "Package index for requirements."),
    EnvVar("COMPOSE_KFP_INSECURE", "image.insecure", "bool", "Allow plain HTTP to the registry (`1`/`0`)."),
    EnvVar("COMPOSE_KFP_OUTPUT_DIR", "render.output_dir", "str", "Folder for rendered files."),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_value(var: EnvVar, text: str) -> Any:
    if var.kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if var.kind == "bool":
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise ConfigError(f"environment variable {var.name}: expected 1/true/yes or 0/false/no, got {text!r}.")
    return text


@dataclasses.dataclass(frozen=True)
class LoadedManifest:
    """A validated ``kfp.toml`` with where it came from.

    Attributes:
        path: absolute path of the ``kfp.toml`` file.
        root: the folder holding it; every relative path in the manifest is relative to it.
        manifest: the validated model, with the default layers filled in and overrides applied.
        layers_defaulted: True when ``[[image.layers]]`` was absent and the defaults were used.
        sources: key path (``image.repository``) -> where a value other than kfp.toml came from
            (``environment variable COMPOSE_KFP_REPOSITORY`` or ``command line``).
        warnings: ``FILE:LINE: KEY: text`` lines worth showing though nothing is wrong (a layer whose paths
            hold the output folder, which is left out of it: :func:`compose_kfp.manifest.fences.output_warnings`).
    """

    path: Path
    root: Path
    manifest: Manifest
    layers_defaulted: bool = False
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def resolve(self, relative: str) -> Path:
        """``relative`` (a path written in kfp.toml, ``~`` expanded) made absolute against :attr:`root`."""
        return (self.root / Path(relative).expanduser()).resolve()

    @property
    def output_dir(self) -> Path:
        """The absolute folder for rendered files (``render.output_dir``)."""
        return self.resolve(self.manifest.render.output_dir)

    @property
    def display_path(self) -> str:
        """:attr:`path` as messages show it (relative to the current directory when below it)."""
        return display_path(self.path)

    @functools.cached_property
    def _index(self) -> "KeyIndex":
        try:
            return KeyIndex(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return KeyIndex("")

    def line_of(self, key: str | Sequence[Any]) -> int | None:
        """The line of ``kfp.toml`` where ``key`` (``pipeline.tasks.train.args.dataset``, or a
        sequence of keys and list indexes) or its longest present prefix is set; ``None`` if
        none is, or when the value came from the environment or the command line."""
        parts = split_key(key) if isinstance(key, str) else tuple(key)
        for n in range(len(parts), 0, -1):
            if dotted(parts[:n]) in self.sources:
                return None
        return self._index.line_for(parts)

    def where(self, key: str | Sequence[Any]) -> str:
        """``file:line`` (or just ``file``) for messages about ``key``; see :meth:`line_of`."""
        line = self.line_of(key)
        return f"{self.display_path}:{line}" if line else self.display_path

    def locate(self, error: ComposeError) -> ComposeError:
        """``error`` in the ``FILE:LINE: KEY: what`` form, with :attr:`~compose_kfp.errors.ComposeError.file`,
        ``line`` and ``key`` set: the one place that puts ``kfp.toml:LINE`` in front of a message about a key.

        A message that starts with a key path of kfp.toml (``image.layers.0.paths.1: ...``, after an
        optional ``<path of kfp.toml>: ``; the notation of :func:`compose_kfp.manifest.keys.dotted`) gets
        the file and line (:meth:`where`); a message already located (``kfp.toml:12: KEY: ``) only gets
        the attributes. Any other error is returned unchanged (the same object), as is one located before.
        """
        if error.file is not None:
            return error
        message = str(error)
        shown = self.display_path
        m = re.match(rf"{re.escape(shown)}(?::(?P<line>\d+)| \(value from [^)]*\)): (?P<key>{KEY_PATH}): ", message)
        if m:  # located where it was made
            return error.at(shown, int(m.group("line")) if m.group("line") else None, m.group("key"))
        rest = message
        for prefix in (str(self.path), shown):
            if message.startswith(prefix + ": "):
                rest = message[len(prefix) + 2:]
                break
        m = re.match(rf"(?P<key>{KEY_PATH}): ", rest)
        if not m:
            return error
        try:
            parts = split_key(m.group("key"))
        except ValueError:  # pragma: no cover - KEY_PATH matches only key paths
            return error
        if parts[0] not in Manifest.model_fields:
            return error
        key = dotted(parts)
        line = self.line_of(parts)
        located = type(error)(f"{self.where(parts)}: {rest}")
        located.__dict__.update(error.__dict__)
        located.__cause__ = error.__cause__
        return located.at(shown, line, key)


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it is below it, else absolute (for messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def discover_manifest(start: Path | str) -> tuple[Path | None, Path]:
    """Search for ``kfp.toml`` the way git looks for ``.git``: in ``start``, then in each folder above it.

    The search stops at the top of a git repository (a folder holding ``.git``, searched itself) or at the
    filesystem root.

    Returns:
        ``(path of the kfp.toml found or None, the last folder searched)``.
    """
    folder = Path(start).resolve()
    while True:
        candidate = folder / MANIFEST_NAME
        if candidate.is_file():
            return candidate, folder
        if (folder / ".git").exists() or folder.parent == folder:
            return None, folder
        folder = folder.parent


def find_manifest(path: Path | str | None = None) -> Path:
    """The ``kfp.toml`` a user means by ``path``: the file itself, or ``kfp.toml`` in a folder (default: cwd).

    Raises :class:`ConfigError` when there is none, saying how to create one.
    """
    p = Path(path) if path is not None else Path.cwd()
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.is_file():
        raise ConfigError(
            f"{display_path(p)}: no such file. Run `compose-kfp init` in the project folder to create one, "
            "or point to it with `-f PATH` / `-C FOLDER`."
        )
    return p.resolve()


def load_manifest(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedManifest:
    """Read, override, validate and complete a ``kfp.toml``.

    Args:
        path: the ``kfp.toml`` file, or a folder holding one.
        env: environment to read :data:`ENV_VARS` from; ``None`` means ``os.environ``.
        overrides: command-line values by dotted key path (``{"image.repository": "oci:out"}``);
            ``None`` values are ignored. They win over the environment, which wins over the file.

    Order of work: TOML parsing; literal secrets refused (before anything could echo them);
    overrides applied; model validation; default layers (``requirements.txt`` if present,
    then ``data/``, then ``src/``, relative to the file's folder) when ``[[image.layers]]``
    is absent; every relative path named must resolve (symlinks followed) inside the project
    folder (:mod:`.fences`); files named by layers and steps must exist;
    ``render.output_dir`` must be a folder compose-kfp may write; each step's component file name must
    fit the file system of ``render.output_dir``; task references
    (``step``, ``param``, ``task``, ``after``) must name existing entries and the task
    graph must have no cycle; ``image.format = "docker"`` may not go to an ``oci:`` layout.

    Raises:
        ConfigError: one message naming the file, the line, the key path and what was
            expected (several lines when there are several problems; the first in the
            file comes first). A secret value is never part of the message. A path outside the
            project (a symlink leading out, ``..``) or an output folder that may not be written is one.
    """
    file = find_manifest(path)
    shown = display_path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {e.start}); TOML files must be UTF-8.") from None
    except OSError as e:
        raise ConfigError(f"{shown}: cannot read: {e.strerror}.") from None
    index = KeyIndex(text)
    data = _parse_toml(text, shown, index)
    problems = Problems(shown, index, data)
    scan_secrets(data, (), problems)
    problems.raise_if_any()

    sources: dict[str, str] = {}
    env = os.environ if env is None else env
    for var in ENV_VARS:
        raw = env.get(var.name)
        if raw:
            _set_override(data, var.key, _env_value(var, raw), f"environment variable {var.name}", sources)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_override(data, key, value, "command line", sources)
    problems.sources = sources
    scan_secrets(data, (), problems)
    problems.raise_if_any()

    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
    else:
        errors = []
    if errors:
        for err in errors:
            problems.add_pydantic(err)
        problems.merge_typos()
        problems.raise_if_any()

    root = file.parent
    layers_defaulted = manifest.image.layers is None
    if layers_defaulted:
        defaults = default_layers(root)
        log.debug("no [[image.layers]] in %s; using the defaults %s", shown, [l.name for l in defaults])
        manifest = manifest.model_copy(update={"image": manifest.image.model_copy(update={"layers": defaults})})
    outside = check_sources(manifest, root, problems, layers_defaulted=layers_defaulted)
    check_files(manifest, root, problems, check_layers=not layers_defaulted, skip=outside)
    check_output_dir(manifest, root, problems, sources, layers_defaulted=layers_defaulted)
    check_output_names(manifest, root, problems.add)
    check_references(manifest, problems.add)
    check_image_format(manifest, problems.add)
    problems.raise_if_any()
    loaded = LoadedManifest(path=file, root=root, manifest=manifest, layers_defaulted=layers_defaulted,
                            sources=sources)
    warnings = output_warnings(manifest, root, loaded.where)
    return dataclasses.replace(loaded, warnings=warnings) if warnings else loaded


def default_layers(root: Path) -> list[LayerConfig]:
    """The layers used when ``[[image.layers]]`` is absent, base first.

    ``deps`` from ``requirements.txt`` if that file exists, then ``data`` from ``data/``,
    then ``src`` from ``src/``, each only if present under ``root``. May be empty.
    """
    layers = []
    if (root / "requirements.txt").is_file():
        layers.append(LayerConfig(name="deps", requirements="requirements.txt"))
    if (root / "data").is_dir():
        layers.append(LayerConfig(name="data", paths=["data"]))
    if (root / "src").is_dir():
        layers.append(LayerConfig(name="src", paths=["src"]))
    return layers


#: ``user:password@`` in a reference or URL, as a line of TOML may hold it (quoted or not).
_USERINFO_IN_LINE = re.compile(r"(?:^|[\s\"'=/{,])[^\s\"'/@={},]+:[^\s\"'/@]*@")


def _may_hold_secret(line: str) -> bool:
    """Whether a line of kfp.toml may hold a secret, so that an error must not quote it: any key or word in it
    looks secret (``API_TOKEN`` in an inline table, a dotted ``auth.password``), or it holds ``user:pass@``."""
    words = re.findall(r"[A-Za-z0-9_.\-]+", line)
    if any(looks_secret(w) for w in words):  # looks_secret splits dotted keys into words itself
        return True
    return bool(_USERINFO_IN_LINE.search(line))


def _parse_toml(text: str, shown: str, index: "KeyIndex") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
        line = col = None
        if m:
            line, col = int(m.group(1)), int(m.group(2))
            msg = msg[: m.start()]
        elif msg.endswith("(at end of document)"):
            msg = msg[: -len("(at end of document)")].rstrip()
            line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        if msg.startswith("Cannot overwrite a value") or msg.startswith("Cannot declare"):
            dup = index.duplicates[0] if index.duplicates else None
            if dup is not None:
                key, line, first = dup
                what = "table" if msg.startswith("Cannot declare") else "key"
                raise ConfigError(
                    f"{shown}:{line}: {dotted(key)}: invalid TOML: this {what} is already defined on line "
                    f"{first}; each {what} may be defined once (merge the two, or remove one)."
                ).at(shown, line, dotted(key)) from None
        where = f"{shown}:{line}" + (f":{col}" if col else "") if line else shown
        source_line = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
        excerpt = ""
        if source_line.strip():
            if _may_hold_secret(source_line):
                excerpt = " (the line is not shown: it may hold a secret)"
            else:
                excerpt = f" in `{source_line.strip()[:120]}`"
        raise ConfigError(
            f"{where}: invalid TOML: {msg[:1].lower() + msg[1:]}{excerpt}. "
            "See https://toml.io for the syntax (strings need quotes, one `key = value` per line)."
        ).at(shown, line, None) from None


def _set_override(data: dict, key: str, value: Any, source: str, sources: dict[str, str]) -> None:
    parts = key.split(".")
    model: Any = Manifest
    node = data
    for i, part in enumerate(parts):
        if isinstance(model, type) and issubclass(model, BaseModel):
            if part not in model.model_fields:
                raise ConfigError(f"{source}: unknown key {key!r}{did_you_mean(part, model.model_fields)}.")
            model = _field_model(model.model_fields[part].annotation)
        elif model is dict:
            model = None
        else:
            raise ConfigError(f"{source}: {key!r} cannot be set: {'.'.join(parts[:i])} is not a table.")
        if i == len(parts) - 1:
            node[part] = value
        else:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
    sources[key] = source


def _field_model(annotation: Any) -> Any:
    """The model class (or ``dict``) a field annotation holds a table of, else ``None``."""
    for t in flatten_annotation(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
        if typing.get_origin(t) is dict or t is dict:
            return dict
    return None
