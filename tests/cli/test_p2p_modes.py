"""Napster, Gnutella and KaZaA modes end to end (issue 7): real processes on loopback.

Each mode: the discovery network (a ``napster-index``, or bare ``node`` processes), a
``share`` of a folder, a ``search`` from elsewhere, a ``get`` of the info-hash it printed --
and the file that lands is byte-identical. libtorrent, given only the info-hash and the
holder's address from the search (ut_metadata on), downloads the file from the sharer too:
underneath every mode is ordinary BitTorrent. Also: private torrents are never published,
the search demos, and bad input (exit 2, one line).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest
import trio

from tests.interop.peers import (
    libtorrent_session,
    lt_wait_finished,
    make_payload,
    read_line,
    stop_process,
    wait_until,
    wait_written,
)
from torrentkit.cli.main import main
from torrentkit.discovery.gnutella import FileEntry, Role
from torrentkit.discovery.gnutella.session_port import open_overlay
from torrentkit.discovery.napster.client import NapsterClient, NapsterPublisher
from torrentkit.discovery.napster.index import SearchQuery, SharedFile
from torrentkit.discovery.napster.server import NapsterIndexThread
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Metainfo, parse_torrent
from torrentkit.net import TrioNetwork

TK = [sys.executable, "-m", "torrentkit.cli.main"]
LOOP = ["--bind", "127.0.0.1"]


# --------------------------------------------------------------------------- helpers


class Procs:
    """Processes this test started; each stopped by PID (SIGTERM) at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], str]:
        proc = subprocess.Popen([*TK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc, read_line(proc, 20)

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        code = stop_process(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        return code


@contextlib.contextmanager
def processes() -> Iterator[Procs]:
    procs = Procs()
    try:
        yield procs
    finally:
        for proc in reversed(procs.procs):
            procs.stop(proc)


def address(first_line: str) -> str:
    words = first_line.split()
    assert words[:2] == ["listening", "on"], first_line
    return words[2]


def tk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TK, *args], capture_output=True, text=True, timeout=timeout)


def search_until_found(args: list[str], want: int, timeout: float = 30) -> list[dict[str, Any]]:
    """``search --json`` again until ``want`` hits come back (the sharer may still be
    publishing or joining)."""
    deadline = time.monotonic() + timeout
    while True:
        r = tk("search", *args, "--json")
        assert r.returncode == 0, r.stderr
        hits = [json.loads(line) for line in r.stdout.splitlines()]
        if len(hits) >= want or time.monotonic() > deadline:
            return hits
        time.sleep(0.5)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder to share: two files in two levels, plus an empty one (never shared)."""
    root = tmp_path / "shared"
    make_payload(root / "Pink Floyd - Echoes.flac", 300_000, seed=1)
    make_payload(root / "iso" / "debian-12.iso", 180_000, seed=2)
    (root / "empty.txt").write_bytes(b"")
    return root


def get_and_compare(
    tmp_path: Path, folder: Path, hit: dict[str, Any], extra: list[str], name: str
) -> None:
    out = tmp_path / f"got-{name}"
    out.mkdir()
    r = tk("get", hit["info_hash"], *extra, "-o", str(out), *LOOP, "--timeout", "40",
           "--state-dir", str(tmp_path / f"state-get-{name}"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("listening on 127.0.0.1:")
    assert "metadata received" in r.stderr
    source = next(folder.rglob(hit["name"]))
    assert (out / hit["name"]).read_bytes() == source.read_bytes()
    assert [p.name for p in out.iterdir()] == [hit["name"]]


def libtorrent_fetches(tmp_path: Path, folder: Path, hit: dict[str, Any]) -> None:
    """libtorrent, given the info-hash and the holder's address only, downloads the file."""
    host, port = hit["peers"][0].rsplit(":", 1)
    out = tmp_path / "lt-out"
    out.mkdir(exist_ok=True)
    with libtorrent_session() as ses:
        ses.add_extension("ut_metadata")
        atp = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{hit['info_hash']}")
        atp.save_path = str(out)
        atp.flags = (
            lt.torrent_flags.disable_dht
            | lt.torrent_flags.disable_lsd
            | lt.torrent_flags.disable_pex
        )
        handle = ses.add_torrent(atp)
        handle.connect_peer((host, int(port)))
        wait_until(lambda: handle.status().has_metadata, 30, "libtorrent to get the metadata")
        assert handle.torrent_file().info_hashes().v1.to_bytes().hex() == hit["info_hash"]
        lt_wait_finished(handle, 30)
        wait_written(out / hit["name"], next(folder.rglob(hit["name"])).read_bytes())


def sharer(procs: Procs, folder: Path, tmp_path: Path, *args: str) -> tuple[Any, str]:
    proc, line = procs.start("share", str(folder), *args, *LOOP, "--no-ui",
                             "--state-dir", str(tmp_path / "state-share"))  # fmt: skip
    return proc, address(line)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.interop
def test_napster_share_search_get_and_libtorrent(tmp_path: Path, folder: Path) -> None:
    before = sorted((p, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))
    with processes() as procs:
        index, line = procs.start("napster-index", *LOOP, "--port", "0")
        url = line.split()[4]
        share, share_addr = sharer(procs, folder, tmp_path, "--discovery", "napster",
                                   "--bootstrap", url)  # fmt: skip
        boot = ["--discovery", "napster", "--bootstrap", url]
        hits = search_until_found(["echoes", *boot], 1)
        assert [(h["name"], h["size"], h["peers"]) for h in hits] == [
            ("Pink Floyd - Echoes.flac", 300_000, [share_addr])
        ]
        # The index's expressiveness, through the CLI: regex, attributes only, sizes.
        regex = tk("search", r"^deb.*\.iso$", "--match", "regex", *boot, "--json")
        assert [json.loads(x)["name"] for x in regex.stdout.splitlines()] == ["debian-12.iso"]
        by_ext = tk("search", "", "--ext", "ISO", *boot, "--json")
        assert [json.loads(x)["name"] for x in by_ext.stdout.splitlines()] == ["debian-12.iso"]
        big = tk("search", "", "--min-size", "200K", *boot)
        assert big.stdout.split("  ")[2] == "Pink Floyd - Echoes.flac", big.stdout
        assert "empty" not in tk("search", "empty", *boot, "--match", "substring").stdout

        get_and_compare(tmp_path, folder, hits[0], boot, "napster")
        libtorrent_fetches(tmp_path, folder, hits[0])

        assert procs.stop(share) == 0  # SIGTERM: leaves the index
        gone = tk("search", "echoes", *boot, "--json")
        assert gone.returncode == 0 and gone.stdout == "" and "no hits" in gone.stderr
        assert procs.stop(index) == 0
    # share wrote nothing into the folder it shares (torrents in memory, state elsewhere).
    after = sorted((p, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))
    assert after == before


@pytest.mark.slow
@pytest.mark.interop
def test_gnutella_share_search_get_and_libtorrent(tmp_path: Path, folder: Path) -> None:
    with processes() as procs:
        _, a = procs.start("node", "--discovery", "gnutella", *LOOP)
        _, b = procs.start("node", "--discovery", "gnutella", *LOOP, "--bootstrap", address(a))
        _, share_addr = sharer(procs, folder, tmp_path, "--discovery", "gnutella",
                               "--bootstrap", address(b))  # fmt: skip
        # Searched two hops away from the sharer: a -> b -> sharer.
        boot = ["--discovery", "gnutella", "--bootstrap", address(a)]
        hits = search_until_found(["ECHOES floyd", *boot, *LOOP, "--wait", "2"], 1)
        assert [(h["name"], h["size"], h["peers"]) for h in hits] == [
            ("Pink Floyd - Echoes.flac", 300_000, [share_addr])
        ]
        assert tk("search", "debian", *boot, *LOOP, "--wait", "2", "--max-size", "1K").stdout == ""
        # The getter joins through the sharer's BitTorrent port itself: overlay links and
        # peer wire connections for torrents share it.
        get_and_compare(tmp_path, folder, hits[0],
                        ["--discovery", "gnutella", "--bootstrap", share_addr, "--name", "echoes"],
                        "gnutella")  # fmt: skip
        libtorrent_fetches(tmp_path, folder, hits[0])


@pytest.mark.slow
@pytest.mark.interop
def test_kazaa_share_search_get_and_reattach(tmp_path: Path, folder: Path) -> None:
    with processes() as procs:
        _, s1 = procs.start("node", "--discovery", "kazaa", "--supernode", *LOOP)
        sn2, s2 = procs.start("node", "--discovery", "kazaa", "--capacity", "10M", *LOOP,
                              "--bootstrap", address(s1))  # fmt: skip
        _, share_addr = sharer(procs, folder, tmp_path, "--discovery", "kazaa",
                               "--bootstrap", address(s2))  # fmt: skip
        boot = ["--discovery", "kazaa", "--bootstrap", address(s1)]
        hits = search_until_found(["debian", *boot, *LOOP, "--wait", "2"], 1)
        assert [(h["name"], h["size"], h["peers"]) for h in hits] == [
            ("debian-12.iso", 180_000, [share_addr])
        ]
        get_and_compare(tmp_path, folder, hits[0], [*boot, "--name", "debian 12"], "kazaa")
        libtorrent_fetches(tmp_path, folder, hits[0])
        # The sharer's first supernode dies: the leaf (attached to both, or re-attaching to
        # the one it learnt of) is still found through the other.
        assert procs.stop(sn2) == 0
        again = search_until_found(["debian", *boot, *LOOP, "--wait", "2"], 1, timeout=40)
        assert [h["peers"] for h in again] == [[share_addr]]


# --------------------------------------------------------------------------- private torrents


def _metas(tmp_path: Path) -> tuple[Metainfo, Metainfo]:
    public = make_payload(tmp_path / "open" / "open track.ogg", 40_000, seed=3)
    private = make_payload(tmp_path / "closed" / "closed track.ogg", 40_000, seed=4)
    return (
        parse_torrent(make_torrent(public, piece_length=16_384)),
        parse_torrent(make_torrent(private, piece_length=16_384, private=True)),
    )


async def test_private_torrents_never_reach_the_index(tmp_path: Path) -> None:
    public, private = _metas(tmp_path)
    assert private.info.private and not public.info.private
    with NapsterIndexThread() as index:
        async with NapsterClient(index.url) as client:
            # The client refuses on its own, before sending anything.
            joined = await client.join(6881)
            entry = SharedFile(name="closed track.ogg", size=40_000,
                               info_hash=private.info_hash, private=True)  # fmt: skip
            reply = await client.publish(joined.session, [entry])
            assert reply.private_skipped == 1 and reply.total == 0
            # A publisher fed both publishes one.
            both = [_shared(public), entry]
            publisher = NapsterPublisher(client, 6882, both)
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    await nursery.start(publisher.run)
                    assert publisher.status.published == 1
                    found = await client.search(SearchQuery(text="track"))
                    assert [h.info_hash for h in found.hits] == [public.info_hash]
                    assert await client.find_peers(InfoHash(private.info_hash)) == ()
                    nursery.cancel_scope.cancel()
        assert index.call(lambda: index.index.stats().entries) == 0  # left on cancel


def _shared(meta: Metainfo) -> SharedFile:
    return SharedFile(name=meta.name, size=meta.info.total_length, info_hash=meta.info_hash)


async def test_private_torrents_never_reach_the_overlay(tmp_path: Path) -> None:
    """The overlay node of a bare search finds only what was published; a session never
    publishes a private torrent (tests/discovery/test_networks.py), and the node here
    publishes what a session publishes for the public one."""
    public, _private = _metas(tmp_path)
    files = [FileEntry(name=public.name, size=public.info.total_length, info_hash=public.info_hash)]
    net = TrioNetwork()
    with trio.fail_after(20):
        async with open_overlay(net, role=Role.PEER, bootstrap=[], bind="127.0.0.1") as holder:
            holder.holder = PeerAddr("127.0.0.1", 6881)
            holder.publish(files)
            async with open_overlay(
                net, role=Role.PEER, bootstrap=[holder.address], bind="127.0.0.1"
            ) as searcher:
                while not searcher.neighbours() or searcher.neighbours()[0].role is None:
                    await trio.sleep(0.01)
                hits = await searcher.search("track", wait=1.0)
        assert [h.info_hash for h in hits] == [public.info_hash]


# --------------------------------------------------------------------------- the demo


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["napster", "gnutella", "kazaa"])
def test_demo_finds_the_file_by_search_then_fetches_it(mode: str) -> None:
    r = tk("demo", "--discovery", mode, "--leechers", "3", "--size", "1M", "--piece-size",
           "32K", "--seed-rate", "2M", "--rechoke", "1", "--timeout", "60", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["discovery"] == mode and summary["finished"]
    assert all(row["verified"] for row in summary["leechers"])
    assert [s["leecher"] for s in summary["searches"]] == ["leecher 1", "leecher 2", "leecher 3"]
    assert {s["name"] for s in summary["searches"]} == {"demo.bin"}
    assert all(s["holders"] for s in summary["searches"])


# --------------------------------------------------------------------------- bad input


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


IH = "ab" * 20
NAP = ["--discovery", "napster", "--bootstrap", "http://x/"]
GNU = ["--discovery", "gnutella", "--bootstrap", "h:1"]
KAZ = ["--discovery", "kazaa", "--bootstrap", "h:1"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["share", "{tmp}/nope", *NAP], "no such folder"),
        (["share", "{file}", *NAP], "not a folder"),
        (["share", "{tmp}", "--discovery", "tracker"], "share works with napster"),
        (["share", "{tmp}", "--discovery", "napster"], "exactly one index URL"),
        (["share", "{tmp}", "--discovery", "napster", "--bootstrap", "1.2.3.4:80"], "index URL"),
        (["share", "{tmp}", *NAP, "--supernode"], "for --discovery kazaa"),
        (["share", "{tmp}", "--discovery", "gnutella", "--bootstrap", "http://x/"], "HOST:PORT"),
        (["share", "{tmp}", "--discovery", "gnutella", "--bootstrap", "h:0"], "--bootstrap"),
        (["share", "{tmp}", "--discovery", "kazaa"], "--bootstrap"),
        (["share", "{tmp}", *KAZ, "--capacity", "fast"], "--capacity"),
        (["share", "{tmp}", *GNU, "--port", "70000"], "--port"),
        (["share", "{tmp}", *GNU, "--piece-size", "3K"], "--piece-size"),
        (["share", "{empty}", *GNU], "no files to share"),
        (["share", "{tmp}", "--discovery", "bittorrent"], "invalid choice"),
        (["search", "x", "--discovery", "chord", "--bootstrap", "h:1"], "not files by name"),
        (["search", "x", *GNU, "--match", "regex"], "match words only"),
        (["search", "  ", *KAZ], "at least one word"),
        (["search", "x", *GNU, "--wait", "0"], "--wait"),
        (["search", "x", "--discovery", "gnutella"], "--bootstrap"),
        (["search", "x", *NAP, "--ext", "m p3"], "--ext"),
        (["search", "x", *NAP, "--min-size", "2M", "--max-size", "1M"], "--min-size"),
        (["search", "", *NAP], "empty query"),
        (["search", "x", *NAP, "--match", "glob"], "invalid choice"),
        (["get", "xyz", *NAP], "INFO_HASH"),
        (["get", IH, *GNU], "--name"),
        (["get", IH, *KAZ, "--name", "  "], "--name"),
        (["get", IH, "--discovery", "napster", "--bootstrap", "ftp://x/"], "index URL"),
        (["get", IH, *NAP, "--timeout", "-1"], "--timeout"),
        (["get", IH, *NAP, "-o", "{file}"], "not a folder"),
        (["get", IH, "--discovery", "tracker"], "get works with napster"),
        (["node", "--discovery", "napster"], "invalid choice"),
        (["node", "--discovery", "gnutella", "--bootstrap", "nonsense"], "HOST:PORT"),
        (["node", "--discovery", "gnutella", "--supernode"], "for --discovery kazaa"),
        (["node", "--discovery", "kazaa"], "--bootstrap"),
        (["node", "--discovery", "kazaa", "--supernode", "--port", "-1"], "--port"),
        (["demo", "--discovery", "bittorrent"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    (tmp_path / "a file").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "zero").write_bytes(b"")
    fields = {"tmp": str(tmp_path), "file": str(tmp_path / "a file"),
              "empty": str(tmp_path / "empty")}  # fmt: skip
    code, err = run_main([a.format(**fields) for a in args], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_unreachable_index_exits_1_and_unusable_address_2(tmp_path: Path) -> None:
    """As processes: one line, no traceback; a dead index is a run-time failure (1), an
    address we cannot listen on is bad input (2)."""
    dead = f"http://127.0.0.1:{_closed_port()}/"
    r = tk("search", "x", "--discovery", "napster", "--bootstrap", dead)
    assert r.returncode == 1 and "napster index" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = tk("node", "--discovery", "gnutella", "--bind", "203.0.113.1")
    assert r.returncode == 2 and "cannot listen on 203.0.113.1" in r.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_node_prints_its_address_and_stops_cleanly() -> None:
    with processes() as procs:
        node, line = procs.start("node", "--discovery", "kazaa", "--supernode", *LOOP)
        assert line.startswith("listening on 127.0.0.1:")
        node.send_signal(signal.SIGINT)
        assert node.wait(10) == 130
        other, _ = procs.start("node", "--discovery", "gnutella", *LOOP)
        assert procs.stop(other) == 0
