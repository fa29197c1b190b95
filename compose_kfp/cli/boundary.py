"""The CLI's one error boundary: :func:`main`, the process entry point (``compose-kfp``, ``python -m compose_kfp``).

:func:`main` runs :data:`compose_kfp.cli.app.app` and turns what a command raises into a message on
stderr and an exit status (:func:`~compose_kfp.errors.exit_code_for`); :func:`_hoist_global_flags` lets
``-q``/``-v``/``--debug`` follow the command name. Re-exported by :mod:`compose_kfp.cli` (the console
script is ``compose_kfp.cli:main``), which registers every command on the app before :func:`main` runs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from typing import NoReturn

import typer
from typer.exceptions import TyperException

from compose_kfp.cli.app import Session, Settings, _CtrlC, app
from compose_kfp.errors import ComposeError, exit_code_for, located
from compose_kfp.oci.errors import OCIError


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); the process entry point.

    The one error boundary: a :class:`ComposeError` or :class:`OCIError` prints
    ``error: <message>`` on stderr (``kfp.toml:LINE: KEY: ...`` when it is about a key of the loaded
    manifest) and exits with :func:`exit_code_for`; after ``--json`` the error is one JSON object on
    stderr instead (:func:`_print_error`); usage errors
    exit 1; Ctrl-C exits 130; an ``OSError`` no command mapped (a file that cannot be
    written, say) prints ``error: <path>: <reason>`` and exits 1; anything else is a bug,
    reported as such (exit 1).
    A traceback is printed only with ``--debug`` (or ``COMPOSE_KFP_DEBUG=1``).
    """
    args = _hoist_global_flags(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args or os.environ.get("COMPOSE_KFP_DEBUG") == "1"
    session = Session()
    try:
        result = app(args=args, prog_name="compose-kfp", standalone_mode=False, obj=session)
        code = result if isinstance(result, int) else 0
    except (ComposeError, OCIError) as error:
        located = _located(error, session.settings)
        code = exit_code_for(located)
        if debug:
            _report_traceback(error)
        _print_error(session, str(located), located, code)
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
        _print_error(session, f"{where}{error.strerror or error}", error, code)
    except Exception as error:  # noqa: BLE001 - the boundary: a bug, reported briefly
        code = 1
        if debug:
            _report_traceback(error)
            _print_error(session, str(error), error, code)
        elif _json(session):
            _print_error(session, f"internal error: {type(error).__name__}: {error}; this is a bug in compose-kfp: "
                         "run again with --debug for the traceback and report it", error, code)
        else:
            print(f"internal error: {type(error).__name__}: {error}\n"
                  "This is a bug in compose-kfp; run again with --debug for the traceback and report it.",
                  file=sys.stderr)
    sys.stdout.flush()
    sys.exit(code)


def _json(session: Session) -> bool:
    return session.settings is not None and session.settings.json


def _located(error: ComposeError | OCIError, settings: Settings | None) -> ComposeError:
    """``error`` located in the manifest the command loaded (:func:`compose_kfp.errors.located`)."""
    return located(error, settings.loaded if settings is not None else None)


def _print_error(session: Session, message: str, error: BaseException, code: int) -> None:
    """``error: MESSAGE`` on stderr; with ``--json``, one JSON object instead:
    ``{"error": {"message", "kind", "exit_code", "file", "line", "key"}}`` (unknown fields ``null``)."""
    if not _json(session):
        print(f"error: {message}", file=sys.stderr)
        return
    print(json.dumps({"error": {
        "message": message, "kind": type(error).__name__, "exit_code": code,
        "file": getattr(error, "file", None) if isinstance(error, ComposeError) else getattr(error, "filename", None),
        "line": getattr(error, "line", None) if isinstance(error, ComposeError) else None,
        "key": getattr(error, "key", None) if isinstance(error, ComposeError) else None,
    }}, ensure_ascii=False), file=sys.stderr)


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


def _report_traceback(error: BaseException) -> None:
    import traceback

    traceback.print_exception(error, file=sys.stderr)
