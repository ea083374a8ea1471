"""The agent's config file: private from the first byte, hooks validated, token masked."""

import os
import stat

import pytest
from gpu_node import config
from gpu_node.config import ConfigError, Hook, NodeConfig


def a_config(**overrides: object) -> NodeConfig:
    fields: dict = {
        "server_url": "http://s",
        "node_id": 5,
        "node_token": "gmn_secretsecret1234",
        "backend_url": "http://b/v1",
    }
    fields.update(overrides)
    return NodeConfig(**fields)


def test_the_config_file_is_created_0600_whatever_the_umask(tmp_path):
    path = tmp_path / "sub" / "config.json"
    old = os.umask(0o000)
    try:
        config.save(a_config(), path)
    finally:
        os.umask(old)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load(path) == a_config()


def test_saving_again_replaces_the_file_and_keeps_it_private(tmp_path):
    path = tmp_path / "config.json"
    config.save(a_config(), path)

    config.save(a_config(node_id=6, hooks={"reset": Hook(argv=["/bin/true"], timeout_s=5)}), path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load(path).hooks == {"reset": Hook(argv=["/bin/true"], timeout_s=5)}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_hook_may_be_a_bare_argv():
    cfg = NodeConfig.from_json({**a_config().to_json(), "hooks": {"reset": ["/usr/local/bin/reset-gpu", "--all"]}})

    assert cfg.hooks["reset"] == Hook(argv=["/usr/local/bin/reset-gpu", "--all"], timeout_s=300)


@pytest.mark.parametrize("hook", ["/bin/sh -c 'rm -rf /'", [], {"argv": ["x"], "timeout_s": 0}, {"argv": "x"}])
def test_a_malformed_hook_is_a_config_error(hook):
    with pytest.raises(ConfigError, match='hook "reset"'):
        NodeConfig.from_json({**a_config().to_json(), "hooks": {"reset": hook}})


def test_a_missing_config_tells_you_to_register(tmp_path):
    with pytest.raises(ConfigError, match="gpu-node register"):
        config.load(tmp_path / "nothing.json")


def test_the_token_is_masked_to_its_prefix_and_last_four():
    assert config.mask("gmn_abcdefghijklmnop1234") == "gmn_...1234"
    assert config.mask("short") == "****"


def test_gpu_node_config_names_the_default_path(monkeypatch, tmp_path):
    monkeypatch.setenv("GPU_NODE_CONFIG", str(tmp_path / "c.json"))

    assert config.default_path() == tmp_path / "c.json"
