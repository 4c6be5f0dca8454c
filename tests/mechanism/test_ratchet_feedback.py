"""The ratchet as shipped (keep_redeemed, feedback after d slots): exact models against
the rational lane-by-lane oracle, the two Monte Carlos against the exact models."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechanism import delay, dist, lanechain, lanesim, montecarlo
from mechanism.params import SednaParams

from . import oracles
from .helpers import brute_force_delay


def _old_position_pmf(slots: int, beta: float, q: float) -> np.ndarray:
    """The instant-feedback position chain as the model stated it before feedback latency
    existed: fresh (cartel w.p. β) or proven; a miss makes the position fresh."""
    r = beta + (1.0 - beta) * (1.0 - q)
    fresh = np.zeros(slots + 1)
    proven = np.zeros(slots + 1)
    fresh[0] = 1.0
    for _ in range(slots):
        miss = np.zeros(slots + 1)
        miss[1:] = fresh[:-1] * r + proven[:-1] * (1.0 - q)
        proven = fresh * (1.0 - r) + proven * q
        fresh = miss
    return fresh + proven


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.floats(0.0, 0.9), st.sampled_from([1.0, 0.9, 0.5]))
def test_feedback_one_is_the_instant_feedback_model(slots, beta, q):
    new = dist.ratchet_position_pmf(slots, beta, q, feedback=1)
    assert new == pytest.approx(_old_position_pmf(slots, beta, q), abs=1e-14)


@pytest.mark.parametrize(
    ("lanes", "cartel", "m", "kappa"), [(8, 3, 2, 5), (9, 3, 3, 7), (7, 2, 3, 8), (10, 4, 3, 8)]
)
def test_feedback_one_matches_the_instant_feedback_enumerator(lanes, cartel, m, kappa):
    # brute_force_delay enumerates the instant-feedback ratchet as it was first specified.
    old = brute_force_delay(lanes, cartel, m, kappa, 1.0, "ratchet")
    new = oracles.lane_delay(lanes, range(cartel), m, kappa, -(-kappa // m), 1.0, "ratchet", 1)
    p = SednaParams(kappa, m, cartel / lanes, lanes=lanes, ratchet=True, feedback_slots=1)
    assert float(new) == pytest.approx(old, abs=1e-12)
    assert delay.p_delay(p) == pytest.approx(float(new), rel=1e-12)


@pytest.mark.parametrize("feedback", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("lanes", "cartel", "m", "kappa", "extra_slots"),
    [(7, 2, 3, 8, 0), (7, 2, 3, 8, 1), (8, 3, 2, 5, 1), (9, 2, 4, 10, 0), (6, 3, 2, 5, 0)],
)
def test_finite_lane_ratchet_with_feedback_matches_the_lane_oracle(
    feedback, lanes, cartel, m, kappa, extra_slots
):
    p = SednaParams(kappa, m, cartel / lanes, lanes=lanes, ratchet=True, feedback_slots=feedback)
    slots = p.t_star + extra_slots
    exact = oracles.lane_delay(lanes, range(cartel), m, kappa, slots, 1.0, "ratchet", feedback)
    assert delay.p_behind(p, slots) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("feedback", [1, 2, 3])
@pytest.mark.parametrize(("beta", "q"), [(0.2, 1.0), (0.3, 0.8), (0.05, 0.95)])
def test_unbounded_ratchet_with_feedback_matches_the_position_oracle(feedback, beta, q):
    p = SednaParams(10, 3, beta, q=q, ratchet=True, feedback_slots=feedback)
    for slots in (4, 6):
        a = slots * 3 - 10 + 1
        exact = oracles.ratchet_unbounded_delay(3, slots, a, beta, q, feedback)
        assert delay.p_behind(p, slots) == pytest.approx(float(exact), rel=1e-10)


def test_a_withholding_lane_withholds_exactly_d_consecutive_slots():
    # One position, q = 1: each cartel lane placed there misses d slots, then is replaced.
    for feedback in (1, 2, 3):
        pmf = dist.ratchet_position_pmf(3 * feedback, 0.25, 1.0, feedback)
        support = set(np.flatnonzero(pmf > 0))
        assert support == {0, feedback, 2 * feedback, 3 * feedback}
        assert pmf[feedback] == pytest.approx(0.25 * 0.75)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(2, 5), st.floats(0.01, 0.5), st.data())
def test_longer_feedback_never_helps_the_sender_when_q_is_one(m, t, beta, data):
    slack = data.draw(st.integers(0, m - 1))
    values = [
        delay.p_delay(SednaParams(t * m - slack, m, beta, ratchet=True, feedback_slots=d))
        for d in (1, 2, 3, t)
    ]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(values))
    # d >= t*: the ratchet cannot act before the horizon; it is the fixed lane set.
    fixed = delay.p_delay(SednaParams(t * m - slack, m, beta, addressing="fixed"))
    assert values[-1] == pytest.approx(fixed, rel=1e-9, abs=1e-15)


def test_every_lane_addressed_makes_the_ratchet_a_no_op():
    # m = N: an excluded lane can only come back after the exclusions reset.
    p = SednaParams(30, 8, 2 / 8, q=0.9, lanes=8)
    assert delay.p_delay(p.with_(ratchet=True)) == delay.p_delay(p)
    res = montecarlo.simulate(p.with_(ratchet=True), trials=50_000, seed=2)
    assert res.ci_low <= delay.p_delay(p) <= res.ci_high


@pytest.mark.parametrize(
    "params",
    [
        SednaParams(8, 3, 2 / 7, lanes=7, ratchet=True, feedback_slots=2),
        SednaParams(56, 16, 0.2, q=0.9, ratchet=True, feedback_slots=3),
        SednaParams(56, 16, 0.2, lanes=60, ratchet=True, feedback_slots=2),
    ],
)
def test_count_monte_carlo_with_feedback_inside_its_interval(params):
    res = montecarlo.simulate(params, trials=100_000, seed=11, max_lag=1, level=0.999)
    assert res.ci_low <= delay.p_delay(params) <= res.ci_high
    lag2 = delay.p_behind(params, params.t_star + 1)
    ci = montecarlo.binomial_ci(sum(res.lag_counts[2:]), res.trials, 0.999)
    assert ci.low <= lag2 <= ci.high
    assert res.delays > 0  # the scenario produced delays


def test_lane_model_matches_the_rational_oracle_with_offline_honest_lanes():
    setup = lanechain.LaneSetup(6, 2, 3, withholding={0}, q=0.8, feedback_slots=2, max_lag=2)
    out = lanechain.predict(setup)
    for ell, tail in enumerate(out.lag_tail()[:2], start=1):
        exact = oracles.lane_delay(6, {0}, 2, 3, setup.t_star + ell - 1, 0.8, "ratchet", 2)
        assert tail == pytest.approx(float(exact), rel=1e-12)


def test_three_independent_implementations_agree_with_offline_lanes():
    # lanechain (exact, lane by lane), montecarlo (counts), lanesim (lane identities).
    setup = lanechain.LaneSetup(7, 3, 8, withholding={2, 5}, q=0.9, feedback_slots=2, max_lag=2)
    exact = lanechain.predict(setup)
    counts = montecarlo.simulate(
        SednaParams(8, 3, 2 / 7, q=0.9, lanes=7, ratchet=True, feedback_slots=2),
        trials=100_000,
        seed=3,
        max_lag=2,
        level=0.999,
    )
    assert counts.ci_low <= exact.p_delay <= counts.ci_high
    sim = lanesim.simulate(
        lanesim.SimSetup(7, 3, 8, withholding={2, 5}, q=0.9, feedback_slots=2, max_lag=2),
        trials=100_000,
        seed=4,
    )
    ci = sim.ci(sim.delayed, 0.999)
    assert ci.low <= exact.p_delay <= ci.high
    lead_ci = sim.ci(sum(sim.lead_counts[1:]), 0.999)
    assert lead_ci.low <= sum(exact.lead_pmf[1:]) <= lead_ci.high
    assert 0.5 < exact.p_delay < 0.95  # a non-trivial point


def test_netsim_lanes_ratchet_scenario_prediction():
    # The scenario netsim/scenarios/lanes_ratchet.toml: 7 validators, κ = 8, m = 3, lanes 2
    # and 5 withhold. Instant feedback: 2/7; any latency of 2 or more slots: 5/7.
    for feedback, expected in ((1, Fraction(2, 7)), (2, Fraction(5, 7)), (3, Fraction(5, 7))):
        setup = lanechain.LaneSetup(7, 3, 8, withholding={2, 5}, feedback_slots=feedback)
        got = lanechain.predict(setup).p_delay
        assert got == pytest.approx(float(expected), rel=1e-12)
        count = delay.p_delay(SednaParams(8, 3, 2 / 7, lanes=7, ratchet=True, feedback_slots=feedback))
        assert count == pytest.approx(float(expected), rel=1e-12)
    assert not math.isnan(got)


@pytest.mark.parametrize(("lanes", "withholding", "m", "kappa", "q", "feedback"),
                         [(4, {0}, 2, 5, 0.6, 1), (5, {0, 1}, 2, 5, 0.7, 2), (4, set(), 3, 7, 0.5, 1)])
def test_refill_fallback_and_reset_rules_match_the_oracle(lanes, withholding, m, kappa, q,
                                                           feedback):
    # Few lanes and many misses: the never-addressed lanes run out within the horizon, so
    # the fallback (non-excluded lanes) and the reset branch of the refill rule decide.
    setup = lanechain.LaneSetup(lanes, m, kappa, withholding=withholding, q=q,
                                feedback_slots=feedback, max_lag=3)
    out = lanechain.predict(setup)
    for ell, tail in enumerate(out.lag_tail(), start=1):
        exact = oracles.lane_delay(lanes, withholding, m, kappa, setup.t_star + ell - 1, q,
                                   "ratchet", feedback)
        assert tail == pytest.approx(float(exact), rel=1e-10, abs=1e-14)
    sim = lanesim.simulate(lanesim.SimSetup(lanes, m, kappa, withholding=withholding, q=q,
                                            feedback_slots=feedback, max_lag=3), 60_000, 8)
    counts = montecarlo.simulate(
        SednaParams(kappa, m, len(withholding) / lanes, q=q, lanes=lanes, ratchet=True,
                    feedback_slots=feedback),
        trials=60_000, seed=9, max_lag=3, level=0.999,
    )
    for ell, tail in enumerate(out.lag_tail(), start=1):
        ci = sim.ci(sum(sim.lag_counts[ell:]), 0.999)
        assert ci.low <= tail <= ci.high
        ci = montecarlo.binomial_ci(sum(counts.lag_counts[ell:]), counts.trials, 0.999)
        assert ci.low <= tail <= ci.high


@pytest.mark.parametrize(("strategy", "theta", "q"),
                         [("threshold", None, 1.0), ("threshold", None, 0.8), ("threshold", 1, 0.8),
                          ("threshold", 3, 1.0), ("last_slot", None, 1.0),
                          ("last_slot", None, 0.8), ("withhold_all", None, 0.8)])
def test_lane_model_strategies_match_the_rational_oracle(strategy, theta, q):
    # The lane model's own statement of each cartel strategy (LaneSetup.withholds), fresh
    # addressing, against the oracle's rule written here: N = 7, m = 3, κ = 8 (t* = 3,
    # Δ = 1), cartel lanes {1, 2, 5}; a slot's holdings x are hypergeometric.
    lanes, m, kappa, cartel = 7, 3, 8, {1, 2, 5}
    t_star, slack = 3, 1
    th = theta if theta is not None else slack + 1

    def rule(slot: int, x: int) -> int:
        if strategy == "threshold":
            return x if x >= th else 0
        if strategy == "last_slot":
            return x if slot >= t_star else 0
        return x

    expected = oracles.fresh_delay(m, t_star, slack + 1, q, lanes=lanes, cartel=len(cartel),
                                   withheld_by_slot=rule)
    setup = lanechain.LaneSetup(lanes, m, kappa, withholding=cartel, q=q, policy="fresh",
                                strategy=strategy, theta=theta, max_lag=1)
    assert lanechain.predict(setup).p_delay == pytest.approx(float(expected), rel=1e-9, abs=1e-15)
    assert expected > 0  # a point where the strategy withholds
