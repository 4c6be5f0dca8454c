"""Exact delay probabilities: closed forms vs brute force, Monte Carlo and each other."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mechanism import delay, dist, montecarlo, tails
from mechanism.params import SednaParams, Strategy

from .helpers import assert_batch_mean_close, assert_in_ci, brute_force_delay


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
    fresh = tails.iid_sum_log_sf(delay._log_slot_miss_pmf(p), p.t_star, p.slack + 1)
    assert tails.prob(fresh) == pytest.approx(closed, rel=1e-12)


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
    r = rng.uniform(0, 0.2, size=5000)  # > 4096 distinct values: no grouping, blocks + tree
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


@pytest.mark.parametrize(
    "bad", [np.array([]), np.array([0.1, 1.5]), np.array([[0.1]]), np.array([0.1, np.nan])]
)
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
        expected = float(delay.expected_withheld_by_slot(p).sum())
        assert_batch_mean_close(
            lambda b, p=p: montecarlo.simulate(p, trials=10_000, seed=90 + b).mean_withheld,
            expected,
        )


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


# --- Poisson-binomial paths (series, blocked, tree) against a long-double reference ---


def _long_double_lower(r: np.ndarray, size: int) -> np.ndarray:
    """Truncated pmf of Σ Bernoulli(r_i) by the textbook recurrence in 80-bit floats."""
    ref = np.zeros(size, dtype=np.longdouble)
    ref[0] = 1
    for ri in np.asarray(r, dtype=np.longdouble):  # one step per bundle
        ref[1:] = ref[1:] * (1 - ri) + ref[:-1] * ri
        ref[0] *= 1 - ri
    return ref


def _series_taken(r: np.ndarray, size: int) -> bool:
    values, counts = np.unique(r, return_counts=True)
    return dist._series_lower(values, counts, size) is not None


def test_poisson_binomial_series_path_matches_long_double_reference():
    rng = np.random.default_rng(21)
    r = rng.uniform(0.0, 0.004, size=20_000)  # mean 40, Σρ² ~ 0.1: Poisson-like
    size = 45
    assert _series_taken(r, size)
    ref = _long_double_lower(r, size)
    got = dist.poisson_binomial_lower(r, size)
    assert np.max(np.abs(got - ref)) < 1e-15
    assert abs(float(got.sum() - ref.sum())) < 1e-14


def test_poisson_binomial_tree_path_matches_long_double_reference():
    rng = np.random.default_rng(22)
    r = rng.uniform(0.0, 0.6, size=3000)  # r_max >= 0.5: the series refuses outright
    size = int(r.sum())
    assert not _series_taken(r, size)
    ref = _long_double_lower(r, size)
    got = dist.poisson_binomial_lower(r, size)
    assert np.max(np.abs(got - ref)) < 1e-14
    assert abs(float(got.sum() - ref.sum())) < 1e-13


@pytest.mark.parametrize("grouped", [False, True])
def test_poisson_binomial_blocked_path_matches_long_double_reference(grouped):
    rng = np.random.default_rng(23)
    if grouped:  # 200 lanes x 50 slots, r_ℓ up to 0.05: Σ w·ρ² ~ 8, groups of 50
        r = delay.miss_probs_fixed_lanes(1.0 - rng.uniform(0.0, 0.05, 200), np.zeros(200, bool), 50)
    else:  # distinct: Σρ² ~ 0.27 per 1000 small r_i, and 40 large ones for the tree
        r = np.concatenate([rng.uniform(0.0, 0.01, size=8000), rng.uniform(0.05, 0.3, size=40)])
    size = int(r.sum())
    assert not _series_taken(r, size)
    values, counts = np.unique(r, return_counts=True)
    # Some value blocks are certified by the series (the rest, if any, go to the tree).
    rho = values / (1.0 - values)
    small = np.cumsum(counts * rho * rho) <= 1.0
    assert dist._series_lower(values[small], counts[small], size) is not None
    ref = _long_double_lower(r, size)
    got = dist.poisson_binomial_lower(r, size)
    assert np.max(np.abs(got - ref)) < 1e-14
    assert abs(float(got.sum() - ref.sum())) < 1e-13


def test_poisson_binomial_per_lane_layouts_are_grouped_and_exact():
    rng = np.random.default_rng(24)
    q = 1.0 - rng.uniform(0.0, 0.01, size=64)
    cartel = np.zeros(64, dtype=bool)
    cartel[[3, 40]] = True  # r = 1: sure misses
    tiled = delay.miss_probs_fixed_lanes(q, cartel, 100)  # lane-major within each slot
    runs = np.sort(tiled)  # slot-major per lane: long runs
    for r in (tiled, runs):
        values, counts = dist._group_equal(r)
        assert counts is not None and int(counts.sum()) == len(r)
        assert len(values) == 63  # 62 honest lanes and one value (1.0) for both cartel lanes
    size = 240  # 200 sure misses + the honest ones around their mean ~32
    ref = _long_double_lower(tiled, size)
    for r in (tiled, runs, rng.permutation(tiled)):
        got = dist.poisson_binomial_lower(r, size)
        assert np.max(np.abs(got - ref)) < 1e-15
    assert dist._group_equal(rng.uniform(size=10_000))[1] is None  # nothing cheap to group


def test_find_period_rejects_near_periodic_arrays():
    base = np.arange(100) / 1000.0
    r = np.tile(base, 50)
    assert dist._find_period(r) == 100
    r[-1] = 0.5  # one entry breaks the period
    assert dist._find_period(r) is None
    assert dist._find_period(np.tile(base, 3)[:-7]) is None  # the period must divide n


def test_poisson_binomial_sure_and_impossible_misses():
    # 5 sure misses with size 5: nothing below 5.
    assert dist.poisson_binomial_lower(np.ones(5), 5).tolist() == [0.0] * 5
    assert dist.poisson_binomial_lower(np.ones(5), 7).tolist() == [0, 0, 0, 0, 0, 1, 0]
    assert dist.poisson_binomial_lower(np.zeros(9), 3).tolist() == [1.0, 0.0, 0.0]
    r = np.concatenate([np.ones(2), np.full(3, 0.25), np.zeros(4)])
    expected = [0, 0, *stats.binom.pmf(np.arange(3), 3, 0.25).tolist()]
    assert dist.poisson_binomial_lower(r, 5) == pytest.approx(expected, abs=1e-15)
    with pytest.raises(ValueError):
        dist.poisson_binomial_lower(r, 0)


def test_series_refuses_when_its_error_bound_is_too_large():
    rng = np.random.default_rng(25)
    r = rng.uniform(0.0, 0.05, size=20_000)  # Σρ² ~ 17: the correction would cancel badly
    assert dist._series_lower(r, None, 600) is None
    assert dist._series_lower(np.array([0.5, 0.1]), None, 2) is None  # ρ >= 1
    small = rng.uniform(0.0, 0.001, size=20_000)
    series = dist._series_lower(small, None, 20)
    assert series is not None and 0.0 < series[1] <= 1e-12  # (pmf, its error bound)
    assert dist._series_lower(small, None, 20, max_error=series[1] / 2) is None


def test_trim_tails_cuts_at_most_eps_per_column_and_no_more_than_needed():
    rng = np.random.default_rng(26)
    stack = rng.random((50, 7)) * np.logspace(0, -40, 50)[:, None]  # decaying columns
    eps = 1e-20
    cut = dist._trim_tails(stack, eps)
    kept = cut.shape[0]
    assert np.all(stack[kept:].sum(axis=0) <= eps)  # dropped mass per column
    assert np.any(stack[kept - 1 :].sum(axis=0) > eps)  # one entry fewer would be too many
    assert np.array_equal(cut, stack[:kept])


@pytest.mark.parametrize("mean", [1e-6, 0.3, 1.0, 40.0, 2500.0])
def test_chernoff_width_bounds_the_upper_tail(mean):
    eps = 1e-20
    w = dist._chernoff_width(mean, eps)
    assert stats.poisson.sf(w - 1, mean) <= eps  # P(X >= w)
    assert stats.binom.sf(w - 1, 10**7, mean / 10**7) <= eps
    assert w > mean


def test_tree_with_trimming_matches_long_double_reference():
    rng = np.random.default_rng(26)
    values = np.sort(rng.uniform(0.0, 0.3, size=200))
    counts = rng.integers(1, 40, size=200)
    size = 900
    ref = _long_double_lower(np.repeat(values, counts), size)
    got = dist._binomial_tree_lower(values, counts, size)
    assert len(got) == size
    assert np.max(np.abs(got - ref)) < 1e-15
    assert abs(float(got.sum() - ref.sum())) < 1e-13


def test_poisson_lower_tail_shortcut_returns_zero_mass():
    # Mean 5000 with size 100: P(M <= 99) < e^{-4000}; the result is exactly zero.
    r = np.full(10_000, 0.5) + np.linspace(0, 1e-3, 10_000)
    assert dist.poisson_binomial_lower(r, 100).sum() == 0.0
    assert delay.p_delay_heterogeneous(r, 10_000 - 99) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(0.0, 1.0),
            st.floats(0.0, 0.01),
            st.sampled_from([0.0, 1.0, 1e-305, 0.5]),
        ),
        min_size=1,
        max_size=120,
    ),
    st.integers(1, 40),
    st.integers(1, 130),
)
def test_poisson_binomial_matches_long_double_on_random_inputs(r, repeat, size):
    r = np.tile(np.array(r), repeat)  # repeats exercise the grouping
    ref = _long_double_lower(np.where(r < 1e-300, 0.0, r), size)
    got = dist.poisson_binomial_lower(r, size)
    assert got.shape == (size,)
    assert np.all(got >= 0.0)
    assert np.max(np.abs(got - ref)) < 1e-13


def test_heterogeneous_delay_is_monotone_across_path_switches():
    # Scaling every r_i up moves the computation from the series to blocks to the tree; the
    # delay probability must still rise monotonically and match the reference throughout.
    rng = np.random.default_rng(27)
    base = rng.uniform(0.0, 1.0, size=4000)
    kappa = 4000 - 60
    previous = 0.0
    for scale in (0.005, 0.01, 0.02, 0.03, 0.05, 0.1):
        r = base * scale
        p = delay.p_delay_heterogeneous(r, kappa)
        ref = 1.0 - float(_long_double_lower(r, 4000 - kappa + 1).sum())
        assert p == pytest.approx(ref, abs=1e-13)
        assert p >= previous - 1e-13
        previous = p


@pytest.mark.slow
def test_poisson_binomial_benchmark_shapes_match_reference():
    # The benchmark's t*·m = 10^6 shapes against the long-double reference (~1 min).
    rng = np.random.default_rng(0)
    per_lane = np.tile(rng.uniform(0.0, 0.001, size=1000), 1000)
    distinct = rng.uniform(0.0, 0.001, size=1_000_000)
    for r in (per_lane, distinct):
        size = 501
        ref = _long_double_lower(r, size)
        got = dist.poisson_binomial_lower(r, size)
        assert abs(float(got.sum() - ref.sum())) < 1e-13
