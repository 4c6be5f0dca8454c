"""Replays of S1-S5 (reference §8) under all three protocol modes, with exact outcomes.

Naming follows the reference: N0 Dave, N1 Alice (leader of round 5), N2 Bob (round 6),
N3 Carol (round 7); round-robin leaders, 10 ms constant latency, Δ = 100 ms.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from netsim.runner import Run, run_scenario
from netsim.scenario import load_scenario
from netsim.timeline import ProposalFact, Timeline

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
DAVE, ALICE, BOB, CAROL = 0, 1, 2, 3
MODES = ("vanilla", "v1", "monadbft")


@cache
def replay(name: str, protocol: str) -> tuple[Run, Timeline]:
    timeline = Timeline()
    run = run_scenario(
        load_scenario(SCENARIOS / f"{name}.toml"), protocol=protocol, extra_observers=[timeline]
    )
    return run, timeline


def in_window(rounds: set[int], low: int, high: int) -> set[int]:
    return {r for r in rounds if low <= r <= high}


def b5(timeline: Timeline) -> ProposalFact:
    fact = timeline.fresh_proposal(5, ALICE)
    assert fact is not None
    return fact


@pytest.mark.parametrize("protocol", MODES)
def test_replays_hold_every_invariant(protocol: str) -> None:
    for name in (
        "s1_crashed_successor",
        "s2_malicious_successor",
        "s3_under_disseminated",
        "s4_equivocation",
        "s5_leader_fault_isolation",
    ):
        run, _ = replay(name, protocol)
        report = run.report()
        assert report["violations"] == [], (name, report["violations"])
        assert report["agreement"]


# ----------------------------------------------------------------------------- S1


def test_s1_vanilla_loses_b5_to_a_fresh_b7() -> None:
    run, tl = replay("s1_crashed_successor", "vanilla")
    block = b5(tl)
    honest = (DAVE, ALICE, CAROL)
    assert {v for _t, v, r, b in tl.votes if b == block.block_id and r == 5} == set(honest)
    b7 = tl.fresh_proposal(7, CAROL)
    assert b7 is not None and b7.seq_num == block.seq_num and b7.tc_round == 6
    for node in honest:
        assert tl.finalized_at(node, block.seq_num) == b7.block_id
    assert in_window(tl.timed_out_rounds(honest), 5, 8) == {5, 6}
    assert not [p for p in tl.proposals if p.reproposal]
    assert run.report()["tail_forks"] >= 1
    assert block.block_id in run.checker.tail_forks()


def test_s1_v1_reproposes_b5_in_round_7() -> None:
    run, tl = replay("s1_crashed_successor", "v1")
    block = b5(tl)
    honest = (DAVE, ALICE, CAROL)
    reproposals = [p for p in tl.proposals if p.reproposal and p.round <= 8]
    assert [(p.sender, p.round, p.block_id, p.tc_round) for p in reproposals] == [
        (CAROL, 7, block.block_id, 6)
    ]
    for node in honest:
        assert tl.finalized_at(node, block.seq_num) == block.block_id
    assert in_window(tl.timed_out_rounds(honest), 5, 8) == {5, 6}
    assert run.checker.tail_forks() == []


def test_s1_monadbft_forms_qc5_at_alice_one_timeout_no_reproposal() -> None:
    run, tl = replay("s1_crashed_successor", "monadbft")
    block = b5(tl)
    honest = (DAVE, ALICE, CAROL)
    assert (ALICE, "qc", 5) in {(who, kind, r) for _t, who, kind, r in tl.advances}
    assert in_window(tl.timed_out_rounds(honest), 5, 8) == {6}
    assert 5 not in run.checker.stats.tcs and 6 in run.checker.stats.tcs
    assert not [p for p in tl.proposals if p.reproposal]
    # B5 is Voted at every honest node on entering round 6 (before anyone reaches round 7).
    first_round_7 = min(t for node in honest for t, r, _via in tl.rounds[node] if r == 7)
    for node in honest:
        marks = [t for t, _cur, block_id, _r in tl.voted[node] if block_id == block.block_id]
        assert marks and marks[0] < first_round_7
    b7 = tl.fresh_proposal(7, CAROL)
    assert b7 is not None
    assert (b7.parent_id, b7.seq_num, b7.fresh_certificate, b7.tc_round) == (
        block.block_id,
        block.seq_num + 1,
        "notip",
        6,
    )
    for node in honest:
        assert tl.finalized_at(node, block.seq_num) == block.block_id
        assert tl.finalized_at(node, block.seq_num + 1) == b7.block_id


# ----------------------------------------------------------------------------- S2


def bob_forks(tl: Timeline) -> list[ProposalFact]:
    return [p for p in tl.proposals if p.sender == BOB and p.round == 6]


def test_s2_vanilla_honest_nodes_vote_bobs_fork_and_b5_is_lost() -> None:
    run, tl = replay("s2_malicious_successor", "vanilla")
    block = b5(tl)
    with_tc = [p for p in bob_forks(tl) if p.tc_round == 5]
    assert len(with_tc) == 1
    fork = with_tc[0]
    assert (fork.seq_num, fork.parent_id) == (block.seq_num, block.parent_id)
    assert {v for _t, v, r, b in tl.votes if b == fork.block_id and v != BOB} >= {DAVE, ALICE}
    for node in (DAVE, ALICE, CAROL):
        assert tl.finalized_at(node, block.seq_num) == fork.block_id
    assert run.checker.tail_forks() == [block.block_id]


def test_s2_v1_rejects_bobs_fork_and_carol_reproposes_b5() -> None:
    run, tl = replay("s2_malicious_successor", "v1")
    block = b5(tl)
    forks = {p.block_id for p in bob_forks(tl)}
    assert len(forks) == 2  # without TC at once, with TC5 once he could build it
    assert not [v for _t, v, _r, b in tl.votes if b in forks and v != BOB]
    reproposals = [(p.sender, p.round, p.block_id) for p in tl.proposals if p.reproposal]
    assert reproposals == [(CAROL, 7, block.block_id)]
    for node in (DAVE, ALICE, CAROL):
        assert tl.finalized_at(node, block.seq_num) == block.block_id
    assert run.checker.tail_forks() == []


def test_s2_monadbft_alice_forms_qc5_and_bobs_fork_is_malformed() -> None:
    run, tl = replay("s2_malicious_successor", "monadbft")
    block = b5(tl)
    assert 5 not in run.checker.stats.tcs  # TC5 never exists
    forks = bob_forks(tl)
    assert forks and all(p.tc_round is None and p.seq_num == block.seq_num for p in forks)
    assert not [v for _t, v, _r, b in tl.votes if b in {p.block_id for p in forks} and v != BOB]
    assert not [p for p in tl.proposals if p.reproposal]
    b7 = tl.fresh_proposal(7, CAROL)
    assert b7 is not None and b7.parent_id == block.block_id and b7.fresh_certificate == "notip"
    for node in (DAVE, ALICE, CAROL):
        assert tl.finalized_at(node, block.seq_num) == block.block_id


# ----------------------------------------------------------------------------- S3


@pytest.mark.parametrize("protocol", ["v1", "monadbft"])
def test_s3_under_disseminated_block_is_skipped_through_exactly_one_nec(protocol: str) -> None:
    run, tl = replay("s3_under_disseminated", protocol)
    block = b5(tl)
    assert block.recipients == (CAROL,)
    assert (BOB, 6) in {(who, r) for _t, who, r in tl.recoveries}
    assert {(who, r, q) for _t, who, r, q in tl.nes if who != ALICE} == {(DAVE, 6, 4)}
    assert tl.necs == {(6, 4)}
    assert run.report()["necs"] == 1
    b6 = tl.fresh_proposal(6, BOB)
    assert b6 is not None
    assert (b6.seq_num, b6.parent_id, b6.fresh_certificate, b6.tc_round) == (
        block.seq_num,
        block.parent_id,
        "nec",
        5,
    )
    # Carol, who holds B5, accepts the NEC-backed sibling (her vote may stay local: she leads 7).
    assert (CAROL, b6.block_id.hex()) in {
        (node, d.get("block_id")) for _t, node, name, d in tl.traces if name == "voted"
    }
    for node in (DAVE, BOB, CAROL):
        assert tl.finalized_at(node, block.seq_num) == b6.block_id
    assert not [p for p in tl.proposals if p.reproposal]


def test_s3_vanilla_skips_the_block_without_any_nec() -> None:
    run, tl = replay("s3_under_disseminated", "vanilla")
    block = b5(tl)
    b6 = tl.fresh_proposal(6, BOB)
    assert b6 is not None and b6.fresh_certificate is None and b6.seq_num == block.seq_num
    assert tl.necs == set() and run.report()["necs"] == 0
    for node in (DAVE, BOB, CAROL):
        assert tl.finalized_at(node, block.seq_num) == b6.block_id


# ----------------------------------------------------------------------------- S4


@pytest.mark.parametrize("protocol", MODES)
def test_s4_equivocation_is_detected_and_safety_holds(protocol: str) -> None:
    run, tl = replay("s4_equivocation", protocol)
    round_5 = [p for p in tl.proposals if p.sender == ALICE and p.round == 5]
    assert len({p.block_id for p in round_5}) == 2
    assert run.checker.stats.equivocations == {(ALICE, 5)}
    report = run.report()
    assert report["equivocations"] == 1 and report["agreement"]
    if protocol != "vanilla":
        assert report["violations"] == []  # includes P6: reverts only with evidence


# ----------------------------------------------------------------------------- S5

EXPECTED_TIMEOUTS_PER_SLOT = {"monadbft": 1, "v1": 2, "vanilla": 2}
EXPECTED_REPROPOSALS_PER_SLOT = {"monadbft": 0, "v1": 1, "vanilla": 0}


@pytest.mark.parametrize("protocol", MODES)
def test_s5_leader_fault_isolation(protocol: str) -> None:
    run, tl = replay("s5_leader_fault_isolation", protocol)
    honest = {DAVE, ALICE, CAROL}
    timed_out = tl.timed_out_rounds(honest)
    slots = [r for r in range(2, run.report()["rounds"] - 4, 4)]  # Bob leads 2, 6, 10, ...
    assert len(slots) >= 8
    for slot in slots:
        window = in_window(timed_out, slot - 1, slot + 2)
        assert len(window) == EXPECTED_TIMEOUTS_PER_SLOT[protocol], (slot, window)
        assert slot in window
        reproposals = [p for p in tl.proposals if p.reproposal and slot < p.round <= slot + 2]
        assert len(reproposals) == EXPECTED_REPROPOSALS_PER_SLOT[protocol], slot
    lost = run.checker.tail_forks()
    if protocol == "vanilla":
        assert len(lost) >= len(slots) - 1
    else:
        assert lost == []
