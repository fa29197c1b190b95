"""kfp.toml loading: malformed manifests, secrets, overrides, default layers, the JSON Schema, the README reference."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from compose_kfp import cli
from compose_kfp.errors import ConfigError
from compose_kfp.manifest import docs
from compose_kfp.manifest.checks import find_cycles
from compose_kfp.manifest.docs import json_schema
from compose_kfp.manifest.load import ENV_VARS, load_manifest
from compose_kfp.schema import (
    LayerConfig,
    Manifest,
    ParamRef,
    TaskOutputRef,
    has_userinfo,
    looks_secret,
)

REPO = Path(__file__).resolve().parents[1]
CANARY = "canary-5ecret-Do-Not-Echo-7f3a"

BASE = """\
[project]
name = "iris"

[image]
base = "python:3.11-slim"
repository = "ghcr.io/acme/iris"
platforms = ["linux/amd64"]
tags = ["latest"]
env = { PYTHONUNBUFFERED = "1" }

[image.auth]
config = "~/.docker/config.json"

[[image.layers]]
name = "deps"
requirements = "requirements.txt"

[[image.layers]]
name = "data"
paths = ["data"]

[[image.layers]]
name = "src"
paths = ["src"]

[steps.load]
function = "src/iris.py:load_data"

[steps.train]
function = "src/iris.py:train"
resources = { cpu = "1", memory = "2Gi" }
retries = 2

[pipeline]
name = "iris-training"
params = { n_estimators = 100, test_size = 0.2 }

[pipeline.tasks.load]
step = "load"
args.test_size = { param = "test_size" }

[pipeline.tasks.train]
step = "train"
args.dataset = { task = "load", output = "train_set" }
args.n_estimators = { param = "n_estimators" }
"""


def make_project(root: Path, text: str | bytes = BASE) -> Path:
    """A project folder with the files BASE names; returns the kfp.toml path."""
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "src" / "iris.py").write_text("def load_data(test_size: float) -> int:\n    return 1\n\n"
                                          "def train(dataset: str, n_estimators: int) -> str:\n    return ''\n")
    (root / "data" / "iris.csv").write_text("a,b\n1,2\n")
    (root / "requirements.txt").write_text("pandas==2.2.2\n")
    path = root / "kfp.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path)


@dataclass(frozen=True)
class Case:
    """A malformed manifest: BASE with ``old`` replaced by ``new`` (or ``new`` appended when ``old`` is empty).

    ``key``: the key path the message must name (``None`` for a TOML syntax error);
    ``at``: text of the line the message must point at (first line of the edited file containing it);
    ``expect``: a regular expression the message must match (what was expected).
    """

    id: str
    old: str
    new: str
    key: str | None
    expect: str
    at: str | None = None

    def text(self) -> str:
        if not self.old:
            return BASE + self.new
        assert self.old in BASE, self.old
        return BASE.replace(self.old, self.new, 1)


CASES = [
    # --- TOML syntax
    Case("unquoted-string", 'name = "iris"', "name = iris", None, r"invalid TOML: invalid value", "name = iris"),
    Case("unterminated-string", 'base = "python:3.11-slim"', 'base = "python:3.11-slim', None,
         r"invalid TOML", 'base = "python'),
    Case("missing-equals", "retries = 2", "retries 2", None, r"invalid TOML: expected '='", "retries 2"),
    Case("unclosed-header", "[steps.load]", "[steps.load", None, r"invalid TOML", "[steps.load"),
    Case("duplicate-key", "retries = 2", "retries = 2\nretries = 3", "steps.train.retries",
         r"already defined on line \d+", "retries = 3"),
    Case("duplicate-table", "", '\n[steps.load]\nfunction = "src/iris.py:train"\n', "steps.load",
         r"already defined", None),
    Case("double-comma", 'platforms = ["linux/amd64"]', 'platforms = ["linux/amd64",,]', None,
         r"invalid TOML", "platforms ="),
    Case("bad-escape", 'name = "iris"', 'name = "ir\\qis"', None, r"invalid TOML", "name ="),
    Case("multiline-inline-table", 'resources = { cpu = "1", memory = "2Gi" }',
         'resources = { cpu = "1",\n  memory = "2Gi" }', None, r"invalid TOML", None),
    # --- wrong types and values
    Case("retries-string", "retries = 2", 'retries = "two"', "steps.train.retries",
         r"expected an integer, got the string 'two'", "retries ="),
    Case("retries-negative", "retries = 2", "retries = -1", "steps.train.retries",
         r"greater than or equal to 0", "retries ="),
    Case("timeout-float", "retries = 2", "timeout = 1.5", "steps.train.timeout", r"expected an integer", "timeout ="),
    Case("platforms-string", 'platforms = ["linux/amd64"]', 'platforms = "linux/amd64"', "image.platforms",
         r"expected an array", "platforms ="),
    Case("tag-number", 'tags = ["latest"]', "tags = [1]", "image.tags.0", r"expected a string", "tags ="),
    Case("env-number", 'env = { PYTHONUNBUFFERED = "1" }', "env = { PYTHONUNBUFFERED = 1 }",
         "image.env.PYTHONUNBUFFERED", r"expected a string", "env ="),
    Case("project-name-int", 'name = "iris"', "name = 5", "project.name", r"expected a string", "name = 5"),
    Case("compression-unknown", 'tags = ["latest"]', 'compression = "lz4"', "image.compression",
         r"'gzip' or 'zstd'", "compression ="),
    Case("param-date", "test_size = 0.2", "test_size = 1979-05-27", "pipeline.params.test_size",
         r"expected a boolean, an integer, a number, a string, an array or a table, got a date", "params ="),
    Case("arg-unknown-table", 'args.test_size = { param = "test_size" }', "args.test_size = { foo = 1 }",
         "pipeline.tasks.load.args.test_size", r"\{ param = \"\.\.\.\" \}", "args.test_size"),
    Case("arg-missing-output", '{ task = "load", output = "train_set" }', '{ task = "load" }',
         "pipeline.tasks.train.args.dataset.output", r"required key is missing: Name of an output", "args.dataset"),
    Case("layer-no-source", 'name = "src"\npaths = ["src"]', 'name = "src"', "image.layers.2",
         r"exactly one of `paths`, `requirements` or `rootfs`", None),
    Case("layer-two-sources", 'name = "data"\npaths = ["data"]', 'name = "data"\npaths = ["data"]\nrootfs = "data"',
         "image.layers.1", r"got paths, rootfs", None),
    Case("layer-duplicate-name", 'name = "src"', 'name = "data"', "image.layers", r"two layers are called 'data'",
         "[[image.layers]]"),
    Case("step-function-and-component", 'function = "src/iris.py:load_data"',
         'function = "src/iris.py:load_data"\ncomponent = "c.yaml"', "steps.load",
         r"exactly one of `function`, `notebook` or `component`", "[steps.load]"),
    Case("step-neither", "", "\n[steps.empty]\nretries = 1\n", "steps.empty",
         r"exactly one of `function`, `notebook` or `component`", "[steps.empty]"),
    Case("function-no-colon", '"src/iris.py:load_data"', '"src/iris.py"', "steps.load.function",
         r"expected `path/to/file.py:function_name`", 'function = "src/iris.py"'),
    Case("cpu-quantity", 'cpu = "1"', 'cpu = "lots"', "steps.train.resources.cpu", r"CPU quantity", "resources ="),
    Case("workdir-relative", 'tags = ["latest"]', 'workdir = "app"', "image.workdir", r"absolute path", "workdir ="),
    Case("dst-relative", 'paths = ["data"]', 'paths = [{ src = "data", dst = "mnt/data" }]',
         "image.layers.1.paths.0.dst", r"absolute path inside the image", "paths = [{"),
    Case("path-entry-number", 'paths = ["data"]', "paths = [3]", "image.layers.1.paths.0",
         r"expected a path string or a table", "paths = [3]"),
    Case("missing-project", '[project]\nname = "iris"\n', "", "project", r"required key is missing", None),
    Case("missing-repository", 'repository = "ghcr.io/acme/iris"\n', "", "image.repository",
         r"required key is missing: Destination repository", "[image]"),
    Case("step-name-invalid", "[steps.train]", '[steps."my step"]', 'steps."my step"',
         r"step name 'my step'", '[steps."my step"]'),
    Case("step-name-cyrillic", "[steps.train]", '[steps."шаг"]', 'steps."шаг"',
         r"step name 'шаг': use ASCII letters, digits, `_` and `-`", '[steps."шаг"]'),
    Case("task-name-cyrillic", "[pipeline.tasks.train]", '[pipeline.tasks."сумма"]', 'pipeline.tasks."сумма"',
         r"task name 'сумма' needs at least one ASCII letter or digit", '[pipeline.tasks."сумма"]'),
    # --- unknown keys
    Case("unknown-repository-typo", "repository =", "repositry =", "image.repositry",
         r"unknown key; did you mean 'repository'\?", "repositry ="),
    Case("unknown-top-table", "", "\n[imgae]\nbase = \"x\"\n", "imgae", r"did you mean 'image'\?", "[imgae]"),
    Case("unknown-step-key", "retries = 2", "retry = 2", "steps.train.retry", r"did you mean 'retries'\?", "retry ="),
    Case("unknown-task-key", 'step = "train"', 'stepp = "train"', "pipeline.tasks.train.stepp",
         r"did you mean 'step'\?", "stepp ="),
    Case("unknown-render-key", "", '\n[render]\noutputdir = "out"\n', "render.outputdir",
         r"did you mean 'output_dir'\?", "outputdir ="),
    Case("unknown-layer-key", 'name = "deps"', 'name = "deps"\nignores = ["*.pyc"]', "image.layers.0.ignores",
         r"did you mean 'ignore'\?", "ignores ="),
    # --- references and the task graph
    Case("missing-step", 'step = "train"', 'step = "trian"', "pipeline.tasks.train.step",
         r"no step called 'trian'; did you mean 'train'\?", 'step = "trian"'),
    Case("missing-param", '{ param = "n_estimators" }', '{ param = "n_trees" }',
         "pipeline.tasks.train.args.n_estimators.param", r"no pipeline parameter called 'n_trees'",
         "args.n_estimators"),
    Case("missing-task", '{ task = "load", output', '{ task = "lod", output', "pipeline.tasks.train.args.dataset.task",
         r"no task called 'lod'; did you mean 'load'\?", "args.dataset"),
    Case("missing-after", 'step = "train"', 'step = "train"\nafter = ["prepare"]', "pipeline.tasks.train.after.0",
         r"no task called 'prepare'", "after ="),
    Case("self-after", 'step = "train"', 'step = "train"\nafter = ["train"]', "pipeline.tasks.train.after.0",
         r"cannot run after itself", "after ="),
    Case("cycle", 'args.test_size = { param = "test_size" }',
         'args.test_size = { param = "test_size" }\nafter = ["train"]', "pipeline.tasks.load",
         r"cycle: load -> train -> load", "[pipeline.tasks.load]"),
    Case("cycle-three", "", '\n[pipeline.tasks.a]\nstep = "load"\nafter = ["c"]\n[pipeline.tasks.b]\nstep = "load"\n'
         'after = ["a"]\n[pipeline.tasks.c]\nstep = "load"\nafter = ["b"]\n', "pipeline.tasks.a",
         r"cycle: a -> c -> b -> a", "[pipeline.tasks.a]"),
    Case("missing-function-file", '"src/iris.py:load_data"', '"src/irs.py:load_data"', "steps.load.function",
         r"file 'src/irs.py' not found .*did you mean 'iris.py'\?", 'function = "src/irs.py'),
    Case("missing-layer-path", 'paths = ["data"]', 'paths = ["dta"]', "image.layers.1.paths.0",
         r"'dta' not found .*did you mean 'data'\?", 'paths = ["dta"]'),
    Case("missing-requirements", 'requirements = "requirements.txt"', 'requirements = "requirement.txt"',
         "image.layers.0.requirements", r"file 'requirement.txt' not found", "requirements ="),
    Case("missing-component", 'function = "src/iris.py:load_data"', 'component = "components/load.yaml"',
         "steps.load.component", r"file 'components/load.yaml' not found", "component ="),
    # --- image references
    Case("base-uppercase", '"python:3.11-slim"', '"Python:3.11-slim"', "image.base", r"must be lowercase", "base ="),
    Case("base-bad-tag", '"python:3.11-slim"', '"python:-slim"', "image.base", r"tag '-slim'", "base ="),
    Case("base-bad-digest", '"python:3.11-slim"', '"python@sha256:1234"', "image.base",
         r"64 lowercase hex digits", "base ="),
    Case("base-empty-oci", '"python:3.11-slim"', '"oci:"', "image.base", r"needs a path", "base ="),
    Case("repository-with-tag", '"ghcr.io/acme/iris"', '"ghcr.io/acme/iris:v1"', "image.repository",
         r"put 'v1' in `image.tags`", "repository ="),
    Case("repository-with-digest", '"ghcr.io/acme/iris"', '"ghcr.io/acme/iris@sha256:' + "a" * 64 + '"',
         "image.repository", r"has a digest", "repository ="),
    Case("repository-bad-port", '"ghcr.io/acme/iris"', '"localhost:99999/iris"', "image.repository",
         r"1 to 65535", "repository ="),
    Case("repository-space", '"ghcr.io/acme/iris"', '"ghcr.io/acme/my iris"', "image.repository",
         r"cannot contain spaces", "repository ="),
    Case("platform-no-os", '["linux/amd64"]', '["amd64"]', "image.platforms", r"`os/arch\[/variant\]`", "platforms ="),
    Case("tag-leading-dash", '["latest"]', '["-latest"]', "image.tags", r"not a valid tag", "tags ="),
]

SECRET_CASES = [
    Case("auth-password", 'config = "~/.docker/config.json"', f'password = "{CANARY}"', "image.auth.password",
         r"literal password is refused.*password_env", "password ="),
    Case("auth-token", 'config = "~/.docker/config.json"', f'token = "{CANARY}"', "image.auth.token",
         r"literal token is refused", "token ="),
    Case("auth-auth", 'config = "~/.docker/config.json"', f'auth = "{CANARY}"', "image.auth.auth",
         r"literal auth is refused", "auth ="),
    Case("auth-identitytoken", 'config = "~/.docker/config.json"', f'identitytoken = "{CANARY}"',
         "image.auth.identitytoken", r"is refused", "identitytoken ="),
    Case("auth-username", 'config = "~/.docker/config.json"', f'username = "{CANARY}"', "image.auth.username",
         r"username_env", "username ="),
    Case("password-env-is-a-value", 'config = "~/.docker/config.json"', f'password_env = "{CANARY}"',
         "image.auth.password_env", r"NAME of an environment variable", "password_env ="),
    Case("repository-userinfo", '"ghcr.io/acme/iris"', f'"bob:{CANARY}@ghcr.io/acme/iris"', "image.repository",
         r"contains credentials", "repository ="),
    Case("base-userinfo", '"python:3.11-slim"', f'"bob:{CANARY}@registry.example.com/python:3.11"', "image.base",
         r"contains credentials", "base ="),
    Case("index-url-userinfo", 'tags = ["latest"]', f'index_url = "https://bob:{CANARY}@pypi.example.com/simple"',
         "image.index_url", r"contains credentials", "index_url ="),
    Case("image-env-secret", 'env = { PYTHONUNBUFFERED = "1" }', f'env = {{ AWS_SECRET_ACCESS_KEY = "{CANARY}" }}',
         "image.env.AWS_SECRET_ACCESS_KEY", r"looks like a secret", "env ="),
    Case("step-env-secret", "retries = 2", f'env = {{ HF_TOKEN = "{CANARY}" }}', "steps.train.env.HF_TOKEN",
         r"looks like a secret", "HF_TOKEN"),
    Case("secret-unknown-key", 'tags = ["latest"]', f'api_key = "{CANARY}"', "image.api_key",
         r"its value is not shown", "api_key ="),
    Case("secret-syntax-error", 'config = "~/.docker/config.json"', f'password = "{CANARY}', None,
         r"invalid TOML", None),
]

ALL = CASES + SECRET_CASES


def line_of(text: str, needle: str) -> int:
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in the edited manifest")


def test_there_are_at_least_40_malformed_manifests():
    assert len(ALL) >= 40
    assert len({c.id for c in ALL}) == len(ALL)


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_malformed_manifest_is_one_clear_error(case: Case, tmp_path):
    text = case.text()
    path = make_project(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_manifest(path, env={})
    message = str(info.value)
    first = message.splitlines()[0]
    assert "kfp.toml" in first
    if case.key is not None:
        assert f": {case.key}: " in first, first
    if case.at is not None:
        assert f"kfp.toml:{line_of(text, case.at)}" in first, first
    assert re.search(case.expect, first), first
    assert CANARY not in message
    assert "Traceback" not in message and "pydantic" not in message.lower()


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_cli_validate_exits_1_without_traceback(case: Case, tmp_path, capsys):
    path = make_project(tmp_path, case.text())
    with pytest.raises(SystemExit) as info:
        cli.main(["-C", str(path.parent), "validate"])
    out, err = capsys.readouterr()
    assert info.value.code == 1
    assert err.startswith("error: ") and "kfp.toml" in err
    if case.key is not None:
        assert case.key in err
    assert "Traceback" not in err
    assert CANARY not in out + err


@pytest.mark.parametrize("case", SECRET_CASES, ids=lambda c: c.id)
def test_secret_never_echoed_even_with_debug(case: Case, tmp_path, capsys):
    path = make_project(tmp_path, case.text())
    with pytest.raises(SystemExit):
        cli.main(["--debug", "-f", str(path), "validate"])
    out, err = capsys.readouterr()
    assert "Traceback" in err  # --debug does show where the error came from...
    assert CANARY not in out + err  # ...but never the secret


@pytest.mark.parametrize("old, new, message", [
    ("[pipeline.tasks.train]", '[pipeline.tasks."сумма"]',
     'pipeline.tasks."сумма": task name' " 'сумма' needs at least one ASCII letter or digit: the task's Kubernetes "
     "name keeps only `a-z`, `0-9` and `-`."),
    ("[steps.train]", '[steps."шаг"]',
     'steps."шаг": step name' " 'шаг': use ASCII letters, digits, `_` and `-`, starting with a letter or digit."),
], ids=["task", "step"])
def test_non_ascii_name_says_ascii_with_its_line(old, new, message, tmp_path, capsys, monkeypatch):
    text = BASE.replace(old, new, 1)
    path = make_project(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["validate"])
    _, err = capsys.readouterr()
    assert info.value.code == 1
    assert err == f"error: kfp.toml:{line_of(text, new)}: {message}\n"
    assert path.read_text(encoding="utf-8") == text


def test_not_utf8(tmp_path):
    path = make_project(tmp_path, BASE.encode().replace(b'"iris"', b'"ir\xffis"', 1))
    with pytest.raises(ConfigError, match=r"kfp.toml: not UTF-8 text"):
        load_manifest(path, env={})


def test_several_problems_are_listed_first_in_file_first(tmp_path):
    text = BASE.replace("retries = 2", 'retries = "x"').replace('tags = ["latest"]', "tags = [1]")
    with pytest.raises(ConfigError) as info:
        load_manifest(make_project(tmp_path, text), env={})
    lines = str(info.value).splitlines()
    assert "image.tags.0" in lines[0]
    assert lines[1] == "1 more problem(s):"
    assert "steps.train.retries" in lines[2]


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file. Run `compose-kfp init`"):
        load_manifest(tmp_path, env={})


def test_line_numbers_skip_multiline_strings_and_arrays(tmp_path):
    text = BASE.replace("[steps.load]", '[steps.load]\ndescription = """\n[pipeline]\nretries = 5\n"""\n'
                        ).replace('tags = ["latest"]', 'tags = [\n  "latest",\n  "v1",\n]\nworkdir = "app"')
    with pytest.raises(ConfigError) as info:
        load_manifest(make_project(tmp_path, text), env={})
    assert f"kfp.toml:{line_of(text, 'workdir')}: image.workdir" in str(info.value)


# --------------------------------------------------------------------------- valid manifests


def test_base_manifest_loads(project):
    loaded = load_manifest(project, env={})
    m = loaded.manifest
    assert loaded.path == project.resolve() and loaded.root == project.parent.resolve()
    assert [layer.name for layer in m.image.layers] == ["deps", "data", "src"]
    assert not loaded.layers_defaulted
    assert m.pipeline.tasks["train"].args["dataset"] == TaskOutputRef(task="load", output="train_set")
    assert m.pipeline.tasks["load"].args["test_size"] == ParamRef(param="test_size")
    assert m.pipeline.tasks["train"].dependencies() == ["load"]
    assert m.steps["train"].function_file == "src/iris.py" and m.steps["train"].function_name == "train"
    assert m.pipeline_name == "iris-training"
    assert loaded.line_of("pipeline.tasks.train.args.dataset.output") == line_of(BASE, "args.dataset")
    assert loaded.line_of("image.layers.2.paths") == line_of(BASE, 'paths = ["src"]')
    assert loaded.where("steps.train.retries") == f"{loaded.display_path}:{line_of(BASE, 'retries')}"


def test_literal_arguments_and_tables(tmp_path):
    text = BASE.replace('args.test_size = { param = "test_size" }',
                        'args.test_size = 0.25\nargs.flags = [1, 2]\nargs.config = { value = { depth = 3 } }\n'
                        'args.name = "x"\nargs.shuffle = true')
    args = load_manifest(make_project(tmp_path, text), env={}).manifest.pipeline.tasks["load"].args
    assert args["test_size"] == 0.25 and args["flags"] == [1, 2] and args["name"] == "x"
    assert args["shuffle"] is True and args["config"].value == {"depth": 3}


def test_models_are_frozen(project):
    m = load_manifest(project, env={}).manifest
    with pytest.raises(Exception):
        m.image.repository = "x"  # type: ignore[misc]


@pytest.mark.parametrize("files,expected", [
    ((), []),
    (("src/",), ["src"]),
    (("requirements.txt", "data/", "src/"), ["deps", "data", "src"]),
    (("data/", "requirements.txt"), ["deps", "data"]),
])
def test_default_layers(tmp_path, files, expected):
    for f in files:
        (tmp_path / f.rstrip("/")).mkdir() if f.endswith("/") else (tmp_path / f).write_text("x\n")
    (tmp_path / "kfp.toml").write_text('[project]\nname = "p"\n[image]\nbase = "scratch"\nrepository = "oci:out"\n')
    loaded = load_manifest(tmp_path, env={})
    assert loaded.layers_defaulted
    assert [layer.name for layer in loaded.manifest.image.layers] == expected
    if "deps" in expected:
        assert loaded.manifest.image.layers[0] == LayerConfig(name="deps", requirements="requirements.txt")


def test_explicit_empty_layers_are_kept(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "kfp.toml").write_text(
        '[project]\nname = "p"\n[image]\nbase = "scratch"\nrepository = "oci:out"\nlayers = []\n')
    loaded = load_manifest(tmp_path, env={})
    assert loaded.manifest.image.layers == [] and not loaded.layers_defaulted


@pytest.mark.parametrize("base", ["python:3.11-slim", "scratch", "oci:build/base:v1", "dir:build/base",
                                  "docker-archive:base.tar", "localhost:5000/debian-python:bookworm",
                                  "docker://ghcr.io/acme/base@sha256:" + "0" * 64, "[::1]:5000/x/y:1"])
def test_accepted_base_references(tmp_path, base):
    text = BASE.replace('"python:3.11-slim"', json.dumps(base))
    assert load_manifest(make_project(tmp_path, text), env={}).manifest.image.base == base


# --------------------------------------------------------------------------- precedence


def test_environment_overrides_file(project):
    env = {"COMPOSE_KFP_REPOSITORY": "oci:build/out", "COMPOSE_KFP_PLATFORMS": "linux/amd64, linux/arm64",
           "COMPOSE_KFP_TAGS": "a,b,", "COMPOSE_KFP_INSECURE": "yes", "COMPOSE_KFP_OUTPUT_DIR": "out",
           "COMPOSE_KFP_BASE": "", "COMPOSE_KFP_COMPRESSION": "zstd"}
    loaded = load_manifest(project, env=env)
    image = loaded.manifest.image
    assert image.repository == "oci:build/out"
    assert image.platforms == ["linux/amd64", "linux/arm64"]
    assert image.tags == ["a", "b"] and image.insecure is True and image.compression == "zstd"
    assert image.base == "python:3.11-slim"  # empty means unset
    assert loaded.manifest.render.output_dir == "out" and loaded.output_dir == (project.parent / "out").resolve()
    assert loaded.sources["image.repository"] == "environment variable COMPOSE_KFP_REPOSITORY"
    assert loaded.line_of("image.repository") is None


def test_command_line_overrides_environment(project):
    loaded = load_manifest(project, env={"COMPOSE_KFP_REPOSITORY": "oci:from-env"},
                           overrides={"image.repository": "oci:from-cli", "image.tags": None})
    assert loaded.manifest.image.repository == "oci:from-cli"
    assert loaded.manifest.image.tags == ["latest"]
    assert loaded.sources == {"image.repository": "command line"}


def test_os_environ_is_the_default(project, monkeypatch):
    monkeypatch.setenv("COMPOSE_KFP_BASE", "python:3.12-slim")
    assert load_manifest(project).manifest.image.base == "python:3.12-slim"


def test_invalid_environment_value_names_the_variable(project):
    with pytest.raises(ConfigError) as info:
        load_manifest(project, env={"COMPOSE_KFP_REPOSITORY": "Ghcr.io/Acme/Iris:v1"})
    assert "value from environment variable COMPOSE_KFP_REPOSITORY" in str(info.value)
    assert "image.repository" in str(info.value)
    with pytest.raises(ConfigError, match="COMPOSE_KFP_INSECURE: expected 1/true/yes or 0/false/no"):
        load_manifest(project, env={"COMPOSE_KFP_INSECURE": "maybe"})


def test_environment_credentials_in_reference_not_echoed(project):
    with pytest.raises(ConfigError) as info:
        load_manifest(project, env={"COMPOSE_KFP_REPOSITORY": f"bob:{CANARY}@ghcr.io/acme/iris"})
    assert CANARY not in str(info.value) and "contains credentials" in str(info.value)


def test_unknown_override_key(project):
    with pytest.raises(ConfigError, match=r"command line: unknown key 'image.repositry'; did you mean 'repository'"):
        load_manifest(project, env={}, overrides={"image.repositry": "x"})


def test_override_creates_missing_table(project):
    loaded = load_manifest(project, env={}, overrides={"render.templates": "src"})
    assert loaded.manifest.render.templates == "src"


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("key,secret", [
    ("password", True), ("HF_TOKEN", True), ("aws_secret_access_key", True), ("API_KEY", True), ("auth", True),
    ("GITHUB_PAT_TOKEN", True), ("password_env", False), ("TOKENIZERS_PARALLELISM", False), ("username", False),
    ("PYTHONUNBUFFERED", False), ("authority", False),
])
def test_looks_secret(key, secret):
    assert looks_secret(key) is secret


@pytest.mark.parametrize("ref,userinfo", [
    ("bob:pw@ghcr.io/x", True), ("https://u:p@pypi.org/simple", True), ("ghcr.io/x@sha256:" + "a" * 64, False),
    ("https://pypi.org/simple", False), ("python:3.11", False),
])
def test_has_userinfo(ref, userinfo):
    assert has_userinfo(ref) is userinfo


def test_find_cycles_is_deterministic():
    deps = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d2"], "d2": ["d"], "e": []}
    assert find_cycles(deps) == [["a", "b", "c"], ["d", "d2"]]
    assert find_cycles({"x": ["y"], "y": []}) == []


# --------------------------------------------------------------------------- JSON Schema and README


def _walk_properties(node, path, seen_refs, defs):
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen_refs:
                seen_refs.add(name)
                yield from _walk_properties(defs[name], path, seen_refs, defs)
        for key, prop in node.get("properties", {}).items():
            yield f"{path}.{key}".lstrip("."), prop
            yield from _walk_properties(prop, f"{path}.{key}", seen_refs, defs)
        for sub in ("items", "additionalProperties"):
            if isinstance(node.get(sub), dict):
                yield from _walk_properties(node[sub], f"{path}[]", seen_refs, defs)
        for sub in ("anyOf", "oneOf", "allOf"):
            for alt in node.get(sub, []):
                yield from _walk_properties(alt, path, seen_refs, defs)


def test_every_schema_key_has_a_description():
    s = json_schema()
    keys = list(_walk_properties(s, "", set(), s["$defs"]))
    assert len(keys) > 60
    missing = [path for path, prop in keys if not prop.get("description")]
    assert missing == []


def test_schema_validates_base_and_rejects_unknown_keys():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    validator.check_schema(json_schema())
    assert list(validator.iter_errors(tomllib.loads(BASE))) == []
    bad = tomllib.loads(BASE.replace("retries = 2", 'retries = "2"\nretry = 1'))
    messages = [e.message for e in validator.iter_errors(bad)]
    assert any("retry" in m for m in messages) and any("'2'" in m for m in messages)


def _examples() -> list[Path]:
    return sorted((REPO / "examples").glob("**/kfp.toml"))


@pytest.mark.parametrize("example", _examples() or [pytest.param(None, marks=pytest.mark.skip("no examples yet"))],
                         ids=lambda p: str(p.relative_to(REPO)) if p else "none")
def test_examples_validate_against_schema_and_load(example):
    jsonschema = pytest.importorskip("jsonschema")
    data = tomllib.loads(example.read_text())
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft202012Validator(json_schema()).iter_errors(data)]
    assert errors == []
    assert isinstance(load_manifest(example, env={}).manifest, Manifest)


def test_reference_lists_every_key_and_variable():
    text = docs.reference_markdown()
    paths = [k.path for k in docs.iter_keys()]
    assert "pipeline.tasks.<task>.args.<input>.output" in paths
    assert "image.layers[].paths[].dst" in paths
    for p in paths:
        assert f"| `{p}` |" in text
    for var in ENV_VARS:
        assert f"`{var.name}`" in text


def test_readme_reference_is_up_to_date():
    readme = (REPO / "README.md").read_text()
    begin, end = "<!-- BEGIN kfp.toml reference (generated: compose-kfp schema --format markdown) -->", \
        "<!-- END kfp.toml reference -->"
    assert begin in readme and end in readme, "README.md lacks the generated kfp.toml reference"
    section = readme.split(begin, 1)[1].split(end, 1)[0]
    assert section.strip() == docs.reference_markdown().strip(), (
        "README.md is out of date: replace the section with `compose-kfp schema --format markdown`")
