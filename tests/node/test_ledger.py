"""The ledger room: TX-ONCE block validity, the pending-ancestor walk, the tx index backfill,
and its paired assertions (persist before send, consecutive commits). Real storage, real
signed blocks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from consensus.events import CommitBlocks, CommittedBlock, PersistBlock, PersistSafety
from consensus.messages import GENESIS_BLOCK_ID, GENESIS_QC, BlockBody, Vote, VoteMessage
from consensus.safety import SafetyState
from node.ledger import ChainValidator, Ledger
from node.mempool import encode_plain_payload, tx_id
from node.metrics import NodeMetrics
from node.storage import Storage
from tests.node.helpers import fake_qc, make_block


class Rules:
    """Payload rules that accept everything (the payload rules have their own tests)."""

    def validate(self, header, body) -> bool:
        return True


def _ledger(path: Path) -> Ledger:
    return Ledger(
        Storage(path), NodeMetrics(), logging.getLogger("test"), max_block_txs=100,
        max_tx_bytes=100,
    )  # fmt: skip


def _chain(*payloads: list[bytes]) -> list[tuple[bytes, object, BlockBody]]:
    """Consecutive real blocks (heights 1, 2, ...) with these txs."""
    blocks = []
    qc = GENESIS_QC
    for height, txs in enumerate(payloads, start=1):
        block_id, tip, body = make_block(
            qc, round=height, seq_num=height, payload=encode_plain_payload(txs)
        )
        blocks.append((block_id, tip, body))
        qc = fake_qc(block_id, height)
    return blocks


def _store(ledger: Ledger, block) -> None:
    block_id, tip, body = block
    ledger.persist_block(PersistBlock(tip, body, block_id))


def _commit(ledger: Ledger, *blocks) -> None:
    ledger.commit(CommitBlocks(tuple(CommittedBlock(b[0], b[1].header, b[2]) for b in blocks)), 0)


def test_tx_once_refuses_a_block_that_repeats_a_tx(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    validator = ChainValidator(Rules(), ledger)
    b1, b2 = _chain([b"t1", b"t2"], [b"t3"])
    _store(ledger, b1)
    _commit(ledger, b1)  # t1, t2 final
    _store(ledger, b2)  # t3 pending at height 2

    def header(txs: list[bytes], parent=b2, height: int = 3):
        _, tip, body = make_block(
            fake_qc(parent[0], height - 1), round=height, seq_num=height,
            payload=encode_plain_payload(txs),
        )  # fmt: skip
        return tip.header, body

    cases = {
        "tx_repeated_in_block": [b"t9", b"t9"],
        "tx_in_pending_ancestor": [b"t9", b"t3"],
        "tx_already_finalized": [b"t1"],
    }
    for reason, txs in cases.items():
        assert ledger.tx_refusal(*header(txs)) == reason
        assert not validator.validate(*header(txs))
        assert ledger.metrics.blocks_rejected.value(reason=reason) == 1
    assert ledger.tx_refusal(*header([b"t4", b"t5"])) is None
    assert validator.validate(*header([b"t4"]))
    # history is not judged again: a sync response may reach below the finalized head
    assert ledger.tx_refusal(b1[1].header, b1[2]) is None
    ledger.storage.close()


def test_an_accepted_block_describes_its_txs_for_the_blocks_above_it(tmp_path: Path) -> None:
    """Blocks of one sync response are validated oldest first before any is stored: each
    one's txs must already count for the next."""
    ledger = _ledger(tmp_path)
    b1, b2 = _chain([b"x"], [b"x"])
    assert ledger.tx_refusal(b1[1].header, b1[2]) is None
    assert ledger.tx_refusal(b2[1].header, b2[2]) == "tx_in_pending_ancestor"
    ledger.storage.close()


def test_the_ancestor_walk_reports_a_gap_and_a_restart_keeps_the_pending_blocks(
    tmp_path: Path,
) -> None:
    ledger = _ledger(tmp_path)
    b1, b2, b3 = _chain([b"a"], [b"b"], [b"c"])
    assert ledger.pending_ancestor_txids(GENESIS_BLOCK_ID) == (set(), True)
    _store(ledger, b1)
    _store(ledger, b3)  # b2 missing: the walk from b3 stops at the gap
    assert ledger.pending_ancestor_txids(b3[0]) == ({tx_id(b"c")}, False)
    _store(ledger, b2)
    assert ledger.pending_ancestor_txids(b3[0]) == ({tx_id(x) for x in (b"a", b"b", b"c")}, True)
    ledger.storage.close()
    # A restarted node's pending blocks come from storage, not from PersistBlock.
    restarted = _ledger(tmp_path)
    assert restarted.pending_ancestor_txids(b3[0]) == (set(), False)
    restarted.remember_recovered([(tip, body) for _, tip, body in (b1, b2, b3)])
    assert restarted.pending_ancestor_txids(b3[0]) == (
        {tx_id(x) for x in (b"a", b"b", b"c")},
        True,
    )
    restarted.storage.close()


def test_a_database_written_before_the_index_is_indexed_at_start(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    blocks = _chain([b"p"], [b"q", b"r"], [])
    for block in blocks:
        _store(ledger, block)
    _commit(ledger, *blocks)
    ledger.storage._db.execute("DELETE FROM finalized_txs")
    ledger.storage._db.execute("DELETE FROM meta WHERE key = 'tx_index_height'")
    ledger.storage.close()
    again = _ledger(tmp_path)
    assert again.storage.finalized_among([tx_id(b"q")]) == set()
    assert again.index_backlog() == 3
    assert again.finalized_tx_height(tx_id(b"r")) == 2 and again.index_backlog() == 0
    again.storage.close()


def test_paired_assertions_of_the_driver(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    vote = VoteMessage(Vote(block_id=bytes(32), round=7, epoch=1), 0, bytes(64))
    with pytest.raises(AssertionError, match="before a safety state"):
        ledger.check_covered(vote, index=0)
    ledger.check_covered(vote, index=1)  # another node's vote is not ours to check
    ledger.persist_safety(PersistSafety(SafetyState(highest_vote=7)))
    ledger.check_covered(vote, index=0)
    _, b2 = _chain([], [])
    with pytest.raises(AssertionError, match="expected 1"):
        _commit(ledger, b2)  # committed heights are consecutive from the head
    ledger.storage.close()


def test_chain_sync_is_answered_from_the_finalized_chain_on_disk(
    tmp_path: Path, monkeypatch
) -> None:
    from consensus.messages import GENESIS_BLOCK_ID, ChainSyncRequest, ChainSyncResponse
    from node import ledger as ledger_module

    ledger = _ledger(tmp_path)
    blocks = _chain(*([bytes([65 + i]) * 50] for i in range(6)))
    for block in blocks:
        _store(ledger, block)
    _commit(ledger, *blocks[:5])  # block 6 is stored but not final

    def heights(after: bytes, count: int) -> list[int]:
        response = ledger.answer_sync(ChainSyncRequest(after_block_id=after, count=count))
        assert isinstance(response, ChainSyncResponse) and response.after_block_id == after
        return [b.tip.header.seq_num for b in response.blocks]

    assert heights(GENESIS_BLOCK_ID, 3) == [1, 2, 3]
    assert heights(blocks[2][0], 10) == [4, 5]  # finalized blocks only
    assert heights(blocks[4][0], 10) == []  # the head: nothing above it yet
    assert heights(blocks[5][0], 10) == []  # not on the finalized chain
    assert heights(b"\x07" * 32, 10) == []
    monkeypatch.setattr(ledger_module, "MAX_SYNC_RESPONSE_BYTES", 1)
    assert heights(GENESIS_BLOCK_ID, 5) == [1]  # cut by size, at least one block
    ledger.storage.close()


def test_sync_progress_is_the_gap_to_the_highest_block_held(tmp_path: Path, caplog) -> None:
    ledger = _ledger(tmp_path)
    caplog.set_level(logging.INFO, logger="test")
    blocks = _chain(*([] for _ in range(12)))
    for block in blocks:
        _store(ledger, block)
    assert ledger.highest_block_height == 12 and ledger.behind_blocks == 12 and ledger.syncing
    assert ledger.metrics.sync_behind.value() == 12
    _commit(ledger, *blocks[:10])
    assert ledger.behind_blocks == 2 and not ledger.syncing
    assert ledger.metrics.sync_behind.value() == 2
    assert [r.getMessage() for r in caplog.records] == ["catching_up", "caught_up"]
    ledger.storage.close()


def test_a_leader_with_a_gap_below_its_parent_proposes_no_txs(tmp_path: Path) -> None:
    """TX-ONCE at the proposer: below a gap, its own txs may already be in the chain."""
    from consensus.crypto import ED25519
    from consensus.events import PayloadReady, RequestPayload
    from consensus.validators import RoundRobinSchedule, ValidatorSet
    from node.lanes_node import NodeLanes
    from node.mempool import Mempool, decode_plain_payload
    from node.txpool import TxPool
    from tests.node.helpers import KEYS

    ledger = _ledger(tmp_path)
    validators = ValidatorSet.from_keys([k.public for k in KEYS])
    lanes = NodeLanes(
        index=0, key=KEYS[0], scheme=ED25519, validators=validators,
        schedule=RoundRobinSchedule(validators),
    )  # fmt: skip
    mempool = Mempool(max_txs=10, max_tx_bytes=100, max_block_txs=10, max_block_bytes=10_000)
    mempool.submit([b"mine-1", b"mine-2"], now_ns=1)
    events: list = []
    pool = TxPool(
        mempool=mempool, lanes=lanes, ledger=ledger, metrics=ledger.metrics,
        logger=logging.getLogger("test"), push_internal=events.append,
    )  # fmt: skip
    b1, b2, b3 = _chain([b"mine-1"], [], [])
    _store(ledger, b1)
    _store(ledger, b3)  # b2 missing: a gap between the parent (b3) and the head
    pool.request_payload(RequestPayload(round=4, seq_num=4, parent_id=b3[0]))
    _store(ledger, b2)  # no gap: mine-1 is in an ancestor, mine-2 is not
    pool.request_payload(RequestPayload(round=4, seq_num=4, parent_id=b3[0]))
    payloads = [e.payload for e in events if isinstance(e, PayloadReady)]
    assert [decode_plain_payload(p, 10, 100) for p in payloads] == [[], [b"mine-2"]]
    assert ledger.metrics.proposals_without_txs.value() == 1
    ledger.storage.close()


def test_tx_once_is_checked_again_when_a_gap_below_a_proposal_is_filled(tmp_path: Path) -> None:
    """B-APP-CHAIN with the node's real TX-ONCE validator: B2 repeats B1's tx but arrives
    first (B1 unknown, so the ledger cannot see the repeat); once block sync delivers B1,
    the core validates B2 again before voting and refuses it."""
    from consensus.core import ConsensusCore, CoreConfig
    from consensus.crypto import ED25519
    from consensus.events import MessageReceived, Start
    from consensus.messages import BlockSyncRequest, BlockSyncResponse, SyncedBlock
    from tests.consensus.support import (
        KEYS,
        SCHEDULE,
        VALIDATORS,
        block_id,
        make_tip,
        proposal,
        qc_on,
        sent,
        traces,
    )

    ledger = _ledger(tmp_path)
    core = ConsensusCore(
        config=CoreConfig(),
        validators=VALIDATORS,
        schedule=SCHEDULE,
        index=0,
        key=KEYS[0],
        scheme=ED25519,
        block_validator=ChainValidator(Rules(), ledger),
    )
    core.handle(Start(0))
    payload1 = encode_plain_payload([b"x", b"y"])
    payload2 = encode_plain_payload([b"z", b"x"])  # repeats x
    tip1 = make_tip(1, GENESIS_QC, 1, payload1)
    tip2 = make_tip(2, qc_on(tip1, 1), 2, payload2)
    out = core.handle(MessageReceived(0, 2, proposal(2, tip2, payload2)))
    requests = sent(out, BlockSyncRequest)
    assert requests and requests[0][1].block_id == block_id(tip1)
    response = BlockSyncResponse(
        block_id=block_id(tip1), blocks=(SyncedBlock(tip=tip1, body=BlockBody(payload1)),)
    )
    out = core.handle(MessageReceived(0, requests[0][0], response))
    assert core.block(block_id(tip1)) is not None and core.block(block_id(tip2)) is not None
    assert not sent(out, VoteMessage)
    refused = traces(out, "vote_refused")
    assert refused and "block validator once its ancestors were known" in refused[0]["reason"]
    assert ledger.metrics.blocks_rejected.value(reason="tx_in_pending_ancestor") == 1
    ledger.storage.close()
