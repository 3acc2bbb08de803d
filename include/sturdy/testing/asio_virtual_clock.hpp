// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/testing/asio_virtual_clock.hpp
// -----------------------------------------------------------------------------
//
// Virtual time for Asio timers, so asynchronous timelines (limiter waits,
// hedge launches) are asserted exactly and no test sleeps.
//
//   asio_virtual_clock     a chrono clock whose static now() only moves when
//                          a test calls advance() (Asio clocks are static)
//   asio_virtual_timer     basic_waitable_timer over it, with wait traits
//                          that make the reactor re-check timers at once
//   asio_virtual_clock_source
//                          the same time as a sturdy `clock_source`, for the
//                          limiters the timers wait for
//   run_for(io, d, step)   advances time by `d` in steps of `step`, running
//                          every ready handler after each step
//
// Example:
//
//   sturdy::testing::asio_virtual_clock::reset();
//   boost::asio::io_context io;
//   sturdy::testing::asio_virtual_timer t(io, std::chrono::milliseconds(5));
//   bool fired = false;
//   t.async_wait([&](boost::system::error_code) { fired = true; });
//   sturdy::testing::run_for(io, std::chrono::milliseconds(4));  // not yet
//   sturdy::testing::run_for(io, std::chrono::milliseconds(1));  // fired
//
// A handler sees now() as the end of the step that made its timer ready, so
// timelines are exact to `step` (default 1 ms): use delays that are
// multiples of it.
//
// Do not call io_context::run() while virtual timers are pending: with time
// standing still it would spin. Drive with run_for / poll.
//
// Thread safety: now(), advance() and reset() are atomic; the clock is one
// process-wide time (tests that use it run one at a time, as GoogleTest
// does).

#ifndef STURDY_TESTING_ASIO_VIRTUAL_CLOCK_HPP_
#define STURDY_TESTING_ASIO_VIRTUAL_CLOCK_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/io_context.hpp>

#include "sturdy/clock.hpp"

namespace sturdy::testing {

struct asio_virtual_clock {
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<asio_virtual_clock>;
  static constexpr bool is_steady = true;

  [[nodiscard]] static time_point now() noexcept { return time_point(duration(ns().load(std::memory_order_acquire))); }
  // Moves time forward (a negative `d` is ignored).
  static void advance(duration d) noexcept {
    if (d > duration::zero()) ns().fetch_add(d.count(), std::memory_order_acq_rel);
  }
  // Back to time zero (call at the start of each test).
  static void reset() noexcept { ns().store(0, std::memory_order_release); }

 private:
  static std::atomic<std::int64_t>& ns() noexcept {
    static std::atomic<std::int64_t> value{0};
    return value;
  }
};

// Every wait is "due now" as far as the reactor is concerned: it re-checks
// the timer queue (against asio_virtual_clock::now()) on each poll.
struct asio_virtual_wait_traits {
  static asio_virtual_clock::duration to_wait_duration(const asio_virtual_clock::duration&) noexcept {
    return asio_virtual_clock::duration::zero();
  }
  static asio_virtual_clock::duration to_wait_duration(const asio_virtual_clock::time_point&) noexcept {
    return asio_virtual_clock::duration::zero();
  }
};

using asio_virtual_timer = boost::asio::basic_waitable_timer<asio_virtual_clock, asio_virtual_wait_traits>;

// The virtual time as a sturdy clock_source (same count of nanoseconds).
struct asio_virtual_clock_source {
  [[nodiscard]] time_point now() const noexcept {
    return time_point(asio_virtual_clock::now().time_since_epoch());
  }
};
static_assert(clock_source<asio_virtual_clock_source>);

// Runs every handler that is ready now, without advancing time. Returns how
// many ran.
inline std::size_t poll_all(boost::asio::io_context& io) {
  std::size_t total = 0;
  // The reactor picks up due timers on its next pass: poll until two passes
  // in a row run nothing.
  for (int idle = 0; idle < 2;) {
    io.restart();
    const std::size_t n = io.poll();
    total += n;
    idle = n == 0 ? idle + 1 : 0;
  }
  return total;
}

// Advances virtual time by `d` in steps of `step`, running the ready
// handlers before the first step and after each one. Returns how many ran.
inline std::size_t run_for(boost::asio::io_context& io, asio_virtual_clock::duration d,
                           asio_virtual_clock::duration step = std::chrono::milliseconds(1)) {
  std::size_t total = poll_all(io);
  if (step <= asio_virtual_clock::duration::zero()) step = d;
  while (d > asio_virtual_clock::duration::zero()) {
    const auto s = d < step ? d : step;
    asio_virtual_clock::advance(s);
    d -= s;
    total += poll_all(io);
  }
  return total;
}

}  // namespace sturdy::testing

#endif  // STURDY_TESTING_ASIO_VIRTUAL_CLOCK_HPP_
