"""The shipped sender and the joint lane/leader cartel, lane by lane, exactly (small N).

docs/mechanism.md §6 (the ratchet as shipped) and §16 (leader cartels). This is the model a
netsim measurement of `lanes_ratchet` or `drop_lane_blocks` is compared with: every lane
has an identity, the leader of each height is known, and the sender follows the policy
the lanes code ships. The state space grows like C(N, m)·2^N, so it is meant for the
validator counts of netsim and the testnet (N <= ~10); larger N: `mechanism.lanesim`
(Monte Carlo, lane by lane) or the count models of `mechanism.delay` / `mechanism.leaders`.

Semantics (the contract shared with the lanes code):

* Policies. "fresh": m distinct lanes drawn uniformly every slot. "fixed": one uniform
  m-subset for the whole payload. "keep_redeemed" (the ratchet): start with a uniform
  m-subset and keep addressing it; the sender learns whether a ticket of slot s was
  redeemed at the start of slot s + d (d = `feedback_slots`); a lane with a seen
  unredeemed ticket is excluded for the rest of the payload and its position is refilled
  in that slot by uniform draws from the never-addressed lanes, else from the
  non-excluded lanes not addressed in that slot, else (none left) the exclusions are
  reset and the draw is from the lanes not addressed in that slot. A withholding lane
  therefore withholds d consecutive slots. A seen miss excludes its lane even after a
  reset (its ticket is still unredeemed).
* Lanes. A withholding lane (cartel) includes none of the payload's bundles that its
  cartel's strategy withholds; every other addressed lane includes its bundle with
  probability q (independently). Strategies (`strategy`, docs/cartels.md), one decision
  per slot j from the cartel's holdings X_j (its addressed lanes that slot) and pool P
  (bundles it withheld before): "withhold_all" always; "threshold" iff X_j >= θ
  (default Δ + 1); "last_slot" iff j >= t*; "adaptive" iff P + X_j > m·max(j, t*) − κ.
  Strategies other than withhold_all are modelled without censoring leaders.
* Leaders. Round robin: the leader of the payload's j-th slot (j = 1, 2, …) is validator
  (first_leader + j − 1) mod N (with no timeouts a height's leader is the next validator
  in order; lane i is validator i). A censoring leader (`drop_lane_blocks`) includes no
  lane block but its own lane's (its own lane follows its lane behaviour).
  - "carried": the omitted lane blocks' tickets expire unredeemed; the sender sees them
    unredeemed (with the ratchet it excludes those lanes, honest or not); the censoring
    leader keeps their bundles (the cartel knows them).
  - "certified": an omitted lane block is certified anyway and enters the next honest
    leader's cut: its bundles finalize at that height, its tickets count as redeemed (no
    exclusion), and every validator, the cartel included, holds them from their slot on.
* The cartel is the withholding lanes and the censoring leaders together; it pools
  everything any member holds. T_cart: first slot at whose end it holds κ bundles;
  T_chain: first height whose finalized block brings the chain to κ. Lead = T_chain −
  T_cart, lag = T_chain − t* (netsim's `decode_slot_delay`).
* Early decode at the decode height (information only: after the ordering fix of the
  lanes-under-attack work, payloads that become decodable in a block execute before its
  plain transactions): in "carried" mode the leader of height T_chain holds every lane
  block of it before the block is final, so a cartel leader there decodes early; cartel
  lanes also hold their own bundles of that slot (the within-slot race). In "certified"
  mode every validator holds the certified lane blocks before the cut is final.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

POLICIES = ("fresh", "fixed", "keep_redeemed")
CARTEL_STRATEGIES = ("withhold_all", "threshold", "last_slot", "adaptive")
DISSEMINATION = ("carried", "certified")
MAX_LANES = 12
_MAX_STATES = 400_000  # live states per slot (memory and time bound)


@dataclass(frozen=True)
class LaneSetup:
    """One payload's dissemination and the cartel it faces (lane identities 0..N−1)."""

    lanes: int
    m: int
    kappa: int
    withholding: frozenset[int] = frozenset()
    censoring: frozenset[int] = frozenset()
    q: float = 1.0
    policy: str = "keep_redeemed"
    feedback_slots: int = 1
    dissemination: str = "carried"
    first_leader: int = 0
    max_lag: int = 6
    strategy: str = "withhold_all"
    theta: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "withholding", frozenset(self.withholding))
        object.__setattr__(self, "censoring", frozenset(self.censoring))
        if not 1 <= self.lanes <= MAX_LANES:
            raise ValueError(f"lanes must be in 1..{MAX_LANES} for the exact lane model")
        if not 1 <= self.m <= self.lanes:
            raise ValueError(f"need 1 <= m <= lanes, got m={self.m}")
        if self.kappa < 1:
            raise ValueError(f"kappa must be >= 1, got {self.kappa}")
        for name in ("withholding", "censoring"):
            bad = [v for v in getattr(self, name) if not 0 <= v < self.lanes]
            if bad:
                raise ValueError(f"{name} lanes must be in 0..{self.lanes - 1}, got {bad}")
        if not 0.0 < self.q <= 1.0:
            raise ValueError(f"q must be in (0, 1], got {self.q}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if not 1 <= self.feedback_slots <= 32:
            raise ValueError(f"feedback_slots must be in 1..32, got {self.feedback_slots}")
        if self.dissemination not in DISSEMINATION:
            raise ValueError(f"dissemination must be one of {DISSEMINATION}")
        if not 0 <= self.first_leader < self.lanes:
            raise ValueError(f"first_leader must be in 0..{self.lanes - 1}")
        if not 0 <= self.max_lag <= 64:
            raise ValueError(f"max_lag must be in 0..64, got {self.max_lag}")
        if self.strategy not in CARTEL_STRATEGIES:
            raise ValueError(f"strategy must be one of {CARTEL_STRATEGIES}, got {self.strategy!r}")
        if self.theta is not None and (self.strategy != "threshold" or self.theta < 1):
            raise ValueError("theta (>= 1) is an option of the 'threshold' strategy only")
        if self.strategy != "withhold_all" and self.censoring:
            raise ValueError(
                f"strategy {self.strategy!r} with censoring leaders is not modelled "
                "(only withhold_all is)"
            )

    @property
    def t_star(self) -> int:
        return -(-self.kappa // self.m)

    @property
    def cartel(self) -> frozenset[int]:
        return self.withholding | self.censoring

    def leader(self, slot: int) -> int:
        """Leader of the payload's slot `slot` (1-based), round robin."""
        return (self.first_leader + slot - 1) % self.lanes

    @property
    def slack(self) -> int:
        return self.t_star * self.m - self.kappa

    def withholds(self, slot: int, holdings: int, pooled: int) -> bool:
        """Does the cartel withhold its `holdings` bundles of the payload's slot `slot`,
        having withheld `pooled` before? (The strategies of docs/cartels.md, stated here
        apart from the lanes code they predict.)"""
        if holdings == 0:
            return False
        if self.strategy == "withhold_all":
            return True
        if self.strategy == "threshold":
            theta = self.theta if self.theta is not None else self.slack + 1
            return holdings >= theta
        if self.strategy == "last_slot":
            return slot >= self.t_star
        # adaptive: withhold while the pool can keep the chain short of κ at max(slot, t*)
        return pooled + holdings > self.m * max(slot, self.t_star) - self.kappa


@dataclass(frozen=True)
class LaneOutcome:
    """Distributions over one payload (exact). lag = T_chain − t*; lead = T_chain − T_cart.

    lag_pmf[ℓ], ℓ = 0..max_lag: P(lag = ℓ); p_undecided: P(not decoded by t* + max_lag).
    lead_pmf[ℓ]: P(decoded within the horizon and lead = ℓ).
    p_leader_early: P(decoded and the decode height's leader is a cartel member).
    p_race: P(decoded and the cartel could decode before that height is final: a lead,
    or (carried) a cartel leader at the decode height or cartel lanes holding enough of
    the slot, or (certified) always).
    """

    lag_pmf: tuple[float, ...]
    lead_pmf: tuple[float, ...]
    p_undecided: float
    p_leader_early: float
    p_race: float
    states_peak: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def p_delay(self) -> float:
        """P(lag >= 1), counting undecided payloads as delayed."""
        return unit_interval(sum(self.lag_pmf[1:]) + self.p_undecided)

    def lag_tail(self) -> tuple[float, ...]:
        """P(lag >= ℓ), ℓ = 1..max_lag (undecided count as beyond the horizon)."""
        out = []
        for ell in range(1, len(self.lag_pmf)):
            out.append(unit_interval(sum(self.lag_pmf[ell:]) + self.p_undecided))
        return tuple(out)

    def lead_tail(self) -> tuple[float, ...]:
        """P(lead >= ℓ), ℓ = 1..max_lag (among payloads decoded within the horizon)."""
        return tuple(
            unit_interval(sum(self.lead_pmf[ell:])) for ell in range(1, len(self.lead_pmf))
        )

    @property
    def mean_lag_decoded(self) -> float:
        """E[lag | decoded within the horizon]."""
        mass = sum(self.lag_pmf)
        return sum(i * p for i, p in enumerate(self.lag_pmf)) / mass if mass else math.nan

    def as_dict(self) -> dict[str, object]:
        return {
            "p_delay": self.p_delay,
            "lag_pmf": list(self.lag_pmf),
            "lag_tail": list(self.lag_tail()),
            "lead_pmf": list(self.lead_pmf),
            "lead_tail": list(self.lead_tail()),
            "p_undecided": self.p_undecided,
            "p_leader_early": self.p_leader_early,
            "p_race": self.p_race,
            "mean_lag_decoded": self.mean_lag_decoded,
        }


def unit_interval(x: float) -> float:
    """A sum of probabilities, clamped to [0, 1] against round-off."""
    return float(min(1.0, max(0.0, x)))


# State: (addressed, excluded, ever, history, S, P, D, t_cart)
#   addressed/excluded/ever: frozensets of lanes; history: ((slot, missed lanes), ...)
#   not yet seen by the sender; S finalized, P pooled by the cartel (never public), D
#   certified but not yet in a cut; t_cart: slot the cartel first held κ (0: not yet).
_State = tuple


def _subsets(pool: Iterable[int], k: int) -> list[frozenset[int]]:
    return [frozenset(c) for c in itertools.combinations(sorted(pool), k)]


def _refill(
    setup: LaneSetup,
    kept: frozenset[int],
    excluded: frozenset[int],
    ever: frozenset[int],
    need: int,
) -> list[tuple[frozenset[int], frozenset[int], frozenset[int], float]]:
    """(addressed, excluded, ever, probability) after refilling `need` positions (§6)."""
    if need == 0:
        return [(kept, excluded, ever, 1.0)]
    all_lanes = frozenset(range(setup.lanes))
    never = all_lanes - ever - kept
    out = []
    if len(never) >= need:
        picks = _subsets(never, need)
        return [(kept | s, excluded, ever | s, 1.0 / len(picks)) for s in picks]
    kept2, ever2, rest = kept | never, ever | never, need - len(never)
    fallback = all_lanes - excluded - kept2
    if len(fallback) >= rest:
        picks = _subsets(fallback, rest)
        return [(kept2 | s, excluded, ever2 | s, 1.0 / len(picks)) for s in picks]
    # Draw what the fallback holds one by one; when it runs out the exclusions reset.
    if fallback:
        for lane in sorted(fallback):  # one uniform draw, then recurse
            for addr, exc, ev, p in _refill(setup, kept2 | {lane}, excluded, ever2, rest - 1):
                out.append((addr, exc, ev, p / len(fallback)))
        return out
    picks = _subsets(all_lanes - kept2, rest)  # reset: every lane not addressed
    return [(kept2 | s, frozenset(), ever2 | s, 1.0 / len(picks)) for s in picks]


def _inclusions(setup: LaneSetup, including: frozenset[int]) -> list[tuple[frozenset[int], float]]:
    """(lanes that include their bundle, probability) for one slot, given `including` (the
    addressed lanes that do not withhold): a withholding lane whose strategy includes this
    slot always finalizes (docs/mechanism.md §1), every other lane independently with
    probability q."""
    sure = including & setup.withholding
    honest = sorted(including - sure)
    if setup.q >= 1.0:
        return [(frozenset(including), 1.0)]
    out = []
    for pattern in itertools.product((True, False), repeat=len(honest)):
        prob = 1.0
        for ok in pattern:
            prob *= setup.q if ok else 1.0 - setup.q
        out.append((sure | frozenset(ln for ln, ok in zip(honest, pattern, strict=True) if ok),
                    prob))
    return out


def _classes(setup: LaneSetup) -> list[list[int]]:
    """Lanes that behave alike (the sender's draws are uniform): withholding lanes that do
    not censor, honest lanes that do not censor. A censoring lane is its own class (its
    slot in the leader schedule sets it apart)."""
    plain = [ln for ln in range(setup.lanes) if ln not in setup.censoring]
    return [
        [ln for ln in plain if ln in setup.withholding],
        [ln for ln in plain if ln not in setup.withholding],
    ]


def _canonical(classes: list[list[int]], key: _State) -> _State:
    """Relabel lanes inside each class so that equivalent states share one key."""
    addressed, excluded, ever, history, *rest = key
    mapping: dict[int, int] = {}
    for members in classes:
        if len(members) < 2:
            continue

        def signature(lane: int) -> tuple:
            return (
                lane in addressed,
                lane in excluded,
                lane in ever,
                tuple(lane in missed for _slot, missed in history),
            )

        for target, lane in zip(members, sorted(members, key=signature), strict=True):
            if target != lane:
                mapping[lane] = target
    if not mapping:
        return key

    def relabel(lanes: frozenset[int]) -> frozenset[int]:
        return frozenset(mapping.get(ln, ln) for ln in lanes)

    hist = tuple((slot, relabel(missed)) for slot, missed in history)
    return (relabel(addressed), relabel(excluded), relabel(ever), hist, *rest)


def predict(setup: LaneSetup) -> LaneOutcome:
    """Exact distributions of lag, lead and early decode for one payload (forward DP).

    States that differ only by a relabelling of interchangeable lanes are merged (the
    dynamics are symmetric in them), which keeps N <= ~10 tractable.
    """
    n_lanes, m, kappa, t_star = setup.lanes, setup.m, setup.kappa, setup.t_star
    horizon = t_star + setup.max_lag
    d = setup.feedback_slots
    carried = setup.dissemination == "carried"
    cartel = setup.cartel
    lag_pmf = [0.0] * (setup.max_lag + 1)
    lead_pmf = [0.0] * (setup.max_lag + 1)
    early = race = 0.0
    all_lanes = frozenset(range(n_lanes))
    classes = _classes(setup)
    # the pool matters up to κ (the cartel decodes), or up to the adaptive rule's bar
    pool_cap = kappa if setup.strategy != "adaptive" else max(kappa, m * horizon)
    first = _subsets(all_lanes, m)
    states: dict[_State, float] = {}
    if setup.policy == "fresh":  # drawn anew in every slot
        states[(frozenset(), frozenset(), frozenset(), (), 0, 0, 0, 0)] = 1.0
    for s in first if setup.policy != "fresh" else ():
        key = (s, frozenset(), s, (), 0, 0, 0, 0)
        states[key] = states.get(key, 0.0) + 1.0 / len(first)
    peak = len(states)
    for slot in range(1, horizon + 1):  # bounded horizon
        leader = setup.leader(slot)
        censored = leader in setup.censoring
        nxt: dict[_State, float] = {}

        def push(key: _State, prob: float, nxt: dict[_State, float] = nxt) -> None:
            key = _canonical(classes, key)
            nxt[key] = nxt.get(key, 0.0) + prob

        for (
            addressed,
            excluded,
            ever,
            history,
            s_fin,
            pool,
            deferred,
            t_cart,
        ), w in states.items():
            # 1. The sender: feedback of slot − d, exclusions, refill (keep_redeemed).
            options: list[tuple[frozenset[int], frozenset[int], frozenset[int], float]]
            if setup.policy == "fresh":
                options = [(s, excluded, ever, 1.0 / len(first)) for s in first]
            elif setup.policy == "fixed" or slot == 1:
                options = [(addressed, excluded, ever, 1.0)]
            else:
                newly: frozenset[int] = frozenset()
                for past, missed in history:
                    if past == slot - d:
                        newly |= missed
                history = tuple(h for h in history if h[0] > slot - d)
                newly -= excluded
                gone = addressed & newly
                options = _refill(setup, addressed - gone, excluded | newly, ever, len(gone))
            for addr, exc, ev, p_addr in options:
                withheld = addr & setup.withholding
                if not setup.withholds(slot, len(withheld), pool):
                    withheld = frozenset()
                for included, p_inc in _inclusions(setup, addr - withheld):
                    prob = w * p_addr * p_inc
                    # 2. The block of this height.
                    if censored:
                        own = included & {leader}
                        if carried:
                            finalized = len(own)
                            lost = len(included) - len(own)  # omitted: the leader keeps them
                            new_pool, new_def = pool + len(withheld) + lost, deferred
                            unredeemed = addr - own
                        else:
                            finalized = len(own)
                            new_pool = pool + len(withheld)
                            new_def = deferred + len(included) - len(own)
                            unredeemed = addr - included
                    else:
                        finalized = len(included) + deferred
                        new_pool, new_def = pool + len(withheld), 0
                        unredeemed = addr - included
                    s_new = s_fin + finalized
                    known = s_new + new_pool + new_def  # what the cartel holds
                    tc = t_cart or (slot if known >= kappa else 0)
                    if s_new >= kappa:  # 3. the chain decodes at this height
                        lag = slot - t_star
                        lead = slot - tc
                        lag_pmf[lag] += prob
                        lead_pmf[lead] += prob
                        lead_early = carried and leader in cartel
                        lanes_race = s_fin + pool + deferred + len(addr & cartel) >= kappa
                        if lead_early:
                            early += prob
                        if lead >= 1 or lead_early or not carried or lanes_race:
                            race += prob
                        continue
                    if setup.policy == "keep_redeemed":
                        hist = (*history, (slot, unredeemed)) if unredeemed else history
                    else:
                        hist = ()
                    pool_capped = min(new_pool, pool_cap)  # beyond it the size is irrelevant
                    push((addr, exc, ev, hist, s_new, pool_capped, new_def, tc), prob)
        states = nxt
        peak = max(peak, len(states))
        if len(states) > _MAX_STATES:
            raise ValueError("exact lane model: too many states (use mechanism.lanesim)")
    undecided = float(sum(states.values()))
    return LaneOutcome(
        lag_pmf=tuple(lag_pmf),
        lead_pmf=tuple(lead_pmf),
        p_undecided=undecided,
        p_leader_early=unit_interval(early),
        p_race=unit_interval(race),
        states_peak=peak,
    )


def predict_payloads(setup: LaneSetup, first_leaders: Sequence[int]) -> LaneOutcome:
    """The average outcome over payloads that start at the given leaders (one entry per
    payload: a netsim run's payloads, or range(N) for a uniformly random start)."""
    if not first_leaders:
        raise ValueError("first_leaders must not be empty")
    counts: dict[int, int] = {}
    for leader in first_leaders:
        counts[leader] = counts.get(leader, 0) + 1
    total = len(first_leaders)
    lag = [0.0] * (setup.max_lag + 1)
    lead = [0.0] * (setup.max_lag + 1)
    undecided = early = race = 0.0
    peak = 0
    for leader, count in sorted(counts.items()):  # bounded by N distinct leaders
        out = predict(_with_leader(setup, leader))
        weight = count / total
        lag = [a + weight * b for a, b in zip(lag, out.lag_pmf, strict=True)]
        lead = [a + weight * b for a, b in zip(lead, out.lead_pmf, strict=True)]
        undecided += weight * out.p_undecided
        early += weight * out.p_leader_early
        race += weight * out.p_race
        peak = max(peak, out.states_peak)
    return LaneOutcome(tuple(lag), tuple(lead), undecided, early, race, peak)


def _with_leader(setup: LaneSetup, leader: int) -> LaneSetup:
    from dataclasses import replace

    return replace(setup, first_leader=leader)
