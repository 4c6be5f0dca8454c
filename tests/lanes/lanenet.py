"""A tiny in-process network of availability layers for unit tests.

Executes each layer's commands exactly as a driver must: `Send`/`Broadcast` are queued
(FIFO) for delivery, `StoreLaneBlock` writes the node's storage, `ServeFromStorage` is
answered from it, `LanesFinalized` is recorded. Tests deliver messages one at a time,
drop or reorder them, and crash/restart nodes from their storage.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from consensus.aggregate import AggregateKeySet, AggregateScheme
from consensus.crypto import KeyPair, SignatureScheme, derive_keys
from consensus.events import Broadcast, Send, Trace
from consensus.lanes.availability import (
    AvailabilityConfig,
    AvailabilityLayer,
    CutFinalized,
    HeightReached,
    LaneMessageReceived,
    LanesFinalized,
    RecoveredLanes,
    ServeFromStorage,
    StoreLaneBlock,
    SubmitEntry,
)
from consensus.lanes.chain import (
    AggregatePoa,
    ChainBlockChecker,
    Ed25519Poa,
    LaneChainBlock,
    LaneFetchResponse,
    LaneTip,
    PoaScheme,
)
from consensus.lanes.cut import cut_tips
from consensus.lanes.params import LaneParams
from consensus.lanes.proposer import LaneProposer
from consensus.lanes.wire import encode_lane_entry
from consensus.validators import ValidatorSet


@dataclass
class Node:
    layer: AvailabilityLayer
    storage: dict[bytes, tuple[LaneChainBlock, bool]] = field(default_factory=dict)
    finalized: list[LanesFinalized] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    up: bool = True


class LaneNet:
    def __init__(
        self,
        n: int,
        params: LaneParams,
        scheme: SignatureScheme,
        *,
        seed: str = "lanenet",
        config: AvailabilityConfig | None = None,
        stakes: list[int] | None = None,
        aggregate: AggregateScheme | None = None,
    ):
        """`aggregate` set: availability votes and PoAs use it (`poa_signatures = "bls"`),
        every validator's key derived from its Ed25519 seed, proven possessed."""
        self.params = params
        self.scheme = scheme
        self.keys: list[KeyPair] = derive_keys(n, seed)
        self.validators = ValidatorSet.from_keys([k.public for k in self.keys], stakes)
        self.config = config or AvailabilityConfig()
        self.aggregate_keys = []
        self.poa: PoaScheme = Ed25519Poa(self.validators, scheme)
        if aggregate is not None:
            self.aggregate_keys = [aggregate.keypair(k.seed) for k in self.keys]
            self.poa = AggregatePoa(
                self.validators, AggregateKeySet.from_keypairs(aggregate, self.aggregate_keys)
            )
        self.queue: deque[tuple[int, int, Any]] = deque()  # (dst, src, message)
        self.delivered = 0
        self.nodes = [self._new(i, None) for i in range(n)]

    def _new(self, index: int, recovered: RecoveredLanes | None) -> Node:
        proposer = LaneProposer(
            lane=index,
            key=self.keys[index],
            scheme=self.scheme,
            params=self.params,
            max_future_slots=64,
        )
        checker = ChainBlockChecker(self.validators, self.params, self.scheme)
        layer = AvailabilityLayer(
            index=index,
            key=self.keys[index],
            scheme=self.scheme,
            validators=self.validators,
            proposer=proposer,
            checker=checker,
            config=self.config,
            recovered=recovered,
            poa=self.poa,
            vote_key=self.vote_key(index),
        )
        return Node(layer)

    def vote_key(self, index: int):
        """What node `index` signs availability votes with."""
        return self.aggregate_keys[index] if self.aggregate_keys else self.keys[index]

    # ------------------------------------------------------------------ driving

    def feed(self, index: int, event: Any) -> list[Any]:
        node = self.nodes[index]
        if not node.up:
            return []
        commands = node.layer.handle(event)
        self.execute(index, commands)
        return commands

    def execute(self, index: int, commands: list[Any]) -> None:
        node = self.nodes[index]
        for command in commands:
            kind = type(command)
            if kind is Send:
                self.queue.append((command.to, index, command.message))
            elif kind is Broadcast:
                for dst in range(len(self.nodes)):
                    if dst != index:
                        self.queue.append((dst, index, command.message))
            elif kind is StoreLaneBlock:
                node.storage[command.digest] = (command.block, command.voted)
            elif kind is ServeFromStorage:
                request = command.request
                blocks = []
                digest = request.digest
                while len(blocks) < request.count and digest in node.storage:
                    block = node.storage[digest][0]
                    blocks.append(block)
                    digest = block.parent
                response = LaneFetchResponse(request.lane, request.digest, tuple(blocks))
                self.queue.append((command.to, index, response))
            elif kind is LanesFinalized:
                node.finalized.append(command)
            elif kind is Trace:
                node.traces.append(command)
            else:
                raise TypeError(f"unexpected command {command!r}")

    def deliver_one(self) -> tuple[int, int, Any] | None:
        if not self.queue:
            return None
        dst, src, message = self.queue.popleft()
        self.delivered += 1
        self.feed(dst, LaneMessageReceived(src, message))
        return dst, src, message

    def run(self, max_steps: int = 100_000) -> int:
        steps = 0
        while self.queue and steps < max_steps:
            self.deliver_one()
            steps += 1
        return steps

    def drop_where(self, predicate) -> int:
        """Remove queued messages (dst, src, message) matching `predicate`."""
        kept = deque(item for item in self.queue if not predicate(*item))
        dropped = len(self.queue) - len(kept)
        self.queue = kept
        return dropped

    def height(self, height: int, nodes: list[int] | None = None) -> None:
        for index in nodes if nodes is not None else range(len(self.nodes)):
            self.feed(index, HeightReached(height))

    def submit(self, lane: int, entry) -> list[Any]:
        return self.feed(lane, SubmitEntry(encode_lane_entry(entry)))

    def finalize(self, index: int, height: int, tips: tuple[LaneTip, ...], parent=b"p" * 32):
        return self.feed(index, CutFinalized(height, parent, (b"tx",), tips))

    # ------------------------------------------------------------------ faults

    def crash(self, index: int) -> None:
        self.nodes[index].up = False
        self.queue = deque(item for item in self.queue if item[0] != index)

    def restart(self, index: int) -> None:
        old = self.nodes[index]
        layer = old.layer
        recovered = RecoveredLanes(
            blocks=[(block, digest, voted) for digest, (block, voted) in old.storage.items()],
            finalized_cut=dict(layer.finalized_cut),
            finalized_height=layer.finalized_height,
        )
        node = self._new(index, recovered)
        node.storage = old.storage
        node.finalized = old.finalized
        self.nodes[index] = node


def tips_of(commands: list[Any]) -> list[LaneTip]:
    """The PoAs broadcast among `commands`."""
    from consensus.lanes.chain import LaneTipMessage

    return [
        c.message.tip
        for c in commands
        if type(c) is Broadcast and type(c.message) is LaneTipMessage
    ]


__all__ = ["LaneNet", "Node", "cut_tips", "tips_of"]
