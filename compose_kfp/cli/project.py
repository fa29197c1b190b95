"""The project commands ``schema``, ``init`` and ``validate``, registered on :data:`compose_kfp.cli.app.app`.

Thin: each parses its options, calls one library function (:func:`compose_kfp.schema.json_schema` or
:func:`~compose_kfp.schema.reference_markdown`, :func:`compose_kfp.manifest.init.init_project`,
:func:`compose_kfp.manifest.project.load_project`) and prints through the CLI's consoles. Importing this
module registers the commands (``compose_kfp.cli`` imports it first, so they come first in ``--help``).
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Optional

import typer

from compose_kfp.cli.app import _settings, app


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
    from compose_kfp.manifest.docs import json_schema, reference_markdown

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
    from compose_kfp.manifest.init import WrittenManifest, init_project
    from compose_kfp.manifest.load import display_path

    settings = _settings(ctx)

    def on_written(written: WrittenManifest) -> None:
        steps = written.steps
        settings.out.print(f"wrote {display_path(written.path)}: {written.layers} layer(s), "
                           f"{len(steps)} step(s){': ' + ', '.join(steps) if steps else ''}",
                           markup=False)

    done = init_project(settings.manifest_path, force=force, name=name, base=base, repository=repository,
                        on_written=on_written)
    gitignore, state = display_path(done.gitignore), done.state_entry
    settings.out.print({"created": f"wrote {gitignore}: ignores {state} (the blob store and layer cache)",
                        "added": f"added {state} (the blob store and layer cache) to {gitignore}",
                        "present": f"{gitignore} already ignores {state}"}[done.gitignore_change],
                       markup=False)
    settings.out.print("next: edit [pipeline] to connect the steps, then run `compose-kfp validate`", markup=False)


@app.command()
def validate(ctx: typer.Context) -> None:
    """Load kfp.toml, its step components and the task graph; print OK or the first problem (and any warning,
    such as a layer whose paths hold the output folder, on stderr)."""
    settings = _settings(ctx)
    project = settings.project()
    for warning in project.loaded.warnings:
        settings.err.print(f"warning: {warning}", markup=False)
    manifest = project.manifest
    tasks = len(project.graph.all_tasks) if project.graph is not None else 0
    settings.out.print(
        f"OK {project.loaded.display_path}: {len(manifest.steps)} step(s), {tasks} task(s), "
        f"{len(manifest.image.layers or [])} layer(s)", markup=False)
