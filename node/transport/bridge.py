"""The asyncio <-> trio bridge used by the `libp2p` transport.

py-libp2p is trio-native, the node is asyncio (maybe uvloop). The trio side runs with
`trio.run` in its own daemon thread. Crossing is by two non-blocking hand-offs, each of
which wakes the other loop at most once per batch:

- asyncio -> trio: the caller mutates shared state under a lock, then `TrioWaker.wake()`
  schedules one callback with `TrioToken.run_sync_soon` (thread-safe, never blocks).
  On the trio side the callback typically notifies a `ChangeSignal`.
- trio -> asyncio: `AsyncioInbox.put()` appends to a deque and, when no drain is pending,
  schedules one `loop.call_soon_threadsafe(drain)`; the drain hands every queued item to
  the handler on the asyncio thread. The inbox is bounded: the trio producer awaits
  `wait_for_room()` (backpressure into libp2p's flow control) instead of dropping.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")

_ROOM_POLL_S = 0.001  # trio producer's poll period while the inbox is full


class AsyncioInbox(Generic[T]):
    """Trio thread -> asyncio loop hand-off, batched and bounded."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, handler: Callable[[T], None], max_items: int
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self._loop = loop
        self._handler = handler
        self.max_items = max_items
        self._items: deque[T] = deque()
        self._scheduled = False
        self.wakeups = 0  # how many cross-thread callbacks were scheduled

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.max_items

    async def wait_for_room(self) -> None:
        """Trio side: wait until the inbox is below its bound (backpressure)."""
        while len(self._items) >= self.max_items:  # rule: bounded inbox, never dropped
            await trio.sleep(_ROOM_POLL_S)

    def put(self, item: T) -> None:
        """Trio side: enqueue (call `wait_for_room` first to respect the bound)."""
        self._items.append(item)
        # Order matters: append, then test the flag (the drain clears it before popping).
        if not self._scheduled:
            self._scheduled = True
            self.wakeups += 1
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the asyncio loop is closed: nobody will read this
                self._items.clear()

    def _drain(self) -> None:
        self._scheduled = False
        for _ in range(len(self._items)):  # bounded by the items present now
            self._handler(self._items.popleft())


class TrioWaker:
    """Asyncio thread -> trio loop: run `callback(key)` in trio, coalescing repeats."""

    def __init__(self, token: trio.lowlevel.TrioToken, callback: Callable[[int], None]) -> None:
        self._token = token
        self._callback = callback
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self.wakeups = 0

    def wake(self, key: int) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
            self.wakeups += 1
        try:
            self._token.run_sync_soon(self._run, key)
        except trio.RunFinishedError:  # the trio thread is gone (stopped)
            with self._lock:
                self._pending.discard(key)

    def _run(self, key: int) -> None:
        with self._lock:
            self._pending.discard(key)
        self._callback(key)


class ChangeSignal:
    """Trio-side "something changed, re-check your condition" broadcast.

    `notify()` wakes every task in `wait_for` at that moment; each re-tests its own
    predicate. The event a waiter sleeps on is only ever replaced by `notify()` right after
    it is set, never silently, so no wake-up can be lost (the bug of swapping in a fresh
    `trio.Event` while a task still waits on the old one). Between a waiter's predicate
    test and its sleep there is no checkpoint, so a `notify()` from another trio task (or
    from a `TrioToken.run_sync_soon` callback) cannot slip in between either.
    Use from the trio thread only.
    """

    def __init__(self) -> None:
        self._event = trio.Event()
        self.notifications = 0

    def notify(self) -> None:
        self.notifications += 1
        event, self._event = self._event, trio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` is true (tested now and after every notify)."""
        while not predicate():  # bounded by notifications: each pass sleeps until one
            await self._event.wait()


class TrioThread:
    """Runs `main()` under `trio.run` in a daemon thread; exposes its token once started."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.token: trio.lowlevel.TrioToken | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, main: Callable[[], object]) -> None:
        def run() -> None:
            try:
                trio.run(main)  # type: ignore[arg-type]
            except BaseException as exc:  # reported to the asyncio side through `error`
                self.error = exc

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> bool:
        """Wait for the thread to end; True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
