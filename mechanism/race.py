"""Within-slot decode race and the delay/race trade-off (docs/mechanism.md §10).

Lanes of the decode slot see their own bundles before the slot is finalized. A cartel that
behaves honestly before slot t* can decode inside slot t*, ahead of the chain, iff
S_{t*−1} + X_{t*} >= κ. With q = 1 this is X_{t*} >= m − Δ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from mechanism import bounds, delay, dist
from mechanism.params import SednaParams


def p_race(params: SednaParams) -> float:
    """P(S_{t*−1} + X_{t*} >= κ) with the cartel including its bundles before slot t*."""
    t, m, q, kappa = params.t_star, params.m, params.q, params.kappa
    lanes = params.lanes
    if params.ratchet and q < 1.0:
        raise ValueError("exact race under the ratchet requires q = 1 (use montecarlo)")
    if lanes is not None and lanes == m:
        c = params.cartel_lanes or 0
        need = kappa - c - (t - 1) * c
        return float(stats.binom.sf(need - 1, (t - 1) * (m - c), q))
    x_pmf = (
        dist.binom_pmf(m, params.beta)
        if lanes is None
        else dist.hypergeom_pmf(lanes, params.cartel_lanes or 0, m)
    )
    x = np.arange(len(x_pmf))
    if q == 1.0:
        earlier = (t - 1) * m
        return float(np.sum(x_pmf[x >= kappa - earlier]))
    if params.addressing == "fixed":
        # The same cartel lanes (x of them) hold bundles every slot and always include.
        tail = stats.binom.sf(kappa - x - (t - 1) * x - 1, (t - 1) * (m - x), q)
        return float(np.dot(x_pmf, tail))
    # Fresh lanes: S_{t*−1} = Σ_{s<t*} (X_s + Bin(m − X_s, q)), independent of X_{t*}.
    if lanes is None:
        p_inc = params.beta + (1.0 - params.beta) * q
        tail = stats.binom.sf(kappa - x - 1, (t - 1) * m, p_inc)
        return float(np.dot(x_pmf, tail))
    slot_inc = np.zeros(m + 1)
    for xs, px in enumerate(x_pmf):  # mixture over the slot's cartel count
        slot_inc[xs:] += px * dist.binom_pmf(m - xs, q)
    s_pmf = dist.conv_power_trunc(slot_inc, t - 1, (t - 1) * m + 1)
    s_tail = np.concatenate([np.cumsum(s_pmf[::-1])[::-1], [0.0]])  # P(S >= k)
    need = np.clip(kappa - x, 0, len(s_tail) - 1)
    return float(np.dot(x_pmf, s_tail[need]))


def race_bound(params: SednaParams) -> float | None:
    """exp(−m·D((m−Δ)/m ‖ β)) when (m−Δ)/m > β: bounds P_race in every model (Chernoff)."""
    m, slack = params.m, params.slack
    return bounds.kl_upper(m, params.beta_eff, m - slack)


@dataclass(frozen=True)
class TradeoffRow:
    slack: int
    kappa: int
    p_delay: float
    p_race: float
    objective: float


@dataclass(frozen=True)
class Tradeoff:
    """P_delay and P_race over Δ = 0..m−1 at fixed (m, t*); Δ* minimizes the objective."""

    rows: tuple[TradeoffRow, ...]
    best_slack: int


def tradeoff(
    m: int,
    t_star: int,
    beta: float,
    q: float = 1.0,
    lanes: int | None = None,
    ratchet: bool = False,
    weight_delay: float = 1.0,
    weight_race: float = 1.0,
) -> Tradeoff:
    """Objective w_d·P_delay + w_r·P_race for κ = t*·m − Δ, Δ = 0..m−1."""
    if t_star < 1:
        raise ValueError(f"t_star must be >= 1, got {t_star}")
    if weight_delay < 0 or weight_race < 0:
        raise ValueError("weights must be >= 0")
    rows = []
    for slack in range(m):  # bounded by m
        p = SednaParams(t_star * m - slack, m, beta, q, lanes, ratchet=ratchet)
        pd = delay.p_delay(p)
        pr = p_race(p)
        rows.append(TradeoffRow(slack, p.kappa, pd, pr, weight_delay * pd + weight_race * pr))
    best = min(rows, key=lambda r: (r.objective, r.slack))
    return Tradeoff(tuple(rows), best.slack)
