"""Small validated value types: info-hashes, peer ids, peer addresses."""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import NamedTuple

from torrentkit.errors import LocalProtocolError

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_BASE32_32 = re.compile(r"[A-Za-z2-7]{32}")


class InfoHash(bytes):
    """A v1 info-hash: 20 bytes of SHA-1 over the info dictionary as it stands in the file."""

    __slots__ = ()

    def __new__(cls, value: bytes) -> InfoHash:
        if len(value) != 20:
            raise LocalProtocolError(f"an info-hash is 20 bytes, got {len(value)}")
        return super().__new__(cls, value)

    @classmethod
    def from_text(cls, text: str) -> InfoHash:
        """Parse 40 hex digits or 32 base32 characters (both appear in magnet links)."""
        # Check the characters first: bytes.fromhex skips whitespace and b32decode takes
        # '=' padding, either of which would yield fewer than 20 bytes.
        if _HEX40.fullmatch(text):
            return cls(bytes.fromhex(text))
        if _BASE32_32.fullmatch(text):
            return cls(base64.b32decode(text.upper()))
        raise ValueError(f"not an info-hash (40 hex or 32 base32 characters): {text[:64]!r}")

    def __repr__(self) -> str:
        return f"InfoHash({self.hex()})"


class PeerAddr(NamedTuple):
    """A peer's address: host (an IP literal or a name) and TCP/UDP port."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PeerAddr:
        """Parse ``HOST:PORT`` or ``[V6]:PORT``; raise ValueError with a short reason."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            ipaddress.IPv6Address(host)
        elif ":" in host:
            raise ValueError(f"write IPv6 addresses as [ADDR]:PORT, got {text!r}")
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise ValueError(f"port must be 1-65535, got {port_text!r}")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"
