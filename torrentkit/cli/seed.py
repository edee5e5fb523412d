"""``torrentkit seed TORRENT DIR``: serve a complete copy until stopped."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torrentkit.cli.common import UsageError
from torrentkit.cli.swarm import (
    Job,
    RunConfig,
    add_common_arguments,
    check_save_dir,
    default_state_dir,
    discovery_options,
    load_job_torrent,
    parse_peers,
    parse_rate,
    run_config,
    want_ui,
)
from torrentkit.metainfo import Metainfo


def register(sub: Any) -> None:
    p = sub.add_parser("seed", help="seed a torrent from the data in DIR until stopped")
    p.add_argument("torrent", metavar="TORRENT")
    p.add_argument("dir", metavar="DIR", help="the folder holding the data (its parent)")
    add_common_arguments(p, seeding=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    save_dir = check_save_dir(args.dir)
    meta = load_job_torrent(args.torrent, magnets=False)
    assert isinstance(meta, Metainfo)
    if not 0 <= args.port < 65536:
        raise UsageError("--port: must be 0-65535")
    cfg = RunConfig(
        jobs=[Job(meta=meta, save_dir=save_dir)],
        bind=args.bind,
        port=args.port,
        peers=parse_peers(args.peer),
        up_limit=parse_rate(args.up_limit, "--up-limit"),
        down_limit=0,
        max_peers=args.max_peers,
        use_trackers=not args.no_tracker,
        json=args.json,
        ui=want_ui(args),
        **discovery_options(args),
        state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(),
        seed_after=True,
        require_complete=True,
    )
    return run_config(cfg)
