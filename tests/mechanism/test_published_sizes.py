"""The published sizes (t*·m = 10^6, benchmarks/bench_mechanism.py) checked for accuracy.

Each reference is computed here by a different route (log-gamma sums, direct convolution
of positive arrays, closed forms), without mechanism's tail code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mechanism import delay
from mechanism.params import SednaParams

REL = 1e-9


def _log_binom(n: int, k: int, p: float) -> float:
    return (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + k * math.log(p) + (n - k) * math.log1p(-p)
    )


def _logsum(terms: list[float]) -> float:
    top = max(terms)
    return top + math.log(math.fsum(math.exp(t - top) for t in terms))


def binomial_tail(a: int, n: int, p: float, width: int = 20_000) -> float:
    """P(Bin(n, p) >= a) by summing log-gamma terms from a upward (past the mode they
    fall geometrically; `width` terms are far more than enough here)."""
    return math.exp(_logsum([_log_binom(n, k, p) for k in range(a, min(n, a + width) + 1)]))


@pytest.mark.parametrize(
    ("params", "reference"),
    [
        pytest.param(
            SednaParams(999_500, 1000, 0.0005),
            lambda: binomial_tail(501, 10**6, 0.0005),
            id="binomial m=1000 t*=1000",
        ),
        pytest.param(
            SednaParams(999_000, 1_000_000, 0.001),
            lambda: binomial_tail(1001, 10**6, 0.001),
            id="binomial m=10^6 t*=1",
        ),
        pytest.param(
            SednaParams(999_500, 1000, 0.0, q=0.9995, lanes=1000),
            lambda: binomial_tail(501, 10**6, 1 - 0.9995),
            id="all lanes m=N=1000",
        ),
        pytest.param(
            SednaParams(999_500, 1000, 0.0005, addressing="fixed"),
            lambda: -math.expm1(1000 * math.log1p(-0.0005)),  # q = 1: delay iff X_1 >= 1
            id="fixed lane set m=1000 t*=1000",
        ),
    ],
)
def test_closed_form_references(params, reference):
    assert params.n == 10**6
    assert delay.p_delay(params) == pytest.approx(reference(), rel=REL)


def test_hypergeometric_two_cartel_lanes_by_trinomial_enumeration():
    # N = 4000, c = round(0.0005·4000) = 2, m = 1000, t* = 1000, q = 1: X_s ∈ {0, 1, 2}.
    p = SednaParams(999_500, 1000, 0.0005, lanes=4000)
    assert p.cartel_lanes == 2 and p.n == 10**6
    n_lanes, m, t = 4000, 1000, 1000
    denom = math.comb(n_lanes, m)
    p1 = math.comb(2, 1) * math.comb(n_lanes - 2, m - 1) / denom
    p2 = math.comb(2, 2) * math.comb(n_lanes - 2, m - 2) / denom
    p0 = 1 - p1 - p2
    terms = []
    for twos in range(t + 1):  # j ones and `twos` twos with j + 2·twos >= 501
        for ones in range(max(0, 501 - 2 * twos), t - twos + 1):
            zeros = t - ones - twos
            terms.append(
                math.lgamma(t + 1) - math.lgamma(ones + 1) - math.lgamma(twos + 1)
                - math.lgamma(zeros + 1) + ones * math.log(p1) + twos * math.log(p2)
                + zeros * math.log(p0)
            )
    assert delay.p_delay(p) == pytest.approx(math.exp(_logsum(terms)), rel=REL)


def _ratio_pmf(first_log: float, ratios: list[float]) -> list[float]:
    """Unnormalized log pmf from a first value and successive ratios P(k+1)/P(k)."""
    out = [first_log]
    for r in ratios:
        out.append(out[-1] + math.log(r) if r > 0 else -math.inf)
    return out


def test_hypergeometric_with_honest_misses_by_direct_convolution():
    # N = 10^5, c = 400, m = 10^4, t* = 100, q = 0.999. Slot pmf from ratio recurrences
    # (log-gamma of 10^5 would carry ~1e-10 errors that 100 convolutions multiply), then
    # 100 direct (entrywise exact-to-rounding) convolutions.
    p = SednaParams(995_000, 10_000, 0.004, q=0.999, lanes=100_000)
    n_lanes, c, m, q = 100_000, 400, 10_000, 0.999
    assert p.cartel_lanes == c and p.n == 10**6
    bad = n_lanes - c
    hyper = _ratio_pmf(0.0, [(c - x) * (m - x) / ((x + 1) * (bad - m + x + 1)) for x in range(c)])
    top = 400  # slot misses above 400 have negligible probability (< 1e-100)
    slot = np.zeros(top + 1)
    for x in range(c + 1):
        trials = m - x
        binom = _ratio_pmf(
            trials * math.log(q),
            [(trials - h) / (h + 1) * (1 - q) / q for h in range(min(trials, top - x))],
        )
        for h, lb in enumerate(binom):
            slot[x + h] += math.exp(hyper[x] + lb - 0.0) if hyper[x] + lb > -700 else 0.0
    slot /= math.fsum(slot)  # normalizes the hypergeometric's unnormalized start
    total = np.array([1.0])
    for _ in range(100):
        total = np.convolve(total, slot)[:8000]
    a = p.slack + 1
    reference = float(total[a:].sum())
    assert delay.p_delay(p) == pytest.approx(reference, rel=REL)


def test_ratchet_is_a_negative_binomial_tail():
    # Unbounded lanes, q = 1, d = 1: each of the m = 1000 positions misses G slots, with
    # P(G >= k) = β^k (consecutive cartel draws; the cap at t* = 1000 is immaterial), so
    # M ~ NegBin(1000, 1 − β).
    beta, n_pos = 0.33, 1000
    p = SednaParams(999_500, 1000, beta, ratchet=True)
    a = p.slack + 1
    terms = [
        math.lgamma(k + n_pos) - math.lgamma(k + 1) - math.lgamma(n_pos)
        + n_pos * math.log1p(-beta) + k * math.log(beta)
        for k in range(a, a + 20_000)
    ]
    assert delay.p_delay(p) == pytest.approx(math.exp(_logsum(terms)), rel=REL)


def test_heterogeneous_per_lane_shape_by_direct_convolution():
    # benchmarks: 1000 lanes × 1000 slots, r_ℓ ~ U(0, 1e-3), Δ = 500: M = Σ_ℓ Bin(1000, r_ℓ).
    rng = np.random.default_rng(0)
    r_lanes = rng.uniform(0, 1e-3, 1000)
    miss = delay.miss_probs_fixed_lanes(1.0 - r_lanes, np.zeros(1000, bool), 1000)
    kappa = len(miss) - 500
    total = np.array([1.0])
    for r in r_lanes:  # direct convolution of each lane's Bin(1000, r_ℓ), truncated
        k = np.arange(0, 40)
        lane = np.exp([_log_binom(1000, int(j), float(r)) for j in k])
        total = np.convolve(total, lane)[:3000]
    reference = float(total[501:].sum())
    assert delay.p_delay_heterogeneous(miss, kappa) == pytest.approx(reference, rel=1e-8)
