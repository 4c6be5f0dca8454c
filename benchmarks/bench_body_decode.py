"""A follower's Sedna cost per finalized body: validate, then track, with and without the
decoded-body cache (issue 16: a finalized body was decoded twice, by the lane validator
and by the decode tracker).

Workload: `benchmarks/bench_decode_path.py`'s (real encoder, Ed25519 tickets and lane-block
signatures). Per run, a fresh `NodeLanes` validates every block as the core does, then
tracks it as the lane tracker does:

- twice:  `validator.check` (keeps nothing) then `NodeLanes.track` (decodes the body
          again): the path before the cache;
- once:   `validator.validate` (keeps the decoded lane blocks by body id) then
          `NodeLanes.track` (takes them): the path now.

Also the block-payload decode alone (`decode_block_payload`), the stage the cache saves.
Process CPU time, both paths back to back (order alternating), medians over `--runs`,
microseconds per payload. Both paths are checked to give identical outcomes first.

    .venv/bin/python benchmarks/bench_body_decode.py --runs 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_decode_path import _node_lanes, build_workload
from consensus.lanes.wire import decode_block_payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--payloads-per-block", type=int, default=50)
    parser.add_argument("--payload-bytes", type=int, default=512)
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50 or args.blocks < 1 or args.payloads_per_block < 1:
        print("error: need 1 <= runs <= 50, blocks >= 1, payloads-per-block >= 1", file=sys.stderr)
        return 2
    chain, _ = build_workload(args.blocks, args.payloads_per_block, args.payload_bytes, args.lanes)
    count = args.blocks * args.payloads_per_block

    def path(keep: bool) -> tuple[float, list, int]:
        node = _node_lanes(args.lanes)
        check = node.validator.validate if keep else node.validator.check
        start = time.process_time()
        outcomes = []
        for header, body in chain:
            ok = check(header, body)
            if ok is False or (ok is not True and ok is not None):
                raise SystemExit(f"error: block {header.seq_num} invalid: {ok}")
            outcomes.append(node.track(header, body)[0].execution_order_hash)
        elapsed = time.process_time() - start
        return elapsed * 1e6 / count, outcomes, node.validator.decodes

    _, twice_out, twice_decodes = path(False)
    _, once_out, once_decodes = path(True)
    if twice_out != once_out:
        print("error: the two paths give different execution orders", file=sys.stderr)
        return 1
    samples: dict[str, list[float]] = {"twice": [], "once": [], "block_decode": []}
    for run in range(args.runs):
        for keep in (run % 2 == 1, run % 2 == 0):
            samples["once" if keep else "twice"].append(path(keep)[0])
        start = time.process_time()
        for _, body in chain:
            decode_block_payload(body.payload)
        samples["block_decode"].append((time.process_time() - start) * 1e6 / count)
    result = {
        "payloads": count,
        "runs": args.runs,
        "decodes_per_block": {
            "twice": twice_decodes / args.blocks,
            "once": once_decodes / args.blocks,
        },
        "us_per_payload": {k: round(statistics.median(v), 1) for k, v in samples.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        us = result["us_per_payload"]
        print(
            f"{count} payloads, {args.payloads_per_block}/block, medians of {args.runs} runs, "
            f"CPU us per payload: validate+track decoding twice {us['twice']}, "
            f"once {us['once']} (block-payload decode alone {us['block_decode']}); "
            f"decodes per block {result['decodes_per_block']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
