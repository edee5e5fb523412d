"""The ``--json`` stream's writer (:class:`torrentkit.cli.swarm_output.JsonLines`): lines in
order, gathered into few writes, and a reader that does not read holds up only the writer
thread, never the event loop."""

from __future__ import annotations

import io
import json
import threading

import pytest
import trio

from torrentkit.cli import swarm_output
from torrentkit.cli.swarm_output import JsonLines


class RecordingStream(io.StringIO):
    """A stdout that counts its writes and, while ``gate`` is clear, blocks in them (as a
    pipe whose reader stopped reading does)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()

    def write(self, text: str) -> int:
        self.writes += 1
        if not self.gate.is_set():
            self.blocked.set()
            self.gate.wait(10)
        return super().write(text)


def lines(stream: RecordingStream) -> list[int]:
    return [json.loads(x)["n"] for x in stream.getvalue().splitlines()]


async def test_lines_keep_their_order_and_share_writes() -> None:
    out = RecordingStream()
    writer = JsonLines(out)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for n in range(200):
            writer.emit({"n": n})
            if n % 50 == 49:
                await trio.sleep(swarm_output.JSON_GATHER * 3)
        nursery.cancel_scope.cancel()
    writer.close()
    assert lines(out) == list(range(200))
    assert 1 <= out.writes <= 8  # a write per gathering, not per line


async def test_a_reader_that_stops_reading_does_not_stall_the_loop() -> None:
    out = RecordingStream()
    writer = JsonLines(out)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        out.gate.clear()
        writer.emit({"n": 0})
        await trio.to_thread.run_sync(out.blocked.wait, 10)  # the writer thread is stuck
        # The loop goes on: events are queued, timers fire.
        for n in range(1, 100):
            writer.emit({"n": n})
            await trio.sleep(0.001)
        assert lines(out) == []
        out.gate.set()
        await trio.sleep(swarm_output.JSON_GATHER * 4)
        nursery.cancel_scope.cancel()
    writer.close()
    assert lines(out) == list(range(100))


async def test_without_its_task_or_past_the_backlog_lines_are_written_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = RecordingStream()
    writer = JsonLines(out)
    writer.emit({"n": 0})  # no task running: written now
    assert lines(out) == [0]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        monkeypatch.setattr(swarm_output, "JSON_BACKLOG", 30)
        writer.emit({"n": 1, "pad": "x" * 40})  # past the backlog: written now
        assert lines(out) == [0, 1]
        monkeypatch.undo()
        writer.emit({"n": 2})  # queued
        assert lines(out) == [0, 1]
        nursery.cancel_scope.cancel()
    writer.close()
    writer.emit({"n": 3})  # after close: written now
    assert lines(out) == [0, 1, 2, 3]
