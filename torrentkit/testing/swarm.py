"""Whole swarms in one process: the production engine on the in-memory network.

``setup_swarm`` starts seeders and leechers, each a real
:class:`~torrentkit.engine.session.Session` with a
:class:`~torrentkit.engine.storage.MemoryStorage`, each on its own simulated host with its
own upload rate, and one tracker they all announce to. Only transports are swapped: the
peers talk over the in-memory network, and the tracker client (the real
:class:`~torrentkit.discovery.tracker.client.TrackerDiscovery`, httpx and all) reaches the
real tracker core (:mod:`~torrentkit.discovery.tracker.protocol` parsing the raw query,
:class:`~torrentkit.discovery.tracker.state.TrackerState`) through an in-process
``httpx.MockTransport``: no sockets, and it runs under trio's virtual clock. Picker, choker,
peer wire, engine and announce loop are the ones that run in production. Tests and tools/
simulations share it (like ``trio.testing``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx
import trio

from torrentkit.discovery.tracker import protocol
from torrentkit.discovery.tracker.client import TrackerClientConfig, TrackerDiscovery
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import Torrent, TorrentOptions
from torrentkit.events import Event
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Info, build_info, parse_info
from torrentkit.testing.network import SimNetwork
from torrentkit.wire.peer_id import generate_peer_id

PEER_PORT = 6881


def make_torrent(
    rng: random.Random,
    size: int,
    piece_length: int,
    name: str = "sim.bin",
    *,
    private: bool = False,
) -> tuple[Info, bytes]:
    """A single-file torrent of ``size`` seeded-random bytes, made in memory (``private``:
    BEP 27, no peer exchange: the tracker alone tells peers of each other)."""
    payload = rng.randbytes(size)
    hashes = b"".join(
        hashlib.sha1(payload[i : i + piece_length]).digest() for i in range(0, size, piece_length)
    )
    raw = build_info(
        name=name,
        files=None,
        length=size,
        piece_length=piece_length,
        piece_hashes=hashes,
        private=private,
    )
    return parse_info(raw), payload


class SimTracker:
    """An HTTP tracker reached in memory: the pure tracker state behind httpx transports.

    :meth:`client` gives a simulated host its own ``httpx.AsyncClient``; the transport knows
    which host it serves, as a socket would (the tracker records that host as the peer's
    IP). Its handler does what the aiohttp tracker does for ``/announce``: parse the raw
    query, update the state with ``now`` = ``trio.current_time()``, encode the reply (a
    ``failure reason`` for a bad request).
    """

    url = "http://tracker.sim/announce"

    def __init__(self, rng: random.Random, interval: int = 300) -> None:
        self.state = TrackerState(TrackerConfig(interval=interval, min_interval=0), rng=rng)
        self.announces = 0

    def handle(self, request: httpx.Request, remote_ip: str) -> httpx.Response:
        if request.url.path != "/announce":
            return _reply(404, b"not found\n")
        self.announces += 1
        try:
            req = protocol.parse_announce_query(request.url.query.decode("ascii"))
            reply = self.state.announce(req, remote_ip=remote_ip, now=trio.current_time())
        except protocol.TrackerRequestError as exc:
            return _reply(200, protocol.encode_failure(str(exc)))
        body = protocol.encode_announce_response(
            reply, compact=req.compact, no_peer_id=req.no_peer_id
        )
        return _reply(200, body)

    def client(self, host: str) -> httpx.AsyncClient:
        """An httpx client whose requests reach this tracker from ``host`` (nothing to close:
        the transport holds no connections)."""
        return httpx.AsyncClient(transport=httpx.MockTransport(lambda r: self.handle(r, host)))

    def discovery(
        self,
        torrent: Torrent,
        host: str,
        rng: random.Random,
        config: TrackerClientConfig | None = None,
    ) -> TrackerDiscovery:
        """The real tracker client for ``torrent`` on ``host``, announcing here
        (``config``: e.g. another ``numwant``)."""
        return TrackerDiscovery(
            info_hash=torrent.info_hash,
            peer_id=torrent.peer_id,
            port=torrent.listen_port,
            tiers=[[self.url]],
            totals=torrent.totals,
            sink=torrent.add_peers,
            http=self.client(host),
            config=config,
            rng=rng,
        )


class _Body(httpx.AsyncByteStream):
    """A reply body streamed as a socket delivers it (``Response(content=...)`` would be
    read already, and the client reads bodies as streams)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._data


def _reply(status: int, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "text/plain", "Content-Length": str(len(body))}
    return httpx.Response(status, headers=headers, stream=_Body(body))


@dataclass(slots=True)
class SimNode:
    name: str
    host: str
    upload_rate: float
    session: Session
    torrent: Torrent
    storage: MemoryStorage
    seed: bool
    #: Every engine event of the node, typed (:mod:`torrentkit.events`), oldest first.
    events: list[Event] = field(default_factory=list)
    #: Cancel it and the node leaves the swarm (its session and torrent stop).
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


async def setup_swarm(
    nursery: trio.Nursery,
    net: SimNetwork,
    info: Info,
    payload: bytes,
    *,
    seed_rates: Sequence[float],
    leecher_rates: Sequence[float],
    rng: random.Random,
    tracker: SimTracker | None = None,
    options: TorrentOptions | None = None,
    leecher_options: Sequence[TorrentOptions] = (),
    start_gap: float = 0.5,
) -> list[SimNode]:
    """Start seeders then leechers (``start_gap`` seconds apart), each on a new simulated
    host 127.1.x.y (numbered on from the hosts the network already has), each announcing
    to ``tracker`` (a new one when not given). ``leecher_options[i]``, when given, replaces
    ``options`` for leecher ``i`` (e.g. a free rider's ``upload_slots=0``)."""
    tracker = tracker or SimTracker(rng)
    nodes: list[SimNode] = []
    specs = [(True, r) for r in seed_rates] + [(False, r) for r in leecher_rates]
    first = len(net.links)  # hosts already on this network (earlier calls)
    for n, (is_seed, rate) in enumerate(specs):
        k = first + n
        host = f"127.1.{k // 250}.{k % 250 + 1}"
        name = f"seed{n}" if is_seed else f"leech{n - len(seed_rates)}"
        net.set_upload_rate(host, rate)
        events: list[Event] = []
        session = Session(
            net.view(host),
            SessionOptions(bind=host, port=PEER_PORT, peer_id=generate_peer_id(rng)),
            rng=random.Random(rng.random()),
            on_event=events.append,
        )
        scope = trio.CancelScope()
        await nursery.start(_run_until_cancelled, session, scope)
        storage = MemoryStorage(info, payload if is_seed else None)
        own = options or TorrentOptions()
        if not is_seed and n - len(seed_rates) < len(leecher_options):
            own = leecher_options[n - len(seed_rates)]
        torrent = await session.add_torrent(info, storage, own)
        torrent.add_discovery(tracker.discovery(torrent, host, random.Random(rng.random())))
        nodes.append(
            SimNode(
                name=name,
                host=host,
                upload_rate=rate,
                session=session,
                torrent=torrent,
                storage=storage,
                seed=is_seed,
                events=events,
                scope=scope,
            )
        )
        await trio.sleep(start_gap)
    return nodes


async def _run_until_cancelled(
    session: Session, scope: trio.CancelScope, *, task_status: trio.TaskStatus[PeerAddr]
) -> None:
    with scope:
        await session.run(task_status=task_status)


def payload_of(storage: MemoryStorage, info: Info) -> bytes:
    """The concatenated payload a MemoryStorage holds now (zeros where it has nothing)."""
    out = bytearray(info.total_length)
    for i, f in enumerate(info.files):
        data = storage.files.get(i)
        if data is not None and not f.pad:
            out[f.offset : f.offset + len(data)] = data
    return bytes(out)
