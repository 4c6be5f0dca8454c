"""Tip cuts: the certified-mode block payload, its validator, and what a cut finalizes.

docs/lanes.md, "Tip cuts". A certified-mode `BlockBody.payload` is version byte 2 then
msgpack of `CutPayload(transactions, tips)`: per lane (strictly by lane), the lane's
tip as a `LaneTip(TipRef, PoA | None)`. The empty byte string is the empty cut, so a
core that proposes `b""` needs no lane awareness.

Validity needs no lane data (`CutValidator`, the core's block validator):
- CUT-FORM: the payload decodes; lanes strictly increasing, each in the validator set;
- CUT-POA: every PoA the cut carries is valid for its tip (f+1 stake);
- CUT-SLOT: a tip carrying a PoA has slot <= the block's height − 2;
- CUT-MONOTONE (`check_link`, needs the parent's cut): every lane of the parent's
  cut is present at a height >= the parent's; at the same height it is the parent's tip
  (same digest) with no PoA; a tip above the parent's, or a new lane, carries a PoA.

Finalizing a cut C whose predecessor is P finalizes, for every lane whose tip rose, the
lane blocks at heights P + 1 .. C walked down from C's digest (`segments`, `walk_down`).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated

import msgspec
from msgspec import Meta

from consensus.codec import body_id
from consensus.crypto import SignatureScheme
from consensus.lanes.chain import Ed25519Poa, LaneChainBlock, LaneTip, PoaScheme, TipRef
from consensus.lanes.wire import CUT_PAYLOAD_VERSION, MAX_TRANSACTIONS, LanePayloadError
from consensus.messages import MAX_PAYLOAD_BYTES, MAX_VALIDATORS, BlockBody, BlockHeader
from consensus.validators import ValidatorSet

MIN_CUT_DELAY_SLOTS = 2  # CUT-SLOT: a tip of slot s is cited at height s + 2 or later


class CutPayload(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What a certified-mode `BlockBody.payload` carries: plain transactions, then the cut."""

    transactions: Annotated[
        tuple[Annotated[bytes, Meta(max_length=MAX_PAYLOAD_BYTES)], ...],
        Meta(max_length=MAX_TRANSACTIONS),
    ]
    tips: Annotated[tuple[LaneTip, ...], Meta(max_length=MAX_VALIDATORS)]


EMPTY_CUT = CutPayload(transactions=(), tips=())
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CutPayload)


def encode_cut_payload(payload: CutPayload) -> bytes:
    if payload == EMPTY_CUT:
        return b""
    data = bytes((CUT_PAYLOAD_VERSION,)) + _encoder.encode(payload)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise LanePayloadError(f"cut payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


def decode_cut_payload(data: bytes) -> CutPayload:
    """A certified-mode `BlockBody.payload` from untrusted bytes (b"" is the empty cut)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LanePayloadError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        return EMPTY_CUT
    if len(data) > MAX_PAYLOAD_BYTES:
        raise LanePayloadError(f"cut payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if data[0] != CUT_PAYLOAD_VERSION:
        raise LanePayloadError(f"unsupported cut payload version {data[0]}")
    try:
        payload = _decoder.decode(memoryview(data)[1:])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise LanePayloadError(f"invalid cut payload: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise LanePayloadError(f"malformed cut payload: {exc}") from None
    if payload == EMPTY_CUT:  # rule: one encoding per payload (empty is b"")
        raise LanePayloadError("non-canonical empty cut payload")
    return payload


def build_cut_payload(transactions: Sequence[bytes], tips: Iterable[LaneTip]) -> bytes:
    """Canonical cut payload bytes (tips sorted by lane, one per lane)."""
    ordered = sorted(tips, key=lambda t: t.tip.lane)
    for first, second in itertools.pairwise(ordered):
        if first.tip.lane == second.tip.lane:
            raise LanePayloadError(f"two tips for lane {first.tip.lane}")
    return encode_cut_payload(CutPayload(tuple(transactions), tuple(ordered)))


def cut_tips(payload: CutPayload) -> dict[int, TipRef]:
    """lane -> tip of a (valid) cut."""
    return {entry.tip.lane: entry.tip for entry in payload.tips}


class CutValidator:
    """The core's `BlockValidator` in certified mode: pure, deterministic, no lane data.

    `check` runs CUT-FORM, CUT-POA and CUT-SLOT (the core's B-APP); `check_link` runs
    CUT-MONOTONE against the parent block (the core's B-APP-LINK). Verified PoAs are cached (bounded) so a reproposal or a
    sync does not verify them again; a cache may be shared by several simulated nodes.
    """

    def __init__(
        self,
        validators: ValidatorSet,
        scheme: SignatureScheme,
        max_cached_poas: int = 65_536,
        poa: PoaScheme | None = None,
    ):
        self.validators = validators
        self.scheme = scheme
        self.poa = poa or Ed25519Poa(validators, scheme)  # the PoA format and its checks
        self.max_cached = max_cached_poas
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def validate(self, header: BlockHeader, body: BlockBody) -> bool:
        return self.check(header, body) is None

    def validate_link(self, parent: BlockBody, header: BlockHeader, body: BlockBody) -> bool:
        """The core's B-APP-LINK (consensus.core.LinkValidator): CUT-MONOTONE."""
        return self.check_link(parent, header, body) is None

    def check(self, header: BlockHeader, body: BlockBody) -> str | None:
        """None if valid on its own, else the rule broken (one line)."""
        # rule: the header commits to this body
        if header.body_id != body_id(body):
            return "body_id does not match the body"
        try:
            payload = decode_cut_payload(body.payload)
        except LanePayloadError as exc:  # CUT-FORM
            return f"malformed payload: {exc}"
        previous = -1
        for entry in payload.tips:
            tip = entry.tip
            # rule CUT-FORM: one tip per lane, strictly by lane, each lane in the set
            if tip.lane <= previous:
                return f"tip of lane {tip.lane} out of order or duplicated"
            previous = tip.lane
            if not self.validators.contains(tip.lane):
                return f"tip of unknown lane {tip.lane}"
            if entry.poa is None:
                continue
            # rule CUT-SLOT: contents fixed at slot s are cited from height s + 2 on
            if tip.slot > header.seq_num - MIN_CUT_DELAY_SLOTS:
                return f"lane {tip.lane}: tip of slot {tip.slot} cited at height {header.seq_num}"
            reason = self._poa(entry)
            if reason is not None:  # rule CUT-POA
                return f"lane {tip.lane}: {reason}"
        return None

    def check_link(self, parent: BlockBody, header: BlockHeader, body: BlockBody) -> str | None:
        """CUT-MONOTONE: `body`'s cut against its parent's (both decodable, else the rule)."""
        try:
            parent_cut = decode_cut_payload(parent.payload)
            child = decode_cut_payload(body.payload)
        except LanePayloadError as exc:
            return f"malformed payload: {exc}"
        return monotone_violation(cut_tips(parent_cut), child.tips)

    def check_poa(self, entry: LaneTip) -> str | None:
        """The PoA scheme's `verify` of a tip that carries a PoA, cached when valid."""
        return self._poa(entry)

    def _poa(self, entry: LaneTip) -> str | None:
        assert entry.poa is not None
        key = _encoder.encode(entry)
        if key in self._verified:
            self._verified.move_to_end(key)
            return None
        reason = self.poa.verify(entry.tip, entry.poa)
        if reason is None:
            self._verified[key] = None
            while len(self._verified) > self.max_cached:
                self._verified.popitem(last=False)
        return reason


def monotone_violation(parent: Mapping[int, TipRef], tips: Sequence[LaneTip]) -> str | None:
    """CUT-MONOTONE of a cut's `tips` over its parent's tips (lane -> TipRef)."""
    present = {entry.tip.lane for entry in tips}
    missing = sorted(set(parent) - present)
    if missing:  # rule CUT-MONOTONE: no lane of the parent's cut is dropped
        return f"lane {missing[0]} of the parent's cut is missing"
    for entry in tips:
        tip, before = entry.tip, parent.get(entry.tip.lane)
        if before is None or tip.height > before.height:
            if entry.poa is None:  # rule CUT-MONOTONE: a tip that rises carries a PoA
                return f"lane {tip.lane}: new tip at height {tip.height} without a PoA"
            continue
        if tip.height < before.height:  # rule CUT-MONOTONE: never below the parent's tip
            return f"lane {tip.lane}: tip {tip.height} below the parent's {before.height}"
        if tip != before:
            return f"lane {tip.lane}: tip at the parent's height {tip.height} differs from it"
        if entry.poa is not None:  # rule: one encoding per cut (an unchanged tip has no PoA)
            return f"lane {tip.lane}: unchanged tip carries a PoA"
    return None


# --------------------------------------------------------------------------- finalizing


def risen(previous: Mapping[int, TipRef], cut: Mapping[int, TipRef]) -> list[tuple[TipRef, int]]:
    """(new tip, first height it finalizes) for every lane whose tip rose, by lane."""
    out = []
    for lane in sorted(cut):
        tip, before = cut[lane], previous.get(lane)
        start = 1 if before is None else before.height + 1
        if tip.height >= start:
            out.append((tip, start))
    return out


def walk_down(
    tip: TipRef, start: int, lookup: Callable[[bytes], LaneChainBlock | None]
) -> tuple[list[LaneChainBlock], bytes | None]:
    """The blocks of heights start..tip.height along the chain ending at `tip`, oldest
    first; or (partial, the first missing digest). Bounded by tip.height − start + 1."""
    blocks: list[LaneChainBlock] = []
    digest = tip.digest
    for height in range(tip.height, start - 1, -1):
        block = lookup(digest)
        if block is None:
            return blocks, digest
        if block.lane != tip.lane or block.height != height:  # a digest names one block
            raise ValueError(f"block {digest.hex()[:16]} is not lane {tip.lane} height {height}")
        blocks.append(block)
        digest = block.parent
    blocks.reverse()
    return blocks, None


def finalized_order(blocks: Iterable[LaneChainBlock]) -> list[LaneChainBlock]:
    """The order the tracker runs a cut's finalized lane blocks in: (slot, lane, height)."""
    return sorted(blocks, key=lambda b: (b.slot, b.lane, b.height))
