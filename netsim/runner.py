"""Run a scenario: build validators, cores, network, faults and checkers; return a report.

Keys are derived deterministically from the validator index (`derive_keys(n, KEY_SEED)`),
so the same scenario always has the same validator set; the scenario seed drives only
the simulation's random streams. A restarted node is rebuilt from its simulated disk:
the last persisted `SafetyState` (round-tripped through its canonical bytes, as a real
store would), the blocks `PersistBlock` wrote, and its finalized head.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from consensus import codec
from consensus.certificates import InvalidMessage, Signer, Verifier
from consensus.crypto import derive_keys, scheme_by_name
from consensus.events import CommitBlocks
from consensus.messages import (
    GENESIS_BLOCK_ID,
    NoEndorsementCertificate,
    NoTipCertificate,
    QuorumCertificate,
    TimeoutCertificate,
)
from consensus.validators import ValidatorSet, schedule_by_name
from netsim.byzantine import LANE_BEHAVIOURS, ByzantineMachine
from netsim.engine import Disk, Observer, RunResult, Simulator, derive_rng
from netsim.faults import Crash, Pause
from netsim.invariants import CheckerContext, ProtocolChecker
from netsim.network import Network
from netsim.scenario import Scenario
from netsim.verify_cache import SharedVerification

KEY_SEED = b"sedna-netsim"
CHAIN_ID = "sedna-netsim"  # every simulated signature is for this chain (consensus.crypto)
LIVENESS_ROUND_TIMERS = 30  # default liveness bound: this many round timers


@dataclass
class World:
    """Everything a run is built from (shared by runs, Twins and stateful tests)."""

    scenario: Scenario
    validators: ValidatorSet
    schedule: Any
    scheme: Any
    keys: list[Any]
    config: Any  # CoreConfig
    verifier: Verifier

    @property
    def round_timer_ms(self) -> float:
        s = self.scenario
        if s.round_timeout_ms is not None:
            return s.round_timeout_ms
        return 4 * s.delta_ms + s.vote_pace_ms


def build_world(scenario: Scenario, test_mutations: Iterable[str] = ()) -> World:
    from consensus.core import CoreConfig

    keys = derive_keys(scenario.validators, KEY_SEED)
    validators = ValidatorSet.from_keys([k.public for k in keys], scenario.stakes)
    schedule = schedule_by_name(scenario.schedule, validators)
    scheme: Any = scheme_by_name(
        "ed25519" if scenario.scheme == "ed25519" else "trusted", chain_id=CHAIN_ID
    )
    if scenario.verification == "shared":  # one cache for every node (netsim.verify_cache)
        scheme = SharedVerification(scheme)
    config = CoreConfig(
        protocol=scenario.protocol,  # type: ignore[arg-type]
        delta_ms=scenario.delta_ms,
        vote_pace_ms=scenario.vote_pace_ms,
        round_timeout_ms=scenario.round_timeout_ms,
        timeout_backoff=scenario.timeout_backoff,
        max_round_timeout_ms=scenario.max_round_timeout_ms,
        test_mutations=frozenset(test_mutations),
    )
    verifier = Verifier(validators, schedule, scheme, protocol=scenario.protocol)
    return World(scenario, validators, schedule, scheme, keys, config, verifier)


def recovered_state(disk: Disk) -> Any:
    """What a restarted node is built from: exactly what its persist commands wrote."""
    from consensus.core import RecoveredState
    from consensus.safety import SafetyState

    safety = SafetyState()
    if disk.safety is not None:
        safety = msgspec.msgpack.decode(codec.encode(disk.safety), type=SafetyState)
    finalized_id, finalized_height = GENESIS_BLOCK_ID, 0
    if disk.finalized:
        finalized_height, finalized_id = disk.finalized[-1]
    return RecoveredState(
        safety=safety,
        blocks=list(disk.blocks.values()),
        finalized_block_id=finalized_id,
        finalized_height=finalized_height,
    )


def make_lanes(world: World) -> Any:
    """The run's `netsim.lanes.LaneSim` when the scenario has `[lanes]`, else None."""
    if world.scenario.lanes is None:
        return None
    from netsim.lanes import LaneSim

    return LaneSim(
        world.scenario, keys=world.keys, validators=world.validators, scheme=world.scheme
    )


def make_factory(world: World, byzantine_rng_seed: int, lanes: Any = None):
    """Builds each node's machine: core, Byzantine wrappers, then (with lanes) `LaneMachine`."""
    from consensus.core import ConsensusCore

    specs: dict[int, list[Any]] = {}
    for spec in world.scenario.byzantine:
        specs.setdefault(spec.node, []).append(spec)

    shared = world.scenario.verification == "shared"
    anchor: list[Verifier] = []  # the first core's verifier, whose caches the others use

    def factory(index: int, identity: int, disk: Disk | None) -> Any:
        has_state = disk is not None and (disk.safety is not None or disk.blocks or disk.finalized)
        machine: Any = ConsensusCore(
            config=world.config,
            validators=world.validators,
            schedule=world.schedule,
            index=identity,
            key=world.keys[identity],
            scheme=world.scheme,
            block_validator=lanes.validator() if lanes is not None else None,
            recovered=recovered_state(disk) if has_state and disk is not None else None,
        )
        if shared:  # verification = "shared": one certificate/signature cache per run
            if anchor:
                machine.verifier.share_caches_with(anchor[0])
            else:
                anchor.append(machine.verifier)
        for layer, spec in enumerate(specs.get(identity, ())):
            if spec.behaviour in LANE_BEHAVIOURS:
                continue  # lives in the lane proposer (netsim.lanes), not in messages
            machine = ByzantineMachine(
                inner=machine,
                behaviour=spec.behaviour,
                signer=Signer(identity, world.keys[identity], world.scheme),
                validators=world.validators,
                schedule=world.schedule,
                epoch=world.config.epoch,
                rng=derive_rng(byzantine_rng_seed, f"byzantine/{index}/{layer}"),
                rounds=spec.rounds,
                targets=spec.targets,
            )
        if lanes is not None:
            machine = lanes.wrap(index, machine, disk if has_state else None)
        return machine

    return factory


def make_verify(world: World):
    verifier = world.verifier

    def verify(certificate: Any) -> bool:
        try:
            if isinstance(certificate, QuorumCertificate):
                verifier.qc(certificate)
            elif isinstance(certificate, TimeoutCertificate):
                verifier.tc(certificate)
            elif isinstance(certificate, NoEndorsementCertificate):
                verifier.nec(certificate)
            elif isinstance(certificate, NoTipCertificate):
                verifier.notip(certificate)
            else:
                return False
        except InvalidMessage:
            return False
        return True

    return verify


def quiet_after_ms(scenario: Scenario) -> float:
    """End of the last planned fault window that ends within the run."""
    ends = [0.0]
    for partition in scenario.network.partitions:
        ends.append(min(partition.to_ms, scenario.until_ms))
    for link in scenario.network.links:
        if link.to_ms < scenario.until_ms:
            ends.append(link.to_ms)
        elif (link.loss or 0.0) > 0 or link.extra_delay_ms > 0:
            ends.append(scenario.until_ms)  # a lossy or delaying rule lasting the whole run
    for fault in scenario.faults:
        if isinstance(fault, Pause):
            ends.append(fault.to_ms)
        elif isinstance(fault, Crash):
            ends.extend(t for t in (fault.at_ms, fault.restart_ms) if t is not None)
    return max(ends)


class Progress(Observer):
    """Stops the run once every honest live instance finalized `target` blocks."""

    command_types = frozenset({CommitBlocks})

    def __init__(self, honest: frozenset[int], target: int | None):
        self.honest = honest
        self.target = target
        self.done = False
        self._behind: int | None = None  # an instance last seen below the target

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        if self.target is None or type(command) is not CommitBlocks:
            return
        self.done = self._reached(sim, self.target)

    def _reached(self, sim: Simulator, target: int) -> bool:
        """min(finalized height of the honest live instances) >= target (False if none).
        The instance found behind last time is asked first: while it stays behind, one
        look answers (no scan of every instance on every commit)."""
        hosts = sim.hosts
        behind = self._behind
        if behind is not None:
            host = hosts[behind]
            if host.up and host.identity in self.honest and host.disk.finalized_height < target:
                return False
        any_live = False
        for host in hosts:
            if host.identity in self.honest and host.up:
                if host.disk.finalized_height < target:
                    self._behind = host.index
                    return False
                any_live = True
        return any_live


@dataclass
class Run:
    scenario: Scenario
    sim: Simulator
    checker: ProtocolChecker
    result: RunResult
    lanes: Any = None  # netsim.lanes.LaneSim when the scenario has [lanes]

    @property
    def violations(self) -> list[str]:
        extra = self.lanes.checker.violations if self.lanes is not None else []
        return [*self.checker.violations, *extra]

    def report(self) -> dict[str, Any]:
        checker, stats, sim = self.checker, self.checker.stats, self.sim
        lane_count = self.lanes.checker.violation_count if self.lanes is not None else 0
        report = {
            "scenario": self.scenario.source,
            "protocol": self.scenario.protocol,
            "seed": self.sim.seed,
            "validators": self.scenario.validators,
            "byzantine": sorted(self.scenario.byzantine_nodes),
            "agreement": not any(v.startswith("P1") for v in checker.violations),
            "violations": self.violations,
            "violation_count": checker.violation_count + lane_count,
            "finalized": {str(h.index): h.disk.finalized_height for h in sim.hosts},
            "tcs": len(stats.tcs),
            "tc_rounds": sorted(stats.tcs),
            "reproposals": len(stats.reproposals),
            "necs": len(stats.necs),
            "tail_forks": len(checker.tail_forks()),
            "reproposal_tail_forks": len(checker.reproposal_tail_forks()),
            "speculative_reverts": stats.speculative_reverts,
            "reproposal_reverts": stats.reproposal_reverts,
            "equivocations": len(stats.equivocations),
            "timed_out_rounds": sorted(stats.timed_out_rounds),
            "rejected": dict(sorted(stats.rejected.items())),
            "rounds": stats.max_round,
            "liveness": checker.liveness,
            "messages": self.result.messages_sent,
            "messages_dropped": self.result.messages_dropped,
            "bytes": self.result.bytes_sent,
            "events": self.result.events,
            "sim_time_ms": round(self.result.sim_time_ms, 6),
            "stop_reason": self.result.stop_reason,
            "trace_hash": self.result.trace_hash,
        }
        bandwidth = sim.bandwidth
        if bandwidth is not None:
            report["bandwidth"] = {
                "mbps": self.scenario.network.bandwidth_mbps,
                "upload_bytes": {str(h.index): bandwidth.upload_bytes[h.index] for h in sim.hosts},
                "download_bytes": {
                    str(h.index): bandwidth.download_bytes[h.index] for h in sim.hosts
                },
                "dropped": bandwidth.dropped,
            }
        if self.lanes is not None:
            report.update(self.lanes.report())
        return report


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    protocol: str | None = None,
    test_mutations: Iterable[str] = (),
    extra_observers: Iterable[Observer] = (),
) -> Run:
    if seed is not None:
        scenario = scenario.with_(seed=seed)
    if protocol is not None:
        scenario = scenario.with_(protocol=protocol)
    world = build_world(scenario, test_mutations)
    honest = frozenset(range(scenario.validators)) - scenario.byzantine_nodes
    liveness_ms = scenario.liveness_ms or LIVENESS_ROUND_TIMERS * world.round_timer_ms
    checker = ProtocolChecker(
        CheckerContext(
            protocol=scenario.protocol,
            validators=world.validators,
            schedule=world.schedule,
            scheme=world.scheme,
            byzantine=scenario.byzantine_nodes,
            verify=make_verify(world),
            liveness_ms=liveness_ms,
            quiet_after_ms=quiet_after_ms(scenario),
        )
    )
    progress = Progress(honest, scenario.until_blocks)
    lanes = make_lanes(world)
    lane_observers = [lanes] if lanes is not None else []
    sim = Simulator(
        factory=make_factory(world, scenario.seed, lanes),
        network=Network(scenario.network),
        seed=scenario.seed,
        identities=scenario.validators,
        faults=scenario.faults,
        observers=[checker, progress, *lane_observers, *extra_observers],
        payload_bytes=scenario.payload_bytes,
        tie_break=scenario.tie_break,  # type: ignore[arg-type]
    )
    if lanes is not None:
        lanes.attach(sim)
    result = sim.run(scenario.until_ms, stop=lambda _sim: progress.done)
    check_expectations(scenario, checker)
    return Run(scenario, sim, checker, result, lanes)


def check_expectations(scenario: Scenario, checker: ProtocolChecker) -> None:
    """The scenario's `[expect]` outcomes, reported as violations when they fail."""
    stats = checker.stats
    for round_ in scenario.expect.no_tc_rounds:
        if round_ in stats.tcs:
            checker.violation(f"expect: a TC of round {round_} appeared (no_tc_rounds)")
    for round_ in scenario.expect.qc_rounds:
        if round_ not in stats.qc_rounds:
            checker.violation(f"expect: no QC of round {round_} (qc_rounds)")
