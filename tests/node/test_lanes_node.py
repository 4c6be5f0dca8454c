"""Sedna lanes in the node: admission, lane-block relay, POST /bundle, decode tracking,
tracker persistence across a restart, and an end-to-end testnet run with Sedna load."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.crypto import ED25519, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.payload import build_block_payload
from consensus.lanes.proposer import max_entry_bytes
from consensus.lanes.tickets import make_ticket, sign_ticket, sign_ticket_batch
from consensus.lanes.tracker import execution_key
from consensus.lanes.wire import LaneEntry, SignedTicket, encode_lane_entry
from consensus.messages import GENESIS_BLOCK_ID, BlockBody
from consensus.validators import ValidatorSet, schedule_by_name
from node.assembly import build_runtime
from node.config import load_config, load_key
from node.lanes_node import (
    LANE_FRAME_TAG,
    MAX_FUTURE_SLOTS,
    MAX_HELD_SLOTS,
    NODE_LANE_PARAMS,
    SEAL_AHEAD_SLOTS,
    NodeBlockValidator,
    NodeLanes,
    stand_in_header,
)
from node.mempool import PlainPayloadValidator
from node.rpc import HttpClient, encode_binary_txs
from node.runtime import NodeRuntime
from node.tools.sedna_client import MAX_LEAD_BONUS, MAX_SLOT_LEAD, SednaClient, SednaPolicy
from node.tools.testnet import generate_network
from tests.lanes.helpers import EXPIRY
from tests.node.helpers import send_payloads, wait_until

ROOT = Path(__file__).resolve().parents[2]
KEYS = derive_keys(4, b"tests/lanes-node")
SENDER = derive_keys(1, b"tests/lanes-node/sender")[0]
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])
SCHEDULE = schedule_by_name("round-robin", VALIDATORS)


def _lanes() -> list[NodeLanes]:
    return [
        NodeLanes(index=i, key=k, scheme=ED25519, validators=VALIDATORS, schedule=SCHEDULE)
        for i, k in enumerate(KEYS)
    ]


def _encoded(size: int = 512, seed: int = 0):
    payload = bytes((seed + i) % 251 for i in range(size))
    return encode_payload(
        NODE_LANE_PARAMS, payload, bytes([seed]) * 32, SENDER.public, expiry_slot=EXPIRY
    )


def _entry(encoded, lane: int, slot: int, bundle: int, scheme=ED25519) -> LaneEntry:
    ticket = make_ticket(encoded.commitment_id, lane, slot, bundle, 1)
    return LaneEntry(encoded.bundles[bundle], sign_ticket(scheme, SENDER, ticket))


def _data(encoded, lane: int, slot: int, bundle: int, scheme=ED25519) -> bytes:
    """A lane entry signed for `scheme`'s chain (a real network's: its config's chain id)."""
    return encode_lane_entry(_entry(encoded, lane, slot, bundle, scheme))


# --------------------------------------------------------------------------- NodeLanes


def test_admission_counts_every_rejection_reason() -> None:
    lane = _lanes()[0]
    enc = _encoded()
    lane.on_finalized(2)  # slots up to 2 are closed
    slot = lane.open_slot
    assert slot == 3
    forged = _entry(enc, 0, slot, 3)
    forged = LaneEntry(forged.bundle, SignedTicket(forged.ticket.ticket, (), bytes(64)))
    records = [
        _data(enc, 0, slot, 0),  # accepted
        _data(enc, 0, slot, 0),  # the same bundle again
        _data(enc, 1, slot, 1),  # addressed to lane 1
        _data(enc, 0, slot - 1, 2),  # a closed slot
        _data(enc, 0, slot + MAX_FUTURE_SLOTS, 4),  # beyond the look-ahead window
        _data(enc, 0, slot + MAX_FUTURE_SLOTS - 1, 5),  # the last slot inside it
        encode_lane_entry(forged),
        b"\x93junk",
        os.urandom(max_entry_bytes(NODE_LANE_PARAMS) + 1),
    ]
    results = lane.submit(records)
    assert results == [
        None,
        "duplicate_symbol",
        "wrong_lane",
        "expired_ticket",
        "wrong_slot",
        None,
        "bad_ticket_signature",
        "malformed",
        "oversized",
    ]
    expected = {r: results.count(r) for r in results if r is not None}
    assert dict(lane.proposer.rejected) == expected
    assert lane.counters.bundles_accepted == 2
    assert lane.accepted_bundles(enc.commitment_id) == 2


def test_lane_block_is_relayed_to_the_leader_two_heights_ahead_and_verified() -> None:
    lanes = _lanes()
    enc = _encoded()
    voted_seq, vote_round = 5, 9
    slot = voted_seq + SEAL_AHEAD_SLOTS
    leader = SCHEDULE.leader(vote_round + SEAL_AHEAD_SLOTS)
    backup = SCHEDULE.leader(vote_round + SEAL_AHEAD_SLOTS + 1)
    sender = next(i for i in range(4) if i not in (leader, backup))
    assert lanes[sender].submit([_data(enc, sender, slot, 0)]) == [None]
    relays = lanes[sender].on_vote(voted_seq, vote_round)
    assert [peer for peer, _ in relays] == [leader, backup]
    (_, frame), (_, backup_frame) = relays
    assert frame[:3] == bytes([LANE_FRAME_TAG, 1, 0]) and backup_frame[2] == 1
    assert lanes[sender].on_vote(voted_seq, vote_round) == []  # one relay per (slot, leader)
    assert lanes[sender].submit([_data(enc, sender, slot, 1)]) == ["expired_ticket"]  # sealed
    target = lanes[leader]
    third = backup
    tampered = frame[:-1] + bytes([frame[-1] ^ 1])  # lane block signature broken
    assert target.on_lane_frame(third, frame) == "not_own_lane"
    assert target.on_lane_frame(sender, bytes([LANE_FRAME_TAG, 9, 0]) + frame[3:]) == "bad_version"
    assert target.on_lane_frame(sender, bytes([LANE_FRAME_TAG, 1, 7]) + frame[3:]) == "bad_version"
    assert target.on_lane_frame(sender, frame[:20]) == "malformed"
    assert target.on_lane_frame(sender, tampered) == "invalid"  # primary: verified on arrival
    assert target.on_lane_frame(sender, frame) is None
    assert target.on_lane_frame(sender, frame) == "duplicate"
    assert target.held_slots() == {slot: [sender]} and target.held_verified(slot) == {sender: True}
    assert dict(target.refused) == {
        "not_own_lane": 1,
        "bad_version": 2,
        "malformed": 1,
        "invalid": 1,
        "duplicate": 1,
    }
    # The leader proposes its own lane (sealed now) and the held one, sorted by lane.
    assert target.submit([_data(enc, leader, slot, 2)]) == [None]
    blocks = target.lane_blocks_for(slot, budget_bytes=1 << 20)
    assert [b.lane for b in blocks] == sorted([leader, sender])
    assert all(b.slot == slot for b in blocks)
    # A finalized slot drops held blocks.
    target.on_finalized(slot)
    assert target.held_slots() == {}


def test_backup_copies_are_verified_only_when_used() -> None:
    lanes = _lanes()
    enc = _encoded()
    voted_seq, vote_round = 5, 9
    slot = voted_seq + SEAL_AHEAD_SLOTS
    leader = SCHEDULE.leader(vote_round + SEAL_AHEAD_SLOTS)
    backup = SCHEDULE.leader(vote_round + SEAL_AHEAD_SLOTS + 1)
    good, bad = (i for i in range(4) if i not in (leader, backup))
    lanes[good].submit([_data(enc, good, slot, 0)])
    lanes[bad].submit([_data(enc, bad, slot, 1)])
    good_frame = dict(lanes[good].on_vote(voted_seq, vote_round))[backup]
    bad_frame = dict(lanes[bad].on_vote(voted_seq, vote_round))[backup]
    bad_frame = bad_frame[:-1] + bytes([bad_frame[-1] ^ 1])
    target = lanes[backup]
    assert target.on_lane_frame(good, good_frame) is None
    assert target.on_lane_frame(bad, bad_frame) is None  # held unverified
    assert target.held_verified(slot) == {good: False, bad: False}
    # round + 2 timed out: the backup proposes the slot and verifies the copies first
    blocks = target.lane_blocks_for(slot, budget_bytes=1 << 20)
    assert sorted(b.lane for b in blocks) == [good]
    assert target.refused["invalid"] == 1 and target.counters.backup_lane_blocks_used == 1


def test_slot_window_and_budget_of_held_lane_blocks() -> None:
    lanes = _lanes()
    enc = _encoded()
    leader = SCHEDULE.leader(3 + SEAL_AHEAD_SLOTS)
    sender = next(i for i in range(4) if i not in (leader, SCHEDULE.leader(6)))
    lanes[leader].on_finalized(40)  # the leader is ahead: slot 3 + 2 is already final
    lanes[sender].submit([_data(enc, sender, 5, 0)])
    relay = dict(lanes[sender].on_vote(3, 3))
    assert lanes[leader].on_lane_frame(sender, relay[leader]) == "slot_out_of_window"
    fresh = _lanes()
    fresh[sender].submit([_data(enc, sender, 5, 1)])
    relay = dict(fresh[sender].on_vote(3, 3))
    assert fresh[leader].on_lane_frame(sender, relay[leader]) is None
    far = _lanes()
    far[sender].on_finalized(MAX_HELD_SLOTS + 10)
    far[sender].submit([_data(enc, sender, MAX_HELD_SLOTS + 13, 2)])
    relay = dict(far[sender].on_vote(MAX_HELD_SLOTS + 11, 3))
    # the leader has finalized nothing: that slot is beyond its window
    assert far[leader].on_lane_frame(sender, relay[leader]) == "slot_out_of_window"
    assert fresh[leader].lane_blocks_for(5, budget_bytes=100) == []  # does not fit
    assert fresh[leader].counters.lane_blocks_omitted == 1


def test_block_validator_trusts_only_bodies_built_here_for_that_height() -> None:
    lanes = _lanes()
    enc = _encoded()
    lane = lanes[0]
    slot = lane.open_slot + 1
    lane.submit([_data(enc, 0, slot, 0)])
    blocks = lane.lane_blocks_for(slot, 1 << 20)
    body = BlockBody(build_block_payload([b"tx"], blocks))
    plain = PlainPayloadValidator(10, 100, 10_000, lanes=lane.validator)
    validator = NodeBlockValidator(plain, lane)
    lane.note_built(slot, body)
    assert validator.validate(stand_in_header(slot, 0, body), body)
    # the same bytes at another height are checked in full, and a lane block belongs to its slot
    assert not validator.validate(stand_in_header(slot + 1, 0, body), body)
    other = NodeBlockValidator(
        PlainPayloadValidator(10, 100, 10_000, lanes=lanes[1].validator), lanes[1]
    )
    assert other.validate(stand_in_header(slot, 0, body), body)  # full check passes
    tampered = BlockBody(body.payload[:-1] + bytes([body.payload[-1] ^ 1]))
    assert not other.validate(stand_in_header(slot, 0, tampered), tampered)


def test_each_node_verifies_a_ticket_batch_signature_once() -> None:
    """Tickets for two lanes and three payloads under one batch signature: the lanes
    verify it once on admission, a third node once in the proposal, and a lane that
    admitted part of the batch not again; its own sealed lane block is trusted."""
    lanes = _lanes()
    encs = [_encoded(seed=s) for s in range(3)]
    slot = lanes[0].open_slot + 1
    tickets = [make_ticket(e.commitment_id, lane, slot, lane, 1) for e in encs for lane in (0, 1)]
    signed = sign_ticket_batch(ED25519, SENDER, tickets)
    enc_by_cid = {e.commitment_id: e for e in encs}
    for lane in (0, 1):
        data = [
            encode_lane_entry(
                LaneEntry(enc_by_cid[s.ticket.commitment_id].bundles[s.ticket.bundle_index], s)
            )
            for s in signed
            if s.ticket.lane == lane
        ]
        assert lanes[lane].submit(data) == [None, None, None]
        assert lanes[lane].tickets.signature_checks == 1
    blocks = lanes[0].lane_blocks_for(slot, 1 << 20) + lanes[1].lane_blocks_for(slot, 1 << 20)
    body = BlockBody(build_block_payload((), blocks))
    header = stand_in_header(slot, 1, body)
    assert lanes[2].validator.check(header, body) is None
    assert lanes[2].tickets.signature_checks == 1
    assert lanes[0].validator.check(header, body) is None
    assert lanes[0].tickets.signature_checks == 1  # lane 1's entries: the same batch
    # an outsider ticket cannot borrow a cached batch's signature and path
    later = slot + 2
    outsider = make_ticket(encs[0].commitment_id, 0, later, 2, 1)
    borrowed = SignedTicket(outsider, signed[0].batch_path, signed[0].signature)
    forged = SignedTicket(outsider, (), bytes(64))
    for ticket in (borrowed, forged):
        entry = encode_lane_entry(LaneEntry(encs[0].bundles[2], ticket))
        assert lanes[0].submit([entry]) == ["bad_ticket_signature"]
    assert lanes[0].tickets.signature_checks == 3


def test_client_slot_lead_grows_at_once_when_tickets_land_late_and_decays_slowly() -> None:
    client = SednaClient([(0, "127.0.0.1", 1)], policy=SednaPolicy(slot_lead=1))
    assert client.slot_lead() == 1  # no slot rate measured yet, no bonus
    client._adapt_lead(-3)  # the earliest ticket landed 3 slots after its slot was sealed
    assert client.slot_lead() == 1 + 3  # grown at once by the shortfall
    client._adapt_lead(0)  # landed in its slot, just in time: no change
    client._adapt_lead(1)  # one slot early: no change either
    assert client.slot_lead() == 4
    for _ in range(4):  # room to spare: a quarter slot per batch
        client._adapt_lead(10)
    assert client.slot_lead() == 3
    for _ in range(100):
        client._adapt_lead(10)
    assert client.slot_lead() == 1  # never below the policy's lead
    for _ in range(10):
        client._adapt_lead(-1000)
    assert client.slot_lead() == MAX_LEAD_BONUS + 1  # bounded bonus
    client._slot_rate, client._rtt_s = 1000.0, 1.0  # a huge measured lead: capped
    assert client.slot_lead() == MAX_SLOT_LEAD < MAX_FUTURE_SLOTS


def test_client_submit_many_encodes_together_within_the_active_bound() -> None:
    """Payloads submitted together are encoded in one batch, each under its own AONT key
    and the client's sender key; only as many as `max_active` leaves room for are queued,
    the rest refused as `submit` refuses them."""
    client = SednaClient([(0, "127.0.0.1", 1), (1, "127.0.0.1", 2)], max_active=3)
    payloads = [b"a" * 300, b"b" * 300, b"c" * 40, b"d" * 300]
    assert client.submit_many(payloads) == 3
    assert client.active() == 3 and client.stats.refused_full == 1
    queued = [p.encoded for p in client.payloads.values()]
    assert [e.commitment.payload_len for e in queued] == [300, 300, 40]
    assert all(e.commitment.sender == client.key.public for e in queued)
    roots = {e.commitment.merkle_root for e in queued}
    assert len(roots) == 3  # distinct payloads and keys
    assert client.submit_many([b"e" * 10]) == 0 and client.stats.refused_full == 2


def test_tracker_executes_a_payload_once_its_bundles_are_final() -> None:
    lanes = _lanes()
    enc = _encoded(size=900)
    assert enc.layout.kappa == 3
    tracker = lanes[0]
    assert tracker.payload_status(enc.commitment_id) == ("unknown", [])
    # slot 1 carries bundles 0 and 1 (lanes 1, 2), slot 2 bundle 2 (lane 3): decoded at 2
    plan = {1: [(1, 0), (2, 1)], 2: [(3, 2)]}
    for slot, addressed in plan.items():
        for lane, bundle in addressed:
            assert lanes[lane].submit([_data(enc, lane, slot, bundle)]) == [None]
        blocks = [b for lane in lanes for b in lane.lane_blocks_for(slot, 1 << 20)]
        body = BlockBody(build_block_payload([b"t%d" % slot], blocks))
        outcome, offset = tracker.track(stand_in_header(slot, 0, body), body)
        assert offset == 0 and len(outcome.redemptions) == len(addressed)
        if slot == 1:
            assert outcome.payloads == ()
            assert tracker.payload_status(enc.commitment_id) == ("pending", [0, 1])
    (event,) = outcome.payloads
    assert event.status == "executed" and event.position == 0  # before the block's txs
    assert event.payload == bytes(i % 251 for i in range(900))
    assert tracker.tracker_height == 2
    assert tracker.payload_status(enc.commitment_id) == ("executed", [])


# --------------------------------------------------------------------------- POST /bundle


MODES = ("certified", "carried")


def _net(root: Path, nodes: int = 4, dissemination: str = "certified", **kwargs) -> list:
    manifest = generate_network(
        root, nodes, consensus={"delta_ms": 50.0}, dissemination=dissemination, **kwargs
    )
    return [load_config(root / m["config"]) for m in manifest["members"]]


def test_bundle_endpoint_admits_good_bundles_and_counts_junk(tmp_path: Path) -> None:
    """One node of four (no quorum, so its lane's open slot stays put) behind its real RPC."""

    async def scenario() -> None:
        config = _net(tmp_path)[0]
        node = build_runtime(config, load_key(config))
        node.rpc.max_bundle_request_bytes = 64 * 1024
        task = asyncio.create_task(node.run())
        try:
            for _ in range(100):
                if node.rpc.port:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            client = HttpClient("127.0.0.1", node.rpc.port)
            enc = _encoded(size=700)
            slot = node.lanes.open_slot
            chain = ED25519.for_chain(config.consensus.chain_id)  # the network's chain
            good = base64.b64encode(_data(enc, 0, slot, 0, chain)).decode()
            status, body = await client.post_json("/bundle", {"bundle": good})
            assert status == 200 and body["accepted"] == 1 and body["results"] == [None]
            assert body["lane"] == 0 and body["open_slot"] == slot
            status, body = await client.post_json("/bundle", {"bundles": [good]})
            assert status == 400 and body["rejected"] == {"duplicate_symbol": 1}
            junk = encode_binary_txs(
                [
                    b"\x92junk",
                    _data(enc, 1, slot, 1, chain),
                    os.urandom(max_entry_bytes(NODE_LANE_PARAMS) + 1),
                ]
            )
            status, raw = await client.request("POST", "/bundle", junk, "application/octet-stream")
            answer = json.loads(raw)
            assert status == 400 and answer["accepted"] == 0
            assert answer["results"] == ["malformed", "wrong_lane", "oversized"]
            # A request body above the bundle limit is refused before it is read.
            status, raw = await client.request(
                "POST", "/bundle", bytes(64 * 1024 + 1), "application/octet-stream"
            )
            assert status == 413
            for bad, error in (
                ({"bundle": "***"}, "base64"),
                ({"bundle": 7}, "base64"),
                ({"nothing": 1}, "expected"),
                ({"bundles": []}, "no bundles"),
            ):
                status, body = await client.post_json("/bundle", bad)
                assert status == 400 and error in body["error"]
            status, raw = await client.request("POST", "/bundle", b"x", "text/plain")
            assert status == 400
            state = await client.get_json(f"/payload/{enc.commitment_id.hex()}")
            assert state["state"] == "submitted" and state["lane_accepted_bundles"] == 1
            lanes = await client.get_json("/lanes")
            assert lanes["bundles_rejected"] == {
                "duplicate_symbol": 1,
                "malformed": 1,
                "wrong_lane": 1,
                "oversized": 2,
            }
            metrics = (await client.request("GET", "/metrics"))[1].decode()
            assert 'sedna_bundles_rejected_total{reason="oversized"} 2' in metrics
            assert "sedna_bundles_accepted_total 1" in metrics
            await client.close()
        finally:
            node.stop()
            await task

    asyncio.run(scenario())


# --------------------------------------------------------------------------- tracker persistence


@pytest.mark.parametrize("mode", MODES)
def test_decoded_payloads_survive_a_restart_without_double_execution(
    tmp_path: Path, mode: str
) -> None:
    async def scenario() -> None:
        configs = _net(tmp_path, dissemination=mode)
        nodes = [build_runtime(c, load_key(c)) for c in configs]
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        restarted: NodeRuntime | None = None
        try:
            assert await wait_until(lambda: min(n.ledger.finalized_height for n in nodes) >= 3, 20)
            targets = [(n.index, "127.0.0.1", n.rpc.port) for n in nodes]
            client = SednaClient(targets, policy=SednaPolicy(extra_bundles=1))
            for n in nodes:  # plain txs alongside: payloads execute before a block's txs
                n.view.rpc_submit([b"plain-%d-%d" % (n.index, i) for i in range(40)])
            first = await send_payloads(
                client, [b"first-%d" % i + bytes(300) for i in range(12)], 30
            )
            assert client.stats.decided["decoded"] == 12
            assert 1 <= client.stats.ticket_batches < client.stats.bundles_sent  # batched
            assert await wait_until(
                lambda: all(n.lanes.tracker.counts["executed"] >= 12 for n in nodes), 20
            )
            victim = nodes[1]
            assert (victim.room is not None) == (mode == "certified")
            before = victim.ledger.storage.lane_events(1, 10**9, with_data=True)
            stored_height = victim.ledger.storage.lane_height()
            own_lane_height = victim.room.layer.own_height if victim.room else 0
            assert {e.payload_id for e in before} == set(first)
            victim.stop()
            await tasks[1]
            restarted = build_runtime(victim.config, load_key(victim.config))
            assert restarted.lanes.tracker_height == 0  # rebuilt by replaying the chain
            if mode == "certified":
                # lane blocks recovered from SQLite: the lane never re-signs a height it used
                assert restarted.room is not None
                assert restarted.room.layer.own_height == own_lane_height > 0
                assert restarted.ledger.storage.lane_chain_count() > 0
            tasks[1] = asyncio.create_task(restarted.run())
            nodes[1] = restarted
            assert await wait_until(lambda: restarted.lanes.tracker_height >= stored_height, 30)
            after = restarted.ledger.storage.lane_events(1, 10**9, with_data=True)
            assert after[: len(before)] == before  # same rows, same decided_ns: not re-executed
            assert (
                restarted.metrics.replay_mismatch.total() == 0
                and restarted.lane_tracker.error is None
            )
            assert restarted.lanes.tracker.counts["executed"] >= 12
            # the restarted node keeps decoding new payloads, in the same order as the others
            client.targets[1] = ("127.0.0.1", restarted.rpc.port)
            second = await send_payloads(
                client, [b"second-%d" % i + bytes(300) for i in range(6)], 30
            )
            assert len(second) == 6
            assert await wait_until(
                lambda: all(n.lanes.tracker.counts["executed"] >= 18 for n in nodes), 20
            )
            common = min(n.ledger.storage.lane_height() for n in nodes)
            hashes = {n.ledger.storage.lane_hash_at(common) for n in nodes}
            assert len(hashes) == 1 and None not in hashes
            events = restarted.ledger.storage.lane_events(1, 10**9)
            ids = [e.payload_id for e in events]
            assert len(ids) == len(set(ids)) == restarted.ledger.storage.lane_event_count()
            # positions: first in the block (before its plain txs), consecutive, in the
            # order keyed by the parent block's id
            by_height: dict[int, list] = {}
            for e in events:
                by_height.setdefault(e.height, []).append(e)
            assert any(r.n_tx for r in restarted.ledger.storage.finalized_range(1, 10**9))
            for height, group in by_height.items():
                parent = (
                    restarted.ledger.storage.finalized_range(height - 1, height - 1)[0].block_id
                    if height > 1
                    else GENESIS_BLOCK_ID
                )
                assert [e.position for e in group] == list(range(len(group)))
                assert [e.payload_id for e in group] == sorted(
                    (e.payload_id for e in group), key=lambda cid: execution_key(parent, cid)
                )
            await client.close()
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_a_lane_that_never_relays_is_ratcheted_out_and_payloads_still_decode(
    tmp_path: Path, mode: str
) -> None:
    """Node 3 is silent (accepts bundles over RPC, never votes, relays or broadcasts): its
    bundles are never finalized, the sender re-sends the missing ones and excludes lane 3."""

    async def scenario() -> None:
        configs = _net(tmp_path, dissemination=mode, node_test={3: {"byzantine": "silent"}})
        nodes = [build_runtime(c, load_key(c)) for c in configs]
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        try:
            assert await wait_until(
                lambda: min(n.ledger.finalized_height for n in nodes[:3]) >= 3, 20
            )
            targets = [(n.index, "127.0.0.1", n.rpc.port) for n in nodes]
            client = SednaClient(targets, policy=SednaPolicy(lanes="fresh"))
            ids = await send_payloads(
                client, [b"ratchet-%d" % i + bytes(200) for i in range(20)], 40
            )
            assert client.stats.decided["decoded"] == 20
            assert client.stats.resends > 0 and client.stats.ratchet_exclusions > 0
            # the silent lane held unredeemed tickets, so some payload excluded it
            assert any(3 in client.payloads[cid].excluded for cid in ids)
            assert nodes[3].lanes.counters.bundles_accepted > 0
            assert nodes[3].lanes.counters.lane_blocks_relayed == 0
            if mode == "certified":  # its lane sealed blocks that never got a PoA
                assert nodes[3].room.layer.stats.sealed > 0
                assert all(3 not in n.room.layer.finalized_cut for n in nodes[:3])
            await client.close()
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- end to end


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_testnet_run_decodes_sedna_payloads_on_every_node_through_a_kill(mode: str) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "node.cli", "testnet", "run", "--nodes", "4",
            "--duration", "6", "--rate", "200", "--sedna-rate", "40",
            "--perturb", "kill:2:1@2", "--dissemination", mode, "--json",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    s = json.loads(result.stdout)
    assert s["dissemination"] == mode
    if mode == "certified":
        availability = s["availability"]
        assert set(availability) == {"0", "1", "2", "3"}
        # the nodes that ran throughout certified their lane blocks and saw the others'
        # (node 2's counters restart with its process); no lane signed two blocks at a height
        assert all(
            a["poa_formed"] > 0 and a["poas_received"] > 0
            for node, a in availability.items()
            if node != "2"
        )
        assert all(a["equivocations"] == 0 for a in availability.values())
    else:
        assert s["availability"] == {}
    assert s["ok"] and s["agreement"] and s["execution_order_agreement"]
    offered = s["sedna_offered"]
    assert offered >= 150
    assert s["sedna_decoded"] == {str(i): offered for i in range(4)}  # every node, every payload
    assert 0 < s["sedna_decode_ms"]["p50"] <= s["sedna_decode_ms"]["p99"]
    assert s["execution_order_height"] > 0 and len(s["execution_order_hash"]) == 64
    assert s["perturbations"][0]["recovered"]
    assert s["committed_tx"] == s["accepted_tx"] > 0
