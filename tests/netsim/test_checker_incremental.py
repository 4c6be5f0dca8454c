"""The invariant checker scans each certificate object once (netsim/invariants.py, `_scan`)
and still fires exactly as a full walk of every message did.

Mutation proofs (each makes a test here fail): dropping the replay of a remembered
certificate's valid QCs (`for round_, block_id in entry[1]: self._qc(...)`) loses the
repeated P3 count; remembering a certificate before its fields are scanned (or storing
an empty QC list) loses the P3 conflict of a QC nested in a remembered tip; keying the
memo on equality instead of identity would skip a new object with new content.
"""

from __future__ import annotations

from types import SimpleNamespace

from consensus.certificates import Signer, build_qc
from consensus.events import Broadcast
from consensus.messages import AdvanceRoundMessage, BlockHeader, QuorumCertificate, Vote
from netsim.invariants import CheckerContext, ProtocolChecker, certificates_in
from netsim.runner import build_world, make_verify
from netsim.scenario import parse_scenario_text

WORLD = build_world(parse_scenario_text('validators = 4\nscheme = "ed25519"\n'))
SIM: object = SimpleNamespace(hosts=[SimpleNamespace(identity=i) for i in range(4)])


def checker() -> ProtocolChecker:
    return ProtocolChecker(
        CheckerContext(
            protocol="monadbft",
            validators=WORLD.validators,
            schedule=WORLD.schedule,
            scheme=WORLD.scheme,
            byzantine=frozenset(),
            verify=make_verify(WORLD),
            liveness_ms=1000.0,
        )
    )


def qc(round_: int, block: bytes) -> QuorumCertificate:
    vote = Vote(block_id=block, round=round_, epoch=1)
    signers = [Signer(i, WORLD.keys[i], WORLD.scheme) for i in range(3)]
    return build_qc(vote, {s.index: s.vote_signature(vote) for s in signers}, WORLD.validators)


def send(check: ProtocolChecker, message: object) -> None:
    check.on_command(SIM, 0, Broadcast(message))  # type: ignore[arg-type]


def test_a_repeated_conflicting_qc_fires_each_time_as_a_full_walk_does() -> None:
    first, second = qc(5, b"\x01" * 32), qc(5, b"\x02" * 32)
    check = checker()
    send(check, AdvanceRoundMessage(first))
    assert check.violations == []
    send(check, AdvanceRoundMessage(second))
    assert check.violation_count == 1 and check.violations[0].startswith("P3 one QC per round")
    for _ in range(3):  # the same certificate object in new messages: remembered, replayed
        send(check, AdvanceRoundMessage(second))
    assert check.violation_count == 4
    assert len(check._scanned) == 2  # each certificate object scanned once


def test_a_qc_nested_in_a_remembered_tip_still_conflicts() -> None:
    first, second = qc(7, b"\x03" * 32), qc(7, b"\x04" * 32)
    header = BlockHeader(
        block_round=8, epoch=1, qc=second, author=WORLD.schedule.leader(8), seq_num=2,
        timestamp_ns=1, body_id=b"\x00" * 32,
    )  # fmt: skip
    tip = Signer(header.author, WORLD.keys[header.author], WORLD.scheme).tip(header)
    check = checker()
    send(check, AdvanceRoundMessage(first))
    send(check, (tip,))  # the tip inside a message: its header's QC conflicts
    assert check.violation_count == 1
    send(check, (tip,))  # replayed from the tip's entry
    assert check.violation_count == 2
    assert [type(c).__name__ for c in certificates_in(tip)] == ["Tip", "QuorumCertificate"]


def test_an_equal_but_new_certificate_object_is_scanned_on_its_own() -> None:
    check = checker()
    send(check, AdvanceRoundMessage(qc(9, b"\x05" * 32)))
    send(check, AdvanceRoundMessage(qc(9, b"\x05" * 32)))  # equal content, new object
    send(check, AdvanceRoundMessage(qc(9, b"\x06" * 32)))
    assert check.violation_count == 1 and len(check._scanned) == 3
