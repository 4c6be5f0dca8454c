"""Chain id on real processes: every network has its own, a node of another chain cannot
join (the network keeps finalizing without it), and a ticket signed for another chain is
refused with a counted reason.

Rule WRONG-CHAIN (docs/operations.md, "Chain id"): `sedna testnet init/run` writes a fresh
`consensus.chain_id` into every config; every signature a node makes or checks is for
that chain, and its transport refuses a peer of another chain at the handshake.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from consensus.crypto import DEFAULT_CHAIN_ID, ED25519, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.tickets import make_ticket, sign_ticket
from consensus.lanes.wire import LaneEntry, encode_lane_entry
from node.config import load_config
from node.lanes_node import MAX_FUTURE_SLOTS, NODE_LANE_PARAMS
from node.rpc import HttpClient, encode_binary_txs
from node.tools.testnet import Testnet, generate_network

pytestmark = pytest.mark.e2e

SENDER = derive_keys(1, b"tests/e2e-chain-id/sender")[0]


def _wait(predicate, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def _status(net: Testnet, index: int) -> dict | None:
    return asyncio.run(net.rpc_json(index, "/status", timeout_s=1.0))


def _stats(net: Testnet, index: int) -> dict:
    stats = asyncio.run(net.rpc_json(index, "/stats", timeout_s=2.0))
    assert stats is not None, f"node {index} did not answer /stats"
    return stats


def _post_bundle(net: Testnet, index: int, entry: bytes) -> dict:
    member = net.member(index)

    async def post() -> dict:
        client = HttpClient(member.rpc_host, member.rpc_port, 2.0)
        try:
            status, raw = await client.request(
                "POST", "/bundle", encode_binary_txs([entry]), "application/octet-stream"
            )
        finally:
            await client.close()
        assert status in (200, 400), raw
        return json.loads(raw)

    return asyncio.run(post())


def test_each_network_gets_its_own_chain_id_written_into_every_config(tmp_path: Path) -> None:
    first = generate_network(tmp_path / "a", 4)
    second = generate_network(tmp_path / "b", 4)
    assert first["chain_id"] != second["chain_id"]
    for root, manifest in ((tmp_path / "a", first), (tmp_path / "b", second)):
        chain_ids = {
            load_config(root / m["config"]).consensus.chain_id for m in manifest["members"]
        }
        assert chain_ids == {manifest["chain_id"]} and DEFAULT_CHAIN_ID not in chain_ids


@pytest.mark.parametrize("transport", ["tcp", "libp2p"])
def test_a_node_of_another_chain_cannot_join_and_a_foreign_ticket_is_refused(
    transport: str, tmp_path: Path
) -> None:
    if transport == "libp2p":
        pytest.importorskip("libp2p")
    root = tmp_path / "net"
    manifest = generate_network(root, 4, transport=transport)
    chain_id = manifest["chain_id"]
    stranger = root / manifest["members"][3]["config"]
    # Node 3 keeps its validator key but is configured for another chain.
    stranger.write_text(
        stranger.read_text().replace(f'chain_id = "{chain_id}"', 'chain_id = "another-chain"')
    )
    assert load_config(stranger).consensus.chain_id == "another-chain"
    net = Testnet(root)
    net.start_all()
    try:
        assert _wait(lambda: all(_status(net, i) is not None for i in range(4)), 30)
        assert _status(net, 0)["chain_id"] == chain_id  # what a sender signs for
        assert _status(net, 3)["chain_id"] == "another-chain"
        # The three nodes of the chain (a quorum) keep finalizing without node 3.
        assert _wait(lambda: min(_status(net, i)["height"] for i in range(3)) >= 5, 30)
        start = min(_status(net, i)["height"] for i in range(3))
        assert _wait(lambda: min(_status(net, i)["height"] for i in range(3)) >= start + 10, 30)
        # Node 3 never joined: no peer, no block; both sides counted the refusals.
        status3 = _status(net, 3)
        assert status3["peers"] == [] and status3["height"] == 0
        for index in range(4):
            transport = _stats(net, index)["transport"]
            assert transport["handshake_failures"]["wrong_chain"] >= 1, (index, transport)
            if index < 3:
                assert 3 not in transport["connected_peers"]
        log = (stranger.parent / "node.log").read_text()
        assert "peer_wrong_chain" in log  # the operator is told why, in words
        # A ticket signed for another chain (the default one) is refused and counted; the
        # same ticket signed for this network's chain is admitted.
        open_slot = int(_status(net, 0)["lane_open_slot"])
        slot = open_slot + MAX_FUTURE_SLOTS // 2
        encoded = encode_payload(
            NODE_LANE_PARAMS,
            b"chain id test payload".ljust(400, b"."),
            bytes(32),
            SENDER.public,
            expiry_slot=slot + 1000,
        )
        ticket = make_ticket(encoded.commitment_id, 0, slot, 0, 1)
        for scheme, expected in (
            (ED25519, "bad_ticket_signature"),
            (ED25519.for_chain(chain_id), None),
        ):
            entry = encode_lane_entry(
                LaneEntry(encoded.bundles[0], sign_ticket(scheme, SENDER, ticket))
            )
            assert _post_bundle(net, 0, entry)["results"] == [expected]
        rejected = _stats(net, 0)["lanes"]["bundles_rejected"]
        assert rejected["bad_ticket_signature"] == 1, rejected
    finally:
        net.stop_all()
