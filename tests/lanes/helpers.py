"""Shared builders for lane tests (deterministic keys and bytes from seeds)."""

from __future__ import annotations

import hashlib

from consensus.crypto import KeyPair, SignatureScheme, derive_keys
from consensus.lanes.encoding import EncodedPayload
from consensus.lanes.merkle import MerkleTree, bundle_leaf
from consensus.lanes.params import LaneParams, layout_for
from consensus.lanes.tickets import make_ticket, sign_ticket
from consensus.lanes.tracker import BlockOutcome, DecodeTracker
from consensus.lanes.wire import (
    Bundle,
    LaneEntry,
    PayloadCommitment,
    commitment_id,
    decode_block_payload,
)
from consensus.messages import BlockBody, BlockHeader

SMALL = LaneParams(symbol_size_bytes=64, symbols_per_bundle=4, decode_margin_symbols=2)
EXPIRY = 4000  # commitments' expiry_slot in tests (their slots stay far below it)
RS_SMALL = LaneParams(  # the oracle: a short fixed-rate stream keeps pure-Python RS fast
    codec_id="rs",
    symbol_size_bytes=8,
    symbols_per_bundle=4,
    decode_margin_symbols=0,
    cap_factor=2,
    cap_extra_bundles=0,
)


def seeded_bytes(seed: bytes | str, length: int) -> bytes:
    """Deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    if isinstance(seed, str):
        seed = seed.encode()
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:length])


def sender_key(name: str = "sender") -> KeyPair:
    return derive_keys(1, "test-sender/" + name)[0]


def entry_for(
    scheme: SignatureScheme,
    key: KeyPair,
    encoded: EncodedPayload,
    bundle_index: int,
    lane: int,
    slot: int,
    fee: int = 1,
) -> LaneEntry:
    ticket = make_ticket(encoded.commitment_id, lane, slot, bundle_index, fee)
    return LaneEntry(encoded.bundles[bundle_index], sign_ticket(scheme, key, ticket))


def forged_payload(
    params: LaneParams, payload_len: int, sender: bytes, seed: str, honest: EncodedPayload | None
) -> EncodedPayload:
    """A commitment over symbols that are NOT one payload's encoding.

    Every bundle has a valid Merkle proof; without `honest` all symbols are random, with
    it the first half of the stream is honest and the rest random (a "mixed" stream).
    """
    layout = layout_for(params, payload_len)
    groups = []
    for b in range(layout.cap_bundles):
        if honest is not None and b < layout.cap_bundles // 2:
            groups.append(tuple(honest.bundles[b].symbols))
        else:
            groups.append(
                tuple(
                    seeded_bytes(f"{seed}/{b}/{j}", layout.symbol_size_bytes)
                    for j in range(layout.symbols_per_bundle)
                )
            )
    s_b = layout.symbols_per_bundle
    k = layout.source_symbols
    tree = MerkleTree([bundle_leaf(i, g, k + i * s_b) for i, g in enumerate(groups)])
    commitment = PayloadCommitment(
        codec_id=params.codec_id,  # type: ignore[arg-type]
        sender=sender,
        payload_len=payload_len,
        symbol_size_bytes=layout.symbol_size_bytes,
        symbols_per_bundle=layout.symbols_per_bundle,
        decode_margin_symbols=layout.decode_margin_symbols,
        kappa=layout.kappa,
        source_symbols=layout.source_symbols,
        cap_bundles=layout.cap_bundles,
        merkle_root=tree.root,
        expiry_slot=EXPIRY,
    )
    bundles = tuple(
        Bundle(commitment=commitment, bundle_index=i, symbols=g, proof=tree.proof(i))
        for i, g in enumerate(groups)
    )
    return EncodedPayload(commitment, commitment_id(commitment), layout, bundles)


class CertifiedFeed(DecodeTracker):
    """A certified-lanes tracker fed through `on_finalized_lanes`, one cut per height that
    finalizes exactly the block's carried lane blocks (each of slot = height). The pure
    tracker tests run with it as well as with the carried entry point: both must agree
    whenever every lane block is cut in its own slot's height."""

    def __init__(self, params: LaneParams, **kwargs) -> None:
        super().__init__(params, certified=True, **kwargs)

    def on_finalized(self, header: BlockHeader, body: BlockBody) -> BlockOutcome:
        payload = decode_block_payload(body.payload)
        return self.on_finalized_lanes(
            header.seq_num, payload.transactions, payload.lane_blocks, header.qc.block_id
        )


def tracker_modes(module) -> object:
    """An autouse fixture running every test of `module` with the carried and the
    certified entry point of the tracker (`module.DecodeTracker` replaced)."""
    import pytest

    @pytest.fixture(autouse=True, params=["carried", "certified"])
    def tracker_mode(request, monkeypatch):
        if request.param == "certified":
            if request.node.get_closest_marker("carried_only"):
                pytest.skip(request.node.get_closest_marker("carried_only").args[0])
            monkeypatch.setattr(module, "DecodeTracker", CertifiedFeed)
        return request.param

    return tracker_mode
