"""Profile node processes of a loaded local testnet (py-spy sampling + CPU accounting).

Starts a bounded `sedna testnet run` (4 validators on loopback by default), waits
`--warmup` seconds into the load, then for `--window` seconds:
- samples the chosen node processes with `py-spy record --nonblocking` (on-CPU samples
  only: py-spy skips idle threads), and
- reads every node's CPU time (/proc/<pid>/stat utime+stime) and finalized tx count
  (`GET /stats` committed_txs) at both ends of the window,
then prints CPU seconds per node, CPU microseconds per finalized tx, and the hottest
functions (self and inclusive samples) and files of the profiled nodes.

    .venv/bin/pip install py-spy     # a dev tool, not a project dependency
    .venv/bin/python benchmarks/profile_testnet.py --rate 6000 --nodes-profiled 1
    .venv/bin/python benchmarks/profile_testnet.py --rate 6000 --json > profile.json
    .venv/bin/python benchmarks/profile_testnet.py --rate 0 --sedna-rate 2500 \
        --nodes-profiled 1 --profile-runner          # Sedna load: nodes and load generator

With `--sedna-rate` the run offers Sedna payloads (pre-encoded before the load, as
`sedna bench testnet` does) and the window also counts payloads decoded per node
(`payloads_decoded` of `GET /status`) and CPU microseconds per decoded payload.
`--profile-runner` samples this process too (the load generator and the launcher).

Numbers depend on the machine and on everything else running on it; compare runs made
side by side on one machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
MAX_FRAMES_PER_STACK = 512  # bound on parsed stack depth
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _cpu_s(pid: int) -> float | None:
    """utime + stime of a process in seconds (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def _short_file(path: str) -> str:
    """Project-relative or library-relative file name for a frame."""
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    for root in ("consensus/", "node/", "netsim/", "mechanism/"):
        position = path.find("/" + root)
        if position >= 0:
            return path[position + 1 :]
    return path


def parse_raw(
    text: str,
) -> tuple[int, collections.Counter, collections.Counter, collections.Counter]:
    """Collapsed py-spy stacks -> (samples, self per function, inclusive per function, self
    per file). Functions are keyed `func (file)` with line numbers dropped."""
    total = 0
    self_fn: collections.Counter = collections.Counter()
    incl_fn: collections.Counter = collections.Counter()
    self_file: collections.Counter = collections.Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for frame in stack.split(";")[:MAX_FRAMES_PER_STACK]:
            match = _FRAME.match(frame.strip())
            if match is None:
                frames.append((frame.strip(), ""))
            else:
                frames.append((match["func"], _short_file(match["file"])))
        if not frames:
            continue
        total += count
        leaf_func, leaf_file = frames[-1]
        self_fn[f"{leaf_func} ({leaf_file})"] += count
        self_file[leaf_file] += count
        for key in {f"{func} ({file})" for func, file in frames}:
            incl_fn[key] += count
    return total, self_fn, incl_fn, self_file


async def _stats(run: Any, index: int) -> dict[str, Any] | None:
    stats = await run.net.rpc_json(index, "/stats", 2.0)
    status = await run.net.rpc_json(index, "/status", 2.0)
    if stats is not None and status is not None:
        stats["payloads_decoded"] = status.get("payloads_decoded")
    return stats


async def _monitor(run: Any, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Wait for the load, then profile and account one window."""
    deadline = time.monotonic() + 120.0
    while not (run.phase == "load" and run.net is not None and run._now() >= args.warmup):
        if time.monotonic() > deadline or run.phase in ("drain", "collect"):
            return {"error": "the load phase was not reached"}
        await asyncio.sleep(0.05)
    net = run.net
    pids = {m.index: net.pid(m.index) for m in net.members}
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    before_stats = await asyncio.gather(*(_stats(run, i) for i in pids))
    before_cpu = {i: _cpu_s(p) if p else None for i, p in pids.items()}
    runner_before = sum(os.times()[:2])
    start = time.monotonic()
    procs = []
    if spy is not None:
        for index in args.profiled:
            pid = pids.get(index)
            if pid is None:
                continue
            output = out_dir / f"node{index}.raw.txt"
            proc = await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(pid), "--duration", str(int(args.window)),
                "--rate", str(args.sample_hz), "--format", "raw", "--nonblocking",
                "--output", str(output),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            procs.append((index, output, proc))
        if args.profile_runner:
            output = out_dir / "runner.raw.txt"
            proc = await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(os.getpid()), "--duration", str(int(args.window)),
                "--rate", str(args.sample_hz), "--format", "raw", "--nonblocking",
                "--output", str(output),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            procs.append(("runner", output, proc))
    await asyncio.sleep(args.window)
    elapsed_s = time.monotonic() - start
    after_cpu = {i: _cpu_s(p) if p else None for i, p in pids.items()}
    runner_after = sum(os.times()[:2])
    after_stats = await asyncio.gather(*(_stats(run, i) for i in pids))
    profiles = {}
    for index, output, proc in procs:
        _, err = await proc.communicate()
        if output.exists():
            profiles[index] = output.read_text()
        else:
            profiles[index] = ""
            print(f"py-spy on node {index} failed: {err.decode()[-300:]}", file=sys.stderr)
    nodes = {}
    for i in pids:
        cpu = None
        if before_cpu[i] is not None and after_cpu[i] is not None:
            cpu = after_cpu[i] - before_cpu[i]
        txs = blocks = payloads = None
        b, a = before_stats[i], after_stats[i]
        if b is not None and a is not None:
            txs = int(a["committed_txs"]) - int(b["committed_txs"])
            blocks = int(a["height"]) - int(b["height"])
            if a.get("payloads_decoded") is not None and b.get("payloads_decoded") is not None:
                payloads = int(a["payloads_decoded"]) - int(b["payloads_decoded"])
        nodes[i] = {
            "cpu_s": None if cpu is None else round(cpu, 3),
            "cpu_pct": None if cpu is None else round(100 * cpu / elapsed_s, 1),
            "finalized_tx": txs,
            "cpu_us_per_tx": round(1e6 * cpu / txs, 1) if cpu is not None and txs else None,
            "finalized_blocks": blocks,
            "cpu_us_per_block": (
                round(1e6 * cpu / blocks, 1) if cpu is not None and blocks else None
            ),
            "payloads_decoded": payloads,
            "cpu_us_per_payload": (
                round(1e6 * cpu / payloads, 1) if cpu is not None and payloads else None
            ),
        }
    return {
        "window_s": round(elapsed_s, 2),
        "load_average": round(os.getloadavg()[0], 2),
        "nodes": nodes,
        "runner_cpu_pct": round(100 * (runner_after - runner_before) / elapsed_s, 1),
        "profiles": profiles,
        "py_spy": spy is not None,
    }


async def _profile(args: argparse.Namespace, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from node.tools.testnet import RunOptions, TestnetRun

    options = RunOptions(
        nodes=args.nodes,
        duration_s=args.duration,
        rate_tps=args.rate,
        transport=args.transport,
        tx_bytes=args.tx_bytes,
        dir=root / "net",
        sedna_rate_pps=args.sedna_rate,
        sedna_bytes=args.sedna_bytes,
        sedna_preencode=args.sedna_rate > 0,
        dissemination=args.dissemination,
    )
    run = TestnetRun(options)
    summary, monitor = await asyncio.gather(run.execute(), _monitor(run, args, root))
    return summary, monitor


def _table(counter: collections.Counter, total: int, top: int) -> list[dict[str, Any]]:
    return [
        {"name": name, "samples": n, "pct": round(100 * n / total, 1)}
        for name, n in counter.most_common(top)
    ]


def report(summary: dict[str, Any], monitor: dict[str, Any], top: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "tps": summary.get("tps"),
        "finality_ms": summary.get("finality_ms"),
        "offered_tx": summary.get("offered_tx"),
        "committed_tx": summary.get("committed_tx"),
        "ok": summary.get("ok"),
        "window_s": monitor.get("window_s"),
        "load_average": monitor.get("load_average"),
        "nodes": monitor.get("nodes"),
        "runner_cpu_pct": monitor.get("runner_cpu_pct"),
        "profiles": {},
    }
    for index, text in (monitor.get("profiles") or {}).items():
        total, self_fn, incl_fn, self_file = parse_raw(text)
        if total == 0:
            continue
        result["profiles"][index] = {
            "samples": total,
            "self": _table(self_fn, total, top),
            "inclusive": _table(incl_fn, total, top),
            "files": _table(self_file, total, top),
        }
    return result


def _print(result: dict[str, Any]) -> None:
    fin = result.get("finality_ms") or {}
    print(
        f"finalized {result['tps']} tx/s (offered {result['offered_tx']} tx in total), "
        f"finality p50 {fin.get('p50')} ms p99 {fin.get('p99')} ms, ok={result['ok']}"
    )
    print(
        f"window {result['window_s']} s; runner (load generator) CPU {result['runner_cpu_pct']} "
        f"%; load average {result['load_average']}"
    )
    per_block = []
    for index, node in (result.get("nodes") or {}).items():
        print(
            f"  node {index}: CPU {node['cpu_pct']} %  finalized {node['finalized_tx']} tx  "
            f"{node['cpu_us_per_tx']} CPU-us/tx  {node['finalized_blocks']} blocks  "
            f"{node['cpu_us_per_block']} CPU-us/block  decoded {node['payloads_decoded']} "
            f"payloads  {node['cpu_us_per_payload']} CPU-us/payload"
        )
        if node["cpu_us_per_block"] is not None:
            per_block.append(node["cpu_us_per_block"])
    if per_block:
        print(f"  median over nodes: {statistics.median(per_block):.0f} CPU-us/block")
    for index, profile in result["profiles"].items():
        print(f"\nnode {index}: {profile['samples']} on-CPU samples")
        for title, key in (("self", "self"), ("inclusive", "inclusive"), ("self by file", "files")):
            print(f"  -- {title}")
            for row in profile[key]:
                print(f"  {row['pct']:5.1f} %  {row['samples']:6d}  {row['name']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--transport", default="tcp", choices=("tcp", "libp2p"))
    parser.add_argument("--rate", type=float, default=6000.0, help="offered tx/s")
    parser.add_argument("--duration", type=float, default=14.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=8.0, help="seconds profiled")
    parser.add_argument("--nodes-profiled", default="1", help="comma list of node indices")
    parser.add_argument("--sample-hz", type=int, default=100)
    parser.add_argument("--tx-bytes", type=int, default=512)
    parser.add_argument(
        "--sedna-rate", type=float, default=20.0, help="offered payloads/s alongside (0: none)"
    )
    parser.add_argument("--sedna-bytes", type=int, default=512)
    parser.add_argument("--dissemination", default="certified", choices=("certified", "carried"))
    parser.add_argument(
        "--profile-runner", action="store_true", help="also sample the load generator"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", metavar="DIR", help="keep raw py-spy stacks in DIR")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        args.profiled = [int(i) for i in args.nodes_profiled.split(",") if i]
    except ValueError:
        print("profile testnet: --nodes-profiled must be integers", file=sys.stderr)
        return 2
    if any(not 0 <= i < args.nodes for i in args.profiled) or args.nodes < 1:
        print("profile testnet: profiled node index out of range", file=sys.stderr)
        return 2
    if args.rate < 0 or args.sedna_rate < 0 or args.rate + args.sedna_rate <= 0:
        print("profile testnet: offer tx/s (--rate) or payloads/s (--sedna-rate)", file=sys.stderr)
        return 2
    if args.window < 1 or args.warmup < 0 or args.sample_hz < 1:
        print(
            "profile testnet: rate, window, warmup and sample-hz must be positive", file=sys.stderr
        )
        return 2
    if args.warmup + args.window > args.duration:
        print("profile testnet: --warmup + --window must fit in --duration", file=sys.stderr)
        return 2
    from node.memory import tune_malloc

    tune_malloc()  # as `sedna` does for its commands (node/memory.py)
    root = Path(tempfile.mkdtemp(prefix="sedna-profile-"))
    try:
        summary, monitor = asyncio.run(_profile(args, root))
        if "error" in monitor:
            print(f"profile testnet: {monitor['error']}", file=sys.stderr)
            return 1
        if not monitor.get("py_spy"):
            print("profile testnet: py-spy not found; CPU accounting only", file=sys.stderr)
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            for index, text in monitor["profiles"].items():
                (keep / f"node{index}.raw.txt").write_text(text)
        result = report(summary, monitor, args.top)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
