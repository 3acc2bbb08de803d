#include "sturdy/chaos.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <stop_token>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_listener;
using sturdy::testing::recording_sleeper;

sturdy::result<int> ok() { return 7; }

TEST(ChaosTest, OffByDefaultCallsThroughAndCountsNothing) {
  sturdy::chaos_policy chaos({.injection_rate = 1.0}, sturdy::chaos_error{sturdy::errc::store_unavailable});
  for (int i = 0; i < 100; ++i) {
    auto r = chaos.execute(ok);
    ASSERT_TRUE(r);
    EXPECT_EQ(r.value(), 7);
  }
  EXPECT_EQ(chaos.calls(), 0u);
  EXPECT_EQ(chaos.injected(), 0u);
}

TEST(ChaosTest, DisabledLayerChangesNeitherResultsNorEvents) {
  // The same pipeline with and without a disabled chaos layer: identical
  // results and identical breaker events.
  manual_clock clock;
  recording_listener with_events, without_events;
  sturdy::circuit_breaker<manual_clock, recording_listener> with_breaker({}, clock, with_events);
  sturdy::circuit_breaker<manual_clock, recording_listener> without_breaker({}, clock, without_events);
  sturdy::chaos_switch off;
  sturdy::chaos_policy chaos({.enabled = off, .injection_rate = 1.0},
                             sturdy::chaos_error{sturdy::errc::store_unavailable}, clock);
  auto with = sturdy::compose(with_breaker, chaos);
  auto without = sturdy::compose(without_breaker);
  int n = 0;
  auto fn = [&n]() -> sturdy::result<int> {
    ++n;
    if (n % 3 == 0) return sturdy::errc::store_unavailable;
    return n;
  };
  std::vector<bool> a, b;
  for (int i = 0; i < 60; ++i) a.push_back(static_cast<bool>(with.execute(fn)));
  n = 0;
  for (int i = 0; i < 60; ++i) b.push_back(static_cast<bool>(without.execute(fn)));
  EXPECT_EQ(a, b);
  EXPECT_EQ(with_events.types(), without_events.types());
  EXPECT_EQ(chaos.calls(), 0u);
}

TEST(ChaosTest, InjectsTheErrorInsideTheCallersResultTypeWithoutCallingFn) {
  recording_listener events;
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0},
                             sturdy::chaos_error{sturdy::errc::store_unavailable}, sturdy::steady_clock_source{},
                             sturdy::thread_sleeper{}, events);
  int called = 0;
  auto r = chaos.execute([&] {
    ++called;
    return 1;  // a plain value: the layer returns result<int>
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), sturdy::errc::store_unavailable);
  EXPECT_EQ(called, 0);
  ASSERT_EQ(events.count<sturdy::chaos_injected>(), 1u);
  EXPECT_EQ(events.of<sturdy::chaos_injected>()[0].kind, sturdy::chaos_kind::error);
  EXPECT_EQ(events.of<sturdy::chaos_injected>()[0].call, 1u);
}

TEST(ChaosTest, ThrowsAFreshCopyOfTheException) {
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0},
                             sturdy::chaos_throw(std::runtime_error("injected")));
  for (int i = 0; i < 3; ++i) {
    try {
      (void)chaos.execute(ok);
      FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "injected");
    }
  }
  EXPECT_EQ(chaos.injected(), 3u);
}

TEST(ChaosTest, LatencySleepsThroughTheSleeperThenCalls) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0},
                             sturdy::chaos_latency{2s}, clock, sleeper);
  auto r = chaos.execute(ok);
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value(), 7);
  ASSERT_EQ(sleeper.delays().size(), 1u);
  EXPECT_EQ(sleeper.delays()[0], 2s);
}

TEST(ChaosTest, LatencyHonoursTheStopTokenAndReportsCancelled) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0},
                             sturdy::chaos_latency{2s}, clock, sleeper);
  std::stop_source stop;
  stop.request_stop();
  int called = 0;
  auto r = chaos.execute(
      [&] {
        ++called;
        return ok();
      },
      stop.get_token());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), sturdy::errc::cancelled);
  EXPECT_EQ(called, 0);
}

TEST(ChaosTest, OutcomeIsReplacedWithoutCallingFn) {
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0},
                             sturdy::chaos_outcome{[] { return sturdy::result<int>(-1); }});
  int called = 0;
  auto r = chaos.execute([&]() -> sturdy::result<int> {
    ++called;
    return 1;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value(), -1);
  EXPECT_EQ(called, 0);
}

TEST(ChaosTest, RateIsWithinBinomialBoundsForFixedSeeds) {
  constexpr int n = 100000;
  for (const double rate : {0.001, 0.05, 0.5, 0.9}) {
    for (const std::uint64_t seed : {1ULL, 42ULL, 0xdeadbeefULL}) {
      sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = rate, .seed = seed},
                                 sturdy::chaos_error{sturdy::errc::store_unavailable});
      int failed = 0;
      for (int i = 0; i < n; ++i) failed += chaos.execute(ok) ? 0 : 1;
      const double mean = n * rate;
      const double sd = std::sqrt(n * rate * (1 - rate));
      EXPECT_NEAR(failed, mean, 5 * sd) << "rate " << rate << " seed " << seed;
      EXPECT_EQ(static_cast<std::uint64_t>(failed), chaos.injected());
    }
  }
}

TEST(ChaosTest, ADifferentRateGeneratorWouldFailTheBound) {
  // The bound above can fail: a rate of 0.5 drawn against 0.4 misses it.
  constexpr int n = 100000;
  int selected = 0;
  for (int k = 1; k <= n; ++k) selected += sturdy::detail::chaos_unit(42, static_cast<std::uint64_t>(k)) < 0.4 ? 1 : 0;
  EXPECT_GT(std::abs(selected - n * 0.5), 5 * std::sqrt(n * 0.25));
}

TEST(ChaosTest, SameSeedSameCallsAreSelected) {
  auto run = [](std::uint64_t seed) {
    sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 0.3, .seed = seed},
                               sturdy::chaos_error{sturdy::errc::store_unavailable});
    std::vector<bool> out;
    for (int i = 0; i < 200; ++i) out.push_back(static_cast<bool>(chaos.execute(ok)));
    return out;
  };
  EXPECT_EQ(run(9), run(9));
  EXPECT_NE(run(9), run(10));
}

TEST(ChaosTest, ScheduleFailsExactlyCalls40To60) {
  sturdy::chaos_policy chaos(
      {.enabled = sturdy::chaos_switch(true), .schedule = {sturdy::chaos_window::calls(40, 60)}},
      sturdy::chaos_error{sturdy::errc::store_unavailable});
  std::vector<int> failed;
  for (int i = 1; i <= 100; ++i) {
    if (!chaos.execute(ok)) failed.push_back(i);
  }
  ASSERT_EQ(failed.size(), 21u);
  EXPECT_EQ(failed.front(), 40);
  EXPECT_EQ(failed.back(), 60);
}

TEST(ChaosTest, ScheduleAddsTwoSecondsForThirtySecondsFromTenSeconds) {
  manual_clock clock;
  recording_sleeper sleeper(manual_clock{});  // its own clock: we move time by hand
  sturdy::chaos_policy chaos(
      {.enabled = sturdy::chaos_switch(true), .schedule = {sturdy::chaos_window::between(10s, 30s)}},
      sturdy::chaos_latency{2s}, clock, sleeper);
  std::vector<int> slowed;  // seconds at which a call was slowed
  for (int t = 0; t <= 50; ++t) {
    const auto before = sleeper.delays().size();
    ASSERT_TRUE(chaos.execute(ok));
    if (sleeper.delays().size() != before) slowed.push_back(t);
    clock.advance(1s);
  }
  ASSERT_EQ(slowed.size(), 30u);
  EXPECT_EQ(slowed.front(), 10);
  EXPECT_EQ(slowed.back(), 39);
}

TEST(ChaosTest, PredicateSelectsCalls) {
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true),
                              .injection_rate = 1.0,
                              .when = [](const sturdy::chaos_call& c) { return c.number % 2 == 0; }},
                             sturdy::chaos_error{sturdy::errc::store_unavailable});
  EXPECT_TRUE(chaos.execute(ok));
  EXPECT_FALSE(chaos.execute(ok));
  EXPECT_TRUE(chaos.execute(ok));
  EXPECT_FALSE(chaos.execute(ok));
}

TEST(ChaosTest, SwitchTurnsInjectionOnAndOffAcrossCopies) {
  sturdy::chaos_switch sw;
  sturdy::chaos_policy chaos({.enabled = sw, .injection_rate = 1.0},
                             sturdy::chaos_error{sturdy::errc::store_unavailable});
  auto copy = chaos;
  EXPECT_TRUE(copy.execute(ok));
  sw.enable();
  EXPECT_FALSE(copy.execute(ok));
  EXPECT_EQ(chaos.injected(), 1u);  // copies share the counters
  sw.disable();
  EXPECT_TRUE(copy.execute(ok));
}

TEST(ChaosTest, InvalidOptionsInjectNothingAndNameTheFieldOnce) {
  recording_listener events;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const double rate : {-0.1, 1.5, nan}) {
    EXPECT_FALSE(sturdy::chaos_options{.injection_rate = rate}.validate());
  }
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 2.0},
                             sturdy::chaos_error{sturdy::errc::store_unavailable}, sturdy::steady_clock_source{},
                             sturdy::thread_sleeper{}, events);
  // A misconfigured drill injects nothing and never fails a call on its own
  // account (review finding r11: a typo used to fail every call).
  EXPECT_EQ(chaos.execute(ok).value(), 7);
  EXPECT_EQ(chaos.execute(ok).value(), 7);
  EXPECT_EQ(chaos.injected(), 0u);
  ASSERT_EQ(events.count<sturdy::options_rejected>(), 1u);
  EXPECT_EQ(events.of<sturdy::options_rejected>()[0].message, "chaos_options.injection_rate must be in [0, 1]");
  EXPECT_FALSE((sturdy::chaos_options{.schedule = {sturdy::chaos_window::calls(5, 4)}}.validate()));
  EXPECT_FALSE((sturdy::chaos_options{.schedule = {sturdy::chaos_window::between(-1s, 1s)}}.validate()));
  sturdy::chaos_policy negative({.enabled = sturdy::chaos_switch(true)}, sturdy::chaos_latency{-1ns});
  EXPECT_EQ(negative.validation_message(), "chaos_latency.delay must be >= 0");
  // An empty error code would inject a "failure" whose error is Success
  // (review finding r9).
  sturdy::chaos_policy empty({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0}, sturdy::chaos_error{});
  EXPECT_EQ(empty.validation_message(), "chaos_error.code must be an error (not an empty std::error_code)");
  EXPECT_EQ(empty.execute(ok).value(), 7);
}

TEST(ChaosTest, DurationsAtZeroOneNanosecondAndMax) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  for (const sturdy::duration d : {sturdy::duration::zero(), sturdy::duration(1), sturdy::duration::max()}) {
    sturdy::chaos_policy slow({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0},
                              sturdy::chaos_latency{d}, clock, recording_sleeper(manual_clock{}));
    EXPECT_TRUE(slow.execute(ok));
    // A window starting at max() never opens; one of length max() never closes.
    sturdy::chaos_policy never({.enabled = sturdy::chaos_switch(true),
                                .schedule = {sturdy::chaos_window::between(sturdy::duration::max(), d)}},
                               sturdy::chaos_error{sturdy::errc::store_unavailable}, clock);
    EXPECT_TRUE(never.execute(ok));
    sturdy::chaos_policy always({.enabled = sturdy::chaos_switch(true),
                                 .schedule = {sturdy::chaos_window::between(d, sturdy::duration::max())}},
                                sturdy::chaos_error{sturdy::errc::store_unavailable}, clock);
    clock.advance(d == sturdy::duration::max() ? 0ns : d);
    EXPECT_EQ(static_cast<bool>(always.execute(ok)), d == sturdy::duration::max()) << d.count();
  }
}

TEST(ChaosTest, ComposesInsideRetryWhichRetriesTheInjectedError) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  sturdy::chaos_policy chaos(
      {.enabled = sturdy::chaos_switch(true), .schedule = {sturdy::chaos_window::calls(1, 2)}},
      sturdy::chaos_error{sturdy::errc::store_unavailable}, clock);
  sturdy::retry_policy<sturdy::backoff, manual_clock, recording_sleeper> retry({.max_attempts = 3}, clock, sleeper);
  auto pipeline = sturdy::compose(retry, chaos);
  auto r = pipeline.execute(ok);
  ASSERT_TRUE(r);
  EXPECT_EQ(chaos.calls(), 3u);
  EXPECT_EQ(chaos.injected(), 2u);
  EXPECT_EQ(sleeper.delays().size(), 2u);
}

TEST(ChaosTest, OffAndOnPathsAllocateNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "no counting allocator in this build";
  sturdy::chaos_switch sw;
  sturdy::chaos_policy chaos({.enabled = sw, .injection_rate = 0.5},
                             sturdy::chaos_error{sturdy::errc::store_unavailable});
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 100; ++i) (void)chaos.execute(ok);
  sw.enable();
  for (int i = 0; i < 100; ++i) (void)chaos.execute(ok);
  EXPECT_EQ(scope.allocations(), 0u);
}

}  // namespace
