"""The flags ``download`` and ``seed`` share (``get`` and ``share`` use most of them too), and
their mapping to :class:`~torrentkit.settings.Settings`. Every bad value is a one-line
:class:`~torrentkit.cli.common.UsageError` naming the flag (exit 2)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from torrentkit.cli.chord_cli import add_chord_arguments
from torrentkit.cli.common import UsageError, load_torrent_or_magnet, parse_size
from torrentkit.cli.dht_flags import add_dht_arguments, dht_settings
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Magnet, Metainfo, is_magnet
from torrentkit.settings import Settings, SettingsError


def add_common_arguments(
    p: argparse.ArgumentParser, *, seeding: bool, ring: bool | None = None
) -> None:
    """The flags download and seed share. ``ring``: add ``--discovery tracker|chord`` and
    ``--bootstrap`` (default: unless the command defined its own ``--discovery``)."""
    if ring is None:
        ring = not any("--discovery" in a.option_strings for a in p._actions)
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="listen address")
    p.add_argument("--port", type=int, default=0, metavar="N", help="listen port (0 = any)")
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="dial this peer directly (repeatable)",
    )
    p.add_argument("--up-limit", default="0", metavar="RATE", help="upload limit, e.g. 500K")
    add_max_peers(p)
    p.add_argument("--no-tracker", action="store_true", help="do not announce to trackers")
    add_web_seed_argument(p)
    add_lsd_argument(p)
    add_ca_file_argument(p)
    add_encryption_argument(p)
    p.add_argument("--json", action="store_true", help="JSON events on stdout")
    p.add_argument("--no-ui", action="store_true", help="plain status lines even on a TTY")
    p.add_argument("--state-dir", metavar="DIR", help="resume state folder")
    add_dht_arguments(p)
    if ring:
        p.add_argument(
            "--discovery",
            choices=["tracker", "chord"],
            default="tracker",
            help="tracker: the torrent's own trackers; chord: also join a Chord ring",
        )
        p.add_argument(
            "--bootstrap",
            action="append",
            default=[],
            metavar="HOST:PORT",
            help="Chord: a ring node to join through (repeatable; none starts a new ring)",
        )
        add_chord_arguments(p)
    if not seeding:
        p.add_argument("--down-limit", default="0", metavar="RATE", help="download limit")
        p.add_argument(
            "--page-cache",
            choices=["drop", "keep"],
            default="drop",
            help="downloaded pieces in the OS page cache: drop (kept out of it: O_DIRECT "
            "writes, else written back at once and released; default) or keep (left to the OS)",
        )


def add_web_seed_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-web-seeds", action="store_true", help="do not fetch from the torrent's url-list"
    )


def add_lsd_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lsd", action="store_true", help="local service discovery: find peers on the LAN"
    )


def add_ca_file_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca-file",
        metavar="FILE",
        help="PEM certificates to trust for https web seeds and trackers, beside the "
        "default CA bundle (a private CA or a self-signed server)",
    )


def add_encryption_argument(p: argparse.ArgumentParser) -> None:
    """``--encryption`` (docs/cli.md), on every command that opens peer connections."""
    p.add_argument(
        "--encryption",
        choices=["prefer", "require", "disable"],
        default="prefer",
        help="MSE/PE: prefer (encrypted handshake first, plaintext once if refused), "
        "require (RC4 only), disable (plaintext only)",
    )


def add_max_peers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-peers",
        type=int,
        default=50,
        metavar="N",
        help="connected peers per torrent at most (1-1000, default 50)",
    )


def settings_from_args(args: argparse.Namespace, **more: Any) -> Settings:
    """Settings from the common flags (``--bind``, ``--port``, limits, ``--max-peers``,
    ``--no-tracker``, ``--state-dir``, the DHT's); ``more``: other fields (``chord=...``,
    ``napster=...``). A command without the DHT flags runs no DHT node."""
    if not 0 <= args.port < 65536:
        raise UsageError("--port: must be 0-65535")
    if not 0 < args.max_peers <= 1000:
        raise UsageError("--max-peers: must be 1-1000")
    host = f"[{args.bind}]" if ":" in args.bind else args.bind
    up = parse_size(args.up_limit, "--up-limit")
    down = parse_size(getattr(args, "down_limit", "0"), "--down-limit")
    more.setdefault("dht", dht_settings(args))
    try:
        return Settings(
            listen=f"{host}:{args.port}",
            state_dir=Path(args.state_dir) if args.state_dir else None,
            up_limit=up,
            down_limit=down,
            max_peers=args.max_peers,
            trackers=not args.no_tracker,
            web_seeds=not getattr(args, "no_web_seeds", False),
            lsd=getattr(args, "lsd", False),
            ca_file=getattr(args, "ca_file", None),
            encryption=args.encryption,
            page_cache=getattr(args, "page_cache", "drop"),
            **more,
        )
    except SettingsError as exc:
        text = str(exc)
        if text.startswith("ca_file: "):  # named as the user wrote it
            text = "--ca-file: " + text.removeprefix("ca_file: ")
        raise UsageError(text) from None


def parse_peers(values: list[str]) -> list[PeerAddr]:
    out = []
    for text in values:
        try:
            out.append(PeerAddr.parse(text))
        except ValueError as exc:
            raise UsageError(f"--peer: {exc}") from None
    return out


def check_save_dir(path: str, *, create: bool = False) -> Path:
    """The data folder: must exist (seed), or is created when missing (download, get:
    docs/cli.md); a file in its place, or one that cannot be made, is a usage error."""
    d = Path(path)
    if not d.exists():
        if not create:
            raise UsageError(f"{d}: no such folder")
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{d}: cannot create the folder: {exc.strerror or exc}") from None
    if not d.is_dir():
        raise UsageError(f"{d}: not a folder")
    if create:  # a folder we cannot write to is found now, not when the first piece arrives
        try:
            tempfile.TemporaryFile(dir=d).close()
        except OSError as exc:
            raise UsageError(f"{d}: cannot write here: {exc.strerror or exc}") from None
    return d


def load_job_torrent(arg: str, *, magnets: bool = True) -> Metainfo | Magnet:
    if is_magnet(arg) and not magnets:
        raise UsageError("seed needs a .torrent file, not a magnet link")
    return load_torrent_or_magnet(arg)


def want_ui(args: argparse.Namespace) -> bool:
    return sys.stdout.isatty() and sys.stdin.isatty() and not args.json and not args.no_ui
