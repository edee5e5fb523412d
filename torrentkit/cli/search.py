"""``torrentkit search QUERY --discovery napster|gnutella|kazaa --bootstrap ADDR``: find files
by name.

- ``napster``: one request to the index at ``--bootstrap URL``. ``--match word`` (default:
  every word of QUERY is a whole word of the name), ``substring`` or ``regex`` (RE2 syntax,
  run by the index in linear time); ``--min-size`` / ``--max-size`` / ``--ext`` filter by
  attribute (QUERY may then be empty: ``""``).
- ``gnutella`` / ``kazaa``: a node joins the overlay through ``--bootstrap HOST:PORT``, floods
  the query (TTL 7) and collects hits for ``--wait`` seconds (default 3). Overlay nodes match
  words only (every word of QUERY appears in the name, ignoring case); the attribute filters
  are applied here to what comes back. A KaZaA searcher is a leaf: its supernodes flood the
  query among supernodes only.

Output, one hit per (info-hash, name, size) with every holder that answered: a table on a
terminal; otherwise one line per hit, ``INFO_HASH  SIZE  NAME  HOST:PORT,...``; with
``--json`` one object per line: ``{"name", "size", "info_hash", "peers": ["HOST:PORT"]}``.
Names from the network are escaped. No hits is not an error (exit 0, a note on stderr); an
index or overlay that cannot be reached is (exit 1).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import trio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from torrentkit.cli.common import JobFailed, UsageError, emit_json, parse_size, safe_text
from torrentkit.cli.p2p import (
    SEARCH_MODES,
    add_discovery_arguments,
    check_port,
    filter_hits,
    hit_object,
    index_url,
    overlay_bootstrap,
    require_mode,
)
from torrentkit.discovery.base import NetworkError, SearchHit
from torrentkit.discovery.gnutella import Role
from torrentkit.discovery.gnutella.messages import MAX_QUERY
from torrentkit.discovery.gnutella.overlay import query_words
from torrentkit.discovery.gnutella.session_port import (
    OverlayListenError,
    open_overlay,
    wait_for_neighbours,
)
from torrentkit.discovery.napster.client import IndexUnreachable, NapsterClient
from torrentkit.discovery.napster.index import IndexRequestError, MatchKind, SearchQuery
from torrentkit.discovery.napster.protocol import IndexResponseError
from torrentkit.ids import PeerAddr
from torrentkit.net import TrioNetwork
from torrentkit.text import format_size

DEFAULT_WAIT = 3.0
MAX_WAIT = 120.0
_EXT = re.compile(r"[0-9a-z]{1,16}")


def register(sub: Any) -> None:
    p = sub.add_parser("search", help="find files by name (napster, gnutella, kazaa)")
    p.add_argument("query", metavar="QUERY", help="words (or a substring / regular expression)")
    add_discovery_arguments(p, default=None, offered=SEARCH_MODES)
    p.add_argument(
        "--match",
        choices=[k.value for k in MatchKind],
        default="word",
        help="word (default), substring or regex (napster only)",
    )
    p.add_argument("--min-size", metavar="SIZE", help="only files at least this large")
    p.add_argument("--max-size", metavar="SIZE", help="only files at most this large")
    p.add_argument("--ext", metavar="EXT", help="only files with this extension (mp3, iso)")
    p.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT, metavar="S", help="overlays: collect hits S s"
    )
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="overlays: listen address")
    p.add_argument("--port", type=int, default=0, metavar="N", help="overlays: listen port")
    p.add_argument("--json", action="store_true", help="one JSON object per hit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    mode = args.discovery
    require_mode(mode, SEARCH_MODES, "search")
    min_size = parse_size(args.min_size, "--min-size") if args.min_size is not None else None
    max_size = parse_size(args.max_size, "--max-size") if args.max_size is not None else None
    if min_size is not None and max_size is not None and min_size > max_size:
        raise UsageError("--min-size is larger than --max-size")
    ext = None
    if args.ext is not None:
        ext = args.ext.removeprefix(".").lower()
        if not _EXT.fullmatch(ext):
            raise UsageError(f"--ext: 1-16 letters or digits, got {args.ext!r}")
    check_port(args.port)
    if mode == "napster":
        url = index_url(args.bootstrap)
        try:
            query = SearchQuery(
                text=args.query,
                match=MatchKind(args.match),
                min_size=min_size,
                max_size=max_size,
                ext=ext,
            )
        except IndexRequestError as exc:
            raise UsageError(str(exc)) from None
        hits = trio.run(_search_napster, url, query)
    else:
        if args.match != "word":
            raise UsageError(
                f"--match {args.match}: {mode} nodes match words only "
                "(substring and regex search need --discovery napster)"
            )
        if not query_words(args.query):
            raise UsageError("QUERY: give at least one word")
        if len(args.query.encode("utf-8", "replace")) > MAX_QUERY:
            raise UsageError(f"QUERY: at most {MAX_QUERY} bytes")
        if not 0 < args.wait <= MAX_WAIT:
            raise UsageError(f"--wait: must be more than 0 and at most {MAX_WAIT:g} s")
        boot = overlay_bootstrap(args.bootstrap)
        role = Role.PEER if mode == "gnutella" else Role.LEAF
        found = trio.run(_search_overlay, role, boot, args.bind, args.port, args.query, args.wait)
        hits = filter_hits(found, min_size=min_size, max_size=max_size, ext=ext)
    show(hits, json_mode=args.json)
    return 0


async def _search_napster(url: str, query: SearchQuery) -> list[SearchHit]:
    async with NapsterClient(url) as client:
        try:
            reply = await client.search(query)
        except IndexRequestError as exc:
            if exc.status == 400:  # the index says the query is malformed
                raise UsageError(f"napster index: {exc}") from None
            raise JobFailed(f"napster index: {exc}") from None
        except (IndexUnreachable, IndexResponseError) as exc:
            raise JobFailed(f"napster index {url}: {exc}") from None
    if reply.truncated:
        _note(f"more hits may exist: showing the first {len(reply.hits)}")
    return list(reply.hits)


async def _search_overlay(
    role: Role, bootstrap: list[PeerAddr], bind: str, port: int, text: str, wait: float
) -> list[SearchHit]:
    network = TrioNetwork()
    try:
        async with open_overlay(
            network, role=role, bootstrap=bootstrap, bind=bind, port=port
        ) as node:
            await wait_for_neighbours(node)
            return await node.search(text, wait=wait)
    except OverlayListenError as exc:
        raise UsageError(str(exc)) from None
    except NetworkError as exc:
        raise JobFailed(str(exc)) from None


def show(hits: list[SearchHit], *, json_mode: bool) -> None:
    if json_mode:
        for hit in hits:
            emit_json(hit_object(hit))
    elif sys.stdout.isatty():
        table = Table(header_style="bold", box=None)
        table.add_column("name", ratio=2)
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("info-hash", no_wrap=True, min_width=40)  # whole: it is copied
        table.add_column("peers", ratio=1)
        for hit in hits:
            peers = ", ".join(str(p) for p in hit.peers[:3])
            if len(hit.peers) > 3:
                peers += f" (+{len(hit.peers) - 3})"
            table.add_row(
                Text(safe_text(hit.name)), format_size(hit.size), hit.info_hash.hex(), peers
            )
        Console(highlight=False).print(table)
    else:
        for hit in hits:
            peers = ",".join(str(p) for p in hit.peers)
            sys.stdout.write(f"{hit.info_hash.hex()}  {hit.size}  {safe_text(hit.name)}  {peers}\n")
        sys.stdout.flush()
    if not hits:
        _note("no hits")


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
