"""`sedna sim`: run scenarios, sweep seeds, run Twins arrangements (`netsim.twins`).

Exit status: 0 no invariant violated, 1 a violation (or a failed run), 2 bad input.
Data goes to stdout (`--json` for machine-readable reports), messages to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from campaign.executor import (
    ExecutorError,
    ProgressLine,
    add_executor_arguments,
    executor_spec,
    open_executor,
)

EXAMPLES = """examples:
  sedna sim run netsim/scenarios/s1_crashed_successor.toml --json
  sedna sim run netsim/scenarios/s1_crashed_successor.toml --protocol vanilla
  sedna sim sweep netsim/scenarios/sweep_faults.toml --seeds 200 --randomize --json
  sedna sim sweep netsim/scenarios/sweep_faults.toml --seeds 10000 --randomize --cluster local:8
  sedna sim sweep netsim/scenarios/sweep_faults.toml --seeds 10000 --scheduler tcp://10.0.0.5:8786
  sedna sim twins --depth 2
  sedna sim twins --depth 3 --sample 200 --seed 7 --json
  sedna sim twins --depth 3 --jobs 2
  sedna sim twins --depth 4 --scheduler tcp://10.0.0.5:8786 --json   # 2.8 M arrangements
  sedna sim mutants --jobs 2               # every rule switched off in turn: who kills it
  sedna sim mutants --only T-SEQ --only TC9 --json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser(
        "sim",
        help="deterministic simulation: scenarios and seed sweeps",
        description="Deterministic simulation of MonadBFT (and the v1/vanilla modes).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = sim.add_subparsers(dest="sim_command", metavar="COMMAND")
    sim.set_defaults(func=lambda args: (sim.print_help(sys.stderr), 2)[1])

    run = commands.add_parser("run", help="run one scenario file")
    run.add_argument("scenario", help="scenario TOML file")
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument("--protocol", choices=("monadbft", "v1", "vanilla"), help="override protocol")
    run.add_argument("--json", action="store_true", help="print the JSON report")
    run.set_defaults(func=_run)

    sweep = commands.add_parser("sweep", help="run one scenario over many seeds")
    sweep.add_argument("scenario", help="scenario TOML file")
    sweep.add_argument("--seeds", type=int, required=True, help="number of seeds (from the file's)")
    sweep.add_argument(
        "--protocol", choices=("monadbft", "v1", "vanilla"), help="override protocol"
    )
    sweep.add_argument(
        "--randomize",
        action="store_true",
        help="draw a fresh fault plan per seed (crash/restart, partition, loss, one Byzantine)",
    )
    sweep.add_argument("--json", action="store_true", help="print the JSON summary")
    add_executor_arguments(sweep)
    sweep.set_defaults(func=_sweep)

    twins = commands.add_parser(
        "twins",
        help="Twins: n=4 with one twin pair, per-round partitions and leaders",
        description="Run every (partition, leader) arrangement of the first D rounds (deduplicated "
        "by relabelling the honest nodes), or a seeded sample; exit 1 on any violation.",
    )
    twins.add_argument("--depth", type=int, default=2, help="rounds with arrangements (default 2)")
    twins.add_argument(
        "--partitions", type=int, default=2, help="at most this many blocks per round (default 2)"
    )
    twins.add_argument("--sample", type=int, help="run this many sampled arrangements")
    twins.add_argument("--seed", type=int, default=1, help="seed of the sample (default 1)")
    twins.add_argument(
        "--protocol", choices=("monadbft", "v1", "vanilla"), default="monadbft", help="protocol"
    )
    twins.add_argument("--json", action="store_true", help="print the JSON summary")
    twins.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="S",
        help="print progress and an estimate of the time left to stderr every S seconds "
        "(default 10; 0 = after every step)",
    )
    add_executor_arguments(twins)
    twins.set_defaults(func=_twins)

    mutants = commands.add_parser(
        "mutants",
        help="rule-coverage mutation matrix: switch each rule off, run the tests, show killers",
        description="For each TEST-ONLY rule switch (consensus/mutations.py), run the test "
        "selection with that one rule disabled and list the tests that fail (its killers); "
        "exit 1 if any rule survives. Needs the source checkout.",
    )
    mutants.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run this switch (repeat)"
    )
    mutants.add_argument("--sample", type=int, help="run this many switches, drawn by --seed")
    mutants.add_argument("--seed", type=int, default=1, help="seed of the sample (default 1)")
    mutants.add_argument(
        "--suite",
        choices=("matrix", "full"),
        default="matrix",
        help="test selection: 'matrix' (default, a few minutes per 10 switches) or 'full' "
        "(every non-slow test of tests/consensus and tests/netsim; about a minute per switch)",
    )
    mutants.add_argument("--jobs", type=int, default=1, help="parallel pytest processes")
    mutants.add_argument("--list", action="store_true", help="list the switches and exit")
    mutants.add_argument("--json", action="store_true", help="print the results as JSON")
    mutants.set_defaults(func=_mutants)


def _load(path: str) -> Any:
    from netsim.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    from netsim.runner import run_scenario

    scenario = _load(args.scenario)
    if scenario is None:
        return 2
    if args.seed is not None and not 0 <= args.seed < 2**63:
        print("error: --seed must be in [0, 2^63)", file=sys.stderr)
        return 2
    report = run_scenario(scenario, seed=args.seed, protocol=args.protocol).report()
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_summary(report)
    return 1 if report["violations"] else 0


def _print_summary(report: dict[str, Any]) -> None:
    heights = sorted(report["finalized"].values())
    print(
        f"{report['scenario']} protocol={report['protocol']} seed={report['seed']}: "
        f"finalized {heights[0]}..{heights[-1]} in {report['sim_time_ms']:.0f} ms simulated, "
        f"rounds {report['rounds']}, TCs {report['tcs']}, reproposals {report['reproposals']}, "
        f"NECs {report['necs']}, tail forks {report['tail_forks']}, "
        f"reverts {report['speculative_reverts']} (of reproposals "
        f"{report['reproposal_reverts']}), equivocations {report['equivocations']}, "
        f"liveness {report['liveness']}"
    )
    for violation in report["violations"]:
        print(f"VIOLATION {violation}")
    print(f"trace {report['trace_hash']}")


def _sweep(args: argparse.Namespace) -> int:
    if not 1 <= args.seeds <= 10_000_000:
        print("error: --seeds must be in [1, 10000000]", file=sys.stderr)
        return 2
    try:
        spec = executor_spec(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scenario = _load(args.scenario)
    if scenario is None:
        return 2
    from netsim.sweep import sweep

    try:
        with open_executor(spec, progress=ProgressLine("sim sweep")) as executor:
            summary = sweep(
                scenario, args.seeds, args.protocol, randomize=args.randomize, executor=executor
            )
    except ExecutorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(
            f"{summary['scenario']} protocol={summary['protocol']}: {summary['runs']} seeds, "
            f"{len(summary['failed_seeds'])} with violations, finalized min "
            f"{summary['finalized_min']} median {summary['finalized_median']}"
        )
        for violation in summary["violations"]:
            print(f"VIOLATION {violation}")
    return 1 if summary["failed_seeds"] else 0


def _twins(args: argparse.Namespace) -> int:
    from netsim.twins import (
        MAX_CLUSTER_EXHAUSTIVE_DEPTH,
        MAX_DEPTH,
        MAX_EXHAUSTIVE_DEPTH,
        MAX_SAMPLE,
        TwinsConfig,
        run_twins,
    )

    try:
        spec = executor_spec(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Exhaustive depth 4 (2.8 million arrangements) only on a Dask cluster.
    local = spec.kind == "local"
    exhaustive_limit = MAX_EXHAUSTIVE_DEPTH if local else MAX_CLUSTER_EXHAUSTIVE_DEPTH
    problem = None
    if not 1 <= args.depth <= MAX_DEPTH:
        problem = f"--depth must be in 1..{MAX_DEPTH}"
    elif not 1 <= args.partitions <= 5:
        problem = "--partitions must be in 1..5 (5 instances)"
    elif args.sample is not None and not 1 <= args.sample <= MAX_SAMPLE:
        problem = f"--sample must be in 1..{MAX_SAMPLE}"
    elif args.sample is None and args.depth > exhaustive_limit:
        problem = (
            f"exhaustive runs go up to --depth {MAX_EXHAUSTIVE_DEPTH} here and "
            f"{MAX_CLUSTER_EXHAUSTIVE_DEPTH} on a Dask cluster (--scheduler, --cluster); "
            "add --sample K"
        )
    elif not 0 <= args.seed < 2**63:
        problem = "--seed must be in [0, 2^63)"
    elif spec.jobs > 64:
        problem = "--jobs must be in 1..64"
    elif not 0 <= args.progress_every <= 86_400:
        problem = "--progress-every must be in 0..86400 seconds"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    config = TwinsConfig(protocol=args.protocol, max_blocks=args.partitions)
    try:
        with open_executor(spec) as executor:
            summary = run_twins(
                args.depth,
                config=config,
                sample=args.sample,
                sample_seed=args.seed,
                executor=None if local and spec.jobs == 1 else executor,
                max_exhaustive_depth=exhaustive_limit,
                progress=_twins_progress_printer(args.progress_every),
            )
    except ExecutorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2, sort_keys=True))
    else:
        dedup = "sampled" if summary.after_dedup is None else f"{summary.after_dedup} after dedup"
        print(
            f"twins depth={summary.depth} partitions={summary.max_blocks} "
            f"protocol={summary.protocol} {summary.mode}: {summary.generated} arrangements, "
            f"{dedup}, {summary.run} run, {summary.failed} with violations in "
            f"{summary.wall_s:.1f} s; equivocating runs {summary.runs_with_equivocation}, "
            f"TCs {summary.tcs}, NECs {summary.necs}, reproposals {summary.reproposals}, "
            f"reverts {summary.speculative_reverts} (of reproposals "
            f"{summary.reproposal_reverts}), liveness {summary.liveness}"
        )
        for failure in summary.failures:
            for violation in failure["violations"]:
                print(f"VIOLATION [{failure['describe']}] {violation}")
    return 1 if summary.failed else 0


def _mutants(args: argparse.Namespace) -> int:
    from consensus.mutations import RULE_SWITCHES
    from netsim.mutants import checkout_root, format_matrix, run_matrix, select

    if args.list:
        for name, rule in RULE_SWITCHES.items():
            print(f"{name}\t{rule}")
        return 0
    problem = None
    if not 1 <= args.jobs <= 16:
        problem = "--jobs must be in 1..16"
    elif not 0 <= args.seed < 2**63:
        problem = "--seed must be in [0, 2^63)"
    elif checkout_root() is None:
        problem = "the mutation matrix needs the source checkout (tests/ not found)"
    names: list[str] = []
    if problem is None:
        try:
            names = select(args.only, args.sample, args.seed)
        except ValueError as exc:
            problem = f"--only/--sample: {exc}"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    def progress(result: Any, done: int, total: int) -> None:
        print(
            f"[{done}/{total}] {result.name}: {result.status}"
            f" ({len(result.killed_by)} killing tests, {result.seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    results = run_matrix(names, suite=args.suite, jobs=args.jobs, progress=progress)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(format_matrix(results))
    unkilled = [r.name for r in results if r.status != "killed"]
    if unkilled:
        print(f"not killed: {', '.join(unkilled)}", file=sys.stderr)
    return 1 if unkilled else 0


def _twins_progress_printer(every_s: float) -> Any:
    """A progress callback printing at most once per `every_s` seconds (and at the end)."""
    last_printed: list[float | None] = [None]  # elapsed seconds at the last line printed

    def show(progress: Any) -> None:
        since = progress.elapsed_s - (last_printed[0] or 0.0)
        finished = progress.done == progress.total
        if since < every_s and not (finished and last_printed[0] is not None):
            return  # a run shorter than one interval prints nothing
        last_printed[0] = progress.elapsed_s
        left = progress.remaining_s
        estimate = "estimating" if left is None else f"about {_duration(left)} left"
        share = 100.0 * progress.done / max(1, progress.total)
        print(
            f"twins: {progress.done:,}/{progress.total:,} arrangements ({share:.1f} %), "
            f"{progress.failed} with violations, {_duration(progress.elapsed_s)} elapsed, "
            f"{estimate}",
            file=sys.stderr,
            flush=True,
        )

    return show


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
