"""What ``torrentkit demo`` shares between its discovery modes (:mod:`torrentkit.cli.demo`,
:mod:`torrentkit.cli.demo_p2p`): the demo peer, the leechers' upload limits, starting a
session, watching the swarm (live dashboard or status lines), and the summary."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from rich import box
from rich.console import Console
from rich.table import Table

from torrentkit.api import Session, TorrentHandle, open_session
from torrentkit.cli.common import EXIT_FAILED, EXIT_OK, emit_json
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.events import TorrentCompleted
from torrentkit.metainfo import Metainfo
from torrentkit.settings import Settings

KIB = 1024
MIB = 1024 * 1024
STATUS_EVERY = 3.0


@dataclass(slots=True)
class Node:
    """One demo peer: its session and its torrent."""

    name: str
    upload_limit: int
    session: Session
    handle: TorrentHandle
    save_dir: Path
    #: ``TorrentCompleted.seconds`` (from the torrent's start) when it completes
    completions: list[float] = field(default_factory=list)

    @property
    def completed_in(self) -> float | None:
        return self.completions[0] if self.completions else None


def leecher_limits(n: int, seed_rate: int) -> list[int]:
    """Upload limits spread geometrically from a sixteenth of the seeder's rate (a near
    free rider) to twice it, so tit-for-tat has very different peers to tell apart."""
    if n == 1:
        return [seed_rate]
    low, high = seed_rate / 16, seed_rate * 2
    return [int(low * (high / low) ** (i / (n - 1))) for i in range(n)]


async def start_node(
    stack: AsyncExitStack, name: str, upload_limit: int, settings: Settings, source: Any, save: Path
) -> Node:
    """A session (left when ``stack`` closes) with ``source`` added, saving into ``save``."""
    session = await stack.enter_async_context(open_session(settings))
    done: list[float] = []  # TorrentCompleted.seconds: since the torrent started
    session.subscribe(lambda e: done.append(e.seconds) if isinstance(e, TorrentCompleted) else None)
    return Node(name, upload_limit, session, await session.add(source, save), save, done)


async def watch(args: argparse.Namespace, nodes: list[Node], ui: bool, err: Console) -> bool:
    """Until every leecher completes (True) or the timeout (False)."""

    async def all_done() -> None:
        for node in nodes:
            await node.handle.wait_complete()

    with trio.move_on_after(args.timeout):
        async with trio.open_nursery() as nursery:
            if ui:
                while any(n.handle.snapshot(map_cells=1) is None for n in nodes):
                    await trio.sleep(0.1)  # still checking: nothing to show yet
                quit_event = trio.Event()
                nursery.start_soon(dashboard, nodes, quit_event)
                nursery.start_soon(_set_after, all_done, quit_event)
                await quit_event.wait()  # all done, or "q" pressed
            else:
                nursery.start_soon(_status_lines, nodes, err, args.json)
                await all_done()
            nursery.cancel_scope.cancel()
        return all(node.handle.status().is_seeding for node in nodes)
    return False


async def _set_after(wait: Callable[[], Awaitable[None]], event: trio.Event) -> None:
    await wait()
    await trio.sleep(1.0)  # let the last frame show everyone done
    event.set()


async def dashboard(nodes: list[Node], quit_event: trio.Event) -> None:
    """The live dashboard, one leecher at a time (keys switch), from the handles' snapshots:
    only the one shown is built each frame; while a torrent is not running, its last one."""
    from torrentkit.ui.live import run_dashboard

    last: dict[int, TorrentSnapshot] = {}

    class View(Sequence[TorrentSnapshot]):
        def __len__(self) -> int:
            return len(nodes)

        def __getitem__(self, i: Any) -> Any:
            if isinstance(i, slice):
                return [self[k] for k in range(*i.indices(len(nodes)))]
            last[i] = nodes[i].handle.snapshot() or last[i]
            return last[i]

    view, titles = View(), [n.name for n in nodes]
    await run_dashboard(lambda: view, titles=titles, quit_event=quit_event)


async def _status_lines(nodes: list[Node], err: Console, quiet: bool) -> None:
    while True:
        await trio.sleep(STATUS_EVERY)
        if not quiet:
            parts = [
                f"{n.name.split()[-1]}:{100 * n.handle.status().progress:3.0f}%" for n in nodes
            ]
            err.print("  ".join(parts), markup=False, highlight=False)


def summary(
    meta: Metainfo, seeder: Node, nodes: list[Node], digest: str, finished: bool
) -> dict[str, Any]:
    # How long the others kept each node unchoked (tit-for-tat's reward), by peer id.
    given: dict[bytes, float] = {}
    for other in [seeder, *nodes]:
        for pid, total in other.handle.unchoked_seconds().items():
            given[pid] = given.get(pid, 0.0) + total
    rows = []
    for node in nodes:
        status, seconds = node.handle.status(), node.completed_in
        try:
            data = (node.save_dir / meta.info.name).read_bytes()
        except OSError:
            data = None
        row = {
            "name": node.name,
            "upload_limit": node.upload_limit,
            "complete": status.is_seeding,
            "seconds": round(seconds, 2) if seconds is not None else None,
            "downloaded": status.downloaded,
            "uploaded": status.uploaded,
            "ratio": round(status.uploaded / meta.info.total_length, 3),
            "unchoked_seconds": round(given.get(node.session.peer_id, 0.0), 1),
            "verified": data is not None and hashlib.sha256(data).hexdigest() == digest,
        }
        rows.append(row)
    return {
        "event": "summary",
        "finished": finished,
        "size": meta.info.total_length,
        "pieces": meta.info.num_pieces,
        "seeder_uploaded": seeder.handle.status().uploaded,
        "leechers": rows,
    }


def print_summary(summary: dict[str, Any]) -> None:
    """The summary table; units sit in the headers so it fits 80 columns."""
    table = Table(title="demo summary", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    heads = ["upload\nKiB/s", "time\ns", "down\nMiB", "up\nMiB", "ratio", "unchoked by\nothers, s"]
    table.add_column("leecher", no_wrap=True)
    for head in heads:
        table.add_column(head, justify="right", no_wrap=True)
    table.add_column("copy", no_wrap=True)
    for row in summary["leechers"]:
        table.add_row(
            row["name"],
            f"{row['upload_limit'] / KIB:.0f}",
            f"{row['seconds']:.1f}" if row["seconds"] is not None else "-",
            f"{row['downloaded'] / MIB:.1f}",
            f"{row['uploaded'] / MIB:.1f}",
            f"{row['ratio']:.2f}",
            f"{row['unchoked_seconds']:.0f}",
            "[green]verified[/]" if row["verified"] else "[red]WRONG[/]",
        )
    console = Console(highlight=False)
    console.print(table)
    if not summary["finished"]:
        console.print("[red]timed out before every leecher finished[/]")


def report(summary: dict[str, Any], as_json: bool) -> int:
    """The summary (one JSON object, or the table); exit 0 if every copy is verified, else 1."""
    if as_json:
        emit_json(summary)
    else:
        print_summary(summary)
    return EXIT_OK if all(row["verified"] for row in summary["leechers"]) else EXIT_FAILED
