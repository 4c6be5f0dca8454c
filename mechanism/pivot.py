"""PIVOT-K: the pivotal set and the bounty that makes withholding unprofitable.

docs/mechanism.md §7-§8. Notation: V lead value, f ticket fee, b bounty per pivotal
bundle, B = κ·b, π the probability a bundle is pivotal given it is included.
A withheld bundle forfeits f + b·π (its ticket expires at the end of its slot); the
cartel gains V times the increase in the delay probability its withholding causes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mechanism import delay
from mechanism.params import EconParams, SednaParams

PIVOT_RULES = ("canonical", "random")


def pivotal_set(
    bundles_by_slot: Sequence[Sequence[int]],
    kappa: int,
    rule: str = "canonical",
    seed: int | None = None,
) -> tuple[int | None, tuple[int, ...]]:
    """(decode slot index, pivotal bundle ids) for finalized bundles listed per slot.

    bundles_by_slot[s] lists slot s's finalized bundle ids in the canonical order ≺
    (lane-block position, then bundle index). canonical: the first κ bundles in ≺.
    random (Variant R): every bundle of the slots before the decode slot, plus κ − S_{T−1}
    bundles of the decode slot chosen with public randomness (here a seeded generator).
    Returns (None, ()) when fewer than κ bundles were finalized.
    """
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    if rule not in PIVOT_RULES:
        raise ValueError(f"rule must be one of {PIVOT_RULES}, got {rule!r}")
    seen: set[int] = set()
    before: list[int] = []
    for slot, bundles in enumerate(bundles_by_slot):
        for b in bundles:
            if b in seen:  # a bundle is finalized once
                raise ValueError(f"bundle {b} listed twice")
            seen.add(b)
        if len(before) + len(bundles) >= kappa:
            need = kappa - len(before)
            if rule == "canonical":
                chosen = list(bundles[:need])
            else:
                rng = np.random.default_rng(seed)
                idx = np.sort(rng.choice(len(bundles), size=need, replace=False))
                chosen = [bundles[i] for i in idx]
            return slot, (*before, *chosen)
        before.extend(bundles)
    return None, ()


def decode_slot_pivot_probability(m: int, slack: int, rule: str, position: int | None) -> float:
    """π of a slot-t* bundle when all m are finalized (q = 1, honest run).

    canonical: 1 for positions 0..m−Δ−1 of ≺, 0 for the last Δ; random: (m−Δ)/m.
    """
    if not 0 <= slack < m:
        raise ValueError(f"slack must be in 0..m-1, got {slack}")
    if rule == "random":
        return (m - slack) / m
    if rule != "canonical":
        raise ValueError(f"rule must be one of {PIVOT_RULES}, got {rule!r}")
    if position is None or not 0 <= position < m:
        raise ValueError("canonical rule needs a position in 0..m-1")
    return 1.0 if position < m - slack else 0.0


def delay_increase(params: SednaParams, withheld: int) -> float:
    """P(D | j withheld) − P(D | none withheld), every other bundle honest with q.

    = P(Bin(n−j, 1−q) >= Δ+1−j) − P(Bin(n, 1−q) >= Δ+1).
    """
    n, slack, q = params.n, params.slack, params.q
    if not 0 <= withheld <= n:
        raise ValueError(f"withheld must be in 0..{n}, got {withheld}")
    with_j = float(stats.binom.sf(slack - withheld, n - withheld, 1.0 - q))
    base = float(stats.binom.sf(slack, n, 1.0 - q))
    return max(0.0, with_j - base)


def bounty_partial(params: SednaParams, econ: EconParams, withheld: int, pi: float = 1.0) -> float:
    """Smallest b with j(f + b·π) >= V·ΔP_j: b_j = max(0, (V·ΔP_j/j − f)/π).

    Ex-post IC against withholding exactly j bundles (all pivotal when π = 1).
    """
    if withheld < 1:
        raise ValueError(f"withheld must be >= 1, got {withheld}")
    if not 0.0 < pi <= 1.0:
        raise ValueError(f"pi must be in (0, 1], got {pi}")
    gain_per_bundle = econ.value_lead * delay_increase(params, withheld) / withheld
    return max(0.0, (gain_per_bundle - econ.fee) / pi)


@dataclass(frozen=True)
class PartialBounty:
    """b* = max_j b_j over deviations j = 1..holdings, and the binding j."""

    bounty: float
    binding_withheld: int
    per_j: tuple[float, ...]


def bounty_ex_post(
    params: SednaParams, econ: EconParams, holdings: int | None = None
) -> PartialBounty:
    """Ex-post IC against every partial deviation j <= holdings (transferable utility).

    holdings defaults to n (a coalition that might hold every bundle). With q = 1 the
    binding deviation is j = Δ+1 and b* = V/(Δ+1) − f.
    """
    top = params.n if holdings is None else holdings
    if not 1 <= top <= params.n:
        raise ValueError(f"holdings must be in 1..{params.n}, got {top}")
    js = np.arange(1, top + 1)
    n, slack, miss = params.n, params.slack, 1.0 - params.q
    with_j = stats.binom.sf(slack - js, n - js, miss)
    increase = np.maximum(0.0, with_j - float(stats.binom.sf(slack, n, miss)))
    per_j_arr = np.maximum(0.0, econ.value_lead * increase / js - econ.fee)
    best = int(np.argmax(per_j_arr))
    per_j = tuple(float(x) for x in per_j_arr)
    return PartialBounty(bounty=per_j[best], binding_withheld=best + 1, per_j=per_j)


def bounty_single(params: SednaParams, econ: EconParams) -> float:
    """Unilateral deviation by one lane with one bundle (π = 1)."""
    return bounty_partial(params, econ, 1)


def bounty_coalition(
    params: SednaParams,
    econ: EconParams,
    holdings: int,
    members: int,
    transferable: bool = True,
) -> float:
    """Coalition of `members` lanes holding `holdings` bundles.

    transferable: the coalition maximizes its joint payoff, so b* = max_{j<=holdings} b_j.
    non-transferable: V is split equally among all members and a withholding member
    deviates only if its share beats its own forfeit, V·ΔP_j/members > f + b; the designer
    needs b >= max_{j<=holdings} (V·ΔP_j/members − f); this is <= the transferable b*
    when members >= holdings.
    """
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    if not 1 <= holdings <= params.n:
        raise ValueError(f"holdings must be in 1..{params.n}, got {holdings}")
    if transferable:
        return bounty_ex_post(params, econ, holdings).bounty
    best = 0.0
    for j in range(1, holdings + 1):  # bounded by n
        share = econ.value_lead * delay_increase(params, j) / members
        best = max(best, share - econ.fee)
    return best


def bounty_pivot_gaming(params: SednaParams, econ: EconParams, rule: str) -> float:
    """Decode-slot deviation by a cartel holding Δ+1 bundles of slot t* (q = 1).

    canonical (worst case: the cartel's bundles are the last Δ in ≺ plus one pivotal):
        (Δ+1)·f + b >= V  ⇒  b >= V − (Δ+1)·f
    random (Variant R): each withheld bundle is pivotal w.p. (m−Δ)/m:
        (Δ+1)(f + b(m−Δ)/m) >= V  ⇒  b >= m/(m−Δ)·(V/(Δ+1) − f)
    """
    slack, m = params.slack, params.m
    if rule == "canonical":
        return max(0.0, econ.value_lead - (slack + 1) * econ.fee)
    if rule == "random":
        return max(0.0, m / (m - slack) * (econ.value_lead / (slack + 1) - econ.fee))
    raise ValueError(f"rule must be one of {PIVOT_RULES}, got {rule!r}")


@dataclass(frozen=True)
class ExAnteBounty:
    """IC_ante: V·(P_delay(policy) − P_delay(honest)) <= f·E[W] + b·E[Π].

    E[W]: expected bundles withheld by the horizon; E[Π]: expected withheld bundles that
    would have been pivotal (slots < t*: π = 1; slot t*: π = (m−Δ)/m).
    """

    bounty: float
    p_delay: float
    p_delay_honest: float
    expected_withheld: float
    expected_pivotal_withheld: float


def bounty_ex_ante(params: SednaParams, econ: EconParams) -> ExAnteBounty:
    """Ex-ante bounty against the non-adaptive withhold-all policy (with or without ratchet)."""
    p = delay.p_delay(params)
    p0 = delay.p_delay_honest(params)
    per_slot = delay.expected_withheld_by_slot(params)
    e_w = float(per_slot.sum())
    pi_last = (params.m - params.slack) / params.m
    e_pi = float(per_slot[:-1].sum() + per_slot[-1] * pi_last)
    gain = econ.value_lead * max(0.0, p - p0)
    if e_pi <= 0.0:
        b = 0.0 if gain <= econ.fee * e_w else float("inf")
    else:
        b = max(0.0, (gain - econ.fee * e_w) / e_pi)
    return ExAnteBounty(b, p, p0, e_w, e_pi)


def fee_deterring_alone(params: SednaParams, econ: EconParams) -> float:
    """Ticket fee at which no bounty is needed ex post: f >= max_j V·ΔP_j / j."""
    return bounty_ex_post(params, econ.__class__(value_lead=econ.value_lead)).bounty


def mev_cost_fraction(
    params: SednaParams, econ: EconParams, bounty_per_bundle: float, p_race: float
) -> dict[str, float]:
    """Γ = (B + V·P_delay^residual + V_race·P_race)/v with B = κ·b.

    The residual delay is the honest-only delay (incentive constraints hold, the cartel
    does not withhold); fees are ordinary inclusion cost and are excluded.
    """
    bounty_total = params.kappa * bounty_per_bundle
    residual = delay.p_delay_honest(params)
    gamma = (bounty_total + econ.value_lead * residual + econ.value_race * p_race) / econ.tx_value
    return {
        "bounty_total": bounty_total,
        "p_delay_residual": residual,
        "p_race": p_race,
        "gamma": gamma,
    }
