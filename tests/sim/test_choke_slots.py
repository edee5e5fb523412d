"""Upload slots are never left idle (issue 15 item 1), checked on a whole swarm.

A seed and 8 leechers on the in-memory network under the virtual clock. Every 0.1 s of
virtual time each node is sampled: an upload slot is *empty* while fewer of its peers are
unchoked and interested (the ones that take upload capacity) than ``upload_slots`` plus the
optimistic slot, and *wasted* while that holds and an interested peer waits choked. No slot
may stay wasted for more than a second: a slot that a peer frees by leaving, by losing
interest or by completing must go to a waiting peer at once, not at the next 10 s rechoke.
"""

from __future__ import annotations

import random

import trio
import trio.testing

from torrentkit.engine.torrent import Torrent, TorrentOptions
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent, payload_of, setup_swarm

KIB = 1024
SAMPLE = 0.1
LIMIT = 1.0


def wasted_slots(torrent: Torrent) -> bool:
    """Does ``torrent`` have a free upload slot while an interested peer waits choked?"""
    capacity = torrent.choker.slots + torrent.choker.optimistic_slots
    busy = waiting = 0
    for link in torrent.links:
        conn = link.conn
        if conn.our_handshake is None or not conn.peer_interested:
            continue
        if conn.am_choking:
            waiting += 1
        else:
            busy += 1
    return waiting > 0 and busy < capacity


async def longest_wasted_stretch(
    seed: int, size: int = 1024 * KIB, piece: int = 32 * KIB
) -> tuple[dict[str, float], float]:
    """Run the swarm to the end; per node, the longest time (virtual seconds) a slot stayed
    empty while a peer waited. Also returns how long the swarm took."""
    rng = random.Random(seed)
    info, payload = make_torrent(rng, size, piece)
    net = SimNetwork(rng, latency=0.02)
    longest: dict[str, float] = {}
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            nodes = await setup_swarm(
                nursery,
                net,
                info,
                payload,
                seed_rates=[128 * KIB],
                leecher_rates=[KIB * (8 + 8 * (i % 4)) for i in range(8)],
                rng=rng,
                options=TorrentOptions(upload_slots=4),
                start_gap=0.2,
            )
            start = trio.current_time()
            leechers = [n for n in nodes if not n.seed]
            since: dict[str, float | None] = {n.name: None for n in nodes}
            longest = dict.fromkeys(since, 0.0)
            while not all(n.torrent.is_complete for n in leechers):
                await trio.sleep(SAMPLE)
                now = trio.current_time()
                for node in nodes:
                    began = since[node.name]
                    if wasted_slots(node.torrent):
                        if began is None:
                            since[node.name] = now
                        else:
                            longest[node.name] = max(longest[node.name], now - began)
                    else:
                        since[node.name] = None
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    for node in leechers:
        assert payload_of(node.storage, info) == payload, node.name
    return longest, elapsed


async def test_no_upload_slot_stays_empty_while_a_peer_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for seed in (15, 16):
        longest, _ = await longest_wasted_stretch(seed)
        assert max(longest.values()) <= LIMIT, (seed, longest)
