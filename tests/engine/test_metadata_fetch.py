"""Fetching a magnet's metadata from peers on the in-memory network: the honest peer's
dictionary is taken, a peer serving a different one is banned."""

from __future__ import annotations

import dataclasses
import random

import trio
import trio.testing

from torrentkit.engine.metadata_fetch import MetadataFetcher
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent

KIB = 1024


async def test_fetch_from_an_honest_peer_and_ban_the_liar(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(9)
    # Many pieces so the info dictionary spans several 16 KiB metadata pieces.
    info, payload = make_torrent(rng, 2000 * 16 * KIB, 16 * KIB)
    assert len(info.raw) > 32 * KIB
    other, other_payload = make_torrent(rng, 1900 * 16 * KIB, 16 * KIB)
    # The liar answers for our info-hash but serves another torrent's dictionary.
    lying_info = dataclasses.replace(other, info_hash=info.info_hash)
    net = SimNetwork(rng)
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            liar = Session(net.view("127.4.0.1"), SessionOptions(bind="x", port=6881))
            honest = Session(net.view("127.4.0.2"), SessionOptions(bind="x", port=6881))
            await nursery.start(liar.run)
            await nursery.start(honest.run)
            await liar.add_torrent(lying_info, MemoryStorage(other, other_payload))
            await honest.add_torrent(info, MemoryStorage(info, payload))
            fetcher = MetadataFetcher(
                info.info_hash,
                network=net.view("127.4.0.3"),
                peer_id=b"-TK0100-metadatatest",
                max_connections=1,  # one at a time: the liar first
            )
            fetcher.add_peers([liar.address], "test")
            async with trio.open_nursery() as inner:

                async def later() -> None:
                    await trio.sleep(5)
                    fetcher.add_peers([honest.address], "test")

                inner.start_soon(later)
                raw = await fetcher.fetch()
            nursery.cancel_scope.cancel()
    assert raw == info.raw
    assert fetcher.banned == {liar.address}
    assert "does not match the info-hash" in fetcher.failures[liar.address]
