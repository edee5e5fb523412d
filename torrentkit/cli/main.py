"""Entry point of the ``torrentkit`` command.

Each subcommand lives in its own module under :mod:`torrentkit.cli` with two functions:
``register(subparsers)`` adds its parser and ``run(args) -> int`` does the work. Errors map
to exit codes here, once, per ../shared/CLI.md: bad input 2, run-time failure 1, Ctrl-C 130,
always one line on stderr and never a traceback.
"""

from __future__ import annotations

import argparse
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

# Subcommand modules, in the order `--help` lists them.
COMMANDS = (
    "create",
    "info",
    "verify",
    "download",
    "seed",
    "share",
    "search",
    "get",
    "demo",
    "tracker",
    "napster_index",
    "node",
    "chord_example",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, exit 2 (argparse's own error prints usage first).
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="torrentkit", description="BitTorrent client, tracker and P2P lab")
    parser.add_argument("--version", action="version", version=f"torrentkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"torrentkit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
    sys.exit(main())


if __name__ == "__main__":
    run()
