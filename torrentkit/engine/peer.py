"""The trio driver of one peer connection: bytes between a stream and a PeerConnection.

A :class:`PeerLink` owns three tasks in its own nursery, and dies as a whole:

- the **reader** feeds received bytes to the sans-IO connection and hands every event to
  the torrent (synchronously: the torrent's handlers never block), waits before the next
  receive while the torrent's ``receive_gate`` is closed (the piece writer's backlog is
  full: the peer's data stays in the socket, TCP slows it down), then lets the torrent
  top up our requests -- not after every read, but once a quarter of the request depth is
  missing (:meth:`PeerLink._refill_due`), so requests leave in batches of tens to hundreds:
  one pick, one writer wake-up and one send per batch (from a libtorrent seeder on
  loopback: about 4x fewer send syscalls than one top-up per read);
- the **writer** sends whatever the engine queued, joined into one ``send_all``; it is the
  only task that writes to the stream;
- the **uploader** serves the peer's requests in order: reads the block (through the
  torrent's piece cache, off the event loop), waits for the upload rate limits, and sends
  it if the peer still wants it.

Timers (keep-alives, the 120 s silence limit, snubbing) are checked by the torrent's ticker
for every link at once, not by a timer per connection. Closing a link is cancelling its
scope (:meth:`PeerLink.close`); the torrent then cleans up after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from torrentkit.engine.ratelimit import RateLimiter, acquire_all
from torrentkit.engine.rates import RollingRate
from torrentkit.errors import RemoteProtocolError, StorageError
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import BLOCK_SIZE
from torrentkit.wire.connection import NEED_DATA, PeerConnection
from torrentkit.wire.events import Event, KeepAlive, Request
from torrentkit.wire.peer_id import client_name


class LinkOwner(Protocol):
    """What a link needs from whoever owns it (the torrent): the link moves bytes and
    messages; every decision (what an event means, which blocks to request, where upload
    data comes from, what the limits are) is the owner's."""

    @property
    def down_limiters(self) -> Sequence[RateLimiter]: ...

    @property
    def up_limiters(self) -> Sequence[RateLimiter]: ...

    def on_event(self, link: PeerLink, event: Event, now: float) -> None:
        """One event from the peer (synchronous, never blocks)."""
        ...

    def on_blocks(
        self, link: PeerLink, blocks: Sequence[tuple[int, int, bytes | memoryview]], now: float
    ) -> None:
        """PIECE messages from the peer, taken from one receive as ``(index, begin, data)``
        (synchronous); ``data`` is valid only during the call: copy it."""
        ...

    def fill_requests(self, link: PeerLink, now: float) -> None:
        """Top up our outstanding requests to the peer."""
        ...

    def after_receive(self, link: PeerLink, now: float) -> None:
        """The events of one receive were handled (before the link tops up its requests)."""
        ...

    @property
    def receive_gate(self) -> trio.Event:
        """Set while received pieces can be taken: the reader waits on it before each
        receive (disk backpressure: the piece writer's backlog is full)."""
        ...

    async def read_block(self, index: int, begin: int, length: int) -> bytes | memoryview:
        """Data for an upload (a view is not copied before it is sent)."""
        ...

    def cached_block(self, index: int, begin: int, length: int) -> bytes | memoryview | None:
        """What :meth:`read_block` would return, if it can without waiting; else None."""
        ...

    def count_upload(self, nbytes: int) -> None: ...

    def storage_failed(self, message: str) -> None: ...


RECEIVE_SIZE = 256 * 1024
#: At most this many buffers per sendmsg (Linux's IOV_MAX).
IOV_MAX = 1024
#: Stop serving uploads while this much is queued for the writer: about half a second at
#: the rate the peer takes our data, within these bounds. A deep queue on a slow link would
#: keep sending for minutes after a choke.
OUTBOX_MIN_WATER = 48 * 1024
OUTBOX_MAX_WATER = 1024 * 1024


class PeerGone(Exception):
    """The link ended; ``reason`` says why (shown in ``peer_disconnected`` events)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PeerLink:
    """One connected peer of one torrent."""

    def __init__(
        self,
        owner: LinkOwner,
        stream: trio.abc.Stream,
        conn: PeerConnection,
        addr: PeerAddr,
        *,
        outgoing: bool,
        now: float,
    ) -> None:
        self.owner = owner
        self.stream = stream
        self.conn = conn
        self.addr = addr
        self.outgoing = outgoing
        self.peer_id = b""
        self.client = "?"
        self.listen_port: int | None = addr.port if outgoing else None
        self.connected_at = now
        self.last_receive = now
        self.last_send = now
        self.last_block = now  # last PIECE we accepted from it
        self.unchoked_us_at: float | None = None
        self.snubbed = False
        self.optimistic = False
        self.unchoked_at: float | None = None  # when we last unchoked it
        self.unchoked_time = 0.0  # total seconds we kept it unchoked
        self.optimistic_time = 0.0
        self.down = RollingRate(now=now)
        self.up = RollingRate(now=now)
        self.short_down = RollingRate(now=now, window=3)  # drives the request depth
        self.downloaded = 0
        self.uploaded = 0
        #: An upload limit for this peer alone, on top of the torrent's and the session's
        #: (``None``, the default: none). The engine never sets it; a choker policy may
        #: (tools/incentives.py's strategic uploader gives each peer a rate of its own).
        self.upload_cap: RateLimiter | None = None
        self.close_reason = "closed"
        #: the peer prefers encrypted connections (the PEX flag 0x01 we pass on)
        self.prefers_encryption = False
        self._outbox: list[bytes | memoryview] = []
        # A real socket takes the outbox as one gather write (sendmsg); other streams
        # (the in-memory network of the simulations) get the chunks joined.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._outbox_bytes = 0
        self._outbox_ready = trio.Event()
        self._outbox_drained = trio.Event()
        self._uploads: deque[Request] = deque()
        self._uploads_ready = trio.Event()
        self._scope = trio.CancelScope()
        self._closed = False
        self._parting: str | None = None  # close once the outbox is sent (close_when_sent)

    # ------------------------------------------------------------------ identity

    def set_peer_id(self, peer_id: bytes) -> None:
        self.peer_id = peer_id
        self.client = client_name(peer_id) or "unknown"

    @property
    def key(self) -> PeerAddr:
        """How trust and bans name this peer: its address and port, never the IP alone."""
        if self.listen_port is not None:
            return PeerAddr(self.addr.host, self.listen_port)
        return self.addr

    def __repr__(self) -> str:
        return f"<PeerLink {self.addr} {self.client}>"

    # ------------------------------------------------------------------ sending

    def send(self, event: Event) -> None:
        """Queue one message for the writer (never blocks)."""
        if self._closed:
            return
        data = self.conn.send(event)
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._outbox_ready.set()

    def send_requests(self, blocks: list[tuple[int, int, int]]) -> None:
        """Queue a REQUEST for each ``(index, begin, length)`` (one message batch)."""
        if self._closed or not blocks:
            return
        data = self.conn.send_requests(blocks)
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._outbox_ready.set()

    def request_depth(self, now: float) -> int:
        """How many requests to keep outstanding: about a second's worth at the rate the
        peer is delivering now, at most 500 (libtorrent's ``max_out_request_queue``) and
        within what it allows (BEP 10 ``reqq``). A peer that named no ``reqq`` starts
        shallow and is capped low: older clients drop deep queues. Deeper queues (two
        seconds, up to 1,000) made the 1 + 8 swarm benchmark receive 52 MiB of its 1 GiB
        twice (blocks queued at a peer long after another had sent them); now ~15 MiB."""
        reqq = self.conn.peer_reqq
        cap = min(reqq, 500) if reqq is not None else 64
        floor = min(16 if reqq is not None else 4, cap)
        want = int(self.short_down.rate(now) / BLOCK_SIZE) + floor
        return max(floor, min(cap, want))

    def _refill_due(self, now: float) -> bool:
        """Top up our requests only once a worthwhile batch is missing (a quarter of the
        depth): one pick, one message batch and one send per batch instead of per receive.
        At least three quarters of the depth stay outstanding, so the peer never idles."""
        outstanding = self.conn.outstanding_requests
        if outstanding < 4:
            return True
        depth = self.request_depth(now)
        return depth - outstanding >= depth >> 2

    # ------------------------------------------------------------------ lifecycle

    def close(self, reason: str) -> None:
        if not self._closed:
            self.close_reason = reason
        self._closed = True
        self._scope.cancel()

    def close_when_sent(self, reason: str) -> None:
        """Close once what is queued has gone out, so the peer still hears what we told it
        (our bitfield: a seed that parts from a seed lets it know it is one)."""
        if not self._closed and self._parting is None:
            self._parting = reason
            self._outbox_ready.set()

    async def run(self) -> None:
        """Drive the link until it ends; raise nothing (the reason is in close_reason). The
        stream is closed on every way out, cancellation from outside included (a paused or
        stopped torrent): else the peer saw nothing and waited out its silence timeout on
        requests nobody would answer."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, self._writer)
                    nursery.start_soon(self._guard, self._uploader)
                    await self._guard(self._reader)
                    nursery.cancel_scope.cancel()
        finally:
            self._closed = True
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()

    async def _guard(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run one of the link's tasks; any way it ends closes the whole link."""
        try:
            await task()
            reason = "closed"
        except PeerGone as exc:
            reason = exc.reason
        except RemoteProtocolError as exc:
            reason = f"protocol error: {exc}"
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            reason = f"connection lost: {exc.__class__.__name__}"
        except StorageError as exc:
            self.owner.storage_failed(str(exc))
            reason = f"storage error: {exc}"
        self.close(reason)

    async def _reader(self) -> None:
        torrent, conn, stream, sock = self.owner, self.conn, self.stream, self._socket
        now = trio.current_time()
        got = 0  # bytes the last receive brought
        while True:
            # Bytes that arrived with the handshake are already buffered: parse first.
            # PIECE messages go in batches through the fast lane, the rest one by one.
            while True:
                blocks = conn.next_blocks()
                if blocks:
                    torrent.on_blocks(self, blocks, now)
                    del blocks  # release the views into the receive buffer
                    if self._closed:
                        return
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                torrent.on_event(self, event, now)
                if self._closed:
                    return
            torrent.after_receive(self, now)
            if self._refill_due(now):
                torrent.fill_requests(self, now)
            gate = torrent.receive_gate
            if not gate.is_set():
                await gate.wait()  # the disk is behind: leave the data in the socket
            if sock is not None and got >= RECEIVE_SIZE // 2:
                # Data is streaming in: read straight into the connection's buffer (one
                # copy fewer per byte than a new bytes object handed to receive_data).
                with conn.receive_buffer(RECEIVE_SIZE) as room:
                    got = await sock.recv_into(room)
                data = None
            else:
                data = await stream.receive_some(RECEIVE_SIZE)
                got = len(data)
            if not got:
                raise PeerGone("closed by peer")
            now = trio.current_time()
            self.last_receive = now
            limits = torrent.down_limiters
            if limits:
                await acquire_all(limits, got)
            if data is None:
                conn.received(got)
            else:
                conn.receive_data(data)

    async def _writer(self) -> None:
        stream = self.stream
        while True:
            if not self._outbox:
                if self._parting is not None:
                    raise PeerGone(self._parting)
                self._outbox_drained.set()
                await self._outbox_ready.wait()
                self._outbox_ready = trio.Event()
                continue
            chunks, self._outbox = self._outbox, []
            size = self._outbox_bytes
            self._outbox_bytes = 0
            if len(chunks) == 1 or self._socket is None:
                await stream.send_all(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            else:
                await self._send_vectored(self._socket, chunks)
            self.last_send = trio.current_time()
            if size and self._outbox_bytes < self._high_water():
                self._outbox_drained.set()

    @staticmethod
    async def _send_vectored(
        sock: trio.socket.SocketType, chunks: list[bytes | memoryview]
    ) -> None:
        """Send ``chunks`` with ``sendmsg`` (one gather write, no joined copy of the blocks:
        on a seeder the join was a tenth of the CPU per GiB)."""
        while chunks:
            sent = await sock.sendmsg(chunks[:IOV_MAX])
            done = 0
            for chunk in chunks:
                if sent < len(chunk):
                    break
                sent -= len(chunk)
                done += 1
            chunks = chunks[done:]
            if sent:
                chunks[0] = memoryview(chunks[0])[sent:]

    def _high_water(self) -> float:
        rate = self.up.rate(trio.current_time())
        return min(OUTBOX_MAX_WATER, max(OUTBOX_MIN_WATER, rate * 0.5))

    def queue_upload(self, request: Request) -> None:
        self._uploads.append(request)
        self._uploads_ready.set()

    async def _uploader(self) -> None:
        torrent, conn, uploads = self.owner, self.conn, self._uploads
        pending, cached = conn.peer_request_pending, torrent.cached_block
        while True:
            if not uploads:
                await self._uploads_ready.wait()
                self._uploads_ready = trio.Event()
                continue
            high = self._high_water()
            while self._outbox_bytes >= high:
                self._outbox_drained = trio.Event()
                await self._outbox_drained.wait()
                high = self._high_water()
            # One batch: the queued requests the peer still wants, up to the high-water mark
            # (one block at a time under a rate limit, so the limit paces single blocks).
            limits = [x for x in torrent.up_limiters if x.rate > 0]
            if self.upload_cap is not None and self.upload_cap.rate > 0:
                limits.append(self.upload_cap)
            room = 1 if limits else high - self._outbox_bytes
            batch: dict[Request, None] = {}  # a block asked, cancelled, asked again: once
            while uploads and room > 0:
                req = uploads.popleft()
                if req not in batch and pending(req.index, req.begin, req.length):
                    batch[req] = None
                    room -= req.length
            if not batch:
                continue
            # Blocks of cached pieces are taken without a coroutine each (most are: a
            # piece is read whole, its blocks are asked for together).
            blocks: list[tuple[int, int, bytes | memoryview]] = []
            waited = False
            for req in batch:
                index, begin, length = req.index, req.begin, req.length
                data = cached(index, begin, length)
                if data is None:
                    data = await torrent.read_block(index, begin, length)
                    waited = True
                blocks.append((index, begin, data))
            if limits:
                await acquire_all(limits, sum(r.length for r in batch))
                waited = True
            if self._closed:
                continue  # (choked: the pending check below drops what the choke voided)
            if waited:
                # The peer may have cancelled some while we read or waited.
                blocks = [b for b in blocks if pending(b[0], b[1], len(b[2]))]
                if not blocks:
                    continue
            size = sum(len(b[2]) for b in blocks)
            self._outbox.extend(conn.send_pieces(blocks))
            self._outbox_bytes += size + 13 * len(blocks)
            self._outbox_ready.set()
            self.uploaded += size
            self.up.add(trio.current_time(), size)
            torrent.count_upload(size)

    def send_keepalive_if_idle(self, now: float, idle: float) -> None:
        if now - self.last_send >= idle and not self._outbox:
            self.send(KeepAlive())
