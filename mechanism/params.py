"""Typed, frozen parameter sets of the mechanism model (docs/mechanism.md §1).

Every field names its unit and meaning. Construction validates and raises a
`ValueError` with a one-line message; nothing here imports numpy or scipy, so the
CLI can validate input cheaply before the heavy modules load.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
from dataclasses import dataclass
from typing import Any

ADDRESSING = ("fresh", "fixed")
RATCHET_POLICIES = ("keep_redeemed",)
MAX_FEEDBACK_SLOTS = 32
STRATEGIES = ("none", "withhold-all", "threshold", "last-slot", "partial", "pivot-order")


def _as_int(name: str, value: Any, minimum: int) -> int:
    """An integer field: bools and non-integral numbers are rejected."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if as_int < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {as_int}")
    return as_int


def _as_float(name: str, value: Any) -> float:
    """A finite real field."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(as_float):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return as_float


def _in_unit(name: str, value: Any, *, low_open: bool, high_open: bool) -> float:
    """A probability-like field in [0,1] with the named ends open."""
    x = _as_float(name, value)
    low_ok = x > 0.0 if low_open else x >= 0.0
    high_ok = x < 1.0 if high_open else x <= 1.0
    if not (low_ok and high_ok):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}0, 1{hi}, got {x}")
    return x


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class SednaParams:
    """One transaction's dissemination and the cartel it faces.

    kappa:      bundles needed to decode the transaction [bundles], >= 1.
    m:          bundles addressed per slot, one per lane [bundles/slot], >= 1.
    beta:       cartel fraction of lanes [dimensionless], in [0, 1).
    q:          probability an honest lane finalizes its bundle in the addressed slot, in (0, 1].
    lanes:      total lanes N per slot [lanes]; None = an unbounded lane population in which
                each addressed lane is a cartel lane independently with probability beta
                (the binomial model). With N set the cartel holds c = round(beta*N) lanes.
    addressing: "fresh" (m distinct lanes drawn anew every slot) or "fixed" (one lane set
                drawn at slot 1 and reused). Ignored when ratchet is on.
    ratchet:    the adaptive sender (ratchet_policy "keep_redeemed", docs/mechanism.md §6):
                the sender keeps addressing the lanes it addressed; a lane with an
                unredeemed ticket is excluded and replaced by a never-addressed lane.
    feedback_slots: d, slots until the sender learns whether a ticket was redeemed: a ticket
                of slot s is seen at the start of slot s + d (d = 1: instant feedback), so a
                withholding lane stays addressed d slots. Only read when ratchet is on.
    """

    kappa: int
    m: int
    beta: float
    q: float = 1.0
    lanes: int | None = None
    addressing: str = "fresh"
    ratchet: bool = False
    feedback_slots: int = 1

    def __post_init__(self) -> None:
        _set(self, "kappa", _as_int("kappa", self.kappa, 1))  # κ >= 1 bundle
        _set(self, "m", _as_int("m", self.m, 1))  # at least one lane per slot
        _set(self, "beta", _in_unit("beta", self.beta, low_open=False, high_open=True))
        _set(self, "q", _in_unit("q", self.q, low_open=True, high_open=False))
        if self.lanes is not None:
            lanes = _as_int("lanes", self.lanes, 1)
            if self.m > lanes:  # one bundle per lane per slot: m <= N
                raise ValueError(f"m must be <= lanes, got m={self.m} > lanes={lanes}")
            _set(self, "lanes", lanes)
        if self.addressing not in ADDRESSING:
            raise ValueError(f"addressing must be one of {ADDRESSING}, got {self.addressing!r}")
        if not isinstance(self.ratchet, bool):
            raise ValueError(f"ratchet must be a bool, got {self.ratchet!r}")
        d = _as_int("feedback_slots", self.feedback_slots, 1)  # feedback no sooner than 1 slot
        if d > MAX_FEEDBACK_SLOTS:
            raise ValueError(f"feedback_slots must be <= {MAX_FEEDBACK_SLOTS}, got {d}")
        _set(self, "feedback_slots", d)

    @property
    def t_star(self) -> int:
        """Honest horizon t* = ceil(κ/m) [slots]."""
        return -(-self.kappa // self.m)

    @property
    def slack(self) -> int:
        """Slack Δ = t*·m − κ [bundles], in 0..m−1."""
        return self.t_star * self.m - self.kappa

    @property
    def n(self) -> int:
        """Bundles addressed up to the horizon, n = t*·m."""
        return self.t_star * self.m

    @property
    def cartel_lanes(self) -> int | None:
        """c = round(β·N) cartel lanes, or None in the binomial model."""
        if self.lanes is None:
            return None
        return round(self.beta * self.lanes)

    @property
    def beta_eff(self) -> float:
        """The cartel fraction actually modelled (c/N with finite lanes)."""
        c = self.cartel_lanes
        return self.beta if c is None or self.lanes is None else c / self.lanes

    @property
    def r(self) -> float:
        """Per-bundle miss probability under full withholding, r = β + (1−β)(1−q)."""
        b = self.beta_eff
        return b + (1.0 - b) * (1.0 - self.q)

    @property
    def model(self) -> str:
        """Name of the lane model the exact formulas use."""
        if self.ratchet:
            return "ratchet-binomial" if self.lanes is None else "ratchet-hypergeometric"
        if self.lanes is not None and self.lanes == self.m:
            return "all-lanes"
        pop = "binomial" if self.lanes is None else "hypergeometric"
        return pop if self.addressing == "fresh" else f"fixed-{pop}"

    def with_(self, **changes: Any) -> SednaParams:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kappa": self.kappa,
            "m": self.m,
            "beta": self.beta,
            "q": self.q,
            "lanes": self.lanes,
            "addressing": self.addressing,
            "ratchet": self.ratchet,
            "feedback_slots": self.feedback_slots,
        }


@dataclass(frozen=True)
class EconParams:
    """Values and prices, all in one value unit (e.g. USD).

    value_lead: V, the cartel's MEV from a one-slot information lead [value], >= 0.
    fee:        f, ticket fee paid per bundle redeemed in its addressed slot [value], >= 0.
    tx_value:   v, the transaction's value, the denominator of the MEV cost Γ [value], > 0.
    value_race: V_race, the cartel's value from a within-slot decode race [value], >= 0.
    lead_curve: V(1), V(2), … [value]: the cartel's value of a lead of ℓ slots, non-decreasing;
                V(ℓ) beyond the list is its last entry. None: V(ℓ) = value_lead for every
                ℓ >= 1 (one constant V). `lead_value(ℓ)` reads it.
    """

    value_lead: float
    fee: float = 0.0
    tx_value: float = 1.0
    value_race: float = 0.0
    lead_curve: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("value_lead", "fee", "value_race"):
            x = _as_float(name, getattr(self, name))
            if x < 0.0:  # values and prices are non-negative
                raise ValueError(f"{name} must be >= 0, got {x}")
            _set(self, name, x)
        v = _as_float("tx_value", self.tx_value)
        if v <= 0.0:  # Γ divides by v
            raise ValueError(f"tx_value must be > 0, got {v}")
        _set(self, "tx_value", v)
        if self.lead_curve is not None:
            curve = tuple(_as_float("lead_curve", x) for x in self.lead_curve)
            if not curve or len(curve) > 1000:
                raise ValueError("lead_curve must list 1..1000 values V(1), V(2), ...")
            if curve[0] < 0.0 or any(b < a for a, b in itertools.pairwise(curve)):
                raise ValueError("lead_curve must be non-negative and non-decreasing")
            _set(self, "lead_curve", curve)
            _set(self, "value_lead", curve[0])  # V = V(1)

    def lead_value(self, lead_slots: int) -> float:
        """V(ℓ): the cartel's value of a lead of ℓ slots (V(0) = 0)."""
        if lead_slots <= 0:
            return 0.0
        if self.lead_curve is None:
            return self.value_lead
        return self.lead_curve[min(lead_slots, len(self.lead_curve)) - 1]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dataclasses.asdict(self)
        out["lead_curve"] = None if self.lead_curve is None else list(self.lead_curve)
        return out


def landers_marsh_curve(
    amplitude: float, accrual_rate: float, hazard: float, slots: int
) -> tuple[float, ...]:
    """V(ℓ) = A·k/(k+λ)·(1 − e^{−(k+λ)ℓ}), ℓ = 1..slots: MEV accrued by delaying a
    transaction ℓ slots with opportunity amplitude A, accrual rate k and pre-emption hazard
    λ per slot (Landers & Marsh, arXiv 2511.13080; shared/reference/sedna.md §2.14)."""
    a = _as_float("amplitude", amplitude)
    k = _as_float("accrual_rate", accrual_rate)
    lam = _as_float("hazard", hazard)
    if a < 0 or k <= 0 or lam < 0:
        raise ValueError("need amplitude >= 0, accrual_rate > 0 and hazard >= 0")
    n = _as_int("slots", slots, 1)
    scale = a * k / (k + lam)
    return tuple(scale * -math.expm1(-(k + lam) * ell) for ell in range(1, n + 1))


@dataclass(frozen=True)
class GuideTargets:
    """What a designer asks of the guide.

    eps_delay: largest acceptable delay probability at beta_max, in (0, 1).
    eps_race:  largest acceptable within-slot race probability at beta_max, in (0, 1).
    beta_max:  largest cartel fraction planned for, in [0, 1).
    q:         honest in-slot inclusion probability, in (0, 1].
    m_max:     largest m searched [bundles/slot], >= 1.
    t_max:     largest horizon searched [slots], >= 1.
    kappa:     fix κ (e.g. set by payload and bundle size) or None to search it too.
    """

    eps_delay: float
    eps_race: float
    beta_max: float
    q: float = 1.0
    m_max: int = 32
    t_max: int = 6
    kappa: int | None = None

    def __post_init__(self) -> None:
        _set(
            self, "eps_delay", _in_unit("eps_delay", self.eps_delay, low_open=True, high_open=True)
        )
        _set(self, "eps_race", _in_unit("eps_race", self.eps_race, low_open=True, high_open=True))
        _set(self, "beta_max", _in_unit("beta_max", self.beta_max, low_open=False, high_open=True))
        _set(self, "q", _in_unit("q", self.q, low_open=True, high_open=False))
        _set(self, "m_max", _as_int("m_max", self.m_max, 1))
        _set(self, "t_max", _as_int("t_max", self.t_max, 1))
        if self.m_max > 4096:  # bound on the search grid
            raise ValueError(f"m_max must be <= 4096, got {self.m_max}")
        if self.t_max > 64:  # bound on the search grid
            raise ValueError(f"t_max must be <= 64, got {self.t_max}")
        if self.kappa is not None:
            _set(self, "kappa", _as_int("kappa", self.kappa, 1))


@dataclass(frozen=True)
class BandwidthParams:
    """Naive replication vs coded dissemination (docs/mechanism.md §9).

    kappa:          bundles needed to decode [bundles], >= 1.
    beta:           censoring (cartel) fraction of lanes, in [0, 1).
    q:              honest in-slot inclusion probability, in (0, 1].
    eps:            target one-slot failure probability, in (0, 1).
    eps_code:       code reception overhead (decode from κ(1+eps_code) bundles' worth), >= 0.
    overhead_bytes: per-bundle overhead h (proof, ticket) [bytes], >= 0.
    payload_bytes:  |x| [bytes], > 0.
    """

    kappa: int
    beta: float
    q: float = 1.0
    eps: float = 1e-3
    eps_code: float = 0.0
    overhead_bytes: float = 0.0
    payload_bytes: float = 1024.0

    def __post_init__(self) -> None:
        _set(self, "kappa", _as_int("kappa", self.kappa, 1))
        _set(self, "beta", _in_unit("beta", self.beta, low_open=False, high_open=True))
        _set(self, "q", _in_unit("q", self.q, low_open=True, high_open=False))
        _set(self, "eps", _in_unit("eps", self.eps, low_open=True, high_open=True))
        for name in ("eps_code", "overhead_bytes"):
            x = _as_float(name, getattr(self, name))
            if x < 0.0:
                raise ValueError(f"{name} must be >= 0, got {x}")
            _set(self, name, x)
        size = _as_float("payload_bytes", self.payload_bytes)
        if size <= 0.0:
            raise ValueError(f"payload_bytes must be > 0, got {size}")
        _set(self, "payload_bytes", size)

    @property
    def r(self) -> float:
        """Per-proposer miss probability r = β + (1−β)(1−q)."""
        return self.beta + (1.0 - self.beta) * (1.0 - self.q)


@dataclass(frozen=True)
class Strategy:
    """A cartel strategy (docs/mechanism.md §12).

    none:         include everything (the honest baseline; races still happen).
    withhold-all: withhold every bundle addressed to a cartel lane, every slot.
    threshold:    withhold a slot's holdings only if they are >= threshold (default Δ+1).
    last-slot:    include before slot t*, withhold everything from slot t* on.
    partial:      withhold at most `per_slot` of each slot's holdings.
    pivot-order:  include before t*; in slot t*, if holdings >= threshold (default Δ+1),
                  withhold the cartel's `threshold` last-ordered bundles of the canonical ≺.
    """

    kind: str = "withhold-all"
    threshold: int | None = None
    per_slot: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.kind!r}")
        if self.threshold is not None and self.threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {self.threshold}")
        if self.kind == "partial" and (self.per_slot is None or self.per_slot < 1):
            raise ValueError("partial strategy needs per_slot >= 1")
