"""The testnet summary's TX-ONCE check: duplicate_tx counts ids finalized more than once."""

from __future__ import annotations

from node.tools.testnet import duplicate_txids


def _block(*ids: bytes) -> dict[str, str]:
    return {"txids": b"".join(ids).hex()}


def test_duplicates_across_heights_and_within_a_block_are_found() -> None:
    a, b, c, d = (bytes([i]) * 8 for i in range(1, 5))
    chain = [_block(a, b), _block(c), {"height": 3}, _block(a), _block(d, d)]
    assert duplicate_txids(chain) == {a, d}
    assert duplicate_txids([_block(a), _block(b)]) == set()
    assert duplicate_txids([]) == set()
