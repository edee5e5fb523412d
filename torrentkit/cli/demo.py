"""``torrentkit demo``: a whole swarm on loopback, to watch tit-for-tat at work.

One process starts our HTTP tracker (in a thread), a seeder with a generated payload and N
leechers, each a real :class:`~torrentkit.engine.session.Session` on its own 127.0.0.1 port
with real sockets and files in a temporary folder. The leechers get different upload limits,
so the choker's tit-for-tat has something to reward. On a terminal the live dashboard shows
one leecher (keys switch between them); otherwise status lines. When every leecher is done
(or at ``--timeout``), every copy is verified against the payload, a summary table is shown
(``--json``: one object) and the command exits 0, or 1 if a copy is wrong or missing.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.table import Table

from torrentkit.cli.chord_cli import serve_member
from torrentkit.cli.common import EXIT_FAILED, EXIT_OK, UsageError, emit_json, parse_size
from torrentkit.cli.swarm import LiveSnapshots
from torrentkit.discovery.chord.discovery import ChordDiscovery
from torrentkit.discovery.chord.driver import ChordDriver
from torrentkit.discovery.chord.node import ChordConfig
from torrentkit.discovery.tracker.client import TrackerDiscovery, new_http_client
from torrentkit.discovery.tracker.server import TrackerThread
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.engine.storage import FileStorage
from torrentkit.engine.torrent import Torrent, TorrentOptions
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Metainfo, parse_torrent
from torrentkit.net import DatagramEndpoint, TrioNetwork, listen_tcp_and_udp

KIB = 1024
MIB = 1024 * 1024
STATUS_EVERY = 3.0


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
    name: str
    upload_limit: int
    session: Session
    torrent: Torrent
    save_dir: Path


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
    payload_dir = tmp / "seeder"
    payload_dir.mkdir()
    payload = payload_dir / "demo.bin"
    rng = random.Random(args.seed)
    with payload.open("wb") as fh:
        left = size
        while left:
            chunk = min(left, 4 * MIB)
            fh.write(rng.randbytes(chunk))
            left -= chunk
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    if args.discovery not in ("tracker", "chord"):
        from torrentkit.cli.demo_p2p import run_search_demo

        return await run_search_demo(args, tmp, payload, digest, piece, seed_rate, ui, err)

    if args.discovery == "chord":
        return await _chord_demo(args, tmp, payload, digest, size, piece, seed_rate, ui, err)
    state = TrackerState(TrackerConfig(interval=60, min_interval=0))
    with TrackerThread(state) as tracker:
        raw = make_torrent(payload, trackers=[[tracker.announce_url]], piece_length=piece)
        meta = parse_torrent(raw)
        if not args.json:
            err.print(
                f"tracker {tracker.announce_url}; payload {size / MIB:.1f} MiB in "
                f"{meta.info.num_pieces} pieces; {args.leechers} leechers",
                markup=False,
            )
        http = new_http_client()
        try:

            async def attach(
                nursery: trio.Nursery,
                session: Session,
                torrent: Torrent,
                udp: DatagramEndpoint | None,
            ) -> None:
                torrent.add_discovery(
                    TrackerDiscovery(
                        info_hash=torrent.info_hash,
                        peer_id=session.peer_id,
                        port=session.address.port,
                        tiers=meta.trackers,
                        totals=torrent.totals,
                        sink=torrent.add_peers,
                        http=http,
                    )
                )

            return await _swarm_demo(args, tmp, meta, digest, seed_rate, ui, err, attach)
        finally:
            with trio.CancelScope(shield=True):
                await http.aclose()


#: Bare ring nodes the chord demo starts before the swarm joins the ring as members.
RING_NODES = 8


async def _chord_demo(
    args: argparse.Namespace,
    tmp: Path,
    payload: Path,
    digest: str,
    size: int,
    piece: int,
    seed_rate: int,
    ui: bool,
    err: Console,
) -> int:
    """The same swarm with no tracker: a Chord ring of bare nodes on loopback, every demo
    node joins it through one random ring node, announces the info-hash and finds peers."""
    meta = parse_torrent(make_torrent(payload, piece_length=piece))  # no announce URL
    config = ChordConfig(stabilize_interval=1.0)
    rng = random.Random(args.seed)
    async with trio.open_nursery() as ring_nursery:
        ring: list[ChordDriver] = []
        for _ in range(RING_NODES):
            boot = [ring[0].address] if ring else []
            ring.append(await ring_nursery.start(serve_member, "127.0.0.1", 0, boot, config, None))
        if not args.json:
            err.print(
                f"chord ring of {RING_NODES} nodes from {ring[0].address}; payload "
                f"{size / MIB:.1f} MiB in {meta.info.num_pieces} pieces; {args.leechers} leechers",
                markup=False,
            )

        async def attach(
            nursery: trio.Nursery, session: Session, torrent: Torrent, udp: DatagramEndpoint | None
        ) -> None:
            boot = [rng.choice(ring).address]
            port = session.address.port
            chord = await nursery.start(
                partial(serve_member, "127.0.0.1", port, boot, config, None, endpoint=udp)
            )
            torrent.add_discovery(
                ChordDiscovery(
                    chord, info_hash=torrent.info_hash, port=port, sink=torrent.add_peers
                )
            )

        code = await _swarm_demo(args, tmp, meta, digest, seed_rate, ui, err, attach)
        ring_nursery.cancel_scope.cancel()
    return code


#: Adds a node's discovery; ``udp`` is its UDP endpoint on the listen port's number (Chord).
Attach = Callable[[trio.Nursery, Session, Torrent, DatagramEndpoint | None], Awaitable[None]]


async def _swarm_demo(
    args: argparse.Namespace,
    tmp: Path,
    meta: Metainfo,
    digest: str,
    seed_rate: int,
    ui: bool,
    err: Console,
    attach: Attach,
) -> int:
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        options = TorrentOptions(max_peers=50, rechoke_interval=args.rechoke)
        paired = args.discovery == "chord"
        seeder = await _start_node(
            nursery, "seeder", seed_rate, meta, tmp / "seeder", options, attach, paired
        )
        for i, limit in enumerate(leecher_limits(args.leechers, seed_rate)):
            d = tmp / f"leecher{i + 1}"
            d.mkdir()
            nodes.append(
                await _start_node(
                    nursery, f"leecher {i + 1}", limit, meta, d, options, attach, paired
                )
            )
        finished = await _watch(args, nodes, ui, err)
        summary = _summary(meta, seeder, nodes, digest, finished)
        summary["discovery"] = args.discovery
        nursery.cancel_scope.cancel()
    ok = all(row["verified"] for row in summary["leechers"])
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return EXIT_OK if ok else EXIT_FAILED


async def _start_node(
    nursery: trio.Nursery,
    name: str,
    upload_limit: int,
    meta: Metainfo,
    save_dir: Path,
    options: TorrentOptions,
    attach: Attach,
    paired: bool,
) -> Node:
    network = TrioNetwork()
    session = Session(network, SessionOptions(bind="127.0.0.1", port=0, up_limit=upload_limit))
    udp: DatagramEndpoint | None = None
    if paired:  # a ring member's UDP socket on the TCP listen port's number
        listener, udp = await listen_tcp_and_udp(network, "127.0.0.1", 0)
    else:
        listener = await network.listen_tcp("127.0.0.1", 0)
    await nursery.start(partial(session.run, listener=listener))
    torrent = await session.add_torrent(meta.info, FileStorage(meta.info, save_dir), options)
    await attach(nursery, session, torrent, udp)
    return Node(name, upload_limit, session, torrent, save_dir)


async def _watch(args: argparse.Namespace, nodes: list[Node], ui: bool, err: Console) -> bool:
    """Until every leecher completes (True) or the timeout (False)."""

    async def all_done() -> None:
        for node in nodes:
            await node.torrent.complete.wait()

    with trio.move_on_after(args.timeout):
        if ui:
            done = await _run_dashboard(nodes, all_done)
            return done
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_status_lines, nodes, err, args.json)
            await all_done()
            nursery.cancel_scope.cancel()
        return True
    return False


async def _run_dashboard(nodes: list[Node], all_done: Any) -> bool:
    """The live dashboard (one leecher at a time; keys switch); True when all are done."""
    from torrentkit.ui.live import run_dashboard

    view = LiveSnapshots([node.torrent for node in nodes])

    def snapshots() -> Sequence[TorrentSnapshot]:
        return view

    quit_event = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_dashboard(snapshots, titles=[n.name for n in nodes], quit_event=quit_event)
        )

        async def finish() -> None:
            await all_done()
            await trio.sleep(1.0)  # let the last frame show everyone done
            nursery.cancel_scope.cancel()

        nursery.start_soon(finish)
        await quit_event.wait()
        nursery.cancel_scope.cancel()
    return all(node.torrent.is_complete for node in nodes)


async def _status_lines(nodes: list[Node], err: Console, quiet: bool) -> None:
    while True:
        await trio.sleep(STATUS_EVERY)
        if quiet:
            continue
        now = trio.current_time()
        parts = []
        for node in nodes:
            s = node.torrent.snapshot(now, map_cells=1)
            parts.append(f"{node.name.split()[-1]}:{100 * s.progress:3.0f}%")
        err.print("  ".join(parts), markup=False, highlight=False)


def _verify(node: Node, name: str, digest: str) -> bool:
    path = node.save_dir / name
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == digest
    except OSError:
        return False


def _summary(
    meta: Metainfo, seeder: Node, nodes: list[Node], digest: str, finished: bool
) -> dict[str, Any]:
    now = trio.current_time()
    # How long the others kept each node unchoked (tit-for-tat's reward), by peer id.
    given: dict[bytes, float] = {}
    for other in [seeder, *nodes]:
        for pid, (total, _opt) in other.torrent.unchoked_seconds(now).items():
            given[pid] = given.get(pid, 0.0) + total
    rows = []
    for node in nodes:
        t = node.torrent
        rows.append(
            {
                "name": node.name,
                "upload_limit": node.upload_limit,
                "complete": t.is_complete,
                "seconds": round(t.completed_at - t.started_at, 2)
                if t.completed_at is not None
                else None,
                "downloaded": t.downloaded,
                "uploaded": t.uploaded,
                "ratio": round(t.uploaded / meta.info.total_length, 3),
                "unchoked_seconds": round(given.get(node.session.peer_id, 0.0), 1),
                "verified": _verify(node, meta.info.name, digest),
            }
        )
    return {
        "event": "summary",
        "finished": finished,
        "size": meta.info.total_length,
        "pieces": meta.info.num_pieces,
        "seeder_uploaded": seeder.torrent.uploaded,
        "leechers": rows,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    console = Console(highlight=False)
    table = Table(title="demo summary", header_style="bold")
    for col, justify in [
        ("leecher", "left"),
        ("upload limit", "right"),
        ("time", "right"),
        ("down", "right"),
        ("up", "right"),
        ("ratio", "right"),
        ("unchoked by others", "right"),
        ("copy", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in summary["leechers"]:
        table.add_row(
            row["name"],
            f"{row['upload_limit'] / KIB:.0f} KiB/s",
            f"{row['seconds']:.1f} s" if row["seconds"] is not None else "-",
            f"{row['downloaded'] / MIB:.1f} MiB",
            f"{row['uploaded'] / MIB:.1f} MiB",
            f"{row['ratio']:.2f}",
            f"{row['unchoked_seconds']:.0f} s",
            "[green]verified[/]" if row["verified"] else "[red]WRONG[/]",
        )
    console.print(table)
    if not summary["finished"]:
        console.print("[red]timed out before every leecher finished[/]")
