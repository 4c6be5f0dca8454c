"""`sedna node run --config PATH`: run one validator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  sedna node run --config testnet/node0/config.toml
  sedna testnet up --nodes 4        (writes the configs and starts the nodes for you)
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "node",
        help="run one validator node",
        description="Run one validator node from a config file written by `sedna testnet`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="node_command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run a validator",
        description="Run a validator until SIGTERM or SIGINT (exit 0), or exit 2 on bad config.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", required=True, metavar="PATH", help="node config (TOML)")
    run.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    from node.config import ConfigError, load_config, load_key

    try:
        config = load_config(args.config)
        key = load_key(config)
    except ConfigError as exc:
        print(f"sedna node: bad configuration: {exc}", file=sys.stderr)
        return 2
    from node.assembly import run_node

    return run_node(config, key)
