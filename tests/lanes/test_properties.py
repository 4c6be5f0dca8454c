"""Hypothesis properties over payload sizes, lane choices and withholding sets."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from consensus.lanes.local import LocalLanes
from consensus.lanes.params import LaneParams
from consensus.lanes.proposer import CartelPool, WithholdPolicy
from consensus.lanes.sender import AddressPolicy, SenderConfig
from tests.lanes.helpers import seeded_bytes

PARAMS = LaneParams(symbol_size_bytes=32, symbols_per_bundle=2, decode_margin_symbols=1)
N = 7


@st.composite
def scenarios(draw):
    return {
        "sizes": draw(st.lists(st.integers(0, 700), min_size=1, max_size=3)),
        "m": draw(st.integers(1, N)),
        "policy": draw(st.sampled_from(list(AddressPolicy))),
        "ratchet": draw(st.booleans()),
        "cartel": draw(st.sets(st.integers(0, N - 1), max_size=N - 1)),
        "targeted": draw(st.booleans()),
        "seed": draw(st.binary(min_size=1, max_size=4)),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_lane_pipeline_properties(scenario: dict) -> None:
    pool = CartelPool()
    config = SenderConfig(
        lanes=N,
        bundles_per_slot=scenario["m"],
        policy=scenario["policy"],
        ratchet=scenario["ratchet"],
        seed=scenario["seed"],
    )
    net = LocalLanes(PARAMS, lanes=N, trackers=2, seed=b"prop/" + scenario["seed"])
    sender = net.add_sender(config, b"p")
    payloads = {}
    for i, size in enumerate(scenario["sizes"]):
        data = seeded_bytes(scenario["seed"] + bytes([i]), size)
        payloads[sender.submit(data, seeded_bytes(b"k" + bytes([i]), 32), first_slot=1 + i)] = data
    targets = frozenset(list(payloads)[:1]) if scenario["targeted"] else None
    for lane in scenario["cartel"]:
        net.proposers[lane].withhold = WithholdPolicy(pool, targets)

    executed, addressed_slots = {}, {}
    for _ in range(40):
        slot = net.slot + 1
        for cid in payloads:
            if (
                cid in sender.payloads
                and not sender.payloads[cid].decided
                and slot >= sender.payloads[cid].first_slot
            ):
                for lane in sender.lanes_for(cid, slot):
                    addressed_slots.setdefault((cid, lane), set()).add(slot)
        outcome = net.run_slot()
        for event in outcome.payloads:
            assert event.status == "executed"  # honest sender: never rejected
            executed[event.commitment_id] = event
        withheld = {(cid, b) for _, _, cid, b in pool.withheld}
        assert not withheld & {(r.commitment_id, r.bundle_index) for r in outcome.redemptions}

    # replicas agree; executed payloads are the originals
    assert len({t.execution_order_hash for t in net.trackers}) == 1
    for cid, event in executed.items():
        assert event.payload == payloads[cid]
    for cid, outgoing in sender.payloads.items():
        kappa = outgoing.encoded.layout.kappa
        withholds = targets is None or cid in targets
        cartel = scenario["cartel"] if withholds else set()
        # decoded exactly when at least κ bundles were finalized
        assert (cid in executed) == (len(outgoing.redeemed) >= kappa)
        assert outgoing.bundles_sent <= outgoing.encoded.layout.cap_bundles
        if scenario["ratchet"]:
            assert outgoing.excluded <= cartel
            for lane in cartel:  # the ratchet: a cartel lane withholds at most once
                assert len(addressed_slots.get((cid, lane), set())) <= 1
        else:
            assert not outgoing.excluded
        label(f"executed={cid in executed} cartel={bool(cartel)} ratchet={scenario['ratchet']}")
        if not cartel and outgoing.bundles_sent:
            assert cid in executed  # all-honest lanes always decode
