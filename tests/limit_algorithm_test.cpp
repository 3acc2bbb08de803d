// The limit algorithms, fed sample sequences whose limits were derived by
// hand from the formulas in sturdy/limit_algorithms.hpp (each step's
// arithmetic is in the comment beside it). No limiter, clock or thread.
#include "sturdy/limit_algorithms.hpp"

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/counting_allocator.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::duration;
using sturdy::limit_sample;
using sturdy::time_point;

limit_sample ok(duration rtt, std::uint32_t in_flight, time_point now = {}) {
  return {.rtt = rtt, .in_flight = in_flight, .dropped = false, .now = now};
}
limit_sample drop(std::uint32_t in_flight, time_point now = {}) {
  return {.rtt = 1ms, .in_flight = in_flight, .dropped = true, .now = now};
}

TEST(LimitAlgorithmTest, FixedNeverChanges) {
  sturdy::fixed_limit f({.limit = 7});
  EXPECT_EQ(f.limit(), 7u);
  EXPECT_EQ(f.update(drop(7)), 7u);
  EXPECT_EQ(f.update(ok(1h, 7)), 7u);
  EXPECT_EQ(sturdy::fixed_limit().limit(), 25u);  // resilience4j's default
}

TEST(LimitAlgorithmTest, AimdExactSequence) {
  sturdy::aimd_limit a({.initial_limit = 20, .min_limit = 5, .max_limit = 25, .backoff_ratio = 0.9, .timeout = 5s});
  EXPECT_EQ(a.update(ok(1ms, 10)), 21u);  // 10*2 >= 20: +1
  EXPECT_EQ(a.update(ok(1ms, 5)), 21u);   // 5*2 < 21: app-limited, hold
  EXPECT_EQ(a.update(drop(21)), 18u);     // floor(21*0.9 = 18.9)
  EXPECT_EQ(a.update(ok(6s, 18)), 16u);   // rtt > timeout counts as a drop: floor(16.2)
  EXPECT_EQ(a.update(ok(1ms, 8)), 17u);   // 8*2 >= 16: +1
  for (std::uint32_t want = 18; want <= 25; ++want) EXPECT_EQ(a.update(ok(1ms, 20)), want);
  EXPECT_EQ(a.update(ok(1ms, 25)), 25u);  // clamped at max_limit
  // Drops: 22.5 19.8 17.1 15.3 13.5 11.7 9.9 8.1 7.2 6.3 5.4, then 4.5 -> min 5.
  for (std::uint32_t want : {22u, 19u, 17u, 15u, 13u, 11u, 9u, 8u, 7u, 6u, 5u, 5u}) {
    EXPECT_EQ(a.update(drop(25)), want);
  }
}

TEST(LimitAlgorithmTest, AimdTimeoutAtExtremes) {
  sturdy::aimd_limit never({.initial_limit = 20, .min_limit = 1, .max_limit = 100, .timeout = duration::max()});
  EXPECT_EQ(never.update(ok(duration::max(), 20)), 21u);  // nothing is slower than max()
  sturdy::aimd_limit tiny({.initial_limit = 20, .min_limit = 1, .max_limit = 100, .timeout = 1ns});
  EXPECT_EQ(tiny.update(ok(2ns, 20)), 18u);  // 2ns > 1ns: drop
  EXPECT_EQ(tiny.update(ok(1ns, 20)), 19u);  // not slower than the timeout
}

TEST(LimitAlgorithmTest, VegasExactSequence) {
  // probe_multiplier high enough that no probe happens in this sequence.
  sturdy::vegas_limit v({.initial_limit = 20, .probe_multiplier = 1000});
  EXPECT_EQ(v.update(ok(10ms, 20)), 20u);  // first sample: rtt_noload = 10 ms
  EXPECT_EQ(v.no_load_rtt(), duration(10ms));
  EXPECT_EQ(v.update(ok(10ms, 20)), 26u);  // f=1, queue = ceil(20*(1-1)) = 0 <= 1: +beta (6)
  EXPECT_EQ(v.update(ok(10ms, 5)), 26u);   // 5*2 < 26: app-limited
  EXPECT_EQ(v.update(ok(20ms, 26)), 25u);  // queue = ceil(26*0.5) = 13 > beta 6: -f
  EXPECT_EQ(v.update(ok(11ms, 25)), 25u);  // queue = ceil(25*(1-10/11)) = ceil(2.27) = 3: alpha <= 3 <= beta, hold
  EXPECT_EQ(v.update(ok(10500us, 25)), 26u);  // queue = ceil(25*(1-10/10.5)) = ceil(1.19) = 2 < alpha 3: +f
  EXPECT_EQ(v.update(drop(26)), 25u);      // drop: -f
  EXPECT_EQ(v.update(ok(8ms, 25)), 25u);   // faster than rtt_noload: new rtt_noload, hold
  EXPECT_EQ(v.no_load_rtt(), duration(8ms));

  sturdy::vegas_limit big({.initial_limit = 100, .probe_multiplier = 1000});
  EXPECT_EQ(big.update(ok(10ms, 100)), 100u);
  EXPECT_EQ(big.update(ok(10ms, 100)), 112u);  // f = floor(log10 100) = 2: +6f
  EXPECT_EQ(big.update(drop(112)), 110u);      // -f
}

TEST(LimitAlgorithmTest, VegasSmoothingAndClamp) {
  sturdy::vegas_limit v({.initial_limit = 20, .max_limit = 23, .smoothing = 0.5, .probe_multiplier = 1000});
  EXPECT_EQ(v.update(ok(10ms, 20)), 20u);
  EXPECT_EQ(v.update(ok(10ms, 20)), 21u);  // candidate 26 clamped to 23; 0.5*20 + 0.5*23 = 21.5
}

TEST(LimitAlgorithmTest, VegasReprobesTheNoLoadRtt) {
  // With probe_multiplier 1 a probe is due after U(0.5,1) * L <= 20 samples:
  // the sample then becomes the new no-load RTT even though it is slower.
  sturdy::vegas_limit v({.initial_limit = 20, .probe_multiplier = 1});
  (void)v.update(ok(10ms, 1));
  int n = 0;
  while (v.no_load_rtt() != duration(30ms) && n < 100) {
    (void)v.update(ok(30ms, 1));  // app-limited: the limit holds
    ++n;
  }
  EXPECT_EQ(v.no_load_rtt(), duration(30ms));
  EXPECT_GE(n, 9);
  EXPECT_LE(n, 20);
  EXPECT_EQ(v.limit(), 20u);
}

TEST(LimitAlgorithmTest, Gradient2ExactSequence) {
  sturdy::gradient2_limit g({.initial_limit = 20, .min_limit = 1, .max_limit = 200});
  EXPECT_EQ(g.update(ok(10ms, 20)), 20u);  // long = 10; g = 1; 0.8*20 + 0.2*(20+4) = 20.8
  EXPECT_DOUBLE_EQ(g.estimate(), 20.8);
  EXPECT_EQ(g.update(ok(10ms, 20)), 21u);  // 0.8*20.8 + 0.2*24.8 = 21.6
  EXPECT_DOUBLE_EQ(g.estimate(), 21.6);
  // A slow sample at full concurrency: the fix keeps it out of `long` (10),
  // g = clamp(1.5*10/30) = 0.5 < 1, so no queue term:
  // 0.8*21.6 + 0.2*10.8 = 19.44.
  EXPECT_EQ(g.update(ok(30ms, 21)), 19u);
  EXPECT_DOUBLE_EQ(g.estimate(), 19.44);
  EXPECT_DOUBLE_EQ(g.long_rtt_ns(), 10e6);
  EXPECT_EQ(g.update(ok(10ms, 5)), 19u);  // 5 < 19.44/2: app-limited, hold
  EXPECT_EQ(g.update(drop(20)), 17u);     // drop: g = 0.5: 0.8*19.44 + 0.2*9.72 = 17.496
  EXPECT_DOUBLE_EQ(g.estimate(), 17.496);
}

TEST(LimitAlgorithmTest, Gradient2WithoutTheFixMatchesNetflix) {
  sturdy::gradient2_limit g({.initial_limit = 20, .min_limit = 1, .max_limit = 200, .fix_drift = false});
  (void)g.update(ok(10ms, 20));
  (void)g.update(ok(10ms, 20));
  // long = mean(10, 10, 30) = 16.67; g = 1.5*16.67/30 = 0.8333:
  // 0.8*21.6 + 0.2*(18 + 4) = 21.68.
  EXPECT_EQ(g.update(ok(30ms, 21)), 21u);
  EXPECT_NEAR(g.estimate(), 21.68, 1e-9);
}

// The drift (Netflix PR #134): a service of capacity 50 whose latency grows
// with the concurrency we send it (rtt = 10 ms * max(1, L / 50)), the client
// always saturated (in flight = L). Netflix's Gradient2 lets `long` follow
// the self-inflicted latency and the limit ratchets up to max_limit; with
// the fix it settles where the gradient's tolerance puts it: it grows
// (g = 1) while rtt <= 1.5 x `long` (10 ms), i.e. up to L = 75, and no further.
std::uint32_t run_queueing_feedback(bool fix) {
  sturdy::gradient2_limit g({.initial_limit = 20, .min_limit = 20, .max_limit = 1000, .fix_drift = fix});
  std::uint32_t limit = g.limit();
  for (int i = 0; i < 200'000; ++i) {
    const double factor = std::max(1.0, static_cast<double>(limit) / 50.0);
    limit = g.update(ok(duration(static_cast<duration::rep>(10e6 * factor)), limit));
  }
  return limit;
}

TEST(LimitAlgorithmTest, Gradient2DriftFixHoldsTheLimitUnderSelfInducedQueueing) {
  EXPECT_EQ(run_queueing_feedback(false), 1000u);  // the bug: pinned at max_limit
  const std::uint32_t fixed = run_queueing_feedback(true);
  EXPECT_GE(fixed, 70u);
  EXPECT_LE(fixed, 76u);
}

TEST(LimitAlgorithmTest, Gradient2FixStillFollowsAGenuineSlowdown) {
  // The service becomes 3x slower for good. The limit falls to its floor,
  // where samples are trusted again, `long` catches up and the limit grows.
  sturdy::gradient2_limit g({.initial_limit = 100, .min_limit = 10, .max_limit = 200});
  for (int i = 0; i < 50; ++i) (void)g.update(ok(10ms, g.limit()));
  for (int i = 0; i < 50'000; ++i) (void)g.update(ok(30ms, g.limit()));
  EXPECT_GE(g.long_rtt_ns(), 19.9e6);  // 30 ms / tolerance 1.5: g reaches 1 there
  EXPECT_EQ(g.limit(), 200u);
}

TEST(LimitAlgorithmTest, EnvoyExactSequence) {
  sturdy::envoy_gradient_limit e({.initial_limit = 10,
                                  .min_limit = 3,
                                  .max_limit = 1000,
                                  .update_interval = 100ms,
                                  .sample_percentile = 0.5,
                                  .buffer = 0.25,
                                  .min_rtt_request_count = 3,
                                  .min_rtt_interval = 60s,
                                  .min_rtt_jitter = 0.0});
  const time_point t0{};
  EXPECT_TRUE(e.measuring_min_rtt());
  EXPECT_EQ(e.limit(), 3u);  // pinned to the floor while measuring
  EXPECT_EQ(e.update(ok(10ms, 3, t0)), 3u);
  EXPECT_EQ(e.update(ok(12ms, 3, t0 + 1ms)), 3u);
  EXPECT_EQ(e.update(ok(8ms, 3, t0 + 2ms)), 10u);  // minRTT = p50{8,10,12} = 10 ms
  EXPECT_DOUBLE_EQ(e.min_rtt_ns(), 10e6);
  EXPECT_EQ(e.update(ok(10ms, 10, t0 + 50ms)), 10u);  // interval not over
  // Envoy's calculateNewLimit: scaled = g L, L <- floor(scaled + sqrt(scaled)).
  // p50{10, 12.5} (nearest rank 1) = 10: g = 12.5/10 = 1.25: 12.5 + sqrt(12.5) = 16.04
  EXPECT_EQ(e.update(ok(12500us, 10, t0 + 102ms)), 16u);
  // p50{25} = 25: g = 12.5/25 = 0.5: 8 + sqrt(8) = 10.83
  EXPECT_EQ(e.update(ok(25ms, 16, t0 + 202ms)), 10u);
  // A drop is infinitely slow: g = 0.5: 5 + sqrt(5) = 7.24
  EXPECT_EQ(e.update(drop(10, t0 + 302ms)), 7u);
  // 60 s after the measurement: measure again at the floor, then resume.
  EXPECT_EQ(e.update(ok(10ms, 7, t0 + 2ms + 60s)), 3u);
  EXPECT_TRUE(e.measuring_min_rtt());
  (void)e.update(ok(20ms, 3, t0 + 60s + 3ms));
  EXPECT_EQ(e.update(ok(20ms, 3, t0 + 60s + 4ms)), 7u);
  EXPECT_DOUBLE_EQ(e.min_rtt_ns(), 20e6);
}

TEST(LimitAlgorithmTest, EnvoyGradientIsCappedAtTwo) {
  sturdy::envoy_gradient_limit e({.initial_limit = 16, .min_limit = 3, .min_rtt_request_count = 1, .min_rtt_jitter = 0.0});
  (void)e.update(ok(100ms, 3, time_point{}));
  // rtt 1 ms against minRTT 100 ms: g would be 125, capped at 2: 32 + sqrt(32) = 37.66.
  EXPECT_EQ(e.update(ok(1ms, 16, time_point{} + 100ms)), 37u);
}

TEST(LimitAlgorithmTest, WindowedFeedsOneAggregatedSamplePerWindow) {
  sturdy::windowed_limit<sturdy::aimd_limit> w(
      {.min_window = 100ms, .max_window = 100ms, .window_size = 3, .min_rtt_threshold = 100us},
      sturdy::aimd_limit({.initial_limit = 10, .min_limit = 1, .max_limit = 100}));
  const time_point t0{};
  EXPECT_EQ(w.update(ok(1ms, 5, t0)), 10u);
  EXPECT_EQ(w.update(ok(3ms, 6, t0 + 50ms)), 10u);
  EXPECT_EQ(w.update(ok(50us, 9, t0 + 60ms)), 10u);  // below min_rtt_threshold: ignored
  // Third sample, 100 ms after the first: AIMD sees {mean 2 ms, max in flight 6}: 6*2 >= 10: +1.
  EXPECT_EQ(w.update(ok(2ms, 4, t0 + 100ms)), 11u);
  EXPECT_EQ(w.update(drop(3, t0 + 150ms)), 11u);
  EXPECT_EQ(w.update(ok(1ms, 1, t0 + 200ms)), 11u);
  // The window opened at the drop (150 ms); 110 ms and 3 samples later it
  // closes with dropped = true: floor(11 * 0.9).
  EXPECT_EQ(w.update(ok(1ms, 1, t0 + 260ms)), 9u);
  EXPECT_EQ(sturdy::windowed_limit<sturdy::aimd_limit>({.max_window = 1ms}).validation_message(),
            "windowed_limit_options.max_window must be >= min_window");
  EXPECT_EQ(sturdy::windowed_limit<sturdy::aimd_limit>({}, sturdy::aimd_limit({.min_limit = 0})).validation_message(),
            "aimd_limit_options.min_limit must be >= 1");
  EXPECT_EQ(sturdy::windowed_limit_options{.min_window = duration::zero()}.validation_message(),
            "windowed_limit_options.min_window must be > 0");
  EXPECT_EQ(sturdy::windowed_limit_options{.window_size = 0}.validation_message(),
            "windowed_limit_options.window_size must be >= 1");
  EXPECT_EQ(sturdy::windowed_limit_options{.min_rtt_threshold = -1ns}.validation_message(),
            "windowed_limit_options.min_rtt_threshold must be >= 0");
}

TEST(LimitAlgorithmTest, WindowedDurationsAtExtremes) {
  const auto aimd = sturdy::aimd_limit({.initial_limit = 10, .min_limit = 1, .max_limit = 100});
  // 1 ns windows: every window_size-th sample closes one.
  sturdy::windowed_limit<sturdy::aimd_limit> fast({.min_window = 1ns, .max_window = 1ns, .window_size = 2}, aimd);
  EXPECT_EQ(fast.update(ok(1ms, 10, time_point{})), 10u);
  EXPECT_EQ(fast.update(ok(1ms, 10, time_point{} + 1ns)), 11u);
  // duration::max() windows stay open (no overflow computing 2 x rtt).
  sturdy::windowed_limit<sturdy::aimd_limit> never(
      {.min_window = duration::max(), .max_window = duration::max(), .window_size = 1}, aimd);
  EXPECT_TRUE((sturdy::windowed_limit_options{.min_window = duration::max(), .max_window = duration::max()}.validate()));
  EXPECT_EQ(never.update(ok(duration::max(), 10, time_point{})), 10u);
  EXPECT_EQ(never.update(ok(1ms, 10, time_point::max() - 1ns)), 10u);
  // min_rtt_threshold 0 ignores nothing.
  sturdy::windowed_limit<sturdy::aimd_limit> all({.min_window = 1ns, .max_window = 1ns, .window_size = 1,
                                                  .min_rtt_threshold = duration::zero()}, aimd);
  EXPECT_EQ(all.update(ok(duration::zero(), 10, time_point{})), 10u);  // the window is 0 ns old
  EXPECT_EQ(all.update(ok(duration::zero(), 10, time_point{} + 1ns)), 11u);
}

TEST(LimitAlgorithmTest, UpdatesAllocateNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not linked (TSan)";
  sturdy::aimd_limit a;
  sturdy::vegas_limit v;
  sturdy::gradient2_limit g;
  sturdy::envoy_gradient_limit e;
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 5000; ++i) {
    const limit_sample s = ok(duration(1'000'000 + (i % 7) * 100'000), 20, time_point{} + i * 1ms);
    (void)a.update(s);
    (void)v.update(s);
    (void)g.update(s);
    (void)e.update(s);
  }
  EXPECT_EQ(scope.allocations(), 0u);
}

struct bad_case {
  std::string_view message;
  std::string_view want;
};

TEST(LimitAlgorithmTest, EveryParameterIsValidated) {
  const std::vector<bad_case> cases = {
      {sturdy::fixed_limit_options{.limit = 0}.validation_message(), "fixed_limit_options.limit must be in [1, 2^30]"},
      {sturdy::aimd_limit_options{.min_limit = 0}.validation_message(), "aimd_limit_options.min_limit must be >= 1"},
      {sturdy::aimd_limit_options{.max_limit = 10}.validation_message(),
       "aimd_limit_options.max_limit must be in [min_limit, 2^30]"},
      {sturdy::aimd_limit_options{.initial_limit = 300}.validation_message(),
       "aimd_limit_options.initial_limit must be in [min_limit, max_limit]"},
      {sturdy::aimd_limit_options{.backoff_ratio = 1.0}.validation_message(),
       "aimd_limit_options.backoff_ratio must be in [0.5, 1)"},
      {sturdy::aimd_limit_options{.backoff_ratio = 0.4}.validation_message(),
       "aimd_limit_options.backoff_ratio must be in [0.5, 1)"},
      {sturdy::aimd_limit_options{.timeout = duration::zero()}.validation_message(),
       "aimd_limit_options.timeout must be > 0"},
      {sturdy::vegas_limit_options{.smoothing = 0.0}.validation_message(),
       "vegas_limit_options.smoothing must be in (0, 1]"},
      {sturdy::vegas_limit_options{.alpha_factor = 0.5}.validation_message(),
       "vegas_limit_options.alpha_factor must be in [1, 1000]"},
      {sturdy::vegas_limit_options{.alpha_factor = 5, .beta_factor = 4}.validation_message(),
       "vegas_limit_options.beta_factor must be in [alpha_factor, 1000]"},
      {sturdy::vegas_limit_options{.probe_multiplier = 0}.validation_message(),
       "vegas_limit_options.probe_multiplier must be >= 1"},
      {sturdy::vegas_limit_options{.max_limit = (1u << 30) + 1}.validation_message(),
       "vegas_limit_options.max_limit must be in [min_limit, 2^30]"},
      {sturdy::gradient2_limit_options{.smoothing = 1.5}.validation_message(),
       "gradient2_limit_options.smoothing must be in (0, 1]"},
      {sturdy::gradient2_limit_options{.rtt_tolerance = 0.9}.validation_message(),
       "gradient2_limit_options.rtt_tolerance must be in [1, 1e6]"},
      {sturdy::gradient2_limit_options{.long_window = 0}.validation_message(),
       "gradient2_limit_options.long_window must be >= 1"},
      {sturdy::gradient2_limit_options{.queue_size = -1}.validation_message(),
       "gradient2_limit_options.queue_size must be in [0, 1e6]"},
      {sturdy::envoy_gradient_limit_options{.update_interval = duration::zero()}.validation_message(),
       "envoy_gradient_limit_options.update_interval must be > 0"},
      {sturdy::envoy_gradient_limit_options{.sample_percentile = 0}.validation_message(),
       "envoy_gradient_limit_options.sample_percentile must be in (0, 1]"},
      {sturdy::envoy_gradient_limit_options{.buffer = -0.1}.validation_message(),
       "envoy_gradient_limit_options.buffer must be in [0, 1e6]"},
      {sturdy::envoy_gradient_limit_options{.min_rtt_request_count = 0}.validation_message(),
       "envoy_gradient_limit_options.min_rtt_request_count must be >= 1"},
      {sturdy::envoy_gradient_limit_options{.min_rtt_interval = -1s}.validation_message(),
       "envoy_gradient_limit_options.min_rtt_interval must be > 0"},
      {sturdy::envoy_gradient_limit_options{.min_rtt_jitter = 2}.validation_message(),
       "envoy_gradient_limit_options.min_rtt_jitter must be in [0, 1]"},
      {sturdy::envoy_gradient_limit_options{.max_samples_per_interval = 0}.validation_message(),
       "envoy_gradient_limit_options.max_samples_per_interval must be in [1, 65536]"},
  };
  for (const bad_case& c : cases) EXPECT_EQ(c.message, c.want);
  EXPECT_TRUE(sturdy::aimd_limit_options{}.validate());
  EXPECT_TRUE(sturdy::vegas_limit_options{}.validate());
  EXPECT_TRUE(sturdy::gradient2_limit_options{}.validate());
  EXPECT_TRUE(sturdy::envoy_gradient_limit_options{}.validate());
  EXPECT_EQ(sturdy::aimd_limit_options{.timeout = duration::zero()}.validate().error(),
            sturdy::errc::invalid_options);
  // Durations at their extremes are accepted.
  EXPECT_TRUE((sturdy::envoy_gradient_limit_options{.update_interval = 1ns, .min_rtt_interval = duration::max()}.validate()));
}

TEST(LimitAlgorithmTest, EnvoyDurationsAtMaxNeverOverflow) {
  sturdy::envoy_gradient_limit e({.initial_limit = 5, .update_interval = duration::max(), .min_rtt_request_count = 1,
                                  .min_rtt_interval = duration::max(), .min_rtt_jitter = 1.0});
  (void)e.update(ok(1ms, 3, time_point::max() - 1h));
  EXPECT_FALSE(e.measuring_min_rtt());
  EXPECT_EQ(e.update(ok(1ms, 5, time_point::max())), 5u);  // interval never ends
  EXPECT_FALSE(e.measuring_min_rtt());
}

}  // namespace
