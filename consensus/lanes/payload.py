"""Block payloads carrying lane blocks in full, and the consensus BlockValidator for them.

Design choice: lane blocks travel *in full* inside the consensus block (not as
availability certificates). Every validator then checks every symbol, proof and
signature before voting, availability is implied by the block itself (no separate DA
layer, no second vote type in the core), and a finalized block is by itself enough for
every node's decode tracker. The cost is leader bandwidth: the leader relays all lane
blocks of the slot, which is fine at this project's scale (lane blocks are small next to
the 8 MiB body bound) and keeps the core unchanged (`BlockBody.payload` stays opaque).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from consensus.codec import body_id
from consensus.crypto import SignatureScheme
from consensus.lanes.params import LaneParams
from consensus.lanes.proposer import (
    RejectReason,
    check_entry_crypto,
    check_entry_static,
    entry_key,
)
from consensus.lanes.tickets import TicketVerifier, lane_block_signature_ok
from consensus.lanes.wire import (
    BlockPayload,
    LaneBlock,
    LanePayloadError,
    decode_block_payload,
    encode,
    encode_block_payload,
)
from consensus.messages import BlockBody, BlockHeader
from consensus.validators import ValidatorSet


def build_block_payload(transactions: Sequence[bytes], lane_blocks: Iterable[LaneBlock]) -> bytes:
    """Canonical payload bytes: empty lane blocks dropped, lane blocks sorted by lane."""
    blocks = sorted((b for b in lane_blocks if b.entries), key=lambda b: b.lane)
    for first, second in itertools.pairwise(blocks):
        if first.lane == second.lane:
            raise LanePayloadError(f"two lane blocks for lane {first.lane}")
    return encode_block_payload(BlockPayload(tuple(transactions), tuple(blocks)))


MAX_DECODED_BODIES = 32  # validated bodies whose lane blocks wait for finality


class LanePayloadValidator:
    """`BlockValidator` for lane payloads: pure, deterministic, no chain state.

    Inclusion rule for duplicates: a bundle appears at most once per lane block (entries
    are strictly sorted), but the same bundle in *two lane blocks* of one block, or in an
    earlier block, is valid: a sender can give one bundle index to several lanes, each
    lane checks only its own block, and rejecting the block would let one sender halt the
    chain. The decode tracker counts the first copy in pivot order and ignores the rest
    (their tickets are redeemed and paid for).
    """

    def __init__(
        self,
        validators: ValidatorSet,
        params: LaneParams,
        scheme: SignatureScheme,
        max_cached_lane_blocks: int = 4096,
        ticket_verifier: TicketVerifier | None = None,
    ):
        self.validators = validators
        self.params = params
        self.scheme = scheme
        self.tickets = ticket_verifier or TicketVerifier(scheme)
        self.max_cached = max_cached_lane_blocks
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        # Lane blocks of bodies that passed `check`, by body id, until `decoded` takes them:
        # a finalized body is then decoded once per node, not again by the decode tracker.
        self._decoded: OrderedDict[bytes, BlockPayload] = OrderedDict()
        self.decodes = 0  # payload decodes performed (by `check` and `decoded`)
        self.decode_hits = 0  # `decoded` answered from the cache

    def validate(self, header: BlockHeader, body: BlockBody) -> bool:
        """The core's check of a proposed body; a valid body's lane blocks are kept for
        `decoded` (bodies checked for other reasons, e.g. a relayed lane block inside a
        stand-in body, never reach the decode tracker and are not kept)."""
        return self.check(header, body, keep=True) is None

    def check(self, header: BlockHeader, body: BlockBody, keep: bool = False) -> str | None:
        """None if valid, else the rule broken (one line)."""
        # rule: the header commits to this body
        bid = body_id(body)
        if header.body_id != bid:
            return "body_id does not match the body"
        try:
            self.decodes += 1
            payload = decode_block_payload(body.payload)
        except LanePayloadError as exc:
            return f"malformed payload: {exc}"
        reason = self._check_lane_blocks(header, payload)
        if keep and reason is None:  # only valid bodies can be finalized: only they are kept
            self._decoded[bid] = BlockPayload((), payload.lane_blocks)  # txs not kept
            self._decoded.move_to_end(bid)
            while len(self._decoded) > MAX_DECODED_BODIES:
                self._decoded.popitem(last=False)
        return reason

    def decoded(self, body: BlockBody) -> BlockPayload:
        """The lane blocks of `body` (its transactions are not included): from the cache
        when `check` decoded this very body (keyed by the id of its bytes, so another body
        never gets them), else decoded now. Each cached body is handed out once.
        Raises LanePayloadError for bytes that do not decode."""
        cached = self._decoded.pop(body_id(body), None)
        if cached is not None:
            self.decode_hits += 1
            return cached
        self.decodes += 1
        return BlockPayload((), decode_block_payload(body.payload).lane_blocks)

    def _check_lane_blocks(self, header: BlockHeader, payload: BlockPayload) -> str | None:
        previous_lane = -1
        for block in payload.lane_blocks:
            # rule: lane blocks sorted strictly by lane (one per lane, canonical order)
            if block.lane <= previous_lane:
                return f"lane block {block.lane} out of order or duplicated"
            previous_lane = block.lane
            reason = self._check_lane_block(header.seq_num, block)
            if reason is not None:
                return f"lane {block.lane}: {reason}"
        return None

    def _check_lane_block(self, slot: int, block: LaneBlock) -> str | None:
        if not self.validators.contains(block.lane):
            return "unknown lane"
        if block.slot != slot:  # rule: a lane block belongs to the height it is proposed at
            return f"{RejectReason.WRONG_SLOT.value} (lane block slot {block.slot})"
        if not 1 <= len(block.entries) <= self.params.max_entries_per_lane_block:
            return f"{len(block.entries)} entries outside [1, max_entries_per_lane_block]"
        previous: tuple[bytes, int] | None = None
        for entry in block.entries:
            key = entry_key(entry)
            # rule: canonical entry order (so a bundle appears once per lane block)
            if previous is not None and key <= previous:
                return "entries not strictly sorted by (commitment, bundle)"
            previous = key
            reason = check_entry_static(self.params, entry, block.lane)
            if reason is None and entry.ticket.ticket.slot != block.slot:
                reason = RejectReason.WRONG_SLOT  # rule: redeemed only in the addressed slot
            if reason is not None:
                return reason.value
        digest = _lane_block_digest(block)
        if digest in self._verified:
            self._verified.move_to_end(digest)
            return None
        for entry in block.entries:
            crypto = check_entry_crypto(self.tickets, entry)
            if crypto is not None:
                return crypto.value
        if not lane_block_signature_ok(self.scheme, self.validators.public_key(block.lane), block):
            return "bad lane block signature"
        self._remember(digest)
        return None

    def trust(self, block: LaneBlock) -> None:
        """Skip the signature and proof checks of `block` from now on: for a lane block
        the caller sealed itself from entries it verified on admission. The static and
        ordering rules still apply to it in every proposal."""
        self._remember(_lane_block_digest(block))

    def _remember(self, digest: bytes) -> None:
        self._verified[digest] = None
        self._verified.move_to_end(digest)
        while len(self._verified) > self.max_cached:
            self._verified.popitem(last=False)


def _lane_block_digest(block: LaneBlock) -> bytes:
    return hashlib.sha256(encode(block)).digest()
