//! The Lua scripts of [`RedisStore`](super::RedisStore): commits, head updates and removals
//! check the entry's version and never leave an entry without its chunks.

use redis::Script;

/// Sets the chunks of body `bver` (`n` of them, under `prefix`) to expire in `ms`; with
/// `shorten`, only those that would live longer.
pub(super) const CHUNK_TTL_LUA: &str = r"
local function chunk_ttl(prefix, bver, n, ms, shorten)
  for i = 0, n - 1 do
    local k = prefix .. bver .. ':' .. i
    if shorten then
      local left = redis.call('PTTL', k)
      if left == -1 or left > ms then redis.call('PEXPIRE', k, ms) end
    else
      redis.call('PEXPIRE', k, ms)
    end
  end
end
local function holds(cur, kind, want)
  if kind == 'absent' then return not cur end
  if kind == 'ver' then return cur == want end
  return true
end
";

/// KEYS[1] entry; ARGV: expect kind, expected version, key, version, meta, len, chunks,
/// bver, ttl ms, chunk prefix, grace ms. 1: committed; 0: conflict; -1: a chunk is gone.
pub(super) const COMMIT_LUA: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'ver', 'bver', 'chunks')
if not holds(cur[1], ARGV[1], ARGV[2]) then return 0 end
local n = tonumber(ARGV[7])
for i = 0, n - 1 do
  if redis.call('EXISTS', ARGV[10] .. ARGV[8] .. ':' .. i) == 0 then return -1 end
end
if cur[1] and cur[2] ~= ARGV[8] then
  chunk_ttl(ARGV[10], cur[2], tonumber(cur[3]) or 0, tonumber(ARGV[11]), true)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'key', ARGV[3], 'ver', ARGV[4], 'meta', ARGV[5], 'len', ARGV[6],
  'chunks', ARGV[7], 'bver', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
chunk_ttl(ARGV[10], ARGV[8], n, tonumber(ARGV[9]), false)
return 1
";

/// KEYS[1] entry; ARGV: expect kind, expected version, key, version, meta, ttl ms, chunk
/// prefix. 1: written; 0: the expectation failed.
pub(super) const UPDATE_LUA: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'ver', 'bver', 'chunks')
if not holds(cur[1], ARGV[1], ARGV[2]) then return 0 end
if cur[1] then
  redis.call('HSET', KEYS[1], 'ver', ARGV[4], 'meta', ARGV[5])
  chunk_ttl(ARGV[7], cur[2], tonumber(cur[3]) or 0, tonumber(ARGV[6]), false)
else
  redis.call('HSET', KEYS[1], 'key', ARGV[3], 'ver', ARGV[4], 'meta', ARGV[5], 'len', 0,
    'chunks', 0, 'bver', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
";

/// KEYS[1] entry; ARGV: expect kind, expected version, chunk prefix, grace ms.
pub(super) const REMOVE_LUA: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'ver', 'bver', 'chunks')
if not cur[1] or not holds(cur[1], ARGV[1], ARGV[2]) then return 0 end
chunk_ttl(ARGV[3], cur[2], tonumber(cur[3]) or 0, tonumber(ARGV[4]), true)
redis.call('DEL', KEYS[1])
return 1
";

/// `read(entry, chunk prefix, the largest body read with the head)`: the entry's fields, and
/// its body when it is that small; `false` when there is none.
pub(super) const READ_LUA: &str = r"
local function read(entry, chunks, small)
  local h = redis.call('HMGET', entry, 'key', 'ver', 'meta', 'len', 'chunks', 'bver')
  if not h[2] then return false end
  local len = tonumber(h[4]) or 0
  local body = false
  if len > 0 and len <= small then
    body = redis.call('GET', chunks .. h[6] .. ':0')
    if not body then return false end
  end
  return {h[1], h[2], h[3], h[4], h[5], h[6], body, redis.call('PTTL', entry)}
end
";

/// KEYS[1] entry; ARGV: its chunk prefix, the largest body read with the head.
pub(super) const GET_LUA: &str = r"
return read(KEYS[1], ARGV[1], tonumber(ARGV[2]))
";

/// KEYS: two entries of one URL (one hash tag); ARGV: their chunk prefixes, the largest
/// body read with a head. Both entries, read in one round trip.
pub(super) const GET_TWO_LUA: &str = r"
local small = tonumber(ARGV[3])
return {read(KEYS[1], ARGV[1], small), read(KEYS[2], ARGV[2], small)}
";

/// What `read` in `READ_LUA` returns.
pub(super) type GetReply = Option<(Vec<u8>, u64, Vec<u8>, u64, u64, u64, Option<Vec<u8>>, i64)>;

pub(super) struct Scripts {
    pub(super) commit: Script,
    pub(super) update: Script,
    pub(super) remove: Script,
    pub(super) get: Script,
    pub(super) get_two: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let with_helpers = |body: &str| Script::new(&format!("{CHUNK_TTL_LUA}{body}"));
        Self {
            commit: with_helpers(COMMIT_LUA),
            update: with_helpers(UPDATE_LUA),
            remove: with_helpers(REMOVE_LUA),
            get: Script::new(&format!("{READ_LUA}{GET_LUA}")),
            get_two: Script::new(&format!("{READ_LUA}{GET_TWO_LUA}")),
        }
    }
}
