"""The lanes' ledger: sender balances, ticket fees, PIVOT-K bounties. Pure and deterministic.

Every node keeps one, driven only by its `DecodeTracker` from the finalized chain, so
honest nodes at the same height hold the same ledger (`digest()`). Amounts are integers
(no rounding anywhere but the documented bounty split).

Accounts:
- **senders** (keyed by public key): a genesis allocation, never created later (there
  are no transfers), so an unfunded key can never pay;
- **escrow** (per payload): the PIVOT-K bounty B locked when a payload's first bundle is
  counted;
- **lanes** (keyed by lane index): what lanes earned (ticket fees and bounties);
- **burned**: escrow of payloads that never executed (rejected, expired, evicted).

Money moves only by these rules (docs/lanes.md, "The ledger"):
1. a redeemed ticket moves its fee (>= the chain's `fee`) from the sender to its lane;
2. a payload's first counted bundle also moves B (`bounty`) from the sender to escrow;
3. an executed payload's escrow goes to the lanes of its κ pivotal bundles: B // κ each,
   and one more unit to each of the first B mod κ in pivot order (so exactly B);
4. a payload that is rejected, expires or is evicted burns its escrow.
A sender that cannot pay a step is refused that step and nothing moves.

Conservation (tested with hypothesis): genesis = Σ balances + Σ escrow + Σ lanes + burned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

MAX_AMOUNT = 2**62  # every balance and total stays below this (checked at genesis)
_DIGEST_DOMAIN = b"sedna/ledger/1\x00"


class LedgerError(ValueError):
    """A ledger was configured wrongly (bad genesis or params)."""


@dataclass(frozen=True, slots=True)
class LedgerParams:
    """Chain-wide prices. `fee`: the least fee a ticket may carry (its own fee is charged);
    `bounty`: B, escrowed per payload and split among its κ pivotal bundles' lanes."""

    fee: int = 1
    bounty: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fee <= MAX_AMOUNT:
            raise LedgerError(f"fee must be in [0, {MAX_AMOUNT}]")
        if not 0 <= self.bounty <= MAX_AMOUNT:
            raise LedgerError(f"bounty must be in [0, {MAX_AMOUNT}]")


@dataclass
class LedgerTotals:
    fees_charged: int = 0
    bounties_paid: int = 0
    escrowed: int = 0  # cumulative escrow taken (paid + burned + still locked)
    burned: int = 0


@dataclass
class Ledger:
    params: LedgerParams
    balances: dict[bytes, int]
    escrow: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)  # cid -> (sender, B)
    lanes: dict[int, int] = field(default_factory=dict)
    totals: LedgerTotals = field(default_factory=LedgerTotals)
    genesis_total: int = 0

    @classmethod
    def from_genesis(cls, params: LedgerParams, genesis: Mapping[bytes, int]) -> Ledger:
        """A ledger whose senders hold `genesis` (public key -> amount)."""
        balances: dict[bytes, int] = {}
        for sender, amount in genesis.items():
            if not isinstance(sender, bytes) or len(sender) != 32:
                raise LedgerError("genesis accounts are 32-byte public keys")
            if not isinstance(amount, int) or not 0 <= amount <= MAX_AMOUNT:
                raise LedgerError(f"genesis amount {amount!r} outside [0, {MAX_AMOUNT}]")
            balances[sender] = amount
        total = sum(balances.values())
        if total > MAX_AMOUNT:
            raise LedgerError(f"genesis total {total} exceeds {MAX_AMOUNT}")
        return cls(params=params, balances=balances, genesis_total=total)

    # ------------------------------------------------------------------ views

    def balance(self, sender: bytes) -> int:
        return self.balances.get(sender, 0)

    def earned(self, lane: int) -> int:
        return self.lanes.get(lane, 0)

    def escrowed_now(self) -> int:
        return sum(amount for _, amount in self.escrow.values())

    def conserved(self) -> bool:
        """genesis = Σ balances + Σ escrow + Σ lanes + burned."""
        held = sum(self.balances.values()) + self.escrowed_now() + sum(self.lanes.values())
        return held + self.totals.burned == self.genesis_total

    def digest(self) -> bytes:
        """SHA-256 of the canonical state (equal on honest nodes at equal heights)."""
        state = (
            self.params.fee,
            self.params.bounty,
            sorted(self.balances.items()),
            sorted((cid, sender, amount) for cid, (sender, amount) in self.escrow.items()),
            sorted(self.lanes.items()),
            self.totals.burned,
        )
        return hashlib.sha256(_DIGEST_DOMAIN + msgspec.msgpack.encode(state)).digest()

    # ------------------------------------------------------------------ moves

    def cost_of(self, fee: int, opens_payload: bool) -> int:
        """What counting one bundle costs its sender: the ticket fee, plus B if it is its
        payload's first counted bundle."""
        return fee + (self.params.bounty if opens_payload else 0)

    def can_pay(self, sender: bytes, amount: int) -> bool:
        return self.balance(sender) >= amount

    def charge_ticket(self, sender: bytes, lane: int, fee: int) -> bool:
        """Rule 1: move `fee` from the sender to the lane. False (nothing moves) if it
        cannot pay."""
        if fee < 0 or not self.can_pay(sender, fee):
            return False
        self.balances[sender] -= fee
        self.lanes[lane] = self.lanes.get(lane, 0) + fee
        self.totals.fees_charged += fee
        return True

    def open_escrow(self, cid: bytes, sender: bytes) -> bool:
        """Rule 2: lock B for payload `cid`. False (nothing moves) if it cannot pay."""
        bounty = self.params.bounty
        if cid in self.escrow:
            raise LedgerError("payload escrow opened twice")
        if not self.can_pay(sender, bounty):
            return False
        self.balances[sender] -= bounty
        self.escrow[cid] = (sender, bounty)
        self.totals.escrowed += bounty
        return True

    def pay_bounty(self, cid: bytes, pivotal_lanes: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """Rule 3: split the escrow of an executed payload over its pivotal bundles' lanes
        (in pivot order). Returns (lane, amount) per pivotal bundle."""
        _sender, amount = self.escrow.pop(cid, (b"", 0))
        if not pivotal_lanes:
            self.totals.burned += amount  # cannot happen for an executed payload
            return ()
        share, extra = divmod(amount, len(pivotal_lanes))
        payouts = []
        for position, lane in enumerate(pivotal_lanes):
            paid = share + (1 if position < extra else 0)
            self.lanes[lane] = self.lanes.get(lane, 0) + paid
            payouts.append((lane, paid))
        self.totals.bounties_paid += amount
        return tuple(payouts)

    def burn_escrow(self, cid: bytes) -> int:
        """Rule 4: the payload never executed; its escrow is destroyed."""
        _sender, amount = self.escrow.pop(cid, (b"", 0))
        self.totals.burned += amount
        return amount


class FundsView:
    """What a lane checks at admission, from its node's ledger at the finalized height
    (`LaneProposer(funds=...)`): a best-effort pre-check; the tracker's rule is final."""

    def __init__(self, ledger: Ledger, knows_payload):  # knows_payload: cid -> bool
        self.ledger = ledger
        self._knows = knows_payload

    @property
    def min_fee(self) -> int:
        return self.ledger.params.fee

    def spendable(self, sender: bytes) -> int:
        return self.ledger.balance(sender)

    def opening_cost(self, cid: bytes) -> int:
        """B if no counted bundle of `cid` is known yet (its first one opens the escrow)."""
        return 0 if self._knows(cid) else self.ledger.params.bounty
