"""Local Service Discovery (BEP 14) against libtorrent, inside network namespaces this test
creates: two namespaces joined by a veth pair with their own addresses (10.213.N.1 and .2,
fdc6:5d:N::1 and ::2) and a multicast route, so the announces never touch the machine's real
interfaces (multicast on loopback does not route). Every participant -- ours and libtorrent
with LSD on -- runs as a subprocess through ``ip netns exec``; the pytest process itself only
starts them (the loopback guard in tests/conftest.py watches it). Needs root and ``ip``,
which CI has.

IPv6: duplicate address detection is off in the namespaces (``accept_dad=0`` before the
veth exists, ``nodad`` on the addresses), so no address is ever 'tentative'; the fixture
waits until each veth has carrier and its ``ff00::/8`` multicast route. Our IPv6 address
``::1`` is *deprecated* and the same veth holds a preferred ``::3``: the kernel's own choice
of source for the group is ``::3``, where we do not listen, so a peer can only reach us if
we send from the address we listen on (IPV6_PKTINFO). The ``decoy`` fixture adds a third
namespace behind a second veth of ours and points the most specific routes for both groups
at it: an announce or a join that leaves the interface to the routing table goes there."""

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
from torrentkit.discovery.lsd.core import (
    HOSTS,
    MULTICAST_HOPS,
    Family,
    encode_announce,
    parse_announce,
)
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
    our_ip6: str  # deprecated: never the kernel's choice of source
    their_ip6: str
    our_other_ip6: str  # preferred, on the same veth; we never listen on it
    tag: str

    def addr(self, family: Family, side: str) -> str:
        if side == "ours":
            return self.our_ip if family == "v4" else self.our_ip6
        return self.their_ip if family == "v4" else self.their_ip6

    def run(self, ns: str, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout


def new_namespace(name: str) -> None:
    """``ip netns add`` with IPv6 duplicate address detection off for the interfaces made in
    it afterwards (so their link-local addresses are never 'tentative')."""
    ip("netns", "add", name)
    for conf in ("all", "default"):
        ip("netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0")


def link_up(ns: str, dev: str, *v4_routes: str) -> None:
    ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
    for route in v4_routes:
        ip("-n", ns, "route", "add", route, "dev", dev)


def wait_ready(links: list[tuple[str, str]], timeout: float = 5.0) -> None:
    """Each (namespace, veth) has carrier, its IPv6 multicast route, no tentative address."""
    end = time.monotonic() + timeout
    while True:
        pending = [
            (ns, dev)
            for ns, dev in links
            if f"multicast ff00::/8 dev {dev} "
            not in ip("-n", ns, "-6", "route", "show", "table", "local")
            or "tentative" in ip("-n", ns, "-6", "addr", "show", "dev", dev)
            or "NO-CARRIER" in ip("-n", ns, "link", "show", dev)
        ]
        if not pending:
            return
        if time.monotonic() > end:
            raise AssertionError(f"veths not ready in {timeout} s: {pending}")
        time.sleep(0.05)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    require_binary("ip")
    if os.geteuid() != 0:
        pytest.fail("the LSD test needs root to create network namespaces")
    tag = f"{os.getpid() % 100000}"
    net = f"10.213.{os.getpid() % 250}"
    net6 = f"fdc6:5d:{os.getpid() % 65536:x}:"
    ns = Namespaces(
        f"tklsd{tag}a", f"tklsd{tag}b", f"{net}.1", f"{net}.2",
        f"{net6}:1", f"{net6}:2", f"{net6}:3", tag,
    )  # fmt: skip
    va, vb = f"tkl{tag}a", f"tkl{tag}b"
    try:
        new_namespace(ns.ours)
        new_namespace(ns.theirs)
        ip("link", "add", va, "netns", ns.ours, "type", "veth",
           "peer", "name", vb, "netns", ns.theirs)  # fmt: skip
        ip("-n", ns.ours, "addr", "add", f"{ns.our_ip6}/64", "dev", va, "nodad",
           "preferred_lft", "0")  # fmt: skip
        ip("-n", ns.ours, "addr", "add", f"{ns.our_other_ip6}/64", "dev", va, "nodad")
        ip("-n", ns.theirs, "addr", "add", f"{ns.their_ip6}/64", "dev", vb, "nodad")
        for name, dev, addr in ((ns.ours, va, ns.our_ip), (ns.theirs, vb, ns.their_ip)):
            ip("-n", name, "link", "set", "lo", "up")
            ip("-n", name, "addr", "add", f"{addr}/24", "dev", dev)
            link_up(name, dev, "224.0.0.0/4")
        wait_ready([(ns.ours, va), (ns.theirs, vb)])
        yield ns
    finally:
        for name in (ns.ours, ns.theirs):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


@pytest.fixture
def decoy(namespaces: Namespaces) -> Iterator[str]:
    """A third namespace behind a second veth of ours, holding the most specific routes for
    both LSD groups (``239.192.152.143/32``; ``multicast ff15::efc0:988f/128`` in the local
    table, which the kernel uses for an IPv6 multicast join or send on interface 0)."""
    ns = namespaces
    name, vd, vc = f"tklsd{ns.tag}c", f"tkl{ns.tag}d", f"tkl{ns.tag}c"
    try:
        new_namespace(name)
        ip("link", "add", vd, "netns", ns.ours, "type", "veth", "peer", "name", vc, "netns", name)
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", ns.ours, "addr", "add", "10.214.0.1/24", "dev", vd)
        ip("-n", name, "addr", "add", "10.214.0.2/24", "dev", vc)
        link_up(ns.ours, vd, "239.192.152.143/32")
        link_up(name, vc, "224.0.0.0/4")
        ip("-n", ns.ours, "-6", "route", "add", "multicast", "ff15::efc0:988f/128", "dev", vd,
           "table", "local")  # fmt: skip
        wait_ready([(ns.ours, vd), (name, vc)])
        yield name
    finally:
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


def libtorrent_peer(ns: Namespaces, listen: str, save: Path, **torrents: list[Path]) -> Lines:
    args = [f"--{role}={t}" for role, paths in torrents.items() for t in paths]
    return Lines(
        ns.run(ns.theirs, sys.executable, str(PEER_SCRIPT), "--listen", listen,
               "--save", str(save), *args)
    )  # fmt: skip


def listen_arg(host: str) -> str:
    return f"[{host}]:0" if ":" in host else f"{host}:0"


OUR_LEECHER = """
import json, sys, trio, torrentkit
async def main():
    settings = torrentkit.Settings(listen=sys.argv[1], lsd=True, trackers=False,
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


OUR_SESSION = """
import json, sys, trio, torrentkit
async def main():
    settings = torrentkit.Settings(listen=sys.argv[1], lsd=True, trackers=False,
                                   state_dir=sys.argv[2], dht=None)
    async with torrentkit.open_session(settings) as session:
        for path in sys.argv[4:]:
            await session.add(open(path, "rb").read(), sys.argv[3])
        print(json.dumps({"listening": session.address.port}), flush=True)
        await trio.sleep_forever()
trio.run(main)
"""

FAMILIES = pytest.mark.parametrize("family", ["v4", "v6"])


def we_find_a_libtorrent_seeder(
    ns: Namespaces, tmp_path: Path, our_listen: str, their_listen: str
) -> None:
    """Ours starts first (its own start-up announce finds nobody; the next is 5 minutes
    away), then libtorrent's seeder: only libtorrent's announce can bring them together,
    so the download proves that we parse it and dial the peer it names."""
    data = make_payload(tmp_path / "seed" / "lan.bin", 600 * 1024 + 3, seed=5)
    torrent = tmp_path / "lan.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=32 * 1024))
    ours = Lines(
        ns.run(ns.ours, sys.executable, "-c", OUR_LEECHER, listen_arg(our_listen), str(torrent),
               str(tmp_path / "dl"), str(tmp_path / "state"))
    )  # fmt: skip
    theirs: Lines | None = None
    try:
        ours.wait_for('{"listening"', 15)
        time.sleep(1.0)  # our announce has gone out to an empty LAN
        theirs = libtorrent_peer(ns, their_listen, data.parent, seed=[torrent])
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


def libtorrent_finds_our_seeder(
    ns: Namespaces, tmp_path: Path, our_bind: str, their_listen: str, *, private: bool,
    shown_as: str,
) -> None:  # fmt: skip
    """libtorrent's leecher starts first, then ours (``seed --lsd --bind our_bind``): our
    start-up announce must reach it (its lsd_peer alert names ``shown_as`` and our port)
    and it downloads from us. A private torrent is never announced (BEP 27): nothing
    reaches it."""
    data = make_payload(tmp_path / "seed" / "lan.bin", 300 * 1024, seed=6)
    torrent = tmp_path / "lan.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=32 * 1024, private=private))
    theirs = libtorrent_peer(ns, their_listen, tmp_path / "dl", leech=[torrent])
    ours: Lines | None = None
    try:
        theirs.wait_for("listening", 15)
        time.sleep(7.0)  # libtorrent's own announce and its repeats (2, 4, 6 s) are over
        ours = Lines(
            ns.run(ns.ours, sys.executable, "-m", "torrentkit.cli.main", "seed", str(torrent),
                   str(data.parent), "--bind", our_bind, "--no-tracker", "--no-dht", "--lsd",
                   "--json", "--state-dir", str(tmp_path / "state"))
        )  # fmt: skip
        port = json.loads(ours.wait_for('{"event":"listening"', 15))["port"]
        if private:
            time.sleep(5)
            assert not [x for x in theirs.lines if x.startswith(("lsd_peer", "finished"))]
        else:
            shown = f"[{shown_as}]" if ":" in shown_as else shown_as
            theirs.wait_for(f"lsd_peer {shown}:{port}", 15)
            theirs.wait_for("finished", 30)
    finally:
        theirs.stop()
        if ours is not None:
            ours.stop()
    if not private:
        assert (tmp_path / "dl" / "lan.bin").read_bytes() == data.read_bytes()


@FAMILIES
def test_we_find_a_libtorrent_seeder_by_its_announce(
    namespaces: Namespaces, decoy: str, tmp_path: Path, family: Family
) -> None:
    """See we_find_a_libtorrent_seeder. Over IPv6 our session listens on its (deprecated)
    ULA address and must have joined the group on that address's veth, not on the decoy
    the group's route points at."""
    ns = namespaces
    we_find_a_libtorrent_seeder(ns, tmp_path, ns.addr(family, "ours"), ns.addr(family, "theirs"))


@pytest.mark.parametrize(
    ("family", "private"),
    [("v4", False), ("v4", True), ("v6", False)],
    ids=["v4-public", "v4-private", "v6-public"],
)
def test_libtorrent_finds_our_cli_seeder_by_our_announce_unless_private(
    namespaces: Namespaces, decoy: str, tmp_path: Path, family: Family, private: bool
) -> None:
    """See libtorrent_finds_our_seeder (IPv6 private: see
    test_announces_exact_bytes_from_our_address_one_hop_our_interface_never_private).
    Over IPv6 libtorrent takes our address from the datagram's source and drops sources
    outside its own /64: only an announce sent from the deprecated address we listen on
    (not the kernel's choice, ::3) on our veth (not the decoy) gets it to dial us."""
    ns = namespaces
    ours = ns.addr(family, "ours")
    libtorrent_finds_our_seeder(
        ns, tmp_path, ours, ns.addr(family, "theirs"), private=private, shown_as=ours
    )


@FAMILIES
def test_announces_exact_bytes_from_our_address_one_hop_our_interface_never_private(
    namespaces: Namespaces, decoy: str, tmp_path: Path, family: Family
) -> None:
    """A session listening on one address, with a public and a private torrent: a bare
    listener across our veth receives exactly one start-up announce in the window (the next
    is 5 minutes away), byte for byte what the core encodes for the public torrent alone,
    with the group's Host header; from the address we listen on; with TTL / hop limit 1
    (MULTICAST_HOPS; nothing routes between the namespaces, so what arrives is what we
    set); and the decoy namespace, where the groups' routes point, hears nothing."""
    ns = namespaces
    torrents = []
    for name, private in (("pub", False), ("priv", True)):
        data = make_payload(tmp_path / "seed" / f"{name}.bin", 20 * 1024, seed=len(name))
        torrent = tmp_path / f"{name}.torrent"
        torrent.write_bytes(make_torrent(data, piece_length=16 * 1024, private=private))
        torrents.append(torrent)
    public = bytes(parse_torrent(torrents[0].read_bytes()).info_hash)
    private_hash = bytes(parse_torrent(torrents[1].read_bytes()).info_hash).hex().encode()
    heard = Lines(ns.run(ns.theirs, sys.executable, str(LISTENER), family))
    leaked = Lines(ns.run(decoy, sys.executable, str(LISTENER), family))
    ours: Lines | None = None
    our_addr = ns.addr(family, "ours")
    try:
        heard.wait_for("ready", 15)
        leaked.wait_for("ready", 15)
        ours = Lines(
            ns.run(ns.ours, sys.executable, "-c", OUR_SESSION, listen_arg(our_addr),
                   str(tmp_path / "state"), str(tmp_path / "dl"), *map(str, torrents))
        )  # fmt: skip
        port = json.loads(ours.wait_for('{"listening"', 15))["listening"]
        heard.wait_for("{", 15)
        time.sleep(1.5)  # room for a wrong second datagram (the private torrent, a repeat)
    finally:
        for lines in (heard, leaked):
            lines.stop()
        if ours is not None:
            ours.stop()
    got = [json.loads(x) for x in heard.lines if x.startswith("{")]
    assert len(got) == 1, got
    raw = got[0]["data"].encode("latin-1")
    msg = parse_announce(raw)
    assert msg is not None and msg.cookie
    assert raw == encode_announce(HOSTS[family], port, [public], msg.cookie)
    assert private_hash not in raw.lower()
    assert got[0]["from"] == our_addr
    assert got[0]["hops"] == MULTICAST_HOPS == 1
    assert [x for x in leaked.lines if x.startswith("{")] == []


def test_wildcard_listen_announces_exact_datagrams_on_both_groups(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    """``seed --lsd`` listening on 0.0.0.0 joins both groups; bare listeners in the other
    namespace receive its start-up announce on each, byte for byte what the core encodes,
    with TTL / hop limit 1. A wildcard leaves interface and source to the kernel: the v4
    one comes from our veth address, the v6 one from the veth's preferred address for a
    site-scope group (the ULA ::3, not the deprecated ::1 nor the link-local one)."""
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
    assert got["v6"]["from"] == ns.our_other_ip6
    for fam in ("v4", "v6"):
        raw = got[fam]["data"].encode("latin-1")
        msg = parse_announce(raw)
        assert msg is not None and msg.cookie
        assert raw == encode_announce(HOSTS[fam], port, [info_hash], msg.cookie)
        assert got[fam]["hops"] == MULTICAST_HOPS


def link_local(ns: str, dev: str) -> str:
    """The veth's link-local address with its scope (``fe80::...%dev``)."""
    out = ip("-n", ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "link")
    return out.split(" inet6 ")[1].split("/")[0] + f"%{dev}"


def link_local_only(ns: Namespaces) -> tuple[str, str]:
    """Their veth keeps only its link-local address (so its announces come from it, as on a
    LAN with no IPv6 prefix); returns (our link-local, their link-local)."""
    theirs_dev = f"tkl{ns.tag}b"
    ip("-n", ns.theirs, "addr", "del", f"{ns.their_ip6}/64", "dev", theirs_dev)
    return link_local(ns.ours, f"tkl{ns.tag}a"), link_local(ns.theirs, theirs_dev)


def test_link_local_we_find_a_libtorrent_seeder(
    namespaces: Namespaces, decoy: str, tmp_path: Path
) -> None:
    """libtorrent listens on its link-local address only: its announce comes from
    ``fe80::...``, which means nothing without the interface. The driver reports the peer
    with the scope the datagram arrived on (``fe80::...%N``), so the engine dials it on our
    veth (not on the decoy, which has a link-local fe80::/64 route of its own)."""
    ns = namespaces
    _, theirs_ll = link_local_only(ns)
    we_find_a_libtorrent_seeder(ns, tmp_path, ns.our_ip6, theirs_ll)


def test_link_local_libtorrent_finds_our_seeder(
    namespaces: Namespaces, decoy: str, tmp_path: Path
) -> None:
    """Both sides on link-local addresses (``seed --bind fe80::...%veth``): libtorrent keeps
    only announces from its own fe80::/64, and our veth also holds ULAs the kernel would
    prefer as the source for a site-scope group; ours must come from the link-local address
    we listen on, on that veth (the scope names it), for libtorrent to dial us. libtorrent
    names our address with its own interface as the scope."""
    ns = namespaces
    ours_ll, theirs_ll = link_local_only(ns)
    shown = ours_ll.split("%")[0] + f"%tkl{ns.tag}b"
    libtorrent_finds_our_seeder(ns, tmp_path, ours_ll, theirs_ll, private=False, shown_as=shown)


# Sends one announce three times, 0.3 s apart (the receiver may still be registering the
# torrent; it reports a peer once per minute however often it hears of it).
SEND_ANNOUNCE = """
import socket, sys, time
family, port, info_hash = sys.argv[1], int(sys.argv[2]), sys.argv[3]
group = "239.192.152.143" if family == "v4" else "ff15::efc0:988f"
host = group if family == "v4" else f"[{group}]"
sock = socket.socket(socket.AF_INET if family == "v4" else socket.AF_INET6, socket.SOCK_DGRAM)
lines = ["BT-SEARCH * HTTP/1.1", f"Host: {host}:6771", f"Port: {port}",
         f"Infohash: {info_hash}", f"cookie: {port}", "", "", ""]
for _ in range(3):
    sock.sendto("\\r\\n".join(lines).encode(), (group, 6771))
    time.sleep(0.3)
"""

# Prints the torrent's known peer count whenever it changes.
OUR_WATCHER = """
import json, sys, trio, torrentkit
async def main():
    settings = torrentkit.Settings(listen=sys.argv[1], lsd=True, trackers=False,
                                   state_dir=sys.argv[2], dht=None)
    async with torrentkit.open_session(settings) as session:
        handle = await session.add(open(sys.argv[3], "rb").read(), sys.argv[4])
        while handle.status().state == "checking":
            await trio.sleep(0.02)
        print(json.dumps({"ready": handle.status().state}), flush=True)
        seen = 0
        while True:
            if handle.status().known_peers != seen:
                seen = handle.status().known_peers
                print(json.dumps({"known_peers": seen}), flush=True)
            await trio.sleep(0.02)
trio.run(main)
"""


@FAMILIES
def test_announces_from_another_interface_are_not_ours(
    namespaces: Namespaces, decoy: str, tmp_path: Path, family: Family
) -> None:
    """A session bound to one address takes announces from that address's link only. Here
    another program on our host has joined the group on the decoy veth (so the kernel
    accepts the group's datagrams there, and Linux hands them to every socket bound to port
    6771 that joined the group anywhere). One announce comes from the decoy namespace, one
    from theirs, for the same torrent: only theirs becomes a peer."""
    ns = namespaces
    data = make_payload(tmp_path / "seed" / "lan.bin", 20 * 1024, seed=13)
    torrent = tmp_path / "lan.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=16 * 1024))
    info_hash = parse_torrent(torrent.read_bytes()).info_hash.hex()
    other = Lines(ns.run(ns.ours, sys.executable, str(LISTENER), family))  # joins on the decoy
    ours: Lines | None = None
    try:
        other.wait_for("ready", 15)
        ours = Lines(
            ns.run(ns.ours, sys.executable, "-c", OUR_WATCHER,
                   listen_arg(ns.addr(family, "ours")), str(tmp_path / "state"), str(torrent),
                   str(tmp_path / "dl"))
        )  # fmt: skip
        ours.wait_for('{"ready"', 15)
        for name, port in ((decoy, "1111"), (ns.theirs, "2222")):
            sent = ns.run(name, sys.executable, "-c", SEND_ANNOUNCE, family, port, info_hash)
            assert sent.wait(10) == 0, sent.stderr.read() if sent.stderr else ""
        ours.wait_for('{"known_peers"', 15)
        time.sleep(1.0)  # room for a second, wrong one
        # the decoy's announce reached the other program: it was sent and delivered
        other.wait_for("{", 5)
    finally:
        other.stop()
        if ours is not None:
            ours.stop()
    assert [json.loads(x)["known_peers"] for x in ours.lines if "known_peers" in x] == [1]
