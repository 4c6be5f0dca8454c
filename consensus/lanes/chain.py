"""Certified lanes: lane chain blocks, availability votes and proofs of availability.

docs/lanes.md, "Certified lanes". A lane is a chain: `LaneChainBlock(lane, height,
parent, slot, entries, signature)`. Its identity (`chain_block_digest`) is SHA-256 over
(lane, height, parent, slot, SHA-256 of the entries); the lane's validator signs the
digest under `Domain.LANE_CHAIN_BLOCK`. A validator that verified a block (and holds its
parent) signs a `TipRef(lane, height, digest, slot)` under `Domain.AVAILABILITY_VOTE`;
f+1 stake of such signatures is a proof of availability (`PoA`, the QC format: a signer
bitmap and one signature per signer in increasing index).

Everything here is stateless: the availability layer (`availability.py`) holds the
state; the cut validator (`cut.py`) uses `verify_poa`. Untrusted bytes go through
`decode_lane_message`, which raises `LanePayloadError` only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Annotated, Any, Protocol

import msgspec
from msgspec import Meta

from consensus.aggregate import (
    AGGREGATE_SIGNATURE_BYTES,
    AggregateKeyPair,
    AggregateKeySet,
)
from consensus.crypto import Domain, KeyPair, SignatureScheme
from consensus.lanes.params import LaneParams
from consensus.lanes.proposer import (
    RejectReason,
    check_entry_crypto,
    check_entry_static,
    entry_key,
    max_entry_bytes,
)
from consensus.lanes.tickets import TicketVerifier
from consensus.lanes.wire import (
    MAX_LANE_BLOCK_ENTRIES,
    Digest,
    LaneEntry,
    LaneIndex,
    LanePayloadError,
    Signature,
    entries_digest,
)
from consensus.messages import MAX_VALIDATORS
from consensus.validators import BitmapError, ValidatorSet, decode_bitmap, encode_bitmap

ZERO_DIGEST = bytes(32)  # the `parent` of a lane's first block
MAX_FETCH_BLOCKS = 64  # lane blocks per fetch request / response
LaneHeight = Annotated[int, Meta(ge=1, le=2**63 - 1)]
Slot = Annotated[int, Meta(ge=0, le=2**63 - 1)]
SignerBitmap = Annotated[bytes, Meta(max_length=MAX_VALIDATORS // 8)]
# an Ed25519 vote signature (64 bytes) or an aggregate-scheme one (96); each PoA scheme
# checks the exact size of its own
VoteSignature = Annotated[bytes, Meta(min_length=64, max_length=AGGREGATE_SIGNATURE_BYTES)]
_ID_DOMAIN = b"sedna/lane-chain-block-id/1\x00"


class _Data(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Immutable, positional (compact, canonical) encoding."""


class LaneChainBlock(_Data):
    """Block `height` of lane `lane`: the bundles it sealed for `slot`.

    `parent` is the digest of the lane's block at `height − 1` (`ZERO_DIGEST` at height
    1); slots strictly increase along a chain; entries are sorted strictly by
    (commitment id, bundle index).
    """

    lane: LaneIndex
    height: LaneHeight
    parent: Digest
    slot: Slot
    entries: Annotated[tuple[LaneEntry, ...], Meta(max_length=MAX_LANE_BLOCK_ENTRIES)]
    signature: Signature


class TipRef(_Data):
    """What an availability vote and a PoA sign: 'block `digest` is lane `lane`'s block
    `height`, sealed for `slot`, and I hold it'."""

    lane: LaneIndex
    height: LaneHeight
    digest: Digest
    slot: Slot


class PoA(_Data):
    """f+1 stake of availability votes over one `TipRef`: a signer bitmap and, with
    `poa_signatures = "ed25519"`, one signature per signer in increasing index; with
    `"bls"`, exactly one 96-byte aggregate signature."""

    signers: SignerBitmap
    signatures: Annotated[tuple[VoteSignature, ...], Meta(max_length=MAX_VALIDATORS)]


class LaneTip(_Data):
    """One lane's entry of a cut (and the PoA broadcast): the tip and its PoA. A cut
    re-citing its parent's tip for a lane carries no PoA (`poa is None`)."""

    tip: TipRef
    poa: PoA | None = None


class _Message(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    pass


class LaneBlockMessage(_Message, tag="lane_block"):
    """A lane's proposer broadcasts its new block (AV-FROM)."""

    block: LaneChainBlock


class AvailabilityVote(_Message, tag="lane_vote"):
    """A voter's signature over `tip`, sent to the lane's proposer."""

    tip: TipRef
    author: LaneIndex
    signature: VoteSignature


class LaneTipMessage(_Message, tag="lane_poa"):
    """A certified lane block (`tip.poa` set), broadcast by its lane when the PoA forms."""

    tip: LaneTip


class LaneFetchRequest(_Message, tag="lane_fetch"):
    """'Send me up to `count` blocks of lane `lane` walking down from `digest`.'"""

    lane: LaneIndex
    digest: Digest
    count: Annotated[int, Meta(ge=1, le=MAX_FETCH_BLOCKS)]


class LaneFetchResponse(_Message, tag="lane_fetch_response"):
    """Blocks from `digest` down by `parent` (empty: the responder does not hold it)."""

    lane: LaneIndex
    digest: Digest
    blocks: Annotated[tuple[LaneChainBlock, ...], Meta(max_length=MAX_FETCH_BLOCKS)]


LaneMessage = (
    LaneBlockMessage | AvailabilityVote | LaneTipMessage | LaneFetchRequest | LaneFetchResponse
)
LANE_MESSAGE_TYPES = (
    LaneBlockMessage,
    AvailabilityVote,
    LaneTipMessage,
    LaneFetchRequest,
    LaneFetchResponse,
)

_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(LaneMessage)


def encode_lane_message(message: LaneMessage) -> bytes:
    return _encoder.encode(message)


def decode_lane_message(data: bytes, max_bytes: int) -> LaneMessage:
    """A lane message from untrusted bytes, at most `max_bytes` long."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LanePayloadError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise LanePayloadError(f"lane message of {len(data)} bytes exceeds {max_bytes}")
    try:
        return _message_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise LanePayloadError(f"invalid lane message: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise LanePayloadError(f"malformed lane message: {exc}") from None


def max_chain_block_entries_bytes(params: LaneParams) -> int:
    """Upper bound on a valid lane block's encoded entries (AV-VERIFY's size rule)."""
    return params.max_entries_per_lane_block * max_entry_bytes(params) + 16


def max_lane_message_bytes(params: LaneParams) -> int:
    """Upper bound on one encoded lane message (a fetch response of full blocks)."""
    return MAX_FETCH_BLOCKS * (max_chain_block_entries_bytes(params) + 256) + 256


# --------------------------------------------------------------------------- identity, signing


def chain_block_id(lane: int, height: int, parent: bytes, slot: int, entries_id: bytes) -> bytes:
    return hashlib.sha256(
        _ID_DOMAIN + _encoder.encode((lane, height, parent, slot, entries_id))
    ).digest()


def chain_block_digest(block: LaneChainBlock) -> bytes:
    """A lane block's identity (excludes the signature, which signs it)."""
    return chain_block_id(
        block.lane, block.height, block.parent, block.slot, entries_digest(block.entries)
    )


def chain_block_size(block: LaneChainBlock) -> int:
    """Encoded bytes of a lane block's entries (what AV-VERIFY's size rule bounds)."""
    return len(_encoder.encode(block.entries))


def sign_chain_block(
    scheme: SignatureScheme,
    key: KeyPair,
    *,
    lane: int,
    height: int,
    parent: bytes,
    slot: int,
    entries: tuple[LaneEntry, ...],
) -> LaneChainBlock:
    digest = chain_block_id(lane, height, parent, slot, entries_digest(entries))
    signature = scheme.sign(key, Domain.LANE_CHAIN_BLOCK, digest)
    return LaneChainBlock(lane, height, parent, slot, entries, signature)


def chain_block_signature_ok(
    scheme: SignatureScheme, public: bytes, block: LaneChainBlock, digest: bytes
) -> bool:
    return scheme.verify(public, Domain.LANE_CHAIN_BLOCK, digest, block.signature)


def tip_ref(block: LaneChainBlock, digest: bytes) -> TipRef:
    return TipRef(block.lane, block.height, digest, block.slot)


def vote_signing_bytes(tip: TipRef) -> bytes:
    return _encoder.encode(tip)


def sign_vote(scheme: SignatureScheme, key: KeyPair, author: int, tip: TipRef) -> AvailabilityVote:
    signature = scheme.sign(key, Domain.AVAILABILITY_VOTE, vote_signing_bytes(tip))
    return AvailabilityVote(tip, author, signature)


def vote_signature_ok(
    scheme: SignatureScheme, validators: ValidatorSet, vote: AvailabilityVote
) -> bool:
    if not validators.contains(vote.author):
        return False
    public = validators.public_key(vote.author)
    return scheme.verify(
        public, Domain.AVAILABILITY_VOTE, vote_signing_bytes(vote.tip), vote.signature
    )


def build_poa(validators: ValidatorSet, signatures: Mapping[int, bytes]) -> PoA:
    """The PoA of the given {signer: vote signature} (signatures in signer order)."""
    signers = sorted(signatures)
    bitmap = encode_bitmap(signers, len(validators))
    return PoA(bitmap, tuple(signatures[i] for i in signers))


def verify_poa(
    validators: ValidatorSet, scheme: SignatureScheme, tip: TipRef, poa: PoA
) -> str | None:
    """None if `poa` proves f+1 stake holds `tip`'s block, else the broken rule."""
    if not validators.contains(tip.lane):
        return "unknown lane"
    try:
        signers = decode_bitmap(poa.signers, len(validators))
    except BitmapError as exc:  # rule POA: a well-formed signer bitmap
        return f"bad signer bitmap: {exc}"
    # rule POA: one signature per signer (a bitmap cannot name a signer twice)
    if len(signers) != len(poa.signatures):
        return f"{len(signers)} signers but {len(poa.signatures)} signatures"
    # rule POA: f+1 stake (at least one honest validator holds the block)
    if not validators.has_honest_present(signers):
        return "signers hold less than f+1 stake"
    payload = vote_signing_bytes(tip)
    for signer, signature in zip(signers, poa.signatures, strict=True):
        public = validators.public_key(signer)
        if not scheme.verify(public, Domain.AVAILABILITY_VOTE, payload, signature):
            return f"bad signature of signer {signer}"
    return None


# --------------------------------------------------------------------------- PoA schemes


class PoaScheme(Protocol):
    """How availability votes are signed and PoAs built and verified (stateless; the
    signing key is the caller's: a `KeyPair` for Ed25519, an `AggregateKeyPair` for BLS)."""

    name: str

    def sign_vote(self, key: Any, author: int, tip: TipRef) -> AvailabilityVote: ...

    def vote_ok(self, vote: AvailabilityVote) -> bool: ...

    def build(self, signatures: Mapping[int, bytes]) -> PoA: ...

    def verify(self, tip: TipRef, poa: PoA) -> str | None: ...


class Ed25519Poa:
    """`poa_signatures = "ed25519"`: a PoA is f+1 stake of individual signatures."""

    name = "ed25519"

    def __init__(self, validators: ValidatorSet, scheme: SignatureScheme):
        self.validators = validators
        self.scheme = scheme

    def sign_vote(self, key: KeyPair, author: int, tip: TipRef) -> AvailabilityVote:
        return sign_vote(self.scheme, key, author, tip)

    def vote_ok(self, vote: AvailabilityVote) -> bool:
        return vote_signature_ok(self.scheme, self.validators, vote)

    def build(self, signatures: Mapping[int, bytes]) -> PoA:
        return build_poa(self.validators, signatures)

    def verify(self, tip: TipRef, poa: PoA) -> str | None:
        return verify_poa(self.validators, self.scheme, tip, poa)


class AggregatePoa:
    """`poa_signatures = "bls"`: a PoA is a signer bitmap and ONE aggregate signature of
    their votes (96 bytes whatever the signer count), checked by one fast aggregate
    verification against the signers' keys (each proven possessed: `AggregateKeySet`)."""

    name = "bls"

    def __init__(self, validators: ValidatorSet, keys: AggregateKeySet):
        if len(keys) != len(validators):
            raise ValueError(
                f"{len(keys)} aggregate-signature keys for {len(validators)} validators"
            )
        self.validators = validators
        self.keys = keys
        self.scheme = keys.scheme

    def sign_vote(self, key: AggregateKeyPair, author: int, tip: TipRef) -> AvailabilityVote:
        signature = self.scheme.sign(key, Domain.AVAILABILITY_VOTE, vote_signing_bytes(tip))
        return AvailabilityVote(tip, author, signature)

    def vote_ok(self, vote: AvailabilityVote) -> bool:
        if not self.validators.contains(vote.author):
            return False
        return self.scheme.verify(
            self.keys.publics[vote.author],
            Domain.AVAILABILITY_VOTE,
            vote_signing_bytes(vote.tip),
            vote.signature,
        )

    def build(self, signatures: Mapping[int, bytes]) -> PoA:
        signers = sorted(signatures)
        bitmap = encode_bitmap(signers, len(self.validators))
        return PoA(bitmap, (self.scheme.aggregate([signatures[i] for i in signers]),))

    def verify(self, tip: TipRef, poa: PoA) -> str | None:
        """None if `poa` proves f+1 stake holds `tip`'s block, else the broken rule."""
        if not self.validators.contains(tip.lane):
            return "unknown lane"
        try:
            signers = decode_bitmap(poa.signers, len(self.validators))
        except BitmapError as exc:  # rule POA: a well-formed signer bitmap
            return f"bad signer bitmap: {exc}"
        # rule POA: one aggregate signature of the signers' votes
        if len(poa.signatures) != 1 or len(poa.signatures[0]) != AGGREGATE_SIGNATURE_BYTES:
            return "an aggregate PoA carries exactly one 96-byte signature"
        # rule POA: f+1 stake (at least one honest validator holds the block)
        if not self.validators.has_honest_present(signers):
            return "signers hold less than f+1 stake"
        publics = [self.keys.publics[i] for i in signers]
        if not self.scheme.verify_aggregate(
            publics, Domain.AVAILABILITY_VOTE, vote_signing_bytes(tip), poa.signatures[0]
        ):
            return "bad aggregate signature"
        return None


POA_SIGNATURES = ("bls", "ed25519")


# --------------------------------------------------------------------------- AV-VERIFY


class ChainBlockChecker:
    """AV-VERIFY: every rule on a lane block that needs no chain state.

    Results of valid blocks are cached by digest (bounded, least recently used first);
    a failure is never cached. One checker may be shared by several simulated nodes
    (netsim): the check is a pure function of the block and the chain parameters.
    """

    def __init__(
        self,
        validators: ValidatorSet,
        params: LaneParams,
        scheme: SignatureScheme,
        *,
        min_fee: int = 0,
        ticket_verifier: TicketVerifier | None = None,
        max_cached: int = 65_536,
    ):
        self.validators = validators
        self.params = params
        self.scheme = scheme
        self.min_fee = min_fee
        self.tickets = ticket_verifier or TicketVerifier(scheme)
        self.max_cached = max_cached
        self.max_entries_bytes = max_chain_block_entries_bytes(params)
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def check(self, block: LaneChainBlock, digest: bytes) -> str | None:
        """None if `block` (whose digest is `digest`) passes AV-VERIFY, else the rule."""
        if digest in self._verified:
            self._verified.move_to_end(digest)
            return None
        reason = self._check(block, digest)
        if reason is None:
            self._verified[digest] = None
            while len(self._verified) > self.max_cached:
                self._verified.popitem(last=False)
        return reason

    def _check(self, block: LaneChainBlock, digest: bytes) -> str | None:
        if not self.validators.contains(block.lane):
            return "unknown lane"
        if block.height == 1 and block.parent != ZERO_DIGEST:  # rule LC: height 1 has no parent
            return "a first block names a parent"
        if not 1 <= len(block.entries) <= self.params.max_entries_per_lane_block:
            return f"{len(block.entries)} entries outside [1, max_entries_per_lane_block]"
        if chain_block_size(block) > self.max_entries_bytes:  # rule AV-VERIFY: bounded size
            return RejectReason.OVERSIZED.value
        previous: tuple[bytes, int] | None = None
        for entry in block.entries:
            key = entry_key(entry)
            # rule: canonical entry order (so a bundle appears once per lane block)
            if previous is not None and key <= previous:
                return "entries not strictly sorted by (commitment, bundle)"
            previous = key
            reason = check_entry_static(self.params, entry, block.lane)
            if reason is None and entry.ticket.ticket.slot != block.slot:
                reason = RejectReason.WRONG_SLOT  # rule: redeemed only in the addressed slot
            if reason is None and entry.ticket.ticket.fee < self.min_fee:
                reason = RejectReason.FEE_TOO_LOW  # rule: a ticket pays the chain's fee
            if reason is not None:
                return reason.value
        for entry in block.entries:
            crypto = check_entry_crypto(self.tickets, entry)
            if crypto is not None:
                return crypto.value
        public = self.validators.public_key(block.lane)
        if not chain_block_signature_ok(self.scheme, public, block, digest):
            return "bad lane block signature"
        return None
