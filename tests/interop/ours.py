"""Run our own client (``torrentkit download`` / ``torrentkit seed``) as a real process, for
interop tests against real clients.

Both commands run with ``--json`` and ``--bind 127.0.0.1`` on port 0, their resume state in a
folder the test gives (never ``~/.local/state``). stdout (one JSON event a line) and stderr go
to files next to the data, so a chatty process can never block on a full pipe and a failing
test can show what happened. Whatever is started here is stopped here, by PID (SIGTERM, our
clean stop), when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.interop.peers import LOOPBACK, stop_process

TK = [sys.executable, "-m", "torrentkit.cli.main"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OurPeer:
    """One running ``torrentkit`` process and where its output goes."""

    proc: subprocess.Popen[bytes]
    name: str
    stdout: Path
    stderr: Path
    port: int

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        """Every complete JSON event written so far."""
        text = self.stdout.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def has_event(self, kind: str) -> bool:
        return any(e["event"] == kind for e in self.events())

    def summary(self) -> dict[str, Any]:
        """The closing ``summary`` event's only torrent (after the process ended)."""
        found = [e for e in self.events() if e["event"] == "summary"]
        assert found, f"{self.name}: no summary event\n{self.logs()}"
        torrent: dict[str, Any] = found[-1]["torrents"][0]
        return torrent

    def wait(self, timeout: float) -> int:
        """The exit code, within ``timeout`` s (AssertionError naming the process otherwise)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout} s\n{self.logs()}"
            ) from None

    def logs(self, tail: int = 40) -> str:
        """The last lines of stderr and stdout, for failure messages."""
        out = []
        for path in (self.stderr, self.stdout):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(
                f"--- {self.name} {path.name} ({len(lines)} last lines)\n" + "\n".join(lines)
            )
        return "\n".join(out)


def _first_line(proc: subprocess.Popen[bytes], path: Path, name: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace")
        if "\n" in text:
            return text.split("\n", 1)[0]
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: no listening line within {timeout} s")
        time.sleep(0.05)


@contextlib.contextmanager
def run_ours(
    command: str,
    args: Sequence[str],
    *,
    logs: Path,
    name: str,
    state_dir: Path,
    startup: float = 15.0,
) -> Iterator[OurPeer]:
    """``torrentkit COMMAND ARGS --bind 127.0.0.1 --json --state-dir STATE``, and ``--no-dht``
    unless ARGS name a ``--dht-bootstrap`` (on loopback); yields once it listens. Output goes
    to ``logs/NAME.out`` and ``logs/NAME.err``."""
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / f"{name}.out", logs / f"{name}.err"
    cmd = [*TK, command, *args, "--bind", LOOPBACK, "--json", "--state-dir", str(state_dir)]
    if command in ("download", "seed") and "--dht-bootstrap" not in args:
        cmd.append("--no-dht")
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        try:
            line = json.loads(_first_line(proc, stdout, name, startup))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stderr.read_text(errors='replace')}") from None
        assert line["event"] == "listening" and line["host"] == LOOPBACK, line
        yield OurPeer(proc=proc, name=name, stdout=stdout, stderr=stderr, port=int(line["port"]))
    finally:
        stop_process(proc)


def our_download(
    torrent: Path,
    out_dir: Path,
    *,
    logs: Path,
    name: str = "ours-leech",
    state_dir: Path,
    peers: Sequence[str] = (),
    no_tracker: bool = False,
    timeout: float = 60.0,
    extra: Sequence[str] = (),
) -> contextlib.AbstractContextManager[OurPeer]:
    """``torrentkit download TORRENT -o OUT_DIR --timeout T [--peer P]... [--no-tracker]``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [str(torrent), "-o", str(out_dir), "--timeout", f"{timeout:g}"]
    for peer in peers:
        args += ["--peer", peer]
    if no_tracker:
        args.append("--no-tracker")
    return run_ours("download", [*args, *extra], logs=logs, name=name, state_dir=state_dir)


def our_seed(
    torrent: Path,
    data_dir: Path,
    *,
    logs: Path,
    name: str = "ours-seed",
    state_dir: Path,
    extra: Sequence[str] = (),
) -> contextlib.AbstractContextManager[OurPeer]:
    """``torrentkit seed TORRENT DATA_DIR``: serves until the ``with`` block ends."""
    return run_ours(
        "seed", [str(torrent), str(data_dir), *extra], logs=logs, name=name, state_dir=state_dir
    )
