"""What a search costs in each design: Napster, Gnutella (TTL 3, 5, 7), KaZaA, Chord and
Kademlia.

Run: ``.venv/bin/python tools/lookup_cost.py [--nodes N [N ...]] [--searches S]
[--schemes napster gnutella kazaa chord kademlia] [--seed K] [--json] [--plot FILE.png]``

Every scheme runs the production node code under trio's virtual clock (MockClock: idle time
is skipped, so minutes of network life take seconds of CPU), on the in-memory network
(:class:`~torrentkit.testing.network.SimNetwork`, 20 ms one-way latency):

- **napster**: the index core (:class:`~torrentkit.discovery.napster.index.NapsterIndex`) and
  its JSON API (:mod:`~torrentkit.discovery.napster.protocol`) answer the production
  :class:`~torrentkit.discovery.napster.client.NapsterClient` of each of the N peers through an
  in-memory HTTP transport (20 ms each way; the aiohttp adapter itself runs on asyncio and is
  left out). One extra host is the index server.
- **gnutella**: N :class:`~torrentkit.discovery.gnutella.OverlayDriver` peers whose links are
  peer wire connections over the in-memory network; each joins through two earlier nodes
  (default degrees: dial 3, accept 8). One overlay serves the three TTLs.
- **kazaa**: round(sqrt N) supernodes (each joins through two earlier ones) and N - sqrt N
  leaves attached to two supernodes each (three named at start, for re-attaching); every
  node may hold files, and a supernode indexes its leaves' lists; TTL 7 among supernodes.
- **chord**: N :class:`~torrentkit.discovery.chord.ChordDriver` nodes (m = 160, r = 8,
  iterative lookups), built in waves as tools/chord_sim.py does; a holder *announces* its
  info-hash and a searcher calls ``get_peers`` (Chord finds by key, not by name). Imported
  lazily: if the Chord package is not there, chord rows are left out with a note.
- **kademlia**: N mainline DHT nodes (:class:`~torrentkit.dht.node.DhtNode`, k = 8,
  alpha = 3) on :class:`~torrentkit.testing.dht_sim.DhtSim` (the same latency model without a
  trio task per node), each joining through a random earlier node; a holder
  announces its info-hash (``announce_peer``), a searcher runs ``get_peers``.

Workload per N (seeded): 4 popular items, each held by 10% of the nodes, and S rare items,
each held by one node; S searches of each kind from random nodes that do not hold the item
(names are unique words, so a word query finds exactly its item). A search succeeds when an
answer names a holder of the right info-hash; overlay searches collect hits for 3 s.
Then the failure: Napster's index server dies; otherwise 20% of the nodes (chosen at
random) crash without a word, the rest repair (overlays: 30 s of re-dialling; Chord: 15
stabilize rounds), and the rare searches are repeated for items that still have a live
holder.

Columns (``--json``: a list of row objects with these keys):

- ``messages_per_search``: messages the search caused, everywhere. Napster: HTTP requests
  and replies (2). Overlays: query and hit messages sent by all nodes during the search (each
  is one peer wire extension message). Chord: datagrams to and from the searcher during its
  lookup (lookups are iterative, so every message of one touches the searcher), minus the
  searcher's own maintenance traffic over the same time (measured beforehand per node).
  Kademlia: the lookup's own queries and answers (the node counts them).
- ``hops``: overlay distance to the answer, mean over successful searches. Napster: 1 (ask
  the index). Overlays: hops of the nearest holder's hit. Chord: arrows of the lookup path.
- ``state_per_node``: entries held by the busiest node (the lecture's per-node state: index
  entries, neighbours, fingers); ``state_mean``: the mean over all nodes. Napster: the index
  holds every published entry and session (peers hold nothing). Gnutella: neighbours.
  KaZaA: a supernode's neighbours + indexed entries; a leaf's supernodes. Chord: distinct
  fingers + successor list + stored peer entries. Kademlia: routing-table entries + stored
  peer entries.
- ``success_popular`` / ``success_rare``: share of searches that found a holder;
  ``success_after_failure``: the same for the rare items (with a live holder) after the
  failure.
- ``ttl``: the flooding TTL (Gnutella; KaZaA floods with 7 among supernodes); null for
  Napster and Chord.

``--plot FILE.png`` draws messages per search against N, one line per scheme (needs
matplotlib: ``pip install 'torrentkit[plots]'``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import trio
import trio.testing

from torrentkit.discovery.gnutella import FileEntry, OverlayConfig, OverlayDriver, Role
from torrentkit.discovery.napster import protocol
from torrentkit.discovery.napster.client import IndexUnreachable, NapsterClient
from torrentkit.discovery.napster.index import (
    IndexConfig,
    IndexRequestError,
    NapsterIndex,
    SearchQuery,
    SharedFile,
)
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.testing.network import SimNetwork

LATENCY = 0.02
BT_PORT = 6881
POPULAR_ITEMS = 4
POPULAR_SHARE = 0.10
FAIL_SHARE = 0.20
OVERLAY_WAIT = 3.0
REPAIR_SECONDS = 30.0
SCHEMES = ("napster", "gnutella", "kazaa", "chord", "kademlia")
TTLS = (3, 5, 7)


@dataclass(slots=True)
class Row:
    scheme: str
    nodes: int
    ttl: int | None
    messages_per_search: float
    hops: float
    state_per_node: int
    state_mean: float
    success_popular: float
    success_rare: float
    success_after_failure: float
    searches: int
    failure: str
    seconds: float = 0.0


@dataclass(slots=True)
class Item:
    name: str  # also the query: one unique word plus an extension
    query: str
    info_hash: InfoHash
    holders: list[int]
    popular: bool


@dataclass(slots=True)
class Tally:
    """Outcomes of one kind of search in one phase."""

    searches: int = 0
    found: int = 0
    messages: float = 0.0
    hops: list[int] = field(default_factory=list)

    def add(self, found: bool, messages: float, hops: int | None) -> None:
        self.searches += 1
        self.messages += messages
        if found:
            self.found += 1
            if hops is not None:
                self.hops.append(hops)

    @property
    def rate(self) -> float:
        return round(self.found / self.searches, 3) if self.searches else 0.0


def make_items(n: int, searches: int, rng: random.Random) -> list[Item]:
    items = []
    per = max(1, math.ceil(POPULAR_SHARE * n))
    for i in range(POPULAR_ITEMS):
        word = f"hay{i:04d}"
        items.append(_item(f"{word} popular.mp3", word, rng.sample(range(n), per), True))
    for i in range(searches):
        word = f"needle{i:04d}"
        items.append(_item(f"{word} rare.iso", word, [rng.randrange(n)], False))
    return items


def _item(name: str, query: str, holders: list[int], popular: bool) -> Item:
    ih = InfoHash(hashlib.sha1(name.encode()).digest())
    return Item(name=name, query=query, info_hash=ih, holders=holders, popular=popular)


def plan_searches(
    items: list[Item],
    searches: int,
    alive: Sequence[bool],
    rng: random.Random,
    *,
    popular: bool = True,
) -> list[tuple[Item, int]]:
    """``searches`` (item, origin) pairs per kind: popular items in turn (unless
    ``popular`` is False), each rare item once; only items with a live holder, searched
    from live nodes that do not hold them."""
    live = [i for i, ok in enumerate(alive) if ok]
    hay = [it for it in items if it.popular]
    rare = [it for it in items if not it.popular and any(alive[h] for h in it.holders)]
    chosen = [hay[k % len(hay)] for k in range(searches)] if popular else []
    chosen += rare[:searches]
    return [(it, rng.choice([i for i in live if i not in it.holders])) for it in chosen]


def host(i: int) -> str:
    i += 1  # 10.0.0.1 upwards
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


# --------------------------------------------------------------------------- napster


class IndexHost:
    """The index server on the simulated network: the production core and JSON API behind
    an in-memory HTTP exchange with latency; it counts every request and reply."""

    def __init__(self, index: NapsterIndex) -> None:
        self.index = index
        self.alive = True
        self.messages = 0

    async def exchange(
        self, ip: str, method: str, path: str, params: list[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        self.messages += 1
        await trio.sleep(LATENCY)
        if not self.alive:
            raise httpx.ConnectError("connection refused: the index is down")
        status, reply = self._answer(ip, method, path, params, body)
        self.messages += 1
        await trio.sleep(LATENCY)
        return status, reply

    def _answer(
        self, ip: str, method: str, path: str, params: list[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        index, now, ttl = self.index, trio.current_time(), self.index.config.ttl
        try:
            if (method, path) == ("POST", "/join"):
                session = index.join(ip=ip, port=protocol.parse_join(body), now=now)
                return 200, protocol.join_reply(session, ttl)
            if (method, path) == ("POST", "/publish"):
                token, files, remove, replace = protocol.parse_publish(
                    body, index.config.max_entries_per_peer
                )
                result = index.publish(token, files, now=now, remove=remove, replace=replace)
                return 200, protocol.publish_reply(result, ttl)
            if (method, path) == ("GET", "/search"):
                found = index.search(protocol.parse_search(params), now=now)
                return 200, protocol.search_reply(found, 0.0)
        except IndexRequestError as exc:
            return exc.status, protocol.error_body(str(exc))
        return 404, protocol.error_body("not found")


class _Transport(httpx.AsyncBaseTransport):
    def __init__(self, server: IndexHost, ip: str) -> None:
        self.server = server
        self.ip = ip

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        status, data = await self.server.exchange(
            self.ip, request.method, request.url.path, list(request.url.params.multi_items()), body
        )
        headers = {"content-type": "application/json"}
        return httpx.Response(status, stream=httpx.ByteStream(data), headers=headers)


async def run_napster(n: int, searches: int, rng: random.Random) -> list[Row]:
    items = make_items(n, searches, rng)
    server = IndexHost(NapsterIndex(IndexConfig(ttl=3600)))
    url = "http://10.255.255.1:8000/"
    clients = [
        NapsterClient(url, http=httpx.AsyncClient(transport=_Transport(server, host(i))))
        for i in range(n)
    ]
    files: list[list[SharedFile]] = [[] for _ in range(n)]
    for it in items:
        for h in it.holders:
            files[h].append(SharedFile(name=it.name, size=1 << 20, info_hash=it.info_hash))

    async def join(i: int) -> None:
        joined = await clients[i].join(BT_PORT)
        if files[i]:
            await clients[i].publish(joined.session, files[i])

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(join, i)

    async def one(item: Item, origin: int, tally: Tally) -> None:
        before = server.messages
        try:
            reply = await clients[origin].search(SearchQuery(text=item.query))
        except IndexUnreachable:
            tally.add(False, server.messages - before, None)
            return
        want = {PeerAddr(host(h), BT_PORT) for h in item.holders}
        ok = any(hit.info_hash == item.info_hash and want & set(hit.peers) for hit in reply.hits)
        tally.add(ok, server.messages - before, 1)

    alive = [True] * n
    before = {True: Tally(), False: Tally()}
    for item, origin in plan_searches(items, searches, alive, rng):
        await one(item, origin, before[item.popular])
    stats = server.index.stats()
    state = stats.entries + stats.sessions
    server.alive = False  # the single point of failure
    after = {True: Tally(), False: Tally()}
    for item, origin in plan_searches(items, searches, alive, rng, popular=False):
        await one(item, origin, after[item.popular])
    for c in clients:
        await c.aclose()
    return [_row("napster", n, None, before, after, state, state / (n + 1), "index server down")]


def _row(
    scheme: str,
    n: int,
    ttl: int | None,
    before: dict[bool, Tally],
    after: dict[bool, Tally],
    state: int,
    state_mean: float,
    failure: str,
) -> Row:
    both = [before[True], before[False]]
    count = sum(t.searches for t in both)
    hops = [h for t in both for h in t.hops]
    return Row(
        scheme=scheme,
        nodes=n,
        ttl=ttl,
        messages_per_search=round(sum(t.messages for t in both) / max(count, 1), 2),
        hops=round(sum(hops) / len(hops), 2) if hops else 0.0,
        state_per_node=state,
        state_mean=round(state_mean, 2),
        success_popular=before[True].rate,
        success_rare=before[False].rate,
        success_after_failure=after[False].rate,
        searches=count,
        failure=failure,
    )


# --------------------------------------------------------------------------- overlays


class Overlay:
    """Overlay drivers on the in-memory network, each killable."""

    def __init__(self, nursery: trio.Nursery, net: SimNetwork, rng: random.Random) -> None:
        self.nursery = nursery
        self.net = net
        self.rng = rng
        self.nodes: list[OverlayDriver] = []
        self.alive: list[bool] = []

    async def start(self, role: Role, bootstrap: list[PeerAddr]) -> OverlayDriver:
        i = len(self.nodes)
        node = OverlayDriver(
            self.net.view(host(i)),
            role=role,
            holder=PeerAddr(host(i), BT_PORT),
            bootstrap=bootstrap,
            peer_id=self.rng.randbytes(20),
            config=OverlayConfig(),
            rng=random.Random(self.rng.random()),
            ping_interval=3600.0,  # pongs at link open suffice; periodic pings would swamp the CPU
        )
        await self.nursery.start(node.run)
        self.nodes.append(node)
        self.alive.append(True)
        return node

    def kill(self, i: int) -> None:
        self.nodes[i].stop()
        self.alive[i] = False

    def traffic(self) -> int:
        return sum(nd.counters.sent["query"] + nd.counters.sent["hit"] for nd in self.nodes)

    def publish(self, items: list[Item]) -> None:
        files: dict[int, list[FileEntry]] = {}
        for it in items:
            for h in it.holders:
                entry = FileEntry(name=it.name, size=1 << 20, info_hash=it.info_hash)
                files.setdefault(h, []).append(entry)
        for i, entries in files.items():
            self.nodes[i].publish(entries)

    async def search(self, item: Item, origin: int, ttl: int | None, tally: Tally) -> None:
        before = self.traffic()
        hits = await self.nodes[origin].search_hits(item.query, ttl=ttl, wait=OVERLAY_WAIT)
        want = {PeerAddr(host(h), BT_PORT) for h in item.holders}
        good = [h.hops for h in hits if h.info_hash == item.info_hash and h.holder in want]
        tally.add(bool(good), self.traffic() - before, min(good) if good else None)

    async def fail(self, share: float) -> None:
        live = [i for i, ok in enumerate(self.alive) if ok]
        for i in self.rng.sample(live, int(share * len(self.nodes))):
            self.kill(i)
        await trio.sleep(REPAIR_SECONDS)


async def _build_gnutella(overlay: Overlay, n: int) -> None:
    rng = overlay.rng
    for i in range(n):
        earlier = [nd.address for nd in overlay.nodes]
        await overlay.start(Role.PEER, rng.sample(earlier, min(2, len(earlier))))
        if i % 16 == 15:
            await trio.sleep(0.5)
    await trio.sleep(30.0)  # refills (every 5 s) and pongs settle the neighbour sets


async def run_gnutella(n: int, searches: int, rng: random.Random) -> list[Row]:
    items = make_items(n, searches, rng)
    net = SimNetwork(random.Random(rng.random()), latency=LATENCY)
    rows = []
    async with trio.open_nursery() as nursery:
        overlay = Overlay(nursery, net, rng)
        await _build_gnutella(overlay, n)
        overlay.publish(items)
        degrees = [len(nd.neighbours()) for nd in overlay.nodes]
        before: dict[int, dict[bool, Tally]] = {}
        plan = plan_searches(items, searches, overlay.alive, rng)
        for ttl in TTLS:
            before[ttl] = {True: Tally(), False: Tally()}
            for item, origin in plan:
                await overlay.search(item, origin, ttl, before[ttl][item.popular])
        await overlay.fail(FAIL_SHARE)
        plan = plan_searches(items, searches, overlay.alive, rng, popular=False)
        for ttl in TTLS:
            after = {True: Tally(), False: Tally()}
            for item, origin in plan:
                await overlay.search(item, origin, ttl, after[item.popular])
            rows.append(
                _row(
                    "gnutella",
                    n,
                    ttl,
                    before[ttl],
                    after,
                    max(degrees),
                    sum(degrees) / n,
                    "20% of nodes down",
                )
            )
        nursery.cancel_scope.cancel()
    return rows


async def run_kazaa(n: int, searches: int, rng: random.Random) -> list[Row]:
    items = make_items(n, searches, rng)
    net = SimNetwork(random.Random(rng.random()), latency=LATENCY)
    supers = max(2, round(math.sqrt(n)))
    async with trio.open_nursery() as nursery:
        overlay = Overlay(nursery, net, rng)
        for i in range(n):
            sn = [nd.address for nd in overlay.nodes[: min(i, supers)]]
            if i < supers:
                await overlay.start(Role.SUPERNODE, rng.sample(sn, min(2, len(sn))))
            else:
                await overlay.start(Role.LEAF, rng.sample(sn, min(3, len(sn))))
            if i % 16 == 15:
                await trio.sleep(0.5)
        overlay.publish(items)
        await trio.sleep(30.0)
        state = []
        for nd in overlay.nodes:
            state.append(len(nd.neighbours()) + nd.core.index_size())
        before = {True: Tally(), False: Tally()}
        for item, origin in plan_searches(items, searches, overlay.alive, rng):
            await overlay.search(item, origin, None, before[item.popular])
        await overlay.fail(FAIL_SHARE)
        after = {True: Tally(), False: Tally()}
        for item, origin in plan_searches(items, searches, overlay.alive, rng, popular=False):
            await overlay.search(item, origin, None, after[item.popular])
        nursery.cancel_scope.cancel()
    row = _row("kazaa", n, 7, before, after, max(state), sum(state) / n, "20% of nodes down")
    return [row]


# --------------------------------------------------------------------------- chord


async def run_chord(n: int, searches: int, rng: random.Random) -> list[Row]:
    from torrentkit.discovery.chord import ChordConfig, ChordDriver, open_chord_node
    from torrentkit.discovery.chord.driver import ChordJoinError

    items = make_items(n, searches, rng)
    net = SimNetwork(random.Random(rng.random()), latency=LATENCY, jitter=LATENCY)
    stabilize = 1.0
    config = ChordConfig(
        r=8,
        stabilize_interval=stabilize,
        rpc_timeout=0.5,
        rpc_retries=1,
        lookup_timeout=20.0,
        dead_ttl=30.0,
    )
    drivers: list[ChordDriver] = []
    scopes: list[trio.CancelScope] = []
    alive: list[bool] = []

    async def node(i: int, *, task_status: trio.TaskStatus[ChordDriver]) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            async with open_chord_node(
                net.view(host(i)), host(i), BT_PORT, config=config, rng=random.Random(rng.random())
            ) as driver:
                task_status.started(driver)
                await trio.sleep_forever()

    async def join(driver: ChordDriver, delay: float) -> None:
        await trio.sleep(delay)
        members = [d for d, ok in zip(drivers, alive, strict=False) if ok and d is not driver]
        for _ in range(5):
            try:
                await driver.join(rng.choice(members).address)
                return
            except ChordJoinError:
                await trio.sleep(stabilize)

    async def settle(rounds: int) -> None:
        await trio.sleep(rounds * stabilize)

    rows = []
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        first: ChordDriver = await nursery.start(node, 0)
        first.create()
        drivers.append(first)
        alive.append(True)
        while len(drivers) < n:
            wave = min(len(drivers), n - len(drivers))
            new: list[ChordDriver] = []
            for _ in range(wave):
                d = await nursery.start(node, len(drivers) + len(new))
                new.append(d)
            async with trio.open_nursery() as joins:
                for d in new:
                    joins.start_soon(join, d, rng.uniform(0, stabilize))
            drivers.extend(new)
            alive.extend([True] * len(new))
            await settle(2)
        await settle(5)

        async def announce(item: Item) -> None:
            for h in item.holders:
                await drivers[h].announce(item.info_hash, BT_PORT)

        async with trio.open_nursery() as puts:
            for it in items:
                puts.start_soon(announce, it)
        await settle(3)

        # Each node's own maintenance traffic (sent + received per second), to subtract.
        quiet = 5.0
        m0 = net.datagrams_sent
        await trio.sleep(quiet)
        background = 2 * (net.datagrams_sent - m0) / (n * quiet)

        async def one(item: Item, origin: int, tally: Tally) -> None:
            d = drivers[origin]
            s0 = d.node.stats.sent + d.node.stats.received
            t0 = trio.current_time()
            done = await d.get_peers(item.info_hash)
            spent = d.node.stats.sent + d.node.stats.received - s0
            messages = max(0.0, spent - background * (trio.current_time() - t0))
            want = {PeerAddr(host(h), BT_PORT) for h in item.holders}
            ok = done.ok and bool(want & set(done.peers))
            tally.add(ok, messages, len(done.path) - 1 if ok else None)

        def state_of(d: ChordDriver) -> int:
            now = trio.current_time()
            stored = sum(len(d.node.store.peers(k, now, 1000)) for k in d.node.store)
            return d.node.distinct_fingers() + len(d.node.successors) + stored

        states = [state_of(d) for d in drivers]
        before = {True: Tally(), False: Tally()}
        for item, origin in plan_searches(items, searches, alive, rng):
            await one(item, origin, before[item.popular])
        live = [i for i in range(n) if alive[i]]
        for i in rng.sample(live, int(FAIL_SHARE * n)):
            scopes[i].cancel()
            alive[i] = False
        await settle(15)
        after = {True: Tally(), False: Tally()}
        for item, origin in plan_searches(items, searches, alive, rng, popular=False):
            await one(item, origin, after[item.popular])
        rows.append(
            _row("chord", n, None, before, after, max(states), sum(states) / n, "20% of nodes down")
        )
        nursery.cancel_scope.cancel()
    return rows


# --------------------------------------------------------------------------- kademlia


async def run_kademlia(n: int, searches: int, rng: random.Random) -> list[Row]:
    from torrentkit.dht.node import DhtConfig, GetPeersDone
    from torrentkit.testing.dht_sim import DhtSim

    await trio.lowlevel.checkpoint()  # the simulation keeps its own virtual clock
    items = make_items(n, searches, rng)
    sim = DhtSim(
        seed=rng.getrandbits(32),
        latency=LATENCY,
        jitter=LATENCY,
        config=DhtConfig(rate_limit=1000),
    )
    addrs = sim.grow(n, join_gap=0.05, settle=10.0)
    for it in items:
        for h in it.holders:
            sim.call(
                addrs[h], lambda node, now, ih=it.info_hash: node.announce_peer(ih, BT_PORT, now)
            )
    sim.run_for(30.0)
    for a in addrs:
        sim.take_events(a)

    def one(item: Item, origin: int, tally: Tally) -> None:
        a = addrs[origin]
        op = sim.call(a, lambda node, now: node.get_peers(item.info_hash, now))
        sim.run_for(60.0)
        (done,) = [e for e in sim.take_events(a) if isinstance(e, GetPeersDone) and e.op == op]
        want = {PeerAddr(addrs[h].host, BT_PORT) for h in item.holders}
        ok = done.ok and bool(want & set(done.peers))
        tally.add(ok, done.queries + done.answers, done.hops if ok else None)

    def state_of(a: PeerAddr) -> int:
        node = sim.node(a)
        stored = sum(len(node.store.peers(k, sim.now, 1000, rng)) for k in node.store)
        return len(node.table) + stored

    states = [state_of(a) for a in addrs]
    alive = [True] * n
    before = {True: Tally(), False: Tally()}
    for item, origin in plan_searches(items, searches, alive, rng):
        one(item, origin, before[item.popular])
    for i in rng.sample(range(n), int(FAIL_SHARE * n)):
        sim.kill(addrs[i])
        alive[i] = False
    sim.run_for(15.0)
    after = {True: Tally(), False: Tally()}
    for item, origin in plan_searches(items, searches, alive, rng, popular=False):
        one(item, origin, after[item.popular])
    row = _row(
        "kademlia", n, None, before, after, max(states), sum(states) / n, "20% of nodes down"
    )
    return [row]


# --------------------------------------------------------------------------- driver

RUNNERS: dict[str, Callable[[int, int, random.Random], Any]] = {
    "napster": run_napster,
    "gnutella": run_gnutella,
    "kazaa": run_kazaa,
    "chord": run_chord,
    "kademlia": run_kademlia,
}


def measure(scheme: str, n: int, searches: int, seed: int) -> list[Row]:
    rng = random.Random(f"{seed}-{scheme}-{n}")
    started = time.perf_counter()
    rows: list[Row] = trio.run(
        RUNNERS[scheme], n, searches, rng, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    for row in rows:
        row.seconds = round(time.perf_counter() - started, 2)
    return rows


def chord_available() -> str | None:
    """None if the Chord package has what this tool uses, else why not."""
    try:
        from torrentkit.discovery.chord import ChordConfig, ChordDriver, open_chord_node

        del ChordConfig, ChordDriver, open_chord_node
    except ImportError as exc:
        return f"chord rows left out: torrentkit.discovery.chord is not usable here ({exc})"
    return None


def render(rows: list[Row]) -> str:
    head = (
        f"{'scheme':<9} {'N':>5} {'ttl':>3} {'msgs/search':>11} {'hops':>5} "
        f"{'state max':>9} {'state mean':>10} {'popular':>7} {'rare':>5} "
        f"{'after fail':>10}  failure"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r.scheme:<9} {r.nodes:>5} {r.ttl if r.ttl is not None else '-':>3} "
            f"{r.messages_per_search:>11.1f} {r.hops:>5.2f} {r.state_per_node:>9} "
            f"{r.state_mean:>10.1f} {r.success_popular:>7.2f} {r.success_rare:>5.2f} "
            f"{r.success_after_failure:>10.2f}  "
            f"{r.failure}"
        )
    return "\n".join(lines)


def plot(rows: list[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    series: dict[str, list[Row]] = {}
    for r in rows:
        label = f"{r.scheme} TTL {r.ttl}" if r.scheme == "gnutella" else r.scheme
        series.setdefault(label, []).append(r)
    for label, rs in series.items():
        rs.sort(key=lambda r: r.nodes)
        ax.plot([r.nodes for r in rs], [r.messages_per_search for r in rs], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("nodes N")
    ax.set_ylabel("messages per search")
    ax.set_title("torrentkit: the cost of one search")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[64, 256, 1024], metavar="N")
    p.add_argument("--searches", type=int, default=10, metavar="S", help="per kind and phase")
    p.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="a JSON list of rows on stdout")
    p.add_argument("--plot", metavar="FILE.png", help="messages per search vs N (matplotlib)")
    args = p.parse_args(argv)
    if any(not 8 <= n <= 100_000 for n in args.nodes):
        p.error("--nodes: each N must be 8-100000")
    if not 1 <= args.searches <= 1000:
        p.error("--searches: must be 1-1000")
    notes = []
    schemes = list(args.schemes)
    if "chord" in schemes:
        why = chord_available()
        if why is not None:
            notes.append(why)
            schemes.remove("chord")
    rows: list[Row] = []
    for n in args.nodes:
        for scheme in schemes:
            rows += measure(scheme, n, args.searches, args.seed)
            if not args.json:
                print(f"... {scheme} N={n} done", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        print(render(rows))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.plot:
        try:
            plot(rows, args.plot)
        except ImportError:
            print(
                "note: --plot needs matplotlib (pip install 'torrentkit[plots]')", file=sys.stderr
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
