"""`libp2p`: py-libp2p (Noise + yamux) in a trio thread, behind the asyncio Transport API.

- Identity: the validator's Ed25519 seed is the libp2p ed25519 key, so the peer id is
  derived from the validator key; Noise proves possession of it on every connection.
- Only Noise is offered (no plaintext/secio/TLS fallback) and only yamux.
- Connections from a peer id that is not a validator are closed (counted `unknown_key`);
  streams from one are reset. No gossipsub: every frame goes on a direct stream.
- One connection per pair: the LOWER index dials (with backoff), the higher waits for it.
- Per peer, one outbound stream on PROTOCOL_ID carries 4-byte length-prefixed frames;
  the peer reads them from the stream we opened and writes to us on the one it opened.
- libp2p's swarm keeps a 60 s "negative cache" of peers whose dial failed and retries
  dials 3 times itself; we lift the cache before each dial and set its retries to 0 so our
  own backoff (TransportLimits) is the only one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Mapping
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from consensus.crypto import KeyPair
from node.transport.base import (
    DEFAULT_LIMITS,
    FRAME_HEADER_BYTES,
    FrameHandler,
    PeerAddress,
    PeerQueue,
    TransportCounters,
    TransportLimits,
    validate_config,
)
from node.transport.bridge import AsyncioInbox, TrioThread, TrioWaker

log = logging.getLogger("sedna.transport.libp2p")
# libp2p logs every refused dial at ERROR; our peer loops count them (dial_failures).
logging.getLogger("libp2p.transport.tcp.tcp").setLevel(logging.CRITICAL)

PROTOCOL_ID = TProtocol("/sedna/consensus/1")
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_WRITE_BATCH_FRAMES = 256
_WRITE_BATCH_BYTES = 1024 * 1024


def peer_id_for(public_key: bytes) -> ID:
    """The libp2p peer id of a validator's Ed25519 public key."""
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key))


class _StreamClosed(Exception):
    pass


async def _read_exactly(stream: INetStream, size_bytes: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size_bytes:  # bounded: each pass reads >= 1 byte or raises
        chunk = await stream.read(size_bytes - len(buffer))
        if not chunk:
            raise _StreamClosed
        buffer += chunk
    return bytes(buffer)


class _Notifee(INotifee):
    def __init__(self, transport: Libp2pTransport) -> None:
        self._transport = transport

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._transport._on_connected(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._transport._on_disconnected(conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


class Libp2pTransport:
    """py-libp2p transport. See node/transport/base.py for the contract."""

    kind = "libp2p"

    def __init__(
        self,
        *,
        index: int,
        key: KeyPair,
        listen_host: str,
        listen_port: int,
        peers: Mapping[int, PeerAddress],
        on_frame: FrameHandler,
        limits: TransportLimits = DEFAULT_LIMITS,
    ) -> None:
        self._remote = validate_config(index=index, key=key, listen_port=listen_port, peers=peers)
        self._index = index
        self._key = key
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._on_frame = on_frame
        self._limits = limits
        self._peer_ids = {peer: peer_id_for(a.public_key) for peer, a in self._remote.items()}
        self._index_by_id = {pid: peer for peer, pid in self._peer_ids.items()}
        self._counters = TransportCounters(sorted(self._remote))
        self._dial_failures = dict.fromkeys(self._remote, 0)
        # Shared between threads, guarded by _lock: queues, live connections, isolation.
        self._lock = threading.Lock()
        self._queues = {peer: PeerQueue(limits.peer_queue_frames) for peer in self._remote}
        self._live: dict[int, set[int]] = {peer: set() for peer in self._remote}
        self._isolated = False
        self._running = False
        self._rng = random.Random()
        self._thread = TrioThread(f"libp2p-{index}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: AsyncioInbox[tuple[int, bytes]] | None = None
        self._waker: TrioWaker | None = None
        self._ready: asyncio.Future[None] | None = None
        # Trio-side state, created in the trio thread.
        self._stop_event: trio.Event | None = None
        self._not_isolated: trio.Event | None = None
        self._wake_events: dict[int, trio.Event] = {}
        self._connected_events: dict[int, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._host: Any = None
        self.bound_port: int | None = None

    # ---- lifecycle (asyncio side) ------------------------------------------------------

    async def start(self) -> None:
        """Start the trio thread, listen, then dial peers (forever, with backoff)."""
        if self._running:
            raise RuntimeError("transport already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._inbox = AsyncioInbox(loop, self._deliver, self._limits.peer_queue_frames)
        self._ready = loop.create_future()
        self._running = True
        self._thread.start(self._trio_main)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), _START_TIMEOUT_S)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the trio thread (closes every connection); idempotent."""
        if not self._running:
            return
        self._running = False
        token = self._thread.token
        if token is not None and self._stop_event is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._stop_event.set)
        if not await asyncio.to_thread(self._thread.join, _STOP_TIMEOUT_S):
            log.warning("libp2p thread of node %d did not stop in time", self._index)

    # ---- the runtime's API (asyncio side) ---------------------------------------------

    def send(self, peer: int, frame: bytes) -> None:
        """Queue `frame` for `peer` without blocking; drops are counted, never raised."""
        queue = self._queues.get(peer)
        if queue is None:  # rule: only remote validators are addressable
            self._counters.drop("not_a_peer")
            return
        if len(frame) > self._limits.max_frame_bytes:  # rule: hard frame limit (outbound)
            self._counters.drop("frame_too_large_out")
            return
        with self._lock:
            if self._isolated:  # rule: isolation drops all outbound traffic
                self._counters.drop("isolated_out")
                return
            if not queue.push(frame):
                self._counters.drop("queue_full")
        if self._waker is not None:
            self._waker.wake(peer)

    def broadcast(self, frame: bytes) -> None:
        for peer in self._remote:
            self.send(peer, frame)

    def set_isolated(self, isolated: bool) -> None:
        """Isolate: drop queued and new traffic both ways, close connections, stop dialing."""
        with self._lock:
            if isolated == self._isolated:
                return
            self._isolated = isolated
            if isolated:
                for queue in self._queues.values():
                    self._counters.drop("isolated_out", queue.clear())
        token = self._thread.token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._apply_isolation, isolated)

    def connected_peers(self) -> set[int]:
        with self._lock:
            return {peer for peer, conns in self._live.items() if conns}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            queued = {peer: len(queue) for peer, queue in self._queues.items()}
            isolated = self._isolated
        snapshot = self._counters.snapshot(
            kind=self.kind, index=self._index, connected=self.connected_peers(), queued=queued
        )
        for peer, failures in self._dial_failures.items():
            snapshot["peers"][peer]["dial_failures"] = failures
        snapshot["isolated"] = isolated
        snapshot["bridge"] = {
            "to_trio_wakeups": 0 if self._waker is None else self._waker.wakeups,
            "to_asyncio_wakeups": 0 if self._inbox is None else self._inbox.wakeups,
            "inbox_len": 0 if self._inbox is None else len(self._inbox),
        }
        return snapshot

    def _deliver(self, item: tuple[int, bytes]) -> None:
        """Asyncio side: one received frame, from the inbox drain."""
        peer, frame = item
        if self._isolated:  # rule: isolation drops all inbound traffic
            self._counters.drop("isolated_in")
            return
        self._counters.frame_in(peer, len(frame))
        try:
            self._on_frame(peer, frame)
        except Exception:
            log.exception("on_frame raised for a frame from %d", peer)
            self._counters.drop("callback_error")

    def _signal_ready(self, error: BaseException | None) -> None:
        if self._ready is not None and not self._ready.done():
            if error is None:
                self._ready.set_result(None)
            else:
                self._ready.set_exception(error)

    # ---- trio side -------------------------------------------------------------------

    async def _trio_main(self) -> None:
        assert self._loop is not None
        token = trio.lowlevel.current_trio_token()
        self._thread.token = token
        self._stop_event = trio.Event()
        self._not_isolated = trio.Event()
        if not self._isolated:
            self._not_isolated.set()
        self._wake_events = {peer: trio.Event() for peer in self._remote}
        self._connected_events = {peer: trio.Event() for peer in self._remote}
        self._waker = TrioWaker(token, self._wake_writer)
        try:
            await self._run_host()
        except BaseException as exc:
            self._loop.call_soon_threadsafe(self._signal_ready, exc)
            if not isinstance(exc, Exception):
                raise
            log.exception("libp2p thread of node %d failed", self._index)

    async def _run_host(self) -> None:
        assert self._loop is not None and self._stop_event is not None
        key_pair = ed25519_key_pair(self._key.seed)
        listen = multiaddr.Multiaddr(f"/ip4/{self._listen_host}/tcp/{self._listen_port}")
        host = new_host(
            key_pair=key_pair,
            # rule: authenticated encryption only; no plaintext/secio fallback
            sec_opt={
                NOISE_PROTOCOL_ID: NoiseTransport(
                    key_pair, noise_privkey=x25519_key_pair().private_key
                )
            },
            muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
            listen_addrs=[listen],
        )
        self._host = host
        network = host.get_network()
        network.retry_config = RetryConfig(max_retries=0)
        host.set_stream_handler(PROTOCOL_ID, self._handle_stream)
        network.register_notifee(_Notifee(self))
        async with trio.open_nursery() as service:
            self._nursery = service  # connection closers started from notifee callbacks
            async with host.run(listen_addrs=[listen]):
                # Our peer loops are the only dialers: stop libp2p's auto-connector, which
                # would otherwise dial every peer it learnt of (identify) from both sides.
                await network.auto_connector.stop()
                addrs = host.get_transport_addrs() or host.get_addrs()
                self.bound_port = int(addrs[0].value_for_protocol("tcp"))
                async with trio.open_nursery() as loops:
                    for peer in self._remote:
                        loops.start_soon(self._peer_loop, peer)
                    self._loop.call_soon_threadsafe(self._signal_ready, None)
                    await self._stop_event.wait()
                    loops.cancel_scope.cancel()
                with trio.move_on_after(_STOP_TIMEOUT_S / 2) as scope:
                    scope.shield = True
                    await host.close()
            service.cancel_scope.cancel()

    def _apply_isolation(self, isolated: bool) -> None:
        assert self._not_isolated is not None
        if not isolated:
            self._not_isolated.set()
            return
        self._not_isolated = trio.Event()
        if self._nursery is not None and self._host is not None:
            for peer_id in list(self._host.get_network().connections):
                self._nursery.start_soon(self._close_peer, peer_id)

    async def _close_peer(self, peer_id: ID) -> None:
        try:
            await self._host.disconnect(peer_id)
        except Exception as exc:
            log.debug("closing %s: %r", peer_id, exc)

    async def _close_conn(self, conn: INetConn) -> None:
        try:
            await conn.close()
        except Exception as exc:
            log.debug("closing connection: %r", exc)

    def _on_connected(self, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        peer = self._index_by_id.get(peer_id)
        reason = None
        if peer is None:  # rule: only known validators' peer ids
            reason = "unknown_key"
        elif self._isolated:  # rule: isolation refuses connections
            reason = "isolated"
        if reason is not None:
            self._counters.handshake_failure(reason)
            if self._nursery is not None:
                self._nursery.start_soon(self._close_conn, conn)
            return
        assert peer is not None
        with self._lock:
            self._live[peer].add(id(conn))
        self._counters.connected(peer)
        self._connected_events[peer].set()

    def _on_disconnected(self, conn: INetConn) -> None:
        peer = self._index_by_id.get(conn.muxed_conn.peer_id)
        if peer is None:
            return
        with self._lock:
            self._live[peer].discard(id(conn))
            empty = not self._live[peer]
        if empty:
            self._connected_events[peer] = trio.Event()

    def _wake_writer(self, peer: int) -> None:
        self._wake_events[peer].set()

    def _backoff_s(self, backoff_ms: int) -> float:
        return backoff_ms * (0.75 + 0.5 * self._rng.random()) / 1000.0

    async def _peer_loop(self, peer: int) -> None:
        """Keep one outbound stream to `peer` and pump its queue into it."""
        assert self._not_isolated is not None
        address = self._remote[peer]
        peer_id = self._peer_ids[peer]
        info = PeerInfo(peer_id, [multiaddr.Multiaddr(f"/ip4/{address.host}/tcp/{address.port}")])
        timeout_s = self._limits.handshake_timeout_ms / 1000.0
        backoff_ms = self._limits.connect_backoff_initial_ms
        while True:
            await self._not_isolated.wait()
            stream = None
            try:
                if self._index < peer:  # rule: the lower index dials
                    self._host.get_network().unblock_peer(peer_id)
                    # libp2p adds a fixed 250 ms dial delay on top of the handshake
                    with trio.fail_after(timeout_s + 0.5):
                        await self._host.connect(info)
                else:
                    await self._connected_events[peer].wait()
                with trio.fail_after(timeout_s):
                    stream = await self._host.new_stream(peer_id, [PROTOCOL_ID])
            except Exception as exc:
                log.debug("node %d -> %d: no stream: %r", self._index, peer, exc)
                self._dial_failures[peer] += 1
                await trio.sleep(self._backoff_s(backoff_ms))
                backoff_ms = min(2 * backoff_ms, self._limits.connect_backoff_max_ms)
                continue
            backoff_ms = self._limits.connect_backoff_initial_ms
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_stream, stream, nursery.cancel_scope)
                    await self._pump(peer, stream)
                    nursery.cancel_scope.cancel()  # the pump returned: isolated
            except Exception as exc:
                log.debug("node %d -> %d: stream ended: %r", self._index, peer, exc)
            finally:
                with trio.move_on_after(1) as scope, contextlib.suppress(Exception):
                    scope.shield = True
                    await stream.reset()

    async def _watch_stream(self, stream: INetStream, scope: trio.CancelScope) -> None:
        """End the pump as soon as the peer resets or closes our outbound stream.

        Without this, the pump only learns of a reset on its next write, and the frame of
        that write is lost. The peer never writes on this stream; any byte ends it too.
        """
        try:
            await stream.read(1)
        except Exception as exc:
            log.debug("node %d: outbound stream ended: %r", self._index, exc)
        scope.cancel()

    async def _pump(self, peer: int, stream: INetStream) -> None:
        queue = self._queues[peer]
        while True:
            with self._lock:
                if self._isolated:
                    return
                batch = queue.pop_batch(_WRITE_BATCH_FRAMES, _WRITE_BATCH_BYTES)
                if not batch:
                    # Created under the lock: a send() after this sees it via the waker.
                    self._wake_events[peer] = trio.Event()
            if not batch:
                await self._wake_events[peer].wait()
                continue
            parts: list[bytes] = []
            size_bytes = 0
            for frame in batch:
                parts.append(len(frame).to_bytes(FRAME_HEADER_BYTES, "big"))
                parts.append(frame)
                size_bytes += len(frame)
            try:
                await stream.write(b"".join(parts))
            except Exception:
                self._counters.drop("write_failed", len(batch))
                raise
            self._counters.frames_out(peer, len(batch), size_bytes)

    async def _handle_stream(self, stream: INetStream) -> None:
        """An inbound stream on PROTOCOL_ID: read frames and hand them to asyncio."""
        assert self._inbox is not None
        peer = self._index_by_id.get(stream.muxed_conn.peer_id)
        if peer is None:  # rule: only known validators' peer ids
            self._counters.handshake_failure("unknown_key")
            await stream.reset()
            return
        max_frame_bytes = self._limits.max_frame_bytes
        inbox = self._inbox
        try:
            while True:
                header = await _read_exactly(stream, FRAME_HEADER_BYTES)
                length = int.from_bytes(header, "big")
                if length > max_frame_bytes:  # rule: hard frame limit, before reading
                    self._counters.conn_error("frame_too_large_in")
                    await stream.reset()
                    return
                frame = await _read_exactly(stream, length) if length else b""
                if self._isolated:  # rule: isolation drops all inbound traffic
                    self._counters.drop("isolated_in")
                    continue
                if inbox.full():
                    await inbox.wait_for_room()
                inbox.put((peer, frame))
        except Exception as exc:
            log.debug("node %d <- %d: stream ended: %r", self._index, peer, exc)
