"""Ratchet, race and the trade-off."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mechanism import delay, montecarlo, race, ratchet
from mechanism.params import EconParams, SednaParams, Strategy


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 24), st.floats(0.0, 0.9), st.sampled_from([1.0, 0.9]), st.data())
def test_ratchet_has_no_effect_when_t_star_is_one(m, beta, q, data):
    kappa = data.draw(st.integers(1, m))
    p = SednaParams(kappa, m, beta, q)
    assert p.t_star == 1
    assert delay.p_delay(p.with_(ratchet=True)) == pytest.approx(delay.p_delay(p), abs=1e-12)


def test_ratchet_has_no_effect_at_t_star_one_in_simulation():
    p = SednaParams(12, 16, 0.3, lanes=100)
    a = montecarlo.simulate(p, trials=20_000, seed=1)
    b = montecarlo.simulate(p.with_(ratchet=True), trials=20_000, seed=1)
    assert a.delays == b.delays  # same draws, same outcome


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 20), st.integers(2, 5), st.floats(0.0, 0.6), st.data())
def test_ratchet_never_hurts_against_withhold_all_when_q_is_one(m, t, beta, data):
    slack = data.draw(st.integers(0, m - 1))
    p = SednaParams(t * m - slack, m, beta)
    with_r = delay.p_delay(p.with_(ratchet=True))
    assert with_r <= delay.p_delay(p) + 1e-12
    assert with_r <= delay.p_delay(p.with_(addressing="fixed")) + 1e-12
    # The first-slot deficit is a lower bound: the collapse.
    assert with_r >= ratchet.first_slot_deficit_tail(p) - 1e-12


def test_ratchet_lead_at_most_one_slot_when_the_cartel_is_small():
    # §4.3 (our model): with q = 1 each cartel lane withholds at most once, so the deficit
    # is <= c; L >= 2 needs a deficit >= m + Δ + 1 after slot t*+1. Hence c <= m + Δ ⇒ L <= 1.
    p = SednaParams(56, 16, 0.5, lanes=48, ratchet=True)  # c = 24 = m + Δ, pool 32 >= c
    res = montecarlo.simulate(p, trials=50_000, seed=3, max_lag=4)
    assert sum(res.lead_counts[2:]) == 0
    assert sum(res.lag_counts[2:]) == 0
    # q = 1, unbounded lanes: L >= 2 needs replacements to be cartel too; rare, exact below.
    p2 = SednaParams(56, 16, 0.3, ratchet=True)
    exact2 = delay.lag_distribution(p2, 2).tail[1]
    res2 = montecarlo.simulate(p2, trials=200_000, seed=4, max_lag=2, level=0.999)
    ci = montecarlo.binomial_ci(sum(res2.lead_counts[2:]), res2.trials, 0.999)
    assert ci.low <= exact2 <= ci.high
    assert exact2 < 1e-3


def test_ratchet_collapses_the_bounty_by_orders_of_magnitude():
    cmp = ratchet.compare(SednaParams(56, 16, 0.1), EconParams(value_lead=1.0))
    assert cmp.t_star == 4
    assert cmp.p_delay_ratchet < cmp.p_delay_fresh / 100
    assert cmp.bounty_reduction is not None and cmp.bounty_reduction > 100
    assert cmp.p_delay_last_slot == pytest.approx(stats.binom.sf(8, 16, 0.1))


def test_first_slot_deficit_finite_lanes_matches_simulation():
    p = SednaParams(56, 16, 0.2, q=0.9, lanes=60)
    tail = ratchet.first_slot_deficit_tail(p)
    one_slot = SednaParams(16 - p.slack, 16, 0.2, q=0.9, lanes=60)  # t* = 1, same slack
    assert one_slot.slack == p.slack
    assert tail == pytest.approx(delay.p_delay(one_slot), abs=1e-12)


RACE_CASES = [
    SednaParams(56, 16, 0.3),
    SednaParams(56, 16, 0.3, q=0.9),
    SednaParams(60, 16, 0.4, lanes=50),
    SednaParams(60, 16, 0.4, q=0.95, lanes=50),
    SednaParams(60, 16, 0.4, q=0.95, addressing="fixed"),
    SednaParams(52, 16, 0.3, q=0.9, lanes=16),
    SednaParams(58, 16, 0.35, ratchet=True),
]


@pytest.mark.parametrize("p", RACE_CASES, ids=lambda p: f"{p.model}-q{p.q}")
def test_race_probability_inside_monte_carlo_interval(p):
    res = montecarlo.simulate(p, Strategy("none"), trials=200_000, seed=12, level=0.999)
    exact = race.p_race(p)
    assert res.race_ci_low <= exact <= res.race_ci_high
    bound = race.race_bound(p)
    if bound is not None:
        assert exact <= bound + 1e-12


def test_race_at_maximal_slack_is_any_cartel_bundle():
    p = SednaParams(4 * 16 - 15, 16, 0.1)  # Δ = m − 1
    assert p.slack == 15
    assert race.p_race(p) == pytest.approx(1 - 0.9**16)


def test_tradeoff_finds_the_minimum_and_validates():
    tr = race.tradeoff(16, 4, 0.1, ratchet=True)
    objectives = [r.objective for r in tr.rows]
    assert tr.rows[tr.best_slack].objective == min(objectives)
    assert [r.slack for r in tr.rows] == list(range(16))
    # P_delay falls and P_race rises with Δ.
    assert all(a.p_delay >= b.p_delay - 1e-15 for a, b in zip(tr.rows, tr.rows[1:], strict=False))
    assert all(a.p_race <= b.p_race + 1e-15 for a, b in zip(tr.rows, tr.rows[1:], strict=False))
    no_r = race.tradeoff(16, 4, 0.1)
    assert no_r.best_slack >= tr.best_slack  # without the ratchet the optimum shifts up
    with pytest.raises(ValueError):
        race.tradeoff(16, 0, 0.1)
    with pytest.raises(ValueError):
        race.tradeoff(16, 4, 0.1, weight_race=-1)


def test_race_under_ratchet_with_honest_misses_is_refused():
    with pytest.raises(ValueError, match="montecarlo"):
        race.p_race(SednaParams(56, 16, 0.1, q=0.9, ratchet=True))
