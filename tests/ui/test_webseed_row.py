"""A web seed in the dashboard's peer table: its URL as the address, ``web seed`` as the
client (the engine's PeerSnapshot for a web seed, engine/torrent.py)."""

from __future__ import annotations

from tests.ui.snapshots import KIB, peer, torrent
from tests.ui.test_dashboard import assert_fits, show


def test_web_seed_row_shows_its_url_and_client() -> None:
    url = "http://127.0.0.1:8080/pub/"
    web = peer(
        url,
        client="web seed",
        am_interested=True,
        peer_choking=False,
        down_rate=900 * KIB,
        downloaded=4096 * KIB,
        progress=1.0,
    )
    lines = show(torrent((web, peer("10.0.0.2:6881"))), 100)
    row = next(line for line in lines if line.startswith(url))
    assert "web seed" in row
    assert_fits(lines, 100, 24)


def test_long_web_seed_url_is_cut_and_escaped() -> None:
    url = "https://mirror.example.org/a/very/long/path/\x1b[31mred/file.iso"
    lines = show(torrent((peer(url, client="web seed"),)), 80)
    row = next(line for line in lines if line.startswith("https://mirror.example"))
    assert "\x1b" not in row and "web seed" in row
    assert_fits(lines, 80, 24)
