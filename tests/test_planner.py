"""The pure planner, with in-memory desired images and observations (no registry, no files)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from compose_kfp.build.images import desired_images
from compose_kfp.build.spec import LayerSpec, image_env
from compose_kfp.build.state import CurrentImage, LayerState, Observed, PlatformImageState
from compose_kfp.oci.image import Manifest
from compose_kfp.planner import (
    Plan,
    assemble,
    content_tag,
    format_plan,
    human_bytes,
    plan,
    plan_files,
)
from compose_kfp.schema import Manifest as KfpManifest
from tests.fixtures.planning import (
    GZ,
    SRC_FILES_1,
    SRC_FILES_2,
    base_state,
    d,
    _L,
    image_spec,
    layers_v,
    observed,
)


def current_from(p: Plan) -> dict[str, CurrentImage]:
    """The destination state after ``p`` was applied."""
    out = {}
    for image in p.images:
        plats = {}
        for pp in image.platforms:
            plats[pp.platform] = PlatformImageState(
                manifest=pp.manifest_after, config=pp.config_after, base=pp.base.after,
                layers=tuple((ly.name, ly.after, ly.size) for ly in pp.layers), base_layers=1)
        out[image.name] = CurrentImage(digest=image.after, source="lock", exists=True, platforms=plats)
    return out


def blobs_of(p: Plan) -> frozenset[str]:
    out = set()
    for image in p.images:
        for pp in image.platforms:
            out |= {ly.after for ly in pp.layers if ly.after}
            out.add(pp.config_after)
            out |= {t.digest for t in pp.transfers if t.digest}
    return frozenset(out)


def test_create_adds_every_layer_and_counts_bytes():
    img = image_spec()
    p = plan([img], observed())
    ip = p.image("main")
    assert ip.status == "create"
    assert [ly.action for ly in ip.platforms[0].layers] == ["add", "add", "add"]
    assert ip.after == ip.platforms[0].manifest_after and ip.tags[0] == content_tag(ip.after)
    s = p.summary
    assert (s.add, s.replace, s.remove) == (3, 0, 0)
    cfg_size = next(t.size for t in ip.platforms[0].transfers if t.what == "config")
    # the base layer is mounted (same registry): zero bytes
    assert s.upload_bytes == 2000 + 50000 + 300 + cfg_size
    assert any(t.how == "mount" and t.size == 0 for t in ip.platforms[0].transfers)
    assert p.has_changes


def test_base_layers_from_another_registry_are_copied_and_counted():
    p = plan([image_spec()], observed(same_registry=False))
    copies = [t for t in p.image("main").platforms[0].transfers if t.how == "copy"]
    assert len(copies) == 1 and copies[0].size == 1000


def test_nothing_changed_means_no_changes_and_zero_upload():
    img = image_spec()
    first = plan([img], observed())
    again = plan([img], observed(current=current_from(first), remote=blobs_of(first),
                                 tags={}))
    ip = again.image("main")
    assert ip.status == "unchanged"
    assert all(ly.action == "keep" for ly in ip.platforms[0].layers)
    assert again.summary.upload_bytes == 0 and not again.has_changes
    assert "No changes." in format_plan(again)


def test_one_layer_replaced_names_changed_files():
    img = image_spec()
    first = plan([img], observed())
    before_src = first.image("main").platforms[0].layers[2].after
    p = plan([img], observed(layers=layers_v(src="2", files=SRC_FILES_2), current=current_from(first),
                             remote=blobs_of(first), records={before_src: SRC_FILES_1}))
    layers = {ly.name: ly for ly in p.image("main").platforms[0].layers}
    assert layers["src"].action == "replace" and layers["runtime"].action == "keep"
    assert layers["src"].reason == "src/a.py changed; src/c.py added"
    pp = p.image("main").platforms[0]
    uploads = {t.digest for t in pp.transfers}
    assert uploads == {layers["src"].after, pp.config_after}
    assert p.summary.upload_bytes == 300 + pp.transfers[-1].size
    text = format_plan(p)
    assert "~ src" in text and "-> sha256:" in text and "(src/a.py changed; src/c.py added" in text
    assert text.rstrip().splitlines()[-1].startswith("Plan: 0 to add, 1 to replace, 0 to remove; ")


def test_requirements_changed_is_known_after_apply():
    img = image_spec()
    first = plan([img], observed())
    unknown = LayerState("deps", "requirements", key=d("key-deps-2"), digest=None, diff_id=None, size=None,
                         media_type=GZ, local=False, note="requirements changed")
    layers = (layers_v()[0], unknown, layers_v()[2])
    p = plan([img], observed(layers=layers, current=current_from(first), remote=blobs_of(first)))
    ip = p.image("main")
    deps = ip.platforms[0].layers[1]
    assert deps.action == "replace" and deps.after is None and deps.build and deps.reason == "requirements changed"
    assert ip.after is None and ip.platforms[0].manifest_after is None and ip.status == "update"
    assert not any(t.startswith("kfp-") for t in ip.tags)
    assert p.summary.unknown_upload and p.needs_build
    text = format_plan(p)
    assert "(known after apply)" in text and "kfp-(known after apply)" in text


def test_env_change_changes_only_config_and_manifest():
    first = plan([image_spec()], observed())
    p = plan([image_spec(env=(("MODE", "b"),))], observed(current=current_from(first), remote=blobs_of(first)))
    pp = p.image("main").platforms[0]
    assert all(ly.action == "keep" for ly in pp.layers)
    assert pp.config_changed and pp.manifest_changed
    assert [t.what for t in pp.transfers] == ["config"]
    s = p.summary
    assert (s.add, s.replace, s.remove) == (0, 0, 0) and p.has_changes


def test_removed_layer():
    first = plan([image_spec()], observed())
    spec = image_spec(layers=image_spec().layers[:2])
    obs = observed(layers=layers_v()[:2], current=current_from(first), remote=blobs_of(first))
    p = plan([spec], obs)
    removed = [ly for ly in p.image("main").platforms[0].layers if ly.action == "remove"]
    assert [ly.name for ly in removed] == ["src"] and removed[0].after is None
    assert p.summary.remove == 1
    assert "- src" in format_plan(p)


def test_base_moved():
    first = plan([image_spec()], observed())
    moved = base_state(version="2")
    p = plan([image_spec()], observed(base=moved, current=current_from(first), remote=blobs_of(first)))
    pp = p.image("main").platforms[0]
    assert pp.base.action == "replace" and pp.base.after == moved.digest and pp.base.before != moved.digest
    assert all(ly.action == "keep" for ly in pp.layers)
    assert "~ (base) reg:5000/base:v1" in format_plan(p)
    assert p.summary.replace == 1


def test_missing_image_is_restored_with_blobs_already_there():
    first = plan([image_spec()], observed())
    cur = {"main": dataclasses.replace(current_from(first)["main"], exists=False)}
    p = plan([image_spec()], observed(current=cur, remote=blobs_of(first)))
    ip = p.image("main")
    assert ip.status == "restore" and ip.after == first.image("main").after
    assert p.summary.upload_bytes == 0 and p.has_changes


def test_stale_tag_is_retagged():
    first = plan([image_spec(tags=("latest",))], observed())
    p = plan([image_spec(tags=("latest",))], observed(current=current_from(first), remote=blobs_of(first),
                                                      tags={"latest": d("something else")}))
    ip = p.image("main")
    assert ip.status == "retag" and ip.stale_tags == ("latest",)
    assert ip.observed_tags == (("latest", d("something else")),)
    assert ip.tags == (content_tag(ip.after), "latest")


def test_multi_platform_builds_an_index():
    spec = image_spec(platforms=("linux/amd64", "linux/arm64"))
    arm = base_state("linux/arm64")
    obs = Observed(bases={"linux/amd64": base_state(), "linux/arm64": arm},
                   layers={("main", "linux/amd64"): layers_v(), ("main", "linux/arm64"): layers_v(deps="arm")},
                   current={}, same_registry=True)
    p = plan([spec], obs)
    ip = p.image("main")
    assert ip.is_index and len(ip.platforms) == 2
    assert ip.after not in (ip.platforms[0].manifest_after, ip.platforms[1].manifest_after)
    # the shared layers are the same blobs: counted once
    runtime_digest = ip.platforms[0].layers[0].after
    assert runtime_digest == ip.platforms[1].layers[0].after
    total = p.summary.upload_bytes
    per_platform = sum(t.size for pp in ip.platforms for t in pp.transfers)
    assert total == per_platform - 2000 - 300


def test_plan_json_round_trip_and_files():
    p = plan([image_spec()], observed(), project="demo", root="/p",
             rendered={"build/components/train.yaml": "ab" * 32})
    assert p.files[0].action == "add"
    again = Plan.from_json(p.to_json())
    assert again == p
    with pytest.raises(ValueError):
        Plan.from_json('{"version": 99}')


def test_plan_files_actions():
    out = plan_files({"b/c/x.yaml": "1", "b/w.yaml": None, "b/c/y.yaml": "2"},
                     {"b/c/x.yaml": "1", "b/w.yaml": "0", "b/c/old.yaml": "9", "b/other.txt": "5"},
                     managed_prefixes=["b/c/"])
    assert [(f.path, f.action) for f in out] == [("b/c/old.yaml", "remove"), ("b/c/x.yaml", "keep"),
                                                 ("b/c/y.yaml", "add"), ("b/w.yaml", "change")]


def test_assemble_is_deterministic_and_env_order():
    p = plan([image_spec()], observed())
    pp = p.image("main").platforms[0]
    layers = [_L(ly.media_type, ly.after, ly.diff_id, ly.size) for ly in pp.layers]
    m1, c1 = assemble(pp.recipe, layers)
    m2, _ = assemble(pp.recipe, layers)
    assert m1.digest == m2.digest == pp.manifest_after
    env = c1.config.env
    assert env[0] == "PATH=/opt/compose-kfp/bin:/usr/bin"
    assert "PYTHONPATH=/opt/compose-kfp:/opt/compose-kfp/site-packages" in env
    assert env[-1] == "MODE=a"
    names = [ly.annotations["io.compose-kfp.layer"] for ly in Manifest.from_bytes(m1.raw_bytes()).layers[1:]]
    assert names == ["runtime", "deps", "src"]


def test_image_env_without_deps_only_adds_runtime_path():
    spec = image_spec(layers=(LayerSpec("runtime", "runtime"),), env=(("PYTHONPATH", "/x"),))
    assert image_env(spec, ["PATH=/bin"]) == ["PATH=/bin", "PYTHONPATH=/x"]
    spec = image_spec(layers=(LayerSpec("runtime", "runtime"),), env=())
    assert image_env(spec, ["PYTHONPATH=/lib"]) == ["PYTHONPATH=/opt/compose-kfp:/lib"]


def test_desired_images_step_image_shares_layers(tmp_path):
    m = KfpManifest.model_validate({
        "project": {"name": "x"},
        "image": {"base": "scratch", "repository": "oci:out", "layers": [{"name": "src", "paths": ["src"]}]},
        "steps": {"a": {"function": "src/m.py:a"},
                  "b": {"function": "src/m.py:b", "layers": [{"name": "extra", "paths": ["extra"]}]},
                  "c": {"component": "c.yaml"}},
    })
    main, b = desired_images(m, tmp_path)
    assert main.name == "main" and main.steps == ("a",)
    assert [ly.name for ly in main.layers] == ["runtime", "src"]
    assert b.name == "b" and b.steps == ("b",)
    assert [ly.name for ly in b.layers] == ["runtime", "src", "extra"]
    assert b.layers[:2] == main.layers
    assert main.layers[1].includes == ((str(tmp_path / "src"), "/app/src"),)


def test_no_function_step_means_no_runtime_layer(tmp_path):
    m = KfpManifest.model_validate({
        "project": {"name": "x"},
        "image": {"base": "scratch", "repository": "oci:out", "layers": [{"name": "root", "rootfs": "tree"}]},
    })
    (main,) = desired_images(m, tmp_path)
    assert [ly.kind for ly in main.layers] == ["rootfs"] and not main.has_runtime


def test_helpers():
    assert content_tag("sha256:" + "0123456789abcdef" * 4) == "kfp-0123456789abcdef"
    assert human_bytes(12345) == "12.3 kB" and human_bytes(512) == "512 B" and human_bytes(10 ** 9) == "1.0 GB"


# --------------------------------------------------------------------------- requirement warnings


H = "sha256:" + "ab" * 32


def test_requirement_warnings_are_carried_into_the_plan_text_and_json(tmp_path):
    from compose_kfp.build.observe import requirements_warnings

    req = tmp_path / "requirements.txt"
    req.write_text(f"numpy==2.1.0 --hash={H}\nsix --hash={H}\npandas>=2\n")
    img = image_spec(layers=(LayerSpec("deps", "requirements", requirements=str(req.resolve())),))
    warnings = requirements_warnings([img, dataclasses.replace(img, name="other")], tmp_path)
    # `six --hash=...` has a hash but no `==` version: not pinned; each file is read once; paths are relative.
    assert [w.split(":", 2)[:2] for w in warnings] == [["requirements.txt", "2"], ["requirements.txt", "3"]]
    assert "`six` is not pinned" in warnings[0] and "`pandas` is not pinned" in warnings[1]
    assert str(tmp_path) not in "".join(warnings)

    p = plan([image_spec()], dataclasses.replace(observed(), warnings=warnings))
    assert p.warnings == warnings
    text = format_plan(p)
    lines = text.splitlines()
    at = lines.index("Warnings:")
    assert lines[at + 1:at + 3] == [f"  ! {w}" for w in warnings]
    assert lines[-1].startswith("Plan: ") and at < len(lines) - 1
    assert json.loads(p.to_json())["warnings"] == list(warnings)
    assert Plan.from_json(p.to_json()) == p

    unchanged = plan([image_spec()], dataclasses.replace(observed(current=current_from(p)), warnings=warnings))
    text = format_plan(unchanged)
    assert "Warnings:" in text and text.rstrip().endswith("match kfp.toml.")
    assert text.index("Warnings:") < text.index("No changes.")


def test_pinned_and_hashed_requirements_give_no_warnings(tmp_path):
    from compose_kfp.build.observe import requirements_warnings

    req = tmp_path / "requirements.txt"
    req.write_text(f"numpy==2.1.0 --hash={H}\nsix==1.16.0 \\\n    --hash={H}\n")
    img = image_spec(layers=(LayerSpec("deps", "requirements", requirements=str(req)),))
    assert requirements_warnings([img], tmp_path) == ()
    p = plan([image_spec()], observed())
    assert p.warnings == () and "Warnings:" not in format_plan(p)
