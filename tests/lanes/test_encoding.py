"""Layout, codecs, package transform, Merkle commitment, decoding and privacy."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.lanes.aont import AontError, invert_package_transform, package_transform
from consensus.lanes.codecs import codec_by_id
from consensus.lanes.encoding import (
    bundle_proof_ok,
    decode_payload,
    encode_payload,
    encode_payloads,
    layout_of,
)
from consensus.lanes.merkle import (
    TAG_BYTES,
    MerkleTree,
    bundle_leaf,
    bundle_leaves,
    tree_depth,
    verify_proof,
)
from consensus.lanes.params import (
    AONT_KEY_BYTES,
    MIN_UNKNOWN_BITS,
    LaneParams,
    LaneParamsError,
    layout_for,
    params_for_kappa,
)
from tests.lanes.helpers import EXPIRY, RS_SMALL, SMALL, forged_payload, seeded_bytes, sender_key

SENDER = sender_key().public


def _bundles(encoded, indices):
    return {i: encoded.bundles[i].symbols for i in indices}


# --------------------------------------------------------------------------- layout


@given(
    payload_len=st.integers(0, 20_000),
    t=st.sampled_from([8, 16, 64, 200, 1024]),
    s_b=st.integers(1, 16),
    h=st.integers(0, 3),
)
def test_layout_formula_and_privacy_margin(payload_len: int, t: int, s_b: int, h: int) -> None:
    # rule: κ−1 bundles hold fewer than K symbols and leave >= 128 bits to guess
    if h >= s_b or 8 * t * (s_b - h) < MIN_UNKNOWN_BITS:
        with pytest.raises(LaneParamsError):
            LaneParams(symbol_size_bytes=t, symbols_per_bundle=s_b, decode_margin_symbols=h)
        return
    params = LaneParams(symbol_size_bytes=t, symbols_per_bundle=s_b, decode_margin_symbols=h)
    layout = layout_for(params, payload_len)
    k_min = -(-(payload_len + AONT_KEY_BYTES) // t)
    assert layout.kappa == -(-(k_min + h) // s_b)
    assert layout.source_symbols == layout.kappa * s_b - h >= k_min
    assert layout.transformed_len >= payload_len + AONT_KEY_BYTES
    # κ bundles carry K + h symbols; κ−1 bundles carry fewer than K
    assert layout.kappa * s_b == layout.source_symbols + h
    assert (layout.kappa - 1) * s_b < layout.source_symbols
    assert layout.cap_bundles == params.cap_factor * layout.kappa + params.cap_extra_bundles


@settings(max_examples=60, deadline=None)
@given(payload_len=st.integers(0, 3000), kappa=st.integers(1, 96))
def test_params_for_kappa_hits_kappa_or_no_layout_exists(payload_len: int, kappa: int) -> None:
    try:
        params = params_for_kappa(payload_len, kappa)
    except LaneParamsError:
        # brute force: no bundle size and symbol size reach exactly κ
        a = payload_len + AONT_KEY_BYTES
        for s_b in range(3, 65):
            for t in range(8, a + 8, 8):
                private = 8 * t * (s_b - 2) >= MIN_UNKNOWN_BITS
                assert not private or -(-(-(-a // t) + 2) // s_b) != kappa, (s_b, t)
        return
    assert layout_for(params, payload_len).kappa == kappa
    assert 8 * params.symbol_size_bytes * (params.symbols_per_bundle - 2) >= MIN_UNKNOWN_BITS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"codec_id": "lt"},
        {"symbol_size_bytes": 12},  # not a multiple of 8 for raptorq
        {"symbol_size_bytes": 0},
        {"symbols_per_bundle": 0},
        {"symbols_per_bundle": 2, "decode_margin_symbols": 2},
        {"cap_factor": 0},
        {"max_entries_per_lane_block": 0},
    ],
)
def test_bad_params_are_refused(kwargs: dict) -> None:
    with pytest.raises(LaneParamsError):
        LaneParams(**kwargs)


def _unchecked_params(**fields) -> LaneParams:
    """LaneParams built around its validation (only to show what the rule prevents)."""
    params = object.__new__(LaneParams)
    for name in LaneParams.__dataclass_fields__:
        default = LaneParams.__dataclass_fields__[name].default
        object.__setattr__(params, name, fields.get(name, default))
    return params


def test_kappa_minus_one_bundles_leaving_few_unknown_bits_are_brute_forced_so_refused() -> None:
    """With 8 unknown bits below κ (T = 1 B, s_b = 2, h = 1), κ−1 bundles plus 256 guesses
    of the one missing symbol recover the payload: the commitment check confirms the right
    guess. Such layouts are refused; 128 unknown bits is the smallest accepted."""
    fields = {
        "codec_id": "rs",
        "symbol_size_bytes": 1,
        "symbols_per_bundle": 2,
        "decode_margin_symbols": 1,
        "cap_factor": 2,
        "cap_extra_bundles": 0,
    }
    weak = _unchecked_params(**fields)
    payload = b"transfer 10"
    encoded = encode_payload(weak, payload, seeded_bytes("secret", 32), SENDER, expiry_slot=EXPIRY)
    kappa = encoded.layout.kappa
    known = _bundles(encoded, range(kappa - 1))  # what κ−1 lanes (or a cartel) hold
    assert decode_payload(encoded.layout, encoded.commitment, known).status == "undecodable"
    recovered = set()
    for guess in range(256):
        trial = {**known, kappa - 1: (bytes([guess]), b"\x00")}
        result = decode_payload(encoded.layout, encoded.commitment, trial)
        if result.status == "decoded":
            recovered.add(result.payload)
    assert recovered == {payload}
    with pytest.raises(LaneParamsError, match="only 8 unknown bits"):
        LaneParams(**fields)
    with pytest.raises(LaneParamsError, match="unknown bits"):  # 120 bits: still refused
        LaneParams(**{**fields, "symbol_size_bytes": 15})
    assert LaneParams(**{**fields, "symbol_size_bytes": 16})  # 128 bits: accepted


def test_payload_limits() -> None:
    with pytest.raises(LaneParamsError):
        layout_for(SMALL, SMALL.max_payload_bytes + 1)
    with pytest.raises(LaneParamsError):
        layout_for(RS_SMALL, 4096)  # K + cap·s_b > 255


# --------------------------------------------------------------------------- transform


def test_package_transform_round_trip_and_canonical_padding() -> None:
    key = seeded_bytes("k", 32)
    payload = b"hello lanes" * 7
    transformed = package_transform(payload, key, 160)
    assert len(transformed) == 160
    assert invert_package_transform(transformed, len(payload)) == payload
    with pytest.raises(AontError):  # padding decrypts to non-zero bytes
        invert_package_transform(transformed, len(payload) - 1)
    flipped = bytes([transformed[0] ^ 1]) + transformed[1:]  # any change scrambles the key
    with pytest.raises(AontError):
        invert_package_transform(flipped, len(payload))
    with pytest.raises(ValueError):
        package_transform(payload, key[:16], 160)
    with pytest.raises(ValueError):
        package_transform(payload, key, len(payload) + 31)


# --------------------------------------------------------------------------- merkle


@given(leaves=st.integers(1, 70), index=st.integers(0, 69))
def test_merkle_proofs(leaves: int, index: int) -> None:
    index %= leaves
    hashes = [bundle_leaf(i, (bytes([i]) * 8,), i) for i in range(leaves)]
    tree = MerkleTree(hashes)
    proof = tree.proof(index)
    assert len(proof) == tree_depth(leaves)
    assert verify_proof(tree.root, leaves, index, hashes[index], proof)
    other = (index + 1) % leaves
    if other != index:
        assert not verify_proof(tree.root, leaves, other, hashes[index], proof)
    assert not verify_proof(tree.root, leaves, index, bundle_leaf(999, (b"x",), 999), proof)
    assert not verify_proof(tree.root, leaves, index, hashes[index], (*proof, bytes(32)))
    assert not verify_proof(tree.root, leaves, leaves, hashes[index], proof)


# --------------------------------------------------------------------------- round trips


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload_len=st.integers(0, 6000), offset=st.integers(0, 12), seed=st.integers(0, 2**32))
def test_raptorq_round_trip_from_kappa_bundles(payload_len: int, offset: int, seed: int) -> None:
    payload = seeded_bytes(f"payload/{seed}", payload_len)
    encoded = encode_payload(
        SMALL, payload, seeded_bytes(f"key/{seed}", 32), SENDER, expiry_slot=EXPIRY
    )
    layout = encoded.layout
    start = offset % (layout.cap_bundles - layout.kappa + 1)
    chosen = range(start, start + layout.kappa)
    result = decode_payload(layout, encoded.commitment, _bundles(encoded, chosen))
    assert result.status == "decoded"
    assert result.payload == payload


def test_round_trip_many_sizes_and_any_kappa_subset() -> None:
    for payload_len in (0, 1, 31, 32, 33, 200, 255, 256, 257, 1000, 4096, 10_000):
        payload = seeded_bytes(f"sizes/{payload_len}", payload_len)
        encoded = encode_payload(SMALL, payload, seeded_bytes("k", 32), SENDER, expiry_slot=EXPIRY)
        kappa, cap = encoded.layout.kappa, encoded.layout.cap_bundles
        spread = range(cap - 1, cap - 1 - 2 * kappa, -2)[:kappa]  # scattered, from the end
        for chosen in (range(kappa), spread):
            result = decode_payload(encoded.layout, encoded.commitment, _bundles(encoded, chosen))
            assert (result.status, result.payload) == ("decoded", payload), payload_len


@pytest.mark.parametrize("params", [SMALL, RS_SMALL], ids=["raptorq", "rs"])
def test_decodes_from_exactly_k_symbols_and_never_below(params: LaneParams) -> None:
    payload = seeded_bytes("exact", 100)
    encoded = encode_payload(params, payload, seeded_bytes("k", 32), SENDER, expiry_slot=EXPIRY)
    layout = encoded.layout
    codec = codec_by_id(params.codec_id)
    stream = [s for b in encoded.bundles for s in b.symbols]
    k = layout.source_symbols
    args = (layout.transformed_len, layout.symbol_size_bytes, layout.repair_symbols)
    below = codec.decode(*args, {i: stream[i] for i in range(3, 3 + k - 1)})
    assert below is None
    exact = codec.decode(*args, {i: stream[i] for i in range(5, 5 + k)})
    if params.codec_id == "rs":  # MDS: any K symbols decode
        assert exact is not None
    if exact is not None:
        assert invert_package_transform(exact, 100) == payload
    # κ−1 bundles never decode; κ bundles do
    assert (
        decode_payload(
            layout, encoded.commitment, _bundles(encoded, range(layout.kappa - 1))
        ).status
        == "undecodable"
    )
    full = decode_payload(layout, encoded.commitment, _bundles(encoded, range(1, layout.kappa + 1)))
    assert (full.status, full.payload) == ("decoded", payload)


def test_reed_solomon_oracle_agrees_with_raptorq() -> None:
    for payload_len, seed in ((0, "a"), (17, "b"), (40, "c"), (57, "d")):
        payload = seeded_bytes(seed, payload_len)
        key = seeded_bytes("key/" + seed, 32)
        rq = encode_payload(SMALL, payload, key, SENDER, expiry_slot=EXPIRY)
        rs = encode_payload(RS_SMALL, payload, key, SENDER, expiry_slot=EXPIRY)
        assert rq.commitment_id != rs.commitment_id  # the codec id is committed
        rq_out = decode_payload(
            rq.layout, rq.commitment, _bundles(rq, range(2, 2 + rq.layout.kappa))
        )
        last = rs.layout.cap_bundles
        rs_out = decode_payload(
            rs.layout, rs.commitment, _bundles(rs, range(last - rs.layout.kappa, last))
        )
        assert rq_out.status == rs_out.status == "decoded"
        assert rq_out.payload == rs_out.payload == payload


# --------------------------------------------------------------------------- commitment


def test_commitment_binds_layout_and_proofs_bind_symbols() -> None:
    encoded = encode_payload(SMALL, b"x" * 300, seeded_bytes("k", 32), SENDER, expiry_slot=EXPIRY)
    assert layout_of(SMALL, encoded.commitment) == encoded.layout
    assert layout_of(RS_SMALL, encoded.commitment) is None  # other codec
    for field, value in (
        ("kappa", encoded.commitment.kappa + 1),
        ("cap_bundles", 999),
        ("payload_len", 9000),
        ("symbol_size_bytes", 72),
    ):
        forged = encoded.commitment.__class__(
            **{
                **{f: getattr(encoded.commitment, f) for f in encoded.commitment.__struct_fields__},
                field: value,
            }
        )
        assert layout_of(SMALL, forged) is None, field
    bundle = encoded.bundles[3]
    assert bundle_proof_ok(bundle)
    tampered_symbol = bytes([bundle.symbols[1][0] ^ 1]) + bundle.symbols[1][1:]
    for tampered in (
        bundle.__class__(
            bundle.commitment,
            3,
            (bundle.symbols[0], tampered_symbol, *bundle.symbols[2:]),
            bundle.proof,
        ),
        bundle.__class__(bundle.commitment, 4, bundle.symbols, bundle.proof),
        bundle.__class__(bundle.commitment, 3, bundle.symbols, bundle.proof[:-1]),
        bundle.__class__(bundle.commitment, 3, bundle.symbols[::-1], bundle.proof),
    ):
        assert not bundle_proof_ok(tampered)


@pytest.mark.parametrize("mixed", [False, True], ids=["garbage", "half-honest"])
def test_symbols_not_matching_the_commitment_are_rejected_from_any_subset(mixed: bool) -> None:
    payload = seeded_bytes("victim", 500)
    honest = encode_payload(SMALL, payload, seeded_bytes("k", 32), SENDER, expiry_slot=EXPIRY)
    forged = forged_payload(SMALL, 500, SENDER, "forge", honest if mixed else None)
    layout = forged.layout
    assert all(bundle_proof_ok(b) for b in forged.bundles)  # lanes cannot tell
    kappa = layout.kappa
    for chosen in (range(kappa), range(layout.cap_bundles - kappa, layout.cap_bundles)):
        result = decode_payload(layout, forged.commitment, _bundles(forged, chosen))
        # the honest half decodes to the honest x', but it does not re-encode to the root
        assert result.status in ("commitment_mismatch", "undecodable")
        assert result.payload is None
    honest_half = decode_payload(layout, forged.commitment, _bundles(forged, range(kappa)))
    assert honest_half.status == ("commitment_mismatch")


# --------------------------------------------------------------------------- privacy


@pytest.mark.parametrize("params", [SMALL, RS_SMALL], ids=["raptorq", "rs"])
def test_fewer_than_kappa_bundles_reveal_nothing(params: LaneParams) -> None:
    # low-entropy, recognisable plaintext: any leak would show up as a substring
    payload = (b"PAY-ALICE-100-COINS;" * 50)[: 120 if params.codec_id == "rs" else 1000]
    encoded = encode_payload(
        params, payload, seeded_bytes("secret", 32), SENDER, expiry_slot=EXPIRY
    )
    layout = encoded.layout
    below = range(layout.kappa - 1)
    assert (
        decode_payload(layout, encoded.commitment, _bundles(encoded, below)).status == "undecodable"
    )
    windows = {payload[i : i + 8] for i in range(len(payload) - 7)}
    for bundle in encoded.bundles:
        for symbol in bundle.symbols:
            assert not any(symbol[i : i + 8] in windows for i in range(len(symbol) - 7))
    # and the systematic part (x' itself) is never sent: no symbol equals a slice of x'
    transformed = package_transform(payload, seeded_bytes("secret", 32), layout.transformed_len)
    t = layout.symbol_size_bytes
    source = {transformed[i : i + t] for i in range(0, len(transformed), t)}
    assert not any(s in source for b in encoded.bundles for s in b.symbols)


# --------------------------------------------------------------------------- batched encode


def _reference_encoding(params: LaneParams, payload: bytes, key: bytes):
    """One payload encoded step by step, without the batched path: (root, bundles as
    (symbols, proof))."""
    layout = layout_for(params, len(payload))
    transformed = package_transform(payload, key, layout.transformed_len)
    packets = codec_by_id(params.codec_id).repair_packets(
        transformed, layout.symbol_size_bytes, layout.repair_symbols
    )
    tree = MerkleTree(bundle_leaves(packets, layout.symbols_per_bundle))
    s_b = layout.symbols_per_bundle
    bundles = [
        (tuple(p[TAG_BYTES:] for p in packets[b * s_b : (b + 1) * s_b]), tree.proof(b))
        for b in range(layout.cap_bundles)
    ]
    return tree.root, bundles


@pytest.mark.parametrize("params", [SMALL, RS_SMALL], ids=["raptorq", "rs"])
def test_batched_encode_is_payload_by_payload_encode(params: LaneParams) -> None:
    """Equal-length payloads share one codec call (the wide RaptorQ encoder); each
    commitment and every bundle is what encoding that payload alone gives, whatever
    else is in the batch (lengths mixed, order kept)."""
    lengths = [300, 300, 1, 300, 1000, 1, 300] if params is SMALL else [20, 20, 3, 20]
    items = [
        (seeded_bytes(f"p{n}", length), seeded_bytes(f"k{n}", AONT_KEY_BYTES), SENDER, EXPIRY + n)
        for n, length in enumerate(lengths)
    ]
    batched = encode_payloads(params, items)
    assert len(batched) == len(items)
    for (payload, key, sender, expiry), encoded in zip(items, batched, strict=True):
        root, bundles = _reference_encoding(params, payload, key)
        assert encoded.commitment.merkle_root == root
        assert encoded.commitment.sender == sender and encoded.commitment.expiry_slot == expiry
        assert encoded.commitment.payload_len == len(payload)
        assert len(encoded.bundles) == len(bundles)
        for index, (symbols, proof) in enumerate(bundles):
            bundle = encoded.bundles[index]
            assert (bundle.bundle_index, bundle.symbols, bundle.proof) == (index, symbols, proof)
            assert bundle_proof_ok(bundle)
        assert encoded.bundles[-1] == encoded.bundles[len(bundles) - 1]
        with pytest.raises(IndexError):
            encoded.bundles[len(bundles)]
        single = encode_payload(params, payload, key, sender, expiry_slot=expiry)
        assert single.commitment == encoded.commitment
        kappa = encoded.layout.kappa
        decoded = decode_payload(
            encoded.layout, encoded.commitment, _bundles(encoded, range(1, 1 + kappa))
        )
        assert (decoded.status, decoded.payload) == ("decoded", payload)
    assert encode_payloads(params, []) == []
