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


class _LedgerNet:
    """Stands in for a network's RPC: each node's stored ledger row at the asked height."""

    def __init__(self, hashes: list[str]):
        self.hashes = hashes

    def __len__(self) -> int:
        return len(self.hashes)

    async def rpc_json(self, index: int, path: str, timeout_s: float = 2.0):
        assert path == "/lanes?at=32"  # the highest checkpoint at or below 37
        row = {"ledger_hash": self.hashes[index], "fees_charged": 12, "bounties_paid": 30}
        return {"ledger_at_height": row}


def _ledger_summary(hashes: list[str], **options):
    import asyncio

    from node.tools.testnet import RunOptions, TestnetRun

    run = TestnetRun(RunOptions(**options))
    run.net = _LedgerNet(hashes)  # type: ignore[assignment]
    return run, asyncio.run(run._ledger_summary(37))


def test_the_ledger_summary_fails_when_honest_nodes_disagree_at_one_height() -> None:
    ledger = {"sender_balance": 100, "fee": 2, "bounty": 6}
    run, summary = _ledger_summary(["aa", "aa", "aa", "aa"], ledger=ledger)
    assert summary == {
        "ledger_height": 32,
        "fees_charged": 12,
        "bounties_paid": 30,
        "ledger_hash": {"0": "aa", "1": "aa", "2": "aa", "3": "aa"},
    }
    assert run.failures == []
    run, summary = _ledger_summary(["aa", "aa", "bb", "aa"], ledger=ledger)
    assert [f.split(":")[0] for f in run.failures] == ["LEDGER DIVERGENCE"]
    # A Byzantine node's ledger is not compared (only honest nodes must agree).
    run, summary = _ledger_summary(["aa", "aa", "aa", "bb"], ledger=ledger, byzantine={3: "silent"})
    assert run.failures == [] and sorted(summary["ledger_hash"]) == ["0", "1", "2"]
    # Without a ledger the keys are there, empty.
    run, summary = _ledger_summary(["aa", "bb"])
    assert summary["ledger_hash"] == {} and summary["fees_charged"] == 0 and not run.failures
