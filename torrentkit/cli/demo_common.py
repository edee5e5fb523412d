"""What ``torrentkit demo`` shares between its discovery modes (:mod:`torrentkit.cli.demo`,
:mod:`torrentkit.cli.demo_p2p`): the demo peer, the leechers' upload limits, starting a
session, watching the swarm (live dashboard or status lines), and the summary."""

from __future__ import annotations

import argparse
import hashlib
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio
from rich import box
from rich.console import Console
from rich.table import Table

from torrentkit.api import Session, TorrentHandle, open_session
from torrentkit.cli.common import EXIT_FAILED, EXIT_OK, emit_json
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.events import PeerEvent, TorrentCompleted
from torrentkit.metainfo import Metainfo
from torrentkit.settings import Settings

KIB = 1024
MIB = 1024 * 1024
STATUS_EVERY = 3.0
#: The demo's leecher that never uploads (``Settings(upload_slots=0, optimistic_slots=0)``).
FREE_RIDER = "free rider"


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

    @property
    def free_rider(self) -> bool:
        return self.name == FREE_RIDER


def leecher_limits(n: int, seed_rate: int) -> list[int]:
    """Upload limits spread geometrically from an eighth of the seeder's rate to half of it
    (4x apart), so tit-for-tat has very different peers to tell apart. The seeder is the
    fastest peer so that it is not the bottleneck; the slowest leecher still uploads a fair
    share, so that what it gives buys it something over the free rider (docs/design.md,
    "The demo's swarm")."""
    if n == 1:
        return [seed_rate // 2]
    low, high = seed_rate / 8, seed_rate / 2
    return [int(low * (high / low) ** (i / (n - 1))) for i in range(n)]


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation of two equally long series (average ranks for ties);
    None when either series is constant or shorter than 2."""

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return out

    if len(xs) != len(ys) or len(xs) < 2:
        return None
    try:  # Pearson's correlation of the ranks (Python 3.12 has method="ranked")
        return statistics.correlation(ranks(xs), ranks(ys))
    except statistics.StatisticsError:  # a constant series
        return None


async def start_node(
    stack: AsyncExitStack, name: str, upload_limit: int, settings: Settings, source: Any, save: Path
) -> Node:
    """A session (left when ``stack`` closes) with ``source`` added, saving into ``save``."""
    session = await stack.enter_async_context(open_session(settings))
    done: list[float] = []  # TorrentCompleted.seconds: since the torrent started
    session.subscribe(lambda e: done.append(e.seconds) if isinstance(e, TorrentCompleted) else None)
    return Node(name, upload_limit, session, await session.add(source, save), save, done)


async def watch(
    args: argparse.Namespace,
    nodes: list[Node],
    ui: bool,
    err: Console,
    everyone: Sequence[Node] = (),
) -> tuple[bool, float]:
    """Until every leecher completes (True) or the timeout (False); and how long that took.
    The dashboard names the peers it knows (``everyone``: the seeder too) by their names."""
    started = trio.current_time()
    finished = await _watch(args, nodes, ui, err, everyone or nodes)
    return finished, trio.current_time() - started


async def _watch(
    args: argparse.Namespace, nodes: list[Node], ui: bool, err: Console, everyone: Sequence[Node]
) -> bool:

    async def all_done() -> None:
        for node in nodes:
            await node.handle.wait_complete()

    with trio.move_on_after(args.timeout):
        async with trio.open_nursery() as nursery:
            if ui:
                while any(n.handle.snapshot(map_cells=1) is None for n in nodes):
                    await trio.sleep(0.1)  # still checking: nothing to show yet
                quit_event = trio.Event()
                nursery.start_soon(dashboard, nodes, quit_event, everyone)
                nursery.start_soon(_set_after, all_done, quit_event)
                await quit_event.wait()  # all done, or "q" pressed
            else:
                nursery.start_soon(_status_lines, nodes, err, args.json)
                await all_done()
            nursery.cancel_scope.cancel()
        return all(node.completed_in is not None for node in nodes)
    return False


async def _set_after(wait: Callable[[], Awaitable[None]], event: trio.Event) -> None:
    await wait()
    await trio.sleep(1.0)  # let the last frame show everyone done
    event.set()


async def dashboard(
    nodes: list[Node], quit_event: trio.Event, everyone: Sequence[Node] = ()
) -> None:
    """The live dashboard, one leecher at a time (keys switch), from the handles' snapshots:
    only the one shown is built each frame; while a torrent is not running, its last one.
    Peers (table rows and events) show as the demo knows them ("seeder", "leecher 3",
    "free rider"), matched by peer id, instead of a bare address."""
    from torrentkit.ui.live import run_dashboard

    last: dict[int, TorrentSnapshot] = {}
    names = {node.session.peer_id: node.name for node in everyone or nodes}
    seen: dict[int, dict[str, str]] = {}  # per node shown: address -> name, as learnt

    class View(Sequence[TorrentSnapshot]):
        def __len__(self) -> int:
            return len(nodes)

        def __getitem__(self, i: Any) -> Any:
            if isinstance(i, slice):
                return [self[k] for k in range(*i.indices(len(nodes)))]
            snap = nodes[i].handle.snapshot()
            if snap is not None:
                last[i] = named(snap, names, seen.setdefault(i, {}))
            return last[i]

    view, titles = View(), [n.name for n in nodes]
    await run_dashboard(lambda: view, titles=titles, quit_event=quit_event)


def named(
    snap: TorrentSnapshot, names: Mapping[bytes, str], seen: dict[str, str]
) -> TorrentSnapshot:
    """``snap`` with each known peer's address replaced by its name, in the peer table and
    in the events (``seen`` remembers address -> name, for events of peers since gone)."""
    for p in snap.peers:
        name = names.get(p.peer_id)
        if name is not None:
            seen[p.addr] = name
    peers = tuple(replace(p, addr=seen.get(p.addr, p.addr)) for p in snap.peers)
    events = tuple(
        replace(ev, peer=seen[ev.peer]) if isinstance(ev, PeerEvent) and ev.peer in seen else ev
        for ev in snap.events
    )
    return replace(snap, peers=peers, events=events)


async def _status_lines(nodes: list[Node], err: Console, quiet: bool) -> None:
    while True:
        await trio.sleep(STATUS_EVERY)
        if not quiet:
            parts = [
                f"{n.name.split()[-1]}:{100 * n.handle.status().progress:3.0f}%" for n in nodes
            ]
            err.print("  ".join(parts), markup=False, highlight=False)


def summary(
    meta: Metainfo, seeder: Node, nodes: list[Node], digest: str, finished: bool, seconds: float
) -> dict[str, Any]:
    """Per leecher, sorted by time to complete: its upload limit (0 for the free rider),
    seconds to complete, whether its copy is complete and verified, and ``unchoked_share``:
    the share of its run (until it completed; the whole run, ``seconds``, if it did not)
    that the other leechers kept it unchoked, on average over them -- tit-for-tat's reward.
    ``spearman``: the rank correlation between upload limit and time to complete over the
    leechers that completed (-1: the more a leecher uploads, the sooner it is done)."""
    given: dict[bytes, float] = {}  # by the other leechers, not the seeder
    for other in nodes:
        for pid, total in other.handle.unchoked_seconds().items():
            given[pid] = given.get(pid, 0.0) + total
    others = max(1, len(nodes) - 1)
    rows: list[dict[str, Any]] = []
    for node in nodes:
        done = node.completed_in
        share = given.get(node.session.peer_id, 0.0) / (others * max(done or seconds, 1e-9))
        try:
            data = (node.save_dir / meta.info.name).read_bytes()
        except OSError:
            data = None
        rows.append(
            {
                "name": node.name,
                "upload_limit": 0 if node.free_rider else node.upload_limit,
                "seconds": round(done, 2) if done is not None else None,
                "complete": done is not None,
                "verified": data is not None and hashlib.sha256(data).hexdigest() == digest,
                "unchoked_share": round(min(1.0, share), 3),
            }
        )
    rows.sort(key=lambda r: (r["seconds"] is None, r["seconds"] or 0.0, r["name"]))
    timed = [r for r in rows if r["seconds"] is not None]
    rho = spearman([r["upload_limit"] for r in timed], [r["seconds"] for r in timed])
    return {
        "event": "summary",
        "finished": finished,
        "size": meta.info.total_length,
        "pieces": meta.info.num_pieces,
        "seeder_uploaded": seeder.handle.status().uploaded,
        "leechers": rows,
        "spearman": round(rho, 3) if rho is not None else None,
    }


def verdict(summary: dict[str, Any]) -> str:
    """The summary's last line: the rank correlation, and where the free rider finished."""
    rho = summary["spearman"]  # one line of at most 80 columns
    text = "upload limit vs time, Spearman " + (f"{rho:+.2f}" if rho is not None else "n/a")
    rows = summary["leechers"]
    riders = [i for i, r in enumerate(rows) if r["name"] == FREE_RIDER]
    if riders:
        place = riders[0] + 1
        if rows[riders[0]]["seconds"] is None:
            text += "; the free rider did not finish"
        else:
            last = " (last)" if place == len(rows) else ""
            text += f"; the free rider finished {place}{_ordinal(place)} of {len(rows)}{last}"
    return text


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def print_summary(summary: dict[str, Any]) -> None:
    """The summary table, sorted by time to complete; units sit in the headers so it fits
    80 columns."""
    table = Table(title="demo summary", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("leecher", no_wrap=True)
    unchoked = "kept unchoked by other\nleechers, of its time"
    heads = ["upload\nKiB/s", "time to\ncomplete, s", unchoked]
    for head in heads:
        table.add_column(head, justify="right", no_wrap=True)
    table.add_column("copy", no_wrap=True)
    for row in summary["leechers"]:
        table.add_row(
            row["name"],
            f"{row['upload_limit'] / KIB:.0f}" if row["upload_limit"] else "0 (never)",
            f"{row['seconds']:.1f}" if row["seconds"] is not None else "-",
            f"{100 * row['unchoked_share']:.0f}%",
            "[green]verified[/]" if row["verified"] else "[red]WRONG[/]",
        )
    console = Console(highlight=False)
    console.print(table)
    if not summary["finished"]:
        console.print("[red]timed out before every leecher finished[/]")
    console.print(verdict(summary), markup=False)


def report(summary: dict[str, Any], as_json: bool) -> int:
    """The summary (one JSON object, or the table); exit 0 if every copy is verified, else 1."""
    if as_json:
        emit_json(summary)
    else:
        print_summary(summary)
    return EXIT_OK if all(row["verified"] for row in summary["leechers"]) else EXIT_FAILED
