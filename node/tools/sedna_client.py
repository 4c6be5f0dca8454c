"""Sedna sender client: encode payloads, address bundles to lanes per slot, re-send until decoded.

A payload is encoded once (`consensus.lanes.encoding.encode_payloads`: package transform
with a fresh 32-byte key from `os.urandom`, RaptorQ repair stream, Merkle commitment;
payloads submitted together share one batched RaptorQ call);
its id is the commitment id. Then, in *attempts*:

1. **Plan.** Missing bundles B (κ + `extra_bundles` on the first attempt) are addressed
   from the target slot on: `bundles_per_slot` lanes per slot (m; 0 = every lane), chosen
   by the policy among lanes not excluded for this payload, one fresh bundle index per
   (lane, slot), each with a ticket for exactly that lane and slot. The tickets planned
   in one step (across payloads) are signed in batches of `ticket_batch` with one
   signature each (`consensus.lanes.tickets.sign_ticket_batch`). The target slot is the highest lane `open_slot` seen (every /bundle answer
   carries it) plus `slot_lead`: lanes seal a slot two heights before it is proposed,
   so the lead keeps the bundle ahead of the seal while it is on the wire.
2. **Send.** Bundles are batched per lane into `POST /bundle` requests (one in flight per
   node). A bundle the lane rejects (e.g. `expired_ticket`) or that cannot be delivered
   (node down) is re-planned at once on another lane; that lane is excluded for the
   payload unless the refusal was only about timing.
3. **Watch.** The client polls `GET /executions` of one live node (its "home") and marks
   payloads decided. When every slot of an attempt is at or below the home node's tracker
   height and the payload is still undecided, it asks `GET /payload/<id>` which bundles
   were finalized and re-sends κ + extra − finalized *fresh* bundles (never an index that
   was already sent), up to `max_attempts` or the committed stream's cap. With `ratchet`
   (default on, sedna.md §2.9) every lane that accepted a bundle of the finished attempt
   which was not finalized in its slot (an unredeemed ticket) is excluded for this
   payload from then on (all lanes excluded: the exclusions are cleared).

Policies (`SednaPolicy.lanes`): `fresh` (lanes drawn anew per slot by SHA-256 of seed,
payload id, attempt, slot and lane), `fixed` (one per-payload lane order), `all`
(every non-excluded lane each slot). Everything is bounded: active payloads
(`max_active`), bundles per request, one request in flight per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from consensus.crypto import ED25519, KeyPair, SignatureScheme
from consensus.lanes.encoding import EncodedPayload, encode_payloads
from consensus.lanes.params import LaneParams
from consensus.lanes.tickets import MAX_TICKETS_PER_BATCH, make_ticket, sign_tickets
from consensus.lanes.wire import Bundle, LaneEntry, Ticket, encode_lane_entry
from node.lanes_node import NODE_LANE_PARAMS
from node.rpc import MAX_BUNDLES_PER_REQUEST, HttpClient, encode_binary_txs

POLICIES = ("fresh", "fixed", "all")
TIMING_REASONS = frozenset({"expired_ticket", "wrong_slot", "lane_full"})
MAX_SLOT_LEAD = 40  # below the lanes' MAX_FUTURE_SLOTS (48)
MAX_LEAD_BONUS = 32.0  # slots added to the RTT-based lead at most
MIN_LANDING_MARGIN_SLOTS = 0  # a ticket should land in its slot or earlier
LEAD_DECAY_SLOTS = 0.25  # per answered batch that landed with room to spare
MAX_REFUSALS_PER_LANE = 8  # a payload is abandoned after 8·N refused or undelivered bundles
DOWN_BACKOFF_S = 0.5
MAX_ACTIVE_PAYLOADS = 50_000
MAX_STATUS_QUERIES = 32  # concurrent GET /payload per step (bounded)


@dataclass(frozen=True)
class SednaPolicy:
    lanes: str = "fresh"
    bundles_per_slot: int = 0  # m; 0 = every lane
    extra_bundles: int = 0  # beyond the missing bundles, per attempt
    slot_lead: int = 1
    max_attempts: int = 8
    ratchet: bool = True
    fee: int = 1
    ticket_batch: int = 64  # tickets per signature (one batch per send step)
    seed: bytes = b"sedna/client/1"

    def __post_init__(self) -> None:
        if self.lanes not in POLICIES:
            raise ValueError(f"unknown lane policy {self.lanes!r}; choose {', '.join(POLICIES)}")
        if self.bundles_per_slot < 0 or self.extra_bundles < 0 or self.slot_lead < 0:
            raise ValueError("bundles_per_slot, extra_bundles and slot_lead must be >= 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 1 <= self.ticket_batch <= MAX_TICKETS_PER_BATCH:
            raise ValueError(f"ticket_batch must be in 1..{MAX_TICKETS_PER_BATCH}")


@dataclass
class OutgoingPayload:
    encoded: EncodedPayload | None  # dropped once decided (its symbols are large)
    kappa: int
    submitted_ns: int
    first_send_ns: int | None = None
    first_slot: int | None = None  # the slot of its first ticket (of its first attempt)
    next_bundle: int = 0
    attempts: int = 0
    missing: int = 0  # bundles to plan in the next step
    inflight: int = 0  # bundles in requests not answered yet
    accepted: list[tuple[int, int, int]] = field(default_factory=list)  # (slot, lane, bundle)
    # the first attempt's admitted bundles (kept through re-sends: the slots the model counts)
    first_accepted: list[tuple[int, int, int]] = field(default_factory=list)
    last_slot: int = 0  # highest slot addressed in the current attempt
    excluded: set[int] = field(default_factory=set)
    reusable: list[int] = field(default_factory=list)  # refused indices, admitted nowhere
    refusals: int = 0
    querying: bool = False
    status: str = "sending"  # sending | decoded | rejected | expired | abandoned
    decided_height: int | None = None


@dataclass
class ClientStats:
    offered: int = 0
    refused_full: int = 0
    bundles_sent: int = 0
    ticket_batches: int = 0  # signatures made (one per batch of tickets)
    bundles_accepted: int = 0
    bundles_bytes: int = 0
    resends: int = 0
    ratchet_exclusions: int = 0
    undeliverable: int = 0
    requests: int = 0
    errors: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    decided: Counter[str] = field(default_factory=Counter)


class SednaClient:
    """One sender key, many payloads, N lanes (node index = lane index)."""

    def __init__(
        self,
        targets: Sequence[tuple[int, str, int]],
        *,
        key: KeyPair | None = None,
        scheme: SignatureScheme = ED25519,
        params: LaneParams = NODE_LANE_PARAMS,
        policy: SednaPolicy | None = None,
        rpc_timeout_s: float = 2.0,
        is_up: Callable[[int], bool] | None = None,
        max_active: int = MAX_ACTIVE_PAYLOADS,
    ):
        if not targets:
            raise ValueError("the Sedna client needs at least one node")
        self.targets = {i: (host, port) for i, host, port in targets}
        self.lanes = sorted(self.targets)
        self.key = key or KeyPair.from_seed(os.urandom(32))
        self.scheme = scheme
        self.params = params
        self.policy = policy or SednaPolicy()
        self.fee = self.policy.fee  # raised to the chain's least fee once a node names it
        self.is_up = is_up or (lambda index: True)
        self.max_active = max_active
        self.stats = ClientStats()
        self.payloads: dict[bytes, OutgoingPayload] = {}  # every payload of the run
        self._active: dict[bytes, OutgoingPayload] = {}  # status "sending" (bounded)
        self.open_slot = 1
        self._slot_sample: tuple[float, int] | None = None  # (time, open slot) of the window
        self._slot_rate = 0.0  # slots per second (EWMA)
        self._rtt_s = 0.02  # /bundle round trip (EWMA)
        self._lead_bonus = 0.0  # slots: raised by late landings, lowered by early ones
        self.tracker_height = 0
        self._next_event_height = 1
        self._queues: dict[int, list[tuple[bytes, int, int, bytes]]] = {i: [] for i in self.lanes}
        self._clients = {i: HttpClient(h, p, rpc_timeout_s) for i, (h, p) in self.targets.items()}
        self._query_client: dict[int, HttpClient] = {
            i: HttpClient(h, p, rpc_timeout_s) for i, (h, p) in self.targets.items()
        }
        self._query_lock = {i: asyncio.Lock() for i in self.targets}
        self._busy: set[int] = set()
        self._down_until: dict[int, float] = {}
        self._home: int = self.lanes[0]
        self._polling = False
        self._synced = False
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ submission

    def active(self) -> int:
        return len(self._active)

    def encode(self, payload: bytes) -> EncodedPayload:
        """Encode and commit a payload under this client's key (fresh AONT key). Its
        commitment expires `max_lifetime_slots` after the lanes' open slot as known now
        (tickets are never addressed below it): past that no lane admits its bundles."""
        return self.encode_many([payload])[0]

    def encode_many(self, payloads: Sequence[bytes]) -> list[EncodedPayload]:
        """`[encode(p) for p in payloads]` with the codec work batched (one RaptorQ call
        per batch of equal-length payloads: `encoding.encode_payloads`); each payload has
        its own fresh AONT key."""
        expiry = self.open_slot + self.params.max_lifetime_slots
        public = self.key.public
        return encode_payloads(
            self.params, [(payload, os.urandom(32), public, expiry) for payload in payloads]
        )

    def submit(self, payload: bytes, now_ns: int | None = None) -> bytes | None:
        """Encode and queue a payload; its id, or None when `max_active` are in flight."""
        if self.active() >= self.max_active:  # rule: bounded in-flight payloads
            self.stats.refused_full += 1
            return None
        return self.submit_encoded(self.encode(payload), now_ns)

    def submit_many(self, payloads: Sequence[bytes], now_ns: int | None = None) -> int:
        """Encode (batched) and queue as many of `payloads` as `max_active` leaves room
        for, in order; how many were queued (the rest are refused, as by `submit`)."""
        room = max(0, self.max_active - self.active())
        self.stats.refused_full += max(0, len(payloads) - room)
        taken = payloads[:room]
        for encoded in self.encode_many(taken) if taken else ():
            self.submit_encoded(encoded, now_ns)
        return len(taken)

    def submit_encoded(self, encoded: EncodedPayload, now_ns: int | None = None) -> bytes | None:
        """Queue an already encoded payload (see `encode`); its id, or None when full."""
        if self.active() >= self.max_active:  # rule: bounded in-flight payloads
            self.stats.refused_full += 1
            return None
        if encoded.commitment_id in self.payloads:
            raise ValueError("payload already submitted")
        outgoing = OutgoingPayload(encoded, encoded.layout.kappa, now_ns or time.time_ns())
        outgoing.missing = outgoing.kappa + self.policy.extra_bundles
        outgoing.attempts = 1
        self.payloads[encoded.commitment_id] = outgoing
        self._active[encoded.commitment_id] = outgoing
        self.stats.offered += 1
        return encoded.commitment_id

    def undecided(self) -> int:
        return self.active()

    # ------------------------------------------------------------------ planning

    def _live(self, lane: int, now: float) -> bool:
        return self._down_until.get(lane, 0.0) <= now and self.is_up(lane)

    def _lane_order(self, cid: bytes, attempt: int, slot: int) -> list[int]:
        if self.policy.lanes == "fixed":
            salt = self.policy.seed + cid
        else:
            salt = self.policy.seed + cid + attempt.to_bytes(4, "big") + slot.to_bytes(8, "big")
        return sorted(
            self.lanes, key=lambda lane: hashlib.sha256(salt + lane.to_bytes(4, "big")).digest()
        )

    def _plan(
        self,
        cid: bytes,
        p: OutgoingPayload,
        now: float,
        planned: list[tuple[int, Bundle, Ticket]],
    ) -> None:
        """Address `p.missing` fresh bundles from the target slot on (appended to
        `planned` as (lane, bundle, unsigned ticket))."""
        encoded = p.encoded
        assert encoded is not None  # only undecided payloads are planned
        cap = encoded.layout.cap_bundles
        live = [lane for lane in self.lanes if self._live(lane, now)]
        if not live:
            return
        allowed = [lane for lane in live if lane not in p.excluded]
        if not allowed:  # every live lane failed this payload once: start over
            p.excluded.clear()
            allowed = live
        per_slot = self.policy.bundles_per_slot or len(allowed)
        slot = max(self.open_slot + self.slot_lead(), p.last_slot + 1)
        if p.first_send_ns is None:
            p.first_send_ns = time.time_ns()
        expiry = encoded.commitment.expiry_slot
        # Bound: at most `missing` bundles, never beyond the committed stream, and never
        # for a slot after the commitment's expiry (no lane would admit the ticket).
        while p.missing > 0 and (p.reusable or p.next_bundle < cap) and slot <= expiry:
            order = [lane for lane in self._lane_order(cid, p.attempts, slot) if lane in allowed]
            for lane in order[: min(per_slot, p.missing)]:
                if p.reusable:
                    index = p.reusable.pop()
                elif p.next_bundle < cap:
                    index = p.next_bundle
                    p.next_bundle += 1
                else:
                    break
                ticket = make_ticket(cid, lane, slot, index, self.fee)
                planned.append((lane, encoded.bundles[index], ticket))
                if p.first_slot is None:
                    p.first_slot = slot  # its first ticket slot (resends keep it)
                p.missing -= 1
                p.inflight += 1
            p.last_slot = slot
            slot += 1
        exhausted = (p.next_bundle >= cap and not p.reusable) or slot > expiry
        if p.missing > 0 and exhausted and p.inflight == 0 and not p.accepted:
            self._finish(cid, p, "abandoned", None)  # stream exhausted or commitment expired

    def _sign_and_queue(self, planned: Sequence[tuple[int, Bundle, Ticket]]) -> None:
        """One signature per `ticket_batch` planned tickets, then queue each bundle."""
        size = self.policy.ticket_batch
        signed = sign_tickets(self.scheme, self.key, [t for _, _, t in planned], size)
        self.stats.ticket_batches += -(-len(planned) // size)
        for (lane, bundle, ticket), signed_ticket in zip(planned, signed, strict=True):
            entry = encode_lane_entry(LaneEntry(bundle, signed_ticket))
            self._queues[lane].append(
                (ticket.commitment_id, ticket.slot, ticket.bundle_index, entry)
            )

    # ------------------------------------------------------------------ one step

    async def step(self) -> None:
        """Plan, send queued bundles, poll decisions, start re-sends. Never blocks long."""
        if not self._synced:
            await self.sync_slots()
            if not self._synced:  # no node answered: nothing could be sent, and the
                return  # chain id to sign for is not known yet
        now = time.monotonic()
        planned: list[tuple[int, Bundle, Ticket]] = []
        for cid, p in list(self._active.items()):
            if p.missing > 0 and not p.querying:
                self._plan(cid, p, now, planned)
        self._sign_and_queue(planned)
        for lane, queue in self._queues.items():
            if not queue or lane in self._busy:
                continue
            if not self._live(lane, now):
                self._requeue(lane, queue, "undeliverable")
                queue.clear()
                continue
            batch = queue[:MAX_BUNDLES_PER_REQUEST]
            del queue[: len(batch)]
            self._spawn(self._send(lane, batch))
        if not self._polling:
            self._polling = True
            self._spawn(self._poll())
        self._start_resends()

    def _observe_slot(self, slot: int) -> None:
        """Track the lanes' open slot and how fast it moves (for the slot lead)."""
        now = time.monotonic()
        self.open_slot = max(self.open_slot, slot)
        if self._slot_sample is None:
            self._slot_sample = (now, self.open_slot)
            return
        then, before = self._slot_sample
        if now - then >= 0.25:
            sample = (self.open_slot - before) / (now - then)
            self._slot_rate = (
                sample if self._slot_rate == 0 else 0.7 * self._slot_rate + 0.3 * sample
            )
            self._slot_sample = (now, self.open_slot)

    def slot_lead(self) -> int:
        """Slots ahead of the open slot to address: at least the policy's lead, and enough
        to cover twice the expected delivery time at the measured slot rate."""
        needed = math.ceil(self._slot_rate * self._rtt_s * 2 + self._lead_bonus) + 1
        return max(self.policy.slot_lead, min(MAX_SLOT_LEAD, needed))

    def _adapt_lead(self, margin_slots: int) -> None:
        """`margin_slots`: how many slots before its own the earliest ticket of an answered
        batch landed (negative: after its slot was sealed). Below MIN_LANDING_MARGIN_SLOTS
        the lead grows at once by the shortfall; with room to spare it shrinks slowly
        (fast up, slow down: few expired tickets without addressing needlessly far ahead)."""
        if margin_slots < MIN_LANDING_MARGIN_SLOTS:
            shortfall = MIN_LANDING_MARGIN_SLOTS - margin_slots
            self._lead_bonus = min(MAX_LEAD_BONUS, self._lead_bonus + shortfall)
        elif margin_slots > MIN_LANDING_MARGIN_SLOTS + 1:
            self._lead_bonus = max(0.0, self._lead_bonus - LEAD_DECAY_SLOTS)

    async def sync_slots(self) -> None:
        """Learn the chain id, the lanes' open slot and the tracker height from every live
        node. Tickets are signed for the chain the nodes name (`chain_id` in /status)."""
        for lane in self.lanes:
            answer = await self._query(lane, "/status")
            if answer is None:
                continue
            status, data = answer
            if status == 200:
                self._learn_chain(data.get("chain_id"))
                prices = data.get("ledger")
                if isinstance(prices, dict) and isinstance(prices.get("fee"), int):
                    self.fee = max(self.policy.fee, prices["fee"])  # rule: fee >= the chain's
                self._observe_slot(int(data.get("lane_open_slot", 0)))
                self._synced = True

    def _learn_chain(self, chain_id: object) -> None:
        """Sign for the chain the network runs (a node without the key: the default)."""
        if not isinstance(chain_id, str) or chain_id == self.scheme.chain_id:
            return
        try:
            self.scheme = self.scheme.for_chain(chain_id)
        except ValueError:  # not a valid chain id: keep signing for the configured one
            self.stats.errors += 1

    async def _query(self, node: int, path: str) -> tuple[int, dict] | None:
        """GET a JSON path (one query at a time per node); None when the node failed."""
        async with self._query_lock[node]:
            try:
                status, raw = await self._query_client[node].request("GET", path)
                return status, json.loads(raw) if raw else {}
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                self._down_until[node] = time.monotonic() + DOWN_BACKOFF_S
                return None

    def _spawn(self, coroutine) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _requeue(self, lane: int, batch: Sequence[tuple[bytes, int, int, bytes]], why: str) -> None:
        """Bundles that did not reach `lane`: re-plan them. A bundle the lane explicitly
        refused was admitted nowhere, so its index is reused; an undeliverable one may
        have been admitted (lost answer), so a fresh index replaces it. A lane is excluded
        for the payload unless the refusal was only about timing."""
        for cid, _slot, index, _data in batch:
            p = self.payloads.get(cid)
            if p is None:
                continue
            p.inflight -= 1
            if why == "undeliverable":
                self.stats.undeliverable += 1
            if p.status != "sending":
                continue
            p.refusals += 1
            if p.refusals > MAX_REFUSALS_PER_LANE * len(self.lanes):  # bound: give up
                if p.inflight == 0:
                    self._finish(cid, p, "abandoned", None)
                continue
            p.missing += 1
            if why in TIMING_REASONS or why not in ("undeliverable", "error"):
                p.reusable.append(index)
            if why not in TIMING_REASONS:
                p.excluded.add(lane)

    async def _send(self, lane: int, batch: list[tuple[bytes, int, int, bytes]]) -> None:
        self._busy.add(lane)
        started = time.monotonic()
        try:
            body = encode_binary_txs([item[3] for item in batch])
            try:
                status, raw = await self._clients[lane].request(
                    "POST", "/bundle", body, "application/octet-stream"
                )
                answer = json.loads(raw) if raw else {}
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                self.stats.errors += 1
                self._down_until[lane] = time.monotonic() + DOWN_BACKOFF_S
                self._requeue(lane, batch, "undeliverable")
                return
            self.stats.requests += 1
            results = answer.get("results")
            if status not in (200, 400) or not isinstance(results, list):
                self.stats.errors += 1
                self._requeue(lane, batch, "error")
                return
            open_now = int(answer.get("open_slot", 0))
            self._observe_slot(open_now)
            self._rtt_s = 0.8 * self._rtt_s + 0.2 * (time.monotonic() - started)
            self._adapt_lead(min(item[1] for item in batch) - open_now)
            now_ns = time.time_ns()
            for (cid, slot, index, data), result in zip(batch, results, strict=False):
                self.stats.bundles_sent += 1
                self.stats.bundles_bytes += len(data)
                p = self.payloads.get(cid)
                if p is None:
                    continue
                if result is None:
                    self.stats.bundles_accepted += 1
                    p.inflight -= 1
                    p.accepted.append((slot, lane, index))
                    if p.attempts == 1:  # bounded: one attempt's bundles
                        p.first_accepted.append((slot, lane, index))
                    if p.first_send_ns is None:
                        p.first_send_ns = now_ns
                    continue
                self.stats.rejected[str(result)] += 1
                self._requeue(lane, [(cid, slot, index, data)], str(result))
        finally:
            self._busy.discard(lane)

    # ------------------------------------------------------------------ decisions

    async def _poll(self) -> None:
        """Read decided payloads from the home node (the next live node on failure)."""
        try:
            for _ in range(len(self.lanes)):
                home = self._home
                if not self._live(home, time.monotonic()):
                    self._home = self.lanes[(self.lanes.index(home) + 1) % len(self.lanes)]
                    continue
                first = self._next_event_height
                answer = await self._query(home, f"/executions?from={first}&to={first + 999}")
                if answer is None:
                    self._home = self.lanes[(self.lanes.index(home) + 1) % len(self.lanes)]
                    continue
                status, data = answer
                if status != 200:
                    return
                for event in data.get("events", []):
                    self._decided(bytes.fromhex(event["id"]), event["status"], event["height"])
                self._next_event_height = max(self._next_event_height, int(data["next"]))
                # certified lanes: lane blocks are cut a few heights after their slot, so
                # the node says up to which slot redemptions are known (`settled_slot`)
                settled = int(data.get("settled_slot", data["tracker_height"]))
                self.tracker_height = max(self.tracker_height, settled)
                self._observe_slot(int(data.get("open_slot", 0)))
                return
        finally:
            self._polling = False

    def _decided(self, cid: bytes, status: str, height: int) -> None:
        p = self._active.get(cid)
        if p is not None:
            self._finish(cid, p, "decoded" if status == "executed" else status, height)

    def _finish(self, cid: bytes, p: OutgoingPayload, status: str, height: int | None) -> None:
        p.status = status
        p.decided_height = height
        p.encoded = None
        self._active.pop(cid, None)
        self.stats.decided[status] += 1

    def _start_resends(self) -> None:
        """Undecided payloads whose whole attempt is at or below the tracker height."""
        started = 0
        for cid, p in self._active.items():
            if started >= MAX_STATUS_QUERIES:
                break
            if p.querying or p.missing or p.inflight:
                continue
            if not p.accepted or p.last_slot > self.tracker_height:
                continue
            p.querying = True
            started += 1
            self._spawn(self._resend(cid, p))

    async def _resend(self, cid: bytes, p: OutgoingPayload) -> None:
        home = self._home
        try:
            answer = await self._query(home, f"/payload/{cid.hex()}")
            if answer is None:
                return
            status, data = answer
            if status not in (200, 404) or p.status != "sending":
                return
            state = data.get("state")
            if state in ("decoded", "rejected", "expired"):
                self._decided(cid, "executed" if state == "decoded" else state, data["height"])
                return
            # A 404 (payload unknown there) carries no height: the poll's height applies.
            settled = data.get("settled_slot", data.get("tracker_height", self.tracker_height))
            if int(settled) < p.last_slot:
                return  # that node's tracker is behind: ask again later
            finalized = int(data.get("finalized_bundles", 0)) if state == "pending" else 0
            if self.policy.ratchet:  # rule: a lane holding an unredeemed ticket is excluded
                redeemed = set(data.get("finalized_indices", [])) if state == "pending" else set()
                before = len(p.excluded)
                p.excluded.update(lane for _, lane, index in p.accepted if index not in redeemed)
                self.stats.ratchet_exclusions += len(p.excluded) - before
            if p.attempts >= self.policy.max_attempts:
                self._finish(cid, p, "abandoned", None)
                return
            p.attempts += 1
            self.stats.resends += 1
            p.accepted.clear()
            p.missing = max(1, p.kappa + self.policy.extra_bundles - finalized)
        finally:
            p.querying = False

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        for client in (*self._clients.values(), *self._query_client.values()):
            with contextlib.suppress(Exception):
                await client.close()
