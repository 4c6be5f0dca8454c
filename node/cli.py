"""The `sedna` command line: one console script, one group per area.

Each group lives with the code it drives and registers itself here through an
`add_parser(subparsers)` function. Group modules keep heavy imports inside their
handlers so that `sedna --help` stays fast. Handlers return the process exit code:
0 success, 1 the run found a failure (violation, divergence, no progress), 2 bad
input (argparse's own code for usage errors).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (module, description) for each command group, in the order `--help` lists them.
GROUPS: tuple[tuple[str, str], ...] = (
    ("node.tools.demo", "in-process demo network (no sockets)"),
    ("node.tools.testnet_cli", "local multi-process testnet"),
    ("node.node_cli", "run one validator node"),
    ("netsim.cli", "deterministic simulation: scenarios, sweeps, Twins"),
    ("mechanism.cli", "PIVOT-K incentive analysis and cartel Monte Carlo"),
    ("node.tools.experiment", "`mech experiment`: cartels measured against the model"),
    ("node.tools.bench_cli", "benchmarks that print numbers"),
)

# Top-level modules of the optional extras (pyproject.toml), for a one-line error.
EXTRA_OF_MODULE = {
    "scipy": "analysis",
    "matplotlib": "analysis",
    "libp2p": "libp2p",
    "trio": "libp2p",
    "uvloop": "fast",
}

EPILOG = """examples:
  sedna demo                                 4 in-process validators, prints finality
  sedna testnet run --nodes 4 --duration 20 --rate 2000
  sedna sim run netsim/scenarios/s1_crashed_successor.toml --json
  sedna mech delay --kappa 56 --m 16 --beta 0.1 --json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sedna",
        description="MonadBFT node with Sedna lanes, simulator and mechanism toolkit.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, _description in GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A group whose module is not present yet is simply not offered.
            if exc.name == module_name:
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from node.memory import tune_malloc

    tune_malloc()  # lane batches page-fault far less (node/memory.py)
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        # An install without an optional extra (the node image has no analysis stack).
        missing = (exc.name or "").split(".")[0]
        extra = EXTRA_OF_MODULE.get(missing)
        if extra is None:
            raise
        print(
            f"sedna: this command needs the '{extra}' extra (missing {missing}): "
            f"pip install 'sedna-bft[{extra}]'",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
