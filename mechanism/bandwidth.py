"""Bandwidth: naive replication vs coded dissemination at equal failure probability.

docs/mechanism.md §9. Each addressed proposer independently fails to include with
probability r = β + (1−β)(1−q); the target one-slot failure probability is ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from mechanism.params import BandwidthParams

# Bound on the bundle count searched for n_min.
_N_MAX = 10_000_000


def naive_replicas(eps: float, r: float) -> int:
    """R_naive(ε) = ⌈ln ε / ln r⌉: copies so that all fail with probability <= ε."""
    if r <= 0.0:
        return 1
    if r >= 1.0:
        raise ValueError("r = 1: no number of replicas reaches the target")
    return max(1, math.ceil(math.log(eps) / math.log(r) - 1e-12))


def coded_failure(n: int, kappa: int, r: float) -> float:
    """P(Bin(n, 1−r) <= κ−1): fewer than κ of n bundles are included."""
    return float(stats.binom.cdf(kappa - 1, n, 1.0 - r))


def coded_bundles(kappa: int, eps: float, r: float) -> int:
    """n_min = min{n >= κ : P(Bin(n, 1−r) <= κ−1) <= ε} (failure is decreasing in n)."""
    if r >= 1.0:
        raise ValueError("r = 1: no number of bundles reaches the target")
    if coded_failure(kappa, kappa, r) <= eps:
        return kappa
    lo, hi = kappa, 2 * kappa
    while coded_failure(hi, kappa, r) > eps:  # doubling, bounded by _N_MAX
        lo, hi = hi, 2 * hi
        if hi > _N_MAX:
            raise ValueError(f"n_min exceeds {_N_MAX} bundles")
    while hi - lo > 1:  # invariant: failure(lo) > eps >= failure(hi)
        mid = (lo + hi) // 2
        if coded_failure(mid, kappa, r) <= eps:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class BandwidthComparison:
    """Overheads are bytes sent (and block space used) per payload byte."""

    r: float
    naive_replicas: int
    naive_overhead: float
    coded_bundles: int
    coded_overhead: float
    lower_bound: float
    gain: float


def compare(params: BandwidthParams) -> BandwidthComparison:
    """Naive R copies vs n_min bundles of size |x|(1+ε_code)/κ + h, and the bound 1/(1−r)."""
    r = params.r
    replicas = naive_replicas(params.eps, r)
    n_min = coded_bundles(params.kappa, params.eps, r)
    rho = n_min * (1.0 + params.eps_code) / params.kappa + (
        n_min * params.overhead_bytes / params.payload_bytes
    )
    naive = float(replicas)
    return BandwidthComparison(
        r=r,
        naive_replicas=replicas,
        naive_overhead=naive,
        coded_bundles=n_min,
        coded_overhead=rho,
        lower_bound=1.0 / (1.0 - r),
        gain=naive / rho,
    )
