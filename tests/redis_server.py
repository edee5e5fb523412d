"""A real ``redis-server`` (Debian package) for the tests: started on a free loopback port or
a unix socket, without persistence, stopped by PID. Missing binary: the test FAILS."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import require_binary
from tests.interop.peers import stop_process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` again keep its address."""

    def __init__(self, workdir: Path, *, unix: bool = False) -> None:
        self.binary = require_binary("redis-server")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = 0 if unix else _free_port()
        self.socket_path = workdir / "redis.sock" if unix else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = [self.binary, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        args += ["--port", str(self.port), "--dir", str(self.workdir)]
        if self.socket_path is not None:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return args

    def _connect(self) -> socket.socket:
        if self.socket_path is not None:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(str(self.socket_path))
            return s
        return socket.create_connection(("127.0.0.1", self.port), timeout=2)

    def command(self, *words: str) -> bytes:
        """One command over a fresh connection (inline protocol); the raw reply."""
        with self._connect() as s:
            s.sendall(" ".join(words).encode() + b"\r\n")
            return s.recv(65536)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                if self.command("PING").startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 10 s")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, grace=10)


@contextlib.contextmanager
def redis_server(workdir: Path, *, unix: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(workdir, unix=unix)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tracker_workers(parent: int) -> list[int]:
    """The worker processes of ``torrentkit tracker --workers N`` (its children, Linux)."""
    return [int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
