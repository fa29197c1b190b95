"""Rendering: one Jinja environment shared by every template (components, workflows).

:func:`make_environment` is the only place an environment is made, so every
template gets the same rules (see ``DESIGN.md``):

- ``StrictUndefined``: a name the template uses but the data lacks is an error,
  never an empty string;
- the ``yaml`` filter (:func:`compose_kfp.pipeline.render.filters.to_yaml`) for every user
  value, so no value can change the document's structure;
- a :class:`jinja2.ChoiceLoader` that looks in the user's template folder
  (``[render] templates``) first and in the built-in ``templates/`` second, so a
  user overrides a template by putting a file of the same name in their folder;
- no autoescaping (the output is YAML, not HTML), ``trim_blocks`` and
  ``lstrip_blocks`` so block tags leave no blank lines, ``keep_trailing_newline``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from compose_kfp.errors import RenderError
from compose_kfp.pipeline.render.filters import FILTERS, quote_string, to_yaml

if TYPE_CHECKING:  # jinja2 is imported when an environment is made: a plan whose rendered digests are cached
    import jinja2  # needs none

__all__ = ["TEMPLATES_DIR", "make_environment", "render_template", "to_yaml", "quote_string"]

log = logging.getLogger(__name__)

#: Folder of the built-in templates (``component.yaml.j2``, ``workflow.yaml.j2``).
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def make_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """Return the Jinja environment for rendering; ``templates_dir`` (the user's folder) overrides built-ins.

    Args:
        templates_dir: a folder whose files replace built-in templates of the same name
            (``component.yaml.j2``, ``workflow.yaml.j2``), or ``None`` for the built-ins only.

    Raises:
        RenderError: ``templates_dir`` is given but is not a folder.
    """
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        templates_dir = Path(templates_dir)
        if not templates_dir.is_dir():
            raise RenderError(
                f"render.templates: {templates_dir} is not a folder; point it at a folder of "
                f"templates such as component.yaml.j2 or remove the key"
            )
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def render_template(env: jinja2.Environment, name: str, **context: object) -> str:
    """Render template ``name`` of ``env`` with ``context``; Jinja failures become :class:`RenderError`.

    The error names the template (and, for syntax errors, its file and line) and
    what went wrong, e.g. an undefined variable used by a user override.
    """
    import jinja2

    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {name} not found (searched {_search_path(env)})") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template {exc.filename or name}, line {exc.lineno}: {exc.message}") from exc
    try:
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {template.filename or name}: {exc.message}") from exc
    except (jinja2.TemplateError, TypeError) as exc:
        raise RenderError(f"template {template.filename or name}: {exc}") from exc


def _search_path(env: jinja2.Environment) -> str:
    import jinja2

    paths: list[str] = []
    loader = env.loader
    inner = loader.loaders if isinstance(loader, jinja2.ChoiceLoader) else [loader]
    for sub in inner:
        if isinstance(sub, jinja2.FileSystemLoader):
            paths.extend(str(p) for p in sub.searchpath)
    return ", ".join(paths) or "no folders"
