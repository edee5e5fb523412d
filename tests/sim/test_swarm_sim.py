"""Whole swarms on the in-memory network under the virtual clock (issue 4 item 9).

The production engine (session, torrent, picker, choker, peer wire) and the real tracker
client run unchanged; only transports are swapped (SimNetwork for peers, an in-memory httpx
transport in front of the pure tracker core). Trio shuffles the order of
runnable tasks, so runs are not bit-for-bit identical: the assertions are about outcomes and
invariants with margins, not traces.
"""

from __future__ import annotations

import random
import statistics

import pytest
import trio
import trio.testing

from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import TorrentOptions
from torrentkit.events import OptimisticUnchoke
from torrentkit.ids import InfoHash
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import SimTracker, make_torrent, payload_of, setup_swarm
from torrentkit.wire.peer_id import generate_peer_id

KIB = 1024


async def test_the_real_tracker_client_announces_through_memory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Peers meet only through the tracker: started, completed and stopped reach its state."""
    rng = random.Random(9)
    info, payload = make_torrent(rng, 256 * KIB, 16 * KIB)
    net = SimNetwork(rng, latency=0.01)
    tracker = SimTracker(rng)
    key = InfoHash(info.info_hash)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nodes = await setup_swarm(
                nursery,
                net,
                info,
                payload,
                seed_rates=[64 * KIB],
                leecher_rates=[16 * KIB] * 2,
                rng=rng,
                tracker=tracker,
            )
            for node in nodes[1:]:
                await node.torrent.complete.wait()
            await trio.sleep(1)  # the completed announces
            counts = tracker.state.scrape([key])[key]
            nursery.cancel_scope.cancel()
    for node in nodes[1:]:
        assert payload_of(node.storage, info) == payload, node.name
        # The tracker found them; peer exchange may have told of some first.
        assert "tracker" in set(node.torrent.peers.sources().values()) <= {"tracker", "pex"}
    assert (counts.complete, counts.incomplete, counts.downloaded) == (3, 0, 2)
    # Every node told the tracker it stopped on the way out.
    assert tracker.state.scrape([key])[key].complete == 0
    assert tracker.announces >= 3 + 2 + 3  # started, completed, stopped


@pytest.mark.slow
async def test_seed_and_20_leechers_with_mixed_upload_rates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(2026)
    size, piece = 2 * 1024 * KIB, 32 * KIB
    info, payload = make_torrent(rng, size, piece)
    net = SimNetwork(rng, latency=0.02)
    seed_rate = 32 * KIB
    rates = [KIB * (2 + (i % 5) * 4) for i in range(20)]  # 2, 6, 10, 14, 18 KiB/s, 4 each
    coverage_at: list[float] = []
    spread_at_first_finish: list[int] = []
    with trio.fail_after(3 * 3600):
        async with trio.open_nursery() as nursery:
            nodes = await setup_swarm(
                nursery, net, info, payload, seed_rates=[seed_rate], leecher_rates=rates, rng=rng
            )
            start = trio.current_time()
            leechers = [n for n in nodes if not n.seed]

            def counts() -> list[int]:
                return [
                    sum(n.torrent.picker.have(i) for n in leechers) for i in range(info.num_pieces)
                ]

            async def watch() -> None:
                while not coverage_at or not spread_at_first_finish:
                    await trio.sleep(1)
                    c = counts()
                    if not coverage_at and min(c) >= 1:
                        coverage_at.append(trio.current_time() - start)
                    if not spread_at_first_finish and any(n.torrent.is_complete for n in leechers):
                        spread_at_first_finish.append(min(c))

            nursery.start_soon(watch)
            for node in leechers:
                await node.torrent.complete.wait()
            nursery.cancel_scope.cancel()

    # Everyone finished with the right bytes.
    for node in leechers:
        assert payload_of(node.storage, info) == payload, node.name
        assert node.torrent.completed_at is not None

    # Rarest first spreads what the seed uploads: the leechers together hold a full copy
    # soon after the seed could have sent one (64 pieces at 1 piece/s), and by the time the
    # first leecher is done, no piece is held by fewer than two leechers.
    ideal = size / seed_rate
    assert coverage_at and coverage_at[0] <= 3 * ideal, coverage_at
    assert spread_at_first_finish and spread_at_first_finish[0] >= 2, spread_at_first_finish

    # Tit-for-tat: the fastest uploaders finish sooner than the slowest.
    finish = {
        r: statistics.mean(n.torrent.completed_at - start for n in leechers if n.upload_rate == r)  # type: ignore[operator]
        for r in set(rates)
    }
    assert finish[18 * KIB] < finish[2 * KIB]
    assert statistics.mean([finish[14 * KIB], finish[18 * KIB]]) < statistics.mean(
        [finish[2 * KIB], finish[6 * KIB]]
    )


async def _one_seed_twenty_peers(
    upload_slots: int, minutes: int
) -> tuple[list[float], list[float], float, list[int]]:
    """A slow seed and 20 peers that know only the seed, for ``minutes`` simulated minutes.
    Returns each peer's optimistic and total unchoked seconds as the seed gave them, the
    time elapsed, and each peer's count of optimistic turns begun."""
    rng = random.Random(7)
    info, payload = make_torrent(rng, 4 * 1024 * KIB, 64 * KIB)
    net = SimNetwork(rng, latency=0.02)
    async with trio.open_nursery() as nursery:
        # 1 KiB/s: nobody can finish, so every peer stays interested the whole time.
        nodes = await setup_swarm(
            nursery,
            net,
            info,
            payload,
            seed_rates=[1 * KIB],
            leecher_rates=[],
            rng=rng,
            options=TorrentOptions(max_peers=60, upload_slots=upload_slots),
        )
        seed = nodes[0]
        peer_ids = []
        for n in range(20):
            host = f"127.2.0.{n + 1}"
            session = Session(
                net.view(host),
                SessionOptions(bind=host, port=6881, peer_id=generate_peer_id(rng)),
                rng=random.Random(rng.random()),
            )
            await nursery.start(session.run)
            torrent = await session.add_torrent(info, MemoryStorage(info))
            torrent.add_peers([seed.session.address], "test")
            peer_ids.append(session.peer_id)
        start = trio.current_time()
        await trio.sleep(minutes * 60)
        given = seed.torrent.unchoked_seconds(trio.current_time())
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    optimistic = [given.get(pid, (0.0, 0.0))[1] for pid in peer_ids]
    total = [given.get(pid, (0.0, 0.0))[0] for pid in peer_ids]
    begun = [e.peer.rpartition(":")[0] for e in seed.events if isinstance(e, OptimisticUnchoke)]
    turns = [begun.count(f"127.2.0.{n + 1}") for n in range(20)]
    return optimistic, total, elapsed, turns


@pytest.mark.slow
async def test_optimistic_unchoke_time_is_shared_evenly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """libtorrent's simulation/test_optimistic_unchoke: 20 interested peers for 30 simulated
    minutes with only the optimistic slot; each peer ends near the average (90 s)."""
    with trio.fail_after(3600):
        optimistic, _, elapsed, _ = await _one_seed_twenty_peers(upload_slots=0, minutes=30)
    mean = statistics.mean(optimistic)
    assert sum(optimistic) >= 0.95 * elapsed  # the slot was never left empty
    assert 80 <= mean <= 95
    assert all(abs(o - mean) <= 31 for o in optimistic), optimistic  # within one 30 s turn


@pytest.mark.slow
async def test_seed_slots_rotate_evenly(autojump_clock: trio.testing.MockClock) -> None:
    """With the default 4 seed slots (round robin) plus the optimistic one, every peer gets
    about the same unchoked time, and an optimistic turn of its own."""
    with trio.fail_after(3600):
        optimistic, total, elapsed, turns = await _one_seed_twenty_peers(upload_slots=4, minutes=30)
    mean = statistics.mean(total)
    assert sum(total) >= 0.95 * 5 * elapsed  # five slots, always filled
    assert all(abs(t - mean) <= 0.25 * mean for t in total), total
    # Every peer began an optimistic turn. Not "held one >= 25 s": a turn ends early when the
    # peer's round-robin seed turn comes up (promoted, it stays unchoked), and trio's task
    # order (random by design, so runs differ) decides whether a peer's only turn was such
    # a one; a CI run once failed that way.
    assert all(n >= 1 for n in turns), (turns, optimistic)
    assert sum(optimistic) >= 0.9 * elapsed  # the optimistic slot was kept busy
