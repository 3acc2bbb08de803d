// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/chaos.hpp
// -----------------------------------------------------------------------------
//
// Fault injection ("chaos") layers: put one inside a pipeline and it makes a
// share of the calls fail the way a real dependency would — an error, an
// exception, extra latency, or a replaced outcome — so a drill or a test can
// check that the retry, the breaker and the fallback above it do their job.
//
//   compose(retry, breaker, chaos).execute(fn)
//     chaos off (the default)       --> fn()                      (one relaxed load)
//     on, not selected for this call --> fn()
//     on, selected                   --> the fault: error | throw | sleep, then fn() | replacement
//
// Which calls are selected is deterministic: call number k (counted from 1
// over the calls that reached the layer while it was enabled) is selected
// when `when` accepts it, it falls inside the schedule (if one is given), and
// a counter-based generator seeded with `seed` draws below the rate for k.
// The draw for call k depends only on (seed, k), never on which thread made
// the call or in which order threads ran: a drill replays exactly.
//
// Example:
//
//   #include "sturdy/chaos.hpp"
//   #include "sturdy/pipeline.hpp"
//
//   sturdy::chaos_switch game_day;  // off until someone turns it on
//   sturdy::chaos_policy fail_some({.enabled = game_day,
//                                   .injection_rate = 0.2,
//                                   .seed = 42},
//                                  sturdy::chaos_error{sturdy::errc::store_unavailable});
//   game_day.enable();
//   sturdy::result<int> r = fail_some.execute([] { return sturdy::result<int>(7); });
//
// Scripted schedules, for reproducible drills ("fail calls 40-60", "add 2 s
// for 30 s from t = 10 s"):
//
//   sturdy::chaos_policy slow({.enabled = sturdy::chaos_switch(true),
//                              .schedule = {sturdy::chaos_window::between(
//                                  std::chrono::seconds(10), std::chrono::seconds(30))}},
//                             sturdy::chaos_latency{std::chrono::seconds(2)});
//
// Kinds of fault (the second constructor argument):
//   chaos_error{ec}          returns `ec` inside the callable's result type;
//   chaos_exception{make}    throws the exception `make()` returns (a
//                            `std::exception_ptr`); `chaos_throw(e)` builds one;
//   chaos_latency{d}         sleeps `d` through the sleeper (honouring the stop
//                            token: a stop during the sleep returns
//                            errc::cancelled without calling fn), then calls fn;
//   chaos_outcome{make}      returns `make()` instead of calling fn.
//
// Defaults (chaos_options): disabled (`enabled` is a switch that starts
// off), injection_rate 0.001 (Polly's), no predicate, no schedule, seed 0,
// schedule time measured from the policy's construction. Invalid options
// (a rate outside [0, 1] or NaN, a window with last < first, a negative
// length or latency, an empty error code) make the layer inject nothing: it
// calls fn and emits `options_rejected` once, when enabled. Chaos never
// breaks calls on its own account; check `validate()` /
// `validation_message()` at start-up to catch a misconfigured drill.
//
// Compiled out: define STURDY_NO_CHAOS (CMake option of the same name) and
// every chaos layer calls fn directly; the types stay, so code compiles
// unchanged.
//
// Events: `chaos_injected{kind, call}` for every injected fault, so metrics
// and logs can tell an injected failure from a real one.
//
// Thread safety: a chaos_policy is a copyable value; copies share one call
// counter and one switch. `execute` is safe from many threads at once.
// Testing: use `sturdy::testing::manual_clock` for the schedule's time and a
// `sturdy::testing::recording_sleeper` for latency: nothing sleeps.

#ifndef STURDY_CHAOS_HPP_
#define STURDY_CHAOS_HPP_

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <stop_token>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "sturdy/callback.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy {

// chaos_switch
//
// A copyable handle to one shared on/off flag; copies share it. Starts off
// unless built with `true`. Reading it is one relaxed atomic load.
class chaos_switch {
 public:
  explicit chaos_switch(bool on = false) : on_(std::make_shared<std::atomic<bool>>(on)) {}
  void enable() const noexcept { on_->store(true, std::memory_order_relaxed); }
  void disable() const noexcept { on_->store(false, std::memory_order_relaxed); }
  void set(bool on) const noexcept { on_->store(on, std::memory_order_relaxed); }
  [[nodiscard]] bool enabled() const noexcept { return on_->load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<std::atomic<bool>> on_;
};

// chaos_window
//
// One entry of a scripted schedule: either a range of call numbers
// [first_call, last_call] (1-based, inclusive) or a span of time
// [from, from + length) measured from the schedule's start. Inside it, a
// call is selected at `rate` (default 1: every call).
struct chaos_window {
  enum class kind : std::uint8_t { calls, time };
  kind by = kind::calls;
  std::uint64_t first_call = 1;
  std::uint64_t last_call = std::numeric_limits<std::uint64_t>::max();
  duration from = duration::zero();
  duration length = duration::max();
  double rate = 1.0;

  // "fail calls 40-60": calls(40, 60).
  [[nodiscard]] static chaos_window calls(std::uint64_t first, std::uint64_t last, double rate = 1.0) noexcept {
    return {.by = kind::calls, .first_call = first, .last_call = last, .rate = rate};
  }
  // "add 2 s for 30 s from t = 10 s": between(10s, 30s).
  [[nodiscard]] static chaos_window between(duration from, duration length, double rate = 1.0) noexcept {
    return {.by = kind::time, .from = from, .length = length, .rate = rate};
  }

  [[nodiscard]] bool contains(std::uint64_t call, duration since_start) const noexcept {
    if (by == kind::calls) return call >= first_call && call <= last_call;
    if (since_start < from) return false;
    return since_start - from < length;  // no overflow: since_start >= from >= 0
  }
};

// The call a predicate is asked about.
struct chaos_call {
  std::uint64_t number;  // 1-based, over the calls made while enabled
  duration since_start;  // time since the schedule's start
};

// chaos_options
//
// Aggregate; fill with designated initializers. See the banner for defaults.
struct chaos_options {
  // The switch; copies share it. Default: a fresh switch, off.
  chaos_switch enabled{};
  // Share of eligible calls selected, in [0, 1], when there is no schedule.
  // Default 0.001. With a schedule, each window's own rate applies instead.
  double injection_rate = 0.001;
  // Only calls it accepts are eligible. Default (empty): every call.
  callback<bool(const chaos_call&)> when{};
  // When non-empty, only calls inside a window are eligible. Default empty.
  std::vector<chaos_window> schedule{};
  // Seed of the counter-based generator. Default 0.
  std::uint64_t seed = 0;
  // The schedule's t = 0. Default (time_point::min()): the construction time
  // of the policy, read from its clock.
  time_point start = time_point::min();

  // Empty when valid, otherwise a sentence naming the offending field.
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (!(injection_rate >= 0.0 && injection_rate <= 1.0)) {
      return "chaos_options.injection_rate must be in [0, 1]";
    }
    for (const chaos_window& w : schedule) {
      if (!(w.rate >= 0.0 && w.rate <= 1.0)) return "chaos_options.schedule[].rate must be in [0, 1]";
      if (w.by == chaos_window::kind::calls && (w.first_call < 1 || w.last_call < w.first_call)) {
        return "chaos_options.schedule[].first_call must be >= 1 and <= last_call";
      }
      if (w.by == chaos_window::kind::time && (w.from < duration::zero() || w.length < duration::zero())) {
        return "chaos_options.schedule[].from and length must be >= 0";
      }
    }
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    if (validation_message().empty()) return success();
    return make_error_code(errc::invalid_options);
  }
};

// The faults.
enum class chaos_kind : std::uint8_t { error, exception, latency, outcome };

struct chaos_error {
  std::error_code code;
};

struct chaos_exception {
  callback<std::exception_ptr()> make;
};

// chaos_throw(e): a chaos_exception throwing a copy of `e` each time.
template <class E>
[[nodiscard]] chaos_exception chaos_throw(E e) {
  return {.make = [e = std::move(e)]() { return std::make_exception_ptr(e); }};
}

struct chaos_latency {
  duration delay;
};

template <class Make>
struct chaos_outcome {
  Make make;
};
template <class Make>
chaos_outcome(Make) -> chaos_outcome<Make>;

// Emitted for every injected fault.
struct chaos_injected {
  chaos_kind kind;
  std::uint64_t call;
};

namespace detail {

// splitmix64: a counter-based generator; the draw for call k is a pure
// function of (seed, k).
[[nodiscard]] constexpr std::uint64_t chaos_mix(std::uint64_t seed, std::uint64_t k) noexcept {
  std::uint64_t z = seed + k * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// A uniform draw in [0, 1) with 53 bits.
[[nodiscard]] constexpr double chaos_unit(std::uint64_t seed, std::uint64_t k) noexcept {
  return static_cast<double>(chaos_mix(seed, k) >> 11) * 0x1.0p-53;
}

template <class Fault>
inline constexpr chaos_kind chaos_kind_of = chaos_kind::outcome;
template <>
inline constexpr chaos_kind chaos_kind_of<chaos_error> = chaos_kind::error;
template <>
inline constexpr chaos_kind chaos_kind_of<chaos_exception> = chaos_kind::exception;
template <>
inline constexpr chaos_kind chaos_kind_of<chaos_latency> = chaos_kind::latency;

}  // namespace detail

// chaos_decide(options, call, since_start)
//
// The decision core, without I/O: whether call number `call` (1-based) at
// `since_start` is selected. Assumes valid options.
[[nodiscard]] inline bool chaos_decide(const chaos_options& o, std::uint64_t call, duration since_start) {
  double rate = o.injection_rate;
  if (!o.schedule.empty()) {
    rate = -1.0;
    for (const chaos_window& w : o.schedule) {
      if (w.contains(call, since_start)) {
        rate = w.rate;
        break;
      }
    }
    if (rate < 0.0) return false;
  }
  if (rate <= 0.0) return false;
  if (o.when && !o.when(chaos_call{.number = call, .since_start = since_start})) return false;
  return rate >= 1.0 || detail::chaos_unit(o.seed, call) < rate;
}

// chaos_policy<Fault, Clock, Sleeper, Listener>
//
// A layer injecting `Fault`; see the banner. Copyable; copies share state.
template <class Fault, clock_source Clock = steady_clock_source, sleeper Sleeper = thread_sleeper,
          class Listener = null_listener>
class chaos_policy {
 public:
  explicit chaos_policy(chaos_options options, Fault fault, Clock clock = Clock(), Sleeper sleeper = Sleeper(),
                        Listener listener = Listener())
      : state_(std::make_shared<state>(std::move(options), std::move(fault))),
        clock_(std::move(clock)),
        sleeper_(std::move(sleeper)),
        listener_(std::move(listener)) {
    if (state_->options.start == time_point::min()) state_->options.start = clock_.now();
    state_->message = state_->options.validation_message();
    if constexpr (std::is_same_v<Fault, chaos_latency>) {
      if (state_->message.empty() && state_->fault.delay < duration::zero()) {
        state_->message = "chaos_latency.delay must be >= 0";
      }
    } else if constexpr (std::is_same_v<Fault, chaos_error>) {
      if (state_->message.empty() && !state_->fault.code) {
        state_->message = "chaos_error.code must be an error (not an empty std::error_code)";
      }
    }
  }

  // chaos_policy::execute()
  //
  // Calls `fn` unless this call is selected for the fault. Never throws on
  // its own account (an injected exception is the fault, thrown on purpose).
  template <class F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn) {
    return execute(std::forward<F>(fn), std::stop_token{});
  }
  template <class F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn, std::stop_token stop) {
#ifndef STURDY_NO_CHAOS
    using R = execute_result_t<F>;
    state& s = *state_;
    if (STURDY_LIKELY(!s.options.enabled.enabled())) return invoke_wrapped(std::forward<F>(fn));
    if (STURDY_UNLIKELY(!s.message.empty())) {
      // A misconfigured drill injects nothing: chaos must never break calls
      // on its own account (a typo in a rate must not fail every call the
      // moment the game day starts).
      if (!s.reported.exchange(true, std::memory_order_relaxed)) {
        emit(listener_, options_rejected{.primitive = "chaos_policy", .message = s.message});
      }
      return invoke_wrapped(std::forward<F>(fn));
    }
    const std::uint64_t call = s.calls.fetch_add(1, std::memory_order_relaxed) + 1;
    const duration since = detail::time_between(s.options.start, clock_.now());
    if (!chaos_decide(s.options, call, since)) return invoke_wrapped(std::forward<F>(fn));
    s.injected.fetch_add(1, std::memory_order_relaxed);
    emit(listener_, chaos_injected{.kind = detail::chaos_kind_of<Fault>, .call = call});
    if constexpr (std::is_same_v<Fault, chaos_error>) {
      return outcome_traits<R>::from_error(s.fault.code);
    } else if constexpr (std::is_same_v<Fault, chaos_exception>) {
      std::exception_ptr e = s.fault.make ? s.fault.make() : std::exception_ptr{};
      if (!e) e = std::make_exception_ptr(std::system_error(make_error_code(errc::invalid_options)));
      std::rethrow_exception(std::move(e));
    } else if constexpr (std::is_same_v<Fault, chaos_latency>) {
      if (!sleeper_.sleep_for(s.fault.delay, stop)) return outcome_traits<R>::from_error(make_error_code(errc::cancelled));
      return invoke_wrapped(std::forward<F>(fn));
    } else {
      static_assert(std::is_convertible_v<decltype(s.fault.make()), R>,
                    "A chaos_outcome's make() must return the callable's result type.");
      return s.fault.make();
    }
#else
    (void)stop;
    return invoke_wrapped(std::forward<F>(fn));
#endif
  }

  // Calls that reached the layer while enabled, and faults injected.
  [[nodiscard]] std::uint64_t calls() const noexcept { return state_->calls.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t injected() const noexcept { return state_->injected.load(std::memory_order_relaxed); }
  [[nodiscard]] const chaos_options& options() const noexcept { return state_->options; }
  // Empty when the options are valid.
  [[nodiscard]] std::string_view validation_message() const noexcept { return state_->message; }

 private:
  struct state {
    state(chaos_options o, Fault f) : options(std::move(o)), fault(std::move(f)) {}
    chaos_options options;
    Fault fault;
    std::string_view message;
    std::atomic<std::uint64_t> calls{0};
    std::atomic<std::uint64_t> injected{0};
    std::atomic<bool> reported{false};
  };

  std::shared_ptr<state> state_;
  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS Sleeper sleeper_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
};

template <class Fault>
chaos_policy(chaos_options, Fault) -> chaos_policy<Fault>;
template <class Fault, clock_source Clock>
chaos_policy(chaos_options, Fault, Clock) -> chaos_policy<Fault, Clock>;
template <class Fault, clock_source Clock, sleeper Sleeper>
chaos_policy(chaos_options, Fault, Clock, Sleeper) -> chaos_policy<Fault, Clock, Sleeper>;
template <class Fault, clock_source Clock, sleeper Sleeper, class Listener>
chaos_policy(chaos_options, Fault, Clock, Sleeper, Listener) -> chaos_policy<Fault, Clock, Sleeper, Listener>;

}  // namespace sturdy

#endif  // STURDY_CHAOS_HPP_
