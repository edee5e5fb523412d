"""Local Service Discovery (BEP 14) against libtorrent, inside network namespaces this test
creates: two namespaces joined by a veth pair with their own addresses (10.213.N.1 and .2)
and a multicast route, so the announces never touch the machine's real interfaces (multicast
on loopback does not route). Every participant -- ours and libtorrent with LSD on -- runs as
a subprocess through ``ip netns exec``; the pytest process itself only starts them (the
loopback guard in tests/conftest.py watches it). Needs root and ``ip``, which CI has."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.interop.peers import make_payload
from torrentkit.discovery.lsd.core import encode_announce, parse_announce
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent

pytestmark = pytest.mark.interop

PEER_SCRIPT = Path(__file__).with_name("lsd_libtorrent_peer.py")
LISTENER = Path(__file__).with_name("lsd_listener.py")


@dataclass
class Namespaces:
    ours: str  # namespace name
    theirs: str
    our_ip: str
    their_ip: str

    def run(self, ns: str, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    require_binary("ip")
    if os.geteuid() != 0:
        pytest.fail("the LSD test needs root to create network namespaces")
    tag = f"{os.getpid() % 100000}"
    net = f"10.213.{os.getpid() % 250}"
    ns = Namespaces(f"tklsd{tag}a", f"tklsd{tag}b", f"{net}.1", f"{net}.2")
    va, vb = f"tkl{tag}a", f"tkl{tag}b"
    ip("netns", "add", ns.ours)
    try:
        ip("netns", "add", ns.theirs)
        ip("link", "add", va, "netns", ns.ours, "type", "veth",
           "peer", "name", vb, "netns", ns.theirs)  # fmt: skip
        for name, dev, addr in ((ns.ours, va, ns.our_ip), (ns.theirs, vb, ns.their_ip)):
            ip("-n", name, "link", "set", "lo", "up")
            ip("-n", name, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", name, "link", "set", dev, "up", "multicast", "on")
            ip("-n", name, "route", "add", "224.0.0.0/4", "dev", dev)
        yield ns
    finally:
        for name in (ns.ours, ns.theirs):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


@dataclass
class Lines:
    """A subprocess's stdout lines, collected on a thread."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, prefix: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None and not any(x.startswith(prefix) for x in self.lines):
                break
            time.sleep(0.05)
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"no {prefix!r} line in {timeout} s: {self.lines} {err[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def libtorrent_peer(ns: Namespaces, save: Path, **torrents: list[Path]) -> Lines:
    args = [f"--{role}={t}" for role, paths in torrents.items() for t in paths]
    return Lines(
        ns.run(ns.theirs, sys.executable, str(PEER_SCRIPT), "--listen", ns.their_ip,
               "--save", str(save), *args)
    )  # fmt: skip


OUR_LEECHER = """
import json, sys, trio, torrentkit
async def main():
    settings = torrentkit.Settings(listen=sys.argv[1] + ":0", lsd=True, trackers=False,
                                   state_dir=sys.argv[4], dht=None)
    async with torrentkit.open_session(settings) as session:
        print(json.dumps({"listening": session.address.port}), flush=True)
        handle = await session.add(open(sys.argv[2], "rb").read(), sys.argv[3])
        with trio.fail_after(60):
            await handle.wait_complete()
        s = handle.status()
        print(json.dumps({"complete": s.progress, "known_peers": s.known_peers}), flush=True)
trio.run(main)
"""


def test_we_find_a_libtorrent_seeder_by_its_announce(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    """Ours starts first (its own start-up announce finds nobody; the next is 5 minutes
    away), then libtorrent's seeder: only libtorrent's announce can bring them together,
    so the download proves that we parse it and dial the peer it names."""
    ns = namespaces
    data = make_payload(tmp_path / "seed" / "lan.bin", 600 * 1024 + 3, seed=5)
    torrent = tmp_path / "lan.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=32 * 1024))
    ours = Lines(
        ns.run(ns.ours, sys.executable, "-c", OUR_LEECHER, ns.our_ip, str(torrent),
               str(tmp_path / "dl"), str(tmp_path / "state"))
    )  # fmt: skip
    theirs: Lines | None = None
    try:
        ours.wait_for('{"listening"', 15)
        time.sleep(1.0)  # our announce has gone out to an empty LAN
        theirs = libtorrent_peer(ns, data.parent, seed=[torrent])
        theirs.wait_for("listening", 15)
        done = json.loads(ours.wait_for('{"complete"', 60))
    finally:
        ours.stop()
        if theirs is not None:
            theirs.stop()
    assert done["complete"] == 1.0
    # Its only known peer came from LSD (no tracker, no --peer).
    assert done["known_peers"] == 1
    assert (tmp_path / "dl" / "lan.bin").read_bytes() == data.read_bytes()


@pytest.mark.parametrize("private", [False, True], ids=["public", "private"])
def test_libtorrent_finds_our_cli_seeder_by_our_announce_unless_private(
    namespaces: Namespaces, tmp_path: Path, private: bool
) -> None:
    """libtorrent's leecher starts first, then ours (``seed --lsd``): our start-up announce
    must reach it (its lsd_peer alert names our address and port) and it downloads from
    us. A private torrent is never announced (BEP 27): nothing reaches it."""
    ns = namespaces
    data = make_payload(tmp_path / "seed" / "lan.bin", 300 * 1024, seed=6)
    torrent = tmp_path / "lan.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=32 * 1024, private=private))
    theirs = libtorrent_peer(ns, tmp_path / "dl", leech=[torrent])
    ours: Lines | None = None
    try:
        theirs.wait_for("listening", 15)
        time.sleep(7.0)  # libtorrent's own announce and its two repeats are over
        ours = Lines(
            ns.run(ns.ours, sys.executable, "-m", "torrentkit.cli.main", "seed", str(torrent),
                   str(data.parent), "--bind", ns.our_ip, "--no-tracker", "--no-dht", "--lsd",
                   "--json",
                   "--state-dir", str(tmp_path / "state"))
        )  # fmt: skip
        port = json.loads(ours.wait_for('{"event":"listening"', 15))["port"]
        if private:
            time.sleep(5)
            assert not [x for x in theirs.lines if x.startswith(("lsd_peer", "finished"))]
        else:
            theirs.wait_for(f"lsd_peer {ns.our_ip}:{port}", 15)
            theirs.wait_for("finished", 30)
    finally:
        theirs.stop()
        if ours is not None:
            ours.stop()
    if not private:
        assert (tmp_path / "dl" / "lan.bin").read_bytes() == data.read_bytes()


def test_wildcard_listen_announces_exact_datagrams_on_both_groups(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    """``seed --lsd`` listening on 0.0.0.0 joins both groups; bare listeners in the other
    namespace receive its start-up announce on each, byte for byte what the core encodes
    (the v4 one from our veth address, the v6 one from its link-local address)."""
    ns = namespaces
    data = make_payload(tmp_path / "seed" / "lan.bin", 40 * 1024, seed=8)
    torrent = tmp_path / "lan.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=16 * 1024))
    info_hash = bytes(parse_torrent(torrent.read_bytes()).info_hash)
    listeners = {
        fam: Lines(ns.run(ns.theirs, sys.executable, str(LISTENER), fam)) for fam in ("v4", "v6")
    }
    ours: Lines | None = None
    try:
        for lines in listeners.values():
            lines.wait_for("ready", 15)
        time.sleep(2.5)  # the veth's IPv6 link-local address leaves its tentative state
        ours = Lines(
            ns.run(ns.ours, sys.executable, "-m", "torrentkit.cli.main", "seed", str(torrent),
                   str(data.parent), "--bind", "0.0.0.0", "--no-tracker", "--no-dht", "--lsd",
                   "--json",
                   "--state-dir", str(tmp_path / "state"))
        )  # fmt: skip
        port = json.loads(ours.wait_for('{"event":"listening"', 15))["port"]
        got = {fam: json.loads(lines.wait_for("{", 15)) for fam, lines in listeners.items()}
    finally:
        for lines in listeners.values():
            lines.stop()
        if ours is not None:
            ours.stop()
    assert got["v4"]["from"] == ns.our_ip
    assert got["v6"]["from"].startswith("fe80:")
    for fam, host in (("v4", "239.192.152.143:6771"), ("v6", "[ff15::efc0:988f]:6771")):
        raw = got[fam]["data"].encode("latin-1")
        msg = parse_announce(raw)
        assert msg is not None and msg.cookie
        assert raw == encode_announce(host, port, [info_hash], msg.cookie)
