"""Start-up check time of a complete torrent: full recheck against fast resume, in one run.

Generates a complete multi-file payload (8 files of varying sizes, default 4 GiB in total;
the bytes are a few random blocks repeated, so making them is quick) in a temporary folder
(or below --dir), makes its torrent and valid resume data, then measures, --runs times each:

  (a) a full recheck: FileStorage.recheck() hashing every piece;
  (b) fast resume: resume.load() of the saved file + resume.fast_check(), which trusts the
      recorded pieces of files whose size and mtime are unchanged (here: all of them).

Prints the median and best time of each, the ratio (a)/(b), and whether fast resume stays
under one second. --cold drops the page cache (writes 3 to /proc/sys/vm/drop_caches, needs
root) before every measurement, so (a) reads from the disk. The payload is removed
afterwards unless --keep.

    .venv/bin/python tools/bench_resume.py --size 1G --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from torrentkit.cli.common import UsageError, parse_size
from torrentkit.engine import resume
from torrentkit.engine.storage import FileStorage
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Info, parse_torrent

WEIGHTS = (1, 2, 3, 5, 8, 13, 21, 34)  # 8 files of quite different sizes
BLOCK = 16 * 1024 * 1024
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def generate(folder: Path, size: int) -> None:
    """Files totalling ``size`` bytes: 4 random blocks repeated (written at disk speed,
    not at random-generator speed; SHA-1 does not care that the bytes repeat)."""
    blocks = [os.urandom(BLOCK) for _ in range(4)]
    sizes = [size * w // sum(WEIGHTS) for w in WEIGHTS]
    sizes[-1] += size - sum(sizes)
    k = 0
    for n, length in enumerate(sizes):
        path = folder / f"dir{n % 3}" / f"file{n}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            left = length
            while left:
                step = min(BLOCK, left)
                fh.write(memoryview(blocks[k % len(blocks)])[:step])
                k += 1
                left -= step


def drop_caches() -> None:
    os.sync()
    DROP_CACHES.write_text("3\n")


def full_recheck(info: Info, root: Path) -> float:
    async def go() -> float:
        with trio.fail_after(3600):
            async with FileStorage(info, root) as st:
                t = time.perf_counter()
                have = await st.recheck()
                took = time.perf_counter() - t
        if not all(have):
            raise SystemExit(f"recheck found {have.count(False)} bad pieces: bench is broken")
        return took

    return trio.run(go)


def fast_resume(info: Info, root: Path, state: Path) -> float:
    async def go() -> float:
        with trio.fail_after(3600):
            async with FileStorage(info, root) as st:
                t = time.perf_counter()
                loaded = resume.load(state, info)
                result = await resume.fast_check(st, info, loaded.data)
                took = time.perf_counter() - t
        if loaded.data is None or result.rechecked or not all(result.have):
            raise SystemExit(
                f"fast resume hashed {len(result.rechecked)} pieces "
                f"({loaded.problem or 'resume data loaded'}): bench is broken"
            )
        return took

    return trio.run(go)


def write_resume(info: Info, root: Path, state: Path) -> None:
    async def go() -> None:
        with trio.fail_after(3600):
            async with FileStorage(info, root) as st:
                data = await resume.capture(
                    st,
                    save_path=root,
                    pieces=[True] * info.num_pieces,
                    uploaded=0,
                    downloaded=info.total_length,
                    active_seconds=0.0,
                    seeding_seconds=0.0,
                )
        resume.save(state, data)

    trio.run(go)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="4G", help="payload size (K/M/G suffix), default 4G")
    ap.add_argument("--runs", type=int, default=3, help="measurements of each kind")
    ap.add_argument("--dir", type=Path, help="where to make the payload (default: a temp dir)")
    ap.add_argument("--piece-size", help="piece length (default: automatic)")
    ap.add_argument("--cold", action="store_true",
                    help="drop the page cache before each measurement (root only)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the payload folder afterwards")
    args = ap.parse_args()
    try:
        size = parse_size(args.size, "--size")
        plen = parse_size(args.piece_size, "--piece-size") if args.piece_size else None
    except UsageError as exc:
        ap.error(str(exc))
    if size < len(WEIGHTS):
        ap.error("--size is too small")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.cold and not os.access(DROP_CACHES, os.W_OK):
        ap.error(f"--cold needs write access to {DROP_CACHES} (run as root)")

    base = Path(tempfile.mkdtemp(prefix="bench-resume-", dir=args.dir))
    try:
        folder = base / "payload"
        folder.mkdir()
        state = base / "state"
        t = time.perf_counter()
        generate(folder, size)
        info = parse_torrent(make_torrent(folder, piece_length=plen)).info
        write_resume(info, base, state)
        print(
            f"payload: {size / 2**30:.2f} GiB in {len(info.files)} files, piece length "
            f"{info.piece_length // 1024} KiB, {info.num_pieces} pieces (made, hashed and "
            f"resume data written in {time.perf_counter() - t:.1f} s); "
            f"page cache {'dropped before each run' if args.cold else 'warm'}"
        )
        # Interleaved, so that anything else running on the machine slows both alike.
        full: list[float] = []
        fast: list[float] = []
        for _ in range(args.runs):
            if args.cold:
                drop_caches()
            full.append(full_recheck(info, base))
            if args.cold:
                drop_caches()
            fast.append(fast_resume(info, base, state))
        f_med, f_best = statistics.median(full), min(full)
        r_med, r_best = statistics.median(fast), min(fast)
        print(f"(a) full recheck:            median {f_med:8.3f} s  best {f_best:8.3f} s  "
              f"({size / f_med / 1e6:.0f} MB/s median)")  # fmt: skip
        print(f"(b) fast resume (load+check): median {r_med:8.4f} s  best {r_best:8.4f} s  "
              f"(0 pieces hashed)")  # fmt: skip
        print(f"ratio (a)/(b): {f_med / r_med:.0f}x median, {f_best / r_best:.0f}x best")
        print(f"target: fast resume under 1 s: {'yes' if max(fast) < 1.0 else 'no'}")
        print(f"runs: {args.runs}; python {sys.version.split()[0]}")
        if args.keep:
            print(f"kept: {base}")
    finally:
        if not args.keep:
            shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
