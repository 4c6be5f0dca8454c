"""Censoring leaders in netsim agree with the leader-cartel model (issue 15 item 2).

`[[byzantine]] behaviour = "drop_lane_blocks"` leaders propose only their own lane's
block (carried dissemination: the omitted lane blocks' tickets expire unredeemed). Each
payload's lag is compared with `mechanism.lanechain.predict` for the leader of its first
slot (docs/mechanism.md §16; tests/netsim/model_agreement.py): the model's P(lag >= ℓ)
must lie in the measurement's 99 % Wilson interval, every payload the model is certain
about must come out that way (which pins the leader schedule: a model one leader off
fails it), and wrong models must be excluded: the certified mode's (an omitted lane
block delayed to the next honest cut, not lost), and no censoring at all.

N = 7, κ = 7, m = 3 (t* = 3, slack 2): a censored slot in a payload's first three loses
3 bundles, or 2 when the censor's own lane is addressed, so it delays the payload with
probability 4/7. With the ratchet (κ = 21, m = 5, d = 4 < t* = 5) the censors also make
the senders exclude the honest lanes they omitted, the refill runs dry and the
exclusions reset (docs/lanes.md "The keep_redeemed rule").
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.netsim.model_agreement import (
    assert_agrees,
    lanes_scenario,
    measure,
    model_setup,
    round_robin_leader,
)

MAX_LAG = 6
ONE_CENSOR = {3: ["drop_lane_blocks"]}
TWO_CENSORS = {2: ["drop_lane_blocks"], 5: ["drop_lane_blocks"]}


def _check(byzantine, *, kappa, m, ratchet, seeds, senders, min_payloads):
    scenario = lanes_scenario(
        kappa=kappa, m=m, byzantine=byzantine, senders=senders, ratchet=ratchet
    )
    measured = measure(scenario, seeds=seeds, max_lag=MAX_LAG)
    setup = model_setup(scenario, measured, MAX_LAG)
    assert setup.censoring == frozenset(byzantine)
    # non-vacuity: every censor omitted lane blocks when it led
    assert set(measured.lane_blocks_omitted) == set(byzantine)
    assert min(measured.lane_blocks_omitted.values()) > 0, measured.lane_blocks_omitted
    alternatives = {
        "certified dissemination": replace(setup, dissemination="certified"),
        "no censoring": replace(setup, censoring=frozenset()),
    }
    checks = assert_agrees(
        measured, setup, ells=(1, 2), alternatives=alternatives, min_payloads=min_payloads
    )
    for check in checks:
        print(check)
    return measured, checks


def test_payloads_whose_heights_left_the_round_robin_schedule_are_left_out() -> None:
    # heights 1..6 led by 1..6, then a timeout: height 7 led by 1 instead of 0
    authors = {h: h % 7 for h in range(1, 7)} | {7: 1, 8: 2}
    assert round_robin_leader(authors, 2, 6, 7) == 2
    assert round_robin_leader(authors, 5, 7, 7) is None  # its window saw the timeout
    assert round_robin_leader(authors, 7, 8, 7) == 1  # after it: round robin again
    assert round_robin_leader(authors, 8, 9, 7) is None  # height 9 not finalized


def test_one_censoring_leader_agrees_with_the_model() -> None:
    _, checks = _check(
        ONE_CENSOR, kappa=7, m=3, ratchet=False, seeds=(1,), senders=6, min_payloads=240
    )
    assert abs(checks[0].predicted - 0.245) < 0.02  # 3/7 of the starts see it, 4/7 of those


def test_two_censoring_leaders_agree_with_the_model() -> None:
    _check(TWO_CENSORS, kappa=7, m=3, ratchet=False, seeds=(1,), senders=6, min_payloads=240)


def test_two_censoring_leaders_against_the_ratchet_agree_with_the_model() -> None:
    measured, _ = _check(
        TWO_CENSORS,
        kappa=21,
        m=5,
        ratchet=True,
        seeds=(1,),
        senders=3,
        min_payloads=120,
    )
    assert measured.report_lanes["feedback_slots"] == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("byzantine", "kappa", "m", "ratchet"),
    [
        (ONE_CENSOR, 7, 3, False),
        (TWO_CENSORS, 7, 3, False),
        (TWO_CENSORS, 6, 4, False),  # the lanes_withholding layout: P(delay) = 4/7
        (TWO_CENSORS, 21, 5, True),
        # one lane withholds, one leader censors, with the ratchet: d ± 1 is excluded
        ({2: ["withhold_bundles"], 5: ["drop_lane_blocks"]}, 23, 5, True),
        # one validator does both
        ({3: ["withhold_bundles", "drop_lane_blocks"]}, 17, 4, True),
    ],
)
def test_leader_cartels_agree_with_the_model_slow(byzantine, kappa, m, ratchet) -> None:
    censors = {node for node, kinds in byzantine.items() if "drop_lane_blocks" in kinds}
    scenario = lanes_scenario(kappa=kappa, m=m, byzantine=byzantine, senders=6, ratchet=ratchet)
    measured = measure(scenario, seeds=(11, 12, 13, 14), max_lag=MAX_LAG)
    setup = model_setup(scenario, measured, MAX_LAG)
    assert setup.censoring == frozenset(censors)
    alternatives = {"certified dissemination": replace(setup, dissemination="certified")}
    if ratchet and setup.withholding:
        alternatives["feedback one slot early"] = replace(setup, feedback_slots=3)
        alternatives["feedback one slot late"] = replace(setup, feedback_slots=5)
    for check in assert_agrees(
        measured, setup, ells=(1, 2, 3), alternatives=alternatives, min_payloads=900
    ):
        print(check)
