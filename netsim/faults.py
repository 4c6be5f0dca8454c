"""Fault plans: crash (optionally restart from the node's simulated disk), pause, clock offset.

A fault is plain data; the simulator (`netsim.engine.Simulator`) applies it:
- `Crash`: the node stops at `at_ms` (or while handling the first event that makes it
  enter round >= `at_round`: that event's commands are discarded, as if the process
  died mid-handler before any of its effects). Timers die with it; messages sent to a
  down node are lost. With `restart_ms` (absolute) or `restart_after_ms` (relative to
  the crash) a new machine is built from exactly what its persist commands wrote.
- `Pause`: from `from_ms` to `to_ms` the node handles nothing; deliveries and timer
  expiries addressed to it are held and handed over, in order, when it resumes (a
  stop-the-world GC pause or SIGSTOP). Its disk and memory are kept.
- `ClockOffset`: the node reads simulated time + `offset_ms` (events' `now_ns`); timer
  durations are unaffected (a skewed wall clock, not a faster one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Crash:
    node: int
    at_ms: float | None = None
    at_round: int | None = None
    restart_ms: float | None = None
    restart_after_ms: float | None = None

    def __post_init__(self) -> None:
        if (self.at_ms is None) == (self.at_round is None):
            raise ValueError("a crash needs exactly one of at_ms or at_round")
        if self.at_ms is not None and not (math.isfinite(self.at_ms) and self.at_ms >= 0):
            raise ValueError(f"crash at_ms must be a finite number >= 0, got {self.at_ms}")
        if self.at_round is not None and self.at_round < 1:
            raise ValueError(f"crash at_round must be >= 1, got {self.at_round}")
        if self.restart_ms is not None and self.restart_after_ms is not None:
            raise ValueError("give restart_ms or restart_after_ms, not both")
        if self.restart_ms is not None:
            if self.at_ms is None:
                raise ValueError("restart_ms needs at_ms (use restart_after_ms with at_round)")
            if not self.restart_ms > self.at_ms:
                raise ValueError(
                    f"restart_ms ({self.restart_ms}) must be later than at_ms ({self.at_ms})"
                )
        if self.restart_after_ms is not None and not self.restart_after_ms > 0:
            raise ValueError(f"restart_after_ms must be > 0, got {self.restart_after_ms}")


@dataclass(frozen=True, slots=True)
class Pause:
    node: int
    from_ms: float
    to_ms: float

    def __post_init__(self) -> None:
        if not 0 <= self.from_ms < self.to_ms:
            raise ValueError(f"pause needs 0 <= from_ms < to_ms, got {self.from_ms}, {self.to_ms}")


@dataclass(frozen=True, slots=True)
class ClockOffset:
    node: int
    offset_ms: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.offset_ms):
            raise ValueError("clock offset must be finite")


Fault = Crash | Pause | ClockOffset
