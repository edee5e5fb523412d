"""Encrypted connections between engine sessions (MSE/PE, engine/encryption.py) on the
in-memory network: the policy matrix, the plaintext fallback remembered per peer, the
give-up when every --peer refuses us, and a session's listen port under hostile encryption
handshakes (docs/limits.md item 15): dropped within the time-out, never telling what it
serves."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from torrentkit.engine.encryption import (
    PLAIN_PEERS_MAX,
    REFUSALS_TO_GIVE_UP,
    PeerEncryption,
    RC4Stream,
    dial_peer,
)
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import HANDSHAKE_TIMEOUT, Torrent, TorrentOptions
from torrentkit.errors import HandshakeRefused
from torrentkit.events import Event as EngineEvent
from torrentkit.events import PeerConnected
from torrentkit.ids import PeerAddr
from torrentkit.net import Listener
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent
from torrentkit.wire import mse
from torrentkit.wire.codec import encode_handshake
from torrentkit.wire.connection import PeerConnection
from torrentkit.wire.events import Handshake
from torrentkit.wire.mse import CRYPTO_PLAINTEXT, CRYPTO_RC4, KEY_BYTES

SEED_HOST, LEECH_HOST, EVIL_HOST = "127.5.0.1", "127.5.0.2", "127.5.0.3"
INFO, PAYLOAD = make_torrent(random.Random(3), 96 * 1024, 16 * 1024)


async def session(
    nursery: trio.Nursery,
    net: SimNetwork,
    host: str,
    policy: str,
    seen: list[EngineEvent] | None = None,
) -> Session:
    s = Session(
        net.view(host),
        SessionOptions(bind=host, port=6881, encryption=policy),  # type: ignore[arg-type]
        rng=random.Random(host),
        on_event=None if seen is None else seen.append,
    )
    await nursery.start(s.run)
    return s


async def swarm(
    seed_policy: str, leech_policy: str, *, limit: float = 60, seen: list[EngineEvent] | None = None
) -> tuple[Torrent, list[type], float]:
    """A seeder and a leecher dialling it; the leecher's torrent (complete or failed), the
    stream types its links used, and when it ended. ``seen``: both sides' events."""
    net = SimNetwork(random.Random(4), latency=0.01)
    streams: list[type] = []
    with trio.fail_after(limit):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            net.set_upload_rate(SEED_HOST, 64 * 1024)  # a second or so: links to look at
            seeder = await session(nursery, net, SEED_HOST, seed_policy, seen)
            leecher = await session(nursery, net, LEECH_HOST, leech_policy, seen)
            await seeder.add_torrent(INFO, MemoryStorage(INFO, PAYLOAD))
            opts = TorrentOptions(encryption=leech_policy)  # type: ignore[arg-type]
            torrent = await leecher.add_torrent(INFO, MemoryStorage(INFO), opts)
            torrent.add_peers([seeder.address], "api")  # as --peer gives it
            while not torrent.is_complete and not torrent.failed.is_set():
                streams.extend(type(link.stream) for link in torrent.links)
                await trio.sleep(0.05)
            ended = trio.current_time()
            nursery.cancel_scope.cancel()
    return torrent, streams, ended


@pytest.mark.parametrize(
    ("seed", "leech", "kind"),
    [
        ("prefer", "prefer", "handshake"),  # encrypted handshake, plaintext after it
        ("require", "prefer", "rc4"),
        ("prefer", "require", "rc4"),
        ("require", "require", "rc4"),
        ("disable", "prefer", "none"),  # refused encrypted, fell back to plaintext
        ("prefer", "disable", "none"),
        ("disable", "disable", "none"),
    ],
)
async def test_policy_matrix_completes(
    autojump_clock: trio.testing.MockClock, seed: str, leech: str, kind: str
) -> None:
    seen: list[EngineEvent] = []
    torrent, streams, _ = await swarm(seed, leech, seen=seen)
    assert torrent.is_complete, torrent.error
    assert streams and all((s is RC4Stream) == (kind == "rc4") for s in streams)
    connected = [e for e in seen if isinstance(e, PeerConnected)]
    assert len(connected) >= 2  # each side's view of the link
    assert {e.encryption for e in connected} == {kind}


async def test_fallback_is_remembered(autojump_clock: trio.testing.MockClock) -> None:
    torrent, _, _ = await swarm("disable", "prefer")
    assert torrent.is_complete
    seeder = PeerAddr(SEED_HOST, 6881)
    assert not torrent.encryption.encrypt_first(seeder)  # next time: plaintext first


@pytest.mark.parametrize(("seed", "leech"), [("disable", "require"), ("require", "disable")])
async def test_every_peer_refuses_ends_the_download(
    autojump_clock: trio.testing.MockClock, seed: str, leech: str
) -> None:
    start = trio.current_time()
    torrent, streams, ended = await swarm(seed, leech)
    assert not streams and not torrent.is_complete
    assert torrent.error is not None and "every peer refused our handshake" in torrent.error
    assert ("encryption is required" if leech == "require" else "disabled") in torrent.error
    assert ended - start < 30


async def test_refusals_never_stop_a_torrent_that_has_its_data(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The give-up is for downloads only: a complete torrent that dials a peer refusing it
    (here: one that wants plaintext while we require RC4) keeps seeding."""
    net = SimNetwork(random.Random(11), latency=0.01)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            plain = await session(nursery, net, LEECH_HOST, "disable")
            ours = await session(nursery, net, SEED_HOST, "require")
            await plain.add_torrent(INFO, MemoryStorage(INFO))
            opts = TorrentOptions(encryption="require")
            seeding = await ours.add_torrent(INFO, MemoryStorage(INFO, PAYLOAD), opts)
            seeding.add_peers([plain.address], "api")
            await trio.sleep(60)  # several refused dials
            assert not seeding.failed.is_set() and seeding.error is None
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- hostile dialers


async def evil_exchange(
    payload: bytes, *, wait: float = 2 * HANDSHAKE_TIMEOUT
) -> tuple[bytes, float]:
    """Connect to a seeding session, send ``payload``, and read until it closes; what it
    sent and after how long."""
    net = SimNetwork(random.Random(7), latency=0.01)
    got = b""
    with trio.fail_after(wait + 10):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            seeder = await session(nursery, net, SEED_HOST, "prefer")
            await seeder.add_torrent(INFO, MemoryStorage(INFO, PAYLOAD))
            stream = await net.view(EVIL_HOST).connect_tcp(seeder.address)
            start = trio.current_time()
            await stream.send_all(payload)
            with trio.move_on_after(wait):
                while data := await stream.receive_some(65536):
                    got += data
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
    return got, took


@pytest.mark.parametrize("y", [0, 1, mse.P - 1])
async def test_degenerate_key_closed_without_answer(
    autojump_clock: trio.testing.MockClock, y: int
) -> None:
    got, took = await evil_exchange(y.to_bytes(KEY_BYTES, "big") + bytes(100))
    assert got == b"" and took < 1


XA = 0x1234567890ABCDEF1234567890ABCDEF12345678


def step3(yb: bytes, skey: bytes, *, provide: int = CRYPTO_RC4, pad_c: int = 0) -> bytes:
    secret = pow(int.from_bytes(yb, "big"), XA, mse.P).to_bytes(KEY_BYTES, "big")
    enc = mse.RC4(mse.sha1(b"keyA", secret, skey))
    req2, req3 = mse.sha1(b"req2", skey), mse.sha1(b"req3", secret)
    ia = encode_handshake(Handshake(info_hash=skey, peer_id=b"-XX0001-" + bytes(12)))
    return (
        mse.sha1(b"req1", secret)
        + bytes(x ^ y for x, y in zip(req2, req3, strict=True))
        + enc.crypt(
            mse.VC
            + provide.to_bytes(4, "big")
            + pad_c.to_bytes(2, "big")
            + bytes(pad_c)
            + len(ia).to_bytes(2, "big")
            + ia
        )
    )


async def evil_two_steps(make_step3: object) -> tuple[bytes, bytes, float]:
    """Send a good Ya, read Yb, then send what ``make_step3(yb)`` makes: (Yb + PadB, what came
    after, how long until the session closed)."""
    net = SimNetwork(random.Random(8), latency=0.01)
    first = later = b""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            seeder = await session(nursery, net, SEED_HOST, "prefer")
            await seeder.add_torrent(INFO, MemoryStorage(INFO, PAYLOAD))
            stream = await net.view(EVIL_HOST).connect_tcp(seeder.address)
            await stream.send_all(mse.public_key(XA))
            while len(first) < KEY_BYTES:
                first += await stream.receive_some(65536)
            await trio.sleep(0.5)  # PadB arrives
            with trio.move_on_after(0):
                first += await stream.receive_some(65536)
            start = trio.current_time()
            assert callable(make_step3)
            await stream.send_all(make_step3(first[:KEY_BYTES]))
            with trio.move_on_after(2 * HANDSHAKE_TIMEOUT):
                while data := await stream.receive_some(65536):
                    later += data
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
    return first, later, took


async def test_good_step3_is_answered(autojump_clock: trio.testing.MockClock) -> None:
    """The hand-made step 3 below is right: with our torrent's hash the session answers."""
    _, later, _ = await evil_two_steps(lambda yb: step3(yb, INFO.info_hash))
    assert len(later) >= 8 + 4 + 2 + 68  # ENCRYPT(VC, select, len(PadD)) + a handshake


async def test_unknown_req2_dropped_without_a_word(autojump_clock: trio.testing.MockClock) -> None:
    first, later, took = await evil_two_steps(lambda yb: step3(yb, bytes(range(20))))
    assert KEY_BYTES <= len(first) <= KEY_BYTES + mse.MAX_PAD
    assert later == b"" and took < 1  # nothing after Yb + PadB: no VC, no hint


async def test_pad_c_over_512_dropped(autojump_clock: trio.testing.MockClock) -> None:
    _, later, took = await evil_two_steps(lambda yb: step3(yb, INFO.info_hash, pad_c=513))
    assert later == b"" and took < 1


async def test_plaintext_only_provide_gets_plaintext(
    autojump_clock: trio.testing.MockClock,
) -> None:
    _, later, _ = await evil_two_steps(
        lambda yb: step3(yb, INFO.info_hash, provide=CRYPTO_PLAINTEXT)
    )
    # ENCRYPT(VC, select=plaintext, 0) then the session's handshake in the clear.
    assert later[14:34] == b"\x13BitTorrent protocol"


async def test_never_synchronising_dropped_at_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got, took = await evil_exchange(mse.public_key(XA) + bytes(mse.REQ1_WINDOW + 100))
    assert len(got) <= KEY_BYTES + mse.MAX_PAD and took < 1  # Yb + PadB, then closed


async def test_stalled_handshake_dropped_at_the_time_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got, took = await evil_exchange(mse.public_key(XA) + bytes(50))  # then silence
    assert len(got) <= KEY_BYTES + mse.MAX_PAD
    assert HANDSHAKE_TIMEOUT - 0.1 <= took < HANDSHAKE_TIMEOUT + 1


async def test_dribbled_handshake_dropped_at_the_time_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One byte a second never finishes: the one time-out covers the whole exchange."""
    net = SimNetwork(random.Random(9), latency=0.01)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            seeder = await session(nursery, net, SEED_HOST, "prefer")
            stream = await net.view(EVIL_HOST).connect_tcp(seeder.address)
            start = trio.current_time()
            closed = trio.Event()

            async def read() -> None:
                while await stream.receive_some(65536):
                    pass
                closed.set()

            nursery.start_soon(read)
            key = mse.public_key(XA)
            for i in range(KEY_BYTES):
                if closed.is_set():
                    break
                await stream.send_all(key[i : i + 1])
                await trio.sleep(1)
            await closed.wait()
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert HANDSHAKE_TIMEOUT - 0.1 <= took < HANDSHAKE_TIMEOUT + 1.5


def test_plaintext_memory_flips_and_is_bounded() -> None:
    enc = PeerEncryption("prefer")
    a = PeerAddr("127.5.1.1", 1)
    assert enc.encrypt_first(a)
    enc.flip(a)  # refused encrypted: plaintext first next time
    assert not enc.encrypt_first(a)
    enc.flip(a)  # refused plaintext too: back to encrypted first
    assert enc.encrypt_first(a)
    for port in range(1, PLAIN_PEERS_MAX + 2):
        enc.flip(PeerAddr("127.5.1.2", port))
    assert enc.encrypt_first(PeerAddr("127.5.1.2", 1))  # the oldest was forgotten
    assert not enc.encrypt_first(PeerAddr("127.5.1.2", PLAIN_PEERS_MAX + 1))
    assert PeerEncryption("require").encrypt_first(a)
    assert not PeerEncryption("disable").encrypt_first(a)


def test_all_refused_needs_every_address_twice() -> None:
    enc = PeerEncryption("require")
    a, b = PeerAddr("127.5.1.1", 1), PeerAddr("127.5.1.1", 2)
    assert enc.all_refused([]) is None
    for _ in range(REFUSALS_TO_GIVE_UP):
        enc.refused(a, "a refused")
    assert enc.all_refused([a, b]) is None  # b has not refused yet
    for _ in range(REFUSALS_TO_GIVE_UP):
        enc.refused(b, "b refused")
    why = enc.all_refused([a, b])
    assert why is not None and why.endswith("last: b refused")
    enc.connected(a)  # a connection resets a's count
    assert enc.all_refused([a, b]) is None


# ---------------------------------------------------------------- a hostile listener


async def dial_a_bad_key_answerer(policy: str) -> tuple[object, list[str]]:
    """``dial_peer`` (policy ``policy``) to a listener that answers an encrypted handshake
    with a degenerate key (the initiator's MSE raises MSEError) and a plaintext one with a
    good handshake: what dial_peer returned or raised, and what each connection began as."""
    net = SimNetwork(random.Random(12), latency=0.01)
    kinds: list[str] = []
    ours = Handshake(info_hash=INFO.info_hash, peer_id=b"-TK0001-" + bytes(12))

    async def answer(listener: Listener) -> None:
        while True:
            stream, _ = await listener.accept()
            first = await stream.receive_some(68)
            if first.startswith(encode_handshake(ours)[:20]):
                kinds.append("plaintext")
                await stream.send_all(
                    encode_handshake(
                        Handshake(info_hash=INFO.info_hash, peer_id=b"-XX" + bytes(17))
                    )
                )
            else:
                kinds.append("encrypted")
                await stream.send_all((1).to_bytes(KEY_BYTES, "big"))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            listener = await net.view(EVIL_HOST).listen_tcp(EVIL_HOST, 6881)
            nursery.start_soon(answer, listener)
            result: object
            try:
                result = await dial_peer(
                    net.view(LEECH_HOST),
                    PeerAddr(EVIL_HOST, 6881),
                    lambda: PeerConnection(
                        initiator=True, info_hash=INFO.info_hash, our_peer_id=ours.peer_id
                    ),
                    ours,
                    PeerEncryption(policy),  # type: ignore[arg-type]
                    connect_timeout=5,
                    handshake_timeout=5,
                )
            except HandshakeRefused as exc:
                result = exc
            nursery.cancel_scope.cancel()
    return result, kinds


async def test_a_broken_encryption_exchange_is_a_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """MSEError from our side of the exchange counts as the peer refusing our encrypted
    handshake: ``prefer`` dials again in plaintext, ``require`` gives up naming why."""
    result, kinds = await dial_a_bad_key_answerer("prefer")
    assert kinds == ["encrypted", "plaintext"]
    assert isinstance(result, tuple) and result[3] == "none"
    result, kinds = await dial_a_bad_key_answerer("require")
    assert kinds == ["encrypted"]
    assert isinstance(result, HandshakeRefused) and "refused our encrypted handshake" in str(result)
    assert isinstance(result.__cause__, mse.MSEError)


@pytest.mark.parametrize(
    ("policy", "provide"),
    [
        ("prefer", CRYPTO_RC4 | CRYPTO_PLAINTEXT),
        ("require", CRYPTO_RC4),
        ("disable", CRYPTO_RC4 | CRYPTO_PLAINTEXT),  # never sent: disable never encrypts
    ],
)
def test_crypto_provide_follows_the_policy(policy: str, provide: int) -> None:
    assert PeerEncryption(policy).provide == provide  # type: ignore[arg-type]
