"""The ``compose-kfp`` command line (typer). Thin: commands parse options, call the library, print.

Structure, for whoever adds a command (``plan``, ``apply``, ``render``, ``run``, ``lock``):

- global options live on :func:`_global` and end up in :class:`Settings`
  (``ctx.obj``); a command gets it with ``settings = _settings(ctx)``;
- a command loads what it needs with ``settings.project()`` (the whole checked
  project) or ``settings.manifest()`` (the manifest only), passing its own
  command-line overrides of kfp.toml keys as ``overrides={"image.repository": ...}``;
- it raises :class:`~compose_kfp.errors.ComposeError` (or lets
  :class:`~compose_kfp.oci.errors.OCIError` through) and never prints errors or
  exits itself: :func:`main` is the one error boundary (message on stderr,
  :func:`~compose_kfp.errors.exit_code_for` as status, a traceback only with ``--debug``);
- normal output goes to stdout through ``settings.out`` (silenced by ``-q``), a
  ``--json`` result through ``settings.result`` (never silenced),
  progress and notes to stderr through ``settings.err``; a command that returns an
  ``int`` makes it the exit status (``plan --exit-code``).

Exit codes are those of :mod:`compose_kfp.errors`; usage errors (unknown option,
missing argument) exit 1.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Mapping, NoReturn, Optional

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException
from rich.console import Console

from compose_kfp import __version__
from compose_kfp.errors import ComposeError, ConfigError, exit_code_for
from compose_kfp.oci.errors import OCIError

log = logging.getLogger(__name__)

class _CtrlC(BaseException):
    """Carries a ``KeyboardInterrupt`` past typer, which would turn it into a silent ``Exit(130)``."""

    def __init__(self, error: KeyboardInterrupt):
        super().__init__(error)
        self.error = error


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _CtrlC(e) from e


app = typer.Typer(
    cls=_Group,
    name="compose-kfp",
    help="Declarative, daemonless builds of Kubeflow Pipelines images, components and workflows from kfp.toml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class Settings:
    """Global options, resolved. ``project_dir`` is absolute; ``file`` is the kfp.toml given with ``-f``, if any."""

    quiet: bool = False
    verbose: int = 0
    debug: bool = False
    project_dir: Path = field(default_factory=Path.cwd)
    file: Path | None = None
    env: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        self.out = Console(file=sys.stdout, quiet=self.quiet, highlight=False, soft_wrap=True)
        self.err = Console(file=sys.stderr, quiet=self.quiet, highlight=False, soft_wrap=True)
        # A command's machine-readable result (``--json``): printed even with -q, which silences only the
        # human text and progress.
        self.result = Console(file=sys.stdout, highlight=False, soft_wrap=True)

    @property
    def manifest_path(self) -> Path:
        """The kfp.toml to use: ``-f`` (relative to ``-C``), else ``kfp.toml`` in ``-C`` (default: cwd)."""
        if self.file is not None:
            return self.file if self.file.is_absolute() else self.project_dir / self.file
        return self.project_dir / "kfp.toml"

    def manifest(self, overrides: Mapping[str, Any] | None = None):
        """The validated manifest (:func:`compose_kfp.schema.load_manifest`)."""
        from compose_kfp.schema import load_manifest

        return load_manifest(self.manifest_path, env=self.env, overrides=overrides)

    def project(self, overrides: Mapping[str, Any] | None = None):
        """The checked project (:func:`compose_kfp.manifest.project.load_project`)."""
        from compose_kfp.manifest.project import load_project

        return load_project(self.manifest_path, env=self.env, overrides=overrides)


def _settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):  # a command invoked without the callback (tests calling it directly)
        obj = ctx.find_root().obj = Settings()
    return obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"compose-kfp {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.")] = False,
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, show_default=False,
                                         help="More detail (-vv: debug log).")] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Debug log, and a traceback with errors.")] = False,
    project_dir: Annotated[Optional[Path], typer.Option(
        "-C", "--project-dir", help="The project folder (default: the current directory).", file_okay=False)] = None,
    file: Annotated[Optional[Path], typer.Option(
        "-f", "--file", help="The kfp.toml to use (default: kfp.toml in the project folder).", dir_okay=False)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Declarative, daemonless builds of Kubeflow Pipelines images, components and workflows from kfp.toml."""
    folder = (project_dir or Path.cwd()).expanduser()
    if project_dir is not None and not folder.is_dir():
        raise ConfigError(f"-C {project_dir}: no such folder.")
    settings = Settings(quiet=quiet and not debug, verbose=verbose, debug=debug,
                        project_dir=folder.resolve(), file=file.expanduser() if file else None)
    _configure_logging(settings)
    ctx.obj = settings


def _configure_logging(settings: Settings) -> None:
    level = logging.WARNING
    if settings.quiet:
        level = logging.ERROR
    if settings.verbose == 1:
        level = logging.INFO
    if settings.verbose >= 2 or settings.debug:
        level = logging.DEBUG
    root = logging.getLogger("compose_kfp")
    for handler in list(root.handlers):
        if getattr(handler, "_compose_kfp_cli", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._compose_kfp_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(
        "%(levelname)s %(name)s: %(message)s" if level == logging.DEBUG else "%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


# --------------------------------------------------------------------------- commands

class SchemaFormat(str, enum.Enum):
    """Output formats of ``compose-kfp schema``."""

    json = "json"
    markdown = "markdown"


@app.command()
def schema(
    ctx: typer.Context,
    fmt: Annotated[SchemaFormat, typer.Option("--format", help="json (JSON Schema) or markdown (key reference).")
                   ] = SchemaFormat.json,
) -> None:
    """Print the JSON Schema of kfp.toml (for editors), or the key reference as Markdown."""
    from compose_kfp.schema import json_schema, reference_markdown

    settings = _settings(ctx)
    text = json.dumps(json_schema(), indent=2) if fmt is SchemaFormat.json else reference_markdown()
    settings.out.print(text, markup=False, end="\n" if not text.endswith("\n") else "")


@app.command()
def init(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing kfp.toml.")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="Project name (default: the folder name).")] = None,
    base: Annotated[str, typer.Option("--base", help="Base image reference.")] = "python:3.11-slim",
    repository: Annotated[Optional[str], typer.Option(
        "--repository", help="Destination repository (default: oci:build/image, a local OCI layout).")] = None,
) -> None:
    """Write a starting kfp.toml (detects src/, data/, requirements.txt and typed functions next to it) and make
    .gitignore ignore the tool's state folder .compose-kfp/."""
    from compose_kfp.manifest.project import detect_steps, ignore_state_dir, scaffold_manifest
    from compose_kfp.schema import display_path, load_manifest

    settings = _settings(ctx)
    target = settings.manifest_path
    if target.exists() and not force:
        raise ConfigError(f"{display_path(target)} already exists; use `compose-kfp init --force` to replace it.")
    folder = target.parent  # paths in kfp.toml are relative to its folder: detect there
    folder.mkdir(parents=True, exist_ok=True)
    text = scaffold_manifest(folder, name=name, base=base, repository=repository)
    previous = target.read_bytes() if target.exists() else None
    target.write_text(text, encoding="utf-8")
    try:
        loaded = load_manifest(target, env={})
    except ConfigError:
        # --name/--base/--repository were not valid: leave no broken file behind.
        if previous is None:
            target.unlink()
        else:
            target.write_bytes(previous)
        raise
    steps = detect_steps(folder)
    settings.out.print(f"wrote {display_path(target)}: {len(loaded.manifest.image.layers or [])} layer(s), "
                       f"{len(steps)} step(s){': ' + ', '.join(s.name for s in steps) if steps else ''}",
                       markup=False)
    from compose_kfp.build.statedir import STATE_DIR

    gitignore, state = display_path(folder / ".gitignore"), f"{STATE_DIR}/"
    settings.out.print({"created": f"wrote {gitignore}: ignores {state} (the blob store and layer cache)",
                        "added": f"added {state} (the blob store and layer cache) to {gitignore}",
                        "present": f"{gitignore} already ignores {state}"}[ignore_state_dir(folder)],
                       markup=False)
    settings.out.print("next: edit [pipeline] to connect the steps, then run `compose-kfp validate`", markup=False)


@app.command()
def validate(ctx: typer.Context) -> None:
    """Load kfp.toml, its step components and the task graph; print OK or the first problem."""
    settings = _settings(ctx)
    project = settings.project()
    manifest = project.manifest
    tasks = len(project.graph.tasks) if project.graph is not None else 0
    settings.out.print(
        f"OK {project.loaded.display_path}: {len(manifest.steps)} step(s), {tasks} task(s), "
        f"{len(manifest.image.layers or [])} layer(s)", markup=False)


# --------------------------------------------------------------------------- error boundary

def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); the process entry point.

    The one error boundary: a :class:`ComposeError` or :class:`OCIError` prints
    ``error: <message>`` on stderr and exits with :func:`exit_code_for`; usage errors
    exit 1; Ctrl-C exits 130; an ``OSError`` no command mapped (a file that cannot be
    written, say) prints ``error: <path>: <reason>`` and exits 1; anything else is a bug,
    reported as such (exit 1).
    A traceback is printed only with ``--debug`` (or ``COMPOSE_KFP_DEBUG=1``).
    """
    args = _hoist_global_flags(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args or os.environ.get("COMPOSE_KFP_DEBUG") == "1"
    try:
        result = app(args=args, prog_name="compose-kfp", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except (ComposeError, OCIError) as error:
        code = exit_code_for(error)
        _report(error, debug)
    except typer.Exit as e:
        code = e.exit_code
    except _CtrlC as e:
        code = 130
        _interrupted(e.error, entry_point=argv is None)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        code = 1
    except TyperException as e:  # usage errors: unknown option, missing argument, bad value
        show = getattr(e, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:  # pragma: no cover - every typer usage error has show()
            print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt as e:
        code = 130
        _interrupted(e, entry_point=argv is None)
    except OSError as error:  # a file-system error no command turned into a ComposeError: not a bug to report
        code = 1
        if debug:
            _report_traceback(error)
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 - the boundary: a bug, reported briefly
        code = 1
        if debug:
            _report(error, debug)
        else:
            print(f"internal error: {type(error).__name__}: {error}\n"
                  "This is a bug in compose-kfp; run again with --debug for the traceback and report it.",
                  file=sys.stderr)
    sys.stdout.flush()
    sys.exit(code)


#: Global flags (no value) also accepted after the command name: ``compose-kfp apply -y -q``.
_HOISTED = re.compile(r"-q|--quiet|-v+|--verbose|--debug")


def _hoist_global_flags(args: list[str]) -> list[str]:
    """``args`` with the global flags ``-q``/``-v``/``--debug`` that follow the command name moved in front of it,
    so that they work on either side (click only accepts a group's options before the command).

    A flag is moved only when the command has no option of that name itself and the token is not the value of
    one of the command's options; nothing after ``--`` moves. Options taking values (``-C``, ``-f``) must still
    come first.
    """
    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})
    i, takes_value = 0, {"-C", "--project-dir", "-f", "--file"}
    while i < len(args) and args[i].startswith("-"):  # the global options before the command
        i += 2 if args[i] in takes_value else 1
    if i >= len(args) or args[i] not in commands:
        return args
    params = commands[args[i]].params
    own = {o for param in params for o in (*param.opts, *param.secondary_opts)}
    valued = {o for param in params if getattr(param, "param_type_name", "") == "option"
              and not getattr(param, "is_flag", False) and not getattr(param, "count", False) for o in param.opts}
    front, rest, j = args[:i], [args[i]], i + 1
    while j < len(args):
        token = args[j]
        if token == "--":
            rest.extend(args[j:])
            break
        if token in valued:
            rest.extend(args[j:j + 2])
            j += 2
            continue
        if _HOISTED.fullmatch(token) and token not in own:
            front.append(token)
        else:
            rest.append(token)
        j += 1
    return front + rest


def _interrupted(error: KeyboardInterrupt, *, entry_point: bool) -> None:
    """Ctrl-C: print what was done (:class:`~compose_kfp.errors.Interrupted`'s message, else ``interrupted``).

    As the process entry point, exit 130 at once when worker threads are still running (a blob upload that
    would otherwise finish first: the interpreter joins pool threads at exit). ``os._exit`` is safe there:
    stdout and stderr are flushed first; the project lock was released as the interrupt left ``apply``;
    a registry keeps only complete blobs (an upload cut short is discarded), manifests go up only after all
    their blobs and tags last, so no tag can name an incomplete image; local files are written by temporary
    file + rename (a cut leaves at most a temporary file, never a partial file under its name).
    """
    print(str(error) or "interrupted", file=sys.stderr)
    if entry_point and any(t.is_alive() and not t.daemon for t in threading.enumerate()
                           if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def _report(error: BaseException, debug: bool) -> None:
    if debug:
        _report_traceback(error)
    print(f"error: {error}", file=sys.stderr)


def _report_traceback(error: BaseException) -> None:
    import traceback

    traceback.print_exception(error, file=sys.stderr)
