"""The cartel's best response and its bounty: the dynamic programme against the payoff
Monte Carlo (which draws the Variant R lottery and imports nothing of the DP), against
every fixed strategy, and against bounties derived by hand."""

from __future__ import annotations

import math

import pytest

from mechanism import payoff_mc, response
from mechanism.params import EconParams, SednaParams, landers_marsh_curve

from .helpers import assert_batch_mean_close

Z = 3.29  # two-sided 99.9 %

MODELS = [
    pytest.param(SednaParams(20, 6, 0.3), id="binomial"),
    pytest.param(SednaParams(20, 6, 0.3, ratchet=True), id="ratchet"),
    pytest.param(SednaParams(20, 6, 0.3, addressing="fixed"), id="fixed"),
    pytest.param(SednaParams(20, 6, 3 / 15, lanes=15), id="hypergeometric"),
    pytest.param(SednaParams(20, 6, 0.3, q=0.9), id="binomial-q0.9"),
    pytest.param(SednaParams(20, 6, 0.3, q=0.9, ratchet=True), id="ratchet-q0.9"),
    pytest.param(SednaParams(20, 6, 0.3, ratchet=True, feedback_slots=2), id="ratchet-d2"),
    pytest.param(SednaParams(20, 6, 0.3, ratchet=True, feedback_slots=3), id="ratchet-d3"),
]
ECON = EconParams(value_lead=1.0, fee=0.002)
BOUNTY = 0.15


@pytest.mark.parametrize("params", MODELS)
def test_policy_values_inside_the_payoff_monte_carlo_interval(params):
    """Every fixed strategy and the best response: exact value vs simulation."""
    for k, strategy in enumerate(("honest", "withhold_all", "threshold", "last_slot")):
        exact, _ = response.solve(params, ECON, BOUNTY, strategy)
        mc = payoff_mc.simulate(
            params, ECON, BOUNTY, payoff_mc.fixed_policy(strategy, params), 60_000, seed=k
        )
        lo, hi = mc.interval(Z)
        assert lo <= exact.payoff(ECON.fee, BOUNTY) <= hi, strategy
    best, policy = response.solve(params, ECON, BOUNTY, keep_policy=True)
    assert policy is not None
    mc = payoff_mc.simulate(params, ECON, BOUNTY, payoff_mc.table_policy(policy, params),
                            60_000, seed=9)
    lo, hi = mc.interval(Z)
    assert lo <= best.payoff(ECON.fee, BOUNTY) <= hi


@pytest.mark.parametrize("params", MODELS)
@pytest.mark.parametrize("bounty", [0.0, BOUNTY])
def test_best_response_beats_every_fixed_strategy_in_simulation(params, bounty):
    # b = 0 too: there withholding everything is often best, and a best response that
    # never withheld a slot's whole holdings passed at b = 0.15 alone.
    best, _ = response.solve(params, ECON, bounty)
    for k, strategy in enumerate(("honest", "withhold_all", "threshold", "last_slot")):
        mc = payoff_mc.simulate(
            params, ECON, bounty, payoff_mc.fixed_policy(strategy, params), 60_000, seed=20 + k
        )
        assert best.payoff(ECON.fee, bounty) >= mc.payoff - Z * mc.payoff_se, strategy
        exact, _ = response.solve(params, ECON, bounty, strategy)
        assert best.payoff(ECON.fee, bounty) >= exact.payoff(ECON.fee, bounty) - 1e-12


def test_best_response_bounty_by_hand_fresh_lanes():
    # κ = 56, m = 16, Δ = 8, q = 1, f = 0. The binding state: honest until slot t*, then
    # all 16 bundles of slot t* are the cartel's. Withholding Δ+1 keeps 7 included, now in
    # a pre-decode slot (pivotal), instead of 16·(m−Δ)/m = 8 pivotal; slot t*+1 decodes
    # with 1 pivotal bundle of 16 fresh ones, the cartel's w.p. β. ΔΠ = 1 − β, gain V.
    for beta in (0.1, 0.3):
        res = response.bounty(SednaParams(56, 16, beta), EconParams(1.0))
        assert res.bounty == pytest.approx(1.0 / (1.0 - beta), rel=1e-9)


def test_best_response_bounty_by_hand_ratchet_and_finite_lanes():
    # Ratchet: the 7 cartel lanes that included are kept and the 9 withheld positions are
    # refilled, so slot t*+1 holds 7 + Bin(9, β) cartel bundles: ΔΠ = 1 − (7 + 9β)/16.
    beta = 0.1
    res = response.bounty(SednaParams(56, 16, beta, ratchet=True), EconParams(1.0))
    assert res.bounty == pytest.approx(1.0 / (1.0 - (7 + 9 * beta) / 16), rel=1e-9)
    # Finite lanes, c = 10 < m: at most 10 cartel bundles in slot t*; withhold 9, keep 1:
    # ΔΠ = 10·8/16 − 1 − E[X']/16 with E[X'] = 16·10/100.
    res = response.bounty(SednaParams(56, 16, 0.1, lanes=100), EconParams(1.0))
    assert res.bounty == pytest.approx(1.0 / (5.0 - 1.0 - 0.1), rel=1e-9)
    # A fixed lane set that can be all cartel: the cartel stays pivotal whatever it does.
    assert math.isinf(response.bounty(SednaParams(56, 16, 0.1, addressing="fixed"),
                                      EconParams(1.0)).bounty)


@pytest.mark.parametrize("params", [SednaParams(20, 6, 0.3), SednaParams(20, 6, 0.3, q=0.9),
                                    SednaParams(20, 6, 0.3, ratchet=True)])
def test_best_response_bounty_is_tight(params):
    res = response.bounty(params, ECON)
    assert math.isfinite(res.bounty) and res.bounty > 0
    at, _ = response.solve(params, ECON, res.bounty)
    below, _ = response.solve(params, ECON, res.bounty * (1 - 1e-4))
    scale = ECON.value_lead
    assert at.max_gain <= 1e-9 * scale  # honesty is a best response at b*
    assert below.max_gain > 1e-9 * scale  # and not just below it


def test_ex_post_needs_at_least_the_ex_ante_bounty_and_equals_it_when_q_is_one():
    p = SednaParams(20, 6, 0.3, q=0.9)
    ante = response.bounty(p, ECON, information="ex-ante").bounty
    post = response.bounty(p, ECON, information="ex-post").bounty
    assert post >= ante - 1e-9
    p1 = SednaParams(20, 6, 0.3)
    assert response.bounty(p1, ECON, information="ex-post").bounty == pytest.approx(
        response.bounty(p1, ECON).bounty, rel=1e-9
    )


def test_fixed_strategy_bounties_make_the_strategy_break_even():
    p = SednaParams(20, 6, 0.3, q=0.9)
    honest0, _ = response.solve(p, ECON, 0.0, "honest")
    for strategy in ("withhold_all", "threshold", "last_slot"):
        res = response.bounty(p, ECON, strategy)
        v, _ = response.solve(p, ECON, res.bounty, strategy)
        h, _ = response.solve(p, ECON, res.bounty, "honest")
        assert v.payoff(ECON.fee, res.bounty) == pytest.approx(
            h.payoff(ECON.fee, res.bounty), abs=1e-12
        )
        assert honest0.lead_value == 0.0


def test_fixed_strategy_bounty_agrees_with_simulated_components():
    # b = (E[V(L)] − f·ΔR)/ΔΠ from simulated means, within a tolerance from their errors.
    p = SednaParams(20, 6, 0.3)
    exact = response.bounty(p, ECON, "withhold_all").bounty

    def b_mc(batch: int) -> float:
        honest = payoff_mc.simulate(p, ECON, 0.0, payoff_mc.fixed_policy("honest", p), 20_000,
                                    10 + 2 * batch)
        dev = payoff_mc.simulate(p, ECON, 0.0, payoff_mc.fixed_policy("withhold_all", p),
                                 20_000, 11 + 2 * batch)
        return (dev.lead_value - ECON.fee * (honest.redeemed - dev.redeemed)) / (
            honest.pivotal - dev.pivotal
        )

    assert_batch_mean_close(b_mc, exact)


def test_issue_reference_point():
    # κ = 56, m = 16, β = 0.1, V = 1, f = 0: withhold-all needs b/V ≈ 0.0333 (the figure
    # the toolkit had); the threshold cartel ≈ 0.14; the best response > 1.
    p = SednaParams(56, 16, 0.1)
    e = EconParams(1.0)
    assert response.bounty(p, e, "withhold_all").bounty == pytest.approx(0.0333, abs=5e-4)
    assert 0.12 < response.bounty(p, e, "threshold").bounty < 0.15
    assert response.bounty(p, e).bounty > 1.0
    # The ratchet cuts the withhold-all bounty by orders of magnitude but not the best
    # response's (kept cartel lanes stay in the next slot's pivot lottery).
    r = p.with_(ratchet=True)
    assert response.bounty(r, e, "withhold_all").bounty < 1e-3 * 0.0333 * 10
    assert response.bounty(r, e).bounty > response.bounty(p, e).bounty


def test_lead_curve_values_longer_leads():
    p = SednaParams(20, 6, 0.3)
    flat = EconParams(1.0)
    curve = EconParams(1.0, lead_curve=(1.0, 1.8, 2.4))
    a, _ = response.solve(p, flat, 0.0, "withhold_all")
    b, _ = response.solve(p, curve, 0.0, "withhold_all")
    assert b.lead_value > a.lead_value
    mc = payoff_mc.simulate(p, curve, 0.0, payoff_mc.fixed_policy("withhold_all", p), 100_000, 5)
    lo, hi = mc.interval(Z)
    assert lo <= b.payoff(0.0, 0.0) <= hi
    lm = landers_marsh_curve(1.0, 0.5, 0.1, 4)
    assert list(lm) == sorted(lm) and lm[0] > 0


def test_best_response_refuses_what_it_does_not_model():
    with pytest.raises(ValueError, match="ratchet"):
        response.solve(SednaParams(20, 6, 0.3, lanes=20, ratchet=True), ECON, 0.1)
    with pytest.raises(ValueError, match="ratchet"):
        response.solve(SednaParams(20, 6, 0.3, q=0.9, ratchet=True, feedback_slots=2), ECON,
                       0.1)
    with pytest.raises(ValueError, match="lane states"):
        response.solve(SednaParams(200, 40, 0.3, ratchet=True, feedback_slots=4), ECON, 0.1)
    with pytest.raises(ValueError, match="strategy"):
        response.solve(SednaParams(20, 6, 0.3), ECON, 0.1, "nonsense")


def test_feedback_latency_at_the_horizon_is_the_fixed_lane_set():
    # With d >= t* + max_lag the sender never sees a miss in time: every strategy's exact
    # value equals the fixed lane set's (an independent code path of the DP).
    fixed = SednaParams(20, 6, 0.3, addressing="fixed")
    late = SednaParams(20, 6, 0.3, ratchet=True, feedback_slots=6)  # t* + max_lag = 6
    for strategy in ("honest", "withhold_all", "threshold", "last_slot", "best_response"):
        a, _ = response.solve(fixed, ECON, BOUNTY, strategy, max_lag=2)
        b, _ = response.solve(late, ECON, BOUNTY, strategy, max_lag=2)
        assert b.payoff(ECON.fee, BOUNTY) == pytest.approx(a.payoff(ECON.fee, BOUNTY), rel=1e-12)
        assert b.p_lead == pytest.approx(a.p_lead, abs=1e-12)


def test_shipped_ratchet_best_response_bounty_is_infinite():
    # docs/mechanism.md §8a: with d >= 2 the state "honest until t*, all m lanes the
    # cartel's" lets it delay one slot while keeping every pivotal bundle (the same lanes are
    # addressed at t* + 1): no bounty deters it. With d = 1 the bounty is finite.
    for p in (SednaParams(56, 16, 0.1, ratchet=True, feedback_slots=2),
              SednaParams(20, 6, 0.3, ratchet=True, feedback_slots=3)):
        assert response.bounty(p, ECON).bounty == math.inf
    assert math.isfinite(response.bounty(SednaParams(56, 16, 0.1, ratchet=True), ECON).bounty)
    # Fixed strategies stay finite under the latency, e.g. withhold-all.
    wa = response.bounty(SednaParams(56, 16, 0.1, ratchet=True, feedback_slots=2), ECON,
                         "withhold_all")
    assert 0.0 < wa.bounty < 0.0333
