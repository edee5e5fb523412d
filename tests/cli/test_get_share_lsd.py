"""``get`` and ``share`` take ``--lsd`` as ``download`` and ``seed`` do (Settings.lsd).

End to end inside two network namespaces this test creates (a veth pair, as in
tests/discovery/test_lsd_netns.py: the announces never touch the machine's real interfaces):
``share --lsd`` in one, ``get --lsd`` in the other, each with a Napster index of its own, so
the index ``get`` asks knows nobody and Local Service Discovery is the only way the two meet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.discovery.test_lsd_netns import Lines, Namespaces, namespaces  # noqa: F401
from tests.interop.peers import make_payload
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent

CLI = [sys.executable, "-m", "torrentkit.cli.main"]


def index_url(ns: Namespaces, name: str, addr: str) -> tuple[Lines, str]:
    index = Lines(ns.run(name, *CLI, "napster-index", "--bind", addr, "--port", "0"))
    return index, index.wait_for("listening on", 15).split(" url ")[1].strip()


@pytest.mark.interop
def test_get_finds_a_share_by_lsd_alone(namespaces: Namespaces, tmp_path: Path) -> None:  # noqa: F811
    ns = namespaces
    folder = tmp_path / "shared"
    data = make_payload(folder / "lan file.bin", 300 * 1024 + 7, seed=9)
    # share makes its torrents with automatic piece sizes: the same call gives the hash.
    info_hash = parse_torrent(make_torrent(data)).info_hash.hex()
    running: list[Lines] = []
    try:
        index_a, url_a = index_url(ns, ns.ours, ns.our_ip)
        index_b, url_b = index_url(ns, ns.theirs, ns.their_ip)
        running += [index_a, index_b]
        getter = Lines(
            ns.run(ns.theirs, *CLI, "get", info_hash, "--discovery", "napster",
                   "--bootstrap", url_b, "--lsd", "--bind", ns.their_ip, "-o",
                   str(tmp_path / "got"), "--json", "--timeout", "60",
                   "--state-dir", str(tmp_path / "state-get"))
        )  # fmt: skip
        running.append(getter)
        getter.wait_for('{"event":"listening"', 15)
        time.sleep(1.0)  # get listens for announces of its info-hash
        sharer = Lines(
            ns.run(ns.ours, *CLI, "share", str(folder), "--discovery", "napster",
                   "--bootstrap", url_a, "--lsd", "--bind", ns.our_ip, "--no-ui",
                   "--state-dir", str(tmp_path / "state-share"))
        )  # fmt: skip
        running.append(sharer)
        sharer.wait_for("listening on", 15)
        getter.wait_for('{"event":"completed"', 60)
        assert getter.proc.wait(30) == 0
    finally:
        for proc in reversed(running):
            proc.stop()
    assert (tmp_path / "got" / "lan file.bin").read_bytes() == data.read_bytes()
    events = [json.loads(x) for x in getter.lines if x.startswith("{")]
    # The only peer: the sharer, at its namespace's address.
    peers = {e["peer"] for e in events if e["event"] == "peer_connected"}
    assert peers and all(p.startswith(ns.our_ip + ":") for p in peers), peers


@pytest.mark.parametrize("command", ["get", "share"])
def test_get_and_share_take_lsd(tmp_path: Path, command: str) -> None:
    text = " ".join(
        subprocess.run([*CLI, command, "--help"], capture_output=True, text=True).stdout.split()
    )
    assert "--lsd local service discovery: find peers on the LAN" in text
    # A flag takes no value: one line, exit 2.
    where = ["0" * 40] if command == "get" else [str(tmp_path)]
    r = subprocess.run(
        [*CLI, command, *where, "--discovery", "napster", "--bootstrap", "http://127.0.0.1:9/",
         "--lsd=yes"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--lsd" in r.stderr, r.stderr
