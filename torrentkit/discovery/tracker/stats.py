"""Render :class:`~torrentkit.discovery.tracker.state.TrackerStats` as JSON and HTML (pure).

Peer ids come from the network and may hold anything (markup, control characters, invalid
UTF-8). :func:`peer_id_text` keeps printable ASCII and writes every other byte as ``\\xNN``,
so the text carries no control sequences; the HTML page then escapes every string it shows
with :func:`html.escape`, so nothing a peer sends can become markup.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from torrentkit.discovery.tracker.state import TrackerStats


@dataclass(slots=True)
class ServedCounts:
    """Requests one protocol (HTTP or UDP) served since start. ``connects`` and ``dropped``
    (short packets, wrong connection ids) are UDP's only; ``errors`` are failure replies."""

    announces: int = 0
    scrapes: int = 0
    errors: int = 0
    connects: int = 0
    dropped: int = 0


def printable(data: bytes) -> str:
    """Printable ASCII kept (backslash doubled), every other byte as ``\\xNN``."""
    out = []
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def peer_id_text(peer_id: bytes) -> str:
    """A peer id as text safe for a terminal, a log or (once HTML-escaped) a page."""
    return printable(peer_id)


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def stats_dict(
    stats: TrackerStats, served: Mapping[str, ServedCounts] | None = None
) -> dict[str, Any]:
    """The JSON shape of ``/stats``; ``served``: counts per protocol (``http``, ``udp``)."""
    return {
        "served": {name: asdict(c) for name, c in (served or {}).items()},
        "torrents": stats.torrents,
        "peers": stats.peers,
        "seeders": stats.seeders,
        "leechers": stats.leechers,
        "completed": stats.completed,
        "swarms": [
            {
                "info_hash": s.info_hash.hex(),
                "seeders": s.seeders,
                "leechers": s.leechers,
                "completed": s.completed,
                "peers": [
                    {
                        "peer_id": peer_id_text(p.peer_id),
                        "addr": _addr(p.ip, p.port),
                        "seeder": p.seeder,
                    }
                    for p in s.peers
                ],
            }
            for s in stats.swarms
        ],
    }


def render_json(stats: TrackerStats, served: Mapping[str, ServedCounts] | None = None) -> bytes:
    return json.dumps(stats_dict(stats, served), separators=(",", ":")).encode()


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>torrentkit tracker</title>
<style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}code{{font-size:90%}}</style>
</head><body>
<h1>torrentkit tracker</h1>
<p>{torrents} torrents &middot; {peers} peers &middot; {seeders} seeders &middot;
{leechers} leechers &middot; {completed} completed</p>
{served}
<table><tr><th>info-hash</th><th>seeders</th><th>leechers</th><th>completed</th>
<th>peers</th></tr>
{rows}
</table></body></html>
"""


def render_html(stats: TrackerStats, served: Mapping[str, ServedCounts] | None = None) -> bytes:
    """A small HTML view; every string in it passes through :func:`html.escape`."""
    e = html.escape
    served_lines = "".join(
        f"<p>{e(name.upper())}: {c.announces} announces &middot; {c.scrapes} scrapes &middot; "
        f"{c.errors} errors"
        + (f" &middot; {c.connects} connects &middot; {c.dropped} dropped" if name == "udp" else "")
        + "</p>\n"
        for name, c in (served or {}).items()
    )
    rows = []
    for s in stats.swarms:
        peers = "<br>".join(
            f"<code>{e(peer_id_text(p.peer_id))}</code> {e(_addr(p.ip, p.port))}"
            + (" (seed)" if p.seeder else "")
            for p in s.peers
        )
        rows.append(
            f"<tr><td><code>{e(s.info_hash.hex())}</code></td><td>{s.seeders}</td>"
            f"<td>{s.leechers}</td><td>{s.completed}</td><td>{peers}</td></tr>"
        )
    return _PAGE.format(
        torrents=stats.torrents,
        peers=stats.peers,
        seeders=stats.seeders,
        leechers=stats.leechers,
        completed=stats.completed,
        served=served_lines,
        rows="\n".join(rows),
    ).encode()
