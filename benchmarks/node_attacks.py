"""Netsim's attacking senders (netsim/lane_attacks.py), driven over RPC against real nodes.

Used by tests/node/test_e2e_sender_attacks.py, tests/node/test_e2e_lane_leaders.py and
benchmarks/bench_node_attacks.py. `leader_network` runs the leader adversaries (2 and 3)
instead: a network with or without a censoring leader, under the same load.

The crafting is netsim's, unchanged: an `AttackingSender` plans its entries for a slot
(`plan(slot) -> [(lane, LaneEntry)]`) and learns decisions from `on_outcome`. This driver
only replaces the simulator around it: it reads the lanes' open slot from `GET /status`,
asks the attacker for the entries of one slot a few slots ahead, posts each lane's entries
to that lane's node (`POST /bundle`), counts the nodes' answers by reason, and feeds the
attacker the decisions it asks about (`GET /payload/<id>`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.crypto import KeyPair, SignatureScheme
from consensus.lanes.params import layout_for
from consensus.lanes.tracker import execution_key
from consensus.lanes.wire import LaneEntry, encode_lane_entry
from netsim.lane_attacks import ATTACKS, AttackContext, AttackingSender
from node.lanes_node import NODE_LANE_PARAMS
from node.rpc import HttpClient, encode_binary_txs
from node.tools.sedna_client import SednaClient, SednaPolicy
from node.tools.testnet import Testnet, generate_network, load_senders

LEAD_SLOTS = 6  # plan this many slots past the open slot (tickets must land before it)
_STATES = {"decoded": "executed", "rejected": "rejected", "expired": "expired"}


@dataclass(frozen=True)
class _Event:  # what `AttackingSender.on_outcome` reads of a decision
    commitment_id: bytes
    status: str


@dataclass(frozen=True)
class _Outcome:
    payloads: tuple[_Event, ...]


class RpcAttackDriver:
    """One `[[sender_attack]]` entity against a live network (node index = lane)."""

    def __init__(
        self,
        targets: Sequence[tuple[int, str, int]],
        kind: str,
        count: int,
        *,
        key: KeyPair,
        scheme: SignatureScheme,
        fee: int,
        seed: int,
        payload_bytes: int = 400,
        t_star_slots: int = 100,
    ):
        context = AttackContext(
            params=NODE_LANE_PARAMS,
            layout=layout_for(NODE_LANE_PARAMS, payload_bytes),
            lanes=len(targets),
            scheme=scheme,
            fee=fee,
            rng=random.Random(seed),
            bundles_per_slot=2,
            policy="fresh",
            lookahead_slots=8,
            t_star=t_star_slots,
        )
        self.attacker: AttackingSender = ATTACKS[kind]("attacker", kind, 0, count, key, context)
        self.clients = {i: HttpClient(host, port, 2.0) for i, host, port in targets}
        self.home = min(self.clients)
        self.answers: Counter[str] = Counter()  # per bundle: "accepted" or the reason
        self.last_slot = 0
        self.steps = 0

    async def _get(self, path: str) -> tuple[int, dict]:
        status, raw = await self.clients[self.home].request("GET", path)
        return status, json.loads(raw) if raw else {}

    async def _post(self, lane: int, entries: list[LaneEntry]) -> None:
        body = encode_binary_txs([encode_lane_entry(e) for e in entries])
        try:
            _status, raw = await self.clients[lane].request(
                "POST", "/bundle", body, "application/octet-stream"
            )
            results = json.loads(raw).get("results", [])
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            self.answers["unreachable"] += len(entries)
            return
        for result in results:
            self.answers["accepted" if result is None else result] += 1

    async def _learn(self) -> None:
        pending = [cid for cid, s in self.attacker.payload_status.items() if s == "pending"]
        events = []
        for cid in pending[-4:]:  # bound: the newest undecided payloads (what plans read)
            status, data = await self._get(f"/payload/{cid.hex()}")
            state = _STATES.get(data.get("state", "")) if status == 200 else None
            if state is not None:
                events.append(_Event(cid, state))
        if events:
            self.attacker.on_outcome(_Outcome(tuple(events)))  # type: ignore[arg-type]

    async def step(self) -> None:
        """Plan one slot ahead of the open slot, send it, learn decisions."""
        status, data = await self._get("/status")
        if status != 200:
            return
        slot = max(int(data["lane_open_slot"]) + LEAD_SLOTS, self.last_slot + 1)
        self.last_slot = slot
        by_lane: dict[int, list[LaneEntry]] = {}
        for lane, entry in self.attacker.plan(slot):
            by_lane.setdefault(lane, []).append(entry)
        await asyncio.gather(*(self._post(lane, es) for lane, es in by_lane.items()))
        await self._learn()
        self.steps += 1

    async def run(self, duration_s: float, interval_s: float = 0.05) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration_s
        while loop.time() < deadline:  # bounded by the deadline
            await self.step()
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


# --------------------------------------------------------------------------- phases


async def node_json(net: Testnet, index: int, path: str) -> dict:
    data = await net.rpc_json(index, path, timeout_s=5.0)
    assert data is not None, f"node {index} did not answer {path}"
    return data


async def run_phase(
    net: Testnet,
    honest: SednaClient,
    duration_s: float,
    honest_pps: float,
    attack: RpcAttackDriver | None = None,
) -> dict:
    """Honest load at `honest_pps` (and the attack) for `duration_s`; the chain's blocks/s
    over it (node 0's finalized height) and the honest payload ids submitted."""
    start = (await node_json(net, 0, "/status"))["height"]
    started = time.monotonic()
    submitted: list[bytes] = []

    async def honest_load() -> None:
        sent = 0
        while (elapsed := time.monotonic() - started) < duration_s:
            while sent < elapsed * honest_pps:  # bound: the rate owed so far
                cid = honest.submit(b"honest-%d-" % len(submitted) + bytes(400))
                assert cid is not None
                submitted.append(cid)
                sent += 1
            await honest.step()
            await asyncio.sleep(0.02)

    await asyncio.gather(honest_load(), attack.run(duration_s) if attack else asyncio.sleep(0))
    elapsed = time.monotonic() - started
    end = (await node_json(net, 0, "/status"))["height"]
    return {"blocks_per_s": (end - start) / elapsed, "submitted": submitted}


async def settle(honest: SednaClient, timeout_s: float) -> None:
    """Step the honest client until every payload is decided (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while honest.undecided() and time.monotonic() < deadline:
        await honest.step()
        await asyncio.sleep(0.02)


async def decided_ns(net: Testnet) -> dict[bytes, int]:
    """When node 0's tracker decided each payload (its /executions `decided_ns`)."""
    height = (await node_json(net, 0, "/lanes"))["tracker_height"]
    decided: dict[bytes, int] = {}
    first = 1
    while first <= height:  # bounded: each page advances `next`
        page = await node_json(net, 0, f"/executions?from={first}&to={height}")
        decided.update((bytes.fromhex(e["id"]), e["decided_ns"]) for e in page["events"])
        first = page["next"]
    return decided


def decode_p50_ms(honest: SednaClient, ids: list[bytes], decided: dict[bytes, int]) -> float | None:
    """Honest decode latency p50: first send -> decided on node 0."""
    values = sorted(
        (decided[cid] - sent) / 1e6
        for cid in ids
        if cid in decided and (sent := honest.payloads[cid].first_send_ns)
    )
    return round(values[len(values) // 2], 1) if values else None


# --------------------------------------------------------------------------- leaders
# Adversaries 2 and 3 act as a leader, not as a sender: the censoring leader is configured
# when the network starts (`[test] byzantine = "drop_lane_blocks"`), so its baseline is a
# second network with the same load, not a phase of the same run.

CENSOR = 3  # the censoring leader's index in a 4-node network
TX_PER_S = 40.0  # plain transactions alongside the honest payloads


async def plain_txs(net: Testnet, duration_s: float, tag: bytes) -> int:
    """Plain transactions to every node at TX_PER_S for `duration_s`; how many were sent."""
    clients = [HttpClient(m.rpc_host, m.rpc_port, 2.0) for m in net.members]
    started, sent = time.monotonic(), 0
    try:
        while (elapsed := time.monotonic() - started) < duration_s:
            while sent < elapsed * TX_PER_S:  # bound: the rate owed so far
                tx = tag + b"-%d-" % sent + os.urandom(16)
                await clients[sent % len(clients)].request(
                    "POST", "/tx", encode_binary_txs([tx]), "application/octet-stream"
                )
                sent += 1
            await asyncio.sleep(0.02)
    finally:
        for client in clients:
            await client.close()
    return sent


async def events_and_blocks(net: Testnet, index: int) -> tuple[list[dict], dict[int, dict]]:
    """Node `index`'s decided payloads and finalized blocks up to its tracker height."""
    height = (await node_json(net, index, "/lanes"))["tracker_height"]
    events: list[dict] = []
    first = 1
    while first <= height:  # bounded: each page advances `next`
        page = await node_json(net, index, f"/executions?from={first}&to={height}")
        events += page["events"]
        first = page["next"]
    blocks: dict[int, dict] = {}
    for first in range(1, height + 1, 100):  # the RPC serves 100 blocks per request
        page = await node_json(net, index, f"/blocks?from={first}&to={min(first + 99, height)}")
        blocks.update((b["height"], b) for b in page["blocks"])
    return events, blocks


def payload_order_faults(events: list[dict], blocks: dict[int, dict]) -> tuple[int, int]:
    """Adversary 2 on one node: (blocks whose executed payloads do not take positions
    0..k-1 in SHA-256(parent id || payload id) order, blocks that held both executed
    payloads and plain transactions)."""
    by_height: dict[int, list[dict]] = {}
    for e in events:
        if e["status"] == "executed":
            by_height.setdefault(e["height"], []).append(e)
    faults = mixed = 0
    for height, group in by_height.items():
        ok = [e["position"] for e in group] == list(range(len(group)))
        if height > 1:
            parent = bytes.fromhex(blocks[height - 1]["block_id"])
            keyed = sorted(group, key=lambda e: execution_key(parent, bytes.fromhex(e["id"])))
            ok = ok and [e["id"] for e in group] == [e["id"] for e in keyed]
        faults += not ok
        mixed += blocks[height]["n_tx"] > 0
    return faults, mixed


async def leader_network(
    root: Path,
    mode: str,
    *,
    censor: bool,
    phase_s: float,
    honest_pps: float,
    pace_ms: float = 60.0,
) -> dict[str, Any]:
    """A fresh 4-node network (ledger on; node CENSOR a censoring leader if `censor`) under
    an honest Sedna sender and plain transactions for `phase_s`; what the nodes did."""
    generate_network(
        root, 4, consensus={"delta_ms": 50.0, "vote_pace_ms": pace_ms}, dissemination=mode,
        ledger={"sender_balance": 10**12, "fee": 1, "bounty": 5, "senders": 1},
        node_test={CENSOR: {"byzantine": "drop_lane_blocks"}} if censor else None,
    )  # fmt: skip
    (key,) = load_senders(root)
    net = Testnet(root)
    net.start_all()
    try:
        if not await net.wait_ready(30.0):
            raise RuntimeError("network did not get ready")
        targets = [(m.index, m.rpc_host, m.rpc_port) for m in net.members]
        honest = SednaClient(targets, key=key, policy=SednaPolicy(extra_bundles=1))
        try:
            phase, txs = await asyncio.gather(
                run_phase(net, honest, phase_s, honest_pps),
                plain_txs(net, phase_s, b"censored" if censor else b"honest"),
            )
            await settle(honest, 40)
            decided = await decided_ns(net)
        finally:
            await honest.close()
        stats = [(await node_json(net, i, "/stats"))["lanes"] for i in range(4)]
        per_node = [await events_and_blocks(net, i) for i in range(4)]
    finally:
        net.stop_all()
    submitted = {cid.hex() for cid in phase["submitted"]}
    executed = [[e["id"] for e in ev if e["status"] == "executed"] for ev, _ in per_node]
    common = min(max(blocks, default=0) for _, blocks in per_node)
    orders = {tuple(e["id"] for e in ev if e["height"] <= common) for ev, _ in per_node}
    checked = [payload_order_faults(ev, blocks) for ev, blocks in per_node]
    key_name = "tips_omitted" if mode == "certified" else None
    return {
        "blocks_per_s": phase["blocks_per_s"],
        "decode_p50_ms": decode_p50_ms(honest, phase["submitted"], decided),
        "honest_submitted": len(submitted),
        "honest_decoded_by_client": honest.stats.decided["decoded"],
        # per node: honest payloads not executed, payloads executed more than once
        "undecoded": [len(submitted - set(ids)) for ids in executed],
        "executed_twice": [len(ids) - len(set(ids)) for ids in executed],
        "one_order": len(orders) == 1,
        "order_faults": [f for f, _ in checked],
        "mixed_blocks": min(m for _, m in checked),
        "omitted": [
            s["availability"][key_name] if key_name else s["lane_blocks"]["omitted"] for s in stats
        ],
        "tracker_full": sum(s["bundles_not_counted"]["tracker_full"] for s in stats),
        "txs": txs,
    }
