"""Exact delay probabilities: closed forms vs brute force, Monte Carlo and each other."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mechanism import delay, dist, montecarlo
from mechanism.params import SednaParams, Strategy

from .helpers import assert_in_ci, brute_force_delay


@pytest.mark.parametrize(
    ("lanes", "cartel", "m", "kappa", "q", "policy"),
    [
        (6, 2, 2, 3, 1.0, "fresh"),
        (6, 2, 2, 3, 0.8, "fresh"),
        (5, 1, 2, 4, 0.7, "fresh"),
        (6, 2, 2, 3, 0.8, "fixed"),
        (7, 3, 3, 5, 1.0, "fixed"),
        (8, 3, 2, 5, 1.0, "ratchet"),
        (9, 3, 3, 7, 1.0, "ratchet"),
        (4, 1, 4, 7, 0.9, "fresh"),  # m = N
    ],
)
def test_exact_matches_brute_force_enumeration(lanes, cartel, m, kappa, q, policy):
    p = SednaParams(
        kappa,
        m,
        cartel / lanes,
        q,
        lanes,
        addressing="fixed" if policy == "fixed" else "fresh",
        ratchet=policy == "ratchet",
    )
    assert p.cartel_lanes == cartel
    expected = brute_force_delay(lanes, cartel, m, kappa, q, policy)
    assert delay.p_delay(p) == pytest.approx(expected, abs=1e-12)


def test_binomial_closed_form_is_the_binomial_tail():
    p = SednaParams(56, 16, 0.1, q=0.95)
    r = 0.1 + 0.9 * 0.05
    assert p.r == pytest.approx(r)
    assert delay.p_delay(p) == pytest.approx(stats.binom.sf(8, 64, r), rel=1e-12)


def test_all_lanes_closed_form_agrees_with_hypergeometric_path():
    p = SednaParams(70, 16, 0.125, q=0.9, lanes=16)
    assert p.model == "all-lanes"
    closed = delay.p_delay_all_lanes(70, 16, 2, 0.9)
    assert delay.p_delay(p) == pytest.approx(closed, abs=1e-14)
    # The fresh-hypergeometric machinery with X = c deterministic gives the same number.
    assert delay._behind_fresh_hypergeometric(p, p.t_star, p.slack + 1) == pytest.approx(
        closed, abs=1e-12
    )


def test_all_lanes_any_cartel_at_zero_slack_delays_deterministically():
    assert delay.p_delay(SednaParams(64, 16, 1 / 16, lanes=16)) == 1.0
    assert delay.p_delay(SednaParams(64, 16, 0.0, lanes=16)) == 0.0


def test_poisson_binomial_equal_probabilities_is_binomial():
    r = np.full(64, 0.13)
    assert delay.p_delay_heterogeneous(r, 56) == pytest.approx(stats.binom.sf(8, 64, 0.13))


def test_poisson_binomial_matches_direct_dynamic_programme():
    rng = np.random.default_rng(5)
    r = rng.uniform(0, 0.4, size=40)
    pmf = np.array([1.0])
    for ri in r:  # textbook O(n^2) recurrence
        pmf = np.convolve(pmf, [1 - ri, ri])
    kappa = 30
    expected = pmf[40 - kappa + 1 :].sum()
    assert delay.p_delay_heterogeneous(r, kappa) == pytest.approx(expected, abs=1e-13)


def test_poisson_binomial_many_distinct_values_uses_batched_tree():
    rng = np.random.default_rng(6)
    r = rng.uniform(0, 0.2, size=5000)  # > 4096 distinct: the Bernoulli-row path
    size = 1100
    ref = np.zeros(size)
    ref[0] = 1.0
    for ri in r:  # truncated textbook recurrence
        ref[1:] = ref[1:] * (1 - ri) + ref[:-1] * ri
        ref[0] *= 1 - ri
    assert dist.poisson_binomial_lower(r, size) == pytest.approx(ref, abs=1e-13)


def test_poisson_binomial_vs_monte_carlo():
    rng = np.random.default_rng(7)
    r = rng.uniform(0.0, 0.3, size=48)
    exact = delay.p_delay_heterogeneous(r, 40)
    _mc, ci = montecarlo.simulate_heterogeneous(r, 40, trials=100_000, seed=11, level=0.999)
    assert ci.low <= exact <= ci.high


def test_fixed_lane_helper_builds_per_bundle_probabilities():
    r = delay.miss_probs_fixed_lanes(np.array([0.9, 1.0, 0.5]), np.array([False, True, False]), 2)
    assert r.tolist() == pytest.approx([0.1, 1.0, 0.5, 0.1, 1.0, 0.5])
    with pytest.raises(ValueError, match="equal length"):
        delay.miss_probs_fixed_lanes(np.array([0.9]), np.array([True, False]), 2)


@pytest.mark.parametrize("bad", [np.array([]), np.array([0.1, 1.5]), np.array([[0.1]])])
def test_poisson_binomial_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        delay.p_delay_heterogeneous(bad, 1)


CASES = [
    SednaParams(56, 16, 0.1),
    SednaParams(56, 16, 0.1, q=0.95),
    SednaParams(56, 16, 0.12, lanes=100),
    SednaParams(56, 16, 0.2, q=0.9, lanes=60),
    SednaParams(56, 16, 0.05, addressing="fixed"),
    SednaParams(56, 16, 0.1, q=0.97, lanes=80, addressing="fixed"),
    SednaParams(56, 16, 0.3, ratchet=True),
    SednaParams(56, 16, 0.2, q=0.9, ratchet=True),
    SednaParams(56, 16, 0.3, lanes=100, ratchet=True),
    SednaParams(30, 16, 0.25, q=0.9, lanes=16),
    SednaParams(64, 16, 0.01),
]


@pytest.mark.parametrize("params", CASES, ids=lambda p: f"{p.model}-b{p.beta}-q{p.q}")
def test_exact_delay_inside_monte_carlo_interval(params):
    res = montecarlo.simulate(params, trials=200_000, seed=101, max_lag=2, level=0.999)
    assert_in_ci(delay.p_delay(params), res)
    # The lag tail P(T_chain >= t* + 2) too.
    lag2 = delay.lag_distribution(params, 2).tail[1]
    hits = sum(res.lag_counts[2:])
    ci = montecarlo.binomial_ci(hits, res.trials, 0.999)
    assert ci.low <= lag2 <= ci.high


@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("none"),
        Strategy("threshold"),
        Strategy("threshold", threshold=3),
        Strategy("last-slot"),
        Strategy("partial", per_slot=2),
        Strategy("pivot-order"),
    ],
    ids=lambda s: f"{s.kind}-{s.threshold}-{s.per_slot}",
)
@pytest.mark.parametrize(
    "params", [SednaParams(56, 16, 0.2), SednaParams(56, 16, 0.2, q=0.9, lanes=60)]
)
def test_strategy_closed_forms_inside_monte_carlo_interval(strategy, params):
    res = montecarlo.simulate(params, strategy, trials=100_000, seed=7, level=0.999)
    assert_in_ci(delay.p_delay_strategy(params, strategy), res)


def test_strategy_withhold_all_equals_model_delay():
    for p in (SednaParams(56, 16, 0.2), SednaParams(56, 16, 0.2, q=0.9, lanes=60)):
        assert delay.p_delay_strategy(p, Strategy()) == pytest.approx(delay.p_delay(p), abs=1e-13)


def test_strategy_closed_form_refuses_the_ratchet():
    with pytest.raises(ValueError, match="fresh addressing"):
        delay.p_delay_strategy(SednaParams(56, 16, 0.2, ratchet=True), Strategy())


def test_ratchet_last_slot_cartel_is_first_slot_holdings():
    p = SednaParams(56, 16, 0.3, ratchet=True)
    res = montecarlo.simulate(p, Strategy("last-slot"), trials=200_000, seed=3, level=0.999)
    assert_in_ci(delay.p_delay_last_slot_ratchet(p), res)
    assert delay.p_delay_last_slot_ratchet(p) == pytest.approx(stats.binom.sf(8, 16, 0.3))


def test_ratchet_finite_lanes_refuses_what_it_cannot_compute_exactly():
    with pytest.raises(ValueError, match="requires q = 1"):
        delay.p_delay(SednaParams(56, 16, 0.3, q=0.9, lanes=100, ratchet=True))
    with pytest.raises(ValueError, match="replacement lanes"):
        delay.p_delay(SednaParams(56, 16, 0.3, lanes=20, ratchet=True))


def test_expected_withheld_matches_monte_carlo():
    for p in (
        SednaParams(56, 16, 0.3, ratchet=True),
        SednaParams(56, 16, 0.3, lanes=100, ratchet=True),
        SednaParams(56, 16, 0.2, q=0.9, ratchet=True),
        SednaParams(56, 16, 0.2),
    ):
        res = montecarlo.simulate(p, trials=100_000, seed=9)
        expected = float(delay.expected_withheld_by_slot(p).sum())
        assert res.mean_withheld == pytest.approx(expected, rel=0.01)


def test_conv_power_matches_repeated_convolution():
    rng = np.random.default_rng(1)
    pmf = rng.random(7)
    pmf /= pmf.sum()
    ref = np.array([1.0])
    for _ in range(5):
        ref = np.convolve(ref, pmf)
    assert dist.conv_power_trunc(pmf, 5, 20) == pytest.approx(ref[:20], abs=1e-15)
    assert dist.conv_power_trunc(pmf, 0, 3).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        dist.conv_power_trunc(pmf, -1, 3)


def test_large_fft_convolution_is_non_negative_and_accurate():
    a = stats.binom.pmf(np.arange(3001), 3000, 0.1)
    b = stats.binom.pmf(np.arange(3001), 3000, 0.1)
    out = dist.conv_trunc(a, b, 700)
    assert np.all(out >= 0)
    assert out.sum() == pytest.approx(stats.binom.cdf(699, 6000, 0.1), abs=1e-12)


def test_lag_distribution_bounds_and_validation():
    lag = delay.lag_distribution(SednaParams(56, 16, 0.1, q=0.9), 3)
    assert not lag.lead_equals_lag
    assert list(lag.tail) == sorted(lag.tail, reverse=True)
    with pytest.raises(ValueError):
        delay.lag_distribution(SednaParams(56, 16, 0.1), 0)
    with pytest.raises(ValueError):
        delay.p_behind(SednaParams(56, 16, 0.1), 0)
    # Before the horizon the chain is always behind.
    assert delay.p_behind(SednaParams(56, 16, 0.0), 3) == 1.0
