"""Overlay messages: exact bytes, round trips, packing into 4 kB, hostile payloads."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit import bencoding
from torrentkit.discovery.gnutella import messages as m
from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.ids import InfoHash

MID = b"0123456789abcdef"
IH = InfoHash(bytes(range(20)))
ENTRY = m.FileEntry(name="Ubuntu ISO", size=1234, info_hash=IH)


def test_overlay_info_hash_is_sha1_of_the_published_constant() -> None:
    assert m.OVERLAY_CONSTANT == b"torrentkit gnutella overlay v1"
    assert hashlib.sha1(b"torrentkit gnutella overlay v1").digest() == m.OVERLAY_INFO_HASH
    assert m.OVERLAY_INFO_HASH.hex() == "284012becbbe222b75a1f9a3b48096d9132461bd"


def test_exact_bytes() -> None:
    assert m.encode(m.Hello(role=m.Role.PEER, port=6881)) == b"d4:porti6881e4:role4:peer1:y5:helloe"
    assert m.encode(m.Hello(role=m.Role.SUPERNODE, port=0)) == b"d4:porti0e4:role2:sn1:y5:helloe"
    assert (
        m.encode(m.Ping(msg_id=MID, ttl=7, hops=0))
        == b"d4:hopsi0e2:id16:0123456789abcdef3:ttli7e1:y4:pinge"
    )
    assert (
        m.encode(m.Pong(msg_id=MID, ttl=2, hops=0, host="", port=7000, supernode=True, files=3))
        == b"d4:hopsi0e2:id16:0123456789abcdef2:ip0:1:ni3e4:porti7000e2:sni1e3:ttli2e1:y4:ponge"
    )
    assert (
        m.encode(m.Query(msg_id=MID, ttl=6, hops=1, text="ubuntu iso"))
        == b"d4:hopsi1e2:id16:0123456789abcdef1:q10:ubuntu iso3:ttli6e1:y5:querye"
    )
    assert m.encode(
        m.QueryHit(msg_id=MID, ttl=2, hops=0, host="10.0.0.1", port=6881, files=(ENTRY,))
    ) == (
        b"d4:hopsi0e2:id16:0123456789abcdef2:ip8:10.0.0.14:porti6881e"
        b"1:rld1:h20:" + bytes(range(20)) + b"1:li1234e1:n10:Ubuntu ISOee3:ttli2e1:y3:hite"
    )
    assert m.encode(m.Share(reset=True, host="", port=6881, files=(ENTRY,))) == (
        b"d2:ip0:4:porti6881e1:rld1:h20:" + bytes(range(20)) + b"1:li1234e1:n10:Ubuntu ISOee"
        b"5:reseti1e1:y5:sharee"
    )


ALL = [
    m.Hello(role=m.Role.LEAF, port=1),
    m.Ping(msg_id=MID, ttl=1, hops=6),
    m.Pong(msg_id=MID, ttl=3, hops=4, host="::1", port=65535),
    m.Query(msg_id=MID, ttl=7, hops=0, text="ünïcode wörds"),
    m.Query(msg_id=MID, ttl=7, hops=0, text=""),
    m.QueryHit(msg_id=MID, ttl=1, hops=2, host="", port=80, files=(ENTRY, ENTRY)),
    m.Share(reset=False, host="192.0.2.7", port=9, files=()),
]


@pytest.mark.parametrize("msg", ALL, ids=lambda x: type(x).__name__)
def test_round_trip(msg: m.Message) -> None:
    assert m.parse(m.encode(msg)) == msg


def test_unknown_keys_are_ignored() -> None:
    payload = b"d4:hopsi0e2:id16:0123456789abcdef5:extra3:xyz3:ttli7e1:y4:pinge"
    assert m.parse(payload) == m.Ping(msg_id=MID, ttl=7, hops=0)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"le",
        b"d1:y4:pinge",  # no id
        b"d4:hopsi0e2:id3:abc3:ttli7e1:y4:pinge",  # short id
        b"d4:hopsi0e2:id16:0123456789abcdef3:ttli-1e1:y4:pinge",
        b"d4:hopsi256e2:id16:0123456789abcdef3:ttli7e1:y4:pinge",
        b"d4:hopsi0e2:id16:0123456789abcdef3:ttli7e1:y5:bogose",
        b"d4:hopsi0e2:id16:0123456789abcdef3:ttli7ee",  # no y
        b"d4:porti1e4:role5:queen1:y5:helloe",  # unknown role
        b"d4:porti70000e4:role4:peer1:y5:helloe",
        # pong pointing at a host name, or at port 0
        b"d4:hopsi0e2:id16:0123456789abcdef2:ip9:localhost1:ni0e4:porti1e2:sni0e3:ttli1e1:y4:ponge",
        b"d4:hopsi0e2:id16:0123456789abcdef2:ip0:1:ni0e4:porti0e2:sni0e3:ttli1e1:y4:ponge",
        # a hit without files, with a bad info-hash, with a non-UTF-8 name
        b"d4:hopsi0e2:id16:0123456789abcdef2:ip0:4:porti1e1:rle3:ttli1e1:y3:hite",
        b"d4:hopsi0e2:id16:0123456789abcdef2:ip0:4:porti1e1:rld1:h3:abc1:li1e1:n1:aee3:ttli1e1:y3:hite",
        b"d4:hopsi0e2:id16:0123456789abcdef2:ip0:4:porti1e1:rld1:h20:"
        + bytes(20)
        + b"1:li1e1:n1:\xffee3:ttli1e1:y3:hite",
        b"d4:hopsi0e2:id16:0123456789abcdef1:q257:" + b"a" * 257 + b"3:ttli7e1:y5:querye",
        b"d" * 100,  # deeper than the limit
    ],
)
def test_bad_messages_are_remote_errors(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        m.parse(payload)


def test_over_4_kb_is_refused_both_ways() -> None:
    big = m.Query(msg_id=MID, ttl=7, hops=0, text="x" * 256)
    padded = bencoding.encode({"y": "query", "pad": "x" * 5000})
    with pytest.raises(RemoteProtocolError, match="4096"):
        m.parse(padded)
    many = tuple(m.FileEntry(name=f"file {i}" * 10, size=i, info_hash=IH) for i in range(100))
    with pytest.raises(LocalProtocolError):
        m.encode(m.QueryHit(msg_id=MID, ttl=1, hops=0, host="", port=1, files=many))
    assert len(m.encode(big)) < m.MAX_MESSAGE


def test_pack_splits_into_messages_of_at_most_4_kb() -> None:
    files = [
        m.FileEntry(name=f"track {i:04d} " + "x" * 60, size=i, info_hash=IH) for i in range(300)
    ]

    def make(chunk: tuple[m.FileEntry, ...], first: bool) -> m.Share:
        return m.Share(reset=first, host="", port=1, files=chunk)

    packed = m.pack(make, files)
    sizes = [len(m.encode(x)) for x in packed]
    assert all(s <= m.MAX_MESSAGE for s in sizes)
    assert max(sizes) > m.MAX_MESSAGE - 200  # chunks are full, not timid
    assert [f for x in packed for f in x.files] == files
    assert [x.reset for x in packed if isinstance(x, m.Share)] == [True] + [False] * (
        len(packed) - 1
    )


def test_events_refuse_bad_values() -> None:
    with pytest.raises(LocalProtocolError):
        m.Ping(msg_id=b"short", ttl=1, hops=0)
    with pytest.raises(LocalProtocolError):
        m.Ping(msg_id=MID, ttl=256, hops=0)
    with pytest.raises(LocalProtocolError):
        m.Pong(msg_id=MID, ttl=1, hops=0, host="example.com", port=1)
    with pytest.raises(LocalProtocolError):
        m.Query(msg_id=MID, ttl=1, hops=0, text="q" * 257)
    with pytest.raises(LocalProtocolError):
        m.QueryHit(msg_id=MID, ttl=1, hops=0, host="", port=1, files=())
    with pytest.raises(LocalProtocolError):
        m.FileEntry(name="", size=1, info_hash=IH)
    with pytest.raises(LocalProtocolError):
        m.FileEntry(name="bad \udcff", size=1, info_hash=IH)
    with pytest.raises(LocalProtocolError):
        m.FileEntry(name="a", size=-1, info_hash=IH)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_remote_error(payload: bytes) -> None:
    # The invariant: a message, or RemoteProtocolError; any other exception fails the test.
    with contextlib.suppress(RemoteProtocolError):
        assert isinstance(
            m.parse(payload), m.Hello | m.Ping | m.Pong | m.Query | m.QueryHit | m.Share
        )


_values = st.recursive(
    st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        b"y",
        b"id",
        b"ttl",
        b"hops",
        b"ip",
        b"port",
        b"q",
        b"r",
        b"n",
        b"l",
        b"h",
        b"sn",
        b"role",
        b"reset",
    ]
)
_types = st.sampled_from([b"hello", b"ping", b"pong", b"query", b"hit", b"share", b"x"])


@given(st.dictionaries(_keys, _values, max_size=8), _types)
def test_near_miss_dictionaries_parse_or_raise_remote_error(
    fields: dict[bytes, object], y: bytes
) -> None:
    # Same invariant, on well-formed bencode with the right keys and wrong values.
    fields[b"y"] = y
    try:
        payload = bencoding.encode(fields)
    except ValueError:  # an integer outside 64 bits: not something bencode can carry
        return
    with contextlib.suppress(RemoteProtocolError):
        msg = m.parse(payload)
        assert m.parse(m.encode(msg)) == msg
