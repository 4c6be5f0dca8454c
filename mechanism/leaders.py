"""Leader cartels with fresh addressing, exactly, for any number of validators.

docs/mechanism.md §16. The semantics are those of `mechanism.lanechain` (which also covers
the fixed lane set and the ratchet, lane by lane, for small N); here lanes are counted by
class, so N is unbounded:

* validators are lanes (lane i = validator i); the cartel holds `withholding` lanes that
  withhold every bundle of the payload, `censoring` validators whose own lanes are honest
  and which censor when they lead (`drop_lane_blocks`), and `both` validators that do
  both;
* the leader of each of the payload's slots is given by a schedule of leader kinds
  ("h" honest, "w" withholding lane, "c" censoring with an honest lane, "cw" both), e.g.
  round robin from the payload's first slot (`round_robin_kinds`);
* fresh addressing: m distinct lanes drawn uniformly every slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from mechanism import tails
from mechanism.lanechain import DISSEMINATION, LaneOutcome, unit_interval

KINDS = ("h", "w", "c", "cw")


@dataclass(frozen=True)
class LeaderCartel:
    """N validators (= lanes), fresh addressing of m lanes per slot, κ to decode."""

    lanes: int
    m: int
    kappa: int
    withholding: int = 0
    censoring: int = 0
    both: int = 0
    q: float = 1.0
    dissemination: str = "carried"
    max_lag: int = 6

    def __post_init__(self) -> None:
        if self.lanes < 1 or not 1 <= self.m <= self.lanes or self.kappa < 1:
            raise ValueError("need lanes >= 1, 1 <= m <= lanes and kappa >= 1")
        counts = (self.withholding, self.censoring, self.both)
        if min(counts) < 0 or sum(counts) > self.lanes:
            raise ValueError(
                f"cartel counts must be >= 0 and sum to at most lanes={self.lanes}, got {counts}"
            )
        if not 0.0 < self.q <= 1.0:
            raise ValueError(f"q must be in (0, 1], got {self.q}")
        if self.dissemination not in DISSEMINATION:
            raise ValueError(f"dissemination must be one of {DISSEMINATION}")
        if not 0 <= self.max_lag <= 64:
            raise ValueError(f"max_lag must be in 0..64, got {self.max_lag}")

    @property
    def t_star(self) -> int:
        return -(-self.kappa // self.m)

    def count(self, kind: str) -> int:
        return {
            "w": self.withholding,
            "c": self.censoring,
            "cw": self.both,
            "h": self.lanes - self.withholding - self.censoring - self.both,
        }[kind]


def round_robin_kinds(
    lanes: int,
    withholding: Iterable[int],
    censoring: Iterable[int],
    first_leader: int,
    slots: int,
) -> tuple[str, ...]:
    """Leader kinds of the payload's slots 1..slots: validator (first_leader + j − 1) mod N
    leads slot j (round robin by round; with no timeouts a height's leader is the next
    validator in order)."""
    w, c = set(withholding), set(censoring)
    out = []
    for j in range(slots):
        v = (first_leader + j) % lanes
        out.append(("cw" if v in w else "c") if v in c else ("w" if v in w else "h"))
    return tuple(out)


@cache
def _slot_kernel(
    setup: LeaderCartel, kind: str
) -> tuple[tuple[int, int, int, int, float], ...]:
    """One slot led by a `kind` leader: (withheld, honest bundles included by lanes other
    than the leader, leader's own bundle included (0/1), cartel lanes addressed, prob)."""
    n, m, q = setup.lanes, setup.m, setup.q
    own_withholds = kind in ("w", "cw")
    # The other N − 1 lanes by class: withholding (w, cw), cartel with honest lanes (c),
    # honest (h).
    others = {k: setup.count(k) - (1 if k == kind else 0) for k in KINDS}
    n_wo = others["w"] + others["cw"]
    n_ch = others["c"]
    n_h = others["h"]
    out: dict[tuple[int, int, int, int], float] = {}
    for leader_addr, p_lead in ((1, m / n), (0, 1.0 - m / n)):
        if p_lead <= 0.0:
            continue
        draws = m - leader_addr
        log_denominator = _log_comb(n - 1, draws)
        for x_wo in range(min(n_wo, draws) + 1):
            for x_ch in range(min(n_ch, draws - x_wo) + 1):
                x_h = draws - x_wo - x_ch
                if x_h > n_h or x_h < 0:
                    continue
                log_p = (
                    _log_comb(n_wo, x_wo)
                    + _log_comb(n_ch, x_ch)
                    + _log_comb(n_h, x_h)
                    - log_denominator
                )
                p_addr = p_lead * math.exp(log_p)
                withheld = x_wo + (leader_addr if own_withholds else 0)
                cartel_addr = x_wo + x_ch + (leader_addr if kind != "h" else 0)
                own_options = ((0, 1.0),)
                if leader_addr and not own_withholds:
                    own_options = ((1, q), (0, 1.0 - q)) if q < 1.0 else ((1, 1.0),)
                inc_pmf = _binom(x_ch + x_h, q)
                for own, p_own in own_options:
                    if p_own <= 0.0:
                        continue
                    for inc, p_inc in enumerate(inc_pmf):
                        if p_inc <= 0.0:
                            continue
                        key = (withheld, inc, own, cartel_addr)
                        out[key] = out.get(key, 0.0) + p_addr * p_own * p_inc
    return tuple((*k, v) for k, v in out.items())


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _binom(trials: int, q: float) -> list[float]:
    if q >= 1.0:
        return [0.0] * trials + [1.0]
    return [math.exp(v) for v in tails.log_binom_pmf(trials, q)]


def predict(setup: LeaderCartel, kinds: Sequence[str]) -> LaneOutcome:
    """Exact lag, lead and early-decode distributions for a payload whose slots are led by
    leaders of the given kinds (at least t* + max_lag of them)."""
    horizon = setup.t_star + setup.max_lag
    if len(kinds) < horizon:
        raise ValueError(f"need leader kinds for {horizon} slots, got {len(kinds)}")
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"leader kind must be one of {KINDS}, got {kind!r}")
        if setup.count(kind) < 1:
            raise ValueError(f"no validator of kind {kind!r} can lead")
    kappa, t_star = setup.kappa, setup.t_star
    carried = setup.dissemination == "carried"
    lag = [0.0] * (setup.max_lag + 1)
    lead = [0.0] * (setup.max_lag + 1)
    early = race = 0.0
    # state: (finalized S, pooled P (capped at κ), certified-not-cut D, t_cart)
    states: dict[tuple[int, int, int, int], float] = {(0, 0, 0, 0): 1.0}
    for slot in range(1, horizon + 1):  # bounded horizon
        kind = kinds[slot - 1]
        censored = kind in ("c", "cw")
        nxt: dict[tuple[int, int, int, int], float] = {}
        for (s_fin, pool, deferred, t_cart), w in states.items():
            for withheld, inc, own, cartel_addr, p in _slot_kernel(setup, kind):
                prob = w * p
                if censored and carried:
                    fin, new_pool, new_def = own, pool + withheld + inc, deferred
                elif censored:
                    fin, new_pool, new_def = own, pool + withheld, deferred + inc
                else:
                    fin, new_pool, new_def = inc + own + deferred, pool + withheld, 0
                s_new = s_fin + fin
                known = s_new + new_pool + new_def
                tc = t_cart or (slot if known >= kappa else 0)
                if s_new >= kappa:
                    lag[slot - t_star] += prob
                    lead[slot - tc] += prob
                    lead_early = carried and kind != "h"
                    lanes_race = s_fin + pool + deferred + cartel_addr >= kappa
                    if lead_early:
                        early += prob
                    if slot > tc or lead_early or not carried or lanes_race:
                        race += prob
                    continue
                key = (s_new, min(new_pool, kappa), new_def, tc)
                nxt[key] = nxt.get(key, 0.0) + prob
        states = nxt
    return LaneOutcome(
        lag_pmf=tuple(lag),
        lead_pmf=tuple(lead),
        p_undecided=float(sum(states.values())),
        p_leader_early=unit_interval(early),
        p_race=unit_interval(race),
    )


def predict_round_robin(
    setup: LeaderCartel, positions: Sequence[str], first_leaders: Sequence[int] | None = None
) -> LaneOutcome:
    """Average over payload starts under round robin. positions[v] is validator v's kind
    (len N, with the setup's counts); first_leaders: the payloads' first-slot leaders
    (default: every validator once, i.e. a uniformly random start)."""
    n = setup.lanes
    if len(positions) != n:
        raise ValueError(f"positions must list {n} validator kinds")
    for kind in KINDS:
        if sum(1 for k in positions if k == kind) != setup.count(kind):
            raise ValueError("positions do not match the setup's cartel counts")
    starts = list(range(n)) if first_leaders is None else list(first_leaders)
    horizon = setup.t_star + setup.max_lag
    acc_lag = [0.0] * (setup.max_lag + 1)
    acc_lead = [0.0] * (setup.max_lag + 1)
    undecided = early = race = 0.0
    cache_by_kinds: dict[tuple[str, ...], LaneOutcome] = {}
    for start in starts:  # bounded by the number of payloads
        kinds = tuple(positions[(start + j) % n] for j in range(horizon))
        out = cache_by_kinds.get(kinds)
        if out is None:
            out = cache_by_kinds[kinds] = predict(setup, kinds)
        weight = 1.0 / len(starts)
        acc_lag = [a + weight * b for a, b in zip(acc_lag, out.lag_pmf, strict=True)]
        acc_lead = [a + weight * b for a, b in zip(acc_lead, out.lead_pmf, strict=True)]
        undecided += weight * out.p_undecided
        early += weight * out.p_leader_early
        race += weight * out.p_race
    return LaneOutcome(tuple(acc_lag), tuple(acc_lead), undecided, early, race)


def censoring_bound_cuts(consecutive_censors: int) -> int:
    """Certified mode: an omitted lane block reaches a cut at most this many heights after
    its own (the next honest leader), with at most `consecutive_censors` censoring leaders
    in a row (round robin: the longest run of cartel validators in the schedule)."""
    if consecutive_censors < 0:
        raise ValueError("consecutive_censors must be >= 0")
    return consecutive_censors
