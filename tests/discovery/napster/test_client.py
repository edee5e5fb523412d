"""The napster-index client (httpx on trio) against the real server on 127.0.0.1.

The index runs in a :class:`NapsterIndexThread` with a clock the test moves by hand, so the
index's TTL is under the test's control; a few replies no real index sends (garbage, HTML
errors) come from a scripted trio server. The publisher's backoff runs on pytest-trio's
``autojump_clock`` against a closed port.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator

import httpx
import pytest
import trio
import trio.testing

from torrentkit.discovery.napster.client import (
    PUBLISH_BATCH,
    IndexUnreachable,
    NapsterClient,
    NapsterPublisher,
    new_http_client,
    parse_index_url,
)
from torrentkit.discovery.napster.index import (
    IndexConfig,
    IndexRequestError,
    IndexStats,
    MatchKind,
    NapsterIndex,
    RateLimiter,
    SearchQuery,
    SharedFile,
)
from torrentkit.discovery.napster.protocol import IndexResponseError
from torrentkit.discovery.napster.server import NapsterIndexThread
from torrentkit.ids import InfoHash, PeerAddr


def ih(n: int | str) -> InfoHash:
    return InfoHash(hashlib.sha1(str(n).encode()).digest())


def sf(name: str, private: bool = False) -> SharedFile:
    return SharedFile(name=name, size=len(name), info_hash=ih(name), private=private)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[NapsterIndexThread]:
    index = NapsterIndex(IndexConfig(ttl=30))
    with NapsterIndexThread(index, clock=clock, limiter=RateLimiter(0, 1)) as thread:
        yield thread


class Recorder:
    """Every request body the client sends (an httpx event hook on the real client)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.bodies.append(request.content)


def recording_client(url: str, recorder: Recorder) -> NapsterClient:
    http = new_http_client(10)
    http.event_hooks["request"] = [recorder]
    return NapsterClient(url, http=http)


async def test_join_publish_search_leave(server: NapsterIndexThread) -> None:
    with trio.fail_after(20):
        async with NapsterClient(server.url) as index:
            joined = await index.join(6881)
            assert joined.peer == PeerAddr("127.0.0.1", 6881) and joined.ttl == 30
            files = [sf("Pink Floyd - Echoes.flac"), sf("Beatles - Help.mp3")]
            reply = await index.publish(joined.session, files)
            assert (reply.added, reply.total, reply.private_skipped) == (2, 2, 0)
            found = await index.search(SearchQuery(text="echoes"))
            assert [(h.name, h.size, h.info_hash, h.peers) for h in found.hits] == [
                (files[0].name, files[0].size, files[0].info_hash, (joined.peer,))
            ]
            assert not found.truncated and found.took_ms >= 0
            regex = await index.search(SearchQuery(text=r"^beatles", match=MatchKind.REGEX))
            assert [h.name for h in regex.hits] == [files[1].name]
            assert await index.find_peers(files[1].info_hash) == (joined.peer,)
            assert await index.find_peers(ih("nothing")) == ()
            assert await index.refresh(joined.session) == 30
            assert await index.leave(joined.session) == 2
            with pytest.raises(IndexRequestError, match="join again") as info:
                await index.refresh(joined.session)
            assert info.value.status == 404


async def test_private_files_are_never_sent(server: NapsterIndexThread) -> None:
    recorder = Recorder()
    with trio.fail_after(20):
        async with recording_client(server.url, recorder) as index:
            session = (await index.join(6881)).session
            reply = await index.publish(session, [sf("public.mp3"), sf("secret.mp3", private=True)])
    assert (reply.total, reply.private_skipped) == (1, 1)
    publish = json.loads(recorder.bodies[-1])
    assert [f["name"] for f in publish["files"]] == ["public.mp3"]
    assert not any(b"secret" in body for body in recorder.bodies)
    assert server.call(lambda: server.index.stats().entries) == 1


async def test_large_publishes_go_in_batches(server: NapsterIndexThread) -> None:
    recorder = Recorder()
    files = [sf(f"track {n:05d}.ogg") for n in range(2 * PUBLISH_BATCH + 500)]
    with trio.fail_after(30):
        async with recording_client(server.url, recorder) as index:
            session = (await index.join(6881)).session
            await index.publish(session, [sf("old.ogg")])
            reply = await index.publish(session, files, replace=True)
    assert (reply.added, reply.removed, reply.total) == (len(files), 1, len(files))
    batches = [json.loads(b) for b in recorder.bodies[2:]]
    assert [len(b["files"]) for b in batches] == [PUBLISH_BATCH, PUBLISH_BATCH, 500]
    assert [b.get("replace", False) for b in batches] == [True, False, False]


async def test_refusals_carry_the_index_message(server: NapsterIndexThread) -> None:
    with trio.fail_after(20):
        async with NapsterClient(server.url) as index:
            with pytest.raises(IndexRequestError, match="bad regular expression") as info:
                await index.search(SearchQuery(text="(a+", match=MatchKind.REGEX))
            assert info.value.status == 400
            session = (await index.join(6881)).session
            with pytest.raises(IndexRequestError, match=r"files\[0\]: file name longer"):
                await index.publish(session, [sf("x" * 5000)])


def test_bad_queries_fail_before_anything_is_sent() -> None:
    with pytest.raises(IndexRequestError, match="empty query"):
        SearchQuery(text="")
    with pytest.raises(IndexRequestError, match="min_size is larger"):
        SearchQuery(text="x", min_size=2, max_size=1)


def test_index_urls() -> None:
    assert parse_index_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/"
    assert parse_index_url("https://idx.example/napster") == "https://idx.example/napster/"
    for bad in ["127.0.0.1:8000", "ftp://x/", "http://", "http://x:99999/", "http://x/?q=1"]:
        with pytest.raises(ValueError, match="index URL"):
            parse_index_url(bad)


async def test_unreachable_index() -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with trio.fail_after(20):
            async with NapsterClient(f"http://127.0.0.1:{port}/", timeout=5) as index:
                with pytest.raises(IndexUnreachable, match="index unreachable"):
                    await index.join(6881)


async def _scripted(response: bytes, task_status: trio.TaskStatus[int]) -> None:
    """A one-trick HTTP server: reads a request head, sends ``response``, closes."""

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        await stream.send_all(response)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


def _http(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
    return head.encode() + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (_http("200 OK", b"not json"), IndexResponseError, "not JSON"),
        (_http("200 OK", b'{"hits": 5}'), IndexResponseError, "hits"),
        (_http("500 Oops", b"<html>", "text/html"), IndexUnreachable, "HTTP 500"),
        (_http("429 Slow down", b'{"error": "too many requests"}'), IndexRequestError, "too many"),
        (b"garbage\r\n\r\n", IndexUnreachable, "index unreachable"),
    ],
)
async def test_replies_that_break_the_api(
    response: bytes, error: type[Exception], message: str
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_scripted, response)
            async with NapsterClient(f"http://127.0.0.1:{port}/") as index:
                with pytest.raises(error, match=message):
                    await index.search(SearchQuery(text="x"))
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------
# The publisher


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await trio.sleep(0.01)


async def test_publisher_keeps_files_listed_and_leaves(
    server: NapsterIndexThread, clock: Clock
) -> None:
    def entries() -> set[str]:
        result = server.call(lambda: server.index.search(SearchQuery(ext="mp3"), now=clock.now))
        return {h.name for h in result.hits}

    def stats() -> IndexStats:
        value: IndexStats = server.call(server.index.stats)
        return value

    def forget_everyone() -> int:
        # The index's clock jumps past the TTL and it purges (as after a restart).
        clock.now += 100
        return server.index.expire(clock.now)

    a, b, c = sf("a.mp3"), sf("b.mp3"), sf("c.mp3")
    recorder = Recorder()
    with trio.fail_after(20):
        async with recording_client(server.url, recorder) as index, trio.open_nursery() as nursery:
            publisher = NapsterPublisher(
                index, 6881, [a, b, sf("p.mp3", private=True)], refresh_every=0.02
            )
            await nursery.start(publisher.run)
            assert entries() == {"a.mp3", "b.mp3"}
            status = publisher.status
            assert status.joined and status.published == 2
            assert status.peer == PeerAddr("127.0.0.1", 6881)

            # Heartbeats keep the session alive while the index's clock runs past its TTL.
            for _ in range(3):
                server.call(lambda: setattr(clock, "now", clock.now + 20))  # (TTL 30)
                target = publisher.status.heartbeats + 2
                while publisher.status.heartbeats < target:
                    await trio.sleep(0.01)
            assert entries() == {"a.mp3", "b.mp3"}
            # A changed list goes out as a difference, at once.
            publisher.set_files([a, c])
            await _until(lambda: entries() == {"a.mp3", "c.mp3"})
            diff = [json.loads(b) for b in recorder.bodies if b'"files"' in b][-1]
            assert [f["name"] for f in diff["files"]] == ["c.mp3"]
            assert diff["remove"] == [b.info_hash.hex()]
            # The index forgets us: the publisher joins again and publishes everything.
            assert server.call(forget_everyone) == 1
            await _until(lambda: entries() == {"a.mp3", "c.mp3"})
            nursery.cancel_scope.cancel()
    assert stats().sessions == 0  # it left on cancel


async def test_publisher_backs_off_while_the_index_is_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        async with (
            NapsterClient(f"http://127.0.0.1:{port}/", timeout=5) as index,
            trio.open_nursery() as nursery,
        ):
            publisher = NapsterPublisher(
                index, 6881, [sf("a.mp3")], backoff_base=5, backoff_cap=60, rng=random.Random(1)
            )
            with trio.fail_after(10):
                await nursery.start(publisher.run)
            assert publisher.status.failures == 1 and not publisher.status.joined
            # Retries after ~5, 10, 20, 40, 60, 60 s (x 0.75-1 jitter): 6-7 failures in 200 s.
            await trio.sleep(200)
            status = publisher.status
            assert 6 <= status.failures <= 7, status
            assert status.last_error is not None and "index" in status.last_error
            nursery.cancel_scope.cancel()
