"""The transport seam: drivers open streams and datagram endpoints through a ``Network``.

Production passes :class:`TrioNetwork` (real trio sockets); simulations and tests pass
:class:`torrentkit.testing.network.SimNetwork` (in-memory streams and a datagram router on
the virtual clock). The node and engine code above is the same in both.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Protocol

import trio

from torrentkit.errors import HandshakeRefused, RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.wire.connection import NEED_DATA, PeerConnection
from torrentkit.wire.events import Handshake


class Listener(Protocol):
    """A bound TCP listener: where it listens, and a way to accept connections."""

    @property
    def address(self) -> PeerAddr: ...

    async def accept(self) -> tuple[trio.abc.Stream, PeerAddr]: ...

    async def aclose(self) -> None: ...


class DatagramEndpoint(Protocol):
    """A bound UDP endpoint."""

    @property
    def address(self) -> PeerAddr: ...

    async def send(self, data: bytes, addr: PeerAddr) -> None: ...

    async def receive(self) -> tuple[bytes, PeerAddr]: ...

    def close(self) -> None: ...


class Network(Protocol):
    async def connect_tcp(self, addr: PeerAddr) -> trio.abc.Stream: ...

    async def listen_tcp(self, host: str, port: int) -> Listener: ...

    async def bind_udp(self, host: str, port: int) -> DatagramEndpoint: ...


# --------------------------------------------------------------------------- real sockets


class _TcpListener:
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._address = PeerAddr(host, port)

    @property
    def address(self) -> PeerAddr:
        return self._address

    async def accept(self) -> tuple[trio.abc.Stream, PeerAddr]:
        while True:
            try:
                sock, remote = await self._sock.accept()
            except OSError as exc:
                # Transient per-connection failures (e.g. ECONNABORTED, EMFILE): keep serving.
                if exc.errno is None:
                    raise
                await trio.sleep(0.01)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return trio.SocketStream(sock), PeerAddr(remote[0], remote[1])

    async def aclose(self) -> None:
        self._sock.close()
        await trio.lowlevel.checkpoint()


class _UdpEndpoint:
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._address = PeerAddr(host, port)

    @property
    def address(self) -> PeerAddr:
        return self._address

    async def send(self, data: bytes, addr: PeerAddr) -> None:
        # UDP is best effort: an unreachable peer is the protocol's problem.
        with contextlib.suppress(OSError):
            await self._sock.sendto(data, (addr.host, addr.port))

    async def receive(self) -> tuple[bytes, PeerAddr]:
        while True:
            try:
                data, remote = await self._sock.recvfrom(65536)
            except ConnectionResetError:
                continue  # ICMP port unreachable from an earlier send
            return data, PeerAddr(remote[0], remote[1])

    def close(self) -> None:
        self._sock.close()


class TrioNetwork:
    """Real TCP and UDP sockets."""

    async def connect_tcp(self, addr: PeerAddr) -> trio.abc.Stream:
        stream = await trio.open_tcp_stream(addr.host, addr.port)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream

    async def listen_tcp(self, host: str, port: int) -> Listener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            await sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        return _TcpListener(sock)

    async def bind_udp(self, host: str, port: int) -> DatagramEndpoint:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        try:
            await sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return _UdpEndpoint(sock)


async def listen_tcp_and_udp(
    network: Network, host: str, port: int, *, attempts: int = 64
) -> tuple[Listener, DatagramEndpoint]:
    """A TCP listener and a UDP endpoint on the same port number (BitTorrent's listen port
    and its DHT node, as libtorrent pairs them). With ``port`` 0 the OS picks a UDP port and
    the TCP listener follows it; a number taken for TCP by someone else is given back and
    another one tried. Raises ``OSError`` when no pair can be had."""
    for _ in range(attempts if port == 0 else 1):
        udp = await network.bind_udp(host, port)
        try:
            tcp = await network.listen_tcp(host, udp.address.port)
        except OSError as exc:
            udp.close()
            if port != 0 or exc.errno != errno.EADDRINUSE:
                raise
            continue
        return tcp, udp
    raise OSError(errno.EADDRINUSE, f"no port free for both TCP and UDP after {attempts} tries")


# --------------------------------------------------------------------------- stream helpers


async def read_handshake(stream: trio.abc.Stream, conn: PeerConnection) -> Handshake:
    """Read until the peer's BitTorrent handshake has arrived (bytes after it stay buffered
    in ``conn``). The caller bounds it with a timeout."""
    while True:
        event = conn.next_event()
        if event is not NEED_DATA:
            if not isinstance(event, Handshake):
                raise RemoteProtocolError("expected a handshake")
            return event
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            raise HandshakeRefused("the peer closed the connection during the handshake")
        conn.receive_data(data)


async def close_quietly(stream: trio.abc.Stream) -> None:
    """Close a stream even from a cancelled scope, within a second, whatever state it is in."""
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(1),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
    ):
        await stream.aclose()
