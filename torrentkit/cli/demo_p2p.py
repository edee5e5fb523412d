"""``torrentkit demo --discovery napster|gnutella|kazaa``: the demo swarm, found by search.

As in the tracker demo, a seeder and N leechers run as real sessions on 127.0.0.1, with the
same upload limits, live dashboard and summary. What differs is how they meet:

- ``napster``: an index runs in a thread; the seeder's session publishes ``demo.bin`` to it.
- ``gnutella``: three bare overlay nodes form the core of an overlay; the seeder and every
  leecher join it as peers (through a random core node), on their BitTorrent ports.
- ``kazaa``: two bare supernodes; the seeder and the leechers attach to them as leaves and
  upload their file lists.

Each leecher starts knowing only a word of the file's name: it searches (``demo``), prints
what came back (name, size, holders, time), and adds the hit as a magnet -- the session
fetches the info dictionary from a holder over ``ut_metadata`` and downloads through the same
engine. From then on its session publishes the file itself and keeps searching (with
backoff), so the leechers find one another, not just the seeder, and tit-for-tat has
partners. The summary gains ``discovery`` and the leechers' ``searches``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from torrentkit.api import Session, open_session
from torrentkit.cli.common import JobFailed, safe_text
from torrentkit.cli.demo_common import MIB, Node, leecher_limits, report, start_node, summary, watch
from torrentkit.discovery.base import SearchHit
from torrentkit.discovery.gnutella import Role
from torrentkit.discovery.gnutella.session_port import open_overlay
from torrentkit.discovery.napster.index import IndexConfig, NapsterIndex, RateLimiter, SearchQuery
from torrentkit.discovery.napster.server import NapsterIndexThread
from torrentkit.discovery.networks import NapsterNetwork, OverlayNetwork
from torrentkit.events import Event, MetadataReceived, TorrentCompleted
from torrentkit.ids import PeerAddr
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Magnet, parse_torrent
from torrentkit.net import TrioNetwork
from torrentkit.settings import NapsterSettings, OverlaySettings, Settings

#: The words a leecher searches for (the payload is ``demo.bin``).
QUERY = "demo"
#: How long an overlay search collects hits.
OVERLAY_WAIT = 2.0
#: Bare overlay nodes the demo starts: gnutella peers / kazaa supernodes.
CORE_NODES = {"gnutella": 3, "kazaa": 2}


async def run_search_demo(
    args: argparse.Namespace,
    tmp: Path,
    payload: Path,
    digest: str,
    piece: int,
    seed_rate: int,
    ui: bool,
    err: Console,
) -> int:
    """The demo with ``--discovery napster|gnutella|kazaa`` (see the module docstring)."""
    mode = args.discovery
    meta = parse_torrent(make_torrent(payload, piece_length=piece))
    rng = random.Random(args.seed)
    searches: list[dict[str, Any]] = []

    def say(text: str) -> None:
        if not args.json:
            err.print(text, markup=False, highlight=False)

    with contextlib.ExitStack() as threads:
        async with AsyncExitStack() as stack:
            core: list[PeerAddr] = []
            if mode == "napster":
                # Every demo peer has the same IP (127.0.0.1): no per-address rate limit.
                index = NapsterIndexThread(
                    NapsterIndex(IndexConfig(ttl=60)), limiter=RateLimiter(0, 1)
                )
                threads.enter_context(index)
                where = index.url
            else:
                role = Role.PEER if mode == "gnutella" else Role.SUPERNODE
                for _ in range(CORE_NODES[mode]):
                    node = await stack.enter_async_context(
                        open_overlay(
                            TrioNetwork(), role=role, bootstrap=list(core), bind="127.0.0.1"
                        )
                    )
                    core.append(node.address)
                where = ", ".join(str(a) for a in core)

            def settings(n: int, up_limit: int) -> Settings:
                if mode == "napster":
                    nets: dict[str, Any] = {"napster": NapsterSettings(url=index.url)}
                else:
                    boot = (rng.choice(core),)
                    nets = {"overlay": OverlaySettings(kind=mode, bootstrap=boot)}
                return Settings(
                    listen="127.0.0.1:0",
                    up_limit=up_limit,
                    rechoke_interval=args.rechoke,
                    state_dir=tmp / f"state-{n}",
                    dht=None,  # the demo stays on 127.0.0.1
                    **nets,
                )

            say(
                f"{mode}: {where}; payload {meta.info.total_length / MIB:.1f} MiB in "
                f"{meta.info.num_pieces} pieces; {args.leechers} leechers search {QUERY!r}"
            )
            seeder = await start_node(
                stack, "seeder", seed_rate, settings(0, seed_rate), meta, payload.parent
            )
            nodes = []
            deadline = trio.current_time() + args.timeout
            for i, limit in enumerate(leecher_limits(args.leechers, seed_rate)):
                name, d = f"leecher {i + 1}", tmp / f"leecher{i + 1}"
                d.mkdir()
                session = await stack.enter_async_context(open_session(settings(i + 1, limit)))
                with trio.move_on_at(deadline):
                    hits, record = await _search(session, mode, name, say)
                    searches.append(record)
                if len(searches) <= i:
                    raise JobFailed(f"{name} found no copy via {mode} within {args.timeout:g} s")
                magnet = Magnet(info_hash=hits[0].info_hash, name=QUERY)
                nodes.append(await _leecher(session, name, limit, d, magnet, hits[0], say))
            finished, seconds = await watch(args, nodes, ui, err, [seeder, *nodes])
            result = summary(meta, seeder, nodes, digest, finished, seconds)
    result["discovery"] = mode
    result["searches"] = searches
    return report(result, args.json)


async def _search(
    session: Session, mode: str, name: str, say: Any
) -> tuple[list[SearchHit], dict[str, Any]]:
    """Keyword search through the session's network until a hit comes back."""
    net = session.networks[0]
    started = trio.current_time()
    count = 0
    if isinstance(net, OverlayNetwork):
        await net.join()
    while True:
        if isinstance(net, NapsterNetwork):
            hits = list((await net.search_keywords(SearchQuery(text=QUERY))).hits)
        else:
            assert isinstance(net, OverlayNetwork)
            hits = await net.search_keywords(QUERY, wait=OVERLAY_WAIT)
        count += 1
        if hits:
            break
        await trio.sleep(1.0)
    hit, seconds = hits[0], trio.current_time() - started
    say(
        f"{name}: search {QUERY!r} via {mode}: {safe_text(hit.name)} "
        f"({hit.size / MIB:.1f} MiB, {hit.info_hash.hex()[:12]}...) from "
        f"{len(hit.peers)} holder{'s' if len(hit.peers) != 1 else ''} in {seconds:.2f} s"
    )
    record = {
        "leecher": name,
        "query": QUERY,
        "searches": count,
        "hits": len(hits),
        "name": hit.name,
        "info_hash": hit.info_hash.hex(),
        "holders": [str(p) for p in hit.peers],
        "seconds": round(seconds, 3),
    }
    return hits, record


async def _leecher(
    session: Session, name: str, limit: int, save: Path, magnet: Magnet, hit: SearchHit, say: Any
) -> Node:
    """The hit added as a magnet (its holders dialled at once); the session does the rest."""
    completions: list[float] = []

    def on_event(event: Event) -> None:
        if isinstance(event, TorrentCompleted):
            completions.append(event.seconds)
        elif isinstance(event, MetadataReceived):
            say(f"{name}: metadata from a holder over ut_metadata ({event.size} bytes); fetching")

    session.subscribe(on_event)
    handle = await session.add(magnet, save, peers=hit.peers)
    return Node(name, limit, session, handle, save, completions)
