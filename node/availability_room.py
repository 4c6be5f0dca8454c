"""The availability room: certified lanes in a validator process (docs/lanes.md,
"Certified lanes" and "In the node").

It drives the pure `consensus.lanes.availability.AvailabilityLayer` (the same sans-IO
state machine netsim drives, `netsim/certified_lanes.py`) and runs its commands:

- `Send` / `Broadcast` of lane messages become frames on the consensus transport. An
  availability frame starts with `AVAILABILITY_FRAME_TAG` (0x41), which never starts a
  consensus frame (`WIRE_VERSION` = 1) or a carried-lane frame (0x4C), then
  `AVAILABILITY_FRAME_VERSION`, then the msgpack lane message (`chain.LaneMessage`). The
  transport authenticates the peer index; the layer checks that a lane block comes from
  its lane (AV-FROM) and a vote from its author.
- `StoreLaneBlock` writes the block to SQLite (`lane_chain`) before the next command runs
  (so before the vote or broadcast that depends on it); `ServeFromStorage` answers a fetch
  from that table; at restart the layer is rebuilt from it (`RecoveredLanes`).
- `LanesFinalized` goes to the lane tracker room (`node/lane_tracker.py`), which runs the
  decode tracker over it and stores the results.

Events fed to the layer: `HeightReached(h)` when the core persists a block at height h
(the lanes' slot clock: a lane seals its slot-h block when its node holds block h),
`CutFinalized` for every finalized block in height order (from `CommitBlocks`, and at
start for the finalized heights the tracker had not recorded), and every availability
frame. Sender bundles go straight to the layer's `LaneProposer` (`NodeLanes.submit`: the
same admission rules; `SubmitEntry` would do the same).

The leader's payload (`build_cut`): the layer's `cut_for(height, parent's cut)` with the
tx pool's transactions (`cut.build_cut_payload`). The core's block validator in certified
mode is `cut.CutValidator` (CUT-FORM, CUT-POA, CUT-SLOT; CUT-MONOTONE as the core's
B-APP-LINK), shared with the layer as its PoA checker (one cache of verified PoAs).

Restart: R = the tracker's durable height (`lane_heights`). Every lane block finalized at
or below R was held, hence stored, when the tracker recorded R, so the tracker replays
heights 1..R from SQLite (`lanes_finalized_at`); the layer starts at the cut of block R
with the stored blocks above it, and the finalized heights R+1..F are fed to it as
`CutFinalized` events when the node starts (it fetches what it lacks).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from consensus.crypto import KeyPair, SignatureScheme
from consensus.events import Broadcast, CommittedBlock, PersistBlock, Send, Trace
from consensus.lanes.availability import (
    AvailabilityConfig,
    AvailabilityLayer,
    CutFinalized,
    HeightReached,
    LaneMessageReceived,
    LanesFinalized,
    RecoveredLanes,
    ServeFromStorage,
    StoreLaneBlock,
)
from consensus.lanes.chain import (
    MAX_FETCH_BLOCKS,
    ChainBlockChecker,
    LaneChainBlock,
    LaneFetchResponse,
    LaneTip,
    PoaScheme,
    TipRef,
    decode_lane_message,
    encode_lane_message,
    max_lane_message_bytes,
)
from consensus.lanes.cut import (
    MIN_CUT_DELAY_SLOTS,
    CutValidator,
    build_cut_payload,
    cut_tips,
    decode_cut_payload,
    finalized_order,
    risen,
    walk_down,
)
from consensus.lanes.wire import LanePayloadError
from consensus.messages import GENESIS_BLOCK_ID, BlockBody
from consensus.validators import ValidatorSet
from node.lanes_node import NodeLanes
from node.logs import log
from node.metrics import NodeMetrics
from node.router import Router
from node.storage import Storage

AVAILABILITY_FRAME_TAG = 0x41
AVAILABILITY_FRAME_VERSION = 1
MAX_REMEMBERED_CUTS = 1024  # cuts of recent blocks, for the leader's next cut
START_BATCH = 256  # finalized blocks read per query when feeding the start events
# the node's layer: slots may run further ahead than netsim's (blocks every few ms)
NODE_AVAILABILITY_CONFIG = AvailabilityConfig(max_future_slots=64, max_unfinalized_per_lane=256)

_block_decoder = msgspec.msgpack.Decoder(LaneChainBlock)
_encoder = msgspec.msgpack.Encoder()


def encode_availability_frame(message: Any) -> bytes:
    return bytes((AVAILABILITY_FRAME_TAG, AVAILABILITY_FRAME_VERSION)) + encode_lane_message(
        message
    )


def is_availability_frame(frame: bytes) -> bool:
    return len(frame) > 0 and frame[0] == AVAILABILITY_FRAME_TAG


class AvailabilityRoom:
    """One validator's certified lanes: its availability layer, storage and frames."""

    def __init__(
        self,
        *,
        lanes: NodeLanes,
        key: KeyPair,
        scheme: SignatureScheme,
        validators: ValidatorSet,
        storage: Storage,
        router: Router,
        metrics: NodeMetrics,
        logger: logging.Logger,
        config: AvailabilityConfig = NODE_AVAILABILITY_CONFIG,
        poa: PoaScheme | None = None,
        vote_key: Any = None,
    ):
        """`poa`/`vote_key`: the PoA format and this node's vote-signing key
        (`[lanes] poa_signatures`; default Ed25519 with `key`)."""
        self.lanes = lanes
        self.storage = storage
        self.router = router
        self.metrics = metrics
        self.log = logger
        self.validators = validators
        self.config = config
        self.max_message_bytes = max_lane_message_bytes(lanes.params)
        # CUT-FORM/POA/SLOT and CUT-MONOTONE; also the layer's (cached) PoA checker
        self.cut_validator = CutValidator(validators, scheme, poa=poa)
        ledger = lanes.ledger
        self.checker = ChainBlockChecker(
            validators,
            lanes.params,
            scheme,
            # AV-VERIFY: a ticket pays at least the chain's fee (balances are not checked)
            min_fee=ledger.params.fee if ledger is not None else 0,
            ticket_verifier=lanes.tickets,
        )
        self.refused: dict[str, int] = {}
        self.deliver: Callable[[LanesFinalized], None] | None = None  # the tracker room
        self.drop_tips = False  # TEST ONLY (node/faults.py): omit other lanes' new tips
        self.tips_omitted = 0
        self._cuts: OrderedDict[bytes, dict[int, TipRef]] = OrderedDict()
        self._replay: tuple[int, dict[int, TipRef]] | None = None  # (height, its cut)
        self.recovered_height = storage.lane_height()
        recovered = (
            self._recovered() if self.recovered_height or storage.lane_chain_count() else None
        )
        self.layer = AvailabilityLayer(
            index=lanes.index,
            key=key,
            scheme=scheme,
            validators=validators,
            proposer=lanes.proposer,
            checker=self.checker,
            config=config,
            recovered=recovered,
            poa_checker=self.cut_validator.check_poa,
            poa=poa,
            vote_key=vote_key,
        )
        self._fed_height = self.recovered_height  # highest height given as CutFinalized

    # ------------------------------------------------------------------ restart

    def _cut_at(self, height: int) -> dict[int, TipRef]:
        """The cut of the finalized block at `height` (0: the empty genesis cut)."""
        if height == 0:
            return {}
        rows = self.storage.finalized_blocks(height, 1)
        if not rows or rows[0][0].header.seq_num != height:
            raise LanePayloadError(f"finalized block {height} is not in storage")
        return cut_tips(decode_cut_payload(rows[0][1].payload))

    def _recovered(self) -> RecoveredLanes:
        """The layer's state at the tracker's durable height R: the cut of block R and the
        stored lane blocks above what it keeps of each lane."""
        cut = self._cut_at(self.recovered_height)
        kept = self.config.finalized_kept_per_lane
        limit = kept + self.config.max_unfinalized_per_lane + MAX_FETCH_BLOCKS
        blocks: list[tuple[LaneChainBlock, bytes, bool]] = []
        for lane in range(len(self.validators)):
            tip = cut.get(lane)
            base = (tip.height if tip is not None else 0) - kept
            for digest, voted, data in self.storage.lane_chain_blocks_above(lane, base, limit):
                blocks.append((_block_decoder.decode(data), digest, voted))
        log(
            self.log,
            "lanes_recovered",
            finalized_height=self.recovered_height,
            lane_blocks=len(blocks),
        )
        return RecoveredLanes(
            blocks=blocks, finalized_cut=cut, finalized_height=self.recovered_height
        )

    def start(self, finalized_height: int, held_height: int) -> None:
        """At node start: the slot clock (the highest block held) and the finalized heights
        above the tracker's durable height, in order (the layer fetches what it lacks)."""
        if held_height:
            self._run(self.layer.handle(HeightReached(held_height)))
        first = self._fed_height + 1
        while first <= finalized_height:
            rows = self.storage.finalized_blocks(first, START_BATCH)
            if not rows:
                break
            for tip, body in rows:
                self._feed_finalized(tip.header.seq_num, tip.header.qc.block_id, body)
            first = self._fed_height + 1

    # ------------------------------------------------------------------ consensus events

    def on_persisted(self, commands: Sequence[PersistBlock]) -> None:
        """Blocks the core stored: remember their cuts; the highest height is the slot
        clock (`HeightReached`: the lane seals every slot up to it)."""
        top = 0
        for command in commands:
            try:
                tips = cut_tips(decode_cut_payload(command.body.payload))
            except LanePayloadError:
                continue  # not a valid cut: never a parent the core builds on
            self._remember(command.block_id, tips)
            top = max(top, command.tip.header.seq_num)
        if top > self.layer.known_height:
            self._run(self.layer.handle(HeightReached(top)))

    def on_committed(self, blocks: Sequence[CommittedBlock]) -> None:
        """The lane half of `CommitBlocks`: each finalized cut, once, in height order."""
        for committed in blocks:
            header = committed.header
            if header.seq_num <= self._fed_height:
                continue  # fed at start (or before a restart of the core's commit path)
            self._feed_finalized(header.seq_num, header.qc.block_id, committed.body)

    def _feed_finalized(self, height: int, parent_id: bytes, body: BlockBody) -> None:
        if height != self._fed_height + 1:
            raise ValueError(f"finalized height {height} after {self._fed_height}")
        payload = decode_cut_payload(body.payload)  # finalized, so validated: it decodes
        self._fed_height = height
        self._run(
            self.layer.handle(CutFinalized(height, parent_id, payload.transactions, payload.tips))
        )

    # ------------------------------------------------------------------ frames

    def on_frame(self, peer: int, frame: bytes) -> str | None:
        """An availability frame from `peer` (authenticated by the transport)."""
        if len(frame) < 2 or frame[1] != AVAILABILITY_FRAME_VERSION:
            return self._refuse("bad_version")
        try:
            message = decode_lane_message(memoryview(frame)[2:], self.max_message_bytes)
        except LanePayloadError:
            return self._refuse("malformed")
        self._run(self.layer.handle(LaneMessageReceived(peer, message)))
        return None

    def _refuse(self, reason: str) -> str:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return reason

    # ------------------------------------------------------------------ commands

    def _run(self, commands: list[Any]) -> None:
        for command in commands:
            kind = type(command)
            if kind is Send:
                self._send(command.to, command.message)
            elif kind is Broadcast:
                if self.router.silent:
                    continue
                message = command.message
                self.router.transport.broadcast(encode_availability_frame(message))
                self.metrics.sent.inc(peer="all", type=type(message).__name__)
            elif kind is StoreLaneBlock:
                block = command.block
                self.storage.put_lane_chain_block(
                    command.digest,
                    block.lane,
                    block.height,
                    block.slot,
                    command.voted,
                    _encoder.encode(block),
                )
            elif kind is ServeFromStorage:
                self._serve(command)
            elif kind is LanesFinalized:
                if self.deliver is not None:
                    self.deliver(command)
            elif kind is Trace:
                self.metrics.traces.inc(name=command.name)
            else:  # pragma: no cover - the layer's command set is closed
                raise TypeError(f"unknown availability command {command!r}")

    def _send(self, peer: int, message: Any) -> None:
        if self.router.silent:
            return
        self.router.send_frame(peer, encode_availability_frame(message), type(message).__name__)

    def _serve(self, command: ServeFromStorage) -> None:
        """FETCH from storage: up to `count` blocks down from the requested digest."""
        request = command.request
        blocks: list[LaneChainBlock] = []
        digest = request.digest
        while len(blocks) < request.count:  # bounded by count <= MAX_FETCH_BLOCKS
            block = self.stored_block(digest)
            if block is None or block.lane != request.lane:
                break
            blocks.append(block)
            digest = block.parent
        self._send(command.to, LaneFetchResponse(request.lane, request.digest, tuple(blocks)))

    def stored_block(self, digest: bytes) -> LaneChainBlock | None:
        data = self.storage.get_lane_chain_block(digest)
        return None if data is None else _block_decoder.decode(data)

    # ------------------------------------------------------------------ the leader's cut

    def _remember(self, block_id: bytes, tips: dict[int, TipRef]) -> None:
        self._cuts[block_id] = tips
        self._cuts.move_to_end(block_id)
        while len(self._cuts) > MAX_REMEMBERED_CUTS:
            self._cuts.popitem(last=False)

    def parent_cut(self, parent_id: bytes) -> dict[int, TipRef] | None:
        """The cut of block `parent_id` (genesis: empty), or None if it is not held."""
        if parent_id == GENESIS_BLOCK_ID:
            return {}
        tips = self._cuts.get(parent_id)
        if tips is not None:
            return tips
        stored = self.storage.get_block(parent_id)
        if stored is None:
            return None
        try:
            tips = cut_tips(decode_cut_payload(stored[1].payload))
        except LanePayloadError:
            return None
        self._remember(parent_id, tips)
        return tips

    def build_cut(self, height: int, parent_id: bytes, transactions: Sequence[bytes]) -> bytes:
        """The leader's payload for the block at `height` on `parent_id`: transactions and
        per lane the highest certified tip above the parent's (else the parent's)."""
        parent = self.parent_cut(parent_id)
        if parent is None:  # cannot happen: the core proposes on a block it stored
            parent = {}
        tips = list(self.layer.cut_for(height, parent))
        if self.drop_tips:
            # TEST ONLY: a censoring leader keeps every other lane at its parent's tip
            kept: list[LaneTip] = []
            for entry in tips:
                before = parent.get(entry.tip.lane)
                if entry.tip.lane == self.lanes.index or entry.poa is None:
                    kept.append(entry)
                    continue
                self.tips_omitted += 1
                if before is not None:
                    kept.append(LaneTip(before))
            tips = kept
        return build_cut_payload(transactions, tips)

    # ------------------------------------------------------------------ the tracker's input

    def lanes_finalized_at(self, height: int) -> LanesFinalized:
        """What the layer delivered (or, below the recovered height, would have delivered)
        for finalized height `height`, rebuilt from storage: every lane block it finalized
        is stored. Raises LanePayloadError if storage lacks one."""
        previous = self._replay
        if previous is None or previous[0] != height - 1:
            previous = (height - 1, self._cut_at(height - 1))
        rows = self.storage.finalized_blocks(height, 1)
        if not rows or rows[0][0].header.seq_num != height:
            raise LanePayloadError(f"finalized block {height} is not in storage")
        tip, body = rows[0]
        payload = decode_cut_payload(body.payload)
        tips = cut_tips(payload)
        blocks: list[LaneChainBlock] = []
        for new, start in risen(previous[1], tips):
            segment, missing = walk_down(new, start, self.stored_block)
            if missing is not None:
                raise LanePayloadError(
                    f"lane {new.lane} block {missing.hex()[:16]} of height {height} not stored"
                )
            blocks.extend(segment)
        self._replay = (height, tips)
        return LanesFinalized(
            height, tip.header.qc.block_id, payload.transactions, tuple(finalized_order(blocks))
        )

    # ------------------------------------------------------------------ views

    def settled_slot(self, tracker_height: int) -> int:
        """A slot whose lane blocks have all been through the tracker, as far as this node
        can tell: below every unfinalized lane block it holds and at least the minimum cut
        delay below the tracker height. Senders re-send and ratchet only at or below it."""
        low = tracker_height - MIN_CUT_DELAY_SLOTS
        for view in self.layer.lanes:
            final = view.finalized_height
            for block in view.blocks.values():
                if block.height > final and block.slot <= low:
                    low = block.slot - 1
        return max(0, low)

    def stats(self) -> dict[str, Any]:
        s = self.layer.stats
        return {
            "lane_height": self.layer.own_height,
            "sealed": s.sealed,
            "votes_sent": s.votes_sent,
            "poa_formed": s.poas_formed,
            "poas_received": s.poas_received,
            "equivocations": s.equivocations,
            "fetches_sent": s.fetches_sent,
            "fetched_blocks": s.fetched_blocks,
            "lane_blocks_finalized": s.lanes_finalized,
            "entries_dropped_full": s.entries_dropped_full,
            "dropped": dict(s.dropped),
            "frames_refused": dict(self.refused),
            "tips_omitted": self.tips_omitted,
            "finalized_cut": {
                str(lane): {"height": t.height, "slot": t.slot}
                for lane, t in sorted(self.layer.finalized_cut.items())
            },
        }
