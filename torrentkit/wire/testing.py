"""Two sans-IO peer wire endpoints joined in memory (h11's ConnectionPair, for tests and
simulations). Bytes one side sends are fed straight to the other, which is parsed at once."""

from __future__ import annotations

from typing import Any

from torrentkit.wire.connection import NEED_DATA, PeerConnection, PieceGeometry
from torrentkit.wire.events import DEFAULT_RESERVED, Event, Handshake

INFO_HASH = bytes(range(20))
ID_A = b"-TK0100-aaaaaaaaaaaa"
ID_B = b"-LT2110-bbbbbbbbbbbb"


class ConnectionPair:
    """``a`` dialled ``b``. ``send(side, *events)`` returns what the other side received.

    ``options`` go to both PeerConnection constructors (limits, ...)."""

    def __init__(
        self,
        *,
        geometry: PieceGeometry | None = None,
        info_hash: bytes = INFO_HASH,
        id_a: bytes = ID_A,
        id_b: bytes = ID_B,
        reserved_a: bytes = DEFAULT_RESERVED,
        reserved_b: bytes = DEFAULT_RESERVED,
        handshake: bool = True,
        **options: Any,
    ) -> None:
        self.info_hash = info_hash
        self.a = PeerConnection(
            initiator=True, info_hash=info_hash, our_peer_id=id_a, geometry=geometry, **options
        )
        self.b = PeerConnection(
            initiator=False, info_hash=info_hash, our_peer_id=id_b, geometry=geometry, **options
        )
        self._reserved = {"a": reserved_a, "b": reserved_b}
        if handshake:
            self.handshake()

    def conn(self, side: str) -> PeerConnection:
        return self.a if side == "a" else self.b

    def other(self, side: str) -> PeerConnection:
        return self.b if side == "a" else self.a

    def handshake(self) -> None:
        """Both handshakes: a sends first, b answers after it accepted a's."""
        for side in ("a", "b"):
            conn = self.conn(side)
            hs = Handshake(
                info_hash=self.info_hash, peer_id=conn.our_peer_id, reserved=self._reserved[side]
            )
            got = self.send(side, hs)
            assert got == [hs], got

    def send(self, side: str, *events: Event) -> list[Event]:
        """Send ``events`` from ``side``; return every event the other side then parses."""
        sender, receiver = self.conn(side), self.other(side)
        for event in events:
            receiver.receive_data(sender.send(event))
        return drain(receiver)


def drain(conn: PeerConnection) -> list[Event]:
    """Every event ``conn`` can parse from what it has buffered."""
    out: list[Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert not isinstance(event, type(NEED_DATA))
        out.append(event)
    return out
