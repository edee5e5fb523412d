"""Piece picker throughput: picks per second for 32,768 pieces x 50 peers.

Not part of CI. Run: ``.venv/bin/python tools/bench_picker.py [--pieces N] [--peers N]``.

Set-up: 256 KiB pieces (16 blocks of 16 KiB); of the 50 peers 5 are seeds and 45 have a
random share (5 % to 95 %) of the pieces. We first have 4 pieces, so rarest first is on.
Phases timed separately:

- ``bitfields``: all peers' bitfields in (the O(pieces) part);
- ``haves``: 50,000 HAVE messages (O(1) each);
- ``pick n=1``: the engine's per-received-block call: a random peer asks for one block, the
  block arrives, and a completed piece passes, repeated (pick + receive + pass are all in
  the time; the figure is picks per second);
- ``pick n=16``: the same with a pipeline refill of 16 blocks per call;
- ``sparse pick``: peers holding 1 % of the pieces (the walk falls back to their bitfield).
"""

from __future__ import annotations

import argparse
import random
import time

from torrentkit.engine.picker import Picker

BLOCK = 16 * 1024


def _bitfield(rng: random.Random, n: int, share: float) -> bytes:
    bits = "".join("1" if rng.random() < share else "0" for _ in range(n))
    bits += "0" * (-n % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _run(picker: Picker[int], rng: random.Random, peers: int, n: int, calls: int) -> float:
    start = time.perf_counter()
    done = 0
    for _ in range(calls):
        peer = rng.randrange(peers)
        for req in picker.pick(peer, n):
            res = picker.block_received(peer, req.piece, req.begin, req.length)
            if res.piece_complete:
                picker.piece_passed(req.piece)
        done += 1
    return done / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pieces", type=int, default=32768)
    ap.add_argument("--peers", type=int, default=50)
    ap.add_argument("--calls", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    n_pieces, n_peers = args.pieces, args.peers
    picker: Picker[int] = Picker(
        piece_length=16 * BLOCK, total_length=n_pieces * 16 * BLOCK - 1000, rng=rng
    )
    for piece in range(4):
        picker.set_have(piece)
    fields = [_bitfield(rng, n_pieces, rng.uniform(0.05, 0.95)) for _ in range(n_peers)]

    t0 = time.perf_counter()
    for peer in range(n_peers):
        if peer < 5:
            picker.peer_have_all(peer)
        else:
            picker.peer_bitfield(peer, fields[peer])
    t_bitfields = time.perf_counter() - t0
    print(f"{n_pieces} pieces x {n_peers} peers")
    print(f"bitfields:    {t_bitfields * 1000:8.1f} ms for {n_peers} peers")

    t0 = time.perf_counter()
    haves = 50_000
    for _ in range(haves):
        picker.peer_have(rng.randrange(5, n_peers), rng.randrange(n_pieces))
    print(f"haves:        {haves / (time.perf_counter() - t0):10,.0f} HAVE/s")

    rate1 = _run(picker, rng, n_peers, 1, args.calls)
    print(f"pick n=1:     {rate1:10,.0f} picks/s (pick + receive + pass)")
    rate16 = _run(picker, rng, n_peers, 16, args.calls // 4)
    print(f"pick n=16:    {rate16:10,.0f} picks/s ({rate16 * 16:,.0f} blocks/s)")

    sparse = list(range(n_peers, n_peers + 10))
    for peer in sparse:
        picker.peer_bitfield(peer, _bitfield(rng, n_pieces, 0.01))
    start = time.perf_counter()
    calls = 2000
    for i in range(calls):
        peer = sparse[i % len(sparse)]
        for req in picker.pick(peer, 1):
            picker.request_released(peer, req.piece, req.begin)
    print(f"sparse pick:  {calls / (time.perf_counter() - start):10,.0f} picks/s (1 % peers)")
    print(f"have {picker.num_have} of {n_pieces} pieces after the run")


if __name__ == "__main__":
    main()
