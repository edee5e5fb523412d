"""Tracker wire format: request parsing/building and reply encoding/parsing (pure)."""

from __future__ import annotations

import contextlib
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit import bencoding
from torrentkit.discovery.tracker import protocol
from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceReply,
    AnnounceRequest,
    ScrapeStats,
    TrackerFailure,
    TrackerRequestError,
    TrackerResponseError,
)
from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.ids import InfoHash, PeerAddr

IH = InfoHash(bytes(range(20)))
PID = b"-TK0001-" + bytes(range(200, 212))
# Built by hand, as libtorrent writes it: unreserved bytes as they are, the rest as %XX.
IH_Q = "%00%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10%11%12%13"
PID_Q = "-TK0001-%c8%c9%ca%cb%cc%cd%ce%cf%d0%d1%d2%d3"
BASE = f"info_hash={IH_Q}&peer_id={PID_Q}&port=6881&uploaded=1&downloaded=2&left=3"


def test_parse_announce_exact_values() -> None:
    req = protocol.parse_announce_query(
        BASE + "&event=started&compact=1&numwant=20&key=ab%2Bc&ip=10.0.0.1"
    )
    assert req == AnnounceRequest(
        info_hash=IH,
        peer_id=PID,
        port=6881,
        uploaded=1,
        downloaded=2,
        left=3,
        event=AnnounceEvent.STARTED,
        compact=True,
        numwant=20,
        key=b"ab+c",
        ip="10.0.0.1",
    )


def test_parse_announce_defaults() -> None:
    req = protocol.parse_announce_query(BASE)
    assert req.compact is True  # BEP 23 compact is the default
    assert req.no_peer_id is False
    assert req.event is AnnounceEvent.NONE
    assert req.numwant is None
    assert protocol.effective_numwant(req.numwant) == 50


def test_raw_bytes_survive_every_spelling() -> None:
    # Mixed literal and escaped bytes, upper and lower case hex, a literal '+' (not a space)
    # and NUL bytes: each parameter is decoded on its own, to the exact bytes.
    raw = b"\x00+ab\xff%&=?" + b"\x00" * 11
    assert len(raw) == 20
    spelled = "%00+ab%FF%25%26%3D%3f" + "%00" * 11
    q = f"info_hash={spelled}&peer_id={spelled}&port=1&uploaded=0&downloaded=0&left=0"
    req = protocol.parse_announce_query(q)
    assert req.info_hash == raw
    assert req.peer_id == raw


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "missing info_hash"),
        (BASE.replace(f"info_hash={IH_Q}&", ""), "missing info_hash"),
        (BASE.replace(IH_Q, IH_Q[:-3]), "info_hash must be 20 bytes, got 19"),
        (BASE.replace(IH_Q, IH_Q + "%14"), "info_hash must be 20 bytes, got 21"),
        (BASE.replace(PID_Q, "short"), "peer_id must be 20 bytes, got 5"),
        (BASE.replace(f"&peer_id={PID_Q}", ""), "missing peer_id"),
        (BASE.replace("port=6881", "port=0"), "port must be 1-65535, got 0"),
        (BASE.replace("port=6881", "port=70000"), "port must be 1-65535, got 70000"),
        (BASE.replace("port=6881", "port=-1"), "port must be a non-negative integer"),
        (BASE.replace("port=6881", "port=+5"), "port must be a non-negative integer"),
        (BASE.replace("port=6881", "port=٣"), "port must be a non-negative integer"),
        (BASE.replace("&left=3", ""), "missing left"),
        (BASE.replace("left=3", "left=" + "9" * 20), "left must be a non-negative integer"),
        (BASE.replace("left=3", "left=9999999999999999999"), "left is too large"),
        (BASE + "&numwant=1e9", "numwant must be a non-negative integer"),
        (BASE + "&event=exploded", "event must be started, completed, stopped or empty"),
        (BASE + f"&info_hash={IH_Q}", "info_hash given more than once"),
        (BASE + "&port=1", "port given more than once"),
        (BASE + "&key=" + "k" * 65, "key longer than 64 bytes"),
        (BASE + "&x=" + "y" * 140_000, "query longer than 131072 characters"),
    ],
)
def test_bad_announce_names_the_problem(query: str, reason: str) -> None:
    with pytest.raises(TrackerRequestError) as info:
        protocol.parse_announce_query(query)
    assert str(info.value) == reason
    assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize(
    ("numwant", "expected"),
    [("0", 0), ("7", 7), ("200", 200), ("201", 200), ("1000000000", 200), ("-1", 50)],
)
def test_numwant_capped(numwant: str, expected: int) -> None:
    req = protocol.parse_announce_query(BASE + f"&numwant={numwant}")
    assert protocol.effective_numwant(req.numwant) == expected


def test_flags_and_events() -> None:
    q = protocol.parse_announce_query(BASE + "&compact=0&no_peer_id=1&event=stopped")
    assert (q.compact, q.no_peer_id, q.event) == (False, True, AnnounceEvent.STOPPED)
    assert protocol.parse_announce_query(BASE + "&event=").event is AnnounceEvent.NONE
    assert protocol.parse_announce_query(BASE + "&event=paused").event is AnnounceEvent.PAUSED


def test_request_values_validate_themselves() -> None:
    with pytest.raises(LocalProtocolError):
        AnnounceRequest(info_hash=IH, peer_id=b"short", port=1)
    with pytest.raises(LocalProtocolError):
        AnnounceRequest(info_hash=IH, peer_id=PID, port=0)
    with pytest.raises(LocalProtocolError):
        AnnounceRequest(info_hash=IH, peer_id=PID, port=1, left=-1)


requests = st.builds(
    AnnounceRequest,
    info_hash=st.binary(min_size=20, max_size=20).map(InfoHash),
    peer_id=st.binary(min_size=20, max_size=20),
    port=st.integers(1, 65535),
    uploaded=st.integers(0, 2**63 - 1),
    downloaded=st.integers(0, 2**63 - 1),
    left=st.integers(0, 2**63 - 1),
    event=st.sampled_from(AnnounceEvent),
    compact=st.booleans(),
    no_peer_id=st.booleans(),
    numwant=st.none() | st.integers(0, 10**6),
    ip=st.none() | st.ip_addresses().map(str),
    key=st.none() | st.binary(min_size=1, max_size=64),
)


@given(requests)
def test_build_then_parse_round_trips(req: AnnounceRequest) -> None:
    assert protocol.parse_announce_query(protocol.build_announce_query(req)) == req


@given(st.text())
def test_any_query_parses_or_raises_our_error(query: str) -> None:
    # Invariant: any text is a request or a TrackerRequestError, never another exception.
    with contextlib.suppress(TrackerRequestError):
        protocol.parse_announce_query(query)
    with contextlib.suppress(TrackerRequestError):
        protocol.parse_scrape_query(query)


def test_announce_url_keeps_an_existing_query() -> None:
    req = AnnounceRequest(info_hash=IH, peer_id=PID, port=1)
    assert protocol.announce_url("http://t/announce", req).startswith("http://t/announce?info")
    assert protocol.announce_url("http://t/a?pk=1", req).startswith("http://t/a?pk=1&info_hash")


# -- scrape -------------------------------------------------------------------------------------


def test_scrape_query_several_hashes_deduplicated() -> None:
    a, b = IH_Q, "%ff" * 20
    hashes = protocol.parse_scrape_query(f"info_hash={a}&info_hash={b}&info_hash={a}")
    assert hashes == [IH, InfoHash(b"\xff" * 20)]


def test_scrape_query_capped_at_64() -> None:
    query = "&".join(
        "info_hash=" + urllib.parse.quote_from_bytes(i.to_bytes(20, "big")) for i in range(1000)
    )
    hashes = protocol.parse_scrape_query(query)
    assert len(hashes) == protocol.MAX_SCRAPE_HASHES == 64
    assert hashes[63] == (63).to_bytes(20, "big")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "scrape needs at least one info_hash (full scrape is off)"),
        ("info_hash=abc", "info_hash must be 20 bytes, got 3"),
    ],
)
def test_bad_scrape(query: str, reason: str) -> None:
    with pytest.raises(TrackerRequestError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        protocol.parse_scrape_query(query)


@pytest.mark.parametrize(
    ("announce", "scrape"),
    [  # BEP 48's examples
        ("http://example.com/announce", "http://example.com/scrape"),
        ("http://example.com/x/announce", "http://example.com/x/scrape"),
        ("http://example.com/announce.php", "http://example.com/scrape.php"),
        ("http://example.com/a", None),
        ("http://example.com/announce?x2%0644", "http://example.com/scrape?x2%0644"),
        ("http://example.com/announce?x=2/4", "http://example.com/scrape?x=2/4"),
        ("http://example.com/x%064announce", None),
    ],
)
def test_scrape_url_per_bep48(announce: str, scrape: str | None) -> None:
    assert protocol.scrape_url(announce, []) == scrape


def test_scrape_url_with_hashes() -> None:
    url = protocol.scrape_url("http://t/announce", [IH, IH])
    assert url == f"http://t/scrape?info_hash={IH_Q.upper()}&info_hash={IH_Q.upper()}"


def test_scrape_round_trip() -> None:
    files = {IH: ScrapeStats(complete=3, downloaded=7, incomplete=2)}
    body = protocol.encode_scrape_response(files)
    assert body == (
        b"d5:filesd20:" + bytes(IH) + b"d8:completei3e10:downloadedi7e10:incompletei2eeee"
    )
    assert protocol.parse_scrape_response(body) == files


# -- announce replies ---------------------------------------------------------------------------


class _P:
    def __init__(self, ip: str, port: int, peer_id: bytes = b"p" * 20) -> None:
        self.ip, self.port, self.peer_id = ip, port, peer_id
        self.compact = protocol.compact_peer(ip, port)


def _reply(*peers: _P) -> AnnounceReply:
    return AnnounceReply(interval=1800, min_interval=900, complete=2, incomplete=1, peers=peers)


def test_compact_reply_exact_bytes() -> None:
    body = protocol.encode_announce_response(_reply(_P("127.0.0.1", 6881), _P("10.0.0.2", 80)))
    assert body == (
        b"d8:completei2e10:incompletei1e8:intervali1800e12:min intervali900e"
        b"5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e"
    )
    parsed = protocol.parse_announce_response(body)
    assert parsed.peers == (PeerAddr("127.0.0.1", 6881), PeerAddr("10.0.0.2", 80))
    assert (parsed.interval, parsed.min_interval, parsed.complete, parsed.incomplete) == (
        1800,
        900,
        2,
        1,
    )


def test_ipv6_peers_go_in_peers6() -> None:
    body = protocol.encode_announce_response(_reply(_P("::1", 7), _P("127.0.0.1", 8)))
    d = bencoding.decode(body)
    assert d[b"peers"] == b"\x7f\x00\x00\x01\x00\x08"
    assert d[b"peers6"] == b"\x00" * 15 + b"\x01\x00\x07"
    assert protocol.parse_announce_response(body).peers == (
        PeerAddr("127.0.0.1", 8),
        PeerAddr("::1", 7),
    )


def test_non_compact_reply_with_and_without_peer_ids() -> None:
    reply = _reply(_P("127.0.0.1", 6881, b"A" * 20), _P("::1", 6882, b"B" * 20))
    listed = bencoding.decode(protocol.encode_announce_response(reply, compact=False))
    assert listed[b"peers"] == [
        {b"ip": b"127.0.0.1", b"port": 6881, b"peer id": b"A" * 20},
        {b"ip": b"::1", b"port": 6882, b"peer id": b"B" * 20},
    ]
    bare = bencoding.decode(
        protocol.encode_announce_response(reply, compact=False, no_peer_id=True)
    )
    assert bare[b"peers"] == [
        {b"ip": b"127.0.0.1", b"port": 6881},
        {b"ip": b"::1", b"port": 6882},
    ]
    parsed = protocol.parse_announce_response(
        protocol.encode_announce_response(reply, compact=False)
    )
    assert parsed.peers == (PeerAddr("127.0.0.1", 6881), PeerAddr("::1", 6882))


@given(
    st.integers(0, 2**31),
    st.integers(0, 2**31),
    st.integers(0, 2**31),
    st.integers(0, 2**31),
    st.lists(st.tuples(st.ip_addresses(v=4).map(str), st.integers(1, 65535)), max_size=60),
)
def test_compact_template_equals_the_generic_encoder(
    interval: int, min_interval: int, complete: int, incomplete: int, peers: list[tuple[str, int]]
) -> None:
    ps = [_P(ip, port) for ip, port in peers]
    reply = AnnounceReply(
        interval=interval,
        min_interval=min_interval,
        complete=complete,
        incomplete=incomplete,
        peers=ps,
    )
    expected = bencoding.encode(
        {
            b"interval": interval,
            b"min interval": min_interval,
            b"complete": complete,
            b"incomplete": incomplete,
            b"peers": b"".join(p.compact for p in ps),
        }
    )
    assert protocol.encode_announce_response(reply) == expected


def test_failure_reply() -> None:
    body = protocol.encode_failure("info_hash must be 20 bytes, got 3")
    assert body == b"d14:failure reason33:info_hash must be 20 bytes, got 3e"
    with pytest.raises(TrackerFailure) as info:
        protocol.parse_announce_response(body)
    assert info.value.reason == "info_hash must be 20 bytes, got 3"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>oops</html>", "not bencoded"),
        (b"li1ee", "not a bencoded dictionary"),
        (b"d5:peers0:e", "no interval"),
        (b"d8:intervali-5e5:peers0:e", "interval is not a non-negative integer"),
        (b"d8:intervali5e5:peers5:abcdee", "not a multiple of 6"),
        (b"d8:intervali5e5:peers0:6:peers67:abcdefge", "not a multiple of 18"),
        (b"d8:intervali5e5:peersi3ee", "neither a string nor a list"),
        (b"d8:intervali5e5:peersli1eee", "not a dictionary"),
        (b"d8:intervali5e5:peersld2:ip3:abc4:porti1eeee", "no address"),
        (b"d8:intervali5e5:peersld2:ip9:127.0.0.14:porti0eeee", "valid ip and port"),
        (b"d14:failure reasoni3ee", "failure reason is not a string"),
        (b"d" + b"l" * 50 + b"e" * 51, "not bencoded"),
        (b"d5:peers" + b"9" * (2 * 1024 * 1024), "not bencoded"),
    ],
)
def test_bad_replies_raise_response_error(body: bytes, problem: str) -> None:
    with pytest.raises(TrackerResponseError, match=problem):
        protocol.parse_announce_response(body)


def test_bad_scrape_replies() -> None:
    with pytest.raises(TrackerResponseError, match="no files"):
        protocol.parse_scrape_response(b"de")
    with pytest.raises(TrackerResponseError, match="malformed"):
        protocol.parse_scrape_response(b"d5:filesd3:abcdeee")
    with pytest.raises(TrackerFailure):
        protocol.parse_scrape_response(b"d14:failure reason4:nopee")


@given(st.binary(max_size=300))
def test_any_reply_bytes_parse_or_raise_our_error(body: bytes) -> None:
    # Invariant: any bytes are a reply or a TrackerResponseError, never another exception.
    with contextlib.suppress(TrackerResponseError):
        protocol.parse_announce_response(body)
    with contextlib.suppress(TrackerResponseError):
        protocol.parse_scrape_response(body)


def test_warning_and_tracker_id_are_read() -> None:
    body = b"d8:intervali60e5:peers0:15:warning message4:slow10:tracker id2:t1e"
    parsed = protocol.parse_announce_response(body)
    assert (parsed.warning, parsed.tracker_id, parsed.peers) == ("slow", b"t1", ())
