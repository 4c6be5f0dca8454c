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
Certified lanes (`dissemination = "certified"`, the netsim default) are checked against
exact values: certified senders learn a slot's outcome from PoAs, two slots after carried
ones (d = lookahead_slots + 2 = 6). (a) still gives 5/7 (d > t*). The ratchet acting before
the horizon needs a horizon beyond 6 and a slack of at least d: N = 10, c = 2, κ = 43,
m = 7, t* = 7, Δ = 6, d = 6. X ~ Hypergeom(10, 2, 7) cartel lanes in the first draw.
X = 0 (8/120): no miss. X = 2 (56/120): 12 misses by slot 6, delayed. X = 1 (56/120):
6 misses in slots 1..6 (= Δ); at slot 7 the lane is replaced by one of the 3
never-addressed lanes, one of them the other cartel lane: delayed with probability 1/3.
P(delay) = 56/120 + (56/120)·(1/3) = 28/45, against 112/120 if the ratchet did nothing.
The carried tests above run carried scenarios (the model's feedback is the carried one).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mechanism.delay import p_delay
from mechanism.montecarlo import binomial_ci
from mechanism.params import SednaParams
from netsim.runner import run_scenario
from netsim.scenario import Scenario, load_scenario, parse_scenario_text
from tests.netsim.lane_modes import scenario_in_mode
from tests.netsim.model_agreement import assert_agrees, lanes_scenario, measure, model_setup

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
MAX_LAG = 6
WITHHOLDING = {2: ["withhold_bundles"], 5: ["withhold_bundles"]}


def test_the_shipped_ratchet_scenario_agrees_with_the_model() -> None:
    scenario = scenario_in_mode(load_scenario(SCENARIOS / "lanes_ratchet.toml"), "carried")
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


CERTIFIED_SEEDS = (1, 2, 3)
ACTING_CERTIFIED = """
validators = 10
until_ms = 60000
until_blocks = 130
[network]
latency_ms = [1, 20]
delta_ms = 100
[lanes]
dissemination = "certified"
payloads = 40
payload_bytes = 8192
kappa = 43
bundles_per_slot = 7
ratchet_policy = "keep_redeemed"
senders = 2
interval_slots = 2
[[byzantine]]
node = 2
behaviour = "withhold_bundles"
[[byzantine]]
node = 5
behaviour = "withhold_bundles"
"""


def delayed_over_seeds(scenario: Scenario) -> tuple[int, int, dict]:
    delayed = total = 0
    lanes: dict = {}
    for seed in CERTIFIED_SEEDS:
        report = run_scenario(scenario, seed=seed).report()
        assert report["violations"] == []
        rejected = {k: v for k, v in report["bundles_rejected"].items() if v}
        assert rejected == {}, rejected  # q = 1: every honest ticket landed in its slot
        delays = list(report["decode_slot_delay"].values())
        assert None not in delays  # every payload executed
        delayed += sum(d > 0 for d in delays)
        total += len(delays)
        lanes = report["lanes"]
    return delayed, total, lanes


def test_the_shipped_ratchet_scenario_in_certified_mode_gives_the_fixed_set_value() -> None:
    scenario = scenario_in_mode(load_scenario(SCENARIOS / "lanes_ratchet.toml"), "certified")
    delayed, total, lanes = delayed_over_seeds(scenario)
    assert (lanes["kappa"], lanes["bundles_per_slot"], lanes["t_star"], lanes["slack"]) == (
        8,
        3,
        3,
        1,
    )
    assert lanes["ratchet_policy"] == "keep_redeemed"
    assert lanes["feedback_slots"] == 6 > lanes["t_star"]  # no feedback before t*
    interval = binomial_ci(delayed, total, level=0.99)
    assert total == 240
    assert interval.low <= 5 / 7 <= interval.high, (delayed / total, interval)


def test_the_certified_ratchet_acting_before_the_horizon_agrees_with_its_exact_value() -> None:
    delayed, total, lanes = delayed_over_seeds(parse_scenario_text(ACTING_CERTIFIED))
    assert (lanes["t_star"], lanes["slack"], lanes["feedback_slots"]) == (7, 6, 6)
    assert lanes["dissemination"] == "certified"
    interval = binomial_ci(delayed, total, level=0.99)
    assert interval.low <= 28 / 45 <= interval.high, (delayed / total, interval)
    assert interval.high < 112 / 120  # the ratchet did act: below the fixed-set value
