"""Fixtures for the tracker tests: a real redis-server, and the swarm stores over it."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.redis_server import RedisServer, redis_server
from torrentkit.discovery.tracker.protocol import AnnounceReply, AnnounceRequest, ScrapeStats
from torrentkit.discovery.tracker.redis_store import RedisStore
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState, TrackerStats
from torrentkit.discovery.tracker.store import MemoryStore, SwarmStore
from torrentkit.ids import InfoHash

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (on a unix socket); tests keep apart by key prefix."""
    with redis_server(tmp_path_factory.mktemp("redis"), unix=True) as server:
        yield server


class SyncStore:
    """A store driven synchronously on its own asyncio loop (the suite reads like before)."""

    def __init__(self, store: SwarmStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self._loop = loop

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def announce(self, req: AnnounceRequest, *, remote_ip: str, now: float) -> AnnounceReply:
        reply: AnnounceReply = self._run(self.store.announce(req, remote_ip=remote_ip, now=now))
        return reply

    def scrape(self, hashes: Iterable[InfoHash]) -> dict[InfoHash, ScrapeStats]:
        out: dict[InfoHash, ScrapeStats] = self._run(self.store.scrape(hashes))
        return out

    def stats(self, **kw: int) -> TrackerStats:
        stats: TrackerStats = self._run(self.store.stats(**kw))
        return stats

    def purge(self, now: float) -> int:
        dropped: int = self._run(self.store.purge(now))
        return dropped

    def set_whitelist(self, hashes: Iterable[bytes] | None) -> None:
        self.store.set_whitelist(hashes)

    def __len__(self) -> int:
        return self.stats().torrents


class MakeStore(Protocol):
    def __call__(
        self, config: TrackerConfig | None = None, *, whitelist: Iterable[bytes] | None = None
    ) -> SyncStore: ...


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Builds stores of one kind (the test runs once per kind); closed at the end."""
    loop = asyncio.new_event_loop()
    made: list[SwarmStore] = []

    def make(
        config: TrackerConfig | None = None, *, whitelist: Iterable[bytes] | None = None
    ) -> SyncStore:
        rng = random.Random(7)
        store: SwarmStore
        if request.param == "memory":
            store = MemoryStore(TrackerState(config, rng=rng, whitelist=whitelist))
        else:
            server: RedisServer = request.getfixturevalue("redis")
            url = f"{server.url}&prefix=t{next(_prefixes)}:"
            store = RedisStore.from_url(url, config, whitelist=whitelist, rng=rng)
        made.append(store)
        return SyncStore(store, loop)

    try:
        yield make
    finally:
        for store in made:
            loop.run_until_complete(store.aclose())
        loop.close()
