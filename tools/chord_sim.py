"""Chord and Kademlia at scale: the production node code on an in-memory network, under a
virtual clock.

Run: ``.venv/bin/python tools/chord_sim.py --nodes N --lookups L [--fail FRACTION]
[--churn RATE] [--dht chord|kademlia|both] [--json] [--plot FILE.png]``

Every node is a real :class:`~torrentkit.discovery.chord.driver.ChordDriver` (m = 160, SHA-1
ids of made-up IPv4 addresses) on :class:`~torrentkit.testing.network.SimNetwork`: datagrams
take 20 ms +- 10 ms, and trio's MockClock jumps over idle time, so minutes of ring life pass
in seconds of CPU. Phases:

1. **build**: one node creates the ring; the rest join through random members, in waves that
   about double the ring, each followed by a few stabilize rounds; then the ring settles.
2. **publish**: ``--keys`` info-hashes (default N) are announced from random nodes (primary at
   the key's successor, replicas on the next r - 1; r = ``--replicas``, default 8).
3. **stable**: L lookups (``get_peers`` of a stored key from a random node). A lookup succeeds
   when it returns the announced peer; hops are the arrows of its path (origin, every node
   that answered, owner: the lecture's ``1 -> 6 -> 0`` is 2 hops).
4. **fail** (``--fail F``): a fraction F of the nodes (chosen at random) crash at once, with no
   goodbye; after ``--settle`` stabilize rounds, L lookups again, and ``keys lost`` counts
   stored keys that no live node holds any more.
5. **churn** (``--churn RATE``): RATE crashes per second, each matched by a fresh node joining,
   while L lookups run; then the ring settles and lost keys are counted.

Output: a table (stdout), or with ``--json`` one object: ``nodes``, ``lookups``,
``mean_hops`` and ``p99_hops`` (stable phase), ``half_log2_n``, ``success_rate`` (the lowest
of all phases), ``keys``, ``keys_lost`` (all phases), ``distinct_fingers`` (mean per node,
stable phase), ``messages``, ``virtual_seconds``, ``wall_seconds``, ``cpu_seconds`` and
``phases`` (per phase: lookups, mean/p99 hops, success rate, keys lost, timeouts).
``--plot FILE.png`` runs N = 64, 128, ... up to ``--nodes`` and draws mean and p99 hops
against N with the 1/2 log2 N curve (needs matplotlib: ``pip install 'torrentkit[plots]'``).

``--dht kademlia`` runs the same phases on the mainline DHT node
(:class:`~torrentkit.dht.node.DhtNode`: k = 8, alpha = 3, BEP 42 ids of public-looking
addresses) on :class:`~torrentkit.testing.dht_sim.DhtSim`, a discrete-event datagram router
with the same latency model (20 ms + up to 20 ms jitter) that drives the sans-IO node
directly, without a trio task per node, so 4,096 nodes fit in a minute or two of CPU. Build:
nodes join one after another, 50 ms apart, each through a random earlier node (a lookup of
its own id). Publish: ``announce_peer`` of each key from a random node (stored on the 8
closest nodes that gave a token). Lookups: ``get_peers`` of a stored key from a random node;
a lookup succeeds when it returns the announced peer; hops are the depth of the closest node
that answered (a seed from the routing table is depth 1, a node it named depth 2, ...: the
dependent round trips, as Chord's path counts them). ``owner ok`` is the share of lookups
whose closest answer is the live node closest to the key. Fail: the fraction crashes at once
and lookups start after ``--settle`` seconds (no repair protocol runs: Kademlia routes around
dead entries as it meets them). ``distinct_fingers`` is reported as the mean routing-table
size (Kademlia's per-node state). Under churn, a lookup whose origin crashes before it
ends is not counted; ``abandoned`` says how many. ``--dht both`` runs both and prints them
one after the other (``--json``: one object per line); with ``--plot`` both go in one figure.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import trio
import trio.testing

from torrentkit.dht.node import AnnounceDone, DhtConfig, Event, GetPeersDone
from torrentkit.dht.nodeid import distance
from torrentkit.discovery.chord.driver import ChordDriver, ChordJoinError, open_chord_node
from torrentkit.discovery.chord.node import ChordConfig
from torrentkit.discovery.chord.ring import key_position
from torrentkit.ids import PeerAddr
from torrentkit.testing.dht_sim import DhtSim, sim_addr
from torrentkit.testing.network import SimNetwork

PORT = 6881
M = 160


@dataclass(slots=True)
class Phase:
    name: str
    lookups: int = 0
    succeeded: int = 0
    right_owner: int = 0
    hops: list[int] = field(default_factory=list)
    timeouts: int = 0
    keys_lost: int = 0
    messages: int = 0
    virtual_seconds: float = 0.0
    #: Messages of the lookups themselves (Kademlia: queries + answers).
    lookup_messages: int = 0
    #: Lookups started (Kademlia); those whose origin crashed before they ended (churn) are
    #: not counted in ``lookups`` but reported as ``abandoned``.
    started: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "lookups": self.lookups,
            "mean_hops": round(mean(self.hops), 3),
            "p99_hops": percentile(self.hops, 99),
            "max_hops": max(self.hops, default=0),
            "success_rate": round(self.succeeded / self.lookups, 5) if self.lookups else 1.0,
            "right_owner_rate": round(self.right_owner / self.lookups, 5) if self.lookups else 1.0,
            "timeouts": self.timeouts,
            "keys_lost": self.keys_lost,
            "messages": self.messages,
            "messages_per_lookup": round(self.lookup_messages / self.lookups, 2)
            if self.lookups and self.lookup_messages
            else None,
            "virtual_seconds": round(self.virtual_seconds, 1),
            "abandoned": max(0, self.started - self.lookups),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Params:
    nodes: int
    lookups: int
    fail: float = 0.0
    churn: float = 0.0
    replicas: int = 8
    keys: int | None = None
    stabilize: float = 1.0
    settle: int = 5
    latency: float = 0.02
    jitter: float = 0.02
    loss: float = 0.0
    seed: int = 1


def mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def percentile(values: list[int], pct: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1)]


def host_of(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


class Ring:
    """The simulation: live drivers, their tasks, and global knowledge for checking."""

    def __init__(self, params: Params, nursery: trio.Nursery, net: SimNetwork) -> None:
        self.p = params
        self.nursery = nursery
        self.net = net
        self.rng = random.Random(params.seed)
        self.config = ChordConfig(
            m=M,
            r=params.replicas,
            stabilize_interval=params.stabilize,
            rpc_timeout=0.5,
            rpc_retries=1,
            lookup_timeout=20.0,
            dead_ttl=30.0,
        )
        self.live: dict[PeerAddr, ChordDriver] = {}
        self.scopes: dict[PeerAddr, trio.CancelScope] = {}
        self.next_host = 1
        self.keys: dict[bytes, PeerAddr] = {}  # key -> the peer announced for it

    # ---------------------------------------------------------------- membership

    async def _node(self, addr: PeerAddr, *, task_status: trio.TaskStatus[ChordDriver]) -> None:
        with trio.CancelScope() as scope:
            self.scopes[addr] = scope
            async with open_chord_node(
                self.net.view(addr.host), addr.host, PORT, config=self.config, rng=self.rng
            ) as driver:
                task_status.started(driver)
                await trio.sleep_forever()

    async def spawn(self) -> ChordDriver:
        addr = PeerAddr(host_of(self.next_host), PORT)
        self.next_host += 1
        driver: ChordDriver = await self.nursery.start(self._node, addr)
        return driver

    async def join_one(self, delay: float = 0.0) -> None:
        await trio.sleep(delay)
        members = list(self.live.values())
        driver = await self.spawn()
        for _ in range(5):
            bootstrap = self.rng.choice(members).address
            if bootstrap not in self.live:
                continue
            try:
                await driver.join(bootstrap)
            except ChordJoinError:  # through a node that just died: another bootstrap
                await trio.sleep(self.p.stabilize)
                continue
            self.live[driver.address] = driver
            return
        self.kill(driver.address)

    def kill(self, addr: PeerAddr) -> None:
        """Crash a node: its task ends, its endpoint closes, nobody is told."""
        self.live.pop(addr, None)
        scope = self.scopes.pop(addr, None)
        if scope is not None:
            scope.cancel()

    async def build(self) -> None:
        first = await self.spawn()
        first.create()
        self.live[first.address] = first
        s = self.p.stabilize
        while len(self.live) < self.p.nodes:
            wave = min(len(self.live), self.p.nodes - len(self.live))
            async with trio.open_nursery() as joins:
                for _ in range(wave):
                    joins.start_soon(self.join_one, self.rng.uniform(0, s))
            await trio.sleep(2 * s)
        await self.settle()

    def ring_ok(self) -> bool:
        """Does every live node's successor pointer name the next live node?"""
        ordered = sorted(self.live.values(), key=lambda d: d.node.id)
        for i, d in enumerate(ordered):
            want = ordered[(i + 1) % len(ordered)].address
            if len(ordered) > 1 and d.node.successor.addr != want:
                return False
        return True

    async def settle(self) -> None:
        """Stabilize rounds: at least ``--settle``, and on until the ring is consistent."""
        rounds = 0
        while rounds < self.p.settle or (not self.ring_ok() and rounds < 10 * self.p.settle):
            await trio.sleep(self.p.stabilize)
            rounds += 1

    # ---------------------------------------------------------------- data

    def owner_of(self, key: bytes) -> PeerAddr:
        ordered = sorted(self.live.values(), key=lambda d: d.node.id)
        ids = [d.node.id for d in ordered]
        i = bisect.bisect_left(ids, key_position(key, M))
        return ordered[i % len(ordered)].address

    async def publish(self, count: int) -> None:
        async def one(key: bytes, delay: float) -> None:
            await trio.sleep(delay)
            driver = self.rng.choice(list(self.live.values()))
            port = self.rng.randrange(1024, 65535)
            done = await driver.announce(key, port)
            if done.ok:
                self.keys[key] = PeerAddr(driver.address.host, port)

        window = max(2 * self.p.stabilize, count / 500)
        async with trio.open_nursery() as n:
            for _ in range(count):
                key = self.rng.getrandbits(160).to_bytes(20, "big")
                n.start_soon(one, key, self.rng.uniform(0, window))
        await trio.sleep(2 * self.p.stabilize)

    def keys_lost(self) -> int:
        held: set[bytes] = set()
        now = trio.current_time()
        for d in self.live.values():
            for k in d.node.store:
                if d.node.store.peers(k, now, 1):
                    held.add(k)
        return sum(1 for k in self.keys if k not in held)

    async def lookups(self, phase: Phase, count: int, window: float) -> None:
        keys = list(self.keys)

        async def one(delay: float) -> None:
            await trio.sleep(delay)
            if not self.live:
                return
            driver = self.rng.choice(list(self.live.values()))
            key = self.rng.choice(keys)
            want = self.owner_of(key)
            done = await driver.get_peers(key)
            phase.lookups += 1
            phase.timeouts += done.timeouts
            # Each node on the path after the origin: one query, one answer; plus each
            # query that timed out.
            phase.lookup_messages += 2 * max(0, len(done.path) - 1) + done.timeouts
            if done.ok and self.keys[key] in done.peers:
                phase.succeeded += 1
                phase.hops.append(len(done.path) - 1)
            if done.owner == want:
                phase.right_owner += 1

        async with trio.open_nursery() as n:
            for _ in range(count):
                n.start_soon(one, self.rng.uniform(0, window))

    async def churn(self, phase: Phase, rate: float, duration: float) -> None:
        t = 0.0
        async with trio.open_nursery() as n:
            while True:
                t += self.rng.expovariate(rate)
                if t >= duration:
                    break
                n.start_soon(self._churn_event, t)

    async def _churn_event(self, at: float) -> None:
        await trio.sleep(at)
        if len(self.live) > 2:
            self.kill(self.rng.choice(list(self.live)))
        await self.join_one()


async def simulate(params: Params) -> dict[str, Any]:
    """Run every phase; return the summary object (see the module docstring)."""
    wall = time.perf_counter()
    cpu = time.process_time()
    start = trio.current_time()
    net = SimNetwork(
        random.Random(params.seed + 1),
        latency=params.latency,
        jitter=params.jitter,
        loss=params.loss,
    )
    phases: list[Phase] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        ring = Ring(params, nursery, net)

        def mark(phase: Phase, t0: float, m0: int) -> None:
            phase.virtual_seconds = trio.current_time() - t0
            phase.messages = net.datagrams_sent - m0

        t0, m0 = trio.current_time(), net.datagrams_sent
        await ring.build()
        build = Phase("build")
        mark(build, t0, m0)
        t0, m0 = trio.current_time(), net.datagrams_sent
        await ring.publish(params.keys if params.keys is not None else params.nodes)
        publish = Phase("publish")
        mark(publish, t0, m0)
        window = max(2 * params.stabilize, params.lookups / 1000)

        stable = Phase("stable")
        t0, m0 = trio.current_time(), net.datagrams_sent
        fingers = mean([d.node.distinct_fingers() for d in ring.live.values()])
        await ring.lookups(stable, params.lookups, window)
        stable.keys_lost = ring.keys_lost()
        mark(stable, t0, m0)
        phases.append(stable)

        if params.fail > 0:
            phase = Phase("after_fail")
            t0, m0 = trio.current_time(), net.datagrams_sent
            victims = ring.rng.sample(list(ring.live), int(params.fail * len(ring.live)))
            for addr in victims:
                ring.kill(addr)
            await ring.settle()
            await ring.lookups(phase, params.lookups, window)
            phase.keys_lost = ring.keys_lost()
            mark(phase, t0, m0)
            phases.append(phase)

        if params.churn > 0:
            phase = Phase("churn")
            t0, m0 = trio.current_time(), net.datagrams_sent
            duration = max(20 * params.stabilize, window)
            async with trio.open_nursery() as n:
                n.start_soon(ring.churn, phase, params.churn, duration)
                n.start_soon(ring.lookups, phase, params.lookups, duration)
            await ring.settle()
            phase.keys_lost = ring.keys_lost()
            mark(phase, t0, m0)
            phases.append(phase)

        nursery.cancel_scope.cancel()

    return summarize(
        "chord",
        params,
        phases,
        build=build,
        publish=publish,
        keys=len(ring.keys),
        state=fingers,
        messages=net.datagrams_sent,
        virtual=trio.current_time() - start,
        wall=wall,
        cpu=cpu,
    )


def summarize(
    dht: str,
    params: Params,
    phases: list[Phase],
    *,
    build: Phase,
    publish: Phase,
    keys: int,
    state: float,
    messages: int,
    virtual: float,
    wall: float,
    cpu: float,
) -> dict[str, Any]:
    """The result object (see the module docstring); ``phases[0]`` is the stable phase."""
    stable = phases[0]
    n = params.nodes
    return {
        "dht": dht,
        "nodes": n,
        "lookups": params.lookups,
        "replicas": params.replicas if dht == "chord" else 8,
        "mean_hops": round(mean(stable.hops), 3),
        "p99_hops": percentile(stable.hops, 99),
        "half_log2_n": round(0.5 * math.log2(n), 3),
        "success_rate": min(p.summary()["success_rate"] for p in phases),
        "keys": keys,
        "keys_lost": sum(p.keys_lost for p in phases),
        "distinct_fingers": round(state, 2),
        "messages_per_lookup": stable.summary()["messages_per_lookup"],
        "fail_fraction": params.fail,
        "churn_rate": params.churn,
        "phases": [p.summary() for p in phases],
        "build": build.summary() | {"lookups": 0},
        "publish": publish.summary() | {"lookups": 0},
        "messages": messages,
        "virtual_seconds": round(virtual, 1),
        "wall_seconds": round(time.perf_counter() - wall, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "params": asdict(params),
    }


def run(params: Params) -> dict[str, Any]:
    return trio.run(simulate, params, clock=trio.testing.MockClock(autojump_threshold=0))


# ------------------------------------------------------------------------------ Kademlia


class KadNet:
    """The Kademlia counterpart of :class:`Ring`: DhtNode objects on a DhtSim."""

    def __init__(self, params: Params) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        self.sim = DhtSim(
            seed=params.seed + 1,
            latency=params.latency,
            jitter=params.jitter,
            loss=params.loss,
            config=DhtConfig(rate_limit=1000),
        )
        self.sim.on_event = self._event
        self.keys: dict[bytes, PeerAddr] = {}
        self._waiting: dict[tuple[PeerAddr, int], tuple[type, Any]] = {}

    def _event(self, addr: PeerAddr, ev: Event) -> None:
        op = getattr(ev, "op", None)
        if op is None:
            return
        want = self._waiting.get((addr, op))
        if want is not None and isinstance(ev, want[0]):
            del self._waiting[(addr, op)]
            want[1](ev)
        self.sim.take_events(addr)  # nothing else reads them

    def live(self) -> list[PeerAddr]:
        return self.sim.alive()

    def build(self) -> None:
        self.sim.grow(self.p.nodes, join_gap=0.05, settle=10.0)

    def join_one(self) -> None:
        live = self.live()
        addr = sim_addr(len(self.sim.hosts))
        self.sim.add_node(addr)
        boot = self.rng.choice(live)
        self.sim.call(addr, lambda node, now: node.bootstrap([boot], now))

    def closest_live(self, key: bytes, origin: PeerAddr) -> PeerAddr:
        """The live node closest to ``key``, other than ``origin`` (a lookup never names
        the node that runs it)."""
        others = [a for a in self.live() if a != origin]
        return min(others, key=lambda a: distance(self.sim.node(a).id, key))

    def publish(self, count: int) -> None:
        window = max(2.0, count / 500)

        def one(key: bytes) -> None:
            origin = self.rng.choice(self.live())
            port = self.rng.randrange(1024, 65535)

            def done(ev: AnnounceDone) -> None:
                if ev.ok:
                    self.keys[key] = PeerAddr(origin.host, port)

            op = self.sim.call(origin, lambda node, now: node.announce_peer(key, port, now))
            self._waiting[(origin, op)] = (AnnounceDone, done)

        for _ in range(count):
            key = self.rng.getrandbits(160).to_bytes(20, "big")
            self.sim.at(self.sim.now + self.rng.uniform(0, window), lambda key=key: one(key))
        self.sim.run_for(window + 30.0)

    def keys_lost(self) -> int:
        now = self.sim.now
        held: set[bytes] = set()
        for a in self.live():
            store = self.sim.node(a).store
            for k in store:
                if store.peers(k, now, 1, self.rng):
                    held.add(k)
        return sum(1 for k in self.keys if k not in held)

    def lookups(self, phase: Phase, count: int, window: float) -> None:
        keys = list(self.keys)

        def one() -> None:
            live = self.live()
            origin = self.rng.choice(live)
            key = self.rng.choice(keys)

            def done(ev: GetPeersDone) -> None:
                phase.lookups += 1
                phase.timeouts += ev.timeouts
                phase.lookup_messages += ev.queries + ev.answers
                if ev.ok and self.keys[key] in ev.peers:
                    phase.succeeded += 1
                    phase.hops.append(ev.hops)
                if ev.nodes and ev.nodes[0].addr == self.closest_live(key, origin):
                    phase.right_owner += 1

            op = self.sim.call(origin, lambda node, now: node.get_peers(key, now))
            self._waiting[(origin, op)] = (GetPeersDone, done)

        for _ in range(count):
            self.sim.at(self.sim.now + self.rng.uniform(0, window), one)
        phase.started += count

    def churn(self, rate: float, duration: float) -> None:
        t = 0.0
        while True:
            t += self.rng.expovariate(rate)
            if t >= duration:
                break
            self.sim.at(self.sim.now + t, self._churn_event)

    def _churn_event(self) -> None:
        live = self.live()
        if len(live) > 2:
            self.sim.kill(self.rng.choice(live))
        self.join_one()


def simulate_kademlia(params: Params) -> dict[str, Any]:
    """The phases of :func:`simulate` on the mainline DHT node; the same summary keys."""
    wall = time.perf_counter()
    cpu = time.process_time()
    net = KadNet(params)
    sim = net.sim

    def mark(phase: Phase, t0: float, m0: int) -> None:
        phase.virtual_seconds = sim.now - t0
        phase.messages = sim.stats.sent - m0

    t0, m0 = sim.now, sim.stats.sent
    net.build()
    build = Phase("build")
    mark(build, t0, m0)
    t0, m0 = sim.now, sim.stats.sent
    net.publish(params.keys if params.keys is not None else params.nodes)
    publish = Phase("publish")
    mark(publish, t0, m0)
    window = max(2 * params.stabilize, params.lookups / 1000)
    drain = 60.0

    phases: list[Phase] = []
    stable = Phase("stable")
    t0, m0 = sim.now, sim.stats.sent
    state = mean([len(sim.node(a).table) for a in net.live()])
    net.lookups(stable, params.lookups, window)
    sim.run_for(window + drain)
    stable.keys_lost = net.keys_lost()
    mark(stable, t0, m0)
    phases.append(stable)

    if params.fail > 0:
        phase = Phase("after_fail")
        t0, m0 = sim.now, sim.stats.sent
        live = net.live()
        for addr in net.rng.sample(live, int(params.fail * len(live))):
            sim.kill(addr)
        sim.run_for(params.settle * params.stabilize)
        net.lookups(phase, params.lookups, window)
        sim.run_for(window + drain)
        phase.keys_lost = net.keys_lost()
        mark(phase, t0, m0)
        phases.append(phase)

    if params.churn > 0:
        phase = Phase("churn")
        t0, m0 = sim.now, sim.stats.sent
        duration = max(20 * params.stabilize, window)
        net.churn(params.churn, duration)
        net.lookups(phase, params.lookups, duration)
        sim.run_for(duration + drain)
        phase.keys_lost = net.keys_lost()
        mark(phase, t0, m0)
        phases.append(phase)

    return summarize(
        "kademlia",
        params,
        phases,
        build=build,
        publish=publish,
        keys=len(net.keys),
        state=state,
        messages=sim.stats.sent,
        virtual=sim.now,
        wall=wall,
        cpu=cpu,
    )


def render(result: dict[str, Any]) -> str:
    n = result["nodes"]
    kind = result.get("dht", "chord")
    state = "distinct fingers" if kind == "chord" else "routing-table entries"
    lines = [
        f"{kind}: nodes {n}  keys {result['keys']}  replicas {result['replicas']}  "
        f"1/2 log2 N = {result['half_log2_n']}  {state} per node "
        f"{result['distinct_fingers']}",
        f"{'phase':<11} {'lookups':>7} {'mean hops':>9} {'p99 hops':>8} {'msgs/lkp':>8} "
        f"{'success':>8} {'owner ok':>8} {'timeouts':>8} {'keys lost':>9}",
    ]
    for p in result["phases"]:
        per = p.get("messages_per_lookup")
        lines.append(
            f"{p['phase']:<11} {p['lookups']:>7} {p['mean_hops']:>9.2f} {p['p99_hops']:>8} "
            f"{per if per is not None else '-':>8} "
            f"{100 * p['success_rate']:>7.2f}% {100 * p['right_owner_rate']:>7.2f}% "
            f"{p['timeouts']:>8} {p['keys_lost']:>9}"
        )
    lines.append(
        f"messages {result['messages']:,}  virtual {result['virtual_seconds']} s  "
        f"wall {result['wall_seconds']} s  cpu {result['cpu_seconds']} s"
    )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({r["nodes"] for r in results})
    kinds = sorted({r.get("dht", "chord") for r in results})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, colour in zip(kinds, ("tab:blue", "tab:green"), strict=False):
        rows = [r for r in results if r.get("dht", "chord") == kind]
        xs = [r["nodes"] for r in rows]
        label = kind.capitalize() if len(kinds) > 1 else ""
        ax.plot(
            xs,
            [r["mean_hops"] for r in rows],
            "o-",
            color=colour,
            label=f"{label} mean hops".strip(),
        )
        ax.plot(
            xs,
            [r["p99_hops"] for r in rows],
            "s--",
            color=colour,
            alpha=0.6,
            label=f"{label} p99 hops".strip(),
        )
    curve = [2**e for e in range(6, int(math.log2(max(ns))) + 1)]
    ax.plot(curve, [0.5 * math.log2(x) for x in curve], "k:", label="1/2 log2 N")
    ax.plot(
        curve,
        [0.5 * math.log2(x) + 1 for x in curve],
        color="grey",
        ls="-.",
        lw=0.8,
        label="target: 1/2 log2 N + 1",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("nodes N")
    ax.set_ylabel("hops per lookup")
    names = " vs ".join(k.capitalize() for k in kinds)
    ax.set_title(f"torrentkit {names}: lookup path length (160-bit ids, 8 copies)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Chord ring simulation on the in-memory network (virtual clock)"
    )
    ap.add_argument("--nodes", type=int, default=256)
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument(
        "--fail",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="crash this fraction of nodes at once, then measure again",
    )
    ap.add_argument(
        "--churn",
        type=float,
        default=0.0,
        metavar="RATE",
        help="crashes per second (each with a fresh join) during lookups",
    )
    ap.add_argument("--replicas", type=int, default=8, help="r: successor list and copies")
    ap.add_argument("--keys", type=int, default=None, help="keys to publish (default N)")
    ap.add_argument("--stabilize", type=float, default=1.0, help="stabilize interval, s")
    ap.add_argument("--settle", type=int, default=5, help="stabilize rounds after changes")
    ap.add_argument("--loss", type=float, default=0.0, help="datagram loss rate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--dht",
        choices=("chord", "kademlia", "both"),
        default="chord",
        help="which routed lookup to simulate (kademlia: the mainline DHT node)",
    )
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument(
        "--plot", metavar="FILE.png", help="run N = 64, 128, ... --nodes and plot hops against N"
    )
    args = ap.parse_args(argv)
    if args.nodes < 2 or args.lookups < 1 or not 0 <= args.fail < 1 or args.churn < 0:
        ap.error("need --nodes >= 2, --lookups >= 1, 0 <= --fail < 1, --churn >= 0")

    def params(n: int) -> Params:
        return Params(
            nodes=n,
            lookups=args.lookups,
            fail=args.fail,
            churn=args.churn,
            replicas=args.replicas,
            keys=args.keys,
            stabilize=args.stabilize,
            settle=args.settle,
            loss=args.loss,
            seed=args.seed,
        )

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install 'torrentkit[plots]'", file=sys.stderr)
            return 2
        sizes = []
        n = 64
        while n <= args.nodes:
            sizes.append(n)
            n *= 2
        results = []
        for n in sizes:
            for result in run_all(params(n), args.dht):
                results.append(result)
                print(json.dumps(result) if args.json else render(result) + "\n", flush=True)
        plot(results, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
        return 0
    for result in run_all(params(args.nodes), args.dht):
        print(json.dumps(result) if args.json else render(result), flush=True)
    return 0


def run_all(params: Params, dht: str) -> list[dict[str, Any]]:
    out = []
    if dht in ("chord", "both"):
        out.append(run(params))
    if dht in ("kademlia", "both"):
        out.append(simulate_kademlia(params))
    return out


if __name__ == "__main__":
    sys.exit(main())
