"""Shared builders for node tests: real keys, real configs, real signed blocks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consensus import codec
from consensus.certificates import Signer
from consensus.crypto import ED25519, derive_keys
from consensus.messages import GENESIS_QC, BlockBody, BlockHeader, QuorumCertificate, Tip, Vote
from node.config import aggregate_fields, render_config, write_key_file

KEYS = derive_keys(4, b"tests/node")
AGGREGATE = [aggregate_fields(k) for k in KEYS]  # BLS key and proof of possession


def config_document(index: int = 0, data_dir: str = "data", **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "node": {"index": index, "data_dir": data_dir, "key_file": "key.toml"},
        "network": {"transport": "tcp", "listen_port": 26600 + index, "rpc_port": 26700 + index},
        "consensus": {"protocol": "monadbft", "delta_ms": 100.0},
        "mempool": {"max_txs": 1000},
        "validators": [
            {
                "index": i,
                "public_key": k.public.hex(),
                "stake": 1,
                "host": "127.0.0.1",
                "port": 26600 + i,
                **AGGREGATE[i],
            }
            for i, k in enumerate(KEYS)
        ],
    }
    for section, values in overrides.items():
        if values is None:
            document.pop(section, None)
        elif isinstance(values, dict) and isinstance(document.get(section), dict):
            document[section] = {**document[section], **values}
        else:
            document[section] = values
    return document


def write_config(directory: Path, index: int = 0, **overrides: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_key_file(directory / "key.toml", KEYS[index])
    path = directory / "config.toml"
    path.write_text(render_config(config_document(index, **overrides)))
    return path


def make_block(
    parent_qc: QuorumCertificate = GENESIS_QC,
    *,
    round: int = 1,
    seq_num: int = 1,
    payload: bytes = b"",
    author: int | None = None,
) -> tuple[bytes, Tip, BlockBody]:
    """A real signed block (the author defaults to the round-robin leader of `round`)."""
    author = round % len(KEYS) if author is None else author
    body = BlockBody(payload=payload)
    header = BlockHeader(
        block_round=round,
        epoch=1,
        qc=parent_qc,
        author=author,
        seq_num=seq_num,
        timestamp_ns=1_000_000 * round,
        body_id=codec.body_id(body),
    )
    tip = Signer(author, KEYS[author], ED25519).tip(header)
    return codec.block_id(header), tip, body


def fake_qc(block_id: bytes, round: int) -> QuorumCertificate:
    """A structurally valid QC (signatures are not checked by storage)."""
    return QuorumCertificate(
        vote=Vote(block_id=block_id, round=round, epoch=1),
        signers=b"\x07",
        signatures=(bytes(64),) * 3,
    )


async def wait_until(predicate: Callable[[], Any], timeout_s: float) -> bool:
    """Poll `predicate` every 50 ms until it holds or `timeout_s` passes (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def send_payloads(client: Any, payloads: list[bytes], timeout_s: float) -> list[bytes]:
    """Submit `payloads` through a SednaClient and step it until every one is decided;
    the ids of those it accepted."""
    ids = [client.submit(p) for p in payloads]
    deadline = time.monotonic() + timeout_s
    while client.undecided() and time.monotonic() < deadline:
        await client.step()
        await asyncio.sleep(0.02)
    assert client.undecided() == 0, client.stats
    return [i for i in ids if i is not None]
