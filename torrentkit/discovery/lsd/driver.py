"""Local Service Discovery (BEP 14), the trio driver: multicast sockets around :class:`LsdCore`.

:func:`open_lsd` opens one UDP socket per address family on port 6771, joined to the LSD
group (``239.192.152.143``, ``ff15::efc0:988f``), with multicast loopback on (two clients
on one host find each other; our cookie filters our own announces) and a TTL / hop limit of
1 (:data:`~torrentkit.discovery.lsd.core.MULTICAST_HOPS`: the announce stays on the local
link). A session listening on one address uses that family only, on that address's
interface, with that address as the announce's source (receivers dial the source address,
so it must be the one we listen on):

- IPv4: the group is joined on the address (``IP_ADD_MEMBERSHIP``) and sent from it
  (``IP_MULTICAST_IF`` with an address also sets the source);
- IPv6: the interface is the address's scope (``fe80::1%eth0``) or, for a global or ULA
  address, the interface that holds it (``/proc/net/if_inet6``); the group is joined on that
  interface index (``IPV6_JOIN_GROUP``), sent on it (``IPV6_MULTICAST_IF``), and from the
  address (``IPV6_PKTINFO`` with each datagram: otherwise the kernel picks the interface's
  preferred source, which may be another of its addresses; a sticky ``IPV6_PKTINFO`` set
  with setsockopt does not do it, Linux takes only its interface).

Such a session also takes announces from that interface only: Linux hands a socket the
group's datagrams from every interface where any socket on the host joined it, so the IPv4
socket turns ``IP_MULTICAST_ALL`` off (its membership then names the interface) and the
IPv6 one, whose memberships Linux matches by group alone, drops datagrams whose
``IPV6_PKTINFO`` names another interface. Listening on a wildcard address leaves the choice
of interface and source to the routing table (the group's multicast route) and takes
announces from every interface. A family that cannot be opened is skipped with a log
line; if none can, :class:`NetworkError`. Announces from a link-local IPv6 address are
reported with their scope (``fe80::1%3``) so the engine can dial them.

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
import sys
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

_WILDCARDS = ("", "0.0.0.0", "::")
# Linux's IP_MULTICAST_ALL (missing from Python's socket module): on by default, a socket
# then gets the group's datagrams from every interface where any socket joined it.
_IP_MULTICAST_ALL = 49 if sys.platform.startswith("linux") else None
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
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_HOPS)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if iface != "0.0.0.0":
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
            if _IP_MULTICAST_ALL is not None:  # only the membership on our interface
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        return sock
    except OSError:
        sock.close()
        raise


def ipv6_interface(address: str) -> int:
    """The index of the interface that holds the IPv6 ``address`` (``fe80::1%eth0``: its
    scope), or 0 when unknown (not Linux, or no interface holds it): then the routing table
    chooses."""
    host, _, scope = address.partition("%")
    if scope:
        try:
            return int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
        except OSError:
            return 0
    try:
        packed = ipaddress.IPv6Address(host).packed.hex()
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            for line in table:  # address, index, prefix length, scope, flags, name (hex)
                fields = line.split()
                if len(fields) >= 2 and fields[0] == packed:
                    return int(fields[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def _open_v6(bind: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        index = 0 if bind in _WILDCARDS else ipv6_interface(bind)
        group = socket.inet_pton(socket.AF_INET6, GROUP_V6)
        sock.setsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, struct.pack("16sI", group, index)
        )
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, MULTICAST_HOPS)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        if index:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            # Linux matches IPv6 memberships by group alone: the arrival interface, from
            # IPV6_PKTINFO, tells ours from the group's datagrams on other links.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        return sock
    except OSError:
        sock.close()
        raise


def _v6_source(bind: str) -> list[tuple[int, int, bytes]]:
    """The ancillary data that makes ``bind`` (a specific IPv6 address) the source of a
    datagram, on its interface; none for a wildcard or an IPv4 address."""
    if bind in _WILDCARDS or ":" not in bind or not hasattr(socket, "IPV6_PKTINFO"):
        return []
    source = socket.inet_pton(socket.AF_INET6, bind.partition("%")[0])
    pktinfo = struct.pack("16sI", source, ipv6_interface(bind))
    return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)]


def _arrived_on(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The interface index in an IPV6_PKTINFO control message (None: there is none)."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            index: int = struct.unpack_from("I", data, 16)[0]
            return index
    return None


def _source_host(source: object) -> str:
    """The sender's address from ``recvmsg``: a link-local IPv6 one with its scope, which
    Python leaves out of the host string (``('fe80::1', port, flow, 3)`` -> ``fe80::1%3``)."""
    if not isinstance(source, tuple):
        return str(source)
    host = str(source[0])
    if len(source) == 4 and source[3] and "%" not in host:
        return f"{host}%{source[3]}"
    return host


def _families(bind: str) -> list[Family]:
    """Which groups to join for a session listening on ``bind``."""
    if bind in _WILDCARDS:
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

    async def announcer(
        self,
        socks: dict[Family, trio.socket.SocketType],
        ancillary: dict[Family, list[tuple[int, int, bytes]]],
    ) -> None:
        warned: set[Family] = set()
        while True:
            self._wakeup = trio.Event()
            for family, packet in self.core.packets(trio.current_time()):
                try:
                    if ancillary.get(family):
                        await socks[family].sendmsg(
                            [packet], ancillary[family], 0, _GROUP_ADDR[family]
                        )
                    else:
                        await socks[family].sendto(packet, _GROUP_ADDR[family])
                except OSError as exc:  # no multicast route, interface down, ...
                    if family not in warned:
                        warned.add(family)
                        log.warning("lsd: cannot send to the %s group: %s", family, exc)
            due = self.core.next_due()
            with trio.move_on_at(due if due is not None else float("inf")):
                await self._wakeup.wait()

    async def receiver(self, sock: trio.socket.SocketType, interface: int = 0) -> None:
        """Hands the core every datagram; with ``interface`` (IPv6), only those that
        arrived on it."""
        while True:
            try:
                data, ancillary, _, source = await sock.recvmsg(2048, socket.CMSG_SPACE(20))
            except OSError:
                await trio.sleep(1.0)
                continue
            if interface and _arrived_on(ancillary) not in (None, interface):
                continue
            found = self.core.receive(data, _source_host(source), trio.current_time())
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
                sock = _open_v4(bind if bind not in _WILDCARDS else "0.0.0.0")
                await sock.bind((GROUP_V4, LSD_PORT))
            else:
                sock = _open_v6(bind)
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
            ancillary: dict[Family, list[tuple[int, int, bytes]]] = {"v6": _v6_source(bind)}
            nursery.start_soon(net.announcer, socks, ancillary)
            for family, sock in socks.items():
                interface = ipv6_interface(bind) if family == "v6" and bind not in _WILDCARDS else 0
                nursery.start_soon(net.receiver, sock, interface)
            yield net
            nursery.cancel_scope.cancel()
    finally:
        for sock in socks.values():
            sock.close()
