"""Lane wire types: commitments, bundles, tickets, lane blocks and the block payload.

All are frozen positional msgspec structs (canonical bytes, hashable and signable), with
size bounds enforced at decode time. Untrusted bytes go through `decode_lane_entry` or
`decode_block_payload`, which raise `LanePayloadError` and nothing else.

Block payload frame: one version byte (`LANE_PAYLOAD_VERSION`) then msgpack of
`BlockPayload`. The empty byte string is the empty payload (no transactions, no lanes),
so a core that proposes `b""` needs no lane awareness.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from consensus.lanes.merkle import MAX_DEPTH
from consensus.lanes.params import MAX_SYMBOL_BYTES, MAX_SYMBOLS_PER_BUNDLE
from consensus.messages import MAX_PAYLOAD_BYTES, MAX_VALIDATORS

LANE_PAYLOAD_VERSION = 1
CUT_PAYLOAD_VERSION = 2  # certified lanes: consensus.lanes.cut.CutPayload
MAX_TRANSACTIONS = 65_536
MAX_LANE_BLOCK_ENTRIES = 4096
MAX_STREAM_INDEX = 2**24
MAX_TICKET_BATCH_DEPTH = 12  # one sender signature covers at most 2**12 tickets

U64 = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Digest = Annotated[bytes, Meta(min_length=32, max_length=32)]
PublicKey = Annotated[bytes, Meta(min_length=32, max_length=32)]
Signature = Annotated[bytes, Meta(min_length=64, max_length=64)]
LaneIndex = Annotated[int, Meta(ge=0, lt=MAX_VALIDATORS)]
StreamIndex = Annotated[int, Meta(ge=0, lt=MAX_STREAM_INDEX)]
Symbol = Annotated[bytes, Meta(max_length=MAX_SYMBOL_BYTES)]


class LanePayloadError(ValueError):
    """Untrusted lane bytes were not a valid lane entry or block payload."""


class _LaneData(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Immutable, positional (compact, canonical) encoding."""


class PayloadCommitment(_LaneData):
    """Binds codec, sender, length, layout, the Merkle root of the capped repair stream and
    the payload's last slot.

    `expiry_slot`: the last slot in which a ticket of this payload can be redeemed, at
    most `LaneParams.max_lifetime_slots` after the slot of any of its tickets. A decided
    payload is remembered until that slot, after which no bundle of it can be finalized
    again: that is how nothing executes twice with bounded memory (docs/lanes.md).
    """

    codec_id: Literal["raptorq", "rs"]
    sender: PublicKey
    payload_len: Annotated[int, Meta(ge=0, le=MAX_PAYLOAD_BYTES)]
    symbol_size_bytes: Annotated[int, Meta(ge=1, le=MAX_SYMBOL_BYTES)]
    symbols_per_bundle: Annotated[int, Meta(ge=1, le=MAX_SYMBOLS_PER_BUNDLE)]
    decode_margin_symbols: Annotated[int, Meta(ge=0, lt=MAX_SYMBOLS_PER_BUNDLE)]
    kappa: Annotated[int, Meta(ge=1, lt=MAX_STREAM_INDEX)]
    source_symbols: Annotated[int, Meta(ge=1, lt=MAX_STREAM_INDEX)]
    cap_bundles: Annotated[int, Meta(ge=1, lt=MAX_STREAM_INDEX)]
    merkle_root: Digest
    expiry_slot: U64


class Bundle(_LaneData):
    """Repair symbols [index·s_b, (index+1)·s_b) of one payload, with their Merkle path."""

    commitment: PayloadCommitment
    bundle_index: StreamIndex
    symbols: Annotated[tuple[Symbol, ...], Meta(max_length=MAX_SYMBOLS_PER_BUNDLE)]
    proof: Annotated[tuple[Digest, ...], Meta(max_length=MAX_DEPTH)]


class Ticket(_LaneData):
    """The sender's order to lane `lane`: include bundle `bundle_index` in slot `slot`.

    `expiry_slot` must equal `slot`: the ticket expires at the end of its addressed slot.
    A slot is a consensus height (`BlockHeader.seq_num`).
    """

    commitment_id: Digest
    lane: LaneIndex
    slot: U64
    bundle_index: StreamIndex
    fee: U64
    expiry_slot: U64


class SignedTicket(_LaneData):
    """A ticket, its path in the sender's ticket batch, and the batch signature.

    The sender signs the root of a Merkle tree over a batch of tickets once
    (`consensus.lanes.tickets.sign_ticket_batch`); `batch_path` holds the sibling
    digests from the ticket's leaf to that root (empty for a batch of one).
    """

    ticket: Ticket
    batch_path: Annotated[tuple[Digest, ...], Meta(max_length=MAX_TICKET_BATCH_DEPTH)]
    signature: Signature  # by commitment.sender, Domain.TICKET, over the batch root


class LaneEntry(_LaneData):
    """What a sender submits to a lane proposer, and what a lane block carries."""

    bundle: Bundle
    ticket: SignedTicket


class LaneBlock(_LaneData):
    """A lane proposer's bundles for one slot, signed by it (Domain.LANE_BLOCK).

    Entries are sorted strictly by (commitment id, bundle index).
    """

    lane: LaneIndex
    slot: U64
    entries: Annotated[tuple[LaneEntry, ...], Meta(max_length=MAX_LANE_BLOCK_ENTRIES)]
    signature: Signature


class BlockPayload(_LaneData):
    """What `BlockBody.payload` carries: plain transactions, then lane blocks by lane index."""

    transactions: Annotated[
        tuple[Annotated[bytes, Meta(max_length=MAX_PAYLOAD_BYTES)], ...],
        Meta(max_length=MAX_TRANSACTIONS),
    ]
    lane_blocks: Annotated[tuple[LaneBlock, ...], Meta(max_length=MAX_VALIDATORS)]


EMPTY_PAYLOAD = BlockPayload(transactions=(), lane_blocks=())


class _TransactionsOnly(msgspec.Struct, frozen=True, array_like=True):
    """A block payload's transactions; the lane blocks are skipped, not decoded."""

    transactions: Annotated[
        tuple[Annotated[bytes, Meta(max_length=MAX_PAYLOAD_BYTES)], ...],
        Meta(max_length=MAX_TRANSACTIONS),
    ]
    lane_blocks: msgspec.Raw


_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(LaneEntry)
_payload_decoder = msgspec.msgpack.Decoder(BlockPayload)
_transactions_decoder = msgspec.msgpack.Decoder(_TransactionsOnly)


def encode(value: msgspec.Struct | tuple) -> bytes:
    return _encoder.encode(value)


def _digest(domain: bytes, payload: bytes) -> bytes:
    return hashlib.sha256(domain + b"\x00" + payload).digest()


def commitment_id(commitment: PayloadCommitment) -> bytes:
    """Identity of a payload: what tickets name and what orders execution."""
    return _digest(b"sedna/lane-commitment/1", _encoder.encode(commitment))


def ticket_signing_bytes(ticket: Ticket) -> bytes:
    return _encoder.encode(ticket)


def entries_digest(entries: tuple[LaneEntry, ...]) -> bytes:
    """SHA-256 of a lane block's entries (what lane block signatures and ids cover)."""
    return _digest(b"sedna/lane-entries/1", _encoder.encode(entries))


def lane_block_signing_bytes(lane: int, slot: int, entries: tuple[LaneEntry, ...]) -> bytes:
    return _encoder.encode((lane, slot, entries_digest(entries)))


def encode_lane_entry(entry: LaneEntry) -> bytes:
    return _encoder.encode(entry)


def _decode(decoder: msgspec.msgpack.Decoder, data: bytes | memoryview, what: str):
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise LanePayloadError(f"invalid {what}: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise LanePayloadError(f"malformed {what}: {exc}") from None


def decode_lane_entry(data: bytes, max_bytes: int) -> LaneEntry:
    """A sender's submission from untrusted bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LanePayloadError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise LanePayloadError(f"lane entry of {len(data)} bytes exceeds {max_bytes}")
    return _decode(_entry_decoder, data, "lane entry")


def encode_block_payload(payload: BlockPayload) -> bytes:
    if payload == EMPTY_PAYLOAD:
        return b""
    data = bytes((LANE_PAYLOAD_VERSION,)) + _encoder.encode(payload)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise LanePayloadError(f"block payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


def decode_block_payload(data: bytes) -> BlockPayload:
    """A `BlockBody.payload` from untrusted bytes (b"" is the empty payload)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LanePayloadError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        return EMPTY_PAYLOAD
    if len(data) > MAX_PAYLOAD_BYTES:
        raise LanePayloadError(f"block payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if data[0] != LANE_PAYLOAD_VERSION:
        raise LanePayloadError(f"unsupported lane payload version {data[0]}")
    payload = _decode(_payload_decoder, memoryview(data)[1:], "block payload")
    if payload == EMPTY_PAYLOAD:  # rule: one encoding per payload (empty is b"")
        raise LanePayloadError("non-canonical empty payload")
    return payload


def decode_block_transactions(data: bytes) -> tuple[bytes, ...]:
    """The plain transactions of a block payload whose lane blocks are checked elsewhere
    (by `decode_block_payload` in the lane rules, or already validated): the lane blocks
    are skipped, not decoded. The framing rules are the same as `decode_block_payload`'s.
    Certified-mode cut payloads (`consensus.lanes.cut`, version 2) lead with their
    transactions too, so both are read."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LanePayloadError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        return ()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise LanePayloadError(f"block payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if data[0] not in (LANE_PAYLOAD_VERSION, CUT_PAYLOAD_VERSION):
        raise LanePayloadError(f"unsupported lane payload version {data[0]}")
    return _decode(_transactions_decoder, memoryview(data)[1:], "block payload").transactions
