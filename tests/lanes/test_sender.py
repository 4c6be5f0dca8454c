"""Sender addressing policies, fresh re-sending, the ratchet and the stream cap."""

from __future__ import annotations

import pytest

from consensus.crypto import TRUSTED
from consensus.lanes.local import LocalLanes
from consensus.lanes.proposer import CartelPool, WithholdPolicy
from consensus.lanes.sender import AddressPolicy, Sender, SenderConfig
from tests.lanes.helpers import SMALL, seeded_bytes, sender_key

N = 10


def _sender(
    policy: AddressPolicy, m: int = 3, seed: bytes = b"s", ratchet: bool = False
) -> tuple[Sender, bytes]:
    config = SenderConfig(lanes=N, bundles_per_slot=m, policy=policy, seed=seed, ratchet=ratchet)
    sender = Sender(sender_key(), TRUSTED, SMALL, config)
    cid = sender.submit(seeded_bytes("payload", 2000), seeded_bytes("key", 32), first_slot=1)
    return sender, cid


def test_policies_choose_lanes_deterministically() -> None:
    fresh, cid = _sender(AddressPolicy.FRESH)
    per_slot = [tuple(fresh.lanes_for(cid, slot)) for slot in range(1, 9)]
    assert all(len(set(lanes)) == 3 for lanes in per_slot)
    assert len(set(per_slot)) > 1  # fresh draws differ across slots
    again, _ = _sender(AddressPolicy.FRESH)
    assert [tuple(again.lanes_for(cid, s)) for s in range(1, 9)] == per_slot  # same seed
    other, _ = _sender(AddressPolicy.FRESH, seed=b"t")
    assert [tuple(other.lanes_for(cid, s)) for s in range(1, 9)] != per_slot
    fixed, _ = _sender(AddressPolicy.FIXED)
    assert len({tuple(fixed.lanes_for(cid, s)) for s in range(1, 9)}) == 1
    everyone, _ = _sender(AddressPolicy.ALL)
    assert everyone.lanes_for(cid, 4) == list(range(N))


def test_plan_sends_fresh_bundles_until_decided_and_never_repeats() -> None:
    sender, cid = _sender(AddressPolicy.FRESH)
    seen: set[int] = set()
    for slot in range(1, 4):
        plan = sender.plan_slot(slot)
        assert len(plan) == 3
        assert sender.plan_slot(slot) == []  # a slot is planned once
        for submission in plan:
            ticket = submission.entry.ticket.ticket
            assert (ticket.slot, ticket.expiry_slot, ticket.lane) == (slot, slot, submission.lane)
            assert ticket.bundle_index not in seen
            seen.add(ticket.bundle_index)
        sender.on_slot_finalized(slot, [], decided=[cid] if slot == 3 else [])
    assert sender.plan_slot(4) == []
    with pytest.raises(ValueError):
        sender.on_slot_finalized(3, [])


@pytest.mark.parametrize("ratchet", [False, True])
def test_ratchet_excludes_a_withholding_lane(ratchet: bool) -> None:
    pool = CartelPool()
    net = LocalLanes(SMALL, lanes=N, withhold={4: WithholdPolicy(pool)})
    sender = net.add_sender(
        SenderConfig(lanes=N, bundles_per_slot=N, policy=AddressPolicy.ALL, ratchet=ratchet), b"a"
    )
    cid = sender.submit(seeded_bytes("big", 6000), seeded_bytes("k", 32), first_slot=1)
    kappa = sender.payloads[cid].encoded.layout.kappa
    assert kappa > 2 * N  # several slots are needed
    net.run(1)
    assert sender.payloads[cid].excluded == ({4} if ratchet else set())
    net.run(4)
    withheld_slots = {slot for lane, slot, _, _ in pool.withheld}
    assert withheld_slots == ({1} if ratchet else set(range(1, 1 + len(withheld_slots))))
    assert len(withheld_slots) >= (1 if ratchet else 3)
    assert net.trackers[0].status(cid) == "executed"


def test_ratchet_fixed_lanes_are_replaced_and_recover_sooner() -> None:
    def decode_height(ratchet: bool) -> int:
        pool = CartelPool()
        config = SenderConfig(
            lanes=N, bundles_per_slot=4, policy=AddressPolicy.FIXED, ratchet=ratchet
        )
        probe = Sender(sender_key(), TRUSTED, SMALL, config)
        cid = probe.submit(seeded_bytes("fx", 3000), seeded_bytes("k", 32), 1)
        cartel = probe.lanes_for(cid, 1)[:2]  # half of the fixed set withholds
        net = LocalLanes(SMALL, lanes=N, withhold={lane: WithholdPolicy(pool) for lane in cartel})
        sender = net.add_sender(config, b"x", key=probe.key)  # same key ⇒ same commitment
        assert sender.submit(seeded_bytes("fx", 3000), seeded_bytes("k", 32), 1) == cid
        for outcome in net.run(40):
            if any(e.status == "executed" for e in outcome.payloads):
                if ratchet:
                    assert sender.payloads[cid].excluded == set(cartel)
                    assert not set(cartel) & set(sender.lanes_for(cid, outcome.height + 1))
                return outcome.height
        raise AssertionError("never decoded")

    assert decode_height(True) < decode_height(False)


def test_stream_cap_bounds_what_a_sender_sends() -> None:
    pool = CartelPool()
    net = LocalLanes(SMALL, lanes=4, withhold={i: WithholdPolicy(pool) for i in range(4)})
    sender = net.add_sender(
        SenderConfig(lanes=4, bundles_per_slot=4, policy=AddressPolicy.ALL), b"c"
    )
    cid = sender.submit(seeded_bytes("cap", 1000), seeded_bytes("k", 32), 1)
    cap = sender.payloads[cid].encoded.layout.cap_bundles
    net.run(cap)  # far more slots than needed to exhaust the stream
    assert sender.payloads[cid].bundles_sent == cap == pool.bundle_count(cid)
    assert net.trackers[0].status(cid) == "unknown"  # nothing ever finalized


def test_sender_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SenderConfig(lanes=3, bundles_per_slot=4)
    with pytest.raises(ValueError):
        SenderConfig(lanes=3, bundles_per_slot=1, policy="sometimes")  # type: ignore[arg-type]
