"""The one token bucket: debt and all-or-nothing spending, scaled allowances, keyed tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.errors import LocalProtocolError
from torrentkit.metainfo import BLOCK_SIZE
from torrentkit.tokenbucket import MIN_BYTE_BURST, KeyedBuckets, TokenBucket, byte_burst


def test_byte_burst_is_a_quarter_second_but_at_least_one_piece_message() -> None:
    assert MIN_BYTE_BURST == BLOCK_SIZE + 13
    assert TokenBucket(1000).burst == MIN_BYTE_BURST
    assert TokenBucket(4_000_000).burst == byte_burst(4_000_000) == 1_000_000
    assert TokenBucket(1000, burst=5).burst == 5


def test_take_refuses_without_taking_and_says_how_long() -> None:
    bucket = TokenBucket(2, burst=3)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [0, 0, 0, 0.5]
    assert bucket.take(2, 0.0) == 1.0  # the refusal above cost nothing
    assert bucket.take(1, 0.5) == 0.0
    assert bucket.take(1, 100.0) == 0.0 and bucket.tokens == 2  # capped at the burst


def test_consume_goes_into_debt_that_take_then_waits_out() -> None:
    bucket = TokenBucket(10, burst=10)
    assert bucket.consume(30, 0.0) == 2.0
    assert bucket.take(1, 1.0) == pytest.approx(1.1)
    assert bucket.take(1, 2.1) == 0.0


def test_time_running_backwards_earns_nothing() -> None:
    bucket = TokenBucket(10, burst=10, stamp=5.0)
    assert bucket.take(10, 5.0) == 0.0
    assert bucket.take(1, 1.0) == pytest.approx(0.1)
    assert bucket.tokens == 0 and bucket.stamp == 5.0


def test_set_rate_keeps_what_was_earned_up_to_the_new_burst() -> None:
    bucket = TokenBucket(100_000, burst=50_000)
    bucket.consume(50_000, 0.0)
    bucket.set_rate(400_000, 0.1, burst=20_000)
    assert (bucket.rate, bucket.burst, bucket.tokens) == (400_000, 20_000, 10_000)
    bucket.set_rate(1000, 0.1)
    assert bucket.burst == MIN_BYTE_BURST


def test_a_scaled_call_may_overdraw_by_the_extra_bursts() -> None:
    bucket = TokenBucket(1, burst=3)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [0, 0, 0, 1.0]
    # Twice the allowance: three more may go now, into a debt of three.
    assert [bucket.take(1, 0.0, scale=2) for _ in range(4)] == [0, 0, 0, 0.5]
    assert bucket.tokens == -3
    # An unscaled call waits the debt out: four tokens at 1/s.
    assert bucket.take(1, 0.0) == 4.0


@given(
    st.lists(
        st.tuples(st.floats(0, 2), st.integers(1, 3), st.sampled_from([1, 1, 4])),
        max_size=200,
    )
)
def test_never_more_than_burst_plus_rate_times_time(steps: list[tuple[float, int, int]]) -> None:
    # Invariant: what unscaled takes get in any run is at most burst + rate x elapsed.
    bucket = TokenBucket(5, burst=10)
    now, got = 0.0, 0
    for dt, cost, _ in steps:
        now += dt
        if bucket.take(cost, now) == 0.0:
            got += cost
    assert got <= 10 + 5 * now + 1e-9


def test_unlimited_rate_tracks_nothing() -> None:
    table: KeyedBuckets[str] = KeyedBuckets(0, 1, max_keys=1)
    assert all(table.allow(str(i), 0.0) for i in range(100)) and len(table) == 0
    assert TokenBucket(0).take(1 << 30, 0.0) == 0.0


def test_keys_have_their_own_buckets() -> None:
    table: KeyedBuckets[str] = KeyedBuckets(1, 2, max_keys=10)
    assert [table.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert table.allow("b", 0.0) and table.take("a", 0.0, cost=2) == 2.0
    assert table.allow("a", 1.0) and not table.allow("a", 1.0)


def test_a_full_table_refuses_new_keys_until_a_bucket_refills() -> None:
    table: KeyedBuckets[str] = KeyedBuckets(1, 2, max_keys=2)
    assert table.allow("a", 0.0) and table.allow("b", 0.0)
    assert table.take("c", 0.0) == 1.0 and len(table) == 2
    assert table.allow("c", 1.0)  # "a" and "b" are full again: forgotten
    assert len(table) == 1


def test_a_full_table_may_forget_its_oldest_half_instead() -> None:
    table: KeyedBuckets[int] = KeyedBuckets(1, 2, max_keys=4, when_full="forget_oldest")
    for port in range(1000):
        assert table.allow(port, 0.0)
        assert len(table) <= 4
    assert 999 in table._buckets and 0 not in table._buckets


def test_bad_settings_are_refused() -> None:
    for rate, burst, keys in [(-1, 1, 1), (1, 0.5, 1), (1, 1, 0)]:
        with pytest.raises(LocalProtocolError):
            KeyedBuckets(rate, burst, max_keys=keys)
