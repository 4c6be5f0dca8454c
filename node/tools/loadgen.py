"""Open-loop load generators over the node RPC: plain transactions and Sedna payloads.

Every `tick_s` it creates the txs that the target rate owes since the start (so a slow tick
is caught up on the next one, up to `max_batch_txs` per node and tick), and posts them as
binary batches (`POST /tx`, application/octet-stream) to the nodes in turn, over one
keep-alive connection per node with at most one request in flight per node. A batch whose
node is down or busy is handed to the next live node; a batch no node takes is counted as
`unsent`. It never blocks on the network for longer than the RPC timeout.

A tx is `run_id (8 B) || sequence (8 B) || send time ns (8 B) || filler` of `tx_bytes`
bytes, so txs are unique per run. The generator keeps the short ids (`storage.short_id`)
of every accepted tx so that the launcher can check each one against the finalized chain.

`SednaLoadGenerator` offers Sedna payloads alongside, through `node.tools.sedna_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from consensus.crypto import KeyPair
from consensus.lanes.encoding import EncodedPayload
from node.mempool import tx_id
from node.rpc import HttpClient, encode_binary_txs
from node.storage import short_id
from node.tools.sedna_client import SednaClient, SednaPolicy

MIN_TX_BYTES = 24
MAX_PREPARED_PAYLOADS = 200_000
PREPARE_CHUNK = 256  # payloads per batched encode in `prepare`


@dataclass
class LoadStats:
    offered: int = 0
    accepted: int = 0
    rejected: int = 0
    unsent: int = 0
    errors: int = 0
    requests: int = 0
    started_s: float = 0.0
    stopped_s: float = 0.0
    accepted_ids: set[bytes] = field(default_factory=set)
    per_node_accepted: dict[int, int] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        end = self.stopped_s or time.monotonic()
        return max(0.0, end - self.started_s)

    def offered_rate(self) -> float:
        return self.offered / self.elapsed_s if self.elapsed_s > 0 else 0.0


class LoadGenerator:
    def __init__(
        self,
        targets: Sequence[tuple[int, str, int]],
        rate_tps: float,
        *,
        tx_bytes: int = 512,
        tick_s: float = 0.02,
        max_batch_txs: int = 5000,
        rpc_timeout_s: float = 2.0,
        is_up: Callable[[int], bool] | None = None,
    ):
        if rate_tps <= 0:
            raise ValueError(f"rate must be > 0 tx/s, got {rate_tps}")
        if tx_bytes < MIN_TX_BYTES:
            raise ValueError(f"tx_bytes must be >= {MIN_TX_BYTES}, got {tx_bytes}")
        if not targets:
            raise ValueError("the load generator needs at least one node")
        self.targets = list(targets)
        self.rate_tps = rate_tps
        self.tx_bytes = tx_bytes
        self.tick_s = tick_s
        self.max_batch_txs = max_batch_txs
        self.is_up = is_up or (lambda index: True)
        self.stats = LoadStats()
        self._run_id = os.urandom(8)
        self._filler = bytes(tx_bytes - MIN_TX_BYTES)
        self._seq = 0
        self._clients = {i: HttpClient(host, port, rpc_timeout_s) for i, host, port in targets}
        self._busy: set[int] = set()
        self._down_until: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next = 0

    def make_tx(self) -> bytes:
        self._seq += 1
        return self._run_id + struct.pack(">QQ", self._seq, time.time_ns()) + self._filler

    def _pick(self, now: float) -> int | None:
        """Next live, idle node in round-robin order."""
        for step in range(len(self.targets)):
            index = self.targets[(self._next + step) % len(self.targets)][0]
            if index in self._busy or self._down_until.get(index, 0.0) > now:
                continue
            if not self.is_up(index):
                continue
            self._next = (self._next + step + 1) % len(self.targets)
            return index
        return None

    async def run(self, duration_s: float, stop: asyncio.Event | None = None) -> LoadStats:
        """Offer load for `duration_s` seconds (or until `stop` is set)."""
        stats = self.stats
        stats.started_s = time.monotonic()
        deadline = stats.started_s + duration_s
        try:
            while True:
                now = time.monotonic()
                if now >= deadline or (stop is not None and stop.is_set()):
                    break
                owed = int((now - stats.started_s) * self.rate_tps) - stats.offered
                live = max(1, len(self.targets) - len(self._busy))
                budget = min(owed, self.max_batch_txs * live)
                while budget > 0:
                    node = self._pick(now)
                    if node is None:
                        break
                    share = min(budget, self.max_batch_txs, max(1, owed // live))
                    txs = [self.make_tx() for _ in range(share)]
                    stats.offered += share
                    budget -= share
                    self._busy.add(node)
                    task = asyncio.create_task(self._post(node, txs))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await asyncio.sleep(self.tick_s)
        finally:
            stats.stopped_s = time.monotonic()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5.0)
            for client in self._clients.values():
                await client.close()
        return stats

    async def _post(self, node: int, txs: list[bytes], hops: int = 0) -> None:
        stats = self.stats
        try:
            status, body = await self._clients[node].request(
                "POST", "/tx", encode_binary_txs(txs), "application/octet-stream"
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            stats.errors += 1
            self._down_until[node] = time.monotonic() + 0.5
            self._busy.discard(node)
            # Hand the batch to another node (bounded: each node at most once).
            other = self._pick(time.monotonic()) if hops + 1 < len(self.targets) else None
            if other is None:
                stats.unsent += len(txs)
                return
            self._busy.add(other)
            await self._post(other, txs, hops + 1)
            return
        finally:
            self._busy.discard(node)
        stats.requests += 1
        result: dict[str, int] = {}
        with contextlib.suppress(ValueError):
            result = json.loads(body) if body else {}
        accepted = int(result.get("accepted", 0)) + int(result.get("duplicate", 0))
        if status == 200 and accepted == len(txs):
            stats.accepted += len(txs)
            stats.per_node_accepted[node] = stats.per_node_accepted.get(node, 0) + len(txs)
            stats.accepted_ids.update(short_id(tx_id(tx)) for tx in txs)
            return
        if status == 200 and accepted:
            # Partial acceptance (mempool full mid-batch): the txs were admitted in order.
            taken = txs[:accepted]
            stats.accepted += accepted
            stats.rejected += len(txs) - accepted
            stats.per_node_accepted[node] = stats.per_node_accepted.get(node, 0) + accepted
            stats.accepted_ids.update(short_id(tx_id(tx)) for tx in taken)
            return
        stats.rejected += len(txs)


class SednaLoadGenerator:
    """Open-loop Sedna payloads at `rate_pps` through a `SednaClient` (one sender key).

    A payload is `run_id (8 B) || sequence (8 B) || send time ns (8 B) || filler` of
    `payload_bytes` bytes. Every tick it submits what the rate owes since the start (at
    most `max_batch` per tick) and steps the client (plan, send, poll, re-send). At most
    `window_s × rate` payloads are in flight; beyond that the generator counts payloads as
    `refused` instead of piling them into an overloaded network (it reports the overload
    rather than deepening it).
    """

    def __init__(
        self,
        targets: Sequence[tuple[int, str, int]],
        rate_pps: float,
        *,
        payload_bytes: int = 512,
        tick_s: float = 0.02,
        max_batch: int = 2000,
        policy: SednaPolicy | None = None,
        rpc_timeout_s: float = 2.0,
        is_up: Callable[[int], bool] | None = None,
        window_s: float = 2.0,
        key: KeyPair | None = None,
    ):
        from node.lanes_node import NODE_LANE_PARAMS

        if rate_pps <= 0:
            raise ValueError(f"Sedna rate must be > 0 payloads/s, got {rate_pps}")
        if not MIN_TX_BYTES <= payload_bytes <= NODE_LANE_PARAMS.max_payload_bytes:
            raise ValueError(
                f"Sedna payload bytes must be in {MIN_TX_BYTES}..{NODE_LANE_PARAMS.max_payload_bytes}"
            )
        self.rate_pps = rate_pps
        self.payload_bytes = payload_bytes
        self.tick_s = tick_s
        self.max_batch = max_batch
        self.client = SednaClient(
            targets,
            key=key,  # a funded sender on a chain with a [ledger]
            policy=policy,
            rpc_timeout_s=rpc_timeout_s,
            is_up=is_up,
            max_active=max(100, math.ceil(rate_pps * window_s)),
        )
        self._run_id = os.urandom(8)
        self._filler = bytes(payload_bytes - MIN_TX_BYTES)
        self._seq = 0
        self._prepared: deque[EncodedPayload] = deque()
        self.started_s = 0.0
        self.stopped_s = 0.0

    def make_payload(self) -> bytes:
        self._seq += 1
        return self._run_id + struct.pack(">QQ", self._seq, time.time_ns()) + self._filler

    @property
    def offered(self) -> int:
        return self.client.stats.offered

    def prepare(self, count: int) -> float:
        """Encode `count` payloads ahead of the load (benchmarks: keeps the sender's encoding
        out of the measured window). Returns the seconds it took."""
        started = time.perf_counter()
        total = min(count, MAX_PREPARED_PAYLOADS)  # bound: at most the cap
        for start in range(0, total, PREPARE_CHUNK):  # batched encode, chunk by chunk
            chunk = [self.make_payload() for _ in range(min(PREPARE_CHUNK, total - start))]
            self._prepared.extend(self.client.encode_many(chunk))
        return time.perf_counter() - started

    async def run(self, duration_s: float, stop: asyncio.Event | None = None) -> None:
        """Offer payloads for `duration_s` seconds (or until `stop` is set)."""
        self.started_s = time.monotonic()
        deadline = self.started_s + duration_s
        attempted = 0
        try:
            while True:
                now = time.monotonic()
                if now >= deadline or (stop is not None and stop.is_set()):
                    break
                owed = int((now - self.started_s) * self.rate_pps) - attempted
                fresh: list[bytes] = []
                for _ in range(min(owed, self.max_batch)):
                    attempted += 1
                    if self._prepared:
                        self.client.submit_encoded(self._prepared.popleft())
                    else:
                        fresh.append(self.make_payload())
                if fresh:  # this tick's payloads share one batched encode
                    self.client.submit_many(fresh)
                await self.client.step()
                await asyncio.sleep(self.tick_s)
        finally:
            self.stopped_s = time.monotonic()

    async def settle(self, timeout_s: float) -> None:
        """Keep stepping (re-sends, decisions) until nothing is undecided or time is up."""
        deadline = time.monotonic() + timeout_s
        while self.client.undecided() and time.monotonic() < deadline:
            await self.client.step()
            await asyncio.sleep(self.tick_s)

    async def close(self) -> None:
        await self.client.close()
