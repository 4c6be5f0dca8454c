"""`tcp`: plain asyncio TCP with an Ed25519-bound key exchange and AEAD frames.

One authenticated connection per validator pair. Both sides dial whenever they have no
connection to a peer. The responder confirms a connection with an empty first frame
before either side uses it; when both dial at once, the responder with the LOWER index
refuses the inbound connection (its own dial wins), so a duplicate never carries frames.
A newer connection from the same dialer replaces the older one (the dialer only redials
after it lost its connection, e.g. because it restarted). The event loop is whatever the caller
runs (asyncio or uvloop); this module installs no loop policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any

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
from node.transport.handshake import (
    FINISH_BYTES,
    HELLO_BYTES,
    REPLY_BYTES,
    FrameError,
    HandshakeError,
    Initiator,
    Responder,
    Session,
    check_frame_length,
)

log = logging.getLogger("sedna.transport.tcp")

_STREAM_LIMIT_BYTES = 1024 * 1024  # StreamReader buffer before it pauses the socket
_WRITE_BATCH_FRAMES = 256  # frames sealed per writer wake-up before awaiting drain
_WRITE_BATCH_BYTES = 1024 * 1024


class _Connection:
    """An authenticated connection to one peer and its two tasks."""

    __slots__ = ("closed", "dialer", "peer", "reader", "session", "tasks", "writer")

    def __init__(
        self,
        peer: int,
        dialer: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session,
    ) -> None:
        self.peer = peer
        self.dialer = dialer
        self.reader = reader
        self.writer = writer
        self.session = session
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False


class TcpTransport:
    """Asyncio TCP transport. See node/transport/base.py for the contract."""

    kind = "tcp"

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
        self._chain_id = check_chain_id(chain_id)
        self._index = index
        self._key = key
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._on_frame = on_frame
        self._limits = limits
        self._known = {address.public_key: peer for peer, address in self._remote.items()}
        self._queues = {peer: PeerQueue(limits.peer_queue_frames) for peer in self._remote}
        self._wake = {peer: asyncio.Event() for peer in self._remote}
        self._disconnected = {peer: asyncio.Event() for peer in self._remote}
        for event in self._disconnected.values():
            event.set()
        self._conns: dict[int, _Connection] = {}
        self._counters = TransportCounters(sorted(self._remote))
        self._warnings = WarningLimiter(PEER_WARNING_INTERVAL_S)
        self._dial_failures = dict.fromkeys(self._remote, 0)
        self._isolated = False
        self._not_isolated = asyncio.Event()
        self._not_isolated.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending_handshakes = 0
        self._dialing: set[int] = set()  # peers with an outbound dial in flight
        self._running = False
        self._rng = random.Random()
        self.bound_port: int | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, then dial every peer (forever, with backoff, until stop)."""
        if self._running:
            raise RuntimeError("transport already started")
        self._server = await asyncio.start_server(
            self._accept, self._listen_host, self._listen_port, limit=_STREAM_LIMIT_BYTES
        )
        self.bound_port = self._server.sockets[0].getsockname()[1]
        self._running = True
        for peer in self._remote:
            self._spawn(self._dial_loop(peer))

    async def stop(self) -> None:
        """Close the listener and every connection; idempotent."""
        if not self._running:
            return
        self._running = False
        assert self._server is not None
        self._server.close()
        for conn in list(self._conns.values()):
            self._close_conn(conn, None)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    # ---- the runtime's API -------------------------------------------------------------

    def send(self, peer: int, frame: bytes) -> None:
        """Queue `frame` for `peer` without blocking; drops are counted, never raised."""
        queue = self._queues.get(peer)
        if queue is None:  # rule: only remote validators are addressable
            self._counters.drop("not_a_peer")
            return
        if len(frame) > self._limits.max_frame_bytes:  # rule: hard frame limit (outbound)
            self._counters.drop("frame_too_large_out")
            return
        if self._isolated:  # rule: isolation drops all outbound traffic
            self._counters.drop("isolated_out")
            return
        if not queue.push(frame):
            self._counters.drop("queue_full")
        self._wake[peer].set()

    def broadcast(self, frame: bytes) -> None:
        for peer in self._remote:
            self.send(peer, frame)

    def set_isolated(self, isolated: bool) -> None:
        """Isolate: drop queued and new traffic both ways, close connections, stop dialing."""
        if isolated == self._isolated:
            return
        self._isolated = isolated
        if not isolated:
            self._not_isolated.set()
            return
        self._not_isolated.clear()
        for queue in self._queues.values():
            self._counters.drop("isolated_out", queue.clear())
        for conn in list(self._conns.values()):
            self._close_conn(conn, None)

    def connected_peers(self) -> set[int]:
        return set(self._conns)

    def queued(self, peer: int) -> int:
        queue = self._queues.get(peer)
        return 0 if queue is None else len(queue)

    def stats(self) -> dict[str, Any]:
        snapshot = self._counters.snapshot(
            kind=self.kind,
            index=self._index,
            connected=set(self._conns),
            queued={peer: len(queue) for peer, queue in self._queues.items()},
        )
        for peer, failures in self._dial_failures.items():
            snapshot["peers"][peer]["dial_failures"] = failures
        snapshot["isolated"] = self._isolated
        return snapshot

    # ---- connections -------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _backoff_s(self, backoff_ms: int) -> float:
        return backoff_ms * (0.75 + 0.5 * self._rng.random()) / 1000.0

    async def _dial_loop(self, peer: int) -> None:
        address = self._remote[peer]
        backoff_ms = self._limits.connect_backoff_initial_ms
        while self._running:
            await self._not_isolated.wait()
            await self._disconnected[peer].wait()
            if self._isolated or peer in self._conns:
                continue
            if await self._dial_once(peer, address):
                backoff_ms = self._limits.connect_backoff_initial_ms
                continue
            self._dial_failures[peer] += 1
            await asyncio.sleep(self._backoff_s(backoff_ms))
            backoff_ms = min(2 * backoff_ms, self._limits.connect_backoff_max_ms)

    async def _dial_once(self, peer: int, address: PeerAddress) -> bool:
        writer: asyncio.StreamWriter | None = None
        self._dialing.add(peer)
        try:
            async with asyncio.timeout(self._limits.handshake_timeout_ms / 1000.0):
                reader, writer = await asyncio.open_connection(
                    address.host, address.port, limit=_STREAM_LIMIT_BYTES
                )
                initiator = Initiator(self._key, address.public_key, self._chain_id)
                writer.write(initiator.hello)
                reply = await reader.readexactly(REPLY_BYTES)
                finish, session = initiator.on_reply(reply)
                writer.write(finish)
                # The responder accepts with an empty first frame, or closes (duplicate).
                header = await reader.readexactly(FRAME_HEADER_BYTES)
                length = check_frame_length(header, 0)
                if session.recv.open(header, await reader.readexactly(length)) != b"":
                    raise HandshakeError("bad_handshake", "accept frame is not empty")
        except HandshakeError as exc:
            log.debug("dial %d: %s", peer, exc)
            self._counters.handshake_failure(exc.reason)
            if exc.reason == "wrong_peer_key":
                self._warnings.warn(
                    "peer_key_mismatch",
                    str(peer),
                    peer=peer,
                    address=f"{address.host}:{address.port}",
                    configured_key=address.public_key.hex()[:16],
                    presented_key=exc.detail,
                    hint="the validators entries of the two nodes' configs disagree",
                )
            elif exc.reason == "wrong_chain":
                self._warnings.warn(
                    "peer_wrong_chain",
                    str(peer),
                    peer=peer,
                    address=f"{address.host}:{address.port}",
                    detail=exc.detail,
                    hint="the two nodes' consensus.chain_id differ: they are other networks",
                )
        except FrameError as exc:
            log.debug("dial %d: bad accept frame: %s", peer, exc)
            self._counters.handshake_failure("bad_handshake")
        except TimeoutError:
            self._counters.handshake_failure("timeout")
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.debug("dial %d failed: %r", peer, exc)  # refused, or closed: a duplicate
        else:
            return self._adopt(peer, self._index, reader, writer, session)
        finally:
            self._dialing.discard(peer)
        if writer is not None:
            writer.transport.abort()
        return False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._isolated or not self._running:  # rule: isolation refuses inbound peers
            self._counters.handshake_failure("isolated")
            writer.transport.abort()
            return
        if self._pending_handshakes >= self._limits.max_pending_handshakes:  # rule: bounded
            self._counters.handshake_failure("too_many_pending")
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._pending_handshakes += 1
        responder = Responder(self._key, self._known, self._chain_id)
        try:
            async with asyncio.timeout(self._limits.handshake_timeout_ms / 1000.0):
                hello = await reader.readexactly(HELLO_BYTES)
                writer.write(responder.on_hello(hello))
                finish = await reader.readexactly(FINISH_BYTES)
                session = responder.on_finish(finish)
        except HandshakeError as exc:
            log.debug("inbound handshake: %s", exc)
            self._counters.handshake_failure(exc.reason)
            if exc.answer:  # the wrong_chain refusal: tell the dialer why, then close
                remote = writer.get_extra_info("peername")
                host = str(remote[0]) if remote else "?"
                self._warnings.warn("peer_wrong_chain", host, remote_host=host, detail=exc.detail)
                writer.write(exc.answer)
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(self._limits.handshake_timeout_ms / 1000.0):
                        await writer.drain()
                writer.close()
                return
            if exc.reason == "unknown_key":
                remote = writer.get_extra_info("peername")
                host = str(remote[0]) if remote else "?"
                self._warnings.warn(
                    "unknown_peer_key", host, remote_host=host, presented_key=exc.detail
                )
        except TimeoutError:
            self._counters.handshake_failure("timeout")
        except (OSError, asyncio.IncompleteReadError):
            self._counters.handshake_failure("bad_handshake")  # closed mid-handshake
        else:
            peer = responder.peer_index
            if self._inbound_loses(peer):
                # rule: simultaneous dials -> the connection dialed by the lower index wins;
                # refused before any frame is sent on it, so nothing is lost.
                self._counters.conn_error("duplicate")
            else:
                writer.writelines(session.send.seal(b""))  # accept
                self._adopt(peer, peer, reader, writer, session)
                return  # _adopt keeps the connection or aborts it itself
        finally:
            self._pending_handshakes -= 1
            self._tasks.discard(task)
        writer.transport.abort()

    def _inbound_loses(self, peer: int) -> bool:
        """True if an inbound connection from `peer` must yield to our own dial."""
        if self._index > peer:
            return False  # the peer is the lower index: its dial wins
        existing = self._conns.get(peer)
        return peer in self._dialing or (existing is not None and existing.dialer == self._index)

    def _adopt(
        self,
        peer: int,
        dialer: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session,
    ) -> bool:
        """Make an accepted connection the peer's connection (replacing any older one)."""
        if self._isolated or not self._running:  # rule: isolation refuses connections
            self._counters.handshake_failure("isolated")
            writer.transport.abort()
            return False
        existing = self._conns.get(peer)
        if existing is not None:
            if existing.dialer != dialer and existing.dialer == min(self._index, peer):
                # Safety net (should not happen after _inbound_loses): lower index wins.
                self._counters.conn_error("duplicate")
                writer.transport.abort()
                return False
            # A newer connection from the same dialer replaces the older one: the dialer
            # only redials after it lost its connection.
            self._close_conn(existing, None)
        conn = _Connection(peer, dialer, reader, writer, session)
        self._conns[peer] = conn
        self._disconnected[peer].clear()
        self._counters.connected(peer)
        conn.tasks = [self._spawn(self._read_loop(conn)), self._spawn(self._write_loop(conn))]
        log.debug("node %d connected to %d (dialer %d)", self._index, peer, dialer)
        return True

    def _close_conn(self, conn: _Connection, reason: str | None) -> None:
        if conn.closed:
            return
        conn.closed = True
        if reason is not None:
            self._counters.conn_error(reason)
        conn.writer.transport.abort()
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()
        if self._conns.get(conn.peer) is conn:
            del self._conns[conn.peer]
            self._disconnected[conn.peer].set()
        log.debug("node %d disconnected from %d (%s)", self._index, conn.peer, reason)

    async def _read_loop(self, conn: _Connection) -> None:
        reader = conn.reader
        open_frame = conn.session.recv.open
        peer = conn.peer
        max_frame_bytes = self._limits.max_frame_bytes
        try:
            while not conn.closed:
                header = await reader.readexactly(FRAME_HEADER_BYTES)
                length = check_frame_length(header, max_frame_bytes)
                frame = open_frame(header, await reader.readexactly(length))
                if self._isolated:  # rule: isolation drops all inbound traffic
                    self._counters.drop("isolated_in")
                    continue
                self._counters.frame_in(peer, len(frame))
                try:
                    self._on_frame(peer, frame)
                except Exception:
                    log.exception("on_frame raised for a frame from %d", peer)
                    self._counters.drop("callback_error")
        except FrameError as exc:
            log.debug("peer %d sent a malformed frame: %s", peer, exc)
            self._close_conn(conn, exc.reason)
        except (OSError, asyncio.IncompleteReadError):
            self._close_conn(conn, None)

    async def _write_loop(self, conn: _Connection) -> None:
        queue = self._queues[conn.peer]
        wake = self._wake[conn.peer]
        seal = conn.session.send.seal
        writer = conn.writer
        try:
            while not conn.closed:
                if not len(queue):
                    wake.clear()
                    await wake.wait()
                    continue
                batch = queue.pop_batch(_WRITE_BATCH_FRAMES, _WRITE_BATCH_BYTES)
                parts: list[bytes] = []
                size_bytes = 0
                for frame in batch:
                    parts.extend(seal(frame))
                    size_bytes += len(frame)
                writer.writelines(parts)
                self._counters.frames_out(conn.peer, len(batch), size_bytes)
                await writer.drain()
        except (OSError, RuntimeError):
            self._close_conn(conn, None)
