"""Shared pytest configuration.

Fixtures live in ``tests/fixtures/*.py`` (one module per area) and are loaded as
plugins here, so that each area can grow its own without touching this file.
"""

from __future__ import annotations

import os
import pathlib

import pytest

CORPUS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "corpus"

pytest_plugins = [
    f"tests.fixtures.{p.stem}"
    for p in sorted((pathlib.Path(__file__).parent / "fixtures").glob("*.py"))
    if p.stem != "__init__"
]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never read or write the real home directory or the real credential stores."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for var in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "COMPOSE_KFP_USERNAME", "COMPOSE_KFP_PASSWORD",
                "COMPOSE_KFP_REGISTRY", "COMPOSE_KFP_REPOSITORY", "COMPOSE_KFP_BASE",
                "COMPOSE_KFP_PLATFORMS", "COMPOSE_KFP_TAGS", "COMPOSE_KFP_COMPRESSION", "COMPOSE_KFP_INDEX_URL",
                "COMPOSE_KFP_INSECURE", "COMPOSE_KFP_OUTPUT_DIR", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(var, raising=False)
    yield home


@pytest.fixture(scope="session")
def corpus() -> pathlib.Path:
    """The shared real-world corpus (``../shared/corpus``); tests using it skip when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS
