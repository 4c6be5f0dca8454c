"""The lanes' ledger on real processes: fees and PIVOT-K bounties charged from a genesis
allocation, identical on every node, after a crash-restart too; an unfunded sender is
refused (`insufficient_balance`, counted); `GET /balance/<sender>`; the testnet summary's
`fees_charged`, `bounties_paid` and `ledger_hash`.

Rules (docs/lanes.md, "The ledger"; consensus/lanes/ledger.py): a redeemed ticket moves its
fee from the sender to its lane; a payload's first counted bundle escrows B, paid to the
lanes of its κ pivotal bundles when it executes; genesis = balances + escrow + lanes +
burned; honest nodes at one height hold the same ledger.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consensus.crypto import ED25519, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.tickets import make_ticket, sign_ticket
from consensus.lanes.wire import LaneEntry, encode_lane_entry
from node.lane_tracker import LEDGER_CHECKPOINT_HEIGHTS
from node.lanes_node import MAX_FUTURE_SLOTS, NODE_LANE_PARAMS
from node.rpc import HttpClient, encode_binary_txs
from node.storage import DATABASE_FILE
from node.tools.sedna_client import SednaClient, SednaPolicy
from node.tools.testnet import Testnet, generate_network, load_senders

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BALANCE, FEE, BOUNTY = 100_000, 3, 10
PAYLOADS = 8


def _json(net: Testnet, index: int, path: str) -> dict | None:
    return asyncio.run(net.rpc_json(index, path, timeout_s=2.0))


def _wait(predicate, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (TypeError, KeyError):  # a node not answering yet
            pass
        time.sleep(step_s)
    return bool(predicate())


def _ledger_quiet(net: Testnet, index: int, sender) -> tuple[dict, dict] | None:
    """(lanes, balance of `sender`) with the balance read between two ledger reads that
    agree on fees and bounties, or None while the ledger still moves."""
    first = _json(net, index, "/lanes")
    balance = _json(net, index, f"/balance/{sender.public.hex()}")
    time.sleep(0.3)
    second = _json(net, index, "/lanes")
    if first is None or second is None or balance is None:
        return None
    keys = ("fees_charged", "bounties_paid")
    if any(first["ledger"][key] != second["ledger"][key] for key in keys):
        return None
    return second, balance


async def _send(targets, key, payloads: list[bytes], timeout_s: float) -> SednaClient:
    client = SednaClient(targets, key=key, policy=SednaPolicy(extra_bundles=1))
    for payload in payloads:
        client.submit(payload)
    deadline = time.monotonic() + timeout_s
    while client.undecided() and time.monotonic() < deadline:
        await client.step()
        await asyncio.sleep(0.02)
    await client.close()
    return client


def _post_bundle(net: Testnet, index: int, entry: bytes) -> dict:
    member = net.member(index)

    async def post() -> dict:
        client = HttpClient(member.rpc_host, member.rpc_port, 2.0)
        try:
            _, raw = await client.request(
                "POST", "/bundle", encode_binary_txs([entry]), "application/octet-stream"
            )
        finally:
            await client.close()
        return json.loads(raw)

    return asyncio.run(post())


@pytest.mark.parametrize("mode", ["certified", "carried"])
def test_ledger_charges_fees_and_bounties_identically_and_survives_a_crash_restart(
    mode: str, tmp_path: Path
) -> None:
    root = tmp_path / "net"
    manifest = generate_network(
        root, 4, consensus={"delta_ms": 50.0}, dissemination=mode,
        ledger={"sender_balance": BALANCE, "fee": FEE, "bounty": BOUNTY, "senders": 2},
    )  # fmt: skip
    chain_id = manifest["chain_id"]
    funded, _other = load_senders(root)
    net = Testnet(root)
    net.start_all()
    try:
        assert asyncio.run(net.wait_ready(30.0)), "network did not get ready"
        status = _json(net, 0, "/status")
        assert status["ledger"] == {"fee": FEE, "bounty": BOUNTY}
        targets = [(m.index, m.rpc_host, m.rpc_port) for m in net.members]
        payloads = [b"ledger-%d-" % i + bytes(400) for i in range(PAYLOADS)]
        client = asyncio.run(_send(targets, funded, payloads, 60))
        assert client.fee == FEE  # the client learned the chain's fee from /status
        assert client.stats.decided["decoded"] == PAYLOADS, client.stats
        assert _wait(
            lambda: all(
                _json(net, i, "/lanes")["decided"]["executed"] >= PAYLOADS for i in range(4)
            ),
            30,
        )
        # Every node's ledger: fees = FEE per redeemed ticket of the sender, B per executed
        # payload paid out, the sender debited by exactly that, lanes credited by it.
        for index in range(4):
            # Late bundles (the client sends one beyond the threshold) may still be redeemed
            # after the payloads executed: read the balance between two equal ledger reads.
            assert _wait(lambda index=index: _ledger_quiet(net, index, funded), 30)
            lanes, balance = _ledger_quiet(net, index, funded)
            ledger = lanes["ledger"]
            assert ledger["conserved"] and ledger["genesis_total"] == 2 * BALANCE
            assert ledger["fees_charged"] == FEE * lanes["tickets_redeemed"] > 0
            assert ledger["bounties_paid"] == BOUNTY * PAYLOADS
            assert ledger["escrowed_now"] == 0 and ledger["burned"] == 0
            assert sum(ledger["lanes_earned"].values()) == (
                ledger["fees_charged"] + ledger["bounties_paid"]
            )
            assert balance["funded"] and balance["height"] <= ledger["height"]
            assert balance["balance"] == BALANCE - ledger["fees_charged"] - ledger["bounties_paid"]
            untouched = _json(net, index, f"/balance/{_other.public.hex()}")
            assert untouched["balance"] == BALANCE
        # An unfunded sender's bundle is refused at admission, with a counted reason.
        stranger = derive_keys(1, b"tests/e2e-ledger/unfunded")[0]
        slot = int(_json(net, 0, "/status")["lane_open_slot"]) + MAX_FUTURE_SLOTS // 2
        encoded = encode_payload(
            NODE_LANE_PARAMS, bytes(400), bytes(32), stranger.public, expiry_slot=slot + 1000
        )
        ticket = make_ticket(encoded.commitment_id, 0, slot, 0, FEE)
        signed = sign_ticket(ED25519.for_chain(chain_id), stranger, ticket)
        answer = _post_bundle(net, 0, encode_lane_entry(LaneEntry(encoded.bundles[0], signed)))
        assert answer["results"] == ["insufficient_balance"]
        stats = _json(net, 0, "/stats")
        assert stats["lanes"]["bundles_rejected"]["insufficient_balance"] == 1
        unfunded = _json(net, 0, f"/balance/{stranger.public.hex()}")
        assert unfunded["balance"] == 0 and not unfunded["funded"]
        # Crash-restart: node 2 is killed (SIGKILL) and restarted; it rebuilds the ledger
        # by replaying the finalized chain and checks every stored height on the way.
        before = _json(net, 2, "/lanes")["tracker_height"]
        net.kill(2)
        more = [b"after-crash-%d-" % i + bytes(400) for i in range(4)]
        up = [t for t in targets if t[0] != 2]
        assert asyncio.run(_send(up, funded, more, 60)).stats.decided["decoded"] == 4
        net.start(2)
        assert _wait(lambda: _json(net, 2, "/lanes")["tracker_height"] > before + 5, 60)
        lanes2 = _json(net, 2, "/lanes")
        assert lanes2["error"] is None and lanes2["ledger"]["conserved"]
        metrics = asyncio.run(net.rpc_json(2, "/stats"))
        assert metrics is not None
        # Compare at a ledger checkpoint above every execution so far.
        target = max(_json(net, i, "/lanes")["tracker_height"] for i in range(4))
        target += LEDGER_CHECKPOINT_HEIGHTS
        assert _wait(
            lambda: min(_json(net, i, "/lanes")["tracker_height"] for i in range(4)) >= target,
            60,
        )
        common = target - target % LEDGER_CHECKPOINT_HEIGHTS
        assert common > before
        rows = [_json(net, i, f"/lanes?at={common}")["ledger_at_height"] for i in range(4)]
        assert all(r is not None for r in rows)
        assert len({r["ledger_hash"] for r in rows}) == 1, rows  # equal after the restart
        assert rows[0]["bounties_paid"] == BOUNTY * (PAYLOADS + 4)
        # A stored ledger that the replay does not reproduce stops the tracker (the node
        # keeps running and says why): node 1's row at `common` is tampered while it is down.
        net.stop(1)
        database = root / manifest["members"][1]["name"] / "data" / DATABASE_FILE
        with sqlite3.connect(database) as db:
            db.execute("UPDATE lane_ledger SET burned = burned + 1 WHERE height = ?", (common,))
        net.start(1)
        assert _wait(lambda: _json(net, 1, "/lanes")["error"] is not None, 60)
        assert "replayed ledger differs" in _json(net, 1, "/lanes")["error"]
    finally:
        net.stop_all()


def test_testnet_run_reports_fees_bounties_and_one_ledger_hash_per_node(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "node.cli", "testnet", "run", "--nodes", "4",
            "--duration", "5", "--rate", "0", "--sedna-rate", "10", "--drain", "8",
            "--sender-balance", "1000000", "--fee", "2", "--bounty", "6", "--json",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["ok"]
    assert summary["fees_charged"] > 0 and summary["bounties_paid"] > 0
    assert summary["bounties_paid"] % 6 == 0 and summary["fees_charged"] % 2 == 0
    hashes = summary["ledger_hash"]
    assert sorted(hashes) == ["0", "1", "2", "3"] and len(set(hashes.values())) == 1
    assert summary["bundles_rejected"]["insufficient_balance"] == 0  # a contract key
