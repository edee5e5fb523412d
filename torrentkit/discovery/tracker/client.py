"""Tracker client: HTTP (BEP 3, BEP 7, BEP 12, BEP 23, BEP 48) with httpx, and UDP (BEP 15,
BEP 41) with :mod:`.udp_client`, on trio.

Two parts, as everywhere in torrentkit:

- :class:`TrackerTiers`, the pure schedule (no sockets, no trio, no clock; ``now`` is passed
  in). It holds the announce-list and decides which tracker to ask next, with which event, and
  when.
- :class:`TrackerDiscovery`, the thin trio driver: one task that sleeps until the schedule says
  "announce", asks trackers over HTTP with httpx, feeds the peers it learns to the engine, and
  sends ``event=stopped`` when cancelled.

Both it and :class:`TrackerEndpoint` (one tracker URL as docs/design.md's ``Discovery``: join,
publish, search, withdraw) send every request through the one :func:`announce`.

The rules (all in :class:`TrackerTiers`):

- Tiers (BEP 12): the URLs of each tier are shuffled once at start. A round tries trackers in
  order, first tier first, and stops at the first that answers; that one moves to the front of
  its tier. Trackers that failed are skipped until their backoff has passed. Only the listed
  trackers are ever asked (a private torrent needs nothing more). ``http``, ``https`` and
  ``udp`` (BEP 15) URLs mix freely in a tier; other schemes are skipped with a logged note,
  not an error.
- Events, per tracker: the first announce a tracker sees is ``started``; after
  :meth:`TrackerTiers.completed`, the next successful announce carries ``completed`` (once);
  ``stopped`` goes to every tracker that may have seen a ``started`` when :meth:`~.run` is
  cancelled (in a shielded scope with a short timeout, so Ctrl-C still stops promptly).
- Timing: after a reply, the next regular announce is ``max(interval, min interval, floor)``
  later. Nothing announces sooner than ``min interval`` except the events: ``completed`` goes
  at once, and :meth:`TrackerTiers.announce_soon` (the engine wants peers) waits for
  ``min interval`` since the last reply.
- Errors (docs/limits.md item 10): a transport error, timeout, HTTP status other than 200, a body
  over 1 MiB, a reply that is not bencoded or breaks the format, or a ``failure reason`` are
  logged and count as one failure of that tracker; so do a UDP tracker's silence through one
  exchange's retransmissions (at most 45 s by default, see :mod:`.udp`) and its error packets.
  Each failure goes to ``on_error`` (the session shows it as a ``tracker_error`` event). Its
  retry waits ``15 s x 2^(failures-1)``, capped at 30 min, times a jitter factor in
  ``[1 - jitter, 1]``; the round moves on to the next tracker. Nothing from a
  tracker ever raises out of :meth:`TrackerDiscovery.run`.

Times in :class:`TrackerStatus` are on the clock the driver passes (``trio.current_time()``).
"""

from __future__ import annotations

import logging
import math
import os
import random
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import trio

import torrentkit
from torrentkit.discovery.base import Listing, NetworkError, PeerSink, TransferTotals
from torrentkit.discovery.tracker.protocol import (
    MAX_RESPONSE_SIZE,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
    TrackerFailure,
    TrackerResponseError,
    announce_url,
    parse_announce_response,
    parse_scrape_response,
    scrape_url,
)
from torrentkit.discovery.tracker.udp import RetryPolicy
from torrentkit.discovery.tracker.udp_client import UdpTrackerClient, UdpUnreachable
from torrentkit.errors import LocalProtocolError, RemoteProtocolError, TorrentkitError
from torrentkit.ids import InfoHash, PeerAddr

if TYPE_CHECKING:
    # httpx (~30 ms of CPU to import and set up, with http.client, email and the rest) is
    # imported when the first http(s) tracker is asked: a torrent whose trackers are all UDP,
    # as most public ones are, never loads it.
    import httpx

#: The HTTP client an announce uses for http(s) URLs: a client, or a function that makes or
#: returns one on first use (so a UDP-only torrent never creates one).
HttpClient: TypeAlias = "httpx.AsyncClient | Callable[[], httpx.AsyncClient]"

log = logging.getLogger(__name__)

_SUPPORTED_SCHEMES = frozenset({"http", "https", "udp"})


class TrackerUnreachable(TorrentkitError):
    """A tracker could not be asked: transport error, timeout, HTTP status, no scrape URL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerClientConfig:
    """How the client talks to trackers. Times in seconds."""

    #: Peers asked for per announce (``numwant``); 0 on ``stopped``.
    numwant: int = 50
    #: The shortest ``interval`` we accept from a tracker (a reply of ``interval=0`` is a bug).
    interval_floor: float = 60.0
    backoff_base: float = 15.0
    backoff_cap: float = 30 * 60.0
    #: Each backoff is multiplied by a factor drawn from ``[1 - backoff_jitter, 1]``.
    backoff_jitter: float = 0.25
    connect_timeout: float = 15.0
    #: Longest wait for any one read from the tracker.
    read_timeout: float = 30.0
    #: Longest a whole request may take (a tracker dribbling bytes still ends here).
    request_timeout: float = 60.0
    #: How long the ``stopped`` announces may hold up cancellation.
    stop_timeout: float = 5.0
    #: Bodies longer than this are not read to the end; the reply counts as a failure.
    max_response_size: int = MAX_RESPONSE_SIZE
    #: UDP (BEP 15): the first retransmit timeout, doubled after each; after
    #: ``udp_max_retransmits`` retransmissions the exchange fails (1: 15 + 30 = 45 s).
    udp_timeout: float = 15.0
    udp_max_retransmits: int = 1

    def __post_init__(self) -> None:
        if self.numwant < 0:
            raise LocalProtocolError("numwant must not be negative")
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise LocalProtocolError("need 0 < backoff_base <= backoff_cap")
        if not 0 <= self.backoff_jitter < 1:
            raise LocalProtocolError("backoff_jitter must be in [0, 1)")
        for name in ("connect_timeout", "read_timeout", "request_timeout", "stop_timeout"):
            if getattr(self, name) <= 0:
                raise LocalProtocolError(f"{name} must be positive")
        if self.interval_floor < 0 or self.max_response_size < 1:
            raise LocalProtocolError("interval_floor and max_response_size out of range")
        self.udp_policy()  # checks the UDP settings

    def udp_policy(self) -> RetryPolicy:
        return RetryPolicy(base=self.udp_timeout, max_retransmits=self.udp_max_retransmits)

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Delay before retrying a tracker that has failed ``failures`` times in a row."""
        exponent = min(max(failures, 1) - 1, 60)
        raw = min(self.backoff_cap, self.backoff_base * 2.0**exponent)
        return raw * (1.0 - self.backoff_jitter * rng.random())


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerStatus:
    """One tracker as the UI shows it. Times are on the driver's clock; None: not yet / none."""

    url: str
    tier: int
    #: False for schemes we do not speak (``wss://``, ...); ``last_error`` says why.
    supported: bool
    #: The tracker the last successful announce went to.
    current: bool
    last_announce: float | None
    last_error: str | None
    next_announce: float | None
    #: Failures in a row since its last good reply.
    failures: int
    #: Peers received from it over this session, and in its last reply.
    peers_received: int
    last_peers: int
    seeders: int | None
    leechers: int | None


class _Tracker:
    """One announce URL's mutable state (internal to :class:`TrackerTiers`)."""

    __slots__ = (
        "failures",
        "interval",
        "last_announce",
        "last_error",
        "last_peers",
        "leechers",
        "min_interval",
        "peers_received",
        "retry_at",
        "seeders",
        "started_sent",
        "supported",
        "tier",
        "tracker_id",
        "url",
    )

    def __init__(self, url: str, tier: int, supported: bool, note: str | None) -> None:
        self.url = url
        self.tier = tier
        self.supported = supported
        self.started_sent = False
        self.failures = 0
        self.retry_at = -math.inf
        self.last_announce: float | None = None
        self.last_error = note
        self.interval: float | None = None
        self.min_interval: float | None = None
        self.tracker_id: bytes | None = None
        self.peers_received = 0
        self.last_peers = 0
        self.seeders: int | None = None
        self.leechers: int | None = None


def _scheme_note(url: str) -> str | None:
    """None when we can announce to ``url``; otherwise why not (logged once, shown in the UI)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "not a valid URL"
    scheme = parts.scheme.lower()
    if scheme not in _SUPPORTED_SCHEMES or not parts.hostname:
        return f"unsupported tracker URL scheme {scheme!r}; skipped"
    if scheme == "udp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not port:
            return "a udp tracker URL needs a port (udp://HOST:PORT); skipped"
    return None


class TrackerTiers:
    """The announce-list and its schedule, pure: every method takes ``now``.

    The driver loops: wait until :attr:`next_announce`; for each tracker of :meth:`plan`, send
    :meth:`event_for` it and report :meth:`succeeded` or :meth:`failed`, stopping at the first
    success; if none succeeded, call :meth:`round_failed`.
    """

    def __init__(
        self,
        tiers: Sequence[Sequence[str]],
        *,
        config: TrackerClientConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config if config is not None else TrackerClientConfig()
        self._rng = rng if rng is not None else random.Random()
        self._tiers: list[list[_Tracker]] = []
        seen: set[str] = set()
        for urls in tiers:
            tier: list[_Tracker] = []
            for url in urls:
                if url in seen:
                    continue
                seen.add(url)
                note = _scheme_note(url)
                if note is not None:
                    log.info("tracker %s: %s", url, note)
                tier.append(_Tracker(url, len(self._tiers), note is None, note))
            if tier:
                self._rng.shuffle(tier)
                self._tiers.append(tier)
        self._current: _Tracker | None = None
        self._last_success: float | None = None
        self._completed_pending = False
        #: When the next round starts; -inf: as soon as the driver runs.
        self.next_announce = -math.inf if self._supported() else math.inf

    def _supported(self) -> list[_Tracker]:
        return [t for tier in self._tiers for t in tier if t.supported]

    @property
    def urls(self) -> list[list[str]]:
        """The tiers in their current order (shuffled, then promoted)."""
        return [[t.url for t in tier] for tier in self._tiers]

    @property
    def current(self) -> str | None:
        """The URL of the tracker the last successful announce went to."""
        return self._current.url if self._current is not None else None

    # -- what to do ---------------------------------------------------------------------------

    def plan(self, now: float) -> list[str]:
        """The trackers to try now, in order: supported ones whose backoff has passed."""
        return [t.url for tier in self._tiers for t in tier if t.supported and t.retry_at <= now]

    def event_for(self, url: str) -> AnnounceEvent:
        t = self._find(url)
        if not t.started_sent:
            return AnnounceEvent.STARTED
        if self._completed_pending:
            return AnnounceEvent.COMPLETED
        return AnnounceEvent.NONE

    def stop_targets(self, in_flight: Iterable[str] = ()) -> list[str]:
        """Trackers that may know us: those that got ``started``, plus any request in flight."""
        pending = set(in_flight)
        return [
            t.url
            for tier in self._tiers
            for t in tier
            if t.supported and (t.started_sent or t.url in pending)
        ]

    # -- what happened ------------------------------------------------------------------------

    def succeeded(
        self, url: str, event: AnnounceEvent, reply: AnnounceResponse, *, now: float
    ) -> None:
        t = self._find(url)
        t.started_sent = True
        t.failures = 0
        t.retry_at = -math.inf
        t.last_error = None
        t.last_announce = now
        t.interval = float(reply.interval)
        t.min_interval = float(reply.min_interval) if reply.min_interval is not None else None
        if reply.tracker_id is not None:
            t.tracker_id = reply.tracker_id
        t.peers_received += len(reply.peers)
        t.last_peers = len(reply.peers)
        t.seeders = reply.complete
        t.leechers = reply.incomplete
        if event is AnnounceEvent.COMPLETED:
            self._completed_pending = False
        # BEP 12: a tracker that answers moves to the front of its tier.
        tier = self._tiers[t.tier]
        tier.remove(t)
        tier.insert(0, t)
        self._current = t
        self._last_success = now
        if self._completed_pending:
            self.next_announce = now  # it just got ``started``; ``completed`` follows at once
        else:
            self.next_announce = now + self._regular_interval(t)

    def failed(self, url: str, error: str, *, now: float) -> float:
        """Record a failure; return the backoff before this tracker is tried again."""
        t = self._find(url)
        t.failures += 1
        t.last_error = error
        delay = self.config.backoff(t.failures, self._rng)
        t.retry_at = now + delay
        return delay

    def round_failed(self, now: float) -> None:
        """No tracker answered this round: try again when the first backoff ends."""
        self._current = None
        supported = self._supported()
        self.next_announce = min((t.retry_at for t in supported), default=math.inf)
        self.next_announce = max(self.next_announce, now)

    # -- requests from the engine -------------------------------------------------------------

    def completed(self, now: float) -> None:
        """The download completed: announce ``completed`` now (not held by min interval)."""
        self._completed_pending = True
        self.next_announce = min(self.next_announce, now)

    def announce_soon(self, now: float) -> None:
        """Ask for peers early, but never sooner than min interval after the last reply."""
        earliest = now
        if self._current is not None and self._last_success is not None:
            t = self._current
            gap = t.min_interval if t.min_interval is not None else self.config.interval_floor
            earliest = max(now, self._last_success + gap)
        self.next_announce = min(self.next_announce, earliest)

    # -- helpers ------------------------------------------------------------------------------

    def _regular_interval(self, t: _Tracker) -> float:
        return max(t.interval or 0.0, t.min_interval or 0.0, self.config.interval_floor)

    def tracker_id(self, url: str) -> bytes | None:
        return self._find(url).tracker_id

    def _find(self, url: str) -> _Tracker:
        for tier in self._tiers:
            for t in tier:
                if t.url == url:
                    return t
        raise LocalProtocolError(f"unknown tracker {url!r}")

    def status(self) -> tuple[TrackerStatus, ...]:
        out = []
        for tier in self._tiers:
            for t in tier:
                if not t.supported:
                    upcoming = None
                elif t is self._current:
                    upcoming = self.next_announce
                elif t.failures:
                    upcoming = t.retry_at
                else:
                    upcoming = None
                if upcoming is not None and not math.isfinite(upcoming):
                    upcoming = None
                out.append(
                    TrackerStatus(
                        url=t.url,
                        tier=t.tier,
                        supported=t.supported,
                        current=t is self._current,
                        last_announce=t.last_announce,
                        last_error=t.last_error,
                        next_announce=upcoming,
                        failures=t.failures,
                        peers_received=t.peers_received,
                        last_peers=t.last_peers,
                        seeders=t.seeders,
                        leechers=t.leechers,
                    )
                )
        return tuple(out)


# ---------------------------------------------------------------------------------------------
# HTTP


def new_http_client(
    config: TrackerClientConfig | None = None, *, ca_file: str | os.PathLike[str] | None = None
) -> httpx.AsyncClient:
    """An httpx client set up for trackers (share one across torrents; close it when done).

    Environment proxies are not used (``trust_env=False``): tracker traffic goes where the
    torrent says, and loopback tests are not sent through a proxy by accident. https
    servers are verified against the default CA bundle plus ``ca_file``
    (:func:`torrentkit.httpget.tls_context`).
    """
    import httpx

    from torrentkit.httpget import new_client

    config = config if config is not None else TrackerClientConfig()
    return new_client(
        timeout=httpx.Timeout(
            config.read_timeout, connect=config.connect_timeout, pool=config.connect_timeout
        ),
        headers={
            "User-Agent": f"torrentkit/{torrentkit.__version__}",
            # We cap the body we read; a compressed body could expand past that cap.
            "Accept-Encoding": "identity",
        },
        max_redirects=3,
        ca_file=ca_file,
    )


class LazyHttpClient:
    """A tracker HTTP client made on first use (see :data:`HttpClient`), closed by
    :meth:`aclose` if it was ever made."""

    def __init__(self, config: TrackerClientConfig | None = None) -> None:
        self._config = config
        self.client: httpx.AsyncClient | None = None

    def __call__(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = new_http_client(self._config)
        return self.client

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def _client(http: HttpClient) -> httpx.AsyncClient:
    return http() if callable(http) else http


def _is_udp(url: str) -> bool:
    return url[:6].lower() == "udp://"


async def fetch(http: httpx.AsyncClient, url: str, config: TrackerClientConfig) -> bytes:
    """GET ``url``; the body of a 200 reply, read up to ``max_response_size`` bytes.

    Raises :class:`TrackerUnreachable` (transport, timeout, HTTP status) or
    :class:`~.protocol.TrackerResponseError` (too large, encoded) / :class:`TrackerFailure`
    (a non-200 reply whose body is a bencoded failure reason).
    """
    from torrentkit.httpget import FetchError, ReplyRefused, request_capped

    try:
        reply = await request_capped(
            http, url, max_bytes=config.max_response_size, timeout=config.request_timeout
        )
    except ReplyRefused as exc:
        raise TrackerResponseError(str(exc)) from None
    except FetchError as exc:
        raise TrackerUnreachable(str(exc)) from None
    status, body = reply.status, reply.body
    if status != 200:
        try:
            parse_announce_response(body)
        except TrackerFailure:
            raise
        except RemoteProtocolError:
            pass
        raise TrackerUnreachable(f"HTTP {status}")
    return body


async def scrape(
    http: HttpClient,
    announce: str,
    info_hashes: Sequence[bytes],
    *,
    config: TrackerClientConfig | None = None,
) -> dict[InfoHash, ScrapeStats]:
    """BEP 48 scrape of ``info_hashes`` at the tracker behind announce URL ``announce``.

    Raises :class:`TrackerUnreachable` (including "this tracker has no scrape URL") or a
    :class:`~torrentkit.errors.RemoteProtocolError` for a bad reply.
    """
    config = config if config is not None else TrackerClientConfig()
    note = _scheme_note(announce)
    if note is not None:
        raise TrackerUnreachable(f"{announce}: {note}")
    if _is_udp(announce):
        udp = UdpTrackerClient(policy=config.udp_policy())
        try:
            return await udp.scrape(announce, info_hashes)
        except UdpUnreachable as exc:
            raise TrackerUnreachable(str(exc)) from None
    url = scrape_url(announce, info_hashes)
    if url is None:
        raise TrackerUnreachable(f"{announce} has no scrape URL (BEP 48)")
    return parse_scrape_response(await fetch(_client(http), url, config))


def announce_request(
    *,
    info_hash: InfoHash,
    peer_id: bytes,
    port: int,
    totals: TransferTotals,
    event: AnnounceEvent,
    key: bytes,
    config: TrackerClientConfig,
) -> AnnounceRequest:
    """What we tell a tracker in one announce (compact, no peer ids; no peers wanted with
    ``stopped``)."""
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        port=port,
        uploaded=totals.uploaded,
        downloaded=totals.downloaded,
        left=totals.left,
        event=event,
        compact=True,
        no_peer_id=True,
        numwant=0 if event is AnnounceEvent.STOPPED else config.numwant,
        key=key,
    )


async def announce(
    http: HttpClient,
    url: str,
    request: AnnounceRequest,
    *,
    tracker_id: bytes | None = None,
    config: TrackerClientConfig,
    udp: UdpTrackerClient | None = None,
) -> AnnounceResponse:
    """The one announce: GET ``request`` at announce URL ``url`` (with the ``trackerid`` the
    tracker gave us, if any) and parse the reply; for a ``udp://`` URL, a BEP 15 exchange
    through ``udp`` (which keeps connection ids; a fresh one when None). Raises as
    :func:`fetch` (:class:`TrackerUnreachable` also for a UDP tracker's silence), and
    :class:`~.protocol.TrackerFailure` / :class:`~.protocol.TrackerResponseError` for a
    ``failure reason`` (a UDP error packet) or a malformed reply."""
    if _is_udp(url):
        client = udp if udp is not None else UdpTrackerClient(policy=config.udp_policy())
        try:
            return await client.announce(url, request)
        except UdpUnreachable as exc:
            raise TrackerUnreachable(str(exc)) from None
    full = announce_url(url, request)
    if tracker_id is not None:
        full += "&trackerid=" + urllib.parse.quote_from_bytes(tracker_id, safe="")
    return parse_announce_response(await fetch(_client(http), full, config))


# ---------------------------------------------------------------------------------------------
# One tracker as a Discovery


@dataclass(slots=True)
class _Presence:
    """What one :class:`TrackerEndpoint` remembers of one info-hash it announced."""

    port: int
    published: bool
    tracker_id: bytes | None = None
    last_reply: float = -math.inf
    min_interval: float = 0.0
    last_peers: tuple[PeerAddr, ...] = ()


class TrackerEndpoint:
    """One tracker URL as a :class:`~torrentkit.discovery.base.Discovery` (docs/design.md's
    join / publish / search), for any number of info-hashes.

    - :meth:`join`: nothing to join; checks that ``url`` is one we can announce to
      (``http``/``https``/``udp``), NetworkError otherwise.
    - :meth:`publish`: an announce with ``event=started`` the first time the tracker hears
      of the info-hash from us, a regular one (no event) after that.
    - :meth:`search`: a tracker has no way to search without announcing, so it announces
      too (``started`` the first time) and returns the peers of the reply. Within the
      tracker's ``min interval`` since its last reply, the peers of that reply are returned
      and the tracker is not asked again.
    - :meth:`withdraw`: ``event=stopped`` for an info-hash the tracker knows from us, sent in
      the background in ``nursery`` (bounded by ``stop_timeout``); :meth:`stop` is the same,
      awaited.

    ``totals(info_hash)`` is read before each announce; without it we report nothing up or
    down, and ``left`` 0 for what we published (we hold it) or 1 (an unknown amount still
    wanted, as a magnet does). Failures raise :class:`~torrentkit.discovery.base.NetworkError`.

    This is the tracker as the one interface; it keeps no schedule. A torrent's own presence
    on its trackers is :class:`TrackerDiscovery`, which runs the schedule the tracker sets
    (see there). :func:`open_tracker_endpoint` makes one with its nursery.
    """

    name = "tracker"

    def __init__(
        self,
        url: str,
        *,
        peer_id: bytes,
        port: int,
        http: HttpClient,
        nursery: trio.Nursery,
        totals: Callable[[InfoHash], TransferTotals] | None = None,
        config: TrackerClientConfig | None = None,
        key: bytes | None = None,
    ) -> None:
        if len(peer_id) != 20:
            raise LocalProtocolError("peer_id must be 20 bytes")
        if not 0 < port < 65536:
            raise LocalProtocolError(f"port must be 1-65535, got {port}")
        self.url = url
        self.peer_id = peer_id
        #: The port announced by :meth:`search` for an info-hash never published.
        self.port = port
        self.config = config if config is not None else TrackerClientConfig()
        self.key = key if key is not None else secrets.token_hex(4).encode()
        self._http = http
        self._nursery = nursery
        self._totals = totals
        self._known: dict[InfoHash, _Presence] = {}
        self._udp = UdpTrackerClient(policy=self.config.udp_policy())

    async def join(self) -> None:
        note = _scheme_note(self.url)
        if note is not None:
            raise NetworkError(f"tracker {self.url}: {note}")
        await trio.lowlevel.checkpoint()

    async def publish(self, listing: Listing, port: int) -> None:
        info_hash = InfoHash(bytes(listing.info_hash))
        await self._announce(info_hash, port, published=True)

    async def search(self, listing: Listing) -> Sequence[PeerAddr]:
        info_hash = InfoHash(bytes(listing.info_hash))
        known = self._known.get(info_hash)
        if known is not None and trio.current_time() < known.last_reply + known.min_interval:
            await trio.lowlevel.checkpoint()
            return known.last_peers
        port = known.port if known is not None else self.port
        published = known is not None and known.published
        return await self._announce(info_hash, port, published=published)

    def withdraw(self, info_hash: InfoHash) -> None:
        if InfoHash(bytes(info_hash)) in self._known:
            self._nursery.start_soon(self.stop, info_hash)

    async def stop(self, info_hash: InfoHash) -> None:
        """Send ``event=stopped`` for ``info_hash`` if the tracker knows it from us (bounded by
        ``stop_timeout``, shielded; a failure is logged, not raised)."""
        known = self._known.pop(InfoHash(bytes(info_hash)), None)
        if known is None:
            return
        with trio.move_on_after(self.config.stop_timeout, shield=True):
            request = self._request(InfoHash(bytes(info_hash)), known, AnnounceEvent.STOPPED)
            try:
                await announce(
                    self._http,
                    self.url,
                    request,
                    tracker_id=known.tracker_id,
                    config=self.config,
                    udp=self._udp,
                )
            except (TrackerUnreachable, RemoteProtocolError) as exc:
                log.info("tracker %s: stopped not delivered: %s", self.url, exc)

    def _request(
        self, info_hash: InfoHash, known: _Presence, event: AnnounceEvent
    ) -> AnnounceRequest:
        if self._totals is not None:
            totals = self._totals(info_hash)
        else:
            left = 0 if known.published else 1
            totals = TransferTotals(uploaded=0, downloaded=0, left=left)
        return announce_request(
            info_hash=info_hash,
            peer_id=self.peer_id,
            port=known.port,
            totals=totals,
            event=event,
            key=self.key,
            config=self.config,
        )

    async def _announce(
        self, info_hash: InfoHash, port: int, *, published: bool
    ) -> tuple[PeerAddr, ...]:
        known = self._known.get(info_hash)
        event = AnnounceEvent.STARTED if known is None else AnnounceEvent.NONE
        draft = _Presence(port=port, published=published or bool(known and known.published))
        if known is not None:
            draft.tracker_id = known.tracker_id
        try:
            reply = await announce(
                self._http,
                self.url,
                self._request(info_hash, draft, event),
                tracker_id=draft.tracker_id,
                config=self.config,
                udp=self._udp,
            )
        except (TrackerUnreachable, RemoteProtocolError) as exc:
            raise NetworkError(f"tracker {self.url}: {exc}") from None
        except trio.Cancelled:
            if known is None:  # the ``started`` may have arrived: withdraw sends ``stopped``
                self._known[info_hash] = draft
            raise
        if reply.warning:
            log.info("tracker %s warns: %s", self.url, reply.warning)
        if reply.tracker_id is not None:
            draft.tracker_id = reply.tracker_id
        draft.last_reply = trio.current_time()
        draft.min_interval = float(reply.min_interval or 0)
        draft.last_peers = tuple(reply.peers)
        self._known[info_hash] = draft
        return draft.last_peers


@asynccontextmanager
async def open_tracker_endpoint(
    url: str,
    *,
    peer_id: bytes,
    port: int,
    http: HttpClient | None = None,
    totals: Callable[[InfoHash], TransferTotals] | None = None,
    config: TrackerClientConfig | None = None,
) -> AsyncIterator[TrackerEndpoint]:
    """A :class:`TrackerEndpoint` for ``url`` (its own httpx client, made if an http(s)
    announce needs it, unless ``http`` is given); leaving it waits for the ``stopped``
    announces :meth:`~TrackerEndpoint.withdraw` started, each bounded by ``stop_timeout``."""
    own = LazyHttpClient(config)
    client: HttpClient = http if http is not None else own
    try:
        async with trio.open_nursery() as nursery:
            yield TrackerEndpoint(
                url,
                peer_id=peer_id,
                port=port,
                http=client,
                nursery=nursery,
                totals=totals,
                config=config,
            )
    finally:
        with trio.CancelScope(shield=True):
            await own.aclose()  # a no-op unless it made a client


# ---------------------------------------------------------------------------------------------
# The trio driver


class TrackerDiscovery:
    """One torrent's presence on its trackers (a :class:`~..base.TorrentDiscovery`).

    ``tiers`` is the announce-list (``Metainfo.trackers``, HTTP and UDP URLs mixed). ``totals``
    is read before each announce. Peers go to ``sink`` as ``sink(peers, "tracker")``; each
    failed announce goes to ``on_error(url, message)`` when given. Pass a shared ``http``
    client (see :func:`new_http_client`, or a function returning one, :data:`HttpClient`)
    when running many torrents; otherwise :meth:`run` makes its own if an http(s) tracker is
    asked, and closes it.

    Why this is not a :class:`~torrentkit.discovery.base.SearchLoop` over
    :class:`TrackerEndpoint` (which every other network's torrents get): with a tracker, the
    tracker sets the schedule. Its reply says when to come back (``interval``) and how soon
    at the earliest (``min interval``); a client that asks at SearchLoop's 1, 2, 4, 8, 30 s
    would flood it and get throttled or banned, and with many torrents it would multiply.
    The events are per torrent across its announce-list (``started`` once to each tracker
    before anything else, ``completed`` once, ``stopped`` to those that know us), and the
    announce-list's tiers (BEP 12) ask one tracker of many, promote the one that answers,
    and back off per tracker on failures: state about the set of URLs, which a one-URL
    Discovery does not hold. So :class:`TrackerTiers` keeps that schedule, and every
    request goes through the same :func:`announce` as :class:`TrackerEndpoint`'s.
    """

    name = "tracker"

    def __init__(
        self,
        *,
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        tiers: Sequence[Sequence[str]],
        totals: Callable[[], TransferTotals],
        sink: PeerSink,
        http: HttpClient | None = None,
        config: TrackerClientConfig | None = None,
        rng: random.Random | None = None,
        key: bytes | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        if len(peer_id) != 20:
            raise LocalProtocolError("peer_id must be 20 bytes")
        if not 0 < port < 65536:
            raise LocalProtocolError(f"port must be 1-65535, got {port}")
        self.config = config if config is not None else TrackerClientConfig()
        self._udp = UdpTrackerClient(policy=self.config.udp_policy())
        self._on_error = on_error
        self.info_hash = InfoHash(info_hash)
        self.peer_id = peer_id
        self.port = port
        #: Sent to every tracker, so they know us across IP changes (BEP 3 extension).
        self.key = key if key is not None else secrets.token_hex(4).encode()
        self.tiers = TrackerTiers(tiers, config=self.config, rng=rng)
        self._totals = totals
        self._sink = sink
        self._http = http
        self._wake = trio.Event()
        self._in_flight: str | None = None

    # -- TorrentDiscovery ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Announce until cancelled; then send ``stopped`` (bounded by ``stop_timeout``)."""
        own = LazyHttpClient(self.config)
        http: HttpClient = self._http if self._http is not None else own
        try:
            task_status.started()
            await self._announce_loop(http)
        finally:
            with trio.move_on_after(self.config.stop_timeout, shield=True):
                await self._send_stopped(http)
            with trio.CancelScope(shield=True):
                await own.aclose()  # a no-op unless it made a client

    def completed(self) -> None:
        self.tiers.completed(trio.current_time())
        self._wake.set()

    # -- extras -------------------------------------------------------------------------------

    def announce_soon(self) -> None:
        """The engine wants more peers: announce early, within the trackers' min interval."""
        self.tiers.announce_soon(trio.current_time())
        self._wake.set()

    def status(self) -> tuple[TrackerStatus, ...]:
        return self.tiers.status()

    # -- internals ----------------------------------------------------------------------------

    async def _announce_loop(self, http: HttpClient) -> None:
        while True:
            if trio.current_time() < self.tiers.next_announce:
                self._wake = trio.Event()
                with trio.move_on_at(self.tiers.next_announce):
                    await self._wake.wait()
                continue
            await self._round(http)

    async def _announce(self, http: HttpClient, url: str, event: AnnounceEvent) -> AnnounceResponse:
        request = announce_request(
            info_hash=self.info_hash,
            peer_id=self.peer_id,
            port=self.port,
            totals=self._totals(),
            event=event,
            key=self.key,
            config=self.config,
        )
        tracker_id = self.tiers.tracker_id(url)
        return await announce(
            http, url, request, tracker_id=tracker_id, config=self.config, udp=self._udp
        )

    async def _round(self, http: HttpClient) -> None:
        for url in self.tiers.plan(trio.current_time()):
            event = self.tiers.event_for(url)
            self._in_flight = url
            try:
                reply = await self._announce(http, url, event)
            except (TrackerUnreachable, RemoteProtocolError) as exc:
                self._in_flight = None
                delay = self.tiers.failed(url, str(exc), now=trio.current_time())
                log.warning("tracker %s: %s (retry in %.0f s)", url, exc, delay)
                if self._on_error is not None:
                    self._on_error(url, str(exc))
                continue
            self._in_flight = None
            self.tiers.succeeded(url, event, reply, now=trio.current_time())
            if reply.warning:
                log.info("tracker %s warns: %s", url, reply.warning)
            log.debug("tracker %s (%s): %d peers", url, event.value or "regular", len(reply.peers))
            if reply.peers:
                self._sink(reply.peers, self.name)
            return
        self.tiers.round_failed(trio.current_time())

    async def _send_stopped(self, http: HttpClient) -> None:
        in_flight = [self._in_flight] if self._in_flight is not None else []
        targets = self.tiers.stop_targets(in_flight)
        if not targets:
            return

        async def stop(url: str) -> None:
            try:
                await self._announce(http, url, AnnounceEvent.STOPPED)
            except (TrackerUnreachable, RemoteProtocolError) as exc:
                log.info("tracker %s: stopped not delivered: %s", url, exc)

        async with trio.open_nursery() as nursery:
            for url in targets:
                nursery.start_soon(stop, url)
