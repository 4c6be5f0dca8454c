"""Seeded fault sweeps (zero violations, reproducible) and mutation checks (the suite can fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.runner import run_scenario
from netsim.scenario import load_scenario
from netsim.sweep import randomized, sweep

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
BASE = load_scenario(SCENARIOS / "sweep_faults.toml")


def test_randomized_fault_plans_differ_per_seed_and_repeat_per_seed() -> None:
    plans = {randomized(BASE, seed) for seed in range(1, 30)}
    assert len(plans) == 29
    assert randomized(BASE, 5) == randomized(BASE, 5)
    plan = randomized(BASE, 5)
    assert len(plan.faults) == 1 and len(plan.network.partitions) == 1
    assert len(plan.byzantine) == 1 and plan.byzantine[0].node != plan.faults[0].node
    assert 0 <= plan.network.loss <= 0.05


def test_sweep_of_200_seeds_with_faults_has_no_violation() -> None:
    summary = sweep(BASE, 200, randomize=True)
    assert summary["violations"] == [] and summary["failed_seeds"] == []
    assert summary["agreement"] and summary["runs"] == 200
    assert summary["liveness"]["violated"] == 0 and summary["liveness"]["ok"] >= 150
    assert summary["finalized_min"] >= 10
    # The plans really exercised the machinery.
    assert summary["tcs"] > 200 and summary["equivocations"] > 0 and summary["reproposals"] > 0


@pytest.mark.parametrize("protocol", ["v1", "vanilla"])
def test_sweep_of_the_comparison_modes_has_no_violation(protocol: str) -> None:
    summary = sweep(BASE, 40, protocol=protocol, randomize=True)
    assert summary["violations"] == [] and summary["runs"] == 40
    # Not vacuous: the runs progressed, timed out, met the Byzantine nodes and were live.
    assert summary["finalized_min"] >= 10 and summary["tcs"] > 100
    assert summary["equivocations"] > 0
    assert summary["liveness"]["violated"] == 0 and summary["liveness"]["ok"] >= 30
    if protocol == "v1":
        assert summary["reproposals"] > 0  # v1 reproposes after every tip-won TC
    else:
        assert summary["tail_forks"] > 0  # vanilla's expected tail forks, counted


def test_each_seed_replays_to_the_same_trace_hash() -> None:
    first = sweep(BASE, 5, randomize=True)["trace_hashes"]
    second = sweep(BASE, 5, randomize=True)["trace_hashes"]
    assert first == second and len(set(first.values())) == 5


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["monadbft", "v1", "vanilla"])
def test_long_sweep(protocol: str) -> None:
    summary = sweep(BASE.with_(seed=1000), 2000, protocol=protocol, randomize=True)
    assert summary["violations"] == []


# ----------------------------------------------------------------------------- mutations


def first_violation(mutation: str, max_seeds: int) -> tuple[int, str] | None:
    for seed in range(1, max_seeds + 1):
        report = run_scenario(randomized(BASE, seed), seed=seed, test_mutations=[mutation]).report()
        if report["violations"]:
            return seed, report["violations"][0]
    return None


@pytest.mark.parametrize(
    ("mutation", "max_seeds", "caught_by"),
    [
        ("double_vote", 60, ("P3", "P5")),
        ("skip_high_tip_check", 10, ("P5", "P1")),
        ("skip_reproposal_rule", 10, ("P5", "P1")),
    ],
)
def test_mutation_is_caught_by_the_sweep(mutation: str, max_seeds: int, caught_by: tuple) -> None:
    found = first_violation(mutation, max_seeds)
    assert found is not None, f"{mutation} not caught within {max_seeds} seeds"
    assert found[1].startswith(caught_by), found


def test_commit_without_consecutive_rounds_is_caught_by_the_s1_replay() -> None:
    scenario = load_scenario(SCENARIOS / "s1_crashed_successor.toml")
    assert run_scenario(scenario).report()["violations"] == []
    report = run_scenario(scenario, test_mutations=["commit_non_consecutive"]).report()
    assert any(v.startswith("commit rule") for v in report["violations"])
