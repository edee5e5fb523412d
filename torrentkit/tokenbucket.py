"""The one token bucket (pure: ``now`` is passed in), and a table of them keyed by source.

- :class:`TokenBucket`: ``rate`` tokens per second with up to ``burst`` saved up. Two ways to
  spend: :meth:`~TokenBucket.consume` always takes and may go into debt (bytes on a link: a
  large block is never starved by small ones, and the long-run rate is exact);
  :meth:`~TokenBucket.take` takes only what is there (requests: refused ones cost nothing).
- :class:`KeyedBuckets`: one bucket per key (an IP, an address), every key with the same rate
  and burst, at most ``max_keys`` of them. A key whose bucket has refilled is the same as an
  unseen key, so when the table is full those are forgotten first; if none has refilled, a
  new key is refused (``when_full="refuse"``: its own bucket could not be kept) or the oldest
  half of the table is forgotten (``"forget_oldest"``: for spoofable sources such as UDP,
  where refusing new keys would let a flood of fake ones shut out honest ones).

Users: byte limits in :mod:`torrentkit.engine.ratelimit` (on trio's clock), per-address
datagram limits in :mod:`torrentkit.discovery.chord.store`, per-IP request limits in
:mod:`torrentkit.discovery.napster.index`, per-link message limits in
:mod:`torrentkit.discovery.gnutella.overlay`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from torrentkit.errors import LocalProtocolError
from torrentkit.metainfo import BLOCK_SIZE

#: The smallest automatic burst of a byte bucket: one piece message (a block and its 13-byte
#: header), so a limited link can always send a whole block.
MIN_BYTE_BURST = BLOCK_SIZE + 13

K = TypeVar("K", bound=Hashable)


def byte_burst(rate: float) -> float:
    """The burst a byte rate gets unless one is given: a quarter second, at least one piece
    message."""
    return max(rate / 4, MIN_BYTE_BURST)


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second (0 = unlimited) with up to ``burst`` saved up; it starts full.

    ``burst`` 0 means :func:`byte_burst` of the rate (the bucket counts bytes).
    """

    rate: float
    burst: float = 0.0
    tokens: float = 0.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.burst <= 0:
            self.burst = byte_burst(self.rate)
        self.tokens = self.burst

    def set_rate(self, rate: float, now: float, burst: float = 0.0) -> None:
        """A new rate from ``now`` on; ``burst`` 0 means :func:`byte_burst` of it."""
        self.refill(now)
        self.rate = rate
        self.burst = burst if burst > 0 else byte_burst(rate)
        self.tokens = min(self.tokens, self.burst)

    def consume(self, amount: float, now: float) -> float:
        """Take ``amount`` even into debt; return the seconds to wait before using it (0 if
        none)."""
        if self.rate <= 0:
            return 0.0
        self.refill(now)
        self.tokens -= amount
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    def take(self, amount: float, now: float, scale: float = 1.0) -> float:
        """Take ``amount`` if the bucket holds it: 0.0; else take nothing and return the
        seconds until it would.

        ``scale`` (at least 1) is a trusted source's larger allowance, as if rate and burst
        were ``scale`` times larger: this call refills ``scale`` times as fast and may overdraw
        the bucket by ``(scale - 1) * burst``, a debt that unscaled calls wait out.
        """
        if self.rate <= 0:
            return 0.0
        self.refill(now, scale)
        floor = (scale - 1.0) * self.burst
        if self.tokens + floor >= amount:
            self.tokens -= amount
            return 0.0
        return (amount - self.tokens - floor) / (self.rate * scale)

    def refill(self, now: float, scale: float = 1.0) -> None:
        """Add what the rate (times ``scale``) earned since the last call, up to ``burst``;
        time never runs backwards here."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate * scale)
            self.stamp = now

    def full(self, now: float) -> bool:
        """Whether the bucket would be full at ``now`` (a full bucket remembers nothing)."""
        return self.tokens + max(0.0, now - self.stamp) * self.rate >= self.burst


class KeyedBuckets(Generic[K]):
    """A :class:`TokenBucket` per key, each ``rate`` per second with ``burst`` (see the module
    doc for what happens at ``max_keys``). ``rate`` 0 turns limiting off and tracks nothing."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int,
        when_full: Literal["refuse", "forget_oldest"] = "refuse",
    ) -> None:
        if rate < 0 or burst < 1 or max_keys < 1:
            raise LocalProtocolError("need rate >= 0, burst >= 1, max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.when_full = when_full
        self._buckets: dict[K, TokenBucket] = {}

    def take(self, key: K, now: float, cost: float = 1.0, *, scale: float = 1.0) -> float:
        """Take ``cost`` tokens from ``key``'s bucket: 0.0 if allowed, else the seconds until
        they would be there. ``scale`` as in :meth:`TokenBucket.take`."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys and not self._make_room(now):
                return cost / self.rate
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, stamp=now)
        return bucket.take(cost, now, scale)

    def allow(self, key: K, now: float, cost: float = 1.0, *, scale: float = 1.0) -> bool:
        """:meth:`take`, as a yes or no."""
        return self.take(key, now, cost, scale=scale) == 0.0

    def _make_room(self, now: float) -> bool:
        for k in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[k]
        if len(self._buckets) < self.max_keys:
            return True
        if self.when_full == "refuse":
            return False
        for k in list(self._buckets)[: max(1, len(self._buckets) // 2)]:
            del self._buckets[k]
        return True

    def __len__(self) -> int:
        return len(self._buckets)
