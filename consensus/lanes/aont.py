"""All-or-nothing package transform (Rivest 1997), the privacy layer under the code.

    c  = ChaCha20_k(x ‖ 0^pad)              (nonce 0: each key encrypts one payload only)
    x' = c ‖ (k ⊕ SHA-256("sedna/aont/1" ‖ c))

Recovering k needs every byte of c and the last block, i.e. all of x'. A receiver
holding fewer than K independent symbols of x' cannot solve for x', so it learns
neither k nor anything about x beyond its length (computationally, under ChaCha20 and
SHA-256). The key comes from the caller (the node's CSPRNG, a test seed): this module
draws no randomness. A key must be fresh and secret for every payload.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from consensus.lanes.params import AONT_KEY_BYTES

_NONCE = bytes(16)  # ChaCha20 (cryptography): 4-byte counter ‖ 12-byte nonce, all zero
_DOMAIN = b"sedna/aont/1\x00"


class AontError(ValueError):
    """A transformed payload that does not invert to a well-formed payload."""


def _mask(ciphertext: bytes | memoryview) -> bytes:
    h = hashlib.sha256(_DOMAIN)
    h.update(ciphertext)  # hashed in place: no copy of the payload-sized ciphertext
    return h.digest()


def _xor32(a: bytes | memoryview, b: bytes) -> bytes:
    """a ⊕ b for two 32-byte strings (as integers: one C call each, no per-byte loop)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(AONT_KEY_BYTES, "big")


def _chacha(key: bytes, data: bytes | memoryview) -> bytes:
    cipher = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()
    return cipher.update(data) + cipher.finalize()


def package_transform(payload: bytes, key: bytes, transformed_len: int) -> bytes:
    """x' of exactly `transformed_len` bytes (payload zero-padded inside the encryption)."""
    if len(key) != AONT_KEY_BYTES:
        raise ValueError(f"AONT key must be {AONT_KEY_BYTES} bytes, got {len(key)}")
    body_len = transformed_len - AONT_KEY_BYTES
    if body_len < len(payload):
        raise ValueError(f"transformed length {transformed_len} too small for {len(payload)} B")
    cipher = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()
    out = bytearray(transformed_len)  # one buffer, no copies: ciphertext ‖ masked key
    view = memoryview(out)
    cipher.update_into(payload, view[: len(payload)])
    cipher.update_into(bytes(body_len - len(payload)), view[len(payload) : body_len])
    mask = _mask(view[:body_len])
    out[body_len:] = _xor32(key, mask)
    return bytes(out)


def invert_package_transform(transformed: bytes, payload_len: int) -> bytes:
    """The payload inside x'. Raises AontError unless the padding decrypts to zeros."""
    body_len = len(transformed) - AONT_KEY_BYTES
    if not 0 <= payload_len <= body_len:
        raise AontError(f"payload length {payload_len} does not fit {len(transformed)} B")
    view = memoryview(transformed)
    ciphertext = view[:body_len]
    key = _xor32(view[body_len:], _mask(ciphertext))
    plaintext = _chacha(key, ciphertext)
    # rule: the padding inside the encryption is all zeros (one canonical x' per payload)
    if plaintext[payload_len:].lstrip(b"\x00"):
        raise AontError("non-zero padding")
    return plaintext[:payload_len]
