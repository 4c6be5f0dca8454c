"""Timeouts count only when their author sends them (TO-AUTHOR).

The timeout signature covers only the `TimeoutInfo`; the high extend's content, the tip
vote and the last-round certificate ride unsigned beside it. A relay could strip an
honest node's tip vote (or swap its last-round certificate) and, since only the first
copy per author counts, get the genuine copy dropped: no backup QC (P12). Timeouts are
therefore accepted only from their author, as votes and NEs are (the transport
authenticates the sender; the node broadcasts timeouts directly to every peer).
"""

from __future__ import annotations

import msgspec

from consensus.messages import TimeoutMessage
from tests.consensus.support import (
    P1,
    TIP1,
    block_id,
    is_dropped,
    make_core,
    receive,
    snapshot,
    timeout_msg,
    traces,
)


def stripped(message: TimeoutMessage) -> TimeoutMessage:
    return msgspec.structs.replace(message, tip_vote_signature=None)


def test_a_relayed_stripped_timeout_is_dropped_and_the_genuine_one_forms_the_backup_qc() -> None:
    core = make_core(2)  # voted B1 in round 1
    receive(core, 1, P1)
    genuine = {a: timeout_msg(a, 1, TIP1, tip_vote=True) for a in (0, 1)}
    before = snapshot(core)
    relayed = receive(core, 3, stripped(genuine[0]))  # node 3 relays 0's timeout, stripped
    assert is_dropped(relayed) and "author" in traces(relayed, "dropped")[0]["reason"]
    assert snapshot(core) == before
    receive(core, 0, genuine[0])
    out = receive(core, 1, genuine[1])
    # The three tip votes (0, 1 and its own, cast by the echo) form QC1: no TC needed.
    assert traces(out, "qc_formed") and not traces(out, "tc_formed")
    assert core.high_qc.block_id == block_id(TIP1) and core.current_round == 2


def test_a_timeout_from_its_author_still_counts_once() -> None:
    core = make_core(2)
    receive(core, 1, P1)
    message = timeout_msg(0, 1, TIP1, tip_vote=True)
    assert not is_dropped(receive(core, 0, message))
    assert is_dropped(receive(core, 0, message))  # P-ONE-TIMEOUT
