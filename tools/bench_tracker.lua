-- wrk load script for tools/bench_tracker.py: announces over keep-alive connections.
--   wrk -t1 -c50 -d10s -s tools/bench_tracker.lua http://127.0.0.1:PORT -- HASHFILE PEERS [seq [START]]
-- HASHFILE: hex info-hashes, one a line (1,000 in the benchmark). Each request is a compact
-- announce from one of PEERS peers (ports 10001..) of a random torrent; a fifth of the peers
-- are seeders (left=0). Peer ids are fixed per (torrent, peer), so swarms stay PEERS large.
-- With "seq" the (torrent, peer) pairs are walked in order instead (a warm-up that fills
-- every swarm in TORRENTS x PEERS requests), starting at pair number START.

local hashes = {}
local npeers = 50
local thread_no = 0
local sequential = false
local counter = 0

function setup(thread)
  thread:set("thread_no", thread_no)
  thread_no = thread_no + 1
end

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line == 40 then
      hashes[#hashes + 1] = (line:gsub("%x%x", "%%%0"))
    end
  end
  f:close()
  npeers = tonumber(args[2]) or 50
  sequential = args[3] == "seq"
  counter = tonumber(args[4]) or 0
  math.randomseed(12345 + 7919 * (tonumber(thread_no) or 0))
end

function request()
  local t, p
  if sequential then
    t = counter % #hashes + 1
    p = math.floor(counter / #hashes) % npeers + 1
    counter = counter + 1
  else
    t = math.random(#hashes)
    p = math.random(npeers)
  end
  local left = 1000000
  if p <= npeers / 5 then left = 0 end
  local path = string.format(
    "/announce?info_hash=%s&peer_id=-BK0001-%06d%06d&port=%d" ..
    "&uploaded=0&downloaded=0&left=%d&compact=1&numwant=50&key=%08x",
    hashes[t], t, p, 10000 + p, left, t * 100 + p)
  return wrk.format("GET", path)
end
