// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
//
// concurrency_limiter::acquire(max_wait) / deadline times out on every
// library clock: the steady clock and the coarse one (same epoch: a timed
// wait on the steady clock), and any other clock (sturdy::clock_ref, wall
// clocks: bounded real-time slices re-reading clock.now()). The manual test
// clock is driven by recheck_waiters() (concurrency_limiter_test.cpp).
//
// Real time: each waiter's time runs out after 1 ns or 1 ms, so the tests
// take a few ms; a watchdog of 5 s turns a waiter that never times out (the
// defect) into a failure instead of a hang. Labelled slow.

#include <chrono>
#include <future>
#include <string>

#include <gtest/gtest.h>

#include "sturdy/clock.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/context.hpp"

namespace {

using namespace std::chrono_literals;

// Acquires with `wait` (and `deadline`) on a limiter whose one permit is
// held; returns the error the waiter got, or "hung" when it was still
// blocked after 5 s (then the held permit is released so the thread ends).
template <class Clock>
std::string wait_on_full_limiter(sturdy::duration wait, sturdy::time_point deadline = sturdy::time_point::max()) {
  sturdy::concurrency_limiter<sturdy::fixed_limit, Clock> lim({.max_queue = 1}, sturdy::fixed_limit({.limit = 1}));
  auto held = lim.try_acquire();
  EXPECT_TRUE(held);
  auto fut = std::async(std::launch::async, [&] {
    auto r = lim.acquire(wait, {}, deadline);
    return r ? std::string("granted") : r.error().message();
  });
  if (fut.wait_for(5s) == std::future_status::timeout) {
    held.value().record_ignored();
    (void)fut.get();
    return "hung";
  }
  return fut.get();
}

const std::string limit_exceeded = make_error_code(sturdy::errc::limit_exceeded).message();
const std::string deadline_exceeded = make_error_code(sturdy::errc::deadline_exceeded).message();

TEST(ConcurrencyLimiterClockTest, SteadyClockMaxWaitRunsOut) {
  EXPECT_EQ(wait_on_full_limiter<sturdy::steady_clock_source>(1ns), limit_exceeded);
  EXPECT_EQ(wait_on_full_limiter<sturdy::steady_clock_source>(1ms), limit_exceeded);
}

// The coarse clock lags the steady one by up to a tick: a 1 ns max_wait is
// usually still ahead of it when the waiter first checks, so the waiter must
// wait (timed) until the coarse clock has passed it.
TEST(ConcurrencyLimiterClockTest, CoarseClockMaxWaitRunsOut) {
  EXPECT_EQ(wait_on_full_limiter<sturdy::coarse_steady_clock_source>(1ns), limit_exceeded);
  EXPECT_EQ(wait_on_full_limiter<sturdy::coarse_steady_clock_source>(1ms), limit_exceeded);
}

TEST(ConcurrencyLimiterClockTest, CoarseClockDeadlineRunsOut) {
  const sturdy::time_point deadline = sturdy::coarse_steady_clock_source{}.now() + 1ms;
  EXPECT_EQ(wait_on_full_limiter<sturdy::coarse_steady_clock_source>(1h, deadline), deadline_exceeded);
}

// clock_ref is a clock of no known epoch: the waiter re-reads it in slices.
TEST(ConcurrencyLimiterClockTest, OtherClockMaxWaitRunsOut) {
  EXPECT_EQ(wait_on_full_limiter<sturdy::clock_ref>(1ns), limit_exceeded);
  EXPECT_EQ(wait_on_full_limiter<sturdy::clock_ref>(1ms), limit_exceeded);
}

TEST(ConcurrencyLimiterClockTest, OtherClockDeadlineRunsOut) {
  const sturdy::time_point deadline = sturdy::clock_ref().now() + 1ms;
  EXPECT_EQ(wait_on_full_limiter<sturdy::clock_ref>(1h, deadline), deadline_exceeded);
}

// A waiter on any clock is still handed a released permit at once.
TEST(ConcurrencyLimiterClockTest, WaiterIsHandedAReleasedPermit) {
  sturdy::concurrency_limiter<sturdy::fixed_limit, sturdy::coarse_steady_clock_source> lim(
      {.max_queue = 1}, sturdy::fixed_limit({.limit = 1}));
  auto held = lim.try_acquire();
  ASSERT_TRUE(held);
  auto fut = std::async(std::launch::async, [&] { return static_cast<bool>(lim.acquire(1h)); });
  while (lim.queued() == 0) std::this_thread::yield();
  held.value().record_success();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(fut.get());
}

}  // namespace
