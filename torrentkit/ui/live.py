"""The live loop: a rich ``Live`` display redrawn ~4 times a second from snapshots, with
keys to switch the torrent/node shown and to quit (issue 5).

The loop only *reads*: it calls ``get_snapshots()`` (which the caller makes from
``Torrent.snapshot(now)``) and renders; it never drives the engine.

Flicker: one renderable per frame, drawn on the terminal's alternate screen (rich writes
"cursor home" and the new lines over the old ones, never a clear), with rich's own refresh
thread off (``auto_refresh=False``): frames are drawn from this trio task only.

Keys: stdin is put in cbreak mode (no echo, no line buffering; Ctrl-C still sends SIGINT)
while the display runs, read through trio's fd waiting, and its mode is restored on every
way out (return, exception, cancellation). When stdin is not a terminal, keys are not read.
"""

from __future__ import annotations

import enum
import os
import sys
import termios
import tty
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import trio
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.ui.dashboard import render

__all__ = ["Key", "KeyParser", "KeyPress", "apply_key", "cbreak", "frame", "run_dashboard"]

REFRESH_PER_SECOND = 4.0


class Key(enum.Enum):
    LEFT = "left"
    RIGHT = "right"
    QUIT = "quit"


#: a key press: a Key, or an int for a digit key 1-9 (0-based: "1" -> 0)
KeyPress = Key | int

_SEQUENCES: dict[bytes, Key] = {
    b"\x1b[D": Key.LEFT,
    b"\x1b[C": Key.RIGHT,
    b"\x1bOD": Key.LEFT,  # application cursor mode
    b"\x1bOC": Key.RIGHT,
}
_SINGLE: dict[int, Key] = {
    ord("q"): Key.QUIT,
    ord("Q"): Key.QUIT,
    ord("h"): Key.LEFT,
    ord("l"): Key.RIGHT,
    ord("\t"): Key.RIGHT,
}


class KeyParser:
    """Bytes from a terminal in, key presses out. Sans-IO: an escape sequence split across
    reads is completed by the next ``feed``; unknown sequences and keys are ignored."""

    MAX_SEQUENCE = 16  # longer unfinished escape sequences are dropped, not buffered

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[KeyPress]:
        buf = self._pending + data
        self._pending = b""
        out: list[KeyPress] = []
        i = 0
        while i < len(buf):
            b = buf[i]
            if b == 0x1B:
                end = _sequence_end(buf, i)
                if end is None:  # unfinished: wait for the rest
                    if len(buf) - i <= self.MAX_SEQUENCE:
                        self._pending = buf[i:]
                    break
                key = _SEQUENCES.get(buf[i:end])
                if key is not None:
                    out.append(key)
                i = end
                continue
            if 0x31 <= b <= 0x39:  # "1".."9"
                out.append(b - 0x31)
            elif b in _SINGLE:
                out.append(_SINGLE[b])
            i += 1
        return out


def _sequence_end(buf: bytes, i: int) -> int | None:
    """Where the escape sequence starting at ``buf[i]`` ends, None if ``buf`` stops first.
    CSI (``ESC [ ... final``) and SS3 (``ESC O x``) are whole sequences; ESC before anything
    else is a lone ESC (1 byte)."""
    if i + 1 >= len(buf):
        return None
    intro = buf[i + 1]
    if intro == 0x5B:  # "["
        for j in range(i + 2, len(buf)):
            if 0x40 <= buf[j] <= 0x7E:
                return j + 1
        return None
    if intro == 0x4F:  # "O"
        return i + 3 if i + 2 < len(buf) else None
    return i + 1


def apply_key(selected: int, count: int, key: KeyPress) -> int:
    """The index shown after ``key``: left/right wrap around, digits beyond ``count`` are
    ignored."""
    if count <= 0:
        return 0
    if key is Key.LEFT:
        return (selected - 1) % count
    if key is Key.RIGHT:
        return (selected + 1) % count
    if isinstance(key, int) and 0 <= key < count:
        return key
    return min(selected, count - 1)


@contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """``fd`` (a terminal) in cbreak mode for the block; its mode restored on every exit."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def _hint(count: int) -> str:
    return "←/→ 1-9 switch · q quit" if count > 1 else "q quit"


def frame(
    snaps: Sequence[TorrentSnapshot],
    selected: int,
    *,
    width: int,
    height: int,
    titles: Sequence[str] | None = None,
    keys: bool = True,
) -> RenderableType:
    """The frame ``run_dashboard`` draws: snapshot ``selected`` of ``snaps``."""
    if not snaps:
        return Text("waiting for the first torrent…", style="dim")
    selected = min(max(0, selected), len(snaps) - 1)
    title = titles[selected] if titles is not None and selected < len(titles) else None
    return render(
        snaps[selected],
        width=width,
        height=height,
        title=title,
        selected=selected,
        count=len(snaps),
        hint=_hint(len(snaps)) if keys else None,
    )


async def run_dashboard(
    get_snapshots: Callable[[], Sequence[TorrentSnapshot]],
    *,
    quit_event: trio.Event,
    titles: Sequence[str] | None = None,
    selected: int = 0,
    console: Console | None = None,
    stdin_fd: int | None = None,
    screen: bool = True,
    refresh_per_second: float = REFRESH_PER_SECOND,
) -> None:
    """Show the dashboard until ``quit_event`` is set or the caller cancels. Pressing "q"
    sets ``quit_event`` and returns; the caller sees the event and decides what stopping
    means (the display itself never touches the engine). When the caller sets
    ``quit_event``, the display stops within one frame.

    ``get_snapshots()`` returns the current snapshots, one per torrent or node (``titles``
    names them, same order). It is called once per frame, and only ``len()`` and the
    selected item are used, so a lazy Sequence can skip building snapshots not shown.
    ``selected`` is the one shown first; left/right and 1-9 switch. Keys are read from
    ``stdin_fd`` (default: stdin) only when it is a terminal. ``console`` draws somewhere
    other than stdout (tests). ``screen=False`` draws in place in the normal screen
    instead of the alternate one (the last frame then stays visible after exit).

    One task, no nursery: an exception from ``get_snapshots`` comes out as itself, after
    the terminal's mode and screen are restored.
    """
    console = console if console is not None else Console()
    fd = stdin_fd if stdin_fd is not None else _stdin_fd()
    reader = _KeyReader(fd) if fd is not None and os.isatty(fd) else None
    keys_hint = reader is not None
    period = 1.0 / refresh_per_second
    count = 0

    def draw(live: Live) -> None:
        nonlocal count, selected
        snaps = get_snapshots()
        count = len(snaps)
        selected = min(max(0, selected), max(0, count - 1))
        width, height = console.size
        live.update(
            frame(snaps, selected, width=width, height=height, titles=titles, keys=keys_hint),
            refresh=True,
        )

    with (
        Live(console=console, screen=screen, auto_refresh=False, transient=False) as live,
        cbreak(reader.fd) if reader is not None else _nothing(),
    ):
        next_frame = trio.current_time()
        while not quit_event.is_set():
            draw(live)
            next_frame += period
            now = trio.current_time()
            if next_frame < now:  # fell behind (suspended, slow terminal): no catch-up burst
                next_frame = now + period
            # Until the next frame: wait for keys (a key that changes the view redraws at once).
            while not quit_event.is_set() and trio.current_time() < next_frame:
                keys: list[KeyPress] | None = None
                with trio.move_on_at(next_frame):
                    if reader is not None and not reader.closed:
                        keys = await reader.read()
                    else:
                        await quit_event.wait()
                if not keys:
                    continue
                if Key.QUIT in keys:
                    quit_event.set()
                    return
                for key in keys:
                    selected = apply_key(selected, count, key)
                break


class _KeyReader:
    """Key presses from a terminal fd, read as they arrive (trio waits on the fd)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False
        self._parser = KeyParser()

    async def read(self) -> list[KeyPress]:
        await trio.lowlevel.wait_readable(self.fd)
        try:
            data = os.read(self.fd, 64)
        except BlockingIOError:
            return []
        except OSError:  # the terminal went away (EIO): no more keys
            data = b""
        if not data:
            self.closed = True  # end of input: the display goes on without keys
            return []
        return self._parser.feed(data)


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None


@contextmanager
def _nothing() -> Iterator[None]:
    yield
