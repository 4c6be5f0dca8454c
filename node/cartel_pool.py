"""TEST ONLY: the side channel of a `withhold_bundles` cartel on a testnet.

A cartel of validator processes shares what it holds over a real TCP connection, so what
the cartel could decode privately is measured on what really crossed the channel, not
assumed. Two ends:

- `PoolHub` (run by the launcher, `node/tools/testnet.py`): an asyncio TCP server every
  cartel member connects to. It relays each member's reports to every other member and
  records them: the bundles withheld (lane, slot, payload, index) and, per payload, the
  first slot a member decoded it privately.
- `CartelMember` (in each cartel process, installed by `node/faults.py`): the lane's
  `CartelPool` and `WithholdPolicy` (the pure strategies of `consensus.lanes.cartel`
  decide), reporting every holding (`Hold`, a bundle this lane admitted) and every
  withheld bundle (`Withheld`, the bundle itself) to the hub, and applying the peers'
  reports to its own book and pool. After the decode tracker handles a finalized height h,
  it tries to decode each pooled payload the public chain has not decided yet from the
  public bundles plus the pooled ones of slots <= h (the netsim definition of the
  cartel's decode slot); the first success is reported (`Decoded`) with slot h. A
  payload the public chain decides before that has its private slot = its public slot.

Frames: a 4-byte big-endian length, then one msgpack message (`Hello` first). Every
member decides from its own copy of the holdings, so members agree as long as the
holdings of a slot reach them before they seal it (they are reported at admission, slots
ahead of the seal); a late report changes no decision already taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec

from consensus.lanes.cartel import CartelStrategy
from consensus.lanes.encoding import decode_payload, layout_of
from consensus.lanes.params import LaneParams
from consensus.lanes.proposer import CartelPool, WithholdPolicy, entry_key, max_entry_bytes
from consensus.lanes.wire import LaneEntry, LanePayloadError, decode_lane_entry, encode

MAX_FRAME_BYTES = 256 * 1024
MAX_QUEUED_FRAMES = 100_000  # a member's outbound queue (frames beyond it are counted, lost)
MAX_RECORDS = 1_000_000  # withheld bundles the hub records
MAX_TRACKED_PAYLOADS = 65_536  # payloads a member tracks for its private decode
CONNECT_RETRY_S = 0.2
_LENGTH = struct.Struct(">I")


class Hello(msgspec.Struct, tag="hello", frozen=True):
    lane: int


class Hold(msgspec.Struct, tag="hold", frozen=True):
    """Lane `lane` admitted bundle `index` of payload `cid` (κ `kappa`) for `slot`."""

    lane: int
    cid: bytes
    kappa: int
    slot: int
    index: int


class Withheld(msgspec.Struct, tag="withheld", frozen=True):
    """Lane `lane` withheld this entry (an encoded `LaneEntry`) at `slot`."""

    lane: int
    slot: int
    entry: bytes


class Decoded(msgspec.Struct, tag="decoded", frozen=True):
    """Lane `lane` decoded payload `cid` privately once slot `slot` was final."""

    lane: int
    cid: bytes
    slot: int


Frame = Hello | Hold | Withheld | Decoded
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


def pack(message: Frame) -> bytes:
    body = _encoder.encode(message)
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """One frame; raises ValueError on a bad one, IncompleteReadError at the end."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        return _decoder.decode(await reader.readexactly(length))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"bad frame: {exc}") from None


# --------------------------------------------------------------------------- the hub


class PoolHub:
    """The cartel's relay (launcher side): relays reports, records what was withheld."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.members: dict[int, asyncio.StreamWriter] = {}
        self.withheld: list[tuple[int, int, bytes, int]] = []  # (lane, slot, cid, index)
        self.holds = 0
        self.private_slot: dict[bytes, int] = {}  # cid -> first slot a member decoded it
        self.refused = 0  # bad frames and connections that did not say Hello
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for writer in list(self.members.values()):
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lane: int | None = None
        try:
            hello = await read_frame(reader)
            if not isinstance(hello, Hello):
                self.refused += 1
                return
            lane = hello.lane
            self.members[lane] = writer
            while True:
                frame = await read_frame(reader)
                if isinstance(frame, Hello) or getattr(frame, "lane", lane) != lane:
                    self.refused += 1  # a member reports for its own lane only
                    continue
                self._record(frame)
                data = pack(frame)
                for peer, other in list(self.members.items()):
                    if peer != lane and not isinstance(frame, Decoded):
                        other.write(data)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the member left, or the hub is closing
        except ValueError:
            self.refused += 1
        finally:
            if lane is not None and self.members.get(lane) is writer:
                del self.members[lane]
            writer.close()

    def _record(self, frame: Frame) -> None:
        if isinstance(frame, Hold):
            self.holds += 1
        elif isinstance(frame, Withheld) and len(self.withheld) < MAX_RECORDS:
            try:
                entry = decode_lane_entry(frame.entry, MAX_FRAME_BYTES)
            except LanePayloadError:
                self.refused += 1
                return
            cid, index = entry_key(entry)
            self.withheld.append((frame.lane, frame.slot, cid, index))
        elif isinstance(frame, Decoded):
            known = self.private_slot.get(frame.cid)
            if known is None or frame.slot < known:
                self.private_slot[frame.cid] = frame.slot


# --------------------------------------------------------------------------- a member


class SharedPool(CartelPool):
    """A member's copy of the cartel pool: its own withheld bundles are reported."""

    def __init__(self, member: CartelMember, strategy: CartelStrategy):
        super().__init__(strategy=strategy)
        self.member = member
        self.slots: dict[bytes, dict[int, int]] = {}  # cid -> index -> slot withheld

    def add(self, lane: int, slot: int, entry: LaneEntry) -> None:
        super().add(lane, slot, entry)
        cid, index = entry_key(entry)
        self.slots.setdefault(cid, {})[index] = slot
        self.member.send(Withheld(lane, slot, encode(entry)))

    def pool_peer(self, slot: int, entry: LaneEntry) -> None:
        """A peer's withheld bundle (from the side channel)."""
        cid, index = entry_key(entry)
        self._bundles.setdefault(cid, {})[index] = entry.bundle
        self.slots.setdefault(cid, {})[index] = slot
        kappa = entry.bundle.commitment.kappa
        self.book.withhold(slot, [(cid, kappa, index)])


class SharedPolicy(WithholdPolicy):
    """Withhold what the strategy says; report every holding to the cartel."""

    member: CartelMember | None = None

    def observe(self, slot: int, entry: LaneEntry) -> None:
        super().observe(slot, entry)
        if self.member is not None and self.withholds(entry):
            cid, index = entry_key(entry)
            kappa = entry.bundle.commitment.kappa
            self.member.send(Hold(self.member.lane, cid, kappa, slot, index))


class CartelMember:
    """One cartel process's end of the side channel (node side)."""

    def __init__(
        self,
        lane: int,
        params: LaneParams,
        strategy: CartelStrategy,
        address: tuple[str, int],
        logger: logging.Logger | None = None,
    ):
        self.lane = lane
        self.params = params
        self.address = address
        self.log = logger or logging.getLogger("sedna.cartel")
        self.pool = SharedPool(self, strategy)
        self.policy = SharedPolicy(self.pool)
        self.policy.member = self
        self.queue: asyncio.Queue[bytes] | None = None
        self._pending: list[bytes] = []  # frames sent before the loop runs
        self.lost = 0  # frames dropped by a full queue
        self.refused = 0  # bad frames from the hub
        self.decoded: OrderedDict[bytes, int] = OrderedDict()  # cid -> private slot
        self._tried: dict[bytes, int] = {}  # cid -> bundles at the last failed attempt

    def send(self, message: Frame) -> None:
        data = pack(message)
        if self.queue is None:
            if len(self._pending) < MAX_QUEUED_FRAMES:
                self._pending.append(data)
            else:
                self.lost += 1
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.lost += 1

    async def run(self) -> None:
        """Connect (retrying), then send the queued reports and apply the peers'."""
        self.queue = asyncio.Queue(MAX_QUEUED_FRAMES)
        for data in self._pending:
            self.queue.put_nowait(data)
        self._pending.clear()
        while True:
            try:
                reader, writer = await asyncio.open_connection(*self.address)
            except OSError:
                await asyncio.sleep(CONNECT_RETRY_S)
                continue
            writer.write(pack(Hello(self.lane)))
            receiver = asyncio.create_task(self._receive(reader))
            try:
                while not receiver.done():
                    data = await self.queue.get()
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                receiver.cancel()
                writer.close()
            await asyncio.sleep(CONNECT_RETRY_S)

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        limit = max_entry_bytes(self.params)
        while True:
            try:
                frame = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except ValueError:
                self.refused += 1
                return
            if isinstance(frame, Hold):
                self.pool.book.hold(frame.cid, frame.kappa, frame.slot, frame.index)
            elif isinstance(frame, Withheld):
                try:
                    entry = decode_lane_entry(frame.entry, limit)
                except LanePayloadError:
                    self.refused += 1
                    continue
                self.pool.pool_peer(frame.slot, entry)

    # ------------------------------------------------------------------ private decode

    def after_tracked(self, tracker: Any, outcome: Any) -> None:
        """The decode tracker handled finalized height `outcome.height`: try the pooled
        payloads it has not decided yet; payloads it decided now get their private slot."""
        height = outcome.height
        for event in outcome.payloads:  # decided publicly now: no lead if not before
            cid = event.commitment_id
            if cid in self.pool.slots:
                if cid not in self.decoded:
                    self._decoded(cid, height)
                del self.pool.slots[cid]  # nothing more to try (bounds the loop below)
        for cid, slots in self.pool.slots.items():
            if cid in self.decoded or tracker.status(cid) not in ("pending", "unknown"):
                continue
            pooled = {i for i, s in slots.items() if s <= height}
            if not pooled:
                continue
            public = tracker.finalized_bundles(cid)
            held = len(pooled | set(public))
            bundles = self.pool.bundles(cid)
            commitment = bundles[next(iter(pooled))].commitment
            if held < commitment.kappa or self._tried.get(cid, 0) >= held:
                continue
            self._tried[cid] = held
            layout = layout_of(self.params, commitment)
            if layout is None:
                continue
            merged: dict[int, Any] = dict(public)
            merged.update({i: bundles[i].symbols for i in pooled})
            if decode_payload(layout, commitment, merged).status == "decoded":
                self._decoded(cid, height)

    def _decoded(self, cid: bytes, slot: int) -> None:
        self.decoded[cid] = slot
        while len(self.decoded) > MAX_TRACKED_PAYLOADS:
            self.decoded.popitem(last=False)
        self._tried.pop(cid, None)
        self.send(Decoded(self.lane, cid, slot))


def watch_tracker(tracker: Any, after: Callable[[Any, Any], None]) -> None:
    """Call `after(tracker, outcome)` after every finalized height the tracker handles."""
    for name in ("on_finalized_payload", "on_finalized_lanes"):
        original = getattr(tracker, name)

        def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            outcome = _original(*args, **kwargs)
            after(tracker, outcome)
            return outcome

        setattr(tracker, name, wrapped)
