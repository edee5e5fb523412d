"""The mainline DHT as a session's discovery network (docs/design.md: join / publish / search).

- join: bootstrap through the nodes saved at the last run (``STATE_DIR/dht.state``), then,
  if they gave fewer than a bucket's worth within :data:`SAVED_NODES_WAIT` seconds (they
  may be long gone), through the configured routers (host names,
  resolved at that moment). A session never waits for it: it runs in the background and is
  retried with backoff while the routing table is empty.
- publish: ``announce_peer`` of the torrent's info-hash with our listen port, again every
  :data:`ANNOUNCE_INTERVAL` (libtorrent: 15 minutes).
- search: a ``get_peers`` lookup; :class:`~torrentkit.discovery.base.SearchLoop` repeats it
  with backoff (:data:`SEARCH_SCHEDULE`).
- Private torrents (BEP 27) never reach it: the public API gives them no network source,
  and the peer wire neither sends nor takes PORT messages for them.

The routing table (our node id and the nodes in it) is written to the state folder every
:data:`SAVE_INTERVAL` seconds and when the session ends (temp -> fsync -> rename), and read
back at start. A missing or damaged file means a fresh start, never an error.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from torrentkit import bencoding
from torrentkit.dht import krpc
from torrentkit.dht.driver import DhtDriver, open_dht_driver
from torrentkit.dht.krpc import NodeInfo
from torrentkit.dht.node import DhtConfig, DhtNode
from torrentkit.discovery.base import (
    Listing,
    NetworkError,
    PeerSink,
    SearchLoop,
    TorrentDiscovery,
)
from torrentkit.engine.resume import write_atomically
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.net import DatagramEndpoint, Network

log = logging.getLogger(__name__)

STATE_FILE: Final = "dht.state"
#: Seconds between two saves of the routing table.
SAVE_INTERVAL: Final = 600.0
#: Announce again this often (libtorrent's DHT announce interval).
ANNOUNCE_INTERVAL: Final = 15 * 60.0
#: A lookup after one that found nobody new waits the next of these (then the last, again).
SEARCH_SCHEDULE: Final = (1.0, 2.0, 5.0, 15.0, 60.0, 300.0)
#: While the routing table is empty, bootstrap again after these delays.
BOOTSTRAP_RETRY: Final = (5.0, 15.0, 60.0, 300.0)
#: How long the saved nodes get before the routers are asked as well.
SAVED_NODES_WAIT: Final = 2.0
#: Nodes kept in the state file at most.
MAX_SAVED_NODES: Final = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedState:
    node_id: bytes | None
    nodes: tuple[NodeInfo, ...]


def encode_state(node_id: bytes, nodes: Sequence[NodeInfo]) -> bytes:
    """The state file: ``{"id": node id, "nodes": compact IPv4 node infos}``."""
    return bencoding.encode({b"id": node_id, b"nodes": krpc.pack_nodes(list(nodes))})


def decode_state(raw: bytes) -> SavedState:
    """Read a state file; RemoteProtocolError when it is not one."""
    doc = bencoding.decode(raw, bencoding.Limits(max_size=64 * 1024, max_depth=4))
    if not isinstance(doc, dict):
        raise RemoteProtocolError("not a dictionary")
    node_id = doc.get(b"id")
    if not (isinstance(node_id, bytes) and len(node_id) == 20):
        raise RemoteProtocolError("no 20-byte node id")
    nodes = doc.get(b"nodes", b"")
    if not isinstance(nodes, bytes):
        raise RemoteProtocolError("nodes is not a string")
    return SavedState(node_id=node_id, nodes=tuple(krpc.unpack_nodes(nodes)))


def load_state(path: Path) -> SavedState:
    """The saved state at ``path``; an empty one when it is missing or damaged (logged)."""
    try:
        return decode_state(path.read_bytes())
    except FileNotFoundError:
        pass
    except (OSError, RemoteProtocolError) as exc:
        log.info("dht: ignoring %s: %s", path, exc)
    return SavedState(node_id=None, nodes=())


class DhtNetwork:
    """The session's mainline DHT node as a ``Discovery`` network."""

    name = "dht"

    def __init__(
        self,
        driver: DhtDriver,
        *,
        bootstrap: Sequence[PeerAddr] = (),
        saved: Sequence[NodeInfo] = (),
        state_path: Path | None = None,
        exclude: Sequence[PeerAddr] = (),
    ) -> None:
        self.driver = driver
        self.bootstrap = tuple(bootstrap)
        self.saved = tuple(saved)
        self.state_path = state_path
        self.exclude = tuple(exclude)
        self.searches = 0
        self.announces = 0
        #: Set once the first bootstrap attempt ended (searches and announces wait for it).
        self.first_join = trio.Event()

    @property
    def address(self) -> PeerAddr:
        """The UDP address the node receives on."""
        return self.driver.address

    @property
    def node(self) -> DhtNode:
        return self.driver.node

    async def join(self) -> None:
        """Bootstrap: the saved nodes first, then the routers if the table is still thin.
        NetworkError when no node answered at all."""
        k = self.node.config.k
        if self.saved:
            # Saved nodes may be long gone: the routers are asked too if they are slow.
            with trio.move_on_after(SAVED_NODES_WAIT):
                await self.driver.bootstrap([n.addr for n in self.saved])
        if len(self.node.table) < k and self.bootstrap:
            await self.driver.bootstrap(self.bootstrap)
        if not len(self.node.table):
            names = ", ".join(f"{a.host}:{a.port}" for a in self.bootstrap) or "none given"
            raise NetworkError(f"dht: no node answered (bootstrap: {names})")

    async def keep_joined(self) -> None:
        """Join, and join again with backoff whenever the routing table is empty."""
        step = 0
        while True:
            if not len(self.node.table):
                try:
                    await self.join()
                    step = 0
                except NetworkError as exc:
                    log.info("%s", exc)
                    self.first_join.set()
                    await trio.sleep(BOOTSTRAP_RETRY[min(step, len(BOOTSTRAP_RETRY) - 1)])
                    step += 1
                    continue
            self.first_join.set()
            await trio.sleep(BOOTSTRAP_RETRY[0])

    async def publish(self, listing: Listing, port: int) -> None:
        """Announce; NetworkError when no node took it (the publish is then retried soon,
        not at the next interval: the table may have been empty)."""
        await self.first_join.wait()
        if not len(self.node.table):  # nobody to announce to: retried soon, nothing sent
            raise NetworkError("dht: no nodes yet")
        self.announces += 1
        done = await self.driver.announce(bytes(listing.info_hash), port)
        if not done.stored:
            raise NetworkError("dht: the announce reached no node")

    def withdraw(self, info_hash: InfoHash) -> None:
        """Nothing to do: DHT nodes forget an announce after 30 minutes."""

    async def search(self, listing: Listing) -> Sequence[PeerAddr]:
        await self.first_join.wait()
        if not len(self.node.table):  # not joined (keep_joined retries): nothing to ask
            return ()
        self.searches += 1
        done = await self.driver.get_peers(bytes(listing.info_hash))
        return done.peers

    def torrent_source(
        self, info_hash: InfoHash, *, port: int, sink: PeerSink, publish: bool
    ) -> TorrentDiscovery:
        return SearchLoop(
            self,
            Listing(info_hash=info_hash),
            port=port,
            sink=sink,
            publish=publish,
            exclude=self.exclude,
            schedule=SEARCH_SCHEDULE,
            republish=ANNOUNCE_INTERVAL,
        )

    async def save_state(self) -> None:
        """Write the routing table to ``state_path`` (the file in a worker thread; errors
        logged, not raised). The table is read here, on the node's own thread."""
        if self.state_path is None:
            return
        nodes = self.node.known_nodes()[:MAX_SAVED_NODES]
        raw = encode_state(self.node.node_id, nodes)
        try:
            await trio.to_thread.run_sync(write_atomically, self.state_path, raw)
        except OSError as exc:
            log.warning("dht: cannot save %s: %s", self.state_path, exc)

    async def save_periodically(self) -> None:
        while True:
            await trio.sleep(SAVE_INTERVAL)
            await self.save_state()


@asynccontextmanager
async def open_dht(
    network: Network,
    host: str,
    port: int,
    *,
    bootstrap: Sequence[PeerAddr],
    state_dir: Path | None = None,
    state_file: str = STATE_FILE,
    endpoint: DatagramEndpoint | None = None,
    config: DhtConfig | None = None,
    rng: random.Random | None = None,
    exclude: Sequence[PeerAddr] = (),
    join: bool = False,
) -> AsyncIterator[DhtNetwork]:
    """A DHT node on UDP ``host:port`` (or ``endpoint``, e.g. the listen port's pair).

    The routing table is read from and saved to ``state_dir / state_file`` (no ``state_dir``:
    not kept). Joining runs in the background (``join``: wait for the first bootstrap,
    NetworkError when nobody answered). Leaving saves the table.
    """
    if endpoint is None:
        endpoint = await network.bind_udp(host, port)
    state_path = state_dir / state_file if state_dir is not None else None
    saved = load_state(state_path) if state_path is not None else SavedState(node_id=None, nodes=())
    node = DhtNode(
        rng=rng or random.Random(),
        now=trio.current_time(),
        config=config,
        node_id=saved.node_id,
    )
    async with open_dht_driver(node, endpoint) as driver:
        net = DhtNetwork(
            driver,
            bootstrap=bootstrap,
            saved=saved.nodes,
            state_path=state_path,
            exclude=exclude,
        )
        try:
            async with trio.open_nursery() as nursery:
                if join:
                    await net.join()
                    net.first_join.set()
                nursery.start_soon(net.keep_joined)
                if state_path is not None:
                    nursery.start_soon(net.save_periodically)
                yield net
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await net.save_state()


def routing_table_rows(node: DhtNode, now: float) -> list[dict[str, Any]]:
    """The routing table as rows for a face: bucket, id (hex), address, state, last seen."""
    rows = []
    table = node.table
    for entry in table:
        state = (
            "good"
            if table.is_good(entry, now)
            else "bad"
            if table.is_bad(entry)
            else "questionable"
        )
        rows.append(
            {
                "bucket": table.bucket_index(entry.id),
                "id": entry.id.hex(),
                "addr": f"{entry.addr.host}:{entry.addr.port}",
                "state": state,
                "last_seen": round(now - entry.last_seen(), 1),
            }
        )
    rows.sort(key=lambda r: (r["bucket"], r["id"]))
    return rows
