// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
//
// Concurrency limiters in a registry under churn: workers take permits
// through temporary handles and release them (adaptive limits move, events
// fire) while other threads create new keys (evicting idle limiters) and
// erase keys. A permit never outlives its limiter (ASan/TSan: no
// use-after-free, no race), and at the end nothing is left in flight.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/registry.hpp"
#include "support/stress.hpp"

namespace {

using limiter = sturdy::concurrency_limiter<sturdy::aimd_limit>;

TEST(RegistryLimiterStressTest, PermitsNeverOutliveTheirLimiterUnderEvictionAndErase) {
  sturdy::registry<limiter> reg({.max_entries = 4, .idle_timeout = sturdy::duration::zero(), .shards = 1});
  const std::uint64_t iterations = sturdy::test::stress_iterations(200'000);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> permits{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&, t] {
      const std::string key = "hot-" + std::to_string(t % 2);
      for (std::uint64_t i = 0; i < iterations; ++i) {
        auto h = reg.get(key);
        if (!h) continue;
        auto p = h.value()->try_acquire();
        h.value() = {};  // the permit outlives the handle
        if (!p) continue;
        permits.fetch_add(1, std::memory_order_relaxed);
        if (i % 7 == 0) {
          p.value().record_dropped();
        } else {
          p.value().record_success();
        }
      }
    });
  }
  std::thread churn([&] {
    for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      (void)reg.get("cold-" + std::to_string(i % 64));  // evicts idle entries, hot ones included
      if (i % 5 == 0) (void)reg.erase("hot-" + std::to_string(i % 2));
    }
  });
  for (auto& w : workers) w.join();
  stop.store(true);
  churn.join();
  EXPECT_GT(permits.load(), iterations) << "the workers got permits";
  EXPECT_GT(reg.stats().evictions, 0u) << "the churn evicted entries";
  reg.visit([](std::string_view key, const limiter& l) {
    EXPECT_EQ(l.in_flight(), 0u) << key;
    EXPECT_EQ(l.queued(), 0u) << key;
  });
}

}  // namespace
