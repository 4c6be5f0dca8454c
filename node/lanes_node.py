"""Sedna lanes inside a validator process: admission, lane-block relay, decode tracking.

Every validator is lane `index` (lane i = validator i). Three duties, all synchronous and
driven by the runtime (`node/runtime.py`) on its event loop. Duty 2 is carried mode's
(`[lanes] dissemination = "carried"`); in certified mode (the default) the lane's
proposer is driven by the availability layer instead (`node/availability_room.py`:
lane chains, availability votes, PoAs, tip cuts) and `track_lanes` replaces `track`.

1. **Admission** (`submit`): bundles + signed tickets arrive over RPC (`POST /bundle`) and
   go through the lanes' `LaneProposer` (every rejection counted by reason).
2. **Lane blocks reach the leader** (`on_vote`, `on_lane_frame`, `lane_blocks_for`). A
   validator that votes for the block at height s in round r seals its lane block for
   slot s + SEAL_AHEAD_SLOTS and sends it (if it has entries) to leader(r + 2), the
   validator that proposes that height on the happy path, *before* the vote leaves (same
   connection, so it arrives first), and a backup copy to leader(r + 3), who proposes that
   height if round r + 2 times out. The predicted leader verifies its copy at once
   (`LanePayloadValidator` rules, stand-in header at that slot); a backup copy is held
   unverified and verified only when used. When the core asks for the payload of height
   h, the leader seals its own lane for h and includes every valid lane block it holds
   for h, sorted by lane and within the body's byte budget. Sealing two slots ahead (not
   one) gives the lane block a whole round to arrive, so the slowest voter's lane is not
   cut off when the leader proposes on the first quorum of votes. If height h ends up
   proposed by yet another leader (two timeouts), its lane blocks are not included: their
   tickets are not redeemed and senders re-send fresh bundles. Lane blocks are carried in
   full (docs/lanes.md).
3. **Decode tracking** (`track`): the lanes' `DecodeTracker`, fed every finalized block in
   height order, decides payloads (executed at a deterministic position / rejected /
   expired) and chains the execution-order hash; the runtime stores the results. With a
   `[ledger]` in the config the tracker keeps the lanes' ledger (consensus/lanes/ledger.py:
   fees, PIVOT-K bounties, balances from a genesis allocation) and admission checks the
   sender's funds against it (`insufficient_balance`, `fee_too_low`).

Lane frames share the consensus transport. A lane frame starts with `LANE_FRAME_TAG`
(0x4C), which never starts a consensus frame (those start with `WIRE_VERSION` = 1), then
`LANE_FRAME_VERSION`, a role byte (primary 0 / backup 1), then the msgpack `LaneBlock`. A lane block is accepted only from the
validator that owns the lane (the transport authenticates the peer index).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from itertools import pairwise

import msgspec

from consensus.codec import body_id
from consensus.crypto import KeyPair, SignatureScheme
from consensus.lanes.availability import LanesFinalized
from consensus.lanes.ledger import Ledger as LanesLedger
from consensus.lanes.params import LaneParams
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.proposer import LaneProposer, RejectReason, entry_key, max_entry_bytes
from consensus.lanes.tickets import TicketVerifier
from consensus.lanes.tracker import BlockOutcome, DecodeTracker
from consensus.lanes.wire import (
    EMPTY_PAYLOAD,
    BlockPayload,
    LaneBlock,
    LanePayloadError,
    decode_block_payload,
    decode_lane_entry,
    encode,
)
from consensus.messages import GENESIS_QC, BlockBody, BlockHeader
from consensus.validators import LeaderSchedule, ValidatorSet
from node.mempool import PlainPayloadValidator

# Chain-wide lane parameters of the node and the testnet. Every node must use the same
# values; they are constants here (no config section yet). With T = 128 B symbols and
# s_b = 4, a 512 B payload needs κ = 2 bundles of ~0.8 KiB on the wire. The committed
# stream is 4·κ + 4 bundles: every node re-encodes all of it to check a decoded payload,
# so a small cap keeps decoding cheap (the node's sender re-sends only on failures).
NODE_LANE_PARAMS = LaneParams(
    codec_id="raptorq",
    symbol_size_bytes=128,
    symbols_per_bundle=4,
    decode_margin_symbols=2,
    cap_factor=4,
    cap_extra_bundles=4,
    max_payload_bytes=64 * 1024,
    max_entries_per_lane_block=256,
    # a commitment's tickets span at most 65,536 slots (~6.5 min at ~6 ms per block):
    # how long trackers remember a decided id (so it never executes twice)
    max_lifetime_slots=65_536,
)
LANE_FRAME_TAG = 0x4C
LANE_FRAME_VERSION = 1
ROLE_PRIMARY = 0  # sent to the predicted proposer of the slot: verified on arrival
ROLE_BACKUP = 1  # sent to the proposer after one timeout: verified only if used
ROLES = (ROLE_PRIMARY, ROLE_BACKUP)
SEAL_AHEAD_SLOTS = 2  # a vote at height s seals slot s + 2 for leader(round + 2)
MAX_FUTURE_SLOTS = 48  # tickets accepted up to this many slots past the lane's open slot
MAX_HELD_SLOTS = 32  # lane blocks from peers are held for slots in (finalized, finalized + 32]
MAX_REMEMBERED_SENDS = 1024
MAX_BUILT_BODIES = 256
MAX_ACCEPTED_MEMORY = 65_536
MAX_VERIFIED_TICKET_BATCHES = 65_536
PAYLOAD_BYTES_RESERVE = 64 * 1024  # headroom left in the body for msgpack framing

_lane_block_decoder = msgspec.msgpack.Decoder(LaneBlock)


def encode_lane_frame(block: LaneBlock, role: int = 0) -> bytes:
    return bytes((LANE_FRAME_TAG, LANE_FRAME_VERSION, role)) + encode(block)


def is_lane_frame(frame: bytes) -> bool:
    return len(frame) > 0 and frame[0] == LANE_FRAME_TAG


def stand_in_header(slot: int, author: int, body: BlockBody) -> BlockHeader:
    """A header at height `slot` committing to `body` (the lane rules read only those)."""
    return BlockHeader(
        block_round=slot,
        epoch=1,
        qc=GENESIS_QC,
        author=author,
        seq_num=slot,
        timestamp_ns=0,
        body_id=body_id(body),
    )


@dataclass
class LaneCounters:
    bundles_accepted: int = 0
    lane_blocks_sealed: int = 0  # non-empty lane blocks this lane sealed
    lane_blocks_relayed: int = 0  # sent to a predicted leader
    lane_blocks_received: int = 0  # verified and held (from peers)
    lane_blocks_proposed: int = 0  # included in this node's proposals (own and peers')
    lane_blocks_omitted: int = 0  # held but left out of a proposal by the byte budget
    backup_lane_blocks_used: int = 0  # backup copies proposed (after a timeout)
    entries_proposed: int = 0


class NodeLanes:
    """One validator's lane, its relay of lane blocks, and its decode tracker."""

    def __init__(
        self,
        *,
        index: int,
        key: KeyPair,
        scheme: SignatureScheme,
        validators: ValidatorSet,
        schedule: LeaderSchedule,
        params: LaneParams = NODE_LANE_PARAMS,
        first_open_slot: int = 1,
        certified: bool = False,
        ledger: LanesLedger | None = None,
    ):
        self.index = index
        # dissemination: certified lanes (availability layer, cuts) or carried lane blocks
        self.certified = certified
        self.drop_peer_blocks = False  # TEST ONLY (node/faults.py): a censoring leader
        self.params = params
        self.validators = validators
        self.schedule = schedule
        # One cache of verified ticket-batch signatures for admission and block checks:
        # a sender's batch signature is verified once per node, not once per bundle.
        self.tickets = TicketVerifier(scheme, max_cached=MAX_VERIFIED_TICKET_BATCHES)
        # the ledger lives in the tracker (driven by the finalized chain only); admission
        # reads it at the tracker's height (a best-effort pre-check: the tracker decides)
        self.tracker = DecodeTracker(params, ledger=ledger, certified=certified)
        self.proposer = LaneProposer(
            lane=index,
            key=key,
            scheme=scheme,
            params=params,
            first_open_slot=max(1, first_open_slot),
            max_future_slots=MAX_FUTURE_SLOTS,
            ticket_verifier=self.tickets,
            funds=self.tracker.funds(),
        )
        self.validator = LanePayloadValidator(
            validators, params, scheme, ticket_verifier=self.tickets
        )
        self.counters = LaneCounters()
        self.refused: Counter[str] = Counter()  # lane frames refused, by reason
        self.finalized_height = 0
        # slot -> lane -> (lane block, verified yet); backup copies wait unverified
        self._held: dict[int, dict[int, tuple[LaneBlock, bool]]] = {}
        self._sent: OrderedDict[tuple[int, int], None] = OrderedDict()  # (slot, peer)
        self._built: OrderedDict[tuple[int, bytes], None] = OrderedDict()  # (slot, body id)
        self._accepted: OrderedDict[bytes, int] = OrderedDict()  # cid -> bundles admitted

    # ------------------------------------------------------------------ admission

    @property
    def max_entry_bytes(self) -> int:
        return max_entry_bytes(self.params)

    @property
    def open_slot(self) -> int:
        return self.proposer.open_slot

    def count_rejection(self, reason: RejectReason) -> None:
        """Count a rejection decided before the proposer saw the bytes (e.g. an HTTP limit)."""
        self.proposer.rejected[reason.value] += 1

    def submit(self, records: list[bytes]) -> list[str | None]:
        """Admit encoded lane entries; per record None (accepted) or the rejection reason."""
        results: list[str | None] = []
        limit = self.max_entry_bytes
        for data in records:
            # Rule: a submission is at most max_entry_bytes (before any decoding).
            if len(data) > limit:
                self.count_rejection(RejectReason.OVERSIZED)
                results.append(RejectReason.OVERSIZED.value)
                continue
            try:
                entry = decode_lane_entry(data, limit)
            except LanePayloadError:
                self.count_rejection(RejectReason.MALFORMED)
                results.append(RejectReason.MALFORMED.value)
                continue
            reason = self.proposer.submit(entry)
            if reason is not None:
                results.append(reason.value)
                continue
            self.counters.bundles_accepted += 1
            cid = entry_key(entry)[0]
            self._accepted[cid] = self._accepted.get(cid, 0) + 1
            self._accepted.move_to_end(cid)
            while len(self._accepted) > MAX_ACCEPTED_MEMORY:
                self._accepted.popitem(last=False)
            results.append(None)
        return results

    def accepted_bundles(self, cid: bytes) -> int:
        """Bundles of this payload admitted by this lane (recent payloads only)."""
        return self._accepted.get(cid, 0)

    # ------------------------------------------------------------------ sealing and relay

    def _seal(self, slot: int) -> LaneBlock | None:
        fresh = slot >= self.proposer.open_slot  # seal() builds a new block only then
        try:
            block = self.proposer.seal(slot)
        except ValueError:  # the slot was closed (and forgotten) before: nothing to seal
            return None
        if fresh and block.entries:
            self.counters.lane_blocks_sealed += 1
            # rule: own lane block = entries verified on admission, signed here
            self.validator.trust(block)
        return block

    def on_vote(self, voted_seq: int, vote_round: int) -> list[tuple[int, bytes]]:
        """This node votes for the block at `voted_seq` in `vote_round`: seal slot
        voted_seq + 2 and return the (leader, frame) pairs to send before the vote: the
        predicted proposer leader(round + 2) and, as a backup, leader(round + 3), who
        proposes that height if round + 2 times out. Empty lane blocks are not sent."""
        slot = voted_seq + SEAL_AHEAD_SLOTS
        if self.certified or slot <= self.finalized_height:  # certified: the layer seals
            return []
        block = self._seal(slot)
        if block is None or not block.entries:
            return []
        relays: list[tuple[int, bytes]] = []
        primary = self.schedule.leader(vote_round + SEAL_AHEAD_SLOTS)
        backup = self.schedule.leader(vote_round + SEAL_AHEAD_SLOTS + 1)
        for role, peer in ((ROLE_PRIMARY, primary), (ROLE_BACKUP, backup)):
            if peer == self.index or (slot, peer) in self._sent:  # rule: one relay per pair
                continue
            self._sent[(slot, peer)] = None
            relays.append((peer, encode_lane_frame(block, role)))
        while len(self._sent) > MAX_REMEMBERED_SENDS:
            self._sent.popitem(last=False)
        self.counters.lane_blocks_relayed += len(relays)
        return relays

    def on_lane_frame(self, peer: int, frame: bytes) -> str | None:
        """A lane block relayed by `peer`: check and hold it. Returns the refusal reason.

        A primary copy is verified at once (this node is expected to propose that slot);
        a backup copy is held unverified and verified only if this node is asked to
        propose the slot (`lane_blocks_for`), which happens only after a timeout.
        """
        reason = self._check_frame(peer, frame)
        if reason is not None:
            self.refused[reason] += 1
        return reason

    def _check_frame(self, peer: int, frame: bytes) -> str | None:
        if len(frame) < 3 or frame[1] != LANE_FRAME_VERSION or frame[2] not in ROLES:
            return "bad_version"
        try:
            block = _lane_block_decoder.decode(memoryview(frame)[3:])
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
            return "malformed"
        except RecursionError:  # pragma: no cover - msgspec bounds nesting itself
            return "malformed"
        if block.lane != peer:  # rule: a validator relays only its own lane's block
            return "not_own_lane"
        # Rule: held slots are bounded to (finalized, finalized + MAX_HELD_SLOTS].
        if not self.finalized_height < block.slot <= self.finalized_height + MAX_HELD_SLOTS:
            return "slot_out_of_window"
        if peer in self._held.get(block.slot, {}):  # rule: one lane block per (lane, slot)
            return "duplicate"
        if not block.entries:
            return "empty"
        verified = frame[2] == ROLE_PRIMARY
        if verified:
            reason = self._verify(block)
            if reason is not None:
                return reason
        self._held.setdefault(block.slot, {})[peer] = (block, verified)
        self.counters.lane_blocks_received += 1
        return None

    def _verify(self, block: LaneBlock) -> str | None:
        """Every lane rule (`LanePayloadValidator`), at a stand-in header at its slot."""
        try:
            body = BlockBody(build_block_payload((), (block,)))
        except LanePayloadError:
            return "oversized"
        if self.validator.check(stand_in_header(block.slot, self.index, body), body) is not None:
            return "invalid"
        return None

    def lane_blocks_for(self, slot: int, budget_bytes: int) -> list[LaneBlock]:
        """Lane blocks for a proposal at height `slot`: own lane sealed now, plus the held
        ones (backup copies verified now), by lane, while they fit `budget_bytes` (the
        rest are omitted and counted)."""
        blocks: dict[int, LaneBlock] = {}
        for lane, (block, verified) in self._held.get(slot, {}).items():
            if self.drop_peer_blocks:
                self.counters.lane_blocks_omitted += 1
                continue
            if not verified:
                reason = self._verify(block)
                if reason is not None:
                    self.refused[reason] += 1
                    continue
                self.counters.backup_lane_blocks_used += 1
            blocks[lane] = block
        own = self._seal(slot)
        if own is not None and own.entries:
            blocks[self.index] = own
        chosen: list[LaneBlock] = []
        used = 0
        for lane in sorted(blocks):
            size = len(encode(blocks[lane])) + 16
            if used + size > budget_bytes:
                self.counters.lane_blocks_omitted += 1
                continue
            used += size
            chosen.append(blocks[lane])
        self.counters.lane_blocks_proposed += len(chosen)
        self.counters.entries_proposed += sum(len(b.entries) for b in chosen)
        return chosen

    def note_built(self, slot: int, body: BlockBody) -> None:
        """Remember a body this node assembled for height `slot` from verified parts."""
        self._built[(slot, body_id(body))] = None
        while len(self._built) > MAX_BUILT_BODIES:
            self._built.popitem(last=False)

    def built_here(self, slot: int, body: BlockBody) -> bool:
        return (slot, body_id(body)) in self._built

    def on_finalized(self, height: int) -> None:
        """Height `height` is final: close the lane's slot, drop relay state up to it."""
        if height <= self.finalized_height:
            return
        self.finalized_height = height
        if self.certified:  # the availability layer seals and releases the lane's slots
            return
        if self.proposer.open_slot <= height:
            self._seal(height)  # closes the slot: late tickets for it are expired_ticket
        self.proposer.on_finalized(height)
        for slot in [s for s in self._held if s <= height]:
            del self._held[slot]

    def held_slots(self) -> dict[int, list[int]]:
        return {slot: sorted(blocks) for slot, blocks in sorted(self._held.items())}

    def held_verified(self, slot: int) -> dict[int, bool]:
        return {lane: verified for lane, (_, verified) in self._held.get(slot, {}).items()}

    # ------------------------------------------------------------------ decode tracking

    @property
    def tracker_height(self) -> int:
        return self.tracker.height or 0

    @property
    def ledger(self) -> LanesLedger | None:
        return self.tracker.ledger

    def track(self, header: BlockHeader, body: BlockBody) -> tuple[BlockOutcome, int]:
        """Feed the next finalized block (consecutive heights) to the decode tracker.

        Returns (outcome, position offset of its executed payloads in the block). The
        offset is 0: payloads that become decodable in a block execute *before* the
        block's plain transactions (docs/lanes.md, "Ordering guarantee"), so an executed
        payload's position in the block is its outcome position. The tracker sees the
        block's lane blocks only: plain txs are ordered by the finalized chain itself, and
        hashing every one of them again (two SHA-256 per tx) was ~18 % of a node's CPU
        under plain load, so the node's execution-order hash chains the Sedna payload
        events only.
        """
        # Finalized, so validated: it decodes. Decoded once per node: the validator hands
        # over the lane blocks it decoded when it checked this body (by body id).
        blocks = self.validator.decoded(body).lane_blocks
        # A validated body's lane blocks are non-empty and strictly by lane, which is how
        # `build_block_payload` frames them: the tracker gets them as decoded (no second
        # encode and decode). Anything else goes through that framing, as it always did.
        if all(b.entries for b in blocks) and all(a.lane < b.lane for a, b in pairwise(blocks)):
            lane_payload = BlockPayload((), blocks) if blocks else EMPTY_PAYLOAD
        else:
            lane_payload = decode_block_payload(build_block_payload((), blocks))
        outcome = self.tracker.on_finalized_payload(
            header.seq_num, lane_payload, header.qc.block_id
        )
        return outcome, 0

    def track_lanes(self, command: LanesFinalized) -> tuple[BlockOutcome, int]:
        """Certified lanes: the lane blocks a finalized cut finalized (`LanesFinalized`,
        in `cut.finalized_order`) through the decode tracker. As in `track`, the plain
        transactions are left out of the hash and payloads run first (offset 0)."""
        outcome = self.tracker.on_finalized_lanes(
            command.height, (), command.blocks, command.parent_id
        )
        return outcome, 0

    def payload_status(self, cid: bytes) -> tuple[str, list[int]]:
        """(tracker status, indices of the bundles finalized so far while pending)."""
        return self.tracker.status(cid), sorted(self.tracker.finalized_bundles(cid))


class NodeBlockValidator:
    """The core's `BlockValidator`: plain-tx limits and every lane rule (pure), except for
    a body this node assembled itself at that height from parts it had already verified
    (own lane's admitted bundles, peers' lane blocks checked on receipt, its mempool)."""

    def __init__(self, plain: PlainPayloadValidator, lanes: NodeLanes):
        self.plain = plain
        self.lanes = lanes
        # certified lanes: CUT-MONOTONE, the core's B-APP-LINK (reads the parent's cut)
        link = getattr(plain.lanes, "validate_link", None)
        if link is not None:
            self.validate_link = link

    def validate(self, header: BlockHeader, body: BlockBody) -> bool:
        # Rule: a body built here for this height was verified part by part when built.
        if self.lanes.built_here(header.seq_num, body):
            return True
        return self.plain.validate(header, body)
