"""The runner behind ``download`` and ``seed`` (and ``get``, ``share``): a :class:`RunPlan`
run over the public API (:func:`torrentkit.open_session`), nothing else.

:func:`run_plan` opens the session, prints where it listens, adds every torrent, shows what
happens (``--json`` events, the live dashboard on a TTY, or plain status lines) and waits
for the end: every torrent complete (no seeding asked), the seeding goal (``--seed-ratio``
counting all-time upload, ``--seed-time``), ``--timeout`` (exit 1 if anything is
incomplete), a torrent error (exit 1), SIGTERM (exit 0; 1 and a line while a download is
incomplete) or Ctrl-C (exit 130); leaving the session is the clean stop (trackers told
``stopped``, resume data saved, files closed).
"""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

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
from torrentkit.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    JobFailed,
    UsageError,
    safe_text,
)
from torrentkit.cli.swarm_output import HandleSnapshots, JsonLines, RunView, line, status_line
from torrentkit.ids import PeerAddr
from torrentkit.settings import Settings

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
    require_complete: bool = False  # seed: the data must be complete once checked (else exit 1)


def run_plan(plan: RunPlan, *, extra: Extra | None = None) -> int:
    """Run ``plan`` to its end (its own ``trio.run``); the exit code."""
    return trio.run(partial(arun_plan, plan, extra=extra))


async def arun_plan(plan: RunPlan, *, extra: Extra | None = None) -> int:
    """:func:`run_plan` inside a running trio program."""
    out = JsonLines() if plan.json else None
    run = RunView(json=plan.json, seed_after=plan.seed_after, out=out)
    if out is None:
        return await _arun_plan(plan, run, extra)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(out.run)
            code = await _arun_plan(plan, run, extra, out)
            nursery.cancel_scope.cancel()
    finally:
        out.close()  # what is still queued, in order, the summary last
    return code


async def _arun_plan(
    plan: RunPlan, run: RunView, extra: Extra | None, out: JsonLines | None = None
) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with open_session(plan.settings) as session:
                unsubscribe = session.subscribe(run.on_event)
                addr = session.address
                if out is not None:
                    out.emit(
                        {"event": "listening", "t": run.elapsed(), "host": addr.host,
                         "port": addr.port}
                    )  # fmt: skip
                else:
                    sys.stdout.write(f"listening on {addr}\n")
                    sys.stdout.flush()
                for spec in plan.adds:
                    run.handles.append(await _add(session, spec))
                async with trio.open_nursery() as nursery:
                    if extra is not None:
                        nursery.start_soon(extra, session)
                    try:
                        code = await _supervise(plan, run, signals)
                    finally:
                        # The summary closes the stream: the session's own stop (resume
                        # saves, trackers told) follows it quietly.
                        unsubscribe()
                        if out is not None:
                            out.emit(run.summary())
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
        line(f"{safe_text(handle.name)}: private torrent: not announced to the ring")
    return handle


async def _supervise(plan: RunPlan, run: RunView, signals: Any) -> int:
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
            from torrentkit.ui.live import run_dashboard  # rich: only when a TTY UI is shown

            quit_event = trio.Event()
            await run_dashboard(lambda: HandleSnapshots(run.handles), quit_event=quit_event)
            if quit_event.is_set():
                stopped.append(signal.SIGINT)
                nursery.cancel_scope.cancel()

        nursery.start_soon(watch_signals)
        if plan.ui:
            nursery.start_soon(dashboard)
        code = await _until_done(plan, run)
        nursery.cancel_scope.cancel()
    if code is not None:
        return code
    if stopped and stopped[0] == signal.SIGINT:
        return EXIT_INTERRUPTED
    missing = [s.name for s in map(TorrentHandle.status, run.handles) if not s.is_seeding]
    if missing:  # SIGTERM before the download was complete
        raise JobFailed(f"stopped before complete: {', '.join(missing)} (data so far is kept)")
    return EXIT_OK


async def _until_done(plan: RunPlan, run: RunView) -> int:
    deadline = run.start + plan.timeout if plan.timeout else math.inf
    last_status = -math.inf
    while True:
        now = trio.current_time()
        statuses = [h.status() for h in run.handles]
        failed = [s for s in statuses if s.state == "error"]
        if failed:
            raise JobFailed(f"{failed[0].name}: {failed[0].error}")
        if plan.require_complete:
            _require_complete(run.handles, statuses)
        complete = all(s.is_seeding for s in statuses)
        if complete and _seeding_done(plan, run.handles, statuses):
            return EXIT_OK
        if now >= deadline:
            if complete:
                return EXIT_OK
            raise JobFailed(_incomplete(statuses, plan.timeout or 0))
        if not plan.json and not plan.ui and now - last_status >= STATUS_EVERY:
            last_status = now
            for s in statuses:
                line(status_line(s))
        await trio.sleep(0.2)


def _require_complete(handles: list[TorrentHandle], statuses: list[TorrentStatus]) -> None:
    for handle, s in zip(handles, statuses, strict=True):
        # Checked, and pieces are missing (every piece present but "downloading" is the
        # moment before the torrent marks itself complete: not a failure).
        if s.state == "downloading" and s.pieces < s.num_pieces:
            raise JobFailed(
                f"{handle.save_path}: holds {s.pieces} of {s.num_pieces} pieces of {s.name!r}; "
                "seed needs a complete copy (check it with `torrentkit verify`)"
            )


def _seeding_done(
    plan: RunPlan, handles: list[TorrentHandle], statuses: list[TorrentStatus]
) -> bool:
    if plan.seed_ratio is None and plan.seed_time is None:
        return not plan.seed_after
    for handle, s in zip(handles, statuses, strict=True):
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
