"""A TOML syntax error quotes its line, unless the line may hold a secret (a newcomer's trial found
`API_TOKEN` in an inline table and `user:pass@` in a reference echoed)."""

from __future__ import annotations

import pytest

from compose_kfp.errors import ConfigError
from compose_kfp.manifest.load import load_manifest

HEAD = '[project]\nname = "t"\n\n[image]\nbase = "scratch"\nrepository = "oci:build/image"\n'
CANARY = "hunter2SECRET"


@pytest.mark.parametrize("line", [
    f'env = {{ API_TOKEN = "{CANARY}", }}',
    f'env = {{ GITHUB_TOKEN = "{CANARY}" PATH="x" }}',
    f'index_url = "https://bob:{CANARY}@pypi.example.invalid/simple',
    f'labels = {{ a = "bob:{CANARY}@localhost:5077/x/y:1" x }}',
    f'password = "{CANARY}',
])
def test_a_line_that_may_hold_a_secret_is_not_quoted(tmp_path, line):
    (tmp_path / "kfp.toml").write_text(HEAD + line + "\n")
    with pytest.raises(ConfigError) as info:
        load_manifest(tmp_path / "kfp.toml", env={})
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'kfp.toml'}:7"), message
    assert "invalid TOML" in message and "(the line is not shown: it may hold a secret)" in message
    assert CANARY not in message


def test_an_ordinary_line_is_quoted(tmp_path):
    (tmp_path / "kfp.toml").write_text(HEAD + 'tags = ["v1" "v2"]\n')
    with pytest.raises(ConfigError) as info:
        load_manifest(tmp_path / "kfp.toml", env={})
    assert 'in `tags = ["v1" "v2"]`' in str(info.value)
