"""The project fence: what ``kfp.toml`` names is read from inside the project, outputs are written inside it,
and what compose-kfp writes is never read back as a layer input.

The project folder is the folder of ``kfp.toml``; "inside" is decided on real paths (``os.path.realpath``:
every symlink along the path followed, ``..`` resolved), so a symlink that leads out counts as outside.

- :func:`check_sources`: every file or folder ``kfp.toml`` names with a *relative* path (``[[image.layers]]``
  and step ``layers`` ``paths`` entries, plain or ``{src, dst}``; ``rootfs``; ``requirements``; each step's
  ``function`` file and ``component`` file; ``render.templates``; the default layers ``data/`` and ``src/``)
  must resolve inside the project. An *absolute* path (``/var/cache/rootfs``, ``~/data``) is the explicit way to
  take something from elsewhere: it is visible in kfp.toml, unlike a symlink committed next to it.
- :func:`check_output_dir`: ``render.output_dir`` must resolve inside the project when it comes from kfp.toml
  (relative or absolute); from the command line (``--output-dir``) or ``COMPOSE_KFP_OUTPUT_DIR`` (values the
  user gives, not the repository) an absolute path may be anywhere, a relative one must stay inside. In every
  case the output folder is not the project folder, not a folder holding it, not in the state folder
  ``.compose-kfp``, and holds nothing kfp.toml names (rendering writes and deletes files there).
- :func:`owned_paths`: what compose-kfp writes in a project (the output folder, ``kfp.lock``, ``.compose-kfp``,
  an ``oci:PATH`` destination layout); :func:`compose_kfp.build.images.desired_images` leaves these out of every
  layer whose sources hold them (:func:`exclusions`), so an ``apply`` never changes the next plan's inputs.
- :func:`output_warnings`: the output folder inside a layer's paths (left out, but worth knowing).

**Why here and not in** :mod:`compose_kfp.oci.layer`: that module is a general image library, and like
``docker build`` / ``COPY`` it follows a symlink given as an include (the caller named it) while refusing links
deeper in a tree that lead out of it. Which folder is "the project", and which values a user typed rather than
a repository committed, is known only here, at load time, so ``validate`` reports it before anything is built.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from compose_kfp.build.spec import LOCK_NAME
from compose_kfp.manifest.problems import Problems
from compose_kfp.oci.layer import STATE_DIR
from compose_kfp.schema import LayerConfig, Manifest

#: ``image.repository`` prefix of a local OCI image layout destination.
LAYOUT_PREFIX = "oci:"


def inside(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or below it (both absolute, normalised)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _real(root: Path, written: str) -> str:
    return os.path.realpath(root / Path(written).expanduser())


def _is_absolute(written: str) -> bool:
    return Path(written).expanduser().is_absolute()


@dataclasses.dataclass(frozen=True)
class Named:
    """A file or folder kfp.toml names: its key path, the path as written, its real path, what it is."""

    loc: tuple
    written: str
    real: str
    what: str


def named_paths(manifest: Manifest, root: Path, *, layers_defaulted: bool = False) -> Iterator[Named]:
    """Every file or folder ``manifest`` names, in file order: ``[[image.layers]]`` (``paths`` entries, their
    ``src`` for tables; ``requirements``; ``rootfs``), each step's ``function`` file, ``component`` file,
    ``requirements`` and ``layers``, then ``render.templates``. Default layers (``layers_defaulted``) are named
    at ``image.layers``. Real paths are against ``root``; nothing is required to exist."""
    def layers(prefix: tuple, items: Sequence[LayerConfig], default: bool) -> Iterator[Named]:
        for i, layer in enumerate(items):
            here = prefix if default else prefix + (i,)
            what = f"the default layer {layer.name!r}" if default else "a layer source"
            for j, entry in enumerate(layer.paths):
                src = entry if isinstance(entry, str) else entry.src
                loc = here if default else here + ("paths", j) + (() if isinstance(entry, str) else ("src",))
                yield Named(loc, src, _real(root, src), what)
            if layer.requirements:
                yield Named(here if default else here + ("requirements",), layer.requirements,
                            _real(root, layer.requirements), "a requirements file")
            if layer.rootfs:
                yield Named(here + ("rootfs",), layer.rootfs, _real(root, layer.rootfs), "a rootfs folder")

    yield from layers(("image", "layers"), manifest.image.layers or (), layers_defaulted)
    for name, step in manifest.steps.items():
        base = ("steps", name)
        if step.function_file:
            yield Named(base + ("function",), step.function_file, _real(root, step.function_file),
                        f"the file of step {name!r}")
        if step.notebook:
            yield Named(base + ("notebook",), step.notebook, _real(root, step.notebook), f"the notebook of step {name!r}")
        if step.component:
            yield Named(base + ("component",), step.component, _real(root, step.component), "a component file")
        if step.requirements:
            yield Named(base + ("requirements",), step.requirements, _real(root, step.requirements),
                        "a requirements file")
        yield from layers(base + ("layers",), step.layers, False)
    if manifest.render.templates:
        yield Named(("render", "templates"), manifest.render.templates, _real(root, manifest.render.templates),
                    "the templates folder")


def _why_outside(root: Path, written: str, real: str) -> str:
    """Which part of ``written`` (relative to ``root``) leads out: the first symlink along it, or ``..``."""
    current = root
    for part in Path(written).parts:
        if part == "..":
            break
        current = current / part
        if os.path.islink(current):
            shown, target, real = current.relative_to(root).as_posix(), os.readlink(current), os.path.realpath(current)
            return f"{shown!r} is a symlink to {target}" + (f" ({real})" if real != target else "")
    return f"{written!r} resolves to {real}"


def check_sources(manifest: Manifest, root: Path, problems: Problems, *, layers_defaulted: bool = False
                  ) -> set[tuple]:
    """Add to ``problems`` each relative path kfp.toml names whose real path is outside the project ``root``
    (module docstring). Returns the key paths reported (so a "not found" for the same key can be skipped)."""
    root_real = os.path.realpath(root)
    reported: set[tuple] = set()
    for item in named_paths(manifest, root, layers_defaulted=layers_defaulted):
        if _is_absolute(item.written) or inside(item.real, root_real):
            continue
        if item.loc == ("image", "layers"):
            hint = ("list the layers in [[image.layers]] with an absolute source to take it from there on purpose: "
                    f'{{ src = "{item.real}", dst = "..." }}')
        elif "paths" in item.loc:
            hint = f'give an absolute source to take it from there on purpose: {{ src = "{item.real}", dst = "..." }}'
        else:
            hint = f'write the absolute path ("{item.real}") to take it from there on purpose'
        problems.add(item.loc, f"{_why_outside(root, item.written, item.real)}, outside the project folder "
                               f"{root_real}: {item.what} must be inside the project (nothing outside it goes "
                               f"into an image by accident). Move or copy it into the project, or {hint}")
        reported.add(item.loc)
    return reported


def check_output_dir(manifest: Manifest, root: Path, problems: Problems, sources: Mapping[str, str], *,
                     layers_defaulted: bool = False) -> None:
    """Add to ``problems`` (at ``render.output_dir``) an output folder that may not be written (module docstring):
    outside the project when it comes from kfp.toml or is relative; the project folder itself or a folder
    holding it; the state folder ``.compose-kfp`` or a folder in it; a folder holding a file kfp.toml names."""
    written = manifest.render.output_dir
    loc = ("render", "output_dir")
    root_real = os.path.realpath(root)
    real = _real(root, written)
    typed = sources.get("render.output_dir") is not None  # the command line or the environment
    fix = "use a folder of its own inside the project (the default is 'build')"
    if not inside(real, root_real) and not (typed and _is_absolute(written)):
        allowed = ("" if typed else " (a value in kfp.toml never points outside the project)")
        problems.add(loc, f"{_why_outside(root, written, real)}, outside the project folder {root_real}: rendered "
                          f"files are written inside the project only{allowed}; {fix}, or give an absolute path "
                          "with --output-dir (or COMPOSE_KFP_OUTPUT_DIR) to write elsewhere")
        return
    if real == root_real:
        problems.add(loc, f"{written!r} is the project folder itself; {fix}")
        return
    if inside(root_real, real):
        problems.add(loc, f"{written!r} ({real}) holds the project folder and its kfp.toml; {fix}")
        return
    state = os.path.join(root_real, STATE_DIR)
    if inside(real, state):
        problems.add(loc, f"{written!r} is in the state folder {STATE_DIR}/, which compose-kfp manages "
                          f"(`compose-kfp gc` prunes it); {fix}")
        return
    held = [item for item in named_paths(manifest, root, layers_defaulted=layers_defaulted)
            if inside(item.real, real)]
    if held:
        first = held[0]
        more = f" (and {len(held) - 1} more)" if len(held) > 1 else ""
        key = ".".join(str(p) for p in first.loc)
        shown = f"{first.written}/" if first.loc == ("image", "layers") else f"{key} = {first.written!r}"
        problems.add(loc, f"{written!r} holds {first.what} ({shown}){more}: rendering writes "
                          "and deletes files in the output folder (components/*.yaml) and `run --local` writes "
                          f"runs/ there, so it may hold nothing kfp.toml names; {fix}")


def owned_paths(manifest: Manifest, root: Path | str) -> tuple[str, ...]:
    """The real paths of what compose-kfp writes for the project at ``root``: ``render.output_dir``,
    ``kfp.lock``, ``.compose-kfp`` and the folder of an ``oci:PATH`` ``image.repository``, in that order
    (absolute, symlinks resolved; nothing needs to exist)."""
    root = Path(root)
    paths = [_real(root, manifest.render.output_dir), _real(root, LOCK_NAME), _real(root, STATE_DIR)]
    if manifest.image.repository.startswith(LAYOUT_PREFIX):
        paths.append(_real(root, manifest.image.repository[len(LAYOUT_PREFIX):]))
    return tuple(dict.fromkeys(paths))


def exclusions(sources: Iterable[str], owned: Iterable[str]) -> tuple[str, ...]:
    """The paths of ``owned`` (real paths, :func:`owned_paths`) strictly below one of a layer's ``sources``
    (real paths), sorted: what that layer leaves out. Empty for a layer whose sources hold none of them, so
    its plan, key and digest are those it always had."""
    real_sources = [os.path.realpath(s) for s in sources]
    return tuple(sorted({o for o in owned for s in real_sources if o != s and inside(o, s)}))


def output_warnings(manifest: Manifest, root: Path, where: Callable[[tuple], str]) -> tuple[str, ...]:
    """Warnings (``FILE:LINE: KEY: text``, ``where(loc)`` giving ``FILE:LINE``) for each layer ``paths`` entry
    whose folder holds the output folder: it is left out of that layer (:func:`exclusions`)."""
    out_real = _real(root, manifest.render.output_dir)
    warnings = []
    for item in named_paths(manifest, root):
        if "paths" in item.loc and out_real != item.real and inside(out_real, item.real):
            key = ".".join(str(p) for p in item.loc)
            warnings.append(f"{where(item.loc)}: {key}: {item.written!r} holds the output folder "
                            f"{manifest.render.output_dir!r} (render.output_dir); it is left out of this layer, "
                            "as kfp.lock and .compose-kfp/ are (outputs and state are never layer inputs). Keep "
                            "the output folder outside the layer's paths to make that plain")
    return tuple(warnings)


__all__ = ["LAYOUT_PREFIX", "Named", "check_output_dir", "check_sources", "exclusions", "inside", "named_paths",
           "output_warnings", "owned_paths"]
