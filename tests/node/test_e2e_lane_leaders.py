"""The lanes' adversarial leaders on real node processes (issue 10, adversaries 2 and 3).

Per lane mode (certified, the node's default, and carried), two fresh 4-node tcp testnets
with the lanes' ledger on run the same load for the same time: an honest Sedna sender and
plain transactions to every node (benchmarks/node_attacks.py `leader_network`). In one of
them node 3 is a censoring leader (`[test] byzantine = "drop_lane_blocks"`: certified, its
cuts keep every other lane at the parent's tips; carried, its proposals leave out every
other lane's lane blocks). Checked:
- adversary 3: the chain keeps finalizing at the honest network's rate (blocks/s within
  20 %; votes paced at 60 ms so the rate is the protocol's, not the machine's), every
  honest payload still decodes, on every node, once, in one order, and the censor's
  omissions are counted;
- adversary 2 (the decode-height leader front-runs): on every node, the payloads
  executed in a finalized block take positions 0..k-1, ahead of the block's plain
  transactions, in the order SHA-256(parent id || payload id) (from `/executions` and
  `/blocks`), and some of those blocks did hold plain transactions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from benchmarks.node_attacks import CENSOR, leader_network

pytestmark = pytest.mark.e2e

PHASE_S = 6.0
HONEST_PPS = 10.0


def _network(root: Path, mode: str, censor: bool) -> dict[str, Any]:
    report = asyncio.run(
        leader_network(root, mode, censor=censor, phase_s=PHASE_S, honest_pps=HONEST_PPS)
    )
    assert report["honest_decoded_by_client"] == report["honest_submitted"] > 0, report
    assert report["undecoded"] == [0, 0, 0, 0], report  # every honest payload, every node
    assert report["executed_twice"] == [0, 0, 0, 0], report
    assert report["one_order"], report
    assert report["order_faults"] == [0, 0, 0, 0], report  # payloads first, keyed order
    assert report["mixed_blocks"] > 0, report  # non-vacuity: blocks with payloads and txs
    return report


@pytest.mark.parametrize("mode", ["certified", "carried"])
def test_a_censoring_leader_keeps_the_honest_rate_and_payloads_run_before_txs(
    mode: str, tmp_path: Path
) -> None:
    honest = _network(tmp_path / "honest", mode, censor=False)
    censored = _network(tmp_path / "censored", mode, censor=True)
    print(mode, {"honest": honest, "censored": censored})
    assert censored["blocks_per_s"] >= 0.8 * honest["blocks_per_s"], (honest, censored)
    assert censored["omitted"][CENSOR] > 0, censored  # the omission happened
    if mode == "certified":  # only a censor keeps a lane below a certified tip
        assert sum(censored["omitted"]) == censored["omitted"][CENSOR], censored
        assert honest["omitted"] == [0, 0, 0, 0], honest
