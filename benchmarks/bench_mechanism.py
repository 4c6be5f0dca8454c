"""Mechanism toolkit benchmarks: prints medians of several runs (no pass/fail).

    .venv/bin/python benchmarks/bench_mechanism.py [--skip-report] [--repeats 5]

Targets (issue 6): exact delay probability for t*·m up to 10^6 in <= 50 ms (every lane
model, including the Poisson-binomial shapes of `heterogeneous_cases`); Monte Carlo >= 10^7
bundle-slot trials per second; `sedna mech report` with default grids <= 60 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mechanism import delay, lanechain, leaders, montecarlo, response  # noqa: E402
from mechanism.params import EconParams, SednaParams  # noqa: E402


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def heterogeneous_cases() -> list[tuple[str, np.ndarray, int]]:
    """Poisson-binomial inputs with t*·m = 10^6 bundles and Δ near the mean miss count.

    Per-lane cases come from `miss_probs_fixed_lanes` (lane ℓ misses w.p. r_ℓ every slot,
    cartel lanes always); "distinct" cases give every bundle its own r_i. The last two have
    Σρ_i² >> 1, beyond a single Poisson-like series (docs/mechanism.md §2).
    """
    rng = np.random.default_rng(0)

    def lanes(r_lanes: np.ndarray, slots: int, cartel: int = 0) -> np.ndarray:
        mask = np.zeros(len(r_lanes), dtype=bool)
        mask[rng.choice(len(r_lanes), size=cartel, replace=False)] = True
        return delay.miss_probs_fixed_lanes(1.0 - r_lanes, mask, slots)

    slow = rng.uniform(0.0, 0.0005, size=1000)
    slow[:5] = rng.uniform(0.04, 0.06, size=5)  # five slow lanes
    return [
        ("per-lane 1000 lanes x 1000 slots      ", lanes(rng.uniform(0, 1e-3, 1000), 1000), 500),
        ("per-lane  100 lanes x 10^4 slots      ", lanes(rng.uniform(0, 1e-4, 100), 10**4), 50),
        ("per-lane   10 lanes x 10^5 slots      ", lanes(rng.uniform(0, 1e-5, 10), 10**5), 5),
        ("per-lane 10^4 lanes x 100 slots       ", lanes(rng.uniform(0, 1e-2, 10**4), 100), 5000),
        (
            "per-lane 10^4 x 100, 20 cartel lanes  ",
            lanes(rng.uniform(0, 6e-3, 10**4), 100, 20),
            5000,
        ),
        ("per-lane 1000 x 1000, 5 slow lanes    ", lanes(slow, 1000), 500),
        ("10^6 distinct r_i ~ U(0, 0.001)       ", rng.uniform(0.0, 0.001, 10**6), 500),
        ("10^6 distinct r_i ~ U(0, 0.004)       ", rng.uniform(0.0, 0.004, 10**6), 2000),
        ("10^6 distinct r_i ~ U(0, 0.01)        ", rng.uniform(0.0, 0.01, 10**6), 5000),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-report", action="store_true")
    args = ap.parse_args()
    r = args.repeats

    print("exact delay probability, t*·m = 10^6 (median ms, target <= 50)")
    # κ = 999_500, m = 1000: t* = 1000, Δ = 500, n = 10^6; β near each model's critical value.
    cases = {
        "binomial       m=1000 t*=1000      ": SednaParams(999_500, 1000, 0.0005),
        "binomial       m=10^6 t*=1         ": SednaParams(999_000, 1_000_000, 0.001),
        "hypergeometric m=1000 t*=1000 N=4000": SednaParams(999_500, 1000, 0.0005, lanes=4000),
        "hypergeometric m=10^4 t*=100 N=10^5": SednaParams(
            995_000, 10_000, 0.004, q=0.999, lanes=100_000
        ),
        "fixed lane set m=1000 t*=1000      ": SednaParams(
            999_500, 1000, 0.0005, addressing="fixed"
        ),
        "all lanes      m=N=1000 t*=1000    ": SednaParams(
            999_500, 1000, 0.0, q=0.9995, lanes=1000
        ),
        "ratchet        m=1000 t*=1000      ": SednaParams(999_500, 1000, 0.33, ratchet=True),
    }
    for name, p in cases.items():
        ms = median_ms(lambda p=p: delay.p_delay(p), r)
        print(f"  {name}  n={p.n:>8}  P={delay.p_delay(p):.4g}  {ms:8.2f} ms")
    for name, miss_probs, slack in heterogeneous_cases():
        kappa = len(miss_probs) - slack
        ms = median_ms(lambda r=miss_probs, k=kappa: delay.p_delay_heterogeneous(r, k), r)
        p_d = delay.p_delay_heterogeneous(miss_probs, kappa)
        print(f"  {name}  n={len(miss_probs):>8}  Δ={slack:>5}  P={p_d:.4g}  {ms:8.2f} ms")

    print("cartel best response: exact-IC bounty (Newton over the DP), median ms")
    econ = EconParams(1.0)
    br_cases = {
        "κ=56  m=16 β=0.1 fresh          ": SednaParams(56, 16, 0.1),
        "κ=56  m=16 β=0.1 ratchet        ": SednaParams(56, 16, 0.1, ratchet=True),
        "κ=232 m=64 β=0.1 fresh          ": SednaParams(232, 64, 0.1),
        "κ=232 m=64 β=0.1 ratchet        ": SednaParams(232, 64, 0.1, ratchet=True),
        "κ=20  m=6  β=0.3 q=0.9 (general)": SednaParams(20, 6, 0.3, q=0.9),
    }
    for name, p in br_cases.items():
        ms = median_ms(lambda p=p: response.bounty(p, econ), max(1, r // 2))
        print(f"  {name}  b/V={response.bounty(p, econ).bounty:.4g}  {ms:9.1f} ms")

    print("leader cartels and the shipped ratchet, exact (median ms)")
    lane_cases = {
        "lanechain N=7 m=3 κ=8 ratchet d=2 q=1   ": lanechain.LaneSetup(
            7, 3, 8, withholding={2, 5}, feedback_slots=2
        ),
        "lanechain N=7 m=3 κ=8 ratchet d=2 q=0.9 ": lanechain.LaneSetup(
            7, 3, 8, withholding={2, 5}, q=0.9, feedback_slots=2
        ),
        "lanechain N=7 censors 2,5 carried       ": lanechain.LaneSetup(
            7, 3, 8, censoring={2, 5}, policy="fresh"
        ),
    }
    for name, setup in lane_cases.items():
        ms = median_ms(lambda s=setup: lanechain.predict(s), max(1, r // 2))
        print(f"  {name}  P(delay)={lanechain.predict(setup).p_delay:.4g}  {ms:9.1f} ms")
    big = leaders.LeaderCartel(100, 16, 56, withholding=5, censoring=5)
    kinds = ["c"] * 5 + ["w"] * 5 + ["h"] * 90
    ms = median_ms(lambda: leaders.predict_round_robin(big, kinds), max(1, r // 2))
    print(f"  leaders count model N=100 m=16 κ=56, 100 starts  {ms:9.1f} ms")

    print("Monte Carlo throughput (bundle-slot trials per second, target >= 1e7)")
    mc_cases = {
        "binomial fresh m=16 t*=4  ": SednaParams(56, 16, 0.1, q=0.95),
        "hypergeometric m=16 N=100 ": SednaParams(56, 16, 0.1, q=0.95, lanes=100),
        "ratchet binomial m=16     ": SednaParams(56, 16, 0.1, q=0.95, ratchet=True),
        "ratchet hypergeom m=64    ": SednaParams(232, 64, 0.1, lanes=400, ratchet=True),
        "ratchet d=3 hypergeom m=64": SednaParams(
            232, 64, 0.1, lanes=400, ratchet=True, feedback_slots=3
        ),
    }
    trials = 1_000_000
    for name, p in mc_cases.items():
        ms = median_ms(lambda p=p: montecarlo.simulate(p, trials=trials, seed=1), max(1, r // 2))
        rate = trials * p.n / (ms / 1e3)
        print(f"  {name} trials={trials}  {ms:8.1f} ms  {rate:.3g} bundle-slots/s")

    if not args.skip_report:
        print("sedna mech report, default grids (seconds, target <= 60)")
        times = []
        for _ in range(max(1, min(r, 3))):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "mechanism.cli", "report", "--out", tmp],
                    check=True,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                )
                times.append(time.perf_counter() - t0)
        print(f"  median {statistics.median(times):.1f} s over {len(times)} runs")


if __name__ == "__main__":
    main()
