"""Netsim lane measurements against the mechanism model (docs/mechanism.md §6 and §16).

A run's payloads are measured by their `decode_slot_delay` (the lag T_chain − t*) and
compared with `mechanism.lanechain.predict` for the leader of each payload's first slot.
The model assumes round-robin leaders with no timeouts (the payload's j-th slot is led by
validator first_leader + j − 1 mod N) and q = 1; a payload any of whose heights (first
slot up to its decode, or up to the model's horizon) was led by another validator is
left out and counted, and q = 1 is checked (no bundle rejected or lost).

Tests import `mechanism` here; netsim and consensus never do (tests/test_layering.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mechanism.lanechain import LaneOutcome, LaneSetup, predict
from mechanism.montecarlo import Interval, binomial_ci
from netsim.runner import run_scenario
from netsim.scenario import Scenario, parse_scenario_text

LEVEL = 0.99
EXACT = 1e-12  # a model probability this close to 0 or 1 is a certainty


@dataclass
class Measured:
    """Payloads of one or more runs, as the model sees them."""

    lanes: int
    first_leaders: list[int] = field(default_factory=list)
    lags: list[int | None] = field(default_factory=list)  # None: not executed
    left_out: int = 0  # payloads whose heights left the round-robin schedule
    lane_blocks_omitted: dict[int, int] = field(default_factory=dict)
    report_lanes: dict[str, Any] = field(default_factory=dict)

    @property
    def payloads(self) -> int:
        return len(self.lags)

    def at_least(self, ell: int) -> int:
        """Payloads with lag >= ell (not executed counts as beyond any lag)."""
        return sum(1 for lag in self.lags if lag is None or lag >= ell)


def chain_authors(run: Any, node: int) -> dict[int, int]:
    """Height -> author of the block `node` finalized there."""
    disk = run.sim.hosts[node].disk
    return {height: disk.blocks[block_id][0].header.author for height, block_id in disk.finalized}


def round_robin_leader(authors: dict[int, int], first: int, last: int, n: int) -> int | None:
    """The leader of height `first` if heights first..last were led round robin (the
    model's schedule, §16: validator first_leader + j − 1 mod n leads the j-th slot);
    None if a timeout shifted the schedule there or a height is not finalized."""
    first_leader = authors.get(first)
    if first_leader is None:
        return None
    for height in range(first, last + 1):  # bounded: the payload's window
        if authors.get(height) != (first_leader + height - first) % n:
            return None
    return first_leader


def measure(scenario: Scenario, seeds: Iterable[int], max_lag: int) -> Measured:
    """Run `scenario` once per seed and collect every started payload's first leader and
    lag, leaving out payloads whose schedule was not round robin."""
    n = scenario.validators
    honest = min(set(range(n)) - scenario.byzantine_nodes)
    measured = Measured(lanes=n)
    for seed in seeds:
        run = run_scenario(scenario, seed=seed)
        report = run.report()
        assert report["violations"] == [], report["violations"][:3]
        rejected = {k: v for k, v in report["bundles_rejected"].items() if v}
        assert rejected == {}, rejected  # q = 1: every bundle reached its lane in its slot
        assert report["lanes"]["bundles_lost"] == 0
        authors = chain_authors(run, honest)
        lanes = run.lanes
        for record in lanes.records:
            if record.status == "scheduled":
                continue
            lag = lanes.decode_slot_delay(record)
            last = (
                record.decided_height
                if lag is not None
                else record.first_slot + lanes.t_star + max_lag - 1
            )
            first_leader = round_robin_leader(authors, record.first_slot, last, n)
            if first_leader is None:
                measured.left_out += 1
                continue
            measured.first_leaders.append(first_leader)
            measured.lags.append(lag)
        for leader, count in report["lanes"]["lane_blocks_omitted"].items():
            key = int(leader)
            measured.lane_blocks_omitted[key] = measured.lane_blocks_omitted.get(key, 0) + count
        measured.report_lanes = report["lanes"]
    return measured


def model_setup(scenario: Scenario, measured: Measured, max_lag: int) -> LaneSetup:
    """The model of what the run really did: κ, m and d as its report states them, the
    withholding lanes and censoring leaders of its `[[byzantine]]` tables, and the
    senders' policy (keep_redeemed when the ratchet is on), carried dissemination."""
    lanes = measured.report_lanes
    assert scenario.lanes is not None
    behaviours: dict[str, set[int]] = {"withhold_bundles": set(), "drop_lane_blocks": set()}
    for spec in scenario.byzantine:
        behaviours.setdefault(spec.behaviour, set()).add(spec.node)
    ratchet = lanes["ratchet_policy"]
    assert ratchet in ("none", "keep_redeemed"), ratchet
    return LaneSetup(
        lanes=scenario.validators,
        m=lanes["bundles_per_slot"],
        kappa=lanes["kappa"],
        withholding=frozenset(behaviours["withhold_bundles"]),
        censoring=frozenset(behaviours["drop_lane_blocks"]),
        policy="keep_redeemed" if ratchet == "keep_redeemed" else scenario.lanes.policy,
        feedback_slots=lanes["feedback_slots"] or 1,
        dissemination="carried",
        max_lag=max_lag,
    )


class Model:
    """`lanechain.predict` per first leader, for the payloads of a measurement."""

    def __init__(self, setup: LaneSetup):
        self.setup = setup
        self._by_leader: dict[int, LaneOutcome] = {}

    def outcome(self, first_leader: int) -> LaneOutcome:
        if first_leader not in self._by_leader:
            self._by_leader[first_leader] = predict(replace(self.setup, first_leader=first_leader))
        return self._by_leader[first_leader]

    def tail(self, first_leader: int, ell: int) -> float:
        """P(lag >= ell) for a payload starting at `first_leader` (ell >= 1)."""
        return self.outcome(first_leader).lag_tail()[ell - 1]

    def mean_tail(self, first_leaders: Sequence[int], ell: int) -> float:
        return sum(self.tail(k, ell) for k in first_leaders) / len(first_leaders)


@dataclass(frozen=True)
class Check:
    ell: int
    measured: int
    payloads: int
    interval: Interval
    predicted: float

    def __str__(self) -> str:
        return (
            f"P(lag >= {self.ell}): measured {self.measured}/{self.payloads} = "
            f"{self.measured / self.payloads:.3f}, 99 % CI [{self.interval.low:.3f}, "
            f"{self.interval.high:.3f}], model {self.predicted:.3f}"
        )


def assert_agrees(
    measured: Measured,
    setup: LaneSetup,
    ells: Sequence[int],
    alternatives: dict[str, LaneSetup],
    *,
    min_payloads: int,
) -> list[Check]:
    """The model's P(lag >= ell), averaged over the measured payloads' first leaders, lies
    in the measurement's 99 % Wilson interval for every ell; every payload the model is
    certain about (probability 0 or 1) came out that way; and each alternative model is
    outside the interval for some ell (so the check can fail)."""
    assert measured.payloads >= min_payloads, (measured.payloads, measured.left_out)
    assert measured.left_out <= 0.05 * (measured.payloads + measured.left_out)
    model = Model(setup)
    checks = []
    for ell in ells:
        count = measured.at_least(ell)
        interval = binomial_ci(count, measured.payloads, level=LEVEL)
        check = Check(
            ell, count, measured.payloads, interval, model.mean_tail(measured.first_leaders, ell)
        )
        checks.append(check)
        assert interval.low <= check.predicted <= interval.high, str(check)
        for leader, lag in zip(measured.first_leaders, measured.lags, strict=True):
            p = model.tail(leader, ell)
            happened = lag is None or lag >= ell
            if p < EXACT or p > 1 - EXACT:  # a certainty of the model must hold exactly
                assert happened == (p > 0.5), (ell, leader, lag, p)
    for name, alternative in alternatives.items():
        other = Model(alternative)
        outside = [
            c.ell
            for c in checks
            if not c.interval.low
            <= other.mean_tail(measured.first_leaders, c.ell)
            <= c.interval.high
        ]
        assert outside, f"the alternative model {name!r} is not excluded by the measurement"
    return checks


def lanes_scenario(
    *,
    kappa: int,
    m: int,
    byzantine: dict[int, Sequence[str]],
    senders: int,
    payloads: int = 40,
    ratchet: bool = False,
    policy: str = "fresh",
) -> Scenario:
    """7 validators, no timeouts (latency U(1, 20) ms, Δ = 100 ms), one payload every 2
    slots per sender, lookahead and feedback 4 slots, carried lanes (the model's mode:
    certified senders learn outcomes two slots later)."""
    lines = [
        "validators = 7",
        "until_ms = 60000",
        "until_blocks = 130",
        "[network]",
        "latency_ms = [1, 20]",
        "delta_ms = 100",
        "[lanes]",
        'dissemination = "carried"',
        f"payloads = {payloads}",
        "payload_bytes = 2048",
        f"kappa = {kappa}",
        f"bundles_per_slot = {m}",
        f'policy = "{policy}"',
        f"senders = {senders}",
        "interval_slots = 2",
    ]
    if ratchet:
        lines.append('ratchet_policy = "keep_redeemed"')
    for node, behaviours in sorted(byzantine.items()):
        for behaviour in behaviours:
            lines += ["[[byzantine]]", f"node = {node}", f'behaviour = "{behaviour}"']
    return parse_scenario_text("\n".join(lines) + "\n")
