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
