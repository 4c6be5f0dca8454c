"""The shipped ratchet is one rule: the sender's lane choice is the mechanism model's.

docs/lanes.md "The keep_redeemed rule" states it once; `consensus.lanes.sender` ships it
and `mechanism.lanechain` (with `mechanism.lanesim`) analyses it. These tests fail when
either side deviates:

1. every sender state of N = 5 lanes (all m, every addressed / excluded / ever-addressed
   set and every set of misses just learned): the sender's next addressed set, excluded
   set and ever-addressed set is one the model's refill (`lanechain._refill`) can produce;
2. where the model has several outcomes, the sender's draws (over seeds) follow the
   model's probabilities (chi-square);
3. the real `Sender`, driven lane by lane with the model's semantics (withholding lanes,
   censoring leaders in carried mode, q = 1, round-robin leaders) for whole payloads,
   has the lag distribution `lanechain.predict_payloads` gives, inside the 99 % interval,
   and not the one of a feedback latency off by one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import pytest
from scipy import stats

from consensus.crypto import TRUSTED
from consensus.lanes.encoding import EncodedPayload
from consensus.lanes.params import LaneParams, params_for_kappa
from consensus.lanes.sender import (
    AddressPolicy,
    OutgoingPayload,
    RatchetPolicy,
    Sender,
    SenderConfig,
)
from consensus.lanes.tracker import Redemption
from mechanism.lanechain import LaneSetup, _refill, predict_payloads
from mechanism.montecarlo import binomial_ci
from tests.lanes.helpers import SMALL, seeded_bytes, sender_key

N = 5
FEEDBACK_SLOTS = 2
SLOT = 6  # the slot whose lanes are chosen; the misses learned are those of SLOT − d

State = tuple[frozenset[int], frozenset[int], frozenset[int], frozenset[int]]
Outcome = tuple[frozenset[int], frozenset[int], frozenset[int]]  # addressed, excluded, ever


@cache
def _encoded(payload_bytes: int, kappa: int | None) -> tuple[EncodedPayload, LaneParams]:
    """One encoded payload (κ from `params_for_kappa`, or the small test layout), shared by
    every sender of a test: lane choice does not depend on its content."""
    params = SMALL if kappa is None else params_for_kappa(payload_bytes, kappa)
    sender = Sender(sender_key(), TRUSTED, params, SenderConfig(lanes=N, bundles_per_slot=1))
    cid = sender.submit(seeded_bytes("rule", payload_bytes), seeded_bytes("k", 32), first_slot=1)
    return sender.payloads[cid].encoded, params


def _states() -> Iterator[tuple[int, State]]:
    """(m, (kept, excluded, ever, missed)) for every state of this shape: kept is the m
    lanes addressed, excluded is disjoint from kept, ever holds both, and the misses just
    learned are any lanes ever addressed (a lane replaced since has misses in flight)."""
    lanes = range(N)
    for m in range(1, N + 1):
        for kept_tuple in itertools.combinations(lanes, m):
            kept = frozenset(kept_tuple)
            rest = [lane for lane in lanes if lane not in kept]
            for status in itertools.product(
                ("excluded", "addressed_before", "never"), repeat=len(rest)
            ):
                excluded = frozenset(
                    ln for ln, s in zip(rest, status, strict=True) if s == "excluded"
                )
                before = frozenset(
                    ln for ln, s in zip(rest, status, strict=True) if s == "addressed_before"
                )
                ever = kept | excluded | before
                for size in range(len(ever) + 1):
                    for missed in itertools.combinations(sorted(ever), size):
                        yield m, (kept, excluded, ever, frozenset(missed))


def model_outcomes(m: int, state: State) -> dict[Outcome, float]:
    """The model's distribution of the next (addressed, excluded, ever) (lanechain.predict:
    exclude what was just learned, refill the positions of the excluded lanes)."""
    kept, excluded, ever, missed = state
    newly = missed - excluded
    gone = kept & newly
    setup = LaneSetup(lanes=N, m=m, kappa=1)
    out: Counter[Outcome] = Counter()
    for addressed, exc, ev, prob in _refill(setup, kept - gone, excluded | newly, ever, len(gone)):
        out[(addressed, exc, ev)] += prob
    return dict(out)


def sender_outcome(m: int, state: State, seed: bytes) -> tuple[Outcome, int]:
    """The shipped sender put in `state`, asked for the lanes of SLOT; and whether it
    reset its exclusions."""
    kept, excluded, ever, missed = state
    encoded, params = _encoded(500, None)
    config = SenderConfig(
        lanes=N,
        bundles_per_slot=m,
        ratchet_policy=RatchetPolicy.KEEP_REDEEMED,
        feedback_slots=FEEDBACK_SLOTS,
        seed=seed,
    )
    sender = Sender(sender_key(), TRUSTED, params, config)
    outgoing = OutgoingPayload(encoded, first_slot=1)
    outgoing.kept = sorted(kept)
    outgoing.excluded = set(excluded)
    outgoing.ever_addressed = set(ever)
    outgoing.feedback = {
        SLOT - FEEDBACK_SLOTS: [(lane, lane not in missed) for lane in sorted(kept | missed)]
    }
    sender.payloads[encoded.commitment_id] = outgoing
    addressed = sender.lanes_for(encoded.commitment_id, SLOT)
    assert len(addressed) == m  # the sender always addresses m distinct lanes
    outcome = frozenset(addressed), frozenset(outgoing.excluded), frozenset(outgoing.ever_addressed)
    return outcome, outgoing.exclusion_resets


def test_every_sender_choice_is_one_the_model_makes() -> None:
    branches: Counter[str] = Counter()
    for index, (m, state) in enumerate(_states()):
        model = model_outcomes(m, state)
        (addressed, excluded, ever), resets = sender_outcome(m, state, index.to_bytes(4, "big"))
        assert (addressed, excluded, ever) in model, (m, state, addressed, excluded, model)
        kept, _, ever_before, _ = state
        new = addressed - kept
        branches["never-addressed lane drawn"] += bool(new - ever_before)
        branches["addressed-before lane drawn"] += bool(new & ever_before) and not resets
        branches["exclusions reset"] += resets
    # non-vacuity: every branch of the rule was taken, many times
    assert min(branches.values()) > 500, branches


def test_the_sender_draws_with_the_model_probabilities() -> None:
    """States where the model has several outcomes, from each tier of the rule: the
    sender's outcomes over 240 seeds against the model's probabilities (chi-square)."""
    chosen: dict[str, list[tuple[int, State, dict[Outcome, float]]]] = {}
    for m, state in _states():
        model = model_outcomes(m, state)
        if len(model) < 3:
            continue
        kept, excluded, ever, missed = state
        never = frozenset(range(N)) - ever
        fallback = frozenset(range(N)) - excluded - missed - kept
        tier = "never" if never else ("fallback" if fallback else "reset")
        bucket = chosen.setdefault(tier, [])
        if len(bucket) < 4:
            bucket.append((m, state, model))
    assert set(chosen) == {"never", "fallback", "reset"} and all(
        len(b) == 4 for b in chosen.values()
    )
    statistic, dof = 0.0, 0
    for tier, bucket in chosen.items():
        for m, state, model in bucket:
            seeds = 240
            counts = Counter(
                sender_outcome(m, state, f"{tier}/{s}".encode())[0] for s in range(seeds)
            )
            assert set(counts) <= set(model)
            for outcome, prob in model.items():
                expected = seeds * prob
                statistic += (counts[outcome] - expected) ** 2 / expected
            dof += len(model) - 1
    p_value = float(stats.chi2.sf(statistic, dof))
    assert p_value > 1e-4, (statistic, dof, p_value)


# ----------------------------------------------------------------- whole payloads


@dataclass(frozen=True)
class Drive:
    """The real sender against the model's world, payload after payload."""

    setup: LaneSetup
    payloads: int
    payload_bytes: int = 2048

    def lags(self) -> tuple[list[int | None], int]:
        """Each payload's lag T_chain − t* (None: not decoded within t* + max_lag) and the
        exclusion resets the senders made. Payload i starts at leader i mod N."""
        setup = self.setup
        encoded, params = _encoded(self.payload_bytes, setup.kappa)
        assert encoded.layout.kappa == setup.kappa
        policy = setup.policy
        config_policy = AddressPolicy.FIXED if policy == "fixed" else AddressPolicy.FRESH
        ratchet = RatchetPolicy.KEEP_REDEEMED if policy == "keep_redeemed" else RatchetPolicy.NONE
        cid = encoded.commitment_id
        lags: list[int | None] = []
        resets = 0
        for index in range(self.payloads):  # bounded by `payloads`
            config = SenderConfig(
                lanes=setup.lanes,
                bundles_per_slot=setup.m,
                policy=config_policy,
                ratchet_policy=ratchet,
                feedback_slots=setup.feedback_slots,
                seed=b"drive/" + index.to_bytes(4, "big"),
            )
            sender = Sender(sender_key(), TRUSTED, params, config)
            sender.payloads[cid] = OutgoingPayload(encoded, first_slot=1)
            first_leader = index % setup.lanes
            finalized, lag = 0, None
            for slot in range(1, setup.t_star + setup.max_lag + 1):
                leader = (first_leader + slot - 1) % setup.lanes
                redeemed = []
                for submission in sender.plan_slot(slot):
                    lane = submission.lane
                    if lane in setup.withholding:
                        continue  # a withholding lane never includes the payload's bundle
                    if leader in setup.censoring and lane != leader:
                        continue  # carried: the censoring leader omits the lane block
                    ticket = submission.entry.ticket.ticket
                    redeemed.append(Redemption(cid, b"", lane, slot, ticket.bundle_index, 1))
                finalized += len(redeemed)
                if finalized >= setup.kappa:
                    lag = slot - setup.t_star
                    break
                sender.on_slot_finalized(slot, redeemed)
            lags.append(lag)
            resets += sender.payloads[cid].exclusion_resets
        return lags, resets


def _tail(lags: list[int | None], ell: int) -> int:
    return sum(1 for lag in lags if lag is None or lag >= ell)


# name: (setup, payloads, whether the check also tells d from d ± 1)
CASES = {
    # d < t*: the ratchet replaces the withholding lanes before the horizon
    "withholding, d=2": (LaneSetup(7, 4, 14, withholding={2, 5}, feedback_slots=2), 1400, True),
    # a withholding lane and a censoring leader, d = netsim's lookahead
    "withholding and censoring, d=4": (
        LaneSetup(7, 5, 23, withholding={2}, censoring={5}, feedback_slots=4),
        1400,
        True,
    ),
    # censoring leaders make the sender exclude honest lanes: the refill runs dry and the
    # exclusions reset (where a sender that addressed fewer lanes would differ)
    "censoring, d=2": (LaneSetup(7, 5, 21, censoring={2, 5}, feedback_slots=2), 700, False),
    "censoring, d=4": (
        LaneSetup(7, 5, 21, withholding={1}, censoring={2, 5}, feedback_slots=4),
        700,
        False,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_real_sender_has_the_models_lag_distribution(name: str) -> None:
    setup, payloads, tells_d = CASES[name]
    lags, resets = Drive(setup, payloads).lags()
    first_leaders = [i % setup.lanes for i in range(payloads)]
    model = predict_payloads(setup, first_leaders).lag_tail()
    off_by_one = [
        predict_payloads(_with_feedback(setup, d), first_leaders).lag_tail()
        for d in (setup.feedback_slots - 1, setup.feedback_slots + 1)
    ]
    excluded_alternatives = [False, False]
    for ell in (1, 2, 3):
        interval = binomial_ci(_tail(lags, ell), payloads, level=0.99)
        assert interval.low <= model[ell - 1] <= interval.high, (ell, interval, model)
        for i, alternative in enumerate(off_by_one):
            if not interval.low <= alternative[ell - 1] <= interval.high:
                excluded_alternatives[i] = True
    if tells_d:  # the check can fail: feedback one slot earlier or later is excluded
        assert excluded_alternatives == [True, True]
    if setup.censoring:
        assert resets > 0  # non-vacuity: the reset branch was taken


def _with_feedback(setup: LaneSetup, d: int) -> LaneSetup:
    from dataclasses import replace

    return replace(setup, feedback_slots=d)
