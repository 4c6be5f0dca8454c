"""Lane-by-lane Monte Carlo of the shipped sender and the joint lane/leader cartel.

The same semantics as `mechanism.lanechain` (docs/mechanism.md §6, §16), simulated with
lane identities for any N: trials are rows of numpy arrays (trials × lanes), the Python
loop runs over slots only. It does not import the exact models, so it is their
independent check, and it covers what they cannot (large N with q < 1, censoring
leaders under the ratchet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechanism.montecarlo import Interval, binomial_ci

POLICIES = ("fresh", "fixed", "keep_redeemed")
DISSEMINATION = ("carried", "certified")
MAX_LANES = 4096
_CHUNK_CELLS = 1 << 22  # trials × lanes per chunk (memory bound)


@dataclass(frozen=True)
class SimSetup:
    lanes: int
    m: int
    kappa: int
    withholding: frozenset[int] = frozenset()
    censoring: frozenset[int] = frozenset()
    q: float = 1.0
    policy: str = "keep_redeemed"
    feedback_slots: int = 1
    dissemination: str = "carried"
    first_leader: int | None = 0  # None: uniform over validators, per trial
    max_lag: int = 6

    def __post_init__(self) -> None:
        object.__setattr__(self, "withholding", frozenset(self.withholding))
        object.__setattr__(self, "censoring", frozenset(self.censoring))
        if not 1 <= self.lanes <= MAX_LANES or not 1 <= self.m <= self.lanes:
            raise ValueError(f"need 1 <= m <= lanes <= {MAX_LANES}")
        if self.kappa < 1 or not 0.0 < self.q <= 1.0:
            raise ValueError("need kappa >= 1 and q in (0, 1]")
        if self.policy not in POLICIES or self.dissemination not in DISSEMINATION:
            raise ValueError("unknown policy or dissemination")
        if not 1 <= self.feedback_slots <= 32 or not 0 <= self.max_lag <= 64:
            raise ValueError("feedback_slots in 1..32 and max_lag in 0..64")
        for lane in self.withholding | self.censoring:
            if not 0 <= lane < self.lanes:
                raise ValueError(f"lane {lane} outside 0..{self.lanes - 1}")

    @property
    def t_star(self) -> int:
        return -(-self.kappa // self.m)


@dataclass(frozen=True)
class SimResult:
    trials: int
    lag_counts: tuple[int, ...]  # lag 0..max_lag, then undecided within the horizon
    lead_counts: tuple[int, ...]  # among decoded: lead 0..max_lag
    delayed: int
    leader_early: int
    races: int

    def ci(self, count: int, level: float = 0.99) -> Interval:
        return binomial_ci(count, self.trials, level)

    @property
    def p_delay(self) -> float:
        return self.delayed / self.trials


def _choose(rng: np.random.Generator, candidates: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Per row, a uniform subset of `need[row]` of the True entries of `candidates`
    (all of them when there are fewer)."""
    keys = np.where(candidates, rng.random(candidates.shape), np.inf)
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return candidates & (ranks < need[:, None])


def simulate(setup: SimSetup, trials: int, seed: int) -> SimResult:
    """Simulate `trials` payloads for t* + max_lag slots."""
    if not 1 <= trials <= 10**8:
        raise ValueError("trials must be in 1..10^8")
    rng = np.random.Generator(np.random.PCG64(seed))
    rows = max(1, _CHUNK_CELLS // setup.lanes)
    lag = np.zeros(setup.max_lag + 2, dtype=np.int64)
    lead = np.zeros(setup.max_lag + 1, dtype=np.int64)
    early = races = 0
    done = 0
    while done < trials:  # bounded: ceil(trials / rows) chunks
        size = min(rows, trials - done)
        out = _chunk(setup, rng, size)
        lag += np.bincount(out["lag"], minlength=setup.max_lag + 2)
        decoded = out["lag"] <= setup.max_lag
        lead += np.bincount(out["lead"][decoded], minlength=setup.max_lag + 1)[
            : setup.max_lag + 1
        ]
        early += int(np.count_nonzero(out["early"] & decoded))
        races += int(np.count_nonzero(out["race"] & decoded))
        done += size
    return SimResult(
        trials=trials,
        lag_counts=tuple(int(v) for v in lag),
        lead_counts=tuple(int(v) for v in lead),
        delayed=int(lag[1:].sum()),
        leader_early=early,
        races=races,
    )


def _chunk(setup: SimSetup, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    n, m, kappa, d = setup.lanes, setup.m, setup.kappa, setup.feedback_slots
    t_star = setup.t_star
    horizon = t_star + setup.max_lag
    lanes = np.arange(n)
    withholding = np.isin(lanes, sorted(setup.withholding))
    censoring = np.isin(lanes, sorted(setup.censoring))
    cartel = withholding | censoring
    carried = setup.dissemination == "carried"
    all_rows = np.ones((size, n), dtype=bool)
    full = np.full(size, m)
    addressed = _choose(rng, all_rows, full)
    excluded = np.zeros((size, n), dtype=bool)
    ever = addressed.copy()
    missed_hist = np.zeros((d, size, n), dtype=bool)  # misses of the last d slots (ring)
    finalized = np.zeros(size, dtype=np.int64)
    pool = np.zeros(size, dtype=np.int64)
    deferred = np.zeros(size, dtype=np.int64)
    never = horizon + 1
    t_chain = np.full(size, never, dtype=np.int64)
    t_cart = np.full(size, never, dtype=np.int64)
    early = np.zeros(size, dtype=bool)
    race = np.zeros(size, dtype=bool)
    if setup.first_leader is None:
        first_leader = rng.integers(0, n, size=size)
    else:
        first_leader = np.full(size, setup.first_leader)
    rows = np.arange(size)
    for slot in range(1, horizon + 1):  # bounded by t* + max_lag
        live = t_chain == never
        if setup.policy == "fresh" and slot > 1:
            addressed = _choose(rng, all_rows, full)
        elif setup.policy == "keep_redeemed" and slot > d:
            seen = missed_hist[(slot - d) % d] & ~excluded
            excluded = excluded | seen
            gone = addressed & seen
            addressed = addressed & ~gone
            need = gone.sum(axis=1)
            # never-addressed lanes first, then non-excluded lanes not addressed
            pick = _choose(rng, ~ever, need)
            need = need - pick.sum(axis=1)
            addressed |= pick
            pick = _choose(rng, ~excluded & ~addressed, need)
            need = need - pick.sum(axis=1)
            addressed |= pick
            short = need > 0
            if np.any(short):  # nothing left: the exclusions reset
                excluded[short] = False
                pick = _choose(rng, ~addressed, need)
                addressed |= pick
            ever |= addressed
        honest_addr = addressed & ~withholding
        included = honest_addr & (rng.random((size, n)) < setup.q) if setup.q < 1.0 else honest_addr
        withheld = (addressed & withholding).sum(axis=1)
        leader = (first_leader + slot - 1) % n
        censored = censoring[leader]
        own = included[rows, leader]
        inc_count = included.sum(axis=1)
        fin = np.where(censored, own.astype(np.int64), inc_count + deferred)
        if carried:
            lost = np.where(censored, inc_count - own, 0)
            new_pool = pool + withheld + lost
            new_def = deferred * 0
            redeemed = np.where(censored[:, None], included & (lanes[None, :] == leader[:, None]), included)
        else:
            new_pool = pool + withheld
            new_def = np.where(censored, deferred + inc_count - own, 0)
            redeemed = included
        before_known = finalized + pool + deferred
        finalized_new = finalized + fin
        known = finalized_new + new_pool + new_def
        t_cart = np.where(live & (t_cart == never) & (known >= kappa), slot, t_cart)
        decodes = live & (finalized_new >= kappa)
        t_chain = np.where(decodes, slot, t_chain)
        leader_in_cartel = cartel[leader]
        early |= decodes & carried & leader_in_cartel
        lanes_race = before_known + (addressed & cartel[None, :]).sum(axis=1) >= kappa
        race |= decodes & (
            (t_cart < slot) | (carried & leader_in_cartel) | (not carried) | lanes_race
        )
        finalized, pool, deferred = finalized_new, new_pool, new_def
        missed_hist[slot % d] = addressed & ~redeemed
    lag = np.minimum(t_chain - t_star, setup.max_lag + 1)
    lead = np.clip(t_chain - t_cart, 0, setup.max_lag)
    return {"lag": lag, "lead": lead, "early": early, "race": race}
