"""CPU cost of the consensus core per round: 4 in-process cores, real Ed25519, wire codec.

Drives `--nodes` unmodified `ConsensusCore`s through the in-process harness, but every
delivered message goes through the wire codec as in the node (encoded once per send or
broadcast with `codec.encode_message`, decoded once per receiver with
`codec.decode_message`). Measures, per finalized block and summed over all nodes:
CPU time inside `core.handle()` and in encode/decode (thread CPU time, split by event
type), and the number of Ed25519 signs and verifies. Payloads are
opaque bytes of `--payload-bytes` (the core accepts every block: no node-side validator,
storage or transport here). Medians over `--runs`.

    .venv/bin/python benchmarks/bench_core.py [--blocks 200] [--runs 5]
        [--payload-bytes 0,200000,1000000]

This isolates the consensus hot path from the machine's other load; the testnet numbers
(benchmarks/bench_testnet.py, benchmarks/profile_testnet.py) are the end-to-end ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

from consensus.codec import decode_message, encode_message
from consensus.crypto import ED25519, KeyPair
from consensus.events import MessageReceived, PayloadReady, TimerFired
from consensus.harness import Harness, HarnessConfig
from consensus.messages import Message

_clock = time.thread_time  # CPU time of this thread: robust against other load on the machine


class CountingEd25519:
    """Real Ed25519 that counts signs and verifies (deterministic work measure)."""

    name = "ed25519"

    def __init__(self) -> None:
        self.signs = 0
        self.verifies = 0

    def sign(self, key: KeyPair, domain: bytes, payload: bytes) -> bytes:
        self.signs += 1
        return ED25519.sign(key, domain, payload)

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool:
        self.verifies += 1
        return ED25519.verify(public, domain, payload, signature)


class _CodecHarness(Harness):
    """The harness with wire encoding on every delivery and per-event timing."""

    def __init__(self, config: HarnessConfig):
        super().__init__(config)
        self._last_message: Message | None = None
        self._last_frame = b""
        self.codec_s = 0.0
        self.handle_s: dict[str, float] = defaultdict(float)
        self.handle_count: dict[str, int] = defaultdict(int)

    def _deliver(self, src: int, dst: int, message: Message) -> None:
        start = _clock()
        if message is not self._last_message:  # a broadcast is encoded once, as in the node
            self._last_message = message
            self._last_frame = encode_message(message)
        decoded = decode_message(self._last_frame)
        self.codec_s += _clock() - start
        super()._deliver(src, dst, decoded)

    def step(self) -> bool:
        while self._queue:
            _at, seq, node, event = self._queue[0]
            if node in self.crashed or (
                isinstance(event, TimerFired) and self._timers.get((node, event.kind)) != seq
            ):
                return super().step()  # skipped entries: let the base class discard them
            if isinstance(event, MessageReceived):
                kind = type(event.message).__name__
            elif isinstance(event, PayloadReady):
                kind = "PayloadReady"
            else:
                kind = type(event).__name__
            start = _clock()
            progressed = super().step()
            self.handle_s[kind] += _clock() - start
            self.handle_count[kind] += 1
            return progressed
        return False


def one_run(nodes: int, blocks: int, payload_bytes: int) -> dict[str, Any]:
    scheme = CountingEd25519()
    harness = _CodecHarness(
        HarnessConfig(
            nodes=nodes,
            blocks=blocks,
            payload_bytes=payload_bytes,
            max_events=10**7,
            scheme=scheme,
        )
    )
    cpu_start = _clock()
    result = harness.run()
    cpu_s = _clock() - cpu_start
    if result.stopped != "done" or not result.agreement():
        raise RuntimeError(f"harness did not finish cleanly: {result.stopped}")
    finalized = min(result.finalized_heights)
    codec_s = harness.codec_s
    handle_total_s = sum(harness.handle_s.values()) - codec_s  # deliveries happen in step()
    return {
        "blocks": finalized,
        "cpu_us_per_block": 1e6 * cpu_s / finalized,
        "verifies_per_block": scheme.verifies / finalized,
        "signs_per_block": scheme.signs / finalized,
        "handle_us_per_block": 1e6 * handle_total_s / finalized,
        "codec_us_per_block": 1e6 * codec_s / finalized,
        "by_event_us_per_block": {
            k: 1e6 * v / finalized for k, v in sorted(harness.handle_s.items())
        },
        "events_per_block": {k: v / finalized for k, v in sorted(harness.handle_count.items())},
    }


def bench(nodes: int, blocks: int, runs: int, sizes: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {"nodes": nodes, "blocks": blocks, "runs": runs, "points": []}
    for size in sizes:
        samples = [one_run(nodes, blocks, size) for _ in range(runs)]

        def med(key: str, samples: list[dict[str, Any]] = samples) -> float:
            return round(statistics.median(s[key] for s in samples), 1)

        kinds = sorted({k for s in samples for k in s["by_event_us_per_block"]})
        point = {
            "payload_bytes": size,
            "cpu_us_per_block": med("cpu_us_per_block"),
            "verifies_per_block": med("verifies_per_block"),
            "signs_per_block": med("signs_per_block"),
            "handle_us_per_block": med("handle_us_per_block"),
            "codec_us_per_block": med("codec_us_per_block"),
            "by_event_us_per_block": {
                k: round(
                    statistics.median(s["by_event_us_per_block"].get(k, 0.0) for s in samples), 1
                )
                for k in kinds
            },
        }
        results["points"].append(point)
        print(f"payload {size:>8} B: {point}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--payload-bytes", default="0,200000,1000000")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.payload_bytes.split(",") if s]
    except ValueError:
        print("bench core: --payload-bytes must be integers", file=sys.stderr)
        return 2
    if args.nodes < 1 or args.blocks < 1 or args.runs < 1 or any(s < 0 for s in sizes):
        print("bench core: nodes, blocks, runs must be positive, sizes >= 0", file=sys.stderr)
        return 2
    results = bench(args.nodes, args.blocks, args.runs, sizes)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{args.nodes} cores, {args.blocks} blocks, median of {args.runs} runs (all nodes):")
        for p in results["points"]:
            print(
                f"  payload {p['payload_bytes']:>8} B: {p['cpu_us_per_block']:>9.1f} CPU-us/block"
                f"  handle {p['handle_us_per_block']:>9.1f}  codec {p['codec_us_per_block']:>8.1f}"
                f"  Ed25519 verifies {p['verifies_per_block']}/block, signs {p['signs_per_block']}"
            )
            events = "  ".join(f"{k} {v:.0f}" for k, v in p["by_event_us_per_block"].items())
            print(f"      by event (us/block, incl. sends' codec): {events}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
