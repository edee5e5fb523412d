"""RollingRate against the implementation before its same-second fast path.

``add`` and ``rate`` skip ``_advance`` while ``now`` is inside the newest second and compare
instead of calling ``max``; ``RateReference`` is the code they replaced, kept here so that
the property below holds the two equal on any sequence of calls, clocks that go back and
long silences included.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit.engine.rates import RollingRate
from torrentkit.errors import LocalProtocolError


class RateReference:
    """The original RollingRate (one-second buckets; every call advances)."""

    def __init__(self, *, now: float, window: int = 20) -> None:
        self.window = window
        self._buckets = [0] * window
        self._start = now
        self._second = math.floor(now)
        self._sum = 0
        self.total = 0

    def _advance(self, now: float) -> int:
        second = math.floor(now)
        gap = second - self._second
        if gap <= 0:
            return self._second
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
        return second

    def add(self, now: float, nbytes: int) -> None:
        second = self._advance(now)
        self._buckets[second % self.window] += nbytes
        self._sum += nbytes
        self.total += nbytes

    def rate(self, now: float) -> float:
        second = self._advance(now)
        window_start = max(second - self.window + 1, self._start)
        covered = max(now - window_start, 1.0)
        return self._sum / covered


# Steps mostly forward within a second or a few, sometimes a long silence, sometimes back.
_steps = st.one_of(
    st.floats(min_value=0.0, max_value=1.5),
    st.floats(min_value=0.0, max_value=60.0),
    st.floats(min_value=-2.0, max_value=0.0),
    st.sampled_from([0.0, 1.0, 0.5, 19.0, 20.0, 21.0]),
)
_calls = st.lists(st.tuples(_steps, st.one_of(st.none(), st.integers(0, 1 << 20))), max_size=80)


@settings(max_examples=400, deadline=None)
@given(
    start=st.one_of(st.floats(min_value=-100.0, max_value=1e6), st.sampled_from([0.0, 7.0])),
    window=st.integers(1, 25),
    calls=_calls,
)
def test_rolling_rate_equals_reference(
    start: float, window: int, calls: list[tuple[float, int | None]]
) -> None:
    new, old = RollingRate(now=start, window=window), RateReference(now=start, window=window)
    now = start
    for step, nbytes in calls:
        now += step
        if nbytes is None:
            assert new.rate(now) == old.rate(now)
        else:
            new.add(now, nbytes)
            old.add(now, nbytes)
        assert new.total == old.total
    assert new.rate(now) == old.rate(now)
    assert new.rate(now + window + 1) == old.rate(now + window + 1)


def test_rolling_rate_examples() -> None:
    r = RollingRate(now=10.0, window=3)
    r.add(10.2, 1000)
    assert r.rate(10.5) == 1000.0  # under a second covered counts as one
    r.add(11.0, 2000)  # exactly on the next second's boundary: a new bucket
    assert r.rate(12.0) == 1500.0
    assert r.rate(13.0) == 1000.0  # the 10.x bucket left the window: 2000 over 11-13
    r.add(12.5, 10)
    r.add(11.2, 5)  # a clock that went back counts in the newest bucket (13)
    assert r.rate(13.0) == 2015 / 2
    assert r.rate(16.0) == 0.0
    with pytest.raises(LocalProtocolError):
        r.add(17.0, -1)
