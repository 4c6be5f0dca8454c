"""A tiny test-double state machine for engine tests (not a consensus protocol).

It speaks the real event/command contract: on Start it arms a "round" timer; each
expiry increments a counter, persists it every second time, broadcasts a vote naming
the counter and re-arms; every received message is logged with its time. On restart
it resumes from the counter on its disk, which shows what survived the crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from consensus.events import (
    Broadcast,
    MessageReceived,
    PayloadReady,
    PersistSafety,
    RequestPayload,
    RoundEntered,
    SetTimer,
    Start,
    TimerFired,
)
from consensus.messages import Vote, VoteMessage


class Counter(msgspec.Struct, frozen=True):
    value: int


@dataclass
class PingMachine:
    index: int
    period_ms: float = 10.0
    persist_every: int = 2
    counter: int = 0
    log: list[tuple[str, int, Any]] = field(default_factory=list)

    def handle(self, event: Any) -> list[Any]:
        if isinstance(event, Start):
            self.log.append(("start", event.now_ns, self.counter))
            return [SetTimer("round", self.counter + 1, self.period_ms)]
        if isinstance(event, TimerFired):
            self.counter += 1
            self.log.append(("timer", event.now_ns, event.round))
            commands: list[Any] = []
            if self.counter % self.persist_every == 0:
                commands.append(PersistSafety(Counter(self.counter)))  # type: ignore[arg-type]
            vote = Vote(block_id=bytes([self.index]) * 32, round=self.counter, epoch=1)
            commands.append(
                Broadcast(VoteMessage(vote=vote, author=self.index, signature=bytes(64)))
            )
            commands.append(RoundEntered(self.counter, "qc"))
            commands.append(RequestPayload(self.counter, self.counter, bytes(32)))
            commands.append(SetTimer("round", self.counter + 1, self.period_ms))
            return commands
        if isinstance(event, MessageReceived):
            self.log.append(("recv", event.now_ns, (event.sender, event.message.vote.round)))
            return []
        if isinstance(event, PayloadReady):
            self.log.append(("payload", event.now_ns, event.payload))
            return []
        raise AssertionError(f"unexpected event {event!r}")


def ping_factory(machines: dict[int, list[PingMachine]], **kwargs: Any):
    """A factory that restores the counter from disk and remembers every machine built."""

    def factory(index: int, identity: int, disk: Any) -> PingMachine:
        counter = disk.safety.value if disk is not None and disk.safety is not None else 0
        machine = PingMachine(identity, counter=counter, **kwargs)
        machines.setdefault(index, []).append(machine)
        return machine

    return factory
