"""`libp2p`: py-libp2p (Noise + yamux) in a trio thread, behind the asyncio Transport API.

- Identity: the validator's Ed25519 seed is the libp2p ed25519 key, so the peer id is
  derived from the validator key; Noise proves possession of it on every connection.
- Only Noise is offered (no plaintext/secio/TLS fallback) and only yamux.
- Connections from a peer id that is not a validator are closed (counted `unknown_key`);
  streams from one are reset. No gossipsub: every frame goes on a direct stream.
- One connection per pair: the LOWER index dials (with backoff), the higher waits for it.
  The higher index never dials: it opens its stream on the connection it accepted
  (`SwarmConn.new_stream` + multistream-select), not through `host.new_stream`, which
  dials by itself when it finds no connection.
- The stream protocol id names the chain (`protocol_id(chain_id)`,
  "/sedna/consensus/1/<chain id>"): a node of another chain does not speak it, so its
  streams are never opened (counted `wrong_chain` by the side that tried, which closes
  the connection).
- Per peer, one outbound stream on the chain's protocol id carries 4-byte length-prefixed frames;
  the peer reads them from the stream we opened and writes to us on the one it opened.
- Trio-side waits (for a connection, the end of isolation, queued frames) test a condition
  and sleep on a per-peer `ChangeSignal`, so no wake-up can be lost.
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
from libp2p.peer.peerstore import PeerStoreError
from libp2p.protocol_muxer.exceptions import ProtocolNotSupportedError
from libp2p.protocol_muxer.multiselect_client import MultiselectClient
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from consensus.crypto import DEFAULT_CHAIN_ID, KeyPair, check_chain_id
from node.logs import WarningLimiter
from node.transport.base import (
    DEFAULT_LIMITS,
    FRAME_HEADER_BYTES,
    PEER_WARNING_INTERVAL_S,
    FrameHandler,
    PeerAddress,
    PeerQueue,
    TransportCounters,
    TransportLimits,
    validate_config,
)
from node.transport.bridge import AsyncioInbox, ChangeSignal, TrioThread, TrioWaker

log = logging.getLogger("sedna.transport.libp2p")
# libp2p logs every refused dial at ERROR; our peer loops count them (dial_failures).
logging.getLogger("libp2p.transport.tcp.tcp").setLevel(logging.CRITICAL)

PROTOCOL_PREFIX = "/sedna/consensus/1"


def protocol_id(chain_id: str = DEFAULT_CHAIN_ID) -> TProtocol:
    """The stream protocol of one chain (rule WRONG-CHAIN: one network per protocol id)."""
    return TProtocol(f"{PROTOCOL_PREFIX}/{check_chain_id(chain_id)}")


PROTOCOL_ID = protocol_id()  # the default chain's
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_WRITE_BATCH_FRAMES = 256
_WRITE_BATCH_BYTES = 1024 * 1024
_DIAL_DELAY_S = 0.5  # slack for libp2p's fixed 250 ms dial delay, on top of the handshake
_CLOSE_TIMEOUT_S = 1.0
_DIAL_LINGER_S = 30.0  # bound on a dial still running after its connection was accepted


def peer_id_for(public_key: bytes) -> ID:
    """The libp2p peer id of a validator's Ed25519 public key."""
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key))


class _StreamClosed(Exception):
    pass


class _NoConnection(Exception):
    pass


async def _read_exactly(stream: INetStream, size_bytes: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size_bytes:  # bounded: each pass reads >= 1 byte or raises
        chunk = await stream.read(size_bytes - len(buffer))
        if not chunk:
            raise _StreamClosed
        buffer += chunk
    return bytes(buffer)


async def _reset_quietly(stream: INetStream) -> None:
    """Reset `stream`, shielded from cancellation, bounded, ignoring errors."""
    with trio.move_on_after(_CLOSE_TIMEOUT_S) as scope, contextlib.suppress(Exception):
        scope.shield = True
        await stream.reset()


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
        chain_id: str = DEFAULT_CHAIN_ID,
    ) -> None:
        self._remote = validate_config(index=index, key=key, listen_port=listen_port, peers=peers)
        self._protocol = protocol_id(chain_id)
        self._index = index
        self._key = key
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._on_frame = on_frame
        self._limits = limits
        self._peer_ids = {peer: peer_id_for(a.public_key) for peer, a in self._remote.items()}
        self._index_by_id = {pid: peer for peer, pid in self._peer_ids.items()}
        self._addrs = {
            peer: multiaddr.Multiaddr(f"/ip4/{a.host}/tcp/{a.port}")
            for peer, a in self._remote.items()
        }
        self._counters = TransportCounters(sorted(self._remote))
        self._warnings = WarningLimiter(PEER_WARNING_INTERVAL_S)  # used from the trio thread only
        self._dial_failures = dict.fromkeys(self._remote, 0)
        self._streams_opened = dict.fromkeys(self._remote, 0)  # our outbound streams
        # Shared between threads, guarded by _lock: queues, live connections, isolation.
        self._lock = threading.Lock()
        self._queues = {peer: PeerQueue(limits.peer_queue_frames) for peer in self._remote}
        # Per peer: connections accepted by _on_connected, not yet reported disconnected.
        self._live: dict[int, list[INetConn]] = {peer: [] for peer in self._remote}
        # Connections that carried a stream of this chain's protocol (either direction):
        # only these make a peer "connected" (rule WRONG-CHAIN: a node of another chain,
        # whose connections are accepted and then closed, is never reported as a peer).
        # Keyed by the muxed connection (what an inbound stream names).
        self._chain_conns: set[Any] = set()
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
        # Per peer: notified on queued frames, connection changes and isolation changes.
        self._signals: dict[int, ChangeSignal] = {}
        self._multiselect = MultiselectClient()
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
        """Peers with an open connection that carried a stream of this chain's protocol
        (a closing one no longer counts; nor does one that never proved the chain)."""
        with self._lock:
            return {
                peer
                for peer, conns in self._live.items()
                if any(
                    not conn.is_closed and conn.muxed_conn in self._chain_conns
                    for conn in conns
                )
            }

    def _mark_chain_conn(self, muxed_conn: Any) -> None:
        """`muxed_conn` carried a stream of this chain's protocol: its peer is connected."""
        with self._lock:
            self._chain_conns.add(muxed_conn)

    def queued(self, peer: int) -> int:
        with self._lock:
            queue = self._queues.get(peer)
            return 0 if queue is None else len(queue)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            queued = {peer: len(queue) for peer, queue in self._queues.items()}
            isolated = self._isolated
        snapshot = self._counters.snapshot(
            kind=self.kind, index=self._index, connected=self.connected_peers(), queued=queued
        )
        for peer, failures in self._dial_failures.items():
            snapshot["peers"][peer]["dial_failures"] = failures
            snapshot["peers"][peer]["streams_opened"] = self._streams_opened[peer]
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
        # Created before the first checkpoint, so before any run_sync_soon callback runs.
        self._signals = {peer: ChangeSignal() for peer in self._remote}
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
        host.set_stream_handler(self._protocol, self._handle_stream)
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
        """Trio side of set_isolated: on isolation close every connection; wake all peers.

        Each connection is closed on its own (`SwarmConn.close`), which removes it from the
        swarm and notifies `disconnected` for it; `host.disconnect` would also drop, from the
        swarm's map, a connection that arrived while the close was in progress.
        """
        if isolated and self._nursery is not None and self._host is not None:
            for conn in self._host.get_network().get_connections():
                self._nursery.start_soon(self._close_conn, conn)
        for signal in self._signals.values():
            signal.notify()  # writers stop on isolation; loops resume after it

    async def _close_conn(self, conn: INetConn) -> None:
        try:
            await conn.close()
        except Exception as exc:
            log.debug("closing connection: %r", exc)

    def _on_connected(self, conn: INetConn) -> None:
        peer = self._index_by_id.get(conn.muxed_conn.peer_id)
        reason = None
        if peer is None:  # rule: only known validators' peer ids
            reason = "unknown_key"
        elif self._isolated:  # rule: isolation refuses connections
            reason = "isolated"
        if reason is not None:
            self._counters.handshake_failure(reason)
            if reason == "unknown_key":
                self._warnings.warn(
                    "unknown_peer_key",
                    str(conn.muxed_conn.peer_id),
                    peer_id=str(conn.muxed_conn.peer_id),
                )
            if self._nursery is not None:
                self._nursery.start_soon(self._close_conn, conn)
            return
        assert peer is not None
        with self._lock:
            # Closed ones go now: their `disconnected` notice lags the close by >= 100 ms.
            live = [c for c in self._live[peer] if not c.is_closed]
            for closed in self._live[peer]:
                if closed.is_closed:
                    self._chain_conns.discard(closed.muxed_conn)
            live.append(conn)
            self._live[peer] = live
        self._counters.connected(peer)
        self._signals[peer].notify()

    def _on_disconnected(self, conn: INetConn) -> None:
        peer = self._index_by_id.get(conn.muxed_conn.peer_id)
        if peer is None:
            return
        with self._lock:
            self._live[peer] = [c for c in self._live[peer] if c is not conn]
            self._chain_conns.discard(conn.muxed_conn)
        self._signals[peer].notify()

    def _live_conn(self, peer: int) -> INetConn | None:
        """The newest accepted connection to `peer` that is not closed, if any."""
        with self._lock:
            for conn in reversed(self._live[peer]):
                if not conn.is_closed:
                    return conn
        return None

    def _wake_writer(self, peer: int) -> None:
        self._signals[peer].notify()

    def _backoff_s(self, backoff_ms: int) -> float:
        return backoff_ms * (0.75 + 0.5 * self._rng.random()) / 1000.0

    async def _peer_loop(self, peer: int) -> None:
        """Keep one outbound stream to `peer` and pump its queue into it, until cancelled."""
        signal = self._signals[peer]
        backoff_ms = self._limits.connect_backoff_initial_ms
        while True:  # bounded by stop(): the loops' nursery is cancelled
            await signal.wait_for(lambda: not self._isolated)
            try:
                stream = await self._open_outbound(peer)
            except Exception as exc:
                log.debug("node %d -> %d: no stream: %r", self._index, peer, exc)
                self._dial_failures[peer] += 1
                await trio.sleep(self._backoff_s(backoff_ms))
                backoff_ms = min(2 * backoff_ms, self._limits.connect_backoff_max_ms)
                continue
            backoff_ms = self._limits.connect_backoff_initial_ms
            self._streams_opened[peer] += 1
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_stream, stream, nursery.cancel_scope)
                    await self._pump(peer, stream)
                    nursery.cancel_scope.cancel()  # the pump returned: isolated
            except Exception as exc:
                log.debug("node %d -> %d: stream ended: %r", self._index, peer, exc)
            finally:
                await _reset_quietly(stream)

    async def _open_outbound(self, peer: int) -> INetStream:
        """Get a connection to `peer` (dial it if we are the lower index), open our stream."""
        timeout_s = self._limits.handshake_timeout_ms / 1000.0
        if self._index < peer:  # rule: the lower index dials
            await self._dial(peer, timeout_s + _DIAL_DELAY_S)
            # No accepted connection now means it was refused or already lost (e.g. the
            # peer is isolated); back off.
            conn = None if self._isolated else self._live_conn(peer)
            if conn is None:
                raise _NoConnection(f"no open connection to {peer} after dialing")
        else:  # rule: the higher index never dials; it waits for the lower one's dial
            conn = await self._await_conn(peer)
        with trio.fail_after(timeout_s):
            return await self._open_stream(conn, timeout_s)

    async def _dial(self, peer: int, timeout_s: float) -> None:
        """Dial `peer` at its configured address, from a clean swarm state.

        Returns once a connection to `peer` is accepted or the dial ended without error;
        raises if the dial failed or nothing was accepted within `timeout_s`. The dial runs
        as its own task and is cancelled only if it produced no accepted connection:
        `Swarm.add_conn` notifies `connected` inside a nursery and closes the connection if
        cancelled before returning, which would close a connection both sides already
        accepted and lose what the peer wrote into it.
        """
        if self._live_conn(peer) is not None:
            return
        assert self._nursery is not None
        peer_id = self._peer_ids[peer]
        peerstore = self._host.get_peerstore()
        # The configured address is the only one we dial (identify may have added others
        # with a TTL); TTL 0 never expires.
        with contextlib.suppress(PeerStoreError):
            peerstore.clear_addrs(peer_id)
        peerstore.add_addrs(peer_id, [self._addrs[peer]], 0)
        network = self._host.get_network()
        network.unblock_peer(peer_id)  # our backoff replaces the swarm's negative cache
        signal = self._signals[peer]
        scope = trio.CancelScope()
        failures: list[Exception] = []
        finished = trio.Event()

        async def dial() -> None:
            try:
                with scope:
                    # Unlike host.connect, dial_peer ignores connections that are closed but
                    # not yet removed from the swarm's map, and dials instead of returning.
                    await network.dial_peer(peer_id)
            except Exception as exc:
                failures.append(exc)
            finally:
                finished.set()
                signal.notify()

        self._nursery.start_soon(dial)
        with trio.move_on_after(timeout_s):
            await signal.wait_for(lambda: finished.is_set() or self._live_conn(peer) is not None)
        if self._live_conn(peer) is not None:
            # A dial still finishing is left alone, within a generous bound: a stuck one
            # would also block the next (dial_peer waits for the dial in flight).
            scope.deadline = min(scope.deadline, trio.current_time() + _DIAL_LINGER_S)
            return
        scope.cancel()  # rule: a dial bounded by timeout_s unless it produced a connection
        if failures:
            raise failures[0]
        if not finished.is_set():
            raise trio.TooSlowError(f"no connection to {peer} within {timeout_s:.2f} s")

    async def _await_conn(self, peer: int) -> INetConn:
        """Wait for an accepted, open connection to `peer` while not isolated (unbounded)."""
        found: list[INetConn] = []

        def ready() -> bool:
            conn = None if self._isolated else self._live_conn(peer)
            if conn is not None:
                found.append(conn)
            return conn is not None

        await self._signals[peer].wait_for(ready)
        return found[-1]

    async def _open_stream(self, conn: INetConn, timeout_s: float) -> INetStream:
        """Open a stream of the chain's protocol on `conn` itself (never on a connection
        libp2p dials)."""
        try:
            stream = await conn.new_stream()
        except Exception:
            # rule: a connection that cannot open a stream is dead (e.g. its socket broke
            # and libp2p has not noticed); close it so the next attempt gets a fresh one.
            if self._nursery is not None:
                self._nursery.start_soon(self._close_conn, conn)
            raise
        communicator = MultiselectCommunicator(stream)
        try:
            await self._multiselect.handshake(communicator)
            protocol = await self._multiselect.try_select(communicator, self._protocol)
        except ProtocolNotSupportedError:
            # rule WRONG-CHAIN: the peer does not speak this chain's protocol id
            self._counters.handshake_failure("wrong_chain")
            peer = self._index_by_id.get(conn.muxed_conn.peer_id)
            self._warnings.warn(
                "peer_wrong_chain",
                str(peer),
                peer=peer,
                detail=f"the peer does not speak {self._protocol}",
                hint="the two nodes' consensus.chain_id differ: they are other networks",
            )
            await _reset_quietly(stream)
            if self._nursery is not None:  # a peer of another chain keeps no connection
                self._nursery.start_soon(self._close_conn, conn)
            raise
        except BaseException:
            await _reset_quietly(stream)
            raise
        stream.set_protocol(protocol)
        self._mark_chain_conn(conn.muxed_conn)
        return stream

    async def _watch_stream(self, stream: INetStream, scope: trio.CancelScope) -> None:
        """End the pump as soon as the peer resets or closes our outbound stream.

        Without this, the pump only learns of a reset on its next write, and the frame of
        that write is lost. The peer never writes on this stream; any byte ends it too.
        A closed connection resets its streams, so this also ends the pump then.
        """
        try:
            await stream.read(1)
        except Exception as exc:
            log.debug("node %d: outbound stream ended: %r", self._index, exc)
        scope.cancel()

    async def _pump(self, peer: int, stream: INetStream) -> None:
        """Write `peer`'s queue into `stream` in batches; return when isolated."""
        queue = self._queues[peer]
        signal = self._signals[peer]
        while True:  # ends on isolation, a failed write, or the watcher's cancel
            await signal.wait_for(lambda: self._isolated or len(queue) > 0)
            with self._lock:
                if self._isolated:
                    return
                batch = queue.pop_batch(_WRITE_BATCH_FRAMES, _WRITE_BATCH_BYTES)
            if not batch:
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
        """An inbound stream of the chain's protocol: hand its frames to asyncio; reset it at the end."""
        assert self._inbox is not None
        peer = self._index_by_id.get(stream.muxed_conn.peer_id)
        if peer is None:  # rule: only known validators' peer ids
            self._counters.handshake_failure("unknown_key")
            await stream.reset()
            return
        self._mark_chain_conn(stream.muxed_conn)
        max_frame_bytes = self._limits.max_frame_bytes
        inbox = self._inbox
        try:
            while True:
                header = await _read_exactly(stream, FRAME_HEADER_BYTES)
                length = int.from_bytes(header, "big")
                if length > max_frame_bytes:  # rule: hard frame limit, before reading
                    self._counters.conn_error("frame_too_large_in")
                    return  # the reset below tells the sender to reopen
                frame = await _read_exactly(stream, length) if length else b""
                if self._isolated:  # rule: isolation drops all inbound traffic
                    self._counters.drop("isolated_in")
                    continue
                if inbox.full():
                    await inbox.wait_for_room()
                inbox.put((peer, frame))
        except Exception as exc:
            log.debug("node %d <- %d: stream ended: %r", self._index, peer, exc)
        finally:
            # libp2p leaves a stream open when its handler returns; the sender's watcher
            # must see the end (and yamux drop its state) whatever ended the reader.
            await _reset_quietly(stream)
