"""Aggregate signatures for certified lanes' availability votes and proofs of availability.

docs/lanes.md, "Aggregate proofs of availability". `BlsScheme` is BLS12-381 in the
proof-of-possession scheme (the IETF BLS draft's PopSchemeMPL, via `blspy`): 48-byte
public keys, 96-byte signatures, and f+1 votes over one message aggregate into one
96-byte signature checked by `fast_aggregate_verify` against the signers' keys. Fast
aggregate verification is sound only when every key comes with a proof of possession
(else a rogue key chosen as a function of the others' keys could forge an aggregate),
so an `AggregateKeySet` refuses to be built from a key whose proof does not verify.

Messages are framed like every Ed25519 signature (`consensus.crypto`): domain, 0x00,
chain id, 0x00, payload, so a vote of one network is invalid on every other.

A validator's aggregate-signature secret is derived from its Ed25519 seed
(`aggregate_seed`, domain separated), so its key file's one secret covers both keys.

`StandInAggregateScheme` is the stand-in for simulations that run the `trusted`
signature scheme: NOT secure (anyone can compute every tag), but with the same sizes on
the wire (48-byte keys, 96-byte signatures and aggregates) and the same accept/reject
behaviour on the cases that matter (a wrong or missing signer, a signature counted
twice, a forged aggregate, a bad proof of possession all fail to verify).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from consensus.crypto import DEFAULT_CHAIN_ID, _ChainBound, check_chain_id

AGGREGATE_PUBLIC_BYTES = 48
AGGREGATE_SIGNATURE_BYTES = 96
_SEED_DOMAIN = b"sedna/aggregate-key/1\x00"
_MAX_PARSED_KEYS = 4096


@dataclass(frozen=True, slots=True)
class AggregateKeyPair:
    """An aggregate-signature key pair: 48-byte public key, 32-byte secret."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:  # never print secrets
        return f"AggregateKeyPair(public={self.public.hex()[:16]}…)"


def aggregate_seed(ed25519_seed: bytes) -> bytes:
    """The 32 bytes of key material a validator's aggregate key is generated from."""
    if len(ed25519_seed) != 32:
        raise ValueError(f"seed must be 32 bytes, got {len(ed25519_seed)}")
    return hashlib.sha256(_SEED_DOMAIN + ed25519_seed).digest()


class AggregateScheme(Protocol):
    """What availability votes and PoAs need from an aggregate signature scheme."""

    name: str
    chain_id: str

    def for_chain(self, chain_id: str) -> AggregateScheme: ...

    def keypair(self, seed: bytes) -> AggregateKeyPair: ...

    def prove_possession(self, key: AggregateKeyPair) -> bytes: ...

    def possession_ok(self, public: bytes, proof: bytes) -> bool: ...

    def sign(self, key: AggregateKeyPair, domain: bytes, payload: bytes) -> bytes: ...

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool: ...

    def aggregate(self, signatures: Sequence[bytes]) -> bytes: ...

    def verify_aggregate(
        self, publics: Sequence[bytes], domain: bytes, payload: bytes, aggregate: bytes
    ) -> bool: ...


class BlsScheme(_ChainBound):
    """BLS12-381, proof-of-possession scheme (blspy `PopSchemeMPL`)."""

    name = "bls"

    def __init__(self, chain_id: str = DEFAULT_CHAIN_ID):
        super().__init__(chain_id)
        import blspy  # the node's dependency; imported here so Ed25519-only users skip it

        self._bls = blspy
        self._pop = blspy.PopSchemeMPL
        self._parsed: OrderedDict[bytes, object] = OrderedDict()  # public key -> G1Element

    def keypair(self, seed: bytes) -> AggregateKeyPair:
        secret = self._pop.key_gen(aggregate_seed(seed))
        return AggregateKeyPair(bytes(secret.get_g1()), bytes(secret))

    def _secret(self, key: AggregateKeyPair):
        return self._bls.PrivateKey.from_bytes(key.secret)

    def _public(self, public: bytes):
        """The parsed key (on the curve, in the subgroup, not the identity), or None."""
        parsed = self._parsed.get(public)
        if parsed is not None:
            self._parsed.move_to_end(public)
            return parsed
        if len(public) != AGGREGATE_PUBLIC_BYTES:
            return None
        try:
            parsed = self._bls.G1Element.from_bytes(public)
        except (ValueError, RuntimeError):
            return None
        if parsed == self._bls.G1Element():  # rule: the identity is no key
            return None
        self._parsed[public] = parsed
        while len(self._parsed) > _MAX_PARSED_KEYS:
            self._parsed.popitem(last=False)
        return parsed

    def _signature(self, signature: bytes):
        if len(signature) != AGGREGATE_SIGNATURE_BYTES:
            return None
        try:
            return self._bls.G2Element.from_bytes(signature)
        except (ValueError, RuntimeError):
            return None

    def prove_possession(self, key: AggregateKeyPair) -> bytes:
        return bytes(self._pop.pop_prove(self._secret(key)))

    def possession_ok(self, public: bytes, proof: bytes) -> bool:
        parsed, signature = self._public(public), self._signature(proof)
        if parsed is None or signature is None:
            return False
        return bool(self._pop.pop_verify(parsed, signature))

    def sign(self, key: AggregateKeyPair, domain: bytes, payload: bytes) -> bytes:
        return bytes(self._pop.sign(self._secret(key), self._message(domain, payload)))

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool:
        parsed, parsed_signature = self._public(public), self._signature(signature)
        if parsed is None or parsed_signature is None:
            return False
        return bool(self._pop.verify(parsed, self._message(domain, payload), parsed_signature))

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        parsed = [self._signature(s) for s in signatures]
        if not parsed or any(p is None for p in parsed):
            raise ValueError("aggregate of no signature or of a malformed one")
        return bytes(self._pop.aggregate(parsed))

    def verify_aggregate(
        self, publics: Sequence[bytes], domain: bytes, payload: bytes, aggregate: bytes
    ) -> bool:
        parsed = [self._public(p) for p in publics]
        signature = self._signature(aggregate)
        if not parsed or signature is None or any(p is None for p in parsed):
            return False
        return bool(
            self._pop.fast_aggregate_verify(parsed, self._message(domain, payload), signature)
        )


_MODULUS = 1 << (8 * AGGREGATE_SIGNATURE_BYTES)


class StandInAggregateScheme(_ChainBound):
    """Stand-in for `BlsScheme` in `trusted` simulations. Not secure: forgeable by design.

    A signature is SHAKE-256(public || message) (96 bytes); an aggregate is the sum of its
    signatures modulo 2^768, so it is order-free like BLS, a signature counted twice does
    not cancel, and a missing or extra signer changes it."""

    name = "bls-stand-in"

    def keypair(self, seed: bytes) -> AggregateKeyPair:
        secret = aggregate_seed(seed)
        public = hashlib.shake_256(b"sedna/stand-in-key/1\x00" + secret).digest(
            AGGREGATE_PUBLIC_BYTES
        )
        return AggregateKeyPair(public, secret)

    def _tag(self, public: bytes, message: bytes) -> bytes:
        return hashlib.shake_256(public + message).digest(AGGREGATE_SIGNATURE_BYTES)

    def prove_possession(self, key: AggregateKeyPair) -> bytes:
        return self._tag(key.public, b"sedna/stand-in-pop/1\x00" + key.public)

    def possession_ok(self, public: bytes, proof: bytes) -> bool:
        if len(public) != AGGREGATE_PUBLIC_BYTES:
            return False
        return proof == self._tag(public, b"sedna/stand-in-pop/1\x00" + public)

    def sign(self, key: AggregateKeyPair, domain: bytes, payload: bytes) -> bytes:
        return self._tag(key.public, self._message(domain, payload))

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool:
        return len(public) == AGGREGATE_PUBLIC_BYTES and signature == self._tag(
            public, self._message(domain, payload)
        )

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if not signatures or any(len(s) != AGGREGATE_SIGNATURE_BYTES for s in signatures):
            raise ValueError("aggregate of no signature or of a malformed one")
        total = sum(int.from_bytes(s, "big") for s in signatures) % _MODULUS
        return total.to_bytes(AGGREGATE_SIGNATURE_BYTES, "big")

    def verify_aggregate(
        self, publics: Sequence[bytes], domain: bytes, payload: bytes, aggregate: bytes
    ) -> bool:
        if not publics or any(len(p) != AGGREGATE_PUBLIC_BYTES for p in publics):
            return False
        message = self._message(domain, payload)
        expected = self.aggregate([self._tag(p, message) for p in publics])
        return aggregate == expected


def aggregate_scheme_by_name(name: str, chain_id: str = DEFAULT_CHAIN_ID) -> AggregateScheme:
    """`bls` (real) or `bls-stand-in` (simulation only), for chain `chain_id`."""
    check_chain_id(chain_id)
    if name == BlsScheme.name:
        return BlsScheme(chain_id)
    if name == StandInAggregateScheme.name:
        return StandInAggregateScheme(chain_id)
    raise ValueError(f"unknown aggregate scheme {name!r}; choose 'bls' or 'bls-stand-in'")


def aggregate_scheme_for(signature_scheme: str, chain_id: str) -> AggregateScheme:
    """The aggregate scheme paired with a signature scheme: real BLS with Ed25519, the
    stand-in with `trusted` (both insecure stand-ins go together)."""
    name = BlsScheme.name if signature_scheme == "ed25519" else StandInAggregateScheme.name
    return aggregate_scheme_by_name(name, chain_id)


class AggregateKeySet:
    """The validators' aggregate-signature public keys, in validator order, each with a
    proof of possession that verified (rule POP: a set with a bad proof is refused)."""

    __slots__ = ("publics", "scheme")

    def __init__(self, scheme: AggregateScheme, publics: Sequence[bytes], proofs: Sequence[bytes]):
        if len(publics) != len(proofs):
            raise ValueError(f"{len(publics)} aggregate keys but {len(proofs)} proofs")
        if len(set(publics)) != len(publics):
            raise ValueError("duplicate aggregate-signature public keys")
        for index, (public, proof) in enumerate(zip(publics, proofs, strict=True)):
            if len(public) != AGGREGATE_PUBLIC_BYTES:
                raise ValueError(
                    f"validator {index}: aggregate public key of {len(public)} bytes, "
                    f"expected {AGGREGATE_PUBLIC_BYTES}"
                )
            # rule POP: no key without a proof of possession (rogue-key attacks)
            if not scheme.possession_ok(public, proof):
                raise ValueError(
                    f"validator {index}: the proof of possession of its aggregate-signature "
                    "key does not verify (refusing a possible rogue key)"
                )
        self.scheme = scheme
        self.publics: tuple[bytes, ...] = tuple(publics)

    @classmethod
    def from_keypairs(
        cls, scheme: AggregateScheme, keys: Sequence[AggregateKeyPair]
    ) -> AggregateKeySet:
        return cls(scheme, [k.public for k in keys], [scheme.prove_possession(k) for k in keys])

    def __len__(self) -> int:
        return len(self.publics)
