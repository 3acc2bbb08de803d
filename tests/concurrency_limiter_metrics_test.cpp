// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
//
// concurrency_limiter_metrics counts every reported permit, whatever the
// algorithm: `completed` (success or dropped), `ignored` (reported ignored
// or destroyed unreported), next to `samples` (fed to the algorithm: 0 for
// fixed_limit, which reads none).
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/testing/counting_allocator.hpp"

namespace {

template <class Limiter>
void report_each_way(Limiter& l) {
  for (int i = 0; i < 3; ++i) l.try_acquire().value().record_success();
  l.try_acquire().value().record_dropped();
  l.try_acquire().value().record_ignored();
  { auto unreported = l.try_acquire(); }  // destroyed unreported: ignored
}

TEST(ConcurrencyLimiterMetricsTest, FixedLimitCountsEveryReportedPermit) {
  sturdy::concurrency_limiter<> l;
  report_each_way(l);
  const auto m = l.metrics();
  EXPECT_EQ(m.completed, 4u) << "3 successes + 1 dropped";
  EXPECT_EQ(m.ignored, 2u);
  EXPECT_EQ(m.dropped, 1u);
  EXPECT_EQ(m.samples, 0u) << "fixed_limit reads no samples";
}

TEST(ConcurrencyLimiterMetricsTest, AdaptiveLimitCountsTheSameAndItsSamples) {
  sturdy::concurrency_limiter<sturdy::aimd_limit> l;
  report_each_way(l);
  const auto m = l.metrics();
  EXPECT_EQ(m.completed, 4u);
  EXPECT_EQ(m.ignored, 2u);
  EXPECT_EQ(m.dropped, 1u);
  EXPECT_EQ(m.samples, 4u);
}

TEST(ConcurrencyLimiterMetricsTest, ExecuteCountsCompletedCalls) {
  sturdy::concurrency_limiter<> l;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(l.execute([] { return sturdy::result<int>(1); }));
  EXPECT_EQ(l.metrics().completed, 5u);
}

TEST(ConcurrencyLimiterMetricsTest, CountingAllocatesNothing) {
  sturdy::concurrency_limiter<> l;
  l.try_acquire().value().record_success();  // this thread's index is claimed
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 100; ++i) l.try_acquire().value().record_success();
  EXPECT_EQ(scope.allocations(), 0U);
  EXPECT_EQ(l.metrics().completed, 101u);
}

// More threads than stripes: threads beyond them share one counter; no
// report is lost.
TEST(ConcurrencyLimiterMetricsTest, CountsFromManyThreadsAddUp) {
  sturdy::concurrency_limiter<> l({}, sturdy::fixed_limit({.limit = 1u << 20}));
  constexpr int threads = 40;
  constexpr int per_thread = 2'000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto p = l.try_acquire();
        if (t % 2 == 0) {
          p.value().record_success();
        } else {
          p.value().record_ignored();
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  const auto m = l.metrics();
  EXPECT_EQ(m.completed, std::uint64_t{threads / 2} * per_thread);
  EXPECT_EQ(m.ignored, std::uint64_t{threads / 2} * per_thread);
}

}  // namespace
