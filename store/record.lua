--[[ record.lua: record one message in its thread and detect a storm, in one
atomic step. Store.Record in Go (store/redis.go); store/memory.go does the
same in Go, and store/storetest proves the two agree. The storm rule
itself is policy.Crossed (policy/limits.go): the lines below marked "The
storm rule" are its twin, and storetest's LimitTable holds them to the
same answers. store/script_test.go checks that the KEYS and ARGV below are
the ones store/redis.go passes, in the same order.

It touches only the thread's five keys, which share the thread id as their
Cluster hash tag: never a global or link key, so it runs on Redis Cluster.
Time comes only from ARGV[2]; TTLs are Redis' own (PX/PEXPIRE).

KEYS[1]  {T}:replies   zset   counted replies in the window:
                              "<msgkey>:<sender print>:<audience>" -> time (ms)
KEYS[2]  {T}:meta      hash   subject, sender, first_seen, last_seen, window, audience (largest),
                              orig_sender, orig_subject, orig_audience, orig_at (first original),
                              accepted, refused, allowed, storm_at, storm_rule,
                              dup:<msgkey> (passes of a counted message as itself),
                              senders (how many KEYS[5] holds)
KEYS[3]  {T}:block     string rule that blocked the thread, PX block_for
KEYS[4]  {T}:override  string "allow" or "block", set by operators; other values are ignored
KEYS[5]  {T}:senders   hash   sender -> the status of its last message; at most max_senders
                              senders, the first to write

ARGV[1]  kind            "original", "reply" or "autoreply"
ARGV[2]  now             time of the message, Unix ms
ARGV[3]  msg             the message's message-id key, "" when it had none
ARGV[4]  member          its replies member, "<msgkey or random>:<sender print>:<audience>"
ARGV[5]  audience        mailboxes it reaches
ARGV[6]  sender          envelope sender, "" for none, cut to store.MaxSenderLen bytes
ARGV[7]  subject         subject, "" for none
ARGV[8]  window          ms, >= 1
ARGV[9]  block_for       ms, >= 1
ARGV[10] retention       ms, >= 1: TTL of meta and senders (longer while blocked)
ARGV[11] max_duplicates  policy.MaxDuplicates: passes of a counted message as
                         itself (same member); see "The repeat rule" below
ARGV[12] max_senders     store.MaxSenders: senders kept in KEYS[5] at most
ARGV[13] max_replies     the limits, in policy.LimitRules order (policy/limits.go),
ARGV[14] delivery_budget each 0 (rule off) to 2^53; see "The storm rule" below

An "autoreply" is read, never written: the script answers the thread's
override, window and block and writes no key, so that an auto-reply
(never counted, refused for its audience alone) leaves nothing behind,
not even a thread. The Go caller writes no link or index entry for one.

Returns {override, status, count, delivered, crossed, block_ttl}:
override   "allow", "block" or ""
status     "noted", "counted", "duplicate" (the same member, within max_duplicates
           passes), "blocked" or "crossed"
count      replies in the window, including this one if counted
delivered  sum of their audiences
crossed    with "crossed": the rule crossed (a policy.LimitRules name), else ""
block_ttl  ms of block left when blocked or crossed (0 when not, or no expiry)
]]

local kind            = ARGV[1]
local now             = ARGV[2]
local msg             = ARGV[3]
local member          = ARGV[4]
local audience        = ARGV[5]
local sender          = ARGV[6]
local subject         = ARGV[7]
local window          = ARGV[8]
local block_for       = ARGV[9]
local retention       = ARGV[10]
local max_duplicates  = tonumber(ARGV[11])
local max_senders     = tonumber(ARGV[12])
local max_replies     = tonumber(ARGV[13])
local delivery_budget = tonumber(ARGV[14])

local k_replies, k_meta, k_block, k_override, k_senders = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
-- Numbers for arithmetic; the strings above are written as they came.
local now_ms = tonumber(now)
local audience_n = tonumber(audience)
local window_ms = tonumber(window)
local block_ms = tonumber(block_for)
local retention_ms = tonumber(retention)

local function ms(n) return string.format('%.0f', n) end

local override = redis.call('GET', k_override)
if override ~= 'allow' and override ~= 'block' then override = '' end

-- The sum of the audiences of a list of replies members.
local function audiences(members)
  local sum = 0
  for i = 1, #members do
    sum = sum + (tonumber(string.match(members[i], ':(%d+)$')) or 0)
  end
  return sum
end

if kind == 'autoreply' then
  -- Read only: the window as of now, the block, the override.
  local scored = redis.call('ZRANGE', k_replies, 0, -1, 'WITHSCORES')
  local members = {}
  for i = 1, #scored, 2 do
    if tonumber(scored[i + 1]) > now_ms - window_ms then members[#members + 1] = scored[i] end
  end
  local pttl = redis.call('PTTL', k_block)
  local block_ttl = 0
  if pttl > 0 then block_ttl = pttl end
  return {override, 'noted', #members, audiences(members), '', block_ttl}
end

-- The thread's record.
if subject ~= '' then redis.call('HSETNX', k_meta, 'subject', subject) end
if sender ~= '' then redis.call('HSETNX', k_meta, 'sender', sender) end
redis.call('HSETNX', k_meta, 'first_seen', now)
redis.call('HSET', k_meta, 'last_seen', now, 'window', window)
if audience_n > (tonumber(redis.call('HGET', k_meta, 'audience')) or -1) then
  redis.call('HSET', k_meta, 'audience', audience)
end
if kind == 'original' and redis.call('HSETNX', k_meta, 'orig_at', now) == 1 then
  redis.call('HSET', k_meta, 'orig_sender', sender, 'orig_subject', subject, 'orig_audience', audience)
end

-- The window: drop what has aged out, then count and sum what is left.
redis.call('ZREMRANGEBYSCORE', k_replies, '-inf', ms(now_ms - window_ms))
local members = redis.call('ZRANGE', k_replies, 0, -1)
local count, delivered, same = #members, audiences(members), false
for i = 1, count do
  -- this very message (id, sender, audience) was counted
  if msg ~= '' and members[i] == member then same = true end
end

local pttl = redis.call('PTTL', k_block)
local blocked = pttl ~= -2
local block_ttl = 0
if pttl > 0 then block_ttl = pttl end

local status, crossed, sender_status = 'noted', '', nil
if override ~= '' then
  sender_status = override
  if kind == 'reply' then
    if override == 'allow' then
      redis.call('HINCRBY', k_meta, 'allowed', 1)
    else
      redis.call('HINCRBY', k_meta, 'refused', 1)
    end
  end
elseif kind ~= 'reply' then
  -- originals and auto-replies are noted, never counted
elseif same and redis.call('HINCRBY', k_meta, 'dup:' .. msg, 1) <= max_duplicates then
  -- The repeat rule, twin of policy.Repeats: the same message passes
  -- again as itself (a retry, a relay hop) at most max_duplicates times;
  -- after that, and for a message-id reused by another sender or to
  -- another audience, the rules below apply as to any reply.
  status = 'duplicate'
elseif blocked then
  status = 'blocked'
  redis.call('HINCRBY', k_meta, 'refused', 1)
else
  -- The storm rule, twin of policy.Crossed: a limit of 0 is off; the
  -- first rule whose limit the window would pass with this reply counted
  -- is crossed (reaching a limit exactly is allowed).
  local rule = ''
  if max_replies > 0 and count + 1 > max_replies then
    rule = 'max_replies'
  elseif delivery_budget > 0 and delivered + audience_n > delivery_budget then
    rule = 'delivery_budget'
  end
  if rule ~= '' then
    redis.call('SET', k_block, rule, 'PX', block_for)
    redis.call('HSET', k_meta, 'storm_at', now, 'storm_rule', rule)
    redis.call('HINCRBY', k_meta, 'refused', 1)
    status, crossed, block_ttl = 'crossed', rule, block_ms
  else
    if same then
      -- passes ran out: it counts again, as an entry of its own
      -- ("#<passes>" before the audience, as store.repeatMember builds it)
      local passes = redis.call('HGET', k_meta, 'dup:' .. msg)
      member = string.gsub(member, ':(%d+)$', '#' .. passes .. ':%1')
    end
    redis.call('ZADD', k_replies, now, member)
    redis.call('PEXPIRE', k_replies, window)
    redis.call('HINCRBY', k_meta, 'accepted', 1)
    status = 'counted'
    count, delivered = count + 1, delivered + audience_n
  end
end

-- A sender already kept is updated; a new one only while fewer than
-- max_senders are (meta's "senders" counts them).
if sender ~= '' and (redis.call('HGET', k_senders, sender) or
    (tonumber(redis.call('HGET', k_meta, 'senders')) or 0) < max_senders) then
  if redis.call('HSET', k_senders, sender, sender_status or status) == 1 then
    redis.call('HINCRBY', k_meta, 'senders', 1)
  end
end
local keep = retention_ms
if block_ttl > keep then keep = block_ttl end
redis.call('PEXPIRE', k_meta, ms(keep))
redis.call('PEXPIRE', k_senders, ms(keep))

return {override, status, count, delivered, crossed, block_ttl}
