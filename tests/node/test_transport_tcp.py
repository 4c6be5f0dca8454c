"""The `tcp` transport over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from consensus.crypto import derive_keys
from node.logs import get_logger
from node.transport import create_transport
from node.transport.base import TransportLimits
from node.transport.handshake import (
    FINISH_BYTES,
    HELLO_BYTES,
    REPLY_BYTES,
    HandshakeError,
    Initiator,
    Responder,
)
from node.transport.testing import LOOPBACK, LocalMesh, free_port, local_peers, wait_until

FAST = TransportLimits(
    connect_backoff_initial_ms=20, connect_backoff_max_ms=200, handshake_timeout_ms=500
)


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 30.0, loop: str = "asyncio") -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout_s)

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(bounded())
    else:
        asyncio.run(bounded())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_four_node_mesh_exchanges_frames_in_order(loop: str) -> None:
    async def scenario() -> None:
        mesh = LocalMesh("tcp", 4, limits=FAST)
        await mesh.start()
        try:
            await mesh.wait_connected(5)
            for sender, node in mesh.nodes.items():
                for seq in range(50):
                    node.broadcast(b"b%d:%d" % (sender, seq))
                for receiver in mesh.nodes:
                    node.send(receiver, b"direct %d->%d" % (sender, receiver))
            await wait_until(lambda: all(mesh.inbox.count(i) == 3 * 51 for i in range(4)), 5)
            for receiver in range(4):
                for sender in range(4):
                    if sender == receiver:
                        continue
                    expected = [b"b%d:%d" % (sender, s) for s in range(50)]
                    expected.append(b"direct %d->%d" % (sender, receiver))
                    assert mesh.inbox.from_peer(receiver, sender) == expected
            stats = mesh.stats(0)
            assert stats["connected_peers"] == [1, 2, 3]
            assert stats["peers"][1]["frames_out"] == 51
            assert stats["peers"][1]["frames_in"] == 51
            assert stats["peers"][1]["bytes_in"] == sum(len(f) for f in mesh.inbox.from_peer(0, 1))
            assert stats["drops"]["not_a_peer"] == 1  # the send to itself
            assert sum(stats["conn_errors"].values()) - stats["conn_errors"]["duplicate"] == 0
        finally:
            await mesh.stop()

    run(scenario(), loop=loop)


def test_one_connection_per_pair_after_simultaneous_dials() -> None:
    """Both sides dial at once; both keep the same single connection."""

    async def attempt() -> tuple[int, int]:
        mesh = LocalMesh("tcp", 2, limits=FAST)
        a, b = mesh.build(0), mesh.build(1)
        await asyncio.gather(a.start(), b.start())
        mesh.nodes = {0: a, 1: b}
        try:
            await mesh.wait_connected(5)
            await asyncio.sleep(0.1)  # let a losing duplicate be resolved
            assert a.connected_peers() == {1} and b.connected_peers() == {0}
            conn_a, conn_b = a._conns[1], b._conns[0]  # type: ignore[attr-defined]
            assert conn_a.dialer == conn_b.dialer  # the same TCP connection on both sides
            a.send(1, b"ping")
            b.send(0, b"pong")
            await wait_until(lambda: mesh.inbox.count(0) == 1 and mesh.inbox.count(1) == 1, 2)
            # Only the lower index refuses (its own dial wins); nobody adopted a duplicate.
            duplicates = a.stats()["conn_errors"]["duplicate"]
            assert b.stats()["conn_errors"]["duplicate"] == 0
            assert a.stats()["peers"][1]["connects"] == b.stats()["peers"][0]["connects"] == 1
            return duplicates, conn_a.dialer
        finally:
            await mesh.stop()

    async def scenario() -> None:
        outcomes = [await attempt() for _ in range(5)]
        # rule: when both dials succeed, the lower index's connection survives
        assert all(dialer == 0 for duplicates, dialer in outcomes if duplicates)
        assert any(duplicates for duplicates, _ in outcomes), "tie-break never exercised"

    run(scenario())


def test_unknown_key_is_rejected_both_ways() -> None:
    async def scenario() -> None:
        mesh = LocalMesh("tcp", 3, limits=FAST)
        await mesh.start([0, 1])
        outsider_key = derive_keys(1, "not-a-validator")[0]
        # An outsider who knows the validator set dials node 0 claiming index 2's slot.
        outsider_peers = dict(mesh.peers)
        outsider_peers[2] = type(mesh.peers[2])(2, LOOPBACK, mesh.ports[2], outsider_key.public)
        got: list[bytes] = []
        outsider = create_transport(
            "tcp",
            index=2,
            key=outsider_key,
            listen_host=LOOPBACK,
            listen_port=mesh.ports[2],
            peers=outsider_peers,
            on_frame=lambda _p, f: got.append(f),
            limits=FAST,
        )
        await outsider.start()
        try:
            await mesh.wait_connected(5)
            await wait_until(
                lambda: (
                    mesh.stats(0)["handshake_failures"]["unknown_key"] >= 1
                    and mesh.stats(1)["handshake_failures"]["unknown_key"] >= 1
                ),
                5,
                "outsider rejected",
            )
            # Node 0 dialing the outsider (at validator 2's address) rejects its key too,
            # counted as a wrong peer key; it keeps redialing, and says so in one log line.
            await wait_until(lambda: mesh.stats(0)["handshake_failures"]["wrong_peer_key"] >= 3, 5)
            mesh.nodes[0].broadcast(b"secret")
            await wait_until(lambda: mesh.inbox.count(1) == 1, 2)
            await asyncio.sleep(0.05)
            assert outsider.connected_peers() == set()
            assert 2 not in mesh.nodes[0].connected_peers()
            assert got == []
            assert mesh.stats(0)["peers"][2]["frames_in"] == 0
            mismatches = [r for r in records if getattr(r, "event", "") == "peer_key_mismatch"]
            # one line per node that met the wrong key, however often it redialed
            dialers = [i for i in (0, 1) if mesh.stats(i)["handshake_failures"]["wrong_peer_key"]]
            assert len(mismatches) == len(dialers) >= 1
            assert all(r.fields["peer"] == 2 for r in mismatches)  # type: ignore[attr-defined]
            assert all(r.levelno == logging.WARNING for r in mismatches)
            assert any(getattr(r, "event", "") == "unknown_peer_key" for r in records)
        finally:
            await outsider.stop()
            await mesh.stop()
            logger.removeHandler(handler)

    logger = get_logger()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    run(scenario())


async def _raw(port: int, payload: bytes, *, linger_s: float = 0.0) -> None:
    _reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(payload)
    try:
        await writer.drain()
        if linger_s:
            await asyncio.sleep(linger_s)
    except OSError:
        pass
    writer.transport.abort()


async def _authenticated_rogue(port: int, mesh: LocalMesh, rogue: int, target: int, payload: bytes):
    """Complete a valid handshake as validator `rogue` with `target`, then send `payload`."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    initiator = Initiator(mesh.keys[rogue], mesh.keys[target].public)
    writer.write(initiator.hello)
    finish, session = initiator.on_reply(await reader.readexactly(REPLY_BYTES))
    writer.write(finish)
    writer.write(payload)
    await writer.drain()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(reader.read(1), 2)  # the node closes on us
    writer.transport.abort()
    return session


def test_malformed_flood_is_dropped_counted_and_peers_keep_being_served() -> None:
    async def scenario() -> None:
        limits = TransportLimits(
            connect_backoff_initial_ms=20,
            connect_backoff_max_ms=200,
            handshake_timeout_ms=300,
            max_frame_bytes=4096,
        )
        # Validator 0 is played by the rogue; the target is node 3 (it never dials 0 and
        # refuses nothing as a duplicate, being the higher index).
        mesh = LocalMesh("tcp", 4, limits=limits)
        await mesh.start([1, 2, 3])
        port = mesh.ports[3]
        try:
            await mesh.wait_connected(5)
            garbage = [
                b"\x00" * 1000,
                b"\xff\xff\xff\xff" + b"A" * 500,  # oversized length prefix
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b" " * 100,
                bytes(range(256)) * 8,
            ]
            flood = [_raw(port, g) for g in garbage * 5]
            # Half handshakes: a valid known-key hello, then silence (timeout) or close.
            half = Initiator(mesh.keys[0], mesh.keys[3].public).hello
            flood += [_raw(port, half, linger_s=0.5) for _ in range(3)]
            flood += [_raw(port, half[: HELLO_BYTES // 2]) for _ in range(3)]
            flood += [_raw(port, half + b"\x00" * FINISH_BYTES) for _ in range(3)]
            # Keep authenticated traffic flowing during the flood.
            for seq in range(20):
                mesh.nodes[1].send(3, b"during %d" % seq)
            await asyncio.gather(*flood)
            # Authenticated as validator 0, then malformed frames (one connection at a
            # time: a newer connection from the same validator replaces the older one).
            for payload in (
                b"\xff\xff\xff\xf0",  # length prefix far above the limit
                b"\x00\x00\x00\x03abc",  # too short to carry a tag
                b"\x00\x00\x00\x20" + b"\x01" * 32,  # fails authentication
            ):
                await _authenticated_rogue(port, mesh, 0, 3, payload)
            stats = mesh.stats(3)
            failures = stats["handshake_failures"]
            assert failures["bad_handshake"] >= 20 + 3 + 3  # garbage, truncated, bad finish
            assert failures["timeout"] >= 3
            assert stats["conn_errors"]["frame_too_large_in"] == 1
            assert stats["conn_errors"]["bad_length"] == 1
            assert stats["conn_errors"]["aead_failure"] == 1
            assert stats["peers"][0]["frames_in"] == 0
            # The node still serves its authenticated peers, both ways.
            for seq in range(20):
                mesh.nodes[3].send(2, b"after %d" % seq)
                mesh.nodes[1].send(3, b"after %d" % seq)
            await wait_until(
                lambda: len(mesh.inbox.from_peer(3, 1)) == 40 and mesh.inbox.count(2) == 20, 5
            )
            assert mesh.inbox.from_peer(3, 1)[-1] == b"after 19"
            assert mesh.nodes[3].connected_peers() >= {1, 2}
        finally:
            await mesh.stop()

    run(scenario())


def test_reconnects_after_peer_restart() -> None:
    async def scenario() -> None:
        mesh = LocalMesh("tcp", 3, limits=FAST)
        await mesh.start()
        try:
            await mesh.wait_connected(5)
            await mesh.stop([2])
            await wait_until(lambda: 2 not in mesh.nodes[0].connected_peers(), 5)
            for seq in range(5):  # queued while the peer is down, delivered after
                mesh.nodes[0].send(2, b"while down %d" % seq)
            await asyncio.sleep(0.3)  # several failed dials with backoff
            assert mesh.stats(0)["peers"][2]["dial_failures"] >= 1
            await mesh.start([2])
            await mesh.wait_connected(5)
            mesh.nodes[2].broadcast(b"back")
            await wait_until(
                lambda: (
                    mesh.inbox.from_peer(0, 2)[-1:] == [b"back"]
                    and mesh.inbox.from_peer(1, 2)[-1:] == [b"back"]
                    and len(mesh.inbox.from_peer(2, 0)) == 5
                ),
                5,
            )
            assert mesh.inbox.from_peer(2, 0) == [b"while down %d" % s for s in range(5)]
            assert mesh.stats(0)["peers"][2]["connects"] == 2
        finally:
            await mesh.stop()

    run(scenario())


def test_set_isolated_drops_traffic_then_recovers() -> None:
    async def scenario() -> None:
        mesh = LocalMesh("tcp", 3, limits=FAST)
        await mesh.start()
        try:
            await mesh.wait_connected(5)
            isolated = mesh.nodes[1]
            isolated.send(0, b"queued-before")  # may or may not be flushed before isolation
            isolated.set_isolated(True)
            assert isolated.connected_peers() == set()
            isolated.broadcast(b"while isolated")
            await wait_until(lambda: 1 not in mesh.nodes[0].connected_peers(), 2)
            mesh.nodes[0].send(1, b"to isolated")  # queued at 0 until 1 comes back
            await asyncio.sleep(0.3)  # peers keep trying to dial; all refused
            assert isolated.connected_peers() == set()
            assert 1 not in mesh.nodes[0].connected_peers()
            assert b"while isolated" not in mesh.inbox.from_peer(0, 1)
            stats = isolated.stats()
            assert stats["isolated"] is True
            assert stats["drops"]["isolated_out"] >= 2
            assert stats["handshake_failures"]["isolated"] >= 1  # refused inbound dials
            # Other peers keep working.
            mesh.nodes[0].send(2, b"0->2")
            await wait_until(lambda: mesh.inbox.from_peer(2, 0) == [b"0->2"], 2)
            isolated.set_isolated(False)
            await mesh.wait_connected(5)
            isolated.broadcast(b"recovered")
            mesh.nodes[2].send(1, b"welcome back")
            await wait_until(
                lambda: (
                    mesh.inbox.from_peer(0, 1)[-1:] == [b"recovered"]
                    and mesh.inbox.from_peer(1, 2)[-1:] == [b"welcome back"]
                ),
                5,
            )
            # The frame queued at node 0 while 1 was isolated was delivered late, not lost.
            assert b"to isolated" in mesh.inbox.from_peer(1, 0)
        finally:
            await mesh.stop()

    run(scenario())


def test_queue_bound_drops_oldest_and_counts() -> None:
    async def scenario() -> None:
        limits = TransportLimits(
            peer_queue_frames=8, connect_backoff_initial_ms=20, connect_backoff_max_ms=100
        )
        mesh = LocalMesh("tcp", 2, limits=limits)
        await mesh.start([0])  # peer 1 is not up: frames queue
        try:
            for seq in range(20):
                mesh.nodes[0].send(1, b"%d" % seq)
            stats = mesh.stats(0)
            assert stats["drops"]["queue_full"] == 12
            assert stats["peers"][1]["queued"] == 8
            await mesh.start([1])
            await wait_until(lambda: mesh.inbox.count(1) == 8, 5)
            await asyncio.sleep(0.05)
            assert mesh.inbox.from_peer(1, 0) == [b"%d" % s for s in range(12, 20)]
            assert mesh.stats(0)["peers"][1]["queued"] == 0
        finally:
            await mesh.stop()

    run(scenario())


def test_frame_size_limit_enforced_both_directions() -> None:
    async def scenario() -> None:
        small = TransportLimits(
            max_frame_bytes=64 * 1024, connect_backoff_initial_ms=20, connect_backoff_max_ms=100
        )
        big = TransportLimits(
            max_frame_bytes=1024 * 1024, connect_backoff_initial_ms=20, connect_backoff_max_ms=100
        )
        mesh = LocalMesh("tcp", 2, limits=small, limits_by_node={1: big})
        await mesh.start()
        try:
            await mesh.wait_connected(5)
            # Outbound: node 0 refuses to send above its own limit; exactly the limit passes.
            mesh.nodes[0].send(1, b"x" * (64 * 1024 + 1))
            mesh.nodes[0].send(1, b"y" * (64 * 1024))
            assert mesh.stats(0)["drops"]["frame_too_large_out"] == 1
            await wait_until(lambda: mesh.inbox.count(1) == 1, 5)
            assert mesh.inbox.from_peer(1, 0) == [b"y" * (64 * 1024)]
            # Inbound: node 1 (larger limit) sends above node 0's limit: node 0 drops the
            # connection before reading the body, counts it, and the pair reconnects.
            mesh.nodes[1].send(0, b"z" * (100 * 1024))
            await wait_until(lambda: mesh.stats(0)["conn_errors"]["frame_too_large_in"] == 1, 5)
            assert mesh.inbox.count(0) == 0
            await wait_until(lambda: mesh.stats(0)["peers"][1]["connects"] >= 2, 5)
            await mesh.wait_connected(5)
            mesh.nodes[1].send(0, b"small again")
            await wait_until(lambda: mesh.inbox.from_peer(0, 1) == [b"small again"], 5)
        finally:
            await mesh.stop()

    run(scenario())


def test_too_many_pending_handshakes_are_refused() -> None:
    async def scenario() -> None:
        keys = derive_keys(2, "pending")
        port = free_port()
        limits = TransportLimits(max_pending_handshakes=4, handshake_timeout_ms=1000)
        node = create_transport(
            "tcp",
            index=0,
            key=keys[0],
            listen_host=LOOPBACK,
            listen_port=port,
            peers=local_peers(keys, [port, free_port()]),
            on_frame=lambda _p, _f: None,
            limits=limits,
        )
        await node.start()
        try:
            silent = [await asyncio.open_connection(LOOPBACK, port) for _ in range(10)]
            await wait_until(lambda: node.stats()["handshake_failures"]["too_many_pending"] == 6, 2)
            for _reader, writer in silent:
                writer.transport.abort()
            await wait_until(lambda: node.stats()["handshake_failures"]["bad_handshake"] == 4, 2)
        finally:
            await node.stop()

    run(scenario())


def test_on_frame_exception_is_counted_not_fatal() -> None:
    async def scenario() -> None:
        received: list[bytes] = []

        def handler_for(index: int):
            def on_frame(_peer: int, frame: bytes) -> None:
                if frame == b"boom":
                    raise RuntimeError("runtime bug")
                received.append(frame)

            return on_frame

        mesh = LocalMesh("tcp", 2, limits=FAST, on_frame=handler_for)
        await mesh.start()
        try:
            await mesh.wait_connected(5)
            for frame in (b"a", b"boom", b"b"):
                mesh.nodes[0].send(1, frame)
            await wait_until(lambda: received == [b"a", b"b"], 2)
            assert mesh.stats(1)["drops"]["callback_error"] == 1
            assert mesh.nodes[1].connected_peers() == {0}
        finally:
            await mesh.stop()

    run(scenario())


def test_create_transport_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown transport"):
        create_transport("udp", index=0)  # type: ignore[arg-type]


def test_stop_is_idempotent_and_start_twice_fails() -> None:
    async def scenario() -> None:
        mesh = LocalMesh("tcp", 2, limits=FAST)
        await mesh.start([0])
        node = mesh.nodes[0]
        with pytest.raises(RuntimeError):
            await node.start()
        await node.stop()
        await node.stop()
        assert node.connected_peers() == set()

    run(scenario())


def test_handshake_sizes_on_the_wire_match_the_spec() -> None:
    """The three messages a real handshake produces have the sizes docs/transport.md states
    (104 + 129 + 64 bytes), the checks use the same sizes, and the keys agree."""
    initiator_key, responder_key = derive_keys(2, b"tests/handshake-sizes")
    initiator = Initiator(initiator_key, expected_peer=responder_key.public)
    responder = Responder(responder_key, known={initiator_key.public: 0})
    hello = initiator.hello
    reply = responder.on_hello(hello)
    finish, initiator_session = initiator.on_reply(reply)
    responder_session = responder.on_finish(finish)
    assert (len(hello), len(reply), len(finish)) == (104, 129, 64)
    assert (len(hello), len(reply), len(finish)) == (HELLO_BYTES, REPLY_BYTES, FINISH_BYTES)
    header, ciphertext = initiator_session.send.seal(b"frame")
    assert responder_session.recv.open(header, ciphertext) == b"frame"
    # One byte short or long is refused at each step.
    with pytest.raises(HandshakeError):
        Responder(responder_key, known={initiator_key.public: 0}).on_hello(hello[:-1])
    with pytest.raises(HandshakeError):
        Initiator(initiator_key, expected_peer=responder_key.public).on_reply(reply + b"x")


def test_a_peer_of_another_chain_is_refused_at_the_hello_and_counted_both_ways() -> None:
    """Rule WRONG-CHAIN: node 2 runs another chain id with a validator key the others
    know; every handshake with it ends in the `wrong_chain` refusal (counted by both
    sides), no frame crosses, and the two nodes of the chain talk as usual."""

    async def scenario() -> None:
        mesh = LocalMesh("tcp", 3, limits=FAST, chain_id_by_node={2: "another-chain"})
        await mesh.start()
        try:
            await wait_until(lambda: 1 in mesh.nodes[0].connected_peers(), 5, "0-1")
            await wait_until(
                lambda: all(
                    mesh.stats(i)["handshake_failures"]["wrong_chain"] >= 2 for i in (0, 1, 2)
                ),
                5,
                "wrong_chain counted",
            )
            for node in mesh.nodes.values():
                node.broadcast(b"hello")
            await wait_until(lambda: mesh.inbox.count(0) == 1 and mesh.inbox.count(1) == 1, 2)
            await asyncio.sleep(0.05)
            assert mesh.inbox.count(2) == 0
            assert mesh.nodes[2].connected_peers() == set()
            assert 2 not in mesh.nodes[0].connected_peers() | mesh.nodes[1].connected_peers()
            assert mesh.stats(0)["handshake_failures"]["bad_handshake"] == 0  # told apart
        finally:
            await mesh.stop()

    run(scenario())
