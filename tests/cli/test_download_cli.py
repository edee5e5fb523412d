"""`torrentkit download` / `seed` as processes: bad input, file selection, clean stops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.peers import make_payload, make_test_torrent, read_line, run_tracker
from torrentkit.maketorrent import make_torrent

TK = [sys.executable, "-m", "torrentkit.cli.main"]


def tk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TK, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    data = make_payload(tmp_path / "seed" / "data.bin", 256 * 1024)
    torrent = tmp_path / "data.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=16 * 1024))
    return torrent


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["download", "{t}", "-o", "{t}"], "not a folder"),
        (["download", "{t}", "--peer", "localhost"], "--peer"),
        (["download", "{t}", "--peer", "1.2.3.4:99999"], "--peer"),
        (["download", "{t}", "--files", "7"], "--files"),
        (["download", "{t}", "--files", "x"], "--files"),
        (["download", "{t}", "--down-limit", "fast"], "--down-limit"),
        (["download", "{t}", "--timeout", "-1"], "--timeout"),
        (["download", "{t}", "{t}"], "twice"),
        (["download", "magnet:?xt=urn:btih:" + "ab" * 20, "--no-dht"], "names no trackers"),
        (["download", "magnet:?xt=urn:btih:" + "ab" * 20, "--files", "0"], "--files"),
        (["seed", "magnet:?xt=urn:btih:" + "ab" * 20, "{tmp}"], "not a magnet"),
        (["download", "{tmp}/missing.torrent"], "missing.torrent"),
        (["seed", "{t}", "{tmp}/nope"], "no such folder"),
        (["seed", "{t}", "{tmp}", "--up-limit", "-5"], "--up-limit"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    small: Path, tmp_path: Path, args: list[str], needle: str
) -> None:
    r = tk(*(a.format(t=small, tmp=tmp_path) for a in args), "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_download_folder_is_created(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "sub"
    r = tk("download", str(small), "-o", str(out), "--bind", "127.0.0.1", "--no-tracker",
           "--no-dht", "--timeout", "0.5", "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert r.returncode == 1 and "incomplete" in r.stderr  # no peers: times out, exit 1
    assert out.is_dir()


def test_seed_refuses_incomplete_data(small: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = tk("seed", str(small), str(empty), "--bind", "127.0.0.1", "--no-tracker", "--no-dht",
           "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert r.returncode == 1
    assert "holds 0 of 16 pieces" in r.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_files_selection_and_clean_stops_with_a_tracker(tmp_path: Path) -> None:
    """Through our tracker: a seeder, then a leecher that wants one file of three. On SIGTERM
    the seeder stops cleanly (exit 0, `stopped` sent: the tracker forgets it); a leecher
    seeding with --seed stops on SIGINT with exit 130, also telling the tracker."""
    root = tmp_path / "seed" / "album"
    for i, size in enumerate([200_000, 150_000, 90_000]):
        make_payload(root / f"track{i}.flac", size, seed=i)
    with run_tracker("--interval", "60") as tracker:
        torrent = make_test_torrent(root, tracker.announce_url, tmp_path / "album.torrent")
        seeder = subprocess.Popen(
            [*TK, "seed", str(torrent), str(root.parent), "--bind", "127.0.0.1", "--no-dht",
             "--state-dir", str(tmp_path / "s1")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        leecher = None
        try:
            assert read_line(seeder, 15).startswith("listening on 127.0.0.1:")
            ih = bytes.fromhex(json.loads(tk("info", str(torrent), "--json").stdout)["info_hash"])
            deadline = time.monotonic() + 20
            while tracker.scrape(ih).get(b"complete", 0) < 1:
                assert time.monotonic() < deadline, tracker.scrape(ih)
                time.sleep(0.2)
            # A seed that started complete downloaded nothing: no `completed` (BEP 3).
            assert tracker.scrape(ih).get(b"downloaded", 0) == 0
            out = tmp_path / "out"
            out.mkdir()
            leecher = subprocess.Popen(
                [*TK, "download", str(torrent), "-o", str(out), "--files", "1", "--seed",
                 "--bind", "127.0.0.1", "--no-dht", "--json", "--state-dir", str(tmp_path / "s2")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert leecher.stdout is not None
            for line in leecher.stdout:
                if json.loads(line)["event"] == "completed":
                    break
            got = out / "album" / "track1.flac"
            assert got.read_bytes() == (root / "track1.flac").read_bytes()
            assert not (out / "album" / "track2.flac").exists() or (
                (out / "album" / "track2.flac").read_bytes() != (root / "track2.flac").read_bytes()
            )
            deadline = time.monotonic() + 20
            while (
                tracker.scrape(ih).get(b"complete", 0) + tracker.scrape(ih).get(b"incomplete", 0)
                < 2
                or tracker.scrape(ih).get(b"downloaded", 0) < 1
            ):
                assert time.monotonic() < deadline, tracker.scrape(ih)
                time.sleep(0.2)
            assert tracker.scrape(ih).get(b"downloaded", 0) == 1  # the leecher's, once

            seeder.send_signal(signal.SIGTERM)
            assert seeder.wait(15) == 0
            leecher.send_signal(signal.SIGINT)
            assert leecher.wait(15) == 130
            # Both said `stopped`: the tracker holds no peer for the torrent any more.
            counts = tracker.scrape(ih)
            assert counts.get(b"complete", 0) == 0 and counts.get(b"incomplete", 0) == 0
        finally:
            for proc in (seeder, leecher):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
