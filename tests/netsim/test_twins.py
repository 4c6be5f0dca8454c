"""Twins: arrangement generator, symmetry deduplication, per-round routing, runs, mutations."""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from types import SimpleNamespace

import pytest

from consensus.messages import (
    GENESIS_QC,
    AdvanceRoundMessage,
    BlockSyncRequest,
    BlockSyncResponse,
    NoEndorsement,
    NoEndorsementMessage,
    ProposalMessage,
    RoundRecoveryMessage,
    TimeoutInfo,
    TimeoutMessage,
    Vote,
    VoteMessage,
)
from netsim import twins
from netsim.twins import (
    ArrangementSpace,
    RoundPartitions,
    RoundSpec,
    TwinsConfig,
    run_arrangement,
    run_twins,
    set_partitions,
)
from node.cli import main as sedna

SPACE = ArrangementSpace()  # n = 4, twin identity 1 on instances 1 and 4, <= 2 blocks
CI_SEED = 2024


# ----------------------------------------------------------------------------- generator


@pytest.mark.parametrize(("max_blocks", "count"), [(1, 1), (2, 16), (3, 41), (5, 52)])
def test_set_partitions_of_five_instances(max_blocks: int, count: int) -> None:
    partitions = set_partitions(list(range(5)), max_blocks)
    assert len(partitions) == count == len(set(partitions))
    for partition in partitions:
        assert sorted(i for block in partition for i in block) == [0, 1, 2, 3, 4]
        assert 1 <= len(partition) <= max_blocks and all(partition)


def test_set_partitions_rejects_zero_blocks() -> None:
    with pytest.raises(ValueError):
        set_partitions([0, 1], 0)


def test_space_has_64_choices_per_round_and_six_relabellings() -> None:
    assert SPACE.choices_per_round == 64 and SPACE.symmetries == 6
    assert SPACE.identities == (0, 1, 2, 3, 1)
    assert {c.leader for c in SPACE.choices} == {0, 1, 2, 3}
    assert SPACE.raw_count(3) == 262_144
    assert ArrangementSpace(max_blocks=3).choices_per_round == 164


def orbit_count_by_burnside(space: ArrangementSpace, depth: int) -> int:
    """Independent count: the group acts on every round at once, so an arrangement fixed by
    g is a tuple of g-fixed choices; orbits = mean over g of fixed(g) ** depth."""
    fixed = [space.choices_per_round]  # the identity
    fixed += [sum(1 for c, image in enumerate(table) if c == image) for table in space._act]
    total = sum(f**depth for f in fixed)
    assert total % len(fixed) == 0
    return total // len(fixed)


@pytest.mark.parametrize(("depth", "expected"), [(1, 20), (2, 816), (3, 45_760)])
def test_dedup_keeps_exactly_one_arrangement_per_orbit(depth: int, expected: int) -> None:
    canonical = list(SPACE.canonical(depth))
    assert len(canonical) == expected == orbit_count_by_burnside(SPACE, depth)
    assert canonical == sorted(set(canonical))
    if depth <= 2:  # brute force: every raw arrangement maps into the canonical set
        images = {SPACE.canonicalize(a) for a in itertools.product(range(64), repeat=depth)}
        assert images == set(canonical)
    for arrangement in canonical[:: max(1, len(canonical) // 500)]:
        assert SPACE.canonicalize(arrangement) == arrangement


def test_relabelling_moves_honest_nodes_and_keeps_the_twins_apart() -> None:
    def index(partition: tuple[tuple[int, ...], ...], leader: int) -> int:
        return SPACE.choices.index(RoundSpec(partition, leader))

    # Honest 0 alone ~ honest 2 alone ~ honest 3 alone: one orbit.
    alone = {SPACE.canonicalize((index(((0,), (1, 2, 3, 4)), 1),))}
    alone.add(SPACE.canonicalize((index(((0, 1, 3, 4), (2,)), 1),)))
    alone.add(SPACE.canonicalize((index(((0, 1, 2, 4), (3,)), 1),)))
    assert len(alone) == 1
    # Twin 1 alone and twin 1' alone are different arrangements (twins stay distinct).
    twin = SPACE.canonicalize((index(((0, 2, 3, 4), (1,)), 0),))
    twin_prime = SPACE.canonicalize((index(((0, 1, 2, 3), (4,)), 0),))
    assert twin != twin_prime
    # The leader is relabelled with the nodes: honest leaders merge, the twin leader does not.
    whole = ((0, 1, 2, 3, 4),)
    honest_leaders = {SPACE.canonicalize((index(whole, leader),)) for leader in (0, 2, 3)}
    assert len(honest_leaders) == 1
    assert SPACE.canonicalize((index(whole, 1),)) not in honest_leaders


def test_sample_is_seeded_distinct_and_canonical() -> None:
    first = SPACE.sample(3, 50, seed=7)
    assert first == SPACE.sample(3, 50, seed=7)
    assert first != SPACE.sample(3, 50, seed=8)
    assert len(first) == len(set(first)) == 50
    assert all(SPACE.canonicalize(a) == a for a in first)
    deep = SPACE.sample(6, 5, seed=1)  # beyond the exhaustive bound, sampling still works
    assert len(deep) == 5 and all(len(a) == 6 for a in deep)
    with pytest.raises(ValueError):
        SPACE.sample(3, 0, seed=1)


def test_exhaustive_runs_stop_at_depth_three() -> None:
    with pytest.raises(ValueError, match="use --sample"):
        twins.arrangements_for(SPACE, 4, None, 1)
    with pytest.raises(ValueError):
        run_twins(0)
    with pytest.raises(ValueError):
        run_twins(2, arrangements=[(1,)])  # wrong depth


# ----------------------------------------------------------------------------- routing


def one_of_each_message(round_: int) -> list[object]:
    """Every wire message type, belonging to `round_` (sync traffic has no round)."""
    vote = Vote(block_id=bytes(32), round=round_, epoch=1)
    qc = SimpleNamespace(round=round_ - 1)  # AdvanceRound(QC(r-1)) belongs to round r
    info = TimeoutInfo(epoch=1, round=round_, high_qc_round=0, high_tip_round=0)
    sig = bytes(64)
    return [
        ProposalMessage(round_, 1, 0, None, None, None, sig),  # type: ignore[arg-type]
        VoteMessage(vote=vote, author=0, signature=sig),
        TimeoutMessage(info, 0, sig, GENESIS_QC, None, None),
        NoEndorsementMessage(NoEndorsement(epoch=1, round=round_, tip_qc_round=0), 0, sig),
        RoundRecoveryMessage(round_, 1, None, 0, sig),  # type: ignore[arg-type]
        AdvanceRoundMessage(certificate=qc),  # type: ignore[arg-type]
        BlockSyncRequest(block_id=bytes(32), count=1),
        BlockSyncResponse(block_id=bytes(32), blocks=()),
    ]


def test_every_message_type_is_routed_by_its_round() -> None:
    arrangement = (
        RoundSpec(((0, 1, 2, 3, 4),), 0),  # round 1: everyone together
        RoundSpec(((0, 1), (2, 3, 4)), 1),  # round 2: {0, 1} | {2, 3, 1'}
    )
    router = RoundPartitions(arrangement, first_round=1, instances=5, gst_ms=1000.0)
    hosts = [SimpleNamespace(machine=SimpleNamespace(current_round=2)) for _ in range(5)]
    sim = SimpleNamespace(now_ms=10.0, hosts=hosts)
    for message in one_of_each_message(2):
        assert router(sim, 0, 1, message), type(message).__name__  # same block
        assert not router(sim, 0, 2, message), type(message).__name__  # across
        assert not router(sim, 4, 1, message), type(message).__name__  # twin 1' vs twin 1
    for message in one_of_each_message(1)[:6]:  # round 1 is not partitioned
        assert router(sim, 0, 2, message)
    for message in one_of_each_message(3):  # round 3 has no entry: round-robin, connected
        if not isinstance(message, BlockSyncRequest | BlockSyncResponse):
            assert router(sim, 0, 2, message)
    sim.now_ms = 1000.0  # GST: everything passes
    assert all(router(sim, 0, 2, m) for m in one_of_each_message(2))
    assert router.dropped == 8 * 2


# ----------------------------------------------------------------------------- runs


def test_a_twin_leader_equivocates_naturally_and_safety_holds() -> None:
    # Round 1 led by the twin identity 1: twin 1 talks to {0}, twin 1' to {2, 3}.
    arrangement = (RoundSpec(((0, 1), (2, 3, 4)), 1),)
    run = run_arrangement(arrangement)
    assert (1, 1) in run.equivocation_slots
    assert run.violations == [] and run.partition_drops > 0
    assert min(run.finalized[i] for i in (0, 2, 3)) >= 1 + TwinsConfig().extra_blocks


def test_a_run_replays_to_the_same_trace_hash() -> None:
    arrangement = SPACE.arrangement(SPACE.sample(3, 1, seed=3)[0])
    assert run_arrangement(arrangement).trace_hash == run_arrangement(arrangement).trace_hash


@pytest.mark.parametrize(("protocol", "sample"), [("monadbft", 300), ("v1", 60), ("vanilla", 60)])
def test_deterministic_sample_has_no_violation(protocol: str, sample: int) -> None:
    summary = run_twins(
        3, config=TwinsConfig(protocol=protocol), sample=sample, sample_seed=CI_SEED
    )
    assert summary.run == sample and summary.mode == "sample"
    assert summary.failed == 0 and summary.failures == [] and summary.agreement
    # Not vacuous: partitions dropped traffic, the twins equivocated, rounds timed out.
    assert summary.partition_drops > 10 * sample and summary.runs_with_equivocation == sample
    assert summary.tcs > 0 and summary.liveness.get("violated", 0) == 0
    if protocol != "vanilla":
        assert summary.reproposals > 0 and summary.necs > 0


@pytest.mark.parametrize(
    ("mutation", "caught_by"),
    [
        ("double_vote", ("P3",)),
        ("commit_non_consecutive", ("commit rule", "P1")),
        ("skip_high_tip_check", ("P5", "P1")),
        ("skip_reproposal_rule", ("P5", "P1")),
    ],
)
def test_twins_catch_each_mutation(mutation: str, caught_by: tuple[str, ...]) -> None:
    config = TwinsConfig(test_mutations=frozenset({mutation}))
    summary = run_twins(3, config=config, sample=40, sample_seed=CI_SEED, stop_after_failures=1)
    assert summary.failed == 1, f"{mutation} not caught in {summary.run} arrangements"
    assert summary.failures[0]["violations"][0].startswith(caught_by), summary.failures[0]
    # The same arrangement with the correct core passes.
    arrangement = SPACE.arrangement(summary.failures[0]["arrangement"])
    assert run_arrangement(arrangement).violations == []


# Found by the exhaustive depth-3 run (22 of 45,760 arrangements failed the reference's
# P5/P6, never P1): a QC on a *reproposed* block (QC round 3, block round 1) is outranked by
# a TC whose high extend is a fresher tip of round 2, so the block loses its height. monad-bft
# behaves the same; P5'/P6' (docs/protocol.md "Speculative finality of reproposals") allow
# it: the revert / lost block is counted, not flagged.
REPROPOSAL_ARRANGEMENTS = {
    # r1: {0,1,2}|{3,1'} L3; r2: {0,1}|{2,3,1'} L0; r3: {0,1,3}|{2,1'} L2
    "revert": ((11, 4, 26), "reproposal_reverts"),
    # r1: {0,1}|{2,3,1'} L0; r2: {0}|{1,2,3,1'} L0; r3: {0,2,1'}|{1,3} L1
    "tail_fork": ((4, 0, 49), "reproposal_tail_forks"),
}


@pytest.mark.parametrize("kind", sorted(REPROPOSAL_ARRANGEMENTS))
def test_depth_3_reproposal_arrangements_are_counted_not_flagged(kind: str) -> None:
    indices, counter = REPROPOSAL_ARRANGEMENTS[kind]
    run = run_arrangement(SPACE.arrangement(indices))
    assert run.violations == [], run.violations
    assert getattr(run, counter) >= 1  # the phenomenon is still there and visible
    assert run.reproposal_reverts <= run.speculative_reverts


def test_summary_counts_reproposal_reverts() -> None:
    indices = [REPROPOSAL_ARRANGEMENTS[k][0] for k in sorted(REPROPOSAL_ARRANGEMENTS)]
    summary = run_twins(3, arrangements=indices)
    assert summary.failed == 0 and summary.run == 2
    assert summary.reproposal_reverts >= 1 and summary.reproposal_tail_forks >= 1
    report = summary.as_dict()
    assert report["reproposal_reverts"] == summary.reproposal_reverts
    assert report["reproposal_tail_forks"] == summary.reproposal_tail_forks


def test_progress_is_reported_and_a_parallel_run_merges_to_the_serial_summary() -> None:
    # The cheap CI version of the multi-process merge (the slow tests run depth 3 with 2
    # processes): depth 1 in one process and in two must give the same summary.
    seen: list[twins.TwinsProgress] = []
    serial = run_twins(1, progress=seen.append)
    assert [p.done for p in seen] == list(range(1, 21)) and seen[-1].total == 20
    assert seen[0].remaining_s is not None and seen[-1].remaining_s == 0
    parallel_seen: list[twins.TwinsProgress] = []
    parallel = run_twins(1, jobs=2, progress=parallel_seen.append)
    assert parallel_seen[-1].done == 20 and len(parallel_seen) >= 2  # per finished chunk
    timing = ("enumerate_s", "wall_s")
    assert {k: v for k, v in parallel.as_dict().items() if k not in timing} == {
        k: v for k, v in serial.as_dict().items() if k not in timing
    }
    assert serial.run == 20 and serial.events > 0


def test_cli_prints_progress_and_an_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    assert sedna(["sim", "twins", "--depth", "1", "--progress-every", "0"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("twins:")]
    assert len(lines) == 20 and "20/20 arrangements (100.0 %)" in lines[-1]
    assert all("elapsed" in line and "left" in line for line in lines[1:])
    assert sedna(["sim", "twins", "--depth", "1"]) == 0  # shorter than one interval: quiet
    assert "twins:" not in capsys.readouterr().err


@pytest.mark.slow
def test_every_depth_3_arrangement_has_no_violation() -> None:
    summary = run_twins(3, jobs=2)
    assert summary.run == summary.after_dedup == 45_760
    assert summary.failed == 0, summary.failures[:3]
    assert summary.reproposal_reverts + summary.reproposal_tail_forks > 0


@pytest.mark.parametrize("protocol", ["v1", "vanilla"])
def test_every_depth_2_arrangement_has_no_violation_in_the_comparison_modes(
    protocol: str,
) -> None:
    # In the default suite (about 10 s each on a quiet machine): exhaustive, not sampled.
    summary = run_twins(2, config=TwinsConfig(protocol=protocol), jobs=2)
    assert summary.run == summary.after_dedup == 816
    assert summary.failed == 0, summary.failures[:3]
    assert summary.runs_with_equivocation > 0 and summary.tcs > 0
    assert summary.liveness.get("violated", 0) == 0
    if protocol == "v1":
        assert summary.reproposals > 0 and summary.necs > 0


# ----------------------------------------------------------------------------- CLI


def test_cli_runs_every_depth_1_arrangement(capsys: pytest.CaptureFixture[str]) -> None:
    assert sedna(["sim", "twins", "--depth", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["generated"], report["after_dedup"], report["run"]) == (64, 20, 20)
    assert report["failed"] == 0 and report["agreement"] and report["mode"] == "exhaustive"


def test_cli_sample_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sim", "twins", "--depth", "3", "--sample", "5", "--seed", "9", "--json"]
    assert sedna(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert sedna([*args, "--protocol", "v1"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert first["run"] == 5 and first["after_dedup"] is None and other["protocol"] == "v1"
    assert sedna(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in first.items() if not k.endswith("_s")} == {
        k: v for k, v in again.items() if not k.endswith("_s")
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--depth", "4"],
        ["--depth", "0"],
        ["--depth", "9", "--sample", "3"],
        ["--partitions", "0"],
        ["--partitions", "6"],
        ["--sample", "0"],
        ["--seed", "-1", "--sample", "2"],
        ["--jobs", "0"],
    ],
)
def test_cli_rejects_bad_input(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert sedna(["sim", "twins", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error:")


def test_cli_exits_1_and_names_the_arrangement_on_a_violation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real simulation with a deliberately broken core (test-only switch).
    mutated = functools.partial(TwinsConfig, test_mutations=frozenset({"double_vote"}))
    monkeypatch.setattr(twins, "TwinsConfig", mutated)
    assert sedna(["sim", "twins", "--depth", "1"]) == 1
    lines = capsys.readouterr().out.splitlines()
    violations = [line for line in lines if line.startswith("VIOLATION")]
    assert violations and all("r1: {" in line for line in violations)
    assert Counter(line.split("] ")[1][:2] for line in violations)["P3"] >= 1
