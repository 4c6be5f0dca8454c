"""Seed sweeps: run a scenario over many seeds, optionally drawing a fresh fault plan per seed.

`randomized(base, seed)` keeps the base scenario's validators, protocol, network model and
bounds, and replaces its faults with a plan drawn from the seed's *faults* stream:
- one crash of a random node at U(0, until/3), restarted U(200, 2000) ms later (from disk);
- one partition window of U(500, 3000) ms starting in U(0, until/3), splitting the
  validators into two random non-empty groups;
- loss drawn from U(0, 0.05);
- one Byzantine node (not the crashed one) with a behaviour drawn from `SWEEP_BEHAVIOURS`,
  active in every round.
With n < 4 there is no room for a Byzantine node next to a crash, so none is drawn.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from netsim.engine import derive_rng
from netsim.faults import Crash
from netsim.network import Partition
from netsim.scenario import ByzantineSpec, Scenario

if TYPE_CHECKING:
    from campaign.executor import Executor

SWEEP_BEHAVIOURS = (
    "silent",
    "equivocate",
    "withhold_votes",
    "withhold_qc",
    "tail_fork",
    "invalid_signatures",
    "stale_spam",
    "ne_spam",
    "bad_height",
    "bad_timestamp",
    "bad_reproposal",
    "forged_tc_rank",
    "strip_timeouts",
)


def randomized(base: Scenario, seed: int) -> Scenario:
    rng = derive_rng(seed, "faults")
    n = base.validators
    horizon_ms = base.until_ms / 3
    crash_node = rng.randrange(n)
    crash_at = rng.uniform(0, horizon_ms)
    crash = Crash(node=crash_node, at_ms=crash_at, restart_ms=crash_at + rng.uniform(200, 2000))
    nodes = list(range(n))
    rng.shuffle(nodes)
    cut = rng.randrange(1, n) if n > 1 else 1
    start = rng.uniform(0, horizon_ms)
    partition = Partition(
        (frozenset(nodes[:cut]), frozenset(nodes[cut:])), start, start + rng.uniform(500, 3000)
    )
    loss = rng.uniform(0.0, 0.05)
    byzantine: tuple[ByzantineSpec, ...] = ()
    if n >= 4:
        candidates = [i for i in range(n) if i != crash_node]
        byzantine = (ByzantineSpec(rng.choice(candidates), rng.choice(SWEEP_BEHAVIOURS)),)
    network = replace(base.network, loss=loss, partitions=(partition,))
    return replace(base, seed=seed, network=network, faults=(crash,), byzantine=byzantine)


# Chunks are sized for this many workers (4 chunks each), whatever the executor: the
# chunking never changes a result, only how evenly a cluster is loaded.
SWEEP_CHUNKING_WORKERS = 16
LIVENESS_STATES = ("ok", "inconclusive", "not-expected", "violated", "not-checked")


def run_seeds(
    task: tuple[Scenario, tuple[int, ...], str | None, bool],
) -> list[dict[str, Any]]:
    """The reports of some seeds of a scenario (one task of a sweep, for an executor)."""
    from netsim.runner import run_scenario

    scenario, seeds, protocol, randomize = task
    reports = []
    for seed in seeds:
        current = randomized(scenario, seed) if randomize else scenario
        reports.append(run_scenario(current, seed=seed, protocol=protocol).report())
    return reports


def sweep(
    scenario: Scenario,
    seeds: int,
    protocol: str | None = None,
    randomize: bool = False,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run seeds scenario.seed .. scenario.seed + seeds - 1 and aggregate the reports.

    The seeds run in chunks on `executor` (default: this process); the reports are
    aggregated in seed order, so the summary is the same on any executor."""
    from campaign.executor import LocalExecutor, chunk_size, chunks

    all_seeds = [scenario.seed + i for i in range(seeds)]
    tasks = [
        (scenario, tuple(chunk), protocol, randomize)
        for chunk in chunks(all_seeds, chunk_size(seeds, SWEEP_CHUNKING_WORKERS, at_most=50))
    ]
    executor = executor if executor is not None else LocalExecutor(1)
    reports = [r for part in executor.map(run_seeds, tasks, label="seeds") for r in part]
    minima = [
        min(h for node, h in r["finalized"].items() if int(node) not in r["byzantine"])
        for r in reports
    ]
    failed = [r for r in reports if r["violations"]]
    return {
        "scenario": scenario.source,
        "protocol": protocol or scenario.protocol,
        "randomized": randomize,
        "runs": len(reports),
        "first_seed": scenario.seed,
        "agreement": all(r["agreement"] for r in reports),
        "violations": [f"seed {r['seed']}: {v}" for r in failed for v in r["violations"]][:200],
        "failed_seeds": [r["seed"] for r in failed],
        "finalized_min": min(minima),  # over honest instances
        "finalized_median": statistics.median(minima),
        "tcs": sum(r["tcs"] for r in reports),
        "reproposals": sum(r["reproposals"] for r in reports),
        "necs": sum(r["necs"] for r in reports),
        "tail_forks": sum(r["tail_forks"] for r in reports),
        "speculative_reverts": sum(r["speculative_reverts"] for r in reports),
        "equivocations": sum(r["equivocations"] for r in reports),
        "liveness": {k: sum(r["liveness"] == k for r in reports) for k in LIVENESS_STATES},
        "sim_time_ms": sum(r["sim_time_ms"] for r in reports),
        "trace_hashes": {str(r["seed"]): r["trace_hash"] for r in reports},
    }
