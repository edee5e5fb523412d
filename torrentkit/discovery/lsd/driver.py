"""Local Service Discovery (BEP 14), the trio driver: multicast sockets around :class:`LsdCore`.

:func:`open_lsd` opens one UDP socket per address family on port 6771, joined to the LSD
group (``239.192.152.143``, ``ff15::efc0:988f``), with multicast loopback on (two clients
on one host find each other; our cookie filters our own announces) and a hop limit of 1
(:data:`MULTICAST_TTL`: the announce stays on the local link). When the session listens on
one IPv4 address, the IPv4 socket joins and sends on that address's interface and no IPv6
socket is opened; listening on a wildcard address leaves the choice of interface to the
routing table (a multicast route, or the default route). A family that cannot be opened is
skipped with a log line; if none can, :class:`NetworkError`.

Multicast group membership is not part of the :class:`~torrentkit.net.Network` seam, so the
sockets are real trio sockets; the logic is the core's, tested with exact bytes, and the
driver is tested inside network namespaces the tests create (tests/discovery/test_lsd_netns.py).

Each torrent's presence (:meth:`LsdNetwork.torrent_source`) registers its info-hash while it
runs; the announcer task sends what the core says is due and sleeps until the next one (or a
new torrent); one receiver task per socket hands the core every datagram and the peers it
reports to the torrents' sinks, as source ``"lsd"``.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from torrentkit.discovery.base import NetworkError, PeerSink, TorrentDiscovery
from torrentkit.discovery.lsd.core import (
    GROUP_V4,
    GROUP_V6,
    LSD_PORT,
    MULTICAST_HOPS,
    Family,
    LsdCore,
)
from torrentkit.ids import InfoHash

if TYPE_CHECKING:
    from torrentkit.api import Session

log = logging.getLogger(__name__)

MULTICAST_TTL = MULTICAST_HOPS
_GROUP_ADDR: dict[Family, tuple[str, int]] = {
    "v4": (GROUP_V4, LSD_PORT),
    "v6": (GROUP_V6, LSD_PORT),
}


def _open_v4(iface: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        group = socket.inet_aton(GROUP_V4)
        local = socket.inet_aton(iface)
        sock.setsockopt(
            socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", group, local)
        )
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if iface != "0.0.0.0":
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
        return sock
    except OSError:
        sock.close()
        raise


def _open_v6() -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        mreq = struct.pack("16sI", socket.inet_pton(socket.AF_INET6, GROUP_V6), 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, MULTICAST_TTL)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        return sock
    except OSError:
        sock.close()
        raise


def _families(bind: str) -> list[Family]:
    """Which groups to join for a session listening on ``bind``."""
    if bind in ("", "0.0.0.0", "::"):
        return ["v4", "v6"]
    try:
        version = ipaddress.ip_address(bind).version
    except ValueError:
        return ["v4"]
    return ["v4"] if version == 4 else ["v6"]


class LsdNetwork:
    """The session's LSD membership: a :class:`~torrentkit.discovery.base.DiscoveryNetwork`."""

    name = "lsd"

    def __init__(self, core: LsdCore) -> None:
        self.core = core
        self._sinks: dict[bytes, list[PeerSink]] = {}
        self._wakeup = trio.Event()

    def torrent_source(
        self, info_hash: InfoHash, *, port: int, sink: PeerSink, publish: bool
    ) -> TorrentDiscovery:
        return _Presence(self, bytes(info_hash), sink, publish)

    def _register(self, info_hash: bytes, sink: PeerSink, publish: bool) -> None:
        self._sinks.setdefault(info_hash, []).append(sink)
        self.core.add(info_hash, trio.current_time(), announce=publish)
        self._wakeup.set()

    def _unregister(self, info_hash: bytes, sink: PeerSink) -> None:
        sinks = self._sinks.get(info_hash, [])
        if sink in sinks:
            sinks.remove(sink)
        if not sinks:
            self._sinks.pop(info_hash, None)
        self.core.remove(info_hash)

    async def announcer(self, socks: dict[Family, trio.socket.SocketType]) -> None:
        warned: set[Family] = set()
        while True:
            self._wakeup = trio.Event()
            for family, packet in self.core.packets(trio.current_time()):
                try:
                    await socks[family].sendto(packet, _GROUP_ADDR[family])
                except OSError as exc:  # no multicast route, interface down, ...
                    if family not in warned:
                        warned.add(family)
                        log.warning("lsd: cannot send to the %s group: %s", family, exc)
            due = self.core.next_due()
            with trio.move_on_at(due if due is not None else float("inf")):
                await self._wakeup.wait()

    async def receiver(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                data, source = await sock.recvfrom(2048)
            except OSError:
                await trio.sleep(1.0)
                continue
            found = self.core.receive(data, source[0], trio.current_time())
            for info_hash, addr in found:
                for sink in list(self._sinks.get(info_hash, ())):
                    sink([addr], "lsd")


class _Presence:
    name = "lsd"

    def __init__(self, net: LsdNetwork, info_hash: bytes, sink: PeerSink, publish: bool):
        self._net = net
        self._info_hash = info_hash
        self._sink = sink
        self._publish = publish

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._net._register(self._info_hash, self._sink, self._publish)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._net._unregister(self._info_hash, self._sink)

    def completed(self) -> None:
        """Nothing to tell the LAN: announces do not carry a download state."""


@asynccontextmanager
async def open_lsd(session: Session) -> AsyncIterator[LsdNetwork]:
    """Join the LSD groups for ``session`` (its listen address and port) until the block
    ends."""
    bind, _ = session.settings.bind
    socks: dict[Family, trio.socket.SocketType] = {}
    for family in _families(bind):
        try:
            if family == "v4":
                sock = _open_v4(bind if bind not in ("", "0.0.0.0", "::") else "0.0.0.0")
                await sock.bind((GROUP_V4, LSD_PORT))
            else:
                sock = _open_v6()
                await sock.bind(("::", LSD_PORT))
        except OSError as exc:
            log.warning("lsd: cannot join the %s group: %s", family, exc)
            continue
        socks[family] = sock
    if not socks:
        raise NetworkError("lsd: cannot join any local service discovery group")
    cookie = secrets.token_hex(4)
    net = LsdNetwork(LsdCore(port=session.address.port, cookie=cookie, families=socks))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(net.announcer, socks)
            for sock in socks.values():
                nursery.start_soon(net.receiver, sock)
            yield net
            nursery.cancel_scope.cancel()
    finally:
        for sock in socks.values():
            sock.close()
