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
#include <algorithm>
#include <concepts>
#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <thread>

#include <time.h>  // clock_gettime(CLOCK_MONOTONIC_COARSE)

#include "sturdy/config.hpp"

namespace sturdy {

// The time types every sturdy primitive uses.
using duration = std::chrono::nanoseconds;
using time_point = std::chrono::steady_clock::time_point;

namespace detail {

// Time arithmetic that never overflows (a huge TTL or delay means "never",
// not a wrap-around into the past).

// a + b for non-negative durations, saturating at duration::max().
[[nodiscard]] constexpr duration saturating_add(duration a, duration b) noexcept {
  return a > duration::max() - b ? duration::max() : a + b;
}

// t + d for a non-negative d, saturating at time_point::max().
[[nodiscard]] constexpr time_point saturating_add(time_point t, duration d) noexcept {
  if (d > duration::zero() && t > time_point::max() - d) return time_point::max();
  return t + d;
}

// to - from, or zero when `to` is not later, or duration::max() when the
// difference does not fit (clocks with negative epochs).
[[nodiscard]] constexpr duration time_between(time_point from, time_point to) noexcept {
  const duration::rep f = from.time_since_epoch().count();
  const duration::rep t = to.time_since_epoch().count();
  if (t <= f) return duration::zero();
  if (f < 0 && t > duration::max().count() + f) return duration::max();
  return duration(t - f);
}

}  // namespace detail

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
// request from another thread wakes it at once. Allocates nothing (a
// std::condition_variable woken by a std::stop_callback, both on the
// stack). Any duration works, up to duration::max(): long sleeps are taken
// in chunks of a year so that `now + d` never overflows.
struct thread_sleeper {
  bool sleep_for(duration d, std::stop_token stop) const {
    constexpr duration chunk = std::chrono::hours(24 * 365);
    if (stop.stop_requested()) return false;
    if (!stop.stop_possible()) {
      for (; d > duration::zero(); d -= std::min(d, chunk)) std::this_thread::sleep_for(std::min(d, chunk));
      return true;
    }
    std::mutex m;
    std::condition_variable cv;
    bool stopped = false;
    // Declared after m, cv and stopped so it is destroyed first: its
    // destructor waits for a callback running on another thread.
    std::stop_callback wake(stop, [&] {
      {
        std::lock_guard lock(m);
        stopped = true;
      }
      cv.notify_all();
    });
    std::unique_lock lock(m);
    for (; d > duration::zero() && !stopped; d -= std::min(d, chunk)) {
      const auto until = std::chrono::steady_clock::now() + std::min(d, chunk);
      while (!stopped && cv.wait_until(lock, until) == std::cv_status::no_timeout) {
      }
    }
    return !stopped;
  }
};

static_assert(clock_source<steady_clock_source>);
static_assert(sleeper<thread_sleeper>);

// ----------------------------------------------------------------------------
// A cheap clock
// ----------------------------------------------------------------------------

// coarse_steady_clock_source
//
// A monotonic clock that trades resolution for speed: on Linux it reads
// `CLOCK_MONOTONIC_COARSE` through the vDSO (a few ns, no syscall), the
// kernel's time at the last scheduler tick, so it lags the precise clock by
// less than one tick: `resolution()` says how much (typically 1-4 ms,
// CONFIG_HZ). It shares the epoch of `std::chrono::steady_clock` (both are
// CLOCK_MONOTONIC), so its `sturdy::time_point`s compare with the steady
// clock's, and a coarse reading is never later than a precise reading taken
// after it. Elsewhere it falls back to `std::chrono::steady_clock`.
//
// Use it where a tick of error does not matter and the read is on a hot
// path: the breaker's open-state check (`circuit_breaker<coarse_steady_clock_source>`),
// timer facilities with a tick of at least `resolution()`. Do not mix its
// readings with another clock's for one deadline: see sturdy/context.hpp.
//
// Thread safety: stateless.
struct coarse_steady_clock_source {
  [[nodiscard]] time_point now() const noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
    ::timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
#else
    return std::chrono::steady_clock::now();
#endif
  }
  // The granularity of `now()` (how far it may lag the precise clock).
  [[nodiscard]] static duration resolution() noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
    ::timespec ts{};
    if (::clock_getres(CLOCK_MONOTONIC_COARSE, &ts) != 0) return std::chrono::milliseconds(10);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
#else
    return duration(1);
#endif
  }
};

static_assert(clock_source<coarse_steady_clock_source>);

}  // namespace sturdy

#endif  // STURDY_CLOCK_HPP_
