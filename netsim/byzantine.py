"""Byzantine behaviours in netsim: the shared `consensus.byzantine` (the node runs the same).

`ByzantineMachine` and its behaviours live in `consensus/byzantine.py` (and the
signed-but-invalid ones in `consensus/signed_invalid.py`) so that netsim and real node
processes (`node/faults.py`) wrap the core with one and the same code; this module keeps
netsim's import path.
"""

from __future__ import annotations

from consensus.byzantine import (
    BEHAVIOURS,
    LANE_BEHAVIOURS,
    ByzantineMachine,
    certificates_in,
    message_round,
    qcs_in,
    tips_in,
)

__all__ = [
    "BEHAVIOURS",
    "LANE_BEHAVIOURS",
    "ByzantineMachine",
    "certificates_in",
    "message_round",
    "qcs_in",
    "tips_in",
]
