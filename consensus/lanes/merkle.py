"""Merkle commitment over the capped repair-symbol stream, one leaf per bundle.

    bundle leaf  = SHA-256(0x00 ‖ bundle_index(8) ‖ symbol_0 ‖ … ‖ symbol_{s_b−1})
    inner node   = SHA-256(0x01 ‖ left ‖ right)
    padding leaf = SHA-256(0x03)          (the tree is padded to a power of two)

A bundle carries one authentication path (depth = ceil(log2 cap_bundles)), and a lane
proposer checks every symbol of it by recomputing the leaf: verification granularity is
the bundle, the unit a ticket names and a lane receives. Symbols have the fixed size T
and a bundle exactly s_b of them (checked before hashing), so the concatenation is
unambiguous. One hash call per bundle instead of one per symbol keeps commitment cost
at the speed of SHA-256 (docs/lanes.md). Distinct prefixes for leaves, nodes and
padding rule out second preimages across levels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

MAX_DEPTH = 24
_PADDING_LEAF = hashlib.sha256(b"\x03").digest()


def bundle_leaf(bundle_index: int, symbols: Sequence[bytes]) -> bytes:
    h = hashlib.sha256(b"\x00" + bundle_index.to_bytes(8, "big"))
    for symbol in symbols:
        h.update(symbol)
    return h.digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_depth(leaf_count: int) -> int:
    if leaf_count < 1:
        raise ValueError("a Merkle tree needs at least one leaf")
    return (leaf_count - 1).bit_length()


class MerkleTree:
    """All levels of the tree over `leaves` (bottom first)."""

    __slots__ = ("leaf_count", "levels")

    def __init__(self, leaves: Sequence[bytes]):
        depth = tree_depth(len(leaves))
        if depth > MAX_DEPTH:
            raise ValueError(f"{len(leaves)} leaves exceed the maximum depth {MAX_DEPTH}")
        self.leaf_count = len(leaves)
        level = list(leaves) + [_PADDING_LEAF] * ((1 << depth) - len(leaves))
        self.levels: list[list[bytes]] = [level]
        for _ in range(depth):
            level = [_node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
            self.levels.append(level)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, index: int) -> tuple[bytes, ...]:
        """Sibling hashes from the leaf up."""
        if not 0 <= index < self.leaf_count:
            raise IndexError(f"leaf {index} outside [0, {self.leaf_count})")
        path = []
        for level in self.levels[:-1]:
            path.append(level[index ^ 1])
            index >>= 1
        return tuple(path)


def verify_proof(
    root: bytes, leaf_count: int, index: int, leaf: bytes, proof: Sequence[bytes]
) -> bool:
    """True iff `leaf` is leaf `index` of the tree with `root` over `leaf_count` leaves."""
    if not 0 <= index < leaf_count or leaf_count > (1 << MAX_DEPTH):
        return False
    if len(proof) != tree_depth(leaf_count):
        return False
    node = leaf
    for sibling in proof:
        if len(sibling) != 32:
            return False
        node = _node(sibling, node) if index & 1 else _node(node, sibling)
        index >>= 1
    return node == root
