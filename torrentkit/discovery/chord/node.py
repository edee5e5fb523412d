"""A Chord node, sans-IO: datagrams and ``now`` in; datagrams, events and a timer deadline out.

After Stoica et al., "Chord: A Scalable Peer-to-peer Lookup Service" (SIGCOMM 2001). The
driver (``driver.py``) owns the socket and the clock; it feeds
:meth:`ChordNode.receive_datagram` and :meth:`ChordNode.handle_timers`, sends what
:meth:`ChordNode.datagrams_to_send` returns, sleeps until :meth:`ChordNode.next_deadline`, and
hands :meth:`ChordNode.events` to whoever asked.

State and rules (all of them live here)
---------------------------------------
- Ring: ``m``-bit ids; a node's id is computed from its address by ``id_of`` (production:
  SHA-1 of ``HOST:PORT``). Ids are never taken from the wire, so no node can claim an id its
  address does not give. A key's position is its 20 bytes mod ``2**m``; its *owner* (primary)
  is ``successor(position)``.
- ``successors``: the first ``r`` nodes clockwise (empty = alone on the ring).
  ``fingers[i]`` = ``successor(id + 2**i)`` (None = unknown). ``predecessor`` or None.
- Lookups are *iterative*: the asking node sends ``find`` to the closest node it knows that
  precedes the key ("the largest node in the table that does not exceed the id"); that node
  answers with the key's successor list if the key lies between it and its successor, or with
  closer nodes. Each hop must be strictly closer to the key, so lookups cannot loop. A node
  that does not answer within ``rpc_timeout`` (after ``rpc_retries`` resends) is marked dead
  (dropped from fingers and successors, skipped for ``dead_ttl``) and the lookup goes on with
  the next best candidate it holds: routing around failures. An answer with closer nodes
  also names the answerer's successors past the key, if its list reaches that far: when
  none of the closer nodes answers (the key's predecessor died), those are the owners.
  ``get``/``put`` then go to the owner; if it is dead, to the next successor in the list
  (which holds a replica). The path is origin, each node that answered, owner: the
  lecture's ``query(7)`` travels 1 -> 6 -> 0.
- Join: a lookup of the node's own id through the bootstrap gives its successor list; the
  first ``stab`` to the successor (asking for its routing nodes, used as finger hints until
  fix_fingers has checked them) completes the join.
- Timers: ``stabilize`` sends ``stab`` to the successor; the reply gives the successor's
  predecessor ``p`` and successor list. The same ``stab`` is the paper's ``notify``. If ``p``
  lies between us and the successor, it becomes the successor only after *it* answers a
  ``stab`` (a forged ``p`` pointing at a victim is never adopted). ``fix_fingers`` checks one
  finger level per tick: it pings the current finger (the reply carries the finger's
  predecessor); if that predecessor lies in ``[start, finger)`` it is the better finger
  (the finger verified it before adopting it) and the level is checked again next tick; an
  unknown finger, or one that does not answer, gets a full lookup. Levels that the successor
  already covers cost nothing, so a tick costs one ping in a settled ring.
  ``check_predecessor`` pings the predecessor only when nothing was heard from it for
  ``2 x stabilize_interval`` (its own ``stab`` messages prove it alive).
- Notify: a ``stab`` from X with X in ``(predecessor, self)`` (or no predecessor) makes X a
  candidate; X becomes predecessor only after answering a ``ping`` from us (a spoofed source
  address never does). ``leave`` messages are only accepted from our current predecessor or
  successor, and the replacement they name is verified the same way.
- Storage: the owner keeps the primary copy; it pushes replicas (``rep``) to its first
  ``r - 1`` successors when a value arrives and when its successor window gains a member.
  When a new predecessor P is adopted, the keys in ``(old predecessor, P]`` are handed to P
  (and dropped here if ``r == 1``); with no old predecessor (we were alone, or have just
  joined and a put came by a view that did not know P yet), every key not in ``(P, self]``;
  when the predecessor moves back (it died or left), the gained keys are pushed to the
  window. A ``put`` for a key behind our predecessor (sent
  by a node whose view predates that predecessor) is also pushed to the predecessor, which
  owns it now. Graceful leave hands all keys to the successor and
  tells predecessor and successor about each other. Values expire after their TTL.
- Guards (docs/limits.md item 12): datagrams over the per-source rate are dropped (neighbours
  get ``neighbour_rate_factor`` times the allowance); malformed datagrams, unknown
  transaction ids and replies from the wrong address are dropped; store caps per source and
  in total; ``put`` needs a token bound to address and key; node lists from others are only
  hints: entries whose ids are not where the protocol says they must be are dropped, and
  nothing becomes a successor or predecessor before it has answered us.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from torrentkit.discovery.chord import messages as msg
from torrentkit.discovery.chord.messages import ErrorReply, Item, Query, Reply
from torrentkit.discovery.chord.ring import (
    NodeRef,
    in_half_open,
    in_open,
    key_position,
    position_key,
    sha1_node_id,
)
from torrentkit.discovery.chord.store import PeerStore, RateLimiter, Tokens
from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.ids import PeerAddr

#: Turns an address into a node id, or None when the address cannot be a node.
IdFunction = Callable[[PeerAddr], "int | None"]

# Datagrams we build stay below this (DATAGRAM_LIMITS allows 1,500 bytes and 500 tokens).
_BATCH_BYTES: Final = 1200
_BATCH_TOKENS: Final = 400


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordConfig:
    """Ring parameters, timers (seconds) and limits."""

    m: int = 160
    #: Successor list length; also the number of copies of each key (primary + r - 1).
    r: int = 8
    stabilize_interval: float = 5.0
    #: Default: ``stabilize_interval``.
    fix_fingers_interval: float | None = None
    #: Default: ``stabilize_interval``.
    check_predecessor_interval: float | None = None
    rpc_timeout: float = 1.0
    rpc_retries: int = 2
    lookup_timeout: float = 30.0
    #: How long a node that timed out is skipped as a routing candidate.
    dead_ttl: float = 60.0
    #: How long an announced peer lives unless announced again.
    peer_ttl: float = 1800.0
    expire_interval: float = 60.0
    token_rotation: float = 300.0
    max_keys: int = 20_000
    max_keys_per_source: int = 2_000
    max_peers_per_key: int = 64
    max_peers_returned: int = 50
    #: Datagrams per ``rate_window`` seconds from one address (libtorrent: 5/s over 10 s).
    rate_limit: int = 50
    rate_window: float = 10.0
    #: Predecessor and successors may send this many times more (hand-over bursts).
    neighbour_rate_factor: int = 10
    max_sources_tracked: int = 10_000
    max_lookups: int = 512

    def __post_init__(self) -> None:
        if not 1 <= self.m <= 160:
            raise LocalProtocolError("m must be 1..160")
        if self.r < 1:
            raise LocalProtocolError("r must be at least 1")
        if self.stabilize_interval <= 0 or self.rpc_timeout <= 0:
            raise LocalProtocolError("intervals must be positive")

    @property
    def fingers_every(self) -> float:
        return self.fix_fingers_interval or self.stabilize_interval

    @property
    def check_pred_every(self) -> float:
        return self.check_predecessor_interval or self.stabilize_interval


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinDone:
    op: int
    ok: bool
    successor: PeerAddr | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupDone:
    """``find_successor(key)``: the owner's address, and the path the lookup took."""

    op: int
    key: bytes
    ok: bool
    owner: PeerAddr | None
    path: tuple[PeerAddr, ...]
    timeouts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPeersDone:
    op: int
    key: bytes
    ok: bool
    peers: tuple[PeerAddr, ...]
    owner: PeerAddr | None
    path: tuple[PeerAddr, ...]
    timeouts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceDone:
    op: int
    key: bytes
    ok: bool
    owner: PeerAddr | None
    path: tuple[PeerAddr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveDone:
    op: int


Event = JoinDone | LookupDone | GetPeersDone | AnnounceDone | LeaveDone


@dataclass(slots=True)
class NodeStats:
    """Counters for tests, the simulator and logs."""

    received: int = 0
    sent: int = 0
    malformed: int = 0
    rate_limited: int = 0
    unmatched: int = 0
    timeouts: int = 0
    refused_stores: int = 0


# --------------------------------------------------------------------------- internals

# Node states.
IDLE: Final = "idle"
JOINING: Final = "joining"
JOINED: Final = "joined"
LEAVING: Final = "leaving"
LEFT: Final = "left"

# Lookup purposes.
_FIND, _GET, _PUT, _JOIN, _FINGER = range(5)
# Lookup phases.
_ROUTE, _FINAL = range(2)
# RPC kinds.
(
    _R_FIND,
    _R_GET,
    _R_PUT,
    _R_STAB,
    _R_CANDIDATE,
    _R_JOIN_STAB,
    _R_VERIFY_PRED,
    _R_CHECK_PRED,
    _R_FINGER,
    _R_REP,
    _R_LEAVE,
) = range(11)
# Timer kinds.
_T_RPC, _T_OP, _T_STABILIZE, _T_FINGERS, _T_CHECK_PRED, _T_EXPIRE, _T_ROTATE = range(7)


@dataclass(slots=True)
class _Rpc:
    tid: bytes
    ref: NodeRef
    data: bytes
    kind: int
    deadline: float
    tries_left: int
    op: int = 0
    arg: int = 0  # finger index for _R_FINGER


@dataclass(slots=True)
class _Lookup:
    op: int
    key: bytes
    pos: int
    purpose: int
    deadline: float
    port: int = 0
    finger: int = -1
    phase: int = _ROUTE
    path: list[PeerAddr] = field(default_factory=list)
    pool: dict[PeerAddr, NodeRef] = field(default_factory=dict)
    asked: set[PeerAddr] = field(default_factory=set)
    owners: list[NodeRef] = field(default_factory=list)
    #: Owners named by the last answer that also gave closer nodes (the answerer's successors
    #: past the key): used if none of the closer nodes answers (the key's predecessor died).
    fallback: list[NodeRef] = field(default_factory=list)
    fallback_from: int = 0
    timeouts: int = 0
    token: bytes = b""


class ChordNode:
    """One ring member. See the module docstring for the rules."""

    def __init__(
        self,
        address: PeerAddr,
        *,
        rng: random.Random,
        now: float,
        config: ChordConfig | None = None,
        id_of: IdFunction | None = None,
    ) -> None:
        self.config = cfg = config or ChordConfig()
        self.size = 1 << cfg.m
        m = cfg.m
        self._id_of: IdFunction = id_of or (lambda a: sha1_node_id(a, m))
        own = self._id_of(address)
        if own is None:
            raise LocalProtocolError(f"no node id for our own address {address}")
        self.address = address
        self.id = own
        self.ref = NodeRef(id=own, addr=address)
        self.rng = rng
        self.state: str = IDLE
        self.successors: list[NodeRef] = []
        self.predecessor: NodeRef | None = None
        self.fingers: list[NodeRef | None] = [None] * m
        self._starts = [(own + (1 << i)) % self.size for i in range(m)]
        self.store = PeerStore(
            max_keys=cfg.max_keys,
            max_keys_per_source=cfg.max_keys_per_source,
            max_peers_per_key=cfg.max_peers_per_key,
        )
        self.stats = NodeStats()
        self._limiter = RateLimiter(
            limit=cfg.rate_limit, window=cfg.rate_window, max_sources=cfg.max_sources_tracked
        )
        self._tokens = Tokens(self._secret())
        self._pred_heard = now
        self._out: list[tuple[bytes, PeerAddr]] = []
        self._events: list[Event] = []
        self._rpcs: dict[bytes, _Rpc] = {}
        self._timers: list[tuple[float, int, int, int | bytes]] = []
        self._timer_seq = 0
        self._lookups: dict[int, _Lookup] = {}
        self._next_op = 1
        self._dead: dict[PeerAddr, float] = {}
        self._ids: dict[PeerAddr, int | None] = {}
        self._pending_pred: set[PeerAddr] = set()
        self._candidates: set[PeerAddr] = set()
        self._pushed: set[PeerAddr] = set()
        self._next_finger = 0
        self._finger_busy = False
        self._routing_dirty = True
        self._route_dists: list[int] = []
        self._route_refs: list[NodeRef] = []
        self._neighbours: set[PeerAddr] = set()
        self._join_op = 0
        self._leave_op = 0
        self._leave_waiting: set[bytes] = set()

    # ------------------------------------------------------------------ public: driving

    def datagrams_to_send(self) -> list[tuple[bytes, PeerAddr]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float:
        """When :meth:`handle_timers` next has work (``math.inf``: never)."""
        timers = self._timers
        while timers:
            when, _, kind, arg = timers[0]
            # Drop the timeouts of answered RPCs and finished lookups, so that the driver
            # does not wake up for nothing.
            if kind == _T_RPC:
                rpc = self._rpcs.get(arg)  # type: ignore[arg-type]
                if rpc is None or rpc.deadline != when:
                    heapq.heappop(timers)
                    continue
            elif kind == _T_OP and arg not in self._lookups:
                heapq.heappop(timers)
                continue
            return when
        return math.inf

    def handle_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, arg = heapq.heappop(timers)
            self._on_timer(kind, arg, now)

    def receive_datagram(self, data: bytes, src: PeerAddr, now: float) -> None:
        if self.state == LEFT or src == self.address:
            return
        self.stats.received += 1
        factor = self.config.neighbour_rate_factor if src in self._neighbours else 1
        if not self._limiter.allow(src, now, factor):
            self.stats.rate_limited += 1
            return
        try:
            message = msg.parse(data)
        except RemoteProtocolError:
            self.stats.malformed += 1
            return
        if isinstance(message, Query):
            self._on_query(message, src, now)
        else:
            self._on_answer(message, src, now)

    # ------------------------------------------------------------------ public: operations

    def create(self, now: float) -> None:
        """Start a new ring, alone on it."""
        if self.state != IDLE:
            raise LocalProtocolError(f"create() in state {self.state}")
        self.state = JOINED
        self._start_timers(now)
        self._dirty()

    def join(self, bootstrap: PeerAddr, now: float) -> int:
        """Join the ring that ``bootstrap`` is on; a :class:`JoinDone` event follows."""
        if self.state != IDLE:
            raise LocalProtocolError(f"join() in state {self.state}")
        if bootstrap == self.address:
            raise LocalProtocolError("cannot bootstrap from our own address")
        op = self._new_op()
        self._join_op = op
        self.state = JOINING
        ref = self._ref(bootstrap)
        lk = _Lookup(
            op=op,
            key=position_key(self.id),
            pos=self.id,
            purpose=_JOIN,
            deadline=now + self.config.lookup_timeout,
            path=[self.address],
        )
        if ref is None:
            self._events.append(JoinDone(op=op, ok=False, successor=None))
            self.state = IDLE
            return op
        lk.pool[bootstrap] = ref
        self._lookups[op] = lk
        self._push_timer(lk.deadline, _T_OP, op)
        self._lookup_step(lk, now)
        return op

    def lookup(self, key: bytes, now: float) -> int:
        """Find the key's successor; a :class:`LookupDone` event follows."""
        return self._begin(_FIND, key, now)

    def get_peers(self, key: bytes, now: float) -> int:
        """Peers stored under ``key``; a :class:`GetPeersDone` event follows."""
        return self._begin(_GET, key, now)

    def announce(self, key: bytes, port: int, now: float) -> int:
        """Store our IP with ``port`` under ``key`` at its owner; :class:`AnnounceDone` follows."""
        if not 0 < port < 65536:
            raise LocalProtocolError(f"port must be 1-65535, got {port}")
        return self._begin(_PUT, key, now, port=port)

    def leave(self, now: float) -> int:
        """Leave gracefully: keys to the successor, neighbours told; :class:`LeaveDone` follows."""
        op = self._new_op()
        if self.state != JOINED or not self.successors:
            self._finish_leave(op)
            return op
        self.state = LEAVING
        self._leave_op = op
        succ = self.successors[0]
        pred = self.predecessor
        keys = [k for k in self.store if self._owns(key_position(k, self.config.m))]
        for batch in self._batches(keys, now):
            tid = self._call(succ, Query(tid=b"", method=msg.REP, items=batch), _R_LEAVE, now)
            self._leave_waiting.add(tid)
        tid = self._call(
            succ,
            Query(tid=b"", method=msg.LEAVE, predecessor=pred.addr if pred is not None else None),
            _R_LEAVE,
            now,
        )
        self._leave_waiting.add(tid)
        if pred is not None and pred != succ:
            tid = self._call(
                pred,
                Query(
                    tid=b"",
                    method=msg.LEAVE,
                    successors=tuple(s.addr for s in self.successors),
                ),
                _R_LEAVE,
                now,
            )
            self._leave_waiting.add(tid)
        return op

    # ------------------------------------------------------------------ public: inspection

    @property
    def successor(self) -> NodeRef:
        return self.successors[0] if self.successors else self.ref

    def finger_start(self, i: int) -> int:
        return self._starts[i]

    def finger_table(self) -> list[tuple[int, int, NodeRef | None]]:
        """Rows ``(i, id + 2**i, successor)`` as in the lecture's tables."""
        return [(i, self._starts[i], self.fingers[i]) for i in range(self.config.m)]

    def distinct_fingers(self) -> int:
        return len({f.addr for f in self.fingers if f is not None and f != self.ref})

    def node_id(self, addr: PeerAddr) -> int | None:
        return self._id(addr)

    # ================================================================== internals

    def _secret(self) -> bytes:
        return self.rng.getrandbits(64).to_bytes(8, "big")

    def _new_op(self) -> int:
        op = self._next_op
        self._next_op += 1
        return op

    def _id(self, addr: PeerAddr) -> int | None:
        ids = self._ids
        if addr in ids:
            return ids[addr]
        if len(ids) > 8192:
            ids.clear()
        value = ids[addr] = self._id_of(addr)
        return value

    def _ref(self, addr: PeerAddr) -> NodeRef | None:
        node_id = self._id(addr)
        return None if node_id is None else NodeRef(id=node_id, addr=addr)

    def _is_dead(self, addr: PeerAddr, now: float) -> bool:
        when = self._dead.get(addr)
        if when is None:
            return False
        if now - when > self.config.dead_ttl:
            del self._dead[addr]
            return False
        return True

    def _owns(self, pos: int) -> bool:
        """Is ``pos`` in ``(predecessor, self]``? Alone, we own everything."""
        if not self.successors and self.predecessor is None:
            return True
        pred = self.predecessor
        return pred is not None and in_half_open(pos, pred.id, self.id, self.size)

    # ------------------------------------------------------------------ timers

    def _push_timer(self, when: float, kind: int, arg: int | bytes = 0) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, kind, arg))

    def _start_timers(self, now: float) -> None:
        cfg = self.config
        # A random phase, so that nodes started together do not tick together.
        self._push_timer(now + cfg.stabilize_interval * self.rng.uniform(0.1, 1.0), _T_STABILIZE)
        self._push_timer(now + cfg.fingers_every * self.rng.uniform(0.1, 1.0), _T_FINGERS)
        self._push_timer(now + cfg.check_pred_every * self.rng.uniform(0.5, 1.0), _T_CHECK_PRED)
        self._push_timer(now + cfg.expire_interval, _T_EXPIRE)
        self._push_timer(now + cfg.token_rotation, _T_ROTATE)

    def _jittered(self, interval: float) -> float:
        return interval * self.rng.uniform(0.9, 1.1)

    def _on_timer(self, kind: int, arg: int | bytes, now: float) -> None:
        if kind == _T_RPC:
            assert isinstance(arg, bytes)
            rpc = self._rpcs.get(arg)
            if rpc is not None and rpc.deadline <= now:
                self._rpc_expired(rpc, now)
            return
        if kind == _T_OP:
            assert isinstance(arg, int)
            lk = self._lookups.get(arg)
            if lk is not None and lk.deadline <= now:
                self._finish(lk, ok=False, now=now)
            return
        if self.state not in (JOINED, LEAVING):
            return
        cfg = self.config
        if kind == _T_STABILIZE:
            self._stabilize(now)
            self._push_timer(now + self._jittered(cfg.stabilize_interval), _T_STABILIZE)
        elif kind == _T_FINGERS:
            self._fix_fingers(now)
            self._push_timer(now + self._jittered(cfg.fingers_every), _T_FINGERS)
        elif kind == _T_CHECK_PRED:
            self._check_predecessor(now)
            self._push_timer(now + self._jittered(cfg.check_pred_every), _T_CHECK_PRED)
        elif kind == _T_EXPIRE:
            self.store.expire(now)
            self._push_timer(now + cfg.expire_interval, _T_EXPIRE)
        elif kind == _T_ROTATE:
            self._tokens.rotate(self._secret())
            self._push_timer(now + cfg.token_rotation, _T_ROTATE)

    # ------------------------------------------------------------------ RPC layer

    def _send(self, data: bytes, addr: PeerAddr) -> None:
        self.stats.sent += 1
        self._out.append((data, addr))

    def _call(
        self, ref: NodeRef, query: Query, kind: int, now: float, *, op: int = 0, arg: int = 0
    ) -> bytes:
        rpcs = self._rpcs
        while True:
            tid = self.rng.getrandbits(32).to_bytes(4, "big")
            if tid not in rpcs:
                break
        data = msg.encode_query(query, tid)
        deadline = now + self.config.rpc_timeout
        rpcs[tid] = _Rpc(
            tid=tid,
            ref=ref,
            data=data,
            kind=kind,
            deadline=deadline,
            tries_left=self.config.rpc_retries,
            op=op,
            arg=arg,
        )
        self._push_timer(deadline, _T_RPC, tid)
        self._send(data, ref.addr)
        return tid

    def _rpc_expired(self, rpc: _Rpc, now: float) -> None:
        if rpc.tries_left > 0:
            rpc.tries_left -= 1
            rpc.deadline = now + self.config.rpc_timeout
            self._push_timer(rpc.deadline, _T_RPC, rpc.tid)
            self._send(rpc.data, rpc.ref.addr)
            return
        del self._rpcs[rpc.tid]
        self.stats.timeouts += 1
        self._rpc_failed(rpc, now, dead=True)

    def _reply(self, reply: Reply, src: PeerAddr) -> None:
        self._send(msg.encode_reply(reply), src)

    def _error(self, tid: bytes, code: int, text: str, src: PeerAddr) -> None:
        self._send(msg.encode_error(ErrorReply(tid=tid, code=code, message=text)), src)

    def _on_answer(self, answer: Reply | ErrorReply, src: PeerAddr, now: float) -> None:
        rpc = self._rpcs.get(answer.tid)
        if rpc is None or rpc.ref.addr != src:
            self.stats.unmatched += 1
            return
        del self._rpcs[answer.tid]
        self._dead.pop(src, None)
        pred = self.predecessor
        if pred is not None and pred.addr == src:
            self._pred_heard = now
        if isinstance(answer, ErrorReply):
            self._rpc_failed(rpc, now, dead=False)
            return
        kind = rpc.kind
        if kind in (_R_FIND, _R_GET, _R_PUT):
            self._lookup_answer(rpc, answer, now)
        elif kind in (_R_STAB, _R_CANDIDATE, _R_JOIN_STAB):
            self._stab_answer(rpc, answer, now)
        elif kind == _R_VERIFY_PRED:
            self._pending_pred.discard(src)
            self._maybe_adopt_predecessor(rpc.ref, now)
        elif kind == _R_CHECK_PRED:
            pass
        elif kind == _R_FINGER:
            self._finger_answer(rpc, answer, now)
        elif kind == _R_LEAVE:
            self._leave_answer(rpc.tid)

    def _rpc_failed(self, rpc: _Rpc, now: float, *, dead: bool) -> None:
        """The RPC got an error, or no answer at all (``dead``)."""
        if dead:
            self._node_failed(rpc.ref.addr, now)
        kind = rpc.kind
        if kind in (_R_FIND, _R_GET, _R_PUT):
            lk = self._lookups.get(rpc.op)
            if lk is None:
                return
            lk.timeouts += dead
            if kind != _R_FIND:
                if not dead:  # the owner answered with an error (bad token, store full)
                    self._finish(lk, ok=False, now=now)
                    return
                if lk.owners and lk.owners[0] == rpc.ref:
                    lk.owners.pop(0)
                lk.token = b""  # a token is only good at the node that issued it
            self._lookup_step(lk, now)
        elif kind == _R_STAB:
            if not dead:
                return
            self._stabilize(now)  # the next successor in the list, at once
        elif kind == _R_JOIN_STAB:
            if self.successors:
                self._send_stab(self.successors[0], _R_JOIN_STAB, now, want_fingers=True)
            else:
                self._join_failed(now)
        elif kind == _R_CANDIDATE:
            self._candidates.discard(rpc.ref.addr)
        elif kind == _R_VERIFY_PRED:
            self._pending_pred.discard(rpc.ref.addr)
        elif kind == _R_FINGER:
            self._finger_busy = False
            self._finger_lookup(rpc.arg, now)
        elif kind == _R_LEAVE:
            self._leave_answer(rpc.tid)

    def _node_failed(self, addr: PeerAddr, now: float) -> None:
        """``addr`` did not answer: forget it everywhere, and skip it for a while."""
        dead = self._dead
        if len(dead) > 4096:
            for a in list(dead)[:2048]:
                del dead[a]
        dead[addr] = now
        changed = False
        for i, f in enumerate(self.fingers):
            if f is not None and f.addr == addr:
                self.fingers[i] = None
                changed = True
        before = len(self.successors)
        self.successors = [s for s in self.successors if s.addr != addr]
        changed = changed or before != len(self.successors)
        if self.predecessor is not None and self.predecessor.addr == addr:
            self.predecessor = None
            changed = True
        self._pushed.discard(addr)
        if changed:
            self._dirty()

    # ------------------------------------------------------------------ routing table

    def _dirty(self) -> None:
        self._routing_dirty = True
        n = {s.addr for s in self.successors}
        if self.predecessor is not None:
            n.add(self.predecessor.addr)
        self._neighbours = n

    def _routing(self) -> tuple[list[int], list[NodeRef]]:
        if self._routing_dirty:
            known: dict[PeerAddr, NodeRef] = {}
            for f in self.fingers:
                if f is not None:
                    known[f.addr] = f
            for s in self.successors:
                known[s.addr] = s
            known.pop(self.address, None)
            me, size = self.id, self.size
            pairs = sorted(((s.id - me) % size, i, s) for i, s in enumerate(known.values()))
            self._route_dists = [d for d, _, _ in pairs]
            self._route_refs = [s for _, _, s in pairs]
            self._routing_dirty = False
        return self._route_dists, self._route_refs

    def _closest_preceding(self, pos: int, count: int, now: float) -> list[NodeRef]:
        """Up to ``count`` known nodes in ``(self, pos]``, closest to ``pos`` first."""
        dists, refs = self._routing()
        idx = bisect_right(dists, (pos - self.id) % self.size) - 1
        out: list[NodeRef] = []
        while idx >= 0 and len(out) < count:
            ref = refs[idx]
            if dists[idx] and not self._is_dead(ref.addr, now):
                out.append(ref)
            idx -= 1
        return out

    # ------------------------------------------------------------------ lookups

    def _begin(
        self, purpose: int, key: bytes, now: float, *, port: int = 0, finger: int = -1
    ) -> int:
        if len(key) != 20:
            raise LocalProtocolError("keys are 20 bytes")
        op = self._new_op()
        pos = key_position(key, self.config.m)
        lk = _Lookup(
            op=op,
            key=key,
            pos=pos,
            purpose=purpose,
            port=port,
            finger=finger,
            deadline=now + self.config.lookup_timeout,
            path=[self.address],
        )
        if self.state != JOINED or len(self._lookups) >= self.config.max_lookups:
            self._lookups[op] = lk
            self._finish(lk, ok=False, now=now)
            return op
        self._lookups[op] = lk
        if self._owns(pos):
            lk.phase = _FINAL
            lk.owners = [self.ref]
        elif in_half_open(pos, self.id, self.successor.id, self.size):
            lk.phase = _FINAL
            lk.owners = list(self.successors)
        else:
            for ref in self._closest_preceding(pos, 4, now):
                lk.pool[ref.addr] = ref
            if not lk.pool and self.successors:
                lk.pool[self.successors[0].addr] = self.successors[0]
        self._push_timer(lk.deadline, _T_OP, op)
        self._lookup_step(lk, now)
        return op

    def _lookup_step(self, lk: _Lookup, now: float) -> None:
        if lk.op not in self._lookups:
            return
        if lk.phase == _ROUTE:
            pos, size = lk.pos, self.size
            best = min(lk.pool.values(), key=lambda r: (pos - r.id) % size, default=None)
            if lk.fallback and (
                best is None or not in_half_open(best.id, lk.fallback_from, pos, size)
            ):
                lk.owners, lk.fallback = lk.fallback, []
                lk.phase = _FINAL
                self._lookup_step(lk, now)
                return
            if best is None:
                self._finish(lk, ok=False, now=now)
                return
            del lk.pool[best.addr]
            lk.asked.add(best.addr)
            self._call(best, Query(tid=b"", method=msg.FIND, key=lk.key), _R_FIND, now, op=lk.op)
            return
        # Final phase: the owner list is known.
        while lk.owners and self._is_dead(lk.owners[0].addr, now):
            lk.owners.pop(0)
        if lk.purpose in (_FIND, _JOIN, _FINGER):
            self._finish(lk, ok=bool(lk.owners), now=now)
            return
        if not lk.owners:
            self._finish(lk, ok=False, now=now)
            return
        owner = lk.owners[0]
        if owner == self.ref:
            self._local_final(lk, now)
            return
        if lk.purpose == _PUT and lk.token:
            q = Query(tid=b"", method=msg.PUT, key=lk.key, port=lk.port, token=lk.token)
            self._call(owner, q, _R_PUT, now, op=lk.op)
        else:
            self._call(owner, Query(tid=b"", method=msg.GET, key=lk.key), _R_GET, now, op=lk.op)

    def _local_final(self, lk: _Lookup, now: float) -> None:
        if lk.purpose == _PUT:
            self._store_and_replicate(
                lk.key, PeerAddr(self.address.host, lk.port), now, self.address
            )
        self._finish(
            lk,
            ok=True,
            now=now,
            peers=tuple(self.store.peers(lk.key, now, self.config.max_peers_returned)),
        )

    def _lookup_answer(self, rpc: _Rpc, reply: Reply, now: float) -> None:
        lk = self._lookups.get(rpc.op)
        if lk is None:
            return
        src = rpc.ref
        if lk.path[-1] != src.addr:
            lk.path.append(src.addr)
        if rpc.kind == _R_GET:
            if lk.purpose == _PUT:
                if not reply.token:
                    self._finish(lk, ok=False, now=now)
                    return
                lk.token = reply.token
                self._lookup_step(lk, now)
                return
            self._finish(lk, ok=True, now=now, peers=reply.peers)
            return
        if rpc.kind == _R_PUT:
            self._finish(lk, ok=True, now=now)
            return
        # A ``find`` answer.
        owners = self._owner_list(lk, src, reply.successors or ())
        if not reply.closer:
            if owners:
                lk.owners = owners
                lk.phase = _FINAL
            self._lookup_step(lk, now)
            return
        if owners:
            lk.fallback, lk.fallback_from = owners, src.id
        size, pos = self.size, lk.pos
        for addr in reply.closer:
            ref = self._ref(addr)
            if (
                ref is None
                or addr in lk.asked
                or addr == self.address
                or not in_half_open(ref.id, src.id, pos, size)  # must be closer to the key
                or self._is_dead(addr, now)
            ):
                continue
            lk.pool[addr] = ref
        self._lookup_step(lk, now)

    def _owner_list(self, lk: _Lookup, src: NodeRef, addrs: tuple[PeerAddr, ...]) -> list[NodeRef]:
        """The key's successor and the ones after it, as ``src`` names them; cut where the
        claim cannot be true (the first must follow the key, the rest go clockwise)."""
        size, pos = self.size, lk.pos
        owners: list[NodeRef] = []
        for addr in addrs:
            ref = self._ref(addr)
            if ref is None or (lk.purpose == _JOIN and addr == self.address):
                continue
            if owners:
                if not in_open(ref.id, owners[-1].id, src.id, size) or ref in owners:
                    break  # a successor list goes clockwise; the rest is not to be trusted
            elif ref != src and not in_half_open(pos, src.id, ref.id, size):
                break  # "the key's successor" that does not follow the key: a lie
            owners.append(ref)
        return owners

    def _finish(
        self, lk: _Lookup, *, ok: bool, now: float, peers: tuple[PeerAddr, ...] = ()
    ) -> None:
        if self._lookups.pop(lk.op, None) is None:
            return
        owner = lk.owners[0] if ok and lk.owners else None
        owner_addr = owner.addr if owner is not None else None
        path = list(lk.path)
        if owner_addr is not None and path[-1] != owner_addr and lk.purpose in (_GET, _PUT):
            path.append(owner_addr)
        if lk.purpose == _FIND:
            self._events.append(
                LookupDone(
                    op=lk.op,
                    key=lk.key,
                    ok=ok,
                    owner=owner_addr,
                    path=tuple(path),
                    timeouts=lk.timeouts,
                )
            )
        elif lk.purpose == _GET:
            self._events.append(
                GetPeersDone(
                    op=lk.op,
                    key=lk.key,
                    ok=ok,
                    peers=peers,
                    owner=owner_addr,
                    path=tuple(path),
                    timeouts=lk.timeouts,
                )
            )
        elif lk.purpose == _PUT:
            self._events.append(
                AnnounceDone(op=lk.op, key=lk.key, ok=ok, owner=owner_addr, path=tuple(path))
            )
        elif lk.purpose == _JOIN:
            self._join_lookup_done(lk, ok, now)
        elif lk.purpose == _FINGER:
            self._finger_busy = False
            if owner is not None:
                self._set_finger(lk.finger, owner)

    # ------------------------------------------------------------------ join / leave

    def _join_lookup_done(self, lk: _Lookup, ok: bool, now: float) -> None:
        owners = [o for o in lk.owners if o.addr != self.address]
        if not ok or not owners:
            self._join_failed(now)
            return
        self.successors = owners[: self.config.r]
        self.state = JOINED
        self._dirty()
        self._send_stab(self.successors[0], _R_JOIN_STAB, now, want_fingers=True)

    def _join_failed(self, now: float) -> None:
        self.state = IDLE
        self.successors = []
        self._dirty()
        self._events.append(JoinDone(op=self._join_op, ok=False, successor=None))

    def _leave_answer(self, tid: bytes) -> None:
        self._leave_waiting.discard(tid)
        if self.state == LEAVING and not self._leave_waiting:
            self._finish_leave(self._leave_op)

    def _finish_leave(self, op: int) -> None:
        self.state = LEFT
        self._rpcs.clear()
        self._timers.clear()
        for lk in list(self._lookups.values()):
            self._finish(lk, ok=False, now=0.0)
        self._events.append(LeaveDone(op=op))

    # ------------------------------------------------------------------ stabilization

    def _send_stab(
        self,
        ref: NodeRef,
        kind: int,
        now: float,
        *,
        want_fingers: bool = False,
    ) -> None:
        self._call(ref, Query(tid=b"", method=msg.STAB, want_fingers=want_fingers), kind, now)

    def _stabilize(self, now: float) -> None:
        if self.state != JOINED:
            return
        if not self.successors:
            # Alone: whoever notified us is our successor too (the paper's x = succ.pred).
            if self.predecessor is None:
                live = [f for f in self.fingers if f is not None and f != self.ref]
                if not live:
                    return
                self.successors = [min(live, key=lambda f: (f.id - self.id) % self.size)]
            else:
                self.successors = [self.predecessor]
            self._dirty()
        self._send_stab(self.successors[0], _R_STAB, now)

    def _stab_answer(self, rpc: _Rpc, reply: Reply, now: float) -> None:
        target = rpc.ref
        size = self.size
        if rpc.kind == _R_CANDIDATE:
            self._candidates.discard(target.addr)
            if self.successors and not in_open(target.id, self.id, self.successors[0].id, size):
                return
        elif not self.successors or self.successors[0] != target:
            return  # our successor changed meanwhile
        merged = [target]
        seen = {target.addr, self.address}
        for addr in reply.successors or ():
            ref = self._ref(addr)
            if ref is None or addr in seen or self._is_dead(addr, now):
                continue
            # Successor lists go clockwise from the sender and stop before us.
            if not in_open(ref.id, merged[-1].id, self.id, size):
                break
            merged.append(ref)
            seen.add(addr)
            if len(merged) >= self.config.r:
                break
        self.successors = merged
        self._dirty()
        if reply.fingers:
            self._finger_hints(reply.fingers, now)
        if rpc.kind == _R_JOIN_STAB:
            self._start_timers(now)
            self._events.append(JoinDone(op=self._join_op, ok=True, successor=target.addr))
        p = reply.predecessor
        if p is not None and p != self.address and p not in self._candidates:
            pref = self._ref(p)
            if (
                pref is not None
                and in_open(pref.id, self.id, target.id, size)
                and not self._is_dead(p, now)
            ):
                # A closer successor, by the successor's word: adopt it once it answers.
                self._candidates.add(p)
                self._send_stab(pref, _R_CANDIDATE, now)
        self._push_window(now)

    def _check_predecessor(self, now: float) -> None:
        pred = self.predecessor
        if pred is None:
            return
        silent = now - self._pred_heard >= 2 * self.config.stabilize_interval
        if silent and not any(r.kind == _R_CHECK_PRED for r in self._rpcs.values()):
            self._call(pred, Query(tid=b"", method=msg.PING), _R_CHECK_PRED, now)

    def _notify(self, src: NodeRef, now: float) -> None:
        pred = self.predecessor
        if pred is not None and pred.addr == src.addr:
            self._pred_heard = now
            return
        closer = pred is None or in_open(src.id, pred.id, self.id, self.size)
        # At most a few verifications at once: spoofed stabs cannot make us ping a crowd.
        if closer and src.addr not in self._pending_pred and len(self._pending_pred) < 16:
            self._pending_pred.add(src.addr)
            self._call(src, Query(tid=b"", method=msg.PING), _R_VERIFY_PRED, now)

    def _maybe_adopt_predecessor(self, ref: NodeRef, now: float) -> None:
        old = self.predecessor
        if ref.addr == self.address:
            return
        if old is not None and not in_open(ref.id, old.id, self.id, self.size):
            return
        self.predecessor = ref
        self._pred_heard = now
        self._dirty()
        m = self.config.m
        if old is None:
            # What is not in (ref, self] is not ours: ref's, or behind it. Alone, we owned
            # everything; just joined, a put may have come by a view that did not know ref
            # yet (the owner then is ref, which would otherwise never hear of the key).
            give = [
                k
                for k in self.store
                if not in_half_open(key_position(k, m), ref.id, self.id, self.size)
            ]
            self._hand_over(ref, give, now, drop=self.config.r == 1)
            # Our predecessor had gone: what we own now (maybe more than before) to the window.
            self._push_keys(self._window(), self._owned_keys(), now)
            if not self.successors:
                # We were alone: the paper's next stabilize makes it our successor too.
                self.successors = [ref]
                self._dirty()
        else:
            # A new node between old and us: (old, ref] is its range now.
            give = [
                k for k in self.store if in_half_open(key_position(k, m), old.id, ref.id, self.size)
            ]
            self._hand_over(ref, give, now, drop=self.config.r == 1)

    # ------------------------------------------------------------------ fingers

    def _set_finger(self, i: int, ref: NodeRef) -> None:
        """``ref`` is successor(start_i): it is also the finger of every later start it covers."""
        span = (ref.id - self.id) % self.size or self.size
        m = self.config.m
        j = i
        while j < m and (1 << j) <= span:
            self.fingers[j] = ref
            j += 1
        self._next_finger = j if j < m else 0
        self._dirty()

    def _finger_hints(self, addrs: tuple[PeerAddr, ...], now: float) -> None:
        """Fill unknown fingers from another node's routing nodes (best guesses, checked later
        by fix_fingers)."""
        refs = [
            r
            for a in addrs
            if a != self.address and not self._is_dead(a, now) and (r := self._ref(a)) is not None
        ]
        refs.extend(self.successors)
        if not refs:
            return
        me, size = self.id, self.size
        refs.sort(key=lambda r: (r.id - me) % size)
        dists = [(r.id - me) % size for r in refs]
        for i in range(self.config.m):
            if self.fingers[i] is None:
                k = bisect_right(dists, (1 << i) - 1)
                if k < len(refs):
                    self.fingers[i] = refs[k]
        self._dirty()

    def _fix_fingers(self, now: float) -> None:
        if self._finger_busy or self.state != JOINED:
            return
        m, size = self.config.m, self.size
        succ = self.successor
        span = (succ.id - self.id) % size or size
        i = self._next_finger
        if i == 0 or (1 << i) <= span:
            while i < m and (1 << i) <= span:
                self.fingers[i] = succ
                i += 1
            self._dirty()
        if i >= m:
            self._next_finger = 0
            return
        self._next_finger = i
        f = self.fingers[i]
        if f is None or f == self.ref or self._is_dead(f.addr, now):
            self._finger_lookup(i, now)
            return
        self._finger_busy = True
        self._call(f, Query(tid=b"", method=msg.PING), _R_FINGER, now, arg=i)

    def _finger_answer(self, rpc: _Rpc, reply: Reply, now: float) -> None:
        self._finger_busy = False
        i, f = rpc.arg, rpc.ref
        start = self._starts[i]
        p = reply.predecessor
        pref = self._ref(p) if p is not None and p != self.address else None
        # f is successor(start) unless its predecessor lies in [start, f): then that node is
        # closer (f checked it before adopting it); adopt it, and look at this level again
        # on the next tick (the paper's finger repair, one ping per step).
        if (
            pref is not None
            and pref.id != f.id
            and in_half_open(pref.id, (start - 1) % self.size, f.id, self.size)
            and not self._is_dead(pref.addr, now)
        ):
            self.fingers[i] = pref
            self._dirty()
            return
        self._set_finger(i, f)

    def _finger_lookup(self, i: int, now: float) -> None:
        if self.state != JOINED:
            return
        self._finger_busy = True
        self._begin(_FINGER, position_key(self._starts[i]), now, finger=i)

    # ------------------------------------------------------------------ storage

    def _window(self) -> list[NodeRef]:
        return self.successors[: self.config.r - 1]

    def _owned_keys(self) -> list[bytes]:
        if self.predecessor is None and self.successors:
            return []
        m = self.config.m
        return [k for k in self.store if self._owns(key_position(k, m))]

    def _push_window(self, now: float) -> None:
        """Replicas to successors that joined our window since the last push."""
        window = self._window()
        new = [s for s in window if s.addr not in self._pushed]
        if not new or (self.predecessor is None and self.successors):
            return
        self._pushed = {s.addr for s in window}
        self._push_keys(new, self._owned_keys(), now)

    def _push_keys(self, targets: list[NodeRef], keys: list[bytes], now: float) -> None:
        if not keys:
            return
        for batch in self._batches(keys, now):
            for t in targets:
                self._call(t, Query(tid=b"", method=msg.REP, items=batch), _R_REP, now)

    def _hand_over(self, to: NodeRef, keys: list[bytes], now: float, *, drop: bool) -> None:
        if not keys:
            return
        for batch in self._batches(keys, now):
            self._call(to, Query(tid=b"", method=msg.REP, items=batch), _R_REP, now)
        if drop:
            for k in keys:
                self.store.remove(k)

    def _batches(self, keys: list[bytes], now: float) -> list[tuple[Item, ...]]:
        batches: list[tuple[Item, ...]] = []
        current: list[Item] = []
        size = tokens = 0
        for key in keys:
            peers = self.store.peers_with_ttl(key, now)
            if not peers:
                continue
            item = Item(key=key, peers=peers)
            item_size = 26 + sum(12 + len(p.host) for p, _ in peers)
            item_tokens = 4 + 4 * len(peers)
            full = size + item_size > _BATCH_BYTES or tokens + item_tokens > _BATCH_TOKENS
            if current and full:
                batches.append(tuple(current))
                current, size, tokens = [], 0, 0
            current.append(item)
            size += item_size
            tokens += item_tokens
        if current:
            batches.append(tuple(current))
        return batches

    def _store_and_replicate(
        self, key: bytes, peer: PeerAddr, now: float, source: PeerAddr
    ) -> bool:
        if not self.store.add(key, peer, now + self.config.peer_ttl, source):
            self.stats.refused_stores += 1
            return False
        self._push_keys(self._window(), [key], now)
        pred = self.predecessor
        if pred is not None and not self._owns(key_position(key, self.config.m)):
            # Routed here by a view older than our new predecessor (it joined, and took
            # the key's range, while the put was on its way): the owner is behind us.
            self._push_keys([pred], [key], now)
        return True

    # ------------------------------------------------------------------ queries

    def _on_query(self, q: Query, src: PeerAddr, now: float) -> None:
        method = q.method
        if method == msg.PING:
            pred = self.predecessor
            self._reply(Reply(tid=q.tid, predecessor=pred.addr if pred is not None else None), src)
            return
        if self.state != JOINED:
            return  # not (or no longer) a ring member: stay silent
        sref = self._ref(src)
        if sref is None:
            return
        self._dead.pop(src, None)
        pred = self.predecessor
        if pred is not None and pred.addr == src:
            self._pred_heard = now
        if method == msg.FIND:
            self._on_find(q, src, now)
        elif method == msg.STAB:
            fingers: tuple[PeerAddr, ...] = ()
            if q.want_fingers:
                _, refs = self._routing()
                fingers = tuple(r.addr for r in refs[-32:])
            self._reply(
                Reply(
                    tid=q.tid,
                    predecessor=pred.addr if pred is not None else None,
                    successors=tuple(s.addr for s in self.successors[: self.config.r]),
                    fingers=fingers,
                ),
                src,
            )
            self._notify(sref, now)
        elif method == msg.GET:
            self._reply(
                Reply(
                    tid=q.tid,
                    peers=tuple(self.store.peers(q.key, now, self.config.max_peers_returned)),
                    token=self._tokens.issue(src, q.key),
                ),
                src,
            )
        elif method == msg.PUT:
            if not self._tokens.check(q.token, src, q.key):
                self._error(q.tid, msg.PROTOCOL_ERROR, "bad token", src)
                return
            if self._store_and_replicate(q.key, PeerAddr(src.host, q.port), now, src):
                self._reply(Reply(tid=q.tid), src)
            else:
                self._error(q.tid, msg.GENERIC_ERROR, "store full", src)
        elif method == msg.REP:
            self._on_rep(q, sref, now)
        elif method == msg.LEAVE:
            self._on_leave(q, sref, now)
        else:
            self._error(q.tid, msg.METHOD_UNKNOWN, "method unknown", src)

    def _on_find(self, q: Query, src: PeerAddr, now: float) -> None:
        pos = key_position(q.key, self.config.m)
        if self._owns(pos):
            owners = (self.address, *(s.addr for s in self.successors[: self.config.r - 1]))
            self._reply(Reply(tid=q.tid, successors=owners), src)
            return
        if not self.successors:
            self._reply(Reply(tid=q.tid, successors=(self.address,)), src)
            return
        if in_half_open(pos, self.id, self.successor.id, self.size):
            self._reply(Reply(tid=q.tid, successors=tuple(s.addr for s in self.successors)), src)
            return
        closer = self._closest_preceding(pos, 3, now)
        if not closer:
            closer = self.successors[:1]
        # Our successors past the key: its owners, should the closer nodes all be dead.
        past: tuple[PeerAddr, ...] = ()
        for i, succ in enumerate(self.successors):
            if in_half_open(pos, self.id, succ.id, self.size):
                past = tuple(x.addr for x in self.successors[i:])
                break
        reply = Reply(tid=q.tid, closer=tuple(r.addr for r in closer), successors=past or None)
        self._reply(reply, src)

    def _on_rep(self, q: Query, sref: NodeRef, now: float) -> None:
        size, m = self.size, self.config.m
        neighbour = sref.addr in self._neighbours
        ok = True
        for item in q.items:
            pos = key_position(item.key, m)
            # Plausible: a neighbour, or a key we own, or a sender between the key and us
            # (its primary or an earlier replica).
            if not (
                neighbour
                or self._owns(pos)
                or in_half_open(sref.id, (pos - 1) % size, self.id, size)
            ):
                continue
            for peer, ttl in item.peers:
                ttl = min(ttl, int(self.config.peer_ttl))
                if ttl > 0 and not self.store.add(item.key, peer, now + ttl, sref.addr):
                    self.stats.refused_stores += 1
                    ok = False
        if ok:
            self._reply(Reply(tid=q.tid), sref.addr)
        else:
            self._error(q.tid, msg.GENERIC_ERROR, "store full", sref.addr)

    def _on_leave(self, q: Query, sref: NodeRef, now: float) -> None:
        self._reply(Reply(tid=q.tid), sref.addr)
        if self.predecessor is not None and self.predecessor.addr == sref.addr:
            self.predecessor = None
            self._dirty()
            if q.predecessor is not None and q.predecessor != self.address:
                ref = self._ref(q.predecessor)
                if ref is not None:
                    self._notify(ref, now)  # verified by ping before adoption
        if self.successors and self.successors[0].addr == sref.addr:
            self._node_failed(sref.addr, now)
            self._dead.pop(sref.addr, None)
            for addr in q.successors:
                ref = self._ref(addr)
                if ref is not None and addr != self.address and ref not in self.successors:
                    self.successors.append(ref)
            size = self.size
            self.successors.sort(key=lambda s: (s.id - self.id) % size)
            del self.successors[self.config.r :]
            self._dirty()
            self._stabilize(now)  # contacts the new successor at once: it must answer


__all__ = [
    "AnnounceDone",
    "ChordConfig",
    "ChordNode",
    "Event",
    "GetPeersDone",
    "IdFunction",
    "JoinDone",
    "LeaveDone",
    "LookupDone",
    "NodeStats",
]
