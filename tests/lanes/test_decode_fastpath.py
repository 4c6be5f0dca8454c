"""The decode fast path gives byte-identical results to plain reference implementations.

Covered: Merkle roots, proofs and leaves against a textbook tree written here; the AONT
against its definition; batched RaptorQ coding (`repair_streams`, `decode_bundles_batch`)
against one call per payload; `decode_payloads` against `decode_payload` one by one
(honest, forged, mixed, undecodable, non-zero padding, several layouts in one batch); the
tracker's decoded-payload entry point and `NodeLanes.track` against `on_finalized` on a
re-encoded body (outcomes and execution-order hashes).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.crypto import TRUSTED, derive_keys
from consensus.lanes.aont import AontError, invert_package_transform, package_transform
from consensus.lanes.codecs import (
    BATCH_MAX_SOURCE_SYMBOLS,
    MAX_BATCH_SYMBOL_BYTES,
    codec_by_id,
    symbol_map,
)
from consensus.lanes.encoding import (
    DecodeResult,
    EncodedPayload,
    decode_payload,
    decode_payloads,
    encode_payload,
)
from consensus.lanes.local import lane_block_header
from consensus.lanes.merkle import (
    MerkleTree,
    bundle_leaf,
    bundle_leaves,
    merkle_root,
    stream_bundle_leaves,
    verify_proof,
)
from consensus.lanes.params import LaneParams, layout_for
from consensus.lanes.payload import build_block_payload
from consensus.lanes.tickets import sign_lane_block
from consensus.lanes.tracker import DecodeTracker, execution_key
from consensus.lanes.wire import (
    BlockPayload,
    LanePayloadError,
    PayloadCommitment,
    commitment_id,
    decode_block_payload,
    encode_block_payload,
)
from consensus.messages import BlockBody
from consensus.validators import ValidatorSet, schedule_by_name
from node.lanes_node import NODE_LANE_PARAMS, NodeLanes
from tests.lanes.helpers import (
    EXPIRY,
    RS_SMALL,
    SMALL,
    entry_for,
    forged_payload,
    seeded_bytes,
    sender_key,
)

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LANES = 4
KEYS = derive_keys(LANES, "decode-fastpath")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])


# --------------------------------------------------------------------------- references


def ref_leaf(index: int, symbols: list[bytes], first_position: int) -> bytes:
    data = b"\x00" + index.to_bytes(8, "big")
    for offset, symbol in enumerate(symbols):
        data += (first_position + offset).to_bytes(4, "big") + symbol
    return hashlib.sha256(data).digest()


def ref_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """The textbook tree: leaves padded with SHA-256(0x03) to a power of two."""
    size = 1
    while size < len(leaves):
        size *= 2
    level = leaves + [hashlib.sha256(b"\x03").digest()] * (size - len(leaves))
    levels = [level]
    while len(level) > 1:
        level = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level), 2)
        ]
        levels.append(level)
    return levels


def ref_xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def digests(count: int, seed: str) -> list[bytes]:
    return [hashlib.sha256(f"{seed}/{i}".encode()).digest() for i in range(count)]


# --------------------------------------------------------------------------- Merkle


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17, 31, 33, 64, 65, 100])
def test_merkle_root_and_proofs_match_the_textbook_tree(count: int) -> None:
    leaves = digests(count, f"leaves{count}")
    levels = ref_levels(leaves)
    root = levels[-1][0]
    assert merkle_root(leaves) == root
    tree = MerkleTree(leaves)
    assert tree.root == root
    for index in range(count):
        proof = tree.proof(index)
        assert list(proof) == [lvl[(index >> d) ^ 1] for d, lvl in enumerate(levels[:-1])]
        assert verify_proof(root, count, index, leaves[index], proof)
        # negative space: another leaf, another index, a tampered sibling, a short path
        assert not verify_proof(root, count, index, leaves[(index + 1) % count], proof) or (
            count == 1
        )
        if count > 1:
            assert not verify_proof(root, count, (index + 1) % count, leaves[index], proof)
            bad = (bytes(32), *proof[1:])
            assert not verify_proof(root, count, index, leaves[index], bad)
            assert not verify_proof(root, count, index, leaves[index], proof[:-1])
            assert not verify_proof(root, count, index, leaves[index], (*proof[:-1], b"x"))
    assert not verify_proof(root, count, count, leaves[0], tree.proof(0))
    assert not verify_proof(root, count, -1, leaves[0], tree.proof(0))


def test_merkle_root_rejects_what_the_tree_rejects() -> None:
    with pytest.raises(ValueError):
        merkle_root([])


@FAST
@given(
    bundles=st.integers(1, 20),
    s_b=st.integers(1, 6),
    size=st.integers(1, 40),
    first=st.integers(0, 1000),
    seed=st.binary(max_size=4),
)
def test_bundle_leaves_of_lists_and_of_flat_streams_match_the_definition(
    bundles: int, s_b: int, size: int, first: int, seed: bytes
) -> None:
    symbols = [seeded_bytes(seed + bytes([i % 256, i // 256]), size) for i in range(bundles * s_b)]
    tagged = [(first + i).to_bytes(4, "big") + s for i, s in enumerate(symbols)]
    expected = [
        ref_leaf(b, symbols[b * s_b : (b + 1) * s_b], first + b * s_b) for b in range(bundles)
    ]
    assert bundle_leaves(tagged, s_b) == expected
    assert stream_bundle_leaves(b"".join(tagged), size + 4, s_b) == expected
    assert [
        bundle_leaf(b, symbols[b * s_b : (b + 1) * s_b], first + b * s_b) for b in range(bundles)
    ] == expected
    with pytest.raises(ValueError):
        stream_bundle_leaves(b"".join(tagged) + b"x", size + 4, s_b)
    if s_b > 1:
        with pytest.raises(ValueError):
            bundle_leaves(tagged[:-1], s_b)


# --------------------------------------------------------------------------- AONT


@FAST
@given(size=st.integers(0, 600), extra=st.integers(0, 70), seed=st.binary(max_size=4))
def test_aont_matches_its_definition_and_round_trips(size: int, extra: int, seed: bytes) -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    payload = seeded_bytes(b"p" + seed, size)
    key = seeded_bytes(b"k" + seed, 32)
    total = size + 32 + extra
    transformed = package_transform(payload, key, total)
    cipher = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    c = cipher.update(payload + bytes(extra))
    mask = hashlib.sha256(b"sedna/aont/1\x00" + c).digest()
    assert transformed == c + ref_xor(key, mask)
    assert invert_package_transform(transformed, size) == payload


def test_aont_rejects_non_zero_padding_and_impossible_lengths() -> None:
    key = seeded_bytes("key", 32)
    transformed = package_transform(b"abc" + b"\x01", key, 100)
    assert invert_package_transform(transformed, 4) == b"abc\x01"
    with pytest.raises(AontError, match="non-zero padding"):
        invert_package_transform(transformed, 3)  # byte 3 is padding now, and not zero
    with pytest.raises(AontError):
        invert_package_transform(transformed, 69)
    with pytest.raises(AontError):
        invert_package_transform(b"short", 0)
    tampered = bytearray(transformed)
    tampered[-1] ^= 1  # a wrong key block decrypts to garbage: its padding is not zero
    with pytest.raises(AontError):
        invert_package_transform(bytes(tampered), 4)


# --------------------------------------------------------------------------- codecs


def _transformed(layout, seed: str) -> bytes:
    return package_transform(
        seeded_bytes(seed, layout.payload_len), seeded_bytes("k" + seed, 32), layout.transformed_len
    )


@pytest.mark.parametrize(
    ("params", "payload_len", "count"),
    [
        (NODE_LANE_PARAMS, 512, 7),
        (NODE_LANE_PARAMS, 3000, 3),
        (SMALL, 100, 5),
        (LaneParams(symbol_size_bytes=4096, symbols_per_bundle=3), 5000, 19),  # > one batch
        (LaneParams(symbol_size_bytes=8, symbols_per_bundle=4), 600, 3),  # K > batch limit
        (RS_SMALL, 40, 4),
    ],
)
def test_batched_repair_streams_equal_one_call_per_payload(params, payload_len, count) -> None:
    layout = layout_for(params, payload_len)
    codec = codec_by_id(params.codec_id)
    datas = [_transformed(layout, f"rs{i}") for i in range(count)]
    t, r = layout.symbol_size_bytes, layout.repair_symbols
    expected = [b"".join(codec.repair_packets(d, t, r)) for d in datas]
    assert codec.repair_streams(datas, t, r) == expected
    assert codec.repair_streams(datas[:1], t, r) == expected[:1]
    assert codec.repair_streams([], t, r) == []
    if params is NODE_LANE_PARAMS:  # the batch limit really splits large batches
        assert MAX_BATCH_SYMBOL_BYTES // t < 600
        many = datas * (MAX_BATCH_SYMBOL_BYTES // t // count + 2)
        assert codec.repair_streams(many, t, r) == expected * (len(many) // count)


@pytest.mark.parametrize(
    ("params", "count"),
    [
        (NODE_LANE_PARAMS, 9),
        (LaneParams(symbol_size_bytes=4096, symbols_per_bundle=3), 19),  # two batches
        (LaneParams(symbol_size_bytes=8, symbols_per_bundle=4), 3),  # K above the limit
    ],
)
def test_batched_decoding_equals_one_decoder_per_payload(params, count) -> None:
    key = sender_key("codec")
    size = 1500 if params.symbol_size_bytes == 8 else 5000
    honest = [
        encode_payload(
            params,
            seeded_bytes(f"d{i}", size),
            seeded_bytes(f"dk{i}", 32),
            key.public,
            expiry_slot=EXPIRY,
        )
        for i in range(count)
    ]
    layout = honest[0].layout
    # every third stream is junk: its garbage must be the same garbage as one by one
    streams = [
        forged_payload(params, size, key.public, f"j{i}", None) if i % 3 == 1 else e
        for i, e in enumerate(honest)
    ]
    codec = codec_by_id(params.codec_id)
    args = (layout.transformed_len, layout.symbol_size_bytes, layout.repair_symbols)
    s_b = layout.symbols_per_bundle
    for indices in (range(layout.kappa), range(1, layout.kappa + 1), range(layout.kappa - 1)):
        maps = [_maps(e, indices) for e in streams]
        expected = [codec.decode_bundles(*args, s_b, m) for m in maps]
        assert codec.decode_bundles_batch(*args, s_b, maps) == expected
        assert expected == [codec.decode(*args, symbol_map(s_b, m)) for m in maps]
        if len(indices) == layout.kappa:
            payload, aont_key = seeded_bytes("d0", size), seeded_bytes("dk0", 32)
            assert expected[0] == package_transform(payload, aont_key, layout.transformed_len)
    # maps with different indices, or a short symbol, are decoded one by one
    uneven = [_maps(streams[0], range(layout.kappa)), _maps(streams[2], range(1, layout.kappa + 1))]
    assert codec.decode_bundles_batch(*args, s_b, uneven) == [
        codec.decode_bundles(*args, s_b, m) for m in uneven
    ]


def test_the_batch_limit_keeps_one_sub_block() -> None:
    # K ≤ 64 ⇒ K' ≤ 69 (RFC 6330 Table 2): 69 wide symbols fit the crate's 10 MiB default
    assert 69 * MAX_BATCH_SYMBOL_BYTES <= 10 * 1024 * 1024
    assert BATCH_MAX_SOURCE_SYMBOLS == 64


def _maps(encoded, indices) -> dict[int, tuple[bytes, ...]]:
    return {i: tuple(encoded.bundles[i].symbols) for i in indices}


@FAST
@given(
    sizes=st.lists(st.integers(0, 900), min_size=1, max_size=12),
    pattern=st.sampled_from(["first", "spread", "late", "short", "beyond_cap", "mixed"]),
    forged=st.sets(st.integers(0, 11), max_size=4),
    seed=st.binary(max_size=3),
)
def test_decode_payloads_equals_decode_payload_one_by_one(sizes, pattern, forged, seed) -> None:
    params = SMALL
    key = sender_key("batch")
    items = []
    for n, size in enumerate(sizes):
        tag = seed + bytes([n])
        honest = encode_payload(
            params,
            seeded_bytes(b"x" + tag, size),
            seeded_bytes(tag, 32),
            key.public,
            expiry_slot=EXPIRY,
        )
        encoded = honest
        if n in forged:  # every other forged stream is half honest, half junk
            base = honest if n % 2 else None
            encoded = forged_payload(params, size, key.public, f"junk{tag.hex()}", base)
        kappa, cap = encoded.layout.kappa, encoded.layout.cap_bundles
        indices = {
            "first": range(kappa),
            "spread": range(cap - kappa, cap),
            "late": range(1, kappa + 1),
            "short": range(kappa - 1),  # undecodable: fewer than K symbols
            "beyond_cap": [*range(kappa - 1), cap - 1],
            "mixed": range(n % 3, n % 3 + kappa),
        }[pattern]
        bundles = _maps(encoded, [i for i in indices if i < cap])
        items.append((encoded.layout, encoded.commitment, bundles))
    expected = [decode_payload(*item) for item in items]
    assert decode_payloads(items) == expected
    for item, result in zip(items, expected, strict=True):
        if item[1].sender == key.public and result.status == "decoded":
            assert result.payload is not None and len(result.payload) == item[0].payload_len


def test_decode_payloads_keeps_every_verdict_in_one_batch() -> None:
    """Honest, forged, undecodable, non-zero padding and another layout, all together."""
    key = sender_key("verdicts")
    honest = [
        encode_payload(
            SMALL,
            seeded_bytes(f"h{i}", 300),
            seeded_bytes(f"hk{i}", 32),
            key.public,
            expiry_slot=EXPIRY,
        )
        for i in range(4)
    ]
    other = encode_payload(
        SMALL, seeded_bytes("o", 40), seeded_bytes("ok", 32), key.public, expiry_slot=EXPIRY
    )
    junk = forged_payload(SMALL, 300, key.public, "junk", None)
    mixed = forged_payload(SMALL, 300, key.public, "mixed", honest[0])
    padded = _padding_forgery(key.public)
    layout = honest[0].layout
    kappa = layout.kappa
    half = mixed.layout.cap_bundles // 2
    items = [(e.layout, e.commitment, _maps(e, range(kappa))) for e in honest] + [
        (other.layout, other.commitment, _maps(other, range(other.layout.kappa))),
        (junk.layout, junk.commitment, _maps(junk, range(kappa))),
        (mixed.layout, mixed.commitment, _maps(mixed, range(half - 1, half - 1 + kappa))),
        (layout, honest[1].commitment, _maps(honest[1], range(kappa - 1))),
        (padded.layout, padded.commitment, _maps(padded, range(padded.layout.kappa))),
        # the right symbols under another payload's commitment: decodes, root differs
        (layout, honest[3].commitment, _maps(honest[2], range(kappa))),
    ]
    results = decode_payloads(items)
    assert results == [decode_payload(*item) for item in items]
    assert [r.status for r in results] == ["decoded"] * 5 + [
        "commitment_mismatch",
        "commitment_mismatch",
        "undecodable",
        "commitment_mismatch",
        "commitment_mismatch",
    ]
    assert [r.payload for r in results[:4]] == [seeded_bytes(f"h{i}", 300) for i in range(4)]
    assert results[4] == DecodeResult("decoded", seeded_bytes("o", 40))


def _padding_forgery(sender: bytes):
    """A true codeword whose commitment claims fewer bytes than were encrypted: the extra
    plaintext bytes sit in the padding, which then does not decrypt to zeros."""
    real = encode_payload(
        SMALL, seeded_bytes("pad", 300), seeded_bytes("padk", 32), sender, expiry_slot=EXPIRY
    )
    claimed = layout_for(SMALL, 290)
    assert (claimed.source_symbols, claimed.cap_bundles) == (
        real.layout.source_symbols,
        real.layout.cap_bundles,
    )
    fields = {f: getattr(real.commitment, f) for f in real.commitment.__struct_fields__}
    commitment = PayloadCommitment(**{**fields, "payload_len": 290})
    return EncodedPayload(commitment, commitment_id(commitment), claimed, real.bundles)


# --------------------------------------------------------------------------- tracker + node


def _chain(slots: int, seed: str) -> tuple[list[tuple], dict[bytes, bytes]]:
    """Finalized (header, body) pairs: honest payloads of two sizes, a cheater, payloads
    whose bundles straddle blocks, duplicates and late bundles, plain transactions."""
    key, cheat_key = sender_key(f"{seed}/s"), sender_key(f"{seed}/c")
    payloads: dict[bytes, bytes] = {}
    per_slot: list[dict[int, list]] = [dict() for _ in range(slots)]

    def add(slot: int, encoded, signer, index: int) -> None:
        lane = (index + slot) % LANES
        entries = per_slot[slot].setdefault(lane, [])
        if any(
            e.bundle.bundle_index == index
            and e.ticket.ticket.commitment_id == encoded.commitment_id
            for e in entries
        ):
            return
        entries.append(entry_for(TRUSTED, signer, encoded, index, lane, slot + 1))

    for slot in range(slots):
        for n in range(6):
            size = (100, 700)[n % 2] + slot
            data = seeded_bytes(f"{seed}/{slot}/{n}", size)
            e = encode_payload(
                SMALL, data, seeded_bytes(f"{seed}/k{slot}/{n}", 32), key.public, expiry_slot=EXPIRY
            )
            payloads[e.commitment_id] = data
            kappa = e.layout.kappa
            if n == 5 and slot + 1 < slots:  # straddles two blocks, then a late duplicate
                for i in range(kappa - 1):
                    add(slot, e, key, i)
                add(slot + 1, e, key, kappa - 1)
                add(slot + 1, e, key, 0)
            else:
                for i in range(kappa):
                    add(slot, e, key, i + n % 2)
        cheat = forged_payload(SMALL, 300, cheat_key.public, f"{seed}/cheat{slot}", None)
        for i in range(cheat.layout.kappa):
            add(slot, cheat, cheat_key, i)
    blocks = []
    for slot, lanes in enumerate(per_slot):
        lane_blocks = [
            sign_lane_block(
                TRUSTED,
                KEYS[lane],
                lane,
                slot + 1,
                tuple(
                    sorted(es, key=lambda e: (e.ticket.ticket.commitment_id, e.bundle.bundle_index))
                ),
            )
            for lane, es in lanes.items()
        ]
        txs = [f"tx{slot}/{i}".encode() for i in range(slot % 3)]
        body = BlockBody(build_block_payload(txs, lane_blocks))
        blocks.append((lane_block_header(slot + 1, 0, body), body))
    return blocks, payloads


def _node_lanes() -> NodeLanes:
    return NodeLanes(
        index=0,
        key=KEYS[0],
        scheme=TRUSTED,
        validators=VALIDATORS,
        schedule=schedule_by_name("round-robin", VALIDATORS),
        params=SMALL,
    )


def _lane_only_body(body: BlockBody) -> BlockBody:
    """What `NodeLanes.track` handed the tracker before: the lane blocks re-encoded."""
    blocks = decode_block_payload(body.payload).lane_blocks
    return BlockBody(build_block_payload((), blocks)) if blocks else BlockBody(b"")


@pytest.mark.parametrize("seed", ["a", "b"])
def test_tracker_entry_points_and_node_track_agree(seed: str) -> None:
    blocks, payloads = _chain(5, seed)
    by_body, by_payload, old_node = DecodeTracker(SMALL), DecodeTracker(SMALL), DecodeTracker(SMALL)
    node = _node_lanes()
    executed = rejected = 0
    for header, body in blocks:
        a = by_body.on_finalized(header, body)
        b = by_payload.on_finalized_payload(
            header.seq_num, decode_block_payload(body.payload), header.qc.block_id
        )
        assert a == b
        outcome, offset = node.track(header, body)
        assert offset == 0  # decoded payloads run before the block's transactions
        assert outcome == old_node.on_finalized(header, _lane_only_body(body))
        for event in a.payloads:
            if event.status == "executed":
                executed += 1
                assert event.payload == payloads[event.commitment_id]
            else:
                assert event.status == "rejected" and event.commitment_id not in payloads
                rejected += 1
    assert executed == len(payloads) and rejected == len(blocks)
    assert by_body.execution_order_hash == by_payload.execution_order_hash
    assert node.tracker.execution_order_hash == old_node.execution_order_hash
    assert by_body.counts == by_payload.counts


def test_decoded_payloads_run_first_in_execution_key_order_and_expiry_is_unchanged() -> None:
    blocks, _ = _chain(3, "pos")
    tracker = DecodeTracker(SMALL, pending_ttl_slots=1)
    twin = DecodeTracker(SMALL, pending_ttl_slots=1)
    for header, body in blocks:
        outcome = tracker.on_finalized(header, body)
        assert outcome == twin.on_finalized_payload(
            header.seq_num, decode_block_payload(body.payload), header.qc.block_id
        )
        executed = [e for e in outcome.payloads if e.status == "executed"]
        assert [e.position for e in executed] == list(range(len(executed)))
        parent = header.qc.block_id
        keys = [execution_key(parent, e.commitment_id) for e in executed]
        assert keys == sorted(keys)
        assert all(e.position == -1 for e in outcome.payloads if e.status != "executed")


def test_out_of_order_heights_fail_in_both_entry_points() -> None:
    blocks, _ = _chain(2, "order")
    tracker = DecodeTracker(SMALL)
    tracker.on_finalized(*blocks[0])
    payload = decode_block_payload(blocks[0][1].payload)
    with pytest.raises(ValueError, match="expected finalized height 2"):
        tracker.on_finalized_payload(1, payload, bytes(32))
    with pytest.raises(ValueError, match="expected finalized height 2"):
        tracker.on_finalized(*blocks[0])
    assert tracker.height == 1


def test_node_track_frames_non_canonical_lane_blocks_as_before() -> None:
    """Lane blocks a validator would refuse: empty ones dropped, unsorted ones sorted,
    two for one lane refused, exactly as re-encoding with build_block_payload did."""
    blocks, _ = _chain(1, "frame")
    header, body = blocks[0]
    lane_blocks = decode_block_payload(body.payload).lane_blocks
    assert len(lane_blocks) >= 2
    empty = sign_lane_block(TRUSTED, KEYS[3], 3, 1, ())

    def raw(blocks_: tuple) -> BlockBody:
        return BlockBody(encode_block_payload(BlockPayload((b"t",), blocks_)))

    unsorted = raw((*reversed(lane_blocks), empty))
    node, old = _node_lanes(), DecodeTracker(SMALL)
    assert node.track(header, unsorted) == (old.on_finalized(header, _lane_only_body(unsorted)), 0)
    twice = raw((lane_blocks[0], lane_blocks[0]))
    with pytest.raises(LanePayloadError, match="two lane blocks"):
        _node_lanes().track(header, twice)
