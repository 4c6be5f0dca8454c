"""TEST ONLY: injected Byzantine behaviour and crash points (the twins of the real rooms).

Only `node/assembly.py` imports this module, and only when a config's `[test]` section asks
for a fault; a node without `[test]` settings never runs any of it.

- `byzantine = "silent"`: the router sends nothing.
- `byzantine = "double_vote"`: every vote is followed by a second, conflicting vote in
  the same round, signed with the node's key.
- `byzantine = "malformed"`: authenticated peers receive garbage frames every 50 ms.
- `byzantine = BEHAVIOUR` of `consensus.byzantine` (equivocate, tail_fork, withhold_votes,
  withhold_qc, invalid_signatures, stale_spam, ne_spam, the signed-but-invalid ones, and
  silent with `targets`): the core is wrapped in the same `ByzantineMachine` netsim uses
  (`wrap_core`), so the behaviour rewrites what the real core sends, signed with the
  node's own key.
- `crash_after_persist_safety = N`: exit with CRASH_EXIT_CODE right after the N-th safety
  write that protects a vote in the same command batch, before that vote is sent.
- `byzantine = "replay_txs"`: as a leader, the node proposes again the txs of its previous
  proposal (honest nodes must refuse those blocks: TX-ONCE).
- `byzantine = "drop_lane_blocks"`: a censoring leader (netsim's `drop_lane_blocks`). In
  certified mode its cuts keep every other lane at the parent's tip (CUT-MONOTONE allows
  no less); in carried mode its proposals leave out every other lane's lane block.
- `core_error_after_events = N`: the core raises on its N-th event (the runtime must stop
  the node with its fatal-error exit code).
- `crash_after_proposing_txs = N`: right after the batch that broadcasts the node's N-th
  proposal carrying txs (and stores that block), the node handles nothing more and exits
  with CRASH_EXIT_CODE half a second later (its frames are flushed meanwhile): the state of
  a node killed between proposing a block and committing it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from collections.abc import Callable, Sequence
from typing import Any

from consensus.byzantine import ByzantineMachine
from consensus.certificates import Signer
from consensus.crypto import KeyPair, SignatureScheme
from consensus.events import Broadcast, Send
from consensus.lanes.wire import decode_block_transactions
from consensus.messages import ProposalMessage, Vote, VoteMessage
from node.logs import log
from node.router import Router

CRASH_EXIT_CODE = 75
MALFORMED_PERIOD_S = 0.05
CRASH_FLUSH_S = 0.5


def drop_lane_blocks(lanes: Any, room: Any) -> None:
    if room is not None:
        room.drop_tips = True
    else:
        lanes.drop_peer_blocks = True


def make_silent(router: Router) -> None:
    router.silent = True


def send_conflicting_votes(router: Router, index: int, key: KeyPair, scheme: SignatureScheme):
    """After each vote, a second vote for another block in the same round."""
    signer = Signer(index, key, scheme)

    def conflicting(to: int, message: VoteMessage) -> None:
        other = Vote(
            block_id=hashlib.sha256(b"conflict" + message.vote.block_id).digest(),
            round=message.vote.round,
            epoch=message.vote.epoch,
        )
        router.send_message(to, signer.vote(other))

    router.after_vote_sent = conflicting


async def spray_malformed(router: Router) -> None:
    """Authenticated peers send garbage frames (they must be dropped and counted)."""
    garbage = [b"", b"\x07garbage", b"\x01\xff\xff\xff", os.urandom(512)]
    while True:
        for frame in garbage:
            router.transport.broadcast(frame)
        await asyncio.sleep(MALFORMED_PERIOD_S)


def wrap_core(
    core: Any,
    behaviour: str,
    options: dict[str, Any],
    index: int,
    key: KeyPair,
    scheme: SignatureScheme,
) -> ByzantineMachine:
    """The node's core inside netsim's `ByzantineMachine` (one behaviour, every round)."""
    return ByzantineMachine(
        inner=core,
        behaviour=behaviour,
        signer=Signer(index, key, scheme),
        validators=core.validators,
        schedule=core.schedule,
        epoch=core.config.epoch,
        rng=random.Random(os.urandom(16)),
        targets=options.get("targets"),
    )


def join_cartel(runtime: Any, options: dict[str, Any], address: str) -> Any:
    """withhold_bundles: this lane withholds what the cartel's strategy says and shares
    its holdings with the other members over the side channel (`node/cartel_pool.py`)."""
    from node.cartel_pool import CartelMember, watch_tracker
    from node.config import parse_host_port

    lanes = runtime.lanes
    member = CartelMember(
        lanes.index, lanes.params, options["cartel_strategy"], parse_host_port(address)
    )
    lanes.proposer.withhold = member.policy
    watch_tracker(lanes.tracker, member.after_tracked)
    runtime.background.append(member.run)
    return member


def skip_safety_cover_check(ledger: Any) -> None:
    """A Byzantine node signs what its core never voted for (future-round votes and
    timeouts, no-endorsements for any round): its own last line of defence, the check
    that every signed message leaving is covered by a persisted safety state
    (`Ledger.check_covered`), would stop the process, so the attacker switches it off."""
    ledger.check_covered = lambda message, index: None


class ReplayTxs:
    """Stands in for `Mempool.select`: the real selection plus the previous proposal's txs."""

    def __init__(self, select: Callable[[Any], tuple[list[bytes], list[bytes]]]):
        self._select = select
        self._previous: list[tuple[bytes, bytes]] = []  # (tx, id)
        self.replayed = 0

    def __call__(self, exclude: Any) -> tuple[list[bytes], list[bytes]]:
        txs, ids = self._select(exclude)
        fresh = list(zip(txs, ids, strict=True))
        chosen = set(ids)
        replay = [(tx, txid) for tx, txid in self._previous if txid not in chosen]
        if fresh:
            self._previous = fresh
        self.replayed += len(replay)
        both = fresh + replay
        return [tx for tx, _ in both], [txid for _, txid in both]


def replay_txs(mempool: Any) -> ReplayTxs:
    replay = ReplayTxs(mempool.select)
    mempool.select = replay
    return replay


class CrashAfterProposingTxs:
    """Halt after the batch of the N-th own proposal with txs; exit once frames are out."""

    def __init__(
        self,
        countdown: int,
        halt: Callable[[], None],
        logger: logging.Logger,
        exit_process: Callable[[int], None],
    ):
        self.countdown = countdown
        self._halt = halt
        self.log = logger
        self._exit_process = exit_process

    def __call__(self, commands: Sequence[Any]) -> None:
        proposals = [
            c.message
            for c in commands
            if isinstance(c, Broadcast)
            and isinstance(c.message, ProposalMessage)
            and decode_block_transactions(c.message.body.payload)
        ]
        if not proposals or self.countdown <= 0:
            return
        self.countdown -= 1
        if self.countdown > 0:
            return
        log(
            self.log,
            "test_crash_after_proposing_txs",
            logging.WARNING,
            round=proposals[0].round,
            height=proposals[0].tip.header.seq_num,
        )
        for handler in self.log.handlers:
            handler.flush()
        self._halt()
        asyncio.get_running_loop().call_later(CRASH_FLUSH_S, self._exit_process, CRASH_EXIT_CODE)


class InjectedCoreError(RuntimeError):
    """The exception `FaultyCore` raises."""


class FaultyCore:
    """A core whose `handle` raises on the N-th event (and behaves normally before)."""

    def __init__(self, core: Any, fail_at_event: int):
        self._core = core
        self._countdown = fail_at_event

    def handle(self, event: Any) -> list[Any]:
        self._countdown -= 1
        if self._countdown == 0:
            raise InjectedCoreError(f"injected core error on {type(event).__name__}")
        return self._core.handle(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


class CrashAfterPersistSafety:
    """Die right after the N-th safety write that protects a vote about to be sent."""

    def __init__(self, countdown: int, logger: logging.Logger, exit_process: Callable[[int], None]):
        self.countdown = countdown
        self.log = logger
        self._exit_process = exit_process

    def __call__(self, rest: Sequence[Any]) -> None:
        votes = [
            c.message
            for c in rest
            if isinstance(c, Send | Broadcast) and isinstance(c.message, VoteMessage)
        ]
        if not votes or self.countdown <= 0:
            return
        self.countdown -= 1
        if self.countdown > 0:
            return
        vote = votes[0].vote
        log(
            self.log,
            "test_crash_after_persist_safety",
            logging.WARNING,
            round=vote.round,
            block_id=vote.block_id.hex(),
        )
        for handler in self.log.handlers:
            handler.flush()
        self._exit_process(CRASH_EXIT_CODE)
