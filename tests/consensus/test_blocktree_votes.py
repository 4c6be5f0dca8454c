"""Unit tests of the block tree (commit rule, retry, pruning) and vote aggregation."""

from __future__ import annotations

from consensus.blocktree import BlockTree, TreeBlock
from consensus.certificates import notip_from_tc
from consensus.core import CoreConfig
from consensus.messages import GENESIS_BLOCK_ID, GENESIS_QC, Vote, VoteMessage
from consensus.vote_state import VOTE_WINDOW, VoteState
from tests.consensus.support import (
    QC1,
    QC2,
    QC3,
    SIGNERS,
    TIP1,
    TIP2,
    TIP3,
    VALIDATORS,
    block_id,
    body,
    make_tip,
    qc_on,
    tc_of,
    timeout_msg,
)


def tree_block(tip) -> TreeBlock:
    return TreeBlock(block_id(tip), tip, body())


def test_two_chain_commit_needs_consecutive_rounds() -> None:
    tree = BlockTree()
    for tip in (TIP1, TIP2, TIP3):
        assert tree.add(tree_block(tip))
    assert tree.committable(QC1) == []  # B1's parent is the root
    assert [b.block_id for b in tree.committable(QC2)] == [block_id(TIP1)]
    tc2 = tc_of(2, [timeout_msg(a, 2, QC1) for a in (0, 1, 2)])
    skip = make_tip(3, QC1, 2, b"skip", fresh=notip_from_tc(tc2))
    tree.add(tree_block(skip))
    assert tree.committable(qc_on(skip, 3)) == []  # 3 != 1 + 1
    assert tree.committable(qc_on(skip, 3), consecutive_only=False)  # the test mutation


def test_commit_waits_for_missing_blocks_and_prunes_forks() -> None:
    tree = BlockTree()
    tree.add(tree_block(TIP2))  # parent B1 missing
    assert tree.missing_ancestor(block_id(TIP2)) == block_id(TIP1)
    assert tree.add_qc(QC2)
    assert tree.committable(QC2) == []  # B1 missing: retried later
    tree.add(tree_block(TIP1))
    assert tree.missing_ancestor(block_id(TIP2)) is None
    assert [q.round for q in tree.qcs_by_round_desc()] == [2]
    fork = make_tip(
        2,
        GENESIS_QC,
        1,
        b"fork",
        fresh=notip_from_tc(tc_of(1, [timeout_msg(a, 1, GENESIS_QC) for a in (0, 1, 3)])),
    )
    tree.add(tree_block(fork))
    path = tree.committable(QC2)
    tree.commit(path)
    assert tree.root_id == block_id(TIP1) and tree.root_seq == 1 and tree.root_round == 1
    assert tree.is_pending(block_id(TIP2)) and not tree.is_pending(block_id(fork))
    assert tree.get(block_id(TIP1)) is not None  # finalized blocks still served
    assert not tree.add(tree_block(TIP1))  # nothing at or below the root
    assert [b.block_id for b in tree.chain(block_id(TIP2), 5)] == [block_id(TIP2), block_id(TIP1)]
    assert tree.add_qc(QC3) and not tree.add_qc(QC1)  # QCs at or below the root are ignored


def test_parent_lookup_and_paths() -> None:
    tree = BlockTree()
    assert tree.parent_seq_and_timestamp(GENESIS_BLOCK_ID) == (0, 0)
    assert tree.parent_seq_and_timestamp(block_id(TIP1)) is None
    tree.add(tree_block(TIP1))
    assert tree.parent_seq_and_timestamp(block_id(TIP1)) == (1, 1)
    assert [b.block_id for b in tree.path_from_root(block_id(TIP1))] == [block_id(TIP1)]
    assert tree.path_from_root(block_id(TIP3)) is None


VOTE = Vote(block_id=block_id(TIP1), round=1, epoch=1)


def _state():
    checked: list[int] = []

    def verify(message: VoteMessage) -> bool:
        checked.append(message.author)
        return message.signature == SIGNERS[message.author].vote_signature(message.vote)

    # The vote state a core would build: under the mutation matrix's plugin, a default
    # CoreConfig carries the rule switch being tested (tests/netsim/mutant_plugin.py).
    return VoteState(VALIDATORS, verify, disabled=CoreConfig().test_mutations), checked


def test_votes_verified_lazily_only_at_quorum() -> None:
    votes, checked = _state()
    assert votes.add(SIGNERS[0].vote(VOTE)) is None
    assert votes.add(SIGNERS[1].vote(VOTE)) is None
    assert checked == []  # nothing verified below quorum stake
    qc = votes.add(SIGNERS[2].vote(VOTE))
    assert qc is not None and qc.vote == VOTE and sorted(checked) == [0, 1, 2]
    assert "already formed" in votes.refusal(SIGNERS[3].vote(VOTE), 1)  # V-ONE-QC


def test_bad_signer_ignored_for_the_round_and_duplicates_refused() -> None:
    votes, _ = _state()
    votes.add(VoteMessage(vote=VOTE, author=0, signature=bytes(64)))
    votes.add(SIGNERS[1].vote(VOTE))
    assert votes.add(SIGNERS[2].vote(VOTE)) is None  # N0's signature fails at aggregation
    # V-BAD-SIGNER: the bad vote was N0's one vote of the round (V-ONE-PER-SIGNER).
    assert "already voted" in votes.refusal(SIGNERS[0].vote(VOTE), 1)
    assert "already voted" in votes.refusal(SIGNERS[1].vote(VOTE), 1)
    assert votes.add(SIGNERS[3].vote(VOTE)) is not None


def test_vote_window_and_pruning() -> None:
    votes, _ = _state()
    far = Vote(block_id=bytes(32), round=1 + VOTE_WINDOW + 1, epoch=1)
    assert votes.refusal(SIGNERS[0].vote(far), 1) is not None
    near = Vote(block_id=bytes(32), round=1 + VOTE_WINDOW, epoch=1)
    assert votes.refusal(SIGNERS[0].vote(near), 1) is None
    assert votes.refusal(SIGNERS[0].vote(VOTE), 2) is not None  # stale
    votes.add(SIGNERS[0].vote(VOTE))
    votes.add(SIGNERS[0].vote(near), trusted=True)
    votes.prune_below(2)
    assert votes.rounds_held() == [near.round]
