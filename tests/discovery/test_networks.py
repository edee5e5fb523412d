"""Napster, Gnutella and KaZaA as networks a session joins (discovery/networks.py), against
the real in-process index and overlay nodes on 127.0.0.1, through the public API only: a
seeding session publishes, a magnet in another session finds the holder by search and
downloads; private torrents never reach the index or the overlay."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import torrentkit
from torrentkit.discovery.base import NetworkError
from torrentkit.discovery.gnutella import Role
from torrentkit.discovery.gnutella.session_port import open_overlay
from torrentkit.discovery.napster.index import IndexConfig, NapsterIndex, RateLimiter, SearchQuery
from torrentkit.discovery.napster.server import NapsterIndexThread
from torrentkit.discovery.networks import NapsterNetwork, OverlayNetwork, query_text
from torrentkit.ids import InfoHash
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Magnet, Metainfo, parse_torrent
from torrentkit.net import TrioNetwork
from torrentkit.settings import NapsterSettings, OverlaySettings, Settings


def _payload(path: Path, size: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def _torrent(path: Path, *, private: bool = False) -> Metainfo:
    return parse_torrent(make_torrent(path, piece_length=16_384, private=private))


def _settings(tmp: Path, name: str, **kw: object) -> Settings:
    kw.setdefault("dht", None)  # tests stay on loopback
    return Settings(listen="127.0.0.1:0", state_dir=tmp / f"state-{name}", **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def _seeder(
    tmp: Path, settings: Settings, *metas: Metainfo
) -> AsyncIterator[torrentkit.Session]:
    async with torrentkit.open_session(settings) as session:
        for meta in metas:
            handle = await session.add(meta, tmp / "seed")
            await handle.wait_complete()
        yield session


async def _get(tmp: Path, settings: Settings, magnet: Magnet, source: Path) -> None:
    out = tmp / "got"
    async with torrentkit.open_session(settings) as session:
        handle = await session.add(magnet, out)
        await handle.wait_complete()
        assert (out / source.name).read_bytes() == source.read_bytes()


async def test_napster_publishes_public_torrents_and_a_magnet_is_fetched(tmp_path: Path) -> None:
    song = _payload(tmp_path / "seed" / "Pink Floyd - Echoes.flac", 100_000, 1)
    secret = _payload(tmp_path / "seed" / "secret track.ogg", 40_000, 2)
    public, private = _torrent(song), _torrent(secret, private=True)
    with NapsterIndexThread(NapsterIndex(IndexConfig(ttl=60)), limiter=RateLimiter(0, 1)) as idx:
        nap = NapsterSettings(url=idx.url)
        with trio.fail_after(40):
            async with _seeder(
                tmp_path, _settings(tmp_path, "s", napster=nap), public, private
            ) as s:
                net = s.networks[0]
                assert isinstance(net, NapsterNetwork)
                while net.publisher.status.published < 1:
                    await trio.sleep(0.05)
                reply = await net.search_keywords(SearchQuery(text="track"))
                assert reply.hits == ()  # the private torrent was never published
                reply = await net.search_keywords(SearchQuery(text="echoes"))
                assert [(h.name, h.peers) for h in reply.hits] == [
                    ("Pink Floyd - Echoes.flac", (s.address,))
                ]
                magnet = Magnet(info_hash=InfoHash(public.info_hash))
                await _get(tmp_path, _settings(tmp_path, "g", napster=nap), magnet, song)
                assert idx.call(lambda: idx.index.stats().entries) == 1
        assert idx.call(lambda: idx.index.stats().entries) == 0  # left on the way out


async def test_an_unreachable_index_does_not_stop_the_session_but_join_says_why(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nap = NapsterSettings(url=f"http://127.0.0.1:{port}/")
    with trio.fail_after(20):
        async with torrentkit.open_session(_settings(tmp_path, "x", napster=nap)) as session:
            net = session.networks[0]
            assert isinstance(net, NapsterNetwork)
            with pytest.raises(NetworkError, match="napster index"):
                await net.join()


@pytest.mark.parametrize("kind", ["gnutella", "kazaa"])
async def test_overlay_share_on_the_session_port_and_get_by_name(tmp_path: Path, kind: str) -> None:
    iso = _payload(tmp_path / "seed" / "debian-12.iso", 90_000, 3)
    secret = _payload(tmp_path / "seed" / "debian-secret.iso", 30_000, 4)
    public, private = _torrent(iso), _torrent(secret, private=True)
    core_role = Role.PEER if kind == "gnutella" else Role.SUPERNODE
    with trio.fail_after(60):
        async with open_overlay(
            TrioNetwork(), role=core_role, bootstrap=[], bind="127.0.0.1"
        ) as core:
            overlay = OverlaySettings(kind=kind, bootstrap=(core.address,))  # type: ignore[arg-type]
            settings = _settings(tmp_path, "s", overlay=overlay)
            async with _seeder(tmp_path, settings, public, private) as s:
                net = s.networks[0]
                assert isinstance(net, OverlayNetwork) and net.name == kind
                assert [f.info_hash for f in net.files] == [public.info_hash]
                # The getter knows words of the name, as `torrentkit get --name` does.
                magnet = Magnet(info_hash=InfoHash(public.info_hash), name="debian 12")
                await _get(tmp_path, _settings(tmp_path, "g", overlay=overlay), magnet, iso)
                # Keyword search from the getter's kind of node finds it too.
                async with torrentkit.open_session(_settings(tmp_path, "q", overlay=overlay)) as q:
                    net = q.networks[0]
                    assert isinstance(net, OverlayNetwork)
                    await net.join()  # until a neighbour carries our queries
                    hits = await net.search_keywords("DEBIAN", wait=1.0)
                assert [(h.name, h.peers) for h in hits] == [("debian-12.iso", (s.address,))]


def test_query_text_keeps_the_words_that_fit() -> None:
    assert query_text("Pink Floyd - Echoes.flac") == "pink floyd - echoes.flac"
    assert len(query_text("w" * 300 + " x").encode()) <= 256
    assert query_text("   ") == ""
