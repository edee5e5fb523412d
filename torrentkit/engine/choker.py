"""Choker: which peers we upload to (pure: time and randomness passed in).

The engine calls :meth:`Choker.rechoke` every ``rechoke_interval`` (10 s) with one
:class:`PeerStats` per connected peer and gets back the choke/unchoke messages to send, each
with a reason for the UI (docs/cli.md ``choke`` / ``unchoke`` events: ``rate``, ``optimistic``,
``snubbed``, ``seed``). The choker remembers only what it decided (who holds which slot since
when, the optimistic draw); peers missing from a call are forgotten.

Rules:

- **Regular slots** (``slots``, default 4). While leeching, tit-for-tat: the interested
  peers that upload to us fastest (``download_rate``, the engine's rolling ~20 s rate) get
  them. Snubbed peers (:func:`is_snubbed`: they unchoked us, we want their data, and no
  block arrived for ``snub_timeout`` = 60 s) cannot hold one. Ties keep the current holder,
  then fall to a random order. Uninterested peers never hold a slot.
- **Optimistic slot** (``optimistic_slots``, default 1), both while leeching and seeding: a
  choked interested peer gets a turn of ``optimistic_interval`` (30 s, i.e. every third
  rechoke; a turn ends at the first rechoke at least 25 s after it began, so a few ms of
  timer jitter cannot stretch it to 40 s). A turn also ends early when the peer loses
  interest or leaves, and becomes a regular slot if the peer earns one by rate.
  The draw is random, with newly connected peers (connected less than ``new_peer_age`` =
  60 s ago) three times as likely, done as a *shuffle bag*: every waiting peer holds tickets
  (1, or 3 while new), a draw takes one ticket uniformly at random among the eligible peers'
  tickets, and the bag is refilled when they run out. So each draw is random and new peers
  are 3x as likely to win it, yet over a round every waiting peer gets its turn. A plain
  lottery (mainline BitTorrent's) simulated for 20 peers x 60 turns leaves some peers with
  no turn and others with 6+; the bag keeps everyone within one turn of the average, which
  is what libtorrent's simulation/test_optimistic_unchoke demands (libtorrent itself picks
  the peer that waited longest, which is fair but not random).
- **Seeding**: round robin, not "fastest upload". Each interested peer gets a seed slot in
  turn: a holder keeps its slot for ``seed_turn`` (60 s) or until it has received
  ``seed_quota`` bytes in this turn (the engine passes 20 pieces' worth, libtorrent's
  ``seeding_piece_quota``), whichever comes first, then yields to the peers that have waited
  longest (never-served first, random among equals); if
  nobody is waiting it keeps the slot. Why: while seeding there is no reciprocity to
  measure, and ranking by our upload rate hands the seed's whole bandwidth to the few peers
  with the fattest download pipes (a free rider that only downloads fast wins every slot),
  while every other leecher starves and the swarm gets fewer distinct sources of each
  piece. Round robin spreads the seed's pieces over all leechers, who then trade them with
  each other; it is libtorrent's default ``seed_choking_algorithm`` for the same reasons.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from torrentkit.errors import LocalProtocolError

P = TypeVar("P", bound=Hashable)

Reason = Literal["rate", "optimistic", "snubbed", "seed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStats(Generic[P]):
    """What the choker needs to know about one connected peer at a rechoke.

    ``download_rate``: bytes/s they send us (rolling ~20 s). ``upload_rate``: bytes/s we send
    them. ``unchoked_us_at``: when they last unchoked us, ``None`` while they choke us.
    ``last_block_at``: when their last block arrived (``None``: never).
    """

    peer: P
    connected_at: float
    interested: bool  # peer_interested: they want our data
    am_interested: bool = False  # we want theirs
    download_rate: float = 0.0
    upload_rate: float = 0.0
    unchoked_us_at: float | None = None
    last_block_at: float | None = None
    uploaded: int = 0  # bytes we have sent them in all (seed turns end after seed_quota)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChokeDecision(Generic[P]):
    """Send CHOKE (``choke=True``) or UNCHOKE to ``peer``; ``reason`` is for the UI."""

    peer: P
    choke: bool
    reason: Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class RechokeResult(Generic[P]):
    """``decisions``: messages to send (only peers whose choke state changes).
    ``unchoked``: every unchoked peer and why, after this round. ``optimistic``: peers that
    began an optimistic turn this round (docs/cli.md ``optimistic`` event)."""

    decisions: tuple[ChokeDecision[P], ...]
    unchoked: Mapping[P, Reason] = field(default_factory=dict)
    optimistic: tuple[P, ...] = ()


def is_snubbed(now: float, stats: PeerStats[P], timeout: float = 60.0) -> bool:
    """``stats.peer`` unchoked us, we want its data, and it sent no block for ``timeout`` s
    (counted from the later of the unchoke and the last block)."""
    if not stats.am_interested or stats.unchoked_us_at is None:
        return False
    since = stats.unchoked_us_at
    if stats.last_block_at is not None and stats.last_block_at > since:
        since = stats.last_block_at
    return now - since >= timeout


class Choker(Generic[P]):
    """Tit-for-tat choker with optimistic unchoke and round-robin seeding."""

    def __init__(
        self,
        *,
        rng: random.Random,
        slots: int = 4,
        optimistic_slots: int = 1,
        rechoke_interval: float = 10.0,
        optimistic_interval: float = 30.0,
        snub_timeout: float = 60.0,
        new_peer_age: float = 60.0,
        new_peer_weight: int = 3,
        seed_turn: float = 60.0,
        seed_quota: int = 2**62,
    ) -> None:
        if slots < 0 or optimistic_slots < 0 or new_peer_weight < 1:
            raise LocalProtocolError("slot counts must be >= 0 and new_peer_weight >= 1")
        self._rng = rng
        self.slots = slots
        self.optimistic_slots = optimistic_slots
        self.rechoke_interval = rechoke_interval
        self.optimistic_interval = optimistic_interval
        self.snub_timeout = snub_timeout
        self.new_peer_age = new_peer_age
        self.new_peer_weight = new_peer_weight
        self.seed_turn = seed_turn
        self.seed_quota = seed_quota
        self._unchoked: dict[P, Reason] = {}
        self._slot_since: dict[P, float] = {}  # regular/seed slot holders: since when
        self._slot_start_bytes: dict[P, int] = {}  # seed slot holders: uploaded at the start
        self._optimistic: dict[P, float] = {}  # optimistic turn holders: since when
        self._last_served: dict[P, float] = {}  # seed mode: when its last seed slot ended
        self._tickets: dict[P, int] = {}  # the optimistic shuffle bag

    @property
    def unchoked(self) -> Mapping[P, Reason]:
        return dict(self._unchoked)

    def rechoke(
        self, now: float, peers: Iterable[PeerStats[P]], *, seeding: bool = False
    ) -> RechokeResult[P]:
        """Recompute every slot at time ``now``; ``seeding`` once the download is complete."""
        stats = {s.peer: s for s in peers}
        self._forget(stats)
        interested = [s for s in stats.values() if s.interested]
        if seeding:
            regular = self._seed_slots(now, interested)
            slot_reason: Reason = "seed"
        else:
            regular = self._rate_slots(now, interested)
            slot_reason = "rate"
        for peer in list(self._slot_since):
            if peer not in regular:
                del self._slot_since[peer]
                if seeding:
                    self._last_served[peer] = now
        for peer in regular:
            if peer not in self._slot_since:
                self._slot_since[peer] = now
                self._slot_start_bytes[peer] = stats[peer].uploaded
        for peer in list(self._slot_start_bytes):
            if peer not in self._slot_since:
                del self._slot_start_bytes[peer]

        # optimistic turns: end the expired, the uninterested and the promoted ones
        ending = self.optimistic_interval - self.rechoke_interval / 2
        ended: set[P] = set()
        for peer, since in list(self._optimistic.items()):
            if peer in regular or not stats[peer].interested or now - since >= ending:
                del self._optimistic[peer]
                ended.add(peer)
        started: list[P] = []
        free = self.optimistic_slots - len(self._optimistic)
        if free > 0:
            waiting = [
                s for s in interested if s.peer not in regular and s.peer not in self._optimistic
            ]
            fresh = [s for s in waiting if s.peer not in ended]
            pool = fresh if len(fresh) >= free else waiting  # rather rotate than idle
            for s in self._draw(now, pool, waiting, free):
                self._optimistic[s.peer] = now
                started.append(s.peer)

        new_state: dict[P, Reason] = {peer: slot_reason for peer in regular}
        for peer in self._optimistic:
            new_state[peer] = "optimistic"
        decisions: list[ChokeDecision[P]] = []
        for peer, old_reason in self._unchoked.items():
            if peer not in new_state and peer in stats:
                reason = old_reason
                if old_reason == "rate" and is_snubbed(now, stats[peer], self.snub_timeout):
                    reason = "snubbed"
                decisions.append(ChokeDecision(peer=peer, choke=True, reason=reason))
        for peer, reason in new_state.items():
            if peer not in self._unchoked:
                decisions.append(ChokeDecision(peer=peer, choke=False, reason=reason))
        self._unchoked = new_state
        return RechokeResult(
            decisions=tuple(decisions), unchoked=dict(new_state), optimistic=tuple(started)
        )

    def _forget(self, stats: Mapping[P, PeerStats[P]]) -> None:
        for table in (self._unchoked, self._slot_since, self._optimistic, self._tickets):
            for peer in [p for p in table if p not in stats]:
                del table[peer]
        for peer in [p for p in self._last_served if p not in stats]:
            del self._last_served[peer]

    def _shuffled(self, items: list[PeerStats[P]]) -> list[PeerStats[P]]:
        items = list(items)
        self._rng.shuffle(items)
        return items

    def _rate_slots(self, now: float, interested: list[PeerStats[P]]) -> set[P]:
        """Tit-for-tat: fastest uploaders to us; current holders win ties."""
        eligible = [s for s in interested if not is_snubbed(now, s, self.snub_timeout)]
        ranked = sorted(
            self._shuffled(eligible),
            key=lambda s: (-s.download_rate, s.peer not in self._slot_since),
        )
        return {s.peer for s in ranked[: self.slots]}

    def _seed_slots(self, now: float, interested: list[PeerStats[P]]) -> set[P]:
        """Round robin: holders keep their turn, then the longest-waiting peers."""
        never = float("-inf")

        def key(s: PeerStats[P]) -> tuple[int, float]:
            since = self._slot_since.get(s.peer)
            if since is None:  # waiting: longest wait first
                return (1, self._last_served.get(s.peer, never))
            given = s.uploaded - self._slot_start_bytes.get(s.peer, s.uploaded)
            if now - since < self.seed_turn and given < self.seed_quota:  # turn not over
                return (0, since)
            return (2, since)  # turn over: behind everyone waiting

        ranked = sorted(self._shuffled(interested), key=key)
        return {s.peer for s in ranked[: self.slots]}

    def _draw(
        self, now: float, pool: list[PeerStats[P]], waiting: list[PeerStats[P]], k: int
    ) -> list[PeerStats[P]]:
        """Draw up to ``k`` peers of ``pool`` from the shuffle bag (module docstring).

        When the pool's tickets run out a new round starts for every ``waiting`` peer: each
        gets its weight in tickets *on top of* any left over (a peer kept out of this draw
        because its turn just ended keeps its share, so heavy-weight peers lose nothing).
        """
        pool = list(pool)
        winners: list[PeerStats[P]] = []
        tickets = self._tickets
        for s in waiting:
            if s.peer not in tickets:  # first sight: a full set of tickets
                tickets[s.peer] = self._weight(now, s)
        while pool and len(winners) < k:
            if not sum(tickets[s.peer] for s in pool):
                for s in waiting:  # the round is over: a new one
                    tickets[s.peer] += self._weight(now, s)
            pick = self._rng.randrange(sum(tickets[s.peer] for s in pool))
            for i, s in enumerate(pool):
                pick -= tickets[s.peer]
                if pick < 0:
                    tickets[s.peer] -= 1
                    winners.append(s)
                    del pool[i]
                    break
        return winners

    def _weight(self, now: float, s: PeerStats[P]) -> int:
        return self.new_peer_weight if now - s.connected_at < self.new_peer_age else 1
