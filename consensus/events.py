"""Events into and commands out of the consensus core: the sans-IO contract.

`ConsensusCore.handle(event) -> list[Command]`. Drivers (the asyncio node, the
simulator, the in-process harness) turn the world into events and execute the
returned commands **in order**: a `PersistSafety` always precedes the `Send` or
`Broadcast` it protects, so executing in order is what makes crash recovery safe.

Time enters only as `now_ns` on events; randomness never enters the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from consensus.messages import BlockBody, BlockHeader, Message, Tip

if TYPE_CHECKING:  # pragma: no cover
    from consensus.safety import SafetyState

TimerKind = Literal["round", "vote_pace"]
TraceName = Literal[
    "dropped",  # an input was refused (detail: reason); the state is unchanged
    "chain_sync_done",
    "chain_sync_requested",
    "equivocation",
    "local_timeout",
    "nec_formed",
    "no_endorsement",
    "own_proposal_rejected",
    "proposal",
    "qc_formed",
    "reproposal",
    "revert_without_evidence",
    "round_recovery",
    "round_recovery_held",
    "sync_requested",
    "tc_formed",
    "timeout_echo",
    "vote_refused",
    "voted",
    "lanes_payload",  # emitted by netsim's lane driver, not by the core
]
"""Every trace the core emits (a test checks the core's calls against this list)."""

# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Start:
    """First event after construction (fresh or recovered): arms timers, may propose."""

    now_ns: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A decoded message from validator `sender` (authenticated by the transport)."""

    now_ns: int
    sender: int
    message: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer set by `SetTimer(kind, round, ...)` expired (stale rounds are ignored)."""

    now_ns: int
    kind: TimerKind
    round: int


@dataclass(frozen=True, slots=True)
class PayloadReady:
    """The driver's answer to `RequestPayload`: the body to propose in `round`."""

    now_ns: int
    round: int
    payload: bytes


Event = Start | MessageReceived | TimerFired | PayloadReady

# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Send:
    to: int
    message: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every validator except this one (the core handles its own copy itself)."""

    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Arm (or re-arm, replacing the pending one of the same kind) a timer."""

    kind: TimerKind
    round: int
    delay_ms: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    kind: TimerKind


@dataclass(frozen=True, slots=True)
class PersistSafety:
    """Durably store the safety state before executing any later command of the batch."""

    state: SafetyState


@dataclass(frozen=True, slots=True)
class PersistBlock:
    """Store a block that entered the block tree (needed to serve sync and to restart)."""

    tip: Tip
    body: BlockBody
    block_id: bytes


@dataclass(frozen=True, slots=True)
class RequestPayload:
    """This node leads `round` with a fresh block at `seq_num`; answer with `PayloadReady`."""

    round: int
    seq_num: int
    parent_id: bytes


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    block_id: bytes
    header: BlockHeader
    body: BlockBody


@dataclass(frozen=True, slots=True)
class CommitBlocks:
    """Full finality: these blocks, in increasing height, extend the finalized chain."""

    blocks: tuple[CommittedBlock, ...]


@dataclass(frozen=True, slots=True)
class MarkVoted:
    """Speculative finality: a QC certifies this block (state 'Voted')."""

    block_id: bytes
    seq_num: int
    block_round: int


@dataclass(frozen=True, slots=True)
class EquivocationEvidence:
    """Two different headers for the same block round, both signed by that round's leader."""

    leader: int
    block_round: int
    first: Tip
    second: Tip


@dataclass(frozen=True, slots=True)
class RecordEquivocation:
    evidence: EquivocationEvidence


@dataclass(frozen=True, slots=True)
class RevertVoted:
    """A Voted block was replaced at its height; only legal with equivocation evidence."""

    block_id: bytes
    seq_num: int
    block_round: int
    evidence: EquivocationEvidence | None


@dataclass(frozen=True, slots=True)
class RoundEntered:
    round: int
    via: Literal["qc", "tc", "start"]


@dataclass(frozen=True, slots=True)
class Trace:
    """A protocol fact for metrics and checkers, e.g. 'tc_formed', 'reproposal', 'nec_formed'."""

    name: TraceName
    detail: dict[str, Any] = field(default_factory=dict)


Command = (
    Send
    | Broadcast
    | SetTimer
    | CancelTimer
    | PersistSafety
    | PersistBlock
    | RequestPayload
    | CommitBlocks
    | MarkVoted
    | RecordEquivocation
    | RevertVoted
    | RoundEntered
    | Trace
)
