"""BEP 42: node ids tied to the external IP, with the BEP's test vectors."""

from __future__ import annotations

import random

import pytest

from torrentkit.dht.nodeid import crc32c, id_for_ip, id_matches_ip, is_exempt

# IP, rand, example node id (BEP 42's table).
VECTORS = [
    ("124.31.75.21", 1, "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
    ("21.75.31.124", 86, "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
    ("65.23.51.170", 22, "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
    ("84.124.73.14", 65, "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
    ("43.213.53.83", 90, "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
]


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize(("ip", "rand", "example"), VECTORS)
def test_vectors(ip: str, rand: int, example: str) -> None:
    expected = bytes.fromhex(example)
    assert id_matches_ip(expected, ip)
    made = id_for_ip(ip, random.Random(rand), rand=rand)
    # The first 21 bits and the last byte are fixed; the rest is random.
    assert made[:2] == expected[:2]
    assert made[2] & 0xF8 == expected[2] & 0xF8
    assert made[19] == rand
    assert id_matches_ip(made, ip)


@pytest.mark.parametrize(("ip", "rand", "example"), VECTORS)
def test_vector_rejected_for_other_ip(ip: str, rand: int, example: str) -> None:
    assert not id_matches_ip(bytes.fromhex(example), "8.8.4.4")
    wrong_r = bytearray(bytes.fromhex(example))
    wrong_r[19] ^= 0x04  # another r: another prefix
    assert not id_matches_ip(bytes(wrong_r), ip)


@pytest.mark.parametrize(
    "ip", ["10.1.2.3", "172.16.9.9", "172.31.0.1", "192.168.1.1", "169.254.3.3", "127.0.0.1"]
)
def test_private_and_loopback_exempt(ip: str) -> None:
    assert is_exempt(ip)
    assert id_matches_ip(b"\x00" * 20, ip)


def test_public_not_exempt() -> None:
    assert not is_exempt("172.32.0.1")
    assert not is_exempt("8.8.8.8")


def test_random_ips_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(200):
        ip = ".".join(str(rng.randrange(1, 224)) for _ in range(4))
        assert id_matches_ip(id_for_ip(ip, rng), ip)
    v6 = "2a00:1450:4001::1"
    assert not is_exempt(v6)
    assert id_matches_ip(id_for_ip(v6, rng), v6)
