"""B-APP-LINK: a block validator that reads the parent (certified lanes' CUT-MONOTONE).

The toy validator here orders bodies by their first byte ("a tip never goes down"): a
child whose first byte is below its parent's is invalid. The core must refuse it when the
parent is held, re-check it before voting when the parent arrived later (T-CHAIN), and on
every link of a sync response.
"""

from __future__ import annotations

from consensus.core import ConsensusCore, CoreConfig
from consensus.crypto import ED25519
from consensus.events import Start
from consensus.messages import (
    GENESIS_QC,
    BlockBody,
    BlockHeader,
    BlockSyncRequest,
    BlockSyncResponse,
    SyncedBlock,
    VoteMessage,
)
from tests.consensus.support import (
    KEYS,
    SCHEDULE,
    VALIDATORS,
    block_id,
    body,
    is_dropped,
    make_tip,
    proposal,
    qc_on,
    receive,
    sent,
    snapshot,
    traces,
)


class NeverDown:
    """validate: anything; validate_link: the child's first byte >= the parent's."""

    def __init__(self) -> None:
        self.links = 0

    def validate(self, header: BlockHeader, body: BlockBody) -> bool:
        return True

    def validate_link(self, parent: BlockBody, header: BlockHeader, body: BlockBody) -> bool:
        self.links += 1
        return body.payload[:1] >= parent.payload[:1]


def core_with(validator: NeverDown, **config) -> ConsensusCore:
    core = ConsensusCore(
        config=CoreConfig(**config),
        validators=VALIDATORS,
        schedule=SCHEDULE,
        index=0,
        key=KEYS[0],
        scheme=ED25519,
        block_validator=validator,
    )
    core.handle(Start(0))
    return core


B1 = make_tip(1, GENESIS_QC, 1, b"\x05b1")
QC1 = qc_on(B1, 1)
DOWN = make_tip(2, QC1, 2, b"\x03b2")  # goes down: invalid as a child of B1
UP = make_tip(2, QC1, 2, b"\x07b2")


def test_a_child_that_breaks_the_link_rule_is_dropped_when_its_parent_is_held() -> None:
    validator = NeverDown()
    core = core_with(validator)
    assert sent(receive(core, 1, proposal(1, B1, b"\x05b1")), VoteMessage)  # genesis -> B1
    before = snapshot(core)
    out = receive(core, 2, proposal(2, DOWN, b"\x03b2"))
    assert is_dropped(out)
    assert "as a child of its parent" in traces(out, "dropped")[0]["reason"]
    assert snapshot(core) == before
    votes = sent(receive(core, 2, proposal(2, UP, b"\x07b2")), VoteMessage)  # control
    assert votes and votes[0][1].vote.block_id == block_id(UP)
    assert validator.links >= 3


def test_a_gap_filled_child_is_re_checked_before_its_vote() -> None:
    core = core_with(NeverDown())
    out = receive(core, 2, proposal(2, DOWN, b"\x03b2"))  # parent missing: enters the tree
    request = sent(out, BlockSyncRequest)[0]
    response = BlockSyncResponse(
        block_id=block_id(B1), blocks=(SyncedBlock(tip=B1, body=body(b"\x05b1")),)
    )
    out = receive(core, request[0], response)
    assert not sent(out, VoteMessage)
    assert "as a child of its parent" in traces(out, "vote_refused")[0]["reason"]


def test_every_link_of_a_sync_response_is_checked() -> None:
    core = core_with(NeverDown())
    qc2 = qc_on(DOWN, 2)
    b3 = make_tip(3, qc2, 3, b"\x09b3")
    out = receive(core, 3, proposal(3, b3, b"\x09b3"))
    request = sent(out, BlockSyncRequest)[0]
    assert request[1].block_id == block_id(DOWN)
    before = snapshot(core)
    response = BlockSyncResponse(
        block_id=block_id(DOWN),
        blocks=(
            SyncedBlock(tip=DOWN, body=body(b"\x03b2")),
            SyncedBlock(tip=B1, body=body(b"\x05b1")),
        ),
    )
    dropped = receive(core, request[0], response)
    assert is_dropped(dropped) and "as a child" in traces(dropped, "dropped")[0]["reason"]
    assert snapshot(core) == before


def test_the_switch_turns_the_rule_off() -> None:
    core = core_with(NeverDown(), test_mutations=frozenset({"B-APP-LINK"}))
    receive(core, 1, proposal(1, B1, b"\x05b1"))
    assert sent(receive(core, 2, proposal(2, DOWN, b"\x03b2")), VoteMessage)
