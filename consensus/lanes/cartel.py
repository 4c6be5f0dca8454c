"""Withholding cartels: what a cartel holds, and which of it each strategy withholds.

Pure (no clock, no randomness, no I/O). One `CartelBook` per cartel view: netsim shares
one object among the cartel's lanes; a node process keeps its own and feeds it the
holdings its cartel peers report over their side channel (the same decisions follow
from the same holdings). The mechanism model of each strategy (docs/cartels.md,
`mechanism.lanechain`) reads the same `decide`.

**What the cartel observes.** Every bundle a member lane admitted (its *holdings*): the
payload (commitment id, κ), the slot of its ticket and its stream index. From its own
pool it knows, per payload and slot, X = the bundles of that slot addressed to any
cartel lane, and P = the bundles of that payload it withheld in earlier slots. It knows
the senders' public policy m (bundles per slot, fresh stream indices in order from the
payload's first slot), so the payload's slot index is j = ⌊min index of the slot⌋ / m + 1
and t* = ⌈κ/m⌉, Δ = t*·m − κ (the slack).

**Strategies** (one decision per payload and slot: withhold every held bundle of it, or
none; docs/mechanism.md §12 for the first three):

- `withhold_all`: always.
- `threshold` (θ, default Δ + 1): iff X >= θ.
- `last_slot`: iff j >= t* (include before the honest horizon, withhold from it on).
- `adaptive`: iff P + X >= m·max(j, t*) − κ + 1: the pool, with this slot's holdings,
  keeps the chain short of κ at the end of slot max(j, t*) (with every addressed bundle
  included but the pooled ones, the chain holds m·j − P − X after slot j). It withholds
  only while denial is still possible and includes (earning the fee) once it is not.

A decision is taken once per (payload, slot), when the first member seals that slot,
and remembered, so every member acts alike even if a holding arrives after it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

STRATEGIES = ("withhold_all", "threshold", "last_slot", "adaptive")
MAX_PAYLOADS = 65_536  # payloads a book remembers (oldest first out)
MAX_SLOTS_PER_PAYLOAD = 4_096  # slots of one payload a book remembers


class CartelStrategyError(ValueError):
    """An unknown strategy or an option it does not take."""


@dataclass(frozen=True, slots=True)
class CartelStrategy:
    """A strategy and the public facts it needs: m, the senders' bundles per slot
    (required by all but `withhold_all`), θ (`threshold` only)."""

    kind: str = "withhold_all"
    m: int | None = None
    theta: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in STRATEGIES:
            raise CartelStrategyError(
                f"unknown cartel strategy {self.kind!r}; choose one of {list(STRATEGIES)}"
            )
        if self.m is not None and self.m < 1:
            raise CartelStrategyError(f"m must be >= 1, got {self.m}")
        if self.kind != "withhold_all" and self.m is None:
            raise CartelStrategyError(f"strategy {self.kind!r} needs m (bundles per slot)")
        if self.theta is not None:
            if self.kind != "threshold":
                raise CartelStrategyError(f"theta is an option of 'threshold', not {self.kind!r}")
            if self.theta < 1:
                raise CartelStrategyError(f"theta must be >= 1, got {self.theta}")

    def t_star(self, kappa: int) -> int:
        assert self.m is not None
        return -(-kappa // self.m)

    def theta_for(self, kappa: int) -> int:
        """θ, or Δ + 1 when not given."""
        if self.theta is not None:
            return self.theta
        assert self.m is not None
        return self.t_star(kappa) * self.m - kappa + 1

    def describe(self) -> str:
        if self.kind == "threshold":
            return f"threshold(theta={self.theta if self.theta is not None else 'Δ+1'})"
        return self.kind


def parse_strategy(kind: str, options: Mapping[str, object], m: int | None) -> CartelStrategy:
    """A strategy from its name and options (`theta`, or `threshold` as the testnet's
    `--byzantine withhold_bundles:NODES:strategy=threshold:threshold=2` spells it), m from
    the senders' policy. Unknown names and options raise `CartelStrategyError`."""
    known = {"theta", "threshold"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise CartelStrategyError(f"unknown cartel strategy option(s) {unknown}; known: theta")
    if "theta" in options and "threshold" in options:
        raise CartelStrategyError("give theta or threshold, not both")
    theta = options.get("theta", options.get("threshold"))
    if theta is not None:
        if isinstance(theta, str):
            try:
                theta = int(theta)
            except ValueError:
                raise CartelStrategyError(f"theta must be an integer, got {theta!r}") from None
        if isinstance(theta, bool) or not isinstance(theta, int):
            raise CartelStrategyError(f"theta must be an integer, got {theta!r}")
    return CartelStrategy(kind, m=m, theta=theta)


@dataclass(frozen=True, slots=True)
class SlotView:
    """What the cartel knows of one payload when it seals one slot.

    j: the payload's slot index (1 = its first slot); holdings: X, its bundles of this
    slot held by cartel lanes; pooled: P, its bundles the cartel withheld in earlier slots.
    """

    kappa: int
    j: int
    holdings: int
    pooled: int


def decide(strategy: CartelStrategy, view: SlotView) -> bool:
    """Withhold this slot's holdings of this payload (all of them), or none."""
    kind = strategy.kind
    if kind == "withhold_all":
        return True
    if kind == "threshold":
        return view.holdings >= strategy.theta_for(view.kappa)
    assert strategy.m is not None
    t_star = strategy.t_star(view.kappa)
    if kind == "last_slot":
        return view.j >= t_star
    if kind == "adaptive":
        return view.pooled + view.holdings >= strategy.m * max(view.j, t_star) - view.kappa + 1
    raise CartelStrategyError(f"unknown cartel strategy {kind!r}")


@dataclass
class _Payload:
    kappa: int
    holdings: dict[int, set[int]]  # slot -> stream indices held by cartel lanes
    withheld: dict[int, set[int]]  # slot -> stream indices withheld
    decisions: dict[int, bool]  # slot -> withhold?


class CartelBook:
    """The cartel's holdings per payload and slot, and its decisions (bounded)."""

    def __init__(self, strategy: CartelStrategy | None = None, max_payloads: int = MAX_PAYLOADS):
        self.strategy = strategy or CartelStrategy()
        self.max_payloads = max_payloads
        self._payloads: OrderedDict[bytes, _Payload] = OrderedDict()
        self.forgotten = 0  # payloads evicted to keep the bound

    def _payload(self, cid: bytes, kappa: int) -> _Payload:
        entry = self._payloads.get(cid)
        if entry is None:
            entry = _Payload(kappa, {}, {}, {})
            self._payloads[cid] = entry
            while len(self._payloads) > self.max_payloads:
                self._payloads.popitem(last=False)
                self.forgotten += 1
        return entry

    def hold(self, cid: bytes, kappa: int, slot: int, index: int) -> None:
        """A member lane admitted bundle `index` of payload `cid` for `slot` (or a peer
        reported it). Idempotent."""
        entry = self._payload(cid, kappa)
        if slot not in entry.holdings and len(entry.holdings) >= MAX_SLOTS_PER_PAYLOAD:
            return
        entry.holdings.setdefault(slot, set()).add(index)

    def view(self, cid: bytes, slot: int) -> SlotView | None:
        """The cartel's view of payload `cid` at `slot` (None: it holds nothing of it)."""
        entry = self._payloads.get(cid)
        if entry is None or not entry.holdings.get(slot):
            return None
        held = entry.holdings[slot]
        m = self.strategy.m
        j = min(held) // m + 1 if m is not None else 1
        pooled = sum(len(ix) for s, ix in entry.withheld.items() if s < slot)
        return SlotView(entry.kappa, j, len(held), pooled)

    def decide(self, cid: bytes, slot: int) -> bool:
        """The (remembered) decision for payload `cid` at `slot`."""
        entry = self._payloads.get(cid)
        if entry is not None and slot in entry.decisions:
            return entry.decisions[slot]
        view = self.view(cid, slot)
        if view is None or entry is None:
            return self.strategy.kind == "withhold_all"
        verdict = decide(self.strategy, view)
        entry.decisions[slot] = verdict
        return verdict

    def withhold(self, slot: int, keys: Iterable[tuple[bytes, int, int]]) -> set[tuple[bytes, int]]:
        """Which of one member's entries for `slot`, given as (cid, κ, index), to
        withhold; records them as withheld."""
        out: set[tuple[bytes, int]] = set()
        for cid, kappa, index in keys:
            self.hold(cid, kappa, slot, index)
            if self.decide(cid, slot):
                entry = self._payload(cid, kappa)
                entry.withheld.setdefault(slot, set()).add(index)
                out.add((cid, index))
        return out

    def pooled(self, cid: bytes) -> int:
        """Bundles of `cid` the cartel withheld so far."""
        entry = self._payloads.get(cid)
        return 0 if entry is None else sum(len(ix) for ix in entry.withheld.values())

    def decisions(self, cid: bytes) -> dict[int, bool]:
        entry = self._payloads.get(cid)
        return {} if entry is None else dict(entry.decisions)
