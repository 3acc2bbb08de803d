// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
//
// sturdy_concurrency_limiter_completed_total counts the permits reported
// success or dropped, for every algorithm (it stayed 0 for fixed_limit);
// ignored_total the permits reported ignored or destroyed unreported.
#include <gtest/gtest.h>

#ifdef STURDY_NO_PROMETHEUS
TEST(PrometheusLimiterMetricsTest, NeedsPrometheusCpp) { GTEST_SKIP() << "prometheus-cpp not found at configure time"; }
#else

#include <string>

#include "sturdy/prometheus/exporter.hpp"

namespace {

double value(const std::vector<::prometheus::MetricFamily>& families, const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name && !f.metric.empty()) return f.metric.front().counter.value;
  }
  ADD_FAILURE() << "no family " << name;
  return -1;
}

template <class Limiter>
void completed_and_ignored_are_exported() {
  Limiter lim;
  for (int i = 0; i < 3; ++i) lim.try_acquire().value().record_success();
  lim.try_acquire().value().record_dropped();
  lim.try_acquire().value().record_ignored();
  sturdy::prometheus::exporter metrics;
  auto registration = metrics.add(lim, {.name = "db"});
  const auto f = metrics.collect();
  EXPECT_EQ(value(f, "sturdy_concurrency_limiter_completed_total"), 4.0);
  EXPECT_EQ(value(f, "sturdy_concurrency_limiter_dropped_total"), 1.0);
  EXPECT_EQ(value(f, "sturdy_concurrency_limiter_ignored_total"), 1.0);
}

TEST(PrometheusLimiterMetricsTest, CompletedTotalCountsFixedLimitPermits) {
  completed_and_ignored_are_exported<sturdy::concurrency_limiter<>>();
}

TEST(PrometheusLimiterMetricsTest, CompletedTotalCountsAdaptiveLimitPermits) {
  completed_and_ignored_are_exported<sturdy::concurrency_limiter<sturdy::aimd_limit>>();
}

}  // namespace

#endif
