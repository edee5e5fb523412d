"""Token bucket rates, on exact numbers and on trio's virtual clock."""

from __future__ import annotations

import trio
import trio.testing

from torrentkit.engine.ratelimit import RateLimiter, TokenBucket, acquire_all


def test_unlimited_never_waits() -> None:
    bucket = TokenBucket(0)
    assert all(bucket.consume(1 << 20, 0.0) == 0.0 for _ in range(100))


def test_burst_then_steady_rate() -> None:
    bucket = TokenBucket(100_000, burst=50_000)
    assert bucket.consume(50_000, 0.0) == 0.0  # the burst is free
    assert bucket.consume(100_000, 0.0) == 1.0  # then debt: one second at 100 kB/s
    # After that second the debt is paid; half a second later 50 kB are free again.
    assert bucket.consume(50_000, 1.5) == 0.0


def test_long_run_rate_is_exact() -> None:
    bucket = TokenBucket(64_000)
    now = 0.0
    for _ in range(1000):
        now += bucket.consume(16_384, now)
    assert abs(1000 * 16_384 / now - 64_000) / 64_000 < 0.02


async def test_limiter_on_virtual_clock(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(32 * 1024)
    start = trio.current_time()
    with trio.fail_after(100):
        for _ in range(64):
            await limiter.acquire(16 * 1024)
    elapsed = trio.current_time() - start
    # 1 MiB at 32 KiB/s is 32 s, less the initial burst of one piece message (16,397 B).
    assert 31.0 < elapsed < 32.5


async def test_stacked_limits_take_the_slower(autojump_clock: trio.testing.MockClock) -> None:
    slow, fast = RateLimiter(10_000), RateLimiter(1_000_000)
    start = trio.current_time()
    with trio.fail_after(100):
        for _ in range(20):
            await acquire_all([fast, slow], 5_000)
    assert 8.0 < trio.current_time() - start < 10.5
