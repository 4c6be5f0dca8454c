"""The timer room: the core's timers on the real clock.

One pending timer per `TimerKind`: `SetTimer` replaces the pending one of its kind. When a
timer expires, a `TimerFired` event is pushed to the runtime's internal queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from consensus.events import CancelTimer, Event, SetTimer, TimerFired, TimerKind


class Timers:
    """`loop.call_later` timers, one per kind."""

    def __init__(self, push_internal: Callable[[Event], None]):
        self._push_internal = push_internal
        self._handles: dict[TimerKind, asyncio.TimerHandle] = {}

    def set(self, command: SetTimer) -> None:
        old = self._handles.pop(command.kind, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._handles[command.kind] = loop.call_later(
            max(0.0, command.delay_ms) / 1000.0, self._fired, command.kind, command.round
        )

    def cancel(self, command: CancelTimer) -> None:
        handle = self._handles.pop(command.kind, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def pending(self) -> set[TimerKind]:
        return set(self._handles)

    def _fired(self, kind: TimerKind, round: int) -> None:
        self._handles.pop(kind, None)
        self._push_internal(TimerFired(now_ns=time.time_ns(), kind=kind, round=round))
