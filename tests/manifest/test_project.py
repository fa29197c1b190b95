"""load_project: step components and the task graph checked at load time; init's scaffolding."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from compose_kfp.errors import ConfigError, StepError
from compose_kfp.manifest.load import load_manifest
from compose_kfp.manifest.project import Project, load_project
from compose_kfp.manifest.scaffold import SkippedStep, detect_steps, ignore_state_dir, scaffold_manifest
from tests.fixtures.paths import REPO


SOURCE = '''\
from typing import NamedTuple


class Split(NamedTuple):
    train_set: str
    n_rows: int


def load_data(test_size: float) -> Split:
    """Load and split."""
    return Split("", 1)


def train(dataset: str, n_estimators: int) -> str:
    return ""


def untyped(x):
    return x
'''

MANIFEST = '''\
[project]
name = "iris"

[image]
base = "python:3.11-slim"
repository = "oci:build/image"

[steps.load]
function = "src/iris.py:load_data"

[steps.train]
function = "src/iris.py:train"

[pipeline]
params = { n_estimators = 100, test_size = 0.2 }

[pipeline.tasks.load]
step = "load"
args.test_size = { param = "test_size" }

[pipeline.tasks.train]
step = "train"
args.dataset = { task = "load", output = "train_set" }
args.n_estimators = { param = "n_estimators" }
'''


def write(root: Path, manifest: str = MANIFEST) -> Path:
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "iris.py").write_text(SOURCE)
    (root / "kfp.toml").write_text(manifest)
    return root / "kfp.toml"


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_loads_components_and_graph(tmp_path):
    project = load_project(write(tmp_path), env={})
    assert isinstance(project, Project)
    assert list(project.components) == ["load", "train"]
    assert [o.name for o in project.components["load"].outputs] == ["train_set", "n_rows"]
    assert project.components["load"].description == "Load and split."
    assert [t.name for t in project.graph.tasks] == ["load", "train"]
    assert project.graph.name == "iris"
    assert project.root == tmp_path.resolve() and project.path == (tmp_path / "kfp.toml").resolve()
    assert project.manifest.image.layers[0].name == "src"  # default layers


def test_folder_or_file_or_cwd(tmp_path, monkeypatch):
    write(tmp_path)
    assert load_project(tmp_path, env={}).path == load_project(tmp_path / "kfp.toml", env={}).path
    monkeypatch.chdir(tmp_path)
    assert load_project(env={}).path == (tmp_path / "kfp.toml").resolve()


def test_without_pipeline_there_is_no_graph(tmp_path):
    project = load_project(write(tmp_path, MANIFEST.split("[pipeline]")[0]), env={})
    assert project.graph is None and set(project.components) == {"load", "train"}


def test_overrides_reach_the_manifest(tmp_path):
    project = load_project(write(tmp_path), env={"COMPOSE_KFP_REPOSITORY": "oci:env"},
                           overrides={"image.base": "scratch"})
    assert project.manifest.image.repository == "oci:env" and project.manifest.image.base == "scratch"


@pytest.mark.parametrize("old,new,key,at,expect", [
    ('output = "train_set"', 'output = "nope"', "pipeline.tasks.train.args.dataset.output", "args.dataset",
     r"no output 'nope'"),
    ('args.n_estimators = { param = "n_estimators" }', 'args.n_estimators = { param = "test_size" }',
     "pipeline.tasks.train.args.n_estimators", "args.n_estimators", r"type mismatch.*Float.*Integer"),
    ('args.n_estimators = { param = "n_estimators" }', 'args.n_estimators = "many"',
     "pipeline.tasks.train.args.n_estimators", "args.n_estimators", r"type mismatch|Integer"),
    ('args.n_estimators = { param = "n_estimators" }', 'args.n_trees = 3',
     "pipeline.tasks.train.args.n_trees", "args.n_trees", r"no input 'n_trees'"),
    ('args.n_estimators = { param = "n_estimators" }\n', '',
     "pipeline.tasks.train.args", "args.dataset", r"required input 'n_estimators'"),
])
def test_graph_errors_name_file_line_and_key(tmp_path, old, new, key, at, expect):
    text = MANIFEST.replace(old, new)
    assert text != MANIFEST
    with pytest.raises(ConfigError) as info:
        load_project(write(tmp_path, text), env={})
    message = str(info.value)
    assert re.match(rf"\S*kfp\.toml:{line_of(text, at)}: {re.escape(key)}\b", message), message
    assert re.search(expect, message), message


@pytest.mark.parametrize("function,expect", [
    ("src/iris.py:load_dat", r"no top-level function 'load_dat'.*did you mean 'load_data'"),
    ("src/iris.py:untyped", r"parameter 'x'.*annotation"),
])
def test_step_errors_name_file_line_and_key(tmp_path, function, expect):
    text = MANIFEST.replace("src/iris.py:load_data", function)
    with pytest.raises(StepError) as info:
        load_project(write(tmp_path, text), env={})
    message = str(info.value)
    assert re.match(rf"\S*kfp\.toml:{line_of(text, function)}: steps\.load\.function: ", message), message
    assert re.search(expect, message), message


def test_manifest_errors_come_first(tmp_path):
    with pytest.raises(ConfigError, match=r"kfp.toml:\d+: pipeline.tasks.train.step: no step called 'trainer'"):
        load_project(write(tmp_path, MANIFEST.replace('step = "train"', 'step = "trainer"')), env={})


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("**/kfp.toml")),
                         ids=lambda p: str(p.parent.relative_to(REPO)))
def test_examples_load_as_projects(example):
    project = load_project(example, env={})
    assert project.graph is None or len(project.graph.tasks) >= 1


# --------------------------------------------------------------------------- init scaffolding


def test_detect_steps(tmp_path):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "iris.py").write_text(SOURCE + "\ndef _private(a: int) -> int:\n    return a\n"
                                              "\ndef star(*a: int) -> int:\n    return 0\n"
                                              "\ndef noreturn(a: int):\n    return a\n")
    (tmp_path / "src" / "pkg" / "other.py").write_text("def train(n: int) -> int:\n    return n\n")
    (tmp_path / "src" / "test_iris.py").write_text("def test_x(a: int) -> None:\n    pass\n")
    (tmp_path / "src" / "broken.py").write_text("def (:\n")
    steps = detect_steps(tmp_path)
    assert [(s.name, s.file, s.function) for s in steps] == [
        ("load_data", "src/iris.py", "load_data"),
        ("train", "src/iris.py", "train"),
        ("other_train", "src/pkg/other.py", "train"),
    ]
    assert detect_steps(tmp_path / "nothing") == []
    skipped: list[SkippedStep] = []
    detect_steps(tmp_path, skipped=skipped)
    assert [str(s) for s in skipped] == [
        "src/broken.py: it does not parse (line 1: invalid syntax)",
        "src/iris.py:untyped: parameter(s) x have no type annotation",
        "src/iris.py:star: it takes *args/**kwargs; a step takes named, typed parameters only",
        "src/iris.py:noreturn: it has no return annotation (use `-> None` for no output)",
    ]


def test_detect_steps_makes_valid_step_names_or_skips(tmp_path):
    (tmp_path / "src" / "my dir").mkdir(parents=True)
    (tmp_path / "src" / "a.py").write_text("def f(x: int) -> int:\n    return x\n\n"
                                            "def \u00fcn\u00ef(x: int) -> int:\n    return x\n")
    (tmp_path / "src" / "my dir" / "sp ace.py").write_text("def f(x: str) -> str:\n    return x\n")
    (tmp_path / "src" / "sp_ace.py").write_text("def f(x: str) -> str:\n    return x\n")
    (tmp_path / "src" / "\u00e9.py").write_text("def f(x: str) -> str:\n    return x\n")
    skipped: list[SkippedStep] = []
    steps = detect_steps(tmp_path, skipped=skipped)
    assert [(s.name, s.file) for s in steps] == [
        ("f", "src/a.py"), ("sp_ace_f", "src/my dir/sp ace.py"), ("sp_ace_f_2", "src/sp_ace.py"),
        ("f_2", "src/\u00e9.py")]
    assert [(s.file, s.function) for s in skipped] == [("src/a.py", "\u00fcn\u00ef")]
    assert "ASCII" in skipped[0].reason
    text = scaffold_manifest(tmp_path)
    assert "#   src/a.py:\u00fcn\u00ef: " in text  # listed in the written kfp.toml
    (tmp_path / "kfp.toml").write_text(text)
    project = load_project(tmp_path, env={})
    assert list(project.components) == ["f", "sp_ace_f", "sp_ace_f_2", "f_2"]


def test_scaffold_is_valid_and_complete(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "requirements.txt").write_text("pandas\n")
    (tmp_path / "src" / "iris.py").write_text(SOURCE)
    text = scaffold_manifest(tmp_path, base="python:3.12-slim")
    data = tomllib.loads(text)
    assert data["image"]["base"] == "python:3.12-slim" and data["image"]["repository"] == "oci:build/image"
    assert [layer["name"] for layer in data["image"]["layers"]] == ["deps", "data", "src"]
    assert data["steps"] == {"load_data": {"function": "src/iris.py:load_data"},
                             "train": {"function": "src/iris.py:train"}}
    (tmp_path / "kfp.toml").write_text(text)
    loaded = load_manifest(tmp_path, env={})
    assert not loaded.layers_defaulted
    assert load_project(tmp_path, env={}).graph is None


def test_scaffold_name_from_folder(tmp_path):
    root = tmp_path / "My Project_1"
    root.mkdir()
    data = tomllib.loads(scaffold_manifest(root))
    assert data["project"]["name"] == "my-project-1"
    assert "layers" not in data["image"] and "steps" not in data
    assert tomllib.loads(scaffold_manifest(root, name='we"ird', repository="ghcr.io/a/b"))["project"]["name"] == 'we"ird'


@pytest.mark.parametrize("existing", [".compose-kfp", "/.compose-kfp/", "  **/.compose-kfp/  "])
def test_ignore_state_dir_recognizes_an_existing_line(tmp_path, existing):
    (tmp_path / ".gitignore").write_text(f"build/\n{existing}\n")
    before = (tmp_path / ".gitignore").read_bytes()
    assert ignore_state_dir(tmp_path) == "present"
    assert (tmp_path / ".gitignore").read_bytes() == before


def test_ignore_state_dir_creates_or_appends(tmp_path):
    assert ignore_state_dir(tmp_path) == "created"
    assert ".compose-kfp/" in (tmp_path / ".gitignore").read_text().splitlines()
    assert ignore_state_dir(tmp_path) == "present"
    other = tmp_path / "other"
    other.mkdir()
    (other / ".gitignore").write_text("# .compose-kfp/\ndist")  # a comment does not count; no newline at the end
    assert ignore_state_dir(other) == "added"
    lines = (other / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["# .compose-kfp/", "dist"]
    assert lines[-1] == ".compose-kfp/" and lines.count(".compose-kfp/") == 1
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / ".gitignore").mkdir()
    with pytest.raises(ConfigError, match=r"dir/\.gitignore"):
        ignore_state_dir(tmp_path / "dir")


# --------------------------------------------------------------------------- step files in the image

LAYERS_SRC = '[[image.layers]]\nname = "code"\npaths = ["src"]\n\n'


def _with_layers(layers: str, workdir: str = "") -> str:
    image = '[image]\nbase = "python:3.11-slim"\nrepository = "oci:build/image"\n' + workdir
    return MANIFEST.split("[pipeline]")[0].replace(
        '[image]\nbase = "python:3.11-slim"\nrepository = "oci:build/image"\n', image + "\n" + layers)


@pytest.mark.parametrize("layers", [
    "",  # default layers (src/)
    LAYERS_SRC,
    '[[image.layers]]\nname = "code"\npaths = [{ src = "src/iris.py", dst = "/app/src/iris.py" }]\n\n',
    '[[image.layers]]\nname = "code"\npaths = [{ src = "src", dst = "/app/src/" }]\n\n',
    '[[image.layers]]\nname = "code"\npaths = [{ src = ".", dst = "/app" }]\n\n',
])
def test_step_files_in_a_layer_load(tmp_path, layers):
    assert set(load_project(write(tmp_path, _with_layers(layers)), env={}).components) == {"load", "train"}


def test_an_ignored_include_named_on_purpose_keeps_the_step_file(tmp_path):
    # plan_layer matches an include that is itself ignored relative to the include (it was named on purpose)
    (tmp_path / ".kfpignore").write_text("src/\n")
    assert load_project(write(tmp_path, _with_layers(LAYERS_SRC)), env={}).components


def test_step_file_in_the_steps_own_layer_loads(tmp_path):
    manifest = _with_layers('[[image.layers]]\nname = "data"\npaths = ["data"]\n\n').replace(
        '[steps.train]\n', '[steps.train]\nlayers = [{ name = "code", paths = ["src"] }]\n')
    (tmp_path / "data").mkdir()
    with pytest.raises(ConfigError, match=r"steps\.load\.function: src/iris\.py is not in the main image"):
        load_project(write(tmp_path, manifest), env={})
    manifest = manifest.replace('[steps.load]\nfunction = "src/iris.py:load_data"\n\n', "")
    assert set(load_project(write(tmp_path, manifest), env={}).components) == {"train"}


@pytest.mark.parametrize("layers,workdir,ignore,expect", [
    ('[[image.layers]]\nname = "data"\npaths = ["data"]\n\n', "", None,
     r"no layer puts a file there\. Layers considered: image\.layers\.0 \(data\): data -> /app/data"),
    # the folder goes elsewhere than workdir/src
    ('[[image.layers]]\nname = "code"\npaths = [{ src = "src", dst = "/opt/code" }]\n\n', "", None,
     r"at /app/src/iris\.py.*code\): src -> /opt/code"),
    # the workdir moved: src lands at /srv/src, which is right; a mapping to /app/src is not
    ('[[image.layers]]\nname = "code"\npaths = [{ src = "src", dst = "/app/src" }]\n\n', 'workdir = "/srv"\n',
     None, r"at /srv/src/iris\.py"),
    (LAYERS_SRC, "", "src/iris.py\n", r"ignore patterns .* leave out src/iris\.py"),
    (LAYERS_SRC, "", "src/*.py\n", r"leave out src/iris\.py"),
    (LAYERS_SRC.replace('paths = ["src"]', 'paths = ["src"]\nignore = ["*.py"]'), "", None,
     r"leave out src/iris\.py"),
])
def test_step_file_outside_the_image_is_a_config_error(tmp_path, layers, workdir, ignore, expect):
    (tmp_path / "data").mkdir()
    if ignore is not None:
        (tmp_path / ".kfpignore").write_text(ignore)
    text = _with_layers(layers, workdir)
    with pytest.raises(ConfigError, match=expect) as info:
        load_project(write(tmp_path, text), env={})
    message = str(info.value)
    line = line_of(text, "src/iris.py:load_data")
    assert f"kfp.toml:{line}: steps.load.function: " in message
    assert "src/iris.py" in message
