"""The Gnutella / KaZaA overlay node as a sans-IO state machine.

The driver tells an :class:`OverlayNode` what happened -- a link opened or closed, a message
arrived, a dial failed, a timer fired -- always with ``now``, and gets back a list of
:data:`Action` values to carry out: :class:`Send` a message on a link, :class:`Close` a link,
:class:`Dial` an address, and :class:`HitsArrived` (a search of ours got results). No sockets,
no clock, no trio; randomness (message ids, neighbour choice) comes from the ``rng`` passed in.

Roles and links
===============
A node is a Gnutella ``PEER``, or a KaZaA ``SUPERNODE`` or ``LEAF``. Each side's first message
on a link is ``hello`` (its role and overlay listen port); until it arrives, anything else closes
the link. Allowed pairs: peer-peer, supernode-supernode ("flooding links") and supernode-leaf;
anything else is closed as incompatible. Two links to one node (both dialled at once) are
resolved the same way on both sides: the link dialled by the smaller peer id stays. A node
with no room for a link says hello, sends pongs naming up to 10 of its neighbours (Gnutella
0.6's X-Try), then closes; a link that ends within ``retry_base`` seconds counts as a failed
dial for back-off.

- PEER: keeps ``target_degree`` peer links (dials known addresses when short), accepts up to
  ``max_degree``.
- SUPERNODE: the same among supernodes, and accepts up to ``max_leaves`` leaves, whose file
  lists (``share`` messages) it indexes, capped per leaf and in total.
- LEAF: attaches to ``leaf_supernodes`` (1-3) supernodes and uploads its file list to each
  (again after :meth:`OverlayNode.publish`). When one dies, :meth:`OverlayNode.refill` dials
  another supernode it knows (from pongs or the bootstrap list).

Flooding (Gnutella 0.4 descriptors)
===================================
A ``ping`` or ``query`` is sent with ``ttl`` = T (<= 7) and ``hops`` = 0. A node receiving one:

1. drops it unless ``ttl >= 1`` and ``ttl + hops <= 7`` (docs/limits.md);
2. drops it if its id was seen before (an LRU of ids, bounded and aged): duplicates are neither
   answered nor forwarded;
3. remembers id -> the link it came from (the reverse path);
4. answers: a ping with a ``pong`` (its own listen port; peers and supernodes only), a query
   with ``hit`` messages for each holder whose file names contain every query word
   (case-insensitive): its own files, and a supernode its leaves' files too;
5. forwards it with ``ttl - 1``, ``hops + 1`` on every other flooding link, if ``ttl - 1 >= 1``.
   Leaves never forward and are never sent queries or pings by a supernode.

Answers (``pong``, ``hit``) start with ``ttl`` = the request's ``hops + 1`` (exactly the way
back) and ``hops`` = 0, and each node on the way sends them one link back along the reverse
path (``ttl - 1``, ``hops + 1``); an answer for an id the node never forwarded is dropped.
The origin keeps a search's hits (bounded) until :meth:`OverlayNode.finish_search`.

Limits (docs/limits.md item 12): messages over 4 kB or malformed close the link; every link has
a token bucket (``rate`` messages/s, ``burst``): messages over it are dropped and counted, and a
link that keeps it up (``ban_after`` drops) is closed and its node banned for ``ban_seconds``;
bounded tables everywhere (seen ids, known addresses, leaf files, hits per search, hits routed
per query, searches in flight).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, NewType

from torrentkit.discovery.gnutella import messages
from torrentkit.discovery.gnutella.messages import (
    MAX_TTL,
    FileEntry,
    Hello,
    Message,
    Ping,
    Pong,
    Query,
    QueryHit,
    Role,
    Share,
)
from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.tokenbucket import TokenBucket

LinkId = NewType("LinkId", int)

#: Most supernodes a leaf stays attached to at once.
MAX_LEAF_SUPERNODES: Final = 3
#: Role pairs that may share a link (ours, theirs).
ALLOWED_LINKS: Final = frozenset(
    {
        (Role.PEER, Role.PEER),
        (Role.SUPERNODE, Role.SUPERNODE),
        (Role.SUPERNODE, Role.LEAF),
        (Role.LEAF, Role.SUPERNODE),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OverlayConfig:
    """Tunables of one node. Defaults follow Gnutella practice and docs/limits.md."""

    role: Role = Role.PEER
    default_ttl: int = messages.DEFAULT_TTL
    ping_ttl: int = 2
    #: Flooding links (peer or supernode) a node dials up to, and accepts at most. The room
    #: between them matters: nodes that joined early fill up with later nodes' links, and
    #: with max < 2 * target later nodes find only each other (a stretched overlay: diameter
    #: 8-11 at 50 nodes with 4 / 6, against 5 with 3 / 8, mean degree ~5).
    target_degree: int = 3
    max_degree: int = 8
    #: KaZaA: supernodes a leaf attaches to (1-3), and leaves a supernode accepts.
    leaf_supernodes: int = 2
    max_leaves: int = 100
    #: Links that have not said hello yet.
    max_pending_links: int = 16
    max_dialing: int = 8
    #: Per-link token bucket (messages) and the ban for links that keep exceeding it.
    rate: float = 50.0
    burst: float = 200.0
    ban_after: int = 200
    ban_seconds: float = 300.0
    #: Bounded tables.
    seen_capacity: int = 10_000
    seen_seconds: float = 600.0
    known_capacity: int = 1_000
    max_files_per_leaf: int = 1_000
    max_index_files: int = 100_000
    max_searches: int = 64
    max_results_per_search: int = 1_000
    #: File entries one node answers a query with, and hit messages routed per query id.
    max_hits_per_query: int = 50
    max_routed_hits: int = 200
    #: Dial back-off: ``retry_base * 2**failures`` seconds; forgotten after ``max_failures``.
    retry_base: float = 10.0
    max_failures: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise LocalProtocolError("role must be a Role")
        for name in ("default_ttl", "ping_ttl"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= MAX_TTL:
                raise LocalProtocolError(f"{name} must be 1..{MAX_TTL}, got {value!r}")
        if not 1 <= self.leaf_supernodes <= MAX_LEAF_SUPERNODES:
            raise LocalProtocolError(f"leaf_supernodes must be 1..{MAX_LEAF_SUPERNODES}")
        if not 0 <= self.target_degree <= self.max_degree:
            raise LocalProtocolError("need 0 <= target_degree <= max_degree")
        if self.rate <= 0 or self.burst < 1:
            raise LocalProtocolError("rate must be positive and burst at least 1")


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    link: LinkId
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    link: LinkId
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial:
    addr: PeerAddr


@dataclass(frozen=True, slots=True, kw_only=True)
class HitsArrived:
    """New results for our search ``search`` (see :meth:`OverlayNode.results`)."""

    search: bytes


Action = Send | Close | Dial | HitsArrived


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """One holder's answer to one of our searches. ``hops``: overlay links between us and the
    node that answered (1 = a neighbour; 0 = our own supernode index)."""

    name: str
    size: int
    info_hash: InfoHash
    holder: PeerAddr
    hops: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Neighbour:
    link: LinkId
    remote: PeerAddr  # the connection's far end
    listen: PeerAddr | None  # where that node accepts overlay links, if known
    role: Role | None  # None until its hello
    outgoing: bool


@dataclass(slots=True)
class Counters:
    """Messages per kind (``hello``, ``ping``, ``pong``, ``query``, ``hit``, ``share``) sent and
    received by this node, and messages dropped per reason."""

    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_received(self) -> int:
        return sum(self.received.values())


# --------------------------------------------------------------------------- internal state


@dataclass(slots=True)
class _Link:
    id: LinkId
    remote: PeerAddr
    peer_id: bytes
    outgoing: bool
    dialed: PeerAddr | None
    #: Messages this link may still send (``rate``/s, ``burst``; docs/limits.md item 12).
    bucket: TokenBucket
    opened: float
    role: Role | None = None
    listen: PeerAddr | None = None
    strikes: int = 0


@dataclass(slots=True)
class _Route:
    link: LinkId | None  # None: our own message
    kind: type[Ping] | type[Query]
    time: float
    answers: int = 0


@dataclass(slots=True)
class _Known:
    supernode: bool | None  # None: not known (a bootstrap address)
    failures: int = 0
    next_try: float = 0.0


@dataclass(slots=True)
class _LeafIndex:
    holder: PeerAddr | None = None  # from its first share message
    files: list[FileEntry] = field(default_factory=list)


def query_words(text: str) -> list[str]:
    """The words of a query, case-folded; an empty query matches nothing."""
    return text.casefold().split()


def matches(words: Sequence[str], name: str) -> bool:
    """Whether every query word appears in ``name`` (case-insensitive substring match)."""
    folded = name.casefold()
    return bool(words) and all(w in folded for w in words)


def _unspecified(host: str) -> bool:
    if not host:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class OverlayNode:
    """One overlay node's state; see the module docstring for the rules.

    ``peer_id``: this node's peer wire id (breaks ties between duplicate links).
    ``listen_port``: the overlay port announced in hello and pongs (0: not listening).
    ``holder``: our BitTorrent listen address, given in hits for our files (None: we hold
    nothing); an unspecified host (``""``, ``0.0.0.0``) is filled in by the first hop.
    """

    def __init__(
        self,
        config: OverlayConfig,
        *,
        peer_id: bytes,
        rng: random.Random,
        listen_port: int = 0,
        holder: PeerAddr | None = None,
    ) -> None:
        if len(peer_id) != 20:
            raise LocalProtocolError("peer_id must be 20 bytes")
        self.config = config
        self.role = config.role
        self.peer_id = bytes(peer_id)
        self.rng = rng
        self.listen_port = listen_port
        self.holder = holder
        self.counters = Counters()
        self.files: tuple[FileEntry, ...] = ()
        self._links: dict[LinkId, _Link] = {}
        self._next_link = 0
        self._routes: OrderedDict[bytes, _Route] = OrderedDict()
        self._known: OrderedDict[PeerAddr, _Known] = OrderedDict()
        self._dialing: set[PeerAddr] = set()
        self._banned_addrs: OrderedDict[PeerAddr, float] = OrderedDict()
        self._banned_ids: OrderedDict[bytes, float] = OrderedDict()
        self._searches: OrderedDict[bytes, list[Hit]] = OrderedDict()
        self._leaves: dict[LinkId, _LeafIndex] = {}
        self._index_size = 0

    # ------------------------------------------------------------------ queries

    def neighbours(self) -> list[Neighbour]:
        return [
            Neighbour(
                link=lk.id, remote=lk.remote, listen=lk.listen, role=lk.role, outgoing=lk.outgoing
            )
            for lk in self._links.values()
        ]

    def known_addresses(self) -> list[PeerAddr]:
        return list(self._known)

    def index_size(self) -> int:
        """File entries a supernode holds for its leaves."""
        return self._index_size

    def results(self, search: bytes) -> list[Hit]:
        """The hits so far for our search ``search`` (a copy)."""
        return list(self._searches.get(search, ()))

    def is_banned(self, now: float, *, addr: PeerAddr | None = None, peer_id: bytes = b"") -> bool:
        until = self._banned_addrs.get(addr) if addr is not None else None
        if until is not None and until > now:
            return True
        until = self._banned_ids.get(peer_id) if peer_id else None
        return until is not None and until > now

    # ------------------------------------------------------------------ links

    def link_opened(
        self,
        now: float,
        *,
        remote: PeerAddr,
        peer_id: bytes,
        outgoing: bool,
        dialed: PeerAddr | None = None,
    ) -> tuple[LinkId, list[Action]]:
        """A peer wire link is up (both handshakes done, the overlay extension offered)."""
        if dialed is not None:
            self._dialing.discard(dialed)
        self._next_link += 1
        link = LinkId(self._next_link)
        lk = _Link(
            id=link,
            remote=remote,
            peer_id=bytes(peer_id),
            outgoing=outgoing,
            dialed=dialed,
            bucket=TokenBucket(self.config.rate, self.config.burst, stamp=now),
            opened=now,
        )
        self._links[link] = lk
        pending = sum(1 for x in self._links.values() if x.role is None)
        if self.is_banned(now, addr=dialed, peer_id=lk.peer_id):
            return link, self._close(lk, "banned", now)
        if pending > self.config.max_pending_links:
            return link, self._close(lk, "too many links waiting for hello", now)
        return link, [self._send(lk, Hello(role=self.role, port=self.listen_port))]

    def link_closed(self, now: float, link: LinkId) -> list[Action]:
        """The link is gone (closed by either side). Idempotent."""
        lk = self._links.pop(link, None)
        if lk is not None:
            self._forget_link(lk, now)
        return []

    def dial_failed(self, now: float, addr: PeerAddr, *, permanent: bool = False) -> None:
        """Dialling ``addr`` failed; ``permanent``: never try it again (it was ourselves)."""
        self._dialing.discard(addr)
        known = self._known.get(addr)
        if known is None:
            return
        known.failures += 1
        if permanent or known.failures > self.config.max_failures:
            del self._known[addr]
            if permanent:
                self._ban_addr(addr, float("inf"))
            return
        known.next_try = now + self.config.retry_base * 2 ** (known.failures - 1)

    def add_known(self, addrs: Iterable[PeerAddr], *, supernode: bool | None = None) -> None:
        """Addresses of overlay nodes to dial (the bootstrap list)."""
        for addr in addrs:
            self._learn(addr, supernode)

    # ------------------------------------------------------------------ timers

    def refill(self, now: float) -> list[Action]:
        """Dial known nodes while we have fewer neighbours than we want (the driver calls this
        every few seconds and whenever a link closes)."""
        self._expire(now)
        if self.role is Role.LEAF:
            want = self.config.leaf_supernodes - len(self._flood_links())
        else:
            want = self.config.target_degree - len(self._flood_links())
        want = min(want - len(self._dialing), self.config.max_dialing - len(self._dialing))
        if want <= 0:
            return []
        linked = {lk.listen for lk in self._links.values()} | {
            lk.dialed for lk in self._links.values()
        }
        wanted_role = self.role is not Role.PEER  # supernodes and leaves dial supernodes
        candidates = [
            addr
            for addr, k in self._known.items()
            if k.next_try <= now
            and addr not in self._dialing
            and addr not in linked
            and k.supernode in (None, wanted_role)
            and not self.is_banned(now, addr=addr)
        ]
        self.rng.shuffle(candidates)
        out: list[Action] = []
        for addr in candidates[:want]:
            self._dialing.add(addr)
            out.append(Dial(addr=addr))
        return out

    def ping(self, now: float) -> list[Action]:
        """Start a ping on every flooding link (neighbour discovery; the driver's timer)."""
        self._expire(now)
        links = self._flood_links()
        if not links:
            return []
        msg_id = self._new_id(now, Ping)
        msg = Ping(msg_id=msg_id, ttl=self.config.ping_ttl, hops=0)
        return [self._send(lk, msg) for lk in links]

    # ------------------------------------------------------------------ publishing, searching

    def publish(self, now: float, files: Iterable[FileEntry]) -> list[Action]:
        """Replace our shared files (a leaf uploads the new list to its supernodes)."""
        files = tuple(files)
        if files and self.holder is None:
            raise LocalProtocolError("publishing files needs our BitTorrent address (holder)")
        self.files = files
        if self.role is not Role.LEAF:
            return []
        out: list[Action] = []
        for lk in self._flood_links():
            out += self._share_to(lk)
        return out

    def start_search(
        self, now: float, text: str, *, ttl: int | None = None
    ) -> tuple[bytes, list[Action]]:
        """Flood a query; its hits collect under the returned id (see :meth:`results`)."""
        ttl = self.config.default_ttl if ttl is None else ttl
        if type(ttl) is not int or not 1 <= ttl <= MAX_TTL:
            raise LocalProtocolError(f"ttl must be 1..{MAX_TTL}, got {ttl!r}")
        self._expire(now)
        msg_id = self._new_id(now, Query)
        query = Query(msg_id=msg_id, ttl=ttl, hops=0, text=text)
        self._searches[msg_id] = []
        while len(self._searches) > self.config.max_searches:
            self._searches.popitem(last=False)
        out: list[Action] = [self._send(lk, query) for lk in self._flood_links()]
        if self.role is Role.SUPERNODE:
            words = query_words(text)
            hits = self._searches[msg_id]
            for index in self._leaves.values():
                if index.holder is None:
                    continue
                for f in index.files:
                    if matches(words, f.name) and len(hits) < self.config.max_results_per_search:
                        hits.append(_hit(f, index.holder, 0))
            if hits:
                out.append(HitsArrived(search=msg_id))
        return msg_id, out

    def finish_search(self, search: bytes) -> list[Hit]:
        """Stop collecting hits for ``search`` and return them (late hits are dropped)."""
        return self._searches.pop(search, [])

    # ------------------------------------------------------------------ receiving

    def receive(self, now: float, link: LinkId, payload: bytes) -> list[Action]:
        """An overlay extension message arrived on ``link``."""
        lk = self._links.get(link)
        if lk is None:
            return []
        if not self._take_token(lk, now):
            self.counters.dropped["rate_limited"] += 1
            lk.strikes += 1
            if lk.strikes >= self.config.ban_after:
                until = now + self.config.ban_seconds
                self._ban_id(lk.peer_id, until)
                if lk.listen is not None:
                    self._ban_addr(lk.listen, until)
                return self._close(lk, "flooding us: over the message rate limit", now)
            return []
        try:
            msg = messages.parse(payload)
        except RemoteProtocolError as exc:
            self.counters.dropped["malformed"] += 1
            return self._close(lk, str(exc), now)
        self.counters.received[messages.kind(msg)] += 1
        if isinstance(msg, Hello):
            return self._on_hello(now, lk, msg)
        if lk.role is None:
            return self._close(lk, f"{messages.kind(msg)} before hello", now)
        if isinstance(msg, Ping | Query):
            return self._on_request(now, lk, msg)
        if isinstance(msg, Pong | QueryHit):
            return self._on_answer(now, lk, msg)
        return self._on_share(lk, msg)

    def _on_hello(self, now: float, lk: _Link, msg: Hello) -> list[Action]:
        if lk.role is not None:
            return self._close(lk, "a second hello", now)
        if (self.role, msg.role) not in ALLOWED_LINKS:
            return self._close(lk, f"a {msg.role.value} cannot link to a {self.role.value}", now)
        lk.role = msg.role
        if lk.outgoing:
            lk.listen = lk.dialed
        elif msg.port:
            lk.listen = PeerAddr(lk.remote.host, msg.port)
        out: list[Action] = []
        # Two links to the same node: keep the one dialled by the smaller peer id (both
        # sides decide alike).
        for other in list(self._links.values()):
            if other is not lk and other.role is not None and other.peer_id == lk.peer_id:
                keep_outgoing = self.peer_id < lk.peer_id
                if lk.outgoing != keep_outgoing:
                    return self._close(lk, "duplicate link", now)
                out += self._close(other, "duplicate link", now)
        if msg.role is Role.LEAF:
            if len(self._leaves) >= self.config.max_leaves:
                return out + self._refuse(lk, "no room for more leaves", now)
            self._leaves[lk.id] = _LeafIndex()
        else:
            limit = MAX_LEAF_SUPERNODES if self.role is Role.LEAF else self.config.max_degree
            if len(self._flood_links()) > limit:
                return out + self._refuse(lk, "no room for more neighbours", now)
        if lk.listen is not None:
            self._learn(lk.listen, msg.role is Role.SUPERNODE)
        if msg.role is not Role.LEAF:
            if self.role is Role.LEAF:
                out += self._share_to(lk)
            # Learn more nodes through this one at once (the timer repeats it).
            msg_id = self._new_id(now, Ping)
            out.append(self._send(lk, Ping(msg_id=msg_id, ttl=self.config.ping_ttl, hops=0)))
        return out

    def _on_request(self, now: float, lk: _Link, msg: Ping | Query) -> list[Action]:
        if not self._ttl_ok(msg):
            return []
        if self.role is Role.LEAF or (self.role is Role.PEER) != (lk.role is Role.PEER):
            self.counters.dropped["unexpected"] += 1
            return []
        if msg.msg_id in self._routes:
            self.counters.dropped["duplicate"] += 1
            return []
        self._remember(msg.msg_id, _Route(link=lk.id, kind=type(msg), time=now))
        out: list[Action] = []
        if isinstance(msg, Ping):
            if self.listen_port:
                pong = Pong(
                    msg_id=msg.msg_id,
                    ttl=msg.hops + 1,
                    hops=0,
                    host="",
                    port=self.listen_port,
                    supernode=self.role is Role.SUPERNODE,
                    files=len(self.files) + self._index_size,
                )
                out.append(self._send(lk, pong))
        else:
            out += [self._send(lk, hit) for hit in self._answer(msg, lk.id)]
        if msg.ttl > 1:
            forward = dataclasses.replace(msg, ttl=msg.ttl - 1, hops=msg.hops + 1)
            out += [self._send(o, forward) for o in self._flood_links() if o is not lk]
        return out

    def _on_answer(self, now: float, lk: _Link, msg: Pong | QueryHit) -> list[Action]:
        if not self._ttl_ok(msg):
            return []
        if not msg.host:
            if msg.hops != 0:
                self.counters.dropped["no_address"] += 1
                return []
            msg = dataclasses.replace(msg, host=lk.remote.host)
            if isinstance(msg, QueryHit):
                try:
                    messages.encode(msg)
                except LocalProtocolError:  # the address made it longer than 4 kB
                    self.counters.dropped["oversize"] += 1
                    return []
        route = self._routes.get(msg.msg_id)
        if isinstance(msg, Pong) and (route is not None or msg.hops == 0):
            # A pong for our ping, one we route, or an unsolicited one from the neighbour
            # itself (a refusal's "try these instead").
            self._learn(PeerAddr(msg.host, msg.port), msg.supernode)
        expected = Ping if isinstance(msg, Pong) else Query
        if route is None or route.kind is not expected:
            self.counters.dropped["no_route"] += 1
            return []
        if route.link is None:  # ours
            if isinstance(msg, Pong):
                return []
            hits = self._searches.get(msg.msg_id)
            if hits is None:
                self.counters.dropped["late"] += 1
                return []
            holder = PeerAddr(msg.host, msg.port)
            room = self.config.max_results_per_search - len(hits)
            hits.extend(_hit(f, holder, msg.hops + 1) for f in msg.files[: max(room, 0)])
            return [HitsArrived(search=msg.msg_id)]
        back = self._links.get(route.link)
        if back is None:
            self.counters.dropped["no_route"] += 1
            return []
        if msg.ttl <= 1:
            self.counters.dropped["ttl"] += 1
            return []
        route.answers += 1
        if route.answers > self.config.max_routed_hits:
            self.counters.dropped["answer_cap"] += 1
            return []
        return [self._send(back, dataclasses.replace(msg, ttl=msg.ttl - 1, hops=msg.hops + 1))]

    def _on_share(self, lk: _Link, msg: Share) -> list[Action]:
        index = self._leaves.get(lk.id)
        if index is None:
            self.counters.dropped["unexpected"] += 1
            return []
        if msg.reset:
            self._index_size -= len(index.files)
            index.files.clear()
        index.holder = PeerAddr(msg.host or lk.remote.host, msg.port)
        room = min(
            self.config.max_files_per_leaf - len(index.files),
            self.config.max_index_files - self._index_size,
        )
        accepted = list(msg.files[: max(room, 0)])
        if len(accepted) < len(msg.files):
            self.counters.dropped["index_cap"] += len(msg.files) - len(accepted)
        index.files.extend(accepted)
        self._index_size += len(accepted)
        return []

    # ------------------------------------------------------------------ helpers

    def _flood_links(self) -> list[_Link]:
        """Links that carry pings and queries: to peers (PEER) or to supernodes (the rest)."""
        want = Role.PEER if self.role is Role.PEER else Role.SUPERNODE
        return [lk for lk in self._links.values() if lk.role is want]

    def _answer(self, query: Query, source: LinkId) -> list[QueryHit]:
        words = query_words(query.text)
        if not words:
            return []
        budget = self.config.max_hits_per_query
        groups: list[tuple[PeerAddr, list[FileEntry]]] = []
        if self.holder is not None and self.files:
            groups.append((self.holder, list(self.files)))
        for link, index in self._leaves.items():
            if link != source and index.holder is not None:
                groups.append((index.holder, index.files))
        out: list[QueryHit] = []
        for holder, files in groups:
            found = [f for f in files if matches(words, f.name)][:budget]
            if not found:
                continue
            budget -= len(found)
            host = "" if _unspecified(holder.host) else holder.host

            def make(
                chunk: tuple[FileEntry, ...], first: bool, host: str = host, port: int = holder.port
            ) -> QueryHit:
                return QueryHit(
                    msg_id=query.msg_id,
                    ttl=query.hops + 1,
                    hops=0,
                    host=host,
                    port=port,
                    files=chunk,
                )

            out += [m for m in messages.pack(make, found) if isinstance(m, QueryHit)]
            if budget <= 0:
                break
        return out

    def _share_to(self, lk: _Link) -> list[Action]:
        holder = self.holder
        if holder is None:
            return []
        host = "" if _unspecified(holder.host) else holder.host

        def make(chunk: tuple[FileEntry, ...], first: bool) -> Share:
            return Share(reset=first, host=host, port=holder.port, files=chunk)

        msgs = messages.pack(make, self.files) or [make((), True)]
        return [self._send(lk, m) for m in msgs]

    def _send(self, lk: _Link, msg: Message) -> Send:
        self.counters.sent[messages.kind(msg)] += 1
        return Send(link=lk.id, message=msg)

    def _close(self, lk: _Link, reason: str, now: float) -> list[Action]:
        # Forget it now: nothing more is read from or sent on a link we are closing.
        if self._links.pop(lk.id, None) is not None:
            self._forget_link(lk, now)
        return [Close(link=lk.id, reason=reason)]

    def _refuse(self, lk: _Link, reason: str, now: float) -> list[Action]:
        """Close a link we have no room for, after pointing its node at others (Gnutella
        0.6's X-Try): unsolicited pongs (hops 0) carrying our neighbours' addresses."""
        out: list[Action] = []
        others = [o.listen for o in self._flood_links() if o is not lk and o.listen is not None]
        self.rng.shuffle(others)
        for addr in others[:10]:
            pong = Pong(
                msg_id=self.rng.randbytes(messages.ID_LENGTH),
                ttl=1,
                hops=0,
                host=addr.host,
                port=addr.port,
                supernode=self.role is not Role.PEER,
            )
            out.append(self._send(lk, pong))
        return out + self._close(lk, reason, now)

    def _forget_link(self, lk: _Link, now: float) -> None:
        index = self._leaves.pop(lk.id, None)
        if index is not None:
            self._index_size -= len(index.files)
        addr = lk.listen or lk.dialed
        known = self._known.get(addr) if addr is not None else None
        if known is None:
            return
        if now - lk.opened >= self.config.retry_base:
            # A link that lasted: redial soon, but give other nodes a turn first.
            known.failures = 0
            known.next_try = now + self.config.retry_base
        else:  # refused or dropped at once: back off like a failed dial
            known.failures += 1
            known.next_try = now + self.config.retry_base * 2 ** (known.failures - 1)

    def _ttl_ok(self, msg: Ping | Pong | Query | QueryHit) -> bool:
        if msg.ttl < 1:
            self.counters.dropped["ttl"] += 1
            return False
        if msg.ttl + msg.hops > MAX_TTL:
            self.counters.dropped["ttl_cap"] += 1
            return False
        return True

    def _take_token(self, lk: _Link, now: float) -> bool:
        return lk.bucket.take(1, now) == 0.0

    def _new_id(self, now: float, kind: type[Ping] | type[Query]) -> bytes:
        msg_id = self.rng.randbytes(messages.ID_LENGTH)
        self._remember(msg_id, _Route(link=None, kind=kind, time=now))
        return msg_id

    def _remember(self, msg_id: bytes, route: _Route) -> None:
        self._routes[msg_id] = route
        while len(self._routes) > self.config.seen_capacity:
            self._routes.popitem(last=False)

    def _learn(self, addr: PeerAddr, supernode: bool | None) -> None:
        if not addr.port or _unspecified(addr.host):
            return
        known = self._known.get(addr)
        if known is None:
            self._known[addr] = _Known(supernode=supernode)
            while len(self._known) > self.config.known_capacity:
                self._known.popitem(last=False)
        else:
            if supernode is not None:
                known.supernode = supernode
            self._known.move_to_end(addr)

    def _ban_addr(self, addr: PeerAddr, until: float) -> None:
        self._banned_addrs[addr] = until
        while len(self._banned_addrs) > self.config.known_capacity:
            self._banned_addrs.popitem(last=False)

    def _ban_id(self, peer_id: bytes, until: float) -> None:
        self._banned_ids[peer_id] = until
        while len(self._banned_ids) > self.config.known_capacity:
            self._banned_ids.popitem(last=False)

    def _expire(self, now: float) -> None:
        horizon = now - self.config.seen_seconds
        while self._routes:
            msg_id, route = next(iter(self._routes.items()))
            if route.time >= horizon:
                break
            del self._routes[msg_id]
        for addr in [a for a, until in self._banned_addrs.items() if until <= now]:
            del self._banned_addrs[addr]
        for peer_id in [p for p, until in self._banned_ids.items() if until <= now]:
            del self._banned_ids[peer_id]


def _hit(f: FileEntry, holder: PeerAddr, hops: int) -> Hit:
    return Hit(name=f.name, size=f.size, info_hash=f.info_hash, holder=holder, hops=hops)
