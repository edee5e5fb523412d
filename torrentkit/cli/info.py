"""``torrentkit info FILE|MAGNET [--json]``: what a torrent or magnet link holds."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from torrentkit.cli.common import (
    EXIT_OK,
    UsageError,
    emit_json,
    load_torrent_or_magnet,
    safe_text,
)
from torrentkit.metainfo import Magnet, Metainfo, magnet_for


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="show what a .torrent or magnet link holds")
    p.add_argument("source", metavar="FILE|MAGNET")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--magnet",
        action="store_true",
        help="print only the magnet link (info-hash, name, every tracker)",
    )
    p.set_defaults(func=run)


def magnet_of(src: Metainfo | Magnet) -> str:
    """The magnet link (BEP 9) for a torrent: its info-hash(es), name, trackers and web
    seeds (``ws=``, as libtorrent writes them)."""
    if isinstance(src, Magnet):
        return src.format()
    return magnet_for(src).format()


def info_object(src: Metainfo | Magnet) -> dict[str, Any]:
    """The ``info --json`` object of docs/cli.md."""
    if isinstance(src, Magnet):
        return {
            "name": src.name,
            "info_hash": src.info_hash.hex(),
            "info_hash_v2": src.info_hash_v2.hex() if src.info_hash_v2 else None,
            "total_size": None,
            "piece_length": None,
            "num_pieces": None,
            "private": None,
            "files": None,
            "trackers": [[t] for t in src.trackers],
            "peers": [str(p) for p in src.peers],
            "url_list": list(src.web_seeds),
        }
    info = src.info
    return {
        "name": info.name,
        "info_hash": info.info_hash.hex(),
        "info_hash_v2": info.info_hash_v2.hex() if info.info_hash_v2 else None,
        "total_size": info.total_length,
        "piece_length": info.piece_length,
        "num_pieces": info.num_pieces,
        "private": info.private,
        "files": [{"path": f.path_str, "length": f.length, "pad": f.pad} for f in info.files],
        "trackers": [list(t) for t in src.trackers],
        "url_list": list(src.url_list),
        "comment": src.comment,
        "created_by": src.created_by,
        "creation_date": src.creation_date,
    }


def run(args: argparse.Namespace) -> int:
    src = load_torrent_or_magnet(args.source)
    if args.magnet:
        if args.json:
            raise UsageError("--magnet and --json: choose one")
        sys.stdout.write(magnet_of(src) + "\n")
        return EXIT_OK
    obj = info_object(src)
    if args.json:
        emit_json(obj)
        return EXIT_OK
    console = Console(highlight=False)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()

    def row(label: str, value: object) -> None:
        if value is not None:
            head.add_row(label, safe_text(str(value)))

    row("name", obj["name"])
    row("info-hash", obj["info_hash"])
    row("info-hash v2", obj["info_hash_v2"])
    if obj["total_size"] is not None:
        row("size", f"{_human(obj['total_size'])} ({obj['total_size']:,} bytes)")
        row("piece length", _human(obj["piece_length"]))
        row("pieces", f"{obj['num_pieces']:,}")
        row("private", "yes" if obj["private"] else "no")
        row("comment", obj.get("comment"))
        row("created by", obj.get("created_by"))
    for i, tier in enumerate(obj["trackers"]):
        row(f"tier {i}", ", ".join(tier))
    for peer in obj.get("peers") or []:
        row("peer", peer)
    for url in obj.get("url_list") or []:
        row("web seed", url)
    console.print(head, markup=False)
    if obj["files"]:
        files = Table(title=None, show_edge=False, header_style="bold")
        files.add_column("#", justify="right")
        files.add_column("path", overflow="fold")
        files.add_column("size", justify="right")
        index = 0
        for f in obj["files"]:
            if f["pad"]:
                continue
            files.add_row(str(index), safe_text(f["path"]), _human(f["length"]))
            index += 1
        console.print(files)
    return EXIT_OK


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
