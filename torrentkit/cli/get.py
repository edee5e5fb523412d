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
  exact.)

The search repeats (napster: after 1, 2, 4 ... 30 s; overlays: every ``--wait`` seconds and
more) until holders answer and one of them delivers the metadata; ``--timeout`` bounds the
whole job (exit 1, with what was found). The overlay node the search uses shares the
session's listen port. Output as for ``download`` (first line ``listening on HOST:PORT``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from torrentkit.cli.common import JobFailed, UsageError
from torrentkit.cli.p2p import (
    add_discovery_arguments,
    index_url,
    open_overlay,
    overlay_bootstrap,
    require_mode,
    unwrap,
    wait_for_neighbours,
)
from torrentkit.cli.swarm import (
    Job,
    PeerFinder,
    RunConfig,
    check_save_dir,
    default_state_dir,
    parse_peers,
    parse_rate,
    run_swarm,
    want_ui,
)
from torrentkit.discovery.base import PeerSink
from torrentkit.discovery.gnutella import Role
from torrentkit.discovery.gnutella.messages import MAX_QUERY
from torrentkit.discovery.gnutella.overlay import query_words
from torrentkit.discovery.napster.client import IndexUnreachable, NapsterClient
from torrentkit.discovery.napster.index import IndexRequestError
from torrentkit.discovery.napster.protocol import IndexResponseError
from torrentkit.engine.session import Session
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.metainfo import Magnet

DEFAULT_WAIT = 2.0
MAX_WAIT = 60.0
#: The longest pause between two searches while no holder has delivered.
MAX_BACKOFF = 30.0


def register(sub: Any) -> None:
    p = sub.add_parser("get", help="find holders of an info-hash by search, then download it")
    p.add_argument("info_hash", metavar="INFO_HASH", help="40 hex (or 32 base32) characters")
    add_discovery_arguments(p, default=None)
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
    p.add_argument("--max-peers", type=int, default=50, metavar="N")
    p.add_argument("--json", action="store_true", help="JSON events on stdout")
    p.add_argument("--no-ui", action="store_true", help="plain status lines even on a TTY")
    p.add_argument("--state-dir", metavar="DIR", help="resume state folder")
    p.set_defaults(func=run)


@dataclass(slots=True)
class _Found:
    holders: set[PeerAddr]
    searches: int = 0


#: Finders per mode: (args, info-hash, found) -> a PeerFinder. ``--discovery chord`` can join
#: with a finder that asks the ring for the info-hash.
def napster_finder(args: argparse.Namespace, info_hash: InfoHash, found: _Found) -> PeerFinder:
    url = index_url(args.bootstrap)

    async def find(session: Session, sink: PeerSink) -> None:
        client = NapsterClient(url)
        try:
            delay = 1.0
            while True:
                try:
                    peers = await client.find_peers(info_hash)
                except IndexRequestError as exc:
                    raise JobFailed(f"napster index: {exc}") from None
                except (IndexUnreachable, IndexResponseError) as exc:
                    raise JobFailed(f"napster index {url}: {exc}") from None
                found.searches += 1
                _report(found, peers, sink, "napster")
                await trio.sleep(delay)
                delay = min(MAX_BACKOFF, 2 * delay)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    return find


def overlay_finder(args: argparse.Namespace, info_hash: InfoHash, found: _Found) -> PeerFinder:
    mode = args.discovery
    if args.name is None:
        raise UsageError(
            f"--name WORDS is required with --discovery {mode}: overlay nodes match file "
            "names, not info-hashes (take the words from `torrentkit search`)"
        )
    if not query_words(args.name):
        raise UsageError("--name: give at least one word of the file's name")
    if len(args.name.encode("utf-8", "replace")) > MAX_QUERY:
        raise UsageError(f"--name: at most {MAX_QUERY} bytes")
    if not 0 < args.wait <= MAX_WAIT:
        raise UsageError(f"--wait: must be more than 0 and at most {MAX_WAIT:g} s")
    bootstrap = overlay_bootstrap(args.bootstrap)
    role = Role.PEER if mode == "gnutella" else Role.LEAF
    text: str = args.name
    wait: float = args.wait

    async def find(session: Session, sink: PeerSink) -> None:
        async with open_overlay(
            session.network, role=role, bootstrap=bootstrap, session=session
        ) as node:
            await wait_for_neighbours(node)
            pause = wait
            while True:
                hits = await node.search(text, wait=wait)
                found.searches += 1
                peers = [p for h in hits if h.info_hash == info_hash for p in h.peers]
                _report(found, peers, sink, mode)
                await trio.sleep(pause)
                pause = min(MAX_BACKOFF, 2 * pause)

    return find


FINDERS = {"napster": napster_finder, "gnutella": overlay_finder, "kazaa": overlay_finder}


def _report(found: _Found, peers: Sequence[PeerAddr], sink: PeerSink, source: str) -> None:
    fresh = list(dict.fromkeys(p for p in peers if p not in found.holders))
    if fresh:
        found.holders.update(fresh)
        sink(fresh, source)
        listed = ", ".join(str(p) for p in fresh[:5]) + (" ..." if len(fresh) > 5 else "")
        _note(f"found {len(fresh)} holder{'s' if len(fresh) != 1 else ''} via {source}: {listed}")


def run(args: argparse.Namespace) -> int:
    mode = args.discovery
    require_mode(mode, tuple(FINDERS), "get")
    try:
        info_hash = InfoHash.from_text(args.info_hash)
    except ValueError as exc:
        raise UsageError(f"INFO_HASH: {exc}") from None
    save_dir = check_save_dir(args.output)
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout: must be positive")
    if not 0 < args.max_peers <= 1000:
        raise UsageError("--max-peers: must be 1-1000")
    if not 0 <= args.port < 65536:
        raise UsageError("--port: must be 0-65535")
    found = _Found(holders=set())
    finder = FINDERS[mode](args, info_hash, found)
    cfg = RunConfig(
        jobs=[
            Job(
                meta=None,
                save_dir=save_dir,
                magnet=Magnet(info_hash=info_hash),
                find_peers=finder,
            )
        ],
        bind=args.bind,
        port=args.port,
        peers=parse_peers(args.peer),
        up_limit=parse_rate(args.up_limit, "--up-limit"),
        down_limit=parse_rate(args.down_limit, "--down-limit"),
        max_peers=args.max_peers,
        use_trackers=False,
        json=args.json,
        ui=want_ui(args),
        state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(),
        seed_after=False,
        timeout=args.timeout,
    )
    return trio.run(_get, cfg, found, mode)


async def _get(cfg: RunConfig, found: _Found, mode: str) -> int:
    try:
        return await run_swarm(cfg)
    except BaseException as exc:
        inner = unwrap(exc)
        timed_out = cfg.timeout is not None and found.searches > 0
        if isinstance(inner, JobFailed) and timed_out and not found.holders:
            raise JobFailed(
                f"no holder found via {mode} within {cfg.timeout:g} s "
                f"({found.searches} search{'es' if found.searches != 1 else ''})"
            ) from None
        raise


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
