"""Loopback download speed of our leecher against libtorrent's, and idle-peer memory.

A tool, not a test (issue 4, item 11). Everything stays on 127.0.0.1 with DHT, LSD, UPnP,
NAT-PMP, uTP and PEX off (docs/interop.md).

Speed. One libtorrent seeder (Python bindings, in this process: its work runs in
libtorrent's own threads) serves a generated single-file torrent (default 1 GiB, 1 MiB
pieces). Two leechers download it in turn from that seeder, each a fresh process:

  - ours: the real CLI, ``python -m torrentkit.cli.main download X.torrent -o DIR --bind
    127.0.0.1 --peer 127.0.0.1:PORT --no-tracker``;
  - libtorrent: this script run again as ``_lt_leech`` (its own session, same settings).

``--runs N`` rounds; each round runs both, alternating which goes first, so neither always
meets the disk writeback of the other's copy. For each download: MB/s (10^6 bytes per second)
over wall time from process start to exit (start-up and shutdown included), and CPU seconds
(user + sys of the leecher process and all its threads, from ``os.wait4``). Each copy is
checked (size and SHA-1 of the whole file) and deleted; the page cache is synced before
each run. The seeder's CPU seconds during each download are printed too (the machine's
cores are shared by both sides). At the end: the median of each side and the median of the
per-round ratios ours / libtorrent (target >= 0.7).

Children run with their bytecode cached in the temporary folder (PYTHONPYCACHEPREFIX, even
where PYTHONDONTWRITEBYTECODE is set), after one untimed ``--help`` run has filled it, as
an installed package would have its .pyc files: start-up is then imports, not compiling.

Encryption (MSE/PE) is off by default on every side: both libtorrent sessions disable it and
ours runs with ``--encryption disable``, so the figures are the plain peer wire's. With
``--encryption require`` every side talks RC4 only: the seeder and libtorrent's leecher
with ``pe_forced`` both ways and ``allowed_enc_level = pe_rc4``, ours with ``--encryption
require`` -- the cost of encryption, ours against libtorrent's, from the same seeder.

The seeder checks its data in full before the first run rather than using ``seed_mode``:
seed_mode hashes each piece on its first request, which would slow only the first run.
libtorrent dials peers on its session tick (``tick_interval``, 500 ms by default), so its
leecher's first byte comes about half a second after it starts; ``--lt-tick-ms 100``
shortens that for a stricter reference.

Seeding (``--seeding``, instead of the speed runs). Our seeder (``torrentkit seed``, one
process for the whole invocation, its data checked first) and libtorrent's (in this process)
serve the same file; per round a fresh libtorrent leecher (``_lt_leech``) downloads from
each in turn, alternating which goes first. Each seeder's CPU during each download (ours:
user + sys from /proc/PID/stat, every thread; libtorrent's: this process's CPU clock) and
the median of the per-round ratios ours / libtorrent (issue 15, item 3: target <= 1.2).

Memory. ``torrentkit seed`` serves the same torrent; once it has checked its data, its
VmRSS is read from /proc (baseline) and its peak-RSS counter reset (/proc/PID/clear_refs).
Then this process opens ``--idle-peers`` (default 200) TCP connections to it, each
completing a BitTorrent handshake (extension bit set) and sending an empty bitfield, reads
the seeder's handshake and bitfield, and stays idle. A few seconds later: VmHWM (the peak)
and VmRSS. Per peer: (peak - baseline) / peers (target <= 64 KiB).

    .venv/bin/python tools/bench_loopback.py [--size 1G] [--runs 3] [--encryption require] [--json]
    .venv/bin/python tools/bench_loopback.py --seeding --idle-peers 0 [--size 1G] [--runs 3]

Only processes this script started are stopped (by their PID); temporary folders are
removed on the way out, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
PIECE_LENGTH = 1024 * 1024
CHUNK = 16 * 1024 * 1024
REPO = Path(__file__).resolve().parent.parent

#: libtorrent settings for both sessions (docs/interop.md); encryption is turned off on top.
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


# --------------------------------------------------------------------------- libtorrent


def lt_session(tick_ms: int | None = None, encryption: str = "disable") -> Any:
    import libtorrent as lt

    settings = dict(LT_SETTINGS)
    if tick_ms is not None:
        settings["tick_interval"] = tick_ms
    if encryption == "require":  # RC4 only, both ways
        settings["out_enc_policy"] = int(lt.enc_policy.pe_forced)
        settings["in_enc_policy"] = int(lt.enc_policy.pe_forced)
        settings["allowed_enc_level"] = int(lt.enc_level.pe_rc4)
    else:
        settings["out_enc_policy"] = int(lt.enc_policy.pe_disabled)
        settings["in_enc_policy"] = int(lt.enc_policy.pe_disabled)
    # flags=0: no default plugins (ut_pex, ut_metadata, smart_ban) and no default features.
    # (The bindings take a plain dict as the settings pack; their stubs do not say so.)
    return lt.session(settings, 0)  # type: ignore[call-overload]


def lt_add(ses: Any, torrent: Path, save_path: Path) -> Any:
    import libtorrent as lt

    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(str(torrent))
    atp.save_path = str(save_path)
    atp.flags = (
        lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd | lt.torrent_flags.disable_pex
    )
    return ses.add_torrent(atp)


def wait_until_seeding(handle: Any, timeout: float, poll: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = handle.status()
        if st.errc.value():
            raise RuntimeError(f"libtorrent: {st.errc.message()}")
        if st.is_seeding:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"libtorrent: not complete after {timeout:g} s")
        time.sleep(poll)


def lt_leech_main(argv: list[str]) -> int:
    """``_lt_leech TORRENT SAVE_DIR PORT TIMEOUT ENCRYPTION [TICK_MS]``: download from
    127.0.0.1:PORT, exit 0 once every piece is verified (1 on failure)."""
    torrent, save, port, timeout = Path(argv[0]), Path(argv[1]), int(argv[2]), float(argv[3])
    ses = lt_session(int(argv[5]) if len(argv) > 5 else None, argv[4])
    try:
        handle = lt_add(ses, torrent, save)
        handle.connect_peer((LOOPBACK, port))
        wait_until_seeding(handle, timeout, 0.005)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        ses.pause()
        del ses  # waits for the session (and its disk threads) to shut down
    return 0


class LtSeeder:
    """A libtorrent session in this process seeding ``torrent`` from ``save_path``."""

    def __init__(self, torrent: Path, save_path: Path, encryption: str = "disable") -> None:
        self.ses = lt_session(encryption=encryption)
        self.handle = lt_add(self.ses, torrent, save_path)
        wait_until_seeding(self.handle, 600, 0.05)  # a full check of the data
        deadline = time.monotonic() + 10
        while not (self.ses.is_listening() and self.ses.listen_port() > 0):
            if time.monotonic() > deadline:
                raise RuntimeError("libtorrent seeder: no listen socket")
            time.sleep(0.05)
        self.port: int = self.ses.listen_port()

    def close(self) -> None:
        self.ses.pause()
        del self.ses


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    client: str
    round: int
    seconds: float
    mb_per_s: float
    cpu_seconds: float
    user: float
    sys: float
    seeder_cpu_seconds: float


class Children:
    """Processes this script started; ``stop_all`` ends the ones still running, by PID.
    They run with ``env`` (see :func:`child_env`)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = env

    def start(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, env=self.env, **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def wait_rusage(self, proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any]:
        """Wait for ``proc`` (killed after ``timeout`` s): its exit code and rusage."""
        timer = threading.Timer(timeout, proc.kill)  # the PID we started, nothing else
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, usage


def timed_run(
    children: Children,
    client: str,
    round_no: int,
    args: list[str],
    log: Path,
    size: int,
    timeout: float,
    settle: float = 0.0,
    seeder_clock: Callable[[], float] = time.process_time,
) -> Run:
    """Run one leecher to completion. ``seeder_clock``: the seeder's CPU seconds so far
    (default: this process's, where libtorrent's seeder runs)."""
    os.sync()  # start each run without the last copy's dirty pages being written back
    if settle:
        time.sleep(settle)  # freed memory settles: no run starts warmer (--settle)
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        c0 = seeder_clock()
        proc = children.start(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        code, usage = children.wait_rusage(proc, timeout)
        took = time.perf_counter() - t0
        seeder_cpu = seeder_clock() - c0
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{client} leecher exited {code} (round {round_no}):\n{tail}")
    return Run(
        client=client,
        round=round_no,
        seconds=round(took, 3),
        mb_per_s=round(size / took / 1e6, 1),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2),
        user=round(usage.ru_utime, 2),
        sys=round(usage.ru_stime, 2),
        seeder_cpu_seconds=round(seeder_cpu, 2),
    )


def file_sha1(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha1").hexdigest()


def check_copy(path: Path, size: int, digest: str) -> None:
    if not path.is_file() or path.stat().st_size != size:
        raise RuntimeError(f"{path}: missing or wrong size")
    if file_sha1(path) != digest:
        raise RuntimeError(f"{path}: content differs from the original")


def child_env(work: Path) -> dict[str, str]:
    """The environment for every child: bytecode cached under ``work`` (not in the repo),
    even where PYTHONDONTWRITEBYTECODE is set, so that after :func:`warm_up` no run spends
    its start compiling our sources: an installed package has its .pyc files too."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


#: Imports every module of the package (and so what they import), filling the bytecode
#: cache. ``torrentkit --help`` no longer does: commands are imported only when they run, so
#: a warm-up by ``--help`` left a measured download compiling ~270 modules (~0.2 CPU-s).
WARM_UP_CODE = """
import importlib, pkgutil, torrentkit
for m in pkgutil.walk_packages(torrentkit.__path__, "torrentkit."):
    importlib.import_module(m.name)
import httpx, httpcore._async, httpcore._backends.trio  # made on a client's first request
"""


def warm_up(children: Children) -> None:
    """Import every module once (untimed), filling the bytecode cache (WARM_UP_CODE)."""
    proc = children.start(
        [sys.executable, "-c", WARM_UP_CODE],
        stdout=subprocess.DEVNULL,
        cwd=REPO,
    )
    if proc.wait(300) != 0:
        raise SystemExit("bench: the warm-up import failed")


# --------------------------------------------------------------------------- idle peers


def start_event_reader(proc: subprocess.Popen[bytes]) -> queue.Queue[dict[str, Any] | None]:
    """Read ``proc``'s JSON event lines in a thread (so its pipe never fills); None at EOF."""
    out: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            with suppress(ValueError):
                out.put(json.loads(raw))
        out.put(None)

    threading.Thread(target=read, daemon=True).start()
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + sys CPU seconds of ``pid`` so far, every thread (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_message(sock: socket.socket, buf: bytearray) -> int:
    """Read one peer wire message from ``sock`` (after the handshake); its id (-1: keep-alive)."""
    while True:
        if len(buf) >= 4:
            length = int.from_bytes(buf[:4], "big")
            if len(buf) >= 4 + length:
                msg_id = buf[4] if length else -1
                del buf[: 4 + length]
                return msg_id
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("the seeder closed an idle connection")
        buf += data


def open_idle_peer(addr: tuple[str, int], info_hash: bytes, num_pieces: int) -> socket.socket:
    """Connect, exchange handshakes and bitfields, return the (idle) socket."""
    sock = socket.create_connection(addr, timeout=10)
    try:
        reserved = bytes([0, 0, 0, 0, 0, 0x10, 0, 0])  # BEP 10 bit, like most clients
        peer_id = b"-BL0001-" + random.randbytes(12)
        bitfield = bytes((num_pieces + 7) // 8)
        sock.sendall(
            b"\x13BitTorrent protocol"
            + reserved
            + info_hash
            + peer_id
            + (1 + len(bitfield)).to_bytes(4, "big")
            + b"\x05"
            + bitfield
        )
        buf = bytearray()
        while len(buf) < 68:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the seeder refused the handshake")
            buf += data
        if buf[28:48] != info_hash:
            raise RuntimeError("the seeder answered with another info-hash")
        del buf[:68]
        while read_message(sock, buf) != 5:  # its extended handshake, then the bitfield
            pass
    except BaseException:
        sock.close()
        raise
    return sock


def start_our_seeder(
    children: Children, torrent: Path, data_dir: Path, state: Path, extra: list[str]
) -> tuple[subprocess.Popen[bytes], int]:
    """``torrentkit seed`` on 127.0.0.1 (no tracker, no DHT); returns once its data is
    checked: the process and its port. Its JSON events are read (and dropped) in a thread."""
    proc = children.start(
        [
            sys.executable,
            "-m",
            "torrentkit.cli.main",
            "seed",
            str(torrent),
            str(data_dir),
            "--bind",
            LOOPBACK,
            "--no-tracker",
            "--no-dht",
            "--json",
            "--state-dir",
            str(state),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    events = start_event_reader(proc)
    port = None
    deadline = time.monotonic() + 120
    while True:  # its JSON events: listening, ..., checked (its data is verified)
        try:
            event = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError("seed: not ready after 120 s") from None
        if event is None:
            raise RuntimeError(f"seed exited {proc.wait()} before it was ready")
        if event.get("event") == "listening":
            port = int(event["port"])
        elif event.get("event") == "checked" and port is not None:
            return proc, port


def idle_peer_memory(
    children: Children,
    torrent: Path,
    data_dir: Path,
    work: Path,
    peers: int,
    info_hash: bytes,
    num_pieces: int,
) -> dict[str, Any]:
    proc, port = start_our_seeder(
        children, torrent, data_dir, work / "seed-state", ["--max-peers", str(peers + 50)]
    )
    time.sleep(1.0)
    base = proc_status(proc.pid)["VmRSS"]
    reset = True
    try:
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # reset VmHWM to VmRSS
    except OSError:
        reset = False
    socks: list[socket.socket] = []
    peak_sampled = base
    try:
        for _ in range(peers):
            socks.append(open_idle_peer((LOOPBACK, port), info_hash, num_pieces))
            if not reset:
                peak_sampled = max(peak_sampled, proc_status(proc.pid)["VmRSS"])
        time.sleep(3.0)  # a rechoke and a ticker round or two with everyone connected
        after = proc_status(proc.pid)
        alive = sum(1 for s in socks if _still_open(s))
    finally:
        for s in socks:
            s.close()
        children.stop_all()
    peak = after["VmHWM"] if reset else max(peak_sampled, after["VmRSS"])
    return {
        "idle_peers": peers,
        "still_connected": alive,
        "rss_baseline_kib": base // 1024,
        "rss_after_kib": after["VmRSS"] // 1024,
        "rss_peak_kib": peak // 1024,
        "kib_per_peer": round((peak - base) / peers / 1024, 1),
    }


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(65536, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read, not closed
    except OSError:
        return False
    finally:
        sock.setblocking(True)


# --------------------------------------------------------------------------- main


def generate(path: Path, size: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as fh:
        left = size
        while left:
            step = min(CHUNK, left)
            fh.write(rng.randbytes(step))
            left -= step


@contextmanager
def workspace(parent: str | None, keep: bool, prefix: str = "bench-loopback-") -> Iterator[Path]:
    """A temporary folder under ``parent``, removed afterwards unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield work
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    from torrentkit.cli.common import UsageError, parse_size

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1G", help="payload size (default 1G)")
    p.add_argument("--runs", type=int, default=3, help="rounds (each: ours + libtorrent)")
    p.add_argument("--idle-peers", type=int, default=200, help="0 skips the memory figure")
    p.add_argument("--no-speed", action="store_true", help="only the memory figure")
    p.add_argument("--timeout", type=float, default=300, help="per download, seconds")
    p.add_argument("--dir", help="where to make the temporary folder")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each download: on a VM that hands freed memory to its "
        "host, the download run right after the last copy was deleted gets warm page-cache "
        "memory (tools/vm_first_touch.py); with a wait both start on settled memory",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="run our leecher under tools/cpu_profile.py (cProfile, main-thread CPU clock); "
        "stats saved in DIR",
    )
    p.add_argument(
        "--py-spy",
        metavar="DIR",
        help="sample our leecher with py-spy (every thread, native frames off, 500 Hz, "
        "without pausing it); collapsed stacks saved in DIR",
    )
    p.add_argument(
        "--seeding",
        action="store_true",
        help="the seeding path instead: a libtorrent leecher downloads in turn from our "
        "seeder (torrentkit seed) and from libtorrent's; each seeder's CPU per download, and "
        "ours / libtorrent's (target <= 1.2)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--encryption",
        choices=["disable", "require"],
        default="disable",
        help="MSE/PE on every side: disable (default, the plain peer wire) or require (RC4)",
    )
    p.add_argument(
        "--page-cache",
        choices=["drop", "keep"],
        default="drop",
        help="our leecher's --page-cache (default drop, its default; keep: the pages it "
        "writes stay with the OS, as libtorrent's do)",
    )
    p.add_argument(
        "--lt-tick-ms",
        type=int,
        metavar="MS",
        help="libtorrent leecher's tick_interval (default: its own, 500 ms; it dials peers "
        "on a tick, so its first byte comes up to one tick after start)",
    )
    args = p.parse_args(argv)
    try:
        args.size_bytes = parse_size(args.size, "--size")
    except UsageError as exc:
        p.error(str(exc))
    if args.py_spy and not Path(sys.executable).with_name("py-spy").exists():
        p.error("--py-spy: py-spy is not installed next to this Python (pip install py-spy)")
    if args.size_bytes < PIECE_LENGTH or args.runs < 1 or args.idle_peers < 0:
        p.error("--size must be at least 1M, --runs at least 1, --idle-peers >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from torrentkit.maketorrent import make_torrent
    from torrentkit.metainfo import parse_torrent

    size: int = args.size_bytes

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    result: dict[str, Any] = {
        "size": size,
        "piece_length": PIECE_LENGTH,
        "lt_tick_ms": args.lt_tick_ms,
        "encryption": args.encryption,
    }
    seeder: LtSeeder | None = None
    with workspace(args.dir, args.keep) as work:
        children = Children(child_env(work))
        try:
            warm_up(children)
            seed_dir = work / "seed"
            seed_dir.mkdir()
            payload = seed_dir / "bench.bin"
            generate(payload, size)
            torrent = work / "bench.torrent"
            torrent.write_bytes(make_torrent(payload, piece_length=PIECE_LENGTH))
            meta = parse_torrent(torrent.read_bytes())
            digest = file_sha1(payload)
            say(f"payload: {size / 2**20:.0f} MiB, {meta.info.num_pieces} pieces of 1 MiB")
            if args.seeding and not args.no_speed:
                seeder = LtSeeder(torrent, seed_dir, args.encryption)
                runs = seeding_runs(args, children, work, torrent, seed_dir, seeder, digest, say)
                seeder.close()
                seeder = None
                result.update(summarize_seeding(runs, size, say))
            elif not args.no_speed:
                seeder = LtSeeder(torrent, seed_dir, args.encryption)
                enc = "RC4 required" if args.encryption == "require" else "encryption off"
                say(f"seeder: libtorrent on {LOOPBACK}:{seeder.port}, {enc}")
                runs = speed_runs(args, children, work, torrent, seeder.port, size, digest, say)
                seeder.close()
                seeder = None
                result.update(summarize(runs, say))
            if args.idle_peers:
                mem = idle_peer_memory(
                    children,
                    torrent,
                    seed_dir,
                    work,
                    args.idle_peers,
                    meta.info.info_hash,
                    meta.info.num_pieces,
                )
                result["memory"] = mem
                say(
                    f"idle peers: {mem['still_connected']}/{mem['idle_peers']} connected to our "
                    f"seed; RSS {mem['rss_baseline_kib'] / 1024:.1f} MiB before, peak "
                    f"{mem['rss_peak_kib'] / 1024:.1f} MiB: {mem['kib_per_peer']} KiB per peer "
                    "(target <= 64)"
                )
        finally:
            children.stop_all()
            if seeder is not None:
                seeder.close()
    if args.json:
        print(json.dumps(result))
    return 0


def speed_runs(
    args: argparse.Namespace,
    children: Children,
    work: Path,
    torrent: Path,
    port: int,
    size: int,
    digest: str,
    say: Any,
) -> list[Run]:
    runs: list[Run] = []
    for k in range(1, args.runs + 1):
        order = ("torrentkit", "libtorrent") if k % 2 else ("libtorrent", "torrentkit")
        for client in order:
            dest = work / f"dl-{client}"
            dest.mkdir()
            if client == "torrentkit":
                cmd = [
                    sys.executable,
                    "-m",
                    "torrentkit.cli.main",
                    "download",
                    str(torrent),
                    "-o",
                    str(dest),
                    "--bind",
                    LOOPBACK,
                    "--peer",
                    f"{LOOPBACK}:{port}",
                    "--no-tracker",
                    "--no-dht",
                    "--no-ui",
                    "--timeout",
                    str(args.timeout),
                    "--state-dir",
                    str(work / "state"),
                    "--encryption",
                    args.encryption,
                    "--page-cache",
                    args.page_cache,
                ]
                if args.profile:
                    out = Path(args.profile) / f"leecher-{k}.prof"
                    cpu_profile = str(Path(__file__).with_name("cpu_profile.py"))
                    cmd = [cmd[0], cpu_profile, str(out), *cmd[1:]]
                if args.py_spy:
                    out = Path(args.py_spy) / f"leecher-{k}.txt"
                    spy = str(Path(sys.executable).with_name("py-spy"))
                    cmd = [
                        spy,
                        "record",
                        "--nonblocking",
                        "--threads",
                        "--rate",
                        "500",
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                        "--",
                        *cmd,
                    ]
            else:
                cmd = lt_leech_command(args, torrent, dest, port)
            run = timed_run(
                children,
                client,
                k,
                cmd,
                work / f"{client}-{k}.log",
                size,
                args.timeout + 30,
                args.settle,
            )
            check_copy(dest / "bench.bin", size, digest)
            shutil.rmtree(dest)
            shutil.rmtree(work / "state", ignore_errors=True)
            runs.append(run)
            say(
                f"run {k} {client:<10}: {run.seconds:7.2f} s {run.mb_per_s:7.1f} MB/s  "
                f"cpu {run.cpu_seconds:6.2f} s (user {run.user:.2f} + sys {run.sys:.2f}), "
                f"seeder cpu {run.seeder_cpu_seconds:.2f} s"
            )
    return runs


def lt_leech_command(args: argparse.Namespace, torrent: Path, dest: Path, port: int) -> list[str]:
    """A libtorrent leecher (this script as ``_lt_leech``) downloading into ``dest`` from
    127.0.0.1:``port``."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "_lt_leech",
        str(torrent),
        str(dest),
        str(port),
        str(args.timeout),
        args.encryption,
        *([str(args.lt_tick_ms)] if args.lt_tick_ms else []),
    ]


def seeding_runs(
    args: argparse.Namespace,
    children: Children,
    work: Path,
    torrent: Path,
    seed_dir: Path,
    lt_seeder: LtSeeder,
    digest: str,
    say: Any,
) -> list[Run]:
    """``--seeding``: per round, a fresh libtorrent leecher from our seeder and one from
    libtorrent's (alternating which goes first); ``Run.client`` names the seeder."""
    ours, port = start_our_seeder(
        children,
        torrent,
        seed_dir,
        work / "seed-state",
        ["--encryption", args.encryption],
    )
    say(f"seeder: ours on {LOOPBACK}:{port} (pid {ours.pid}), libtorrent's on {lt_seeder.port}")
    runs: list[Run] = []
    size = args.size_bytes
    for k in range(1, args.runs + 1):
        order = ("torrentkit", "libtorrent") if k % 2 else ("libtorrent", "torrentkit")
        for client in order:
            dest = work / f"dl-from-{client}"
            dest.mkdir()
            to_port = port if client == "torrentkit" else lt_seeder.port
            cmd = lt_leech_command(args, torrent, dest, to_port)
            clock: Callable[[], float] = (
                (lambda: proc_cpu_seconds(ours.pid))
                if client == "torrentkit"
                else time.process_time
            )
            run = timed_run(
                children,
                client,
                k,
                cmd,
                work / f"from-{client}-{k}.log",
                size,
                args.timeout + 30,
                args.settle,
                clock,
            )
            if ours.poll() is not None:
                raise RuntimeError(f"our seeder exited {ours.returncode}")
            check_copy(dest / "bench.bin", size, digest)
            shutil.rmtree(dest)
            runs.append(run)
            say(
                f"run {k} seeder {client:<10}: {run.seconds:7.2f} s {run.mb_per_s:7.1f} MB/s  "
                f"seeder cpu {run.seeder_cpu_seconds:5.2f} s "
                f"({run.seeder_cpu_seconds / (size / 2**30):.2f} s per GiB); "
                f"libtorrent leecher cpu {run.cpu_seconds:.2f} s"
            )
    children.stop_all()  # our seeder (the leechers have all ended), by its PID
    return runs


def summarize_seeding(runs: list[Run], size: int, say: Callable[[str], None]) -> dict[str, Any]:
    ours = [r for r in runs if r.client == "torrentkit"]
    theirs = [r for r in runs if r.client == "libtorrent"]
    ratios = [
        a.seeder_cpu_seconds / b.seeder_cpu_seconds
        for a, b in zip(ours, theirs, strict=True)
        if b.seeder_cpu_seconds > 0
    ]
    gib = size / 2**30
    out = {
        "seeding_runs": [asdict(r) for r in runs],
        "torrentkit_seeder_cpu_s_per_gib": round(
            statistics.median(r.seeder_cpu_seconds for r in ours) / gib, 3
        ),
        "libtorrent_seeder_cpu_s_per_gib": round(
            statistics.median(r.seeder_cpu_seconds for r in theirs) / gib, 3
        ),
        "torrentkit_seeder_mb_s": statistics.median(r.mb_per_s for r in ours),
        "libtorrent_seeder_mb_s": statistics.median(r.mb_per_s for r in theirs),
        "seeder_cpu_ratio": round(statistics.median(ratios), 3) if ratios else None,
    }
    say(
        f"median seeder cpu per GiB: ours {out['torrentkit_seeder_cpu_s_per_gib']} s at "
        f"{out['torrentkit_seeder_mb_s']} MB/s, libtorrent "
        f"{out['libtorrent_seeder_cpu_s_per_gib']} s at {out['libtorrent_seeder_mb_s']} MB/s"
    )
    if ratios:
        say(
            f"median ratio of seeder cpu ours / libtorrent: {out['seeder_cpu_ratio']:.2f} "
            "(target <= 1.2)"
        )
    return out


def summarize(runs: list[Run], say: Callable[[str], None]) -> dict[str, Any]:
    ours = [r for r in runs if r.client == "torrentkit"]
    theirs = [r for r in runs if r.client == "libtorrent"]
    ratios = [a.mb_per_s / b.mb_per_s for a, b in zip(ours, theirs, strict=True)]
    out = {
        "runs": [asdict(r) for r in runs],
        "torrentkit_mb_s": statistics.median(r.mb_per_s for r in ours),
        "libtorrent_mb_s": statistics.median(r.mb_per_s for r in theirs),
        "torrentkit_cpu_s": statistics.median(r.cpu_seconds for r in ours),
        "libtorrent_cpu_s": statistics.median(r.cpu_seconds for r in theirs),
        "ratio": round(statistics.median(ratios), 3),
    }
    say(
        f"median torrentkit: {out['torrentkit_mb_s']} MB/s, cpu {out['torrentkit_cpu_s']} s; "
        f"libtorrent: {out['libtorrent_mb_s']} MB/s, cpu {out['libtorrent_cpu_s']} s"
    )
    say(f"median ratio torrentkit / libtorrent: {out['ratio']:.2f} (target >= 0.7)")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["_lt_leech"]:
        sys.exit(lt_leech_main(sys.argv[2:]))
    try:
        sys.exit(main(sys.argv[1:]))
    except RuntimeError as exc:
        print(f"bench_loopback: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
