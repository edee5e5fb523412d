"""The UDP tracker's fast path (UdpTrackerCore.handle -> TrackerState.reannounce_compact)
against the general rules (TrackerState.announce, the HTTP side's call).

Invariant: whatever announces arrive, a tracker answering them over UDP (fast path where it
applies, general path elsewhere) and one answering them with ``announce()`` end in the same
swarm state (every peer's id, address, key, last announce, seeder and completed flags; each
swarm's counts and activity) and give the same answers (refusal texts; counts; peer sets;
the interval within its jitter)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceReply,
    AnnounceRequest,
    TrackerRequestError,
)
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState, key_from_int
from torrentkit.discovery.tracker.udp import PROTOCOL_ID, UdpTrackerCore
from torrentkit.ids import InfoHash

CONFIG = TrackerConfig(interval=100, max_peers_per_swarm=5)
HASHES = [InfoHash(bytes([t]) * 20) for t in range(3)]
PEER_IDS = [b"-TK0100-%012d" % p for p in range(6)]
#: Senders as recvfrom names them: two IPv4, one IPv4-mapped IPv6 (IPv4 to the tracker),
#: one IPv6 (a swarm of both families is not the fast path's).
SENDERS = ["10.0.0.1", "10.0.0.2", "::ffff:10.0.0.3", "2001:db8::1"]
_CODES = {0: AnnounceEvent.NONE, 1: AnnounceEvent.COMPLETED, 2: AnnounceEvent.STARTED}
_CODES[3] = AnnounceEvent.STOPPED
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")


class CountingState(TrackerState):
    """The real state, counting the announces its fast path answered."""

    fast = 0

    def reannounce_compact(self, *args: Any) -> tuple[int, int, int, bytes] | None:
        answer = super().reannounce_compact(*args)
        if answer is not None:
            self.fast += 1
        return answer


@dataclass
class Announce:
    torrent: int
    peer: int
    sender: int
    port: int
    event: int
    left: int
    key: int
    numwant: int
    ip_field: int


@st.composite
def announces(draw: st.DrawFn) -> Announce:
    """Mostly a peer at its home address (sender ``peer % 3``, so the fast path's case
    comes up), sometimes anywhere else, any event, numwant, key or ``ip`` field."""
    peer = draw(st.integers(0, 5))
    home = draw(st.sampled_from([True] * 7 + [False]))
    return Announce(
        torrent=draw(st.sampled_from([0, 0, 1, 2])),
        peer=peer,
        sender=peer % 3 if home else draw(st.sampled_from([0, 1, 2, 0, 1, 2, 3])),
        port=6881 + peer // 3 if home else draw(st.sampled_from([6881, 6882])),
        event=draw(st.sampled_from([0, 0, 0, 0, 1, 2, 2, 3])),
        left=draw(st.sampled_from([0, 5, 5])),
        key=draw(st.sampled_from([1, 1, 1, 2])),
        numwant=draw(st.sampled_from([-1, -1, 50, 0, 1, 2, 3, 500])),
        ip_field=draw(st.sampled_from([0] * 7 + [0x0A000009])),
    )


ops = st.lists(
    st.one_of(
        *[announces()] * 8,
        st.tuples(st.just("wait"), st.sampled_from([0.25, 1.0, 1.0, 20.0, 30.0, 60.0, 121.0])),
        st.tuples(st.just("connect"), st.integers(0, 3)),
        st.tuples(st.just("connect"), st.integers(0, 3)),
        st.tuples(st.just("whitelist"), st.none() | st.sets(st.integers(0, 2)).map(sorted)),
        st.just(("purge",)),
    ),
    min_size=30,
    max_size=120,
)


class Pair:
    """Two trackers fed the same announces: ``udp`` over datagrams, ``ref`` by announce()."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.udp_state = CountingState(CONFIG)
        self.core = UdpTrackerCore(swarms=self.udp_state)
        self.ref = TrackerState(CONFIG)
        self.ids: dict[int, tuple[bytes, int]] = {}  # sender -> (connection id, issue second)
        self.tid = 0
        for sender in range(len(SENDERS)):
            self.connect(sender)

    def connect(self, sender: int) -> None:
        reply = self.core.handle(struct.pack(">QII", PROTOCOL_ID, 0, 99), SENDERS[sender], self.now)
        assert isinstance(reply, bytes) and len(reply) == 16
        self.ids[sender] = (reply[8:16], int(self.now))

    def announce(self, a: Announce) -> None:
        cid, issued = self.ids[a.sender]
        self.tid += 1
        data = _ANNOUNCE.pack(
            int.from_bytes(cid, "big"), 1, self.tid, bytes(HASHES[a.torrent]),
            PEER_IDS[a.peer], 7, a.left, 9, a.event, a.ip_field, a.key, a.numwant, a.port,
        )  # fmt: skip
        sender = SENDERS[a.sender]
        out = self.core.handle(data, sender, self.now)
        if int(self.now) - issued > 120:
            assert out is None  # an expired connection id: dropped, nothing applied
            return
        assert isinstance(out, bytes)
        req = AnnounceRequest(
            info_hash=HASHES[a.torrent],
            peer_id=PEER_IDS[a.peer],
            port=a.port,
            downloaded=7,
            left=a.left,
            uploaded=9,
            event=_CODES[a.event],
            numwant=None if a.numwant < 0 else a.numwant,
            key=key_from_int(a.key),
        )
        try:
            reply = self.ref.announce(req, remote_ip=sender, now=self.now)
        except TrackerRequestError as exc:
            action, tid = struct.unpack_from(">II", out)
            assert (action, tid) == (3, self.tid)
            assert out[8:] == str(exc).encode()[: len(data) - 8]
            return
        self.check_reply(a, out, reply)

    def check_reply(self, a: Announce, out: bytes, reply: AnnounceReply) -> None:
        action, tid, interval, leechers, seeders = struct.unpack_from(">IIIII", out)
        assert (action, tid) == (1, self.tid)
        assert CONFIG.interval <= interval <= CONFIG.interval + CONFIG.jitter
        assert (seeders, leechers) == (reply.complete, reply.incomplete)
        stride = 18 if a.sender == 3 else 6
        body = out[20:]
        assert len(body) % stride == 0
        got = [body[i : i + stride] for i in range(0, len(body), stride)]
        assert len(set(got)) == len(got)
        expected = [p.compact for p in reply.peers if len(p.compact) == stride]
        swarm = self.udp_state._swarms.get(bytes(HASHES[a.torrent]))
        others = set() if swarm is None else {p.compact for p in swarm.peers}
        want = 50 if a.numwant < 0 else min(a.numwant, 200)
        if not reply.peers or len(others) - 1 <= want:  # none, or the whole swarm
            assert set(got) == set(expected)
        else:  # a random sample of each: same size when the swarm is of one family
            assert set(got) <= others - {_compact(a)}
            if all(len(c) == stride for c in others):
                assert len(got) == len(reply.peers)

    def check_state(self) -> None:
        assert _swarms(self.udp_state) == _swarms(self.ref)
        state = self.udp_state
        for swarm in state._swarms.values():
            if swarm.packed is not None:  # the fast path's caches are never stale
                once = b"".join(p.compact for p in swarm.peers)
                assert swarm.packed == once + once
            assert all(p.swarm is swarm and p.index == i for i, p in enumerate(swarm.peers))
        for key, peer in state._peer_cache.items():
            if peer.swarm is not None:
                assert state._swarms[key[:20]] is peer.swarm
                assert peer.swarm.peers[peer.index] is peer and peer.peer_id == key[20:]

    def run(self, op: object) -> None:
        if isinstance(op, Announce):
            self.announce(op)
        elif op[0] == "wait":  # type: ignore[index]
            self.now += op[1]  # type: ignore[index]
        elif op[0] == "connect":  # type: ignore[index]
            self.connect(op[1])  # type: ignore[index]
        elif op[0] == "whitelist":  # type: ignore[index]
            listed = None if op[1] is None else [HASHES[t] for t in op[1]]  # type: ignore[index]
            self.udp_state.set_whitelist(listed)
            self.ref.set_whitelist(listed)
        else:
            assert self.udp_state.purge(self.now) == self.ref.purge(self.now)


def _compact(a: Announce) -> bytes:
    ip = bytes([10, 0, 0, 3]) if a.sender == 2 else bytes([10, 0, 0, a.sender + 1])
    if a.sender == 3:
        ip = bytes.fromhex("20010db8000000000000000000000001")
    return ip + a.port.to_bytes(2, "big")


def _swarms(state: TrackerState) -> dict[bytes, object]:
    return {
        h: (
            s.seeders,
            s.completed,
            s.last_active,
            sorted(
                (p.peer_id, p.ip, p.port, p.compact, p.key, p.last_seen, p.seeder, p.completed)
                for p in s.peers
            ),
        )
        for h, s in state._swarms.items()
    }


#: Every peer in every swarm first (from its home address), so that re-announces abound.
START = [
    Announce(torrent=t, peer=p, sender=p % 3, port=6881 + p // 3, event=2, left=5 * (p % 2),
             key=1, numwant=-1, ip_field=0)
    for t in range(3)
    for p in range(5)
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(ops)
def test_fast_path_and_announce_agree(sequence: list[object]) -> None:
    pair = Pair()
    for op in [*START, *sequence]:
        pair.run(op)
        pair.check_state()


def test_a_plain_reannounce_takes_the_fast_path_and_agrees() -> None:
    """The common case (a known peer again from its address, event none / started /
    completed, a swarm that fits the reply) is the fast path's, and agrees."""
    pair = Pair()
    runs = [
        Announce(torrent=0, peer=p, sender=p % 3, port=6881 + p // 3, event=2, left=5 * (p % 2),
                 key=1, numwant=-1, ip_field=0)
        for p in range(4)
    ]  # fmt: skip
    for a in runs:
        pair.announce(a)
    assert pair.udp_state.fast == 0  # new peers: the general path
    for wait, event in ((51.0, 0), (1.0, 1), (0.5, 2), (1.0, 0)):  # the last one early:
        pair.now += wait  # refreshed, answered without peers
        for a in runs:
            a.event = event
            a.left = 0 if event == 1 else a.left
            pair.announce(a)
            pair.check_state()
    assert pair.udp_state.fast == 16


def _at_home(peer: int, event: int, **changes: int) -> Announce:
    a = Announce(torrent=1, peer=peer, sender=peer % 2, port=6881 + peer, event=event, left=5,
                 key=1, numwant=-1, ip_field=0)  # fmt: skip
    for name, value in changes.items():
        setattr(a, name, value)
    return a


def test_the_fast_path_declines_what_it_does_not_cover() -> None:
    """Stopped, a new address, numwant below the swarm, the ``ip`` field, a swarm of two
    families: the general path answers (and agrees)."""
    pair = Pair()
    for p in range(4):
        pair.announce(_at_home(p, 2))
    pair.now += 60.0
    cases = [
        _at_home(0, 3),
        _at_home(1, 0, port=7000),
        _at_home(2, 0, numwant=1),
        _at_home(2, 1, ip_field=0x0A000009),
        _at_home(4, 2, sender=3),
        _at_home(3, 0),
    ]
    for a in cases:
        pair.announce(a)
        pair.check_state()
    assert pair.udp_state.fast == 0
    pair.announce(_at_home(1, 0, port=7000))  # its new address, the swarm of one family again
    assert pair.udp_state.fast == 0
    pair.announce(_at_home(4, 3, sender=3))
    pair.announce(_at_home(1, 0, port=7000))
    assert pair.udp_state.fast == 1
    pair.check_state()
