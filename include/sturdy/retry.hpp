// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/retry.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::retry_policy` calls a function again when it fails, waiting a
// jittered backoff between attempts, within an attempt limit, a time limit,
// a shared retry budget and the caller's cancellation, and honouring
// server hints ("retry after 2 s", "do not retry") within configured bounds.
// Only retry operations that are safe to repeat (idempotent, or made so
// with an idempotency key).
//
//   before the first attempt: invalid options? ---------> errc::invalid_options [options_rejected, once]
//                             stop requested? ----------> errc::cancelled [retry_cancelled]
//                             deadline already passed? -> errc::deadline_exceeded [retry_deadline_exceeded]
//   attempt succeeds --> that result (even if a stop was requested meanwhile)
//   attempt fails --> reached the dependency? budget.on_attempt + on_outcome (always first);
//                     an inner breaker's circuit_open: nothing recorded, its retry refunded
//                 --> not retryable (retry_if)? ---------> that error
//                 --> attempts used up? -----------------> that error   [retries_exhausted]
//                 --> circuit_open: no retry_after_source, or retry_after() + backoff
//                     > max_server_delay, or past the deadline? --> that error [retry_circuit_open]
//                 --> server says do not retry? ---------> that error   [retry_refused_by_server]
//                 --> stop requested? -------------------> errc::cancelled [retry_cancelled]
//                 --> delay = hint (clamped) or backoff
//                 --> now + delay + est. attempt > deadline? -> errc::deadline_exceeded
//                 --> budget denies? --------------------> errc::budget_exhausted [retry_budget_denied]
//                 --> [retry_scheduled], sleep (cancellable: errc::cancelled, retry refunded)
//                 --> deadline reached while sleeping? --> errc::deadline_exceeded (retry refunded)
//                 --> next attempt
//
// What comes back: the callee's own last result, unchanged, whenever the
// loop stops on the callee's account (not retryable, attempts used up,
// server refused): its error is never replaced. A stop request turns a
// failure into `errc::cancelled` only when the loop would otherwise retry;
// a success or a definitive error is returned as it is.
// sturdy's own `errc` (cancelled, deadline_exceeded, budget_exhausted,
// invalid_options) is returned, inside the callee's return type, only when
// the loop stops on its own account and the last attempt returned an error
// value (or no attempt was made); the event carries that last failure.
// Exceptions: whenever the last attempt threw, that exception is rethrown,
// whatever the reason the loop stopped (sturdy's convention: a callee's
// exception always reaches the caller); the stop reason is then told only
// by the event (`retries_exhausted`, `retry_deadline_exceeded`,
// `retry_budget_denied`, `retry_cancelled`, ...).
//
// Cancellation never counts as a failure of the callee: an attempt that
// fails while a stop is requested is recorded with the budget as `neutral`
// (the dependency answered), never as `failure`.
//
// Example:
//
//   sturdy::token_bucket_budget budget;   // shared per dependency
//   sturdy::retry_policy policy(sturdy::retry_options{
//       .max_attempts = 4,                                 // 1 call + 3 retries
//       .backoff = sturdy::backoff::exponential(std::chrono::milliseconds(50),
//                                               std::chrono::seconds(2)),
//       .max_elapsed = std::chrono::seconds(5),
//       .retry_if = [](const sturdy::failure_info& f) {
//         return f.code != std::errc::permission_denied;
//       },
//       .budget = budget,
//   });
//   sturdy::result<Page> page = policy.execute([&] { return http.Get(url); });
//   // or once: sturdy::retry(sturdy::retry_options{}, [&] { return http.Get(url); });
//
// Return types: anything `sturdy/outcome.hpp` supports (sturdy::result, any
// Boost.Outcome result/outcome, std::expected, absl::Status(Or) with the
// adapter, or a plain value / void, where failure is an exception).
//
// Server hints, checked after a retryable failure, first match wins:
//   1. a thrown `sturdy::retry_after_error` (or a class derived from it);
//   2. `sturdy_retry_hint(const E&) -> sturdy::retry_hint`, found by ADL, for
//      the error `E` of a result / outcome / expected;
//   3. `retry_options::server_hint(failure_info)`, any callable you supply
//      (a `sturdy::callback`; for absl::Status, std::error_code or your own
//      exception types);
//   4. the error code `sturdy::errc::retry_refused` means "do not retry".
// A suggested delay replaces the backoff delay, clamped to
// `[min_server_delay, max_server_delay]`, and still needs the budget and
// the deadline to allow the retry.
//
// Randomness: the policy draws jitter from its `Random` generator. The
// default, `thread_local_random`, is empty and thread-local: a policy shared
// by many threads never races on it, and nothing is allocated or locked.
// A policy holding a stateful generator (e.g. `absl::BitGenRef` to your
// `absl::BitGen`) may be used by one thread at a time only. Tests pass a
// seeded generator to the free `retry(options, fn, gen, clock, sleeper)`.
//
// Thread safety: `retry_policy` is an immutable value after construction;
// `execute` is const and may run concurrently from many threads when its
// Clock, Sleeper, Listener and Random are safe to share (the defaults are).
// Per-call state (attempt count, backoff state, latency estimate) lives on
// the caller's stack.
//
// Cost: with default options the first-attempt success path reads no clock,
// takes no lock, allocates nothing and copies nothing (the result is built
// in the caller's return slot): a handful of predictable branches, about
// 1 ns. A time limit or deadline adds one clock read per call; a budget
// adds two indirect calls (`on_attempt` before and `on_outcome` after the
// attempt) and what the budget does in them: nothing for the token bucket
// on a full bucket, one clock read and one atomic update for the ratio
// budget, one clock read and two atomic updates for the throttle.
//
// Decision core and drivers: every rule above is decided by the policy's
// core (`begin`, `on_failure`, `after_wait`, `on_success` with a per-call
// `retry_state`, returning a `retry_decision`), which never sleeps. `execute`
// is one driver of it (it sleeps through the Sleeper); the Asio driver
// `sturdy::asio::async_retry` (sturdy/asio/retry.hpp) and the fleet simulator
// are others. See "The decision core" below and docs/retry.md.
//
// Inside `compose(retry, breaker)`: see `retry_circuit_open` and
// docs/retry.md ("Retry around a circuit breaker").
//
// Exhaustion, the alternative not taken: a `retries_exhausted` error
// wrapping the last one cannot be expressed in `std::error_code`,
// `absl::Status` or an exception without losing the original, so the
// original is returned and exhaustion is an event.
//
// Testing: use `sturdy::testing::manual_clock` and
// `sturdy::testing::recording_sleeper` (no real sleeping; exact delays) and
// a seeded generator:
//
//   sturdy::testing::manual_clock clock;
//   sturdy::testing::recording_sleeper sleeper(clock);
//   std::mt19937_64 gen(42);
//   auto r = sturdy::retry(opts, fn, gen, clock, sleeper);
//   EXPECT_EQ(sleeper.count(), 2);

#ifndef STURDY_RETRY_HPP_
#define STURDY_RETRY_HPP_

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "absl/random/distributions.h"
#include "sturdy/backoff.hpp"
#include "sturdy/callback.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/context.hpp"
#include "sturdy/config.hpp"
#include "sturdy/detail/invoke_captured.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry_budget.hpp"

namespace sturdy {

// ----------------------------------------------------------------------------
// Server hints
// ----------------------------------------------------------------------------

// retry_hint
//
// What an error says about retrying: nothing, "retry after `delay`", or
// "do not retry".
struct retry_hint {
  enum class kind : std::uint8_t { none, delay, do_not_retry };
  kind verdict = kind::none;
  duration delay = duration::zero();  // meaningful for kind::delay

  [[nodiscard]] static constexpr retry_hint none() noexcept { return {}; }
  // Retry after `d` (HTTP Retry-After). A negative `d` means do not retry.
  [[nodiscard]] static constexpr retry_hint after(duration d) noexcept {
    if (d < duration::zero()) return do_not_retry();
    return {.verdict = kind::delay, .delay = d};
  }
  [[nodiscard]] static constexpr retry_hint do_not_retry() noexcept { return {.verdict = kind::do_not_retry}; }
  // gRPC `grpc-retry-pushback-ms`: a delay in ms; negative means do not
  // retry.
  [[nodiscard]] static constexpr retry_hint from_pushback_ms(std::int64_t ms) noexcept {
    if (ms < 0) return do_not_retry();
    constexpr std::int64_t max_ms = duration::max().count() / 1'000'000;
    return after(std::chrono::milliseconds(ms > max_ms ? max_ms : ms));
  }

  friend constexpr bool operator==(const retry_hint&, const retry_hint&) = default;
};

// retry_after_error
//
// Throw it (or a class derived from it) from a callable to carry a hint
// with the exception; the retry loop catches it by type at no extra cost.
class retry_after_error : public std::runtime_error {
 public:
  explicit retry_after_error(retry_hint hint, const char* what = "the server suggested a retry delay")
      : std::runtime_error(what), hint_(hint) {}
  [[nodiscard]] retry_hint hint() const noexcept { return hint_; }

 private:
  retry_hint hint_;
};

// ----------------------------------------------------------------------------
// Events (delivered to the policy's Listener)
// ----------------------------------------------------------------------------

// A failed attempt will be retried after `delay` (the "on_retry" event).
struct retry_scheduled {
  std::uint32_t attempt;   // the attempt that failed (1 = first call)
  duration delay;          // the chosen delay
  failure_info failure;    // why it failed
  bool from_server_hint;   // the delay came from a server hint
};
// Every allowed attempt failed; the last failure is returned/rethrown.
struct retries_exhausted {
  std::uint32_t attempts;
  failure_info failure;
};
// The budget denied a retry; the call returns errc::budget_exhausted (or
// rethrows the last exception).
struct retry_budget_denied {
  std::uint32_t attempt;
  failure_info failure;
};
// The remaining time cannot hold the delay plus an attempt; the call
// returns errc::deadline_exceeded (or rethrows the last exception).
// `attempt` 0: the deadline had passed before the first attempt (fn was
// never called; every duration and the failure are empty).
struct retry_deadline_exceeded {
  std::uint32_t attempt;
  duration delay;               // the delay that did not fit
  duration remaining;           // time left before the deadline
  duration estimated_attempt;   // the running estimate of one attempt
  failure_info failure;
};
// The server said not to retry; the failure is returned/rethrown.
struct retry_refused_by_server {
  std::uint32_t attempt;
  failure_info failure;
};
// The caller's stop_token stopped the loop; the call returns
// errc::cancelled (or rethrows the last exception). `attempt` is the number
// of attempts made (0: stopped before the first); `failure` is the last
// attempt's (empty when none was made).
struct retry_cancelled {
  std::uint32_t attempt;
  failure_info failure;
};
// An inner layer (an open circuit breaker) rejected the attempt without
// calling the dependency (`errc::circuit_open`), and the loop stops rather
// than retry blindly: no inner layer told when it would admit a call
// (`retry_after` is then duration::max()), or its `retry_after` exceeds
// `max_server_delay`, or it does not fit before the deadline. The call
// returns that `circuit_open` failure unchanged.
struct retry_circuit_open {
  std::uint32_t attempt;
  duration retry_after;  // what the inner layer said (duration::max(): nothing)
  failure_info failure;
};

// The call is over: one per call, for counting calls by kind as
// resilience4j's `retry_calls_total{kind}` does. `attempts` made (0: none,
// the call was refused or stopped before the first) and whether the outcome
// handed back is a success:
//   successful_without_retry  succeeded && attempts == 1
//   successful_with_retry     succeeded && attempts > 1
//   failed_without_retry      !succeeded && attempts <= 1
//   failed_with_retry         !succeeded && attempts > 1
// Opt-in: delivered only to a listener that declares
// `static constexpr bool wants_retry_call_completed = true;` (as
// `prometheus::event_counter` does), so a listener that records every event
// sees the same stream as before and a policy without one pays nothing.
struct retry_call_completed {
  std::uint32_t attempts;
  bool succeeded;
};

// wants_retry_call_completed<L>: L opted in to retry_call_completed.
template <class L>
concept wants_retry_call_completed = requires {
  requires static_cast<bool>(std::remove_cvref_t<L>::wants_retry_call_completed);
} && listener_for<L, retry_call_completed>;

// ----------------------------------------------------------------------------
// The decision core's vocabulary (see retry_policy's "decision core")
// ----------------------------------------------------------------------------

// retry_decision: what the core tells a driver to do next.
struct retry_decision {
  enum class kind : std::uint8_t {
    attempt,      // make attempt number `state.attempt` now
    wait,         // wait `delay` (cancellable), then call after_wait()
    return_last,  // stop; hand back the last attempt's outcome unchanged
    fail,         // stop with `code` inside the callee's result type
  };
  kind what = kind::attempt;
  errc code{};        // for fail (errc::invalid_options: the policy's
                      // options().validation_message() names the field)
  duration delay{};   // for wait
  // Exceptions (sturdy's convention): whenever the last attempt threw, a
  // blocking driver rethrows it on return_last and on fail alike.
  // (16 bytes: returned in registers.)
};

// retry_call_state: the part of one call's state the first attempt needs
// (`begin`, `attempt_context` and `on_success` read and write only this).
// Read `attempt` (the attempt being made or just made; 0 before the first)
// and `deadline` (when `timed`); leave the rest to the core.
struct retry_call_state {
  std::uint32_t attempt = 0;
  bool timed = false;          // a deadline or max_elapsed applies (the clock is read)
  bool sent_any = false;       // an attempt reached the dependency (so the next is a retry)
  time_point deadline{};       // when timed: the earlier of max_elapsed and the caller's
  time_point attempt_start{};  // when timed
};

// retry_state<Backoff>: one call's whole state, kept by the driver (on its
// stack or in its operation state) and passed to every core call. Plain
// value: the first attempt's part plus what only retries need. A driver may
// keep just a `retry_call_state` until the first attempt fails and then
// build `retry_state<Backoff>{first}` from it (the blocking driver does, so
// a call whose first attempt succeeds never sets up the retry part).
template <backoff_strategy Backoff = backoff>
struct retry_state : retry_call_state {
  bool has_estimate = false;
  duration estimate{};         // running estimate of one attempt's duration
  duration delay{};            // the last delay chosen
  std::uint64_t ticket = 0;    // the budget's charge for the retry about to run (0: none)
  typename Backoff::state backoff_state{};
};

// ----------------------------------------------------------------------------
// Options
// ----------------------------------------------------------------------------

// sturdy::default_retry_if(f)
//
// The default retry predicate: retries every failure (error or exception)
// except sturdy's own verdicts that a retry cannot change: cancellation
// (anything equal to std::errc::operation_canceled, which includes
// `absl::CancelledError()` through the absl adapter), errc::budget_exhausted
// (an inner budget asked for less load) and errc::invalid_options.
// `errc::circuit_open` passes the predicate but is never retried blindly:
// see `retry_circuit_open`.
[[nodiscard]] inline bool default_retry_if(const failure_info& f) noexcept {
  if (!f.code) return true;
  return !(f.code == std::errc::operation_canceled || f.code == errc::budget_exhausted ||
           f.code == errc::invalid_options);
}

// basic_retry_options<Backoff> / retry_options
//
// Aggregate; fill with designated initializers. `retry_policy` validates
// them at construction and refuses to run (errc::invalid_options) when they
// are invalid; call `validate()` / `validation_message()` on values read
// from configuration.
template <backoff_strategy Backoff = backoff>
struct basic_retry_options {
  // Attempts in total, the first call included: 3 means one call and at
  // most two retries. Default 3. Must be >= 1.
  std::uint32_t max_attempts = 3;
  // The delay strategy. Default: exponential from 100 ms, full jitter,
  // capped at 10 s.
  Backoff backoff{};
  // Limit on the whole call, first attempt included, measured with the
  // policy's clock. Zero means none. Default zero. Must be >= 0. A per-call
  // deadline may be passed to `execute` as well; the earlier one wins.
  duration max_elapsed = duration::zero();
  // Which failures to retry: any callable `bool(const failure_info&)`, a
  // capturing lambda included (copied into the options; called only on
  // failures, concurrently from every thread using the policy). Default
  // (empty): `sturdy::default_retry_if`.
  callback<bool(const failure_info&)> retry_if{};
  // Extracts a server hint from a failure: any callable
  // `retry_hint(const failure_info&)`. Default (empty): none (the exception
  // type, the ADL hook and errc::retry_refused still apply).
  callback<retry_hint(const failure_info&)> server_hint{};
  // Server-suggested delays are clamped to [min_server_delay,
  // max_server_delay]. Defaults 0 and 60 s. Must be 0 <= min <= max.
  duration min_server_delay = duration::zero();
  duration max_server_delay = std::chrono::seconds(60);
  // The shared retry budget. Default: none (every retry allowed).
  retry_budget_ref budget{};

  // Empty when valid, otherwise a sentence naming the offending field.
  // Every duration accepts 0 and duration::max() (sums saturate).
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (max_attempts < 1) return "retry_options.max_attempts must be >= 1 (it counts the first call)";
    if (max_elapsed < duration::zero()) return "retry_options.max_elapsed must be >= 0 (0 = no limit)";
    if (min_server_delay < duration::zero()) return "retry_options.min_server_delay must be >= 0";
    if (max_server_delay < min_server_delay) {
      return "retry_options.max_server_delay must be >= min_server_delay";
    }
    if constexpr (requires(const Backoff& b) { { b.validation_message() } -> std::convertible_to<std::string_view>; }) {
      const std::string_view m = backoff.validation_message();
      if (!m.empty()) return m;
    }
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    return detail::validation_result(validation_message());
  }
};

using retry_options = basic_retry_options<>;

namespace detail {

// The ADL hint hook on a result's error value, when there is one.
template <class R>
[[nodiscard]] retry_hint error_value_hint(const R& r) {
  if constexpr (requires { r.has_error(); r.assume_error(); }) {
    using E = std::remove_cvref_t<decltype(r.assume_error())>;
    if constexpr (requires(const E& e) { { sturdy_retry_hint(e) } -> std::convertible_to<retry_hint>; }) {
      if (r.has_error()) return sturdy_retry_hint(r.assume_error());
    }
  } else if constexpr (requires { r.has_value(); r.error(); typename R::error_type; }) {
    using E = typename R::error_type;
    if constexpr (requires(const E& e) { { sturdy_retry_hint(e) } -> std::convertible_to<retry_hint>; }) {
      if (!r.has_value()) return sturdy_retry_hint(r.error());
    }
  }
  return {};
}

// A "reported already" flag that a copyable value can hold: copies start
// from the source's value. Lock-free; no allocation.
class copyable_flag {
 public:
  copyable_flag() noexcept = default;
  copyable_flag(const copyable_flag& o) noexcept : v_(o.v_.load(std::memory_order_relaxed)) {}
  copyable_flag& operator=(const copyable_flag& o) noexcept {
    v_.store(o.v_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }
  // Sets the flag; returns whether it was set before.
  bool exchange() const noexcept { return v_.exchange(true, std::memory_order_relaxed); }

 private:
  mutable std::atomic<bool> v_{false};
};

}  // namespace detail

// ----------------------------------------------------------------------------
// retry_policy
// ----------------------------------------------------------------------------

// retry_policy<Backoff, Clock, Sleeper, Listener, Random>
//
// A copyable value: options plus the seams. Build it once and share it.
// `compose()` copies it into a pipeline (its only state is its options and
// seams), so a factory may build one in a local and return the pipeline.
template <backoff_strategy Backoff = backoff, clock_source Clock = steady_clock_source,
          sleeper Sleeper = thread_sleeper, class Listener = null_listener,
          std::uniform_random_bit_generator Random = thread_local_random>
class retry_policy {
 public:
  using options_type = basic_retry_options<Backoff>;

  // The seams left out are default-constructed. (Overloads rather than
  // default arguments: a seam without a default constructor, such as
  // `testing::recording_sleeper`, must not make the shorter forms ill-formed
  // when a trait such as std::is_default_constructible asks about them.)
  explicit retry_policy(options_type options, Clock clock, Sleeper sleeper, Listener listener, Random random)
      : options_(std::move(options)),
        clock_(std::move(clock)),
        sleeper_(std::move(sleeper)),
        listener_(std::move(listener)),
        random_(std::move(random)),
        valid_(options_.validation_message().empty()) {}
  explicit retry_policy(options_type options, Clock clock, Sleeper sleeper, Listener listener)
    requires std::default_initializable<Random>
      : retry_policy(std::move(options), std::move(clock), std::move(sleeper), std::move(listener), Random()) {}
  explicit retry_policy(options_type options, Clock clock, Sleeper sleeper)
    requires(std::default_initializable<Listener> && std::default_initializable<Random>)
      : retry_policy(std::move(options), std::move(clock), std::move(sleeper), Listener(), Random()) {}
  explicit retry_policy(options_type options, Clock clock)
    requires(std::default_initializable<Sleeper> && std::default_initializable<Listener> &&
             std::default_initializable<Random>)
      : retry_policy(std::move(options), std::move(clock), Sleeper(), Listener(), Random()) {}
  explicit retry_policy(options_type options = {})
    requires(std::default_initializable<Clock> && std::default_initializable<Sleeper> &&
             std::default_initializable<Listener> && std::default_initializable<Random>)
      : retry_policy(std::move(options), Clock(), Sleeper(), Listener(), Random()) {}

  // retry_policy::execute()
  //
  // Calls `fn` until it succeeds or the loop stops (see the banner). Returns
  // `execute_result_t<F>`; rethrows the last exception whenever the last
  // attempt threw. The overloads take the caller's stop token and an
  // absolute deadline (the earlier of it and `max_elapsed` applies; a
  // deadline already passed means `fn` is never called; no attempt ever
  // starts at or after the deadline), and the `retry_after_source` of an
  // inner layer that may reject calls (`compose` passes it).
  //
  // The context overload is the real one: the caller's token stops the loop
  // (`cancel_reason::cancelled`: errc::cancelled, neutral for the budget;
  // `cancel_reason::deadline`: errc::deadline_exceeded), and its deadline
  // is combined with `max_elapsed` (the earlier applies, compared on this
  // policy's clock). Each attempt receives `{ctx.token, that deadline,
  // attempt number}` when `fn` takes `const sturdy::call_context&`. The
  // `std::stop_token` / `time_point` overloads are wrappers building such
  // a context (the stop token linked, not copied: no allocation; the time
  // point read on this policy's clock).
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn) const {
    return run<false>(fn, call_context{}, retry_after_source());
  }
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, const call_context& ctx) const {
    return run(fn, ctx, retry_after_source());
  }
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, const call_context& ctx,
                                                    retry_after_source inner) const {
    return run(fn, ctx, inner);
  }
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, std::stop_token stop) const {
    return execute(std::forward<F>(fn), std::move(stop), time_point::max(), retry_after_source());
  }
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, std::stop_token stop, time_point deadline) const {
    return execute(std::forward<F>(fn), std::move(stop), deadline, retry_after_source());
  }
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, std::stop_token stop, time_point deadline,
                                                    retry_after_source inner) const {
    linked_cancel_source source(cancel_token{}, stop);
    call_context ctx{.token = source.token()};
    if (deadline != time_point::max()) ctx.deadline = sturdy::deadline::at(deadline, clock_ref::of(clock_));
    return run(fn, ctx, inner);
  }

  [[nodiscard]] const options_type& options() const noexcept { return options_; }
  // False when the options failed validation (execute then returns
  // errc::invalid_options without calling, and emits `options_rejected`
  // on the first such call).
  [[nodiscard]] bool valid() const noexcept { return valid_; }

  // --------------------------------------------------------------------------
  // The decision core (STYLE 3.8): every rule of the banner, without I/O.
  // --------------------------------------------------------------------------
  //
  // `execute` is one driver of these five calls; `sturdy::asio::async_retry`
  // and the fleet simulator (bench/sim) are others. A driver makes the
  // attempts and does the waiting; it never decides. Per call it keeps one
  // `state_type` (a small value: attempt count, backoff state, deadline,
  // latency estimate, the budget ticket of the retry about to run;
  // `begin`, `attempt_context` and `on_success` take only its first-attempt
  // part, `retry_call_state`, so a driver may build the rest after a
  // failure, as `execute` does):
  //
  //   state_type s;
  //   retry_decision d = policy.begin(s, ctx);            // attempt or stop
  //   while (d.what == retry_decision::kind::attempt) {
  //     R r = attempt(policy.attempt_context(s, ctx));
  //     if (succeeded(r)) { policy.on_success(s); break; }
  //     d = policy.on_failure(s, failure_of(r), hint, ctx.token.reason(), inner);
  //     if (d.what == retry_decision::kind::wait) {
  //       const bool waited = wait_cancellable(d.delay);
  //       d = policy.after_wait(s, failure_of(r), waited, ctx.token.reason());
  //     }
  //   }
  //   // return_last: the last outcome (rethrow if it threw); fail: d.code
  //
  // The core reads the policy's Clock only when the call is timed (a
  // deadline or max_elapsed), draws jitter from its Random, talks to the
  // budget and emits every event. Same thread-safety as `execute`: const,
  // per-call state in `s`.

  using state_type = retry_state<Backoff>;

  // Before the first attempt: invalid options, a stop already requested, a
  // deadline already passed (fail), else attempt 1. `Contextual` false:
  // `ctx` is known to be the default one (no token, no deadline), so those
  // checks are skipped at compile time.
  template <bool Contextual = true>
  [[nodiscard, gnu::always_inline]] inline retry_decision begin(retry_call_state& s, const call_context& ctx) const {
    if (STURDY_UNLIKELY(!valid_)) return refuse();
    if (STURDY_UNLIKELY(Contextual && ctx.token.stop_requested())) {
      return stopped_before_start(ctx.token.reason());
    }
    if ((Contextual && !ctx.deadline.is_none()) || options_.max_elapsed > duration::zero()) {
      s.timed = true;
      s.attempt_start = clock_.now();
      // The earlier of max_elapsed and the caller's deadline, on this
      // policy's clock (a deadline on another clock is carried over as its
      // remaining time: it can only come earlier).
      const clock_ref mine = clock_ref::of(clock_);
      const sturdy::deadline own = options_.max_elapsed > duration::zero()
                                       ? sturdy::deadline::after(options_.max_elapsed, mine, s.attempt_start)
                                       : sturdy::deadline::at(time_point::max(), mine);
      s.deadline = own.earliest(ctx.deadline, s.attempt_start).at();
      if (STURDY_UNLIKELY(s.deadline <= s.attempt_start)) {  // passed already: never start
        return stopped_before_start(cancel_reason::deadline);
      }
    }
    s.attempt = 1;
    return {};
  }

  // The context attempt `s.attempt` receives: {ctx.token, the deadline the
  // loop plans against (the earlier of max_elapsed and ctx's, on this
  // policy's clock, when timed; ctx's otherwise), the attempt number}.
  [[nodiscard]] call_context attempt_context(const retry_call_state& s, const call_context& ctx) const noexcept {
    return call_context{ctx.token, s.timed ? sturdy::deadline::at(s.deadline, clock_ref::of(clock_)) : ctx.deadline,
                        s.attempt};
  }

  // The attempt succeeded: recorded with the budget; the call is over.
  [[gnu::always_inline]] inline void on_success(const retry_call_state& s) const noexcept {
    options_.budget.on_attempt(s.sent_any);
    options_.budget.on_outcome(attempt_outcome::success);
    if constexpr (wants_retry_call_completed<Listener>) emit(listener_, retry_call_completed{s.attempt, true});
  }

  // Attempt `s.attempt` failed with `failure` (and the server's `hint`, if
  // the driver found one on an exception or the error value; the options'
  // `server_hint` and errc::retry_refused are checked here). `stop` is the
  // caller's token's reason now. Records the attempt with the budget, then:
  // return_last / fail, or wait `delay` with the budget's ticket held (emits
  // retry_scheduled).
  [[nodiscard]] retry_decision on_failure(state_type& s, const failure_info& failure, retry_hint hint, cancel_reason stop,
                                          const retry_after_source& inner) const {
    return completed_if_stop(s, decide_after_failure(s, failure, hint, stop, inner));
  }

  // The wait `on_failure` asked for is over: `completed` false when it was
  // cut short (the caller's token, whose reason is `stop`, or the driver's
  // own cancellation: anything but cancel_reason::deadline counts as
  // cancelled). Stops (refunding the budget's ticket: the retry never ran)
  // when cut short or when the deadline has come meanwhile (the wait may
  // overshoot: no attempt starts at or after the deadline); else attempt
  // `s.attempt + 1`. `failure` is the failure `on_failure` was given (for
  // the events).
  [[nodiscard]] retry_decision after_wait(state_type& s, const failure_info& failure, bool completed,
                                          cancel_reason stop) const {
    return completed_if_stop(s, decide_after_wait(s, failure, completed, stop));
  }

  // The driver is torn down while the wait `on_failure` asked for is
  // pending, so the call will never complete (an async driver whose
  // io_context was destroyed or shut down: its handlers are destroyed
  // without running). Refunds the budget's ticket: the retry never ran.
  // Emits nothing: no user code (listeners) runs from a driver's
  // destructor during shutdown. noexcept; a second call does nothing.
  void abandon(state_type& s) const noexcept { refund(s); }

 private:
  // A stop decision ends the call: its completion event, for the listeners
  // that asked for it.
  retry_decision completed_if_stop(const retry_call_state& s, retry_decision d) const noexcept {
    if constexpr (wants_retry_call_completed<Listener>) {
      if (d.what == retry_decision::kind::fail || d.what == retry_decision::kind::return_last) {
        emit(listener_, retry_call_completed{s.attempt, false});
      }
    }
    (void)s;
    return d;
  }

  [[nodiscard]] retry_decision decide_after_failure(state_type& s, const failure_info& failure, retry_hint hint,
                                                    cancel_reason stop, const retry_after_source& inner) const {
    const std::uint32_t attempt = s.attempt;
    const bool retryable = options_.retry_if ? options_.retry_if(failure) : default_retry_if(failure);
    // The caller's token: `cancelled` stops the loop as errc::cancelled and
    // is never the callee's failure; `deadline` (an enclosing timeout)
    // stops it as errc::deadline_exceeded and the failure counts.
    const bool stopped = stop != cancel_reason::none;
    const bool cancelled = stop == cancel_reason::cancelled;
    // An inner layer (a breaker) refused the attempt without calling the
    // dependency: neutral for every budget (nothing recorded, and the retry
    // admitted for it, if any, is refunded).
    const bool not_sent = !failure.exception && failure.code == errc::circuit_open;
    if (not_sent) {
      options_.budget.refund_retry(s.ticket);
    } else {
      // The attempt is recorded first, whatever happens next (the throttle
      // counted it as a request). Cancellation is never the callee's
      // failure: an attempt that failed while the caller was stopping is
      // neutral, like a non-retryable error.
      options_.budget.on_attempt(s.sent_any);
      options_.budget.on_outcome(retryable && !cancelled ? attempt_outcome::failure : attempt_outcome::neutral);
      s.sent_any = true;
    }
    s.ticket = 0;
    if (!retryable) return give_up();
    if (attempt >= options_.max_attempts) {
      emit(listener_, retries_exhausted{attempt, failure});
      return give_up();
    }
    duration delay{};
    bool hinted = false;
    if (not_sent) {
      // Never blindly: only after the inner layer's own retry_after(), plus
      // this retry's backoff delay, so that the callers a breaker rejected
      // together do not all come back at the instant it reopens.
      const duration wait = inner ? inner() : duration::max();
      if (inner && wait <= options_.max_server_delay) {
        delay = detail::saturating_add(wait, options_.backoff.next_delay(attempt - 1, s.backoff_state, random_));
        if (delay < options_.min_server_delay) delay = options_.min_server_delay;
      }
      if (!inner || wait > options_.max_server_delay || delay > options_.max_server_delay) {
        emit(listener_, retry_circuit_open{attempt, wait, failure});
        return give_up();
      }
      hinted = true;
    } else {
      if (hint.verdict == retry_hint::kind::none && options_.server_hint) hint = options_.server_hint(failure);
      if (hint.verdict == retry_hint::kind::none && failure.code == errc::retry_refused) {
        hint = retry_hint::do_not_retry();
      }
      if (hint.verdict == retry_hint::kind::do_not_retry) {
        emit(listener_, retry_refused_by_server{attempt, failure});
        return give_up();
      }
      hinted = hint.verdict == retry_hint::kind::delay;
      if (hinted) {
        delay = hint.delay < options_.min_server_delay   ? options_.min_server_delay
                : hint.delay > options_.max_server_delay ? options_.max_server_delay
                                                          : hint.delay;
      } else {
        delay = options_.backoff.next_delay(attempt - 1, s.backoff_state, random_);
      }
    }
    s.delay = delay;
    // Only now, when the loop would otherwise retry, does a stop request
    // replace the failure.
    if (stopped) return stopped_verdict(s, stop, failure);
    if (s.timed) {
      const time_point now = clock_.now();
      const duration took = detail::time_between(s.attempt_start, now);
      // A cheap running estimate: the mean of this attempt and the last
      // estimate (an EWMA with weight 1/2).
      s.estimate = s.has_estimate ? s.estimate / 2 + took / 2 : took;
      s.has_estimate = true;
      const duration remaining = detail::time_between(now, s.deadline);
      // No room for the delay plus an attempt, or the attempt would start at
      // or after the deadline.
      if (detail::saturating_add(delay, s.estimate) > remaining || delay >= remaining) {
        if (not_sent) {  // the breaker caused the stop: the caller sees circuit_open
          emit(listener_, retry_circuit_open{attempt, delay, failure});
          return give_up();
        }
        emit(listener_, retry_deadline_exceeded{attempt, delay, remaining, s.estimate, failure});
        return fail(errc::deadline_exceeded);
      }
    }
    if (!not_sent && options_.budget) {
      // Entropy only for budgets that read it: no draw (and no shift of a
      // seeded jitter sequence) for the token bucket or the ratio budget.
      const std::uint64_t entropy = options_.budget.uses_entropy() ? absl::Uniform<std::uint64_t>(random_) : 0;
      s.ticket = options_.budget.try_retry_ticket(entropy);
      if (s.ticket == 0) {
        emit(listener_, retry_budget_denied{attempt, failure});
        return fail(errc::budget_exhausted);
      }
    }
    if constexpr (!std::is_same_v<Listener, null_listener>) {  // no event built (no failure copied) for none
      emit(listener_, retry_scheduled{attempt, delay, failure, hinted});
    }
    return {.what = retry_decision::kind::wait, .delay = delay};
  }

  [[nodiscard]] retry_decision decide_after_wait(state_type& s, const failure_info& failure, bool completed,
                                                 cancel_reason stop) const {
    if (!completed) {
      refund(s);  // the retry never ran: not charged
      return stopped_verdict(s, stop, failure);
    }
    if (s.timed) {
      const time_point now = clock_.now();
      if (now >= s.deadline) {
        refund(s);
        emit(listener_, retry_deadline_exceeded{s.attempt, s.delay, duration::zero(), s.estimate, failure});
        return fail(errc::deadline_exceeded);
      }
      s.attempt_start = now;
    }
    ++s.attempt;
    return {};
  }

  // The decisions that end the call.
  [[nodiscard]] static retry_decision fail(errc code) noexcept {
    return {.what = retry_decision::kind::fail, .code = code};
  }
  [[nodiscard]] static retry_decision give_up() noexcept {
    return {.what = retry_decision::kind::return_last};
  }

  // Invalid options: errc::invalid_options with the message naming the
  // field; options_rejected on the first refusal. Kept out of line: the
  // first attempt's path stays small.
  [[gnu::noinline, gnu::cold]] retry_decision refuse() const {
    if constexpr (wants_retry_call_completed<Listener>) emit(listener_, retry_call_completed{0, false});
    report_rejected();
    return fail(errc::invalid_options);
  }
  [[gnu::noinline, gnu::cold]] void report_rejected() const {
    if (!rejected_reported_.exchange()) {
      emit(listener_, options_rejected{"retry_policy", options_.validation_message()});
    }
  }

 public:
  // For a driver that copies the policy per call (async_retry): emits
  // options_rejected now, on this policy, when the options are invalid and
  // it was not emitted yet. Copies made afterwards start reported, so the
  // event comes once per policy, as with the blocking execute.
  void report_invalid_options() const {
    if (STURDY_UNLIKELY(!valid_)) report_rejected();
  }

 private:
  [[gnu::noinline, gnu::cold]] retry_decision stopped_before_start(cancel_reason why) const {
    if constexpr (wants_retry_call_completed<Listener>) emit(listener_, retry_call_completed{0, false});
    if (why == cancel_reason::deadline) {
      emit(listener_, retry_deadline_exceeded{0, duration::zero(), duration::zero(), duration::zero(), {}});
      return fail(errc::deadline_exceeded);
    }
    emit(listener_, retry_cancelled{0, {}});
    return fail(errc::cancelled);
  }

  // The caller's token fired: cancelled, or an enclosing deadline passed.
  [[nodiscard]] retry_decision stopped_verdict(const state_type& s, cancel_reason why, const failure_info& failure) const {
    if (why == cancel_reason::deadline) {
      emit(listener_,
           retry_deadline_exceeded{s.attempt, s.delay, duration::zero(), s.estimate, failure});
      return fail(errc::deadline_exceeded);
    }
    emit(listener_, retry_cancelled{s.attempt, failure});
    return fail(errc::cancelled);
  }

  void refund(state_type& s) const noexcept {
    options_.budget.refund_retry(s.ticket);
    s.ticket = 0;
  }

  // --------------------------------------------------------------------------
  // The blocking driver (execute)
  // --------------------------------------------------------------------------

  // What the blocking driver keeps besides the core's state: the last
  // attempt's exception and the hint it carried.
  struct driver_state {
    bool stopped_early = false;  // no attempt made (the core said fail in begin)
    retry_hint hint{};
    std::exception_ptr thrown;   // the last attempt's exception, if any
  };

  // The failure a stop decision stands for, as R (with the message naming
  // the field for invalid options, where R can carry one).
  template <class R>
  [[gnu::noinline, gnu::cold]] R failure_for(const retry_decision& d) const {
    if (d.code == errc::invalid_options) {
      return make_failure<R>(make_error_code(d.code), options_.validation_message());
    }
    return make_failure<R>(d.code);
  }

  // One attempt; an exception is caught into `ds` and a placeholder failure
  // returned in its place (never handed to the caller).
  // A callable taking the context receives attempt_context(s, ctx); one that
  // does not is called exactly as before the context existed (nothing built
  // on the happy path).
  template <class F>
  [[nodiscard]] context_execute_result_t<F> attempt(F& fn, const retry_call_state& s, driver_state& ds,
                                                    const call_context& ctx) const {
    const auto on_hint = [&](const retry_after_error& e) noexcept { ds.hint = e.hint(); };
    if constexpr (context_callable<F>) {
      const call_context mine = attempt_context(s, ctx);
      return detail::invoke_captured<retry_after_error>(
          [&]() -> context_execute_result_t<F> { return invoke_with_context(fn, mine); }, ds.thrown,
          errc::retries_exhausted, on_hint);
    } else {
      (void)s;
      (void)ctx;
      return detail::invoke_captured<retry_after_error>(fn, ds.thrown, errc::retries_exhausted, on_hint);
    }
  }

  // The core's begin, then the first attempt.
  template <bool Contextual, class F>
  [[nodiscard]] context_execute_result_t<F> first_attempt(F& fn, const call_context& ctx, retry_call_state& s,
                                                          driver_state& ds) const {
    using R = context_execute_result_t<F>;
    const retry_decision d = begin<Contextual>(s, ctx);
    if (STURDY_UNLIKELY(d.what != retry_decision::kind::attempt)) {
      ds.stopped_early = true;
      return failure_for<R>(d);
    }
    return attempt(fn, s, ds, ctx);
  }

  // Every path returns the one object `r`, so it is built in the caller's
  // return slot (NRVO): the success path copies nothing. Only the first
  // attempt's part of the state is set up here; the retry part (backoff
  // state, estimate, ticket) is built by retry_loop, after a failure.
  // `first` goes to retry_loop as scalars: its address never escapes, so
  // the compiler keeps it in registers and stores nothing for it before
  // the (opaque) first attempt.
  template <bool Contextual = true, class F>
  [[nodiscard]] context_execute_result_t<F> run(F& fn, const call_context& ctx,
                                                const retry_after_source& inner) const {
    using R = context_execute_result_t<F>;
    retry_call_state first;
    driver_state ds;
    R r = first_attempt<Contextual>(fn, ctx, first, ds);
    if (STURDY_LIKELY(!ds.thrown && !ds.stopped_early && succeeded(r))) {
      on_success(first);
      return r;
    }
    if (!ds.stopped_early) {
      retry_loop(fn, r, ctx, inner, ds, first.attempt, first.sent_any, first.timed, first.deadline, first.attempt_start);
    }
    return r;
  }

  // After a failed first attempt: asks the core, sleeps when it says wait,
  // attempts when it says attempt; leaves the outcome in `r` (or rethrows
  // the callee's last exception: whenever the last attempt threw, whatever
  // the stop reason).
  template <class F>
  [[gnu::noinline]] void retry_loop(F& fn, context_execute_result_t<F>& r, const call_context& ctx,
                                    const retry_after_source& inner, driver_state& ds, std::uint32_t attempt_no,
                                    bool sent_any, bool timed, time_point deadline, time_point attempt_start) const {
    using R = context_execute_result_t<F>;
    // Every field of retry_call_state, in order (the size check trips when
    // one is added: pass it here too).
    static_assert(sizeof(retry_call_state) == 8 + 2 * sizeof(time_point));
    state_type s{retry_call_state{attempt_no, timed, sent_any, deadline, attempt_start}};
    for (;;) {
      const failure_info failure = ds.thrown ? failure_info{.code = {}, .exception = ds.thrown} : failure_of(r);
      const retry_hint hint = ds.thrown ? ds.hint : detail::error_value_hint(r);
      retry_decision d = on_failure(s, failure, hint, ctx.token.reason(), inner);
      if (d.what == retry_decision::kind::wait) {
        const bool slept = detail::sleep_cancellable(sleeper_, d.delay, ctx.token);
        d = after_wait(s, failure, slept, ctx.token.reason());
      }
      if (d.what != retry_decision::kind::attempt) {
        if (ds.thrown) std::rethrow_exception(ds.thrown);
        if (d.what == retry_decision::kind::fail) r = make_failure<R>(d.code);
        return;
      }
      ds.thrown = nullptr;
      ds.hint = {};
      r = attempt(fn, s, ds, ctx);
      if (!ds.thrown && succeeded(r)) {
        on_success(s);
        return;
      }
    }
  }

  options_type options_;
  STURDY_NO_UNIQUE_ADDRESS mutable Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS mutable Sleeper sleeper_;
  STURDY_NO_UNIQUE_ADDRESS mutable Listener listener_;
  STURDY_NO_UNIQUE_ADDRESS mutable Random random_;
  bool valid_;
  detail::copyable_flag rejected_reported_;  // options_rejected emitted (invalid options only)
};

// sturdy::make_retry_policy(options[, clock, sleeper, listener, random])
//
// The start-up check: the policy, or `errc::invalid_options` when the
// options do not validate (`options.validation_message()` names the field).
// For code that wants to fail early instead of on the first call.
//
//   auto policy = sturdy::make_retry_policy(read_options());
//   if (!policy) return log_and_exit(read_options().validation_message());
template <backoff_strategy Backoff = backoff, clock_source Clock = steady_clock_source,
          sleeper Sleeper = thread_sleeper, class Listener = null_listener,
          std::uniform_random_bit_generator Random = thread_local_random>
[[nodiscard]] result<retry_policy<Backoff, Clock, Sleeper, Listener, Random>> make_retry_policy(
    basic_retry_options<Backoff> options, Clock clock = Clock(), Sleeper sleeper = Sleeper(),
    Listener listener = Listener(), Random random = Random()) {
  if (auto valid = options.validate(); !valid) return valid.error();
  return retry_policy<Backoff, Clock, Sleeper, Listener, Random>(std::move(options), std::move(clock),
                                                                 std::move(sleeper), std::move(listener),
                                                                 std::move(random));
}

// ----------------------------------------------------------------------------
// Free functions
// ----------------------------------------------------------------------------

// sturdy::retry(fn) / retry(options, fn[, stop])
//
// One-off retry with the default clock, sleeper and generator.
template <context_invocable F>
[[nodiscard]] context_execute_result_t<F> retry(F&& fn) {
  // One immutable default policy, shared (execute is const and thread-safe
  // with the default seams): nothing is built per call.
  static const retry_policy<> defaults;
  return defaults.execute(std::forward<F>(fn));
}
template <backoff_strategy Backoff, context_invocable F>
[[nodiscard]] context_execute_result_t<F> retry(const basic_retry_options<Backoff>& options, F&& fn,
                                        std::stop_token stop = {}) {
  return retry_policy<Backoff>(options).execute(std::forward<F>(fn), std::move(stop));
}

// sturdy::retry(options, fn, gen, clock, sleeper[, stop])
//
// With an explicit generator (held by reference for the call), clock and
// sleeper: the form tests use.
template <backoff_strategy Backoff, context_invocable F, std::uniform_random_bit_generator Gen,
          clock_source Clock, sleeper Sleeper>
[[nodiscard]] context_execute_result_t<F> retry(const basic_retry_options<Backoff>& options, F&& fn, Gen& gen,
                                        Clock clock, Sleeper sleeper, std::stop_token stop = {}) {
  return retry_policy<Backoff, Clock, Sleeper, null_listener, detail::urbg_ref<Gen>>(
             options, std::move(clock), std::move(sleeper), null_listener(), detail::urbg_ref<Gen>(gen))
      .execute(std::forward<F>(fn), std::move(stop));
}

}  // namespace sturdy

#endif  // STURDY_RETRY_HPP_
