"""Pausing a torrent closes its peer connections at once, so its peers see it go (issue 14:
in the demo, a leecher whose peers had paused stalled on its last piece for the 120 s silence
timeout, its requests pending with peers that had stopped answering but never hung up)."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from torrentkit.api import open_session
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent
from torrentkit.settings import Settings


async def test_a_paused_peer_hangs_up(tmp_path: Path) -> None:
    for d in ("seed", "a", "b"):
        (tmp_path / d).mkdir()
    (tmp_path / "seed" / "f.bin").write_bytes(os.urandom(1 << 20))
    meta = parse_torrent(make_torrent(tmp_path / "seed" / "f.bin", piece_length=32768))

    def settings(n: int, down_limit: int = 0) -> Settings:
        return Settings(listen="127.0.0.1:0", state_dir=tmp_path / f"state{n}", dht=None,
                        trackers=False, down_limit=down_limit)  # fmt: skip

    with trio.fail_after(60):
        async with (
            open_session(settings(0)) as s0,
            open_session(settings(1)) as s1,
            open_session(settings(2, down_limit=64 * 1024)) as s2,
        ):
            await s0.add(meta, tmp_path / "seed")
            middle = await s1.add(meta, tmp_path / "a", peers=[s0.address])
            await middle.wait_complete()
            last = await s2.add(meta, tmp_path / "b", peers=[s1.address])  # only the middle
            while last.status().num_peers < 1 or last.status().pieces < 2:
                await trio.sleep(0.1)
            middle.pause()
            with trio.fail_after(5):  # not the 120 s silence timeout
                while last.status().num_peers:
                    await trio.sleep(0.1)
            assert last.status().pieces < last.status().num_pieces
