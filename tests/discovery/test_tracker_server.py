"""The aiohttp tracker over real HTTP on 127.0.0.1 (docs/limits.md item 11 among others).

Each test runs a real server (:class:`TrackerThread`, port 0) and talks to it with the
standard library's HTTP client, so the query strings go out byte for byte as written.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import urllib.parse
from collections.abc import Iterator

import pytest

from torrentkit import bencoding
from torrentkit.discovery.tracker import protocol
from torrentkit.discovery.tracker.protocol import AnnounceEvent, AnnounceRequest
from torrentkit.discovery.tracker.server import TrackerThread, http_log
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.ids import InfoHash, PeerAddr

IH = InfoHash(bytes(range(20)))


class Client:
    """One keep-alive HTTP connection to the tracker under test."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def get(self, target: str, method: str = "GET") -> tuple[int, bytes, http.client.HTTPMessage]:
        self.conn.request(method, target)
        resp = self.conn.getresponse()
        return resp.status, resp.read(), resp.headers

    def announce(self, req: AnnounceRequest) -> bytes:
        status, body, _ = self.get("/announce?" + protocol.build_announce_query(req))
        assert status == 200
        return body

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def tracker() -> Iterator[TrackerThread]:
    with TrackerThread(TrackerState(rng=random.Random(1))) as t:
        yield t


@pytest.fixture
def client(tracker: TrackerThread) -> Iterator[Client]:
    c = Client(tracker.address)
    yield c
    c.close()


def pid(n: int) -> bytes:
    return f"-TK0001-{n:012d}".encode()


def req(n: int, **kw: object) -> AnnounceRequest:
    fields: dict[str, object] = {"info_hash": IH, "peer_id": pid(n), "port": 6000 + n, "left": 1}
    fields.update(kw)
    return AnnounceRequest(**fields)  # type: ignore[arg-type]


def failure(body: bytes) -> str:
    reason: bytes = bencoding.decode(body)[b"failure reason"]
    return reason.decode()


def assert_still_serving(client: Client) -> None:
    reply = protocol.parse_announce_response(client.announce(req(999)))
    assert reply.interval >= 1800


def test_announce_and_scrape_over_http(tracker: TrackerThread, client: Client) -> None:
    assert tracker.announce_url == f"http://{tracker.address}/announce"
    protocol.parse_announce_response(client.announce(req(1, event=AnnounceEvent.STARTED)))
    reply = protocol.parse_announce_response(client.announce(req(2, left=0)))
    assert reply.peers == (PeerAddr("127.0.0.1", 6001),)
    assert (reply.complete, reply.incomplete) == (1, 1)
    status, body, headers = client.get(f"/scrape?info_hash={urllib.parse.quote_from_bytes(IH)}")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert protocol.parse_scrape_response(body)[IH] == protocol.ScrapeStats(
        complete=1, downloaded=0, incomplete=1
    )


def test_binary_info_hash_and_peer_id_survive_http(client: Client) -> None:
    # NUL, '+', '%', '&', high bytes, with a mix of literal and escaped spellings.
    ih = InfoHash(b"\x00+%&=\xff" + b"\x00" * 14)
    raw_id = b"+\x00" * 10
    q = (
        "info_hash=%00+%25%26%3D%FF"
        + "%00" * 14
        + "&peer_id="
        + "+%00" * 10
        + "&port=7000&uploaded=0&downloaded=0&left=0&compact=0"
    )
    status, body, _ = client.get("/announce?" + q)
    assert status == 200, body
    listed = protocol.parse_announce_response(client.announce(req(5, info_hash=ih)))
    assert listed.peers == (PeerAddr("127.0.0.1", 7000),)
    non_compact = bencoding.decode(client.announce(req(6, info_hash=ih, compact=False)))
    assert {p[b"peer id"] for p in non_compact[b"peers"]} == {raw_id, pid(5)}


def test_no_peer_id(client: Client) -> None:
    client.announce(req(1))
    body = client.announce(req(2, compact=False, no_peer_id=True))
    assert bencoding.decode(body)[b"peers"] == [{b"ip": b"127.0.0.1", b"port": 6001}]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("info_hash=abc", "info_hash must be 20 bytes, got 3"),
        ("info_hash=" + "%aa" * 21, "info_hash must be 20 bytes, got 21"),
        ("", "missing info_hash"),
    ],
)
def test_bad_info_hash_gets_a_bencoded_failure(client: Client, query: str, reason: str) -> None:
    status, body, _ = client.get("/announce?" + query)
    assert status == 200  # as trackers do: the failure is in the body
    assert failure(body) == reason
    assert_still_serving(client)


@pytest.mark.parametrize("port", ["0", "70000", "-1", "x", ""])
def test_bad_port_gets_a_bencoded_failure(client: Client, port: str) -> None:
    q = protocol.build_announce_query(req(1)).replace("port=6001", f"port={port}")
    status, body, _ = client.get("/announce?" + q)
    assert status == 200
    assert failure(body).startswith("port must be")
    assert_still_serving(client)


def test_huge_numwant_is_capped(client: Client) -> None:
    for n in range(250):
        client.announce(req(n))
    reply = protocol.parse_announce_response(
        client.announce(req(1000, numwant=10**9, event=AnnounceEvent.STARTED))
    )
    assert len(reply.peers) == 200
    _, body, _ = client.get(
        "/announce?" + protocol.build_announce_query(req(1001)) + "&numwant=1e9"
    )
    assert failure(body) == "numwant must be a non-negative integer"
    assert_still_serving(client)


def test_ip_param_spoofing_is_ignored(client: Client) -> None:
    client.announce(req(1, ip="203.0.113.9"))
    reply = protocol.parse_announce_response(client.announce(req(2)))
    assert reply.peers == (PeerAddr("127.0.0.1", 6001),)


def test_ip_param_used_when_trusted() -> None:
    state = TrackerState(TrackerConfig(trust_ip_param=True))
    with TrackerThread(state) as t:
        c = Client(t.address)
        c.announce(req(1, ip="203.0.113.9"))
        reply = protocol.parse_announce_response(c.announce(req(2)))
        assert reply.peers == (PeerAddr("203.0.113.9", 6001),)
        _, body, _ = c.get("/announce?" + protocol.build_announce_query(req(3, ip="<script>")))
        assert failure(body) == "ip is not an IP address"
        c.close()


def test_thousand_hash_scrape_is_capped(client: Client) -> None:
    client.announce(req(1))
    hashes = [IH] + [InfoHash(i.to_bytes(20, "big")) for i in range(1, 1000)]
    q = "&".join("info_hash=" + urllib.parse.quote_from_bytes(h) for h in hashes)
    assert len(q) > 60_000
    status, body, _ = client.get("/scrape?" + q)
    assert status == 200
    files = protocol.parse_scrape_response(body)
    assert len(files) == 64
    assert files[IH].incomplete == 1
    assert_still_serving(client)


def test_scrape_without_hash_and_with_a_bad_one(client: Client) -> None:
    assert "full scrape is off" in failure(client.get("/scrape")[1])
    assert failure(client.get("/scrape?info_hash=short")[1]) == (
        "info_hash must be 20 bytes, got 5"
    )
    assert_still_serving(client)


def test_hostile_peer_ids_are_escaped_on_the_stats_pages(client: Client) -> None:
    hostile = b"<script>alert(1)</s\x1b"  # markup and a terminal escape, 20 bytes
    assert len(hostile) == 20
    client.announce(req(1, peer_id=hostile, left=0))
    client.announce(req(2, peer_id=b"\"&'><img/src=x>\\\x00\xff\r\n", left=5))
    status, page, headers = client.get("/stats.html")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    text = page.decode()
    assert "<script>" not in text and "<img" not in text
    assert "\x1b" not in text and "\x00" not in text and "\r" not in text
    assert "&lt;script&gt;alert(1)&lt;/s\\x1b" in text
    assert "&quot;&amp;&#x27;&gt;&lt;img/src=x&gt;\\\\\\x00\\xff\\x0d\\x0a" in text
    status, raw, headers = client.get("/stats")
    assert headers["Content-Type"].startswith("application/json")
    stats = json.loads(raw)
    assert (stats["torrents"], stats["peers"], stats["seeders"], stats["leechers"]) == (
        1,
        2,
        1,
        1,
    )
    assert stats["completed"] == 0
    swarm = stats["swarms"][0]
    assert swarm["info_hash"] == IH.hex()
    assert {p["peer_id"] for p in swarm["peers"]} == {
        "<script>alert(1)</s\\x1b",
        "\"&'><img/src=x>\\\\\\x00\\xff\\x0d\\x0a",
    }
    assert_still_serving(client)


def test_unknown_path_and_method(client: Client) -> None:
    assert client.get("/nothing")[0] == 404
    assert client.get("/announce", method="POST")[0] == 405
    assert_still_serving(client)


def test_oversized_request_line_is_refused_and_the_server_carries_on(
    tracker: TrackerThread,
) -> None:
    c = Client(tracker.address)
    status, _, _ = c.get("/announce?x=" + "y" * 300_000)
    assert status == 400
    c.close()
    c = Client(tracker.address)
    assert_still_serving(c)
    c.close()


def test_raw_bytes_in_the_request_line_get_400_and_no_log(
    tracker: TrackerThread, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = tracker.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /announce?info_hash=\xff\x00 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.0 400 Bad Request")
    c = Client(tracker.address)
    assert_still_serving(c)
    c.close()
    assert caplog.records == []


def test_keep_alive_serves_many_requests_on_one_connection(client: Client) -> None:
    for n in range(100):
        client.announce(req(n))
    _, body, _ = client.get(f"/scrape?info_hash={urllib.parse.quote_from_bytes(IH)}")
    assert protocol.parse_scrape_response(body)[IH].incomplete == 100


def test_state_is_reachable_from_the_owner(tracker: TrackerThread, client: Client) -> None:
    client.announce(req(1))
    assert tracker.call(lambda: len(tracker.state)) == 1


def test_other_server_errors_are_logged_as_one_printable_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise ValueError("bad\nthing \x1b[2J")
    except ValueError:
        http_log.exception("Error handling request from %s", "127.0.0.1")
    (record,) = caplog.records
    assert record.getMessage() == (
        "Error handling request from 127.0.0.1: ValueError: bad thing \\x1b[2J"
    )
    assert record.exc_info is None
