"""Peer book tests: explicit ``now`` values (the book is pure), plus a hypothesis state
machine for its invariants (never past its cap; never hands out a banned, connected, own or
already-connecting address)."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from torrentkit.engine.peerbook import (
    MAX_DIAL_FAILURES,
    MAX_PARTED_SEEDS,
    RECONNECT_AFTER,
    PeerBook,
    dial_backoff,
    keep_new_connection,
)
from torrentkit.ids import PeerAddr

A = PeerAddr("10.0.0.1", 6881)
B = PeerAddr("10.0.0.2", 6881)
C = PeerAddr("10.0.0.3", 6881)
NOBODY: frozenset[PeerAddr] = frozenset()


def book(*addrs: PeerAddr, max_known: int = 2000) -> PeerBook:
    b = PeerBook(random.Random(0), max_known=max_known)
    b.add(addrs, "tracker", 0.0)
    return b


def dial(
    b: PeerBook,
    now: float,
    room: int = 50,
    *,
    connected: frozenset[PeerAddr] = NOBODY,
    finished: bool = False,
) -> set[PeerAddr]:
    return set(b.candidates(now, room, connected=connected, finished=finished))


# ---------------------------------------------------------------- adding


def test_add_skips_port_zero_duplicates_self_and_banned() -> None:
    b = book()
    b.self_connection(C)
    b.ban(PeerAddr("10.0.0.9", 1))
    added = b.add([A, A, PeerAddr("10.0.0.4", 0), C, PeerAddr("10.0.0.9", 1), B], "dht", 0.0)
    assert added == 2
    assert set(b) == {A, B}
    assert b.add([A], "tracker", 1.0) == 0
    assert b.source(A) == "dht"  # the first source stays
    assert b.sources() == {A: "dht", B: "dht"}
    assert b.source(C) is None


def test_same_ip_different_ports_are_different_peers() -> None:
    b = book(PeerAddr("10.0.0.1", 1), PeerAddr("10.0.0.1", 2))
    assert len(b) == 2


def test_the_cap_refuses_a_flood() -> None:
    b = book(max_known=3)
    flood = [PeerAddr("10.1.0.1", port) for port in range(1, 1001)]
    assert b.add(flood, "pex", 0.0) == 3
    assert len(b) == 3
    assert b.add([A], "tracker", 0.0) == 0
    # An address that fails 8 times in a row leaves, making room.
    gone = next(iter(b))
    now = 0.0
    for _ in range(MAX_DIAL_FAILURES):
        b.dial_failed(gone, now)
        now += 1000
    assert gone not in b
    assert b.add([A], "tracker", now) == 1


# ---------------------------------------------------------------- dialling


def test_candidates_are_marked_connecting_and_not_handed_out_twice() -> None:
    b = book(A, B, C)
    assert dial(b, 0.0) == {A, B, C}
    assert b.connecting == 3
    assert dial(b, 1.0) == set()


def test_room_counts_dials_in_progress() -> None:
    b = book(A, B, C)
    first = dial(b, 0.0, room=2)
    assert len(first) == 2
    assert dial(b, 0.0, room=2) == set()  # both slots are taken by dials in progress
    assert dial(b, 0.0, room=3) == {A, B, C} - first


def test_connected_and_banned_are_not_dialled() -> None:
    b = book(A, B, C)
    b.ban(B)
    assert dial(b, 0.0, connected=frozenset({A})) == {C}


def test_parted_seeds_are_dialled_only_while_not_finished() -> None:
    b = book(A, B)
    b.parted(A)
    assert dial(b, 0.0, finished=True) == {B}
    assert dial(b, 0.0, finished=False) == {A}


def test_backoff_doubles_from_5_s_up_to_300_s() -> None:
    assert [dial_backoff(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]


def test_a_failed_dial_waits_its_backoff() -> None:
    b = book(A)
    assert dial(b, 100.0) == {A}
    b.dial_failed(A, 100.0)
    assert b.connecting == 0
    assert dial(b, 104.9) == set()
    assert dial(b, 105.0) == {A}
    b.dial_failed(A, 105.0)
    assert dial(b, 114.9) == set()
    assert dial(b, 115.0) == {A}


def test_forgotten_after_8_failures_in_a_row() -> None:
    b = book(A)
    now = 0.0
    for n in range(1, MAX_DIAL_FAILURES + 1):
        assert dial(b, now) == {A}, n
        b.dial_failed(A, now)
        now += dial_backoff(n)
    assert A not in b
    assert dial(b, now + 1000) == set()


def test_a_success_resets_the_failure_count() -> None:
    b = book(A)
    now = 0.0
    for n in range(1, MAX_DIAL_FAILURES):  # 7 failures
        dial(b, now)
        b.dial_failed(A, now)
        now += dial_backoff(n)
    assert dial(b, now) == {A}
    b.dial_succeeded(A)
    assert b.connecting == 0
    b.connection_ended(A, now)
    now += RECONNECT_AFTER
    dial(b, now)
    b.dial_failed(A, now)  # the first failure again: 5 s, and A is still known
    assert A in b
    assert dial(b, now + 5.0) == {A}


def test_no_redial_for_30_s_after_a_connection_ended() -> None:
    b = book(A)
    dial(b, 0.0)
    b.dial_succeeded(A)
    b.connection_ended(A, 50.0)
    assert dial(b, 79.9) == set()
    assert dial(b, 80.0) == {A}


def test_connection_ended_keeps_a_longer_backoff() -> None:
    b = book(A)
    for n in range(1, 7):  # six failures, far apart: the next attempt waits 160 s
        dial(b, 1000.0 * n)
        b.dial_failed(A, 1000.0 * n)
    b.connection_ended(A, 6000.0)  # say an incoming connection from A ended
    assert dial(b, 6159.9) == set()
    assert dial(b, 6160.0) == {A}


def test_reports_for_unknown_addresses_are_ignored() -> None:
    b = book(A)
    b.dial_failed(B, 0.0)
    b.dial_succeeded(B)
    b.connection_ended(B, 0.0)
    assert set(b) == {A}


# ---------------------------------------------------------------- bans, self, parted


def test_a_ban_forgets_the_address_and_names_the_peer_id() -> None:
    b = book(A, B)
    b.ban(A, b"x" * 20)
    assert A not in b
    assert b.is_banned(A)
    assert b.is_banned(C, b"x" * 20)  # the same peer from another address
    assert not b.is_banned(C, b"y" * 20)
    assert not b.is_banned(B)
    assert b.banned_addrs == {A}
    assert b.add([A], "tracker", 0.0) == 0


def test_a_ban_during_a_dial() -> None:
    b = book(A)
    dial(b, 0.0)
    b.ban(A)
    b.dial_succeeded(A)  # the engine then sees is_banned and closes
    assert b.is_banned(A)
    assert b.connecting == 0


def test_our_own_address_is_forgotten_and_never_added_again() -> None:
    b = book(A)
    dial(b, 0.0)
    b.self_connection(A)
    b.dial_failed(A, 0.0)
    assert A not in b and b.is_self(A)
    assert b.add([A], "tracker", 0.0) == 0


def test_parted_seeds_are_a_bounded_ordered_set() -> None:
    b = book()
    seeds = [PeerAddr("10.2.0.1", port) for port in range(1, MAX_PARTED_SEEDS + 2)]
    for seed in seeds:
        b.parted(seed)
    assert len(b.parted_seeds) == MAX_PARTED_SEEDS
    assert seeds[0] not in b.parted_seeds
    b.parted(seeds[1])  # parting again makes it the newest
    b.parted(PeerAddr("10.2.0.2", 1))
    assert seeds[1] in b.parted_seeds and seeds[2] not in b.parted_seeds
    assert list(b.parted_seeds)[-1] == PeerAddr("10.2.0.2", 1)


# ---------------------------------------------------------------- duplicate connections

ME, LOW, HIGH = b"\x05" * 20, b"\x01" * 20, b"\x09" * 20


@pytest.mark.parametrize(
    ("our_id", "existing", "new", "keep_new"),
    [
        # Their id is smaller: keep the connection they dialled (incoming, from our side).
        (ME, (True, LOW), (False, LOW), True),
        (ME, (False, LOW), (True, LOW), False),
        # Our id is smaller: keep the one we dialled.
        (ME, (True, HIGH), (False, HIGH), False),
        (ME, (False, HIGH), (True, HIGH), True),
        # The same initiator twice: the new connection replaces the old.
        (ME, (True, HIGH), (True, HIGH), True),
        (ME, (False, LOW), (False, LOW), True),
    ],
)
def test_keep_new_connection(
    our_id: bytes, existing: tuple[bool, bytes], new: tuple[bool, bytes], keep_new: bool
) -> None:
    assert keep_new_connection(our_id, existing, new) is keep_new


@pytest.mark.parametrize(("a_id", "b_id"), [(LOW, HIGH), (HIGH, LOW)])
def test_both_sides_of_a_simultaneous_dial_keep_the_same_connection(
    a_id: bytes, b_id: bytes
) -> None:
    """a dialled connection 1 and b dialled connection 2 at once; each side may see them
    arrive in either order, and both must keep the one dialled by the smaller id."""

    def kept(our_id: bytes, conns: dict[str, tuple[bool, bytes]], first: str) -> str:
        second = "2" if first == "1" else "1"
        return second if keep_new_connection(our_id, conns[first], conns[second]) else first

    seen_by_a = {"1": (True, b_id), "2": (False, b_id)}
    seen_by_b = {"1": (False, a_id), "2": (True, a_id)}
    expected = "1" if a_id < b_id else "2"
    for first in ("1", "2"):
        assert kept(a_id, seen_by_a, first) == expected
        assert kept(b_id, seen_by_b, first) == expected


# ---------------------------------------------------------------- invariants

ADDRS = st.builds(PeerAddr, st.sampled_from(["10.0.0.1", "10.0.0.2", "::1"]), st.integers(0, 6))
CAP = 8


class PeerBookMachine(RuleBasedStateMachine):
    """Drives a book the way the engine does, with a small cap and address space."""

    def __init__(self) -> None:
        super().__init__()
        self.book = PeerBook(random.Random(1), max_known=CAP)
        self.now = 0.0
        self.dialling: set[PeerAddr] = set()
        self.connected: set[PeerAddr] = set()
        self.banned: set[PeerAddr] = set()
        self.own: set[PeerAddr] = set()

    @rule(addrs=st.lists(ADDRS, max_size=12), source=st.sampled_from(["tracker", "dht"]))
    def add(self, addrs: list[PeerAddr], source: str) -> None:
        before = len(self.book)
        added = self.book.add(addrs, source, self.now)
        assert len(self.book) == before + added

    @rule(seconds=st.floats(0, 400))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(room=st.integers(-2, 10), finished=st.booleans())
    def connect(self, room: int, finished: bool) -> None:
        in_progress = self.book.connecting
        got = self.book.candidates(
            self.now, room, connected=frozenset(self.connected), finished=finished
        )
        assert len(got) == len(set(got)) <= max(0, room - in_progress)
        for addr in got:
            assert addr not in self.dialling
            assert addr not in self.connected
            assert not self.book.is_banned(addr)
            assert addr not in self.own and addr.port != 0
            assert not (finished and addr in self.book.parted_seeds)
        self.dialling |= set(got)

    @precondition(lambda self: self.dialling)
    @rule(data=st.data(), ok=st.booleans())
    def dial_ends(self, data: st.DataObject, ok: bool) -> None:
        addr = data.draw(st.sampled_from(sorted(self.dialling)))
        self.dialling.discard(addr)
        if ok:
            self.book.dial_succeeded(addr)
            if not self.book.is_banned(addr):
                self.connected.add(addr)
        else:
            self.book.dial_failed(addr, self.now)

    @precondition(lambda self: self.connected)
    @rule(data=st.data())
    def connection_ends(self, data: st.DataObject) -> None:
        addr = data.draw(st.sampled_from(sorted(self.connected)))
        self.connected.discard(addr)
        self.book.connection_ended(addr, self.now)

    @rule(addr=ADDRS)
    def ban(self, addr: PeerAddr) -> None:
        self.book.ban(addr)
        self.banned.add(addr)
        self.connected.discard(addr)

    @rule(addr=ADDRS)
    def ourselves(self, addr: PeerAddr) -> None:
        self.book.self_connection(addr)
        self.own.add(addr)

    @rule(addr=ADDRS)
    def part(self, addr: PeerAddr) -> None:
        self.book.parted(addr)

    @invariant()
    def bounded_and_clean(self) -> None:
        assert len(self.book) <= CAP
        known = set(self.book)
        assert not known & self.banned
        assert not known & self.own
        assert all(addr.port != 0 for addr in known)
        assert self.book.connecting <= len(self.dialling)


TestPeerBookMachine = PeerBookMachine.TestCase
TestPeerBookMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
