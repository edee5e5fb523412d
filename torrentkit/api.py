"""The public API (docs/design.md, layer 6): ``open_session`` -> ``Session.add`` ->
``TorrentHandle``, typed events from ``Session.events()``.

    async with torrentkit.open_session(torrentkit.Settings(listen="127.0.0.1:0")) as session:
        handle = await session.add("file.torrent", save_path="downloads")
        await handle.wait_complete()

This module is the one place that wires a torrent's life together: its peer sources (the
trackers its announce list or magnet names, the magnet's ``x.pe`` peers, peers given to
``add``, every discovery network the settings enable), the magnet metadata phase, the check
of the data on disk with fast resume, the engine's swarm, periodic and final resume saves,
pause / resume / recheck / removal. Every face (the CLI commands, the demo, a Python program)
uses only this.

Structured concurrency: everything runs in the nursery of :func:`open_session`; each torrent
has one lifecycle task there, whose current run sits in a cancel scope that pause, recheck
and removal cancel. Leaving the ``async with`` stops every torrent cleanly: trackers told
``stopped``, resume data saved, files closed.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import trio

from torrentkit.discovery.base import DiscoveryNetwork, TorrentDiscovery, TransferTotals
from torrentkit.discovery.networks import NetworkError, open_chord, open_other_networks
from torrentkit.engine import resume as resume_data
from torrentkit.engine.session import Session as EngineSession
from torrentkit.engine.session import SessionOptions
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.engine.storage import FileStorage, safe_join
from torrentkit.engine.torrent import Torrent, TorrentOptions
from torrentkit.errors import LocalProtocolError, MetainfoError, StorageError
from torrentkit.events import (
    Event,
    MetadataReceived,
    ResumeSaved,
    TorrentAdded,
    TorrentChecked,
    TorrentError,
    TorrentPaused,
    TorrentRemoved,
    TorrentResumed,
    TorrentState,
    TrackerError,
)
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.metainfo import Magnet, Metainfo, is_magnet, parse_info, parse_magnet, parse_torrent
from torrentkit.net import DatagramEndpoint, TrioNetwork, listen_tcp_and_udp
from torrentkit.settings import Settings, SettingsError, parse_addresses
from torrentkit.wire.peer_id import generate_peer_id

if TYPE_CHECKING:
    # The tracker client (and httpx under it) is imported when a torrent first has HTTP
    # trackers to ask: a run with none, or with --no-tracker, never loads it.
    import httpx

    from torrentkit.dht.discovery import DhtNetwork

#: What ``Session.add`` takes: a .torrent path, a magnet URI, raw .torrent bytes, a parsed
#: Metainfo or Magnet.
Source: TypeAlias = "str | os.PathLike[str] | bytes | Metainfo | Magnet"

#: Events a slow ``events()`` reader may fall behind by before the oldest are dropped.
EVENT_BUFFER = 65_536
#: Largest .torrent file ``add`` reads.
MAX_TORRENT_FILE = 64 * 1024 * 1024
#: How long leaving the session waits for torrents to stop (trackers get 5 s of it).
STOP_TIMEOUT = 10.0


class TorrentFailed(Exception):
    """``wait_complete`` on a torrent that stopped on an error, or was removed."""


class DuplicateTorrent(ValueError):
    """The session already has a torrent with this info-hash."""


class SessionError(Exception):
    """The session could not start (port taken, ring unreachable, ...); one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentStatus:
    """A frozen snapshot of one torrent, cheap to take (``TorrentHandle.status()``)."""

    info_hash: str
    name: str
    save_path: str
    state: TorrentState
    #: Share of the wanted bytes verified, 0..1.
    progress: float
    pieces: int
    num_pieces: int
    total_wanted: int
    total_wanted_done: int
    #: Bytes per second, over the last few seconds.
    download_rate: float
    upload_rate: float
    #: Payload bytes this session (verified pieces / sent blocks).
    downloaded: int
    uploaded: int
    #: Payload bytes received this session that were not needed (endgame duplicates,
    #: blocks that arrived after they were cancelled).
    redundant: int
    #: All-time totals (carried across restarts by the resume data).
    all_time_download: int
    all_time_upload: int
    active_seconds: float
    seeding_seconds: float
    num_peers: int
    num_seeds: int
    known_peers: int
    #: Seconds until complete at the current rate; None when unknown or complete.
    eta: float | None
    error: str | None
    paused: bool

    @property
    def is_seeding(self) -> bool:
        """Complete and serving."""
        return self.state == "seeding"


class EventStream:
    """An async iterator of :class:`~torrentkit.events.Event`, from the moment it was made.
    Close it (``async with`` or :meth:`aclose`) when done; a reader that falls more than
    :data:`EVENT_BUFFER` events behind loses the oldest (counted in :attr:`dropped`)."""

    def __init__(self, hub: _EventHub) -> None:
        self._hub = hub
        self._send, self._receive = trio.open_memory_channel[Event](EVENT_BUFFER)
        self.dropped = 0
        hub.subscribers.append(self)

    def _put(self, event: Event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop receiving events (events already queued are dropped)."""
        if self in self._hub.subscribers:
            self._hub.subscribers.remove(self)
        self._send.close()
        await self._receive.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _EventHub:
    def __init__(self) -> None:
        self.subscribers: list[EventStream] = []
        self.callbacks: list[Callable[[Event], None]] = []

    def publish(self, event: Event) -> None:
        for cb in self.callbacks:
            cb(event)
        for sub in self.subscribers:
            sub._put(event)

    def close(self) -> None:
        for sub in self.subscribers:
            sub._send.close()


# ----------------------------------------------------------------------------- the session


class Session:
    """A running session: one listen port, its torrents, its discovery networks. Made by
    :func:`open_session`, never directly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.network = settings.network or TrioNetwork()
        self.peer_id = settings.peer_id or generate_peer_id()
        self._hub = _EventHub()
        bind, port = settings.bind
        self._engine = EngineSession(
            self.network,
            SessionOptions(
                bind=bind,
                port=port,
                down_limit=settings.down_limit,
                up_limit=settings.up_limit,
                peer_id=self.peer_id,
                encryption=settings.encryption,
            ),
            on_event=self._hub.publish,
        )
        self._jobs: dict[bytes, _TorrentJob] = {}
        self._nursery: trio.Nursery | None = None
        self._http: httpx.AsyncClient | None = None
        self.networks: list[DiscoveryNetwork] = []
        #: The mainline DHT node (None unless ``Settings.dht``).
        self.dht: DhtNetwork | None = None
        self._closing = False
        self.rng = random.Random()

    # -------------------------------------------------------------- public

    @property
    def address(self) -> PeerAddr:
        """Where the session accepts peers (the real port when ``listen`` said 0)."""
        return self._engine.address

    @property
    def engine(self) -> EngineSession:
        """The engine session underneath (for discovery networks sharing the port)."""
        return self._engine

    def events(self) -> EventStream:
        """Every event from now on, typed (see :mod:`torrentkit.events`)::

        async with session.events() as events:
            async for event in events:
                ...
        """
        return EventStream(self._hub)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` synchronously with every event (for faces that must not fall
        behind, such as a ``--json`` stream); returns a function that unsubscribes."""
        self._hub.callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._hub.callbacks:
                self._hub.callbacks.remove(callback)

        return unsubscribe

    def torrents(self) -> list[TorrentHandle]:
        """Handles of every torrent in the session, in the order they were added."""
        return [job.handle for job in self._jobs.values()]

    def find(self, info_hash: bytes | str) -> TorrentHandle | None:
        """The torrent with this info-hash (20 bytes, 40 hex or 32 base32), or None."""
        key = InfoHash.from_text(info_hash) if isinstance(info_hash, str) else info_hash
        job = self._jobs.get(bytes(key))
        return job.handle if job is not None else None

    def set_limits(self, *, up: float | None = None, down: float | None = None) -> None:
        """Session-wide rate limits in bytes/s (0 = unlimited), at once."""
        if up is not None:
            _check_rate(up, "up")
            self._engine.up_limiter.set_rate(up)
        if down is not None:
            _check_rate(down, "down")
            self._engine.down_limiter.set_rate(down)

    async def add(
        self,
        source: Source,
        save_path: str | os.PathLike[str] = ".",
        *,
        files: Sequence[int] | None = None,
        peers: Sequence[str | PeerAddr] = (),
        paused: bool = False,
    ) -> TorrentHandle:
        """Add a torrent (a .torrent path, a magnet URI, .torrent bytes, a Metainfo or a
        Magnet) downloading into ``save_path`` (created if missing; a single-file torrent's
        data is ``save_path/<name>``, a multi-file torrent's the folder
        ``save_path/<name>/``). ``files``: a priority per file (0 = skip), ``info.files``
        order. ``peers``: addresses to dial besides what discovery finds. Returns at once; the
        handle's state is ``metadata`` (a magnet), then ``checking``, then ``downloading`` or
        ``seeding``. Raises MetainfoError for a bad torrent, ValueError for bad arguments,
        DuplicateTorrent when the info-hash is already in the session."""
        if self._nursery is None or self._closing:
            raise RuntimeError("the session is not running")
        meta_or_magnet = await _load_source(source)
        info_hash = bytes(meta_or_magnet.info_hash)
        if info_hash in self._jobs:
            raise DuplicateTorrent(f"torrent {info_hash.hex()} is already in the session")
        extra_peers = parse_addresses(peers, "peers")
        if files is not None:
            if not isinstance(meta_or_magnet, Metainfo):
                raise ValueError("files: a magnet's file list is unknown until its metadata")
            _check_priorities(files, meta_or_magnet)
        save = Path(save_path)
        try:
            save.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{save}: cannot create the folder: {exc.strerror}") from None
        if not save.is_dir():
            raise ValueError(f"{save}: not a folder")
        job = _TorrentJob(
            self,
            meta=meta_or_magnet if isinstance(meta_or_magnet, Metainfo) else None,
            magnet=meta_or_magnet if isinstance(meta_or_magnet, Magnet) else None,
            save_path=save,
            files=list(files) if files is not None else None,
            peers=extra_peers,
            paused=paused,
        )
        self._jobs[info_hash] = job
        job.emit(TorrentAdded, name=job.name)
        await self._nursery.start(job.run)
        return job.handle

    # -------------------------------------------------------------- running

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        settings = self.settings
        bind, port = settings.bind
        udp: DatagramEndpoint | None = None
        # A ring member, or a DHT node without a port of its own, shares the listen port's
        # number over UDP: bind both as a pair, so the number the OS picks for TCP is never
        # another UDP socket's. (With both, the ring has it and the DHT takes any port.)
        pair = settings.chord is not None or (
            settings.dht is not None and settings.dht.port is None
        )
        try:
            if pair:
                listener, udp = await listen_tcp_and_udp(self.network, bind, port)
            else:
                listener = await self.network.listen_tcp(bind, port)
        except OSError as exc:
            what = "TCP and UDP " if pair else ""
            # Only the DHT wants the UDP half: say how to do without it.
            hint = (
                " (the mainline DHT shares the port number: give it a port of its own, or turn"
                " it off)"
                if pair and not settings.chord
                else ""
            )
            raise SessionError(
                f"cannot listen on {what}{bind}:{port}: {exc.strerror or exc}{hint}"
            ) from None
        try:
            async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
                self._nursery = nursery
                await nursery.start(partial(self._engine.run, listener=listener))
                await self._join_networks(stack, udp, bind)
                udp = None  # owned by the ring or the DHT now
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._hub.close()
            if udp is not None:
                udp.close()
            if self._http is not None:
                with trio.CancelScope(shield=True):
                    await self._http.aclose()

    def _http_client(self) -> httpx.AsyncClient:
        """The HTTP client every torrent's trackers share, made on first use (closed when
        the session ends)."""
        if self._http is None:
            from torrentkit.discovery.tracker.client import new_http_client

            self._http = new_http_client(ca_file=self.settings.ca_file)
        return self._http

    async def _join_networks(
        self, stack: AsyncExitStack, udp: DatagramEndpoint | None, bind: str
    ) -> None:
        settings = self.settings
        if settings.chord is not None:
            assert udp is not None
            try:
                ring = await stack.enter_async_context(
                    open_chord(self.network, bind, self.address.port, settings.chord, endpoint=udp)
                )
            except (NetworkError, ValueError) as exc:
                raise SessionError(str(exc)) from None
            self.networks.append(ring)
            udp = None
        if settings.dht is not None:
            await self._open_dht(stack, udp, bind)
        self.networks.extend(await open_other_networks(self, stack))  # napster, overlays

    async def _open_dht(
        self, stack: AsyncExitStack, udp: DatagramEndpoint | None, bind: str
    ) -> None:
        """The mainline DHT node (docs/design.md): on the listen port's UDP pair, or on
        ``dht.port``; its routing table kept in the state folder; told to the engine for the
        peer wire's PORT message."""
        from torrentkit.dht.discovery import open_dht
        from torrentkit.engine.torrent import DhtContact

        dht = self.settings.dht
        assert dht is not None
        try:
            net = await stack.enter_async_context(
                open_dht(
                    self.network,
                    bind,
                    dht.port or 0,
                    bootstrap=dht.bootstrap,
                    state_dir=self.settings.resolved_state_dir if dht.save_state else None,
                    endpoint=udp,
                    exclude=[self.address],
                )
            )
        except OSError as exc:
            raise SessionError(
                f"cannot listen on UDP {bind}:{dht.port or 0}: {exc.strerror or exc}"
            ) from None
        self.dht = net
        self.networks.append(net)
        self._engine.dht = DhtContact(port=net.address.port, add_node=net.driver.add_node)

    async def _stop(self) -> None:
        """Stop every torrent cleanly (trackers told, resume saved, files closed)."""
        self._closing = True
        jobs = list(self._jobs.values())
        for job in jobs:
            job.stop()
        with trio.move_on_after(STOP_TIMEOUT):
            for job in jobs:
                await job.done.wait()


@asynccontextmanager
async def open_session(settings: Settings | None = None) -> AsyncIterator[Session]:
    """Start a session (listen socket, discovery networks) in its own nursery; leaving the
    block stops every torrent cleanly. Raises SessionError when it cannot start."""
    session = Session(settings if settings is not None else Settings())
    # Errors of the session's start and of the caller's block come out as themselves, not
    # wrapped in the nursery's ExceptionGroup.
    raised: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(session._run)
            except SessionError as exc:
                raised = exc
                return
            try:
                yield session
            except BaseException as exc:
                raised = exc
            finally:
                with trio.CancelScope(shield=True):
                    await session._stop()
                nursery.cancel_scope.cancel()
    finally:
        if raised is not None:
            raise raised


def download(
    source: Source,
    save_path: str | os.PathLike[str] = ".",
    *,
    settings: Settings | None = None,
    timeout: float | None = None,
    files: Sequence[int] | None = None,
    peers: Sequence[str | PeerAddr] = (),
) -> TorrentStatus:
    """Download one torrent and return its final status: a blocking convenience for scripts
    (it runs its own ``trio.run``; do not call it from inside trio). Raises TorrentFailed on
    an error, TimeoutError when ``timeout`` seconds pass first (data so far is kept)."""

    async def main() -> TorrentStatus:
        async with open_session(settings) as session:
            handle = await session.add(source, save_path, files=files, peers=peers)
            with trio.move_on_after(timeout if timeout is not None else math.inf) as scope:
                await handle.wait_complete()
            if scope.cancelled_caught:
                status = handle.status()
                raise TimeoutError(
                    f"{status.name}: {100 * status.progress:.1f}% after {timeout:g} s"
                )
            return handle.status()

    return trio.run(main)


# ----------------------------------------------------------------------------- one torrent


class TorrentHandle:
    """Controls one torrent of a session. Every method takes effect at once."""

    __slots__ = ("_job",)

    def __init__(self, job: _TorrentJob) -> None:
        self._job = job

    def __repr__(self) -> str:
        return f"<TorrentHandle {self._job.name!r} {self._job.info_hash.hex()}>"

    @property
    def info_hash(self) -> InfoHash:
        """The v1 info-hash (known from the start, for magnets too)."""
        return InfoHash(self._job.info_hash)

    @property
    def name(self) -> str:
        """The torrent's name (a magnet's ``dn``, or its hash, until the metadata came)."""
        return self._job.name

    @property
    def metainfo(self) -> Metainfo | None:
        """The torrent's metainfo (None while a magnet waits for its metadata)."""
        return self._job.meta

    @property
    def save_path(self) -> Path:
        """The folder the data is saved under."""
        return self._job.save_path

    def status(self) -> TorrentStatus:
        """A frozen snapshot of the torrent's state, rates and totals (cheap)."""
        return self._job.status()

    def snapshot(self, *, map_cells: int = 256) -> TorrentSnapshot | None:
        """The engine's full view (peers, piece map, recent events) for a dashboard; None
        while the torrent is not running (metadata, checking, paused)."""
        torrent = self._job.torrent
        if torrent is None:
            return None
        return torrent.snapshot(trio.current_time(), map_cells=map_cells)

    def unchoked_seconds(self) -> dict[bytes, float]:
        """How long this torrent has kept each peer unchoked (tit-for-tat and optimistic),
        in seconds, by peer id, peers no longer connected included; empty while the
        torrent is not running."""
        torrent = self._job.torrent
        if torrent is None:
            return {}
        given = torrent.unchoked_seconds(trio.current_time())
        return {peer_id: total for peer_id, (total, _optimistic) in given.items()}

    async def wait_complete(self) -> None:
        """Until every wanted piece is verified and on disk. Raises TorrentFailed if the
        torrent stops on an error or is removed first."""
        await self._job.wait_complete()

    def pause(self) -> None:
        """Disconnect every peer and stop announcing (trackers told ``stopped``); the data
        and its check stay, so :meth:`resume` needs no recheck."""
        self._job.pause()

    def resume(self) -> None:
        """Run again after :meth:`pause` (or retry after an error)."""
        self._job.resume()

    async def remove(self, delete_data: bool = False) -> None:
        """Stop the torrent and forget it (its resume data too); with ``delete_data`` its
        files are deleted as well (only the torrent's own files, inside the save path)."""
        await self._job.remove(delete_data)

    async def force_recheck(self) -> None:
        """Hash everything on disk again (resume data ignored); returns once checked."""
        await self._job.force_recheck()

    def set_file_priorities(self, priorities: Sequence[int]) -> None:
        """A priority per file (``info.files`` order, pad files included): 0 skips a file,
        1-7 order the rest."""
        self._job.set_file_priorities(priorities)

    def set_limits(self, *, up: float | None = None, down: float | None = None) -> None:
        """This torrent's rate limits in bytes/s (0 = unlimited)."""
        self._job.set_limits(up=up, down=down)

    def add_peers(self, peers: Sequence[str | PeerAddr]) -> None:
        """Dial these peers too."""
        self._job.add_peers(parse_addresses(peers, "peers"))


class _TorrentJob:
    """One torrent's life in the session (the handle's state)."""

    def __init__(
        self,
        session: Session,
        *,
        meta: Metainfo | None,
        magnet: Magnet | None,
        save_path: Path,
        files: list[int] | None,
        peers: tuple[PeerAddr, ...],
        paused: bool,
    ) -> None:
        assert meta is not None or magnet is not None
        self.session = session
        self.meta = meta
        self.magnet = magnet
        self.info_hash = bytes(meta.info_hash if meta is not None else magnet.info_hash)  # type: ignore[union-attr]
        self.save_path = save_path
        self.files = files
        self.peers: list[PeerAddr] = list(peers)
        self.handle = TorrentHandle(self)
        self.state: TorrentState = "metadata" if meta is None else "checking"
        self.paused = paused
        self.error: str | None = None
        self.removed = False
        self.started_at = trio.current_time()
        self.torrent: Torrent | None = None
        self.storage: FileStorage | None = None
        self.have: list[bool] | None = None
        self.recheck_wanted = False
        self.checked = trio.Event()
        self.done = trio.Event()
        self.limits = (0.0, 0.0)  # (up, down) for this torrent
        self._scope: trio.CancelScope | None = None
        self._wakeup = trio.Event()
        self._changed = trio.Event()
        self._found: list[PeerAddr] = []
        #: web seeds dropped for good (bad data or replies): not asked again by this job
        self.dropped_web_seeds: set[str] = set()
        # all-time totals up to the current run (from resume data, then each run's)
        self.base_uploaded = 0
        self.base_downloaded = 0
        self.base_active = 0.0
        self.base_seeding = 0.0
        self.run_started: float | None = None
        self.resume_loaded = False
        #: the resume file on disk matches ``have`` (loaded and trusted, or just saved)
        self.resume_current = False

    # -------------------------------------------------------------- view

    @property
    def name(self) -> str:
        if self.meta is not None:
            return self.meta.name
        assert self.magnet is not None
        return self.magnet.name or self.info_hash.hex()

    def emit(self, kind: type[Event], **fields: Any) -> None:
        t = round(trio.current_time() - self.started_at, 3)
        self.session._hub.publish(kind(t=t, info_hash=self.info_hash.hex(), **fields))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _set_state(self, state: TorrentState) -> None:
        if self.state != state:
            self.state = state
            self._notify()

    def current_state(self) -> TorrentState:
        if self.error is not None:
            return "error"
        if self.paused:
            return "paused"
        t = self.torrent
        if t is not None and self.state in ("downloading", "seeding"):
            return "seeding" if t.is_complete else "downloading"
        return self.state

    def seconds(self, now: float) -> tuple[float, float]:
        """All-time (active, seeding) seconds up to ``now``."""
        active, seeding = self.base_active, self.base_seeding
        t = self.torrent
        if self.run_started is not None:
            active += now - self.run_started
            if t is not None and t.completed_at is not None:
                seeding += now - max(t.completed_at, self.run_started)
        return active, seeding

    def status(self) -> TorrentStatus:
        now = trio.current_time()
        t = self.torrent
        if t is not None and not t.checked.is_set():
            t = None  # not started yet: its picker knows nothing
        info = self.meta.info if self.meta is not None else None
        num = info.num_pieces if info is not None else 0
        if t is not None:
            pieces = t.picker.num_have
            left = t.left()
            down = sum(link.down.rate(now) for link in t.links)
            up = sum(link.up.rate(now) for link in t.links)
            peers = len(t.links)
            seeds = sum(1 for link in t.links if t.picker.peer_is_seed(link))
            known = len(t.peers)
            session_down, session_up, redundant = t.downloaded, t.uploaded, t.redundant
            if self.paused or self.error is not None:  # its links are closing right now
                down = up = 0.0
                peers = seeds = 0
        else:
            have = self.have or []
            pieces = sum(have)
            left = _left_of(info, have, self.files) if info is not None else 0
            down = up = 0.0
            peers = seeds = 0
            known = len(self.peers)
            session_down = session_up = redundant = 0
        wanted = _wanted_bytes(info, self.files) if info is not None else 0
        done = max(0, wanted - left)
        state = self.current_state()
        complete = state == "seeding"
        active, seeding = self.seconds(now)
        return TorrentStatus(
            info_hash=self.info_hash.hex(),
            name=self.name,
            save_path=str(self.save_path),
            state=state,
            progress=1.0 if complete else (done / wanted if wanted else 0.0),
            pieces=pieces,
            num_pieces=num,
            total_wanted=wanted,
            total_wanted_done=done,
            download_rate=down,
            upload_rate=up,
            downloaded=session_down,
            uploaded=session_up,
            redundant=redundant,
            all_time_download=self.base_downloaded + session_down,
            all_time_upload=self.base_uploaded + session_up,
            active_seconds=active,
            seeding_seconds=seeding,
            num_peers=peers,
            num_seeds=seeds,
            known_peers=known,
            eta=None if complete or down <= 0 else left / down,
            error=self.error,
            paused=self.paused,
        )

    # -------------------------------------------------------------- control

    def _kick(self) -> None:
        self._wakeup.set()
        self._wakeup = trio.Event()

    def stop(self) -> None:
        """The session is closing: end the run (resume data saved on the way out)."""
        if self._scope is not None:
            self._scope.cancel()
        self._kick()

    def pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        if self._scope is not None:
            self._scope.cancel()
        self.emit(TorrentPaused)
        self._notify()

    def resume(self) -> None:
        if not self.paused and self.error is None:
            return
        self.paused = False
        self.error = None
        self.emit(TorrentResumed)
        self._kick()
        self._notify()

    async def force_recheck(self) -> None:
        if self.removed:
            raise TorrentFailed(f"{self.name}: removed")
        self.recheck_wanted = True
        self.checked = trio.Event()
        if self._scope is not None:
            self._scope.cancel()
        self._kick()
        if self.paused or self.error is not None:
            # A paused torrent is rechecked now and stays paused (libtorrent does the same).
            await self._check(force=True)
            return
        await self.checked.wait()

    async def remove(self, delete_data: bool) -> None:
        if self.removed:
            return
        self.removed = True
        if self._scope is not None:
            self._scope.cancel()
        self._kick()
        self._notify()
        await self.done.wait()
        self.session._jobs.pop(self.info_hash, None)
        state_dir = self.session.settings.resolved_state_dir
        resume_data.resume_path(state_dir, self.info_hash).unlink(missing_ok=True)
        if delete_data and self.meta is not None:
            await trio.to_thread.run_sync(_delete_files, self.meta, self.save_path)
        self.emit(TorrentRemoved, deleted_data=delete_data)

    def set_file_priorities(self, priorities: Sequence[int]) -> None:
        if self.meta is None:
            raise ValueError("file priorities need the metadata (the magnet has none yet)")
        _check_priorities(priorities, self.meta)
        self.files = list(priorities)
        if self.torrent is not None:
            self.torrent.set_file_priorities(priorities)
        self._notify()

    def set_limits(self, *, up: float | None, down: float | None) -> None:
        if up is not None:
            _check_rate(up, "up")
        if down is not None:
            _check_rate(down, "down")
        self.limits = (
            up if up is not None else self.limits[0],
            down if down is not None else self.limits[1],
        )
        if self.torrent is not None:
            self.torrent.set_rate_limits(up=up, down=down)

    def add_peers(self, peers: Sequence[PeerAddr]) -> None:
        self.peers.extend(p for p in peers if p not in self.peers)
        if self.torrent is not None:
            self.torrent.add_peers(list(peers), "api")

    async def wait_complete(self) -> None:
        while True:
            state = self.current_state()
            if state == "seeding":
                return
            if self.removed:
                raise TorrentFailed(f"{self.name}: removed")
            if state == "error":
                raise TorrentFailed(f"{self.name}: {self.error}")
            changed = self._changed
            t = self.torrent
            if t is not None and state == "downloading":
                await _first_of(t.complete.wait, changed.wait)
            else:
                await changed.wait()

    # -------------------------------------------------------------- the lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while not self.removed and not self.session._closing:
                if self.paused or self.error is not None:
                    self._set_state("paused" if self.error is None else "error")
                    await self._wakeup.wait()
                    continue
                with trio.CancelScope() as scope:
                    self._scope = scope
                    await self._run_once()
                self._scope = None
        finally:
            with trio.CancelScope(shield=True):
                if self.storage is not None:
                    await self.storage.close()
            self.done.set()
            self._notify()

    async def _run_once(self) -> None:
        if self.meta is None:
            self._set_state("metadata")
            self.meta = await self._fetch_metadata()
        meta = self.meta
        if self.storage is None:
            self.storage = FileStorage(
                meta.info, self.save_path, page_cache=self.session.settings.page_cache
            )
        if self.have is None or self.recheck_wanted:
            self._set_state("checking")
            if not await self._check(force=self.recheck_wanted):
                return
        await self._swarm(meta)

    async def _check(self, *, force: bool) -> bool:
        """Check the data on disk (fast resume unless ``force``); False on a disk error."""
        assert self.meta is not None
        if self.storage is None:
            self.storage = FileStorage(
                self.meta.info, self.save_path, page_cache=self.session.settings.page_cache
            )
        settings = self.session.settings
        loaded = None
        problem = None
        if settings.resume and not self.resume_loaded:
            outcome = resume_data.load(settings.resolved_state_dir, self.meta.info)
            loaded, problem = outcome.data, outcome.problem
            self.resume_loaded = True
            if loaded is not None:
                self.base_uploaded = loaded.uploaded
                self.base_downloaded = loaded.downloaded
                self.base_active = loaded.active_seconds
                self.base_seeding = loaded.seeding_seconds
                if self.files is None and loaded.file_priorities is not None:
                    self.files = list(loaded.file_priorities)
        try:
            result = await resume_data.fast_check(
                self.storage, self.meta.info, None if force else loaded
            )
        except StorageError as exc:
            self._fail(str(exc))
            return False
        self.have = list(result.have)
        self.resume_current = loaded is not None and not result.rechecked
        self.recheck_wanted = False
        self.emit(
            TorrentChecked,
            pieces=sum(self.have),
            num_pieces=self.meta.info.num_pieces,
            rechecked=len(result.rechecked),
            trusted=len(result.trusted),
            resume_problem=problem,
        )
        self.checked.set()
        return True

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
            self.emit(TorrentError, message=message)
        self._notify()

    async def _fetch_metadata(self) -> Metainfo:
        # Only a magnet link needs ut_metadata: imported here, not at start-up.
        from torrentkit.engine.metadata_fetch import MetadataFetcher

        magnet = self.magnet
        assert magnet is not None
        session = self.session
        fetcher = MetadataFetcher(
            InfoHash(self.info_hash),
            network=session.network,
            peer_id=session.peer_id,
            listen_port=session.address.port,
            encryption=session.settings.encryption,
        )
        fetcher.add_peers(list(magnet.peers), "magnet")
        fetcher.add_peers(self.peers, "api")
        async with trio.open_nursery() as nursery:
            for source in self._peer_sources(
                [[t] for t in magnet.trackers],
                fetcher.add_peers,
                lambda: TransferTotals(uploaded=0, downloaded=0, left=1),
                private=False,
                publish=False,
            ):
                nursery.start_soon(source.run)
            raw = await fetcher.fetch()
            nursery.cancel_scope.cancel()
        info = parse_info(raw)
        self._found = list(fetcher.known)
        meta = Metainfo(
            info=info,
            trackers=tuple((t,) for t in magnet.trackers),
            url_list=magnet.web_seeds,  # ws=: fetched from once the metadata is in
        )
        self.emit(MetadataReceived, name=info.name, size=len(raw))
        self._notify()
        return meta

    def _tracker_error(self, url: str, message: str) -> None:
        """A tracker announce failed: a ``tracker_error`` event (the UI's log, --json)."""
        if self.torrent is not None:
            self.torrent.emit(TrackerError, source=url, message=message)
        else:
            self.emit(TrackerError, source=url, message=message)

    def _peer_sources(
        self,
        tiers: Sequence[Sequence[str]],
        sink: Callable[[Sequence[PeerAddr], str], None],
        totals: Callable[[], TransferTotals],
        *,
        private: bool,
        publish: bool,
    ) -> list[TorrentDiscovery]:
        """Every discovery source for this torrent: its trackers and the session's networks
        (never a network for a private torrent, BEP 27)."""
        session = self.session
        port = session.address.port
        sources: list[TorrentDiscovery] = []
        if session.settings.trackers and tiers:
            from torrentkit.discovery.tracker.client import TrackerDiscovery

            sources.append(
                TrackerDiscovery(
                    info_hash=self.info_hash,
                    peer_id=session.peer_id,
                    port=port,
                    tiers=tiers,
                    totals=totals,
                    sink=sink,
                    http=session._http_client,  # made if an http(s) tracker is asked
                    on_error=self._tracker_error,
                )
            )
        if not private:
            for net in session.networks:
                sources.append(
                    net.torrent_source(
                        InfoHash(self.info_hash), port=port, sink=sink, publish=publish
                    )
                )
        return sources

    async def _swarm(self, meta: Metainfo) -> None:
        session = self.session
        settings = session.settings
        assert self.storage is not None and self.have is not None
        options = TorrentOptions(
            max_peers=settings.max_peers,
            upload_slots=settings.upload_slots,
            optimistic_slots=settings.optimistic_slots,
            rechoke_interval=settings.rechoke_interval,
            encryption=settings.encryption,
            file_priorities=self.files,
            up_limit=self.limits[0],
            down_limit=self.limits[1],
        )
        torrent = session.engine.new_torrent(meta.info, self.storage, options)
        for source in self._peer_sources(
            meta.trackers,
            torrent.add_peers,
            torrent.totals,
            private=meta.info.private,
            publish=True,
        ):
            torrent.add_discovery(source)
        if settings.web_seeds and meta.url_list:
            torrent.dropped_web_seeds |= self.dropped_web_seeds
            torrent.add_web_seeds(meta.url_list, session._http_client())
        session.engine.attach(torrent)
        self.torrent = torrent
        self.run_started = trio.current_time()
        self._set_state("downloading")
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(torrent.run, have=self.have))
                if self.peers:
                    torrent.add_peers(self.peers, "api")
                if self._found:
                    torrent.add_peers(self._found, "magnet")
                    self._found = []
                nursery.start_soon(self._save_periodically, torrent)
                await torrent.failed.wait()
                self._fail(torrent.error or "failed")
                nursery.cancel_scope.cancel()
        finally:
            session.engine.detach(self.info_hash)
            now = trio.current_time()
            self.have = [torrent.picker.have(i) for i in range(meta.info.num_pieces)]
            active, seeding = self.seconds(now)
            self.base_active, self.base_seeding = active, seeding
            self.base_uploaded += torrent.uploaded
            self.base_downloaded += torrent.downloaded
            self.dropped_web_seeds |= torrent.dropped_web_seeds
            self.run_started = None
            self.torrent = None
            with trio.CancelScope(shield=True):
                await self._save_resume(meta)  # no fsync: see resume.py ("without an fsync")
            self._notify()

    async def _save_periodically(self, torrent: Torrent) -> None:
        """Every ``resume_interval``, save when pieces or transfer totals changed. Nothing
        changes without peer links, so a torrent that never had one, or whose last link
        left a whole interval before the last check (its last pieces were verified and
        counted by then), waits for a link instead: thousands of idle torrents do not wake
        every 30 s for nothing."""
        assert self.meta is not None
        interval = self.session.settings.resume_interval

        def mark_now() -> tuple[int, int, int]:
            return (torrent.picker.num_have, torrent.uploaded, torrent.downloaded)

        last = mark_now() if self.resume_current else None
        checked_at = trio.current_time()
        while True:
            idle = torrent.idle_since
            if (
                last is not None
                and idle is not None
                and (idle == torrent.started_at or idle <= checked_at - interval)
            ):
                await torrent.wait_active()
            await trio.sleep(interval)
            checked_at = trio.current_time()
            mark = mark_now()
            if mark != last:
                last = mark
                await self._save_resume(self.meta, torrent)

    async def _save_resume(self, meta: Metainfo, torrent: Torrent | None = None) -> None:
        """Write the resume data. Never an fsync of the files (the kernel writes them
        back, as libtorrent and Transmission leave it to do): the data names the files
        written lately, rehashed on the next start if the machine booted in between
        (resume.py, "Saving without an fsync")."""
        settings = self.session.settings
        if not settings.resume or self.storage is None or self.have is None:
            return
        now = trio.current_time()
        if torrent is not None:
            have = [torrent.picker.have(i) for i in range(meta.info.num_pieces)]
            up = self.base_uploaded + torrent.uploaded
            down = self.base_downloaded + torrent.downloaded
        else:
            have, up, down = self.have, self.base_uploaded, self.base_downloaded
        active, seeding = self.seconds(now)
        try:
            data = await resume_data.capture(
                self.storage,
                save_path=str(self.save_path.resolve()),
                pieces=have,
                uploaded=up,
                downloaded=down,
                active_seconds=active,
                seeding_seconds=seeding,
                file_priorities=self.files,
                sync=False,
            )
            await trio.to_thread.run_sync(resume_data.save, settings.resolved_state_dir, data)
            self.emit(ResumeSaved, pieces=sum(have))
        except (OSError, StorageError, LocalProtocolError):
            self.resume_current = False
            return  # the next save tries again; a missing resume file only costs a recheck
        self.resume_current = True


# ----------------------------------------------------------------------------- helpers


async def _first_of(*waits: Callable[[], Any]) -> None:
    """Until the first of these waits returns."""
    async with trio.open_nursery() as nursery:
        for wait in waits:

            async def one(wait: Callable[[], Any] = wait) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(one)


async def _load_source(source: Source) -> Metainfo | Magnet:
    if isinstance(source, Metainfo | Magnet):
        return source
    if isinstance(source, bytes | bytearray):
        return parse_torrent(bytes(source))
    text = os.fspath(source)
    if isinstance(text, str) and is_magnet(text):
        return parse_magnet(text)
    path = Path(text)

    def read() -> bytes:
        with path.open("rb") as fh:
            data = fh.read(MAX_TORRENT_FILE + 1)
        if len(data) > MAX_TORRENT_FILE:
            raise MetainfoError(str(path), f"larger than {MAX_TORRENT_FILE >> 20} MiB")
        return data

    try:
        raw = await trio.to_thread.run_sync(read)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    try:
        return parse_torrent(raw)
    except MetainfoError as exc:
        raise MetainfoError(str(path), str(exc)) from None


def _check_priorities(priorities: Sequence[int], meta: Metainfo) -> None:
    n = len(meta.info.files)
    if len(priorities) != n:
        raise ValueError(f"files: expected {n} priorities (one per file), got {len(priorities)}")
    for p in priorities:
        if not isinstance(p, int) or not 0 <= p <= 7:
            raise ValueError(f"files: priorities are 0-7, got {p!r}")


def _check_rate(rate: float, what: str) -> None:
    if not rate >= 0:
        raise SettingsError(f"{what}: a rate in bytes/s, >= 0 (0 = unlimited)")


def _wanted_bytes(info: Any, files: Sequence[int] | None) -> int:
    if files is None:
        return int(sum(f.length for f in info.files if not f.pad))
    return int(sum(f.length for f, p in zip(info.files, files, strict=True) if p and not f.pad))


def _left_of(info: Any, have: Sequence[bool], files: Sequence[int] | None) -> int:
    """Wanted bytes not yet verified, approximated per piece (while no engine torrent runs)."""
    if not have:
        return _wanted_bytes(info, files)
    missing = sum(info.piece_size(i) for i, ok in enumerate(have) if not ok)
    return int(min(missing, _wanted_bytes(info, files)))


def _delete_files(meta: Metainfo, save_path: Path) -> None:
    """The torrent's own files (never anything else), then its folders if left empty."""
    info = meta.info
    multi = len(info.files) > 1 or info.files[0].path != (info.name,)
    for f in info.files:
        if f.pad:
            continue
        try:
            path = safe_join(save_path, f.path)
        except (StorageError, ValueError):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        path.unlink(missing_ok=True)
    if multi:
        root = save_path / info.name
        if root.is_dir() and not root.is_symlink():
            for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda x: -len(x[0])):
                with suppress(OSError):
                    os.rmdir(dirpath)


__all__ = [
    "DuplicateTorrent",
    "EventStream",
    "Session",
    "SessionError",
    "Source",
    "TorrentFailed",
    "TorrentHandle",
    "TorrentStatus",
    "download",
    "open_session",
]
