"""Typed engine events: what ``Session.events()`` yields, what ``--json`` prints and what the
dashboard's event log shows (docs/cli.md names the JSON forms).

Every event is a frozen, slotted dataclass with keyword-only fields. ``t`` is seconds since
the torrent started (the JSON field of the same name); ``info_hash`` is the torrent's v1
info-hash as 40 lowercase hex digits. :meth:`Event.to_json` gives the one-line JSON object,
whose ``"event"`` name is the class's :attr:`Event.kind` (``peer_connected``, ``choke``, ...).
No untyped dict crosses the engine's edge: faces build on these classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

ChokeReason = Literal["rate", "optimistic", "snubbed", "seed", "stopped"]
Direction = Literal["ours", "theirs"]
TorrentState = Literal["checking", "metadata", "downloading", "seeding", "paused", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of every engine event."""

    #: The JSON ``"event"`` name.
    kind: ClassVar[str] = "event"

    t: float
    info_hash: str

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form: ``{"event": kind, "t": ..., <fields>...}``."""
        out: dict[str, Any] = {"event": self.kind}
        for name in _field_names(type(self)):
            out[name] = getattr(self, name)
        return out


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type[Event]) -> tuple[str, ...]:
    """An event class's field names in order, remembered (``dataclasses.fields`` rebuilds
    the tuple on every call; a leecher prints hundreds of events)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerEvent(Event):
    """An event about one peer connection; ``peer`` is its ``HOST:PORT``."""

    peer: str


# ---------------------------------------------------------------------------- torrent life


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentAdded(Event):
    """The torrent joined the session (a magnet's ``name`` is its ``dn`` or the hash)."""

    kind: ClassVar[str] = "added"
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataReceived(Event):
    """A magnet's info dictionary arrived and was checked against the info-hash."""

    kind: ClassVar[str] = "metadata"
    name: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentChecked(Event):
    """The data on disk was checked (``rechecked`` pieces hashed, ``trusted`` taken from
    resume data without hashing)."""

    kind: ClassVar[str] = "checked"
    pieces: int
    num_pieces: int
    rechecked: int = 0
    trusted: int = 0
    #: Why resume data could not be used (damaged, another torrent's, ...), else None.
    resume_problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentCompleted(Event):
    """Every wanted piece is verified and on disk."""

    kind: ClassVar[str] = "completed"
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentPaused(Event):
    """Every peer disconnected, announcing stopped; the data and its check are kept."""

    kind: ClassVar[str] = "paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentResumed(Event):
    """Running again after a pause or an error."""

    kind: ClassVar[str] = "resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentRemoved(Event):
    """Gone from the session, its resume data too (and its files with ``deleted_data``)."""

    kind: ClassVar[str] = "removed"
    deleted_data: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentError(Event):
    """The torrent stopped on an error (disk full, read-only folder, ...)."""

    kind: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeSaved(Event):
    """Resume data written (``pieces`` recorded as verified)."""

    kind: ClassVar[str] = "resume_saved"
    pieces: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerError(Event):
    """A discovery source (tracker, ring, index, overlay) reported a problem."""

    kind: ClassVar[str] = "tracker_error"
    source: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PeersFound(Event):
    """A discovery source handed the torrent new peer addresses."""

    kind: ClassVar[str] = "peers_found"
    source: str
    count: int


# ---------------------------------------------------------------------------- peers


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConnected(PeerEvent):
    """A connection finished its handshake; ``client`` is named from the peer id."""

    kind: ClassVar[str] = "peer_connected"
    client: str
    #: MSE/PE: ``rc4`` (encrypted stream), ``handshake`` (encrypted handshake, plaintext
    #: after it), ``none`` (plaintext handshake; web seeds too).
    encryption: str = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerDisconnected(PeerEvent):
    """A connection ended, and why; with what the peer was and did (its ``client``, the
    payload bytes it sent us and we sent it, the seconds we kept it unchoked in all), so
    a summary can still count a peer that has left."""

    kind: ClassVar[str] = "peer_disconnected"
    reason: str
    client: str = ""
    downloaded: int = 0
    uploaded: int = 0
    unchoked_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Choked(PeerEvent):
    """We choked the peer."""

    kind: ClassVar[str] = "choke"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unchoked(PeerEvent):
    """We unchoked the peer (``reason``: rate, optimistic or seed)."""

    kind: ClassVar[str] = "unchoke"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimisticUnchoke(PeerEvent):
    """The peer got the optimistic slot."""

    kind: ClassVar[str] = "optimistic"


@dataclass(frozen=True, slots=True, kw_only=True)
class Interested(PeerEvent):
    """``direction`` ours: we became interested in the peer; theirs: it in us."""

    kind: ClassVar[str] = "interested"
    direction: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotInterested(PeerEvent):
    """``direction`` ours: we lost interest in the peer; theirs: it in us."""

    kind: ClassVar[str] = "not_interested"
    direction: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Snubbed(PeerEvent):
    """The peer unchoked us but sent no block for 60 s."""

    kind: ClassVar[str] = "snubbed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerBanned(PeerEvent):
    """The peer is disconnected and never dialled or accepted again (e.g. corrupt data)."""

    kind: ClassVar[str] = "banned"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FastMessage(PeerEvent):
    """A BEP 6 fast extension message sent (``direction`` ``ours``) or received (``theirs``):
    ``message`` is ``have_all``, ``have_none``, ``reject``, ``allowed_fast`` or ``suggest``;
    ``index`` the piece (None for have_all / have_none)."""

    kind: ClassVar[str] = "fast"
    direction: Direction
    message: str
    index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PexReceived(PeerEvent):
    """A peer's PEX message: ``added`` addresses new to the peer book, ``ignored`` the ones
    not believed (ourselves, private ranges from a public peer, over a cap, malformed)."""

    kind: ClassVar[str] = "pex"
    added: int
    ignored: int


# ---------------------------------------------------------------------------- pieces


@dataclass(frozen=True, slots=True, kw_only=True)
class PieceVerified(Event):
    """A piece passed its hash and is on disk."""

    kind: ClassVar[str] = "piece"
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HashFailed(Event):
    """A piece failed its hash; ``peers`` sent blocks of it."""

    kind: ClassVar[str] = "hash_failed"
    index: int
    peers: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """As :meth:`Event.to_json`, with ``peers`` as a list."""
        out = Event.to_json(self)
        out["peers"] = list(self.peers)
        return out


#: Every event class by its JSON name.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        TorrentAdded,
        MetadataReceived,
        TorrentChecked,
        TorrentCompleted,
        TorrentPaused,
        TorrentResumed,
        TorrentRemoved,
        TorrentError,
        ResumeSaved,
        TrackerError,
        PeersFound,
        FastMessage,
        PexReceived,
        PeerConnected,
        PeerDisconnected,
        Choked,
        Unchoked,
        OptimisticUnchoke,
        Interested,
        NotInterested,
        Snubbed,
        PeerBanned,
        PieceVerified,
        HashFailed,
    )
}

__all__ = [
    "EVENT_TYPES",
    "ChokeReason",
    "Choked",
    "Direction",
    "Event",
    "FastMessage",
    "HashFailed",
    "Interested",
    "MetadataReceived",
    "NotInterested",
    "OptimisticUnchoke",
    "PeerBanned",
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "PeersFound",
    "PexReceived",
    "PieceVerified",
    "ResumeSaved",
    "Snubbed",
    "TorrentAdded",
    "TorrentChecked",
    "TorrentCompleted",
    "TorrentError",
    "TorrentPaused",
    "TorrentRemoved",
    "TorrentResumed",
    "TorrentState",
    "TrackerError",
    "Unchoked",
]
