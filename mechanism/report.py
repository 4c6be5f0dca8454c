"""Every figure of the report as a saved tidy table; figures are drawn from the tables.

`build(name, cfg, seed)` computes one table, `write_figure` saves CSV + PNG + PDF, and
`run_report` does all of them plus meta.json and report.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mechanism import bandwidth, delay, output, pivot, race, ratchet, sweep
from mechanism.params import BandwidthParams, EconParams, SednaParams

FIGURES = ("delay", "ratchet", "bounty", "race", "bandwidth", "lead", "mev")


@dataclass(frozen=True)
class ReportConfig:
    """Grids. quick: coarser grids and fewer trials (tests, smoke runs)."""

    quick: bool = False
    trials: int = 20_000

    @property
    def beta_steps(self) -> int:
        return 11 if self.quick else 51

    @property
    def mc_trials(self) -> int:
        return min(self.trials, 2_000) if self.quick else self.trials


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]


def _delay(cfg: ReportConfig, seed: int) -> Table:
    spec = sweep.SweepSpec(
        m=16,
        t_star=4,
        slacks=(0, 1, 2, 4, 8),
        betas=sweep.beta_grid(0.0, 0.5, cfg.beta_steps),
        trials=cfg.mc_trials,
        mc_every=5,
    )
    return Table("delay", sweep.DELAY_COLUMNS, sweep.delay_sweep(spec, seed))


def _ratchet(cfg: ReportConfig, seed: int) -> Table:
    econ = EconParams(value_lead=1.0)
    rows = []
    for t_star in (1, 2, 4):
        kappa = 16 * t_star - 8
        for beta in sweep.beta_grid(0.0, 0.5, cfg.beta_steps):
            p = SednaParams(kappa, 16, beta)
            cmp = ratchet.compare(p, econ, max_lag=1)
            for policy, value in (
                ("fresh", cmp.p_delay_fresh),
                ("fixed", cmp.p_delay_fixed),
                ("ratchet", cmp.p_delay_ratchet),
                ("first-slot", cmp.p_first_slot_deficit),
            ):
                rows.append(_r(t_star, kappa, beta, "p_delay", policy, value))
            rows.append(
                _r(t_star, kappa, beta, "bounty_ex_ante", "fresh", cmp.bounty_ex_ante_fresh)
            )
            rows.append(
                _r(t_star, kappa, beta, "bounty_ex_ante", "ratchet", cmp.bounty_ex_ante_ratchet)
            )
    cols = ("t_star", "kappa", "beta", "quantity", "policy", "value")
    return Table("ratchet", cols, rows)


def _r(t_star: int, kappa: int, beta: float, quantity: str, policy: str, value: float) -> dict:
    return {
        "t_star": t_star,
        "kappa": kappa,
        "beta": beta,
        "quantity": quantity,
        "policy": policy,
        "value": value,
    }


def _bounty(cfg: ReportConfig, seed: int) -> Table:
    econ = EconParams(value_lead=1.0)
    rows = []
    m, t_star, beta = 16, 4, 0.1
    for q in (1.0, 0.95):
        for slack in range(m):
            p = SednaParams(t_star * m - slack, m, beta, q)
            forms = {
                "ex-post": pivot.bounty_ex_post(p, econ).bounty,
                "pivot-canonical": pivot.bounty_pivot_gaming(p, econ, "canonical"),
                "pivot-random": pivot.bounty_pivot_gaming(p, econ, "random"),
                "ex-ante-fresh": pivot.bounty_ex_ante(p, econ).bounty,
                "ex-ante-ratchet": pivot.bounty_ex_ante(p.with_(ratchet=True), econ).bounty,
            }
            for form, value in forms.items():
                rows.append(
                    {
                        "m": m,
                        "t_star": t_star,
                        "beta": beta,
                        "q": q,
                        "slack": slack,
                        "form": form,
                        "bounty_over_v": value,
                    }
                )
    cols = ("m", "t_star", "beta", "q", "slack", "form", "bounty_over_v")
    return Table("bounty", cols, rows)


def _race(cfg: ReportConfig, seed: int) -> Table:
    rows = []
    m, t_star = 16, 4
    for beta in (0.05, 0.1, 0.2):
        for use_ratchet in (False, True):
            tr = race.tradeoff(m, t_star, beta, ratchet=use_ratchet)
            for row in tr.rows:
                p = SednaParams(row.kappa, m, beta, ratchet=use_ratchet)
                rows.append(
                    {
                        "beta": beta,
                        "ratchet": use_ratchet,
                        "slack": row.slack,
                        "kappa": row.kappa,
                        "p_delay": row.p_delay,
                        "p_race": row.p_race,
                        "race_bound": race.race_bound(p),
                        "objective": row.objective,
                        "best_slack": tr.best_slack,
                    }
                )
    cols = (
        "beta",
        "ratchet",
        "slack",
        "kappa",
        "p_delay",
        "p_race",
        "race_bound",
        "objective",
        "best_slack",
    )
    return Table("race", cols, rows)


def _bandwidth(cfg: ReportConfig, seed: int) -> Table:
    rows = []
    for beta in (0.1, 1.0 / 3.0):
        for kappa in (8, 16, 32):
            for exp10 in range(1, 10):
                eps = 10.0 ** (-exp10)
                c = bandwidth.compare(BandwidthParams(kappa=kappa, beta=beta, eps=eps))
                rows.append(
                    {
                        "beta": beta,
                        "kappa": kappa,
                        "eps": eps,
                        "naive_replicas": c.naive_replicas,
                        "coded_bundles": c.coded_bundles,
                        "naive_overhead": c.naive_overhead,
                        "coded_overhead": c.coded_overhead,
                        "lower_bound": c.lower_bound,
                        "gain": c.gain,
                    }
                )
    cols = (
        "beta",
        "kappa",
        "eps",
        "naive_replicas",
        "coded_bundles",
        "naive_overhead",
        "coded_overhead",
        "lower_bound",
        "gain",
    )
    return Table("bandwidth", cols, rows)


def _lead(cfg: ReportConfig, seed: int) -> Table:
    rows = []
    for beta in (0.1, 0.2, 0.3):
        for policy in ("fresh", "fixed", "ratchet"):
            p = SednaParams(
                56,
                16,
                beta,
                addressing="fixed" if policy == "fixed" else "fresh",
                ratchet=policy == "ratchet",
            )
            lag = delay.lag_distribution(p, 6)
            for ell, tail in enumerate(lag.tail, start=1):
                rows.append({"beta": beta, "policy": policy, "lag": ell, "p_lag_at_least": tail})
    return Table("lead", ("beta", "policy", "lag", "p_lag_at_least"), rows)


MEV_CASES: tuple[tuple[int, int, float, float, float, float], ...] = (
    # kappa, m, beta, q, mu = V/v, V_race/v
    (56, 16, 0.1, 1.0, 1.0, 0.01),
    (56, 16, 0.2, 1.0, 1.0, 0.01),
    (120, 32, 0.1, 1.0, 1.0, 0.01),
    (120, 32, 0.2, 1.0, 1.0, 0.01),
    (56, 16, 0.1, 0.98, 1.0, 0.01),
    (232, 64, 0.1, 1.0, 1.0, 0.01),
    (232, 64, 0.2, 1.0, 0.1, 0.01),
)


def _mev(cfg: ReportConfig, seed: int) -> Table:
    rows = []
    for kappa, m, beta, q, mu, vr in MEV_CASES:
        econ = EconParams(value_lead=mu, tx_value=1.0, value_race=vr)
        p = SednaParams(kappa, m, beta, q, ratchet=True)
        pr = race.p_race(p) if q == 1.0 else race.p_race(p.with_(ratchet=False))
        ante = pivot.bounty_ex_ante(p, econ).bounty
        post = pivot.bounty_pivot_gaming(p, econ, "random")
        ante_fresh = pivot.bounty_ex_ante(p.with_(ratchet=False), econ).bounty
        rows.append(
            {
                "kappa": kappa,
                "m": m,
                "t_star": p.t_star,
                "slack": p.slack,
                "beta": beta,
                "q": q,
                "mu": mu,
                "race_value": vr,
                "p_delay_ratchet": delay.p_delay(p),
                "p_race": pr,
                "bounty_ex_ante_ratchet": ante,
                "bounty_ex_ante_fresh": ante_fresh,
                "bounty_ex_post_random": post,
                "gamma_ex_ante_ratchet": pivot.mev_cost_fraction(p, econ, ante, pr)["gamma"],
                "gamma_ex_ante_fresh": pivot.mev_cost_fraction(
                    p.with_(ratchet=False), econ, ante_fresh, pr
                )["gamma"],
                "gamma_ex_post_random": pivot.mev_cost_fraction(p, econ, post, pr)["gamma"],
            }
        )
    cols = tuple(rows[0].keys())
    return Table("mev", cols, rows)


BUILDERS: dict[str, Callable[[ReportConfig, int], Table]] = {
    "delay": _delay,
    "ratchet": _ratchet,
    "bounty": _bounty,
    "race": _race,
    "bandwidth": _bandwidth,
    "lead": _lead,
    "mev": _mev,
}


def build(name: str, cfg: ReportConfig, seed: int) -> Table:
    if name not in BUILDERS:
        raise ValueError(f"figure must be one of {FIGURES}, got {name!r}")
    return BUILDERS[name](cfg, seed)


def write_table_and_figure(table: Table, out: Path) -> list[str]:
    """<name>.csv, <name>.png and <name>.pdf; returns the file names."""
    from mechanism import plots

    output.write_csv(out / f"{table.name}.csv", table.columns, table.rows)
    plots.render(table.name, table.rows, out / table.name)
    return [f"{table.name}.csv", f"{table.name}.png", f"{table.name}.pdf"]


def run_report(out: Path, cfg: ReportConfig, seed: int) -> list[str]:
    """Regenerate every figure, meta.json and report.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    tables = {}
    for name in FIGURES:  # one table and figure each
        table = build(name, cfg, seed)
        tables[name] = table
        files += write_table_and_figure(table, out)
    (out / "report.md").write_text(_summary(tables), encoding="utf-8")
    files.append("report.md")
    output.write_meta(
        out / "meta.json",
        "sedna mech report",
        {"quick": cfg.quick, "trials": cfg.trials, "figures": list(FIGURES)},
        seed,
        [*files, "meta.json"],
    )
    return [*files, "meta.json"]


def _summary(tables: dict[str, Table]) -> str:
    mev = tables["mev"]
    cols = (
        "kappa",
        "m",
        "slack",
        "beta",
        "q",
        "mu",
        "p_delay_ratchet",
        "p_race",
        "gamma_ex_ante_ratchet",
        "gamma_ex_ante_fresh",
        "gamma_ex_post_random",
    )
    lines = [
        "# sedna mech report",
        "",
        "Model and derivations: docs/mechanism.md. Every figure is drawn from the CSV of the",
        "same name in this directory.",
        "",
        "## MEV cost Γ (fraction of transaction value)",
        "",
        "```",
        output.table_text(cols, mev.rows).rstrip(),
        "```",
        "",
        "## Files",
        "",
    ]
    lines += [f"- {name}.csv, {name}.png, {name}.pdf" for name in FIGURES]
    return "\n".join(lines) + "\n"
