"""Render a :class:`~compose_kfp.steps.component.ComponentSpec` as a KFP v1 ``component.yaml`` file.

The template is ``component.yaml.j2`` (built in, or the user's override from
``[render] templates``); every user value goes through the ``yaml`` filter. Files
are written by the caller to :func:`component_path` (``<output_dir>/components/<step>.yaml``).
"""

from __future__ import annotations

import logging
from pathlib import Path


from compose_kfp import __version__
from compose_kfp.steps.component import ComponentSpec
from compose_kfp.errors import RenderError
from compose_kfp.pipeline.render import make_environment, render_template

__all__ = ["COMPONENT_TEMPLATE", "COMPONENTS_DIR", "render_component", "component_path"]

log = logging.getLogger(__name__)

#: Template name looked up in the user's folder first, then in the built-ins.
COMPONENT_TEMPLATE = "component.yaml.j2"

#: Sub-folder of ``[render] output_dir`` that holds the component files.
COMPONENTS_DIR = "components"


def component_path(output_dir: Path, step_name: str) -> Path:
    """Where the component file of step ``step_name`` is written: ``<output_dir>/components/<step_name>.yaml``."""
    return Path(output_dir) / COMPONENTS_DIR / f"{step_name}.yaml"


def render_component(spec: ComponentSpec, *, templates_dir: Path | None = None) -> str:
    """Return the KFP v1 component YAML text of ``spec`` (UTF-8 text ending in a newline).

    Args:
        spec: a component whose ``image`` is set (normally ``repository@sha256:...``).
        templates_dir: the user's template folder (``[render] templates``) or ``None``.

    Raises:
        RenderError: ``spec.image`` is not set, the template fails, or the rendered text
            is not a YAML mapping equal to ``spec.to_dict()`` (a user template may add keys
            but must keep the component's name, interface and implementation).
    """
    if not spec.image:
        raise RenderError(f"component {spec.name!r}: no image to render (the image digest must be known first)")
    env = make_environment(templates_dir)
    text = render_template(env, COMPONENT_TEMPLATE, spec=spec, generator=f"compose-kfp {__version__}")
    _check(spec, text)
    return text


def _check(spec: ComponentSpec, text: str) -> None:
    """Load ``text`` back and compare it with the spec, so a template bug cannot ship a wrong file."""
    import yaml  # here: a plan whose rendered digests are cached reads no YAML

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderError(f"component {spec.name!r}: the template produced invalid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise RenderError(f"component {spec.name!r}: the template produced {type(doc).__name__}, not a mapping")
    expected = spec.to_dict()
    for key in ("name", "description", "inputs", "outputs", "implementation"):
        got, want = doc.get(key), expected.get(key)
        if got != want:
            if isinstance(got, list) and isinstance(want, list):
                diff = next((n for n, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                got = got[diff] if diff < len(got) else "(missing)"
                want = want[diff] if diff < len(want) else "(nothing)"
                key = f"{key}[{diff}]"
            raise RenderError(f"component {spec.name!r}: the rendered '{key}' differs from the component spec "
                              f"(got {_short(got)}, expected {_short(want)}); check the template")


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
