"""UDP trackers (BEP 15) on 127.0.0.1 with real parts: our client against Debian's
opentracker and against ``torrentkit tracker``; a libtorrent leecher and an aria2c leecher
announcing to our UDP tracker and finding our seeder.

Every torrent here names one tracker, a ``udp://`` URL, and nobody is told a peer's address
directly: the peers meet through the UDP tracker or not at all. DHT, LSD, PEX, UPnP and
NAT-PMP are off everywhere, except aria2's DHT: aria2 speaks to UDP trackers only with its
DHT on (``--enable-dht``: "It also enables UDP tracker support"; checked below: with it off,
aria2 never sends a datagram to the tracker). It gets a DHT bound to 127.0.0.1, a fresh
routing-table file and one loopback entry point (a socket of the test's that never answers).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.conftest import require_binary
from tests.interop.ours import our_download, our_seed
from tests.interop.peers import (
    LOOPBACK,
    MiB,
    TrackerProcess,
    aria2c,
    free_port,
    libtorrent_session,
    lt_add,
    lt_info_hash,
    lt_wait_finished,
    make_payload,
    make_test_torrent,
    run_tracker,
    stop_process,
    wait_until,
    wait_written,
)
from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceRequest,
    TrackerFailure,
)
from torrentkit.discovery.tracker.udp_client import UdpTrackerClient
from torrentkit.ids import InfoHash, PeerAddr

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def _seeded(tmp_path: Path, url: str, size: int) -> tuple[Path, Path, bytes]:
    payload = make_payload(tmp_path / "seed" / "payload.bin", size)
    torrent = make_test_torrent(payload, url, tmp_path / "payload.torrent")
    return payload, torrent, lt_info_hash(torrent)


@contextlib.contextmanager
def opentracker(tmp_path: Path, whitelist: list[bytes]) -> Iterator[tuple[str, str]]:
    """Debian's opentracker on 127.0.0.1 (HTTP and UDP ports), serving ``whitelist`` (its
    Debian build serves only whitelisted torrents). Yields (http URL, udp URL)."""
    exe = require_binary("opentracker")
    folder = tmp_path / "opentracker"
    folder.mkdir()
    listed = [*whitelist, _PROBE]
    (folder / "whitelist.txt").write_text("".join(h.hex() + "\n" for h in listed))
    http_port = free_port()
    udp_port = free_udp_port()
    cmd = [exe, "-i", LOOPBACK, "-p", str(http_port), "-P", str(udp_port)]
    cmd += ["-d", str(folder), "-w", "whitelist.txt"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, f"opentracker exited with {proc.returncode}"
            try:
                socket.create_connection((LOOPBACK, http_port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "opentracker did not listen"
                time.sleep(0.05)
        # It reads the whitelist in a thread of its own after it starts listening; until
        # then every torrent is unlisted, and its UDP side answers such an announce with a
        # bare 8-byte reply. Wait until the probe torrent (listed, used nowhere else) is
        # served.
        wait_until(lambda: _whitelist_loaded(http_port), 10, "opentracker's whitelist")
        yield (
            f"http://{LOOPBACK}:{http_port}/announce",
            f"udp://{LOOPBACK}:{udp_port}/announce",
        )
    finally:
        stop_process(proc)


#: An info-hash only the whitelist-loaded probe announces.
_PROBE = bytes(range(100, 120))


def _whitelist_loaded(http_port: int) -> bool:
    ih = urllib.parse.quote_from_bytes(_PROBE)
    url = (
        f"http://{LOOPBACK}:{http_port}/announce?info_hash={ih}&peer_id=-PROBE-0000000000000"
        "&port=1&uploaded=0&downloaded=0&left=1&compact=1&numwant=0"
    )
    with urllib.request.urlopen(url, timeout=5) as reply:
        return b"not authorized" not in reply.read()


def _request(ih: bytes, n: int, *, left: int = 1) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=InfoHash(ih),
        peer_id=f"-TK0001-{n:012d}".encode(),
        port=7000 + n,
        left=left,
        event=AnnounceEvent.STARTED,
        numwant=50,
        key=b"%08x" % n,
    )


def _swarm_through(tmp_path: Path, url: str, size: int = 2 * MiB) -> tuple[bytes, str]:
    """Our seeder and our leecher, one torrent whose only tracker is ``url``: the leecher
    must finish byte-identical. Returns (info-hash, the leecher's stderr)."""
    payload, torrent, ih = _seeded(tmp_path, url, size)
    logs = tmp_path / "logs"
    with (
        our_seed(torrent, payload.parent, logs=logs, state_dir=tmp_path / "s1"),
        our_download(
            torrent, tmp_path / "leech", logs=logs, state_dir=tmp_path / "s2", timeout=60
        ) as leecher,
    ):
        assert leecher.wait(70) == 0, leecher.logs()
        assert (tmp_path / "leech" / "payload.bin").read_bytes() == payload.read_bytes()
        found = [e for e in leecher.events() if e["event"] == "peers_found"]
        assert not any(e["event"] == "tracker_error" for e in leecher.events())
    return ih, leecher.stderr.read_text(errors="replace") + str(found)


def test_our_client_against_opentracker(tmp_path: Path) -> None:
    ih = bytes(range(20))
    payload_ih: list[bytes] = []

    async def announces(url: str) -> None:
        client = UdpTrackerClient()
        with trio.fail_after(30):
            for n in range(3):
                reply = await client.announce(url, _request(ih, n, left=0 if n == 0 else 1))
                # opentracker may hand a peer its own address back; nobody else's is missing.
                others = set(reply.peers) - {PeerAddr(LOOPBACK, 7000 + n)}
                assert others == {PeerAddr(LOOPBACK, 7000 + i) for i in range(n)}
            assert (reply.complete, reply.incomplete) == (1, 2)
            counts = await client.scrape(url, [ih])
            assert (counts[InfoHash(ih)].complete, counts[InfoHash(ih)].incomplete) == (1, 2)
            # A torrent not on its whitelist: opentracker's bare 8-byte announce reply is a
            # refusal, reported as a tracker failure.
            with pytest.raises(TrackerFailure, match="refused without a reason"):
                await client.announce(url, _request(bytes(20), 9))

    # The download's info-hash is only known once the torrent exists: make it first.
    payload = make_payload(tmp_path / "seed" / "payload.bin", 2 * MiB)
    probe = make_test_torrent(payload, "udp://127.0.0.1:1/announce", tmp_path / "probe.torrent")
    payload_ih.append(lt_info_hash(probe))
    with opentracker(tmp_path, [ih, payload_ih[0]]) as (_, udp_url):
        trio.run(announces, udp_url)
        (tmp_path / "seed" / "payload.bin").unlink()
        got, _ = _swarm_through(tmp_path, udp_url)
        assert got == payload_ih[0]


def test_our_client_against_torrentkit_tracker_over_udp_only(tmp_path: Path) -> None:
    with run_tracker() as tracker:
        assert tracker.udp_url is not None
        ih, _ = _swarm_through(tmp_path, tracker.udp_url)
        served = tracker.stats()["served"]
        assert served["http"]["announces"] == 0
        # Both started, the leecher's completed, and the stopped of at least one of them.
        assert served["udp"]["announces"] >= 3 and served["udp"]["connects"] >= 2
        # The leecher's completed arrived. (It reads 2, over HTTP as well: our seeder's
        # first announce carries left > 0, before its check, so its left=0 counts too.)
        assert tracker.scrape(ih).get(b"downloaded", 0) >= 1


def test_libtorrent_leecher_finds_our_seeder_through_our_udp_tracker(tmp_path: Path) -> None:
    with run_tracker() as tracker:
        assert tracker.udp_url is not None
        payload, torrent, ih = _seeded(tmp_path, tracker.udp_url, 3 * MiB)
        with our_seed(torrent, payload.parent, logs=tmp_path / "logs", state_dir=tmp_path / "s"):
            wait_until(lambda: tracker.scrape(ih).get(b"complete") == 1, 15, "our seeder")
            with libtorrent_session() as leecher:
                handle = lt_add(leecher, torrent, tmp_path / "lt")
                lt_wait_finished(handle, 40)
                wait_written(tmp_path / "lt" / "payload.bin", payload.read_bytes())
                # Its completed announce came over UDP: the tracker lists it as a seeder.
                wait_until(lambda: _lt_seeding(tracker), 15, "libtorrent's completed announce")
        served = tracker.stats()["served"]
        assert served["http"]["announces"] == 0 and served["udp"]["announces"] >= 3


def _lt_seeding(tracker: TrackerProcess) -> bool:
    peers = tracker.stats()["swarms"][0]["peers"]
    return any(p["peer_id"].startswith("-LT") and p["seeder"] for p in peers)


def _aria2_dht(tmp_path: Path, entry: int) -> list[str]:
    return [
        "--enable-dht=true",
        f"--dht-listen-port={free_udp_port()}",
        f"--dht-entry-point={LOOPBACK}:{entry}",
        f"--dht-file-path={tmp_path / 'aria2-dht.dat'}",
    ]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def test_aria2c_leecher_finds_our_seeder_through_our_udp_tracker(tmp_path: Path) -> None:
    with (
        run_tracker() as tracker,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as entry,  # a DHT node that never answers
    ):
        entry.bind((LOOPBACK, 0))
        assert tracker.udp_url is not None
        payload, torrent, ih = _seeded(tmp_path, tracker.udp_url, 2 * MiB)
        with our_seed(torrent, payload.parent, logs=tmp_path / "logs", state_dir=tmp_path / "s"):
            wait_until(lambda: tracker.scrape(ih).get(b"complete") == 1, 15, "our seeder")
            # aria2 with its DHT off (as every other test runs it) ignores UDP trackers.
            with aria2c(torrent, tmp_path / "no-dht", port=free_port()) as proc:
                time.sleep(4)
                assert proc.poll() is None
            time.sleep(1.1)  # /stats is recomputed at most once a second
            stats = tracker.stats()
            assert not any(p["peer_id"].startswith("A2-") for p in stats["swarms"][0]["peers"])
            before = stats["served"]["udp"]["announces"]  # our seeder's only
            extra = _aria2_dht(tmp_path, entry.getsockname()[1])
            with aria2c(torrent, tmp_path / "aria", port=free_port(), extra=extra) as proc:
                code = proc.wait(40)
            logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("aria2c-*.log"))
            assert code == 0, logs
            assert (tmp_path / "aria" / "payload.bin").read_bytes() == payload.read_bytes()
        time.sleep(1.1)
        served = tracker.stats()["served"]
        # aria2's started, and its completed or stopped; never over HTTP.
        assert served["http"]["announces"] == 0 and served["udp"]["announces"] >= before + 2
