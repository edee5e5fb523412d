"""Real clients swarm through `torrentkit tracker` (run as a real process) on 127.0.0.1.

DHT, LSD, PEX, UPnP and NAT-PMP are off everywhere and nobody is told a peer's address
directly: the only way the peers can meet is our tracker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.peers import (
    MiB,
    aria2c,
    free_port,
    libtorrent_session,
    lt_add,
    lt_info_hash,
    lt_wait_finished,
    make_payload,
    make_test_torrent,
    run_tracker,
    transmission_cli,
    wait_until,
    wait_written,
)
from torrentkit.metainfo import parse_torrent

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def _seeded(tmp_path: Path, announce_url: str, size: int) -> tuple[Path, Path, bytes]:
    payload = make_payload(tmp_path / "seed" / "payload.bin", size)
    torrent = make_test_torrent(payload, announce_url, tmp_path / "payload.torrent")
    ih = lt_info_hash(torrent)
    assert parse_torrent(torrent.read_bytes()).info_hash == ih
    return payload, torrent, ih


def test_two_libtorrent_sessions_find_each_other_through_our_tracker(tmp_path: Path) -> None:
    with run_tracker() as tracker:
        payload, torrent, ih = _seeded(tmp_path, tracker.announce_url, 3 * MiB)
        with libtorrent_session() as seeder, libtorrent_session() as leecher:
            lt_add(seeder, torrent, payload.parent, seed=True)
            wait_until(lambda: tracker.scrape(ih).get(b"complete") == 1, 15, "seeder announce")
            handle = lt_add(leecher, torrent, tmp_path / "leech")
            lt_wait_finished(handle, 25)
            wait_written(tmp_path / "leech" / "payload.bin", payload.read_bytes())
            # The leecher tells the tracker it completed: two seeders, one download.
            wait_until(
                lambda: tracker.scrape(ih) == {b"complete": 2, b"downloaded": 1, b"incomplete": 0},
                10,
                "the completed announce",
            )
            swarm = tracker.stats()["swarms"][0]
            assert swarm["info_hash"] == ih.hex()
            assert all(p["peer_id"].startswith("-LT2") for p in swarm["peers"])


def test_aria2c_downloads_from_libtorrent_through_our_tracker(tmp_path: Path) -> None:
    with run_tracker() as tracker:
        payload, torrent, ih = _seeded(tmp_path, tracker.announce_url, 2 * MiB)
        with libtorrent_session() as seeder:
            lt_add(seeder, torrent, payload.parent, seed=True)
            wait_until(lambda: tracker.scrape(ih).get(b"complete") == 1, 15, "seeder announce")
            with aria2c(torrent, tmp_path / "aria", port=free_port()) as proc:
                code = proc.wait(30)
            logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("aria2c-*.log"))
            assert code == 0, logs
            assert (tmp_path / "aria" / "payload.bin").read_bytes() == payload.read_bytes()
            wait_until(
                lambda: tracker.scrape(ih).get(b"downloaded") == 1, 10, "aria2c's completed event"
            )


def test_transmission_announces_and_shows_in_scrape_counts(tmp_path: Path) -> None:
    with run_tracker() as tracker:
        payload, torrent, ih = _seeded(tmp_path, tracker.announce_url, 1 * MiB)
        assert tracker.scrape(ih) == {b"complete": 0, b"downloaded": 0, b"incomplete": 0}
        # A leecher (nobody has the data): it announces `started` and waits.
        with transmission_cli(torrent, tmp_path / "tr-leech", port=free_port()):
            wait_until(
                lambda: tracker.scrape(ih).get(b"incomplete") == 1, 20, "transmission's announce"
            )
            peers = tracker.stats()["swarms"][0]["peers"]
            assert [p["peer_id"][:8] for p in peers] == ["-TR3000-"]
            assert not peers[0]["seeder"]
        # A seeder (the data is in place; no ratio limit, or it would stop at once):
        # counted as complete.
        seeding = {"ratio-limit-enabled": False}
        with transmission_cli(torrent, payload.parent, port=free_port(), settings=seeding):
            wait_until(lambda: tracker.scrape(ih).get(b"complete") == 1, 20, "transmission seeding")
