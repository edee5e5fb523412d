"""Client names from peer ids, and our own peer id."""

from __future__ import annotations

import random

import pytest

import torrentkit
from torrentkit.wire.peer_id import (
    CLIENT_VERSION,
    PEER_ID_PREFIX,
    _version_prefix,
    client_name,
    generate_peer_id,
)

R = b"0123456789ab"  # 12 "random" bytes


@pytest.mark.parametrize(
    ("peer_id", "name"),
    [
        (b"-LT2110-" + R, "libtorrent 2.1.1"),  # libtorrent 2.1.1.0's own fingerprint
        (b"-LT20A0-" + R, "libtorrent 2.0.10"),  # letters continue the digits
        (b"-LT1217-" + R, "libtorrent 1.2.1.7"),
        (b"-TR3000-" + R, "Transmission 3.00"),  # Debian's transmission-cli 3.00
        (b"-TR2940-" + R, "Transmission 2.94"),
        (b"-TR300Z-" + R, "Transmission 3.00+"),  # a development build
        (b"-TR4060-" + R, "Transmission 4.0.6"),
        (b"A2-1-36-0-" + R[:10], "aria2 1.36.0"),  # aria2c 1.36.0's --peer-id-prefix default
        (b"-TK0100-" + R, "torrentkit 0.1.0"),
        (b"-qB4620-" + R, "qBittorrent 4.6.2"),
        (b"-DE13F0-" + R, "Deluge 1.3.15"),
        (b"-UT355W-" + R, "µTorrent 3.5.5"),
        (b"-lt0D80-" + R, "libTorrent (rakshasa) 0.13.8"),
        (b"M7-4-0--" + R, "BitTorrent 7.4.0"),
        (b"M4-20-8-" + R, "BitTorrent 4.20.8"),
        (b"T03I-----" + R[:11], "BitTornado 0.3.18"),
        (b"S58B-----" + R[:11], "Shad0w 5.8.11"),
    ],
)
def test_client_name(peer_id: bytes, name: str) -> None:
    assert len(peer_id) == 20
    assert client_name(peer_id) == name


@pytest.mark.parametrize(
    "peer_id",
    [
        b"-ZZ1000-" + R,  # unknown two-letter code
        b"-LT21\x1b0-" + R,  # control byte in the version
        b"\x1b[31m" + bytes(15),  # terminal escape
        bytes(20),
        b"-LT2110-",  # short
        b"X" * 20,
        b"exbc" + bytes(16),
    ],
)
def test_unrecognised_ids(peer_id: bytes) -> None:
    assert client_name(peer_id) is None


def test_generate_peer_id() -> None:
    assert torrentkit.__version__ == "0.1.0"
    assert PEER_ID_PREFIX == b"-TK0100-"
    ours = generate_peer_id()
    assert len(ours) == 20 and ours.startswith(b"-TK0100-") and ours.isascii()
    assert client_name(ours) == "torrentkit 0.1.0"
    assert generate_peer_id() != ours
    assert generate_peer_id(random.Random(1)) == generate_peer_id(random.Random(1))


def test_our_name_and_prefix_follow_the_package_version() -> None:
    # The v string we send and the name others read from our peer id agree.
    assert f"torrentkit {torrentkit.__version__}" == CLIENT_VERSION
    assert client_name(generate_peer_id()) == CLIENT_VERSION
    assert _version_prefix("1.12.3") == b"-TK1C30-"
    assert _version_prefix("2") == b"-TK2000-"
