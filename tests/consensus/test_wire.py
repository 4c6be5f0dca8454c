"""Codec, signatures and the validator set: the contract every component builds on."""

from __future__ import annotations

import contextlib
from collections import Counter

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import codec
from consensus.certificates import Signer
from consensus.crypto import ED25519, TRUSTED, Domain, KeyPair, derive_keys, scheme_by_name
from consensus.messages import (
    GENESIS_QC,
    MESSAGE_TYPES,
    AdvanceRoundMessage,
    BlockBody,
    BlockHeader,
    BlockSyncRequest,
    BlockSyncResponse,
    SyncedBlock,
    Vote,
)
from consensus.validators import (
    BitmapError,
    RoundRobinSchedule,
    ValidatorSet,
    WeightedSchedule,
    decode_bitmap,
    encode_bitmap,
    schedule_by_name,
)

KEYS = derive_keys(4, b"wire-test")
SIGNER = Signer(1, KEYS[1], ED25519)


def sample_messages():
    body = BlockBody(payload=b"abc")
    header = BlockHeader(
        block_round=1,
        epoch=1,
        qc=GENESIS_QC,
        author=1,
        seq_num=1,
        timestamp_ns=7,
        body_id=codec.body_id(body),
    )
    tip = SIGNER.tip(header)
    return [
        SIGNER.proposal(1, 1, tip, body, None),
        SIGNER.vote(Vote(block_id=codec.block_id(header), round=1, epoch=1)),
        AdvanceRoundMessage(certificate=GENESIS_QC),
        BlockSyncRequest(block_id=codec.block_id(header), count=3),
        BlockSyncResponse(
            block_id=codec.block_id(header), blocks=(SyncedBlock(tip=tip, body=body),)
        ),
    ]


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: type(m).__name__)
def test_round_trip_is_exact_and_canonical(message) -> None:
    frame = codec.encode_message(message)
    decoded = codec.decode_message(frame)
    assert decoded == message
    assert codec.encode_message(decoded) == frame  # canonical: re-encoding gives the same bytes


def test_every_message_type_has_a_distinct_tag() -> None:
    tags = Counter(t.__struct_config__.tag for t in MESSAGE_TYPES)
    assert all(count == 1 for count in tags.values()) and len(tags) == len(MESSAGE_TYPES)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "empty"),
        (b"\x07" + codec.encode(GENESIS_QC), "version"),
        (b"\x01\xc1", "."),
        (b"\x01" + b"\x92\xa4vote\x01", "."),
    ],
)
def test_malformed_frames_raise_decode_error(frame, reason) -> None:
    with pytest.raises(codec.DecodeError, match=reason):
        codec.decode_message(frame)


def test_size_limits_are_enforced() -> None:
    frame = codec.encode_message(sample_messages()[0])
    with pytest.raises(codec.DecodeError, match="exceeds"):
        codec.decode_message(frame, max_bytes=len(frame) - 1)
    too_many = BlockSyncRequest(block_id=bytes(32), count=1000)  # count is bounded on decode
    with pytest.raises(codec.DecodeError):
        codec.decode_message(codec.encode_message(too_many))
    short_id = b"\x01" + codec.encode(BlockSyncRequest(block_id=b"x" * 31, count=1))
    with pytest.raises(codec.DecodeError):
        codec.decode_message(short_id)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_untrusted_bytes_give_a_message_or_decode_error_only(data: bytes) -> None:
    for frame in (data, b"\x01" + data):
        with contextlib.suppress(codec.DecodeError):
            codec.decode_message(frame)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_valid_frames_give_a_message_or_decode_error_only(data) -> None:
    frame = bytearray(codec.encode_message(data.draw(st.sampled_from(sample_messages()))))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(1, len(frame) - 1))
        frame[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(codec.DecodeError):
        codec.decode_message(bytes(frame))


def test_block_id_commits_to_every_header_field() -> None:
    header = sample_messages()[0].tip.header
    ids = {codec.block_id(header)}
    for field, value in [
        ("block_round", 2),
        ("author", 2),
        ("seq_num", 2),
        ("timestamp_ns", 8),
        ("body_id", bytes(32)),
    ]:
        ids.add(codec.block_id(msgspec.structs.replace(header, **{field: value})))
    assert len(ids) == 6


# --------------------------------------------------------------------------- crypto


def test_signatures_are_domain_separated_and_key_bound() -> None:
    payload = b"payload"
    for scheme in (ED25519, TRUSTED):
        signature = scheme.sign(KEYS[0], Domain.VOTE, payload)
        assert scheme.verify(KEYS[0].public, Domain.VOTE, payload, signature)
        assert not scheme.verify(KEYS[0].public, Domain.TIMEOUT, payload, signature)
        assert not scheme.verify(KEYS[1].public, Domain.VOTE, payload, signature)
        assert not scheme.verify(KEYS[0].public, Domain.VOTE, payload + b"!", signature)
    assert not ED25519.verify(KEYS[0].public, Domain.VOTE, payload, b"short")
    assert len(set(Domain.ALL)) == len(Domain.ALL)


def test_key_derivation_is_deterministic_and_distinct() -> None:
    assert [k.public for k in derive_keys(4, b"wire-test")] == [k.public for k in KEYS]
    assert len({k.public for k in derive_keys(64, "x")}) == 64
    assert derive_keys(1, "a")[0].public != derive_keys(1, "b")[0].public
    with pytest.raises(ValueError, match="32 bytes"):
        KeyPair.from_seed(b"short")
    assert "secret" not in repr(KEYS[0])
    with pytest.raises(ValueError, match="unknown signature scheme"):
        scheme_by_name("rsa")


# --------------------------------------------------------------------------- validator set


@pytest.mark.parametrize(
    ("n", "quorum", "honest"),
    [(1, 1, 1), (3, 3, 2), (4, 3, 2), (7, 5, 3), (10, 7, 4), (100, 67, 34)],
)
def test_equal_stake_thresholds(n: int, quorum: int, honest: int) -> None:
    validators = ValidatorSet.from_keys([k.public for k in derive_keys(n)])
    assert (validators.quorum_stake, validators.honest_stake) == (quorum, honest)
    assert validators.has_quorum(range(quorum)) and not validators.has_quorum(range(quorum - 1))
    assert validators.stake_of([0, 0, 0]) == 1  # a signer counts once


def test_invalid_validator_sets_are_rejected() -> None:
    keys = [k.public for k in derive_keys(3)]
    with pytest.raises(ValueError, match="stake"):
        ValidatorSet.from_keys(keys, stakes=[1, 0, 1])
    with pytest.raises(ValueError, match="duplicate"):
        ValidatorSet.from_keys([keys[0], keys[0]])
    with pytest.raises(ValueError, match="at least one"):
        ValidatorSet([])


@given(st.sets(st.integers(0, 99)))
def test_bitmap_round_trip(indices: set[int]) -> None:
    assert decode_bitmap(encode_bitmap(indices, 100), 100) == sorted(indices)


def test_bitmap_negatives() -> None:
    with pytest.raises(BitmapError, match="beyond"):
        decode_bitmap(bytes([0b00010000]), 4)
    with pytest.raises(BitmapError, match="bytes"):
        decode_bitmap(bytes(2), 4)
    with pytest.raises(BitmapError, match="outside"):
        encode_bitmap([4], 4)


def test_leader_schedules() -> None:
    validators = ValidatorSet.from_keys([k.public for k in derive_keys(4)], stakes=[1, 1, 1, 7])
    assert [RoundRobinSchedule(validators).leader(r) for r in range(6)] == [0, 1, 2, 3, 0, 1]
    weighted = WeightedSchedule(validators)
    leaders = Counter(weighted.leader(r) for r in range(4000))
    assert set(leaders) == {0, 1, 2, 3}
    assert 0.65 < leaders[3] / 4000 < 0.75  # stake 7 of 10
    assert [weighted.leader(r) for r in range(50)] == [
        WeightedSchedule(validators).leader(r) for r in range(50)
    ]
    assert schedule_by_name("weighted", validators).name == "weighted"
    with pytest.raises(ValueError, match="unknown leader schedule"):
        schedule_by_name("lottery", validators)
