"""The real ConsensusCore under the simulator: determinism, restarts, Byzantine behaviours."""

from __future__ import annotations

from typing import Any

import pytest

from consensus.events import Broadcast, Send
from consensus.messages import AdvanceRoundMessage, NoEndorsementMessage, VoteMessage
from netsim.byzantine import BEHAVIOURS
from netsim.engine import Observer, Simulator
from netsim.faults import Crash
from netsim.runner import run_scenario
from netsim.scenario import ByzantineSpec, parse_scenario_text

BASE = """
validators = 4
seed = 3
until_ms = 20000
until_blocks = 20
[network]
latency_ms = [1, 30]
delta_ms = 100
"""


class Sent(Observer):
    """Every message each instance sent, by wire tag."""

    def __init__(self) -> None:
        self.by_node: dict[int, list[Any]] = {}
        self.traces: list[tuple[int, str, dict]] = []

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        if isinstance(command, Send | Broadcast):
            self.by_node.setdefault(node, []).append(command.message)
        elif type(command).__name__ == "Trace":
            self.traces.append((node, command.name, command.detail))


@pytest.mark.parametrize("protocol", ["monadbft", "v1", "vanilla"])
def test_happy_path_finalizes_without_timeouts(protocol: str) -> None:
    report = run_scenario(parse_scenario_text(BASE), protocol=protocol).report()
    assert report["violations"] == []
    assert all(h >= 20 for h in report["finalized"].values())
    assert (report["tcs"], report["reproposals"], report["timed_out_rounds"]) == (0, 0, [])
    assert report["stop_reason"] == "stop_condition"


def test_same_seed_same_trace_hash_and_different_seed_differs() -> None:
    scenario = parse_scenario_text(BASE)
    first = run_scenario(scenario).report()
    again = run_scenario(scenario).report()
    other = run_scenario(scenario, seed=4).report()
    assert first["trace_hash"] == again["trace_hash"]
    assert first == again
    assert other["trace_hash"] != first["trace_hash"]


def test_real_signatures_run_the_same_protocol() -> None:
    trusted = run_scenario(parse_scenario_text(BASE)).report()
    ed = run_scenario(parse_scenario_text('scheme = "ed25519"\n' + BASE)).report()
    assert ed["violations"] == [] and ed["finalized"] == trusted["finalized"]
    assert ed["trace_hash"] != trusted["trace_hash"]  # signatures differ, so do the bytes


def test_crash_restart_from_disk_keeps_safety_and_catches_up() -> None:
    scenario = parse_scenario_text(BASE).with_(
        faults=(Crash(node=2, at_ms=150, restart_ms=1500),), until_blocks=40
    )
    run = run_scenario(scenario)
    report = run.report()
    assert report["violations"] == []
    host = run.sim.hosts[2]
    assert (host.crashes, host.restarts) == (1, 1)
    assert host.disk.safety_writes > 0 and host.disk.finalized_height >= 40
    assert report["liveness"] == "ok"


def test_crash_restart_in_every_round_phase_never_double_votes() -> None:
    # Crash node 1 at many instants (any point between persist and send of a batch is a
    # batch boundary in the simulator); restart 50 ms later from its disk. The run lasts
    # long enough (30 blocks, about 800 ms) for every crash and restart to happen.
    for at_ms in range(20, 400, 23):
        scenario = parse_scenario_text(BASE).with_(
            faults=(Crash(node=1, at_ms=float(at_ms), restart_after_ms=50.0),), until_blocks=30
        )
        run = run_scenario(scenario)
        report = run.report()
        assert report["violations"] == [], (at_ms, report["violations"])
        host = run.sim.hosts[1]
        assert (host.crashes, host.restarts) == (1, 1), at_ms  # the scenario happened
        assert host.disk.finalized_height >= 30 and report["liveness"] == "ok", at_ms


def byzantine_run(
    behaviour: str, protocol: str = "monadbft", verification: str = "shared"
) -> tuple[dict, Sent]:
    sent = Sent()
    scenario = parse_scenario_text(BASE).with_(
        byzantine=(ByzantineSpec(1, behaviour),), until_blocks=15, verification=verification
    )
    run = run_scenario(scenario, protocol=protocol, extra_observers=[sent])
    return run.report(), sent


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("protocol", ["monadbft", "v1", "vanilla"])
def test_one_byzantine_node_breaks_neither_safety_nor_liveness(
    behaviour: str, protocol: str
) -> None:
    report, _sent = byzantine_run(behaviour, protocol)
    assert report["violations"] == []
    assert all(h >= 15 for node, h in report["finalized"].items() if node != "1")


def test_silent_sends_nothing() -> None:
    _report, sent = byzantine_run("silent")
    assert sent.by_node.get(1, []) == [] and len(sent.by_node[0]) > 20


def test_equivocate_is_detected() -> None:
    report, _ = byzantine_run("equivocate")
    assert report["equivocations"] >= 1


def test_withhold_votes_sends_no_vote() -> None:
    _report, sent = byzantine_run("withhold_votes")
    assert not [m for m in sent.by_node[1] if isinstance(m, VoteMessage)]
    assert [m for m in sent.by_node[0] if isinstance(m, VoteMessage)]


def test_withhold_qc_never_advances_with_its_own_qc() -> None:
    _report, sent = byzantine_run("withhold_qc")
    formed = {d["round"] for node, name, d in sent.traces if node == 1 and name == "qc_formed"}
    advanced = {
        m.certificate.round for m in sent.by_node.get(1, []) if isinstance(m, AdvanceRoundMessage)
    }
    assert formed and not formed & advanced


@pytest.mark.parametrize("verification", ["per_node", "shared"])
def test_invalid_signatures_are_all_dropped(verification: str) -> None:
    """Every honest node verifies for itself (per_node) or through the run's shared cache:
    either way every honest node drops the corrupted messages it receives."""
    _report, sent = byzantine_run("invalid_signatures", verification=verification)
    dropped = [d["reason"] for node, name, d in sent.traces if name == "dropped" and node != 1]
    assert any("signature" in reason for reason in dropped)
    droppers = {node for node, name, d in sent.traces if name == "dropped" and node != 1
                and "signature" in d["reason"]}  # fmt: skip
    assert droppers == {0, 2, 3}


def test_ne_spam_forms_no_nec_and_stale_spam_is_dropped() -> None:
    report, sent = byzantine_run("ne_spam")
    assert [m for m in sent.by_node[1] if isinstance(m, NoEndorsementMessage)]
    assert report["necs"] == 0
    report, sent = byzantine_run("stale_spam")
    assert report["violations"] == []
    assert len(sent.by_node[1]) > 2 * len(sent.by_node[0])


def test_tail_fork_in_vanilla_is_counted_not_a_violation() -> None:
    report, _ = byzantine_run("tail_fork", "vanilla")
    assert report["violations"] == []
    assert report["tail_forks"] >= 1  # the forks happened and were counted
    for protocol in ("monadbft", "v1"):  # the same attack is refused by the others
        report, _ = byzantine_run("tail_fork", protocol)
        assert report["tail_forks"] == 0 and report["violations"] == []
        assert any("proposal" in reason or "tip" in reason for reason in report["rejected"])
