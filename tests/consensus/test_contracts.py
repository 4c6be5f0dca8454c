"""Typed contracts between the core and its drivers: trace names and decode-error labels.

A driver counts traces and drops by these labels; if the core emitted a name the type does
not list (or a decode error carried free text only), the driver's counters would silently
miss it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from consensus.codec import WIRE_VERSION, DecodeError, decode_message, encode_message
from consensus.events import TraceName
from consensus.messages import GENESIS_QC, AdvanceRoundMessage

CORE = Path(__file__).resolve().parents[2] / "consensus" / "core.py"


def _trace_names(path: Path) -> set[str]:
    """String literals passed as the first argument of `_trace(...)` or `Trace(...)`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called not in ("_trace", "Trace"):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant):
            names.add(first.value)
        elif isinstance(first, ast.IfExp):
            names.update(v.value for v in (first.body, first.orelse) if isinstance(v, ast.Constant))
    return names


def test_every_trace_the_core_emits_is_a_trace_name() -> None:
    emitted = _trace_names(CORE)
    assert {"dropped", "tc_formed", "reproposal", "proposal", "nec_formed"} <= emitted
    assert emitted <= set(get_args(TraceName)), emitted - set(get_args(TraceName))


def test_the_trace_name_check_sees_an_unlisted_name(tmp_path: Path) -> None:
    core = tmp_path / "core.py"
    core.write_text('self._trace("tc_received", round=1)\nx = Trace("a" if y else "b")\n')
    assert _trace_names(core) == {"tc_received", "a", "b"}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "empty_frame"),
        (bytes((WIRE_VERSION + 1,)) + b"x", "bad_version"),
        (bytes((WIRE_VERSION,)) + b"\xc1\xc1", "malformed"),
        (bytes((WIRE_VERSION,)) + bytes(64), "malformed"),
    ],
)
def test_decode_errors_carry_a_fixed_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_message(frame)
    assert caught.value.reason == reason


def test_oversized_frames_are_labelled_before_decoding() -> None:
    frame = encode_message(AdvanceRoundMessage(certificate=GENESIS_QC))
    with pytest.raises(DecodeError) as caught:
        decode_message(frame, max_bytes=len(frame) - 1)
    assert caught.value.reason == "frame_too_large"
    with pytest.raises(DecodeError) as caught:
        decode_message("text")  # type: ignore[arg-type]
    assert caught.value.reason == "not_bytes"
