"""plan + apply against the real CNCF registry (fixture ``registry``), with a tiny base image built here."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import pytest

from compose_kfp import cli  # noqa: F401 - registers plan/apply/render/lock on the CLI
from compose_kfp.build.apply import apply_plan
from compose_kfp.build.plan import plan_project
from compose_kfp.build.projectlock import project_lock
from compose_kfp.pipeline.outputs import render_from_lock
from compose_kfp.cli import main
from compose_kfp.errors import BusyError, StaleError
from compose_kfp.oci.auth import StaticKeychain
from compose_kfp.oci.layout import OCILayout
from compose_kfp.oci.reference import Reference
from compose_kfp.oci.registry import RegistryClient
from compose_kfp.planner import Plan, format_plan
from compose_kfp.manifest.project import load_project
from tests.fixtures.oci_tools import write_docker_save
from tests.fixtures.project import manifest_puts, push_base_image, uploads

pytestmark = pytest.mark.registry


def _plan(root, **kw):
    return plan_project(load_project(root), **kw)


def _apply(root, **kw):
    project = load_project(root)
    return apply_plan(project, plan_project(project, **kw), **kw)


def _client(registry):
    return RegistryClient(registry.host, StaticKeychain({}))


def _layer(p, name, image="main"):
    plat = p.image(image).platforms[0]
    return next(ly for ly in plat.layers if ly.name == name)


def _project_on_an_index(project_factory, make_wheel, simple_index, tmp_path, requirements: str,
                         *wheels: tuple[str, str, str]):
    """A project whose ``requirements.txt`` is ``requirements`` and whose ``image.index_url`` is a simple index
    of ``wheels`` (``(name, version, text of name/__init__.py)``) built in ``tmp_path/wheels``."""
    for name, version, init in wheels:
        make_wheel(tmp_path / "wheels", name, version, modules={f"{name}/__init__.py": init})
    index = simple_index(tmp_path / "wheels")
    return project_factory(requirements=requirements, extra_image=f'index_url = "{index.url}"\n')


def test_first_apply_pushes_every_layer_then_nothing(project_factory, registry):
    root = project_factory()
    p = _plan(root)
    assert p.image("main").status == "create"
    assert [ly.action for ly in p.image("main").platforms[0].layers] == ["add", "add", "add"]
    since = len(registry.requests())
    result = apply_plan(load_project(root), p)
    pushed = set(uploads(registry, since))
    layer_digests = {ly.after for ly in p.image("main").platforms[0].layers}
    config = p.image("main").platforms[0].config_after
    assert pushed == layer_digests | {config}
    assert result.uploaded_bytes == sum(n for _, n in result.uploaded) > 0
    # the base layer lives in the same registry: mounted, not uploaded
    assert len(result.mounted) == 1
    image = p.image("main")
    ref = Reference.parse(image.repository)
    with _client(registry) as client:
        head = client.head_manifest(ref.repository, image.tags[0])
    assert image.tags[0].startswith("kfp-") and head[1] == image.after
    lock = json.loads((root / "kfp.lock").read_text())
    assert lock["images"]["main"]["digest"] == image.after
    comp = (root / "build" / "components" / "train.yaml").read_text()
    assert f"{image.repository}@{image.after}" in comp
    assert (root / "build" / "workflow.yaml").is_file()

    since = len(registry.requests())
    p2 = _plan(root)
    assert not p2.has_changes
    assert "No changes." in format_plan(p2)
    result2 = apply_plan(load_project(root), p2)
    assert not result2.changed
    assert uploads(registry, since) == [] and manifest_puts(registry, since) == []


def test_one_file_edit_replaces_exactly_one_layer(project_factory, registry):
    root = project_factory()
    _apply(root)
    (root / "src" / "model.py").write_text((root / "src" / "model.py").read_text() + "\n# tweak\n")
    p = _plan(root)
    actions = {ly.name: ly.action for ly in p.image("main").platforms[0].layers}
    assert actions == {"runtime": "keep", "data": "keep", "src": "replace"}
    src = _layer(p, "src")
    assert src.reason == "src/model.py changed"
    text = format_plan(p)
    assert "~ src" in text and "Plan: 0 to add, 1 to replace, 0 to remove;" in text
    since = len(registry.requests())
    result = apply_plan(load_project(root), p)
    plat = result.plan.image("main").platforms[0]
    assert sorted(uploads(registry, since)) == sorted([src.after, plat.config_after])
    puts = manifest_puts(registry, since)
    assert plat.manifest_after in puts and result.plan.image("main").tags[0] in puts
    assert puts.index(plat.manifest_after) < puts.index(result.plan.image("main").tags[0])


def test_touch_without_content_change_changes_nothing(project_factory, registry):
    root = project_factory()
    _apply(root)
    later = time.time() + 5
    for f in (root / "src" / "model.py", root / "data" / "part0.csv"):
        os.utime(f, (later, later))
    p = _plan(root)
    assert not p.has_changes
    assert all(ly.action == "keep" for ly in p.image("main").platforms[0].layers)


def test_env_change_changes_only_config_and_manifest(project_factory, registry):
    root = project_factory(env={"MODE": "a"})
    _apply(root)
    toml = (root / "kfp.toml").read_text().replace('MODE = "a"', 'MODE = "b"')
    (root / "kfp.toml").write_text(toml)
    p = _plan(root)
    plat = p.image("main").platforms[0]
    assert all(ly.action == "keep" for ly in plat.layers)
    assert plat.config_changed and plat.manifest_changed
    assert p.summary.add == p.summary.replace == p.summary.remove == 0
    since = len(registry.requests())
    apply_plan(load_project(root), p)
    assert uploads(registry, since) == [plat.config_after]


def test_image_deleted_behind_our_back_is_restored(project_factory, registry):
    root = project_factory()
    first = _apply(root)
    image = first.plan.image("main")
    ref = Reference.parse(image.repository)
    with _client(registry) as client:
        client.delete_manifest(ref.repository, image.after)
    p = _plan(root)
    assert p.image("main").status == "restore"
    assert "missing from the destination" in format_plan(p)
    apply_plan(load_project(root), p)
    with _client(registry) as client:
        assert client.head_manifest(ref.repository, image.after) is not None
    assert not _plan(root).has_changes


def test_base_tag_moving_shows_as_base_change(project_factory, registry, base_image):
    root = project_factory()
    _apply(root)
    repo = Reference.parse(base_image.repository).repository
    push_base_image(registry, repo, "v1", files={"/etc/os-release": b"ID=tiny\nVERSION_ID=2\n"})
    p = _plan(root)
    plat = p.image("main").platforms[0]
    assert plat.base.action == "replace" and plat.base.before != plat.base.after
    assert "(base digest moved)" in format_plan(p)
    assert all(ly.action == "keep" for ly in plat.layers)
    assert p.has_changes


def test_saved_plan_refused_after_base_moved(project_factory, registry, base_image, tmp_path):
    root = project_factory()
    p = _plan(root)
    saved = tmp_path / "plan.json"
    saved.write_text(p.to_json())
    repo = Reference.parse(base_image.repository).repository
    push_base_image(registry, repo, "v1", files={"/etc/os-release": b"ID=tiny\nVERSION_ID=3\n"})
    with pytest.raises(StaleError, match="moved since the plan"):
        apply_plan(load_project(root), Plan.from_json(saved.read_text()))


def test_saved_plan_applies_when_nothing_moved(project_factory, registry, tmp_path):
    root = project_factory()
    p = _plan(root)
    p2 = Plan.from_json(p.to_json())
    assert p2 == p
    result = apply_plan(load_project(root), p2)
    assert result.plan.image("main").after == p.image("main").after


def test_oci_destination_writes_a_layout(project_factory, registry):
    root = project_factory(repository="oci:out/image", tags=("latest",))
    result = _apply(root)
    layout = OCILayout.open(root / "out" / "image")
    img = layout.read_image("latest")
    assert img.digest == result.plan.image("main").after
    for digest in img.blob_digests():
        assert layout.store.has(digest)
    assert not _plan(root).has_changes


def test_frozen(project_factory, registry):
    root = project_factory()
    with pytest.raises(StaleError, match="needs a kfp.lock"):
        _plan(root, frozen=True)
    _apply(root)
    assert not _plan(root, frozen=True).has_changes
    (root / "src" / "model.py").write_text((root / "src" / "model.py").read_text() + "\n# again\n")
    with pytest.raises(StaleError, match="out of date"):
        _plan(root, frozen=True)


def test_frozen_uses_locked_base_digest(project_factory, registry, base_image):
    root = project_factory()
    _apply(root)
    repo = Reference.parse(base_image.repository).repository
    push_base_image(registry, repo, "v1", files={"/etc/os-release": b"ID=tiny\nVERSION_ID=4\n"})
    p = _plan(root, frozen=True)  # the moved tag is not re-resolved
    assert not p.has_changes
    assert _plan(root).image("main").platforms[0].base.action == "replace"


def test_second_apply_waits_for_the_project_lock(project_factory, registry):
    root = project_factory()
    project = load_project(root)
    p = plan_project(project)
    lk = project_lock(root, timeout=1)
    with lk:
        with pytest.raises(BusyError, match="another `compose-kfp apply`"):
            apply_plan(project, p, lock_timeout=0.2)


def test_two_concurrent_applies_leave_a_consistent_lock(project_factory, registry):
    root = project_factory()
    results, errors = [], []

    def run():
        try:
            results.append(_apply(root))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lock = json.loads((root / "kfp.lock").read_text())
    assert lock["images"]["main"]["digest"] == results[0].plan.image("main").after
    assert not _plan(root).has_changes


def test_render_from_lock(project_factory, registry):
    root = project_factory()
    with pytest.raises(StaleError, match="no kfp.lock"):
        render_from_lock(load_project(root))
    result = _apply(root)
    (root / "build" / "components" / "train.yaml").unlink()
    written = render_from_lock(load_project(root))
    assert written == ["build/components/train.yaml"]
    assert result.plan.image("main").after in (root / "build" / "components" / "train.yaml").read_text()


def test_cli_plan_apply(project_factory, registry, capsys):
    root = project_factory()
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "plan", "--exit-code"])
    assert e.value.code == 2
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("Plan: 3 to add, 0 to replace, 0 to remove;")
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "plan", "--json", "--out", str(root / "saved.json")])
    assert e.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["has_changes"] and doc["summary"]["add"] == 3
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "apply", "--yes", "--plan", str(root / "saved.json")])
    assert e.value.code == 0
    assert "Wrote kfp.lock." in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "apply", "--yes"])
    assert e.value.code == 0
    assert "Nothing to do: nothing uploaded." in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "plan", "--exit-code"])
    assert e.value.code == 0


def test_cli_frozen_stale_exit_code(project_factory, registry, capsys):
    root = project_factory()
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "apply", "--yes", "--frozen"])
    assert e.value.code == StaleError.exit_code
    assert "needs a kfp.lock" in capsys.readouterr().err


def test_requirements_layer_is_built_by_apply_and_reused(project_factory, registry, make_wheel, simple_index,
                                                         tmp_path):
    root = _project_on_an_index(project_factory, make_wheel, simple_index, tmp_path, "tinylib==1.0\n",
                                ("tinylib", "1.0", "X = 1\n"), ("tinylib", "1.1", "X = 2\n"))
    p = _plan(root)
    deps = _layer(p, "deps")
    assert deps.action == "add" and deps.after is None and deps.build
    assert p.image("main").after is None
    assert "(known after apply)" in format_plan(p)
    result = apply_plan(load_project(root), p)
    assert result.built == ("deps",)
    built = _layer(result.plan, "deps")
    assert built.after and built.size > 0
    lock = json.loads((root / "kfp.lock").read_text())
    locked = lock["images"]["main"]["platforms"]["linux/amd64"]["layers"][1]
    assert locked["name"] == "deps" and locked["key"] == deps.key and locked["digest"] == built.after
    assert not _plan(root).has_changes

    # A fresh checkout in CI: no local state; the locked requirements layer is in the registry, so
    # nothing is installed and nothing changes.
    import shutil
    shutil.rmtree(root / ".compose-kfp")
    p_ci = _plan(root, frozen=True)
    assert not p_ci.has_changes and not p_ci.needs_build

    (root / "requirements.txt").write_text("tinylib==1.1\n")
    p2 = _plan(root)
    deps2 = _layer(p2, "deps")
    assert deps2.action == "replace" and deps2.reason == "requirements changed" and deps2.after is None
    with pytest.raises(StaleError):
        _plan(root, frozen=True)


def test_two_platforms_push_an_index(project_factory, registry):
    base = push_base_image(registry, f"test/multi-base-{uuid.uuid4().hex[:8]}", platforms=("linux/amd64", "linux/arm64"))
    root = project_factory(base=base.reference, extra_image='platforms = ["linux/amd64", "linux/arm64"]\n')
    p = _plan(root)
    ip = p.image("main")
    assert ip.is_index and [pp.platform for pp in ip.platforms] == ["linux/amd64", "linux/arm64"]
    assert ip.platforms[0].base.after != ip.platforms[1].base.after
    # platform-independent layers are the same blobs on both platforms
    assert [ly.after for ly in ip.platforms[0].layers] == [ly.after for ly in ip.platforms[1].layers]
    since = len(registry.requests())
    result = apply_plan(load_project(root), p)
    assert len(set(uploads(registry, since))) == len(uploads(registry, since))  # each blob sent once
    ref = Reference.parse(ip.repository)
    with _client(registry) as client:
        media_type, digest, _ = client.head_manifest(ref.repository, result.plan.image("main").tags[0])
    assert media_type == "application/vnd.oci.image.index.v1+json" and digest == ip.after
    assert not _plan(root).has_changes


def test_scratch_base_to_oci_layout(project_factory):
    root = project_factory(base="scratch", repository="oci:out/img")
    result = _apply(root)
    layout = OCILayout.open(root / "out" / "img")
    tag = result.plan.image("main").tags[0]
    img = layout.read_image(tag)
    assert len(img.manifest.layers) == 3 and img.config.os == "linux"
    assert "PYTHONPATH=/opt/compose-kfp" in img.config.config.env
    assert not _plan(root).has_changes


def test_local_oci_base_layers_are_copied_to_the_registry(project_factory, registry, tmp_path):
    from compose_kfp.oci.image import append
    from compose_kfp.oci.layer import build_mapping_layer

    layout = OCILayout.create(tmp_path / "proj" / "base")
    layer = build_mapping_layer({"/etc/os-release": b"ID=local\n"}, store=tmp_path / "scratch-store")
    manifest, config = append(None, None, [layer], env={"PYTHON_VERSION": "3.11.7"}, platform="linux/amd64")
    layout.write_image("v1", manifest, config, layers=[layer])
    root = project_factory(base="oci:base:v1")
    p = _plan(root)
    copies = [t for t in p.image("main").platforms[0].transfers if t.how == "copy"]
    assert [t.digest for t in copies] == [layer.digest]
    since = len(registry.requests())
    apply_plan(load_project(root), p)
    assert layer.digest in uploads(registry, since)
    assert not _plan(root).has_changes


def test_missing_base_is_a_config_error(project_factory, registry):
    from compose_kfp.errors import ConfigError

    root = project_factory(base=f"{registry.host}/test/no-such-base:v9")
    with pytest.raises(ConfigError, match="was not found"):
        _plan(root)


def test_step_with_own_layers_gets_its_own_image_sharing_blobs(project_factory, registry):
    root = project_factory()
    (root / "extra").mkdir()
    (root / "extra" / "notes.txt").write_text("only for report\n")
    with open(root / "kfp.toml", "a") as f:
        f.write('\n[steps.report]\nfunction = "src/model.py:load"\nlayers = [{ name = "extra", paths = ["extra"] }]\n')
    p = _plan(root)
    assert [i.name for i in p.images] == ["main", "report"]
    main_layers = {ly.name: ly.after for ly in p.image("main").platforms[0].layers}
    report_layers = {ly.name: ly.after for ly in p.image("report").platforms[0].layers}
    assert list(report_layers) == ["runtime", "data", "src", "extra"]
    assert all(report_layers[n] == d for n, d in main_layers.items())
    since = len(registry.requests())
    result = apply_plan(load_project(root), p)
    sent = uploads(registry, since)
    assert len(sent) == len(set(sent))  # shared layers sent once
    comp = (root / "build" / "components" / "report.yaml").read_text()
    assert result.plan.image("report").reference in comp
    assert result.plan.image("main").reference in (root / "build" / "components" / "train.yaml").read_text()


def test_saved_plan_refused_after_remote_tag_moved(project_factory, registry, tmp_path):
    root = project_factory(tags=("latest",))
    _apply(root)
    p = _plan(root)
    (root / "src" / "model.py").write_text((root / "src" / "model.py").read_text() + "\n# x\n")
    other = project_factory("other", repository=p.image("main").repository, tags=("latest",), env={"X": "1"})
    _apply(other)  # someone else moves :latest
    with pytest.raises(StaleError, match="latest moved since the plan"):
        apply_plan(load_project(root), Plan.from_json(p.to_json()))


def test_cli_lock_pins_requirements(project_factory, registry, make_wheel, simple_index, tmp_path, capsys):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinylib", "1.0", modules={"tinylib/__init__.py": "X = 1\n"})
    index = simple_index(wheels)
    root = project_factory(requirements="tinylib\n", extra_image=f'index_url = "{index.url}"\n')
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "lock"])
    assert e.value.code == 0, capsys.readouterr().err
    text = (root / "requirements.lock.txt").read_text()
    assert "tinylib==1.0" in text and "--hash=sha256:" in text
    assert "1 pinned package(s)" in capsys.readouterr().out


def test_cli_apply_json(project_factory, registry, capsys):
    root = project_factory()
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "apply", "--json"])
    assert e.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["changed"] and doc["result"]["uploaded_bytes"] > 0
    assert doc["result"]["images"]["main"]["reference"].startswith(doc["plan"]["images"][0]["repository"] + "@sha256:")
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "apply", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"plan": doc["plan"], "result": None, "changed": False}


def test_deleted_lock_is_written_again_without_uploads(project_factory, registry):
    root = project_factory(tags=("latest",))
    _apply(root)
    (root / "kfp.lock").unlink()
    p = _plan(root)
    assert p.image("main").status == "unchanged" and p.lock_changes and p.has_changes
    assert "kfp.lock will be written." in format_plan(p)
    since = len(registry.requests())
    result = apply_plan(load_project(root), p)
    assert result.lock_written and uploads(registry, since) == []
    assert not _plan(root).has_changes


def test_docker_format_images_plan_by_layer_name(project_factory, registry):
    root = project_factory(extra_image='format = "docker"\n', tags=("latest",))
    first = _apply(root)
    assert first.plan.image("main").platforms[0].recipe.family == "docker"
    assert not _plan(root).has_changes
    (root / "src" / "model.py").write_text((root / "src" / "model.py").read_text() + "\n# d\n")
    expected = {"runtime": "keep", "data": "keep", "src": "replace"}
    p = _plan(root)  # names from kfp.lock (Docker manifests carry no layer annotations)
    assert {ly.name: ly.action for ly in p.image("main").platforms[0].layers} == expected
    (root / "kfp.lock").unlink()
    p = _plan(root)  # found by tag; names by position
    assert p.image("main").before_source == "tag:latest"
    assert {ly.name: ly.action for ly in p.image("main").platforms[0].layers} == expected


def test_docker_archive_base(project_factory, registry, tmp_path):
    root = project_factory(base="docker-archive:base.tar")
    write_docker_save(root / "base.tar", {"etc/os-release": b"ID=archive\n"})
    result = _apply(root)
    plat = result.plan.image("main").platforms[0]
    assert plat.recipe.family == "docker" and len(result.uploaded) == 5  # base layer, 3 layers, config
    assert list((root / ".compose-kfp" / "cache" / "archives").glob("*.json"))
    assert not _plan(root).has_changes


def test_base_from_another_registry_is_copied_with_env_credentials(project_factory, registry, registry_basic,
                                                                    base_image, monkeypatch, capsys):
    monkeypatch.setenv("DEST_USER", registry_basic.username)
    monkeypatch.setenv("DEST_PASS", registry_basic.password)
    root = project_factory(repository=f"{registry_basic.host}/test/app-{uuid.uuid4().hex[:8]}",
                           extra_image='[image.auth]\nusername_env = "DEST_USER"\npassword_env = "DEST_PASS"\n\n')
    p = _plan(root)
    copies = [t for t in p.image("main").platforms[0].transfers if t.how == "copy"]
    assert [t.digest for t in copies] == list(base_image.layers) and copies[0].size > 0
    since = len(registry_basic.requests())
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "apply", "--yes", "--json"])
    assert e.value.code == 0
    captured = capsys.readouterr()
    assert registry_basic.password not in captured.out + captured.err
    assert base_image.layers[0] in uploads(registry_basic, since)
    assert not _plan(root).has_changes


def test_two_platforms_to_oci_layout(project_factory):
    root = project_factory(base="scratch", repository="oci:out/multi", tags=("v1",),
                           extra_image='platforms = ["linux/amd64", "linux/arm64"]\n')
    result = _apply(root)
    ip = result.plan.image("main")
    layout = OCILayout.open(root / "out" / "multi")
    assert layout.tags()["v1"].digest == ip.after
    assert layout.tags()["v1"].media_type == "application/vnd.oci.image.index.v1+json"
    for platform in ("linux/amd64", "linux/arm64"):
        img = layout.read_image("v1", platform=platform)
        assert img.config.architecture == platform.split("/")[1]
    assert not _plan(root).has_changes


def test_third_party_component_image_is_pinned_by_digest(project_factory, registry, base_image):
    import yaml

    root = project_factory()
    (root / "components").mkdir()
    (root / "components" / "echo.yaml").write_text(
        "name: Echo\ninputs:\n- {name: text, type: String}\nimplementation:\n  container:\n"
        f"    image: {base_image.reference}\n    command: [sh, -c, 'echo \"$0\"', {{inputValue: text}}]\n")
    with open(root / "kfp.toml", "a") as f:
        f.write('\n[steps.echo]\ncomponent = "components/echo.yaml"\n')
    pinned = f"{base_image.repository}@{base_image.digest}"
    p = _plan(root)
    assert dict(p.component_images) == {"echo": pinned}
    _apply(root)
    doc = yaml.safe_load((root / "build" / "components" / "echo.yaml").read_text())
    assert doc["implementation"]["container"]["image"] == pinned
    assert json.loads((root / "kfp.lock").read_text())["components"] == {"echo": pinned}
    (root / "build" / "components" / "echo.yaml").unlink()
    assert render_from_lock(load_project(root)) == ["build/components/echo.yaml"]
    assert not _plan(root, frozen=True).has_changes


def test_base_built_by_compose_kfp_is_not_taken_for_project_layers(project_factory, registry):
    base_repo = f"{registry.host}/test/ckfp-base-{uuid.uuid4().hex[:8]}"
    base_root = project_factory("base", base="scratch", repository=base_repo, tags=("v1",), pipeline=False,
                                extra_image='python = "3.11"\n')
    _apply(base_root)
    root = project_factory("app", base=f"{base_repo}:v1", tags=("latest",))
    first = _apply(root)
    plat = first.plan.image("main").platforms[0]
    assert [ly.action for ly in plat.layers] == ["add", "add", "add"]
    p = _plan(root)
    assert not p.has_changes
    assert not any(ly.action == "remove" for ly in p.image("main").platforms[0].layers)
    (root / "kfp.lock").unlink()  # without kfp.lock the manifest annotation still tells the base layers apart
    p = _plan(root)
    assert p.image("main").before_source == "tag:latest"
    assert [(ly.name, ly.action) for ly in p.image("main").platforms[0].layers] == [
        ("runtime", "keep"), ("data", "keep"), ("src", "keep")]


def test_cli_repository_flag_wins_over_environment(project_factory, registry, capsys, monkeypatch):
    root = project_factory()
    monkeypatch.setenv("COMPOSE_KFP_REPOSITORY", "oci:from-env")
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "plan", "--json"])
    assert json.loads(capsys.readouterr().out)["images"][0]["repository"] == "oci:from-env"
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "plan", "--json", "--repository", "oci:from-flag"])
    assert e.value.code == 0
    assert json.loads(capsys.readouterr().out)["images"][0]["repository"] == "oci:from-flag"


def test_moved_tag_is_pointed_back(project_factory, registry, capsys):
    root = project_factory(tags=("latest",))
    first = _apply(root)
    repo = first.plan.image("main").repository
    _apply(project_factory("other", repository=repo, tags=("latest",), env={"X": "2"}))
    p = _plan(root)
    assert p.image("main").status == "retag" and p.image("main").stale_tags == ("latest",)
    since = len(registry.requests())
    with pytest.raises(SystemExit) as e:
        main(["-q", "-C", str(root), "apply", "--yes"])
    assert e.value.code == 0 and capsys.readouterr().out == ""  # -q prints nothing
    assert uploads(registry, since) == [] and "latest" in manifest_puts(registry, since)
    ref = Reference.parse(repo)
    with _client(registry) as client:
        assert client.head_manifest(ref.repository, "latest")[1] == first.plan.image("main").after


def test_cli_render_target_kfp_from_lock(project_factory, registry, capsys):
    """`render --target kfp` writes a KFP v2 package from kfp.lock's digests; it loads back in the SDK."""
    from kfp import components as kfp_components

    root = project_factory()
    _apply(root)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "render", "--target", "kfp", "--output-dir", "out"])
    assert e.value.code == 0
    assert "Rendered out/pipeline.yaml" in capsys.readouterr().out
    package = root / "out" / "pipeline.yaml"
    pipeline = kfp_components.load_component_from_file(str(package))
    assert pipeline.name
    lock = json.loads((root / "kfp.lock").read_text())
    assert lock["images"]["main"]["digest"] in package.read_text()
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "render", "--target", "helm"])
    assert e.value.code == 1
    assert "render.targets" in capsys.readouterr().err


def test_built_layers_upload_while_the_requirements_layer_installs(project_factory, registry, make_wheel,
                                                                 simple_index, tmp_path):
    """DESIGN: uploading starts as soon as a layer is finished. The data and src layers (built by plan) are
    in the registry before the requirements installer even starts."""
    import threading

    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinylib", "1.0", modules={"tinylib/__init__.py": "X = 1\n"})
    index = simple_index(wheels)
    root = project_factory(requirements="tinylib==1.0\n", extra_image=f'index_url = "{index.url}"\n')
    project = load_project(root)
    p = plan_project(project)
    early = {_layer(p, "data").after, _layer(p, "src").after}
    uploaded: set[str] = set()
    all_early = threading.Event()
    seen_at_install: list[set[str]] = []

    def progress(event, what, done, total):
        if event == "upload" and what in early and done == total:
            uploaded.add(what)
            if early <= uploaded:
                all_early.set()
        if event == "install":
            all_early.wait(timeout=20)
            seen_at_install.append(set(uploaded))

    result = apply_plan(project, p, progress=progress)
    assert seen_at_install == [early]
    assert {d for d, _ in result.uploaded} >= early | {_layer(result.plan, "deps").after}
    with _client(registry) as client:
        repo = Reference.parse(p.image("main").repository).repository
        assert all(client.blob_exists(repo, d) for d in early)


def test_ctrl_c_during_an_upload_exits_at_once_and_tags_nothing(project_factory, registry, fault_proxy):
    """SIGINT while a blob upload hangs: exit 130 within seconds (not when the upload ends), with the message
    that nothing was tagged; no tag, no kfp.lock."""
    import signal
    import subprocess
    import sys

    from tests.fixtures.registry import Fault

    proxy = fault_proxy(registry)
    repo = f"test/ctrlc-{uuid.uuid4().hex[:8]}"
    root = project_factory(repository=f"{proxy.host}/{repo}")
    hang = Fault("PUT", r"/blobs/uploads/", "delay", delay=20.0, times=-1)
    proxy.add(hang)
    proc = subprocess.Popen([sys.executable, "-m", "compose_kfp", "-C", str(root), "apply", "-y"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while hang.fired == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hang.fired, proc.communicate(timeout=30)
        time.sleep(0.3)  # the upload is now waiting in the proxy
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert took < 5, f"exit took {took:.1f} s"
    assert "interrupted: nothing was tagged" in err and "Traceback" not in err
    assert not (root / "kfp.lock").exists()
    from compose_kfp.oci.errors import NotFound

    try:
        tags = _client(registry).list_tags(repo)
    except NotFound:  # the repository does not even exist: nothing was completed
        tags = []
    assert tags == []


def test_a_docker_base_goes_into_an_oci_layout_with_oci_media_types(tmp_path, registry, skopeo_inspect,
                                                                     umoci_unpack, capsys):
    """Issue 19.4: a Docker v2.2 base and ``repository = "oci:PATH"``: the layout gets an OCI manifest and config
    (converted, as ``skopeo copy docker://... oci:...`` does), the base layer keeps its digest with the OCI layer
    media type, and skopeo and umoci read the result; ``format = "docker"`` there is refused with its key."""
    from compose_kfp.oci import image as I
    from compose_kfp.oci.layer import build_mapping_layer
    from compose_kfp.oci.registry import push_image
    from tests.fixtures.project import write_project

    layer = build_mapping_layer({"/etc/os-release": b"ID=dockerbase\n"}, store=str(tmp_path / "blobs"))
    manifest, config = I.append(None, None, [layer], env={"PYTHON_VERSION": "3.11.7"}, platform="linux/amd64",
                                family="docker")
    assert manifest.media_type == I.MEDIA_TYPE_DOCKER_MANIFEST
    repo = f"test/dockerbase-{uuid.uuid4().hex[:8]}"
    client = _client(registry)
    try:
        push_image(client, repo, ["v1"], manifest.raw_bytes(), manifest.media_type, config.raw_bytes(), [layer])
    finally:
        client.close()
    root = write_project(tmp_path / "proj", base=f"{registry.host}/{repo}:v1", repository="oci:out/layout")
    result = _apply(root)
    assert result.plan.image("main").platforms[0].recipe.family == "oci"
    layout = OCILayout.open(root / "out" / "layout")
    tag = next(t for t in layout.tags() if t.startswith("kfp-"))
    raw = json.loads(layout.store.read_bytes(layout.tags()[tag].digest))
    assert raw["mediaType"] == I.MEDIA_TYPE_OCI_MANIFEST
    assert raw["config"]["mediaType"] == I.MEDIA_TYPE_OCI_CONFIG
    assert raw["layers"][0] == {"mediaType": I.MEDIA_TYPE_OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
    assert {d["mediaType"] for d in raw["layers"]} == {I.MEDIA_TYPE_OCI_LAYER_GZIP}
    inspected = skopeo_inspect(f"oci:{layout.path}:{tag}")
    assert inspected["Layers"][0] == layer.digest and len(inspected["Layers"]) == 4
    rootfs = umoci_unpack(layout.path, tag)
    assert (rootfs / "etc" / "os-release").read_text() == "ID=dockerbase\n"
    assert (rootfs / "app" / "src" / "model.py").is_file()
    assert not _plan(root).has_changes

    text = (root / "kfp.toml").read_text().replace('repository = "oci:out/layout"',
                                                   'repository = "oci:out/layout"\nformat = "docker"')
    (root / "kfp.toml").write_text(text)
    line = text.splitlines().index('format = "docker"') + 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "plan"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {root / 'kfp.toml'}:{line}: image.format: Docker v2.2 manifests cannot go into "
                          "the OCI image layout 'oci:out/layout'"), err


def test_after_lock_plan_installs_from_the_lock_until_the_requirements_change(project_factory, registry, make_wheel,
                                                                             simple_index, tmp_path, capsys):
    """Issue 19.7: after `compose-kfp lock` the warning is gone and the layer installs from the .lock.txt file
    (as poetry and uv use a current lock); editing requirements.txt brings a warning that says to lock again."""
    root = _project_on_an_index(project_factory, make_wheel, simple_index, tmp_path, "tinylib==1.0\n",
                                ("tinylib", "1.0", "X = 1\n"), ("otherlib", "2.0", "Y = 2\n"))
    before = _plan(root)
    assert [w for w in before.warnings if "pinned but not locked" in w and "run `compose-kfp lock` (it writes "
            "requirements.lock.txt, which plan and apply then install from" in w], before.warnings
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["-C", str(root), "lock"])
    assert e.value.code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.startswith("requirements.lock.txt: 1 pinned package(s) for ")
    assert "`plan` and `apply` install image.layers.0 from it while requirements.txt is unchanged" in out
    assert (root / "requirements.lock.txt").read_text().startswith("# compose-kfp lock of requirements.txt sha256:")
    after = _plan(root)
    assert after.warnings == ()
    assert _layer(after, "deps").action == "add"
    result = _apply(root)
    assert not _plan(root).has_changes
    # the layer was installed from the lock: the same key as a layer naming the lock file itself
    from compose_kfp.build.images import desired_images
    spec = next(s for s in desired_images(load_project(root).manifest, root)[0].layers if s.name == "deps")
    assert spec.requirements == str(root / "requirements.lock.txt")
    assert spec.locked_from == str(root / "requirements.txt")
    assert _layer(result.plan, "deps").key == _layer(after, "deps").key
    # requirements.txt edited: installed as written, with a warning to lock again
    (root / "requirements.txt").write_text("tinylib==1.0\notherlib==2.0\n")
    edited = _plan(root)
    assert [w for w in edited.warnings if "run `compose-kfp lock` again (requirements.lock.txt was locked from "
            "an earlier requirements.txt" in w], edited.warnings
    assert _layer(edited, "deps").action == "replace"


# --------------------------------------------------------------------------- build and upload as one stream (issue 17)


def _cli_json(*args: str) -> tuple[int, dict | None, str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "compose_kfp", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                              filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))))
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, proc.stderr


def _big_data_file(root) -> None:
    """Give the project's ``data`` layer an incompressible file over one stream chunk (8 MiB), so streaming it
    takes ``PATCH`` chunks; smaller layers go as one ``POST`` and one ``PUT``."""
    from compose_kfp.oci.registry import STREAM_CHUNK_SIZE

    (root / "data" / "noise.bin").write_bytes(os.urandom(STREAM_CHUNK_SIZE + 1024 * 1024))


def test_apply_yes_uploads_each_layer_while_building_it(project_factory, registry, fault_proxy):
    """`apply -y` on a cold project sends every layer while compressing it (a layer over one chunk as PATCH
    chunks, the rest as the final chunk of PUT ?digest=), before the config and manifest; each byte goes up
    once; the image is the one `plan` describes (same digests as a plan made from the same files) and a rerun
    has nothing to do."""
    proxy = fault_proxy(registry)
    repo = f"test/stream-{uuid.uuid4().hex[:8]}"
    root = project_factory(repository=f"{proxy.host}/{repo}")
    _big_data_file(root)
    code, out, err = _cli_json("-C", str(root), "apply", "-y", "--json")
    assert code == 0, err
    plat = out["plan"]["images"][0]["platforms"][0]
    layers = {ly["name"]: ly for ly in plat["layers"]}
    built = [ly for ly in layers.values() if ly["name"] != "runtime" or ly["action"] == "add"]
    uploaded = {u["digest"]: u["size"] for u in out["result"]["uploaded"]}
    assert {ly["after"] for ly in built} <= set(uploaded)
    rows = proxy.log
    patched = [i for i, r in enumerate(rows) if r.method == "PATCH"]
    committed = [i for i, r in enumerate(rows) if r.method == "PUT" and "/blobs/uploads/" in r.path]
    manifest_put = min(i for i, r in enumerate(rows) if r.method == "PUT" and "/manifests/" in r.path)
    assert patched and max(patched + committed) < manifest_put
    assert len(committed) == len(uploaded)  # one commit per blob: nothing sent twice, nothing retried
    sent = sum(r.bytes_in for r in rows if r.method in ("PATCH", "PUT") and "/blobs/uploads/" in r.path)
    assert sent < sum(uploaded.values()) + 64 * 1024  # every blob once (plus the HTTP headers)
    assert not [r for r in rows if r.method == "PUT" and "/blobs/uploads/" in r.path and r.status >= 400]
    # the same files planned from scratch give the same layer digests (streaming changes no byte)
    import shutil

    shutil.rmtree(root / ".compose-kfp")
    again = _plan(root)
    assert not again.has_changes
    assert {ly.name: ly.after for ly in again.image("main").platforms[0].layers} == {
        name: ly["after"] for name, ly in layers.items()}


@pytest.mark.parametrize("fault, converges", [
    # every chunk of every stream broken: the blobs are sent again from the local store (and succeed)
    ("patch", True),
    # the registry refuses every blob commit: apply fails, nothing is tagged, no kfp.lock
    ("put", False),
])
def test_failed_stream_midway_leaves_no_tag_and_a_rerun_converges(project_factory, registry, fault_proxy, fault,
                                                                  converges):
    proxy = fault_proxy(registry)
    repo = f"test/streamfault-{uuid.uuid4().hex[:8]}"
    root = project_factory(repository=f"{proxy.host}/{repo}")
    _big_data_file(root)
    from tests.fixtures.registry import Fault

    if fault == "patch":
        proxy.add(Fault("PATCH", r"/blobs/uploads/", "reset_midway", times=-1))
    else:
        proxy.add(Fault("PUT", r"/blobs/uploads/", "status", status=400, times=-1))
    code, out, err = _cli_json("-C", str(root), "apply", "-y", "--json")
    from compose_kfp.oci.errors import NotFound

    def tags() -> list[str]:
        try:
            return _client(registry).list_tags(repo)
        except NotFound:
            return []

    if converges:
        assert code == 0, err
        assert tags() and (root / "kfp.lock").exists()
    else:
        assert code == 4, err
        assert tags() == [] and not (root / "kfp.lock").exists()
        proxy.faults.clear()
        code, out, err = _cli_json("-C", str(root), "apply", "-y", "--json")
        assert code == 0, err
        assert tags()
    assert not _plan(root).has_changes
    code, out, err = _cli_json("-C", str(root), "apply", "-y", "--json")
    assert code == 0 and out["result"] is None, err
