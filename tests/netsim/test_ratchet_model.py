"""The ratchet that ships is the ratchet that is analysed (issue 10).

netsim senders run `keep_redeemed` with feedback_slots = d = lookahead_slots (what they
really know when they plan a slot). The delayed fraction measured over several seeds must
contain the model's P(delay) in its 99 % confidence interval. q = 1 here (no honest lane
misses a ticket: checked), the cartel withholds everything and pools it.

(a) The shipped `lanes_ratchet` scenario: N = 7, c = 2, κ = 8, m = 3, t* = 3, Δ = 1, d = 4.
    Since d > t*, no outcome is known before the horizon: every slot up to t* addresses
    the first draw, so P(delay) is the fixed-lane model's (`mechanism.delay.p_delay`,
    addressing "fixed"): P(X >= 1) = 1 − C(5,3)/C(7,3) = 5/7.
(b) The ratchet acting before the horizon: N = 7, c = 2, κ = 21, m = 5, t* = 5, Δ = 4,
    d = 4. X ~ Hypergeom(7, 2, 5) cartel lanes in the first draw. X = 0: no miss. X = 2:
    8 misses by slot 4 >= Δ + 1 = 5, delayed. X = 1: 4 misses in slots 1..4; slot 1's
    miss is learned at slot 5, where the lane is replaced by one of the 2 never-addressed
    lanes, one of them the other cartel lane: delayed with probability 1/2. So
    P(delay) = 10/21 + (10/21)·(1/2) = 15/21, against 20/21 if the ratchet did nothing.

Both in both lane modes. Certified senders learn a slot's outcome from PoAs, two slots
after carried ones (d = lookahead_slots + 2 = 6), so (b) needs a horizon beyond 6 and a
slack of at least d for one cartel lane to be replaceable in time: N = 10, c = 2, κ = 43,
m = 7, t* = 7, Δ = 6, d = 6. X ~ Hypergeom(10, 2, 7). X = 0 (8/120): no miss. X = 2
(56/120): 12 misses by slot 6, delayed. X = 1 (56/120): 6 misses in slots 1..6 (= Δ);
at slot 7 the lane is replaced by one of the 3 never-addressed lanes, one of them the
other cartel lane: delayed with probability 1/3. P(delay) = 56/120 + (56/120)·(1/3) =
28/45, against 112/120 if the ratchet did nothing.
"""

from __future__ import annotations

from pathlib import Path

from mechanism.delay import p_delay
from mechanism.montecarlo import binomial_ci
from mechanism.params import SednaParams
from netsim.runner import run_scenario
from netsim.scenario import Scenario, load_scenario, parse_scenario_text
from tests.netsim.lane_modes import in_mode, modes, scenario_in_mode

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
SEEDS = (1, 2, 3)

ACTING = """
validators = 7
until_ms = 60000
until_blocks = 130
[network]
latency_ms = [1, 20]
delta_ms = 100
[lanes]
payloads = 40
payload_bytes = 2048
kappa = 21
bundles_per_slot = 5
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

ACTING_CERTIFIED = """
validators = 10
until_ms = 60000
until_blocks = 130
[network]
latency_ms = [1, 20]
delta_ms = 100
[lanes]
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
# mode -> (scenario, (t*, Δ, d), exact P(delay), P(delay) if the ratchet did nothing)
ACTING_BY_MODE = {
    "carried": (ACTING, (5, 4, 4), 15 / 21, 20 / 21),
    "certified": (ACTING_CERTIFIED, (7, 6, 6), 28 / 45, 112 / 120),
}


def delayed_over_seeds(scenario: Scenario) -> tuple[int, int, dict]:
    delayed = total = 0
    lanes: dict = {}
    for seed in SEEDS:
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


@modes
def test_the_shipped_ratchet_scenario_agrees_with_the_model(mode: str) -> None:
    scenario = scenario_in_mode(load_scenario(SCENARIOS / "lanes_ratchet.toml"), mode)
    delayed, total, lanes = delayed_over_seeds(scenario)
    assert (lanes["kappa"], lanes["bundles_per_slot"], lanes["t_star"], lanes["slack"]) == (
        8,
        3,
        3,
        1,
    )
    assert lanes["ratchet_policy"] == "keep_redeemed"
    d = 4 if mode == "carried" else 6
    assert lanes["feedback_slots"] == d > lanes["t_star"]  # no feedback before t*
    model = p_delay(SednaParams(kappa=8, m=3, beta=2 / 7, lanes=7, addressing="fixed"))
    assert abs(model - 5 / 7) < 1e-9
    interval = binomial_ci(delayed, total, level=0.99)
    assert total == 240
    assert interval.low <= model <= interval.high, (delayed / total, model, interval)


@modes
def test_the_ratchet_acting_before_the_horizon_agrees_with_its_exact_value(mode: str) -> None:
    text, shape, model, inert = ACTING_BY_MODE[mode]
    delayed, total, lanes = delayed_over_seeds(parse_scenario_text(in_mode(text, mode)))
    assert (lanes["t_star"], lanes["slack"], lanes["feedback_slots"]) == shape
    assert lanes["dissemination"] == mode
    interval = binomial_ci(delayed, total, level=0.99)
    assert interval.low <= model <= interval.high, (delayed / total, model, interval)
    assert interval.high < inert  # the ratchet did act: below the fixed-set value
