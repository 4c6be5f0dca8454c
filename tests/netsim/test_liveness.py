"""Liveness after the last fault, per honest instance (netsim/invariants.py).

Every honest instance that is up at the end must finalize a block within `liveness_ms`
after the last fault; one honest commit is not enough. A run that ends before its faults
do (or before the bound while an instance has not committed) is `inconclusive`.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from consensus import codec
from consensus.events import CommitBlocks, CommittedBlock
from consensus.messages import GENESIS_QC, BlockBody, BlockHeader
from netsim.driver import make_checker
from netsim.faults import Crash
from netsim.network import LinkRule
from netsim.runner import build_world, run_scenario
from netsim.scenario import parse_scenario_text

BASE = """
validators = 4
seed = 5
until_ms = 20000
until_blocks = 10
[network]
latency_ms = 10
delta_ms = 100
"""


def fake_sim(now_ms: float, last_fault_ms: float, up=(True, True, True, True)):
    hosts = [SimpleNamespace(index=i, identity=i, up=flag) for i, flag in enumerate(up)]
    return SimpleNamespace(
        hosts=hosts,
        now_ms=now_ms,
        last_fault_ms=last_fault_ms,
        instances_of={i: [i] for i in range(len(up))},
    )


def commit(height: int) -> CommitBlocks:
    header = BlockHeader(
        block_round=height,
        epoch=1,
        qc=GENESIS_QC,
        author=height % 4,
        seq_num=height,
        timestamp_ns=height,
        body_id=codec.body_id(BlockBody(payload=b"x")),
    )
    block = CommittedBlock(codec.block_id(header), header, BlockBody(payload=b"x"))
    return CommitBlocks((block,))


def checker(liveness_ms: float = 1000.0, quiet_after_ms: float = 0.0):
    world = build_world(parse_scenario_text(BASE))
    return make_checker(world, frozenset(), quiet_after_ms=quiet_after_ms, liveness_ms=liveness_ms)


def test_one_honest_commit_is_not_enough_every_live_honest_node_must_commit() -> None:
    check = checker()
    sim = fake_sim(now_ms=100.0, last_fault_ms=50.0)
    for node in (0, 1, 2):  # node 3 is up and honest but never finalizes after the fault
        check.on_command(sim, node, commit(1))
    sim.now_ms = 5000.0
    check._check_liveness(sim)
    assert check.liveness == "violated"
    assert check.violations and "[3]" in check.violations[0]


def test_every_node_committing_after_the_fault_is_ok_and_earlier_commits_do_not_count() -> None:
    check = checker()
    sim = fake_sim(now_ms=10.0, last_fault_ms=0.0)
    check.on_command(sim, 3, commit(1))  # before the fault: does not count
    sim.last_fault_ms = 50.0
    sim.now_ms = 100.0
    for node in (0, 1, 2):
        check.on_command(sim, node, commit(1))
    sim.now_ms = 5000.0
    check._check_liveness(sim)
    assert check.liveness == "violated"  # node 3's only commit predates the fault
    sim.now_ms = 200.0
    check.on_command(sim, 3, commit(2))
    sim.now_ms = 5000.0
    check.violations.clear()
    check._check_liveness(sim)
    assert check.liveness == "ok" and check.violations == []


def test_crashed_nodes_are_exempt_and_an_early_end_is_inconclusive() -> None:
    check = checker()
    sim = fake_sim(now_ms=100.0, last_fault_ms=50.0, up=(True, True, True, False))
    for node in (0, 1, 2):
        check.on_command(sim, node, commit(1))
    sim.now_ms = 5000.0
    check._check_liveness(sim)
    assert check.liveness == "ok"  # node 3 is down at the end: not required
    waiting = checker()
    sim = fake_sim(now_ms=100.0, last_fault_ms=50.0)
    waiting.on_command(sim, 0, commit(1))
    waiting._check_liveness(sim)  # ends at 100 ms, bound at 1050 ms: others may still commit
    assert waiting.liveness == "inconclusive" and waiting.violations == []
    planned = checker(quiet_after_ms=8000.0)  # a fault window that ends after the run
    planned.on_command(fake_sim(100.0, 0.0), 0, commit(1))
    planned._check_liveness(fake_sim(now_ms=3000.0, last_fault_ms=0.0))
    assert planned.liveness == "inconclusive"


def test_real_runs_every_node_catches_up_after_a_crash_and_a_late_fault_is_inconclusive() -> None:
    restarted = parse_scenario_text(BASE).with_(
        faults=(Crash(node=2, at_ms=60.0, restart_ms=700.0),), until_blocks=25
    )
    run = run_scenario(restarted)
    assert run.report()["liveness"] == "ok" and run.sim.hosts[2].restarts == 1
    # The run reaches its 10 blocks long before the crash planned at 15 s: inconclusive.
    late = parse_scenario_text(BASE).with_(faults=(Crash(node=2, at_ms=15_000.0),))
    report = run_scenario(late).report()
    assert report["liveness"] == "inconclusive" and report["stop_reason"] == "stop_condition"
    # A loss rule for the whole run is a fault that never ends: not judged.
    cut = parse_scenario_text(BASE).with_(until_ms=3000.0)
    cut = cut.with_(network=replace(cut.network, links=(LinkRule(dst=3, loss=1.0),)))
    report = run_scenario(cut).report()
    assert report["liveness"] == "inconclusive" and report["finalized"]["3"] == 0
