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
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from torrentkit.cli.common import UsageError, parse_size
from torrentkit.cli.demo_common import (
    FREE_RIDER,
    KIB,
    MIB,
    Node,
    leecher_limits,
    report,
    start_node,
    summary,
    watch,
)
from torrentkit.discovery.networks import open_chord
from torrentkit.discovery.tracker.server import TrackerThread
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.ids import PeerAddr
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent
from torrentkit.net import TrioNetwork
from torrentkit.settings import ChordSettings, Settings

#: Bare ring nodes the chord demo starts before the swarm joins the ring as members.
RING_NODES = 8
RING_STABILIZE = 1.0
#: The demo's members announce again this often (not every 10 minutes): a ring of a dozen
#: nodes joined within a second places a few values on the wrong node while it settles
#: (1 demo in ~20 had a leecher that never found anyone), and the next announce fixes that.
RING_ANNOUNCE = 5.0


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a local swarm and watch tit-for-tat")
    p.add_argument(
        "--leechers",
        type=int,
        default=None,
        metavar="N",
        help="leechers (1-20; default 12, more than the 4 + 1 upload slots each has; 6 with "
        "a search)",
    )
    p.add_argument(
        "--free-riders",
        type=int,
        default=1,
        metavar="N",
        help="how many of the leechers never upload (default 1; tracker and chord)",
    )
    p.add_argument("--size", default="16M", metavar="SIZE", help="payload size (default 16M)")
    p.add_argument("--piece-size", default="32K", metavar="SIZE", help="default 32K")
    p.add_argument(
        "--seed-rate",
        default="1536K",
        metavar="RATE",
        help="the seeder's upload (default 1536K); the leechers' limits run from 1/8 of it "
        "to 1/2 of it",
    )
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
        default=1.0,
        metavar="S",
        help="seconds between rechokes (default 1: time compressed tenfold for a one-minute "
        "demo; BitTorrent: 10); the optimistic turn is three rechokes",
    )
    p.add_argument("--json", action="store_true", help="the summary as one JSON object")
    p.add_argument("--no-ui", action="store_true", help="plain status lines even on a TTY")
    p.add_argument("--seed", type=int, default=2026, help="random seed for the payload")
    p.set_defaults(func=run)


def peer_specs(leechers: int, free_riders: int, seed_rate: int) -> list[tuple[str, int]]:
    """(name, upload limit) per leecher: the honest ones numbered from the slowest up, then
    the free riders (limit 0: they never upload, whatever the limit)."""
    honest = leechers - free_riders
    specs = [
        (f"leecher {i + 1}", limit) for i, limit in enumerate(leecher_limits(honest, seed_rate))
    ]
    names = (
        [FREE_RIDER] if free_riders == 1 else [f"{FREE_RIDER} {i + 1}" for i in range(free_riders)]
    )
    return specs + [(name, 0) for name in names]


def explain(specs: list[tuple[str, int]], rechoke: float) -> str:
    """What the screen says about the swarm before it starts."""
    limits = [limit for _, limit in specs if limit]
    riders = len(specs) - len(limits)
    text = (
        f"each leecher unchokes 4 peers by their upload to it (tit-for-tat) + 1 optimistic, "
        f"among {len(specs) - 1} others; "
    )
    if limits:
        text += f"upload limits {min(limits) / KIB:.0f}-{max(limits) / KIB:.0f} KiB/s"
    if riders:
        text += f", {riders} free rider{'s' if riders > 1 else ''} (never uploads)"
    factor = 10 / rechoke
    text += (
        f"; time compressed {factor:g}x: rechoke every {rechoke:g} s, optimistic turn "
        f"{3 * rechoke:g} s (BitTorrent: 10 s, 30 s)"
        if rechoke < 10
        else f"; rechoke every {rechoke:g} s, optimistic turn {3 * rechoke:g} s"
    )
    return text


def run(args: argparse.Namespace) -> int:
    if args.leechers is None:
        args.leechers = 12 if args.discovery in ("tracker", "chord") else 6
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
    if not 0 <= args.free_riders <= args.leechers:
        raise UsageError("--free-riders: must be 0 to --leechers")
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
        specs = peer_specs(args.leechers, args.free_riders, seed_rate)
        if not args.json:
            pieces, mib = meta.info.num_pieces, size / MIB
            text = f"{where}; payload {mib:.1f} MiB in {pieces} pieces; {args.leechers} leechers"
            err.print(text, markup=False, soft_wrap=True)
            err.print(explain(specs, args.rechoke), markup=False, soft_wrap=True)
        order = list(range(len(specs)))  # start in random order: no one is first by name
        rng.shuffle(order)
        nodes: dict[int, Node] = {}
        for n in [0, *(k + 1 for k in order)]:
            member = None  # a ring member joins through one random ring node
            if ring:
                member = ChordSettings(
                    bootstrap=(rng.choice(ring),),
                    stabilize_interval=RING_STABILIZE,
                    announce_interval=RING_ANNOUNCE,
                )
            name, limit = ("seeder", seed_rate) if n == 0 else specs[n - 1]
            rider = name.startswith(FREE_RIDER)
            settings = Settings(
                listen="127.0.0.1:0",
                up_limit=limit,
                upload_slots=0 if rider else 4,
                optimistic_slots=0 if rider else 1,
                rechoke_interval=args.rechoke,
                state_dir=tmp / f"state-{n}",
                chord=member,
                dht=None,  # the demo stays on 127.0.0.1
            )
            save = tmp / f"leecher{n}" if n else payload.parent
            nodes[n] = await start_node(stack, name, limit, settings, meta, save)
        seeder, leechers = nodes[0], [nodes[k + 1] for k in range(len(specs))]
        finished, seconds = await watch(args, leechers, ui, err, [seeder, *leechers])
        result = summary(meta, seeder, leechers, digest, finished, seconds)
    result["discovery"] = args.discovery
    return report(result, args.json)
