"""A synchronous, in-process lane pipeline: senders → lane proposers → block → trackers.

No network and no consensus: every slot, senders plan their bundles, each submission
reaches its lane proposer as bytes, every lane seals its lane block, the block payload is
built, checked by `LanePayloadValidator` and "finalized" into every tracker replica, and
the first replica's outcome is fed back to the senders (redemptions, ratchet, decoded).

For tests and offline benchmarks; netsim drives the same pieces through real messages
and the real core. `offline` lanes receive nothing (an honest lane that fails, q < 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from consensus.codec import body_id
from consensus.crypto import TRUSTED, KeyPair, SignatureScheme, derive_keys
from consensus.lanes.params import LaneParams
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.proposer import LaneProposer, WithholdPolicy
from consensus.lanes.sender import Sender, SenderConfig
from consensus.lanes.tracker import BlockOutcome, DecodeTracker
from consensus.lanes.wire import encode_lane_entry
from consensus.messages import GENESIS_QC, BlockBody, BlockHeader
from consensus.validators import ValidatorSet


def lane_block_header(slot: int, author: int, body: BlockBody) -> BlockHeader:
    """A stand-in header at height `slot` (the lane layer reads only seq_num and body_id)."""
    return BlockHeader(
        block_round=slot,
        epoch=1,
        qc=GENESIS_QC,
        author=author,
        seq_num=slot,
        timestamp_ns=0,
        body_id=body_id(body),
    )


class LocalLanes:
    def __init__(
        self,
        params: LaneParams,
        *,
        lanes: int,
        scheme: SignatureScheme = TRUSTED,
        seed: bytes = b"sedna/local-lanes/1",
        withhold: Mapping[int, WithholdPolicy] | None = None,
        offline: Iterable[int] = (),
        trackers: int = 1,
    ):
        withhold = dict(withhold or {})
        self.params = params
        self.scheme = scheme
        self.seed = seed
        self.keys = derive_keys(lanes, seed)
        self.validators = ValidatorSet.from_keys([k.public for k in self.keys])
        self.proposers = [
            LaneProposer(lane=i, key=key, scheme=scheme, params=params, withhold=withhold.get(i))
            for i, key in enumerate(self.keys)
        ]
        self.offline = frozenset(offline)
        self.validator = LanePayloadValidator(self.validators, params, scheme)
        self.trackers = [DecodeTracker(params) for _ in range(max(1, trackers))]
        self.senders: list[Sender] = []
        self.slot = 0
        self.submitted_bytes = 0
        self.submitted_entries = 0

    def add_sender(self, config: SenderConfig, name: bytes, key: KeyPair | None = None) -> Sender:
        """A sender with a key derived from `name` (or the given key)."""
        key = key or derive_keys(1, self.seed + b"/sender/" + name)[0]
        sender = Sender(key, self.scheme, self.params, config)
        self.senders.append(sender)
        return sender

    def rejections(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for proposer in self.proposers:
            total.update(proposer.rejected)
        return total

    def run_slot(self, transactions: Sequence[bytes] = ()) -> BlockOutcome:
        """One slot end to end; returns the first tracker's outcome."""
        slot = self.slot + 1
        for sender in self.senders:
            for submission in sender.plan_slot(slot):
                if submission.lane in self.offline:
                    continue
                data = encode_lane_entry(submission.entry)
                self.submitted_bytes += len(data)
                self.submitted_entries += 1
                self.proposers[submission.lane].submit_bytes(data)
        lane_blocks = [proposer.seal(slot) for proposer in self.proposers]
        body = BlockBody(build_block_payload(transactions, lane_blocks))
        header = lane_block_header(slot, slot % len(self.proposers), body)
        reason = self.validator.check(header, body)
        if reason is not None:
            raise AssertionError(f"local pipeline built an invalid block: {reason}")
        self.slot = slot
        outcomes = [tracker.on_finalized(header, body) for tracker in self.trackers]
        for proposer in self.proposers:
            proposer.on_finalized(slot)
        for sender in self.senders:
            sender.on_outcome(outcomes[0])
        return outcomes[0]

    def run(self, slots: int) -> list[BlockOutcome]:
        return [self.run_slot() for _ in range(slots)]
