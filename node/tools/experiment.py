"""`sedna mech experiment`: withholding cartels measured against the mechanism model.

For each point (where, strategy, cartel size) the experiment runs the cartel (netsim seeds
on the campaign executor, or real testnets through the launcher), measures the delayed
fraction P(lag >= 1) with a Wilson or Clopper-Pearson interval, the decode-slot-delay
distribution and the cartel's lead, and sets beside them the `mechanism.lanechain`
prediction for the same parameters (the sender's real policy and feedback latency,
κ, m and d read from the run's own report). docs/cartels.md.

A point agrees when the predicted P(lag >= 1) (averaged over the measured payloads'
first leaders) lies inside the interval at `--level` (default 99 %) and every payload the
model is certain about came out that way. Where no model applies (a strategy with
censoring leaders, more lanes than the exact model takes) the point is `unmodelled`:
reported, never counted as agreeing. Exit codes: 0 every modelled point agrees, 1 a
point disagrees or a run failed (a violation, q < 1), 2 bad input.

Leader censorship (`--censor 1,2`): `drop_lane_blocks` on that many leaders, against the
leader-cartel part of the same model (docs/mechanism.md §16).

This module joins the three packages (netsim, mechanism, the testnet launcher), so it
lives with the node's tools; the comparison itself is `mechanism.agreement`, the netsim
measurement `netsim.measure`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STRATEGIES = ("withhold_all", "threshold", "last_slot", "adaptive")
CENSOR = "drop_lane_blocks"
WHERE = ("netsim", "testnet")
POLICIES = ("keep_redeemed", "fresh", "fixed")
MAX_LANES = 12  # the exact lane model's limit (mechanism.lanechain.MAX_LANES)
MAX_PAYLOADS = 100_000
MAX_SEEDS = 1_000
SENDERS = 6  # netsim senders per run (one payload every 2 slots each)
FIRST_SLOT = 4  # netsim's default first payload slot
LOOKAHEAD = 4  # netsim's default lookahead (= the ratchet's feedback d, carried)
NETSIM_S_PER_BLOCK = 0.02  # run-time estimate: simulated blocks per second of CPU (7 nodes)
NETSIM_S_PER_PAYLOAD = 0.003

EXAMPLES = """examples:
  sedna mech experiment --kappa 8 --m 3 --lanes 7 --cartel 0,1,2,3 \\
      --strategy withhold_all,threshold --payloads 200 --seeds 10 --where netsim --out runs/cartels
  sedna mech experiment --cartel 0,3 --strategy withhold_all --payloads 60 --seeds 2 --json
  sedna mech experiment --cartel 0 --censor 1,2 --strategy withhold_all --where netsim
  sedna mech experiment --kappa 8 --m 3 --lanes 7 --cartel 0,1,2,3 --censor 1,2 \\
      --strategy withhold_all,threshold --payloads 200 --seeds 10 \\
      --where netsim,testnet --transport tcp --out docs/cartels/testnet   (docs/cartels.md)

exit codes: 0 every modelled point agrees, 1 a point disagrees or a run failed, 2 bad input
"""


class ExperimentError(ValueError):
    """Bad input (exit 2); the text says which flag and why."""


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Spec:
    kappa: int = 8
    m: int = 3
    lanes: int = 7
    cartel: tuple[int, ...] = (0, 1, 2, 3)
    strategies: tuple[str, ...] = ("withhold_all", "threshold")
    theta: int | None = None
    censor: tuple[int, ...] = ()
    payloads: int = 200
    seeds: int = 10
    where: tuple[str, ...] = ("netsim",)
    transport: str = "tcp"
    policy: str = "keep_redeemed"
    max_lag: int = 6
    level: float = 0.99
    ci: str = "wilson"
    first_seed: int = 1

    @property
    def t_star(self) -> int:
        return -(-self.kappa // self.m)

    @property
    def per_seed(self) -> int:
        return math.ceil(self.payloads / self.seeds)

    @property
    def senders(self) -> int:
        return max(1, min(SENDERS, self.per_seed))

    @property
    def per_sender(self) -> int:
        return math.ceil(self.per_seed / self.senders)

    @property
    def until_blocks(self) -> int:
        """Blocks a netsim run needs: every payload started (every 2 slots per sender),
        then decided or past the model's horizon, with the lookahead and a margin."""
        last_start = FIRST_SLOT + 2 * (self.per_sender - 1)
        return last_start + self.t_star + self.max_lag + LOOKAHEAD + 8


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip() != "")
    except ValueError:
        raise ExperimentError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if len(set(values)) != len(values):
        raise ExperimentError(f"{flag}: values must be distinct, got {text!r}")
    return values


def _names(text: str, flag: str, allowed: Sequence[str]) -> tuple[str, ...]:
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ExperimentError(
            f"{flag}: unknown value(s) {bad or [text]}; choose from {list(allowed)}"
        )
    if len(set(values)) != len(values):
        raise ExperimentError(f"{flag}: values must be distinct, got {text!r}")
    return values


def spec_of(args: argparse.Namespace) -> Spec:
    """The validated spec of parsed arguments (ExperimentError: exit 2)."""
    if not 4 <= args.lanes <= MAX_LANES:
        raise ExperimentError(
            f"--lanes must be in 4..{MAX_LANES} (the exact lane model), got {args.lanes}"
        )
    if args.kappa < 1:
        raise ExperimentError(f"--kappa must be >= 1, got {args.kappa}")
    if not 1 <= args.m <= args.lanes:
        raise ExperimentError(f"--m must be in 1..{args.lanes} (lanes), got {args.m}")
    cartel = _ints(args.cartel, "--cartel")
    if not cartel and not args.censor:
        raise ExperimentError("--cartel: give at least one cartel size (or --censor)")
    for c in cartel:
        if not 0 <= c < args.lanes:
            raise ExperimentError(f"--cartel: sizes must be in 0..{args.lanes - 1}, got {c}")
    censor = _ints(args.censor, "--censor") if args.censor else ()
    for k in censor:
        if not k >= 1 or 3 * k >= args.lanes:
            raise ExperimentError(
                f"--censor: censoring leaders deviate in consensus: need 1 <= k < lanes/3, got {k}"
            )
    strategies = _names(args.strategy, "--strategy", STRATEGIES)
    if args.theta is not None and (args.theta < 1 or "threshold" not in strategies):
        raise ExperimentError("--theta (>= 1) is an option of the threshold strategy")
    if not 1 <= args.payloads <= MAX_PAYLOADS:
        raise ExperimentError(f"--payloads must be in 1..{MAX_PAYLOADS}, got {args.payloads}")
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise ExperimentError(f"--seeds must be in 1..{MAX_SEEDS}, got {args.seeds}")
    where = _names(args.where, "--where", WHERE)
    if not 0.5 <= args.level < 1.0:
        raise ExperimentError(f"--level must be in [0.5, 1), got {args.level}")
    if not 1 <= args.max_lag <= 16:
        raise ExperimentError(f"--max-lag must be in 1..16, got {args.max_lag}")
    if args.first_seed < 0:
        raise ExperimentError(f"--first-seed must be >= 0, got {args.first_seed}")
    return Spec(
        kappa=args.kappa,
        m=args.m,
        lanes=args.lanes,
        cartel=cartel,
        strategies=strategies,
        theta=args.theta,
        censor=censor,
        payloads=args.payloads,
        seeds=args.seeds,
        where=where,
        transport=args.transport,
        policy=args.policy,
        max_lag=args.max_lag,
        level=args.level,
        ci=args.ci,
        first_seed=args.first_seed,
    )


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class Point:
    where: str
    strategy: str  # a cartel strategy, or "drop_lane_blocks" (leader censorship)
    cartel: int  # withholding lanes, or censoring leaders

    def members(self, lanes: int) -> tuple[int, ...]:
        """The last `cartel` validators (node 0, which the measurement reads, stays honest)."""
        return tuple(range(lanes - self.cartel, lanes))

    @property
    def label(self) -> str:
        return f"{self.where}/{self.strategy}/c={self.cartel}"


def points_of(spec: Spec) -> list[Point]:
    out = []
    for where in spec.where:
        for strategy in spec.strategies:
            out += [Point(where, strategy, c) for c in spec.cartel]
        out += [Point(where, CENSOR, k) for k in spec.censor]
    return out


def scenario_text(spec: Spec, point: Point) -> str:
    """The netsim scenario of a point (carried lanes: the model's mode)."""
    from netsim.measure import lanes_scenario_text

    behaviour = CENSOR if point.strategy == CENSOR else "withhold_bundles"
    withholding = point.strategy != CENSOR
    return lanes_scenario_text(
        kappa=spec.kappa,
        m=spec.m,
        byzantine={node: [behaviour] for node in point.members(spec.lanes)},
        senders=spec.senders,
        payloads=spec.per_sender,
        ratchet=spec.policy == "keep_redeemed",
        policy="fresh" if spec.policy == "keep_redeemed" else spec.policy,
        validators=spec.lanes,
        strategy=point.strategy if withholding else None,
        theta=spec.theta if withholding and point.strategy == "threshold" else None,
        until_blocks=spec.until_blocks,
        until_ms=max(60_000, 1_000 * spec.until_blocks),
    )


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """One point: what was measured and what the model says."""

    where: str
    strategy: str
    cartel: int
    payloads: int = 0
    left_out: int = 0
    # why the left-out payloads were (testnet: each record's `not_clean` reasons)
    left_out_why: dict[str, int] = field(default_factory=dict)
    delayed: int = 0
    measured: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    predicted: float | None = None
    agree: bool | None = None
    status: str = "unmeasured"  # agree | disagree | unmodelled | failed
    reason: str = ""
    certainty_failures: int = 0
    lag_measured: dict[str, int] = field(default_factory=dict)  # "0".."L", "undecided"
    lag_predicted: dict[str, float] = field(default_factory=dict)
    lead_measured: dict[str, int] = field(default_factory=dict)
    lead_predicted: dict[str, float] = field(default_factory=dict)
    tails: list[dict[str, Any]] = field(default_factory=list)  # P(lag >= ℓ), ℓ >= 2 (info)
    runs: int = 0
    seconds: float = 0.0
    private_decodes: int = 0  # payloads whose cartel pool was decoded at T_cart (checked)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(spec: Spec, point: Point, measured: Any, seconds: float) -> Result:
    """Compare one point's measurement (a `netsim.measure.Measured` or the testnet's
    equivalent) with the model."""
    from mechanism.agreement import Model, check, setup_for

    result = Result(point.where, point.strategy, point.cartel, runs=measured.runs)
    result.seconds = round(seconds, 3)
    result.payloads = measured.payloads
    result.left_out = measured.left_out
    result.private_decodes = measured.private_decodes
    lags = Counter("undecided" if lag is None else str(lag) for lag in measured.lags)
    result.lag_measured = dict(sorted(lags.items()))
    leads = Counter(str(lead) for lead in measured.leads if lead is not None)
    if point.strategy != CENSOR:  # T_cart counts withheld bundles only (netsim.measure)
        result.lead_measured = dict(sorted(leads.items()))
    if measured.payloads == 0:
        result.status, result.agree = "failed", False
        result.reason = "no payload measured"
        return result
    result.delayed = measured.at_least(1)
    result.measured = result.delayed / measured.payloads
    if measured.problems:
        result.status, result.agree = "failed", False
        result.reason = "; ".join(measured.problems[:3])
        return result
    members = point.members(spec.lanes)
    try:
        setup = setup_for(
            validators=spec.lanes,
            lanes_report=measured.report_lanes,
            withholding=members if point.strategy != CENSOR else (),
            censoring=members if point.strategy == CENSOR else (),
            policy=spec.policy if spec.policy != "keep_redeemed" else "fresh",
            max_lag=spec.max_lag,
            strategy=point.strategy if point.strategy != CENSOR else "withhold_all",
            theta=spec.theta if point.strategy == "threshold" else None,
        )
        model = Model(setup)
        first = check(measured, model, 1, level=spec.level, method=spec.ci)
    except ValueError as exc:  # no model applies (or it is too large to compute)
        from mechanism.montecarlo import binomial_ci

        interval = binomial_ci(result.delayed, measured.payloads, spec.level, spec.ci)
        result.ci_low, result.ci_high = interval.low, interval.high
        result.status, result.agree, result.reason = "unmodelled", None, str(exc)
        return result
    result.ci_low, result.ci_high = first.interval.low, first.interval.high
    result.predicted = first.predicted
    result.certainty_failures = first.certainty_failures
    result.agree = first.agree
    result.status = "agree" if first.agree else "disagree"
    pmf = model.mean_lag_pmf(measured.first_leaders)
    result.lag_predicted = {str(i): p for i, p in enumerate(pmf[:-1])} | {"undecided": pmf[-1]}
    if point.strategy != CENSOR:
        lead = model.mean_lead_pmf(measured.first_leaders)
        result.lead_predicted = {str(i): p for i, p in enumerate(lead)}
    for ell in range(2, min(spec.max_lag, 3) + 1):
        tail = check(measured, model, ell, level=spec.level, method=spec.ci)
        result.tails.append(
            {
                "ell": ell,
                "measured": tail.measured / tail.payloads,
                "ci_low": tail.interval.low,
                "ci_high": tail.interval.high,
                "predicted": tail.predicted,
                "agree": tail.agree,
            }
        )
    return result


# --------------------------------------------------------------------------- backends


def estimate_seconds(spec: Spec, jobs: int) -> float:
    """Rough CPU time of the netsim part (calibrated on this machine's 7-node runs)."""
    per_run = NETSIM_S_PER_BLOCK * spec.until_blocks * spec.lanes / 7 + (
        NETSIM_S_PER_PAYLOAD * spec.per_seed
    )
    runs = len([p for p in points_of(spec) if p.where == "netsim"]) * spec.seeds
    testnets = len([p for p in points_of(spec) if p.where == "testnet"])
    testnet_s = testnets * (TESTNET_START_S + testnet_sent(spec) / TESTNET_PAYLOADS_PER_S)
    return runs * per_run / max(1, jobs) + testnet_s


def run_netsim(spec: Spec, points: Sequence[Point], executor: Any) -> list[Result]:
    """Every (point, seed) as one campaign task; merged per point in seed order."""
    from netsim.measure import Measured, measure_task

    tasks: list[tuple[str, int, int]] = []
    owners: list[int] = []
    for k, point in enumerate(points):
        text = scenario_text(spec, point)
        for seed in range(spec.first_seed, spec.first_seed + spec.seeds):
            tasks.append((text, seed, spec.max_lag))
            owners.append(k)
    started = time.monotonic()
    results = executor.map(measure_task, tasks, label="netsim run")
    seconds = (time.monotonic() - started) / max(1, len(points))
    merged = [Measured(lanes=spec.lanes) for _ in points]
    for owner, measured in zip(owners, results, strict=True):
        merged[owner].merge(measured)
    return [evaluate(spec, p, m, seconds) for p, m in zip(points, merged, strict=True)]


# The launcher API the testnet backend calls (`node.tools.testnet`): `run_cartel(nodes=,
# cartel=, strategy=, m=, theta=, censors=, **RunOptions fields)` runs one bounded testnet
# and returns its summary, whose `sedna_payloads` lists per Sedna payload its `first_slot`,
# `decode_slot` (the height the chain decided it; carried lanes: its decode height),
# `cartel_slot` (the first slot a cartel member decoded it privately from its pool),
# `lead` and `clean` (no bundle of it refused).
TESTNET_API = ("run_cartel", "cartel_options")
TESTNET_RECORD_KEYS = ("first_slot", "decode_slot", "cartel_slot", "lead", "clean", "not_clean")
TESTNET_PAYLOADS_PER_S = 10.0
# A testnet point sends this many more payloads than it measures: a real network leaves
# some out (refused for timing, an honest lane block that missed its height; up to a
# tenth under heavy load), and the point measures the first `--payloads` clean ones.
TESTNET_SPARE = 0.25
TESTNET_START_S = 15.0  # start, readiness, drain and stop of one testnet (estimate)


def testnet_sent(spec: Spec) -> int:
    """How many payloads a testnet point sends to measure `spec.payloads` of them."""
    return math.ceil(spec.payloads * (1 + TESTNET_SPARE))


def testnet_missing(strategies: Sequence[str] = ()) -> str | None:
    """What the testnet backend needs from the launcher and is not there (None: ready)."""
    from node.tools import testnet

    missing = [
        f"node.tools.testnet.{name} (the cartel launcher API: `--byzantine "
        "withhold_bundles:NODES:strategy=...` with the pooled cartel's per-payload slots)"
        for name in TESTNET_API
        if not callable(getattr(testnet, name, None))
    ]
    record = set(getattr(testnet, "SEDNA_PAYLOAD_RECORD_KEYS", ()))
    if not set(TESTNET_RECORD_KEYS) <= record:
        missing.append(
            f"per-payload records in the run summary (sedna_payloads with "
            f"{', '.join(TESTNET_RECORD_KEYS)}: testnet.SEDNA_PAYLOAD_RECORD_KEYS)"
        )
    fields = getattr(testnet.RunOptions, "__dataclass_fields__", {})
    for name in ("sedna_bundles_per_slot", "sedna_extra_bundles", "dissemination"):
        if name not in fields:
            missing.append(f"RunOptions.{name}")
    try:
        from node.config import WITHHOLD_STRATEGIES  # type: ignore[attr-defined]
    except ImportError:
        WITHHOLD_STRATEGIES = ()
    lacking = [s for s in strategies if s != CENSOR and s not in WITHHOLD_STRATEGIES]
    if lacking:
        missing.append(
            f"the node-side cartel strategies {lacking} (node.config.WITHHOLD_STRATEGIES; "
            "options strategy=S:m=M[:theta=θ], consensus.lanes.cartel.parse_strategy)"
        )
    return "; ".join(missing) if missing else None


def payload_bytes_for(kappa: int) -> int:
    """The smallest payload size whose layout under the node's lane parameters has κ."""
    from consensus.lanes.params import LaneParamsError, layout_for
    from node.lanes_node import NODE_LANE_PARAMS

    low, high = 1, NODE_LANE_PARAMS.max_payload_bytes
    if layout_for(NODE_LANE_PARAMS, high).kappa < kappa:
        raise ExperimentError(f"--kappa {kappa}: above what the node's lane parameters allow")
    while low < high:  # κ is non-decreasing in the size
        mid = (low + high) // 2
        if layout_for(NODE_LANE_PARAMS, mid).kappa < kappa:
            low = mid + 1
        else:
            high = mid
    try:
        if layout_for(NODE_LANE_PARAMS, low).kappa != kappa:
            raise ExperimentError(f"--kappa {kappa}: no payload size gives exactly this κ")
    except LaneParamsError as exc:
        raise ExperimentError(f"--kappa {kappa}: {exc}") from None
    return low


def testnet_options(spec: Spec, point: Point) -> dict[str, Any]:
    """`run_cartel` arguments of one testnet point: N validators, carried lanes (the
    model's mode), no plain load, Sedna payloads of κ bundles sent m a slot by the fresh
    policy, the first attempt t*·m bundles (κ + Δ: the model's first t* slots), the
    cartel's behaviour on its nodes."""
    members = point.members(spec.lanes)
    censor = point.strategy == CENSOR
    return {
        "nodes": spec.lanes,
        "cartel": () if censor else members,
        "strategy": "withhold_all" if censor else point.strategy,
        "m": spec.m,
        "theta": spec.theta if point.strategy == "threshold" else None,
        "censors": members if censor else (),
        "duration_s": testnet_sent(spec) / TESTNET_PAYLOADS_PER_S,
        "transport": spec.transport,
        "dissemination": "carried",
        "sedna_rate_pps": TESTNET_PAYLOADS_PER_S,
        "sedna_bytes": payload_bytes_for(spec.kappa),
        "sedna_policy": "fresh",
        "sedna_bundles_per_slot": spec.m,
        "sedna_extra_bundles": spec.t_star * spec.m - spec.kappa,
    }


def record_leader(spec: Spec, record: dict[str, Any]) -> int | None:
    """The leader of a testnet payload's first slot if its counted slots (the first
    attempt's t*, the ones P(lag >= 1) depends on) were led round robin, as the model's
    leaders are (`slot_leaders`: the author of each slot's finalized block); None when a
    timeout moved the schedule there or a slot has no finalized block."""
    from netsim.measure import round_robin_leader

    first = record.get("first_slot")
    leaders = list(record.get("slot_leaders") or ())[: spec.t_star]
    if first is None or len(leaders) < spec.t_star:
        return None
    authors = {int(first) + j: int(a) for j, a in enumerate(leaders) if a is not None}
    return round_robin_leader(authors, int(first), int(first) + spec.t_star - 1, spec.lanes)


def why_left_out(spec: Spec, point: Point, record: dict[str, Any]) -> list[str]:
    """Why a testnet payload is not measured (empty: it is): not `clean` (its record's
    `not_clean`), or, at a censorship point, its counted slots not led round robin
    (`off_schedule`: the leader-cartel model's leaders are)."""
    if record.get("first_slot") is None or not record.get("clean", False):
        return list(record.get("not_clean") or ["not_clean"])
    if point.strategy == CENSOR and record_leader(spec, record) is None:
        return ["off_schedule"]
    return []


def measured_from_summary(spec: Spec, point: Point, summary: dict[str, Any]) -> Any:
    """A testnet run's payloads (`summary["sedna_payloads"]`, the launcher's
    `SEDNA_PAYLOAD_RECORD_KEYS`) as a `Measured`: lag = decode_slot − (first_slot + t* − 1),
    lead = decode_slot − cartel_slot (0 when the cartel was not ahead). A payload that is
    not `clean` (a bundle of it refused: q < 1 for it; or an honest lane block holding a
    bundle of it, in the slots the model counts, not finalized at its slot's height: the
    record's `not_clean`) is left out and counted. The run's failures (divergence, no
    progress) are its problems. At a censorship point each payload's first leader is
    read from the records (`record_leader`; payloads whose counted slots were not led
    round robin are left out); a withholding cartel's P(delay) does not depend on the
    leaders (its payloads all count, with leader 0). The first `spec.payloads` measured
    payloads in the order they were sent are taken; the spare ones after them
    (`testnet_sent`) are not looked at."""
    from netsim.measure import Measured

    measured = Measured(lanes=spec.lanes, runs=1)
    measured.problems += [str(f) for f in summary.get("failures", [])]
    records = summary.get("sedna_payloads")
    if records is None:
        measured.problems.append("the run summary has no per-payload records (sedna_payloads)")
        records = []
    for record in records[:MAX_PAYLOADS]:
        if measured.payloads >= spec.payloads:
            break  # the spare payloads past the first `--payloads` measured ones
        if why_left_out(spec, point, record):
            measured.left_out += 1
            continue
        leader = record_leader(spec, record) if point.strategy == CENSOR else 0
        horizon = int(record["first_slot"]) + spec.t_star - 1
        decode = record.get("decode_slot")
        measured.first_leaders.append(0 if leader is None else leader)
        measured.lags.append(None if decode is None else int(decode) - horizon)
        lead = record.get("lead")
        measured.leads.append(None if decode is None or lead is None else int(lead))
    early = sum(1 for lag in measured.lags if lag is not None and lag < 0)
    if early:  # impossible when m bundles a slot go out from the first slot: not comparable
        measured.problems.append(
            f"{early} payloads decoded before their honest horizon (lag < 0): the records' "
            "slots do not follow m bundles a slot from the first slot"
        )
    measured.report_lanes = {
        "ratchet_policy": "none",  # the client's first attempt: fresh lanes, no feedback
        "bundles_per_slot": spec.m,
        "kappa": spec.kappa,
        "feedback_slots": None,
    }
    return measured


def left_out_why(spec: Spec, point: Point, summary: dict[str, Any]) -> dict[str, int]:
    """How many of a testnet run's payloads were left out for each reason (a payload
    may have several: a refusal and a late lane block)."""
    why: Counter[str] = Counter()
    taken = 0
    for record in summary.get("sedna_payloads", ())[:MAX_PAYLOADS]:
        if taken >= spec.payloads:
            break  # as `measured_from_summary`: the spare payloads are not looked at
        reasons = why_left_out(spec, point, record)
        why.update(reasons)
        taken += not reasons
    return dict(sorted(why.items()))


def run_testnet(spec: Spec, points: Sequence[Point]) -> list[Result]:
    """One real testnet per point through the launcher (`run_cartel`), one after another."""
    from campaign.executor import ProgressLine
    from node.tools import testnet

    progress = ProgressLine("sedna mech experiment (testnet points)", every_s=0.0)
    results = []
    for k, point in enumerate(points):
        progress(k, len(points), f"running {point.label}")
        started = time.monotonic()
        try:
            summary = testnet.run_cartel(**testnet_options(spec, point))
        except (testnet.TestnetError, ValueError) as exc:
            summary = {"failures": [f"testnet: {exc}"]}
        measured = measured_from_summary(spec, point, summary)
        result = evaluate(spec, point, measured, time.monotonic() - started)
        result.left_out_why = left_out_why(spec, point, summary)
        result.lag_predicted, result.tails = {}, []  # the client's re-sends are not modelled
        results.append(result)
    progress(len(points), len(points))
    return results


# --------------------------------------------------------------------------- outputs


CSV_COLUMNS = (
    "where",
    "strategy",
    "cartel",
    "payloads",
    "left_out",
    "delayed",
    "measured",
    "ci_low",
    "ci_high",
    "predicted",
    "agree",
    "status",
    "runs",
    "reason",
)


def write_outputs(
    out: Path, spec: Spec, results: Sequence[Result], meta: dict[str, Any]
) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    with open(out / "points.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            row = r.as_dict()
            writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    files["points"] = str(out / "points.csv")
    with open(out / "distributions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ("where", "strategy", "cartel", "quantity", "value", "measured", "predicted")
        )
        for r in results:
            for quantity, got, want in (
                ("lag", r.lag_measured, r.lag_predicted),
                ("lead", r.lead_measured, r.lead_predicted),
            ):
                for key in sorted(
                    set(got) | set(want), key=lambda k: (k == "undecided", k.zfill(4))
                ):
                    share = got.get(key, 0) / r.payloads if r.payloads else ""
                    writer.writerow(
                        (r.where, r.strategy, r.cartel, quantity, key, share, want.get(key, ""))
                    )
    files["distributions"] = str(out / "distributions.csv")
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    files["meta"] = str(out / "meta.json")
    figure = plot(out / "cartels.png", spec, results)
    if figure is not None:
        files["figure"] = figure
    return files


def plot(path: Path, spec: Spec, results: Sequence[Result]) -> str | None:
    """Measured points with error bars over the predicted curves, one panel per backend.
    None (and a note on stderr) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("sedna mech experiment: no figure (needs the analysis extra)", file=sys.stderr)
        return None
    wheres = list(spec.where)
    fig, axes = plt.subplots(1, len(wheres), figsize=(5.5 * len(wheres), 4.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, where in zip(axes[0], wheres, strict=True):
        kinds = [s for s in (*spec.strategies, CENSOR) if any(r.strategy == s for r in results)]
        for i, strategy in enumerate(kinds):
            rows = sorted(
                (r for r in results if r.where == where and r.strategy == strategy),
                key=lambda r: r.cartel,
            )
            colour = colours[i % len(colours)]
            modelled = [r for r in rows if r.predicted is not None]
            if modelled:
                ax.plot(
                    [r.cartel for r in modelled],
                    [r.predicted for r in modelled],
                    "-",
                    color=colour,
                    alpha=0.6,
                    label=f"{strategy}: model",
                )
            measured = [r for r in rows if r.measured is not None and r.ci_low is not None]
            if measured:
                ax.errorbar(
                    [r.cartel + 0.04 * (i - len(kinds) / 2) for r in measured],
                    [r.measured for r in measured],
                    yerr=[
                        [r.measured - r.ci_low for r in measured],
                        [r.ci_high - r.measured for r in measured],
                    ],
                    fmt="o" if strategy != CENSOR else "s",
                    color=colour,
                    capsize=3,
                    label=f"{strategy}: measured ({int(100 * spec.level)} % CI)",
                )
            for r in rows:
                if r.status in ("disagree", "failed", "unmodelled"):
                    ax.annotate(r.status, (r.cartel, r.measured or 0.0), fontsize=7, color="red")
        if not any(r.where == where and r.measured is not None for r in results):
            ax.text(0.5, 0.5, f"{where}: not run", ha="center", transform=ax.transAxes)
        senders = spec.policy if where == "netsim" else "fresh, first attempt t*·m"
        ax.set_title(f"{where}: N = {spec.lanes}, κ = {spec.kappa}, m = {spec.m}, {senders}")
        ax.set_xlabel("cartel size (withholding lanes; censoring leaders)")
        ax.set_ylabel("P(decode delayed) = P(lag ≥ 1)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(sorted({r.cartel for r in results if r.where == where}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def table(results: Sequence[Result], level: float) -> str:
    head = (
        f"{'where':<8} {'strategy':<17} {'cartel':>6} {'payloads':>8} {'measured':>9} "
        f"{int(100 * level)} % CI{'':<10} {'predicted':>9}  status"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        ci = "" if r.ci_low is None else f"[{r.ci_low:.3f}, {r.ci_high:.3f}]"
        meas = "" if r.measured is None else f"{r.measured:.3f}"
        pred = "" if r.predicted is None else f"{r.predicted:.3f}"
        lines.append(
            f"{r.where:<8} {r.strategy:<17} {r.cartel:>6} {r.payloads:>8} {meas:>9} "
            f"{ci:<17} {pred:>9}  {r.status}" + (f" ({r.reason})" if r.reason else "")
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `experiment` under the `mech` group (registered before this module)."""
    mech = subparsers.choices.get("mech")
    if mech is None:
        return
    actions = [a for a in mech._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        return
    help_text = "withholding cartels in netsim and on testnets against the model"
    p = actions[0].add_parser(
        "experiment",
        help=help_text,
        description=help_text + " (docs/cartels.md).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kappa", type=int, default=8, help="κ, bundles to decode (default 8)")
    p.add_argument("--m", type=int, default=3, help="bundles per slot (default 3)")
    p.add_argument("--lanes", type=int, default=7, help="validators = lanes (default 7)")
    p.add_argument("--cartel", default="0,1,2,3", help="withholding cartel sizes (0,1,2,3)")
    p.add_argument(
        "--strategy",
        default="withhold_all,threshold",
        help=f"cartel strategies, comma-separated: {', '.join(STRATEGIES)}",
    )
    p.add_argument("--theta", type=int, default=None, help="threshold θ (default Δ + 1)")
    p.add_argument(
        "--censor", default="", help="leader-censorship points: censoring leaders, e.g. 1,2"
    )
    p.add_argument("--payloads", type=int, default=200, help="payloads per point (200)")
    p.add_argument("--seeds", type=int, default=10, help="netsim seeds per point (10)")
    p.add_argument("--first-seed", type=int, default=1, help="the first netsim seed (1)")
    p.add_argument("--where", default="netsim", help="netsim, testnet or netsim,testnet")
    p.add_argument("--transport", choices=("tcp", "libp2p"), default="tcp", help="testnet")
    p.add_argument(
        "--policy",
        choices=POLICIES,
        default="keep_redeemed",
        help="the senders' policy (default keep_redeemed, the shipped ratchet)",
    )
    p.add_argument("--max-lag", type=int, default=6, help="the model's horizon past t* (6)")
    p.add_argument("--level", type=float, default=0.99, help="interval level (0.99)")
    p.add_argument("--ci", choices=("wilson", "clopper-pearson"), default="wilson")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="CSV, meta.json, figure")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    from campaign.executor import add_executor_arguments

    add_executor_arguments(p, default_jobs=1)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from campaign.executor import ExecutorError, ProgressLine, executor_spec, open_executor

    try:
        spec = spec_of(args)
        exec_spec = executor_spec(args)
    except ValueError as exc:
        print(f"sedna mech experiment: error: {exc}", file=sys.stderr)
        return 2
    if "testnet" in spec.where:
        missing = testnet_missing((*spec.strategies, *([CENSOR] if spec.censor else [])))
        if missing is not None:
            print(
                f"sedna mech experiment: error: --where testnet needs what is not here: {missing}",
                file=sys.stderr,
            )
            return 2
    points = points_of(spec)
    jobs = exec_spec.jobs if exec_spec.kind == "local" else 1
    estimate = estimate_seconds(spec, jobs)
    print(
        f"sedna mech experiment: {len(points)} points x {spec.seeds} seeds "
        f"({spec.per_seed} payloads/seed, {spec.until_blocks} blocks/run), "
        f"estimated {estimate:.0f} s on {exec_spec.kind} ({jobs} job(s))",
        file=sys.stderr,
    )
    started = time.monotonic()
    results: list[Result] = []
    try:
        netsim_points = [p for p in points if p.where == "netsim"]
        if netsim_points:
            with open_executor(
                exec_spec, progress=ProgressLine("sedna mech experiment (netsim)")
            ) as executor:
                results += run_netsim(spec, netsim_points, executor)
        testnet_points = [p for p in points if p.where == "testnet"]
        if testnet_points:
            results += run_testnet(spec, testnet_points)
    except ExecutorError as exc:
        print(f"sedna mech experiment: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    modelled = [r for r in results if r.status != "unmodelled"]
    agree = bool(modelled) and all(r.agree for r in modelled)
    document = {
        "agree": agree,
        "unmodelled": sum(1 for r in results if r.status == "unmodelled"),
        "level": spec.level,
        "ci": spec.ci,
        "spec": _spec_dict(spec),
        "points": [r.as_dict() for r in results],
        "seconds": round(elapsed, 1),
    }
    if args.out is not None:
        meta = {
            "command": "sedna " + " ".join(sys.argv[1:]) if sys.argv else "",
            "spec": _spec_dict(spec),
            "executor": exec_spec.kind,
            "jobs": jobs,
            "seconds": round(elapsed, 1),
            "estimated_seconds": round(estimate, 1),
            "t_star": spec.t_star,
            "slack": spec.t_star * spec.m - spec.kappa,
            "senders_per_run": spec.senders,
            "payloads_per_seed": spec.senders * spec.per_sender,
            "until_blocks": spec.until_blocks,
            "agree": agree,
        }
        try:
            document["files"] = write_outputs(args.out, spec, results, meta)
        except OSError as exc:
            print(f"sedna mech experiment: error: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(table(results, spec.level))
        print(f"agree: {agree} ({len(modelled)} modelled points, {elapsed:.0f} s)")
    return 0 if agree else 1


def _spec_dict(spec: Spec) -> dict[str, Any]:
    out = asdict(spec)
    out["t_star"] = spec.t_star
    return out
