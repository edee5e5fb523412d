"""``torrentkit get INFO_HASH --discovery napster|gnutella|kazaa --bootstrap ADDR [-o DIR]``:
find who holds a torrent, then fetch it through the peer wire.

The holders come from the discovery design; the fetch is the one engine's, as for a magnet
link that names peers: the info dictionary over ``ut_metadata`` (BEP 9), then the pieces,
each checked against its hash. The file lands in DIR (default ``.``) under the name the
torrent gives it.

- ``napster``: the index is asked for the info-hash itself (``find_peers``).
- ``gnutella`` / ``kazaa``: overlay nodes match queries against file *names* only (as
  Gnutella did), so ``get`` floods ``--name WORDS`` (words of the file's name, as ``search``
  shows it) and keeps the holders whose hits carry exactly INFO_HASH; a file with the same
  name but other bytes is never fetched. ``--name`` is required for them. (Matching
  info-hashes in the overlay would make every node answer hash queries it never indexed by
  hash; a name query is what the lecture's Gnutella does, and the info-hash check makes it
  exact.) The words become the magnet's name (``dn``), which is what the session's overlay
  search floods until the metadata names the file.

The session does the rest (:mod:`torrentkit.discovery.networks`): the search repeats with
backoff (1, 2, 4, 8 s, then every 30 s) for as long as ``get`` runs, after the metadata too,
so holders that appear later are found; ``--timeout`` bounds the whole job (exit 1, with what
was found). Output as for ``download`` (first line ``listening on HOST:PORT``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import trio

from torrentkit.api import Session
from torrentkit.cli.common import JobFailed, UsageError
from torrentkit.cli.p2p import (
    SEARCH_MODES,
    add_discovery_arguments,
    network_settings,
    require_mode,
)
from torrentkit.cli.swarm import AddSpec, RunPlan, run_plan
from torrentkit.cli.swarm_flags import (
    add_encryption_argument,
    add_lsd_argument,
    add_max_peers,
    check_save_dir,
    parse_peers,
    settings_from_args,
    want_ui,
)
from torrentkit.discovery.base import NetworkError
from torrentkit.discovery.gnutella.messages import MAX_QUERY
from torrentkit.discovery.gnutella.overlay import query_words
from torrentkit.discovery.networks import NapsterNetwork, OverlayNetwork
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.metainfo import Magnet

DEFAULT_WAIT = 2.0
MAX_WAIT = 60.0
#: How long before ``--timeout`` a get that found nobody says so.
GIVE_UP_EARLY = 1.0


def register(sub: Any) -> None:
    p = sub.add_parser("get", help="find holders of an info-hash by search, then download it")
    p.add_argument("info_hash", metavar="INFO_HASH", help="40 hex (or 32 base32) characters")
    add_discovery_arguments(p, default=None, offered=SEARCH_MODES)
    p.add_argument("--name", metavar="WORDS", help="gnutella/kazaa: words of the file's name")
    p.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT, metavar="S", help="overlays: hits per search"
    )
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="save folder (default .)")
    p.add_argument("--timeout", type=float, metavar="S", help="give up (exit 1) after S seconds")
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="listen address")
    p.add_argument("--port", type=int, default=0, metavar="N", help="listen port (0 = any)")
    p.add_argument(
        "--peer", action="append", default=[], metavar="HOST:PORT", help="also dial this peer"
    )
    p.add_argument("--up-limit", default="0", metavar="RATE", help="upload limit, e.g. 500K")
    p.add_argument("--down-limit", default="0", metavar="RATE", help="download limit")
    add_max_peers(p)
    add_lsd_argument(p)
    add_encryption_argument(p)
    p.add_argument("--json", action="store_true", help="JSON events on stdout")
    p.add_argument("--no-ui", action="store_true", help="plain status lines even on a TTY")
    p.add_argument("--state-dir", metavar="DIR", help="resume state folder")
    p.set_defaults(func=run, no_tracker=True)


def run(args: argparse.Namespace) -> int:
    mode = args.discovery
    require_mode(mode, SEARCH_MODES, "get")
    try:
        info_hash = InfoHash.from_text(args.info_hash)
    except ValueError as exc:
        raise UsageError(f"INFO_HASH: {exc}") from None
    if mode != "napster":
        _check_name(mode, args.name, args.wait)
    nets = network_settings(args, need_bootstrap=True)
    save_dir = check_save_dir(args.output, create=True)
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout: must be positive")
    plan = RunPlan(
        settings=settings_from_args(args, **nets),
        adds=[
            AddSpec(
                source=Magnet(info_hash=info_hash, name=args.name if mode != "napster" else None),
                save_path=save_dir,
                peers=parse_peers(args.peer),
            )
        ],
        json=args.json,
        ui=want_ui(args),
        seed_after=False,
        timeout=args.timeout,
    )

    async def extra(session: Session) -> None:
        await _watch_search(session, mode, args.wait, args.timeout)

    return run_plan(plan, extra=extra)


def _check_name(mode: str, name: str | None, wait: float) -> None:
    if name is None:
        raise UsageError(
            f"--name WORDS is required with --discovery {mode}: overlay nodes match file "
            "names, not info-hashes (take the words from `torrentkit search`)"
        )
    if not query_words(name):
        raise UsageError("--name: give at least one word of the file's name")
    if len(name.encode("utf-8", "replace")) > MAX_QUERY:
        raise UsageError(f"--name: at most {MAX_QUERY} bytes")
    if not 0 < wait <= MAX_WAIT:
        raise UsageError(f"--wait: must be more than 0 and at most {MAX_WAIT:g} s")


async def _watch_search(session: Session, mode: str, wait: float, timeout: float | None) -> None:
    """Report the holders the session's search finds; fail fast when the network cannot be
    joined, and say so when nobody was found by the timeout."""
    start = trio.current_time()
    net = next(n for n in session.networks if n.name == mode)
    assert isinstance(net, NapsterNetwork | OverlayNetwork)
    if isinstance(net, OverlayNetwork):
        net.search_wait = wait
    found: set[PeerAddr] = set()

    def report(_info_hash: InfoHash, peers: Sequence[PeerAddr]) -> None:
        fresh = [p for p in peers if p not in found]
        found.update(fresh)
        if fresh:
            listed = ", ".join(str(p) for p in fresh[:5]) + (" ..." if len(fresh) > 5 else "")
            _note(f"found {len(fresh)} holder{'s' if len(fresh) != 1 else ''} via {mode}: "
                  f"{listed}")  # fmt: skip

    net.on_found = report
    try:
        await net.join()
    except NetworkError as exc:
        raise JobFailed(str(exc)) from None
    if timeout is None:
        return
    await trio.sleep_until(start + max(0.0, timeout - GIVE_UP_EARLY))
    if not found:
        n = net.searches
        raise JobFailed(
            f"no holder found via {mode} within {timeout:g} s ({n} search{'es' if n != 1 else ''})"
        )


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
