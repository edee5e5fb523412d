"""The Live loop on a real pseudo-terminal: keys switch the snapshot shown, q quits, and
the terminal's mode is restored on every way out."""

from __future__ import annotations

import io
import os
import termios
from collections.abc import Callable, Iterator

import pytest
import trio
import trio.testing
from rich.console import Console

from tests.ui.snapshots import many_peers, torrent
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.ui.live import cbreak, run_dashboard

NAMES = ["alpha.bin", "bravo.bin", "charlie.bin"]


@pytest.fixture
def pty() -> Iterator[tuple[int, int]]:
    """(master, slave): the slave is the dashboard's stdin, a real terminal."""
    master, slave = os.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return (
        Console(file=out, width=100, height=30, force_terminal=True, color_system="truecolor"),
        out,
    )


def snapshots() -> list[TorrentSnapshot]:
    return [torrent(many_peers(3 + k), name=name) for k, name in enumerate(NAMES)]


def canonical(fd: int) -> bool:
    return bool(termios.tcgetattr(fd)[3] & termios.ICANON)


async def wait_for(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await trio.sleep(0.02)


def shown(out: io.StringIO) -> str:
    """The name in the last frame drawn."""
    text = out.getvalue()
    last = max(text.rfind(n) for n in NAMES)
    return next(n for n in NAMES if text.startswith(n, last))


async def test_keys_switch_the_shown_snapshot_and_q_quits(pty: tuple[int, int]) -> None:
    master, slave = pty
    before = termios.tcgetattr(slave)
    con, out = console()
    quit_event = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_dashboard(
                    snapshots,
                    quit_event=quit_event,
                    titles=["seed0", "leech0", "leech1"],
                    selected=1,
                    console=con,
                    stdin_fd=slave,
                )
            )
            await wait_for(lambda: not canonical(slave))
            await wait_for(lambda: "bravo.bin" in out.getvalue())
            assert "2/3" in out.getvalue() and "q quit" in out.getvalue()

            os.write(master, b"\x1b[C")  # right
            await wait_for(lambda: shown(out) == "charlie.bin")
            os.write(master, b"\x1b[C")  # right wraps around
            await wait_for(lambda: shown(out) == "alpha.bin")
            os.write(master, b"3")
            await wait_for(lambda: shown(out) == "charlie.bin")
            os.write(master, b"\x1b[D")  # left
            await wait_for(lambda: shown(out) == "bravo.bin")
            os.write(master, b"q")
            await quit_event.wait()
    # run_dashboard returned by itself (the nursery closed), the terminal is as it was
    assert termios.tcgetattr(slave) == before
    assert canonical(slave)
    # alternate screen entered and left
    assert "\x1b[?1049h" in out.getvalue() and out.getvalue().rstrip().endswith("\x1b[?1049l")


async def test_terminal_mode_restored_on_cancellation(pty: tuple[int, int]) -> None:
    _, slave = pty
    before = termios.tcgetattr(slave)
    con, _ = console()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_dashboard(
                    snapshots, quit_event=trio.Event(), console=con, stdin_fd=slave
                )
            )
            await wait_for(lambda: not canonical(slave))
            nursery.cancel_scope.cancel()
    assert termios.tcgetattr(slave) == before


async def test_terminal_mode_restored_on_an_exception(pty: tuple[int, int]) -> None:
    _, slave = pty
    before = termios.tcgetattr(slave)
    con, _ = console()
    calls = 0

    def failing() -> list[TorrentSnapshot]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("boom")
        return snapshots()

    with trio.fail_after(20), pytest.raises(RuntimeError, match="boom"):
        await run_dashboard(failing, quit_event=trio.Event(), console=con, stdin_fd=slave)
    assert termios.tcgetattr(slave) == before


def test_cbreak_restores_the_mode(pty: tuple[int, int]) -> None:
    _, slave = pty
    before = termios.tcgetattr(slave)
    with pytest.raises(KeyError), cbreak(slave):
        assert not canonical(slave)
        assert not termios.tcgetattr(slave)[3] & termios.ECHO
        assert termios.tcgetattr(slave)[3] & termios.ISIG  # Ctrl-C still interrupts
        raise KeyError
    assert termios.tcgetattr(slave) == before


async def test_four_frames_a_second_and_no_keys_without_a_tty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    r, w = os.pipe()  # stdin that is not a terminal: keys are not read
    try:
        os.write(w, b"q")
        con, out = console()
        calls = 0

        def counting() -> list[TorrentSnapshot]:
            nonlocal calls
            calls += 1
            return snapshots()

        quit_event = trio.Event()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: run_dashboard(counting, quit_event=quit_event, console=con, stdin_fd=r)
                )
                await trio.sleep(10)
                assert not quit_event.is_set()  # the "q" in the pipe was not read
                quit_event.set()  # the caller can stop the display too
        assert 39 <= calls <= 42, calls
        assert "q quit" not in out.getvalue()  # no key hint when keys are not read
        assert os.read(r, 1) == b"q"
    finally:
        os.close(r)
        os.close(w)


async def test_nothing_to_show_yet(autojump_clock: trio.testing.MockClock) -> None:
    con, out = console()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_dashboard(lambda: [], quit_event=trio.Event(), console=con, stdin_fd=-1)
            )
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert "waiting for the first torrent" in out.getvalue()
