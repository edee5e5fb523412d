#!/usr/bin/env python3
"""What it costs this machine to touch memory it has not touched lately: a tool, not a test.

Writes ``--size`` (default 1 GiB) into a fresh file in ``--dir`` with 1 MiB ``pwrite``
calls, deletes it, and does it again at once, then once more after ``--settle`` seconds
(default 8) of doing nothing. Each write fills the page cache with pages the kernel takes
from its free lists; the kernel time of the write is what those pages cost.

On bare metal the three figures are alike (~0.2 s of kernel time per GiB: the copy and the
page-cache bookkeeping). On a virtual machine whose balloon driver reports free memory to
the host (virtio-balloon free page reporting, as on this project's Firecracker VM), the
host takes back pages that stay free for a few seconds, and the guest's next touch of each
one waits for the host to supply it again: the settled write then costs far more (here
~2.7 s per GiB, ~10 us per 4 KiB page, against ~0.19 s right after a free).

That is why tools/bench_swarm.py has ``--settle``: its swarms write 1 GiB of copies each,
and without a pause the swarm that starts sooner after the last clean-up, or finishes
sooner, runs on warmer memory (README, "Where the time goes: the 1 + 8 swarm").

    python3 tools/vm_first_touch.py [--size 1G] [--settle 8] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

MIB = 1 << 20


def write_once(folder: str, size: int) -> tuple[float, float]:
    """Write ``size`` bytes to a new file in ``folder`` and delete it: (kernel s, wall s)."""
    buf = bytearray(os.urandom(MIB))
    fd, path = tempfile.mkstemp(dir=folder, prefix="first-touch-")
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        start = time.perf_counter()
        for offset in range(0, size, MIB):
            os.pwrite(fd, buf, offset)
        wall = time.perf_counter() - start
        kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime - before
    finally:
        os.close(fd)
        os.unlink(path)
    return kernel, wall


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", default="1G", help="bytes to write each time (K, M, G suffix)")
    p.add_argument("--settle", type=float, default=8.0, help="seconds idle before the last")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (a disk)")
    args = p.parse_args(argv)
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = args.size.upper()
    try:
        size = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except ValueError:
        p.error(f"--size {args.size}: not a size")
    if size < MIB or args.settle < 0 or not os.path.isdir(args.dir):
        p.error("--size must be at least 1M, --settle >= 0, --dir a folder")
    gib = size / (1 << 30)
    os.sync()
    time.sleep(args.settle)
    runs = [("settled (first)", write_once(args.dir, size))]
    runs.append(("just after a free", write_once(args.dir, size)))
    os.sync()
    time.sleep(args.settle)
    runs.append((f"settled {args.settle:g} s", write_once(args.dir, size)))
    for label, (kernel, wall) in runs:
        print(f"{label:<20} kernel {kernel / gib:6.2f} s per GiB, wall {wall / gib:6.2f} s per GiB")
    warm = runs[1][1][0]
    cold = min(runs[0][1][0], runs[2][1][0])
    print(f"settled / just freed: {cold / warm:.1f}x the kernel time per page")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
