"""The ``compose-kfp`` typer app, defined once: :data:`app`, the global options, :class:`Settings`, logging setup.

Structure, for whoever adds a command (``plan``, ``apply``, ``render``, ``run``, ``lock``):

- a command lives in a module of this package (:mod:`.project`: ``init``, ``validate``, ``schema``;
  :mod:`.build`: ``plan``, ``apply``, ``render``, ``lock``; :mod:`.run`: ``run``) that imports
  :data:`app`, :class:`Settings` and :func:`_settings` from here (never the reverse) and registers
  itself with ``@app.command()``; :mod:`compose_kfp.cli` imports the command modules in the order of
  ``--help``; commands parse options, call one library function, and print;
- global options live on :func:`_global` and end up in :class:`Settings`
  (``ctx.obj``); a command gets it with ``settings = _settings(ctx)``;
- a command loads what it needs with ``settings.project()`` (the whole checked
  project) or ``settings.manifest()`` (the manifest only), passing its own
  command-line overrides of kfp.toml keys as ``overrides={"image.repository": ...}``;
- it raises :class:`~compose_kfp.errors.ComposeError` (or lets
  :class:`~compose_kfp.oci.errors.OCIError` through) and never prints errors or
  exits itself: :func:`compose_kfp.cli.boundary.main` is the one error boundary (message on stderr,
  :func:`~compose_kfp.errors.exit_code_for` as status, a traceback only with ``--debug``);
- normal output goes to stdout through ``settings.out`` (silenced by ``-q``), a
  ``--json`` result through ``settings.result`` (never silenced),
  progress and notes to stderr through ``settings.err``; a command that returns an
  ``int`` makes it the exit status (``plan --exit-code``).

Exit codes are those of :mod:`compose_kfp.errors`; usage errors (unknown option,
missing argument) exit 1.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer
from typer.core import TyperGroup

from compose_kfp import __version__
from compose_kfp.errors import ConfigError

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


class LazyConsole:
    """A ``rich.console.Console`` made on first use, so a command that prints nothing (``-q``) or prints only
    through a quiet console never imports rich (about 25 ms of start-up).

    ``file`` is the stream captured now (as a Console made now would); ``quiet``: :meth:`print` does nothing
    and makes no Console. Any other attribute (``is_terminal``, ``width``, ...) is the real Console's.
    """

    def __init__(self, file: Any, *, quiet: bool = False):
        self.file = file
        self.quiet = quiet
        self._console: Any = None

    @property
    def console(self) -> Any:
        """The rich Console (made on first access): ``highlight=False, soft_wrap=True``."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.file, quiet=self.quiet, highlight=False, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        """``Console.print``; nothing (and no Console made) when quiet."""
        if not self.quiet:
            self.console.print(*objects, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


@dataclass
class Settings:
    """Global options, resolved. ``project_dir`` is absolute; ``file`` is the kfp.toml given with ``-f``, if any."""

    quiet: bool = False
    verbose: int = 0
    debug: bool = False
    project_dir: Path = field(default_factory=Path.cwd)
    file: Path | None = None
    env: Mapping[str, str] | None = None
    #: Neither ``-C`` nor ``-f`` was given: :meth:`manifest` and :meth:`project` search for kfp.toml upward
    #: from the current directory (:func:`compose_kfp.manifest.load.discover_manifest`).
    discover: bool = False
    #: ``--json`` was given to the command: the error boundary prints errors as JSON on stderr too.
    json: bool = False
    #: The manifest the command loaded (set by :meth:`manifest` / :meth:`project`), so that the error boundary
    #: can name the ``kfp.toml:LINE`` of an error about one of its keys (``LoadedManifest.locate``).
    loaded: Any = None

    def __post_init__(self) -> None:
        self.out = LazyConsole(sys.stdout, quiet=self.quiet)
        self.err = LazyConsole(sys.stderr, quiet=self.quiet)
        # A command's machine-readable result (``--json``): printed even with -q, which silences only the
        # human text and progress.
        self.result = LazyConsole(sys.stdout)

    @property
    def manifest_path(self) -> Path:
        """The kfp.toml to use: ``-f`` (relative to ``-C``), else ``kfp.toml`` in ``-C`` (default: cwd)."""
        if self.file is not None:
            return self.file if self.file.is_absolute() else self.project_dir / self.file
        return self.project_dir / "kfp.toml"

    def existing_manifest_path(self) -> Path:
        """The kfp.toml to read: :attr:`manifest_path`, or with :attr:`discover` the nearest ``kfp.toml`` in the
        current directory or a folder above it, up to the top of the git repository or the filesystem root
        (as git finds ``.git``); relative paths in it stay relative to its own folder.

        Raises:
            ConfigError: with :attr:`discover`, no kfp.toml in any of those folders.
        """
        if not self.discover or self.manifest_path.is_file():
            return self.manifest_path
        from compose_kfp.manifest.load import discover_manifest

        found, top = discover_manifest(self.project_dir)
        if found is None:
            limit = f"the top of the git repository {top}" if (top / ".git").exists() else "the filesystem root"
            raise ConfigError(f"no kfp.toml in {self.project_dir} or any folder above it (searched up to {limit}). "
                              "Run `compose-kfp init` in the project folder to create one, or point to it with "
                              "`-f PATH` / `-C FOLDER`.")
        log.info("using %s", found)
        return found

    def manifest(self, overrides: Mapping[str, Any] | None = None):
        """The validated manifest (:func:`compose_kfp.manifest.load.load_manifest`)."""
        from compose_kfp.manifest.load import load_manifest

        self.loaded = load_manifest(self.existing_manifest_path(), env=self.env, overrides=overrides)
        return self.loaded

    def project(self, overrides: Mapping[str, Any] | None = None):
        """The checked project (:func:`compose_kfp.manifest.project.load_project`)."""
        from compose_kfp.manifest.project import load_project

        project = load_project(self.existing_manifest_path(), env=self.env, overrides=overrides)
        self.loaded = project.loaded
        return project


class Session:
    """What the error boundary needs to know of one run of the app: the :class:`Settings` the global
    options made (``None`` until they are parsed). Passed as the root context's ``obj``."""

    def __init__(self) -> None:
        self.settings: Settings | None = None


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
        "-C", "--project-dir", file_okay=False,
        help="The project folder (default: the nearest folder from the current one up holding kfp.toml).")] = None,
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
                        project_dir=folder.resolve(), file=file.expanduser() if file else None,
                        discover=project_dir is None and file is None)
    _configure_logging(settings)
    if isinstance(ctx.obj, Session):
        ctx.obj.settings = settings
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
