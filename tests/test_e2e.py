"""End to end (issue 8): the iris example built, pushed, rendered and run locally in its images, as a user does it.

Everything is real: the CNCF distribution registry (``registry`` fixture), a Debian bookworm base image that
compose-kfp itself builds from a debootstrap tree and pushes (``e2e_base``), scikit-learn and pandas wheels
installed by uv into the deps layer, the CLI called as ``python3 -m compose_kfp`` in a subprocess, the kfp SDK
loading the rendered components, the Argo JSON schema validating the rendered workflow, and ``run --local``
executing each task inside the pushed image.

The iris project is built once per module (``iris``) and shared, in file order: build + render + run, a
no-op re-apply, then a one-line source edit. Known bugs are strict xfails (they fail loudly once fixed).
Tasks run with bwrap (measured on the 2-core CI machine: a
3-task iris run takes ~45 s with bwrap, chroot or podman alike; the time goes to Python compiling pandas and
scikit-learn's bytecode in every task, since the deps layer ships none).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tests.fixtures.e2e import Cli, E2EBase, copy_example, example_env, layer_rows, read_outputs
from tests.fixtures.project import manifest_puts, uploads

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.registry]

EXECUTOR = "bwrap" if shutil.which("bwrap") else "chroot"

EVALUATE_PRINT = 'print(f"accuracy: {accuracy:.4f}")'
EVALUATE_PRINT_EDITED = 'print(f"held-out accuracy over {len(test_set)} rows: {accuracy:.4f}")'


@dataclasses.dataclass
class IrisBuild:
    """The shared iris project: its folder, CLI overrides, repository path (without host) and first apply."""

    root: Path
    env: dict[str, str]
    repo: str                # e.g. "e2e/iris"
    repository: str          # host/e2e/iris
    first_digest: str        # manifest digest after the first apply
    first_layers: dict[str, str]  # layer name -> digest after the first apply
    apply_seconds: float


def _lock(root: Path) -> dict:
    return json.loads((root / "kfp.lock").read_text())


def _locked_layers(root: Path, image: str = "main") -> dict[str, str]:
    (entry,) = _lock(root)["images"][image]["platforms"].values()
    return {ly["name"]: ly["digest"] for ly in entry["layers"]}


def _repo_requests(registry, repo: str, since: int):
    return [r for r in registry.requests()[since:] if r.path.startswith(f"/v2/{repo}/")]


def _upload_starts(registry, repo: str, since: int) -> list[str]:
    """``POST .../blobs/uploads/`` requests that start an upload (cross-repository mounts excluded)."""
    return [r.path for r in _repo_requests(registry, repo, since)
            if r.method == "POST" and "/blobs/uploads/" in r.path and "mount=" not in r.path]


def _run(cli: Cli, root: Path, env: dict, run_dir: Path, *params: str, check: bool | int = True):
    args = ["run", "--local", "--executor", EXECUTOR, "--run-dir", str(run_dir)]
    for p in params:
        args += ["--param", p]
    return cli(root, *args, env=env, check=check)


def _check_components(root: Path, expected_images: dict[str, str]) -> dict[str, object]:
    """Load every build/components/*.yaml with the kfp SDK; each names the expected image."""
    from kfp import components

    paths = sorted((root / "build" / "components").glob("*.yaml"))
    assert {p.stem for p in paths} == set(expected_images)
    loaded = {}
    for path in paths:
        comp = components.load_component_from_file(str(path))
        assert comp.component_spec.implementation.container.image == expected_images[path.stem], path
        loaded[path.stem] = comp
    return loaded


def _workflow_images(root: Path) -> set[str]:
    doc = yaml.safe_load((root / "build" / "workflow.yaml").read_text())
    return {t["container"]["image"] for t in doc["spec"]["templates"] if "container" in t}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def iris(e2e_cli: Cli, e2e_base: E2EBase, registry, tmp_path_factory) -> IrisBuild:
    """The iris example copied to a fresh folder, planned and applied (`apply --yes`) to ``<registry>/e2e/iris``."""
    root = copy_example("iris", tmp_path_factory.mktemp("iris") / "iris")
    repo = "e2e/iris"
    env = example_env(registry, e2e_base, repo)
    plan = e2e_cli.json(root, "plan", env=env)
    assert plan["has_changes"] is True
    started = time.monotonic()
    e2e_cli(root, "apply", "--yes", env=env)
    seconds = time.monotonic() - started
    lock = _lock(root)
    return IrisBuild(root, env, repo, f"{registry.host}/{repo}", lock["images"]["main"]["digest"],
                     _locked_layers(root), seconds)


# ------------------------------------------------------------------------------------------------ iris


def test_iris_build_render_and_run_locally(iris: IrisBuild, e2e_cli, e2e_base, registry, corpus_or_none,
                                           tmp_path):
    lock = _lock(iris.root)
    entry = lock["images"]["main"]
    digest = entry["digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert entry["repository"] == iris.repository
    assert list(_locked_layers(iris.root)) == ["runtime", "deps", "data", "src"]
    assert lock["base"]["reference"] == e2e_base.reference
    (base_platform,) = lock["base"]["platforms"].values()
    assert base_platform["digest"] == e2e_base.digest

    # The image is in the registry under its digest and its tags; its bottom layers are the base's.
    pushed = {r.path for r in _repo_requests(registry, iris.repo, 0) if r.method == "PUT" and r.status < 300}
    assert f"/v2/{iris.repo}/manifests/{digest}" in pushed
    assert f"/v2/{iris.repo}/manifests/latest" in pushed

    # Rendered components load in kfp and are pinned to the pushed digest; so is every workflow template.
    pinned = f"{iris.repository}@{digest}"
    loaded = _check_components(iris.root, {"load": pinned, "train": pinned, "evaluate": pinned, "deploy": pinned})
    assert set(loaded["train"].component_spec.inputs) >= {"dataset", "n_estimators", "seed"}
    assert _workflow_images(iris.root) == {pinned}
    workflow = yaml.safe_load((iris.root / "build" / "workflow.yaml").read_text())
    assert workflow["kind"] == "Workflow"
    if corpus_or_none is not None:
        corpus_or_none(workflow)

    # Run every task inside the pushed image, with a non-default param.
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = _run(e2e_cli, iris.root, iris.env, run_dir, "n_estimators=7")
    run_seconds = time.monotonic() - started
    tasks = read_outputs(run_dir)
    assert {name: t["status"] for name, t in tasks.items()} == {
        "load": "succeeded", "train": "succeeded", "evaluate": "succeeded", "deploy": "succeeded"}, result.describe()
    assert all(t["image"] == pinned for t in tasks.values())
    accuracy = float((run_dir / "evaluate" / "outputs" / "accuracy" / "data").read_text())
    assert accuracy > 0.9, result.describe()
    # evaluate reports the n_estimators of the model it loaded: the one train fitted with the param (7, not 100).
    assert int((run_dir / "evaluate" / "outputs" / "n_estimators" / "data").read_text()) == 7
    assert int(tasks["load"]["outputs"]["n_rows"]) == 150
    matrix = json.loads((run_dir / "evaluate" / "outputs" / "confusion_matrix" / "data").read_text())
    assert sum(map(sum, matrix)) == 45  # test_size 0.3 of 150 rows
    assert f"accuracy: {accuracy:.4f}" in (run_dir / "evaluate" / "log.txt").read_text()
    assert "4/4 tasks succeeded" in result.stdout + result.stderr
    # deploy ran because the accuracy is above the threshold param (0.9), and read the model train fitted
    assert tasks["deploy"]["outputs"]["output"] == f"deployed a random forest of 7 trees (accuracy {accuracy:.4f})"
    assert workflow["spec"]["templates"][0]["dag"]["tasks"][3]["when"] == \
        "{{tasks.evaluate.outputs.parameters.accuracy}} > {{workflow.parameters.threshold}}"

    # Above the accuracy, deploy is skipped by its condition; the run still succeeds and says so.
    high_dir = tmp_path / "run-high"
    high = _run(e2e_cli, iris.root, iris.env, high_dir, "n_estimators=7", "threshold=0.99")
    high_tasks = read_outputs(high_dir)
    assert {name: t["status"] for name, t in high_tasks.items()} == {
        "load": "succeeded", "train": "succeeded", "evaluate": "succeeded", "deploy": "skipped"}, high.describe()
    assert high_tasks["deploy"]["error"] == "condition is false: evaluate.accuracy > threshold"
    assert re.search(r"deploy\s+│\s+skipped\s+│\s+-\s+│\s+condition is false: evaluate.accuracy > threshold",
                     high.stdout), high.describe()
    print(f"\niris: first apply {iris.apply_seconds:.1f} s, local run ({EXECUTOR}) {run_seconds:.1f} s")


def test_iris_reapply_without_changes_uploads_nothing(iris: IrisBuild, e2e_cli, registry):
    plan = e2e_cli(iris.root, "plan", "--exit-code", env=iris.env, check=0)
    assert "No changes" in plan.stdout, plan.describe()
    since = len(registry.requests())
    result = e2e_cli(iris.root, "apply", "--yes", env=iris.env)
    assert "nothing uploaded" in result.stdout.lower(), result.describe()
    assert uploads(registry, since) == []
    assert _upload_starts(registry, iris.repo, since) == []
    assert manifest_puts(registry, since) == []
    assert _lock(iris.root)["images"]["main"]["digest"] == iris.first_digest


def test_iris_one_line_edit_replaces_only_the_src_layer(iris: IrisBuild, e2e_cli, registry, tmp_path):
    source = iris.root / "src" / "iris.py"
    text = source.read_text()
    assert text.count(EVALUATE_PRINT) == 1
    source.write_text(text.replace(EVALUATE_PRINT, EVALUATE_PRINT_EDITED))
    before = _locked_layers(iris.root)

    e2e_cli(iris.root, "plan", "--exit-code", env=iris.env, check=2)
    plan = e2e_cli.json(iris.root, "plan", env=iris.env)
    assert plan["has_changes"] is True
    rows = {r["name"]: r for r in layer_rows(plan)}
    assert list(rows) == list(before)  # nothing else listed (no base layer taken for a removed project layer)
    assert {name: r["action"] for name, r in rows.items()} == {
        "runtime": "keep", "deps": "keep", "data": "keep", "src": "replace"}
    assert rows["src"]["before"] == before["src"]
    assert "iris.py" in rows["src"]["reason"]
    new_src = rows["src"]["after"]
    assert new_src and new_src != before["src"]
    (platform,) = [p for im in plan["images"] for p in im["platforms"]]
    assert platform["base"]["action"] == "keep"

    since = len(registry.requests())
    e2e_cli(iris.root, "apply", "--yes", env=iris.env)
    after = _locked_layers(iris.root)
    assert after["src"] == new_src
    assert {k: v for k, v in after.items() if k != "src"} == {k: v for k, v in before.items() if k != "src"}
    (entry,) = _lock(iris.root)["images"]["main"]["platforms"].values()
    # Only the src layer and the new config were uploaded; nothing else started an upload; the manifest was put.
    assert sorted(uploads(registry, since)) == sorted([new_src, entry["config"]])
    assert len(_upload_starts(registry, iris.repo, since)) == 2
    new_digest = _lock(iris.root)["images"]["main"]["digest"]
    assert new_digest != iris.first_digest
    assert f"{new_digest}" in manifest_puts(registry, since)
    # The rendered components now pin the new digest.
    pinned = f"{iris.repository}@{new_digest}"
    _check_components(iris.root, {"load": pinned, "train": pinned, "evaluate": pinned, "deploy": pinned})

    e2e_cli(iris.root, "plan", "--exit-code", env=iris.env, check=0)

    run_dir = tmp_path / "run"
    _run(e2e_cli, iris.root, iris.env, run_dir)
    tasks = read_outputs(run_dir)
    assert {t["status"] for t in tasks.values()} == {"succeeded"}
    assert tasks["evaluate"]["image"] == pinned
    log = (run_dir / "evaluate" / "log.txt").read_text()
    accuracy = float((run_dir / "evaluate" / "outputs" / "accuracy" / "data").read_text())
    assert f"held-out accuracy over 45 rows: {accuracy:.4f}" in log, log
    assert int((run_dir / "evaluate" / "outputs" / "n_estimators" / "data").read_text()) == 100


def test_iris_plan_does_not_list_base_layers(iris: IrisBuild, e2e_cli, e2e_base):
    """The base was built by compose-kfp (its layer is named too): it is still told apart from project layers."""
    plan = e2e_cli.json(iris.root, "plan", env=iris.env)
    rows = layer_rows(plan)
    assert [r["name"] for r in rows] == ["runtime", "deps", "data", "src"], [(r["name"], r["action"]) for r in rows]
    assert not {r["before"] for r in rows} & set(e2e_base.layer_digests)


def test_iris_reproducible_from_a_second_clone(iris: IrisBuild, e2e_cli, e2e_base, registry, tmp_path):
    """Another folder, other mtimes, another repository, a deps layer installed afresh: the same image digest."""
    clone = copy_example("iris", tmp_path / "elsewhere" / "iris-clone")
    stamp = time.time() - 86400 * 400
    for path in [clone, *clone.rglob("*")]:
        os.utime(path, (stamp, stamp))
    # The deps layer cache is per project (.compose-kfp/cache/deps): the clone installs the wheels afresh
    # (from the session's uv download cache) and builds its own deps layer.
    env = example_env(registry, e2e_base, "e2e/iris-clone")
    e2e_cli(clone, "apply", "--yes", env=env)
    assert any((clone / ".compose-kfp" / "cache" / "deps").iterdir()), "the clone did not build its own deps layer"
    lock = _lock(clone)
    assert lock["images"]["main"]["repository"] == f"{registry.host}/e2e/iris-clone"
    assert _locked_layers(clone) == iris.first_layers
    assert lock["images"]["main"]["digest"] == iris.first_digest
    rendered = {p.name: p.read_text() for p in (clone / "build" / "components").glob("*.yaml")}
    assert all(f"{registry.host}/e2e/iris-clone@{iris.first_digest}" in t for t in rendered.values())


# ------------------------------------------------------------------------------------------------ failing step


FAILING_PY = '''\
"""Steps for the failing-run test: one raises, one depends on it, one is independent."""


def explode(n: int) -> int:
    """Fail on purpose."""
    if n > 2:
        raise ValueError(f"refusing n={n}: too many")
    return n


def double(x: int) -> int:
    """Twice x."""
    return 2 * x


def greet(name: str = "world") -> str:
    """A greeting."""
    return f"hello {name}"
'''


def test_failing_step_exits_7_with_traceback_and_skips_dependents(e2e_cli, e2e_base, registry, tmp_path):
    root = tmp_path / "failing"
    (root / "src").mkdir(parents=True)
    (root / "src" / "steps.py").write_text(FAILING_PY)
    (root / "kfp.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "failing"

        [image]
        base = "{e2e_base.reference}"
        repository = "{registry.host}/e2e/failing"

        [[image.layers]]
        name = "src"
        paths = ["src"]

        [steps.explode]
        function = "src/steps.py:explode"

        [steps.double]
        function = "src/steps.py:double"

        [steps.greet]
        function = "src/steps.py:greet"

        [pipeline]
        name = "failing"
        params = {{ n = 5 }}

        [pipeline.tasks.explode]
        step = "explode"
        args.n = {{ param = "n" }}

        [pipeline.tasks.double]
        step = "double"
        args.x = {{ task = "explode", output = "output" }}

        [pipeline.tasks.greet]
        step = "greet"
        args.name = "e2e"
        """))
    e2e_cli(root, "apply", "--yes")
    run_dir = tmp_path / "run"
    result = _run(e2e_cli, root, {}, run_dir, check=7)
    assert "Traceback (most recent call last)" in result.stderr, result.describe()
    assert "ValueError: refusing n=5: too many" in result.stderr, result.describe()
    assert 'steps.py", line' in result.stderr, result.describe()
    tasks = read_outputs(run_dir)
    assert tasks["explode"]["status"] == "failed"
    assert tasks["double"]["status"] == "skipped"
    assert tasks["greet"]["status"] == "succeeded"
    assert tasks["greet"]["outputs"]["output"] == "hello e2e"
    assert not (run_dir / "double" / "outputs").exists() or not any((run_dir / "double" / "outputs").iterdir())
    assert "ValueError" in (run_dir / "explode" / "log.txt").read_text()

    # The same graph succeeds when the param lets the step pass: the failure came from the step itself.
    ok_dir = tmp_path / "run-ok"
    _run(e2e_cli, root, {}, ok_dir, "n=2")
    assert read_outputs(ok_dir)["double"]["outputs"]["output"] == "4"


# ------------------------------------------------------------------------------------------------ mixed


@pytest.fixture(scope="module")
def mixed(e2e_cli, e2e_base, registry, tmp_path_factory):
    """examples/mixed copied, its third-party component pointed at the fixture registry's base, applied."""
    root = copy_example("mixed", tmp_path_factory.mktemp("mixed") / "mixed")
    component = root / "components" / "line_count.yaml"
    text = component.read_text()
    line = "image: localhost:5000/compose-kfp/debian-python:bookworm"
    assert text.count(line) == 1
    component.write_text(text.replace(line, f"image: {e2e_base.reference}"))
    env = example_env(registry, e2e_base, "e2e/mixed")
    e2e_cli(root, "apply", "--yes", env=env)
    return root, env


@pytest.fixture(scope="module")
def mixed_run(mixed, e2e_cli, tmp_path_factory):
    """``(run folder, CliResult)`` of ``run --local --param n_lines=9`` of the applied mixed example."""
    root, env = mixed
    run_dir = tmp_path_factory.mktemp("mixed-run") / "run"
    return run_dir, _run(e2e_cli, root, env, run_dir, "n_lines=9")


def test_mixed_example_builds_renders_and_runs(mixed, mixed_run, e2e_base, registry, corpus_or_none):
    root, env = mixed
    digest = _lock(root)["images"]["main"]["digest"]
    pinned = f"{registry.host}/e2e/mixed@{digest}"
    from kfp import components

    make = components.load_component_from_file(str(root / "build" / "components" / "make.yaml"))
    assert make.component_spec.implementation.container.image == pinned
    count = components.load_component_from_file(str(root / "build" / "components" / "count.yaml"))
    # The third-party component's tag is resolved at apply and pinned by digest (recorded in kfp.lock), like
    # every image in the rendered files; its command is used unchanged.
    pinned_base = f"{registry.host}/e2e/debian-python@{e2e_base.digest}"
    assert _lock(root)["components"] == {"count": pinned_base}
    assert count.component_spec.implementation.container.image == pinned_base
    assert count.component_spec.implementation.container.command[0] == "sh"
    assert _workflow_images(root) == {pinned, pinned_base}
    if corpus_or_none is not None:
        corpus_or_none(yaml.safe_load((root / "build" / "workflow.yaml").read_text()))

    run_dir, result = mixed_run
    tasks = read_outputs(run_dir)
    assert tasks["make"]["status"] == tasks["count"]["status"] == "succeeded", result.describe()
    assert tasks["make"]["image"] == pinned
    assert tasks["make"]["outputs"]["output"] == "9"
    assert tasks["count"]["outputs"]["count"] == "9"
    assert len((run_dir / "make" / "outputs" / "corpus" / "data").read_text().splitlines()) == 9
    assert "lines in corpus: 9" in (run_dir / "count" / "log.txt").read_text()


def test_mixed_local_run_uses_the_pinned_component_image(mixed, mixed_run, e2e_base, registry):
    run_dir, _ = mixed_run
    assert read_outputs(run_dir)["count"]["image"] == f"{registry.host}/e2e/debian-python@{e2e_base.digest}"


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def corpus_or_none(request):
    """A checker validating a Workflow dict against the Argo JSON schema, or ``None`` when the corpus is absent."""
    try:
        check = request.getfixturevalue("argo_workflow_check")
    except pytest.skip.Exception:
        return None

    def validate(doc: dict) -> None:
        check(yaml.safe_dump(doc))

    return validate


# ------------------------------------------------------------------------------------------------ sweep


def test_sweep_example_fans_out_collects_and_reports(e2e_cli, e2e_base, registry, corpus_or_none, tmp_path):
    """examples/sweep: one training per item of a list param (two at a time), the accuracies collected, the exit
    handler last with the status; the Workflow validates and the KFP v2 package compiles (``render --target kfp``)."""
    root = copy_example("sweep", tmp_path / "sweep")
    env = example_env(registry, e2e_base, "e2e/sweep")
    e2e_cli(root, "apply", "--yes", env=env)
    workflow = yaml.safe_load((root / "build" / "workflow.yaml").read_text())
    if corpus_or_none is not None:
        corpus_or_none(workflow)
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    assert workflow["spec"]["onExit"] == "iris-sweep-exit"
    assert templates["train-loop"]["parallelism"] == 2
    e2e_cli(root, "render", "--target", "kfp", "--output-dir", str(tmp_path / "kfp"), env=env)
    from kfp import components

    components.load_component_from_file(str(tmp_path / "kfp" / "pipeline.yaml"))

    run_dir = tmp_path / "run"
    result = _run(e2e_cli, root, env, run_dir, "n_estimators_grid=[1, 10, 50, 100]")
    tasks = read_outputs(run_dir)
    assert {name: t["status"] for name, t in tasks.items()} == {
        "split": "succeeded", "train": "succeeded", "best": "succeeded", "report": "succeeded"}, result.describe()
    iterations = tasks["train"]["iterations"]
    assert [it["item"] for it in iterations] == [1, 10, 50, 100]
    accuracies = [float(it["outputs"]["output"]) for it in iterations]
    assert all(0.5 < a <= 1 for a in accuracies)
    scores = json.loads((run_dir / "best" / "outputs" / "scores" / "data").read_text())
    assert scores == {str(n): a for n, a in zip([1, 10, 50, 100], accuracies)}
    best = int(tasks["best"]["outputs"]["n_estimators"])
    assert accuracies[[1, 10, 50, 100].index(best)] == max(accuracies)
    assert tasks["report"]["outputs"]["output"] == "sweep finished: Succeeded"
    for i, n in enumerate([1, 10, 50, 100]):
        assert f"n_estimators={n}: accuracy" in (run_dir / "train" / str(i) / "log.txt").read_text()
    out = result.stdout
    assert re.search(r"train\s+│\s+succeeded\s+│.*│\s+4 iterations", out), result.describe()
    assert re.search(r"train\[3\]\s+│\s+succeeded\s+│.*│\s+item 100: output = ", out), result.describe()

    # An empty grid runs no training; the collector gets [] and fails on it, and the exit handler still runs.
    empty_dir = tmp_path / "run-empty"
    empty = _run(e2e_cli, root, env, empty_dir, "n_estimators_grid=[]", check=7)
    tasks = read_outputs(empty_dir)
    assert tasks["train"]["status"] == "skipped" and "iterations" not in tasks["train"]
    assert tasks["best"]["status"] == "failed"
    assert "max() arg is an empty sequence" in (empty_dir / "best" / "log.txt").read_text(), empty.describe()
    assert tasks["report"]["outputs"]["output"] == "sweep finished: Failed"
