"""Whole overlays on the in-memory network under the virtual clock (issue 7, items 2 and 3).

The production driver and node run unchanged over SimNetwork: every link is a real peer wire
connection (handshake with the overlay info-hash, BEP 10 extension messages). Trio shuffles
runnable tasks, so topologies differ a little from run to run: the assertions are about
outcomes and invariants computed from the topology the run built, not about a fixed trace.
"""

from __future__ import annotations

import random
from collections import deque

import pytest
import trio
import trio.testing

from torrentkit.discovery.gnutella import FileEntry, OverlayConfig, OverlayDriver, Role
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.testing.network import SimNetwork
from torrentkit.wire.peer_id import generate_peer_id

BT_PORT = 6881


def host(i: int) -> str:
    return f"10.7.{i // 200}.{i % 200 + 1}"


def entry(name: str) -> FileEntry:
    return FileEntry(
        name=name, size=len(name) * 1000, info_hash=InfoHash(name.encode().ljust(20)[:20])
    )


class Overlay:
    """Drivers started in one nursery, each in its own cancel scope (so one can be stopped)."""

    def __init__(self, nursery: trio.Nursery, net: SimNetwork, rng: random.Random) -> None:
        self.nursery = nursery
        self.net = net
        self.rng = rng
        self.nodes: list[OverlayDriver] = []
        self.index: dict[PeerAddr, int] = {}

    async def start(
        self, role: Role, bootstrap: list[PeerAddr], config: OverlayConfig
    ) -> OverlayDriver:
        i = len(self.nodes)
        node = OverlayDriver(
            self.net.view(host(i)),
            role=role,
            holder=PeerAddr(host(i), BT_PORT),
            bootstrap=bootstrap,
            peer_id=generate_peer_id(self.rng),
            config=config,
            rng=random.Random(self.rng.random()),
            ping_interval=60.0,
        )
        addr = await self.nursery.start(node.run)
        self.nodes.append(node)
        self.index[addr] = i
        return node

    def graph(self) -> dict[int, set[int]]:
        """Who links to whom (by node number), both ends' views merged."""
        adj: dict[int, set[int]] = {i: set() for i in range(len(self.nodes))}
        for i, node in enumerate(self.nodes):
            for nb in node.neighbours():
                if nb.listen is not None and nb.listen in self.index:
                    j = self.index[nb.listen]
                    adj[i].add(j)
                    adj[j].add(i)
        return adj

    def received(self, kind: str) -> list[int]:
        return [node.counters.received[kind] for node in self.nodes]


def distances(adj: dict[int, set[int]], start: int) -> dict[int, int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


@pytest.mark.slow
async def test_gnutella_50_nodes_ttl_7_finds_what_ttl_1_cannot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(7)
    net = SimNetwork(rng, latency=0.02)
    config = OverlayConfig()  # dial up to 3 neighbours, accept up to 8
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            overlay = Overlay(nursery, net, rng)
            for _ in range(50):
                earlier = [node.address for node in overlay.nodes]
                boot = rng.sample(earlier, min(2, len(earlier)))
                await overlay.start(Role.PEER, boot, config)
                await trio.sleep(0.5)
            await trio.sleep(30)  # refills (every 5 s) and pongs settle the neighbour sets

            adj = overlay.graph()
            degrees = [len(adj[i]) for i in adj]
            edges = sum(degrees) // 2
            assert min(degrees) >= config.target_degree, degrees
            assert 4 <= sum(degrees) / len(degrees) <= 6, degrees
            assert max(degrees) <= config.max_degree
            holder = 0
            dist = distances(adj, holder)
            assert len(dist) == 50, "the overlay is connected"
            assert all(max(distances(adj, i).values()) <= 6 for i in adj), "TTL 7 reaches all"

            ubuntu = entry("ubuntu-24.04-desktop-amd64.iso")
            overlay.nodes[holder].publish([ubuntu])
            far = max(dist, key=lambda i: dist[i])
            near = next(iter(adj[holder]))
            assert dist[far] >= 2

            # TTL 7: found, the hit knows how far it came, and the flood reached every node.
            before = overlay.received("query")
            hits = await overlay.nodes[far].search_hits("Ubuntu ISO", ttl=7, wait=3.0)
            after = overlay.received("query")
            assert [(h.info_hash, h.holder) for h in hits] == [
                (ubuntu.info_hash, PeerAddr(host(holder), BT_PORT))
            ]
            # Equal link latencies: the first copy to reach the holder came a shortest way.
            assert hits[0].hops == distances(adj, far)[holder]
            reached = [i for i in range(50) if after[i] > before[i]]
            assert len(reached) == 49  # everyone but the searcher
            # Every node within TTL - 1 hops forwards to all neighbours but the sender: each
            # link carries the query both ways except the 49 first arrivals' links, once.
            flood = sum(after) - sum(before)
            assert flood == 2 * edges - 49

            # TTL 1: only the searcher's neighbours hear it; the far node finds nothing ...
            before = overlay.received("query")
            assert await overlay.nodes[far].search("ubuntu", ttl=1, wait=3.0) == []
            assert sum(overlay.received("query")) - sum(before) == len(adj[far])
            # ... while a neighbour of the holder does.
            found = await overlay.nodes[near].search("ubuntu", ttl=1, wait=3.0)
            assert [(h.name, h.peers) for h in found] == [
                (ubuntu.name, (PeerAddr(host(holder), BT_PORT),))
            ]

            # The counters agree end to end: every query sent was received by someone.
            assert sum(n.counters.sent["query"] for n in overlay.nodes) == sum(
                overlay.received("query")
            )
            assert sum(n.counters.dropped["outbox_full"] for n in overlay.nodes) == 0
            print(f"gnutella: 50 nodes, {edges} links, {flood} query messages per TTL-7 search")
            nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_kazaa_floods_among_supernodes_only_and_leaves_reattach(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(3)
    net = SimNetwork(rng, latency=0.02)
    sn_config = OverlayConfig(target_degree=4, max_degree=8, max_leaves=40)
    leaf_config = OverlayConfig(leaf_supernodes=1)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            overlay = Overlay(nursery, net, rng)
            for _ in range(5):
                await overlay.start(Role.SUPERNODE, [n.address for n in overlay.nodes], sn_config)
            supernodes = list(range(5))
            for _ in range(40):
                boot = overlay.nodes[rng.choice(supernodes)].address
                await overlay.start(Role.LEAF, [boot], leaf_config)
                await trio.sleep(0.2)
            await trio.sleep(40)
            leaves = list(range(5, 45))

            def supernode_of(leaf: int) -> int:
                (nb,) = overlay.nodes[leaf].neighbours()
                assert nb.role is Role.SUPERNODE and nb.listen is not None
                return overlay.index[nb.listen]

            graph = overlay.graph()
            assert all(graph[s] & set(supernodes) == set(supernodes) - {s} for s in supernodes)
            attached = {leaf: supernode_of(leaf) for leaf in leaves}
            for leaf in leaves:
                overlay.nodes[leaf].publish([entry(f"leaf-{leaf:03d} holiday video")])
            await trio.sleep(1)
            assert sum(overlay.nodes[s].core.index_size() for s in supernodes) == 40

            searcher = leaves[0]
            target = next(x for x in leaves if attached[x] != attached[searcher])
            before_query = overlay.received("query")
            found = await overlay.nodes[searcher].search(f"LEAF-{target:03d} video", wait=3.0)
            assert [h.peers for h in found] == [(PeerAddr(host(target), BT_PORT),)]
            # Queries went leaf -> its supernode -> the other supernodes, never to a leaf: 1 to
            # the supernode, 4 from it, 3 onwards from each of the 4 (full mesh, TTL 7).
            query_messages = [
                a - b for a, b in zip(overlay.received("query"), before_query, strict=True)
            ]
            assert all(query_messages[x] == 0 for x in leaves)
            assert sum(query_messages) == 1 + 4 + 4 * 3
            # ... and leaves hear nothing but hits for their own searches (and no pings).
            for x in leaves:
                counters = overlay.nodes[x].counters
                assert counters.received["query"] == 0
                assert counters.received["ping"] == 0
                assert counters.received["hit"] == (1 if x == searcher else 0), x

            # Stop the target's supernode: its leaves re-attach to the others and re-upload.
            dead = attached[target]
            orphans = [x for x in leaves if attached[x] == dead]
            overlay.nodes[dead].stop()
            await trio.sleep(15)
            for x in orphans:
                now_on = supernode_of(x)
                assert now_on != dead
            assert sum(overlay.nodes[s].core.index_size() for s in supernodes if s != dead) == 40
            found = await overlay.nodes[searcher].search(f"LEAF-{target:03d} video", wait=3.0)
            assert [h.peers for h in found] == [(PeerAddr(host(target), BT_PORT),)]
            nursery.cancel_scope.cancel()
