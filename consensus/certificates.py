"""Stateless validity of certificates and messages, certificate formation, and signing.

Three parts, each the one place for its rules:
- `extend_rank` / `info_rank`: the HighExtend ordering (reference §2.1).
- `Verifier`: signatures, stake and well-formedness (tip rules T1-T3, timeout rules
  TM1-TM5, TC rules TC1-TC8, proposal rules W1-W4). It knows no round or safety state;
  the core applies the stateful rules on top.
- `build_*` and `Signer`: how certificates and signed messages are formed.

Every verifier raises `InvalidMessage` whose text names the rule that failed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from consensus import codec
from consensus.crypto import Domain, KeyPair, SignatureScheme
from consensus.messages import (
    GENESIS_QC,
    AdvanceRoundMessage,
    BlockBody,
    BlockHeader,
    HighExtend,
    NoEndorsement,
    NoEndorsementCertificate,
    NoEndorsementMessage,
    NoTipCertificate,
    ProposalMessage,
    QuorumCertificate,
    RoundCertificate,
    RoundRecoveryMessage,
    TimeoutCertificate,
    TimeoutInfo,
    TimeoutMessage,
    Tip,
    TipRoundGroup,
    Vote,
    VoteMessage,
)
from consensus.mutations import TEST_MUTATIONS
from consensus.validators import (
    BitmapError,
    LeaderSchedule,
    ValidatorSet,
    decode_bitmap,
    encode_bitmap,
)

PROTOCOLS = ("monadbft", "v1", "vanilla")

Rank = tuple[int, int, int]


class InvalidMessage(ValueError):
    """A message or certificate broke a validity rule; the text names the rule."""


# --------------------------------------------------------------------------- HighExtend rank


def extend_rank(extend: HighExtend) -> Rank:
    """HighExtend ordering: Qc{q} -> (q, 1, 0); Tip{t, q} -> (t, 0, q).

    Qc vs Qc compares q; Tip vs Tip compares t then q; Qc{q} vs Tip{t}: the QC wins
    when q == t, else q is compared with t. Equal rank with different content is
    incomparable (only leader equivocation produces it).
    """
    if isinstance(extend, QuorumCertificate):
        return (extend.round, 1, 0)
    return (extend.header.block_round, 0, extend.header.qc.round)


def info_rank(info: TimeoutInfo) -> Rank:
    """The rank a TimeoutInfo claims for its high extend (high_tip_round 0 means a QC)."""
    return _pair_rank(info.high_qc_round, info.high_tip_round)


def _pair_rank(high_qc_round: int, high_tip_round: int) -> Rank:
    if high_tip_round == 0:
        return (high_qc_round, 1, 0)
    return (high_tip_round, 0, high_qc_round)


def extend_qc(extend: HighExtend) -> QuorumCertificate:
    """The QC an extend builds on: the QC itself, or the tip's parent QC."""
    return extend if isinstance(extend, QuorumCertificate) else extend.header.qc


def _extend_tiebreak(extend: HighExtend) -> bytes:
    """Deterministic choice among equal-rank extends: lowest block id, then lowest encoding."""
    if isinstance(extend, QuorumCertificate):
        return extend.block_id + codec.encode(extend)
    return codec.block_id(extend.header) + codec.encode(extend)


# --------------------------------------------------------------------------- verification


class Verifier:
    """Stateless checks of certificates and messages against one validator set."""

    CACHE_ENTRIES = 4096
    SIGNATURE_CACHE_ENTRIES = 16_384

    def __init__(
        self,
        validators: ValidatorSet,
        schedule: LeaderSchedule,
        scheme: SignatureScheme,
        protocol: str = "monadbft",
        epoch: int = 1,
        *,
        test_mutations: frozenset[str] = frozenset(),
    ):
        """`test_mutations`: TEST-ONLY rule switches (consensus.mutations), passed on by a
        core built with them; every other verifier enforces every rule."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
        unknown = set(test_mutations) - TEST_MUTATIONS
        if unknown:
            raise ValueError(f"unknown test mutations {sorted(unknown)}")
        self._disabled = frozenset(test_mutations)
        self.validators = validators
        self.schedule = schedule
        self.scheme = scheme
        self.protocol = protocol
        self.epoch = epoch
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        # Valid (signer, domain, payload, signature) tuples: one vote signature is checked
        # as a vote, then again inside every QC that carries it (formed here or by others).
        self._valid_signatures: dict[bytes, None] = {}

    def share_caches_with(self, other: Verifier) -> None:
        """Use `other`'s caches of verified certificates and valid signatures from now on
        (both verifiers then fill and read the same two bounded caches). Every check here
        is a pure function of its input and of (validator set, schedule, scheme, protocol,
        epoch, rule switches), so this is sound exactly when those are the same objects
        and values; anything else raises ValueError. For many validators simulated in one
        process (netsim's shared verification): a certificate is checked once per run,
        not once per simulated node."""
        same = (
            self.validators is other.validators
            and self.schedule is other.schedule
            and self.scheme is other.scheme
            and self.protocol == other.protocol
            and self.epoch == other.epoch
            and self._disabled == other._disabled
        )
        if not same:
            raise ValueError("caches may be shared only between identically configured verifiers")
        self._verified = other._verified
        self._valid_signatures = other._valid_signatures

    # -- helpers

    def _enforced(self, rule: str) -> bool:
        """False only under the TEST-ONLY switch named after `rule`."""
        return rule not in self._disabled

    def _cache_key(self, value: object) -> bytes:
        return hashlib.sha256(type(value).__name__.encode() + codec.encode(value)).digest()

    def _cached(self, key: bytes) -> bool:
        if key in self._verified:
            self._verified.move_to_end(key)
            return True
        return False

    def _remember(self, key: bytes) -> None:
        self._verified[key] = None
        if len(self._verified) > self.CACHE_ENTRIES:
            self._verified.popitem(last=False)

    def _check_epoch(self, epoch: int, what: str) -> None:
        if epoch != self.epoch and self._enforced("E1"):  # E1: single epoch
            raise InvalidMessage(f"{what}: epoch {epoch} is not the current epoch {self.epoch}")

    def _check_author(self, author: int, what: str) -> None:
        if not self.validators.contains(author):
            raise InvalidMessage(f"{what}: author {author} is not a validator")

    @staticmethod
    def _signature_key(signer: int, domain: bytes, payload: bytes, signature: bytes) -> bytes:
        # Unambiguous: fixed-width signer and payload length, NUL-free domain.
        return b"".join(
            (signer.to_bytes(2, "big"), domain, b"\x00", len(payload).to_bytes(4, "big"),
             payload, signature)
        )  # fmt: skip

    def remember_signature(
        self, signer: int, domain: bytes, payload: bytes, signature: bytes
    ) -> None:
        """Record a signature known to be valid (verified, or made by this node's own key)."""
        cache = self._valid_signatures
        if len(cache) >= self.SIGNATURE_CACHE_ENTRIES:  # bound: evict the oldest entry
            del cache[next(iter(cache))]
        cache[self._signature_key(signer, domain, payload, signature)] = None

    def _check_signature(
        self, signer: int, domain: bytes, payload: bytes, signature: bytes, what: str
    ) -> None:
        key = self._signature_key(signer, domain, payload, signature)
        if key in self._valid_signatures:  # only valid signatures are ever remembered
            return
        if not self.scheme.verify(
            self.validators.public_key(signer), domain, payload, signature
        ) and self._enforced("SIG"):  # SIG
            raise InvalidMessage(f"{what}: invalid signature by validator {signer}")
        self.remember_signature(signer, domain, payload, signature)

    def _signers(
        self, bitmap: bytes, signatures: tuple[bytes, ...], domain: bytes, payload: bytes, what: str
    ) -> list[int]:
        """Decode a signer bitmap and verify one signature per signer (in index order)."""
        try:
            indices = decode_bitmap(bitmap, len(self.validators))
        except BitmapError as exc:
            raise InvalidMessage(f"{what}: {exc}") from None
        if len(indices) != len(signatures) and self._enforced("C1"):  # C1: one per signer
            raise InvalidMessage(f"{what}: {len(indices)} signers but {len(signatures)} signatures")
        for signer, signature in zip(indices, signatures, strict=False):
            self._check_signature(signer, domain, payload, signature, what)
        return indices

    # -- certificates

    def qc(self, qc: QuorumCertificate) -> None:
        if qc.round == 0:  # Q0: the only round-0 QC is the genesis QC
            if qc != GENESIS_QC and self._enforced("Q0"):
                raise InvalidMessage("qc: a round-0 QC must be the genesis QC")
            return
        key = self._cache_key(qc)
        if self._cached(key):
            return
        self._check_epoch(qc.epoch, "qc")
        signers = self._signers(
            qc.signers, qc.signatures, Domain.VOTE, codec.vote_signing_bytes(qc.vote), "qc"
        )
        if not self.validators.has_quorum(signers) and self._enforced("Q1"):  # Q1: quorum
            raise InvalidMessage("qc: signer stake below quorum")
        self._remember(key)

    def nec(self, nec: NoEndorsementCertificate) -> None:
        key = self._cache_key(nec)
        if self._cached(key):
            return
        ne = nec.no_endorsement
        self._check_epoch(ne.epoch, "nec")
        if ne.tip_qc_round >= ne.round and self._enforced("N1"):  # N1: tip QC precedes
            raise InvalidMessage("nec: tip_qc_round must be below the round")
        signers = self._signers(
            nec.signers,
            nec.signatures,
            Domain.NO_ENDORSEMENT,
            codec.no_endorsement_signing_bytes(ne),
            "nec",
        )
        if not self.validators.has_quorum(signers) and self._enforced("N2"):  # N2: 2f+1
            raise InvalidMessage("nec: signer stake below quorum")
        self._remember(key)

    def _tip_round_groups(
        self, epoch: int, round: int, groups: tuple[TipRoundGroup, ...], what: str
    ) -> Rank:
        """TC1-TC6 over the compact groups; returns the maximum rank among them."""
        if not groups and self._enforced("TC1"):  # TC1: at least one group
            raise InvalidMessage(f"{what}: no timeout signatures")
        if len(groups) > len(self.validators) and self._enforced("TC2"):  # TC2: bounded
            raise InvalidMessage(f"{what}: more groups than validators")
        seen_pairs: set[tuple[int, int]] = set()
        seen_signers: set[int] = set()
        best: Rank | None = None
        for group in groups:
            pair = (group.high_qc_round, group.high_tip_round)
            if pair in seen_pairs and self._enforced("TC3"):  # TC3: each (hq, ht) pair once
                raise InvalidMessage(f"{what}: duplicate tip-round pair {pair}")
            seen_pairs.add(pair)
            if group.high_qc_round >= round and self._enforced("TC4"):  # TC4: QC older
                raise InvalidMessage(
                    f"{what}: high_qc_round {group.high_qc_round} >= round {round}"
                )
            if (
                group.high_tip_round != 0
                and not (group.high_qc_round < group.high_tip_round <= round)
                and self._enforced("TC5")
            ):  # TC5: a tip is newer than its QC and not from the future
                raise InvalidMessage(f"{what}: inconsistent tip round in pair {pair}")
            info = TimeoutInfo(
                epoch=epoch,
                round=round,
                high_qc_round=group.high_qc_round,
                high_tip_round=group.high_tip_round,
            )
            signers = self._signers(
                group.signers,
                group.signatures,
                Domain.TIMEOUT,
                codec.timeout_signing_bytes(info),
                what,
            )
            if not signers and self._enforced("TC6"):  # TC6: no empty entry
                raise InvalidMessage(f"{what}: empty tip-round entry {pair}")
            if seen_signers.intersection(signers) and self._enforced("TC7"):  # TC7
                raise InvalidMessage(f"{what}: duplicate signer across entries")
            seen_signers.update(signers)
            rank = info_rank(info)
            best = rank if best is None or rank > best else best
        if not self.validators.has_quorum(seen_signers) and self._enforced("TC8"):  # TC8
            raise InvalidMessage(f"{what}: signer stake below quorum")
        if best is None:  # only under the TEST-ONLY switch TC1: no entry at all
            return (0, 1, 0)
        return best

    def tc(self, tc: TimeoutCertificate) -> None:
        key = self._cache_key(tc)
        if self._cached(key):
            return
        self._check_epoch(tc.epoch, "tc")
        best = self._tip_round_groups(tc.epoch, tc.round, tc.tip_rounds, "tc")
        if extend_rank(tc.high_extend) != best and self._enforced("TC9"):  # TC9: max rank
            raise InvalidMessage("tc: high extend is not the maximum rank of its entries")
        # The high extend's QC is older than the TC round: TC4 bounds every entry's QC
        # round and TC9 makes the extend's rank one of the entries'.
        self.extend(tc.high_extend)
        self._remember(key)

    def notip(self, notip: NoTipCertificate) -> None:
        key = self._cache_key(notip)
        if self._cached(key):
            return
        self._check_epoch(notip.epoch, "notip")
        best = self._tip_round_groups(notip.epoch, notip.round, notip.tip_rounds, "notip")
        if extend_rank(notip.high_qc) != best and self._enforced("NT1"):  # NT1: QC won
            raise InvalidMessage("notip: high QC is not the maximum rank of its entries")
        self.qc(notip.high_qc)
        self._remember(key)

    def extend(self, extend: HighExtend) -> None:
        if isinstance(extend, QuorumCertificate):
            self.qc(extend)
        else:
            self.tip(extend)

    def round_certificate(self, certificate: RoundCertificate) -> None:
        if isinstance(certificate, QuorumCertificate):
            self.qc(certificate)
        else:
            self.tc(certificate)

    def tip(self, tip: Tip) -> None:
        key = self._cache_key(tip)
        if self._cached(key):
            return
        header = tip.header
        self._check_epoch(header.epoch, "tip")
        self._check_author(header.author, "tip")
        if header.author != self.schedule.leader(header.block_round) and self._enforced(
            "T1"
        ):  # T1: signer leads block_round
            raise InvalidMessage(
                f"tip: author {header.author} is not the leader of round {header.block_round}"
            )
        if header.block_round <= header.qc.round and self._enforced("T2"):  # T2: newer
            raise InvalidMessage("tip: block_round must exceed its QC round")
        self._check_signature(
            header.author, Domain.TIP, codec.tip_signing_bytes(header), tip.signature, "tip"
        )
        fresh = tip.fresh_certificate
        if header.block_round == header.qc.round + 1 or self.protocol == "vanilla":
            if fresh is not None and self._enforced("T3a"):  # T3a: no cert where none needed
                raise InvalidMessage("tip: unexpected fresh certificate")
        elif isinstance(fresh, NoEndorsementCertificate):
            # T3b: an NEC for this round against a tip on the same parent QC round
            if (
                fresh.round != header.block_round or fresh.tip_qc_round != header.qc.round
            ) and self._enforced("T3b"):
                raise InvalidMessage("tip: NEC does not match the block round and QC round")
            self.nec(fresh)
        elif isinstance(fresh, NoTipCertificate):
            # T3c: the previous round's TC was won by exactly this block's QC
            if (
                header.block_round != fresh.round + 1 or fresh.high_qc.round != header.qc.round
            ) and self._enforced("T3c"):
                raise InvalidMessage("tip: NoTip certificate does not match the block")
            self.notip(fresh)
        elif self._enforced("T3d"):  # T3d: otherwise a fresh certificate is required
            raise InvalidMessage(
                "tip: a block not extending the previous round needs a fresh certificate"
            )
        self.qc(header.qc)
        self._remember(key)

    # -- messages

    def vote_message(self, message: VoteMessage) -> None:
        self._check_author(message.author, "vote")
        self._check_epoch(message.vote.epoch, "vote")
        if message.vote.round == 0:
            raise InvalidMessage("vote: round 0 cannot be voted")
        self._check_signature(
            message.author,
            Domain.VOTE,
            codec.vote_signing_bytes(message.vote),
            message.signature,
            "vote",
        )

    def timeout_message(self, message: TimeoutMessage) -> None:
        info = message.info
        self._check_author(message.author, "timeout")
        self._check_epoch(info.epoch, "timeout")
        extend = message.high_extend
        if extend_rank(extend) != info_rank(info) and self._enforced("TM1"):  # TM1: rank
            raise InvalidMessage("timeout: high extend rank does not match the timeout info")
        base_qc = extend_qc(extend)
        if info.round <= base_qc.round and self._enforced("TM2"):  # TM2: after the QC
            raise InvalidMessage("timeout: round is not after the high extend's QC")
        if (
            isinstance(extend, Tip)
            and extend.header.block_round > info.round
            and self._enforced("TM6")
        ):  # TM6: no tip from a later round
            raise InvalidMessage("timeout: tip from a future round")
        if self.protocol == "vanilla" and isinstance(extend, Tip) and self._enforced("TM7"):
            raise InvalidMessage("timeout: vanilla timeouts carry only the high QC")
        if (
            message.tip_vote_signature is not None
            and not isinstance(extend, Tip)
            and self._enforced("TM3")
        ):
            raise InvalidMessage("timeout: tip vote without a tip")  # TM3
        self._check_signature(
            message.author,
            Domain.TIMEOUT,
            codec.timeout_signing_bytes(info),
            message.signature,
            "timeout",
        )
        last = message.last_round_certificate
        if info.round == base_qc.round + 1:
            if last is not None and self._enforced("TM4"):  # TM4: no proof needed
                raise InvalidMessage("timeout: unexpected last round certificate")
        elif self._enforced("TM5"):
            if last is None:  # TM5: otherwise prove entry into the round
                raise InvalidMessage("timeout: missing last round certificate")
            if last.round != info.round - 1:
                raise InvalidMessage(
                    "timeout: last round certificate is not from the previous round"
                )
            self.round_certificate(last)
        self.extend(extend)
        if message.tip_vote_signature is not None and isinstance(extend, Tip):
            vote = Vote(block_id=codec.block_id(extend.header), round=info.round, epoch=info.epoch)
            self._check_signature(
                message.author,
                Domain.VOTE,
                codec.vote_signing_bytes(vote),
                message.tip_vote_signature,
                "timeout tip vote",
            )

    def proposal_message(self, message: ProposalMessage) -> None:
        tip = message.tip
        header = tip.header
        self._check_author(message.author, "proposal")
        self._check_epoch(message.epoch, "proposal")
        if message.author != self.schedule.leader(message.round) and self._enforced(
            "W0"
        ):  # W0: the proposer leads the round
            raise InvalidMessage(
                f"proposal: author {message.author} is not the leader of round {message.round}"
            )
        if header.body_id != codec.body_id(message.body) and self._enforced("W1"):  # W1
            raise InvalidMessage("proposal: body does not match the header's body id")
        if header.block_round > message.round and self._enforced("W5"):  # W5
            raise InvalidMessage("proposal: block round is after the proposal round")
        fresh = header.block_round == message.round
        self._check_signature(
            message.author,
            Domain.PROPOSAL,
            codec.proposal_signing_bytes(
                message.round, message.epoch, message.author, header, message.last_round_tc
            ),
            message.signature,
            "proposal",
        )
        tc = message.last_round_tc
        if message.round == header.qc.round + 1:
            if tc is not None and self._enforced("W2"):  # W2: happy path carries no TC
                raise InvalidMessage("proposal: unexpected TC on a happy-path proposal")
        elif tc is None or tc.round != message.round - 1:
            if self._enforced("W3"):  # W3: otherwise the previous round's TC is required
                raise InvalidMessage(
                    "proposal: missing TC for a non-consecutive proposal"
                    if tc is None
                    else "proposal: TC is not from the previous round"
                )
        else:
            self.tc(tc)
            self._check_extends_tc(message, tc, fresh)
        if self._enforced("W4"):
            self.tip(tip)  # W4: the tip (and its certificates) verify

    def _check_extends_tc(
        self, message: ProposalMessage, tc: TimeoutCertificate, fresh: bool
    ) -> None:
        """W3: which block a proposal after a TC may carry."""
        header = message.tip.header
        winner = tc.high_extend
        if self.protocol == "vanilla":
            if (not fresh or header.qc.round < extend_qc(winner).round) and self._enforced(
                "W3v"
            ):  # W3v: fresh, extends >= TC high QC
                raise InvalidMessage("proposal: must be fresh and extend the TC's high QC")
            return
        if isinstance(winner, QuorumCertificate):
            if (not fresh or header.qc.round != winner.round) and self._enforced(
                "W3q"
            ):  # W3q: fresh on the TC's high QC
                raise InvalidMessage("proposal: must be a fresh block on the TC's high QC")
            return
        if message.tip == winner:  # W3t: exact reproposal of the TC's high tip
            return
        fresh_enough = fresh or not self._enforced("W3n-fresh")
        if (not fresh_enough or header.qc.round != winner.header.qc.round) and self._enforced(
            "W3n"
        ):  # W3n: a fresh sibling (NEC) on the tip's parent QC
            raise InvalidMessage(
                "proposal: must repropose the TC's high tip or replace it with an NEC"
            )

    def no_endorsement_message(self, message: NoEndorsementMessage) -> None:
        ne = message.no_endorsement
        self._check_author(message.author, "no-endorsement")
        self._check_epoch(ne.epoch, "no-endorsement")
        if ne.tip_qc_round >= ne.round and self._enforced("N1"):  # N1
            raise InvalidMessage("no-endorsement: tip_qc_round must be below the round")
        self._check_signature(
            message.author,
            Domain.NO_ENDORSEMENT,
            codec.no_endorsement_signing_bytes(ne),
            message.signature,
            "no-endorsement",
        )

    def round_recovery_message(self, message: RoundRecoveryMessage) -> None:
        self._check_author(message.author, "round recovery")
        self._check_epoch(message.epoch, "round recovery")
        if message.author != self.schedule.leader(message.round) and self._enforced("RR1"):  # RR1
            raise InvalidMessage("round recovery: author is not the leader of the round")
        if message.round != message.tc.round + 1 and self._enforced("RR2"):  # RR2
            raise InvalidMessage("round recovery: round is not the TC round + 1")
        if not isinstance(message.tc.high_extend, Tip) and self._enforced("RR3"):  # RR3
            raise InvalidMessage("round recovery: TC high extend is not a tip")
        self._check_signature(
            message.author,
            Domain.ROUND_RECOVERY,
            codec.round_recovery_signing_bytes(message.round, message.epoch, message.tc),
            message.signature,
            "round recovery",
        )
        self.tc(message.tc)

    def advance_round(self, message: AdvanceRoundMessage) -> None:
        self.round_certificate(message.certificate)


# --------------------------------------------------------------------------- formation


def _signature_list(
    signatures: Mapping[int, bytes], validators: ValidatorSet
) -> tuple[bytes, tuple[bytes, ...]]:
    indices = sorted(signatures)
    return encode_bitmap(indices, len(validators)), tuple(signatures[i] for i in indices)


def build_qc(
    vote: Vote, signatures: Mapping[int, bytes], validators: ValidatorSet
) -> QuorumCertificate:
    """QC from verified vote signatures (signer index -> signature) holding quorum stake."""
    if not validators.has_quorum(signatures):
        raise ValueError("build_qc: signer stake below quorum")
    bitmap, ordered = _signature_list(signatures, validators)
    return QuorumCertificate(vote=vote, signers=bitmap, signatures=ordered)


def build_nec(
    no_endorsement: NoEndorsement, signatures: Mapping[int, bytes], validators: ValidatorSet
) -> NoEndorsementCertificate:
    if not validators.has_quorum(signatures):
        raise ValueError("build_nec: signer stake below quorum")
    bitmap, ordered = _signature_list(signatures, validators)
    return NoEndorsementCertificate(
        no_endorsement=no_endorsement, signers=bitmap, signatures=ordered
    )


def best_extend(extends: Iterable[HighExtend]) -> HighExtend:
    """Maximum-rank extend; among equal ranks the lowest block id (deterministic tie rule)."""
    best: HighExtend | None = None
    for extend in extends:
        if best is None:
            best = extend
            continue
        rank, best_rank = extend_rank(extend), extend_rank(best)
        if rank > best_rank or (
            rank == best_rank and _extend_tiebreak(extend) < _extend_tiebreak(best)
        ):
            best = extend
    if best is None:
        raise ValueError("best_extend: no extends")
    return best


def build_tc(
    epoch: int, round: int, timeouts: Iterable[TimeoutMessage], validators: ValidatorSet
) -> TimeoutCertificate:
    """TC from verified timeouts for (epoch, round), one per author (the first one counts).

    Signatures are grouped by (high_qc_round, high_tip_round); the high extend is the
    maximum-rank extend over all timeouts; tip votes are not part of a TC.
    """
    by_author: dict[int, TimeoutMessage] = {}
    for timeout in timeouts:
        if timeout.info.epoch != epoch or timeout.info.round != round:
            raise ValueError("build_tc: timeout for another round")
        by_author.setdefault(timeout.author, timeout)
    if not validators.has_quorum(by_author):
        raise ValueError("build_tc: signer stake below quorum")
    groups: dict[tuple[int, int], dict[int, bytes]] = {}
    for author, timeout in by_author.items():
        pair = (timeout.info.high_qc_round, timeout.info.high_tip_round)
        groups.setdefault(pair, {})[author] = timeout.signature
    tip_rounds = []
    for pair in sorted(groups):
        bitmap, ordered = _signature_list(groups[pair], validators)
        tip_rounds.append(
            TipRoundGroup(
                high_qc_round=pair[0], high_tip_round=pair[1], signers=bitmap, signatures=ordered
            )
        )
    winner = best_extend(timeout.high_extend for timeout in by_author.values())
    return TimeoutCertificate(
        epoch=epoch, round=round, tip_rounds=tuple(tip_rounds), high_extend=winner
    )


def notip_from_tc(tc: TimeoutCertificate) -> NoTipCertificate:
    """The fresh certificate for a block after a TC won by a QC."""
    if not isinstance(tc.high_extend, QuorumCertificate):
        raise ValueError("notip_from_tc: the TC's high extend is a tip")
    return NoTipCertificate(
        epoch=tc.epoch, round=tc.round, tip_rounds=tc.tip_rounds, high_qc=tc.high_extend
    )


class Signer:
    """All signing of one validator, in one place."""

    def __init__(
        self,
        index: int,
        key: KeyPair,
        scheme: SignatureScheme,
        *,
        verifier: Verifier | None = None,
    ):
        """`verifier`, when given, learns every signature made here as valid, so this
        node never re-verifies its own proposals, tips and votes (its key must be the
        public key of validator `index` in the verifier's set)."""
        if verifier is not None and verifier.validators.public_key(index) != key.public:
            raise ValueError(f"key does not match validator {index}'s public key")
        self.index = index
        self.key = key
        self.scheme = scheme
        self._verifier = verifier

    def _sign(self, domain: bytes, payload: bytes) -> bytes:
        signature = self.scheme.sign(self.key, domain, payload)
        if self._verifier is not None:
            self._verifier.remember_signature(self.index, domain, payload, signature)
        return signature

    def vote_signature(self, vote: Vote) -> bytes:
        return self._sign(Domain.VOTE, codec.vote_signing_bytes(vote))

    def vote(self, vote: Vote) -> VoteMessage:
        return VoteMessage(vote=vote, author=self.index, signature=self.vote_signature(vote))

    def tip(
        self,
        header: BlockHeader,
        fresh_certificate: NoEndorsementCertificate | NoTipCertificate | None = None,
    ) -> Tip:
        signature = self._sign(Domain.TIP, codec.tip_signing_bytes(header))
        return Tip(header=header, signature=signature, fresh_certificate=fresh_certificate)

    def proposal(
        self,
        round: int,
        epoch: int,
        tip: Tip,
        body: BlockBody,
        last_round_tc: TimeoutCertificate | None,
    ) -> ProposalMessage:
        payload = codec.proposal_signing_bytes(round, epoch, self.index, tip.header, last_round_tc)
        return ProposalMessage(
            round=round,
            epoch=epoch,
            author=self.index,
            tip=tip,
            body=body,
            last_round_tc=last_round_tc,
            signature=self._sign(Domain.PROPOSAL, payload),
        )

    def timeout(
        self,
        info: TimeoutInfo,
        high_extend: HighExtend,
        last_round_certificate: RoundCertificate | None,
        tip_vote: bool,
    ) -> TimeoutMessage:
        tip_vote_signature = None
        if tip_vote:
            if not isinstance(high_extend, Tip):
                raise ValueError("a tip vote needs a tip extend")
            vote = Vote(
                block_id=codec.block_id(high_extend.header), round=info.round, epoch=info.epoch
            )
            tip_vote_signature = self.vote_signature(vote)
        return TimeoutMessage(
            info=info,
            author=self.index,
            signature=self._sign(Domain.TIMEOUT, codec.timeout_signing_bytes(info)),
            high_extend=high_extend,
            tip_vote_signature=tip_vote_signature,
            last_round_certificate=last_round_certificate,
        )

    def no_endorsement_signature(self, no_endorsement: NoEndorsement) -> bytes:
        return self._sign(Domain.NO_ENDORSEMENT, codec.no_endorsement_signing_bytes(no_endorsement))

    def no_endorsement(self, no_endorsement: NoEndorsement) -> NoEndorsementMessage:
        return NoEndorsementMessage(
            no_endorsement=no_endorsement,
            author=self.index,
            signature=self.no_endorsement_signature(no_endorsement),
        )

    def round_recovery(
        self, round: int, epoch: int, tc: TimeoutCertificate
    ) -> RoundRecoveryMessage:
        payload = codec.round_recovery_signing_bytes(round, epoch, tc)
        return RoundRecoveryMessage(
            round=round,
            epoch=epoch,
            tc=tc,
            author=self.index,
            signature=self._sign(Domain.ROUND_RECOVERY, payload),
        )
