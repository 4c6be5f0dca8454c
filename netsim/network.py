"""Simulated network: latency models, loss, duplication, reordering, partitions, link rules.

The network decides, at send time, what happens to one message on one link: a list of
delivery delays (empty = lost, two or more = duplicated). All draws come from the
caller's `random.Random` (the simulator's *network* stream), always in the same order
for the same inputs, so a run is reproducible from its seed.

Rules apply in this order, each one evaluated at the send time:
1. partitions: a message between two different groups of an active partition is dropped;
2. link rules (first match wins for each effect): `loss` overrides the global loss,
   `latency` overrides the global latency model, `extra_delay_ms` adds a constant;
3. global loss, then duplication (one extra copy with its own latency), then reordering
   (with probability `reorder`, a copy is held back by an extra U(0, reorder_ms)).
Messages already in flight when a partition starts are still delivered (as on a real
network whose cable is cut after the packet left).

Bandwidth (`bandwidth_mbps`, optional): every node has an uplink and a downlink of that
rate (`Bandwidth`). A message's bytes queue on the sender's uplink (FIFO in send order),
travel for the drawn latency, then pass the receiver's downlink (FIFO in arrival order,
at the same rate): with no contention a message of S bytes arrives S·8/rate after its
latency, and a busy downlink delays it by its backlog; a leader broadcasting a large
block sends its n − 1 copies one after the other. A message
that would wait more than `max_queue_ms` on an uplink is dropped (tail drop, counted), so
the queues stay bounded.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

LatencyKind = Literal["constant", "uniform", "pareto", "lognormal"]
LATENCY_KINDS: tuple[str, ...] = ("constant", "uniform", "pareto", "lognormal")
NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Latency:
    """One-way latency distribution in milliseconds.

    constant:  always `low_ms`.
    uniform:   U(low_ms, high_ms).
    pareto:    low_ms * Pareto(shape) (heavy tail, scale = low_ms), capped at high_ms.
    lognormal: median low_ms, log-standard-deviation `shape`, capped at high_ms.
    """

    kind: LatencyKind = "constant"
    low_ms: float = 1.0
    high_ms: float = 1.0
    shape: float = 1.5

    def __post_init__(self) -> None:
        if self.kind not in LATENCY_KINDS:
            raise ValueError(f"unknown latency model {self.kind!r}; choose one of {LATENCY_KINDS}")
        if not (math.isfinite(self.low_ms) and math.isfinite(self.high_ms)):
            raise ValueError("latency bounds must be finite")
        if self.low_ms < 0 or self.high_ms < self.low_ms:
            raise ValueError(f"latency needs 0 <= low <= high, got [{self.low_ms}, {self.high_ms}]")
        if self.kind in ("pareto", "lognormal") and not self.shape > 0:
            raise ValueError(f"latency shape must be > 0, got {self.shape}")

    def sample_ms(self, rng: random.Random) -> float:
        if self.kind == "constant":
            return self.low_ms
        if self.kind == "uniform":
            return rng.uniform(self.low_ms, self.high_ms)
        if self.kind == "pareto":
            return min(self.high_ms, self.low_ms * rng.paretovariate(self.shape))
        return min(self.high_ms, self.low_ms * math.exp(rng.gauss(0.0, self.shape)))


@dataclass(frozen=True, slots=True)
class Partition:
    """During [from_ms, to_ms) only nodes of the same group can talk.

    Nodes listed in no group form one extra group together.
    """

    groups: tuple[frozenset[int], ...]
    from_ms: float
    to_ms: float

    def __post_init__(self) -> None:
        if self.to_ms <= self.from_ms:
            raise ValueError(f"partition needs from_ms < to_ms, got {self.from_ms}, {self.to_ms}")
        seen: set[int] = set()
        for group in self.groups:
            if seen & group:
                raise ValueError(f"node(s) {sorted(seen & group)} appear in two partition groups")
            seen |= group

    def active(self, now_ms: float) -> bool:
        return self.from_ms <= now_ms < self.to_ms

    def group_of(self, node: int) -> int:
        for position, group in enumerate(self.groups):
            if node in group:
                return position
        return -1

    def blocks(self, src: int, dst: int, now_ms: float) -> bool:
        return self.active(now_ms) and self.group_of(src) != self.group_of(dst)


@dataclass(frozen=True, slots=True)
class LinkRule:
    """Per-link override; `None` fields match anything / change nothing."""

    src: int | None = None
    dst: int | None = None
    message: str | None = None  # message tag, e.g. "vote", "proposal", "advance"
    from_ms: float = 0.0
    to_ms: float = math.inf
    loss: float | None = None
    latency: Latency | None = None
    extra_delay_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.loss is not None and not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"link loss must be in [0, 1], got {self.loss}")
        if self.to_ms <= self.from_ms:
            raise ValueError(f"link rule needs from_ms < to_ms, got {self.from_ms}, {self.to_ms}")
        if self.extra_delay_ms < 0:
            raise ValueError(f"extra_delay_ms must be >= 0, got {self.extra_delay_ms}")

    def matches(self, src: int, dst: int, tag: str, now_ms: float) -> bool:
        return (
            (self.src is None or self.src == src)
            and (self.dst is None or self.dst == dst)
            and (self.message is None or self.message == tag)
            and self.from_ms <= now_ms < self.to_ms
        )


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    latency: Latency = field(default_factory=Latency)
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 0.0
    partitions: tuple[Partition, ...] = ()
    links: tuple[LinkRule, ...] = ()
    bandwidth_mbps: float | None = None  # per node, uplink and downlink; None: unlimited
    max_queue_ms: float = 10_000.0  # an uplink backlog beyond this drops the message

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"network {name} must be in [0, 1], got {value}")
        if self.reorder_ms < 0:
            raise ValueError(f"reorder_ms must be >= 0, got {self.reorder_ms}")
        if self.bandwidth_mbps is not None and not (
            math.isfinite(self.bandwidth_mbps) and self.bandwidth_mbps > 0
        ):
            raise ValueError(f"bandwidth_mbps must be > 0, got {self.bandwidth_mbps}")
        if not self.max_queue_ms > 0:
            raise ValueError(f"max_queue_ms must be > 0, got {self.max_queue_ms}")


class Bandwidth:
    """Per-node uplink and downlink queues of `mbps` each (times in integer ns).

    `send` reserves the sender's uplink and returns when the last byte left (None: the
    backlog exceeds `max_queue_ns`, drop); `receive` reserves the receiver's downlink for
    a message whose last byte arrives at `arrival_ns` and returns its delivery time. The
    byte counters feed the report (`upload_bytes`, `download_bytes`).
    """

    def __init__(self, nodes: int, mbps: float, max_queue_ms: float):
        self.ns_per_byte = 8_000.0 / mbps  # 8 bits at mbps·10^6 bit/s, in ns
        self.max_queue_ns = round(max_queue_ms * NS_PER_MS)
        self._up_free = [0] * nodes
        self._down_free = [0] * nodes
        self.upload_bytes = [0] * nodes
        self.download_bytes = [0] * nodes
        self.dropped = 0

    def transfer_ns(self, size: int) -> int:
        return round(size * self.ns_per_byte)

    def send(self, src: int, size: int, now_ns: int) -> int | None:
        start = max(now_ns, self._up_free[src])
        if start - now_ns > self.max_queue_ns:  # rule: bounded queues (tail drop)
            self.dropped += 1
            return None
        done = start + self.transfer_ns(size)
        self._up_free[src] = done
        self.upload_bytes[src] += size
        return done

    def receive(self, dst: int, size: int, arrival_ns: int) -> int:
        """`arrival_ns`: when the last byte reaches `dst`. Its bytes came in at the link
        rate, so an idle downlink delivers then; a busy one after its backlog."""
        transfer = self.transfer_ns(size)
        start = max(arrival_ns - transfer, self._down_free[dst])
        done = start + transfer
        self._down_free[dst] = done
        self.download_bytes[dst] += size
        return done

    def backlog_ms(self, node: int, now_ns: int) -> float:
        """How long the node's uplink is busy from now (for reports and tests)."""
        return max(0, self._up_free[node] - now_ns) / NS_PER_MS


class Network:
    """Decides the fate of each message; stateless apart from its configuration."""

    def __init__(self, config: NetworkConfig):
        self.config = config

    def partitioned(self, src: int, dst: int, now_ms: float) -> bool:
        return any(p.blocks(src, dst, now_ms) for p in self.config.partitions)

    def route(self, src: int, dst: int, tag: str, now_ms: float, rng: random.Random) -> list[float]:
        """Delivery delays in ms for one message on the link src -> dst (empty = lost)."""
        config = self.config
        if self.partitioned(src, dst, now_ms):
            return []
        loss, latency, extra_ms = config.loss, config.latency, 0.0
        loss_set = latency_set = False
        for rule in config.links:
            if not rule.matches(src, dst, tag, now_ms):
                continue
            if rule.loss is not None and not loss_set:
                loss, loss_set = rule.loss, True
            if rule.latency is not None and not latency_set:
                latency, latency_set = rule.latency, True
            extra_ms += rule.extra_delay_ms
        if loss >= 1.0 or (loss > 0.0 and rng.random() < loss):
            return []
        copies = 2 if config.duplicate > 0.0 and rng.random() < config.duplicate else 1
        delays: list[float] = []
        for _ in range(copies):
            delay_ms = latency.sample_ms(rng) + extra_ms
            if config.reorder > 0.0 and rng.random() < config.reorder:
                delay_ms += rng.uniform(0.0, config.reorder_ms)
            delays.append(delay_ms)
        return delays


def partition_from_lists(
    groups: Sequence[Sequence[int]], from_ms: float, to_ms: float
) -> Partition:
    return Partition(tuple(frozenset(g) for g in groups), from_ms, to_ms)
