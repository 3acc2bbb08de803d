// Smoke and determinism tests of the "limiter" simulation scenario.
#include "limiter.hpp"

#include <gtest/gtest.h>

#include "limiter_configs.hpp"

namespace {

using namespace sturdy::sim;

limiter_params short_run() {
  limiter_params p;
  p.step = 2 * ns_per_s;
  return p;
}

TEST(LimiterSimTest, SameSeedSameNumbers) {
  const limiter_params p = short_run();
  const limiter_config c{"vegas", sturdy::vegas_limit_options{}};
  const limiter_run a = run_limiter(p, c);
  const limiter_run b = run_limiter(p, c);
  ASSERT_EQ(a.steps.size(), b.steps.size());
  EXPECT_EQ(a.arrivals, b.arrivals);
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_EQ(a.steps[i].goodput, b.steps[i].goodput);
    EXPECT_EQ(a.steps[i].p99_ms, b.steps[i].p99_ms);
  }
}

TEST(LimiterSimTest, UnloadedP99IsTheServiceTimeTail) {
  const double p99 = unloaded_p99_ms(short_run());
  EXPECT_GT(p99, 11.0);  // U[8, 12] ms: p99 = 11.96 ms
  EXPECT_LT(p99, 12.1);
}

TEST(LimiterSimTest, NoLimitCollapsesAtThreeTimesCapacityAndAFixedLimitDoesNot) {
  const limiter_params p = short_run();
  const limiter_run none = run_limiter(p, {"no_limit", no_limit{}});
  const limiter_run right = run_limiter(p, {"fixed_right", sturdy::fixed_limit_options{.limit = 30}});
  const std::size_t peak = 4;  // the 3x step
  ASSERT_EQ(none.steps[peak].demand, 3.0);
  EXPECT_LT(none.steps[peak].goodput, 0.2);   // every call queues past its timeout
  EXPECT_GT(right.steps[peak].goodput, 0.95);  // the service stays busy with useful work
  EXPECT_LT(right.steps[peak].p99_ms, 2 * unloaded_p99_ms(p));
}

}  // namespace

namespace {

// The claims of docs/concurrency_limiter.md, "Fleet simulation": with the
// documented parameters these configurations meet issue 15's criterion at
// every step of the full ramp (seed 1), and Netflix's Gradient2 drifts.
TEST(LimiterSimTest, DocumentedConfigurationsMeetTheCriterion) {
  const limiter_params p;
  const double unloaded = unloaded_p99_ms(p);
  for (const limiter_config& c : limiter_configs(unloaded)) {
    const bool claimed = c.name == "fixed_right" || c.name == "aimd" || c.name == "vegas" ||
                         c.name == "vegas_tuned" || c.name == "gradient2" || c.name == "envoy_tuned";
    const limiter_run r = run_limiter(p, c);
    bool all = true;
    for (const step_result& s : r.steps) all = all && meets_criterion(s, unloaded);
    EXPECT_EQ(all, claimed) << c.name;
  }
}

// The tuned Envoy controller meets the criterion at every step for other
// seeds too (the docs claim seeds 1-10; 30 of 30 were checked by hand), so
// its parameters are not fitted to seed 1's noise.
TEST(LimiterSimTest, TunedEnvoyMeetsTheCriterionAcrossSeeds) {
  limiter_params p;
  const double unloaded = unloaded_p99_ms(p);
  for (const limiter_config& c : limiter_configs(unloaded)) {
    if (c.name != "envoy_tuned") continue;
    for (std::uint64_t seed = 1; seed <= 10; ++seed) {
      p.seed = seed;
      const limiter_run r = run_limiter(p, c);
      for (std::size_t i = 0; i < r.steps.size(); ++i) {
        EXPECT_TRUE(meets_criterion(r.steps[i], unloaded)) << "seed " << seed << " step " << i;
      }
    }
  }
}

TEST(LimiterSimTest, NetflixGradient2DriftsAndTheFixDoesNot) {
  const limiter_params p;
  const double unloaded = unloaded_p99_ms(p);
  for (const limiter_config& c : limiter_configs(unloaded)) {
    if (c.name != "gradient2" && c.name != "gradient2_netflix") continue;
    const limiter_run r = run_limiter(p, c);
    // The same demand (2x) before and after the 3x peak: Netflix's limit
    // (and latency) ratchets up; the fixed one returns to where it was.
    const double before = r.steps[3].mean_limit;
    const double after = r.steps[5].mean_limit;
    if (c.name == "gradient2_netflix") {
      EXPECT_GT(after, before * 1.3) << c.name;
      EXPECT_GT(r.steps[5].p50_ms, 2 * r.steps[3].p50_ms * 0.7);
    } else {
      EXPECT_NEAR(after, before, before * 0.1) << c.name;
    }
  }
}

}  // namespace
