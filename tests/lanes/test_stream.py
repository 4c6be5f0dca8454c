"""The committed stream: tagged symbols, leaves, the lazy bundle stream, the cap and the AONT."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from consensus.lanes.aont import package_transform
from consensus.lanes.codecs import codec_by_id
from consensus.lanes.encoding import bundle_proof_ok, decode_payload, encode_payload
from consensus.lanes.merkle import (
    MAX_POSITION,
    TAG_BYTES,
    MerkleTree,
    bundle_leaf,
    bundle_leaves,
    merkle_root,
    symbol_tag,
)
from consensus.lanes.params import (
    MAX_CAP_EXTRA_BUNDLES,
    LaneParams,
    LaneParamsError,
    layout_for,
    params_for_kappa,
)
from consensus.lanes.wire import Bundle, PayloadCommitment, commitment_id
from tests.lanes.helpers import EXPIRY, RS_SMALL, SMALL, seeded_bytes, sender_key

SENDER = sender_key().public


@pytest.mark.parametrize("params", [SMALL, RS_SMALL], ids=["raptorq", "rs"])
def test_repair_packets_are_the_stream_tagged_with_code_positions(params: LaneParams) -> None:
    layout = layout_for(params, 90)
    data = seeded_bytes("x", layout.transformed_len)
    codec = codec_by_id(params.codec_id)
    args = (data, layout.symbol_size_bytes, layout.repair_symbols)
    stream = codec.repair_stream(*args)
    packets = codec.repair_packets(*args)
    k = layout.source_symbols
    assert len(stream) == len(packets) == layout.repair_symbols
    for i, (symbol, packet) in enumerate(zip(stream, packets, strict=True)):
        assert len(symbol) == layout.symbol_size_bytes
        assert packet == symbol_tag(k + i) + symbol
        assert packet[0] == 0 and int.from_bytes(packet[1:TAG_BYTES], "big") == k + i


def test_symbol_tags_are_24_bit_positions() -> None:
    assert symbol_tag(0) == bytes(4)
    assert symbol_tag(MAX_POSITION) == b"\x00\xff\xff\xff"
    for bad in (-1, MAX_POSITION + 1):
        with pytest.raises(ValueError):
            symbol_tag(bad)
    with pytest.raises(ValueError):  # the last symbol would overflow the position space
        bundle_leaf(0, (b"a", b"b"), MAX_POSITION)
    assert bundle_leaf(0, (b"a",), MAX_POSITION) != bundle_leaf(0, (b"a",), MAX_POSITION - 1)


@pytest.mark.parametrize("bundles", [1, 2, 3, 5, 8, 9])
def test_stream_leaves_equal_per_bundle_leaves_and_root_equals_tree(bundles: int) -> None:
    s_b, k = 3, 17
    symbols = [seeded_bytes(f"s{i}", 16) for i in range(bundles * s_b)]
    tagged = [symbol_tag(k + i) + s for i, s in enumerate(symbols)]
    leaves = bundle_leaves(tagged, s_b)
    expected = [
        bundle_leaf(b, symbols[b * s_b : (b + 1) * s_b], k + b * s_b) for b in range(bundles)
    ]
    assert leaves == expected
    assert merkle_root(leaves) == MerkleTree(leaves).root
    # a leaf binds its index, every byte and the order of its symbols
    swapped = bundle_leaf(0, symbols[:s_b][::-1], k)
    assert swapped != leaves[0] or symbols[0] == symbols[s_b - 1]
    assert bundle_leaf(1, symbols[:s_b], k) != leaves[0]
    with pytest.raises(ValueError):
        bundle_leaves(tagged[:-1], s_b)  # not a whole number of bundles
    with pytest.raises(ValueError):
        bundle_leaves(tagged, 0)
    with pytest.raises(ValueError):
        merkle_root([])


def test_bundle_stream_is_a_lazy_sequence_of_the_committed_bundles() -> None:
    payload = seeded_bytes("lazy", 700)
    key = seeded_bytes("k", 32)
    encoded = encode_payload(SMALL, payload, key, SENDER, expiry_slot=EXPIRY)
    layout = encoded.layout
    bundles = encoded.bundles
    assert len(bundles) == layout.cap_bundles
    stream = codec_by_id("raptorq").repair_stream(
        package_transform(payload, key, layout.transformed_len),
        layout.symbol_size_bytes,
        layout.repair_symbols,
    )
    assert [s for b in bundles for s in b.symbols] == stream
    for index in (0, 1, layout.cap_bundles - 1):
        bundle = bundles[index]
        assert isinstance(bundle, Bundle) and bundle.bundle_index == index
        assert bundle == bundles[index]  # rebuilt on access, equal every time
        assert bundle_proof_ok(bundle)
    assert bundles[-1] == bundles[layout.cap_bundles - 1]
    assert bundles[2:7:2] == (bundles[2], bundles[4], bundles[6])
    assert bundles[layout.cap_bundles :] == ()
    for bad in (layout.cap_bundles, -layout.cap_bundles - 1):
        with pytest.raises(IndexError):
            bundles[bad]


def test_a_single_non_matching_bundle_outside_the_decoded_set_is_rejected() -> None:
    """The full capped stream is re-derived: junk no decoding set contains still rejects."""
    payload = seeded_bytes("tail", 500)
    honest = encode_payload(SMALL, payload, seeded_bytes("k", 32), SENDER, expiry_slot=EXPIRY)
    layout = honest.layout
    groups = [b.symbols for b in honest.bundles]
    last = layout.cap_bundles - 1
    groups[last] = (groups[last][0][::-1], *groups[last][1:])  # one symbol of the last bundle
    s_b, k = layout.symbols_per_bundle, layout.source_symbols
    tree = MerkleTree([bundle_leaf(i, g, k + i * s_b) for i, g in enumerate(groups)])
    fields = {f: getattr(honest.commitment, f) for f in honest.commitment.__struct_fields__}
    forged = PayloadCommitment(**{**fields, "merkle_root": tree.root})
    assert commitment_id(forged) != honest.commitment_id
    tail = Bundle(forged, last, groups[last], tree.proof(last))
    assert bundle_proof_ok(tail)  # a lane cannot tell
    chosen = {i: groups[i] for i in range(layout.kappa)}
    assert decode_payload(layout, forged, chosen).status == "commitment_mismatch"
    assert decode_payload(layout, honest.commitment, chosen).payload == payload


def test_bundle_proof_ok_is_false_not_an_error_for_impossible_positions() -> None:
    encoded = encode_payload(SMALL, b"p" * 100, seeded_bytes("k", 32), SENDER, expiry_slot=EXPIRY)
    fields = {f: getattr(encoded.commitment, f) for f in encoded.commitment.__struct_fields__}
    huge = PayloadCommitment(**{**fields, "source_symbols": MAX_POSITION})
    bundle = encoded.bundles[1]
    assert not bundle_proof_ok(Bundle(huge, 1, bundle.symbols, bundle.proof))


def test_cap_is_proportional_plus_absolute_and_validated() -> None:
    for extra in (0, 5, MAX_CAP_EXTRA_BUNDLES):
        params = LaneParams(cap_factor=3, cap_extra_bundles=extra)
        layout = layout_for(params, 5000)
        assert layout.cap_bundles == 3 * layout.kappa + extra
    for extra in (-1, MAX_CAP_EXTRA_BUNDLES + 1):
        with pytest.raises(LaneParamsError):
            LaneParams(cap_extra_bundles=extra)
    default = LaneParams()
    assert (default.cap_factor, default.cap_extra_bundles) == (2, 24)
    assert params_for_kappa(4096, 8, cap_factor=3, cap_extra_bundles=7).cap_extra_bundles == 7
    assert params_for_kappa(4096, 8).cap_extra_bundles == default.cap_extra_bundles
    with pytest.raises(LaneParamsError):  # RS: K + cap·s_b must fit one 255-symbol codeword
        layout_for(
            LaneParams(
                codec_id="rs",
                symbol_size_bytes=8,
                symbols_per_bundle=4,
                decode_margin_symbols=0,
                cap_extra_bundles=64,
            ),
            40,
        )


def test_package_transform_matches_its_definition() -> None:
    """x' = ChaCha20_k(x ‖ 0^pad) ‖ (k ⊕ SHA-256(domain ‖ c)), computed independently."""
    key = seeded_bytes("aont", 32)
    for payload, length in ((b"", 32), (b"abc", 96), (seeded_bytes("p", 5000), 6144)):
        body = payload + bytes(length - 32 - len(payload))
        encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
        c = encryptor.update(body) + encryptor.finalize()
        mask = hashlib.sha256(b"sedna/aont/1\x00" + c).digest()
        expected = c + bytes(a ^ b for a, b in zip(key, mask, strict=True))
        assert package_transform(payload, key, length) == expected
