"""A per-round record of what happened in a run, for scenario assertions and debugging.

`Timeline` is an engine observer. It keeps, in order: every proposal sent (by anyone),
every vote and timeout sent, TCs/QCs/NECs seen inside messages, commits and Voted marks
per instance, and round entries. `describe()` prints it compactly (`sedna sim run
--timeline`); tests query the lists directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensus import codec
from consensus.events import (
    Broadcast,
    CommitBlocks,
    MarkVoted,
    RevertVoted,
    RoundEntered,
    Send,
    Trace,
)
from consensus.messages import (
    AdvanceRoundMessage,
    NoEndorsementCertificate,
    NoEndorsementMessage,
    NoTipCertificate,
    ProposalMessage,
    RoundRecoveryMessage,
    TimeoutMessage,
    Tip,
    VoteMessage,
)
from netsim.engine import Observer, Simulator
from netsim.invariants import certificates_in


@dataclass(frozen=True, slots=True)
class ProposalFact:
    time_ms: float
    sender: int  # identity
    round: int
    block_id: bytes
    block_round: int
    seq_num: int
    parent_id: bytes
    fresh_certificate: str | None  # "nec" | "notip" | None
    tc_round: int | None
    recipients: tuple[int, ...] | None  # None: broadcast

    @property
    def reproposal(self) -> bool:
        return self.block_round < self.round


@dataclass
class Timeline(Observer):
    proposals: list[ProposalFact] = field(default_factory=list)
    votes: list[tuple[float, int, int, bytes]] = field(default_factory=list)  # t, voter, round, id
    timeouts: list[tuple[float, int, int, str]] = field(
        default_factory=list
    )  # t, author, round, extend
    tip_votes: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    nes: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, author, round, tip_qc
    recoveries: list[tuple[float, int, int]] = field(default_factory=list)
    advances: list[tuple[float, int, str, int]] = field(default_factory=list)  # t, who, kind, round
    commits: dict[int, list[tuple[float, int, bytes]]] = field(default_factory=dict)
    voted: dict[int, list[tuple[float, int, bytes, int]]] = field(default_factory=dict)
    reverts: list[tuple[float, int, bytes, int]] = field(default_factory=list)
    rounds: dict[int, list[tuple[float, int, str]]] = field(default_factory=dict)
    traces: list[tuple[float, int, str, dict[str, Any]]] = field(default_factory=list)
    necs: set[tuple[int, int]] = field(default_factory=set)

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        t = sim.now_ms
        kind = type(command)
        identity = sim.hosts[node].identity
        if kind is Send or kind is Broadcast:
            to = (command.to,) if kind is Send else None
            self._message(t, identity, command.message, to)
        elif kind is CommitBlocks:
            for block in command.blocks:
                self.commits.setdefault(node, []).append((t, block.header.seq_num, block.block_id))
        elif kind is MarkVoted:
            current = self.rounds.get(node, [(0.0, 1, "start")])[-1][1]
            self.voted.setdefault(node, []).append(
                (t, current, command.block_id, command.block_round)
            )
        elif kind is RevertVoted:
            self.reverts.append((t, node, command.block_id, command.block_round))
        elif kind is RoundEntered:
            self.rounds.setdefault(node, []).append((t, command.round, command.via))
        elif kind is Trace:
            self.traces.append((t, node, command.name, dict(command.detail)))

    def _message(self, t: float, sender: int, message: Any, to: tuple[int, ...] | None) -> None:
        for certificate in certificates_in(message):
            if isinstance(certificate, NoEndorsementCertificate):
                self.necs.add((certificate.round, certificate.tip_qc_round))
        kind = type(message)
        if kind is ProposalMessage:
            tip = message.tip
            header = tip.header
            fresh = tip.fresh_certificate
            self.proposals.append(
                ProposalFact(
                    t,
                    sender,
                    message.round,
                    codec.block_id(header),
                    header.block_round,
                    header.seq_num,
                    header.qc.block_id,
                    None
                    if fresh is None
                    else ("notip" if isinstance(fresh, NoTipCertificate) else "nec"),
                    None if message.last_round_tc is None else message.last_round_tc.round,
                    to,
                )
            )
        elif kind is VoteMessage:
            self.votes.append((t, sender, message.vote.round, message.vote.block_id))
        elif kind is TimeoutMessage:
            extend = "tip" if isinstance(message.high_extend, Tip) else "qc"
            self.timeouts.append((t, sender, message.info.round, extend))
            if message.tip_vote_signature is not None and isinstance(message.high_extend, Tip):
                block_id = codec.block_id(message.high_extend.header)
                self.tip_votes.append((t, sender, message.info.round, block_id))
        elif kind is NoEndorsementMessage:
            ne = message.no_endorsement
            self.nes.append((t, sender, ne.round, ne.tip_qc_round))
        elif kind is RoundRecoveryMessage:
            self.recoveries.append((t, sender, message.round))
        elif kind is AdvanceRoundMessage:
            certificate = message.certificate
            name = "qc" if type(certificate).__name__ == "QuorumCertificate" else "tc"
            self.advances.append((t, sender, name, certificate.round))

    # ------------------------------------------------------------------ queries

    def fresh_proposal(self, round_: int, sender: int | None = None) -> ProposalFact | None:
        for fact in self.proposals:
            fresh = fact.round == round_ and fact.block_round == round_
            if fresh and (sender is None or fact.sender == sender):
                return fact
        return None

    def finalized_at(self, node: int, height: int) -> bytes | None:
        for _t, seq, block_id in self.commits.get(node, []):
            if seq == height:
                return block_id
        return None

    def timed_out_rounds(self, honest: set[int] | frozenset[int]) -> set[int]:
        return {r for _t, author, r, _e in self.timeouts if author in honest}

    def describe(self, limit: int = 400) -> str:
        lines: list[tuple[float, str]] = []
        for p in self.proposals:
            what = "repropose" if p.reproposal else "propose"
            cert = f" fresh={p.fresh_certificate}" if p.fresh_certificate else ""
            tc = f" tc={p.tc_round}" if p.tc_round is not None else ""
            to = "" if p.recipients is None else f" to={list(p.recipients)}"
            lines.append(
                (
                    p.time_ms,
                    f"N{p.sender} {what} r{p.round} block {p.block_id.hex()[:8]} "
                    f"(round {p.block_round}, height {p.seq_num}, parent {p.parent_id.hex()[:8]})"
                    f"{cert}{tc}{to}",
                )
            )
        for t, voter, r, block_id in self.votes:
            lines.append((t, f"N{voter} vote r{r} {block_id.hex()[:8]}"))
        for t, author, r, extend in self.timeouts:
            lines.append((t, f"N{author} timeout r{r} extend={extend}"))
        for t, author, r, q in self.nes:
            lines.append((t, f"N{author} NE r{r} tip_qc_round={q}"))
        for t, author, r in self.recoveries:
            lines.append((t, f"N{author} round-recovery r{r}"))
        for t, who, name, r in self.advances:
            lines.append((t, f"N{who} advance {name}{r}"))
        for node, entries in self.commits.items():
            for t, seq, block_id in entries:
                lines.append((t, f"N{node} finalize height {seq} {block_id.hex()[:8]}"))
        for node, entries in self.voted.items():
            for t, _current, block_id, block_round in entries:
                lines.append((t, f"N{node} voted-mark {block_id.hex()[:8]} (round {block_round})"))
        for t, node, block_id, block_round in self.reverts:
            lines.append((t, f"N{node} REVERT {block_id.hex()[:8]} (round {block_round})"))
        lines.sort(key=lambda item: item[0])
        return "\n".join(f"{t:10.3f} {text}" for t, text in lines[:limit])
