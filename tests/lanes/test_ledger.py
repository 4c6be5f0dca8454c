"""The lanes' ledger: fees, escrowed PIVOT-K bounties, refusals, conservation, agreement."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.crypto import TRUSTED, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.ledger import Ledger, LedgerError, LedgerParams
from consensus.lanes.local import lane_block_header
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.proposer import LaneProposer, RejectReason, entry_key
from consensus.lanes.tickets import sign_lane_block
from consensus.lanes.tracker import DecodeTracker
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

LANES = 5
KEYS = derive_keys(LANES, "ledger-tests")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])
SENDERS = [sender_key(f"ledger/{i}") for i in range(3)]
ENCODED = [
    encode_payload(
        SMALL,
        seeded_bytes(f"lp{i}", 150 + 200 * i),
        seeded_bytes(f"lk{i}", 32),
        SENDERS[i % 2].public,
        expiry_slot=EXPIRY,
    )
    for i in range(4)
] + [forged_payload(SMALL, 300, SENDERS[2].public, "ledger-junk", None)]
OWNER = [SENDERS[0], SENDERS[1], SENDERS[0], SENDERS[1], SENDERS[2]]

# every tracker test here runs through the carried and the certified entry point
tracker_mode = tracker_modes(sys.modules[__name__])


def _block(slot: int, items: list[tuple[int, int, int, int]]):
    """A validated block at `slot` from (payload n, bundle index, lane, fee) items."""
    by_lane: dict[int, dict] = {}
    for n, index, lane, fee in items:
        encoded = ENCODED[n]
        entry = entry_for(TRUSTED, OWNER[n], encoded, index, lane, slot, fee=fee)
        by_lane.setdefault(lane, {})[entry_key(entry)] = entry
    blocks = [
        sign_lane_block(TRUSTED, KEYS[lane], lane, slot, tuple(entries[k] for k in sorted(entries)))
        for lane, entries in by_lane.items()
    ]
    body = BlockBody(build_block_payload([b"tx%d" % slot], blocks))
    header = lane_block_header(slot, 0, body)
    assert LanePayloadValidator(VALIDATORS, SMALL, TRUSTED).check(header, body) is None
    return header, body


def _ledger(balances: list[int], fee: int = 1, bounty: int = 0) -> Ledger:
    genesis = {s.public: b for s, b in zip(SENDERS, balances, strict=True)}
    return Ledger.from_genesis(LedgerParams(fee=fee, bounty=bounty), genesis)


def test_fees_and_bounty_move_by_the_rules_and_pivotal_lanes_share_the_bounty() -> None:
    encoded, sender = ENCODED[4 - 1], OWNER[3]
    kappa = encoded.layout.kappa
    assert kappa >= 3  # so that B mod κ >= 2 below
    bounty = 10 * kappa + (kappa - 1)  # B mod κ = κ − 1
    ledger = _ledger([0, 1000, 0], fee=2, bounty=bounty)
    tracker = DecodeTracker(SMALL, ledger=ledger)
    # slot 1: κ bundles on lanes 0.. (one extra on the last lane: a surplus bundle)
    items = [(3, i, i % LANES, 2) for i in range(kappa + 1)]
    outcome = tracker.on_finalized(*_block(1, items))
    (event,) = outcome.payloads
    assert event.status == "executed"
    assert outcome.fees_charged == 2 * (kappa + 1)
    assert outcome.bounties_paid == bounty
    # B // κ to every pivotal bundle's lane, +1 to the first B mod κ (in pivot order)
    assert [amount for _, amount in event.bounty_payouts] == [11] * (kappa - 1) + [10]
    assert [lane for lane, _ in event.bounty_payouts] == [lane for _, lane, _ in event.pivotal]
    assert ledger.balance(sender.public) == 1000 - 2 * (kappa + 1) - bounty
    assert sum(ledger.lanes.values()) == 2 * (kappa + 1) + bounty
    assert ledger.escrow == {} and ledger.totals.burned == 0 and ledger.conserved()


def test_a_sender_that_cannot_pay_is_not_counted_and_nothing_moves() -> None:
    kappa = ENCODED[1].layout.kappa
    poor = _ledger([0, kappa - 1, 0], fee=1, bounty=0)  # one fee short of κ bundles
    tracker = DecodeTracker(SMALL, ledger=poor)
    outcome = tracker.on_finalized(*_block(1, [(1, i, i % LANES, 1) for i in range(kappa)]))
    assert outcome.payloads == ()  # κ−1 counted: not decodable
    assert [i.reason for i in outcome.ignored] == ["insufficient_balance"]
    assert len(outcome.redemptions) == kappa  # the lanes did include every ticket
    assert poor.balance(SENDERS[1].public) == 0 and poor.conserved()
    assert tracker.ignored_counts == {"insufficient_balance": 1}
    # a new payload needs fee + B: with B > balance its first bundle is refused outright
    escrowless = _ledger([0, 5, 0], fee=1, bounty=5)
    tracker = DecodeTracker(SMALL, ledger=escrowless)
    outcome = tracker.on_finalized(*_block(1, [(1, 0, 0, 1)]))
    assert [i.reason for i in outcome.ignored] == ["insufficient_balance"]
    assert (
        escrowless.balance(SENDERS[1].public) == 5
        and tracker.status(ENCODED[1].commitment_id) == "unknown"
    )


def test_low_fee_tickets_are_not_counted_and_lanes_refuse_them_and_unfunded_senders() -> None:
    ledger = _ledger([40, 0, 0], fee=3, bounty=7)
    tracker = DecodeTracker(SMALL, ledger=ledger)
    outcome = tracker.on_finalized(*_block(1, [(0, 0, 0, 2)]))
    assert [i.reason for i in outcome.ignored] == ["fee_too_low"]
    assert ledger.balance(SENDERS[0].public) == 40
    lane = LaneProposer(lane=1, key=KEYS[1], scheme=TRUSTED, params=SMALL, funds=tracker.funds())
    low = entry_for(TRUSTED, OWNER[0], ENCODED[0], 1, 1, 3, fee=2)
    assert lane.submit(low) == RejectReason.FEE_TOO_LOW
    broke = entry_for(TRUSTED, OWNER[1], ENCODED[1], 1, 1, 3, fee=3)
    assert lane.submit(broke) == RejectReason.INSUFFICIENT_BALANCE
    # the lane counts what it admitted: 40 pays B = 7 once plus 11 fees of 3 (= 40)
    accepted = sum(
        lane.submit(entry_for(TRUSTED, OWNER[0], ENCODED[0], i, 1, 3, fee=3)) is None
        for i in range(2, 21)
    )
    assert accepted == 11 and lane.rejected["insufficient_balance"] == 1 + 19 - 11
    lane.on_finalized(3)  # released once the slot is final (the ledger charges it then)
    assert lane.submit(entry_for(TRUSTED, OWNER[0], ENCODED[0], 21, 1, 4, fee=3)) is None


def test_genesis_and_params_are_validated() -> None:
    with pytest.raises(LedgerError):
        LedgerParams(fee=-1)
    with pytest.raises(LedgerError):
        Ledger.from_genesis(LedgerParams(), {b"short": 1})
    with pytest.raises(LedgerError):
        Ledger.from_genesis(LedgerParams(), {SENDERS[0].public: -5})
    with pytest.raises(LedgerError):
        Ledger.from_genesis(LedgerParams(), {SENDERS[0].public: 2**62, SENDERS[1].public: 1})


@st.composite
def schedules(draw):
    """Random finalized chains: any payload, bundle, lane and fee in any slot."""
    heights = draw(st.integers(1, 7))
    blocks = []
    for _ in range(heights):
        items = draw(
            st.lists(
                st.tuples(
                    st.integers(0, len(ENCODED) - 1),
                    st.integers(0, 9),
                    st.integers(0, LANES - 1),
                    st.integers(0, 3),
                ),
                max_size=14,
            )
        )
        blocks.append(items)
    balances = draw(st.lists(st.integers(0, 60), min_size=3, max_size=3))
    return {
        "blocks": blocks,
        "balances": balances,
        "fee": draw(st.integers(0, 2)),
        "bounty": draw(st.integers(0, 25)),
        "max_pending": draw(st.integers(1, 4)),
        "ttl": draw(st.integers(1, 4)),
        "restart_at": draw(st.integers(0, heights)),
    }


@settings(
    max_examples=40,
    deadline=None,
    # the autouse tracker_mode fixture only picks the entry point: same for every example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(schedules())
def test_ledger_conserves_money_and_replicas_agree_across_restarts(schedule: dict) -> None:
    """genesis = Σ balances + Σ escrow + Σ lanes + burned after every block, whatever the
    chain; per-block deltas add up; a node restarted mid-chain (replaying from genesis)
    ends with the same ledger digest as one that never stopped."""
    chain = [_block(h + 1, items) for h, items in enumerate(schedule["blocks"])]

    def node() -> DecodeTracker:
        ledger = _ledger(schedule["balances"], schedule["fee"], schedule["bounty"])
        return DecodeTracker(
            SMALL,
            ledger=ledger,
            max_pending_payloads=schedule["max_pending"],
            pending_ttl_slots=schedule["ttl"],
        )

    steady, restarted = node(), node()
    fees = bounties = burned = 0
    for height, (header, body) in enumerate(chain, start=1):
        outcome = steady.on_finalized(header, body)
        ledger = steady.ledger
        assert ledger is not None and ledger.conserved()
        assert ledger.genesis_total == sum(schedule["balances"])
        # the conservation law summed here, not only by the ledger's own check
        held = sum(ledger.balances.values()) + sum(a for _, a in ledger.escrow.values())
        held += sum(ledger.lanes.values())
        assert held + ledger.totals.burned == sum(schedule["balances"])
        assert min(ledger.balances.values()) >= 0
        fees += outcome.fees_charged
        bounties += outcome.bounties_paid
        burned += outcome.burned
        assert (fees, bounties, burned) == (
            ledger.totals.fees_charged,
            ledger.totals.bounties_paid,
            ledger.totals.burned,
        )
        assert sum(ledger.lanes.values()) == fees + bounties
        if height == schedule["restart_at"]:
            restarted = node()  # crash: everything in memory is lost; replay from genesis
            for h, b in chain[:height]:
                restarted.on_finalized(h, b)
        else:
            restarted.on_finalized(header, body)
        assert restarted.ledger is not None
        assert restarted.ledger.digest() == ledger.digest()
        assert restarted.execution_order_hash == steady.execution_order_hash
