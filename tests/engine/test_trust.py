"""Trust points and smart ban: only the peer whose blocks were wrong is banned."""

from __future__ import annotations

from torrentkit.engine.trust import BAN_THRESHOLD, Trust

B = 16384


def blocks(data: bytes, senders: list[str]) -> dict[int, tuple[str, bytes]]:
    return {i * B: (peer, data[i * B : (i + 1) * B]) for i, peer in enumerate(senders)}


GOOD = bytes(range(256)) * (4 * B // 256)  # a 4-block piece


def corrupt(data: bytes, block: int) -> bytes:
    bad = bytearray(data)
    bad[block * B] ^= 0xFF
    return bytes(bad)


def test_smart_ban_bans_only_the_liar() -> None:
    trust = Trust()
    # honest1 and honest2 sent blocks 0, 1, 3; the liar sent block 2, corrupted.
    failed = corrupt(GOOD, 2)
    assert trust.piece_failed(7, blocks(failed, ["honest1", "honest2", "liar", "honest1"])) == set()
    # Refetched from honest2 alone, the piece passes.
    banned = trust.piece_passed(7, GOOD, {i * B: "honest2" for i in range(4)}, B)
    assert banned == {"liar"}
    assert trust.is_banned("liar")
    assert not trust.is_banned("honest1") and not trust.is_banned("honest2")
    # Honest contributors got their -2 back; honest2 also earned +1 for the good piece.
    assert trust.points["honest1"] == 0
    assert trust.points["honest2"] == 1


def test_trust_points_ban_a_peer_that_keeps_failing() -> None:
    trust = Trust()
    newly: set[object] = set()
    rounds = 0
    while not newly:
        rounds += 1
        newly = trust.piece_failed(rounds, blocks(corrupt(GOOD, 0), ["bad"] * 4))
    assert newly == {"bad"}
    assert rounds == 4  # -2 per failure: -8 <= -7 after the fourth
    assert trust.points["bad"] <= BAN_THRESHOLD


def test_good_pieces_offset_failures() -> None:
    trust = Trust()
    for i in range(3):
        trust.piece_failed(100 + i, blocks(corrupt(GOOD, 1), ["p"] * 4))
        trust.piece_passed(200 + i, GOOD, {0: "p"}, B)
    assert not trust.is_banned("p")
    assert trust.points["p"] == -3


def test_same_ip_different_ports_are_different_peers() -> None:
    trust = Trust()
    liar = ("127.0.0.1", 6001)
    honest = ("127.0.0.1", 6002)
    trust.piece_failed(0, {0: (liar, corrupt(GOOD, 0)[:B]), B: (honest, GOOD[B : 2 * B])})
    assert trust.piece_passed(0, GOOD, {0: honest, B: honest}, B) == {liar}
    assert not trust.is_banned(honest)


def test_memory_is_bounded_under_a_flood_of_failures() -> None:
    trust = Trust()
    for index in range(600):
        for _ in range(6):
            trust.piece_failed(index, blocks(corrupt(GOOD, 0), ["x", "y", "z", "w"]))
    assert len(trust._failed) <= 256
    assert all(len(a) <= 4 for a in trust._failed.values())
