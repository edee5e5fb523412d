"""The fast extension (BEP 6) and peer exchange (BEP 11) against libtorrent 2.1.1 on 127.0.0.1.

- The bytes a real libtorrent seeder sends a fast peer, read by a hand-driven peer built on
  our sans-IO connection over a real socket: HAVE ALL, ALLOWED FAST, a REJECT for a request
  it will not serve, the block for one it will.
- Our seeder and a libtorrent leecher, our leecher and a libtorrent seeder: HAVE ALL /
  ALLOWED FAST both ways (our ``--json`` ``fast`` events), data byte-identical.
- PEX: our leecher is given only the address of a libtorrent peer that holds none of the data
  (ut_pex on, upload mode, bound to loopback); it learns the real seeder (another libtorrent)
  from that peer's PEX message and completes byte-identical.

DHT, LSD, UPnP and NAT-PMP are off everywhere; PEX only on the one libtorrent peer of the PEX
test, which talks to loopback only.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from pathlib import Path

import libtorrent as lt
import pytest

from tests.interop.ours import OurPeer, our_download, our_seed
from tests.interop.peers import (
    LOOPBACK,
    MiB,
    libtorrent_session,
    lt_add,
    lt_info_hash,
    lt_port,
    lt_wait_finished,
    make_payload,
    make_test_torrent,
    wait_until,
)
from torrentkit.wire.connection import NEED_DATA, PeerConnection, PieceGeometry
from torrentkit.wire.events import (
    AllowedFast,
    Event,
    Handshake,
    HaveAll,
    HaveNone,
    Interested,
    Piece,
    RejectRequest,
    Unchoke,
)
from torrentkit.wire.fast import allowed_fast_set

pytestmark = [pytest.mark.interop, pytest.mark.slow]

KiB = 1024
PIECE = 64 * KiB
#: No tracker runs: peers are given to each other directly.
NO_TRACKER = "http://127.0.0.1:9/announce"


def _payload(tmp_path: Path, size: int = 2 * MiB) -> tuple[Path, Path, bytes]:
    payload = make_payload(tmp_path / "seed" / "payload.bin", size)
    torrent = make_test_torrent(payload, NO_TRACKER, tmp_path / "payload.torrent",
                                piece_length=PIECE)  # fmt: skip
    return payload, torrent, lt_info_hash(torrent)


def _fast_events(peer: OurPeer, direction: str) -> list[dict[str, object]]:
    return [e for e in peer.events() if e["event"] == "fast" and e["direction"] == direction]


def _unmasked_allowed_fast(ip: bytes, info_hash: bytes, num_pieces: int, k: int) -> list[int]:
    """libtorrent 2.1.1's variant: the BEP's loop over the *whole* IPv4 address (no /24)."""
    x, out = ip + info_hash, []
    while len(out) < k:
        x = hashlib.sha1(x).digest()
        for j in range(0, 20, 4):
            index = int.from_bytes(x[j : j + 4], "big") % num_pieces
            if index not in out and len(out) < k:
                out.append(index)
    return out


class SocketPeer:
    """Our sans-IO connection over a blocking socket, driven by the test."""

    def __init__(self, port: int, info_hash: bytes, geometry: PieceGeometry) -> None:
        self.sock = socket.create_connection((LOOPBACK, port), timeout=10)
        self.conn = PeerConnection(
            initiator=True,
            info_hash=info_hash,
            our_peer_id=b"-XX0001-fastpexinter",
            geometry=geometry,
        )
        self.events: list[Event] = []
        self.sock.sendall(
            self.conn.send(Handshake(info_hash=info_hash, peer_id=self.conn.our_peer_id))
        )

    def pump_until(self, done: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; libtorrent sent {self.events[-8:]}")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert data, f"libtorrent closed the connection after {self.events[-8:]}"
            self.conn.receive_data(data)
            while (event := self.conn.next_event()) is not NEED_DATA:
                self.events.append(event)

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    def request_raw(self, index: int, begin: int, length: int) -> None:
        """A REQUEST our own checks would not send (past the piece end): recorded as ours,
        so that libtorrent's answer is parsed as an answer."""
        self.conn._requested[(index, begin, length)] = None
        self.sock.sendall(struct.pack(">IBIII", 13, 6, index, begin, length))


def test_the_fast_messages_a_libtorrent_seeder_sends(tmp_path: Path) -> None:
    payload, torrent, ih = _payload(tmp_path)
    data = payload.read_bytes()
    with libtorrent_session(allowed_fast_set_size=10) as ses:
        lt_add(ses, torrent, payload.parent, seed=True)
        ti = lt.torrent_info(str(torrent))
        n = ti.num_pieces()
        peer = SocketPeer(
            lt_port(ses), ih, PieceGeometry(piece_length=PIECE, total_length=len(data))
        )
        try:
            peer.pump_until(lambda: peer.conn.peer_handshake is not None)
            assert peer.conn.fast  # libtorrent sets reserved[7] & 0x04
            peer.pump_until(lambda: bool(peer.of(HaveAll)))  # a seed: HAVE ALL, no bitfield
            # Our have-set (HAVE NONE) is what makes libtorrent send its allowed-fast set.
            peer.sock.sendall(peer.conn.send(HaveNone()) + peer.conn.send(Interested()))
            peer.pump_until(lambda: len(peer.of(AllowedFast)) == 10)
            got = [e.index for e in peer.of(AllowedFast)]  # type: ignore[attr-defined]
            # libtorrent 2.1.1 hashes the whole address; the BEP (and we) mask it to the /24.
            assert got == _unmasked_allowed_fast(bytes([127, 0, 0, 1]), ih, n, 10)
            assert got != allowed_fast_set(LOOPBACK, ih, n, 10)
            # A request past the piece's end: answered with REJECT REQUEST, not ignored.
            peer.pump_until(lambda: bool(peer.of(Unchoke)))
            peer.request_raw(0, PIECE, 16 * KiB)
            peer.sock.sendall(peer.conn.send_requests([(got[0], 0, 16 * KiB)]))
            peer.pump_until(lambda: bool(peer.of(RejectRequest)) and bool(peer.of(Piece)))
            assert peer.of(RejectRequest) == [RejectRequest(index=0, begin=PIECE, length=16 * KiB)]
            block = peer.of(Piece)[0]
            start = got[0] * PIECE
            assert block == Piece(index=got[0], begin=0, data=data[start : start + 16 * KiB])
        finally:
            peer.sock.close()


def test_libtorrent_leecher_reads_our_have_all_and_allowed_fast(tmp_path: Path) -> None:
    payload, torrent, ih = _payload(tmp_path)
    logs, state = tmp_path / "logs", tmp_path / "st"
    with our_seed(torrent, payload.parent, logs=logs, state_dir=state) as ours, \
            libtorrent_session() as ses:  # fmt: skip
        handle = lt_add(ses, torrent, tmp_path / "lt")
        handle.connect_peer((LOOPBACK, ours.port))
        lt_wait_finished(handle, 60)
        n = lt.torrent_info(str(torrent)).num_pieces()
        expected = allowed_fast_set(LOOPBACK, ih, n)

        def logged() -> bool:  # our seeder writes its JSON lines every 50 ms, off the engine
            sent = [e["message"] for e in _fast_events(ours, "ours")]
            return "have_all" in sent and sent.count("allowed_fast") >= len(expected)

        wait_until(logged, 10, "our seeder's fast events in its log")
        # No bitfield went out: libtorrent knew we had every piece from HAVE ALL alone.
        sent = _fast_events(ours, "ours")
        assert [e["message"] for e in sent].count("have_all") == 1, ours.logs()
        allowed = [e["index"] for e in sent if e["message"] == "allowed_fast"]
        assert allowed == expected, ours.logs()
    assert (tmp_path / "lt" / "payload.bin").read_bytes() == payload.read_bytes()


def test_ours_reads_libtorrents_have_all_and_allowed_fast(tmp_path: Path) -> None:
    payload, torrent, ih = _payload(tmp_path)
    with libtorrent_session(allowed_fast_set_size=10) as ses:
        lt_add(ses, torrent, payload.parent, seed=True)
        addr = f"{LOOPBACK}:{lt_port(ses)}"
        logs, state = tmp_path / "logs", tmp_path / "st"
        with our_download(torrent, tmp_path / "dl", logs=logs, state_dir=state,
                          peers=[addr], no_tracker=True, timeout=45) as ours:  # fmt: skip
            assert ours.wait(60) == 0, ours.logs()
        got = _fast_events(ours, "theirs")
        assert any(e["message"] == "have_all" for e in got), ours.logs()
        allowed = [e["index"] for e in got if e["message"] == "allowed_fast"]
        n = lt.torrent_info(str(torrent)).num_pieces()
        assert allowed == _unmasked_allowed_fast(bytes([127, 0, 0, 1]), ih, n, 10), ours.logs()
        # We had nothing: HAVE NONE went out, not silence.
        assert any(e["message"] == "have_none" for e in _fast_events(ours, "ours")), ours.logs()
    assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()


def test_ours_learns_the_seeder_from_a_libtorrent_peers_pex(tmp_path: Path) -> None:
    payload, torrent, _ = _payload(tmp_path, 4 * MiB)
    # A seed and a peer in upload mode want nothing from each other: libtorrent would close
    # that "redundant" connection, and the middle peer would have no seeder to tell of.
    keep = {"close_redundant_connections": False}
    with libtorrent_session(**keep) as seed_ses, libtorrent_session(**keep) as middle_ses:
        lt_add(seed_ses, torrent, payload.parent, seed=True)
        seed_port = lt_port(seed_ses)
        # The middle peer: ut_pex on (the only libtorrent here with it), in upload mode so it
        # downloads nothing: it never holds any of the data.
        middle_ses.add_extension("ut_pex")
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(str(torrent))
        atp.save_path = str(tmp_path / "middle")
        atp.flags = (
            lt.torrent_flags.disable_dht
            | lt.torrent_flags.disable_lsd
            | lt.torrent_flags.upload_mode
        )
        middle = middle_ses.add_torrent(atp)
        middle.connect_peer((LOOPBACK, seed_port))
        wait_until(lambda: any(p.seed for p in middle.get_peer_info()), 15, "middle meets seed")
        middle_addr = f"{LOOPBACK}:{lt_port(middle_ses)}"
        logs, state = tmp_path / "logs", tmp_path / "st"
        with our_download(torrent, tmp_path / "dl", logs=logs, state_dir=state,
                          peers=[middle_addr], no_tracker=True, timeout=60) as ours:  # fmt: skip
            assert ours.wait(75) == 0, ours.logs()
        assert middle.status().num_pieces == 0  # it held none of the data
    events = ours.events()
    pex = [e for e in events if e["event"] == "pex"]
    assert pex and pex[0]["peer"].endswith(f":{lt_port_of(middle_addr)}"), ours.logs()
    assert sum(e["added"] for e in pex) >= 1, ours.logs()
    connected = {e["peer"] for e in events if e["event"] == "peer_connected"}
    assert f"{LOOPBACK}:{seed_port}" in connected, ours.logs()
    assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()


def lt_port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def test_our_seeder_rejects_what_it_will_not_serve_and_libtorrent_carries_on(
    tmp_path: Path,
) -> None:
    """Six libtorrent leechers on our rate-limited seeder: 4 + 1 slots, so every rechoke
    chokes some of them with requests pending -- those are rejected (BEP 6), and libtorrent
    asks again when unchoked; everyone completes byte-identical."""
    payload, torrent, _ = _payload(tmp_path, 3 * MiB)
    logs, state = tmp_path / "logs", tmp_path / "st"
    extra = ["--up-limit", "600k"]
    with our_seed(torrent, payload.parent, logs=logs, state_dir=state, extra=extra) as ours:
        sessions = [libtorrent_session() for _ in range(6)]
        handles = []
        try:
            for n, cm in enumerate(sessions):
                ses = cm.__enter__()
                handle = lt_add(ses, torrent, tmp_path / f"lt{n}")
                handle.connect_peer((LOOPBACK, ours.port))
                handles.append(handle)
            for handle in handles:
                lt_wait_finished(handle, 120)
        finally:
            for cm in reversed(sessions):
                cm.__exit__(None, None, None)
        rejects = [e for e in _fast_events(ours, "ours") if e["message"] == "reject"]
        chokes = [e for e in ours.events() if e["event"] == "choke"]
    assert chokes, ours.logs()
    assert rejects, ours.logs()
    for n in range(6):
        assert (tmp_path / f"lt{n}" / "payload.bin").read_bytes() == payload.read_bytes()
