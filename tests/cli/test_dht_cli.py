"""The DHT on the command line, real processes on loopback: ``torrentkit dht`` as the first
node, a ``seed`` that announces through it, ``dht get-peers`` that finds the seed, and a
``download`` of a magnet with no trackers that completes through the DHT alone."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_trackerless_chord import _one_line_exit_2
from tests.interop.peers import make_payload, read_line, stop_process
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent

TK = [sys.executable, "-m", "torrentkit.cli.main"]
MAGNET = ["download", "magnet:?xt=urn:btih:" + "ab" * 20]


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*TK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_dht_node_seed_get_peers_and_trackerless_download(tmp_path: Path) -> None:
    data = make_payload(tmp_path / "seed" / "film.bin", 512 * 1024)
    torrent = tmp_path / "film.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=64 * 1024))  # no announce URL
    info_hash = parse_torrent(torrent.read_bytes()).info_hash.hex()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        router = start("dht", "--bind", "127.0.0.1", "--no-bootstrap", "--json",
                       "--state-dir", str(tmp_path / "r"))  # fmt: skip
        procs.append(router)
        first = json.loads(read_line(router, 20))
        assert first["event"] == "listening"
        boot = f"127.0.0.1:{first['port']}"
        seeder = start("seed", str(torrent), str(data.parent), "--bind", "127.0.0.1",
                       "--no-tracker", "--dht-bootstrap", boot,
                       "--state-dir", str(tmp_path / "s0"))  # fmt: skip
        procs.append(seeder)
        seed_addr = read_line(seeder, 20).split()[2]
        # The seeder announced through the DHT: a lookup finds it (within a few seconds).
        found: list[str] = []
        for _ in range(10):
            r = subprocess.run(
                [*TK, "dht", "get-peers", info_hash, "--bind", "127.0.0.1", "--bootstrap", boot,
                 "--json", "--timeout", "10", "--state-dir", str(tmp_path / "q")],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if r.returncode == 0:
                found = json.loads(r.stdout)["peers"]
                break
            assert r.returncode == 1 and "no peers" in r.stderr, r.stderr
        assert seed_addr in found
        out = tmp_path / "out"
        down = subprocess.run(
            [*TK, "download", f"magnet:?xt=urn:btih:{info_hash}", "-o", str(out),
             "--bind", "127.0.0.1", "--dht-bootstrap", boot, "--timeout", "60",
             "--state-dir", str(tmp_path / "s1")],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert down.returncode == 0, down.stderr
        assert (out / "film.bin").read_bytes() == data.read_bytes()
        # The router's table lists the nodes that joined through it (a line every 2 s).
        most = 0
        for _ in range(20):
            table = json.loads(read_line(router, 10))
            assert table["event"] == "table"
            most = max(most, table["nodes"])
            if most >= 2:
                break
        assert most >= 2
    finally:
        for p in procs:
            stop_process(p)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["dht", "--bootstrap", "nowhere"], "--bootstrap"),
        (["dht", "--no-bootstrap", "--bootstrap", "127.0.0.1:5"], "--no-bootstrap"),
        (["dht", "get-peers", "xyz", "--no-bootstrap"], "INFO_HASH"),
        (["dht", "--port", "70000", "--no-bootstrap"], "--port"),
        ([*MAGNET, "--no-dht"], "--no-dht"),
        ([*MAGNET, "--dht-bootstrap", "x"], "--dht-bootstrap"),
        ([*MAGNET, "--no-dht", "--dht-port", "5"], "--no-dht"),
        ([*MAGNET, "--dht-port", "70000", "--dht-bootstrap", "127.0.0.1:5"], "--dht-port"),
    ],
)
def test_bad_dht_flags_are_one_line_exit_2(args: list[str], needle: str) -> None:
    _one_line_exit_2(args, needle)


def test_dht_put_and_get(tmp_path: Path) -> None:
    router = start("dht", "--bind", "127.0.0.1", "--no-bootstrap", "--json",
                   "--state-dir", str(tmp_path / "r"))  # fmt: skip
    try:
        boot = f"127.0.0.1:{json.loads(read_line(router, 20))['port']}"

        # Every tool run is the same node (address, state, id), as a user's would be: the
        # router's entry for it stays good, and no lookup waits on a node that is gone.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = str(probe.getsockname()[1])

        def dht(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*TK, "dht", *args, "--bind", "127.0.0.1", "--port", port, "--bootstrap", boot,
                 "--json", "--timeout", "20", "--state-dir", str(tmp_path / "tool")],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        put = dht("put", "hello, dht")
        assert put.returncode == 0, put.stderr
        target = json.loads(put.stdout)["target"]
        got = dht("get", target)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["value"] == "hello, dht"
        # A mutable item: the key file is made on first use; each put takes the next seq.
        key = tmp_path / "key"
        first = json.loads(dht("put", "v1", "--key", str(key), "--salt", "s").stdout)
        assert first["seq"] == 1 and key.stat().st_mode & 0o777 == 0o600
        second = json.loads(dht("put", "v2", "--key", str(key), "--salt", "s").stdout)
        assert second["seq"] == 2 and second["target"] == first["target"]
        got = dht("get", "--public-key", second["public_key"], "--salt", "s")
        assert json.loads(got.stdout) == {
            "target": second["target"],
            "value": "v2",
            "public_key": second["public_key"],
            "seq": 2,
        }
        # The wrong salt names another target: nothing there.
        missing = dht("get", "--public-key", second["public_key"], "--salt", "x")
        assert missing.returncode == 1 and "no item" in missing.stderr
    finally:
        stop_process(router)


def test_a_taken_udp_port_names_the_dht(tmp_path: Path) -> None:
    data = make_payload(tmp_path / "seed" / "x.bin", 64 * 1024)
    torrent = tmp_path / "x.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=16 * 1024))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = str(held.getsockname()[1])
        seed = ["seed", str(torrent), str(data.parent), "--bind", "127.0.0.1", "--port", port,
                "--no-tracker", "--dht-bootstrap", "127.0.0.1:9",
                "--state-dir", str(tmp_path)]  # fmt: skip
        _one_line_exit_2(seed, "the mainline DHT shares the port number")
