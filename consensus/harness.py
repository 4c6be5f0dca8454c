"""In-process harness: n unmodified cores, FIFO delivery, a logical clock, no I/O.

Every message is delivered `latency_ms` after it was sent (0 = instantly, in send order);
timers fire on the logical clock once nothing earlier is pending. `RequestPayload` is
answered at once with a deterministic payload. A crashed node never starts, and every
message to or from it is dropped; `drop(src, dst, message)` can drop anything else.

The harness runs until every live node has finalized `blocks` blocks (or an event bound is
hit) and records, per node, the finalized chain, the round at which each block became
Voted (speculative finality) and Finalized, reverts and traces.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from consensus.core import ConsensusCore, CoreConfig, RecoveredState
from consensus.crypto import ED25519, SignatureScheme, derive_keys
from consensus.events import (
    Broadcast,
    CancelTimer,
    Command,
    CommitBlocks,
    Event,
    MarkVoted,
    MessageReceived,
    PayloadReady,
    PersistBlock,
    PersistSafety,
    RecordEquivocation,
    RequestPayload,
    RevertVoted,
    RoundEntered,
    Send,
    SetTimer,
    Start,
    TimerFired,
    Trace,
)
from consensus.messages import BlockBody, Message, Tip
from consensus.safety import SafetyState
from consensus.validators import ValidatorSet, schedule_by_name

DropRule = Callable[[int, int, Message], bool]


@dataclass(frozen=True)
class HarnessConfig:
    nodes: int = 4
    blocks: int = 10  # stop once every live node finalized this many blocks
    protocol: str = "monadbft"
    scheme: SignatureScheme = ED25519
    seed: bytes = b"sedna-harness"
    stakes: tuple[int, ...] | None = None
    schedule: str = "round-robin"
    crashed: frozenset[int] = frozenset()  # never started; all their traffic is dropped
    latency_ms: float = 0.0
    payload_bytes: int = 64
    max_events: int = 500_000
    core: CoreConfig | None = None  # protocol is taken from `protocol` above
    drop: DropRule | None = None

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("the harness needs at least one node")
        if self.blocks < 0 or self.latency_ms < 0 or self.payload_bytes < 0:
            raise ValueError("blocks, latency_ms and payload_bytes must be non-negative")
        if any(not 0 <= i < self.nodes for i in self.crashed):
            raise ValueError("crashed node index out of range")
        if len(self.crashed) >= self.nodes:
            raise ValueError("at least one node must be live")


@dataclass
class NodeRecord:
    commits: list[bytes] = field(default_factory=list)  # finalized block ids, in order
    commit_seq: list[int] = field(default_factory=list)
    voted_round: dict[bytes, int] = field(default_factory=dict)  # block -> round when Voted
    finalized_round: dict[bytes, int] = field(default_factory=dict)  # block -> round when final
    reverts: list[RevertVoted] = field(default_factory=list)
    equivocations: list[RecordEquivocation] = field(default_factory=list)
    traces: list[tuple[int, Trace]] = field(default_factory=list)  # (round, trace)
    trace_counts: Counter[str] = field(default_factory=Counter)
    rounds_entered: list[tuple[int, str]] = field(default_factory=list)
    safety: SafetyState | None = None  # last PersistSafety
    blocks: dict[bytes, tuple[Tip, BlockBody]] = field(default_factory=dict)  # PersistBlock

    def traces_named(self, name: str) -> list[dict[str, Any]]:
        return [trace.detail for _, trace in self.traces if trace.name == name]


@dataclass
class HarnessResult:
    config: HarnessConfig
    records: list[NodeRecord]
    final_rounds: list[int]
    finalized_heights: list[int]
    events: int
    time_ms: float
    stopped: str  # "done" | "max_events" | "idle"
    messages: Counter[str]

    @property
    def live(self) -> list[int]:
        return [i for i in range(self.config.nodes) if i not in self.config.crashed]

    def agreement(self) -> bool:
        """P1: every two live nodes' finalized chains agree on their common prefix."""
        chains = [self.records[i].commits for i in self.live]
        return all(
            a[: min(len(a), len(b))] == b[: min(len(a), len(b))] for a in chains for b in chains
        )

    def finality_lags(self, node: int) -> list[int]:
        """Rounds between Voted and Finalized for each block the node saw both for."""
        record = self.records[node]
        return [
            record.finalized_round[b] - record.voted_round[b]
            for b in record.commits
            if b in record.voted_round
        ]


class Harness:
    def __init__(
        self, config: HarnessConfig, *, recovered: dict[int, RecoveredState] | None = None
    ):
        self.config = config
        keys = derive_keys(config.nodes, config.seed)
        self.keys = keys
        self.validators = ValidatorSet.from_keys([k.public for k in keys], config.stakes)
        self.schedule = schedule_by_name(config.schedule, self.validators)
        core_config = replace(config.core or CoreConfig(), protocol=config.protocol)
        self.cores: list[ConsensusCore] = [
            ConsensusCore(
                config=core_config,
                validators=self.validators,
                schedule=self.schedule,
                index=i,
                key=keys[i],
                scheme=config.scheme,
                recovered=(recovered or {}).get(i),
            )
            for i in range(config.nodes)
        ]
        self.records = [NodeRecord() for _ in range(config.nodes)]
        self.now_ns = 0
        self.events = 0
        self.messages: Counter[str] = Counter()
        self._queue: list[tuple[int, int, int, Event]] = []  # (time, seq, node, event)
        self._seq = 0
        self._timers: dict[tuple[int, str], int] = {}  # (node, kind) -> live timer seq
        self.crashed = set(config.crashed)

    # ------------------------------------------------------------------ scheduling

    def _push(self, at_ns: int, node: int, event: Event) -> int:
        self._seq += 1
        heapq.heappush(self._queue, (at_ns, self._seq, node, event))
        return self._seq

    def _deliver(self, src: int, dst: int, message: Message) -> None:
        if src in self.crashed or dst in self.crashed:
            return
        if self.config.drop is not None and self.config.drop(src, dst, message):
            return
        self.messages[type(message).__name__] += 1
        at = self.now_ns + int(self.config.latency_ms * 1e6)
        self._push(at, dst, MessageReceived(at, src, message))

    def start(self) -> None:
        for i, _core in enumerate(self.cores):
            if i not in self.crashed:
                self._push(0, i, Start(0))

    def inject(self, node: int, event: Event) -> None:
        """Deliver an event to one node now (tests)."""
        self._execute(node, self.cores[node].handle(event))

    # ------------------------------------------------------------------ commands

    def _execute(self, node: int, commands: list[Command]) -> None:
        core, record = self.cores[node], self.records[node]
        for command in commands:
            if isinstance(command, Send):
                if command.to == node:
                    raise AssertionError("a core must not send to itself")
                self._deliver(node, command.to, command.message)
            elif isinstance(command, Broadcast):
                for other in range(self.config.nodes):
                    if other != node:
                        self._deliver(node, other, command.message)
            elif isinstance(command, SetTimer):
                at = self.now_ns + int(command.delay_ms * 1e6)
                token = self._push(at, node, TimerFired(at, command.kind, command.round))
                self._timers[(node, command.kind)] = token
            elif isinstance(command, CancelTimer):
                self._timers.pop((node, command.kind), None)
            elif isinstance(command, RequestPayload):
                payload = self._payload(node, command.round)
                self._push(self.now_ns, node, PayloadReady(self.now_ns, command.round, payload))
            elif isinstance(command, PersistSafety):
                record.safety = command.state
            elif isinstance(command, PersistBlock):
                record.blocks[command.block_id] = (command.tip, command.body)
            elif isinstance(command, CommitBlocks):
                for block in command.blocks:
                    record.commits.append(block.block_id)
                    record.commit_seq.append(block.header.seq_num)
                    record.finalized_round[block.block_id] = core.current_round
            elif isinstance(command, MarkVoted):
                record.voted_round.setdefault(command.block_id, core.current_round)
            elif isinstance(command, RevertVoted):
                record.reverts.append(command)
            elif isinstance(command, RecordEquivocation):
                record.equivocations.append(command)
            elif isinstance(command, RoundEntered):
                record.rounds_entered.append((command.round, command.via))
            elif isinstance(command, Trace):
                record.traces.append((core.current_round, command))
                record.trace_counts[command.name] += 1

    def _payload(self, node: int, round: int) -> bytes:
        digest = hashlib.sha256(
            self.config.seed + b"/payload/" + node.to_bytes(4, "big") + round.to_bytes(8, "big")
        ).digest()
        return (digest * (self.config.payload_bytes // 32 + 1))[: self.config.payload_bytes]

    # ------------------------------------------------------------------ running

    def step(self) -> bool:
        """Process the next event. Returns False when nothing is pending."""
        while self._queue:
            at, seq, node, event = heapq.heappop(self._queue)
            if node in self.crashed:
                continue
            if isinstance(event, TimerFired) and self._timers.get((node, event.kind)) != seq:
                continue  # replaced or cancelled
            self.now_ns = at
            self.events += 1
            self._execute(node, self.cores[node].handle(event))
            return True
        return False

    def done(self) -> bool:
        target = self.config.blocks
        return all(
            self.cores[i].finalized_height >= target
            for i in range(self.config.nodes)
            if i not in self.crashed
        )

    def run(self, until: Callable[[Harness], bool] | None = None) -> HarnessResult:
        until = until or Harness.done
        stopped = "done"
        if not self.events and not self._queue:
            self.start()
        while not until(self):
            if self.events >= self.config.max_events:
                stopped = "max_events"
                break
            if not self.step():
                stopped = "idle"
                break
        return self.result(stopped)

    def result(self, stopped: str = "done") -> HarnessResult:
        return HarnessResult(
            config=self.config,
            records=self.records,
            final_rounds=[core.current_round for core in self.cores],
            finalized_heights=[core.finalized_height for core in self.cores],
            events=self.events,
            time_ms=self.now_ns / 1e6,
            stopped=stopped,
            messages=self.messages,
        )


def run_harness(config: HarnessConfig) -> HarnessResult:
    """Run n cores until every live node finalized `config.blocks` blocks."""
    return Harness(config).run()
