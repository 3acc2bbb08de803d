// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/redis/idempotency_store.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::redis::idempotency_store<T>` keeps idempotency keys in Redis, so
// every replica of a service shares them: a client's retry that lands on
// another replica replays the first replica's outcome. It models
// `sturdy::idempotency_store`; moving `sturdy::idempotency_cache` from one
// process to a fleet is a change of its `Store` parameter (or of the alias
// `sturdy::redis::idempotency_cache<T>`). Optional: needs hiredis (link the
// CMake target `sturdy::redis`); the core library does not depend on it.
//
// Every transition is one Lua script run atomically by the server (EVALSHA,
// falling back to EVAL when the server answers NOSCRIPT), with the server's
// clock (`TIME`): begin (absent -> in progress with a lease and a fencing
// token; lease run out -> taken over with a newer token; completed -> the
// stored value; other fingerprint -> mismatch), complete (only with the
// current token; starts the TTL), abandon (only with the current token). A
// replay, like every other operation, costs one round trip.
//
// Example:
//
//   #include "sturdy/redis/idempotency_store.hpp"
//
//   sturdy::redis::idempotency_cache<Receipt> payments(
//       {.ttl = std::chrono::hours(24), .lease = std::chrono::seconds(30)},
//       {.host = "10.0.0.5", .port = 6379, .key_prefix = "payments:idem:"});
//
//   sturdy::result<Receipt> Charge(std::string_view key, const Request& req) {
//     auto r = payments.execute(key, sturdy::stable_fingerprint(req.body),
//                               [&] { return gateway.Charge(req); });
//     return std::move(r.result);  // Receipt, a replay, errc::in_progress,
//                                  // key_mismatch, store_unavailable, ...
//   }
//
// `Receipt` must be serialisable: specialise `sturdy::redis::codec<Receipt>`
// (`std::string`, arithmetic types and enum classes come with one; a plain
// struct may opt in to a byte copy with `use_byte_codec`). Fingerprints
// must be `sturdy::stable_fingerprint` (the same in every process).
// `redis::make_idempotency_cache<Receipt>(options, store_options[, listener])`
// is the start-up check (the options; `store().ping()` checks the server).
//
// When Redis fails (connection refused or lost, a connect or command timeout,
// no free pooled connection in time, a server error such as OOM or LOADING)
// the operation returns `errc::store_unavailable` and the next call
// reconnects. With `failure_mode::fail_open` a `begin` that cannot reach
// Redis instead lets the caller run the work without idempotency (and
// reports `redis_store_failed{.failed_open = true}`). A server that refuses
// the password (WRONGPASS, NOAUTH), the database index or an ACL permission
// answers `errc::invalid_options` instead, never failed open: a
// misconfiguration is not an outage. Data under a key that this store cannot
// read (another program's value, a foreign format) is `errc::corrupt_data`,
// never a crash.
//
// A call is bounded by the timeouts: at most `pool_wait_timeout` waiting for
// a connection, then (only when it must open one) `connect_timeout` for the
// TCP connection plus one `command_timeout` for the handshake, then one
// `command_timeout` per round trip (one; two when the server lost its script
// cache). With the defaults: at most 1.25 s, 0.5 s on a pooled connection.
// Not bounded: resolving a host name (getaddrinfo has no timeout; give a
// numeric address).
//
// Waiting duplicates (`in_flight_policy::wait`) poll: `wakes_waiters` is
// false, and `sturdy::idempotency_cache` re-runs `begin` at doubling
// intervals from `idempotency_options::poll_initial` to `poll_max`, never
// past the owner's lease or the wait deadline. (No subscriber connection or
// thread; a lost notification cannot strand a waiter.)
//
// Thread safety: every member function may be called from any number of
// threads. The store owns a pool of at most `pool_size` connections behind a
// `std::mutex` (held only to take or return a connection, never during I/O);
// a call uses one connection for its round trip; callers beyond `pool_size`
// wait for a free connection, at most `pool_wait_timeout`. A broken connection is closed and replaced on
// the next call. Commands are written with send(MSG_NOSIGNAL), so a dropped
// connection cannot kill the process with SIGPIPE, and the process's signal
// mask and dispositions are left alone.
//
// Testing: point the store at a private `redis-server` on loopback.
// `testing_advance(d)` shifts this store object's view of the server clock
// forward, so leases and TTLs can be run out without waiting.

#ifndef STURDY_REDIS_IDEMPOTENCY_STORE_HPP_
#define STURDY_REDIS_IDEMPOTENCY_STORE_HPP_

#include <hiredis/hiredis.h>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <ios>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/error.hpp"
#include "sturdy/idempotency.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/ownership.hpp"
#include "sturdy/redis/detail/connection.hpp"

namespace sturdy {

// -----------------------------------------------------------------------------
// Events (see sturdy/listener.hpp). The views are valid only during the call.
// -----------------------------------------------------------------------------

// A Redis store operation could not reach Redis or was refused by it.
struct redis_store_failed {
  std::string_view operation;  // "begin", "complete", "abandon"
  std::string_view key;        // the caller's key (without the prefix)
  std::error_code error;       // store_unavailable, invalid_options (the server
                               // refused the password, database or an ACL
                               // permission) or corrupt_data
  std::string_view detail;     // hiredis's or the server's message
  bool failed_open;            // fail_open: the caller proceeds without idempotency
};

// An outcome could not be stored (an exception, or an error code of a
// category not in `store_options::error_categories`): the key was released
// instead, as if the failure were not cached.
struct redis_outcome_not_stored {
  std::string_view key;
};

namespace redis {

// -----------------------------------------------------------------------------
// Serialisation of stored values
// -----------------------------------------------------------------------------
//
// codec<T>: how a `T` is written to and read from Redis. Specialise it for
// your type:
//
//   template <> struct sturdy::redis::codec<Receipt> {
//     static void encode(const Receipt& r, std::string& out) { out += r.ToJson(); }
//     static std::optional<Receipt> decode(std::string_view in) {
//       return Receipt::FromJson(in);  // std::nullopt when `in` is not one
//     }
//   };
//
// `encode` appends to `out` (if it throws, the cache fences the key: see
// `idempotency_outcome_not_stored`); `decode` returns `std::nullopt` on
// bytes it cannot read (the store then answers `errc::corrupt_data`; a
// `decode` that throws is treated the same way).
//
// Provided:
//   - `std::string`: the bytes as they are;
//   - arithmetic types and scoped enums (`enum class`): the object
//     representation (only between processes of the same build and
//     platform). `decode` checks the size, and that the bytes are a valid
//     value: a `bool` must be 0 or 1 (anything else is `corrupt_data`, not
//     undefined behaviour); every value of a scoped enum's underlying type is
//     a valid value of the enum;
//   - types marked with `use_byte_codec` (below), byte for byte.
// Anything else (a struct, a string_view, a span, a struct holding a
// pointer: bytes that mean nothing in another process) needs a codec.
template <class T>
struct codec;

// use_byte_codec<T>: specialise to `std::true_type` to store a trivially
// copyable `T` as its object representation. By doing so you vouch that
// every byte pattern of `sizeof(T)` bytes is a valid `T` and that `T` refers
// to no memory: no pointers or views, no `bool` or enum members (their
// invalid byte patterns would be undefined behaviour when read back), and
// an unscoped enum only with a fixed underlying type.
//
//   struct price { std::int64_t cents; std::int32_t currency; };
//   template <> struct sturdy::redis::use_byte_codec<price> : std::true_type {};
template <class T>
struct use_byte_codec : std::false_type {};

namespace detail {
template <class T>
concept scoped_enum = std::is_enum_v<T> && !std::is_convertible_v<T, std::underlying_type_t<T>>;
// The types the built-in byte codec stores (see `codec`).
template <class T>
concept byte_codable = !std::is_const_v<T> && !std::is_volatile_v<T> && !non_owning<T> &&
                       (std::is_arithmetic_v<T> || scoped_enum<T> ||
                        (use_byte_codec<T>::value && std::is_trivially_copyable_v<T> &&
                         !std::is_pointer_v<T> && !std::is_member_pointer_v<T> && !std::is_array_v<T>));
}  // namespace detail

template <>
struct codec<std::string> {
  static void encode(const std::string& v, std::string& out) { out.append(v); }
  static std::optional<std::string> decode(std::string_view in) { return std::string(in); }
};

template <detail::byte_codable T>
struct codec<T> {
  static void encode(const T& v, std::string& out) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    out.append(bytes, sizeof(T));
  }
  static std::optional<T> decode(std::string_view in) noexcept {
    if (in.size() != sizeof(T)) return std::nullopt;
    if constexpr (std::is_same_v<T, bool>) {
      // Only 0 and 1 are bools: any other byte would be undefined behaviour.
      const auto byte = static_cast<unsigned char>(in[0]);
      if (byte > 1) return std::nullopt;
      return byte == 1;
    } else if constexpr (detail::scoped_enum<T>) {
      // Every value of the underlying type is a value of a scoped enum.
      std::underlying_type_t<T> u{};
      std::memcpy(&u, in.data(), sizeof(T));
      return static_cast<T>(u);
    } else if constexpr (std::is_default_constructible_v<T>) {
      T v{};
      std::memcpy(&v, in.data(), sizeof(T));
      return v;
    } else {
      alignas(T) unsigned char raw[sizeof(T)];
      std::memcpy(raw, in.data(), sizeof(T));
      return *std::launder(reinterpret_cast<T*>(raw));
    }
  }
};

// serializable<T>: `codec<T>` exists and has the shape above. `void` is
// always storable (a success carries no bytes).
template <class T>
concept serializable = std::is_void_v<T> || requires(const T& v, std::string& out, std::string_view in) {
  codec<T>::encode(v, out);
  { codec<T>::decode(in) } -> std::same_as<std::optional<T>>;
};

// -----------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------

enum class failure_mode : std::uint8_t {
  // Redis unreachable: refuse with `errc::store_unavailable` (the work does
  // not run). The safe default.
  fail_closed,
  // Redis unreachable: `begin` lets the caller run the work without
  // idempotency (a duplicate may then run twice); `complete`/`abandon`
  // report the failure as an event and succeed. Each such call emits
  // `redis_store_failed{.failed_open = true}`.
  fail_open,
};

// store_options
//
// Aggregate; fill with designated initializers. A store built with invalid
// options answers every call with `errc::invalid_options`.
struct store_options {
  // Redis server host name or address. Default "127.0.0.1".
  std::string host = "127.0.0.1";
  // TCP port; != 0. Default 6379.
  std::uint16_t port = 6379;
  // Prepended to every Redis key this store touches, so several services
  // (or tests) share one Redis: entries live at `key_prefix + "k:" + key`,
  // the token counter at `key_prefix + "seq"`. For Redis Cluster put a hash
  // tag in it (`"{payments}:"`) so a script's keys share a slot. Default
  // "sturdy:idem:".
  std::string key_prefix = "sturdy:idem:";
  // Longest time to establish a TCP connection; > 0. Resolving `host`
  // (getaddrinfo) is not bounded: prefer a numeric address. Default 250 ms.
  duration connect_timeout = std::chrono::milliseconds(250);
  // Longest time for one round trip, sending the command and receiving its
  // whole reply (a deadline on the round trip, not a per-recv socket
  // timeout); > 0. Default 250 ms.
  duration command_timeout = std::chrono::milliseconds(250);
  // Most connections open at once; in [1, 1024]. Default 4.
  std::size_t pool_size = 4;
  // Longest time a call waits for a free connection when all `pool_size`
  // are busy (then `errc::store_unavailable`); >= 0 (0: do not wait).
  // Default 250 ms.
  duration pool_wait_timeout = std::chrono::milliseconds(250);
  // What a call does when Redis is unreachable. Default fail_closed.
  failure_mode on_unavailable = failure_mode::fail_closed;
  // Password for `AUTH` after connecting; empty: none. Default empty.
  std::string password = {};
  // Database index for `SELECT`; >= 0. Default 0.
  int database = 0;
  // Error categories (besides sturdy's, generic, system, iostream and
  // future) whose codes may be stored and replayed; categories are matched
  // by `name()`, so every process must list the same ones. An error of any
  // other category is not cached (the key is released). Default empty.
  std::vector<const std::error_category*> error_categories = {};

  // Empty when valid, otherwise a sentence naming the bad field.
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (host.empty()) return "redis::store_options.host must not be empty";
    if (host.find('\0') != std::string::npos) return "redis::store_options.host must not contain NUL";
    if (port == 0) return "redis::store_options.port must be != 0";
    if (connect_timeout <= duration::zero()) return "redis::store_options.connect_timeout must be > 0";
    if (command_timeout <= duration::zero()) return "redis::store_options.command_timeout must be > 0";
    if (pool_size == 0 || pool_size > 1024) return "redis::store_options.pool_size must be in [1, 1024]";
    if (pool_wait_timeout < duration::zero()) return "redis::store_options.pool_wait_timeout must be >= 0";
    if (on_unavailable != failure_mode::fail_closed && on_unavailable != failure_mode::fail_open)
      return "redis::store_options.on_unavailable must be fail_closed or fail_open";
    if (database < 0) return "redis::store_options.database must be >= 0";
    for (const std::error_category* c : error_categories) {
      if (c == nullptr) return "redis::store_options.error_categories must not hold null";
    }
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    if (!validation_message().empty()) return errc::invalid_options;
    return success();
  }
};

// with_address(options, "host:port"): `options` with `host` and `port` taken
// from `address` (e.g. the value of an environment variable); an IPv6
// address goes in brackets ("[::1]:6379"). `errc::invalid_options` when it
// does not parse.
[[nodiscard]] inline result<store_options> with_address(store_options options, std::string_view address) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == address.size())
    return errc::invalid_options;
  std::string_view host = address.substr(0, colon);
  const std::string_view port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535 || host.empty())
    return errc::invalid_options;
  options.host = std::string(host);
  options.port = static_cast<std::uint16_t>(value);
  return options;
}

namespace detail {

// The server-side transitions. KEYS[1] = the entry's hash, KEYS[2] = the
// token counter. Times are milliseconds of the server's clock (TIME) plus
// ARGV's skew (0 outside tests). Hash fields: s = state ('p' in progress,
// 'c' completed), f = fingerprint, t = token, d = deadline (lease end or
// expiry), v = stored value.
//
// begin(ARGV: fingerprint, lease_ms, skew_ms) ->
//   {0, token, 0 | 1 took over | 2 expired}  acquired
//   {1, remaining_ms}                        in progress
//   {2, value}                               completed
//   {3}                                      mismatch
//   {4}                                      unreadable entry
inline constexpr std::string_view begin_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local e = redis.call('HMGET', KEYS[1], 's', 'f', 't', 'd', 'v')
local how = 0
if e[1] then
  local d = tonumber(e[4])
  if not d or not e[2] or not e[3] then return {4} end
  if e[1] == 'c' then
    if now < d then
      if e[2] ~= ARGV[1] then return {3} end
      if not e[5] then return {4} end
      return {2, e[5]}
    end
    how = 2
  elseif e[1] == 'p' then
    -- Another payload never takes a key over, even when its lease ran out.
    if e[2] ~= ARGV[1] then return {3} end
    if now < d then return {1, d - now} end
    how = 1
  else
    return {4}
  end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  return {4}
end
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tok = redis.call('INCR', KEYS[2])
if tok < us then
  tok = us
  redis.call('SET', KEYS[2], string.format('%.0f', us))
end
local lease = tonumber(ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', 'p', 'f', ARGV[1], 't', string.format('%.0f', tok),
           'd', string.format('%.0f', now + lease))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', 2 * lease))
return {0, tok, how}
)lua";

// complete(ARGV: token, ttl_ms, skew_ms, value) -> 1 stored, 0 stale token.
inline constexpr std::string_view complete_script = R"lua(
local e = redis.call('HMGET', KEYS[1], 's', 't')
if e[1] ~= 'p' or e[2] ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 's', 'c', 'd', string.format('%.0f', now + ttl), 'v', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
)lua";

// abandon(ARGV: token) -> 1 released, 0 stale token.
inline constexpr std::string_view abandon_script = R"lua(
local e = redis.call('HMGET', KEYS[1], 's', 't')
if e[1] ~= 'p' or e[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
)lua";

enum class script : std::uint8_t { begin, complete, abandon };

// Escapes glob characters for SCAN MATCH.
[[nodiscard]] inline std::string glob_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') out.push_back('\\');
    out.push_back(ch);
  }
  return out;
}

}  // namespace detail

// -----------------------------------------------------------------------------
// idempotency_store<T, Listener>
// -----------------------------------------------------------------------------
//
// Holds `sturdy::outcome<T>`: a success (`T` through `codec<T>`; nothing for
// `void`) or an error code (its category name and value). Exceptions cannot
// cross processes: completing with one releases the key instead (as if the
// failure were not cached) and emits `redis_outcome_not_stored`.
//
// Leases and TTLs are whole milliseconds (rounded up), measured by the
// server's clock. Tokens come from one counter per prefix that never drops
// below the server's clock in microseconds, so they keep increasing even
// across a Redis restart that lost the data. Redis's own key expiry removes
// completed entries at their TTL and abandoned-by-crash in-progress entries
// at twice their lease; memory is bounded by Redis (`maxmemory`; use
// `volatile-lru` or `volatile-ttl`: every entry has a TTL). The token
// counter (`key_prefix + "seq"`, one small string per prefix) has none, on
// purpose: losing it (an `allkeys-*` eviction, a restart) is harmless, since
// `begin` raises it to the server's clock, so tokens still increase.
//
// `stats()`: hits, misses, mismatches, takeovers and expirations are counted
// by this object (this process), `entries` counts the prefix's keys with
// `SCAN` (O(keys in the database): call it rarely; 0 when Redis is
// unreachable); `evictions` and `bytes` are not tracked (0).
//
// Pinned: not copyable or movable.
template <class T, class Listener = null_listener>
class idempotency_store {
  static_assert(!non_owning<T>,
                "sturdy::redis::idempotency_store<T> keeps T past the call (in another process, even), so "
                "T must own its memory: use std::string rather than std::string_view, a container rather "
                "than std::span, a value rather than a pointer (see sturdy/ownership.hpp).");
  static_assert(non_owning<T> || serializable<T>,
                "sturdy::redis::idempotency_store<T> needs sturdy::redis::codec<T> (encode/decode): "
                "specialise it for your type; std::string, arithmetic types and enum classes have one, "
                "and a plain struct may opt in with sturdy::redis::use_byte_codec.");

 public:
  using value_type = outcome<T>;
  using options_type = store_options;
  static constexpr bool wakes_waiters = false;

  explicit idempotency_store(store_options options = {}, Listener listener = Listener())
      : options_(std::move(options)),
        options_ok_(options_.validate().has_value()),
        listener_(std::move(listener)),
        pool_(detail::connection_config_of(options_), {detail::begin_script, detail::complete_script,
                                                       detail::abandon_script}),
        seq_key_(options_.key_prefix + "seq") {}
  idempotency_store(const idempotency_store&) = delete;
  idempotency_store& operator=(const idempotency_store&) = delete;

  // idempotency_store::begin()
  //
  // See `sturdy::idempotency_store`. `waiter` is ignored (this store does
  // not wake waiters). Errors: invalid_options (also when the server
  // refuses the password, database or an ACL permission; never failed open),
  // store_unavailable (unless failing open: then `acquired` with the null
  // token 0), corrupt_data.
  [[nodiscard]] result<begin_outcome<value_type>> begin(std::string_view key, std::uint64_t fingerprint,
                                                        duration lease,
                                                        idempotency_waiter* waiter = nullptr) {
    (void)waiter;
    if (STURDY_UNLIKELY(!options_ok_ || lease <= duration::zero())) return errc::invalid_options;
    std::array<char, 24> fp_buf, lease_buf, skew_buf;
    const std::string entry = entry_key(key);
    const std::string_view keys[] = {entry, seq_key_};
    const std::string_view args[] = {detail::to_chars(fingerprint, fp_buf),
                                     detail::to_chars(detail::ceil_ms(lease), lease_buf),
                                     detail::to_chars(skew_ms(), skew_buf)};
    detail::call_error err;
    detail::reply_ptr r = call(detail::script::begin, keys, args, err);
    if (r == nullptr) {
      if (err.code == errc::store_unavailable && fail_open()) {
        emit(listener_, redis_store_failed{"begin", key, errc::store_unavailable, err.detail, true});
        begin_outcome<value_type> out;
        out.status = begin_status::acquired;
        out.token = fencing_token{0};
        return out;
      }
      emit(listener_, redis_store_failed{"begin", key, err.code, err.detail, false});
      return err.code;
    }
    auto out = parse_begin(r.get());
    if (!out.has_value()) {
      emit(listener_, redis_store_failed{"begin", key, out.error(), "unreadable entry", false});
    }
    return out;
  }

  // idempotency_store::complete()
  //
  // Stores `value` for `ttl` if `token` is the key's current token
  // (otherwise `errc::stale_token`). An outcome that cannot be stored (an
  // exception, an unlisted error category) releases the key instead. The
  // null token 0 of a fail-open `begin` succeeds without touching Redis
  // (a fail-closed store answers `stale_token` to it).
  [[nodiscard]] result<void> complete(std::string_view key, fencing_token token, value_type value,
                                      duration ttl) {
    if (STURDY_UNLIKELY(!options_ok_ || ttl <= duration::zero())) return errc::invalid_options;
    if (STURDY_UNLIKELY(token.value == 0)) return null_token();
    std::string blob;
    if (!encode(value, blob)) {
      emit(listener_, redis_outcome_not_stored{key});
      return abandon(key, token);
    }
    std::array<char, 24> tok_buf, ttl_buf, skew_buf;
    const std::string entry = entry_key(key);
    const std::string_view keys[] = {entry, seq_key_};
    const std::string_view args[] = {detail::to_chars(token.value, tok_buf),
                                     detail::to_chars(detail::ceil_ms(ttl), ttl_buf),
                                     detail::to_chars(skew_ms(), skew_buf), blob};
    return finish("complete", detail::script::complete, key, keys, args);
  }

  // idempotency_store::abandon()
  //
  // Releases the key if `token` is its current token (otherwise
  // `errc::stale_token`).
  [[nodiscard]] result<void> abandon(std::string_view key, fencing_token token) {
    if (STURDY_UNLIKELY(!options_ok_)) return errc::invalid_options;
    if (STURDY_UNLIKELY(token.value == 0)) return null_token();
    std::array<char, 24> tok_buf;
    const std::string entry = entry_key(key);
    const std::string_view keys[] = {entry, seq_key_};
    const std::string_view args[] = {detail::to_chars(token.value, tok_buf)};
    return finish("abandon", detail::script::abandon, key, keys, args);
  }

  // idempotency_store::cancel_wait(): nothing to do (waiters poll).
  void cancel_wait(std::string_view, idempotency_waiter&) noexcept {}

  // idempotency_store::stats()
  [[nodiscard]] idempotency_store_stats stats() const {
    idempotency_store_stats out;
    out.hits = counters_.hits.load(std::memory_order_relaxed);
    out.misses = counters_.misses.load(std::memory_order_relaxed);
    out.mismatches = counters_.mismatches.load(std::memory_order_relaxed);
    out.takeovers = counters_.takeovers.load(std::memory_order_relaxed);
    out.expirations = counters_.expirations.load(std::memory_order_relaxed);
    out.entries = count_entries();
    return out;
  }

  // idempotency_store::ping()
  //
  // One round trip; `errc::store_unavailable` when Redis cannot be reached,
  // `errc::invalid_options` when it refuses the password, database or an
  // ACL permission (a health check, or to fail fast at start-up).
  [[nodiscard]] result<void> ping() {
    if (!options_ok_) return errc::invalid_options;
    return pool_.ping();
  }

  // idempotency_store::testing_advance()
  //
  // For tests: from now on this store object (only) sees the server's clock
  // `d` later (cumulative; d >= 0, otherwise ignored), so leases and TTLs
  // run out without waiting. Other processes and store objects are
  // unaffected.
  void testing_advance(duration d) noexcept {
    if (d <= duration::zero()) return;
    std::int64_t cur = skew_ns_.load(std::memory_order_relaxed);
    while (!skew_ns_.compare_exchange_weak(cur, ::sturdy::detail::saturating_add(duration(cur), d).count(),
                                           std::memory_order_relaxed)) {
    }
  }

  // The Redis key that holds `key`'s entry (for tools and tests).
  [[nodiscard]] std::string entry_key(std::string_view key) const {
    std::string out;
    out.reserve(options_.key_prefix.size() + 2 + key.size());
    out.append(options_.key_prefix).append("k:").append(key);
    return out;
  }

  [[nodiscard]] const store_options& options() const noexcept { return options_; }
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

 private:
  bool fail_open() const noexcept { return options_.on_unavailable == failure_mode::fail_open; }

  // Token 0 is never issued by Redis: it is the fail-open `begin`'s, whose
  // outcome is not stored. A fail-closed store refuses it.
  result<void> null_token() const noexcept {
    if (fail_open()) return success();
    return errc::stale_token;
  }

  std::int64_t skew_ms() const noexcept { return skew_ns_.load(std::memory_order_relaxed) / 1'000'000; }

  // One script call on a pooled connection (see detail::pool::eval).
  template <std::size_t NK, std::size_t NA>
  detail::reply_ptr call(detail::script which, const std::string_view (&keys)[NK],
                         const std::string_view (&args)[NA], detail::call_error& err) const {
    return pool_.eval(static_cast<std::size_t>(which), keys, args, err);
  }

  template <std::size_t NK, std::size_t NA>
  result<void> finish(std::string_view op, detail::script which, std::string_view key,
                      const std::string_view (&keys)[NK], const std::string_view (&args)[NA]) {
    detail::call_error err;
    detail::reply_ptr r = call(which, keys, args, err);
    if (r == nullptr) {
      const bool open = err.code == errc::store_unavailable && fail_open();
      emit(listener_, redis_store_failed{op, key, err.code, err.detail, open});
      if (open) return success();
      return err.code;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
      emit(listener_, redis_store_failed{op, key, errc::corrupt_data, "unexpected reply", false});
      return errc::corrupt_data;
    }
    if (r->integer != 1) return errc::stale_token;
    return success();
  }

  result<begin_outcome<value_type>> parse_begin(const redisReply* r) {
    begin_outcome<value_type> out;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->element[0]->type != REDIS_REPLY_INTEGER)
      return errc::corrupt_data;
    const redisReply* const* e = r->element;
    switch (e[0]->integer) {
      case 0:  // acquired
        if (r->elements != 3 || e[1]->type != REDIS_REPLY_INTEGER || e[2]->type != REDIS_REPLY_INTEGER ||
            e[1]->integer <= 0)
          return errc::corrupt_data;
        out.status = begin_status::acquired;
        out.token = fencing_token{static_cast<std::uint64_t>(e[1]->integer)};
        out.took_over = e[2]->integer == 1;
        counters_.misses.fetch_add(1, std::memory_order_relaxed);
        if (e[2]->integer == 1) counters_.takeovers.fetch_add(1, std::memory_order_relaxed);
        if (e[2]->integer == 2) counters_.expirations.fetch_add(1, std::memory_order_relaxed);
        return out;
      case 1:  // in progress
        if (r->elements != 2 || e[1]->type != REDIS_REPLY_INTEGER || e[1]->integer <= 0)
          return errc::corrupt_data;
        out.status = begin_status::in_progress;
        out.lease_remaining = std::chrono::milliseconds(e[1]->integer);
        return out;
      case 2: {  // completed
        if (r->elements != 2 || e[1]->type != REDIS_REPLY_STRING) return errc::corrupt_data;
        auto v = decode(detail::text(e[1]));
        if (!v.has_value()) return errc::corrupt_data;
        out.status = begin_status::completed;
        out.value.emplace(std::move(*v));
        counters_.hits.fetch_add(1, std::memory_order_relaxed);
        return out;
      }
      case 3:
        out.status = begin_status::mismatch;
        counters_.mismatches.fetch_add(1, std::memory_order_relaxed);
        return out;
      default:
        return errc::corrupt_data;
    }
  }

  // Stored form: "S1v" + codec bytes, or "S1e" + category name + '\0' +
  // decimal value.
  static constexpr std::string_view magic = "S1";

  const std::error_category* find_category(std::string_view name) const noexcept {
    const std::error_category* builtin[] = {&sturdy::error_category(), &std::generic_category(),
                                            &std::system_category(), &std::iostream_category(),
                                            &std::future_category()};
    for (const std::error_category* c : builtin) {
      if (name == c->name()) return c;
    }
    for (const std::error_category* c : options_.error_categories) {
      if (name == c->name()) return c;
    }
    return nullptr;
  }

  bool encode(const value_type& v, std::string& out) const {
    if (v.has_exception()) return false;
    out.append(magic);
    if (v.has_error()) {
      const std::error_code ec = v.assume_error();
      if (!ec) return false;
      const std::string_view name = ec.category().name();
      if (find_category(name) != &ec.category()) return false;
      std::array<char, 24> buf;
      out.push_back('e');
      out.append(name);
      out.push_back('\0');
      out.append(detail::to_chars(ec.value(), buf));
      return true;
    }
    if (!v.has_value()) return false;
    out.push_back('v');
    if constexpr (!std::is_void_v<T>) codec<T>::encode(v.assume_value(), out);
    return true;
  }

  std::optional<value_type> decode(std::string_view in) const {
    if (in.size() < magic.size() + 1 || in.substr(0, magic.size()) != magic) return std::nullopt;
    const char tag = in[magic.size()];
    in.remove_prefix(magic.size() + 1);
    if (tag == 'v') {
      if constexpr (std::is_void_v<T>) {
        if (!in.empty()) return std::nullopt;
        return value_type(success());
      } else {
        std::optional<T> v;
        try {
          v = codec<T>::decode(in);
        } catch (...) {  // a decode that throws cannot read the bytes either
          return std::nullopt;
        }
        if (!v.has_value()) return std::nullopt;
        return value_type(std::in_place_type<T>, std::move(*v));
      }
    }
    if (tag == 'e') {
      const std::size_t nul = in.find('\0');
      if (nul == std::string_view::npos) return std::nullopt;
      const std::error_category* cat = find_category(in.substr(0, nul));
      const std::string_view digits = in.substr(nul + 1);
      int value = 0;
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (cat == nullptr || ec != std::errc() || end != digits.data() + digits.size() || value == 0)
        return std::nullopt;
      return value_type(std::in_place_type<std::error_code>, std::error_code(value, *cat));
    }
    return std::nullopt;
  }

  std::size_t count_entries() const {
    if (!options_ok_) return 0;
    detail::call_error err;
    auto c = pool_.acquire(err);
    if (c == nullptr) return 0;
    const std::string pattern = detail::glob_escape(options_.key_prefix) + "k:*";
    std::string cursor = "0";
    std::size_t n = 0;
    for (;;) {
      const char* argv[] = {"SCAN", cursor.c_str(), "MATCH", pattern.c_str(), "COUNT", "1000"};
      const std::size_t len[] = {4, cursor.size(), 5, pattern.size(), 5, 4};
      detail::reply_ptr r(detail::run_command(c->ctx.get(), 6, argv, len, options_.command_timeout));
      if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
          r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
        pool_.release(std::move(c));
        return n;
      }
      n += r->element[1]->elements;
      cursor = std::string(detail::text(r->element[0]));
      if (cursor == "0") break;
    }
    pool_.release(std::move(c));
    return n;
  }

  struct alignas(cache_line_size) counters {
    std::atomic<std::uint64_t> hits{0};
    std::atomic<std::uint64_t> misses{0};
    std::atomic<std::uint64_t> mismatches{0};
    std::atomic<std::uint64_t> takeovers{0};
    std::atomic<std::uint64_t> expirations{0};
  };

  store_options options_;
  bool options_ok_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
  mutable detail::pool pool_;
  std::string seq_key_;
  std::atomic<std::int64_t> skew_ns_{0};
  mutable counters counters_;
};

static_assert(::sturdy::idempotency_store<idempotency_store<int>>);
static_assert(::sturdy::idempotency_store<idempotency_store<std::string>>);
static_assert(::sturdy::idempotency_store<idempotency_store<void>>);

// redis::idempotency_cache<T, Listener, Sleeper>: `sturdy::idempotency_cache`
// over this store; built from `(idempotency_options, store_options)`. The
// cache and its store each hold a copy of the listener (the store's is
// copied from the cache's constructor argument).
template <class T, class Listener = null_listener, sleeper Sleeper = thread_sleeper>
using idempotency_cache =
    ::sturdy::idempotency_cache<T, steady_clock_source, Sleeper, Listener, idempotency_store<T, Listener>>;

// redis::make_idempotency_cache<T>(options, store_options[, listener])
//
// The start-up check for the Redis cache, deducing the listener type (the
// cache and its store each get a copy): `errc::invalid_options` instead of a
// cache that would refuse every call, after emitting
// `options_rejected{"redis::idempotency_cache", message}` (the message names
// the field). It does not contact Redis: call `cache->store().ping()` to
// check the server (address, password, database) at start-up too.
//
//   auto made = sturdy::redis::make_idempotency_cache<Receipt>(
//       {.ttl = std::chrono::hours(24)}, {.host = "10.0.0.5", .key_prefix = "payments:idem:"});
//   if (!made) return made.error();
template <class T, class Listener = null_listener>
[[nodiscard]] result<std::unique_ptr<idempotency_cache<T, Listener>>> make_idempotency_cache(
    idempotency_options options, store_options store, Listener listener = Listener()) {
  std::string_view m = options.validation_message();
  if (m.empty()) m = store.validation_message();
  if (!m.empty()) {
    emit(listener, options_rejected{"redis::idempotency_cache", m});
    return errc::invalid_options;
  }
  return std::make_unique<idempotency_cache<T, Listener>>(
      std::move(options), std::move(store), steady_clock_source(), thread_sleeper(), std::move(listener));
}

}  // namespace redis
}  // namespace sturdy

#endif  // STURDY_REDIS_IDEMPOTENCY_STORE_HPP_
