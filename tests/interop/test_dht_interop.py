"""Mainline DHT interop on loopback (docs/interop.md, "A DHT on loopback"): libtorrent's DHT
nodes and aria2c's route through ours, find our announces, and are found by us.

Each swarm has a third node as its router (libtorrent's, or a bare one of ours for aria2c):
a node never answers ``get_peers`` with its own announce, so two nodes alone cannot find
each other's torrents -- as in the real DHT, the announce is stored by the nodes closest to
the info-hash. Every libtorrent session here has DHT on only for itself on 127.0.0.1, with
its public bootstrap routers replaced by nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import libtorrent as lt
import trio

import torrentkit
from tests.conftest import require_binary
from tests.interop.peers import (
    ARIA2_OFF,
    LOOPBACK,
    free_port,
    libtorrent_session,
    lt_port,
    make_payload,
    stop_process,
)
from torrentkit.dht import items
from torrentkit.dht.discovery import DhtNetwork, open_dht
from torrentkit.ids import PeerAddr
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent
from torrentkit.net import TrioNetwork
from torrentkit.settings import DhtSettings

#: libtorrent's DHT on loopback: no public routers; several nodes may share 127.0.0.1; its
#: per-IP rate limit (5/s, then a 5-minute ban) raised, since every node here is 127.0.0.1.
LT_DHT: dict[str, Any] = {
    "enable_dht": True,
    "dht_bootstrap_nodes": "",
    "dht_restrict_routing_ips": False,
    "dht_restrict_search_ips": False,
    "dht_block_ratelimit": 10_000,
    "dht_enforce_node_id": False,
}


@contextmanager
def lt_dht_node(
    *, router: int | None = None, metadata: bool = False, **settings: Any
) -> Iterator[Any]:
    """A libtorrent session whose DHT node runs on its listen port (UDP), joined through
    ``router`` (a port on 127.0.0.1) when given."""
    with libtorrent_session(**LT_DHT, **settings) as ses:
        if metadata:
            ses.add_extension("ut_metadata")
        lt_port(ses)
        if router is not None:
            ses.add_dht_node((LOOPBACK, router))
        yield ses


def our_settings(state: Path, router: int) -> torrentkit.Settings:
    return torrentkit.Settings(
        listen=f"{LOOPBACK}:0",
        state_dir=state,
        dht=DhtSettings(bootstrap=[f"{LOOPBACK}:{router}"]),
    )


def swarm_payload(tmp_path: Path) -> tuple[Path, bytes, str]:
    data = make_payload(tmp_path / "seed" / "film.bin", 400 * 1024 + 7)
    raw = make_torrent(data, piece_length=64 * 1024)  # no trackers
    return data, raw, bytes(parse_torrent(raw).info_hash).hex()


async def test_our_node_bootstraps_from_a_libtorrent_node(tmp_path: Path) -> None:
    with lt_dht_node() as router:
        port = lt_port(router)
        with trio.fail_after(30):
            async with open_dht(
                TrioNetwork(), LOOPBACK, 0, bootstrap=[PeerAddr(LOOPBACK, port)]
            ) as node:
                await node.join()
                assert PeerAddr(LOOPBACK, port) in [n.addr for n in node.node.known_nodes()]
                ping = await node.driver.ping(PeerAddr(LOOPBACK, port))
                assert ping.ok and ping.node_id is not None


async def test_trackerless_magnet_finds_a_libtorrent_seeder_through_the_dht(
    tmp_path: Path,
) -> None:
    data, raw, info_hash = swarm_payload(tmp_path)
    (tmp_path / "film.torrent").write_bytes(raw)
    with lt_dht_node() as router, lt_dht_node(router=lt_port(router), metadata=True) as seeder:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(str(tmp_path / "film.torrent"))
        atp.save_path = str(data.parent)
        atp.flags = lt.torrent_flags.seed_mode  # DHT on for this torrent: it announces
        handle = seeder.add_torrent(atp)
        with trio.fail_after(60):
            async with torrentkit.open_session(
                our_settings(tmp_path / "state", lt_port(router))
            ) as session:
                assert session.dht is not None
                await session.dht.first_join.wait()
                handle.force_dht_announce()
                ours = await session.add(f"magnet:?xt=urn:btih:{info_hash}", tmp_path / "down")
                await ours.wait_complete()
    assert (tmp_path / "down" / "film.bin").read_bytes() == data.read_bytes()


async def test_libtorrent_magnet_finds_our_seeder_through_the_dht(tmp_path: Path) -> None:
    data, raw, info_hash = swarm_payload(tmp_path)
    with lt_dht_node() as router, lt_dht_node(router=lt_port(router), metadata=True) as leech:
        with trio.fail_after(60):
            async with torrentkit.open_session(
                our_settings(tmp_path / "state", lt_port(router))
            ) as session:
                await (await session.add(raw, data.parent)).wait_complete()
                assert session.dht is not None
                while not session.dht.announces:
                    await trio.sleep(0.05)
                atp = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{info_hash}")
                atp.save_path = str(tmp_path / "down")
                theirs = leech.add_torrent(atp)
                while not theirs.status().is_seeding:
                    await trio.sleep(0.1)
    assert (tmp_path / "down" / "film.bin").read_bytes() == data.read_bytes()


async def test_aria2c_finds_our_announce(tmp_path: Path) -> None:
    exe = require_binary("aria2c")
    data, raw, info_hash = swarm_payload(tmp_path)
    down = tmp_path / "down"
    down.mkdir()
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            router: DhtNetwork = await stack.enter_async_context(
                open_dht(TrioNetwork(), LOOPBACK, 0, bootstrap=())
            )
            settings = our_settings(tmp_path / "state", router.address.port)
            session = await stack.enter_async_context(torrentkit.open_session(settings))
            await (await session.add(raw, data.parent)).wait_complete()
            assert session.dht is not None
            while not len(router.node.store):  # our seeder's announce reached the router
                await trio.sleep(0.05)
            cmd = [
                exe, "--no-conf=true", *ARIA2_OFF, f"--interface={LOOPBACK}",
                f"--listen-port={free_port()}", f"--dir={down}", "--seed-time=0",
                "--summary-interval=0", "--console-log-level=warn", "--bt-save-metadata=false",
                "--auto-save-interval=0", "--file-allocation=none", "--enable-dht=true",
                f"--dht-listen-port={free_port()}",
                f"--dht-entry-point={LOOPBACK}:{router.address.port}",
                f"--dht-file-path={tmp_path / 'aria2.dht'}", f"--stop-with-process={os.getpid()}",
                f"magnet:?xt=urn:btih:{info_hash}",
            ]  # fmt: skip
            with open(tmp_path / "aria2c.log", "wb") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                while proc.poll() is None:
                    await trio.sleep(0.1)
            finally:
                stop_process(proc)
            assert proc.returncode == 0, (tmp_path / "aria2c.log").read_text(errors="replace")
    assert (down / "film.bin").read_bytes() == data.read_bytes()


# ------------------------------------------------------------------------------ BEP 44


def lt_secret_key(seed: bytes) -> bytes:
    """libtorrent's 64-byte ed25519 secret key for a 32-byte seed: SHA-512 of the seed with
    the scalar clamped (its Python bindings take this form, not the seed)."""
    sk = bytearray(hashlib.sha512(seed).digest())
    sk[0] &= 248
    sk[31] &= 63
    sk[31] |= 64
    return bytes(sk)


async def lt_alert(ses: Any, kind: type, timeout: float = 30.0) -> Any:
    """The first alert of ``kind`` (polled; other alerts are dropped)."""
    with trio.fail_after(timeout):
        while True:
            for alert in ses.pop_alerts():
                if isinstance(alert, kind):
                    return alert
            await trio.sleep(0.05)


ITEM_ALERTS = lt.alert.category_t.dht_notification | lt.alert.category_t.dht_operation_notification


async def test_items_we_put_are_read_by_libtorrent(tmp_path: Path) -> None:
    seed = bytes(range(32))
    plain = items.make_immutable(b"immutable from torrentkit")
    signed = items.sign_mutable(seed, b"mutable from torrentkit", seq=3, salt=b"tk")
    with (
        lt_dht_node() as router,
        lt_dht_node(router=lt_port(router), alert_mask=ITEM_ALERTS) as reader,
    ):
        with trio.fail_after(60):
            async with open_dht(
                TrioNetwork(), LOOPBACK, 0, bootstrap=[PeerAddr(LOOPBACK, lt_port(router))]
            ) as node:
                await node.join()
                assert (await node.driver.put_item(plain)).stored >= 1
                assert (await node.driver.put_item(signed)).stored >= 1
                # (Asked again while libtorrent's node is still joining and finds nothing.)
                while True:
                    reader.dht_get_immutable_item(lt.sha1_hash(plain.target))
                    got = await lt_alert(reader, lt.dht_immutable_item_alert)
                    if got.item:
                        break
                    await trio.sleep(0.2)
                assert got.item == b"immutable from torrentkit"
                assert got.target.to_bytes() == plain.target
                while True:
                    reader.dht_get_mutable_item(signed.public_key, b"tk")
                    mutable = await lt_alert(reader, lt.dht_mutable_item_alert)
                    if mutable.item:
                        break
                    await trio.sleep(0.2)
                assert mutable.item == b"mutable from torrentkit"
                assert mutable.seq == 3 and mutable.salt == b"tk"
                assert bytes(mutable.signature) == signed.sig


async def test_items_libtorrent_puts_are_read_by_us(tmp_path: Path) -> None:
    seed = bytes(range(100, 132))
    public = items.public_key_for(seed)
    with (
        lt_dht_node() as router,
        lt_dht_node(router=lt_port(router), alert_mask=ITEM_ALERTS) as writer,
    ):
        with trio.fail_after(60):
            async with open_dht(
                TrioNetwork(), LOOPBACK, 0, bootstrap=[PeerAddr(LOOPBACK, lt_port(router))]
            ) as node:
                await node.join()
                writer.add_dht_node((LOOPBACK, node.address.port))
                # (Put again while libtorrent's node is still joining and stores nowhere.)
                while True:
                    target = writer.dht_put_immutable_item(b"immutable from libtorrent")
                    if (await lt_alert(writer, lt.dht_put_alert)).num_success:
                        break
                    await trio.sleep(0.2)
                found = await node.driver.get_item(target.to_bytes())
                assert found.item is not None
                assert found.item.decoded() == b"immutable from libtorrent"
                while True:
                    writer.dht_put_mutable_item(
                        lt_secret_key(seed), public, b"mutable from libtorrent", b"lt"
                    )
                    if (await lt_alert(writer, lt.dht_put_alert)).num_success:
                        break
                    await trio.sleep(0.2)
                found = await node.driver.get_item(items.mutable_target(public, b"lt"), salt=b"lt")
                assert found.item is not None and found.item.public_key == public
                assert found.item.decoded() == b"mutable from libtorrent"
                assert found.item.signature_valid() and found.item.seq >= 1


async def test_utp_syns_on_the_shared_port_are_dropped_and_libtorrent_falls_back_to_tcp(
    tmp_path: Path,
) -> None:
    """libtorrent tries uTP first: its SYNs reach our DHT socket (the listen port's number
    over UDP), are dropped on their first byte, and it downloads over TCP."""
    data, raw, _ = swarm_payload(tmp_path)
    (tmp_path / "film.torrent").write_bytes(raw)
    settings = torrentkit.Settings(
        listen=f"{LOOPBACK}:0", state_dir=tmp_path / "state", dht=DhtSettings(bootstrap=())
    )
    with libtorrent_session(enable_outgoing_utp=True) as leech:
        with trio.fail_after(90):
            async with torrentkit.open_session(settings) as session:
                await (await session.add(raw, data.parent)).wait_complete()
                assert session.dht is not None
                assert session.dht.address.port == session.address.port  # shared number
                atp = lt.add_torrent_params()
                atp.ti = lt.torrent_info(str(tmp_path / "film.torrent"))
                atp.save_path = str(tmp_path / "down")
                atp.flags = lt.torrent_flags.disable_dht | lt.torrent_flags.disable_pex
                theirs = leech.add_torrent(atp)
                theirs.connect_peer((LOOPBACK, session.address.port))
                while not theirs.status().is_seeding:
                    await trio.sleep(0.1)
                assert session.dht.driver.non_krpc >= 1
                assert session.dht.node.stats.received == 0  # none reached the node
    assert (tmp_path / "down" / "film.bin").read_bytes() == data.read_bytes()


async def test_port_messages_with_libtorrent(tmp_path: Path) -> None:
    """Both handshakes carry the DHT bit: libtorrent's PORT message gives us its DHT node,
    which we ping into our routing table; libtorrent's lookups then reach our node."""
    data, raw, _ = swarm_payload(tmp_path)
    (tmp_path / "film.torrent").write_bytes(raw)
    settings = torrentkit.Settings(
        listen=f"{LOOPBACK}:0", state_dir=tmp_path / "state", dht=DhtSettings(bootstrap=())
    )
    with lt_dht_node() as leech:
        with trio.fail_after(60):
            async with torrentkit.open_session(settings) as session:
                await (await session.add(raw, data.parent)).wait_complete()
                assert session.dht is not None
                atp = lt.add_torrent_params()
                atp.ti = lt.torrent_info(str(tmp_path / "film.torrent"))
                atp.save_path = str(tmp_path / "down")
                theirs = leech.add_torrent(atp)
                theirs.connect_peer((LOOPBACK, session.address.port))
                lt_node = PeerAddr(LOOPBACK, lt_port(leech))
                while lt_node not in [n.addr for n in session.dht.node.known_nodes()]:
                    await trio.sleep(0.05)
                while not theirs.status().is_seeding:
                    await trio.sleep(0.1)
                # libtorrent knows our node now (our PORT message, our ping): its lookups
                # reach us.
                before = session.dht.node.stats.queries_received
                leech.dht_get_peers(lt.sha1_hash(bytes(20)))
                while session.dht.node.stats.queries_received == before:
                    await trio.sleep(0.05)
