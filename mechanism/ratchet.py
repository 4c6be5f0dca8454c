"""The adaptive sender ratchet, with and without (docs/mechanism.md §6).

Our ratchet: lanes that redeemed are kept, a lane whose ticket was not redeemed is
excluded for this transaction and replaced by a never-addressed lane. Each cartel lane can
therefore withhold at most once, and the chain's deficit is the first slot's cartel holdings
plus the (geometrically fewer) cartel lanes among the replacements. With t* = 1 nothing can
be replaced before the horizon and the ratchet changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechanism import delay, dist, pivot, response
from mechanism.params import EconParams, SednaParams


@dataclass(frozen=True)
class RatchetComparison:
    t_star: int
    slack: int
    p_delay_fresh: float
    p_delay_fixed: float
    p_delay_ratchet: float
    p_first_slot_deficit: float
    p_delay_last_slot: float | None
    bounty_ex_ante_fresh: float
    bounty_ex_ante_ratchet: float
    bounty_reduction: float | None
    bounty_ex_post: float
    bounty_best_response_fresh: float | None
    bounty_best_response_ratchet: float | None
    lag_tail_fresh: tuple[float, ...]
    lag_tail_ratchet: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def first_slot_deficit_tail(params: SednaParams) -> float:
    """P(Z_1 >= Δ+1): slot-1 misses alone exceed the slack (a lower bound under the ratchet)."""
    m, q = params.m, params.q
    if params.lanes is None:
        z = dist.binom_pmf(m, params.r)
    else:
        x_pmf = dist.hypergeom_pmf(params.lanes, params.cartel_lanes or 0, m)
        z = np.zeros(m + 1)
        for x, px in enumerate(x_pmf):  # mixture over the slot's cartel count
            z[x:] += px * dist.binom_pmf(m - x, 1.0 - q)
    return float(np.sum(z[params.slack + 1 :]))


def _withhold_all_bounty(params: SednaParams, econ: EconParams) -> float:
    """Ex-ante bounty against withhold-all: the exact payoff model (mechanism.response)
    where it applies, else the counterfactual closed form (pivot.bounty_ex_ante)."""
    try:
        return response.bounty(params, econ, "withhold_all").bounty
    except ValueError:
        return pivot.bounty_ex_ante(params, econ).bounty


def _best_response_bounty(params: SednaParams, econ: EconParams) -> float | None:
    """Exact-IC best-response bounty when q = 1 (fast); None where not modelled or q < 1."""
    if params.q < 1.0:
        return None
    try:
        return response.bounty(params, econ).bounty
    except ValueError:
        return None


def compare(params: SednaParams, econ: EconParams, max_lag: int = 3) -> RatchetComparison:
    """Withhold-all cartel: fresh lanes, a fixed lane set, and the ratchet side by side."""
    fresh = params.with_(ratchet=False, addressing="fresh")
    fixed = params.with_(ratchet=False, addressing="fixed")
    with_r = params.with_(ratchet=True)
    b_fresh = _withhold_all_bounty(fresh, econ)
    b_ratchet = _withhold_all_bounty(with_r, econ)
    last = delay.p_delay_last_slot_ratchet(with_r) if params.q == 1.0 else None
    return RatchetComparison(
        t_star=params.t_star,
        slack=params.slack,
        p_delay_fresh=delay.p_delay(fresh),
        p_delay_fixed=delay.p_delay(fixed),
        p_delay_ratchet=delay.p_delay(with_r),
        p_first_slot_deficit=first_slot_deficit_tail(params),
        p_delay_last_slot=last,
        bounty_ex_ante_fresh=b_fresh,
        bounty_ex_ante_ratchet=b_ratchet,
        bounty_reduction=(b_fresh / b_ratchet) if b_ratchet > 0 else None,
        bounty_ex_post=pivot.bounty_ex_post(fresh, econ).bounty,
        bounty_best_response_fresh=_best_response_bounty(fresh, econ),
        bounty_best_response_ratchet=_best_response_bounty(with_r, econ),
        lag_tail_fresh=delay.lag_distribution(fresh, max_lag).tail,
        lag_tail_ratchet=delay.lag_distribution(with_r, max_lag).tail,
    )
