"""Real clients meet through tracker processes that share their swarms in a real Redis.

Our seeder announces to ``torrentkit tracker --store redis://... --workers 2`` (two processes
behind one port). One libtorrent leecher announces to that same port; a second one to a
separate tracker process on another port, which shares nothing with the first but Redis, so
it can only find the seeder through the Redis store. DHT, LSD, PEX, UPnP and NAT-PMP are off
in libtorrent (tests/interop/peers.py); our client runs with its defaults, none of which find
peers on their own: the trackers are the only way to meet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.ours import our_seed
from tests.interop.peers import (
    MiB,
    libtorrent_session,
    lt_add,
    lt_info_hash,
    lt_wait_finished,
    make_payload,
    make_test_torrent,
    run_tracker,
    wait_until,
    wait_written,
)
from tests.redis_server import redis_server, tracker_workers

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def test_libtorrent_leechers_find_our_seeder_through_tracker_processes_on_one_redis(
    tmp_path: Path,
) -> None:
    with (
        redis_server(tmp_path / "redis-dir", unix=True) as redis,
        run_tracker("--store", redis.url, "--workers", "2", "--no-udp") as pair,
        run_tracker("--store", redis.url, "--no-udp") as lone,
    ):
        wait_until(lambda: len(tracker_workers(pair.proc.pid)) == 2, 10, "two tracker workers")
        payload = make_payload(tmp_path / "seed" / "payload.bin", 3 * MiB)
        # One info dictionary, announced to two trackers: the same info-hash.
        to_pair = make_test_torrent(payload, pair.announce_url, tmp_path / "pair.torrent")
        to_lone = make_test_torrent(payload, lone.announce_url, tmp_path / "lone.torrent")
        ih = lt_info_hash(to_pair)
        assert lt_info_hash(to_lone) == ih
        with our_seed(
            to_pair, payload.parent, logs=tmp_path / "logs", state_dir=tmp_path / "state"
        ) as ours:
            wait_until(lambda: lone.scrape(ih).get(b"complete") == 1, 20, "our seeder's announce")
            # (Our seeder's first announce says left > 0 while it checks its data; the
            # tracker then counts its left=0 as a download, the memory store too.)
            before = pair.scrape(ih)[b"downloaded"]
            with libtorrent_session() as leech_a, libtorrent_session() as leech_b:
                a = lt_add(leech_a, to_pair, tmp_path / "a")
                b = lt_add(leech_b, to_lone, tmp_path / "b")
                lt_wait_finished(a, 40)
                lt_wait_finished(b, 40)
                for name in ("a", "b"):
                    wait_written(tmp_path / name / "payload.bin", payload.read_bytes())
                # Both leechers tell their tracker they completed: counted once each.
                want = {b"complete": 3, b"downloaded": before + 2, b"incomplete": 0}
                wait_until(lambda: pair.scrape(ih) == want, 15, f"{want} (now {pair.scrape(ih)})")
                assert lone.scrape(ih) == want
                swarm = lone.stats()["swarms"][0]
                assert swarm["info_hash"] == ih.hex()
                assert sum(p["peer_id"].startswith("-LT") for p in swarm["peers"]) == 2, swarm
            # The leechers said `stopped` on leaving (to either tracker): gone from both.
            gone = {b"complete": 1, b"downloaded": before + 2, b"incomplete": 0}
            wait_until(lambda: lone.scrape(ih) == gone, 15, "the stopped announces")
            assert pair.scrape(ih) == gone
        assert ours.proc.returncode == 0, ours.logs()
        assert ours.summary()["uploaded"] >= 3 * MiB
