"""A tracker's error reaches the session's events (``--json``) and the dashboard's event log as
a ``tracker_error``: here a UDP tracker (a socket of the test's, on 127.0.0.1) that answers
every announce with BEP 15's error action."""

from __future__ import annotations

import struct
from pathlib import Path

import trio

import torrentkit
from tests.api.helpers import KIB, payload, settings
from torrentkit import events
from torrentkit.maketorrent import make_torrent
from torrentkit.ui.dashboard import describe_event


async def _refusing_tracker(sock: trio.socket.SocketType) -> None:
    while True:
        data, addr = await sock.recvfrom(2048)
        action, tid = struct.unpack_from(">II", data, 8)
        if action == 0:
            await sock.sendto(struct.pack(">IIQ", 0, tid, 99), addr)
        else:
            await sock.sendto(struct.pack(">II", 3, tid) + b"torrent not registered", addr)


async def test_a_udp_error_reply_is_a_tracker_error_event(tmp_path: Path) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    url = f"udp://127.0.0.1:{sock.getsockname()[1]}/announce"
    src = payload(tmp_path / "seed", {"data.bin": 100 * KIB})
    raw = make_torrent(src / "data.bin", trackers=[[url]], piece_length=64 * KIB)
    with trio.fail_after(30), sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_refusing_tracker, sock)
            async with (
                torrentkit.open_session(settings(tmp_path / "s")) as session,
                session.events() as stream,
            ):
                await session.add(raw, src)
                async for event in stream:
                    if isinstance(event, events.TrackerError):
                        break
                # UDP trackers alone: the session never made its HTTP client (nor loaded httpx)
                assert session._http is None
            nursery.cancel_scope.cancel()
    assert event.source == url
    assert event.message == "tracker failure: torrent not registered"
    assert event.to_json()["event"] == "tracker_error"
    text, style = describe_event(event)
    assert text == f"tracker {url}: tracker failure: torrent not registered" and style == "red"
