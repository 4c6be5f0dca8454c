"""KL bounds, regimes, knife edge, critical cartel fraction: property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechanism import bounds, delay, dist, montecarlo
from mechanism.params import SednaParams, Strategy

TOL = 1e-12  # the convolution models' complement has ~1e-15 absolute error


@st.composite
def model_params(draw, kinds=("binomial", "hypergeometric", "fixed", "ratchet", "all-lanes")):
    kind = draw(st.sampled_from(kinds))
    m = draw(st.integers(1, 24))
    t = draw(st.integers(1, 6))
    slack = draw(st.integers(0, m - 1))
    kappa = t * m - slack
    if kappa < 1:
        kappa = 1
    beta = draw(st.floats(0.0, 0.95))
    q = draw(st.sampled_from([1.0, 0.99, 0.9, 0.7]))
    if kind == "binomial":
        return SednaParams(kappa, m, beta, q)
    if kind == "hypergeometric":
        lanes = draw(st.integers(m, 4 * m + 10))
        return SednaParams(kappa, m, beta, q, lanes)
    if kind == "fixed":
        lanes = draw(st.one_of(st.none(), st.integers(m, 4 * m + 10)))
        return SednaParams(kappa, m, beta, q, lanes, addressing="fixed")
    if kind == "all-lanes":
        return SednaParams(kappa, m, beta, q, lanes=m)
    return SednaParams(kappa, m, beta, q, ratchet=True)


@settings(max_examples=150, deadline=None)
@given(model_params())
def test_upper_exact_lower_in_their_regimes(p):
    exact = delay.p_delay(p)
    b = bounds.delay_bounds(p)
    if b.upper is not None:
        assert exact <= b.upper + TOL
    if b.lower is not None:
        assert exact >= b.lower - TOL
    if b.regime == "below-slack":
        assert b.upper is not None or b.method == "none"
    if b.regime == "above-slack":
        assert b.lower is not None or b.method == "none"


@settings(max_examples=100, deadline=None)
@given(model_params(), st.floats(0.0, 0.95), st.floats(0.0, 0.95))
def test_delay_is_monotone_in_the_cartel_fraction(p, b1, b2):
    lo, hi = sorted((b1, b2))
    assert delay.p_delay(p.with_(beta=lo)) <= delay.p_delay(p.with_(beta=hi)) + TOL


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.integers(1, 8), st.floats(0.0, 0.9), st.sampled_from([1.0, 0.95]))
def test_knife_edge_closed_form(m, t, beta, q):
    p = SednaParams(t * m, m, beta, q)  # κ a multiple of m: Δ = 0
    assert p.slack == 0
    closed = 1.0 - ((1.0 - beta) * q) ** (t * m)
    assert delay.p_delay(p) == pytest.approx(closed, abs=1e-12)
    assert bounds.knife_edge_p_delay(p.n, p.r) == pytest.approx(closed, abs=1e-12)
    # (L) holds with equality at Δ = 0.
    lower = bounds.delay_bounds(p).lower
    if lower is not None:
        assert lower == pytest.approx(closed, abs=1e-12)


def test_knife_edge_any_withheld_bundle_delays():
    # Δ = 0, q = 1: every trial in which the cartel withholds >= 1 bundle is delayed.
    p = SednaParams(64, 16, 0.05)
    res = montecarlo.simulate(p, trials=50_000, seed=4)
    withheld_any = 1.0 - (1 - 0.05) ** 64
    assert res.ci_low <= withheld_any <= res.ci_high
    # The pivot-order cartel withholds exactly one bundle (threshold Δ+1 = 1): certain delay.
    one = montecarlo.simulate(p, Strategy("pivot-order"), trials=20_000, seed=5)
    trials_withholding = round(one.mean_withheld * one.trials)  # one bundle each
    assert trials_withholding > 0
    assert one.delays == trials_withholding
    # Under m = N any cartel lane delays deterministically.
    assert delay.p_delay(SednaParams(64, 16, 1 / 16, lanes=16)) == 1.0


def test_knife_edge_half_point():
    beta = bounds.knife_edge_beta_half(64)
    assert beta == pytest.approx(1 - 2 ** (-1 / 64))
    assert delay.p_delay(SednaParams(64, 16, beta)) == pytest.approx(0.5, abs=1e-12)
    assert beta == pytest.approx(math.log(2) / 64, rel=0.01)
    assert bounds.knife_edge_beta_half(64, q=0.5) is None


@pytest.mark.parametrize(
    "p",
    [
        SednaParams(56, 16, 0.1),
        SednaParams(56, 16, 0.1, q=0.97),
        SednaParams(56, 16, 0.1, ratchet=True),
        SednaParams(56, 16, 0.1, lanes=100),
    ],
    ids=lambda p: p.model,
)
def test_critical_beta_is_where_delay_crosses_half(p):
    bc = bounds.critical_beta(p)
    assert bc is not None
    assert delay.p_delay(p.with_(beta=bc)) >= 0.5 - 1e-9
    step = 1 / p.lanes if p.lanes else 1e-6
    assert delay.p_delay(p.with_(beta=max(0.0, bc - step))) < 0.5


def test_safe_regime_edge_is_the_slack_fraction():
    p = SednaParams(56, 16, 0.1)
    assert bounds.safe_regime_edge(p) == pytest.approx(8 / 64)
    assert bounds.safe_regime_edge(p.with_(q=0.9)) == pytest.approx(1 - (1 - 8 / 64) / 0.9)
    assert bounds.safe_regime_edge(p.with_(q=0.5)) == 0.0


def test_regimes_follow_the_mean():
    assert bounds.delay_bounds(SednaParams(56, 16, 0.05)).regime == "below-slack"
    assert bounds.delay_bounds(SednaParams(56, 16, 0.3)).regime == "above-slack"
    assert bounds.delay_bounds(SednaParams(56, 16, 0.13)).regime == "at-slack"
    none = bounds.delay_bounds(SednaParams(56, 16, 0.1, lanes=100, ratchet=True))
    assert (none.upper, none.lower, none.method) == (None, None, "none")


def test_kl_edge_cases():
    assert bounds.kl_bernoulli(0.3, 0.3) == 0.0
    assert bounds.kl_bernoulli(0.5, 0.0) == math.inf
    assert bounds.kl_bernoulli(1.0, 0.5) == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        bounds.kl_bernoulli(1.5, 0.5)
    assert bounds.kl_upper(10, 0.5, 3) is None  # a/n below r: outside (U)'s regime
    assert bounds.kl_upper(10, 0.1, 11) == 0.0
    assert bounds.kl_upper(10, 0.1, 10) == pytest.approx(0.1**10)
    assert bounds.kl_lower(10, 0.1, 5) is None


def test_chernoff_reduces_to_kl_for_bernoulli():
    for r, a in ((0.1, 20), (0.3, 10), (0.05, 3)):
        up, lo = dist.chernoff_bounds(np.array([1 - r, r]), 64, a)
        kl_up, kl_lo = bounds.kl_upper(64, r, a), bounds.kl_lower(64, r, a)
        assert (up is None) == (kl_up is None)
        assert (lo is None) == (kl_lo is None)
        if up is not None:
            assert up == pytest.approx(kl_up, rel=1e-5)
        if lo is not None:
            assert lo == pytest.approx(kl_lo, rel=1e-5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 0.6), min_size=4, max_size=60), st.integers(1, 60))
def test_heterogeneous_bounds_hold_with_mean_probability(r, kappa):
    r = np.array(r)
    kappa = min(kappa, len(r))
    exact = delay.p_delay_heterogeneous(r, kappa)
    up, lo = bounds.heterogeneous_bounds(r, kappa)
    if up is not None:
        assert exact <= up + TOL
    if lo is not None:
        assert exact >= lo - TOL
