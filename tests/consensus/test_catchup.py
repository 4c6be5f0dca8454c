"""Catching up from a large gap: linear block-tree bookkeeping (T-CONNECTED, T-ROOM) and the
forward chain sync (CS1-CS4), with real signed blocks and certificates."""

from __future__ import annotations

import msgspec
import pytest

from consensus import blocktree, codec
from consensus.blocktree import BlockTree, TreeBlock
from consensus.core import CHAIN_SYNC_BATCH, CHAIN_SYNC_MIN_GAP, ConsensusCore, CoreConfig
from consensus.crypto import ED25519
from consensus.events import CommitBlocks, MarkVoted, Start
from consensus.messages import (
    GENESIS_BLOCK_ID,
    GENESIS_QC,
    MAX_SYNC_BLOCKS,
    BlockBody,
    BlockHeader,
    BlockSyncRequest,
    BlockSyncResponse,
    ChainSyncRequest,
    ChainSyncResponse,
    SyncedBlock,
    Tip,
)
from tests.consensus.support import (
    KEYS,
    SCHEDULE,
    SIGNERS,
    VALIDATORS,
    block_id,
    body,
    is_dropped,
    make_core,
    make_tip,
    proposal,
    qc_on,
    receive,
    sent,
    snapshot,
    traces,
)


def _chain(length: int) -> list[Tip]:
    """Happy-path blocks 1..length (block h in round h, carrying QC(h - 1))."""
    tips = []
    qc = GENESIS_QC
    for height in range(1, length + 1):
        tip = make_tip(height, qc, height, b"b%d" % height)
        tips.append(tip)
        qc = qc_on(tip, height)
    return tips


CHAIN = _chain(CHAIN_SYNC_MIN_GAP + MAX_SYNC_BLOCKS + CHAIN_SYNC_BATCH + 40)
TOP = len(CHAIN)


def synced(tip: Tip) -> SyncedBlock:
    return SyncedBlock(tip=tip, body=body(b"b%d" % tip.header.seq_num))


def tree_block(tip: Tip) -> TreeBlock:
    return TreeBlock(block_id(tip), tip, body(b"b%d" % tip.header.seq_num))


# --------------------------------------------------------------------------- the block tree


def test_connectivity_is_kept_as_blocks_arrive_in_any_order() -> None:
    tree = BlockTree()
    blocks = [tree_block(t) for t in CHAIN[:6]]
    for block in reversed(blocks[1:]):  # children first: nothing connects
        assert tree.add(block)
        assert not tree.is_connected(block.block_id)
    assert tree.drain_connected() == []
    assert tree.missing_ancestor(blocks[5].block_id) == blocks[0].block_id
    tree.add(blocks[0])  # the missing link connects all of them, parents first
    assert tree.drain_connected() == [b.block_id for b in blocks]
    assert all(tree.is_connected(b.block_id) for b in blocks)
    assert tree.missing_ancestor(blocks[5].block_id) is None
    assert tree.path_from_root(blocks[5].block_id) == blocks
    tree.commit(blocks[:3])  # the new root's descendants stay connected
    assert tree.is_connected(blocks[3].block_id) and tree.is_connected(blocks[2].block_id)
    assert not tree.is_connected(blocks[1].block_id)  # finalized, no longer pending
    fork = tree_block(make_tip(9, qc_on(CHAIN[0], 1), 2, b"fork"))
    assert not tree.add(fork)  # at or below the root's height


def test_the_first_missing_ancestor_follows_the_gaps_as_they_close() -> None:
    tree = BlockTree()
    b = [tree_block(t) for t in CHAIN[:8]]  # heights 1..8 are b[0]..b[7]
    for block in (b[7], b[6], b[5], b[2], b[1]):
        tree.add(block)
    assert tree.missing_ancestor(b[7].block_id) == b[4].block_id
    assert tree.missing_ancestor(b[6].block_id) == b[4].block_id  # remembered, no walk
    tree.add(b[4])
    assert tree.missing_ancestor(b[7].block_id) == b[3].block_id
    tree.add(b[3])
    assert tree.missing_ancestor(b[7].block_id) == b[0].block_id
    assert tree.missing_ancestor(b[2].block_id) == b[0].block_id
    tree.add(b[0])
    assert tree.missing_ancestor(b[7].block_id) is None and tree.is_connected(b[7].block_id)


def test_a_full_tree_makes_room_for_a_block_that_connects(monkeypatch) -> None:
    monkeypatch.setattr(blocktree, "MAX_PENDING_BLOCKS", 4)
    tree = BlockTree()
    blocks = [tree_block(t) for t in CHAIN[:10]]
    for block in blocks[5:9]:  # far-ahead blocks that cannot connect yet fill the tree
        assert tree.add(block)
    assert tree.is_full()
    assert not tree.add(blocks[9])  # another unconnected block finds no room
    assert tree.add(blocks[0])  # a connecting block evicts the highest unconnected one
    assert tree.get(blocks[8].block_id) is None and tree.is_connected(blocks[0].block_id)
    assert len(tree) == 4


class _Counting:
    """Counts `path_from_root` calls and the blocks they walk, and `_mark_voted` calls."""

    def __init__(self, monkeypatch) -> None:
        self.walked = 0
        self.marks = 0
        original_path = BlockTree.path_from_root
        original_mark = ConsensusCore._mark_voted

        def path(tree, block_id):
            result = original_path(tree, block_id)
            self.walked += 1 + (len(result) if result else len(tree))
            return result

        def mark(core, qc):
            self.marks += 1
            return original_mark(core, qc)

        monkeypatch.setattr(BlockTree, "path_from_root", path)
        monkeypatch.setattr(ConsensusCore, "_mark_voted", mark)


def test_proposals_above_a_gap_cost_linear_work(monkeypatch) -> None:
    """Defect: every proposal re-walked every stored QC to the root (`_retry_blocks_arrived
    -> _mark_voted -> path_from_root`), quadratic in the blocks waiting above a gap."""
    count = _Counting(monkeypatch)
    core = make_core(0)
    k = 160
    for tip in CHAIN[1:k]:  # block 1 missing: none of them connects
        receive(
            core,
            tip.header.author,
            proposal(tip.header.block_round, tip, b"b%d" % tip.header.seq_num),
        )
    assert core.finalized_height == 0 and core.pending_blocks == k - 1
    waiting = count.walked + count.marks
    assert waiting <= 4 * k, waiting  # was ~k^2 / 2 path walks of up to k blocks each
    out = receive(
        core,
        1,
        BlockSyncResponse(block_id=block_id(CHAIN[0]), blocks=(synced(CHAIN[0]),)),
    )
    commits = [c for c in out if isinstance(c, CommitBlocks)]
    assert sum(len(c.blocks) for c in commits) == k - 2 and core.finalized_height == k - 2
    assert sum(isinstance(c, MarkVoted) for c in out) >= 1
    assert count.walked + count.marks - waiting <= 6 * k


# --------------------------------------------------------------------------- chain sync


def _far_behind_core(block_validator: object = None) -> tuple[ConsensusCore, int]:
    """A fresh node 0 that sees the network's proposal at height TOP + 1 and has answered its
    first block-sync request (blocks TOP-63..TOP): the gap makes it switch to chain sync."""
    if block_validator is None:
        core = make_core(0)
    else:
        core = ConsensusCore(
            config=CoreConfig(),
            validators=VALIDATORS,
            schedule=SCHEDULE,
            index=0,
            key=KEYS[0],
            scheme=ED25519,
            block_validator=block_validator,
        )
        core.handle(Start(0))
    top_qc = qc_on(CHAIN[-1], TOP)
    tip = make_tip(TOP + 1, top_qc, TOP + 1, b"live")
    out = receive(core, 1, proposal(TOP + 1, tip, b"live"))
    ((peer, request),) = sent(out, BlockSyncRequest)
    assert request.block_id == block_id(CHAIN[-1]) and request.count == MAX_SYNC_BLOCKS
    newest_first = tuple(synced(t) for t in reversed(CHAIN[TOP - MAX_SYNC_BLOCKS :]))
    out = receive(core, peer, BlockSyncResponse(block_id=request.block_id, blocks=newest_first))
    assert sent(out, BlockSyncRequest) == []  # CS1: no walking back over the gap
    ((chain_peer, chain_request),) = sent(out, ChainSyncRequest)
    assert chain_request == ChainSyncRequest(
        after_block_id=GENESIS_BLOCK_ID, count=CHAIN_SYNC_BATCH
    )
    return core, chain_peer


def _after(peer: int) -> int:
    """The next peer in index order, skipping node 0 (the node under test)."""
    return peer % 3 + 1


def _answer(first: int, last: int, after: bytes | None = None) -> ChainSyncResponse:
    """Heights first..last, oldest first, as a peer answers a chain-sync request."""
    after = block_id(CHAIN[first - 2]) if after is None else after
    return ChainSyncResponse(
        after_block_id=after, blocks=tuple(synced(t) for t in CHAIN[first - 1 : last])
    )


def test_a_far_behind_node_catches_up_forward_one_commit_per_batch() -> None:
    core, peer = _far_behind_core()
    out = receive(core, peer, _answer(1, CHAIN_SYNC_BATCH, after=GENESIS_BLOCK_ID))
    commits = [c for c in out if isinstance(c, CommitBlocks)]
    assert len(commits) == 1 and core.finalized_height == CHAIN_SYNC_BATCH - 2
    ((to, request),) = sent(out, ChainSyncRequest)  # CS3: the next batch, from the next peer
    assert to == _after(peer) and request.after_block_id == block_id(CHAIN[CHAIN_SYNC_BATCH - 1])
    # the last batch meets the blocks block sync fetched: the live QC's block connects
    out = receive(core, to, _answer(CHAIN_SYNC_BATCH + 1, TOP - MAX_SYNC_BLOCKS))
    assert sent(out, ChainSyncRequest) == [] and traces(out, "chain_sync_done")
    assert core.finalized_height == TOP - 1  # QC(TOP) in the live proposal commits TOP - 1
    assert core._chain_sync is None


def test_chain_sync_responses_are_validated_before_use() -> None:
    core, peer = _far_behind_core()
    assert not is_dropped(receive(core, peer, _answer(1, 6, after=GENESIS_BLOCK_ID)))
    assert core.finalized_height == 4  # and now blocks above height 6 are asked for
    good = _answer(7, 12)
    blocks = list(good.blocks)
    forged_newest = msgspec.structs.replace(blocks[-1].tip, signature=bytes(64))
    other = make_tip(9, qc_on(CHAIN[7], 8), 9, b"other")  # a real, signed, other block
    skipping = make_tip(12, qc_on(CHAIN[10], 11), 13, b"b12")  # signed, but height 13
    cases = {
        "unsolicited (attaches, but answers no request)": _answer(6, 12),
        "broken chain": msgspec.structs.replace(good, blocks=(*blocks[:2], *blocks[3:])),
        "body mismatch": msgspec.structs.replace(
            good, blocks=(*blocks[:2], SyncedBlock(blocks[2].tip, body(b"evil")), *blocks[3:])
        ),
        "forged newest tip": msgspec.structs.replace(
            good, blocks=(*blocks[:-1], SyncedBlock(forged_newest, blocks[-1].body))
        ),
        "substituted block": msgspec.structs.replace(
            good, blocks=(*blocks[:2], SyncedBlock(other, body(b"other")), *blocks[3:])
        ),
        "heights skip": msgspec.structs.replace(
            good, blocks=(*blocks[:-1], SyncedBlock(skipping, body(b"b12")))
        ),
        "not oldest first": msgspec.structs.replace(good, blocks=tuple(reversed(blocks))),
    }
    before = snapshot(core), core._chain_sync
    for name, response in cases.items():
        assert is_dropped(receive(core, peer, response)), name
        assert (snapshot(core), core._chain_sync) == before, name
    assert not is_dropped(receive(core, peer, good))  # and the genuine one is used
    assert core.finalized_height == 10


class _RefuseBody:
    """A block validator that refuses one payload (and accepts every other block)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def validate(self, header: BlockHeader, block_body: BlockBody) -> bool:
        return block_body.payload != self.payload


def _signed(block_round: int, qc, seq_num: int, timestamp_ns: int, payload: bytes) -> Tip:
    header = BlockHeader(
        block_round=block_round,
        epoch=1,
        qc=qc,
        author=SCHEDULE.leader(block_round),
        seq_num=seq_num,
        timestamp_ns=timestamp_ns,
        body_id=codec.body_id(body(payload)),
    )
    return SIGNERS[header.author].tip(header)


def _one_rule_case(rule: str, good: ChainSyncResponse) -> ChainSyncResponse:
    """A response to the request for heights 7..12 that only the CS3 check `rule` refuses:
    every other check of the batch passes (a real, signed block wherever one is needed)."""
    blocks = list(good.blocks)
    if rule == "CS3-SY0":  # attaches to a held block and chains, but answers no request
        return _answer(6, 12)
    if rule == "CS3-SY1":  # block 9 replaced by a signed sibling: heights and times still fit
        sibling = make_tip(9, qc_on(CHAIN[7], 8), 9, b"other")
        blocks[2] = SyncedBlock(sibling, body(b"other"))
    elif rule == "CS3-SY2":
        blocks[2] = SyncedBlock(blocks[2].tip, body(b"evil"))
    elif rule == "CS3-SEQ":  # a signed newest block on block 11 claiming height 13
        blocks[-1] = SyncedBlock(make_tip(12, qc_on(CHAIN[10], 11), 13, b"b12"), body(b"b12"))
    elif rule == "CS3-TIME":  # a signed newest block on block 11, older than it
        blocks[-1] = SyncedBlock(_signed(12, qc_on(CHAIN[10], 11), 12, 10, b"b12"), body(b"b12"))
    elif rule == "CS3-SY3":  # the newest tip's signature forged (its block id is unchanged)
        forged = msgspec.structs.replace(blocks[-1].tip, signature=bytes(64))
        blocks[-1] = SyncedBlock(forged, blocks[-1].body)
    elif rule != "CS3-APP":  # CS3-APP: the genuine batch, under a validator refusing block 9
        raise ValueError(rule)
    return msgspec.structs.replace(good, blocks=tuple(blocks))


@pytest.mark.parametrize(
    "rule", ["CS3-SY0", "CS3-SY1", "CS3-SY2", "CS3-SEQ", "CS3-TIME", "CS3-SY3", "CS3-APP"]
)
def test_each_chain_sync_check_alone_refuses_its_case(rule: str) -> None:
    # One case per check, isolated, so that the TEST-ONLY switch of each check (the
    # mutation matrix) turns exactly that case into an accepted batch.
    core, peer = _far_behind_core(_RefuseBody(b"b9") if rule == "CS3-APP" else None)
    assert not is_dropped(receive(core, peer, _answer(1, 6, after=GENESIS_BLOCK_ID)))
    good = _answer(7, 12)
    before = snapshot(core), core._chain_sync
    assert is_dropped(receive(core, peer, _one_rule_case(rule, good)))
    assert (snapshot(core), core._chain_sync) == before
    if rule != "CS3-APP":
        assert not is_dropped(receive(core, peer, good))  # control: the genuine batch is used
        assert core.finalized_height == 10


def test_empty_answers_go_round_the_peers_then_end_chain_sync() -> None:
    """CS4: a peer with nothing above the block (behind) hands the request to the next one;
    when every other peer answered empty, block sync takes over."""
    core, peer = _far_behind_core()
    empty = ChainSyncResponse(after_block_id=GENESIS_BLOCK_ID, blocks=())
    asked = [peer]
    for _ in range(2):
        out = receive(core, asked[-1], empty)
        ((to, request),) = sent(out, ChainSyncRequest)
        assert request.after_block_id == GENESIS_BLOCK_ID and to not in asked
        asked.append(to)
    assert sorted(asked) == [1, 2, 3]
    out = receive(core, asked[-1], empty)
    assert sent(out, ChainSyncRequest) == [] and traces(out, "chain_sync_done")
    assert core._chain_sync is None


def test_an_unanswered_request_goes_to_the_next_peer() -> None:
    core, peer = _far_behind_core()
    live = make_tip(TOP + 1, qc_on(CHAIN[-1], TOP), TOP + 1, b"live")
    tip = make_tip(TOP + 2, qc_on(live, TOP + 1), TOP + 2, b"x")
    # a proposal above the gap within a round timeout of the request does not re-ask (CS2)
    out = receive(core, 2, proposal(TOP + 2, tip, b"x"), now_ns=1)
    assert sent(out, ChainSyncRequest) == [] and sent(out, BlockSyncRequest) == []
    later_ns = int(core._pacemaker.round_timeout_ms() * 1e6) + 2
    tip3 = make_tip(TOP + 3, qc_on(tip, TOP + 2), TOP + 3, b"y")
    out = receive(core, 3, proposal(TOP + 3, tip3, b"y"), now_ns=later_ns)
    ((to, request),) = sent(out, ChainSyncRequest)  # unanswered: asked again, elsewhere
    assert to not in (peer, 0) and request.after_block_id == GENESIS_BLOCK_ID


def test_chain_sync_requests_are_served_from_the_kept_finalized_blocks() -> None:
    core = make_core(0)
    for tip in CHAIN[:8]:
        receive(
            core,
            tip.header.author,
            proposal(tip.header.block_round, tip, b"b%d" % tip.header.seq_num),
        )
    assert core.finalized_height == 6
    out = receive(core, 3, ChainSyncRequest(after_block_id=GENESIS_BLOCK_ID, count=4))
    ((to, response),) = sent(out, ChainSyncResponse)
    assert to == 3 and [b.tip.header.seq_num for b in response.blocks] == [1, 2, 3, 4]
    out = receive(core, 3, ChainSyncRequest(after_block_id=block_id(CHAIN[3]), count=10))
    assert [b.tip.header.seq_num for b in sent(out, ChainSyncResponse)[0][1].blocks] == [5, 6]
    out = receive(core, 3, ChainSyncRequest(after_block_id=b"\x07" * 32, count=10))
    assert sent(out, ChainSyncResponse)[0][1].blocks == ()


@pytest.mark.parametrize("gap", [CHAIN_SYNC_MIN_GAP - 10])
def test_a_small_gap_is_still_walked_back_with_block_sync(gap: int) -> None:
    core = make_core(0)
    top = MAX_SYNC_BLOCKS + gap
    top_qc = qc_on(CHAIN[top - 1], top)
    tip = make_tip(top + 1, top_qc, top + 1, b"live")
    out = receive(core, 1, proposal(top + 1, tip, b"live"))
    ((peer, request),) = sent(out, BlockSyncRequest)
    newest_first = tuple(synced(t) for t in reversed(CHAIN[top - MAX_SYNC_BLOCKS : top]))
    out = receive(core, peer, BlockSyncResponse(block_id=request.block_id, blocks=newest_first))
    assert sent(out, ChainSyncRequest) == [] and len(sent(out, BlockSyncRequest)) == 1
