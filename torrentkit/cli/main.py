"""Entry point of the ``torrentkit`` command.

Each subcommand lives in its own module under :mod:`torrentkit.cli` with two functions:
``register(subparsers)`` adds its parser and ``run(args) -> int`` does the work. Errors map
to exit codes here, once, per docs/cli.md: bad input 2, run-time failure 1, Ctrl-C 130,
always one line on stderr and never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

from torrentkit import __version__
from torrentkit.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    JobFailed,
    UsageError,
    safe_text,
)
from torrentkit.errors import MetainfoError, TorrentkitError

#: Subcommand -> one-line help, in the order ``--help`` lists them. Each lives in the module
#: ``torrentkit.cli.<name with - as _>``, which is imported only when that command runs (or
#: its ``--help`` is asked for): the tracker's aiohttp or the demo's rich UI cost a
#: download nothing at start-up.
COMMANDS: dict[str, str] = {
    "create": "make a .torrent from a file or folder",
    "info": "show what a .torrent or magnet link holds",
    "verify": "check the data in DIR against a torrent's hashes",
    "download": "download torrents (and optionally keep seeding)",
    "seed": "seed a torrent from the data in DIR until stopped",
    "share": "make torrents of a folder's files, seed and publish them",
    "search": "find files by name (napster, gnutella, kazaa)",
    "get": "find holders of an info-hash by search, then download it",
    "demo": "run a local swarm and watch tit-for-tat",
    "tracker": "run a BitTorrent tracker (HTTP and UDP)",
    "napster-index": "run a central Napster-style file index",
    "node": "run a bare ring or overlay node (chord, gnutella, kazaa)",
    "dht": "run a bare mainline DHT node; get-peers, put, get",
    "chord-example": "the lecture's Chord example: finger tables, items and a query path",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, exit 2 (argparse's own error prints usage first).
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the full arguments of ``command`` only (the others listed by name;
    None: all of them, e.g. for documentation)."""
    parser = _Parser(prog="torrentkit", description="BitTorrent client, tracker and P2P lab")
    parser.add_argument("--version", action="version", version=f"torrentkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, help_text in COMMANDS.items():
        if command is None or name == command:
            module = importlib.import_module(f"torrentkit.cli.{name.replace('-', '_')}")
            module.register(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None, *, startup: bool = False) -> int:
    """Run one command; its exit code. ``startup``: this is the process's program (see
    :func:`run`), so start-up may tune the garbage collector."""
    words = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(words)
    if startup:
        # Importing a command creates many long-lived objects (modules, classes, dataclass
        # methods); the cyclic collector would scan them over and over as they appear (~15%
        # of the start-up CPU). Collect nothing while importing, then move what was made to
        # the permanent generation, which later collections skip.
        gc.disable()
    try:
        parser = build_parser(command or "")
    finally:
        if startup:
            gc.enable()
            gc.freeze()
    args = parser.parse_args(words)
    try:
        code: int = args.func(args)
    except BaseException as exc:  # mapped to an exit code below, or re-raised
        inner = _unwrap(exc)
        if isinstance(inner, UsageError | MetainfoError):
            _fail(str(inner))
            return EXIT_USAGE
        if isinstance(inner, TorrentkitError | JobFailed):
            _fail(str(inner))
            return EXIT_FAILED
        if isinstance(inner, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        if isinstance(inner, BrokenPipeError):
            return EXIT_FAILED
        if isinstance(inner, OSError):  # a file or socket failed while the job ran
            where = f"{inner.filename}: " if inner.filename else ""
            _fail(f"{where}{inner.strerror or inner}")
            return EXIT_FAILED
        raise
    return code


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups, as trio nurseries raise them."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _fail(message: str) -> None:
    line = safe_text(message).replace("\n", " ")
    sys.stderr.write(f"torrentkit: error: {line}\n")


def run() -> None:
    sys.exit(main(startup=True))


if __name__ == "__main__":
    run()
