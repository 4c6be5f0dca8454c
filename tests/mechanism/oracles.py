"""Independent oracles in exact rational arithmetic (`fractions.Fraction`).

Nothing here imports `mechanism`: every number is computed from the model's rules by
enumeration, so a test comparing a closed form with an oracle compares two independent
implementations. Inputs that are floats are converted exactly (`Fraction(float)`), so the
oracle answers the question the float code was asked, with no rounding at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from functools import cache
from math import comb

Q = Fraction


def fr(x: float | int | Fraction) -> Fraction:
    return x if isinstance(x, Fraction) else Fraction(x)


def convolve(a: dict[int, Fraction], b: dict[int, Fraction]) -> dict[int, Fraction]:
    out: dict[int, Fraction] = {}
    for i, pa in a.items():
        for j, pb in b.items():
            out[i + j] = out.get(i + j, Q(0)) + pa * pb
    return out


def tail(pmf: dict[int, Fraction], a: int) -> Fraction:
    return sum((p for k, p in pmf.items() if k >= a), Q(0))


def binomial(n: int, p: Fraction) -> dict[int, Fraction]:
    return {k: comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)}


def hypergeometric(total: int, good: int, draws: int) -> dict[int, Fraction]:
    denom = comb(total, draws)
    return {
        k: Q(comb(good, k) * comb(total - good, draws - k), denom)
        for k in range(draws + 1)
        if comb(good, k) * comb(total - good, draws - k)
    }


def binomial_tail(a: int, n: int, p: float | Fraction) -> Fraction:
    """P(Bin(n, p) >= a)."""
    return tail(binomial(n, fr(p)), a)


def slot_misses(m: int, cartel_pmf: dict[int, Fraction], q: Fraction, withheld) -> dict:
    """One slot's misses: w(x) withheld of x cartel bundles plus honest misses."""
    out: dict[int, Fraction] = {}
    for x, px in cartel_pmf.items():
        w = withheld(x)
        for h, ph in binomial(m - x, 1 - q).items():
            out[w + h] = out.get(w + h, Q(0)) + px * ph
    return out


def fresh_delay(
    m: int,
    t_star: int,
    a: int,
    q: float,
    beta: float | None = None,
    lanes: int | None = None,
    cartel: int = 0,
    withheld_by_slot: Callable[[int, int], int] | None = None,
) -> Fraction:
    """P(M_{t*} >= a), fresh addressing; binomial (beta) or hypergeometric (lanes, cartel)."""
    qf = fr(q)
    x_pmf = binomial(m, fr(beta)) if lanes is None else hypergeometric(lanes, cartel, m)
    total = {0: Q(1)}
    rule = withheld_by_slot or (lambda _s, x: x)
    for slot in range(1, t_star + 1):
        total = convolve(total, slot_misses(m, x_pmf, qf, lambda x, s=slot: rule(s, x)))
    return tail(total, a)


def fixed_delay(m: int, t_star: int, a: int, q: float, beta: float) -> Fraction:
    """One lane set reused: M = t*·X + Bin(t*(m − X), 1−q), X ~ Bin(m, β)."""
    qf, bf = fr(q), fr(beta)
    total = Q(0)
    for x, px in binomial(m, bf).items():
        total += px * tail(binomial(t_star * (m - x), 1 - qf), a - t_star * x)
    return total


def ratchet_position_misses(slots: int, beta: float, q: float, feedback: int) -> dict:
    """Misses of one position over `slots` slots (ratchet, unbounded lanes, withhold-all),
    by enumerating every lane history: a lane is drawn (cartel w.p. β), is addressed until
    `feedback` slots after its first miss, then a new lane is drawn."""
    bf, qf = fr(beta), fr(q)

    @cache
    def go(left: int, lane: str | None, doomed_left: int | None) -> tuple:
        # lane: None (draw a new one), "c" cartel, "h" honest; doomed_left: slots the
        # lane is still addressed after its first miss (None: no miss yet).
        if left == 0:
            return ((0, Q(1)),)
        out: dict[int, Fraction] = {}

        def add(prob: Fraction, miss: int, nxt: tuple) -> None:
            for k, p in go(left - 1, *nxt):
                out[k + miss] = out.get(k + miss, Q(0)) + prob * p

        if lane is None:
            if bf:
                after = (None, None) if feedback == 1 else ("c", feedback - 1)
                add(bf, 1, after)
            if bf < 1:
                after = (None, None) if feedback == 1 else ("h", feedback - 1)
                if qf < 1:
                    add((1 - bf) * (1 - qf), 1, after)
                if qf:
                    add((1 - bf) * qf, 0, ("h", None))
            return tuple(out.items())
        if doomed_left is None:  # an honest lane with no miss yet
            after = (None, None) if feedback == 1 else ("h", feedback - 1)
            if qf < 1:
                add(1 - qf, 1, after)
            if qf:
                add(qf, 0, ("h", None))
            return tuple(out.items())
        after = (None, None) if doomed_left == 1 else (lane, doomed_left - 1)
        if lane == "c":
            add(Q(1), 1, after)
        else:
            if qf < 1:
                add(1 - qf, 1, after)
            if qf:
                add(qf, 0, after)
        return tuple(out.items())

    return dict(go(slots, None, None))


def ratchet_unbounded_delay(m: int, slots: int, a: int, beta: float, q: float, d: int) -> Fraction:
    g = ratchet_position_misses(slots, beta, q, d)
    total = {0: Q(1)}
    for _ in range(m):
        total = convolve(total, g)
    return tail(total, a)


# --------------------------------------------------------------------------- lane by lane


def lane_delay(
    lanes: int,
    cartel: Iterable[int],
    m: int,
    kappa: int,
    slots: int,
    q: float,
    policy: str,
    feedback: int = 1,
) -> Fraction:
    """P(fewer than κ bundles finalized by the end of slot `slots`), lane by lane.

    policy "fresh": a uniform m-subset every slot; "fixed": one subset reused; "ratchet"
    (keep_redeemed): the same lanes are addressed slot after slot; the miss of a ticket of
    slot s is seen at the start of slot s + feedback, its lane is then excluded and its
    position refilled by one uniform draw after another from the never-addressed lanes,
    else from the non-excluded lanes not addressed this slot, else (none left) the
    exclusions are reset and the draw is from the lanes not addressed this slot.
    Cartel lanes withhold every bundle; honest lanes finalize theirs w.p. q.
    """
    qf = fr(q)
    cartel_set = frozenset(cartel)
    all_lanes = frozenset(range(lanes))

    def subsets(pool: frozenset[int], k: int):
        from itertools import combinations

        combos = list(combinations(sorted(pool), k))
        for combo in combos:
            yield frozenset(combo), Q(1, len(combos))

    def outcomes(addressed: frozenset[int]):
        from itertools import product

        honest = sorted(ln for ln in addressed if ln not in cartel_set)
        for pattern in product((True, False), repeat=len(honest)):
            prob = Q(1)
            missed = set(addressed & cartel_set)
            for ln, ok in zip(honest, pattern, strict=True):
                prob *= qf if ok else 1 - qf
                if not ok:
                    missed.add(ln)
            if prob:
                yield frozenset(missed), prob

    def refill(kept, excluded, ever, need):
        """Sequential uniform draws; yields (addressed, excluded, ever, probability)."""
        if need == 0:
            yield kept, excluded, ever, Q(1)
            return
        never = all_lanes - ever
        if never:
            cand, reset = never, False
        else:
            cand = all_lanes - excluded - kept
            reset = not cand
            if reset:
                cand = all_lanes - kept
        ex = frozenset() if reset else excluded
        for lane in sorted(cand):
            for out in refill(kept | {lane}, ex, ever | {lane}, need - 1):
                yield out[0], out[1], out[2], out[3] / len(cand)

    @cache
    def go(slot, missing, addressed, excluded, ever, history):
        # history: tuple of (slot, missed lanes) not yet seen by the sender.
        if policy == "ratchet":
            seen = [h for h in history if h[0] == slot - feedback]
            history = tuple(h for h in history if h[0] > slot - feedback)
            newly = frozenset()
            for _s, missed in seen:
                newly |= missed - excluded
            gone = addressed & newly
            excluded = excluded | newly
            total = Q(0)
            for addr, exc, ev, p in refill(addressed - gone, excluded, ever, len(gone)):
                total += p * step(slot, missing, addr, exc, ev, history)
            return total
        return step(slot, missing, addressed, excluded, ever, history)

    def step(slot, missing, addressed, excluded, ever, history):
        total = Q(0)
        for missed, p in outcomes(addressed):
            miss = missing + len(missed)
            if slot == slots:
                total += p * (1 if miss >= slots * m - kappa + 1 else 0)
                continue
            if policy == "fresh":
                total += p * sum(
                    (pp * go(slot + 1, miss, s, excluded, ever, ()) for s, pp in subsets(all_lanes, m)),
                    Q(0),
                )
            elif policy == "fixed":
                total += p * go(slot + 1, miss, addressed, excluded, ever, ())
            else:
                total += p * go(slot + 1, miss, addressed, excluded, ever, (*history, (slot, missed)))
        return total

    return sum(
        (p * go(1, 0, s, frozenset(), s, ()) for s, p in subsets(all_lanes, m)), Q(0)
    )
