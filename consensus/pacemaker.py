"""Round synchronisation: current round, high certificate, timeout collection, round timer.

Reference §1 and §4.3 (monad-bft `pacemaker.rs`). The pacemaker holds no keys and sends
nothing; the core asks it questions and turns the answers into commands.

Rule names:
- P-ROUND: `current_round == high_certificate.round + 1`; it only ever grows.
- P-TIMER: entering a round arms one round timer; on expiry the node times out and re-arms.
- P-BACKOFF: the timer grows by `backoff` per consecutive round entered through a TC, capped
  (backoff 1.0 = constant, as monad-bft).
- P-ONE-TIMEOUT: one timeout per author per round is kept.
- P-ECHO: timeouts for the current round from >= f+1 stake make the node time out too.
- P-TC: timeouts for the current round from >= 2f+1 stake form a TC.
"""

from __future__ import annotations

from consensus.messages import (
    GENESIS_QC,
    QuorumCertificate,
    RoundCertificate,
    TimeoutCertificate,
    TimeoutMessage,
)
from consensus.validators import ValidatorSet


class Pacemaker:
    def __init__(
        self,
        validators: ValidatorSet,
        *,
        base_timeout_ms: float,
        backoff: float = 1.0,
        max_timeout_ms: float = 30_000.0,
        high_certificate: RoundCertificate = GENESIS_QC,
        disabled: frozenset[str] = frozenset(),
    ):
        """`disabled`: TEST-ONLY rule switches (consensus.mutations): P-ROUND, P-ONE-TIMEOUT."""
        if base_timeout_ms <= 0:
            raise ValueError(f"round timeout must be positive, got {base_timeout_ms} ms")
        if backoff < 1.0:
            raise ValueError(f"timeout backoff must be >= 1.0, got {backoff}")
        self._validators = validators
        self._rounds_only_grow = "P-ROUND" not in disabled
        self._one_timeout_per_author = "P-ONE-TIMEOUT" not in disabled
        self._base_timeout_ms = base_timeout_ms
        self._backoff = backoff
        self._max_timeout_ms = max(max_timeout_ms, base_timeout_ms)
        self.high_certificate: RoundCertificate = high_certificate
        self.current_round: int = high_certificate.round + 1  # P-ROUND
        self.consecutive_tc_rounds: int = 0
        self.timed_out_locally: bool = False  # "phase one": our own timeout for this round is out
        self._timeouts: dict[int, TimeoutMessage] = {}  # author -> timeout, current round only

    # ------------------------------------------------------------------ questions

    def round_timeout_ms(self) -> float:
        """P-TIMER / P-BACKOFF: the timer armed for the current round."""
        scaled = self._base_timeout_ms * (self._backoff**self.consecutive_tc_rounds)
        return min(scaled, self._max_timeout_ms)

    def would_advance(self, certificate: RoundCertificate) -> bool:
        if not self._rounds_only_grow:  # TEST-ONLY switch P-ROUND: any other round is entered
            return certificate.round + 1 != self.current_round
        return certificate.round + 1 > self.current_round

    def timeout_stake(self) -> int:
        return self._validators.stake_of(self._timeouts)

    def should_echo(self) -> bool:
        """P-ECHO: f+1 stake timed out in our round and we have not yet."""
        return not self.timed_out_locally and self._validators.has_honest_present(self._timeouts)

    def has_tc_quorum(self) -> bool:
        """P-TC."""
        return self._validators.has_quorum(self._timeouts)

    def timeouts(self) -> list[TimeoutMessage]:
        return [self._timeouts[a] for a in sorted(self._timeouts)]

    def has_timeout_from(self, author: int) -> bool:
        return author in self._timeouts

    # ------------------------------------------------------------------ mutations

    def advance(self, certificate: RoundCertificate) -> bool:
        """Enter `certificate.round + 1` if that is ahead (P-ROUND). Returns whether it moved."""
        if not self.would_advance(certificate):
            return False
        self.high_certificate = certificate
        self.current_round = certificate.round + 1
        if isinstance(certificate, TimeoutCertificate):
            self.consecutive_tc_rounds += 1
        else:
            assert isinstance(certificate, QuorumCertificate)
            self.consecutive_tc_rounds = 0
        self.timed_out_locally = False
        self._timeouts = {}
        return True

    def add_timeout(self, message: TimeoutMessage) -> bool:
        """Keep a verified timeout for the current round (P-ONE-TIMEOUT). Returns whether new."""
        if message.info.round != self.current_round:
            return False
        if message.author in self._timeouts and self._one_timeout_per_author:
            return False
        self._timeouts[message.author] = message
        return True

    def mark_timed_out(self) -> None:
        self.timed_out_locally = True
