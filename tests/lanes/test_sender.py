"""Sender addressing policies, fresh re-sending, the ratchet and the stream cap."""

from __future__ import annotations

import itertools

import pytest

from consensus.crypto import TRUSTED
from consensus.lanes.local import LocalLanes
from consensus.lanes.proposer import CartelPool, WithholdPolicy
from consensus.lanes.sender import AddressPolicy, RatchetPolicy, Sender, SenderConfig
from consensus.lanes.tracker import Redemption
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


# --------------------------------------------------------------------------- the shipped ratchet


def test_a_sender_whose_every_lane_failed_keeps_sending() -> None:
    """The exclusion ratchet once stalled for good when every lane was excluded; now the
    exclusions reset (as the node's client does) and the sender keeps addressing."""
    net = LocalLanes(SMALL, lanes=4, offline=range(4))
    sender = net.add_sender(
        SenderConfig(lanes=4, bundles_per_slot=2, policy=AddressPolicy.FRESH, ratchet=True), b"z"
    )
    cid = sender.submit(seeded_bytes("stall", 2000), seeded_bytes("k", 32), first_slot=1)
    sent = []
    for _ in range(8):
        net.run_slot()
        sent.append(sender.payloads[cid].bundles_sent)
    assert all(b > a for a, b in itertools.pairwise(sent))  # every slot sends
    assert sender.payloads[cid].exclusion_resets >= 2


def _keep(m: int = 3, d: int = 1, lanes: int = N) -> tuple[Sender, bytes]:
    config = SenderConfig(
        lanes=lanes,
        bundles_per_slot=m,
        policy=AddressPolicy.FRESH,
        ratchet_policy=RatchetPolicy.KEEP_REDEEMED,
        feedback_slots=d,
    )
    sender = Sender(sender_key(), TRUSTED, SMALL, config)
    cid = sender.submit(seeded_bytes("keep", 9000), seeded_bytes("k", 32), first_slot=1)
    return sender, cid


def _redemptions(plan, missing: set[int], slot: int) -> list[Redemption]:
    out = []
    for submission in plan:
        ticket = submission.entry.ticket.ticket
        if submission.lane not in missing:
            out.append(
                Redemption(ticket.commitment_id, b"", submission.lane, slot, ticket.bundle_index, 1)
            )
    return out


def _drive(sender: Sender, slots: int, missing, start: int = 1) -> list[list[int]]:
    """Plan `slots` slots from `start`; lanes in `missing(slot)` do not redeem. Returns
    the lanes addressed per slot."""
    addressed = []
    for slot in range(start, start + slots):
        plan = sender.plan_slot(slot)
        addressed.append(sorted(s.lane for s in plan))
        sender.on_slot_finalized(slot, _redemptions(plan, missing(slot), slot))
    return addressed


def test_keep_redeemed_keeps_the_first_uniform_draw_while_it_redeems() -> None:
    sender, cid = _keep()
    addressed = _drive(sender, 6, lambda slot: set())
    assert len(set(map(tuple, addressed))) == 1 and len(addressed[0]) == 3
    assert addressed[0] == sorted(sender._order(cid, None)[:3])  # the seeded uniform draw


def test_keep_redeemed_learns_d_slots_later_and_replaces_with_a_never_addressed_lane() -> None:
    for d in (1, 2, 4):
        sender, _ = _keep(d=d)
        first = _drive(sender, 1, lambda slot: set())[0]
        bad = first[0]  # withholds from slot 2 on
        rest = _drive(sender, 2 + d, lambda slot, bad=bad: {bad}, start=2)
        # slot s's miss is used from slot s + d: slots 2..1+d still address it
        assert all(bad in lanes for lanes in rest[:d]), (d, rest)
        replaced = rest[d]
        assert bad not in replaced and len(replaced) == 3
        new = set(replaced) - set(first)
        assert len(new) == 1 and not new & set(first)  # a never-addressed lane


def test_keep_redeemed_reuses_non_excluded_lanes_then_resets_when_all_are_excluded() -> None:
    sender, cid = _keep(m=2, d=1, lanes=4)
    outgoing = sender.payloads[cid]
    _drive(sender, 1, lambda slot: set())
    # every lane misses from slot 2 on: lanes are replaced until none is left
    addressed = _drive(sender, 8, lambda slot: set(range(4)), start=2)
    assert all(len(set(lanes)) == len(lanes) for lanes in addressed)
    assert outgoing.ever_addressed == set(range(4))
    assert outgoing.exclusion_resets >= 1  # every lane excluded: exclusions reset
    assert all(lanes for lanes in addressed)  # it never stops sending


def test_an_offline_honest_lane_is_excluded_on_a_miss() -> None:
    net = LocalLanes(SMALL, lanes=N, offline=[])
    config = SenderConfig(
        lanes=N,
        bundles_per_slot=3,
        policy=AddressPolicy.FRESH,
        ratchet_policy=RatchetPolicy.KEEP_REDEEMED,
        feedback_slots=1,
    )
    sender = net.add_sender(config, b"o")
    cid = sender.submit(seeded_bytes("off", 9000), seeded_bytes("k", 32), first_slot=1)
    offline = sender.lanes_for(cid, 1)[1]
    net.offline = frozenset({offline})
    net.run(3)
    assert sender.payloads[cid].excluded == {offline}
    assert offline not in sender.lanes_for(cid, 4)


def test_ratchet_policy_config_is_validated() -> None:
    with pytest.raises(ValueError, match="keep_redeemed"):
        SenderConfig(
            lanes=3,
            bundles_per_slot=1,
            policy=AddressPolicy.ALL,
            ratchet_policy=RatchetPolicy.KEEP_REDEEMED,
        )
    with pytest.raises(ValueError, match="feedback_slots"):
        SenderConfig(lanes=3, bundles_per_slot=1, feedback_slots=0)
    with pytest.raises(ValueError, match="contradicts"):
        SenderConfig(lanes=3, bundles_per_slot=1, ratchet=True, ratchet_policy=RatchetPolicy.NONE)
