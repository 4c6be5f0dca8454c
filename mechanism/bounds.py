"""KL (Chernoff) bounds, regimes, the knife edge and the critical cartel fraction.

docs/mechanism.md §3-§4. For M ~ Bin(n, r) and a = Δ+1:
  (U) a/n > r:     P(M >= a) <= exp(−n·D(a/n ‖ r))
  (L) (a−1)/n < r: P(M >= a) >= 1 − exp(−n·D((a−1)/n ‖ r))
Both hold unchanged for fresh hypergeometric lanes and for the fixed lane set with c/N
in place of β (the moment generating function of M is a convex function of the cartel
count, and hypergeometric counts are dominated in the convex order by binomial ones,
Hoeffding 1963). For the ratchet (unbounded lanes) and the fixed set the bounds are the
Chernoff bounds of the iid per-position miss counts. No bound is claimed for the
ratchet with finite lanes (the replacement pool's cartel share can exceed c/N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from mechanism import delay, dist
from mechanism.params import SednaParams


def kl_bernoulli(a: float, p: float) -> float:
    """D(a‖p) = a ln(a/p) + (1−a) ln((1−a)/(1−p)), with 0·ln 0 = 0 (inf where undefined)."""
    if not (0.0 <= a <= 1.0 and 0.0 <= p <= 1.0):
        raise ValueError(f"kl_bernoulli needs a, p in [0, 1], got a={a}, p={p}")
    total = 0.0
    if a > 0.0:
        if p == 0.0:
            return math.inf
        total += a * math.log(a / p)
    if a < 1.0:
        if p == 1.0:
            return math.inf
        total += (1.0 - a) * math.log((1.0 - a) / (1.0 - p))
    return max(total, 0.0)


def kl_upper(n: int, r: float, a: int) -> float | None:
    """(U): exp(−n D(a/n ‖ r)) bounds P(Bin(n,r) >= a) when a/n > r; None outside."""
    if a <= 0 or a / n <= r:
        return None
    if a > n:
        return 0.0
    return math.exp(-n * kl_bernoulli(a / n, r))


def kl_lower(n: int, r: float, a: int) -> float | None:
    """(L): 1 − exp(−n D((a−1)/n ‖ r)) bounds P(Bin(n,r) >= a) below when (a−1)/n < r."""
    if a <= 0:
        return 1.0
    if (a - 1) / n >= r:
        return None
    return -math.expm1(-n * kl_bernoulli((a - 1) / n, r))


@dataclass(frozen=True)
class DelayBounds:
    """Bounds on P(D) with their regime.

    upper/lower: None outside their regime. regime compares the mean missing count E[M]
    with the slack: "below-slack" (E[M] <= Δ: delay needs an upward deviation from the
    mean; it can still be likely), "above-slack" (E[M] >= Δ+1: delay is the typical
    outcome), "at-slack" (in between), "n/a" (no bound).
    method: "kl" (closed form), "chernoff" (iid per-position sums), "none".
    """

    upper: float | None
    lower: float | None
    regime: str
    method: str
    mean_missing: float | None


def _regime(mean: float, a: int) -> str:
    if mean <= a - 1:
        return "below-slack"
    if mean >= a:
        return "above-slack"
    return "at-slack"


def delay_bounds(params: SednaParams) -> DelayBounds:
    """(U)/(L) for the params' model at the horizon (a = Δ+1)."""
    a = params.slack + 1
    t, m = params.t_star, params.m
    if params.ratchet and params.lanes is not None and params.lanes != params.m:
        return DelayBounds(None, None, "n/a", "none", None)
    if params.lanes is not None and params.lanes == m:
        c = params.cartel_lanes or 0
        shift = a - t * c
        n_honest = t * (m - c)
        mean = t * c + n_honest * (1.0 - params.q)
        if shift <= 0:
            return DelayBounds(1.0, 1.0, "above-slack", "kl", mean)
        if n_honest == 0:
            return DelayBounds(0.0, 0.0, "below-slack", "kl", mean)
        up = kl_upper(n_honest, 1.0 - params.q, shift)
        lo = kl_lower(n_honest, 1.0 - params.q, shift)
        return DelayBounds(up, lo, _regime(mean, a), "kl", mean)
    if params.ratchet or params.addressing == "fixed":
        g = _position_pmf(params)
        mean = m * float(np.dot(np.arange(len(g)), g))
        up, lo = dist.chernoff_bounds(g, m, a)
        return DelayBounds(up, lo, _regime(mean, a), "chernoff", mean)
    n, r = params.n, params.r
    return DelayBounds(kl_upper(n, r, a), kl_lower(n, r, a), _regime(n * r, a), "kl", n * r)


def _position_pmf(params: SednaParams) -> np.ndarray:
    """pmf of one position's misses over t* slots (binomial surrogate with β = c/N)."""
    t = params.t_star
    if params.ratchet:
        return dist.ratchet_position_pmf(t, params.beta_eff, params.q)
    honest = dist.binom_pmf(t, 1.0 - params.q)
    g = (1.0 - params.beta_eff) * honest
    g[t] += params.beta_eff
    return g


def heterogeneous_bounds(miss_probs: np.ndarray, kappa: int) -> tuple[float | None, float | None]:
    """(U)/(L) for Poisson-binomial misses with the mean r̄ (valid by AM-GM on the MGF)."""
    r = np.asarray(miss_probs, dtype=float)
    n = len(r)
    a = n - kappa + 1
    r_bar = float(np.mean(r))
    return kl_upper(n, r_bar, a), kl_lower(n, r_bar, a)


# --- knife edge (Δ = 0) -------------------------------------------------------------


def knife_edge_p_delay(n: int, r: float) -> float:
    """Δ = 0: any missing bundle delays, P(D) = 1 − (1−r)^n (exact)."""
    if r >= 1.0:
        return 1.0
    return -math.expm1(n * math.log1p(-r))


def knife_edge_beta_half(n: int, q: float = 1.0) -> float | None:
    """β at which the Δ = 0 delay probability is 1/2: (1−β)q = 2^{−1/n}; None if < 0."""
    beta = 1.0 - 2.0 ** (-1.0 / n) / q
    return beta if beta >= 0.0 else None


# --- critical cartel fraction ------------------------------------------------------


def critical_beta(params: SednaParams, level: float = 0.5) -> float | None:
    """Smallest β with P(D) >= level (P(D) is non-decreasing in β); None if never reached.

    With finite lanes β moves in steps of 1/N (c = round(β·N)); the smallest c/N is returned.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if delay.p_delay(params.with_(beta=0.0)) >= level:
        return 0.0
    if params.lanes is not None:
        lanes = params.lanes
        lo, hi = 0, lanes - 1  # c = lanes would make beta = 1, outside [0, 1)
        if _p_at_cartel(params, hi) < level:
            return None
        while hi - lo > 1:  # invariant: P(lo) < level <= P(hi); <= log2(N) rounds
            mid = (lo + hi) // 2
            if _p_at_cartel(params, mid) >= level:
                hi = mid
            else:
                lo = mid
        return hi / lanes
    top = 1.0 - 1e-12
    if delay.p_delay(params.with_(beta=top)) < level:
        return None
    return float(
        optimize.brentq(lambda b: delay.p_delay(params.with_(beta=b)) - level, 0.0, top, xtol=1e-10)
    )


def _p_at_cartel(params: SednaParams, cartel: int) -> float:
    assert params.lanes is not None
    return delay.p_delay(params.with_(beta=cartel / params.lanes))


def safe_regime_edge(params: SednaParams) -> float:
    """β at which E[M] = Δ (safe regime below it): the slack fraction, corrected for q.

    Fresh lanes: r = Δ/n, i.e. β = 1 − (1 − Δ/n)/q (0 if honest misses alone use the slack).
    """
    a = params.slack + 1

    def mean_at(b: float) -> float:
        p = params.with_(beta=b, lanes=None)
        if p.ratchet or p.addressing == "fixed":
            g = _position_pmf(p)
            return p.m * float(np.dot(np.arange(len(g)), g))
        return p.n * p.r

    if mean_at(0.0) >= a - 1:
        return 0.0
    top = 1.0 - 1e-12
    if mean_at(top) <= a - 1:
        return top
    return float(optimize.brentq(lambda b: mean_at(b) - (a - 1), 0.0, top, xtol=1e-12))


def binomial_tail(n: int, r: float, a: int) -> float:
    """P(Bin(n, r) >= a) (a helper for tables and tests)."""
    return float(stats.binom.sf(a - 1, n, r))
