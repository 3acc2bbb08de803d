// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/testing/manual_timer.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::testing::manual_timer` is a `timer_service` without a thread,
// driven by a `manual_clock` at 1 ns resolution: `advance(d)` moves the clock
// and fires, on the calling thread, every timer whose deadline is now
// reached — exactly at its deadline, never a tick later. So a test of a
// timeout is deterministic: the callee calls `advance()` to "take" time, and
// the token fires inside that call.
//
// Example:
//
//   sturdy::testing::manual_timer timers;
//   sturdy::timeout_policy<> limit({.timeout = 100ms}, timers.service());
//   auto r = limit.execute([&](const sturdy::call_context& ctx) {
//     timers.advance(100ms);                 // the token fires in here
//     return ctx.stop_requested() ? 0 : 1;
//   });
//
// Pinned (the service is). Thread safety: as `timer_service`; `advance` may
// be called from any thread.

#ifndef STURDY_TESTING_MANUAL_TIMER_HPP_
#define STURDY_TESTING_MANUAL_TIMER_HPP_

#include <cstddef>
#include <cstdint>

#include "sturdy/clock.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/timer.hpp"

namespace sturdy::testing {

class manual_timer {
 public:
  // `shards` as in timer_service_options (0 = automatic).
  explicit manual_timer(manual_clock clock = manual_clock(), std::uint32_t shards = 0)
      : clock_(clock),
        service_(timer_service_options{.resolution = duration(1), .shards = shards, .slots = 1024,
                                       .start_thread = false},
                 clock) {}

  // Moves the clock forward by `d` and fires what is due; returns how many.
  std::size_t advance(duration d) {
    clock_.advance(d);
    return service_.poll();
  }
  // Fires what is due at the clock's current time (after the test moved the
  // clock through another handle).
  std::size_t poll() { return service_.poll(); }

  [[nodiscard]] timer_service& service() noexcept { return service_; }
  [[nodiscard]] const manual_clock& clock() const noexcept { return clock_; }
  [[nodiscard]] time_point now() const noexcept { return clock_.now(); }

 private:
  manual_clock clock_;
  timer_service service_;
};

}  // namespace sturdy::testing

#endif  // STURDY_TESTING_MANUAL_TIMER_HPP_
