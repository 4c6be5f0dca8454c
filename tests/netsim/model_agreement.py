"""Netsim lane measurements against the mechanism model (docs/mechanism.md §6 and §16).

The measuring lives in `netsim.measure`, the comparison in `mechanism.agreement` (the
`sedna mech experiment` command uses both); `model_setup` joins them for a scenario.
Tests import `mechanism` here; netsim and consensus never do (tests/test_layering.py).
"""

from __future__ import annotations

from mechanism.agreement import EXACT, LEVEL, Check, Model, assert_agrees, setup_for
from mechanism.lanechain import LaneSetup
from netsim.measure import (
    Measured,
    chain_authors,
    lanes_scenario,
    round_robin_leader,
)
from netsim.measure import measure as _measure
from netsim.scenario import Scenario

__all__ = [
    "EXACT",
    "LEVEL",
    "Check",
    "Measured",
    "Model",
    "assert_agrees",
    "chain_authors",
    "lanes_scenario",
    "measure",
    "model_setup",
    "round_robin_leader",
]


def measure(scenario: Scenario, seeds, max_lag: int) -> Measured:
    """`netsim.measure.measure`, asserting the runs are comparable with the model (no
    violation, q = 1: no bundle rejected or lost)."""
    measured = _measure(scenario, seeds, max_lag)
    assert measured.problems == [], measured.problems[:3]
    return measured


def model_setup(scenario: Scenario, measured: Measured, max_lag: int) -> LaneSetup:
    """The model of what the run really did (`mechanism.agreement.setup_for`)."""
    assert scenario.lanes is not None
    behaviours: dict[str, set[int]] = {"withhold_bundles": set(), "drop_lane_blocks": set()}
    strategy, theta = "withhold_all", None
    for spec in scenario.byzantine:
        behaviours.setdefault(spec.behaviour, set()).add(spec.node)
        if spec.behaviour == "withhold_bundles" and spec.strategy is not None:
            strategy, theta = spec.strategy, spec.theta
    return setup_for(
        validators=scenario.validators,
        lanes_report=measured.report_lanes,
        withholding=behaviours["withhold_bundles"],
        censoring=behaviours["drop_lane_blocks"],
        policy=scenario.lanes.policy,
        max_lag=max_lag,
        strategy=strategy,
        theta=theta,
    )
