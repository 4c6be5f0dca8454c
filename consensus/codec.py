"""Canonical, versioned binary encoding of wire messages, and content identities.

Frame layout: one version byte (`WIRE_VERSION`) followed by the msgpack encoding of
one `Message` (msgspec, positional structs, tagged union). msgspec's encoding of a
fixed schema is deterministic, so the same message always gives the same bytes and
those bytes can be hashed and signed.

`decode_message` turns untrusted bytes into a valid, well-sized `Message` or raises
`DecodeError`, and nothing else.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from consensus.messages import (
    BlockBody,
    BlockHeader,
    Message,
    NoEndorsement,
    TimeoutCertificate,
    TimeoutInfo,
    Vote,
)

WIRE_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024

_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(Message)


DecodeReason = Literal["not_bytes", "empty_frame", "frame_too_large", "bad_version", "malformed"]


class DecodeError(ValueError):
    """Untrusted bytes were not a valid message. The text says why; `reason` is its label."""

    def __init__(self, message: str, reason: DecodeReason = "malformed"):
        super().__init__(message)
        self.reason: DecodeReason = reason


def encode(value: Any) -> bytes:
    """Canonical bytes of any wire struct (no version byte)."""
    return _encoder.encode(value)


def encode_message(message: Message) -> bytes:
    """Versioned frame for one message."""
    return bytes((WIRE_VERSION,)) + _encoder.encode(message)


def decode_message(data: bytes, max_bytes: int = MAX_FRAME_BYTES) -> Message:
    """Decode one versioned frame. Raises DecodeError for anything that is not a valid message."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}", "not_bytes")
    if len(data) == 0:
        raise DecodeError("empty frame", "empty_frame")
    if len(data) > max_bytes:
        raise DecodeError(
            f"frame of {len(data)} bytes exceeds the limit of {max_bytes}", "frame_too_large"
        )
    if data[0] != WIRE_VERSION:
        raise DecodeError(
            f"unsupported wire version {data[0]} (expected {WIRE_VERSION})", "bad_version"
        )
    try:
        return _message_decoder.decode(memoryview(data)[1:])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(str(exc)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise DecodeError(f"malformed frame: {exc}") from None


def _digest(domain: bytes, payload: bytes) -> bytes:
    hasher = hashlib.sha256(domain)
    hasher.update(b"\x00")
    hasher.update(payload)  # no concatenated copy of a large payload
    return hasher.digest()


class _IdentityMemo:
    """Digests of the last few objects seen, keyed by object identity.

    Wire structs are immutable, so an object's digest never changes; the memo keeps a
    reference to each object it holds, so an id is never reused while its entry lives.
    One header or body is hashed many times while a message crosses the core (verifier,
    block rules, vote, traces); this makes every call after the first a dict lookup.
    """

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int):
        self._entries: dict[int, tuple[object, bytes]] = {}
        self._max_entries = max_entries

    def get(self, value: object) -> bytes | None:
        hit = self._entries.get(id(value))
        return hit[1] if hit is not None and hit[0] is value else None

    def put(self, value: object, digest: bytes) -> bytes:
        entries = self._entries
        entries.pop(id(value), None)
        if len(entries) >= self._max_entries:  # bound: evict the oldest entry
            del entries[next(iter(entries))]
        entries[id(value)] = (value, digest)
        return digest


_block_ids = _IdentityMemo(256)
_body_ids = _IdentityMemo(8)  # bodies can be MBs: keep few alive


def block_id(header: BlockHeader) -> bytes:
    """Identity of a block: hash of its canonical header."""
    cached = _block_ids.get(header)
    if cached is not None:
        return cached
    return _block_ids.put(header, _digest(b"sedna/block/1", _encoder.encode(header)))


def body_id(body: BlockBody) -> bytes:
    """Identity of a block body, committed to by `BlockHeader.body_id`."""
    cached = _body_ids.get(body)
    if cached is not None:
        return cached
    digest = _digest(b"sedna/body/1", body.payload)
    if type(body.payload) is not bytes:  # only an immutable payload may be memoized
        return digest
    return _body_ids.put(body, digest)


def certificate_digest(certificate: TimeoutCertificate | None) -> bytes:
    """Digest binding a proposal signature to the TC it carries (zeros for none)."""
    if certificate is None:
        return bytes(32)
    return _digest(b"sedna/tc/1", _encoder.encode(certificate))


# What each signature kind covers. The domain is added by `consensus.crypto`.


def vote_signing_bytes(vote: Vote) -> bytes:
    return _encoder.encode(vote)


def timeout_signing_bytes(info: TimeoutInfo) -> bytes:
    return _encoder.encode(info)


def no_endorsement_signing_bytes(no_endorsement: NoEndorsement) -> bytes:
    return _encoder.encode(no_endorsement)


def tip_signing_bytes(header: BlockHeader) -> bytes:
    return block_id(header)


def proposal_signing_bytes(
    round: int,
    epoch: int,
    author: int,
    header: BlockHeader,
    last_round_tc: TimeoutCertificate | None,
) -> bytes:
    """A proposal signature binds round, proposer, block (which commits to the body) and TC."""
    return _encoder.encode(
        (round, epoch, author, block_id(header), certificate_digest(last_round_tc))
    )


def round_recovery_signing_bytes(round: int, epoch: int, tc: TimeoutCertificate) -> bytes:
    return _encoder.encode((round, epoch, certificate_digest(tc)))
