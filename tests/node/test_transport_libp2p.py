"""The `libp2p` transport (py-libp2p in a trio thread) over real loopback sockets.

Each connect pays libp2p's fixed 250 ms dial delay; each scenario here still takes under
about 4 s on a quiet machine, so all of them run in the default suite (about 20 s together).
Waits are bounded (10 s each): with FAST's 300 ms backoff cap a reconnect takes about 1 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

pytest.importorskip("libp2p")

from consensus.crypto import derive_keys
from node.transport import create_transport
from node.transport.base import TransportLimits
from node.transport.testing import LOOPBACK, LocalMesh, wait_until

FAST = TransportLimits(
    connect_backoff_initial_ms=20, connect_backoff_max_ms=300, handshake_timeout_ms=1000
)


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 60.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout_s)

    asyncio.run(bounded())


async def _delivered(mesh: LocalMesh, receiver: int, sender: int, frame: bytes) -> None:
    await wait_until(lambda: frame in mesh.inbox.from_peer(receiver, sender), 10, repr(frame))


def test_peer_id_is_derived_from_the_validator_key() -> None:
    from libp2p import generate_peer_id_from
    from libp2p.crypto.ed25519 import create_new_key_pair

    from node.transport.libp2p_transport import peer_id_for

    keys = derive_keys(3, "peer-ids")
    ids = [peer_id_for(k.public) for k in keys]
    assert len(set(ids)) == 3
    for key, peer_id in zip(keys, ids, strict=True):
        assert generate_peer_id_from(create_new_key_pair(key.seed)) == peer_id


def test_smoke_four_node_mesh_limits_and_unknown_key() -> None:
    """Mesh exchange in order, frame limit both ways, and an outsider refused."""

    async def scenario() -> None:
        limits = TransportLimits(
            max_frame_bytes=64 * 1024,
            connect_backoff_initial_ms=20,
            connect_backoff_max_ms=300,
            handshake_timeout_ms=1000,
        )
        big = TransportLimits(max_frame_bytes=1024 * 1024, connect_backoff_initial_ms=20)
        mesh = LocalMesh("libp2p", 4, limits=limits, limits_by_node={3: big})
        await mesh.start()
        outsider_key = derive_keys(1, "not-a-validator")[0]
        outsider_peers = dict(mesh.peers)
        outsider_peers[0] = type(mesh.peers[0])(0, LOOPBACK, 1, outsider_key.public)
        got: list[bytes] = []
        # The outsider knows the real validators' addresses and keys and dials them all
        # (it takes index 0, so it is the lower index and dials everybody).
        outsider = create_transport(
            "libp2p",
            index=0,
            key=outsider_key,
            listen_host=LOOPBACK,
            listen_port=0,
            peers=outsider_peers,
            on_frame=lambda _p, f: got.append(f),
            limits=FAST,
        )
        try:
            await mesh.wait_connected(10)
            for sender, node in mesh.nodes.items():
                for seq in range(30):
                    node.broadcast(b"b%d:%d" % (sender, seq))
            await wait_until(lambda: all(mesh.inbox.count(i) == 90 for i in range(4)), 10)
            for receiver in range(4):
                for sender in set(range(4)) - {receiver}:
                    assert mesh.inbox.from_peer(receiver, sender) == [
                        b"b%d:%d" % (sender, s) for s in range(30)
                    ]
            # Frame limit, outbound: refused and counted at the sender.
            mesh.nodes[0].send(1, b"x" * (64 * 1024 + 1))
            assert mesh.stats(0)["drops"]["frame_too_large_out"] == 1
            mesh.nodes[0].send(1, b"y" * (64 * 1024))
            await _delivered(mesh, 1, 0, b"y" * (64 * 1024))
            # Frame limit, inbound: node 3 (bigger limit) sends above node 2's limit.
            opened = mesh.stats(3)["peers"][2]["streams_opened"]
            mesh.nodes[3].send(2, b"z" * (100 * 1024))
            await wait_until(lambda: mesh.stats(2)["conn_errors"]["frame_too_large_in"] == 1, 10)
            # Node 2 resets the stream; node 3 must notice and open a new one. Frames node 3
            # writes before the reset reaches it die with the old stream (delivery is
            # best-effort), so the next frame is sent once the new stream is open.
            await wait_until(
                lambda: mesh.stats(3)["peers"][2]["streams_opened"] > opened, 10, "reopen"
            )
            assert all(len(f) <= 64 * 1024 for f in mesh.inbox.from_peer(2, 3))
            mesh.nodes[3].send(2, b"after the big one")
            await _delivered(mesh, 2, 3, b"after the big one")
            # Unknown key: every validator refuses the outsider's connections.
            await outsider.start()
            await wait_until(
                lambda: all(
                    mesh.stats(i)["handshake_failures"]["unknown_key"] >= 1 for i in (1, 2, 3)
                ),
                10,
                "outsider refused",
            )
            outsider.broadcast(b"let me in")
            await asyncio.sleep(0.3)
            assert all(b"let me in" not in [f for _p, f in mesh.inbox.frames[i]] for i in range(4))
            assert got == []
            assert outsider.stats()["peers"][1]["frames_in"] == 0
        finally:
            await outsider.stop()
            await mesh.stop()

    run(scenario())


def test_garbage_to_the_libp2p_port_does_not_hurt_peers() -> None:
    async def scenario() -> None:
        mesh = LocalMesh("libp2p", 3, limits=FAST)
        await mesh.start()
        try:
            await mesh.wait_connected(10)
            port = mesh.ports[0]

            async def garbage(payload: bytes) -> None:
                _reader, writer = await asyncio.open_connection(LOOPBACK, port)
                writer.write(payload)
                try:
                    await writer.drain()
                    await asyncio.sleep(0.05)
                except OSError:
                    pass
                writer.transport.abort()

            payloads = [b"\x00" * 1000, b"\xff\xff\xff\xff" * 100, b"/multistream/1.0.0\n" * 4]
            await asyncio.gather(*(garbage(p) for p in payloads * 5))
            for seq in range(10):
                mesh.nodes[1].send(0, b"after %d" % seq)
                mesh.nodes[0].send(2, b"after %d" % seq)
            await wait_until(
                lambda: (
                    len(mesh.inbox.from_peer(0, 1)) == 10 and len(mesh.inbox.from_peer(2, 0)) == 10
                ),
                10,
            )
            assert mesh.nodes[0].connected_peers() == {1, 2}
        finally:
            await mesh.stop()

    run(scenario())


def test_reconnects_after_peer_restart() -> None:
    async def scenario() -> None:
        mesh = LocalMesh("libp2p", 3, limits=FAST)
        await mesh.start()
        try:
            await mesh.wait_connected(10)
            for restarted in (0, 2):  # the lowest index (a dialer) and the highest
                await mesh.stop([restarted])
                others = list(mesh.nodes)
                await wait_until(
                    lambda r=restarted, o=others: all(
                        r not in mesh.nodes[i].connected_peers() for i in o
                    ),
                    10,
                )
                await mesh.start([restarted])
                await mesh.wait_connected(10)
                marker = b"back %d" % restarted
                mesh.nodes[restarted].broadcast(marker)
                for i in others:
                    mesh.nodes[i].send(restarted, marker + b" ack")
                for i in others:
                    await _delivered(mesh, i, restarted, marker)
                    await _delivered(mesh, restarted, i, marker + b" ack")
        finally:
            await mesh.stop()

    run(scenario())


def test_set_isolated_drops_traffic_then_recovers() -> None:
    async def scenario() -> None:
        mesh = LocalMesh("libp2p", 3, limits=FAST)
        await mesh.start()
        try:
            await mesh.wait_connected(10)
            isolated = mesh.nodes[1]
            isolated.set_isolated(True)
            await wait_until(lambda: isolated.connected_peers() == set(), 10)
            isolated.broadcast(b"while isolated")
            await asyncio.sleep(0.5)  # node 0 keeps redialing 1 and is refused
            assert isolated.connected_peers() == set()
            assert isolated.stats()["drops"]["isolated_out"] >= 2
            assert all(b"while isolated" not in mesh.inbox.from_peer(i, 1) for i in (0, 2))
            mesh.nodes[0].send(2, b"0->2")
            await _delivered(mesh, 2, 0, b"0->2")
            isolated.set_isolated(False)
            await mesh.wait_connected(10)
            isolated.broadcast(b"recovered")
            mesh.nodes[2].send(1, b"welcome back")
            for i in (0, 2):
                await _delivered(mesh, i, 1, b"recovered")
            await _delivered(mesh, 1, 2, b"welcome back")
        finally:
            await mesh.stop()

    run(scenario())


def _open_connections(mesh: LocalMesh, index: int, peer: int) -> int:
    """Open connections `index`'s libp2p swarm holds to `peer` (not only those we accepted)."""
    from node.transport.libp2p_transport import peer_id_for

    network = mesh.nodes[index]._host.get_network()  # type: ignore[attr-defined]
    conns = network.get_connections(peer_id_for(mesh.keys[peer].public))
    return sum(1 for conn in conns if not conn.is_closed)


def test_set_isolated_cycles_for_dialer_waiter_and_middle_node() -> None:
    """Isolate/recover each role in turn; after each, traffic flows both ways again.

    Node 0 dials everybody, node 2 waits for everybody's dial, node 1 does both. Recovery
    used to stall for good when a waiting writer missed its wake-up; the swarm must also
    end with exactly one open connection per pair (the higher index never dials).
    """

    async def scenario() -> None:
        mesh = LocalMesh("libp2p", 3, limits=FAST)
        await mesh.start()
        try:
            await mesh.wait_connected(10)
            for cycle, isolated_index in enumerate((2, 0, 1, 2)):
                node = mesh.nodes[isolated_index]
                others = [i for i in mesh.nodes if i != isolated_index]
                node.set_isolated(True)
                await wait_until(lambda n=node: n.connected_peers() == set(), 10, "isolated")
                await wait_until(
                    lambda o=others, x=isolated_index: all(
                        x not in mesh.nodes[i].connected_peers() for i in o
                    ),
                    10,
                    "peers see the isolation",
                )
                node.set_isolated(False)
                await mesh.wait_connected(10)
                marker = b"cycle %d from %d" % (cycle, isolated_index)
                node.broadcast(marker)
                for i in others:
                    mesh.nodes[i].send(isolated_index, marker + b" ack %d" % i)
                for i in others:
                    await _delivered(mesh, i, isolated_index, marker)
                    await _delivered(mesh, isolated_index, i, marker + b" ack %d" % i)
            for index in mesh.nodes:
                for peer in set(mesh.nodes) - {index}:
                    assert _open_connections(mesh, index, peer) == 1, (index, peer)
        finally:
            await mesh.stop()

    run(scenario())


def test_change_signal_wakes_every_waiter_only_when_its_condition_holds() -> None:
    import trio
    import trio.testing

    from node.transport.bridge import ChangeSignal

    async def scenario() -> None:
        signal = ChangeSignal()
        state = {"a": False, "b": False}
        woke: list[str] = []

        async def waiter(name: str) -> None:
            await signal.wait_for(lambda: state[name])
            woke.append(name)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, "a")
            nursery.start_soon(waiter, "b")
            await trio.testing.wait_all_tasks_blocked()
            signal.notify()  # nothing changed: nobody returns
            await trio.testing.wait_all_tasks_blocked()
            assert woke == []
            state["a"] = True  # changed but not yet notified: still nobody
            await trio.testing.wait_all_tasks_blocked()
            assert woke == []
            signal.notify()
            signal.notify()  # a second notify before the waiters ran loses nothing
            await trio.testing.wait_all_tasks_blocked()
            assert woke == ["a"]
            state["b"] = True
            signal.notify()
        assert woke == ["a", "b"]
        await signal.wait_for(lambda: True)  # already true: returns without a notify
        assert signal.notifications == 4

    trio.run(scenario)


def test_queue_bound_drops_oldest_and_counts() -> None:
    async def scenario() -> None:
        limits = TransportLimits(
            peer_queue_frames=8, connect_backoff_initial_ms=20, connect_backoff_max_ms=100
        )
        mesh = LocalMesh("libp2p", 2, limits=limits)
        await mesh.start([0])
        try:
            for seq in range(20):
                mesh.nodes[0].send(1, b"%d" % seq)
            assert mesh.stats(0)["drops"]["queue_full"] == 12
            assert mesh.stats(0)["peers"][1]["queued"] == 8
            await mesh.start([1])
            await wait_until(lambda: mesh.inbox.count(1) == 8, 10)
            await asyncio.sleep(0.1)
            assert mesh.inbox.from_peer(1, 0) == [b"%d" % s for s in range(12, 20)]
        finally:
            await mesh.stop()

    run(scenario())


def test_a_peer_of_another_chain_speaks_another_protocol_and_is_counted() -> None:
    """Rule WRONG-CHAIN (libp2p): the stream protocol id names the chain, so node 2 of
    another chain never gets a stream with nodes 0 and 1 (counted `wrong_chain` by the
    side that tried), while 0 and 1 exchange frames."""
    from node.transport.libp2p_transport import protocol_id

    assert protocol_id("chain-a") != protocol_id("chain-b")

    async def scenario() -> None:
        mesh = LocalMesh("libp2p", 3, limits=FAST, chain_id_by_node={2: "another-chain"})
        await mesh.start()
        try:
            await wait_until(
                lambda: all(
                    mesh.stats(i)["handshake_failures"]["wrong_chain"] >= 1 for i in (0, 1, 2)
                ),
                10,
                "wrong_chain counted",
            )
            mesh.nodes[0].send(1, b"same chain")
            await wait_until(lambda: mesh.inbox.from_peer(1, 0) == [b"same chain"], 10)
            # A connection that never carried a stream of this chain is not a peer: the
            # stranger's accepted-then-closed connections never show in connected_peers
            # (which /status reports and tx forwarding picks from), even for an instant.
            seen_by_stranger: set[int] = set()
            deadline = asyncio.get_running_loop().time() + 3.0
            while asyncio.get_running_loop().time() < deadline:
                seen_by_stranger |= mesh.nodes[2].connected_peers()
                assert 2 not in mesh.nodes[0].connected_peers() | mesh.nodes[1].connected_peers()
                await asyncio.sleep(0.001)
            assert seen_by_stranger == set()
            assert mesh.nodes[0].connected_peers() == {1}
            mesh.nodes[2].broadcast(b"stranger")
            mesh.nodes[0].send(2, b"to the stranger")
            await asyncio.sleep(0.5)
            assert mesh.inbox.count(2) == 0
            assert all(
                b"stranger" not in f for i in (0, 1) for _p, f in mesh.inbox.frames.get(i, [])
            )
        finally:
            await mesh.stop()

    run(scenario())
