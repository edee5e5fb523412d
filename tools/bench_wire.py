"""How fast the sans-IO peer wire core moves 16 KiB PIECE messages (a tool, not a test).

Receive: a stream of PIECE messages (all requested first, as a real download would) is fed
to PeerConnection.receive_data in 64 KiB chunks and drained with next_event().
Send: PeerConnection.send(Piece(...)) for queued peer requests, building each event.
Reference: the bare minimum in the same process -- struct-unpack each header and copy each
block out of a bytearray, with no events and no state -- so the ratio shows what the
connection's checks and events cost.

    .venv/bin/python tools/bench_wire.py [--mib 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import time

from torrentkit.wire import (
    BLOCK_SIZE,
    NEED_DATA,
    Bitfield,
    Interested,
    Piece,
    PieceGeometry,
    Request,
    Unchoke,
)
from torrentkit.wire.codec import piece_header
from torrentkit.wire.testing import ConnectionPair

CHUNK = 64 * 1024
PIECE_LENGTH = 256 * 1024


def make_pair(total: int) -> tuple[ConnectionPair, list[Request]]:
    """b seeds, a has requested every block of the torrent."""
    g = PieceGeometry(piece_length=PIECE_LENGTH, total_length=total)
    pair = ConnectionPair(geometry=g, max_pending_requests=1 << 20)
    pair.send("b", Bitfield.from_indices(g.num_pieces, range(g.num_pieces)), Unchoke())
    requests = [
        Request(index=i, begin=b, length=BLOCK_SIZE)
        for i in range(g.num_pieces)
        for b in range(0, PIECE_LENGTH, BLOCK_SIZE)
    ]
    pair.send("a", Interested(), *requests)
    return pair, requests


def bench_receive(stream: bytes, total: int) -> float:
    pair, _ = make_pair(total)
    conn = pair.a
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    got = 0
    t0 = time.perf_counter()
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            assert isinstance(event, Piece)
            got += len(event.data)
    dt = time.perf_counter() - t0
    assert got == total, (got, total)
    return dt


def bench_reference(stream: bytes, total: int) -> float:
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    unpack = struct.Struct(">IBII").unpack_from
    buf = bytearray()
    pos = got = 0
    t0 = time.perf_counter()
    for chunk in chunks:
        if pos:
            del buf[:pos]
            pos = 0
        buf += chunk
        n = len(buf)
        while n - pos >= 13:
            length, _, _, _ = unpack(buf, pos)
            end = pos + 4 + length
            if end > n:
                break
            with memoryview(buf) as view:
                got += len(bytes(view[pos + 13 : end]))
            pos = end
    dt = time.perf_counter() - t0
    assert got == total
    return dt


def bench_send(blocks: list[bytes], total: int) -> float:
    pair, requests = make_pair(total)
    conn = pair.b
    out = 0
    t0 = time.perf_counter()
    for req, data in zip(requests, blocks, strict=True):
        out += len(conn.send(Piece(index=req.index, begin=req.begin, data=data)))
    dt = time.perf_counter() - t0
    assert out == total + 13 * len(requests)
    return dt


def bench_send_reference(blocks: list[bytes], requests: list[Request]) -> float:
    """Reference for sending: bare framing, header + data joined (no event, no checks)."""
    t0 = time.perf_counter()
    for req, data in zip(requests, blocks, strict=True):
        piece_header(req.index, req.begin, len(data)) + data
    return time.perf_counter() - t0


def bench_send_header_only(blocks: list[bytes], requests: list[Request]) -> float:
    """What a vectored (writev) sender would pay instead of the join: the header alone."""
    t0 = time.perf_counter()
    for req, data in zip(requests, blocks, strict=True):
        piece_header(req.index, req.begin, len(data))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="payload per round (MiB)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    total = args.mib * 1024 * 1024
    n_blocks = total // BLOCK_SIZE
    blocks = [os.urandom(BLOCK_SIZE) for _ in range(64)] * (n_blocks // 64)
    _, requests = make_pair(total)
    stream = b"".join(
        piece_header(r.index, r.begin, BLOCK_SIZE) + d
        for r, d in zip(requests, blocks, strict=True)
    )

    results: dict[str, list[float]] = {k: [] for k in ("recv", "ref", "send", "sref", "hdr")}
    for _ in range(args.rounds):
        results["recv"].append(bench_receive(stream, total))
        results["ref"].append(bench_reference(stream, total))
        results["send"].append(bench_send(blocks, total))
        results["sref"].append(bench_send_reference(blocks, requests))
        results["hdr"].append(bench_send_header_only(blocks, requests))

    def report(label: str, key: str) -> float:
        dt = statistics.median(results[key])
        mbps = total / dt / 1e6
        print(
            f"{label:<44} {mbps:9.0f} MB/s  {n_blocks / dt:10.0f} msg/s  "
            f"{dt / n_blocks * 1e6:6.2f} us/msg"
        )
        return mbps

    print(
        f"{args.mib} MiB of 16 KiB PIECE messages, fed in 64 KiB chunks; "
        f"median of {args.rounds} rounds"
    )
    recv = report("receive: receive_data + next_event", "recv")
    ref = report("  reference: bare unpack + copy out", "ref")
    send = report("send: send(Piece(...)) incl. building it", "send")
    sref = report("  reference: bare header + data join", "sref")
    report("  (a writev sender: header only, no join)", "hdr")
    print(f"ratio to reference: receive {recv / ref:.2f}, send {send / sref:.2f}")


if __name__ == "__main__":
    main()
