"""`sedna bench`: benchmarks that print numbers (medians over repeats), never pass/fail.

Subcommands live in `BENCHMARKS` (name -> (help, add_arguments, run)) so other areas can add
theirs, e.g. `BENCHMARKS["testnet"] = (...)`, without touching the group itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

EXAMPLES = """examples:
  sedna bench core                                  n = 4, 16, 64, Ed25519
  sedna bench core --nodes 4 16 --rounds 30 --repeats 5 --json
  sedna bench core --scheme trusted                 protocol cost without signatures
  sedna bench sim --sizes 4 16 64 --schemes ed25519 simulator speed, shared verification
"""


class TimedScheme:
    """Wraps a signature scheme and accumulates the wall time spent verifying and signing."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.verify_s = 0.0
        self.sign_s = 0.0
        self.verifications = 0

    def sign(self, key, domain: bytes, payload: bytes) -> bytes:
        started = time.perf_counter()
        try:
            return self.inner.sign(key, domain, payload)
        finally:
            self.sign_s += time.perf_counter() - started

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool:
        started = time.perf_counter()
        try:
            return self.inner.verify(public, domain, payload, signature)
        finally:
            self.verify_s += time.perf_counter() - started
            self.verifications += 1


def _core_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--rounds", type=int, default=20, help="blocks each node finalizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scheme", choices=("ed25519", "trusted"), default="ed25519")
    parser.add_argument("--protocol", choices=("monadbft", "v1", "vanilla"), default="monadbft")


def _run_core(args) -> int:
    from consensus.crypto import scheme_by_name
    from consensus.harness import Harness, HarnessConfig

    if any(not 1 <= n <= 256 for n in args.nodes) or args.rounds < 1 or args.repeats < 1:
        print(
            "sedna bench core: need 1 <= nodes <= 256, rounds >= 1, repeats >= 1", file=sys.stderr
        )
        return 2
    rows = []
    for nodes in args.nodes:
        samples = []
        for repeat in range(args.repeats):
            scheme = TimedScheme(scheme_by_name(args.scheme))
            config = HarnessConfig(
                nodes=nodes,
                blocks=args.rounds,
                protocol=args.protocol,
                scheme=scheme,
                seed=b"bench-%d" % repeat,
            )
            harness = Harness(config)  # key derivation is not part of the measurement
            started = time.perf_counter()
            result = harness.run()
            wall_s = time.perf_counter() - started
            if result.stopped != "done" or not result.agreement():
                print(f"sedna bench core: n={nodes} run failed ({result.stopped})", file=sys.stderr)
                return 1
            rounds = max(result.final_rounds)
            samples.append(
                {
                    "wall_s": wall_s,
                    "rounds_per_s": rounds / wall_s,
                    "blocks_per_s": min(result.finalized_heights) / wall_s,
                    "verify_share": scheme.verify_s / wall_s,
                    "sign_share": scheme.sign_s / wall_s,
                    "verifications_per_round": scheme.verifications / rounds,
                }
            )
            print(
                f"  n={nodes} repeat {repeat + 1}: {samples[-1]['rounds_per_s']:.1f} rounds/s",
                file=sys.stderr,
            )
        row = {"nodes": nodes, "repeats": args.repeats, "scheme": args.scheme}
        for key in samples[0]:
            row[key] = statistics.median(s[key] for s in samples)
        rows.append(row)
    if args.json:
        print(json.dumps({"benchmark": "core", "protocol": args.protocol, "rows": rows}, indent=2))
    else:
        print(
            f"core harness, {args.protocol}, {args.scheme}, {args.rounds} finalized blocks per run, "
            f"medians of {args.repeats}"
        )
        print(
            f"{'nodes':>5} {'rounds/s':>9} {'blocks/s':>9} {'verify %':>8} {'sign %':>7} {'verif/round':>11}"
        )
        for r in rows:
            print(
                f"{r['nodes']:>5} {r['rounds_per_s']:>9.1f} {r['blocks_per_s']:>9.1f} "
                f"{100 * r['verify_share']:>7.1f}% {100 * r['sign_share']:>6.1f}% "
                f"{r['verifications_per_round']:>11.0f}"
            )
    return 0


# name -> (help, add_arguments(parser), run(args) -> exit code)
def _testnet_arguments(parser: argparse.ArgumentParser) -> None:
    from node.tools.bench_testnet import add_arguments

    add_arguments(parser)


def _run_testnet(args) -> int:
    from node.tools.bench_testnet import run

    return run(args)


def _sim_arguments(parser: argparse.ArgumentParser) -> None:
    from netsim.bench import add_arguments

    add_arguments(parser)


def _run_sim(args) -> int:
    from netsim.bench import run

    return run(args)


BENCHMARKS: dict[str, tuple[str, Callable, Callable]] = {
    "core": ("rounds finalized per second in the in-process harness", _core_arguments, _run_core),
    "testnet": (
        "testnet saturation, light-load latency and --nodes sweeps (tcp, libp2p, Sedna; CSV, PNG)",
        _testnet_arguments,
        _run_testnet,
    ),
    "sim": (
        "simulator wall time to 100 finalized blocks for n = 4..256 (CSV, PNG)",
        _sim_arguments,
        _run_sim,
    ),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks that print numbers",
        description="Benchmarks that print numbers (medians over repeats).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inner = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, (help_text, add_arguments, run) in BENCHMARKS.items():
        sub = inner.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
