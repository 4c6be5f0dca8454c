"""Exact discrete distributions: truncated convolutions and the pmfs the models need.

All pmfs are numpy float64 arrays indexed by count. "Truncated at `size`" means only
the entries 0..size-1 are kept: since every variable here is a non-negative count, the
pmf of a sum at values < size depends only on the summands' pmfs at values < size.
Delay events are upper tails {M >= a}, so the lower part 0..a-1 is all we need, and
P(M >= a) = 1 − Σ_{k<a} P(M = k) (absolute accuracy ~1e-15·log(terms)).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
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
    stack = np.zeros((width, len(rows)))
    for i, row in enumerate(rows):  # bounded by len(rows)
        row = np.asarray(row, dtype=float)[:width]
        stack[: len(row), i] = row
    prod = _tree_product(stack, size, trim_eps=0.0)
    out[: len(prod)] = prod
    return out


# Poisson-binomial numerics (docs/mechanism.md §2, "Poisson-binomial algorithm").
# Total probability mass the tree may drop by cutting rows' negligible upper tails.
_TRIM_BUDGET = 1e-16
# Tree levels whose rows are at most this wide convolve directly, wider ones by batched FFT.
_TREE_DIRECT_MAX_WIDTH = 8
# Log-series path: most power sums, bound on each dropped series tail, the largest a-priori
# error bound accepted, and the most work for its final convolution.
_SERIES_MAX_TERMS = 40
_SERIES_TAIL = 1e-17
_SERIES_MAX_ERROR = 1e-12
_SERIES_MAX_L1 = 1e3  # largest Σ_k |h_k| (the correction's cancellation) accepted
_SERIES_MAX_CORRECTION = 4096  # longest correction h (a Python recurrence)
_SERIES_MAX_WORK = 50_000_000  # multiply-adds of the direct Poisson ⊛ h convolution
# When the series refuses the whole sum, value bins (_BLOCK_BINS of them) are joined into
# at most _SERIES_MAX_BLOCKS blocks with Σ w·ρ² <= _BLOCK_RHO2 each (the series' error
# bound grows like exp(Σ w·ρ²), and the blocks' bounds add up).
_BLOCK_RHO2 = 1.0
_SERIES_MAX_BLOCKS = 64
_BLOCK_BINS = 4096
_UNIT_ROUNDOFF = 2.0**-53
# Inputs at least this long are scanned for a repeating (lane-per-slot) layout or runs.
_GROUP_SCAN_MIN = 4096
_CHUNK = 32_768  # power sums are accumulated over cache-sized chunks of the input


def poisson_binomial_lower(miss_probs: np.ndarray, size: int) -> np.ndarray:
    """Truncated pmf (entries 0..size-1) of Σ Bernoulli(r_i), exact up to rounding.

    r_i = 1 shift the pmf, r_i = 0 drop out, equal r_i are grouped when that is cheap. The
    whole sum goes to the log-series path (`_series_lower`) when its a-priori error bound
    is <= 1e-12; otherwise value blocks of small r_i go to it and the rest to a batched tree
    of truncated binomial rows (`_blocked_lower`). Cut tails drop <= ~2e-16 of mass.
    """
    if size < 1:
        raise ValueError("size must be >= 1")
    r = np.asarray(miss_probs, dtype=float).ravel()
    out = np.zeros(size)
    values, counts = _group_equal(r)
    if counts is None:  # no cheap grouping: bundles stay individual rows
        forced = int(np.count_nonzero(values >= 1.0))
        if forced or values.min() < _TINY_PROB:
            values = values[(values >= _TINY_PROB) & (values < 1.0)]
        weights = None
    else:
        forced = int(counts[values >= 1.0].sum())
        live = (values >= _TINY_PROB) & (values < 1.0)
        values, weights = values[live], counts[live]
    if forced >= size:  # at least `size` sure misses: nothing below size
        return out
    sub = size - forced
    if len(values) == 0:
        out[forced] = 1.0
        return out
    mean = float(np.sum(values) if weights is None else np.dot(values, weights))
    if _poisson_lower_tail_bound(mean, sub - 1) <= _TRIM_BUDGET:
        return out  # P(M <= sub−1) is below the trimming budget: nothing left to compute
    square_sum = float(np.dot(values, values) if weights is None else np.dot(weights, values**2))
    # Skip the whole-sum series when its bound would surely be too large: the bound is at
    # least e^{Σ w·r²}·(2·E|K − mode| + ...)·u for K ~ Poisson(>= mean); this estimate
    # only decides which exact path runs first.
    hopeless = (
        np.exp(min(square_sum, 700.0)) * (1.8 * np.sqrt(2.0 * mean / np.pi) + 10.0) * _UNIT_ROUNDOFF
    )
    series = None
    if hopeless <= _SERIES_MAX_ERROR:
        series = _series_lower(values, weights, sub, square_sum=square_sum)
    lower = series[0] if series is not None else _blocked_lower(values, weights, sub)
    out[forced : forced + len(lower)] = lower[:sub]
    return out


def _poisson_lower_tail_bound(mean: float, x: int) -> float:
    """Chernoff bound on P(X <= x) for a Poisson-binomial X of this mean (1 when x >= mean):
    E e^{−λX} <= exp(−mean(1 − e^{−λ})) gives P(X <= x) <= e^{−mean}(e·mean/x)^x."""
    if x >= mean:
        return 1.0
    if x <= 0:
        return float(np.exp(-mean))
    return float(np.exp(x - mean + x * np.log(mean / x)))


def _blocked_lower(values: np.ndarray, weights: np.ndarray | None, size: int) -> np.ndarray:
    """Series blocks for the small r_i, the binomial tree for the rest, then their product.

    The r_i < 1/2 are binned by value (_BLOCK_BINS equal bins); runs of consecutive bins
    with Σ w·ρ² <= _BLOCK_RHO2 form at most _SERIES_MAX_BLOCKS blocks, each by the series
    while the sum of their error bounds stays <= _SERIES_MAX_ERROR (no sort needed). Bins
    that are too heavy, bins past the last block and refused blocks go to the tree.
    """
    r_max = float(values.max())
    top = min(r_max, 0.5)
    rho = values / (1.0 - values)
    bins = np.minimum((values * (_BLOCK_BINS / top)).astype(np.int64), _BLOCK_BINS - 1)
    bins[values >= 0.5] = _BLOCK_BINS  # ρ >= 1: never in a block
    sq = rho * rho if weights is None else weights * rho * rho
    bin_sq = np.bincount(bins, weights=sq, minlength=_BLOCK_BINS + 1)[:_BLOCK_BINS]
    filled = np.flatnonzero(np.bincount(bins, minlength=_BLOCK_BINS + 1)[:_BLOCK_BINS])
    block_of_bin = np.full(_BLOCK_BINS + 1, -1, dtype=np.int64)
    block_top: list[float] = []  # upper edge of each block's last bin: an upper bound on r
    cum = np.cumsum(bin_sq[filled])
    start = 0
    while start < len(filled) and len(block_top) < _SERIES_MAX_BLOCKS:  # bounded by bins
        before = float(cum[start - 1]) if start else 0.0
        end = int(np.searchsorted(cum, before + _BLOCK_RHO2, side="right"))
        if end <= start:  # this bin alone is too heavy: the tree takes it
            start += 1
            continue
        block_of_bin[filled[start:end]] = len(block_top)
        block_top.append(min(top, (int(filled[end - 1]) + 1) * top / _BLOCK_BINS))
        start = end
    n_blocks = len(block_top)
    rows: list[np.ndarray] = []
    means: list[float] = []
    rest = np.ones(len(values), dtype=bool)
    if n_blocks:
        block_of_bin[block_of_bin < 0] = n_blocks  # outside every block: sorted last
        block_id = block_of_bin.astype(np.uint8)[bins]  # n_blocks <= 64: a radix sort
        order = np.argsort(block_id, kind="stable")
        sizes = np.bincount(block_id, minlength=n_blocks + 1)
        starts = np.concatenate(([0], np.cumsum(sizes[:n_blocks])))
        values, rho = values[order], rho[order]
        weights = None if weights is None else weights[order]
        certified = _series_blocks(
            values, weights, starts, np.array(block_top), size, _SERIES_MAX_ERROR, rho
        )
        mass = values if weights is None else weights * values
        block_mean = _block_sums(mass, starts)
        for b, (row, _bound) in certified.items():  # at most _SERIES_MAX_BLOCKS
            rows.append(row)
            means.append(float(block_mean[b]))
            rest[starts[b] : starts[b + 1]] = False
    out = np.zeros(size)
    out[0] = 1.0
    if rows:  # the blocks' rows are narrow (their means are small): one batched tree
        eps = _TRIM_BUDGET / (4 * len(rows) + 64)
        prod = _tree_product(np.column_stack(rows), size, trim_eps=eps, means=np.array(means))
        out[:] = 0.0
        out[: len(prod)] = prod
    if np.any(rest):  # the tree's row can be wide: one truncated convolution
        if weights is None:
            tree_values, tree_counts = np.unique(values[rest], return_counts=True)
        else:
            tree_values, tree_counts = values[rest], weights[rest]
        tree_row = _binomial_tree_lower(tree_values, tree_counts, size)
        out = tree_row if not rows else _conv_lower(out, tree_row, size)
    return out


def _conv_lower(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """conv_trunc of two lower pmfs, padded back to `size` entries."""
    out = np.zeros(size)
    prod = conv_trunc(a, b, size)
    out[: len(prod)] = prod
    return out


def _group_equal(r: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, counts) of equal entries when found cheaply, else (r, None).

    Short inputs are sorted; long ones are checked for a repeating period (lanes × slots,
    as `miss_probs_fixed_lanes` builds) and for long runs (slot-major per lane).
    """
    n = len(r)
    if n < _GROUP_SCAN_MIN:
        return np.unique(r, return_counts=True)
    period = _find_period(r)
    if period is not None:
        values, counts = np.unique(r[:period], return_counts=True)
        return values, counts * (n // period)
    head = r[:_GROUP_SCAN_MIN]
    if np.count_nonzero(head[1:] == head[:-1]) < len(head) // 2:
        return r, None  # the start has few runs: assume none (grouping is only a speed-up)
    change = np.flatnonzero(r[1:] != r[:-1])
    if len(change) + 1 <= n // 8:  # long runs: group the runs
        starts = np.concatenate(([0], change + 1))
        lengths = np.diff(np.append(starts, n))
        values, inverse = np.unique(r[starts], return_inverse=True)
        return values, np.bincount(inverse, weights=lengths).astype(np.int64)
    return r, None


def _find_period(r: np.ndarray, max_tries: int = 4) -> int | None:
    """The smallest p < n tried with r[i+p] == r[i] for all i and p | n, or None."""
    n = len(r)
    candidates = np.flatnonzero(r[1 : n // 2 + 1] == r[0]) + 1
    tried = 0
    for p in candidates[: 16 * max_tries]:  # bounded number of O(n) checks
        p = int(p)
        if n % p:
            continue
        tried += 1
        if np.array_equal(r[p:], r[:-p]):
            return p
        if tried >= max_tries:
            break
    return None


def _series_lower(
    values: np.ndarray,
    weights: np.ndarray | None,
    size: int,
    max_error: float = _SERIES_MAX_ERROR,
    square_sum: float | None = None,
) -> tuple[np.ndarray, float] | None:
    """(lower pmf, its error bound) of the whole sum by the series, or None (refused).
    square_sum, if given, is Σ w·r² (saves a pass)."""
    r_max = np.array([float(values.max())])
    squares = None if square_sum is None else np.array([square_sum])
    return _series_blocks(values, weights, None, r_max, size, max_error, square_sums=squares).get(0)


def _series_blocks(
    values: np.ndarray,
    weights: np.ndarray | None,
    starts: np.ndarray | None,
    r_max: np.ndarray,
    size: int,
    budget: float,
    rho: np.ndarray | None = None,
    square_sums: np.ndarray | None = None,
) -> dict[int, tuple[np.ndarray, float]]:
    """{block: (lower pmf, error bound)} for the blocks the series certifies, in order
    while the bounds sum to <= budget (docs/mechanism.md §2).

    Block b is entries starts[b]..starts[b+1]−1 (None: one block of all entries; entries
    from starts[-1] on are in none); r_max[b] bounds the block's r_i from above; rho
    (r/(1−r)) and square_sums (Σ w·r² per block) may be passed in when already known.

    With ρ = r/(1−r) and power sums P_j = Σ w_i ρ_i^j, a block's pgf Π(1−r_i+r_i z) is
    exp(A(z) − A(1)), A(z) = Σ_j (−1)^{j+1} P_j z^j / j (cut after J terms). Split off
    j = 1: exp(P_1(z−1)) is the Poisson(P_1) pgf and h = exp(R(z) − R(1)), R = Σ_{j>=2},
    a short signed correction from k·h_k = Σ_j j·a_j·h_{k−j}. The bound adds up every
    truncation and rounding error (ℓ1); it grows like exp(Σ w·ρ²), so blocks far from
    Poisson-like are refused. All blocks are computed together, one numpy op per step.
    """
    if square_sums is None:
        squares = values * values if weights is None else weights * values * values
        square_sums = _block_sums(squares, starts)
    if weights is not None:
        counts = _block_sums(weights.astype(float), starts)
    elif starts is None:
        counts = np.array([float(len(values))])
    else:
        counts = np.diff(starts).astype(float)
    live = (r_max < 0.5) & (square_sums <= np.log(_SERIES_MAX_L1))
    # (Σ w·r² <= P_2 and the bound h_l1 below is >= e^{P_2}: a one-pass early refusal.)
    if not np.any(live):
        return {}
    r_max = np.where(live, r_max, 0.0)  # refused blocks: keep the arithmetic finite
    rho_max = r_max / (1.0 - r_max)
    # A priori P_J <= n·ρ_max^J, so J terms suffice once n·ρ_max^{J+1} <= tail·(1−ρ_max).
    with np.errstate(divide="ignore"):
        need = np.log(_SERIES_TAIL * (1.0 - rho_max) / counts) / np.log(rho_max)
    need = np.where(rho_max > 0.0, np.ceil(need), 1.0)
    live &= need <= _SERIES_MAX_TERMS
    if not np.any(live):
        return {}
    terms = int(max(1.0, float(need[live].max())))
    sums = _power_sums(values, weights, starts, terms, rho)  # (blocks, terms)
    j = np.arange(1, terms + 1)
    series_tail = sums[:, -1] * rho_max / ((terms + 1) * (1.0 - rho_max))
    live &= series_tail <= _SERIES_TAIL
    coef = np.where(j % 2 == 1, 1.0, -1.0) * sums  # j·a_j
    rest_at_1 = np.sum(coef[:, 1:] / j[1:], axis=1)  # R(1)
    abs_at_1 = np.sum(sums[:, 1:] / j[1:], axis=1)  # |R|(1)
    with np.errstate(over="ignore"):
        h0 = np.exp(-rest_at_1)
        h_l1 = np.exp(abs_at_1 - rest_at_1)  # Σ_k |h_k| <= h0·e^{|R|(1)}
    live &= h_l1 <= _SERIES_MAX_L1
    lengths = np.minimum(_correction_lengths(sums, h0, _SERIES_TAIL), size)
    live &= lengths <= _SERIES_MAX_CORRECTION
    idx = np.flatnonzero(live)
    if len(idx) == 0:
        return {}
    length = int(lengths[idx].max())
    if length * size > _SERIES_MAX_WORK:
        return {}
    h, h_err = _corrections(coef[idx], h0[idx], length)
    pois, pois_err = _poisson_rows(sums[idx, 0], size, _SERIES_TAIL)
    bound = (
        np.expm1(series_tail[idx])
        + _SERIES_TAIL  # h beyond its length
        + h_err
        + length * _UNIT_ROUNDOFF * h_l1[idx] / (1.0 - length * _UNIT_ROUNDOFF)  # Poisson ⊛ h
        + pois_err * h_l1[idx]
    )
    rows: dict[int, tuple[np.ndarray, float]] = {}
    for col, block in enumerate(idx):  # at most _SERIES_MAX_BLOCKS
        if bound[col] > budget:
            continue
        budget -= float(bound[col])
        row = np.zeros(size)
        product = np.convolve(pois[col], h[:, col])[:size]
        row[: len(product)] = np.clip(product, 0.0, None)  # negative entries are round-off
        rows[int(block)] = (row, float(bound[col]))
    return rows


def _block_sums(x: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    """Σ x_i over each non-empty block starts[b]..starts[b+1]−1 (None: all of x)."""
    if starts is None:
        return np.array([float(np.sum(x))])
    return np.add.reduceat(x[: starts[-1]], starts[:-1])


def _power_sums(
    values: np.ndarray,
    weights: np.ndarray | None,
    starts: np.ndarray | None,
    terms: int,
    rho: np.ndarray | None = None,
) -> np.ndarray:
    """P_j = Σ w_i ρ_i^j per block, j = 1..terms, as a (blocks, terms) array.

    One block: accumulated over cache-sized chunks of the input (faster for 10^6 entries).
    """
    sums = np.zeros((1 if starts is None else len(starts) - 1, terms))
    if starts is None:
        for start in range(0, len(values), _CHUNK):  # cache-sized chunks
            v = values[start : start + _CHUNK]
            rho = v / (1.0 - v)
            power = rho.copy() if weights is None else rho * weights[start : start + _CHUNK]
            for j in range(terms):  # bounded by _SERIES_MAX_TERMS
                sums[0, j] += float(power.sum())
                power *= rho
        return sums
    if rho is None:
        rho = values / (1.0 - values)
    power = rho.copy() if weights is None else rho * weights
    for j in range(terms):  # bounded by _SERIES_MAX_TERMS
        sums[:, j] = _block_sums(power, starts)
        power *= rho
    return sums


def _correction_lengths(sums: np.ndarray, h0: np.ndarray, tail: float) -> np.ndarray:
    """Per block, d with Σ_{k>=d} |h_k| <= tail: |h_k| <= m_k, the coefficients of
    h0·exp(|R|(z)), and Σ_{k>=d} m_k <= t^{−d}·h0·exp(|R|(t)) for all t >= 1 (best t of
    the grid 2^1..2^39)."""
    if sums.shape[1] < 2:
        return np.ones(len(sums), dtype=np.int64)  # R = 0: h = (h0)
    j = np.arange(2, sums.shape[1] + 1)
    log_t = np.log(2.0) * np.arange(1, 40)[:, None]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log_terms = np.log(sums[:, None, 1:]) + j * log_t - np.log(j)  # log(P_j t^j / j)
        top = np.max(log_terms, axis=2, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)  # all P_j = 0: |R| = 0
        log_abs_r = top[..., 0] + np.log(np.sum(np.exp(log_terms - top), axis=2))
        need = (np.log(h0)[:, None] + np.exp(log_abs_r) - np.log(tail)) / log_t[:, 0]
        best = np.nanmin(np.where(np.isnan(need), np.inf, need), axis=1)
    best = np.where(np.isfinite(best), np.maximum(1.0, np.ceil(best)), 2.0**62)
    return best.astype(np.int64)


def _corrections(coef: np.ndarray, h0: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns h_0..h_{length−1} of h0·exp(R(z)), R = Σ_{j>=2} coef_j z^j / j, per block,
    and per block a running bound on Σ_k |computed h_k − h_k| (each step's rounding,
    propagated through |coef|; first order)."""
    terms = coef.shape[1]
    step = (terms + 2) * _UNIT_ROUNDOFF  # a (J−1)-term sum and a division
    c_rev = coef[:, :0:-1].T.copy()  # rows c_J..c_2
    a_rev = np.abs(c_rev)
    h = np.zeros((length, len(h0)))
    absh = np.zeros_like(h)
    err = np.zeros_like(h)
    h[0] = h0
    absh[0] = np.abs(h0)
    for k in range(2, length):  # h_1 = 0 (R has no z term); bounded by the caller
        lo = max(0, k - terms)
        used = k - 1 - lo  # window rows lo..k−2 pair with c_{k−lo}..c_2
        cw, aw = c_rev[terms - 1 - used :], a_rev[terms - 1 - used :]
        s = np.sum(cw * h[lo : k - 1], axis=0)
        h[k] = s / k
        absh[k] = np.abs(h[k])
        err[k] = (
            np.sum(aw * err[lo : k - 1], axis=0) + step * np.sum(aw * absh[lo : k - 1], axis=0)
        ) / k
    return h, err.sum(axis=0)


def _poisson_rows(means: np.ndarray, size: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Poisson(mean_b) pmfs at 0..min(size, width)−1 as rows, and each row's ℓ1 error bound.

    Ratios mean/k are multiplied outward from each mode (every partial product is <= 1)
    up to the largest Chernoff width (mass beyond <= eps), then normalized by their sum: no
    gamma functions; relative error <= (2|k − mode| + 2·log2(width) + 4) roundings.
    """
    width = max(2, max(_chernoff_width(float(mu), eps) for mu in means))
    mode = np.floor(means)[:, None]
    i = np.arange(width - 1, dtype=float)[None, :]
    ratio = means[:, None] / (i + 1.0)  # P(i+1)/P(i)
    below = i < mode
    rows = np.ones((len(means), width))
    rows[:, 1:] = np.cumprod(np.where(below, 1.0, ratio), axis=1)  # Π_{mode<=i<k} ratio_i
    down = np.where(below, 1.0 / np.where(below, ratio, 1.0), 1.0)
    rows[:, :-1] *= np.cumprod(down[:, ::-1], axis=1)[:, ::-1]  # Π_{k<=i<mode} 1/ratio_i
    total = rows.sum(axis=1)  # contiguous rows: pairwise summation
    spread = np.sum(np.abs(np.arange(width) - mode) * rows, axis=1) / total
    error = (2.0 * spread + 2.0 * np.log2(width) + 4.0) * _UNIT_ROUNDOFF + 2.0 * eps
    return rows[:, :size] / total[:, None], error


def _chernoff_width(mean: float, eps: float) -> int:
    """Smallest w > mean with e^{−mean}(e·mean/w)^w <= eps, which bounds P(X >= w) for any
    binomial (or Poisson-binomial) X of that mean."""
    if mean <= 0.0:
        return 1
    target = -np.log(eps)
    lo, hi = mean, np.e**2 * mean + target + 1.0  # f(hi) >= 0 (see docs)
    for _ in range(100):  # bisection on f(w) = w·(ln(w/mean) − 1) + mean − ln(1/eps)
        mid = 0.5 * (lo + hi)
        if mid * (np.log(mid / mean) - 1.0) + mean >= target:
            hi = mid
        else:
            lo = mid
        if hi - lo < 0.5:
            break
    return int(np.ceil(hi))


def _binomial_rows(values: np.ndarray, counts: np.ndarray, width: int) -> np.ndarray:
    """Binomial pmfs Bin(counts_g, values_g) at 0..width−1, as columns of a (width, G) array.

    Each column is anchored at j0 = min(mode, width−1) and filled by the ratios
    P(j+1)/P(j) = ρ(k−j)/(j+1) moving away from it, so every product is <= 1 (no overflow)
    and the relative error is O(|j − j0|) roundings. The anchor is (1−r)^k for j0 = 0.
    """
    k = counts.astype(float)
    r = values
    rho = r / (1.0 - r)
    mode = np.minimum(np.floor((k + 1.0) * r), k)
    j0 = np.minimum(mode, width - 1).astype(np.int64)
    anchor = np.exp(k * np.log1p(-r))
    upper = j0 > 0
    if np.any(upper):
        anchor[upper] = stats.binom.pmf(j0[upper], counts[upper], r[upper])
    rows = np.empty((width, len(r)))
    rows[0] = 1.0
    if width > 1:
        i = np.arange(width - 1, dtype=float)[:, None]
        ratio = np.maximum(rho * (k - i) / (i + 1.0), 0.0)  # 0 beyond k
        below = i < j0
        with np.errstate(divide="ignore"):
            down = np.where(below, 1.0 / np.where(below, ratio, 1.0), 1.0)
        up = np.where(below, 1.0, ratio)
        rows[1:] = np.cumprod(up, axis=0)  # Π_{j0 <= i < j} ratio_i
        rows[:-1] *= np.cumprod(down[::-1], axis=0)[::-1]  # Π_{j <= i < j0} 1/ratio_i
    rows *= anchor
    return rows


def _binomial_tree_lower(values: np.ndarray, counts: np.ndarray, size: int) -> np.ndarray:
    """Lower pmf of Σ_g Bin(counts_g, values_g) by a batched tree with tail trimming."""
    groups = len(values)
    eps = _TRIM_BUDGET / (4 * groups + 64)  # each column of each level may drop 2·eps
    means = counts * values
    width = int(min(size, int(counts.max()) + 1, _chernoff_width(float(means.max()), eps)))
    rows = _binomial_rows(values, counts, width)
    if not np.all(rows.sum(axis=0) > 0.0):  # some factor has no mass below size
        return np.zeros(size)
    prod = _tree_product(rows, size, trim_eps=eps, means=means)
    out = np.zeros(size)
    out[: len(prod)] = prod[:size]
    return out


def _trim_tails(stack: np.ndarray, eps: float) -> np.ndarray:
    """Drop trailing entries while every column's dropped mass stays <= eps."""
    tails = np.cumsum(stack[::-1], axis=0)[::-1].max(axis=1)  # tails[c] = max_col Σ_{i>=c}
    keep = max(1, int(np.count_nonzero(tails > eps)))
    return stack[:keep]


def _tree_product(
    stack: np.ndarray, size: int, trim_eps: float, means: np.ndarray | None = None
) -> np.ndarray:
    """Multiply the columns' generating polynomials pairwise, level by level, truncated.

    stack is (width, rows): entry [j, i] is coefficient j of row i. With trim_eps > 0 each
    level drops, per column, at most trim_eps of mass from its exact tail (`_trim_tails`),
    and, when the columns' means are given, the entries beyond the Chernoff width of the
    largest mean (true mass <= trim_eps; this also drops the FFT's round-off there).
    """
    stack = stack[:size]
    if trim_eps > 0.0:
        stack = _trim_tails(stack, trim_eps)
    while stack.shape[1] > 1:  # log2(rows) levels
        w, k = stack.shape
        if k % 2:
            unit = np.zeros((w, 1))
            unit[0, 0] = 1.0
            stack = np.hstack([stack, unit])
            if means is not None:
                means = np.append(means, 0.0)
            k += 1
        half = k // 2
        a, b = stack[:, :half], stack[:, half:]
        out_w = min(2 * w - 1, size)
        if means is not None:
            means = means[:half] + means[half:]
            if trim_eps > 0.0:
                out_w = min(out_w, _chernoff_width(float(means.max()), trim_eps))
        if w <= _TREE_DIRECT_MAX_WIDTH:  # direct: exact products, no round-off noise
            out = np.zeros((out_w, half))
            for j in range(w):
                span = min(w, out_w - j)
                if span <= 0:
                    break
                out[j : j + span] += a[j] * b[:span]
        else:  # batched FFT convolution along each column
            length = sp_fft.next_fast_len(2 * w - 1, real=True)
            fa = sp_fft.rfft(a.T, length, axis=1)
            fa *= sp_fft.rfft(b.T, length, axis=1)
            out = sp_fft.irfft(fa, length, axis=1)[:, :out_w].T
            np.clip(out, 0.0, None, out=out)  # FFT round-off can dip below zero
        stack = out
        if trim_eps > 0.0:
            stack = _trim_tails(stack, trim_eps)
    return np.ascontiguousarray(stack[:, 0])


def _position_transitions(beta: float, q: float, feedback: int) -> list[tuple[int, int, int, float]]:
    """(from, to, misses, probability) of one addressed position for one slot (ratchet).

    States: 0 fresh (a never-addressed lane arrives: cartel w.p. β), 1 an honest lane with
    no unseen miss, 2..d cartel lanes whose first miss is not yet seen with k = 1..d−1
    slots left, d+1..2d−1 the same for honest lanes. A lane whose first miss was in slot s
    is addressed through slot s+d−1 and replaced at slot s+d (feedback d); with d = 1 it
    is replaced at once. Cartel lanes withhold every slot (withhold-all).
    """
    d = feedback

    def pending(cartel: bool, left: int) -> int:
        if left <= 0:
            return 0  # replaced next slot
        return (1 + left) if cartel else (d + left)

    out: list[tuple[int, int, int, float]] = []
    miss_h = 1.0 - q
    # fresh: cartel (always misses) or honest
    out.append((0, pending(True, d - 1), 1, beta))
    out.append((0, pending(False, d - 1), 1, (1.0 - beta) * miss_h))
    out.append((0, 1, 0, (1.0 - beta) * q))
    # clean honest
    out.append((1, pending(False, d - 1), 1, miss_h))
    out.append((1, 1, 0, q))
    for left in range(1, d):  # pending lanes, bounded by d
        out.append((pending(True, left), pending(True, left - 1), 1, 1.0))
        out.append((pending(False, left), pending(False, left - 1), 1, miss_h))
        out.append((pending(False, left), pending(False, left - 1), 0, q))
    return [t for t in out if t[3] > 0.0]


def ratchet_position_log_pmf(slots: int, beta: float, q: float, feedback: int = 1) -> np.ndarray:
    """log pmf (0..slots) of one addressed position's misses over `slots` slots (ratchet
    with feedback d = `feedback`, unbounded lanes, withhold-all), in log space so that
    nothing underflows (docs/mechanism.md §6)."""
    from mechanism.tails import lse

    if slots < 0 or feedback < 1:
        raise ValueError("need slots >= 0 and feedback >= 1")
    if q >= 1.0:
        return _ratchet_position_log_pmf_q_one(slots, beta, feedback)
    states = 2 * feedback
    trans = _position_transitions(beta, q, feedback)
    logs = [(src, dst, miss, float(np.log(prob))) for src, dst, miss, prob in trans]
    cur = np.full((states, slots + 1), -np.inf)
    cur[0, 0] = 0.0
    for step in range(slots):  # one step per slot; misses so far <= step
        width = step + 2
        nxt = np.full_like(cur, -np.inf)
        for src, dst, miss, log_p in logs:  # bounded by 3d + 2 transitions
            seg = cur[src, : width - miss] + log_p
            np.logaddexp(nxt[dst, miss:width], seg, out=nxt[dst, miss:width])
        cur = nxt
    return np.asarray(lse(cur, axis=0), dtype=float)


def _ratchet_position_log_pmf_q_one(slots: int, beta: float, feedback: int) -> np.ndarray:
    """q = 1: honest lanes never miss, each cartel lane misses exactly d slots, so a position
    misses G = min(K·d, slots) with K consecutive cartel draws, P(K >= k) = β^k."""
    out = np.full(slots + 1, -np.inf)
    if beta <= 0.0:
        out[0] = 0.0
        return out
    log_b = float(np.log(beta))
    log_rest = float(np.log1p(-beta)) if beta < 1.0 else -np.inf
    k = 0
    while k * feedback < slots:  # bounded by slots / d
        out[k * feedback] = k * log_b + log_rest
        k += 1
    out[slots] = np.logaddexp(out[slots], k * log_b)  # K >= k draws fill the horizon
    return out


def ratchet_position_pmf(slots: int, beta: float, q: float, feedback: int = 1) -> np.ndarray:
    """pmf of one addressed position's misses over `slots` slots under the ratchet.

    With feedback d = 1 a position is "fresh" (a never-addressed lane: cartel w.p. β, else
    honest) or "proven" (a lane that redeemed last slot); a fresh lane misses w.p.
    r = β + (1−β)(1−q), a proven one w.p. 1−q; a miss makes the position fresh next slot.
    With d > 1 a lane that misses stays addressed d − 1 more slots (`_position_transitions`).
    """
    return np.exp(ratchet_position_log_pmf(slots, beta, q, feedback))


def ratchet_position_cartel_rates(
    slots: int, beta: float, q: float, feedback: int = 1
) -> np.ndarray:
    """E[cartel-withheld bundles per position] in each slot 1..slots under the ratchet:
    the probability that the position holds a cartel lane in that slot."""
    states = 2 * feedback
    trans = _position_transitions(beta, q, feedback)
    cur = np.zeros(states)
    cur[0] = 1.0
    rates = np.zeros(slots)
    cartel_states = list(range(2, 1 + feedback))
    for s in range(slots):  # one step per slot
        rates[s] = cur[0] * beta + float(cur[cartel_states].sum())
        nxt = np.zeros(states)
        for src, dst, _miss, prob in trans:
            nxt[dst] += cur[src] * prob
        cur = nxt
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
