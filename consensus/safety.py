"""Per-node safety state and the voting/timeout/no-endorsement rules over it.

`SafetyState` is exactly what `PersistSafety` carries and what a restarted node is rebuilt
from (reference §4.1). All rules are pure functions: they take a state and return either a
refusal reason or a new state, so the core can validate first and mutate afterwards.

Rule names (used in code comments, tests and docs/protocol.md):
- S-VOTE-ONCE: vote only in a round above `highest_vote` (timing out also raises it).
- S-NE-EXCLUSION: after sending NE(r) against tip T, vote in r only for a proposal whose
  TC high tip is T.
- S-HIGH-TIP: the high tip is the last tip voted for; it is kept only while its block round is
  above the high QC round (monadbft), always kept (v1), unused (vanilla).
- S-TIP-VOTE: a timeout in r may carry a tip vote for the high tip unless the node sent NE(r)
  for another tip, and (stricter than the reference, see docs/protocol.md) only if the node
  has cast no vote in r yet or its vote in r was for that very tip.
- S-NE-ONCE: at most one NE per round, and none in a round already voted or timed out in.
"""

from __future__ import annotations

import msgspec

from consensus.messages import Tip


class SafetyState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What must survive a crash for the node never to contradict itself."""

    highest_vote: int = 0  # highest round voted or timed out in
    highest_no_endorse_round: int = 0
    highest_no_endorse_tip_id: bytes = b""  # block id of the tip the NE was against
    highest_propose: int = 0  # highest round this node proposed in
    highest_recovery_request: int = 0  # highest round this node sent RoundRecovery in
    high_tip: Tip | None = None  # the tip last voted for (see S-HIGH-TIP)
    last_vote_round: int = 0  # round and block of the last vote cast (S-TIP-VOTE)
    last_vote_block_id: bytes = b""


def vote_refusal(
    state: SafetyState,
    proposal_round: int,
    tc_high_tip_id: bytes | None,
    *,
    allow_double_vote: bool = False,
    ne_exclusion: bool = True,
) -> str | None:
    """Why this node may not vote in `proposal_round` (None: the vote guard holds).

    `tc_high_tip_id` is the block id of the proposal's `last_round_tc.high_extend` when that
    is a Tip, else None. `allow_double_vote` (S-VOTE-ONCE off) and `ne_exclusion=False`
    (S-NE-EXCLUSION off) exist only for the TEST-ONLY rule switches.
    """
    # S-VOTE-ONCE (the TEST-ONLY mutation "double_vote" deliberately breaks exactly this).
    if proposal_round <= state.highest_vote and not allow_double_vote:
        return f"already voted or timed out in round {state.highest_vote}"
    # S-NE-EXCLUSION: after NE(r) against T, only proposals whose TC high tip is T.
    if (
        ne_exclusion
        and state.highest_no_endorse_round == proposal_round
        and tc_high_tip_id != state.highest_no_endorse_tip_id
    ):
        return "sent a no-endorsement in this round for another tip"
    return None


def after_vote(
    state: SafetyState, round: int, tip: Tip, block_id: bytes, high_qc_round: int, protocol: str
) -> SafetyState:
    """State after voting for `tip` (id `block_id`) in `round` (S-VOTE-ONCE, S-HIGH-TIP)."""
    high_tip = state.high_tip
    if protocol == "v1" or tip.header.block_round > high_qc_round:
        high_tip = tip  # for a reproposal this is the original tip
    return msgspec.structs.replace(
        state,
        highest_vote=max(state.highest_vote, round),
        high_tip=high_tip,
        last_vote_round=round,
        last_vote_block_id=block_id,
    )


def after_timeout(
    state: SafetyState, round: int, tip_id: bytes | None, *, tip_vote_rule: bool = True
) -> tuple[SafetyState, bool]:
    """State after timing out in `round`, and whether a tip vote for the high tip (block id
    `tip_id`, None without a tip) may ride along (S-TIP-VOTE; `tip_vote_rule=False` is the
    TEST-ONLY switch that drops it: any high tip is tip-voted)."""
    tip = state.high_tip
    safe_after_ne = state.highest_no_endorse_round != round or (
        tip is not None and tip.header.block_round == round
    )
    # Never a second, different vote in a round: the tip vote must repeat the vote cast in
    # `round`, if any, and must not be cast in a round already passed (e.g. after a restart).
    if state.last_vote_round == round:
        unique = tip_id == state.last_vote_block_id
    else:
        unique = state.highest_vote < round
    new = msgspec.structs.replace(state, highest_vote=max(state.highest_vote, round))
    if not tip_vote_rule:
        return new, tip_id is not None
    return new, tip_id is not None and safe_after_ne and unique


def without_stale_tip(state: SafetyState, high_qc_round: int, protocol: str) -> SafetyState:
    """S-HIGH-TIP: drop the high tip once a QC at least as high as its block round is known."""
    tip = state.high_tip
    if protocol == "v1" or tip is None or tip.header.block_round > high_qc_round:
        return state
    return msgspec.structs.replace(state, high_tip=None)


def may_no_endorse(state: SafetyState, round: int) -> bool:
    """S-NE-ONCE: no NE twice in a round, nor in a round already voted or timed out in."""
    return round > max(state.highest_no_endorse_round, state.highest_vote)


def after_no_endorse(state: SafetyState, round: int, tip_id: bytes) -> SafetyState:
    return msgspec.structs.replace(
        state, highest_no_endorse_round=round, highest_no_endorse_tip_id=tip_id
    )


def after_propose(state: SafetyState, round: int) -> SafetyState:
    return msgspec.structs.replace(state, highest_propose=max(state.highest_propose, round))


def after_recovery_request(state: SafetyState, round: int) -> SafetyState:
    return msgspec.structs.replace(
        state, highest_recovery_request=max(state.highest_recovery_request, round)
    )
