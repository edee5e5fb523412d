"""Whole swarms in one process: the production engine on the in-memory network.

``setup_swarm`` starts one tracker (the pure tracker core, reached without HTTP), seeders
and leechers, each a real :class:`~torrentkit.engine.session.Session` with a
:class:`~torrentkit.engine.storage.MemoryStorage`, each on its own simulated host with its
own upload rate. Only the transport and the tracker's HTTP layer are swapped; picker,
choker, peer wire and engine are the ones that run in production. Tests and tools/
simulations share it (like ``trio.testing``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from torrentkit.discovery.base import PeerSink, TransferTotals
from torrentkit.discovery.tracker.protocol import AnnounceEvent, AnnounceRequest
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import Torrent, TorrentOptions
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.metainfo import Info, build_info, parse_info
from torrentkit.testing.network import SimNetwork
from torrentkit.wire.peer_id import generate_peer_id

PEER_PORT = 6881


def make_torrent(rng: random.Random, size: int, piece_length: int, name: str = "sim.bin") -> tuple[
    Info, bytes
]:
    """A single-file torrent of ``size`` seeded-random bytes, made in memory."""
    payload = rng.randbytes(size)
    hashes = b"".join(
        hashlib.sha1(payload[i : i + piece_length]).digest() for i in range(0, size, piece_length)
    )
    raw = build_info(
        name=name, files=None, length=size, piece_length=piece_length, piece_hashes=hashes
    )
    return parse_info(raw), payload


class SimTracker:
    """The tracker's pure swarm state, shared by every simulated node."""

    def __init__(self, rng: random.Random, interval: int = 300) -> None:
        self.state = TrackerState(
            TrackerConfig(interval=interval, min_interval=0),
            rng=rng,
        )
        self.announces = 0

    def announce(
        self, info_hash: bytes, peer_id: bytes, addr: PeerAddr, totals: TransferTotals,
        event: AnnounceEvent,
    ) -> tuple[list[PeerAddr], int]:
        self.announces += 1
        req = AnnounceRequest(
            info_hash=InfoHash(info_hash),
            peer_id=peer_id,
            port=addr.port,
            uploaded=totals.uploaded,
            downloaded=totals.downloaded,
            left=totals.left,
            event=event,
            numwant=50,
        )
        reply = self.state.announce(req, remote_ip=addr.host, now=trio.current_time())
        return [PeerAddr(p.ip, p.port) for p in reply.peers], reply.interval


class SimTrackerDiscovery:
    """A TorrentDiscovery that announces to a :class:`SimTracker` directly."""

    name = "tracker"

    def __init__(
        self, tracker: SimTracker, torrent: Torrent, addr: PeerAddr, sink: PeerSink
    ) -> None:
        self._tracker = tracker
        self._torrent = torrent
        self._addr = addr
        self._sink = sink
        self._wake = trio.Event()
        self._event = AnnounceEvent.STARTED

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        t = self._torrent
        try:
            while True:
                peers, interval = self._tracker.announce(
                    t.info_hash, t.peer_id, self._addr, t.totals(), self._event
                )
                self._event = AnnounceEvent.NONE
                self._sink(peers, self.name)
                with trio.move_on_after(interval):
                    await self._wake.wait()
                self._wake = trio.Event()
        finally:
            self._tracker.announce(
                t.info_hash, t.peer_id, self._addr, t.totals(), AnnounceEvent.STOPPED
            )

    def completed(self) -> None:
        self._event = AnnounceEvent.COMPLETED
        self._wake.set()


@dataclass(slots=True)
class SimNode:
    name: str
    host: str
    upload_rate: float
    session: Session
    torrent: Torrent
    storage: MemoryStorage
    seed: bool
    events: list[dict[str, Any]] = field(default_factory=list)


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
    start_gap: float = 0.5,
) -> list[SimNode]:
    """Start seeders then leechers (``start_gap`` seconds apart), each on a new simulated
    host 127.1.x.y (numbered on from the hosts the network already has)."""
    tracker = tracker or SimTracker(rng)
    nodes: list[SimNode] = []
    specs = [(True, r) for r in seed_rates] + [(False, r) for r in leecher_rates]
    first = len(net.links)  # hosts already on this network (earlier calls)
    for n, (is_seed, rate) in enumerate(specs):
        k = first + n
        host = f"127.1.{k // 250}.{k % 250 + 1}"
        name = f"seed{n}" if is_seed else f"leech{n - len(seed_rates)}"
        net.set_upload_rate(host, rate)
        events: list[dict[str, Any]] = []
        session = Session(
            net.view(host),
            SessionOptions(bind=host, port=PEER_PORT, peer_id=generate_peer_id(rng)),
            rng=random.Random(rng.random()),
            on_event=events.append,
        )
        addr = await nursery.start(session.run)
        storage = MemoryStorage(info, payload if is_seed else None)
        torrent = await session.add_torrent(info, storage, options or TorrentOptions())
        torrent.add_discovery(SimTrackerDiscovery(tracker, torrent, addr, torrent.add_peers))
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
            )
        )
        await trio.sleep(start_gap)
    return nodes


def payload_of(storage: MemoryStorage, info: Info) -> bytes:
    """The concatenated payload a MemoryStorage holds now (zeros where it has nothing)."""
    out = bytearray(info.total_length)
    for i, f in enumerate(info.files):
        data = storage.files.get(i)
        if data is not None and not f.pad:
            out[f.offset : f.offset + len(data)] = data
    return bytes(out)
