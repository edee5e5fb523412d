"""The tracker's swarms in Redis: any number of tracker processes, one swarm view.

One announce is one round trip: an atomic Lua script (:data:`ANNOUNCE_LUA`) applies the
rules of :mod:`.state` to the swarm's records -- expire its silent peers, refuse a taken peer
id, replace a stale entry on the same address, count a completion once, record the peer with
its time, and pick up to ``numwant`` random other peers -- and returns the counts and the
picked peers. Redis runs a script alone, so two tracker processes can never interleave inside
one announce: no completion is counted twice, no peer lost. What does not depend on the swarm
(whitelist, ``ip`` parameter, interval and jitter) is :class:`~.state.TrackerRules`, shared
with the in-memory store. Announces that arrive while earlier ones are on their way to Redis
travel together in the next write (each still its own script): under load one round trip
carries many announces, which is what keeps the client's cost per announce low.

Keys (``PREFIX`` defaults to ``tk:``; ``?prefix=`` in the URL changes it):

- ``PREFIX s:<info-hash hex>`` -- a hash: ``s`` seeders, ``c`` completed downloads, ``a``
  last activity, ``t`` when the expiries were last refreshed; per peer
  ``<peer id (20 bytes)>`` -> its record (flags, compact address, key, last announce) and
  ``<compact address (6 or 18 bytes)>`` -> the peer id holding that address.
- ``PREFIX z:<info-hash hex>`` -- a sorted set: ``<compact address><peer id>`` scored by the
  peer's last announce (seconds, the tracker's wall clock); random picks and expiry use it.
- ``PREFIX swarms`` -- a sorted set of info-hashes (hex) scored by last activity: the cap on
  torrents, ``/stats`` and the periodic purge walk it.

Every key carries an expiry of 1.1 x ``swarm_timeout`` (24 h by default), refreshed by the
announces at most once per tenth of it, and each announce drops its swarm's peers that missed
two intervals, so nothing needs a sweeper to stay correct: a swarm nobody announces to
vanishes by itself. The periodic :meth:`RedisStore.purge`
only makes scrape and ``/stats`` counts of quiet swarms exact sooner (as the in-memory purge
does), and several tracker processes running it at once is harmless.

Time is the tracker's wall clock (``time.time``), shared by every process and host (keep
them in NTP sync); a restarted tracker finds every swarm where it left it.

Redis unreachable, loading, or read-only (a demoted primary after a failover): the call
raises :class:`~.store.StoreUnavailable` (clients get a failure reason), further calls fail
at once for :data:`RETRY_AFTER` seconds, then the next one tries again. Nothing is written
half: every refusal in the script comes before its first write, Redis refuses a script that
would write while it is out of memory or a replica before it starts, and a lost reply at most
repeats an announce (which counts nothing twice). See docs/tracker.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import ipaddress
import logging
import math
import random
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, overload

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceReply,
    AnnounceRequest,
    ScrapeStats,
    TrackerRequestError,
    effective_numwant,
)
from torrentkit.discovery.tracker.state import (
    PeerStats,
    SwarmStats,
    TrackerConfig,
    TrackerRules,
    TrackerStats,
)
from torrentkit.discovery.tracker.store import StoreUnavailable
from torrentkit.ids import InfoHash

log = logging.getLogger(__name__)

#: The periodic purge walks at most this many swarms a round (a script each, batched).
PURGE_PER_ROUND = 5000
#: After a failure, calls fail at once for this long (seconds) before Redis is tried again.
RETRY_AFTER = 0.5
#: Connect and read timeouts (seconds): a Redis host that vanished costs at most this.
SOCKET_TIMEOUT = 2.0
#: The failure reason announces get while the store is down.
DOWN_REASON = "tracker storage is unavailable, try again later"
DEFAULT_PREFIX = "tk:"
_PREFIX = re.compile(r"[A-Za-z0-9:_.-]{1,64}")
_BATCH = 500

_EVENTS = {
    AnnounceEvent.NONE: b"0",
    AnnounceEvent.COMPLETED: b"1",
    AnnounceEvent.STARTED: b"2",
    AnnounceEvent.STOPPED: b"3",
    AnnounceEvent.PAUSED: b"4",
}
_BYTE = [bytes([i]) for i in range(256)]
#: (has key, event, seeder) -> the script's flags argument.
_FLAGS = {
    (k, e, sd): (b"1" if k else b"0") + code + (b"1" if sd else b"0")
    for k in (False, True)
    for e, code in _EVENTS.items()
    for sd in (False, True)
}

# A peer record: seeder, completed, has-key ('0'/'1' each), the compact address after its
# length (one byte), the key after its length, then the time of its last announce as text.
# Refusals come back as a value (not a Redis error) so that the caller tells a refused announce
# from a broken store. ``#!lua`` without flags declares a script that writes: Redis refuses it
# up front on a replica or when out of memory, never halfway.
_COMMON_LUA = """
local function parse(rec)
  local n = string.byte(rec, 4)
  local k = string.byte(rec, 5 + n)
  return rec:sub(1, 1) == '1', rec:sub(2, 2) == '1', rec:sub(3, 3) == '1',
         rec:sub(5, 4 + n), rec:sub(6 + n, 5 + n + k), tonumber(rec:sub(6 + n + k))
end
local function drop(id, rec)  -- returns whether it was a seeder
  local seed, _, _, addr = parse(rec)
  redis.call('HDEL', H, id)
  if redis.call('HGET', H, addr) == id then redis.call('HDEL', H, addr) end
  redis.call('ZREM', Z, addr .. id)
  if seed then redis.call('HINCRBY', H, 's', -1) end
  return seed
end
local function expire(before)
  local stale = redis.call('ZRANGEBYSCORE', Z, '-inf', '(' .. before)
  for _, m in ipairs(stale) do
    local id = m:sub(-20)
    local rec = redis.call('HGET', H, id)
    if rec then drop(id, rec) else redis.call('ZREM', Z, m) end
  end
  return #stale
end
"""

#: One argument, packed by :meth:`RedisStore.announce` (``EVALSHA sha 0 ARG``: few arguments
#: keep the client's cost per call low): flags (has key '0'/'1'; event '0' none,
#: '1' completed, '2' started, '3' stopped, '4' paused; seeder '0'/'1'), numwant (one byte),
#: the info-hash in hex (40), the peer id (20), the compact address and the key (each after a
#: length byte), then ``now`` as text. The key prefix and the config's numbers are written
#: into the script's text (``@NAME@``: one script per prefix and config). Returns one string
#: (one bulk reply is the cheapest to read): ``SEEDERS LEECHERS N4 N6 `` then the picked
#: IPv4 addresses (N4 bytes, 6 each), IPv6 addresses (N6 bytes, 18 each), their peer ids
#: (20 bytes each, IPv4 peers first); or ``!REASON`` for a refused announce.
ANNOUNCE_LUA = (
    """#!lua
local a = ARGV[1]
local haskey, event, seeder = a:sub(1, 1) == '1', tonumber(a:sub(2, 2)), a:sub(3, 3) == '1'
local want, ih, pid = string.byte(a, 4), a:sub(5, 44), a:sub(45, 64)
local clen = string.byte(a, 65)
local compact = a:sub(66, 65 + clen)
local klen = string.byte(a, 66 + clen)
local key = a:sub(67 + clen, 66 + clen + klen)
local now = tonumber(a:sub(67 + clen + klen))
local H, Z, IDX = '@PREFIX@s:' .. ih, '@PREFIX@z:' .. ih, '@PREFIX@swarms'
local timeout, mininterval = @PEER_TIMEOUT@, @MIN_INTERVAL@
local maxswarms, maxpeers = @MAX_SWARMS@, @MAX_PEERS@
local ttl, refresh, swarmtimeout = @TTL@, @REFRESH@, @SWARM_TIMEOUT@
"""
    + _COMMON_LUA
    + """
expire(now - timeout)
local got = redis.call('HMGET', H, pid, 't', 's', 'c')
local rec, t, s = got[1], tonumber(got[2]), tonumber(got[3]) or 0
local exists = got[4] ~= false  -- every swarm has its 'c'
local stopping = event == 3
if not exists then
  if stopping then return '0 0 0 0 ' end
  if redis.call('ZCARD', IDX) >= maxswarms then
    redis.call('ZREMRANGEBYSCORE', IDX, '-inf', '(' .. (now - swarmtimeout))
    if redis.call('ZCARD', IDX) >= maxswarms then
      return '!tracker is full: too many torrents'
    end
  end
end

local pseed, pdone, phaskey, paddr, pkey, pseen = false, false, false, nil, '', nil
if rec then pseed, pdone, phaskey, paddr, pkey, pseen = parse(rec) end
if rec and paddr:sub(1, -3) ~= compact:sub(1, -3)
   and not (phaskey and haskey and pkey == key) then
  return '!peer_id is in use from another address'
end
local n = redis.call('ZCARD', Z)
if not rec and n >= maxpeers then
  return '!tracker is full: too many peers on this torrent'
end

-- No refusal below this line: every write is part of a whole announce.
-- 'a': the swarm's last activity (exact). The keys' expiry and the index's score are
-- refreshed once per `refresh` seconds only ('t': when last), which keeps them within
-- `refresh` of the truth at a fraction of the cost.
local function touch()
  if not t or now - t >= refresh or now < t then
    redis.call('ZADD', IDX, now, ih)
    redis.call('EXPIRE', H, ttl)
    redis.call('EXPIRE', Z, ttl)
    redis.call('EXPIRE', IDX, ttl)
    redis.call('HSET', H, 't', now)
  end
end
if not exists then redis.call('HSET', H, 'c', 0) end
if not rec or paddr ~= compact then
  local holder = redis.call('HGET', H, compact)
  if holder and holder ~= pid then
    local hrec = redis.call('HGET', H, holder)
    if hrec then
      if drop(holder, hrec) then s = s - 1 end
      n = n - 1
    else
      redis.call('HDEL', H, compact)
    end
  end
end
if rec and not pdone and not pseed and seeder then
  pdone = true
  redis.call('HINCRBY', H, 'c', 1)
end
if stopping then
  if rec then
    if drop(pid, rec) then s = s - 1 end
    n = n - 1
  end
  redis.call('HSET', H, 'a', now)
  touch()
  return s .. ' ' .. (n - s) .. ' 0 0 '
end

if rec then
  if paddr ~= compact then
    redis.call('ZREM', Z, paddr .. pid)
    if redis.call('HGET', H, paddr) == pid then redis.call('HDEL', H, paddr) end
  end
  if not haskey then haskey, key = phaskey, pkey end
else
  n = n + 1
end
if seeder ~= pseed then
  redis.call('HINCRBY', H, 's', seeder and 1 or -1)
  s = s + (seeder and 1 or -1)
end
if event == 1 and not pdone then
  pdone = true
  redis.call('HINCRBY', H, 'c', 1)
end
local flags = (seeder and '1' or '0') .. (pdone and '1' or '0') .. (haskey and '1' or '0')
local record = flags .. string.char(#compact) .. compact .. string.char(#key) .. key .. now
redis.call('HSET', H, pid, record, compact, pid, 'a', now)
local me = compact .. pid
redis.call('ZADD', Z, now, me)
touch()
if (rec and event == 0 and now - pseen < mininterval) or want <= 0 then
  return s .. ' ' .. (n - s) .. ' 0 0 '
end
local c4, i4, c6, i6, picked = {}, {}, {}, {}, 0
for _, m in ipairs(redis.call('ZRANDMEMBER', Z, want + 1)) do
  if m ~= me and picked < want then
    picked = picked + 1
    if #m == 26 then
      c4[#c4 + 1], i4[#i4 + 1] = m:sub(1, 6), m:sub(7)
    else
      c6[#c6 + 1], i6[#i6 + 1] = m:sub(1, 18), m:sub(19)
    end
  end
end
local a4, a6 = table.concat(c4), table.concat(c6)
return table.concat({s, ' ', n - s, ' ', #a4, ' ', #a6, ' ', a4, a6, table.concat(i4),
                     table.concat(i6)})
"""
)

#: KEYS: swarm hash, swarm zset, index. ARGV: info-hash hex, now, peer timeout, swarm
#: timeout. Drops the swarm's silent peers, and the swarm itself once it stayed empty for
#: the swarm timeout. Returns the number of peers dropped.
PURGE_LUA = (
    """#!lua
local H, Z = KEYS[1], KEYS[2]
"""
    + _COMMON_LUA
    + """
local IDX, ih, now = KEYS[3], ARGV[1], tonumber(ARGV[2])
local dropped = expire(now - tonumber(ARGV[3]))
local last = tonumber(redis.call('HGET', H, 'a') or redis.call('ZSCORE', IDX, ih) or '0')
if redis.call('ZCARD', Z) == 0 and last < now - tonumber(ARGV[4]) then
  redis.call('DEL', H, Z)
  redis.call('ZREM', IDX, ih)
elseif redis.call('EXISTS', H) == 0 then
  redis.call('ZREM', IDX, ih)
end
return dropped
"""
)


class _Listed:
    """A peer handed out (``protocol.PeerInfo``)."""

    __slots__ = ("compact", "peer_id")

    def __init__(self, compact: bytes, peer_id: bytes) -> None:
        self.compact = compact
        self.peer_id = peer_id

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_address(self.compact[:-2]))

    @property
    def port(self) -> int:
        return int.from_bytes(self.compact[-2:], "big")


class PackedPeers(Sequence[_Listed]):
    """The peers of one reply as the script returns them: compact addresses and peer ids,
    each family concatenated. :attr:`packed_compact` lets the compact encoder
    (``protocol.encode_announce_response``) use the addresses as they are, without a Python
    object per peer; anything else sees a sequence of ``PeerInfo``."""

    __slots__ = ("_ids4", "_ids6", "_n4", "packed_compact")

    def __init__(self, v4: bytes, ids4: bytes, v6: bytes, ids6: bytes) -> None:
        self.packed_compact = (v4, v6)
        self._ids4, self._ids6 = ids4, ids6
        self._n4 = len(v4) // 6

    def __len__(self) -> int:
        return self._n4 + len(self.packed_compact[1]) // 18

    @overload
    def __getitem__(self, index: int) -> _Listed: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[_Listed]: ...
    def __getitem__(self, index: int | slice) -> _Listed | Sequence[_Listed]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        v4, v6 = self.packed_compact
        if index < self._n4:
            return _Listed(v4[6 * index : 6 * index + 6], self._ids4[20 * index : 20 * index + 20])
        j = index - self._n4
        return _Listed(v6[18 * j : 18 * j + 18], self._ids6[20 * j : 20 * j + 20])


def _redact(url: str) -> str:
    """The URL without a password (it goes to logs and the first stdout line)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


class RedisStore(TrackerRules):
    """Swarms in Redis (see the module docstring); a :class:`~.store.SwarmStore`."""

    def __init__(
        self,
        client: aioredis.Redis,
        config: TrackerConfig | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        whitelist: Iterable[bytes] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "redis",
    ) -> None:
        if _PREFIX.fullmatch(prefix) is None:  # it is written into the script's text
            raise ValueError("prefix= must be 1-64 of A-Z a-z 0-9 : _ . -")
        super().__init__(config, rng=rng, whitelist=whitelist)
        self.clock = clock
        self.name = name
        self._redis = client
        self._prefix = prefix
        self._index = prefix + "swarms"
        self._purge = client.register_script(PURGE_LUA)
        #: Why the store is down (None: it answered the last call).
        self.down: str | None = None
        self._retry_at = 0.0
        config = self.config
        lifetime = max(config.swarm_timeout, config.peer_timeout)
        refresh = lifetime / 10
        numbers = {
            "@PREFIX@": prefix,
            "@REFRESH@": repr(float(refresh)),
            "@PEER_TIMEOUT@": repr(float(config.peer_timeout)),
            "@MIN_INTERVAL@": str(config.announce_min_interval),
            "@MAX_SWARMS@": str(config.max_swarms),
            "@MAX_PEERS@": str(config.max_peers_per_swarm),
            "@TTL@": str(math.ceil(lifetime + refresh) + 1),
            "@SWARM_TIMEOUT@": repr(float(config.swarm_timeout)),
        }
        script = ANNOUNCE_LUA
        for name, value in numbers.items():
            script = script.replace(name, value)
        self._announce_script = script.encode()
        self._announce_sha = hashlib.sha1(self._announce_script).hexdigest()
        self._batch: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._purge_from = random.randrange(1 << 30)

    @classmethod
    def from_url(
        cls,
        url: str,
        config: TrackerConfig | None = None,
        *,
        whitelist: Iterable[bytes] | None = None,
        rng: random.Random | None = None,
    ) -> RedisStore:
        """``redis://[:PASSWORD@]HOST:PORT/DB``, ``rediss://...`` or ``unix:///PATH?db=N``,
        each with an optional ``prefix=`` query parameter. Raises ValueError (one line)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"expected memory, redis://HOST:PORT/DB or unix:///PATH, got {_redact(url)!r}"
            )
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        prefix = query.pop("prefix", [DEFAULT_PREFIX])[-1]
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme == "unix":
            db = query.get("db", ["0"])[-1]
            if not parts.path:
                raise ValueError(f"{_redact(url)}: no socket path (unix:///PATH?db=N)")
        else:
            db = parts.path.strip("/") or "0"
            if not parts.hostname or port == -1:
                raise ValueError(f"{_redact(url)}: expected redis://HOST:PORT/DB")
        if not db.isdigit():
            raise ValueError(f"{_redact(url)}: the database must be a number, got {db!r}")
        rest = urllib.parse.urlunsplit(
            parts._replace(query=urllib.parse.urlencode(query, doseq=True))
        )
        try:
            client = aioredis.Redis.from_url(
                rest,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
                # One retry on a fresh connection: a pooled connection that a Redis restart
                # closed is replaced at once; a Redis that is down fails fast.
                retry=Retry(NoBackoff(), 1),
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{_redact(url)}: {exc}") from None
        try:
            return cls(
                client, config, prefix=prefix, whitelist=whitelist, rng=rng, name=_redact(url)
            )
        except ValueError as exc:
            raise ValueError(f"{_redact(url)}: {exc}") from None

    def _keys(self, info_hash_hex: str) -> list[str]:
        p = self._prefix
        return [f"{p}s:{info_hash_hex}", f"{p}z:{info_hash_hex}", self._index]

    async def _call(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis call; any failure of the store becomes :class:`StoreUnavailable`."""
        if self.down is not None and time.monotonic() < self._retry_at:
            raise StoreUnavailable(DOWN_REASON)
        try:
            result = await make()
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.ResponseError) as exc:
            # ResponseError: READONLY (a demoted primary), LOADING, OOM, a script error.
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            if self.down is None:
                log.warning("store %s is down: %s", self.name, reason)
            self.down = f"{DOWN_REASON} ({reason})"
            self._retry_at = time.monotonic() + RETRY_AFTER
            if isinstance(exc, rexc.ReadOnlyError):
                # Connected to a replica now: reconnect (DNS may name the new primary).
                await self._redis.connection_pool.disconnect()
            raise StoreUnavailable(DOWN_REASON) from None
        if self.down is not None:
            log.warning("store %s is back", self.name)
            self.down = None
        return result

    async def announce(self, req: AnnounceRequest, *, remote_ip: str, now: float) -> AnnounceReply:
        info_hash, _, compact = self.admit(req, remote_ip)
        key = req.key if req.key is not None else b""
        arg = b"".join(
            (
                _FLAGS[req.key is not None, req.event, req.left == 0],
                _BYTE[max(0, effective_numwant(req.numwant))],
                info_hash.hex().encode(),
                req.peer_id,
                _BYTE[len(compact)],
                compact,
                _BYTE[len(key)],
                key,
                repr(now).encode(),
            )
        )
        out = await self._call(lambda: self._queue(arg))
        if out[:1] == b"!":
            raise TrackerRequestError(out[1:].decode())
        seeders, leechers, n4, n6, rest = out.split(b" ", 4)
        if not rest:
            return self.reply(int(seeders), int(leechers), ())
        n4, n6 = int(n4), int(n6)
        end6 = n4 + n6
        ids4 = end6 + n4 // 6 * 20
        peers = PackedPeers(rest[:n4], rest[end6:ids4], rest[n4:end6], rest[ids4:])
        return self.reply(int(seeders), int(leechers), peers)

    def _queue(self, call: bytes) -> asyncio.Future[Any]:
        """Queue one announce script call; its future gets the script's reply.

        Announces that arrive while a batch is on its way to Redis go together in the next
        one: one pipeline, one round trip, each announce still its own atomic script. Under
        load this saves most of the client's per-command cost; alone, an announce goes at
        once.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((call, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                try:
                    replies = await self._run_batch([call for call, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._flusher = None

    async def _run_batch(self, calls: list[bytes]) -> list[Any]:
        """EVALSHA each call, all written at once on one pooled connection, then read the
        replies in order (the pipeline's protocol without its per-command bookkeeping, which
        costs more than the rest of an announce). Redis without the script (it forgets them
        on restart): load it and run again only the calls it refused for that."""
        pool = self._redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies = await self._evalsha(conn, calls)
            missing = [i for i, r in enumerate(replies) if isinstance(r, rexc.NoScriptError)]
            if missing:
                await conn.send_command("SCRIPT", "LOAD", self._announce_script)
                await conn.read_response()
                again = await self._evalsha(conn, [calls[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
            return replies
        except BaseException:
            await conn.disconnect()  # the stream may be out of step: never reuse it
            raise
        finally:
            await pool.release(conn)

    async def _evalsha(self, conn: Any, calls: list[bytes]) -> list[Any]:
        sha = self._announce_sha
        await conn.send_packed_command(
            conn.pack_commands([(b"EVALSHA", sha, 0, call) for call in calls]), check_health=False
        )
        replies: list[Any] = []
        for _ in calls:
            try:
                replies.append(await conn.read_response())
            except rexc.ResponseError as exc:  # an error reply: read whole, the stream is fine
                replies.append(exc)
        return replies

    async def scrape(self, info_hashes: Iterable[InfoHash]) -> dict[InfoHash, ScrapeStats]:
        served = [h for h in info_hashes if self.allowed(bytes(h))]
        if not served:
            return {}

        async def read() -> list[Any]:
            pipe = self._redis.pipeline(transaction=True)
            for h in served:
                hkey, zkey, _ = self._keys(h.hex())
                pipe.hmget(hkey, ["s", "c"])
                pipe.zcard(zkey)
            result: list[Any] = await pipe.execute()
            return result

        got = await self._call(read)
        out: dict[InfoHash, ScrapeStats] = {}
        for i, h in enumerate(served):
            (seeders, completed), peers = got[2 * i], got[2 * i + 1]
            s = int(seeders or 0)
            out[h] = ScrapeStats(complete=s, downloaded=int(completed or 0), incomplete=peers - s)
        return out

    async def _swarm_ids(self, start: int = 0, stop: int = -1) -> list[str]:
        """The served info-hashes (hex) of the index, by rank ``start``..``stop``."""
        ids: list[bytes] = await self._call(lambda: self._redis.zrange(self._index, start, stop))
        return [h.decode() for h in ids if len(h) == 40 and self.allowed(bytes.fromhex(h.decode()))]

    async def purge(self, now: float) -> int:
        """Drop silent peers and long-empty swarms (see the module docstring): every swarm
        when there are at most :data:`PURGE_PER_ROUND`, else the next slice of that many
        (each process starts at a random place, so several processes share the walk)."""
        dropped = 0
        total: int = await self._call(lambda: self._redis.zcard(self._index))
        if total <= PURGE_PER_ROUND:
            ids = await self._swarm_ids()
        else:
            start = self._purge_from % total
            self._purge_from = start + PURGE_PER_ROUND
            ids = await self._swarm_ids(start, start + PURGE_PER_ROUND - 1)
        fixed = (repr(now), str(self.config.peer_timeout), str(self.config.swarm_timeout))
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]

            async def run(batch: Sequence[str] = batch) -> list[int]:
                pipe = self._redis.pipeline(transaction=False)
                for h in batch:
                    await self._purge(keys=self._keys(h), args=(h, *fixed), client=pipe)
                result: list[int] = await pipe.execute()
                return result

            dropped += sum(await self._call(run))
        return dropped

    async def stats(self, *, max_swarms: int = 50, max_peers: int = 20) -> TrackerStats:
        """Totals and the largest swarms, read in batches (not one atomic snapshot)."""
        ids = await self._swarm_ids()
        rows: list[tuple[str, int, int, int]] = []  # info-hash, peers, seeders, completed
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]

            async def read(batch: Sequence[str] = batch) -> list[Any]:
                pipe = self._redis.pipeline(transaction=False)
                for h in batch:
                    hkey, zkey, _ = self._keys(h)
                    pipe.hmget(hkey, ["s", "c"])
                    pipe.zcard(zkey)
                result: list[Any] = await pipe.execute()
                return result

            got = await self._call(read)
            for i, h in enumerate(batch):
                (seeders, completed), peers = got[2 * i], got[2 * i + 1]
                if completed is None and peers == 0:
                    continue  # expired meanwhile
                rows.append((h, peers, int(seeders or 0), int(completed or 0)))
        largest = heapq.nsmallest(max_swarms, rows, key=lambda r: (-r[1], r[0]))
        detail = [
            SwarmStats(
                info_hash=InfoHash(bytes.fromhex(h)),
                seeders=s,
                leechers=n - s,
                completed=c,
                peers=await self._peer_stats(h, max_peers),
            )
            for h, n, s, c in largest
        ]
        peers = sum(r[1] for r in rows)
        seeders = sum(r[2] for r in rows)
        return TrackerStats(
            torrents=len(rows),
            peers=peers,
            seeders=seeders,
            leechers=peers - seeders,
            completed=sum(r[3] for r in rows),
            swarms=tuple(detail),
        )

    async def _peer_stats(self, h: str, max_peers: int) -> tuple[PeerStats, ...]:
        hkey, zkey, _ = self._keys(h)
        if max_peers <= 0:
            return ()
        members: list[bytes] = await self._call(lambda: self._redis.zrange(zkey, 0, max_peers - 1))
        if not members:
            return ()
        listed = [_Listed(m[:-20], m[-20:]) for m in members]
        records: list[bytes | None] = await self._call(
            lambda: self._redis.hmget(hkey, [p.peer_id for p in listed])
        )
        return tuple(
            PeerStats(peer_id=p.peer_id, ip=p.ip, port=p.port, seeder=rec[:1] == b"1")
            for p, rec in zip(listed, records, strict=True)
            if rec is not None
        )

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers."""
        await self._call(lambda: self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()
