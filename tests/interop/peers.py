"""Start real reference peers (and our tracker) safely, for interop tests and tools.

Everything here stays on 127.0.0.1 with DHT, local peer discovery, UPnP, NAT-PMP, PEX and
uTP off (docs/interop.md), and everything started here is stopped here, by PID, when
its ``with`` block ends, even when the test fails. A missing binary *fails* the test
(:func:`tests.conftest.require_binary`), it never skips.

Context managers (plain ``with``; a trio test can use them too, and should do its blocking
waits through ``trio.to_thread.run_sync``):

- :func:`run_tracker` — ``torrentkit tracker`` as a subprocess on port 0; yields a
  :class:`TrackerProcess` (``announce_url``, ``port``, ``scrape()``, ``stats()``).
- :func:`libtorrent_session` — an ``lt.session`` bound to 127.0.0.1:0, no default plugins
  (no ut_pex / ut_metadata) and no default features; :func:`lt_add` adds a torrent as a
  seeder (``seed_mode``) or a leecher, with ``disable_dht | disable_lsd | disable_pex``;
  :func:`lt_wait_finished` / :func:`wait_until` wait with a bound.
- :func:`aria2c` — an aria2c process with every discovery switch off, its own empty config
  (``--no-conf``), and ``--stop-with-process`` on this process so it can never outlive it.
- :func:`transmission_cli` — a transmission-cli process with its own temporary config folder
  whose settings.json turns DHT, LPD, PEX, uTP, port forwarding and RPC off and binds
  127.0.0.1; stopped with SIGINT, its clean exit (SIGTERM kills it outright; neither
  sends a `stopped` announce that a test could wait for). Transmission 3.00 never dials
  127.x peers: on loopback it must be dialled.

Also: :func:`make_payload` (seeded random bytes), :func:`make_test_torrent` (our
``make_torrent`` with small pieces and one tracker), :func:`lt_info_hash` (libtorrent's v1
info-hash, the reference), :func:`lt_port`, :func:`stop_process`, :func:`read_line`.

Ports: libtorrent and our tracker bind port 0 and report the real port. aria2c and
transmission-cli cannot bind port 0, so :func:`free_port` asks the kernel for a free one
just before they start (a small race, acceptable on a test machine).

Example::

    with run_tracker() as tracker, libtorrent_session() as seeder_ses:
        data = make_payload(tmp_path / "seed" / "data.bin", 2 * MiB)
        torrent = make_test_torrent(data, tracker.announce_url, tmp_path / "data.torrent")
        lt_add(seeder_ses, torrent, data.parent, seed=True)
        with aria2c(torrent, tmp_path / "dl", port=free_port()) as proc:
            assert proc.wait(30) == 0
        assert (tmp_path / "dl" / "data.bin").read_bytes() == data.read_bytes()
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from tests.conftest import require_binary
from torrentkit import bencoding
from torrentkit.maketorrent import make_torrent

MiB = 1024 * 1024
LOOPBACK = "127.0.0.1"

#: libtorrent settings every test session starts from (docs/interop.md).
LT_SETTINGS: dict[str, Any] = {
    "listen_interfaces": f"{LOOPBACK}:0",
    "outgoing_interfaces": LOOPBACK,
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "allow_multiple_connections_per_ip": True,
    "stop_tracker_timeout": 1,
    "alert_mask": 0,
}


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (for peers that cannot bind 0)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(
    proc: subprocess.Popen[Any], *, sig: int = signal.SIGTERM, grace: float = 5.0
) -> int:
    """Stop a process we started: ``sig``, then SIGKILL after ``grace`` s; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    return proc.returncode


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The next stdout line of ``proc`` within ``timeout`` s (AssertionError otherwise)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line from pid {proc.pid} within {timeout} s (got {buf!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                raise AssertionError(f"pid {proc.pid} closed stdout (exit {proc.poll()}): {buf!r}")
            buf += chunk
    return buf.decode()


# ---------------------------------------------------------------------------------------------
# Our tracker, as a real process


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerProcess:
    proc: subprocess.Popen[bytes]
    first_line: str
    host: str
    port: int
    announce_url: str
    #: The UDP announce URL (BEP 15), when the tracker serves UDP.
    udp_url: str | None = None

    def scrape(self, info_hash: bytes) -> dict[bytes, int]:
        """BEP 48 counts for one torrent: ``{b"complete": .., b"incomplete": .., ...}``."""
        q = urllib.parse.quote_from_bytes(info_hash)
        with urllib.request.urlopen(
            f"http://{self.host}:{self.port}/scrape?info_hash={q}", timeout=5
        ) as resp:
            files = bencoding.decode(resp.read())[b"files"]
        counts: dict[bytes, int] = files.get(info_hash, {})
        return counts

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{self.host}:{self.port}/stats", timeout=5) as resp:
            stats: dict[str, Any] = json.load(resp)
            return stats


@contextlib.contextmanager
def run_tracker(*args: str, startup: float = 15.0) -> Iterator[TrackerProcess]:
    """``python -m torrentkit.cli.main tracker --bind 127.0.0.1 --port 0 ARGS``; stopped by
    PID (SIGTERM) on exit. Reads the first stdout line for the real port and URL."""
    cmd = [
        sys.executable,
        "-m",
        "torrentkit.cli.main",
        "tracker",
        "--bind",
        LOOPBACK,
        "--port",
        "0",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = read_line(proc, startup)
        # listening on HOST:PORT announce URL
        words = line.split()
        assert words[:2] == ["listening", "on"] and words[3] == "announce", line
        host, port = words[2].rsplit(":", 1)
        yield TrackerProcess(
            proc=proc,
            first_line=line,
            host=host,
            port=int(port),
            announce_url=words[4],
            udp_url=words[5] if len(words) > 5 else None,
        )
    finally:
        stop_process(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# ---------------------------------------------------------------------------------------------
# Payloads and torrents


def make_payload(path: Path, size: int, *, seed: int = 1) -> Path:
    """A file of ``size`` seeded-random bytes at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def make_test_torrent(
    payload: Path, announce_url: str, out: Path | None = None, *, piece_length: int = 64 * 1024
) -> Path:
    """A .torrent for ``payload`` (small pieces) announcing to ``announce_url``; written to
    ``out``, by default next to the payload as ``NAME.torrent``."""
    data = make_torrent(payload, trackers=[[announce_url]], piece_length=piece_length)
    target = out if out is not None else payload.parent / f"{payload.name}.torrent"
    target.write_bytes(data)
    return target


# ---------------------------------------------------------------------------------------------
# libtorrent


@contextlib.contextmanager
def libtorrent_session(**settings: Any) -> Iterator[Any]:
    """An ``lt.session`` on 127.0.0.1:0 with :data:`LT_SETTINGS` (+ ``settings``), no
    default plugins and no default features (flags=0). Shut down on exit."""
    # The bindings take a plain dict as the settings pack; their stubs do not say so.
    ses = lt.session({**LT_SETTINGS, **settings}, 0)  # type: ignore[call-overload]
    try:
        yield ses
    finally:
        ses.pause()
        del ses  # blocks until the session has shut down (stop_tracker_timeout bounds it)


def lt_port(ses: Any, timeout: float = 5.0) -> int:
    """The port a session listens on (waits for the listen socket)."""
    wait_until(lambda: ses.is_listening() and ses.listen_port() > 0, timeout, "lt listen")
    port: int = ses.listen_port()
    return port


def lt_add(ses: Any, torrent: Path, save_path: Path, *, seed: bool = False) -> Any:
    """Add ``torrent`` to ``ses``, started at once: ``seed=True`` trusts the data in
    ``save_path`` (``seed_mode``); otherwise a leecher. DHT, LSD and PEX are off for it."""
    save_path.mkdir(parents=True, exist_ok=True)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(str(torrent))
    atp.save_path = str(save_path)
    flags = lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
    flags |= lt.torrent_flags.disable_pex
    if seed:
        flags |= lt.torrent_flags.seed_mode
    atp.flags = flags  # not paused, not auto-managed: it starts (and announces) now
    return ses.add_torrent(atp)


def lt_info_hash(torrent: Path) -> bytes:
    """libtorrent's v1 info-hash of a .torrent (the reference for ours)."""
    digest: bytes = lt.torrent_info(str(torrent)).info_hashes().v1.to_bytes()
    return digest


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    """Poll ``check`` until true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def lt_wait_finished(handle: Any, timeout: float) -> None:
    """Wait until a libtorrent torrent has every piece (is_seeding); bounded."""

    def done() -> bool:
        st = handle.status()
        if st.errc.value():
            raise AssertionError(f"libtorrent torrent error: {st.errc.message()}")
        return bool(st.is_seeding)

    wait_until(done, timeout, "the libtorrent download to finish")


def wait_written(path: Path, expected: bytes, timeout: float = 15.0) -> None:
    """Wait until ``path`` holds exactly ``expected``. libtorrent reports a piece (and
    is_seeding) once it hashed it, which can be before its disk thread wrote the last blocks
    (CI caught zeros at a piece boundary right after is_seeding). On failure: the first
    differing offset, not a diff of the whole payload."""

    def same() -> bool:
        return path.exists() and path.read_bytes() == expected

    try:
        wait_until(same, timeout, f"{path} to hold the payload")
    except AssertionError:
        got = path.read_bytes() if path.exists() else b""
        at = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
        raise AssertionError(
            f"{path}: {len(got)} bytes, want {len(expected)}; first difference at {at}"
        ) from None


# ---------------------------------------------------------------------------------------------
# aria2c

ARIA2_OFF = (
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--disable-ipv6=true",
    "--enable-rpc=false",
)


@contextlib.contextmanager
def aria2c(
    torrent: Path,
    download_dir: Path,
    *,
    port: int,
    seed: bool = False,
    tracker_interval: int = 5,
    extra: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """aria2c on ``torrent``: a leecher that exits 0 once complete (``--seed-time=0``), or
    with ``seed=True`` a seeder that keeps seeding. Output goes to
    ``download_dir/../aria2c-PORT.log``. Stopped by PID on exit."""
    exe = require_binary("aria2c")
    download_dir.mkdir(parents=True, exist_ok=True)
    log = download_dir.parent / f"aria2c-{port}.log"
    cmd = [
        exe,
        "--no-conf=true",
        *ARIA2_OFF,
        f"--interface={LOOPBACK}",
        f"--listen-port={port}",
        f"--dir={download_dir}",
        "--check-integrity=true",
        "--file-allocation=none",
        f"--bt-tracker-interval={tracker_interval}",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--bt-save-metadata=false",
        "--auto-save-interval=0",
        f"--stop-with-process={os.getpid()}",
        *(["--seed-ratio=0.0"] if seed else ["--seed-time=0"]),
        *extra,
        str(torrent),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=download_dir)
        try:
            yield proc
        finally:
            stop_process(proc)


# ---------------------------------------------------------------------------------------------
# transmission-cli

TRANSMISSION_SETTINGS: dict[str, Any] = {
    "dht-enabled": False,
    "lpd-enabled": False,
    "pex-enabled": False,
    "utp-enabled": False,
    "port-forwarding-enabled": False,
    "rpc-enabled": False,
    "bind-address-ipv4": LOOPBACK,
    "bind-address-ipv6": "::1",
    "blocklist-enabled": False,
    "speed-limit-down-enabled": False,
    "speed-limit-up-enabled": False,
    "ratio-limit-enabled": True,
    "ratio-limit": 0,
    "message-level": 2,
}


@contextlib.contextmanager
def transmission_cli(
    torrent: Path,
    download_dir: Path,
    *,
    port: int,
    settings: dict[str, Any] | None = None,
    finish_script: Path | None = None,
    encryption: str = "t",
) -> Iterator[subprocess.Popen[bytes]]:
    """transmission-cli on ``torrent`` with a fresh config folder (see
    :data:`TRANSMISSION_SETTINGS`, overridable with ``settings``; ``encryption``: t, p or r,
    its ``-e`` flag). Output goes to
    ``download_dir/../transmission-PORT.log``. Stopped by PID on exit (SIGINT, its clean
    stop, then SIGKILL)."""
    exe = require_binary("transmission-cli")
    download_dir.mkdir(parents=True, exist_ok=True)
    log = download_dir.parent / f"transmission-{port}.log"
    with tempfile.TemporaryDirectory(prefix="tk-transmission-") as cfg:
        conf = {**TRANSMISSION_SETTINGS, "peer-port": port, **(settings or {})}
        Path(cfg, "settings.json").write_text(json.dumps(conf, indent=1))
        # -et tolerated (plaintext preferred), -ep preferred, -er required.
        cmd = [exe, "-g", cfg, "-w", str(download_dir), "-p", str(port), "-M", f"-e{encryption}"]
        if finish_script is not None:
            cmd += ["-f", str(finish_script)]
        cmd.append(str(torrent))
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            try:
                yield proc
            finally:
                # transmission-cli exits cleanly on SIGINT only; SIGTERM kills it.
                stop_process(proc, sig=signal.SIGINT)
