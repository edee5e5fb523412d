"""A client for ``torrentkit napster-index``: httpx on trio.

- :class:`NapsterClient`: one call per API route (:mod:`.protocol` documents them): ``join``,
  ``publish``, ``refresh``, ``leave``, ``search``, and ``find_peers`` (search by info-hash).
  Private torrents are filtered out before anything is sent: they never leave this process.
  Large publishes go in batches of :data:`PUBLISH_BATCH` files.
- :class:`NapsterPublisher`: keeps a set of files published for as long as its ``run`` task
  lives: joins, publishes, sends a heartbeat every third of the TTL, publishes only the
  differences when :meth:`~NapsterPublisher.set_files` changes the set, joins again when the
  index forgot the session (it restarted, or we were away longer than the TTL), backs off on
  errors, and leaves (shielded, bounded) when cancelled.

Errors: :class:`IndexUnreachable` (transport, timeout, an HTTP status without a JSON error),
:class:`~.index.IndexRequestError` (the index refused: its one-line message and HTTP status;
404 means join again), :class:`~.protocol.IndexResponseError` (a reply that breaks the API).
A bad search built locally raises IndexRequestError (400) before anything is sent.

Example (inside trio)::

    async with NapsterClient("http://127.0.0.1:8000/") as index:
        joined = await index.join(port=6881)
        await index.publish(joined.session, [SharedFile(name=..., size=..., info_hash=...)])
        reply = await index.search(SearchQuery(text="echoes", ext="flac"))
        for hit in reply.hits: ...
"""

from __future__ import annotations

import logging
import random
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

import torrentkit
from torrentkit.discovery.base import SearchHit
from torrentkit.discovery.napster import protocol
from torrentkit.discovery.napster.index import IndexRequestError, SearchQuery, SharedFile
from torrentkit.errors import LocalProtocolError, TorrentkitError
from torrentkit.httpget import FetchError, ReplyRefused, new_client, request_capped
from torrentkit.ids import InfoHash, PeerAddr

log = logging.getLogger(__name__)

#: Files per publish request (well under the server's 2 MiB body cap even with long names).
PUBLISH_BATCH = 1000


class IndexUnreachable(TorrentkitError):
    """The index could not be asked: transport error, timeout, or an HTTP status with no
    JSON error in it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Joined:
    session: str
    #: Our address as the index sees it (the connecting IP and the port we gave).
    peer: PeerAddr
    ttl: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishReply:
    added: int
    removed: int
    total: int
    ttl: float
    #: Private files that were not sent (BEP 27).
    private_skipped: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchReply:
    hits: tuple[SearchHit, ...]
    truncated: bool
    #: The index's own time for the search, in milliseconds.
    took_ms: float


def parse_index_url(text: str) -> str:
    """``http(s)://HOST[:PORT][/PATH]``, normalised to end with ``/``; ValueError otherwise."""
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ValueError(f"not a valid index URL: {text[:100]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"index URL must be http://HOST:PORT/, got {text[:100]!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"index URL must not have a query or fragment: {text[:100]!r}")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class NapsterClient:
    """One index, one httpx connection pool (keep-alive). Use ``async with``, or ``aclose``."""

    def __init__(
        self,
        url: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 15.0,
    ) -> None:
        if not timeout > 0:
            raise LocalProtocolError("timeout must be positive")
        self.url = parse_index_url(url)
        self.timeout = timeout
        self._own_http = http is None
        self._http = http if http is not None else new_http_client(timeout)

    async def __aenter__(self) -> NapsterClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def join(self, port: int) -> Joined:
        if not 0 < port < 65536:
            raise LocalProtocolError(f"port must be 1-65535, got {port}")
        body = await self._call("POST", "join", {"port": port})
        session, peer, ttl = protocol.parse_join_reply(body)
        return Joined(session=session, peer=peer, ttl=ttl)

    async def publish(
        self,
        session: str,
        files: Iterable[SharedFile],
        *,
        remove: Sequence[InfoHash] = (),
        replace: bool = False,
    ) -> PublishReply:
        """Publish ``files`` (private ones skipped), in batches; the last batch's totals."""
        given = list(files)
        public = [f for f in given if not f.private]
        skipped = len(given) - len(public)
        added = removed = 0
        total, ttl = 0, 0.0
        first = True
        start = 0
        while first or start < len(public):
            batch = public[start : start + PUBLISH_BATCH]
            request: dict[str, Any] = {
                "session": session,
                "files": [protocol.file_object(f) for f in batch],
            }
            if first:
                if remove:
                    request["remove"] = [h.hex() for h in remove]
                if replace:
                    request["replace"] = True
            a, r, total, ttl = protocol.parse_publish_reply(
                await self._call("POST", "publish", request)
            )
            added += a
            removed += r
            first = False
            start += PUBLISH_BATCH
        return PublishReply(
            added=added, removed=removed, total=total, ttl=ttl, private_skipped=skipped
        )

    async def refresh(self, session: str) -> float:
        """Heartbeat; the TTL the index granted."""
        return protocol.parse_refresh_reply(
            await self._call("POST", "refresh", {"session": session})
        )

    async def leave(self, session: str) -> int:
        return protocol.parse_leave_reply(await self._call("POST", "leave", {"session": session}))

    async def search(self, query: SearchQuery) -> SearchReply:
        body = await self._call("GET", "search", params=protocol.search_params(query))
        result, took = protocol.parse_search_reply(body)
        return SearchReply(hits=result.hits, truncated=result.truncated, took_ms=took)

    async def find_peers(self, info_hash: InfoHash) -> tuple[PeerAddr, ...]:
        """Every peer the index knows for ``info_hash`` (up to its per-hit cap, per name)."""
        reply = await self.search(SearchQuery(info_hash=info_hash))
        seen: dict[PeerAddr, None] = {}
        for hit in reply.hits:
            for peer in hit.peers:
                seen[peer] = None
        return tuple(seen)

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
    ) -> bytes:
        try:
            reply = await request_capped(
                self._http,
                self.url + path,
                method=method,
                json=body,
                params=params,
                max_bytes=protocol.MAX_RESPONSE,
                timeout=self.timeout,
            )
        except ReplyRefused as exc:
            raise protocol.IndexResponseError(f"index {exc}") from None
        except FetchError as exc:
            raise IndexUnreachable(f"index unreachable: {exc}") from None
        status, data = reply.status, reply.body
        if status == 200:
            return data
        message = protocol.parse_error(data)
        if message is None:
            raise IndexUnreachable(f"index answered HTTP {status}")
        raise IndexRequestError(message, status)


def new_http_client(timeout: float = 15.0) -> httpx.AsyncClient:
    """An httpx client for an index: no environment proxies, no compression (we cap bodies)."""
    return new_client(
        timeout=httpx.Timeout(timeout),
        headers={
            "User-Agent": f"torrentkit/{torrentkit.__version__}",
            "Accept-Encoding": "identity",
        },
        max_redirects=0,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PublisherStatus:
    joined: bool
    peer: PeerAddr | None
    #: Files the index holds for us (as of the last reply).
    published: int
    #: Heartbeats the index acknowledged.
    heartbeats: int
    failures: int
    last_error: str | None


class NapsterPublisher:
    """Keeps ``files`` published on one index while :meth:`run` runs (see the module doc)."""

    def __init__(
        self,
        client: NapsterClient,
        port: int,
        files: Iterable[SharedFile] = (),
        *,
        refresh_every: float | None = None,
        backoff_base: float = 5.0,
        backoff_cap: float = 300.0,
        stop_timeout: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise LocalProtocolError(f"port must be 1-65535, got {port}")
        if refresh_every is not None and not refresh_every > 0:
            raise LocalProtocolError("refresh_every must be positive")
        self.client = client
        self.port = port
        self.refresh_every = refresh_every
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stop_timeout = stop_timeout
        self._rng = rng if rng is not None else random.Random()
        self._wanted = _public_by_hash(files)
        self._published: dict[InfoHash, SharedFile] = {}
        self._session: str | None = None
        self._peer: PeerAddr | None = None
        self._ttl = 0.0
        self._failures = 0
        self._last_error: str | None = None
        self._total = 0
        self._heartbeats = 0
        self._changed = trio.Event()

    @property
    def status(self) -> PublisherStatus:
        return PublisherStatus(
            joined=self._session is not None,
            peer=self._peer,
            published=self._total,
            heartbeats=self._heartbeats,
            failures=self._failures,
            last_error=self._last_error,
        )

    def set_files(self, files: Iterable[SharedFile]) -> None:
        """From now on publish exactly ``files`` (private ones never); sent at once."""
        self._wanted = _public_by_hash(files)
        self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish until cancelled, then leave. ``started`` after the first attempt."""
        started = False
        try:
            while True:
                self._changed = trio.Event()
                try:
                    await self._step()
                    self._failures = 0
                    self._last_error = None
                    wait = self.refresh_every or self._ttl / 3
                except IndexRequestError as exc:
                    if exc.status == 404:  # the index forgot us: join again
                        self._session = None
                        if self._failures == 0:  # at once, the first time
                            self._failures = 1
                            self._last_error = str(exc)
                            continue
                    wait = self._failed(str(exc))
                except (IndexUnreachable, protocol.IndexResponseError) as exc:
                    wait = self._failed(str(exc))
                if not started:
                    task_status.started()
                    started = True
                with trio.move_on_after(wait):
                    await self._changed.wait()
        finally:
            await self._leave()

    def _failed(self, message: str) -> float:
        self._failures += 1
        self._last_error = message
        log.info("napster index %s: %s", self.client.url, message)
        exponent = min(self._failures - 1, 30)
        raw = min(self.backoff_cap, self.backoff_base * 2.0**exponent)
        return raw * (1.0 - 0.25 * self._rng.random())

    async def _step(self) -> None:
        if self._session is None:
            self._published = {}
            joined = await self.client.join(self.port)
            self._session, self._peer, self._ttl = joined.session, joined.peer, joined.ttl
            wanted = dict(self._wanted)
            reply = await self.client.publish(self._session, wanted.values(), replace=True)
            self._published, self._total, self._ttl = wanted, reply.total, reply.ttl
            return
        wanted = dict(self._wanted)
        new = [f for h, f in wanted.items() if self._published.get(h) != f]
        gone = [h for h in self._published if h not in wanted]
        if new or gone:
            reply = await self.client.publish(self._session, new, remove=gone)
            self._published, self._total, self._ttl = wanted, reply.total, reply.ttl
        else:
            self._ttl = await self.client.refresh(self._session)
            self._heartbeats += 1

    async def _leave(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(self.stop_timeout):
            try:
                await self.client.leave(session)
            except (IndexRequestError, IndexUnreachable, protocol.IndexResponseError) as exc:
                log.info("napster index %s: leave failed: %s", self.client.url, exc)


def _public_by_hash(files: Iterable[SharedFile]) -> dict[InfoHash, SharedFile]:
    return {f.info_hash: f for f in files if not f.private}
