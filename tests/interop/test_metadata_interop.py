"""BEP 9 metadata exchange against libtorrent: magnet links, no tracker, just a peer address.
libtorrent's ut_metadata plugin is enabled for these tests only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import libtorrent as lt
import pytest

from tests.interop.peers import (
    libtorrent_session,
    lt_add,
    lt_port,
    lt_wait_finished,
    make_payload,
    read_line,
    stop_process,
    wait_until,
)
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent

TK = [sys.executable, "-m", "torrentkit.cli.main"]
pytestmark = pytest.mark.interop


def payload_and_torrent(tmp_path: Path) -> tuple[Path, Path, str]:
    """A folder of 400 small files with long names: the info dictionary then spans three
    16 KiB metadata pieces while the payload stays small."""
    root = tmp_path / "seed" / "album"
    for i in range(400):
        make_payload(root / f"{i:03d} - a rather long track title to fill the info dict.ogg",
                     9_000 + i, seed=i)  # fmt: skip
    torrent = tmp_path / "album.torrent"
    torrent.write_bytes(make_torrent(root, piece_length=32 * 1024))
    meta = parse_torrent(torrent.read_bytes())
    assert len(meta.info.raw) > 2 * 16 * 1024
    return root, torrent, meta.info_hash.hex()


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)


def test_our_client_fetches_metadata_from_libtorrent(tmp_path: Path) -> None:
    data, torrent, ih = payload_and_torrent(tmp_path)
    with libtorrent_session() as ses:
        ses.add_extension("ut_metadata")
        lt_add(ses, torrent, data.parent, seed=True)
        port = lt_port(ses)
        out = tmp_path / "out"
        out.mkdir()
        r = subprocess.run(
            [*TK, "download", f"magnet:?xt=urn:btih:{ih}&x.pe=127.0.0.1:{port}", "-o", str(out),
             "--bind", "127.0.0.1", "--no-tracker", "--no-dht", "--timeout", "60",
             "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "metadata received" in r.stderr
    assert same_tree(out / "album", data)


def test_libtorrent_fetches_metadata_from_our_seeder(tmp_path: Path) -> None:
    data, torrent, ih = payload_and_torrent(tmp_path)
    seeder = subprocess.Popen(
        [*TK, "seed", str(torrent), str(data.parent), "--bind", "127.0.0.1", "--no-tracker",
         "--no-dht", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        port = int(read_line(seeder, 15).rsplit(":", 1)[1])
        with libtorrent_session() as ses:
            ses.add_extension("ut_metadata")
            atp = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{ih}")
            out = tmp_path / "lt-out"
            out.mkdir()
            atp.save_path = str(out)
            atp.flags = (
                lt.torrent_flags.disable_dht
                | lt.torrent_flags.disable_lsd
                | lt.torrent_flags.disable_pex
            )
            handle = ses.add_torrent(atp)
            handle.connect_peer(("127.0.0.1", port))
            wait_until(lambda: handle.status().has_metadata, 30, "libtorrent to get metadata")
            assert handle.torrent_file().info_hashes().v1.to_bytes().hex() == ih
            lt_wait_finished(handle, 60)
            # libtorrent may report the last piece before its disk thread wrote it.
            wait_until(lambda: same_tree(out / "album", data), 15, "libtorrent's files")
    finally:
        stop_process(seeder)
