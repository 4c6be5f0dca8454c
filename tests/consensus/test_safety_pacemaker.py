"""Unit tests of the safety rules and the pacemaker."""

from __future__ import annotations

import msgspec
import pytest

from consensus import codec
from consensus.messages import GENESIS_QC
from consensus.pacemaker import Pacemaker
from consensus.safety import (
    SafetyState,
    after_no_endorse,
    after_timeout,
    after_vote,
    may_no_endorse,
    vote_refusal,
    without_stale_tip,
)
from tests.consensus.support import QC1, TIP1, TIP2, VALIDATORS, block_id, tc_of, timeout_msg

ID1 = block_id(TIP1)


def test_vote_once_per_round_including_timeouts() -> None:
    state = SafetyState()
    assert vote_refusal(state, 1, None) is None
    voted = after_vote(state, 1, TIP1, ID1, 0, "monadbft")
    assert vote_refusal(voted, 1, None) is not None
    assert vote_refusal(voted, 2, None) is None
    timed_out, _ = after_timeout(state, 3, None)
    assert vote_refusal(timed_out, 3, None) is not None and vote_refusal(timed_out, 2, None)
    assert vote_refusal(voted, 1, None, allow_double_vote=True) is None  # the test mutation


def test_no_endorse_exclusion() -> None:
    state = after_no_endorse(SafetyState(), 4, ID1)
    assert vote_refusal(state, 4, None) is not None
    assert vote_refusal(state, 4, block_id(TIP2)) is not None
    assert vote_refusal(state, 4, ID1) is None
    assert vote_refusal(state, 5, None) is None
    assert not may_no_endorse(state, 4) and may_no_endorse(state, 5)
    voted = after_vote(SafetyState(), 6, TIP1, ID1, 0, "monadbft")
    assert not may_no_endorse(voted, 6)


def test_high_tip_rules_per_protocol() -> None:
    state = after_vote(SafetyState(), 1, TIP1, ID1, 0, "monadbft")
    assert state.high_tip == TIP1
    assert without_stale_tip(state, 0, "monadbft").high_tip == TIP1
    assert without_stale_tip(state, 1, "monadbft").high_tip is None  # QC >= tip round
    assert without_stale_tip(state, 5, "v1").high_tip == TIP1  # v1 keeps the last voted tip
    # A vote whose tip is not newer than the high QC does not become the high tip.
    assert after_vote(SafetyState(), 3, TIP1, ID1, 1, "monadbft").high_tip is None


def test_tip_vote_never_a_second_vote_in_a_round() -> None:
    voted = after_vote(SafetyState(), 2, TIP2, block_id(TIP2), 1, "monadbft")
    state, ok = after_timeout(voted, 2, block_id(TIP2))
    assert ok and state.highest_vote == 2
    _, ok = after_timeout(voted, 2, ID1)  # a different block than the round-2 vote
    assert not ok
    _, ok = after_timeout(voted, 3, block_id(TIP2))  # not voted in 3 yet
    assert ok
    _, ok = after_timeout(msgspec.structs.replace(voted, highest_vote=7), 3, block_id(TIP2))
    assert not ok  # round already passed (restart)
    ne = after_no_endorse(SafetyState(), 3, ID1)
    _, ok = after_timeout(ne, 3, ID1)
    assert not ok  # NE'd in this round and the tip is older
    _, ok = after_timeout(SafetyState(), 3, None)
    assert not ok  # no tip, no tip vote


def test_safety_state_round_trips_through_the_codec() -> None:
    state = after_vote(SafetyState(), 1, TIP1, ID1, 0, "monadbft")
    assert msgspec.msgpack.decode(codec.encode(state), type=SafetyState) == state


def test_pacemaker_rounds_timer_and_backoff() -> None:
    pacemaker = Pacemaker(VALIDATORS, base_timeout_ms=500.0, backoff=2.0, max_timeout_ms=1500.0)
    assert pacemaker.current_round == 1 and pacemaker.high_certificate == GENESIS_QC
    assert pacemaker.round_timeout_ms() == 500.0
    tc1 = tc_of(1, [timeout_msg(a, 1, GENESIS_QC) for a in (0, 1, 2)])
    assert pacemaker.advance(tc1) and pacemaker.current_round == 2
    assert pacemaker.round_timeout_ms() == 1000.0
    tc2 = tc_of(2, [timeout_msg(a, 2, GENESIS_QC, last=tc1) for a in (0, 1, 2)])
    pacemaker.advance(tc2)
    assert pacemaker.round_timeout_ms() == 1500.0  # capped
    assert not pacemaker.advance(QC1)  # never backwards
    with pytest.raises(ValueError):
        Pacemaker(VALIDATORS, base_timeout_ms=0)
    with pytest.raises(ValueError):
        Pacemaker(VALIDATORS, base_timeout_ms=10, backoff=0.5)


def test_pacemaker_qc_resets_backoff() -> None:
    from tests.consensus.support import QC2, QC3

    pacemaker = Pacemaker(VALIDATORS, base_timeout_ms=100.0, backoff=2.0)
    tc1 = tc_of(1, [timeout_msg(a, 1, GENESIS_QC) for a in (0, 1, 2)])
    pacemaker.advance(tc1)
    assert pacemaker.round_timeout_ms() == 200.0
    pacemaker.advance(QC2)
    assert pacemaker.round_timeout_ms() == 100.0 and pacemaker.current_round == 3
    assert pacemaker.advance(QC3) and pacemaker.current_round == 4


def test_pacemaker_echo_and_tc_thresholds_one_timeout_per_author() -> None:
    pacemaker = Pacemaker(VALIDATORS, base_timeout_ms=100.0)
    t0 = timeout_msg(0, 1, GENESIS_QC)
    assert pacemaker.add_timeout(t0) and not pacemaker.add_timeout(t0)
    assert not pacemaker.should_echo()  # 1 < f+1 = 2
    assert not pacemaker.add_timeout(timeout_msg(1, 2, GENESIS_QC, last=QC1))  # other round
    pacemaker.add_timeout(timeout_msg(1, 1, GENESIS_QC))
    assert pacemaker.should_echo() and not pacemaker.has_tc_quorum()
    pacemaker.mark_timed_out()
    assert not pacemaker.should_echo()  # echo once per round
    pacemaker.add_timeout(timeout_msg(2, 1, GENESIS_QC))
    assert pacemaker.has_tc_quorum()
    assert [t.author for t in pacemaker.timeouts()] == [0, 1, 2]
