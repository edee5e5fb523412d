"""The public API against a real libtorrent seeder: a .torrent and a magnet link, with the
typed events the session reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import torrentkit
from tests.interop.peers import libtorrent_session, lt_add, lt_port, lt_wait_finished, make_payload
from torrentkit import events
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent

pytestmark = pytest.mark.interop


async def collect_until_complete(
    session: torrentkit.Session, source: object, save: Path, peer: str
) -> tuple[torrentkit.TorrentHandle, list[events.Event], str]:
    seen: list[events.Event] = []
    async with session.events() as stream:
        handle = await session.add(source, save, peers=[peer])  # type: ignore[arg-type]
        first_state = handle.status().state
        async for event in stream:
            seen.append(event)
            if isinstance(event, events.TorrentCompleted):
                break
    return handle, seen, first_state


@pytest.mark.parametrize("as_magnet", [False, True], ids=["torrent", "magnet"])
async def test_api_downloads_from_libtorrent(tmp_path: Path, as_magnet: bool) -> None:
    data = make_payload(tmp_path / "seed" / "film.bin", 700 * 1024 + 11, seed=7)
    raw = make_torrent(data, piece_length=64 * 1024)
    torrent = tmp_path / "film.torrent"
    torrent.write_bytes(raw)
    meta = parse_torrent(raw)
    with libtorrent_session() as ses:
        ses.add_extension("ut_metadata")
        seeder = lt_add(ses, torrent, data.parent, seed=True)
        lt_wait_finished(seeder, 15)
        peer = f"127.0.0.1:{lt_port(ses)}"
        source = f"magnet:?xt=urn:btih:{meta.info_hash.hex()}" if as_magnet else raw
        settings = torrentkit.Settings(listen="127.0.0.1:0", state_dir=tmp_path / "state", dht=None)
        with trio.fail_after(60):
            async with torrentkit.open_session(settings) as session:
                handle, seen, first = await collect_until_complete(
                    session, source, tmp_path / "dl", peer
                )
                status = handle.status()
    assert first == ("metadata" if as_magnet else "checking")
    assert status.state == "seeding" and status.progress == 1.0
    kinds = {type(e) for e in seen}
    assert {events.PeerConnected, events.PieceVerified, events.TorrentCompleted} <= kinds
    if as_magnet:
        got = [e for e in seen if isinstance(e, events.MetadataReceived)]
        assert got and got[0].name == "film.bin" and got[0].size == len(meta.info.raw)
    connected = [e for e in seen if isinstance(e, events.PeerConnected)]
    assert any("libtorrent" in e.client.lower() for e in connected), connected
    assert sum(isinstance(e, events.PieceVerified) for e in seen) == meta.info.num_pieces
    assert (tmp_path / "dl" / "film.bin").read_bytes() == data.read_bytes()
