"""What a ``download`` / ``seed`` run shows (:mod:`torrentkit.cli.swarm` runs it): the JSON
event stream, plain status lines, the closing ``summary`` event and the dashboard's view of
the running torrents. It reads handles, statuses, snapshots and events, nothing else."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO, overload

import trio

from torrentkit.api import TorrentHandle, TorrentStatus
from torrentkit.cli.common import emit_json, safe_text
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.events import (
    Event,
    MetadataReceived,
    PeerBanned,
    PeerDisconnected,
    TorrentCompleted,
)
from torrentkit.text import format_duration, format_rate


def line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


#: How long the JSON writer gathers lines before one write: each write to a pipe wakes its
#: reader, and on a busy machine the writer loses its core to it (see :class:`JsonLines`).
JSON_GATHER = 0.05
#: Lines waiting beyond this many characters are written at once, the loop waiting on the
#: reader: memory stays bounded when nobody reads (the old behaviour, as backpressure).
JSON_BACKLOG = 8 << 20


class JsonLines:
    """The ``--json`` event stream, written so that stdout never stalls the engine.

    Written as each event happened, a line per event and a flush each (300-400 lines for a
    128-piece download), every write woke the reader, and on a loaded machine the scheduler
    then gave the reader the writer's core: leechers of tools/bench_swarm.py spent 0.1-0.66 s
    of their 4 s run blocked in those writes, their peers waiting. Here :meth:`emit` only
    queues the line; :meth:`run` (a task) writes what gathered over :data:`JSON_GATHER`
    seconds in one write, from a worker thread, so a slow or stuck reader holds up only that
    thread. Lines keep their order; :meth:`close` writes what is left, and after it (or
    before :meth:`run` starts) every line is written at once.
    """

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out if out is not None else sys.stdout
        self._pending: list[str] = []
        self._size = 0
        self._wake = trio.Event()
        self._running = False

    def emit(self, obj: dict[str, Any]) -> None:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._pending.append(text)
        self._size += len(text)
        if not self._running or self._size > JSON_BACKLOG:
            self._write(self._take())
        else:
            self._wake.set()

    def _take(self) -> str:
        text = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        return text

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write the queued lines until cancelled (then :meth:`close` writes the rest).
        Start it with ``nursery.start``: from then on lines are queued, not written."""
        self._running = True
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                await trio.sleep(JSON_GATHER)
                # Not cancellable while the thread writes: a line is written whole or not
                # taken, and close() comes after this write.
                await trio.to_thread.run_sync(self._write, self._take())
        finally:
            self._running = False

    def close(self) -> None:
        """Write every queued line now; later lines are written as they come."""
        self._running = False
        self._write(self._take())


class RunView:
    """One run's torrents, its output mode, and what the events told (bans, completion
    times) for the summary. ``on_event`` is the session subscriber."""

    def __init__(
        self, *, json: bool, seed_after: bool = False, out: JsonLines | None = None
    ) -> None:
        self.json = json
        #: where the JSON lines go (queued, written by its task); None: written at once
        self.out = out
        self.seed_after = seed_after  # the run goes on seeding once complete
        self.handles: list[TorrentHandle] = []
        self.banned: dict[str, set[str]] = {}
        self.completed: dict[str, float] = {}
        #: per torrent, the peers that left: their summary rows, by address
        self.departed: dict[str, dict[str, dict[str, Any]]] = {}
        self.start = trio.current_time()

    def on_event(self, event: Event) -> None:
        if isinstance(event, PeerBanned):
            self.banned.setdefault(event.info_hash, set()).add(event.peer)
        elif isinstance(event, TorrentCompleted):
            self.completed[event.info_hash] = event.seconds
        elif isinstance(event, PeerDisconnected):
            self.departed.setdefault(event.info_hash, {})[event.peer] = _peer_row(
                event.peer, event.client, event.downloaded, event.uploaded, event.unchoked_seconds
            )
        if self.json:
            if self.out is not None:
                self.out.emit(event.to_json())
            else:
                emit_json(event.to_json())
        elif isinstance(event, MetadataReceived):
            line(f"{safe_text(event.name)}: metadata received ({event.size} bytes)")
        elif isinstance(event, TorrentCompleted):
            self._say_complete(event)

    def elapsed(self) -> float:
        return round(trio.current_time() - self.start, 3)

    def _say_complete(self, event: TorrentCompleted) -> None:
        """The line that says a download is done, where it is, and whether seeding starts."""
        for handle in self.handles:
            if handle.info_hash.hex() == event.info_hash:
                path = safe_text(str(handle.save_path / handle.name))
                took = format_duration(event.seconds)
                line(f"{safe_text(handle.name)}: complete in {took}: saved to {path}")
                if self.seed_after:
                    line(f"{safe_text(handle.name)}: seeding")

    def summary(self) -> dict[str, Any]:
        """The closing ``summary`` event: per torrent, its totals and what each peer did."""
        now = trio.current_time()
        torrents = []
        for handle in self.handles:
            meta = handle.metainfo
            if meta is None:  # a magnet whose metadata never came
                continue
            s, snap = handle.status(), handle.snapshot()
            seconds = snap.t if snap is not None else now - self.start
            torrents.append(
                {
                    "name": s.name,
                    "info_hash": s.info_hash,
                    "complete": s.is_seeding,
                    "pieces": s.pieces,
                    "num_pieces": s.num_pieces,
                    "downloaded": s.downloaded,
                    "uploaded": s.uploaded,
                    "redundant": s.redundant,
                    "ratio": round(s.uploaded / meta.info.total_length, 3),
                    "seconds": round(self.completed.get(s.info_hash, seconds), 3),
                    "banned": sorted(self.banned.get(s.info_hash, ())),
                    "peers": self._peers(s.info_hash, snap),
                }
            )
        return {"event": "summary", "t": round(now - self.start, 3), "torrents": torrents}

    def _peers(self, info_hash: str, snap: TorrentSnapshot | None) -> list[dict[str, Any]]:
        """Every peer of the run: the connected ones now, then those that left."""
        rows = {
            p.addr: _peer_row(p.addr, p.client, p.downloaded, p.uploaded, p.unchoked_seconds)
            for p in (snap.peers if snap is not None else ())
        }
        for addr, row in self.departed.get(info_hash, {}).items():
            rows.setdefault(addr, row)
        return list(rows.values())


def _peer_row(
    addr: str, client: str, downloaded: int, uploaded: int, unchoked: float
) -> dict[str, Any]:
    return {
        "peer": addr,
        "client": client,
        "downloaded": downloaded,
        "uploaded": uploaded,
        "unchoked_seconds": round(unchoked, 1),
    }


def status_line(s: TorrentStatus) -> str:
    """``name: downloading 120/400 pieces (30.0%), 3 peers, down 1.2 MiB/s, up 300 KiB/s,
    ETA 1m05`` (binary units, as the limits are given)."""
    name = safe_text(s.name[:40])
    if s.state not in ("downloading", "seeding"):
        return f"{name}: {s.state}"
    peers = f"{s.num_peers} peer{'' if s.num_peers == 1 else 's'}"
    text = (
        f"{name}: {s.state} {s.pieces}/{s.num_pieces} pieces "
        f"({100.0 * s.pieces / s.num_pieces:.1f}%), {peers}, "
        f"down {format_rate(s.download_rate)}, up {format_rate(s.upload_rate)}"
    )
    if s.state == "downloading":
        text += f", ETA {format_duration(s.eta) if s.eta is not None else '?'}"
    return text


class HandleSnapshots(Sequence[TorrentSnapshot]):
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
