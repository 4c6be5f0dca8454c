"""Every signature names its network: a signature made on one chain is invalid on another.

The chain id is framed into the signed message in one place (`consensus.crypto`), so
every signature kind gets it: consensus votes, tickets, lane blocks (each tested here).
"""

from __future__ import annotations

import pytest

from consensus.certificates import InvalidMessage, Signer, Verifier
from consensus.crypto import (
    DEFAULT_CHAIN_ID,
    ED25519,
    TRUSTED,
    Domain,
    Ed25519Scheme,
    check_chain_id,
    derive_keys,
    scheme_by_name,
)
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.proposer import LaneProposer, RejectReason
from consensus.lanes.tickets import (
    TicketVerifier,
    lane_block_signature_ok,
    sign_lane_block,
    sign_ticket,
)
from consensus.lanes.wire import LaneEntry
from consensus.messages import BlockBody, Vote
from consensus.validators import RoundRobinSchedule, ValidatorSet
from node.lanes_node import stand_in_header
from tests.lanes.helpers import EXPIRY, SMALL, seeded_bytes
from tests.lanes.helpers import sender_key as lane_sender_key

KEYS = derive_keys(4, b"chain-id-test")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])
MAIN = Ed25519Scheme("sedna-main")
TEST = MAIN.for_chain("sedna-test")


@pytest.mark.parametrize("base", [ED25519, TRUSTED], ids=["ed25519", "trusted"])
def test_a_signature_is_valid_only_on_its_own_chain(base) -> None:
    a, b = base.for_chain("chain-a"), base.for_chain("chain-b")
    signature = a.sign(KEYS[0], Domain.VOTE, b"payload")
    assert a.verify(KEYS[0].public, Domain.VOTE, b"payload", signature)
    assert not b.verify(KEYS[0].public, Domain.VOTE, b"payload", signature)
    assert base.chain_id == DEFAULT_CHAIN_ID
    assert scheme_by_name(base.name) is base  # the default chain needs no new object
    assert scheme_by_name(base.name, "chain-b").chain_id == "chain-b"


def test_consensus_votes_carry_the_chain_id() -> None:
    schedule = RoundRobinSchedule(VALIDATORS)
    vote = Vote(block_id=bytes(32), round=3, epoch=1)
    message = Signer(1, KEYS[1], MAIN).vote(vote)
    Verifier(VALIDATORS, schedule, MAIN).vote_message(message)  # valid at home
    with pytest.raises(InvalidMessage):
        Verifier(VALIDATORS, schedule, TEST).vote_message(message)


def test_tickets_and_lane_blocks_carry_the_chain_id() -> None:
    from consensus.lanes.encoding import encode_payload
    from consensus.lanes.tickets import make_ticket

    sender = lane_sender_key("chain-id")
    encoded = encode_payload(
        SMALL, seeded_bytes("p", 300), seeded_bytes("k", 32), sender.public, expiry_slot=EXPIRY
    )
    ticket = make_ticket(encoded.commitment_id, 1, 5, 0, 1)
    entry = LaneEntry(encoded.bundles[0], sign_ticket(MAIN, sender, ticket))
    assert TicketVerifier(MAIN).ok(sender.public, entry.ticket)
    assert not TicketVerifier(TEST).ok(sender.public, entry.ticket)
    # a lane of the other chain refuses the ticket at admission
    lane = LaneProposer(lane=1, key=KEYS[1], scheme=TEST, params=SMALL)
    assert lane.submit(entry) == RejectReason.BAD_TICKET_SIGNATURE

    block = sign_lane_block(MAIN, KEYS[1], 1, 5, (entry,))
    assert lane_block_signature_ok(MAIN, KEYS[1].public, block)
    assert not lane_block_signature_ok(TEST, KEYS[1].public, block)
    body = BlockBody(build_block_payload((), [block]))
    header = stand_in_header(5, 0, body)
    assert LanePayloadValidator(VALIDATORS, SMALL, MAIN).check(header, body) is None
    assert LanePayloadValidator(VALIDATORS, SMALL, TEST).check(header, body) is not None


@pytest.mark.parametrize("bad", ["", "a\x00b", "x" * 65, "chain id", "ünïcode", b"bytes"], ids=repr)
def test_bad_chain_ids_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="chain id must be"):
        check_chain_id(bad)
    with pytest.raises(ValueError, match="chain id must be"):
        scheme_by_name("ed25519", bad)
