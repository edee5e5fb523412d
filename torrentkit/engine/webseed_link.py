"""The trio driver of one web seed (BEP 19): runs of pieces over HTTP Range requests (httpx).

A :class:`WebSeedLink` is the second kind of link a torrent owns, beside
:class:`~torrentkit.engine.peer.PeerLink`: to the picker it is a peer that has every piece
and never chokes. It keeps up to :data:`~torrentkit.engine.webseed.REQUESTS_PER_SEED`
requests in flight over the session's one httpx client (its connection pool), each a task
of the link's nursery:

1. the link asks the owner for a run of whole pieces (``Picker.pick_run``) whenever fewer
   requests are in flight than allowed; with nothing to fetch it waits until the owner
   wakes it (requests were given back, a piece failed, the download completed), a request
   ends, or a second passes; once every wanted piece is in, the link ends. It starts with
   one request at a time, and allows more once a reply is good: a server that fails is
   probed by one request, not a volley;
2. a request fetches its run: one ``GET`` with a ``Range`` header per file the run touches,
   in payload order, each reply checked by :func:`~torrentkit.engine.webseed.check_reply`
   before its body is read, the body streamed and cut into 16 KiB blocks that go to the
   owner as they complete (so memory stays at one block plus one network chunk per request,
   and rates move smoothly); a body longer than asked is refused as soon as the extra byte
   arrives, a shorter one gives the rest back to the picker;
3. a request that fails gives its unfetched blocks back (only its own: the others run on).
   A transient failure makes the link wait
   :func:`~torrentkit.engine.webseed.retry_delay` before its next request and go back to
   one request at a time; failures of requests sent before the last counted one are not
   counted again (several requests failing together are one failure in a row). A fatal
   failure ends the link and its other requests; the owner drops the seed for good.

The download rate limits and the disk backpressure gate apply as for peers. Verifying is
the owner's: the blocks land in the same assemblies as peers' blocks, named by the seed's
:class:`~torrentkit.engine.webseed.WebSeedKey`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import trio

from torrentkit.engine.layout import Layout
from torrentkit.engine.ratelimit import RateLimiter, acquire_all
from torrentkit.engine.rates import RollingRate
from torrentkit.engine.webseed import (
    REQUESTS_PER_SEED,
    RangeRequest,
    WebSeedError,
    WebSeedKey,
    check_reply,
    contiguous_runs,
    file_urls,
    plan_ranges,
    retry_delay,
    run_pieces,
)
from torrentkit.metainfo import Info

if TYPE_CHECKING:
    import httpx

#: What the UI and ``--json`` show as a web seed's client.
WEB_SEED_CLIENT = "web seed"
#: One range request's whole exchange may take REQUEST_TIMEOUT seconds plus the time its
#: bytes take at MIN_RATE (a 4 MiB run: 316 s); stalls are cut sooner by the HTTP client's
#: 30 s read timeout. A seed slower than that is retried later, like a failing one.
REQUEST_TIMEOUT = 60.0
MIN_RATE = 16 * 1024


class WebSeedOwner(Protocol):
    """What a web seed needs from the torrent that owns it."""

    @property
    def down_limiters(self) -> Sequence[RateLimiter]: ...

    @property
    def receive_gate(self) -> trio.Event: ...

    def pick_web_run(self, seed: WebSeedLink, max_pieces: int) -> list[tuple[int, int, int]] | None:
        """A run of blocks to fetch, recorded as the seed's requests; None once every
        wanted piece is in (the seed leaves)."""
        ...

    def on_web_blocks(
        self, seed: WebSeedLink, blocks: Sequence[tuple[int, int, bytes]], now: float
    ) -> None:
        """Blocks the seed fetched (synchronous)."""
        ...

    def release_web_requests(
        self, seed: WebSeedLink, blocks: Sequence[tuple[int, int, int]]
    ) -> None:
        """Give those of ``blocks`` the seed still holds back to the picker."""
        ...

    async def wait_web_work(self) -> None:
        """Until there may be something new to fetch (the caller bounds the wait)."""
        ...


class WebSeedLink:
    """One ``url-list`` entry of one torrent."""

    def __init__(
        self, owner: WebSeedOwner, info: Info, url: str, http: httpx.AsyncClient, *, now: float
    ) -> None:
        self.owner = owner
        self.url = url
        self.key = WebSeedKey(url)
        self.http = http
        self.layout = Layout.from_info(info)
        self.urls = file_urls(url, info)
        self.max_pieces = run_pieces(info.piece_length, info.num_pieces)
        self.piece_length = info.piece_length
        self.connected_at = now
        self.down = RollingRate(now=now)
        self.downloaded = 0
        self.failures = 0  # transient failures in a row
        self.in_flight = 0  # requests being fetched
        self.allowed = 1  # requests allowed in flight: 1 until a reply is good
        self.retry_at = 0.0  # no new request before this time (after a transient failure)
        self._epoch = 0  # counted failures so far; a request remembers it when sent
        self._wake = trio.Event()  # a request ended, or more are allowed
        self._nursery: trio.Nursery | None = None
        self.close_reason = "closed"
        self.dropped = False  # closed by the owner for bad data: never used again
        self.fatal = False  # ended by a fatal error: never used again
        self.scope = trio.CancelScope()

    @property
    def fetching(self) -> bool:
        """Some request is in flight (shown as our interest in the UI)."""
        return self.in_flight > 0

    def __repr__(self) -> str:
        return f"<WebSeedLink {self.url}>"

    def close(self, reason: str) -> None:
        """End the link for good (the owner found its data bad)."""
        if not self.dropped:
            self.close_reason = reason
        self.dropped = True
        self.scope.cancel()

    async def run(self) -> None:
        """Fetch until the download is complete, a fatal error (``fatal`` set) or
        cancellation; the reason is in ``close_reason``."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._send_requests(nursery)
            nursery.cancel_scope.cancel()  # the requests still running are not wanted

    async def _send_requests(self, nursery: trio.Nursery) -> None:
        owner = self.owner
        while not self.fatal:
            now = trio.current_time()
            if now < self.retry_at:
                await trio.sleep_until(self.retry_at)
                continue
            if self.in_flight >= self.allowed:
                await self._wait(1.0, owner_work=False)
                continue
            blocks = owner.pick_web_run(self, self.max_pieces)
            if blocks is None:
                self.close_reason = "download complete"
                return
            if not blocks:
                await self._wait(1.0, owner_work=True)
                continue
            self.in_flight += 1
            nursery.start_soon(self._request, blocks, self._epoch)

    async def _wait(self, seconds: float, *, owner_work: bool) -> None:
        """Until a request ends or more are allowed, or (``owner_work``) the owner may
        have something new; at most ``seconds``."""
        wake = self._wake
        with trio.move_on_after(seconds):
            if not owner_work:
                await wake.wait()
            else:
                async with trio.open_nursery() as race:

                    async def first(fn: Callable[[], Awaitable[None]]) -> None:
                        await fn()
                        race.cancel_scope.cancel()

                    race.start_soon(first, wake.wait)
                    race.start_soon(first, self.owner.wait_web_work)
        if wake.is_set():
            self._wake = trio.Event()

    async def _request(self, blocks: list[tuple[int, int, int]], epoch: int) -> None:
        """Fetch ``blocks`` (one pick: a run of pieces); on failure give back what is left."""
        try:
            for run in contiguous_runs(blocks, self.piece_length):
                await self._fetch_run(run)
        except WebSeedError as exc:
            self.owner.release_web_requests(self, blocks)
            self.close_reason = str(exc)
            if exc.fatal:
                self.fatal = True
                if self._nursery is not None:
                    self._nursery.cancel_scope.cancel()
                return
            self.allowed = 1
            if epoch == self._epoch:  # the first failure since the last one counted
                self._epoch += 1
                self.failures += 1
                self.retry_at = trio.current_time() + retry_delay(self.failures)
        else:
            self.failures = 0
        finally:
            self.in_flight -= 1
            self._wake.set()

    async def _fetch_run(self, run: list[tuple[int, int, int]]) -> None:
        first = run[0]
        offset = first[0] * self.piece_length + first[1]
        length = sum(b[2] for b in run)
        pending = deque(run)
        buf = bytearray()
        for req in plan_ranges(self.layout, self.urls, offset, length):
            if req.url is None:
                buf += bytes(req.length)  # a pad file: zeros, never fetched
                self._deliver(pending, buf)
                continue
            await self._fetch_range(req, pending, buf)
        if pending:
            raise WebSeedError("fewer bytes than asked", fatal=False)

    async def _fetch_range(
        self, req: RangeRequest, pending: deque[tuple[int, int, int]], buf: bytearray
    ) -> None:
        import httpx  # here, so that runs without web seeds never load it

        from torrentkit.httpget import error_reason

        assert req.url is not None
        owner = self.owner
        got = 0
        limit = REQUEST_TIMEOUT + req.length / MIN_RATE
        try:
            with trio.fail_after(limit):
                async with self.http.stream(
                    "GET",
                    req.url,
                    headers={"Range": req.header, "Accept-Encoding": "identity"},
                ) as reply:
                    check_reply(reply.status_code, reply.headers, req)
                    if self.allowed < REQUESTS_PER_SEED and self.retry_at <= trio.current_time():
                        self.allowed = REQUESTS_PER_SEED  # it answers well: more at once
                        self._wake.set()
                    async for chunk in reply.aiter_raw():
                        got += len(chunk)
                        if got > req.length:
                            raise WebSeedError(
                                f"sent more than the {req.length} bytes asked", fatal=True
                            )
                        limits = owner.down_limiters
                        if limits:
                            await acquire_all(limits, len(chunk))
                        gate = owner.receive_gate
                        if not gate.is_set():
                            await gate.wait()  # the disk is behind
                        buf += chunk
                        now = trio.current_time()
                        self.down.add(now, len(chunk))
                        self._deliver(pending, buf)
        except trio.TooSlowError:
            raise WebSeedError(f"no full reply within {limit:.0f} s", fatal=False) from None
        except httpx.TooManyRedirects:
            raise WebSeedError(f"more than {self._max_redirects} redirects", fatal=True) from None
        except httpx.UnsupportedProtocol as exc:
            raise WebSeedError(f"unsupported URL: {exc}", fatal=True) from None
        except httpx.InvalidURL as exc:
            raise WebSeedError(f"invalid URL: {exc}", fatal=True) from None
        except httpx.ConnectError as exc:
            untrusted = _certificate_error(exc)
            if untrusted is not None:  # not a passing fault: drop the seed, say why
                raise WebSeedError(
                    f"https certificate not trusted: {untrusted}", fatal=True
                ) from None
            raise WebSeedError(f"ConnectError: {error_reason(exc)}", fatal=False) from None
        except httpx.HTTPError as exc:
            raise WebSeedError(f"{type(exc).__name__}: {error_reason(exc)}", fatal=False) from None
        if got < req.length:
            raise WebSeedError(f"body of {got} bytes for {req.length} asked", fatal=False)

    @property
    def _max_redirects(self) -> int:
        return self.http.max_redirects

    def _deliver(self, pending: deque[tuple[int, int, int]], buf: bytearray) -> None:
        """Hand every complete block at the front of ``buf`` to the owner."""
        out: list[tuple[int, int, bytes]] = []
        taken = 0
        while pending and len(buf) - taken >= pending[0][2]:
            index, begin, size = pending.popleft()
            out.append((index, begin, bytes(buf[taken : taken + size])))
            taken += size
        if out:
            del buf[:taken]
            self.downloaded += taken
            self.owner.on_web_blocks(self, out, trio.current_time())


def _certificate_error(exc: BaseException) -> str | None:
    """Why the server's certificate was refused, if that is what ``exc`` (an httpx
    ``ConnectError``) comes from: a TLS verification failure (unknown issuer, self-signed,
    expired, another host's name) is the server's or the user's set-up, not a passing
    fault, so retrying would only repeat it."""
    import ssl

    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None
