"""`sedna demo`: an in-process MonadBFT network (no sockets) and what it achieved.

Runs the pure harness (consensus.harness) with real Ed25519 signatures and reports, per
node, the finalized height and round, whether all finalized chains agree, and how many
rounds speculative finality (Voted) came before full finality.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

PROTOCOLS = ("monadbft", "v1", "vanilla")

EXAMPLES = """examples:
  sedna demo                                  4 validators, 10 blocks, monadbft
  sedna demo --nodes 7 --blocks 50 --json
  sedna demo --protocol vanilla --crash 2     a crashed leader: watch the tail fork
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="in-process demo network (no sockets)",
        description="Run n MonadBFT validators in one process until each finalized K blocks.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=int, default=4, help="validators (default 4)")
    parser.add_argument("--blocks", type=int, default=10, help="blocks to finalize (default 10)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="monadbft")
    parser.add_argument(
        "--crash", type=int, action="append", default=[], metavar="I", help="crash validator I"
    )
    parser.add_argument("--scheme", choices=("ed25519", "trusted"), default="ed25519")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="per-message delay")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _bad_input(args) -> str | None:
    if not 1 <= args.nodes <= 256:
        return "--nodes must be between 1 and 256"
    if not 1 <= args.blocks <= 100_000:
        return "--blocks must be between 1 and 100000"
    if any(not 0 <= i < args.nodes for i in args.crash):
        return "--crash index outside the validator set"
    if args.crash and 3 * len(set(args.crash)) >= args.nodes:
        return "--crash: too many crashed validators for progress (need fewer than n/3)"
    if args.latency_ms < 0:
        return "--latency-ms must be non-negative"
    return None


def run(args) -> int:
    from consensus.crypto import scheme_by_name
    from consensus.harness import Harness, HarnessConfig

    problem = _bad_input(args)
    if problem:
        print(f"sedna demo: {problem}", file=sys.stderr)
        return 2
    config = HarnessConfig(
        nodes=args.nodes,
        blocks=args.blocks,
        protocol=args.protocol,
        scheme=scheme_by_name(args.scheme),
        crashed=frozenset(args.crash),
        latency_ms=args.latency_ms,
        max_events=2_000 * args.nodes * (args.blocks + 10),
    )
    print(
        f"running {args.nodes} validators ({args.protocol}, {args.scheme}) "
        f"until each finalized {args.blocks} blocks...",
        file=sys.stderr,
    )
    started = time.perf_counter()
    result = Harness(config).run()
    wall_s = time.perf_counter() - started
    report = _report(result, wall_s)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0 if report["ok"] else 1


def _report(result, wall_s: float) -> dict:
    nodes = []
    for i in range(result.config.nodes):
        record = result.records[i]
        lags = result.finality_lags(i)
        nodes.append(
            {
                "node": i,
                "crashed": i in result.config.crashed,
                "finalized_height": result.finalized_heights[i],
                "round": result.final_rounds[i],
                "timeouts": record.trace_counts["local_timeout"],
                "tcs": record.trace_counts["tc_formed"],
                "reproposals": record.trace_counts["reproposal"],
                "reverts": len(record.reverts),
                "finality_lag_rounds_median": statistics.median(lags) if lags else None,
            }
        )
    live = [n for n in nodes if not n["crashed"]]
    lags = [n["finality_lag_rounds_median"] for n in live if n["finality_lag_rounds_median"]]
    chains = [result.records[n["node"]].commits for n in live]
    common = min(len(c) for c in chains)
    agreement = result.agreement()
    reached = result.stopped == "done"
    return {
        "protocol": result.config.protocol,
        "nodes": result.config.nodes,
        "target_blocks": result.config.blocks,
        "reached_target": reached,
        "stopped": result.stopped,
        "agreement": agreement,
        "common_finalized_prefix": common,
        "head_block_id": chains[0][common - 1].hex() if common else None,
        "rounds": max(n["round"] for n in live),
        "speculative_before_full_rounds": statistics.median(lags) if lags else None,
        "logical_time_ms": result.time_ms,
        "events": result.events,
        "messages": dict(result.messages),
        "wall_s": round(wall_s, 3),
        "per_node": nodes,
        "ok": reached and agreement,
    }


def _print_table(report: dict) -> None:
    print(f"{'node':>4} {'finalized':>9} {'round':>5} {'timeouts':>8} {'TCs':>4} {'lag':>4}")
    for n in report["per_node"]:
        if n["crashed"]:
            print(f"{n['node']:>4} {'crashed':>9}")
            continue
        lag = n["finality_lag_rounds_median"]
        print(
            f"{n['node']:>4} {n['finalized_height']:>9} {n['round']:>5} {n['timeouts']:>8} "
            f"{n['tcs']:>4} {lag if lag is not None else '-':>4}"
        )
    agreement = "yes" if report["agreement"] else "NO (divergent finalized chains)"
    print(f"agreement: {agreement}; common finalized prefix {report['common_finalized_prefix']}")
    print(
        f"rounds: {report['rounds']}; speculative finality "
        f"{report['speculative_before_full_rounds']} round(s) before full finality (median)"
    )
    print(
        f"target {'reached' if report['reached_target'] else 'NOT reached'} "
        f"({report['stopped']}); {report['events']} events, wall {report['wall_s']} s"
    )
