"""Peer ids: ours, and a client name read from someone else's.

Conventions seen on the wire (checked against the real clients installed here):

- Azureus style ``-CCVVVV-`` + 12 random bytes: two letters for the client, four version
  characters (``0-9``, then ``A-Z`` = 10..35, ``a-z`` = 36..61). libtorrent 2.1.1 sends
  ``-LT2110-`` (major, minor, tiny, tag), and torrentkit ``-TK0100-``. Transmission is the
  exception: ``-TR3000-`` is 3.00 (one digit major, two digit minor, then ``0`` for a release
  or ``Z``/``X`` for a development build) up to 3.x; from 4.0 it is major, minor, patch.
- aria2: ``A2-1-36-0-`` (``--peer-id-prefix``'s default in aria2 1.36.0).
- Mainline BitTorrent: ``M7-4-0--`` (``Mx-y-z--`` or ``Mx-yy-z-``).
- Shad0w style: one letter, up to five version characters padded with ``-``, then ``---``
  (``T03I-----`` is BitTornado 0.3.18).

:func:`client_name` returns None for anything it does not recognise. Its output is built only
from the names below and digits, so it is safe to print; the ``v`` string from a BEP 10
handshake is not, and must be escaped by whoever shows it.
"""

from __future__ import annotations

import random
import re
import secrets
import string
from typing import Final

import torrentkit

AZUREUS_CLIENTS: Final[dict[bytes, str]] = {
    b"AZ": "Azureus",
    b"BC": "BitComet",
    b"BI": "BiglyBT",
    b"BT": "BitTorrent",
    b"DE": "Deluge",
    b"FD": "Free Download Manager",
    b"KT": "KTorrent",
    b"LT": "libtorrent",
    b"lt": "libTorrent (rakshasa)",
    b"PI": "PicoTorrent",
    b"qB": "qBittorrent",
    b"TK": "torrentkit",
    b"TR": "Transmission",
    b"UM": "µTorrent Mac",
    b"UT": "µTorrent",
    b"UW": "µTorrent Web",
    b"WD": "WebTorrent Desktop",
    b"WW": "WebTorrent",
    b"XL": "Xunlei",
}

SHADOW_CLIENTS: Final[dict[int, str]] = {
    ord("A"): "ABC",
    ord("O"): "Osprey",
    ord("Q"): "BTQueue",
    ord("R"): "Tribler",
    ord("S"): "Shad0w",
    ord("T"): "BitTornado",
    ord("U"): "UPnP NAT Bit Torrent",
}

_DIGITS: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SHADOW_DIGITS: Final = _DIGITS + ".-"

_AZUREUS: Final = re.compile(rb"-([A-Za-z]{2})([0-9A-Za-z]{4})-")
_ARIA2: Final = re.compile(rb"A2-(\d{1,3})-(\d{1,3})-(\d{1,3})-")
_MAINLINE: Final = re.compile(rb"M(\d)-(\d{1,2})-(\d)-")
_SHADOW: Final = re.compile(rb"([A-Z])([0-9A-Za-z.]{1,5})-*---")


def _version_char(c: int) -> str:
    """One version character: ``0-9``, ``A-Z`` = 10..35, ``a-z`` = 36..61."""
    return str(_DIGITS.index(chr(c)))


def _azureus_version(code: bytes, v: bytes) -> str:
    if code == b"TR":
        if v[0] < ord("4"):
            if not v[1:3].isdigit():
                return _version_char(v[0])
            suffix = "+" if v[3:4] in (b"Z", b"X") else ""
            return f"{_version_char(v[0])}.{v[1:3].decode()}{suffix}"
        return ".".join(_version_char(c) for c in v[:3])
    parts = [_version_char(c) for c in v[:3]]
    if v[3:4] not in (b"0",) and v[3:4].isdigit():
        parts.append(v[3:4].decode())
    return ".".join(parts)


def client_name(peer_id: bytes) -> str | None:
    """A client name and version read from a peer id, e.g. ``"libtorrent 2.1.1"``."""
    if len(peer_id) != 20:
        return None
    m = _AZUREUS.match(peer_id)
    if m is not None:
        name = AZUREUS_CLIENTS.get(m.group(1))
        if name is None:
            return None
        return f"{name} {_azureus_version(m.group(1), m.group(2))}"
    m = _ARIA2.match(peer_id)
    if m is not None:
        return "aria2 " + ".".join(str(int(g)) for g in m.groups())
    m = _MAINLINE.match(peer_id)
    if m is not None:
        return "BitTorrent " + ".".join(str(int(g)) for g in m.groups())
    m = _SHADOW.match(peer_id)
    if m is not None and m.end() == 9:
        name = SHADOW_CLIENTS.get(m.group(1)[0])
        if name is None:
            return None
        version = ".".join(str(_SHADOW_DIGITS.index(chr(c))) for c in m.group(2))
        return f"{name} {version}"
    return None


def _version_prefix(version: str) -> bytes:
    major, minor, patch = (int(x) for x in [*version.split("."), "0", "0"][:3])
    return ("-TK" + "".join(_DIGITS[n] for n in (major, minor, patch)) + "0-").encode()


#: Our Azureus-style prefix, from the package version: ``-TK0100-`` for 0.1.0.
PEER_ID_PREFIX: Final = _version_prefix(torrentkit.__version__)

#: What we call ourselves where a name is sent (the BEP 10 handshake's ``v``): the package
#: version, ``torrentkit 0.1.0``.
CLIENT_VERSION: Final = f"torrentkit {torrentkit.__version__}"


def generate_peer_id(rng: random.Random | None = None) -> bytes:
    """A fresh peer id: our prefix and 12 random letters and digits.

    Pass a seeded ``rng`` for reproducible simulations; the default uses ``secrets``.
    """
    alphabet = string.ascii_letters + string.digits
    n = 20 - len(PEER_ID_PREFIX)
    if rng is None:
        tail = "".join(secrets.choice(alphabet) for _ in range(n))
    else:
        tail = "".join(rng.choice(alphabet) for _ in range(n))
    return PEER_ID_PREFIX + tail.encode()
