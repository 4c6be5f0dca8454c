"""Monte Carlo of the cartel's payoff U = V(L) + f·R + b·Π under any withholding policy.

docs/mechanism.md §8a. The independent check of `mechanism.response`: it does not import
it; a policy comes in as a function of the observable state (or as the best response's
tables). Every trial draws its lanes, honest inclusions and the PIVOT-K Variant R lottery
(a uniform choice of the decode slot's pivotal bundles, drawn, not averaged), so the
pivotal count is simulated rather than taken in expectation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mechanism.params import EconParams, SednaParams

# decide(slot, lane_state, holdings, S, K, lead) -> withheld, elementwise over trials;
# lead = lead slots accrued at the start of this slot, slot − T_cart (−1: not yet).
Decide = Callable[[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PayoffEstimate:
    """Means over trials and their standard errors [value or bundles]."""

    trials: int
    payoff: float
    payoff_se: float
    lead_value: float
    redeemed: float
    pivotal: float
    p_lead: float

    def interval(self, z: float = 3.29) -> tuple[float, float]:
        return self.payoff - z * self.payoff_se, self.payoff + z * self.payoff_se


def fixed_policy(strategy: str, params: SednaParams, threshold: int | None = None) -> Decide:
    """The fixed strategies of docs/mechanism.md §12 as policies."""
    theta = params.slack + 1 if threshold is None else threshold
    t_star = params.t_star

    def decide(slot, _y, x, _s, _k, _lead):
        if strategy == "honest":
            return np.zeros_like(x)
        if strategy == "withhold_all":
            return x
        if strategy == "threshold":
            return np.where(x >= theta, x, 0)
        if strategy == "last_slot":
            return x if slot >= t_star else np.zeros_like(x)
        raise ValueError(f"unknown strategy {strategy!r}")

    return decide


def table_policy(policy, params: SednaParams) -> Decide:
    """A best-response policy from its tables (mechanism.response.Policy)."""
    kappa = params.kappa
    # With feedback d >= 2 the simulation passes its lane state as the code of the tuple
    # (a, b_1, …) (`lane_code`); the tables are indexed by the policy's own state list.
    by_code = {lane_code(st, params.m): i for i, st in enumerate(policy.states)}

    def decide(slot, y, x, s, k, lead):
        out = np.zeros_like(x)
        s = np.minimum(s, kappa - 1)  # finished trials: any index (their choice is unused)
        if by_code:
            y = np.array([by_code[int(v)] for v in y.tolist()], dtype=np.int64)
        for yy, xx in set(zip(y.tolist(), x.tolist(), strict=True)):
            rows = (y == yy) & (x == xx)
            if policy.q_one:
                table = policy.tables[(slot, yy, xx, "A")]
                out[rows] = table[np.minimum(s[rows], kappa - 1)]
                continue
            before = rows & (lead < 0)
            after = rows & (lead >= 0)
            if np.any(before):
                table = policy.tables[(slot, yy, xx, "A")]
                out[before] = table[s[before], np.minimum(k[before], kappa - 1)]
            if np.any(after):
                table = policy.tables[(slot, yy, xx, "B")]
                out[after] = table[s[after], np.minimum(lead[after], table.shape[1] - 1)]
        return out

    return decide


def lane_code(state: tuple[int, ...], m: int) -> int:
    """An integer for a lane state (a, b_1, …, b_{d−1}) of the ratchet with feedback d."""
    return sum(v * (m + 1) ** i for i, v in enumerate(state))


def simulate(
    params: SednaParams,
    econ: EconParams,
    bounty: float,
    decide: Decide,
    trials: int,
    seed: int,
    max_lag: int = 4,
) -> PayoffEstimate:
    """The cartel's payoff per transaction, simulated slot by slot."""
    latency = params.ratchet and params.feedback_slots > 1
    if params.ratchet and (params.lanes is not None or (latency and params.q < 1.0)):
        raise ValueError("payoff simulation: ratchet with unbounded lanes, and q = 1 when "
                         "the feedback latency d >= 2")
    rng = np.random.Generator(np.random.PCG64(seed))
    m, kappa, q, beta = params.m, params.kappa, params.q, params.beta_eff
    horizon = params.t_star + max_lag
    size = trials
    c = params.cartel_lanes or 0

    def draw(n: np.ndarray) -> np.ndarray:
        if params.lanes is None:
            return rng.binomial(n, beta)
        return rng.hypergeometric(c, params.lanes - c, n)

    keep = params.ratchet or params.addressing == "fixed" or params.lanes == m
    x = draw(np.full(size, m))
    d = params.feedback_slots
    # feedback d >= 2: clean cartel lanes, and cartel lanes by slots they stay addressed
    clean = x.copy()
    doomed = np.zeros((size, max(d - 1, 1)), dtype=np.int64)
    s_fin = np.zeros(size, dtype=np.int64)
    known = np.zeros(size, dtype=np.int64)
    t_cart = np.full(size, -1, dtype=np.int64)
    live = np.ones(size, dtype=bool)
    lead = np.zeros(size, dtype=np.int64)
    redeemed = np.zeros(size, dtype=np.int64)
    pivotal = np.zeros(size, dtype=np.int64)
    for slot in range(1, horizon + 1):  # bounded by t* + max_lag
        if slot > 1 and not keep:
            x = draw(np.full(size, m))
        y = x if keep else np.zeros_like(x)
        if latency:
            x = clean + doomed.sum(axis=1)
            y = clean + sum(doomed[:, r] * (m + 1) ** (r + 1) for r in range(d - 1))
        lead_now = np.where(t_cart >= 0, slot - t_cart, -1)  # lead slots accrued so far
        w = np.asarray(decide(slot, y, x, s_fin, known, lead_now), dtype=np.int64)
        w = np.where(live, np.clip(w, 0, x), 0)
        honest = m - x
        h = rng.binomial(honest, q) if q < 1.0 else honest
        included = x - w
        finalized = included + h
        s_new = s_fin + finalized
        decodes = live & (s_new >= kappa)
        # Variant R: slots before the decode slot are pivotal; in the decode slot a uniform
        # κ − S_{T−1} of its finalized bundles.
        need = np.clip(kappa - s_fin, 0, None)
        lottery = rng.hypergeometric(np.where(decodes, included, 0),
                                     np.where(decodes, h, 0),
                                     np.where(decodes, np.minimum(need, finalized), 0))
        pivotal += np.where(live, np.where(decodes, lottery, included), 0)
        redeemed += np.where(live, included, 0)
        known = np.where(live, known + x + h, known)
        t_cart = np.where(live & (t_cart < 0) & (known >= kappa), slot, t_cart)
        s_fin = np.where(live, s_new, s_fin)
        lead = np.where(decodes, slot - np.where(t_cart >= 0, t_cart, slot), lead)
        live &= ~decodes
        if latency:
            # a withheld bundle from a lane whose miss is already pending costs nothing more;
            # other withheld lanes stay addressed d − 1 slots, then fresh lanes replace them
            fresh_miss = np.maximum(0, w - doomed.sum(axis=1))
            leaving = doomed[:, 0]
            new_clean = clean - fresh_miss + draw(leaving)
            new_doomed = np.concatenate([doomed[:, 1:], fresh_miss[:, None]], axis=1)
            clean = np.where(live, new_clean, clean)
            doomed = np.where(live[:, None], new_doomed, doomed)
        elif params.ratchet:
            # withheld positions and honest lanes that missed are refilled by fresh lanes
            x = np.where(live, included + draw(w + honest - h), x)
    # Not decoded by the horizon: counted as decoding at horizon + 1 (a lower bound on the
    # lead), as the dynamic programme truncates.
    lead = np.where(live, np.where(t_cart >= 0, horizon + 1 - t_cart, 0), lead)
    values = np.array([econ.lead_value(int(v)) for v in range(horizon + 2)])
    lead_value = values[np.clip(lead, 0, horizon + 1)]
    payoff = lead_value + econ.fee * redeemed + bounty * pivotal
    return PayoffEstimate(
        trials=trials,
        payoff=float(payoff.mean()),
        payoff_se=float(payoff.std(ddof=1) / math.sqrt(trials)) if trials > 1 else math.inf,
        lead_value=float(lead_value.mean()),
        redeemed=float(redeemed.mean()),
        pivotal=float(pivotal.mean()),
        p_lead=float(np.mean(lead >= 1)),
    )
