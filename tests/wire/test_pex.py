"""BEP 11 PEX payloads: encoding, parsing, and what hostile messages turn into."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit import bencoding
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.wire import pex
from torrentkit.wire.pex import PexPeer


def test_round_trip_ipv4_and_ipv6_with_flags() -> None:
    added = [
        PexPeer(PeerAddr("1.2.3.4", 6881), pex.SEED | pex.REACHABLE),
        PexPeer(PeerAddr("2001:db8::1", 51413), pex.PREFERS_ENCRYPTION),
    ]
    dropped = [PeerAddr("5.6.7.8", 1), PeerAddr("2001:db8::2", 2)]
    payload = pex.encode(added, dropped)
    d = bencoding.decode(payload)
    assert d[b"added"] == bytes([1, 2, 3, 4, 0x1A, 0xE1])
    assert d[b"added.f"] == bytes([0x12])
    assert len(d[b"added6"]) == 18 and d[b"added6.f"] == b"\x01"
    assert d[b"dropped"] == bytes([5, 6, 7, 8, 0, 1])
    msg = pex.parse(payload)
    assert msg.added == tuple(added)
    assert msg.dropped == tuple(dropped)
    assert msg.malformed == 0


def test_host_names_are_left_out() -> None:
    payload = pex.encode([PexPeer(PeerAddr("example.org", 1))], [])
    assert pex.parse(payload).added == ()


def test_not_a_pex_message_is_a_protocol_error() -> None:
    for bad in (b"", b"l1:ae", b"d1:a", b"i3e"):
        with pytest.raises(RemoteProtocolError):
            pex.parse(bad)
    with pytest.raises(RemoteProtocolError, match="bytes"):
        pex.parse(b"d5:added" + b"600000:" + bytes(600_000) + b"e")


def test_malformed_entries_are_skipped_not_fatal() -> None:
    d = {
        b"added": bytes([1, 2, 3, 4, 0, 80]) + b"xyz",  # not a whole number of entries
        b"added6": bytes(16) + b"\x00\x50",  # the unspecified address
        b"added6.f": b"\x00",
        b"dropped": b"abc",
    }
    msg = pex.parse(bencoding.encode(d))
    assert msg.added == () and msg.dropped == ()
    assert msg.malformed == 3
    # Port 0, 0.0.0.0, multicast and broadcast entries are skipped one by one.
    entries = [
        bytes([9, 9, 9, 9, 0, 0]),
        bytes([0, 0, 0, 0, 0, 80]),
        bytes([224, 0, 0, 1, 0, 80]),
        bytes([255, 255, 255, 255, 0, 80]),
        bytes([9, 9, 9, 9, 0, 80]),
    ]
    msg = pex.parse(bencoding.encode({b"added": b"".join(entries), b"added.f": bytes(5)}))
    assert msg.added == (PexPeer(PeerAddr("9.9.9.9", 80)),)
    assert msg.malformed == 4


def test_flags_of_the_wrong_length_read_as_zero() -> None:
    d = {b"added": bytes([1, 2, 3, 4, 0, 80]) * 2, b"added.f": b"\x02"}
    msg = pex.parse(bencoding.encode(d))
    assert [p.flags for p in msg.added] == [0, 0]
    assert msg.malformed == 1
    # No flags at all (some clients): zero flags, not malformed.
    msg = pex.parse(bencoding.encode({b"added": bytes([1, 2, 3, 4, 0, 80])}))
    assert msg.added == (PexPeer(PeerAddr("1.2.3.4", 80), 0),) and msg.malformed == 0


def test_thousands_of_peers_parse_in_one_go() -> None:
    added = [PexPeer(PeerAddr(f"10.{i >> 8 & 255}.{i & 255}.1", 6881)) for i in range(5000)]
    msg = pex.parse(pex.encode(added, []))
    assert len(msg.added) == 5000  # the engine caps what it believes (tests/engine)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.32.0.1", False),
        ("192.168.1.1", True),
        ("169.254.3.3", True),
        ("127.0.0.1", True),
        ("100.64.0.1", True),
        ("8.8.8.8", False),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("2001:db8::1", False),
        ("::ffff:192.168.0.1", True),
        ("not-an-ip", False),
    ],
)
def test_is_local(host: str, local: bool) -> None:
    assert pex.is_local(host) is local


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_remote_protocol_error(data: bytes) -> None:
    """Invariant: any payload either parses or raises RemoteProtocolError."""
    with contextlib.suppress(RemoteProtocolError):
        pex.parse(data)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([b"added", b"added.f", b"added6", b"added6.f", b"dropped", b"dropped6"]),
        st.binary(max_size=60)
        | st.integers(-(2**63), 2**63 - 1)
        | st.lists(st.integers(0, 9), max_size=3),
    )
)
def test_any_dictionary_parses(d: dict[bytes, object]) -> None:
    """Invariant: a dictionary is always a PEX message (bad fields are skipped, not fatal)."""
    msg = pex.parse(bencoding.encode(d))
    assert all(p.addr.port for p in msg.added)


# IPv4 entries: a few addresses the rule is about, and any others.
_V4_EDGES = [
    b"\0\0\0\0",  # unspecified
    b"\xff\xff\xff\xff",  # broadcast
    b"\xe0\0\0\1",  # multicast, first and last
    b"\xef\xff\xff\xff",
    b"\xdf\xff\xff\xff",  # just below and above multicast
    b"\xf0\0\0\0",
    b"\x7f\0\0\1",
    b"\0\0\0\1",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_V4_EDGES) | st.binary(min_size=4, max_size=4),
            st.sampled_from([0, 1, 6881, 65535]) | st.integers(0, 65535),
        ),
        max_size=60,
    )
)
def test_ipv4_entries_read_as_ipaddress_reads_them(entries: list[tuple[bytes, int]]) -> None:
    """The IPv4 fast path (no address objects) keeps and drops exactly what the general one
    (``ipaddress`` and ``_usable``) does, and names each address alike."""
    import ipaddress

    raw = b"".join(ip + port.to_bytes(2, "big") for ip, port in entries)
    expected = []
    for n, (ip, port) in enumerate(entries):
        addr = ipaddress.ip_address(ip)
        if pex._usable(addr, port):
            expected.append((PeerAddr(str(addr), port), n))
    got, bad = pex._addresses({b"added": raw}, b"added", 6)
    assert got == expected
    assert bad == len(entries) - len(expected)


def _pack_reference(addr: PeerAddr) -> tuple[bool, bytes] | None:
    """``pex._pack`` before its per-host cache: an ipaddress object per call."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(addr.host)
    except ValueError:
        return None
    return ip.version == 6, ip.packed + addr.port.to_bytes(2, "big")


_hosts = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["example.org", "1.2.3", "01.2.3.4", "::ffff:1.2.3.4", "fe80::1%eth0", ""]),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_hosts, st.integers(0, 65535)), max_size=30))
def test_packing_is_the_ipaddress_packing(addrs: list[tuple[str, int]]) -> None:
    """The cached packing gives what a fresh ipaddress object per address gives, host names
    (left out) and IPv6 scopes included, asked once or again."""
    for host, port in addrs + addrs:
        assert pex._pack(PeerAddr(host, port)) == _pack_reference(PeerAddr(host, port))
