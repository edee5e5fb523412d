"""Helpers every subcommand shares: errors and exit codes, units, loading torrents, output."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from torrentkit.errors import MetainfoError
from torrentkit.metainfo import Magnet, Metainfo, is_magnet, parse_magnet, parse_torrent

# Re-exported for the subcommands; the escaping rule lives in torrentkit.text.
from torrentkit.text import safe_text as safe_text

if TYPE_CHECKING:  # rich is imported by the commands that draw (its import costs ~0.1 s)
    from rich.console import Console
    from rich.progress import Progress

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

MAX_TORRENT_FILE = 64 * 1024 * 1024


class UsageError(Exception):
    """Bad input or usage: one line on stderr, exit code 2."""


class JobFailed(Exception):
    """The job failed at run time: one line on stderr, exit code 1."""


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGkmg]?)(?:i?[Bb])?\s*$")


def parse_size(text: str, what: str = "size") -> int:
    """``500K`` -> 512000, ``1.5M`` -> 1572864, ``0`` -> 0 (binary units, per docs/cli.md)."""
    m = _SIZE.match(text)
    if m is None:
        raise UsageError(f"{what}: expected a number with an optional K/M/G suffix, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def load_torrent(path: str) -> Metainfo:
    """Read and parse a .torrent file; every problem becomes a one-line UsageError."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_TORRENT_FILE:
            raise UsageError(f"{path}: larger than {MAX_TORRENT_FILE} bytes, not a torrent")
        data = p.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a .torrent file") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    try:
        return parse_torrent(data)
    except MetainfoError as exc:
        raise UsageError(f"{path}: {exc}") from None


def load_torrent_or_magnet(arg: str) -> Metainfo | Magnet:
    if is_magnet(arg):
        try:
            return parse_magnet(arg)
        except MetainfoError as exc:
            raise UsageError(str(exc)) from None
    return load_torrent(arg)


def emit_json(obj: dict[str, Any], out: TextIO | None = None) -> None:
    """One JSON object per line, flushed at once."""
    stream = out if out is not None else sys.stdout
    stream.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    stream.flush()


def byte_progress(console: Console) -> Progress:
    """A transient progress bar in bytes (hashing, verifying) on ``console``."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    )
