"""The tcp transport's key exchange and frame cipher, without sockets."""

from __future__ import annotations

import pytest

from consensus.crypto import DEFAULT_CHAIN_ID, ED25519, Domain, derive_keys
from node.transport.base import PeerQueue, TransportLimits, validate_config
from node.transport.handshake import (
    FINISH_BYTES,
    HELLO_BYTES,
    MAGIC,
    REPLY_BYTES,
    TAG_BYTES,
    FrameError,
    HandshakeError,
    Initiator,
    Responder,
    chain_tag,
    check_frame_length,
    wrong_chain_refusal,
)
from node.transport.testing import local_peers

KEYS = derive_keys(4, "handshake-tests")
KNOWN_BY_1 = {KEYS[0].public: 0, KEYS[2].public: 2}  # node 1 knows validators 0 and 2


def _handshake(initiator_index: int = 0, responder_index: int = 1):
    initiator = Initiator(KEYS[initiator_index], KEYS[responder_index].public)
    responder = Responder(KEYS[responder_index], KNOWN_BY_1)
    reply = responder.on_hello(initiator.hello)
    finish, i_session = initiator.on_reply(reply)
    r_session = responder.on_finish(finish)
    return initiator, responder, i_session, r_session


def test_handshake_authenticates_both_sides_and_keys_match() -> None:
    initiator, responder, i_session, r_session = _handshake()
    assert len(initiator.hello) == HELLO_BYTES
    assert responder.peer_index == 0
    assert i_session.peer_public == KEYS[1].public
    assert r_session.peer_public == KEYS[0].public
    for plaintext in (b"", b"vote", bytes(range(256)) * 10):
        header, body = i_session.send.seal(plaintext)
        assert r_session.recv.open(header, body) == plaintext
        header, body = r_session.send.seal(plaintext)
        assert i_session.recv.open(header, body) == plaintext


def test_sessions_are_fresh_per_handshake() -> None:
    *_, first, _ = _handshake()
    *_, second, _ = _handshake()
    assert first.send.seal(b"same")[1] != second.send.seal(b"same")[1]


def test_unknown_initiator_key_is_rejected_before_any_signature() -> None:
    initiator = Initiator(KEYS[3], KEYS[1].public)  # validator 3 is not known to node 1
    with pytest.raises(HandshakeError) as info:
        Responder(KEYS[1], KNOWN_BY_1).on_hello(initiator.hello)
    assert info.value.reason == "unknown_key"


@pytest.mark.parametrize(
    "hello",
    [
        b"",
        b"\x00" * HELLO_BYTES,  # wrong magic
        MAGIC + KEYS[0].public,  # truncated
        b"GET / HTTP/1.1\r\n" + b"x" * (HELLO_BYTES - 16),
    ],
)
def test_malformed_hello_is_rejected(hello: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        Responder(KEYS[1], KNOWN_BY_1).on_hello(hello)
    assert info.value.reason == "bad_handshake"


def test_low_order_ephemeral_key_is_rejected() -> None:
    hello = MAGIC + KEYS[0].public + b"\x00" * 32 + chain_tag(DEFAULT_CHAIN_ID)  # order 1
    with pytest.raises(HandshakeError) as info:
        Responder(KEYS[1], KNOWN_BY_1).on_hello(hello)
    assert info.value.reason == "bad_handshake"


def test_initiator_rejects_wrong_responder_identity() -> None:
    initiator = Initiator(KEYS[0], KEYS[1].public)
    imposter = Responder(KEYS[2], {KEYS[0].public: 0})  # validator 2 answers at 1's address
    with pytest.raises(HandshakeError) as info:
        initiator.on_reply(imposter.on_hello(initiator.hello))
    assert info.value.reason == "wrong_peer_key"  # counted apart from malformed handshakes
    assert info.value.detail == KEYS[2].public.hex()[:16]


def test_initiator_rejects_tampered_reply() -> None:
    initiator = Initiator(KEYS[0], KEYS[1].public)
    reply = bytearray(Responder(KEYS[1], KNOWN_BY_1).on_hello(initiator.hello))
    reply[40] ^= 1  # the responder's ephemeral key, covered by its signature
    with pytest.raises(HandshakeError, match="bad responder signature"):
        initiator.on_reply(bytes(reply))
    with pytest.raises(HandshakeError):
        Initiator(KEYS[0], KEYS[1].public).on_reply(bytes(reply[:-1]))


def test_responder_rejects_bad_or_reflected_finish() -> None:
    initiator = Initiator(KEYS[0], KEYS[1].public)
    responder = Responder(KEYS[1], KNOWN_BY_1)
    reply = responder.on_hello(initiator.hello)
    sig_r = reply[65:]
    with pytest.raises(HandshakeError):
        responder.on_finish(sig_r)  # the responder's own signature reflected back
    with pytest.raises(HandshakeError):
        responder.on_finish(b"\x00" * FINISH_BYTES)
    # A signature by the right key over the right bytes but another domain is refused too.
    with pytest.raises(HandshakeError):
        responder.on_finish(ED25519.sign(KEYS[0], Domain.VOTE, b"initiator"))
    finish, _ = initiator.on_reply(reply)
    assert responder.on_finish(finish).peer_public == KEYS[0].public


def test_finish_before_hello_is_rejected() -> None:
    with pytest.raises(HandshakeError):
        Responder(KEYS[1], KNOWN_BY_1).on_finish(b"\x00" * FINISH_BYTES)


def test_relayed_handshake_with_swapped_ephemeral_fails() -> None:
    """A man in the middle substituting its own ephemeral key breaks the signatures."""
    initiator = Initiator(KEYS[0], KEYS[1].public)
    mitm = Initiator(KEYS[0], KEYS[1].public)  # knows only public data; own ephemeral
    forged_hello = initiator.hello[: len(MAGIC) + 32] + mitm.hello[len(MAGIC) + 32 :]
    responder = Responder(KEYS[1], KNOWN_BY_1)
    reply = responder.on_hello(forged_hello)
    with pytest.raises(HandshakeError):
        initiator.on_reply(reply)  # the transcript signed by 1 has the forged ephemeral


def test_frame_tampering_replay_and_reordering_fail() -> None:
    _, _, i_session, r_session = _handshake()
    h1, b1 = i_session.send.seal(b"first")
    h2, b2 = i_session.send.seal(b"second")
    tampered = bytearray(b1)
    tampered[0] ^= 1
    with pytest.raises(FrameError) as info:
        r_session.recv.open(h1, bytes(tampered))
    assert info.value.reason == "aead_failure"
    # The counter advanced on the failed frame: the connection is dead by design.
    _, _, i_session, r_session = _handshake()
    h1, b1 = i_session.send.seal(b"first")
    h2, b2 = i_session.send.seal(b"second")
    with pytest.raises(FrameError):
        r_session.recv.open(h2, b2)  # out of order
    _, _, i_session, r_session = _handshake()
    h1, b1 = i_session.send.seal(b"first")
    assert r_session.recv.open(h1, b1) == b"first"
    with pytest.raises(FrameError):
        r_session.recv.open(h1, b1)  # replayed
    _, _, i_session, r_session = _handshake()
    h1, b1 = i_session.send.seal(b"first")
    with pytest.raises(FrameError):
        r_session.recv.open(b"\x00\x00\x00\x99", b1)  # header is authenticated data
    with pytest.raises(FrameError):
        i_session.recv.open(*i_session.send.seal(b"x"))  # own direction's key is not the peer's


def test_frame_length_checked_before_body() -> None:
    limit = 1000
    assert check_frame_length((limit + TAG_BYTES).to_bytes(4, "big"), limit) == limit + TAG_BYTES
    assert check_frame_length(TAG_BYTES.to_bytes(4, "big"), limit) == TAG_BYTES
    with pytest.raises(FrameError) as info:
        check_frame_length((limit + TAG_BYTES + 1).to_bytes(4, "big"), limit)
    assert info.value.reason == "frame_too_large_in"
    with pytest.raises(FrameError) as info:
        check_frame_length(b"\xff\xff\xff\xff", limit)
    assert info.value.reason == "frame_too_large_in"
    with pytest.raises(FrameError) as info:
        check_frame_length((TAG_BYTES - 1).to_bytes(4, "big"), limit)
    assert info.value.reason == "bad_length"


def test_message_sizes() -> None:
    assert (HELLO_BYTES, REPLY_BYTES, FINISH_BYTES) == (104, 129, 64)
    assert len(wrong_chain_refusal("x" * 64)) == REPLY_BYTES  # the longest chain id fits


def test_a_hello_from_another_chain_is_refused_with_the_responders_chain_id() -> None:
    """Rule WRONG-CHAIN: the responder answers a refusal naming its chain; the dialer
    raises `wrong_chain` saying which chain answered. Nothing is signed for the stranger."""
    initiator = Initiator(KEYS[0], KEYS[1].public, "chain-a")
    responder = Responder(KEYS[1], KNOWN_BY_1, "chain-b")
    with pytest.raises(HandshakeError) as refused:
        responder.on_hello(initiator.hello)
    assert refused.value.reason == "wrong_chain"
    assert refused.value.answer == wrong_chain_refusal("chain-b")
    assert responder.peer_index == -1  # nothing adopted
    with pytest.raises(HandshakeError) as told:
        initiator.on_reply(refused.value.answer)
    assert told.value.reason == "wrong_chain"
    assert "'chain-b'" in told.value.detail and "'chain-a'" in told.value.detail
    # Same chain on both sides (not the default one): the handshake completes.
    initiator = Initiator(KEYS[0], KEYS[1].public, "chain-b")
    responder = Responder(KEYS[1], KNOWN_BY_1, "chain-b")
    finish, _ = initiator.on_reply(responder.on_hello(initiator.hello))
    assert responder.on_finish(finish).peer_public == KEYS[0].public


def test_a_hello_lying_about_its_chain_cannot_complete_the_handshake() -> None:
    """The chain tag is only a courtesy: the signatures are made for one chain, so a node
    of chain A that sends chain B's tag fails on the responder's signature."""
    liar = Initiator(KEYS[0], KEYS[1].public, "chain-a")
    forged_hello = liar.hello[: -len(chain_tag("chain-b"))] + chain_tag("chain-b")
    liar.hello = forged_hello  # its transcript must match what it sent
    reply = Responder(KEYS[1], KNOWN_BY_1, "chain-b").on_hello(forged_hello)
    with pytest.raises(HandshakeError, match="bad responder signature"):
        liar.on_reply(reply)


def test_peer_queue_drops_oldest_at_its_bound() -> None:
    queue = PeerQueue(3)
    assert [queue.push(bytes([i])) for i in range(5)] == [True, True, True, False, False]
    assert len(queue) == 3
    assert queue.pop_batch(10, 10**6) == [b"\x02", b"\x03", b"\x04"]
    assert queue.pop_batch(10, 10**6) == []
    for i in range(3):
        queue.push(bytes(100) + bytes([i]))
    assert len(queue.pop_batch(10, 150)) == 2  # stops once the byte budget is reached
    assert queue.clear() == 1


def test_limits_and_config_validation() -> None:
    with pytest.raises(ValueError):
        TransportLimits(max_frame_bytes=0)
    with pytest.raises(ValueError):
        TransportLimits(peer_queue_frames=0)
    with pytest.raises(ValueError):
        TransportLimits(connect_backoff_initial_ms=500, connect_backoff_max_ms=100)
    peers = local_peers(KEYS, [1000, 1001, 1002, 1003])
    remote = validate_config(index=1, key=KEYS[1], listen_port=1001, peers=peers)
    assert sorted(remote) == [0, 2, 3]
    with pytest.raises(ValueError, match="self"):
        validate_config(index=1, key=KEYS[2], listen_port=1001, peers=peers)
    with pytest.raises(ValueError, match="has index"):
        validate_config(index=1, key=KEYS[1], listen_port=1001, peers={5: peers[0]})
    dup = dict(peers)
    dup[3] = type(peers[3])(3, "127.0.0.1", 1003, KEYS[0].public)
    with pytest.raises(ValueError, match="used twice"):
        validate_config(index=1, key=KEYS[1], listen_port=1001, peers=dup)
    with pytest.raises(ValueError, match="listen_port"):
        validate_config(index=1, key=KEYS[1], listen_port=70000, peers=peers)
