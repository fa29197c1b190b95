"""The README and examples/iris/README.md show how to start the local registry and how the example follows
``REGISTRY_PORT`` through ``COMPOSE_KFP_BASE`` / ``COMPOSE_KFP_REPOSITORY`` (issue 20, item 10f): the documented
commands are checked against scripts/demo.sh and the real loader."""

from __future__ import annotations

import re
from pathlib import Path

from compose_kfp.manifest.load import load_manifest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_README = (REPO / "examples" / "iris" / "README.md").read_text(encoding="utf-8")
README = (REPO / "README.md").read_text(encoding="utf-8")


def _blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_the_example_readme_starts_the_registry_before_compose_kfp():
    first = next(b for b in _blocks(EXAMPLE_README) if "compose-kfp plan" in b)
    assert first.index("scripts/registry.sh start") < first.index("scripts/make-base-image.sh") \
        < first.index("compose-kfp plan")
    assert (REPO / "scripts" / "registry.sh").is_file() and "start)" in (REPO / "scripts" / "registry.sh").read_text()


def test_the_readme_shows_the_registry_where_the_example_is_introduced():
    intro = README[:README.index("## Command line")]
    assert "scripts/registry.sh start" in intro
    assert intro.index("scripts/registry.sh start") < intro.index("What you write is a `kfp.toml`")
    assert "REGISTRY_PORT" in intro and "COMPOSE_KFP_BASE" in intro and "COMPOSE_KFP_REPOSITORY" in intro


def _exports(block: str, port: str) -> dict[str, str]:
    env = {}
    for name, value in re.findall(r"^export (\w+)=(\S+)$", block, re.M):
        env[name] = value.replace("$REGISTRY_PORT", port)
    return env


def test_the_documented_overrides_make_the_example_follow_registry_port():
    block = next(b for b in _blocks(EXAMPLE_README) if "export REGISTRY_PORT=" in b)
    env = _exports(block, port="5001")
    assert env["REGISTRY_PORT"] == "5001"
    assert block.index("export REGISTRY_PORT") < block.index("scripts/registry.sh start")
    loaded = load_manifest(REPO / "examples" / "iris" / "kfp.toml",
                           env={k: v for k, v in env.items() if k.startswith("COMPOSE_KFP_")})
    assert loaded.manifest.image.base == "localhost:5001/compose-kfp/debian-python:bookworm"
    assert loaded.manifest.image.repository == "localhost:5001/examples/iris"
    assert loaded.sources["image.base"] == "environment variable COMPOSE_KFP_BASE"
    assert loaded.sources["image.repository"] == "environment variable COMPOSE_KFP_REPOSITORY"
    # without them the file's localhost:5000 stays
    plain = load_manifest(REPO / "examples" / "iris" / "kfp.toml", env={})
    assert plain.manifest.image.base.startswith("localhost:5000/")


def test_the_documented_overrides_are_those_of_demo_sh():
    demo = (REPO / "scripts" / "demo.sh").read_text()
    base = re.search(r'^BASE_REF="\$HOSTPORT(/[^"]+)"', demo, re.M).group(1)
    repo = re.search(r'COMPOSE_KFP_REPOSITORY="\$HOSTPORT(/[^"]+)"', demo).group(1)
    env = _exports(next(b for b in _blocks(EXAMPLE_README) if "export REGISTRY_PORT=" in b), port="5001")
    assert env["COMPOSE_KFP_BASE"] == f"localhost:5001{base}"
    assert env["COMPOSE_KFP_REPOSITORY"] == f"localhost:5001{repo}"
    assert 'HOSTPORT="localhost:$REGISTRY_PORT"' in demo
