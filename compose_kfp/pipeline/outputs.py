"""The rendered outputs of a project: component YAML files, the Argo Workflow, the KFP pipeline package.

- :func:`render_outputs`: every output, each image pinned as ``repository@sha256:...``
  (``<output_dir>/components/<step>.yaml``, ``<output_dir>/workflow.yaml`` for the ``argo``
  target, ``<output_dir>/pipeline.yaml`` for the ``kfp`` target), as bytes; writes nothing.
- :func:`rendered_digests`: their sha256 (what a plan compares with the files on disk), memoized
  in the state folder.
- :func:`check_output_writable` (before anything is sent), :func:`stage_rendered` (before anything is
  tagged: every changed file written in full beside its target) and :meth:`StagedOutputs.commit` (after the
  tags: renames only); :func:`write_rendered` is both.
- :func:`render_from_lock`: ``compose-kfp render``, with the digests recorded in kfp.lock.
- :func:`render_warnings`: what is worth knowing about the images the rendered files name (an ``oci:`` layout's
  images cannot be pulled by a cluster).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from compose_kfp.build.lock import lock_component_images, lock_images
from compose_kfp.build.staging import StagedFiles, check_name_fits
from compose_kfp.build.statedir import ProjectState
from compose_kfp.errors import ConfigError, RenderError
from compose_kfp.manifest.fences import LAYOUT_PREFIX
from compose_kfp.oci.blobs import atomic_write

if TYPE_CHECKING:
    from compose_kfp.manifest.project import Project

log = logging.getLogger(__name__)

#: Rendered file names under ``render.output_dir``.
WORKFLOW_FILE = "workflow.yaml"
KFP_PIPELINE_FILE = "pipeline.yaml"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _sha(data: bytes) -> str:
    """sha256 hex of ``data``."""
    return hashlib.sha256(data).hexdigest()


def digests_of(files: Mapping[str, bytes]) -> dict[str, str]:
    """sha256 hex of each file of ``files`` (path -> bytes, from :func:`render_outputs`), by the same path."""
    return {k: _sha(v) for k, v in files.items()}


def render_outputs(project: Project, images: Mapping[str, str]) -> dict[str, bytes]:
    """Render every output of ``project`` with steps pinned to ``images`` (step -> ``repo@sha256:...``): every
    function step must be there; a component-file step found there gets that image instead of its own.

    Returns:
        path relative to the project folder -> file bytes: ``<output_dir>/components/<step>.yaml`` for each
        step, ``<output_dir>/workflow.yaml`` (target ``argo``) and ``<output_dir>/pipeline.yaml`` (target
        ``kfp``) when kfp.toml has a ``[pipeline]``.

    Raises:
        RenderError: a template or the KFP compiler failed; ConfigError: the graph cannot be resolved.
    """
    from compose_kfp.pipeline.render.component import component_path, render_component

    manifest, root = project.manifest, project.root
    out_dir = project.loaded.output_dir
    templates = (root / manifest.render.templates) if manifest.render.templates else None
    specs = pinned_components(project, images)
    files: dict[str, bytes] = {}
    texts: dict[str, str] = {}
    for name, spec in specs.items():
        text = render_component(spec, templates_dir=templates)
        texts[name] = text
        files[_rel(component_path(out_dir, name), root)] = text.encode("utf-8")
    graph = pinned_graph(project, images)
    if graph is not None:
        if "argo" in manifest.render.targets:
            from compose_kfp.pipeline.render.workflow import render_workflow

            files[_rel(out_dir / WORKFLOW_FILE, root)] = render_workflow(graph, manifest).encode("utf-8")
        if "kfp" in manifest.render.targets:
            from compose_kfp.pipeline.render.kfp import render_kfp_pipeline

            with tempfile.TemporaryDirectory(prefix="compose-kfp-render-") as tmp:
                out = render_kfp_pipeline(graph, texts, Path(tmp) / KFP_PIPELINE_FILE, manifest)
                files[_rel(out_dir / KFP_PIPELINE_FILE, root)] = Path(out).read_bytes()
    return files


def pinned_components(project: Project, images: Mapping[str, str]) -> dict[str, Any]:
    """Step -> its component with the image of ``images`` (step -> ``repo@sha256:...``; a component-file step
    not there keeps its own). Raises RenderError when a function step has no image there."""
    specs = {}
    for name, spec in project.components.items():
        if project.manifest.steps[name].builds_image and name not in images:
            raise RenderError(f"step {name!r}: its image digest is not known; run `compose-kfp apply` first")
        specs[name] = dataclasses.replace(spec, image=images[name]) if name in images else spec
    return specs


def pinned_graph(project: Project, images: Mapping[str, str]) -> Any:
    """The task graph with every task's image pinned (:func:`pinned_components`), or ``None`` without a pipeline."""
    from compose_kfp.pipeline.graph import resolve_graph

    manifest = project.manifest
    if manifest.pipeline is None or not manifest.pipeline.tasks:
        return None
    specs = pinned_components(project, images)
    pinned = {name: spec.image for name, spec in specs.items() if spec.image}
    return resolve_graph(manifest, specs, manifest_path=project.loaded.path, images=pinned, where=project.loaded.where)


def render_inputs_key(project: Project, images: Mapping[str, str]) -> str:
    """A digest of everything :func:`render_outputs` depends on: the validated manifest (overrides applied),
    the step components (already introspected by ``load_project``), the pinned images, the user's template
    folder (file names and contents), and the versions of compose-kfp, Jinja and (target ``kfp``) the KFP SDK."""
    import importlib.metadata
    import json as _json

    from compose_kfp import __version__

    h = hashlib.sha256()
    h.update(project.manifest.model_dump_json(warnings=False).encode())
    h.update(repr(sorted(project.components.items())).encode())
    h.update(_json.dumps(sorted(images.items())).encode())
    h.update(str(project.loaded.output_dir).encode())
    versions = [__version__, importlib.metadata.version("jinja2")]
    if "kfp" in project.manifest.render.targets:
        versions.append(importlib.metadata.version("kfp"))
    h.update(repr(versions).encode())
    if project.manifest.render.templates:
        folder = project.root / project.manifest.render.templates
        for f in sorted(folder.rglob("*")) if folder.is_dir() else ():
            if f.is_file():
                h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
    from compose_kfp.pipeline.render import TEMPLATES_DIR

    for f in sorted(TEMPLATES_DIR.glob("*")):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def rendered_digests(project: Project, images: Mapping[str, str]) -> dict[str, str]:
    """sha256 hex of each file :func:`render_outputs` would write, by relative path.

    Memoized in ``.compose-kfp/cache/render/<inputs key>.json`` (see :func:`render_inputs_key`), so a
    no-op ``plan`` does not compile templates or run the KFP compiler again. When the state folder cannot be
    written (a read-only checkout), the digests are computed without being cached.
    """
    import json as _json

    state = ProjectState(project.root)
    path = state.dir / "cache" / "render" / f"{render_inputs_key(project, images)}.json"
    try:
        cached = _json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, dict):
            return {str(k): str(v) for k, v in cached.items()}
    except (OSError, ValueError):
        pass
    digests = {k: _sha(v) for k, v in render_outputs(project, images).items()}
    try:
        atomic_write(path, _json.dumps(digests, sort_keys=True).encode())
    except OSError as e:  # a read-only checkout: plan works, only without this cache
        log.debug("not caching rendered digests in %s: %s", path, e)
    return digests


def rendered_names(project: Project) -> list[str]:
    """The paths (relative to the project folder, POSIX) :func:`render_outputs` writes: a component file per step
    in step order, then the workflow and the KFP pipeline package when kfp.toml has a ``[pipeline]``. Reads
    nothing."""
    from compose_kfp.pipeline.render.component import component_path

    manifest, root, out_dir = project.manifest, project.root, project.loaded.output_dir
    names = [_rel(component_path(out_dir, n), root) for n in project.components]
    if manifest.pipeline is not None and manifest.pipeline.tasks:
        if "argo" in manifest.render.targets:
            names.append(_rel(out_dir / WORKFLOW_FILE, root))
        if "kfp" in manifest.render.targets:
            names.append(_rel(out_dir / KFP_PIPELINE_FILE, root))
    return names


def managed_prefixes(project: Project) -> list[str]:
    """Folder prefixes (relative, ending in ``/``) whose files rendering owns: a file there that is no longer
    rendered is removed (the components folder)."""
    from compose_kfp.pipeline.render.component import COMPONENTS_DIR

    return [_rel(project.loaded.output_dir / COMPONENTS_DIR, project.root) + "/"]


def _output_error(project: Project, error: OSError, path: Path | str | None = None) -> RenderError:
    """A :class:`RenderError` for a file-system ``error`` while writing under ``render.output_dir``: a full disk
    (``ENOSPC``, ``EDQUOT``) and a name too long (``ENAMETOOLONG``) are said as such; anything else (permissions,
    a path under a regular file, a read-only file system) asks for a writable folder."""
    where = Path(path) if path is not None else Path(error.filename) if error.filename else project.loaded.output_dir
    shown, out = _rel(where, project.root), _rel(project.loaded.output_dir, project.root)
    elsewhere = "or set render.output_dir in kfp.toml (or COMPOSE_KFP_OUTPUT_DIR) to another one"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return RenderError(f"render.output_dir ({out}): no space left on device writing {shown}: free some "
                           f"space, {elsewhere.replace('another one', 'a folder on another disk')}.")
    if error.errno == errno.ENAMETOOLONG:
        reason = error.strerror or "File name too long"
        return RenderError(f"render.output_dir ({out}): cannot write {shown}: {reason}. Use a shorter name (a "
                           f"component file is named after its step: components/<step>.yaml), {elsewhere}.")
    return RenderError(f"render.output_dir ({out}): cannot write {shown}: {error.strerror or error}. The output "
                       f"folder must be a writable folder: fix its permissions, {elsewhere}.")


def check_inside_output(project: Project, path: Path) -> None:
    """Refuse to write or remove ``path`` (a file under ``render.output_dir``) when a symlink below the output
    folder leads its folder out of it: ``build/components -> /elsewhere`` would make apply write there and
    delete the ``*.yaml`` files it finds there. The output folder itself is fenced when kfp.toml is loaded
    (:mod:`compose_kfp.manifest.fences`); this checks the folders under it, each time before they are used.

    Raises:
        ConfigError: names ``render.output_dir``, the symlink and where it leads.
    """
    out_real = os.path.realpath(project.loaded.output_dir)
    folder = Path(os.path.abspath(path)).parent
    real = os.path.realpath(folder)
    if real == out_real or real.startswith(out_real + os.sep):
        return
    link = folder
    while link != link.parent and not link.is_symlink():
        link = link.parent
    shown = _rel(link if link.is_symlink() else folder, project.root)
    raise ConfigError(f"render.output_dir ({_rel(project.loaded.output_dir, project.root)}): {shown} is a symlink "
                      f"to {real}, outside the output folder; compose-kfp writes and removes files there, so it "
                      "never follows a link out of it. Remove the symlink (the folder is made as needed).")


def check_output_writable(project: Project, files: Sequence[str]) -> None:
    """Make sure the rendered files ``files`` (paths relative to the project folder) can be written: each name
    fits the file system (:func:`~compose_kfp.build.staging.check_name_fits`: ``PC_NAME_MAX`` bytes, the whole
    path under ``PC_PATH_MAX``), and each folder can be created and takes a probe file (created and removed).
    Used by apply before anything is sent, so an unwritable output folder or a name too long fails before the
    registry or kfp.lock change. (Free space cannot be known before rendering; apply stages the rendered files
    before anything is tagged instead: :func:`stage_rendered`.)

    Raises:
        RenderError: a name is too long, or a folder cannot be created or written (names ``render.output_dir``
            and the path).
    """
    for rel in files:
        check_inside_output(project, project.root / rel)
        try:
            check_name_fits(project.root / rel)
        except OSError as e:
            raise _output_error(project, e, project.root / rel) from None
    for folder in sorted({(project.root / rel).parent for rel in files}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise _output_error(project, e, folder) from None


@dataclasses.dataclass
class StagedOutputs:
    """Rendered files written in full beside their targets (:class:`~compose_kfp.build.staging.StagedFiles`),
    not yet in place; :meth:`commit` moves them in and removes the component files no longer rendered.

    Attributes:
        project: the project they belong to.
        changed: paths (relative, sorted) that :meth:`commit` writes or removes; unchanged files are not staged.
        staged: the temporary files.
        removals: component files of steps that no longer exist.
    """

    project: Project
    changed: list[str]
    staged: StagedFiles
    removals: list[Path]

    def commit(self) -> list[str]:
        """Rename every staged file into place, then remove :attr:`removals`; returns :attr:`changed`.

        Raises:
            RenderError: a rename or removal failed (the folder became read-only since staging); names
                ``render.output_dir`` and the path.
        """
        try:
            self.staged.commit()
        except OSError as e:
            raise _output_error(self.project, e) from None
        for path in self.removals:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise _output_error(self.project, e, path) from None
        return self.changed

    def discard(self) -> None:
        """Remove the staged temporary files; nothing in the output folder changes."""
        self.staged.discard()


def stage_rendered(project: Project, files: Mapping[str, bytes]) -> StagedOutputs:
    """Stage ``files`` (from :func:`render_outputs`): every file whose bytes differ from what is on disk is
    written in full to a temporary file in its target's folder; nothing in place changes yet. Component files
    of steps that no longer exist are listed for removal. Apply calls this before any tag is written and
    :meth:`StagedOutputs.commit` after the tags.

    Raises:
        RenderError: a file cannot be staged: no space left on device (``ENOSPC``: "free some space"), a name
            too long, an unwritable folder, a path under a regular file; names ``render.output_dir`` and the
            path. Every temporary file made is removed: the output folder is as it was.
    """
    from compose_kfp.pipeline.render.component import COMPONENTS_DIR

    root = project.root
    changed: list[str] = []
    staged = StagedFiles()
    with staged:
        for rel, data in sorted(files.items()):
            path = root / rel
            check_inside_output(project, path)
            try:
                if path.read_bytes() == data:
                    continue
            except OSError:
                pass
            try:
                staged.add(path, data)
            except OSError as e:
                raise _output_error(project, e, path) from None
            changed.append(rel)
    removals = []
    comp_dir = project.loaded.output_dir / COMPONENTS_DIR
    check_inside_output(project, comp_dir / "x.yaml")
    if comp_dir.is_dir():
        for path in sorted(comp_dir.glob("*.yaml")):
            rel = _rel(path, root)
            if rel not in files:
                removals.append(path)
                changed.append(rel)
    return StagedOutputs(project, sorted(changed), staged, removals)


def write_rendered(project: Project, files: Mapping[str, bytes]) -> list[str]:
    """Write ``files`` (from :func:`render_outputs`) and delete component files of steps that no longer exist:
    :func:`stage_rendered`, then :meth:`StagedOutputs.commit`. Returns the paths written or removed (relative,
    sorted); unchanged files are not touched.

    Raises:
        RenderError: as :func:`stage_rendered` (then no file was changed) and :meth:`StagedOutputs.commit`.
    """
    return stage_rendered(project, files).commit()


def render_from_lock(project: Project) -> list[str]:
    """``compose-kfp render``: render the outputs with the image digests recorded in kfp.lock; build and push nothing.

    Returns the paths written (relative to the project folder). Every digest used is checked first, as far as
    that can be done without the network (:func:`~compose_kfp.build.lock.read_lock`: its form and the lock's
    structure; :func:`~compose_kfp.build.lock.lock_images`: a single-platform image's digest against the
    manifest digest recorded beside it, an ``oci:`` layout's blob), so an edited digest is refused here rather
    than failing at the pull.

    Raises:
        StaleError: there is no kfp.lock, it lacks an image a function step needs, or the ``oci:`` layout does
            not hold the locked image (run ``apply``).
        ConfigError: kfp.lock is damaged: not UTF-8 JSON, a wrong type, a malformed digest, an image digest that
            is not its recorded manifest's (names kfp.lock, the line and the key).
        RenderError: as :func:`write_rendered` (then no file was changed).
    """
    return write_rendered(project, render_outputs(project, {**lock_images(project),
                                                            **lock_component_images(project)}))


def render_warnings(project: Project) -> tuple[str, ...]:
    """Warnings (``FILE:LINE: KEY: text``) about the images the rendered files name, in order.

    With ``repository = "oci:PATH"`` the images are in an OCI image layout on this machine and the rendered
    files (``workflow.yaml``, the component files, ``pipeline.yaml``) name them ``oci:PATH@sha256:...``: no
    cluster can pull that (``run --local`` can). :func:`compose_kfp.build.plan.plan_project` adds these to the
    plan's warnings (so ``plan`` and ``apply`` show them) and ``compose-kfp render`` prints them. Reads nothing.
    """
    repository = project.manifest.image.repository
    if not repository.startswith(LAYOUT_PREFIX):
        return ()
    where = project.loaded.where(("image", "repository"))
    return (f"{where}: image.repository: {repository!r} is an OCI image layout on this machine, so the rendered "
            f"files name the images {repository}@sha256:..., which no cluster can pull (`compose-kfp run --local` "
            "runs them as they are). To submit the workflow, set image.repository to a registry repository "
            "(e.g. ghcr.io/acme/app) and run `compose-kfp apply` again",)


__all__ = ["KFP_PIPELINE_FILE", "WORKFLOW_FILE", "StagedOutputs", "check_output_writable", "digests_of",
           "managed_prefixes", "render_from_lock", "render_outputs", "render_warnings", "rendered_digests",
           "rendered_names",
           "stage_rendered", "write_rendered"]
