"""Engine behaviour on the in-memory network: many torrents in one session, file selection,
rate limits (global and per torrent), on the virtual clock."""

from __future__ import annotations

import hashlib
import random

import trio
import trio.testing

from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import TorrentOptions
from torrentkit.events import (
    Event,
    Interested,
    PeerConnected,
    PeerDisconnected,
    PieceVerified,
    TorrentCompleted,
)
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Info, NewFile, build_info, parse_info
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent, payload_of

KIB = 1024


async def start_session(
    nursery: trio.Nursery,
    net: SimNetwork,
    host: str,
    events: list[Event] | None = None,
    **options: float,
) -> Session:
    session = Session(
        net.view(host),
        SessionOptions(bind=host, port=6881, **options),  # type: ignore[arg-type]
        rng=random.Random(host),
        on_event=events.append if events is not None else None,
    )
    await nursery.start(session.run)
    return session


async def test_one_session_serves_and_fetches_many_torrents(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(1)
    torrents = [make_torrent(rng, 300 * KIB + i, 32 * KIB, name=f"t{i}.bin") for i in range(3)]
    net = SimNetwork(rng)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.3.0.1")
            leecher = await start_session(nursery, net, "127.3.0.2")
            for info, payload in torrents:
                await seeder.add_torrent(info, MemoryStorage(info, payload))
            mine = []
            for info, _ in torrents:
                t = await leecher.add_torrent(info, MemoryStorage(info))
                t.add_peers([seeder.address], "test")
                mine.append(t)
            for t in mine:
                await t.complete.wait()
            nursery.cancel_scope.cancel()
    for t, (info, payload) in zip(mine, torrents, strict=True):
        assert isinstance(t.storage, MemoryStorage)
        assert payload_of(t.storage, info) == payload
    # Incoming connections were routed to the right torrent by info-hash.
    assert len(seeder.torrents) == 3


def multi_file_torrent(rng: random.Random, piece: int) -> tuple[Info, bytes]:
    sizes = [5 * piece + 100, 3 * piece, 2 * piece + 7]
    payload = rng.randbytes(sum(sizes))
    hashes = b"".join(
        hashlib.sha1(payload[i : i + piece]).digest() for i in range(0, len(payload), piece)
    )
    files = [NewFile(path=(f"f{i}.bin",), length=n) for i, n in enumerate(sizes)]
    raw = build_info(name="multi", files=files, piece_length=piece, piece_hashes=hashes)
    return parse_info(raw), payload


async def test_only_selected_files_are_fetched(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(2)
    piece = 16 * KIB
    info, payload = multi_file_torrent(rng, piece)
    net = SimNetwork(rng)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.3.0.1")
            leecher = await start_session(nursery, net, "127.3.0.2")
            await seeder.add_torrent(info, MemoryStorage(info, payload))
            storage = MemoryStorage(info)
            t = await leecher.add_torrent(info, storage, TorrentOptions(file_priorities=[0, 4, 0]))
            t.add_peers([seeder.address], "test")
            await t.complete.wait()
            await trio.sleep(5)  # nothing more arrives after completion
            nursery.cancel_scope.cancel()
    f1 = info.files[1]
    assert bytes(storage.files[1]) == payload[f1.offset : f1.offset + f1.length]
    # File 1 spans pieces 5..8 (5*piece+100 .. 8*piece+100): pieces 5 and 8 are shared with
    # files 0 and 2, so those two files exist with exactly the shared bytes, nothing else.
    have = [t.picker.have(i) for i in range(info.num_pieces)]
    assert have == [i in (5, 6, 7, 8) for i in range(info.num_pieces)]
    assert t.downloaded == 4 * piece


async def test_download_and_upload_limits(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(3)
    info, payload = make_torrent(rng, 1024 * KIB, 32 * KIB)
    net = SimNetwork(rng)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.3.0.1")
            await seeder.add_torrent(info, MemoryStorage(info, payload))
            # Per-torrent download limit: 64 KiB/s -> 1 MiB in about 16 s.
            a = await start_session(nursery, net, "127.3.0.2")
            ta = await a.add_torrent(info, MemoryStorage(info), TorrentOptions(down_limit=64 * KIB))
            ta.add_peers([seeder.address], "test")
            start = trio.current_time()
            await ta.complete.wait()
            took_down = trio.current_time() - start
            # Session-wide upload limit on a second seeder: 128 KiB/s -> about 8 s.
            slow = await start_session(nursery, net, "127.3.0.3", up_limit=128 * KIB)
            await slow.add_torrent(info, MemoryStorage(info, payload))
            b = await start_session(nursery, net, "127.3.0.4")
            tb = await b.add_torrent(info, MemoryStorage(info))
            tb.add_peers([slow.address], "test")
            start = trio.current_time()
            await tb.complete.wait()
            took_up = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert 14.5 <= took_down <= 18.5, took_down
    assert 7.0 <= took_up <= 9.5, took_up


async def test_our_own_address_from_a_tracker_is_never_dialled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(4)
    info, _payload = make_torrent(rng, 64 * KIB, 16 * KIB)
    net = SimNetwork(rng)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            session = await start_session(nursery, net, "127.3.0.1")
            t = await session.add_torrent(info, MemoryStorage(info))
            t.add_peers([PeerAddr("127.3.0.1", 6881)], "tracker")  # a tracker hands us ourselves
            await trio.sleep(30)
            nursery.cancel_scope.cancel()
    assert not t.links
    assert not t.peers  # not even a known peer


async def test_snapshot_reflects_the_swarm(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(5)
    info, payload = make_torrent(rng, 1000 * KIB + 5, 32 * KIB)
    net = SimNetwork(rng)
    net.set_upload_rate("127.3.0.1", 100 * KIB)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.3.0.1")
            leecher = await start_session(nursery, net, "127.3.0.2")
            await seeder.add_torrent(info, MemoryStorage(info, payload))
            t = await leecher.add_torrent(info, MemoryStorage(info))
            before = t.snapshot(trio.current_time(), map_cells=8)
            t.add_peers([seeder.address], "test")
            while t.picker.num_have < info.num_pieces // 2:
                await trio.sleep(0.5)
            mid = t.snapshot(trio.current_time(), map_cells=8)
            await t.complete.wait()
            end = t.snapshot(trio.current_time(), map_cells=8)
            nursery.cancel_scope.cancel()
    assert before.pieces_have == 0 and before.wanted_left == info.total_length
    assert before.peers == () and before.eta is None
    missing = info.num_pieces - mid.pieces_have
    short = info.piece_length - info.piece_size(info.num_pieces - 1)
    assert mid.wanted_left in (missing * info.piece_length, missing * info.piece_length - short)
    (peer,) = mid.peers
    assert peer.addr == str(seeder.address) and peer.client.startswith("torrentkit")
    assert not peer.peer_choking and peer.am_interested and peer.progress == 1.0
    assert 50 * KIB < mid.down_rate <= 101 * KIB
    assert mid.eta is not None and 0 < mid.eta < 20
    assert len(mid.piece_map) == 8
    assert all(0.0 <= have <= 1.0 and avail == 1.0 for have, _, avail in mid.piece_map)
    assert end.complete and end.wanted_left == 0 and end.eta is None
    assert all(have == 1.0 for have, _, _ in end.piece_map)
    kinds = {type(e) for e in end.events}
    assert {PeerConnected, Interested, TorrentCompleted} <= kinds and PieceVerified not in kinds


async def test_zero_length_files_exist_once_complete(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(6)
    piece = 16 * KIB
    payload = rng.randbytes(3 * piece)
    hashes = b"".join(
        hashlib.sha1(payload[i : i + piece]).digest() for i in range(0, 3 * piece, piece)
    )
    files = [
        NewFile(path=("a.bin",), length=piece),
        NewFile(path=("empty.txt",), length=0),
        NewFile(path=("b.bin",), length=2 * piece),
    ]
    info = parse_info(build_info(name="z", files=files, piece_length=piece, piece_hashes=hashes))
    net = SimNetwork(rng)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.3.0.1")
            leecher = await start_session(nursery, net, "127.3.0.2")
            await seeder.add_torrent(info, MemoryStorage(info, payload))
            storage = MemoryStorage(info)
            t = await leecher.add_torrent(info, storage)
            t.add_peers([seeder.address], "test")
            await t.complete.wait()
            nursery.cancel_scope.cancel()
    assert storage.files[1] == bytearray()
    assert await storage.file_problems() == [None, None, None]


async def test_a_seed_dials_a_leecher_that_does_not_know_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A seed that starts after the leechers learns of them (from a tracker or the ring)
    while they have not heard of it yet: it must dial them, as libtorrent's seeds do."""
    rng = random.Random(6)
    info, payload = make_torrent(rng, 200 * KIB, 16 * KIB)
    net = SimNetwork(rng)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            leecher = await start_session(nursery, net, "127.3.0.2")
            lt = await leecher.add_torrent(info, MemoryStorage(info))
            seeder = await start_session(nursery, net, "127.3.0.1")
            st = await seeder.add_torrent(info, MemoryStorage(info, payload))
            st.add_peers([leecher.address], "tracker")  # the leecher never hears of the seed
            await lt.complete.wait()
            nursery.cancel_scope.cancel()
    assert isinstance(lt.storage, MemoryStorage)
    assert payload_of(lt.storage, info) == payload


async def test_two_seeds_part_and_do_not_dial_each_other_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(7)
    info, payload = make_torrent(rng, 64 * KIB, 16 * KIB)
    net = SimNetwork(rng)
    a_events: list[Event] = []
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            a = await start_session(nursery, net, "127.3.0.1", a_events)
            b = await start_session(nursery, net, "127.3.0.2")
            ta = await a.add_torrent(info, MemoryStorage(info, payload))
            tb = await b.add_torrent(info, MemoryStorage(info, payload))
            ta.add_peers([b.address], "tracker")
            await trio.sleep(1)
            tb.add_peers([a.address], "tracker")  # b learns of a only after they parted
            await trio.sleep(300)  # many connector rounds
            links = len(ta.links) + len(tb.links)  # while both still run
            nursery.cancel_scope.cancel()
    connected = [e for e in a_events if isinstance(e, PeerConnected)]
    gone = [e for e in a_events if isinstance(e, PeerDisconnected)]
    # a dials once; b, told of a after they parted, already knows a for a seed and never
    # dials: the parting side sent its bitfield before closing.
    assert len(connected) == 1, connected
    assert gone[0].reason == "both have what they want", gone
    assert links == 0
    assert b.address in ta.parted_seeds and a.address in tb.parted_seeds


async def test_a_leecher_that_completes_leaves_the_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(8)
    info, payload = make_torrent(rng, 128 * KIB, 16 * KIB)
    net = SimNetwork(rng)
    events: list[Event] = []
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.3.0.1")
            st = await seeder.add_torrent(info, MemoryStorage(info, payload))
            leecher = await start_session(nursery, net, "127.3.0.2", events)
            lt = await leecher.add_torrent(info, MemoryStorage(info))
            lt.add_peers([seeder.address], "tracker")
            await lt.complete.wait()
            await trio.sleep(5)
            links = (len(lt.links), len(st.links))  # while both still run
            nursery.cancel_scope.cancel()
    assert links == (0, 0)
    gone = [e.reason for e in events if isinstance(e, PeerDisconnected)]
    assert gone == ["both have what they want"]


async def test_redundant_bytes_are_what_arrived_beyond_the_verified_pieces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three seeds, so the endgame asks several of them for the last blocks: every payload
    byte that arrived is either in a verified piece (``downloaded``) or counted as
    ``redundant`` (a duplicate, or a block that came after it was cancelled)."""
    from torrentkit.engine.torrent import Torrent

    rng = random.Random(7)
    info, payload = make_torrent(rng, 40 * 16 * KIB, 32 * KIB, name="r.bin")
    net = SimNetwork(rng)
    arrived = 0
    original = Torrent.on_blocks

    def counting(
        self: Torrent, link: object, blocks: list[tuple[int, int, bytes]], now: float
    ) -> None:
        nonlocal arrived
        arrived += sum(len(b[2]) for b in blocks)  # only the leecher receives blocks
        original(self, link, blocks, now)  # type: ignore[arg-type]

    Torrent.on_blocks = counting  # type: ignore[assignment, method-assign]
    try:
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                seeds = [await start_session(nursery, net, f"127.3.1.{i}") for i in (1, 2, 3)]
                for s in seeds:
                    await s.add_torrent(info, MemoryStorage(info, payload))
                leecher = await start_session(nursery, net, "127.3.1.9")
                t = await leecher.add_torrent(info, MemoryStorage(info))
                t.add_peers([s.address for s in seeds], "test")
                await t.complete.wait()
                await trio.sleep(5)  # late blocks still count
                nursery.cancel_scope.cancel()
    finally:
        Torrent.on_blocks = original  # type: ignore[method-assign]
    assert t.downloaded == len(payload)
    assert arrived == t.downloaded + t.redundant
    assert t.redundant > 0  # this swarm does reach an endgame with duplicates
