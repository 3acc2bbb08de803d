// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/clock.hpp
// -----------------------------------------------------------------------------
//
// The time seams. Every sturdy primitive reads time through a `clock_source`
// and waits through a `sleeper`, both template parameters, so tests replace
// them with `sturdy::testing::manual_clock` and
// `sturdy::testing::recording_sleeper` and never sleep for real.
//
// All clocks share one time type, `sturdy::time_point` (a
// `std::chrono::steady_clock::time_point`), so options, events and snapshots
// mean the same thing whatever clock produced them.
//
// Example:
//
//   template <sturdy::clock_source Clock = sturdy::steady_clock_source>
//   class my_limiter {
//     STURDY_NO_UNIQUE_ADDRESS Clock clock_;   // zero bytes by default
//     ...  clock_.now() ...
//   };
//
//   sturdy::thread_sleeper sleeper;
//   std::stop_source stop;
//   bool slept = sleeper.sleep_for(std::chrono::seconds(5), stop.get_token());
//   // false as soon as another thread calls stop.request_stop().
//
// Thread safety: `steady_clock_source` and `thread_sleeper` are stateless and
// safe to use from any number of threads.

#ifndef STURDY_CLOCK_HPP_
#define STURDY_CLOCK_HPP_

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <thread>

#include "sturdy/config.hpp"

namespace sturdy {

// The time types every sturdy primitive uses.
using duration = std::chrono::nanoseconds;
using time_point = std::chrono::steady_clock::time_point;

// clock_source<C>
//
// A monotonic clock: `c.now()` returns a `sturdy::time_point`. Named so as
// not to collide with `std::clock`.
template <class C>
concept clock_source = requires(C& c) {
  { c.now() } -> std::same_as<time_point>;
};

// steady_clock_source: the default; an empty object reading
// `std::chrono::steady_clock` (about 20 ns per read on typical servers).
struct steady_clock_source {
  [[nodiscard]] time_point now() const noexcept { return std::chrono::steady_clock::now(); }
};

// sleeper<S>
//
// Waits for a duration unless `stop` is requested first. Returns true when
// the whole duration elapsed, false when it was cut short by `stop`.
template <class S>
concept sleeper = requires(S& s, duration d, std::stop_token stop) {
  { s.sleep_for(d, stop) } -> std::same_as<bool>;
};

// thread_sleeper: the default sleeper. Blocks the calling thread; a stop
// request from another thread wakes it at once.
struct thread_sleeper {
  bool sleep_for(duration d, std::stop_token stop) const {
    if (stop.stop_requested()) return false;
    if (d <= duration::zero()) return true;
    if (!stop.stop_possible()) {
      std::this_thread::sleep_for(d);
      return true;
    }
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    // wait_for with a stop token returns the predicate's value: false means
    // the time elapsed, true can only mean a stop request (the predicate
    // itself is constant false).
    const bool stopped = cv.wait_for(lock, stop, d, [] { return false; });
    return !stopped && !stop.stop_requested();
  }
};

static_assert(clock_source<steady_clock_source>);
static_assert(sleeper<thread_sleeper>);

}  // namespace sturdy

#endif  // STURDY_CLOCK_HPP_
