"""`sedna node run --config PATH`: run one validator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from node.config import NodeConfig

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
        description="Run a validator until SIGTERM or SIGINT (exit 0). Exit 2 on a bad "
        "config, 1 when it cannot start (storage refused, port in use).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", required=True, metavar="PATH", help="node config (TOML)")
    run.add_argument(
        "--reset",
        action="store_true",
        help="delete this node's database first and start fresh (its safety state goes with "
        "it: use only when the database is lost or corrupt, see docs/operations.md)",
    )
    run.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    from node.config import ConfigError, check_environment, load_config, load_key

    try:
        config = load_config(args.config)
        check_environment(config)
        key = load_key(config)
    except ConfigError as exc:
        print(f"sedna node: bad configuration: {exc}", file=sys.stderr)
        return 2
    busy = _port_in_use(config)
    if busy is not None:
        print(f"sedna node: cannot start: {busy}", file=sys.stderr)
        return 1
    if args.reset:
        from node.storage import reset_data_dir

        removed = reset_data_dir(config.node.data_dir)
        names = ", ".join(str(p) for p in removed) or "nothing to delete"
        print(f"sedna node: --reset: deleted {names}; starting fresh", file=sys.stderr)
    from node.runtime import run_node

    return run_node(config, key)


def _port_in_use(config: NodeConfig) -> str | None:
    """Which configured listening address is taken, named by its key, or None.

    A check before anything starts, so the message names the key; the servers still
    report a conflict that appears between this check and their own bind.
    """
    import errno
    import socket

    network = config.network
    for key, host, port in (
        ("network.listen_port", network.listen_host, network.listen_port),
        ("network.rpc_port", network.rpc_host, network.rpc_port),
    ):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            return f"{key}: cannot resolve {host!r} ({exc.strerror})"
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"{key}: {host}:{port} is already in use"
                return f"{key}: cannot listen on {host}:{port} ({exc.strerror})"
    return None
