// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/redis/rate_limiter.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::redis::rate_limiter` holds a rate limit for a whole fleet: every
// process that builds one with the same options and Redis shares, per key
// (a tenant, a partner API), one GCRA state in Redis. The maths is
// `sturdy::rate_limiter`'s (the same `rate` per `period` with `burst`, the
// same guarantee: over any interval of length t at most rate·t/period +
// burst admitted, fleet-wide), run by ONE Lua script on the server: one
// round trip (EVALSHA; after the server lost its script cache, once EVAL)
// per decision, atomic with every other process's decisions. Optional: needs
// hiredis (link the CMake target `sturdy::redis`).
//
// Time: by default the script reads the server's clock (`TIME`), so skewed
// client clocks cannot skew the limit. `time_source::client` sends the
// caller's wall-clock time instead, for servers that refuse `TIME` in scripts
// (some managed Redis); then every process's clock must agree (NTP).
//
// Keys: `key_prefix + key`, 12 bytes (GCRA's TAT − τ as a little-endian
// int64 of seconds and an int32 of nanoseconds, packed by the script) with a
// TTL until the bucket is full again (1 s more with client time, as a margin
// for the server's clock, which expires keys), so an idle key disappears by
// itself (and a missing key is exactly a full bucket).
//
// acquire(key, n, max_wait, stop, deadline) reserves the turn in the same
// round trip (the script admits a request whose turn comes within max_wait)
// and sleeps until it through the injected Sleeper; a stop request while
// sleeping forfeits the turn (across a fleet it cannot be given back).
//
// Example:
//
//   #include "sturdy/redis/rate_limiter.hpp"
//
//   // 100 requests per second per tenant across the fleet, bursts of 20.
//   sturdy::redis::rate_limiter<> per_tenant({.rate = 100, .period = std::chrono::seconds(1), .burst = 20},
//                                            {.host = "10.0.0.5", .port = 6379});
//   auto d = per_tenant.try_acquire(tenant_id);
//   d.write_headers([&](std::string_view n, std::string_view v) { resp.set(n, v); });
//   if (!d.allowed) return reply_429(resp);   // d.error(): errc::rate_limited
//
//   // A background sender waits for its turn, at most 200 ms:
//   if (per_tenant.acquire(tenant_id, 1, std::chrono::milliseconds(200), stop).allowed) send();
//
// Failures: Redis unreachable (refused, lost, a connect or command timeout,
// no free pooled connection in time, LOADING/BUSY/OOM...) is handled by
// `on_unavailable`: `failure_mode::fail_open` (the default here: an outage
// of Redis must not become an outage of the service) admits the request and
// emits `redis_store_failed{.failed_open = true}`; `fail_closed` refuses it
// (reason store_unavailable, errc::store_unavailable). A server that refuses
// the password, database or an ACL permission is `invalid_options`, and a
// key holding data this limiter cannot read is `corrupt_data`: both refuse,
// never fail open (a misconfiguration is not an outage). Timeouts and the
// connection pool are the idempotency store's (one layer,
// `sturdy/redis/detail/connection.hpp`): at most pool_wait_timeout +
// connect_timeout + 2 · command_timeout per call (plus the sleep of acquire).
//
// Thread safety: every member function may be called from any number of
// threads; at most `pool_size` connections, each used by one call at a time.
//
// Testing: point it at a private redis-server; `testing_advance(d)` shifts
// this object's view of the server clock forward (server time), or give it a
// `sturdy::testing::manual_clock` (client time).

#ifndef STURDY_REDIS_RATE_LIMITER_HPP_
#define STURDY_REDIS_RATE_LIMITER_HPP_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/detail/gcra.hpp"
#include "sturdy/detail/gcra_lua.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/rate_limiter.hpp"
#include "sturdy/redis/detail/connection.hpp"
#include "sturdy/redis/idempotency_store.hpp"  // failure_mode, redis_store_failed, with_address

namespace sturdy::redis {

// Where a decision's time comes from.
enum class time_source : std::uint8_t {
  server,  // the script reads TIME (default)
  client,  // the caller's Clock (wall clock: every process's must agree)
};

// wall_clock: `std::chrono::system_clock` as a `clock_source` (nanoseconds
// since the Unix epoch in a `sturdy::time_point`), the default Clock of
// time_source::client.
struct wall_clock {
  [[nodiscard]] time_point now() const noexcept {
    return time_point(
        std::chrono::duration_cast<duration>(std::chrono::system_clock::now().time_since_epoch()));
  }
};

// limiter_store_options
//
// Aggregate; the connection fields mean what they mean in `store_options`.
struct limiter_store_options {
  // Redis server host name or address. Default "127.0.0.1".
  std::string host = "127.0.0.1";
  // TCP port; != 0. Default 6379.
  std::uint16_t port = 6379;
  // Prepended to every key; a Redis Cluster hash tag may go in it. Default
  // "sturdy:rl:".
  std::string key_prefix = "sturdy:rl:";
  // Longest time to establish a TCP connection; > 0. Default 250 ms.
  duration connect_timeout = std::chrono::milliseconds(250);
  // Longest time for one round trip; > 0. Default 250 ms.
  duration command_timeout = std::chrono::milliseconds(250);
  // Most connections open at once; in [1, 1024]. Default 4.
  std::size_t pool_size = 4;
  // Longest wait for a free connection; >= 0. Default 250 ms.
  duration pool_wait_timeout = std::chrono::milliseconds(250);
  // What a decision does when Redis is unreachable. Default fail_open.
  failure_mode on_unavailable = failure_mode::fail_open;
  // Password for AUTH; empty: none. Default empty.
  std::string password = {};
  // Database index for SELECT; >= 0. Default 0.
  int database = 0;
  // Whose clock decides. Default server.
  time_source time = time_source::server;

  // Empty when valid, otherwise a sentence naming the bad field.
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (host.empty()) return "redis::limiter_store_options.host must not be empty";
    if (host.find('\0') != std::string::npos) return "redis::limiter_store_options.host must not contain NUL";
    if (port == 0) return "redis::limiter_store_options.port must be != 0";
    if (connect_timeout <= duration::zero())
      return "redis::limiter_store_options.connect_timeout must be > 0";
    if (command_timeout <= duration::zero())
      return "redis::limiter_store_options.command_timeout must be > 0";
    if (pool_size == 0 || pool_size > 1024)
      return "redis::limiter_store_options.pool_size must be in [1, 1024]";
    if (pool_wait_timeout < duration::zero())
      return "redis::limiter_store_options.pool_wait_timeout must be >= 0";
    if (on_unavailable != failure_mode::fail_closed && on_unavailable != failure_mode::fail_open)
      return "redis::limiter_store_options.on_unavailable is not a valid failure_mode";
    if (database < 0) return "redis::limiter_store_options.database must be >= 0";
    if (time != time_source::server && time != time_source::client)
      return "redis::limiter_store_options.time is not a valid time_source";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    if (!validation_message().empty()) return errc::invalid_options;
    return success();
  }
};

// with_address(options, "host:port"): `options` with host and port from
// `address`; errc::invalid_options when it does not parse.
[[nodiscard]] inline result<limiter_store_options> with_address(limiter_store_options options,
                                                                std::string_view address) {
  auto parsed = with_address(store_options{}, address);
  if (!parsed) return parsed.error();
  options.host = std::move(parsed.value().host);
  options.port = parsed.value().port;
  return options;
}

// rate_limiter<Listener, Clock, Sleeper>
//
// Pinned: not copyable or movable. `Clock` is read for the time with
// time_source::client, and by `acquire` for its deadline; `Sleeper` is what
// `acquire` sleeps through.
template <class Listener = null_listener, clock_source Clock = wall_clock, sleeper Sleeper = thread_sleeper>
class rate_limiter {
 public:
  explicit rate_limiter(rate_limiter_options limit, limiter_store_options store = {}, Clock clock = Clock(),
                        Listener listener = Listener(), Sleeper sleeper = Sleeper())
      : limit_(limit),
        store_(std::move(store)),
        limit_ok_(limit_.validation_message().empty()),
        store_ok_(store_.validation_message().empty()),
        core_(limit_ok_
                  ? sturdy::detail::gcra(static_cast<std::uint64_t>(limit_.interval().count()), limit_.burst)
                  : sturdy::detail::gcra()),
        clock_(std::move(clock)),
        listener_(std::move(listener)),
        sleeper_(std::move(sleeper)),
        pool_(detail::connection_config_of(store_), {sturdy::detail::gcra_script}) {}
  rate_limiter(const rate_limiter&) = delete;
  rate_limiter& operator=(const rate_limiter&) = delete;

  // rate_limiter::try_acquire()
  //
  // The fleet-wide decision for `n` requests under `key`, in one round
  // trip; see `sturdy::rate_limit_decision` and the banner for failures.
  // n = 0 peeks; n > burst is refused with reason exceeds_burst (after a
  // peek, for `remaining` and `reset_after`).
  [[nodiscard]] rate_limit_decision try_acquire(std::string_view key, std::uint64_t n = 1) {
    if (STURDY_UNLIKELY(!limit_ok_ || !store_ok_)) return reject_invalid(n);
    const reservation r = decide(key, n, 0);
    if (r.decided && !r.decision.allowed) return rejected(r.decision, n);
    return r.decision;
  }

  // rate_limiter::acquire()
  //
  // Reserves, in one round trip, the earliest turn for `n` requests under
  // `key` that comes within `max_wait` and no later than `deadline` (a time
  // of this limiter's Clock), then sleeps until it through the Sleeper;
  // `waited` says how long. Refused without reserving or sleeping:
  // rate_limited (the turn is more than max_wait away; retry_after says when
  // the request would be admitted at once), deadline_exceeded (the turn is
  // after the deadline; at once when `deadline` is not after now),
  // exceeds_burst, cancelled (stop already requested), invalid_options, and
  // the store's failures as for try_acquire (fail_open admits without
  // waiting). A negative `max_wait` means "do not wait", like zero. A stop
  // request while sleeping returns cancelled and forfeits the turn: across
  // a fleet it cannot be given back safely (another process may have
  // reserved after it), so the limit may then admit less than the rate,
  // never more.
  [[nodiscard]] rate_limit_decision acquire(std::string_view key, std::uint64_t n = 1,
                                            duration max_wait = duration::max(), std::stop_token stop = {},
                                            time_point deadline = time_point::max()) {
    if (STURDY_UNLIKELY(!limit_ok_ || !store_ok_)) return reject_invalid(n);
    if (stop.stop_requested())
      return rejected(sturdy::detail::refusal(rate_limit_reason::cancelled, limit_.burst, n), n);
    duration bound = max_wait < duration::zero() ? duration::zero() : max_wait;
    bool deadline_binds = false;
    if (deadline != time_point::max()) {
      const time_point now = clock_.now();
      if (deadline <= now)
        return rejected(sturdy::detail::refusal(rate_limit_reason::deadline_exceeded, limit_.burst, n), n);
      const duration left = sturdy::detail::time_between(now, deadline);
      deadline_binds = left < bound;
      if (deadline_binds) bound = left;
    }
    const reservation r = decide(key, n, static_cast<std::uint64_t>(bound.count()));
    rate_limit_decision d = r.decision;
    if (!r.decided) return d;  // a store failure (reported), or failed open
    if (!d.allowed) {
      // Would the turn have fitted max_wait? Then the deadline refused it.
      if (deadline_binds && d.reason == rate_limit_reason::rate_limited && d.retry_after <= max_wait)
        d.reason = rate_limit_reason::deadline_exceeded;
      return rejected(d, n);
    }
    if (r.wait == duration::zero()) return d;
    if (!sleeper_.sleep_for(r.wait, stop)) {
      d.allowed = false;
      d.reason = rate_limit_reason::cancelled;
      d.retry_after = duration::zero();
      return rejected(d, n);
    }
    d.waited = r.wait;
    return d;
  }

  // rate_limiter::execute()
  //
  // Runs `fn` if one request under `key` is admitted (or the limiter failed
  // open); otherwise returns `make_failure<R>(decision.error())`.
  template <outcome_callable F>
  [[nodiscard]] execute_result_t<F> execute(std::string_view key, F&& fn) {
    const rate_limit_decision d = try_acquire(key, 1);
    if (STURDY_UNLIKELY(!d.allowed)) return make_failure<execute_result_t<F>>(d.error());
    return invoke_wrapped(std::forward<F>(fn));
  }

  // rate_limiter::ping(): one round trip (a health check).
  [[nodiscard]] result<void> ping() {
    if (!limit_ok_ || !store_ok_) return errc::invalid_options;
    return pool_.ping();
  }

  // rate_limiter::testing_advance(): for tests, this object sees the
  // server's clock `d` later from now on (cumulative; d >= 0).
  void testing_advance(duration d) noexcept {
    if (d > duration::zero()) skew_ns_.fetch_add(d.count(), std::memory_order_relaxed);
  }

  // The Redis key that holds `key`'s state.
  [[nodiscard]] std::string key_of(std::string_view key) const {
    std::string out;
    out.reserve(store_.key_prefix.size() + key.size());
    out.append(store_.key_prefix).append(key);
    return out;
  }

  [[nodiscard]] const rate_limiter_options& options() const noexcept { return limit_; }
  [[nodiscard]] const limiter_store_options& store() const noexcept { return store_; }
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  using call_error = sturdy::redis::detail::call_error;

  struct reservation {
    rate_limit_decision decision;
    duration wait{};
    bool decided = true;  // false: the store failed (`failed` reported it)
  };

  // One round trip: the decision for n under key, reserving a turn up to
  // `max_wait` ns away (0: admitted only now). Emits only failures.
  reservation decide(std::string_view key, std::uint64_t n, std::uint64_t max_wait) {
    namespace sd = sturdy::detail;
    const bool too_large = n > limit_.burst;
    const std::uint64_t asked = too_large ? 0 : n;
    const std::uint64_t need = (asked == 0 ? 1 : asked) * core_.interval();
    const bool client = store_.time == time_source::client;
    const std::int64_t at =
        client ? clock_.now().time_since_epoch().count() : skew_ns_.load(std::memory_order_relaxed);
    const sd::gcra_args packed{.time_or_offset = at,
                               .need = static_cast<std::int64_t>(need),
                               .tolerance = static_cast<std::int64_t>(core_.tolerance()),
                               .max_wait = static_cast<std::int64_t>(asked == 0 ? 0 : max_wait),
                               .ttl_slack_ms = client ? sd::client_time_ttl_slack_ms : 0};
    std::array<char, sd::gcra_args::size> buf;
    const std::string_view args[] = {client ? std::string_view("c") : std::string_view("s"),
                                     asked == 0 ? std::string_view("1") : std::string_view("0"),
                                     packed.pack(buf)};
    namespace rd = sturdy::redis::detail;
    const std::string redis_key = key_of(key);
    const std::string_view keys[] = {redis_key};
    call_error err;
    const rd::reply_ptr r = pool_.eval(0, keys, args, err);
    if (r == nullptr) return {failed(key, n, err), duration::zero(), false};
    sd::gcra_reply parsed;
    if (!sd::parse_gcra_reply(r.get(), parsed))
      return {failed(key, n, {errc::corrupt_data, "unreadable rate limit state"}), duration::zero(), false};
    const sd::gcra_outcome o = core_.decide(parsed.state, parsed.now, asked, asked == 0 ? 0 : max_wait);
    if ((o.verdict == sd::gcra_verdict::admitted) != parsed.admitted)
      return {failed(key, n, {errc::corrupt_data, "the script and the decision core disagree"}),
              duration::zero(), false};
    rate_limit_decision d = sd::to_decision(o, limit_.burst, n);
    d.ticket = 0;  // nothing to give back across the fleet
    if (too_large) {
      d.allowed = false;
      d.reason = rate_limit_reason::exceeds_burst;
      d.retry_after = duration::max();
    }
    return {d, d.allowed ? o.wait : duration::zero(), true};
  }

  rate_limit_decision rejected(const rate_limit_decision& d, std::uint64_t n) {
    emit(listener_, rate_limit_rejected{d.reason, n, d.retry_after});
    return d;
  }

  rate_limit_decision failed(std::string_view key, std::uint64_t n, const call_error& err) {
    const bool open = err.code == errc::store_unavailable && store_.on_unavailable == failure_mode::fail_open;
    emit(listener_, redis_store_failed{"rate_limit", key, make_error_code(err.code), err.detail, open});
    rate_limit_decision d;
    d.limit = limit_.burst;
    d.requested = n;
    if (open) {
      d.allowed = true;
      d.reason = rate_limit_reason::admitted;
      return d;
    }
    d.reason = err.code == errc::invalid_options ? rate_limit_reason::invalid_options
               : err.code == errc::corrupt_data  ? rate_limit_reason::corrupt_data
                                                 : rate_limit_reason::store_unavailable;
    return d;
  }

  rate_limit_decision reject_invalid(std::uint64_t n) {
    if (!options_rejected_reported_.exchange(true, std::memory_order_relaxed)) {
      emit(listener_, options_rejected{"redis::rate_limiter", limit_ok_ ? store_.validation_message()
                                                                        : limit_.validation_message()});
    }
    return sturdy::detail::refusal(rate_limit_reason::invalid_options, limit_.burst, n);
  }

  const rate_limiter_options limit_;
  const limiter_store_options store_;
  const bool limit_ok_;
  const bool store_ok_;
  const sturdy::detail::gcra core_;
  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
  STURDY_NO_UNIQUE_ADDRESS Sleeper sleeper_;
  sturdy::redis::detail::pool pool_;
  std::atomic<std::int64_t> skew_ns_{0};
  std::atomic<bool> options_rejected_reported_{false};
};

}  // namespace sturdy::redis

#endif  // STURDY_REDIS_RATE_LIMITER_HPP_
