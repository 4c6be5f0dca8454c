"""Shared test helpers: an independent brute-force enumerator and a CI assertion."""

from __future__ import annotations

import itertools
from functools import cache

from mechanism.montecarlo import MCResult


def assert_in_ci(exact: float, res: MCResult) -> None:
    assert res.ci_low <= exact <= res.ci_high, (
        f"exact {exact} outside [{res.ci_low}, {res.ci_high}] (mc {res.p_delay_mc})"
    )


def assert_batch_mean_close(estimate, expected: float, batches: int = 10) -> None:
    """The mean of `batches` independent estimates estimate(b) (b = 0..batches−1, each its
    own seed) is within t_{0.9995, batches−1}·SE of `expected`, SE from the batches' spread:
    a tolerance tied to the simulation's own standard error, not to the value."""
    import math
    import statistics

    from scipy import stats

    values = [float(estimate(b)) for b in range(batches)]
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(batches)
    tol = float(stats.t.ppf(0.9995, batches - 1)) * se
    assert abs(mean - expected) <= tol, (
        f"batch mean {mean} vs expected {expected}: |diff| {abs(mean - expected):.3g} > "
        f"{tol:.3g} (SE {se:.3g}, values {values})"
    )


def brute_force_delay(lanes: int, cartel: int, m: int, kappa: int, q: float, policy: str) -> float:
    """P(S_{t*} < κ) by enumerating explicit lane sets (withhold-all cartel).

    Lanes 0..cartel-1 are the cartel. policy: "fresh" (a uniform m-subset each slot),
    "fixed" (one subset reused), "ratchet" (keep redeemers, replace the others by a uniform
    subset of never-addressed lanes). Honest lanes redeem independently with probability q.
    Written without any of mechanism's formulas.
    """
    t_star = -(-kappa // m)
    all_lanes = frozenset(range(lanes))

    def outcomes(addressed: frozenset[int]):
        """(missed lanes, probability) over honest inclusion outcomes."""
        honest = sorted(ln for ln in addressed if ln >= cartel)
        cartel_hit = frozenset(ln for ln in addressed if ln < cartel)
        for pattern in itertools.product((True, False), repeat=len(honest)):
            prob = 1.0
            missed = set(cartel_hit)
            for ln, ok in zip(honest, pattern, strict=True):
                prob *= q if ok else 1.0 - q
                if not ok:
                    missed.add(ln)
            if prob > 0.0:
                yield frozenset(missed), prob

    def subsets(pool: frozenset[int], k: int):
        combos = list(itertools.combinations(sorted(pool), k))
        for combo in combos:
            yield frozenset(combo), 1.0 / len(combos)

    @cache
    def go(slot: int, missing: int, addressed: frozenset[int], used: frozenset[int]) -> float:
        # Probability of ending behind, given the lanes addressed in `slot`.
        total = 0.0
        for missed, p_out in outcomes(addressed):
            miss = missing + len(missed)
            if slot == t_star:
                total += p_out * (1.0 if miss >= t_star * m - kappa + 1 else 0.0)
                continue
            if policy == "fresh":
                nxt = [(s, p) for s, p in subsets(all_lanes, m)]
                total += p_out * sum(p * go(slot + 1, miss, s, used) for s, p in nxt)
            elif policy == "fixed":
                total += p_out * go(slot + 1, miss, addressed, used)
            else:
                kept = addressed - missed
                pool = all_lanes - used
                if len(pool) < len(missed):
                    raise ValueError("pool exhausted")
                acc = 0.0
                for repl, p in subsets(pool, len(missed)):
                    acc += p * go(slot + 1, miss, kept | repl, used | repl)
                total += p_out * acc
        return total

    return sum(p * go(1, 0, s, s) for s, p in subsets(all_lanes, m))
