"""Tails computed directly: exact rationals as the oracle, down to 1e-300; impossible = 0."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechanism import delay, tails
from mechanism.params import SednaParams, Strategy

from . import oracles

REL = 1e-6  # the bound; typical errors are ~1e-13


def rel_err(got: float, exact: Fraction) -> float:
    if exact == 0:
        return 0.0 if got == 0.0 else math.inf
    return float(abs(Fraction(got) - exact) / exact)


def exact_iid(pmf: list[Fraction], copies: int, a: int) -> Fraction:
    total = {0: Fraction(1)}
    one = dict(enumerate(pmf))
    for _ in range(copies):
        total = oracles.convolve(total, {k: p for k, p in one.items() if p})
    return oracles.tail(total, a)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 90)), min_size=2, max_size=6),
    st.integers(1, 10),
    st.data(),
)
def test_iid_sum_tail_matches_exact_rationals(raw, copies, data):
    weights = [Fraction(w) * Fraction(10) ** (-e) for w, e in raw]
    total = sum(weights)
    if total == 0:
        return
    pmf = [Fraction(float(w / total)) for w in weights]  # exactly the floats handed in
    top = copies * (len(pmf) - 1)
    a = data.draw(st.integers(0, top + 1))
    log_pmf = np.array([math.log(float(p)) if p else -math.inf for p in pmf])
    exact = exact_iid(pmf, copies, a)
    got = tails.prob(tails.iid_sum_log_sf(log_pmf, copies, a))
    if exact == 0:
        assert got == 0.0  # impossible: exactly zero, not round-off
    elif exact >= Fraction(10) ** -300:
        assert rel_err(got, exact) <= REL


def test_poisson_binomial_tail_matches_exact_rationals():
    rng = random.Random(7)
    worst = 0.0
    for _ in range(120):
        n = rng.randint(1, 30)
        r = [
            rng.choice([0.0, 1.0, rng.random() * 10.0 ** -rng.randint(0, 40)]) for _ in range(n)
        ]
        a = rng.randint(0, n + 1)
        exact = Fraction(0)
        pmf = {0: Fraction(1)}
        for ri in r:
            pmf = oracles.convolve(pmf, {0: 1 - Fraction(ri), 1: Fraction(ri)})
        exact = oracles.tail(pmf, a)
        with np.errstate(over="ignore"):
            got = tails.prob(tails.poisson_binomial_log_sf(np.array(r), a))
        if exact == 0:
            assert got == 0.0
        elif exact >= Fraction(10) ** -300:
            worst = max(worst, rel_err(got, exact))
    assert worst <= REL


def test_binomial_tail_below_the_float_range_falls_back_to_log_space():
    # P(Bin(10, 1e-40) >= 9) ~ 4.5e-359: beyond doubles; the log value is still right.
    exact = oracles.binomial_tail(9, 10, 1e-40)
    got = tails.log_binom_sf(9, 10, 1e-40)
    expected = math.log(exact.numerator) - math.log(exact.denominator)
    assert got == pytest.approx(expected, rel=1e-12)
    assert tails.log_binom_sf(11, 10, 0.5) == -math.inf
    assert tails.log_binom_sf(0, 10, 0.0) == 0.0


# Every exact lane model against its rational oracle, at ordinary and at tiny values.
MODEL_CASES = [
    # (params, oracle), oracle gives P(M_{t*} >= Δ+1) as a Fraction
    pytest.param(
        SednaParams(56, 16, 0.1),
        lambda: oracles.binomial_tail(9, 64, 0.1),
        id="binomial",
    ),
    pytest.param(
        SednaParams(56, 16, 1e-33),
        lambda: oracles.binomial_tail(9, 64, 1e-33),
        id="binomial-1e-287",
    ),
    pytest.param(
        SednaParams(10, 4, 0.0, q=1 - 1e-14, lanes=9),
        lambda: oracles.fresh_delay(4, 3, 3, 1 - 1e-14, lanes=9, cartel=0),
        id="hypergeometric-honest-1e-40",
    ),
    pytest.param(
        SednaParams(10, 4, 2 / 9, q=0.9, lanes=9),
        lambda: oracles.fresh_delay(4, 3, 3, 0.9, lanes=9, cartel=2),
        id="hypergeometric",
    ),
    pytest.param(
        SednaParams(24, 8, 2 / 20, q=1 - 1e-12, lanes=20),
        lambda: oracles.fresh_delay(8, 3, 1, 1 - 1e-12, lanes=20, cartel=2),
        id="hypergeometric-knife-edge",
    ),
    pytest.param(
        SednaParams(13, 4, 0.05, q=0.97, addressing="fixed"),
        lambda: oracles.fixed_delay(4, 4, 4, 0.97, 0.05),
        id="fixed",
    ),
    pytest.param(
        SednaParams(13, 4, 1e-80, q=1 - 1e-13, addressing="fixed"),
        lambda: oracles.fixed_delay(4, 4, 4, 1 - 1e-13, 1e-80),
        id="fixed-tiny",
    ),
    pytest.param(
        SednaParams(22, 8, 0.125, q=1 - 1e-15, lanes=8),
        lambda: oracles.binomial_tail(3 - 3 * 1, 3 * 7, 1 - (1 - Fraction(1 - 1e-15))),
        id="all-lanes-certain",
    ),
    pytest.param(
        SednaParams(30, 8, 0.0, q=1 - 1e-15, lanes=8),
        lambda: oracles.binomial_tail(3, 32, 1 - Fraction(1 - 1e-15)),
        id="all-lanes-1e-43",
    ),
    pytest.param(
        SednaParams(10, 3, 0.2, q=0.9, ratchet=True, feedback_slots=2),
        lambda: oracles.ratchet_unbounded_delay(3, 4, 3, 0.2, 0.9, 2),
        id="ratchet-unbounded-d2",
    ),
    pytest.param(
        SednaParams(10, 3, 1e-60, q=1 - 1e-15, ratchet=True),
        lambda: oracles.ratchet_unbounded_delay(3, 4, 3, 1e-60, 1 - 1e-15, 1),
        id="ratchet-unbounded-tiny",
    ),
    pytest.param(
        SednaParams(8, 3, 2 / 7, lanes=7, ratchet=True, feedback_slots=3),
        lambda: oracles.lane_delay(7, range(2), 3, 8, 3, 1.0, "ratchet", 3),
        id="ratchet-finite-d3",
    ),
]


@pytest.mark.parametrize(("params", "oracle"), MODEL_CASES)
def test_each_model_matches_its_rational_oracle(params, oracle):
    exact = oracle()
    got = delay.p_delay(params)
    assert exact >= Fraction(10) ** -300
    assert rel_err(got, exact) <= REL, (got, float(exact))


@pytest.mark.parametrize(
    "p",
    [
        SednaParams(10, 4, 0.3, q=0.9),  # ordinary: the threshold's boundary matters
        SednaParams(10, 4, 0.05, q=1.0),
        SednaParams(10, 4, 1e-30, q=1 - 1e-12),  # far tail
        SednaParams(10, 4, 2 / 9, q=0.9, lanes=9),
    ],
)
def test_strategy_model_matches_rational_oracle(p):
    theta = p.slack + 1
    for kind, rule in (
        ("threshold", lambda _s, x: x if x >= theta else 0),
        ("last-slot", lambda s, x: x if s >= p.t_star else 0),
        ("withhold-all", lambda _s, x: x),
    ):
        exact = oracles.fresh_delay(
            4, 3, theta, p.q, beta=p.beta, lanes=p.lanes, cartel=p.cartel_lanes or 0,
            withheld_by_slot=rule,
        )
        got = delay.p_delay_strategy(p, Strategy(kind))
        assert rel_err(got, exact) <= REL, kind


@pytest.mark.parametrize(
    "params",
    [
        # Too few cartel lanes to ever exceed the slack: Δ+1 = 9 > t*·c = 4·2.
        SednaParams(56, 16, 2 / 100, lanes=100),
        SednaParams(56, 16, 2 / 100, lanes=100, addressing="fixed"),
        SednaParams(56, 16, 2 / 100, lanes=100, ratchet=True),
        SednaParams(56, 16, 2 / 100, lanes=100, ratchet=True, feedback_slots=3),
        SednaParams(60, 16, 0.0, lanes=16),
        SednaParams(56, 16, 0.0),
        SednaParams(56, 16, 0.0, ratchet=True, feedback_slots=2),
    ],
)
def test_impossible_delay_is_exactly_zero(params):
    assert delay.p_delay(params) == 0.0
    assert delay.p_delay(params.with_(beta=params.beta or 0.0)) == 0.0


def test_impossible_strategy_and_heterogeneous_delays_are_exactly_zero():
    p = SednaParams(56, 16, 2 / 100, lanes=100)
    assert delay.p_delay_strategy(p, Strategy("threshold")) == 0.0
    r = delay.miss_probs_fixed_lanes(np.ones(16), np.arange(16) < 2, 4)  # 8 sure misses
    assert delay.p_delay_heterogeneous(r, 56) == 0.0
    assert delay.p_delay_heterogeneous(r, 57) == 1.0  # a = 8 sure misses suffice
