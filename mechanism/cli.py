"""`sedna mech`: PIVOT-K incentive analysis and cartel Monte Carlo.

Registered by node/cli.py through `add_parser(subparsers)`. Heavy modules (numpy, scipy,
matplotlib) are imported inside the handlers so that `sedna --help` stays fast. Exit
codes: 0 ok, 2 bad input (a one-line message on stderr, nothing written). Without
--json every command prints tables with named, unit-bearing columns; --json prints the
complete result.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from campaign.executor import ExecutorError

EXAMPLES = """examples:
  sedna mech delay --kappa 56 --m 16 --beta 0.1
  sedna mech delay --kappa 8 --m 3 --beta 0.3 --lanes 7 --ratchet --feedback-slots 2
  sedna mech delay --kappa 13 --m 4 --beta 0 --lane-q 0.99,0.95,0.9,0.99 --cartel-positions 2
  sedna mech bounds --kappa 64 --m 16 --beta 0.02
  sedna mech bounty --kappa 56 --m 16 --beta 0.1 --value 1 --fee 0.001
  sedna mech bounty --kappa 56 --m 16 --beta 0.1 --strategy threshold --json
  sedna mech ratchet --kappa 56 --m 16 --beta 0.2
  sedna mech race --kappa 56 --m 16 --beta 0.1
  sedna mech leaders --lanes 7 --m 3 --kappa 8 --censoring 2,5 --dissemination carried
  sedna mech sensitivity --kappa 56 --m 16 --design-beta 0.1 --ratchet
  sedna mech guide --eps-delay 1e-6 --eps-race 1e-4 --beta-max 0.1
  sedna mech montecarlo --kappa 56 --m 16 --beta 0.1 --trials 200000 --seed 1 --json
  sedna mech sweep --m 16 --t-star 4 --out out/sweep --seed 1
  sedna mech plot ratchet --out out/fig
  sedna mech report --out out/report
"""

BOUNTY_STRATEGIES = ("withhold_all", "threshold", "last_slot", "best_response")


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


Handler = Callable[[argparse.Namespace], tuple[dict[str, Any], Any]]


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

    def command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=_runner(name, handler))
        p.add_argument("--json", action="store_true", help="complete result as JSON")
        return p

    p = command("delay", "exact delay probability, KL bounds, critical β, lag", _delay)
    _model_args(p)
    p.add_argument("--max-lag", type=int, default=3, help="lag tail up to this many slots")

    p = command("bounds", "KL bounds, regimes, knife edge, critical cartel fraction", _bounds)
    _model_args(p)

    p = command(
        "bounty",
        "bounty that makes honesty a best response (per strategy; ex-ante, ex-post)",
        _bounty,
    )
    _model_args(p)
    _econ_args(p)
    p.add_argument(
        "--strategy",
        choices=BOUNTY_STRATEGIES,
        default="best_response",
        help="cartel strategy whose bounty is reported as bounty_ex_ante (default best_response)",
    )
    p.add_argument("--max-lag", type=int, default=4, help="slots after t* the model follows")
    p.add_argument("--holdings", type=int, help="bundles the coalition holds (default n)")
    p.add_argument("--members", type=int, help="coalition members (default: holdings)")

    p = command("ratchet", "delay and bounty with and without the ratchet", _ratchet)
    _model_args(p)
    _econ_args(p)

    p = command("race", "within-slot decode race and the optimal slack", _race)
    _model_args(p)
    p.add_argument("--weight-race", type=float, default=1.0, help="objective weight of P_race")

    p = command("leaders", "leader cartels (drop_lane_blocks): delay, lead, early decode", _leaders)
    p.add_argument("--lanes", type=int, required=True, help="validators N (= lanes)")
    p.add_argument("--m", type=int, required=True, help="lanes addressed per slot")
    p.add_argument("--kappa", type=int, required=True, help="bundles needed to decode")
    p.add_argument("--withholding", default="", help="withholding lanes, e.g. 2,5")
    p.add_argument("--censoring", default="", help="censoring leaders, e.g. 2,5")
    p.add_argument("--q", type=float, default=1.0, help="honest in-slot inclusion probability")
    p.add_argument("--policy", choices=("fresh", "fixed", "keep_redeemed"), default="fresh")
    p.add_argument("--feedback-slots", type=int, default=1, help="d: feedback latency [slots]")
    p.add_argument("--dissemination", choices=("carried", "certified"), default="carried")
    p.add_argument("--first-leader", default="uniform",
                   help="leader of the payload's first slot, or 'uniform' (average over N)")
    p.add_argument("--max-lag", type=int, default=4)

    p = command("sensitivity", "designed for one β, facing another: delay and bounties",
                _sensitivity)
    p.add_argument("--kappa", type=int, required=True)
    p.add_argument("--m", type=int, required=True)
    p.add_argument("--design-beta", type=float, required=True, help="β the design assumes")
    p.add_argument("--actual-betas", default="", help="comma list (default 11 points 0..3β)")
    p.add_argument("--design-bounty", type=float,
                   help="b per pivotal bundle (default: ex-post, Variant R, at the design)")
    p.add_argument("--q", type=float, default=1.0)
    p.add_argument("--ratchet", action="store_true")
    _econ_args(p)

    p = command("guide", "recommend (κ, m, Δ) and the bounty for targets", _guide)
    p.add_argument("--eps-delay", type=float, required=True, help="max P(delay) at beta-max")
    p.add_argument("--eps-race", type=float, required=True, help="max P(race) at beta-max")
    p.add_argument("--beta-max", type=float, required=True, help="largest cartel fraction")
    p.add_argument("--q", type=float, default=1.0, help="honest in-slot inclusion probability")
    p.add_argument("--m-max", type=int, default=32, help="largest m searched")
    p.add_argument("--t-max", type=int, default=6, help="largest horizon t* searched")
    p.add_argument("--kappa", type=int, help="fix κ instead of searching it")
    p.add_argument("--no-ratchet", action="store_true", help="the sender does not ratchet")
    p.add_argument("--bounty-form", choices=("ex-ante", "ex-post"), default=None,
                   help="bounty form (default ex-post, as the library)")
    _econ_args(p)

    p = command("montecarlo", "seeded Monte Carlo of the cartel with confidence intervals",
                _montecarlo)
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
    p.add_argument("--adversarial-order", action="store_true",
                   help="cartel lanes come last in the canonical order of slot t*")
    _executor_args(p)

    p = command("sweep", "delay vs cartel fraction per slack: CSV, meta.json, PNG/PDF", _sweep)
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
    _executor_args(p)

    from_figures = (
        "delay", "ratchet", "feedback", "bounty", "response", "race", "bandwidth", "lead",
        "leadvalue", "leaders", "sensitivity", "mev",
    )
    p = command("plot", "one report figure: CSV, meta.json, PNG/PDF", _plot)
    p.add_argument("figure", choices=from_figures)
    _report_args(p)

    p = command("report", "every figure, the tables and report.md (a short paper section)",
                _report)
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
    p.add_argument("--feedback-slots", type=int, default=1,
                   help="ratchet: d, slots until the sender sees a ticket unredeemed")
    p.add_argument("--lane-q", default="",
                   help="fixed lane set with per-lane q: m comma-separated values (heterogeneous)")
    p.add_argument("--cartel-positions", default="",
                   help="with --lane-q: which of the m lanes (0-based) are cartel lanes")


def _executor_args(p: argparse.ArgumentParser) -> None:
    """Where the Monte Carlo runs: --jobs N | --scheduler tcp://HOST:PORT | --cluster local:N
    (campaign.executor; the same numbers on each)."""
    from campaign.executor import add_executor_arguments

    add_executor_arguments(p, default_jobs=1)


@contextmanager
def _executor(args: argparse.Namespace, label: str) -> Iterator[Any]:
    """The executor the arguments ask for, with progress on stderr."""
    from campaign.executor import ProgressLine, executor_spec, open_executor

    spec = executor_spec(args)  # ValueError: bad input, exit 2
    with open_executor(spec, progress=ProgressLine(f"sedna mech {label}")) as executor:
        yield executor


def _econ_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--value", type=float, default=1.0, help="V: value of a one-slot lead")
    p.add_argument("--fee", type=float, default=0.0, help="f: ticket fee per redeemed bundle")
    p.add_argument("--tx-value", type=float, default=1.0, help="v: transaction value")
    p.add_argument("--race-value", type=float, default=0.0, help="V_race: value of a race")
    p.add_argument("--lead-values", default="",
                   help="lead-value curve V(1),V(2),... (overrides --value)")
    p.add_argument("--lead-curve", choices=("constant", "landers-marsh"), default="constant",
                   help="landers-marsh: V(ℓ) = A·k/(k+λ)·(1 − e^{−(k+λ)ℓ})")
    p.add_argument("--lm-amplitude", type=float, default=1.0, help="Landers-Marsh A")
    p.add_argument("--lm-rate", type=float, default=0.5, help="Landers-Marsh k [1/slot]")
    p.add_argument("--lm-hazard", type=float, default=0.1, help="Landers-Marsh λ [1/slot]")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trials", type=int, default=20_000, help="Monte Carlo trials per point")
    p.add_argument("--quick", action="store_true", help="coarse grids, few trials")


def _runner(name: str, handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from mechanism import output

        try:
            payload, view = handler(args)
        except ValueError as exc:
            print(f"sedna mech {name}: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # an output directory that cannot be written
            print(f"sedna mech {name}: error: {exc.strerror or exc}: {exc.filename}",
                  file=sys.stderr)
            return 2
        except ExecutorError as exc:  # the cluster could not run the campaign
            print(f"sedna mech {name}: {exc}", file=sys.stderr)
            return 1
        output.emit(payload, args.json, view)
        return 0

    return run


# --------------------------------------------------------------------------- parsing


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be a comma-separated list of numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{name} must not be empty")
    return values


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be a comma-separated list of integers, got {text!r}") from None


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
        feedback_slots=args.feedback_slots,
    )


def _econ(args: argparse.Namespace) -> Any:
    from mechanism.params import EconParams, landers_marsh_curve

    curve = None
    if args.lead_values:
        curve = tuple(_floats(args.lead_values, "lead-values"))
    elif args.lead_curve == "landers-marsh":
        curve = landers_marsh_curve(args.lm_amplitude, args.lm_rate, args.lm_hazard, 64)
    return EconParams(
        value_lead=args.value,
        fee=args.fee,
        tx_value=args.tx_value,
        value_race=args.race_value,
        lead_curve=curve,
    )


def _heterogeneous(args: argparse.Namespace, p: Any) -> tuple[list[float], list[int]] | None:
    """--lane-q / --cartel-positions: a fixed lane set with per-lane q (or None)."""
    if not args.lane_q:
        if args.cartel_positions:
            raise ValueError("--cartel-positions needs --lane-q")
        return None
    q_lanes = _floats(args.lane_q, "lane-q")
    if len(q_lanes) != p.m:
        raise ValueError(f"--lane-q needs m = {p.m} values, got {len(q_lanes)}")
    if any(not 0.0 < v <= 1.0 for v in q_lanes):
        raise ValueError("every --lane-q value must be in (0, 1]")
    cartel = _ints(args.cartel_positions, "cartel-positions") if args.cartel_positions else []
    if any(not 0 <= c < p.m for c in cartel) or len(set(cartel)) != len(cartel):
        raise ValueError(f"--cartel-positions must be distinct positions in 0..{p.m - 1}")
    if p.ratchet or p.lanes is not None:
        raise ValueError("--lane-q models one fixed lane set: drop --ratchet and --lanes")
    return q_lanes, cartel


# --------------------------------------------------------------------------- views

_PARAM_ROWS = (
    ("κ", "kappa", "bundles", "bundles needed to decode"),
    ("m", "m", "bundles/slot", "bundles addressed per slot, one per lane"),
    ("β", "beta", "", "cartel fraction of lanes"),
    ("q", "q", "", "P(an honest lane finalizes its bundle in its slot)"),
    ("N", "lanes", "lanes", "lanes (— : unbounded population)"),
    ("c", "cartel_lanes", "lanes", "cartel lanes, round(β·N)"),
    ("addressing", "addressing", "", "fresh lanes every slot, or one fixed set"),
    ("ratchet", "ratchet", "", "keep_redeemed: exclude lanes with unredeemed tickets"),
    ("d", "feedback_slots", "slots", "ratchet feedback latency"),
    ("t*", "t_star", "slots", "honest horizon ⌈κ/m⌉"),
    ("Δ", "slack", "bundles", "slack t*·m − κ"),
    ("n", "n", "bundles", "bundles addressed up to t*"),
    ("r", "r", "", "per-bundle miss probability β + (1−β)(1−q)"),
)


def _param_table(data: dict[str, Any]) -> Any:
    from mechanism.output import TextTable

    rows = [
        {"sym": sym, "value": data.get(key), "unit": unit, "meaning": meaning}
        for sym, key, unit, meaning in _PARAM_ROWS
        if key in data
    ]
    return TextTable(
        "Parameters", [("symbol", "sym"), ("value", "value"), ("unit", "unit"),
                       ("meaning", "meaning")], rows
    )


def _econ_table(econ: Any) -> Any:
    from mechanism.output import TextTable

    rows = [
        {"sym": "V", "value": econ.value_lead, "unit": "value", "meaning": "value of a 1-slot lead"},
        {"sym": "f", "value": econ.fee, "unit": "value/bundle", "meaning": "ticket fee"},
        {"sym": "v", "value": econ.tx_value, "unit": "value", "meaning": "transaction value"},
    ]
    if econ.lead_curve is not None:
        rows.append({"sym": "V(ℓ)", "value": list(econ.lead_curve[:6]), "unit": "value",
                     "meaning": "lead-value curve, ℓ = 1, 2, … slots"})
    return TextTable("Economics", [("symbol", "sym"), ("value", "value"), ("unit", "unit"),
                                   ("meaning", "meaning")], rows)


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


def _table(title: str, columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> Any:
    from mechanism.output import TextTable

    return TextTable(title, columns, rows)


# --------------------------------------------------------------------------- commands


def _delay(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    p = _params(args)
    if not 1 <= args.max_lag <= 1000:
        raise ValueError(f"max_lag must be in 1..1000, got {args.max_lag}")
    het = _heterogeneous(args, p)
    from mechanism import bounds, delay
    from mechanism.output import View

    if het is not None:
        return _delay_heterogeneous(args, p, het)
    b = bounds.delay_bounds(p)
    lag = delay.lag_distribution(p, args.max_lag)
    out: dict[str, Any] = {
        **_describe(p),
        "p_delay": delay.p_delay(p),
        "kl_upper": b.upper,
        "kl_lower": b.lower,
        "regime": b.regime,
        "mean_missing": b.mean_missing,
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
    results = [
        {"q": "P(delay), exact", "v": out["p_delay"], "u": "", "m": "P(S_t* < κ), withhold-all"},
        {"q": "upper bound (U)", "v": b.upper, "u": "", "m": f"{b.method} bound; — : not in regime"},
        {"q": "lower bound (L)", "v": b.lower, "u": "", "m": f"{b.method} bound; — : not in regime"},
        {"q": "E[missing at t*]", "v": b.mean_missing, "u": "bundles",
         "m": f"vs slack Δ = {p.slack}: {b.regime}"},
        {"q": "critical β", "v": out["critical_beta"], "u": "", "m": "smallest β with P(delay) >= 1/2"},
        {"q": "mean-at-slack β", "v": out["safe_regime_edge"], "u": "",
         "m": "β at which E[missing] = Δ"},
        {"q": "P(delay), honest lanes only", "v": out["p_delay_honest"], "u": "", "m": "β = 0"},
    ]
    if p.ratchet:
        results.append({"q": "P(delay), no ratchet", "v": out["p_delay_no_ratchet"], "u": "",
                        "m": "same lanes, ratchet off"})
    lag_rows = [{"l": i + 1, "p": v} for i, v in enumerate(lag.tail)]
    view = View(
        f"Delay — κ={p.kappa}, m={p.m}, β={p.beta}, model {p.model}",
        [
            _param_table(out),
            _table("Results", [("quantity", "q"), ("value", "v"), ("unit", "u"),
                               ("meaning", "m")], results),
            _table("Lag of the chain behind t* (equals the cartel's lead when q = 1)",
                   [("ℓ [slots]", "l"), ("P(lag >= ℓ)", "p")], lag_rows),
        ],
    )
    return out, view


def _delay_heterogeneous(
    args: argparse.Namespace, p: Any, het: tuple[list[float], list[int]]
) -> tuple[dict[str, Any], Any]:
    import numpy as np

    from mechanism import bounds, delay
    from mechanism.output import View

    q_lanes, cartel = het
    mask = np.zeros(p.m, dtype=bool)
    mask[cartel] = True
    tails = []
    for ell in range(1, args.max_lag + 1):
        slots = p.t_star + ell - 1
        r = delay.miss_probs_fixed_lanes(np.array(q_lanes), mask, slots)
        tails.append(delay.p_delay_heterogeneous(r, p.kappa))
    r = delay.miss_probs_fixed_lanes(np.array(q_lanes), mask, p.t_star)
    upper, lower = bounds.heterogeneous_bounds(r, p.kappa)
    out = {
        **_describe(p),
        "model": "heterogeneous-fixed",
        "lane_q": q_lanes,
        "cartel_positions": cartel,
        "p_delay": tails[0],
        "kl_upper": upper,
        "kl_lower": lower,
        "lag_tail": tails,
    }
    lanes = [{"pos": i, "q": q_lanes[i], "cartel": i in cartel} for i in range(p.m)]
    view = View(
        f"Delay — heterogeneous fixed lane set, κ={p.kappa}, m={p.m}",
        [
            _param_table(out),
            _table("Lanes", [("position", "pos"), ("q", "q"), ("cartel", "cartel")], lanes),
            _table("Results", [("quantity", "k"), ("value", "v")], [
                {"k": "P(delay), exact (Poisson-binomial)", "v": tails[0]},
                {"k": "KL upper bound (mean miss probability)", "v": upper},
                {"k": "KL lower bound (mean miss probability)", "v": lower},
            ]),
            _table("Lag behind t*", [("ℓ [slots]", "l"), ("P(lag >= ℓ)", "p")],
                   [{"l": i + 1, "p": v} for i, v in enumerate(tails)]),
        ],
    )
    return out, view


def _bounds(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    p = _params(args)
    from mechanism import bounds, delay
    from mechanism.output import View

    b = bounds.delay_bounds(p)
    out = {
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
    rows = [
        {"k": "P(delay), exact", "v": out["p_delay"], "u": ""},
        {"k": "KL upper bound (U)", "v": b.upper, "u": ""},
        {"k": "KL lower bound (L)", "v": b.lower, "u": ""},
        {"k": f"E[missing] vs Δ = {p.slack}", "v": b.mean_missing, "u": f"bundles ({b.regime})"},
        {"k": "knife edge (Δ = 0)", "v": out["knife_edge"], "u": ""},
        {"k": "P(delay) if Δ were 0 at this n", "v": out["knife_edge_p_delay"], "u": ""},
        {"k": "β with P(delay) = 1/2 at Δ = 0", "v": out["knife_edge_beta_half"], "u": ""},
        {"k": "critical β (P(delay) = 1/2)", "v": out["critical_beta"], "u": ""},
    ]
    view = View(f"Bounds — κ={p.kappa}, m={p.m}, β={p.beta}",
                [_param_table(out), _table("Results", [("quantity", "k"), ("value", "v"),
                                                       ("unit", "u")], rows)])
    return out, view


def _bounty(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    p = _params(args)
    econ = _econ(args)
    if not 0 <= args.max_lag <= 16:
        raise ValueError(f"max_lag must be in 0..16, got {args.max_lag}")
    from mechanism import pivot, response
    from mechanism.output import View

    holdings = args.holdings if args.holdings is not None else p.n
    members = args.members if args.members is not None else holdings
    post = pivot.bounty_ex_post(p, econ, holdings)
    rows = []
    chosen: dict[str, Any] | None = None
    for strategy in BOUNTY_STRATEGIES:
        try:
            ante = response.bounty(p, econ, strategy, "ex-ante", args.max_lag)
            expost = (
                response.bounty(p, econ, strategy, "ex-post", args.max_lag)
                if strategy == "best_response" and p.q < 1.0
                else ante
            )
        except ValueError as exc:
            if strategy == args.strategy:
                raise
            rows.append({"strategy": strategy, "note": str(exc)})
            continue
        row = {
            "strategy": strategy,
            "bounty_ex_ante": ante.bounty,
            "bounty_ex_post": expost.bounty,
            "bounty_over_v": ante.bounty / econ.value_lead if econ.value_lead > 0 else None,
            "gain_at_zero": ante.gain_at_zero,
            "p_lead": ante.value.p_lead if strategy != "best_response" else None,
            # JSON has no ∞ (it prints null): say it, as no bounty deters the deviation
            "no_bounty_deters": math.isinf(ante.bounty),
        }
        rows.append(row)
        if strategy == args.strategy:
            chosen = row
    assert chosen is not None
    out = {
        **_describe(p),
        **econ.as_dict(),
        "strategy": args.strategy,
        "bounty_ex_ante": chosen["bounty_ex_ante"],
        "bounty_ex_post": chosen["bounty_ex_post"],
        "expected_gain_at_zero_bounty": chosen["gain_at_zero"],
        "no_bounty_deters": chosen["no_bounty_deters"],
        "strategies": rows,
        "max_lag": args.max_lag,
        "bounty_single": pivot.bounty_single(p, econ),
        "bounty_partial": post.bounty,
        "binding_withheld": post.binding_withheld,
        "bounty_partial_by_j": list(post.per_j),
        "bounty_coalition_transferable": pivot.bounty_coalition(p, econ, holdings, members),
        "bounty_coalition_split": pivot.bounty_coalition(
            p, econ, holdings, members, transferable=False
        ),
        "bounty_pivot_canonical": pivot.bounty_pivot_gaming(p, econ, "canonical"),
        "bounty_pivot_random": pivot.bounty_pivot_gaming(p, econ, "random"),
        "bounty_ex_ante_counterfactual": pivot.bounty_ex_ante(p, econ).bounty,
        "fee_deterring_alone": pivot.fee_deterring_alone(p, econ),
    }
    other = [
        {"k": "one lane, one bundle (π = 1)", "v": out["bounty_single"]},
        {"k": f"partial deviations, binding j = {post.binding_withheld}", "v": post.bounty},
        {"k": "coalition, transferable utility", "v": out["bounty_coalition_transferable"]},
        {"k": "coalition, equal split", "v": out["bounty_coalition_split"]},
        {"k": "decode-slot gaming, canonical order", "v": out["bounty_pivot_canonical"]},
        {"k": "decode-slot gaming, Variant R", "v": out["bounty_pivot_random"]},
        {"k": "fee that deters with no bounty [value/bundle]", "v": out["fee_deterring_alone"]},
    ]
    view = View(
        f"Bounty per pivotal bundle — κ={p.kappa}, m={p.m}, β={p.beta}, model {p.model}",
        [
            _param_table(out),
            _econ_table(econ),
            _table(
                "Bounty that makes honesty a best response (ex-ante: holdings known, this "
                "slot's honest inclusions not; ex-post: both known)",
                [("strategy", "strategy"), ("ex-ante b [value/bundle]", "bounty_ex_ante"),
                 ("b/V", "bounty_over_v"), ("ex-post b [value/bundle]", "bounty_ex_post"),
                 ("gain at b=0 [value/tx]", "gain_at_zero"), ("P(lead>=1)", "p_lead")]
                + ([("note", "note")] if any("note" in r for r in rows) else []),
                rows,
            ),
            _table("Other ex-post bounds [value/bundle]", [("deviation", "k"), ("b", "v")],
                   other),
        ],
        notes=[f"reported strategy: {args.strategy} (--strategy); ∞: no bounty deters it",
               "P(lead>=1): how often a fixed strategy gains a lead (whatever b); — for the "
               "best response, whose play changes with b"],
    )
    return out, view


def _ratchet(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    p = _params(args)
    econ = _econ(args)
    from mechanism import delay, ratchet
    from mechanism.output import View

    cmp = ratchet.compare(p, econ)
    out = {**_describe(p), **cmp.as_dict()}
    feedback = []
    for d in (1, 2, 3, 4):
        try:
            value = delay.p_delay(p.with_(ratchet=True, feedback_slots=d))
        except ValueError:
            value = None
        feedback.append({"d": d, "p": value})
    out["p_delay_by_feedback"] = feedback
    rows = [
        {"k": "P(delay), fresh lanes", "v": cmp.p_delay_fresh},
        {"k": "P(delay), fixed lane set", "v": cmp.p_delay_fixed},
        {"k": f"P(delay), ratchet (d = {p.feedback_slots})", "v": cmp.p_delay_ratchet},
        {"k": "P(first-slot deficit > Δ)", "v": cmp.p_first_slot_deficit},
        {"k": "P(delay), last-slot cartel vs ratchet", "v": cmp.p_delay_last_slot},
        {"k": "withhold-all ex-ante b, fresh [value/bundle]", "v": cmp.bounty_ex_ante_fresh},
        {"k": "withhold-all ex-ante b, ratchet [value/bundle]", "v": cmp.bounty_ex_ante_ratchet},
        {"k": "reduction (fresh / ratchet)", "v": cmp.bounty_reduction},
        {"k": "best-response b, fresh [value/bundle]", "v": cmp.bounty_best_response_fresh},
        {"k": "best-response b, ratchet [value/bundle]", "v": cmp.bounty_best_response_ratchet},
    ]
    view = View(
        f"Ratchet — κ={p.kappa}, m={p.m}, β={p.beta}",
        [
            _param_table(out),
            _table("Withhold-all cartel and best response", [("quantity", "k"), ("value", "v")],
                   rows),
            _table("Ratchet with feedback latency", [("d [slots]", "d"), ("P(delay)", "p")],
                   feedback),
            _table("Lag behind t*", [("ℓ [slots]", "l"), ("fresh: P(lag >= ℓ)", "f"),
                                     ("ratchet: P(lag >= ℓ)", "r")],
                   [{"l": i + 1, "f": f, "r": r} for i, (f, r) in
                    enumerate(zip(cmp.lag_tail_fresh, cmp.lag_tail_ratchet, strict=True))]),
        ],
    )
    return out, view


def _race(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    p = _params(args)
    from mechanism import race
    from mechanism.output import View

    tr = race.tradeoff(p.m, p.t_star, p.beta, p.q, p.lanes, p.ratchet, weight_race=args.weight_race)
    out = {
        **_describe(p),
        "p_race": race.p_race(p),
        "race_bound": race.race_bound(p),
        "best_slack": tr.best_slack,
        "best_kappa": p.t_star * p.m - tr.best_slack,
        "tradeoff": [r.__dict__ for r in tr.rows],
    }
    view = View(
        f"Within-slot race — κ={p.kappa}, m={p.m}, β={p.beta}",
        [
            _param_table(out),
            _table("At these parameters", [("quantity", "k"), ("value", "v")], [
                {"k": "P(race), exact", "v": out["p_race"]},
                {"k": "Chernoff bound on P(race)", "v": out["race_bound"]},
                {"k": f"best slack Δ* at t* = {p.t_star}", "v": tr.best_slack},
                {"k": "κ at Δ*", "v": out["best_kappa"]},
            ]),
            _table(f"Trade-off over the slack (t* = {p.t_star}; objective = P(delay) + "
                   f"{args.weight_race}·P(race))",
                   [("Δ [bundles]", "slack"), ("κ [bundles]", "kappa"), ("P(delay)", "p_delay"),
                    ("P(race)", "p_race"), ("objective", "objective")],
                   [r.__dict__ for r in tr.rows]),
        ],
    )
    return out, view


def _leaders(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from mechanism import lanechain, leaders
    from mechanism.output import View

    withholding = set(_ints(args.withholding, "withholding")) if args.withholding else set()
    censoring = set(_ints(args.censoring, "censoring")) if args.censoring else set()
    if args.first_leader == "uniform":
        starts = list(range(max(1, args.lanes)))
    else:
        try:
            starts = [int(args.first_leader)]
        except ValueError:
            raise ValueError("--first-leader must be an integer or 'uniform'") from None
    if args.policy == "fresh":  # the count model: any N
        setup = leaders.LeaderCartel(
            args.lanes, args.m, args.kappa, len(withholding - censoring),
            len(censoring - withholding), len(withholding & censoring), args.q,
            args.dissemination, args.max_lag,
        )
        kinds = [
            ("cw" if v in withholding else "c") if v in censoring else
            ("w" if v in withholding else "h") for v in range(args.lanes)
        ]
        for v in withholding | censoring:
            if not 0 <= v < args.lanes:
                raise ValueError(f"lane {v} outside 0..{args.lanes - 1}")
        for v in starts:
            if not 0 <= v < args.lanes:
                raise ValueError(f"--first-leader must be in 0..{args.lanes - 1}")
        result = leaders.predict_round_robin(setup, kinds, starts)
        engine = "mechanism.leaders (count model, fresh addressing)"
        t_star = setup.t_star
    else:
        base = lanechain.LaneSetup(
            args.lanes, args.m, args.kappa, withholding, censoring, args.q, args.policy,
            args.feedback_slots, args.dissemination, starts[0], args.max_lag,
        )
        result = lanechain.predict_payloads(base, starts)
        engine = "mechanism.lanechain (lane by lane)"
        t_star = base.t_star
    out = {
        "lanes": args.lanes, "m": args.m, "kappa": args.kappa, "t_star": t_star,
        "slack": t_star * args.m - args.kappa, "q": args.q,
        "withholding": sorted(withholding), "censoring": sorted(censoring),
        "policy": args.policy, "feedback_slots": args.feedback_slots,
        "dissemination": args.dissemination, "first_leaders": starts, "engine": engine,
        **result.as_dict(),
    }
    lags = [{"l": i, "p": v} for i, v in enumerate(result.lag_pmf)]
    view = View(
        f"Leader cartel — N={args.lanes}, κ={args.kappa}, m={args.m}, "
        f"{args.dissemination}, {args.policy}",
        [
            _table("Setup", [("quantity", "k"), ("value", "v")], [
                {"k": "withholding lanes", "v": sorted(withholding) or "none"},
                {"k": "censoring leaders", "v": sorted(censoring) or "none"},
                {"k": "payload start (first leader)", "v": args.first_leader},
                {"k": "feedback latency d [slots]", "v": args.feedback_slots},
                {"k": "model", "v": engine},
            ]),
            _table("Results (per payload)", [("quantity", "k"), ("value", "v")], [
                {"k": "P(delay): decoded after t*", "v": result.p_delay},
                {"k": "P(cartel lead >= 1 slot)", "v": result.lead_tail()[0] if result.lead_tail() else 0.0},
                {"k": "P(decode-height leader in cartel: early decode)", "v": result.p_leader_early},
                {"k": "P(cartel decodes before the chain's decode height is final)", "v": result.p_race},
                {"k": f"P(not decoded by t* + {args.max_lag})", "v": result.p_undecided},
                {"k": "E[lag | decoded] [slots]", "v": result.mean_lag_decoded},
            ]),
            _table("Lag distribution (netsim's decode_slot_delay)",
                   [("lag [slots]", "l"), ("P(lag = ℓ)", "p")], lags),
        ],
    )
    return out, view


def _sensitivity(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from mechanism import pivot, sensitivity
    from mechanism.output import View
    from mechanism.params import SednaParams

    econ = _econ(args)
    design = SednaParams(args.kappa, args.m, args.design_beta, args.q, ratchet=args.ratchet)
    if args.actual_betas:
        betas = _floats(args.actual_betas, "actual-betas")
    else:
        top = min(0.95, max(3 * args.design_beta, 0.05))
        betas = [round(top * i / 10, 6) for i in range(11)]
    for b in betas:
        SednaParams(args.kappa, args.m, b)  # validates each β
    bounty = args.design_bounty
    if bounty is None:
        bounty = pivot.bounty_pivot_gaming(design, econ, "random")
    rows = sensitivity.design_vs_actual(sensitivity.Design(design, bounty), econ, betas)
    out = {**_describe(design), "design_bounty": bounty, "rows": rows}
    view = View(
        f"Designed for β={args.design_beta}, facing another β — κ={args.kappa}, m={args.m}",
        [
            _param_table(out),
            _table(
                f"Designed bounty b = {bounty:.4g} [value/bundle]; the bounty each cartel needs "
                "[value/bundle]",
                [("actual β", "beta_actual"), ("P(delay)", "p_delay"), ("P(race)", "p_race"),
                 ("b withhold-all", "bounty_withhold_all"),
                 ("b threshold", "bounty_threshold"), ("b best response", "bounty_best_response"),
                 ("BR gain at design b [value/tx]", "best_response_gain_at_design")],
                rows,
            ),
        ],
    )
    return out, view


def _guide(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from mechanism import guide
    from mechanism.output import View
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
    form = args.bounty_form or guide.DEFAULT_BOUNTY_FORM
    rec = guide.recommend(targets, econ, ratchet=not args.no_ratchet, bounty_form=form)
    out = {"ratchet": not args.no_ratchet, "bounty_form": form, **rec.as_dict()}
    rows = [
        {"k": "κ", "v": rec.kappa, "u": "bundles"},
        {"k": "m", "v": rec.m, "u": "bundles/slot"},
        {"k": "t*", "v": rec.t_star, "u": "slots"},
        {"k": "Δ", "v": rec.slack, "u": "bundles"},
        {"k": "P(delay) at β_max", "v": rec.p_delay, "u": ""},
        {"k": "P(race) at β_max", "v": rec.p_race, "u": ""},
        {"k": f"bounty per pivotal bundle ({form})", "v": rec.bounty_per_bundle, "u": "value"},
        {"k": "bounty per transaction κ·b", "v": rec.bounty_total, "u": "value"},
        {"k": "MEV cost Γ", "v": rec.gamma, "u": "fraction of v"},
        {"k": "coding overhead n/κ", "v": rec.overhead, "u": ""},
        {"k": "candidates checked / feasible", "v": f"{rec.candidates_checked} / "
         f"{rec.candidates_feasible}", "u": ""},
    ]
    view = View("Recommended parameters", [_table("Recommendation", [
        ("quantity", "k"), ("value", "v"), ("unit", "u")], rows)],
        notes=[f"bounty form: {form} (default {guide.DEFAULT_BOUNTY_FORM}); the best-response "
               "bounty can be larger: sedna mech bounty --strategy best_response"])
    return out, view


def _montecarlo(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from mechanism.params import Strategy

    p = _params(args)
    strategy = Strategy(args.strategy, threshold=args.threshold, per_slot=args.per_slot)
    from mechanism import delay, montecarlo, race
    from mechanism.output import View

    with _executor(args, "montecarlo") as executor:
        res = montecarlo.simulate(
            p,
            strategy,
            trials=args.trials,
            seed=args.seed,
            max_lag=args.max_lag,
            level=args.level,
            ci_method=args.ci,
            adversarial_order=args.adversarial_order,
            executor=executor,
        )
    exact = _exact_for_strategy(p, strategy, delay)
    p_race = None
    if strategy.kind in ("none", "last-slot", "pivot-order"):
        try:
            p_race = race.p_race(p)
        except ValueError:
            p_race = None
    out = {
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
    rows = [
        {"k": "P(delay)", "x": exact, "mc": res.p_delay_mc, "lo": res.ci_low, "hi": res.ci_high},
        {"k": "P(race)", "x": p_race, "mc": res.p_race_mc, "lo": res.race_ci_low,
         "hi": res.race_ci_high},
    ]
    lag = [{"l": i, "lag": c, "lead": res.lead_counts[i]} for i, c in enumerate(res.lag_counts)]
    view = View(
        f"Monte Carlo — {strategy.kind}, {args.trials} trials, seed {args.seed}",
        [
            _param_table(out),
            _table(f"Estimates ({res.level:.0%} {res.ci_method} interval)",
                   [("quantity", "k"), ("exact", "x"), ("simulated", "mc"),
                    ("CI low", "lo"), ("CI high", "hi")], rows),
            _table("Counts by slots after t* (last row: more)",
                   [("ℓ [slots]", "l"), ("trials with lag ℓ", "lag"),
                    ("trials with lead ℓ", "lead")], lag),
            _table("Withheld bundles per transaction (mean)", [("quantity", "k"), ("value", "v")], [
                {"k": "withheld by t*", "v": res.mean_withheld},
                {"k": "of which pivotal, canonical order", "v": res.mean_pivotal_withheld_order},
                {"k": "of which pivotal, Variant R", "v": res.mean_pivotal_withheld_random},
            ]),
        ],
    )
    return out, view


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


def _files_view(title: str, out: Path, files: list[str]) -> Any:
    from mechanism.output import View

    return View(title, [_table(f"Written to {out}", [("file", "f")], [{"f": f} for f in files])])


def _sweep(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
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
    with _executor(args, "sweep") as executor:  # validates --jobs/--scheduler/--cluster
        out = _out_dir(args.out)
        rows = sweep.delay_sweep(spec, args.seed, executor)
    from mechanism import output, plots

    output.write_csv(out / "sweep.csv", sweep.DELAY_COLUMNS, rows)
    plots.render("sweep", rows, out / "sweep")
    files = ["sweep.csv", "sweep.png", "sweep.pdf", "meta.json"]
    output.write_meta(out / "meta.json", "sedna mech sweep", spec.as_dict(), args.seed, files)
    return {"out": str(out), "files": files, "rows": len(rows)}, _files_view(
        "Delay sweep", out, files
    )


def _plot(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
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
    return {"out": str(out), "files": files}, _files_view(f"Figure {args.figure}", out, files)


def _report(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from mechanism import report

    cfg = _report_config(args)
    out = _out_dir(args.out)
    files = report.run_report(out, cfg, args.seed)
    return {"out": str(out), "files": files}, _files_view("Report", out, files)


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
    """Create the output directory and check it is writable (after every parameter was
    validated, before any work): a bad --out is one line and exit 2, not a traceback."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {path} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sedna-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {path} is not writable ({exc.strerror or exc})") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m mechanism.cli delay ...`."""
    parser = argparse.ArgumentParser(prog="sedna")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mech", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
