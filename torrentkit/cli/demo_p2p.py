"""``torrentkit demo --discovery napster|gnutella|kazaa``: the demo swarm, found by search.

As in the tracker demo, a seeder and N leechers run as real sessions on 127.0.0.1, with the
same upload limits, live dashboard and summary. What differs is how they meet:

- ``napster``: an index runs in a thread; the seeder publishes ``demo.bin`` to it.
- ``gnutella``: three bare overlay nodes form the core of an overlay; the seeder and every
  leecher join it as peers (through a random core node), on their BitTorrent ports.
- ``kazaa``: two bare supernodes; the seeder and the leechers attach to them as leaves and
  upload their file lists.

Each leecher starts knowing only a word of the file's name: it searches (``demo``), prints
what came back (name, size, holders, time), fetches the info dictionary from a holder over
``ut_metadata`` and starts the download -- magnet style, through the same engine. From then
on it publishes the file itself and searches again every few seconds, so the leechers find
one another (not just the seeder) and tit-for-tat has partners; the live dashboard shows the
fetch. The summary gains ``discovery`` and the leechers' ``searches``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio
from rich.console import Console

from torrentkit.cli.common import EXIT_FAILED, EXIT_OK, JobFailed, emit_json, safe_text
from torrentkit.cli.p2p import open_overlay, wait_for_neighbours
from torrentkit.discovery.base import SearchHit
from torrentkit.discovery.gnutella import FileEntry, OverlayDriver, Role
from torrentkit.discovery.napster.client import NapsterClient, NapsterPublisher
from torrentkit.discovery.napster.index import (
    IndexConfig,
    NapsterIndex,
    RateLimiter,
    SearchQuery,
    SharedFile,
)
from torrentkit.discovery.napster.server import NapsterIndexThread
from torrentkit.engine.metadata_fetch import MetadataFetcher
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import FileStorage
from torrentkit.engine.torrent import TorrentOptions
from torrentkit.ids import PeerAddr
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Info, Metainfo, parse_info, parse_torrent
from torrentkit.net import TrioNetwork

MIB = 1024 * 1024
#: The words a leecher searches for (the payload is ``demo.bin``).
QUERY = "demo"
#: Most seconds between a leecher's searches once it has the file's metadata.
RESEARCH_EVERY = 3.0
#: How long an overlay search collects hits.
OVERLAY_WAIT = 2.0
#: Bare overlay nodes the demo starts: gnutella peers / kazaa supernodes.
CORE_NODES = {"gnutella": 3, "kazaa": 2}


class Discovery(Protocol):
    """One demo peer's view of the discovery design."""

    async def search(self, text: str) -> list[SearchHit]: ...

    def publish(self, info: Info) -> None: ...


class _NapsterPeer:
    def __init__(self, client: NapsterClient, session: Session, nursery: trio.Nursery) -> None:
        self.client = client
        self.session = session
        self.nursery = nursery

    async def search(self, text: str) -> list[SearchHit]:
        return list((await self.client.search(SearchQuery(text=text))).hits)

    def publish(self, info: Info) -> None:
        f = SharedFile(name=info.name, size=info.total_length, info_hash=info.info_hash)
        publisher = NapsterPublisher(self.client, self.session.address.port, [f])
        self.nursery.start_soon(publisher.run)


class _OverlayPeer:
    def __init__(self, node: OverlayDriver) -> None:
        self.node = node

    async def search(self, text: str) -> list[SearchHit]:
        return await self.node.search(text, wait=OVERLAY_WAIT)

    def publish(self, info: Info) -> None:
        self.node.publish(
            [FileEntry(name=info.name, size=info.total_length, info_hash=info.info_hash)]
        )


@dataclass(slots=True)
class _Demo:
    mode: str
    err: Console
    quiet: bool
    rng: random.Random
    options: TorrentOptions
    index_url: str = ""
    core: list[PeerAddr] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)

    @asynccontextmanager
    async def join(self, session: Session) -> AsyncIterator[Discovery]:
        if self.mode == "napster":
            client = NapsterClient(self.index_url)
            try:
                async with trio.open_nursery() as nursery:
                    yield _NapsterPeer(client, session, nursery)
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await client.aclose()
            return
        role = Role.PEER if self.mode == "gnutella" else Role.LEAF
        boot = [self.rng.choice(self.core)]
        async with open_overlay(
            session.network, role=role, bootstrap=boot, session=session
        ) as node:
            await wait_for_neighbours(node)
            yield _OverlayPeer(node)

    def say(self, text: str) -> None:
        if not self.quiet:
            self.err.print(text, markup=False, highlight=False)


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
    from torrentkit.cli.demo import Node, _print_summary, _summary, _watch, leecher_limits

    mode = args.discovery
    meta = parse_torrent(make_torrent(payload, piece_length=piece))
    demo = _Demo(
        mode=mode,
        err=err,
        quiet=args.json,
        rng=random.Random(args.seed),
        options=TorrentOptions(max_peers=50, rechoke_interval=args.rechoke),
    )
    with contextlib.ExitStack() as stack:
        index: NapsterIndexThread | None = None
        if mode == "napster":
            # Every demo peer has the same IP (127.0.0.1): no per-address rate limit.
            limiter = RateLimiter(0, 1)
            index = NapsterIndexThread(NapsterIndex(IndexConfig(ttl=60)), limiter=limiter)
            stack.enter_context(index)
            demo.index_url = index.url
        async with trio.open_nursery() as nursery:
            if mode != "napster":
                role = Role.PEER if mode == "gnutella" else Role.SUPERNODE
                for _ in range(CORE_NODES[mode]):
                    demo.core.append(await nursery.start(_core_node, role, list(demo.core)))
            where = index.url if index is not None else ", ".join(str(a) for a in demo.core)
            demo.say(
                f"{mode}: {where}; payload {meta.info.total_length / MIB:.1f} MiB in "
                f"{meta.info.num_pieces} pieces; {args.leechers} leechers search {QUERY!r}"
            )
            seeder: Node = await nursery.start(
                _peer, demo, "seeder", seed_rate, payload.parent, meta
            )
            limits = leecher_limits(args.leechers, seed_rate)
            leechers: list[Node | None] = [None] * len(limits)

            async def start_leecher(i: int, limit: int) -> None:
                d = tmp / f"leecher{i + 1}"
                d.mkdir()
                leechers[i] = await nursery.start(_peer, demo, f"leecher {i + 1}", limit, d, None)

            with trio.move_on_after(args.timeout) as setup:
                async with trio.open_nursery() as starting:
                    for i, limit in enumerate(limits):
                        starting.start_soon(start_leecher, i, limit)
            if setup.cancelled_caught:
                missing = [f"leecher {i + 1}" for i, n in enumerate(leechers) if n is None]
                raise JobFailed(
                    f"{', '.join(missing)} found no copy via {mode} within {args.timeout:g} s"
                )
            nodes = [n for n in leechers if n is not None]
            finished = await _watch(args, nodes, ui, err)
            summary = _summary(meta, seeder, nodes, digest, finished)
            nursery.cancel_scope.cancel()
    summary["discovery"] = mode
    summary["searches"] = sorted(demo.searches, key=lambda s: int(s["leecher"].split()[-1]))
    ok = all(row["verified"] for row in summary["leechers"])
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return EXIT_OK if ok else EXIT_FAILED


async def _core_node(
    role: Role, bootstrap: list[PeerAddr], *, task_status: trio.TaskStatus[PeerAddr]
) -> None:
    async with open_overlay(TrioNetwork(), role=role, bootstrap=bootstrap, bind="127.0.0.1") as n:
        task_status.started(n.address)
        await trio.sleep_forever()


async def _peer(
    demo: _Demo,
    name: str,
    upload_limit: int,
    save_dir: Path,
    meta: Metainfo | None,
    *,
    task_status: trio.TaskStatus[Any],
) -> None:
    """One demo peer: its session, its discovery, and (leechers) search, metadata, fetch."""
    from torrentkit.cli.demo import Node

    session = Session(
        TrioNetwork(), SessionOptions(bind="127.0.0.1", port=0, up_limit=upload_limit)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run)
        async with demo.join(session) as discovery:
            if meta is not None:
                info = meta.info
                holders: list[PeerAddr] = []
            else:
                info, holders = await _find(demo, name, session, discovery)
            torrent = await session.add_torrent(info, FileStorage(info, save_dir), demo.options)
            torrent.add_peers(holders, demo.mode)
            discovery.publish(info)
            task_status.started(Node(name, upload_limit, session, torrent, save_dir))
            known = set(holders)
            pause = 0.5
            while meta is None:  # leechers: look for more peers (the other leechers)
                await trio.sleep(pause)
                pause = min(RESEARCH_EVERY, 2 * pause)
                hits = await discovery.search(QUERY)
                fresh = [
                    p
                    for h in hits
                    if h.info_hash == info.info_hash
                    for p in h.peers
                    if p not in known and p != session.address
                ]
                known.update(fresh)
                torrent.add_peers(fresh, demo.mode)
            await trio.sleep_forever()


async def _find(
    demo: _Demo, name: str, session: Session, discovery: Discovery
) -> tuple[Info, list[PeerAddr]]:
    """Search until a hit comes back, then fetch its info dictionary from its holders."""
    started = trio.current_time()
    searches = 0
    while True:
        hits = await discovery.search(QUERY)
        searches += 1
        if hits:
            break
        await trio.sleep(1.0)
    hit = hits[0]
    seconds = trio.current_time() - started
    demo.say(
        f"{name}: search {QUERY!r} via {demo.mode}: {safe_text(hit.name)} "
        f"({hit.size / MIB:.1f} MiB, {hit.info_hash.hex()[:12]}...) from "
        f"{len(hit.peers)} holder{'s' if len(hit.peers) != 1 else ''} in {seconds:.2f} s"
    )
    fetcher = MetadataFetcher(
        hit.info_hash,
        network=session.network,
        peer_id=session.peer_id,
        listen_port=session.address.port,
    )
    fetcher.add_peers(list(hit.peers), demo.mode)
    raw = await fetcher.fetch()
    info = parse_info(raw)
    demo.say(f"{name}: metadata from a holder over ut_metadata ({len(raw)} bytes); fetching")
    demo.searches.append(
        {
            "leecher": name,
            "query": QUERY,
            "searches": searches,
            "hits": len(hits),
            "name": hit.name,
            "info_hash": hit.info_hash.hex(),
            "holders": [str(p) for p in hit.peers],
            "seconds": round(seconds, 3),
        }
    )
    return info, list(fetcher.known)
