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
- **Not mid-piece** (seeding): a holder whose seed turn is over while it is in the middle of
  a piece with us (``partial_pieces``: it has requests pending with us in the piece, but
  not for all of it -- we already sent part of it, or others send the rest) keeps its slot
  until each of those pieces is done -- it announced HAVE, or nothing of it is pending
  with us any more (:meth:`Choker.peer_has`, then :meth:`Choker.fill`) -- or a grace of
  ``seed_grace`` (default two rechoke intervals, 20 s: time for a 1 MiB piece at 50 KiB/s
  per slot; one interval proved too short in the simulation, where most graces ran out
  before a 256 KiB piece was done) passes, whichever comes first. Pieces it
  has only queued with us do not count: dropping those loses nothing, and with deep
  request pipelines they would hold the slot for many pieces. Choking it mid-piece would
  throw away the requests for the rest of a piece it already holds part of (it then waits
  choked for a turn, or finds the blocks elsewhere); the grace bounds what the waiting peer
  loses. Only the round-robin seed turn has this rule: the optimistic turn is a fixed 30 s
  trial, and tit-for-tat chokes while leeching have a reason (someone uploads faster).
- **Slots freed between rechokes** (:meth:`Choker.fill`): when a holder leaves, loses
  interest, completes or finishes its mid-piece grace, the engine calls ``fill`` at once
  (as libtorrent rechokes on these events, not only on its timer). ``fill`` only releases
  those holders and unchokes waiting peers into the free slots (by rate while leeching, the
  longest-waiting while seeding, the shuffle bag for the optimistic slot); every other
  holder keeps its slot and its turn untouched.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from torrentkit.errors import LocalProtocolError

P = TypeVar("P", bound=Hashable)

Reason = Literal["rate", "optimistic", "snubbed", "seed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStats(Generic[P]):
    """What the choker needs to know about one connected peer at a rechoke.

    ``download_rate``: bytes/s they send us (rolling ~20 s). ``upload_rate``: bytes/s we send
    them. ``unchoked_us_at``: when they last unchoked us, ``None`` while they choke us.
    ``last_block_at``: when their last block arrived (``None``: never).
    ``partial_pieces``: pieces they are in the middle of with us: requests for them are
    pending with us, but not for the whole piece (the engine fills it in only while
    seeding, for the peers it unchokes: the mid-piece rule).
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
    partial_pieces: frozenset[int] = frozenset()


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
        seed_grace: float | None = None,
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
        self.seed_grace = 2 * rechoke_interval if seed_grace is None else seed_grace
        self._unchoked: dict[P, Reason] = {}
        self._slot_since: dict[P, float] = {}  # regular/seed slot holders: since when
        self._slot_start_bytes: dict[P, int] = {}  # seed slot holders: uploaded at the start
        self._optimistic: dict[P, float] = {}  # optimistic turn holders: since when
        self._last_served: dict[P, float] = {}  # seed mode: when its last seed slot ended
        self._tickets: dict[P, int] = {}  # the optimistic shuffle bag
        #: seed slot holders kept past their turn: since when, pieces they still finish
        self._finishing: dict[P, tuple[float, set[int]]] = {}

    @property
    def unchoked(self) -> Mapping[P, Reason]:
        return dict(self._unchoked)

    def is_unchoked(self, peer: P) -> bool:
        return peer in self._unchoked

    def has_free_slot(self) -> bool:
        """Fewer peers unchoked than regular plus optimistic slots (O(1))."""
        return len(self._unchoked) < self.slots + self.optimistic_slots

    def finishing(self, peer: P) -> bool:
        """``peer`` holds its seed slot past its turn, to finish a piece (mid-piece rule)."""
        return peer in self._finishing

    def peer_has(self, peer: P, piece: int, partial_pieces: AbstractSet[int]) -> bool:
        """``peer`` announced HAVE ``piece``; ``partial_pieces`` as in :class:`PeerStats`,
        now. True when ``peer`` held its slot past its turn to finish pieces and none is
        left unfinished (each announced or nothing of it pending with us any more): its slot
        is free now, call :meth:`fill`."""
        entry = self._finishing.get(peer)
        if entry is None or not entry[1]:
            return False
        pieces = entry[1]
        pieces.discard(piece)
        pieces.intersection_update(partial_pieces)
        return not pieces

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
            self._finishing.clear()
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
        return self._commit(now, stats, new_state, started, snub_reasons=True)

    def fill(
        self, now: float, peers: Iterable[PeerStats[P]], *, seeding: bool = False
    ) -> RechokeResult[P]:
        """Give free slots to waiting peers at once, between rechokes.

        For the events that free a slot (a holder left, lost interest, completed -- the
        engine reports a complete peer as not interested -- or finished the pieces it held
        its seed slot past its turn for) and for a peer that becomes interested while a slot
        is free. Releases only those holders, then unchokes waiting interested peers into
        the free slots: regular slots to the fastest uploaders to us while leeching (never a
        snubbed one), to the longest-waiting peers while seeding; a free optimistic slot
        starts a turn from the shuffle bag. Every other holder keeps its slot, its reason and
        its turn's start: the round robin and the optimistic rotation are not disturbed.
        """
        stats = {s.peer: s for s in peers}
        self._forget(stats)
        released = {
            peer: reason
            for peer, reason in self._unchoked.items()
            if not stats[peer].interested
            or (peer in self._finishing and not self._finishing[peer][1])
        }
        for peer in released:
            self._finishing.pop(peer, None)
            self._optimistic.pop(peer, None)
            if self._slot_since.pop(peer, None) is not None:
                self._slot_start_bytes.pop(peer, None)
                if seeding:
                    self._last_served[peer] = now
        holders = set(self._slot_since) | set(self._optimistic)
        waiting = [s for s in stats.values() if s.interested and s.peer not in holders]
        free = self.slots - len(self._slot_since)
        if free > 0 and waiting:
            if seeding:
                never = float("-inf")
                ranked = sorted(
                    self._shuffled(waiting), key=lambda s: self._last_served.get(s.peer, never)
                )
            else:
                eligible = [s for s in waiting if not is_snubbed(now, s, self.snub_timeout)]
                ranked = sorted(self._shuffled(eligible), key=lambda s: -s.download_rate)
            for s in ranked[:free]:
                self._slot_since[s.peer] = now
                self._slot_start_bytes[s.peer] = s.uploaded
        started: list[P] = []
        free = self.optimistic_slots - len(self._optimistic)
        if free > 0:
            pool = [s for s in waiting if s.peer not in self._slot_since]
            fresh = [s for s in pool if s.peer not in released]
            for s in self._draw(now, fresh if len(fresh) >= free else pool, pool, free):
                self._optimistic[s.peer] = now
                started.append(s.peer)
        slot_reason: Reason = "seed" if seeding else "rate"
        new_state: dict[P, Reason] = {}
        for peer in self._slot_since:  # holders keep their reason until the next rechoke
            old = self._unchoked.get(peer)
            new_state[peer] = old if old is not None and old != "optimistic" else slot_reason
        for peer in self._optimistic:
            new_state[peer] = "optimistic"
        return self._commit(now, stats, new_state, started, snub_reasons=False)

    def _commit(
        self,
        now: float,
        stats: Mapping[P, PeerStats[P]],
        new_state: dict[P, Reason],
        started: list[P],
        *,
        snub_reasons: bool,
    ) -> RechokeResult[P]:
        """Adopt ``new_state``; the messages for the peers whose choke state changes."""
        decisions: list[ChokeDecision[P]] = []
        for peer, old_reason in self._unchoked.items():
            if peer not in new_state and peer in stats:
                reason = old_reason
                if (
                    snub_reasons
                    and old_reason == "rate"
                    and is_snubbed(now, stats[peer], self.snub_timeout)
                ):
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
        tables: tuple[dict[P, Any], ...] = (
            self._unchoked,
            self._slot_since,
            self._slot_start_bytes,
            self._optimistic,
            self._tickets,
            self._finishing,
            self._last_served,
        )
        for table in tables:
            for peer in [p for p in table if p not in stats]:
                del table[peer]

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
        chosen = ranked[: self.slots]
        # Not mid-piece: a holder that would lose its slot while it still has requests
        # pending with us keeps it, in place of the newcomer that ranked last.
        newcomers = [s for s in chosen if s.peer not in self._slot_since]
        kept = [
            s
            for s in ranked[self.slots :]
            if s.peer in self._slot_since and self._mid_piece(now, s)
        ][: len(newcomers)]
        if kept:
            bumped = {s.peer for s in newcomers[len(newcomers) - len(kept) :]}
            chosen = [s for s in chosen if s.peer not in bumped] + kept
        keep = {s.peer for s in kept}
        for peer in [p for p in self._finishing if p not in keep]:
            del self._finishing[peer]
        return {s.peer for s in chosen}

    def _mid_piece(self, now: float, s: PeerStats[P]) -> bool:
        """May seed slot holder ``s``, whose turn is over, keep its slot to finish the pieces
        it is in the middle of? The first time: if it has any (they are remembered).
        Later: until it has announced all of them or the grace is over (at the first
        rechoke at least ``seed_grace`` minus half a rechoke interval later, as for the
        optimistic turn, so timer jitter does not add a rechoke interval)."""
        if self.seed_grace <= 0:
            return False
        entry = self._finishing.get(s.peer)
        if entry is None:
            if not s.partial_pieces:
                return False
            self._finishing[s.peer] = (now, set(s.partial_pieces))
            return True
        began, pieces = entry
        pieces.intersection_update(s.partial_pieces)  # the served ones are done
        return bool(pieces) and now - began < self.seed_grace - self.rechoke_interval / 2

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
