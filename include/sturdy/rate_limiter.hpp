// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/rate_limiter.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::rate_limiter` admits at most `rate` requests per `period`, with
// bursts of at most `burst` requests at one instant. It is GCRA (a token
// bucket in time coordinates) on ONE 64-bit atomic: lock-free, no refill
// thread, nothing allocated, exact in every window.
//
// The parameters, unambiguously:
//   - `rate` per `period` is a RATE (the bucket refills one request every
//     period / rate), not a quota per fixed window;
//   - `burst` is the bucket's capacity: the most requests admitted at the
//     same instant by a limiter that has been idle (burst = 1: requests at
//     least period / rate apart; there is no hidden "+1" as in redis-cell);
//   - the guarantee: over ANY interval of length t, at most
//     rate · t / period + burst requests are admitted (for burst = 1 that is
//     never more than `rate` in any window of length `period` that is open
//     at one end).
//
//   try_acquire(n)    admitted now, or refused (errc::rate_limited) with
//                     `retry_after`; n = 0 peeks; n > burst is refused with
//                     reason exceeds_burst (it can never succeed)
//   acquire(n, max_wait, stop, deadline)
//                     reserves the earliest slot within max_wait and the
//                     deadline, then sleeps until it through the Sleeper
//   execute(fn)       try_acquire(1) (or acquire(1, options.max_wait) when
//                     max_wait > 0), then fn()
//
// Example:
//
//   // A partner API allows 100 requests per second; never more than 100 in
//   // any one-second window:
//   sturdy::rate_limiter<> partner({.rate = 100, .period = std::chrono::seconds(1), .burst = 1});
//   sturdy::result<Reply> call_partner(const Request& req) {
//     return partner.execute([&] { return client.Call(req); });  // errc::rate_limited when over
//   }
//
//   // Fill HTTP headers for a client you limit:
//   auto d = per_tenant.try_acquire();
//   d.write_headers([&](std::string_view name, std::string_view value) { resp.set(name, value); });
//   if (!d.allowed) return reply_429(resp);
//
//   // Chained limits (100/min and 10/s): compose them, the tighter and
//   // shorter one first (see "Chained limits" below).
//   auto both = sturdy::compose(per_second, per_minute);
//
// Chained limits: each limiter decides alone. A request the second limiter
// refuses has already used a token of the first; so put first the limiter
// that refuses most often (usually the short one), or use
// `sturdy::try_acquire_all(n, a, b, ...)`, which gives the earlier tokens
// back when a later limiter refuses.
//
// Time: the limiter reads its Clock once per decision; `try_acquire_at(now)`
// takes the time from the caller instead (folly's TokenBucket style), so a
// caller that has just read a clock pays for no second read.
//
// Thread safety: every member function may be called from any number of
// threads at once. try_acquire is one load and (when admitted) one
// compare-and-swap of one atomic word; no lock, no allocation. A
// compare-and-swap that loses to another thread backs off (1, 2, 4, ... up to
// 64 spin-wait hints) and retries from the value the failed CAS returned,
// without re-reading the word, so under contention the thread holding the
// cache line completes a run of admissions instead of both failing in turn.
// Lock-free, not wait-free.
// acquire sleeps only through the Sleeper.
//
// Testing: instantiate with `sturdy::testing::manual_clock` and
// `sturdy::testing::recording_sleeper` (acquire then advances the clock
// instead of sleeping).

#ifndef STURDY_RATE_LIMITER_HPP_
#define STURDY_RATE_LIMITER_HPP_

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stop_token>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/context.hpp"
#include "sturdy/detail/gcra.hpp"
#include "sturdy/detail/spin.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy {

// rate_limiter_options
//
// Aggregate; fill with designated initializers. A limiter built from invalid
// options refuses every request (reason invalid_options, errc::invalid_options)
// and emits `options_rejected` once.
struct rate_limiter_options {
  // Requests admitted per `period`, on average (a rate: one request's worth
  // refills every period / rate, rounded up to whole nanoseconds, so the
  // limiter never admits more than stated). >= 1, and at most one request
  // per nanosecond (rate <= period in ns). Default 100.
  std::uint64_t rate = 100;
  // The period `rate` is counted over; > 0. Default 1 s.
  duration period = std::chrono::seconds(1);
  // The bucket's capacity: the most requests admitted at the same instant
  // after the limiter has been idle for burst · period / rate. >= 1, and
  // burst · period / rate must fit in a duration (about 292 years).
  // Default 1 (smooth: requests at least period / rate apart).
  std::uint64_t burst = 1;
  // How long `execute` may wait for its turn (acquire(1, max_wait));
  // 0: execute never waits, it refuses. >= 0. Default 0.
  duration max_wait = duration::zero();

  // The emission interval: period / rate, rounded up (1 ns at least).
  [[nodiscard]] constexpr duration interval() const noexcept {
    if (rate == 0 || period <= duration::zero()) return duration(1);
    const auto p = static_cast<std::uint64_t>(period.count());
    return duration(static_cast<std::int64_t>(p / rate + (p % rate != 0 ? 1 : 0)));
  }

  // The first invalid field, as a sentence naming it; empty when valid.
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    if (rate < 1) return "rate_limiter_options.rate must be >= 1";
    if (period <= duration::zero()) return "rate_limiter_options.period must be > 0";
    if (rate > static_cast<std::uint64_t>(period.count()))
      return "rate_limiter_options.rate must be <= period in nanoseconds (at most one request per ns)";
    if (burst < 1) return "rate_limiter_options.burst must be >= 1";
    if (burst >
        static_cast<std::uint64_t>(duration::max().count()) / static_cast<std::uint64_t>(interval().count()))
      return "rate_limiter_options.burst is too large: burst * period / rate must fit in a duration "
             "(about 292 years)";
    if (max_wait < duration::zero()) return "rate_limiter_options.max_wait must be >= 0";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    return detail::validation_result(validation_message());
  }
};

// Why a rate limiter decided as it did.
enum class rate_limit_reason : std::uint8_t {
  admitted,           // the request may proceed (after `waited`, for acquire)
  rate_limited,       // over the limit (or its turn is later than max_wait)
  exceeds_burst,      // n > burst: can never be admitted; retry_after = max
  deadline_exceeded,  // acquire: its turn comes after the deadline
  cancelled,          // acquire: the stop token was triggered
  invalid_options,    // the limiter's options did not validate
  store_unavailable,  // a shared store (Redis) failed and the limiter fails closed
  corrupt_data,       // a shared store held state the limiter cannot read
};

[[nodiscard]] constexpr std::string_view to_string(rate_limit_reason r) noexcept {
  switch (r) {
    case rate_limit_reason::admitted:
      return "admitted";
    case rate_limit_reason::rate_limited:
      return "rate_limited";
    case rate_limit_reason::exceeds_burst:
      return "exceeds_burst";
    case rate_limit_reason::deadline_exceeded:
      return "deadline_exceeded";
    case rate_limit_reason::cancelled:
      return "cancelled";
    case rate_limit_reason::invalid_options:
      return "invalid_options";
    case rate_limit_reason::store_unavailable:
      return "store_unavailable";
    case rate_limit_reason::corrupt_data:
      return "corrupt_data";
  }
  return "unknown";
}

// rate_limit_decision
//
// What a limiter decided, with everything the `Retry-After` and `RateLimit-*`
// HTTP headers need. A small trivially copyable value.
struct rate_limit_decision {
  // Whether the request may proceed.
  bool allowed = false;
  rate_limit_reason reason = rate_limit_reason::rate_limited;
  // Refused: how long until the same request would be admitted at once
  // (duration::max() when never: exceeds_burst, invalid_options).
  // Admitted: 0.
  duration retry_after{};
  // Requests of one that would still be admitted right now (after this one).
  std::uint64_t remaining = 0;
  // Until the bucket is full again (the limiter equals a fresh one).
  duration reset_after{};
  // The burst: the most requests a full bucket admits at once.
  std::uint64_t limit = 0;
  // acquire: how long it slept for its turn; 0 otherwise.
  duration waited{};
  // The n this decision was for.
  std::uint64_t requested = 0;
  // Opaque: the limiter's state this admission left (for give_back).
  std::uint64_t ticket = 0;

  explicit operator bool() const noexcept { return allowed; }

  // The error a refusal stands for; empty when allowed. rate_limited and
  // exceeds_burst: errc::rate_limited (tell them apart by `reason` or by
  // retry_after == duration::max()); deadline_exceeded, cancelled,
  // invalid_options, store_unavailable, corrupt_data: the errc of that name.
  [[nodiscard]] std::error_code error() const noexcept {
    switch (reason) {
      case rate_limit_reason::admitted:
        return {};
      case rate_limit_reason::rate_limited:
      case rate_limit_reason::exceeds_burst:
        return make_error_code(errc::rate_limited);
      case rate_limit_reason::deadline_exceeded:
        return make_error_code(errc::deadline_exceeded);
      case rate_limit_reason::cancelled:
        return make_error_code(errc::cancelled);
      case rate_limit_reason::invalid_options:
        return make_error_code(errc::invalid_options);
      case rate_limit_reason::store_unavailable:
        return make_error_code(errc::store_unavailable);
      case rate_limit_reason::corrupt_data:
        return make_error_code(errc::corrupt_data);
    }
    return make_error_code(errc::rate_limited);
  }

  // Whole seconds, rounded up (HTTP headers carry seconds; a client told
  // "0" would retry too early). Saturates.
  [[nodiscard]] static constexpr std::uint64_t ceil_seconds(duration d) noexcept {
    if (d <= duration::zero()) return 0;
    const auto ns = static_cast<std::uint64_t>(d.count());
    return ns / 1'000'000'000 + (ns % 1'000'000'000 != 0 ? 1 : 0);
  }
  [[nodiscard]] constexpr std::uint64_t retry_after_seconds() const noexcept {
    return ceil_seconds(retry_after);
  }
  [[nodiscard]] constexpr std::uint64_t reset_seconds() const noexcept { return ceil_seconds(reset_after); }

  // decision.write_headers(set)
  //
  // Calls `set(name, value)` (string_views valid during the call) for
  // `RateLimit-Limit` (the burst), `RateLimit-Remaining`, `RateLimit-Reset`
  // (seconds until full, rounded up) and, when refused with a finite
  // retry_after, `Retry-After` (seconds, rounded up, at least 1). Allocates
  // nothing.
  template <class Set>
  void write_headers(Set&& set) const {
    std::array<char, 24> buf;
    const auto put = [&](std::string_view name, std::uint64_t v) {
      const auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
      (void)ec;  // 24 bytes hold every 64-bit integer
      set(name, std::string_view(buf.data(), static_cast<std::size_t>(end - buf.data())));
    };
    put("RateLimit-Limit", limit);
    put("RateLimit-Remaining", remaining);
    put("RateLimit-Reset", reset_seconds());
    if (!allowed && retry_after != duration::max()) {
      const std::uint64_t s = retry_after_seconds();
      put("Retry-After", s == 0 ? 1 : s);
    }
  }

  friend constexpr bool operator==(const rate_limit_decision&, const rate_limit_decision&) = default;
};

static_assert(std::is_trivially_copyable_v<rate_limit_decision>);

// --- events (see sturdy/listener.hpp) --------------------------------------

// A request was refused (any reason but invalid_options, which emits
// options_rejected once instead).
struct rate_limit_rejected {
  rate_limit_reason reason;
  std::uint64_t n;
  duration retry_after;
};

namespace detail {

// The public decision for a core outcome.
[[nodiscard]] constexpr rate_limit_decision to_decision(const gcra_outcome& o, std::uint64_t burst,
                                                        std::uint64_t n) noexcept {
  rate_limit_decision d;
  d.requested = n;
  d.allowed = o.verdict == gcra_verdict::admitted;
  d.reason = d.allowed ? rate_limit_reason::admitted
                       : (o.verdict == gcra_verdict::exceeds_burst ? rate_limit_reason::exceeds_burst
                                                                   : rate_limit_reason::rate_limited);
  d.retry_after = d.allowed ? duration::zero() : o.wait;
  d.remaining = o.remaining;
  d.reset_after = o.reset_after;
  d.limit = burst;
  d.ticket = d.allowed ? o.state : 0;
  return d;
}

[[nodiscard]] constexpr rate_limit_decision refusal(rate_limit_reason reason, std::uint64_t burst,
                                                    std::uint64_t n = 0) noexcept {
  rate_limit_decision d;
  d.requested = n;
  d.reason = reason;
  d.retry_after = duration::max();
  d.limit = burst;
  return d;
}

}  // namespace detail

// rate_limiter<Clock, Sleeper, Listener>
//
// Pinned: not copyable or movable; share it by reference (`compose` holds an
// lvalue limiter by reference).
// What `rate_limiter::reserve` decided: the decision (admitted: the turn is
// reserved) and how long until that turn (0: admitted now).
struct rate_limit_reservation {
  rate_limit_decision decision;
  duration wait{};
};

template <clock_source Clock = steady_clock_source, sleeper Sleeper = thread_sleeper,
          class Listener = null_listener>
class rate_limiter final {
 public:
  explicit rate_limiter(rate_limiter_options options = {}, Clock clock = Clock(), Sleeper sleeper = Sleeper(),
                        Listener listener = Listener())
      : core_(options.validation_message().empty()
                  ? detail::gcra(static_cast<std::uint64_t>(options.interval().count()), options.burst)
                  : detail::gcra()),
        invalid_(!options.validation_message().empty()),
        options_(options),
        clock_(std::move(clock)),
        sleeper_(std::move(sleeper)),
        listener_(std::move(listener)) {}
  rate_limiter(const rate_limiter&) = delete;
  rate_limiter& operator=(const rate_limiter&) = delete;

  // rate_limiter::try_acquire()
  //
  // Admits `n` requests now or refuses them (never waits): see
  // `rate_limit_decision`. n = 0 peeks: reports whether ONE request would be
  // admitted now (allowed, retry_after, remaining) and changes nothing.
  // n > burst: refused with reason exceeds_burst and retry_after =
  // duration::max(); the state is untouched.
  [[nodiscard]] rate_limit_decision try_acquire(std::uint64_t n = 1) noexcept {
    return try_acquire_at(clock_.now(), n);
  }

  // rate_limiter::try_acquire_at()
  //
  // try_acquire with the time supplied by the caller (from the same clock
  // as the limiter's; a time earlier than one another thread already used
  // only makes the decision stricter).
  [[nodiscard]] rate_limit_decision try_acquire_at(time_point now, std::uint64_t n = 1) noexcept {
    if (STURDY_UNLIKELY(invalid_)) return reject_invalid(n);
    const std::uint64_t t = detail::to_biased(now);
    std::uint64_t state = state_.load(std::memory_order_relaxed);
    // The hot path: 1 <= n <= burst, admitted at once. A lost
    // compare-and-swap backs off before retrying (see the banner).
    if (STURDY_LIKELY(n - 1 < options_.burst)) {
      const std::uint64_t need = n * core_.interval();
      const std::uint64_t floor = core_.floor_at(t);
      detail::backoff<> spin;
      for (;;) {
        const std::uint64_t next = core_.admit(state, floor, t, need);
        if (STURDY_UNLIKELY(next == 0)) break;  // refused: the general path says why
        // The decision is built before the CAS, so that its arithmetic
        // overlaps the CAS instead of following it.
        const rate_limit_decision d = admitted(next, t, n);
        if (STURDY_LIKELY(state_.compare_exchange_weak(state, next, std::memory_order_relaxed))) return d;
        // `state` now holds the word as the failed CAS saw it. Back off and
        // retry from that value WITHOUT re-reading the word: a plain load
        // would pull the line back in shared state and take it from the
        // thread that holds it; the next CAS reads it anyway.
        spin.pause();
      }
    }
    for (;;) {
      const detail::gcra_step s = core_.step(state, t, n);
      if (s.verdict != detail::gcra_verdict::admitted || s.next == state ||
          state_.compare_exchange_weak(state, s.next, std::memory_order_relaxed)) {
        return finish(core_.describe(s, t, n), n);
      }
    }
  }

  // rate_limiter::peek()
  //
  // What `try_acquire(0)` would say (remaining, reset_after), without
  // emitting an event or touching the state: for metrics and health checks.
  // Invalid options give a decision refused with invalid_options.
  [[nodiscard]] rate_limit_decision peek() const noexcept {
    if (STURDY_UNLIKELY(invalid_)) {
      rate_limit_decision d{};
      d.reason = rate_limit_reason::invalid_options;
      return d;
    }
    const std::uint64_t t = detail::to_biased(clock_.now());
    const std::uint64_t state = state_.load(std::memory_order_relaxed);
    rate_limit_decision d = detail::to_decision(core_.describe(core_.step(state, t, 0), t, 0), options_.burst, 0);
    d.ticket = 0;
    return d;
  }

  // rate_limiter::acquire()
  //
  // Reserves the earliest turn for `n` requests that comes within `max_wait`
  // and no later than `deadline` (a time of this limiter's Clock), then
  // sleeps until it through the Sleeper; `waited` says how long. Refused
  // without reserving or sleeping: rate_limited (the turn is more than
  // max_wait away; retry_after says when the request would be admitted at
  // once), deadline_exceeded (the turn is after the deadline),
  // exceeds_burst, cancelled (stop already requested), invalid_options;
  // deadline_exceeded at once when `deadline` is not after now (even with a
  // free turn). A negative `max_wait` means "do not wait", like zero.
  // A stop request while sleeping returns cancelled and gives the
  // reservation back when no later request has reserved after it (then the
  // limiter is as if it had never been made); otherwise the turn is
  // forfeited: the limiter may then admit less than the rate, never more.
  [[nodiscard]] rate_limit_decision acquire(std::uint64_t n = 1, duration max_wait = duration::max(),
                                            std::stop_token stop = {},
                                            time_point deadline = time_point::max()) {
    return acquire_with(n, max_wait, stop, deadline);
  }
  // The same under a call context: its deadline (read on this limiter's
  // clock) bounds the turn, and its token cuts the sleep short (reason
  // deadline_exceeded when the token fired for a deadline, cancelled when
  // the caller cancelled). Allocates nothing with the default sleeper.
  [[nodiscard]] rate_limit_decision acquire(std::uint64_t n, duration max_wait, const call_context& ctx) {
    time_point deadline = time_point::max();
    if (!ctx.deadline.is_none()) {
      deadline = ctx.deadline.clock() == clock_ref::of(clock_)
                     ? ctx.deadline.at()
                     : detail::saturating_add(clock_.now(), ctx.deadline.remaining());
    }
    rate_limit_decision d = acquire_with(n, max_wait, ctx.token, deadline);
    if (STURDY_UNLIKELY(!d.allowed) && d.reason == rate_limit_reason::cancelled &&
        ctx.token.reason() == cancel_reason::deadline) {
      d.reason = rate_limit_reason::deadline_exceeded;
    }
    return d;
  }

 private:
  template <class Token>
  [[nodiscard]] rate_limit_decision acquire_with(std::uint64_t n, duration max_wait, const Token& stop,
                                                 time_point deadline) {
    if (STURDY_UNLIKELY(invalid_)) return reject_invalid(n);
    if (stop.stop_requested())
      return reject(detail::refusal(rate_limit_reason::cancelled, options_.burst, n), n);
    const rate_limit_reservation r = reserve(n, max_wait, deadline);
    if (!r.decision.allowed || r.wait == duration::zero()) return r.decision;
    // Our turn is r.wait away: sleep, giving the reservation back if stopped
    // (or if the sleeper throws).
    rate_limit_decision d = r.decision;
    bool slept = false;
    try {
      if constexpr (std::is_same_v<Token, std::stop_token>) {
        slept = sleeper_.sleep_for(r.wait, stop);
      } else {
        slept = detail::sleep_cancellable(sleeper_, r.wait, stop);
      }
    } catch (...) {
      (void)give_back(d);
      throw;
    }
    if (!slept) {
      (void)give_back(d);
      d.allowed = false;
      d.ticket = 0;
      d.reason = rate_limit_reason::cancelled;
      d.retry_after = duration::zero();
      return reject(d, n);
    }
    d.waited = r.wait;
    return d;
  }

 public:
  // rate_limiter::reserve()
  //
  // The decision core of `acquire`, without the sleep: reserves the
  // earliest turn within `max_wait` and `deadline` and says how far away it
  // is (`wait`; 0 when admitted at once). A driver (the blocking `acquire`,
  // sturdy/asio/admission.hpp's timer) waits `wait` and gives the decision
  // back with `give_back` if its caller gives up first. Refusals are as for
  // `acquire` (never `cancelled`: stop requests are the driver's).
  [[nodiscard]] rate_limit_reservation reserve(std::uint64_t n = 1, duration max_wait = duration::max(),
                                               time_point deadline = time_point::max()) {
    if (STURDY_UNLIKELY(invalid_)) return {reject_invalid(n), duration::zero()};
    const time_point now = clock_.now();
    // A deadline already reached is refused even when a turn is free, as the
    // concurrency limiter and the timeout policy do: the caller gave up.
    if (deadline != time_point::max() && deadline <= now) {
      return {reject(detail::refusal(rate_limit_reason::deadline_exceeded, options_.burst, n), n), duration::zero()};
    }
    const std::uint64_t t = detail::to_biased(now);
    const duration to_deadline = detail::time_between(now, deadline);
    const bool deadline_binds = to_deadline < max_wait;
    const duration wait_bound =
        deadline_binds ? to_deadline : (max_wait < duration::zero() ? duration::zero() : max_wait);
    std::uint64_t state = state_.load(std::memory_order_relaxed);
    detail::gcra_step s;
    detail::backoff<> spin;
    for (;;) {
      s = core_.step(state, t, n, static_cast<std::uint64_t>(wait_bound.count()));
      if (s.verdict != detail::gcra_verdict::admitted || s.next == state ||
          state_.compare_exchange_weak(state, s.next, std::memory_order_relaxed)) {
        break;
      }
      spin.pause();  // retry from the value the failed CAS saw (see try_acquire_at)
    }
    const detail::gcra_outcome o = core_.describe(s, t, n);
    if (o.verdict == detail::gcra_verdict::limited && deadline_binds && n != 0) {
      // Would the turn have fitted max_wait? Then the deadline refused it.
      const duration turn = core_.decide(state, t, n).wait;
      if (turn <= max_wait) {
        rate_limit_decision d = detail::to_decision(o, options_.burst, n);
        d.reason = rate_limit_reason::deadline_exceeded;
        return {reject(d, n), duration::zero()};
      }
    }
    if (o.verdict != detail::gcra_verdict::admitted || o.wait == duration::zero() || n == 0)
      return {finish(o, n), duration::zero()};
    return {detail::to_decision(o, options_.burst, n), o.wait};
  }

  // rate_limiter::execute()
  //
  // Runs `fn` if one request is admitted (waiting up to options().max_wait
  // for its turn, cancellable through `stop`); otherwise returns
  // `make_failure<R>(decision.error())` without calling it: errc::rate_limited
  // (or deadline_exceeded, cancelled, invalid_options). An exception from
  // `fn` propagates; its token stays used (the call was made).
  template <outcome_callable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn) {
    return execute(std::forward<F>(fn), std::stop_token{});
  }
  template <outcome_callable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn, std::stop_token stop) {
    using R = execute_result_t<F>;
    const rate_limit_decision d = options_.max_wait == duration::zero()
                                      ? try_acquire(1)
                                      : acquire(1, options_.max_wait, std::move(stop));
    if (STURDY_UNLIKELY(!d.allowed)) {
      return make_failure<R>(d.error());
    }
    return invoke_wrapped(std::forward<F>(fn));
  }
  // The context overload (what `compose` calls): the wait for a turn ends
  // at `ctx.deadline` or when `ctx.token` fires; `fn` receives `ctx` when
  // it takes `const sturdy::call_context&`.
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, const call_context& ctx) {
    using R = context_execute_result_t<F>;
    if (STURDY_UNLIKELY(ctx.token.stop_requested())) return make_failure<R>(to_errc(ctx.token.reason()));
    const rate_limit_decision d =
        options_.max_wait == duration::zero() ? try_acquire(1) : acquire(1, options_.max_wait, ctx);
    if (STURDY_UNLIKELY(!d.allowed)) {
      return make_failure<R>(d.error());
    }
    return invoke_with_context(std::forward<F>(fn), ctx);
  }

  // rate_limiter::give_back()
  //
  // Returns the tokens of an admitted, unused decision of THIS limiter (a
  // chained limit refused the request) when no later request has been
  // admitted since; returns whether it did. Otherwise the tokens stay used:
  // the limiter may then admit less than its rate, never more.
  bool give_back(const rate_limit_decision& d) noexcept {
    const std::uint64_t n = d.requested;
    if (invalid_ || !d.allowed || n == 0 || n > options_.burst || d.ticket == 0) return false;
    std::uint64_t mine = d.ticket;
    return state_.compare_exchange_strong(mine, core_.give_back(mine, n), std::memory_order_relaxed);
  }

  // rate_limiter::quiescent() / quiescent_at()
  //
  // Whether the bucket is full: the limiter behaves exactly like a freshly
  // built one, so a registry may drop it and build a new one later without
  // anyone noticing. One load (plus one clock read for quiescent()).
  [[nodiscard]] bool quiescent() const noexcept { return quiescent_at(clock_.now()); }
  [[nodiscard]] bool quiescent_at(time_point now) const noexcept {
    return core_.full(state_.load(std::memory_order_relaxed), detail::to_biased(now));
  }

  // The options, and errc::invalid_options when they did not validate
  // (`options().validation_message()` says why).
  [[nodiscard]] const rate_limiter_options& options() const noexcept { return options_; }
  [[nodiscard]] result<void> options_status() const noexcept { return options_.validate(); }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  // The decision for an admission of n at t that stored `next`: what
  // `finish(describe(...))` says, without the general path's branches.
  [[nodiscard]] rate_limit_decision admitted(std::uint64_t next, std::uint64_t t, std::uint64_t n) const noexcept {
    rate_limit_decision d;
    d.allowed = true;
    d.reason = rate_limit_reason::admitted;
    d.remaining = core_.remaining_after(next, t);
    d.reset_after = core_.reset_after(next, t);
    d.limit = options_.burst;
    d.requested = n;
    d.ticket = next;
    return d;
  }

  rate_limit_decision finish(const detail::gcra_outcome& o, std::uint64_t n) noexcept {
    rate_limit_decision d = detail::to_decision(o, options_.burst, n);
    if (STURDY_UNLIKELY(!d.allowed)) return reject(d, n);
    if (n == 0) d.ticket = 0;  // a peek took nothing
    return d;
  }

  rate_limit_decision reject(const rate_limit_decision& d, std::uint64_t n) noexcept {
    emit(listener_, rate_limit_rejected{d.reason, n, d.retry_after});
    return d;
  }

  rate_limit_decision reject_invalid(std::uint64_t n) noexcept {
    if (!options_rejected_reported_.exchange(true, std::memory_order_relaxed)) {
      emit(listener_, options_rejected{"rate_limiter", options_.validation_message()});
    }
    return detail::refusal(rate_limit_reason::invalid_options, options_.burst, n);
  }

  // The state word and what every decision reads share one cache line.
  alignas(cache_line_size) std::atomic<std::uint64_t> state_{0};
  const detail::gcra core_;
  const bool invalid_;
  const rate_limiter_options options_;
  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS Sleeper sleeper_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
  std::atomic<bool> options_rejected_reported_{false};
};

namespace detail {
template <class First, class... Rest>
rate_limit_decision try_acquire_chain(std::uint64_t n, First& first, Rest&... rest) {
  rate_limit_decision d = first.try_acquire(n);
  if constexpr (sizeof...(Rest) != 0) {
    if (!d.allowed) return d;
    rate_limit_decision inner = try_acquire_chain(n, rest...);
    if (!inner.allowed) {
      (void)first.give_back(d);
      return inner;
    }
    if (d.remaining < inner.remaining) {
      inner.remaining = d.remaining;
      inner.limit = d.limit;
    }
    if (d.reset_after > inner.reset_after) inner.reset_after = d.reset_after;
    inner.ticket = 0;  // a chain's decision cannot be given back as one
    return inner;
  }
  return d;
}
}  // namespace detail

// sturdy::try_acquire_all(n, limiters...)
//
// Chained limits (e.g. 10 per second AND 100 per minute): admits `n` only if
// every limiter admits it, asking them in order; when one refuses, the
// tokens already taken from the earlier ones are given back (see
// `give_back`: exactly, unless another request was admitted meanwhile) and
// that refusal is returned. Admitted: `remaining` is the smallest (with that
// limiter's `limit`), `reset_after` the longest. n = 0 peeks every limiter.
template <class... Limiters>
[[nodiscard]] rate_limit_decision try_acquire_all(std::uint64_t n, Limiters&... limiters) {
  static_assert(sizeof...(Limiters) >= 1, "sturdy::try_acquire_all needs at least one rate limiter.");
  return detail::try_acquire_chain(n, limiters...);
}

}  // namespace sturdy

#endif  // STURDY_RATE_LIMITER_HPP_
