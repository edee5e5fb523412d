"""``torrentkit tracker`` serving UDP (BEP 15) as a real process: flags, one swarm with HTTP,
and ``--workers`` on Redis sharing one UDP port and one connection-id secret."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trio

from tests.interop.peers import TrackerProcess, run_tracker, wait_until
from tests.redis_server import RedisServer
from torrentkit.discovery.tracker.protocol import AnnounceEvent, AnnounceRequest
from torrentkit.discovery.tracker.udp_client import UdpTrackerClient
from torrentkit.ids import InfoHash

IH = InfoHash(b"\x52" * 20)


def _request(n: int, event: AnnounceEvent = AnnounceEvent.STARTED) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=IH, peer_id=f"-TK0001-{n:012d}".encode(), port=7000 + n, left=1, event=event
    )


def _announce_all(url: str, count: int, *, shared: bool) -> list[int]:
    """``count`` peers announce over UDP; how many peers each reply carried."""

    async def main() -> list[int]:
        client = UdpTrackerClient()
        out = []
        for n in range(count):
            c = client if shared else UdpTrackerClient()
            with trio.fail_after(20):
                reply = await c.announce(url, _request(n))
            assert all(p.host == "127.0.0.1" for p in reply.peers)
            out.append(len(reply.peers))
        return out

    return trio.run(main)


def test_no_udp_and_contradicting_flags() -> None:
    with run_tracker("--no-udp") as tracker:
        assert tracker.udp_url is None and "udp://" not in tracker.first_line
    done = subprocess.run(
        [sys.executable, "-m", "torrentkit.cli.main", "tracker", "--no-udp", "--udp-port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--udp-port and --no-udp" in done.stderr


def test_udp_port_flag_and_udp_peers_meet_http_peers() -> None:
    with run_tracker("--udp-port", "0") as tracker:
        assert tracker.udp_url is not None
        assert tracker.udp_url != tracker.announce_url.replace("http://", "udp://")
        assert _announce_all(tracker.udp_url, 5, shared=True) == [0, 1, 2, 3, 4]
        assert tracker.scrape(bytes(IH)) == {b"complete": 0, b"downloaded": 0, b"incomplete": 5}
        served = tracker.stats()["served"]
        assert served["udp"]["announces"] == 5 and served["udp"]["connects"] == 1
        assert served["http"]["scrapes"] == 1 and served["http"]["announces"] == 0


@pytest.mark.slow
def test_workers_share_the_udp_port_and_accept_each_others_connection_ids(
    redis: RedisServer,
) -> None:
    store = f"{redis.url}&prefix=udp{os.getpid()}:"
    with run_tracker("--store", store, "--workers", "3") as tracker:
        assert tracker.udp_url is not None
        wait_until(lambda: _children(tracker) == 3, 10, "three workers")
        # One client: one connect, then every announce from a new socket (a new source port,
        # so the kernel spreads them over the workers), all with that connection id.
        counts = _announce_all(tracker.udp_url, 30, shared=True)
        assert counts == list(range(30))
        # Fresh clients too: their connect and announce may land at different workers.
        # (peers 0-9 again: each gets the 29 others)
        assert _announce_all(tracker.udp_url, 10, shared=False) == [29] * 10
        assert tracker.scrape(bytes(IH))[b"incomplete"] == 30


def _children(tracker: TrackerProcess) -> int:
    pid = tracker.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return len(f.read().split())
