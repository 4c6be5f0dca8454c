"""`sedna testnet`: a local multi-process network (up, status, down, logs, run, init)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(".sedna-testnet")

EXAMPLES = """examples:
  sedna testnet run --nodes 4 --duration 20 --rate 2000
  sedna testnet run --nodes 4 --duration 20 --rate 500 --sedna-rate 200 --sedna-bytes 2048
  sedna testnet run --nodes 4 --duration 30 --rate 1000 --perturb kill:1@5 --perturb pause:2:5@15
  sedna testnet run --nodes 4 --duration 20 --rate 500 --transport libp2p --json
  sedna testnet run --nodes 4 --duration 30 --rate 1000 --out runs/r1   # series.csv, series.png
  sedna testnet up --nodes 4 && sedna testnet status && sedna testnet down
"""

RUN_EXAMPLES = """perturbations (ACTION:NODE[:SECONDS]@AT, AT in seconds from the start of load):
  kill:1@5          SIGKILL node 1 at 5 s, restart it 5 s later (unless --no-restart)
  pause:2:10@5      SIGSTOP node 2 at 5 s, SIGCONT 10 s later
  restart:1@8       graceful stop and start of node 1 at 8 s
  disconnect:3:10@5 isolate node 3's transport for 10 s at 5 s
byzantine behaviours (--byzantine BEHAVIOUR:NODES[:KEY=VALUE...], repeatable):
  equivocate:3                       node 3 sends two blocks per round it leads
  silent:2:targets=0,1               node 2 sends nothing to nodes 0 and 1
  withhold_bundles:4,5,6:strategy=withhold_all   a lane cartel pooling what it withholds
  consensus: silent, double_vote, malformed, replay_txs, equivocate, tail_fork,
    withhold_votes, withhold_qc, invalid_signatures, stale_spam, ne_spam, bad_height,
    bad_timestamp, bad_reproposal, forged_tc_rank, strip_timeouts (at most f nodes)
  lanes: withhold_bundles, drop_lane_blocks (any number of nodes)

exit codes: 0 ok, 1 divergence (finalized chains or Sedna execution orders) / no progress /
            a node did not recover / nothing measured, 2 bad input
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "testnet",
        help="local multi-process testnet",
        description="Generate, start, perturb and measure a local multi-process network.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="testnet_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    def common(p: argparse.ArgumentParser, transport: bool = False) -> None:
        p.add_argument(
            "--dir",
            type=Path,
            default=None,
            metavar="PATH",
            help=f"network directory (default: {DEFAULT_DIR})",
        )
        if transport:
            p.add_argument("--transport", choices=("tcp", "libp2p"), default="tcp")

    run = sub.add_parser(
        "run",
        help="bounded run: start, load, perturb, stop, summarize",
        description="Start N validators, offer load for DURATION seconds, apply "
        "perturbations, stop everything and print a summary.",
        epilog=EXAMPLES + "\n" + RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--nodes", type=int, default=4)
    run.add_argument("--duration", type=float, default=20.0, metavar="S", help="load seconds")
    run.add_argument(
        "--rate", type=float, default=1000.0, metavar="R", help="offered plain tx/s (0: none)"
    )
    run.add_argument(
        "--sedna-rate",
        type=float,
        default=20.0,
        metavar="R",
        help="offered Sedna payloads/s alongside (default 20; 0: none)",
    )
    run.add_argument(
        "--sedna-bytes", type=int, default=512, metavar="B", help="Sedna payload size (512)"
    )
    run.add_argument(
        "--sedna-policy",
        choices=("fresh", "fixed", "all"),
        default="fresh",
        help="lanes a sender addresses per slot (default fresh)",
    )
    run.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="PATH",
        help="keep the network here (default: a temporary directory)",
    )
    run.add_argument("--transport", choices=("tcp", "libp2p"), default="tcp")
    run.add_argument(
        "--dissemination",
        default="certified",
        metavar="MODE",
        help="how lane data reaches consensus: certified (lane chains, PoAs, tip cuts; "
        "the default) or carried (lane blocks inside consensus blocks)",
    )
    run.add_argument(
        "--chain-id", default=None, help="the network's chain id (default: a fresh one per run)"
    )
    _ledger_flags(run)
    run.add_argument("--perturb", action="append", default=[], metavar="SPEC")
    run.add_argument("--byzantine", action="append", default=[], metavar="SPEC")
    run.add_argument("--no-restart", action="store_true", help="killed nodes stay down")
    run.add_argument("--tx-bytes", type=int, default=512, help="plain tx size (default 512)")
    run.add_argument("--delta-ms", type=float, default=None, help="consensus Δ (default 100)")
    run.add_argument(
        "--drain",
        type=float,
        default=10.0,
        metavar="S",
        help="max seconds to wait for pending txs after the load (default 10)",
    )
    run.add_argument("--keep", action="store_true", help="keep the temporary directory")
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write per-second series (series.csv, series.png) and summary.json here "
        "(the PNG needs the analysis extra)",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=_run)

    up = sub.add_parser(
        "up",
        help="generate (if needed) and start a network in the background",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "--nodes", type=int, default=None, help="validators of a new network (default 4)"
    )
    common(up, transport=True)
    up.add_argument("--fresh", action="store_true", help="delete an existing network first")
    up.add_argument("--timeout", type=float, default=30.0, help="readiness timeout (s)")
    up.set_defaults(func=_up)

    status = sub.add_parser("status", help="table of height, round, peers, TPS, latency")
    common(status)
    status.add_argument("--watch", action="store_true", help="refresh every second (Ctrl-C)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

    down = sub.add_parser("down", help="stop every node of the network")
    common(down)
    down.set_defaults(func=_down)

    logs = sub.add_parser("logs", help="print (or follow) the nodes' logs")
    common(logs)
    logs.add_argument("--node", type=int, default=None, help="only this node")
    logs.add_argument("--lines", type=int, default=20, help="last N lines per node")
    logs.add_argument("--follow", "-f", action="store_true")
    logs.set_defaults(func=_logs)

    init = sub.add_parser(
        "init",
        help="only generate keys and configs (docker compose; several hosts with --hosts)",
        epilog="examples:\n"
        "  sedna testnet init --nodes 4 --dir net\n"
        "  sedna testnet init --hosts hosts.toml --dir net   # one bundle per host in net/hosts/\n"
        "  (the hosts file format: docs/operations.md, 'Several hosts')",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--nodes", type=int, default=None, help="validators (default 4)")
    common(init)
    init.add_argument("--transport", choices=("tcp", "libp2p"), default=None)
    init.add_argument("--layout", choices=("local", "docker"), default=None)
    init.add_argument(
        "--chain-id", default=None, help="the network's chain id (default: a fresh one)"
    )
    _ledger_flags(init)
    init.add_argument(
        "--hosts",
        type=Path,
        default=None,
        metavar="TOML",
        help="validators on several hosts (addresses, ports): one bundle per host",
    )
    init.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing (exit 0) when the directory already holds a network",
    )
    init.set_defaults(func=_init)


def _ledger_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sender-balance",
        type=int,
        default=None,
        metavar="N",
        help="turn the lanes' ledger on: every funded sender starts with N "
        "(their keys: senders.toml in the network directory)",
    )
    p.add_argument("--fee", type=int, default=None, help="least fee per ticket (default 1)")
    p.add_argument("--bounty", type=int, default=None, help="PIVOT-K bounty B per payload")


def _ledger_options(args: argparse.Namespace) -> dict[str, int] | None:
    """The `[ledger]` the flags ask for (None: no ledger). ValueError names a bad flag."""
    from consensus.lanes.ledger import MAX_AMOUNT

    if args.sender_balance is None:
        if args.fee is not None or args.bounty is not None:
            raise ValueError("--fee and --bounty need --sender-balance (the ledger's genesis)")
        return None
    ledger = {"sender_balance": args.sender_balance, "fee": 1, "bounty": 0}
    for name in ("fee", "bounty"):
        if getattr(args, name) is not None:
            ledger[name] = getattr(args, name)
    for name, value in ledger.items():
        if not 0 <= value <= MAX_AMOUNT // 64:
            raise ValueError(f"--{name.replace('_', '-')} must be in 0..{MAX_AMOUNT // 64}")
    return ledger


def _err(message: str) -> None:
    print(f"sedna testnet: {message}", file=sys.stderr)


def _root(args: argparse.Namespace) -> Path:
    """The network directory, resolved: every spelling of one directory is one network."""
    return (args.dir if args.dir is not None else DEFAULT_DIR).resolve()


# --------------------------------------------------------------------------- run


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from node.tools.testnet import (
        RunOptions,
        TestnetError,
        TestnetRun,
        byzantine_nodes,
        parse_byzantine,
        parse_perturbation,
    )

    if not 1 <= args.nodes <= 64:
        _err(f"--nodes must be in 1..64, got {args.nodes}")
        return 2
    if not math.isfinite(args.duration) or args.duration <= 0:
        _err(f"--duration must be a positive number, got {args.duration}")
        return 2
    for name, value in (("--rate", args.rate), ("--sedna-rate", args.sedna_rate)):
        if not math.isfinite(value) or value < 0:
            _err(f"{name} must be a number >= 0, got {value}")
            return 2
    if args.rate == 0 and args.sedna_rate == 0:
        _err("--rate and --sedna-rate are both 0: nothing to offer")
        return 2
    if not 24 <= args.sedna_bytes <= 64 * 1024:
        _err(f"--sedna-bytes must be in 24..65536, got {args.sedna_bytes}")
        return 2
    if args.tx_bytes < 24 or args.tx_bytes > 64 * 1024:
        _err(f"--tx-bytes must be in 24..65536, got {args.tx_bytes}")
        return 2
    if args.drain < 0:
        _err("--drain must be >= 0")
        return 2
    from node.config import DISSEMINATION_MODES

    if args.dissemination not in DISSEMINATION_MODES:
        _err(
            f"--dissemination must be one of {', '.join(DISSEMINATION_MODES)}, "
            f"got {args.dissemination!r}"
        )
        return 2
    try:
        perturbations = [parse_perturbation(s, args.nodes) for s in args.perturb]
        assigned = byzantine_nodes(
            [parse_byzantine(s, args.nodes) for s in args.byzantine], args.nodes
        )
        ledger = _ledger_options(args)
    except ValueError as exc:
        _err(str(exc))
        return 2
    if args.dir is not None and (args.dir / "network.json").exists():
        _err(f"{args.dir} already holds a network; pick an empty --dir or remove it")
        return 2
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            _err(f"--out {args.out} exists and is not a directory")
            return 2
        try:
            import matplotlib  # noqa: F401 - the PNG of the series
        except ImportError:
            _err("--out draws a PNG with matplotlib: pip install 'sedna-bft[analysis]'")
            return 2
    consensus: dict[str, Any] = {}
    if args.delta_ms is not None:
        if args.delta_ms <= 0:
            _err("--delta-ms must be > 0")
            return 2
        consensus["delta_ms"] = args.delta_ms
    if args.chain_id is not None:
        from consensus.crypto import check_chain_id

        try:
            consensus["chain_id"] = check_chain_id(args.chain_id)
        except ValueError as exc:
            _err(f"--chain-id: {exc}")
            return 2
    options = RunOptions(
        nodes=args.nodes,
        duration_s=args.duration,
        rate_tps=args.rate,
        transport=args.transport,
        dir=args.dir,
        perturbations=perturbations,
        byzantine={n: s.behaviour for n, s in assigned.items()},
        byzantine_options={n: s.options for n, s in assigned.items() if s.options},
        no_restart=args.no_restart,
        tx_bytes=args.tx_bytes,
        drain_s=args.drain,
        consensus=consensus,
        keep=args.keep,
        sedna_rate_pps=args.sedna_rate,
        sedna_bytes=args.sedna_bytes,
        sedna_policy=args.sedna_policy,
        dissemination=args.dissemination,
        out=args.out,
        ledger=ledger,
    )
    bar = ProgressBar(sys.stderr)
    print(
        f"starting {args.nodes} validators ({args.transport}, {args.dissemination} lanes), "
        f"load {args.rate:g} tx/s "
        f"and {args.sedna_rate:g} Sedna payloads/s for {args.duration:g} s ...",
        file=sys.stderr,
    )
    try:
        summary = asyncio.run(TestnetRun(options, bar.update).execute())
    except TestnetError as exc:
        bar.finish()
        _err(str(exc))
        return 1
    bar.finish()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    for failure in summary.get("failures", []):
        print(f"FAILED: {failure}", file=sys.stderr)
    if summary.get("dir"):
        print(f"network directory (logs, databases): {summary['dir']}", file=sys.stderr)
    if summary.get("series"):
        files = summary["series"]
        print(f"series: {files['csv']} and {files['png']}", file=sys.stderr)
    return 0 if summary.get("ok") else 1


class ProgressBar:
    """One redrawn line on a TTY; a plain line every 5 s otherwise."""

    WIDTH = 28

    def __init__(self, stream: Any):
        self.stream = stream
        self.tty = stream.isatty()
        self._last_plain = 0.0
        self._drawn = False

    def update(self, p: Any) -> None:
        fraction = min(1.0, max(0.0, p.elapsed_s / p.duration_s)) if p.duration_s else 1.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        down = f"  down {p.down}" if p.down else ""
        if p.sedna_offered:
            down = f"  sedna {p.sedna_decoded}/{p.sedna_offered}" + down
        text = (
            f"[{bar}] {min(p.elapsed_s, p.duration_s):5.1f}/{p.duration_s:g}s {p.phase:<5} "
            f"height {p.max_height:>6}  tps {p.tps:>7.0f}  offered {p.offered:>8}{down}"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
            self._drawn = True
        elif time.monotonic() - self._last_plain >= 5.0:
            self._last_plain = time.monotonic()
            self.stream.write(text + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    return f"{value:,}{unit}"


def format_summary(s: dict[str, Any]) -> str:
    fin, spec, bi = s["finality_ms"], s["speculative_ms"], s["block_interval_ms"]
    lines = [
        f"sedna testnet: {s['nodes']} validators over {s['transport']}, "
        f"{s['duration_s']:g} s at {s['rate_tps']:g} tx/s ({s['tx_bytes']} B txs)",
        "",
        f"  offered           {_fmt(s['offered_tx'])} tx ({_fmt(s['offered_tps'])} tx/s)",
        f"  accepted          {_fmt(s['accepted_tx'])} tx",
        f"  committed         {_fmt(s['committed_tx'])} tx   lost {_fmt(s['lost_tx'])}   "
        f"duplicate {_fmt(s['duplicate_tx'])}",
        f"  throughput        {_fmt(s['tps'])} tx/s finalized",
        f"  finality          p50 {_fmt(fin['p50'], ' ms')}   p99 {_fmt(fin['p99'], ' ms')}",
        f"  speculative       p50 {_fmt(spec['p50'], ' ms')}   p99 {_fmt(spec['p99'], ' ms')}",
        f"  block interval    mean {_fmt(bi['mean'], ' ms')}  std {_fmt(bi['std'], ' ms')}  "
        f"min {_fmt(bi['min'], ' ms')}  max {_fmt(bi['max'], ' ms')}",
        "  heights           " + "  ".join(f"node{i}={h}" for i, h in s["heights"].items()),
        f"  agreement         {'yes' if s['agreement'] else 'NO (diverged)'}",
        f"  timeouts (TCs)    {s['tcs']}   longest stall {s['longest_stall_s']:.1f} s",
    ]
    if s.get("sedna_offered"):
        dec = s["sedna_decode_ms"]
        decoded = "  ".join(f"node{i}={n}" for i, n in s["sedna_decoded"].items())
        lines += [
            f"  sedna offered     {_fmt(s['sedna_offered'])} payloads "
            f"({s['sedna_bytes']} B, {s['sedna_rate_pps']:g}/s)",
            f"  sedna decoded     {decoded}",
            f"  sedna decode      p50 {_fmt(dec['p50'], ' ms')}   p99 {_fmt(dec['p99'], ' ms')}",
            "  execution order   "
            + ("agree" if s["execution_order_agreement"] else "DIVERGED")
            + f" at height {s['execution_order_height']}",
        ]
        if s["bundles_rejected"]:
            lines.append(
                "  bundles rejected  "
                + "  ".join(f"{k}={v}" for k, v in s["bundles_rejected"].items())
            )
        if s.get("ledger_hash"):
            agree = len(set(s["ledger_hash"].values())) == 1
            lines.append(
                f"  ledger            fees {s['fees_charged']}  bounties {s['bounties_paid']}  "
                + ("agree" if agree else "DIVERGED")
                + f" at height {s['ledger_height']}"
            )
    for p in s["perturbations"]:
        recovery = (
            f"recovered in {p['recovery_s']:.2f} s"
            if p["recovered"]
            else (p["error"] or "NOT recovered")
        )
        lines.append(f"  perturbation      {p['spec']:<18} {recovery}")
    lines.append("")
    lines.append("result: " + ("OK" if s["ok"] else "FAILED"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- up / down / ...


def _up(args: argparse.Namespace) -> int:
    import asyncio
    import shutil

    from node.tools.testnet import (
        HOST_LAYOUT,
        HOSTS_LAYOUT,
        MANIFEST,
        Testnet,
        TestnetError,
        generate_network,
    )

    root = _root(args)
    if args.nodes is not None and not 1 <= args.nodes <= 64:
        _err(f"--nodes must be in 1..64, got {args.nodes}")
        return 2
    try:
        if (root / MANIFEST).exists():
            net = Testnet(root)
            layout = net.manifest.get("layout")
            if net.running():
                _err(f"{root} is already running nodes {net.running()}; `sedna testnet down` first")
                return 2
            if args.fresh and layout in (HOST_LAYOUT, HOSTS_LAYOUT):
                _err(
                    f"{root} is part of a multi-host network: new keys here would not match "
                    "the other hosts; run `sedna testnet init --hosts` again for all of them"
                )
                return 2
            if args.fresh:
                shutil.rmtree(root)
            elif args.nodes is not None and net.validators != args.nodes:
                _err(f"{root} holds a {net.validators}-node network; use --fresh to replace it")
                return 2
        if not (root / MANIFEST).exists():
            generate_network(root, args.nodes or 4, transport=args.transport)
        net = Testnet(root)
        net.start_all(detach=True)
    except TestnetError as exc:
        _err(str(exc))
        return 2
    one_host = net.manifest.get("layout") == HOST_LAYOUT
    print(f"starting {len(net)} of {net.validators} validators in {root} ...", file=sys.stderr)
    try:
        # A host's bundle is ready when its own nodes answer; the others start elsewhere.
        ready = asyncio.run(net.wait_ready(args.timeout, want_peers=0 if one_host else None))
    except TestnetError as exc:  # a node exited while starting
        _err(f"failed start: {exc}")
        if net.running():
            _err(f"nodes {net.running()} are running; `sedna testnet down --dir {root}` stops them")
        return 1
    if not ready:
        _err(f"nodes not ready after {args.timeout:g} s; see `sedna testnet logs --dir {root}`")
        return 1
    for member in net.members:
        print(f"node{member.index}  rpc http://{member.rpc_host}:{member.rpc_port}")
    if one_host:
        print(
            f"started; they connect to the other hosts' validators as those start "
            f"(`sedna testnet status --dir {root}` shows peers)",
            file=sys.stderr,
        )
    else:
        print(f"ready; `sedna testnet status --dir {root}`", file=sys.stderr)
    return 0


def _status_rows(net: Any) -> list[dict[str, Any]]:
    import asyncio

    statuses = asyncio.run(net.statuses(timeout_s=1.0))
    rows = []
    for member, status in zip(net.members, statuses, strict=True):
        if status is None:
            state = "running (no RPC)" if net.is_running(member.index) else "down"
            rows.append({"node": member.index, "state": state})
            continue
        rows.append(
            {
                "node": member.index,
                "state": "isolated" if status.get("isolated") else "up",
                "height": status["height"],
                "round": status["round"],
                "peers": len(status["peers"]),
                "tps": status["tps"],
                "finality_p50_ms": status["finality_p50_ms"],
                "mempool": status["mempool_txs"],
            }
        )
    return rows


def _status_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'node':>4}  {'state':<16} {'height':>8} {'round':>8} {'peers':>5} {'tps':>9} {'p50 ms':>8} {'mempool':>8}"
    lines = [header]
    for r in rows:
        if "height" not in r:
            lines.append(f"{r['node']:>4}  {r['state']:<16}")
            continue
        p50 = "-" if r["finality_p50_ms"] is None else f"{r['finality_p50_ms']:.1f}"
        lines.append(
            f"{r['node']:>4}  {r['state']:<16} {r['height']:>8} {r['round']:>8} {r['peers']:>5} "
            f"{r['tps']:>9.1f} {p50:>8} {r['mempool']:>8}"
        )
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    from node.tools.testnet import Testnet, TestnetError

    try:
        net = Testnet(_root(args))
    except TestnetError as exc:
        _err(str(exc))
        return 2
    watch = args.watch and not args.json
    try:
        while True:
            rows = _status_rows(net)
            if args.json:
                print(json.dumps(rows, indent=2))
                return 0
            table = _status_table(rows)
            if watch and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J" + table + "\n")
                sys.stdout.flush()
            else:
                print(table, flush=True)
            if not watch:
                return 0
            time.sleep(1.0)
    except KeyboardInterrupt:
        return 0


def _down(args: argparse.Namespace) -> int:
    from node.tools.testnet import Testnet, TestnetError

    try:
        net = Testnet(_root(args))
    except TestnetError as exc:
        _err(str(exc))
        return 2
    stopped = net.stop_all()
    print(f"stopped nodes {stopped}" if stopped else "no node was running", file=sys.stderr)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from node.tools.testnet import Testnet, TestnetError

    try:
        net = Testnet(_root(args))
    except TestnetError as exc:
        _err(str(exc))
        return 2
    here = [m.index for m in net.members]
    if args.node is not None and args.node not in here:
        _err(f"--node must be one of {here}")
        return 2
    if args.lines < 0:
        _err("--lines must be >= 0")
        return 2
    indices = [args.node] if args.node is not None else here
    paths = [(i, net.log_paths(i)[0]) for i in indices]
    offsets: dict[Path, int] = {}
    for index, path in paths:
        lines = _tail(path, args.lines)
        for line in lines:
            print(f"node{index}| {line}")
        offsets[path] = path.stat().st_size if path.exists() else 0
    if not args.follow:
        return 0
    try:
        while True:
            for index, path in paths:
                if not path.exists():
                    continue
                size = path.stat().st_size
                start = offsets.get(path, 0)
                if size < start:
                    start = 0  # truncated or replaced
                if size > start:
                    with path.open("rb") as handle:
                        handle.seek(start)
                        chunk = handle.read(min(size - start, 1 << 20))
                    offsets[path] = start + len(chunk)
                    for line in chunk.decode(errors="replace").splitlines():
                        print(f"node{index}| {line}", flush=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


def _tail(path: Path, count: int) -> list[str]:
    """Last `count` lines of a file (reads at most the final 1 MiB)."""
    if count == 0 or not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - (1 << 20)))
        data = handle.read()
    return data.decode(errors="replace").splitlines()[-count:]


def _init(args: argparse.Namespace) -> int:
    from node.tools.testnet import MANIFEST, TestnetError, generate_network

    root = _root(args)
    if args.hosts is not None and (args.nodes is not None or args.layout is not None):
        _err("--hosts names every validator and host: drop --nodes and --layout")
        return 2
    if args.hosts is not None and args.chain_id is not None:
        _err("--hosts: the chain id of a hosts network is fresh; drop --chain-id")
        return 2
    if args.hosts is not None and args.transport is not None:
        _err('--hosts: set the transport in the hosts file (transport = "libp2p")')
        return 2
    try:
        ledger = _ledger_options(args)
    except ValueError as exc:
        _err(str(exc))
        return 2
    if args.hosts is not None and ledger is not None:
        _err("--hosts: a hosts network has no ledger flags yet; drop --sender-balance")
        return 2
    if (root / MANIFEST).exists() and args.if_missing:
        print(f"{root} already holds a network; nothing to do", file=sys.stderr)
        return 0
    try:
        if args.hosts is not None:
            from node.tools.hosts import generate_hosts_network, load_hosts

            hosts = load_hosts(args.hosts)
            if (root / MANIFEST).exists():
                raise TestnetError(f"{root} already holds a network ({MANIFEST}); remove it first")
            generate_hosts_network(root, hosts)
        else:
            generate_network(
                root,
                args.nodes if args.nodes is not None else 4,
                transport=args.transport or "tcp",
                layout=args.layout or "local",
                chain_id=args.chain_id,
                ledger=ledger,
            )
    except TestnetError as exc:
        _err(str(exc))
        return 2
    if args.hosts is not None:
        print(
            f"wrote a {hosts.validators}-validator network on {len(hosts.hosts)} hosts to "
            f"{root}; copy {root}/hosts/<host>/ to each host (it holds that host's keys "
            "only) and run `sedna testnet up --dir <copy>` there",
            file=sys.stderr,
        )
        return 0
    nodes = args.nodes if args.nodes is not None else 4
    print(f"wrote a {nodes}-node {args.layout or 'local'} network to {root}", file=sys.stderr)
    return 0
