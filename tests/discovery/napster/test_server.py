"""The aiohttp napster-index over real HTTP on 127.0.0.1 (:class:`NapsterIndexThread`, port 0).

Requests go out with httpx (sync) or, for what a well-behaved client cannot send, raw bytes
on a socket.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from torrentkit.discovery.napster.index import IndexConfig, NapsterIndex, RateLimiter
from torrentkit.discovery.napster.protocol import MAX_BODY
from torrentkit.discovery.napster.server import NapsterIndexThread, http_log


def hexhash(n: int | str) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


def file(name: str, size: int = 100, private: bool = False) -> dict[str, Any]:
    return {"name": name, "size": size, "info_hash": hexhash(name), "private": private}


class Clock:
    """A clock the test moves by hand (the server reads ``now`` from it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[NapsterIndexThread]:
    index = NapsterIndex(IndexConfig(ttl=60, max_entries_per_peer=20_000))
    with NapsterIndexThread(index, clock=clock, limiter=RateLimiter(0, 1)) as thread:
        yield thread


@pytest.fixture
def http(server: NapsterIndexThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client:
        yield client


def join(http: httpx.Client, port: int = 6881) -> str:
    reply = http.post("join", json={"port": port})
    assert reply.status_code == 200, reply.text
    session: str = reply.json()["session"]
    return session


def error(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    message: str = reply.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    return message


def raw_exchange(address: str, request: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_join_publish_search_refresh_leave(http: httpx.Client, server: NapsterIndexThread) -> None:
    about = http.get("").json()
    assert about["service"] == "torrentkit napster-index" and "GET /search" in about["endpoints"]
    reply = http.post("join", json={"port": 6881}).json()
    assert reply["peer"] == "127.0.0.1:6881" and reply["ttl"] == 60
    session = reply["session"]
    published = http.post(
        "publish",
        json={"session": session, "files": [file("Pink Floyd - Echoes.flac", 5000), file("b.mp3")]},
    )
    assert published.json() == {"added": 2, "removed": 0, "total": 2, "ttl": 60}
    found = http.get("search", params={"q": "echoes"}).json()
    assert found["hits"] == [
        {
            "name": "Pink Floyd - Echoes.flac",
            "size": 5000,
            "info_hash": hexhash("Pink Floyd - Echoes.flac"),
            "peers": ["127.0.0.1:6881"],
        }
    ]
    assert found["truncated"] is False and 0 <= found["took_ms"] < 1000
    for params in [
        {"q": "ECHO", "match": "substring"},
        {"q": r"^pink.*\.flac$", "match": "regex"},
        {"ext": "flac"},
        {"min_size": "1000"},
        {"info_hash": hexhash("Pink Floyd - Echoes.flac")},
    ]:
        hits = http.get("search", params=params).json()["hits"]
        assert [h["name"] for h in hits] == ["Pink Floyd - Echoes.flac"], params
    assert http.post("refresh", json={"session": session}).json() == {"ttl": 60}
    assert http.get("stats").json()["entries"] == 2
    assert http.post("leave", json={"session": session}).json() == {"removed": 2}
    assert http.get("search", params={"q": "echoes"}).json()["hits"] == []
    message = error(http.post("refresh", json={"session": session}), 404)
    assert message == "unknown or expired session; join again"


def test_entries_expire_on_the_servers_clock(
    http: httpx.Client, server: NapsterIndexThread, clock: Clock
) -> None:
    session = join(http)
    http.post("publish", json={"session": session, "files": [file("a.mp3")]})
    clock.now += 59
    assert len(http.get("search", params={"ext": "mp3"}).json()["hits"]) == 1
    clock.now += 1
    assert http.get("search", params={"ext": "mp3"}).json()["hits"] == []
    assert server.call(lambda: server.index.expire(clock.now)) == 1
    error(http.post("publish", json={"session": session, "files": []}), 404)


def test_private_torrents_are_refused(http: httpx.Client) -> None:
    session = join(http)
    reply = http.post(
        "publish", json={"session": session, "files": [file("ok.mp3"), file("p.mp3", private=True)]}
    )
    assert "private torrents are never published" in error(reply, 403)
    assert http.get("stats").json()["entries"] == 0


def test_bad_requests_get_json_4xx_and_the_server_keeps_serving(
    http: httpx.Client, server: NapsterIndexThread, caplog: pytest.LogCaptureFixture
) -> None:
    session = join(http)
    cases: list[tuple[httpx.Response, int, str]] = [
        (
            http.post("join", content=b"{", headers={"content-type": "application/json"}),
            400,
            "body is not JSON",
        ),
        (http.post("join", content=b'{"port": 1}'), 415, "Content-Type: application/json"),
        (http.post("join", json={"port": 1, "ip": "10.9.9.9"}), 400, "unknown field 'ip'"),
        (
            http.post("publish", json={"session": session, "files": [file("x" * 10_000)]}),
            400,
            "files[0]: file name longer than 1024 bytes",
        ),
        (
            http.get("search", params={"q": "(a+", "match": "regex"}),
            400,
            "bad regular expression: missing )",
        ),
        (
            http.get("search", params={"q": "a" * 300, "match": "regex"}),
            400,
            "regular expression longer than 256 characters",
        ),
        (http.get("search", params={"q": "a", "q2": "b"}), 400, "unknown search parameter"),
        (http.get("search"), 400, "empty query"),
        (http.get("nowhere"), 404, "not found"),
        (http.get("join"), 405, "use POST"),
        (http.post("search", json={}), 405, "use GET"),
    ]
    for reply, status, message in cases:
        assert message in error(reply, status)
    assert http.get("search", params={"q": "x"}).status_code == 200
    assert [r for r in caplog.records if r.name.startswith("torrentkit")] == []


def test_bodies_over_the_cap_get_413(http: httpx.Client, server: NapsterIndexThread) -> None:
    big = b'{"port": 1, "x": "' + b"a" * MAX_BODY + b'"}'
    reply = http.post("join", content=big, headers={"content-type": "application/json"})
    assert "body larger than" in error(reply, 413)

    # Chunked, with no Content-Length: cut off while reading.
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"a" * 65536

    reply = http.post("join", content=chunks(), headers={"content-type": "application/json"})
    assert "body larger than" in error(reply, 413)
    assert http.get("stats").status_code == 200


def test_malformed_http_gets_a_400_and_nothing_is_logged(
    http: httpx.Client, server: NapsterIndexThread, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=http_log.name):
        request = b"GET /search?q=\xff\x1b[2J HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        data = raw_exchange(server.address, request)
    assert data.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert b"\x1b" not in data
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert http.get("stats").status_code == 200


def test_regex_bombs_over_http_stay_fast(http: httpx.Client) -> None:
    session = join(http)
    files = [file("a" * 1000 + f"!{n}") for n in range(2000)]
    for batch in (files[:1000], files[1000:]):  # (2 MB of names: over one body's cap)
        reply = http.post("publish", json={"session": session, "files": batch})
        assert reply.status_code == 200
    for pattern in ["(a+)+$", "(a|aa)+b", "(.*a){30}", "[a-m][a-z ]{14}Q"]:
        started = time.perf_counter()
        reply = http.get("search", params={"q": pattern, "match": "regex"})
        assert reply.status_code == 200
        assert time.perf_counter() - started < 2.0, pattern


def test_rate_limit_is_per_ip_with_retry_after(clock: Clock) -> None:
    with (
        NapsterIndexThread(clock=clock, limiter=RateLimiter(rate=1, burst=3)) as server,
        httpx.Client(base_url=server.url, timeout=10, trust_env=False) as http,
    ):
        assert [http.get("stats").status_code for _ in range(3)] == [200, 200, 200]
        reply = http.get("stats")
        assert error(reply, 429) == "too many requests"
        assert reply.headers["retry-after"] == "1"
        clock.now += 1
        assert http.get("stats").status_code == 200


def test_the_peer_address_is_the_connecting_ip(server: NapsterIndexThread) -> None:
    # Another loopback address (all of 127/8 is local on Linux) is another peer.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(
        base_url=server.url, transport=transport, timeout=10, trust_env=False
    ) as other:
        assert other.post("join", json={"port": 7000}).json()["peer"] == "127.0.0.2:7000"


def test_a_json_error_body_is_what_the_client_shows(http: httpx.Client) -> None:
    # Hostile text comes back JSON-escaped: no raw control bytes on a terminal.
    reply = http.get("search", params={"q": "x", "\x1b[2J": "1"})
    raw = reply.content
    assert b"\x1b" not in raw and raw.isascii()
    assert json.loads(raw)["error"].startswith("unknown search parameter")
