"""The availability layer of certified lanes (docs/lanes.md, "Certified lanes"): every
rule and its negatives, on a small in-process network of layers (`lanenet.LaneNet`)."""

from __future__ import annotations

import msgspec
import pytest

from consensus.crypto import ED25519, derive_keys
from consensus.events import Broadcast, Send
from consensus.lanes.availability import (
    AvailabilityConfig,
    HeightReached,
    LaneMessageReceived,
    LanesFinalized,
    ServeFromStorage,
    StoreLaneBlock,
)
from consensus.lanes.chain import (
    ZERO_DIGEST,
    AvailabilityVote,
    ChainBlockChecker,
    LaneBlockMessage,
    LaneChainBlock,
    LaneFetchRequest,
    LaneFetchResponse,
    LaneTip,
    LaneTipMessage,
    PoA,
    TipRef,
    build_poa,
    chain_block_digest,
    sign_chain_block,
    sign_vote,
    tip_ref,
    verify_poa,
)
from consensus.lanes.cut import finalized_order
from consensus.lanes.encoding import encode_payload
from consensus.lanes.tickets import make_ticket, sign_ticket
from consensus.lanes.wire import LaneEntry
from consensus.validators import encode_bitmap
from tests.lanes.helpers import EXPIRY, SMALL, entry_for, seeded_bytes, sender_key
from tests.lanes.lanenet import LaneNet, tips_of

SENDER = sender_key()
ENC = encode_payload(
    SMALL, seeded_bytes("av", 600), seeded_bytes("avk", 32), SENDER.public, expiry_slot=EXPIRY
)


def entries(lane: int, indices, slot: int, encoded=ENC, fee: int = 1) -> tuple[LaneEntry, ...]:
    made = [entry_for(ED25519, SENDER, encoded, i, lane, slot, fee) for i in indices]
    return tuple(sorted(made, key=lambda e: (e.ticket.ticket.commitment_id, e.bundle.bundle_index)))


def seal(net: LaneNet, lane: int, indices, slot: int) -> LaneChainBlock:
    """Admit bundles at `lane` for `slot` and let it seal them (HeightReached(slot))."""
    for entry in entries(lane, indices, slot):
        assert net.submit(lane, entry) == []
    assert net.nodes[lane].layer.proposer.rejected == {}
    commands = net.feed(lane, HeightReached(slot))
    (block,) = [
        c.message.block
        for c in commands
        if type(c) is Broadcast and type(c.message) is LaneBlockMessage
    ]
    return block


def signed(net: LaneNet, lane: int, height: int, parent: bytes, slot: int, items, key=None):
    return sign_chain_block(
        ED25519,
        key or net.keys[lane],
        lane=lane,
        height=height,
        parent=parent,
        slot=slot,
        entries=tuple(items),
    )


def commands_of(net: LaneNet, index: int, sender: int, message) -> list:
    return net.feed(index, LaneMessageReceived(sender, message))


def votes_in(commands) -> list[AvailabilityVote]:
    return [c.message for c in commands if type(c) is Send and type(c.message) is AvailabilityVote]


@pytest.fixture
def net() -> LaneNet:
    network = LaneNet(4, SMALL, ED25519)
    network.height(1)  # every node holds height 1: slots up to 1 + 64 are in the window
    return network


# ----------------------------------------------------------------------------- the happy path


def test_a_sealed_block_is_stored_then_broadcast_then_certified_by_f_plus_1(net: LaneNet) -> None:
    for entry in entries(0, [0, 1, 2], 2):
        net.submit(0, entry)
    commands = net.feed(0, HeightReached(2))
    kinds = [type(c).__name__ for c in commands]
    assert kinds[:2] == ["StoreLaneBlock", "Broadcast"]  # durable before it leaves (LC-SEAL)
    block = commands[1].message.block
    assert (block.lane, block.height, block.parent, block.slot) == (0, 1, ZERO_DIGEST, 2)
    assert len(block.entries) == 3
    # a voter stores the block before its vote leaves
    voter = commands_of(net, 1, 0, LaneBlockMessage(block))
    assert [type(c).__name__ for c in voter] == ["StoreLaneBlock", "Send"]
    assert voter[1].to == 0 and voter[0].voted
    net.queue.clear()
    formed = net.feed(0, LaneMessageReceived(1, voter[1].message))
    (tip,) = tips_of(formed)
    # f+1 = 2 of 4: the lane's own vote and one more
    assert tip.tip == TipRef(0, 1, chain_block_digest(block), 2)
    assert verify_poa(net.validators, ED25519, tip.tip, tip.poa) is None
    assert net.nodes[0].layer.stats.poas_formed == 1
    net.run()
    assert all(node.layer.certified_tip(0) == tip for node in net.nodes)


def test_one_lane_block_per_slot_with_entries_chained_in_slot_order(net: LaneNet) -> None:
    for slot, indices in ((3, [0]), (5, [1, 2]), (4, [3])):
        for entry in entries(0, indices, slot):
            net.submit(0, entry)
    commands = net.feed(0, HeightReached(5))
    blocks = [
        c.message.block
        for c in commands
        if type(c) is Broadcast and type(c.message) is LaneBlockMessage
    ]
    assert [(b.height, b.slot) for b in blocks] == [(1, 3), (2, 4), (3, 5)]
    assert blocks[1].parent == chain_block_digest(blocks[0])
    assert blocks[2].parent == chain_block_digest(blocks[1])
    # a ticket for a sealed slot is now expired at the lane
    late = entries(0, [4], 5)[0]
    net.submit(0, late)
    assert net.nodes[0].layer.proposer.rejected == {"expired_ticket": 1}
    net.run()
    assert all(node.layer.certified_tip(0).tip.height == 3 for node in net.nodes)


# ----------------------------------------------------------------------------- votes and PoAs


def test_forged_relayed_misdirected_and_duplicate_votes_do_not_make_a_poa() -> None:
    net = LaneNet(7, SMALL, ED25519)  # f+1 = 3 of 7: the lane's vote and two more
    net.height(1)
    block = seal(net, 0, [0], 2)
    net.queue.clear()
    ref = tip_ref(block, chain_block_digest(block))
    lane = net.nodes[0].layer
    forged = AvailabilityVote(ref, 1, sign_vote(ED25519, net.keys[2], 1, ref).signature)
    assert net.feed(0, LaneMessageReceived(1, forged)) == []
    relayed = sign_vote(ED25519, net.keys[1], 1, ref)
    assert net.feed(0, LaneMessageReceived(2, relayed)) == []
    other = TipRef(0, 1, bytes(32), 2)
    assert net.feed(0, LaneMessageReceived(1, sign_vote(ED25519, net.keys[1], 1, other))) == []
    assert lane.stats.dropped == {
        "bad vote signature": 1,
        "vote not from its author": 1,
        "vote for no own block": 1,
    }
    genuine = sign_vote(ED25519, net.keys[1], 1, ref)
    assert net.feed(0, LaneMessageReceived(1, genuine)) == []
    assert net.feed(0, LaneMessageReceived(1, genuine)) == []  # a duplicate signer counts once
    assert lane.stats.poas_formed == 0
    third = net.feed(0, LaneMessageReceived(2, sign_vote(ED25519, net.keys[2], 2, ref)))
    (tip,) = tips_of(third)
    assert tip.poa.signers == encode_bitmap([0, 1, 2], 7)


def poa_over(net: LaneNet, ref: TipRef, signers) -> PoA:
    return build_poa(
        net.validators, {i: sign_vote(ED25519, net.keys[i], i, ref).signature for i in signers}
    )


def test_verify_poa_rejects_too_little_stake_malformed_signers_and_foreign_signatures() -> None:
    net = LaneNet(4, SMALL, ED25519)
    ref = TipRef(1, 3, b"d" * 32, 7)
    good = poa_over(net, ref, [0, 2])
    assert verify_poa(net.validators, ED25519, ref, good) is None
    few = poa_over(net, ref, [2])
    assert "less than f+1" in verify_poa(net.validators, ED25519, ref, few)
    extra = PoA(good.signers, (*good.signatures, good.signatures[0]))  # a signer twice
    assert "2 signers but 3 signatures" in verify_poa(net.validators, ED25519, ref, extra)
    assert "bitmap" in verify_poa(net.validators, ED25519, ref, PoA(b"\x05\x00", good.signatures))
    assert "bitmap" in verify_poa(net.validators, ED25519, ref, PoA(b"\x30", good.signatures))
    for other in (
        TipRef(1, 3, b"e" * 32, 7),
        TipRef(1, 3, b"d" * 32, 8),
        TipRef(2, 3, b"d" * 32, 7),
    ):
        assert "bad signature" in verify_poa(net.validators, ED25519, other, good)
    assert verify_poa(net.validators, ED25519.for_chain("other"), ref, good).startswith("bad sig")
    assert verify_poa(net.validators, ED25519, TipRef(9, 3, b"d" * 32, 7), good) == "unknown lane"
    # stake, not count: one validator with more than a third suffices
    weighted = LaneNet(4, SMALL, ED25519, stakes=[5, 1, 1, 1])
    assert verify_poa(weighted.validators, ED25519, ref, poa_over(weighted, ref, [0])) is None
    assert "f+1" in verify_poa(weighted.validators, ED25519, ref, poa_over(weighted, ref, [1, 2]))


def test_a_tip_message_with_a_bad_or_missing_poa_is_dropped(net: LaneNet) -> None:
    ref = TipRef(2, 1, b"d" * 32, 2)
    layer = net.nodes[1].layer
    net.feed(1, LaneMessageReceived(2, LaneTipMessage(LaneTip(ref))))
    net.feed(1, LaneMessageReceived(2, LaneTipMessage(LaneTip(ref, poa_over(net, ref, [2])))))
    assert layer.certified_tip(2) is None
    assert layer.stats.dropped["tip without a PoA"] == 1
    assert layer.stats.dropped["invalid PoA: signers hold less than f+1 stake"] == 1
    net.feed(1, LaneMessageReceived(3, LaneTipMessage(LaneTip(ref, poa_over(net, ref, [2, 3])))))
    assert layer.certified_tip(2).tip == ref  # anyone may relay a PoA: it proves itself


# ----------------------------------------------------------------------------- AV-FROM, AV-VERIFY


def test_a_lane_block_relayed_by_another_validator_is_not_voted(net: LaneNet) -> None:
    block = seal(net, 0, [0], 2)
    assert commands_of(net, 2, 1, LaneBlockMessage(block)) == []
    assert net.nodes[2].layer.stats.dropped == {"lane block relayed": 1}
    assert len(votes_in(commands_of(net, 2, 0, LaneBlockMessage(block)))) == 1


def _tampered(net: LaneNet, case: str) -> LaneChainBlock:
    slot = 2
    good = entries(0, [0, 1], slot)
    if case == "wrong_lane":
        items = entries(1, [0], slot)
    elif case == "wrong_slot":
        items = entries(0, [0], slot + 1)
    elif case == "bad_ticket_signature":
        other = derive_keys(1, "not-the-sender")[0]
        ticket = make_ticket(ENC.commitment_id, 0, slot, 0, 1)
        items = (LaneEntry(ENC.bundles[0], sign_ticket(ED25519, other, ticket)),)
    elif case == "bad_proof":
        bundle = ENC.bundles[0]
        swapped = msgspec.structs.replace(bundle, symbols=ENC.bundles[1].symbols)
        items = (msgspec.structs.replace(good[0], bundle=swapped),)
    elif case == "fee_too_low":
        items = entries(0, [0], slot, fee=0)
    elif case == "payload_expired":
        old = encode_payload(SMALL, b"x" * 600, b"k" * 32, SENDER.public, expiry_slot=slot - 1)
        items = entries(0, [0], slot, encoded=old)
    elif case == "bad_commitment":
        far = encode_payload(
            SMALL,
            b"y" * 600,
            b"j" * 32,
            SENDER.public,
            expiry_slot=slot + SMALL.max_lifetime_slots + 1,
        )
        items = entries(0, [0], slot, encoded=far)
    elif case == "unsorted":
        items = (good[1], good[0])
    elif case == "duplicate":
        items = (good[0], good[0])
    elif case == "empty":
        items = ()
    elif case == "bad_signature":
        return signed(net, 0, 1, ZERO_DIGEST, slot, good, key=net.keys[1])
    elif case == "first_with_parent":
        return signed(net, 0, 1, b"p" * 32, slot, good)
    else:
        raise AssertionError(case)
    return signed(net, 0, 1, ZERO_DIGEST, slot, items)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong_lane", "wrong_lane"),
        ("wrong_slot", "wrong_slot"),
        ("bad_ticket_signature", "bad_ticket_signature"),
        ("bad_proof", "bad_proof"),
        ("fee_too_low", "fee_too_low"),
        ("payload_expired", "payload_expired"),
        ("bad_commitment", "bad_commitment"),
        ("unsorted", "not strictly sorted"),
        ("duplicate", "not strictly sorted"),
        ("empty", "0 entries"),
        ("bad_signature", "bad lane block signature"),
        ("first_with_parent", "names a parent"),
    ],
)
def test_voters_check_every_admission_rule(net: LaneNet, case: str, reason: str) -> None:
    checker = net.nodes[1].layer.checker
    checker.min_fee = 1
    block = _tampered(net, case)
    assert commands_of(net, 1, 0, LaneBlockMessage(block)) == []  # no store, no vote
    ((dropped, count),) = net.nodes[1].layer.stats.dropped.items()
    assert dropped.startswith("invalid lane block") and reason in dropped and count == 1
    assert checker.check(block, chain_block_digest(block)) is not None  # never cached


def test_an_oversized_lane_block_is_dropped(net: LaneNet) -> None:
    block = seal(net, 0, [0, 1, 2], 2)
    net.nodes[1].layer.checker.max_entries_bytes = 100
    assert commands_of(net, 1, 0, LaneBlockMessage(block)) == []
    assert net.nodes[1].layer.stats.dropped == {"invalid lane block: oversized": 1}
    limit = ChainBlockChecker(
        net.validators,
        SMALL.__class__(**{**_fields(SMALL), "max_entries_per_lane_block": 2}),
        ED25519,
    )
    assert "3 entries outside" in limit.check(block, chain_block_digest(block))


def _fields(params) -> dict:
    return {name: getattr(params, name) for name in params.__dataclass_fields__}


# ----------------------------------------------------------------------------- AV-WINDOW


def test_window_bounds_slots_heights_and_parked_blocks() -> None:
    config = AvailabilityConfig(
        max_future_slots=4, max_unfinalized_per_lane=3, max_parked_per_lane=1
    )
    net = LaneNet(4, SMALL, ED25519, config=config)
    net.height(1)
    far = signed(net, 0, 1, ZERO_DIGEST, 6, entries(0, [0], 6))
    high = signed(net, 0, 4, b"a" * 32, 3, entries(0, [0], 3))
    gap1 = signed(net, 0, 3, b"b" * 32, 3, entries(0, [1], 3))
    gap2 = signed(net, 0, 2, b"c" * 32, 2, entries(0, [2], 2))
    layer = net.nodes[1].layer
    assert commands_of(net, 1, 0, LaneBlockMessage(far)) == []
    assert commands_of(net, 1, 0, LaneBlockMessage(high)) == []
    assert commands_of(net, 1, 0, LaneBlockMessage(gap1)) == []  # parked
    assert commands_of(net, 1, 0, LaneBlockMessage(gap2)) == []
    assert layer.stats.dropped == {
        "slot too far ahead": 1,
        "too far above the finalized tip": 1,
        "parked blocks full": 1,
    }


# ----------------------------------------------------------------------------- AV-ONCE, equivocation


def test_an_equivocating_lane_gets_one_vote_per_height_also_after_a_restart(net: LaneNet) -> None:
    first = signed(net, 0, 1, ZERO_DIGEST, 2, entries(0, [0], 2))
    second = signed(net, 0, 1, ZERO_DIGEST, 2, entries(0, [1], 2))
    assert len(votes_in(commands_of(net, 1, 0, LaneBlockMessage(first)))) == 1
    again = commands_of(net, 1, 0, LaneBlockMessage(second))
    assert votes_in(again) == [] and net.nodes[1].layer.stats.equivocations == 1
    assert [c.name for c in again] == ["lane_equivocation"]
    net.restart(1)
    net.height(1, [1])
    assert votes_in(commands_of(net, 1, 0, LaneBlockMessage(second))) == []
    assert net.nodes[1].layer.stats.equivocations == 1
    (vote,) = votes_in(commands_of(net, 1, 0, LaneBlockMessage(first)))  # the same vote again
    assert vote.tip.digest == chain_block_digest(first)


# ----------------------------------------------------------------------------- AV-CHAIN, fetch


def test_a_gap_parks_the_block_fetches_the_parent_and_votes_in_order(net: LaneNet) -> None:
    blocks = [seal(net, 0, [i], 2 + i) for i in range(3)]
    net.queue.clear()  # node 3 never saw heights 1 and 2
    parked = commands_of(net, 3, 0, LaneBlockMessage(blocks[2]))
    assert parked == []  # its parent may be in flight: ask only if it stays missing
    assert net.feed(3, HeightReached(2)) == []
    asked = net.feed(3, HeightReached(1 + AvailabilityConfig().fetch_retry_heights))
    (request,) = [c for c in asked if type(c.message) is LaneFetchRequest]
    assert request.to == 0 and request.message.digest == blocks[2].parent
    answer = net.feed(0, LaneMessageReceived(3, request.message))
    (response,) = [c.message for c in answer if type(c.message) is LaneFetchResponse]
    assert [b.height for b in response.blocks] == [2, 1]
    voted = commands_of(net, 3, 0, response)
    assert [v.tip.height for v in votes_in(voted)] == [1, 2, 3]  # parents first
    stored = [c.block.height for c in voted if type(c) is StoreLaneBlock]
    assert stored == [1, 2, 3]


def test_fetch_responses_must_be_solicited_and_chain(net: LaneNet) -> None:
    blocks = [seal(net, 0, [i], 2 + i) for i in range(2)]
    net.queue.clear()
    layer = net.nodes[3].layer
    unsolicited = LaneFetchResponse(0, chain_block_digest(blocks[0]), (blocks[0],))
    assert commands_of(net, 3, 0, unsolicited) == []
    commands_of(net, 3, 0, LaneBlockMessage(blocks[1]))  # parks, will ask for blocks[0]
    wrong = LaneFetchResponse(0, blocks[1].parent, (blocks[1],))
    assert commands_of(net, 3, 0, wrong) == []
    assert layer.stats.dropped == {
        "unsolicited fetch response": 1,
        "fetch response does not chain": 1,
    }
    good = LaneFetchResponse(0, blocks[1].parent, (blocks[0],))
    assert [v.tip.height for v in votes_in(commands_of(net, 3, 0, good))] == [1, 2]


# ----------------------------------------------------------------------------- FIN


def certify(net: LaneNet) -> None:
    net.run()


def test_a_finalized_cut_waits_for_missing_blocks_fetched_from_poa_signers(net: LaneNet) -> None:
    block = seal(net, 0, [0, 1], 2)
    net.drop_where(lambda dst, src, m: dst == 3)  # node 3 never gets the block
    net.run()
    tip = net.nodes[1].layer.certified_tip(0)
    assert net.nodes[3].layer.held(chain_block_digest(block), 0) is None
    for height in (1, 2, 3):
        net.finalize(3, height, ())
    waiting = net.finalize(3, 4, (tip,))
    assert not any(type(c) is LanesFinalized for c in waiting)
    (request,) = [c for c in waiting if type(c) is Send]
    signers = {0, 1}
    assert request.to in signers and type(request.message) is LaneFetchRequest
    net.run()
    done = net.nodes[3].finalized
    assert [f.height for f in done] == [1, 2, 3, 4]
    assert done[-1].blocks == (block,) and done[-1].transactions == (b"tx",)
    with pytest.raises(ValueError, match="expected finalized height 5"):
        net.finalize(3, 6, (tip,))


def test_fetches_move_to_the_next_signer_each_height_and_old_blocks_come_from_storage() -> None:
    config = AvailabilityConfig(finalized_kept_per_lane=1)
    net = LaneNet(4, SMALL, ED25519, config=config)
    net.height(1)
    blocks = [seal(net, 0, [i], 2 + i) for i in range(3)]
    net.drop_where(lambda dst, src, m: dst == 3)
    net.run()
    tips = [net.nodes[1].layer.lanes[0].certified[h] for h in (1, 2, 3)]
    for node in (0, 1, 2):  # the others finalize all three (and prune from memory)
        for height, tip in enumerate(tips, start=1):
            net.finalize(node, height, (tip,))
    assert [len(f.blocks) for f in net.nodes[0].finalized] == [1, 1, 1]
    waiting = net.finalize(3, 1, (tips[0],))
    (first,) = [c for c in waiting if type(c) is Send]
    net.queue.clear()  # that peer never answers
    assert net.feed(3, HeightReached(2)) == []  # it is given fetch_retry_heights to
    again = net.feed(3, HeightReached(1 + AvailabilityConfig().fetch_retry_heights))
    (second,) = [c for c in again if type(c) is Send and type(c.message) is LaneFetchRequest]
    assert second.to != first.to and second.message == first.message
    served = net.feed(second.to, LaneMessageReceived(3, second.message))
    assert [type(c) for c in served] == [ServeFromStorage]  # pruned from memory: from disk
    net.run()
    assert net.nodes[3].finalized[-1].blocks == (blocks[0],)


def test_finalized_lane_blocks_come_in_slot_lane_height_order(net: LaneNet) -> None:
    made = [seal(net, 1, [0], 3), seal(net, 0, [1], 2), seal(net, 0, [2], 3), seal(net, 2, [3], 2)]
    net.run()
    tips = tuple(net.nodes[3].layer.certified_tip(lane) for lane in (0, 1, 2))
    for height in (1, 2, 3, 4):
        net.finalize(3, height, tips if height == 4 else ())
    blocks = net.nodes[3].finalized[-1].blocks
    assert [(b.slot, b.lane, b.height) for b in blocks] == [
        (2, 0, 1),
        (2, 2, 1),
        (3, 0, 2),
        (3, 1, 1),
    ]
    assert list(blocks) == finalized_order(made)


def test_the_leaders_cut_cites_the_highest_certified_tip_of_slot_at_most_h_minus_2(
    net: LaneNet,
) -> None:
    for i, slot in enumerate((2, 4, 7)):
        seal(net, 0, [i], slot)
    net.run()
    layer = net.nodes[2].layer
    assert layer.cut_for(3, {}) == ()  # slot 2 needs height 4
    at = {h: layer.cut_for(h, {}) for h in (4, 6, 8, 9)}
    assert [t.tip.height for t in at[4]] == [1]
    assert [t.tip.height for t in at[6]] == [2]
    assert [t.tip.height for t in at[9]] == [3] and at[9][0].poa is not None
    parent = {0: at[9][0].tip}
    assert layer.cut_for(10, parent) == (LaneTip(parent[0]),)  # nothing higher: no PoA


# ----------------------------------------------------------------------------- restart, RE-SEND


def test_a_restarted_lane_continues_its_chain_and_gathers_its_missing_votes(net: LaneNet) -> None:
    first = seal(net, 0, [0], 2)
    net.queue.clear()  # nobody received it
    net.crash(0)
    net.restart(0)
    commands = net.feed(0, HeightReached(2))  # RE-SEND after a restart
    resent = [c for c in commands if type(c) is Send and type(c.message) is LaneBlockMessage]
    assert sorted(c.to for c in resent) == [1, 2, 3] and resent[0].message.block == first
    for entry in entries(0, [1], 3):
        net.submit(0, entry)
    (second,) = [
        c.message.block
        for c in net.feed(0, HeightReached(3))
        if type(c) is Broadcast and type(c.message) is LaneBlockMessage
    ]
    assert (second.height, second.parent) == (2, chain_block_digest(first))  # never height 1 again
    net.run()
    assert net.nodes[1].layer.certified_tip(0).tip.height == 2


def test_a_lost_poa_is_broadcast_again(net: LaneNet) -> None:
    seal(net, 0, [0], 2)
    while net.queue:  # everything reaches everyone except the PoA to node 3
        dst, _src, message = net.queue[0]
        if type(message) is LaneTipMessage and dst == 3:
            net.queue.popleft()
            continue
        net.deliver_one()
    assert net.nodes[3].layer.certified_tip(0) is None
    net.height(1 + AvailabilityConfig().resend_interval_heights)
    net.run()
    assert net.nodes[3].layer.certified_tip(0) is not None


def test_a_block_whose_slot_is_not_above_its_parents_is_not_voted(net: LaneNet) -> None:
    first = seal(net, 0, [0], 5)
    net.queue.clear()
    assert len(votes_in(commands_of(net, 1, 0, LaneBlockMessage(first)))) == 1
    digest = chain_block_digest(first)
    for slot in (5, 4):  # rule LC: slots strictly increase along a chain
        stale = signed(net, 0, 2, digest, slot, entries(0, [1], slot))
        assert commands_of(net, 1, 0, LaneBlockMessage(stale)) == []
    assert net.nodes[1].layer.stats.dropped == {"slot not above the parent's": 2}
    fresh = signed(net, 0, 2, digest, 6, entries(0, [1], 6))
    assert len(votes_in(commands_of(net, 1, 0, LaneBlockMessage(fresh)))) == 1
