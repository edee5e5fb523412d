"""``torrentkit demo``: a whole swarm on loopback, to watch tit-for-tat at work.

A seeder with a generated payload and N leechers, each a session of the public API
(:func:`torrentkit.open_session`) on its own 127.0.0.1 port, with real sockets and files in
a temporary folder; peers meet through our HTTP tracker (in a thread) or, with
``--discovery chord``, a Chord ring of bare nodes that every session joins as a member. The
leechers get different upload limits, so the choker's tit-for-tat has something to reward.
On a terminal the live dashboard shows one leecher (keys switch); otherwise status lines.
When every leecher is done (or at ``--timeout``), every copy is verified against the
payload, a summary table is shown (``--json``: one object) and the command exits 0, or 1 if
a copy is wrong or missing.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
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
from torrentkit.cli.common import EXIT_FAILED, EXIT_OK, UsageError, emit_json, parse_size
from torrentkit.discovery.networks import open_chord
from torrentkit.discovery.tracker.server import TrackerThread
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.events import TorrentCompleted
from torrentkit.ids import PeerAddr
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Metainfo, parse_torrent
from torrentkit.net import TrioNetwork
from torrentkit.settings import ChordSettings, Settings

KIB = 1024
MIB = 1024 * 1024
STATUS_EVERY = 3.0
#: Bare ring nodes the chord demo starts before the swarm joins the ring as members.
RING_NODES = 8
RING_STABILIZE = 1.0


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a local swarm and watch tit-for-tat")
    p.add_argument("--leechers", type=int, default=6, metavar="N", help="leechers (1-20)")
    p.add_argument("--size", default="24M", metavar="SIZE", help="payload size (default 24M)")
    p.add_argument("--piece-size", default="256K", metavar="SIZE")
    p.add_argument("--seed-rate", default="1536K", metavar="RATE", help="the seeder's upload")
    p.add_argument(
        "--discovery",
        default="tracker",
        choices=["tracker", "chord", "napster", "gnutella", "kazaa"],
        help="how peers find each other (napster, gnutella, kazaa: by a search, then magnet-style)",
    )
    p.add_argument("--timeout", type=float, default=300.0, metavar="S")
    p.add_argument(
        "--rechoke",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between rechokes (BitTorrent: 10); lower it to speed the choker's "
        "dynamics up in a short demo (the optimistic turn is three rechokes)",
    )
    p.add_argument("--json", action="store_true", help="the summary as one JSON object")
    p.add_argument("--no-ui", action="store_true", help="plain status lines even on a TTY")
    p.add_argument("--seed", type=int, default=2026, help="random seed for the payload")
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.leechers <= 20:
        raise UsageError("--leechers: must be 1-20")
    size = parse_size(args.size, "--size")
    piece = parse_size(args.piece_size, "--piece-size")
    seed_rate = parse_size(args.seed_rate, "--seed-rate")
    if not 16 * KIB <= size <= 4096 * MIB:
        raise UsageError("--size: must be 16K-4G")
    if piece < 16 * KIB or piece & (piece - 1):
        raise UsageError("--piece-size: must be a power of two, at least 16K")
    if seed_rate < 16 * KIB:
        raise UsageError("--seed-rate: must be at least 16K")
    if not args.timeout > 0:
        raise UsageError("--timeout: must be positive")
    if not 0.5 <= args.rechoke <= 60:
        raise UsageError("--rechoke: must be 0.5-60 seconds")
    ui = sys.stdout.isatty() and not args.no_ui and not args.json
    with tempfile.TemporaryDirectory(prefix="torrentkit-demo-") as tmp:
        return trio.run(_demo, args, Path(tmp), size, piece, seed_rate, ui)


async def _demo(
    args: argparse.Namespace, tmp: Path, size: int, piece: int, seed_rate: int, ui: bool
) -> int:
    err = Console(stderr=True, highlight=False)
    (tmp / "seeder").mkdir()
    payload = tmp / "seeder" / "demo.bin"
    rng = random.Random(args.seed)
    with payload.open("wb") as fh:
        for left in range(size, 0, -4 * MIB):
            fh.write(rng.randbytes(min(left, 4 * MIB)))
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    if args.discovery not in ("tracker", "chord"):
        from torrentkit.cli.demo_p2p import run_search_demo

        return await run_search_demo(args, tmp, payload, digest, piece, seed_rate, ui, err)
    ring: list[PeerAddr] = []
    async with AsyncExitStack() as stack:  # left in reverse: the sessions, then tracker or ring
        if args.discovery == "tracker":
            state = TrackerState(TrackerConfig(interval=60, min_interval=0))
            url = stack.enter_context(TrackerThread(state)).announce_url
            meta = parse_torrent(make_torrent(payload, trackers=[[url]], piece_length=piece))
            where = f"tracker {url}"
        else:  # no tracker: a ring of bare Chord nodes, which every session joins as a member
            meta = parse_torrent(make_torrent(payload, piece_length=piece))
            for _ in range(RING_NODES):
                chord = ChordSettings(bootstrap=tuple(ring[:1]), stabilize_interval=RING_STABILIZE)
                bare = await stack.enter_async_context(
                    open_chord(TrioNetwork(), "127.0.0.1", 0, chord)
                )
                ring.append(bare.driver.address)
            where = f"chord ring of {RING_NODES} nodes from {ring[0]}"
        if not args.json:
            pieces, mib = meta.info.num_pieces, size / MIB
            text = f"{where}; payload {mib:.1f} MiB in {pieces} pieces; {args.leechers} leechers"
            err.print(text, markup=False, soft_wrap=True)
        nodes = []
        for n, limit in enumerate([seed_rate, *leecher_limits(args.leechers, seed_rate)]):
            member = None  # a ring member joins through one random ring node
            if ring:
                member = ChordSettings(
                    bootstrap=(rng.choice(ring),), stabilize_interval=RING_STABILIZE
                )
            settings = Settings(
                listen="127.0.0.1:0",
                up_limit=limit,
                rechoke_interval=args.rechoke,
                state_dir=tmp / f"state-{n}",
                chord=member,
            )
            name, save = (f"leecher {n}", tmp / f"leecher{n}") if n else ("seeder", payload.parent)
            nodes.append(await start_node(stack, name, limit, settings, meta, save))
        seeder, *leechers = nodes
        finished = await _watch(args, leechers, ui, err)
        summary = _summary(meta, seeder, leechers, digest, finished)
    summary["discovery"] = args.discovery
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return EXIT_OK if all(row["verified"] for row in summary["leechers"]) else EXIT_FAILED


async def start_node(
    stack: AsyncExitStack, name: str, upload_limit: int, settings: Settings, source: Any, save: Path
) -> Node:
    """A session (left when ``stack`` closes) with ``source`` added, saving into ``save``."""
    session = await stack.enter_async_context(open_session(settings))
    done: list[float] = []  # TorrentCompleted.seconds: since the torrent started
    session.subscribe(lambda e: done.append(e.seconds) if isinstance(e, TorrentCompleted) else None)
    return Node(name, upload_limit, session, await session.add(source, save), save, done)


async def _watch(args: argparse.Namespace, nodes: list[Node], ui: bool, err: Console) -> bool:
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
                nursery.start_soon(_dashboard, nodes, quit_event)
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


async def _dashboard(nodes: list[Node], quit_event: trio.Event) -> None:
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


def _summary(
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


def _print_summary(summary: dict[str, Any]) -> None:
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
