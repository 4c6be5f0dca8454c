"""Parameter validation, confidence intervals and Monte Carlo determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mechanism import montecarlo
from mechanism.params import BandwidthParams, EconParams, GuideTargets, SednaParams, Strategy


def test_derived_quantities():
    p = SednaParams(56, 16, 0.1, q=0.9, lanes=100)
    assert (p.t_star, p.slack, p.n, p.cartel_lanes) == (4, 8, 64, 10)
    assert p.r == pytest.approx(0.1 + 0.9 * 0.1)
    assert p.model == "hypergeometric"
    assert SednaParams(64, 16, 0.1).slack == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kappa": 0}, "kappa must be >= 1"),
        ({"kappa": 2.5}, "kappa must be an integer"),
        ({"kappa": True}, "kappa must be an integer"),
        ({"m": 0}, "m must be >= 1"),
        ({"beta": 1.0}, r"beta must be in \[0, 1\)"),
        ({"beta": -0.1}, r"beta must be in \[0, 1\)"),
        ({"beta": math.nan}, "beta must be finite"),
        ({"beta": "x"}, "beta must be a number"),
        ({"q": 0.0}, r"q must be in \(0, 1\]"),
        ({"q": 1.1}, r"q must be in \(0, 1\]"),
        ({"lanes": 8}, "m must be <= lanes"),
        ({"lanes": 0}, "lanes must be >= 1"),
        ({"addressing": "random"}, "addressing must be one of"),
        ({"ratchet": 1}, "ratchet must be a bool"),
    ],
)
def test_sedna_params_reject_bad_values(kwargs, message):
    base = {"kappa": 56, "m": 16, "beta": 0.1}
    with pytest.raises(ValueError, match=message):
        SednaParams(**{**base, **kwargs})


def test_params_are_frozen_and_accept_numpy_ints():
    p = SednaParams(np.int64(56), np.int32(16), np.float64(0.1))
    assert isinstance(p.kappa, int) and p.kappa == 56
    with pytest.raises(AttributeError):
        p.kappa = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        p.with_(beta=2.0)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (EconParams, {"value_lead": -1}, "value_lead must be >= 0"),
        (EconParams, {"value_lead": 1, "tx_value": 0}, "tx_value must be > 0"),
        (EconParams, {"value_lead": 1, "fee": math.inf}, "fee must be finite"),
        (GuideTargets, {"eps_delay": 0, "eps_race": 0.1, "beta_max": 0.1}, "eps_delay"),
        (GuideTargets, {"eps_delay": 0.1, "eps_race": 1, "beta_max": 0.1}, "eps_race"),
        (GuideTargets, {"eps_delay": 0.1, "eps_race": 0.1, "beta_max": 1}, "beta_max"),
        (
            GuideTargets,
            {"eps_delay": 0.1, "eps_race": 0.1, "beta_max": 0.1, "m_max": 10**5},
            "m_max",
        ),
        (BandwidthParams, {"kappa": 8, "beta": 0.1, "eps": 1.0}, "eps"),
        (BandwidthParams, {"kappa": 8, "beta": 0.1, "payload_bytes": 0}, "payload_bytes"),
        (Strategy, {"kind": "sometimes"}, "strategy must be one of"),
        (Strategy, {"kind": "partial"}, "per_slot"),
        (Strategy, {"kind": "threshold", "threshold": 0}, "threshold"),
    ],
)
def test_other_parameter_sets_reject_bad_values(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("method", ["wilson", "clopper-pearson"])
def test_confidence_intervals(method):
    ci = montecarlo.binomial_ci(30, 1000, 0.95, method)
    assert ci.low < 0.03 < ci.high
    if method == "clopper-pearson":
        assert ci.low == pytest.approx(stats.beta.ppf(0.025, 30, 971))
        assert ci.high == pytest.approx(stats.beta.ppf(0.975, 31, 970))
    else:
        # Wilson score interval from its textbook formula.
        z = stats.norm.ppf(0.975)
        p = 0.03
        centre = (p + z * z / 2000) / (1 + z * z / 1000)
        half = z * math.sqrt(p * (1 - p) / 1000 + z * z / 4e6) / (1 + z * z / 1000)
        assert (ci.low, ci.high) == pytest.approx((centre - half, centre + half))
    assert montecarlo.binomial_ci(0, 100, 0.99, method).low == 0.0
    assert montecarlo.binomial_ci(100, 100, 0.99, method).high == 1.0
    with pytest.raises(ValueError):
        montecarlo.binomial_ci(5, 3, 0.9, method)
    with pytest.raises(ValueError):
        montecarlo.binomial_ci(1, 3, 1.0, method)


def test_interval_coverage_is_about_nominal():
    # 400 seeded experiments at p = 0.2: a 90% interval covers roughly 90% of them.
    rng = np.random.default_rng(0)
    hits = rng.binomial(500, 0.2, size=400)
    covered = sum(
        montecarlo.binomial_ci(int(h), 500, 0.9).low
        <= 0.2
        <= montecarlo.binomial_ci(int(h), 500, 0.9).high
        for h in hits
    )
    assert 0.85 * 400 <= covered <= 0.95 * 400


def test_same_seed_same_result_different_seed_different_draws():
    p = SednaParams(56, 16, 0.15, q=0.95, lanes=80, ratchet=False)
    a = montecarlo.simulate(p, trials=30_000, seed=5, max_lag=2)
    b = montecarlo.simulate(p, trials=30_000, seed=5, max_lag=2)
    c = montecarlo.simulate(p, trials=30_000, seed=6, max_lag=2)
    assert a == b
    assert a.lag_counts != c.lag_counts


def test_chunking_is_seamless(monkeypatch):
    p = SednaParams(56, 16, 0.15)
    whole = montecarlo.simulate(p, trials=5_000, seed=9)
    monkeypatch.setattr(montecarlo, "_CHUNK_TRIALS", 1_000)
    chunked = montecarlo.simulate(p, trials=5_000, seed=9)
    # Different chunking draws differently but estimates the same thing.
    assert chunked.trials == whole.trials == 5_000
    assert abs(chunked.p_delay_mc - whole.p_delay_mc) < 0.05


def test_simulation_rejects_bad_input():
    p = SednaParams(56, 16, 0.1)
    with pytest.raises(ValueError, match="trials"):
        montecarlo.simulate(p, trials=0)
    with pytest.raises(ValueError, match="max_lag"):
        montecarlo.simulate(p, trials=10, max_lag=-1)
    with pytest.raises(ValueError, match="seed"):
        montecarlo.simulate(p, trials=10, seed=-1)


def test_fresh_beta_zero_q_one_decodes_at_horizon():
    # §4.3: q = 1 and β = 0 ⇒ T_chain = t* in every trial, with every policy.
    for p in (
        SednaParams(56, 16, 0.0),
        SednaParams(56, 16, 0.0, lanes=40, ratchet=True),
        SednaParams(56, 16, 0.0, addressing="fixed"),
    ):
        res = montecarlo.simulate(p, trials=5_000, seed=1, max_lag=2)
        assert res.delays == 0 and res.lag_counts[0] == 5_000 and res.t_chain_min == 4


def test_bundle_slot_count():
    p = SednaParams(56, 16, 0.1)
    assert montecarlo.simulate(p, trials=1000, seed=1, max_lag=2).bundle_slots == 1000 * 16 * 6
