"""``torrentkit verify TORRENT DIR [--json]``: check a download folder against a torrent.

DIR is the parent folder (libtorrent's save-path convention, docs/cli.md): a single-file
torrent's data is ``DIR/<name>``, a multi-file torrent's the folder ``DIR/<name>/``. Every
piece is hashed; each file is then reported as ``ok``, ``incomplete`` (N of the M pieces it
touches verified), ``missing``, or ``unusable`` (a symlink, a folder or a special file where
the file should be: storage never reads through those). Pad files are never on disk and are
not listed. Exit 0 when everything is complete, 1 otherwise (one line on stderr naming the
first bad piece and its file), 2 for a bad torrent or a missing DIR.

``--json`` prints one ``{"event": "file", ...}`` object per file, then one
``{"event": "summary", ...}`` object, each with ``t`` (seconds since start).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from torrentkit.cli.common import (
    EXIT_OK,
    JobFailed,
    UsageError,
    byte_progress,
    emit_json,
    load_torrent,
    safe_text,
)
from torrentkit.engine.layout import Layout
from torrentkit.engine.storage import FileStorage
from torrentkit.metainfo import Info

PLAIN_STATUS_EVERY = 3.0  # seconds between plain progress lines when not on a TTY


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="check the data in DIR against a torrent's hashes")
    p.add_argument("torrent", metavar="TORRENT", help="the .torrent file")
    p.add_argument("dir", metavar="DIR", help="the folder holding the torrent's name")
    p.add_argument("--json", action="store_true", help="JSON objects on stdout, one a line")
    p.set_defaults(func=run)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileResult:
    """What verify found for one (non-pad) file."""

    index: int
    path: str
    length: int
    status: str  # "ok" | "incomplete" | "missing" | "unusable"
    pieces: int
    pieces_ok: int
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        if self.status == "incomplete":
            return f"incomplete: {self.pieces_ok} of {self.pieces} pieces"
        if self.status == "unusable":
            return f"unusable: {self.problem}"
        return self.status


def file_results(info: Info, have: list[bool], problems: list[str | None]) -> list[FileResult]:
    """Per-file verdicts from per-piece results and per-file presence."""
    layout = Layout.from_info(info)
    out: list[FileResult] = []
    for i, f in enumerate(info.files):
        if f.pad:
            continue
        pieces = layout.file_pieces(i)
        good = sum(1 for p in pieces if have[p])
        problem = problems[i]
        if problem == "missing":
            status = "missing"
        elif problem is not None:
            status = "unusable"
        elif good == len(pieces):
            status = "ok"
        else:
            status = "incomplete"
        out.append(
            FileResult(
                index=i,
                path=f.path_str,
                length=f.length,
                status=status,
                pieces=len(pieces),
                pieces_ok=good,
                problem=problem if status == "unusable" else None,
            )
        )
    return out


async def check(
    info: Info, root: Path, progress: Callable[[int, bool], None] | None
) -> tuple[list[bool], list[str | None]]:
    async with FileStorage(info, root) as storage:
        have = await storage.recheck(progress)
        problems = await storage.file_problems()
    return have, problems


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    meta = load_torrent(args.torrent)
    info = meta.info
    root = Path(args.dir)
    if not root.exists():
        raise UsageError(f"{root}: no such folder")
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")

    err = Console(stderr=True, highlight=False)
    if err.is_terminal:
        with byte_progress(err) as bar:
            task = bar.add_task("verifying", total=info.total_length)
            have, problems = trio.run(
                check, info, root, lambda i, ok: bar.advance(task, info.piece_size(i))
            )
    else:
        have, problems = trio.run(check, info, root, _plain_progress(info))
    seconds = time.monotonic() - started

    results = file_results(info, have, problems)
    bad_pieces = [i for i, ok in enumerate(have) if not ok]
    first_bad_file = _first_bad_file(info, results, bad_pieces)
    if args.json:
        for r in results:
            emit_json(
                {
                    "event": "file",
                    "t": round(time.monotonic() - started, 3),
                    "path": r.path,
                    "length": r.length,
                    "status": r.status,
                    "pieces": r.pieces,
                    "pieces_ok": r.pieces_ok,
                    "problem": r.problem,
                }
            )
        emit_json(
            {
                "event": "summary",
                "t": round(time.monotonic() - started, 3),
                "complete": not bad_pieces and all(r.ok for r in results),
                "files": len(results),
                "files_ok": sum(r.ok for r in results),
                "pieces": info.num_pieces,
                "pieces_ok": info.num_pieces - len(bad_pieces),
                "first_bad_piece": bad_pieces[0] if bad_pieces else None,
                "first_bad_file": first_bad_file.path if first_bad_file else None,
                "total_size": info.total_length,
                "seconds": round(seconds, 3),
            }
        )
    else:
        _print_table(results, info, len(bad_pieces), seconds)

    if not bad_pieces and all(r.ok for r in results):
        return EXIT_OK
    files_bad = sum(not r.ok for r in results)
    tail = (
        f"{files_bad} of {len(results)} files not ok, "
        f"{len(bad_pieces)} of {info.num_pieces} pieces bad"
    )
    if bad_pieces:
        where = f" ({first_bad_file.path}: {first_bad_file.describe()})" if first_bad_file else ""
        raise JobFailed(f"verify failed: piece {bad_pieces[0]} is bad{where}; {tail}")
    # Only zero-length files can be bad without a bad piece.
    first = next(r for r in results if not r.ok)
    raise JobFailed(f"verify failed: {first.path}: {first.describe()}; {tail}")


def _first_bad_file(
    info: Info, results: list[FileResult], bad_pieces: list[int]
) -> FileResult | None:
    """The file to name for the first bad piece: of the files it touches, the first missing
    or unusable one, else the first that is not ok (its neighbours share the bad piece)."""
    if not bad_pieces:
        return None
    by_index = {r.index: r for r in results}
    touched = [by_index[i] for i in Layout.from_info(info).piece_files(bad_pieces[0])
               if i in by_index]  # fmt: skip
    absent = [r for r in touched if r.status in ("missing", "unusable")]
    bad = [r for r in touched if not r.ok]
    pick = absent or bad or touched
    return pick[0] if pick else None


def _plain_progress(info: Info) -> Callable[[int, bool], None]:
    done = 0
    last = time.monotonic()

    def progress(index: int, ok: bool) -> None:
        nonlocal done, last
        done += 1
        now = time.monotonic()
        if now - last >= PLAIN_STATUS_EVERY and done < info.num_pieces:
            last = now
            pct = 100 * done / info.num_pieces
            sys.stderr.write(
                f"verifying {safe_text(info.name)}: {pct:.0f}% "
                f"({done} of {info.num_pieces} pieces)\n"
            )
            sys.stderr.flush()

    return progress


def _print_table(results: list[FileResult], info: Info, bad: int, seconds: float) -> None:
    out = Console(highlight=False)
    table = Table(show_edge=False, header_style="bold")
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("status")
    for r in results:
        style = "green" if r.ok else ("yellow" if r.status == "incomplete" else "red")
        table.add_row(
            Text(safe_text(r.path)), f"{r.length:,}", Text(safe_text(r.describe())), style=style
        )
    out.print(table)
    ok_files = sum(r.ok for r in results)
    out.print(
        f"{ok_files} of {len(results)} files ok, {info.num_pieces - bad} of {info.num_pieces} "
        f"pieces verified in {seconds:.1f} s",
        markup=False,
    )
