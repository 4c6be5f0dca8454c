"""The delay sweep: P(D) vs cartel fraction, one curve per slack, bounds and Monte Carlo.

One tidy row per (slack, beta). Monte Carlo points use seed + (point index), so a seed
fixes every number in the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mechanism import bounds, delay, montecarlo
from mechanism.params import SednaParams

if TYPE_CHECKING:
    from campaign.executor import Executor

DELAY_COLUMNS = (
    "slack",
    "kappa",
    "m",
    "t_star",
    "beta",
    "q",
    "ratchet",
    "p_delay",
    "kl_upper",
    "kl_lower",
    "regime",
    "p_delay_mc",
    "ci_low",
    "ci_high",
    "trials",
)
MAX_GRID_POINTS = 20_000


@dataclass(frozen=True)
class SweepSpec:
    """A delay sweep grid. mc_every: run Monte Carlo on every k-th beta (0 = never)."""

    m: int
    t_star: int
    slacks: tuple[int, ...]
    betas: tuple[float, ...]
    q: float = 1.0
    lanes: int | None = None
    ratchet: bool = False
    trials: int = 20_000
    mc_every: int = 5

    def __post_init__(self) -> None:
        if self.t_star < 1:
            raise ValueError(f"t_star must be >= 1, got {self.t_star}")
        if not self.slacks or not self.betas:
            raise ValueError("slacks and betas must be non-empty")
        for s in self.slacks:
            if not 0 <= s < self.m:  # Δ = t*·m − κ lies in 0..m−1
                raise ValueError(f"every slack must be in 0..m-1, got {s}")
            if self.t_star * self.m - s < 1:
                raise ValueError(f"slack {s} leaves kappa < 1")
        if len(self.slacks) * len(self.betas) > MAX_GRID_POINTS:
            raise ValueError(f"grid too large (max {MAX_GRID_POINTS} points)")
        if self.trials < 1 or self.mc_every < 0:
            raise ValueError("trials must be >= 1 and mc_every >= 0")
        for b in self.betas:  # validates each beta, q, lanes, m
            SednaParams(self.t_star * self.m - self.slacks[0], self.m, b, self.q, self.lanes)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def delay_sweep(
    spec: SweepSpec, seed: int, executor: Executor | None = None
) -> list[dict[str, Any]]:
    """One row per (slack, beta); the Monte Carlo points run on `executor` (default: this
    process) and land in their rows in grid order, so the table is the same anywhere."""
    rows: list[dict[str, Any]] = []
    tasks: list[tuple[int, SednaParams, int, int]] = []  # (row, params, trials, seed)
    point = 0
    for slack in spec.slacks:
        kappa = spec.t_star * spec.m - slack
        for i, beta in enumerate(spec.betas):
            p = SednaParams(kappa, spec.m, beta, spec.q, spec.lanes, ratchet=spec.ratchet)
            b = bounds.delay_bounds(p)
            row: dict[str, Any] = {
                "slack": slack,
                "kappa": kappa,
                "m": spec.m,
                "t_star": spec.t_star,
                "beta": beta,
                "q": spec.q,
                "ratchet": spec.ratchet,
                "p_delay": delay.p_delay(p),
                "kl_upper": b.upper,
                "kl_lower": b.lower,
                "regime": b.regime,
            }
            if spec.mc_every and i % spec.mc_every == 0:
                tasks.append((len(rows), p, spec.trials, seed + point))
            point += 1
            rows.append(row)
    if executor is None:
        from campaign.executor import LocalExecutor

        executor = LocalExecutor(1)
    for (index, _p, trials, _seed), res in zip(
        tasks, executor.map(_monte_carlo_point, tasks, label="sweep-point"), strict=True
    ):
        rows[index].update(
            p_delay_mc=res.p_delay_mc, ci_low=res.ci_low, ci_high=res.ci_high, trials=trials
        )
    return rows


def _monte_carlo_point(task: tuple[int, SednaParams, int, int]) -> montecarlo.MCResult:
    """One Monte Carlo point of the sweep (a task for an executor)."""
    _row, params, trials, seed = task
    return montecarlo.simulate(params, trials=trials, seed=seed)


def beta_grid(beta_min: float, beta_max: float, steps: int) -> tuple[float, ...]:
    """`steps` evenly spaced cartel fractions, rounded to 12 digits for stable CSVs."""
    if steps < 2 or steps > 10_000:
        raise ValueError(f"beta steps must be in 2..10000, got {steps}")
    if not 0.0 <= beta_min < beta_max < 1.0:
        raise ValueError(f"need 0 <= beta_min < beta_max < 1, got {beta_min}, {beta_max}")
    step = (beta_max - beta_min) / (steps - 1)
    return tuple(round(beta_min + i * step, 12) for i in range(steps))


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(
            f"{name} must be a comma-separated list of integers, got {text!r}"
        ) from None
    if not values:
        raise ValueError(f"{name} must not be empty")
    return values


def slacks_or_default(values: Sequence[int] | None, m: int) -> tuple[int, ...]:
    if values:
        return tuple(values)
    return tuple(s for s in (0, 1, 2, 4, 8) if s < m)
