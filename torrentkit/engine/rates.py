"""Rolling transfer rates with time passed in (pure: no clock inside).

:class:`RollingRate` keeps the bytes of the last ``window`` seconds (default 20) in
one-second buckets, a ring of ``window`` integers and their running sum, so ``add`` and
``rate`` are O(1) amortised (a call after a long silence clears at most ``window`` buckets).

Why buckets and not an exponential moving average: an EMA never forgets a burst completely
and its "~20 s" is a half-life that depends on how often it is sampled; the choker compares
peers over the same recent period, so a plain sliding window over whole seconds is easier to
reason about and to test (a peer that stops sending falls to exactly 0 after ``window`` s).

The rate is the window's bytes divided by the time it covers: the seconds since the first
bucket of the window or since the estimator started, whichever is later, never less than
one second. So a peer connected 5 s ago that sent 5 MB reads 1 MB/s, not 250 kB/s, and a
single block in the first instant does not read as an absurd rate.
"""

from __future__ import annotations

import math

from torrentkit.errors import LocalProtocolError


class RollingRate:
    """Bytes per second over the last ``window`` seconds; every call takes ``now``."""

    __slots__ = ("_buckets", "_next", "_second", "_start", "_sum", "total", "window")

    def __init__(self, *, now: float, window: int = 20) -> None:
        if window < 1:
            raise LocalProtocolError(f"window must be >= 1 s, got {window}")
        self.window = window
        self._buckets = [0] * window
        self._start = now
        self._second = math.floor(now)  # the second the newest bucket stands for
        self._next = self._second + 1  # where the next second begins
        self._sum = 0
        self.total = 0  # every byte ever added

    def _advance(self, now: float) -> int:
        if now < self._next:  # same second, or a clock that went back: count it in the newest
            return self._second
        second = math.floor(now)
        gap = second - self._second
        buckets, window = self._buckets, self.window
        if gap >= window:
            buckets[:] = [0] * window
            self._sum = 0
        else:
            for s in range(self._second + 1, second + 1):
                slot = s % window
                self._sum -= buckets[slot]
                buckets[slot] = 0
        self._second = second
        self._next = second + 1
        return second

    def add(self, now: float, nbytes: int) -> None:
        """Count ``nbytes`` transferred at time ``now``."""
        if nbytes < 0:
            raise LocalProtocolError(f"negative byte count {nbytes}")
        second = self._second if now < self._next else self._advance(now)
        self._buckets[second % self.window] += nbytes
        self._sum += nbytes
        self.total += nbytes

    def rate(self, now: float) -> float:
        """Bytes per second over the window ending at ``now``."""
        # (called per receive and per upload batch: the same second needs no advance, and
        # plain comparisons instead of max())
        second = self._second if now < self._next else self._advance(now)
        window_start: float = second - self.window + 1
        if window_start < self._start:
            window_start = self._start
        covered = now - window_start
        return self._sum / (covered if covered > 1.0 else 1.0)
