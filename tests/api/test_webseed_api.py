"""Web seeds (BEP 19) end to end: torrents whose only source is a real HTTP server started by
the test (aiohttp's static files, which honour Range), good and hostile (docs/limits.md
item 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import trio

import torrentkit
from torrentkit.engine import webseed_link
from torrentkit.events import (
    Event,
    MetadataReceived,
    PeerBanned,
    PeerConnected,
    PeerDisconnected,
    TorrentCompleted,
)
from torrentkit.maketorrent import make_torrent

from .helpers import KIB, payload, same_files, settings
from .webseed_server import web_seed_server


async def fetch(
    raw: bytes | str, dest: Path, state: Path, *, timeout: float = 60, **kw: object
) -> list[Event]:
    """Download ``raw`` into ``dest``; the session's events, and (as PeerConnected events
    with info_hash "snapshot") the peers the UI lists at the moment the download completes
    (web seeds leave right after)."""
    events: list[Event] = []
    box: dict[str, torrentkit.TorrentHandle] = {}

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, TorrentCompleted):
            snap = box["handle"].snapshot()
            assert snap is not None
            for p in snap.peers:
                events.append(
                    PeerConnected(t=0, info_hash="snapshot", peer=p.addr, client=p.client)
                )

    async with torrentkit.open_session(settings(state, **kw)) as session:
        session.subscribe(on_event)
        box["handle"] = handle = await session.add(raw, dest)
        with trio.fail_after(timeout):
            await handle.wait_complete()
            while any(
                e.info_hash != "snapshot" and e.peer not in gone(events)
                for e in events
                if isinstance(e, PeerConnected)
            ):
                await trio.sleep(0.05)  # until the web seeds left
    return events


def gone(events: list[Event]) -> set[str]:
    return {e.peer for e in events if isinstance(e, PeerDisconnected)}


async def test_single_file_from_a_web_seed_only(tmp_path: Path) -> None:
    src = payload(tmp_path / "src", {"the file.bin": 700 * KIB + 37})
    with web_seed_server(src) as server:
        url = server.url("ok")  # ends in "/": the name is appended, percent-encoded
        raw = make_torrent(src / "the file.bin", piece_length=32 * KIB, url_list=[url])
        events = await fetch(raw, tmp_path / "dest", tmp_path / "state")
        assert server.hits["ok"] >= 2  # runs of pieces, several requests
    assert (tmp_path / "dest" / "the file.bin").read_bytes() == (src / "the file.bin").read_bytes()
    connected = [e for e in events if isinstance(e, PeerConnected) and e.peer == url]
    # The engine's event, and the seed listed as a peer in the final snapshot (the UI).
    assert [e.client for e in connected] == ["web seed", "web seed"]
    assert not [e for e in events if isinstance(e, PeerBanned)]
    # Once the download is complete the web seed leaves.
    left = [e for e in events if isinstance(e, PeerDisconnected) and e.peer == url]
    assert [e.reason for e in left] == ["download complete"]


async def test_multi_file_from_a_web_seed_only(tmp_path: Path) -> None:
    files = {
        "pack/a b.txt": 5 * KIB,
        "pack/sub/ünï cödé #1.bin": 300 * KIB + 5,
        "pack/sub/deeper/z.dat": 64 * KIB,
        "pack/tiny": 1,
    }
    src = payload(tmp_path / "src", files)
    with web_seed_server(src) as server:
        raw = make_torrent(src / "pack", piece_length=16 * KIB, url_list=[server.url("ok")])
        await fetch(raw, tmp_path / "dest", tmp_path / "state")
    assert same_files(src / "pack", tmp_path / "dest" / "pack")


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("full200", "200"),
        ("badrange", "Content-Range"),
        ("loop", "redirects"),
        ("longer", "more than"),
        ("corrupt", "corrupt"),
    ],
)
async def test_hostile_web_seed_is_dropped_and_pieces_come_from_the_good_one(
    tmp_path: Path, mode: str, words: str
) -> None:
    src = payload(tmp_path / "src", {"pack/x.bin": 600 * KIB, "pack/y.bin": 100 * KIB})
    with web_seed_server(src) as server:
        bad, good = server.url(mode), server.url("ok")
        raw = make_torrent(src / "pack", piece_length=16 * KIB, url_list=[bad, good])
        events = await fetch(raw, tmp_path / "dest", tmp_path / "state")
        assert server.hits[mode] >= 1  # it was asked
    assert same_files(src / "pack", tmp_path / "dest" / "pack")
    gone = [e for e in events if isinstance(e, PeerDisconnected) and e.peer == bad]
    assert len(gone) == 1 and words in gone[0].reason, gone
    # The good seed stayed; the bad one is not listed any more.
    listed = {e.peer for e in events if isinstance(e, PeerConnected) and e.info_hash == "snapshot"}
    assert good in listed and bad not in listed
    banned = [e for e in events if isinstance(e, PeerBanned)]
    assert [e.peer for e in banned] == ([bad] if mode == "corrupt" else [])


def quick_retries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Web seeds retry after 0.05 s; the list gets each backoff's failure count."""
    delays: list[int] = []

    def quick(failures: int) -> float:
        delays.append(failures)
        return 0.05

    monkeypatch.setattr(webseed_link, "retry_delay", quick)
    return delays


async def test_busy_web_seed_is_retried_with_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays = quick_retries(monkeypatch)
    src = payload(tmp_path / "src", {"f.bin": 200 * KIB})
    with web_seed_server(src, busy=3) as server:
        raw = make_torrent(src / "f.bin", piece_length=16 * KIB, url_list=[server.url("busy")])
        await fetch(raw, tmp_path / "dest", tmp_path / "state")
    assert (tmp_path / "dest" / "f.bin").read_bytes() == (src / "f.bin").read_bytes()
    assert delays == [1, 2, 3]  # three 503s in a row, each waited longer; then success


async def test_stalled_web_seed_times_out_and_is_retried_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webseed_link, "REQUEST_TIMEOUT", 0.3)
    monkeypatch.setattr(webseed_link, "MIN_RATE", 1e12)
    monkeypatch.setattr(webseed_link, "retry_delay", lambda failures: 0.05)
    src = payload(tmp_path / "src", {"pack/a.bin": 400 * KIB, "pack/b.bin": 100 * KIB})
    with web_seed_server(src) as server:
        stall, good = server.url("stall"), server.url("ok")
        raw = make_torrent(src / "pack", piece_length=16 * KIB, url_list=[stall, good])
        # A download limit stretches the download over a few of the stalled seed's tries.
        events = await fetch(raw, tmp_path / "dest", tmp_path / "state", down_limit=250_000)
        assert server.hits["stall"] >= 2  # asked again after its time-out
    assert same_files(src / "pack", tmp_path / "dest" / "pack")
    left = [e for e in events if isinstance(e, PeerDisconnected) and e.peer == stall]
    assert [e.reason for e in left] == ["download complete"]  # slow is not dropped


async def test_web_seeds_off(tmp_path: Path) -> None:
    src = payload(tmp_path / "src", {"f.bin": 64 * KIB})
    with web_seed_server(src) as server:
        raw = make_torrent(src / "f.bin", piece_length=16 * KIB, url_list=[server.url("ok")])
        async with torrentkit.open_session(
            settings(tmp_path / "state", web_seeds=False)
        ) as session:
            handle = await session.add(raw, tmp_path / "dest")
            await trio.sleep(1.5)
            assert handle.status().pieces == 0
            snap = handle.snapshot()
            assert snap is not None and snap.peers == ()
        assert server.hits["ok"] == 0


def test_cli_download_from_a_web_seed_names_it_as_a_peer(tmp_path: Path) -> None:
    src = payload(tmp_path / "src", {"f.bin": 300 * KIB})
    torrent = tmp_path / "f.torrent"
    base = [sys.executable, "-m", "torrentkit.cli.main", "download", str(torrent)]
    common = ["--bind", "127.0.0.1", "--no-tracker", "--no-dht", "--json", "--state-dir"]
    with web_seed_server(src) as server:
        url = server.url("ok")
        torrent.write_bytes(make_torrent(src / "f.bin", piece_length=16 * KIB, url_list=[url]))
        r = subprocess.run(
            [*base, "-o", str(tmp_path / "d1"), *common, str(tmp_path / "s1")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        assert {"event": "peer_connected", "peer": url, "client": "web seed"}.items() <= next(
            x for x in lines if x["event"] == "peer_connected"
        ).items()
        assert (tmp_path / "d1" / "f.bin").read_bytes() == (src / "f.bin").read_bytes()
        # --no-web-seeds: the server is never asked, so the download times out.
        asked = server.hits["ok"]
        r = subprocess.run(
            [*base, "-o", str(tmp_path / "d2"), *common, str(tmp_path / "s2"),
             "--no-web-seeds", "--timeout", "2"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode != 0
        assert "peer_connected" not in r.stdout
        assert server.hits["ok"] == asked


async def test_magnet_ws_web_seed_is_used_once_the_metadata_is_in(tmp_path: Path) -> None:
    """A magnet's ``ws=`` web seed: the metadata comes from a peer (BEP 9) that never
    unchokes anyone, so every piece comes from the web seed."""
    src = payload(tmp_path / "src", {"pack/a.bin": 300 * KIB, "pack/b.bin": 50 * KIB})
    raw = make_torrent(src / "pack", piece_length=16 * KIB)  # no url-list of its own
    holder = settings(tmp_path / "s1", upload_slots=0, optimistic_slots=0)
    with web_seed_server(src) as server:
        url = server.url("ok")
        async with torrentkit.open_session(holder) as seeder:
            holding = await seeder.add(raw, src)
            await holding.wait_complete()
            magnet = (
                f"magnet:?xt=urn:btih:{holding.info_hash.hex()}&x.pe={seeder.address}"
                f"&ws={quote(url, safe='')}&ws=ftp%3A%2F%2Fignored.example%2F"
            )
            events = await fetch(magnet, tmp_path / "dest", tmp_path / "s2")
        assert server.hits["ok"] >= 2
    assert same_files(src / "pack", tmp_path / "dest" / "pack")
    seeds = [e for e in events if isinstance(e, PeerConnected) and e.client == "web seed"]
    assert {e.peer for e in seeds} == {url}
    assert [e for e in events if isinstance(e, MetadataReceived)]
