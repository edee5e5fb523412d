"""What the live dashboard costs: render time per frame and CPU share at 4 frames/s.

Records a stream of snapshots of one leecher in a simulated 51-node swarm (the production
engine on the in-memory network under a virtual clock, torrentkit.testing.swarm), so the
leecher has ~50 connected peers, then draws N frames of it at 80x24 and 120x40 exactly as
``run_dashboard`` does (a rich Live on the alternate screen, refresh=True per frame) into an
in-memory terminal. Reference, measured in the same run: ``Torrent.snapshot(now)``, the
engine-side cost of each frame.

    .venv/bin/python tools/bench_ui.py [--frames 400] [--peers 50] [--seconds 40]

Target (issue 5): at 4 frames/s, snapshot + render under 5% of one core.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time

import trio
import trio.testing
from rich.console import Console
from rich.live import Live

from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.engine.torrent import TorrentOptions
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent, setup_swarm
from torrentkit.ui.live import REFRESH_PER_SECOND, frame

KIB = 1024


async def record(peers: int, seconds: float, snap_costs: list[float]) -> list[TorrentSnapshot]:
    rng = random.Random(5)
    info, payload = make_torrent(rng, 8 * 1024 * KIB, 32 * KIB)
    net = SimNetwork(rng, latency=0.02)
    rates = [KIB * (4 + (i % 5) * 8) for i in range(peers)]
    out: list[TorrentSnapshot] = []
    async with trio.open_nursery() as nursery:
        nodes = await setup_swarm(
            nursery,
            net,
            info,
            payload,
            seed_rates=[256 * KIB],
            leecher_rates=rates,
            rng=rng,
            options=TorrentOptions(max_peers=peers + 10),
            start_gap=0.05,
        )
        watched = nodes[1]  # the first leecher: it knows everyone
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            await trio.sleep(1 / REFRESH_PER_SECOND)
            t0 = time.thread_time()  # CPU time: other load on the machine does not count
            out.append(watched.torrent.snapshot(trio.current_time()))
            snap_costs.append(time.thread_time() - t0)
        nursery.cancel_scope.cancel()
    return out


def draw_frames(
    snaps: list[TorrentSnapshot], frames: int, width: int, height: int
) -> tuple[list[float], float]:
    """Per-frame wall times and the total CPU time (this thread) for ``frames`` frames."""
    buf = io.StringIO()
    console = Console(
        file=buf, width=width, height=height, force_terminal=True, color_system="truecolor"
    )
    times: list[float] = []
    titles = ["leech0"]
    cpu0 = time.thread_time()
    live = Live(
        console=console,
        screen=True,
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with live:
        for k in range(frames):
            snap = snaps[k % len(snaps)]
            t0 = time.perf_counter()
            live.update(frame([snap], 0, width=width, height=height, titles=titles), refresh=True)
            times.append(time.perf_counter() - t0)
            buf.seek(0)
            buf.truncate()
    return times, time.thread_time() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--peers", type=int, default=50, help="leechers in the swarm")
    ap.add_argument("--seconds", type=float, default=40.0, help="simulated seconds to record")
    args = ap.parse_args()

    snap_costs: list[float] = []
    t0 = time.perf_counter()
    clock = trio.testing.MockClock(autojump_threshold=0)
    snaps = trio.run(record, args.peers, args.seconds, snap_costs, clock=clock)
    n_peers = [len(s.peers) for s in snaps]
    print(
        f"recorded {len(snaps)} snapshots in {time.perf_counter() - t0:.1f} s real time; "
        f"peers per snapshot: median {statistics.median(n_peers):.0f}, max {max(n_peers)}; "
        f"events in the last: {len(snaps[-1].events)}"
    )
    # Only the busy part of the stream: snapshots with most peers connected.
    busy = [s for s in snaps if len(s.peers) >= 0.8 * max(n_peers)] or snaps
    snap_mean = statistics.fmean(snap_costs)
    print(f"reference Torrent.snapshot(now): mean {snap_mean * 1e3:.2f} ms CPU")
    period = 1 / REFRESH_PER_SECOND
    for width, height in ((80, 24), (120, 40)):
        draw_frames(busy, 20, width, height)  # warm-up
        times, cpu = draw_frames(busy, args.frames, width, height)
        times.sort()
        mean = statistics.fmean(times)
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        cpu_per_frame = cpu / args.frames
        share = (cpu_per_frame + snap_mean) / period
        print(
            f"{width}x{height}: render mean {mean * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms; "
            f"CPU per frame {cpu_per_frame * 1e3:.2f} ms; at {REFRESH_PER_SECOND:.0f} fps with "
            f"the snapshot: {share * 100:.2f}% of one core "
            f"({'within' if share < 0.05 else 'OVER'} the 5% target); "
            f"render = {cpu_per_frame / snap_mean:.1f}x a snapshot"
        )


if __name__ == "__main__":
    main()
