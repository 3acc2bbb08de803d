// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/circuit_breaker.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::circuit_breaker` stops calling a failing dependency for a cool-down
// period, then admits a few probe calls to learn whether it has recovered.
// Its call path is lock-free, and in the closed state a successful call costs
// one load of a read-mostly word and one increment of a per-thread counter:
// no shared cache line is written and the breaker reads no clock. (With
// `slow_call_duration > 0`, `execute` reads the clock twice per call to time
// it; `try_acquire` + `record` never read it on that path.)
//
//   closed    --(a trip rule fires on a failure/slow call)-----> open
//   open      --(open duration elapsed, seen by an acquire)----> half_open
//   half_open --(enough probes succeed)--> closed
//   half_open --(too many probes fail)---> open (longer, if growth > 1)
//   any       --(force_open / disable / metrics_only / reset)--> forced_open |
//                                                disabled | metrics_only | closed
//
// Trip rules (any one trips; each can be switched off): consecutive failures;
// failure rate over a count-based window (last N calls) and/or a time-based
// window (buckets); slow-call rate over the same windows. Rate rules wait for
// `minimum_calls` calls in the window. Rules are evaluated when a failure or
// a slow call is recorded: a success never trips the breaker.
//
// Example:
//
//   sturdy::circuit_breaker<> breaker({.consecutive_failure_threshold = 5,
//                                      .open_duration = std::chrono::seconds(30)});
//   sturdy::result<Stock> get_stock(Sku sku) {
//     // Returns errc::circuit_open without calling while open; an exception
//     // from Get counts as a failure and is rethrown.
//     return breaker.execute([&] { return inventory.Get(sku); });
//   }
//
//   // Two-step form, for callers that cannot wrap the call:
//   auto permit = breaker.try_acquire();
//   if (!permit) return permit.error();   // errc::circuit_open; see retry_after()
//   auto r = send(request);
//   breaker.record(permit.value(), r ? sturdy::call_outcome::success : sturdy::call_outcome::failure);
//
// Thread safety: every member function may be called from any number of
// threads at once. Calls (try_acquire, record, execute) and metrics() never
// block, wait for another thread, or take a lock. State transitions are
// serialised by a "transition in progress" bit in the state word, held for a
// few stores: meanwhile calls see the state being entered (admitted if it
// admits every call, else rejected), an automatic transition that finds the
// bit set gives way, and a manual one (force_open, disable, metrics_only,
// reset) yields until the bit is released. The only approximations
// (documented in docs/circuit_breaker.md) concern the order of calls that
// overlap in time on different threads.
//
// Testing: instantiate with `sturdy::testing::manual_clock` and advance it;
// observe transitions with `sturdy::testing::recording_listener`.

#ifndef STURDY_CIRCUIT_BREAKER_HPP_
#define STURDY_CIRCUIT_BREAKER_HPP_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

#include "sturdy/callback.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/context.hpp"
#include "sturdy/detail/breaker_windows.hpp"
#include "sturdy/detail/breaker_word.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy {

// breaker_state
//
// closed: admits every call and measures. open: rejects every call until the
// open duration has elapsed. half_open: admits at most `half_open_probes`
// probes at once. forced_open: rejects every call until a manual change.
// disabled: admits every call, counts calls/failures, never evaluates a rule.
// metrics_only: admits every call, evaluates the rules, emits
// `breaker_trip_suppressed` instead of opening.
enum class breaker_state : std::uint8_t { closed, open, half_open, forced_open, disabled, metrics_only };

[[nodiscard]] constexpr std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
    case breaker_state::forced_open: return "forced_open";
    case breaker_state::disabled: return "disabled";
    case breaker_state::metrics_only: return "metrics_only";
  }
  return "unknown";
}

// Why the state changed.
enum class transition_reason : std::uint8_t {
  consecutive_failures,   // consecutive_failure_threshold reached
  failure_rate,           // failure_rate_threshold reached in a window
  slow_call_rate,         // slow_call_rate_threshold reached in a window
  open_duration_elapsed,  // open -> half_open
  probes_succeeded,       // half_open -> closed
  probes_failed,          // half_open -> open
  manual,                 // force_open(), disable(), metrics_only(), reset()
};

[[nodiscard]] constexpr std::string_view to_string(transition_reason r) noexcept {
  switch (r) {
    case transition_reason::consecutive_failures: return "consecutive_failures";
    case transition_reason::failure_rate: return "failure_rate";
    case transition_reason::slow_call_rate: return "slow_call_rate";
    case transition_reason::open_duration_elapsed: return "open_duration_elapsed";
    case transition_reason::probes_succeeded: return "probes_succeeded";
    case transition_reason::probes_failed: return "probes_failed";
    case transition_reason::manual: return "manual";
  }
  return "unknown";
}

// How a call ended, as recorded by `record()` or decided by
// `failure_classifier`. `ignored` is neither success nor failure (e.g. the
// caller cancelled): it is not counted and frees a half-open probe slot.
enum class call_outcome : std::uint8_t { success, failure, ignored };

// --- events (see sturdy/listener.hpp) --------------------------------------

// The breaker changed state; `generation` is the new state's generation.
struct breaker_state_changed {
  breaker_state from;
  breaker_state to;
  transition_reason reason;
  std::uint64_t generation;
  time_point at;
};
// A call was rejected; `retry_after` as `circuit_breaker::retry_after()`.
struct breaker_call_rejected {
  breaker_state state;
  duration retry_after;
};
// A half-open probe did not report within `probe_lease`; its slot was given
// to a new probe and its report, if it ever comes, will be ignored.
struct breaker_probe_lease_expired {
  std::uint64_t generation;
  std::uint32_t slot;
};
// In metrics_only, a rule fired that would have opened the breaker.
struct breaker_trip_suppressed {
  transition_reason reason;
};

// circuit_breaker_options
//
// Aggregate; fill with designated initializers. A value read from
// configuration should be checked with `validate()` first; a breaker built
// from invalid options rejects every call with `errc::invalid_options`.
struct circuit_breaker_options {
  // Consecutive failures (in closed) that open the breaker; 0 switches the
  // rule off. Default 5.
  std::uint32_t consecutive_failure_threshold = 5;
  // Failure rate in [0, 1] over a window that opens the breaker once the
  // window holds `minimum_calls` calls: trips when failures >= threshold *
  // calls. 0 switches the rule off. Default 0.5.
  double failure_rate_threshold = 0.5;
  // Calls slower than this (strictly) are slow. 0 switches slow-call
  // detection off: `execute` then reads no clock. Default 0 (off).
  duration slow_call_duration = duration::zero();
  // Slow-call rate in (0, 1] over a window that opens the breaker (same
  // comparison as failures). Used only when slow_call_duration > 0.
  // Default 1.0.
  double slow_call_rate_threshold = 1.0;
  // Count-based window: the last N calls; 0 = no count window. At most
  // 1'000'000. Default 100.
  std::uint32_t count_window_size = 100;
  // Time-based window span; 0 = no time window. Default 0 (off).
  duration time_window = duration::zero();
  // Buckets of the time window (span / buckets each), 1..1000. Default 10.
  std::uint32_t time_window_buckets = 10;
  // Calls a window must hold before its rates are evaluated, >= 1.
  // Default 100.
  std::uint32_t minimum_calls = 100;
  // Time spent open after a trip from closed, > 0. Default 30 s.
  duration open_duration = std::chrono::seconds(30);
  // Each consecutive reopening (half_open -> open without closing in
  // between) multiplies the open duration by this, >= 1. Default 1 (fixed).
  double open_duration_growth = 1.0;
  // Cap of the grown open duration, >= open_duration. Default 10 min.
  duration max_open_duration = std::chrono::minutes(10);
  // Probes admitted at once in half_open, 1..1000. Default 1.
  std::uint32_t half_open_probes = 1;
  // Fraction of the half_open_probes that must succeed to close, in (0, 1]:
  // closes once successes >= ceil(ratio * probes); reopens as soon as that
  // can no longer happen. Default 1 (every probe; any failure reopens).
  double half_open_success_ratio = 1.0;
  // A probe that does not report within this lease loses its slot, which is
  // then given to the next caller; no background thread. > 0. Default 60 s.
  duration probe_lease = std::chrono::seconds(60);
  // Counter stripes (128 bytes each: two cache lines, see
  // detail::counter_stripe_size) that spread success counting over threads:
  // 0 = one per hardware thread, rounded up to a power of two, at most 64;
  // otherwise a power of two <= 1024 (128 KiB). Default 0.
  std::uint32_t counter_stripes = 0;
  // Decides what a failed call counts as; empty = every error and exception
  // is a failure. Called only on failures (by `execute`), never on the
  // success path; a capturing lambda is fine (see sturdy/callback.hpp). A
  // classifier that throws counts the call as a failure. Default empty.
  callback<call_outcome(const failure_info&)> failure_classifier{};

  // The first invalid field, as a sentence that starts with
  // "circuit_breaker_options.<field> must"; empty when valid.
  [[nodiscard]] std::string_view validation_message() const noexcept {
    const auto bad_ratio = [](double v, bool zero_ok) {
      return !(v >= 0.0 && v <= 1.0) || (!zero_ok && v == 0.0);  // also NaN
    };
    if (bad_ratio(failure_rate_threshold, true))
      return "circuit_breaker_options.failure_rate_threshold must be in [0, 1]";
    if (slow_call_duration < duration::zero()) return "circuit_breaker_options.slow_call_duration must be >= 0";
    if (bad_ratio(slow_call_rate_threshold, false))
      return "circuit_breaker_options.slow_call_rate_threshold must be in (0, 1]";
    if (consecutive_failure_threshold == 0 && failure_rate_threshold == 0.0 && slow_call_duration == duration::zero())
      return "circuit_breaker_options.consecutive_failure_threshold must be > 0 when failure_rate_threshold and "
             "slow_call_duration are 0: with every trip rule off the breaker could never open (call disable() "
             "for a breaker that only counts)";
    if (count_window_size > 1'000'000) return "circuit_breaker_options.count_window_size must be <= 1000000";
    if (time_window < duration::zero()) return "circuit_breaker_options.time_window must be >= 0";
    if (time_window_buckets < 1 || time_window_buckets > 1000)
      return "circuit_breaker_options.time_window_buckets must be in [1, 1000]";
    if (time_window > duration::zero() && time_window.count() / time_window_buckets == 0)
      return "circuit_breaker_options.time_window must be at least time_window_buckets nanoseconds";
    const bool rate_rules = failure_rate_threshold > 0.0 || slow_call_duration > duration::zero();
    if (rate_rules && count_window_size == 0 && time_window == duration::zero())
      return "circuit_breaker_options.count_window_size or time_window must be > 0 when failure_rate_threshold "
             "or slow_call_duration is set: a rate rule needs a window (or set failure_rate_threshold = 0)";
    if (minimum_calls < 1) return "circuit_breaker_options.minimum_calls must be >= 1";
    if (rate_rules && count_window_size > 0 && minimum_calls > count_window_size)
      return "circuit_breaker_options.minimum_calls must be <= circuit_breaker_options.count_window_size: a count "
             "window of N calls never holds more than N, so its rate rules could never trip";
    if (open_duration <= duration::zero()) return "circuit_breaker_options.open_duration must be > 0";
    if (!(open_duration_growth >= 1.0) || !std::isfinite(open_duration_growth))
      return "circuit_breaker_options.open_duration_growth must be a finite number >= 1";
    if (max_open_duration < open_duration)
      return "circuit_breaker_options.max_open_duration must be >= open_duration";
    if (half_open_probes < 1 || half_open_probes > 1000)
      return "circuit_breaker_options.half_open_probes must be in [1, 1000]";
    if (bad_ratio(half_open_success_ratio, false))
      return "circuit_breaker_options.half_open_success_ratio must be in (0, 1]";
    if (probe_lease <= duration::zero()) return "circuit_breaker_options.probe_lease must be > 0";
    if (counter_stripes > 1024 || (counter_stripes & (counter_stripes - 1)) != 0)
      return "circuit_breaker_options.counter_stripes must be 0 or a power of two <= 1024";
    return {};
  }

  // errc::invalid_options when `validation_message()` is not empty.
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// breaker_window_stats: what one window holds now.
struct breaker_window_stats {
  std::uint64_t calls = 0;
  std::uint64_t failures = 0;
  std::uint64_t slow_calls = 0;
  [[nodiscard]] double failure_rate() const noexcept {
    return calls == 0 ? 0.0 : static_cast<double>(failures) / static_cast<double>(calls);
  }
  [[nodiscard]] double slow_call_rate() const noexcept {
    return calls == 0 ? 0.0 : static_cast<double>(slow_calls) / static_cast<double>(calls);
  }
};

// breaker_metrics: a snapshot. Each field means one thing in every state:
struct breaker_metrics {
  breaker_state state = breaker_state::closed;
  // Transitions since construction (the permit generation).
  std::uint64_t generation = 0;
  // Since the last transition (or construction); saturates at duration::max().
  duration time_in_state{};
  // As circuit_breaker::retry_after() at the snapshot.
  duration retry_after{};
  // Totals since construction, counted in every state (probes included):
  std::uint64_t calls = 0;       // outcomes counted: successes + failures
  std::uint64_t failures = 0;    // failures among them
  std::uint64_t slow_calls = 0;  // slow ones among them (successes or failures)
  std::uint64_t rejections = 0;  // calls refused with errc::circuit_open
  std::uint64_t ignored = 0;     // recorded as call_outcome::ignored
  std::uint64_t stale = 0;       // dropped: permit from an older generation
  // Failures in a row, since the last success or transition, in the states
  // that evaluate the consecutive rule (closed, metrics_only); 0 in every
  // other state.
  std::uint32_t consecutive_failures = 0;
  // In open and half_open: how many times the breaker reopened from
  // half_open since it last left closed (0 on the first opening; the open
  // duration grows with it). 0 in every other state.
  std::uint32_t consecutive_openings = 0;
  // The windows of the current closed, metrics_only or disabled period (they
  // start empty at each transition); all zero in open, half_open and
  // forced_open, and for a window that is switched off.
  breaker_window_stats count_window;
  breaker_window_stats time_window;
};

template <clock_source Clock, class Listener>
class circuit_breaker;

namespace detail {
// make_failure<R>(ec), with `message` (a static sentence naming an invalid
// field) in the error where R's error type can carry one: through
// `from_error_code<E>(ec, message)` for Boost.Outcome results and
// std::expected, or ADL's `sturdy_from_error_code(ec, message,
// std::type_identity<R>)` for a result type that is its own error
// (absl::Status). Otherwise the message is dropped.
template <class R>
[[nodiscard]] R make_failure_with_message(std::error_code ec, std::string_view message) {
  if constexpr (requires {
                  { sturdy_from_error_code(ec, message, std::type_identity<R>{}) } -> std::convertible_to<R>;
                }) {
    return sturdy_from_error_code(ec, message, std::type_identity<R>{});
  } else if constexpr (requires { typename outcome_traits<R>::error_type; }) {
    using E = typename outcome_traits<R>::error_type;
    if constexpr (std::is_constructible_v<R, BOOST_OUTCOME_V2_NAMESPACE::failure_type<E>>) {
      return R(BOOST_OUTCOME_V2_NAMESPACE::failure(from_error_code<E>(ec, message)));
#if STURDY_HAS_STD_EXPECTED
    } else if constexpr (std::is_constructible_v<R, std::unexpect_t, E>) {
      return R(std::unexpect, from_error_code<E>(ec, message));
#endif
    } else {
      return make_failure<R>(ec);
    }
  } else {
    return make_failure<R>(ec);
  }
}

// Declared only; a test may define it to reach a breaker's internals (to
// build states that only weak-memory hardware can produce). Not for users.
struct breaker_test_access;
}  // namespace detail

// breaker_permit
//
// Admission to make one call; hand it back to `record` of the breaker that
// issued it, exactly once. A permit from an earlier generation (the state
// changed meanwhile) is ignored by `record` and counted as stale. Trivially
// copyable.
class breaker_permit {
 public:
  [[nodiscard]] breaker_state state() const noexcept {
    return static_cast<breaker_state>(detail::word_state(word_));
  }
  [[nodiscard]] std::uint64_t generation() const noexcept { return detail::word_generation(word_); }
  [[nodiscard]] bool is_probe() const noexcept { return state() == breaker_state::half_open; }

 private:
  template <clock_source, class>
  friend class circuit_breaker;
  explicit breaker_permit(std::uint64_t word, std::uint32_t slot = 0, std::uint64_t lease = 0) noexcept
      : word_(word), lease_(lease), slot_(slot) {}
  std::uint64_t word_;
  std::uint64_t lease_;  // the probe slot's value while leased to this permit
  std::uint32_t slot_;
};

static_assert(std::is_trivially_copyable_v<breaker_permit>);

// circuit_breaker<Clock, Listener>
//
// Pinned: not copyable or movable; share it by reference.
template <clock_source Clock = steady_clock_source, class Listener = null_listener>
class circuit_breaker final {
 public:
  explicit circuit_breaker(circuit_breaker_options options, Clock clock = Clock(),
                           Listener listener = Listener())
      : clock_(std::move(clock)),
        listener_(std::move(listener)),
        options_(std::move(options)),
        invalid_(!options_.validation_message().empty()),
        timed_(options_.slow_call_duration > duration::zero()),
        consecutive_threshold_(options_.consecutive_failure_threshold),
        stripe_mask_(stripe_count(options_.counter_stripes) - 1),
        stripes_(std::make_unique<detail::counter_stripe[]>(stripe_mask_ + 1)),
        slots_(std::make_unique<std::atomic<std::uint64_t>[]>(invalid_ ? 0 : options_.half_open_probes)),
        count_window_(invalid_ ? 0 : options_.count_window_size),
        time_window_(options_.time_window,
                     invalid_ || options_.time_window <= duration::zero() ? 0 : options_.time_window_buckets) {
    const std::uint32_t n = std::max<std::uint32_t>(options_.half_open_probes, 1);
    for (std::uint32_t i = 0; i < (invalid_ ? 0 : n); ++i) slots_[i].store(detail::slot_free);
    probes_needed_ = static_cast<std::uint32_t>(
        std::ceil(options_.half_open_success_ratio * static_cast<double>(options_.half_open_probes)));
    probes_needed_ = std::clamp<std::uint32_t>(probes_needed_, 1, std::max<std::uint32_t>(n, 1));
    const time_point now = clock_.now();
    state_since_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    baseline_time_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    word_.store(detail::make_word(invalid_ ? state_bits(breaker_state::forced_open) : 0, 0),
                std::memory_order_release);
  }
  circuit_breaker(const circuit_breaker&) = delete;
  circuit_breaker& operator=(const circuit_breaker&) = delete;
  friend struct detail::breaker_test_access;

  // circuit_breaker::options_status()
  //
  // errc::invalid_options when the options did not validate (then every call
  // is rejected with that error); `options().validation_message()` says why.
  [[nodiscard]] result<void> options_status() const noexcept { return options_.validate(); }
  [[nodiscard]] const circuit_breaker_options& options() const noexcept { return options_; }
  // How `execute` records a failure (the options' failure_classifier, or
  // failure): for drivers that record through try_acquire/record
  // (sturdy::asio::breaker_layer).
  [[nodiscard]] call_outcome classify_failure(const failure_info& f) const noexcept { return classify(f); }

  // circuit_breaker::execute()
  //
  // Runs `fn` if admitted and records its outcome. Returns what `fn` returns
  // (result-like types; plain values wrapped in `result<T>`), or
  // `make_failure<R>(errc::circuit_open)` without calling `fn` when rejected.
  // An exception from `fn` is classified, recorded, and rethrown. The call is
  // timed with the clock only when slow-call detection is on.
  template <outcome_callable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn) {
    using R = execute_result_t<F>;
    auto admitted = try_acquire();
    if (STURDY_UNLIKELY(!admitted)) return rejected_result<R>(admitted.assume_error());
    const breaker_permit& permit = admitted.assume_value();
    if (!timed_) {
      try {
        R r = invoke_wrapped(std::forward<F>(fn));
        if (STURDY_LIKELY(succeeded(r))) {
          record(permit, call_outcome::success);
        } else {
          record(permit, classify(failure_of(r)));
        }
        return r;
      } catch (...) {
        record(permit, classify(failure_info{.code = {}, .exception = std::current_exception()}));
        throw;
      }
    } else {
      const time_point start = clock_.now();
      try {
        R r = invoke_wrapped(std::forward<F>(fn));
        const duration took = detail::time_between(start, clock_.now());
        if (STURDY_LIKELY(succeeded(r))) {
          record(permit, call_outcome::success, took);
        } else {
          record(permit, classify(failure_of(r)), took);
        }
        return r;
      } catch (...) {
        const duration took = detail::time_between(start, clock_.now());
        record(permit, classify(failure_info{.code = {}, .exception = std::current_exception()}), took);
        throw;
      }
    }
  }

  // The context overload (what `compose` calls; see "Deadlines and
  // cancellation" in docs/circuit_breaker.md): a token that fired already
  // is not admitted (its errc, nothing recorded); `fn` receives `ctx` when
  // it takes `const sturdy::call_context&`. After the call, the token
  // decides how a failure is recorded: fired by the caller's cancellation,
  // it is `call_outcome::ignored` (the dependency did not fail, the caller
  // left); fired by a deadline, it is classified as usual and, with
  // slow-call detection on, counted slow without a second clock read (the
  // call outlived its budget). A callable taking only the context may be
  // passed to `execute(fn)` too (a default context).
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, const call_context& ctx) {
    using R = context_execute_result_t<F>;
    if (STURDY_UNLIKELY(ctx.token.stop_requested())) return make_failure<R>(to_errc(ctx.token.reason()));
    auto admitted = try_acquire();
    if (STURDY_UNLIKELY(!admitted)) return rejected_result<R>(admitted.assume_error());
    const breaker_permit& permit = admitted.assume_value();
    const time_point start = timed_ ? clock_.now() : time_point{};
    try {
      R r = invoke_with_context(std::forward<F>(fn), ctx);
      if (STURDY_LIKELY(succeeded(r))) {
        record_in(permit, call_outcome::success, ctx, start);
      } else {
        record_in(permit, classify(failure_of(r)), ctx, start);
      }
      return r;
    } catch (...) {
      record_in(permit, classify(failure_info{.code = {}, .exception = std::current_exception()}), ctx, start);
      throw;
    }
  }
  template <context_callable F>
    requires(!std::invocable<F>)
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn) {
    return execute(std::forward<F>(fn), call_context{});
  }

  // circuit_breaker::try_acquire()
  //
  // A permit to make one call, or errc::circuit_open (open, forced open, or
  // no free probe slot; `retry_after()` tells when to come back), or
  // errc::invalid_options. Reads no clock in closed, disabled, metrics_only.
  [[nodiscard]] result<breaker_permit> try_acquire() noexcept {
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    if (STURDY_LIKELY((w & (detail::word_state_mask | detail::word_locked_bit)) == 0)) {
      return breaker_permit(w);  // closed
    }
    return acquire_slow();
  }

  // circuit_breaker::record()
  //
  // Reports how the permitted call ended. The overload with `elapsed` also
  // applies slow-call detection (when on); the other never counts a call as
  // slow. A permit from an older generation is ignored (counted as stale).
  void record(const breaker_permit& permit, call_outcome outcome) noexcept {
    if (STURDY_LIKELY(outcome == call_outcome::success &&
                      detail::word_state(permit.word_) == 0 &&
                      word_.load(std::memory_order_relaxed) == permit.word_)) {
      record_closed_success();
      return;
    }
    record_slow(permit, outcome, false);
  }
  void record(const breaker_permit& permit, call_outcome outcome, duration elapsed) noexcept {
    const bool slow = timed_ && elapsed > options_.slow_call_duration;
    if (STURDY_LIKELY(!slow && outcome == call_outcome::success &&
                      detail::word_state(permit.word_) == 0 &&
                      word_.load(std::memory_order_relaxed) == permit.word_)) {
      record_closed_success();
      return;
    }
    record_slow(permit, outcome, slow);
  }

  // circuit_breaker::state() / generation()
  //
  // Snapshots; may be stale when read. A breaker whose open duration has
  // elapsed reports open until the next acquire moves it to half_open.
  [[nodiscard]] breaker_state state() const noexcept {
    return static_cast<breaker_state>(detail::word_state(word_.load(std::memory_order_acquire)));
  }
  [[nodiscard]] std::uint64_t generation() const noexcept {
    return detail::word_generation(word_.load(std::memory_order_acquire));
  }

  // circuit_breaker::retry_after()
  //
  // How long until a call could be admitted: 0 when closed, disabled,
  // metrics_only or half_open with a free slot; the rest of the open
  // duration when open; until the earliest probe lease expires when every
  // probe slot is taken; duration::max() when forced open.
  [[nodiscard]] duration retry_after() const noexcept {
    return retry_after_at(word_.load(std::memory_order_acquire), clock_.now());
  }

  // circuit_breaker::metrics()
  //
  // A snapshot of the counters and windows. Brings the windows up to date
  // first (folds in successes counted since), which never trips the breaker.
  [[nodiscard]] breaker_metrics metrics() const noexcept {
    const time_point now = clock_.now();
    if (has_window()) request_drain(now, false);
    breaker_metrics m;
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    m.state = static_cast<breaker_state>(detail::word_state(w));
    m.generation = detail::word_generation(w);
    m.time_in_state = detail::time_between(time_point(duration(state_since_.load(std::memory_order_relaxed))), now);
    m.retry_after = retry_after_at(w, now);
    const detail::counter_totals t = totals();
    m.calls = t.calls;
    m.failures = t.failures;
    m.slow_calls = t.slow;
    m.rejections = t.rejections;
    m.ignored = t.ignored;
    m.stale = t.stale;
    // Each field means one thing in every state (see breaker_metrics): values
    // a state does not maintain read as 0, never as a leftover of an earlier
    // period (a failure racing a transition may leave one behind in the
    // counter itself).
    if (m.state == breaker_state::closed || m.state == breaker_state::metrics_only) {
      m.consecutive_failures = consecutive_.load(std::memory_order_relaxed);
    }
    if (m.state == breaker_state::open || m.state == breaker_state::half_open) {
      m.consecutive_openings = consecutive_openings_.load(std::memory_order_relaxed);
    }
    if (admits_every_call(m.state)) {
      m.count_window = {published_[0].load(std::memory_order_relaxed), published_[1].load(std::memory_order_relaxed),
                        published_[2].load(std::memory_order_relaxed)};
      m.time_window = {published_[3].load(std::memory_order_relaxed), published_[4].load(std::memory_order_relaxed),
                       published_[5].load(std::memory_order_relaxed)};
    }
    return m;
  }

  // Manual states. Each starts a new generation (permits issued before are
  // ignored) and emits breaker_state_changed with reason manual. reset()
  // returns to closed with empty windows and no consecutive counts.
  void force_open() noexcept { manual_transition(breaker_state::forced_open); }
  void disable() noexcept { manual_transition(breaker_state::disabled); }
  void metrics_only() noexcept { manual_transition(breaker_state::metrics_only); }
  void reset() noexcept { manual_transition(breaker_state::closed); }

 private:
  static constexpr std::uint64_t state_bits(breaker_state s) noexcept { return static_cast<std::uint64_t>(s); }

  static std::uint32_t stripe_count(std::uint32_t requested) noexcept {
    if (requested != 0 && requested <= 1024 && (requested & (requested - 1)) == 0) return requested;
    std::uint32_t hw = std::thread::hardware_concurrency();
    hw = std::clamp<std::uint32_t>(hw, 1, 64);
    std::uint32_t n = 1;
    while (n < hw) n <<= 1;
    return n;
  }

  static constexpr bool admits_every_call(breaker_state s) noexcept {
    return s == breaker_state::closed || s == breaker_state::disabled || s == breaker_state::metrics_only;
  }

  [[nodiscard]] bool has_window() const noexcept {
    return options_.count_window_size > 0 || options_.time_window > duration::zero();
  }

  detail::counter_stripe& my_stripe() noexcept { return stripes_[detail::thread_index() & stripe_mask_]; }

  // Records a call made under `ctx` (see execute(fn, ctx)).
  void record_in(const breaker_permit& permit, call_outcome outcome, const call_context& ctx,
                 time_point start) noexcept {
    const cancel_reason why = ctx.token.reason();
    if (STURDY_UNLIKELY(why == cancel_reason::cancelled) && outcome == call_outcome::failure) {
      outcome = call_outcome::ignored;
    }
    if (!timed_) {
      record(permit, outcome);
      return;
    }
    const duration took =
        STURDY_UNLIKELY(why == cancel_reason::deadline) ? duration::max() : detail::time_between(start, clock_.now());
    record(permit, outcome, took);
  }

  call_outcome classify(const failure_info& f) const noexcept {
    if (!options_.failure_classifier) return call_outcome::failure;
    try {
      return options_.failure_classifier(f);
    } catch (...) {
      return call_outcome::failure;  // a throwing classifier must not break the breaker
    }
  }

  void record_closed_success() noexcept {
    detail::counter_stripe& s = my_stripe();
    s.good.fetch_add(1, std::memory_order_relaxed);
    // Written only when non-zero: in a healthy system this line stays shared.
    if (STURDY_UNLIKELY(consecutive_.load(std::memory_order_relaxed) != 0)) {
      consecutive_.store(0, std::memory_order_relaxed);
    }
  }

  detail::counter_totals totals() const noexcept {
    detail::counter_totals t;
    for (std::uint32_t i = 0; i <= stripe_mask_; ++i) {
      const auto& s = stripes_[i];
      // The four counters cannot be read at one instant. If this thread is
      // descheduled between reading `good` and the failure counters, a fold
      // would pair the failures of that whole pause with none of its
      // successes and see a burst of failures that never happened. So read
      // `good` before and after the others and retry while it moved by more
      // than a few calls: the skew of a stripe's cut stays under 16 calls.
      std::uint64_t good = 0, failed = 0, slow_good = 0, slow_failed = 0;
      for (int attempt = 0;; ++attempt) {
        good = s.good.load(std::memory_order_acquire);
        failed = s.failed.load(std::memory_order_acquire);
        slow_good = s.slow_good.load(std::memory_order_acquire);
        slow_failed = s.slow_failed.load(std::memory_order_acquire);
        const std::uint64_t good_after = s.good.load(std::memory_order_acquire);
        if (good_after - good <= 16 || attempt == 8) break;
      }
      t.calls += good + failed + slow_good + slow_failed;
      t.failures += failed + slow_failed;
      t.slow += slow_good + slow_failed;
      t.rejections += s.rejections.load(std::memory_order_relaxed);
      t.ignored += s.ignored.load(std::memory_order_relaxed);
      t.stale += s.stale.load(std::memory_order_relaxed);
    }
    return t;
  }

  duration retry_after_at(std::uint64_t w, time_point now) const noexcept {
    switch (static_cast<breaker_state>(detail::word_state(w))) {
      case breaker_state::open: {
        const time_point until(duration(open_until_.load(std::memory_order_acquire)));
        return detail::time_between(now, until);
      }
      case breaker_state::forced_open:
        return duration::max();
      case breaker_state::half_open: {
        // (A flag, not a time_point::max() sentinel: a lease saturated at
        // the end of time expires at exactly that.)
        bool leased = false;
        time_point earliest = time_point::max();
        for (std::uint32_t i = 0; i < options_.half_open_probes; ++i) {
          const std::uint64_t v = slots_[i].load(std::memory_order_acquire);
          if (v == detail::slot_free) return duration::zero();
          if (detail::slot_leased(v)) {
            leased = true;
            earliest = std::min(earliest, detail::decode_expiry(v));
          }
        }
        if (!leased) return duration::zero();  // every slot reported: deciding now
        return detail::time_between(now, earliest);
      }
      default:
        return duration::zero();
    }
  }

  // Invalid options: every call is refused; the first refusal is announced
  // with the message naming the field.
  result<breaker_permit> refuse_invalid() noexcept {
    if (!options_rejected_.load(std::memory_order_relaxed) && !options_rejected_.exchange(true)) {
      emit(listener_, options_rejected{"circuit_breaker", options_.validation_message()});
    }
    return make_error_code(errc::invalid_options);
  }

  // What execute() returns when the call was refused: errc::invalid_options
  // carries the validation message where R's error type can hold one.
  template <class R>
  R rejected_result(std::error_code ec) const {
    if (ec == errc::invalid_options) return detail::make_failure_with_message<R>(ec, options_.validation_message());
    return make_failure<R>(ec);
  }

  result<breaker_permit> reject(breaker_state s, duration retry_after) noexcept {
    my_stripe().rejections.fetch_add(1, std::memory_order_relaxed);
    emit(listener_, breaker_call_rejected{s, retry_after});
    return make_error_code(errc::circuit_open);
  }

  result<breaker_permit> acquire_slow() noexcept {
    if (invalid_) return refuse_invalid();
    for (;;) {
      const std::uint64_t w = word_.load(std::memory_order_acquire);
      if (detail::word_locked(w)) {
        // A transition is being published (a few stores). A call is admitted
        // when the state being entered admits calls, with a permit of the
        // generation being published: its outcome counts in the new period
        // (or as stale in the rare case it is reported before publication
        // ends). Otherwise it is rejected as the new state would reject it.
        const auto to = static_cast<breaker_state>(detail::word_target(w));
        if (admits_every_call(to)) return breaker_permit(detail::word_after_transition(w));
        return reject(static_cast<breaker_state>(detail::word_state(w)), duration::zero());
      }
      const auto s = static_cast<breaker_state>(detail::word_state(w));
      switch (s) {
        case breaker_state::closed:
        case breaker_state::disabled:
        case breaker_state::metrics_only:
          return breaker_permit(w);
        case breaker_state::forced_open:
          return reject(s, duration::max());
        case breaker_state::open: {
          const time_point now = clock_.now();
          const time_point until(duration(open_until_.load(std::memory_order_acquire)));
          if (now < until) return reject(s, detail::time_between(now, until));
          transition(w, breaker_state::half_open, transition_reason::open_duration_elapsed, now);
          continue;  // whoever won, look again
        }
        case breaker_state::half_open: {
          const time_point now = clock_.now();
          bool retry = false;
          auto p = acquire_probe(w, now, retry);
          if (retry) continue;
          if (p) return p;
          return reject(s, retry_after_at(w, now));
        }
      }
      return make_error_code(errc::circuit_open);
    }
  }

  // Claims a free probe slot, or one whose lease expired. Sets `retry` when
  // the state changed under us (or this call changed it).
  result<breaker_permit> acquire_probe(std::uint64_t w, time_point now, bool& retry) noexcept {
    const std::uint64_t lease = detail::encode_expiry(detail::saturating_add(now, options_.probe_lease));
    std::uint32_t ok = 0;
    std::uint32_t failed = 0;
    for (std::uint32_t i = 0; i < options_.half_open_probes; ++i) {
      std::uint64_t v = slots_[i].load(std::memory_order_acquire);
      ok += v == detail::slot_succeeded ? 1 : 0;
      failed += v == detail::slot_failed ? 1 : 0;
      const bool expired = detail::slot_leased(v) && detail::decode_expiry(v) <= now;
      if (v != detail::slot_free && !expired) continue;
      if (!slots_[i].compare_exchange_strong(v, lease, std::memory_order_acq_rel)) continue;
      if (word_.load(std::memory_order_acquire) != w) {
        // The round ended while we claimed: give the slot back (our lease
        // value is unique, so this cannot free someone else's lease).
        std::uint64_t mine = lease;
        slots_[i].compare_exchange_strong(mine, detail::slot_free, std::memory_order_acq_rel);
        retry = true;
        return make_error_code(errc::circuit_open);
      }
      if (expired) emit(listener_, breaker_probe_lease_expired{detail::word_generation(w), i});
      return breaker_permit(w, i, lease);
    }
    // No slot to claim. The report that completed the round normally decided
    // it (record_probe); should the reports ever have missed each other, the
    // slots say what they decided and this call makes the transition, so a
    // round whose slots are all reported can never reject forever.
    const breaker_state verdict = probe_verdict(ok, failed);
    if (verdict != breaker_state::half_open) {
      transition(w, verdict, verdict_reason(verdict), now);
      retry = true;  // whoever won, look again
    }
    return make_error_code(errc::circuit_open);
  }

  // What the reported probes decide: closed once `probes_needed_` succeeded,
  // open once that can no longer happen, half_open while undecided.
  breaker_state probe_verdict(std::uint32_t ok, std::uint32_t failed) const noexcept {
    if (ok >= probes_needed_) return breaker_state::closed;
    if (failed > options_.half_open_probes - probes_needed_) return breaker_state::open;
    return breaker_state::half_open;
  }
  static transition_reason verdict_reason(breaker_state verdict) noexcept {
    return verdict == breaker_state::closed ? transition_reason::probes_succeeded : transition_reason::probes_failed;
  }

  void record_slow(const breaker_permit& p, call_outcome outcome, bool slow) noexcept {
    const std::uint64_t pw = p.word_;
    const auto ps = static_cast<breaker_state>(detail::word_state(pw));
    detail::counter_stripe& stripe = my_stripe();
    if (ps == breaker_state::half_open) {
      record_probe(p, outcome, slow, stripe);
      return;
    }
    if (word_.load(std::memory_order_acquire) != pw) {
      stripe.stale.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (outcome == call_outcome::ignored) {
      stripe.ignored.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const bool failed = outcome == call_outcome::failure;
    stripe.count(failed, slow);
    if (!failed) {
      if (consecutive_.load(std::memory_order_relaxed) != 0) consecutive_.store(0, std::memory_order_relaxed);
      if (!slow) return;
    }
    if (ps == breaker_state::disabled) return;
    std::uint32_t consecutive = 0;
    if (failed) consecutive = consecutive_.fetch_add(1, std::memory_order_relaxed) + 1;
    const time_point now = clock_.now();
    if (failed && consecutive_threshold_ != 0 && consecutive >= consecutive_threshold_) {
      if (has_window()) request_drain(now, false);  // keep the windows' view current
      trip(pw, transition_reason::consecutive_failures, now);
      return;
    }
    if (has_window()) {
      request_drain(now, true);  // evaluates the rate rules
    } else {
      rearm_suppressed(pw);  // no rule holds
    }
  }

  void trip(std::uint64_t w, transition_reason reason, time_point now) noexcept {
    if (detail::word_state(w) == state_bits(breaker_state::metrics_only)) {
      // Once per would-be opening: while a rule keeps holding, the breaker
      // would have stayed open, so further failures announce nothing.
      if (!trip_suppressed_.load(std::memory_order_relaxed) &&
          !trip_suppressed_.exchange(true, std::memory_order_relaxed)) {
        emit(listener_, breaker_trip_suppressed{reason});
      }
      return;
    }
    transition(w, breaker_state::open, reason, now);
  }

  // In metrics_only, an evaluation that found no rule holding re-arms
  // breaker_trip_suppressed for the next would-be opening.
  void rearm_suppressed(std::uint64_t w) const noexcept {
    if (detail::word_state(w) != state_bits(breaker_state::metrics_only)) return;
    if (consecutive_threshold_ != 0 && consecutive_.load(std::memory_order_relaxed) >= consecutive_threshold_) return;
    if (trip_suppressed_.load(std::memory_order_relaxed)) trip_suppressed_.store(false, std::memory_order_relaxed);
  }

  void record_probe(const breaker_permit& p, call_outcome outcome, bool slow,
                    detail::counter_stripe& stripe) noexcept {
    if (word_.load(std::memory_order_acquire) != p.word_ ||  // the round is over
        p.slot_ >= options_.half_open_probes) {              // (or another breaker's permit)
      stripe.stale.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    std::atomic<std::uint64_t>& slot = slots_[p.slot_];
    std::uint64_t expected = p.lease_;
    if (outcome == call_outcome::ignored) {
      if (slot.compare_exchange_strong(expected, detail::slot_free, std::memory_order_acq_rel)) {
        stripe.ignored.fetch_add(1, std::memory_order_relaxed);
      } else {
        stripe.stale.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
    const bool bad = outcome == call_outcome::failure || slow;
    // Write our slot, then read every slot. Two probes reporting at once are
    // the store-buffering pattern: with acq_rel/acquire, C++ (and POWER, or
    // AArch64 with LDAPR) lets each miss the other's write, so neither would
    // see the round complete. seq_cst on the write and the reads forbids that:
    // whichever write is later in the single total order sees the other.
    // (acquire_probe also decides a complete round, as a safety net.)
    if (!slot.compare_exchange_strong(expected, bad ? detail::slot_failed : detail::slot_succeeded,
                                      std::memory_order_seq_cst)) {
      stripe.stale.fetch_add(1, std::memory_order_relaxed);  // lease expired or round over
      return;
    }
    stripe.count(outcome == call_outcome::failure, slow);
    std::uint32_t ok = 0;
    std::uint32_t failed = 0;
    for (std::uint32_t i = 0; i < options_.half_open_probes; ++i) {
      const std::uint64_t v = slots_[i].load(std::memory_order_seq_cst);
      ok += v == detail::slot_succeeded ? 1 : 0;
      failed += v == detail::slot_failed ? 1 : 0;
    }
    const breaker_state verdict = probe_verdict(ok, failed);
    if (verdict != breaker_state::half_open) transition(p.word_, verdict, verdict_reason(verdict), clock_.now());
  }

  // open_duration * growth^openings, capped; never overflows (pow saturates
  // to infinity, which the cap absorbs).
  duration open_duration_for(std::uint32_t openings) const noexcept {
    if (openings == 0 || options_.open_duration_growth == 1.0) return options_.open_duration;
    const double d = static_cast<double>(options_.open_duration.count()) *
                     std::pow(options_.open_duration_growth, static_cast<double>(openings));
    if (!(d < static_cast<double>(options_.max_open_duration.count()))) return options_.max_open_duration;
    return duration(static_cast<duration::rep>(d));
  }

  // Moves from exactly `from` to `to`; false when another thread changed the
  // word first. The locked bit makes the writer of the transition data
  // unique; the final release store publishes it with the new generation.
  // Between the two, only a few stores happen (O(half_open_probes) when
  // entering half_open): the counter totals a new period starts from are
  // summed before taking the bit, and the listener is called after.
  bool transition(std::uint64_t from, breaker_state to, transition_reason reason, time_point now) noexcept {
    if (detail::word_locked(from) || word_.load(std::memory_order_relaxed) != from) return false;
    // Outcomes recorded between this sum and the lock below belong to the
    // old period but are counted in the new one (see docs, "Outcomes racing
    // a transition"); that is the price of not summing up to 1024 stripes
    // while calls wait.
    const detail::counter_totals t = admits_every_call(to) ? totals() : detail::counter_totals{};
    std::uint64_t expected = from;
    const std::uint64_t locked = detail::make_locked_word(from, state_bits(to));
    if (!word_.compare_exchange_strong(expected, locked, std::memory_order_acq_rel)) return false;
    const auto from_state = static_cast<breaker_state>(detail::word_state(from));
    const std::uint64_t generation = detail::word_generation(from) + 1;
    state_since_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    // Every period starts with no consecutive failures and an armed
    // breaker_trip_suppressed (a failure recorded after this store with an
    // old permit may still bump the counter: metrics() hides it outside
    // closed and metrics_only, and the generation check drops the record).
    consecutive_.store(0, std::memory_order_relaxed);
    trip_suppressed_.store(false, std::memory_order_relaxed);
    switch (to) {
      case breaker_state::open: {
        std::uint32_t openings = consecutive_openings_.load(std::memory_order_relaxed);
        openings = from_state == breaker_state::half_open ? openings + 1 : 0;
        consecutive_openings_.store(openings, std::memory_order_relaxed);
        open_until_.store(detail::saturating_add(now, open_duration_for(openings)).time_since_epoch().count(),
                          std::memory_order_relaxed);
        break;
      }
      case breaker_state::half_open:
        for (std::uint32_t i = 0; i < options_.half_open_probes; ++i) {
          slots_[i].store(detail::slot_free, std::memory_order_relaxed);
        }
        break;
      case breaker_state::closed:
      case breaker_state::disabled:
      case breaker_state::metrics_only: {
        consecutive_openings_.store(0, std::memory_order_relaxed);
        baseline_[0].store(t.calls, std::memory_order_relaxed);
        baseline_[1].store(t.failures, std::memory_order_relaxed);
        baseline_[2].store(t.slow, std::memory_order_relaxed);
        baseline_time_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
        break;
      }
      case breaker_state::forced_open:
        consecutive_openings_.store(0, std::memory_order_relaxed);
        break;
    }
    word_.store(detail::word_after_transition(locked), std::memory_order_release);
    emit(listener_, breaker_state_changed{from_state, to, reason, generation, now});
    return true;
  }

  // A manual change must happen, so when another thread is publishing a
  // transition (holding the locked bit for a few stores) this waits for it,
  // yielding; it is the only place that waits for another thread.
  void manual_transition(breaker_state to) noexcept {
    if (invalid_) return;
    const time_point now = clock_.now();
    for (;;) {
      const std::uint64_t w = word_.load(std::memory_order_acquire);
      if (detail::word_locked(w)) {
        std::this_thread::yield();
        continue;
      }
      if (transition(w, to, transition_reason::manual, now)) return;
    }
  }

  // --- window maintenance ----------------------------------------------------
  // Failures and slow calls (and metrics()) fold the counters into the windows.
  // Only one thread at a time does it; a thread that finds it busy leaves a
  // request that the busy thread picks up before it leaves, so no request is
  // lost and nobody waits.
  void request_drain(time_point now, bool evaluate) const noexcept {
    drain_requests_.fetch_add(evaluate ? (std::uint64_t{1} << 32) : 1, std::memory_order_seq_cst);
    for (;;) {
      if (drain_busy_.exchange(true, std::memory_order_seq_cst)) return;
      for (;;) {
        const std::uint64_t r = drain_requests_.exchange(0, std::memory_order_seq_cst);
        if (r == 0) break;
        drain_once(now, (r >> 32) != 0);
      }
      drain_busy_.store(false, std::memory_order_seq_cst);
      if (drain_requests_.load(std::memory_order_seq_cst) == 0) return;
    }
  }

  void drain_once(time_point now, bool evaluate) const noexcept {
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    if (detail::word_locked(w)) return;
    const auto s = static_cast<breaker_state>(detail::word_state(w));
    if (s != breaker_state::closed && s != breaker_state::metrics_only && s != breaker_state::disabled) return;
    if (detail::word_generation(w) != window_generation_ || !window_valid_) {
      const std::uint64_t c = baseline_[0].load(std::memory_order_relaxed);
      const std::uint64_t f = baseline_[1].load(std::memory_order_relaxed);
      const std::uint64_t sl = baseline_[2].load(std::memory_order_relaxed);
      const std::int64_t t = baseline_time_.load(std::memory_order_relaxed);
      if (word_.load(std::memory_order_acquire) != w) return;  // changed while reading
      seen_ = {c, f, sl};
      seen_time_ = time_point(duration(t));
      count_window_.reset();
      time_window_.reset();
      window_generation_ = detail::word_generation(w);
      window_valid_ = true;
    }
    if (now < seen_time_) now = seen_time_;
    const detail::counter_totals t = totals();
    const std::uint64_t calls = t.calls > seen_.calls ? t.calls - seen_.calls : 0;
    const std::uint64_t failures = std::min(t.failures > seen_.failures ? t.failures - seen_.failures : 0, calls);
    const std::uint64_t slow = std::min(t.slow > seen_.slow ? t.slow - seen_.slow : 0, calls);
    seen_ = {std::max(t.calls, seen_.calls), std::max(t.failures, seen_.failures), std::max(t.slow, seen_.slow)};
    count_window_.add(calls, failures, slow);
    time_window_.add(calls, failures, slow, seen_time_, now);
    seen_time_ = now;
    const detail::window_counts cw = count_window_.counts();
    const detail::window_counts tw = time_window_.counts(now);
    published_[0].store(cw.calls, std::memory_order_relaxed);
    published_[1].store(cw.failures, std::memory_order_relaxed);
    published_[2].store(cw.slow, std::memory_order_relaxed);
    published_[3].store(tw.calls, std::memory_order_relaxed);
    published_[4].store(tw.failures, std::memory_order_relaxed);
    published_[5].store(tw.slow, std::memory_order_relaxed);
    if (!evaluate || s == breaker_state::disabled) return;
    transition_reason reason{};
    // Evaluation is only ever requested by record(), a non-const member, so
    // the breaker is not a const object and the cast is sound.
    if (rule_fires(cw, reason) || rule_fires(tw, reason)) {
      const_cast<circuit_breaker*>(this)->trip(w, reason, now);
    } else {
      rearm_suppressed(w);
    }
  }

  bool rule_fires(const detail::window_counts& c, transition_reason& reason) const noexcept {
    if (c.calls < options_.minimum_calls) return false;
    if (options_.failure_rate_threshold > 0.0 &&
        detail::rate_reached(c.failures, c.calls, options_.failure_rate_threshold)) {
      reason = transition_reason::failure_rate;
      return true;
    }
    if (timed_ && detail::rate_reached(c.slow, c.calls, options_.slow_call_rate_threshold)) {
      reason = transition_reason::slow_call_rate;
      return true;
    }
    return false;
  }

  // Read on every call (never written after construction, except word_ on
  // transitions): one shared, read-mostly cache line.
  alignas(cache_line_size) std::atomic<std::uint64_t> word_{0};
  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
  const circuit_breaker_options options_;
  const bool invalid_;
  const bool timed_;
  const std::uint32_t consecutive_threshold_;
  const std::uint32_t stripe_mask_;
  std::uint32_t probes_needed_ = 1;
  const std::unique_ptr<detail::counter_stripe[]> stripes_;
  const std::unique_ptr<std::atomic<std::uint64_t>[]> slots_;

  // Written on failures only; read (not written) by successes while zero.
  alignas(cache_line_size) std::atomic<std::uint32_t> consecutive_{0};

  // Written on transitions.
  alignas(cache_line_size) std::atomic<std::int64_t> open_until_{0};
  std::atomic<std::int64_t> state_since_{0};
  std::atomic<std::uint32_t> consecutive_openings_{0};
  std::atomic<std::uint64_t> baseline_[3] = {};  // totals when the period began
  std::atomic<std::int64_t> baseline_time_{0};
  mutable std::atomic<bool> trip_suppressed_{false};  // metrics_only: announced, rule still holding
  std::atomic<bool> options_rejected_{false};         // options_rejected emitted

  // The windows: touched only by the thread holding drain_busy_.
  // (mutable: metrics() brings them up to date; they cache the counters.)
  alignas(cache_line_size) mutable std::atomic<std::uint64_t> drain_requests_{0};
  mutable std::atomic<bool> drain_busy_{false};
  mutable std::atomic<std::uint64_t> published_[6] = {};
  mutable std::uint64_t window_generation_ = 0;
  mutable bool window_valid_ = false;
  mutable detail::window_counts seen_;
  mutable time_point seen_time_{};
  mutable detail::count_window count_window_;
  mutable detail::time_window time_window_;
};

// sturdy::make_circuit_breaker(options, clock, listener)
//
// The start-up check for code that wants to fail early: a breaker on the
// heap (it is pinned, so it cannot be returned by value), or
// errc::invalid_options without building one; then
// `options.validation_message()` names the field. May throw std::bad_alloc,
// as the constructor may.
//
//   auto made = sturdy::make_circuit_breaker(read_options());
//   if (!made) die(options.validation_message());
//   std::unique_ptr<sturdy::circuit_breaker<>> breaker = std::move(made).value();
template <clock_source Clock = steady_clock_source, class Listener = null_listener>
[[nodiscard]] result<std::unique_ptr<circuit_breaker<Clock, Listener>>> make_circuit_breaker(
    circuit_breaker_options options, Clock clock = Clock(), Listener listener = Listener()) {
  if (auto valid = options.validate(); !valid) return valid.error();
  return std::make_unique<circuit_breaker<Clock, Listener>>(std::move(options), std::move(clock),
                                                            std::move(listener));
}

}  // namespace sturdy

#endif  // STURDY_CIRCUIT_BREAKER_HPP_
