"""Signed-but-invalid Byzantine behaviours: correctly signed messages that break one rule.

Each behaviour attacks one validity rule of docs/protocol.md with messages an attacker
can really make (signed with its own key; others' signatures only reused, never forged).
Honest nodes must drop what it sends and count the drop (`rejected` in the run report);
with the attacked rule switched off (a TEST-ONLY rule switch, consensus.mutations) the
attack must cause a violation. Used through `consensus.byzantine.ByzantineMachine`.

- bad_height (T-SEQ): its fresh proposals carry seq_num = the parent's + 2.
- bad_timestamp (T-TIME): its fresh proposals carry a timestamp 1 ns before the parent's.
- bad_reproposal (W3n, W3n-fresh): as leader after a TC won by Tip(T), it reproposes
  another block it holds instead of T: an older sibling of T on T's parent QC round if it
  has one, else T's parent.
- forged_tc_rank (TC9): its own timeouts carry Tip(P), P the block of its high QC (a lower
  rank than anything honest nodes send); as leader after that round it builds the TC from
  the timeouts it received with Tip(P) as high extend instead of the maximum, and
  reproposes P with it.
- strip_timeouts (TO-AUTHOR): relays a copy of every timeout it receives from its author
  to every other peer, with the tip vote stripped (at most one relay per received timeout).

Each rewrite replaces the honest message the node's own core produced; messages naming a
block the behaviour replaced (its votes, its timeouts' tips) are suppressed like
`tail_fork`'s, so the only signed headers of the round are the invalid ones.
"""

from __future__ import annotations

from typing import Any

import msgspec

from consensus import codec
from consensus.certificates import build_tc, extend_rank
from consensus.events import Broadcast, Send
from consensus.messages import (
    ProposalMessage,
    RoundRecoveryMessage,
    TimeoutCertificate,
    TimeoutInfo,
    TimeoutMessage,
    Tip,
)

SIGNED_INVALID: dict[str, str] = {
    "bad_height": "as leader, fresh blocks with seq_num = parent's + 2 (breaks T-SEQ)",
    "bad_timestamp": "as leader, fresh blocks 1 ns older than their parent (breaks T-TIME)",
    "bad_reproposal": "after a tip-won TC, reproposes a block other than the tip (breaks W3n)",
    "forged_tc_rank": "a TC whose high extend is not its maximum rank (breaks TC9)",
    "strip_timeouts": "relays others' timeouts with the tip vote stripped (breaks TO-AUTHOR)",
}
# The rule each behaviour attacks (the TEST-ONLY switch that makes it succeed).
ATTACKED_RULE: dict[str, str] = {
    "bad_height": "T-SEQ",
    "bad_timestamp": "T-TIME",
    "bad_reproposal": "W3n",
    "forged_tc_rank": "TC9",
    "strip_timeouts": "TO-AUTHOR",
}
MAX_TRACKED_TIMEOUT_ROUNDS = 64
MAX_TRACKED_TIPS = 4096


class SignedInvalid:
    """State and rewrites of one signed-but-invalid behaviour on one node."""

    def __init__(self, machine: Any):
        self.m = machine  # the ByzantineMachine (signer, inner core, validators, epoch)
        self.timeouts: dict[int, dict[int, TimeoutMessage]] = {}  # round -> author -> msg
        self.tips: dict[bytes, Tip] = {}  # every tip seen: candidates for bad reproposals
        self.forged_timeouts: dict[int, tuple[TimeoutMessage, Tip]] = {}  # round -> (msg, P)

    # ------------------------------------------------------------------ observing

    def observe(self, sender: int, message: Any) -> list[Any]:
        """Record what the behaviour needs; strip_timeouts answers with its relays."""
        from consensus.byzantine import tips_in

        if len(self.tips) < MAX_TRACKED_TIPS:
            for tip in tips_in(message):
                self.tips.setdefault(codec.block_id(tip.header), tip)
        if type(message) is not TimeoutMessage:
            return []
        round_ = message.info.round
        self.timeouts.setdefault(round_, {}).setdefault(message.author, message)
        _keep_newest(self.timeouts)
        if self.m.behaviour == "strip_timeouts" and sender == message.author:
            return self._strip(message)
        return []

    def _strip(self, message: TimeoutMessage) -> list[Any]:
        if not self.m.active(message.info.round) or message.author == self.m.index:
            return []
        copy = msgspec.structs.replace(message, tip_vote_signature=None)
        return [Send(peer, copy) for peer in self.m._peers() if peer != message.author]

    # ------------------------------------------------------------------ rewriting

    def rewrite(self, command: Send | Broadcast, message: Any) -> list[Any] | None:
        """The replacement of one outgoing command, or None to leave it as it is."""
        behaviour = self.m.behaviour
        if (
            behaviour == "bad_reproposal"
            and type(message) is RoundRecoveryMessage
            and message.author == self.m.index
        ):  # it lacks the tip: it proposes another block instead of asking for NEs
            return self._bad_reproposal(command, message.round, message.epoch, message.tc)
        if (
            behaviour == "forged_tc_rank"
            and type(message) in (ProposalMessage, RoundRecoveryMessage)
            and message.author == self.m.index
        ):
            return self._forged_tc_proposal(command, message.round, message.epoch)
        if type(message) is ProposalMessage and message.author == self.m.index:
            fresh = message.tip.block_round == message.round
            if behaviour == "bad_height" and fresh:
                return self._resigned(command, message, seq_delta=1)
            if behaviour == "bad_timestamp" and fresh:
                return self._resigned(command, message, time_back=True)
            if behaviour == "bad_reproposal" and message.last_round_tc is not None:
                return self._bad_reproposal(
                    command, message.round, message.epoch, message.last_round_tc
                )
        own_timeout = type(message) is TimeoutMessage and message.author == self.m.index
        if behaviour == "forged_tc_rank" and own_timeout:
            return self._forged_timeout(command, message)
        return None

    def _with(self, command: Send | Broadcast, message: Any) -> list[Any]:
        if isinstance(command, Send):
            return [Send(command.to, message)]
        return [Broadcast(message)]

    def _resigned(
        self,
        command: Send | Broadcast,
        proposal: ProposalMessage,
        *,
        seq_delta: int = 0,
        time_back: bool = False,
    ) -> list[Any] | None:
        """The same proposal with its header's height or time made invalid, re-signed."""
        header = proposal.tip.header
        changes: dict[str, int] = {}
        if seq_delta:
            changes["seq_num"] = header.seq_num + seq_delta
        if time_back:
            parent = self.m.inner.block(header.parent_id)
            parent_time = parent[0].header.timestamp_ns if parent is not None else 0
            if parent_time == 0:
                return None  # nothing earlier than time 0: leave the proposal honest
            changes["timestamp_ns"] = parent_time - 1
        bad_header = msgspec.structs.replace(header, **changes)
        self.m._suppressed.add(codec.block_id(header))  # the honest block never shows up
        tip = self.m.signer.tip(bad_header, proposal.tip.fresh_certificate)
        bad = self.m.signer.proposal(
            proposal.round, proposal.epoch, tip, proposal.body, proposal.last_round_tc
        )
        return self._with(command, bad)

    def _bad_reproposal(
        self, command: Send | Broadcast, round_: int, epoch: int, tc: TimeoutCertificate
    ) -> list[Any] | None:
        """In round `round_` after `tc` (won by Tip(T)): repropose another held block."""
        if not isinstance(tc.high_extend, Tip):
            return None
        winner = tc.high_extend
        winner_id = codec.block_id(winner.header)
        other = self._older_sibling(winner) or self._held(winner.header.parent_id)
        if other is None or codec.block_id(other[0].header) == winner_id:
            return None
        tip, body = other
        bad = self.m.signer.proposal(round_, epoch, tip, body, tc)
        return self._with(command, bad)

    def _older_sibling(self, winner: Tip) -> tuple[Tip, Any] | None:
        """A held block on the winner's parent QC round, older than the winner."""
        header = winner.header
        for block_id, tip in sorted(self.tips.items(), key=lambda kv: kv[1].block_round):
            if (
                tip.header.qc.round == header.qc.round
                and tip.block_round < header.block_round
                and block_id != codec.block_id(header)
            ):
                held = self._held(block_id)
                if held is not None:
                    return held
        return None

    def _held(self, block_id: bytes) -> tuple[Tip, Any] | None:
        return self.m.inner.block(block_id)

    def _forged_timeout(
        self, command: Send | Broadcast, message: TimeoutMessage
    ) -> list[Any] | None:
        """Its own timeout of round r with Tip(P), P the block of its high QC."""
        round_ = message.info.round
        known = self.forged_timeouts.get(round_)
        if known is not None:
            return self._with(command, known[0])
        inner = self.m.inner
        held = self._held(inner.high_qc.block_id)
        if held is None:
            return None
        low = held[0]
        if extend_rank(low) >= extend_rank(message.high_extend):
            return None
        base = low.header.qc
        info = TimeoutInfo(
            epoch=message.info.epoch,
            round=round_,
            high_qc_round=base.round,
            high_tip_round=low.block_round,
        )
        last = None
        if round_ != base.round + 1:
            last = inner.high_certificate
            if last.round != round_ - 1:
                return None
        forged = self.m.signer.timeout(info, low, last, tip_vote=False)
        self.forged_timeouts[round_] = (forged, low)
        self.timeouts.setdefault(round_, {})[self.m.index] = forged
        _keep_newest(self.forged_timeouts)
        _keep_newest(self.timeouts)
        return self._with(command, forged)

    def _forged_tc_proposal(
        self, command: Send | Broadcast, proposal_round: int, epoch: int
    ) -> list[Any] | None:
        """Replace its proposal (or RoundRecovery) for the round after r by a reproposal of P
        with a TC(r) whose high extend is Tip(P) although its entries rank higher (needs
        a quorum of round-r timeouts, its own forged one included)."""
        round_ = proposal_round - 1
        forged_own = self.forged_timeouts.get(round_)
        timeouts = self.timeouts.get(round_, {})
        if forged_own is None or not self.m.validators.has_quorum(timeouts):
            return None
        low = forged_own[1]
        tc: TimeoutCertificate = build_tc(
            self.m.epoch, round_, timeouts.values(), self.m.validators
        )
        if extend_rank(tc.high_extend) <= extend_rank(low):
            return None  # nothing ranks above P: the honest TC would name P anyway
        forged_tc = msgspec.structs.replace(tc, high_extend=low)
        held = self._held(codec.block_id(low.header))
        if held is None:
            return None
        bad = self.m.signer.proposal(proposal_round, epoch, low, held[1], forged_tc)
        return self._with(command, bad)


def _keep_newest(by_round: dict[int, Any]) -> None:
    """Bound per-round state: forget the oldest rounds beyond MAX_TRACKED_TIMEOUT_ROUNDS."""
    while len(by_round) > MAX_TRACKED_TIMEOUT_ROUNDS:
        del by_round[min(by_round)]
