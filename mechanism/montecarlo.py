"""Vectorized, seeded Monte Carlo of slots, lanes, honest inclusion and cartel strategies.

docs/mechanism.md §12. Trials run in parallel as numpy arrays; the only Python loop is over
slots (at most t* + max_lag). Each slot draws the cartel's holdings per trial (binomial or
hypergeometric), the honest misses (binomial), applies the strategy, finalizes, and, under
the ratchet, excludes the lanes that did not redeem and replaces them by never-addressed
lanes. Blocks of 2^19 trials each have their own `numpy.random.Generator` (`block_rng`:
PCG64(seed) for the first), so a seed fixes the result bit for bit, on any executor
(`campaign.executor`: this process, local processes or a Dask cluster).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mechanism.delay import withheld_by_strategy
from mechanism.params import STRATEGIES, SednaParams, Strategy

if TYPE_CHECKING:
    from campaign.executor import Executor

__all__ = ["STRATEGIES", "MCResult", "Strategy", "binomial_ci", "simulate"]

CI_METHODS = ("wilson", "clopper-pearson")
_CHUNK_TRIALS = 1 << 19  # memory bound: a few arrays of this many int64 per chunk
MAX_TRIALS = 10**9
MAX_LAG = 64


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def binomial_ci(
    successes: int, trials: int, level: float = 0.99, method: str = "wilson"
) -> Interval:
    """Two-sided confidence interval for a binomial proportion (Wilson or Clopper-Pearson)."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, trials >= 1 ({successes}/{trials})")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    from scipy import stats

    alpha = 1.0 - level
    if method == "clopper-pearson":
        lo = 0.0 if successes == 0 else stats.beta.ppf(alpha / 2, successes, trials - successes + 1)
        hi = (
            1.0
            if successes == trials
            else stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes)
        )
        return Interval(float(lo), float(hi))
    if method != "wilson":
        raise ValueError(f"method must be one of {CI_METHODS}, got {method!r}")
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(lo, hi)


@dataclass(frozen=True)
class MCResult:
    """Counts and estimates; lag_counts[ℓ] = trials with T_chain − t* = ℓ (last: > max_lag)."""

    trials: int
    seed: int
    strategy: str
    delays: int
    p_delay_mc: float
    ci_low: float
    ci_high: float
    races: int
    p_race_mc: float
    race_ci_low: float
    race_ci_high: float
    lag_counts: tuple[int, ...]
    lead_counts: tuple[int, ...]
    t_chain_min: int
    mean_withheld: float
    mean_pivotal_withheld_order: float
    mean_pivotal_withheld_random: float
    bundle_slots: int
    ci_method: str = "wilson"
    level: float = 0.99
    extra: dict[str, float] = field(default_factory=dict)


class _Lanes:
    """Per-trial lane state (counts): who holds the bundles addressed in each slot.

    Under the ratchet (keep_redeemed, feedback d; docs/mechanism.md §6) the addressed lanes
    are counted by type (cartel/honest) and by state: clean (no miss yet) or doomed with k
    slots left before the sender sees their first miss and replaces them. Finite lanes
    also count the pools: never addressed, excluded, and available after a reset.
    """

    def __init__(self, params: SednaParams, rng: np.random.Generator, size: int) -> None:
        self.p = params
        self.rng = rng
        self.size = size
        self.c = params.cartel_lanes or 0
        if params.ratchet:
            d = params.feedback_slots
            zeros = np.zeros(size, dtype=np.int64)
            self.fresh = np.full(size, params.m, dtype=np.int64)
            self.clean_c, self.clean_h = zeros.copy(), zeros.copy()
            self.doom_c = np.zeros((d, size), dtype=np.int64)  # [k]: k slots left (k >= 1)
            self.doom_h = np.zeros((d, size), dtype=np.int64)
            if params.lanes is not None:
                self.never_c = np.full(size, self.c, dtype=np.int64)
                self.never_h = np.full(size, params.lanes - self.c, dtype=np.int64)
                self.avail_c, self.avail_h = zeros.copy(), zeros.copy()
                self.excl_c, self.excl_h = zeros.copy(), zeros.copy()
        elif params.addressing == "fixed":
            self.fixed_x = self._draw(np.full(size, params.m, dtype=np.int64))

    def _draw(self, draws: np.ndarray) -> np.ndarray:
        """Cartel lanes among `draws` lanes drawn from the whole population."""
        p = self.p
        if p.lanes is None:
            return self.rng.binomial(draws, p.beta)
        return self.rng.hypergeometric(self.c, p.lanes - self.c, draws)

    def _take(self, pool_c: np.ndarray, pool_h: np.ndarray, need: np.ndarray) -> tuple:
        """Draw up to `need` lanes from a pool: (cartel drawn, honest drawn, still needed)."""
        take = np.minimum(need, pool_c + pool_h)
        got_c = self.rng.hypergeometric(pool_c, pool_h, take) if np.any(take) else take * 0
        pool_c -= got_c
        pool_h -= take - got_c
        return got_c, take - got_c, need - take

    def address(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cartel holdings X, honest addressed, unfilled positions) for this slot."""
        p = self.p
        zero = np.zeros(self.size, dtype=np.int64)
        if not p.ratchet:
            if p.addressing == "fixed":
                x = self.fixed_x
            else:
                x = self._draw(np.full(self.size, p.m, dtype=np.int64))
            return x, p.m - x, zero
        if p.lanes is None:
            new_c = self.rng.binomial(self.fresh, p.beta)
            new_h = self.fresh - new_c
        else:
            # never-addressed lanes first, then lanes available after a reset; when both
            # are exhausted the exclusions reset (every lane not addressed is eligible).
            new_c, new_h, need = self._take(self.never_c, self.never_h, self.fresh)
            c2, h2, need = self._take(self.avail_c, self.avail_h, need)
            reset = need > 0
            if np.any(reset):
                self.avail_c += np.where(reset, self.excl_c, 0)
                self.avail_h += np.where(reset, self.excl_h, 0)
                self.excl_c = np.where(reset, 0, self.excl_c)
                self.excl_h = np.where(reset, 0, self.excl_h)
                c3, h3, need = self._take(self.avail_c, self.avail_h, need)
                c2, h2 = c2 + c3, h2 + h3
            new_c, new_h = new_c + c2, new_h + h2
        self.fresh = zero.copy()
        self.clean_c = self.clean_c + new_c
        self.clean_h = self.clean_h + new_h
        x = self.clean_c + self.doom_c.sum(axis=0)
        honest = self.clean_h + self.doom_h.sum(axis=0)
        return x, honest, zero

    def settle(
        self,
        x: np.ndarray,
        withheld: np.ndarray,
        honest: np.ndarray,
        misses: np.ndarray,
        unfilled: np.ndarray,
    ) -> None:
        """Ratchet: a lane's first miss dooms it; it is replaced d slots after that miss.

        The cartel withholds with already doomed lanes first (it costs them nothing more);
        which honest lanes missed is a uniform subset (iid misses), so the doomed ones
        among them are hypergeometric.
        """
        if not self.p.ratchet:
            return
        d = self.p.feedback_slots
        doomed_c = self.doom_c.sum(axis=0)
        new_doom_c = np.maximum(0, withheld - doomed_c)
        doomed_h = self.doom_h.sum(axis=0)
        if np.any(misses):
            missed_doomed = self.rng.hypergeometric(doomed_h, self.clean_h, misses)
        else:
            missed_doomed = misses
        new_doom_h = misses - missed_doomed
        self.clean_c = self.clean_c - new_doom_c
        self.clean_h = self.clean_h - new_doom_h
        if d == 1:
            leaving_c, leaving_h = new_doom_c, new_doom_h
        else:
            leaving_c, leaving_h = self.doom_c[1].copy(), self.doom_h[1].copy()
            self.doom_c[1:-1] = self.doom_c[2:]
            self.doom_h[1:-1] = self.doom_h[2:]
            self.doom_c[d - 1] = new_doom_c
            self.doom_h[d - 1] = new_doom_h
        self.fresh = leaving_c + leaving_h
        if self.p.lanes is not None:
            self.excl_c = self.excl_c + leaving_c
            self.excl_h = self.excl_h + leaving_h


def simulate(
    params: SednaParams,
    strategy: Strategy | None = None,
    trials: int = 100_000,
    seed: int = 0,
    max_lag: int = 0,
    level: float = 0.99,
    ci_method: str = "wilson",
    adversarial_order: bool = False,
    executor: Executor | None = None,
) -> MCResult:
    """Simulate `trials` transactions for t* + max_lag slots; estimate P(D) and P(race).

    adversarial_order: the cartel's lanes come last in the canonical order ≺ of slot t*
    (worst case for the designer); otherwise lane positions in ≺ are uniformly random.

    The trials run in blocks of _CHUNK_TRIALS, each with its own random stream
    (`block_rng`), on `executor` (default: this process); the blocks' counts are merged in
    block order, so the result is the same on any executor.
    """
    strategy = strategy or Strategy()
    if not 1 <= trials <= MAX_TRIALS:
        raise ValueError(f"trials must be in 1..{MAX_TRIALS}, got {trials}")
    if not 0 <= max_lag <= MAX_LAG:
        raise ValueError(f"max_lag must be in 0..{MAX_LAG}, got {max_lag}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    t_star = params.t_star
    horizon = t_star + max_lag
    blocks = [
        _Block(params, strategy, seed, index, min(_CHUNK_TRIALS, trials - start), horizon,
               max_lag, adversarial_order)
        for index, start in enumerate(range(0, trials, _CHUNK_TRIALS))
    ]  # fmt: skip
    if executor is None:
        from campaign.executor import LocalExecutor

        executor = LocalExecutor(1)
    delays = races = 0
    lag_counts = np.zeros(max_lag + 2, dtype=np.int64)
    lead_counts = np.zeros(max_lag + 2, dtype=np.int64)
    t_chain_min = horizon + 1
    sum_withheld = sum_piv_order = sum_piv_random = 0.0
    for part in executor.map(_run_block, blocks, label="mc-block"):  # in block order
        delays += part.delays
        races += part.races
        lag_counts += np.asarray(part.lag_counts, dtype=np.int64)
        lead_counts += np.asarray(part.lead_counts, dtype=np.int64)
        t_chain_min = min(t_chain_min, part.t_chain_min)
        sum_withheld += part.sum_withheld
        sum_piv_order += part.sum_piv_order
        sum_piv_random += part.sum_piv_random
    ci = binomial_ci(delays, trials, level, ci_method)
    race_ci = binomial_ci(races, trials, level, ci_method)
    return MCResult(
        trials=trials,
        seed=seed,
        strategy=strategy.kind,
        delays=delays,
        p_delay_mc=delays / trials,
        ci_low=ci.low,
        ci_high=ci.high,
        races=races,
        p_race_mc=races / trials,
        race_ci_low=race_ci.low,
        race_ci_high=race_ci.high,
        lag_counts=tuple(int(v) for v in lag_counts),
        lead_counts=tuple(int(v) for v in lead_counts),
        t_chain_min=t_chain_min,
        mean_withheld=sum_withheld / trials,
        mean_pivotal_withheld_order=sum_piv_order / trials,
        mean_pivotal_withheld_random=sum_piv_random / trials,
        bundle_slots=trials * params.m * horizon,
        ci_method=ci_method,
        level=level,
    )


def block_rng(seed: int, block: int) -> np.random.Generator:
    """The random stream of trial block `block`: PCG64(seed) for the first block (a run of
    up to _CHUNK_TRIALS trials is what it always was), PCG64(SeedSequence([seed, block]))
    for the others (independent streams, so blocks can run anywhere, in any order)."""
    if block == 0:
        return np.random.Generator(np.random.PCG64(seed))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, block])))


@dataclass(frozen=True)
class _Block:
    """One block of trials: a task for an executor (picklable)."""

    params: SednaParams
    strategy: Strategy
    seed: int
    index: int
    size: int
    horizon: int
    max_lag: int
    adversarial_order: bool


@dataclass(frozen=True)
class _BlockCounts:
    delays: int
    races: int
    lag_counts: tuple[int, ...]
    lead_counts: tuple[int, ...]
    t_chain_min: int
    sum_withheld: float
    sum_piv_order: float
    sum_piv_random: float


def _run_block(block: _Block) -> _BlockCounts:
    t_star, max_lag = block.params.t_star, block.max_lag
    chunk = _simulate_chunk(
        block.params,
        block.strategy,
        block_rng(block.seed, block.index),
        block.size,
        block.horizon,
        block.adversarial_order,
    )
    lag = np.minimum(chunk["t_chain"] - t_star, max_lag + 1)
    lead = np.clip(chunk["t_chain"] - chunk["t_cart"], 0, max_lag + 1)
    return _BlockCounts(
        delays=int(np.count_nonzero(chunk["t_chain"] > t_star)),
        races=int(np.count_nonzero(chunk["race"])),
        lag_counts=tuple(int(v) for v in np.bincount(lag, minlength=max_lag + 2)[: max_lag + 2]),
        lead_counts=tuple(
            int(v) for v in np.bincount(lead, minlength=max_lag + 2)[: max_lag + 2]
        ),
        t_chain_min=int(chunk["t_chain"].min()),
        sum_withheld=float(chunk["withheld"].sum()),
        sum_piv_order=float(chunk["piv_order"].sum()),
        sum_piv_random=float(chunk["piv_random"].sum()),
    )


def _simulate_chunk(
    params: SednaParams,
    strategy: Strategy,
    rng: np.random.Generator,
    size: int,
    horizon: int,
    adversarial_order: bool,
) -> dict[str, np.ndarray]:
    kappa, t_star, q = params.kappa, params.t_star, params.q
    lanes = _Lanes(params, rng, size)
    finalized = np.zeros(size, dtype=np.int64)
    pooled = np.zeros(size, dtype=np.int64)
    never = horizon + 1
    t_chain = np.full(size, never, dtype=np.int64)
    t_cart = np.full(size, never, dtype=np.int64)
    race = np.zeros(size, dtype=bool)
    withheld_h = np.zeros(size, dtype=np.int64)
    piv_order = np.zeros(size, dtype=np.int64)
    piv_random = np.zeros(size, dtype=np.int64)
    for slot in range(1, horizon + 1):  # bounded by t* + max_lag
        x, honest, unfilled = lanes.address()
        w = withheld_by_strategy(strategy, x, slot, params)
        misses = rng.binomial(honest, 1.0 - q) if q < 1.0 else np.zeros_like(honest)
        included = honest - misses + x - w
        if slot == t_star:
            # Race: the cartel decodes inside slot t* from the public past, its pool and
            # its current holdings, before the chain finalizes the slot.
            race = (finalized + pooled + x >= kappa) & (finalized < kappa)
            # Pivot accounting against the counterfactual in which nothing was withheld.
            cf_before = finalized + withheld_h
            cf_slot = included + w
            k = np.clip(kappa - cf_before, 0, cf_slot)
            piv_random += rng.hypergeometric(w, cf_slot - w, k)
            if strategy.kind == "pivot-order":
                # The cartel's bundles among the last cf_slot − k (non-pivotal) positions.
                if adversarial_order:
                    late = np.minimum(x, cf_slot - k)
                else:
                    late = rng.hypergeometric(x, cf_slot - x, cf_slot - k)
                piv_order += w - np.minimum(w, late)
            else:
                piv_order += rng.hypergeometric(w, cf_slot - w, k)
        elif slot < t_star:
            piv_order += w
            piv_random += w
        if slot <= t_star:
            withheld_h += w
        finalized += included
        pooled += w
        t_chain = np.where((t_chain == never) & (finalized >= kappa), slot, t_chain)
        t_cart = np.where((t_cart == never) & (finalized + pooled >= kappa), slot, t_cart)
        lanes.settle(x, w, honest, misses, unfilled)
    return {
        "t_chain": t_chain,
        "t_cart": t_cart,
        "race": race,
        "withheld": withheld_h,
        "piv_order": piv_order,
        "piv_random": piv_random,
    }


def simulate_heterogeneous(
    miss_probs: np.ndarray, kappa: int, trials: int, seed: int, level: float = 0.99
) -> tuple[float, Interval]:
    """P(fewer than κ of the bundles are finalized), bundle i missed w.p. r_i."""
    r = np.asarray(miss_probs, dtype=float)
    if r.ndim != 1 or len(r) == 0:
        raise ValueError("miss_probs must be a non-empty 1-D array")
    if not 1 <= trials <= MAX_TRIALS:
        raise ValueError(f"trials must be in 1..{MAX_TRIALS}, got {trials}")
    rng = np.random.Generator(np.random.PCG64(seed))
    a = len(r) - kappa + 1
    rows = max(1, 4_000_000 // len(r))
    hits = done = 0
    while done < trials:  # bounded by trials / rows rounds
        size = min(rows, trials - done)
        missed = (rng.random((size, len(r))) < r).sum(axis=1)
        hits += int(np.count_nonzero(missed >= a))
        done += size
    return hits / trials, binomial_ci(hits, trials, level)


def simulate_fixed_withholding(
    params: SednaParams, withheld: int, trials: int, seed: int, level: float = 0.99
) -> tuple[float, Interval]:
    """P(D) when exactly `withheld` bundles (the earliest-addressed) are withheld, rest honest."""
    if not 0 <= withheld <= params.n:
        raise ValueError(f"withheld must be in 0..{params.n}, got {withheld}")
    if not 1 <= trials <= MAX_TRIALS:
        raise ValueError(f"trials must be in 1..{MAX_TRIALS}, got {trials}")
    rng = np.random.Generator(np.random.PCG64(seed))
    missing = np.full(trials, withheld, dtype=np.int64)
    left = withheld
    for _ in range(params.t_star):  # one draw per slot
        in_slot = min(left, params.m)
        left -= in_slot
        missing += rng.binomial(params.m - in_slot, 1.0 - params.q, size=trials)
    hits = int(np.count_nonzero(missing >= params.slack + 1))
    return hits / trials, binomial_ci(hits, trials, level)
