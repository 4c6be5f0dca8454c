"""Measured lane outcomes against the lane-by-lane model (docs/mechanism.md §6, §16).

A measurement is a list of payloads, each with the leader of its first slot and its lag
T_chain − t* (None: not decoded), from netsim (`netsim.measure`) or a testnet. The model
is `lanechain.predict` for each payload's first leader (round-robin leaders, q = 1),
averaged over the payloads. A check at ℓ: the model's P(lag >= ℓ) lies in the
measurement's two-sided interval at `level` (Wilson or Clopper-Pearson), and every
payload the model is certain about (probability 0 or 1) came out that way.

Plain numbers in, plain numbers out: neither netsim nor the node is imported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from mechanism.lanechain import LaneOutcome, LaneSetup, predict
from mechanism.montecarlo import Interval, binomial_ci

LEVEL = 0.99
EXACT = 1e-12  # a model probability this close to 0 or 1 is a certainty


class Measurement(Protocol):
    """What a comparison reads of a measurement (`netsim.measure.Measured` is one)."""

    first_leaders: list[int]
    lags: list[int | None]
    left_out: int

    @property
    def payloads(self) -> int: ...

    def at_least(self, ell: int) -> int: ...


def setup_for(
    *,
    validators: int,
    lanes_report: Mapping[str, Any],
    withholding: Iterable[int],
    censoring: Iterable[int],
    policy: str,
    max_lag: int,
    strategy: str = "withhold_all",
    theta: int | None = None,
) -> LaneSetup:
    """The model of what a run really did: κ, m and d as its lanes report states them,
    the withholding lanes and censoring leaders, the cartel's strategy, and the senders'
    policy (keep_redeemed when the ratchet is on), carried dissemination."""
    ratchet = lanes_report["ratchet_policy"]
    if ratchet not in ("none", "keep_redeemed"):
        raise ValueError(f"ratchet policy {ratchet!r} is not modelled")
    return LaneSetup(
        lanes=validators,
        m=lanes_report["bundles_per_slot"],
        kappa=lanes_report["kappa"],
        withholding=frozenset(withholding),
        censoring=frozenset(censoring),
        policy="keep_redeemed" if ratchet == "keep_redeemed" else policy,
        feedback_slots=lanes_report["feedback_slots"] or 1,
        dissemination="carried",
        max_lag=max_lag,
        strategy=strategy,
        theta=theta,
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

    def mean_lag_pmf(self, first_leaders: Sequence[int]) -> list[float]:
        """P(lag = ℓ), ℓ = 0..max_lag, then P(undecided), averaged over the payloads."""
        out = [0.0] * (self.setup.max_lag + 2)
        for k in first_leaders:
            o = self.outcome(k)
            for i, p in enumerate((*o.lag_pmf, o.p_undecided)):
                out[i] += p / len(first_leaders)
        return out

    def mean_lead_pmf(self, first_leaders: Sequence[int]) -> list[float]:
        """P(decoded and lead = ℓ), ℓ = 0..max_lag, averaged over the payloads."""
        out = [0.0] * (self.setup.max_lag + 1)
        for k in first_leaders:
            for i, p in enumerate(self.outcome(k).lead_pmf):
                out[i] += p / len(first_leaders)
        return out


@dataclass(frozen=True)
class Check:
    ell: int
    measured: int
    payloads: int
    interval: Interval
    predicted: float
    certainty_failures: int = 0  # payloads the model was certain about that came out otherwise

    @property
    def agree(self) -> bool:
        inside = self.interval.low <= self.predicted <= self.interval.high
        return inside and self.certainty_failures == 0

    def __str__(self) -> str:
        return (
            f"P(lag >= {self.ell}): measured {self.measured}/{self.payloads} = "
            f"{self.measured / self.payloads:.3f}, 99 % CI [{self.interval.low:.3f}, "
            f"{self.interval.high:.3f}], model {self.predicted:.3f}"
            + (f", {self.certainty_failures} certainties failed" if self.certainty_failures else "")
        )


def check(
    measured: Measurement,
    model: Model,
    ell: int,
    *,
    level: float = LEVEL,
    method: str = "wilson",
) -> Check:
    """The comparison at one ℓ (no assertion)."""
    count = measured.at_least(ell)
    interval = binomial_ci(count, measured.payloads, level=level, method=method)
    failures = 0
    for leader, lag in zip(measured.first_leaders, measured.lags, strict=True):
        p = model.tail(leader, ell)
        happened = lag is None or lag >= ell
        if (p < EXACT or p > 1 - EXACT) and happened != (p > 0.5):
            failures += 1
    return Check(
        ell,
        count,
        measured.payloads,
        interval,
        model.mean_tail(measured.first_leaders, ell),
        failures,
    )


def assert_agrees(
    measured: Measurement,
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
        result = check(measured, model, ell)
        checks.append(result)
        assert result.agree, str(result)
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
