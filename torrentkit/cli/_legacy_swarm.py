"""LEGACY: the engine-level runner ``get`` and ``share`` (and the demo's LiveSnapshots) still
use until they move to :func:`torrentkit.cli.swarm.run_plan`; delete this module then.

One :class:`~torrentkit.engine.session.Session` serves every torrent of the command. The
run ends when every torrent is complete (``download`` without seeding), when the seeding
goal is reached (``--seed-ratio`` / ``--seed-time``), at ``--timeout`` (exit 1 if anything is
incomplete), on SIGTERM (a clean stop) or Ctrl-C (exit 130 after the same clean stop:
trackers told ``stopped``, files closed, resume state saved).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, overload

import httpx
import trio

from torrentkit import bencoding
from torrentkit.cli.chord_cli import (
    add_chord_arguments,
    chord_config,
    parse_bootstrap,
    serve_member,
)
from torrentkit.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    JobFailed,
    UsageError,
    emit_json,
    load_torrent,
    parse_size,
)
from torrentkit.discovery.base import PeerSink, TransferTotals
from torrentkit.discovery.chord.discovery import ChordDiscovery
from torrentkit.discovery.chord.discovery import find_peers as chord_find_peers
from torrentkit.discovery.chord.driver import ChordDriver
from torrentkit.discovery.chord.node import ChordConfig
from torrentkit.discovery.tracker.client import TrackerDiscovery, new_http_client
from torrentkit.engine.metadata_fetch import MetadataFetcher
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.engine.storage import FileStorage
from torrentkit.engine.torrent import Torrent, TorrentOptions
from torrentkit.errors import MetainfoError
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Magnet, Metainfo, is_magnet, parse_info, parse_magnet
from torrentkit.net import DatagramEndpoint, TrioNetwork, listen_tcp_and_udp
from torrentkit.ui.live import run_dashboard

STATUS_EVERY = 3.0

#: Finds peers for a magnet's info-hash while its metadata is fetched (e.g. ``get`` asks a
#: Napster index or floods an overlay): feeds what it finds into the sink until cancelled.
PeerFinder = Callable[[Session, PeerSink], Awaitable[None]]
#: Extra work in the session's nursery once every torrent is added (e.g. ``share`` publishes
#: to an index or an overlay); cancelled with the session.
Service = Callable[[Session], Awaitable[None]]


def add_common_arguments(
    p: argparse.ArgumentParser, *, seeding: bool, ring: bool | None = None
) -> None:
    """The flags download and seed share. ``ring``: add ``--discovery tracker|chord`` and
    ``--bootstrap`` (default: unless the command defined its own ``--discovery``)."""
    if ring is None:
        ring = not any("--discovery" in a.option_strings for a in p._actions)
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="listen address")
    p.add_argument("--port", type=int, default=0, metavar="N", help="listen port (0 = any)")
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="dial this peer directly (repeatable)",
    )
    p.add_argument("--up-limit", default="0", metavar="RATE", help="upload limit, e.g. 500K")
    p.add_argument("--max-peers", type=int, default=50, metavar="N")
    p.add_argument("--no-tracker", action="store_true", help="do not announce to trackers")
    p.add_argument("--json", action="store_true", help="JSON events on stdout")
    p.add_argument("--no-ui", action="store_true", help="plain status lines even on a TTY")
    p.add_argument("--state-dir", metavar="DIR", help="resume state folder")
    if ring:
        _add_ring_arguments(p)
    if not seeding:
        p.add_argument("--down-limit", default="0", metavar="RATE", help="download limit")


def _add_ring_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--discovery",
        choices=["tracker", "chord"],
        default="tracker",
        help="tracker: the torrent's own trackers; chord: also join a Chord ring",
    )
    p.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="Chord: a ring node to join through (repeatable; none starts a new ring)",
    )
    add_chord_arguments(p)


@dataclass(slots=True)
class Job:
    meta: Metainfo | None  # None until a magnet's metadata has arrived
    save_dir: Path
    file_priorities: list[int] | None = None
    torrent: Torrent | None = None
    magnet: Magnet | None = None
    found_peers: list[PeerAddr] = field(default_factory=list)  # met while fetching metadata
    find_peers: PeerFinder | None = None  # more peers for a magnet (a keyword search's holders)

    @property
    def name(self) -> str:
        if self.meta is not None:
            return self.meta.name
        assert self.magnet is not None
        return self.magnet.name or self.magnet.info_hash.hex()


@dataclass(slots=True)
class RunConfig:
    jobs: list[Job]
    bind: str
    port: int
    peers: list[PeerAddr]
    up_limit: int
    down_limit: int
    max_peers: int
    use_trackers: bool
    json: bool
    state_dir: Path
    seed_after: bool  # keep seeding after completion
    seed_ratio: float | None = None
    seed_time: float | None = None
    timeout: float | None = None
    require_complete: bool = False  # seed: the data must already be complete
    ui: bool = False  # the live dashboard (a TTY, no --json, no --no-ui)
    services: list[Service] = field(default_factory=list)  # started once torrents are added
    discovery: str = "tracker"  # or "chord": join the ring (cfg.bootstrap) and use it too
    bootstrap: list[PeerAddr] = field(default_factory=list)
    chord: ChordConfig | None = None
    advertise: str | None = None


def discovery_options(args: argparse.Namespace) -> dict[str, Any]:
    """RunConfig fields for ``--discovery`` / ``--bootstrap`` (download and seed)."""
    if args.discovery != "chord":
        if args.bootstrap:
            raise UsageError("--bootstrap goes with --discovery chord")
        return {}
    return {
        "discovery": "chord",
        "bootstrap": parse_bootstrap(args.bootstrap),
        "chord": chord_config(args.stabilize_interval),
        "advertise": args.advertise,
    }


def parse_peers(values: list[str]) -> list[PeerAddr]:
    out = []
    for text in values:
        try:
            out.append(PeerAddr.parse(text))
        except ValueError as exc:
            raise UsageError(f"--peer: {exc}") from None
    return out


def parse_files(spec: str, meta: Metainfo) -> list[int]:
    """``1,3-5`` -> per-file priorities (4 for chosen files, 0 otherwise), numbered as
    ``info`` numbers them (pad files are not counted)."""
    real = [i for i, f in enumerate(meta.info.files) if not f.pad]
    chosen: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo_text, dash, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if dash else lo
        except ValueError:
            raise UsageError(f"--files: expected indexes like 0,2-4, got {part!r}") from None
        if lo < 0 or hi < lo or hi >= len(real):
            raise UsageError(f"--files: {part!r} is outside 0-{len(real) - 1}")
        chosen.update(range(lo, hi + 1))
    if not chosen:
        raise UsageError("--files: no file selected")
    prios = [0] * len(meta.info.files)
    for k in chosen:
        prios[real[k]] = 4
    return prios


def _chord_finder(chord: ChordDriver, job: Job) -> PeerFinder:
    assert job.magnet is not None
    info_hash = job.magnet.info_hash

    async def find(session: Session, sink: PeerSink) -> None:
        await chord_find_peers(chord, info_hash, sink)

    return find


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "torrentkit"


def check_save_dir(path: str) -> Path:
    d = Path(path)
    if not d.exists():
        raise UsageError(f"{d}: no such folder")
    if not d.is_dir():
        raise UsageError(f"{d}: not a folder")
    return d


def load_job_torrent(arg: str, *, magnets: bool = True) -> Metainfo | Magnet:
    if is_magnet(arg):
        if not magnets:
            raise UsageError("seed needs a .torrent file, not a magnet link")
        try:
            return parse_magnet(arg)
        except MetainfoError as exc:
            raise UsageError(str(exc)) from None
    return load_torrent(arg)


def make_job(src: Metainfo | Magnet, save_dir: Path, priorities: list[int] | None = None) -> Job:
    if isinstance(src, Magnet):
        return Job(meta=None, save_dir=save_dir, magnet=src)
    return Job(meta=src, save_dir=save_dir, file_priorities=priorities)


async def fetch_metadata(
    job: Job, session: Session, cfg: RunConfig, http: httpx.AsyncClient, out: _Output
) -> Metainfo:
    """A magnet's info dictionary, from the peers its trackers, its x.pe and --peer name."""
    magnet = job.magnet
    assert magnet is not None
    fetcher = MetadataFetcher(
        magnet.info_hash,
        network=session.network,
        peer_id=session.peer_id,
        listen_port=session.address.port,
    )
    fetcher.add_peers(list(magnet.peers), "magnet")
    fetcher.add_peers(cfg.peers, "cli")
    started = trio.current_time()
    with trio.move_on_after(cfg.timeout if cfg.timeout else math.inf) as scope:
        raw = await _fetch(fetcher, magnet, session, cfg, http, job.find_peers)
    if scope.cancelled_caught:
        tried = len(fetcher.tried)
        raise JobFailed(
            f"{job.name}: no peer delivered the metadata within {cfg.timeout:g} s "
            f"({tried} peer{'s' if tried != 1 else ''} tried)"
        )
    info = parse_info(raw)
    job.found_peers = list(fetcher.known)
    out.event(
        {
            "event": "metadata",
            "t": round(trio.current_time() - started, 3),
            "name": info.name,
            "size": len(raw),
        }
    )
    if not cfg.json:
        out.line(f"{info.name}: metadata received ({len(raw)} bytes)")
    return Metainfo(info=info, trackers=tuple((t,) for t in magnet.trackers))


async def _fetch(
    fetcher: MetadataFetcher,
    magnet: Magnet,
    session: Session,
    cfg: RunConfig,
    http: httpx.AsyncClient,
    find: PeerFinder | None = None,
) -> bytes:
    async with trio.open_nursery() as nursery:
        if find is not None:
            nursery.start_soon(find, session, fetcher.add_peers)
        if cfg.use_trackers and magnet.trackers:
            nursery.start_soon(
                TrackerDiscovery(
                    info_hash=magnet.info_hash,
                    peer_id=session.peer_id,
                    port=session.address.port,
                    tiers=[[t] for t in magnet.trackers],
                    totals=lambda: TransferTotals(uploaded=0, downloaded=0, left=1),
                    sink=fetcher.add_peers,
                    http=http,
                ).run
            )
        raw = await fetcher.fetch()
        nursery.cancel_scope.cancel()
    return raw


def parse_rate(text: str, what: str) -> int:
    return parse_size(text, what)


# --------------------------------------------------------------------------- running


class _Output:
    """Status lines (stderr) or JSON events (stdout)."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        self.start = time.monotonic()

    def event(self, obj: dict[str, Any]) -> None:
        if self.json:
            emit_json(obj)

    def line(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def save_resume(state_dir: Path, torrent: Torrent, save_dir: Path) -> None:
    """Write the resume state: temp file, fsync, rename (never a torn file)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data = bencoding.encode(
        {
            "info-hash": torrent.info_hash,
            "save-path": str(save_dir.resolve()),
            "pieces": torrent.picker.have_bitfield(),
            "uploaded": torrent.uploaded,
            "downloaded": torrent.downloaded,
        }
    )
    target = state_dir / f"{torrent.info_hash.hex()}.resume"
    fd, tmp = tempfile.mkstemp(prefix=".resume-", dir=state_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LiveSnapshots(Sequence[TorrentSnapshot]):
    """The dashboard's view of some torrents: a snapshot is built only for the one shown
    (the dashboard reads ``len()`` and the selected item each frame)."""

    def __init__(self, torrents: Sequence[Torrent]) -> None:
        self._torrents = torrents

    def __len__(self) -> int:
        return len(self._torrents)

    @overload
    def __getitem__(self, index: int) -> TorrentSnapshot: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[TorrentSnapshot]: ...
    def __getitem__(self, index: int | slice) -> TorrentSnapshot | Sequence[TorrentSnapshot]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._torrents[index].snapshot(trio.current_time())


def want_ui(args: argparse.Namespace) -> bool:
    return sys.stdout.isatty() and sys.stdin.isatty() and not args.json and not args.no_ui


def _save_resume_quietly(state_dir: Path, job: Job, out: _Output) -> None:
    assert job.torrent is not None
    try:
        save_resume(state_dir, job.torrent, job.save_dir)
    except OSError as exc:
        out.line(f"warning: could not save resume state in {state_dir}: {exc.strerror}")


def summary(cfg: RunConfig) -> dict[str, Any]:
    """The closing ``summary`` event: per torrent, its totals and what each peer did."""
    now = trio.current_time()
    torrents = []
    for job in cfg.jobs:
        t = job.torrent
        if t is None:
            continue
        unchoked = t.unchoked_seconds(now)
        torrents.append(
            {
                "name": t.info.name,
                "info_hash": t.info_hash.hex(),
                "complete": t.is_complete,
                "pieces": t.picker.num_have,
                "num_pieces": t.info.num_pieces,
                "downloaded": t.downloaded,
                "uploaded": t.uploaded,
                "ratio": round(t.uploaded / t.info.total_length, 3),
                "seconds": round(
                    (t.completed_at if t.completed_at is not None else now) - t.started_at, 3
                ),
                "banned": sorted(str(a) for a in t.banned_addrs),
                "peers": [
                    {
                        "peer": str(link.addr),
                        "client": link.client,
                        "downloaded": link.downloaded,
                        "uploaded": link.uploaded,
                        "unchoked_seconds": round(unchoked.get(link.peer_id, (0.0, 0.0))[0], 1),
                    }
                    for link in t.links
                ],
            }
        )
    started = min((j.torrent.started_at for j in cfg.jobs if j.torrent is not None), default=now)
    return {"event": "summary", "t": round(now - started, 3), "torrents": torrents}


def _status_line(job: Job) -> str:
    t = job.torrent
    assert t is not None
    now = trio.current_time()
    have = t.picker.num_have
    n = t.info.num_pieces
    down = sum(link.down.rate(now) for link in t.links)
    up = sum(link.up.rate(now) for link in t.links)
    return (
        f"{job.name[:40]}: {have}/{n} pieces ({100.0 * have / n:.1f}%), "
        f"{len(t.links)} peers, down {down / 1e6:.1f} MB/s, up {up / 1e6:.1f} MB/s"
    )


async def run_swarm(cfg: RunConfig) -> int:
    out = _Output(cfg.json)

    def on_event(obj: dict[str, Any]) -> None:
        out.event(obj)

    network = TrioNetwork()
    session = Session(
        network,
        SessionOptions(
            bind=cfg.bind, port=cfg.port, down_limit=cfg.down_limit, up_limit=cfg.up_limit
        ),
        on_event=on_event,
    )
    # A ring member shares the listen port's number over UDP: bind both as a pair, so the
    # number the OS picks for TCP is never one that another UDP socket already holds.
    udp: DatagramEndpoint | None = None
    try:
        if cfg.discovery == "chord":
            listener, udp = await listen_tcp_and_udp(network, cfg.bind, cfg.port)
        else:
            listener = await network.listen_tcp(cfg.bind, cfg.port)
    except OSError as exc:
        what = "TCP and UDP " if cfg.discovery == "chord" else ""
        raise UsageError(
            f"cannot listen on {what}{cfg.bind}:{cfg.port}: {exc.strerror or exc}"
        ) from None
    http = new_http_client()
    try:
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(partial(session.run, listener=listener))
            if cfg.json:
                emit_json({"event": "listening", "host": addr.host, "port": addr.port})
            else:
                sys.stdout.write(f"listening on {addr}\n")
                sys.stdout.flush()
            chord: ChordDriver | None = None
            if cfg.discovery == "chord":
                chord = await nursery.start(
                    partial(
                        serve_member,
                        cfg.bind,
                        addr.port,
                        cfg.bootstrap,
                        cfg.chord or ChordConfig(),
                        cfg.advertise,
                        endpoint=udp,
                    )
                )
            for job in cfg.jobs:
                if job.meta is None and chord is not None and job.find_peers is None:
                    job.find_peers = _chord_finder(chord, job)
                if job.meta is None:
                    job.meta = await fetch_metadata(job, session, cfg, http, out)
                storage = FileStorage(job.meta.info, job.save_dir)
                options = TorrentOptions(
                    max_peers=cfg.max_peers, file_priorities=job.file_priorities
                )
                torrent = await session.add_torrent(job.meta.info, storage, options)
                job.torrent = torrent
                if cfg.require_complete and not torrent.is_complete and torrent.error is None:
                    have, n = torrent.picker.num_have, torrent.info.num_pieces
                    raise JobFailed(
                        f"{job.save_dir}: holds {have} of {n} pieces of {job.meta.name!r}; "
                        "seed needs a complete copy (check it with `torrentkit verify`)"
                    )
                if chord is not None:
                    if job.meta.info.private:
                        out.line(f"{job.name}: private torrent: not announced to the ring")
                    else:
                        torrent.add_discovery(
                            ChordDiscovery(
                                chord,
                                info_hash=torrent.info_hash,
                                port=addr.port,
                                sink=torrent.add_peers,
                            )
                        )
                if cfg.use_trackers and job.meta.trackers:
                    torrent.add_discovery(
                        TrackerDiscovery(
                            info_hash=torrent.info_hash,
                            peer_id=session.peer_id,
                            port=addr.port,
                            tiers=job.meta.trackers,
                            totals=torrent.totals,
                            sink=torrent.add_peers,
                            http=http,
                        )
                    )
                if cfg.peers:
                    torrent.add_peers(cfg.peers, "cli")
                if job.found_peers:
                    torrent.add_peers(job.found_peers, "magnet")
            for service in cfg.services:
                nursery.start_soon(service, session)
            try:
                result = await _supervise(cfg, out)
            finally:
                for job in cfg.jobs:
                    if job.torrent is not None:
                        _save_resume_quietly(cfg.state_dir, job, out)
                if cfg.json:
                    emit_json(summary(cfg))
            nursery.cancel_scope.cancel()
    finally:
        if udp is not None:
            udp.close()
        with trio.CancelScope(shield=True):
            await listener.aclose()
            await http.aclose()
            for job in cfg.jobs:
                if job.torrent is not None:
                    await job.torrent.storage.close()
    return result


async def _supervise(cfg: RunConfig, out: _Output) -> int:
    """Wait for the end of the job; return the exit code."""
    start = trio.current_time()
    deadline = start + cfg.timeout if cfg.timeout else math.inf
    last_status = -math.inf
    interrupted: list[int] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    interrupted.append(signum)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch_signals)
            if cfg.ui:
                quit_event = trio.Event()

                async def dashboard() -> None:
                    view = LiveSnapshots([j.torrent for j in cfg.jobs if j.torrent is not None])
                    await run_dashboard(
                        lambda: view,
                        quit_event=quit_event,
                        titles=[job.name for job in cfg.jobs],
                    )
                    if quit_event.is_set():  # q: stop as Ctrl-C would
                        interrupted.append(signal.SIGINT)
                        nursery.cancel_scope.cancel()

                nursery.start_soon(dashboard)
            while True:
                now = trio.current_time()
                torrents = [j.torrent for j in cfg.jobs if j.torrent is not None]
                failed = [t for t in torrents if t.error is not None]
                if failed:
                    nursery.cancel_scope.cancel()
                    raise JobFailed(f"{failed[0].info.name}: {failed[0].error}")
                all_complete = all(t.is_complete for t in torrents)
                if all_complete and _seeding_done(cfg, torrents, now):
                    nursery.cancel_scope.cancel()
                    return EXIT_OK
                if now >= deadline:
                    nursery.cancel_scope.cancel()
                    if all_complete:
                        return EXIT_OK
                    missing = [t.info.name for t in torrents if not t.is_complete]
                    raise JobFailed(
                        f"incomplete after {cfg.timeout:g} s: {', '.join(missing)} "
                        "(data so far is kept and resumable)"
                    )
                if not cfg.json and not cfg.ui and now - last_status >= STATUS_EVERY:
                    last_status = now
                    for job in cfg.jobs:
                        out.line(_status_line(job))
                await trio.sleep(0.2)
    if interrupted and interrupted[0] == signal.SIGINT:
        return EXIT_INTERRUPTED
    torrents = [j.torrent for j in cfg.jobs if j.torrent is not None]
    return EXIT_OK if all(t.is_complete for t in torrents) else EXIT_FAILED


def _seeding_done(cfg: RunConfig, torrents: list[Torrent], now: float) -> bool:
    if cfg.seed_ratio is None and cfg.seed_time is None:
        return not cfg.seed_after
    for t in torrents:
        done = False
        if cfg.seed_ratio is not None:
            total = t.info.total_length
            done = done or t.uploaded >= cfg.seed_ratio * total
        if cfg.seed_time is not None and t.completed_at is not None:
            done = done or now - t.completed_at >= cfg.seed_time
        if not done:
            return False
    return True


def run_config(cfg: RunConfig) -> int:
    return trio.run(run_swarm, cfg)


ArgsToConfig = Callable[[argparse.Namespace], RunConfig]
