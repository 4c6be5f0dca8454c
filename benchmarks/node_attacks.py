"""Netsim's attacking senders (netsim/lane_attacks.py), driven over RPC against real nodes.

Used by tests/node/test_e2e_sender_attacks.py and benchmarks/bench_node_attacks.py.

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
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.crypto import KeyPair, SignatureScheme
from consensus.lanes.params import layout_for
from consensus.lanes.wire import LaneEntry, encode_lane_entry
from netsim.lane_attacks import ATTACKS, AttackContext, AttackingSender
from node.lanes_node import NODE_LANE_PARAMS
from node.rpc import HttpClient, encode_binary_txs
from node.tools.sedna_client import SednaClient
from node.tools.testnet import Testnet

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
