"""Several requests in flight per web seed (``REQUESTS_PER_SEED``, one httpx client's
connection pool), counted by the test's HTTP server; failing requests give their pieces back
and the seed is retried or dropped by the same rules as with one request at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from torrentkit.engine import webseed_link
from torrentkit.engine.webseed import REQUESTS_PER_SEED
from torrentkit.events import PeerBanned, PeerDisconnected
from torrentkit.maketorrent import make_torrent

from .helpers import KIB, payload, same_files
from .test_webseed_api import fetch, quick_retries
from .webseed_server import web_seed_server


@pytest.mark.parametrize("most", [REQUESTS_PER_SEED, 1])
async def test_a_web_seed_has_several_requests_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, most: int
) -> None:
    monkeypatch.setattr(webseed_link, "REQUESTS_PER_SEED", most)
    # 64 pieces: runs of 4 pieces (a sixteenth), 16 requests of 64 KiB, each sent by the
    # server 16 KiB at a time with 10 ms between.
    src = payload(tmp_path / "src", {"f.bin": 1024 * KIB})
    with web_seed_server(src, slow=0.01) as server:
        url = server.url("slow")
        raw = make_torrent(src / "f.bin", piece_length=16 * KIB, url_list=[url])
        events = await fetch(raw, tmp_path / "dest", tmp_path / "state")
        assert server.hits["slow"] >= 16
    assert (tmp_path / "dest" / "f.bin").read_bytes() == (src / "f.bin").read_bytes()
    if most == 1:
        assert server.most_in_flight == 1  # the bound is what allows the overlap
    else:
        assert 2 <= server.most_in_flight <= REQUESTS_PER_SEED
    left = [e for e in events if isinstance(e, PeerDisconnected) and e.peer == url]
    assert [e.reason for e in left] == ["download complete"]


async def test_failing_requests_give_their_pieces_back_and_are_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays = quick_retries(monkeypatch)
    src = payload(tmp_path / "src", {"pack/a.bin": 700 * KIB, "pack/b.bin": 300 * KIB})
    with web_seed_server(src, flaky=3) as server:  # every third request: 503
        url = server.url("flaky")
        raw = make_torrent(src / "pack", piece_length=16 * KIB, url_list=[url])
        events = await fetch(raw, tmp_path / "dest", tmp_path / "state")
        hits = server.hits["flaky"]
        assert server.most_in_flight >= 2
    assert same_files(src / "pack", tmp_path / "dest" / "pack")
    assert hits >= 3 and delays  # some failed, their pieces were fetched again
    assert len(delays) <= hits // 3  # one backoff per failure at most
    left = [e for e in events if isinstance(e, PeerDisconnected) and e.peer == url]
    assert [e.reason for e in left] == ["download complete"]  # transient: not dropped


async def test_a_fatal_reply_ends_every_request_of_the_seed(tmp_path: Path) -> None:
    src = payload(tmp_path / "src", {"pack/x.bin": 900 * KIB, "pack/y.bin": 100 * KIB})
    with web_seed_server(src, breaks=3) as server:  # from the 4th request: bad Content-Range
        bad, good = server.url("breaks"), server.url("slow")
        raw = make_torrent(src / "pack", piece_length=16 * KIB, url_list=[bad, good])
        events = await fetch(raw, tmp_path / "dest", tmp_path / "state")
        asked = server.hits["breaks"]
    assert same_files(src / "pack", tmp_path / "dest" / "pack")
    left = [e for e in events if isinstance(e, PeerDisconnected) and e.peer == bad]
    assert len(left) == 1 and "Content-Range" in left[0].reason, left
    # It was dropped at its first bad reply, with at most the other requests in flight.
    assert 4 <= asked <= 3 + REQUESTS_PER_SEED
    assert not [e for e in events if isinstance(e, PeerBanned)]
