"""Transaction forwarding: a node hands the txs it accepts to the next few leaders.

Without it a tx waits in its own node's mempool until that node leads, on average n/2
rounds (docs/performance.md, "Transaction forwarding"). With it, the node that accepts a
tx over RPC (its *origin*) also sends it, in one frame per RPC batch, to the distinct
leaders of the next `fanout` rounds after its current round (itself excluded), so the
next leader usually holds it.

Rules:
- FWD-ORIGIN: the origin keeps the tx in its own (durable) mempool until it is finalized
  and proposes it on its own turn as before; forwarding only adds copies. A crashed,
  partitioned or Byzantine next leader therefore never loses a tx: it is still proposed
  by its origin, by the other forward targets, and by every later leader that holds it.
- FWD-ONCE: only txs accepted over RPC are forwarded; a received forwarded tx is never
  forwarded again (no amplification, no loops). Duplicates are dropped by the receiving
  mempool (by tx id); a tx already finalized is refused there (TX-ONCE); TX-ONCE in the
  ledger keeps a tx that several leaders hold from being finalized twice.
- FWD-BOUND: a frame carries at most `max_frame_txs` txs (a larger batch is split) and a
  target whose outbound transport queue already holds `max_queued_frames` frames, or that
  is not connected, is skipped (backpressure: forwarding is best effort, counted by
  reason). The receiver admits forwarded txs only within its forwarded share of the
  mempool (`Mempool.max_forwarded`), so a flooding peer cannot crowd out local txs.
- FWD-LOAD: a node forwards only while its mempool holds fewer than `max_pending` txs.
  Forwarding buys latency only when the next leader's block has room; under load every
  leader's block is already filled from its own backlog, and a forwarded copy is only
  more work for both nodes (measured: at 10,000 tx/s on a loaded machine, forwarding to
  2 leaders cost 5 % of the finalized rate and doubled p50; docs/performance.md).

Frame: the tag byte `TX_FRAME_TAG`, then a msgpack array of byte strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

TX_FRAME_TAG = 0xF7
DEFAULT_FANOUT = 2
DEFAULT_MAX_QUEUED_FRAMES = 256
DEFAULT_MAX_PENDING = 1_024
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[bytes])


class TxFrameError(ValueError):
    """A tx frame that is not a msgpack array of byte strings within the limits."""


def is_tx_frame(frame: bytes) -> bool:
    return len(frame) > 0 and frame[0] == TX_FRAME_TAG


def encode_tx_frame(txs: Sequence[bytes]) -> bytes:
    return bytes((TX_FRAME_TAG,)) + _ENCODER.encode(list(txs))


def decode_tx_frame(frame: bytes, max_txs: int) -> list[bytes]:
    """The txs of a tx frame; raises TxFrameError (sizes per tx are the mempool's rule)."""
    if not is_tx_frame(frame):
        raise TxFrameError("not a tx frame")
    try:
        txs = _DECODER.decode(memoryview(frame)[1:])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TxFrameError(f"malformed tx frame: {exc}") from None
    if not txs:
        raise TxFrameError("empty tx frame")
    if len(txs) > max_txs:  # FWD-BOUND at the receiver
        raise TxFrameError(f"{len(txs)} txs exceed the frame limit of {max_txs}")
    return txs


class TxForwarder:
    """Sends freshly accepted txs to the leaders of the next `fanout` rounds."""

    def __init__(
        self,
        *,
        index: int,
        leader_of: Callable[[int], int],
        validators: int,
        send_frame: Callable[[int, bytes, str], None] | None,
        transport: Any,
        metrics: Any,
        fanout: int = DEFAULT_FANOUT,
        max_frame_txs: int = 5_000,
        max_queued_frames: int = DEFAULT_MAX_QUEUED_FRAMES,
        max_pending: int = DEFAULT_MAX_PENDING,
    ):
        if fanout < 0 or min(max_frame_txs, max_queued_frames, max_pending) < 1:
            raise ValueError(
                "need fanout >= 0, max_frame_txs, max_queued_frames and max_pending >= 1"
            )
        self.index = index
        self.leader_of = leader_of
        self.validators = validators
        self.send_frame = send_frame
        self.transport = transport
        self.metrics = metrics
        self.fanout = fanout
        self.max_frame_txs = max_frame_txs
        self.max_queued_frames = max_queued_frames
        self.max_pending = max_pending
        self.current_round: Callable[[], int] = lambda: 0

    def targets(self, current_round: int) -> list[int]:
        """The distinct leaders of rounds current+1, current+2, ... (this node excluded),
        at most `fanout` of them; the search stops after n rounds (a full rotation)."""
        chosen: list[int] = []
        for offset in range(1, self.validators + 1):
            if len(chosen) >= self.fanout:
                break
            leader = self.leader_of(current_round + offset)
            if leader != self.index and leader not in chosen:
                chosen.append(leader)
        return chosen

    def forward(self, txs: Sequence[bytes], pending: int = 0) -> int:
        """Forward `txs` (just accepted over RPC; `pending`: the mempool's size now);
        returns the number of frames sent."""
        if not txs or self.fanout == 0 or self.send_frame is None or self.transport is None:
            return 0
        targets = self.targets(self.current_round())
        if not targets:
            return 0
        if pending >= self.max_pending:  # FWD-LOAD
            self.metrics.txs_forwarded.inc(len(txs) * len(targets), result="busy")
            return 0
        connected = self.transport.connected_peers()
        frames = [
            encode_tx_frame(txs[i : i + self.max_frame_txs])
            for i in range(0, len(txs), self.max_frame_txs)
        ]
        sent = 0
        for peer in targets:
            if peer not in connected:
                self.metrics.txs_forwarded.inc(len(txs), result="not_connected")
                continue
            if self.transport.queued(peer) + len(frames) > self.max_queued_frames:
                self.metrics.txs_forwarded.inc(len(txs), result="backpressure")
                continue
            for frame in frames:
                self.send_frame(peer, frame, "TxForward")
            sent += len(frames)
            self.metrics.txs_forwarded.inc(len(txs), result="sent")
        return sent
