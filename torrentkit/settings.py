"""What a :func:`torrentkit.open_session` is told: one frozen, validated settings object.

Every face (the CLI, the demo, a Python program) builds a :class:`Settings` and hands it to
the session; nothing else configures the engine. Bad values raise :class:`SettingsError`
(a ``ValueError``) with a one-line reason naming the field, which the CLI shows as a usage
error (exit 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from torrentkit.ids import PeerAddr
from torrentkit.net import Network

#: Default seconds between two periodic saves of a torrent's resume data.
RESUME_INTERVAL = 30.0


class SettingsError(ValueError):
    """A setting has a bad value; the message names it."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/torrentkit`` (default ``~/.local/state/torrentkit``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "torrentkit"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0 = any free port) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise SettingsError(f"listen: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) < 65536:
        raise SettingsError(f"listen: port must be 0-65535, got {port_text!r}")
    return host, int(port_text)


def parse_addresses(values: object, what: str) -> tuple[PeerAddr, ...]:
    """A sequence of ``HOST:PORT`` strings or :class:`PeerAddr` -> PeerAddr tuple."""
    if isinstance(values, str | bytes):
        raise SettingsError(f"{what}: expected a list of HOST:PORT, got one string")
    out: list[PeerAddr] = []
    for v in values:  # type: ignore[attr-defined]
        if isinstance(v, PeerAddr):
            out.append(v)
            continue
        try:
            out.append(PeerAddr.parse(str(v)))
        except ValueError as exc:
            raise SettingsError(f"{what}: {exc}") from None
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordSettings:
    """Join a Chord ring as a member, on the listen port's number over UDP."""

    #: Ring nodes to join through (``HOST:PORT``); none starts a new ring.
    bootstrap: tuple[PeerAddr, ...] = ()
    stabilize_interval: float = 5.0
    #: The address other ring nodes reach us at (needed when listening on 0.0.0.0).
    advertise: str | None = None
    #: Announce each torrent again this often (the ring keeps a value 30 minutes): a value
    #: that went astray while the ring was settling is back at its owner by then.
    announce_interval: float = 600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "bootstrap", parse_addresses(self.bootstrap, "chord bootstrap"))
        if not 0.05 <= self.stabilize_interval <= 600:
            raise SettingsError("chord stabilize_interval: must be 0.05-600 seconds")
        if not 1 <= self.announce_interval <= 1500:
            raise SettingsError("chord announce_interval: must be 1-1500 seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class NapsterSettings:
    """Publish our public torrents to a Napster-style index and ask it for holders."""

    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OverlaySettings:
    """Join a Gnutella (flooding) or KaZaA (supernode) overlay on the listen port."""

    kind: Literal["gnutella", "kazaa"]
    bootstrap: tuple[PeerAddr, ...] = ()
    supernode: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("gnutella", "kazaa"):
            raise SettingsError(f"overlay kind: gnutella or kazaa, got {self.kind!r}")
        object.__setattr__(self, "bootstrap", parse_addresses(self.bootstrap, "overlay bootstrap"))
        if self.supernode and self.kind != "kazaa":
            raise SettingsError("overlay supernode: only in a kazaa overlay")


#: The mainline DHT's well-known bootstrap routers (host names, resolved when the node
#: starts; never hard-coded addresses).
DEFAULT_DHT_ROUTERS: tuple[PeerAddr, ...] = (
    PeerAddr("router.bittorrent.com", 6881),
    PeerAddr("router.utorrent.com", 6881),
    PeerAddr("dht.transmissionbt.com", 6881),
    PeerAddr("dht.libtorrent.org", 25401),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtSettings:
    """Run a mainline DHT node (BEP 5) and find and announce public torrents through it."""

    #: Nodes to bootstrap through when the saved routing table does not suffice.
    bootstrap: tuple[PeerAddr, ...] = DEFAULT_DHT_ROUTERS
    #: UDP port; None: the listen port's number (TCP and UDP bound as a pair).
    port: int | None = None
    #: Keep the routing table in the state folder (``dht.state``) across runs.
    save_state: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "bootstrap", parse_addresses(self.bootstrap, "dht bootstrap"))
        if self.port is not None and not 0 <= self.port < 65536:
            raise SettingsError(f"dht port: must be 0-65535, got {self.port}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything a session is configured with. All fields have working defaults."""

    #: ``HOST:PORT`` to accept peers on (port 0: any free port; read it back from
    #: ``Session.address``).
    listen: str = "0.0.0.0:0"
    #: Resume data folder; None: ``$XDG_STATE_HOME/torrentkit``.
    state_dir: Path | None = None
    #: Read resume data at start (trust pieces whose files did not change) and save it
    #: periodically and at every stop.
    resume: bool = True
    resume_interval: float = RESUME_INTERVAL
    #: Session-wide limits in bytes/s (0 = unlimited).
    down_limit: int = 0
    up_limit: int = 0
    #: Per torrent: connected peers at most, upload slots, seconds between rechokes.
    max_peers: int = 50
    upload_slots: int = 4
    #: Optimistic unchoke slots (a turn is three rechokes); 0 with ``upload_slots`` 0: the
    #: session never uploads (a free rider, as the demo's).
    optimistic_slots: int = 1
    rechoke_interval: float = 10.0
    #: Announce to the trackers a torrent or magnet names.
    trackers: bool = True
    #: Fetch pieces from the HTTP(S) servers a torrent's ``url-list`` names (BEP 19).
    web_seeds: bool = True
    #: PEM certificates to trust for https (web seeds, trackers) beside the default CA
    #: bundle (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` replace that bundle, as in OpenSSL):
    #: a private CA or a self-signed server. Checked when the settings are made.
    ca_file: Path | None = None
    #: Local Service Discovery (BEP 14): announce public torrents to the LAN by multicast
    #: and take the peers it announces. Off by default: multicast reaches every host.
    lsd: bool = False
    chord: ChordSettings | None = None
    napster: NapsterSettings | None = None
    overlay: OverlaySettings | None = None
    #: MSE/PE (docs/cli.md ``--encryption``): ``prefer`` (encrypted handshakes first, plaintext
    #: once per peer when refused), ``require`` (RC4 only, both ways) or ``disable``.
    encryption: Literal["prefer", "require", "disable"] = "prefer"
    #: The mainline DHT for public torrents (never private ones, BEP 27), on by default as
    #: in libtorrent and aria2; None: off.
    dht: DhtSettings | None = DhtSettings()
    #: Downloaded pieces in the OS page cache: ``drop`` (aligned pieces written around it
    #: with O_DIRECT, the rest written back at once and released a few pieces later: a
    #: download holds a few MiB of page cache, not its size, and costs less kernel CPU;
    #: uploads of such pieces read the disk) or ``keep`` (the OS decides, as libtorrent's
    #: default ``enable_os_cache``). See docs/cli.md ``--page-cache``, issue 15.
    page_cache: Literal["drop", "keep"] = "drop"
    #: 20 bytes; None: a fresh ``-TK....-`` id.
    peer_id: bytes | None = None
    #: Advanced: the transport (simulations pass the in-memory network).
    network: Network | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        if self.state_dir is not None and not isinstance(self.state_dir, Path):
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", Path(self.ca_file))
            import ssl  # only here: the CA file is loaded into an empty context to check it

            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=self.ca_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise SettingsError(f"ca_file: {self.ca_file}: {reason}") from None
        for name in ("down_limit", "up_limit"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name}: must be >= 0 (0 = unlimited)")
        if not 1 <= self.max_peers <= 10_000:
            raise SettingsError("max_peers: must be 1-10000")
        if not 0 <= self.upload_slots <= 1000:
            raise SettingsError("upload_slots: must be 0-1000")
        if not 0 <= self.optimistic_slots <= 100:
            raise SettingsError("optimistic_slots: must be 0-100")
        if not 0.05 <= self.rechoke_interval <= 600:
            raise SettingsError("rechoke_interval: must be 0.05-600 seconds")
        if not self.resume_interval > 0:
            raise SettingsError("resume_interval: must be positive")
        if self.encryption not in ("prefer", "require", "disable"):
            raise SettingsError(f"encryption: prefer, require or disable, got {self.encryption!r}")
        if self.page_cache not in ("drop", "keep"):
            raise SettingsError(f"page_cache: drop or keep, got {self.page_cache!r}")
        if self.peer_id is not None and len(self.peer_id) != 20:
            raise SettingsError("peer_id: must be 20 bytes")

    @property
    def bind(self) -> tuple[str, int]:
        """``listen`` as (host, port)."""
        return parse_listen(self.listen)

    @property
    def resolved_state_dir(self) -> Path:
        """``state_dir``, or the default state folder when it is None."""
        return self.state_dir if self.state_dir is not None else default_state_dir()
