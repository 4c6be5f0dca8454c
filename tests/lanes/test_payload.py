"""Block payload encoding (bounded, one error type) and the LanePayloadValidator."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import body_id
from consensus.crypto import ED25519, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.local import lane_block_header
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.tickets import sign_lane_block
from consensus.lanes.wire import (
    EMPTY_PAYLOAD,
    LANE_PAYLOAD_VERSION,
    BlockPayload,
    LanePayloadError,
    decode_block_payload,
    decode_block_transactions,
    encode,
    encode_block_payload,
)
from consensus.messages import BlockBody
from consensus.validators import ValidatorSet
from tests.lanes.helpers import EXPIRY, SMALL, entry_for, seeded_bytes, sender_key

KEYS = derive_keys(4, "payload-tests")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])
SENDER = sender_key()
SLOT = 5
ENCODED = encode_payload(
    SMALL, seeded_bytes("pl", 600), seeded_bytes("k", 32), SENDER.public, expiry_slot=EXPIRY
)
EXPIRED = encode_payload(  # its tickets may name slots up to SLOT - 1 only
    SMALL, seeded_bytes("old", 600), seeded_bytes("ko", 32), SENDER.public, expiry_slot=SLOT - 1
)
LONG_LIVED = encode_payload(  # expires more than max_lifetime_slots after SLOT
    SMALL,
    seeded_bytes("long", 600),
    seeded_bytes("kl", 32),
    SENDER.public,
    expiry_slot=SLOT + SMALL.max_lifetime_slots + 1,
)


def _entries(lane: int, indices, slot: int = SLOT, encoded=ENCODED):
    return tuple(entry_for(ED25519, SENDER, encoded, i, lane, slot) for i in indices)


def _lane_block(lane: int, indices, slot: int = SLOT, entries=None):
    entries = _entries(lane, indices, slot) if entries is None else entries
    return sign_lane_block(ED25519, KEYS[lane], lane, slot, entries)


def _check(data: bytes, slot: int = SLOT) -> str | None:
    validator = LanePayloadValidator(VALIDATORS, SMALL, ED25519)
    body = BlockBody(data)
    header = lane_block_header(slot, 0, body)
    result = validator.check(header, body)
    assert validator.validate(header, body) == (result is None)
    return result


def _raw(transactions, blocks) -> bytes:
    """Encode without build_block_payload's canonicalisation (a Byzantine leader)."""
    return bytes((LANE_PAYLOAD_VERSION,)) + encode(BlockPayload(tuple(transactions), tuple(blocks)))


def test_round_trip_and_canonical_build() -> None:
    blocks = [_lane_block(2, [2]), _lane_block(0, [0, 1]), _lane_block(1, [])]
    data = build_block_payload([b"tx1", b"tx2"], blocks)
    payload = decode_block_payload(data)
    assert [b.lane for b in payload.lane_blocks] == [0, 2]  # sorted, empty dropped
    assert payload.transactions == (b"tx1", b"tx2")
    assert encode_block_payload(payload) == data
    assert build_block_payload([], []) == b"" and decode_block_payload(b"") == EMPTY_PAYLOAD
    assert _check(data) is None
    assert _check(b"") is None
    with pytest.raises(LanePayloadError):
        build_block_payload([], [_lane_block(1, [0]), _lane_block(1, [1])])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_untrusted_bytes_raise_only_lane_payload_error(data: bytes) -> None:
    for candidate in (data, bytes((LANE_PAYLOAD_VERSION,)) + data):
        with contextlib.suppress(LanePayloadError):
            decode_block_payload(candidate)


@settings(max_examples=150, deadline=None)
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_mutated_payloads_raise_only_lane_payload_error_or_fail_validation(position, value) -> None:
    original = build_block_payload([b"t"], [_lane_block(1, [0])])
    data = bytearray(original)
    data[position % len(data)] = value
    try:
        mutated = decode_block_payload(bytes(data))
    except LanePayloadError:
        return
    if _check(bytes(data)) is None:
        # rule: no change to signed lane data passes validation
        assert mutated.lane_blocks == decode_block_payload(original).lane_blocks


@settings(max_examples=150, deadline=None)
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_transactions_only_decode_agrees_with_the_full_decode(position, value) -> None:
    """`decode_block_transactions` skips the lane blocks: on every payload the full decode
    accepts it returns the same transactions, and it raises only LanePayloadError."""
    original = build_block_payload([b"t1", b"tx2"], [_lane_block(1, [0]), _lane_block(3, [2])])
    assert decode_block_transactions(original) == (b"t1", b"tx2")
    assert decode_block_transactions(b"") == ()
    data = bytearray(original)
    data[position % len(data)] = value
    try:
        full = decode_block_payload(bytes(data))
    except LanePayloadError:
        with contextlib.suppress(LanePayloadError):
            decode_block_transactions(bytes(data))
        return
    assert decode_block_transactions(bytes(data)) == full.transactions


def test_transactions_only_decode_keeps_the_framing_rules() -> None:
    body = encode(BlockPayload((b"a",), ()))
    for bad in (b"\x07" + body, bytes((LANE_PAYLOAD_VERSION,)) + body[:-1], b"\x01\xc1"):
        with pytest.raises(LanePayloadError):
            decode_block_transactions(bad)
    too_many = msgspec.msgpack.encode([[b"x"] * 70_000, []])
    with pytest.raises(LanePayloadError):
        decode_block_transactions(bytes((LANE_PAYLOAD_VERSION,)) + too_many)
    with pytest.raises(LanePayloadError):
        decode_block_transactions("not bytes")  # type: ignore[arg-type]


def test_bounds_and_versions() -> None:
    with pytest.raises(LanePayloadError):
        decode_block_payload(b"\x07" + encode(EMPTY_PAYLOAD))
    with pytest.raises(LanePayloadError):
        decode_block_payload(
            bytes((LANE_PAYLOAD_VERSION,)) + encode(EMPTY_PAYLOAD)
        )  # non-canonical empty
    too_many = msgspec.msgpack.encode([[b""] * 70_000, []])
    with pytest.raises(LanePayloadError):
        decode_block_payload(bytes((LANE_PAYLOAD_VERSION,)) + too_many)
    with pytest.raises(LanePayloadError):
        decode_block_payload("not bytes")  # type: ignore[arg-type]


def _tamper_ticket_signature():
    entry = _entries(1, [0])[0]
    bad = entry.ticket.__class__(entry.ticket.ticket, (), bytes(64))
    return _lane_block(1, [], entries=(entry.__class__(entry.bundle, bad),))


def _tamper_symbol():
    entry = _entries(1, [0])[0]
    symbols = (bytes(len(entry.bundle.symbols[0])), *entry.bundle.symbols[1:])
    bundle = entry.bundle.__class__(entry.bundle.commitment, 0, symbols, entry.bundle.proof)
    return _lane_block(1, [], entries=(entry.__class__(bundle, entry.ticket),))


def _bad_lane_signature():
    block = _lane_block(1, [0])
    return block.__class__(block.lane, block.slot, block.entries, bytes(64))


INVALID = {
    "lane block out of order": lambda: _raw([], [_lane_block(2, [1]), _lane_block(1, [0])]),
    "duplicated lane": lambda: _raw([], [_lane_block(1, [1]), _lane_block(1, [0])]),
    "unknown lane": lambda: _raw(
        [], [sign_lane_block(ED25519, KEYS[0], 9, SLOT, _entries(9, [0]))]
    ),
    "lane block for another slot": lambda: _raw([], [_lane_block(1, [0], slot=SLOT + 1)]),
    "ticket for another slot": lambda: _raw(
        [], [_lane_block(1, [], entries=_entries(1, [0], slot=SLOT - 1))]
    ),
    "ticket for another lane": lambda: _raw([], [_lane_block(1, [], entries=_entries(2, [0]))]),
    "empty lane block": lambda: _raw([], [_lane_block(1, [])]),
    "entries unsorted": lambda: _raw([], [_lane_block(1, [], entries=_entries(1, [1, 0]))]),
    "bundle twice in a lane block": lambda: _raw(
        [], [_lane_block(1, [], entries=_entries(1, [0, 0]))]
    ),
    "ticket after the payload's expiry": lambda: _raw(
        [], [_lane_block(1, [], entries=_entries(1, [0], encoded=EXPIRED))]
    ),
    "payload lifetime above the chain's bound": lambda: _raw(
        [], [_lane_block(1, [], entries=_entries(1, [0], encoded=LONG_LIVED))]
    ),
    "bad ticket signature": lambda: _raw([], [_tamper_ticket_signature()]),
    "bad proof": lambda: _raw([], [_tamper_symbol()]),
    "bad lane block signature": lambda: _raw([], [_bad_lane_signature()]),
    "not a payload": lambda: b"\x01\x02\x03",
}


@pytest.mark.parametrize("case", list(INVALID))
def test_validator_rejects(case: str) -> None:
    assert _check(INVALID[case]()) is not None


def test_the_same_bundle_in_two_lane_blocks_is_valid() -> None:
    """Inclusion rule: a sender that gives one bundle index to two lanes in one slot must
    not make the block invalid (each lane checks only its own block; rejecting the block
    would let one sender halt the chain). The tracker counts the first copy."""
    data = _raw([], [_lane_block(1, [0]), _lane_block(2, [0, 1])])
    assert _check(data) is None
    assert data == build_block_payload((), [_lane_block(2, [0, 1]), _lane_block(1, [0])])


def test_validator_rejects_a_body_the_header_does_not_commit_to() -> None:
    validator = LanePayloadValidator(VALIDATORS, SMALL, ED25519)
    body = BlockBody(build_block_payload([b"a"], [_lane_block(0, [0])]))
    header = lane_block_header(SLOT, 0, BlockBody(b""))
    assert header.body_id != body_id(body)
    assert not validator.validate(header, body)
    good = lane_block_header(SLOT, 0, body)
    assert validator.validate(good, body)
    assert validator.validate(good, body)  # the cached path gives the same answer
    assert not validator.validate(lane_block_header(SLOT + 1, 0, body), body)


def test_a_validated_body_is_decoded_once_and_only_for_itself() -> None:
    """Issue 16: the decode tracker takes the lane blocks the validator decoded (by body
    id), so a finalized body is decoded once per node; the commitment check stays."""
    validator = LanePayloadValidator(VALIDATORS, SMALL, ED25519)
    body = BlockBody(build_block_payload([b"tx"], [_lane_block(0, [0]), _lane_block(2, [1])]))
    header = lane_block_header(SLOT, 0, body)
    assert validator.validate(header, body) and validator.decodes == 1
    lanes = validator.decoded(BlockBody(bytes(body.payload)))  # equal bytes, other object
    assert (validator.decodes, validator.decode_hits) == (1, 1)
    assert lanes == BlockPayload((), decode_block_payload(body.payload).lane_blocks)
    assert validator.decoded(body) == lanes and validator.decodes == 2  # handed out once
    # another body never gets the cached blocks, even under the header of the first
    other = BlockBody(build_block_payload([b"tx"], [_lane_block(1, [0])]))
    assert not validator.validate(header, other)  # body_id does not match: not kept
    assert validator.validate(header, body)
    assert validator.decoded(other).lane_blocks == decode_block_payload(other.payload).lane_blocks
    assert validator.decoded(body) == lanes and validator.decode_hits == 2
    # a plain `check` (e.g. a relayed lane block in a stand-in body) keeps nothing
    assert validator.check(header, body) is None
    hits = validator.decode_hits
    validator.decoded(body)
    assert validator.decode_hits == hits
