"""Local Service Discovery (BEP 14), the sans-IO core: exact bytes, schedule, filtering."""

from __future__ import annotations

import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from torrentkit.discovery.lsd.core import (
    ANNOUNCE_INTERVAL,
    MAX_DATAGRAM,
    MAX_REMEMBERED,
    REPORT_AGAIN,
    Announce,
    LsdCore,
    encode_announce,
    parse_announce,
)
from torrentkit.discovery.lsd.driver import _arrived_on, _source_host, ipv6_interface
from torrentkit.ids import PeerAddr

H1 = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
H2 = bytes(range(20))


def test_announce_exact_bytes_v4_and_v6() -> None:
    assert encode_announce("239.192.152.143:6771", 6881, [H1], "5f3a") == (
        b"BT-SEARCH * HTTP/1.1\r\n"
        b"Host: 239.192.152.143:6771\r\n"
        b"Port: 6881\r\n"
        b"Infohash: 0123456789abcdef0123456789abcdef01234567\r\n"
        b"cookie: 5f3a\r\n"
        b"\r\n"
        b"\r\n"
    )
    assert encode_announce("[ff15::efc0:988f]:6771", 51413, [H1, H2], "c") == (
        b"BT-SEARCH * HTTP/1.1\r\n"
        b"Host: [ff15::efc0:988f]:6771\r\n"
        b"Port: 51413\r\n"
        b"Infohash: 0123456789abcdef0123456789abcdef01234567\r\n"
        b"Infohash: 000102030405060708090a0b0c0d0e0f10111213\r\n"
        b"cookie: c\r\n"
        b"\r\n"
        b"\r\n"
    )


# libtorrent's announce (its render_lsd_packet: the same lines, cookie as hex digits) and
# Transmission's (no cookie), as they stand on the wire.
LIBTORRENT = (
    b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
    b"Infohash: 0123456789ABCDEF0123456789ABCDEF01234567\r\ncookie: 2b7e151\r\n\r\n\r\n"
)
TRANSMISSION = (
    b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\n"
    b"Infohash: 000102030405060708090a0b0c0d0e0f10111213\r\n\r\n\r\n"
)


def test_parse_other_clients() -> None:
    assert parse_announce(LIBTORRENT) == Announce(6881, (H1,), "2b7e151")
    assert parse_announce(TRANSMISSION) == Announce(51413, (H2,), None)
    # header names in any case, extra headers ignored, dribbled whitespace
    odd = b"bt-search * http/1.1\r\nPORT:  99 \r\nX-Other: 1\r\ninfohash:" + H1.hex().encode()
    assert parse_announce(odd) == Announce(99, (H1,), None)


def test_parse_round_trip() -> None:
    data = encode_announce("239.192.152.143:6771", 7000, [H1, H2], "abc")
    assert parse_announce(data) == Announce(7000, (H1, H2), "abc")


def test_parse_refuses_bad_datagrams() -> None:
    good = TRANSMISSION
    bad = [
        b"",
        b"M-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + H1.hex().encode() + b"\r\n\r\n",
        good.replace(b"Port: 51413", b"Port: 0"),
        good.replace(b"Port: 51413", b"Port: 65536"),
        good.replace(b"Port: 51413", b"Port: -1"),
        good.replace(b"Port: 51413", b"Port: 99999999999999999999"),
        good.replace(b"Port: 51413\r\n", b""),
        good.replace(b"000102030405060708090a0b0c0d0e0f10111213", b"zz" * 20),
        good.replace(b"000102030405060708090a0b0c0d0e0f10111213", b"00" * 19),
        good + b"x" * 1500,  # over the datagram cap
    ]
    for data in bad:
        assert parse_announce(data) is None, data


@given(st.binary(max_size=2000))
def test_parse_any_bytes_gives_an_announce_or_none(data: bytes) -> None:
    # Invariant: any datagram parses or is refused with None; nothing raises.
    result = parse_announce(data)
    assert result is None or (0 < result.port < 65536 and result.info_hashes)


def test_schedule_on_start_then_every_five_minutes() -> None:
    core = LsdCore(port=6881, cookie="aa", families=["v4", "v6"])
    assert core.next_due() is None and core.packets(0.0) == []
    core.add(H1, 10.0)
    assert core.next_due() == 10.0
    sent = core.packets(10.0)
    assert [f for f, _ in sent] == ["v4", "v6"]
    assert sent[0][1] == encode_announce("239.192.152.143:6771", 6881, [H1], "aa")
    assert sent[1][1] == encode_announce("[ff15::efc0:988f]:6771", 6881, [H1], "aa")
    assert core.packets(10.0 + ANNOUNCE_INTERVAL - 0.1) == []  # at most once per 5 min
    assert core.next_due() == 10.0 + ANNOUNCE_INTERVAL
    assert len(core.packets(10.0 + ANNOUNCE_INTERVAL)) == 2
    core.remove(H1)
    assert core.next_due() is None


def test_listen_only_torrent_is_never_announced_but_gets_peers() -> None:
    core = LsdCore(port=1, cookie="aa", families=["v4"])
    core.add(H2, 0.0, announce=False)  # e.g. a magnet: privacy unknown yet
    assert core.packets(1000.0) == []
    assert core.receive(TRANSMISSION, "10.0.0.9", 0.0) == [(H2, PeerAddr("10.0.0.9", 51413))]


def test_many_torrents_are_batched_under_the_datagram_cap() -> None:
    core = LsdCore(port=6881, cookie="aa", families=["v4"])
    hashes = [bytes([i]) * 20 for i in range(60)]
    for h in hashes:
        core.add(h, 0.0)
    sent = core.packets(0.0)
    assert 2 <= len(sent) < 60
    got: list[bytes] = []
    for _, data in sent:
        assert len(data) <= MAX_DATAGRAM
        msg = parse_announce(data)
        assert msg is not None
        got += msg.info_hashes
    assert sorted(got) == sorted(hashes)
    # five or fewer due at once: one torrent per datagram (older clients read one hash)
    small = LsdCore(port=6881, cookie="aa", families=["v4"])
    for h in hashes[:5]:
        small.add(h, 0.0)
    assert len(small.packets(0.0)) == 5


def test_receive_filters_own_cookie_unknown_torrents_and_repeats() -> None:
    core = LsdCore(port=6881, cookie="2b7e151", families=["v4"])
    core.add(H1, 0.0)
    assert core.receive(LIBTORRENT, "10.0.0.2", 0.0) == []  # our own cookie
    other = LIBTORRENT.replace(b"2b7e151", b"1234")
    assert core.receive(other, "10.0.0.2", 0.0) == [(H1, PeerAddr("10.0.0.2", 6881))]
    assert core.receive(other, "10.0.0.2", REPORT_AGAIN / 2) == []  # not again so soon
    assert core.receive(other, "10.0.0.2", REPORT_AGAIN + 1) == [(H1, PeerAddr("10.0.0.2", 6881))]
    assert core.receive(TRANSMISSION, "10.0.0.3", 0.0) == []  # a torrent we do not have


def test_receive_memory_is_bounded() -> None:
    core = LsdCore(port=6881, cookie="x", families=["v4"])
    core.add(H2, 0.0)
    for i in range(MAX_REMEMBERED * 3):
        host = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        assert core.receive(TRANSMISSION, host, 1.0) == [(H2, PeerAddr(host, 51413))]
    assert len(core._reported) <= MAX_REMEMBERED


# ---------------------------------------------------------------- IPv6 (the same rules)

V6_ANNOUNCE = (
    b"BT-SEARCH * HTTP/1.1\r\n"
    b"Host: [ff15::efc0:988f]:6771\r\n"
    b"Port: 51413\r\n"
    b"Infohash: 0123456789abcdef0123456789abcdef01234567\r\n"
    b"cookie: 9e1\r\n"
    b"\r\n"
    b"\r\n"
)


def test_v6_session_announces_on_start_then_at_most_every_five_minutes() -> None:
    core = LsdCore(port=51413, cookie="9e1", families=["v6"])
    core.add(H1, 7.0)
    core.add(H2, 7.0, announce=False)  # listened for only: never announced
    assert core.packets(7.0) == [("v6", V6_ANNOUNCE)]
    for t in (7.0, 8.0, 7.0 + ANNOUNCE_INTERVAL - 0.001):
        assert core.packets(t) == []
    assert core.next_due() == 7.0 + ANNOUNCE_INTERVAL
    # late (the driver slept past the due time): one announce, the next 5 minutes after it
    assert core.packets(7.0 + ANNOUNCE_INTERVAL + 30) == [("v6", V6_ANNOUNCE)]
    assert core.next_due() == 7.0 + 2 * ANNOUNCE_INTERVAL + 30
    assert all(H2.hex().encode() not in data for _, data in core.packets(10_000.0))


def test_adding_a_running_torrent_again_keeps_its_schedule() -> None:
    # Two handles of one torrent (or a magnet's fetch and its swarm overlapping) must not
    # announce it twice within 5 minutes; stopping it for good and starting it again does.
    core = LsdCore(port=51413, cookie="9e1", families=["v6"])
    core.add(H1, 0.0)
    assert core.packets(0.0) == [("v6", V6_ANNOUNCE)]
    core.add(H1, 10.0)
    assert core.packets(10.0) == []
    assert core.next_due() == ANNOUNCE_INTERVAL
    core.remove(H1)
    assert core.next_due() == ANNOUNCE_INTERVAL  # still running once
    core.remove(H1)
    assert core.next_due() is None
    core.add(H1, 20.0)  # a new start
    assert core.packets(20.0) == [("v6", V6_ANNOUNCE)]


def test_v6_receive_ignores_our_cookie_and_reports_v6_peers() -> None:
    ours = LsdCore(port=51413, cookie="9e1", families=["v6"])
    ours.add(H1, 0.0)
    assert ours.receive(V6_ANNOUNCE, "fd00::1", 0.0) == []  # multicast loopback: ourselves
    theirs = V6_ANNOUNCE.replace(b"cookie: 9e1", b"cookie: 9e2")
    assert ours.receive(theirs, "fd00::2", 0.0) == [(H1, PeerAddr("fd00::2", 51413))]
    assert ours.receive(theirs, "fd00::2", 1.0) == []  # reported once per REPORT_AGAIN
    # a link-local sender, with the scope the driver adds (the engine dials it as such)
    assert ours.receive(theirs, "fe80::2%3", 1.0) == [(H1, PeerAddr("fe80::2%3", 51413))]
    # libtorrent's IPv6 announce (its hex digits in upper case, its own cookie)
    lt_v6 = V6_ANNOUNCE.replace(H1.hex().encode(), H1.hex().upper().encode())
    assert parse_announce(lt_v6.replace(b"9e1", b"2b7e151")) == Announce(51413, (H1,), "2b7e151")


def test_v6_batches_fit_the_datagram_cap_with_the_longer_host() -> None:
    core = LsdCore(port=65535, cookie="ffffffff", families=["v4", "v6"])
    hashes = [bytes([i]) * 20 for i in range(40)]
    for h in hashes:
        core.add(h, 0.0)
    sent = core.packets(0.0)
    v6 = [data for family, data in sent if family == "v6"]
    assert all(len(data) <= MAX_DATAGRAM for _, data in sent)
    assert all(
        data.startswith(b"BT-SEARCH * HTTP/1.1\r\nHost: [ff15::efc0:988f]:6771\r\n") for data in v6
    )
    got = [h for data in v6 for h in parse_announce(data).info_hashes]  # type: ignore[union-attr]
    assert sorted(got) == sorted(hashes)


def test_driver_interface_and_source_helpers() -> None:
    # The scope of a link-local listen address names the interface; an address nobody holds
    # (documentation prefix) gives 0: the routing table chooses.
    assert ipv6_interface("fe80::1%7") == 7
    assert ipv6_interface("fe80::1%lo") == socket.if_nametoindex("lo")
    assert ipv6_interface("2001:db8::1") == 0
    assert ipv6_interface("fe80::1%no-such-if") == 0
    assert _source_host(("fe80::2", 6771, 0, 3)) == "fe80::2%3"
    assert _source_host(("fd00::2", 6771, 0, 0)) == "fd00::2"
    assert _source_host(("10.0.0.2", 6771)) == "10.0.0.2"
    pktinfo = socket.inet_pton(socket.AF_INET6, "ff15::efc0:988f") + struct.pack("I", 5)
    assert _arrived_on([(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)]) == 5
    assert _arrived_on([(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo[:19])]) is None
    assert _arrived_on([]) is None
