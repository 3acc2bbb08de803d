// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
//
// sturdy::registry holding concurrency limiters: a permit never outlives its
// limiter (erase refuses an entry with permits out; a release that emits
// limiter_limit_changed returns its slot only after its last access, so an
// eviction cannot delete the limiter under it). Run under ASan: before the
// fixes, both cases were heap-use-after-free. No sleeping: the release is
// held inside its listener by a promise.

#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/registry.hpp"
#include "sturdy/testing/manual_clock.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::testing::manual_clock;

TEST(RegistryLimiterTest, EraseKeepsAnEntryWithAPermitOut) {
  sturdy::registry<sturdy::concurrency_limiter<>> reg;
  auto permit = reg.get("tenant-a").value()->try_acquire();  // the handle is a temporary
  ASSERT_TRUE(permit);
  EXPECT_FALSE(reg.erase("tenant-a")) << "deleting the limiter would leave the permit dangling";
  ASSERT_TRUE(reg.find("tenant-a"));
  EXPECT_EQ(reg.find("tenant-a")->in_flight(), 1u);
  permit.value().record_success();  // ASan: the limiter is alive
  EXPECT_EQ(reg.find("tenant-a")->in_flight(), 0u);
  EXPECT_TRUE(reg.erase("tenant-a")) << "nothing outstanding: erased";
  EXPECT_FALSE(reg.find("tenant-a"));
}

// A handle held could still take a permit that would outlive an erased
// entry: a limiter is erased only when nobody holds it.
TEST(RegistryLimiterTest, EraseKeepsALimiterSomeoneHolds) {
  sturdy::registry<sturdy::concurrency_limiter<>> reg;
  {
    auto h = reg.get("tenant-a").value();
    EXPECT_FALSE(reg.erase("tenant-a"));
    auto p = h->try_acquire();  // would dangle once h goes, had erase deleted the entry
    ASSERT_TRUE(p);
    h = {};
    p.value().record_success();
  }
  EXPECT_TRUE(reg.erase("tenant-a"));
}

// Holds the release inside its limiter_limit_changed listener until the test
// lets it go.
struct gate {
  std::promise<void> entered;
  std::promise<void> leave;
};
gate* current_gate = nullptr;

struct blocking_listener {
  int seen = 0;
  void operator()(const sturdy::limiter_limit_changed&) noexcept {
    current_gate->entered.set_value();
    current_gate->leave.get_future().wait();
    ++seen;  // touches the limiter (this listener lives in it)
  }
};
using blocking_limiter = sturdy::concurrency_limiter<sturdy::aimd_limit, sturdy::steady_clock_source, blocking_listener>;

TEST(RegistryLimiterTest, EvictionWaitsForAReleaseInProgress) {
  gate g;
  current_gate = &g;
  // idle_timeout 0: once released, the (busy: its limit moved) entry may go.
  sturdy::registry<blocking_limiter> reg({.max_entries = 1, .idle_timeout = 0ns});
  std::vector<blocking_limiter::permit> ps;
  {
    auto h = reg.get("a").value();
    for (int i = 0; i < 10; ++i) ps.push_back(std::move(h->try_acquire()).value());
  }  // only the permits are kept
  for (int i = 0; i < 9; ++i) ps[i].record_ignored();
  // The last permit was admitted with 10 in flight: its success raises the
  // AIMD limit 20 -> 21, and the release emits limiter_limit_changed.
  std::thread t([&] { ps[9].record_success(); });
  g.entered.get_future().wait();  // the release is inside the listener
  auto b = reg.get("b");
  EXPECT_FALSE(b) << "\"a\" was evicted while its permit's release was still running";
  EXPECT_EQ(reg.stats().evictions, 0u);
  g.leave.set_value();
  t.join();
  current_gate = nullptr;
  EXPECT_TRUE(reg.get("b")) << "released: \"a\" may go now";
  EXPECT_EQ(reg.stats().evictions, 1u);
}

}  // namespace

namespace {

TEST(RegistryLimiterTest, PerKeyLimitAndAlgorithmOptions) {
  sturdy::registry<sturdy::concurrency_limiter<>> bulkheads({.options_for = [](std::string_view key) {
    return sturdy::concurrency_limiter_entry_options<sturdy::fixed_limit>{
        .limiter = {.max_queue = 5}, .algorithm = sturdy::fixed_limit({.limit = key == "big" ? 100u : 2u})};
  }});
  EXPECT_EQ(bulkheads.get("big").value()->limit(), 100u);
  EXPECT_EQ(bulkheads.get("small").value()->limit(), 2u);
  EXPECT_EQ(bulkheads.get("small").value()->options().max_queue, 5u);
}

TEST(RegistryLimiterTest, TheRegistrysClockIsPassedToTheLimiter) {
  using limiter = sturdy::concurrency_limiter<sturdy::aimd_limit, manual_clock>;
  manual_clock clock;
  sturdy::registry<limiter, manual_clock> reg(
      {.options_for =
           [](std::string_view) {
             return sturdy::concurrency_limiter_entry_options<sturdy::aimd_limit>{
                 .algorithm = sturdy::aimd_limit({.initial_limit = 20, .min_limit = 1})};
           }},
      clock);
  auto h = reg.get("a").value();
  auto p = h->try_acquire();
  ASSERT_TRUE(p);
  clock.advance(6s);  // slower than aimd's timeout (5 s): a drop, on the registry's clock
  p.value().record_success();
  EXPECT_EQ(h->limit(), 18u) << "the limiter read its own clock, not the registry's";
}

TEST(RegistryLimiterTest, AnAdaptiveLimiterWhoseLimitMovedIsBusyAndKeptUntilIdle) {
  manual_clock clock;
  using limiter = sturdy::concurrency_limiter<sturdy::aimd_limit, manual_clock>;
  sturdy::registry<limiter, manual_clock> reg({.max_entries = 1, .idle_timeout = 1min}, clock);
  std::uint32_t learned = 0;
  {
    auto h = reg.get("a").value();
    EXPECT_EQ(sturdy::quiescence_of(*h, clock.now()), sturdy::quiescence::quiescent) << "fresh";
    std::vector<limiter::permit> ps;
    for (int i = 0; i < 12; ++i) ps.push_back(h->try_acquire().value());
    EXPECT_EQ(sturdy::quiescence_of(*h, clock.now()), sturdy::quiescence::pinned) << "permits out";
    for (auto& p : ps) p.record_success();
    learned = h->limit();
    ASSERT_NE(learned, h->initial_limit());
    EXPECT_EQ(sturdy::quiescence_of(*h, clock.now()), sturdy::quiescence::busy);
  }
  EXPECT_FALSE(reg.get("b")) << "evicting \"a\" would lose its learned limit";
  EXPECT_EQ(reg.find("a")->limit(), learned);
  clock.advance(2min);
  (void)reg.get("b");  // the sweep stamps "a"'s last use (its CLOCK bit was set by find)
  clock.advance(2min);
  EXPECT_TRUE(reg.get("b")) << "idle longer than idle_timeout: evictable";
}

}  // namespace
