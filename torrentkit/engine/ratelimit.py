"""Rate limits: a token bucket (pure, ``now`` passed in) and a trio wrapper.

The bucket may go into debt: ``consume(n, now)`` always takes the bytes and returns how long
the caller must wait before sending them, so a large block is never starved by small ones
and the long-run rate is exact. Global and per-torrent limits stack by awaiting both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import trio


@dataclass(slots=True)
class TokenBucket:
    """``rate`` bytes per second (0 = unlimited) with up to ``burst`` bytes saved up."""

    rate: float
    burst: float = 0.0
    tokens: float = 0.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.burst <= 0:
            self.burst = max(self.rate / 4, 16 * 1024 + 13)
        self.tokens = self.burst

    def set_rate(self, rate: float, now: float) -> None:
        self._refill(now)
        self.rate = rate
        self.burst = max(rate / 4, 16 * 1024 + 13)
        self.tokens = min(self.tokens, self.burst)

    def consume(self, nbytes: int, now: float) -> float:
        """Take ``nbytes``; return the seconds to wait before using them (0 if none)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        self.tokens -= nbytes
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)


class RateLimiter:
    """A token bucket on trio's clock."""

    def __init__(self, rate: float = 0.0) -> None:
        self.bucket = TokenBucket(rate, stamp=trio.current_time())

    @property
    def rate(self) -> float:
        return self.bucket.rate

    def set_rate(self, rate: float) -> None:
        self.bucket.set_rate(rate, trio.current_time())

    async def acquire(self, nbytes: int) -> None:
        delay = self.bucket.consume(nbytes, trio.current_time())
        if delay > 0:
            await trio.sleep(delay)


async def acquire_all(limiters: Sequence[RateLimiter], nbytes: int) -> None:
    """Wait on every limiter in turn (e.g. the torrent's, then the session's)."""
    for limiter in limiters:
        if limiter.rate > 0:
            await limiter.acquire(nbytes)
