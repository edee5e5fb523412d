"""The Redis store beyond the shared rules: real tracker processes on one real redis-server.

Two processes share one swarm view; a tracker killed with SIGKILL mid-load and started again
loses no swarm; ``--workers N`` runs N processes on one port and replaces one that dies;
Redis stopped mid-load gives clear failures (HTTP 200, a failure reason; /stats 503), then
recovery when it is back. (The rules themselves: test_tracker_state.py, run on both stores.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.peers import TrackerProcess, run_tracker, wait_until
from tests.redis_server import RedisServer, redis_server, tracker_workers
from torrentkit import bencoding
from torrentkit.discovery.tracker import protocol, redis_store
from torrentkit.discovery.tracker.protocol import AnnounceEvent, AnnounceRequest
from torrentkit.discovery.tracker.redis_store import DOWN_REASON, RETRY_AFTER, RedisStore
from torrentkit.discovery.tracker.state import TrackerConfig
from torrentkit.discovery.tracker.store import StoreUnavailable
from torrentkit.ids import InfoHash

pytestmark = pytest.mark.slow

IH = InfoHash(b"\x31" * 20)
_runs = iter(range(10**6))


def pid(n: int) -> bytes:
    return f"-TK0001-{n:012d}".encode()


def announce(url: str, n: int, info_hash: bytes = IH, **kw: object) -> dict[bytes, object]:
    fields: dict[str, object] = {"info_hash": InfoHash(info_hash), "peer_id": pid(n)}
    fields.update({"port": 6000 + n % 50000, "left": 1, **kw})
    fields["event"] = AnnounceEvent(fields.get("event", ""))
    req = AnnounceRequest(**fields)  # type: ignore[arg-type]
    with urllib.request.urlopen(protocol.announce_url(url, req), timeout=10) as resp:
        assert resp.status == 200
        reply: dict[bytes, object] = bencoding.decode(resp.read())
        return reply


def ports(reply: dict[bytes, object]) -> set[int]:
    peers = reply[b"peers"]
    assert isinstance(peers, bytes)
    return {int.from_bytes(peers[i + 4 : i + 6], "big") for i in range(0, len(peers), 6)}


def store_url(redis: RedisServer) -> str:
    """The session's redis-server under a key prefix of its own."""
    return f"{redis.url}&prefix=p{os.getpid()}x{next(_runs)}:"


def stats_status(tracker: TrackerProcess) -> tuple[int, dict[str, object]]:
    url = f"http://{tracker.host}:{tracker.port}/stats"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_silent_peers_expire_on_announce_without_any_sweeper(redis: RedisServer) -> None:
    """No purge runs here: the announce script itself drops peers that missed two intervals,
    and every key carries an expiry under its prefix."""

    url = store_url(redis)
    prefix = url.rsplit("prefix=", 1)[1]

    async def main() -> None:
        store = RedisStore.from_url(url, TrackerConfig(interval=100))  # timeout 220 s
        try:
            for n, now in ((1, 0.0), (2, 100.0), (3, 200.0)):
                req = AnnounceRequest(info_hash=IH, peer_id=pid(n), port=6000 + n, left=1)
                await store.announce(req, remote_ip="127.0.0.1", now=now)
            req = AnnounceRequest(info_hash=IH, peer_id=pid(4), port=6004, left=1)
            reply = await store.announce(req, remote_ip="127.0.0.1", now=221.0)
            assert {p.port for p in reply.peers} == {6002, 6003}
            assert (reply.complete, reply.incomplete) == (0, 3)
        finally:
            await store.aclose()

    asyncio.run(main())
    reply = redis.command("KEYS", prefix + "*").split(b"\r\n")
    keys = {k.decode() for k in reply[2::2]}  # *N, then $len / key pairs
    assert keys == {f"{prefix}s:{IH.hex()}", f"{prefix}z:{IH.hex()}", f"{prefix}swarms"}
    for key in keys:
        ttl = redis.command("TTL", key)
        assert ttl.startswith(b":") and int(ttl[1:]) > 0, (key, ttl)


def test_two_tracker_processes_serve_one_swarm(redis: RedisServer) -> None:
    url = store_url(redis)
    with run_tracker("--store", url) as a, run_tracker("--store", url) as b:
        assert b.port != a.port
        announce(a.announce_url, 1, event="started")
        reply = announce(b.announce_url, 2, event="started")
        assert ports(reply) == {6001}
        assert ports(announce(a.announce_url, 2, event="started")) == {6001}
        # Peer 2 completes; its client repeats the event to the other process: counted once.
        announce(a.announce_url, 2, left=0, event="completed")
        announce(b.announce_url, 2, left=0, event="completed")
        for t in (a, b):
            assert t.scrape(bytes(IH)) == {b"complete": 1, b"downloaded": 1, b"incomplete": 1}
        # Peer 1 stops at b: gone from both.
        announce(b.announce_url, 1, event="stopped")
        assert ports(announce(a.announce_url, 3, event="started")) == {6002}
        for t in (a, b):
            assert t.scrape(bytes(IH)) == {b"complete": 1, b"downloaded": 1, b"incomplete": 1}
            assert t.stats()["peers"] == 2


def test_concurrent_completions_at_two_processes_count_once(redis: RedisServer) -> None:
    url = store_url(redis)
    with run_tracker("--store", url) as a, run_tracker("--store", url) as b:
        for n in range(20):
            announce(a.announce_url, n, event="started")

        def complete(t: TrackerProcess) -> None:
            for n in range(20):
                announce(t.announce_url, n, left=0, event="completed")

        threads = [threading.Thread(target=complete, args=(t,)) for t in (a, b, a, b)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert b.scrape(bytes(IH)) == {b"complete": 20, b"downloaded": 20, b"incomplete": 0}


class Load:
    """A thread announcing (torrent, peer) pairs in order; records which were answered."""

    def __init__(self, url: str, torrents: int = 20) -> None:
        self.url = url
        self.hashes = [InfoHash(bytes([t + 1]) * 20) for t in range(torrents)]
        self.acked: set[tuple[int, int]] = set()
        self.failures: list[bytes] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            t, peer = n % len(self.hashes), n // len(self.hashes)
            n += 1
            self.sent = n
            try:
                reply = announce(self.url, peer, self.hashes[t], event="started")
            except OSError:
                time.sleep(0.01)  # the tracker is gone (killed): keep trying
                continue
            if b"failure reason" in reply:
                reason = reply[b"failure reason"]
                assert isinstance(reason, bytes)
                self.failures.append(reason)
                time.sleep(0.01)
            else:
                self.acked.add((t, peer))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def retarget(self, url: str) -> None:
        self.url = url


@pytest.fixture
def store(redis: RedisServer) -> Iterator[str]:
    yield store_url(redis)


def test_kill_9_mid_load_and_restart_loses_no_swarm(store: str) -> None:
    with run_tracker("--store", store) as first, Load(first.announce_url) as load:
        wait_until(lambda: len(load.acked) >= 200, 30, "200 answered announces")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        acked = set(load.acked)
        with run_tracker("--store", store) as second:
            load.retarget(second.announce_url)
            for t, h in enumerate(load.hashes):
                want = {peer for (tt, peer) in acked if tt == t}
                got = second.scrape(bytes(h))
                # Every answered announce is there; at most the ones in flight beyond.
                assert got.get(b"incomplete", 0) >= len(want), (t, got, len(want))
            n_before = len(load.acked)
            wait_until(lambda: len(load.acked) > n_before + 50, 30, "the restarted tracker")
    assert load.failures == []


def test_workers_share_one_port_and_a_dead_worker_is_replaced(store: str) -> None:
    with run_tracker("--store", store, "--workers", "2") as tracker:
        wait_until(lambda: len(tracker_workers(tracker.proc.pid)) == 2, 10, "two workers")
        for n in range(40):  # new connections each: the kernel spreads them over both
            reply = announce(tracker.announce_url, n, event="started")
            assert len(ports(reply)) == min(n, 50)
        victim = tracker_workers(tracker.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (
                victim not in tracker_workers(tracker.proc.pid)
                and len(tracker_workers(tracker.proc.pid)) == 2
            ),
            10,
            "a new worker",
        )
        for n in range(40, 60):
            assert len(ports(announce(tracker.announce_url, n, event="started"))) == min(n, 50)
        assert tracker.scrape(bytes(IH))[b"incomplete"] == 60
        children = tracker_workers(tracker.proc.pid)
        tracker.proc.send_signal(signal.SIGTERM)
        assert tracker.proc.wait(15) == 0
        for child in children:
            assert not Path(f"/proc/{child}").exists() or _zombie(child)
        assert tracker.proc.stderr is not None
        err = tracker.proc.stderr.read().decode()
        assert f"worker {victim} ended (signal SIGKILL); starting a new one" in err
        assert "Traceback" not in err


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_workers_are_refused_for_the_memory_store() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "torrentkit.cli.main", "tracker", "--workers", "2"],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "--workers needs --store redis://" in lines[0], lines
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "torrentkit.cli.main",
            "tracker",
            "--store",
            "redis://:x@127.0.0.1:1/zz",
        ],
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert bad.stderr.decode().count("\n") == 1 and b"--store" in bad.stderr
    assert b":x@" not in bad.stderr  # the password is not echoed


def test_redis_stopped_mid_load_gives_clear_failures_then_recovers(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path, unix=True) as own,
        run_tracker("--store", own.url, "--workers", "2") as tracker,
        Load(tracker.announce_url) as load,
    ):
        wait_until(lambda: len(load.acked) >= 100, 30, "100 answered announces")
        assert stats_status(tracker)[0] == 200
        own.stop()
        wait_until(lambda: len(load.failures) >= 20, 30, "failures while Redis is down")
        assert set(load.failures) == {DOWN_REASON.encode()}
        # (A worker may answer from its one-second /stats cache until it tries Redis.)
        answers: list[tuple[int, dict[str, object]]] = []
        wait_until(
            lambda: answers.append(stats_status(tracker)) or answers[-1][0] == 503,
            5,
            "/stats saying the store is down",
        )
        body = answers[-1][1]
        assert body["store"] == "down", body
        assert str(body["error"]).startswith(DOWN_REASON + " (ConnectionError"), body
        assert tracker.proc.poll() is None
        n_before = len(load.acked)
        own.start()  # empty: no persistence here; clients re-announce
        wait_until(lambda: len(load.acked) > n_before + 50, 30, "announces after Redis is back")
        wait_until(lambda: stats_status(tracker)[0] == 200, 10, "/stats after Redis is back")
        load.__exit__()
        tracker.proc.send_signal(signal.SIGTERM)
        assert tracker.proc.wait(15) == 0
        assert tracker.proc.stderr is not None
        err = tracker.proc.stderr.read().decode()
    assert "is down: ConnectionError" in err and "is back" in err, err
    assert "Traceback" not in err


def test_failover_from_a_demoted_primary_to_the_promoted_replica(tmp_path: Path) -> None:
    """The store's URL names a replica (as after a failover, before the name moves): writes
    fail with the failure reason (READONLY), nothing is half-written; once that Redis is
    promoted, announces succeed and find what the old primary had replicated."""
    with (
        redis_server(tmp_path / "primary") as primary,
        redis_server(tmp_path / "replica") as replica,
    ):
        assert replica.command("REPLICAOF", "127.0.0.1", str(primary.port)).startswith(b"+OK")
        wait_until(
            lambda: b"master_link_status:up" in replica.command("INFO", "replication"),
            10,
            "replication",
        )

        async def main() -> None:
            old = RedisStore.from_url(primary.url, TrackerConfig())
            new = RedisStore.from_url(replica.url, TrackerConfig())
            try:
                one = AnnounceRequest(info_hash=IH, peer_id=pid(1), port=6001, left=0)
                await old.announce(one, remote_ip="127.0.0.1", now=time.time())
                two = AnnounceRequest(info_hash=IH, peer_id=pid(2), port=6002, left=1)
                with pytest.raises(StoreUnavailable, match=DOWN_REASON):
                    await new.announce(two, remote_ip="127.0.0.1", now=time.time())
                assert new.down is not None and "ReadOnlyError" in new.down
                assert replica.command("REPLICAOF", "NO", "ONE").startswith(b"+OK")
                await asyncio.sleep(RETRY_AFTER + 0.1)
                reply = await new.announce(two, remote_ip="127.0.0.1", now=time.time())
                assert [p.port for p in reply.peers] == [6001]  # replicated before
                assert (reply.complete, reply.incomplete) == (1, 1)
                assert new.down is None
            finally:
                await old.aclose()
                await new.aclose()

        asyncio.run(main())


def test_redis_out_of_memory_refuses_the_whole_announce(tmp_path: Path) -> None:
    with redis_server(tmp_path / "small") as small:

        async def main() -> None:
            store = RedisStore.from_url(small.url, TrackerConfig())
            try:
                one = AnnounceRequest(info_hash=IH, peer_id=pid(1), port=6001, left=1)
                await store.announce(one, remote_ip="127.0.0.1", now=time.time())
                hkey, zkey = f"tk:s:{IH.hex()}", f"tk:z:{IH.hex()}"

                def swarm() -> tuple[bytes, bytes, bytes]:
                    return (
                        small.command("HLEN", hkey),
                        small.command("ZCARD", zkey),
                        small.command("HGET", hkey, "s"),
                    )

                before = swarm()
                assert before[:2] == (b":5\r\n", b":1\r\n")  # c, a, t + peer 1's two
                assert small.command("CONFIG", "SET", "maxmemory", "1").startswith(b"+OK")
                two = AnnounceRequest(info_hash=IH, peer_id=pid(2), port=6002, left=1)
                with pytest.raises(StoreUnavailable, match=DOWN_REASON):
                    await store.announce(two, remote_ip="127.0.0.1", now=time.time())
                assert store.down is not None and "OutOfMemoryError" in store.down
                assert small.command("CONFIG", "SET", "maxmemory", "0").startswith(b"+OK")
                assert swarm() == before
                await asyncio.sleep(RETRY_AFTER + 0.1)
                reply = await store.announce(two, remote_ip="127.0.0.1", now=time.time())
                assert [p.port for p in reply.peers] == [6001]  # peer 1 intact, 2 now in
                assert (reply.complete, reply.incomplete) == (0, 2)
            finally:
                await store.aclose()

        asyncio.run(main())


def test_purge_walks_a_big_index_a_slice_a_round(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "PURGE_PER_ROUND", 3)

    async def main() -> None:
        store = RedisStore.from_url(store_url(redis), TrackerConfig(interval=100))
        try:
            for t in range(7):  # 7 swarms, one peer each, silent since 0
                h = InfoHash(bytes([0x70 + t]) * 20)
                req = AnnounceRequest(info_hash=h, peer_id=pid(t), port=6000 + t, left=1)
                await store.announce(req, remote_ip="127.0.0.1", now=0.0)
            rounds = [await store.purge(now=1000.0) for _ in range(7)]
            assert max(rounds) <= 3 and sum(rounds) == 7, rounds
            assert (await store.stats()).peers == 0
        finally:
            await store.aclose()

    asyncio.run(main())
