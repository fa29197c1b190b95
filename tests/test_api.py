"""The Python API (compose_kfp/api.py) against the real registry and OCI layouts, compared with the CLI on the same
inputs: the same digests, the same rendered files, the same ``--json`` data, the same errors."""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

import compose_kfp
from compose_kfp import api
from compose_kfp.errors import ConfigError, StepError
from tests.fixtures.cli import run
from tests.fixtures.project import write_project


def _files(folder: Path) -> Path:
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "mod.py").write_text("X = 1\n")
    (folder / "notes.txt").write_text("hello\n")
    return folder


def _cli_image_project(folder: Path, base: str, repository: str, srcs: dict[str, str], tags=()) -> Path:
    """The kfp.toml a user would write by hand for the same image: one layer `files`, no steps."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = ", ".join(f'{{ src = "{src}", dst = "{dst}" }}' for src, dst in srcs.items())
    tag_line = f"tags = {json.dumps(list(tags))}\n" if tags else ""
    (folder / "kfp.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "img"

        [image]
        base = "{base}"
        repository = "{repository}"
        """) + tag_line + f'\n[[image.layers]]\nname = "files"\npaths = [{paths}]\n')
    return folder


def test_the_package_exports_the_api_lazily():
    code = ("import sys, compose_kfp; heavy = [m for m in ('requests', 'pydantic', 'kfp', 'compose_kfp.api') "
            "if m in sys.modules]; print(heavy); print(compose_kfp.build_image.__module__)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(compose_kfp.__file__).parents[1]).stdout.split()
    assert out == ["[]", "compose_kfp.api"]
    assert set(compose_kfp._API) <= set(dir(compose_kfp)) and compose_kfp.plan is api.plan
    with pytest.raises(AttributeError):
        compose_kfp.no_such_function  # noqa: B018
    assert (Path(compose_kfp.__file__).parent / "py.typed").is_file()


def test_build_image_pushes_the_image_the_cli_builds(registry, base_image, unique_repo, tmp_path, monkeypatch,
                                                     capsys):
    src = _files(tmp_path / "work")
    repository = f"{registry.host}/{unique_repo}"
    monkeypatch.chdir(src)
    events = []
    monkeypatch.setenv("COMPOSE_KFP_REPOSITORY", "oci:elsewhere")  # for kfp.toml projects: the argument wins
    ref = compose_kfp.build_image(base_image.reference, ["pkg", ("notes.txt", "/etc/notes.txt")], repository,
                                  tags=["v1"], name="img", progress=lambda *e: events.append(e))
    monkeypatch.delenv("COMPOSE_KFP_REPOSITORY")
    assert ref.startswith(repository + "@sha256:") and len(ref.split("@sha256:")[1]) == 64
    assert {e[0] for e in events} >= {"upload"} and all(e[2] <= e[3] or not e[3] for e in events)
    assert capsys.readouterr() == ("", "")  # the API never prints
    # the hand-written kfp.toml of the same image, through the CLI: the same digest
    cli = _cli_image_project(tmp_path / "cli", base_image.reference, repository,
                             {str(src / "pkg"): "/app/pkg", str(src / "notes.txt"): "/etc/notes.txt"}, tags=["v1"])
    code, out, err = run("-C", str(cli), "apply", "-y", "--print-reference")
    assert code == 0, err
    assert out.strip() == ref
    # the tags point at it (the CLI sees nothing to change); a second call gives the same reference
    code, out, err = run("-C", str(cli), "plan", "--exit-code")
    assert code == 0, out + err
    again = compose_kfp.build_image(base_image.reference, ["pkg", ("notes.txt", "/etc/notes.txt")], repository,
                                    tags=["v1"], name="img", progress=None)
    assert again == ref


def test_build_image_and_extend_image_write_oci_layouts(tmp_path, monkeypatch):
    src = _files(tmp_path / "work")
    monkeypatch.chdir(src)
    ref = api.build_image("scratch", ["pkg"], "oci:out/layout", name="img", progress=None)
    layout = src / "out" / "layout"
    assert ref.startswith(f"oci:{layout}@sha256:")
    index = json.loads((layout / "index.json").read_text())
    assert ref.split("@")[1] in {m["digest"] for m in index["manifests"]}
    # the CLI, from the same base layout and files, makes the image extend_image makes (run first: the layout
    # holds one image until extend_image adds its own)
    cli = _cli_image_project(tmp_path / "cli", f"oci:{layout}", f"oci:{tmp_path}/l2",
                             {str(src / "notes.txt"): "/etc/notes.txt"})
    code, out, err = run("-C", str(cli), "apply", "-y", "--print-reference")
    assert code == 0, err
    # extend the image in that layout with one more file: written back into the same layout
    extended = api.extend_image("out/layout", [("notes.txt", "/etc/notes.txt")], name="img", progress=None)
    assert extended.startswith(f"oci:{layout}@sha256:") and extended != ref
    assert out.strip().split("@")[1] == extended.split("@")[1]
    index = json.loads((layout / "index.json").read_text())
    assert {ref.split("@")[1], extended.split("@")[1]} <= {m["digest"] for m in index["manifests"]}


def test_build_image_refuses_bad_include_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"include_paths\[0\]: 'missing' does not exist"):
        api.build_image("scratch", ["missing"], "oci:out", progress=None)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"include_paths\[0\]: expected a path or a \(src, dst\) pair"):
        api.build_image("scratch", [("f", "relative")], "oci:out", progress=None)
    with pytest.raises(ConfigError, match="give repository="):
        api.extend_image("python:3.11-slim", ["f"])
    assert not (tmp_path / "out").exists()


@pytest.fixture
def twin_projects(tmp_path, registry, base_image):
    """Two identical projects pushing to one fresh repository: one for the API, one for the CLI."""
    import uuid

    repository = f"{registry.host}/test/api-{uuid.uuid4().hex[:8]}"
    return [write_project(tmp_path / name, base=base_image.reference, repository=repository)
            for name in ("for-api", "for-cli")]


def test_plan_and_apply_return_what_the_cli_prints(twin_projects, capsys):
    ours, theirs = twin_projects
    p = api.plan(ours / "kfp.toml", progress=None)
    code, out, err = run("-C", str(ours), "plan", "--json")  # the same project: the same plan, to the byte
    assert code == 0, err
    assert json.loads(out) == json.loads(p.to_json()) and p.has_changes

    result = api.apply(ours, progress=None)
    assert result.changed and result.lock_written and (ours / "kfp.lock").is_file()
    assert capsys.readouterr() == ("", "")
    code, out, err = run("-C", str(theirs), "apply", "-y", "--json")
    assert code == 0, err
    cli_result = json.loads(out)["result"]
    assert cli_result["images"] == result.to_dict()["images"]
    assert cli_result["uploaded"] == []  # the API pushed every blob already; the CLI found them
    for rel in result.files:
        assert (ours / rel).read_bytes() == (theirs / rel).read_bytes()
    assert (ours / "kfp.lock").read_text() == (theirs / "kfp.lock").read_text().replace("for-cli", "for-api")

    # nothing left to do: an ApplyResult that changed nothing, with the same references
    again = api.apply(ours, progress=None)
    assert not again.changed and again.uploaded == () and again.files == ()
    assert [i.reference for i in again.plan.images] == [i.reference for i in result.plan.images]
    code, out, _ = run("-C", str(ours), "plan", "--exit-code")
    assert code == 0

    # render: the files from kfp.lock, as `compose-kfp render` writes them
    shutil.rmtree(ours / "build")
    written = api.render(ours)
    assert written and all(p.is_file() for p in written)
    for path in written:
        assert path.read_bytes() == (theirs / path.relative_to(ours)).read_bytes()
    assert api.render(ours) == []


def test_save_component_writes_what_apply_renders_and_load_component_reads_it(twin_projects, tmp_path,
                                                                              monkeypatch):
    ours, theirs = twin_projects
    code, out, err = run("-C", str(theirs), "apply", "-y", "--json")
    assert code == 0, err
    image = json.loads(out)["result"]["images"]["main"]["reference"]
    rendered = theirs / "build" / "components" / "train.yaml"

    saved = api.save_component("src/model.py:train", image=image, output=tmp_path / "out" / "train.yaml",
                               root=ours)
    assert saved == tmp_path / "out" / "train.yaml" and saved.read_bytes() == rendered.read_bytes()

    # a function object from a module below root: the same file
    monkeypatch.syspath_prepend(str(ours / "src"))
    import importlib

    model = importlib.import_module("model")
    monkeypatch.chdir(ours)
    by_object = api.save_component(model.train, image=image, root=ours)
    assert by_object == ours / "train.yaml" and by_object.read_bytes() == rendered.read_bytes()
    sys.modules.pop("model", None)

    from compose_kfp.manifest.project import load_project

    spec = api.load_component(saved)
    assert spec.to_dict() == load_project(theirs).components["train"].with_image(image).to_dict()
    assert spec.image == image and [i.name for i in spec.inputs] == ["values", "scale"]


def test_errors_are_the_cli_errors(tmp_path, twin_projects):
    ours, theirs = twin_projects
    for folder in (ours, theirs):
        text = (folder / "kfp.toml").read_text().replace('step = "train"', 'step = "trian"')
        (folder / "kfp.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        api.plan(ours, progress=None)
    code, out, err = run("-C", str(theirs), "plan")
    assert code == info.value.exit_code == 1
    assert err.strip() == f"error: {info.value}".replace("for-api", "for-cli")
    assert info.value.line is not None and info.value.key == "pipeline.tasks.train.step"

    (tmp_path / "bad.py").write_text("def f(x):\n    return x\n")
    with pytest.raises(StepError, match="bad.py"):
        api.save_component("bad.py:f", image="x@sha256:" + "a" * 64, root=tmp_path)
    with pytest.raises(ConfigError, match=r"nowhere/kfp.toml: no such file"):
        api.plan(tmp_path / "nowhere" / "kfp.toml", progress=None)


@pytest.mark.slow
def test_a_notebook_builds_pushes_and_saves_a_component_with_the_api(registry, base_image, unique_repo, tmp_path,
                                                                      monkeypatch):
    """The thesis's workflow: a notebook cell calls build_image and save_component (executed with papermill)."""
    papermill = pytest.importorskip("papermill")
    pytest.importorskip("ipykernel")
    from tests.fixtures.notebooks import write_notebook

    project = write_project(tmp_path / "proj", base=base_image.reference, repository="unused", pipeline=False)
    repository = f"{registry.host}/{unique_repo}"
    write_notebook(project / "build.ipynb", [
        ("markdown", "# Build from a notebook"),
        ("code", 'base: str = ""\nrepository: str = ""', ["parameters"]),
        ("code", "import compose_kfp\n\nref = compose_kfp.build_image(base, [\"src\", \"data\"], repository, "
                 "tags=[\"nb\"], name=\"img\")\nprint(ref)"),
        ("code", "path = compose_kfp.save_component(\"src/model.py:train\", image=ref, output=\"out/train.yaml\")\n"
                 "print(path)\nspec = compose_kfp.load_component(path)\nassert spec.image == ref"),
    ])
    monkeypatch.setenv("PYTHONPATH", str(Path(compose_kfp.__file__).parents[1]))  # the kernel imports this tree
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(project / "build.ipynb"), str(out), cwd=str(project), kernel_name="python3",
                               parameters={"base": base_image.reference, "repository": repository},
                               progress_bar=False)
    executed = json.loads(out.read_text())
    printed = ["".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])
               if o.get("name") == "stdout"]
    assert not any(o.get("output_type") == "error" for c in executed["cells"] for o in c.get("outputs", []))
    ref, path = printed[0].strip(), Path(printed[1].strip())
    # in the kernel the default progress="auto" drew bars (tqdm), in the cell's output, not on the test's stdout
    cell = next(c for c in executed["cells"] if "build_image" in "".join(c["source"]))
    shown = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("name") == "stderr")
    assert re.search(r"uploading sha256:[0-9a-f]{12}…: 100%", shown), shown
    assert "TqdmWarning" not in shown
    assert ref.startswith(repository + "@sha256:") and path == project / "out" / "train.yaml"
    # the same image as the CLI builds from the same files, and the component file apply would render
    cli = _cli_image_project(tmp_path / "cli", base_image.reference, repository,
                             {str(project / "src"): "/app/src", str(project / "data"): "/app/data"}, tags=["nb"])
    code, out_text, err = run("-C", str(cli), "apply", "-y", "--print-reference")
    assert code == 0 and out_text.strip() == ref, err
    import yaml

    container = yaml.safe_load(path.read_text())["implementation"]["container"]
    assert container["image"] == ref and container["command"] == ["python3", "-m", "compose_kfp.runtime",
                                                                  "src/model.py:train"]
