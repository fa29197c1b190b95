"""The project fence (issue 20, items 1-3; fault and security tests): nothing outside the project is read into an
image or written, and outputs and state are never layer inputs, so the plan settles after one apply.

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

from compose_kfp import errors
from tests.fixtures.cli import run

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


# --------------------------------------------------------------------------- 2. the output folder


@pytest.fixture
def applied(root) -> Path:
    code, _, err = run("-C", str(root), "-q", "apply", "-y")
    assert code == 0, err
    return root


def test_render_output_dir_climbing_out_is_refused_and_nothing_is_written(applied, tmp_path):
    target = tmp_path / "escaped" / "x"
    code, out, err = run("-C", str(applied), "render", "--output-dir", "../escaped/x")
    assert code == 1, err
    assert err.startswith("error: kfp.toml (value from command line): render.output_dir: '../escaped/x' resolves "
                          f"to {target}, outside the project folder"), err
    assert not (tmp_path / "escaped").exists() and out == ""


def test_render_output_dir_of_the_issue_climbing_to_etc_is_refused(applied):
    """`render --output-dir ../../../../etc/x`, with as many `..` as it takes to reach /etc from the project."""
    name = "compose-kfp-fence-test-x"
    assert not Path("/etc", name).exists()
    climb = "../" * len(applied.resolve().parts) + f"etc/{name}"
    try:
        code, _, err = run("-C", str(applied), "render", "--output-dir", climb)
        assert code == 1 and "render.output_dir" in err and f"resolves to /etc/{name}" in err, err
        assert not Path("/etc", name).exists()
    finally:
        if Path("/etc", name).is_dir():  # only if the fence failed: leave /etc as it was
            import shutil

            shutil.rmtree(Path("/etc", name))


@pytest.mark.parametrize("value", ["../out", "ABS"])
def test_render_output_dir_in_kfp_toml_never_leaves_the_project(root, tmp_path, value):
    value = str(tmp_path / "out") if value == "ABS" else value
    write(root, render=f'\n[render]\noutput_dir = "{value}"\n')
    code, _, err = run("-C", str(root), "validate")
    assert code == 1
    assert err.startswith(f"error: kfp.toml:{line_of(root, 'output_dir =')}: render.output_dir: "), err
    assert "a value in kfp.toml never points outside the project" in err
    assert run("-C", str(root), "apply", "-y")[0] == 1
    assert not (tmp_path / "out").exists() and not (root / "build").exists()


def test_the_environment_may_name_an_absolute_folder_but_not_climb_out(applied, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSE_KFP_OUTPUT_DIR", "../env-out")
    code, _, err = run("-C", str(applied), "render")
    assert code == 1
    assert "(value from environment variable COMPOSE_KFP_OUTPUT_DIR): render.output_dir: '../env-out'" in err
    assert not (tmp_path / "env-out").exists()
    monkeypatch.setenv("COMPOSE_KFP_OUTPUT_DIR", str(tmp_path / "env-out"))
    code, out, err = run("-C", str(applied), "render")
    assert code == 0, err
    assert (tmp_path / "env-out" / "workflow.yaml").is_file()


def test_an_absolute_output_dir_typed_on_the_command_line_may_be_elsewhere(applied, tmp_path):
    code, out, err = run("-C", str(applied), "render", "--output-dir", str(tmp_path / "typed"))
    assert code == 0, err
    assert (tmp_path / "typed" / "components" / "double.yaml").is_file()


@pytest.mark.parametrize("case", [".", ".compose-kfp", ".compose-kfp/out", "PARENT", "src", "LINK"])
def test_output_dir_that_compose_kfp_may_not_write(applied, tmp_path, outside, case):
    """Not the project folder, not a folder holding kfp.toml, not the state folder, not among the sources,
    not a symlink out of the project."""
    value = {"PARENT": str(tmp_path), "LINK": "gen"}.get(case, case)
    if case == "LINK":
        (applied / "gen").symlink_to(outside, target_is_directory=True)
    expected = {".": "is the project folder itself", ".compose-kfp": "is in the state folder .compose-kfp/",
                ".compose-kfp/out": "is in the state folder", "PARENT": "holds the project folder and its kfp.toml",
                "src": "holds a layer source (image.layers.0.paths.0 = 'src')",
                "LINK": f"'gen' is a symlink to {outside}"}[case]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code, _, err = run("-C", str(applied), "render", "--output-dir", value)
    assert code == 1, err
    assert err.startswith("error: kfp.toml (value from command line): render.output_dir: ") and expected in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not (outside / "components").exists()


def test_apply_with_an_output_dir_out_of_the_project_pushes_nothing(root, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSE_KFP_OUTPUT_DIR", "../pushed")
    code, _, err = run("-C", str(root), "apply", "-y")
    assert code == 1 and "render.output_dir" in err
    assert not (root / "build").exists() and not (root / "kfp.lock").exists() and not (tmp_path / "pushed").exists()


# --------------------------------------------------------------------------- 3. outputs and state never layer inputs


def test_with_paths_dot_the_plan_settles_after_one_apply(root):
    """The issue's case: paths = ["."] took in build/, kfp.lock and .compose-kfp/; plan --exit-code said 2 forever."""
    write(root, layers='[[image.layers]]\nname = "app"\npaths = ["."]\n')
    (root / ".kfpignore").write_text("!.compose-kfp/\n!build/\n")  # cannot bring outputs or state back
    code, _, err = run("-C", str(root), "validate")
    assert code == 0
    line = line_of(root, 'paths = ["."]')
    assert err.startswith(f"warning: kfp.toml:{line}: image.layers.0.paths.0: '.' holds the output folder 'build'")
    assert run("-C", str(root), "-q", "apply", "-y")[0] == 0
    code, out, err = run("-C", str(root), "plan", "--exit-code")
    assert code == 0, out + err
    assert run("-C", str(root), "-q", "apply", "-y")[0] == 0
    assert run("-C", str(root), "plan", "--exit-code")[0] == 0
    files = layout_files(root)
    assert "app/src/steps.py" in files and "app/kfp.toml" in files and "app/.kfpignore" in files
    assert not [f for f in files if f.startswith(("app/build", "app/kfp.lock", "app/.compose-kfp"))], sorted(files)


def test_an_output_dir_inside_a_layer_is_left_out_of_it(root):
    """`render.output_dir` inside a layer's folder: left out (with a warning), so the plan settles."""
    write(root, render='\n[render]\noutput_dir = "src/build"\n')
    code, _, err = run("-C", str(root), "validate")
    assert code == 0 and "warning: kfp.toml:" in err and "image.layers.0.paths.0: 'src' holds the output folder" in err
    assert run("-C", str(root), "-q", "apply", "-y")[0] == 0
    assert (root / "src" / "build" / "workflow.yaml").is_file()
    assert run("-C", str(root), "plan", "--exit-code")[0] == 0
    assert not [f for f in layout_files(root) if f.startswith("app/src/build")]


def test_an_output_dir_holding_a_layer_source_is_refused(root):
    """`render.output_dir = "src"` where src is a layer: rendering would write (and delete) among the sources."""
    write(root, render='\n[render]\noutput_dir = "src"\n')
    code, _, err = run("-C", str(root), "validate")
    assert code == 1
    assert err.startswith(f"error: kfp.toml:{line_of(root, 'output_dir')}: render.output_dir: 'src' holds a layer "
                          "source"), err


def test_a_folder_named_build_below_a_layer_is_the_users_own(root):
    """Exclusions are anchored at the project: src/build/ is not the output folder build/."""
    (root / "src" / "build").mkdir()
    (root / "src" / "build" / "mine.txt").write_text("mine\n")
    assert run("-C", str(root), "-q", "apply", "-y")[0] == 0
    assert layout_files(root)["app/src/build/mine.txt"] == b"mine\n"


def test_layers_that_hold_no_output_are_specified_as_before(root):
    """No exclusion for a layer whose sources hold no output: same spec, plan key and digest as before."""
    from compose_kfp.build.images import desired_images
    from compose_kfp.manifest.load import load_manifest
    from compose_kfp.oci.layer import plan_layer

    loaded = load_manifest(root, env={})
    app = next(ly for ly in desired_images(loaded.manifest, root)[0].layers if ly.name == "app")
    assert app.exclude == ()
    src = str(root / "src")
    assert plan_layer([(src, "/app/src")], context=root).key == \
        plan_layer([(src, "/app/src")], context=root, exclude=[str(root / "build"), str(root / "kfp.lock")]).key


def test_an_oci_destination_inside_a_layer_is_left_out(root):
    write(root, layers='[[image.layers]]\nname = "app"\npaths = ["."]\n', image_extra="",
          render='\n[render]\noutput_dir = "out"\n')
    assert run("-C", str(root), "-q", "apply", "-y")[0] == 0
    assert run("-C", str(root), "plan", "--exit-code")[0] == 0
    assert not [f for f in layout_files(root) if f.startswith(("app/build", "app/out"))]


def test_state_and_lock_constants_agree():
    from compose_kfp.build import destination, lock, statedir
    from compose_kfp.manifest import fences
    from compose_kfp.oci import layer

    assert lock.LOCK_NAME == "kfp.lock" and layer.STATE_DIR == statedir.STATE_DIR == ".compose-kfp"
    assert fences.LAYOUT_PREFIX == destination.LAYOUT_PREFIX
    assert os.path.basename(fences.owned_paths(load_manifest_for_constants(), Path("/p"))[1]) == "kfp.lock"


def load_manifest_for_constants():
    from compose_kfp.schema import Manifest

    return Manifest.model_validate({"project": {"name": "x"}, "image": {"base": "scratch", "repository": "oci:o"}})


def test_the_readme_lists_the_default_ignores():
    from compose_kfp.oci.layer import DEFAULT_IGNORES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    listed = readme.split("the default ignores (", 1)[1].split(";", 1)[0]
    assert [p.strip().strip("`") for p in listed.split(",")] == list(DEFAULT_IGNORES)


def test_a_folder_left_empty_by_exclusions_is_left_out(tmp_path):
    from compose_kfp.oci.layer import plan_layer

    (tmp_path / "a" / "only" / "out").mkdir(parents=True)
    (tmp_path / "a" / "only" / "out" / "x").write_text("x")
    (tmp_path / "a" / "keep").mkdir()
    (tmp_path / "a" / "f").write_text("f")
    plan = plan_layer([(str(tmp_path / "a"), "/app")], context=tmp_path, exclude=[str(tmp_path / "a/only/out")])
    assert [e.path for e in plan.entries] == ["app", "app/f", "app/keep"]
