"""A mixed download: a web seed (BEP 19, a real aiohttp server honouring Range) and a
libtorrent seeder (DHT, LSD, UPnP, NAT-PMP and PEX off) fill one picker together."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import torrentkit
from tests.api.webseed_server import web_seed_server
from tests.interop.peers import libtorrent_session, lt_add, lt_port, lt_wait_finished, make_payload
from torrentkit import events
from torrentkit.maketorrent import make_torrent

pytestmark = pytest.mark.interop


async def test_web_seed_and_libtorrent_seeder_together(tmp_path: Path) -> None:
    data = make_payload(tmp_path / "seed" / "mix.bin", 3 * 1024 * 1024 + 5, seed=3)
    with web_seed_server(data.parent) as server:
        url = server.url("ok")
        raw = make_torrent(data, piece_length=16 * 1024, url_list=[url])
        torrent = tmp_path / "mix.torrent"
        torrent.write_bytes(raw)
        with libtorrent_session() as ses:
            seeder = lt_add(ses, torrent, data.parent, seed=True)
            lt_wait_finished(seeder, 15)
            peer = f"127.0.0.1:{lt_port(ses)}"
            # A download limit (which web seeds obey like peers) keeps the loopback seeder
            # from finishing before the web seed's first reply is in.
            settings = torrentkit.Settings(
                listen="127.0.0.1:0", state_dir=tmp_path / "state", down_limit=4_000_000, dht=None
            )
            seen: list[events.Event] = []
            snaps = []

            def on_event(event: events.Event) -> None:
                seen.append(event)
                if isinstance(event, events.TorrentCompleted):
                    snaps.append(handle.snapshot())  # web seeds leave right after this

            with trio.fail_after(60):
                async with torrentkit.open_session(settings) as session:
                    session.subscribe(on_event)
                    handle = await session.add(raw, tmp_path / "dl", peers=[peer])
                    await handle.wait_complete()
            (snap,) = snaps
        assert server.hits["ok"] >= 2
    assert (tmp_path / "dl" / "mix.bin").read_bytes() == data.read_bytes()
    assert snap is not None
    by_client = {p.client: p for p in snap.peers}
    web = by_client.pop("web seed")
    assert web.addr == url
    (lt_peer,) = by_client.values()
    assert "libtorrent" in lt_peer.client.lower()
    # Both sources gave pieces, and between them the whole payload (more only by endgame
    # duplicates).
    assert web.downloaded > 0 and lt_peer.downloaded > 0, (web.downloaded, lt_peer.downloaded)
    assert web.downloaded + lt_peer.downloaded >= data.stat().st_size
    assert not [e for e in seen if isinstance(e, events.HashFailed | events.PeerBanned)]
