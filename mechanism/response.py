"""The cartel's best response and the bounty that makes honesty a best response to it.

docs/mechanism.md §8a. A dynamic programme over slots and the chain's and the cartel's
counts, with the cartel's holdings observed each slot. The cartel's payoff is

    U = V(L) + f·R + b·Π

with L = T_chain − T_cart its lead [slots] (V(0) = 0; `EconParams.lead_value`), R the
cartel bundles redeemed in their slot (fee f each) and Π the cartel bundles in the
pivotal set under PIVOT-K Variant R (bounty b each, in expectation over the public
lottery: every finalized bundle of the slots before the decode slot T, and a uniform
κ − S_{T−1} of slot T's finalized bundles). Honesty (withhold nothing) has L = 0.

Lane models: fresh (binomial or hypergeometric per slot), fixed (the slot-1 holdings
repeat), and the ratchet (keep_redeemed, instant feedback d = 1, unbounded lanes: the
withheld positions and the honest lanes that missed are refilled by fresh draws), and the
ratchet with feedback d >= 2 when q = 1 (unbounded lanes; `_solve_q_one_latency`). The
ratchet with finite lanes, or with d >= 2 and q < 1, is not covered (`ValueError`).

Information: "ex-ante" — when it acts in a slot the cartel knows its holdings and the
past, not whether this slot's honest lanes will include (expectation over them). "ex-post"
— it also knows this slot's honest inclusions before acting. They coincide when q = 1.

With q = 1 the state is (lane state, S): the cartel holds every addressed bundle that is
not finalized, so T_cart = t* exactly. With q < 1 the state adds the cartel's count K.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mechanism import tails
from mechanism.params import EconParams, SednaParams

STRATEGIES = ("withhold_all", "threshold", "last_slot", "best_response")
FIXED_STRATEGIES = ("withhold_all", "threshold", "last_slot")
INFORMATION = ("ex-ante", "ex-post")
_MAX_WORK = 60_000_000  # element operations per DP run (q < 1)
_TIE = 1e-12  # relative margin for "strictly better" (round-off)
_BISECTION_STEPS = 60
_BISECTION_REL = 1e-7  # relative precision of a best-response bounty
_NO_BOUNTY = 1e6  # a deviation still profitable at b = 10^6·V: no bounty deters it (inf)


@dataclass(frozen=True)
class StrategyValue:
    """Expected components of the cartel's payoff under one policy.

    lead_value: E[V(L)] [value]; redeemed: E[R] [bundles]; pivotal: E[Π] [bundles];
    p_lead: P(L >= 1); p_undecided: P(the chain has not decoded by the horizon).
    """

    lead_value: float
    redeemed: float
    pivotal: float
    p_lead: float
    p_undecided: float
    max_gain: float = 0.0  # best response only: largest conditional gain at an
    # information state reachable under honest play (0: honesty is a best response)
    binding: tuple[float, float, float] | None = None  # at that state, the best
    # deviation's (ΔV(L), ΔR, ΔΠ) against withholding nothing there

    def payoff(self, fee: float, bounty: float) -> float:
        return self.lead_value + fee * self.redeemed + bounty * self.pivotal


@dataclass
class Policy:
    """The best response's withholding, as tables: actions[slot] maps (lane state, holdings)
    to an array of withheld counts over the count state (q = 1: over S; q < 1: over (S, K)
    for the cartel not yet decoded and (S, ℓ) after; see `best_response`)."""

    q_one: bool
    tables: dict[tuple[int, int, int, str], np.ndarray] = field(default_factory=dict)
    # Ratchet with feedback d >= 2: lane state y indexes `states`, tuples (a, b_1..b_{d−1})
    # of clean cartel lanes and cartel lanes whose miss is not yet seen, addressed r more slots.
    states: tuple[tuple[int, ...], ...] = ()

    def withheld(self, slot: int, lane_state: int, holdings: int, key: tuple[int, ...]) -> int:
        """w for a state: key = (S,) when q = 1, (S, K) or (S, ℓ) with part "A"/"B"."""
        if self.q_one:
            return int(self.tables[(slot, lane_state, holdings, "A")][key[0]])
        part, *idx = key
        return int(self.tables[(slot, lane_state, holdings, str(part))][tuple(idx)])


# --------------------------------------------------------------------------- the model


def _check(params: SednaParams) -> None:
    latency_ok = params.q == 1.0 and params.lanes is None  # _solve_q_one_latency
    if params.ratchet and (params.lanes is not None
                           or (params.feedback_slots != 1 and not latency_ok)):
        raise ValueError(
            "best response with the ratchet: unbounded lanes only, and q = 1 when "
            "feedback_slots >= 2 (finite lanes: a cartel of c >= m lanes makes the "
            "best-response bounty infinite for d >= 2 by reduction to the fixed lane set, "
            "docs/mechanism.md §8a; `sedna mech ratchet` gives the withhold-all "
            "counterfactual bounty)"
        )


def _holdings_pmf(params: SednaParams) -> np.ndarray:
    if params.lanes is None:
        return np.exp(tails.log_binom_pmf(params.m, params.beta))
    return np.exp(tails.log_hypergeom_pmf(params.lanes, params.cartel_lanes or 0, params.m))


def _lane_states(params: SednaParams) -> int:
    """Number of lane states y: 1 for fresh (holdings drawn anew), m + 1 otherwise (y = X)."""
    fresh = not params.ratchet and params.addressing == "fresh" and params.lanes != params.m
    return 1 if fresh else params.m + 1


def _uses_state(params: SednaParams) -> bool:
    return _lane_states(params) > 1


def _fixed_action(strategy: str, params: SednaParams, threshold: int | None):
    theta = threshold if threshold is not None else params.slack + 1

    def action(slot: int, holdings: int) -> int:
        if strategy == "withhold_all":
            return holdings
        if strategy == "threshold":
            return holdings if holdings >= theta else 0
        if strategy == "last_slot":
            return holdings if slot >= params.t_star else 0
        if strategy == "honest":
            return 0
        raise ValueError(f"strategy must be one of {FIXED_STRATEGIES}, got {strategy!r}")

    return action


def _ratchet_next(params: SednaParams) -> list[np.ndarray]:
    """pmf of Bin(f, β) for f = 0..m: the cartel lanes among f refilled positions."""
    return [np.exp(tails.log_binom_pmf(fresh, params.beta)) for fresh in range(params.m + 1)]


def _refill_expectation(pmfs: list[np.ndarray], nxt: np.ndarray) -> np.ndarray:
    """cont[f, k] = Σ_j Bin(f, β)(j)·nxt[k + j] for k + f <= m (other rows are unused):
    one matrix product with the stacked refill matrices T[f][k, y'] = P(k + Bin(f,β) = y')."""
    size = nxt.shape[0]
    trans = np.zeros((size, size, size))
    for f, pmf in enumerate(pmfs):  # bounded by m + 1
        for k in range(size - f):
            trans[f, k, k : k + f + 1] = pmf
    flat = nxt.reshape(size, -1)
    return (trans.reshape(size * size, size) @ flat).reshape(size, size, *nxt.shape[1:])


def solve(
    params: SednaParams,
    econ: EconParams,
    bounty: float,
    strategy: str = "best_response",
    information: str = "ex-ante",
    max_lag: int = 4,
    threshold: int | None = None,
    keep_policy: bool = False,
) -> tuple[StrategyValue, Policy | None]:
    """Expected payoff components of `strategy` (a fixed one, "honest", or the best
    response at this bounty), by backward induction over t* + max_lag slots."""
    _check(params)
    if information not in INFORMATION:
        raise ValueError(f"information must be one of {INFORMATION}, got {information!r}")
    if strategy not in (*STRATEGIES, "honest"):
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not 0 <= max_lag <= 64:
        raise ValueError(f"max_lag must be in 0..64, got {max_lag}")
    if bounty < 0 or not np.isfinite(bounty):
        raise ValueError(f"bounty must be finite and >= 0, got {bounty}")
    action = None if strategy == "best_response" else _fixed_action(strategy, params, threshold)
    if params.q == 1.0 and params.ratchet and params.feedback_slots > 1:
        return _solve_q_one_latency(params, econ, bounty, action, max_lag, keep_policy)
    if params.q == 1.0:
        return _solve_q_one(params, econ, bounty, action, max_lag, keep_policy)
    return _solve_general(params, econ, bounty, action, information, max_lag, keep_policy)


# Components carried through the DP: 0 lead value, 1 redeemed, 2 pivotal, 3 P(lead >= 1),
# 4 P(undecided at the horizon).
_C = 5


def _pick(
    candidates: list[np.ndarray], fee: float, bounty: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elementwise best of the candidate component stacks (candidate i withholds i; the
    first wins ties: less withholding). Returns (components, index chosen, gain of the
    chosen over candidate 0 = withholding nothing now and playing optimally after)."""
    totals = np.stack([c[0] + fee * c[1] + bounty * c[2] for c in candidates])
    best = np.zeros(totals.shape[1:], dtype=np.int64)
    top = totals[0].copy()
    scale = _TIE * max(1.0, float(np.max(np.abs(totals))))
    for i in range(1, len(candidates)):  # strict improvement beyond round-off
        better = totals[i] > top + scale
        best = np.where(better, i, best)
        top = np.where(better, totals[i], top)
    stack = np.stack(candidates)
    chosen = np.take_along_axis(stack, best[None, None, ...], axis=0)[0]
    return chosen, best, top - totals[0]


def _solve_q_one(
    params: SednaParams,
    econ: EconParams,
    bounty: float,
    action: Callable[[int, int], int] | None,
    max_lag: int,
    keep_policy: bool,
) -> tuple[StrategyValue, Policy | None]:
    """q = 1: the state is (lane state y, S); every withholding choice w = 0..x at once."""
    m, kappa, t_star = params.m, params.kappa, params.t_star
    horizon = t_star + max_lag
    fee = econ.fee
    y_count = _lane_states(params)
    x_pmf = _holdings_pmf(params)
    trans = _ratchet_next(params) if params.ratchet else None
    s_idx = np.arange(kappa)[None, :]
    # nxt[y, c, S]: components from the start of the next slot, chain undecoded at S < κ.
    nxt = np.zeros((y_count, _C, kappa))
    nxt[:, 4, :] = 1.0  # past the horizon: undecided
    policy = Policy(q_one=True) if keep_policy else None
    max_gain, binding = 0.0, None
    for slot in range(horizon, 0, -1):  # backward induction
        cur = np.zeros_like(nxt)
        honest_s = (slot - 1) * m  # honest play with q = 1: S is known exactly
        lead_step = econ.lead_value(slot - t_star + 1) - econ.lead_value(slot - t_star)
        cont = None
        if trans is not None:  # cont[f, k, c, S] = E nxt[k + Bin(f, β), c, S]
            cont = _refill_expectation(trans, nxt)
        for y in range(y_count):
            holdings = range(m + 1) if y_count == 1 else (y,)
            acc = np.zeros((_C, kappa))
            for x in holdings:
                px = x_pmf[x] if y_count == 1 else 1.0
                if px == 0.0:
                    continue
                ws = np.arange(x + 1) if action is None else np.array([action(slot, x)])
                included = (x - ws)[:, None].astype(float)
                s_new = s_idx + m - ws[:, None]
                done = s_new >= kappa
                live = ~done
                share = np.where(done, (kappa - s_idx) / np.maximum(m - ws[:, None], 1), 1.0)
                comp = np.zeros((_C, len(ws), kappa))
                comp[1] = included
                comp[2] = included * np.minimum(share, 1.0)
                if slot >= t_star:  # K = slot·m >= κ: the cartel holds κ bundles
                    comp[0] = np.where(live, lead_step, 0.0)
                    comp[3] = np.where(live & (slot == t_star), 1.0, 0.0)
                idx = np.minimum(s_new, kappa - 1)
                if cont is None:
                    base = nxt[y if y_count > 1 else 0]  # (C, κ)
                    follow = base[:, idx]  # (C, W, κ)
                else:
                    rows = cont[ws, x - ws]  # (W, C, κ)
                    follow = np.take_along_axis(rows, idx[:, None, :], axis=2).transpose(1, 0, 2)
                comp += np.where(live[None], follow, 0.0)
                if action is None:
                    totals = comp[0] + fee * comp[1] + bounty * comp[2]  # (W, κ)
                    margin = _TIE * max(1.0, float(np.max(np.abs(totals))))
                    best = np.argmax(totals - margin * (ws[:, None] > 0), axis=0)
                    chosen = np.take_along_axis(comp, best[None, None, :], axis=1)[:, 0, :]
                    if policy is not None:
                        policy.tables[(slot, y, x, "A")] = best
                    if honest_s < kappa and x_pmf[x] > 0.0:
                        gain = float(totals[best[honest_s], honest_s] - totals[0, honest_s])
                        if gain > max_gain:
                            diff = comp[:3, best[honest_s], honest_s] - comp[:3, 0, honest_s]
                            max_gain, binding = gain, tuple(float(v) for v in diff)
                else:
                    chosen = comp[:, 0, :]
                acc += px * chosen
            cur[y] = acc
        nxt = cur
    start = nxt[:, :, 0]  # S = 0 at slot 1
    comp0 = start[0] if y_count == 1 else np.einsum("y,yc->c", x_pmf, start)
    return _value(comp0, max_gain, binding), policy


_MAX_LATENCY_STATES = 5000


def latency_states(m: int, d: int) -> list[tuple[int, ...]]:
    """Lane states of the ratchet with feedback d >= 2 and q = 1: (a, b_1, …, b_{d−1}), a the
    clean cartel lanes addressed, b_r the cartel lanes whose miss the sender has not seen
    yet and that are addressed r more slots (this one included); a + Σ b <= m."""
    out: list[tuple[int, ...]] = []

    def go(prefix: tuple[int, ...], left: int) -> None:
        if len(prefix) == d:
            out.append(prefix)
            return
        for v in range(left + 1):
            go((*prefix, v), left - v)

    go((), m)
    return out


def _solve_q_one_latency(
    params: SednaParams,
    econ: EconParams,
    bounty: float,
    action: Callable[[int, int], int] | None,
    max_lag: int,
    keep_policy: bool,
) -> tuple[StrategyValue, Policy | None]:
    """q = 1, unbounded lanes, the ratchet with feedback d >= 2 (docs/mechanism.md §6, §8a).

    Honest lanes never miss, so only cartel lanes change. A withheld bundle of a clean
    cartel lane makes it "doomed": addressed d − 1 more slots, then replaced by a fresh lane
    (cartel w.p. β). Withholding a doomed lane's bundle changes nothing further, so the
    cartel withholds from its doomed lanes first (a clean cartel lane is worth at least an
    honest one: it can always include). Transition for w withheld in state (a, b_1..b_{d−1}):
    w_a = max(0, w − Σb) clean lanes become doomed (b'_{d−1} = w_a), b'_r = b_{r+1}, and the
    b_1 lanes leave: a' = a − w_a + Bin(b_1, β)."""
    m, kappa, t_star, d = params.m, params.kappa, params.t_star, params.feedback_slots
    count = math.comb(m + d, d)  # tuples of d non-negative counts with sum <= m
    if count > _MAX_LATENCY_STATES:
        raise ValueError(f"best response with feedback d = {d}: {count} lane states "
                         f"(> {_MAX_LATENCY_STATES}); use a smaller m or d")
    states = latency_states(m, d)
    index = {st: i for i, st in enumerate(states)}
    horizon = t_star + max_lag
    fee = econ.fee
    x_pmf = _holdings_pmf(params)
    refill = _ratchet_next(params)  # Bin(f, β) pmfs, f = 0..m
    s_idx = np.arange(kappa)[None, :]
    nxt = np.zeros((len(states), _C, kappa))
    nxt[:, 4, :] = 1.0  # past the horizon: undecided
    policy = Policy(q_one=True, states=tuple(states)) if keep_policy else None
    max_gain, binding = 0.0, None
    for slot in range(horizon, 0, -1):  # backward induction
        cur = np.zeros_like(nxt)
        honest_s = (slot - 1) * m
        lead_step = econ.lead_value(slot - t_star + 1) - econ.lead_value(slot - t_star)
        for y, (a, *b) in enumerate(states):
            doomed = sum(b)
            x = a + doomed
            ws = np.arange(x + 1) if action is None else np.array([action(slot, x)])
            included = (x - ws)[:, None].astype(float)
            s_new = s_idx + m - ws[:, None]
            done = s_new >= kappa
            live = ~done
            share = np.where(done, (kappa - s_idx) / np.maximum(m - ws[:, None], 1), 1.0)
            comp = np.zeros((_C, len(ws), kappa))
            comp[1] = included
            comp[2] = included * np.minimum(share, 1.0)
            if slot >= t_star:
                comp[0] = np.where(live, lead_step, 0.0)
                comp[3] = np.where(live & (slot == t_star), 1.0, 0.0)
            idx = np.minimum(s_new, kappa - 1)
            pmf = refill[b[0]]
            follow = np.zeros((_C, len(ws), kappa))
            for i, w in enumerate(ws.tolist()):
                wa = max(0, w - doomed)
                shifted = (*b[1:], wa)
                rows = [index[(a - wa + j, *shifted)] for j in range(len(pmf))]
                row = np.tensordot(pmf, nxt[rows], axes=1)  # (C, κ): E over the refill
                follow[:, i, :] = row[:, idx[i]]
            comp += np.where(live[None], follow, 0.0)
            if action is None:
                totals = comp[0] + fee * comp[1] + bounty * comp[2]
                margin = _TIE * max(1.0, float(np.max(np.abs(totals))))
                best = np.argmax(totals - margin * (ws[:, None] > 0), axis=0)
                chosen = np.take_along_axis(comp, best[None, None, :], axis=1)[:, 0, :]
                if policy is not None:
                    policy.tables[(slot, y, x, "A")] = best
                # reachable under honest play: no doomed lanes, holdings in the support
                if doomed == 0 and honest_s < kappa and x_pmf[x] > 0.0:
                    gain = float(totals[best[honest_s], honest_s] - totals[0, honest_s])
                    if gain > max_gain:
                        diff = comp[:3, best[honest_s], honest_s] - comp[:3, 0, honest_s]
                        max_gain, binding = gain, tuple(float(v) for v in diff)
            else:
                chosen = comp[:, 0, :]
            cur[y] = chosen
        nxt = cur
    start = np.stack([nxt[index[(x, *([0] * (d - 1)))], :, 0] for x in range(m + 1)])
    comp0 = np.einsum("x,xc->c", x_pmf, start)
    return _value(comp0, max_gain, binding), policy


def _reachable(params: SednaParams, x_pmf: np.ndarray, y: int, x: int) -> bool:
    """Holdings x in lane state y occur under honest play (fresh: x in the support;
    fixed/ratchet with honest play: the slot-1 holdings persist, y = x)."""
    return bool(x_pmf[x] > 0.0)


def _value(
    comp: np.ndarray, max_gain: float = 0.0, binding: tuple[float, float, float] | None = None
) -> StrategyValue:
    return StrategyValue(
        lead_value=float(comp[0]),
        redeemed=float(comp[1]),
        pivotal=float(comp[2]),
        p_lead=float(min(1.0, max(0.0, comp[3]))),
        p_undecided=float(min(1.0, max(0.0, comp[4]))),
        max_gain=max_gain,
        binding=binding,
    )


def _solve_general(
    params: SednaParams,
    econ: EconParams,
    bounty: float,
    action: Callable[[int, int], int] | None,
    information: str,
    max_lag: int,
    keep_policy: bool,
) -> tuple[StrategyValue, Policy | None]:
    """q < 1. States before the cartel decodes: A[S, K], S <= K < κ; after: B[S, ℓ],
    ℓ = lead slots accrued so far (1..horizon)."""
    m, kappa, t_star, q = params.m, params.kappa, params.t_star, params.q
    horizon = t_star + max_lag
    fee = econ.fee
    y_count = _lane_states(params)
    x_pmf = _holdings_pmf(params)
    pairs = (m + 1) * (m + 2) * (m + 3) // 6  # Σ_x (x+1)(m−x+1): (w, h) pairs per slot
    work = horizon * (y_count if y_count == 1 else m + 1) * pairs * kappa * (kappa + horizon)
    work //= 1 if y_count == 1 else (m + 1)
    if work > _MAX_WORK:
        raise ValueError(
            f"best response with q < 1: the exact DP is too large here (κ={kappa}, m={m}); "
            "use q = 1 or smaller κ, m"
        )
    s_grid = np.arange(kappa)[:, None]
    k_grid = np.arange(kappa)[None, :]
    l_grid = np.arange(horizon + 2)[None, :]
    h_pmfs = [np.exp(tails.log_binom_pmf(m - x, q)) for x in range(m + 1)]
    lead_step = [econ.lead_value(ell + 1) - econ.lead_value(ell) for ell in range(horizon + 2)]
    step_b = np.array(lead_step)[None, :]  # reward when ℓ -> ℓ+1
    nxt_a = np.zeros((y_count, _C, kappa, kappa))
    nxt_b = np.zeros((y_count, _C, kappa, horizon + 2))
    nxt_a[:, 4] = 1.0
    nxt_b[:, 4] = 1.0
    ratchet = params.ratchet
    policy = Policy(q_one=False) if keep_policy else None
    gains: list[tuple[float, tuple[float, float, float] | None]] = [(0.0, None)]
    for slot in range(horizon, 0, -1):  # backward induction
        cur_a = np.zeros_like(nxt_a)
        # Honest play keeps K = S; S <= (slot−1)·m; fixed/ratchet lane states: honest play
        # keeps the lanes that include (ratchet: honest misses are refilled, so any y).
        cur_b = np.zeros_like(nxt_b)
        for y in range(y_count):
            holdings = range(m + 1) if y_count == 1 else (y,)
            for x in holdings:
                px = x_pmf[x] if y_count == 1 else 1.0
                if px == 0.0:
                    continue
                ws = range(x + 1) if action is None else (action(slot, x),)
                by_h_a: list[list[np.ndarray]] = []  # [w][h] components (A)
                by_h_b: list[list[np.ndarray]] = []
                for w in ws:
                    row_a, row_b = [], []
                    for h, ph in enumerate(h_pmfs[x]):
                        if ph == 0.0:
                            row_a.append(None)
                            row_b.append(None)
                            continue
                        inc = x - w + h
                        follow_a, follow_b = _follow(
                            params, nxt_a, nxt_b, y, y_count, x, w, h, ratchet
                        )
                        ca, cb = _slot_components(
                            kappa, horizon, inc, x - w, h, x, s_grid, k_grid, l_grid,
                            lead_step, step_b, follow_a, follow_b,
                        )
                        row_a.append(ca)
                        row_b.append(cb)
                    by_h_a.append(row_a)
                    by_h_b.append(row_b)
                chosen_a, chosen_b = _choose_general(
                    by_h_a, by_h_b, h_pmfs[x], information, action is None, fee, bounty,
                    policy, (slot, y, x), gains, min(kappa, (slot - 1) * m + 1),
                    x_pmf[x] > 0.0 or params.ratchet,
                )
                cur_a[y] += px * chosen_a
                cur_b[y] += px * chosen_b
        nxt_a, nxt_b = cur_a, cur_b
    start = nxt_a[:, :, 0, 0]
    comp = start[0] if y_count == 1 else np.einsum("y,yc->c", x_pmf, start)
    best_gain, best_diff = max(gains, key=lambda g: g[0])
    return _value(comp, best_gain, best_diff), policy


def _follow(params, nxt_a, nxt_b, y, y_count, x, w, h, ratchet):
    """Continuation arrays for the next slot's lane state."""
    if y_count == 1:
        return nxt_a[0], nxt_b[0]
    if not ratchet:
        return nxt_a[y], nxt_b[y]
    cartel_kept = x - w  # cartel lanes that included; h honest lanes are kept too
    fresh = params.m - cartel_kept - h  # withheld and missed positions, refilled
    pmf = np.exp(tails.log_binom_pmf(fresh, params.beta))
    ys = cartel_kept + np.arange(fresh + 1)
    return (
        np.tensordot(pmf, nxt_a[ys], axes=(0, 0)),
        np.tensordot(pmf, nxt_b[ys], axes=(0, 0)),
    )


def _slot_components(
    kappa, horizon, inc, included, h, x, s_grid, k_grid, l_grid, lead_step, step_b,
    follow_a, follow_b,
):
    """Components of one slot outcome for every A state (S, K) and B state (S, ℓ)."""
    s_new = s_grid + inc
    done = s_new >= kappa
    live = ~done
    share = np.where(done, (kappa - s_grid) / max(inc, 1), 1.0)
    s_idx = np.minimum(s_new, kappa - 1)
    # A states: K' = K + x + h
    k_new = k_grid + x + h
    to_b = live & (k_new >= kappa)
    ca = np.zeros((_C, *np.broadcast_shapes(s_grid.shape, k_grid.shape)))
    ca[1] = included
    ca[2] = included * np.minimum(share, 1.0)
    ca[0] = np.where(to_b, lead_step[0], 0.0)
    ca[3] = np.where(to_b, 1.0, 0.0)
    k_idx = np.minimum(k_new, kappa - 1)
    stay = follow_a[:, s_idx, k_idx]
    go_b = follow_b[:, s_idx, np.ones_like(k_idx)]
    ca += np.where(live & ~to_b, stay, 0.0) + np.where(to_b, go_b, 0.0)
    # B states: ℓ -> ℓ + 1
    cb = np.zeros((_C, s_grid.shape[0], l_grid.shape[1]))
    cb[1] = included
    cb[2] = included * np.minimum(share, 1.0)
    cb[0] = np.where(live, step_b, 0.0)
    l_idx = np.minimum(l_grid + 1, horizon + 1)
    cb += np.where(live, follow_b[:, np.broadcast_to(s_idx, (s_idx.shape[0], l_grid.shape[1])),
                                  np.broadcast_to(l_idx, (s_idx.shape[0], l_grid.shape[1]))], 0.0)
    return ca, cb


def _choose_general(
    by_h_a, by_h_b, h_pmf, information, optimize, fee, bounty, policy, key, gains, s_reach,
    reachable,
):
    """Expectation over honest inclusions h with the max over w outside (ex-ante) or
    inside (ex-post) it; appends to `gains` the largest gain at the honest-reachable states
    (K = S < s_reach)."""
    diag = np.arange(s_reach)
    def expect(rows: list) -> np.ndarray:
        total = None
        for comp, ph in zip(rows, h_pmf, strict=True):
            if comp is None:
                continue
            total = ph * comp if total is None else total + ph * comp
        assert total is not None
        return total

    if not optimize:
        return expect(by_h_a[0]), expect(by_h_b[0])
    if information == "ex-ante":
        best_a, idx_a, gain_a = _pick([expect(r) for r in by_h_a], fee, bounty)
        best_b, idx_b, _ = _pick([expect(r) for r in by_h_b], fee, bounty)
        if policy is not None:
            policy.tables[(*key, "A")] = idx_a
            policy.tables[(*key, "B")] = idx_b
        if reachable:
            gains.append(_diag_gain(gain_a, best_a, expect(by_h_a[0]), diag))
        return best_a, best_b
    total_a = total_b = None
    for h, ph in enumerate(h_pmf):
        if ph == 0.0:
            continue
        pa, _, gain_a = _pick([row[h] for row in by_h_a], fee, bounty)
        pb, _, _ = _pick([row[h] for row in by_h_b], fee, bounty)
        if reachable:
            gains.append(_diag_gain(gain_a, pa, by_h_a[0][h], diag))
        total_a = ph * pa if total_a is None else total_a + ph * pa
        total_b = ph * pb if total_b is None else total_b + ph * pb
    return total_a, total_b


def _diag_gain(gain, chosen, honest_now, diag):
    """(largest gain on the states K = S in diag, its (ΔV, ΔR, ΔΠ))."""
    values = gain[diag, diag]
    i = int(np.argmax(values))
    diff = chosen[:3, diag[i], diag[i]] - honest_now[:3, diag[i], diag[i]]
    return float(values[i]), tuple(float(v) for v in diff)


# --------------------------------------------------------------------------- bounties


@dataclass(frozen=True)
class BountyResult:
    """The bounty per pivotal bundle that makes honesty a best response to `strategy`.

    bounty: smallest b [value] with E[U(strategy)] <= E[U(honest)] (for best_response:
    no deviation gains in expectation, i.e. at any reachable information state); inf when
    no bounty suffices (the strategy gains while losing no pivotal bundle).
    gain_at_zero: the strategy's expected gain over honesty with no bounty [value].
    value / honest: the components at `bounty` (best response: its policy at that b).
    """

    strategy: str
    information: str
    bounty: float
    gain_at_zero: float
    value: StrategyValue
    honest: StrategyValue


def expected_gain(
    params: SednaParams,
    econ: EconParams,
    bounty: float,
    strategy: str = "best_response",
    information: str = "ex-ante",
    max_lag: int = 4,
    threshold: int | None = None,
) -> float:
    """E[U(strategy)] − E[U(honest)] at this bounty [value]."""
    v, _ = solve(params, econ, bounty, strategy, information, max_lag, threshold)
    h, _ = solve(params, econ, bounty, "honest", information, max_lag)
    return v.payoff(econ.fee, bounty) - h.payoff(econ.fee, bounty)


def bounty(
    params: SednaParams,
    econ: EconParams,
    strategy: str = "best_response",
    information: str = "ex-ante",
    max_lag: int = 4,
    threshold: int | None = None,
    gain_tolerance: float = 0.0,
) -> BountyResult:
    """The bounty per pivotal bundle that makes honesty a best response to `strategy`.

    Fixed strategies: b = (E[V(L)] − f·(R_h − R_σ)) / (Π_h − Π_σ), exact. Best response:
    the smallest b at which its expected gain is <= gain_tolerance·V (0: exact IC), by
    bisection (the gain is convex, non-increasing in b).
    """
    honest, _ = solve(params, econ, 0.0, "honest", information, max_lag)
    fee = econ.fee
    if strategy != "best_response":
        value, _ = solve(params, econ, 0.0, strategy, information, max_lag, threshold)
        gain = value.lead_value - fee * (honest.redeemed - value.redeemed)
        lost = honest.pivotal - value.pivotal
        if gain <= 0.0:
            b = 0.0
        elif lost <= 1e-15 * max(1.0, honest.pivotal):
            b = float("inf")
        else:
            b = gain / lost
        return BountyResult(strategy, information, b, gain, value, honest)
    scale = max(econ.value_lead, max(econ.lead_curve or (0.0,)), 1e-300)

    def gain_at(b: float) -> tuple[float, StrategyValue]:
        """The deterrence test at b: with gain_tolerance = 0, the largest conditional gain
        at an honest-reachable state (exact IC, whatever that state's probability);
        otherwise the expected gain."""
        v, _ = solve(params, econ, b, "best_response", information, max_lag)
        if gain_tolerance > 0.0:
            return v.payoff(fee, b) - honest.payoff(fee, b), v
        return v.max_gain, v

    tol = gain_tolerance * scale if gain_tolerance > 0.0 else 1e-9 * scale
    g0, v0 = gain_at(0.0)
    expected0 = v0.payoff(fee, 0.0) - honest.payoff(fee, 0.0)
    if g0 <= tol:
        return BountyResult(strategy, information, 0.0, expected0, v0, honest)
    if gain_tolerance == 0.0:
        return _newton_bounty(params, econ, information, max_lag, honest, scale, tol, expected0)
    hi = scale
    g_hi, v_hi = gain_at(hi)
    while g_hi > tol:  # bounded: a gain with no pivotal loss never vanishes
        hi *= 4.0
        if hi > _NO_BOUNTY * scale:
            return BountyResult(strategy, information, float("inf"), expected0, v_hi, honest)
        g_hi, v_hi = gain_at(hi)
    lo = 0.0
    for _ in range(_BISECTION_STEPS):  # invariant: gain(lo) > tol >= gain(hi)
        mid = 0.5 * (lo + hi)
        g_mid, v_mid = gain_at(mid)
        if g_mid > tol:
            lo = mid
        else:
            hi, v_hi = mid, v_mid
        if hi - lo <= _BISECTION_REL * hi:
            break
    return BountyResult(strategy, information, hi, expected0, v_hi, honest)


def _newton_bounty(params, econ, information, max_lag, honest, scale, tol, expected0):
    """Exact IC: the largest conditional gain G(b) over honest-reachable states is convex,
    piecewise linear and non-increasing in b (a maximum of A − b·D over deviations). From
    b = 0, jump to the break-even of the deviation binding at b: b' = (ΔV + fΔR)/(−ΔΠ);
    each step is a root of one linear piece below the root of G, so it ends in as many
    steps as pieces it meets (a handful)."""
    fee = econ.fee
    b = 0.0
    for _ in range(200):  # bounded: each step crosses at least one linear piece
        v, _ = solve(params, econ, b, "best_response", information, max_lag)
        if v.max_gain <= tol:
            return BountyResult("best_response", information, b, expected0, v, honest)
        assert v.binding is not None
        d_value, d_redeemed, d_pivotal = v.binding
        if d_pivotal >= -1e-12 * max(1.0, abs(d_value)):
            return BountyResult("best_response", information, math.inf, expected0, v, honest)
        nxt = (d_value + fee * d_redeemed) / -d_pivotal
        b = max(nxt, b * (1.0 + 1e-12) + 1e-300)
        if b > _NO_BOUNTY * scale:
            return BountyResult("best_response", information, math.inf, expected0, v, honest)
    raise ValueError("best-response bounty did not converge")
