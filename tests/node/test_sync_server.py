"""The sync server: bounded per-peer queues, round-robin fairness, per-peer rate limit.

Requests are real `BlockSyncRequest`s; the answer is a real `BlockSyncResponse` of a chosen
size, and the clock is a counter, so each rule is checked exactly.
"""

from __future__ import annotations

import asyncio

import pytest

from consensus.messages import BlockBody, BlockSyncRequest, BlockSyncResponse, SyncedBlock
from node.metrics import NodeMetrics
from node.sync_server import MIN_REQUEST_COST_BYTES, SyncServer
from tests.node.helpers import make_block


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _server(answer_bytes: int = 0, **bounds) -> tuple[SyncServer, list[tuple[int, int]], Clock]:
    """A server whose answers carry `answer_bytes` of payload; returns (server, sent, clock)."""
    _, tip, _ = make_block()
    blocks = (SyncedBlock(tip=tip, body=BlockBody(payload=bytes(answer_bytes))),)
    sent: list[tuple[int, int]] = []  # (peer, frame bytes) in serving order
    clock = Clock()

    def answer(request):
        return BlockSyncResponse(block_id=request.block_id, blocks=blocks if answer_bytes else ())

    def send_frame(peer: int, frame: bytes, type_name: str) -> None:
        assert type_name == "BlockSyncResponse"
        sent.append((peer, len(frame)))

    server = SyncServer(
        answer=answer, send_frame=send_frame, metrics=NodeMetrics(), clock=clock, **bounds
    )
    return server, sent, clock


def _request(n: int = 1) -> BlockSyncRequest:
    return BlockSyncRequest(block_id=n.to_bytes(32, "big"), count=1)


def test_queues_are_bounded_per_peer_and_overflow_is_counted() -> None:
    server, sent, _ = _server(max_queued_per_peer=4)
    for i in range(10):
        server.offer(1, _request(i))
    server.offer(2, _request())
    assert server.queued(1) == 4 and server.queued(2) == 1 and server.queued() == 5
    assert server.metrics.sync_requests.value(result="queue_full") == 6
    assert server.metrics.sync_queue.value() == 5
    served = 0
    while server.serve_one():
        served += 1
    assert served == 5 and server.queued() == 0 and sent  # what was queued was answered


def test_a_flooding_peer_delays_another_by_at_most_one_request() -> None:
    server, sent, _ = _server(max_queued_per_peer=8)
    for i in range(8):
        server.offer(1, _request(i))  # peer 1 floods first
    server.offer(2, _request())
    server.offer(3, _request())
    for _ in range(3):
        assert server.serve_one()
    assert [peer for peer, _ in sent] == [1, 2, 3]  # one each per turn, in arrival order
    while server.serve_one():
        pass
    assert [peer for peer, _ in sent[3:]] == [1] * 7


def test_each_peer_is_rate_limited_by_the_bytes_it_is_sent() -> None:
    rate = 4 * MIN_REQUEST_COST_BYTES
    server, sent, clock = _server(
        answer_bytes=MIN_REQUEST_COST_BYTES,  # each answer costs a little over 64 KiB
        rate_bytes_per_s=rate,
        burst_bytes=2 * MIN_REQUEST_COST_BYTES,
        max_queued_per_peer=64,
    )
    for i in range(40):
        server.offer(1, _request(i))
    served_at: list[float] = []
    while clock.now_s < 5.0:
        if server.serve_one():
            served_at.append(clock.now_s)
        else:
            wait_s = server.wait_s()
            assert wait_s is not None and wait_s > 0  # waiting for tokens, not for work
            clock.now_s += wait_s + 1e-6
    cost = sent[0][1]
    assert cost > MIN_REQUEST_COST_BYTES
    # never more than the burst plus the rate over the elapsed time (one answer of slack:
    # a peer with a positive balance may go below zero by one answer)
    for k, t in enumerate(served_at, start=1):
        assert k * cost <= 2 * MIN_REQUEST_COST_BYTES + rate * t + cost
    assert len(served_at) >= int(rate * 5.0 / cost) - 1  # and it does serve at the rate


def test_a_rate_limited_peer_does_not_hold_up_another() -> None:
    server, sent, _ = _server(
        answer_bytes=MIN_REQUEST_COST_BYTES,
        rate_bytes_per_s=MIN_REQUEST_COST_BYTES,
        burst_bytes=MIN_REQUEST_COST_BYTES,
    )
    for i in range(4):
        server.offer(1, _request(i))
    assert server.serve_one()  # peer 1 spends its burst
    assert not server.serve_one()  # ... and waits
    server.offer(2, _request())
    assert server.serve_one() and sent[-1][0] == 2  # peer 2 is served meanwhile
    assert server.queued(1) == 3


def test_the_serving_task_answers_queued_requests_and_sleeps_when_idle() -> None:
    async def scenario() -> None:
        server, sent, _ = _server()
        task = asyncio.create_task(server.run())
        server.offer(1, _request())
        server.offer(2, _request())
        for _ in range(20):
            await asyncio.sleep(0)
        assert [p for p, _ in sent] == [1, 2]
        server.offer(3, _request())  # wakes the idle task
        for _ in range(20):
            await asyncio.sleep(0)
        assert [p for p, _ in sent] == [1, 2, 3]
        task.cancel()

    asyncio.run(scenario())


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        _server(max_queued_per_peer=0)
    with pytest.raises(ValueError):
        _server(burst_bytes=MIN_REQUEST_COST_BYTES - 1)
