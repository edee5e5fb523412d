"""Trackerless swarm on a Chord ring of real processes on loopback (issue 6 item 6): 16 ring
nodes, a seeder and 3 leechers that each know one bootstrap node; all finish; then 4 ring
nodes are killed and a magnet-only newcomer still finds the seeder."""

from __future__ import annotations

import signal
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
        seeder = start("seed", str(torrent), str(data.parent), "--bind", "127.0.0.1",
                       "--discovery", "chord", "--bootstrap", addrs[5],
                       "--state-dir", str(tmp_path / "s0"), *FAST)  # fmt: skip
        procs.append(seeder)
        address(seeder)
        leechers = []
        for i, boot in enumerate((addrs[1], addrs[9], addrs[14])):
            out = tmp_path / f"out{i}"
            out.mkdir()
            p = start("download", str(torrent), "-o", str(out), "--bind", "127.0.0.1",
                      "--discovery", "chord", "--bootstrap", boot, "--timeout", "90",
                      "--state-dir", str(tmp_path / f"s{i + 1}"), *FAST)  # fmt: skip
            procs.append(p)
            leechers.append((p, out))
        for p, out in leechers:
            assert p.wait(120) == 0, p.stderr.read().decode()  # type: ignore[union-attr]
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
             "--bind", "127.0.0.1", "--discovery", "chord", "--bootstrap", addrs[3],
             "--timeout", "90", "--state-dir", str(tmp_path / "s9"), *FAST],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert late.returncode == 0, late.stderr
        assert (out / "film.bin").read_bytes() == data.read_bytes()
    finally:
        for p in procs:
            stop_process(p)
