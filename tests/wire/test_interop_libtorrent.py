"""The sans-IO core against a real peer: libtorrent 2.1.1 on 127.0.0.1.

Not a driver test (that is the engine's): a minimal loop in the test moves bytes between a trio
socket and PeerConnection, so what is proven is that our bytes and libtorrent's agree -- the
handshake, BEP 10, bitfield, interest, requests and pieces, both ways, ending byte-identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtorrent as lt  # a test extra: fails loudly, never skips, when missing
import pytest
import trio

from tests.interop.peers import wait_written
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent
from torrentkit.wire import (
    NEED_DATA,
    Bitfield,
    ExtendedHandshake,
    Handshake,
    HandshakeRejected,
    Interested,
    PeerConnection,
    Piece,
    PieceGeometry,
    RejectReason,
    Request,
    Unchoke,
)
from torrentkit.wire.peer_id import client_name, generate_peer_id

pytestmark = pytest.mark.interop

PIECE_LENGTH = 32 * 1024
SETTINGS = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "allow_multiple_connections_per_ip": True,
}
TORRENT_FLAGS = ["disable_dht", "disable_lsd", "disable_pex"]


def make_payload(folder: Path) -> tuple[bytes, Any, PieceGeometry]:
    data = os.urandom(5 * PIECE_LENGTH + 1234)
    folder.mkdir()
    (folder / "payload.bin").write_bytes(data)
    torrent = make_torrent(folder / "payload.bin", piece_length=PIECE_LENGTH)
    info = parse_torrent(torrent).info
    geometry = PieceGeometry(piece_length=info.piece_length, total_length=info.total_length)
    return data, (torrent, info), geometry


def add(ses: Any, torrent: bytes, save_path: Path, *extra_flags: str) -> Any:
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(lt.bdecode(torrent))
    atp.save_path = str(save_path)
    flags = 0
    for name in (*TORRENT_FLAGS, *extra_flags):
        flags |= getattr(lt.torrent_flags, name)
    atp.flags = flags
    return ses.add_torrent(atp)


async def pump(
    stream: trio.SocketStream,
    conn: PeerConnection,
    on_event: Callable[[object], list[object]],
    done: Callable[[], bool],
) -> None:
    """Read, parse, answer, until ``done()`` or the peer closes."""
    while not done():
        data = await stream.receive_some(65536)
        if not data:
            return
        conn.receive_data(data)
        while (event := conn.next_event()) is not NEED_DATA:
            out = b"".join(conn.send(e) for e in on_event(event))  # type: ignore[arg-type]
            if out:
                await stream.send_all(out)


async def test_we_download_from_libtorrent(tmp_path: Path) -> None:
    data, (torrent, info), geometry = make_payload(tmp_path / "seed")
    ses = lt.session(SETTINGS)
    add(ses, torrent, tmp_path / "seed", "seed_mode")
    our_id = generate_peer_id()
    conn = PeerConnection(
        initiator=True, info_hash=info.info_hash, our_peer_id=our_id, geometry=geometry
    )
    blocks: dict[tuple[int, int], bytes] = {}
    seen: list[object] = []
    wanted = [
        Request(index=i, begin=b, length=min(16384, geometry.piece_size(i) - b))
        for i in range(geometry.num_pieces)
        for b in range(0, geometry.piece_size(i), 16384)
    ]

    def on_event(event: object) -> list[object]:
        seen.append(event)
        if isinstance(event, Handshake):
            return [ExtendedHandshake(v="torrentkit 0.1.0", reqq=500), Interested()]
        if isinstance(event, Unchoke):  # (libtorrent may repeat an unchoke)
            return [
                r
                for r in wanted
                if (r.index, r.begin) not in blocks
                and not conn.is_outstanding(r.index, r.begin, r.length)
            ]
        if isinstance(event, Piece):
            blocks[(event.index, event.begin)] = event.data
        return []

    with trio.fail_after(30):
        stream = await trio.open_tcp_stream("127.0.0.1", ses.listen_port())
        async with stream:
            await stream.send_all(conn.send(Handshake(info_hash=info.info_hash, peer_id=our_id)))
            await pump(stream, conn, on_event, lambda: len(blocks) == len(wanted))

    assert b"".join(blocks[k] for k in sorted(blocks)) == data
    handshake = next(e for e in seen if isinstance(e, Handshake))
    assert client_name(handshake.peer_id) == "libtorrent 2.1.1"
    assert conn.extension_protocol
    ext = next(e for e in seen if isinstance(e, ExtendedHandshake))
    assert ext.v is not None and ext.v.startswith("libtorrent")
    assert conn.peer_reqq is not None and conn.peer_reqq > 0
    assert conn.peer_is_seed
    assert isinstance(seen[1], Bitfield | ExtendedHandshake)


async def test_libtorrent_downloads_from_us(tmp_path: Path) -> None:
    data, (torrent, info), geometry = make_payload(tmp_path / "ours")
    ses = lt.session(SETTINGS)
    handle = add(ses, torrent, tmp_path / "theirs")
    our_id = generate_peer_id()
    full = Bitfield.from_indices(geometry.num_pieces, range(geometry.num_pieces))
    served = 0
    rejected: list[BaseException] = []

    def serve(conn: PeerConnection) -> Callable[[object], list[object]]:
        def on_event(event: object) -> list[object]:
            nonlocal served
            if isinstance(event, Handshake):
                assert client_name(event.peer_id) == "libtorrent 2.1.1"
                return [
                    Handshake(info_hash=event.info_hash, peer_id=our_id),
                    full,
                    ExtendedHandshake(v="torrentkit 0.1.0", reqq=conn.max_pending_requests),
                ]
            if isinstance(event, Interested):
                return [Unchoke()]
            if isinstance(event, Request):
                served += 1
                start = event.index * geometry.piece_length + event.begin
                block = data[start : start + event.length]
                return [Piece(index=event.index, begin=event.begin, data=block)]
            return []

        return on_event

    async def one_connection(stream: trio.SocketStream) -> bool:
        """Serve one incoming connection; False if its handshake was refused."""
        conn = PeerConnection(
            initiator=False,
            info_hash={info.info_hash}.__contains__,
            our_peer_id=our_id,
            geometry=geometry,
        )
        try:
            async with stream, trio.open_nursery() as nursery:

                async def watch() -> None:
                    while not handle.status().is_seeding:
                        await trio.sleep(0.05)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                await pump(stream, conn, serve(conn), lambda: False)
        except* HandshakeRejected as group:
            rejected.extend(group.exceptions)
        return conn.peer_handshake is not None

    with trio.fail_after(30):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listeners[0]:
            handle.connect_peer(("127.0.0.1", listeners[0].socket.getsockname()[1]))
            # libtorrent's default (pe_enabled) dials with an encrypted (MSE) handshake first
            # and retries in plaintext once that is refused.
            while not await one_connection(await listeners[0].accept()):
                pass

    print(f"{len(rejected)} encrypted attempt(s) refused before the plaintext one")
    assert all(
        isinstance(e, HandshakeRejected) and e.reason is RejectReason.NOT_BITTORRENT
        for e in rejected
    )
    wait_written(tmp_path / "theirs" / "payload.bin", data)  # libtorrent's disk thread
    assert served == sum(-(-geometry.piece_size(i) // 16384) for i in range(geometry.num_pieces))
