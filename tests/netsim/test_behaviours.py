"""Signed-but-invalid Byzantine behaviours (netsim.signed_invalid) against the rules they attack.

Each behaviour sends correctly signed messages that break exactly one validity rule. With
every rule on, every honest node drops them (and the run report counts the drops by
reason) and no invariant breaks; with the attacked rule switched off (TEST-ONLY rule
switch) the same scenario produces a violation. Together with the unit tests this is what
makes those rules enforced by the simulation, not only by single unit tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consensus.events import Trace
from netsim.engine import Observer, Simulator
from netsim.runner import run_scenario
from netsim.scenario import load_scenario
from netsim.signed_invalid import ATTACKED_RULE, SIGNED_INVALID

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
BYZANTINE = 1
HONEST = (0, 2, 3)

# behaviour -> (reason honest nodes drop it with, violations the attack causes unchecked)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bad_height": ("does not follow its parent's", ("P2",)),
    "bad_timestamp": ("timestamp earlier than its parent's", ("ledger time",)),
    "bad_reproposal": ("must repropose the TC's high tip", ("P5",)),
    "forged_tc_rank": ("high extend is not the maximum rank", ("P5",)),
    "strip_timeouts": ("timeout not sent by its author", ("expect: a TC of round 4",)),
}


class Drops(Observer):
    """Reasons of the inputs each instance dropped or refused to vote for."""

    def __init__(self) -> None:
        self.by_node: dict[int, list[str]] = {}

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        if type(command) is Trace and command.name in ("dropped", "vote_refused"):
            self.by_node.setdefault(node, []).append(str(command.detail.get("reason")))


def run(behaviour: str, mutations: tuple[str, ...] = ()) -> tuple[dict[str, Any], Drops]:
    drops = Drops()
    scenario = load_scenario(SCENARIOS / f"{behaviour}.toml")
    assert {spec.behaviour for spec in scenario.byzantine if spec.node == BYZANTINE} >= {behaviour}
    report = run_scenario(scenario, test_mutations=mutations, extra_observers=[drops]).report()
    return report, drops


def test_every_signed_invalid_behaviour_has_a_scenario_and_a_rule() -> None:
    assert set(CASES) == set(SIGNED_INVALID) == set(ATTACKED_RULE)
    for behaviour in CASES:
        assert (SCENARIOS / f"{behaviour}.toml").is_file()


@pytest.mark.parametrize("behaviour", sorted(CASES))
def test_honest_nodes_drop_and_count_it_and_nothing_breaks(behaviour: str) -> None:
    reason, _ = CASES[behaviour]
    report, drops = run(behaviour)
    assert report["violations"] == [], report["violations"]
    assert report["liveness"] == "ok"
    assert all(report["finalized"][str(node)] >= 8 for node in HONEST), report["finalized"]
    # The attack happened and was refused by every honest node, and the report counts it.
    for node in HONEST:
        assert any(reason in r for r in drops.by_node.get(node, [])), (node, drops.by_node)
    counted = sum(n for key, n in report["rejected"].items() if reason in key)
    assert counted >= len(HONEST), report["rejected"]


@pytest.mark.parametrize("behaviour", sorted(CASES))
def test_with_the_attacked_rule_off_it_causes_a_violation(behaviour: str) -> None:
    _, caused = CASES[behaviour]
    report, _ = run(behaviour, (ATTACKED_RULE[behaviour],))
    assert report["violations"], f"{behaviour} harmless without {ATTACKED_RULE[behaviour]}"
    assert report["violations"][0].startswith(caused), report["violations"]


def test_bad_reproposal_of_an_older_sibling_needs_the_freshness_half_of_w3n() -> None:
    # The scenario's reproposal is S, an older sibling of the winning tip T on the same
    # parent QC round: only W3n's freshness half refuses it (the case of finding 3).
    report, _ = run("bad_reproposal", ("W3n-fresh",))
    assert report["violations"] and report["violations"][0].startswith("P5")
