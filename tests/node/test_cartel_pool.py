"""The cartel's side channel (node/cartel_pool.py): relay, records, refusals (real sockets)."""

from __future__ import annotations

import asyncio

from consensus.crypto import ED25519, derive_keys
from consensus.lanes.cartel import CartelStrategy
from consensus.lanes.encoding import encode_payload
from consensus.lanes.tracker import DecodeTracker
from consensus.lanes.wire import EMPTY_PAYLOAD, encode
from node.cartel_pool import (
    MAX_FRAME_BYTES,
    CartelMember,
    Decoded,
    Hello,
    Hold,
    PoolHub,
    Withheld,
    pack,
    read_frame,
)
from node.lanes_node import NODE_LANE_PARAMS
from tests.lanes.helpers import entry_for


async def _connect(hub: PoolHub, lane: int):
    reader, writer = await asyncio.open_connection(hub.host, hub.port)
    writer.write(pack(Hello(lane)))
    await writer.drain()
    return reader, writer


async def _settle(predicate, timeout_s: float = 2.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)


def test_the_hub_relays_reports_to_the_other_members_and_records_them() -> None:
    async def scenario() -> None:
        hub = PoolHub()
        await hub.start()
        try:
            _reader_a, writer_a = await _connect(hub, 1)
            reader_b, writer_b = await _connect(hub, 2)
            await _settle(lambda: len(hub.members) == 2)
            hold = Hold(lane=1, cid=b"c" * 32, kappa=2, slot=7, index=0)
            writer_a.write(pack(hold))
            assert await asyncio.wait_for(read_frame(reader_b), 2.0) == hold
            # decode reports are recorded (earliest slot wins), not relayed
            writer_a.write(pack(Decoded(lane=1, cid=b"c" * 32, slot=9)))
            writer_b.write(pack(Decoded(lane=2, cid=b"c" * 32, slot=8)))
            await _settle(lambda: hub.private_slot.get(b"c" * 32) == 8)
            assert hub.private_slot == {b"c" * 32: 8} and hub.holds == 1
            # a member reports for its own lane only
            writer_b.write(pack(Hold(lane=1, cid=b"d" * 32, kappa=2, slot=7, index=1)))
            await _settle(lambda: hub.refused == 1)
            assert hub.refused == 1 and hub.holds == 1
            # an oversized frame ends that member's connection
            writer_b.write((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
            await _settle(lambda: 2 not in hub.members)
            assert 2 not in hub.members and hub.refused == 2
            for writer in (writer_a, writer_b):
                writer.close()
        finally:
            await hub.close()

    asyncio.run(scenario())


def test_a_member_applies_its_peers_holdings_to_its_own_book() -> None:
    async def scenario() -> None:
        hub = PoolHub()
        await hub.start()
        member = CartelMember(
            2, NODE_LANE_PARAMS, CartelStrategy("threshold", m=2, theta=2), ("127.0.0.1", hub.port)
        )
        task = asyncio.create_task(member.run())
        try:
            _reader, writer = await _connect(hub, 1)
            await _settle(lambda: len(hub.members) == 2)
            cid = b"e" * 32
            for index in (0, 1):
                writer.write(pack(Hold(lane=1, cid=cid, kappa=3, slot=5, index=index)))
            await _settle(lambda: member.pool.book.view(cid, 5) is not None)
            view = member.pool.book.view(cid, 5)
            assert view is not None and view.holdings == 2  # X = 2 >= theta: withhold
            assert member.pool.book.decide(cid, 5)
            writer.close()
        finally:
            task.cancel()
            await hub.close()

    asyncio.run(scenario())


def test_a_member_decodes_privately_from_bundles_its_peer_withheld() -> None:
    """Peer lane 1 withholds κ bundles of a payload and sends them over the channel; lane 2
    holds none itself and the chain none: lane 2 decodes it once their slot is final, and
    the hub records that slot (with the peers' bundles ignored, nothing decodes)."""
    scheme = ED25519
    sender = derive_keys(1, "cartel-test-sender")[0]
    payload = b"cartel" * 80
    encoded = encode_payload(NODE_LANE_PARAMS, payload, b"k" * 32, sender.public, expiry_slot=1000)
    kappa = encoded.commitment.kappa
    slot = 3

    async def scenario() -> None:
        hub = PoolHub()
        await hub.start()
        member = CartelMember(2, NODE_LANE_PARAMS, CartelStrategy(), ("127.0.0.1", hub.port))
        task = asyncio.create_task(member.run())
        try:
            _reader, writer = await _connect(hub, 1)
            await _settle(lambda: len(hub.members) == 2)
            for index in range(kappa):
                entry = entry_for(scheme, sender, encoded, index, lane=1, slot=slot)
                writer.write(pack(Withheld(lane=1, slot=slot, entry=encode(entry))))
            cid = encoded.commitment_id
            await _settle(lambda: member.pool.bundle_count(cid) == kappa)
            tracker = DecodeTracker(NODE_LANE_PARAMS)
            for height in range(1, slot + 2):
                outcome = tracker.on_finalized_payload(height, EMPTY_PAYLOAD, b"\0" * 32)
                member.after_tracked(tracker, outcome)
                if height < slot:
                    assert cid not in member.decoded  # its bundles' slot is not final yet
            assert member.decoded.get(cid) == slot
            await _settle(lambda: cid in hub.private_slot)
            assert hub.private_slot == {cid: slot}
            writer.close()
        finally:
            task.cancel()
            await hub.close()

    asyncio.run(scenario())
