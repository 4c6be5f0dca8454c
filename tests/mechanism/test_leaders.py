"""Leader cartels (drop_lane_blocks) in carried and certified dissemination: the count
model against the lane-by-lane model and the lane-level Monte Carlo."""

from __future__ import annotations

import pytest

from mechanism import delay, lanechain, lanesim, leaders
from mechanism.params import SednaParams


@pytest.mark.parametrize(
    ("withholding", "censoring", "mode", "q", "first"),
    [
        ({2}, {5}, "carried", 1.0, 0),
        ({2, 5}, {5}, "certified", 0.9, 3),
        (set(), {2, 5}, "carried", 1.0, 1),
        ({1}, {3}, "certified", 1.0, 2),
    ],
)
def test_count_model_equals_lane_model_for_fresh_addressing(withholding, censoring, mode, q, first):
    lane = lanechain.predict(
        lanechain.LaneSetup(
            6, 3, 7, withholding=withholding, censoring=censoring, q=q, policy="fresh",
            dissemination=mode, first_leader=first, max_lag=3,
        )
    )
    setup = leaders.LeaderCartel(
        6, 3, 7, withholding=len(withholding - censoring), censoring=len(censoring - withholding),
        both=len(withholding & censoring), q=q, dissemination=mode, max_lag=3,
    )
    kinds = leaders.round_robin_kinds(6, withholding, censoring, first, setup.t_star + 3)
    count = leaders.predict(setup, kinds)
    assert count.lag_pmf == pytest.approx(lane.lag_pmf, abs=1e-12)
    assert count.lead_pmf == pytest.approx(lane.lead_pmf, abs=1e-12)
    assert count.p_leader_early == pytest.approx(lane.p_leader_early, abs=1e-12)
    assert count.p_race == pytest.approx(lane.p_race, abs=1e-12)


def test_no_censoring_leader_is_the_fresh_hypergeometric_model():
    setup = leaders.LeaderCartel(40, 8, 29, withholding=6, q=0.95, max_lag=2)
    kinds = ("h",) * (setup.t_star + 2)
    out = leaders.predict(setup, kinds)
    p = SednaParams(29, 8, 6 / 40, q=0.95, lanes=40)
    assert out.p_delay == pytest.approx(delay.p_delay(p), rel=1e-10)
    assert out.lag_tail()[1] == pytest.approx(delay.p_behind(p, p.t_star + 1), rel=1e-9)


@pytest.mark.parametrize(
    "setup",
    [
        lanechain.LaneSetup(7, 3, 8, censoring={2, 5}, policy="keep_redeemed", feedback_slots=2,
                            first_leader=0, max_lag=3),
        lanechain.LaneSetup(7, 3, 8, withholding={5}, censoring={2, 5}, q=0.9,
                            dissemination="certified", first_leader=3, max_lag=3),
        lanechain.LaneSetup(7, 3, 8, withholding={1}, censoring={4}, policy="fixed",
                            first_leader=4, max_lag=3),
    ],
)
def test_lane_model_inside_the_lane_monte_carlo_interval(setup):
    exact = lanechain.predict(setup)
    sim = lanesim.simulate(
        lanesim.SimSetup(
            setup.lanes, setup.m, setup.kappa, setup.withholding, setup.censoring, setup.q,
            setup.policy, setup.feedback_slots, setup.dissemination, setup.first_leader,
            setup.max_lag,
        ),
        trials=60_000,
        seed=17,
    )
    for got, count in (
        (exact.p_delay, sim.delayed),
        (sum(exact.lead_pmf[1:]), sum(sim.lead_counts[1:])),
        (exact.p_leader_early, sim.leader_early),
        (exact.p_race, sim.races),
        (exact.lag_tail()[1], sum(sim.lag_counts[2:])),
    ):
        ci = sim.ci(count, 0.999)
        assert ci.low <= got <= ci.high


def test_certified_omission_only_delays_to_the_next_honest_leader():
    # No withholding, q = 1. Censors lead the payload's slots 1 and 2 (validators 1, 2):
    # certified, their lane blocks reach the cut of slot 3 and the chain decodes at t* = 3;
    # carried, those bundles are lost and the chain is late.
    certified = lanechain.LaneSetup(7, 3, 8, censoring={1, 2}, dissemination="certified",
                                    policy="fresh", first_leader=1, max_lag=4)
    out = lanechain.predict(certified)
    assert out.lag_pmf[0] == pytest.approx(1.0)
    carried = lanechain.predict(lanechain.LaneSetup(
        7, 3, 8, censoring={1, 2}, policy="fresh", first_leader=1, max_lag=4))
    assert carried.p_delay == pytest.approx(1.0)
    # Censors at slots 2 and 3 (two in a row, the last at t*): the cut comes at slot 4,
    # at most censoring_bound_cuts(2) heights after the omitted lane blocks' own.
    late = lanechain.predict(lanechain.LaneSetup(
        7, 3, 8, censoring={1, 2}, dissemination="certified", policy="fresh",
        first_leader=0, max_lag=4))
    assert late.lag_pmf[1] == pytest.approx(1.0)
    assert leaders.censoring_bound_cuts(2) >= 1
