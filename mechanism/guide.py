"""Parameter guidance: recommend (κ, m, Δ) and the bounty (docs/mechanism.md §11).

Search every m <= m_max, t* <= t_max and Δ in 1..m−1 (Δ = 0 is the knife edge and is
never recommended), κ = t*·m − Δ. Keep the candidates whose exact P_delay and P_race at
β_max meet the targets. Rank by the MEV cost Γ (bounty plus race term, per unit of v),
then by the coding overhead n/κ, then by smaller κ and m.
"""

from __future__ import annotations

from dataclasses import dataclass

from mechanism import delay, pivot, race
from mechanism.params import EconParams, GuideTargets, SednaParams


@dataclass(frozen=True)
class Recommendation:
    kappa: int
    m: int
    t_star: int
    slack: int
    p_delay: float
    p_race: float
    bounty_per_bundle: float
    bounty_total: float
    gamma: float
    overhead: float
    candidates_checked: int
    candidates_feasible: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _bounty(p: SednaParams, econ: EconParams, form: str) -> float:
    if form == "ex-ante":
        return pivot.bounty_ex_ante(p, econ).bounty
    # Ex post against all partial deviations, scaled for the randomized decode-slot pivot.
    b = pivot.bounty_ex_post(p, econ).bounty
    return p.m / (p.m - p.slack) * b


# The one default of the library and the CLI: the ex-post bound against partial
# deviations, scaled for the randomized decode-slot pivot (docs/mechanism.md §11).
DEFAULT_BOUNTY_FORM = "ex-post"


def recommend(
    targets: GuideTargets,
    econ: EconParams,
    ratchet: bool = True,
    bounty_form: str = DEFAULT_BOUNTY_FORM,
) -> Recommendation:
    """The best feasible (κ, m, Δ); ValueError when nothing in the grid meets the targets."""
    if bounty_form not in ("ex-post", "ex-ante"):
        raise ValueError(f"bounty_form must be 'ex-post' or 'ex-ante', got {bounty_form!r}")
    feasible: list[tuple[tuple[float, float, int, int], SednaParams, float, float]] = []
    checked = 0
    t_min = 2 if ratchet and targets.t_max >= 2 else 1  # the ratchet acts only when t* >= 2
    for m in range(2, targets.m_max + 1):  # bounded grid
        for t in range(t_min, targets.t_max + 1):
            for slack in range(1, m):
                kappa = t * m - slack
                if targets.kappa is not None and kappa != targets.kappa:
                    continue
                checked += 1
                p = SednaParams(kappa, m, targets.beta_max, targets.q, ratchet=ratchet)
                pr = race.p_race(p)
                if pr > targets.eps_race:
                    continue
                pd = delay.p_delay(p)
                if pd > targets.eps_delay:
                    continue
                b = _bounty(p, econ, bounty_form)
                cost = pivot.mev_cost_fraction(p, econ, b, pr)["gamma"]
                feasible.append(((cost, p.n / kappa, kappa, m), p, pd, pr))
    if not feasible:
        raise ValueError(
            f"no (kappa, m, slack) with m <= {targets.m_max}, t* <= {targets.t_max} meets "
            f"eps_delay={targets.eps_delay}, eps_race={targets.eps_race} at "
            f"beta_max={targets.beta_max}"
        )
    key, best, pd, pr = min(feasible, key=lambda item: item[0])
    b = _bounty(best, econ, bounty_form)
    return Recommendation(
        kappa=best.kappa,
        m=best.m,
        t_star=best.t_star,
        slack=best.slack,
        p_delay=pd,
        p_race=pr,
        bounty_per_bundle=b,
        bounty_total=best.kappa * b,
        gamma=key[0],
        overhead=key[1],
        candidates_checked=checked,
        candidates_feasible=len(feasible),
    )
