"""Exact delay probabilities under every lane model (docs/mechanism.md §2, §5, §6).

The cartel withholds every bundle addressed to its lanes ("withhold-all"); honest lanes
finalize their bundle in the addressed slot independently with probability q. With
M_h the bundles missing after h slots, the chain has not decoded by slot h iff
S_h = h·m − M_h < κ, i.e. M_h >= a_h := h·m − κ + 1. The delay event is h = t*, where
a = Δ + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from mechanism import dist
from mechanism.params import SednaParams, Strategy

# Bound on the hypergeometric-ratchet dynamic programme: states x slots.
_RATCHET_DP_MAX_WORK = 20_000_000


def threshold(params: SednaParams, slots: int) -> int:
    """a_h = h·m − κ + 1: missing bundles after h slots that leave the chain undecoded."""
    return slots * params.m - params.kappa + 1


def p_behind(params: SednaParams, slots: int) -> float:
    """P(S_h < κ): the chain has not decoded by the end of slot h = `slots`."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    a = threshold(params, slots)
    if a <= 0:  # fewer than κ bundles were ever addressed
        return 1.0
    if params.ratchet:
        return _behind_ratchet(params, slots, a)
    if params.lanes is not None and params.lanes == params.m:
        return _behind_all_lanes(params, slots, a)
    if params.addressing == "fixed":
        return _behind_fixed(params, slots, a)
    if params.lanes is None:
        return float(stats.binom.sf(a - 1, slots * params.m, params.r))
    return _behind_fresh_hypergeometric(params, slots, a)


def p_delay(params: SednaParams) -> float:
    """P(D) = P(S_{t*} < κ) under the params' lane model and the withhold-all cartel."""
    return p_behind(params, params.t_star)


def p_delay_honest(params: SednaParams) -> float:
    """P(D) when the cartel does not withhold (only honest misses): β set to 0."""
    return p_delay(params.with_(beta=0.0))


def p_delay_binomial(n: int, r: float, slack: int) -> float:
    """P(Bin(n, r) >= Δ+1): the independent-miss model in closed form."""
    return float(stats.binom.sf(slack, n, r))


def p_delay_all_lanes(kappa: int, lanes: int, cartel: int, q: float) -> float:
    """m = N: P(Bin(t*(N−c), 1−q) >= Δ+1 − t*·c); equals 1 when t*·c >= Δ+1."""
    t_star = -(-kappa // lanes)
    slack = t_star * lanes - kappa
    return float(stats.binom.sf(slack - t_star * cartel, t_star * (lanes - cartel), 1.0 - q))


def p_delay_heterogeneous(miss_probs: np.ndarray, kappa: int) -> float:
    """Poisson-binomial: bundle i is missed with probability r_i; P(S < κ), exact.

    n = len(miss_probs) bundles were addressed up to the horizon; the chain is behind iff
    at least n − κ + 1 are missed.
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
    return dist.tail_from_lower(dist.poisson_binomial_lower(r, a))


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


def _behind_all_lanes(params: SednaParams, slots: int, a: int) -> float:
    c = params.cartel_lanes or 0
    n_lanes = params.m
    if params.ratchet and params.q < 1.0:
        raise ValueError("exact ratchet with m = lanes requires q = 1 (use montecarlo)")
    return float(stats.binom.sf(a - 1 - slots * c, slots * (n_lanes - c), 1.0 - params.q))


def _cartel_slot_pmf(params: SednaParams, size: int | None = None) -> np.ndarray:
    """pmf of X, the addressed lanes of one slot that are cartel lanes."""
    if params.lanes is None:
        return dist.binom_pmf(params.m, params.beta, size)
    c = params.cartel_lanes or 0
    return dist.hypergeom_pmf(params.lanes, c, params.m, size)


def _behind_fresh_hypergeometric(params: SednaParams, slots: int, a: int) -> float:
    # M = X + Bin(h·m − X, 1−q) with X = Σ_s X_s, X_s ~ Hypergeom(N, c, m) iid.
    x_pmf = dist.conv_power_trunc(_cartel_slot_pmf(params, a), slots, a)
    x = np.arange(len(x_pmf))
    honest_ok = stats.binom.cdf(a - 1 - x, slots * params.m - x, 1.0 - params.q)
    return float(min(1.0, max(0.0, 1.0 - float(np.dot(x_pmf, honest_ok)))))


def _behind_fixed(params: SednaParams, slots: int, a: int) -> float:
    # The slot-1 cartel holdings X repeat every slot: M = h·X + Bin(h(m − X), 1−q).
    x_pmf = _cartel_slot_pmf(params)
    x = np.arange(len(x_pmf))
    tail = stats.binom.sf(a - 1 - slots * x, slots * (params.m - x), 1.0 - params.q)
    return float(min(1.0, float(np.dot(x_pmf, tail))))


def _behind_ratchet(params: SednaParams, slots: int, a: int) -> float:
    if params.lanes is None:
        # Positions evolve independently: M = Σ_{j<=m} G_j, G_j iid (dist.ratchet_position_pmf).
        g = dist.ratchet_position_pmf(slots, params.beta, params.q)
        return dist.tail_from_lower(dist.conv_power_trunc(g, params.m, a))
    if params.lanes == params.m:
        # No lane is left to replace an excluded one; with q = 1 the counts equal m = N.
        return _behind_all_lanes(params, slots, a)
    if params.q < 1.0:
        raise ValueError("exact ratchet with finite lanes requires q = 1 (use montecarlo)")
    return dist.tail_from_lower(ratchet_hypergeometric_lower(params, slots, a))


def ratchet_hypergeometric_lower(params: SednaParams, slots: int, size: int) -> np.ndarray:
    """pmf of the missing count M_h at values < size: ratchet, N lanes, c cartel, q = 1.

    State after slot s: (cum_{s-1}, x_s). The x_s excluded lanes are replaced for slot s+1
    by never-addressed lanes: a pool of N − m − cum_{s-1} lanes of which c − cum_s are cartel
    lanes (each cartel lane is exposed, and withholds, exactly once). States with
    cum >= size are delayed for good and dropped.
    """
    lanes, m = params.lanes, params.m
    if lanes is None:
        raise ValueError("ratchet_hypergeometric_lower needs finite lanes")
    c = params.cartel_lanes or 0
    if lanes - m < size - 1:  # the replacement pool must never run dry in a live state
        raise ValueError(
            f"ratchet with finite lanes needs lanes - m >= {size - 1} replacement lanes "
            f"(got lanes={lanes}, m={m})"
        )
    width = min(m, size - 1) + 1
    if size * width * width * slots > _RATCHET_DP_MAX_WORK:
        raise ValueError("ratchet with finite lanes: parameters too large for the exact DP")
    state = np.zeros((size, width))
    state[0, :] = dist.hypergeom_pmf(lanes, c, m, width)[:width]
    for _ in range(slots - 1):  # one transition per slot
        nxt = np.zeros_like(state)
        for prev in range(size):
            for x in range(min(width - 1, size - 1 - prev) + 1):
                w = state[prev, x]
                if w == 0.0:
                    continue
                cum = prev + x
                if x == 0:
                    nxt[cum, 0] += w
                    continue
                top = min(x, size - 1 - cum)
                if top < 0:
                    continue
                k = np.arange(top + 1)
                pmf = np.exp(dist.log_hypergeom_pmf(lanes - m - prev, c - cum, x, k))
                nxt[cum, : top + 1] += w * pmf
        state = nxt
    lower = np.zeros(size)
    for prev in range(size):
        for x in range(min(width - 1, size - 1 - prev) + 1):
            lower[prev + x] += state[prev, x]
    return lower


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
    if not params.ratchet:
        return np.full(t, params.m * b)
    if params.lanes is None:
        return params.m * dist.ratchet_position_cartel_rates(t, params.beta, params.q)
    if params.lanes == params.m:
        out = np.zeros(t)
        out[0] = float(params.cartel_lanes or 0)
        return out
    return _expected_withheld_ratchet_hypergeometric(params)


def _expected_withheld_ratchet_hypergeometric(params: SednaParams) -> np.ndarray:
    # E[x_{s+1} | prev, x] = x·(c − cum)/(N − m − prev); iterate the full (untruncated) chain.
    lanes, m, t = params.lanes, params.m, params.t_star
    assert lanes is not None
    c = params.cartel_lanes or 0
    if params.q < 1.0:
        raise ValueError("exact ratchet with finite lanes requires q = 1 (use montecarlo)")
    size = min(c, t * m) + 1
    if lanes - m < size - 1:
        raise ValueError(
            f"ratchet with finite lanes needs lanes - m >= {size - 1} replacement lanes "
            f"(got lanes={lanes}, m={m})"
        )
    width = min(m, c) + 1
    state = np.zeros((size, width))
    state[0, :] = dist.hypergeom_pmf(lanes, c, m, width)[:width]
    means = np.zeros(t)
    for s in range(t):  # one transition per slot
        means[s] = float(np.dot(state.sum(axis=0), np.arange(width)))
        if s == t - 1:
            break
        nxt = np.zeros_like(state)
        for prev in range(size):
            for x in range(width):
                w = state[prev, x]
                if w == 0.0:
                    continue
                cum = prev + x
                k = np.arange(x + 1)
                pmf = np.exp(dist.log_hypergeom_pmf(lanes - m - prev, c - cum, x, k))
                nxt[cum, : x + 1] += w * pmf
        state = nxt
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
    honest misses (a cartel lane that includes always finalizes). M = Σ_s, truncated
    convolution over the t* slots.
    """
    if params.ratchet or (params.addressing != "fresh" and params.lanes != params.m):
        raise ValueError("p_delay_strategy covers fresh addressing without the ratchet")
    a = params.slack + 1
    m = params.m
    x_pmf = _cartel_slot_pmf(params)
    x = np.arange(len(x_pmf))
    total = np.zeros(a)
    total[0] = 1.0
    for slot in range(1, params.t_star + 1):  # one factor per slot
        w = withheld_by_strategy(strategy, x, slot, params)
        slot_pmf = np.zeros(m + 1)
        for xs, px in enumerate(x_pmf):  # mixture over the slot's cartel count
            if px == 0.0:
                continue
            honest = dist.binom_pmf(m - xs, 1.0 - params.q)
            slot_pmf[w[xs] : w[xs] + len(honest)] += px * honest
        total = dist.conv_trunc(total, slot_pmf, a)
    return dist.tail_from_lower(total)


def p_delay_last_slot_ratchet(params: SednaParams) -> float:
    """Ratchet with q = 1 against the last-slot cartel: the slot-1 lanes are all kept, so
    the cartel holds X_{t*} = X_1 and P(D) = P(X_1 >= Δ+1)."""
    if params.q < 1.0:
        raise ValueError("p_delay_last_slot_ratchet requires q = 1")
    x_pmf = _cartel_slot_pmf(params)
    return float(np.sum(x_pmf[params.slack + 1 :]))
