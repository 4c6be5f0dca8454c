"""A real signed chain, written straight into validators' databases, to open a catch-up gap.

Used by `benchmarks/bench_catchup.py` and the catch-up e2e test: instead of running a
network for hours to leave a node 100,000 blocks behind, the chain is built here (every
tip signed by its round's leader, every QC by a quorum, with the network's real keys) and
stored the way the ledger stores it: the blocks, their certificates, the finalized rows
and tx index, and the safety state of a validator that voted for them. Nodes started on
such a database recover from it like any restarted node; a node that starts without it
must fetch all of it through the real sync path.

The chain is `count` finalized blocks plus two certified blocks above them (the last one
carries the QC that finalized block `count`), one block per round, leaders round-robin,
header times 1 ms apart from a fixed start: with the same keys, a shorter chain is a
prefix of a longer one (a node restarted on the shorter one is behind, not forked).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from consensus import codec
from consensus.certificates import Signer, build_qc
from consensus.crypto import DEFAULT_CHAIN_ID, KeyPair, scheme_by_name
from consensus.messages import GENESIS_QC, BlockBody, BlockHeader, Tip, Vote
from consensus.safety import SafetyState
from consensus.validators import ValidatorSet, schedule_by_name
from node.mempool import decode_plain_payload, encode_plain_payload, tx_id
from node.safety_file import SAFETY_FILE
from node.storage import FinalizedRow, Storage, short_id

WRITE_BATCH_BLOCKS = 2_000
CHAIN_START_NS = 1_600_000_000 * 10**9  # header time of height 0; +1 ms per height
DB_FILE = "node.sqlite3"


@dataclass(frozen=True)
class ChainInfo:
    finalized_height: int
    head_round: int  # round of the highest stored block


def _blocks(
    keys: Sequence[KeyPair],
    count: int,
    schedule_name: str,
    txs_per_block: int,
    chain_id: str = DEFAULT_CHAIN_ID,
) -> Iterator[tuple[bytes, Tip, BlockBody]]:
    validators = ValidatorSet.from_keys([k.public for k in keys])
    schedule = schedule_by_name(schedule_name, validators)
    scheme = scheme_by_name("ed25519", chain_id)  # signed for the network that will run it
    signers = [Signer(i, k, scheme) for i, k in enumerate(keys)]
    quorum: list[int] = []
    for index in range(len(keys)):  # the smallest prefix of validators with quorum stake
        quorum.append(index)
        if validators.has_quorum(quorum):
            break
    start_ns = CHAIN_START_NS  # fixed: a shorter chain is a prefix of a longer one
    qc = GENESIS_QC
    for height in range(1, count + 3):
        txs = [b"catchup-%d-%d" % (height, i) for i in range(txs_per_block)]
        body = BlockBody(payload=encode_plain_payload(txs) if txs else b"")
        author = schedule.leader(height)
        header = BlockHeader(
            block_round=height,
            epoch=1,
            qc=qc,
            author=author,
            seq_num=height,
            timestamp_ns=start_ns + height * 1_000_000,
            body_id=codec.body_id(body),
        )
        tip = signers[author].tip(header)
        block_id = codec.block_id(header)
        vote = Vote(block_id=block_id, round=height, epoch=1)
        qc = build_qc(vote, {i: signers[i].vote_signature(vote) for i in quorum}, validators)
        yield block_id, tip, body


def build_chain_database(
    data_dir: Path,
    keys: Sequence[KeyPair],
    count: int,
    *,
    schedule: str = "round-robin",
    txs_per_block: int = 0,
    chain_id: str = DEFAULT_CHAIN_ID,
) -> ChainInfo:
    """Write the chain into a fresh database under `data_dir` (which must not hold one),
    signed for chain `chain_id` (the network's `consensus.chain_id`)."""
    if (data_dir / DB_FILE).exists():
        raise FileExistsError(f"{data_dir / DB_FILE} already exists")
    storage = Storage(data_dir)
    try:
        pending: list[tuple[bytes, Tip, BlockBody]] = []
        last: tuple[bytes, Tip, BlockBody] | None = None
        for block in _blocks(keys, count, schedule, txs_per_block, chain_id):
            pending.append(block)
            if len(pending) >= WRITE_BATCH_BLOCKS:
                _write(storage, pending, count)
                pending = []
            last = block
        _write(storage, pending, count)
        assert last is not None
        voted_id = last[1].header.qc.block_id  # block count + 1: QC(count + 1) exists
        storage.save_safety(
            SafetyState(
                highest_vote=count + 1,
                highest_propose=count + 2,
                last_vote_round=count + 1,
                last_vote_block_id=voted_id,
            )
        )
    finally:
        storage.close()
    return ChainInfo(finalized_height=count, head_round=count + 2)


def _write(storage: Storage, blocks: list[tuple[bytes, Tip, BlockBody]], count: int) -> None:
    storage.put_blocks(blocks)
    now_ns = time.time_ns()
    rows = []
    txs: list[tuple[bytes, int]] = []
    for block_id, tip, body in blocks:
        header = tip.header
        if header.seq_num > count:
            continue
        ids = []
        if body.payload:
            ids = [tx_id(t) for t in decode_plain_payload(body.payload, 10**6, 10**6)]
        rows.append(
            FinalizedRow(
                height=header.seq_num,
                block_id=block_id,
                block_round=header.block_round,
                timestamp_ns=header.timestamp_ns,
                committed_ns=now_ns,
                voted_ns=None,
                n_tx=len(ids),
                txids=b"".join(short_id(t) for t in ids),
            )
        )
        txs.extend((t, header.seq_num) for t in ids)
    storage.commit_blocks(rows, txs)


def install_chain(source_dir: Path, data_dirs: Sequence[Path]) -> None:
    """Copy a built chain database (and its safety file, node/safety_file.py) into each
    node's (empty) data dir."""
    for data_dir in data_dirs:
        data_dir.mkdir(parents=True, exist_ok=True)
        for pattern in (DB_FILE + "*", SAFETY_FILE + "*"):
            for leftover in data_dir.glob(pattern):
                leftover.unlink()
        shutil.copyfile(source_dir / DB_FILE, data_dir / DB_FILE)
        if (source_dir / SAFETY_FILE).exists():  # a chain built before the file has none
            shutil.copyfile(source_dir / SAFETY_FILE, data_dir / SAFETY_FILE)
