"""netsim's bandwidth model (`[network] bandwidth_mbps`): bytes queue on the sender's
uplink and the receiver's downlink and drain at the link rate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from consensus.events import Broadcast, MessageReceived, Send, Start
from netsim.engine import NS_PER_MS, Simulator, message_digest
from netsim.network import Latency, Network, NetworkConfig
from netsim.scenario import ScenarioError, parse_scenario_text

LATENCY_MS = 10.0
MBPS = 8.0  # one byte per microsecond
BLOB = 100_000


class Blob(msgspec.Struct, frozen=True, tag="blob"):
    data: bytes


@dataclass
class Sender:
    """On Start, sends its `plan`: a list of ("send", to) or ("broadcast", None)."""

    index: int
    plan: list[tuple[str, int | None]]
    received: list[tuple[int, int]] = field(default_factory=list)  # (time ns, sender)

    def handle(self, event: Any) -> list[Any]:
        if isinstance(event, Start):
            message = Blob(bytes(BLOB))
            return [
                Broadcast(message) if kind == "broadcast" else Send(to, message)  # type: ignore[arg-type]
                for kind, to in self.plan
            ]
        if isinstance(event, MessageReceived):
            self.received.append((event.now_ns, event.sender))
        return []


def run(plans: dict[int, list], n: int = 4, **config: Any) -> tuple[Simulator, dict[int, Sender]]:
    machines: dict[int, Sender] = {}

    def factory(index: int, identity: int, disk: Any) -> Sender:
        machines[index] = Sender(index, plans.get(index, []))
        return machines[index]

    sim = Simulator(
        factory=factory,
        network=Network(
            NetworkConfig(latency=Latency("constant", LATENCY_MS, LATENCY_MS), **config)
        ),
        seed=1,
        identities=n,
    )
    sim.run(10_000)
    return sim, machines


SIZE = message_digest(Blob(bytes(BLOB)))[1]
TRANSFER_NS = round(SIZE * 8_000 / MBPS)
LATENCY_NS = round(LATENCY_MS * NS_PER_MS)


def test_without_bandwidth_only_latency_counts() -> None:
    _, machines = run({0: [("broadcast", None)]})
    assert [t for m in (1, 2, 3) for t, _ in machines[m].received] == [LATENCY_NS] * 3


def test_one_message_pays_its_transfer_once() -> None:
    sim, machines = run({0: [("send", 1)]}, bandwidth_mbps=MBPS)
    assert machines[1].received == [(TRANSFER_NS + LATENCY_NS, 0)]
    assert sim.bandwidth.upload_bytes == [SIZE, 0, 0, 0]
    assert sim.bandwidth.download_bytes == [0, SIZE, 0, 0]


def test_a_broadcast_queues_its_copies_on_the_uplink() -> None:
    _, machines = run({0: [("broadcast", None)]}, bandwidth_mbps=MBPS)
    arrivals = sorted(t for m in (1, 2, 3) for t, _ in machines[m].received)
    assert arrivals == [k * TRANSFER_NS + LATENCY_NS for k in (1, 2, 3)]


def test_senders_to_one_node_queue_on_its_downlink() -> None:
    plans = {i: [("send", 0)] for i in (1, 2, 3)}
    _, machines = run(plans, bandwidth_mbps=MBPS)
    assert [t for t, _ in machines[0].received] == [k * TRANSFER_NS + LATENCY_NS for k in (1, 2, 3)]


def test_an_uplink_backlog_beyond_max_queue_ms_drops_the_message() -> None:
    sim, machines = run({0: [("send", 1)] * 5}, bandwidth_mbps=MBPS, max_queue_ms=150.0)
    assert TRANSFER_NS > 100 * NS_PER_MS  # the third message would wait 200 ms
    assert len(machines[1].received) == 2
    assert sim.bandwidth.dropped == 3 and sim.messages_dropped == 3


def test_the_scenario_key_and_the_report() -> None:
    text = "validators = 4\nuntil_ms = 300\n[network]\nbandwidth_mbps = 1000\nmax_queue_ms = 50\n"
    scenario = parse_scenario_text(text)
    assert scenario.network.bandwidth_mbps == 1000.0 and scenario.network.max_queue_ms == 50.0
    from netsim.runner import run_scenario

    report = run_scenario(scenario).report()
    bandwidth = report["bandwidth"]
    assert bandwidth["mbps"] == 1000.0 and sum(bandwidth["upload_bytes"].values()) > 0
    # every byte downloaded was uploaded (some are still in flight when the run ends)
    sent, got = sum(bandwidth["upload_bytes"].values()), sum(bandwidth["download_bytes"].values())
    assert 0.9 * sent < got <= sent
    assert (
        "bandwidth"
        not in run_scenario(parse_scenario_text("validators = 4\nuntil_ms = 300\n")).report()
    )
    for bad in ("0", "-1", "'fast'"):
        with pytest.raises(ScenarioError, match=r"network\.bandwidth_mbps"):
            parse_scenario_text(f"validators = 4\n[network]\nbandwidth_mbps = {bad}\n")
