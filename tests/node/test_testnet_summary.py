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


class _ChainNet:
    """Stands in for a network's RPC at the end of a run: each node's /stats and finalized
    chain (`/blocks?...&txids=1` pages)."""

    def __init__(self, chains: list[list[list[bytes]]]):
        self.chains = chains  # per node, per height: the block's tx ids

    def __len__(self) -> int:
        return len(self.chains)

    async def rpc_json(self, index: int, path: str, timeout_s: float = 2.0):
        from urllib.parse import parse_qs, urlsplit

        from node.metrics import LatencyHistogram

        chain = self.chains[index]
        if path == "/stats":
            empty = LatencyHistogram().to_dict()
            return {
                "height": len(chain), "finality_ms": empty, "speculative_ms": empty,
                "tcs": 0, "dropped": {}, "core_dropped": {},
            }  # fmt: skip
        split = urlsplit(path)
        assert split.path == "/blocks", path
        query = {k: int(v[0]) for k, v in parse_qs(split.query).items()}
        assert query["txids"] == 1  # the check needs every block's tx ids
        heights = range(query["from"], min(query["to"], len(chain)) + 1)
        blocks = [
            {"height": h, "block_id": f"{h:064x}", "timestamp_ns": h, "committed_ns": h,
             "n_tx": len(chain[h - 1]), "txids": b"".join(chain[h - 1]).hex()}
            for h in heights
        ]  # fmt: skip
        return {"blocks": blocks}


def _run_summary(chains: list[list[list[bytes]]]):
    import asyncio
    from types import SimpleNamespace

    from node.tools.testnet import RunOptions, TestnetRun
    from node.tools.testnet_cli import format_summary

    accepted = {t for chain in chains for block in chain for t in block}
    stats = SimpleNamespace(
        accepted_ids=accepted, offered=len(accepted), accepted=len(accepted), rejected=0, unsent=0
    )
    run = TestnetRun(RunOptions(nodes=len(chains), duration_s=1.0, rate_tps=len(accepted)))
    run.net = _ChainNet(chains)  # type: ignore[assignment]
    summary = asyncio.run(
        run._summarize(SimpleNamespace(stats=stats), dict.fromkeys(range(len(chains)), 0), 0, 10)
    )
    return summary, format_summary(summary)


def test_a_tx_finalized_at_two_heights_of_any_node_fails_the_run() -> None:
    """duplicate_tx counts the ids finalized more than once in any node's chain, and a
    non-zero count fails the run (exit 1), beside lost_tx. Mutation: dropping the failure
    rule, or checking only the reference node's chain, fails this test."""
    a, b, c = (bytes([i]) * 8 for i in range(1, 4))
    honest = [[a], [b], [c]]
    summary, text = _run_summary([honest, honest, honest])
    assert summary["duplicate_tx"] == 0 and summary["ok"], summary["failures"]
    assert "duplicate 0" in text and "result: OK" in text
    # Node 1's chain repeats b at height 4, node 2's (shorter) repeats a; the reference
    # (node 0, then the longest: node 1) is clean up to its height 3. The stand-in gives
    # each height one block id, so only the TX-ONCE check can fail.
    summary, text = _run_summary([honest, [*honest, [b]], [[a], [a]]])
    assert summary["duplicate_tx"] == 2 and not summary["ok"]
    assert [f.split(":")[0] for f in summary["failures"]] == ["DUPLICATE"]
    assert "duplicate 2" in text and "result: FAILED" in text
