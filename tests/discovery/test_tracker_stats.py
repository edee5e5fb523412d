"""The stats pages' rendering (pure): escaping and a bounded size."""

from __future__ import annotations

import json

from torrentkit.discovery.tracker.protocol import AnnounceRequest
from torrentkit.discovery.tracker.state import TrackerState
from torrentkit.discovery.tracker.stats import peer_id_text, render_html, render_json
from torrentkit.ids import InfoHash


def test_peer_id_text_is_printable_ascii_only() -> None:
    assert peer_id_text(b"-TR3000-abcdefghijkl") == "-TR3000-abcdefghijkl"
    assert peer_id_text(b"\x1b[31m\\\x00\xff\x7f") == "\\x1b[31m\\\\\\x00\\xff\\x7f"
    every_byte = bytes(range(256))
    text = peer_id_text(every_byte)
    assert all(0x20 <= ord(c) < 0x7F for c in text)


def test_stats_pages_stay_small_with_the_worst_peer_ids() -> None:
    state = TrackerState()
    worst = b"\xff" * 10 + b"\\" * 10  # longest text, then doubled again by JSON
    for t in range(80):
        for n in range(40):
            peer_id = worst[:-2] + n.to_bytes(2, "big")
            state.announce(
                AnnounceRequest(
                    info_hash=InfoHash(t.to_bytes(20, "big")), peer_id=peer_id, port=1000 + n
                ),
                remote_ip="fd00:1234:5678:9abc:def0:1234:5678:9abc",
                now=0,
            )
    stats = state.stats()
    assert (stats.torrents, stats.peers) == (80, 3200)
    assert len(stats.swarms) == 50 and all(len(s.peers) == 20 for s in stats.swarms)
    page, data = render_html(stats), render_json(stats)
    assert len(page) < 256 * 1024 and len(data) < 256 * 1024
    assert json.loads(data)["peers"] == 3200
    assert b"<td>" in page and b"\xff" not in page
