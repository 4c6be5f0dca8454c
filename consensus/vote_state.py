"""Vote aggregation into QCs, with lazy one-at-a-time signature verification.

Reference §4.6 (monad-bft `vote_state.rs`). Votes (plain votes and tip votes carried by
timeouts) are pooled per round and per `Vote`. Signatures are checked only once the pool for
a `Vote` holds quorum stake, one at a time, stopping as soon as quorum stake is verified; a
signer whose signature fails is ignored for the rest of that round.

Rule names:
- V-WINDOW: votes are accepted for rounds `current_round .. current_round + VOTE_WINDOW`.
- V-ONE-PER-SIGNER: the first vote of each author in a round counts; later ones (duplicates,
  or a second vote for another block) are ignored.
- V-LAZY: verification happens at aggregation time, one signature at a time.
- V-BAD-SIGNER: an author whose vote signature failed is ignored for the rest of the round
  (a consequence of V-ONE-PER-SIGNER: the bad vote was its one vote of the round).
- V-ONE-QC: at most one QC is formed per round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.certificates import build_qc
from consensus.messages import QuorumCertificate, Vote, VoteMessage
from consensus.validators import ValidatorSet

VOTE_WINDOW = 10  # rounds ahead of the current round that are still pooled


@dataclass
class _RoundVotes:
    authors: set[int] = field(default_factory=set)  # authors whose (first) vote was pooled
    pending: dict[Vote, dict[int, bytes]] = field(default_factory=dict)  # unverified
    verified: dict[Vote, dict[int, bytes]] = field(default_factory=dict)
    qc_formed: bool = False


class VoteState:
    def __init__(
        self,
        validators: ValidatorSet,
        verify: Callable[[VoteMessage], bool],
        *,
        disabled: frozenset[str] = frozenset(),
    ):
        """`verify(message)` returns whether the vote signature is valid (no other checks).
        `disabled`: TEST-ONLY rule switches (consensus.mutations) for the V-rules."""
        self._disabled = disabled
        self._validators = validators
        self._verify = verify
        self._rounds: dict[int, _RoundVotes] = {}
        self.signatures_verified = 0  # counter for metrics/benchmarks

    def refusal(self, message: VoteMessage, current_round: int) -> str | None:
        """Why this vote would not be pooled (None: it would be). Does not mutate."""
        round = message.vote.round
        window = "V-WINDOW" not in self._disabled
        if round < current_round and window:  # V-WINDOW (stale)
            return f"vote for past round {round} (current {current_round})"
        if round > current_round + VOTE_WINDOW and window:  # V-WINDOW (too far ahead)
            return f"vote for round {round} beyond the window of the current {current_round}"
        if not self._validators.contains(message.author):
            return f"vote author {message.author} is not a validator"
        state = self._rounds.get(round)
        if state is None:
            return None
        if state.qc_formed and "V-ONE-QC" not in self._disabled:  # V-ONE-QC
            return f"QC for round {round} already formed"
        if message.author in state.authors and "V-ONE-PER-SIGNER" not in self._disabled:
            return f"author {message.author} already voted in round {round}"
        return None

    def add(self, message: VoteMessage, *, trusted: bool = False) -> QuorumCertificate | None:
        """Pool a vote that passed `refusal`; return the QC if this vote completes one.

        `trusted` marks this node's own vote (signed here, no need to verify).
        """
        round = message.vote.round
        state = self._rounds.setdefault(round, _RoundVotes())
        state.authors.add(message.author)
        pool = state.verified if trusted else state.pending
        pool.setdefault(message.vote, {})[message.author] = message.signature
        return self._try_form(state, message.vote)

    def _try_form(self, state: _RoundVotes, vote: Vote) -> QuorumCertificate | None:
        verified = state.verified.setdefault(vote, {})
        pending = state.pending.setdefault(vote, {})
        if not self._validators.has_quorum([*verified, *pending]):
            return None
        # V-LAZY: verify one at a time until verified stake reaches quorum.
        for author in sorted(pending):
            if self._validators.has_quorum(verified):
                break
            signature = pending.pop(author)
            self.signatures_verified += 1
            if self._verify(VoteMessage(vote=vote, author=author, signature=signature)):
                verified[author] = signature
            # else V-BAD-SIGNER: dropped; the author stays in `authors` (V-ONE-PER-SIGNER)
        if not self._validators.has_quorum(verified):
            return None
        state.qc_formed = True  # V-ONE-QC
        return build_qc(vote, verified, self._validators)

    def prune_below(self, round: int) -> None:
        """Forget rounds below `round` (called when the current round advances)."""
        for old in [r for r in self._rounds if r < round]:
            del self._rounds[old]

    def rounds_held(self) -> list[int]:
        return sorted(self._rounds)
