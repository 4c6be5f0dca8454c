"""The transport contract shared by the `tcp` and `libp2p` transports.

A transport moves opaque frames (already-encoded consensus messages) between validators
that know each other's Ed25519 keys. It authenticates every peer against the validator
set, keeps one bounded outbound queue per peer, reconnects with exponential backoff and
drops (and counts) anything malformed. It never interprets frame contents.

Queue policy: when a peer's outbound queue is full, the OLDEST queued frame is dropped
(reason `queue_full`): consensus traffic for the current round is worth more than traffic
for a round that has probably moved on.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from consensus.crypto import DEFAULT_CHAIN_ID, KeyPair

MIB = 1024 * 1024
FRAME_HEADER_BYTES = 4  # big-endian unsigned length prefix


@dataclass(frozen=True)
class PeerAddress:
    """Where a validator listens and the Ed25519 key it must prove it holds."""

    index: int
    host: str
    port: int
    public_key: bytes


@dataclass(frozen=True)
class TransportLimits:
    """Hard bounds of a transport. Sizes in bytes, times in milliseconds."""

    max_frame_bytes: int = 16 * MIB
    peer_queue_frames: int = 4096
    connect_backoff_initial_ms: int = 50
    connect_backoff_max_ms: int = 2000
    handshake_timeout_ms: int = 2000
    # Unauthenticated inbound connections still in their handshake (tcp); excess is closed.
    max_pending_handshakes: int = 64

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1 or self.max_frame_bytes > 2**32 - 1 - 64:
            raise ValueError(f"max_frame_bytes out of range: {self.max_frame_bytes}")
        if self.peer_queue_frames < 1:
            raise ValueError(f"peer_queue_frames must be >= 1, got {self.peer_queue_frames}")
        if not 0 < self.connect_backoff_initial_ms <= self.connect_backoff_max_ms:
            raise ValueError("need 0 < connect_backoff_initial_ms <= connect_backoff_max_ms")
        if self.handshake_timeout_ms < 1:
            raise ValueError("handshake_timeout_ms must be >= 1")
        if self.max_pending_handshakes < 1:
            raise ValueError("max_pending_handshakes must be >= 1")


FrameHandler = Callable[[int, bytes], None]
DEFAULT_LIMITS = TransportLimits()


class Transport(Protocol):
    """What the node runtime uses. See docs/transport.md for the guarantees."""

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
    ) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def send(self, peer: int, frame: bytes) -> None: ...

    def broadcast(self, frame: bytes) -> None: ...

    def set_isolated(self, isolated: bool) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def connected_peers(self) -> set[int]: ...

    def queued(self, peer: int) -> int: ...  # frames waiting in the peer's outbound queue


# Frames dropped, by reason.
DROP_REASONS = (
    "queue_full",  # outbound queue at its bound: the oldest queued frame was dropped
    "frame_too_large_out",  # send() of a frame above max_frame_bytes
    "not_a_peer",  # send() to an index that is not a remote validator (or to self)
    "isolated_out",  # send() while isolated, or queued frames discarded on isolation
    "isolated_in",  # frame received while isolated
    "write_failed",  # frame taken from the queue but its connection failed while writing
    "callback_error",  # on_frame raised; the frame is lost, the connection kept
    "inbox_full",  # unused by tcp; libp2p never drops here (it applies backpressure)
)

# Connections closed after authentication because the peer sent something malformed.
CONN_ERROR_REASONS = (
    "frame_too_large_in",  # length prefix above max_frame_bytes (checked before the body)
    "bad_length",  # length prefix too small to hold an AEAD tag
    "aead_failure",  # frame failed authentication / decryption
    "duplicate",  # a second connection to the same peer lost the tie-break
)

# Inbound or outbound connection attempts that never became authenticated.
HANDSHAKE_FAILURE_REASONS = (
    "unknown_key",  # the remote proved (or claimed) a key that is not a validator's
    "wrong_peer_key",  # the dialed address answered with another key than its validator's
    "bad_handshake",  # malformed hello, wrong magic, bad signature, wrong identity
    "wrong_chain",  # the remote runs another chain id (tcp: refused at the hello;
    # libp2p: it does not speak this chain's protocol id)
    "timeout",  # handshake did not finish within handshake_timeout_ms
    "too_many_pending",  # over max_pending_handshakes unauthenticated connections
    "isolated",  # refused because the transport is isolated
)


# Warnings about peers (a wrong or unknown key): at most one line per peer this often.
PEER_WARNING_INTERVAL_S = 300.0


@dataclass
class PeerCounters:
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    connects: int = 0


class TransportCounters:
    """Counters shared by both transports; thread-safe (libp2p updates them from trio)."""

    def __init__(self, peer_indices: list[int]) -> None:
        self._lock = threading.Lock()
        self.peers = {i: PeerCounters() for i in peer_indices}
        self.drops = dict.fromkeys(DROP_REASONS, 0)
        self.conn_errors = dict.fromkeys(CONN_ERROR_REASONS, 0)
        self.handshake_failures = dict.fromkeys(HANDSHAKE_FAILURE_REASONS, 0)

    def drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.drops[reason] += count

    def conn_error(self, reason: str) -> None:
        with self._lock:
            self.conn_errors[reason] += 1

    def handshake_failure(self, reason: str) -> None:
        with self._lock:
            self.handshake_failures[reason] += 1

    def frame_in(self, peer: int, size_bytes: int) -> None:
        counters = self.peers[peer]
        with self._lock:
            counters.frames_in += 1
            counters.bytes_in += size_bytes

    def frames_out(self, peer: int, count: int, size_bytes: int) -> None:
        counters = self.peers[peer]
        with self._lock:
            counters.frames_out += count
            counters.bytes_out += size_bytes

    def connected(self, peer: int) -> None:
        with self._lock:
            self.peers[peer].connects += 1

    def snapshot(
        self, *, kind: str, index: int, connected: set[int], queued: Mapping[int, int]
    ) -> dict[str, Any]:
        with self._lock:
            return {
                "kind": kind,
                "index": index,
                "connected_peers": sorted(connected),
                "peers": {
                    peer: {
                        "frames_in": c.frames_in,
                        "bytes_in": c.bytes_in,
                        "frames_out": c.frames_out,
                        "bytes_out": c.bytes_out,
                        "connects": c.connects,
                        "queued": queued.get(peer, 0),
                        "connected": peer in connected,
                    }
                    for peer, c in self.peers.items()
                },
                "drops": dict(self.drops),
                "conn_errors": dict(self.conn_errors),
                "handshake_failures": dict(self.handshake_failures),
            }


class PeerQueue:
    """A bounded FIFO of outbound frames for one peer; full -> drop the oldest."""

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self._frames: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> bool:
        """Append `frame`; return False if the oldest frame had to be dropped for it."""
        dropped = False
        if len(self._frames) >= self.max_frames:  # rule: bounded per-peer queue
            self._frames.popleft()
            dropped = True
        self._frames.append(frame)
        return not dropped

    def pop_batch(self, max_frames: int, max_bytes: int) -> list[bytes]:
        """Take up to `max_frames` frames (at least one if any) totalling about `max_bytes`."""
        batch: list[bytes] = []
        size_bytes = 0
        while self._frames and len(batch) < max_frames and size_bytes < max_bytes:
            frame = self._frames.popleft()
            batch.append(frame)
            size_bytes += len(frame)
        return batch

    def clear(self) -> int:
        count = len(self._frames)
        self._frames.clear()
        return count


def validate_config(
    *,
    index: int,
    key: KeyPair,
    listen_port: int,
    peers: Mapping[int, PeerAddress],
) -> dict[int, PeerAddress]:
    """Check a transport's configuration; return the remote peers (self excluded)."""
    if not 0 <= listen_port <= 65535:
        raise ValueError(f"listen_port out of range: {listen_port}")
    if len(key.public) != 32:
        raise ValueError("key must be an Ed25519 key pair")
    seen_keys: set[bytes] = {key.public}
    remote: dict[int, PeerAddress] = {}
    for peer_index, address in peers.items():
        if address.index != peer_index:
            raise ValueError(f"peers[{peer_index}] has index {address.index}")
        if len(address.public_key) != 32:
            raise ValueError(f"peer {peer_index}: public_key must be 32 bytes")
        if peer_index == index:
            if address.public_key != key.public:
                raise ValueError(f"peers[{index}] (self) does not carry this node's key")
            continue
        if address.public_key in seen_keys:  # rule: one key identifies one validator
            raise ValueError(f"peer {peer_index}: public key used twice")
        if not 0 < address.port <= 65535:
            raise ValueError(f"peer {peer_index}: port out of range: {address.port}")
        seen_keys.add(address.public_key)
        remote[peer_index] = address
    return remote


TransportKind = Literal["tcp", "libp2p"]
