"""Attacking senders for netsim's lanes (`[[sender_attack]]`, issue 10).

Each table is one sender entity outside the validator set, with its own key funded at
genesis like every sender (`[ledger] sender_balance`), drawing everything from the
scenario's workload stream. `LaneSim` asks it for its submissions of every slot it plans
and feeds it the chain's outcomes, exactly as it does for honest senders.

- duplicate_across_lanes: from `from_slot` on, every slot gives `count` fresh bundle
  indices of one payload to *two* lanes each (same bundle, same slot). Before the
  inclusion rule a leader holding both copies proposed a block every voter refused. A
  decoded payload is replaced by a new one.
- junk_commitments: from `from_slot` on, every slot commits `count` new junk payloads and
  sends one bundle of each to a lane: commitments that never decode and sit in every
  tracker's pending table (with a ledger: each one escrows the bounty, then burns it).
- replay_after_decide: sends one payload honestly from `from_slot`; once the chain
  decided it, re-sends κ of its bundles with fresh tickets `count` times, every
  `REPLAY_INTERVAL_SLOTS` slots. Its commitment's lifetime is short
  (`replay_lifetime_slots`), so some replays land before its expiry (trackers ignore them
  as late) and some after (every lane refuses them as `payload_expired`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from consensus.crypto import KeyPair, SignatureScheme
from consensus.lanes.encoding import EncodedPayload, encode_payload
from consensus.lanes.merkle import MerkleTree, bundle_leaf
from consensus.lanes.params import LaneParams, PayloadLayout
from consensus.lanes.sender import AddressPolicy, Sender, SenderConfig
from consensus.lanes.tickets import make_ticket, sign_tickets
from consensus.lanes.tracker import BlockOutcome
from consensus.lanes.wire import Bundle, LaneEntry, PayloadCommitment, Ticket, commitment_id

REPLAY_INTERVAL_SLOTS = 4


@dataclass(frozen=True, slots=True)
class AttackContext:
    """What every attacking sender needs from the run."""

    params: LaneParams
    layout: PayloadLayout
    lanes: int
    scheme: SignatureScheme
    fee: int
    rng: random.Random  # the workload stream
    bundles_per_slot: int
    policy: str
    lookahead_slots: int
    t_star: int


@dataclass
class AttackingSender:
    """Base: one `[[sender_attack]]` entity."""

    label: str
    kind: str
    from_slot: int
    count: int
    key: KeyPair
    context: AttackContext
    bundles_sent: int = 0
    payload_status: dict[bytes, str] = field(default_factory=dict)  # cid -> status

    def plan(self, slot: int) -> list[tuple[int, LaneEntry]]:
        raise NotImplementedError

    def on_outcome(self, outcome: BlockOutcome) -> None:
        for event in outcome.payloads:
            if event.commitment_id in self.payload_status:
                self.payload_status[event.commitment_id] = event.status

    def _sign(self, planned: list[tuple[int, Bundle, Ticket]]) -> list[tuple[int, LaneEntry]]:
        tickets = [ticket for _, _, ticket in planned]
        signed = sign_tickets(self.context.scheme, self.key, tickets, 1) if tickets else []
        self.bundles_sent += len(planned)
        return [
            (lane, LaneEntry(bundle, st))
            for (lane, bundle, _), st in zip(planned, signed, strict=True)
        ]

    def _encode(self, first_slot: int, lifetime: int) -> EncodedPayload:
        rng = self.context.rng
        payload = rng.randbytes(self.context.layout.payload_len)
        encoded = encode_payload(
            self.context.params,
            payload,
            rng.randbytes(32),
            self.key.public,
            expiry_slot=first_slot + lifetime,
        )
        self.payload_status[encoded.commitment_id] = "pending"
        return encoded

    def report(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for status in self.payload_status.values():
            statuses[status] = statuses.get(status, 0) + 1
        return {
            "kind": self.kind,
            "payloads": len(self.payload_status),
            "bundles_sent": self.bundles_sent,
            "payload_status": dict(sorted(statuses.items())),
        }


@dataclass
class DuplicateAcrossLanes(AttackingSender):
    current: EncodedPayload | None = None
    next_index: int = 0

    def plan(self, slot: int) -> list[tuple[int, LaneEntry]]:
        if slot < self.from_slot:
            return []
        context = self.context
        cap = context.layout.cap_bundles
        current = self.current
        if (
            current is None
            or self.payload_status[current.commitment_id] != "pending"
            or self.next_index + self.count > cap
        ):
            current = self.current = self._encode(slot, context.params.max_lifetime_slots)
            self.next_index = 0
        planned: list[tuple[int, Bundle, Ticket]] = []
        for _ in range(self.count):
            index = self.next_index
            self.next_index += 1
            for lane in context.rng.sample(range(context.lanes), 2):  # one bundle, two lanes
                ticket = make_ticket(current.commitment_id, lane, slot, index, context.fee)
                planned.append((lane, current.bundles[index], ticket))
        return self._sign(planned)


@dataclass
class JunkCommitments(AttackingSender):
    def _junk(self, slot: int) -> Bundle:
        """A commitment over random leaves, with one provable bundle of random symbols."""
        context = self.context
        layout, rng = context.layout, context.rng
        s_b, k = layout.symbols_per_bundle, layout.source_symbols
        symbols = tuple(rng.randbytes(layout.symbol_size_bytes) for _ in range(s_b))
        leaves = [bundle_leaf(0, symbols, k)]
        leaves += [rng.randbytes(32) for _ in range(layout.cap_bundles - 1)]
        tree = MerkleTree(leaves)
        commitment = PayloadCommitment(
            codec_id=context.params.codec_id,  # type: ignore[arg-type]
            sender=self.key.public,
            payload_len=layout.payload_len,
            symbol_size_bytes=layout.symbol_size_bytes,
            symbols_per_bundle=s_b,
            decode_margin_symbols=layout.decode_margin_symbols,
            kappa=layout.kappa,
            source_symbols=k,
            cap_bundles=layout.cap_bundles,
            merkle_root=tree.root,
            expiry_slot=slot + context.params.max_lifetime_slots,
        )
        self.payload_status[commitment_id(commitment)] = "pending"
        return Bundle(commitment, 0, symbols, tree.proof(0))

    def plan(self, slot: int) -> list[tuple[int, LaneEntry]]:
        if slot < self.from_slot:
            return []
        planned: list[tuple[int, Bundle, Ticket]] = []
        for _ in range(self.count):
            bundle = self._junk(slot)
            lane = self.context.rng.randrange(self.context.lanes)
            cid = commitment_id(bundle.commitment)
            planned.append((lane, bundle, make_ticket(cid, lane, slot, 0, self.context.fee)))
        return self._sign(planned)


@dataclass
class ReplayAfterDecide(AttackingSender):
    sender: Sender | None = None
    encoded: EncodedPayload | None = None
    replays: int = 0
    next_replay_slot: int = 0
    replay_slots: list[int] = field(default_factory=list)

    @property
    def replay_lifetime_slots(self) -> int:
        """Decided within ~t* + finality lag, seen by the attacker lookahead slots later:
        about three replays fall before expiry, the rest after."""
        return self.context.t_star + 2 * self.context.lookahead_slots + 8

    def plan(self, slot: int) -> list[tuple[int, LaneEntry]]:
        if slot < self.from_slot:
            return []
        context = self.context
        if self.sender is None:
            config = SenderConfig(
                lanes=context.lanes,
                bundles_per_slot=context.bundles_per_slot,
                policy=AddressPolicy(context.policy),
                fee=context.fee,
                seed=context.rng.randbytes(16),
                lifetime_slots=self.replay_lifetime_slots,
            )
            self.sender = Sender(self.key, context.scheme, context.params, config)
            payload = context.rng.randbytes(context.layout.payload_len)
            cid = self.sender.submit(payload, context.rng.randbytes(32), slot)
            self.encoded = self.sender.payloads[cid].encoded
            self.payload_status[cid] = "pending"
        assert self.encoded is not None
        cid = self.encoded.commitment_id
        if self.payload_status[cid] == "pending":
            plan = self.sender.plan_slot(slot)
            self.bundles_sent += len(plan)
            return [(submission.lane, submission.entry) for submission in plan]
        if self.replays >= self.count or slot < self.next_replay_slot:
            return []
        self.replays += 1
        self.next_replay_slot = slot + REPLAY_INTERVAL_SLOTS
        self.replay_slots.append(slot)
        kappa, cap = context.layout.kappa, context.layout.cap_bundles
        lanes = context.rng.sample(range(context.lanes), min(kappa, context.lanes))
        planned = []
        for n, lane in enumerate(lanes):
            index = (self.replays * kappa + n) % cap
            ticket = make_ticket(cid, lane, slot, index, context.fee)
            planned.append((lane, self.encoded.bundles[index], ticket))
        return self._sign(planned)

    def on_outcome(self, outcome: BlockOutcome) -> None:
        super().on_outcome(outcome)
        if self.sender is not None:  # no ratchet: only the decision matters (both modes)
            self.sender.on_decided(event.commitment_id for event in outcome.payloads)

    def report(self) -> dict[str, Any]:
        report = super().report()
        expiry = self.encoded.commitment.expiry_slot if self.encoded is not None else None
        report.update({"replay_slots": self.replay_slots, "expiry_slot": expiry})
        return report


ATTACKS = {
    "duplicate_across_lanes": DuplicateAcrossLanes,
    "junk_commitments": JunkCommitments,
    "replay_after_decide": ReplayAfterDecide,
}
