"""The ratchet that ships is the ratchet that is analysed (issue 10, issue 15 item 3).

netsim senders run `keep_redeemed` with feedback_slots = d = lookahead_slots (what they
really know when they plan a slot). Each payload's lag (`decode_slot_delay`) is compared
with `mechanism.lanechain.predict` for its first leader, with κ, m and d read from the
run's report (tests/netsim/model_agreement.py): the model's P(lag >= ℓ) must lie in the
measurement's 99 % Wilson interval, and a wrong model (no feedback latency; feedback one
slot early or late; fixed lanes) must not. q = 1 (checked: no bundle rejected or lost),
the cartel withholds everything, no timeouts (payloads that saw one would be left out).

(a) The shipped `lanes_ratchet` scenario: N = 7, c = 2, κ = 8, m = 3, t* = 3, d = 4 >= t*:
    no outcome is known before the horizon, so P(delay) is the fixed set's, 5/7.
(b) The ratchet acting before the horizon ends: κ = 14, m = 3, t* = 5, d = 4 < t*: the
    withholding lanes of the first draw are replaced at slot 5, so P(lag >= 2) = 2/7
    against 5/7 for fixed lanes (or d = 5), and P(lag >= 3) = 1/7 against 0 for d = 3.
    (slow: κ = 21, m = 5, where the replacement changes P(delay): 15/21 against 20/21.)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mechanism.delay import p_delay
from mechanism.params import SednaParams
from netsim.scenario import Scenario, load_scenario
from tests.netsim.model_agreement import assert_agrees, lanes_scenario, measure, model_setup

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
MAX_LAG = 6
WITHHOLDING = {2: ["withhold_bundles"], 5: ["withhold_bundles"]}


def test_the_shipped_ratchet_scenario_agrees_with_the_model() -> None:
    scenario = load_scenario(SCENARIOS / "lanes_ratchet.toml")
    measured = measure(scenario, seeds=(1, 2, 3), max_lag=MAX_LAG)
    setup = model_setup(scenario, measured, MAX_LAG)
    lanes = measured.report_lanes
    assert (setup.kappa, setup.m, setup.t_star, lanes["slack"]) == (8, 3, 3, 1)
    assert setup.policy == "keep_redeemed"
    assert setup.feedback_slots == 4 > setup.t_star  # d = lookahead: no feedback before t*
    # the count model of §6 gives the same P(delay) (5/7) as the lane model
    count_model = p_delay(SednaParams(kappa=8, m=3, beta=2 / 7, lanes=7, addressing="fixed"))
    assert abs(count_model - 5 / 7) < 1e-9
    checks = assert_agrees(
        measured,
        setup,
        ells=(1, 2, 3),
        alternatives={"instant feedback (d = 1)": replace(setup, feedback_slots=1)},
        min_payloads=240,
    )
    for check in checks:
        print(check)
    assert abs(checks[0].predicted - 5 / 7) < 1e-9


def _acting(kappa: int, m: int, senders: int) -> Scenario:
    return lanes_scenario(kappa=kappa, m=m, byzantine=WITHHOLDING, senders=senders, ratchet=True)


def test_the_ratchet_acting_before_the_horizon_agrees_with_the_model() -> None:
    scenario = _acting(kappa=14, m=3, senders=6)
    measured = measure(scenario, seeds=(1,), max_lag=MAX_LAG)
    setup = model_setup(scenario, measured, MAX_LAG)
    assert (setup.t_star, setup.feedback_slots) == (5, 4)  # d < t*
    for check in assert_agrees(
        measured,
        setup,
        ells=(1, 2, 3),
        alternatives={
            "fixed lanes (no ratchet)": replace(setup, policy="fixed"),
            "feedback one slot early (d = 3)": replace(setup, feedback_slots=3),
            "feedback one slot late (d = 5)": replace(setup, feedback_slots=5),
        },
        min_payloads=240,
    ):
        print(check)


@pytest.mark.slow
@pytest.mark.parametrize(("kappa", "m"), [(14, 3), (21, 5)])
def test_the_ratchet_acting_before_the_horizon_agrees_with_the_model_slow(kappa, m) -> None:
    scenario = _acting(kappa=kappa, m=m, senders=6)
    measured = measure(scenario, seeds=(11, 12, 13, 14), max_lag=MAX_LAG)
    setup = model_setup(scenario, measured, MAX_LAG)
    assert setup.feedback_slots < setup.t_star
    for check in assert_agrees(
        measured,
        setup,
        ells=(1, 2, 3),
        alternatives={"feedback one slot late": replace(setup, feedback_slots=5)},
        min_payloads=960,
    ):
        print(check)
