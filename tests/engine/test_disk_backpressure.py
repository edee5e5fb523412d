"""Disk backpressure: while the piece writer's backlog is over its limit the peer readers
stop receiving, so a slow disk bounds the memory of pieces waiting for it, and the download
still completes (in-memory network, virtual clock)."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from torrentkit.engine import storage as storage_mod
from torrentkit.engine.peer import RECEIVE_SIZE
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import Buffer, HashPrefix, MemoryStorage, PieceWriter
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent, payload_of

KIB = 1024
PIECE = 64 * KIB
SIZE = 4 * 1024 * KIB
LIMIT = 512 * KIB
#: Virtual seconds each piece write takes: 1.3 MB/s, far below the network's rate.
WRITE_SECONDS = 0.05


class SlowStorage(MemoryStorage):
    """Each piece write takes WRITE_SECONDS of the virtual clock (inline: no thread, so the
    run is deterministic)."""

    async def write_piece(self, index: int, data: Buffer, prefix: HashPrefix | None = None) -> bool:
        await trio.sleep(WRITE_SECONDS)
        return await super().write_piece(index, data, prefix)


async def start_session(nursery: trio.Nursery, net: SimNetwork, host: str) -> Session:
    session = Session(net.view(host), SessionOptions(bind=host, port=6881), rng=random.Random(host))
    await nursery.start(session.run)
    return session


async def download(monkeypatch: pytest.MonkeyPatch, limit: int) -> tuple[int, bool]:
    """Download SIZE bytes onto SlowStorage with the writer's limit at ``limit``; returns
    the most piece bytes ever queued for the writer, and whether the readers were paused."""
    monkeypatch.setattr(storage_mod, "MAX_QUEUED_BYTES", limit)
    peak = 0
    paused = False
    submit = PieceWriter.submit

    def counting_submit(self: PieceWriter[storage_mod.PieceJob], job: storage_mod.PieceJob) -> None:
        nonlocal peak, paused
        submit(self, job)
        peak = max(peak, self.queued_bytes)
        paused = paused or not self.room.is_set()

    monkeypatch.setattr(PieceWriter, "submit", counting_submit)
    rng = random.Random(7)
    info, payload = make_torrent(rng, SIZE, PIECE)
    net = SimNetwork(rng)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.5.0.1")
            leecher = await start_session(nursery, net, "127.5.0.2")
            await seeder.add_torrent(info, MemoryStorage(info, payload))
            storage = SlowStorage(info)
            torrent = await leecher.add_torrent(info, storage)
            torrent.add_peers([seeder.address], "test")
            await torrent.complete.wait()
            nursery.cancel_scope.cancel()
    assert payload_of(storage, info) == payload
    return peak, paused


async def test_a_slow_disk_pauses_the_readers_and_bounds_the_backlog(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    peak, paused = await download(monkeypatch, LIMIT)
    assert paused
    # Over the limit by at most what one receive brought (the reader stops before the next).
    assert LIMIT < peak <= LIMIT + RECEIVE_SIZE + PIECE


async def test_without_the_limit_the_backlog_grows(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same download with no effective limit queues most of the payload."""
    peak, paused = await download(monkeypatch, SIZE * 2)
    assert not paused
    assert peak > SIZE // 2


class StallingStorage(MemoryStorage):
    """The third piece write stalls for STALL seconds of the virtual clock (a disk that
    hangs for longer than the silence and snub limits); the others are quick."""

    STALL = 150.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes = 0

    async def write_piece(self, index: int, data: Buffer, prefix: HashPrefix | None = None) -> bool:
        self.writes += 1
        await trio.sleep(self.STALL if self.writes == 3 else 0.001)
        return await super().write_piece(index, data, prefix)


async def test_a_peer_is_not_blamed_for_the_time_our_readers_were_paused(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the disk stalls (150 s > the 120 s silence and 60 s snub limits) our readers
    are paused: the seeder is neither dropped as silent nor marked snubbed for it."""
    monkeypatch.setattr(storage_mod, "MAX_QUEUED_BYTES", LIMIT)
    rng = random.Random(11)
    info, payload = make_torrent(rng, SIZE, PIECE)
    net = SimNetwork(rng)
    events: list[object] = []
    with trio.fail_after(900):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.5.0.1")
            leecher = Session(
                net.view("127.5.0.2"),
                SessionOptions(bind="127.5.0.2", port=6881),
                rng=random.Random(2),
                on_event=events.append,
            )
            await nursery.start(leecher.run)
            await seeder.add_torrent(info, MemoryStorage(info, payload))
            storage = StallingStorage(info)
            torrent = await leecher.add_torrent(info, storage)
            torrent.add_peers([seeder.address], "test")
            started = trio.current_time()
            await torrent.complete.wait()
            assert trio.current_time() - started > StallingStorage.STALL
            nursery.cancel_scope.cancel()
    assert payload_of(storage, info) == payload
    kinds = [getattr(e, "kind", "") for e in events]
    assert "snubbed" not in kinds
    reasons = [
        getattr(e, "reason", "") for e in events if getattr(e, "kind", "") == "peer_disconnected"
    ]
    assert not any("silent" in r for r in reasons), reasons
