"""Sender-side encoding, per-bundle verification and commitment-checked decoding.

Pipeline: payload → package transform (aont) → repair stream of cap·s_b symbols
(codecs) → bundles of s_b symbols → Merkle root over bundle leaves (merkle) →
`PayloadCommitment`.

Cost of the cap (documented in docs/lanes.md): the sender encodes and hashes the whole
capped stream once (cap·s_b·T = cap_factor·κ·s_b·T bytes, about cap_factor × the
payload); every node re-encodes it once at decode time to check the commitment.

Why re-encode at decode: a Merkle root alone does not prove that the committed symbols
are a codeword of *one* payload. A decoded x' is accepted only if re-encoding it
reproduces the committed root exactly; then every committed symbol is the encoding of
that x', so acceptance and the payload do not depend on which bundles were finalized.
A sender whose symbols do not match its commitment is rejected, and since all nodes
decode the same finalized bundles, identically everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from consensus.lanes.aont import AontError, invert_package_transform, package_transform
from consensus.lanes.codecs import codec_by_id
from consensus.lanes.merkle import MerkleTree, bundle_leaf, verify_proof
from consensus.lanes.params import LaneParams, LaneParamsError, PayloadLayout, layout_for
from consensus.lanes.wire import Bundle, PayloadCommitment, commitment_id


@dataclass(frozen=True, slots=True)
class EncodedPayload:
    """A payload ready to send: its commitment and every bundle of the capped stream."""

    commitment: PayloadCommitment
    commitment_id: bytes
    layout: PayloadLayout
    bundles: tuple[Bundle, ...]


def _bundle_symbols(layout: PayloadLayout, stream: Sequence[bytes]) -> list[tuple[bytes, ...]]:
    s_b = layout.symbols_per_bundle
    return [tuple(stream[b * s_b : (b + 1) * s_b]) for b in range(layout.cap_bundles)]


def _commit(
    layout: PayloadLayout, codec_id: str, transformed: bytes
) -> tuple[list[tuple[bytes, ...]], MerkleTree]:
    stream = codec_by_id(codec_id).repair_stream(
        transformed, layout.symbol_size_bytes, layout.repair_symbols
    )
    groups = _bundle_symbols(layout, stream)
    tree = MerkleTree([bundle_leaf(i, symbols) for i, symbols in enumerate(groups)])
    return groups, tree


def encode_payload(
    params: LaneParams, payload: bytes, aont_key: bytes, sender: bytes
) -> EncodedPayload:
    """Encode and commit. `aont_key`: 32 fresh secret bytes from the caller; `sender`: its key."""
    layout = layout_for(params, len(payload))
    transformed = package_transform(payload, aont_key, layout.transformed_len)
    groups, tree = _commit(layout, params.codec_id, transformed)
    commitment = PayloadCommitment(
        codec_id=params.codec_id,  # type: ignore[arg-type]
        sender=sender,
        payload_len=layout.payload_len,
        symbol_size_bytes=layout.symbol_size_bytes,
        symbols_per_bundle=layout.symbols_per_bundle,
        decode_margin_symbols=layout.decode_margin_symbols,
        kappa=layout.kappa,
        source_symbols=layout.source_symbols,
        cap_bundles=layout.cap_bundles,
        merkle_root=tree.root,
    )
    bundles = tuple(
        Bundle(commitment=commitment, bundle_index=i, symbols=symbols, proof=tree.proof(i))
        for i, symbols in enumerate(groups)
    )
    return EncodedPayload(commitment, commitment_id(commitment), layout, bundles)


def layout_of(params: LaneParams, commitment: PayloadCommitment) -> PayloadLayout | None:
    """The commitment's layout if it is exactly what the chain's params derive, else None."""
    if commitment.codec_id != params.codec_id:
        return None
    try:
        layout = layout_for(params, commitment.payload_len)
    except LaneParamsError:
        return None
    # rule: a commitment's layout fields are the ones the chain parameters derive
    if (
        commitment.symbol_size_bytes != layout.symbol_size_bytes
        or commitment.symbols_per_bundle != layout.symbols_per_bundle
        or commitment.decode_margin_symbols != layout.decode_margin_symbols
        or commitment.kappa != layout.kappa
        or commitment.source_symbols != layout.source_symbols
        or commitment.cap_bundles != layout.cap_bundles
    ):
        return None
    return layout


def bundle_shape_ok(layout: PayloadLayout, bundle: Bundle) -> bool:
    """Index inside the cap, s_b symbols of T bytes each."""
    return (
        bundle.bundle_index < layout.cap_bundles
        and len(bundle.symbols) == layout.symbols_per_bundle
        and all(len(symbol) == layout.symbol_size_bytes for symbol in bundle.symbols)
    )


def bundle_proof_ok(bundle: Bundle) -> bool:
    """Every symbol of the bundle is committed at its stream position (no decoding)."""
    commitment = bundle.commitment
    leaf = bundle_leaf(bundle.bundle_index, bundle.symbols)
    return verify_proof(
        commitment.merkle_root, commitment.cap_bundles, bundle.bundle_index, leaf, bundle.proof
    )


DecodeStatus = Literal["decoded", "undecodable", "commitment_mismatch"]


@dataclass(frozen=True, slots=True)
class DecodeResult:
    status: DecodeStatus
    payload: bytes | None = None


def decode_payload(
    layout: PayloadLayout,
    commitment: PayloadCommitment,
    bundles: Mapping[int, Sequence[bytes]],
) -> DecodeResult:
    """Decode from {bundle index: symbols} and check the result against the commitment.

    "undecodable": the symbols do not yet determine x' (wait for more bundles).
    "commitment_mismatch": they decode, but x' does not re-encode to the committed root
    or does not invert to a canonical payload (final: reject the payload).
    """
    codec = codec_by_id(commitment.codec_id)
    s_b = layout.symbols_per_bundle
    symbols: dict[int, bytes] = {}
    for index in sorted(bundles):
        for offset, symbol in enumerate(bundles[index]):
            symbols[index * s_b + offset] = symbol
    transformed = codec.decode(
        layout.transformed_len, layout.symbol_size_bytes, layout.repair_symbols, symbols
    )
    if transformed is None:
        return DecodeResult("undecodable")
    _, tree = _commit(layout, commitment.codec_id, transformed)
    # rule: the decoded payload re-encodes to exactly the committed stream
    if tree.root != commitment.merkle_root:
        return DecodeResult("commitment_mismatch")
    try:
        payload = invert_package_transform(transformed, layout.payload_len)
    except AontError:
        return DecodeResult("commitment_mismatch")
    return DecodeResult("decoded", payload)
