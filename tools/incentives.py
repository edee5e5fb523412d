"""Does tit-for-tat work, and how would you cheat? The lecture's question, answered with the
real engine in simulation (issue 14).

``python tools/incentives.py [--seeds 1 2] [--leechers 24] [--size 4M] [--json]
[--plot FILE.png]``

Each run is one swarm on the in-memory network (:mod:`torrentkit.testing.network`) under
trio's virtual clock, seeded, with the production engine (picker, choker, wire, tracker
client; :mod:`torrentkit.testing.swarm`): one seed and ``--leechers`` leechers whose uplinks
are 32, 64 and 128 KiB/s in turn, each keeping at most 10 connections (a client's view of a
big swarm is a few dozen of its thousands of peers; here 10 of 24). One 64 KiB/s leecher,
the *subject*, plays a strategy; everyone else is honest (4 tit-for-tat slots + 1
optimistic, the engine's defaults). Strategies:

- ``honest``: the subject is honest too (the reference run).
- ``free rider``: never uploads (no upload slots, no optimistic slot), views 10 like everyone.
- ``large-view free rider``: never uploads and connects to every peer it learns of (up to 60
  connections; it is handed every leecher's address): the more peers, the more optimistic
  unchokes it collects -- the known exploit.
- ``strategic (BitTyrant-like)``: gives each peer just enough to stay unchoked: it unchokes
  every peer that uploaded to it lately (at least 4, at most 12), splitting its upload
  thinly over all of them, instead of 4 slots; plus the optimistic one.
- ``seed leaves``: all honest; the seed leaves as soon as the leechers together hold every
  piece (one distributed copy). Not earlier: leaving after uploading 1.25 copies left 29 of
  128 pieces with nobody (the early, random-first requests duplicate a lot), and no leecher
  ever completed.

Per strategy: the subject's time to complete divided by the mean of the honest 64 KiB/s
leechers in the same run (``subject / honest``: < 1 the strategy pays), and the honest
leechers' mean time to complete against the honest reference run with the same seed
(``honest loss``: how much slower everyone else got), averaged over ``--seeds``. A leecher
not complete by ``--limit`` virtual seconds counts as ``--limit``.

``--plot FILE.png`` draws both numbers per strategy (needs matplotlib:
``pip install 'torrentkit[plots]'``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import trio
import trio.testing

from torrentkit.engine.choker import Choker, PeerStats
from torrentkit.engine.peer import PeerLink
from torrentkit.engine.torrent import TorrentOptions
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import SimNode, make_torrent, payload_of, setup_swarm

KIB = 1024
MIB = 1024 * KIB
CAPACITIES = (32 * KIB, 64 * KIB, 128 * KIB)
SUBJECT_RATE = 64 * KIB
SEED_RATE = 256 * KIB
VIEW = 10  # connections an honest leecher keeps at most
LARGE_VIEW = 60
STRATEGIES = ("honest", "free rider", "large-view free rider", "strategic", "seed leaves")


class TyrantChoker(Choker[PeerLink]):
    """BitTyrant's idea on our choker: unchoke every peer that uploaded to us lately (at
    least ``base`` of them by rate, at most ``most``), so each gets a thin share of our
    upload -- enough, at the per-slot rates honest peers give, to stay in their top four."""

    def __init__(self, *, base: int, most: int, **kw: object) -> None:
        super().__init__(slots=base, **kw)  # type: ignore[arg-type]
        self.base, self.most = base, most

    def _rate_slots(self, now: float, interested: list[PeerStats[PeerLink]]) -> set[PeerLink]:
        givers = sum(1 for s in interested if s.download_rate > 0)
        self.slots = max(self.base, min(self.most, givers))
        return super()._rate_slots(now, interested)


@dataclass(slots=True)
class Outcome:
    strategy: str
    seed: int
    subject_seconds: float | None  # None: no subject (seed leaves)
    honest_same_capacity: float  # mean time of the honest 64 KiB/s leechers
    honest_all: float  # mean time of every honest leecher
    incomplete: int  # leechers not complete at the limit
    subject_peers: int  # connections the subject had at most
    seed_uploaded_copies: float | None = None  # seed leaves: copies it uploaded before


def _leecher_rates(n: int) -> list[float]:
    return [float(CAPACITIES[i % len(CAPACITIES)]) for i in range(n)]


async def run_swarm(
    strategy: str, seed: int, leechers: int, size: int, piece: int, limit: float
) -> Outcome:
    """One swarm; the subject is the last leecher (a 64 KiB/s one)."""
    rng = random.Random(seed)
    info, payload = make_torrent(rng, size, piece)
    net = SimNetwork(rng, latency=0.02)
    # the subject starts at a random place among the leechers: no head start, no lag
    where = rng.randrange(leechers)
    rates = _leecher_rates(leechers - 1)
    rates.insert(where, float(SUBJECT_RATE))
    honest = TorrentOptions(max_peers=VIEW)
    subject = {
        "free rider": TorrentOptions(max_peers=VIEW, upload_slots=0, optimistic_slots=0),
        "large-view free rider": TorrentOptions(
            max_peers=LARGE_VIEW, upload_slots=0, optimistic_slots=0
        ),
    }.get(strategy, honest)
    options = [honest] * leechers
    options[where] = subject
    done: dict[str, float] = {}
    most_peers = 0
    seed_left: float | None = None  # copies the seed had uploaded when it left
    num = info.num_pieces
    async with trio.open_nursery() as nursery:
        nodes = await setup_swarm(
            nursery, net, info, payload,
            seed_rates=[SEED_RATE], leecher_rates=rates, rng=rng,
            options=TorrentOptions(max_peers=LARGE_VIEW),  # the seed serves everyone
            leecher_options=options, start_gap=0.2,
        )  # fmt: skip
        seed_node, *peers = nodes
        peers.append(peers.pop(where))  # the subject last, as the summary expects
        me = peers[-1]
        if strategy == "strategic":
            old = me.torrent.choker
            me.torrent.choker = TyrantChoker(
                base=4, most=12, rng=random.Random(seed), rechoke_interval=old.rechoke_interval,
                optimistic_interval=old.optimistic_interval, seed_quota=old.seed_quota,
            )  # fmt: skip
        if strategy == "large-view free rider":
            me.torrent.add_peers([p.session.address for p in peers[:-1]], "large view")
        start = trio.current_time()
        while len(done) < len(peers) and trio.current_time() - start < limit:
            await trio.sleep(0.5)
            now = trio.current_time() - start
            most_peers = max(most_peers, len(me.torrent.links))
            for node in peers:
                if node.name not in done and node.torrent.is_complete:
                    done[node.name] = now
            if strategy == "seed leaves" and not seed_node.scope.cancel_called:
                held = (any(p.torrent.picker.have(i) for p in peers) for i in range(num))
                if all(held):  # one distributed copy: the seed may go
                    seed_left = seed_node.torrent.uploaded / size
                    seed_node.scope.cancel()
        nursery.cancel_scope.cancel()
    for node in peers:
        if node.name in done:
            assert payload_of(node.storage, info) == payload, node.name
    return _outcome(strategy, seed, peers, done, limit, most_peers, seed_left)


def _outcome(
    strategy: str,
    seed: int,
    peers: Sequence[SimNode],
    done: dict[str, float],
    limit: float,
    most_peers: int,
    seed_left: float | None,
) -> Outcome:
    def t(node: SimNode) -> float:
        return done.get(node.name, limit)

    has_subject = strategy not in ("honest", "seed leaves")
    others = list(peers[:-1]) if has_subject else list(peers)
    same = [t(n) for n in others if n.upload_rate == SUBJECT_RATE]
    return Outcome(
        strategy=strategy,
        seed=seed,
        subject_seconds=round(t(peers[-1]), 1) if strategy != "seed leaves" else None,
        honest_same_capacity=round(statistics.mean(same), 1),
        honest_all=round(statistics.mean(t(n) for n in others), 1),
        incomplete=sum(1 for n in peers if n.name not in done),
        subject_peers=most_peers,
        seed_uploaded_copies=round(seed_left, 2) if seed_left is not None else None,
    )


@dataclass(slots=True)
class Row:
    strategy: str
    subject_vs_honest: float | None  # subject time / honest same-capacity time
    honest_loss: float  # honest mean time / reference honest mean time - 1
    incomplete: int
    subject_peers: float


def summarize(outcomes: Iterable[Outcome]) -> list[Row]:
    by: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by.setdefault(o.strategy, []).append(o)
    reference = {o.seed: o.honest_all for o in by["honest"]}
    rows = []
    for strategy in STRATEGIES:
        runs = by.get(strategy, [])
        if not runs:
            continue
        ratios = [o.subject_seconds / o.honest_same_capacity for o in runs if o.subject_seconds]
        rows.append(
            Row(
                strategy=strategy,
                subject_vs_honest=round(statistics.mean(ratios), 2) if ratios else None,
                honest_loss=round(
                    statistics.mean(o.honest_all / reference[o.seed] - 1 for o in runs), 3
                ),
                incomplete=sum(o.incomplete for o in runs),
                subject_peers=round(statistics.mean(o.subject_peers for o in runs), 1),
            )
        )
    return rows


def print_table(rows: Sequence[Row], seeds: Sequence[int]) -> None:
    print(f"{'strategy':<24} {'subject/honest':>14} {'honest loss':>11} {'peers':>6} "
          f"{'incomplete':>10}")  # fmt: skip
    for r in rows:
        ratio = f"{r.subject_vs_honest:.2f}" if r.subject_vs_honest is not None else "-"
        print(f"{r.strategy:<24} {ratio:>14} {100 * r.honest_loss:>+10.1f}% "
              f"{r.subject_peers:>6.0f} {r.incomplete:>10}")  # fmt: skip
    print(f"(mean over seeds {', '.join(map(str, seeds))}; subject/honest: the subject's time to "
          "complete over that of honest leechers of its capacity; honest loss: how much slower "
          "the honest leechers finished than in the all-honest run)")  # fmt: skip


def plot(rows: Sequence[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.strategy for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    xs = range(len(rows))
    left.bar(xs, [r.subject_vs_honest or 0 for r in rows], color="tab:blue")
    left.axhline(1.0, color="black", linewidth=0.8)
    left.set_title("time to complete, subject / honest of its capacity")
    right.bar(xs, [100 * r.honest_loss for r in rows], color="tab:red")
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set_title("honest leechers: slower than all-honest, %")
    for ax in (left, right):
        ax.set_xticks(list(xs), names, rotation=25, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--leechers", type=int, default=24)
    p.add_argument("--size", type=float, default=4.0, help="payload MiB (default 4)")
    p.add_argument("--piece", type=int, default=32, help="piece KiB (default 32)")
    p.add_argument("--limit", type=float, default=1800.0, help="virtual seconds per run")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    args = p.parse_args(argv)
    strategies = ["honest", *(s for s in args.strategies if s != "honest")]
    outcomes = []
    for seed in args.seeds:
        for strategy in strategies:
            began = time.perf_counter()
            outcome = trio.run(
                run_swarm, strategy, seed, args.leechers, int(args.size * MIB),
                args.piece * KIB, args.limit,
                clock=trio.testing.MockClock(autojump_threshold=0),
            )  # fmt: skip
            outcomes.append(outcome)
            took = time.perf_counter() - began
            print(f"seed {seed} {strategy}: {outcome} ({took:.0f} s)", file=sys.stderr)
    rows = summarize(outcomes)
    if args.json:
        print(
            json.dumps({"runs": [asdict(o) for o in outcomes], "rows": [asdict(r) for r in rows]})
        )
    else:
        print_table(rows, args.seeds)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
