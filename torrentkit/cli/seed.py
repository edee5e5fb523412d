"""``torrentkit seed TORRENT DIR``: serve a complete copy until stopped.

Flags -> :class:`~torrentkit.cli.swarm.RunPlan` -> :func:`~torrentkit.cli.swarm.run_plan`.
"""

from __future__ import annotations

import argparse
from typing import Any

from torrentkit.cli.chord_cli import chord_settings
from torrentkit.cli.swarm import AddSpec, RunPlan, run_plan
from torrentkit.cli.swarm_flags import (
    add_common_arguments,
    check_save_dir,
    load_job_torrent,
    parse_peers,
    settings_from_args,
    want_ui,
)


def register(sub: Any) -> None:
    p = sub.add_parser("seed", help="seed a torrent from the data in DIR until stopped")
    p.add_argument("torrent", metavar="TORRENT")
    p.add_argument("dir", metavar="DIR", help="the folder holding the data (its parent)")
    add_common_arguments(p, seeding=True)
    p.set_defaults(func=run)


def plan(args: argparse.Namespace) -> RunPlan:
    save_dir = check_save_dir(args.dir)
    meta = load_job_torrent(args.torrent, magnets=False)
    return RunPlan(
        settings=settings_from_args(args, chord=chord_settings(args)),
        adds=[AddSpec(meta, save_dir, None, parse_peers(args.peer))],
        json=args.json,
        ui=want_ui(args),
        seed_after=True,
        require_complete=True,
    )


def run(args: argparse.Namespace) -> int:
    return run_plan(plan(args))
