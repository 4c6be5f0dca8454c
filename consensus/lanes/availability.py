"""The availability layer of certified lanes: a sans-IO state machine, one per validator.

docs/lanes.md, "Certified lanes". `AvailabilityLayer.handle(event) -> list[command]`,
like the consensus core: no clock, no randomness, no I/O. Time enters only as consensus
heights (`HeightReached`), storage only through commands, and the driver (netsim or the
node) executes the commands in order. Rules, by name (each enforced where it is named):

- LC-SEAL: on `HeightReached(h)` the lane seals every slot <= h with admitted entries,
  in slot order, each into the next block of its chain: stored, then broadcast; the
  proposer counts its own vote.
- AV-FROM: a broadcast lane block comes from its own lane's validator.
- AV-VERIFY (`chain.ChainBlockChecker`), AV-WINDOW (bounded memory), AV-CHAIN (vote
  only with the parent held; a block whose parent is missing is parked and the parent
  fetched), AV-ONCE (one vote per lane height; a different block there is equivocation).
- POA: votes from their author, for the proposer's own block, one per author, valid
  signature; f+1 stake make the PoA, broadcast as a `LaneTipMessage`.
- FETCH: answers from memory (else `ServeFromStorage`); responses used only if solicited
  and chained from the requested digest; missing blocks of a finalized cut are fetched
  from the cited tip's PoA signers, one peer per missing digest per height.
- RE-SEND: every `resend_interval_heights`, uncertified own blocks go again to the
  validators that did not vote, and the PoA of the highest certified own block not yet
  finalized is broadcast again.
- FIN: finalized cuts (in height order) become `LanesFinalized` commands once every
  lane block they finalize is held, in `cut.finalized_order`.

Everything is bounded: blocks per lane above the finalized tip, parked blocks,
certified tips, outstanding fetches, finalized cuts waiting for data.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consensus.crypto import KeyPair, SignatureScheme
from consensus.events import Broadcast, Send, Trace
from consensus.lanes.chain import (
    MAX_FETCH_BLOCKS,
    ZERO_DIGEST,
    AvailabilityVote,
    ChainBlockChecker,
    Ed25519Poa,
    LaneBlockMessage,
    LaneChainBlock,
    LaneFetchRequest,
    LaneFetchResponse,
    LaneTip,
    LaneTipMessage,
    PoaScheme,
    TipRef,
    chain_block_digest,
    sign_chain_block,
    tip_ref,
)
from consensus.lanes.cut import MIN_CUT_DELAY_SLOTS, finalized_order, risen, walk_down
from consensus.lanes.proposer import LaneProposer
from consensus.validators import BitmapError, ValidatorSet, decode_bitmap

# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class SubmitEntry:
    """A sender's bundle for this node's lane (encoded `LaneEntry`)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class HeightReached:
    """This node holds a consensus block at `height` (the lanes' slot clock)."""

    height: int


@dataclass(frozen=True, slots=True)
class LaneMessageReceived:
    sender: int
    message: Any  # a chain.LaneMessage


@dataclass(frozen=True, slots=True)
class CutFinalized:
    """The block at `height` (whose QC certifies `parent_id`) is finalized; its payload
    carries `transactions` and the cut `tips`. Delivered once per height, in order."""

    height: int
    parent_id: bytes
    transactions: tuple[bytes, ...]
    tips: tuple[LaneTip, ...]


# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class StoreLaneBlock:
    """Write a verified lane block durably (before the vote or broadcast that follows)."""

    block: LaneChainBlock
    digest: bytes
    voted: bool  # this node voted for it (or sealed it)


@dataclass(frozen=True, slots=True)
class ServeFromStorage:
    """Answer `request` from durable storage: the block is no longer in memory."""

    to: int
    request: LaneFetchRequest


@dataclass(frozen=True, slots=True)
class LanesFinalized:
    """What the decode tracker runs for the finalized block at `height`."""

    height: int
    parent_id: bytes
    transactions: tuple[bytes, ...]
    blocks: tuple[LaneChainBlock, ...]


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class AvailabilityConfig:
    max_future_slots: int = 64  # AV-WINDOW: slot <= highest held height + this
    max_unfinalized_per_lane: int = 256  # AV-WINDOW: heights above the finalized tip
    max_parked_per_lane: int = 16  # blocks waiting for their parent
    finalized_kept_per_lane: int = 32  # finalized blocks kept in memory to serve fetches
    resend_interval_heights: int = 8  # RE-SEND period
    fetch_retry_heights: int = 2  # FETCH: ask the next peer after this many heights
    max_pending_cuts: int = 4096  # finalized cuts waiting for lane data
    max_outstanding_fetches: int = 1024

    def __post_init__(self) -> None:
        for name in (
            "max_future_slots",
            "max_unfinalized_per_lane",
            "max_parked_per_lane",
            "finalized_kept_per_lane",
            "resend_interval_heights",
            "fetch_retry_heights",
            "max_pending_cuts",
            "max_outstanding_fetches",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass
class RecoveredLanes:
    """What a restarted layer is built from: the blocks `StoreLaneBlock` wrote (above the
    finalized cut) and the last finalized cut it delivered."""

    blocks: list[tuple[LaneChainBlock, bytes, bool]]  # (block, digest, voted)
    finalized_cut: dict[int, TipRef]
    finalized_height: int


# ----------------------------------------------------------------------------- state


@dataclass
class _LaneView:
    """What this node knows of one lane."""

    blocks: dict[bytes, LaneChainBlock] = field(default_factory=dict)  # digest -> held
    voted: dict[int, bytes] = field(default_factory=dict)  # height -> digest voted
    certified: dict[int, LaneTip] = field(default_factory=dict)  # height -> with PoA
    # digest -> (block, fetched, peer): waiting for its parent
    parked: dict[bytes, tuple[LaneChainBlock, bool, int]] = field(default_factory=dict)
    finalized: TipRef | None = None

    @property
    def finalized_height(self) -> int:
        return self.finalized.height if self.finalized is not None else 0


@dataclass
class _OwnBlock:
    block: LaneChainBlock
    digest: bytes
    votes: dict[int, bytes] = field(default_factory=dict)  # author -> signature
    poa: LaneTip | None = None


@dataclass
class _Fetch:
    lane: int
    peers: list[int]
    count: int
    next_peer: int = 0
    asked_at: int = -1  # height of the last request


@dataclass
class AvailabilityStats:
    sealed: int = 0
    votes_sent: int = 0
    poas_formed: int = 0
    poas_received: int = 0
    equivocations: int = 0
    fetches_sent: int = 0
    fetched_blocks: int = 0
    lanes_finalized: int = 0
    entries_dropped_full: int = 0  # own entries dropped: own chain at max_unfinalized
    dropped: Counter[str] = field(default_factory=Counter)


class AvailabilityLayer:
    """One validator's view of every lane chain, and its own lane's proposer side."""

    def __init__(
        self,
        *,
        index: int,
        key: KeyPair,
        scheme: SignatureScheme,
        validators: ValidatorSet,
        proposer: LaneProposer,
        checker: ChainBlockChecker,
        config: AvailabilityConfig | None = None,
        recovered: RecoveredLanes | None = None,
        digester: Callable[[LaneChainBlock], bytes] = chain_block_digest,
        poa_checker: Callable[[LaneTip], str | None] | None = None,
        poa: PoaScheme | None = None,
        vote_key: Any = None,
    ):
        if validators.public_key(index) != key.public:
            raise ValueError(f"key does not match validator {index}'s public key")
        if proposer.lane != index:
            raise ValueError("the lane proposer must be this validator's lane")
        self.index = index
        self.key = key
        self.scheme = scheme
        self.validators = validators
        self.proposer = proposer
        self.checker = checker
        self.config = config or AvailabilityConfig()
        self.digest_of = digester
        # how votes are signed and PoAs built (default: Ed25519, f+1 signatures)
        self.poa = poa or Ed25519Poa(validators, scheme)
        self.vote_key = key if vote_key is None else vote_key
        # verify_poa, or a cached equivalent (a `CutValidator`'s `check_poa`)
        self.check_poa = poa_checker or self._verify_poa
        self.stats = AvailabilityStats()
        self.lanes = [_LaneView() for _ in range(len(validators))]
        self.known_height = 0
        self.finalized_height = 0
        self.finalized_cut: dict[int, TipRef] = {}
        self._own: dict[int, _OwnBlock] = {}  # own unfinalized blocks by height
        self._own_height = 0
        self._own_tip = ZERO_DIGEST
        self._own_slot = -1
        self._last_resend = -self.config.resend_interval_heights
        self._pending_cuts: deque[CutFinalized] = deque()
        self._fetches: dict[bytes, _Fetch] = {}
        self._out: list[Any] = []
        if recovered is not None:
            self._recover(recovered)

    # ------------------------------------------------------------------ entry point

    def handle(self, event: Any) -> list[Any]:
        self._out = []
        kind = type(event)
        if kind is LaneMessageReceived:
            self._on_message(event.sender, event.message)
        elif kind is HeightReached:
            self._on_height(event.height)
        elif kind is CutFinalized:
            self._on_cut(event)
        elif kind is SubmitEntry:
            self.proposer.submit_bytes(event.data)  # rejections counted by reason
        else:
            raise TypeError(f"unknown availability event {event!r}")
        out, self._out = self._out, []
        return out

    def _drop(self, reason: str) -> None:
        self.stats.dropped[reason] += 1

    # ------------------------------------------------------------------ views

    @property
    def own_height(self) -> int:
        return self._own_height

    def own_block(self, height: int) -> LaneChainBlock | None:
        own = self._own.get(height)
        return own.block if own is not None else None

    def held(self, digest: bytes, lane: int) -> LaneChainBlock | None:
        return self.lanes[lane].blocks.get(digest)

    def certified_tip(self, lane: int) -> LaneTip | None:
        """The highest certified block of `lane` this node knows above the finalized tip."""
        view = self.lanes[lane]
        return view.certified[max(view.certified)] if view.certified else None

    def cut_for(self, height: int, parent: Mapping[int, TipRef]) -> tuple[LaneTip, ...]:
        """The leader's cut for the block at `height` whose parent's cut is `parent`: per
        lane the highest certified block with slot <= height − 2 above the parent's tip
        (with its PoA), else the parent's tip (without)."""
        tips: list[LaneTip] = []
        for lane, view in enumerate(self.lanes):
            before = parent.get(lane)
            floor = before.height if before is not None else 0
            best: LaneTip | None = None
            for tip_height in sorted(view.certified, reverse=True):
                if tip_height <= floor:
                    break
                candidate = view.certified[tip_height]
                if candidate.tip.slot <= height - MIN_CUT_DELAY_SLOTS:  # rule CUT-SLOT
                    best = candidate
                    break
            if best is not None:
                tips.append(best)
            elif before is not None:
                tips.append(LaneTip(before))
        return tuple(tips)

    # ------------------------------------------------------------------ own lane

    def _on_height(self, height: int) -> None:
        if height <= self.known_height:
            return
        self.known_height = height
        self._seal_through(height)
        if height - self._last_resend >= self.config.resend_interval_heights:
            self._last_resend = height
            self._resend()
        self._retry_fetches(height)

    def _seal_through(self, height: int) -> None:
        """LC-SEAL: every open slot <= height with entries becomes the next chain block."""
        proposer = self.proposer
        for slot in proposer.slots_with_entries(height):
            entries = proposer.seal_entries(slot)
            if not entries:
                continue  # everything was withheld
            if len(self._own) >= self.config.max_unfinalized_per_lane:
                self.stats.entries_dropped_full += len(entries)  # rule AV-WINDOW (own)
                continue
            height_next = self._own_height + 1
            block = sign_chain_block(
                self.scheme,
                self.key,
                lane=self.index,
                height=height_next,
                parent=self._own_tip,
                slot=slot,
                entries=entries,
            )
            digest = self.digest_of(block)
            self._own_height, self._own_tip, self._own_slot = height_next, digest, slot
            view = self.lanes[self.index]
            view.blocks[digest] = block
            view.voted[height_next] = digest
            own = _OwnBlock(block, digest)
            self._own[height_next] = own
            self.stats.sealed += 1
            self._out.append(StoreLaneBlock(block, digest, voted=True))
            self._out.append(Broadcast(LaneBlockMessage(block)))
            self._count_vote(
                own, self.poa.sign_vote(self.vote_key, self.index, tip_ref(block, digest))
            )
        proposer.close_through(height)

    def _count_vote(self, own: _OwnBlock, vote: AvailabilityVote) -> None:
        if own.poa is not None or vote.author in own.votes:
            return  # rule POA: one vote per author; a formed PoA needs no more
        own.votes[vote.author] = vote.signature
        if not self.validators.has_honest_present(own.votes):
            return
        tip = LaneTip(tip_ref(own.block, own.digest), self.poa.build(own.votes))
        own.poa = tip
        self.stats.poas_formed += 1
        self._certify(tip)
        self._out.append(Broadcast(LaneTipMessage(tip)))
        self._out.append(
            Trace(
                "lane_poa_formed",
                {"lane": self.index, "height": tip.tip.height, "slot": tip.tip.slot},
            )
        )

    def _resend(self) -> None:
        """RE-SEND: uncertified own blocks to non-voters; the highest certified PoA again."""
        everyone = range(len(self.validators))
        highest: LaneTip | None = None
        for height in sorted(self._own):
            own = self._own[height]
            if own.poa is not None:
                highest = own.poa
                continue
            for peer in everyone:
                if peer != self.index and peer not in own.votes:
                    self._out.append(Send(peer, LaneBlockMessage(own.block)))
        if highest is not None:
            self._out.append(Broadcast(LaneTipMessage(highest)))

    # ------------------------------------------------------------------ messages

    def _on_message(self, sender: int, message: Any) -> None:
        kind = type(message)
        if kind is LaneBlockMessage:
            if sender != message.block.lane:  # rule AV-FROM: no relays of lane blocks
                self._drop("lane block relayed")
                return
            self._receive_block(message.block, sender, fetched=False)
        elif kind is AvailabilityVote:
            self._on_vote(sender, message)
        elif kind is LaneTipMessage:
            self._on_tip(message.tip)
        elif kind is LaneFetchRequest:
            self._on_fetch_request(sender, message)
        elif kind is LaneFetchResponse:
            self._on_fetch_response(sender, message)
        else:
            self._drop("unknown message")

    def _receive_block(self, block: LaneChainBlock, peer: int, *, fetched: bool) -> None:
        if not self.validators.contains(block.lane):
            self._drop("unknown lane")
            return
        view = self.lanes[block.lane]
        digest = self.digest_of(block)
        if digest in view.blocks:
            if not fetched and view.voted.get(block.height) == digest:
                self._send_vote(block, digest)  # rule AV-ONCE: the same vote again
            return
        if block.height <= view.finalized_height:
            self._drop("at or below the finalized tip")
            return
        # rule AV-WINDOW: bounded heights per lane, bounded look-ahead of slots
        if block.height > view.finalized_height + self.config.max_unfinalized_per_lane:
            self._drop("too far above the finalized tip")
            return
        if not fetched and block.slot > self.known_height + self.config.max_future_slots:
            self._drop("slot too far ahead")
            return
        voted = view.voted.get(block.height)
        if voted is not None and voted != digest and not fetched:
            # rule AV-ONCE: a second block at a voted height is equivocation, never voted
            self.stats.equivocations += 1
            self._out.append(
                Trace("lane_equivocation", {"lane": block.lane, "height": block.height})
            )
            return
        reason = self.checker.check(block, digest)
        if reason is not None:  # rule AV-VERIFY
            self._drop(f"invalid lane block: {reason}")
            return
        parent_slot = self._parent_slot(view, block)
        if parent_slot is None:  # rule AV-CHAIN: the parent first
            # a fetched chain may wait whole (it is bounded by the window); broadcasts less
            limit = (
                self.config.max_unfinalized_per_lane if fetched else self.config.max_parked_per_lane
            )
            if digest not in view.parked and len(view.parked) >= limit:
                self._drop("parked blocks full")
                return
            view.parked[digest] = (block, fetched, peer)
            missing = block.height - 1 - view.finalized_height
            # a broadcast's parent is usually in flight (reordering): ask only if it stays
            # missing; a fetched chain's parent is asked for at once
            self._fetch(block.lane, block.parent, [peer, block.lane], missing, now=fetched)
            return
        if block.slot <= parent_slot:  # rule LC: slots strictly increase along a chain
            self._drop("slot not above the parent's")
            return
        view.blocks[digest] = block
        self._fetches.pop(digest, None)  # it came another way: stop asking
        vote = voted is None
        if vote:
            view.voted[block.height] = digest
        self._out.append(StoreLaneBlock(block, digest, voted=vote))
        if vote:
            self._send_vote(block, digest)
        for child_digest, (child, child_fetched, child_peer) in list(view.parked.items()):
            if child.parent == digest and child_digest in view.parked:
                del view.parked[child_digest]
                self._receive_block(child, child_peer, fetched=child_fetched)
        self._advance_finalization()

    def _parent_slot(self, view: _LaneView, block: LaneChainBlock) -> int | None:
        """The parent's slot if the parent is held (or is the finalized tip), else None."""
        if block.height == 1:
            return -1
        parent = view.blocks.get(block.parent)
        if parent is not None:
            return parent.slot
        final = view.finalized
        if final is not None and final.digest == block.parent and final.height == block.height - 1:
            return final.slot
        return None

    def _send_vote(self, block: LaneChainBlock, digest: bytes) -> None:
        vote = self.poa.sign_vote(self.vote_key, self.index, tip_ref(block, digest))
        self.stats.votes_sent += 1
        if block.lane == self.index:
            own = self._own.get(block.height)
            if own is not None and own.digest == digest:
                self._count_vote(own, vote)
            return
        self._out.append(Send(block.lane, vote))

    def _on_vote(self, sender: int, vote: AvailabilityVote) -> None:
        if vote.author != sender:  # rule POA: votes come from their author
            self._drop("vote not from its author")
            return
        own = self._own.get(vote.tip.height)
        if vote.tip.lane != self.index or own is None or tip_ref(own.block, own.digest) != vote.tip:
            self._drop("vote for no own block")
            return
        if own.poa is not None or vote.author in own.votes:
            return
        if not self.poa.vote_ok(vote):
            self._drop("bad vote signature")
            return
        self._count_vote(own, vote)

    def _on_tip(self, tip: LaneTip) -> None:
        ref = tip.tip
        if tip.poa is None or not self.validators.contains(ref.lane):
            self._drop("tip without a PoA")
            return
        view = self.lanes[ref.lane]
        if ref.height <= view.finalized_height:
            return
        if ref.height > view.finalized_height + self.config.max_unfinalized_per_lane:
            self._drop("too far above the finalized tip")
            return
        known = view.certified.get(ref.height)
        if known is not None:
            if known.tip != ref:
                self.stats.equivocations += 1  # two certified blocks at one height
            return
        reason = self.check_poa(tip)
        if reason is not None:
            self._drop(f"invalid PoA: {reason}")
            return
        self.stats.poas_received += 1
        self._certify(tip)

    def _verify_poa(self, tip: LaneTip) -> str | None:
        assert tip.poa is not None
        return self.poa.verify(tip.tip, tip.poa)

    def _certify(self, tip: LaneTip) -> None:
        self.lanes[tip.tip.lane].certified.setdefault(tip.tip.height, tip)

    # ------------------------------------------------------------------ fetch

    def _fetch(
        self, lane: int, digest: bytes, peers: list[int], count: int, *, now: bool = True
    ) -> None:
        """Fetch `digest` (and up to `count` ancestors) from `peers` in turn; `now=False`
        waits for the first retry (a parked block's parent is usually still in flight)."""
        if digest in self._fetches:
            return
        if len(self._fetches) >= self.config.max_outstanding_fetches:
            self._drop("too many outstanding fetches")
            return
        order = [p for p in dict.fromkeys(peers) if p != self.index and self.validators.contains(p)]
        if not order:
            return
        fetch = _Fetch(lane, order, max(1, min(MAX_FETCH_BLOCKS, count)))
        self._fetches[digest] = fetch
        if now:
            self._ask(digest, fetch)
        else:
            fetch.asked_at = self.known_height

    def _ask(self, digest: bytes, fetch: _Fetch) -> None:
        peer = fetch.peers[fetch.next_peer % len(fetch.peers)]
        fetch.next_peer += 1
        fetch.asked_at = self.known_height
        self.stats.fetches_sent += 1
        self._out.append(Send(peer, LaneFetchRequest(fetch.lane, digest, fetch.count)))

    def _retry_fetches(self, height: int) -> None:
        """FETCH: one more peer per missing digest per height without an answer."""
        for digest, fetch in list(self._fetches.items()):
            if fetch.asked_at + self.config.fetch_retry_heights <= height:
                self._ask(digest, fetch)

    def _on_fetch_request(self, sender: int, request: LaneFetchRequest) -> None:
        if sender == self.index or not self.validators.contains(request.lane):
            return
        view = self.lanes[request.lane]
        blocks: list[LaneChainBlock] = []
        digest = request.digest
        while len(blocks) < request.count:  # bounded by count <= MAX_FETCH_BLOCKS
            block = view.blocks.get(digest)
            if block is None:
                break
            blocks.append(block)
            digest = block.parent
        if not blocks:
            self._out.append(ServeFromStorage(sender, request))
            return
        self._out.append(
            Send(sender, LaneFetchResponse(request.lane, request.digest, tuple(blocks)))
        )

    def _on_fetch_response(self, sender: int, response: LaneFetchResponse) -> None:
        fetch = self._fetches.get(response.digest)
        if fetch is None or fetch.lane != response.lane:  # rule FETCH: solicited only
            self._drop("unsolicited fetch response")
            return
        if not response.blocks:
            return  # the peer does not hold it: the next height asks another
        expected = response.digest
        digests: list[bytes] = []
        for block in response.blocks:
            digest = self.digest_of(block)
            # rule FETCH: the blocks chain down from the requested digest
            if digest != expected or block.lane != response.lane:
                self._drop("fetch response does not chain")
                return
            digests.append(digest)
            expected = block.parent
        self._fetches.pop(response.digest)
        self.stats.fetched_blocks += len(response.blocks)
        for block in reversed(response.blocks):  # oldest first: parents before children
            self._receive_block(block, sender, fetched=True)  # a missing parent is fetched
        self._advance_finalization()

    # ------------------------------------------------------------------ finalization

    def _on_cut(self, event: CutFinalized) -> None:
        last = self._pending_cuts[-1].height if self._pending_cuts else self.finalized_height
        if event.height != last + 1:  # rule: finalized cuts arrive in height order, once
            raise ValueError(f"expected finalized height {last + 1}, got {event.height}")
        if len(self._pending_cuts) >= self.config.max_pending_cuts:
            raise OverflowError("too many finalized cuts waiting for lane data")
        self._pending_cuts.append(event)
        self._advance_finalization()

    def _advance_finalization(self) -> None:
        """FIN: deliver every waiting cut whose lane blocks are all held, in order."""
        while self._pending_cuts:
            event = self._pending_cuts[0]
            tips = {entry.tip.lane: entry for entry in event.tips}
            finalized: list[LaneChainBlock] = []
            complete = True
            for tip, start in risen(self.finalized_cut, {k: v.tip for k, v in tips.items()}):
                view = self.lanes[tip.lane]
                blocks, missing = walk_down(tip, start, view.blocks.get)
                if missing is not None:
                    complete = False
                    poa = tips[tip.lane].poa
                    signers = _signers(poa, len(self.validators))
                    self._fetch(tip.lane, missing, [*signers, tip.lane], tip.height - start + 1)
                    continue
                finalized.extend(blocks)
            if not complete:
                return
            self._pending_cuts.popleft()
            self._deliver(event, finalized, {k: v.tip for k, v in tips.items()})

    def _deliver(
        self, event: CutFinalized, blocks: list[LaneChainBlock], tips: dict[int, TipRef]
    ) -> None:
        for tip, _ in risen(self.finalized_cut, tips):
            view = self.lanes[tip.lane]
            view.finalized = tip
            self._prune(tip.lane, view, tip.height)
            # CUT-MONOTONE makes a valid cut never lower a tip; a lane is only ever raised
            # here, so no lane height can be finalized twice even if that rule failed
            self.finalized_cut[tip.lane] = tip
        self.finalized_height = event.height
        self.stats.lanes_finalized += len(blocks)
        own = tips.get(self.index)
        if own is not None:
            for height in [h for h in self._own if h <= own.height]:
                del self._own[height]
            self.proposer.on_finalized(own.slot)  # release admitted money up to it
        self._out.append(
            LanesFinalized(
                event.height, event.parent_id, event.transactions, tuple(finalized_order(blocks))
            )
        )

    def _prune(self, lane: int, view: _LaneView, height: int) -> None:
        """Forget what a finalized tip at `height` made unnecessary (bounded memory)."""
        keep_from = height - self.config.finalized_kept_per_lane
        for digest in [d for d, b in view.blocks.items() if b.height <= keep_from]:
            del view.blocks[digest]
        for h in [h for h in view.voted if h <= height]:
            del view.voted[h]
        for h in [h for h in view.certified if h <= height]:
            del view.certified[h]
        for digest in [d for d, (b, _, _) in view.parked.items() if b.height <= height]:
            del view.parked[digest]

    # ------------------------------------------------------------------ restart

    def _recover(self, recovered: RecoveredLanes) -> None:
        self.finalized_cut = dict(recovered.finalized_cut)
        self.finalized_height = recovered.finalized_height
        for lane, tip in self.finalized_cut.items():
            self.lanes[lane].finalized = tip
        own_final = self.finalized_cut.get(self.index)
        if own_final is not None:
            self._own_height, self._own_tip, self._own_slot = (
                own_final.height,
                own_final.digest,
                own_final.slot,
            )
        for block, digest, voted in sorted(recovered.blocks, key=lambda item: item[0].height):
            view = self.lanes[block.lane]
            if block.height <= view.finalized_height - self.config.finalized_kept_per_lane:
                continue
            view.blocks[digest] = block
            if voted and block.height > view.finalized_height:
                view.voted.setdefault(block.height, digest)
            if block.lane == self.index and block.height > self._own_height:
                # rule: never sign a second block at a height already used
                self._own_height, self._own_tip, self._own_slot = block.height, digest, block.slot
            if block.lane == self.index and block.height > view.finalized_height:
                own = _OwnBlock(block, digest)  # votes are gathered again (RE-SEND)
                own.votes[self.index] = self.poa.sign_vote(
                    self.vote_key, self.index, tip_ref(block, digest)
                ).signature
                self._own[block.height] = own
        if self._own_slot >= 0:
            self.proposer.close_through(self._own_slot)


def _signers(poa: Any, size: int) -> list[int]:
    """The signer indices of a PoA (empty if none or malformed)."""
    if poa is None:
        return []
    try:
        return decode_bitmap(poa.signers, size)
    except BitmapError:
        return []
