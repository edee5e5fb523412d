"""500 DHT nodes on the virtual clock (torrentkit/testing/dht_sim.py): lookups converge on
the true closest nodes; after 20% of the nodes fail at once, lookups still succeed."""

from __future__ import annotations

import random

from torrentkit.dht.node import AnnounceDone, DhtNode, GetPeersDone, LookupDone
from torrentkit.dht.nodeid import distance
from torrentkit.ids import PeerAddr
from torrentkit.testing.dht_sim import DhtSim

N = 500


def build(n: int, seed: int) -> tuple[DhtSim, list[PeerAddr]]:
    sim = DhtSim(seed=seed)
    return sim, sim.grow(n)


def run_lookups(
    sim: DhtSim, origins: list[PeerAddr], targets: list[bytes]
) -> dict[tuple[PeerAddr, int], LookupDone]:
    ops: dict[tuple[PeerAddr, int], bytes] = {}
    for a, t in zip(origins, targets, strict=True):
        op = sim.call(a, lambda node, now, t=t: node.find_node(t, now))
        ops[(a, op)] = t
    sim.run_for(60.0)
    done: dict[tuple[PeerAddr, int], LookupDone] = {}
    for a in set(origins):
        for ev in sim.take_events(a):
            if isinstance(ev, LookupDone) and (a, ev.op) in ops:
                done[(a, ev.op)] = ev
    assert len(done) == len(ops)  # every lookup ends
    return done


def true_closest(sim: DhtSim, target: bytes, origin: PeerAddr) -> bytes:
    live = [sim.node(a).id for a in sim.alive() if a != origin]
    return min(live, key=lambda i: distance(i, target))


def test_500_nodes_lookups_converge_and_survive_20_percent_failure() -> None:
    sim, addrs = build(N, seed=5)
    rng = random.Random(6)
    # Routing tables filled: far more than k entries each, and bounded.
    sizes = [len(sim.node(a).table) for a in addrs]
    assert min(sizes) >= 8 and sum(sizes) / N > 16

    origins = [rng.choice(addrs) for _ in range(60)]
    targets = [rng.randbytes(20) for _ in origins]
    done = run_lookups(sim, origins, targets)
    exact = sum(
        1
        for (a, _), ev in done.items()
        if ev.ok and ev.nodes[0].id == true_closest(sim, ev.target, a)
    )
    assert exact == len(done)
    hops = [ev.hops for ev in done.values()]
    assert sum(hops) / len(hops) <= 4  # O(log N): about log2(500) / 3 bits per hop

    # Announce, then find the peer from elsewhere.
    ih = rng.randbytes(20)
    sim.call(addrs[3], lambda node, now: node.announce_peer(ih, 4242, now))
    sim.run_for(20.0)
    (ad,) = [e for e in sim.take_events(addrs[3]) if isinstance(e, AnnounceDone)]
    assert ad.ok and ad.stored == 8
    sim.call(addrs[400], lambda node, now: node.get_peers(ih, now))
    sim.run_for(20.0)
    (gp,) = [e for e in sim.take_events(addrs[400]) if isinstance(e, GetPeersDone)]
    assert gp.peers == (PeerAddr(addrs[3].host, 4242),)

    # 20% fail at once, without a word.
    for a in rng.sample(addrs, N // 5):
        sim.kill(a)
    alive = sim.alive()
    origins = [rng.choice(alive) for _ in range(60)]
    targets = [sim.node(rng.choice(alive)).id for _ in origins]
    done = run_lookups(sim, origins, targets)
    found = sum(
        1
        for (a, _), ev in done.items()
        if ev.ok and ev.nodes[0].id == true_closest(sim, ev.target, a)
    )
    assert found == len(done)
    assert sum(ev.timeouts for ev in done.values()) > 0  # they did meet dead nodes
    # The announced peer is still found (copies on 8 nodes; at most a fifth of them died).
    sim.call(alive[7], lambda node, now: node.get_peers(ih, now))
    sim.run_for(20.0)
    (gp,) = [e for e in sim.take_events(alive[7]) if isinstance(e, GetPeersDone)]
    assert PeerAddr(addrs[3].host, 4242) in gp.peers or addrs[3] == alive[7]


def test_node_objects_hold_no_clock_or_socket() -> None:
    """The core is driven only through its API: two nodes wired by hand find each other."""
    a = DhtNode(rng=random.Random(1), now=0.0, external_ip="5.0.0.1")
    b = DhtNode(rng=random.Random(2), now=0.0, external_ip="5.0.0.2")
    pa, pb = PeerAddr("5.0.0.1", 1), PeerAddr("5.0.0.2", 2)
    a.bootstrap([pb], 0.0)
    for _ in range(5):
        for data, dst in a.datagrams_to_send():
            assert dst == pb
            b.receive_datagram(data, pa, 0.1)
        for data, dst in b.datagrams_to_send():
            assert dst == pa
            a.receive_datagram(data, pb, 0.2)
    assert [e.addr for e in a.table] == [pb]
    assert [e.addr for e in b.table] == [pa]  # b pinged a back to verify it
    (ev,) = a.events()
    assert isinstance(ev, LookupDone) and ev.nodes[0].id == b.id
