"""Upper tails computed directly, in log space (docs/mechanism.md §2, "Tails").

A delay probability is an upper tail P(M >= a) of a missing-bundle count. Computing it as
1 − P(M <= a−1) keeps only absolute accuracy (~1e-15): a tail of 1e-14 comes out a few per
cent off and one below 1e-16 comes out 0 or noise. Everything here returns log P(M >= a)
from non-negative terms only, so the relative error stays ~1e-12 down to 1e-300 and below,
and a tail that is impossible (a above the largest value M can take) is exactly −inf
(probability exactly 0).

Sums of independent counts use exponential tilting: with θ chosen so that the tilted mean
is a, every factor's pmf is reweighted by e^{θk} (in log space, so nothing underflows), the
tilted pmfs are convolved (their mass now sits around a, so FFT round-off is small
relative to what is summed), and the tilt is undone term by term:
P(M = k) = e^{−θk} · Π_i Z_i(θ) · P_θ(M = k),  Z_i(θ) = E e^{θ Z_i}.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, signal, special, stats

NEG_INF = -math.inf

# Mass each end-trim of a convolution may drop (relative to the tilted total of 1).
_TRIM = 1e-22
# Direct convolution below this many multiply-adds (exact to rounding, entrywise relative).
_DIRECT_MAX_WORK = 400_000
# The tilted tail mass we want to sum over; a smaller one gets a larger tilt.
_MIN_TILTED_TAIL = 1e-3
_MAX_TILT_STEPS = 60


def lse(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """log Σ exp(x) (along axis), −inf for an all −inf input; a lean scipy.logsumexp."""
    x = np.asarray(x, dtype=float)
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    if axis is None:
        return float(out.reshape(()))
    return np.squeeze(out, axis=axis)


def prob(log_p: float) -> float:
    """exp(log_p) as a probability in [0, 1] (−inf gives exactly 0)."""
    if log_p == NEG_INF:
        return 0.0
    return float(min(1.0, math.exp(min(log_p, 0.0))))


# Log probabilities below this are dropped from long pmfs (e^-760 < 1e-330): an outcome
# that uses such an entry has probability below the smallest double, so no tail >= 1e-300
# changes; tails below ~1e-320 may come out as 0 or as a lower bound.
LOG_NEGLIGIBLE = -760.0

# --------------------------------------------------------------------------- log pmfs


def _from_ratios(log_ratio: np.ndarray, lo: int, hi: int, size: int) -> np.ndarray:
    """A log pmf on lo..hi (−inf elsewhere, length size) from log P(k+1)/P(k), k = lo..hi−1:
    cumulated outward from the largest entry and normalized, so the pmf sums to 1 to
    rounding and each ratio is exact to an ulp (library log pmfs of large arguments can be
    off by ~1e-12 relative, which a t*-fold convolution power multiplies)."""
    out = np.full(size, NEG_INF)
    if hi == lo:
        out[lo] = 0.0
        return out
    steps = np.concatenate(([0.0], np.cumsum(log_ratio)))
    out[lo : hi + 1] = steps
    out[lo : hi + 1] -= lse(steps)
    return out


def log_binom_pmf(trials: int, p: float) -> np.ndarray:
    """log P(Bin(trials, p) = k), k = 0..trials (−inf where impossible)."""
    if trials < 0:
        raise ValueError(f"trials must be >= 0, got {trials}")
    if p <= 0.0:
        out = np.full(trials + 1, NEG_INF)
        out[0] = 0.0
        return out
    if p >= 1.0:
        out = np.full(trials + 1, NEG_INF)
        out[-1] = 0.0
        return out
    k = np.arange(trials, dtype=float)
    log_ratio = np.log((trials - k) / (k + 1.0)) + (math.log(p) - math.log1p(-p))
    return _from_ratios(log_ratio, 0, trials, trials + 1)


def binom_top(trials: int, p: float) -> int:
    """A k with P(Bin(trials, p) > k) < e^LOG_NEGLIGIBLE (the Chernoff bound
    exp(−n·D(k/n ‖ p)) >= the tail, so the k found is large enough)."""
    if p <= 0.0 or trials == 0:
        return 0
    if p >= 1.0:
        return trials

    def log_bound(k: int) -> float:  # log exp(−n D(k/n ‖ p)) for k > np
        x = k / trials
        if x >= 1.0:
            return trials * math.log(p)
        return -trials * (x * math.log(x / p) + (1.0 - x) * math.log((1.0 - x) / (1.0 - p)))

    lo = math.ceil(trials * p)
    if lo >= trials or log_bound(trials) >= LOG_NEGLIGIBLE:
        return trials
    hi = trials
    while hi - lo > 1:  # invariant: bound(hi) < cut; log2(trials) rounds
        mid = (lo + hi) // 2
        if log_bound(mid) < LOG_NEGLIGIBLE:
            hi = mid
        else:
            lo = mid
    return hi


def log_binom_pmf_rows(trials: np.ndarray, p: float, top: int) -> np.ndarray:
    """Rows log P(Bin(trials_i, p) = k), k = 0..top (−inf beyond trials_i)."""
    k = np.arange(top + 1)[None, :]
    n = np.asarray(trials)[:, None]
    if p <= 0.0:
        return np.where(k == 0, 0.0, NEG_INF) + 0.0 * n
    if p >= 1.0:
        return np.where(k == n, 0.0, NEG_INF)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(stats.binom.logpmf(k, n, p), dtype=float)
    out[(k > n) | np.isnan(out)] = NEG_INF
    return out


def log_hypergeom_pmf(total: int, good: int, draws: int) -> np.ndarray:
    """log P(Hypergeom = k), k = 0..draws: good items among `draws` of `total`."""
    if not (0 <= good <= total and 0 <= draws <= total):
        raise ValueError(f"bad hypergeometric parameters ({total}, {good}, {draws})")
    bad = total - good
    lo, hi = max(0, draws - bad), min(draws, good)
    k = np.arange(lo, hi, dtype=float)
    # P(k+1)/P(k) = (good − k)(draws − k) / ((k + 1)(bad − draws + k + 1))
    log_ratio = (
        np.log(good - k) + np.log(draws - k) - np.log(k + 1.0) - np.log(bad - draws + k + 1.0)
    )
    return _from_ratios(log_ratio, lo, hi, draws + 1)


def log_mix_shifted(log_weights: np.ndarray, shifts: np.ndarray, parts: Sequence[np.ndarray]) -> (
    np.ndarray
):
    """log pmf of the mixture Σ_x w_x · (part_x shifted right by shifts[x])."""
    width = max((int(s) + len(p) for s, p in zip(shifts, parts, strict=True)), default=1)
    terms = np.full((len(parts), width), NEG_INF)
    for i, (lw, s, part) in enumerate(zip(log_weights, shifts, parts, strict=True)):
        if lw == NEG_INF:
            continue
        terms[i, int(s) : int(s) + len(part)] = lw + part
    return np.asarray(lse(terms, axis=0), dtype=float)


def log_sf_of_pmf(log_pmf: np.ndarray, a: int) -> float:
    """log Σ_{k>=a} P(k) for an explicit log pmf."""
    if a <= 0:
        a = 0
    tail = log_pmf[a:]
    if len(tail) == 0 or np.all(tail == NEG_INF):
        return NEG_INF
    return float(min(0.0, lse(tail)))


# --------------------------------------------------------------------------- binomial


def log_binom_sf(a: int, trials: int, p: float) -> float:
    """log P(Bin(trials, p) >= a), relative accuracy ~1e-14 (scipy's incomplete beta);
    below the float range it falls back to a log-space sum of the pmf."""
    if a <= 0:
        return 0.0
    if a > trials or p <= 0.0:
        return NEG_INF
    if p >= 1.0:
        return 0.0
    value = float(stats.binom.sf(a - 1, trials, p))
    if value > 1e-300:
        return math.log(value)
    # Below ~1e-300: sum the pmf from a upward in log space (terms fall geometrically
    # past the mode, so 4000 terms past a are far more than enough).
    k = np.arange(a, min(trials, a + 4000) + 1)
    return float(lse(stats.binom.logpmf(k, trials, p)))


def binom_sf(a: int, trials: int, p: float) -> float:
    """P(Bin(trials, p) >= a) (exactly 0 when impossible)."""
    return prob(log_binom_sf(a, trials, p))


# --------------------------------------------------------------------------- tilted sums


def _support(log_pmf: np.ndarray) -> tuple[int, int]:
    idx = np.flatnonzero(log_pmf > NEG_INF)
    if len(idx) == 0:
        raise ValueError("a pmf with no mass")
    return int(idx[0]), int(idx[-1])


def _log_mgf(log_pmf: np.ndarray, theta: float) -> float:
    k = np.arange(len(log_pmf))
    return float(lse(log_pmf + theta * k))


def _tilted(log_pmf: np.ndarray, theta: float) -> np.ndarray:
    k = np.arange(len(log_pmf))
    x = log_pmf + theta * k
    return np.exp(x - lse(x))


def _tilted_mean(parts: Sequence[tuple[np.ndarray, int]], theta: float) -> float:
    total = 0.0
    for log_pmf, copies in parts:
        w = _tilted(log_pmf, theta)
        total += copies * float(np.dot(np.arange(len(w)), w))
    return total


def _conv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) * len(b) <= _DIRECT_MAX_WORK or min(len(a), len(b)) <= 16:
        return np.convolve(a, b)
    out = signal.fftconvolve(a, b)
    np.clip(out, 0.0, None, out=out)  # FFT round-off can dip below zero
    return out


def _trim(pmf: np.ndarray, offset: int, eps: float) -> tuple[np.ndarray, int]:
    """Drop leading and trailing entries whose cumulative mass is <= eps each side."""
    total = float(pmf.sum())
    if total <= 0.0 or eps <= 0.0:
        return pmf, offset
    cum = np.cumsum(pmf)
    lo = int(np.searchsorted(cum, eps * total, side="right"))
    rcum = np.cumsum(pmf[::-1])
    hi = len(pmf) - int(np.searchsorted(rcum, eps * total, side="right"))
    lo = min(lo, max(hi - 1, 0))
    return pmf[lo:hi], offset + lo


Scaled = tuple[np.ndarray, int]  # (pmf entries, value of the first entry)


def _multiply(x: Scaled, y: Scaled, eps: float) -> Scaled:
    return _trim(_conv(x[0], y[0]), x[1] + y[1], eps)


def _power(base: Scaled, copies: int, eps: float) -> Scaled:
    result: Scaled = (np.ones(1), 0)
    power = copies
    while power > 0:  # square and multiply: log2(copies) rounds
        if power & 1:
            result = _multiply(result, base, eps)
        power >>= 1
        if power:
            base = _multiply(base, base, eps)
    return result


def _tilted_tail(
    parts: Sequence[tuple[np.ndarray, int]], a: int, theta: float, eps: float
) -> tuple[float, float, float]:
    """At tilt θ: (log P(M >= a), tilted mass P_θ(M >= a), T = Σ_{k>=a} P_θ(k) e^{−θ(k−a)}).

    Trimming drops <= eps of tilted mass per cut, which moves T by at most that much.
    """
    acc: Scaled = (np.ones(1), 0)
    log_norm = 0.0
    for log_pmf, copies in parts:
        lo, hi = _support(log_pmf)
        w = _tilted(log_pmf[lo : hi + 1], theta)
        acc = _multiply(acc, _power(_trim(w, lo, eps), copies, eps), eps)
        log_norm += copies * _log_mgf(log_pmf, theta)
    pmf, offset = acc
    start = max(0, a - offset)
    if start >= len(pmf):
        return NEG_INF, 0.0, 0.0
    tail = pmf[start:]
    k = np.arange(offset + start, offset + len(pmf))
    with np.errstate(divide="ignore"):
        terms = np.log(tail) - theta * (k - a)
    if np.all(terms == NEG_INF):
        return NEG_INF, 0.0, 0.0
    log_sum = float(lse(terms))
    return log_norm - theta * a + log_sum, float(tail.sum()), math.exp(log_sum)


def sum_log_sf(parts: Sequence[tuple[np.ndarray, int]], a: int) -> float:
    """log P(Σ_i Σ_{copies_i} Z_i >= a) for independent counts with the given log pmfs.

    parts: (log pmf on 0..L_i, copies_i) pairs. Exact up to rounding (no complement), −inf
    when a exceeds the largest possible sum, 0 when a is at most the smallest.
    """
    parts = [(np.asarray(lp, dtype=float), int(c)) for lp, c in parts if int(c) > 0]
    if a <= 0:
        return 0.0
    lo_total = hi_total = 0
    for log_pmf, copies in parts:
        lo, hi = _support(log_pmf)
        lo_total += copies * lo
        hi_total += copies * hi
    if a > hi_total:
        return NEG_INF  # impossible: exactly zero
    if a <= lo_total:
        return 0.0
    if a == hi_total:  # only the all-maximal outcome reaches a
        return float(sum(c * lp[_support(lp)[1]] for lp, c in parts))
    theta = 0.0
    if _tilted_mean(parts, 0.0) < a:
        hi_theta = 1.0
        while _tilted_mean(parts, hi_theta) < a:  # bounded: the mean tends to hi_total > a
            hi_theta *= 2.0
            if hi_theta > 1e6:
                break
        theta = float(
            optimize.brentq(lambda t: _tilted_mean(parts, t) - a, 0.0, hi_theta, xtol=1e-12)
        )
    log_p, mass, weighted = _tilted_tail(parts, a, theta, _TRIM)
    steps = 0
    while mass < _MIN_TILTED_TAIL and steps < _MAX_TILT_STEPS:  # lattice or heavy cases
        theta = theta + max(0.25, theta)
        log_p, mass, weighted = _tilted_tail(parts, a, theta, _TRIM)
        steps += 1
    cuts = 4 * sum(1 + int(c).bit_length() for _, c in parts)
    if weighted <= 0.0 or cuts * _TRIM > 1e-14 * weighted:
        # The weighted tail is small (a lattice gap at a): trimming could matter; redo
        # with cuts scaled to it (or none).
        eps = 1e-17 * weighted / cuts if weighted > 0.0 else 0.0
        log_p, _mass, _weighted = _tilted_tail(parts, a, theta, eps)
    return min(0.0, log_p)


def iid_sum_log_sf(log_pmf: np.ndarray, copies: int, a: int) -> float:
    """log P(Z_1 + … + Z_copies >= a) for iid counts Z with the given log pmf."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    if copies == 0:
        return 0.0 if a <= 0 else NEG_INF
    return sum_log_sf([(log_pmf, copies)], a)


def poisson_binomial_log_sf(miss_probs: np.ndarray, a: int) -> float:
    """log P(Σ Bernoulli(r_i) >= a), directly (docs/mechanism.md §2, "Tails").

    When the complement is large (>= 1e-3) it is 1 − P(M <= a−1) from the exact lower pmf
    (dist.poisson_binomial_lower, absolute error <= ~1e-12). Otherwise every r_i is tilted,
    r_i(θ) = r_i e^θ / (1 − r_i + r_i e^θ), so that Σ r_i(θ) = a, the tilted lower pmf is
    computed on a..a+W−1 with e^{−θW} <= 1e-18, and
    P(M >= a) = Π_i (1 − r_i + r_i e^θ) · Σ_k e^{−θk} P_θ(M = k).
    """
    from mechanism import dist

    r = np.asarray(miss_probs, dtype=float)
    n = len(r)
    if a <= 0:
        return 0.0
    sure = int(np.count_nonzero(r >= 1.0))
    possible = int(np.count_nonzero(r > 0.0))
    if a > possible:
        return NEG_INF
    if a <= sure:
        return 0.0
    lower = dist.poisson_binomial_lower(r, a)
    complement = 1.0 - float(np.sum(lower))
    if complement >= _MIN_TILTED_TAIL:
        return math.log(min(1.0, complement))
    live = r[(r > 0.0) & (r < 1.0)]
    logit = np.log(live) - np.log1p(-live)

    def tilted_mean(theta: float) -> float:
        return sure + float(np.sum(special.expit(theta + logit)))

    hi_theta = 1.0
    while tilted_mean(hi_theta) < a and hi_theta < 4096.0:  # bounded doubling
        hi_theta *= 2.0
    theta = float(optimize.brentq(lambda t: tilted_mean(t) - a, 0.0, hi_theta, xtol=1e-12))
    theta = max(theta, 1e-6)
    tilted = np.where(r >= 1.0, 1.0, 0.0)
    inside = (r > 0.0) & (r < 1.0)
    tilted[inside] = special.expit(theta + logit)
    width = min(n - a + 1, max(2, math.ceil(42.0 / theta)))
    pmf = dist.poisson_binomial_lower(tilted, a + width)[a:]
    k = np.arange(width)
    with np.errstate(divide="ignore"):
        terms = np.log(pmf) - theta * k
    if np.all(terms == NEG_INF):
        return NEG_INF
    # log Π (1 − r + r e^θ) = Σ logaddexp(log(1−r), log r + θ)
    log_norm = float(np.sum(np.logaddexp(np.log1p(-live), np.log(live) + theta))) + sure * theta
    return min(0.0, log_norm - theta * a + float(lse(terms)))
