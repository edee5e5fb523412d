"""Our client against real BitTorrent clients on 127.0.0.1 (issue 4, item 8).

Every case runs real processes: our ``torrentkit download`` / ``torrentkit seed`` (through
:mod:`tests.interop.ours`), libtorrent 2.1.1 sessions, aria2c 1.36 and transmission-cli 3.00
(through :mod:`tests.interop.peers`), with DHT, LSD, PEX, UPnP and NAT-PMP off everywhere.
Peers meet through ``torrentkit tracker`` only, except Transmission: 3.00 never dials 127.x
addresses, so our leecher is given its address with ``--peer``. Every case ends by comparing
the data byte for byte, and every wait is bounded.
"""

from __future__ import annotations

import functools
import subprocess
import time
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest

from tests.interop.ours import OurPeer, our_download, our_seed
from tests.interop.peers import (
    LOOPBACK,
    MiB,
    TrackerProcess,
    aria2c,
    free_port,
    libtorrent_session,
    lt_add,
    lt_info_hash,
    lt_port,
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

KiB = 1024


# --------------------------------------------------------------------------- helpers


def _single(tmp_path: Path, announce_url: str, size: int, piece: int) -> tuple[Path, Path, bytes]:
    """A seeded-random payload in ``tmp_path/seed`` and its torrent; (payload, torrent,
    info-hash), the info-hash checked against libtorrent's."""
    payload = make_payload(tmp_path / "seed" / "payload.bin", size)
    torrent = make_test_torrent(payload, announce_url, tmp_path / "payload.torrent",
                                piece_length=piece)  # fmt: skip
    ih = lt_info_hash(torrent)
    assert parse_torrent(torrent.read_bytes()).info_hash == ih
    return payload, torrent, ih


def _files(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root``: "/"-joined relative path -> bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _assert_same_tree(expected: Path, got: Path) -> None:
    """The same files (names, folders, bytes), nothing missing, nothing extra."""
    want, have = _files(expected), _files(got)
    assert sorted(have) == sorted(want)
    for rel, data in want.items():
        assert have[rel] == data, f"{rel} differs"


def _wait_seeders(tracker: TrackerProcess, ih: bytes, n: int, what: str) -> None:
    wait_until(lambda: tracker.scrape(ih).get(b"complete", 0) >= n, 20, what)


def _connected_clients(peer: OurPeer) -> set[str]:
    return {e["client"] for e in peer.events() if e["event"] == "peer_connected"}


def _limit_loopback_too(ses: Any) -> None:
    """libtorrent exempts local peers from rate limits (its local peer class); put every
    address in the global class so ``upload_rate_limit`` applies on 127.0.0.1."""
    everyone = lt.ip_filter()
    everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(everyone)


def _aria_log(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("aria2c-*.log"))


def _assert_no_protocol_errors(peer: OurPeer) -> None:
    """Real clients are well behaved: a link we dropped for a protocol error is our bug."""
    dropped = [
        f"{e['peer']}: {e['reason']}"
        for e in peer.events()
        if e["event"] == "peer_disconnected" and e["reason"].startswith("protocol error")
    ]
    assert not dropped, f"{peer.name} dropped real peers: {dropped}"


def _finished_ok(peer: OurPeer, timeout: float) -> None:
    code = peer.wait(timeout)
    assert code == 0, f"{peer.name} exited {code}\n{peer.logs()}"
    assert peer.has_event("completed"), peer.logs()
    _assert_no_protocol_errors(peer)


# --------------------------------------------------------------------------- our leecher


@pytest.mark.parametrize("limit", [0, 2 * MiB], ids=["unlimited", "rate-limited"])
def test_ours_downloads_from_a_libtorrent_seeder(tmp_path: Path, limit: int) -> None:
    """Rate-limited, libtorrent rechokes us about 0.5 s into the transfer (CHOKE, UNCHOKE)
    while a PIECE still waits in its bandwidth queue: that block arrives after the CHOKE."""
    with run_tracker() as tracker, libtorrent_session(upload_rate_limit=limit) as seeder:
        _limit_loopback_too(seeder)
        payload, torrent, ih = _single(tmp_path, tracker.announce_url, 4 * MiB, 64 * KiB)
        lt_add(seeder, torrent, payload.parent, seed=True)
        _wait_seeders(tracker, ih, 1, "libtorrent's announce")
        with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                          state_dir=tmp_path / "state", timeout=45) as ours:  # fmt: skip
            _finished_ok(ours, 50)
        assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
        assert any(c.startswith("libtorrent") for c in _connected_clients(ours)), ours.logs()
        done = ours.summary()
        assert done["complete"] and done["downloaded"] == 4 * MiB
        # It told the tracker: two seeders now, one completed download.
        wait_until(lambda: tracker.scrape(ih).get(b"downloaded") == 1, 10, "our completed event")


def test_ours_downloads_from_an_aria2c_seeder(tmp_path: Path) -> None:
    with run_tracker() as tracker:
        payload, torrent, ih = _single(tmp_path, tracker.announce_url, 3 * MiB, 32 * KiB)
        with aria2c(torrent, payload.parent, port=free_port(), seed=True):
            _wait_seeders(tracker, ih, 1, "aria2c's announce as a seeder")
            with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                              state_dir=tmp_path / "state", timeout=45) as ours:  # fmt: skip
                _finished_ok(ours, 50)
        assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
        assert any(c.startswith("aria2") for c in _connected_clients(ours)), ours.logs()
        assert ours.summary()["downloaded"] == 3 * MiB


def test_ours_downloads_from_a_transmission_seeder(tmp_path: Path) -> None:
    """Transmission 3.00 never dials 127.x: our leecher dials it (``--peer``). It unchokes
    only at its 10 s rechoke, so the first block comes ~10 s in."""
    with run_tracker() as tracker:
        payload, torrent, ih = _single(tmp_path, tracker.announce_url, 2 * MiB, 32 * KiB)
        port = free_port()
        seeding = {"ratio-limit-enabled": False}
        with transmission_cli(torrent, payload.parent, port=port, settings=seeding):
            # Its `complete` announce means it has checked the data and seeds.
            _wait_seeders(tracker, ih, 1, "transmission's announce as a seeder")
            with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                              state_dir=tmp_path / "state", peers=[f"{LOOPBACK}:{port}"],
                              timeout=50) as ours:  # fmt: skip
                _finished_ok(ours, 55)
        assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
        assert any(c.startswith("Transmission") for c in _connected_clients(ours)), ours.logs()
        assert ours.summary()["downloaded"] == 2 * MiB


# --------------------------------------------------------------------------- our seeder


def test_libtorrent_downloads_from_our_seeder(tmp_path: Path) -> None:
    with run_tracker() as tracker:
        payload, torrent, ih = _single(tmp_path, tracker.announce_url, 4 * MiB, 64 * KiB)
        with our_seed(torrent, payload.parent, logs=tmp_path / "logs",
                      state_dir=tmp_path / "state") as ours:  # fmt: skip
            _wait_seeders(tracker, ih, 1, "our seeder's announce")
            with libtorrent_session() as leecher:
                handle = lt_add(leecher, torrent, tmp_path / "dl")
                lt_wait_finished(handle, 40)
                wait_written(tmp_path / "dl" / "payload.bin", payload.read_bytes())
        assert ours.proc.returncode == 0, ours.logs()
        served = ours.summary()
        assert served["uploaded"] >= 4 * MiB, served
        _assert_no_protocol_errors(ours)


def test_aria2c_downloads_from_our_seeder(tmp_path: Path) -> None:
    with run_tracker() as tracker:
        payload, torrent, ih = _single(tmp_path, tracker.announce_url, 3 * MiB, 32 * KiB)
        with our_seed(torrent, payload.parent, logs=tmp_path / "logs",
                      state_dir=tmp_path / "state") as ours:  # fmt: skip
            _wait_seeders(tracker, ih, 1, "our seeder's announce")
            with aria2c(torrent, tmp_path / "dl", port=free_port()) as proc:
                try:
                    code: int | None = proc.wait(30)
                except subprocess.TimeoutExpired:
                    code = None
            assert code == 0, f"aria2c: {code}\n{_aria_log(tmp_path)}\n{ours.logs()}"
            assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
        assert ours.proc.returncode == 0, ours.logs()
        assert ours.summary()["uploaded"] >= 3 * MiB
        _assert_no_protocol_errors(ours)


# --------------------------------------------------------------------------- a mixed swarm


def test_mixed_swarm_everyone_finishes(tmp_path: Path) -> None:
    """1 libtorrent seeder, 2 of ours, 1 aria2c leecher, 1 libtorrent leecher, all through
    our tracker. The seeder uploads at 1 MiB/s in all, so 4 MiB to 4 leechers takes ~16 s
    from it alone: the leechers must trade among themselves, ours included."""
    size = 4 * MiB
    with run_tracker("--interval", "5") as tracker:
        payload, torrent, ih = _single(tmp_path, tracker.announce_url, size, 32 * KiB)
        expected = payload.read_bytes()
        logs = tmp_path / "logs"
        with (
            libtorrent_session(upload_rate_limit=1 * MiB) as seed_ses,
            libtorrent_session() as leech_ses,
        ):
            _limit_loopback_too(seed_ses)
            lt_add(seed_ses, torrent, payload.parent, seed=True)
            _wait_seeders(tracker, ih, 1, "libtorrent seeder's announce")
            # --seed: ours keep serving after they finish, until everyone is done.
            with (
                our_download(torrent, tmp_path / "ours1", logs=logs, name="ours1",
                             state_dir=tmp_path / "state1", timeout=60,
                             extra=["--seed"]) as ours1,
                our_download(torrent, tmp_path / "ours2", logs=logs, name="ours2",
                             state_dir=tmp_path / "state2", timeout=60,
                             extra=["--seed"]) as ours2,
                aria2c(torrent, tmp_path / "aria", port=free_port()) as aria,
            ):  # fmt: skip
                handle = lt_add(leech_ses, torrent, tmp_path / "lt")
                deadline = time.monotonic() + 45
                lt_wait_finished(handle, 45)
                for ours in (ours1, ours2):
                    wait_until(
                        functools.partial(ours.has_event, "completed"),
                        max(1.0, deadline - time.monotonic()),
                        f"{ours.name} to complete (logs in {ours.stdout.parent})",
                    )
                aria_code = aria.wait(max(1.0, deadline - time.monotonic()))
                assert aria_code == 0, _aria_log(tmp_path)
                for ours in (ours1, ours2):
                    assert ours.proc.poll() is None, f"{ours.name} stopped seeding\n{ours.logs()}"
            # Stopped (SIGTERM) after everyone finished: a clean exit 0.
            for ours in (ours1, ours2):
                assert ours.proc.returncode == 0, ours.logs()
        for folder in ("ours1", "ours2", "aria", "lt"):
            wait_written(tmp_path / folder / "payload.bin", expected)
        for ours in (ours1, ours2):
            done = ours.summary()
            assert done["complete"] and done["downloaded"] >= size, done
            _assert_no_protocol_errors(ours)
            clients = _connected_clients(ours)
            assert {c.split()[0] for c in clients} >= {"libtorrent", "torrentkit", "aria2"}, clients
        # The seeder alone could not have served everyone yet: ours gave data to the others.
        up = [o.summary()["uploaded"] for o in (ours1, ours2)]
        assert sum(up) >= size // 2, up


# --------------------------------------------------------------------------- multi-file, pads


def _padded_multifile(tmp_path: Path, announce_url: str) -> tuple[Path, Path]:
    """A v1 torrent made by libtorrent's create_torrent with BEP 47 pad files aligning every
    file to a piece, nested folders, an empty file and a file smaller than a block; its data
    is in ``tmp_path/src/<name>``. Returns (data root, torrent)."""
    name = "nested"
    files = [
        ("a/b/c/deep.bin", 700_000),
        ("a/small.txt", 5_000),
        ("a/zero.bin", 0),
        ("d/données/été.bin", 1_000_003),
        ("top.bin", 333_333),
        ("z/y/x/w/last.dat", 48_000),
    ]
    src = tmp_path / "src"
    for i, (rel, size) in enumerate(files):
        make_payload(src / name / rel, size, seed=100 + i)
    entries = [lt.create_file_entry(f"{name}/{rel}", size) for rel, size in files]
    ct = lt.create_torrent(
        entries, 32 * KiB, lt.create_torrent.v1_only | lt.create_torrent.canonical_files
    )
    ct.add_tracker(announce_url, 0)
    lt.set_piece_hashes(ct, str(src))
    torrent = tmp_path / "nested.torrent"
    torrent.write_bytes(bytes(lt.bencode(ct.generate())))
    meta = parse_torrent(torrent.read_bytes())
    assert sum(f.pad for f in meta.info.files) >= 3, "libtorrent made no pad files"
    assert meta.info_hash == lt_info_hash(torrent)
    return src, torrent


def test_ours_downloads_padded_multifile_torrent_from_libtorrent(tmp_path: Path) -> None:
    with run_tracker() as tracker, libtorrent_session() as seeder:
        src, torrent = _padded_multifile(tmp_path, tracker.announce_url)
        ih = lt_info_hash(torrent)
        lt_add(seeder, torrent, src, seed=True)
        _wait_seeders(tracker, ih, 1, "libtorrent's announce")
        with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                          state_dir=tmp_path / "state", timeout=45) as ours:  # fmt: skip
            _finished_ok(ours, 50)
        # Every real file in its folder, byte for byte; no pad file written (not even .pad/).
        _assert_same_tree(src, tmp_path / "dl")


@pytest.mark.parametrize(
    ("fixture", "pads"),
    [
        ("pad_libtorrent.torrent", True),  # v1, BEP 47 pad files after every file
        ("hybrid_libtorrent.torrent", True),  # v1+v2 (fetched as v1): pads in the v1 list
        ("multi_libtorrent.torrent", False),  # nested non-ASCII folders, an empty file
    ],
)
def test_ours_downloads_libtorrent_fixture(tmp_path: Path, fixture: str, pads: bool) -> None:
    """The checked-in torrents libtorrent made: libtorrent seeds fixtures/data and we dial it
    directly (their announce URL names a fixed port nobody serves here)."""
    root = Path(__file__).resolve().parents[2] / "fixtures"
    torrent = root / fixture
    meta = parse_torrent(torrent.read_bytes())
    assert any(f.pad for f in meta.info.files) == pads
    with libtorrent_session() as seeder:
        lt_add(seeder, torrent, root / "data", seed=True)
        peer = f"{LOOPBACK}:{lt_port(seeder)}"
        with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                          state_dir=tmp_path / "state", peers=[peer], no_tracker=True,
                          timeout=30) as ours:  # fmt: skip
            _finished_ok(ours, 35)
    # Exactly the torrent's folder, every real file byte for byte, no pad file on disk.
    assert [p.name for p in (tmp_path / "dl").iterdir()] == [meta.info.name]
    _assert_same_tree(root / "data" / meta.info.name, tmp_path / "dl" / meta.info.name)
