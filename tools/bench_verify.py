"""Recheck throughput of FileStorage against the hashlib SHA-1 ceiling, in one run.

Generates a multi-file payload (8 files of varying sizes, default 1 GiB in total) in a
temporary folder (or below --dir), makes its torrent, then measures:

  (a) the ceiling: hashlib SHA-1 on one core over the same bytes, already in memory, in
      piece-sized slices (no I/O at all);
  (b) FileStorage.recheck over the files (page cache warm: the payload was just written and
      hashed), with the default number of worker threads and with one worker.

Prints MB/s (10^6 bytes per second) for each, and the ratios to (a). Target: >= 0.9 for
the one-worker recheck (the same single core as the ceiling); more workers may exceed 1.0
on a machine with spare cores. The payload is removed afterwards.

    .venv/bin/python tools/bench_verify.py --size 1G --runs 3
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from torrentkit.cli.common import UsageError, parse_size
from torrentkit.engine.storage import FileStorage
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Info, parse_torrent

WEIGHTS = (1, 2, 3, 5, 8, 13, 21, 34)  # 8 files of quite different sizes
CHUNK = 16 * 1024 * 1024


def generate(folder: Path, size: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    sizes = [size * w // sum(WEIGHTS) for w in WEIGHTS]
    sizes[-1] += size - sum(sizes)
    for k, n in enumerate(sizes):
        path = folder / f"dir{k % 3}" / f"file{k}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            left = n
            while left:
                step = min(CHUNK, left)
                fh.write(rng.randbytes(step))
                left -= step


def ceiling(payload: memoryview, piece_length: int) -> float:
    """Seconds for SHA-1 over ``payload`` in piece-sized slices, on this one thread."""
    sha1 = hashlib.sha1
    t = time.perf_counter()
    for i in range(0, len(payload), piece_length):
        sha1(payload[i : i + piece_length]).digest()
    return time.perf_counter() - t


def read_payload(info: Info, root: Path) -> bytearray:
    buf = bytearray(info.total_length)
    view = memoryview(buf)
    for f in info.files:
        with open(root.joinpath(*f.path), "rb", buffering=0) as fh:
            got = fh.readinto(view[f.offset : f.offset + f.length])
            assert got == f.length
    return buf


def recheck(info: Info, root: Path, workers: int | None) -> float:
    async def go() -> float:
        async with FileStorage(info, root, workers=workers) as st:
            t = time.perf_counter()
            have = await st.recheck()
            took = time.perf_counter() - t
        if not all(have):
            raise SystemExit(f"recheck found {have.count(False)} bad pieces: bench is broken")
        return took

    return trio.run(go)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1G", help="payload size (K/M/G suffix), default 1G")
    ap.add_argument("--runs", type=int, default=3, help="measurements of each kind")
    ap.add_argument("--dir", type=Path, help="where to make the payload (default: a temp dir)")
    ap.add_argument("--piece-size", help="piece length (default: automatic)")
    ap.add_argument("--workers", type=int, help="recheck threads (default: storage's choice)")
    args = ap.parse_args()
    try:
        size = parse_size(args.size, "--size")
        plen = parse_size(args.piece_size, "--piece-size") if args.piece_size else None
    except UsageError as exc:
        ap.error(str(exc))
    if size < len(WEIGHTS):
        ap.error("--size is too small")

    base = Path(tempfile.mkdtemp(prefix="bench-verify-", dir=args.dir))
    try:
        folder = base / "payload"
        folder.mkdir()
        t = time.perf_counter()
        generate(folder, size)
        meta = parse_torrent(make_torrent(folder, piece_length=plen))
        info = meta.info
        print(
            f"payload: {size / 1e6:.0f} MB in {len(info.files)} files, piece length "
            f"{info.piece_length // 1024} KiB, {info.num_pieces} pieces "
            f"(made and hashed in {time.perf_counter() - t:.1f} s)"
        )
        default_workers = FileStorage(info, base).workers
        workers = args.workers or default_workers

        payload = read_payload(info, base)
        view = memoryview(payload)
        # Interleaved, so that anything else running on the machine slows all kinds alike.
        ceil: list[float] = []
        many: list[float] = []
        one: list[float] = []
        for _ in range(args.runs):
            ceil.append(ceiling(view, info.piece_length))
            many.append(recheck(info, base, workers))
            one.append(recheck(info, base, 1))
        view.release()
        del payload

        def mbs(seconds: list[float]) -> tuple[float, float]:
            return size / statistics.median(seconds) / 1e6, size / min(seconds) / 1e6

        c_med, c_best = mbs(ceil)
        print(f"(a) hashlib SHA-1 ceiling, 1 core, in memory: median {c_med:6.0f} MB/s  "
              f"best {c_best:6.0f} MB/s")  # fmt: skip
        for label, runs in ((f"{workers} workers", many), ("1 worker", one)):
            med, best = mbs(runs)
            print(
                f"(b) FileStorage.recheck, {label:>10}:      median {med:6.0f} MB/s  "
                f"best {best:6.0f} MB/s  ratio {med / c_med:.2f} median, {best / c_best:.2f} best"
            )
        print(f"runs: {args.runs}; python {sys.version.split()[0]}")
    finally:
        shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
