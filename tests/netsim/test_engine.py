"""Engine semantics with a test-double machine: order, determinism, network, timers, faults."""

from __future__ import annotations

from typing import Any

import pytest

from consensus.events import CancelTimer, MessageReceived, SetTimer, Start, TimerFired
from netsim.engine import NS_PER_MS, Observer, Simulator, derive_rng
from netsim.faults import ClockOffset, Crash, Pause
from netsim.network import Latency, LinkRule, Network, NetworkConfig, Partition
from tests.netsim.doubles import PingMachine, ping_factory

MS = NS_PER_MS


class EventLog(Observer):
    def __init__(self) -> None:
        self.events: list[tuple[int, int, Any]] = []
        self.commands: list[tuple[int, int, Any]] = []
        self.faults: list[tuple[int, int, str]] = []

    def on_event(self, sim: Simulator, node: int, event: Any) -> None:
        self.events.append((sim.now_ns, node, event))

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        self.commands.append((sim.now_ns, node, command))

    def on_fault(self, sim: Simulator, node: int, kind: str) -> None:
        self.faults.append((sim.now_ns, node, kind))


def make_sim(
    n: int = 4,
    seed: int = 1,
    config: NetworkConfig | None = None,
    faults: tuple = (),
    **kwargs: Any,
) -> tuple[Simulator, dict[int, list[PingMachine]], EventLog]:
    machines: dict[int, list[PingMachine]] = {}
    log = EventLog()
    sim = Simulator(
        factory=ping_factory(machines),
        network=Network(config or NetworkConfig(latency=Latency("uniform", 1.0, 20.0))),
        seed=seed,
        identities=n,
        faults=faults,
        observers=[log],
        **kwargs,
    )
    return sim, machines, log


def received(machine: PingMachine) -> list[tuple[int, Any]]:
    return [(t, detail) for kind, t, detail in machine.log if kind == "recv"]


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_the_same_trace_hash() -> None:
    first = make_sim(seed=7)[0].run(500)
    second = make_sim(seed=7)[0].run(500)
    assert first.trace_hash == second.trace_hash
    assert first.events == second.events > 100


def test_different_seed_gives_a_different_trace_hash() -> None:
    assert make_sim(seed=7)[0].run(500).trace_hash != make_sim(seed=8)[0].run(500).trace_hash


def test_constant_latency_trace_is_seed_independent_except_workload() -> None:
    # With no network randomness the only seeded input is the payload bytes: hashes differ
    # (payloads are hashed), but the delivery schedule is identical.
    config = NetworkConfig(latency=Latency("constant", 5.0, 5.0))
    sim_a, machines_a, _ = make_sim(seed=1, config=config)
    sim_b, machines_b, _ = make_sim(seed=2, config=config)
    assert sim_a.run(200).trace_hash != sim_b.run(200).trace_hash
    assert received(machines_a[0][0]) == received(machines_b[0][0])


def test_streams_are_independent_per_purpose() -> None:
    # A different payload size consumes the workload stream differently; network draws
    # (delivery times) must not move.
    sim_a, machines_a, _ = make_sim(seed=3, payload_bytes=4)
    sim_b, machines_b, _ = make_sim(seed=3, payload_bytes=64)
    sim_a.run(300)
    sim_b.run(300)
    assert received(machines_a[2][0]) == received(machines_b[2][0])
    assert derive_rng(3, "network").random() != derive_rng(3, "workload").random()


def test_events_are_processed_in_time_order() -> None:
    sim, _, log = make_sim(seed=11)
    sim.run(400)
    times = [t for t, _node, _event in log.events]
    assert times == sorted(times)
    assert len(set(times)) > 10


def test_random_tie_break_is_seeded_and_differs_from_fifo() -> None:
    config = NetworkConfig(latency=Latency("constant", 5.0, 5.0))
    fifo = make_sim(seed=4, config=config)[0].run(100).trace_hash
    random_a = make_sim(seed=4, config=config, tie_break="random")[0].run(100).trace_hash
    random_b = make_sim(seed=4, config=config, tie_break="random")[0].run(100).trace_hash
    assert random_a == random_b
    assert random_a != fifo


def test_bad_simulator_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="tie_break"):
        make_sim(tie_break="lifo")
    with pytest.raises(ValueError, match="at least one node"):
        make_sim(n=0)
    with pytest.raises(ValueError, match="node 9"):
        make_sim(faults=(Crash(node=9, at_ms=1),))


# ----------------------------------------------------------------------------- network


def test_constant_latency_delivers_exactly_after_the_latency() -> None:
    sim, machines, _ = make_sim(n=2, config=NetworkConfig(latency=Latency("constant", 7.0, 7.0)))
    sim.run(100)
    # Node 1 fires its timer every 10 ms; node 0 receives each broadcast 7 ms later.
    assert [t for t, _ in received(machines[0][0])][:3] == [17 * MS, 27 * MS, 37 * MS]


def test_uniform_latency_stays_in_range() -> None:
    sim, machines, log = make_sim(config=NetworkConfig(latency=Latency("uniform", 3.0, 9.0)))
    sim.run(300)
    sends = {}
    for t, node, command in log.commands:
        if type(command).__name__ == "Broadcast":
            sends[(node, command.message.vote.round)] = t
    delays = []
    for receiver, versions in machines.items():
        for t, (sender, round_) in received(versions[0]):
            delays.append(t - sends[(sender, round_)])
            assert receiver != sender
    assert delays and min(delays) >= 3 * MS and max(delays) <= 9 * MS
    assert len(set(delays)) > 5


@pytest.mark.parametrize("kind", ["pareto", "lognormal"])
def test_heavy_tailed_latency_is_capped_and_has_a_tail(kind: str) -> None:
    model = Latency(kind, 2.0, 500.0, shape=1.2)
    rng = derive_rng(1, "network")
    samples = [model.sample_ms(rng) for _ in range(5000)]
    assert max(samples) <= 500.0
    assert min(samples) >= (2.0 if kind == "pareto" else 0.0)
    median = sorted(samples)[2500]
    assert max(samples) > 10 * median  # a tail, unlike uniform


def test_total_loss_delivers_nothing_and_counts_drops() -> None:
    sim, machines, _ = make_sim(config=NetworkConfig(loss=1.0))
    result = sim.run(100)
    assert all(not received(versions[0]) for versions in machines.values())
    assert result.messages_dropped == result.messages_sent > 0


def test_partial_loss_drops_about_that_fraction() -> None:
    sim, _, _ = make_sim(config=NetworkConfig(latency=Latency("constant", 1, 1), loss=0.3))
    result = sim.run(2000)
    ratio = result.messages_dropped / result.messages_sent
    assert 0.25 < ratio < 0.35


def test_duplication_delivers_twice() -> None:
    config = NetworkConfig(latency=Latency("uniform", 1, 5), duplicate=1.0)
    sim, machines, _ = make_sim(n=2, config=config)
    sim.run(100)
    rounds = [detail[1] for _t, detail in received(machines[0][0])]
    assert rounds[:6] == sorted(rounds[:6])
    assert all(rounds.count(r) == 2 for r in set(rounds) if r < 8)


def test_reordering_delivers_out_of_send_order() -> None:
    config = NetworkConfig(latency=Latency("constant", 1, 1), reorder=0.5, reorder_ms=40.0)
    sim, machines, _ = make_sim(n=2, config=config)
    sim.run(500)
    rounds = [detail[1] for _t, detail in received(machines[0][0])]
    assert rounds != sorted(rounds)
    assert sorted(rounds) == list(range(1, len(rounds) + 1))  # nothing lost or duplicated


def test_partition_blocks_cross_group_traffic_only_inside_its_window() -> None:
    partition = Partition((frozenset({0, 1}), frozenset({2, 3})), from_ms=50, to_ms=100)
    config = NetworkConfig(latency=Latency("constant", 1, 1), partitions=(partition,))
    sim, machines, _ = make_sim(config=config)
    sim.run(200)
    from_two = [(t, r) for t, (sender, r) in received(machines[0][0]) if sender == 2]
    from_one = [(t, r) for t, (sender, r) in received(machines[0][0]) if sender == 1]
    # Node 2 broadcasts at 10, 20, ... ms; those sent in [50, 100) never reach node 0.
    assert [r for _t, r in from_two] == [1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    assert [r for _t, r in from_one] == list(range(1, 20))


def test_unlisted_nodes_form_their_own_group() -> None:
    partition = Partition((frozenset({0}),), from_ms=0, to_ms=1000)
    assert partition.blocks(0, 1, 5)
    assert not partition.blocks(1, 2, 5)
    assert not partition.blocks(0, 1, 1000)


def test_link_rule_drops_one_direction_and_one_message_kind() -> None:
    rule = LinkRule(src=1, dst=0, message="vote", loss=1.0)
    config = NetworkConfig(latency=Latency("constant", 1, 1), links=(rule,))
    sim, machines, _ = make_sim(n=3, config=config)
    sim.run(100)
    assert not [1 for _t, (sender, _r) in received(machines[0][0]) if sender == 1]
    assert [1 for _t, (sender, _r) in received(machines[2][0]) if sender == 1]
    assert [1 for _t, (sender, _r) in received(machines[1][0]) if sender == 0]


def test_link_rule_latency_override_and_extra_delay() -> None:
    rules = (
        LinkRule(src=1, dst=0, latency=Latency("constant", 30, 30)),
        LinkRule(src=1, extra_delay_ms=2.0),
    )
    config = NetworkConfig(latency=Latency("constant", 1, 1), links=rules)
    sim, machines, _ = make_sim(n=3, config=config)
    sim.run(60)
    assert next(t for t, (s, _r) in received(machines[0][0]) if s == 1) == 42 * MS
    assert next(t for t, (s, _r) in received(machines[2][0]) if s == 1) == 13 * MS


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Latency("gamma", 1, 2), "unknown latency model"),
        (lambda: Latency("uniform", 5, 1), "low <= high"),
        (lambda: NetworkConfig(loss=1.5), "loss"),
        (lambda: NetworkConfig(duplicate=-0.1), "duplicate"),
        (lambda: Partition((frozenset({0, 1}), frozenset({1})), 0, 10), "two partition groups"),
        (lambda: Partition((frozenset({0}),), 10, 10), "from_ms < to_ms"),
        (lambda: LinkRule(loss=2.0), "link loss"),
    ],
)
def test_bad_network_configuration_is_rejected(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# ----------------------------------------------------------------------------- timers


class TimerMachine:
    """Sets timers as told by a script keyed on the event number."""

    def __init__(self, script: dict[int, list[Any]]):
        self.script = script
        self.seen: list[tuple[int, Any]] = []

    def handle(self, event: Any) -> list[Any]:
        self.seen.append((event.now_ns, event))
        return self.script.get(len(self.seen), [])


def run_timer_script(script: dict[int, list[Any]], until_ms: float = 100) -> TimerMachine:
    machine = TimerMachine(script)
    sim = Simulator(
        factory=lambda index, identity, disk: machine,
        network=Network(NetworkConfig()),
        seed=1,
        identities=1,
    )
    sim.run(until_ms)
    return machine


def test_timer_fires_after_its_delay() -> None:
    machine = run_timer_script({1: [SetTimer("round", 1, 12.5)]})
    assert machine.seen[1] == (12_500_000, TimerFired(12_500_000, "round", 1))


def test_setting_a_timer_replaces_the_pending_one_of_the_same_kind() -> None:
    script = {1: [SetTimer("round", 1, 10), SetTimer("round", 2, 30), SetTimer("vote_pace", 1, 5)]}
    machine = run_timer_script(script)
    fired = [(t, e.kind, e.round) for t, e in machine.seen if isinstance(e, TimerFired)]
    assert fired == [(5 * MS, "vote_pace", 1), (30 * MS, "round", 2)]


def test_cancelled_timer_does_not_fire() -> None:
    script = {1: [SetTimer("round", 1, 10), SetTimer("vote_pace", 1, 5)], 2: [CancelTimer("round")]}
    machine = run_timer_script(script)
    assert [e.kind for _t, e in machine.seen if isinstance(e, TimerFired)] == ["vote_pace"]


# ----------------------------------------------------------------------------- faults


def test_crash_stops_a_node_and_messages_to_it_are_lost() -> None:
    sim, machines, log = make_sim(faults=(Crash(node=2, at_ms=45),))
    sim.run(200)
    assert len(machines[2]) == 1
    assert max(t for t, node, _e in log.events if node == 2) < 45 * MS
    assert max(r for _t, (s, r) in received(machines[0][0]) if s == 2) == 4
    assert log.faults == [(45 * MS, 2, "crash")]


def test_restart_rebuilds_from_exactly_what_was_persisted() -> None:
    # Counter reaches 5 in memory by 50 ms but only 4 was persisted (every 2nd value).
    sim, machines, log = make_sim(faults=(Crash(node=1, at_ms=55, restart_ms=80),))
    sim.run(200)
    assert len(machines[1]) == 2
    old, new = machines[1]
    assert old.counter == 5
    assert new.log[0] == ("start", 80 * MS, 4)
    assert sim.hosts[1].disk.safety.value == new.counter - new.counter % 2
    # The old life's timer (due at 60 ms) never fired in the new life.
    assert [t for t, n, e in log.events if n == 1 and isinstance(e, TimerFired)][4:6] == [
        50 * MS,
        90 * MS,
    ]
    assert [k for _t, _n, k in log.faults] == ["crash", "restart"]


def test_crash_without_any_persist_restarts_fresh() -> None:
    sim, machines, _ = make_sim(faults=(Crash(node=0, at_ms=15, restart_ms=20),))
    sim.run(40)
    assert machines[0][1].log[0] == ("start", 20 * MS, 0)


def test_crash_at_time_zero_means_the_node_never_starts() -> None:
    sim, machines, _ = make_sim(faults=(Crash(node=3, at_ms=0),))
    sim.run(50)
    assert 3 not in machines


def test_crash_at_round_discards_the_batch_that_entered_it() -> None:
    sim, machines, log = make_sim(faults=(Crash(node=1, at_round=3, restart_after_ms=25),))
    sim.run(100)
    commands_of_1 = [c for _t, n, c in log.commands if n == 1]
    # Rounds 1 and 2 were broadcast; the handler that entered round 3 had no effect.
    rounds = [c.message.vote.round for c in commands_of_1 if type(c).__name__ == "Broadcast"]
    assert rounds[:2] == [1, 2]
    assert log.faults[:2] == [(30 * MS, 1, "crash"), (55 * MS, 1, "restart")]
    assert machines[1][1].log[0] == ("start", 55 * MS, 2)


def test_pause_holds_events_and_hands_them_over_in_order_on_resume() -> None:
    sim, machines, log = make_sim(
        config=NetworkConfig(latency=Latency("constant", 1, 1)),
        faults=(Pause(node=0, from_ms=25, to_ms=60),),
    )
    sim.run(100)
    machine = machines[0][0]
    during = [t for kind, t, _d in machine.log if 25 * MS <= t < 60 * MS]
    assert during == []
    at_resume = [(kind, d) for kind, t, d in machine.log if t == 60 * MS]
    # Held: receipts of rounds 3..5 from each peer and the node's own timer (due at 30 ms).
    assert ("timer", 3) in at_resume
    assert [d for kind, d in at_resume if kind == "recv" and d[0] == 1] == [(1, 3), (1, 4), (1, 5)]
    assert len(machines[0]) == 1  # a pause keeps memory
    assert [k for _t, _n, k in log.faults] == ["pause", "resume"]


def test_clock_offset_shifts_the_time_a_node_reads() -> None:
    sim, _, log = make_sim(n=2, faults=(ClockOffset(node=1, offset_ms=250.0),))
    sim.run(30)
    starts = {node: e.now_ns for t, node, e in log.events if isinstance(e, Start)}
    assert starts == {0: 0, 1: 250 * MS}
    timer_1 = [(t, e.now_ns) for t, n, e in log.events if n == 1 and isinstance(e, TimerFired)]
    assert timer_1[0] == (10 * MS, 260 * MS)


def test_event_budget_and_until_bound_the_run() -> None:
    sim, _, _ = make_sim(max_events=50)
    result = sim.run(10_000)
    assert (result.stop_reason, result.events) == ("event_budget", 50)
    sim, _, _ = make_sim()
    result = sim.run(35)
    assert result.stop_reason == "until" and result.sim_time_ms == 35


def test_stop_condition_ends_the_run() -> None:
    sim, machines, _ = make_sim()
    result = sim.run(10_000, stop=lambda s: machines[0][0].counter >= 3)
    assert result.stop_reason == "stop_condition"
    assert machines[0][0].counter == 3


def test_inject_delivers_a_message_from_a_chosen_sender() -> None:
    sim, _machines, log = make_sim(n=2, config=NetworkConfig(loss=1.0))
    sim.run(15)  # runs resume where they stopped
    message = next(c.message for _t, n, c in log.commands if n == 1 and hasattr(c, "message"))
    sim.inject(0, 1, message, delay_ms=2)
    sim.run(30)
    got = [e for _t, n, e in log.events if n == 0 and isinstance(e, MessageReceived)]
    assert [(e.now_ns, e.sender) for e in got] == [(17 * MS, 1)]
