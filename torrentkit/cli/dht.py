"""``torrentkit dht``: a bare mainline DHT node, and small tools on top of one.

- ``torrentkit dht [--bind HOST] [--port N] [--bootstrap HOST:PORT]... [--state-dir DIR]``:
  runs a node until SIGTERM (exit 0) or Ctrl-C (130). First stdout line ``listening on
  HOST:PORT``; then its routing table live on a terminal (rich), a status line every few
  seconds elsewhere, or with ``--json`` a ``table`` object per interval (``nodes``, ``good``,
  ``buckets``, ``stored_peers``, ``stored_items``, ``received``, ``sent``, ``non_krpc``,
  ``rows`` [{bucket, id, addr, state, last_seen}]).
- ``torrentkit dht get-peers INFO_HASH``: bootstrap, one ``get_peers`` lookup, print the peers
  found (one ``HOST:PORT`` a line, or one JSON object with ``--json``); exit 1 when none.
- ``torrentkit dht put VALUE [--key FILE [--salt TEXT] [--seq N]]`` (BEP 44): store VALUE (a
  string) as an immutable item, or with ``--key`` as a mutable one signed with the ed25519
  key in FILE (64 hex digits of a private seed; made, mode 0600, when missing). Without
  ``--seq`` the next number after the one the DHT holds is used (with it as ``cas``). Prints
  the target (and the public key); exit 1 when no node stored it.
- ``torrentkit dht get TARGET [--salt TEXT]`` or ``dht get --public-key HEX [--salt TEXT]``:
  the item under TARGET, checked (an immutable value must hash to it; a mutable one must be
  signed by a key that, with the salt, hashes to it); prints the value; exit 1 when none.

``--bootstrap`` (repeatable) replaces the default routers (host names, never addresses), as
``--dht-bootstrap`` does on ``download`` and ``seed``; ``--no-bootstrap`` starts a new DHT
that others join through this node. The routing table is kept in the state folder like a
session's, in a file of its own (``dht-node.state``: a session running at the same time is
another node, with another id); ``--state-dir`` chooses the folder. The flags of the bare
node go before or after the action (``dht --port 7000 get-peers X`` = ``dht get-peers X --port
7000``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from torrentkit import bencoding
from torrentkit.cli.chord_cli import parse_bootstrap
from torrentkit.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    JobFailed,
    UsageError,
    emit_json,
    safe_text,
)
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.net import TrioNetwork
from torrentkit.settings import DEFAULT_DHT_ROUTERS, default_state_dir

if TYPE_CHECKING:
    from torrentkit.dht.discovery import DhtNetwork

#: Its own routing table file: a session running beside it (``dht.state``) has another node id.
STATE_FILE = "dht-node.state"
#: Seconds between two table updates (live view, status line, JSON object).
REFRESH = 2.0
STATUS_EVERY = 10.0
DEFAULT_LOOKUP_TIMEOUT = 30.0


def _node_flags(p: argparse.ArgumentParser, *, top: bool) -> None:
    """The node's flags; on an action's parser their defaults are suppressed so that values
    given before the action are kept."""

    def d(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    p.add_argument("--bind", default=d("0.0.0.0"), metavar="HOST", help="UDP address")
    p.add_argument("--port", type=int, default=d(0), metavar="N", help="UDP port (0 = any)")
    p.add_argument(
        "--bootstrap",
        action="append",
        default=d([]),
        metavar="HOST:PORT",
        help="bootstrap through this node (repeatable; replaces the default routers)",
    )
    p.add_argument(
        "--no-bootstrap",
        action="store_true",
        default=d(False),
        help="bootstrap through nobody: the first node of a new DHT (others join through it)",
    )
    p.add_argument("--state-dir", default=d(None), metavar="DIR", help="routing table folder")
    p.add_argument("--json", action="store_true", default=d(False), help="JSON on stdout")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dht",
        help="run a bare mainline DHT node; get-peers, put, get",
        description="Without an ACTION: run a bare mainline DHT node until stopped, showing "
        "its routing table. With one: a one-shot tool on a node of its own.",
    )
    _node_flags(p, top=True)
    p.add_argument("--no-ui", action="store_true", help="plain status lines even on a TTY")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=False)
    g = actions.add_parser("get-peers", help="look an info-hash up and print its peers")
    g.add_argument("info_hash", metavar="INFO_HASH", help="40 hex (or 32 base32) characters")
    g.add_argument(
        "--timeout", type=float, default=DEFAULT_LOOKUP_TIMEOUT, metavar="S", help="give up after S"
    )
    _node_flags(g, top=False)
    put = actions.add_parser("put", help="store a BEP 44 item (immutable, or mutable with --key)")
    put.add_argument("value", metavar="VALUE", help="the text to store (at most ~990 bytes)")
    put.add_argument("--key", metavar="FILE", help="mutable: the ed25519 private seed's file")
    put.add_argument("--salt", default="", metavar="TEXT", help="mutable: the salt (<= 64 bytes)")
    put.add_argument("--seq", type=int, metavar="N", help="mutable: the sequence number")
    put.add_argument("--timeout", type=float, default=DEFAULT_LOOKUP_TIMEOUT, metavar="S")
    _node_flags(put, top=False)
    get = actions.add_parser("get", help="read a BEP 44 item")
    get.add_argument("target", nargs="?", metavar="TARGET", help="40 hex digits")
    get.add_argument("--public-key", metavar="HEX", help="mutable: the key (target from it)")
    get.add_argument("--salt", default="", metavar="TEXT", help="mutable: the salt")
    get.add_argument("--timeout", type=float, default=DEFAULT_LOOKUP_TIMEOUT, metavar="S")
    _node_flags(get, top=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise UsageError("--port: must be 0-65535")
    if args.no_bootstrap and args.bootstrap:
        raise UsageError("--no-bootstrap goes without --bootstrap")
    bootstrap = parse_bootstrap(args.bootstrap) if args.bootstrap else list(DEFAULT_DHT_ROUTERS)
    if args.no_bootstrap:
        bootstrap = []
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    if args.action == "get-peers":
        try:
            info_hash = InfoHash.from_text(args.info_hash)
        except ValueError as exc:
            raise UsageError(f"INFO_HASH: {exc}") from None
        if not args.timeout > 0:
            raise UsageError("--timeout: must be positive")
        return trio.run(_get_peers, args, bootstrap, state_dir, info_hash)
    if args.action in ("put", "get"):
        if not args.timeout > 0:
            raise UsageError("--timeout: must be positive")
        salt = args.salt.encode("utf-8")
        if len(salt) > 64:
            raise UsageError("--salt: at most 64 bytes")
        if args.action == "put":
            return trio.run(_put, args, bootstrap, state_dir, _put_item(args, salt))
        return trio.run(_get, args, bootstrap, state_dir, _get_target(args, salt), salt)
    return trio.run(_serve, args, bootstrap, state_dir)


async def _with_node(
    args: argparse.Namespace,
    bootstrap: Sequence[PeerAddr],
    state_dir: Path,
    body: Callable[[DhtNetwork], Any],
) -> int:
    from torrentkit.dht.discovery import open_dht

    network = TrioNetwork()
    try:
        endpoint = await network.bind_udp(args.bind, args.port)
    except OSError as exc:
        raise UsageError(
            f"cannot bind UDP {args.bind}:{args.port}: {exc.strerror or exc}"
        ) from None
    async with open_dht(
        network,
        args.bind,
        args.port,
        bootstrap=bootstrap,
        state_dir=state_dir,
        state_file=STATE_FILE,
        endpoint=endpoint,
    ) as net:
        result: int = await body(net)
        return result


async def _serve(args: argparse.Namespace, bootstrap: Sequence[PeerAddr], state_dir: Path) -> int:
    async def body(net: DhtNetwork) -> int:
        addr = net.address
        if args.json:
            emit_json({"event": "listening", "host": addr.host, "port": addr.port})
        else:
            sys.stdout.write(f"listening on {addr.host}:{addr.port}\n")
            sys.stdout.flush()
        ui = sys.stdout.isatty() and sys.stdin.isatty() and not args.json and not args.no_ui
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                if ui:
                    nursery.start_soon(_live, net)
                else:
                    nursery.start_soon(_report, net, args.json)
                async for signum in signals:
                    nursery.cancel_scope.cancel()
                    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_OK
        return EXIT_OK

    return await _with_node(args, bootstrap, state_dir, body)


def table_summary(net: DhtNetwork) -> dict[str, Any]:
    """The node's routing table for ``--json`` and the live view."""
    from torrentkit.dht.discovery import routing_table_rows

    now = trio.current_time()
    rows = routing_table_rows(net.node, now)
    return {
        "event": "table",
        "id": net.node.node_id.hex(),
        "nodes": len(rows),
        "good": sum(1 for r in rows if r["state"] == "good"),
        "buckets": len(net.node.table.buckets),
        "stored_peers": net.node.store.peer_count(),
        "stored_items": len(net.node.items),
        "received": net.node.stats.received,
        "sent": net.node.stats.sent,
        "non_krpc": net.driver.non_krpc,
        "rows": rows,
    }


async def _report(net: DhtNetwork, json_out: bool) -> None:
    start = trio.current_time()
    last_status = -STATUS_EVERY
    while True:
        summary = table_summary(net)
        t = round(trio.current_time() - start, 3)
        if json_out:
            emit_json({**summary, "t": t})
        elif t - last_status >= STATUS_EVERY:
            last_status = t
            sys.stderr.write(
                f"dht: {summary['nodes']} nodes ({summary['good']} good) in "
                f"{summary['buckets']} buckets, {summary['stored_peers']} peers stored\n"
            )
            sys.stderr.flush()
        await trio.sleep(REFRESH)


async def _live(net: DhtNetwork) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    def render() -> Table:
        summary = table_summary(net)
        table = Table(
            title=f"DHT node {summary['id'][:16]}... on {net.address.host}:{net.address.port}: "
            f"{summary['nodes']} nodes ({summary['good']} good), {summary['buckets']} buckets, "
            f"{summary['stored_peers']} peers and {summary['stored_items']} items stored, "
            f"{summary['received']} datagrams in ({summary['non_krpc']} not KRPC), "
            f"{summary['sent']} out"
        )
        for column in ("bucket", "node id", "address", "state", "last seen (s)"):
            table.add_column(column)
        for row in summary["rows"]:
            table.add_row(
                str(row["bucket"]), row["id"], row["addr"], row["state"], str(row["last_seen"])
            )
        return table

    with Live(render(), console=Console(), auto_refresh=False) as live:
        while True:
            await trio.sleep(REFRESH)
            live.update(render(), refresh=True)


async def _get_peers(
    args: argparse.Namespace, bootstrap: Sequence[PeerAddr], state_dir: Path, info_hash: InfoHash
) -> int:
    from torrentkit.discovery.base import NetworkError

    async def body(net: DhtNetwork) -> int:
        with trio.move_on_after(args.timeout) as scope:
            try:
                await net.join()
            except NetworkError as exc:
                raise JobFailed(str(exc)) from None
            done = await net.driver.get_peers(bytes(info_hash))
        if scope.cancelled_caught:
            raise JobFailed(f"dht: no answer within {args.timeout:g} s")
        peers = [f"{p.host}:{p.port}" for p in done.peers]
        if args.json:
            emit_json(
                {
                    "info_hash": info_hash.hex(),
                    "peers": peers,
                    "hops": done.hops,
                    "queries": done.queries,
                }
            )
        else:
            for p in peers:
                sys.stdout.write(p + "\n")
            sys.stdout.flush()
        if not peers:
            sys.stderr.write(f"dht: no peers for {info_hash.hex()}\n")
            return EXIT_FAILED
        return EXIT_OK

    return await _with_node(args, bootstrap, state_dir, body)


# ------------------------------------------------------------------------------ BEP 44


@dataclass(frozen=True, slots=True)
class _PutJob:
    value: bytes
    seed: bytes | None
    salt: bytes
    seq: int | None


def _put_item(args: argparse.Namespace, salt: bytes) -> _PutJob:
    from torrentkit.dht import items

    value = args.value.encode("utf-8")
    if len(bencoding.encode(value)) > items.MAX_VALUE_SIZE:
        raise UsageError(f"VALUE: at most {items.MAX_VALUE_SIZE} bytes bencoded")
    if args.key is None:
        if salt or args.seq is not None:
            raise UsageError("--salt and --seq go with --key (a mutable item)")
        return _PutJob(value, None, b"", None)
    if args.seq is not None and not 0 <= args.seq < 2**63:
        raise UsageError("--seq: must be 0..2**63-1")
    return _PutJob(value, _load_or_make_key(Path(args.key)), salt, args.seq)


def _load_or_make_key(path: Path) -> bytes:
    """The 32-byte ed25519 seed in ``path`` (64 hex digits), made when the file is missing."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        seed = os.urandom(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(seed.hex() + "\n")
        except OSError as exc:
            raise UsageError(f"--key: cannot create {path}: {exc.strerror or exc}") from None
        return seed
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--key: cannot read {path}: {exc}") from None
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise UsageError(f"--key: {path} must hold 64 hex digits (an ed25519 private seed)")
    return seed


def _get_target(args: argparse.Namespace, salt: bytes) -> bytes:
    from torrentkit.dht import items

    if args.public_key is not None:
        if args.target is not None:
            raise UsageError("give TARGET or --public-key, not both")
        try:
            key = bytes.fromhex(args.public_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise UsageError("--public-key: 64 hex digits")
        return items.mutable_target(key, salt)
    if args.target is None:
        raise UsageError("give TARGET (40 hex digits) or --public-key")
    try:
        target = bytes.fromhex(args.target)
    except ValueError:
        target = b""
    if len(target) != 20:
        raise UsageError("TARGET: 40 hex digits")
    return target


async def _joined(net: DhtNetwork) -> None:
    from torrentkit.discovery.base import NetworkError

    try:
        await net.join()
    except NetworkError as exc:
        raise JobFailed(str(exc)) from None


async def _put(
    args: argparse.Namespace, bootstrap: Sequence[PeerAddr], state_dir: Path, job: _PutJob
) -> int:
    from torrentkit.dht import items

    async def body(net: DhtNetwork) -> int:
        with trio.move_on_after(args.timeout) as scope:
            await _joined(net)
            cas = None
            if job.seed is None:
                item = items.Item(value=bencoding.encode(job.value))
            else:
                seq = job.seq
                if seq is None:  # the next number after what the DHT holds
                    target = items.mutable_target(items.public_key_for(job.seed), job.salt)
                    found = await net.driver.get_item(target, salt=job.salt)
                    seq = found.item.seq + 1 if found.item is not None else 1
                    cas = found.item.seq if found.item is not None else None
                item = items.sign_mutable(job.seed, job.value, seq, job.salt)
            done = await net.driver.put_item(item, cas=cas)
        if scope.cancelled_caught:
            raise JobFailed(f"dht: no answer within {args.timeout:g} s")
        out: dict[str, Any] = {"target": item.target.hex(), "stored": done.stored}
        if item.public_key is not None:
            out.update(public_key=item.public_key.hex(), seq=item.seq)
        if args.json:
            emit_json(out)
        else:
            sys.stdout.write(" ".join(f"{k} {v}" for k, v in out.items()) + "\n")
            sys.stdout.flush()
        if not done.stored:
            codes = ", ".join(str(c) for c in done.errors) or "none answered"
            raise JobFailed(f"dht: no node stored the item (errors: {codes})")
        return EXIT_OK

    return await _with_node(args, bootstrap, state_dir, body)


async def _get(
    args: argparse.Namespace,
    bootstrap: Sequence[PeerAddr],
    state_dir: Path,
    target: bytes,
    salt: bytes,
) -> int:
    async def body(net: DhtNetwork) -> int:
        with trio.move_on_after(args.timeout) as scope:
            await _joined(net)
            found = await net.driver.get_item(target, salt=salt)
        if scope.cancelled_caught:
            raise JobFailed(f"dht: no answer within {args.timeout:g} s")
        item = found.item
        if item is None:
            raise JobFailed(f"dht: no item under {target.hex()}")
        value = item.decoded()
        if args.json:
            out: dict[str, Any] = {"target": target.hex(), "value": _jsonable(value)}
            if item.public_key is not None:
                out.update(public_key=item.public_key.hex(), seq=item.seq)
            emit_json(out)
        else:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
            sys.stdout.write(safe_text(text) + "\n")
            sys.stdout.flush()
        return EXIT_OK

    return await _with_node(args, bootstrap, state_dir, body)


def _jsonable(value: Any) -> Any:
    """A decoded bencode value for JSON: strings as text when they are UTF-8, else hex."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": value.hex()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k.decode("utf-8", "replace"): _jsonable(v) for k, v in value.items()}
    return value
