"""Per-node Sedna decode path: CPU cost per payload, current code vs the code before the
fast path (a reference copy kept in this file only, for the side-by-side).

Workload: `--blocks` finalized blocks, each carrying `--payloads-per-block` payloads of
`--payload-bytes` (node lane parameters, κ bundles each) spread over `--lanes` lane
blocks, built with the real encoder, Ed25519 tickets and lane-block signatures (the
first block is checked by `LanePayloadValidator`). Stages timed, per payload:

(a) `decode_payload` alone, from κ bundles (RaptorQ decode, commitment re-encode,
    bundle leaves + Merkle root, AONT inversion), one payload per call;
(a') `decode_payloads` on each block's payloads at once (what the tracker calls; the
    reference decodes them one by one);
(b) `NodeLanes.track` over every block (block payload decode, tracker bookkeeping,
    decode_payload, execution-order hash), fresh tracker per run;
(c) `NodeRuntime._track_block` over every block: (b) plus the runtime's rows, metrics and
    the SQLite write (fresh node database per run; current code only: the runtime and
    storage side has no reference copy).

Every run times reference and current back to back (order alternating) with this
process's CPU time (`process_time`, robust on a shared machine) and prints medians over
`--runs` runs. Before timing, both paths are checked to give identical results
(decode results; outcomes and execution-order hashes).

    .venv/bin/python benchmarks/bench_decode_path.py --runs 7
    .venv/bin/python benchmarks/bench_decode_path.py --payloads-per-block 10 --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import raptorq
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.crypto import ED25519, derive_keys
from consensus.lanes.aont import AontError
from consensus.lanes.encoding import (
    DecodeResult,
    decode_payload,
    decode_payloads,
    encode_payload,
    layout_of,
)
from consensus.lanes.merkle import MAX_DEPTH, symbol_tag, tree_depth
from consensus.lanes.params import AONT_KEY_BYTES, PayloadLayout
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.proposer import entry_key
from consensus.lanes.tickets import make_ticket, sign_lane_block, sign_ticket
from consensus.lanes.tracker import (
    BlockOutcome,
    DecodeTracker,
    PayloadEvent,
    Redemption,
    _Pending,
)
from consensus.lanes.wire import LaneEntry, PayloadCommitment, decode_block_payload
from consensus.messages import BlockBody, BlockHeader
from consensus.validators import ValidatorSet, schedule_by_name
from node.lanes_node import NODE_LANE_PARAMS, NodeLanes, stand_in_header

MAX_RUNS = 101
MAX_PAYLOADS = 200_000

# --------------------------------------------------------------------------- reference
# The decode path as it was before the fast path (same behaviour, more Python work):
# symbol map + sorted() in the codec, per-symbol hash updates, leaves padded to a power
# of two, byte-wise AONT XOR, a BlockBody re-encoded for the tracker and decoded again.

_REF_PADDING_LEAF = hashlib.sha256(b"\x03").digest()


def _ref_codec_decode(
    data_len: int, symbol_size: int, repair_count: int, symbols: Mapping[int, bytes]
) -> bytes | None:
    source = data_len // symbol_size
    if len(symbols) < source:
        return None
    decoder = raptorq.Decoder.with_defaults(data_len, symbol_size)
    for index in sorted(symbols):
        if not 0 <= index < repair_count:
            continue
        result = decoder.decode(symbol_tag(source + index) + symbols[index])
        if result is not None:
            return bytes(result)
    return None


def _ref_stream(layout: PayloadLayout, transformed: bytes) -> list[bytes]:
    source = layout.source_symbols
    encoder = raptorq.Encoder.with_defaults(transformed, layout.symbol_size_bytes)
    repair_count = layout.repair_symbols
    packets = encoder.get_encoded_packets(repair_count)
    if (
        len(packets) != source + repair_count
        or len(packets[-1]) != layout.symbol_size_bytes + 4
        or packets[-1][0] != 0
        or int.from_bytes(packets[-1][1:4], "big") != source + repair_count - 1
    ):
        raise ValueError("raptorq split the payload into more than one source block")
    return packets[source:]


def _ref_bundle_leaves(tagged_symbols: Sequence[bytes], symbols_per_bundle: int) -> list[bytes]:
    leaves = []
    for index, start in enumerate(range(0, len(tagged_symbols), symbols_per_bundle)):
        h = hashlib.sha256(b"\x00" + index.to_bytes(8, "big"))
        for tagged in tagged_symbols[start : start + symbols_per_bundle]:
            h.update(tagged)
        leaves.append(h.digest())
    return leaves


def _ref_merkle_root(leaves: Sequence[bytes]) -> bytes:
    depth = tree_depth(len(leaves))
    if depth > MAX_DEPTH:
        raise ValueError("too many leaves")
    level = list(leaves) + [_REF_PADDING_LEAF] * ((1 << depth) - len(leaves))
    while len(level) > 1:
        level = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level), 2)
        ]
    return level[0]


def _ref_invert(transformed: bytes, payload_len: int) -> bytes:
    body_len = len(transformed) - AONT_KEY_BYTES
    if not 0 <= payload_len <= body_len:
        raise AontError("payload length does not fit")
    view = memoryview(transformed)
    ciphertext = view[:body_len]
    h = hashlib.sha256(b"sedna/aont/1\x00")
    h.update(ciphertext)
    key = bytes(a ^ b for a, b in zip(view[body_len:], h.digest(), strict=True))
    cipher = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    plaintext = cipher.update(ciphertext) + cipher.finalize()
    if plaintext[payload_len:].lstrip(b"\x00"):
        raise AontError("non-zero padding")
    return plaintext[:payload_len]


def ref_decode_payload(
    layout: PayloadLayout, commitment: PayloadCommitment, bundles: Mapping[int, Sequence[bytes]]
) -> DecodeResult:
    s_b = layout.symbols_per_bundle
    symbols: dict[int, bytes] = {}
    for index in sorted(bundles):
        for offset, symbol in enumerate(bundles[index]):
            symbols[index * s_b + offset] = symbol
    transformed = _ref_codec_decode(
        layout.transformed_len, layout.symbol_size_bytes, layout.repair_symbols, symbols
    )
    if transformed is None:
        return DecodeResult("undecodable")
    root = _ref_merkle_root(_ref_bundle_leaves(_ref_stream(layout, transformed), s_b))
    if root != commitment.merkle_root:
        return DecodeResult("commitment_mismatch")
    try:
        payload = _ref_invert(transformed, layout.payload_len)
    except AontError:
        return DecodeResult("commitment_mismatch")
    return DecodeResult("decoded", payload)


class RefTracker(DecodeTracker):
    """`DecodeTracker.on_finalized` as it was (state and hashing shared with the class)."""

    def on_finalized(self, header: BlockHeader, body: BlockBody) -> BlockOutcome:
        height = header.seq_num
        if self.height is not None and height != self.height + 1:
            raise ValueError(f"expected finalized height {self.height + 1}, got {height}")
        payload = decode_block_payload(body.payload)
        self.height = height
        redemptions: list[Redemption] = []
        touched: set[bytes] = set()
        duplicates = late = dropped = 0
        for block in payload.lane_blocks:
            for entry in block.entries:
                ticket = entry.ticket.ticket
                cid, index = entry_key(entry)
                commitment = entry.bundle.commitment
                redemptions.append(
                    Redemption(cid, commitment.sender, block.lane, block.slot, index, ticket.fee)
                )
                if cid in self._decided:
                    late += 1
                    continue
                pending = self._pending.get(cid)
                if pending is None:
                    layout = layout_of(self.params, commitment)
                    if len(self._pending) >= self.max_pending or layout is None:
                        dropped += 1
                        continue
                    pending = _Pending(commitment, layout, first_slot=height, last_progress=height)
                    self._pending[cid] = pending
                if index in pending.bundles:
                    duplicates += 1
                    continue
                pending.bundles[index] = entry.bundle.symbols
                pending.order.append((block.slot, block.lane, index))
                pending.last_progress = height
                touched.add(cid)
        executed: list[PayloadEvent] = []
        others: list[PayloadEvent] = []
        for cid in sorted(touched):
            pending = self._pending[cid]
            if len(pending.bundles) < pending.layout.kappa:
                continue
            result = ref_decode_payload(pending.layout, pending.commitment, pending.bundles)
            if result.status == "undecodable":
                continue
            if result.status == "decoded":
                executed.append(self._ref_decide(cid, "executed", height, result.payload))
            else:
                others.append(self._ref_decide(cid, "rejected", height, None))
        for cid in sorted(self._pending):
            if height - self._pending[cid].last_progress >= self.pending_ttl_slots:
                others.append(self._ref_decide(cid, "expired", height, None))
        tags = {"executed": b"p", "rejected": b"r", "expired": b"x"}
        for tx in payload.transactions:
            self._chain(b"t", height, b"", tx)
        base = len(payload.transactions)
        events = [replace(e, position=base + i) for i, e in enumerate(executed)] + others
        for event in events:
            self._chain(tags[event.status], height, event.commitment_id, event.payload or b"")
        self.redeemed += len(redemptions)
        return BlockOutcome(
            height=height,
            transactions=payload.transactions,
            redemptions=tuple(redemptions),
            payloads=tuple(events),
            duplicates=duplicates,
            late=late,
            dropped=dropped,
            execution_order_hash=self.execution_order_hash,
        )

    def _ref_decide(self, cid: bytes, status: Any, height: int, payload: bytes | None) -> Any:
        pending = self._pending.pop(cid)
        self._decided[cid] = status  # (the reference forgot ids by count; not timed here)
        self.counts[status] += 1
        return PayloadEvent(
            commitment_id=cid,
            sender=pending.commitment.sender,
            status=status,
            height=height,
            position=-1,
            payload=payload,
            kappa=pending.layout.kappa,
            first_slot=pending.first_slot,
            finalized_bundles=len(pending.bundles),
            pivotal=tuple(pending.order[: pending.layout.kappa]),
        )


def ref_track(
    tracker: RefTracker, header: BlockHeader, body: BlockBody
) -> tuple[BlockOutcome, int]:
    """`NodeLanes.track` as it was: the lane blocks re-encoded into a body for the tracker."""
    payload = decode_block_payload(body.payload)
    lane_body = (
        BlockBody(build_block_payload((), payload.lane_blocks))
        if payload.lane_blocks
        else BlockBody(b"")
    )
    return tracker.on_finalized(header, lane_body), len(payload.transactions)


# --------------------------------------------------------------------------- workload

_KEYS = derive_keys(16, b"bench/decode-path")
_SENDER = derive_keys(1, b"bench/decode-path/sender")[0]


def build_workload(
    blocks: int, per_block: int, payload_bytes: int, lanes: int
) -> tuple[list[tuple[BlockHeader, BlockBody]], list[tuple[Any, ...]]]:
    """Finalized (header, body) pairs and, per payload, (layout, commitment, κ bundles)."""
    params = NODE_LANE_PARAMS
    chain: list[tuple[BlockHeader, BlockBody]] = []
    decodes: list[tuple[Any, ...]] = []
    for height in range(1, blocks + 1):
        by_lane: dict[int, list[LaneEntry]] = {lane: [] for lane in range(lanes)}
        n = 0
        for p in range(per_block):
            seed = f"{height}/{p}".encode()
            data = hashlib.sha256(b"payload/" + seed).digest() * (payload_bytes // 32 + 1)
            key = hashlib.sha256(b"aont/" + seed).digest()
            encoded = encode_payload(
                params, data[:payload_bytes], key, _SENDER.public, expiry_slot=height
            )
            kappa = encoded.layout.kappa
            decodes.append(
                (
                    encoded.layout,
                    encoded.commitment,
                    {i: encoded.bundles[i].symbols for i in range(kappa)},
                )
            )
            for index in range(kappa):
                lane = n % lanes
                n += 1
                ticket = make_ticket(encoded.commitment_id, lane, height, index, 1)
                entry = LaneEntry(encoded.bundles[index], sign_ticket(ED25519, _SENDER, ticket))
                by_lane[lane].append(entry)
        lane_blocks = [
            sign_lane_block(ED25519, _KEYS[lane], lane, height, tuple(sorted(es, key=entry_key)))
            for lane, es in by_lane.items()
            if es
        ]
        body = BlockBody(build_block_payload((), lane_blocks))
        chain.append((stand_in_header(height, 0, body), body))
    return chain, decodes


def _validators(lanes: int) -> ValidatorSet:
    return ValidatorSet.from_keys([k.public for k in _KEYS[:lanes]])


def _node_lanes(lanes: int) -> NodeLanes:
    validators = _validators(lanes)
    return NodeLanes(
        index=0,
        key=_KEYS[0],
        scheme=ED25519,
        validators=validators,
        schedule=schedule_by_name("round-robin", validators),
    )


# --------------------------------------------------------------------------- timing


def _cpu_us(fn: Callable[[], object], count: int) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) / count * 1e6


def side_by_side(
    runs: int, count: int, reference: Callable[[], object], current: Callable[[], object]
) -> dict[str, float]:
    """Median CPU µs per payload of each, run back to back with alternating order."""
    ref: list[float] = []
    cur: list[float] = []
    for run in range(runs):
        if run % 2:
            cur.append(_cpu_us(current, count))
            ref.append(_cpu_us(reference, count))
        else:
            ref.append(_cpu_us(reference, count))
            cur.append(_cpu_us(current, count))
    ratios = [c / r for r, c in zip(ref, cur, strict=True)]
    return {
        "reference_us": round(statistics.median(ref), 1),
        "current_us": round(statistics.median(cur), 1),
        "ratio": round(statistics.median(ratios), 3),
    }


class _RuntimeHarness:
    """A NodeRuntime (not started) on a fresh database, to time `_track_block`."""

    def __init__(self, root: Path):
        from node.config import load_config, load_key
        from node.runtime import NodeRuntime
        from node.tools.testnet import generate_network

        manifest = generate_network(root, 4)
        config = load_config(root / manifest["members"][0]["config"])
        self.runtime = NodeRuntime(config, load_key(config))

    def feed(self, chain: Sequence[tuple[BlockHeader, BlockBody]]) -> None:
        for header, body in chain:
            self.runtime._track_block(header, body)
        if self.runtime.lane_error is not None:
            raise RuntimeError(self.runtime.lane_error)

    def close(self) -> None:
        self.runtime.storage.close()


def _runtime_costs(runs: int, count: int, chain: Sequence[tuple[BlockHeader, BlockBody]]) -> float:
    costs = []
    with tempfile.TemporaryDirectory(prefix="bench-decode-path-") as tmp:
        for run in range(runs):
            harness = _RuntimeHarness(Path(tmp) / f"run{run}")
            try:
                costs.append(_cpu_us(lambda h=harness: h.feed(chain), count))
            finally:
                harness.close()
    return round(statistics.median(costs), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--payloads-per-block", type=int, default=50)
    parser.add_argument("--payload-bytes", type=int, default=512)
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--no-runtime", action="store_true", help="skip stage (c)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    count = args.blocks * args.payloads_per_block
    if not 1 <= args.runs <= MAX_RUNS:
        print(f"error: --runs must be in 1..{MAX_RUNS}", file=sys.stderr)
        return 2
    if not 1 <= count <= MAX_PAYLOADS or args.blocks < 1 or args.payloads_per_block < 1:
        print(f"error: blocks × payloads-per-block must be in 1..{MAX_PAYLOADS}", file=sys.stderr)
        return 2
    if not 1 <= args.lanes <= len(_KEYS):
        print(f"error: --lanes must be in 1..{len(_KEYS)}", file=sys.stderr)
        return 2
    if not 0 <= args.payload_bytes <= NODE_LANE_PARAMS.max_payload_bytes:
        print("error: --payload-bytes outside the node's lane parameters", file=sys.stderr)
        return 2

    chain, decodes = build_workload(
        args.blocks, args.payloads_per_block, args.payload_bytes, args.lanes
    )
    header, body = chain[0]
    validator = LanePayloadValidator(_validators(args.lanes), NODE_LANE_PARAMS, ED25519)
    reason = validator.check(header, body)
    if reason is not None:
        print(f"error: the workload's first block is invalid: {reason}", file=sys.stderr)
        return 1

    # equivalence before timing: a benchmark of a wrong path measures nothing
    expected = [ref_decode_payload(*d) for d in decodes]
    per_block = args.payloads_per_block
    blocks_of_items = [decodes[i : i + per_block] for i in range(0, count, per_block)]
    batched = [r for items in blocks_of_items for r in decode_payloads(items)]
    if [decode_payload(*d) for d in decodes] != expected or batched != expected:
        print("error: decode_payload(s) differ from the reference", file=sys.stderr)
        return 1
    ref_tracker = RefTracker(NODE_LANE_PARAMS)
    node = _node_lanes(args.lanes)
    ref_out = [ref_track(ref_tracker, h, b) for h, b in chain]
    cur_out = [node.track(h, b) for h, b in chain]

    def decided(outcomes: Sequence[tuple[BlockOutcome, int]]) -> list[Any]:
        # the same decisions; positions, pivot order and the execution-order hash changed
        # meaning since the reference (decoded payloads now run first, in keyed order)
        return [
            sorted((e.commitment_id, e.status, e.payload) for e in o.payloads) for o, _ in outcomes
        ]

    if decided(ref_out) != decided(cur_out) or any(
        o.payloads[0].status != "executed" for o, _ in cur_out
    ):
        print("error: NodeLanes.track differs from the reference", file=sys.stderr)
        return 1

    def ref_decode() -> None:
        for d in decodes:
            ref_decode_payload(*d)

    def cur_decode() -> None:
        for d in decodes:
            decode_payload(*d)

    def cur_batched() -> None:
        for items in blocks_of_items:
            decode_payloads(items)

    def ref_path() -> None:
        tracker = RefTracker(NODE_LANE_PARAMS)
        for h, b in chain:
            ref_track(tracker, h, b)

    def cur_path() -> None:
        lanes = _node_lanes(args.lanes)
        for h, b in chain:
            lanes.track(h, b)

    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {
        "payloads": count,
        "payload_bytes": args.payload_bytes,
        "kappa": decodes[0][0].kappa,
        "lane_blocks_per_block": len(decode_block_payload(body.payload).lane_blocks),
        "runs": args.runs,
        "decode_payload": side_by_side(args.runs, len(decodes), ref_decode, cur_decode),
        "decode_payloads": side_by_side(args.runs, len(decodes), ref_decode, cur_batched),
        "track": side_by_side(args.runs, count, ref_path, cur_path),
    }
    if not args.no_runtime:
        results["runtime_track_block_current_us"] = _runtime_costs(args.runs, count, chain)
    results["load_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{count} payloads of {args.payload_bytes} B (κ={results['kappa']}), "
        f"{args.payloads_per_block} per block over {results['lane_blocks_per_block']} lane "
        f"blocks; CPU µs per payload, median of {args.runs} runs"
    )
    print(f"{'stage':28s} {'reference':>10s} {'current':>10s} {'ratio':>7s}")
    labels = {
        "decode_payload": "(a) decode_payload",
        "decode_payloads": "(a') decode_payloads/block",
        "track": "(b) NodeLanes.track",
    }
    for stage, label in labels.items():
        r = results[stage]
        print(f"{label:28s} {r['reference_us']:10.1f} {r['current_us']:10.1f} {r['ratio']:7.3f}")
    if "runtime_track_block_current_us" in results:
        value = results["runtime_track_block_current_us"]
        print(f"{'(c) runtime _track_block':28s} {'':>10s} {value:10.1f}")
    print(f"load average before/after: {results['load_before_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
