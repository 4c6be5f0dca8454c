"""PIVOT-K: pivotal sets and incentive-compatibility conditions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechanism import montecarlo, pivot
from mechanism.params import EconParams, SednaParams, Strategy

from .helpers import assert_batch_mean_close


def test_canonical_pivotal_set_is_the_first_kappa_bundles():
    slots = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert pivot.pivotal_set(slots, 7) == (2, (1, 2, 3, 4, 5, 6, 7))
    assert pivot.pivotal_set(slots, 3) == (0, (1, 2, 3))
    assert pivot.pivotal_set(slots, 10) == (None, ())


def test_randomized_pivotal_set_keeps_earlier_slots_and_is_seeded():
    slots = [[1, 2, 3], [4, 5, 6], [7, 8, 9, 10]]
    slot, chosen = pivot.pivotal_set(slots, 8, rule="random", seed=3)
    assert slot == 2 and len(chosen) == 8
    assert set(chosen[:6]) == {1, 2, 3, 4, 5, 6}
    assert set(chosen[6:]) <= {7, 8, 9, 10}
    assert pivot.pivotal_set(slots, 8, rule="random", seed=3) == (slot, chosen)
    draws = {pivot.pivotal_set(slots, 8, rule="random", seed=s)[1] for s in range(40)}
    assert len(draws) > 1  # the decode-slot choice really varies with the beacon


def test_pivotal_set_rejects_bad_input():
    with pytest.raises(ValueError, match="twice"):
        pivot.pivotal_set([[1, 2], [2]], 3)
    with pytest.raises(ValueError):
        pivot.pivotal_set([[1]], 0)
    with pytest.raises(ValueError):
        pivot.pivotal_set([[1]], 1, rule="weird")


def test_honest_run_pivotal_set_is_exactly_kappa():
    # §4.3: q = 1, β = 0: T_chain = t* always and the pivotal set is exactly κ bundles.
    p = SednaParams(56, 16, 0.0)
    res = montecarlo.simulate(p, Strategy("none"), trials=10_000, seed=1, max_lag=2)
    assert res.t_chain_min == p.t_star and res.lag_counts[0] == res.trials
    slots = [list(range(s * 16, s * 16 + 16)) for s in range(p.t_star)]
    slot, chosen = pivot.pivotal_set(slots, p.kappa)
    assert slot == p.t_star - 1 and len(chosen) == p.kappa
    # In slot t*, m − Δ bundles are pivotal.
    assert sum(1 for b in chosen if b >= 48) == p.m - p.slack


def test_decode_slot_pivot_probability():
    assert pivot.decode_slot_pivot_probability(16, 8, "random", None) == 0.5
    assert pivot.decode_slot_pivot_probability(16, 8, "canonical", 7) == 1.0
    assert pivot.decode_slot_pivot_probability(16, 8, "canonical", 8) == 0.0
    with pytest.raises(ValueError):
        pivot.decode_slot_pivot_probability(16, 8, "canonical", None)
    with pytest.raises(ValueError):
        pivot.decode_slot_pivot_probability(16, 16, "random", None)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 24), st.integers(1, 5), st.data(), st.floats(0.1, 10), st.floats(0, 0.05))
def test_ex_post_all_pivotal_is_v_over_slack_plus_one(m, t, data, value, fee):
    # §4.3: q = 1, all pivotal: b* = V/(Δ+1) − f, binding at j = Δ+1.
    slack = data.draw(st.integers(0, min(m - 1, t * m - 1)))
    p = SednaParams(t * m - slack, m, 0.1)
    e = EconParams(value_lead=value, fee=fee)
    res = pivot.bounty_ex_post(p, e)
    assert res.bounty == pytest.approx(max(0.0, value / (slack + 1) - fee))
    if res.bounty > 0:
        assert res.binding_withheld == slack + 1


def test_ex_post_bounty_is_incentive_compatible_and_tight():
    p = SednaParams(56, 16, 0.1, q=0.95)
    e = EconParams(value_lead=2.0, fee=0.01)
    res = pivot.bounty_ex_post(p, e)
    b = res.bounty
    for j in range(1, p.n + 1):
        # IC_J: j(f + b) >= V·ΔP_j for every partial deviation.
        assert j * (e.fee + b) >= e.value_lead * pivot.delay_increase(p, j) - 1e-12
    j = res.binding_withheld
    b_less = b * 0.999
    assert j * (e.fee + b_less) < e.value_lead * pivot.delay_increase(p, j)


@pytest.mark.parametrize("j", [1, 3, 9])
def test_delay_increase_matches_monte_carlo(j):
    p = SednaParams(56, 16, 0.0, q=0.92)
    _p_with, ci = montecarlo.simulate_fixed_withholding(p, j, trials=100_000, seed=j, level=0.999)
    _p_none, ci0 = montecarlo.simulate_fixed_withholding(
        p, 0, trials=100_000, seed=50 + j, level=0.999
    )
    # ΔP_j = P(D | j) − P(D | ∅): each term inside its interval, the difference within both.
    increase = pivot.delay_increase(p, j)
    assert ci.low - ci0.high <= increase <= ci.high - ci0.low
    assert increase > 0


def test_single_and_coalition_conditions():
    p = SednaParams(64, 16, 0.1)  # Δ = 0
    e = EconParams(value_lead=1.0, fee=0.1)
    assert pivot.bounty_single(p, e) == pytest.approx(0.9)  # b >= V − f at the knife edge
    p8 = SednaParams(56, 16, 0.1)
    assert pivot.bounty_single(p8, e) == 0.0  # one bundle cannot beat slack 8 when q = 1
    assert pivot.bounty_coalition(p8, e, holdings=8, members=8) == 0.0  # holdings <= Δ
    assert pivot.bounty_coalition(p8, e, holdings=9, members=9) == pytest.approx(1 / 9 - 0.1)
    split = pivot.bounty_coalition(p8, e, holdings=9, members=20, transferable=False)
    assert split == pytest.approx(max(0.0, 1 / 20 - 0.1))
    assert split <= pivot.bounty_coalition(p8, e, holdings=9, members=20)
    with pytest.raises(ValueError):
        pivot.bounty_coalition(p8, e, holdings=0, members=1)
    with pytest.raises(ValueError):
        pivot.bounty_coalition(p8, e, holdings=3, members=0)


def test_pivot_gaming_bounds_and_monte_carlo_costs():
    p = SednaParams(56, 16, 0.3)
    e = EconParams(value_lead=1.0, fee=0.01)
    det = pivot.bounty_pivot_gaming(p, e, "canonical")
    rnd = pivot.bounty_pivot_gaming(p, e, "random")
    assert det == pytest.approx(1.0 - 9 * 0.01)
    assert rnd == pytest.approx(16 / 8 * (1 / 9 - 0.01))
    assert rnd < det  # randomizing the pivot restores the value of slack
    # MC: adversarial order => exactly one pivotal bundle per deviation; Variant R =>
    # (m−Δ)/m of the Δ+1 withheld bundles are pivotal on average.
    adv = montecarlo.simulate(
        p, Strategy("pivot-order"), trials=100_000, seed=2, adversarial_order=True
    )
    deviations = adv.mean_withheld / (p.slack + 1)
    assert adv.mean_pivotal_withheld_order == pytest.approx(deviations, rel=1e-12)
    # Variant R: each withheld bundle is pivotal w.p. (m−Δ)/m (batch means, SE-tied).
    def excess(b: int) -> float:
        r = montecarlo.simulate(p, Strategy("pivot-order"), trials=10_000, seed=20 + b,
                                adversarial_order=True)
        return r.mean_pivotal_withheld_random - r.mean_withheld * (p.m - p.slack) / p.m

    assert_batch_mean_close(excess, 0.0)
    with pytest.raises(ValueError):
        pivot.bounty_pivot_gaming(p, e, "other")


def test_ex_ante_bounty_and_ratchet_reduction():
    e = EconParams(value_lead=1.0)
    p = SednaParams(56, 16, 0.1)
    fresh = pivot.bounty_ex_ante(p, e)
    assert fresh.expected_withheld == pytest.approx(64 * 0.1)
    assert fresh.expected_pivotal_withheld == pytest.approx(48 * 0.1 + 16 * 0.1 * 0.5)
    assert fresh.bounty == pytest.approx(fresh.p_delay / fresh.expected_pivotal_withheld)
    with_r = pivot.bounty_ex_ante(p.with_(ratchet=True), e)
    assert fresh.bounty / with_r.bounty > 100  # orders of magnitude
    # IC_ante holds with equality at b*.
    lhs = e.value_lead * (with_r.p_delay - with_r.p_delay_honest)
    assert lhs == pytest.approx(with_r.bounty * with_r.expected_pivotal_withheld)


def test_ex_ante_expected_pivotal_withheld_matches_monte_carlo():
    p = SednaParams(56, 16, 0.2)
    ante = pivot.bounty_ex_ante(p, EconParams(value_lead=1.0))
    assert_batch_mean_close(
        lambda b: montecarlo.simulate(p, trials=10_000, seed=80 + b).mean_pivotal_withheld_random,
        ante.expected_pivotal_withheld,
    )


def test_fee_alone_deters_when_large_enough():
    p = SednaParams(56, 16, 0.1)
    e = EconParams(value_lead=1.0)
    f_star = pivot.fee_deterring_alone(p, e)
    assert f_star == pytest.approx(1 / 9)
    assert pivot.bounty_ex_post(p, EconParams(value_lead=1.0, fee=f_star)).bounty == 0.0


def test_mev_cost_fraction():
    p = SednaParams(56, 16, 0.1, q=0.99)
    e = EconParams(value_lead=1.0, tx_value=4.0, value_race=0.5)
    out = pivot.mev_cost_fraction(p, e, 0.001, 0.01)
    expected = (56 * 0.001 + 1.0 * out["p_delay_residual"] + 0.5 * 0.01) / 4.0
    assert out["gamma"] == pytest.approx(expected)
    assert out["p_delay_residual"] > 0
