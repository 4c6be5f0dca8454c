"""Config files: a valid one loads; every bad key is named in the error; bad config exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cli import main
from node.config import ConfigError, load_config, load_key, render_config, write_key_file
from tests.node.helpers import KEYS, config_document, write_config


def test_valid_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "n1", index=1)
    config = load_config(path)
    assert config.index == 1
    assert config.node.data_dir == (tmp_path / "n1" / "data").resolve()
    assert [v.index for v in config.validators] == [0, 1, 2, 3]
    assert set(config.peers()) == {0, 2, 3}
    assert load_key(config).public == KEYS[1].public
    assert config.consensus.delta_ms == 100.0 and config.test.crash_after_persist_safety == 0


BAD_DOCUMENTS = [
    ({"node": {"index": 9}}, "node.index"),
    ({"node": {"index": "zero"}}, "node.index"),
    ({"node": {"log_level": "loud"}}, "node.log_level"),
    ({"node": {"colour": "blue"}}, "node.colour"),
    ({"network": {"transport": "udp"}}, "network.transport"),
    ({"network": {"listen_port": 70000}}, "network.listen_port"),
    ({"network": {"rpc_port": True}}, "network.rpc_port"),
    ({"network": {"listen_host": "bad host!"}}, "network.listen_host"),
    ({"consensus": {"delta_ms": -1}}, "consensus.delta_ms"),
    ({"consensus": {"delta_ms": 0}}, "consensus.delta_ms"),
    ({"consensus": {"protocol": "pbft"}}, "consensus.protocol"),
    ({"consensus": {"timeout_backoff": 0.5}}, "consensus.timeout_backoff"),
    ({"consensus": {"schedule": "random"}}, "consensus.schedule"),
    ({"mempool": {"max_txs": 0}}, "mempool.max_txs"),
    ({"mempool": {"max_block_bytes": 10**9}}, "mempool.max_block_bytes"),
    ({"mempool": None}, "[mempool]"),
    ({"validators": []}, "[[validators]]"),
    ({"test": {"byzantine": "evil"}}, "test.byzantine"),
    ({"test": {"crash_after_persist_safety": -1}}, "test.crash_after_persist_safety"),
    ({"extra": {"x": 1}}, "config.extra"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD_DOCUMENTS, ids=[k for _, k in BAD_DOCUMENTS])
def test_bad_value_is_rejected_naming_its_key(tmp_path: Path, overrides, key: str) -> None:
    path = write_config(tmp_path, **overrides)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(key), str(info.value)


def test_validator_entries_are_checked(tmp_path: Path) -> None:
    document = config_document()
    document["validators"][2]["index"] = 5
    (tmp_path / "c.toml").write_text(render_config(document))
    with pytest.raises(ConfigError, match=r"validators\[2\]\.index"):
        load_config(tmp_path / "c.toml")
    document = config_document()
    document["validators"][3]["public_key"] = document["validators"][0]["public_key"]
    (tmp_path / "c.toml").write_text(render_config(document))
    with pytest.raises(ConfigError, match=r"validators\[3\]\.public_key: duplicate"):
        load_config(tmp_path / "c.toml")
    document = config_document()
    document["validators"][1]["public_key"] = "abcd"
    (tmp_path / "c.toml").write_text(render_config(document))
    with pytest.raises(ConfigError, match=r"validators\[1\]\.public_key: expected 32 bytes"):
        load_config(tmp_path / "c.toml")


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("[node\nindex = 0")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_key_file_must_match_this_validator(tmp_path: Path) -> None:
    path = write_config(tmp_path, index=0)
    write_key_file(tmp_path / "key.toml", KEYS[1])  # another validator's key
    with pytest.raises(ConfigError, match=r"validators\[0\]\.public_key"):
        load_key(load_config(path))
    (tmp_path / "key.toml").write_text(
        f'public_key = "{KEYS[0].public.hex()}"\nsecret_seed = "{KEYS[1].seed.hex()}"\n'
    )
    with pytest.raises(ConfigError, match="does not match secret_seed"):
        load_key(load_config(path))
    (tmp_path / "key.toml").unlink()
    with pytest.raises(ConfigError, match=r"node\.key_file"):
        load_key(load_config(path))


def test_key_file_is_private(tmp_path: Path) -> None:
    write_key_file(tmp_path / "k.toml", KEYS[0])
    assert (tmp_path / "k.toml").stat().st_mode & 0o077 == 0


def test_node_cli_exits_2_with_a_one_line_message(tmp_path: Path, capsys) -> None:
    path = write_config(tmp_path, consensus={"delta_ms": -5})
    assert main(["node", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "consensus.delta_ms" in err[0]
    assert main(["node", "run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert not (tmp_path / "data").exists()  # nothing was created
