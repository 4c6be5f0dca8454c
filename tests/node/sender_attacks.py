"""Netsim's attacking senders (netsim/lane_attacks.py), driven over RPC against real nodes.

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.crypto import KeyPair, SignatureScheme
from consensus.lanes.params import layout_for
from consensus.lanes.wire import LaneEntry, encode_lane_entry
from netsim.lane_attacks import ATTACKS, AttackContext, AttackingSender
from node.lanes_node import NODE_LANE_PARAMS
from node.rpc import HttpClient, encode_binary_txs

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
