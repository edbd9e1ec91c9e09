"""The Lua of access.quotas (one tenant's keys per call, all under its `{schema}` hash tag: Redis Cluster runs
each script on one node). The reservation is the `quota` part of the gateway's admission script."""

# The tenant's reservations whose TTL is over (their process died before settling: SIGKILL, OOM) give their tokens
# back: at most `limit` of them, oldest first; a reservation of another epoch (the counters were rebuilt without
# it) only leaves the pending set. Returns how many left it. A local function, run by the admission (RESERVE_LUA)
# and by the scheduled reaper (REAP_LUA). `now` and `limit` are given as the decimal strings Redis takes: a Lua number
# handed to redis.call is formatted by snprintf("%.17g") first, a cost on every admission.
REAP_FUNCTION = """
  local function reap(pending, pending_data, epoch, now, limit)
    local stale = redis.call('ZRANGEBYSCORE', pending, '-inf', now, 'LIMIT', '0', limit)
    for _, member in ipairs(stale) do
      local data = redis.call('HGET', pending_data, member)
      if data then
        local fields = {}
        for word in string.gmatch(data, '%S+') do fields[#fields + 1] = word end
        if fields[1] == epoch then
          for f = 3, #fields do
            if redis.call('DECRBY', fields[f], tonumber(fields[2])) < 0 then
              redis.call('SET', fields[f], 0, 'KEEPTTL')
            end
          end
        end
        redis.call('HDEL', pending_data, member)
      end
      redis.call('ZREM', pending, member)
    end
    return #stale
  end
"""

# The scheduled reaper (access.quotas.quota_reservations_reap): KEYS: the tenant's epoch, pending and pending data
# keys. ARGV: now (ms), the most to reap in this call. Returns how many were reaped.
REAP_LUA = REAP_FUNCTION + """
return reap(KEYS[2], KEYS[3], redis.call('GET', KEYS[1]), ARGV[1], ARGV[2])
"""

# The quota part of the gateway's admission script (config.admission; the gateway composes it with the breakers
# in one round trip). K.rpm: the sliding-window keys, K.tpd: the day's token keys, K.epoch: the tenant's epoch
# key, K.pending / K.pending_data: the tenant's reservations not yet settled (a sorted set by expiry, and a hash
# member -> "epoch tokens day-key..."), all present when there is any limit. A.now_ms, A.window_from (now_ms less
# the 60 s window), A.expires_ms (now_ms plus how long a reservation may stay unsettled), A.tokens: decimal strings
# (what Redis is handed as they are: a Lua number given to redis.call is formatted by snprintf first); A.member
# (unique per call); A.rpm_limits, A.tpd_limits (numbers, one per key). First the tenant's stale reservations give
# their tokens back (REAP_FUNCTION). Returns {0, index, retry_ms} on refusal (index: 1-based over rpm then tpd;
# retry_ms -1 for a day limit), {1, epoch} when admitted, {2} when the counters must first be rebuilt (the epoch key
# is missing: Redis lost its data; quota_rebuild); only an admission lets the next parts run.
RESERVE_LUA = """
function(K, A)
""" + REAP_FUNCTION + """
  local tokens = tonumber(A.tokens)
  local n_rpm, n_tpd = #K.rpm, #K.tpd
  if n_rpm + n_tpd == 0 then return {1, ''}, true end
  local epoch = redis.call('GET', K.epoch)
  if not epoch then return {2}, false end
  reap(K.pending, K.pending_data, epoch, A.now_ms, '100')
  for i = 1, n_rpm do
    local limit = tonumber(A.rpm_limits[i])
    redis.call('ZREMRANGEBYSCORE', K.rpm[i], '-inf', A.window_from)
    if redis.call('ZCARD', K.rpm[i]) >= limit then
      local oldest = redis.call('ZRANGE', K.rpm[i], 0, 0, 'WITHSCORES')
      local retry = 60000
      if oldest[2] then retry = tonumber(oldest[2]) + 60000 - tonumber(A.now_ms) end
      return {0, i, retry}, false
    end
  end
  for j = 1, n_tpd do
    local used = tonumber(redis.call('GET', K.tpd[j]) or '0')
    if used + tokens > tonumber(A.tpd_limits[j]) then return {0, n_rpm + j, -1}, false end
  end
  for i = 1, n_rpm do
    redis.call('ZADD', K.rpm[i], A.now_ms, A.member)
    redis.call('PEXPIRE', K.rpm[i], '61000')
  end
  for j = 1, n_tpd do
    redis.call('INCRBY', K.tpd[j], A.tokens)
    redis.call('EXPIRE', K.tpd[j], '172800')
  end
  if n_tpd > 0 and tokens > 0 then
    redis.call('ZADD', K.pending, A.expires_ms, A.member)
    redis.call('HSET', K.pending_data, A.member, epoch .. ' ' .. A.tokens .. ' ' .. table.concat(K.tpd, ' '))
    redis.call('EXPIRE', K.pending, '172800')
    redis.call('EXPIRE', K.pending_data, '172800')
  end
  return {1, epoch}, true
end
"""

# Whether a reservation is still held, and from now on not: its member leaves the pending set (1), or it was
# already gone (0: released, reaped after its TTL, or lost with Redis), or it predates the pending set (2: no member).
TAKE_LUA = """
local function take(pending, pending_data, member)
  if member == '' then return 2 end
  redis.call('HDEL', pending_data, member)
  return redis.call('ZREM', pending, member)
end
"""

# Settles calls exactly once each, whatever is retried or replayed: a call's request id goes into its tenant's
# settled set of the day, and only the call that added it changes the counters. While its reservation is still
# held (pending, same epoch), the counters get (used - reserved); when it is not (reaped after its TTL, or Redis
# lost its data: another epoch), they get `used`. quota_rebuild adds recorded calls through the same set
# (access.counter_rebuild.settled_add), so a call is counted once whether its settlement or the rebuild gets there
# first. A call counted already whose reservation is still held (inference.settle_recovery added what it used when
# its settlement seemed lost) gives the reservation back: the recovery cannot take it, only the call knows it.
# A batch (the recorder settles many calls at once) reads each epoch key once and gives each key it changed its
# TTL once, at the end: the same keys and TTLs as one EXPIRE per change (nothing sees a script half run).
# KEYS: every key used. ARGV: n, then per call: request id, settled key index, epoch key index, epoch, reserved,
# used, pending key index, pending data key index, member, number of day keys, their indexes.
SETTLE_LUA = TAKE_LUA + """
local n = tonumber(ARGV[1])
local p = 2
local epochs = {}
local touched, order = {}, {}
local function current(epoch_key)
  local value = epochs[epoch_key]
  if value == nil then
    value = redis.call('GET', epoch_key) or false
    epochs[epoch_key] = value
  end
  return value
end
local function touch(key)
  if not touched[key] then
    touched[key] = true
    order[#order + 1] = key
  end
end
for _ = 1, n do
  local id, settled, epoch_key, epoch = ARGV[p], KEYS[tonumber(ARGV[p + 1])], KEYS[tonumber(ARGV[p + 2])], ARGV[p + 3]
  local reserved, used = tonumber(ARGV[p + 4]), tonumber(ARGV[p + 5])
  local pending, pending_data, member = KEYS[tonumber(ARGV[p + 6])], KEYS[tonumber(ARGV[p + 7])], ARGV[p + 8]
  local nk = tonumber(ARGV[p + 9])
  local delta = nil
  if redis.call('SADD', settled, id) == 1 then
    touch(settled)
    delta = used
    if take(pending, pending_data, member) ~= 0 and current(epoch_key) == epoch then
      delta = used - reserved
    end
  elseif member ~= '' and take(pending, pending_data, member) == 1 and current(epoch_key) == epoch then
    delta = -reserved
  end
  if delta then
    for k = 1, nk do
      local key = KEYS[tonumber(ARGV[p + 9 + k])]
      if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, '0') end
      touch(key)
    end
  end
  p = p + 10 + nk
end
for i = 1, #order do
  redis.call('EXPIRE', order[i], '172800')
end
return 1
"""

# quota_rebuild's requests-per-minute part: KEYS: window keys. ARGV: n, then per admitted call of the last minute:
# member (its request id), admitted at (ms), number of window keys, their indexes.
REBUILD_WINDOWS_LUA = """
local n = tonumber(ARGV[1])
local p = 2
for _ = 1, n do
  local member, at, nk = ARGV[p], tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  for k = 1, nk do
    local key = KEYS[tonumber(ARGV[p + 2 + k])]
    redis.call('ZADD', key, at, member)
    redis.call('PEXPIRE', key, 61000)
  end
  p = p + 3 + nk
end
return 1
"""

# An admission whose answer was lost (access.quotas.quota_unreserve): the reservation its member holds, if the
# script ran, given back as the reaper would. KEYS: the tenant's epoch, pending and pending data keys. ARGV: the
# member. Returns 1 if it held one, 0 if the script never ran (or the reservation is gone already).
UNRESERVE_LUA = """
local data = redis.call('HGET', KEYS[3], ARGV[1])
if not data then return 0 end
local fields = {}
for word in string.gmatch(data, '%S+') do fields[#fields + 1] = word end
if fields[1] == redis.call('GET', KEYS[1]) then
  for f = 3, #fields do
    if redis.call('DECRBY', fields[f], tonumber(fields[2])) < 0 then redis.call('SET', fields[f], 0, 'KEEPTTL') end
  end
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# A reservation returned whole (quota_release). KEYS: day keys, then the epoch, pending and pending data keys.
# ARGV: the reserved tokens, the epoch, the member. Nothing changes when the reservation is no longer held (reaped
# after its TTL) or the epoch moved on (the counters were rebuilt without it). Never below zero.
RELEASE_LUA = TAKE_LUA + """
local nk = #KEYS - 3
if take(KEYS[nk + 2], KEYS[nk + 3], ARGV[3]) == 0 then return 0 end
if redis.call('GET', KEYS[nk + 1]) ~= ARGV[2] then return 0 end
for j = 1, nk do
  if redis.call('DECRBY', KEYS[j], tonumber(ARGV[1])) < 0 then redis.call('SET', KEYS[j], 0, 'KEEPTTL') end
end
return 1
"""
