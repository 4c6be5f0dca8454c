"""Sensitivity: parameters designed for an estimated β, facing the actual β.

docs/mechanism.md §17. A designer fixes (κ, m, ratchet) and a bounty b for a cartel
fraction β_design; the cartel that shows up has some other β. For each actual β this
reports the delay probability, the bounty each cartel strategy would need, and what the
best-responding cartel expects to gain per transaction at the designed bounty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mechanism import delay, race, response
from mechanism.params import EconParams, SednaParams

COLUMNS = (
    "beta_actual",
    "beta_design",
    "kappa",
    "m",
    "ratchet",
    "p_delay",
    "p_race",
    "bounty_design",
    "bounty_withhold_all",
    "bounty_threshold",
    "bounty_best_response",
    "best_response_gain_at_design",
)


@dataclass(frozen=True)
class Design:
    """The designed point: the lane model at β_design and the bounty per pivotal bundle."""

    params: SednaParams
    bounty: float

    def __post_init__(self) -> None:
        if not (self.bounty >= 0.0 and math.isfinite(self.bounty)):
            raise ValueError(f"designed bounty must be finite and >= 0, got {self.bounty}")


def design_vs_actual(
    design: Design, econ: EconParams, actual_betas: Sequence[float], max_lag: int = 3
) -> list[dict[str, Any]]:
    """One row per actual β (see COLUMNS): delay and race probabilities, the ex-ante
    bounties of the withhold-all, threshold and best-response cartels, and the best
    response's expected gain per transaction at the designed bounty [value]."""
    rows = []
    for beta in actual_betas:  # bounded by the caller's grid
        p = design.params.with_(beta=beta)
        try:
            p_race = race.p_race(p)
        except ValueError:
            p_race = None
        row: dict[str, Any] = {
            "beta_actual": beta,
            "beta_design": design.params.beta,
            "kappa": p.kappa,
            "m": p.m,
            "ratchet": p.ratchet,
            "p_delay": delay.p_delay(p),
            "p_race": p_race,
            "bounty_design": design.bounty,
        }
        for strategy in ("withhold_all", "threshold", "best_response"):
            row[f"bounty_{strategy}"] = response.bounty(p, econ, strategy, max_lag=max_lag).bounty
        row["best_response_gain_at_design"] = response.expected_gain(
            p, econ, design.bounty, "best_response", max_lag=max_lag
        )
        rows.append(row)
    return rows
