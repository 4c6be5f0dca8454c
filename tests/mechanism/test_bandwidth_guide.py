"""Bandwidth comparison and parameter guidance."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from mechanism import bandwidth, delay, guide, race
from mechanism.params import BandwidthParams, EconParams, GuideTargets, SednaParams


@pytest.mark.parametrize(("eps", "r"), [(1e-3, 1 / 3), (1e-6, 0.1), (0.05, 0.5)])
def test_naive_replicas_is_the_smallest_sufficient(eps, r):
    rep = bandwidth.naive_replicas(eps, r)
    assert r**rep <= eps * (1 + 1e-9)
    assert rep == 1 or r ** (rep - 1) > eps


@pytest.mark.parametrize(("kappa", "eps", "r"), [(8, 1e-3, 1 / 3), (32, 1e-6, 0.1), (1, 0.1, 0.5)])
def test_coded_bundles_is_the_smallest_sufficient(kappa, eps, r):
    n = bandwidth.coded_bundles(kappa, eps, r)
    assert bandwidth.coded_failure(n, kappa, r) <= eps
    assert n == kappa or bandwidth.coded_failure(n - 1, kappa, r) > eps


def test_coded_failure_matches_simulation():
    # Tolerance from the simulation's standard error (3.29 σ, 99.9 %), not a fraction of
    # the value: a one-bundle error (n vs n + 1) moves the value by ~30 σ here.
    rng = np.random.default_rng(3)
    n, kappa, r = 37, 16, 1 / 3
    trials = 400_000
    included = rng.binomial(n, 1 - r, size=trials)
    mc = float(np.mean(included < kappa))
    exact = bandwidth.coded_failure(n, kappa, r)
    se = (exact * (1 - exact) / trials) ** 0.5
    assert abs(mc - exact) <= 3.29 * se


@pytest.mark.parametrize(("n", "kappa", "r"), [(37, 16, 1 / 3), (11, 8, 0.1), (9, 9, 0.25)])
def test_coded_failure_is_the_exact_rational_binomial_tail(n, kappa, r):
    exact = sum(
        Fraction(comb(n, k)) * (1 - Fraction(r)) ** k * Fraction(r) ** (n - k)
        for k in range(kappa)
    )
    assert bandwidth.coded_failure(n, kappa, r) == pytest.approx(float(exact), rel=1e-12)


def test_coded_bundles_is_the_smallest_n_by_exact_search():
    kappa, eps, r = 16, 1e-3, 1 / 3

    def failure(n: int) -> Fraction:
        return sum(
            Fraction(comb(n, k)) * (1 - Fraction(r)) ** k * Fraction(r) ** (n - k)
            for k in range(kappa)
        )

    n = kappa
    while failure(n) > Fraction(eps):
        n += 1
    assert bandwidth.coded_bundles(kappa, eps, r) == n == 37


def test_comparison_respects_the_lower_bound_and_approaches_it():
    small = bandwidth.compare(BandwidthParams(kappa=8, beta=1 / 3))
    large = bandwidth.compare(BandwidthParams(kappa=512, beta=1 / 3))
    assert small.lower_bound == pytest.approx(1.5)
    assert small.coded_overhead >= small.lower_bound
    assert large.coded_overhead >= large.lower_bound
    assert large.coded_overhead - 1.5 < small.coded_overhead - 1.5
    assert small.gain == pytest.approx(small.naive_overhead / small.coded_overhead)
    with_overhead = bandwidth.compare(
        BandwidthParams(kappa=8, beta=1 / 3, eps_code=0.1, overhead_bytes=32, payload_bytes=1024)
    )
    n = with_overhead.coded_bundles
    assert with_overhead.coded_overhead == pytest.approx(n * 1.1 / 8 + n * 32 / 1024)


def test_unreachable_targets_are_refused():
    with pytest.raises(ValueError):
        bandwidth.naive_replicas(1e-3, 1.0)
    with pytest.raises(ValueError):
        bandwidth.coded_bundles(8, 1e-3, 1.0)


def test_guide_recommendation_meets_its_targets():
    t = GuideTargets(eps_delay=1e-5, eps_race=1e-3, beta_max=0.1, m_max=24, t_max=4)
    e = EconParams(value_lead=1.0, value_race=0.01)
    rec = guide.recommend(t, e)
    assert rec.slack >= 1  # never the knife edge
    assert rec.t_star >= 2  # the ratchet needs t* >= 2
    p = SednaParams(rec.kappa, rec.m, 0.1, ratchet=True)
    assert (p.t_star, p.slack) == (rec.t_star, rec.slack)
    assert delay.p_delay(p) <= 1e-5 and rec.p_delay == delay.p_delay(p)
    assert race.p_race(p) <= 1e-3
    assert rec.candidates_feasible >= 1
    assert rec.bounty_total == pytest.approx(rec.kappa * rec.bounty_per_bundle)


def test_guide_fixed_kappa_and_infeasible():
    t = GuideTargets(eps_delay=1e-3, eps_race=1e-2, beta_max=0.1, kappa=56, m_max=32)
    rec = guide.recommend(t, EconParams(value_lead=1.0), bounty_form="ex-post")
    assert rec.kappa == 56
    hard = GuideTargets(eps_delay=1e-12, eps_race=1e-12, beta_max=0.4, m_max=8, t_max=2)
    with pytest.raises(ValueError, match="no \\(kappa, m, slack\\)"):
        guide.recommend(hard, EconParams(value_lead=1.0))
    with pytest.raises(ValueError):
        guide.recommend(t, EconParams(value_lead=1.0), bounty_form="both")
