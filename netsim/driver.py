"""Building blocks for simulations that `runner.run_scenario` does not describe.

Twins (`netsim.twins`), the purpose-built S4 adversary (`netsim.adversary`) and the
stepped property tests need the same world as a scenario run (keys, validator set,
cores, checkers) but their own leader schedule, machines or message routing. This module
builds those pieces on top of `runner.build_world` so that every driver checks the same
invariants with the same `ProtocolChecker`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from consensus.certificates import Verifier
from consensus.validators import LeaderSchedule
from netsim.invariants import CheckerContext, ProtocolChecker
from netsim.runner import LIVENESS_ROUND_TIMERS, World, build_world, make_verify
from netsim.scenario import Scenario


def world_with_schedule(
    scenario: Scenario,
    schedule: LeaderSchedule | None = None,
    test_mutations: Iterable[str] = (),
) -> World:
    """`build_world`, optionally with another leader schedule (cores, verifier and
    checkers then all read that schedule)."""
    world = build_world(scenario, test_mutations)
    if schedule is None:
        return world
    verifier = Verifier(
        world.validators,
        schedule,
        world.scheme,
        protocol=scenario.protocol,
        epoch=world.config.epoch,
    )
    return replace(world, schedule=schedule, verifier=verifier)


def make_checker(
    world: World,
    byzantine: frozenset[int],
    *,
    quiet_after_ms: float = 0.0,
    liveness_ms: float | None = None,
) -> ProtocolChecker:
    """The always-on checkers for a world; `byzantine` are identities (a Twins pair too)."""
    scenario = world.scenario
    if liveness_ms is None:
        liveness_ms = scenario.liveness_ms or LIVENESS_ROUND_TIMERS * world.round_timer_ms
    return ProtocolChecker(
        CheckerContext(
            protocol=scenario.protocol,
            validators=world.validators,
            schedule=world.schedule,
            scheme=world.scheme,
            byzantine=byzantine,
            verify=make_verify(world),
            liveness_ms=liveness_ms,
            quiet_after_ms=quiet_after_ms,
        )
    )


def honest_instances(sim: Any, byzantine: frozenset[int]) -> list[int]:
    """Instance indices whose identity is honest."""
    return [host.index for host in sim.hosts if host.identity not in byzantine]
