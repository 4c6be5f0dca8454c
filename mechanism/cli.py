"""`sedna mech`: PIVOT-K incentive analysis and cartel Monte Carlo.

Registered by node/cli.py through `add_parser(subparsers)`. Heavy modules (numpy, scipy,
matplotlib) are imported inside the handlers so that `sedna --help` stays fast. Exit
codes: 0 ok, 2 bad input (a one-line message on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

EXAMPLES = """examples:
  sedna mech delay --kappa 56 --m 16 --beta 0.1 --json
  sedna mech delay --kappa 56 --m 16 --beta 0.1 --lanes 100 --ratchet
  sedna mech bounds --kappa 64 --m 16 --beta 0.02
  sedna mech bounty --kappa 56 --m 16 --beta 0.1 --value 1 --fee 0.001
  sedna mech ratchet --kappa 56 --m 16 --beta 0.2
  sedna mech race --kappa 56 --m 16 --beta 0.1
  sedna mech guide --eps-delay 1e-6 --eps-race 1e-4 --beta-max 0.1
  sedna mech montecarlo --kappa 56 --m 16 --beta 0.1 --trials 200000 --seed 1 --json
  sedna mech sweep --m 16 --t-star 4 --out out/sweep --seed 1
  sedna mech plot ratchet --out out/fig
  sedna mech report --out out/report
"""


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


Handler = Callable[[argparse.Namespace], dict[str, Any]]


def add_parser(subparsers: Any) -> None:
    mech = subparsers.add_parser(
        "mech",
        help="PIVOT-K incentive analysis and cartel Monte Carlo",
        description="PIVOT-K incentive analysis and cartel Monte Carlo (docs/mechanism.md).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mech.set_defaults(func=lambda _args: _help(mech))
    sub = mech.add_subparsers(dest="mech_command", metavar="COMMAND", parser_class=_OneLineParser)

    def command(name: str, help_text: str, handler: Handler, title: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=_runner(name, handler, title))
        p.add_argument("--json", action="store_true", help="JSON to stdout")
        return p

    p = command("delay", "exact delay probability, KL bounds, critical β, lead", _delay, "delay")
    _model_args(p)
    p.add_argument("--max-lag", type=int, default=3, help="lead tail up to this many slots")

    p = command(
        "bounds", "KL bounds, regimes, knife edge, critical cartel fraction", _bounds, "bounds"
    )
    _model_args(p)

    p = command(
        "bounty",
        "PIVOT-K bounty: single, partial, coalition, pivot rule, ex ante",
        _bounty,
        "bounty",
    )
    _model_args(p)
    _econ_args(p)
    p.add_argument("--holdings", type=int, help="bundles the coalition holds (default n)")
    p.add_argument("--members", type=int, help="coalition members (default: holdings)")

    p = command("ratchet", "delay and bounty with and without the ratchet", _ratchet, "ratchet")
    _model_args(p)
    _econ_args(p)

    p = command("race", "within-slot decode race and the optimal slack", _race, "race")
    _model_args(p)
    p.add_argument("--weight-race", type=float, default=1.0, help="objective weight of P_race")

    p = command("guide", "recommend (κ, m, Δ) and the bounty for targets", _guide, "guide")
    p.add_argument("--eps-delay", type=float, required=True, help="max P(delay) at beta-max")
    p.add_argument("--eps-race", type=float, required=True, help="max P(race) at beta-max")
    p.add_argument("--beta-max", type=float, required=True, help="largest cartel fraction")
    p.add_argument("--q", type=float, default=1.0, help="honest in-slot inclusion probability")
    p.add_argument("--m-max", type=int, default=32, help="largest m searched")
    p.add_argument("--t-max", type=int, default=6, help="largest horizon t* searched")
    p.add_argument("--kappa", type=int, help="fix κ instead of searching it")
    p.add_argument("--no-ratchet", action="store_true", help="the sender does not ratchet")
    p.add_argument("--bounty-form", choices=("ex-ante", "ex-post"), default="ex-ante")
    _econ_args(p)

    p = command(
        "montecarlo",
        "seeded Monte Carlo of the cartel with confidence intervals",
        _montecarlo,
        "montecarlo",
    )
    _model_args(p)
    p.add_argument(
        "--strategy",
        default="withhold-all",
        choices=("none", "withhold-all", "threshold", "last-slot", "partial", "pivot-order"),
    )
    p.add_argument("--threshold", type=int, help="threshold/pivot-order: holdings trigger")
    p.add_argument("--per-slot", type=int, help="partial: bundles withheld per slot")
    p.add_argument("--trials", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-lag", type=int, default=3)
    p.add_argument("--level", type=float, default=0.99, help="confidence level")
    p.add_argument("--ci", choices=("wilson", "clopper-pearson"), default="wilson")
    p.add_argument(
        "--adversarial-order",
        action="store_true",
        help="cartel lanes come last in the canonical order of slot t*",
    )

    p = command(
        "sweep", "delay vs cartel fraction per slack: CSV, meta.json, PNG/PDF", _sweep, "sweep"
    )
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--t-star", type=int, default=4)
    p.add_argument("--slacks", default="", help="comma-separated Δ values (default 0,1,2,4,8)")
    p.add_argument("--beta-min", type=float, default=0.0)
    p.add_argument("--beta-max", type=float, default=0.5)
    p.add_argument("--beta-steps", type=int, default=26)
    p.add_argument("--q", type=float, default=1.0)
    p.add_argument("--lanes", type=int)
    p.add_argument("--ratchet", action="store_true")
    p.add_argument("--trials", type=int, default=20_000, help="Monte Carlo trials per point")
    p.add_argument("--mc-every", type=int, default=5, help="Monte Carlo on every k-th β")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")

    p = command("plot", "one report figure: CSV, meta.json, PNG/PDF", _plot, "plot")
    p.add_argument(
        "figure", choices=("delay", "ratchet", "bounty", "race", "bandwidth", "lead", "mev")
    )
    _report_args(p)

    p = command("report", "regenerate every figure and the MEV-cost table", _report, "report")
    _report_args(p)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kappa", type=int, required=True, help="bundles needed to decode (κ >= 1)")
    p.add_argument("--m", type=int, required=True, help="bundles (lanes) addressed per slot")
    p.add_argument("--beta", type=float, required=True, help="cartel fraction in [0, 1)")
    p.add_argument("--q", type=float, default=1.0, help="honest in-slot inclusion probability")
    p.add_argument("--lanes", type=int, help="total lanes N (default: unbounded, binomial)")
    p.add_argument("--addressing", choices=("fresh", "fixed"), default="fresh")
    p.add_argument("--ratchet", action="store_true", help="the sender ratchet is on")


def _econ_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--value", type=float, default=1.0, help="V: value of a one-slot lead")
    p.add_argument("--fee", type=float, default=0.0, help="f: ticket fee per redeemed bundle")
    p.add_argument("--tx-value", type=float, default=1.0, help="v: transaction value")
    p.add_argument("--race-value", type=float, default=0.0, help="V_race: value of a race")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trials", type=int, default=20_000, help="Monte Carlo trials per point")
    p.add_argument("--quick", action="store_true", help="coarse grids, few trials")


def _runner(name: str, handler: Handler, title: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from mechanism import output

        try:
            payload = handler(args)
        except ValueError as exc:
            print(f"sedna mech {name}: error: {exc}", file=sys.stderr)
            return 2
        output.emit(payload, args.json, f"sedna mech {title}")
        return 0

    return run


def _params(args: argparse.Namespace) -> Any:
    from mechanism.params import SednaParams

    return SednaParams(
        kappa=args.kappa,
        m=args.m,
        beta=args.beta,
        q=args.q,
        lanes=args.lanes,
        addressing=args.addressing,
        ratchet=args.ratchet,
    )


def _econ(args: argparse.Namespace) -> Any:
    from mechanism.params import EconParams

    return EconParams(
        value_lead=args.value, fee=args.fee, tx_value=args.tx_value, value_race=args.race_value
    )


def _describe(p: Any) -> dict[str, Any]:
    return {
        "model": p.model,
        **p.as_dict(),
        "cartel_lanes": p.cartel_lanes,
        "beta_eff": p.beta_eff,
        "t_star": p.t_star,
        "slack": p.slack,
        "n": p.n,
        "r": p.r,
    }


def _delay(args: argparse.Namespace) -> dict[str, Any]:
    p = _params(args)
    from mechanism import bounds, delay

    b = bounds.delay_bounds(p)
    lag = delay.lag_distribution(p, args.max_lag)
    out: dict[str, Any] = {
        **_describe(p),
        "p_delay": delay.p_delay(p),
        "kl_upper": b.upper,
        "kl_lower": b.lower,
        "regime": b.regime,
        "bound_method": b.method,
        "knife_edge": p.slack == 0,
        "critical_beta": bounds.critical_beta(p),
        "safe_regime_edge": bounds.safe_regime_edge(p),
        "p_delay_honest": delay.p_delay_honest(p),
        "lag_tail": list(lag.tail),
        "expected_lag_truncated": lag.expected_lag_truncated,
        "lead_equals_lag": lag.lead_equals_lag,
    }
    if p.ratchet:
        out["p_delay_no_ratchet"] = delay.p_delay(p.with_(ratchet=False))
    return out


def _bounds(args: argparse.Namespace) -> dict[str, Any]:
    p = _params(args)
    from mechanism import bounds, delay

    b = bounds.delay_bounds(p)
    return {
        **_describe(p),
        "p_delay": delay.p_delay(p),
        "kl_upper": b.upper,
        "kl_lower": b.lower,
        "regime": b.regime,
        "bound_method": b.method,
        "mean_missing": b.mean_missing,
        "knife_edge": p.slack == 0,
        "knife_edge_p_delay": bounds.knife_edge_p_delay(p.n, p.r),
        "knife_edge_beta_half": bounds.knife_edge_beta_half(p.n, p.q),
        "critical_beta": bounds.critical_beta(p),
        "safe_regime_edge": bounds.safe_regime_edge(p),
    }


def _bounty(args: argparse.Namespace) -> dict[str, Any]:
    p = _params(args)
    econ = _econ(args)
    from mechanism import pivot

    holdings = args.holdings if args.holdings is not None else p.n
    members = args.members if args.members is not None else holdings
    post = pivot.bounty_ex_post(p, econ, holdings)
    ante = pivot.bounty_ex_ante(p, econ)
    return {
        **_describe(p),
        **econ.as_dict(),
        "bounty_single": pivot.bounty_single(p, econ),
        "bounty_ex_post": post.bounty,
        "binding_withheld": post.binding_withheld,
        "bounty_partial_by_j": list(post.per_j),
        "bounty_coalition_transferable": pivot.bounty_coalition(p, econ, holdings, members),
        "bounty_coalition_split": pivot.bounty_coalition(
            p, econ, holdings, members, transferable=False
        ),
        "bounty_pivot_canonical": pivot.bounty_pivot_gaming(p, econ, "canonical"),
        "bounty_pivot_random": pivot.bounty_pivot_gaming(p, econ, "random"),
        "bounty_ex_ante": ante.bounty,
        "ex_ante_p_delay": ante.p_delay,
        "ex_ante_expected_withheld": ante.expected_withheld,
        "fee_deterring_alone": pivot.fee_deterring_alone(p, econ),
    }


def _ratchet(args: argparse.Namespace) -> dict[str, Any]:
    p = _params(args)
    econ = _econ(args)
    from mechanism import ratchet

    return {**_describe(p), **ratchet.compare(p, econ).as_dict()}


def _race(args: argparse.Namespace) -> dict[str, Any]:
    p = _params(args)
    from mechanism import race

    tr = race.tradeoff(p.m, p.t_star, p.beta, p.q, p.lanes, p.ratchet, weight_race=args.weight_race)
    return {
        **_describe(p),
        "p_race": race.p_race(p),
        "race_bound": race.race_bound(p),
        "best_slack": tr.best_slack,
        "best_kappa": p.t_star * p.m - tr.best_slack,
        "tradeoff": [r.__dict__ for r in tr.rows],
    }


def _guide(args: argparse.Namespace) -> dict[str, Any]:
    from mechanism.params import GuideTargets

    targets = GuideTargets(
        eps_delay=args.eps_delay,
        eps_race=args.eps_race,
        beta_max=args.beta_max,
        q=args.q,
        m_max=args.m_max,
        t_max=args.t_max,
        kappa=args.kappa,
    )
    econ = _econ(args)
    from mechanism import guide

    rec = guide.recommend(targets, econ, ratchet=not args.no_ratchet, bounty_form=args.bounty_form)
    return {"ratchet": not args.no_ratchet, "bounty_form": args.bounty_form, **rec.as_dict()}


def _montecarlo(args: argparse.Namespace) -> dict[str, Any]:
    from mechanism.params import Strategy

    p = _params(args)
    strategy = Strategy(args.strategy, threshold=args.threshold, per_slot=args.per_slot)
    from mechanism import delay, montecarlo, race

    res = montecarlo.simulate(
        p,
        strategy,
        trials=args.trials,
        seed=args.seed,
        max_lag=args.max_lag,
        level=args.level,
        ci_method=args.ci,
        adversarial_order=args.adversarial_order,
    )
    exact = _exact_for_strategy(p, strategy, delay)
    p_race = None
    if strategy.kind in ("none", "last-slot", "pivot-order"):
        try:
            p_race = race.p_race(p)
        except ValueError:
            p_race = None
    return {
        **_describe(p),
        "strategy": strategy.kind,
        "trials": res.trials,
        "seed": res.seed,
        "p_delay": exact,
        "p_delay_mc": res.p_delay_mc,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
        "ci_method": res.ci_method,
        "level": res.level,
        "p_race": p_race,
        "p_race_mc": res.p_race_mc,
        "race_ci_low": res.race_ci_low,
        "race_ci_high": res.race_ci_high,
        "lag_counts": list(res.lag_counts),
        "lead_counts": list(res.lead_counts),
        "mean_withheld": res.mean_withheld,
        "mean_pivotal_withheld_order": res.mean_pivotal_withheld_order,
        "mean_pivotal_withheld_random": res.mean_pivotal_withheld_random,
        "bundle_slots": res.bundle_slots,
    }


def _exact_for_strategy(p: Any, strategy: Any, delay: Any) -> float | None:
    """The closed form matching the simulated strategy, or None where we have none."""
    try:
        if strategy.kind == "withhold-all":
            return delay.p_delay(p)
        if strategy.kind == "last-slot" and p.ratchet and p.q == 1.0:
            return delay.p_delay_last_slot_ratchet(p)
        if not p.ratchet:
            return delay.p_delay_strategy(p, strategy)
    except ValueError:
        return None
    return None


def _sweep(args: argparse.Namespace) -> dict[str, Any]:
    from mechanism import sweep

    spec = sweep.SweepSpec(
        m=args.m,
        t_star=args.t_star,
        slacks=sweep.slacks_or_default(
            sweep.parse_ints(args.slacks, "slacks") if args.slacks else None, args.m
        ),
        betas=sweep.beta_grid(args.beta_min, args.beta_max, args.beta_steps),
        q=args.q,
        lanes=args.lanes,
        ratchet=args.ratchet,
        trials=args.trials,
        mc_every=args.mc_every,
    )
    _check_seed(args.seed)
    out = _out_dir(args.out)
    rows = sweep.delay_sweep(spec, args.seed)
    from mechanism import output, plots

    output.write_csv(out / "sweep.csv", sweep.DELAY_COLUMNS, rows)
    plots.render("sweep", rows, out / "sweep")
    files = ["sweep.csv", "sweep.png", "sweep.pdf", "meta.json"]
    output.write_meta(out / "meta.json", "sedna mech sweep", spec.as_dict(), args.seed, files)
    return {"out": str(out), "files": files, "rows": len(rows)}


def _plot(args: argparse.Namespace) -> dict[str, Any]:
    from mechanism import report

    cfg = _report_config(args)
    out = _out_dir(args.out)
    table = report.build(args.figure, cfg, args.seed)
    from mechanism import output

    files = [*report.write_table_and_figure(table, out), "meta.json"]
    output.write_meta(
        out / "meta.json",
        f"sedna mech plot {args.figure}",
        {"figure": args.figure, "quick": cfg.quick, "trials": cfg.trials},
        args.seed,
        files,
    )
    return {"out": str(out), "files": files}


def _report(args: argparse.Namespace) -> dict[str, Any]:
    from mechanism import report

    cfg = _report_config(args)
    out = _out_dir(args.out)
    files = report.run_report(out, cfg, args.seed)
    return {"out": str(out), "files": files}


def _report_config(args: argparse.Namespace) -> Any:
    from mechanism import report

    _check_seed(args.seed)
    if not 1 <= args.trials <= 10_000_000:
        raise ValueError(f"trials must be in 1..10000000, got {args.trials}")
    return report.ReportConfig(quick=args.quick, trials=args.trials)


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _out_dir(path: str) -> Path:
    """Create the output directory (only after every parameter was validated)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {path} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m mechanism.cli delay ...`."""
    parser = argparse.ArgumentParser(prog="sedna")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mech", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
