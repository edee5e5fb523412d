"""Choker and rolling-rate tests: explicit ``now`` values (the cores are pure), plus one
trio loop under autojump_clock driving rechokes for 30 simulated minutes."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

import pytest
import trio

from torrentkit.engine.choker import ChokeDecision, Choker, PeerStats, is_snubbed
from torrentkit.engine.rates import RollingRate
from torrentkit.errors import LocalProtocolError


def stats(
    peer: str,
    rate: float = 0.0,
    *,
    interested: bool = True,
    connected_at: float = -1000.0,
    up: float = 0.0,
    unchoked_us_at: float | None = None,
    last_block_at: float | None = None,
    uploaded: int = 0,
    partial: Iterable[int] = (),
) -> PeerStats[str]:
    return PeerStats(
        peer=peer,
        connected_at=connected_at,
        interested=interested,
        am_interested=unchoked_us_at is not None,
        download_rate=rate,
        upload_rate=up,
        unchoked_us_at=unchoked_us_at,
        last_block_at=last_block_at,
        uploaded=uploaded,
        partial_pieces=frozenset(partial),
    )


def by_reason(decisions: Iterable[ChokeDecision[str]]) -> dict[tuple[bool, str], set[str]]:
    out: dict[tuple[bool, str], set[str]] = {}
    for d in decisions:
        out.setdefault((d.choke, d.reason), set()).add(d.peer)
    return out


class Tracker:
    """Adds up how long each peer was unchoked, from the decisions alone."""

    def __init__(self) -> None:
        self.since: dict[str, float] = {}
        self.total: defaultdict[str, float] = defaultdict(float)
        self.optimistic_turns: Counter[str] = Counter()

    def apply(self, now: float, decisions: Iterable[ChokeDecision[str]]) -> None:
        for d in decisions:
            if d.choke:
                self.total[d.peer] += now - self.since.pop(d.peer)
            else:
                assert d.peer not in self.since, f"{d.peer} unchoked twice"
                self.since[d.peer] = now

    def close(self, now: float) -> None:
        for peer, since in self.since.items():
            self.total[peer] += now - since
        self.since.clear()


# ------------------------------------------------------------- regular slots


def test_rechoke_unchokes_the_four_fastest_uploaders_and_one_optimistic() -> None:
    choker: Choker[str] = Choker(rng=random.Random(1))
    peers = [stats(f"p{i}", rate=1000.0 * i) for i in range(10)]
    res = choker.rechoke(0.0, peers)
    groups = by_reason(res.decisions)
    assert groups[(False, "rate")] == {"p9", "p8", "p7", "p6"}
    assert len(groups[(False, "optimistic")]) == 1
    assert set(res.optimistic) == groups[(False, "optimistic")]
    assert not groups.get((True, "rate"))
    assert len(res.unchoked) == 5
    # nothing changed 10 s later: no messages
    assert choker.rechoke(10.0, peers).decisions == ()


def test_a_faster_peer_takes_the_slowest_slot() -> None:
    choker: Choker[str] = Choker(rng=random.Random(1), optimistic_slots=0)
    peers = [stats(f"p{i}", rate=1000.0 * (i + 1)) for i in range(5)]
    choker.rechoke(0.0, peers)
    peers[0] = stats("p0", rate=9000.0)
    groups = by_reason(choker.rechoke(10.0, peers).decisions)
    assert groups == {(True, "rate"): {"p1"}, (False, "rate"): {"p0"}}


def test_ties_keep_current_holders() -> None:
    choker: Choker[str] = Choker(rng=random.Random(2), optimistic_slots=0)
    peers = [stats(f"p{i}") for i in range(8)]
    first = set(choker.rechoke(0.0, peers).unchoked)
    for t in range(1, 20):
        res = choker.rechoke(10.0 * t, peers)
        assert res.decisions == () and set(res.unchoked) == first


def test_uninterested_peers_never_take_regular_slots() -> None:
    choker: Choker[str] = Choker(rng=random.Random(3))
    peers = [stats(f"fast{i}", rate=1e6, interested=False) for i in range(4)]
    peers += [stats(f"slow{i}", rate=10.0) for i in range(3)]
    for t in range(10):
        res = choker.rechoke(10.0 * t, peers)
        assert not any(p.startswith("fast") for p in res.unchoked)
    assert set(res.unchoked) == {"slow0", "slow1", "slow2"}
    # a holder that loses interest is choked at the next rechoke
    peers[-1] = stats("slow2", rate=10.0, interested=False)
    res = choker.rechoke(200.0, peers)
    assert by_reason(res.decisions) == {(True, "rate"): {"slow2"}}


def test_snubbed_peer_loses_its_regular_slot() -> None:
    assert not is_snubbed(100.0, stats("x", unchoked_us_at=50.0))
    assert is_snubbed(110.0, stats("x", unchoked_us_at=50.0))
    assert not is_snubbed(110.0, stats("x", unchoked_us_at=0.0, last_block_at=60.0))
    assert not is_snubbed(1000.0, stats("x"))  # it chokes us: not a snub
    choker: Choker[str] = Choker(rng=random.Random(4), optimistic_slots=0)
    peers = [stats(f"p{i}", rate=100.0 * i) for i in range(5)]
    peers[4] = stats("p4", rate=1e6, unchoked_us_at=0.0, last_block_at=5.0)
    assert "p4" in choker.rechoke(10.0, peers).unchoked
    res = choker.rechoke(70.0, peers)  # no block since 5.0: snubbed at 65
    assert by_reason(res.decisions) == {(True, "snubbed"): {"p4"}, (False, "rate"): {"p0"}}
    assert "p4" not in res.unchoked
    # a block arrives: the slot comes back
    peers[4] = stats("p4", rate=1e6, unchoked_us_at=0.0, last_block_at=75.0)
    res = choker.rechoke(80.0, peers)
    assert by_reason(res.decisions) == {(False, "rate"): {"p4"}, (True, "rate"): {"p0"}}


def test_departed_peers_are_forgotten() -> None:
    choker: Choker[str] = Choker(rng=random.Random(5))
    peers = [stats(f"p{i}", rate=float(i)) for i in range(6)]
    choker.rechoke(0.0, peers)
    res = choker.rechoke(10.0, peers[:-1])  # p5 left: no CHOKE to send it
    assert all(d.peer != "p5" for d in res.decisions)
    assert "p5" not in res.unchoked and "p5" not in choker.unchoked


def test_bad_settings_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        Choker(rng=random.Random(0), slots=-1)


# ---------------------------------------------------------- optimistic slot


def test_optimistic_unchoke_rotates_every_30_seconds() -> None:
    choker: Choker[str] = Choker(rng=random.Random(6))
    peers = [stats(f"fast{i}", rate=1e6) for i in range(4)]
    peers += [stats(f"slow{i}") for i in range(6)]
    starts: list[float] = []
    holder: list[str] = []
    for k in range(13):
        now = 10.0 * k + (0.003 if k % 2 else -0.002)  # a little timer jitter
        res = choker.rechoke(now, peers)
        if res.optimistic:
            starts.append(round(now))
            holder += res.optimistic
            assert by_reason(res.decisions).get((False, "optimistic")) == set(res.optimistic)
            if k:
                assert by_reason(res.decisions).get((True, "optimistic")) == {holder[-2]}
        assert sum(1 for r in res.unchoked.values() if r == "optimistic") == 1
    assert starts == [0, 30, 60, 90, 120]
    assert all(a != b for a, b in itertools.pairwise(holder))


def test_optimistic_turn_ends_when_the_peer_loses_interest() -> None:
    choker: Choker[str] = Choker(rng=random.Random(7), slots=0)
    peers = [stats(f"p{i}") for i in range(3)]
    (first,) = choker.rechoke(0.0, peers).optimistic
    peers = [stats(p.peer, interested=p.peer != first) for p in peers]
    res = choker.rechoke(10.0, peers)
    assert len(res.optimistic) == 1 and res.optimistic[0] != first
    assert (True, "optimistic") in by_reason(res.decisions)


def test_optimistic_peer_that_reciprocates_is_promoted_to_a_rate_slot() -> None:
    choker: Choker[str] = Choker(rng=random.Random(8), slots=1)
    peers = [stats("a", rate=50.0), stats("b"), stats("c")]
    res = choker.rechoke(0.0, peers)
    (opt,) = res.optimistic
    peers = [stats("a", rate=50.0)] + [
        stats(p, rate=500.0 if p == opt else 0.0) for p in ("b", "c")
    ]
    res = choker.rechoke(10.0, peers)
    assert res.unchoked[opt] == "rate"  # no message: it stays unchoked
    assert opt not in {d.peer for d in res.decisions}
    (new_opt,) = res.optimistic  # the optimistic slot is refilled at once
    assert new_opt != opt and res.unchoked[new_opt] == "optimistic"
    # "a" lost the rate slot: choked, unless the draw just gave it the optimistic turn
    if new_opt != "a":
        assert by_reason(res.decisions) == {(True, "rate"): {"a"}, (False, "optimistic"): {new_opt}}


def test_new_peers_are_three_times_as_likely_per_draw() -> None:
    wins: Counter[str] = Counter()
    for seed in range(3000):
        choker: Choker[str] = Choker(rng=random.Random(seed), slots=0)
        peers = [stats("new", connected_at=90.0)] + [stats(f"old{i}") for i in range(3)]
        (winner,) = choker.rechoke(100.0, peers).optimistic
        wins[winner] += 1
    old = sum(wins[f"old{i}"] for i in range(3)) / 3
    assert 2.5 < wins["new"] / old < 3.5, wins  # 3/6 against 1/6 each


def test_over_many_rotations_new_peers_get_three_times_the_turns() -> None:
    # five peers keep reconnecting (always new), five stay: 300 rotations
    choker: Choker[str] = Choker(rng=random.Random(9), slots=0)
    turns: Counter[str] = Counter()
    for k in range(900):
        now = 10.0 * k
        peers = [stats(f"new{i}", connected_at=now - 5.0) for i in range(5)]
        peers += [stats(f"old{i}", connected_at=-1000.0) for i in range(5)]
        for peer in choker.rechoke(now, peers).optimistic:
            turns[peer] += 1
    new = sum(v for p, v in turns.items() if p.startswith("new"))
    old = sum(v for p, v in turns.items() if p.startswith("old"))
    assert new + old == 300
    assert 2.7 < new / old < 3.3, turns
    # and within each group the turns are even (the shuffle bag)
    for group in ("new", "old"):
        counts = [v for p, v in turns.items() if p.startswith(group)]
        assert max(counts) - min(counts) <= 3, turns


# --------------------------------------------------------------- seed mode


def test_seed_mode_round_robin_serves_every_interested_peer_in_turn() -> None:
    choker: Choker[str] = Choker(rng=random.Random(10), optimistic_slots=0, seed_turn=60.0)
    # upload rates differ wildly: round robin ignores them
    peers = [stats(f"p{i}", up=10.0**i) for i in range(12)]
    peers.append(stats("idle", up=1e9, interested=False))
    tracker = Tracker()
    for k in range(181):  # 30 minutes
        now = 10.0 * k
        res = choker.rechoke(now, peers, seeding=True)
        assert all(d.reason == "seed" for d in res.decisions)
        assert len(res.unchoked) == 4 and "idle" not in res.unchoked
        tracker.apply(now, res.decisions)
    tracker.close(1800.0)
    # 4 slots x 1800 s / 12 peers = 600 s each, turns of 60 s
    for i in range(12):
        assert abs(tracker.total[f"p{i}"] - 600.0) <= 60.0, tracker.total


def test_seed_mode_keeps_slots_when_nobody_waits_and_serves_the_longest_waiting() -> None:
    choker: Choker[str] = Choker(rng=random.Random(11), optimistic_slots=0)
    peers = [stats(f"p{i}") for i in range(3)]
    assert len(choker.rechoke(0.0, peers, seeding=True).unchoked) == 3
    for k in range(1, 20):
        assert choker.rechoke(10.0 * k, peers, seeding=True).decisions == ()
    # five more arrive: after their turns are up, holders yield to the newcomers first
    peers += [stats(f"q{i}") for i in range(5)]
    res = choker.rechoke(200.0, peers, seeding=True)
    groups = by_reason(res.decisions)
    assert groups[(True, "seed")] == {"p0", "p1", "p2"}
    assert len(groups[(False, "seed")]) == 4 and groups[(False, "seed")] < {
        f"q{i}" for i in range(5)
    }
    res = choker.rechoke(260.0, peers, seeding=True)
    unchoked = set(res.unchoked)
    waited_since_0 = {f"q{i}" for i in range(5)} - set(groups[(False, "seed")])
    assert waited_since_0 <= unchoked  # the one q left out goes first


def test_switching_to_seed_mode_keeps_current_holders_until_their_turn_ends() -> None:
    choker: Choker[str] = Choker(rng=random.Random(12), optimistic_slots=0)
    peers = [stats(f"p{i}", rate=float(i)) for i in range(6)]
    before = set(choker.rechoke(0.0, peers).unchoked)
    res = choker.rechoke(10.0, peers, seeding=True)
    assert set(res.unchoked) == before and res.decisions == ()
    assert set(res.unchoked.values()) == {"seed"}


# ------------------------------------------- slots freed between rechokes (fill)


def test_a_departed_holders_slot_goes_to_a_waiting_peer_at_once() -> None:
    choker: Choker[str] = Choker(rng=random.Random(20), optimistic_slots=0, slots=2)
    peers = [stats("a", rate=300.0), stats("b", rate=200.0), stats("c", rate=100.0)]
    assert set(choker.rechoke(0.0, peers).unchoked) == {"a", "b"}
    # at 3.0 "a" disconnects: "c" is unchoked now, "b" is not touched (no message)
    res = choker.fill(3.0, [p for p in peers if p.peer != "a"])
    assert res.decisions == (ChokeDecision(peer="c", choke=False, reason="rate"),)
    assert res.unchoked == {"b": "rate", "c": "rate"}
    # nothing freed: fill does nothing
    assert choker.fill(4.0, peers[1:]).decisions == ()


def test_a_holder_that_loses_interest_is_choked_and_replaced() -> None:
    choker: Choker[str] = Choker(rng=random.Random(21), optimistic_slots=0, slots=2)
    peers = [stats("a", rate=300.0), stats("b", rate=200.0), stats("c", rate=100.0)]
    choker.rechoke(0.0, peers)
    peers[0] = stats("a", rate=300.0, interested=False)  # NotInterested at 2.0 (or complete)
    groups = by_reason(choker.fill(2.0, peers).decisions)
    assert groups == {(True, "rate"): {"a"}, (False, "rate"): {"c"}}


def test_fill_never_gives_a_regular_slot_to_a_snubbed_peer() -> None:
    choker: Choker[str] = Choker(rng=random.Random(22), optimistic_slots=0, slots=1)
    choker.rechoke(0.0, [stats("a", rate=5.0)])
    snubber = stats("s", rate=1e6, unchoked_us_at=0.0, last_block_at=0.0)
    assert choker.fill(70.0, [snubber]).decisions == ()  # "a" left; "s" is snubbed at 60
    assert choker.has_free_slot()


def test_a_freed_optimistic_slot_starts_a_new_turn() -> None:
    choker: Choker[str] = Choker(rng=random.Random(23), slots=1)
    peers = [stats("fast", rate=1e6)] + [stats(f"p{i}") for i in range(4)]
    (first,) = choker.rechoke(0.0, peers).optimistic
    rest = [p for p in peers if p.peer != first]
    res = choker.fill(12.0, rest)  # the optimistic holder left at 12.0
    (second,) = res.optimistic
    assert second != "fast" and res.unchoked[second] == "optimistic"
    # its turn is 30 s from 12.0: it survives the rechokes at 20 and 30, ends at 50
    for now in (20.0, 30.0):
        assert choker.rechoke(now, rest).unchoked[second] == "optimistic"
    assert second not in choker.rechoke(50.0, rest).unchoked


def test_seed_fill_serves_the_longest_waiting_and_keeps_the_others_turns() -> None:
    choker: Choker[str] = Choker(rng=random.Random(24), optimistic_slots=0, slots=2)
    peers = [stats(p) for p in ("a", "b", "c", "d")]
    first = set(choker.rechoke(0.0, peers, seeding=True).unchoked)
    assert len(first) == 2
    res = choker.rechoke(60.0, peers, seeding=True)  # turns over: the other two
    second = set(res.unchoked)
    assert second == {"a", "b", "c", "d"} - first
    gone, stays = sorted(second)
    # at 65 one holder leaves: of the two waiting since 60, one takes its slot at once
    left = [p for p in peers if p.peer != gone]
    res = choker.fill(65.0, left, seeding=True)
    (newcomer,) = [d.peer for d in res.decisions]
    assert newcomer in first and not res.decisions[0].choke
    # "stays" still ends its turn at 120 (60 s from 60), the newcomer keeps its until 130
    res = choker.rechoke(120.0, left, seeding=True)
    assert stays not in res.unchoked and newcomer in res.unchoked


# ------------------------------------------------ seeding: not mid-piece


def test_a_seed_keeps_a_peer_in_the_middle_of_a_piece_until_it_is_done() -> None:
    choker: Choker[str] = Choker(rng=random.Random(25), optimistic_slots=0, slots=1)
    assert set(choker.rechoke(0.0, [stats("a")], seeding=True).unchoked) == {"a"}
    # at 60 "a"'s turn is over and "w" waits, but "a" is in the middle of pieces 7 and 9
    peers = [stats("a", partial=[7, 9]), stats("w")]
    res = choker.rechoke(60.0, peers, seeding=True)
    assert res.decisions == () and set(res.unchoked) == {"a"}
    assert choker.finishing("a")
    assert not choker.peer_has("a", 7, {9, 12})  # 9 still unfinished (12 is new: ignored)
    assert choker.peer_has("a", 3, {12})  # nothing of 9 pending with us any more: done
    res = choker.fill(63.5, peers, seeding=True)  # the engine fills at once
    assert by_reason(res.decisions) == {(True, "seed"): {"a"}, (False, "seed"): {"w"}}
    assert not choker.finishing("a")


def test_the_mid_piece_grace_is_bounded() -> None:
    choker: Choker[str] = Choker(rng=random.Random(26), optimistic_slots=0, slots=1)
    choker.rechoke(0.0, [stats("a")], seeding=True)
    peers = [stats("a", partial=[7]), stats("w")]
    assert set(choker.rechoke(60.0, peers, seeding=True).unchoked) == {"a"}
    assert set(choker.rechoke(70.0, peers, seeding=True).unchoked) == {"a"}
    # piece 7 still unfinished 20 s (seed_grace: two rechoke intervals) after the turn
    res = choker.rechoke(80.0, peers, seeding=True)
    assert by_reason(res.decisions) == {(True, "seed"): {"a"}, (False, "seed"): {"w"}}


def test_queued_requests_alone_do_not_hold_a_slot() -> None:
    """A peer with no piece partly served (``partial`` empty) yields at its turn's end."""
    choker: Choker[str] = Choker(rng=random.Random(27), optimistic_slots=0, slots=1)
    choker.rechoke(0.0, [stats("a")], seeding=True)
    res = choker.rechoke(60.0, [stats("a"), stats("w")], seeding=True)
    assert by_reason(res.decisions) == {(True, "seed"): {"a"}, (False, "seed"): {"w"}}
    # and the mid-piece rule is for seeding only: tit-for-tat chokes have their reason
    leech: Choker[str] = Choker(rng=random.Random(27), optimistic_slots=0, slots=1)
    leech.rechoke(0.0, [stats("a", rate=1.0)])
    res = leech.rechoke(10.0, [stats("a", rate=1.0, partial=[7]), stats("w", rate=9.0)])
    assert by_reason(res.decisions) == {(True, "rate"): {"a"}, (False, "rate"): {"w"}}


def test_seed_round_robin_stays_fair_when_every_peer_is_always_mid_piece() -> None:
    """12 peers, 4 slots, 30 minutes; every holder is always in the middle of a piece:
    the even ones finish theirs 3 s after their turn (the engine fills at once), the odd
    ones use up the whole 20 s grace. The slots are never idle, every peer's turn comes
    round about as often (within two over 30 minutes: the short turns cycle faster), and a
    turn is never longer than 60 s + the grace: the odd peers get more time only by what
    the grace allows (4 x 1800 / 12 = 600 s on average)."""
    choker: Choker[str] = Choker(rng=random.Random(28), optimistic_slots=0)
    names = [f"p{i}" for i in range(12)]
    peers = [stats(p, partial=[i]) for i, p in enumerate(names)]
    tracker = Tracker()
    turns: Counter[str] = Counter()
    for k in range(181):
        now = 10.0 * k
        res = choker.rechoke(now, peers, seeding=True)
        tracker.apply(now, res.decisions)
        turns.update(d.peer for d in res.decisions if not d.choke)
        done = [p for p in names[::2] if choker.finishing(p)]
        if done:
            for p in done:
                assert choker.peer_has(p, int(p[1:]), set())
            res = choker.fill(now + 3.0, peers, seeding=True)
            tracker.apply(now + 3.0, res.decisions)
            turns.update(d.peer for d in res.decisions if not d.choke)
        assert len(choker.unchoked) == 4
    tracker.close(1800.0)
    assert max(turns.values()) - min(turns.values()) <= 2, turns
    even = [tracker.total[p] for p in names[::2]]
    odd = [tracker.total[p] for p in names[1::2]]
    assert sum(even) + sum(odd) == pytest.approx(4 * 1800.0)
    assert all(500.0 <= t <= 640.0 for t in even), even  # 8-9 turns of 63 s
    assert all(540.0 <= t <= 760.0 for t in odd), odd  # 7-9 turns of 80 s


# ------------------------------------------------ simulation (autojump_clock)


async def _drive(
    choker: Choker[str], peers: Callable[[float], list[PeerStats[str]]], minutes: int
) -> Tracker:
    tracker = Tracker()
    start = trio.current_time()
    rng = random.Random(99)
    while (now := trio.current_time() - start) < minutes * 60:
        tracker.apply(now, choker.rechoke(now, peers(now)).decisions)
        await trio.sleep(10.0 + rng.uniform(-0.05, 0.05))
    tracker.close(trio.current_time() - start)
    return tracker


async def test_optimistic_unchoke_time_is_fair_over_30_minutes(autojump_clock: object) -> None:
    """libtorrent's simulation/test_optimistic_unchoke: 20 idle peers, only the optimistic
    slot, 30 minutes; each peer's unchoked time is near 30 min / 20 = 90 s."""
    with trio.fail_after(4000):
        choker: Choker[str] = Choker(rng=random.Random(13), slots=0, optimistic_slots=1)
        names = [f"p{i}" for i in range(20)]
        tracker = await _drive(choker, lambda now: [stats(p, connected_at=0.0) for p in names], 30)
    average = sum(tracker.total.values()) / 20
    assert abs(average - 90.0) < 1.0
    for name in names:
        assert abs(tracker.total[name] - average) <= 2.0, tracker.total


async def test_optimistic_share_with_regular_slots_taken(autojump_clock: object) -> None:
    """4 fast peers hold the regular slots; the 16 others share the optimistic slot
    (30 min x 1 slot / 16 = 112.5 s each, in 30 s turns: 90 or 120 s), and peers that join
    late are served soon."""
    with trio.fail_after(4000):
        choker: Choker[str] = Choker(rng=random.Random(14))

        def peers(now: float) -> list[PeerStats[str]]:
            out = [stats(f"fast{i}", rate=1e6, connected_at=0.0) for i in range(4)]
            out += [stats(f"slow{i}", connected_at=0.0) for i in range(14)]
            if now >= 600:  # two late joiners
                out += [stats(f"late{i}", connected_at=600.0) for i in range(2)]
            return out

        tracker = await _drive(choker, peers, 30)
    for i in range(4):
        assert tracker.total[f"fast{i}"] == pytest.approx(1800.0, abs=1.0)
    slow = [tracker.total[f"slow{i}"] for i in range(14)]
    assert max(slow) - min(slow) <= 31.0, slow
    late = [tracker.total[f"late{i}"] for i in range(2)]
    assert min(late) >= 60.0, late  # 3 tickets each when they joined
    assert sum(slow) + sum(late) == pytest.approx(1800.0, abs=1.0)


# ------------------------------------------------------------- rolling rate


def test_rolling_rate_steady_stream_and_silence() -> None:
    rate = RollingRate(now=0.0, window=20)
    for t in range(60):
        rate.add(t + 0.5, 1000)
    assert rate.rate(60.0) == pytest.approx(1000.0, rel=0.06)
    assert rate.total == 60_000
    # at 75.0 the window is seconds 56..75 (19 s up to now): 4 s of data left in it
    assert rate.rate(75.0) == pytest.approx(4 * 1000 / 19)
    assert rate.rate(81.0) == 0.0
    assert rate.rate(5000.0) == 0.0


def test_rolling_rate_young_peer_and_first_instant() -> None:
    rate = RollingRate(now=100.0)
    for t in range(5):
        rate.add(100.0 + t, 1_000_000)
    assert rate.rate(105.0) == pytest.approx(1_000_000.0)  # over 5 s, not 20
    burst = RollingRate(now=0.0)
    burst.add(0.01, 16384)
    assert burst.rate(0.02) == 16384.0  # never divided by less than 1 s


def test_rolling_rate_clock_going_back_and_bad_input() -> None:
    rate = RollingRate(now=10.0, window=5)
    rate.add(12.0, 500)
    rate.add(11.0, 500)  # an earlier time counts in the newest second
    assert rate.total == 1000
    assert rate.rate(12.5) == pytest.approx(1000 / 2.5)
    with pytest.raises(LocalProtocolError):
        rate.add(13.0, -1)
    with pytest.raises(LocalProtocolError):
        RollingRate(now=0.0, window=0)
