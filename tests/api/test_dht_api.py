"""The mainline DHT through the public API, on loopback: a magnet with no trackers downloads
through the DHT alone; the routing table survives a restart; private torrents stay out."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import trio

import torrentkit
from tests.api.helpers import KIB, payload, same_files, settings, torrent_of
from torrentkit.dht.discovery import STATE_FILE, DhtNetwork, load_state, open_dht
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import parse_torrent
from torrentkit.net import TrioNetwork
from torrentkit.settings import DhtSettings


async def router(stack: AsyncExitStack) -> DhtNetwork:
    """A bare DHT node on 127.0.0.1 that the sessions bootstrap through."""
    return await stack.enter_async_context(open_dht(TrioNetwork(), "127.0.0.1", 0, bootstrap=()))


def dht_via(node: DhtNetwork) -> DhtSettings:
    return DhtSettings(bootstrap=(node.address,))


async def test_trackerless_magnet_downloads_through_the_dht(tmp_path: Path) -> None:
    data = payload(tmp_path / "seed", {"f.bin": 300 * KIB})
    raw = torrent_of(data / "f.bin")
    meta = parse_torrent(raw)
    assert not meta.trackers
    magnet = f"magnet:?xt=urn:btih:{bytes(meta.info_hash).hex()}"
    with trio.fail_after(90):
        async with AsyncExitStack() as stack:
            r = await router(stack)
            seeder = await stack.enter_async_context(
                torrentkit.open_session(settings(tmp_path / "s1", dht=dht_via(r)))
            )
            await (await seeder.add(raw, data)).wait_complete()
            leecher = await stack.enter_async_context(
                torrentkit.open_session(settings(tmp_path / "s2", dht=dht_via(r)))
            )
            handle = await leecher.add(magnet, tmp_path / "down")
            await handle.wait_complete()
            assert seeder.dht is not None and seeder.dht.announces >= 1
    assert same_files(data, tmp_path / "down")


async def test_routing_table_saved_and_reloaded(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            r = await router(stack)
            async with torrentkit.open_session(settings(tmp_path / "s", dht=dht_via(r))) as s:
                assert s.dht is not None
                await s.dht.first_join.wait()
                node_id = s.dht.node.node_id
                assert len(s.dht.node.table) >= 1
            saved = load_state(tmp_path / "s" / STATE_FILE)
            assert saved.node_id == node_id
            assert r.address in [n.addr for n in saved.nodes]
            # Restarted with no bootstrap routers at all: the saved nodes are enough.
            no_routers = DhtSettings(bootstrap=())
            async with torrentkit.open_session(settings(tmp_path / "s", dht=no_routers)) as s:
                assert s.dht is not None
                await s.dht.first_join.wait()
                assert s.dht.node.node_id == node_id
                assert r.address in [n.addr for n in s.dht.node.known_nodes()]


async def test_damaged_state_file_is_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / STATE_FILE).write_bytes(b"d2:id3:abce")
    async with torrentkit.open_session(
        settings(tmp_path / "s", dht=DhtSettings(bootstrap=()))
    ) as s:
        assert s.dht is not None
        assert len(s.dht.node.node_id) == 20


async def test_private_torrent_not_announced(tmp_path: Path) -> None:
    from torrentkit.maketorrent import make_torrent

    data = payload(tmp_path / "seed", {"p.bin": 64 * KIB})
    raw = make_torrent(data / "p.bin", piece_length=64 * KIB, private=True)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            r = await router(stack)
            s = await stack.enter_async_context(
                torrentkit.open_session(settings(tmp_path / "s", dht=dht_via(r)))
            )
            await (await s.add(raw, data)).wait_complete()
            assert s.dht is not None
            await s.dht.first_join.wait()
            await trio.sleep(1.0)
            assert s.dht.announces == 0 and s.dht.searches == 0
            assert len(r.node.store) == 0  # nothing was announced to the router


def test_settings_default_routers_are_host_names() -> None:
    from torrentkit.settings import DEFAULT_DHT_ROUTERS

    assert [f"{a.host}:{a.port}" for a in DEFAULT_DHT_ROUTERS] == [
        "router.bittorrent.com:6881",
        "router.utorrent.com:6881",
        "dht.transmissionbt.com:6881",
        "dht.libtorrent.org:25401",
    ]
    assert DhtSettings(bootstrap=["127.0.0.1:7"]).bootstrap == (PeerAddr("127.0.0.1", 7),)
