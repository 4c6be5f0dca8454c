"""Exact discrete distributions: truncated convolutions and the pmfs the models need.

All pmfs are numpy float64 arrays indexed by count. "Truncated at `size`" means only
the entries 0..size-1 are kept: since every variable here is a non-negative count, the
pmf of a sum at values < size depends only on the summands' pmfs at values < size.
Delay events are upper tails {M >= a}, so the lower part 0..a-1 is all we need, and
P(M >= a) = 1 − Σ_{k<a} P(M = k) (absolute accuracy ~1e-15·log(terms)).
"""

from __future__ import annotations

import numpy as np
from scipy import signal, special, stats

# Below this many multiply-adds a direct convolution beats the FFT and is exact to rounding.
_DIRECT_CONV_MAX_WORK = 200_000


def conv_trunc(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """The first `size` entries of a * b (both non-negative pmfs)."""
    a = a[:size]
    b = b[:size]
    if len(a) * len(b) <= _DIRECT_CONV_MAX_WORK or min(len(a), len(b)) <= 32:
        out = np.convolve(a, b)[:size]
    else:
        out = signal.fftconvolve(a, b)[:size]
        np.clip(out, 0.0, None, out=out)  # FFT round-off can dip below zero
    return out


def conv_power_trunc(pmf: np.ndarray, power: int, size: int) -> np.ndarray:
    """The first `size` entries of the `power`-fold self-convolution (square and multiply)."""
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    result = np.zeros(max(size, 1))
    result[0] = 1.0
    result = result[:size]
    base = np.asarray(pmf, dtype=float)[:size]
    p = power
    while p > 0:  # at most log2(power)+1 rounds
        if p & 1:
            result = conv_trunc(result, base, size)
        p >>= 1
        if p:
            base = conv_trunc(base, base, size)
    return result


def log_hypergeom_pmf(total: int, good: int, draws: int, k: np.ndarray) -> np.ndarray:
    """log P(Hypergeom = k) for `draws` draws from `total` items of which `good` are good."""
    k = np.asarray(k, dtype=float)
    bad = total - good
    with np.errstate(invalid="ignore"):
        out = (
            special.gammaln(good + 1)
            - special.gammaln(k + 1)
            - special.gammaln(good - k + 1)
            + special.gammaln(bad + 1)
            - special.gammaln(draws - k + 1)
            - special.gammaln(bad - draws + k + 1)
            - special.gammaln(total + 1)
            + special.gammaln(draws + 1)
            + special.gammaln(total - draws + 1)
        )
    lo = max(0, draws - bad)
    hi = min(draws, good)
    return np.where((k >= lo) & (k <= hi), out, -np.inf)


def hypergeom_pmf(total: int, good: int, draws: int, size: int | None = None) -> np.ndarray:
    """P(X = k), k = 0..min(draws, size-1): good items among `draws` from `total`."""
    top = draws if size is None else min(draws, size - 1)
    k = np.arange(top + 1)
    return np.exp(log_hypergeom_pmf(total, good, draws, k))


# Probabilities below this are treated as 0: scipy's binomial overflows on subnormal p, and
# the change in any probability we report is below n·1e-300.
_TINY_PROB = 1e-300


def binom_pmf(trials: int, p: float, size: int | None = None) -> np.ndarray:
    """P(Bin(trials, p) = k), k = 0..min(trials, size-1)."""
    top = trials if size is None else min(trials, size - 1)
    p = 0.0 if p < _TINY_PROB else p
    return stats.binom.pmf(np.arange(top + 1), trials, p)


def tail_from_lower(lower_pmf: np.ndarray) -> float:
    """P(M >= len(lower_pmf)) from the pmf's first entries."""
    return float(min(1.0, max(0.0, 1.0 - float(np.sum(lower_pmf)))))


def product_of_pmfs(rows: list[np.ndarray], size: int) -> np.ndarray:
    """Truncated pmf of a sum of independent counts (a balanced, batched tree)."""
    if size < 1:
        raise ValueError("size must be >= 1")
    out = np.zeros(size)
    if not rows:
        out[0] = 1.0
        return out
    width = min(size, max(len(r) for r in rows))
    stack = np.zeros((len(rows), width))
    for i, row in enumerate(rows):  # bounded by len(rows)
        row = np.asarray(row, dtype=float)[:width]
        stack[i, : len(row)] = row
    prod = _tree_product(stack, size)
    out[: len(prod)] = prod
    return out


def _tree_product(stack: np.ndarray, size: int) -> np.ndarray:
    """Multiply the rows' generating polynomials pairwise, level by level, truncated."""
    while stack.shape[0] > 1:  # log2(rows) levels
        k, w = stack.shape
        if k % 2:
            unit = np.zeros((1, w))
            unit[0, 0] = 1.0
            stack = np.vstack([stack, unit])
        a, b = stack[0::2], stack[1::2]
        out_w = min(2 * w - 1, size)
        if w <= 16:  # direct convolution, vectorized over rows
            out = np.zeros((a.shape[0], out_w))
            for j in range(w):
                span = min(w, out_w - j)
                if span <= 0:
                    break
                out[:, j : j + span] += a[:, j : j + 1] * b[:, :span]
        else:  # batched FFT convolution
            length = 1 << int(2 * w - 2).bit_length()
            fa = np.fft.rfft(a, length, axis=1)
            fa *= np.fft.rfft(b, length, axis=1)
            out = np.fft.irfft(fa, length, axis=1)[:, :out_w]
            np.clip(out, 0.0, None, out=out)  # FFT round-off can dip below zero
        stack = out
    return stack[0]


def poisson_binomial_lower(miss_probs: np.ndarray, size: int) -> np.ndarray:
    """Truncated pmf of Σ Bernoulli(r_i): equal r_i grouped into binomial factors first."""
    r = np.asarray(miss_probs, dtype=float)
    r = np.where(r < _TINY_PROB, 0.0, r)
    values, counts = np.unique(r, return_counts=True)
    out = np.zeros(size)
    if len(values) > 4096 and counts.max() <= 4:
        # Mostly distinct: one Bernoulli row per bundle, straight into the batched tree.
        prod = _tree_product(np.column_stack([1.0 - r, r])[:, : max(1, min(2, size))], size)
        out[: len(prod)] = prod[:size]
        return out
    width = int(min(size, counts.max() + 1))
    k = np.arange(width)[None, :]
    rows = stats.binom.pmf(k, counts[:, None], values[:, None])  # one binomial factor per value
    prod = _tree_product(rows, size)
    out[: len(prod)] = prod[:size]
    return out


def ratchet_position_pmf(slots: int, beta: float, q: float) -> np.ndarray:
    """pmf of one addressed position's misses over `slots` slots under the ratchet.

    A position is "fresh" (a never-addressed lane: cartel w.p. β, else honest) or "proven"
    (a lane that redeemed last slot, hence honest under withhold-all). A fresh lane misses
    w.p. r = β + (1−β)(1−q), a proven one w.p. 1−q; a miss excludes the lane, so the
    position is fresh next slot; a redemption makes it proven.
    """
    r = beta + (1.0 - beta) * (1.0 - q)
    fresh = np.zeros(slots + 1)
    proven = np.zeros(slots + 1)
    fresh[0] = 1.0
    for _ in range(slots):  # one step per slot
        miss_mass = np.zeros(slots + 1)
        miss_mass[1:] = fresh[:-1] * r + proven[:-1] * (1.0 - q)
        proven = fresh * (1.0 - r) + proven * q
        fresh = miss_mass
    return fresh + proven


def ratchet_position_cartel_rates(slots: int, beta: float, q: float) -> np.ndarray:
    """E[cartel-withheld bundles per position] in each slot 1..slots under the ratchet."""
    r = beta + (1.0 - beta) * (1.0 - q)
    p_fresh = 1.0
    rates = np.zeros(slots)
    for s in range(slots):
        rates[s] = p_fresh * beta
        p_fresh = p_fresh * r + (1.0 - p_fresh) * (1.0 - q)
    return rates


def chernoff_bounds(
    pmf: np.ndarray, copies: int, threshold: int
) -> tuple[float | None, float | None]:
    """Chernoff bounds on P(Σ_{copies} G ≥ threshold) for iid G with the given pmf.

    upper = min_λ≥0 exp(−λ·a + copies·log E e^{λG}), returned when a > copies·E[G];
    lower = 1 − min_λ≥0 exp(λ(a−1) + copies·log E e^{−λG}), returned when a−1 < copies·E[G].
    For a Bernoulli G these are the KL bounds of docs/mechanism.md §3.
    """
    from scipy import optimize

    g = np.arange(len(pmf), dtype=float)
    p = np.asarray(pmf, dtype=float)
    mean_total = copies * float(np.dot(g, p))
    a = float(threshold)
    support = np.nonzero(p > 0)[0]
    g_max = float(support[-1]) if len(support) else 0.0
    g_min = float(support[0]) if len(support) else 0.0

    def log_mgf(lam: float) -> float:
        return float(special.logsumexp(lam * g[support], b=p[support]))

    upper: float | None = None
    if a > mean_total:
        if a > copies * g_max:
            upper = 0.0
        else:
            with np.errstate(all="ignore"):
                res = optimize.minimize_scalar(
                    lambda t: -np.exp(t) * a + copies * log_mgf(np.exp(t)),
                    bounds=(-30.0, 8.0),
                    method="bounded",
                )
            # Any λ gives a valid bound; a failed optimization falls back to the trivial 1.
            upper = float(min(1.0, np.exp(res.fun))) if np.isfinite(res.fun) else 1.0
    lower: float | None = None
    if a - 1.0 < mean_total:
        b = a - 1.0
        if b < copies * g_min:
            lower = 1.0
        else:
            with np.errstate(all="ignore"):
                res = optimize.minimize_scalar(
                    lambda t: np.exp(t) * b + copies * log_mgf(-np.exp(t)),
                    bounds=(-30.0, 8.0),
                    method="bounded",
                )
            fun = float(res.fun) if np.isfinite(res.fun) else 0.0  # trivial bound 0
            lower = float(max(0.0, -np.expm1(min(0.0, fun))))
    return upper, lower
