"""The UDP tracker client's trio driver: runs one :class:`~.udp.UdpExchange` over a socket.

Each exchange resolves the tracker's host, opens a UDP socket *connected* to the address it
got (so the kernel passes on only datagrams from that address and port), and loops: send
what the exchange says, wait for a datagram until its deadline, feed it in. Connection ids
are kept per address in the :class:`UdpTrackerClient`'s :class:`~.udp.ConnectionIds` and
reused for up to 60 s. See :mod:`.udp` for the rules.
"""

from __future__ import annotations

import contextlib
import random
import socket
import urllib.parse
from collections.abc import Sequence

import trio

from torrentkit.discovery.tracker.protocol import (
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
)
from torrentkit.discovery.tracker.udp import (
    MAX_DATAGRAM,
    ConnectionIds,
    RetryPolicy,
    UdpExchange,
    UdpTimeout,
    url_data_options,
)
from torrentkit.errors import TorrentkitError
from torrentkit.ids import InfoHash


class UdpUnreachable(TorrentkitError):
    """The tracker's host could not be resolved, a socket error, or no reply in time."""


def split_udp_url(url: str) -> tuple[str, int, str]:
    """``udp://HOST:PORT/path?query`` as (host, port, BEP 41 URL data: path and query)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme.lower() != "udp" or not parts.hostname or not port:
        raise UdpUnreachable(f"not a udp://HOST:PORT tracker URL: {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path


class UdpTrackerClient:
    """What a client's UDP announces share: connection ids per tracker address, the retry
    policy, and the randomness for transaction ids."""

    def __init__(
        self, *, policy: RetryPolicy | None = None, rng: random.Random | None = None
    ) -> None:
        self.policy = policy if policy is not None else RetryPolicy()
        self.ids = ConnectionIds()
        self._rng: random.Random = rng if rng is not None else random.SystemRandom()

    async def announce(self, url: str, request: AnnounceRequest) -> AnnounceResponse:
        """Announce ``request`` to ``url``. Raises :class:`UdpUnreachable` (no answer,
        resolution or socket error), :class:`~.protocol.TrackerFailure` (an error reply)
        or :class:`~.protocol.TrackerResponseError` (a malformed reply)."""
        host, port, path = split_udp_url(url)
        options = url_data_options(path) if path and path != "/" else b""
        result = await self._run(host, port, announce=request, url_data=options)
        assert isinstance(result, AnnounceResponse)
        return result

    async def scrape(self, url: str, info_hashes: Sequence[bytes]) -> dict[InfoHash, ScrapeStats]:
        host, port, _ = split_udp_url(url)
        result = await self._run(host, port, scrape=info_hashes)
        assert isinstance(result, dict)
        return result

    async def _run(
        self,
        host: str,
        port: int,
        *,
        announce: AnnounceRequest | None = None,
        url_data: bytes = b"",
        scrape: Sequence[bytes] = (),
    ) -> AnnounceResponse | dict[InfoHash, ScrapeStats]:
        try:
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise UdpUnreachable(f"cannot resolve {host}: {exc.strerror or exc}") from None
        if not infos:
            raise UdpUnreachable(f"cannot resolve {host}")
        family, _, _, _, address = infos[0]
        ipv6 = family == socket.AF_INET6 and not str(address[0]).startswith("::ffff:")
        exchange = UdpExchange(
            address=(family, address[:2]),
            ids=self.ids,
            now=trio.current_time(),
            rng=self._rng,
            ipv6=ipv6,
            announce=announce,
            url_data=url_data,
            scrape=scrape,
            policy=self.policy,
        )
        try:
            with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
                await sock.connect(address)
                while not exchange.done:
                    out = exchange.datagram()
                    if out is not None:
                        # ECONNREFUSED from an earlier ICMP: the timeout decides, not one ICMP.
                        with contextlib.suppress(OSError):
                            await sock.send(out)
                    with trio.move_on_at(exchange.deadline):
                        try:
                            data = await sock.recv(MAX_DATAGRAM)
                        except OSError:
                            # ICMP port unreachable: nobody listens. Wait out the timeout
                            # rather than give up on one ICMP (it may be stale or spoofed).
                            await trio.sleep_until(exchange.deadline)
                            continue
                        exchange.receive(data, trio.current_time())
                        continue
                    exchange.timed_out(trio.current_time())
        except OSError as exc:
            raise UdpUnreachable(f"udp socket: {exc.strerror or exc}") from None
        try:
            return exchange.result()
        except UdpTimeout as exc:
            raise UdpUnreachable(str(exc)) from None
