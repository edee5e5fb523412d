"""A trackerless swarm on the in-memory network under the virtual clock: every peer finds
the others through the mainline DHT alone (the production node, driver and Discovery source;
only the transport is swapped), and the DHT is the only source any of them names."""

from __future__ import annotations

import random
from contextlib import AsyncExitStack

import trio
import trio.testing

from torrentkit.dht.discovery import DhtNetwork, open_dht
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import DhtContact, Torrent
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent, payload_of
from torrentkit.wire.peer_id import generate_peer_id

KIB = 1024
PORT = 6881


async def test_trackerless_swarm_through_the_dht(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(11)
    info, payload = make_torrent(rng, 512 * KIB, 32 * KIB)
    net = SimNetwork(rng, latency=0.02, jitter=0.01)
    torrents: list[Torrent] = []
    storages: list[MemoryStorage] = []
    with trio.fail_after(900):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await nursery.start(net.run)
            router: DhtNetwork = await stack.enter_async_context(
                open_dht(net.view("10.9.0.1"), "10.9.0.1", PORT, bootstrap=(), rng=rng)
            )
            for n in range(9):  # a seed, then eight leechers
                host = f"10.9.1.{n + 1}"
                net.set_upload_rate(host, 256 * KIB)
                session = Session(
                    net.view(host),
                    SessionOptions(bind=host, port=PORT, peer_id=generate_peer_id(rng)),
                    rng=random.Random(rng.random()),
                )
                await nursery.start(session.run)
                dht = await stack.enter_async_context(
                    open_dht(
                        net.view(host),
                        host,
                        PORT,
                        bootstrap=[router.address],
                        rng=random.Random(rng.random()),
                        exclude=[PeerAddr(host, PORT)],
                    )
                )
                session.dht = DhtContact(port=PORT, add_node=dht.driver.add_node)
                storage = MemoryStorage(info, payload if n == 0 else None)
                torrent = await session.add_torrent(info, storage)
                torrent.add_discovery(
                    dht.torrent_source(
                        InfoHash(info.info_hash), port=PORT, sink=torrent.add_peers, publish=True
                    )
                )
                torrents.append(torrent)
                storages.append(storage)
                await trio.sleep(1.0)
            for torrent in torrents[1:]:
                await torrent.complete.wait()
            nursery.cancel_scope.cancel()
    for torrent, storage in zip(torrents[1:], storages[1:], strict=True):
        assert payload_of(storage, info) == payload
        # Peers came from the DHT (and from peers dialling in); no other source exists.
        assert set(torrent.peers.sources().values()) <= {"dht", "incoming", "pex"}
        assert "dht" in set(torrent.peers.sources().values())
    assert router.node.store.peer_count() >= 1  # the announces reached the router
