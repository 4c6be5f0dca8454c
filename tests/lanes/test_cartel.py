"""Cartel strategies (consensus.lanes.cartel): the decision rule of each, the shared book,
and the strategies acting through real lane proposers (LocalLanes)."""

from __future__ import annotations

import pytest

from consensus.crypto import TRUSTED
from consensus.lanes.cartel import (
    CartelBook,
    CartelStrategy,
    CartelStrategyError,
    SlotView,
    decide,
    parse_strategy,
)
from consensus.lanes.local import LocalLanes
from consensus.lanes.proposer import CartelPool, WithholdPolicy
from consensus.lanes.sender import AddressPolicy, Sender, SenderConfig
from tests.lanes.helpers import SMALL, seeded_bytes, sender_key

N = 7


def _view(kappa: int, j: int, holdings: int, pooled: int = 0) -> SlotView:
    return SlotView(kappa=kappa, j=j, holdings=holdings, pooled=pooled)


def test_withhold_all_always_withholds() -> None:
    strategy = CartelStrategy("withhold_all")
    assert all(decide(strategy, _view(8, j, x)) for j in (1, 5) for x in (0, 1, 3))


def test_threshold_withholds_a_slot_holding_at_least_theta() -> None:
    # κ = 8, m = 3: t* = 3, Δ = 1, default θ = Δ + 1 = 2
    default = CartelStrategy("threshold", m=3)
    assert default.theta_for(8) == 2
    assert [decide(default, _view(8, 1, x)) for x in range(4)] == [False, False, True, True]
    three = CartelStrategy("threshold", m=3, theta=3)
    assert [decide(three, _view(8, 2, x)) for x in range(4)] == [False, False, False, True]
    # knife edge (Δ = 0): any holding
    assert CartelStrategy("threshold", m=3).theta_for(9) == 1


def test_last_slot_withholds_from_the_honest_horizon_on() -> None:
    strategy = CartelStrategy("last_slot", m=3)  # κ = 8: t* = 3
    assert [decide(strategy, _view(8, j, 2)) for j in range(1, 6)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_adaptive_withholds_while_the_pool_can_deny_the_decode() -> None:
    strategy = CartelStrategy("adaptive", m=3)  # κ = 8, t* = 3: bar m·max(j, 3) − 8 + 1
    # before t*: the bar is Δ + 1 = 2 (deny the decode at t*)
    assert not decide(strategy, _view(8, 1, 1))
    assert decide(strategy, _view(8, 1, 2))
    assert decide(strategy, _view(8, 2, 1, pooled=1))
    # after t*: the bar rises by m a slot (j = 4: 5)
    assert not decide(strategy, _view(8, 4, 2, pooled=2))
    assert decide(strategy, _view(8, 4, 2, pooled=3))


def test_parse_refuses_unknown_strategies_and_options() -> None:
    assert parse_strategy("threshold", {"theta": "2"}, m=3) == CartelStrategy("threshold", 3, 2)
    assert parse_strategy("threshold", {"threshold": 2}, m=3) == CartelStrategy("threshold", 3, 2)
    for kind, options, m in [
        ("sometimes", {}, 3),
        ("threshold", {"theta": "x"}, 3),
        ("threshold", {"theta": 0}, 3),
        ("last_slot", {"theta": 2}, 3),
        ("threshold", {"thta": 2}, 3),
        ("threshold", {"theta": 2, "threshold": 2}, 3),
        ("adaptive", {}, None),  # needs m
    ]:
        with pytest.raises(CartelStrategyError):
            parse_strategy(kind, options, m)


def test_the_book_decides_once_per_payload_and_slot() -> None:
    book = CartelBook(CartelStrategy("threshold", m=3, theta=2))
    cid = b"c" * 32
    book.hold(cid, 8, 1, 0)
    assert book.withhold(1, [(cid, 8, 0)]) == set()  # X = 1 < θ: decided, included
    book.hold(cid, 8, 1, 1)  # a holding that arrives after the decision
    assert book.withhold(1, [(cid, 8, 1)]) == set()  # the decision stands for every member
    book.hold(cid, 8, 2, 3)
    book.hold(cid, 8, 2, 4)
    assert book.withhold(2, [(cid, 8, 3), (cid, 8, 4)]) == {(cid, 3), (cid, 4)}
    assert book.pooled(cid) == 2
    assert book.decisions(cid) == {1: False, 2: True}
    assert book.view(cid, 2) == SlotView(kappa=8, j=2, holdings=2, pooled=0)


def test_the_book_is_bounded() -> None:
    book = CartelBook(max_payloads=3)
    for i in range(5):
        book.hold(bytes([i]) * 32, 4, 1, 0)
    assert book.forgotten == 2
    assert book.view(bytes([0]) * 32, 1) is None
    assert book.view(bytes([4]) * 32, 1) is not None


def _withheld_slots(strategy: CartelStrategy, cartel_size: int, slots: int) -> dict[int, int]:
    """A fixed-lanes sender (m = 3) whose first `cartel_size` lanes are the cartel's:
    slot -> bundles withheld."""
    config = SenderConfig(lanes=N, bundles_per_slot=3, policy=AddressPolicy.FIXED)
    probe = Sender(sender_key(), TRUSTED, SMALL, config)
    cid = probe.submit(seeded_bytes("cartel", 3000), seeded_bytes("k", 32), 1)
    cartel = probe.lanes_for(cid, 1)[:cartel_size]
    pool = CartelPool(strategy=strategy)
    net = LocalLanes(SMALL, lanes=N, withhold={lane: WithholdPolicy(pool) for lane in cartel})
    sender = net.add_sender(config, b"x", key=probe.key)
    assert sender.submit(seeded_bytes("cartel", 3000), seeded_bytes("k", 32), 1) == cid
    kappa = sender.payloads[cid].encoded.layout.kappa
    assert kappa > 3 * slots  # not decoded within the slots looked at
    net.run(slots)
    out: dict[int, int] = {}
    for _lane, slot, _cid, _index in pool.withheld:
        out[slot] = out.get(slot, 0) + 1
    return out


def test_strategies_act_through_the_lane_proposers() -> None:
    everything = _withheld_slots(CartelStrategy("withhold_all"), 1, 4)
    assert everything == {1: 1, 2: 1, 3: 1, 4: 1}
    # threshold θ = 2: one cartel lane among the three never withholds, two always do
    assert _withheld_slots(CartelStrategy("threshold", m=3, theta=2), 1, 4) == {}
    assert _withheld_slots(CartelStrategy("threshold", m=3, theta=2), 2, 4) == {
        s: 2 for s in range(1, 5)
    }
