"""Magnet links (BEP 9, BEP 53 x.pe, BEP 52 btmh), checked against libtorrent's parser.

Fuzz invariant: any text after ``magnet:?`` gives a Magnet or raises MetainfoError.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import urllib.parse

import libtorrent as lt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.errors import MetainfoError, UnsupportedError
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.metainfo import MAX_MAGNET_WEB_SEEDS, Magnet, parse_magnet

IH = bytes.fromhex("c9e15763f722f23e98a29decdfae341b98d53056")
HEX = IH.hex()
B32 = base64.b32encode(IH).decode()
V2 = bytes(range(32))


def test_hex_and_base32_btih_give_the_same_hash() -> None:
    for text in (HEX, HEX.upper(), B32, B32.lower()):
        assert parse_magnet(f"magnet:?xt=urn:btih:{text}").info_hash == InfoHash(IH)


def test_all_fields() -> None:
    uri = (
        f"magnet:?xt=urn:btih:{HEX}&dn=Cosmos+Laundromat%20%C3%A9t%C3%A9"
        "&tr=http%3A%2F%2Ft.example%3A6969%2Fannounce%3Fkey%3D1%26x%3D2"
        "&tr=udp%3A%2F%2Fu.example%3A80"
        "&tr=http%3A%2F%2Ft.example%3A6969%2Fannounce%3Fkey%3D1%26x%3D2"  # duplicate: dropped
        "&x.pe=127.0.0.1:6881&x.pe=%5B2001%3Adb8%3A%3A1%5D%3A51413&x.pe=[::1]:6882"
    )
    m = parse_magnet(uri)
    assert m.info_hash == IH
    assert m.name == "Cosmos Laundromat été"
    assert m.trackers == ("http://t.example:6969/announce?key=1&x=2", "udp://u.example:80")
    assert m.peers == (
        PeerAddr("127.0.0.1", 6881),
        PeerAddr("2001:db8::1", 51413),
        PeerAddr("::1", 6882),
    )
    assert m.info_hash_v2 is None


def test_numbered_keys_as_some_clients_write_them() -> None:
    m = parse_magnet(f"magnet:?xt.1=urn:btih:{HEX}&tr.1=http://a/ann&tr.2=http://b/ann")
    assert m.info_hash == IH
    assert m.trackers == ("http://a/ann", "http://b/ann")


def test_ws_web_seeds_are_decoded_and_only_http_or_https_kept() -> None:
    uri = (
        f"magnet:?xt=urn:btih:{HEX}&ws=http%3A%2F%2Fh.example%2Fa%20b%2F"
        "&ws=ftp%3A%2F%2Fx.example%2Ff&ws=HTTPS://y.example:8443/z%3Fq%3D1"
        "&ws=http%3A%2F%2Fh.example%2Fa%20b%2F"  # duplicate: dropped
        "&ws=&ws=http%3A%2F%2F%2Fno-host&ws=javascript:alert(1)&ws=http://[::1&ws=file:///etc"
    )
    m = parse_magnet(uri)
    assert m.web_seeds == ("http://h.example/a b/", "HTTPS://y.example:8443/z?q=1")
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX}").web_seeds == ()


def test_ws_web_seeds_are_bounded() -> None:
    many = "".join(f"&ws=http://h{i}.example/" for i in range(MAX_MAGNET_WEB_SEEDS + 5))
    m = parse_magnet(f"magnet:?xt=urn:btih:{HEX}{many}")
    assert m.web_seeds == tuple(f"http://h{i}.example/" for i in range(MAX_MAGNET_WEB_SEEDS))


def test_btmh_gives_the_v2_hash() -> None:
    m = parse_magnet(f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{V2.hex()}")
    assert (m.info_hash, m.info_hash_v2) == (IH, V2)


def test_btmh_alone_is_unsupported() -> None:
    with pytest.raises(UnsupportedError) as caught:
        parse_magnet(f"magnet:?xt=urn:btmh:1220{V2.hex()}")
    assert caught.value.field == "magnet.xt"


@pytest.mark.parametrize(
    ("uri", "field"),
    [
        ("http://example.com/?xt=urn:btih:" + HEX, "magnet"),
        ("magnet:xt=urn:btih:" + HEX, "magnet"),
        ("magnet:?" + "dn=" + "a" * 70_000 + "&xt=urn:btih:" + HEX, "magnet"),
        ("magnet:?dn=no+hash&tr=http://a/ann", "magnet.xt"),
        ("magnet:?xt=urn:sha1:" + HEX, "magnet.xt"),
        ("magnet:?xt=urn:btih:" + HEX[:-1], "magnet.xt"),
        ("magnet:?xt=urn:btih:" + HEX[:-1] + "g", "magnet.xt"),
        ("magnet:?xt=urn:btih:" + "aa " * 13 + " ", "magnet.xt"),  # fromhex skips spaces
        ("magnet:?xt=urn:btih:" + "A" * 29 + "===", "magnet.xt"),  # padded base32: 18 bytes
        ("magnet:?xt=urn:btih:" + B32[:-1] + "1", "magnet.xt"),  # '1' is not base32
        (f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{'00' * 20}", "magnet.xt"),
        (f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1114{'00' * 32}", "magnet.xt"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1", "magnet.x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1:0", "magnet.x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1:65536", "magnet.x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1:%D9%A3", "magnet.x.pe"),  # Arabic 3
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=::1:6881", "magnet.x.pe"),  # v6 needs brackets
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=[zz::1]:6881", "magnet.x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=:6881", "magnet.x.pe"),
    ],
)
def test_bad_magnets_name_the_field(uri: str, field: str) -> None:
    with pytest.raises(MetainfoError) as caught:
        parse_magnet(uri)
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ": ")


def test_format_exact() -> None:
    m = Magnet(
        info_hash=InfoHash(IH),
        name="a b/é",
        trackers=("http://t/ann?x=1&y=2",),
        peers=(PeerAddr("127.0.0.1", 1), PeerAddr("::1", 2)),
        info_hash_v2=V2,
        web_seeds=("https://w/d ir/",),
    )
    assert m.format() == (
        f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{V2.hex()}&dn=a%20b%2F%C3%A9"
        "&tr=http%3A%2F%2Ft%2Fann%3Fx%3D1%26y%3D2&x.pe=127.0.0.1:1&x.pe=[::1]:2"
        "&ws=https%3A%2F%2Fw%2Fd%20ir%2F"
    )
    assert parse_magnet(m.format()) == m


# ----------------------------------------------------------------------------- properties

hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(int(a)))),
)
peers = st.builds(PeerAddr, hosts, st.integers(1, 65535))
trackers = st.builds(
    lambda scheme, host, port, query: f"{scheme}://{host}:{port}/announce{query}",
    st.sampled_from(["http", "https", "udp"]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    st.integers(1, 65535),
    st.sampled_from(["", "?passkey=a+b&x=%41", "?k=é"]),
)
web_seeds = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    st.sampled_from(["", "files/", "a b/é.iso", "x?y=1&z=%41"]),
)
magnets = st.builds(
    Magnet,
    info_hash=st.binary(min_size=20, max_size=20).map(InfoHash),
    name=st.none() | st.text(min_size=1, max_size=40),
    trackers=st.lists(trackers, unique=True, max_size=4).map(tuple),
    peers=st.lists(peers, unique=True, max_size=4).map(tuple),
    info_hash_v2=st.none() | st.binary(min_size=32, max_size=32),
    web_seeds=st.lists(web_seeds, unique=True, max_size=3).map(tuple),
)


@given(magnets)
def test_format_then_parse_round_trips(m: Magnet) -> None:
    assert parse_magnet(m.format()) == m


@given(st.text(max_size=200))
def test_arbitrary_text_gives_magnet_or_metainfo_error(text: str) -> None:
    with contextlib.suppress(MetainfoError):
        parse_magnet("magnet:?" + text)


magnet_soup = st.lists(
    st.sampled_from(
        ["xt=urn:btih:", "xt=urn:btmh:1220", HEX, B32, "aa", " ", "=", "&", "%", "%20", "[",
         "]", ":", "x.pe=", "tr=", "dn=", "::1", "1.2.3.4", "65535", "0", "+", "xt.1=", "é"]
    ),
    max_size=30,
).map("".join)  # fmt: skip


@given(magnet_soup)
def test_magnet_soup_gives_magnet_or_metainfo_error(text: str) -> None:
    with contextlib.suppress(MetainfoError):
        parse_magnet("magnet:?" + text)


# ----------------------------------------------------------------------------- libtorrent

LINKS = [
    f"magnet:?xt=urn:btih:{HEX}",
    f"magnet:?xt=urn:btih:{B32}&dn=Cosmos+Laundromat",
    f"magnet:?xt=urn:btih:{B32.lower()}&dn=caf%C3%A9%20%2B%20cr%C3%A8me",
    f"magnet:?xt=urn:btih:{HEX}&tr=http%3A%2F%2Fa.example%2Fann%3Fk%3D1&tr=udp://b.example:80"
    "&tr=https%3A%2F%2Fc.example%2Fannounce",
    # (libtorrent does not unescape x.pe, so none is percent-encoded here; we accept both.)
    f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1:6881&x.pe=[::1]:6882&x.pe=[2001:db8::7]:51413",
    f"magnet:?dn=first&xt=urn:btih:{HEX}&xt=urn:btmh:1220{V2.hex()}&tr=http://t/ann"
    "&x.pe=10.1.2.3:1",
    f"magnet:?xt=urn:btih:{HEX}&ws=http%3A%2F%2Fw.example%2Ffiles%2F&ws=https://v.example/a%20b",
]


Peer = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def normal(peers: list[PeerAddr] | tuple[PeerAddr, ...]) -> list[Peer]:
    """Addresses compared as addresses: '::ffff:0.0.0.0' and '::ffff:0:0' are one."""
    return [(ipaddress.ip_address(host), port) for host, port in peers]


def libtorrent_reading(uri: str) -> tuple[bytes, str | None, list[str], list[Peer], list[str]]:
    p = lt.parse_magnet_uri(uri)
    return (
        bytes.fromhex(str(p.info_hashes.v1)),
        p.name or None,
        list(p.trackers),
        normal([PeerAddr(host, port) for host, port in p.peers]),
        list(p.url_seeds),
    )


@pytest.mark.interop
@pytest.mark.parametrize("uri", LINKS)
def test_libtorrent_reads_links_as_we_do(uri: str) -> None:
    m = parse_magnet(uri)
    assert libtorrent_reading(uri) == (
        m.info_hash,
        m.name,
        list(m.trackers),
        normal(m.peers),
        list(m.web_seeds),
    )
    p = lt.parse_magnet_uri(uri)
    if m.info_hash_v2 is not None:
        assert bytes.fromhex(str(p.info_hashes.v2)) == m.info_hash_v2


@pytest.mark.interop
@given(magnets)
def test_libtorrent_reads_our_links_as_we_do(m: Magnet) -> None:
    uri = m.format()
    ih, name, trs, pes, wss = libtorrent_reading(uri)
    assert ih == m.info_hash
    assert name == m.name
    assert trs == list(m.trackers)
    assert pes == normal(m.peers)
    assert wss == list(m.web_seeds)
    if m.info_hash_v2 is not None:
        assert bytes.fromhex(str(lt.parse_magnet_uri(uri).info_hashes.v2)) == m.info_hash_v2


@pytest.mark.interop
def test_libtorrent_writes_links_we_read() -> None:
    atp = lt.parse_magnet_uri(
        f"magnet:?xt=urn:btih:{HEX}&dn=a%20b&tr=http%3A%2F%2Ft%2Fann&x.pe=127.0.0.1:6881"
        "&ws=http%3A%2F%2Fw%2Fa%20b%2F"
    )
    uri = lt.make_magnet_uri(atp)
    m = parse_magnet(uri)
    assert m.info_hash == IH and m.name == "a b" and m.trackers == ("http://t/ann",)
    assert m.web_seeds == ("http://w/a b/",)  # libtorrent writes lower-case escapes
    assert urllib.parse.urlsplit(uri).scheme == "magnet"
