"""The UDP tracker protocol's sans-IO core (BEP 15, BEP 41): exact bytes, the client's
exchange (transaction ids, connection id reuse, retransmit timeouts), and the server core
(HMAC connection ids, drops, no amplification, one swarm state with HTTP)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
    TrackerFailure,
    TrackerResponseError,
    compact_peer,
)
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.discovery.tracker.udp import (
    MAX_SCRAPE_HASHES,
    PROTOCOL_ID,
    ConnectionIds,
    ConnectionSecret,
    RetryPolicy,
    UdpExchange,
    UdpPending,
    UdpTimeout,
    UdpTrackerCore,
    encode_announce,
    encode_connect,
    encode_scrape,
    key_from_int,
    key_to_int,
    parse_options,
    url_data_options,
)
from torrentkit.ids import InfoHash, PeerAddr

IH = InfoHash(bytes(range(20)))
PEER_ID = b"-TK0100-abcdefghijkl"
ADDR = ("127.0.0.1", 6969)


def _request(**kw: object) -> AnnounceRequest:
    fields: dict[str, object] = dict(
        info_hash=IH,
        peer_id=PEER_ID,
        port=6881,
        uploaded=3,
        downloaded=2,
        left=1,
        event=AnnounceEvent.STARTED,
        numwant=50,
        key=b"0badf00d",
    )
    fields.update(kw)
    return AnnounceRequest(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Packets


def test_connect_and_announce_bytes_follow_bep15_offsets() -> None:
    assert encode_connect(0x01020304) == bytes.fromhex("00000417271019800000000001020304")
    data = encode_announce(0x1122334455667788, 7, _request(), url_data=b"")
    assert len(data) == 98
    assert data[0:8] == bytes.fromhex("1122334455667788")
    assert data[8:12] == b"\0\0\0\1" and data[12:16] == b"\0\0\0\7"
    assert data[16:36] == bytes(IH) and data[36:56] == PEER_ID
    assert struct.unpack(">QQQ", data[56:80]) == (2, 1, 3)  # downloaded, left, uploaded
    assert data[80:84] == b"\0\0\0\2"  # started
    assert data[84:88] == b"\0\0\0\0"  # IP: the sender's
    assert data[88:92] == bytes.fromhex("0badf00d")  # our 8-hex-digit key, as 32 bits
    assert struct.unpack(">i", data[92:96]) == (50,)
    assert data[96:98] == (6881).to_bytes(2, "big")
    default = encode_announce(1, 1, _request(numwant=None, event=AnnounceEvent.NONE))
    assert struct.unpack(">i", default[92:96]) == (-1,) and default[80:84] == bytes(4)
    for event, code in ((AnnounceEvent.COMPLETED, 1), (AnnounceEvent.STOPPED, 3)):
        assert encode_announce(1, 1, _request(event=event))[83] == code


def test_scrape_bytes_and_the_74_hash_limit() -> None:
    data = encode_scrape(5, 9, [IH, bytes(20)])
    assert data == (5).to_bytes(8, "big") + b"\0\0\0\2\0\0\0\x09" + bytes(IH) + bytes(20)
    encode_scrape(5, 9, [bytes(20)] * MAX_SCRAPE_HASHES)
    with pytest.raises(Exception, match="1-74"):
        encode_scrape(5, 9, [bytes(20)] * (MAX_SCRAPE_HASHES + 1))


def test_bep41_url_data_round_trips_in_255_byte_pieces_and_unknown_options_are_skipped() -> None:
    path = "/announce?passkey=" + "x" * 300
    options = url_data_options(path)
    assert options[0] == 2 and options[1] == 255 and options[257] == 2
    assert parse_options(options) == path.encode()
    # NOP, an unknown type with its length, URL data, end of options, then junk.
    mixed = b"\x01" + b"\x09\x03abc" + b"\x02\x04/ann" + b"\x00" + b"\x02\x03xyz"
    assert parse_options(mixed) == b"/ann"
    assert parse_options(b"\x02\x10/cut") == b""  # a cut-off option ends the list


def test_keys_map_between_http_hex_and_udp_integers() -> None:
    assert key_to_int(b"0badf00d") == 0x0BADF00D
    assert key_from_int(0x0BADF00D) == b"0badf00d"
    assert 0 <= key_to_int(b"not-hex-key") < 2**32 and key_to_int(None) == 0


# ---------------------------------------------------------------------------------------------
# The client's exchange


def _exchange(ids: ConnectionIds, now: float = 0.0, **kw: object) -> UdpExchange:
    fields: dict[str, object] = dict(
        address=ADDR, ids=ids, now=now, rng=random.Random(1), ipv6=False, announce=_request()
    )
    fields.update(kw)
    return UdpExchange(**fields)  # type: ignore[arg-type]


def _tid(datagram: bytes) -> int:
    return int.from_bytes(datagram[12:16], "big")


def _connect_reply(tid: int, cid: int) -> bytes:
    return struct.pack(">IIQ", 0, tid, cid)


def _announce_reply(tid: int, peers: bytes, *, seeders: int = 1, leechers: int = 2) -> bytes:
    return struct.pack(">IIIII", 1, tid, 900, leechers, seeders) + peers


def test_exchange_connects_announces_and_reuses_the_connection_id_for_60_s() -> None:
    ids = ConnectionIds()
    ex = _exchange(ids)
    connect = ex.datagram()
    assert connect is not None and connect[:8] == PROTOCOL_ID.to_bytes(8, "big")
    assert ex.datagram() is None  # sent once
    ex.receive(_connect_reply(_tid(connect) ^ 1, 99), 1.0)  # another transaction: ignored
    assert ex.datagram() is None and not ex.done
    ex.receive(_connect_reply(_tid(connect), 0xABC), 1.0)
    announce = ex.datagram()
    assert announce is not None and announce[:8] == (0xABC).to_bytes(8, "big")
    assert _tid(announce) != _tid(connect)
    peers = compact_peer("10.0.0.1", 6881) + compact_peer("10.0.0.2", 0) + b"\x01\x02"
    ex.receive(_announce_reply(_tid(announce), peers), 2.0)
    reply = ex.result()
    assert reply == AnnounceResponse(
        interval=900,
        min_interval=None,
        complete=1,
        incomplete=2,
        peers=(PeerAddr("10.0.0.1", 6881),),  # port 0 dropped, a trailing fragment ignored
    )
    # Within 60 s the next exchange skips connect; after it, connects again.
    again = _exchange(ids, now=60.0)
    first = again.datagram()
    assert first is not None and first[8:12] == b"\0\0\0\1"
    late = _exchange(ids, now=61.5)
    first = late.datagram()
    assert first is not None and first[8:12] == b"\0\0\0\0"


def test_exchange_retransmits_at_15_then_30_s_and_then_gives_up() -> None:
    ex = _exchange(ConnectionIds())
    sent = [ex.datagram()]
    assert ex.deadline == 15.0
    ex.timed_out(15.0)
    sent.append(ex.datagram())
    assert ex.deadline == 45.0 and not ex.done
    ex.timed_out(45.0)
    assert ex.done
    with pytest.raises(UdpTimeout, match="2 tries"):
        ex.result()
    assert all(s is not None and s[8:12] == bytes(4) for s in sent)
    assert len({_tid(s) for s in sent if s is not None}) == 2  # fresh transaction id each time
    # The cap is a setting: BEP 15's full n = 8 would wait 15 * (2^9 - 1) s.
    assert RetryPolicy(max_retransmits=8).longest == 15 * 511
    assert RetryPolicy().longest == 45


def test_a_request_that_timed_out_reconnects_before_retransmitting() -> None:
    ids = ConnectionIds()
    ids.put(ADDR, 77, 0.0)
    ex = _exchange(ids, policy=RetryPolicy(max_retransmits=2))
    first = ex.datagram()
    assert first is not None and first[8:12] == b"\0\0\0\1"
    ex.timed_out(15.0)
    retry = ex.datagram()
    assert retry is not None and retry[8:12] == b"\0\0\0\0" and ids.get(ADDR, 15.0) is None


def test_error_packets_are_tracker_failures_and_garbage_is_ignored() -> None:
    ex = _exchange(ConnectionIds())
    tid = _tid(ex.datagram() or b"")
    ex.receive(b"\0\0\0\3", 0.5)  # too short to carry a transaction id
    ex.receive(struct.pack(">II", 1, tid) + bytes(4), 0.5)  # announce reply while connecting
    assert not ex.done
    ex.receive(struct.pack(">II", 3, tid) + b"torrent not registered\x1b[2J\n", 0.5)
    with pytest.raises(TrackerFailure, match=r"torrent not registered\?\[2J"):
        ex.result()


def test_a_truncated_announce_reply_is_a_response_error() -> None:
    ids = ConnectionIds()
    ids.put(ADDR, 5, 0.0)
    ex = _exchange(ids)
    tid = _tid(ex.datagram() or b"")
    ex.receive(struct.pack(">III", 1, tid, 900), 0.1)
    with pytest.raises(TrackerResponseError, match="need at least 20"):
        ex.result()


def test_a_bare_announce_reply_is_a_refusal() -> None:
    """8 bytes (action 1 and the transaction id, nothing else): opentracker's answer for a
    torrent it does not serve. A tracker failure with a clear text, not a parse error."""
    ids = ConnectionIds()
    ids.put(ADDR, 5, 0.0)
    ex = _exchange(ids)
    tid = _tid(ex.datagram() or b"")
    ex.receive(struct.pack(">II", 1, tid), 0.1)
    with pytest.raises(TrackerFailure, match="refused without a reason"):
        ex.result()


def test_ipv6_replies_carry_18_byte_peers_and_scrapes_parse_in_order() -> None:
    ids = ConnectionIds()
    ids.put(ADDR, 5, 0.0)
    ex = _exchange(ids, ipv6=True)
    tid = _tid(ex.datagram() or b"")
    ex.receive(_announce_reply(tid, compact_peer("2001:db8::1", 51413)), 0.1)
    reply = ex.result()
    assert isinstance(reply, AnnounceResponse)
    assert reply.peers == (PeerAddr("2001:db8::1", 51413),)

    other = InfoHash(bytes(20))
    sc = _exchange(ids, announce=None, scrape=[IH, other])
    out = sc.datagram() or b""
    assert out[8:12] == b"\0\0\0\2" and out[16:] == bytes(IH) + bytes(other)
    sc.receive(struct.pack(">II", 2, _tid(out)) + struct.pack(">III", 1, 2, 3), 0.1)
    with pytest.raises(TrackerResponseError, match="need 32"):  # one entry for two hashes
        sc.result()
    sc2 = _exchange(ids, announce=None, scrape=[IH, other])
    out = sc2.datagram() or b""
    body = struct.pack(">IIIIII", 1, 2, 3, 4, 5, 6)
    sc2.receive(struct.pack(">II", 2, _tid(out)) + body, 0.1)
    assert sc2.result() == {
        IH: ScrapeStats(complete=1, downloaded=2, incomplete=3),
        other: ScrapeStats(complete=4, downloaded=5, incomplete=6),
    }


# ---------------------------------------------------------------------------------------------
# The server core


class Served:
    """A :class:`UdpTrackerCore` answering from a :class:`TrackerState`, as the server does."""

    def __init__(self, state: TrackerState | None = None) -> None:
        self.state = state if state is not None else TrackerState(rng=random.Random(3))
        self.core = UdpTrackerCore(master=b"m" * 32)
        self.counters = self.core.counters

    def handle(self, data: bytes, ip: str, port: int, now: float) -> bytes | None:
        out = self.core.handle(data, ip, now)
        if not isinstance(out, UdpPending):
            return out
        state = self.state
        return self.core.answer(
            out, lambda req, ip: state.announce(req, remote_ip=ip, now=now), state.scrape
        )


def _core(state: TrackerState | None = None) -> Served:
    return Served(state)


def _connect(core: Served, ip: str = "127.0.0.1", now: float = 1000.0) -> int:
    reply = core.handle(encode_connect(42), ip, 5000, now)
    assert reply is not None and len(reply) == 16 and reply[:8] == struct.pack(">II", 0, 42)
    return int.from_bytes(reply[8:], "big")


def test_server_connection_ids_bind_the_ip_and_last_two_minutes() -> None:
    core = _core()
    cid = _connect(core)
    req = encode_announce(cid, 7, _request())
    assert core.handle(req, "127.0.0.1", 40000, 1000.0) is not None  # any port of that IP
    assert core.handle(req, "127.0.0.1", 40001, 1120.0) is not None
    assert core.handle(req, "127.0.0.1", 40001, 1122.0) is None  # expired: dropped
    assert core.handle(req, "127.0.0.2", 40000, 1000.0) is None  # another IP: dropped
    forged = encode_announce(cid ^ 1, 7, _request())
    assert core.handle(forged, "127.0.0.1", 40000, 1000.0) is None
    assert core.counters.dropped == 3 and core.counters.connects == 1


def test_server_secret_rotates_and_workers_sharing_the_master_accept_each_others_ids() -> None:
    box = ConnectionSecret(b"a" * 32)
    ip = b"\x7f\0\0\1"
    cid = box.issue(ip, 590.0)
    assert box.verify(cid, ip, 605.0)  # the epoch changed at 600; the id names its own
    assert not box.verify(cid, b"\x7f\0\0\2", 605.0)
    assert box.issue(ip, 605.0)[2:] != box.issue(ip, 595.0)[2:]  # 595's stamp, 595's key
    assert ConnectionSecret(b"a" * 32).verify(cid, ip, 600.0)  # another worker
    assert not ConnectionSecret(b"b" * 32).verify(cid, ip, 600.0)


def test_server_drops_short_packets_and_connects_without_the_protocol_id() -> None:
    core = _core()
    assert core.handle(b"\0" * 15, "127.0.0.1", 1, 1000.0) is None
    bad = struct.pack(">QII", PROTOCOL_ID + 1, 0, 1)
    assert core.handle(bad, "127.0.0.1", 1, 1000.0) is None
    assert core.counters.dropped == 2 and core.counters.connects == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["127.0.0.1", "::1", "::ffff:127.0.0.1"]))
def test_no_reply_to_an_unverified_address_is_larger_than_its_request(data: bytes, ip: str) -> None:
    reply = UdpTrackerCore().handle(data, ip, 1000.0)
    assert reply is None or (isinstance(reply, bytes) and len(reply) <= len(data))


def test_verified_errors_are_error_packets_no_longer_than_the_request() -> None:
    core = _core()
    cid = _connect(core)
    short = encode_announce(cid, 9, _request())[:40]
    reply = core.handle(short, "127.0.0.1", 1, 1000.0)
    assert reply is not None and reply[:8] == struct.pack(">II", 3, 9) and len(reply) <= 40
    assert b"announce of 40 bytes" in reply
    unknown = struct.pack(">QII", cid, 9, 10)
    reply = core.handle(unknown, "127.0.0.1", 1, 1000.0)
    assert reply is not None and reply[:4] == b"\0\0\0\3" and len(reply) <= 16
    assert core.counters.errors == 2


def test_announces_reach_the_swarm_with_bep41_options_and_get_the_senders_family() -> None:
    state = TrackerState(TrackerConfig(interval=600), rng=random.Random(3))
    core = _core(state)
    cid4, cid6 = _connect(core), _connect(core, "::1")
    options = b"\x01" + b"\x77\x02hi" + url_data_options("/announce?k=v") + b"\x00"
    for i in range(3):
        ip = f"127.0.0.{i + 1}"
        cid = _connect(core, ip)
        req = _request(peer_id=b"-TK0100-%012d" % i, port=7000 + i)
        reply = core.handle(encode_announce(cid, i, req, url_data=options), ip, 1, 1000.0)
        assert reply is not None and reply[:8] == struct.pack(">II", 1, i)
    state.announce(_request(peer_id=b"-TK0100-v6v6v6v6v6v6", port=7100), remote_ip="::1", now=1.0)
    # An IPv4 sender gets 6-byte peers (the IPv6 one is not among them) ...
    req = _request(peer_id=b"-TK0100-zzzzzzzzzzzz", port=7200)
    reply = core.handle(encode_announce(cid4, 5, req), "127.0.0.1", 1, 1000.0)
    assert reply is not None
    action, tid, interval, leechers, seeders = struct.unpack(">IIIII", reply[:20])
    assert (action, tid, leechers, seeders) == (1, 5, 5, 0) and 600 <= interval <= 660
    peers = reply[20:]
    assert len(peers) == 6 * 3 and compact_peer("127.0.0.2", 7001) in peers
    # ... and an IPv6 sender 18-byte ones.
    req = _request(peer_id=b"-TK0100-yyyyyyyyyyyy", port=7300)
    reply = core.handle(encode_announce(cid6, 6, req), "::1", 1, 1000.0)
    assert reply is not None and reply[20:] == compact_peer("::1", 7100)
    assert state.stats().peers == 6


def test_the_http_key_and_the_udp_key_name_one_client() -> None:
    state = TrackerState(rng=random.Random(3))
    core = _core(state)
    state.announce(_request(), remote_ip="10.0.0.9", now=1.0)  # over HTTP, key "0badf00d"
    cid = _connect(core)
    reply = core.handle(encode_announce(cid, 1, _request()), "127.0.0.1", 1, 1000.0)
    assert reply is not None and reply[:4] == b"\0\0\0\1"  # moved, same key as 32 bits
    thief = encode_announce(cid, 2, _request(key=b"11111111"))
    reply = core.handle(thief, "127.0.0.1", 1, 1000.0)  # same IP now, so allowed ...
    other = _connect(core, "127.0.0.5")
    reply = core.handle(encode_announce(other, 3, _request(key=b"22222222")), "127.0.0.5", 1, 1e3)
    assert reply is not None and reply[:4] == b"\0\0\0\3"  # ... but not from another IP
    assert b"in use from another address" in reply


def test_scrape_answers_at_most_74_hashes_in_order_with_zeros_for_unknown_ones() -> None:
    state = TrackerState(rng=random.Random(3))
    core = _core(state)
    state.announce(_request(left=0), remote_ip="10.0.0.1", now=1.0)
    cid = _connect(core)
    hashes = [bytes(20), bytes(IH)] + [bytes([i]) * 20 for i in range(1, 80)]
    data = struct.pack(">QII", cid, 2, 3) + b"".join(hashes)
    reply = core.handle(data, "127.0.0.1", 1, 1000.0)
    assert reply is not None and len(reply) == 8 + 12 * MAX_SCRAPE_HASHES
    assert reply[8:20] == bytes(12) and struct.unpack(">III", reply[20:32]) == (1, 0, 0)


def test_the_direct_path_answers_byte_for_byte_as_the_store_path() -> None:
    """A core with ``swarms`` (the in-memory store's path: the state answers from the fields,
    small swarms from their cached compact peers) and one that hands requests to
    ``TrackerState.announce`` give the same datagrams for the same traffic: events, seeders,
    both families, moves, refusals, swarms past numwant, stopped, scrapes."""
    rng = random.Random(7)
    via_store = Served(TrackerState(TrackerConfig(interval=100), rng=random.Random(1)))
    direct_state = TrackerState(TrackerConfig(interval=100), rng=random.Random(1))
    direct = UdpTrackerCore(master=b"m" * 32, swarms=direct_state)
    ips = ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.3"]
    hashes = [bytes([h]) * 20 for h in range(1, 4)]
    now = 1000.0
    sizes = set()
    for n in range(4000):
        now += rng.random()
        ip = rng.choice(ips)
        cid = _connect(via_store, ip, now)
        connected = struct.pack(">II", 0, 42) + cid.to_bytes(8, "big")
        assert direct.handle(encode_connect(42), ip, now) == connected
        if rng.random() < 0.05:
            data = encode_scrape(cid, n, rng.sample(hashes, 2))
        else:
            peer = rng.randrange(70)
            req = AnnounceRequest(
                info_hash=InfoHash(rng.choice(hashes)),
                peer_id=b"-TK0100-%012d" % peer,
                port=7000 + rng.choice([peer, peer + 1]),
                left=rng.choice([0, 0, 5, 5, 5]),
                event=rng.choice(list(AnnounceEvent)),
                numwant=rng.choice([None, 0, 3, 50, 200]),
                key=rng.choice([b"%08x" % peer, b"0000abcd"]),
            )
            # Some carry BEP 41 options (the direct path's general branch), most none.
            options = url_data_options("/announce?x=1") if rng.random() < 0.2 else b""
            data = encode_announce(cid, n, req, url_data=options)
        expected = via_store.handle(data, ip, 5000, now)
        assert direct.handle(data, ip, now) == expected
        assert expected is not None
        sizes.add((expected[:4], len(expected) > 20))
    # The traffic reached every kind of answer: announces with and without peers, scrapes,
    # refusals (a peer id in use from another address).
    assert sizes >= {(b"\0\0\0\1", True), (b"\0\0\0\1", False), (b"\0\0\0\2", True)}
    assert (b"\0\0\0\3", True) in sizes
    assert direct.counters == via_store.counters


@pytest.mark.parametrize("trusted", [True, False])
def test_the_ip_field_names_the_peer_only_when_trusted_on_the_direct_path(trusted: bool) -> None:
    state = TrackerState(TrackerConfig(trust_ip_param=trusted), rng=random.Random(1))
    core = UdpTrackerCore(master=b"m" * 32, swarms=state, trust_ip_param=trusted)
    connected = core.handle(encode_connect(1), "127.0.0.1", 1000.0)
    assert isinstance(connected, bytes)
    data = bytearray(encode_announce(int.from_bytes(connected[8:], "big"), 2, _request()))
    data[84:88] = bytes([10, 1, 2, 3])  # BEP 15's ip field
    reply = core.handle(bytes(data), "127.0.0.1", 1000.0)
    assert isinstance(reply, bytes) and reply[:4] == b"\0\0\0\1"
    ips = [p.ip for s in state.stats().swarms for p in s.peers]
    assert ips == (["10.1.2.3"] if trusted else ["127.0.0.1"])
