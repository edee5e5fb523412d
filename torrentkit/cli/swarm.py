"""The runner behind ``download`` and ``seed`` (and ``get``, ``share``): a :class:`RunPlan`
run over the public API (:func:`torrentkit.open_session`), nothing else.

:func:`run_plan` opens the session, prints where it listens, adds every torrent, shows what
happens (``--json`` events, the live dashboard on a TTY, or plain status lines) and waits
for the end: every torrent complete (no seeding asked), the seeding goal (``--seed-ratio``
counting all-time upload, ``--seed-time``), ``--timeout`` (exit 1 if anything is
incomplete), a torrent error (exit 1), SIGTERM (exit 0) or Ctrl-C (exit 130); leaving the
session is the clean stop (trackers told ``stopped``, resume data saved, files closed).
"""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, overload

import trio

from torrentkit.api import (
    DuplicateTorrent,
    Session,
    SessionError,
    Source,
    TorrentHandle,
    TorrentStatus,
    open_session,
)

# LEGACY re-exports for get / share / demo until they move to run_plan (then delete).
from torrentkit.cli._legacy_swarm import (  # noqa: F401
    Job,
    LiveSnapshots,
    PeerFinder,
    RunConfig,
    Service,
    check_save_dir,
    default_state_dir,
    parse_peers,
    parse_rate,
    run_config,
    run_swarm,
    want_ui,
)
from torrentkit.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    JobFailed,
    UsageError,
    emit_json,
    safe_text,
)
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.events import Event, MetadataReceived, PeerBanned, TorrentCompleted
from torrentkit.ids import PeerAddr
from torrentkit.settings import Settings
from torrentkit.ui.live import run_dashboard

STATUS_EVERY = 3.0
#: Extra work in the session once every torrent is added (``share`` publishing to an index,
#: ``get`` feeding a search's holders to its handle); cancelled when the run ends.
Extra = Callable[[Session], Awaitable[None]]


@dataclass(slots=True)
class AddSpec:
    """One ``Session.add``: a .torrent path, magnet URI, Metainfo or Magnet into ``save_path``
    (its parent folder); ``files``: a priority per file (None: all); ``peers``: dial these."""

    source: Source
    save_path: Path
    files: list[int] | None = None
    peers: Sequence[PeerAddr] = ()


@dataclass(slots=True)
class RunPlan:
    settings: Settings
    adds: list[AddSpec]
    json: bool = False
    ui: bool = False  # the live dashboard (a TTY, no --json, no --no-ui)
    seed_after: bool = False  # keep seeding once complete (until the goal or a signal)
    seed_ratio: float | None = None
    seed_time: float | None = None
    timeout: float | None = None
    require_complete: bool = False  # seed: the data must already be complete (else exit 1)


def run_plan(plan: RunPlan, *, extra: Extra | None = None) -> int:
    """Run ``plan`` to its end (its own ``trio.run``); the exit code."""
    return trio.run(partial(arun_plan, plan, extra=extra))


async def arun_plan(plan: RunPlan, *, extra: Extra | None = None) -> int:
    """:func:`run_plan` inside a running trio program."""
    run = _Run(plan)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with open_session(plan.settings) as session:
                session.subscribe(run.on_event)
                addr = session.address
                if plan.json:
                    emit_json({"event": "listening", "host": addr.host, "port": addr.port})
                else:
                    sys.stdout.write(f"listening on {addr}\n")
                    sys.stdout.flush()
                for spec in plan.adds:
                    run.handles.append(await _add(session, spec))
                if plan.require_complete:
                    await _require_complete(run.handles)
                async with trio.open_nursery() as nursery:
                    if extra is not None:
                        nursery.start_soon(extra, session)
                    try:
                        code = await _supervise(run, signals)
                    finally:
                        if plan.json:
                            emit_json(summary(run))
                    nursery.cancel_scope.cancel()
        except SessionError as exc:
            raise UsageError(str(exc)) from None
    return code


async def _add(session: Session, spec: AddSpec) -> TorrentHandle:
    try:
        handle = await session.add(spec.source, spec.save_path, files=spec.files, peers=spec.peers)
    except (DuplicateTorrent, ValueError) as exc:
        raise UsageError(str(exc)) from None
    meta = handle.metainfo
    if session.settings.chord is not None and meta is not None and meta.info.private:
        _line(f"{safe_text(handle.name)}: private torrent: not announced to the ring")
    return handle


async def _require_complete(handles: Sequence[TorrentHandle]) -> None:
    for handle in handles:
        while (st := handle.status()).state == "checking":
            await trio.sleep(0.05)
        if st.state not in ("seeding", "error"):
            raise JobFailed(
                f"{handle.save_path}: holds {st.pieces} of {st.num_pieces} pieces of "
                f"{st.name!r}; seed needs a complete copy (check it with `torrentkit verify`)"
            )


def _line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class _Run:
    """One run's torrents and what the events told about them (bans, completion times)."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.handles: list[TorrentHandle] = []
        self.banned: dict[str, set[str]] = {}
        self.completed: dict[str, float] = {}
        self.start = trio.current_time()

    def on_event(self, event: Event) -> None:
        if isinstance(event, PeerBanned):
            self.banned.setdefault(event.info_hash, set()).add(event.peer)
        elif isinstance(event, TorrentCompleted):
            self.completed[event.info_hash] = event.seconds
        if self.plan.json:
            emit_json(event.to_json())
        elif isinstance(event, MetadataReceived):
            _line(f"{safe_text(event.name)}: metadata received ({event.size} bytes)")


async def _supervise(run: _Run, signals: Any) -> int:
    """Wait for the end of the run; the exit code (JobFailed when it failed)."""
    stopped: list[int] = []  # the signal that ended the run ("q" on the dashboard: SIGINT)
    code: int | None = None
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            async for signum in signals:
                stopped.append(signum)
                nursery.cancel_scope.cancel()
                return

        async def dashboard() -> None:
            quit_event = trio.Event()
            await run_dashboard(lambda: _Snapshots(run.handles), quit_event=quit_event)
            if quit_event.is_set():
                stopped.append(signal.SIGINT)
                nursery.cancel_scope.cancel()

        nursery.start_soon(watch_signals)
        if run.plan.ui:
            nursery.start_soon(dashboard)
        code = await _until_done(run)
        nursery.cancel_scope.cancel()
    if code is not None:
        return code
    if stopped and stopped[0] == signal.SIGINT:
        return EXIT_INTERRUPTED
    return EXIT_OK if all(h.status().is_seeding for h in run.handles) else EXIT_FAILED


async def _until_done(run: _Run) -> int:
    plan = run.plan
    deadline = run.start + plan.timeout if plan.timeout else math.inf
    last_status = -math.inf
    while True:
        now = trio.current_time()
        statuses = [h.status() for h in run.handles]
        failed = [s for s in statuses if s.state == "error"]
        if failed:
            raise JobFailed(f"{failed[0].name}: {failed[0].error}")
        complete = all(s.is_seeding for s in statuses)
        if complete and _seeding_done(run, statuses):
            return EXIT_OK
        if now >= deadline:
            if complete:
                return EXIT_OK
            raise JobFailed(_incomplete(statuses, plan.timeout or 0))
        if not plan.json and not plan.ui and now - last_status >= STATUS_EVERY:
            last_status = now
            for s in statuses:
                _line(_status_line(s))
        await trio.sleep(0.2)


def _seeding_done(run: _Run, statuses: list[TorrentStatus]) -> bool:
    plan = run.plan
    if plan.seed_ratio is None and plan.seed_time is None:
        return not plan.seed_after
    for handle, s in zip(run.handles, statuses, strict=True):
        meta = handle.metainfo
        size = meta.info.total_length if meta is not None else 0
        ratio_met = plan.seed_ratio is not None and s.all_time_upload >= plan.seed_ratio * size
        time_met = plan.seed_time is not None and s.seeding_seconds >= plan.seed_time
        if not (ratio_met or time_met):
            return False
    return True


def _incomplete(statuses: list[TorrentStatus], timeout: float) -> str:
    waiting = [s for s in statuses if s.state == "metadata"]
    if waiting:
        return f"{waiting[0].name}: no peer delivered the metadata within {timeout:g} s"
    missing = ", ".join(s.name for s in statuses if not s.is_seeding)
    return f"incomplete after {timeout:g} s: {missing} (data so far is kept and resumable)"


def _status_line(s: TorrentStatus) -> str:
    name = safe_text(s.name[:40])
    if not s.num_pieces:
        return f"{name}: {s.state}"
    return (
        f"{name}: {s.pieces}/{s.num_pieces} pieces ({100.0 * s.pieces / s.num_pieces:.1f}%), "
        f"{s.num_peers} peers, down {s.download_rate / 1e6:.1f} MB/s, "
        f"up {s.upload_rate / 1e6:.1f} MB/s"
    )


def summary(run: _Run) -> dict[str, Any]:
    """The closing ``summary`` event: per torrent, its totals and what each peer did."""
    now = trio.current_time()
    torrents = []
    for handle in run.handles:
        meta = handle.metainfo
        if meta is None:  # a magnet whose metadata never came
            continue
        s, snap = handle.status(), handle.snapshot()
        seconds = snap.t if snap is not None else now - run.start
        torrents.append(
            {
                "name": s.name,
                "info_hash": s.info_hash,
                "complete": s.is_seeding,
                "pieces": s.pieces,
                "num_pieces": s.num_pieces,
                "downloaded": s.downloaded,
                "uploaded": s.uploaded,
                "ratio": round(s.uploaded / meta.info.total_length, 3),
                "seconds": round(run.completed.get(s.info_hash, seconds), 3),
                "banned": sorted(run.banned.get(s.info_hash, ())),
                "peers": [
                    {
                        "peer": p.addr,
                        "client": p.client,
                        "downloaded": p.downloaded,
                        "uploaded": p.uploaded,
                        "unchoked_seconds": round(p.unchoked_seconds, 1),
                    }
                    for p in (snap.peers if snap is not None else ())
                ],
            }
        )
    return {"event": "summary", "t": round(now - run.start, 3), "torrents": torrents}


class _Snapshots(Sequence[TorrentSnapshot]):
    """The dashboard's view: the running torrents; a snapshot is built only for the one shown
    (the dashboard reads ``len()`` and the selected item each frame)."""

    def __init__(self, handles: Sequence[TorrentHandle]) -> None:
        self._handles = [h for h in handles if h.status().state in ("downloading", "seeding")]

    def __len__(self) -> int:
        return len(self._handles)

    @overload
    def __getitem__(self, index: int) -> TorrentSnapshot: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[TorrentSnapshot]: ...
    def __getitem__(self, index: int | slice) -> TorrentSnapshot | Sequence[TorrentSnapshot]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        snap = self._handles[index].snapshot()
        assert snap is not None  # running torrents have one
        return snap
