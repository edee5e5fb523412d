"""The lecture's Chord example, run by the production node code on the in-memory network.

Identifier space 0..7 (``m = 3``), one successor (``r = 1``). Node 1 starts the ring, node 2
joins; two items are announced (ids 7 and 1: both land on node 1, the only owner then); nodes
0 and 6 join, and item 7 moves to node 0. After stabilization every finger table is the
lecture's, and ``query(7)`` from node 1 goes 1 -> 6 -> 0 ("forward to the largest node in
the table that does not exceed the id").

Node ids come from a table (address -> id), the toy world's stand-in for SHA-1: host
``10.0.0.(id + 1)``, port 7000. Everything runs under trio's virtual clock, so the minute of
stabilization takes milliseconds, and it is the same every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio
import trio.testing

from torrentkit.discovery.chord.driver import ChordDriver, open_chord_node
from torrentkit.discovery.chord.node import ChordConfig
from torrentkit.ids import PeerAddr
from torrentkit.testing.network import SimNetwork

M = 3
JOIN_ORDER = (1, 2, 0, 6)
ITEMS = (7, 1)
QUERY_KEY = 7
QUERY_FROM = 1
PORT = 7000
CONFIG = ChordConfig(m=M, r=1, stabilize_interval=1.0, rpc_timeout=0.5)
SETTLE = 20.0  # seconds of virtual time for stabilization after each step


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeTable:
    """One node's finger table: rows ``(i, id + 2**i, successor id)``."""

    node: int
    rows: tuple[tuple[int, int, int], ...]
    items: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExampleResult:
    #: Tables after each step: "1 joins", "2 joins", "0 and 6 join".
    stages: tuple[tuple[str, tuple[NodeTable, ...]], ...]
    #: (item id, node storing it), final.
    items: tuple[tuple[int, int], ...]
    query_key: int
    query_from: int
    path: tuple[int, ...]
    seconds: float

    @property
    def tables(self) -> tuple[NodeTable, ...]:
        return self.stages[-1][1]


def address_of(node_id: int) -> PeerAddr:
    return PeerAddr(f"10.0.0.{node_id + 1}", PORT)


def item_key(item_id: int) -> bytes:
    """A 20-byte key whose ring position (mod 2**3) is ``item_id``."""
    return item_id.to_bytes(20, "big")


_IDS = {address_of(n): n for n in range(1 << M)}


def _id_of(addr: PeerAddr) -> int | None:
    return _IDS.get(addr)


def _snapshot(drivers: dict[int, ChordDriver]) -> tuple[NodeTable, ...]:
    tables = []
    for node_id in sorted(drivers):
        node = drivers[node_id].node
        rows = []
        for i, start, finger in node.finger_table():
            rows.append((i, start, finger.id if finger is not None else node.id))
        items = tuple(sorted(int.from_bytes(k, "big") % (1 << M) for k in node.store))
        tables.append(NodeTable(node=node_id, rows=tuple(rows), items=items))
    return tuple(tables)


async def run_example(*, seed: int = 1) -> ExampleResult:
    """Run the example (needs trio's virtual clock to be quick: see :func:`lecture_example`)."""
    rng = random.Random(seed)
    net = SimNetwork(rng, latency=0.01)
    drivers: dict[int, ChordDriver] = {}
    stages: list[tuple[str, tuple[NodeTable, ...]]] = []
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)

        async def start_node(node_id: int, *, task_status: trio.TaskStatus[ChordDriver]) -> None:
            addr = address_of(node_id)
            async with open_chord_node(
                net.view(addr.host), addr.host, PORT, config=CONFIG, rng=rng, id_of=_id_of
            ) as driver:
                task_status.started(driver)
                await trio.sleep_forever()

        async def add(node_id: int, bootstrap: int | None) -> None:
            driver: ChordDriver = await nursery.start(start_node, node_id)
            drivers[node_id] = driver
            if bootstrap is None:
                driver.create()
            else:
                await driver.join(address_of(bootstrap))

        await add(1, None)
        await trio.sleep(SETTLE)
        stages.append(("1 joins", _snapshot(drivers)))
        await add(2, 1)
        await trio.sleep(SETTLE)
        stages.append(("2 joins", _snapshot(drivers)))
        for item in ITEMS:
            done = await drivers[2].announce(item_key(item), 6880 + item)
            if not done.ok:
                raise RuntimeError(f"announcing item {item} failed")
        await add(0, 1)
        await add(6, 2)
        await trio.sleep(SETTLE)
        final = _snapshot(drivers)
        stages.append(("0 and 6 join", final))
        got = await drivers[QUERY_FROM].get_peers(item_key(QUERY_KEY))
        ids = {address_of(n): n for n in drivers}
        path = tuple(ids[a] for a in got.path)
        if not got.ok or not got.peers:
            raise RuntimeError(f"query({QUERY_KEY}) found nothing")
        nursery.cancel_scope.cancel()
    items = tuple(sorted((item, t.node) for t in final for item in t.items))
    return ExampleResult(
        stages=tuple(stages),
        items=items,
        query_key=QUERY_KEY,
        query_from=QUERY_FROM,
        path=path,
        seconds=trio.current_time() - start,
    )


def lecture_example(seed: int = 1) -> ExampleResult:
    """Run the example to completion on a virtual clock (milliseconds of real time)."""
    return trio.run(
        lambda: run_example(seed=seed), clock=trio.testing.MockClock(autojump_threshold=0)
    )
