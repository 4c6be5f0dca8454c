"""The hot-path shortcuts: signature cache, identity memos, merged safety writes, commit order.

Each shortcut must give exactly the answer of the slow path, and never accept what the slow
path rejects.
"""

from __future__ import annotations

import hashlib

import pytest

from consensus import codec
from consensus.certificates import InvalidMessage, Signer, Verifier
from consensus.core import ConsensusCore, CoreConfig
from consensus.crypto import ED25519, Domain, KeyPair
from consensus.events import (
    Broadcast,
    CommitBlocks,
    MessageReceived,
    PayloadReady,
    PersistSafety,
    RequestPayload,
    Send,
    Start,
)
from consensus.messages import (
    GENESIS_QC,
    AdvanceRoundMessage,
    BlockBody,
    QuorumCertificate,
    Vote,
    VoteMessage,
)
from tests.consensus.support import (
    KEYS,
    P1,
    P2,
    QC1,
    QC2,
    SCHEDULE,
    SIGNERS,
    TIP1,
    TIP2,
    VALIDATORS,
    block_id,
    make_core,
    receive,
    sent,
)


class CountingScheme:
    """Real Ed25519 that counts verifications."""

    name = "ed25519"

    def __init__(self) -> None:
        self.verifies = 0

    def sign(self, key: KeyPair, domain: bytes, payload: bytes) -> bytes:
        return ED25519.sign(key, domain, payload)

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool:
        self.verifies += 1
        return ED25519.verify(public, domain, payload, signature)


def _verifier(scheme=ED25519) -> Verifier:
    return Verifier(VALIDATORS, SCHEDULE, scheme)


# --------------------------------------------------------------------------- signature cache


def test_a_cached_signature_is_not_verified_again() -> None:
    scheme = CountingScheme()
    verifier = _verifier(scheme)
    vote = QC1.vote
    for author in (0, 1):
        verifier.vote_message(VoteMessage(vote, author, SIGNERS[author].vote_signature(vote)))
    assert scheme.verifies == 2
    verifier.qc(QC1)  # signers 0, 1, 2: only validator 2's signature is new
    assert scheme.verifies == 3


def test_a_bad_signature_is_rejected_every_time_and_never_cached() -> None:
    verifier = _verifier()
    vote = QC1.vote
    good = SIGNERS[0].vote_signature(vote)
    bad = bytes([good[0] ^ 1]) + good[1:]
    for _ in range(2):
        with pytest.raises(InvalidMessage, match="invalid signature"):
            verifier.vote_message(VoteMessage(vote, 0, bad))
    verifier.vote_message(VoteMessage(vote, 0, good))
    # The valid signature is cached; it must not vouch for another author, vote or signature.
    with pytest.raises(InvalidMessage):
        verifier.vote_message(VoteMessage(vote, 1, good))
    other = Vote(block_id=vote.block_id, round=vote.round + 1, epoch=vote.epoch)
    with pytest.raises(InvalidMessage):
        verifier.vote_message(VoteMessage(other, 0, good))
    forged = QuorumCertificate(vote=vote, signers=QC1.signers, signatures=(good, bad, good))
    with pytest.raises(InvalidMessage):
        verifier.qc(forged)


def test_signature_cache_key_separates_domain_and_payload_boundaries() -> None:
    key = Verifier._signature_key
    assert key(1, Domain.VOTE, b"ab", b"c" * 64) != key(1, Domain.VOTE, b"a", b"b" + b"c" * 64)
    assert key(1, Domain.VOTE, b"x", b"s" * 64) != key(1, Domain.TIMEOUT, b"x", b"s" * 64)
    assert key(1, Domain.VOTE, b"x", b"s" * 64) != key(2, Domain.VOTE, b"x", b"s" * 64)


def test_signature_cache_is_bounded() -> None:
    verifier = _verifier()
    verifier.SIGNATURE_CACHE_ENTRIES = 8
    for round in range(1, 30):
        vote = Vote(block_id=bytes(32), round=round, epoch=1)
        verifier.vote_message(VoteMessage(vote, 0, SIGNERS[0].vote_signature(vote)))
    assert len(verifier._valid_signatures) == 8


def test_signer_teaches_its_verifier_and_refuses_a_foreign_key() -> None:
    scheme = CountingScheme()
    verifier = _verifier(scheme)
    signer = Signer(1, KEYS[1], scheme, verifier=verifier)
    verifier.proposal_message(
        signer.proposal(1, 1, signer.tip(TIP1.header), BlockBody(b"b1"), None)
    )
    assert scheme.verifies == 0  # own tip and proposal signatures were never re-verified
    with pytest.raises(ValueError, match="does not match"):
        Signer(1, KEYS[2], scheme, verifier=verifier)


def test_a_leader_verifies_no_signature_of_its_own_proposal() -> None:
    scheme = CountingScheme()
    core = ConsensusCore(
        config=CoreConfig(),
        validators=VALIDATORS,
        schedule=SCHEDULE,
        index=1,
        key=KEYS[1],
        scheme=scheme,
    )
    out = core.handle(Start(0))
    request = next(c for c in out if isinstance(c, RequestPayload))
    before = scheme.verifies
    out = core.handle(PayloadReady(1, request.round, b"payload"))
    assert scheme.verifies == before
    assert sent(out, type(P1))  # it did propose (and vote: see the merged-write test)


# --------------------------------------------------------------------------- identity memos


def test_memoized_ids_equal_fresh_hashes() -> None:
    payload = b"x" * 1000
    body = BlockBody(payload=payload)
    fresh = hashlib.sha256(b"sedna/body/1\x00" + payload).digest()
    assert codec.body_id(body) == fresh == codec.body_id(body)
    assert codec.body_id(BlockBody(payload=b"y" * 1000)) != fresh  # a new object is hashed
    header = TIP1.header
    expected = hashlib.sha256(b"sedna/block/1\x00" + codec.encode(header)).digest()
    assert codec.block_id(header) == expected == codec.block_id(header)
    assert codec.block_id(TIP2.header) != expected


def test_a_mutable_payload_is_never_memoized() -> None:
    payload = bytearray(b"a" * 64)
    body = BlockBody(payload=payload)  # not decodable from the wire, but constructible
    first = codec.body_id(body)
    payload[0] = ord("b")
    assert codec.body_id(body) != first


def test_memo_stays_bounded() -> None:
    for i in range(2000):
        codec.body_id(BlockBody(payload=i.to_bytes(4, "big")))
    assert len(codec._body_ids._entries) <= codec._body_ids._max_entries


# --------------------------------------------------------------------------- command order


def _leader_proposes(index: int = 1) -> list:
    core = make_core(index, start=False)
    out = core.handle(Start(0))
    request = next(c for c in out if isinstance(c, RequestPayload))
    return core.handle(PayloadReady(1, request.round, b"payload")), core


def test_leader_persists_once_before_its_proposal_and_its_vote() -> None:
    out, core = _leader_proposes(1)
    writes = [i for i, c in enumerate(out) if isinstance(c, PersistSafety)]
    broadcast = [i for i, c in enumerate(out) if isinstance(c, Broadcast)]
    votes = [i for i, c in enumerate(out) if isinstance(c, Send)]
    assert len(writes) == 1 and broadcast and votes
    assert writes[0] < broadcast[0] and writes[0] < votes[0]
    state = out[writes[0]].state
    assert state.highest_propose == 1 and state.highest_vote == 1  # covers both sends
    assert state == core.safety_state


def test_a_follower_still_writes_before_each_vote() -> None:
    core = make_core(0)
    out = receive(core, 1, P1)
    writes = [i for i, c in enumerate(out) if isinstance(c, PersistSafety)]
    votes = [i for i, c in enumerate(out) if isinstance(c, Send)]
    assert len(writes) == 1 and votes and writes[0] < min(votes)


def test_commits_come_last_in_their_batch() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    receive(core, 2, P2)
    out = core.handle(MessageReceived(0, 2, AdvanceRoundMessage(certificate=QC2)))
    kinds = [type(c) for c in out]
    assert CommitBlocks in kinds and Send in kinds  # AR2: the QC is forwarded to leader 3
    first_commit = kinds.index(CommitBlocks)
    assert all(k is CommitBlocks for k in kinds[first_commit:])
    assert [b.block_id for c in out if isinstance(c, CommitBlocks) for b in c.blocks] == [
        block_id(TIP1)
    ]


def test_genesis_qc_needs_no_signature() -> None:
    scheme = CountingScheme()
    _verifier(scheme).qc(GENESIS_QC)
    assert scheme.verifies == 0
