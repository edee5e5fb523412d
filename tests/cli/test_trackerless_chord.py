"""Trackerless swarm on a Chord ring of real processes on loopback (issue 6 item 6): 16 ring
nodes, a seeder and 3 leechers that each know one bootstrap node; all finish; then 4 ring
nodes are killed and a magnet-only newcomer still finds the seeder."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.peers import make_payload, read_line, stop_process
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent

TK = [sys.executable, "-m", "torrentkit.cli.main"]
FAST = ["--stabilize-interval", "0.5"]


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*TK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def address(proc: subprocess.Popen[bytes]) -> str:
    line = read_line(proc, 20)
    assert line.startswith("listening on 127.0.0.1:"), line
    return line.split()[2]


def why(leecher: subprocess.Popen[bytes], seeder: subprocess.Popen[bytes]) -> str:
    """A failed leecher's stderr, and the seeder's if it has ended (it should not have)."""
    text = leecher.stderr.read().decode()  # type: ignore[union-attr]
    if seeder.poll() is not None:
        text += f"\nthe seeder ended ({seeder.returncode}): "
        text += seeder.stderr.read().decode()  # type: ignore[union-attr]
    return text


@pytest.mark.slow
def test_sixteen_node_ring_carries_a_swarm_and_survives_failures(tmp_path: Path) -> None:
    data = make_payload(tmp_path / "seed" / "film.bin", 2 * 1024 * 1024)
    torrent = tmp_path / "film.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=64 * 1024))  # no announce URL
    info_hash = parse_torrent(torrent.read_bytes()).info_hash.hex()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ring = [start("node", "--discovery", "chord", "--bind", "127.0.0.1", *FAST)]
        procs += ring
        addrs = [address(ring[0])]
        for i in range(1, 16):
            p = start("node", "--discovery", "chord", "--bind", "127.0.0.1",
                      "--bootstrap", addrs[i // 2], *FAST)  # fmt: skip
            procs.append(p)
            ring.append(p)
            addrs.append(address(p))
        time.sleep(3)  # a few stabilize rounds
        seeder = start("seed", str(torrent), str(data.parent), "--bind", "127.0.0.1", "--no-dht",
                       "--discovery", "chord", "--bootstrap", addrs[5],
                       "--state-dir", str(tmp_path / "s0"), *FAST)  # fmt: skip
        procs.append(seeder)
        address(seeder)
        leechers = []
        for i, boot in enumerate((addrs[1], addrs[9], addrs[14])):
            out = tmp_path / f"out{i}"
            out.mkdir()
            p = start("download", str(torrent), "-o", str(out), "--bind", "127.0.0.1", "--no-dht",
                      "--discovery", "chord", "--bootstrap", boot, "--timeout", "90",
                      "--state-dir", str(tmp_path / f"s{i + 1}"), *FAST)  # fmt: skip
            procs.append(p)
            leechers.append((p, out))
        for p, out in leechers:
            assert p.wait(120) == 0, why(p, seeder)
            assert (out / "film.bin").read_bytes() == data.read_bytes()

        # Four ring nodes die at once (not the seeder's or the newcomer's bootstrap node).
        for p in (ring[2], ring[7], ring[11], ring[13]):
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        time.sleep(3)  # the ring routes around them
        out = tmp_path / "late"
        out.mkdir()
        late = subprocess.run(
            [*TK, "download", f"magnet:?xt=urn:btih:{info_hash}", "-o", str(out),
             "--bind", "127.0.0.1", "--no-dht", "--discovery", "chord", "--bootstrap", addrs[3],
             "--timeout", "90", "--state-dir", str(tmp_path / "s9"), *FAST],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert late.returncode == 0, late.stderr
        assert (out / "film.bin").read_bytes() == data.read_bytes()
    finally:
        for p in procs:
            stop_process(p)


def _one_line_exit_2(args: list[str], needle: str) -> None:
    r = subprocess.run([*TK, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_a_ring_port_already_taken_is_one_line_exit_2(tmp_path: Path) -> None:
    data = make_payload(tmp_path / "seed" / "x.bin", 64 * 1024)
    torrent = tmp_path / "x.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=16 * 1024))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = str(held.getsockname()[1])
        _one_line_exit_2(
            ["node", "--discovery", "chord", "--bind", "127.0.0.1", "--port", port],
            f"cannot bind UDP 127.0.0.1:{port} for the Chord ring",
        )
        seed = ["seed", str(torrent), str(data.parent), "--bind", "127.0.0.1", "--port", port,
                "--no-dht", "--discovery", "chord", "--state-dir", str(tmp_path / "s")]  # fmt: skip
        _one_line_exit_2(seed, f"cannot listen on TCP and UDP 127.0.0.1:{port}")
