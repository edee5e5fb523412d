"""One timer for many torrents: per-second link work and rechokes, only where there are links.

A torrent with no peer links has nothing to do each second (no keep-alive to send, no silence
to notice, no snub, no request to refill, nobody to rechoke), so the :class:`TickWheel` does
not visit it at all: thousands of idle torrents cost nothing per second. A torrent
:meth:`~TickWheel.activate`\\ s itself when its first link comes and
:meth:`~TickWheel.deactivate`\\ s itself when its last link goes. For the active ones the wheel:

- once a second (one shared grid for all of them) calls :meth:`Ticking.tick`: keep-alives,
  silence, snubbing, request refills per link;
- at each torrent's own rechoke times (every ``rechoke_interval``, which may be shorter than a
  second) calls :meth:`Ticking.rechoke_tick`, kept in a heap by due time.

Between events the wheel's one task sleeps until the earliest of them (or until a torrent
activates); with no active torrent it sleeps until one does. The engine session runs one wheel
for all its torrents; a :class:`~torrentkit.engine.torrent.Torrent` made without one runs
its own (the same code, one torrent).
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

#: Seconds between the per-link rounds (keep-alives, silence, snubs, request refills).
TICK_PERIOD = 1.0


class Ticking(Protocol):
    """What the wheel drives (a torrent)."""

    def tick(self, now: float) -> None:
        """The per-second round over its links."""

    def next_rechoke(self, now: float) -> float:
        """When its next rechoke is due (strictly after ``now``)."""

    def rechoke_tick(self, now: float) -> float:
        """Rechoke now; returns when the next one is due (strictly after ``now``)."""


class TickWheel:
    """Drives the active torrents' per-second rounds and rechokes from one task (:meth:`run`)."""

    def __init__(self, period: float = TICK_PERIOD) -> None:
        self.period = period
        self._active: dict[Ticking, None] = {}  # an ordered set
        self._due: dict[Ticking, float] = {}  # the rechoke time each active one waits for
        self._heap: list[tuple[float, int, Ticking]] = []  # stale entries dropped lazily
        self._seq = itertools.count()
        self._next_second = math.inf
        self._wakeup = trio.Event()

    @property
    def active(self) -> int:
        """How many torrents are visited (have links)."""
        return len(self._active)

    def is_active(self, item: Ticking) -> bool:
        return item in self._active

    def activate(self, item: Ticking) -> None:
        """``item`` has links now: visit it every second and rechoke it on time."""
        if item in self._active:
            return
        now = trio.current_time()
        if not self._active:
            self._next_second = now + self.period
        self._active[item] = None
        self._schedule(item, item.next_rechoke(now))
        self._wakeup.set()

    def deactivate(self, item: Ticking) -> None:
        """``item`` has no links any more: stop visiting it."""
        if item not in self._active:
            return
        del self._active[item]
        self._due.pop(item, None)
        if len(self._heap) > 2 * len(self._due) + 64:  # many stale entries: compact
            self._heap = [e for e in self._heap if self._due.get(e[2]) == e[0]]
            heapq.heapify(self._heap)

    def _schedule(self, item: Ticking, due: float) -> None:
        self._due[item] = due
        heapq.heappush(self._heap, (due, next(self._seq), item))

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            self._wakeup = trio.Event()
            self.run_due(trio.current_time())
            with trio.move_on_at(self.next_wake()):
                await self._wakeup.wait()

    def next_wake(self) -> float:
        """When something is next due (``inf``: nothing is active)."""
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        wake = self._next_second if self._active else math.inf
        return min(wake, heap[0][0]) if heap else wake

    def run_due(self, now: float) -> None:
        """Do everything due at ``now``: the per-second round, then the rechokes due."""
        if self._active and now >= self._next_second:
            self._next_second += self.period
            if self._next_second <= now:  # fell behind (a long blocking call): no catch-up
                self._next_second = now + self.period
            for item in list(self._active):
                if item in self._active:  # an earlier one's round may not end it, but be sure
                    item.tick(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, item = heapq.heappop(heap)
            if self._due.get(item) != due:
                continue  # stale: deactivated, or rescheduled
            del self._due[item]
            following = item.rechoke_tick(now)
            if item in self._active:
                self._schedule(item, max(following, now + 1e-3))
