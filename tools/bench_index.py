"""Scale of the Napster index: publish throughput, search latency of each kind, memory.

A tool, not a test (issue 7, item 7; targets: median search <= 50 ms at 100,000 entries for
every kind, publish >= 5,000 entries/s). Everything stays on 127.0.0.1.

It starts the real service as a subprocess, ``python -m torrentkit.cli.main napster-index
--bind 127.0.0.1 --port 0 --rate-limit 0`` (the per-IP rate limit is off because one client
here sends hundreds of searches a second), and reads its first line for the URL.

Publish. ``--peers`` (default 1,000) simulated peers share ``--files`` (default 100,000)
files between them. Each peer is its own client with its own source address on the loopback
network (127.1.x.y: all of 127/8 is local on Linux), as real peers have, so the index's
per-address caps apply as they would in the field. Each joins and publishes its files in one
batch, through the project's own client (:class:`NapsterClient`), ``--concurrency`` (default
8) peers at a time. Names come from a seeded vocabulary of pronounceable words drawn with a
Zipf-like skew (a few words are common, most are rare), shaped like "Artist - Title (Year)"
plus an extension, with a size range typical of that extension. Throughput is entries per
second of wall time over the whole phase, joins included.

Search. ``--queries`` (default 200) queries of each kind, one after the other over one
keep-alive connection:

  word       one or two vocabulary words (Zipf-drawn, so some are common)
  substring  4-6 letters from inside a vocabulary word
  regex      patterns such as ``^word.*\\.(mp3|flac)$``, ``\\bwor\\w*\\s+\\w+ing\\b``
  attribute  no text: an extension and a size range

Latency is measured client-side (request sent to JSON parsed, over HTTP keep-alive) and
server-side (the ``took_ms`` the index reports for its own search); median and p95 of each.
As a reference measured in the same run, the substring queries are also answered by a plain
Python loop over the 100,000 names (``needle in name.lower()``) in this process, the design
the index avoids; the ratio is printed.

Memory. The index's VmRSS (/proc/PID/status) after start-up and after publishing; the
difference divided by the entries is the memory per entry (allocator slack included).

    .venv/bin/python tools/bench_index.py [--files 100000] [--peers 1000] [--queries 200]
        [--concurrency 8] [--seed 1] [--json]

Only the process this script started is stopped (by its PID, SIGTERM), also after an error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torrentkit.discovery.napster.client import NapsterClient, new_http_client
from torrentkit.discovery.napster.index import (
    MatchKind,
    SearchQuery,
    SharedFile,
)
from torrentkit.ids import InfoHash

EXTENSIONS = {
    # extension: (share of files, smallest size, largest size)
    "mp3": (0.35, 2 * 2**20, 15 * 2**20),
    "flac": (0.10, 15 * 2**20, 60 * 2**20),
    "ogg": (0.05, 2 * 2**20, 12 * 2**20),
    "avi": (0.08, 300 * 2**20, 1400 * 2**20),
    "mkv": (0.10, 700 * 2**20, 8 * 2**30),
    "mp4": (0.08, 100 * 2**20, 4 * 2**30),
    "iso": (0.04, 300 * 2**20, 8 * 2**30),
    "pdf": (0.08, 100 * 2**10, 50 * 2**20),
    "epub": (0.05, 200 * 2**10, 10 * 2**20),
    "zip": (0.05, 1 * 2**20, 2 * 2**30),
    "txt": (0.02, 1 * 2**10, 2 * 2**20),
}
FLAVOURS = ["live", "remix", "remastered", "demo", "acoustic", "extended", "edit", "hd", "1080p"]


class Vocabulary:
    """Pronounceable words with Zipf-like frequencies, from a seeded generator."""

    def __init__(self, rng: random.Random, size: int = 4000) -> None:
        consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
        words: set[str] = set()
        while len(words) < size:
            syllables = rng.choice((1, 2, 2, 3, 3, 4))
            words.add(
                "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
                + rng.choice(("", "", "n", "r", "s"))
            )
        self.words = sorted(words)
        rng.shuffle(self.words)
        weights = [1.0 / (rank + 1) ** 0.9 for rank in range(size)]
        total = 0.0
        self.cum: list[float] = []
        for w in weights:
            total += w
            self.cum.append(total)
        self.rng = rng

    def word(self) -> str:
        return self.rng.choices(self.words, cum_weights=self.cum)[0]

    def phrase(self, lo: int, hi: int) -> str:
        return " ".join(self.word() for _ in range(self.rng.randint(lo, hi)))


def make_files(count: int, vocab: Vocabulary, rng: random.Random) -> list[SharedFile]:
    exts = list(EXTENSIONS)
    shares = [EXTENSIONS[e][0] for e in exts]
    files: list[SharedFile] = []
    for _ in range(count):
        ext = rng.choices(exts, weights=shares)[0]
        _, lo, hi = EXTENSIONS[ext]
        size = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        artist = vocab.phrase(1, 3).title()
        title = vocab.phrase(1, 4)
        name = f"{artist} - {title.capitalize()}"
        if rng.random() < 0.3:
            name += f" ({rng.choice(FLAVOURS)})"
        if rng.random() < 0.4:
            name += f" {rng.randint(1960, 2024)}"
        name = name.replace(" ", rng.choice((" ", " ", " ", "_", "."))) + "." + ext
        info_hash = InfoHash(rng.randbytes(20))
        files.append(SharedFile(name=name, size=size, info_hash=info_hash))
    return files


def make_queries(kind: str, count: int, vocab: Vocabulary, rng: random.Random) -> list[SearchQuery]:
    queries: list[SearchQuery] = []
    for _ in range(count):
        if kind == "word":
            text = vocab.phrase(1, 2)
            queries.append(SearchQuery(text=text))
        elif kind == "substring":
            word = vocab.word()
            while len(word) < 5:
                word = vocab.word()
            length = rng.randint(4, min(6, len(word)))
            start = rng.randint(0, len(word) - length)
            queries.append(
                SearchQuery(text=word[start : start + length], match=MatchKind.SUBSTRING)
            )
        elif kind == "regex":
            w = vocab.word()
            pattern = rng.choice(
                [
                    rf"^{w}.*\.(mp3|flac)$",
                    rf"\b{w[:3]}\w*[ _.]+\w+ing\b",
                    rf"{w} - .*\((live|remix)\)",
                    rf"\b{w}\b.*(19[6-9]\d|20[0-2]\d)\.\w+$",
                    rf"^[a-z]+[ _.]{w}",
                ]
            )
            queries.append(SearchQuery(text=pattern, match=MatchKind.REGEX))
        else:
            ext = rng.choice(list(EXTENSIONS))
            _, lo, hi = EXTENSIONS[ext]
            a = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            queries.append(SearchQuery(ext=ext, min_size=a, max_size=int(a * 1.2)))
    return queries


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@contextmanager
def start_index() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    cmd = [sys.executable, "-m", "torrentkit.cli.main", "napster-index"]
    cmd += ["--bind", "127.0.0.1", "--port", "0", "--rate-limit", "0", "--ttl", "3600"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        words = line.split()
        if words[:2] != ["listening", "on"] or len(words) < 5:
            raise RuntimeError(f"unexpected first line from napster-index: {line!r}")
        yield proc, words[4]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def peer_address(n: int) -> str:
    return f"127.1.{n // 250}.{n % 250 + 1}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishFigures:
    join_seconds: float
    publish_seconds: float
    median_publish_call_ms: float


async def publish_all(
    url: str, batches: list[list[SharedFile]], concurrency: int
) -> PublishFigures:
    """Every peer joins (timed), then every peer publishes its batch (timed).

    Each peer's client (its own source address, its own keep-alive connection) is made before
    the clocks start, so client set-up is not counted against the index.
    """
    limiter = trio.CapacityLimiter(concurrency)
    tls = ssl.create_default_context()  # one, shared: httpx would load the CA store per client
    https = [
        httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address=peer_address(n), verify=tls),
            timeout=60,
            trust_env=False,
        )
        for n in range(len(batches))
    ]
    peers = [NapsterClient(url, http=http, timeout=60) for http in https]
    sessions: list[str] = [""] * len(peers)
    call_ms: list[float] = []

    async def join(n: int) -> None:
        async with limiter:
            sessions[n] = (await peers[n].join(6881 + n % 1000)).session

    async def publish(n: int) -> None:
        async with limiter:
            started = time.perf_counter()
            reply = await peers[n].publish(sessions[n], batches[n])
            call_ms.append((time.perf_counter() - started) * 1000)
            if reply.total != len(batches[n]):
                raise RuntimeError(f"peer {n}: index holds {reply.total} of {len(batches[n])}")

    try:
        times: list[float] = []
        for step in (join, publish):
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for n in range(len(peers)):
                    nursery.start_soon(step, n)
            times.append(time.perf_counter() - started)
    finally:
        for http in https:
            await http.aclose()
    return PublishFigures(
        join_seconds=times[0],
        publish_seconds=times[1],
        median_publish_call_ms=statistics.median(call_ms),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class KindFigures:
    kind: str
    queries: int
    client_median_ms: float
    client_p95_ms: float
    server_median_ms: float
    server_p95_ms: float
    mean_hits: float
    truncated_share: float


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


async def run_searches(url: str, queries: dict[str, list[SearchQuery]]) -> list[KindFigures]:
    figures: list[KindFigures] = []
    async with NapsterClient(url, http=new_http_client(60), timeout=60) as index:
        await index.search(SearchQuery(text="warm up"))  # connect once; keep-alive after
        for kind, batch in queries.items():
            client_ms: list[float] = []
            server_ms: list[float] = []
            hits: list[int] = []
            truncated = 0
            for query in batch:
                started = time.perf_counter()
                reply = await index.search(query)
                client_ms.append((time.perf_counter() - started) * 1000)
                server_ms.append(reply.took_ms)
                hits.append(len(reply.hits))
                truncated += reply.truncated
            figures.append(
                KindFigures(
                    kind=kind,
                    queries=len(batch),
                    client_median_ms=statistics.median(client_ms),
                    client_p95_ms=p95(client_ms),
                    server_median_ms=statistics.median(server_ms),
                    server_p95_ms=p95(server_ms),
                    mean_hits=statistics.fmean(hits),
                    truncated_share=truncated / len(batch),
                )
            )
    return figures


def reference_substring(names: list[str], queries: list[SearchQuery]) -> float:
    """Median ms of a plain Python loop answering the substring queries (the reference)."""
    lowered = [n.lower() for n in names]
    times: list[float] = []
    for q in queries:
        needle = q.text.lower()
        started = time.perf_counter()
        found = [i for i, n in enumerate(lowered) if needle in n]
        times.append((time.perf_counter() - started) * 1000)
        del found
    return statistics.median(times)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--peers", type=int, default=1_000)
    p.add_argument("--queries", type=int, default=200, help="per kind")
    p.add_argument("--concurrency", type=int, default=8, help="peers publishing at once")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if not 1 <= args.peers <= 60_000 or args.files < args.peers or args.queries < 1:
        p.error("need 1 <= peers <= 60000, files >= peers, queries >= 1")
    if args.files // args.peers > 10_000:
        p.error("at most 10,000 files per peer (the index's cap)")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    vocab = Vocabulary(rng)
    files = make_files(args.files, vocab, rng)
    per_peer = -(-args.files // args.peers)
    batches = [files[i : i + per_peer] for i in range(0, len(files), per_peer)]
    queries = {
        kind: make_queries(kind, args.queries, vocab, rng)
        for kind in ("word", "substring", "regex", "attribute")
    }
    note: Callable[[str], None] = (lambda s: print(s, file=sys.stderr)) if args.json else print
    with start_index() as (proc, url):
        time.sleep(0.5)
        rss_before = rss_kib(proc.pid)
        note(f"napster-index pid {proc.pid} at {url}; RSS {rss_before / 1024:.1f} MiB at start")
        pub = trio.run(publish_all, url, batches, args.concurrency)
        rss_after = rss_kib(proc.pid)
        rate = len(files) / pub.publish_seconds
        per_entry = (rss_after - rss_before) * 1024 / len(files)
        note(
            f"{len(batches):,} peers joined in {pub.join_seconds:.2f} s "
            f"({len(batches) / pub.join_seconds:,.0f} joins/s)"
        )
        note(
            f"published {len(files):,} files in {pub.publish_seconds:.2f} s: {rate:,.0f} "
            f"entries/s (median publish call {pub.median_publish_call_ms:.1f} ms for "
            f"{per_peer} files, {args.concurrency} peers at a time)"
        )
        note(
            f"memory: RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB, "
            f"{per_entry:,.0f} bytes per entry"
        )
        figures = trio.run(run_searches, url, queries)
    reference = reference_substring([f.name for f in files], queries["substring"])
    substring = next(f for f in figures if f.kind == "substring")
    ok_search = all(f.client_median_ms <= 50 for f in figures)
    ok_publish = rate >= 5000
    if args.json:
        print(
            json.dumps(
                {
                    "files": len(files),
                    "peers": len(batches),
                    "publish_entries_per_s": round(rate),
                    "join_seconds": round(pub.join_seconds, 3),
                    "publish_seconds": round(pub.publish_seconds, 3),
                    "median_publish_call_ms": round(pub.median_publish_call_ms, 3),
                    "rss_start_kib": rss_before,
                    "rss_after_publish_kib": rss_after,
                    "bytes_per_entry": round(per_entry),
                    "search": [asdict(f) for f in figures],
                    "reference_substring_loop_median_ms": round(reference, 3),
                    "targets_met": {
                        "search_median_50ms": ok_search,
                        "publish_5000_per_s": ok_publish,
                    },
                }
            )
        )
        return 0
    print()
    print(f"search over {len(files):,} entries, {args.queries} queries per kind (ms)")
    print(
        f"{'kind':<10} {'client med':>10} {'p95':>8} {'server med':>10} {'p95':>8} "
        f"{'hits':>6} {'truncated':>9}"
    )
    for f in figures:
        print(
            f"{f.kind:<10} {f.client_median_ms:>10.2f} {f.client_p95_ms:>8.2f} "
            f"{f.server_median_ms:>10.2f} {f.server_p95_ms:>8.2f} {f.mean_hits:>6.1f} "
            f"{f.truncated_share:>8.0%}"
        )
    print()
    speedup = reference / max(substring.server_median_ms, 1e-6)
    print(
        f"reference: a Python loop over the names answers the same substring queries in "
        f"{reference:.2f} ms (median); the index's server-side median is "
        f"{substring.server_median_ms:.2f} ms ({speedup:.1f}x faster)"
    )
    print(
        f"targets: median search <= 50 ms for every kind: {'met' if ok_search else 'MISSED'}; "
        f"publish >= 5,000 entries/s: {'met' if ok_publish else 'MISSED'} ({rate:,.0f})"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv[1:]))
