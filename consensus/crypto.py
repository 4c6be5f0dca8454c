"""Signatures with a domain per message kind and a chain id, and deterministic keys.

A signature is Ed25519 (pynacl/libsodium, the single verifier every node uses) over

    domain || 0x00 || chain id || 0x00 || payload

so a signature of one kind can never be replayed as another, and a signature made on one
network is invalid on every other (votes, tips, timeouts, tickets, lane blocks,
handshakes, transactions: every `Domain`). Neither a domain nor a chain id contains
0x00, so the framing is unambiguous. The chain id is bound to the scheme object
(`Ed25519Scheme(chain_id)`, `scheme.for_chain(...)`, `scheme_by_name(name, chain_id)`):
every caller that signs or verifies through a scheme gets it without passing it.

`TrustedScheme` is a cheap stand-in for simulations that want to measure the protocol
without signature cost: it is NOT secure (anyone can compute it) and is only selectable
explicitly.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

import nacl.bindings
import nacl.exceptions


class Domain:
    """Signing domains, one per signature kind."""

    VOTE = b"sedna/vote/1"
    TIMEOUT = b"sedna/timeout/1"
    NO_ENDORSEMENT = b"sedna/no-endorsement/1"
    TIP = b"sedna/tip/1"
    PROPOSAL = b"sedna/proposal/1"
    ROUND_RECOVERY = b"sedna/round-recovery/1"
    TICKET = b"sedna/ticket/1"
    LANE_BLOCK = b"sedna/lane-block/1"
    LANE_CHAIN_BLOCK = b"sedna/lane-chain-block/1"  # certified lanes: a lane chain's block
    AVAILABILITY_VOTE = b"sedna/availability-vote/1"  # certified lanes: "I hold this block"
    HANDSHAKE = b"sedna/handshake/1"
    TRANSACTION = b"sedna/transaction/1"

    ALL = (
        VOTE,
        TIMEOUT,
        NO_ENDORSEMENT,
        TIP,
        PROPOSAL,
        ROUND_RECOVERY,
        TICKET,
        LANE_BLOCK,
        LANE_CHAIN_BLOCK,
        AVAILABILITY_VOTE,
        HANDSHAKE,
        TRANSACTION,
    )


DEFAULT_CHAIN_ID = "sedna-local"
MAX_CHAIN_ID_BYTES = 64
_CHAIN_ID_PATTERN = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_CHAIN_ID_BYTES}}}")


def check_chain_id(chain_id: str) -> str:
    """`chain_id` if it is 1..64 characters of [A-Za-z0-9._-] (so never a 0x00), else
    ValueError naming the rule."""
    if not isinstance(chain_id, str) or not _CHAIN_ID_PATTERN.fullmatch(chain_id):
        raise ValueError(
            f"chain id must be 1..{MAX_CHAIN_ID_BYTES} characters of [A-Za-z0-9._-], "
            f"got {chain_id!r}"
        )
    return chain_id


def _domain_message(chain_id: bytes, domain: bytes, payload: bytes) -> bytes:
    # rule: every signature names its kind and its network (the one place that frames it)
    return domain + b"\x00" + chain_id + b"\x00" + payload


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 key pair. `secret` is libsodium's 64-byte form (seed || public)."""

    public: bytes
    secret: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if len(seed) != 32:
            raise ValueError(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        return cls(public=public, secret=secret)

    @property
    def seed(self) -> bytes:
        return self.secret[:32]

    def __repr__(self) -> str:  # never print secrets
        return f"KeyPair(public={self.public.hex()[:16]}…)"


def derive_keys(count: int, seed: bytes | str = b"sedna-testnet") -> list[KeyPair]:
    """Deterministic validator keys for tests, simulations and local testnets."""
    if isinstance(seed, str):
        seed = seed.encode()
    return [
        KeyPair.from_seed(hashlib.sha256(b"sedna/key/1\x00" + seed + i.to_bytes(4, "big")).digest())
        for i in range(count)
    ]


class SignatureScheme(Protocol):
    """What the core needs from a signature scheme."""

    name: str

    def sign(self, key: KeyPair, domain: bytes, payload: bytes) -> bytes: ...

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool: ...


class _ChainBound:
    """The chain id part shared by the schemes: set once, framed into every message."""

    name = ""

    def __init__(self, chain_id: str = DEFAULT_CHAIN_ID):
        self.chain_id = check_chain_id(chain_id)
        self._chain = chain_id.encode("ascii")

    def for_chain(self, chain_id: str):  # -> the same kind of scheme, other chain
        return type(self)(chain_id)

    def _message(self, domain: bytes, payload: bytes) -> bytes:
        return _domain_message(self._chain, domain, payload)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(chain_id={self.chain_id!r})"


class Ed25519Scheme(_ChainBound):
    """Real Ed25519 (libsodium)."""

    name = "ed25519"

    def sign(self, key: KeyPair, domain: bytes, payload: bytes) -> bytes:
        signed = nacl.bindings.crypto_sign(self._message(domain, payload), key.secret)
        return signed[:64]

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool:
        if len(signature) != 64 or len(public) != 32:
            return False
        try:
            nacl.bindings.crypto_sign_open(signature + self._message(domain, payload), public)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
            return False
        return True


class TrustedScheme(_ChainBound):
    """Cheap deterministic tags for simulation speed runs. Not secure: forgeable by design."""

    name = "trusted"

    def _tag(self, public: bytes, domain: bytes, payload: bytes) -> bytes:
        return hashlib.sha512(public + self._message(domain, payload)).digest()

    def sign(self, key: KeyPair, domain: bytes, payload: bytes) -> bytes:
        return self._tag(key.public, domain, payload)

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool:
        return signature == self._tag(public, domain, payload)


ED25519 = Ed25519Scheme()
TRUSTED = TrustedScheme()


def scheme_by_name(name: str, chain_id: str = DEFAULT_CHAIN_ID) -> SignatureScheme:
    """The scheme called `name`, signing and verifying for chain `chain_id`."""
    schemes = {ED25519.name: ED25519, TRUSTED.name: TRUSTED}
    try:
        scheme = schemes[name]
    except KeyError:
        raise ValueError(
            f"unknown signature scheme {name!r}; choose one of {sorted(schemes)}"
        ) from None
    return scheme if chain_id == scheme.chain_id else scheme.for_chain(chain_id)
