// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/gcra_lua.hpp
// -----------------------------------------------------------------------------
//
// Internal: the GCRA decision of `detail/gcra.hpp` as a Redis Lua script,
// for `sturdy::redis::rate_limiter`. Lua 5.1 numbers are doubles, exact only
// up to 2^53, so every time and duration travels as a pair (seconds,
// nanoseconds in [0, 1e9)) and the script does pair arithmetic on integers
// far below 2^53: exact. The script only decides "admitted or not" and
// stores the new state; the client feeds the state and time the script saw
// to `detail::gcra::decide` for `remaining`, `retry_after`, `reset_after` and
// the wait of a reservation, and checks that both agree.
//
// It is kept minimal, because its server-side cost is most of a decision's
// price beyond a plain GET: one `TIME` (server time), one `GET`, and when
// admitting one `SET key state PX ttl`; no string formatting or parsing (the
// state is 12 bytes packed by Redis's `struct` library: the seconds as a
// little-endian int64, the nanoseconds as an int32; the numeric arguments
// arrive packed the same way in one argument, so the script neither creates
// nor converts a string per number), a reply of six integers.
//
// KEYS[1]: the state (Z = TAT − τ), with a TTL until the bucket is full
//          again (a missing key is a full bucket).
// ARGV[1]: mode ('s': server TIME plus the offset; 'c': the given time).
// ARGV[2]: peek ('1': do not write).
// ARGV[3]: `gcra_args`, packed '<i8i4i8i4i8i4i8i4i4': time_or_offset s, ns,
//          need (n·T) s, ns, τ s, ns, max_wait s, ns (a reservation:
//          admitted when its turn comes within max_wait), extra TTL in ms
//          (the key outlives the state's meaning by that much; see
//          `client_time_ttl_slack_ms`).
// Reply: {admitted 0|1, had_state 0|1, state s, state ns, now s, now ns},
//        or {-1} when KEYS[1] holds something unreadable.
//
// Thread safety: constants and pure functions.

#ifndef STURDY_DETAIL_GCRA_LUA_HPP_
#define STURDY_DETAIL_GCRA_LUA_HPP_

#include <hiredis/hiredis.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>

#include "sturdy/detail/gcra.hpp"

namespace sturdy::detail {

inline constexpr std::string_view gcra_script = R"lua(
local B = 1000000000
local now_s, now_ns, need_s, need_ns, tau_s, tau_ns, wait_s, wait_ns, slack =
  struct.unpack('<i8i4i8i4i8i4i8i4i4', ARGV[3])
if ARGV[1] == 's' then
  local t = redis.call('TIME')
  now_s, now_ns = t[1] + now_s, t[2] * 1000 + now_ns
  if now_ns >= B then now_s, now_ns = now_s + 1, now_ns - B end
end
local base_s, base_ns = now_s - tau_s, now_ns - tau_ns
if base_ns < 0 then base_s, base_ns = base_s - 1, base_ns + B end
if base_s < -9223372037 or (base_s == -9223372037 and base_ns < 145224192) then
  base_s, base_ns = -9223372037, 145224192
end
local had, old_s, old_ns = 0, 0, 0
local v = redis.call('GET', KEYS[1])
if v then
  if #v ~= 12 then return {-1} end
  old_s, old_ns = struct.unpack('<i8i4', v)
  if old_ns < 0 or old_ns >= B then return {-1} end
  had = 1
  if base_s < old_s or (base_s == old_s and base_ns < old_ns) then base_s, base_ns = old_s, old_ns end
end
local next_s, next_ns = base_s + need_s, base_ns + need_ns
if next_ns >= B then next_s, next_ns = next_s + 1, next_ns - B end
local lim_s, lim_ns = now_s + wait_s, now_ns + wait_ns
if lim_ns >= B then lim_s, lim_ns = lim_s + 1, lim_ns - B end
if lim_s > 9223372036 or (lim_s == 9223372036 and lim_ns > 854775807) then
  lim_s, lim_ns = 9223372036, 854775807
end
if next_s < lim_s or (next_s == lim_s and next_ns <= lim_ns) then
  if ARGV[2] == '0' then
    local x = next_ns + tau_ns - now_ns + 999999
    local ms = (next_s + tau_s - now_s) * 1000 + (x - x % 1000000) / 1000000
    if ms < 1 then ms = 1 end
    redis.call('SET', KEYS[1], struct.pack('<i8i4', next_s, next_ns), 'PX', ms + slack)
  end
  return {1, had, old_s, old_ns, now_s, now_ns}
end
return {0, had, old_s, old_ns, now_s, now_ns}
)lua";

// With client time, Redis still expires keys by its own clock: a key lives
// this much longer than the client-time state needs, so a server clock that
// runs a little fast (or a client's that runs slow) cannot drop a state
// early, which would admit more than the limit. (A state kept longer than
// needed is harmless: once the bucket is full it decides like no state.)
inline constexpr std::int32_t client_time_ttl_slack_ms = 1000;

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

// The script's numeric arguments, packed as its ARGV[3]: each duration or
// time as (seconds int64, nanoseconds int32), little-endian whatever the
// host's byte order.
struct gcra_args {
  static constexpr std::size_t size = 4 * 12 + 4;
  std::int64_t time_or_offset = 0;  // ns: the client's time, or the server-time offset
  std::int64_t need = 0;            // ns, n·T
  std::int64_t tolerance = 0;       // ns, τ
  std::int64_t max_wait = 0;        // ns, >= 0
  std::int32_t ttl_slack_ms = 0;

  [[nodiscard]] std::string_view pack(std::array<char, size>& out) const noexcept {
    std::size_t at = 0;
    const auto put = [&](std::uint64_t v, int bytes) {
      for (int i = 0; i < bytes; ++i) out[at++] = static_cast<char>((v >> (8 * i)) & 0xff);
    };
    for (const std::int64_t v : {time_or_offset, need, tolerance, max_wait}) {
      const split_ns p = split(v);
      put(static_cast<std::uint64_t>(p.s), 8);
      put(static_cast<std::uint64_t>(p.ns), 4);
    }
    put(static_cast<std::uint64_t>(static_cast<std::uint32_t>(ttl_slack_ms)), 4);
    return {out.data(), at};
  }
};

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
