"""Certified lanes inside netsim: what each node runs besides its core (docs/netsim.md,
"Certified lanes").

`netsim.lanes.LaneSim` builds one `CertifiedNode` per life of a node in
`dissemination = "certified"` mode: the node's `AvailabilityLayer` (the same sans-IO code
the node runs), its durable lane-block store (`LaneDisk`, which survives crashes like the
engine's `Disk`), and the consensus bodies it needs to build and finalize cuts. The
layer's commands are executed here: `Send`/`Broadcast` go back to the engine (simulated
messages with latency, loss, partitions and bandwidth), `StoreLaneBlock` writes the
`LaneDisk`, `ServeFromStorage` answers a fetch from it, `LanesFinalized` feeds the
tracker (through `LaneSim`).

Simulation shortcuts that change CPU cost, not outcomes: `DigestMemo` and `DecodeMemo`
cache pure functions (a lane block's digest, a payload's decode from a bundle set)
across the simulated nodes, which receive the very same Python objects; the chain block
checker and the cut validator (pure, cached by digest) are shared too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from consensus.lanes.availability import AvailabilityLayer, CutFinalized
from consensus.lanes.chain import LaneChainBlock, LaneFetchRequest, LaneFetchResponse, TipRef
from consensus.lanes.cut import cut_tips, decode_cut_payload, risen, walk_down
from consensus.lanes.encoding import DecodeItem, DecodeResult, decode_payloads
from consensus.lanes.wire import commitment_id
from consensus.messages import GENESIS_BLOCK_ID, BlockBody

MAX_MEMO_ENTRIES = 65_536
MAX_BODIES = 512  # consensus bodies a node keeps to build its next cuts


class DigestMemo:
    """`chain_block_digest`, cached by object identity (a strong reference is kept, so an
    id cannot be reused while its entry lives). Pure: the same block, the same digest."""

    def __init__(self, max_entries: int = MAX_MEMO_ENTRIES):
        from consensus.lanes.chain import chain_block_digest

        self._digest = chain_block_digest
        self._max = max_entries
        self._cache: OrderedDict[int, tuple[LaneChainBlock, bytes]] = OrderedDict()

    def __call__(self, block: LaneChainBlock) -> bytes:
        key = id(block)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is block:
            return hit[1]
        digest = self._digest(block)
        self._cache[key] = (block, digest)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return digest


class DecodeMemo:
    """`decode_payloads`, cached by (commitment id, bundle indices): a bundle's symbols
    are bound to its index by the commitment's Merkle root, so the key fixes the result."""

    def __init__(self, max_entries: int = MAX_MEMO_ENTRIES):
        self._max = max_entries
        self._cache: OrderedDict[tuple[bytes, tuple[int, ...]], DecodeResult] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __call__(self, items: Sequence[DecodeItem]) -> list[DecodeResult]:
        keys = [(commitment_id(c), tuple(sorted(bundles))) for _, c, bundles in items]
        results: list[DecodeResult | None] = [self._cache.get(k) for k in keys]
        missing = [n for n, r in enumerate(results) if r is None]
        self.hits += len(items) - len(missing)
        self.misses += len(missing)
        if missing:
            for n, result in zip(
                missing, decode_payloads([items[n] for n in missing]), strict=True
            ):
                results[n] = result
                self._cache[keys[n]] = result
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return [r for r in results if r is not None]


@dataclass
class LaneDisk:
    """A node's durable lane blocks: exactly what its `StoreLaneBlock` commands wrote."""

    blocks: dict[bytes, tuple[LaneChainBlock, bool]] = field(default_factory=dict)

    def store(self, block: LaneChainBlock, digest: bytes, voted: bool) -> None:
        held = self.blocks.get(digest)
        self.blocks[digest] = (block, voted or (held is not None and held[1]))

    def get(self, digest: bytes) -> LaneChainBlock | None:
        held = self.blocks.get(digest)
        return held[0] if held is not None else None

    def serve(self, request: LaneFetchRequest) -> LaneFetchResponse:
        """Up to `count` blocks down from the requested digest (empty if not held)."""
        blocks: list[LaneChainBlock] = []
        digest = request.digest
        while len(blocks) < request.count:  # bounded by the request's count
            block = self.get(digest)
            if block is None or block.lane != request.lane:
                break
            blocks.append(block)
            digest = block.parent
        return LaneFetchResponse(request.lane, request.digest, tuple(blocks))


@dataclass
class CertifiedNode:
    """One life of one node's certified-lane state."""

    layer: AvailabilityLayer
    disk: LaneDisk
    bodies: OrderedDict[bytes, BlockBody] = field(default_factory=OrderedDict)
    # finalized heights (from the core's disk) whose lane data this life must fetch
    start_events: list[CutFinalized] = field(default_factory=list)
    started: bool = False

    def remember(self, block_id: bytes, body: BlockBody) -> None:
        self.bodies[block_id] = body
        self.bodies.move_to_end(block_id)
        while len(self.bodies) > MAX_BODIES:
            self.bodies.popitem(last=False)

    def parent_cut(self, parent_id: bytes, disk_blocks: dict) -> dict[int, TipRef] | None:
        """The cut of block `parent_id` (genesis: empty), or None if this node lacks it."""
        if parent_id == GENESIS_BLOCK_ID:
            return {}
        body = self.bodies.get(parent_id)
        if body is None:
            stored = disk_blocks.get(parent_id)
            if stored is None:
                return None
            body = stored[1]
        return cut_tips(decode_cut_payload(body.payload))


def replay_segments(
    previous: dict[int, TipRef], tips: dict[int, TipRef], disk: LaneDisk
) -> list[LaneChainBlock] | None:
    """The lane blocks a finalized cut finalized, from the node's own disk (None: some
    block is not on it, so this life must fetch it)."""
    blocks: list[LaneChainBlock] = []
    for tip, start in risen(previous, tips):
        segment, missing = walk_down(tip, start, disk.get)
        if missing is not None:
            return None
        blocks.extend(segment)
    return blocks
