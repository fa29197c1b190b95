"""The project fence (issue 20, item 1; fault and security tests): nothing outside the project is read into an
image.

Every test runs the real command line in-process on a small project in ``tmp_path`` on top of ``scratch`` with an
``oci:build/image`` destination: nothing needs a registry.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from compose_kfp import cli, errors

MANIFEST = '''\
[project]
name = "demo"

[image]
base = "scratch"
repository = "oci:build/image"
{image_extra}
{layers}
[steps.double]
function = "src/steps.py:double"
{steps_extra}
[pipeline.tasks.double]
step = "double"
args.x = 2
{render}'''

SECRET = b"TOP-SECRET-outside-the-project-8d1c"


def run(*args: str) -> tuple[int, str, str]:
    """Run ``main`` in-process; return (exit code, stdout, stderr)."""
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as info:
        cli.main(list(args))
    return info.value.code, out.getvalue(), err.getvalue()


def write(root: Path, *, layers: str = '[[image.layers]]\nname = "app"\npaths = ["src"]\n', render: str = "",
          image_extra: str = "", steps_extra: str = "") -> Path:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "steps.py").write_text('def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n')
    (root / "kfp.toml").write_text(MANIFEST.format(layers=layers, render=render, image_extra=image_extra,
                                                   steps_extra=steps_extra))
    return root


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder next to the project holding a secret file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(SECRET)
    return folder


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """The project, the current directory (so messages show ``kfp.toml``)."""
    folder = write(tmp_path / "proj")
    monkeypatch.chdir(folder)
    return folder


def line_of(root: Path, text: str) -> int:
    """1-based line of the first line of kfp.toml containing ``text``."""
    return next(i for i, line in enumerate((root / "kfp.toml").read_text().splitlines(), 1) if text in line)


def layout_files(root: Path) -> dict[str, bytes]:
    """Every regular file of every layer of every image in the project's ``build/image`` layout: path -> bytes."""
    layout = root / "build" / "image"
    blobs = layout / "blobs" / "sha256"
    found: dict[str, bytes] = {}
    for m in json.loads((layout / "index.json").read_text())["manifests"]:
        manifest = json.loads((blobs / m["digest"].split(":")[1]).read_bytes())
        for layer in manifest["layers"]:
            data = (blobs / layer["digest"].split(":")[1]).read_bytes()
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
                for member in tar.getmembers():
                    found[member.name] = tar.extractfile(member).read() if member.isfile() else b""
    return found


def secret_anywhere(folder: Path) -> list[str]:
    """Files under ``folder`` (layout blobs decompressed) whose bytes hold :data:`SECRET`."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError):
                pass
            if SECRET in data:
                hits.append(str(path))
    return hits


# --------------------------------------------------------------------------- 1. sources outside the project


def test_a_top_level_symlink_out_of_the_project_is_refused_before_anything_is_built(root, outside):
    """The issue's case: `ln -s /outside data`, a layer with paths = ["data"], `apply -y`."""
    (root / "data").symlink_to(outside, target_is_directory=True)
    write(root, layers='[[image.layers]]\nname = "app"\npaths = ["src", "data"]\n')
    code, out, err = run("-C", str(root), "apply", "-y")
    assert code == errors.ConfigError.exit_code == 1, err
    line = line_of(root, 'paths = ["src", "data"]')
    assert err.startswith(f"error: kfp.toml:{line}: image.layers.0.paths.1: 'data' is a symlink to {outside}"), err
    assert "outside the project folder" in err and err.count("\n") == 1
    assert not (root / "build").exists() and not (root / "kfp.lock").exists()
    assert not secret_anywhere(root)
    # validate says the same, before anything is built
    code, _, verr = run("-C", str(root), "validate")
    assert code == 1 and verr == err


def test_a_default_layer_that_is_a_symlink_out_of_the_project_is_refused(root, outside):
    (root / "data").symlink_to(outside, target_is_directory=True)
    write(root, layers="")
    code, _, err = run("-C", str(root), "apply", "-y")
    assert code == 1
    assert "image.layers: 'data' is a symlink to" in err and "the default layer 'data'" in err
    assert not (root / "build").exists() and not secret_anywhere(root)


@pytest.mark.parametrize("case", ["table-src", "rootfs", "requirements", "function", "component", "templates",
                                  "step-layer", "dotdot", "deeper-link"])
def test_every_named_path_is_fenced(root, outside, case):
    """rootfs, {src, dst} tables, requirements, step files, component files, templates, step layers, `..`."""
    (outside / "requirements.txt").write_text("six\n")
    (outside / "c.yaml").write_text("name: c\nimplementation:\n  container:\n    image: alpine\n")
    (outside / "steps.py").write_text("def double(x: int) -> int:\n    return x\n")
    (root / "ext").symlink_to(outside, target_is_directory=True)
    layers, steps_extra, render, key = '[[image.layers]]\nname = "app"\npaths = ["src"]\n', "", "", None
    if case == "table-src":
        layers += '\n[[image.layers]]\nname = "ext"\npaths = [{ src = "ext", dst = "/opt/ext" }]\n'
        key, text = "image.layers.1.paths.0.src", 'src = "ext"'
    elif case == "rootfs":
        layers += '\n[[image.layers]]\nname = "ext"\nrootfs = "ext"\n'
        key, text = "image.layers.1.rootfs", 'rootfs = "ext"'
    elif case == "requirements":
        layers += '\n[[image.layers]]\nname = "deps"\nrequirements = "ext/requirements.txt"\n'
        key, text = "image.layers.1.requirements", 'requirements = "ext/'
    elif case == "function":  # src/steps.py becomes a link to a file outside, below
        key, text = "steps.double.function", 'function = "src/steps.py'
    elif case == "component":
        steps_extra = '\n[steps.c]\ncomponent = "ext/c.yaml"\n'
        key, text = "steps.c.component", 'component = "ext/c.yaml"'
    elif case == "templates":
        render = '\n[render]\ntemplates = "ext"\n'
        key, text = "render.templates", 'templates = "ext"'
    elif case == "step-layer":
        steps_extra = '\n[[steps.double.layers]]\nname = "more"\npaths = ["ext"]\n'
        key, text = "steps.double.layers.0.paths.0", 'paths = ["ext"]'
    elif case == "dotdot":
        layers += '\n[[image.layers]]\nname = "ext"\npaths = [{ src = "../outside", dst = "/opt/ext" }]\n'
        key, text = "image.layers.1.paths.0.src", 'src = "../outside"'
    else:  # a symlink in the middle of the path: src/link -> outside, paths = ["src/link/secret.txt"]
        (root / "src" / "link").symlink_to(outside, target_is_directory=True)
        layers = '[[image.layers]]\nname = "app"\npaths = ["src/steps.py", "src/link/secret.txt"]\n'
        key, text = "image.layers.0.paths.1", '"src/link/secret.txt"'
    write(root, layers=layers, steps_extra=steps_extra, render=render)
    if case == "function":
        (root / "src" / "steps.py").unlink()
        (root / "src" / "steps.py").symlink_to(outside / "steps.py")
    code, _, err = run("-C", str(root), "validate")
    assert code == 1, err
    assert err.startswith(f"error: kfp.toml:{line_of(root, text)}: {key}: "), err
    assert "outside the project folder" in err and "not found" not in err
    assert run("-C", str(root), "apply", "-y")[0] == 1
    assert not (root / "build").exists() and not secret_anywhere(root)


def test_a_symlink_that_stays_inside_the_project_is_fine(root):
    (root / "real-data").mkdir()
    (root / "real-data" / "x.txt").write_text("inside\n")
    (root / "data").symlink_to("real-data", target_is_directory=True)
    write(root, layers='[[image.layers]]\nname = "app"\npaths = ["src", "data"]\n')
    code, _, err = run("-C", str(root), "-q", "apply", "-y")
    assert code == 0, err
    assert layout_files(root)["app/data/x.txt"] == b"inside\n"


def test_an_absolute_source_is_the_explicit_way_to_take_files_from_elsewhere(root, outside):
    """Written in kfp.toml for everyone to see (as a debootstrap `rootfs = "/var/cache/..."` is): allowed."""
    write(root, layers='[[image.layers]]\nname = "app"\npaths = ["src"]\n\n'
                       f'[[image.layers]]\nname = "ext"\npaths = [{{ src = "{outside}", dst = "/opt/ext" }}]\n')
    code, _, err = run("-C", str(root), "-q", "apply", "-y")
    assert code == 0, err
    assert layout_files(root)["opt/ext/secret.txt"] == SECRET
