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
// Keys: `key_prefix + key`, a small string ("<seconds> <nanoseconds>" of
// GCRA's TAT − τ) with a TTL until the bucket is full again (1 s more with
// client time, as a margin for the server's clock, which expires keys), so
// an idle key disappears by itself (and a missing key is exactly a full
// bucket).
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
// Failures: Redis unreachable (refused, lost, a connect or command timeout,
// no free pooled connection in time, LOADING/BUSY/OOM...) is handled by
// `on_unavailable`: `failure_mode::fail_open` (the default here: an outage
// of Redis must not become an outage of the service) admits the request and
// emits `redis_store_failed{.failed_open = true}`; `fail_closed` refuses it
// (reason store_unavailable, errc::store_unavailable). A server that refuses
// the password, database or an ACL permission is `invalid_options`, and a
// key holding data this limiter cannot read is `corrupt_data`: both refuse,
// never fail open (a misconfiguration is not an outage). Timeouts and the
// connection pool are the idempotency store's (`sturdy/redis/idempotency_store.hpp`):
// at most pool_wait_timeout + connect_timeout + 2 · command_timeout per call.
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
#include <mutex>
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
#include "sturdy/redis/idempotency_store.hpp"  // the connection pool, timeouts, error classes

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

  // The connection part, as the shared pool takes it.
  [[nodiscard]] store_options connection() const {
    return {.host = host,
            .port = port,
            .key_prefix = key_prefix,
            .connect_timeout = connect_timeout,
            .command_timeout = command_timeout,
            .pool_size = pool_size,
            .pool_wait_timeout = pool_wait_timeout,
            .on_unavailable = on_unavailable,
            .password = password,
            .database = database,
            .error_categories = {}};
  }

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

// rate_limiter<Listener, Clock>
//
// Pinned: not copyable or movable. `Clock` is read only with
// time_source::client.
template <class Listener = null_listener, clock_source Clock = wall_clock>
class rate_limiter {
 public:
  explicit rate_limiter(rate_limiter_options limit, limiter_store_options store = {}, Clock clock = Clock(),
                        Listener listener = Listener())
      : limit_(limit),
        store_(std::move(store)),
        connection_(store_.connection()),
        limit_ok_(limit_.validation_message().empty()),
        store_ok_(store_.validation_message().empty()),
        core_(limit_ok_
                  ? sturdy::detail::gcra(static_cast<std::uint64_t>(limit_.interval().count()), limit_.burst)
                  : sturdy::detail::gcra()),
        clock_(std::move(clock)),
        listener_(std::move(listener)),
        pool_(connection_) {}
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
    const bool too_large = n > limit_.burst;
    const std::uint64_t asked = too_large ? 0 : n;
    const std::uint64_t need = (asked == 0 ? 1 : asked) * core_.interval();
    const bool client = store_.time == time_source::client;
    const std::int64_t at =
        client ? clock_.now().time_since_epoch().count() : skew_ns_.load(std::memory_order_relaxed);
    std::array<std::array<char, 24>, 6> bufs;
    const sturdy::detail::split_ns a = sturdy::detail::split(at);
    const sturdy::detail::split_ns nd = sturdy::detail::split(static_cast<std::int64_t>(need));
    const sturdy::detail::split_ns tau = sturdy::detail::split(static_cast<std::int64_t>(core_.tolerance()));
    const std::string_view args[] = {
        client ? std::string_view("c") : std::string_view("s"),
        to_chars(a.s, bufs[0]),
        to_chars(a.ns, bufs[1]),
        to_chars(nd.s, bufs[2]),
        to_chars(nd.ns, bufs[3]),
        to_chars(tau.s, bufs[4]),
        to_chars(tau.ns, bufs[5]),
        asked == 0 ? std::string_view("1") : std::string_view("0"),
        client ? sturdy::detail::client_time_ttl_slack_ms : std::string_view("0")};
    const std::string redis_key = key_of(key);
    reply_ptr r;
    call_error err;
    {
      auto c = pool_.acquire(err);
      if (c != nullptr) r = run_script(std::move(c), redis_key, args, err);
    }
    if (r == nullptr) return failed(key, n, err);
    sturdy::detail::gcra_reply parsed;
    if (!sturdy::detail::parse_gcra_reply(r.get(), parsed))
      return failed(key, n, {errc::corrupt_data, "unreadable rate limit state"});
    const sturdy::detail::gcra_outcome o = core_.decide(parsed.state, parsed.now, asked);
    if ((o.verdict == sturdy::detail::gcra_verdict::admitted) != parsed.admitted)
      return failed(key, n, {errc::corrupt_data, "the script and the decision core disagree"});
    rate_limit_decision d = sturdy::detail::to_decision(o, limit_.burst, n);
    d.ticket = 0;  // nothing to give back across the fleet
    if (too_large) {
      d.allowed = false;
      d.reason = rate_limit_reason::exceeds_burst;
      d.retry_after = duration::max();
    }
    if (!d.allowed) emit(listener_, rate_limit_rejected{d.reason, n, d.retry_after});
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
    call_error err;
    auto c = pool_.acquire(err);
    if (c == nullptr) return err.code;
    sturdy::redis::detail::sigpipe_guard guard;
    const char* argv[] = {"PING"};
    const std::size_t len[] = {4};
    reply_ptr r(sturdy::redis::detail::run_command(c->ctx.get(), 1, argv, len, store_.command_timeout));
    if (r == nullptr) {
      pool_.discard(std::move(c));
      return errc::store_unavailable;
    }
    pool_.release(std::move(c));
    if (r->type == REDIS_REPLY_ERROR)
      return sturdy::redis::detail::classify_error_reply(sturdy::redis::detail::text(r.get()));
    return success();
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

 private:
  using reply_ptr = sturdy::redis::detail::reply_ptr;
  using call_error = sturdy::redis::detail::call_error;

  static std::string_view to_chars(std::int64_t v, std::array<char, 24>& buf) noexcept {
    return sturdy::redis::detail::to_chars(v, buf);
  }

  // EVALSHA on the connection (SCRIPT LOAD first, once per process), EVAL
  // when the server lost the script (a restart, SCRIPT FLUSH).
  template <std::size_t NA>
  reply_ptr run_script(std::unique_ptr<sturdy::redis::detail::connection> c, const std::string& redis_key,
                       const std::string_view (&args)[NA], call_error& err) {
    namespace rd = sturdy::redis::detail;
    rd::sigpipe_guard guard;
    const std::string_view sha = script_sha(*c);
    std::array<const char*, 4 + NA> argv{};
    std::array<std::size_t, 4 + NA> len{};
    argv[0] = sha.empty() ? "EVAL" : "EVALSHA";
    len[0] = sha.empty() ? 4 : 7;
    argv[1] = sha.empty() ? sturdy::detail::gcra_script.data() : sha.data();
    len[1] = sha.empty() ? sturdy::detail::gcra_script.size() : sha.size();
    argv[2] = "1";
    len[2] = 1;
    argv[3] = redis_key.data();
    len[3] = redis_key.size();
    for (std::size_t i = 0; i < NA; ++i) {
      argv[4 + i] = args[i].data();
      len[4 + i] = args[i].size();
    }
    reply_ptr r(rd::run_command(c->ctx.get(), static_cast<int>(argv.size()), argv.data(), len.data(),
                                store_.command_timeout));
    if (r != nullptr && rd::is_error(r.get(), "NOSCRIPT")) {
      argv[0] = "EVAL";
      len[0] = 4;
      argv[1] = sturdy::detail::gcra_script.data();
      len[1] = sturdy::detail::gcra_script.size();
      r.reset(rd::run_command(c->ctx.get(), static_cast<int>(argv.size()), argv.data(), len.data(),
                              store_.command_timeout));
    }
    if (r == nullptr) {
      err = {errc::store_unavailable, c->ctx->errstr[0] != '\0' ? std::string(c->ctx->errstr) : "no reply"};
      pool_.discard(std::move(c));
      return nullptr;
    }
    pool_.release(std::move(c));
    if (r->type == REDIS_REPLY_ERROR) {
      err = {rd::classify_error_reply(rd::text(r.get())), std::string(rd::text(r.get()))};
      return nullptr;
    }
    return r;
  }

  // The script's SHA1, loaded once per process (the script cache is the
  // server's, shared by every connection). Empty when loading failed: the
  // call then uses EVAL.
  std::string_view script_sha(sturdy::redis::detail::connection& c) {
    if (STURDY_LIKELY(sha_ready_.load(std::memory_order_acquire))) return sha_;
    namespace rd = sturdy::redis::detail;
    const char* argv[] = {"SCRIPT", "LOAD", sturdy::detail::gcra_script.data()};
    const std::size_t len[] = {6, 4, sturdy::detail::gcra_script.size()};
    reply_ptr r(rd::run_command(c.ctx.get(), 3, argv, len, store_.command_timeout));
    if (r == nullptr || r->type != REDIS_REPLY_STRING || r->len != 40) return {};
    std::lock_guard lock(sha_mu_);
    if (!sha_ready_.load(std::memory_order_relaxed)) {
      sha_ = std::string(rd::text(r.get()));  // written once, before the flag
      sha_ready_.store(true, std::memory_order_release);
    }
    return sha_;
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
  const sturdy::redis::store_options connection_;
  const bool limit_ok_;
  const bool store_ok_;
  const sturdy::detail::gcra core_;
  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
  sturdy::redis::detail::pool pool_;
  std::mutex sha_mu_;  // serialises the one write of sha_
  std::string sha_;    // immutable once sha_ready_ is set
  std::atomic<bool> sha_ready_{false};
  std::atomic<std::int64_t> skew_ns_{0};
  std::atomic<bool> options_rejected_reported_{false};
};

}  // namespace sturdy::redis

#endif  // STURDY_REDIS_RATE_LIMITER_HPP_
