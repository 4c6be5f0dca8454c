"""Exact delay probabilities under every lane model (docs/mechanism.md §2, §5, §6).

The cartel withholds every bundle addressed to its lanes ("withhold-all"); honest lanes
finalize their bundle in the addressed slot independently with probability q. With
M_h the bundles missing after h slots, the chain has not decoded by slot h iff
S_h = h·m − M_h < κ, i.e. M_h >= a_h := h·m − κ + 1. The delay event is h = t*, where
a = Δ + 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mechanism import dist, tails
from mechanism.params import SednaParams, Strategy

# Bound on the finite-lane ratchet dynamic programme: state transitions summed over slots.
_RATCHET_DP_MAX_WORK = 2_000_000


def threshold(params: SednaParams, slots: int) -> int:
    """a_h = h·m − κ + 1: missing bundles after h slots that leave the chain undecoded."""
    return slots * params.m - params.kappa + 1


def log_behind(params: SednaParams, slots: int) -> float:
    """log P(S_h < κ), computed directly as an upper tail (−inf: impossible)."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    a = threshold(params, slots)
    if a <= 0:  # fewer than κ bundles were ever addressed
        return 0.0
    if params.lanes is not None and params.lanes == params.m:
        # m = N: also under the ratchet, where every lane is addressed and an excluded lane
        # can only be replaced after the exclusions reset, i.e. by itself (§6).
        return _log_behind_all_lanes(params, slots, a)
    if params.ratchet:
        return _log_behind_ratchet(params, slots, a)
    if params.addressing == "fixed":
        return _log_behind_fixed(params, slots, a)
    if params.lanes is None:
        return tails.log_binom_sf(a, slots * params.m, params.r)
    return tails.iid_sum_log_sf(_log_slot_miss_pmf(params), slots, a)


def p_behind(params: SednaParams, slots: int) -> float:
    """P(S_h < κ): the chain has not decoded by the end of slot h = `slots`."""
    return tails.prob(log_behind(params, slots))


def p_delay(params: SednaParams) -> float:
    """P(D) = P(S_{t*} < κ) under the params' lane model and the withhold-all cartel."""
    return p_behind(params, params.t_star)


def p_delay_honest(params: SednaParams) -> float:
    """P(D) when the cartel does not withhold (only honest misses): β set to 0."""
    return p_delay(params.with_(beta=0.0))


def p_delay_binomial(n: int, r: float, slack: int) -> float:
    """P(Bin(n, r) >= Δ+1): the independent-miss model in closed form."""
    return tails.binom_sf(slack + 1, n, r)


def p_delay_all_lanes(kappa: int, lanes: int, cartel: int, q: float) -> float:
    """m = N: P(Bin(t*(N−c), 1−q) >= Δ+1 − t*·c); equals 1 when t*·c >= Δ+1."""
    t_star = -(-kappa // lanes)
    slack = t_star * lanes - kappa
    return tails.binom_sf(slack + 1 - t_star * cartel, t_star * (lanes - cartel), 1.0 - q)


def p_delay_heterogeneous(miss_probs: np.ndarray, kappa: int) -> float:
    """Poisson-binomial: bundle i is missed with probability r_i; P(S < κ), exact.

    n = len(miss_probs) bundles were addressed up to the horizon; the chain is behind iff
    at least n − κ + 1 are missed. The tail is computed directly (tails.poisson_binomial_log_sf).
    """
    r = np.asarray(miss_probs, dtype=float)
    if r.ndim != 1 or len(r) == 0:
        raise ValueError("miss_probs must be a non-empty 1-D array")
    if not (r.min() >= 0.0 and r.max() <= 1.0):  # also rejects NaN
        raise ValueError("every miss probability must be in [0, 1]")
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    a = len(r) - kappa + 1
    if a <= 0:
        return 1.0
    with np.errstate(over="ignore"):
        return tails.prob(tails.poisson_binomial_log_sf(r, a))


def miss_probs_fixed_lanes(q_lanes: np.ndarray, cartel_mask: np.ndarray, t_star: int) -> np.ndarray:
    """Per-bundle miss probabilities for a fixed lane set addressed for t* slots.

    Lane ℓ misses each slot w.p. 1 − q_ℓ if honest and 1 if it is a (withholding) cartel lane.
    """
    q = np.asarray(q_lanes, dtype=float)
    mask = np.asarray(cartel_mask, dtype=bool)
    if q.shape != mask.shape or q.ndim != 1:
        raise ValueError("q_lanes and cartel_mask must be 1-D arrays of equal length")
    per_lane = np.where(mask, 1.0, 1.0 - q)
    return np.tile(per_lane, t_star)


def _log_behind_all_lanes(params: SednaParams, slots: int, a: int) -> float:
    c = params.cartel_lanes or 0
    return tails.log_binom_sf(a - slots * c, slots * (params.m - c), 1.0 - params.q)


def _log_cartel_slot_pmf(params: SednaParams) -> np.ndarray:
    """log pmf of X, the addressed lanes of one slot that are cartel lanes (0..m)."""
    if params.lanes is None:
        return tails.log_binom_pmf(params.m, params.beta)
    return tails.log_hypergeom_pmf(params.lanes, params.cartel_lanes or 0, params.m)


def _cartel_slot_pmf(params: SednaParams, size: int | None = None) -> np.ndarray:
    """pmf of X, the addressed lanes of one slot that are cartel lanes."""
    pmf = np.exp(_log_cartel_slot_pmf(params))
    return pmf if size is None else pmf[:size]


def _log_slot_miss_pmf(params: SednaParams) -> np.ndarray:
    """log pmf of one slot's misses Z = X + Bin(m − X, 1−q) under withhold-all (fresh).

    Honest misses above binom_top(m, 1−q) (probability < e^-760 for every X) are dropped.
    """
    log_x = _log_cartel_slot_pmf(params)
    xs = np.flatnonzero(log_x > tails.NEG_INF)
    miss = 1.0 - params.q
    rows = tails.log_binom_pmf_rows(params.m - xs, miss, tails.binom_top(params.m, miss))
    return tails.log_mix_shifted(log_x[xs], xs, list(rows))


def _log_behind_fixed(params: SednaParams, slots: int, a: int) -> float:
    # The slot-1 cartel holdings X repeat every slot: M = h·X + Bin(h(m − X), 1−q).
    log_x = _log_cartel_slot_pmf(params)
    terms = [
        lx + tails.log_binom_sf(a - slots * x, slots * (params.m - x), 1.0 - params.q)
        for x, lx in enumerate(log_x)
        if lx > tails.NEG_INF
    ]
    return _logsum(terms)


def _logsum(terms: list[float]) -> float:
    live = [t for t in terms if t > tails.NEG_INF]
    if not live:
        return tails.NEG_INF
    top = max(live)
    return min(0.0, top + math.log(sum(math.exp(t - top) for t in live)))


def _log_behind_ratchet(params: SednaParams, slots: int, a: int) -> float:
    d = params.feedback_slots
    if params.lanes is None:
        # Positions evolve independently: M = Σ_{j<=m} G_j, G_j iid (dist.ratchet_position_log_pmf).
        g = dist.ratchet_position_log_pmf(slots, params.beta, params.q, d)
        return tails.iid_sum_log_sf(g, params.m, a)
    if params.q < 1.0:
        raise ValueError(
            "exact ratchet with finite lanes requires q = 1 "
            "(use montecarlo, or mechanism.lanechain for small N)"
        )
    return ratchet_finite_log_behind(params, slots, a)


def ratchet_finite_log_behind(params: SednaParams, slots: int, a: int) -> float:
    """log P(M_h >= a): ratchet with feedback d, N lanes, c cartel lanes, q = 1 (exact DP).

    With q = 1 only cartel lanes miss, and each one is addressed for exactly d consecutive
    slots from its first (withholding) slot, then replaced. State after a slot: the misses
    so far, the addressed cartel lanes by slots left (v_0..v_{d−1}; v_0 are replaced at
    the next slot) and E, the cartel lanes ever addressed. Excluded lanes: E − Σv. The v_0
    replacements come from the never-addressed pool of N − m − excluded lanes holding
    c − E cartel lanes (Hypergeom). States with misses >= a are delayed for good and their
    mass is summed directly (log space). A live state has E <= misses < a, so the pool never
    runs dry when min(c, a − 1) <= N − m; if it would (the reset rule of §6), `ValueError`
    (that case is modelled lane by lane in mechanism.lanechain and the Monte Carlo).
    """
    lanes, m, d = params.lanes, params.m, params.feedback_slots
    if lanes is None:
        raise ValueError("ratchet_finite_log_behind needs finite lanes")
    c = params.cartel_lanes or 0
    delayed: list[float] = []
    states: dict[tuple[int, tuple[int, ...], int], float] = {}
    log_x = tails.log_hypergeom_pmf(lanes, c, m)
    for x, lx in enumerate(log_x):
        if lx == tails.NEG_INF:
            continue
        v = tuple([0] * (d - 1) + [x])
        if x >= a:
            delayed.append(float(lx))
        else:
            states[(x, v, x)] = float(lx)
    work = 0
    for _ in range(slots - 1):  # one transition per slot
        nxt: dict[tuple[int, tuple[int, ...], int], list[float]] = {}
        for (cum, v, exposed), lw in states.items():
            leaving = v[0]
            excluded = exposed - sum(v)
            pool = lanes - m - excluded
            if pool < leaving:
                raise ValueError(
                    f"exact ratchet with finite lanes: the {lanes - m} replacement lanes can run "
                    f"out (cartel={c}); use montecarlo or mechanism.lanechain"
                )
            carried = sum(v[1:])
            for j, lj in _hypergeom_terms(pool, c - exposed, leaving):
                work += 1
                cum2 = cum + carried + j
                if cum2 >= a:
                    delayed.append(lw + lj)
                    continue
                v2 = (*v[1:], j) if d > 1 else (j,)
                nxt.setdefault((cum2, v2, exposed + j), []).append(lw + lj)
        if work > _RATCHET_DP_MAX_WORK:
            raise ValueError("ratchet with finite lanes: parameters too large for the exact DP")
        states = {k: _logsum(v) for k, v in nxt.items()}
    return _logsum(delayed)


def _hypergeom_terms(total: int, good: int, draws: int) -> list[tuple[int, float]]:
    if draws == 0:
        return [(0, 0.0)]
    lp = tails.log_hypergeom_pmf(total, good, draws)
    return [(j, float(v)) for j, v in enumerate(lp) if v > tails.NEG_INF]


@dataclass(frozen=True)
class LagDistribution:
    """Slots the chain decodes after the honest horizon, lag = T_chain − t*.

    tail[ℓ-1] = P(lag >= ℓ) for ℓ = 1..max_lag. The information lead L = T_chain − T_cart
    satisfies L <= lag always (T_cart >= t*), with equality when q = 1 (T_cart = t*).
    expected_lag_truncated = Σ_{ℓ<=max_lag} P(lag >= ℓ) <= E[lag].
    """

    tail: tuple[float, ...]
    expected_lag_truncated: float
    lead_equals_lag: bool


def lag_distribution(params: SednaParams, max_lag: int = 8) -> LagDistribution:
    """P(T_chain >= t* + ℓ) = P(S_{t*+ℓ−1} < κ) for ℓ = 1..max_lag (withhold-all)."""
    if max_lag < 1 or max_lag > 1000:
        raise ValueError(f"max_lag must be in 1..1000, got {max_lag}")
    tail = tuple(p_behind(params, params.t_star + ell - 1) for ell in range(1, max_lag + 1))
    return LagDistribution(
        tail=tail,
        expected_lag_truncated=float(sum(tail)),
        lead_equals_lag=params.q == 1.0,
    )


def expected_withheld_by_slot(params: SednaParams) -> np.ndarray:
    """E[bundles the withhold-all cartel withholds in slot s], s = 1..t*."""
    t = params.t_star
    b = params.beta_eff
    if not params.ratchet or (params.lanes is not None and params.lanes == params.m):
        # Without the ratchet, and with m = N (every lane addressed, exclusions reset at
        # once), every slot's holdings are withheld.
        return np.full(t, params.m * b)
    if params.lanes is None:
        rates = dist.ratchet_position_cartel_rates(
            t, params.beta, params.q, params.feedback_slots
        )
        return params.m * rates
    return _expected_withheld_ratchet_finite(params)


def _expected_withheld_ratchet_finite(params: SednaParams) -> np.ndarray:
    """E[cartel lanes addressed in slot s] for the finite-lane ratchet, q = 1 (the chain
    of `ratchet_finite_log_behind` without the miss count)."""
    lanes, m, t, d = params.lanes, params.m, params.t_star, params.feedback_slots
    assert lanes is not None
    c = params.cartel_lanes or 0
    if params.q < 1.0:
        raise ValueError("exact ratchet with finite lanes requires q = 1 (use montecarlo)")
    states: dict[tuple[tuple[int, ...], int], float] = {}
    for x, px in enumerate(np.exp(tails.log_hypergeom_pmf(lanes, c, m))):
        if px > 0.0:
            states[(tuple([0] * (d - 1) + [x]), x)] = float(px)
    means = np.zeros(t)
    for s in range(t):  # one transition per slot
        means[s] = sum(w * sum(v) for (v, _e), w in states.items())
        if s == t - 1:
            break
        nxt: dict[tuple[tuple[int, ...], int], float] = {}
        for (v, exposed), w in states.items():
            pool = lanes - m - (exposed - sum(v))
            if pool < v[0]:
                raise ValueError(
                    f"exact ratchet with finite lanes: the {lanes - m} replacement lanes can "
                    f"run out (cartel={c}); use montecarlo or mechanism.lanechain"
                )
            for j, lj in _hypergeom_terms(pool, c - exposed, v[0]):
                key = ((*v[1:], j) if d > 1 else (j,), exposed + j)
                nxt[key] = nxt.get(key, 0.0) + w * math.exp(lj)
        states = nxt
    return means


def withheld_by_strategy(
    strategy: Strategy, x: np.ndarray, slot: int, params: SednaParams
) -> np.ndarray:
    """Bundles the cartel withholds in `slot` given its holdings x (elementwise)."""
    t_star = params.t_star
    theta = strategy.threshold if strategy.threshold is not None else params.slack + 1
    kind = strategy.kind
    if kind == "none":
        return np.zeros_like(x)
    if kind == "withhold-all":
        return x
    if kind == "threshold":
        return np.where(x >= theta, x, 0)
    if kind == "last-slot":
        return x if slot >= t_star else np.zeros_like(x)
    if kind == "partial":
        assert strategy.per_slot is not None
        return np.minimum(x, strategy.per_slot)
    # pivot-order: only in slot t*, only when the holdings reach theta
    if slot != t_star:
        return np.zeros_like(x)
    return np.where(x >= theta, theta, 0)


def p_delay_strategy(params: SednaParams, strategy: Strategy) -> float:
    """Exact P(D) for any strategy of `Strategy` under fresh addressing (no ratchet).

    Slots are independent: slot s misses w_s(X_s) withheld bundles plus Bin(m − X_s, 1−q)
    honest misses (a cartel lane that includes always finalizes). P(Σ_s Z_s >= Δ+1) is
    computed directly from the per-slot log pmfs (tails.sum_log_sf).
    """
    if params.ratchet or (params.addressing != "fresh" and params.lanes != params.m):
        raise ValueError("p_delay_strategy covers fresh addressing without the ratchet")
    m = params.m
    log_x = _log_cartel_slot_pmf(params)
    x = np.arange(m + 1)
    honest = [tails.log_binom_pmf(m - xs, 1.0 - params.q) for xs in range(m + 1)]
    parts = []
    for slot in range(1, params.t_star + 1):  # one factor per slot
        w = withheld_by_strategy(strategy, x, slot, params)
        parts.append((tails.log_mix_shifted(log_x, w, honest), 1))
    return tails.prob(tails.sum_log_sf(parts, params.slack + 1))


def p_delay_last_slot_ratchet(params: SednaParams) -> float:
    """Ratchet with q = 1 against the last-slot cartel: the slot-1 lanes are all kept, so
    the cartel holds X_{t*} = X_1 and P(D) = P(X_1 >= Δ+1)."""
    if params.q < 1.0:
        raise ValueError("p_delay_last_slot_ratchet requires q = 1")
    x_pmf = _cartel_slot_pmf(params)
    return float(np.sum(x_pmf[params.slack + 1 :]))
