"""One signature-verification cache shared by every simulated node of a run.

In one process, `scheme.verify(public, domain, payload, signature)` is a pure function of
its arguments and of the scheme's chain id (the scheme object is bound to one chain), so
its answer for a given tuple can be computed once and reused by every simulated node: in a
run of n nodes each certificate's 2f+1 signatures are otherwise checked by all n nodes,
the n^2 factor of the simulator's cost (docs/performance.md, "Simulator").

Both answers are cached: a tuple that failed once fails again. The cache is bounded
(`MAX_ENTRIES`, oldest entry evicted first). `sign` and every other attribute are the
wrapped scheme's.

The scenario's `verification = "per_node"` turns this off: every node then verifies every
signature itself with the bare scheme, the mode used by the tests that inject invalid
signatures (they check that each honest node drops what it received, which the shared
cache would also do, but through a single verification).
"""

from __future__ import annotations

from typing import Any

VERIFICATION_MODES = ("shared", "per_node")


class SharedVerification:
    """A signature scheme whose `verify` answers come from one bounded shared cache."""

    MAX_ENTRIES = 1 << 18

    def __init__(self, scheme: Any, max_entries: int = MAX_ENTRIES):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.scheme = scheme
        self.name = scheme.name
        self.chain_id = scheme.chain_id
        self.max_entries = max_entries
        self._answers: dict[tuple[bytes, bytes, bytes, bytes], bool] = {}
        self.hits = 0
        self.misses = 0

    def sign(self, key: Any, domain: bytes, payload: bytes) -> bytes:
        return self.scheme.sign(key, domain, payload)

    def verify(self, public: bytes, domain: bytes, payload: bytes, signature: bytes) -> bool:
        key = (public, domain, payload, signature)
        answers = self._answers
        answer = answers.get(key)
        if answer is not None:
            self.hits += 1
            return answer
        self.misses += 1
        answer = bool(self.scheme.verify(public, domain, payload, signature))
        if len(answers) >= self.max_entries:  # bound: evict the oldest entry
            del answers[next(iter(answers))]
        answers[key] = answer
        return answer

    def for_chain(self, chain_id: str) -> SharedVerification:
        """Another chain: another scheme, so another cache (answers are per chain)."""
        return SharedVerification(self.scheme.for_chain(chain_id), self.max_entries)

    def __len__(self) -> int:
        return len(self._answers)

    def __getattr__(self, name: str) -> Any:  # anything else is the wrapped scheme's
        if name == "scheme":  # not set yet (e.g. while copying): no recursion
            raise AttributeError(name)
        return getattr(self.scheme, name)

    def __repr__(self) -> str:
        return f"SharedVerification({self.scheme!r})"
