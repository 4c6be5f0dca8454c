"""Node metrics in the Prometheus text format (rendered by `prometheus_client`), and a
mergeable latency histogram.

Conventions (those of `prometheus_client` and the Prometheus docs): a running count is a
counter named `..._total` (bytes: `..._bytes_total`); a gauge is a value that can go down and
never ends in `_total`; label values come from fixed sets, declared here, and every value of
a fixed set is exported from the start (at 0), so a rate over a reason that has not happened
yet is 0, not absent. A value outside its set is counted as `other`. Peer labels are
validator indices (bounded by the validator set). Nothing that changes per block is a label.

Values live in plain dicts (the hot path is one dict update) and reach the exposition
through one `prometheus_client` collector. Counts kept elsewhere (transport, lanes) are
mirrored at scrape time with `set()` on a counter that only accepts values that do not go
down.

`LatencyHistogram` keeps counts in logarithmic bins (2 % wide) so that histograms from
several nodes can be added and their quantiles read within 2 % of the exact sample
quantile; the testnet summary merges them.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

from prometheus_client import generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"  # the label value of anything outside a fixed set
MAX_LABEL_SETS = 4096  # bound on label sets of one metric (peer x type)

# ---------------------------------------------------------------------- fixed label values

# Frames and events the runtime dropped before the core (node/runtime.py).
RUNTIME_DROP_REASONS = (
    "empty_frame", "frame_too_large", "bad_version", "malformed", "not_bytes", "inbox_full",
    "internal_full", "lane_tracker_error", OTHER,
)  # fmt: skip
# Exceptions that stopped the node, by where they were raised (node/runtime.py).
FATAL_STAGES = ("core", "command", "driver")
# Peers' sync requests (node/sync_server.py).
SYNC_REQUEST_RESULTS = ("served", "queue_full")
# Blocks this node's validator refused (node/ledger.py ChainValidator).
BLOCK_REJECT_REASONS = (
    "payload_rules", "tx_repeated_in_block", "tx_in_pending_ancestor", "tx_already_finalized",
)  # fmt: skip
# Inputs the core refused, by class (core_reject_class maps the core's text to one).
CORE_REJECT_CLASSES = (
    "bad_signature", "invalid", "vote_refused", "not_validator", "not_leader",
    "wrong_author", "wrong_epoch", "stale", "future_round", "duplicate",
    "bad_sync_response", "not_started", "unexpected", "unknown_input", OTHER,
)  # fmt: skip
TX_REJECT_REASONS = ("duplicate", "already_final", "too_large", "full")
TX_FORWARD_RESULTS = ("sent", "not_connected", "backpressure", "busy")
TX_FRAME_RESULTS = ("accepted", "malformed", *TX_REJECT_REASONS)
ROUND_ENTRY = ("qc", "tc", "start")
PAYLOAD_STATUSES = ("executed", "rejected", "expired")
LANE_FRAME_RESULTS = (
    "held", "bad_version", "malformed", "not_own_lane", "slot_out_of_window", "duplicate",
    "empty", "oversized", "invalid", OTHER,
)  # fmt: skip
LANE_BLOCK_EVENTS = ("sealed", "relayed", "received", "proposed", "omitted", "backup_used")
# certified lanes' availability layer (node/availability_room.py `event_counts`)
AVAILABILITY_EVENTS = (
    "sealed", "votes_sent", "votes_received", "poa_formed", "poas_received",
    "lane_blocks_fetched", "equivocations",
)  # fmt: skip
BUNDLE_REJECT_REASONS = (
    "malformed", "oversized", "bad_commitment", "ticket_mismatch", "wrong_lane", "bad_expiry",
    "wrong_slot", "expired_ticket", "payload_expired", "duplicate_symbol", "lane_full",
    "bad_ticket_signature", "bad_proof", "fee_too_low", "insufficient_balance", OTHER,
)  # fmt: skip
# RPC requests refused before a handler answered (node/rpc.py).
RPC_REFUSAL_REASONS = (
    "bad_request", "not_found", "method_not_allowed", "unauthorized", "body_too_large",
    "body_budget", "header_timeout", "body_timeout",
    "too_many_connections", "too_many_client_connections", "internal_error", OTHER,
)  # fmt: skip


def _transport_reasons() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    from node.transport.base import (
        CONN_ERROR_REASONS,
        DROP_REASONS,
        HANDSHAKE_FAILURE_REASONS,
    )

    return DROP_REASONS, CONN_ERROR_REASONS, HANDSHAKE_FAILURE_REASONS


# Ordered (substring, class) rules; the first that matches the lower-cased text wins.
_CORE_REJECT_RULES: tuple[tuple[str, str], ...] = (
    ("already voted or timed out", "vote_refused"),
    ("sent a no-endorsement", "vote_refused"),
    ("not a validator", "not_validator"),
    ("not the leader", "not_leader"),
    ("not sent by its author", "wrong_author"),
    ("epoch", "wrong_epoch"),
    ("sync response", "bad_sync_response"),
    ("chain sync", "bad_sync_response"),
    ("synced block", "bad_sync_response"),
    ("requested block", "bad_sync_response"),
    ("future", "future_round"),
    ("past round", "stale"),
    ("stale", "stale"),
    ("at or below the finalized", "stale"),
    ("already started", "unexpected"),
    ("already", "duplicate"),
    ("duplicate", "duplicate"),
    ("not started", "not_started"),
    ("no proposal pending", "unexpected"),
    ("no vote waiting", "unexpected"),
    ("not needed", "unexpected"),
    ("is not for the round", "unexpected"),
    ("no-endorsement for round", "unexpected"),
    ("payload exceeds", "invalid"),
    ("unknown", "unknown_input"),
)
# A stateless check (certificates.Verifier) failed: "qc: ...", "round recovery: ...".
_VERIFIER_TEXT = re.compile(r"^[a-z][a-z -]*: ")


def core_reject_class(reason: str) -> str:
    """The fixed class of a core refusal text (the text itself never becomes a label).

    The core reports refusals as sentences; `tests/node/test_metrics.py` classifies every
    sentence the core and its verifier can produce, so a new one cannot fall into `other`
    unnoticed."""
    text = reason.lower()
    if "signature" in text:
        return "bad_signature"
    if _VERIFIER_TEXT.match(text):
        return "invalid"
    for needle, label in _CORE_REJECT_RULES:
        if needle in text:
            return label
    return OTHER


# ---------------------------------------------------------------------- metric types


class _Metric:
    kind = ""

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        fixed: Mapping[str, Sequence[str]] | None = None,
    ):
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.fixed = {k: tuple(v) for k, v in (fixed or {}).items()}
        if set(self.fixed) - set(self.labelnames):
            raise ValueError(f"{name}: fixed values for unknown labels")
        self._values: dict[tuple[str, ...], float] = {}
        if self.labelnames and set(self.fixed) == set(self.labelnames):
            for key in _product([self.fixed[n] for n in self.labelnames]):
                self._values[key] = 0.0  # every value of a fixed set exists from the start
        elif not self.labelnames:
            self._values[()] = 0.0

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if len(labels) != len(self.labelnames) or set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.labelnames)}")
        key = []
        for name in self.labelnames:
            value = str(labels[name])
            allowed = self.fixed.get(name)
            if allowed is not None and value not in allowed:
                value = OTHER if OTHER in allowed else allowed[-1]
            key.append(value)
        return tuple(key)

    def _slot(self, labels: Mapping[str, object]) -> tuple[str, ...] | None:
        key = self._key(labels)
        if key not in self._values and len(self._values) >= MAX_LABEL_SETS:
            return None  # bound: label sets beyond the cap are not tracked
        return key

    def value(self, **labels: object) -> float:
        return self._values.get(self._key(labels), 0.0)

    def total(self) -> float:
        return sum(self._values.values())

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        return sorted(self._values.items())

    def family(self) -> Metric:
        raise NotImplementedError


class Counter(_Metric):
    """A running count; exported as `<name>_total` (the name is given without it)."""

    kind = "counter"

    def __init__(self, name: str, *args: object, **kwargs: object):
        # As prometheus_client: the exposition adds `_total`; a name given with it is the same.
        super().__init__(name.removesuffix("_total"), *args, **kwargs)  # type: ignore[arg-type]

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up")
        key = self._slot(labels)
        if key is not None:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set(self, value: float, **labels: object) -> None:
        """Mirror a count kept elsewhere (read at scrape time); a lower value than before
        is that count's reset, which Prometheus's rate() handles like a restart."""
        if value < 0:
            raise ValueError(f"{self.name}: a count is never negative")
        key = self._slot(labels)
        if key is not None:
            self._values[key] = float(value)

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        for key, value in sorted(self._values.items()):
            family.add_metric(list(key), value)
        return family


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name: str, *args: object, **kwargs: object):
        if name.endswith("_total"):
            raise ValueError(f"{name}: a gauge is never named _total")
        super().__init__(name, *args, **kwargs)  # type: ignore[arg-type]

    def set(self, value: float, **labels: object) -> None:
        key = self._slot(labels)
        if key is not None:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        key = self._slot(labels)
        if key is not None:
            self._values[key] = self._values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = GaugeMetricFamily(self.name, self.help, labels=self.labelnames)
        for key, value in sorted(self._values.items()):
            family.add_metric(list(key), value)
        return family


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

    def observe(self, value: float, count: int = 1) -> None:
        """Record `value` (`count` times: several events with one value)."""
        if count < 1:
            return
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += count
                break
        self.count += count
        self.sum += value * count

    def family(self) -> Metric:
        running = 0
        buckets = []
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
        return HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=self.sum)


class Registry:
    """The metrics of one node; `render()` is the Prometheus text exposition."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)  # type: ignore[arg-type]

    def add(self, metric: _Metric) -> _Metric:
        """Register a metric built outside the helpers below (a subclass with behaviour)."""
        return self._add(metric)

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        fixed: Mapping[str, Sequence[str]] | None = None,
    ) -> Counter:
        metric = self._add(Counter(name, help_text, labelnames, fixed))
        assert isinstance(metric, Counter)
        return metric

    def gauge(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        fixed: Mapping[str, Sequence[str]] | None = None,
    ) -> Gauge:
        metric = self._add(Gauge(name, help_text, labelnames, fixed))
        assert isinstance(metric, Gauge)
        return metric

    def histogram(self, name: str, help_text: str, buckets: Sequence[float]) -> Histogram:
        metric = self._add(Histogram(name, help_text, buckets))
        assert isinstance(metric, Histogram)
        return metric

    def sample_names(self) -> set[str]:
        """Every sample name the exposition can hold, whether or not it has a value yet
        (`<name>_total` for counters, `_bucket`/`_sum`/`_count` for histograms)."""
        names: set[str] = set()
        for metric in self._metrics.values():
            if metric.kind == "counter":
                names.add(f"{metric.name}_total")
            elif metric.kind == "histogram":
                names.update(f"{metric.name}{s}" for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(metric.name)
        return names

    def collect(self) -> Iterator[Metric]:
        """The `prometheus_client` collector protocol."""
        for metric in self._metrics.values():
            yield metric.family()

    def render(self) -> str:
        return generate_latest(self._registry).decode()


def _product(values: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [()]
    for options in values:
        keys = [(*key, option) for key in keys for option in options]
    return keys


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
DECODE_DELAY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
MAX_STAMPED_HEIGHTS = 4096  # finalization times kept for the decode delay
HASH_PREFIX_BYTES = 6  # 48 bits: exact in a float64 sample value


class _FinalizedHeight(Gauge):
    """`sedna_finalized_height`, which also remembers when each height became final here.

    Only heights finalized while this process runs are stamped: the first value set after
    a start stamps that height alone (the heights below were final before the restart).
    At most MAX_STAMPED_HEIGHTS stamps are kept (the oldest go first)."""

    def __init__(self, name: str, help_text: str):
        super().__init__(name, help_text)
        self.final_at_s: dict[int, float] = {}  # height -> time.monotonic() when final
        self._stamped_up_to: int | None = None

    def set(self, value: float, **labels: object) -> None:
        super().set(value, **labels)
        height = int(value)
        low = height - 1 if self._stamped_up_to is None else self._stamped_up_to
        now_s = time.monotonic()
        for h in range(max(low + 1, height - MAX_STAMPED_HEIGHTS + 1), height + 1):
            self.final_at_s[h] = now_s
        self._stamped_up_to = max(height, self._stamped_up_to or 0)
        while len(self.final_at_s) > MAX_STAMPED_HEIGHTS:
            del self.final_at_s[next(iter(self.final_at_s))]


class _TrackerProgress:
    """The decode tracker's progress, set once per tracked block (after the block's
    payloads were counted in `sedna_payloads_decided_total`).

    - The execution-order hash as a number (its first 48 bits) and its height: a label
      per hash would make a new series every block; two nodes agree at a height when
      their `sedna_lane_execution_order_hash_prefix` values are equal there.
    - The decode delay: the payloads decided since the previous call were decided in this
      block, so each is one observation of (now - the time the block became final here),
      in `sedna_lane_decode_delay_seconds`. Blocks finalized before this process started
      (a restart's replay) have no time and are not observed.
    """

    def __init__(
        self,
        prefix: Gauge,
        height: Gauge,
        finalized: _FinalizedHeight,
        decided: Counter,
        delay: Histogram,
    ):
        self._prefix = prefix
        self._height = height
        self._finalized = finalized
        self._decided = decided
        self._delay = delay
        self._decided_seen = 0.0

    def set(self, *, height: int, hash: str) -> None:
        self._height.set(height)
        self._prefix.set(int(hash[: 2 * HASH_PREFIX_BYTES] or "0", 16))
        decided = self._decided.total()
        new = int(decided - self._decided_seen)
        self._decided_seen = decided
        final_at_s = self._finalized.final_at_s.pop(height, None)
        if final_at_s is not None and new > 0:
            self._delay.observe(max(0.0, time.monotonic() - final_at_s), new)


class NodeMetrics:
    """Every metric a node exports, in one place (docs/operations.md lists them)."""

    def __init__(self) -> None:
        drop_reasons, conn_error_reasons, handshake_reasons = _transport_reasons()
        r = self.registry = Registry()
        self.height = _FinalizedHeight(
            "sedna_finalized_height", "Height of the last finalized block"
        )
        r.add(self.height)
        self.round = r.gauge("sedna_current_round", "Current consensus round")
        self.rounds_entered = r.counter(
            "sedna_rounds_entered", "Rounds entered, by cause", ("via",), {"via": ROUND_ENTRY}
        )
        self.tcs = r.counter("sedna_timeout_certificates", "Timeout certificates seen/formed")
        self.reproposals = r.counter("sedna_reproposals", "Reproposals observed")
        self.necs = r.counter("sedna_no_endorsement_certificates", "NECs formed")
        self.traces = r.counter("sedna_trace_events", "Core trace records by name", ("name",))
        self.committed_blocks = r.counter("sedna_committed_blocks", "Finalized blocks")
        self.committed_txs = r.counter("sedna_committed_txs", "Txs in finalized blocks")
        self.commit_latency = r.histogram(
            "sedna_commit_latency_seconds",
            "Accept-to-finality latency of txs submitted to this node",
            COMMIT_LATENCY_BUCKETS_S,
        )
        self.dropped = r.counter(
            "sedna_messages_dropped",
            "Inbound frames or events dropped before the core, by reason",
            ("reason",),
            {"reason": RUNTIME_DROP_REASONS},
        )
        self.core_dropped = _CoreRejections(
            r.counter(
                "sedna_core_rejected",
                "Inputs the core refused, by class",
                ("reason",),
                {"reason": CORE_REJECT_CLASSES},
            )
        )
        self.transport_dropped = r.counter(
            "sedna_transport_frames_dropped",
            "Frames dropped by the transport, by reason",
            ("reason",),
            {"reason": drop_reasons},
        )
        self.handshake_failures = r.counter(
            "sedna_transport_handshake_failures",
            "Peer connections that never authenticated, by reason",
            ("reason",),
            {"reason": handshake_reasons},
        )
        self.connection_errors = r.counter(
            "sedna_transport_connection_errors",
            "Authenticated peer connections closed for a protocol error, by reason",
            ("reason",),
            {"reason": conn_error_reasons},
        )
        self.received = r.counter(
            "sedna_messages_received", "Decoded messages by peer and type", ("peer", "type")
        )
        self.sent = r.counter(
            "sedna_messages_sent", "Messages sent by destination and type", ("peer", "type")
        )
        self.peer_bytes_in = r.counter(
            "sedna_peer_received_bytes", "Bytes received from a peer (transport)", ("peer",)
        )
        self.peer_bytes_out = r.counter(
            "sedna_peer_sent_bytes", "Bytes sent to a peer (transport)", ("peer",)
        )
        self.peers_connected = r.gauge("sedna_peers_connected", "Connected validator peers")
        self.mempool_size = r.gauge("sedna_mempool_txs", "Pending txs in the mempool")
        self.txs_accepted = r.counter("sedna_txs_accepted", "Txs accepted over RPC")
        self.txs_rejected = r.counter(
            "sedna_txs_rejected",
            "Txs refused over RPC, by reason",
            ("reason",),
            {"reason": TX_REJECT_REASONS},
        )
        self.txs_forwarded = r.counter(
            "sedna_txs_forwarded",
            "Txs forwarded to a next leader (per target), by result (node/txforward.py)",
            ("result",),
            {"result": TX_FORWARD_RESULTS},
        )
        self.forwarded_txs_received = r.counter(
            "sedna_forwarded_txs_received",
            "Txs received in forwarded-tx frames, by result",
            ("result",),
            {"result": TX_FRAME_RESULTS},
        )
        self.equivocations = r.counter("sedna_equivocations", "Equivocation evidence seen")
        self.reverts = r.counter("sedna_voted_reverts", "Voted blocks reverted")
        self.safety_writes = r.counter("sedna_safety_writes", "Durable safety-state writes")
        self.event_queue = r.gauge("sedna_event_queue_depth", "Events waiting for the core")
        self.fatal_errors = r.counter(
            "sedna_fatal_errors",
            "Exceptions that stopped the node, by stage (core, command, driver)",
            ("stage",),
            {"stage": FATAL_STAGES},
        )
        # Catch-up and sync serving
        self.sync_behind = r.gauge(
            "sedna_sync_behind_blocks",
            "Highest block this node holds minus its finalized height (catching up if > 8)",
        )
        self.synced_blocks = r.counter(
            "sedna_synced_blocks", "Blocks received in sync responses from peers"
        )
        self.sync_requests = r.counter(
            "sedna_sync_requests",
            "Peers' block-sync requests, by result (served, queue_full)",
            ("result",),
            {"result": SYNC_REQUEST_RESULTS},
        )
        self.sync_queue = r.gauge("sedna_sync_queue_depth", "Peers' sync requests waiting")
        # TX-ONCE
        self.blocks_rejected = r.counter(
            "sedna_blocks_rejected",
            "Blocks this node's validator refused, by reason",
            ("reason",),
            {"reason": BLOCK_REJECT_REASONS},
        )
        self.txs_finalized_twice = r.counter(
            "sedna_txs_finalized_twice",
            "Txs of a finalized block that an earlier height had already finalized",
        )
        self.proposals_without_txs = r.counter(
            "sedna_proposals_without_txs",
            "Proposals built with no txs because the chain below the parent had a gap",
        )
        # RPC
        self.rpc_refused = r.counter(
            "sedna_rpc_refused",
            "RPC requests or connections refused before a handler answered, by reason",
            ("reason",),
            {"reason": RPC_REFUSAL_REASONS},
        )
        self.rpc_connections = r.gauge("sedna_rpc_connections", "Open RPC client connections")
        self.rpc_body_bytes = r.gauge(
            "sedna_rpc_body_bytes_in_flight", "Request body bytes reserved by requests in progress"
        )
        # Sedna lanes
        self.bundles_accepted = r.counter(
            "sedna_bundles_accepted", "Bundles admitted by this node's lane"
        )
        self.bundles_rejected = r.counter(
            "sedna_bundles_rejected",
            "Bundles refused by this node's lane, by reason",
            ("reason",),
            {"reason": BUNDLE_REJECT_REASONS},
        )
        self.lane_frames = r.counter(
            "sedna_lane_frames",
            "Lane blocks relayed to this node, by result",
            ("result",),
            {"result": LANE_FRAME_RESULTS},
        )
        self.lane_blocks = r.counter(
            "sedna_lane_blocks",
            "Lane blocks by event: sealed, relayed, received, proposed, omitted, backup_used",
            ("event",),
            {"event": LANE_BLOCK_EVENTS},
        )
        self.lane_open_slot = r.gauge("sedna_lane_open_slot", "First slot this lane still fills")
        self.availability = r.counter(
            "sedna_availability_events",
            "Certified lanes: own lane blocks sealed, availability votes sent and received "
            "(valid, for own blocks), PoAs formed (own) and received, lane blocks fetched, "
            "equivocations seen (0 in carried mode)",
            ("event",),
            {"event": AVAILABILITY_EVENTS},
        )
        self.payloads_decided = r.counter(
            "sedna_payloads_decided",
            "Sedna payloads decided by the tracker, by status",
            ("status",),
            {"status": PAYLOAD_STATUSES},
        )
        self.tickets_redeemed = r.counter(
            "sedna_tickets_redeemed", "Tickets redeemed in finalized lane blocks"
        )
        self.tracker_height = r.gauge(
            "sedna_lane_tracker_height", "Last finalized height fed to the decode tracker"
        )
        self.decode_delay = r.histogram(
            "sedna_lane_decode_delay_seconds",
            "A block final on this node -> its Sedna payloads decided by this node's tracker "
            "(one observation per payload)",
            DECODE_DELAY_BUCKETS_S,
        )
        self.execution_order = _TrackerProgress(
            r.gauge(
                "sedna_lane_execution_order_hash_prefix",
                "First 48 bits of the execution-order hash after the tracker height",
            ),
            self.tracker_height,
            self.height,
            self.payloads_decided,
            self.decode_delay,
        )
        self.replay_mismatch = r.counter(
            "sedna_lane_replay_mismatch", "Replayed heights whose hash differed from disk"
        )
        # the lanes' ledger (with a [ledger] section), after the tracker height
        self.ledger_hash_prefix = r.gauge(
            "sedna_lanes_ledger_hash_prefix",
            "First 48 bits of the lanes' ledger digest after the tracker height",
        )
        self.ledger_totals = r.gauge(
            "sedna_lanes_ledger_amount",
            "The lanes' ledger running totals: fees_charged, bounties_paid, burned",
            ("kind",),
            {"kind": ("fees_charged", "bounties_paid", "burned")},
        )
        self.finality = LatencyHistogram()
        self.speculative = LatencyHistogram()

    def observe_ledger(self, ledger_hash: bytes, fees: int, bounties: int, burned: int) -> None:
        self.ledger_hash_prefix.set(int.from_bytes(ledger_hash[:HASH_PREFIX_BYTES], "big"))
        self.ledger_totals.set(fees, kind="fees_charged")
        self.ledger_totals.set(bounties, kind="bounties_paid")
        self.ledger_totals.set(burned, kind="burned")

    def observe_finality(self, latencies_ms: Iterable[float]) -> None:
        for value in latencies_ms:
            self.finality.observe(value)
            self.commit_latency.observe(value / 1000.0)


class _CoreRejections:
    """`core_dropped`: takes the core's refusal text, counts it under its fixed class."""

    def __init__(self, counter: Counter):
        self.counter = counter

    def inc(self, amount: float = 1.0, *, reason: str) -> None:
        self.counter.inc(amount, reason=core_reject_class(reason))

    def value(self, *, reason: str) -> float:
        return self.counter.value(reason=reason)

    def total(self) -> float:
        return self.counter.total()

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        return self.counter.items()
