// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/testing/manual_clock.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::testing::manual_clock` is a `clock_source` whose time moves only
// when a test says so. It is a copyable handle: every copy shares one time,
// so the test keeps a copy and advances the time the primitive sees.
//
// Example:
//
//   sturdy::testing::manual_clock clock;            // starts at time_point{}
//   sturdy::circuit_breaker<sturdy::testing::manual_clock> b(opts, clock);
//   ...
//   clock.advance(std::chrono::seconds(30));        // the breaker sees it
//
// Thread safety: `now()`, `advance()` and `set()` may be called from any
// number of threads at once (the time is one atomic). `advance` is
// monotonic; `set` refuses to move time backwards and returns false.

#ifndef STURDY_TESTING_MANUAL_CLOCK_HPP_
#define STURDY_TESTING_MANUAL_CLOCK_HPP_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "sturdy/clock.hpp"

namespace sturdy::testing {

class manual_clock {
 public:
  // Starts at `start` (default: the epoch of `sturdy::time_point`).
  explicit manual_clock(time_point start = time_point{})
      : ns_(std::make_shared<std::atomic<std::int64_t>>(start.time_since_epoch().count())) {}

  [[nodiscard]] time_point now() const noexcept {
    return time_point(duration(ns_->load(std::memory_order_acquire)));
  }

  // Moves time forward by `d`; a negative `d` is ignored (time never runs
  // backwards). Returns the new time.
  time_point advance(duration d) const noexcept {
    if (d < duration::zero()) return now();
    return time_point(duration(ns_->fetch_add(d.count(), std::memory_order_acq_rel) + d.count()));
  }

  // Sets the time to `t` if that is not earlier than now; returns whether it
  // did.
  bool set(time_point t) const noexcept {
    std::int64_t cur = ns_->load(std::memory_order_acquire);
    const std::int64_t want = t.time_since_epoch().count();
    while (cur <= want) {
      if (ns_->compare_exchange_weak(cur, want, std::memory_order_acq_rel)) return true;
    }
    return false;
  }

  // Copies share the same time; this tells whether two handles do.
  [[nodiscard]] bool shares_time_with(const manual_clock& other) const noexcept {
    return ns_ == other.ns_;
  }

 private:
  std::shared_ptr<std::atomic<std::int64_t>> ns_;
};

static_assert(clock_source<manual_clock>);

}  // namespace sturdy::testing

#endif  // STURDY_TESTING_MANUAL_CLOCK_HPP_
