"""TEST-ONLY rule switches: each one disables exactly one named rule of docs/protocol.md.

They exist for one purpose: to prove that some test fails when a rule is gone (the
mutation matrix, `sedna sim mutants`, docs/netsim.md). A switch reaches the code only
through `CoreConfig.test_mutations` (the core passes it on to its own `Verifier`). The node
builds its `CoreConfig` with none (node/runtime.py) and no configuration file can name one;
unknown names are rejected. A verifier built without switches (every checker, every
driver) enforces every rule.

`RULE_SWITCHES` maps a switch name to (the rule it disables, what the code then does).
For the rules a switch is named after, the name is the rule's id in docs/protocol.md.
Four older switches keep their descriptive names (`LEGACY`).
"""

from __future__ import annotations

# Certificate and message validity (consensus/certificates.py, the Verifier).
VERIFIER_SWITCHES: dict[str, str] = {
    "E1": "every message and certificate is of the current epoch",
    "SIG": "every signature verifies under its signer's key and domain",
    "C1": "a certificate carries one signature per signer in its bitmap",
    "Q0": "the only round-0 QC is the genesis QC",
    "Q1": "a QC has quorum stake",
    "N1": "an NE/NEC's tip QC round is below its round",
    "N2": "an NEC has quorum stake",
    "TC1": "a TC/NoTip has at least one tip-round entry",
    "TC2": "a TC/NoTip has at most one entry per validator",
    "TC3": "each (high QC round, high tip round) pair appears once",
    "TC4": "an entry's high QC round is below the TC round",
    "TC5": "an entry's tip round is above its QC round and not after the TC round",
    "TC6": "no entry is empty",
    "TC7": "a signer appears in one entry only",
    "TC8": "a TC/NoTip has quorum stake",
    "TC9": "a TC's high extend has the maximum rank of its entries",
    "NT1": "a NoTip certificate's high QC has the maximum rank of its entries",
    "T1": "a tip is signed by the leader of its block round",
    "T2": "a block's round is above its parent QC's round",
    "T3a": "a block extending the previous round carries no fresh certificate",
    "T3b": "an NEC in a tip is for the block round and the block's parent QC round",
    "T3c": "a NoTip in a tip is from the previous round and won by the block's parent QC",
    "T3d": "a block not extending the previous round carries a fresh certificate",
    "TM1": "a timeout's info states the rank of its high extend",
    "TM2": "a timeout's round is after its high extend's QC",
    "TM3": "a tip vote rides only with a tip",
    "TM4": "no last-round certificate when the extend's QC is from the previous round",
    "TM5": "otherwise a last-round certificate of the previous round proves round entry",
    "TM6": "a timeout's tip is not from a later round",
    "TM7": "vanilla timeouts carry only a QC",
    "W0": "a proposal is signed by the leader of its round",
    "W1": "a proposal's header commits to its body",
    "W2": "a happy-path proposal carries no TC",
    "W3": "any other proposal carries the TC of the previous round",
    "W3q": "after a TC won by a QC: a fresh block on exactly that QC",
    "W3n": "after a TC won by Tip(t): t itself, or a fresh block on t's parent QC round",
    "W3n-fresh": "the freshness half of W3n (an older block on t's parent QC round is refused)",
    "W3v": "vanilla: after a TC, a fresh block extending at least the TC's high QC",
    "W4": "a proposal's tip (and its certificates) verify",
    "W5": "a proposal's block round is not after the proposal round",
    "RR1": "a RoundRecovery is signed by the leader of its round",
    "RR2": "a RoundRecovery is for the round after its TC",
    "RR3": "a RoundRecovery's TC is won by a tip",
}

# Stateful rules of the core (consensus/core.py, safety.py, pacemaker.py, vote_state.py).
CORE_SWITCHES: dict[str, str] = {
    "H1": "no proposal at or below the finalized round",
    "H4": "one proposal per round",
    "H6": "vote only in the current round",
    "T-SEQ": "a block's seq_num is its parent's plus one",
    "T-TIME": "a block's timestamp is not earlier than its parent's",
    "T-HEIGHT": "no block at or below the finalized height",
    "T-FORK": "no block extending a finalized block other than the head",
    "T-CHAIN": "every held link from the finalized head to a block is re-checked before use",
    "B-APP": "the block validator accepts the block",
    "B-APP-CHAIN": "a block validated while its parent was not connected is validated again before use",
    "B-APP-LINK": "the block validator accepts the block as a child of its held parent",
    "V-CONNECTED": "vote only for a block whose chain to the finalized head is held",
    "S-VOTE-ONCE": "vote only in a round above highest_vote",
    "S-NE-EXCLUSION": "after NE(r) against T, vote in r only for proposals whose TC tip is T",
    "S-TIP-VOTE": "a tip vote is never a second vote in a round, nor after an NE for another tip",
    "S-NE-ONCE": "at most one NE per round, none in a round voted or timed out in",
    "P-ROUND": "rounds only grow",
    "P-TIMER": "entering a round arms the round timer",
    "P-ONE-TIMEOUT": "one timeout per author per round",
    "P-ECHO": "f+1 stake of timeouts for the current round makes the node time out",
    "P-TC": "2f+1 stake of timeouts for the current round forms a TC",
    "V-WINDOW": "votes are pooled only for current_round ..= current_round + 10",
    "V-ONE-PER-SIGNER": "the first vote of each author in a round counts",
    "V-ONE-QC": "at most one QC per round",
    "TO-AUTHOR": "a timeout counts only when its author sends it",
    "TO1": "timeouts for past rounds are dropped",
    "AR1": "an AdvanceRound certificate is for the current round or later",
    "NE1": "an NE is collected only for the current round, by its leader",
    "NE-AUTHOR": "an NE counts only when its author sends it",
    "SY0": "a block-sync response is used only if it was requested",
    "SY1": "a sync response's ids chain down from the requested block",
    "SY2": "a synced block's body matches its header",
    "SY3": "every synced tip verifies",
    "CS3-SY0": "a chain-sync response is used only if it answers the outstanding request",
    "CS3-SY1": "each block of a chain-sync response names the previous one as its parent",
    "CS3-SY2": "each chain-synced block's body matches its header",
    "CS3-SEQ": "chain-synced heights increase by one from the block they follow",
    "CS3-TIME": "chain-synced timestamps do not decrease from the block they follow",
    "CS3-SY3": "the newest tip of a chain-sync response verifies (SY3 in chain form)",
    "CS3-APP": "the block validator accepts every chain-synced block",
    "C-RETRY": "commits and Voted marks are retried when missing blocks arrive",
    "EQ": "two signed headers of one round are kept as equivocation evidence",
}

# The four original switches, each breaking one rule by a descriptive name.
LEGACY: dict[str, str] = {
    "skip_high_tip_check": "S-HIGH-TIP: timeouts carry the high QC, never the high tip",
    "double_vote": "S-VOTE-ONCE and H4: vote again in a round (breaks P3)",
    "commit_non_consecutive": "C-TWO-CHAIN: commit without the consecutive-round check",
    "skip_reproposal_rule": "LP3: leaders never repropose, holders still sign NEs (P5)",
}

RULE_SWITCHES: dict[str, str] = {**VERIFIER_SWITCHES, **CORE_SWITCHES, **LEGACY}
TEST_MUTATIONS = frozenset(RULE_SWITCHES)
