"""The tracker's swarm state, pure: announces and scrapes in, replies out; time is ``now``.

One :class:`TrackerState` holds a swarm per info-hash. The server feeds it parsed requests
with the connecting address and ``time.monotonic()``; simulations feed it the same with a
virtual clock. No sockets, no clock, no asyncio here; randomness comes from the
``random.Random`` the owner passes in, so a seeded run is repeatable.

Rules kept here:

- A peer is known by its peer id *and* by its address (ip:port); both are unique within a
  swarm. An announce from an address another peer id holds replaces that (stale) entry, as
  when a client restarts with a new peer id. A peer is never handed itself: every entry
  with its peer id or its address is its own entry. IPs alone never identify a peer (on
  loopback and behind NAT many peers share one).
- A peer id already announced from another IP may only move with the same ``key`` (the
  client's secret), so nobody can stop or move somebody else's entry by copying its peer id.
- The ``ip`` parameter is ignored unless ``trust_ip_param`` is set; then it must be an IP
  literal (no DNS in a pure core). IPv4-mapped IPv6 addresses count as IPv4.
- Seeders are peers with ``left == 0``. ``completed`` (scrape's ``downloaded``) counts
  finished downloads, once per peer entry: an ``event=completed``, or a peer we knew as a
  leecher announcing ``left=0`` (some clients go straight to ``stopped``). ``stopped``
  removes the peer and returns no peers.
- ``interval`` is the configured interval plus up to 10 % random jitter; ``min interval`` is
  half the interval (as opentracker sends). It is enforced: a regular announce (no event)
  sooner than ``min interval`` after that peer's previous one refreshes the peer but gets
  no peers, so hammering the tracker harvests nothing. Events are always served.
- A peer expires when it has not announced for two of the longest intervals we hand out;
  :meth:`TrackerState.purge` (the driver calls it periodically) drops expired peers, and
  swarms that stayed empty for ``swarm_timeout``.
- Caps: ``max_swarms`` swarms and ``max_peers_per_swarm`` peers per swarm; past them new
  entries are refused with a failure reason, existing ones keep working.

These rules are applied in one place, ``TrackerState._apply``, with one exception kept
equal to it: :meth:`TrackerState.reannounce_compact`, the UDP tracker's fast path, is what
``_apply`` does for a known peer announcing again from its address, written out flat
(tests/discovery/test_udp_tracker_fast.py checks the two agree on random announce
sequences). A change to the rules changes both, or makes the fast path decline that case.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torrentkit.discovery.tracker.protocol import (  # key_from_int: used here and re-exported
    DEFAULT_NUMWANT,
    MAX_NUMWANT,
    AnnounceEvent,
    AnnounceReply,
    AnnounceRequest,
    PeerInfo,
    ScrapeStats,
    TrackerRequestError,
    effective_numwant,
    key_from_int,
)
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import InfoHash

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_NONE = AnnounceEvent.NONE
#: Peers :meth:`TrackerState.reannounce_compact` remembers, at most (then it starts over;
#: :meth:`TrackerState.purge` empties it too, so removed peers are not kept long).
PEER_CACHE = 1 << 18
_COMPLETED = AnnounceEvent.COMPLETED


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerConfig:
    """How the tracker behaves. ``interval`` in seconds (BEP 3's ``interval``)."""

    interval: int = 1800
    #: ``min interval`` handed out and enforced; None: half the interval. 0 turns the
    #: early-announce rule off (benchmarks use it so that every announce does full work).
    min_interval: int | None = None
    trust_ip_param: bool = False
    max_swarms: int = 200_000
    max_peers_per_swarm: int = 50_000
    swarm_timeout: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise LocalProtocolError(f"interval must be at least 1 s, got {self.interval}")
        if self.min_interval is not None and not 0 <= self.min_interval <= self.interval:
            raise LocalProtocolError("min_interval must be between 0 and the interval")
        if self.max_swarms < 1 or self.max_peers_per_swarm < 1:
            raise LocalProtocolError("max_swarms and max_peers_per_swarm must be positive")

    @property
    def jitter(self) -> int:
        """Up to this many seconds are added to each ``interval`` handed out."""
        return self.interval // 10

    @property
    def announce_min_interval(self) -> int:
        if self.min_interval is not None:
            return self.min_interval
        return max(1, self.interval // 2)

    @property
    def peer_timeout(self) -> float:
        """A peer silent this long has missed two intervals and is dropped."""
        return 2.0 * (self.interval + self.jitter)


class _Peer:
    """One peer's entry (internal, mutable; satisfies ``protocol.PeerInfo``)."""

    __slots__ = (
        "compact",
        "completed",
        "index",
        "ip",
        "key",
        "key_code",
        "last_seen",
        "peer_id",
        "port",
        "seeder",
        "swarm",
    )

    def __init__(
        self, peer_id: bytes, ip: str, port: int, compact: bytes, key: bytes | None, now: float
    ) -> None:
        self.peer_id = peer_id
        self.ip = ip
        self.port = port
        self.compact = compact
        self.key = key
        #: The BEP 15 key ``key`` was last set from by :meth:`TrackerState.reannounce_compact`
        #: (``key == key_from_int(key_code)``), or None: a cheap "same key as before" test.
        self.key_code: int | None = None
        self.last_seen = now
        self.seeder = False
        self.completed = False
        #: The swarm that lists it and where (``swarm.peers[index] is self``); None once
        #: removed. (TrackerState.reannounce_compact finds a peer by these.)
        self.swarm: _Swarm | None = None
        self.index = 0


class _Swarm:
    """The peers of one info-hash: a list for O(k) random sampling plus two indexes."""

    __slots__ = ("by_addr", "by_id", "completed", "last_active", "packed", "peers", "seeders")

    def __init__(self, now: float) -> None:
        self.peers: list[_Peer] = []
        self.by_id: dict[bytes, int] = {}  # peer id -> index in peers
        self.by_addr: dict[bytes, bytes] = {}  # compact address -> peer id
        self.seeders = 0
        self.completed = 0
        self.last_active = now
        #: Every peer's compact address, in ``peers`` order, twice over; None after a change
        #: (rebuilt when next asked for). A small swarm's reply is one slice of it: the
        #: ``len(peers) - 1`` entries that follow the announcer's own.
        self.packed: bytes | None = None

    def add(self, peer: _Peer) -> None:
        self.packed = None
        peer.swarm, peer.index = self, len(self.peers)
        self.by_id[peer.peer_id] = peer.index
        self.by_addr[peer.compact] = peer.peer_id
        self.peers.append(peer)

    def remove(self, peer_id: bytes) -> None:
        self.packed = None
        index = self.by_id.pop(peer_id)
        peer = self.peers[index]
        peer.swarm = None
        del self.by_addr[peer.compact]
        if peer.seeder:
            self.seeders -= 1
        last = self.peers.pop()
        if index < len(self.peers):
            self.peers[index] = last
            self.by_id[last.peer_id] = last.index = index

    def move(self, peer: _Peer, ip: str, port: int, compact: bytes) -> None:
        self.packed = None
        del self.by_addr[peer.compact]
        peer.ip, peer.port, peer.compact = ip, port, compact
        self.by_addr[compact] = peer.peer_id


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStats:
    peer_id: bytes
    ip: str
    port: int
    seeder: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmStats:
    info_hash: InfoHash
    seeders: int
    leechers: int
    completed: int
    peers: tuple[PeerStats, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerStats:
    """Totals over every swarm, plus the largest swarms (and some of their peers) in detail."""

    torrents: int
    peers: int
    seeders: int
    leechers: int
    completed: int
    swarms: tuple[SwarmStats, ...]


def _packed(peers: list[_Peer]) -> bytes:
    """A swarm's ``packed``: its peers' compact addresses, in order, twice over."""
    once = b"".join([p.compact for p in peers])
    return once + once


def _canonical_ip(text: str) -> tuple[str, bytes]:
    """An IP literal as (canonical text, packed bytes); IPv4-mapped IPv6 becomes IPv4."""
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr), addr.packed


class TrackerRules:
    """What every swarm store shares: the config, the whitelist, the checks an announce
    passes before it touches a swarm (:meth:`admit`) and the reply it gets (:meth:`reply`).

    :class:`TrackerState` (in memory) and the Redis store
    (:mod:`torrentkit.discovery.tracker.redis_store`) both build on it, so the rules above
    that are not about one swarm's records live in one place.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        *,
        rng: random.Random | None = None,
        whitelist: Iterable[bytes] | None = None,
    ) -> None:
        self.config = config if config is not None else TrackerConfig()
        self._rng = rng if rng is not None else random.Random()
        self._whitelist: frozenset[bytes] | None = None
        self._ip_cache: dict[str, tuple[str, bytes]] = {}
        if whitelist is not None:
            self.set_whitelist(whitelist)

    @property
    def whitelist(self) -> frozenset[bytes] | None:
        return self._whitelist

    def set_whitelist(self, hashes: Iterable[bytes] | None) -> None:
        """Serve only these info-hashes (None: serve any)."""
        self._whitelist = None if hashes is None else frozenset(bytes(InfoHash(h)) for h in hashes)

    def allowed(self, info_hash: bytes) -> bool:
        return self._whitelist is None or info_hash in self._whitelist

    def _address(self, ip: str) -> tuple[str, bytes]:
        cached = self._ip_cache.get(ip)
        if cached is None:
            cached = _canonical_ip(ip)
            if len(self._ip_cache) >= 4096:
                self._ip_cache.clear()
            self._ip_cache[ip] = cached
        return cached

    def admit(self, req: AnnounceRequest, remote_ip: str) -> tuple[bytes, str, bytes]:
        """(info-hash, canonical IP, compact address) of an announce we serve.

        Raises :class:`TrackerRequestError` for an info-hash not on the whitelist or a bad
        ``ip`` parameter.
        """
        info_hash = bytes(req.info_hash)
        if not self.allowed(info_hash):
            raise TrackerRequestError("info_hash is not registered with this tracker")
        ip_text = remote_ip
        if self.config.trust_ip_param and req.ip is not None:
            ip_text = req.ip
        try:
            ip, packed = self._address(ip_text)
        except ValueError:
            raise TrackerRequestError("ip is not an IP address") from None
        return info_hash, ip, packed + req.port.to_bytes(2, "big")

    def interval(self) -> int:
        """The configured interval plus its jitter (0 to ``jitter`` s, uniform)."""
        config = self.config
        jitter = config.jitter
        return config.interval + (int(self._rng.random() * (jitter + 1)) if jitter else 0)

    def reply(self, complete: int, incomplete: int, peers: Sequence[PeerInfo]) -> AnnounceReply:
        """The reply: counts, peers, and the interval with its jitter."""
        return AnnounceReply(
            interval=self.interval(),
            min_interval=self.config.announce_min_interval,
            complete=complete,
            incomplete=incomplete,
            peers=peers,
        )


class TrackerState(TrackerRules):
    """Every swarm of one tracker, in this process's memory. See the module docstring."""

    def __init__(
        self,
        config: TrackerConfig | None = None,
        *,
        rng: random.Random | None = None,
        whitelist: Iterable[bytes] | None = None,
    ) -> None:
        self._swarms: dict[bytes, _Swarm] = {}
        #: info-hash + peer id -> that peer, for :meth:`reannounce_compact`: a cache (an
        #: entry whose peer was removed, ``swarm`` None, is looked up again); bounded, and
        #: emptied by :meth:`purge`.
        self._peer_cache: dict[bytes, _Peer] = {}
        #: Intervals drawn ahead for :meth:`reannounce_compact` (popped from the end).
        self._intervals: list[int] = []
        super().__init__(config, rng=rng, whitelist=whitelist)
        self._min_interval = self.config.announce_min_interval

    def set_whitelist(self, hashes: Iterable[bytes] | None) -> None:
        """Serve only these info-hashes (None: serve any). Swarms no longer listed are dropped."""
        super().set_whitelist(hashes)
        allowed = self._whitelist
        if allowed is not None:
            self._peer_cache.clear()  # its peers may be in swarms dropped here
            for h in [h for h in self._swarms if h not in allowed]:
                del self._swarms[h]

    # -- announce -----------------------------------------------------------------------------

    def announce(self, req: AnnounceRequest, *, remote_ip: str, now: float) -> AnnounceReply:
        """Apply one announce from ``remote_ip`` (the connecting address) at time ``now``.

        Raises :class:`TrackerRequestError` (its text is the failure reason) for a refused one.
        """
        info_hash, ip, compact = self.admit(req, remote_ip)
        peer_id = req.peer_id
        swarm, serve = self._apply(
            info_hash, peer_id, ip, req.port, compact, req.left, req.event, req.key, now
        )
        if swarm is None:
            return self.reply(0, 0, [])
        complete = swarm.seeders
        peers = self._pick(swarm, peer_id, req.numwant) if serve else []
        return self.reply(complete, len(swarm.peers) - complete, peers)

    def announce_compact(
        self,
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        left: int,
        event: AnnounceEvent,
        key: bytes | None,
        numwant: int | None,
        ip: str,
        now: float,
    ) -> tuple[int, int, int, bytes]:
        """:meth:`announce` from the request's fields, announcing from ``ip`` (the sender's
        address, or a trusted ``ip`` parameter), answered as (interval, seeders, leechers,
        the compact addresses of the peers handed out that share the announcer's address
        family): no request or reply object. The UDP tracker's path for this store
        (docs/tracker.md, "UDP"); same rules, same refusals.
        """
        if self._whitelist is not None and info_hash not in self._whitelist:
            raise TrackerRequestError("info_hash is not registered with this tracker")
        known = self._ip_cache.get(ip)
        if known is None:
            try:
                known = self._address(ip)
            except ValueError:
                raise TrackerRequestError("ip is not an IP address") from None
        ip, packed = known
        compact = packed + port.to_bytes(2, "big")
        swarm, serve = self._apply(info_hash, peer_id, ip, port, compact, left, event, key, now)
        if swarm is None:
            return self.interval(), 0, 0, b""
        complete = swarm.seeders
        peers = self._pick_compact(swarm, peer_id, numwant, len(compact)) if serve else b""
        # The interval after the pick, as announce() draws them: a seeded run gives both alike.
        return self.interval(), complete, len(swarm.peers) - complete, peers

    def reannounce_compact(
        self,
        info_hash_peer_id: bytes,
        compact: bytes,
        left: int,
        event: AnnounceEvent,
        key: int,
        numwant: int,
        now: float,
    ) -> tuple[int, int, int, bytes] | None:
        """:meth:`announce_compact`'s common case, flattened: a peer we know announcing
        again from the same address (``compact``: its packed IP and port) with ``event``
        none, started or completed, in a swarm whose every peer fits the reply (``numwant``
        as sent: negative for the default) and shares the announcer's address family.
        ``key`` is BEP 15's 32-bit key (kept as :func:`key_from_int` gives it, as
        :meth:`announce_compact`'s caller passes it). The same answer and the same changes
        to the swarm as :meth:`announce_compact`, or
        None, having changed nothing, for any other case (the caller then takes the general
        path). The UDP tracker's path for most announces (docs/tracker.md, "UDP").

        No whitelist check: a swarm we hold is on the whitelist (:meth:`set_whitelist`
        drops the others, and :meth:`_apply` creates only listed ones). Same address means
        same IP, so the peer's ``key`` needs no check (it is only updated), and no other
        entry holds the address.
        """
        peer = self._peer_cache.get(info_hash_peer_id)
        if peer is None or peer.swarm is None:
            peer = self._find(info_hash_peer_id)
            if peer is None:
                return None
        swarm = peer.swarm
        if peer.compact != compact or swarm is None:
            return None
        peers = swarm.peers
        index = peer.index
        n = len(peers)
        if numwant < 0:
            numwant = DEFAULT_NUMWANT
        elif numwant > MAX_NUMWANT:
            numwant = MAX_NUMWANT
        if not 0 < n - 1 <= numwant:
            return None
        stride = len(compact)
        packed = swarm.packed
        if packed is None:
            packed = swarm.packed = _packed(peers)
        if len(packed) != 2 * stride * n:
            return None
        # _apply's steps for this case, in effect.
        swarm.last_active = now
        seeder = left == 0
        if not peer.completed and ((seeder and not peer.seeder) or event is _COMPLETED):
            peer.completed = True
            swarm.completed += 1
        if seeder != peer.seeder:
            swarm.seeders += 1 if seeder else -1
            peer.seeder = seeder
        previous = peer.last_seen
        peer.last_seen = now
        if peer.key_code != key:
            peer.key = key_from_int(key)
            peer.key_code = key
        intervals = self._intervals
        if not intervals:
            intervals = self._draw_intervals()
        complete = swarm.seeders
        if event is _NONE and now - previous < self._min_interval:
            return intervals.pop(), complete, n - complete, b""  # early: no peers
        at = (index + 1) * stride
        return intervals.pop(), complete, n - complete, packed[at : at + stride * (n - 1)]

    def _find(self, info_hash_peer_id: bytes) -> _Peer | None:
        """The peer (info-hash + peer id) in its swarm, remembered in ``_peer_cache``."""
        swarm = self._swarms.get(info_hash_peer_id[:20])
        if swarm is None:
            return None
        index = swarm.by_id.get(info_hash_peer_id[20:])
        if index is None:
            return None
        cache = self._peer_cache
        if len(cache) >= PEER_CACHE:
            cache.clear()
        peer = cache[info_hash_peer_id] = swarm.peers[index]
        return peer

    def _draw_intervals(self) -> list[int]:
        """256 intervals as :meth:`interval` draws them, for :meth:`reannounce_compact`."""
        config = self.config
        base, span, draw = config.interval, config.jitter + 1, self._rng.random
        if span == 1:  # no jitter: no draw (interval() draws none either)
            self._intervals = [base] * 256
        else:
            self._intervals = [base + int(draw() * span) for _ in range(256)]
        return self._intervals

    def _apply(
        self,
        info_hash: bytes,
        peer_id: bytes,
        ip: str,
        port: int,
        compact: bytes,
        left: int,
        event: AnnounceEvent,
        key: bytes | None,
        now: float,
    ) -> tuple[_Swarm | None, bool]:
        """Apply one admitted announce: (its swarm, whether it is handed peers); no swarm
        for a ``stopped`` of a torrent we do not have."""
        config = self.config
        swarm = self._swarms.get(info_hash)
        stopping = event is AnnounceEvent.STOPPED
        if swarm is None:
            if stopping:
                return None, False
            if len(self._swarms) >= config.max_swarms:
                raise TrackerRequestError("tracker is full: too many torrents")
            swarm = self._swarms[info_hash] = _Swarm(now)
        swarm.last_active = now

        index = swarm.by_id.get(peer_id)
        peer = swarm.peers[index] if index is not None else None
        if peer is not None and peer.ip != ip and (peer.key is None or peer.key != key):
            raise TrackerRequestError("peer_id is in use from another address")
        holder = swarm.by_addr.get(compact)
        if holder is not None and holder != peer_id:
            swarm.remove(holder)  # a stale entry: its address now belongs to this peer id

        if peer is not None and not peer.completed and not peer.seeder and left == 0:
            # A leecher that now has everything finished a download here, whether or not it
            # says `completed` (aria2c with --seed-time=0 goes straight to `stopped`).
            peer.completed = True
            swarm.completed += 1

        if stopping:
            if peer is not None:
                swarm.remove(peer_id)
            return swarm, False

        fresh = peer is None
        if peer is None:
            if len(swarm.peers) >= config.max_peers_per_swarm:
                raise TrackerRequestError("tracker is full: too many peers on this torrent")
            peer = _Peer(peer_id, ip, port, compact, key, now)
            swarm.add(peer)
            previous = None
        else:
            previous = peer.last_seen
            peer.last_seen = now
            if peer.compact != compact:
                swarm.move(peer, ip, port, compact)
            if key is not None:
                peer.key = key
                peer.key_code = None

        seeder = left == 0
        if seeder != peer.seeder:
            swarm.seeders += 1 if seeder else -1
            peer.seeder = seeder
        if event is AnnounceEvent.COMPLETED and not peer.completed:
            peer.completed = True
            swarm.completed += 1

        early = (
            not fresh
            and event is AnnounceEvent.NONE
            and previous is not None
            and now - previous < config.announce_min_interval
        )
        return swarm, not early

    def _pick(self, swarm: _Swarm, peer_id: bytes, numwant: int | None) -> list[_Peer]:
        want = effective_numwant(numwant)
        peers = swarm.peers
        own = swarm.by_id[peer_id]
        n = len(peers)
        if want <= 0:
            return []
        if n - 1 <= want:
            return peers[:own] + peers[own + 1 :]
        chosen = [peers[i] for i in self._rng.sample(range(n), want + 1) if i != own]
        return chosen[:want]

    def _pick_compact(
        self, swarm: _Swarm, peer_id: bytes, numwant: int | None, stride: int
    ) -> bytes:
        """:meth:`_pick`'s peers as joined compact addresses, only those ``stride`` bytes
        long (the announcer's family). A swarm that fits the reply whole is its cached
        ``packed`` bytes without the announcer's own entry (the peers after it, then those
        before it): one slice, no per-peer work."""
        peers = swarm.peers
        n = len(peers)
        if 0 < n - 1 <= effective_numwant(numwant):
            packed = swarm.packed
            if packed is None:
                packed = swarm.packed = _packed(peers)
            if len(packed) == 2 * stride * n:  # one address family: the announcer's
                at = (swarm.by_id[peer_id] + 1) * stride
                return packed[at : at + stride * (n - 1)]
        chosen = self._pick(swarm, peer_id, numwant)
        return b"".join([p.compact for p in chosen if len(p.compact) == stride])

    # -- scrape, expiry, stats ----------------------------------------------------------------

    def scrape(self, info_hashes: Iterable[InfoHash]) -> dict[InfoHash, ScrapeStats]:
        """Counts for each listed info-hash we serve (zeros for an unknown one)."""
        out: dict[InfoHash, ScrapeStats] = {}
        for h in info_hashes:
            if not self.allowed(bytes(h)):
                continue
            swarm = self._swarms.get(bytes(h))
            if swarm is None:
                out[h] = ScrapeStats(complete=0, downloaded=0, incomplete=0)
            else:
                out[h] = ScrapeStats(
                    complete=swarm.seeders,
                    downloaded=swarm.completed,
                    incomplete=len(swarm.peers) - swarm.seeders,
                )
        return out

    def purge(self, now: float) -> int:
        """Drop peers that missed two intervals and long-empty swarms; return peers dropped."""
        # The peer cache forgets everything too: removed peers it still names (stopped ones,
        # these) are freed, and the live ones come back on their next announce.
        self._peer_cache.clear()
        deadline = now - self.config.peer_timeout
        swarm_deadline = now - self.config.swarm_timeout
        dropped = 0
        for h in list(self._swarms):
            swarm = self._swarms[h]
            stale = [p.peer_id for p in swarm.peers if p.last_seen < deadline]
            for peer_id in stale:
                swarm.remove(peer_id)
            dropped += len(stale)
            if not swarm.peers and swarm.last_active < swarm_deadline:
                del self._swarms[h]
        return dropped

    def __len__(self) -> int:
        return len(self._swarms)

    def stats(self, *, max_swarms: int = 50, max_peers: int = 20) -> TrackerStats:
        """Totals, and the ``max_swarms`` largest swarms with up to ``max_peers`` peers each.

        The defaults keep a stats page well under 1 MiB whatever the peer ids hold.
        """
        peers = seeders = completed = 0
        for swarm in self._swarms.values():
            peers += len(swarm.peers)
            seeders += swarm.seeders
            completed += swarm.completed
        largest = heapq.nsmallest(
            max_swarms, self._swarms.items(), key=lambda kv: (-len(kv[1].peers), kv[0])
        )
        detail = tuple(
            SwarmStats(
                info_hash=InfoHash(h),
                seeders=s.seeders,
                leechers=len(s.peers) - s.seeders,
                completed=s.completed,
                peers=tuple(
                    PeerStats(peer_id=p.peer_id, ip=p.ip, port=p.port, seeder=p.seeder)
                    for p in s.peers[:max_peers]
                ),
            )
            for h, s in largest
        )
        return TrackerStats(
            torrents=len(self._swarms),
            peers=peers,
            seeders=seeders,
            leechers=peers - seeders,
            completed=completed,
            swarms=detail,
        )


def parse_whitelist(text: str) -> frozenset[InfoHash]:
    """A whitelist file's text: 40-hex-digit info-hashes, one a line.

    Blank lines and lines starting with ``#`` are skipped. Raises ValueError naming the
    first bad line.
    """
    hashes: set[InfoHash] = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if _HEX40.fullmatch(entry) is None:
            raise ValueError(f"line {number}: expected 40 hex digits, got {entry[:60]!r}")
        hashes.add(InfoHash(bytes.fromhex(entry)))
    return frozenset(hashes)
