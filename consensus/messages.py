"""Typed, frozen wire messages and certificates of MonadBFT (fast-recovery semantics).

Everything here is plain data: no hashing, no signing, no I/O. Identities and
signatures are computed in `consensus.codec` and `consensus.crypto`; validity rules
live in `consensus.certificates` (stateless checks) and the core (stateful rules).

Conventions
- Rounds start at 1; the genesis QC has round 0 and certifies `GENESIS_BLOCK_ID`.
- Validators are referred to by their index in the validator set (`author`,
  signer bitmaps). A signer bitmap has bit `i % 8` of byte `i // 8` set for validator i;
  `signatures` lists one signature per set bit, in increasing validator index.
- A block's identity is the hash of its header (`codec.block_id`), so a reproposal
  carries the very same header (and id) as the original proposal.
- Field bounds below are enforced at decode time, so a decoded message always has
  well-sized ids, signatures and bitmaps.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

# Hard bounds shared by the codec and the validity checks.
MAX_VALIDATORS = 1024
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
MAX_SYNC_BLOCKS = 64
MAX_CHAIN_SYNC_BLOCKS = 256

U64 = Annotated[int, Meta(ge=0, le=2**63 - 1)]  # msgspec bounds must fit int64
ValidatorIndex = Annotated[int, Meta(ge=0, lt=MAX_VALIDATORS)]
Digest = Annotated[bytes, Meta(min_length=32, max_length=32)]
Signature = Annotated[bytes, Meta(min_length=64, max_length=64)]
SignerBitmap = Annotated[bytes, Meta(max_length=MAX_VALIDATORS // 8)]
SignatureList = Annotated[tuple[Signature, ...], Meta(max_length=MAX_VALIDATORS)]

GENESIS_BLOCK_ID = bytes(32)
GENESIS_ROUND = 0


class _Data(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Base for all wire structs: immutable, positional (compact, canonical) encoding."""


# --------------------------------------------------------------------------- votes, QCs


class Vote(_Data):
    """What a voter signs: 'block `block_id` is valid in proposal round `round`'.

    `round` is the round of the proposal the vote is cast in; for a reproposal it is
    larger than the block's own `block_round`.
    """

    block_id: Digest
    round: U64
    epoch: U64


class QuorumCertificate(_Data, tag="qc"):
    """Quorum of vote signatures over one `Vote`."""

    vote: Vote
    signers: SignerBitmap
    signatures: SignatureList

    @property
    def round(self) -> int:
        return self.vote.round

    @property
    def block_id(self) -> bytes:
        return self.vote.block_id

    @property
    def epoch(self) -> int:
        return self.vote.epoch


GENESIS_QC = QuorumCertificate(
    vote=Vote(block_id=GENESIS_BLOCK_ID, round=GENESIS_ROUND, epoch=1),
    signers=b"",
    signatures=(),
)


# --------------------------------------------------------------------------- blocks


class BlockHeader(_Data):
    """Consensus block header. `block_round` is the round of the block's first proposal."""

    block_round: U64
    epoch: U64
    qc: QuorumCertificate  # certifies the parent
    author: ValidatorIndex
    seq_num: U64  # height: parent's seq_num + 1 (genesis is 0)
    timestamp_ns: U64
    body_id: Digest  # codec.body_id(body)

    @property
    def parent_id(self) -> bytes:
        return self.qc.block_id


class BlockBody(_Data):
    """Opaque block payload; its meaning belongs to the pluggable block validator."""

    payload: Annotated[bytes, Meta(max_length=MAX_PAYLOAD_BYTES)]


# --------------------------------------------------------------------------- timeouts, TCs


class TimeoutInfo(_Data):
    """What a timeout signature covers."""

    epoch: U64
    round: U64
    high_qc_round: U64  # round of the high extend's QC (a tip's embedded parent QC)
    high_tip_round: U64  # block_round of the high tip, 0 when the extend is a QC


class TipRoundGroup(_Data):
    """Timeout signatures over the same `TimeoutInfo(epoch, round, hq, ht)` of a TC."""

    high_qc_round: U64
    high_tip_round: U64
    signers: SignerBitmap
    signatures: SignatureList


class NoEndorsement(_Data):
    """'I cannot endorse the high tip of round `round`' (tip named by its parent QC round)."""

    epoch: U64
    round: U64
    tip_qc_round: U64


class NoEndorsementCertificate(_Data, tag="nec"):
    """Quorum of NoEndorsement signatures on the same (epoch, round, tip_qc_round)."""

    no_endorsement: NoEndorsement
    signers: SignerBitmap
    signatures: SignatureList

    @property
    def round(self) -> int:
        return self.no_endorsement.round

    @property
    def tip_qc_round(self) -> int:
        return self.no_endorsement.tip_qc_round


class NoTipCertificate(_Data, tag="notip"):
    """A TC whose winning high extend was a QC, compacted for use as a fresh certificate."""

    epoch: U64
    round: U64
    tip_rounds: Annotated[tuple[TipRoundGroup, ...], Meta(max_length=MAX_VALIDATORS)]
    high_qc: QuorumCertificate


class Tip(_Data, tag="tip"):
    """Signed header: a payload-free stand-in for a fresh proposal.

    `signature` is the header author's signature over the block id. A fresh block
    whose QC is not from the previous round carries the proof that it may be fresh:
    an NEC for its round or a NoTip certificate for the previous round.
    """

    header: BlockHeader
    signature: Signature
    fresh_certificate: NoEndorsementCertificate | NoTipCertificate | None = None

    @property
    def block_round(self) -> int:
        return self.header.block_round

    @property
    def qc(self) -> QuorumCertificate:
        return self.header.qc


HighExtend = Tip | QuorumCertificate


class TimeoutCertificate(_Data, tag="tc"):
    """Quorum of timeouts for `round`, grouped by (high_qc_round, high_tip_round).

    `high_extend` is the maximum-rank extend over all the timeouts it was built from.
    """

    epoch: U64
    round: U64
    tip_rounds: Annotated[tuple[TipRoundGroup, ...], Meta(max_length=MAX_VALIDATORS)]
    high_extend: HighExtend


RoundCertificate = QuorumCertificate | TimeoutCertificate


# --------------------------------------------------------------------------- messages


class ProposalMessage(_Data, tag="proposal"):
    """A leader's proposal for `round`: fresh (tip.block_round == round) or a reproposal.

    `signature` is the proposer's signature over `codec.proposal_digest(...)`.
    """

    round: U64
    epoch: U64
    author: ValidatorIndex
    tip: Tip
    body: BlockBody
    last_round_tc: TimeoutCertificate | None
    signature: Signature


class VoteMessage(_Data, tag="vote"):
    """A vote; `signature` is the vote signature itself (it aggregates into a QC)."""

    vote: Vote
    author: ValidatorIndex
    signature: Signature


class TimeoutMessage(_Data, tag="timeout"):
    """A validator's timeout for `info.round`.

    `tip_vote_signature` (only with a Tip extend) is a vote signature over
    `Vote(tip block id, info.round, epoch)`: the backup-QC path.
    `last_round_certificate` proves entry into the round when the extend's QC is not
    from the previous round.
    """

    info: TimeoutInfo
    author: ValidatorIndex
    signature: Signature
    high_extend: HighExtend
    tip_vote_signature: Signature | None
    last_round_certificate: RoundCertificate | None


class NoEndorsementMessage(_Data, tag="ne"):
    no_endorsement: NoEndorsement
    author: ValidatorIndex
    signature: Signature


class RoundRecoveryMessage(_Data, tag="recovery"):
    """Leader of `round` asks: who lacks the block of `tc.high_extend` (a Tip)?"""

    round: U64
    epoch: U64
    tc: TimeoutCertificate
    author: ValidatorIndex
    signature: Signature


class AdvanceRoundMessage(_Data, tag="advance"):
    """Self-authenticating: the certificate is the proof."""

    certificate: RoundCertificate


class BlockSyncRequest(_Data, tag="sync_request"):
    """Ask for `block_id` and up to `count - 1` of its ancestors (newest first)."""

    block_id: Digest
    count: Annotated[int, Meta(ge=1, le=MAX_SYNC_BLOCKS)]


class SyncedBlock(_Data):
    tip: Tip
    body: BlockBody


class BlockSyncResponse(_Data, tag="sync_response"):
    """Blocks newest first, starting at `block_id`; empty when the peer lacks it."""

    block_id: Digest
    blocks: Annotated[tuple[SyncedBlock, ...], Meta(max_length=MAX_SYNC_BLOCKS)]


class ChainSyncRequest(_Data, tag="chain_request"):
    """Ask for up to `count` finalized blocks directly above `after_block_id` (oldest first):
    how a node far behind fetches the finalized chain forward from its own head."""

    after_block_id: Digest
    count: Annotated[int, Meta(ge=1, le=MAX_CHAIN_SYNC_BLOCKS)]


class ChainSyncResponse(_Data, tag="chain_response"):
    """Finalized blocks directly above `after_block_id`, oldest first; empty when the peer
    does not hold `after_block_id` on its finalized chain (or holds nothing above it)."""

    after_block_id: Digest
    blocks: Annotated[tuple[SyncedBlock, ...], Meta(max_length=MAX_CHAIN_SYNC_BLOCKS)]


Message = (
    ProposalMessage
    | VoteMessage
    | TimeoutMessage
    | NoEndorsementMessage
    | RoundRecoveryMessage
    | AdvanceRoundMessage
    | BlockSyncRequest
    | BlockSyncResponse
    | ChainSyncRequest
    | ChainSyncResponse
)

MESSAGE_TYPES: tuple[type, ...] = (
    ProposalMessage,
    VoteMessage,
    TimeoutMessage,
    NoEndorsementMessage,
    RoundRecoveryMessage,
    AdvanceRoundMessage,
    BlockSyncRequest,
    BlockSyncResponse,
    ChainSyncRequest,
    ChainSyncResponse,
)
