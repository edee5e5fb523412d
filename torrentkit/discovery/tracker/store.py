"""Where the tracker keeps its swarms: the seam between the front ends and the swarm records.

The HTTP front end (:mod:`.server`) -- and any other front end -- calls a :class:`SwarmStore`:
``await store.announce(req, remote_ip=..., now=store.clock())``, ``await store.scrape(...)``,
``await store.stats()``. Two stores implement it:

- :class:`MemoryStore` (the default): the swarms of :class:`~.state.TrackerState` in this
  process's memory. Fastest; one process; lost on restart.
- :class:`~.redis_store.RedisStore` (``redis://HOST:PORT/DB``, ``unix:///PATH?db=N``): the
  swarms in Redis, one atomic script per announce, so any number of tracker processes on any
  number of hosts serve one swarm view, and a restart loses nothing.

Both apply the same rules (docs in :mod:`.state`; the shared part is
:class:`~.state.TrackerRules`). A store that cannot be reached raises
:class:`StoreUnavailable`, a :class:`~.protocol.TrackerRequestError`: front ends answer it as
they answer any refused announce, with a failure reason, and keep running.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from torrentkit.discovery.tracker.protocol import (
    AnnounceReply,
    AnnounceRequest,
    ScrapeStats,
    TrackerRequestError,
)
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState, TrackerStats
from torrentkit.ids import InfoHash


class StoreUnavailable(TrackerRequestError):
    """The store cannot be reached now; the text is the failure reason clients get."""


class SwarmStore(Protocol):
    """What a tracker front end needs from the place the swarms live."""

    @property
    def config(self) -> TrackerConfig: ...

    #: The clock ``now`` comes from (seconds): monotonic for one process, wall clock for a
    #: store that processes on several hosts share.
    clock: Callable[[], float]
    #: None while the store answers; why it does not, since its last failed call.
    down: str | None

    async def announce(
        self, req: AnnounceRequest, *, remote_ip: str, now: float
    ) -> AnnounceReply: ...

    async def scrape(self, info_hashes: Iterable[InfoHash]) -> dict[InfoHash, ScrapeStats]: ...

    async def stats(self, *, max_swarms: int = 50, max_peers: int = 20) -> TrackerStats: ...

    async def purge(self, now: float) -> int: ...

    def set_whitelist(self, hashes: Iterable[bytes] | None) -> None: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """The in-memory store: a :class:`~.state.TrackerState` behind the async interface."""

    def __init__(self, state: TrackerState, *, clock: Callable[[], float] = time.monotonic):
        self.state = state
        self.clock = clock
        self.down: str | None = None  # memory is never down

    @property
    def config(self) -> TrackerConfig:
        return self.state.config

    async def announce(self, req: AnnounceRequest, *, remote_ip: str, now: float) -> AnnounceReply:
        return self.state.announce(req, remote_ip=remote_ip, now=now)

    async def scrape(self, info_hashes: Iterable[InfoHash]) -> dict[InfoHash, ScrapeStats]:
        return self.state.scrape(info_hashes)

    async def stats(self, *, max_swarms: int = 50, max_peers: int = 20) -> TrackerStats:
        return self.state.stats(max_swarms=max_swarms, max_peers=max_peers)

    async def purge(self, now: float) -> int:
        return self.state.purge(now)

    def set_whitelist(self, hashes: Iterable[bytes] | None) -> None:
        self.state.set_whitelist(hashes)

    async def aclose(self) -> None:
        return None


def as_store(state: TrackerState | SwarmStore) -> SwarmStore:
    """A store for ``state``: a bare :class:`~.state.TrackerState` is wrapped in memory."""
    return MemoryStore(state) if isinstance(state, TrackerState) else state


def open_store(
    url: str | None,
    config: TrackerConfig,
    *,
    whitelist: Iterable[bytes] | None = None,
    rng: random.Random | None = None,
) -> SwarmStore:
    """The store ``--store`` names: None or ``memory`` for memory, a Redis URL for Redis.

    Raises ValueError (one line) for a URL it cannot use. Connects lazily: a Redis that is
    down now is not an error here (announces fail until it is back).
    """
    if url is None or url == "memory":
        return MemoryStore(TrackerState(config, whitelist=whitelist, rng=rng))
    from torrentkit.discovery.tracker.redis_store import RedisStore

    return RedisStore.from_url(url, config, whitelist=whitelist, rng=rng)
