"""The MonadBFT consensus core: a pure state machine, `handle(event) -> list[Command]`.

Normative mode "monadbft" follows monad-bft's fast-recovery protocol ([FR] in
`shared/reference/monadbft.md`); "v1" and "vanilla" exist to compare against (see
docs/protocol.md for the exact differences). Each handler validates its input completely
before it changes anything: a rejected input returns at most `Trace('dropped', {reason})`
and leaves the state as it was. Commands come out in execution order; `PersistSafety`
always precedes the send it protects.

Rule names used in comments here are defined in docs/protocol.md (and in safety.py,
pacemaker.py, vote_state.py, blocktree.py for the rules those modules own).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

from consensus import codec
from consensus.blocktree import BlockTree, TreeBlock
from consensus.certificates import (
    PROTOCOLS,
    InvalidMessage,
    Signer,
    Verifier,
    build_nec,
    build_tc,
    extend_qc,
    notip_from_tc,
)
from consensus.crypto import KeyPair, SignatureScheme
from consensus.events import (
    Broadcast,
    Command,
    CommitBlocks,
    CommittedBlock,
    EquivocationEvidence,
    Event,
    MarkVoted,
    MessageReceived,
    PayloadReady,
    PersistBlock,
    PersistSafety,
    RecordEquivocation,
    RequestPayload,
    RevertVoted,
    RoundEntered,
    Send,
    SetTimer,
    Start,
    TimerFired,
    Trace,
    TraceName,
)
from consensus.messages import (
    GENESIS_BLOCK_ID,
    GENESIS_QC,
    MAX_PAYLOAD_BYTES,
    MAX_SYNC_BLOCKS,
    AdvanceRoundMessage,
    BlockBody,
    BlockHeader,
    BlockSyncRequest,
    BlockSyncResponse,
    ChainSyncRequest,
    ChainSyncResponse,
    Message,
    NoEndorsement,
    NoEndorsementCertificate,
    NoEndorsementMessage,
    NoTipCertificate,
    ProposalMessage,
    QuorumCertificate,
    RoundCertificate,
    RoundRecoveryMessage,
    SyncedBlock,
    TimeoutCertificate,
    TimeoutInfo,
    TimeoutMessage,
    Tip,
    Vote,
    VoteMessage,
)
from consensus.mutations import TEST_MUTATIONS as _RULE_SWITCH_NAMES
from consensus.pacemaker import Pacemaker
from consensus.safety import (
    SafetyState,
    after_no_endorse,
    after_propose,
    after_recovery_request,
    after_timeout,
    after_vote,
    may_no_endorse,
    vote_refusal,
    without_stale_tip,
)
from consensus.validators import LeaderSchedule, ValidatorSet, decode_bitmap
from consensus.vote_state import VoteState

Protocol_ = Literal["monadbft", "v1", "vanilla"]

# TEST ONLY: each switch disables one named rule (consensus/mutations.py), to prove that
# some test fails without it (the mutation matrix). Never enabled outside tests.
TEST_MUTATIONS = _RULE_SWITCH_NAMES

MAX_TRACKED_ROUNDS = 1024  # bound on per-round bookkeeping (proposals, tips, sync requests)
MAX_FINALIZED_IDS = 65_536  # finalized ids kept for `finalized_chain()`
CHAIN_SYNC_MIN_GAP = 2 * MAX_SYNC_BLOCKS  # heights: a larger gap is filled forward (CS1)
CHAIN_SYNC_BATCH = 256  # blocks asked for per chain-sync request (MAX_CHAIN_SYNC_BLOCKS)


@dataclass(frozen=True)
class CoreConfig:
    protocol: Protocol_ = "monadbft"
    delta_ms: float = 100.0  # Δ; round timer = 3Δ + vote_pace + Δ unless set
    vote_pace_ms: float = 0.0
    round_timeout_ms: float | None = None
    timeout_backoff: float = 1.0  # per consecutive TC round (1.0 = none, as monad-bft)
    max_round_timeout_ms: float = 30_000.0
    epoch: int = 1
    test_mutations: frozenset[str] = frozenset()  # TEST ONLY, see TEST_MUTATIONS

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}")
        unknown = set(self.test_mutations) - TEST_MUTATIONS
        if unknown:
            raise ValueError(f"unknown test mutations {sorted(unknown)}")
        if self.delta_ms <= 0 or self.vote_pace_ms < 0:
            raise ValueError("delta_ms must be positive and vote_pace_ms non-negative")
        if self.round_timeout_ms is not None and self.round_timeout_ms <= 0:
            raise ValueError("round_timeout_ms must be positive")

    @property
    def base_round_timeout_ms(self) -> float:
        if self.round_timeout_ms is not None:
            return self.round_timeout_ms
        return 3 * self.delta_ms + self.vote_pace_ms + self.delta_ms


class BlockValidator(Protocol):
    """Pluggable application validity ("coherency"); must be pure and deterministic."""

    def validate(self, header: BlockHeader, body: BlockBody) -> bool: ...


class LinkValidator(Protocol):
    """A block validator whose rules also read the parent block (B-APP-LINK): optional.
    Certified lanes use it for CUT-MONOTONE (a cut never lowers its parent's lane tips,
    consensus/lanes/cut.py). Must be pure and deterministic, like `BlockValidator`."""

    def validate_link(self, parent: BlockBody, header: BlockHeader, body: BlockBody) -> bool: ...


class AcceptAllBlocks:
    def validate(self, header: BlockHeader, body: BlockBody) -> bool:
        return True


_GENESIS_BODY = BlockBody(payload=b"")  # what a child of genesis reads as its parent's body


@dataclass
class RecoveredState:
    """What a restarted node is built from: the last persisted safety state, the blocks
    PersistBlock wrote, and its finalized head."""

    safety: SafetyState
    blocks: list[tuple[Tip, BlockBody]]
    finalized_block_id: bytes
    finalized_height: int


@dataclass
class _PendingProposal:
    """A fresh proposal waiting for the driver's payload."""

    round: int
    parent_qc: QuorumCertificate
    fresh_certificate: NoEndorsementCertificate | NoTipCertificate | None
    last_round_tc: TimeoutCertificate | None
    seq_num: int
    parent_timestamp_ns: int


@dataclass
class _ChainSync:
    """The one outstanding chain-sync request: blocks above `after_block_id` from `peer`."""

    after_block_id: bytes
    peer: int
    sent_ns: int
    empty_answers: int = 0  # peers in a row that had nothing above `after_block_id`


@dataclass
class _VotedEntry:
    block_id: bytes
    qc_round: int
    block_round: int


@dataclass
class _RoundLocal:
    """Bookkeeping that belongs to the current round only (reset on entering a round)."""

    own_timeout: TimeoutMessage | None = None
    pending_proposal: _PendingProposal | None = None
    pending_vote: ProposalMessage | None = None  # deferred by vote pacing
    awaiting_ancestors: ProposalMessage | None = None  # vote waits for block sync
    no_endorsements: dict[NoEndorsement, dict[int, bytes]] = field(default_factory=dict)
    ne_authors: set[int] = field(default_factory=set)
    nec: NoEndorsementCertificate | None = None


def _commits_last(commands: list[Command]) -> list[Command]:
    """C-EMIT-LAST: CommitBlocks go after every other command of their batch (in order).

    Finalization bookkeeping (the driver's storage and mempool work) then never delays a
    vote, proposal or certificate of the same batch. Nothing a driver does for the other
    commands depends on having executed CommitBlocks first: a payload requested before it
    is built from the not-yet-pruned ancestors, which still exclude the finalized txs.
    """
    if not any(type(c) is CommitBlocks for c in commands):
        return commands
    return [c for c in commands if type(c) is not CommitBlocks] + [
        c for c in commands if type(c) is CommitBlocks
    ]


class _Dropped(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConsensusCore:
    """One validator's MonadBFT state machine. Not thread-safe; drive it from one place."""

    def __init__(
        self,
        *,
        config: CoreConfig,
        validators: ValidatorSet,
        schedule: LeaderSchedule,
        index: int,
        key: KeyPair,
        scheme: SignatureScheme,
        block_validator: BlockValidator | None = None,
        recovered: RecoveredState | None = None,
    ):
        if not validators.contains(index):
            raise ValueError(f"index {index} is not in the validator set")
        if validators.public_key(index) != key.public:
            raise ValueError(f"key does not match validator {index}'s public key")
        self.config = config
        self.validators = validators
        self.schedule = schedule
        self._index = index
        self._protocol = config.protocol
        self._mutations = config.test_mutations
        self.verifier = Verifier(
            validators,
            schedule,
            scheme,
            config.protocol,
            config.epoch,
            test_mutations=config.test_mutations,
        )
        self._signer = Signer(index, key, scheme, verifier=self.verifier)
        self._block_validator: BlockValidator = block_validator or AcceptAllBlocks()
        self._link_validator = getattr(block_validator, "validate_link", None)  # B-APP-LINK
        self._votes = VoteState(
            validators, self._vote_signature_valid, disabled=config.test_mutations
        )
        self._out: list[Command] = []
        self._now_ns = 0
        self._local = _RoundLocal()
        self._handled_proposals: dict[int, bytes] = {}  # round -> first proposal's block id
        self._tips_by_round: dict[int, Tip] = {}  # first verified tip per block round
        self._evidence: dict[int, EquivocationEvidence] = {}
        self._voted: dict[int, _VotedEntry] = {}  # seq_num -> speculatively final block
        self._sync_requested: dict[bytes, int] = {}  # block id -> round requested in
        self._valid_chains: set[bytes] = set()  # pending blocks whose chain passed T-CHAIN
        # pending blocks the block validator accepted while their parent was not connected
        # (it could not see their ancestors): validated again before use (B-APP-CHAIN)
        self._app_unchecked: set[bytes] = set()
        self._chain_sync: _ChainSync | None = None  # forward sync while far behind (CS1-CS4)
        self._last_vote_ns: int | None = None
        self._finalized_ids: deque[bytes] = deque(maxlen=MAX_FINALIZED_IDS)
        self._finalized_height = 0
        self._started = False
        if recovered is None:
            self._safety = SafetyState()
            self._tree = BlockTree()
            self._high_qc: QuorumCertificate = GENESIS_QC
        else:
            self._restore(recovered)
        self._pacemaker = Pacemaker(
            validators,
            base_timeout_ms=config.base_round_timeout_ms,
            backoff=config.timeout_backoff,
            max_timeout_ms=config.max_round_timeout_ms,
            high_certificate=self._high_qc,
            disabled=config.test_mutations,
        )

    def _restore(self, recovered: RecoveredState) -> None:
        """Rebuild from disk: the finalized head, the pending blocks, the highest QC known."""
        by_id = {codec.block_id(tip.header): (tip, body) for tip, body in recovered.blocks}
        root_id = recovered.finalized_block_id
        if root_id == GENESIS_BLOCK_ID:
            self._tree = BlockTree()
        elif root_id in by_id:
            header = by_id[root_id][0].header
            if header.seq_num != recovered.finalized_height:
                raise ValueError("recovered finalized height does not match its block")
            self._tree = BlockTree(root_id, header.seq_num, header.block_round, header.timestamp_ns)
        else:
            raise ValueError("recovered state lacks its finalized block")
        self._finalized_height = recovered.finalized_height
        if root_id != GENESIS_BLOCK_ID:
            self._finalized_ids.append(root_id)
        self._safety = recovered.safety
        high_qc = GENESIS_QC
        for block_id, (tip, body) in sorted(by_id.items(), key=lambda kv: kv[1][0].header.seq_num):
            if tip.header.qc.round > high_qc.round:
                high_qc = tip.header.qc
            if tip.header.seq_num > self._tree.root_seq:
                self._tree.add(TreeBlock(block_id, tip, body))
                self._record_tip(tip, emit=False)
        self._high_qc = high_qc
        self._safety = without_stale_tip(self._safety, high_qc.round, self._protocol)
        self._tree.drain_connected()  # no QC is known yet: nothing to retry

    # ------------------------------------------------------------------ read-only views

    @property
    def index(self) -> int:
        return self._index

    @property
    def current_round(self) -> int:
        return self._pacemaker.current_round

    @property
    def finalized_height(self) -> int:
        return self._finalized_height

    @property
    def finalized_block_id(self) -> bytes:
        return self._tree.root_id

    @property
    def high_qc(self) -> QuorumCertificate:
        return self._high_qc

    @property
    def high_certificate(self) -> RoundCertificate:
        return self._pacemaker.high_certificate

    @property
    def safety_state(self) -> SafetyState:
        return self._safety

    @property
    def pending_blocks(self) -> int:
        return len(self._tree)

    @property
    def vote_signatures_verified(self) -> int:
        return self._votes.signatures_verified

    def block(self, block_id: bytes) -> tuple[Tip, BlockBody] | None:
        block = self._tree.get(block_id)
        return None if block is None else (block.tip, block.body)

    def finalized_chain(self) -> list[bytes]:
        """Finalized block ids, oldest first (the most recent MAX_FINALIZED_IDS)."""
        return list(self._finalized_ids)

    def equivocations(self) -> list[EquivocationEvidence]:
        return [self._evidence[r] for r in sorted(self._evidence)]

    def leader(self, round: int) -> int:
        return self.schedule.leader(round)

    # ------------------------------------------------------------------ entry point

    def handle(self, event: Event) -> list[Command]:
        self._out = []
        self._now_ns = event.now_ns
        try:
            if isinstance(event, MessageReceived):
                self._on_message(event.sender, event.message)
            elif isinstance(event, TimerFired):
                self._on_timer(event)
            elif isinstance(event, PayloadReady):
                self._on_payload(event)
            elif isinstance(event, Start):
                self._on_start()
            else:
                raise _Dropped(f"unknown event {type(event).__name__}")
        except _Dropped as dropped:
            # Raised only before any mutation: the state is unchanged.
            self._out = [Trace("dropped", {"reason": dropped.reason})]
        out, self._out = self._out, []
        return _commits_last(out)

    def _enforced(self, rule: str) -> bool:
        """False only under the TEST-ONLY switch named after `rule` (consensus.mutations)."""
        return rule not in self._mutations

    def _emit(self, command: Command) -> None:
        self._out.append(command)

    def _trace(self, name: TraceName, **detail: object) -> None:
        self._out.append(Trace(name, dict(detail)))

    def _on_message(self, sender: int, message: Message) -> None:
        if not self.validators.contains(sender):
            raise _Dropped(f"sender {sender} is not a validator")
        if not self._started:
            raise _Dropped("core not started")
        if isinstance(message, ProposalMessage):
            self._on_proposal(sender, message)
        elif isinstance(message, VoteMessage):
            self._on_vote(sender, message)
        elif isinstance(message, TimeoutMessage):
            self._on_timeout(sender, message)
        elif isinstance(message, AdvanceRoundMessage):
            self._on_advance_round(sender, message)
        elif isinstance(message, RoundRecoveryMessage):
            self._on_round_recovery(sender, message)
        elif isinstance(message, NoEndorsementMessage):
            self._on_no_endorsement(sender, message)
        elif isinstance(message, BlockSyncRequest):
            self._on_sync_request(sender, message)
        elif isinstance(message, BlockSyncResponse):
            self._on_sync_response(sender, message)
        elif isinstance(message, ChainSyncRequest):
            self._on_chain_sync_request(sender, message)
        elif isinstance(message, ChainSyncResponse):
            self._on_chain_sync_response(sender, message)
        else:
            raise _Dropped(f"unknown message {type(message).__name__}")

    def _verify(self, check, message: object) -> None:
        """Run a stateless Verifier check; a failure drops the input (nothing mutated yet)."""
        try:
            check(message)
        except InvalidMessage as exc:
            raise _Dropped(str(exc)) from None

    # ------------------------------------------------------------------ start and timers

    def _on_start(self) -> None:
        if self._started:
            raise _Dropped("already started")
        self._started = True
        self._emit(RoundEntered(self.current_round, "start"))
        self._arm_round_timer()
        self._try_propose()

    def _arm_round_timer(self) -> None:
        """P-TIMER."""
        if not self._enforced("P-TIMER"):
            return
        self._emit(SetTimer("round", self.current_round, self._pacemaker.round_timeout_ms()))

    def _on_timer(self, event: TimerFired) -> None:
        if not self._started:
            raise _Dropped("core not started")
        if event.round != self.current_round:
            raise _Dropped(f"stale {event.kind} timer for round {event.round}")
        if event.kind == "round":
            self._local_timeout()  # P-TIMER: time out (or re-broadcast) and re-arm
        elif event.kind == "vote_pace":
            pending = self._local.pending_vote
            if pending is None:
                raise _Dropped("no vote waiting for the vote pacing timer")
            self._local.pending_vote = None
            self._try_vote(pending, paced=True)
        else:
            raise _Dropped(f"unknown timer kind {event.kind!r}")

    # ------------------------------------------------------------------ rounds and QCs

    def _enter_round(self, via: Literal["qc", "tc"]) -> None:
        """Bookkeeping after the pacemaker moved to a new round (P-ROUND)."""
        self._local = _RoundLocal()
        self._votes.prune_below(self.current_round)
        self._emit(RoundEntered(self.current_round, via))
        self._arm_round_timer()

    def _process_qc(self, qc: QuorumCertificate, hint: int) -> None:
        """process_qc (reference §4.6) on a verified QC.

        Deviation: the bookkeeping (high QC, Voted, commit) runs for every QC above the
        finalized round, not only for QCs >= the current round; only the round advance
        requires `qc.round >= current_round`.
        """
        if qc.round <= self._tree.root_round:
            return
        if qc.round > self._high_qc.round:
            self._high_qc = qc
            self._safety = without_stale_tip(self._safety, qc.round, self._protocol)  # S-HIGH-TIP
        if self._tree.add_qc(qc):
            self._mark_voted(qc)
            self._try_commit(qc)
        if self._pacemaker.advance(qc):
            self._enter_round("qc")
        missing = self._tree.missing_ancestor(qc.block_id)
        if missing is not None:
            self._request_sync(
                missing, hint if hint != self._index else self._qc_peer(qc), qc.round
            )

    def _qc_peer(self, qc: QuorumCertificate) -> int:
        """A signer of the QC other than this node (it voted, so it held the block)."""
        for signer in decode_bitmap(qc.signers, len(self.validators)):
            if signer != self._index:
                return signer
        return self._index

    def _process_tc(self, tc: TimeoutCertificate, hint: int) -> None:
        """process_certificate(TC) on a verified TC."""
        extend = tc.high_extend
        if isinstance(extend, Tip):
            self._record_tip(extend)
        self._process_qc(extend_qc(extend), hint)
        if self._pacemaker.advance(tc):
            self._enter_round("tc")

    def _mark_voted(self, qc: QuorumCertificate) -> None:
        """Speculative finality (MarkVoted) for a connected certified block; a conflicting
        Voted block at the same height is reverted (RevertVoted, with evidence if any)."""
        block = self._tree.get(qc.block_id)
        if block is None or not self._tree.is_pending(block.block_id):
            return
        if not self._tree.is_connected(block.block_id):
            return  # retried when the ancestors arrive (C-RETRY)
        known = self._voted.get(block.seq_num)
        if known is not None:
            if known.block_id == block.block_id or known.qc_round > qc.round:
                return
            self._revert_voted(block.seq_num, known)
        self._voted[block.seq_num] = _VotedEntry(block.block_id, qc.round, block.block_round)
        self._emit(MarkVoted(block.block_id, block.seq_num, block.block_round))

    def _revert_voted(self, seq_num: int, entry: _VotedEntry) -> None:
        evidence = self._evidence.get(entry.block_round)
        if evidence is None:
            self._trace("revert_without_evidence", block_round=entry.block_round, seq_num=seq_num)
        self._emit(RevertVoted(entry.block_id, seq_num, entry.block_round, evidence))

    def _try_commit(self, qc: QuorumCertificate) -> None:
        """C-TWO-CHAIN (the TEST-ONLY mutation "commit_non_consecutive" drops the check)."""
        consecutive = "commit_non_consecutive" not in self._mutations
        path = self._tree.committable(qc, consecutive_only=consecutive)
        if path:
            self._commit(path)

    def _commit(self, path: list[TreeBlock]) -> None:
        for block in path:
            known = self._voted.get(block.seq_num)
            if known is not None and known.block_id != block.block_id:
                self._revert_voted(block.seq_num, known)
        self._tree.commit(path)
        self._finalized_height = self._tree.root_seq
        self._finalized_ids.extend(block.block_id for block in path)
        self._emit(CommitBlocks(tuple(CommittedBlock(b.block_id, b.header, b.body) for b in path)))
        root_seq, root_round = self._tree.root_seq, self._tree.root_round
        self._voted = {s: e for s, e in self._voted.items() if s > root_seq}
        self._tips_by_round = {r: t for r, t in self._tips_by_round.items() if r > root_round}
        self._evidence = {r: e for r, e in self._evidence.items() if r > root_round}
        self._handled_proposals = {
            r: b for r, b in self._handled_proposals.items() if r > root_round
        }
        self._sync_requested = {
            b: r for b, r in self._sync_requested.items() if not self._tree.is_finalized(b)
        }
        self._valid_chains = {b for b in self._valid_chains if self._tree.is_pending(b)}
        self._app_unchecked = {b for b in self._app_unchecked if self._tree.is_pending(b)}

    def _retry_blocks_arrived(self) -> None:
        """C-RETRY: Voted marks and commits whose blocks were missing. Only the QCs of blocks
        that just became connected can change anything (T-CONNECTED), so each block's QC is
        retried once when it connects, not every QC on every arrival."""
        arrived = self._tree.drain_connected()
        if not self._enforced("C-RETRY"):
            return
        qcs = [qc for block_id in arrived if (qc := self._tree.qc_for(block_id)) is not None]
        for qc in sorted(qcs, key=lambda qc: qc.round, reverse=True):
            self._mark_voted(qc)
            self._try_commit(qc)

    # ------------------------------------------------------------------ equivocation

    def _record_tip(self, tip: Tip, *, emit: bool = True) -> bool:
        """EQ: two different headers for one block round, both signed by that round's leader
        (tips reach here only after verification, rule T1). Returns whether new evidence."""
        block_round = tip.header.block_round
        if block_round <= self._tree.root_round:
            return False
        first = self._tips_by_round.get(block_round)
        if first is None:
            if len(self._tips_by_round) < MAX_TRACKED_ROUNDS:
                self._tips_by_round[block_round] = tip
            return False
        if first.header == tip.header or block_round in self._evidence:
            return False
        if not self._enforced("EQ"):
            return False
        evidence = EquivocationEvidence(tip.header.author, block_round, first, tip)
        self._evidence[block_round] = evidence
        if emit:
            self._emit(RecordEquivocation(evidence))
            self._trace("equivocation", leader=tip.header.author, block_round=block_round)
        return True

    # ------------------------------------------------------------------ block tree entry

    def _link_refusal(
        self, header: BlockHeader, parent_seq: int, parent_timestamp_ns: int
    ) -> str | None:
        """T-SEQ and T-TIME on one child-parent link (the one place both rules live)."""
        if header.seq_num != parent_seq + 1 and self._enforced("T-SEQ"):  # T-SEQ
            return f"seq_num {header.seq_num} does not follow its parent's {parent_seq}"
        if header.timestamp_ns < parent_timestamp_ns and self._enforced("T-TIME"):  # T-TIME
            return "timestamp earlier than its parent's"
        return None

    def _app_link_refusal(self, header: BlockHeader, body: BlockBody) -> str | None:
        """B-APP-LINK: the block validator accepts the block as a child of its parent,
        when the parent is held (otherwise T-CHAIN re-checks the link once it arrives)."""
        if self._link_validator is None or not self._enforced("B-APP-LINK"):
            return None
        if header.parent_id == GENESIS_BLOCK_ID:
            parent_body = _GENESIS_BODY
        else:
            parent = self._tree.get(header.parent_id)
            if parent is None:
                return None
            parent_body = parent.body
        if not self._link_validator(parent_body, header, body):
            return "rejected by the block validator as a child of its parent"
        return None

    def _chain_refusal(self, block_id: bytes) -> str | None:
        """T-CHAIN and B-APP-CHAIN along the held chain from the finalized head up to
        `block_id` (None: nothing held is refused).

        T-CHAIN: every held link obeys T-SEQ and T-TIME. A block whose parent was missing
        entered the tree unchecked against it.
        B-APP-CHAIN: a block the block validator accepted while its parent was not
        connected (a proposal above a gap, a block sync response validated newest first)
        is validated again, oldest first, once the whole chain is held: the validator can
        then see its ancestors (the node's TX-ONCE rule needs them).

        This is re-run before every vote, reproposal and NE decision, so such a block is
        never endorsed once it turns out not to fit. Chains found valid up to the root are
        remembered (their links cannot change: ids hash the headers).
        """
        check_links = self._enforced("T-CHAIN")
        check_app = self._enforced("B-APP-CHAIN")
        if not (check_links or check_app):
            return None
        walked: list[bytes] = []
        current = block_id
        for _ in range(len(self._tree) + 1):  # bounded walk
            if current in self._valid_chains or current == self._tree.root_id:
                break
            block = self._tree.get(current)
            if block is None or not self._tree.is_pending(current):
                return None  # not connected (yet): the held part had no broken link
            parent = self._tree.parent_seq_and_timestamp(block.parent_id)
            if parent is not None and check_links:
                refusal = self._link_refusal(block.header, *parent)
                if refusal is not None:
                    return refusal
            refusal = self._app_link_refusal(block.header, block.body)  # B-APP-LINK
            if refusal is not None:
                return refusal
            walked.append(current)
            current = block.parent_id
        else:
            return None
        if check_app:
            for held_id in reversed(walked):  # oldest first: each one sees its ancestors
                if held_id not in self._app_unchecked:
                    continue
                held = self._tree.get(held_id)
                assert held is not None
                if not self._block_validator.validate(held.header, held.body):
                    return "rejected by the block validator once its ancestors were known"
                self._app_unchecked.discard(held_id)
        self._valid_chains.update(walked)
        return None

    def _detached(self, header: BlockHeader) -> bool:
        """Whether a block's parent is not connected to the finalized head right now (so
        the block validator cannot see the block's ancestors)."""
        return not self._tree.is_connected(header.parent_id)

    def _block_refusal(self, header: BlockHeader, body: BlockBody) -> str | None:
        """Block validity that does not need the signature checks (done by the Verifier)."""
        if header.author != self.leader(header.block_round):  # T1 (re-checked, cheap)
            return "block author is not the leader of its round"
        if header.body_id != codec.body_id(body):  # W1
            return "block body does not match its header"
        parent = self._tree.parent_seq_and_timestamp(header.parent_id)
        if parent is not None:
            refusal = self._link_refusal(header, *parent)  # T-SEQ, T-TIME
            if refusal is not None:
                return refusal
        elif self._tree.is_finalized(header.parent_id) and self._enforced("T-FORK"):
            return "extends a finalized block other than the head"  # T-FORK
        if header.seq_num <= self._tree.root_seq and self._enforced("T-HEIGHT"):
            return "at or below the finalized height"  # T-HEIGHT
        if not self._block_validator.validate(header, body) and self._enforced("B-APP"):  # B-APP
            return "rejected by the block validator"
        return self._app_link_refusal(header, body)  # B-APP-LINK

    def _add_block(
        self, block_id: bytes, tip: Tip, body: BlockBody, *, validated_detached: bool = False
    ) -> bool:
        """Insert a validated block; PersistBlock comes with it. `validated_detached`: the
        block validator saw it while its parent was not connected (B-APP-CHAIN)."""
        if not self._tree.add(TreeBlock(block_id, tip, body)):
            return False
        if validated_detached:
            self._app_unchecked.add(block_id)
        self._emit(PersistBlock(tip, body, block_id))
        self._sync_requested.pop(block_id, None)
        return True

    def _request_sync(self, block_id: bytes, hint: int, upto_round: int) -> None:
        """Block sync for a missing block (once per block per round)."""
        if self._tree.get(block_id) is not None or self._tree.is_finalized(block_id):
            return
        if self._chain_sync is not None:  # CS2: far behind, the forward sync fills the gap
            self._refresh_chain_sync()
            return
        if self._sync_requested.get(block_id) == self.current_round:
            return
        if block_id not in self._sync_requested and len(self._sync_requested) >= MAX_TRACKED_ROUNDS:
            return
        self._sync_requested[block_id] = self.current_round
        peer = hint if hint != self._index else (self._index + 1) % len(self.validators)
        if peer == self._index:
            return  # a single-validator network has nobody to ask
        count = max(1, min(MAX_SYNC_BLOCKS, upto_round - self._tree.root_round))
        self._emit(Send(peer, BlockSyncRequest(block_id=block_id, count=count)))
        self._trace("sync_requested", block_id=block_id.hex(), peer=peer)

    # ------------------------------------------------------------------ proposals

    def _on_proposal(self, sender: int, message: ProposalMessage) -> None:
        """handle_proposal_message (reference §4.5)."""
        tip, header, body = message.tip, message.tip.header, message.body
        tc = message.last_round_tc
        if message.round <= self._tree.root_round and self._enforced("H1"):  # H1
            raise _Dropped(f"proposal round {message.round} at or below the finalized round")
        block_id = codec.block_id(header)
        handled = self._handled_proposals.get(message.round)
        # H4: one proposal per round (TEST-ONLY "double_vote" lifts it); a second, different
        # block for the round is verified only to keep it as equivocation evidence.
        duplicate = handled is not None and self._enforced("double_vote") and self._enforced("H4")
        if duplicate and handled == block_id:
            raise _Dropped(f"already handled the proposal for round {message.round}")
        self._verify(self.verifier.proposal_message, message)  # W1-W4 and signatures
        if duplicate:
            if self._record_tip(tip):
                return  # evidence recorded; the proposal itself is not handled
            raise _Dropped(f"already handled a proposal for round {message.round}")
        # H3 (the author leads the round) is the Verifier's W0; a valid proposal's own
        # QC (W2) or TC (W3) always leads to its round, so none is for a future round.
        refusal = self._block_refusal(header, body)  # H5: block validity
        if refusal is not None:
            raise _Dropped(refusal)
        detached = self._detached(header)
        # ---- valid: mutate
        self._handled_proposals[message.round] = block_id
        if len(self._handled_proposals) > MAX_TRACKED_ROUNDS:
            del self._handled_proposals[min(self._handled_proposals)]
        self._record_tip(tip)
        self._process_qc(header.qc, sender)  # H2
        if tc is not None:
            self._process_tc(tc, sender)
        if self._add_block(block_id, tip, body, validated_detached=detached):  # H6
            self._retry_blocks_arrived()
        if message.round == self.current_round or not self._enforced("H6"):
            self._try_vote(message, paced=False)
        self._try_propose()

    def _try_vote(self, message: ProposalMessage, *, paced: bool) -> None:
        """try_vote: the vote guard, then persist, then send (monadbft: next and current
        leader; v1/vanilla: next leader only)."""
        if message.round != self.current_round and self._enforced("H6"):  # H6: current round
            return
        block_id = codec.block_id(message.tip.header)
        missing = self._tree.missing_ancestor(block_id)
        if (missing is not None or self._tree.get(block_id) is None) and self._enforced(
            "V-CONNECTED"
        ):
            # V-CONNECTED: vote only for a block whose chain to the finalized head is held.
            self._local.awaiting_ancestors = message
            if missing is not None:
                self._request_sync(missing, message.author, message.round)
            return
        chain_refusal = self._chain_refusal(block_id)  # T-CHAIN: re-check gap-filled links
        if chain_refusal is not None:
            self._local.awaiting_ancestors = None
            self._trace("vote_refused", round=message.round, reason=chain_refusal)
            return
        tc = message.last_round_tc
        tc_tip_id = None
        if tc is not None and isinstance(tc.high_extend, Tip):
            tc_tip_id = codec.block_id(tc.high_extend.header)
        refusal = vote_refusal(
            self._safety,
            message.round,
            tc_tip_id,
            allow_double_vote=not (self._enforced("double_vote") and self._enforced("S-VOTE-ONCE")),
            ne_exclusion=self._enforced("S-NE-EXCLUSION"),
        )
        if refusal is not None:
            self._trace("vote_refused", round=message.round, reason=refusal)
            return
        # VP: the happy path is judged by the parent's block round (as monad-bft), not the
        # QC round: a child of a reproposal certified in round r-1 is voted at once.
        parent = self._tree.get(message.tip.header.parent_id)
        parent_round = self._tree.root_round if parent is None else parent.block_round
        happy = message.round == parent_round + 1
        pace_ns = int(self.config.vote_pace_ms * 1e6)
        if not paced and happy and pace_ns > 0 and self._last_vote_ns is not None:
            ready_ns = self._last_vote_ns + pace_ns
            if self._now_ns < ready_ns:  # VP: happy-path votes wait for the vote pacing timer
                self._local.pending_vote = message
                self._emit(SetTimer("vote_pace", message.round, (ready_ns - self._now_ns) / 1e6))
                return
        self._cast_vote(message, block_id)

    def _cast_vote(self, message: ProposalMessage, block_id: bytes) -> None:
        round = message.round
        # Paired with vote_refusal (S-VOTE-ONCE), checked by the caller: a vote is only ever
        # cast in a round above the highest vote (the TEST-ONLY "double_vote" lifts it).
        assert round > self._safety.highest_vote or "double_vote" in self._mutations, round
        self._safety = after_vote(
            self._safety, round, message.tip, block_id, self._high_qc.round, self._protocol
        )
        vote_message = self._signer.vote(Vote(block_id=block_id, round=round, epoch=self._epoch))
        self._emit(PersistSafety(self._safety))  # persist before the vote leaves
        destinations = [self.leader(round + 1)]
        if self._protocol == "monadbft" and self.leader(round) not in destinations:
            destinations.append(self.leader(round))  # FR: votes also to the current leader
        for destination in destinations:
            if destination != self._index:
                self._emit(Send(destination, vote_message))
        self._last_vote_ns = self._now_ns
        self._local.awaiting_ancestors = None
        self._trace("voted", round=round, block_id=block_id.hex())
        if self._index in destinations:
            self._pool_vote(vote_message, trusted=True, hint=self._index)

    @property
    def _epoch(self) -> int:
        return self.config.epoch

    # ------------------------------------------------------------------ votes

    def _vote_signature_valid(self, message: VoteMessage) -> bool:
        try:
            self.verifier.vote_message(message)
        except InvalidMessage:
            return False
        return True

    def _on_vote(self, sender: int, message: VoteMessage) -> None:
        """handle_vote_message: V-WINDOW, V-ONE-PER-SIGNER, V-LAZY, V-BAD-SIGNER."""
        if sender != message.author:  # votes travel point-to-point from their author
            raise _Dropped("vote not sent by its author")
        if message.vote.epoch != self._epoch:
            raise _Dropped(f"vote for epoch {message.vote.epoch}")
        refusal = self._votes.refusal(message, self.current_round)
        if refusal is not None:
            raise _Dropped(refusal)
        self._pool_vote(message, trusted=False, hint=sender)

    def _pool_vote(self, message: VoteMessage, *, trusted: bool, hint: int) -> None:
        if self._votes.refusal(message, self.current_round) is not None:
            return
        qc = self._votes.add(message, trusted=trusted)
        if qc is not None:
            self._on_qc_formed(qc, hint)

    def _on_qc_formed(self, qc: QuorumCertificate, hint: int) -> None:
        """A QC formed here: process it; monadbft: the round's leader broadcasts AdvanceRound."""
        self._trace("qc_formed", round=qc.round, block_id=qc.block_id.hex())
        fresh = qc.round >= self.current_round
        self._process_qc(qc, hint)
        if self._protocol == "monadbft" and fresh and self.leader(qc.round) == self._index:
            self._emit(Broadcast(AdvanceRoundMessage(certificate=qc)))
        self._try_propose()

    # ------------------------------------------------------------------ timeouts

    def _local_timeout(self) -> None:
        """local_timeout_round (reference §4.2): persist, broadcast, re-arm."""
        round = self.current_round
        own = self._local.own_timeout
        if own is not None:  # P-TIMER: re-broadcast the same timeout, re-arm
            self._emit(Broadcast(own))
            self._arm_round_timer()
            return
        extend = self._timeout_extend(round)
        tip_id = codec.block_id(extend.header) if isinstance(extend, Tip) else None
        self._safety, tip_vote = after_timeout(  # S-VOTE-ONCE, S-TIP-VOTE
            self._safety, round, tip_id, tip_vote_rule=self._enforced("S-TIP-VOTE")
        )
        tip_vote = tip_vote and self._protocol == "monadbft"  # FR: tip votes in timeouts
        base_qc = extend_qc(extend)
        info = TimeoutInfo(
            epoch=self._epoch,
            round=round,
            high_qc_round=base_qc.round,
            high_tip_round=extend.header.block_round if isinstance(extend, Tip) else 0,
        )
        last = None if base_qc.round + 1 == round else self._pacemaker.high_certificate
        message = self._signer.timeout(info, extend, last, tip_vote)
        self._local.own_timeout = message
        self._pacemaker.mark_timed_out()
        self._local.pending_vote = None
        self._emit(PersistSafety(self._safety))  # persist before the timeout leaves
        self._emit(Broadcast(message))
        self._arm_round_timer()
        self._trace("local_timeout", round=round, tip_vote=tip_vote)
        if tip_vote:
            vote = Vote(block_id=tip_id, round=round, epoch=self._epoch)
            self._pool_vote(
                VoteMessage(vote, self._index, message.tip_vote_signature),
                trusted=True,
                hint=self._index,
            )
        if self.current_round == round:
            self._collect_timeout(message)

    def _timeout_extend(self, round: int) -> Tip | QuorumCertificate:
        """HighExtend of a timeout: monadbft the high tip while newer than the high QC; v1 the
        last voted tip; vanilla (and the TEST-ONLY "skip_high_tip_check") the high QC."""
        tip = self._safety.high_tip
        if (
            tip is None
            or self._protocol == "vanilla"
            or "skip_high_tip_check" in self._mutations
            or tip.header.block_round > round
        ):
            return self._high_qc
        if self._protocol == "monadbft" and tip.header.block_round <= self._high_qc.round:
            return self._high_qc
        return tip

    def _on_timeout(self, sender: int, message: TimeoutMessage) -> None:
        """handle_timeout_message (reference §4.3)."""
        info = message.info
        if sender != message.author and self._enforced("TO-AUTHOR"):  # only info is signed
            raise _Dropped("timeout not sent by its author")
        if info.round < self.current_round and self._enforced("TO1"):  # TO1: stale
            raise _Dropped(f"timeout for past round {info.round}")
        if (
            info.round == self.current_round
            and self._pacemaker.has_timeout_from(message.author)
            and self._enforced("P-ONE-TIMEOUT")
        ):
            raise _Dropped(f"duplicate timeout from {message.author}")  # P-ONE-TIMEOUT
        self._verify(self.verifier.timeout_message, message)
        # ---- valid: mutate
        extend = message.high_extend
        if isinstance(extend, Tip):
            self._record_tip(extend)
        self._process_qc(extend_qc(extend), sender)  # TO2
        if (
            message.tip_vote_signature is not None
            and self._protocol == "monadbft"
            and isinstance(extend, Tip)
        ):  # TO3: the tip vote is a vote (backup QC)
            vote = Vote(block_id=codec.block_id(extend.header), round=info.round, epoch=info.epoch)
            self._pool_vote(
                VoteMessage(vote, message.author, message.tip_vote_signature),
                trusted=True,  # verified with the timeout
                hint=message.author,
            )
        last = message.last_round_certificate
        if isinstance(last, TimeoutCertificate):  # TO4
            if last.round == self.current_round:
                if not self._pacemaker.timed_out_locally:
                    self._local_timeout()  # helps others build the same TC
                self._process_tc(last, sender)
            elif last.round > self.current_round:
                self._emit(Broadcast(AdvanceRoundMessage(certificate=last)))
                self._process_tc(last, sender)
        elif isinstance(last, QuorumCertificate):
            self._process_qc(last, sender)
        if info.round == self.current_round:  # TO5: pacemaker
            self._collect_timeout(message)
        self._try_propose()  # TO6

    def _collect_timeout(self, message: TimeoutMessage) -> None:
        """P-ONE-TIMEOUT, P-ECHO, P-TC."""
        if not self._pacemaker.add_timeout(message):
            return
        round = self.current_round
        if self._pacemaker.should_echo() and self._enforced("P-ECHO"):
            self._trace("timeout_echo", round=round)
            self._local_timeout()  # adds our own timeout, which may complete the TC
        if (
            self.current_round == round
            and self._pacemaker.has_tc_quorum()
            and self._enforced("P-TC")
        ):
            tc = build_tc(self._epoch, round, self._pacemaker.timeouts(), self.validators)
            self._trace("tc_formed", round=round, high_extend=type(tc.high_extend).__name__)
            self._process_tc(tc, self._index)
            self._try_propose()

    # ------------------------------------------------------------------ advance round

    def _on_advance_round(self, sender: int, message: AdvanceRoundMessage) -> None:
        certificate = message.certificate
        if certificate.round < self.current_round and self._enforced("AR1"):  # AR1
            raise _Dropped(f"advance-round certificate for past round {certificate.round}")
        self._verify(self.verifier.advance_round, message)
        if isinstance(certificate, QuorumCertificate):
            self._process_qc(certificate, sender)
            leader = self.leader(self.current_round)
            if leader not in (self._index, sender):  # AR2: forward a fresh QC to the leader
                self._emit(Send(leader, message))
        else:
            self._process_tc(certificate, sender)
        self._try_propose()

    # ------------------------------------------------------------------ leader

    def _try_propose(self) -> None:
        """try_propose (reference §4.4), once per round."""
        round = self.current_round
        if self.leader(round) != self._index:
            return
        if round <= max(self._safety.highest_propose, self._safety.highest_vote):
            return
        if self._local.pending_proposal is not None:
            return
        certificate = self._pacemaker.high_certificate
        if isinstance(certificate, QuorumCertificate):  # LP1: fresh on QC(r-1)
            self._prepare_fresh(round, certificate, None, None)
            return
        tc = certificate
        extend = tc.high_extend
        if self._protocol == "vanilla":  # LP-V: fresh on the highest QC known
            self._prepare_fresh(round, self._high_qc, None, tc)
        elif isinstance(extend, QuorumCertificate):  # LP2: fresh with NoTip
            self._prepare_fresh(round, extend, notip_from_tc(tc), tc)
        else:
            tip_id = codec.block_id(extend.header)
            held = self._tree.get(tip_id)
            if held is not None and self._chain_refusal(tip_id) is not None:
                held = None  # T-CHAIN: a held block that does not fit its parent is no tip
            nec = self._local.nec
            # LP5 before LP3, as monad-bft's try_propose: an NEC held for this round is used
            # even if the tip's block arrived meanwhile (both proposals are valid).
            if nec is not None and nec.tip_qc_round == extend.header.qc.round:
                self._prepare_fresh(round, extend.header.qc, nec, tc)  # LP5: fresh with NEC
            elif held is not None and "skip_reproposal_rule" not in self._mutations:
                self._send_proposal(round, held.tip, held.body, tc)  # LP3: reproposal
            else:  # LP4: fetch the block, ask once per round who lacks it
                self._request_sync(tip_id, self._tip_holder(tc), round)
                if self._safety.highest_recovery_request < round:
                    self._safety = after_recovery_request(self._safety, round)
                    recovery = self._signer.round_recovery(round, self._epoch, tc)
                    self._emit(PersistSafety(self._safety))
                    self._emit(Broadcast(recovery))
                    self._trace("round_recovery", round=round, tip_id=tip_id.hex())
                    self._on_round_recovery(self._index, recovery, own=True)  # never drops

    def _tip_holder(self, tc: TimeoutCertificate) -> int:
        """A validator that reported the TC's high tip (a sync peer likely to hold it)."""
        extend = tc.high_extend
        assert isinstance(extend, Tip)
        for group in tc.tip_rounds:
            if (group.high_qc_round, group.high_tip_round) == (
                extend.header.qc.round,
                extend.header.block_round,
            ):
                for signer in decode_bitmap(group.signers, len(self.validators)):
                    if signer != self._index:
                        return signer
        return extend.header.author

    def _prepare_fresh(
        self,
        round: int,
        parent_qc: QuorumCertificate,
        fresh_certificate: NoEndorsementCertificate | NoTipCertificate | None,
        tc: TimeoutCertificate | None,
    ) -> None:
        parent = self._tree.parent_seq_and_timestamp(parent_qc.block_id)
        if parent is None:  # the parent must be held to number the block; fetch it
            self._request_sync(parent_qc.block_id, self._qc_peer(parent_qc), parent_qc.round)
            return
        seq_num, parent_timestamp_ns = parent[0] + 1, parent[1]
        self._local.pending_proposal = _PendingProposal(
            round, parent_qc, fresh_certificate, tc, seq_num, parent_timestamp_ns
        )
        self._emit(RequestPayload(round, seq_num, parent_qc.block_id))

    def _on_payload(self, event: PayloadReady) -> None:
        pending = self._local.pending_proposal
        if not self._started:
            raise _Dropped("core not started")
        if pending is None or pending.round != event.round or event.round != self.current_round:
            raise _Dropped(f"no proposal pending for round {event.round}")
        if len(event.payload) > MAX_PAYLOAD_BYTES:
            raise _Dropped("payload exceeds the block size limit")
        body = BlockBody(payload=event.payload)
        header = BlockHeader(
            block_round=event.round,
            epoch=self._epoch,
            qc=pending.parent_qc,
            author=self._index,
            seq_num=pending.seq_num,
            timestamp_ns=max(self._now_ns, pending.parent_timestamp_ns),
            body_id=codec.body_id(body),
        )
        tip = self._signer.tip(header, pending.fresh_certificate)
        self._send_proposal(event.round, tip, body, pending.last_round_tc)

    def _send_proposal(
        self, round: int, tip: Tip, body: BlockBody, tc: TimeoutCertificate | None
    ) -> None:
        self._safety = after_propose(self._safety, round)
        message = self._signer.proposal(round, self._epoch, tip, body, tc)
        self._local.pending_proposal = None
        persist_at = len(self._out)
        self._emit(PersistSafety(self._safety))  # persist before the proposal leaves
        self._emit(Broadcast(message))
        reproposal = tip.header.block_round != round
        self._trace(
            "reproposal" if reproposal else "proposal",
            round=round,
            block_round=tip.header.block_round,
            block_id=codec.block_id(tip.header).hex(),
            seq_num=tip.header.seq_num,
            fresh_certificate=type(tip.fresh_certificate).__name__,
        )
        try:
            self._on_proposal(self._index, message)  # our own copy: add and vote
        except _Dropped as dropped:
            self._trace("own_proposal_rejected", reason=dropped.reason)
        self._merge_safety_writes(persist_at)

    def _merge_safety_writes(self, first: int) -> None:
        """S-PERSIST-MERGE: one safety write for a leader's proposal and its own vote.

        `self._out[first]` is a PersistSafety; every later PersistSafety of this batch is
        folded into it, carrying the latest state. Each send after a dropped write is still
        preceded by a write of a state at least as new as the one it needed (states only
        grow within a batch), so persist-before-send holds; a crash after the merged write
        can only make the restarted node more conservative (it believes it already voted).
        It saves the driver one fsync per proposal.
        """
        assert isinstance(self._out[first], PersistSafety), "a merged batch starts with a write"
        later = [
            position
            for position in range(first + 1, len(self._out))
            if isinstance(self._out[position], PersistSafety)
        ]
        if not later:
            return
        self._out[first] = self._out[later[-1]]
        for position in reversed(later):
            del self._out[position]

    # ------------------------------------------------------------------ round recovery, NE

    def _on_round_recovery(
        self, sender: int, message: RoundRecoveryMessage, *, own: bool = False
    ) -> None:
        """handle_round_recovery_message: holders stay silent, others send NE once (S-NE-ONCE)."""
        if message.round < self.current_round:
            raise _Dropped(f"round recovery for past round {message.round}")
        if not own:
            self._verify(self.verifier.round_recovery_message, message)
        tc = message.tc
        if max(self.current_round, tc.round + 1) != message.round:
            raise _Dropped("round recovery is not for the round its TC leads to")
        if not own:
            self._process_tc(tc, sender)
        extend = tc.high_extend
        assert isinstance(extend, Tip)  # RR3, checked by the Verifier
        tip_id = codec.block_id(extend.header)
        held = self._tree.is_finalized(tip_id) or (
            self._tree.get(tip_id) is not None and self._chain_refusal(tip_id) is None  # T-CHAIN
        )
        if held and "skip_reproposal_rule" not in self._mutations:
            self._trace("round_recovery_held", round=message.round)  # served through sync
            return
        if not may_no_endorse(self._safety, message.round) and self._enforced("S-NE-ONCE"):
            return  # S-NE-ONCE
        self._safety = after_no_endorse(self._safety, message.round, tip_id)
        ne = self._signer.no_endorsement(
            NoEndorsement(
                epoch=self._epoch, round=message.round, tip_qc_round=extend.header.qc.round
            )
        )
        self._emit(PersistSafety(self._safety))  # persist before the NE leaves
        leader = self.leader(message.round)
        self._trace("no_endorsement", round=message.round, tip_id=tip_id.hex())
        if leader == self._index:
            self._collect_no_endorsement(ne)
        else:
            self._emit(Send(leader, ne))
        if not own:
            self._try_propose()

    def _on_no_endorsement(self, sender: int, message: NoEndorsementMessage) -> None:
        ne = message.no_endorsement
        if sender != message.author and self._enforced("NE-AUTHOR"):  # NE-AUTHOR
            raise _Dropped("no-endorsement not sent by its author")
        if self.leader(self.current_round) != self._index:
            raise _Dropped("not the leader of the current round")
        if (ne.round != self.current_round and self._enforced("NE1")) or ne.epoch != self._epoch:
            raise _Dropped(f"no-endorsement for round {ne.round}")  # NE1: current round only
        if self._local.nec is not None or message.author in self._local.ne_authors:
            raise _Dropped("no-endorsement not needed (duplicate or NEC formed)")
        self._verify(self.verifier.no_endorsement_message, message)
        self._collect_no_endorsement(message)
        self._try_propose()

    def _collect_no_endorsement(self, message: NoEndorsementMessage) -> None:
        """NEC formation at the leader: quorum stake on the same (epoch, round, tip_qc_round)."""
        if self._local.nec is not None or message.author in self._local.ne_authors:
            return
        self._local.ne_authors.add(message.author)
        group = self._local.no_endorsements.setdefault(message.no_endorsement, {})
        group[message.author] = message.signature
        if self.validators.has_quorum(group):
            self._local.nec = build_nec(message.no_endorsement, group, self.validators)
            self._trace("nec_formed", round=message.no_endorsement.round)
            self._try_propose()

    # ------------------------------------------------------------------ block sync

    def _on_sync_request(self, sender: int, message: BlockSyncRequest) -> None:
        """Serve up to `count` held blocks, newest first (empty if the block is not held)."""
        blocks = self._tree.chain(message.block_id, message.count)
        response = BlockSyncResponse(
            block_id=message.block_id,
            blocks=tuple(SyncedBlock(tip=b.tip, body=b.body) for b in blocks),
        )
        if sender != self._index:
            self._emit(Send(sender, response))

    def _on_sync_response(self, sender: int, message: BlockSyncResponse) -> None:
        """Validate the whole response (ids chain, tips verify, bodies match), then insert."""
        if message.block_id not in self._sync_requested and self._enforced("SY0"):
            raise _Dropped("unsolicited block sync response")  # SY0
        if not message.blocks:
            raise _Dropped(f"peer {sender} does not hold the requested block")
        expected = message.block_id
        previous: SyncedBlock | None = None
        ids: list[bytes] = []
        detached: list[bool] = []
        for synced in message.blocks:
            block_id = codec.block_id(synced.tip.header)
            if block_id != expected and self._enforced("SY1"):  # SY1: ids chain down
                raise _Dropped("sync response blocks do not chain")
            if synced.tip.header.body_id != codec.body_id(synced.body) and self._enforced("SY2"):
                raise _Dropped("sync response body does not match its header")
            if previous is not None:  # T-SEQ, T-TIME on every link of the response
                header = synced.tip.header
                refusal = self._link_refusal(
                    previous.tip.header, header.seq_num, header.timestamp_ns
                )
                if (
                    refusal is None
                    and self._link_validator is not None
                    and self._enforced("B-APP-LINK")
                    and not self._link_validator(synced.body, previous.tip.header, previous.body)
                ):
                    refusal = "rejected by the block validator as a child of its parent"
                if refusal is not None:
                    raise _Dropped(f"sync response: {refusal}")
            if self._enforced("SY3"):
                self._verify(self.verifier.tip, synced.tip)  # SY3: every tip verifies
            if not self._block_validator.validate(
                synced.tip.header, synced.body
            ) and self._enforced("B-APP"):
                raise _Dropped("synced block rejected by the block validator")
            detached.append(self._detached(synced.tip.header))  # newest first: mostly True
            ids.append(block_id)
            expected = synced.tip.header.parent_id
            previous = synced
        oldest = message.blocks[-1].tip.header
        parent = self._tree.parent_seq_and_timestamp(oldest.parent_id)
        if parent is not None:  # T-SEQ, T-TIME where the response attaches to a held block
            refusal = self._link_refusal(oldest, *parent) or self._app_link_refusal(
                oldest, message.blocks[-1].body
            )
            if refusal is not None:
                raise _Dropped(f"sync response does not attach to its parent: {refusal}")
        # ---- valid: mutate
        self._sync_requested.pop(message.block_id, None)
        added = False
        for block_id, synced, unchecked in reversed(
            list(zip(ids, message.blocks, detached, strict=True))
        ):
            if synced.tip.header.seq_num <= self._tree.root_seq:
                continue
            self._record_tip(synced.tip)
            added |= self._add_block(
                block_id, synced.tip, synced.body, validated_detached=unchecked
            )
        if parent is None and oldest.seq_num > self._tree.root_seq + 1:
            if oldest.seq_num - self._tree.root_seq - 1 > CHAIN_SYNC_MIN_GAP:
                self._start_chain_sync(sender)  # CS1: too far to walk back block by block
            else:
                self._request_sync(oldest.parent_id, sender, oldest.qc.round)
        if added:
            self._retry_blocks_arrived()
        waiting = self._local.awaiting_ancestors
        if waiting is not None and waiting.round == self.current_round:
            self._local.awaiting_ancestors = None
            self._try_vote(waiting, paced=False)
        self._try_propose()

    # ------------------------------------------------------------------ chain sync

    def _start_chain_sync(self, peer: int) -> None:
        """CS1: fetch the finalized chain forward from the root, in batches."""
        if self._chain_sync is not None:
            self._refresh_chain_sync()
            return
        self._send_chain_request(self._tree.root_id, peer)

    def _send_chain_request(self, after_block_id: bytes, peer: int, empty_answers: int = 0) -> None:
        if peer == self._index:
            peer = (self._index + 1) % len(self.validators)
            if peer == self._index:
                return  # a single-validator network has nobody to ask
        self._chain_sync = _ChainSync(after_block_id, peer, self._now_ns, empty_answers)
        self._emit(
            Send(peer, ChainSyncRequest(after_block_id=after_block_id, count=CHAIN_SYNC_BATCH))
        )
        self._trace("chain_sync_requested", peer=peer, after=after_block_id.hex())

    def _refresh_chain_sync(self) -> None:
        """CS2: an unanswered request is sent again, to the next peer, after a round timeout
        (from the newest block still held, else from the root)."""
        sync = self._chain_sync
        assert sync is not None
        if self._now_ns - sync.sent_ns < self._pacemaker.round_timeout_ms() * 1e6:
            return
        after = sync.after_block_id
        if self._tree.parent_seq_and_timestamp(after) is None:
            after = self._tree.root_id
        self._send_chain_request(after, self._next_peer(sync.peer))

    def _next_peer(self, peer: int) -> int:
        """The validator after `peer` in index order, skipping this node."""
        following = (peer + 1) % len(self.validators)
        return following if following != self._index else (following + 1) % len(self.validators)

    def _on_chain_sync_request(self, sender: int, message: ChainSyncRequest) -> None:
        """Serve up to `count` kept finalized blocks above the given one, oldest first."""
        blocks = self._tree.finalized_after(message.after_block_id, message.count)
        response = ChainSyncResponse(
            after_block_id=message.after_block_id,
            blocks=tuple(SyncedBlock(tip=b.tip, body=b.body) for b in blocks),
        )
        if sender != self._index:
            self._emit(Send(sender, response))

    def _on_chain_sync_response(self, sender: int, message: ChainSyncResponse) -> None:
        """CS3: validate the whole batch, then insert it oldest first and process the QCs
        its headers carry, newest first (one commit per batch); ask the next peer for the
        next batch while the high QC's block is still not connected.

        SY3 for a chain: the newest tip is verified in full (its signature and its QC). Its
        QC certifies the block below it, whose id is the hash of a header that names its
        parent and carries its own QC, and so on down to `after_block_id`: the hash chain
        authenticates every older block and every QC in it (the quorum that certified a
        block verified its tip first), so their signatures are not checked one by one.
        """
        sync = self._chain_sync
        if (sync is None or message.after_block_id != sync.after_block_id) and self._enforced(
            "CS3-SY0"
        ):  # CS3-SY0: only the outstanding request's answer
            raise _Dropped("unsolicited chain sync response")
        parent = self._tree.parent_seq_and_timestamp(message.after_block_id)
        if message.blocks and parent is None:
            raise _Dropped("chain sync response does not attach to a held block")
        ids: list[bytes] = []
        parent_id = message.after_block_id
        parent_seq, parent_timestamp_ns = parent or (0, 0)
        for synced in message.blocks:
            header = synced.tip.header
            if header.parent_id != parent_id and self._enforced("CS3-SY1"):
                raise _Dropped("chain sync blocks do not chain")  # each names the previous
            if header.body_id != codec.body_id(synced.body) and self._enforced("CS3-SY2"):
                raise _Dropped("chain sync body does not match its header")
            if header.seq_num != parent_seq + 1 and self._enforced("CS3-SEQ"):
                raise _Dropped("chain sync heights do not chain")
            if header.timestamp_ns < parent_timestamp_ns and self._enforced("CS3-TIME"):
                raise _Dropped("chain sync timestamp earlier than its parent's")
            parent_id = codec.block_id(header)
            parent_seq, parent_timestamp_ns = header.seq_num, header.timestamp_ns
            ids.append(parent_id)
        if message.blocks and self._enforced("CS3-SY3"):
            self._verify(self.verifier.tip, message.blocks[-1].tip)  # SY3 (chain form)
        detached: list[bool] = []
        for synced in message.blocks:  # B-APP, on authenticated blocks only
            if not self._block_validator.validate(
                synced.tip.header, synced.body
            ) and self._enforced("CS3-APP"):
                raise _Dropped("synced block rejected by the block validator")
            detached.append(self._detached(synced.tip.header))
        # ---- valid: mutate
        self._chain_sync = None
        if not message.blocks:
            # CS4: that peer has nothing finalized above it (behind, or the gap is closed):
            # the next peer is asked; once every other peer said so, back to block sync.
            if sync.empty_answers + 1 < len(self.validators) - 1:
                peer = self._next_peer(sender)
                self._send_chain_request(sync.after_block_id, peer, sync.empty_answers + 1)
                return
            self._trace("chain_sync_done", peer=sender, reason="empty")
            self._sync_high_qc(sender)
            return
        added = False
        for block_id, synced, unchecked in zip(ids, message.blocks, detached, strict=True):
            if synced.tip.header.seq_num <= self._tree.root_seq:
                continue
            self._record_tip(synced.tip)
            added |= self._add_block(
                block_id, synced.tip, synced.body, validated_detached=unchecked
            )
        for synced in reversed(message.blocks):
            self._process_qc(synced.tip.header.qc, sender)
        if added:
            self._retry_blocks_arrived()
        high_id = self._high_qc.block_id
        if not self._tree.is_connected(high_id) and self._tree.missing_ancestor(high_id):
            # CS3: the next batch, from the next peer (round-robin spreads the serving load
            # and limits what one faulty peer can slow down to its own turns)
            self._send_chain_request(ids[-1], self._next_peer(sender))
            return
        self._trace("chain_sync_done", peer=sender, reason="connected")
        waiting = self._local.awaiting_ancestors
        if waiting is not None and waiting.round == self.current_round:
            self._local.awaiting_ancestors = None
            self._try_vote(waiting, paced=False)
        self._try_propose()

    def _sync_high_qc(self, hint: int) -> None:
        """Block sync for the first missing ancestor of the high QC's block, if any."""
        missing = self._tree.missing_ancestor(self._high_qc.block_id)
        if missing is not None:
            self._request_sync(missing, hint, self._high_qc.round)
