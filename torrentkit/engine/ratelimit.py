"""Byte rate limits on trio's clock, over the one token bucket (:mod:`torrentkit.tokenbucket`).

The bucket may go into debt: ``consume(n, now)`` always takes the bytes and returns how long
the caller must wait before sending them, so a large block is never starved by small ones
and the long-run rate is exact. Global and per-torrent limits stack by awaiting both.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from torrentkit.tokenbucket import TokenBucket

__all__ = ["RateLimiter", "TokenBucket", "acquire_all"]


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
