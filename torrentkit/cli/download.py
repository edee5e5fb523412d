"""``torrentkit download TORRENT... [-o DIR]``: fetch torrents from the swarm."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torrentkit.cli.common import UsageError
from torrentkit.cli.swarm import (
    RunConfig,
    add_common_arguments,
    check_save_dir,
    default_state_dir,
    discovery_options,
    load_job_torrent,
    make_job,
    parse_files,
    parse_peers,
    parse_rate,
    run_config,
    want_ui,
)
from torrentkit.metainfo import Magnet


def register(sub: Any) -> None:
    p = sub.add_parser("download", help="download torrents (and optionally keep seeding)")
    p.add_argument("torrents", nargs="+", metavar="TORRENT")
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="save folder (default .)")
    p.add_argument("--files", metavar="SPEC", help="only these files, by index: 0,2-4")
    p.add_argument("--seed", action="store_true", help="keep seeding until stopped")
    p.add_argument("--seed-ratio", type=float, metavar="R", help="seed until uploaded R x size")
    p.add_argument("--seed-time", type=float, metavar="S", help="seed S seconds after completion")
    p.add_argument("--timeout", type=float, metavar="S", help="give up (exit 1) after S seconds")
    add_common_arguments(p, seeding=False)
    p.set_defaults(func=run)


def config(args: argparse.Namespace) -> RunConfig:
    save_dir = check_save_dir(args.output)
    sources = [load_job_torrent(t) for t in args.torrents]
    if args.files and len(sources) != 1:
        raise UsageError("--files works with one torrent at a time")
    if len({src.info_hash for src in sources}) != len(sources):
        raise UsageError("the same torrent is named twice")
    jobs = []
    for src in sources:
        priorities = None
        if args.files:
            if isinstance(src, Magnet):
                raise UsageError("--files needs the torrent's file list; give a .torrent file")
            priorities = parse_files(args.files, src)
        if isinstance(src, Magnet) and not (
            src.trackers or src.peers or args.peer or args.discovery == "chord"
        ):
            raise UsageError(
                "the magnet link names no trackers (tr=) or peers (x.pe=); give --peer HOST:PORT "
                "or --discovery chord"
            )
        jobs.append(make_job(src, save_dir, priorities))
    for name in ("seed_ratio", "seed_time", "timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UsageError(f"--{name.replace('_', '-')}: must be positive")
    if not 0 < args.max_peers <= 1000:
        raise UsageError("--max-peers: must be 1-1000")
    if not 0 <= args.port < 65536:
        raise UsageError("--port: must be 0-65535")
    return RunConfig(
        jobs=jobs,
        bind=args.bind,
        port=args.port,
        peers=parse_peers(args.peer),
        up_limit=parse_rate(args.up_limit, "--up-limit"),
        down_limit=parse_rate(args.down_limit, "--down-limit"),
        max_peers=args.max_peers,
        use_trackers=not args.no_tracker,
        json=args.json,
        ui=want_ui(args),
        **discovery_options(args),
        state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(),
        seed_after=bool(args.seed or args.seed_ratio or args.seed_time),
        seed_ratio=args.seed_ratio,
        seed_time=args.seed_time,
        timeout=args.timeout,
    )


def run(args: argparse.Namespace) -> int:
    return run_config(config(args))
