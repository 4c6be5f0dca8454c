"""Figures drawn from the saved tidy tables (matplotlib, headless Agg backend).

Conventions: every axis is labelled with its unit; titles name κ and m; a legend explains
both the colours and the line styles (proxy entries); probabilities that are exactly 0 are
drawn at the bottom of the log axis and said so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

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
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(float("nan"))
        elif math.isinf(v):
            out.append(float("nan"))  # drawn as a gap; the CSV says inf
        else:
            out.append(max(_FLOOR, v))
    return out


def _style_legend(ax: Any, styles: Sequence[tuple[str, str, str]], loc: str = "lower right",
                  title: str | None = None) -> Any:
    """A legend for line styles: (label, linestyle, marker)."""
    handles = [Line2D([], [], color="k", ls=ls, marker=mk, lw=1.2, ms=4) for _, ls, mk in styles]
    return ax.legend(handles, [s[0] for s in styles], fontsize=7, loc=loc, title=title,
                     title_fontsize=7)


def _positive(rows: Rows) -> list[dict[str, Any]]:
    """Rows with β > 0: β = 0 (no cartel, probability exactly 0) has no place on a log β
    axis; it stays in the CSV."""
    return [r for r in rows if r["beta"] > 0]


def _log_beta_axis(ax: Any, rows: Rows, label: str = "cartel fraction β") -> None:
    """A log β axis with plain tick labels: at small β a delay probability behaves like
    C·β^k, a straight line of slope k, where a linear axis shows a vertical wall."""
    betas = [r["beta"] for r in rows if r["beta"] > 0]
    ax.set_xscale("log")
    ticks = [t for t in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
             if min(betas) <= t <= max(betas)]
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.set_xlabel(f"{label} (log scale)")


def _save(fig: Any, stem: Path) -> None:
    if not fig.get_layout_engine():
        fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    fig.savefig(stem.with_suffix(".pdf"), metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)


def plot_delay(rows: Rows, stem: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    m, t_star = rows[0]["m"], rows[0]["t_star"]
    colour_handles = []
    for i, slack in enumerate(_uniq(rows, "slack")):
        sel = _select(rows, slack=slack)
        color = f"C{i}"
        sel = _positive(sel)
        betas = [r["beta"] for r in sel]
        (line,) = ax.plot(betas, _floor([r["p_delay"] for r in sel]), color=color, lw=1.6)
        colour_handles.append((line, f"Δ = {slack} (κ = {sel[0]['kappa']})"))
        ax.plot(betas, _floor([r["kl_upper"] for r in sel]), color=color, ls="--", lw=0.8)
        ax.plot(betas, _floor([r["kl_lower"] for r in sel]), color=color, ls=":", lw=0.8)
        # Monte Carlo points where the simulation saw delays (none at β = 0, where the
        # probability is exactly 0; a run with no hit has no point on a log axis).
        mc = [r for r in sel if r.get("p_delay_mc") and r["beta"] > 0]
        if mc:
            ys = [r["p_delay_mc"] for r in mc]
            lo = [max(0.0, y - r["ci_low"]) for y, r in zip(ys, mc, strict=True)]
            hi = [max(0.0, r["ci_high"] - y) for y, r in zip(ys, mc, strict=True)]
            ax.errorbar([r["beta"] for r in mc], _floor(ys), yerr=[lo, hi], fmt="o", ms=3,
                        color=color, capsize=2, lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(1e-8, 1.5)
    _log_beta_axis(ax, rows)  # P(delay) ≈ C·β^(Δ+1) at small β: slope Δ+1
    ax.set_ylabel("P(delay) = P(S_t* < κ)")
    ax.set_title(f"Delay vs cartel fraction, m = {m}, t* = {t_star}, q = {rows[0]['q']}")
    first = ax.legend([h for h, _ in colour_handles], [lab for _, lab in colour_handles],
                      fontsize=7, loc="lower right", title="slack (colour)", title_fontsize=7)
    ax.add_artist(first)
    _style_legend(ax, [("exact", "-", ""), ("KL upper bound", "--", ""),
                       ("KL lower bound", ":", ""), ("Monte Carlo, 99 % CI", "none", "o")],
                  loc="center right", title="line style")
    _save(fig, stem)


def plot_ratchet(rows: Rows, stem: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    t_stars = _uniq(rows, "t_star")
    styles = {"fresh": "-", "fixed": "-.", "ratchet": "--", "first-slot": ":"}
    for i, t in enumerate(t_stars):
        for policy, ls in styles.items():
            sel = _positive(_select(rows, t_star=t, quantity="p_delay", policy=policy))
            axes[0].plot([r["beta"] for r in sel], _floor([r["value"] for r in sel]), ls=ls,
                         color=f"C{i}")
        for policy, ls in (("fresh", "-"), ("ratchet", "--")):
            sel = _positive(_select(rows, t_star=t, quantity="bounty_withhold_all",
                                    policy=policy))
            axes[1].plot([r["beta"] for r in sel], _floor([r["value"] for r in sel]), ls=ls,
                         color=f"C{i}")
    colours = [Line2D([], [], color=f"C{i}") for i in range(len(t_stars))]
    kappas = [_select(rows, t_star=t)[0]["kappa"] for t in t_stars]
    labels = [f"t* = {t} (κ = {k})" for t, k in zip(t_stars, kappas, strict=True)]
    axes[0].set(yscale="log", ylim=(1e-10, 1.5), ylabel="P(delay)",
                title="Withhold-all cartel, m = 16, Δ = 8")
    _log_beta_axis(axes[0], rows)
    leg = axes[0].legend(colours, labels, fontsize=7, loc="lower right", title="colour",
                         title_fontsize=7)
    axes[0].add_artist(leg)
    _style_legend(axes[0], [("fresh lanes", "-", ""), ("fixed lane set", "-.", ""),
                            ("ratchet (d = 1)", "--", ""),
                            ("first-slot deficit (lower bound;\n= the t* = 1 curves)", ":", "")],
                  loc="upper left", title="line style")
    axes[1].set(yscale="log", ylim=(1e-10, 1.5),
                ylabel="ex-ante bounty b/V per pivotal bundle",
                title="Bounty against withhold-all, m = 16, Δ = 8")
    _log_beta_axis(axes[1], rows)
    leg = axes[1].legend(colours, labels, fontsize=7, loc="lower right", title="colour",
                         title_fontsize=7)
    axes[1].add_artist(leg)
    _style_legend(axes[1], [("fresh lanes", "-", ""), ("ratchet (d = 1)", "--", "")],
                  loc="upper left", title="line style")
    _save(fig, stem)


def plot_feedback(rows: Rows, stem: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"fresh": ("k", "-", 1.5), "fixed": ("grey", "-", 4.0)}
    t_star = -(-rows[0]["kappa"] // rows[0]["m"])  # ⌈κ/m⌉
    for i, policy in enumerate(_uniq(rows, "policy")):
        sel = _positive(_select(rows, policy=policy))
        color, ls, lw = styles.get(policy, (f"C{i}", "--", 1.5))
        label = {"fresh": "fresh lanes", "fixed": "fixed lane set (wide grey)"}.get(
            policy, f"ratchet, feedback {policy[8:]}"
        )
        fixed = {r["beta"]: r["p_delay"] for r in _select(rows, policy="fixed")}
        if policy.startswith("ratchet") and all(
            math.isclose(r["p_delay"], fixed.get(r["beta"], math.nan), rel_tol=1e-9,
                         abs_tol=1e-300) for r in sel
        ):
            label += " (= the fixed set here)"
        ax.plot([r["beta"] for r in sel], _floor([r["p_delay"] for r in sel]), color=color,
                ls=ls, lw=lw, alpha=0.5 if policy == "fixed" else 1.0, label=label)
    ax.set(yscale="log", ylim=(1e-10, 1.5), ylabel="P(delay)",
           title=f"Ratchet with feedback latency d [slots], κ = {rows[0]['kappa']}, "
                 f"m = {rows[0]['m']}, t* = {t_star}")
    _log_beta_axis(ax, rows)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, stem)


def plot_bounty(rows: Rows, stem: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = "osD^v<>"
    for i, form in enumerate(_uniq(rows, "form")):
        sel = _select(rows, form=form)
        ls = "--" if "ratchet" in form else "-"
        values = [r["bounty_over_v"] for r in sel]
        label = form
        if values and all(math.isclose(v, values[0], rel_tol=1e-9) for v in values):
            label += f" (= {values[0]:.4g} at every Δ)"  # flat lines that nearly coincide
        ax.plot([r["slack"] for r in sel], _floor(values),
                marker=markers[i % len(markers)], ms=3, color=f"C{i}", ls=ls, label=label)
    r0 = rows[0]
    ax.set(yscale="log", xlabel="slack Δ [bundles] (κ = t*·m − Δ)",
           ylabel="bounty b/V per pivotal bundle",
           title=f"Bounty vs slack, m = {r0['m']}, t* = {r0['t_star']}, β = {r0['beta']}, "
                 f"q = {r0['q']}")
    ax.legend(fontsize=7, loc="lower left")
    _save(fig, stem)


def plot_response(rows: Rows, stem: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    strategies = _uniq(rows, "strategy")
    for i, strategy in enumerate(strategies):
        for use_ratchet, ls in ((False, "-"), (True, "--")):
            sel = _select(rows, strategy=strategy, ratchet=use_ratchet)
            ax.plot([r["beta"] for r in sel], _floor([r["bounty_over_v"] for r in sel]),
                    color=f"C{i}", ls=ls, marker="o", ms=3)
    colours = [Line2D([], [], color=f"C{i}", marker="o", ms=3) for i in range(len(strategies))]
    names = {"withhold_all": "withhold-all", "threshold": "threshold (Δ+1)",
             "last_slot": "last-slot", "best_response": "best response"}
    leg = ax.legend(colours, [names.get(s, s) for s in strategies], fontsize=7,
                    loc="lower right", title="cartel (colour)", title_fontsize=7)
    ax.add_artist(leg)
    _style_legend(ax, [("fresh lanes", "-", ""), ("ratchet (d = 1)", "--", "")],
                  loc="center right", title="line style")
    ax.set(yscale="log", xlabel="cartel fraction β",
           ylabel="ex-ante bounty b/V per pivotal bundle",
           title=f"Bounty that makes honesty a best response, κ = {rows[0]['kappa']}, "
                 f"m = {rows[0]['m']}, q = 1")
    _save(fig, stem)


def plot_race(rows: Rows, stem: Path) -> None:
    betas = _uniq(rows, "beta")
    fig, axes = plt.subplots(1, len(betas), figsize=(4.6 * len(betas), 4.4), squeeze=False)
    for ax, beta in zip(axes[0], betas, strict=True):
        for use_ratchet, ls in ((False, "-"), (True, "--")):
            sel = _select(rows, beta=beta, ratchet=use_ratchet)
            xs = [r["slack"] for r in sel]
            ax.plot(xs, _floor([r["p_delay"] for r in sel]), ls=ls, color="C0")
            ax.axvline(sel[0]["best_slack"], ls=ls, color="grey", lw=0.7)
        sel = _select(rows, beta=beta, ratchet=False)
        ax.plot([r["slack"] for r in sel], _floor([r["p_race"] for r in sel]), color="C1")
        ax.plot([r["slack"] for r in sel], _floor([r["race_bound"] for r in sel]), color="C1",
                ls=":")
        ax.set(yscale="log", ylim=(1e-12, 1.5), xlabel="slack Δ [bundles]",
               ylabel="probability",
               title=f"β = {beta}, m = {rows[0]['m']}, t* = {rows[0]['t_star']}")
    handles = [Line2D([], [], color="C0"), Line2D([], [], color="C0", ls="--"),
               Line2D([], [], color="C1"), Line2D([], [], color="C1", ls=":"),
               Line2D([], [], color="grey", lw=0.7), Line2D([], [], color="grey", lw=0.7, ls="--")]
    labels = ["P(delay), no ratchet", "P(delay), ratchet", "P(race) (same with ratchet, q = 1)",
              "Chernoff bound on P(race)", "best Δ, no ratchet", "best Δ, ratchet"]
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=6)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, stem)


def plot_bandwidth(rows: Rows, stem: Path) -> None:
    betas = _uniq(rows, "beta")
    fig, axes = plt.subplots(1, len(betas), figsize=(5.2 * len(betas), 4.3), squeeze=False)
    for ax, beta in zip(axes[0], betas, strict=True):
        sel = _select(rows, beta=beta, kappa=_uniq(rows, "kappa")[0])
        ax.plot([r["eps"] for r in sel], [r["naive_overhead"] for r in sel], color="k",
                label="naive replication (R copies)")
        for i, kappa in enumerate(_uniq(rows, "kappa")):
            s = _select(rows, beta=beta, kappa=kappa)
            ax.plot([r["eps"] for r in s], [r["coded_overhead"] for r in s], color=f"C{i}",
                    label=f"coded, κ = {kappa}")
        ax.axhline(sel[0]["lower_bound"], ls=":", color="grey", label="bound 1/(1−r)")
        ax.set(xscale="log", xlabel="target failure probability ε",
               ylabel="bytes sent per payload byte", title=f"Bandwidth, β = {beta:.3g}, q = 1")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    _save(fig, stem)


def plot_lead(rows: Rows, stem: Path) -> None:
    betas = _uniq(rows, "beta")
    fig, axes = plt.subplots(1, len(betas), figsize=(4.6 * len(betas), 4.2), squeeze=False)
    for ax, beta in zip(axes[0], betas, strict=True):
        for i, policy in enumerate(_uniq(rows, "policy")):
            sel = _select(rows, beta=beta, policy=policy)
            ax.plot([r["lag"] for r in sel], _floor([r["p_lag_at_least"] for r in sel]),
                    marker="o", ms=3, color=f"C{i}", label=policy)
        ax.set(yscale="log", ylim=(1e-12, 1.5), xlabel="ℓ [slots]",
               ylabel="P(lag >= ℓ) (= lead when q = 1)",
               title=f"Lag behind t*, β = {beta}, κ = {rows[0]['kappa']}, m = {rows[0]['m']}")
        ax.legend(fontsize=7, title="lane policy", title_fontsize=7)
    _save(fig, stem)


def plot_leadvalue(rows: Rows, stem: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    curves = _uniq([r for r in rows if r["kind"] == "curve"], "curve")
    for i, curve in enumerate(curves):
        sel = _select(rows, kind="curve", curve=curve)
        axes[0].plot([r["lag"] for r in sel], [r["value"] for r in sel], marker="o", ms=3,
                     color=f"C{i}", label=curve)
    axes[0].set(xlabel="lead ℓ [slots]", ylabel="V(ℓ) [value]", title="Lead-value curves")
    axes[0].legend(fontsize=7)
    for i, curve in enumerate(curves):
        for strategy, ls in (("withhold_all", "-"), ("best_response", "--")):
            sel = _select(rows, kind="bounty", curve=curve, strategy=strategy)
            axes[1].plot([r["beta"] for r in sel], _floor([r["value"] for r in sel]),
                         color=f"C{i}", ls=ls, marker="o", ms=3)
    handles, labels = [], []
    for strategy, ls in (("best response", "--"), ("withhold-all, ex-ante", "-")):
        for i, curve in enumerate(curves):
            handles.append(Line2D([], [], color=f"C{i}", ls=ls, marker="o", ms=3))
            labels.append(f"{strategy}: {curve}")
    axes[1].legend(handles, labels, fontsize=7, loc="lower right",
                   title="cartel: V(ℓ) curve (colour)", title_fontsize=7)
    axes[1].set(yscale="log", xlabel="cartel fraction β",
                ylabel="bounty b per pivotal bundle [value]",
                title="Bounty with each curve, κ = 56, m = 16, q = 1")
    _save(fig, stem)


def plot_leaders(rows: Rows, stem: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    combos = [(mode, policy) for mode in _uniq(rows, "dissemination")
              for policy in _uniq(rows, "policy")]
    styles = {("carried", 0): ("-", "o"), ("carried", 1): ("-", "x"),
              ("certified", 0): ("--", "s"), ("certified", 1): ("--", "+")}
    panels = (("", "p_delay", "P(delay), no lane withholds (policies coincide)"),
              ("4", "p_delay", "P(delay), lane 4 also withholds"),
              ("4", "mean_lag", "Mean lag (= cartel's mean lead), lane 4 withholds"))
    r0 = rows[0]
    for ax, (withholding, key, title) in zip(axes, panels, strict=True):
        for i, (mode, policy) in enumerate(combos):
            sel = _select(rows, dissemination=mode, policy=policy, withholding=withholding)
            ls, mk = styles[(mode, i % 2)]
            ax.plot([r["censors"] for r in sel], [r[key] for r in sel], color=f"C{i}", ls=ls,
                    marker=mk, ms=6, label=f"{mode}, {policy}")
        if key == "mean_lag":
            ax.set(ylabel="mean lag behind t* [slots]", ylim=(-0.05, None))
        else:
            ax.set(ylabel="probability", ylim=(-0.02, 1.02))
        ax.set(xlabel="censoring leaders: count and {validators} (of N = 7, round robin)", title=title)
        counts = _uniq(rows, "censors")
        which = [_select(rows, censors=k)[0]["censoring"] for k in counts]
        ax.set_xticks(counts, labels=[f"{k}\n{{{w}}}" if w else str(k)
                                      for k, w in zip(counts, which, strict=True)])
    axes[0].legend(fontsize=7, title="lane blocks, sender policy", title_fontsize=7,
                   loc="upper left")
    fig.suptitle(f"Leader cartel (drop_lane_blocks): N = {r0['lanes']}, κ = {r0['kappa']}, "
                 f"m = {r0['m']}, q = 1, payload start uniform", fontsize=10)
    _save(fig, stem)


def plot_sensitivity(rows: Rows, stem: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    r0 = rows[0]
    xs = [r["beta_actual"] for r in rows]
    design = r0["beta_design"]
    axes[0].plot(xs, _floor([r["p_delay"] for r in rows]), color="C0", marker="o", ms=3)
    axes[0].set(yscale="log", ylim=(1e-12, 1.5), xlabel="actual cartel fraction β",
                ylabel="P(delay), withhold-all", title="Delay")
    for i, (key, label) in enumerate((("bounty_withhold_all", "withhold-all"),
                                      ("bounty_threshold", "threshold (Δ+1)"),
                                      ("bounty_best_response", "best response"))):
        cartel = [r for r in rows if r["beta_actual"] > 0]  # β = 0: no cartel, no bounty
        axes[1].plot([r["beta_actual"] for r in cartel], _floor([r[key] for r in cartel]),
                     color=f"C{i}", marker="o", ms=3, label=f"needed: {label}")
    axes[1].axhline(r0["bounty_design"], color="k", ls=":", label="designed b")
    axes[1].set(yscale="log", xlabel="actual cartel fraction β",
                ylabel="bounty b/V per pivotal bundle", title="Bounty needed vs designed")
    axes[1].legend(fontsize=7)
    axes[2].plot(xs, _floor([r["best_response_gain_at_design"] for r in rows]), color="C3",
                 marker="o", ms=3)
    axes[2].set(yscale="log", ylim=(1e-12, 1.5), xlabel="actual cartel fraction β",
                ylabel="best response's expected gain [V per tx]",
                title="Cartel gain at the designed bounty")
    for ax in axes:
        ax.axvline(design, color="grey", ls="--", lw=0.8)
    fig.suptitle(f"Designed for β = {design} (grey line): κ = {r0['kappa']}, m = {r0['m']}, "
                 f"{'ratchet' if r0['ratchet'] else 'no ratchet'}, q = 1", fontsize=10)
    _save(fig, stem)


RENDERERS: dict[str, Callable[[Rows, Path], None]] = {
    "delay": plot_delay,
    "sweep": plot_delay,
    "ratchet": plot_ratchet,
    "feedback": plot_feedback,
    "bounty": plot_bounty,
    "response": plot_response,
    "race": plot_race,
    "bandwidth": plot_bandwidth,
    "lead": plot_lead,
    "leadvalue": plot_leadvalue,
    "leaders": plot_leaders,
    "sensitivity": plot_sensitivity,
}


def render(name: str, rows: Rows, stem: Path) -> None:
    """Draw figure `name` from its table rows to stem.png and stem.pdf."""
    RENDERERS[name](rows, stem)
