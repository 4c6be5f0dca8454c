"""A Voted mark resting on a reproposal's QC is reverted with every node honest (P5'/P6').

Schedule (n = 4, leaders 1, 2, 3, 0 for rounds 1-4, no Byzantine identity; messages are only
delayed, everything is delivered at "GST"):

- r1: B1 (leader 1) reaches nobody; TC1 among {0, 2, 3}.
- r2: B2 (leader 2) reaches nobody, but 2 voted it and holds Tip(B2); TC2 among {0, 1, 3}
  carries Tip(B1).
- r3: leader 3 syncs B1 and reproposes it; the votes of 0 and 1 reach only 3, which forms
  QC3(B1) and marks B1 Voted.
- round-3 timeouts: 2 echoes Tip(B2), which outranks Tip(B1); TC3 among {0, 1, 2} carries
  Tip(B2). r4: leader 0 reproposes B2, QC4(B2); B2 takes height 1.

B1 never had a QC of its own round, so its revert is counted (`reproposal_reverts`) and is
not a violation; the negative tests add to the checker's log the facts that would make it
accountable (a QC of round 1 on B1, or round-1 honest votes) and the checker must flag it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from consensus import codec
from consensus.certificates import Signer, build_qc
from consensus.events import Broadcast, CommitBlocks, MarkVoted, RevertVoted
from consensus.messages import AdvanceRoundMessage, ProposalMessage, Vote
from netsim.byzantine import message_round
from netsim.engine import Observer, Simulator
from netsim.stepped import InFlight, SteppedSim

MAX_STEPS = 500  # per delivery phase
MAX_GST_ROUNDS = 40  # GST phase: deliver everything, then run the next timer
TARGET_HEIGHT = 3

Pick = Callable[[InFlight], bool]


class Log(Observer):
    """The Voted marks, reverts and commits honest cores emitted (instance -> list)."""

    def __init__(self) -> None:
        self.voted: list[tuple[int, bytes]] = []
        self.reverted: list[RevertVoted] = []
        self.finalized: dict[int, bytes] = {}  # height -> block id

    def on_command(self, sim: Simulator, node: int, command: object) -> None:
        if isinstance(command, MarkVoted):
            self.voted.append((node, command.block_id))
        elif isinstance(command, RevertVoted):
            self.reverted.append(command)
        elif isinstance(command, CommitBlocks):
            for block in command.blocks:
                self.finalized.setdefault(block.header.seq_num, block.block_id)


def kind(name: str, round_: int | None = None, src=(), dst=()) -> Pick:
    def pick(item: InFlight) -> bool:
        message = item.message
        return (
            type(message).__name__ == name
            and (round_ is None or message_round(message) == round_)
            and (not src or item.src in src)
            and (not dst or item.dst in dst)
        )

    return pick


def either(*picks: Pick) -> Pick:
    return lambda item: any(pick(item) for pick in picks)


def sync(requester: set[int], holder: set[int]) -> Pick:
    return either(
        kind("BlockSyncRequest", src=requester, dst=holder),
        kind("BlockSyncResponse", src=holder, dst=requester),
    )


def pump(net: SteppedSim, pick: Pick) -> int:
    """Deliver every in-flight message `pick` accepts (and those it causes), in order."""
    for delivered in range(MAX_STEPS):
        index = next((i for i, item in enumerate(net.pending) if pick(item)), None)
        if index is None:
            return delivered
        net.deliver(index)
    raise AssertionError("delivery phase did not settle")


@dataclass
class Outcome:
    net: SteppedSim
    log: Log
    b1: bytes
    b2: bytes


Forge = Callable[[SteppedSim, bytes], None]


def run_schedule(forge: Forge | None = None) -> Outcome:
    """The all-honest schedule; `forge(net, b1)` may add facts to the checker's log after
    round 1 (negative tests)."""
    net = SteppedSim(byzantine=None)
    log = Log()
    net.sim.observers.append(log)
    leaders = [net.world.schedule.leader(r) for r in range(1, 5)]
    assert leaders == [1, 2, 3, 0]
    b1 = next(
        codec.block_id(item.message.tip.header)
        for item in net.pending
        if isinstance(item.message, ProposalMessage) and item.src == 1
    )
    if forge is not None:
        forge(net, b1)
    net.advance()  # round-1 timers: B1 reached nobody
    assert pump(net, kind("TimeoutMessage", 1, src={0, 2, 3}, dst={0, 2, 3})) > 0
    net.advance()  # round-2 timers: B2 reached nobody (2 voted it)
    b2 = next(
        codec.block_id(item.message.tip.header)
        for item in net.pending
        if isinstance(item.message, ProposalMessage) and item.src == 2
    )
    pump(
        net,
        either(
            kind("TimeoutMessage", 2, src={0, 3}, dst={0, 1, 3}),
            kind("TimeoutMessage", 2, src={1}, dst={0, 1, 3}),
        ),
    )
    pump(net, sync({3}, {1}))  # leader 3 fetches B1
    assert pump(net, kind("ProposalMessage", 3, src={3}, dst={0, 1})) > 0  # reproposal of B1
    assert pump(net, kind("VoteMessage", 3, dst={3})) > 0  # QC3(B1) at 3 only
    assert (3, b1) in log.voted
    net.advance()  # round-3 timers at 0 and 1
    pump(net, kind("TimeoutMessage", 3, src={0}, dst={2}))
    pump(net, kind("TimeoutMessage", 3, src={1}, dst={2}))  # 2 answers with Tip(B2)
    pump(net, kind("TimeoutMessage", 3, src={1, 2}, dst={0}))  # TC3 at 0: Tip(B2)
    pump(net, sync({0}, {2}))  # leader 0 fetches B2
    assert pump(net, kind("ProposalMessage", 4, src={0})) > 0  # reproposal of B2
    pump(net, kind("VoteMessage", 4))
    for _ in range(MAX_GST_ROUNDS):  # GST
        net.deliver_oldest(256)
        if min(net.finalized().values()) >= TARGET_HEIGHT:
            break
        net.advance()
    assert min(net.finalized().values()) >= TARGET_HEIGHT
    return Outcome(net, log, b1, b2)


def test_a_reproposal_qc_is_reverted_with_all_nodes_honest_and_is_not_a_violation() -> None:
    out = run_schedule()
    checker = out.net.checker
    # B2 (round 2, reproposed in round 4) took height 1; B1's Voted mark was reverted.
    assert out.log.finalized[1] == out.b2 != out.b1
    reverts = [r for r in out.log.reverted if r.block_id == out.b1]
    assert reverts and all(r.evidence is None and r.block_round == 1 for r in reverts)
    assert checker.stats.equivocations == set()  # no leader signed two headers
    # Counted, not flagged: B1 had QCs only of its reproposal round.
    assert checker._qc_rounds_of[out.b1] == {3}
    assert checker.violations == []
    assert checker.stats.reproposal_reverts == len(out.log.reverted) >= 1
    assert checker.stats.speculative_reverts == checker.stats.reproposal_reverts
    # B1 had f+1 honest votes, all in round 3: a tail fork by reproposal, allowed by P5'.
    assert checker.tail_forks() == [] and checker.reproposal_tail_forks() == [out.b1]


def signed_votes(net: SteppedSim, block_id: bytes, round_: int, signers: tuple[int, ...]):
    vote = Vote(block_id=block_id, round=round_, epoch=net.world.config.epoch)
    return vote, {i: Signer(i, net.world.keys[i], net.world.scheme).vote(vote) for i in signers}


def log_fresh_qc(net: SteppedSim, b1: bytes) -> None:
    """The log holds a valid QC of round 1 on B1 (as if one had been formed and sent)."""
    vote, messages = signed_votes(net, b1, 1, (0, 2, 3))
    qc = build_qc(vote, {i: m.signature for i, m in messages.items()}, net.world.validators)
    net.world.verifier.qc(qc)  # really valid
    net.checker.on_command(net.sim, 0, Broadcast(AdvanceRoundMessage(certificate=qc)))


def log_round_one_votes(net: SteppedSim, b1: bytes) -> None:
    """Honest validators 0, 2, 3 signed Vote(B1, 1) (B1's own round)."""
    _vote, messages = signed_votes(net, b1, 1, (0, 2, 3))
    for node, message in messages.items():
        net.checker.on_command(net.sim, node, Broadcast(message))


def test_a_revert_of_a_block_with_a_qc_of_its_own_round_is_still_flagged() -> None:
    out = run_schedule(forge=log_fresh_qc)
    checker = out.net.checker
    assert 1 in checker._qc_rounds_of[out.b1]
    assert any(r.block_id == out.b1 and r.evidence is None for r in out.log.reverted)
    kinds = {v.split(":")[0] for v in checker.violations}
    assert kinds == {"P6 revert without equivocation evidence", "P6 speculative finality"}
    assert checker.stats.reproposal_reverts == 0
    assert not any(v.startswith("P5") for v in checker.violations)  # no round-1 votes logged


def test_a_block_with_f_plus_one_honest_votes_in_its_round_still_counts_as_a_tail_fork() -> None:
    out = run_schedule(forge=log_round_one_votes)
    checker = out.net.checker
    assert out.log.finalized[1] == out.b2
    assert checker.tail_forks() == [out.b1] and checker.reproposal_tail_forks() == []
    assert any(v.startswith("P5 tail fork: block " + out.b1.hex()[:12]) for v in checker.violations)
    # No QC of round 1 in the log: the revert itself is still only a reproposal revert.
    assert not any(v.startswith("P6") for v in checker.violations)
    assert checker.stats.reproposal_reverts >= 1


@pytest.mark.parametrize("forge", [None, log_fresh_qc], ids=["honest", "fresh-qc"])
def test_the_schedule_is_deterministic(forge: Forge | None) -> None:
    first, second = run_schedule(forge), run_schedule(forge)
    assert first.b1 == second.b1 and first.log.finalized == second.log.finalized
    assert first.net.checker.violations == second.net.checker.violations
