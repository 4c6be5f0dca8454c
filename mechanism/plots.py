"""Figures drawn from the saved tidy tables (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Rows = Sequence[dict[str, Any]]
_FLOOR = 1e-12  # log-scale floor for probabilities that are exactly 0


def _select(rows: Rows, **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _uniq(rows: Rows, key: str) -> list[Any]:
    seen: list[Any] = []
    for r in rows:
        if r[key] not in seen:
            seen.append(r[key])
    return seen


def _floor(values: Sequence[float | None]) -> list[float]:
    return [max(_FLOOR, v) if v is not None else float("nan") for v in values]


def _save(fig: Any, stem: Path) -> None:
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    fig.savefig(stem.with_suffix(".pdf"), metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)


def plot_delay(rows: Rows, stem: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, slack in enumerate(_uniq(rows, "slack")):
        sel = _select(rows, slack=slack)
        color = f"C{i}"
        betas = [r["beta"] for r in sel]
        ax.plot(betas, _floor([r["p_delay"] for r in sel]), color=color, label=f"Δ={slack} exact")
        ax.plot(betas, _floor([r["kl_upper"] for r in sel]), color=color, ls="--", lw=0.8)
        ax.plot(betas, _floor([r["kl_lower"] for r in sel]), color=color, ls=":", lw=0.8)
        mc = [r for r in sel if r.get("p_delay_mc") is not None]
        if mc:
            ys = [r["p_delay_mc"] for r in mc]
            lo = [max(0.0, y - r["ci_low"]) for y, r in zip(ys, mc, strict=True)]
            hi = [max(0.0, r["ci_high"] - y) for y, r in zip(ys, mc, strict=True)]
            ax.errorbar(
                [r["beta"] for r in mc],
                _floor(ys),
                yerr=[lo, hi],
                fmt="o",
                ms=3,
                color=color,
                capsize=2,
            )
    ax.set_yscale("log")
    ax.set_ylim(1e-8, 1.5)
    ax.set_xlabel("cartel fraction β")
    ax.set_ylabel("P(delay)")
    ax.set_title("Delay vs cartel fraction (dashed: KL upper, dotted: KL lower, dots: MC)")
    ax.legend(fontsize=8)
    _save(fig, stem)


def plot_ratchet(rows: Rows, stem: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    t_stars = _uniq(rows, "t_star")
    styles = {"fresh": "-", "fixed": "-.", "ratchet": "--", "first-slot": ":"}
    for i, t in enumerate(t_stars):
        for policy, ls in styles.items():
            sel = _select(rows, t_star=t, quantity="p_delay", policy=policy)
            axes[0].plot(
                [r["beta"] for r in sel],
                _floor([r["value"] for r in sel]),
                ls=ls,
                color=f"C{i}",
                label=f"t*={t} {policy}",
            )
        for policy, ls in (("fresh", "-"), ("ratchet", "--")):
            sel = _select(rows, t_star=t, quantity="bounty_ex_ante", policy=policy)
            axes[1].plot(
                [r["beta"] for r in sel],
                _floor([r["value"] for r in sel]),
                ls=ls,
                color=f"C{i}",
                label=f"t*={t} {policy}",
            )
    axes[0].set(
        yscale="log",
        ylim=(1e-10, 1.5),
        xlabel="β",
        ylabel="P(delay)",
        title="Ratchet vs no ratchet (Δ=8, m=16)",
    )
    axes[1].set(
        yscale="log",
        ylim=(1e-10, 1.5),
        xlabel="β",
        ylabel="ex-ante b*/V",
        title="Required ex-ante bounty per pivotal bundle",
    )
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].legend(fontsize=6)
    _save(fig, stem)


def plot_bounty(rows: Rows, stem: Path) -> None:
    qs = _uniq(rows, "q")
    fig, axes = plt.subplots(1, len(qs), figsize=(5 * len(qs), 4.2), squeeze=False)
    for ax, q in zip(axes[0], qs, strict=True):
        for i, form in enumerate(_uniq(rows, "form")):
            sel = _select(rows, q=q, form=form)
            ax.plot(
                [r["slack"] for r in sel],
                _floor([r["bounty_over_v"] for r in sel]),
                marker="o",
                ms=3,
                color=f"C{i}",
                label=form,
            )
        ax.set(yscale="log", xlabel="slack Δ", ylabel="b*/V", title=f"Bounty vs slack (q={q})")
        ax.legend(fontsize=7)
    _save(fig, stem)


def plot_race(rows: Rows, stem: Path) -> None:
    betas = _uniq(rows, "beta")
    fig, axes = plt.subplots(1, len(betas), figsize=(4.5 * len(betas), 4.2), squeeze=False)
    for ax, beta in zip(axes[0], betas, strict=True):
        for use_ratchet, ls in ((False, "-"), (True, "--")):
            sel = _select(rows, beta=beta, ratchet=use_ratchet)
            xs = [r["slack"] for r in sel]
            tag = "ratchet" if use_ratchet else "no ratchet"
            ax.plot(
                xs, _floor([r["p_delay"] for r in sel]), ls=ls, color="C0", label=f"P_delay {tag}"
            )
            ax.axvline(sel[0]["best_slack"], ls=ls, color="grey", lw=0.7)
        sel = _select(rows, beta=beta, ratchet=False)
        ax.plot(
            [r["slack"] for r in sel],
            _floor([r["p_race"] for r in sel]),
            color="C1",
            label="P_race",
        )
        ax.plot(
            [r["slack"] for r in sel],
            _floor([r["race_bound"] for r in sel]),
            color="C1",
            ls=":",
            label="race bound",
        )
        ax.set(yscale="log", ylim=(1e-12, 1.5), xlabel="slack Δ", title=f"β={beta} (m=16, t*=4)")
        ax.legend(fontsize=7)
    _save(fig, stem)


def plot_bandwidth(rows: Rows, stem: Path) -> None:
    betas = _uniq(rows, "beta")
    fig, axes = plt.subplots(1, len(betas), figsize=(5 * len(betas), 4.2), squeeze=False)
    for ax, beta in zip(axes[0], betas, strict=True):
        sel = _select(rows, beta=beta, kappa=_uniq(rows, "kappa")[0])
        ax.plot(
            [r["eps"] for r in sel],
            [r["naive_overhead"] for r in sel],
            color="k",
            label="naive replication R",
        )
        for i, kappa in enumerate(_uniq(rows, "kappa")):
            s = _select(rows, beta=beta, kappa=kappa)
            ax.plot(
                [r["eps"] for r in s],
                [r["coded_overhead"] for r in s],
                color=f"C{i}",
                label=f"coded κ={kappa}",
            )
        ax.axhline(sel[0]["lower_bound"], ls=":", color="grey", label="lower bound 1/(1−r)")
        ax.set(
            xscale="log",
            xlabel="target failure ε",
            ylabel="bytes sent / payload byte",
            title=f"Bandwidth (β={beta:.3g}, q=1)",
        )
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    _save(fig, stem)


def plot_lead(rows: Rows, stem: Path) -> None:
    betas = _uniq(rows, "beta")
    fig, axes = plt.subplots(1, len(betas), figsize=(4.5 * len(betas), 4.0), squeeze=False)
    for ax, beta in zip(axes[0], betas, strict=True):
        for i, policy in enumerate(_uniq(rows, "policy")):
            sel = _select(rows, beta=beta, policy=policy)
            ax.plot(
                [r["lag"] for r in sel],
                _floor([r["p_lag_at_least"] for r in sel]),
                marker="o",
                ms=3,
                color=f"C{i}",
                label=policy,
            )
        ax.set(
            yscale="log",
            ylim=(1e-12, 1.5),
            xlabel="ℓ (slots)",
            ylabel="P(lead ≥ ℓ)",
            title=f"Information lead, β={beta} (κ=56, m=16)",
        )
        ax.legend(fontsize=7)
    _save(fig, stem)


def plot_mev(rows: Rows, stem: Path) -> None:
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
    cells = [[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(rows) + 1.2))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=list(cols), loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    ax.set_title("MEV cost Γ as a fraction of transaction value (ratchet on unless noted)")
    _save(fig, stem)


RENDERERS: dict[str, Callable[[Rows, Path], None]] = {
    "delay": plot_delay,
    "sweep": plot_delay,
    "ratchet": plot_ratchet,
    "bounty": plot_bounty,
    "race": plot_race,
    "bandwidth": plot_bandwidth,
    "lead": plot_lead,
    "mev": plot_mev,
}


def render(name: str, rows: Rows, stem: Path) -> None:
    """Draw figure `name` from its table rows to stem.png and stem.pdf."""
    RENDERERS[name](rows, stem)
