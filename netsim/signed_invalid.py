"""Signed-but-invalid behaviours in netsim: the shared `consensus.signed_invalid`."""

from __future__ import annotations

from consensus.signed_invalid import ATTACKED_RULE, SIGNED_INVALID, SignedInvalid

__all__ = ["ATTACKED_RULE", "SIGNED_INVALID", "SignedInvalid"]
