"""Trackerless swarms over the Chord ring, on the in-memory network: peers announce an
info-hash to the ring and find each other with no tracker; private torrents stay off it."""

from __future__ import annotations

import random
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing

from torrentkit.discovery.chord.discovery import ChordRing
from torrentkit.discovery.chord.driver import ChordDriver, open_chord_node
from torrentkit.discovery.chord.node import ChordConfig
from torrentkit.engine.metadata_fetch import MetadataFetcher
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import InfoHash
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent, payload_of

KIB = 1024
CONFIG = ChordConfig(r=3, stabilize_interval=2.0)


async def test_seeder_and_leechers_meet_through_the_ring(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(12)
    info, payload = make_torrent(rng, 512 * KIB, 32 * KIB)
    net = SimNetwork(rng, latency=0.01)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await nursery.start(net.run)
            # A ring of 8 bare nodes; the first creates it, the others join through it.
            ring: list[ChordDriver] = []
            for i in range(8):
                host = f"127.5.0.{i + 1}"
                node = await stack.enter_async_context(
                    open_chord_node(net.view(host), host, 6881, config=CONFIG,
                                    rng=random.Random(i))
                )  # fmt: skip
                if i == 0:
                    node.create()
                else:
                    await node.join(ring[0].address)
                ring.append(node)
            await trio.sleep(30)  # let the ring stabilize

            async def member(host: str, seed: bool) -> tuple[Session, object]:
                session = Session(net.view(host), SessionOptions(bind=host, port=6881))
                addr = await nursery.start(session.run)
                chord = await stack.enter_async_context(
                    open_chord_node(net.view(host), host, addr.port, config=CONFIG,
                                    rng=random.Random(host))
                )  # fmt: skip
                await chord.join(ring[rng.randrange(len(ring))].address)  # one bootstrap node
                storage = MemoryStorage(info, payload if seed else None)
                torrent = await session.add_torrent(info, storage)
                torrent.add_discovery(
                    ChordRing(chord).torrent_source(info.info_hash, port=addr.port,
                                                    sink=torrent.add_peers, publish=True)
                )  # fmt: skip
                return session, torrent

            await member("127.5.1.1", seed=True)
            leechers = [await member(f"127.5.2.{i}", seed=False) for i in range(1, 4)]
            for _, torrent in leechers:
                await torrent.complete.wait()  # type: ignore[attr-defined]

            # A magnet-only newcomer finds the metadata holders through the ring too.
            fetcher = MetadataFetcher(
                info.info_hash, network=net.view("127.5.3.1"), peer_id=b"-TK0100-chordmagnet1"
            )
            newcomer = await stack.enter_async_context(
                open_chord_node(net.view("127.5.3.1"), "127.5.3.1", 6881, config=CONFIG)
            )
            await newcomer.join(ring[3].address)
            async with trio.open_nursery() as inner:
                search = ChordRing(newcomer).torrent_source(
                    info.info_hash, port=6881, sink=fetcher.add_peers, publish=False
                )
                inner.start_soon(search.run)
                raw = await fetcher.fetch()
                inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    for _, torrent in leechers:
        assert payload_of(torrent.storage, info) == payload  # type: ignore[attr-defined]
        assert set(torrent.peers.sources().values()) <= {"chord"}  # type: ignore[attr-defined]
    assert raw == info.raw


async def test_private_torrents_are_never_announced() -> None:
    with pytest.raises(LocalProtocolError, match="private"):
        ChordRing(None).torrent_source(  # type: ignore[arg-type]
            InfoHash(b"\0" * 20), port=1, sink=lambda p, s: None, publish=True, private=True
        )
