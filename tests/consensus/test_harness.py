"""Whole-network behaviour of unmodified cores in the in-process harness."""

from __future__ import annotations

import pytest

from consensus.crypto import TRUSTED
from consensus.harness import Harness, HarnessConfig, run_harness
from consensus.messages import (
    AdvanceRoundMessage,
    BlockSyncResponse,
    ProposalMessage,
    TimeoutMessage,
    VoteMessage,
)

PROTOCOLS = ["monadbft", "v1", "vanilla"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("nodes", [4, 7])
def test_happy_path_every_node_finalizes_the_same_chain(protocol: str, nodes: int) -> None:
    result = run_harness(HarnessConfig(nodes=nodes, blocks=8, protocol=protocol))
    assert result.stopped == "done"
    chains = [record.commits for record in result.records]
    assert all(len(chain) >= 8 for chain in chains)
    assert result.agreement()
    shortest = min(len(chain) for chain in chains)
    assert len({tuple(chain[:shortest]) for chain in chains}) == 1
    for record in result.records:
        assert record.commit_seq == list(range(1, len(record.commit_seq) + 1))
        assert not record.reverts and record.trace_counts["local_timeout"] == 0
    # Speculative finality one round before full finality, for every block at every node.
    for node in range(nodes):
        lags = result.finality_lags(node)
        assert lags and set(lags) == {1}


def _proposals(result, node: int, kind: str = "proposal") -> list[dict]:
    return result.records[node].traces_named(kind)


def _block_of_round(result, round: int) -> str:
    for node in result.live:
        for detail in _proposals(result, node):
            if detail["round"] == round:
                return detail["block_id"]
    raise AssertionError(f"no fresh proposal in round {round}")


def test_s1_crashed_successor_monadbft_forms_qc_at_current_leader() -> None:
    result = run_harness(HarnessConfig(nodes=4, blocks=3, crashed=frozenset({2})))
    b1 = _block_of_round(result, 1)
    assert result.agreement()
    for node in result.live:
        record = result.records[node]
        assert record.commits[0].hex() == b1  # B1 survives at height 1
        assert not record.traces_named("reproposal")
        via = dict(record.rounds_entered)
        assert via[2] == "qc" and via[3] == "tc"  # only the crashed leader's round timed out
        assert record.voted_round[bytes.fromhex(b1)] == 2  # Voted on entering round 2
    assert any(d["round"] == 1 for d in result.records[1].traces_named("qc_formed"))
    fresh3 = [d for d in _proposals(result, 3) if d["round"] == 3]
    assert fresh3 and fresh3[0]["fresh_certificate"] == "NoTipCertificate"


def test_s1_crashed_successor_v1_reproposes() -> None:
    result = run_harness(HarnessConfig(nodes=4, blocks=3, protocol="v1", crashed=frozenset({2})))
    b1 = _block_of_round(result, 1)
    assert result.agreement()
    reproposals = _proposals(result, 3, "reproposal")
    assert reproposals[0]["round"] == 3 and reproposals[0]["block_id"] == b1
    for node in result.live:
        record = result.records[node]
        assert record.commits[0].hex() == b1
        via = dict(record.rounds_entered)
        assert via[2] == "tc" and via[3] == "tc"  # two timed-out rounds


def test_s1_crashed_successor_vanilla_drops_the_block() -> None:
    result = run_harness(
        HarnessConfig(nodes=4, blocks=3, protocol="vanilla", crashed=frozenset({2}))
    )
    b1 = _block_of_round(result, 1)
    b3 = _block_of_round(result, 3)
    assert result.agreement()
    for node in result.live:
        record = result.records[node]
        assert b1 not in {c.hex() for c in record.commits}  # the tail fork
        assert record.commits[0].hex() == b3  # height 1 holds Carol's fresh block
        assert not record.traces_named("reproposal")
        via = dict(record.rounds_entered)
        assert via[2] == "tc" and via[3] == "tc"


def test_backup_qc_from_tip_votes_when_plain_votes_are_lost() -> None:
    def drop(src: int, dst: int, message) -> bool:  # S2b: no votes, no AdvanceRound
        return isinstance(message, VoteMessage | AdvanceRoundMessage)

    result = run_harness(HarnessConfig(nodes=4, blocks=3, drop=drop))
    assert result.stopped == "done" and result.agreement()
    for node in result.live:
        record = result.records[node]
        assert record.trace_counts["local_timeout"] > 0
        assert record.trace_counts["tc_formed"] == 0  # every round entered through a QC
        assert not record.traces_named("reproposal")
        assert all(via in ("start", "qc") for _, via in record.rounds_entered)
    # Without tip votes (v1) the same losses force TCs and reproposals.
    v1 = run_harness(HarnessConfig(nodes=4, blocks=2, protocol="v1", drop=drop, max_events=400))
    assert v1.stopped == "max_events" and v1.finalized_heights == [0, 0, 0, 0]
    assert v1.records[0].trace_counts["tc_formed"] > 0


def test_reproposal_after_a_tip_tc() -> None:
    def drop(src: int, dst: int, message) -> bool:
        if isinstance(message, ProposalMessage) and message.round == 1 and dst in (0, 3):
            return True
        return isinstance(message, VoteMessage) and message.vote.round == 1

    result = run_harness(HarnessConfig(nodes=4, blocks=2, drop=drop))
    b1 = _block_of_round(result, 1)
    assert result.agreement()
    reproposals = _proposals(result, 2, "reproposal")
    assert reproposals and reproposals[0]["block_id"] == b1 and reproposals[0]["round"] == 2
    for node in result.live:
        assert result.records[node].commits[0].hex() == b1


def test_nec_path_replaces_an_under_disseminated_block() -> None:
    def drop(src: int, dst: int, message) -> bool:  # S3 6b: B1 reached nobody, sync delayed
        if isinstance(message, ProposalMessage) and message.round == 1:
            return True
        if isinstance(message, TimeoutMessage) and message.info.round == 1 and (src, dst) == (3, 2):
            return True
        return isinstance(message, BlockSyncResponse) and src == 1

    result = run_harness(HarnessConfig(nodes=4, blocks=2, drop=drop))
    b1 = _block_of_round(result, 1)
    assert result.agreement()
    leader = result.records[2]
    assert leader.trace_counts["round_recovery"] == 1 and leader.trace_counts["nec_formed"] == 1
    fresh = [d for d in leader.traces_named("proposal") if d["round"] == 2]
    assert fresh and fresh[0]["fresh_certificate"] == "NoEndorsementCertificate"
    assert fresh[0]["seq_num"] == 1  # replaces B1 at its height
    for node in result.live:
        assert b1 not in {c.hex() for c in result.records[node].commits}
    assert result.records[1].trace_counts["round_recovery_held"] == 1  # holder stayed silent


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_progress_and_agreement_with_a_crashed_node(protocol: str) -> None:
    result = run_harness(
        HarnessConfig(nodes=7, blocks=10, protocol=protocol, crashed=frozenset({3}), scheme=TRUSTED)
    )
    assert result.stopped == "done" and result.agreement()


def test_vote_pacing_sets_the_block_time() -> None:
    from consensus.core import CoreConfig

    config = HarnessConfig(nodes=4, blocks=6, latency_ms=10.0, core=CoreConfig(vote_pace_ms=400.0))
    result = run_harness(config)
    assert result.stopped == "done" and result.agreement()
    rounds = result.final_rounds[0]
    assert result.time_ms >= (rounds - 3) * 400.0  # one vote per 400 ms after the first
    assert result.records[0].trace_counts["local_timeout"] == 0


def test_harness_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        HarnessConfig(nodes=0)
    with pytest.raises(ValueError):
        HarnessConfig(nodes=4, crashed=frozenset({4}))
    with pytest.raises(ValueError):
        HarnessConfig(nodes=2, crashed=frozenset({0, 1}))


def test_harness_is_deterministic() -> None:
    first = Harness(HarnessConfig(nodes=4, blocks=4, crashed=frozenset({2}))).run()
    second = Harness(HarnessConfig(nodes=4, blocks=4, crashed=frozenset({2}))).run()
    assert [r.commits for r in first.records] == [r.commits for r in second.records]
    assert first.events == second.events and first.time_ms == second.time_ms
