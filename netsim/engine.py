"""Deterministic discrete-event engine and the driver that runs consensus state machines.

One thread, one priority queue, a total order on events: `(time_ns, tie_break, seq)`.
`tie_break` is `priority << 64 | draw`, where control events (faults) have priority 0
and everything else 1, and `draw` is 0 ("fifo": same-time events in scheduling order) or
a 64-bit draw from the *schedule* stream ("random": a seeded permutation of same-time
events). `seq` is a global counter, so no two keys are ever equal.

Randomness comes only from `random.Random` streams derived from `(seed, purpose)`
(`derive_rng`): "network", "faults", "workload", "schedule", "byzantine". A draw in
one stream never shifts another.

The driver feeds each node's machine (`handle(event) -> list[Command]`, e.g. the real
`ConsensusCore`) and executes the returned commands in order:
- `Send`/`Broadcast` go through `netsim.network.Network` (a send to oneself is delivered
  locally at the same instant, without network effects);
- `SetTimer`/`CancelTimer` use the simulated clock (one pending timer per kind; setting
  replaces, cancelling invalidates);
- `PersistSafety`/`PersistBlock`/`CommitBlocks` write the node's simulated `Disk`: the
  only thing that survives a crash;
- `RequestPayload` is answered with `PayloadReady` (bytes from the workload stream) at
  the same instant;
- every command, and every event handed to a machine, is shown to the observers
  (invariant checkers, statistics) and folded into the run's trace hash.

The trace hash is SHA-256 over a canonical (msgpack, deterministic key order) record of
every delivered event and every executed command, with times in integer nanoseconds.
The same seed and scenario give the same hash; that is what makes a failing run
replayable.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from consensus import codec
from consensus.events import (
    Broadcast,
    CancelTimer,
    CommitBlocks,
    MessageReceived,
    PayloadReady,
    PersistBlock,
    PersistSafety,
    RequestPayload,
    RoundEntered,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from netsim.faults import ClockOffset, Crash, Fault, Pause
from netsim.network import NS_PER_MS, Bandwidth, Network

STREAMS = ("network", "faults", "workload", "schedule", "byzantine")
MAX_EVENTS_DEFAULT = 20_000_000
MAX_HELD_EVENTS = 1_000_000  # per paused node; beyond this, held deliveries are dropped
RECORD_BATCH = 1024  # trace records encoded and hashed together (same hash as one by one)
_PRIORITY_CONTROL = 0
_PRIORITY_NORMAL = 1


def derive_rng(seed: int, purpose: str) -> random.Random:
    """An independent stream for one purpose: seeded by SHA-256(seed, purpose)."""
    digest = hashlib.sha256(f"sedna/netsim/{seed}/{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


class Machine(Protocol):
    """What the driver runs: the consensus core, a Byzantine wrapper, or a test double."""

    def handle(self, event: Any) -> list[Any]: ...


@dataclass
class Disk:
    """A node's simulated durable storage: exactly what its persist commands wrote."""

    safety: Any | None = None  # the last PersistSafety.state
    safety_writes: int = 0
    blocks: dict[bytes, tuple[Any, Any]] = field(default_factory=dict)  # id -> (tip, body)
    finalized: list[tuple[int, bytes]] = field(default_factory=list)  # (height, block id)

    @property
    def finalized_height(self) -> int:
        return self.finalized[-1][0] if self.finalized else 0


# A factory builds a machine for instance `index` (validator `identity`) from its disk:
# `disk is None` for a fresh start, the surviving disk on restart.
MachineFactory = Callable[[int, int, "Disk | None"], Machine]


class Observer:
    """Hooks for checkers and statistics. Observers must not mutate the simulation.

    `command_types`: the command classes `on_command` wants (None: every command); the
    engine calls a hook only for those, and only hooks a subclass overrides. The engine
    reads `Simulator.observers` when `run` starts (add observers between runs)."""

    command_types: frozenset[type] | None = None

    def on_event(self, sim: Simulator, node: int, event: Any) -> None:
        """An event is about to be handed to `node`'s machine."""

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        """`node` executed `command` (in order, after the machine returned it)."""

    def on_fault(self, sim: Simulator, node: int, kind: str) -> None:
        """A fault was applied: 'crash', 'restart', 'pause', 'resume'."""

    def on_finish(self, sim: Simulator) -> None:
        """The run ended."""


@dataclass
class NodeHost:
    """Driver-side state of one instance (one machine, one disk)."""

    index: int
    identity: int  # validator index it signs as (differs from `index` only for Twins)
    machine: Machine | None = None  # None before Start and while crashed
    disk: Disk = field(default_factory=Disk)
    up: bool = True  # the process exists (False from a crash until its restart)
    paused: bool = False
    held: deque[tuple[int, Any]] = field(default_factory=deque)
    incarnation: int = 0
    timer_tokens: dict[str, int] = field(default_factory=dict)
    clock_offset_ns: int = 0
    crash_at_round: int | None = None
    restart_after_ns: int | None = None
    crashes: int = 0
    restarts: int = 0


# ----------------------------------------------------------------------------- events
# Queue entries of the engine itself (never mutated once queued; plain slotted classes,
# cheaper to build than frozen ones: one is made per delivery and timer).


@dataclass(slots=True)
class _Deliver:
    dst: int
    src_identity: int
    message: Any
    digest: bytes


@dataclass(slots=True)
class _Arrive:
    """A message's last byte reached `dst`'s downlink (bandwidth model only)."""

    dst: int
    src_identity: int
    message: Any
    digest: bytes
    size: int


@dataclass(slots=True)
class _Timer:
    node: int
    kind: str
    round: int
    token: int
    incarnation: int


@dataclass(slots=True)
class _Local:
    """An event for one node created by the driver itself (Start, PayloadReady, self-send)."""

    node: int
    make: Callable[[int], Any]  # now_ns -> core event
    label: tuple[Any, ...]
    incarnation: int


@dataclass(frozen=True, slots=True)
class _Control:
    kind: Literal["crash", "restart", "pause", "resume"]
    node: int


@dataclass(frozen=True, slots=True)
class RunResult:
    trace_hash: str
    sim_time_ms: float
    events: int
    stop_reason: Literal["stop_condition", "until", "idle", "event_budget"]
    messages_sent: int
    messages_delivered: int
    messages_dropped: int
    bytes_sent: int


def _enc_hook(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


_canon = msgspec.msgpack.Encoder(order="deterministic", enc_hook=_enc_hook)


def message_tag(message: Any) -> str:
    """The wire tag of a message struct ('vote', 'proposal', ...), else its class name."""
    config = getattr(type(message), "__struct_config__", None)
    tag = getattr(config, "tag", None)
    return tag if isinstance(tag, str) else type(message).__name__


def message_digest(message: Any) -> tuple[bytes, int]:
    """(SHA-256 of the canonical frame, frame size in bytes) for one message."""
    try:
        frame = codec.encode_message(message)
    except (TypeError, msgspec.EncodeError):
        frame = _canon.encode(message)
    return hashlib.sha256(frame).digest(), len(frame)


class Simulator:
    """Runs `n` instances of machines over a simulated network with faults."""

    def __init__(
        self,
        *,
        factory: MachineFactory,
        network: Network,
        seed: int,
        identities: Sequence[int] | int,
        faults: Iterable[Fault] = (),
        observers: Iterable[Observer] = (),
        payload_bytes: int = 16,
        tie_break: Literal["fifo", "random"] = "fifo",
        max_events: int = MAX_EVENTS_DEFAULT,
        link_filter: Callable[[Simulator, int, int, Any], bool] | None = None,
    ):
        if isinstance(identities, int):
            identities = list(range(identities))
        if not identities:
            raise ValueError("a simulation needs at least one node")
        if tie_break not in ("fifo", "random"):
            raise ValueError(f"tie_break must be 'fifo' or 'random', got {tie_break!r}")
        if not 0 <= payload_bytes <= 1 << 20:
            raise ValueError(f"payload_bytes must be in [0, 2^20], got {payload_bytes}")
        self.seed = seed
        self.factory = factory
        self.network = network
        self.observers: list[Observer] = list(observers)
        self.payload_bytes = payload_bytes
        self.tie_break = tie_break
        self.max_events = max_events
        self.link_filter = link_filter
        self.hosts = [NodeHost(i, identity) for i, identity in enumerate(identities)]
        self.validator_count = max(identities) + 1
        self.instances_of: dict[int, list[int]] = {}
        for host in self.hosts:
            self.instances_of.setdefault(host.identity, []).append(host.index)
        self.rngs = {purpose: derive_rng(seed, purpose) for purpose in STREAMS}
        self._queue: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self._now_ns = 0
        self._hash = hashlib.sha256()
        self._records: list[tuple[Any, ...]] = []  # not yet hashed (RECORD_BATCH)
        self._event_hooks: tuple[Callable[[Simulator, int, Any], None], ...] = ()
        self._command_hooks: dict[type, tuple[Callable[[Simulator, int, Any], None], ...]] = {}
        self.events_processed = 0
        self.messages_sent = 0
        self.messages_delivered = 0
        self.messages_dropped = 0
        self.bytes_sent = 0
        self.sent_bytes_by_tag: list[Counter[str]] = [Counter() for _ in self.hosts]
        config = network.config
        self.bandwidth: Bandwidth | None = None
        if config.bandwidth_mbps is not None:
            self.bandwidth = Bandwidth(len(self.hosts), config.bandwidth_mbps, config.max_queue_ms)
        self.last_fault_ms = 0.0
        self._started = False
        for host in self.hosts:
            self._push(0, _PRIORITY_NORMAL, self._start_event(host))
        for fault in faults:
            self._plan_fault(fault)

    # ------------------------------------------------------------------ public helpers

    @property
    def now_ns(self) -> int:
        return self._now_ns

    @property
    def now_ms(self) -> float:
        return self._now_ns / NS_PER_MS

    @property
    def trace_hash(self) -> str:
        self._flush_records()
        return self._hash.hexdigest()

    def rng(self, purpose: str) -> random.Random:
        return self.rngs[purpose]

    def next_event_ms(self) -> float | None:
        """Time of the earliest queued event (None when idle): lets a stepped driver
        advance the clock one event at a time. The event may be a stale timer."""
        return self._queue[0][0] / NS_PER_MS if self._queue else None

    def schedule_control(self, at_ms: float, kind: str, node: int) -> None:
        """Apply a fault at a simulated time (used by scenario plans and stateful tests)."""
        self._check_node(node)
        self._push(round(at_ms * NS_PER_MS), _PRIORITY_CONTROL, _Control(kind, node))  # type: ignore[arg-type]

    def inject(
        self,
        dst: int,
        src_identity: int,
        message: Any,
        delay_ms: float = 0.0,
        *,
        downlink: bool = False,
    ) -> None:
        """Deliver a message to instance `dst` as if sent by `src_identity` (test hook;
        netsim's lane senders). With `downlink`, its bytes also queue on `dst`'s downlink
        when the network has a bandwidth (a client's upload is not modelled)."""
        self._check_node(dst)
        digest, size = message_digest(message)
        at_ns = self._now_ns + round(delay_ms * NS_PER_MS)
        if downlink and self.bandwidth is not None:
            self._push(at_ns, _PRIORITY_NORMAL, _Arrive(dst, src_identity, message, digest, size))
            return
        self._push(at_ns, _PRIORITY_NORMAL, _Deliver(dst, src_identity, message, digest))

    def run(self, until_ms: float, stop: Callable[[Simulator], bool] | None = None) -> RunResult:
        """Process events in order until `until_ms`, `stop(sim)` holds, or nothing is left."""
        until_ns = round(until_ms * NS_PER_MS)
        reason: Literal["stop_condition", "until", "idle", "event_budget"] = "idle"
        self._bind_observers()
        queue = self._queue
        while queue:
            if self.events_processed >= self.max_events:
                reason = "event_budget"
                break
            if queue[0][0] > until_ns:
                self._now_ns = until_ns
                reason = "until"
                break
            time_ns, _tie, _seq, event = heapq.heappop(queue)
            self._now_ns = time_ns
            self.events_processed += 1
            self._dispatch(event)
            if stop is not None and stop(self):
                reason = "stop_condition"
                break
        for observer in self.observers:
            observer.on_finish(self)
        return RunResult(
            trace_hash=self.trace_hash,
            sim_time_ms=self.now_ms,
            events=self.events_processed,
            stop_reason=reason,
            messages_sent=self.messages_sent,
            messages_delivered=self.messages_delivered,
            messages_dropped=self.messages_dropped,
            bytes_sent=self.bytes_sent,
        )

    # ------------------------------------------------------------------ queue

    def _push(self, time_ns: int, priority: int, event: Any) -> None:
        draw = self.rngs["schedule"].getrandbits(64) if self.tie_break == "random" else 0
        self._seq += 1
        heapq.heappush(self._queue, (time_ns, (priority << 64) | draw, self._seq, event))

    def _bind_observers(self) -> None:
        """The hooks of `self.observers` the engine calls (Observer: only the methods an
        observer overrides, and `on_command` only for its `command_types`)."""
        self._event_hooks = tuple(
            observer.on_event
            for observer in self.observers
            if type(observer).on_event is not Observer.on_event
        )
        self._command_hooks = {}

    def _hooks_for(self, kind: type) -> tuple[Callable[[Simulator, int, Any], None], ...]:
        hooks = tuple(
            observer.on_command
            for observer in self.observers
            if type(observer).on_command is not Observer.on_command
            and (observer.command_types is None or kind in observer.command_types)
        )
        self._command_hooks[kind] = hooks
        return hooks

    def _record(self, record: tuple[Any, ...]) -> None:
        """Fold one record into the trace hash. Records are kept and encoded RECORD_BATCH
        at a time as one msgpack array; the hash covers the array's elements only, which
        are byte for byte the records' own encodings, so the hash is the one of hashing
        each record on its own. Records hold only immutable values (ints, bytes, strings,
        fresh lists, frozen commands)."""
        records = self._records
        records.append((self._now_ns, *record))
        if len(records) >= RECORD_BATCH:
            self._flush_records()

    def _flush_records(self) -> None:
        records = self._records
        if not records:
            return
        count = len(records)
        header = 1 if count < 16 else 3 if count < 1 << 16 else 5  # msgpack array header
        self._hash.update(memoryview(_canon.encode(records))[header:])
        records.clear()

    def _check_node(self, node: int) -> None:
        if not 0 <= node < len(self.hosts):
            raise ValueError(f"node {node} outside 0..{len(self.hosts) - 1}")

    # ------------------------------------------------------------------ faults

    def _plan_fault(self, fault: Fault) -> None:
        self._check_node(fault.node)
        host = self.hosts[fault.node]
        if isinstance(fault, Crash):
            if fault.at_round is not None:
                host.crash_at_round = fault.at_round
                if fault.restart_after_ms is not None:
                    host.restart_after_ns = round(fault.restart_after_ms * NS_PER_MS)
                return
            assert fault.at_ms is not None
            self.schedule_control(fault.at_ms, "crash", fault.node)
            restart_ms = fault.restart_ms
            if restart_ms is None and fault.restart_after_ms is not None:
                restart_ms = fault.at_ms + fault.restart_after_ms
            if restart_ms is not None:
                self.schedule_control(restart_ms, "restart", fault.node)
        elif isinstance(fault, Pause):
            self.schedule_control(fault.from_ms, "pause", fault.node)
            self.schedule_control(fault.to_ms, "resume", fault.node)
        elif isinstance(fault, ClockOffset):
            host.clock_offset_ns = round(fault.offset_ms * NS_PER_MS)
        else:  # pragma: no cover - the Fault union is closed
            raise TypeError(f"unknown fault {fault!r}")

    def _control(self, event: _Control) -> None:
        host = self.hosts[event.node]
        kind = event.kind
        if kind == "crash":
            if not host.up:
                return
            self._crash(host)
        elif kind == "restart":
            if host.up:
                return  # restart of a running node is a no-op
            host.up = True
            self._record(("restart", host.index))
            host.restarts += 1
            self.last_fault_ms = self.now_ms
            self._notify_fault(host.index, "restart")
            self._push(self._now_ns, _PRIORITY_NORMAL, self._start_event(host, restart=True))
        elif kind == "pause":
            if not host.up or host.paused:
                return  # pausing a crashed or paused node is a no-op
            host.paused = True
            self._record(("pause", host.index))
            self.last_fault_ms = self.now_ms
            self._notify_fault(host.index, "pause")
        elif kind == "resume":
            if not host.paused:
                return
            host.paused = False
            self._record(("resume", host.index))
            self.last_fault_ms = self.now_ms
            self._notify_fault(host.index, "resume")
            held, host.held = host.held, deque()
            for _original_ns, held_event in held:
                self._push(self._now_ns, _PRIORITY_NORMAL, held_event)

    def _crash(self, host: NodeHost) -> None:
        host.up = False
        host.paused = False
        host.held.clear()
        host.machine = None
        host.incarnation += 1
        host.timer_tokens.clear()
        host.crashes += 1
        self._record(("crash", host.index))
        self.last_fault_ms = self.now_ms
        self._notify_fault(host.index, "crash")
        if host.restart_after_ns is not None:
            self._push(
                self._now_ns + host.restart_after_ns,
                _PRIORITY_CONTROL,
                _Control("restart", host.index),
            )
            host.restart_after_ns = None

    def _notify_fault(self, node: int, kind: str) -> None:
        for observer in self.observers:
            observer.on_fault(self, node, kind)

    def _start_event(self, host: NodeHost, restart: bool = False) -> _Local:
        return _Local(host.index, _make_start, ("start", restart), host.incarnation)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, event: Any) -> None:
        if type(event) is _Deliver:
            host = self.hosts[event.dst]
            if not host.up or host.machine is None:
                self.messages_dropped += 1
                return
            if host.paused:
                self._hold(host, event)
                return
            self.messages_delivered += 1
            self._record(("deliver", event.dst, event.src_identity, event.digest))
            self._feed(
                host,
                MessageReceived(self._node_now(host), event.src_identity, event.message),
            )
        elif type(event) is _Timer:
            host = self.hosts[event.node]
            if (
                not host.up
                or event.incarnation != host.incarnation
                or host.timer_tokens.get(event.kind) != event.token
            ):
                return  # cancelled, replaced, or from a previous life
            if host.paused:
                self._hold(host, event)
                return
            del host.timer_tokens[event.kind]
            self._record(("timer", event.node, event.kind, event.round))
            self._feed(host, TimerFired(self._node_now(host), event.kind, event.round))  # type: ignore[arg-type]
        elif type(event) is _Local:
            host = self.hosts[event.node]
            if event.incarnation != host.incarnation:
                return
            if event.label[0] == "start":
                if not host.up or host.machine is not None:
                    return
                self._boot(host, restarted=event.label[1])
            elif not host.up or host.machine is None:
                return
            elif host.paused:
                self._hold(host, event)
                return
            self._record(("local", event.node, *event.label))
            self._feed(host, event.make(self._node_now(host)))
        elif type(event) is _Arrive:
            assert self.bandwidth is not None
            done_ns = self.bandwidth.receive(event.dst, event.size, self._now_ns)
            self._push(
                done_ns,
                _PRIORITY_NORMAL,
                _Deliver(event.dst, event.src_identity, event.message, event.digest),
            )
        elif type(event) is _Control:
            self._control(event)
        else:  # pragma: no cover - internal events only
            raise TypeError(f"unknown engine event {event!r}")

    def _hold(self, host: NodeHost, event: Any) -> None:
        if len(host.held) >= MAX_HELD_EVENTS:
            self.messages_dropped += 1
            return
        host.held.append((self._now_ns, event))

    def _boot(self, host: NodeHost, restarted: bool) -> None:
        host.machine = self.factory(host.index, host.identity, host.disk if restarted else None)
        host.timer_tokens.clear()

    def _node_now(self, host: NodeHost) -> int:
        return max(0, self._now_ns + host.clock_offset_ns)

    def _feed(self, host: NodeHost, event: Any) -> None:
        for hook in self._event_hooks:
            hook(self, host.index, event)
        assert host.machine is not None
        commands = host.machine.handle(event)
        if host.crash_at_round is not None:
            for command in commands:
                if type(command) is RoundEntered and command.round >= host.crash_at_round:
                    host.crash_at_round = None
                    self._crash(host)  # died inside the handler: no command took effect
                    return
        for command in commands:
            if not host.up:
                return
            self._execute(host, command)

    # ------------------------------------------------------------------ commands

    def _execute(self, host: NodeHost, command: Any) -> None:
        kind = type(command)
        if kind is Send:
            digest, size = message_digest(command.message)
            self._record(("send", host.index, command.to, digest))
            tag = message_tag(command.message)
            self._transmit(host, command.to, command.message, digest, size, tag)
        elif kind is Broadcast:
            digest, size = message_digest(command.message)
            self._record(("broadcast", host.index, digest))
            tag = message_tag(command.message)
            for identity in range(self.validator_count):
                if identity != host.identity:
                    self._transmit(host, identity, command.message, digest, size, tag)
        elif kind is SetTimer:
            token = host.timer_tokens.get(command.kind, 0) + 1
            self._record(("set_timer", host.index, command.kind, command.round, command.delay_ms))
            host.timer_tokens[command.kind] = token
            delay_ns = max(0, round(command.delay_ms * NS_PER_MS))
            self._push(
                self._now_ns + delay_ns,
                _PRIORITY_NORMAL,
                _Timer(host.index, command.kind, command.round, token, host.incarnation),
            )
        elif kind is CancelTimer:
            self._record(("cancel_timer", host.index, command.kind))
            if command.kind in host.timer_tokens:
                host.timer_tokens[command.kind] = host.timer_tokens[command.kind] + 1
        elif kind is PersistSafety:
            self._record(("persist_safety", host.index, codec.encode(command.state)))
            host.disk.safety = command.state
            host.disk.safety_writes += 1
        elif kind is PersistBlock:
            self._record(("persist_block", host.index, command.block_id))
            host.disk.blocks[command.block_id] = (command.tip, command.body)
        elif kind is CommitBlocks:
            self._record(("commit", host.index, [b.block_id for b in command.blocks]))
            for block in command.blocks:
                host.disk.finalized.append((block.header.seq_num, block.block_id))
        elif kind is RequestPayload:
            self._record(("request_payload", host.index, command.round))
            payload = self.rngs["workload"].randbytes(self.payload_bytes)
            round_ = command.round
            self._push(
                self._now_ns,
                _PRIORITY_NORMAL,
                _Local(
                    host.index,
                    lambda now_ns: PayloadReady(now_ns, round_, payload),
                    ("payload", round_, payload),
                    host.incarnation,
                ),
            )
        else:
            self._record(("command", host.index, command))
        hooks = self._command_hooks.get(kind)
        if hooks is None:
            hooks = self._hooks_for(kind)
        for hook in hooks:
            hook(self, host.index, command)

    def _transmit(
        self, host: NodeHost, identity: int, message: Any, digest: bytes, size: int, tag: str
    ) -> None:
        for dst in self.instances_of.get(identity, ()):
            if dst == host.index:
                # A send to oneself never touches the network.
                self._push(
                    self._now_ns, _PRIORITY_NORMAL, _Deliver(dst, host.identity, message, digest)
                )
                continue
            self.messages_sent += 1
            self.bytes_sent += size
            if self.link_filter is not None and not self.link_filter(
                self, host.index, dst, message
            ):
                self.messages_dropped += 1
                continue
            delays = self.network.route(host.index, dst, tag, self.now_ms, self.rngs["network"])
            if not delays:
                self.messages_dropped += 1
                continue
            self.sent_bytes_by_tag[host.index][tag] += size
            bandwidth = self.bandwidth
            if bandwidth is None:
                for delay_ms in delays:
                    self._push(
                        self._now_ns + max(0, round(delay_ms * NS_PER_MS)),
                        _PRIORITY_NORMAL,
                        _Deliver(dst, host.identity, message, digest),
                    )
                continue
            left_ns = bandwidth.send(host.index, size, self._now_ns)
            if left_ns is None:  # the uplink's backlog is over its bound: tail drop
                self.messages_dropped += 1
                continue
            for delay_ms in delays:
                self._push(
                    left_ns + max(0, round(delay_ms * NS_PER_MS)),
                    _PRIORITY_NORMAL,
                    _Arrive(dst, host.identity, message, digest, size),
                )


def _make_start(now_ns: int) -> Start:
    return Start(now_ns)
