"""A mainline DHT node (BEP 5, 42, 43, 51), sans-IO: datagrams and ``now`` in; datagrams,
events and a timer deadline out. No sockets, no clock.

Driving it (the trio driver, a simulation, a test)::

    node = DhtNode(rng=random.Random(), now=now, config=DhtConfig(...))
    node.bootstrap([PeerAddr("router.example", 6881)], now)   # addresses, resolved by you
    loop:
        node.receive_datagram(data, src, now)      # every UDP datagram that arrived
        node.handle_timers(now)                    # whenever now >= node.next_deadline()
        for data, dst in node.datagrams_to_send(): send it
        for event in node.events(): deliver it     # LookupDone, PeersFound, ...

- :meth:`DhtNode.receive_datagram` takes any bytes: non-KRPC data (uTP on the shared port),
  malformed, oversized or rate-limited datagrams are dropped; it never raises for remote
  input. :meth:`DhtNode.next_deadline` is the time the node next needs
  :meth:`DhtNode.handle_timers` (RPC timeouts, token rotation, refresh, expiry).
- Operations return an ``op`` number; their outcome arrives as an event with that ``op``:
  :meth:`ping` -> :class:`PingDone`; :meth:`find_node` and :meth:`bootstrap` ->
  :class:`LookupDone`; :meth:`get_peers` -> :class:`PeersFound` (as values arrive, new
  peers only) then :class:`GetPeersDone`; :meth:`announce_peer` -> the same get_peers events,
  then :class:`AnnounceDone` once the closest nodes acknowledged (or timed out);
  :meth:`sample_infohashes` -> :class:`SampleDone`; BEP 44 :meth:`get` -> :class:`ItemFound`
  and :meth:`put` (an :class:`~torrentkit.dht.items.Item` from ``items.make_immutable`` or
  ``items.sign_mutable``) -> :class:`PutDone`. :meth:`add_node` pings an address (a node
  learnt from a BitTorrent ``port`` message) and adds it to the table if it answers.
- Unsolicited events: :class:`PeerAnnounced` (a node stored a peer with us),
  :class:`ExternalAddress` (BEP 42 voting settled our external IP; with
  ``DhtConfig.id_from_ip`` the node has taken a BEP 42 id for it and rebuilt its table).
- State for saving: :meth:`DhtNode.node_id`, :meth:`DhtNode.known_nodes`; pass them back as
  ``node_id=`` and to :meth:`bootstrap` on restart.

Rules (docs/limits.md item 14 names the safety ones):

- Replies go to the address the query came from and carry BEP 42's ``ip``. A reply to an
  address that has not answered one of our queries (unverified: it may be spoofed) is cut
  to at most ``amplification`` (4) times the query's size: peers, samples and nodes are
  trimmed, never the id or token.
- Per source, ``rate_limit`` datagrams over ``rate_window`` seconds (libtorrent: 5/s); over
  that they are dropped without a reply. Public IPs are one source; private and loopback
  addresses count per ``(ip, port)`` (many honest nodes share them). Answers to our own
  queries are never limited.
- Bad input never makes a storm: only a query whose transaction id we could read gets an
  error reply (203 malformed, 204 unknown method, 201 bad token or port, 202 if the node
  cannot serve it), and that reply passes the same rate limit and size rule.
- Messages carrying our own node id are dropped. An answer counts only if it comes from the
  exact address (IP and port) we sent the query to and carries the id we expected (when we
  knew one); other answers are ignored.
- The routing table (see routing.py) adds only nodes that answered us; a node that queries
  us is pinged first when its bucket has room. Read-only senders (BEP 43 ``ro``) are never
  added. With ``enforce_node_id``, ids that do not match their IP per BEP 42 are neither
  added nor used as storage targets; requests from them are still served (as BEP 42 asks).
- Tokens (tokens.py) bind the asker's IP and the info-hash; the store (peerstore.py) caps
  per info-hash, per IP and in total. ``implied_port`` stores the UDP source port.
- Read-only mode (BEP 43): queries carry ``ro=1``, incoming queries get no reply.
- BEP 44 (items.py holds the item rules): ``get`` replies carry a token for the target and
  the stored item; ``put`` needs that token (bound to IP and target), then the item's size,
  signature, seq and CAS rules, each failure answered with the BEP's code. An item that
  would break the amplification rule is left out of the reply and the asker is pinged to
  verify it; our own ``get`` queries are padded (``get_query_size``) so that nodes applying
  the same rule can answer them whole.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from torrentkit.dht import items as bep44
from torrentkit.dht import krpc
from torrentkit.dht.items import Item, ItemError, ItemStore
from torrentkit.dht.krpc import Error, KrpcError, NodeInfo, Query, Response
from torrentkit.dht.lookup import Candidate, Lookup
from torrentkit.dht.nodeid import id_for_ip, id_matches_ip, is_exempt
from torrentkit.dht.peerstore import PeerStore
from torrentkit.dht.routing import RoutingTable
from torrentkit.dht.tokens import TokenIssuer
from torrentkit.errors import BencodeError, LocalProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.tokenbucket import KeyedBuckets


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtConfig:
    """Parameters (times in seconds). Defaults follow BEP 5 and libtorrent."""

    k: int = 8
    alpha: int = 3
    #: A query unanswered this long frees its lookup slot (it may still answer).
    slow_after: float = 1.0
    #: A query unanswered this long has failed.
    rpc_timeout: float = 4.0
    max_lookup_queries: int = 200
    read_only: bool = False
    #: BEP 42: refuse non-matching ids in the table and as storage targets.
    enforce_node_id: bool = False
    #: BEP 42: when voting settles our external IP, take an id that matches it.
    id_from_ip: bool = True
    #: Distinct voters needed before an external IP is believed.
    ip_votes: int = 5
    one_per_ip: bool = True
    rate_limit: int = 50
    rate_window: float = 10.0
    max_sources_tracked: int = 10_000
    #: Replies to unverified addresses are at most this many times the query's size.
    amplification: int = 4
    token_rotation: float = 300.0
    maintenance_interval: float = 60.0
    good_for: float = 15 * 60.0
    refresh_after: float = 15 * 60.0
    max_peers_returned: int = 50
    peer_ttl: float = 30 * 60.0
    max_info_hashes: int = 2000
    max_peers_per_hash: int = 300
    max_peers_per_ip: int = 4
    max_hashes_per_ip: int = 64
    max_samples: int = 20
    sample_interval: int = 6 * 3600
    max_lookups: int = 256
    #: BEP 44 store.
    max_items: int = bep44.MAX_ITEMS
    max_items_per_ip: int = bep44.MAX_ITEMS_PER_SOURCE
    item_lifetime: float = bep44.ITEM_LIFETIME
    #: Our BEP 44 ``get`` queries are padded to this size, so that nodes applying the
    #: amplification rule may answer them with a whole item (as QUIC pads its first packet).
    get_query_size: int = 320
    max_rpcs: int = 2048

    def __post_init__(self) -> None:
        if self.k < 1 or self.alpha < 1:
            raise LocalProtocolError("k and alpha must be at least 1")
        if self.rpc_timeout <= 0 or self.slow_after <= 0:
            raise LocalProtocolError("timeouts must be positive")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class PingDone:
    op: int
    addr: PeerAddr
    ok: bool
    node_id: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupDone:
    """A ``find_node`` lookup ended: the closest nodes that answered, nearest first."""

    op: int
    target: bytes
    ok: bool
    nodes: tuple[NodeInfo, ...]
    hops: int
    queries: int
    timeouts: int
    #: Answers received by the lookup (queries + answers = its messages).
    answers: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PeersFound:
    """Peers for ``info_hash`` that this lookup had not reported yet."""

    op: int
    info_hash: bytes
    peers: tuple[PeerAddr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPeersDone:
    op: int
    info_hash: bytes
    ok: bool
    peers: tuple[PeerAddr, ...]
    nodes: tuple[NodeInfo, ...]
    hops: int
    queries: int
    timeouts: int
    #: Answers received by the lookup (queries + answers = its messages).
    answers: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceDone:
    op: int
    info_hash: bytes
    ok: bool
    #: Nodes that acknowledged the announce.
    stored: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleDone:
    op: int
    addr: PeerAddr
    ok: bool
    samples: tuple[bytes, ...]
    num: int
    interval: int
    nodes: tuple[NodeInfo, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemFound:
    """BEP 44 ``get`` ended: the item (for a mutable one, the highest ``seq`` seen), or None."""

    op: int
    target: bytes
    ok: bool
    item: Item | None
    nodes: tuple[NodeInfo, ...]
    queries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PutDone:
    """BEP 44 ``put`` ended: ``stored`` nodes acknowledged; ``errors`` are the KRPC error
    codes others sent back (302: they hold a newer seq; 301: CAS mismatch)."""

    op: int
    target: bytes
    ok: bool
    stored: int
    errors: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAnnounced:
    info_hash: bytes
    peer: PeerAddr


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalAddress:
    ip: str
    node_id: bytes


Event = (
    PingDone
    | LookupDone
    | PeersFound
    | GetPeersDone
    | AnnounceDone
    | SampleDone
    | ItemFound
    | PutDone
    | PeerAnnounced
    | ExternalAddress
)


@dataclass(slots=True)
class NodeStats:
    received: int = 0
    sent: int = 0
    bytes_sent: int = 0
    queries_received: int = 0
    dropped_malformed: int = 0
    dropped_rate: int = 0
    dropped_own_id: int = 0
    dropped_unmatched: int = 0
    errors_sent: int = 0
    trimmed_replies: int = 0
    #: get replies whose item was left out for the amplification rule.
    items_withheld: int = 0
    timeouts: int = 0


# --------------------------------------------------------------------------- internals

# RPC kinds.
_PING, _LOOKUP, _ANNOUNCE, _SAMPLE, _PUT = range(5)
# Lookup purposes.
_FIND, _GET_PEERS, _ANNOUNCE_LOOKUP, _REFRESH, _GET_ITEM, _PUT_ITEM = range(6)
# Timer kinds.
_T_SLOW, _T_RPC, _T_ROTATE, _T_MAINTAIN = range(4)


@dataclass(slots=True)
class _Rpc:
    tid: bytes
    addr: PeerAddr
    expect_id: bytes | None
    kind: int
    op: int
    deadline: float


@dataclass(slots=True)
class _Op:
    op: int
    purpose: int
    lookup: Lookup
    port: int = 0
    implied_port: bool = False
    seed: bool = False
    peers: dict[PeerAddr, None] = field(default_factory=dict)
    acks: int = 0
    pending_acks: int = 0
    finished: bool = False
    # BEP 44
    salt: bytes = b""
    seq: int | None = None
    item: Item | None = None
    cas: int | None = None
    errors: list[int] = field(default_factory=list)


class DhtNode:
    """One DHT node. See the module docstring for the API and the rules."""

    def __init__(
        self,
        *,
        rng: random.Random,
        now: float,
        config: DhtConfig | None = None,
        node_id: bytes | None = None,
        external_ip: str | None = None,
    ) -> None:
        self.config = cfg = config or DhtConfig()
        self.rng = rng
        self.external_ip = external_ip
        if node_id is not None and len(node_id) != 20:
            raise LocalProtocolError("a node id is 20 bytes")
        if node_id is None or (
            external_ip is not None and cfg.id_from_ip and not id_matches_ip(node_id, external_ip)
        ):
            node_id = (
                id_for_ip(external_ip, rng)
                if external_ip is not None and not is_exempt(external_ip)
                else rng.randbytes(20)
            )
        self.id = node_id
        self.table = self._new_table(now)
        self.store = PeerStore(
            ttl=cfg.peer_ttl,
            max_hashes=cfg.max_info_hashes,
            max_peers=cfg.max_peers_per_hash,
            max_per_ip=cfg.max_peers_per_ip,
            max_hashes_per_ip=cfg.max_hashes_per_ip,
        )
        self.items = ItemStore(
            max_items=cfg.max_items,
            max_per_source=cfg.max_items_per_ip,
            lifetime=cfg.item_lifetime,
        )
        self.tokens = TokenIssuer(rng.randbytes(16))
        self.stats = NodeStats()
        self.routers: list[PeerAddr] = []
        self._limiter: KeyedBuckets[object] = KeyedBuckets(
            cfg.rate_limit / cfg.rate_window,
            cfg.rate_limit,
            max_keys=cfg.max_sources_tracked,
            when_full="forget_oldest",
        )
        self._out: list[tuple[bytes, PeerAddr]] = []
        self._events: list[Event] = []
        self._rpcs: dict[bytes, _Rpc] = {}
        self._ops: dict[int, _Op] = {}
        self._next_op = 1
        self._timers: list[tuple[float, int, int, Any]] = []
        self._timer_seq = 0
        #: Addresses that answered one of our queries lately (verified for reply sizes).
        self._verified: OrderedDict[PeerAddr, float] = OrderedDict()
        #: Addresses we pinged to verify them (not pinged again while pending).
        self._verifying: set[PeerAddr] = set()
        self._votes: OrderedDict[str, str] = OrderedDict()
        self._now = now
        self._push_timer(now + cfg.token_rotation, _T_ROTATE)
        self._push_timer(now + cfg.maintenance_interval, _T_MAINTAIN)

    def _new_table(self, now: float) -> RoutingTable:
        cfg = self.config
        return RoutingTable(
            self.id,
            now,
            k=cfg.k,
            good_for=cfg.good_for,
            refresh_after=cfg.refresh_after,
            one_per_ip=cfg.one_per_ip,
        )

    # ------------------------------------------------------------------ public: driving

    @property
    def node_id(self) -> bytes:
        return self.id

    def datagrams_to_send(self) -> list[tuple[bytes, PeerAddr]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float:
        while self._timers and not self._timer_live(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else float("inf")

    def handle_timers(self, now: float) -> None:
        self._now = now
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, arg = heapq.heappop(self._timers)
            self._on_timer(kind, arg, now)

    def receive_datagram(self, data: bytes, src: PeerAddr, now: float) -> None:
        """Feed one datagram. Never raises for anything the remote side sent."""
        self._now = now
        self.stats.received += 1
        if not data or data[0] != 0x64:  # not a bencoded dict: uTP and other traffic
            self.stats.dropped_malformed += 1
            return
        try:
            msg = krpc.decode(data)
        except KrpcError as exc:
            self.stats.dropped_malformed += 1
            if exc.tid is not None and self._allow(src, now):
                self._send_error(exc.tid, exc.code, str(exc), src, len(data))
            return
        if isinstance(msg, Query):
            if not self._allow(src, now):
                self.stats.dropped_rate += 1
                return
            self._on_query(msg, src, now, data)
            return
        rpc = self._rpcs.get(msg.tid)
        if rpc is None or rpc.addr != src:
            # Unknown transaction, or an answer from another address or port than we asked.
            self.stats.dropped_unmatched += 1
            self._allow(src, now)
            return
        if isinstance(msg, Error):
            del self._rpcs[msg.tid]
            self._rpc_failed(rpc, now, timeout=False, code=msg.code)
            return
        self._on_response(rpc, msg, src, now, data)

    # ------------------------------------------------------------------ public: operations

    def bootstrap(self, addrs: list[PeerAddr], now: float) -> int:
        """Join through ``addrs`` (routers or saved nodes): a lookup of our own id."""
        for a in addrs:
            if a not in self.routers:
                self.routers.append(a)
        return self._start_lookup(_FIND, self.id, now, seeds=addrs)

    def add_node(self, addr: PeerAddr, now: float) -> int:
        """Ping ``addr``; it enters the table if it answers (BEP 5 ``port`` message)."""
        return self.ping(addr, now)

    def ping(self, addr: PeerAddr, now: float) -> int:
        op = self._new_op()
        self._query(addr, None, b"ping", {}, _PING, op, now)
        return op

    def find_node(self, target: bytes, now: float) -> int:
        return self._start_lookup(_FIND, _check20(target), now)

    def get_peers(self, info_hash: bytes, now: float) -> int:
        return self._start_lookup(_GET_PEERS, _check20(info_hash), now)

    def announce_peer(
        self,
        info_hash: bytes,
        port: int,
        now: float,
        *,
        implied_port: bool = False,
        seed: bool = False,
    ) -> int:
        """get_peers for ``info_hash``, then announce ``port`` to the closest nodes that gave
        a token. ``implied_port``: they store the UDP source port instead (BEP 5)."""
        if not implied_port and not 0 < port < 65536:
            raise LocalProtocolError(f"bad port {port}")
        op = self._start_lookup(_ANNOUNCE_LOOKUP, _check20(info_hash), now, start=False)
        o = self._ops[op]
        o.port, o.implied_port, o.seed = port, implied_port, seed
        self._advance(o, now)
        return op

    def sample_infohashes(self, addr: PeerAddr, target: bytes, now: float) -> int:
        """BEP 51: ask ``addr`` for a sample of the info-hashes it stores."""
        op = self._new_op()
        self._query(
            addr, None, b"sample_infohashes", {b"target": _check20(target)}, _SAMPLE, op, now
        )
        return op

    def get(self, target: bytes, now: float, *, salt: bytes = b"", seq: int | None = None) -> int:
        """BEP 44: look ``target`` up -> :class:`ItemFound`. For a mutable item pass the
        ``salt`` its target was made with; ``seq``: only a newer item is wanted."""
        op = self._start_lookup(_GET_ITEM, _check20(target), now, start=False)
        o = self._ops[op]
        o.salt, o.seq = salt, seq
        self._advance(o, now)
        return op

    def put(self, item: Item, now: float, *, cas: int | None = None) -> int:
        """BEP 44: store ``item`` on the nodes closest to its target -> :class:`PutDone`."""
        op = self._start_lookup(_PUT_ITEM, item.target, now, start=False)
        o = self._ops[op]
        o.item, o.cas = item, cas
        if item.mutable:
            o.seq = item.seq  # the nodes need not send their copy back unless newer
        self._advance(o, now)
        return op

    def known_nodes(self) -> list[NodeInfo]:
        """The routing table's entries (to save and give back to :meth:`bootstrap`)."""
        return [NodeInfo(id=e.id, addr=e.addr) for e in self.table]

    def set_external_ip(self, ip: str, now: float) -> None:
        """Our external IP is ``ip`` (from a trusted source, or voting): with ``id_from_ip``
        take a BEP 42 id for it if ours does not match, keeping the known nodes."""
        self.external_ip = ip
        if self.config.id_from_ip and not id_matches_ip(self.id, ip):
            old = list(self.table)
            self.id = id_for_ip(ip, self.rng)
            self.table = self._new_table(now)
            for e in old:
                if e.last_answer is not None:
                    self.table.heard(e.id, e.addr, e.last_answer, answered=True)
        self._events.append(ExternalAddress(ip=ip, node_id=self.id))

    # ------------------------------------------------------------------ timers

    def _push_timer(self, when: float, kind: int, arg: Any = None) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, kind, arg))

    def _timer_live(self, timer: tuple[float, int, int, Any]) -> bool:
        _, _, kind, arg = timer
        if kind in (_T_SLOW, _T_RPC):
            return self._rpcs.get(arg.tid) is arg  # not answered (nor its tid reused)
        return True

    def _on_timer(self, kind: int, arg: Any, now: float) -> None:
        cfg = self.config
        if kind in (_T_SLOW, _T_RPC):
            rpc: _Rpc = arg
            if self._rpcs.get(rpc.tid) is not rpc:
                return  # answered already
            if kind == _T_RPC:
                del self._rpcs[rpc.tid]
                self.stats.timeouts += 1
                self._rpc_failed(rpc, now, timeout=True)
            elif rpc.kind == _LOOKUP:
                o = self._ops.get(rpc.op)
                if o is not None:
                    o.lookup.mark_slow(rpc.addr)
                    self._advance(o, now)
        elif kind == _T_ROTATE:
            self.tokens.rotate(self.rng.randbytes(16))
            self._push_timer(now + cfg.token_rotation, _T_ROTATE)
        elif kind == _T_MAINTAIN:
            self._maintain(now)
            self._push_timer(now + cfg.maintenance_interval, _T_MAINTAIN)

    def _maintain(self, now: float) -> None:
        self.store.expire(now)
        self.items.expire(now)
        cutoff = now - self.config.good_for
        while self._verified and next(iter(self._verified.values())) < cutoff:
            self._verified.popitem(last=False)
        # Ping questionable nodes (oldest first) so bad ones get found and replaced.
        doubtful = sorted(self.table.questionable(now), key=lambda e: e.last_seen())
        for e in doubtful[: self.config.k]:
            self._verify(e.addr, e.id)
        # Refresh buckets nobody touched for 15 minutes (a few at a time); a table that has
        # thinned out below k nodes looks its own id up again (through the routers too).
        busy = sum(1 for o in self._ops.values() if o.purpose == _REFRESH)
        if len(self.table) < self.config.k and self.routers and not busy:
            self._start_lookup(_REFRESH, self.id, now)
            busy = 1
        for index in self.table.stale_buckets(now)[: max(0, 3 - busy)]:
            self.table.buckets[index].last_changed = now
            self._start_lookup(_REFRESH, self.table.random_id_in(index, self.rng), now)

    # ------------------------------------------------------------------ sending

    def _new_op(self) -> int:
        op = self._next_op
        self._next_op += 1
        return op

    def _send(self, data: bytes, addr: PeerAddr) -> None:
        self.stats.sent += 1
        self.stats.bytes_sent += len(data)
        self._out.append((data, addr))

    def _query(
        self,
        addr: PeerAddr,
        expect_id: bytes | None,
        method: bytes,
        args: dict[bytes, Any],
        kind: int,
        op: int,
        now: float,
    ) -> bool:
        if len(self._rpcs) >= self.config.max_rpcs:
            self._rpc_failed(_Rpc(b"", addr, expect_id, kind, op, now), now, timeout=False)
            return False
        while True:
            tid = self.rng.randbytes(2)
            if tid not in self._rpcs:
                break
        args = {b"id": self.id, **args}
        data = krpc.encode_query(tid, method, args, read_only=self.config.read_only)
        rpc = self._rpcs[tid] = _Rpc(tid, addr, expect_id, kind, op, now + self.config.rpc_timeout)
        if kind == _LOOKUP:
            self._push_timer(now + self.config.slow_after, _T_SLOW, rpc)
        self._push_timer(now + self.config.rpc_timeout, _T_RPC, rpc)
        self._send(data, addr)
        return True

    def _verified_addr(self, addr: PeerAddr) -> bool:
        return addr in self._verified or self.table.get(addr) is not None

    def _reply(self, tid: bytes, values: dict[bytes, Any], src: PeerAddr, query_len: int) -> None:
        values[b"id"] = self.id
        data = krpc.encode_response(tid, values, ip=src)
        if not self._verified_addr(src):
            limit = self.config.amplification * query_len
            trimmed = False
            while len(data) > limit and _trim(values):
                trimmed = True
                data = krpc.encode_response(tid, values, ip=src)
            if len(data) > limit and b"v" in values:
                # A BEP 44 item does not fit: leave it out, and ping the asker so that it is
                # verified (and gets the item) next time.
                for key in (b"v", b"k", b"sig", b"seq"):
                    values.pop(key, None)
                data = krpc.encode_response(tid, values, ip=src)
                self.stats.items_withheld += 1
                self._verify(src)
            if trimmed:
                self.stats.trimmed_replies += 1
        self._send(data, src)

    def _send_error(self, tid: bytes, code: int, text: str, src: PeerAddr, query_len: int) -> None:
        data = krpc.encode_error(tid, code, text[:60])
        if len(data) > self.config.amplification * query_len and not self._verified_addr(src):
            data = krpc.encode_error(tid, code, "")
        self.stats.errors_sent += 1
        self._send(data, src)

    def _allow(self, src: PeerAddr, now: float) -> bool:
        key: object = src if is_exempt(src.host) else src.host
        return self._limiter.allow(key, now)

    # ------------------------------------------------------------------ queries to us

    def _on_query(self, q: Query, src: PeerAddr, now: float, data: bytes) -> None:
        self.stats.queries_received += 1
        size = len(data)
        if self.config.read_only:
            return  # BEP 43: a read-only node answers no queries
        try:
            sender = krpc.get_id(q.args, tid=q.tid)
            if sender == self.id:
                self.stats.dropped_own_id += 1
                return
            if not q.read_only:
                self._note_querier(sender, src, now)
            self._dispatch(q, sender, src, now, data)
        except KrpcError as exc:
            self.stats.dropped_malformed += 1
            self._send_error(q.tid, exc.code, str(exc), src, size)
        except ItemError as exc:
            self._send_error(q.tid, exc.code, exc.message, src, size)

    def _note_querier(self, sender: bytes, src: PeerAddr, now: float) -> None:
        self.table.heard(sender, src, now, answered=False)
        if self.table.get(src) is None and self._table_wants(sender) and self._id_ok(sender, src):
            self._verify(src, sender)

    def _verify(self, src: PeerAddr, sender: bytes | None = None) -> None:
        """Ping ``src`` (once at a time): if it answers it is verified (and may enter the
        table, or stays in it)."""
        if src in self._verifying or len(self._verifying) >= 64:
            return
        self._verifying.add(src)
        self._query(src, sender, b"ping", {}, _PING, 0, self._now)

    def _table_wants(self, node_id: bytes) -> bool:
        index = self.table.bucket_index(node_id)
        last = len(self.table.buckets) - 1
        return len(self.table.buckets[index].nodes) < self.config.k or index == last

    def _id_ok(self, node_id: bytes, addr: PeerAddr) -> bool:
        return not self.config.enforce_node_id or id_matches_ip(node_id, addr.host)

    def _nodes_near(self, target: bytes, now: float) -> bytes:
        return krpc.pack_nodes(
            [NodeInfo(id=e.id, addr=e.addr) for e in self.table.closest(target, self.config.k)]
        )

    def _dispatch(self, q: Query, sender: bytes, src: PeerAddr, now: float, data: bytes) -> None:
        a, tid, method = q.args, q.tid, q.method
        size = len(data)
        if method == b"ping":
            self._reply(tid, {}, src, size)
        elif method == b"find_node":
            target = krpc.get_id(a, b"target", tid=tid)
            self._reply(tid, {b"nodes": self._nodes_near(target, now)}, src, size)
        elif method == b"get_peers":
            ih = krpc.get_id(a, b"info_hash", tid=tid)
            values: dict[bytes, Any] = {b"token": self.tokens.issue(src.host, ih)}
            noseed = a.get(b"noseed") == 1
            peers = self.store.peers(
                ih, now, self.config.max_peers_returned, self.rng, noseed=noseed
            )
            if peers:
                values[b"values"] = [krpc.pack_addr(p) for p in peers if ":" not in p.host]
            values[b"nodes"] = self._nodes_near(ih, now)
            self._reply(tid, values, src, size)
        elif method == b"announce_peer":
            ih = krpc.get_id(a, b"info_hash", tid=tid)
            token = krpc.get_token(a, tid=tid)
            implied = krpc.get_int(a, b"implied_port", tid=tid, default=0) == 1
            port = src.port if implied else krpc.get_int(a, b"port", tid=tid)
            if not 0 < port < 65536:
                raise KrpcError("bad port", tid=tid, code=krpc.PROTOCOL_ERROR)
            if not self.tokens.check(token, src.host, ih):
                raise KrpcError("invalid token", tid=tid)
            peer = PeerAddr(src.host, port)
            if self.store.add(ih, peer, now, seed=a.get(b"seed") == 1):
                self._events.append(PeerAnnounced(info_hash=ih, peer=peer))
            self._reply(tid, {}, src, size)
        elif method == b"sample_infohashes":
            target = krpc.get_id(a, b"target", tid=tid)
            samples = self.store.sample(self.config.max_samples, self.rng)
            self._reply(
                tid,
                {
                    b"interval": self.config.sample_interval,
                    b"num": len(self.store),
                    b"samples": b"".join(samples),
                    b"nodes": self._nodes_near(target, now),
                },
                src,
                size,
            )
        elif method == b"get":
            target = krpc.get_id(a, b"target", tid=tid)
            values = {
                b"token": self.tokens.issue(src.host, target),
                b"nodes": self._nodes_near(target, now),
            }
            item = self.items.get(target, now)
            if item is not None:
                seq = a.get(b"seq")
                values.update(
                    bep44.get_response_fields(item, seq if isinstance(seq, int) else None)
                )
            self._reply(tid, values, src, size)
        elif method == b"put":
            token = krpc.get_token(a, tid=tid)
            try:
                raw = bep44.raw_value(data, b"a")
            except BencodeError:
                raw = None
            item, cas = bep44.parse_put(a, raw)
            if not self.tokens.check(token, src.host, item.target):
                raise KrpcError("invalid token", tid=tid)
            self.items.put(item, now, source=src.host, cas=cas)
            self._reply(tid, {}, src, size)
        elif isinstance(a.get(b"target"), bytes) or isinstance(a.get(b"info_hash"), bytes):
            # An unknown method with a target: answer like find_node (forward compatibility,
            # as libtorrent does).
            near = a.get(b"target") or a.get(b"info_hash")
            if not isinstance(near, bytes) or len(near) != 20:
                raise KrpcError("bad target", tid=tid)
            self._reply(tid, {b"nodes": self._nodes_near(near, now)}, src, size)
        else:
            raise KrpcError("method unknown", tid=tid, code=krpc.METHOD_UNKNOWN)

    # ------------------------------------------------------------------ answers to us

    def _on_response(self, rpc: _Rpc, r: Response, src: PeerAddr, now: float, data: bytes) -> None:
        try:
            sender = krpc.get_id(r.values)
        except KrpcError:
            self.stats.dropped_malformed += 1
            return
        if sender == self.id:
            self.stats.dropped_own_id += 1
            return
        if rpc.expect_id is not None and sender != rpc.expect_id and rpc.kind != _LOOKUP:
            self.stats.dropped_unmatched += 1
            return
        del self._rpcs[rpc.tid]
        self._verifying.discard(src)
        self._verified[src] = now
        self._verified.move_to_end(src)
        if len(self._verified) > 4096:
            self._verified.popitem(last=False)
        compliant = id_matches_ip(sender, src.host)
        if compliant or not self.config.enforce_node_id:
            doubtful = self.table.heard(sender, src, now, answered=True)
            if doubtful is not None:
                self._verify(doubtful.addr, doubtful.id)
        if r.ip is not None:
            self._vote(r.ip.host, src, now)
        if rpc.kind == _PING:
            if rpc.op:
                self._events.append(PingDone(op=rpc.op, addr=src, ok=True, node_id=sender))
        elif rpc.kind == _LOOKUP:
            self._lookup_answer(rpc, r, sender, compliant, now, data)
        elif rpc.kind in (_ANNOUNCE, _PUT):
            o = self._ops.get(rpc.op)
            if o is not None:
                o.acks += 1
                o.pending_acks -= 1
                self._maybe_announced(o)
        elif rpc.kind == _SAMPLE:
            self._sample_answer(rpc, r, now)

    def _rpc_failed(self, rpc: _Rpc, now: float, *, timeout: bool, code: int = 0) -> None:
        self._verifying.discard(rpc.addr)
        if timeout:
            self.table.failed(rpc.addr, now)
        if rpc.kind == _PING:
            if rpc.op:
                self._events.append(PingDone(op=rpc.op, addr=rpc.addr, ok=False, node_id=None))
        elif rpc.kind == _LOOKUP:
            o = self._ops.get(rpc.op)
            if o is not None:
                o.lookup.failed(rpc.addr, timeout=timeout)
                self._advance(o, now)
        elif rpc.kind in (_ANNOUNCE, _PUT):
            o = self._ops.get(rpc.op)
            if o is not None:
                o.pending_acks -= 1
                if code:
                    o.errors.append(code)
                self._maybe_announced(o)
        elif rpc.kind == _SAMPLE:
            self._events.append(
                SampleDone(
                    op=rpc.op, addr=rpc.addr, ok=False, samples=(), num=0, interval=0, nodes=()
                )
            )

    def _vote(self, ip: str, voter: PeerAddr, now: float) -> None:
        """BEP 42: replies tell us our IP; believe it once ``ip_votes`` distinct IPs agree."""
        if is_exempt(voter.host) or is_exempt(ip):
            return
        self._votes[voter.host] = ip
        self._votes.move_to_end(voter.host)
        if len(self._votes) > 64:
            self._votes.popitem(last=False)
        count = sum(1 for v in self._votes.values() if v == ip)
        if count >= self.config.ip_votes and ip != self.external_ip:
            self.set_external_ip(ip, now)

    # ------------------------------------------------------------------ lookups

    def _start_lookup(
        self,
        purpose: int,
        target: bytes,
        now: float,
        *,
        seeds: list[PeerAddr] | None = None,
        start: bool = True,
    ) -> int:
        cfg = self.config
        op = self._new_op()
        lk = Lookup(target, k=cfg.k, alpha=cfg.alpha, max_queries=cfg.max_lookup_queries)
        for e in self.table.closest(target, cfg.k * 2):
            lk.add(e.id, e.addr, 1)
        for a in seeds or ():
            lk.add(None, a, 1)
        if len(lk.candidates) < cfg.k:
            # A thin table: the routers help (libtorrent asks them when a lookup runs dry).
            for a in self.routers:
                lk.add(None, a, 1)
        o = self._ops[op] = _Op(op=op, purpose=purpose, lookup=lk)
        if len(self._ops) > cfg.max_lookups:
            # Too many at once: this one ends at once (ok=False) rather than grow state.
            lk.candidates.clear()
        if start:
            self._advance(o, now)
        return op

    def _advance(self, o: _Op, now: float) -> None:
        if o.finished:
            return
        lk = o.lookup
        args: dict[bytes, Any]
        if o.purpose in (_FIND, _REFRESH):
            method, args = b"find_node", {b"target": lk.target}
        elif o.purpose in (_GET_ITEM, _PUT_ITEM):
            method, args = b"get", {b"target": lk.target}
            if o.seq is not None:
                args[b"seq"] = o.seq
            if o.purpose == _GET_ITEM:
                args[b"pad"] = b""
                short = self.config.get_query_size - len(
                    krpc.encode_query(b"xx", method, {b"id": self.id, **args})
                )
                args[b"pad"] = b"\0" * max(0, short)
        else:
            method, args = b"get_peers", {b"info_hash": lk.target}
        for c in lk.to_query():
            self._query(c.addr, c.id, method, args, _LOOKUP, o.op, now)
        if lk.done():
            self._finish(o, now)

    def _lookup_answer(
        self, rpc: _Rpc, r: Response, sender: bytes, compliant: bool, now: float, data: bytes
    ) -> None:
        o = self._ops.get(rpc.op)
        if o is None or o.finished:
            return
        lk = o.lookup
        counts = compliant or not self.config.enforce_node_id
        c = lk.answered(rpc.addr, sender, counts=counts)
        if c is None:
            return
        try:
            nodes = krpc.nodes_of(r.values)
        except KrpcError:
            nodes = []
        for n in nodes:
            if n.id != self.id:
                lk.add(n.id, n.addr, c.depth + 1)
        if o.purpose in (_GET_PEERS, _ANNOUNCE_LOOKUP, _GET_ITEM, _PUT_ITEM):
            token = r.values.get(b"token")
            if isinstance(token, bytes) and 0 < len(token) <= krpc.MAX_TOKEN:
                c.token = token
        if o.purpose == _GET_ITEM and b"v" in r.values:
            try:
                raw = bep44.raw_value(data, b"r")
            except BencodeError:
                raw = None
            item = bep44.parse_get_response(lk.target, r.values, raw, o.salt)
            if item is not None and (o.item is None or item.seq > o.item.seq):
                o.item = item
                if not item.mutable:
                    self._finish(o, now)  # an immutable item is what it is: done
                    return
        if o.purpose in (_GET_PEERS, _ANNOUNCE_LOOKUP):
            raw = r.values.get(b"values")
            if raw is not None:
                try:
                    found = krpc.unpack_peers(raw)
                except KrpcError:
                    found = []
                new = [p for p in found if p not in o.peers]
                for p in new:
                    o.peers[p] = None
                if new:
                    self._events.append(PeersFound(op=o.op, info_hash=lk.target, peers=tuple(new)))
        self._advance(o, now)

    def _finish(self, o: _Op, now: float) -> None:
        o.finished = True
        lk = o.lookup
        # Queries still in flight are left to time out (their answers still feed the table).
        closest = lk.closest_answered(self.config.k)
        nodes = tuple(NodeInfo(id=c.id, addr=c.addr) for c in closest if c.id is not None)
        ok = bool(nodes)
        if o.purpose == _FIND:
            self._events.append(
                LookupDone(
                    op=o.op,
                    target=lk.target,
                    ok=ok,
                    nodes=nodes,
                    hops=lk.hops,
                    queries=lk.queries,
                    timeouts=lk.timeouts,
                    answers=lk.answers,
                )
            )
        elif o.purpose in (_GET_PEERS, _ANNOUNCE_LOOKUP):
            self._events.append(
                GetPeersDone(
                    op=o.op,
                    info_hash=lk.target,
                    ok=ok,
                    peers=tuple(o.peers),
                    nodes=nodes,
                    hops=lk.hops,
                    queries=lk.queries,
                    timeouts=lk.timeouts,
                    answers=lk.answers,
                )
            )
        elif o.purpose == _GET_ITEM:
            self._events.append(
                ItemFound(
                    op=o.op,
                    target=lk.target,
                    ok=o.item is not None,
                    item=o.item,
                    nodes=nodes,
                    queries=lk.queries,
                )
            )
        if o.purpose in (_ANNOUNCE_LOOKUP, _PUT_ITEM):
            self._announce(o, closest, now)
            return
        del self._ops[o.op]

    def _announce(self, o: _Op, closest: list[Candidate], now: float) -> None:
        targets = [c for c in closest if c.token is not None]
        if o.item is not None:
            for c in targets:
                assert c.token is not None
                put_args = bep44.put_arguments(o.item, c.token, o.cas)
                if self._query(c.addr, c.id, b"put", put_args, _PUT, o.op, now):
                    o.pending_acks += 1
            self._maybe_announced(o)
            return
        for c in targets:
            args: dict[bytes, Any] = {
                b"info_hash": o.lookup.target,
                b"port": o.port if o.port else 1,
                b"token": c.token,
            }
            if o.implied_port:
                args[b"implied_port"] = 1
            if o.seed:
                args[b"seed"] = 1
            if self._query(c.addr, c.id, b"announce_peer", args, _ANNOUNCE, o.op, now):
                o.pending_acks += 1
        self._maybe_announced(o)

    def _maybe_announced(self, o: _Op) -> None:
        if o.pending_acks > 0 or o.op not in self._ops:
            return
        del self._ops[o.op]
        if o.purpose == _PUT_ITEM:
            self._events.append(
                PutDone(
                    op=o.op,
                    target=o.lookup.target,
                    ok=o.acks > 0,
                    stored=o.acks,
                    errors=tuple(o.errors),
                )
            )
            return
        self._events.append(
            AnnounceDone(op=o.op, info_hash=o.lookup.target, ok=o.acks > 0, stored=o.acks)
        )

    def _sample_answer(self, rpc: _Rpc, r: Response, now: float) -> None:
        v = r.values
        raw = v.get(b"samples")
        samples: tuple[bytes, ...] = ()
        ok = isinstance(raw, bytes) and len(raw) % 20 == 0
        if isinstance(raw, bytes) and ok:
            samples = tuple(raw[i : i + 20] for i in range(0, len(raw), 20))
        num = v.get(b"num")
        interval = v.get(b"interval")
        try:
            nodes = tuple(krpc.nodes_of(v))
        except KrpcError:
            nodes = ()
        self._events.append(
            SampleDone(
                op=rpc.op,
                addr=rpc.addr,
                ok=ok,
                samples=samples,
                num=num if isinstance(num, int) else 0,
                interval=interval if isinstance(interval, int) else 0,
                nodes=nodes,
            )
        )


def _check20(value: bytes) -> bytes:
    if len(value) != 20:
        raise LocalProtocolError("ids and info-hashes are 20 bytes")
    return bytes(value)


def _trim(values: dict[bytes, Any]) -> bool:
    """Make a reply smaller for the amplification rule: halve peers, then samples, then
    nodes. False when nothing is left to cut."""
    peers = values.get(b"values")
    if isinstance(peers, list) and peers:
        values[b"values"] = peers[: len(peers) // 2]
        if not values[b"values"]:
            del values[b"values"]
        return True
    samples = values.get(b"samples")
    if isinstance(samples, bytes) and samples:
        keep = len(samples) // 40 * 20
        values[b"samples"] = samples[:keep]
        return True
    nodes = values.get(b"nodes")
    if isinstance(nodes, bytes) and nodes:
        keep = len(nodes) // 52 * 26
        values[b"nodes"] = nodes[:keep]
        return True
    return False
