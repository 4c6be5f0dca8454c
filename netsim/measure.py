"""Lane measurements of netsim runs in the terms of the mechanism model (no model here).

A run's payloads are measured by their `decode_slot_delay` (the lag T_chain − t*) and the
cartel's lead (T_chain − T_cart), with the leader of each payload's first slot. The
model (`mechanism.lanechain`, docs/mechanism.md §6 and §16; compared in
`mechanism.agreement`) assumes round-robin leaders with no timeouts (the payload's j-th
slot is led by validator first_leader + j − 1 mod N) and q = 1: a payload any of whose
heights (first slot up to its decode, or up to the model's horizon) was led by another
validator is left out and counted, and q = 1 is checked (no bundle rejected or lost).

T_cart (carried lanes): the first slot by whose end the cartel held κ of the payload's
bundles: those the chain finalized (their ticket slots) and those its lanes withheld
(their slots, from the cartel's pool). Censoring leaders' omitted lane blocks are not
counted (the lead is reported for withholding cartels only). The lead is measured, not
assumed: for every decoded payload the cartel withheld from, its bundles held by the end
of T_cart (the chain's symbols from the sender's encoding, the withheld ones from the
cartel's pool) are decoded against the commitment (`private_decodes`; a failure is a
problem of the run).

netsim does not import mechanism (tests/test_layering.py): this module hands plain
numbers to whoever compares them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensus.lanes.encoding import decode_payload
from netsim.runner import run_scenario
from netsim.scenario import Scenario, parse_scenario_text

MAX_PAYLOADS_PER_RUN = 100_000


@dataclass
class Measured:
    """Payloads of one or more runs, as the model sees them."""

    lanes: int
    first_leaders: list[int] = field(default_factory=list)
    lags: list[int | None] = field(default_factory=list)  # None: not executed
    leads: list[int | None] = field(default_factory=list)  # None: not executed
    left_out: int = 0  # payloads whose heights left the round-robin schedule
    lane_blocks_omitted: dict[int, int] = field(default_factory=dict)
    report_lanes: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # violations, q < 1: not comparable
    runs: int = 0
    private_decodes: int = 0  # payloads the cartel's pool decoded at T_cart (checked)

    @property
    def payloads(self) -> int:
        return len(self.lags)

    def at_least(self, ell: int) -> int:
        """Payloads with lag >= ell (not executed counts as beyond any lag)."""
        return sum(1 for lag in self.lags if lag is None or lag >= ell)

    def merge(self, other: Measured) -> None:
        """Add another run's payloads (in order: merging in seed order is deterministic)."""
        self.first_leaders += other.first_leaders
        self.lags += other.lags
        self.leads += other.leads
        self.left_out += other.left_out
        for leader, count in other.lane_blocks_omitted.items():
            self.lane_blocks_omitted[leader] = self.lane_blocks_omitted.get(leader, 0) + count
        self.report_lanes = other.report_lanes or self.report_lanes
        self.problems += other.problems
        self.runs += other.runs
        self.private_decodes += other.private_decodes


def chain_authors(run: Any, node: int) -> dict[int, int]:
    """Height -> author of the block `node` finalized there."""
    disk = run.sim.hosts[node].disk
    return {height: disk.blocks[block_id][0].header.author for height, block_id in disk.finalized}


def round_robin_leader(authors: dict[int, int], first: int, last: int, n: int) -> int | None:
    """The leader of height `first` if heights first..last were led round robin (the
    model's schedule, §16: validator first_leader + j − 1 mod n leads the j-th slot);
    None if a timeout shifted the schedule there or a height is not finalized."""
    first_leader = authors.get(first)
    if first_leader is None:
        return None
    for height in range(first, last + 1):  # bounded: the payload's window
        if authors.get(height) != (first_leader + height - first) % n:
            return None
    return first_leader


def measure_run(scenario: Scenario, seed: int, max_lag: int) -> Measured:
    """Run `scenario` with `seed` and collect every started payload's first leader, lag
    and lead, leaving out payloads whose schedule was not round robin. What makes the run
    incomparable with the model (a violation, a bundle rejected or lost) is listed in
    `problems`."""
    n = scenario.validators
    honest = min(set(range(n)) - scenario.byzantine_nodes)
    measured = Measured(lanes=n, runs=1)
    run = run_scenario(scenario, seed=seed)
    report = run.report()
    lanes = run.lanes
    assert lanes is not None, "the scenario has no [lanes]"
    if report["violations"]:
        measured.problems.append(f"seed {seed}: violations {report['violations'][:3]}")
    rejected = {k: v for k, v in report["bundles_rejected"].items() if v}
    if rejected:  # q = 1: every bundle reached its lane in its slot
        measured.problems.append(f"seed {seed}: bundles rejected {rejected}")
    if report["lanes"]["bundles_lost"]:
        measured.problems.append(f"seed {seed}: {report['lanes']['bundles_lost']} bundles lost")
    authors = chain_authors(run, honest)
    withheld: dict[bytes, list[int]] = {}
    for _lane, slot, cid, _index in lanes.pool.withheld:
        withheld.setdefault(cid, []).append(slot)
    kappa = lanes.kappa
    for record in lanes.records[:MAX_PAYLOADS_PER_RUN]:
        if record.status == "scheduled":
            continue
        lag = lanes.decode_slot_delay(record)
        last = (
            record.decided_height
            if lag is not None
            else record.first_slot + lanes.t_star + max_lag - 1
        )
        first_leader = round_robin_leader(authors, record.first_slot, last, n)
        if first_leader is None:
            measured.left_out += 1
            continue
        lead = None
        if lag is not None and record.decided_height is not None:
            held = sorted([*record.redeemed_slots, *withheld.get(record.cid, [])])
            t_cart = held[kappa - 1] if len(held) >= kappa else record.decided_height
            lead = record.decided_height - min(t_cart, record.decided_height)
            if record.cid in withheld:
                if private_decode(lanes, record, t_cart):
                    measured.private_decodes += 1
                else:
                    measured.problems.append(
                        f"seed {seed}: {record.label}: the cartel's pool does not decode "
                        f"at slot {t_cart}"
                    )
        measured.first_leaders.append(first_leader)
        measured.lags.append(lag)
        measured.leads.append(lead)
    for leader, count in report["lanes"]["lane_blocks_omitted"].items():
        key = int(leader)
        measured.lane_blocks_omitted[key] = measured.lane_blocks_omitted.get(key, 0) + count
    measured.report_lanes = report["lanes"]
    return measured


def private_decode(lanes: Any, record: Any, t_cart: int) -> bool:
    """Does what the cartel held of `record`'s payload by the end of slot `t_cart` (its
    finalized bundles and the pool's withheld ones) decode against the commitment?"""
    outgoing = record.outgoing.payloads.get(record.cid) if record.outgoing else None
    if outgoing is None:
        return False
    encoded = outgoing.encoded
    pooled = lanes.pool.bundles(record.cid)
    slot_of = {index: slot for _l, slot, cid, index in lanes.pool.withheld if cid == record.cid}
    merged: dict[int, Sequence[bytes]] = {
        index: bundle.symbols
        for index, bundle in pooled.items()
        if slot_of.get(index, t_cart + 1) <= t_cart
    }
    for slot, index in record.redeemed_bundles:
        if slot <= t_cart:
            merged[index] = encoded.bundles[index].symbols
    result = decode_payload(encoded.layout, encoded.commitment, merged)
    return result.status == "decoded"


def measure(scenario: Scenario, seeds: Iterable[int], max_lag: int) -> Measured:
    """`measure_run` for every seed, merged in seed order."""
    total = Measured(lanes=scenario.validators)
    for seed in seeds:
        total.merge(measure_run(scenario, seed, max_lag))
    return total


def measure_task(item: tuple[str, int, int]) -> Measured:
    """A campaign task: (scenario TOML text, seed, max_lag) -> its measurement."""
    text, seed, max_lag = item
    return measure_run(parse_scenario_text(text), seed, max_lag)


def lanes_scenario_text(
    *,
    kappa: int,
    m: int,
    byzantine: dict[int, Sequence[str]],
    senders: int,
    payloads: int = 40,
    ratchet: bool = False,
    policy: str = "fresh",
    validators: int = 7,
    strategy: str | None = None,
    theta: int | None = None,
    until_blocks: int = 130,
    until_ms: int = 60000,
) -> str:
    """`validators` nodes, no timeouts (latency U(1, 20) ms, Δ = 100 ms), one payload every
    2 slots per sender, lookahead and feedback 4 slots, carried lanes (the model's mode:
    certified senders learn outcomes two slots later). `strategy`/`theta`: the cartel's
    (for its withhold_bundles tables)."""
    lines = [
        f"validators = {validators}",
        f"until_ms = {until_ms}",
        f"until_blocks = {until_blocks}",
        "[network]",
        "latency_ms = [1, 20]",
        "delta_ms = 100",
        "[lanes]",
        'dissemination = "carried"',
        f"payloads = {payloads}",
        "payload_bytes = 2048",
        f"kappa = {kappa}",
        f"bundles_per_slot = {m}",
        f'policy = "{policy}"',
        f"senders = {senders}",
        "interval_slots = 2",
    ]
    if ratchet:
        lines.append('ratchet_policy = "keep_redeemed"')
    for node, behaviours in sorted(byzantine.items()):
        for behaviour in behaviours:
            lines += ["[[byzantine]]", f"node = {node}", f'behaviour = "{behaviour}"']
            if behaviour == "withhold_bundles" and strategy is not None:
                lines.append(f'strategy = "{strategy}"')
                if theta is not None:
                    lines.append(f"theta = {theta}")
    return "\n".join(lines) + "\n"


def lanes_scenario(**kwargs: Any) -> Scenario:
    """`lanes_scenario_text`, parsed."""
    return parse_scenario_text(lanes_scenario_text(**kwargs))
