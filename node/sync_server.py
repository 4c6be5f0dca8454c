"""Serving block sync to peers: queued per peer, served in turn, rate-limited per peer.

Sync requests are answered from the ledger's database (a response reads up to 8 MiB), so
they never run in the transport's frame callback: `offer` only queues the request, and
`run` serves the queues from its own task, one request per step, yielding to the event
loop after each. The consensus core never sees these requests.

Rules (each with a test in tests/node/test_sync_server.py):
- SS-BOUND: at most `max_queued_per_peer` requests wait per peer; a request beyond that is
  dropped and counted (`queue_full`). An honest requester asks again in a later round.
- SS-FAIR: peers with waiting requests are served round-robin, one request each per turn,
  so a peer that floods requests delays another peer by at most one request per flooder.
- SS-RATE: each peer has a token bucket of `rate_bytes_per_s` (capacity `burst_bytes`); a
  response costs its frame size, at least MIN_REQUEST_COST_BYTES (an empty answer still
  costs a lookup). A peer whose bucket is empty waits; its requests stay queued.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.codec import encode_message
from consensus.messages import Message
from node.metrics import NodeMetrics

MAX_QUEUED_PER_PEER = 8
RATE_BYTES_PER_S = 16 * 1024 * 1024
BURST_BYTES = 16 * 1024 * 1024
MIN_REQUEST_COST_BYTES = 64 * 1024

Answer = Callable[[Message], Message]
SendFrame = Callable[[int, bytes, str], None]


@dataclass
class _PeerQueue:
    requests: deque[Message] = field(default_factory=deque)
    tokens: float = 0.0
    refilled_s: float = 0.0


class SyncServer:
    """Per-peer queues of sync requests and the task that answers them."""

    def __init__(
        self,
        *,
        answer: Answer,
        send_frame: SendFrame,
        metrics: NodeMetrics,
        max_queued_per_peer: int = MAX_QUEUED_PER_PEER,
        rate_bytes_per_s: float = RATE_BYTES_PER_S,
        burst_bytes: float = BURST_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_queued_per_peer < 1 or rate_bytes_per_s <= 0 or burst_bytes < MIN_REQUEST_COST_BYTES:
            raise ValueError("sync server bounds must be positive (burst >= one request)")
        self._answer = answer
        self._send_frame = send_frame
        self.metrics = metrics
        self.max_queued_per_peer = max_queued_per_peer
        self.rate_bytes_per_s = rate_bytes_per_s
        self.burst_bytes = burst_bytes
        self._clock = clock
        self._peers: dict[int, _PeerQueue] = {}
        self._turn: deque[int] = deque()  # peers with waiting requests, in serving order
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ intake

    def offer(self, peer: int, request: Message) -> None:
        """Queue a request (transport callback: no I/O here)."""
        queue = self._peers.get(peer)
        if queue is None:
            queue = self._peers[peer] = _PeerQueue(
                tokens=self.burst_bytes, refilled_s=self._clock()
            )
        if len(queue.requests) >= self.max_queued_per_peer:  # SS-BOUND
            self.metrics.sync_requests.inc(result="queue_full")
            return
        if not queue.requests:
            self._turn.append(peer)
        queue.requests.append(request)
        self.metrics.sync_queue.set(self.queued())
        self._wake.set()

    def queued(self, peer: int | None = None) -> int:
        if peer is not None:
            queue = self._peers.get(peer)
            return 0 if queue is None else len(queue.requests)
        return sum(len(q.requests) for q in self._peers.values())

    # ------------------------------------------------------------------ serving

    def _refill(self, queue: _PeerQueue, now_s: float) -> None:
        elapsed = max(0.0, now_s - queue.refilled_s)
        queue.tokens = min(self.burst_bytes, queue.tokens + elapsed * self.rate_bytes_per_s)
        queue.refilled_s = now_s

    def serve_one(self) -> bool:
        """Answer the next request in turn whose peer has tokens. False: none could be."""
        now_s = self._clock()
        for _ in range(len(self._turn)):
            peer = self._turn.popleft()
            queue = self._peers[peer]
            self._refill(queue, now_s)
            if queue.tokens <= 0:  # SS-RATE: this peer waits, the others go on
                self._turn.append(peer)
                continue
            request = queue.requests.popleft()
            if queue.requests:
                self._turn.append(peer)  # SS-FAIR: back of the line
            response = self._answer(request)
            frame = encode_message(response)
            queue.tokens -= max(MIN_REQUEST_COST_BYTES, len(frame))
            self._send_frame(peer, frame, type(response).__name__)
            self.metrics.sync_requests.inc(result="served")
            self.metrics.sync_queue.set(self.queued())
            return True
        return False

    def wait_s(self) -> float | None:
        """Seconds until some waiting peer has tokens again (None: nothing is waiting)."""
        if not self._turn:
            return None
        now_s = self._clock()
        waits = []
        for peer in self._turn:
            queue = self._peers[peer]
            self._refill(queue, now_s)
            waits.append(max(0.0, -queue.tokens) / self.rate_bytes_per_s)
        return min(waits)

    async def run(self) -> None:
        """Serve forever: one request per step, yielding to the event loop in between."""
        while True:
            if self.serve_one():
                await asyncio.sleep(0)
                continue
            wait_s = self.wait_s()
            self._wake.clear()
            if wait_s is None:
                await self._wake.wait()
            else:
                # tokens <= 0 means "wait until positive": sleep a little past zero
                await asyncio.sleep(wait_s + 0.001)
