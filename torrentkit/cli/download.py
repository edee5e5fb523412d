"""``torrentkit download TORRENT... [-o DIR]``: fetch torrents from the swarm.

Flags -> :class:`~torrentkit.cli.swarm.RunPlan` -> :func:`~torrentkit.cli.swarm.run_plan`.
"""

from __future__ import annotations

import argparse
from typing import Any

from torrentkit.cli.chord_cli import chord_settings
from torrentkit.cli.common import UsageError
from torrentkit.cli.swarm import AddSpec, RunPlan, run_plan
from torrentkit.cli.swarm_flags import (
    add_common_arguments,
    check_save_dir,
    load_job_torrent,
    parse_peers,
    settings_from_args,
    want_ui,
)
from torrentkit.metainfo import Magnet, Metainfo


def register(sub: Any) -> None:
    p = sub.add_parser("download", help="download torrents (and optionally keep seeding)")
    p.add_argument(
        "torrents", nargs="+", metavar="TORRENT", help="a .torrent file or a magnet: link"
    )
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="save folder (default .)")
    p.add_argument("--files", metavar="SPEC", help="only these files, by index: 0,2-4")
    p.add_argument("--seed", action="store_true", help="keep seeding until stopped")
    p.add_argument("--seed-ratio", type=float, metavar="R", help="seed until uploaded R x size")
    p.add_argument("--seed-time", type=float, metavar="S", help="seed S seconds after completion")
    p.add_argument("--timeout", type=float, metavar="S", help="give up (exit 1) after S seconds")
    add_common_arguments(p, seeding=False)
    p.set_defaults(func=run)


def plan(args: argparse.Namespace) -> RunPlan:
    save_dir = check_save_dir(args.output, create=True)
    sources = [load_job_torrent(t) for t in args.torrents]
    if args.files and len(sources) != 1:
        raise UsageError("--files works with one torrent at a time")
    if len({src.info_hash for src in sources}) != len(sources):
        raise UsageError("the same torrent is named twice")
    peers = parse_peers(args.peer)
    adds = []
    for src in sources:
        priorities = None
        if args.files:
            if isinstance(src, Magnet):
                raise UsageError("--files needs the torrent's file list; give a .torrent file")
            priorities = parse_files(args.files, src)
        if isinstance(src, Magnet) and not (
            src.trackers or src.peers or args.peer or args.discovery == "chord" or not args.no_dht
        ):
            raise UsageError(
                "the magnet link names no trackers (tr=) or peers (x.pe=) and --no-dht is given; "
                "give --peer HOST:PORT, --discovery chord, or leave the DHT on"
            )
        adds.append(AddSpec(src, save_dir, priorities, peers))
    for name in ("seed_ratio", "seed_time", "timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UsageError(f"--{name.replace('_', '-')}: must be positive")
    return RunPlan(
        settings=settings_from_args(args, chord=chord_settings(args)),
        adds=adds,
        json=args.json,
        ui=want_ui(args),
        seed_after=bool(args.seed or args.seed_ratio or args.seed_time),
        seed_ratio=args.seed_ratio,
        seed_time=args.seed_time,
        timeout=args.timeout,
    )


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
        if hi < lo:
            raise UsageError(f"--files: {part!r} is a reversed range (write {hi}-{lo})")
        if lo < 0 or hi >= len(real):
            raise UsageError(f"--files: {part!r} is outside 0-{len(real) - 1}")
        chosen.update(range(lo, hi + 1))
    if not chosen:
        raise UsageError("--files: no file selected")
    prios = [0] * len(meta.info.files)
    for k in chosen:
        prios[real[k]] = 4
    return prios


def run(args: argparse.Namespace) -> int:
    return run_plan(plan(args))
