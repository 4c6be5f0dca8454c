"""Sender-side encoding, per-bundle verification and commitment-checked decoding.

Pipeline: payload → package transform (aont) → repair stream of cap·s_b symbols
(codecs) → bundles of s_b symbols → Merkle root over bundle leaves (merkle) →
`PayloadCommitment`.

Cost of the cap (documented in docs/lanes.md): the sender encodes and hashes the whole
capped stream once (cap·s_b·T bytes, cap = cap_factor·κ + cap_extra_bundles: about 2×
the payload for large payloads by default); every node re-encodes and re-hashes it once
per payload, at decode time, to check the commitment. Both hash the codec's output as it
comes (tagged symbols, no per-symbol copies); the sender materialises a `Bundle` (symbol
bytes + Merkle path) only when one is asked for, so it copies only the bundles it sends.

Why re-encode at decode: a Merkle root alone does not prove that the committed symbols
are a codeword of *one* payload. A decoded x' is accepted only if re-encoding it
reproduces the committed root exactly; then every committed symbol is the encoding of
that x', so acceptance and the payload do not depend on which bundles were finalized.
A sender whose symbols do not match its commitment is rejected, and since all nodes
decode the same finalized bundles, identically everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, overload

from consensus.lanes.aont import AontError, invert_package_transform, package_transform
from consensus.lanes.codecs import codec_by_id
from consensus.lanes.merkle import (
    MAX_POSITION,
    TAG_BYTES,
    MerkleTree,
    bundle_leaf,
    bundle_leaves,
    merkle_root,
    stream_bundle_leaves,
    verify_proof,
)
from consensus.lanes.params import LaneParams, LaneParamsError, PayloadLayout, layout_for
from consensus.lanes.wire import Bundle, PayloadCommitment, commitment_id


@dataclass(frozen=True, slots=True)
class EncodedPayload:
    """A payload ready to send: its commitment and every bundle of the capped stream.

    `bundles[i]` is bundle i (any `Sequence[Bundle]`; `encode_payload` gives a lazy one).
    """

    commitment: PayloadCommitment
    commitment_id: bytes
    layout: PayloadLayout
    bundles: Sequence[Bundle]


class BundleStream(Sequence[Bundle]):
    """The capped stream's bundles, built on access from the encoder's output and the tree.

    Holds the stream once (the codec's tagged symbols, `TAG_BYTES + T` bytes each, back to
    back in one byte string) and the tree levels; a `Bundle` (symbol bytes + its Merkle
    path) is made only when indexed, so a sender that stops after a few bundles never
    copies the rest.
    """

    __slots__ = ("_commitment", "_s_b", "_stream", "_tagged_bytes", "_tree")

    def __init__(
        self,
        commitment: PayloadCommitment,
        stream: bytes,
        tagged_symbol_bytes: int,
        symbols_per_bundle: int,
        tree: MerkleTree,
    ):
        if len(stream) != tree.leaf_count * symbols_per_bundle * tagged_symbol_bytes:
            raise ValueError("stream length does not match the tree")
        self._commitment = commitment
        self._stream = stream
        self._tagged_bytes = tagged_symbol_bytes
        self._s_b = symbols_per_bundle
        self._tree = tree

    def __len__(self) -> int:
        return self._tree.leaf_count

    def _bundle(self, index: int) -> Bundle:
        step = self._tagged_bytes
        start = index * self._s_b * step + TAG_BYTES
        stream = self._stream
        symbols = tuple(
            stream[offset : offset + step - TAG_BYTES]
            for offset in range(start, start + self._s_b * step, step)
        )
        return Bundle(self._commitment, index, symbols, self._tree.proof(index))

    @overload
    def __getitem__(self, index: int) -> Bundle: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Bundle, ...]: ...

    def __getitem__(self, index: int | slice) -> Bundle | tuple[Bundle, ...]:
        if isinstance(index, slice):
            return tuple(self._bundle(i) for i in range(*index.indices(len(self))))
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"bundle {index} outside [0, {count})")
        return self._bundle(index % count)


def _stream(layout: PayloadLayout, codec_id: str, transformed: bytes) -> list[bytes]:
    return codec_by_id(codec_id).repair_packets(
        transformed, layout.symbol_size_bytes, layout.repair_symbols
    )


def encode_payload(
    params: LaneParams, payload: bytes, aont_key: bytes, sender: bytes, *, expiry_slot: int
) -> EncodedPayload:
    """Encode and commit. `aont_key`: 32 fresh secret bytes from the caller; `sender`: its
    key; `expiry_slot`: the last slot its tickets may name (at most
    `params.max_lifetime_slots` after each ticket's slot, so pick it from the first slot)."""
    return encode_payloads(params, [(payload, aont_key, sender, expiry_slot)])[0]


EncodeItem = tuple[bytes, bytes, bytes, int]  # (payload, aont key, sender, expiry slot)


def encode_payloads(params: LaneParams, items: Sequence[EncodeItem]) -> list[EncodedPayload]:
    """`[encode_payload(params, *item) for item in items]`, with the codec work batched.

    Payloads of the same length share a layout, and their repair streams come from one
    codec call (`repair_streams`: for RaptorQ one wide encoder per batch, byte for byte
    the streams of separate calls, as at decode time). The package transform, leaves and
    tree stay per payload. Each result depends on its own item only.
    """
    layouts = [layout_for(params, len(payload)) for payload, _, _, _ in items]
    transformed = [
        package_transform(payload, key, layout.transformed_len)
        for (payload, key, _, _), layout in zip(items, layouts, strict=True)
    ]
    groups: dict[PayloadLayout, list[int]] = {}
    for n, layout in enumerate(layouts):
        groups.setdefault(layout, []).append(n)
    codec = codec_by_id(params.codec_id)
    results: list[EncodedPayload | None] = [None] * len(items)
    for layout, members in groups.items():
        streams = codec.repair_streams(
            [transformed[n] for n in members], layout.symbol_size_bytes, layout.repair_symbols
        )
        tagged_bytes = TAG_BYTES + layout.symbol_size_bytes
        for n, stream in zip(members, streams, strict=True):
            _, _, sender, expiry_slot = items[n]
            tree = MerkleTree(stream_bundle_leaves(stream, tagged_bytes, layout.symbols_per_bundle))
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
                expiry_slot=expiry_slot,
            )
            bundles = BundleStream(
                commitment, stream, tagged_bytes, layout.symbols_per_bundle, tree
            )
            results[n] = EncodedPayload(commitment, commitment_id(commitment), layout, bundles)
    return [r for r in results if r is not None]


# layout_for is pure and both arguments are immutable: one derivation per (params, length)
# serves every bundle and payload of that length (admission and tracker); errors re-raise
_layout_for = functools.lru_cache(maxsize=4096)(layout_for)


def layout_of(params: LaneParams, commitment: PayloadCommitment) -> PayloadLayout | None:
    """The commitment's layout if it is exactly what the chain's params derive, else None."""
    if commitment.codec_id != params.codec_id:
        return None
    try:
        layout = _layout_for(params, commitment.payload_len)
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
    s_b = commitment.symbols_per_bundle
    first_position = commitment.source_symbols + bundle.bundle_index * s_b
    # rule: every symbol position fits the 24-bit code position (else no such symbol exists)
    if first_position + len(bundle.symbols) - 1 > MAX_POSITION:
        return False
    leaf = bundle_leaf(bundle.bundle_index, bundle.symbols, first_position)
    return verify_proof(
        commitment.merkle_root, commitment.cap_bundles, bundle.bundle_index, leaf, bundle.proof
    )


DecodeStatus = Literal["decoded", "undecodable", "commitment_mismatch"]


@dataclass(frozen=True, slots=True)
class DecodeResult:
    status: DecodeStatus
    payload: bytes | None = None


_UNDECODABLE = DecodeResult("undecodable")
_MISMATCH = DecodeResult("commitment_mismatch")


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
    transformed = codec.decode_bundles(
        layout.transformed_len,
        layout.symbol_size_bytes,
        layout.repair_symbols,
        layout.symbols_per_bundle,
        bundles,
    )
    if transformed is None:
        return _UNDECODABLE
    stream = _stream(layout, commitment.codec_id, transformed)
    return _checked(
        layout, commitment, transformed, bundle_leaves(stream, layout.symbols_per_bundle)
    )


def _checked(
    layout: PayloadLayout, commitment: PayloadCommitment, transformed: bytes, leaves: list[bytes]
) -> DecodeResult:
    """The verdict on a decoded x' whose re-encoded stream has these bundle leaves."""
    # rule: the decoded payload re-encodes to exactly the committed stream
    if merkle_root(leaves) != commitment.merkle_root:
        return _MISMATCH
    try:
        payload = invert_package_transform(transformed, layout.payload_len)
    except AontError:
        return _MISMATCH
    return DecodeResult("decoded", payload)


DecodeItem = tuple[PayloadLayout, PayloadCommitment, Mapping[int, Sequence[bytes]]]


def decode_payloads(items: Sequence[DecodeItem]) -> list[DecodeResult]:
    """`[decode_payload(*item) for item in items]`, with the codec work batched.

    Payloads with the same codec and layout are re-encoded by one codec call, and those
    that also have the same finalized bundle indices are decoded by one (the codec's
    `repair_streams` / `decode_bundles_batch`; for RaptorQ that pays the per-call solve
    once per batch). Each result depends on its own item only, exactly as one by one.
    """
    results: list[DecodeResult] = [_UNDECODABLE] * len(items)
    to_decode: dict[tuple[str, PayloadLayout, tuple[int, ...]], list[int]] = {}
    for n, (layout, commitment, bundles) in enumerate(items):
        codec_by_id(commitment.codec_id)  # an unknown codec raises, as one by one
        key = (commitment.codec_id, layout, tuple(sorted(bundles)))
        to_decode.setdefault(key, []).append(n)
    decoded: dict[tuple[str, PayloadLayout], list[tuple[int, bytes]]] = {}
    for (codec_id, layout, _), members in to_decode.items():
        outputs = codec_by_id(codec_id).decode_bundles_batch(
            layout.transformed_len,
            layout.symbol_size_bytes,
            layout.repair_symbols,
            layout.symbols_per_bundle,
            [items[n][2] for n in members],
        )
        for n, transformed in zip(members, outputs, strict=True):
            if transformed is not None:  # else undecodable: wait for more bundles
                decoded.setdefault((codec_id, layout), []).append((n, transformed))
    for (codec_id, layout), done in decoded.items():
        streams = codec_by_id(codec_id).repair_streams(
            [transformed for _, transformed in done],
            layout.symbol_size_bytes,
            layout.repair_symbols,
        )
        tagged_bytes = TAG_BYTES + layout.symbol_size_bytes
        for (n, transformed), stream in zip(done, streams, strict=True):
            leaves = stream_bundle_leaves(stream, tagged_bytes, layout.symbols_per_bundle)
            results[n] = _checked(layout, items[n][1], transformed, leaves)
    return results
