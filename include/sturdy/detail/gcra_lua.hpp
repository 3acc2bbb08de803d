// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/gcra_lua.hpp
// -----------------------------------------------------------------------------
//
// Internal: the GCRA decision of `detail/gcra.hpp` as a Redis Lua script,
// for `sturdy::redis::rate_limiter`. Lua 5.1 numbers are doubles, exact only
// up to 2^53, so every time and duration travels as a pair (seconds,
// nanoseconds in [0, 1e9)) and the script does pair arithmetic; every value
// stays far below 2^53 and the maths is exact (and prints exactly: Lua
// writes numbers with "%.14g", and every value written is an integer below
// 10^13). The script only decides
// "admitted or not" and stores the new state; the client feeds the state and
// time the script saw to `detail::gcra::decide` for `remaining`,
// `retry_after` and `reset_after`, and checks that both agree.
//
// KEYS[1]: the state, "<s> <ns>" of Z = TAT − τ, with a TTL until the bucket
//          is full again (a missing key is a full bucket).
// ARGV: mode ('s': server TIME plus the offset; 'c': the given time),
//       time_or_offset s, ns, need (n·T) s, ns, τ s, ns, peek ('1': do not
//       write), extra TTL in ms (the key outlives the state's meaning by
//       that much; see `client_time_ttl_slack`).
// Reply: {admitted 0|1, had_state 0|1, state s, state ns, now s, now ns},
//        or {-1} when KEYS[1] holds something unreadable.
//
// Thread safety: constants and pure functions.

#ifndef STURDY_DETAIL_GCRA_LUA_HPP_
#define STURDY_DETAIL_GCRA_LUA_HPP_

#include <hiredis/hiredis.h>

#include <cstdint>
#include <limits>
#include <string_view>

#include "sturdy/detail/gcra.hpp"

namespace sturdy::detail {

inline constexpr std::string_view gcra_script = R"lua(
local B, floor = 1000000000, math.floor
local now_s, now_ns
if ARGV[1] == 's' then
  local t = redis.call('TIME')
  now_s, now_ns = t[1] + ARGV[2], t[2] * 1000 + ARGV[3]
else
  now_s, now_ns = ARGV[2] + 0, ARGV[3] + 0
end
local c = floor(now_ns / B)
now_s, now_ns = now_s + c, now_ns - c * B
local tau_s, tau_ns = ARGV[6] + 0, ARGV[7] + 0
-- base = max(now - tau, the earliest representable time, the stored state)
local base_s, base_ns = now_s - tau_s, now_ns - tau_ns
if base_ns < 0 then base_s, base_ns = base_s - 1, base_ns + B end
if base_s < -9223372037 or (base_s == -9223372037 and base_ns < 145224192) then
  base_s, base_ns = -9223372037, 145224192
end
local had, old_s, old_ns = 0, 0, 0
local v = redis.call('GET', KEYS[1])
if v then
  local sp = string.find(v, ' ', 1, true)
  old_s, old_ns = tonumber(sp and string.sub(v, 1, sp - 1)), tonumber(sp and string.sub(v, sp + 1))
  if not old_s or not old_ns or old_ns < 0 or old_ns >= B or old_s ~= floor(old_s) or old_ns ~= floor(old_ns) then
    return {-1}
  end
  had = 1
  if base_s < old_s or (base_s == old_s and base_ns < old_ns) then base_s, base_ns = old_s, old_ns end
end
-- next = base + need; admitted iff next <= now (a peek writes nothing)
local next_s, next_ns = base_s + ARGV[4], base_ns + ARGV[5]
if next_ns >= B then next_s, next_ns = next_s + 1, next_ns - B end
local ok = next_s < now_s or (next_s == now_s and next_ns <= now_ns)
if ok and ARGV[8] == '0' then
  -- the key lives until the bucket is full again (next + tau - now, in ms
  -- rounded up), plus ARGV[9] ms
  local ms = (next_s + tau_s - now_s) * 1000 + math.ceil((next_ns + tau_ns - now_ns) / 1000000)
  if ms < 1 then ms = 1 end
  ms = ms + ARGV[9]
  redis.call('SET', KEYS[1], next_s .. ' ' .. next_ns, 'PX', ms)
end
return {ok and 1 or 0, had, old_s, old_ns, now_s, now_ns}
)lua";

// With client time, Redis still expires keys by its own clock: a key lives
// this much longer than the client-time state needs, so a server clock that
// runs a little fast (or a client's that runs slow) cannot drop a state
// early, which would admit more than the limit. (A state kept longer than
// needed is harmless: once the bucket is full it decides like no state.)
inline constexpr std::string_view client_time_ttl_slack_ms = "1000";

// A nanosecond count as (seconds, nanoseconds in [0, 1e9)).
struct split_ns {
  std::int64_t s = 0;
  std::int64_t ns = 0;
};
[[nodiscard]] constexpr split_ns split(std::int64_t v) noexcept {
  std::int64_t s = v / 1'000'000'000;
  std::int64_t ns = v % 1'000'000'000;
  if (ns < 0) {
    ns += 1'000'000'000;
    --s;
  }
  return {s, ns};
}

// (s, ns) back to a biased nanosecond count; false when out of range.
[[nodiscard]] constexpr bool join_biased(long long s, long long ns, std::uint64_t& out) noexcept {
  if (ns < 0 || ns >= 1'000'000'000) return false;
  constexpr long long min_s = std::numeric_limits<std::int64_t>::min() / 1'000'000'000 - 1;  // -9223372037
  constexpr long long max_s = std::numeric_limits<std::int64_t>::max() / 1'000'000'000;      // 9223372036
  if (s < min_s || s > max_s) return false;
  // Biased: (s * 1e9 + ns) + 2^63, computed in unsigned arithmetic (wraps
  // exactly; the range check keeps the signed value representable).
  const std::uint64_t v = static_cast<std::uint64_t>(s) * 1'000'000'000u + static_cast<std::uint64_t>(ns);
  const std::uint64_t biased = v ^ (std::uint64_t{1} << 63);
  if (s == min_s && ns < 145'224'192) return false;
  if (s == max_s && ns > 854'775'807) return false;
  out = biased;
  return true;
}

struct gcra_reply {
  bool admitted = false;
  std::uint64_t state = 0;  // biased; 0 (a full bucket) when there was none
  std::uint64_t now = 0;    // biased
};

// Reads the script's reply; false when it is not one (or said {-1}).
[[nodiscard]] inline bool parse_gcra_reply(const redisReply* r, gcra_reply& out) noexcept {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 6) return false;
  for (std::size_t i = 0; i < 6; ++i) {
    if (r->element[i]->type != REDIS_REPLY_INTEGER) return false;
  }
  const auto at = [&](std::size_t i) { return r->element[i]->integer; };
  if ((at(0) != 0 && at(0) != 1) || (at(1) != 0 && at(1) != 1)) return false;
  out.admitted = at(0) == 1;
  if (!join_biased(at(4), at(5), out.now)) return false;
  out.state = 0;
  if (at(1) == 1 && !join_biased(at(2), at(3), out.state)) return false;
  return true;
}

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_GCRA_LUA_HPP_
