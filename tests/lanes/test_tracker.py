"""Decode tracker: redemptions, deterministic execution order, rejection of cheaters."""

from __future__ import annotations

import itertools
import sys

import pytest

from consensus.crypto import TRUSTED, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.local import LocalLanes, lane_block_header
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.proposer import LaneProposer
from consensus.lanes.sender import AddressPolicy, SenderConfig
from consensus.lanes.tickets import sign_lane_block
from consensus.lanes.tracker import DecodeTracker, execution_key
from consensus.messages import BlockBody
from consensus.validators import ValidatorSet
from tests.lanes.helpers import (
    EXPIRY,
    SMALL,
    entry_for,
    forged_payload,
    seeded_bytes,
    sender_key,
    tracker_modes,
)

LANES = 6
KEYS = derive_keys(LANES, "tracker-tests")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])

tracker_mode = tracker_modes(sys.modules[__name__])


def _block(slot: int, lane_entries: dict[int, list], transactions=()):
    """A validated (header, body) at height `slot` from {lane: [entries]}."""
    blocks = [
        sign_lane_block(
            TRUSTED,
            KEYS[lane],
            lane,
            slot,
            tuple(
                sorted(
                    entries, key=lambda e: (e.ticket.ticket.commitment_id, e.bundle.bundle_index)
                )
            ),
        )
        for lane, entries in lane_entries.items()
    ]
    body = BlockBody(build_block_payload(list(transactions), blocks))
    header = lane_block_header(slot, 0, body)
    assert LanePayloadValidator(VALIDATORS, SMALL, TRUSTED).check(header, body) is None
    return header, body


def _spread(encoded, key, slot: int, indices) -> dict[int, list]:
    out: dict[int, list] = {}
    for n, index in enumerate(indices):
        lane = n % LANES
        out.setdefault(lane, []).append(entry_for(TRUSTED, key, encoded, index, lane, slot))
    return out


def _merge(*parts: dict[int, list]) -> dict[int, list]:
    out: dict[int, list] = {}
    for part in parts:
        for lane, entries in part.items():
            out.setdefault(lane, []).extend(entries)
    return out


def test_decoded_payloads_execute_first_in_their_block_in_execution_key_order() -> None:
    senders = [sender_key(f"s{i}") for i in range(3)]
    payloads = [seeded_bytes(f"p{i}", 200 + 50 * i) for i in range(3)]
    encoded = [
        encode_payload(SMALL, p, seeded_bytes(f"k{i}", 32), s.public, expiry_slot=EXPIRY)
        for i, (p, s) in enumerate(zip(payloads, senders, strict=True))
    ]
    kappas = [e.layout.kappa for e in encoded]
    # slot 1: κ−1 bundles of each; slot 2: the last one of each, plus plain transactions
    slot1 = _merge(
        *[_spread(e, s, 1, range(k - 1)) for e, s, k in zip(encoded, senders, kappas, strict=True)]
    )
    slot2 = _merge(
        *[_spread(e, s, 2, [k - 1 + 5]) for e, s, k in zip(encoded, senders, kappas, strict=True)]
    )
    blocks = [_block(1, slot1, [b"a"]), _block(2, slot2, [b"b", b"c"])]
    trackers = [DecodeTracker(SMALL) for _ in range(3)]
    outcomes = [[t.on_finalized(h, b) for h, b in blocks] for t in trackers]
    first = outcomes[0]
    assert first[0].payloads == () and len(first[0].redemptions) == sum(kappas) - 3
    executed = first[1].payloads
    assert [e.status for e in executed] == ["executed"] * 3
    parent = blocks[1][0].qc.block_id
    assert [e.commitment_id for e in executed] == sorted(
        (e.commitment_id for e in encoded), key=lambda cid: execution_key(parent, cid)
    )
    assert [e.position for e in executed] == [0, 1, 2]  # before the block's 2 transactions
    by_id = {e.commitment_id: p for e, p in zip(encoded, payloads, strict=True)}
    assert all(e.payload == by_id[e.commitment_id] for e in executed)
    assert all(len(e.pivotal) == e.kappa and e.first_slot == 1 for e in executed)
    for other in outcomes[1:]:  # every node: same events, same hash
        assert other == first
    assert len({t.execution_order_hash for t in trackers}) == 1


def test_a_cheating_sender_is_rejected_identically_and_honest_payloads_still_execute() -> None:
    honest_key, cheat_key = sender_key("honest"), sender_key("cheat")
    honest = encode_payload(
        SMALL, seeded_bytes("h", 400), seeded_bytes("kh", 32), honest_key.public, expiry_slot=EXPIRY
    )
    base = encode_payload(
        SMALL, seeded_bytes("c", 400), seeded_bytes("kc", 32), cheat_key.public, expiry_slot=EXPIRY
    )
    cheat = forged_payload(SMALL, 400, cheat_key.public, "junk", base)
    kappa = honest.layout.kappa
    # the cheater's finalized bundles straddle its honest and junk halves
    half = cheat.layout.cap_bundles // 2
    cheat_indices = list(range(half - kappa // 2, half - kappa // 2 + kappa))
    blocks = [
        _block(
            1,
            _merge(
                _spread(honest, honest_key, 1, range(kappa)),
                _spread(cheat, cheat_key, 1, cheat_indices),
            ),
        )
    ]
    trackers = [DecodeTracker(SMALL) for _ in range(4)]
    results = [t.on_finalized(*blocks[0]) for t in trackers]
    statuses = {e.commitment_id: e.status for e in results[0].payloads}
    assert statuses == {honest.commitment_id: "executed", cheat.commitment_id: "rejected"}
    assert all(r == results[0] for r in results)
    assert all(t.status(cheat.commitment_id) == "rejected" for t in trackers)
    # tickets of the cheater were still redeemed: the lanes did their job
    assert sum(r.commitment_id == cheat.commitment_id for r in results[0].redemptions) == kappa


def test_duplicates_late_bundles_order_and_expiry() -> None:
    key = sender_key()
    encoded = encode_payload(
        SMALL, seeded_bytes("d", 300), seeded_bytes("kd", 32), key.public, expiry_slot=EXPIRY
    )
    kappa = encoded.layout.kappa
    stuck = encode_payload(
        SMALL, seeded_bytes("s", 300), seeded_bytes("ks", 32), key.public, expiry_slot=EXPIRY
    )
    tracker = DecodeTracker(SMALL, pending_ttl_slots=3)
    h1 = _block(
        1,
        _merge(
            _spread(encoded, key, 1, range(kappa - 1)),
            {5: [entry_for(TRUSTED, key, stuck, 0, 5, 1)]},
        ),
    )
    # slot 2 re-finalizes bundle 0 (fresh ticket, other lane): harmless duplicate
    h2 = _block(2, {4: [entry_for(TRUSTED, key, encoded, 0, 4, 2)]})
    h3 = _block(3, {0: [entry_for(TRUSTED, key, encoded, kappa + 3, 0, 3)]})
    h4 = _block(4, {1: [entry_for(TRUSTED, key, encoded, kappa + 4, 1, 4)]})
    o1 = tracker.on_finalized(*h1)
    with pytest.raises(ValueError):
        tracker.on_finalized(*h3)  # height 2 is missing
    o2 = tracker.on_finalized(*h2)
    assert (o2.duplicates, o2.payloads) == (1, ())
    o3 = tracker.on_finalized(*h3)
    assert [e.status for e in o3.payloads] == ["executed"]
    o4 = tracker.on_finalized(*h4)
    assert o4.late == 1
    assert [(e.commitment_id, e.status) for e in o4.payloads] == [(stuck.commitment_id, "expired")]
    assert o1.payloads == () and tracker.counts == {"executed": 1, "rejected": 0, "expired": 1}


def test_lane_block_does_not_depend_on_arrival_order() -> None:
    key = sender_key()
    encoded = [
        encode_payload(
            SMALL,
            seeded_bytes(f"o{i}", 100),
            seeded_bytes(f"ko{i}", 32),
            key.public,
            expiry_slot=EXPIRY,
        )
        for i in range(2)
    ]
    entries = [entry_for(TRUSTED, key, e, i, 2, 1) for e in encoded for i in range(3)]
    blocks = set()
    for order in itertools.islice(itertools.permutations(entries), 0, 720, 97):
        proposer = LaneProposer(lane=2, key=KEYS[2], scheme=TRUSTED, params=SMALL)
        for entry in order:
            assert proposer.submit(entry) is None
        blocks.add(proposer.seal(1))
    assert len(blocks) == 1


@pytest.mark.parametrize("policy", list(AddressPolicy))
def test_replicas_agree_under_withholding_and_offline_lanes(policy: AddressPolicy) -> None:
    from consensus.lanes.proposer import CartelPool, WithholdPolicy

    pool = CartelPool()
    net = LocalLanes(SMALL, lanes=8, withhold={1: WithholdPolicy(pool)}, offline=[6], trackers=3)
    senders = [
        net.add_sender(SenderConfig(lanes=8, bundles_per_slot=3, policy=policy), bytes([i]))
        for i in range(3)
    ]
    for i, sender in enumerate(senders):
        for j in range(2):
            sender.submit(
                seeded_bytes(f"r{i}{j}", 150 * (j + 1)),
                seeded_bytes(f"rk{i}{j}", 32),
                first_slot=1 + j,
            )
    net.run(12)
    hashes = {t.execution_order_hash for t in net.trackers}
    assert len(hashes) == 1
    assert net.trackers[0].counts["executed"] == 6
