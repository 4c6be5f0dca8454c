"""Merkle commitment over the capped repair-symbol stream, one leaf per bundle.

    bundle leaf  = SHA-256(0x00 ‖ bundle_index(8) ‖ tag_0 ‖ symbol_0 ‖ … ‖ tag_{s_b−1} ‖ sym_{s_b−1})
    tag_j        = (K + bundle_index·s_b + j) as 4 bytes big-endian  (the symbol's code position)
    inner node   = SHA-256(0x01 ‖ left ‖ right)
    padding leaf = SHA-256(0x03)          (the tree is padded to a power of two)

A bundle carries one authentication path (depth = ceil(log2 cap_bundles)), and a lane
proposer checks every symbol of it by recomputing the leaf: verification granularity is
the bundle, the unit a ticket names and a lane receives. Symbols have the fixed size T
and a bundle exactly s_b of them (checked before hashing), so the concatenation is
unambiguous. One hash call per bundle instead of one per symbol keeps commitment cost
at the speed of SHA-256 (docs/lanes.md). Distinct prefixes for leaves, nodes and
padding rule out second preimages across levels.

The tags are redundant with the bundle index (they bind nothing new); they exist for
speed: for RaptorQ a tagged symbol is byte for byte the codec's packet (SBN 0 ‖ 24-bit
ESI ‖ symbol), so `bundle_leaves` hashes a whole capped stream straight from the codec's
output with one update per symbol and no per-symbol copy or view (about a quarter less
hashing time than hashing sliced symbols). A lane recomputes the tags from K, which is in
the commitment. `merkle_root` computes only the root: the decode-time commitment check
needs nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

MAX_DEPTH = 24
TAG_BYTES = 4
MAX_POSITION = 2**24 - 1  # RaptorQ's 24-bit ESI (SBN 0): the tag's top byte is always 0
_LEAF_TAG = b"\x00"
_NODE_TAG = b"\x01"
_PADDING_LEAF = hashlib.sha256(b"\x03").digest()


def symbol_tag(position: int) -> bytes:
    """The 4-byte tag of the code symbol at `position` (= K + repair index)."""
    if not 0 <= position <= MAX_POSITION:
        raise ValueError(f"symbol position {position} outside [0, {MAX_POSITION}]")
    return position.to_bytes(TAG_BYTES, "big")


def bundle_leaf(bundle_index: int, symbols: Sequence[bytes], first_position: int) -> bytes:
    """Leaf of bundle `bundle_index` whose first symbol sits at code position `first_position`."""
    # rule: every tagged position is a valid 24-bit code position
    if first_position < 0 or first_position + len(symbols) - 1 > MAX_POSITION:
        raise ValueError(f"symbol positions from {first_position} exceed {MAX_POSITION}")
    h = hashlib.sha256(_LEAF_TAG + bundle_index.to_bytes(8, "big"))
    for position, symbol in enumerate(symbols, first_position):
        h.update(position.to_bytes(TAG_BYTES, "big"))
        h.update(symbol)
    return h.digest()


def bundle_leaves(tagged_symbols: Sequence[bytes], symbols_per_bundle: int) -> list[bytes]:
    """Leaves of a whole stream of tagged symbols (`symbol_tag(position) ‖ symbol`, as the
    codecs' `repair_packets` return them), cut into bundles of `symbols_per_bundle`."""
    if symbols_per_bundle < 1 or len(tagged_symbols) % symbols_per_bundle:
        raise ValueError(
            f"{len(tagged_symbols)} symbols do not split into bundles of {symbols_per_bundle}"
        )
    sha256 = hashlib.sha256
    join = b"".join
    # one hash call per leaf over (prefix ‖ the bundle's tagged symbols joined): the same
    # bytes as one update per symbol, with fewer calls (each bundle is copied once)
    return [
        sha256(
            _LEAF_TAG
            + index.to_bytes(8, "big")
            + join(tagged_symbols[start : start + symbols_per_bundle])
        ).digest()
        for index, start in enumerate(range(0, len(tagged_symbols), symbols_per_bundle))
    ]


def stream_bundle_leaves(
    stream: bytes, tagged_symbol_bytes: int, symbols_per_bundle: int
) -> list[bytes]:
    """`bundle_leaves` of tagged symbols of `tagged_symbol_bytes` each, given back to back
    in one byte string (as the codecs' `repair_streams` return them): the same leaves."""
    bundle_bytes = tagged_symbol_bytes * symbols_per_bundle
    if tagged_symbol_bytes < 1 or symbols_per_bundle < 1 or len(stream) % bundle_bytes:
        raise ValueError(f"{len(stream)} bytes do not split into bundles of {bundle_bytes}")
    sha256 = hashlib.sha256
    return [
        sha256(_LEAF_TAG + index.to_bytes(8, "big") + stream[start : start + bundle_bytes]).digest()
        for index, start in enumerate(range(0, len(stream), bundle_bytes))
    ]


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_TAG + left + right).digest()


def tree_depth(leaf_count: int) -> int:
    if leaf_count < 1:
        raise ValueError("a Merkle tree needs at least one leaf")
    return (leaf_count - 1).bit_length()


def _padded_leaves(leaves: Sequence[bytes]) -> list[bytes]:
    depth = tree_depth(len(leaves))
    if depth > MAX_DEPTH:
        raise ValueError(f"{len(leaves)} leaves exceed the maximum depth {MAX_DEPTH}")
    return list(leaves) + [_PADDING_LEAF] * ((1 << depth) - len(leaves))


def _parent_level(level: list[bytes]) -> list[bytes]:
    sha256 = hashlib.sha256
    return [sha256(_NODE_TAG + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]


def _padding_nodes() -> tuple[bytes, ...]:
    """`[d]`: the root of a subtree of height d whose leaves are all padding leaves."""
    nodes = [_PADDING_LEAF]
    for _ in range(MAX_DEPTH):
        nodes.append(_node(nodes[-1], nodes[-1]))
    return tuple(nodes)


_PADDING_NODES = _padding_nodes()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over `leaves` (same as `MerkleTree(leaves).root`, less work).

    Equal to hashing the leaves padded to a power of two, but a subtree of padding leaves
    only is taken from `_PADDING_NODES` instead of being hashed: a level of odd length
    gets one padding node of its height, everything to its right is padding too.
    """
    depth = tree_depth(len(leaves))
    if depth > MAX_DEPTH:
        raise ValueError(f"{len(leaves)} leaves exceed the maximum depth {MAX_DEPTH}")
    level = list(leaves)
    for height in range(depth):
        if len(level) & 1:
            level.append(_PADDING_NODES[height])
        level = _parent_level(level)
    return level[0]


class MerkleTree:
    """All levels of the tree over `leaves` (bottom first)."""

    __slots__ = ("leaf_count", "levels")

    def __init__(self, leaves: Sequence[bytes]):
        level = _padded_leaves(leaves)
        self.leaf_count = len(leaves)
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            level = _parent_level(level)
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
    sha256 = hashlib.sha256
    node = leaf
    for sibling in proof:
        if len(sibling) != 32:
            return False
        pair = sibling + node if index & 1 else node + sibling
        node = sha256(_NODE_TAG + pair).digest()
        index >>= 1
    return node == root
