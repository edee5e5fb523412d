"""Does tit-for-tat work, and how would you cheat? Measured on the real engine.

Run: ``.venv/bin/python tools/incentives.py [--quick] [--runs R] [--seed K] [--json]
[--plot FILE.png] [--strategies NAME ...]``

The lecture says BitTorrent's tit-for-tat "gives peers incentive to share resources; avoids
freeloaders", that optimistic unchoking lets newcomers start, and that the claim of Pareto
efficiency is "a lie"; then it asks "Does it work? How would you cheat?". This tool answers
with the production engine (:class:`~torrentkit.engine.session.Session`,
:class:`~torrentkit.engine.torrent.Torrent`: picker, choker, peer wire, tracker client) on
the in-memory network (:class:`~torrentkit.testing.network.SimNetwork`) under trio's virtual
clock (``MockClock(autojump_threshold=0)``: idle time is skipped), every random choice
seeded. Only transports are simulated; the tracker is the real tracker core behind an
in-memory HTTP transport (:class:`~torrentkit.testing.swarm.SimTracker`).

The swarm (:class:`Config`): one seed (96 KiB/s) whose uplink is a fifth of the swarm's, so
that leechers mostly download from each other and what they upload decides what they get;
24 leechers in three upload classes (4 / 12 / 32 KiB/s, 8 each; every peer's upload limit
is 80% of its host uplink, as users are told to set it), all with a 64 KiB/s download
limit, joining ``start_gap`` apart; 4 MiB in 32 KiB pieces. Each leecher learns ``numwant``
(5) peers from the tracker per announce (every 60 s), plus whoever dials it, and keeps at
most ``view`` (10) connections, so its view is part of the swarm (the torrent is private:
no peer exchange, BEP 27, so the tracker alone sets who knows whom). A leecher seeds
``linger`` (20) seconds once complete, then leaves: a cheater gets little from altruistic
seeding, mostly from the seed, from tit-for-tat or from optimistic unchokes (and once the
seed has left, such a swarm can lose pieces for good: ``unfinished`` counts the leechers
that never completed). The *cheater slot* is the leecher that joins halfway, with the
medium class's capacities.

Strategies (each one run, the same seed, the cheater slot changed):

- ``honest``: the reference; everybody runs the engine's defaults (4 regular upload slots
  by tit-for-tat, 1 optimistic slot rotating every 30 s, 10 s rechokes).
- ``free_rider``: never uploads (the engine's ``upload_slots=0, optimistic_slots=0``: it
  never unchokes anyone).
- ``large_view``: a free rider that also asks the tracker for every peer (``numwant`` 1000)
  and keeps up to 200 connections instead of ``view``: each of them may pick it for an
  optimistic unchoke (the known exploit: optimistic unchokes scale with how many peers you
  know).
- ``strategic``: BitTyrant's idea (Piatek et al., NSDI 2007), as :class:`StrategicChoker`:
  give each peer just enough to stay in its tit-for-tat slots, and spread the upload over as
  many peers as that allows, ranked by what each returns per byte given. The same uplink
  as the medium class; per-peer rates through ``PeerLink.upload_cap``.
- ``seed_leaves``: all honest, but the seed leaves once the leechers hold two copies of
  every piece between them: they must finish among themselves (tit-for-tat without an
  altruist; a piece whose holders all completed and left is lost, and the run ends).
- ``free_rider_seed_leaves``: the free rider in that swarm.

Per strategy (``--json``: a list of objects with these keys):

- ``cheater_s``: the cheater slot's time to complete, mean over runs (null: some run never
  completed within ``time_limit``); ``cheater_vs_same_slot``: its ratio to the same slot's
  time in the ``honest`` run of the same seed (same capacities, same join time), mean of
  the per-run ratios; ``cheater_vs_class``: its ratio to the other medium-class leechers'
  mean time in the same run.
- ``honest_s``: the mean time of the honest leechers (every leecher but the cheater slot)
  that completed; ``honest_loss``: their mean time against the same leechers' in the
  ``honest`` run, minus one (0.05: 5% slower with the cheater than without), over those
  that completed in both.
- ``by_class``: per upload class, mean time, bytes uploaded and downloaded (the honest
  leechers of that class); ``unfinished``: leechers that never completed.
- ``cheater_up`` / ``cheater_down``: bytes the cheater uploaded and downloaded, mean;
  ``cheater_peers``: distinct peers it was connected to; ``cheater_first_piece_s``: join
  to its first verified piece; ``cheater_max_unchoked``: the most peers it had unchoked
  at once; ``cheater_from_seed``: the share of the payload bytes it
  received that came from the seed (the rest: leechers' unchokes).
- ``seed_left_s``: when the seed left (the ``seed_leaves`` strategies); ``runs``.

``--plot FILE.png``: times to complete per strategy (honest leechers by class, and the
cheater slot). Needs matplotlib (``pip install 'torrentkit[plots]'``).

Runs are seeded: the payload, join order, peer ids, the engine's, the network's and the
tracker's randomness come from ``--seed``, and trio's scheduler order is seeded too. A
rerun still differs somewhat, since a few engine sets iterate in object-identity order
and a swarm amplifies any difference (one peer finishing a piece first changes who
unchokes whom); so ``--runs`` averages over that many seeds (default 4: 24 runs, about 5
CPU minutes, under 3 minutes on 2 free cores; ``--quick``: 12 leechers, 2 MiB).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import trio
import trio.testing

from torrentkit.discovery.tracker.client import TrackerClientConfig
from torrentkit.engine.choker import Choker, PeerStats, Reason, RechokeResult
from torrentkit.engine.peer import PeerLink
from torrentkit.engine.ratelimit import RateLimiter
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import Torrent, TorrentOptions
from torrentkit.events import (
    Choked,
    Event,
    PeerConnected,
    PeerDisconnected,
    PieceVerified,
    Unchoked,
)
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import PEER_PORT, SimTracker, make_torrent, payload_of
from torrentkit.wire.peer_id import generate_peer_id

KIB = 1024
MIB = 1024 * KIB

STRATEGIES = (
    "honest",
    "free_rider",
    "large_view",
    "strategic",
    "seed_leaves",
    "free_rider_seed_leaves",
)


@dataclass(frozen=True, slots=True)
class Config:
    """One swarm's shape. Rates in bytes/s, sizes in bytes, times in virtual seconds."""

    size: int = 4 * MIB
    piece_length: int = 32 * KIB
    seed_rate: float = 96 * KIB
    #: (upload rate, leechers) per class, slowest first; the cheater has the middle class's.
    classes: tuple[tuple[float, int], ...] = ((4 * KIB, 8), (12 * KIB, 8), (32 * KIB, 8))
    down_limit: float = 64 * KIB
    #: Each host's uplink is its upload limit / ``headroom``: as users are told to, every
    #: peer limits its upload below its line, so that its requests and HAVEs are not stuck
    #: behind a full uplink of piece data (a free rider's empty uplink would otherwise give
    #: it faster requests than any honest peer).
    headroom: float = 0.8
    numwant: int = 5
    #: Connections a leecher keeps at most (``max_peers``): a client's view of a big swarm
    #: is a few dozen of its thousands of peers; here 10 of 24 (without a cap, re-announces
    #: and incoming dials connect everyone to nearly everyone within minutes).
    view: int = 10
    tracker_interval: int = 60
    #: Seconds a leecher keeps seeding once complete, then it leaves.
    linger: float = 20.0
    start_gap: float = 0.5
    latency: float = 0.02
    time_limit: float = 4 * 3600.0

    @property
    def leechers(self) -> int:
        return sum(n for _, n in self.classes)


QUICK = Config(
    size=2 * MIB, seed_rate=48 * KIB, classes=((4 * KIB, 4), (12 * KIB, 4), (32 * KIB, 4))
)


# --------------------------------------------------------------------------- strategic peer


class StrategicChoker(Choker[PeerLink]):
    """BitTyrant's unchoke policy while leeching (honest round robin once complete).

    For each peer ``p`` it keeps ``u[p]``, the upload rate it believes ``p`` needs to keep it
    in ``p``'s tit-for-tat slots, and ``d[p]``, the rate ``p`` sends back while doing so. At
    each rechoke:

    - ``d[p]`` is the measured rate from ``p`` while ``p`` unchokes us; otherwise an estimate
      from how fast ``p`` announces pieces (HAVE messages) shared over an honest peer's
      5 slots, which is what ``p`` would give us.
    - ``u[p]`` starts at that same estimate (an honest peer gives ``p``'s equal-split
      rate, so matching it is a fair first guess); it shrinks by 10% each round ``p`` kept
      us unchoked (``p`` would still reciprocate for less) and grows by 20% each round ``p``
      chokes us while we upload to it (not enough to stay in its slots). BitTyrant shrinks
      only after three reciprocated rounds; here every round, as these downloads last tens
      of rounds, not hundreds.
    - Peers are unchoked in order of ``d[p] / u[p]`` (most back per byte given) until the
      sum of ``u[p]`` reaches the uplink (``capacity``), each capped at ``u[p]``
      (``PeerLink.upload_cap``): many peers each get just enough, instead of 4 peers
      sharing the uplink equally. There is no separate optimistic slot: peers never tried
      rank by their estimate, so new peers are tried as soon as they look worthwhile.
    """

    def __init__(self, *, rng: random.Random, capacity: float, piece_length: int) -> None:
        super().__init__(rng=rng, slots=1000, optimistic_slots=0)
        self.capacity = capacity
        self.piece_length = piece_length
        self._u: dict[PeerLink, float] = {}
        self._d: dict[PeerLink, float] = {}
        self._seen: dict[PeerLink, tuple[float, int]] = {}  # first (time, pieces) seen
        self._caps: dict[PeerLink, RateLimiter] = {}

    def _have_rate(self, now: float, link: PeerLink) -> float:
        """How fast ``link`` gains pieces (bytes/s), since we first saw it."""
        pieces = link.conn.peer_have_count
        first = self._seen.setdefault(link, (now, pieces))
        elapsed = now - first[0]
        if elapsed < 1.0:
            return 0.0
        return (pieces - first[1]) * self.piece_length / elapsed

    def rechoke(
        self, now: float, peers: Iterable[PeerStats[PeerLink]], *, seeding: bool = False
    ) -> RechokeResult[PeerLink]:
        stats = {s.peer: s for s in peers}
        for table in (self._u, self._d, self._seen, self._caps):
            for gone in [p for p in table if p not in stats]:
                del table[gone]
        if seeding:
            for cap in self._caps.values():
                cap.set_rate(0)  # no per-peer limits: the honest round robin
            return super().rechoke(now, stats.values(), seeding=True)
        floor = self.capacity / 50  # below this a peer is not worth a slot
        for s in stats.values():
            p = s.peer
            estimate = max(self._have_rate(now, p) / 5, floor)
            u = self._u.get(p)
            if s.unchoked_us_at is not None:  # p reciprocates
                self._d[p] = max(s.download_rate, floor)
                if u is not None and self.is_unchoked(p):
                    self._u[p] = max(u * 0.9, floor)
            else:
                self._d[p] = estimate
                if u is not None and self.is_unchoked(p):
                    self._u[p] = min(u * 1.2, self.capacity)
            self._u.setdefault(p, estimate)
        interested = [s.peer for s in stats.values() if s.interested]
        self._rng.shuffle(interested)
        interested.sort(key=lambda p: -self._d[p] / self._u[p])
        chosen: dict[PeerLink, Reason] = {}
        budget = self.capacity
        for p in interested:
            if budget <= 0:
                break
            chosen[p] = "rate"
            rate = min(self._u[p], budget)
            budget -= rate
            old = self._caps.get(p)
            if old is None:
                p.upload_cap = self._caps[p] = RateLimiter(rate)
            else:
                old.set_rate(rate)
        return self._commit(now, stats, chosen, [], snub_reasons=True)

    def fill(
        self, now: float, peers: Iterable[PeerStats[PeerLink]], *, seeding: bool = False
    ) -> RechokeResult[PeerLink]:
        if seeding:
            return super().fill(now, peers, seeding=True)
        # Between rechokes only release the peers that lost interest; the next rechoke
        # spends their share.
        stats = {s.peer: s for s in peers}
        self._forget(stats)
        keep = {p: r for p, r in self.unchoked.items() if stats[p].interested}
        return self._commit(now, stats, keep, [], snub_reasons=False)


# --------------------------------------------------------------------------- the swarm


@dataclass(frozen=True, slots=True)
class PeerResult:
    """What one node of one run did. ``seconds``: join to complete (None: never, within
    ``time_limit`` or before a piece died out); ``first_piece``: join to its first verified
    piece; ``from_seed``: payload bytes it received from the seed (the rest came from
    leechers); for the seed, ``seconds`` is when it left (None: it stayed)."""

    name: str
    kind: str  # "seed", "honest" or a cheating strategy
    klass: int  # index into Config.classes (-1: the seed)
    slot: bool  # the cheater slot (honest in the honest and seed_leaves runs)
    seconds: float | None
    first_piece: float | None
    uploaded: int
    downloaded: int
    from_seed: int
    peers: int  # distinct peers it was connected to, over the run
    max_unchoked: int  # most peers it had unchoked at once


@dataclass(slots=True)
class _Node:
    name: str
    kind: str
    klass: int
    slot: bool
    up_rate: float
    host: str = ""
    joined: float = 0.0
    finished: float | None = None
    first_piece: float | None = None
    from_seed: int = 0
    gone: dict[str, int] = field(default_factory=dict)  # host -> bytes, links that ended
    met: set[str] = field(default_factory=set)  # hosts it was connected to
    unchoked: set[str] = field(default_factory=set)  # peers it has unchoked now
    max_unchoked: int = 0
    torrent: Torrent | None = None
    storage: MemoryStorage | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def on_event(self, event: Event) -> None:
        if isinstance(event, PieceVerified) and self.first_piece is None:
            self.first_piece = trio.current_time() - self.joined
        elif isinstance(event, PeerConnected):
            self.met.add(event.peer.rsplit(":", 1)[0])
        elif isinstance(event, Unchoked):
            self.unchoked.add(event.peer)
            self.max_unchoked = max(self.max_unchoked, len(self.unchoked))
        elif isinstance(event, Choked):
            self.unchoked.discard(event.peer)
        elif isinstance(event, PeerDisconnected):
            self.unchoked.discard(event.peer)
            host = event.peer.rsplit(":", 1)[0]
            self.gone[host] = self.gone.get(host, 0) + event.downloaded

    def received_from(self, host: str) -> int:
        assert self.torrent is not None
        live = sum(link.downloaded for link in self.torrent.links if link.addr.host == host)
        return self.gone.get(host, 0) + live

    def result(self) -> PeerResult:
        assert self.torrent is not None
        seconds = None if self.finished is None else self.finished - self.joined
        return PeerResult(
            name=self.name,
            kind=self.kind,
            klass=self.klass,
            slot=self.slot,
            seconds=seconds,
            first_piece=self.first_piece,
            uploaded=self.torrent.uploaded,
            downloaded=self.torrent.downloaded,
            from_seed=self.from_seed,
            peers=len(self.met),
            max_unchoked=self.max_unchoked,
        )


def cheater_kind(strategy: str) -> str:
    """What the cheater slot runs in ``strategy``."""
    return {"seed_leaves": "honest", "free_rider_seed_leaves": "free_rider"}.get(strategy, strategy)


def _options(cfg: Config, kind: str, up_rate: float) -> TorrentOptions:
    rider = kind in ("free_rider", "large_view")
    default = TorrentOptions()
    return TorrentOptions(
        max_peers={"large_view": 200, "seed": default.max_peers}.get(kind, cfg.view),
        down_limit=0 if kind == "seed" else cfg.down_limit,
        up_limit=up_rate,
        upload_slots=0 if rider else default.upload_slots,
        optimistic_slots=0 if rider else default.optimistic_slots,
    )


async def run_swarm(cfg: Config, strategy: str, seed: int) -> list[PeerResult]:
    """One swarm to the end: every leecher complete, ``time_limit`` passed, or (once the
    seed has left) a piece no remaining peer holds. The seed first, then the leechers."""
    rng = random.Random(seed)
    info, payload = make_torrent(rng, cfg.size, cfg.piece_length, private=True)
    net = SimNetwork(rng, latency=cfg.latency)
    tracker = SimTracker(rng, interval=cfg.tracker_interval)
    seed_leaves = strategy in ("seed_leaves", "free_rider_seed_leaves")
    order = [k for k, (_, count) in enumerate(cfg.classes) for _ in range(count)]
    rng.shuffle(order)
    middle = len(cfg.classes) // 2
    order.remove(middle)  # the cheater slot: medium class, joins halfway
    slot = len(order) // 2
    order.insert(slot, middle)
    seed_node = _Node("seed", "seed", -1, False, cfg.seed_rate)
    leechers = [
        _Node(
            f"leecher{i}",
            cheater_kind(strategy) if i == slot else "honest",
            k,
            i == slot,
            cfg.classes[k][0],
        )
        for i, k in enumerate(order)
    ]
    nodes = [seed_node, *leechers]
    done = trio.Event()

    def check_done() -> None:
        if all(n.finished is not None for n in leechers):
            done.set()

    async def run_node(node: _Node, task_status: trio.TaskStatus[None]) -> None:
        node.host = host = f"127.2.0.{len(net.links) + 1}"
        net.set_upload_rate(host, node.up_rate / cfg.headroom)
        session = Session(
            net.view(host),
            SessionOptions(bind=host, port=PEER_PORT, peer_id=generate_peer_id(rng)),
            rng=random.Random(rng.random()),
            on_event=node.on_event,
        )
        with node.scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(session.run)
                is_seed = node.kind == "seed"
                storage = MemoryStorage(info, payload if is_seed else None)
                torrent = session.new_torrent(info, storage, _options(cfg, node.kind, node.up_rate))
                if node.kind == "strategic":
                    torrent.choker = StrategicChoker(
                        rng=random.Random(rng.random()),
                        capacity=node.up_rate,
                        piece_length=cfg.piece_length,
                    )
                session.attach(torrent)
                await nursery.start(torrent.run)
                numwant = 1000 if node.kind == "large_view" else cfg.numwant
                torrent.add_discovery(
                    tracker.discovery(
                        torrent,
                        host,
                        random.Random(rng.random()),
                        TrackerClientConfig(numwant=numwant),
                    )
                )
                node.torrent, node.storage = torrent, storage
                node.joined = trio.current_time()
                task_status.started()
                if is_seed:
                    await trio.sleep_forever()
                await torrent.complete.wait()
                node.finished = trio.current_time()
                node.from_seed = node.received_from(seed_node.host)
                check_done()
                await trio.sleep(cfg.linger)
                node.scope.cancel()

    def pieces_left() -> bool:
        """Do the peers still here hold every piece between them?"""
        here = [n.torrent for n in nodes if n.torrent is not None and not n.scope.cancel_called]
        return all(any(t.picker.have(i) for t in here) for i in range(info.num_pieces))

    async def seed_leaving() -> None:
        """The seed leaves once the leechers hold two whole copies between them (every
        piece on two leechers at least); from then on, stop the run if a piece dies out
        (its last holders completed and left)."""
        while not done.is_set():
            await trio.sleep(1.0)
            held = [n.torrent for n in leechers if n.torrent is not None]
            if all(sum(t.picker.have(i) for t in held) >= 2 for i in range(info.num_pieces)):
                break
        seed_node.finished = trio.current_time()
        seed_node.scope.cancel()
        while not done.is_set():
            await trio.sleep(10.0)
            if not pieces_left():
                done.set()

    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(run_node, node)
            await trio.sleep(cfg.start_gap)
        if seed_leaves:
            nursery.start_soon(seed_leaving)
        with trio.move_on_after(cfg.time_limit):
            await done.wait()
        nursery.cancel_scope.cancel()
    for node in leechers:
        if node.finished is not None:
            assert node.storage is not None
            if payload_of(node.storage, info) != payload:
                raise AssertionError(f"{node.name} completed with wrong data")
    return [n.result() for n in nodes]


def simulate(cfg: Config, strategy: str, seed: int) -> list[PeerResult]:
    """:func:`run_swarm` under trio's virtual clock, with trio's scheduler order seeded too
    (the switch pytest-trio's Hypothesis support uses), so a run repeats."""
    import trio._core._run as trio_run

    saved = trio_run._ALLOW_DETERMINISTIC_SCHEDULING, trio_run._r.getstate()
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio_run._r.seed(seed)
    try:
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(run_swarm, cfg, strategy, seed, clock=clock)
    finally:
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = saved[0]  # type: ignore[misc]
        trio_run._r.setstate(saved[1])


# --------------------------------------------------------------------------- the numbers


@dataclass(frozen=True, slots=True)
class ClassRow:
    up_rate: float  # bytes/s
    seconds: float | None  # mean time to complete of the honest leechers of this class
    uploaded: float  # mean bytes uploaded per leecher
    downloaded: float


@dataclass(frozen=True, slots=True)
class Row:
    """One strategy, averaged over the runs (module docstring: the JSON keys)."""

    strategy: str
    cheater: str
    runs: int
    cheater_s: float | None
    cheater_vs_same_slot: float | None
    cheater_vs_class: float | None
    cheater_first_piece_s: float | None
    cheater_from_seed: float | None  # share of its received bytes that came from the seed
    cheater_up: float
    cheater_down: float
    cheater_peers: float  # distinct peers it was connected to
    cheater_max_unchoked: int  # most peers it had unchoked at once (max over the runs)
    honest_s: float | None
    honest_loss: float | None
    unfinished: int
    seed_left_s: float | None
    by_class: list[ClassRow]


def _mean(xs: Iterable[float | None]) -> float | None:
    """The mean, or None when any value is None (something never completed) or none given."""
    values = list(xs)
    if not values or any(x is None for x in values):
        return None
    return statistics.fmean(x for x in values if x is not None)


def _mean_done(xs: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None (None if there are none)."""
    values = [x for x in xs if x is not None]
    return statistics.fmean(values) if values else None


def summarize(cfg: Config, runs: dict[str, dict[int, list[PeerResult]]]) -> list[Row]:
    """``runs[strategy][seed]``: one run's nodes. Needs the ``honest`` runs of every seed."""
    base = runs["honest"]
    middle = len(cfg.classes) // 2
    rows: list[Row] = []
    for strategy, by_seed in runs.items():
        slot_s, vs_slot, vs_class, first, from_seed = [], [], [], [], []
        up, down, met, most = [], [], [], []
        honest_s: list[float | None] = []
        loss: list[float | None] = []
        unfinished = 0
        seed_left: list[float | None] = []
        per_class: dict[int, list[PeerResult]] = {}
        for seed, nodes in by_seed.items():
            seed_node, leechers = nodes[0], nodes[1:]
            seed_left.append(seed_node.seconds)
            unfinished += sum(n.seconds is None for n in leechers)
            cheater = next(n for n in leechers if n.slot)
            honest = [n for n in leechers if not n.slot]
            ref = {n.name: n for n in base[seed][1:]}
            ref_slot = next(n for n in base[seed][1:] if n.slot)
            slot_s.append(cheater.seconds)
            vs_slot.append(
                None
                if cheater.seconds is None or ref_slot.seconds is None
                else cheater.seconds / ref_slot.seconds
            )
            peers = _mean_done(n.seconds for n in honest if n.klass == middle)
            vs_class.append(
                None if cheater.seconds is None or peers is None else cheater.seconds / peers
            )
            first.append(cheater.first_piece)
            from_seed.append(cheater.from_seed / cheater.downloaded if cheater.downloaded else None)
            up.append(cheater.uploaded)
            down.append(cheater.downloaded)
            met.append(cheater.peers)
            most.append(cheater.max_unchoked)
            # over the honest leechers that completed in both runs
            both = [n for n in honest if n.seconds is not None and ref[n.name].seconds]
            mean_here = _mean_done(n.seconds for n in both)
            mean_ref = _mean_done(ref[n.name].seconds for n in both)
            honest_s.append(_mean_done(n.seconds for n in honest))
            loss.append(None if mean_here is None or mean_ref is None else mean_here / mean_ref - 1)
            for n in honest:
                per_class.setdefault(n.klass, []).append(n)
        by_class = [
            ClassRow(
                up_rate=rate,
                seconds=_mean_done(n.seconds for n in per_class.get(k, [])),
                uploaded=statistics.fmean(n.uploaded for n in per_class.get(k, [])),
                downloaded=statistics.fmean(n.downloaded for n in per_class.get(k, [])),
            )
            for k, (rate, _) in enumerate(cfg.classes)
        ]
        rows.append(
            Row(
                strategy=strategy,
                cheater=cheater_kind(strategy),
                runs=len(by_seed),
                cheater_s=_mean(slot_s),
                cheater_vs_same_slot=_mean(vs_slot),
                cheater_vs_class=_mean(vs_class),
                cheater_first_piece_s=_mean(first),
                cheater_from_seed=_mean(from_seed),
                cheater_up=statistics.fmean(up),
                cheater_down=statistics.fmean(down),
                cheater_peers=statistics.fmean(met),
                cheater_max_unchoked=max(most),
                honest_s=_mean_done(honest_s),
                honest_loss=_mean_done(loss),
                unfinished=unfinished,
                seed_left_s=_mean(seed_left) if seed_left and seed_left[0] is not None else None,
                by_class=by_class,
            )
        )
    return rows


def _run_one(job: tuple[Config, str, int]) -> tuple[str, int, list[PeerResult]]:
    cfg, strategy, seed = job
    return strategy, seed, simulate(cfg, strategy, seed)


def measure(
    cfg: Config, strategies: Sequence[str], seeds: Sequence[int], *, jobs: int = 1
) -> list[Row]:
    """Every strategy (``honest`` always, as the reference) on every seed; ``jobs`` runs
    side by side in worker processes (each run is independent)."""
    wanted = ["honest", *(s for s in strategies if s != "honest")]
    work = [(cfg, strategy, seed) for strategy in wanted for seed in seeds]
    runs: dict[str, dict[int, list[PeerResult]]] = {s: {} for s in wanted}
    if jobs <= 1:
        done = map(_run_one, work)
        for strategy, seed, nodes in done:
            runs[strategy][seed] = nodes
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for strategy, seed, nodes in pool.map(_run_one, work):
                runs[strategy][seed] = nodes
    return summarize(cfg, runs)


# --------------------------------------------------------------------------- output


def _secs(x: float | None) -> str:
    return "never" if x is None else f"{x:.0f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.0f}%"


def table(rows: Sequence[Row], cfg: Config) -> str:
    names = "/".join(f"{rate / KIB:g}" for rate, _ in cfg.classes)
    head = (
        "strategy                 cheater s  vs same slot  vs class  from seed  peers  up MiB  "
        f"honest s  honest loss  by class ({names} KiB/s up) s"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        classes = " / ".join(_secs(c.seconds) for c in r.by_class)
        seed_share = "-" if r.cheater_from_seed is None else f"{100 * r.cheater_from_seed:.0f}%"
        lines.append(
            f"{r.strategy:<24} {_secs(r.cheater_s):>9}  {_ratio(r.cheater_vs_same_slot):>12}"
            f"  {_ratio(r.cheater_vs_class):>8}  {seed_share:>9}  {r.cheater_peers:>5.0f}"
            f"  {r.cheater_up / MIB:>6.1f}  {_secs(r.honest_s):>8}"
            f"  {_pct(r.honest_loss):>11}  {classes}"
            + (f"  ({r.unfinished} never completed)" if r.unfinished else "")
        )
    return "\n".join(lines)


def verdicts(rows: Sequence[Row], cfg: Config) -> list[str]:
    """One line per lecture claim, from the numbers (only the strategies that ran)."""
    by = {r.strategy: r for r in rows}
    out: list[str] = []
    rider, alone = by.get("free_rider"), by.get("free_rider_seed_leaves")
    if rider is not None:
        text = (
            "tit-for-tat avoids freeloaders: the free rider took"
            f" {_ratio(rider.cheater_vs_same_slot)} the time of an honest peer in its place"
        )
        if rider.cheater_from_seed is not None:
            text += f" ({100 * rider.cheater_from_seed:.0f}% of its bytes from the seed)"
        if alone is not None and alone.cheater_vs_same_slot is not None:
            text += f"; once the seed leaves, {_ratio(alone.cheater_vs_same_slot)}"
        elif alone is not None:
            text += (
                f"; once the seed leaves, {alone.unfinished} of {alone.runs * cfg.leechers}"
                " leechers never completed, the free rider among them"
            )
        view = by.get("large_view")
        if view is not None:
            text += f"; with a large view, {_ratio(view.cheater_vs_same_slot)}"
        out.append(text)
    firsts = [r.cheater_first_piece_s for r in rows if r.cheater in ("free_rider", "large_view")]
    honest = by["honest"]
    if firsts and all(f is not None for f in firsts):
        out.append(
            "optimistic unchoke lets newcomers start: a free rider, which gives nothing, got its"
            f" first piece {max(f for f in firsts if f is not None):.0f} s after joining at worst"
            f" (an honest peer in its place: {_secs(honest.cheater_first_piece_s)} s)"
        )
    tyrant = by.get("strategic")
    if tyrant is not None:
        fast, slow = honest.by_class[-1], honest.by_class[0]
        out.append(
            f"Pareto efficient: the strategic uploader took {_ratio(tyrant.cheater_vs_same_slot)}"
            f" the time of an honest peer in its place, the honest peers {_pct(tyrant.honest_loss)}"
            f"; honest fast peers uploaded {fast.uploaded / max(fast.downloaded, 1):.2f} bytes per"
            f" byte downloaded, slow ones {slow.uploaded / max(slow.downloaded, 1):.2f}"
        )
    return out


def plot(rows: Sequence[Row], cfg: Config, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.8 / (len(cfg.classes) + 1)
    xs = range(len(rows))
    for k, (rate, _) in enumerate(cfg.classes):
        ax.bar(
            [x + k * width for x in xs],
            [r.by_class[k].seconds or 0 for r in rows],
            width,
            label=f"honest, {rate / KIB:g} KiB/s up",
        )
    ax.bar(
        [x + len(cfg.classes) * width for x in xs],
        [r.cheater_s or 0 for r in rows],
        width,
        label=f"cheater slot ({cfg.classes[len(cfg.classes) // 2][0] / KIB:g} KiB/s class)",
        color="black",
    )
    ax.set_xticks([x + 0.4 - width / 2 for x in xs])
    ax.set_xticklabels([r.strategy.replace("_", " ") for r in rows], fontsize=8)
    ax.set_ylabel("time to complete (virtual s)")
    ax.set_title(
        f"{cfg.leechers} leechers, {cfg.size // MIB} MiB, seed {cfg.seed_rate / KIB:g} KiB/s"
        f" (mean of {rows[0].runs} runs)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small swarm (12 leechers, 2 MiB)")
    p.add_argument("--runs", type=int, default=4, help="seeds per strategy (default 4)")
    p.add_argument("--seed", type=int, default=1, help="the first seed (default 1)")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    p.add_argument(
        "--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES), metavar="NAME"
    )
    p.add_argument("--json", action="store_true", help="a JSON list of rows on stdout")
    p.add_argument("--plot", metavar="FILE.png", help="times to complete per strategy")
    args = p.parse_args(argv)
    if args.runs < 1 or args.jobs < 1:
        p.error("--runs and --jobs must be at least 1")
    cfg = QUICK if args.quick else Config()
    started = time.monotonic()
    seeds = list(range(args.seed, args.seed + args.runs))
    rows = measure(cfg, args.strategies, seeds, jobs=args.jobs)
    wall = time.monotonic() - started
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        print(table(rows, cfg))
        print()
        for line in verdicts(rows, cfg):
            print(line)
    print(f"{len(rows) * len(seeds)} runs in {wall:.0f} s", file=sys.stderr)
    if args.plot:
        try:
            plot(rows, cfg, args.plot)
        except ImportError:
            print(
                "note: --plot needs matplotlib (pip install 'torrentkit[plots]')", file=sys.stderr
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
