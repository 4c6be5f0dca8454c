"""Sans-IO authenticated key exchange and AEAD framing for the `tcp` transport.

Three messages, fixed sizes (I = initiator, R = responder):

    hello   I->R  MAGIC(8) | I_static(32) | I_eph(32) | chain_tag(32)       104 bytes
    reply   R->I  0x00 | R_static(32) | R_eph(32) | sig_R(64)               129 bytes
      or    R->I  0x01 | len(1) | R's chain id | zero padding                129 bytes
    finish  I->R  sig_I(64)                                                 64 bytes

    chain_tag = blake2b-256("sedna/chain/1" | 0x00 | chain id)
    th1   = blake2b-256(MAGIC | hello | R_static | R_eph)
    sig_R = Ed25519[chain](R, Domain.HANDSHAKE, b"responder" | th1)
    th2   = blake2b-256(th1 | sig_R)
    sig_I = Ed25519[chain](I, Domain.HANDSHAKE, b"initiator" | th2)

Chain id (rule WRONG-CHAIN): the hello names the initiator's chain; a responder on another
chain answers the `0x01` refusal carrying its own chain id and closes, so both sides count
`wrong_chain` and the dialer can say which chain answered. The refusal is not signed (a
man in the middle could forge one, as it could close the connection); what protects the
network is that every signature, the handshake's included, is made for one chain id
(consensus/crypto.py), so a node of another chain can never complete a handshake.
    keys  = HKDF-SHA256(ikm = X25519(eph, peer_eph), salt = th2, info = MAGIC | "keys", 64)
            first 32 bytes: initiator->responder key, last 32: responder->initiator key

Each side signs the transcript that contains both ephemeral keys, so an attacker who does
not hold a validator's Ed25519 key can neither impersonate it nor relay a handshake with
a swapped ephemeral key. The role labels stop a signature from being reflected.

Frames: 4-byte big-endian length of the ciphertext, then ChaCha20-Poly1305 ciphertext
(plaintext + 16-byte tag). Nonce = 4 zero bytes | 64-bit little-endian counter, one
counter per direction. The length prefix is the associated data.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consensus.crypto import DEFAULT_CHAIN_ID, Domain, Ed25519Scheme, KeyPair

MAGIC = b"sednaT\x00\x02"  # protocol name + version 2 (the hello names its chain)
CHAIN_TAG_BYTES = 32
HELLO_BYTES = len(MAGIC) + 32 + 32 + CHAIN_TAG_BYTES
REPLY_ACCEPT = 0x00
REPLY_WRONG_CHAIN = 0x01
REPLY_BYTES = 1 + 32 + 32 + 64
FINISH_BYTES = 64
TAG_BYTES = 16
LENGTH = struct.Struct(">I")
_MAX_COUNTER = 2**64 - 1


class HandshakeError(Exception):
    """The remote failed the handshake. `reason` is a HANDSHAKE_FAILURE_REASONS entry."""

    def __init__(self, reason: str, detail: str, answer: bytes = b"") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.answer = answer  # sent to the remote before closing (the wrong_chain refusal)


def chain_tag(chain_id: str) -> bytes:
    """What a hello carries to name its chain."""
    return _hash(b"sedna/chain/1\x00", chain_id.encode("ascii"))


def wrong_chain_refusal(chain_id: str) -> bytes:
    """The responder's refusal of a hello from another chain: its own chain id."""
    raw = chain_id.encode("ascii")
    return (bytes((REPLY_WRONG_CHAIN, len(raw))) + raw).ljust(REPLY_BYTES, b"\x00")


class FrameError(Exception):
    """A received frame is malformed. `reason` is a CONN_ERROR_REASONS entry."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _hash(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        h.update(part)
    return h.digest()


def _raw_public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def _shared_secret(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # rule: reject low-order points (all-zero shared secret)
        raise HandshakeError("bad_handshake", "degenerate X25519 key") from exc


def _derive(shared: bytes, th2: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=th2, info=MAGIC + b"keys").derive(shared)
    return okm[:32], okm[32:]


class FrameCipher:
    """One direction's AEAD state (key + nonce counter)."""

    __slots__ = ("_aead", "_counter")

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0

    def _next_nonce(self) -> bytes:
        if self._counter >= _MAX_COUNTER:  # rule: a nonce is never reused
            raise FrameError("aead_failure", "nonce counter exhausted")
        nonce = b"\x00\x00\x00\x00" + self._counter.to_bytes(8, "little")
        self._counter += 1
        return nonce

    def seal(self, plaintext: bytes) -> tuple[bytes, bytes]:
        """Return (length prefix, ciphertext) for one frame."""
        header = LENGTH.pack(len(plaintext) + TAG_BYTES)
        return header, self._aead.encrypt(self._next_nonce(), plaintext, header)

    def open(self, header: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(self._next_nonce(), ciphertext, header)
        except InvalidTag as exc:
            raise FrameError("aead_failure", "frame failed authentication") from exc


def check_frame_length(header: bytes, max_frame_bytes: int) -> int:
    """Ciphertext length announced by `header`, checked before the body is read."""
    (length,) = LENGTH.unpack(header)
    if length > max_frame_bytes + TAG_BYTES:  # rule: hard frame limit, before reading
        raise FrameError("frame_too_large_in", f"{length} bytes announced")
    if length < TAG_BYTES:  # rule: every frame carries an AEAD tag
        raise FrameError("bad_length", f"{length} bytes announced")
    return length


@dataclass
class Session:
    """The result of a handshake: who the peer is and the two ciphers."""

    peer_public: bytes
    send: FrameCipher
    recv: FrameCipher


class Initiator:
    """The dialing side."""

    def __init__(
        self, key: KeyPair, expected_peer: bytes, chain_id: str = DEFAULT_CHAIN_ID
    ) -> None:
        self._key = key
        self._expected_peer = expected_peer
        self._scheme = Ed25519Scheme(chain_id)
        self._eph = X25519PrivateKey.generate()
        self.hello = MAGIC + key.public + _raw_public(self._eph) + chain_tag(chain_id)

    def on_reply(self, reply: bytes) -> tuple[bytes, Session]:
        """Check the responder's reply; return (finish message, session)."""
        if len(reply) != REPLY_BYTES:
            raise HandshakeError("bad_handshake", "reply has the wrong size")
        if reply[0] == REPLY_WRONG_CHAIN:  # rule WRONG-CHAIN: the peer is on another chain
            size = reply[1]
            theirs = reply[2 : 2 + size].decode("ascii", "replace")
            raise HandshakeError(
                "wrong_chain",
                f"the peer is on chain {theirs!r}, this node on {self._scheme.chain_id!r}",
            )
        if reply[0] != REPLY_ACCEPT:
            raise HandshakeError("bad_handshake", "unknown reply status")
        reply = reply[1:]
        r_static, r_eph, sig_r = reply[:32], reply[32:64], reply[64:]
        if r_static != self._expected_peer:  # rule: the dialed validator answers
            raise HandshakeError("wrong_peer_key", r_static.hex()[:16])
        th1 = _hash(MAGIC, self.hello, r_static, r_eph)
        if not self._scheme.verify(r_static, Domain.HANDSHAKE, b"responder" + th1, sig_r):
            raise HandshakeError("bad_handshake", "bad responder signature")
        shared = _shared_secret(self._eph, r_eph)
        th2 = _hash(th1, sig_r)
        sig_i = self._scheme.sign(self._key, Domain.HANDSHAKE, b"initiator" + th2)
        k_i2r, k_r2i = _derive(shared, th2)
        return sig_i, Session(r_static, FrameCipher(k_i2r), FrameCipher(k_r2i))


class Responder:
    """The accepting side. `known` maps validator public keys to indices."""

    def __init__(
        self, key: KeyPair, known: dict[bytes, int], chain_id: str = DEFAULT_CHAIN_ID
    ) -> None:
        self._key = key
        self._known = known
        self._scheme = Ed25519Scheme(chain_id)
        self._chain_tag = chain_tag(chain_id)
        self._eph = X25519PrivateKey.generate()
        self.peer_index = -1
        self._peer_public = b""
        self._th2 = b""
        self._shared = b""

    def on_hello(self, hello: bytes) -> bytes:
        """Check the initiator's hello; return the reply."""
        if len(hello) != HELLO_BYTES or hello[: len(MAGIC)] != MAGIC:  # rule: our protocol
            raise HandshakeError("bad_handshake", "bad magic or size")
        i_static = hello[len(MAGIC) : len(MAGIC) + 32]
        i_eph = hello[len(MAGIC) + 32 : len(MAGIC) + 64]
        if hello[len(MAGIC) + 64 :] != self._chain_tag:  # rule WRONG-CHAIN: one network
            raise HandshakeError(
                "wrong_chain",
                f"{i_static.hex()[:16]} dialed from another chain "
                f"(this node is on {self._scheme.chain_id!r})",
                answer=wrong_chain_refusal(self._scheme.chain_id),
            )
        index = self._known.get(i_static)
        if index is None:  # rule: only known validators (self is not in `known`)
            raise HandshakeError("unknown_key", i_static.hex()[:16])
        shared = _shared_secret(self._eph, i_eph)
        r_eph = _raw_public(self._eph)
        th1 = _hash(MAGIC, hello, self._key.public, r_eph)
        sig_r = self._scheme.sign(self._key, Domain.HANDSHAKE, b"responder" + th1)
        self.peer_index = index
        self._peer_public = i_static
        self._th2 = _hash(th1, sig_r)
        self._shared = shared
        return bytes((REPLY_ACCEPT,)) + self._key.public + r_eph + sig_r

    def on_finish(self, finish: bytes) -> Session:
        """Check the initiator's signature; return the session."""
        if not self._th2:
            raise HandshakeError("bad_handshake", "finish before hello")
        if len(finish) != FINISH_BYTES or not self._scheme.verify(
            self._peer_public, Domain.HANDSHAKE, b"initiator" + self._th2, finish
        ):  # rule: the initiator proves it holds its validator key
            raise HandshakeError("bad_handshake", "bad initiator signature")
        k_i2r, k_r2i = _derive(self._shared, self._th2)
        return Session(self._peer_public, FrameCipher(k_r2i), FrameCipher(k_i2r))
