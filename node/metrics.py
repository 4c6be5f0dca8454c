"""Prometheus text-format metrics and a mergeable latency histogram.

No client library: counters, gauges and histograms with a fixed, small label set, rendered
by `Registry.render()` in the text exposition format (version 0.0.4). Label cardinality is
bounded by construction (labels are peer indices, drop reasons and trace names).

`LatencyHistogram` keeps counts in logarithmic bins (2 % wide) so that histograms from
several nodes can be added and their quantiles read within 2 % of the exact sample
quantile; the testnet summary merges them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

MAX_LABEL_SETS = 4096


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()):
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()):
        super().__init__(name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up")
        key = self._key(labels)
        if key not in self._values and len(self._values) >= MAX_LABEL_SETS:
            return  # bound: label sets beyond the cap are not tracked
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        return self._values.get(self._key(labels), 0.0)

    def total(self) -> float:
        return sum(self._values.values())

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        return sorted(self._values.items())

    def render(self) -> list[str]:
        lines = self.header()
        if not self._values and not self.labelnames:
            lines.append(f"{self.name} 0")
        for key, value in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels(self.labelnames, key)} {_number(value)}")
        return lines


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        if key not in self._values and len(self._values) >= MAX_LABEL_SETS:
            return
        self._values[key] = float(value)


class Histogram(_Metric):
    """Cumulative-bucket histogram (Prometheus semantics), values in the metric's unit."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]):
        super().__init__(name, help_text)
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError(f"{name}: buckets must be strictly increasing")
        self.buckets = (*tuple(buckets), math.inf)
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        self.count += 1
        self.sum += value

    def render(self) -> list[str]:
        lines = self.header()
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        lines.append(f"{self.name}_sum {_number(self.sum)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Info(_Metric):
    """One current label set with value 1 (e.g. a hash); `set` replaces the previous one."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]):
        super().__init__(name, help_text, labelnames)
        self.current: tuple[str, ...] | None = None

    def set(self, **labels: object) -> None:
        self.current = self._key(labels)

    def render(self) -> list[str]:
        lines = self.header()
        if self.current is not None:
            lines.append(f"{self.name}{_labels(self.labelnames, self.current)} 1")
        return lines


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = self._add(Counter(name, help_text, labelnames))
        assert isinstance(metric, Counter)
        return metric

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = self._add(Gauge(name, help_text, labelnames))
        assert isinstance(metric, Gauge)
        return metric

    def info(self, name: str, help_text: str, labelnames: Sequence[str]) -> Info:
        metric = self._add(Info(name, help_text, labelnames))
        assert isinstance(metric, Info)
        return metric

    def histogram(self, name: str, help_text: str, buckets: Sequence[float]) -> Histogram:
        metric = self._add(Histogram(name, help_text, buckets))
        assert isinstance(metric, Histogram)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- latency histogram


class LatencyHistogram:
    """Log-binned latency counts in milliseconds: mergeable, quantiles within ~2 %."""

    GROWTH = 1.02
    FLOOR_MS = 0.01
    MAX_BIN = 1200  # 0.01 ms * 1.02**1200 ≈ 2e8 ms: everything fits

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0
        self.sum_ms = 0.0
        self.min_ms = math.inf
        self.max_ms = 0.0

    def _bin(self, value_ms: float) -> int:
        if value_ms <= self.FLOOR_MS:
            return 0
        index = int(math.log(value_ms / self.FLOOR_MS) / math.log(self.GROWTH)) + 1
        return min(index, self.MAX_BIN)

    def _bin_value(self, index: int) -> float:
        """Geometric middle of a bin (its lower edge for bin 0)."""
        if index == 0:
            return self.FLOOR_MS
        return self.FLOOR_MS * self.GROWTH ** (index - 0.5)

    def observe(self, value_ms: float) -> None:
        value_ms = max(0.0, float(value_ms))
        index = self._bin(value_ms)
        self.bins[index] = self.bins.get(index, 0) + 1
        self.count += 1
        self.sum_ms += value_ms
        self.min_ms = min(self.min_ms, value_ms)
        self.max_ms = max(self.max_ms, value_ms)

    def observe_many(self, values_ms: Iterable[float]) -> None:
        for value in values_ms:
            self.observe(value)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), or None without samples."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} outside [0, 1]")
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        running = 0
        for index in sorted(self.bins):
            running += self.bins[index]
            if running >= rank:
                return min(max(self._bin_value(index), self.min_ms), self.max_ms)
        return self.max_ms

    def merge(self, other: LatencyHistogram) -> None:
        for index, count in other.bins.items():
            self.bins[index] = self.bins.get(index, 0) + count
        self.count += other.count
        self.sum_ms += other.sum_ms
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)

    def to_dict(self) -> dict[str, object]:
        return {
            "bins": {str(k): v for k, v in sorted(self.bins.items())},
            "count": self.count,
            "sum_ms": self.sum_ms,
            "min_ms": None if self.count == 0 else self.min_ms,
            "max_ms": self.max_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LatencyHistogram:
        """Rebuild from `to_dict` output; raises ValueError on malformed input."""
        hist = cls()
        bins = data.get("bins", {})
        if not isinstance(bins, dict):
            raise ValueError("bins must be an object")
        for key, count in bins.items():
            index = int(key)
            if not 0 <= index <= cls.MAX_BIN or not isinstance(count, int) or count < 0:
                raise ValueError(f"bad bin {key}: {count}")
            hist.bins[index] = count
        hist.count = sum(hist.bins.values())
        hist.sum_ms = float(data.get("sum_ms", 0.0))  # type: ignore[arg-type]
        min_ms = data.get("min_ms")
        hist.min_ms = math.inf if min_ms is None else float(min_ms)  # type: ignore[arg-type]
        hist.max_ms = float(data.get("max_ms", 0.0))  # type: ignore[arg-type]
        return hist


# --------------------------------------------------------------------------- node metrics

COMMIT_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeMetrics:
    """Every metric a node exports, in one place."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.height = r.gauge("sedna_finalized_height", "Height of the last finalized block")
        self.round = r.gauge("sedna_current_round", "Current consensus round")
        self.rounds_entered = r.counter(
            "sedna_rounds_entered_total", "Rounds entered, by cause", ("via",)
        )
        self.tcs = r.counter("sedna_timeout_certificates_total", "Timeout certificates seen/formed")
        self.reproposals = r.counter("sedna_reproposals_total", "Reproposals observed")
        self.necs = r.counter("sedna_no_endorsement_certificates_total", "NECs formed")
        self.traces = r.counter("sedna_trace_events_total", "Core trace records by name", ("name",))
        self.committed_blocks = r.counter("sedna_committed_blocks_total", "Finalized blocks")
        self.committed_txs = r.counter("sedna_committed_txs_total", "Txs in finalized blocks")
        self.commit_latency = r.histogram(
            "sedna_commit_latency_seconds",
            "Accept-to-finality latency of txs submitted to this node",
            COMMIT_LATENCY_BUCKETS_S,
        )
        self.dropped = r.counter(
            "sedna_messages_dropped_total", "Inbound frames or events dropped", ("reason",)
        )
        self.core_dropped = r.counter(
            "sedna_core_rejected_total", "Inputs the core rejected, by reason", ("reason",)
        )
        self.transport_dropped = r.gauge(
            "sedna_transport_frames_dropped", "Frames dropped by the transport", ("reason",)
        )
        self.received = r.counter(
            "sedna_messages_received_total", "Decoded messages by peer and type", ("peer", "type")
        )
        self.sent = r.counter(
            "sedna_messages_sent_total", "Messages sent by destination and type", ("peer", "type")
        )
        self.peer_bytes_in = r.gauge(
            "sedna_peer_bytes_received", "Bytes received from a peer (transport)", ("peer",)
        )
        self.peer_bytes_out = r.gauge(
            "sedna_peer_bytes_sent", "Bytes sent to a peer (transport)", ("peer",)
        )
        self.peers_connected = r.gauge("sedna_peers_connected", "Connected validator peers")
        self.mempool_size = r.gauge("sedna_mempool_txs", "Pending txs in the mempool")
        self.txs_accepted = r.counter("sedna_txs_accepted_total", "Txs accepted over RPC")
        self.txs_rejected = r.counter(
            "sedna_txs_rejected_total", "Txs refused over RPC, by reason", ("reason",)
        )
        self.equivocations = r.counter("sedna_equivocations_total", "Equivocation evidence seen")
        self.reverts = r.counter("sedna_voted_reverts_total", "Voted blocks reverted")
        self.safety_writes = r.counter("sedna_safety_writes_total", "Durable safety-state writes")
        self.event_queue = r.gauge("sedna_event_queue_depth", "Events waiting for the core")
        self.blocks_rejected = r.counter(
            "sedna_blocks_rejected_total",
            "Blocks this node's validator refused, by reason (payload_rules, "
            "tx_repeated_in_block, tx_in_pending_ancestor, tx_already_finalized)",
            ("reason",),
        )
        self.proposals_without_txs = r.counter(
            "sedna_proposals_without_txs_total",
            "Proposals built with no txs because the chain below the parent had a gap",
        )
        self.txs_finalized_twice = r.counter(
            "sedna_txs_finalized_twice_total",
            "Txs of a finalized block that an earlier height had already finalized",
        )
        self.sync_behind = r.gauge(
            "sedna_sync_behind_blocks",
            "Highest block this node holds minus its finalized height (catching up if > 8)",
        )
        self.synced_blocks = r.counter(
            "sedna_synced_blocks_total", "Blocks received in sync responses from peers"
        )
        self.sync_requests = r.counter(
            "sedna_sync_requests_total",
            "Block-sync requests from peers, by result (served, queue_full)",
            ("result",),
        )
        self.sync_queue = r.gauge("sedna_sync_queue_depth", "Peers' sync requests waiting")
        self.fatal_errors = r.counter(
            "sedna_fatal_errors_total",
            "Exceptions that stopped the node, by stage (core, command, driver)",
            ("stage",),
        )
        # Sedna lanes
        self.bundles_accepted = r.counter(
            "sedna_bundles_accepted_total", "Bundles admitted by this node's lane"
        )
        self.bundles_rejected = r.gauge(
            "sedna_bundles_rejected_total", "Bundles refused by this node's lane", ("reason",)
        )
        self.lane_frames = r.counter(
            "sedna_lane_frames_total", "Lane blocks relayed to this node, by result", ("result",)
        )
        self.lane_blocks = r.gauge(
            "sedna_lane_blocks_total",
            "Lane blocks: sealed, relayed, received, proposed, omitted",
            ("event",),
        )
        self.lane_open_slot = r.gauge("sedna_lane_open_slot", "First slot this lane still fills")
        self.payloads_decided = r.counter(
            "sedna_payloads_decided_total", "Sedna payloads decided by the tracker", ("status",)
        )
        self.tickets_redeemed = r.counter(
            "sedna_tickets_redeemed_total", "Tickets redeemed in finalized lane blocks"
        )
        self.tracker_height = r.gauge(
            "sedna_lane_tracker_height", "Last finalized height fed to the decode tracker"
        )
        self.execution_order = r.info(
            "sedna_execution_order_info",
            "Execution-order hash after the tracker height",
            ("height", "hash"),
        )
        self.replay_mismatch = r.counter(
            "sedna_lane_replay_mismatch_total", "Replayed heights whose hash differed from disk"
        )
        self.finality = LatencyHistogram()
        self.speculative = LatencyHistogram()

    def observe_finality(self, latencies_ms: Iterable[float]) -> None:
        for value in latencies_ms:
            self.finality.observe(value)
            self.commit_latency.observe(value / 1000.0)
