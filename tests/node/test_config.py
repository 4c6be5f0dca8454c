"""Config files: a valid one loads; every bad key is named in the error; bad config exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node.cli import main
from node.config import (
    ConfigError,
    check_environment,
    load_config,
    load_key,
    render_config,
    write_key_file,
)
from tests.node.helpers import KEYS, config_document, write_config

ROOT = Path(__file__).resolve().parents[2]


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
    ({"network": {"rpc_host": "999.1.1.1"}}, "network.rpc_host"),
    ({"network": {"rpc_host": "-lead.example"}}, "network.rpc_host"),
    ({"network": {"listen_host": "a..b"}}, "network.listen_host"),
    ({"network": {"listen_host": "[::1]"}}, "network.listen_host"),
    ({"network": {"rpc_port": 26600}}, "network.rpc_port"),  # == listen_port, same host
    ({"network": {"rpc_port": 26600, "rpc_host": "0.0.0.0"}}, "network.rpc_port"),
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
    (
        {"test": {"byzantine": "equivocate", "byzantine_options": "targets=9"}},
        "test.byzantine_options",
    ),
    (
        {"test": {"byzantine": "tail_fork", "byzantine_options": "targets=1"}},
        "test.byzantine_options",
    ),
    ({"test": {"byzantine": "withhold_bundles"}}, "test.cartel_pool"),
    ({"test": {"byzantine": "withhold_bundles", "cartel_pool": "host:0"}}, "test.cartel_pool"),
    ({"test": {"crash_after_persist_safety": -1}}, "test.crash_after_persist_safety"),
    ({"extra": {"x": 1}}, "config.extra"),
    ({"consensus": {"chain_id": "has space"}}, "consensus.chain_id"),
    ({"consensus": {"chain_id": ""}}, "consensus.chain_id"),
    ({"consensus": {"chain_id": "x" * 65}}, "consensus.chain_id"),
    ({"ledger": {"fee": -1}}, "ledger.fee"),
    ({"ledger": {"bounty": 2**63}}, "ledger.bounty"),
    ({"ledger": {"sender_balance": True}}, "ledger.sender_balance"),
    ({"ledger": {"tip": 1}}, "ledger.tip"),
    ({"ledger": {"genesis": ["zz"]}}, "ledger.genesis[0]"),
    ({"ledger": {"genesis": ["ab" * 31]}}, "ledger.genesis[0]"),
    ({"ledger": {"genesis": ["ab" * 32, "ab" * 32]}}, "ledger.genesis[1]"),
    ({"ledger": {"genesis": "ab"}}, "ledger.genesis"),
    ({"ledger": {"sender_balance": 2**61 + 1, "genesis": ["ab" * 32, "cd" * 32]}},
     "ledger.sender_balance"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "key"), BAD_DOCUMENTS, ids=[k for _, k in BAD_DOCUMENTS])
def test_bad_value_is_rejected_naming_its_key(tmp_path: Path, overrides, key: str) -> None:
    path = write_config(tmp_path, **overrides)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(key), str(info.value)


def test_chain_id_and_ledger_are_optional_and_read_when_given(tmp_path: Path) -> None:
    from consensus.crypto import DEFAULT_CHAIN_ID

    plain = load_config(write_config(tmp_path / "plain"))
    assert plain.consensus.chain_id == DEFAULT_CHAIN_ID and plain.ledger is None
    config = load_config(
        write_config(
            tmp_path / "money",
            consensus={"chain_id": "sedna-test.1"},
            ledger={"sender_balance": 500, "fee": 2, "bounty": 9, "genesis": ["ab" * 32]},
        )
    )
    assert config.consensus.chain_id == "sedna-test.1"
    assert config.ledger is not None
    assert (config.ledger.fee, config.ledger.bounty) == (2, 9)
    assert config.ledger.allocation() == {bytes.fromhex("ab" * 32): 500}


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


def test_aggregate_keys_are_required_and_every_proof_of_possession_is_verified(
    tmp_path: Path, capsys
) -> None:
    """Rule POP: a validator set whose BLS key comes without a valid proof of possession
    is refused at load (a rogue key could forge aggregate PoAs), with a clear error."""
    path = tmp_path / "c.toml"
    document = config_document()
    document["validators"][2]["bls_pop"] = document["validators"][1]["bls_pop"]  # not 2's
    path.write_text(render_config(document))
    with pytest.raises(ConfigError, match=r"validators\[2\]\.bls_pop: not a valid proof"):
        load_config(path)
    write_key_file(tmp_path / "key.toml", KEYS[0])
    assert main(["node", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "validators[2].bls_pop" in err[0]
    document = config_document()
    del document["validators"][3]["bls_public_key"]
    path.write_text(render_config(document))
    with pytest.raises(ConfigError, match=r"validators\[3\]\.bls_public_key: missing"):
        load_config(path)
    # not needed (so not checked) with Ed25519 PoAs or carried lanes
    for lanes in ({"poa_signatures": "ed25519"}, {"dissemination": "carried"}):
        path.write_text(render_config({**document, "lanes": lanes}))
        assert load_config(path).validators[3].bls_public_key is None
    document = config_document()
    document["validators"][1]["bls_public_key"] = "ab" * 47
    path.write_text(render_config(document))
    with pytest.raises(ConfigError, match=r"validators\[1\]\.bls_public_key: expected 48"):
        load_config(path)
    path.write_text(render_config(config_document(lanes={"poa_signatures": "schnorr"})))
    with pytest.raises(ConfigError, match=r"lanes\.poa_signatures"):
        load_config(path)


def test_the_key_files_bls_key_must_be_its_seeds_and_this_validators(tmp_path: Path) -> None:
    path = write_config(tmp_path, index=0)
    key_text = (tmp_path / "key.toml").read_text()
    assert "bls_public_key" in key_text and load_key(load_config(path)) == KEYS[0]
    other = config_document(0)
    other["validators"][0]["bls_public_key"] = other["validators"][1]["bls_public_key"]
    other["validators"][0]["bls_pop"] = other["validators"][1]["bls_pop"]
    other["validators"][1]["bls_public_key"] = config_document(0)["validators"][0]["bls_public_key"]
    other["validators"][1]["bls_pop"] = config_document(0)["validators"][0]["bls_pop"]
    (tmp_path / "config.toml").write_text(render_config(other))
    with pytest.raises(ConfigError, match=r"BLS key does not match validators\[0\]"):
        load_key(load_config(path))
    write_config(tmp_path, index=0)
    lines = [
        line if not line.startswith("bls_public_key") else f'bls_public_key = "{"00" * 48}"'
        for line in key_text.splitlines()
    ]
    (tmp_path / "key.toml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"key_file\.bls_public_key: does not match"):
        load_key(load_config(path))


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
    (tmp_path / "key.toml").chmod(0o600)
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


def test_same_port_on_different_hosts_is_allowed(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, network={"rpc_port": 26600, "rpc_host": "127.0.0.2", "listen_host": "127.0.0.1"}
    )
    assert load_config(path).network.rpc_port == 26600
    for host in ("localhost", "node0", "validator-1.example.org", "10.0.0.7", "::1"):
        assert (
            load_config(write_config(tmp_path, network={"rpc_host": host})).network.rpc_host == host
        )


def test_a_single_validator_must_pace_its_votes(tmp_path: Path) -> None:
    one = config_document()["validators"][:1]
    path = write_config(tmp_path, validators=one)
    with pytest.raises(ConfigError, match=r"^consensus\.vote_pace_ms: must be > 0"):
        load_config(path)
    path = write_config(tmp_path, validators=one, consensus={"vote_pace_ms": 20})
    assert len(load_config(path).validators) == 1


def _node_run(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`sedna node run` in a child process: a regression that starts the node cannot hang."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli", "node", "run", "--config", str(config), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    (tmp_path / "key.toml").chmod(0o644)
    result = _node_run(path)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1, result.stderr
    assert "node.key_file" in err[0] and "chmod 600" in err[0], err
    (tmp_path / "key.toml").chmod(0o640)
    with pytest.raises(ConfigError, match="accessible by others"):
        load_key(load_config(path))
    (tmp_path / "key.toml").chmod(0o600)
    assert load_key(load_config(path)).public == KEYS[0].public


def test_data_dir_that_is_a_file_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, node={"data_dir": "data.bin"})
    (tmp_path / "data.bin").write_bytes(b"not a directory")
    result = _node_run(path)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1, result.stderr
    assert "node.data_dir" in err[0] and "is a file" in err[0], err


def test_libp2p_without_its_extra_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object):  # type: ignore[no-untyped-def]
        return None if name == "libp2p" else real_find_spec(name, *args)  # type: ignore[arg-type]

    path = write_config(tmp_path, network={"transport": "libp2p"})
    check_environment(load_config(path))  # installed here: accepted
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)  # as without the extra
    with pytest.raises(ConfigError) as info:
        check_environment(load_config(path))
    message = str(info.value)
    assert message.startswith("network.transport:") and "sedna-bft[libp2p]" in message
    assert "\n" not in message


@pytest.mark.parametrize("key", ["network.listen_port", "network.rpc_port"])
def test_a_port_in_use_is_named_by_its_key(tmp_path: Path, key: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the other port: one the OS just had free (port + 1 may belong to any process
        # on a busy machine, and the node would then name the wrong key)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            other = probe.getsockname()[1]
        ports = (
            {"listen_port": port, "rpc_port": other}
            if key == "network.listen_port"
            else {"listen_port": other, "rpc_port": port}
        )
        result = _node_run(write_config(tmp_path, network=ports))
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(err) == 1, result.stderr
    assert f"{key}: 127.0.0.1:{port} is already in use" in err[0], err
    assert not (tmp_path / "data").exists()  # refused before the database was touched
