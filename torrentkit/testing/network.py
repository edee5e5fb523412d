"""An in-memory network for simulations: shaped TCP-like streams and a UDP router.

Everything runs on trio's clock, so under ``trio.testing.MockClock(autojump_threshold=0)``
(pytest-trio's ``autojump_clock``) minutes of simulated transfer pass in milliseconds, and
with a seeded ``random.Random`` every run is the same.

Model:
- Each host has an upload link (bytes/s, 0 = unlimited) shared by all its outgoing bytes,
  on every connection, split fairly among the flows sending at once, like a home uplink.
- Each direction of a stream has a one-way ``latency`` and a window: a sender blocks once
  ``window`` bytes are in flight and unread, so memory stays bounded as with real TCP.
- Datagrams get the same latency plus seeded jitter, and are dropped with ``loss``.
Addresses are ``PeerAddr`` values made up by the caller; nothing here touches a socket.
"""

from __future__ import annotations

import errno
import random
from collections import deque
from dataclasses import dataclass

import trio

from torrentkit.ids import PeerAddr

CHUNK = 16 * 1024 + 13  # one piece message: senders interleave at about this grain
MIN_CHUNK = 512  # on slow links, bytes trickle in pieces this small (as TCP segments do)


@dataclass(slots=True)
class HostLink:
    """A host's shared upload link, split fairly among the flows sending at once (as TCP
    flows share a bottleneck): while k chunks are in transmission, each gets rate / k."""

    upload_rate: float = 0.0  # bytes per second, 0 = unlimited
    active: int = 0

    async def transmit(self, nbytes: int) -> None:
        """Wait until ``nbytes`` have crossed this link."""
        if self.upload_rate <= 0:
            await trio.lowlevel.checkpoint()
            return
        self.active += 1
        try:
            await trio.sleep(nbytes * self.active / self.upload_rate)
        finally:
            self.active -= 1


class _Pipe:
    """One direction of a simulated connection."""

    def __init__(self, latency: float, window: int) -> None:
        self.latency = latency
        self.window = window
        self.chunks: deque[tuple[float, bytes]] = deque()
        self.buffered = 0
        self.eof = False  # sender closed
        self.broken = False  # receiver closed
        self.changed = trio.Event()

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class SimStream(trio.abc.HalfCloseableStream):
    def __init__(self, out: _Pipe, inp: _Pipe, link: HostLink) -> None:
        self._out = out
        self._in = inp
        self._link = link
        self._closed = False
        self._send_lock = trio.StrictFIFOLock()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError
        async with self._send_lock:
            view = memoryview(data)
            rate = self._link.upload_rate
            # About a quarter second of the link per chunk, so a slow link still trickles.
            grain = CHUNK if rate <= 0 else max(MIN_CHUNK, min(CHUNK, int(rate / 4)))
            for pos in range(0, len(view), grain):
                piece = bytes(view[pos : pos + grain])
                while self._out.buffered >= self._out.window and not self._out.broken:
                    await self._out.changed.wait()
                if self._out.broken or self._out.eof:
                    raise trio.BrokenResourceError("connection closed by the other side")
                await self._link.transmit(len(piece))
                if self._out.broken:
                    raise trio.BrokenResourceError("connection closed by the other side")
                self._out.chunks.append((trio.current_time() + self._out.latency, piece))
                self._out.buffered += len(piece)
                self._out.notify()
            if not view:
                await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        while self._out.buffered >= self._out.window and not self._out.broken:
            await self._out.changed.wait()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError
        pipe = self._in
        while True:
            if pipe.chunks:
                due, chunk = pipe.chunks[0]
                if due > trio.current_time():
                    await trio.sleep_until(due)
                    continue
                limit = max_bytes or 65536
                if len(chunk) > limit:
                    pipe.chunks[0] = (due, chunk[limit:])
                    chunk = chunk[:limit]
                else:
                    pipe.chunks.popleft()
                pipe.buffered -= len(chunk)
                pipe.notify()
                return chunk
            if pipe.eof:
                await trio.lowlevel.checkpoint()
                return b""
            await pipe.changed.wait()

    async def send_eof(self) -> None:
        self._out.eof = True
        self._out.notify()
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.eof = True
            self._out.notify()
            self._in.broken = True
            self._in.chunks.clear()
            self._in.buffered = 0
            self._in.notify()
        await trio.lowlevel.checkpoint()


class _SimListener:
    def __init__(self, net: SimNetwork, address: PeerAddr) -> None:
        self._net = net
        self._address = address
        self.send_channel, self._receive = trio.open_memory_channel[tuple[SimStream, PeerAddr]](128)

    @property
    def address(self) -> PeerAddr:
        return self._address

    async def accept(self) -> tuple[trio.abc.Stream, PeerAddr]:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self._net._listeners.pop(self._address, None)
        await self._receive.aclose()


class _SimEndpoint:
    def __init__(self, net: SimNetwork, address: PeerAddr) -> None:
        self._net = net
        self._address = address
        self.send_channel, self._receive = trio.open_memory_channel[tuple[bytes, PeerAddr]](1024)

    @property
    def address(self) -> PeerAddr:
        return self._address

    async def send(self, data: bytes, addr: PeerAddr) -> None:
        await self._net._route(self._address, addr, data)

    async def receive(self) -> tuple[bytes, PeerAddr]:
        return await self._receive.receive()

    def close(self) -> None:
        self._net._endpoints.pop(self._address, None)
        self._receive.close()


class SimNetwork:
    """A whole in-memory network. ``view(host)`` gives one host's ``Network``."""

    def __init__(
        self,
        rng: random.Random,
        *,
        latency: float = 0.005,
        jitter: float = 0.0,
        loss: float = 0.0,
        window: int = 256 * 1024,
    ) -> None:
        self.rng = rng
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.window = window
        self.links: dict[str, HostLink] = {}
        self._listeners: dict[PeerAddr, _SimListener] = {}
        self._endpoints: dict[PeerAddr, _SimEndpoint] = {}
        self._next_port: dict[str, int] = {}
        self._nursery: trio.Nursery | None = None
        self.datagrams_sent = 0
        self.datagrams_dropped = 0

    def set_upload_rate(self, host: str, rate: float) -> None:
        self.links.setdefault(host, HostLink()).upload_rate = rate

    def view(self, host: str) -> HostNetwork:
        self.links.setdefault(host, HostLink())
        return HostNetwork(self, host)

    def _port(self, host: str, port: int) -> int:
        if port:
            return port
        self._next_port[host] = self._next_port.get(host, 40000) + 1
        return self._next_port[host]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the tasks that deliver delayed datagrams; start with ``nursery.start``."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def _route(self, src: PeerAddr, dst: PeerAddr, data: bytes) -> None:
        self.datagrams_sent += 1
        await self.links.setdefault(src.host, HostLink()).transmit(len(data))
        if self.loss and self.rng.random() < self.loss:
            self.datagrams_dropped += 1
            return
        delay = self.latency + (self.rng.random() * self.jitter if self.jitter else 0.0)
        if self._nursery is None:
            raise RuntimeError("start SimNetwork.run in a nursery before sending datagrams")
        self._nursery.start_soon(self._deliver, src, dst, data, delay)

    async def _deliver(self, src: PeerAddr, dst: PeerAddr, data: bytes, delay: float) -> None:
        await trio.sleep(delay)
        endpoint = self._endpoints.get(dst)
        if endpoint is None:
            self.datagrams_dropped += 1
            return
        try:
            endpoint.send_channel.send_nowait((data, src))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.datagrams_dropped += 1


class HostNetwork:
    """One host's view of a :class:`SimNetwork`; satisfies :class:`torrentkit.net.Network`."""

    def __init__(self, net: SimNetwork, host: str) -> None:
        self._net = net
        self.host = host

    async def connect_tcp(self, addr: PeerAddr) -> trio.abc.Stream:
        net = self._net
        await trio.sleep(net.latency)
        listener = net._listeners.get(addr)
        if listener is None:
            raise OSError(f"connection refused: {addr}")
        up = _Pipe(net.latency, net.window)
        down = _Pipe(net.latency, net.window)
        ours = SimStream(up, down, net.links[self.host])
        theirs = SimStream(down, up, net.links.setdefault(addr.host, HostLink()))
        local = PeerAddr(self.host, net._port(self.host, 0))
        try:
            listener.send_channel.send_nowait((theirs, local))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            raise OSError(f"connection refused: {addr}") from None
        await trio.sleep(net.latency)
        return ours

    async def listen_tcp(self, host: str, port: int) -> _SimListener:
        addr = PeerAddr(self.host, self._net._port(self.host, port))
        if addr in self._net._listeners:
            raise OSError(errno.EADDRINUSE, f"address in use: {addr}")
        listener = _SimListener(self._net, addr)
        self._net._listeners[addr] = listener
        await trio.lowlevel.checkpoint()
        return listener

    async def bind_udp(self, host: str, port: int) -> _SimEndpoint:
        addr = PeerAddr(self.host, self._net._port(self.host, port))
        if addr in self._net._endpoints:
            raise OSError(errno.EADDRINUSE, f"address in use: {addr}")
        endpoint = _SimEndpoint(self._net, addr)
        self._net._endpoints[addr] = endpoint
        await trio.lowlevel.checkpoint()
        return endpoint
