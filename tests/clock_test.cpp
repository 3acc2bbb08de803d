#include "sturdy/clock.hpp"

#include <chrono>
#include <stop_token>
#include <thread>

#include <gtest/gtest.h>

#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::time_point;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_sleeper;

TEST(SteadyClockSourceTest, IsEmptyAndMonotonic) {
  static_assert(std::is_empty_v<sturdy::steady_clock_source>);
  sturdy::steady_clock_source c;
  const auto a = c.now();
  const auto b = c.now();
  EXPECT_LE(a, b);
}

TEST(ManualClockTest, StartsWhereToldAndAdvancesOnlyByHand) {
  manual_clock c;
  EXPECT_EQ(c.now(), time_point{});
  manual_clock d(time_point{} + 5s);
  EXPECT_EQ(d.now(), time_point{} + 5s);
  EXPECT_EQ(c.advance(250ms), time_point{} + 250ms);
  EXPECT_EQ(c.now(), time_point{} + 250ms);
}

TEST(ManualClockTest, CopiesShareOneTime) {
  manual_clock a;
  manual_clock b = a;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_TRUE(a.shares_time_with(b));
  b.advance(1s);
  EXPECT_EQ(a.now(), time_point{} + 1s);
  EXPECT_FALSE(a.shares_time_with(manual_clock{}));
}

TEST(ManualClockTest, NeverRunsBackwards) {
  manual_clock c(time_point{} + 10s);
  c.advance(-5s);
  EXPECT_EQ(c.now(), time_point{} + 10s);
  EXPECT_FALSE(c.set(time_point{} + 9s));
  EXPECT_EQ(c.now(), time_point{} + 10s);
  EXPECT_TRUE(c.set(time_point{} + 12s));
  EXPECT_EQ(c.now(), time_point{} + 12s);
}

TEST(RecordingSleeperTest, RecordsDelaysAndAdvancesTheClock) {
  manual_clock c;
  recording_sleeper s(c);
  EXPECT_TRUE(s.sleep_for(10ms, {}));
  EXPECT_TRUE(s.sleep_for(30ms, {}));
  EXPECT_EQ(s.delays(), (std::vector<sturdy::duration>{10ms, 30ms}));
  EXPECT_EQ(s.total(), 40ms);
  EXPECT_EQ(s.count(), 2u);
  EXPECT_EQ(c.now(), time_point{} + 40ms);
  s.clear();
  EXPECT_EQ(s.count(), 0u);
}

TEST(RecordingSleeperTest, StopRequestedBeforeOrDuringSleepCancelsIt) {
  manual_clock c;
  recording_sleeper s(c);
  std::stop_source src;
  src.request_stop();
  EXPECT_FALSE(s.sleep_for(10ms, src.get_token()));
  EXPECT_EQ(c.now(), time_point{});

  std::stop_source mid;
  s.on_sleep([&](sturdy::duration d) {
    if (d == 20ms) mid.request_stop();
  });
  EXPECT_TRUE(s.sleep_for(5ms, mid.get_token()));
  EXPECT_FALSE(s.sleep_for(20ms, mid.get_token()));
  EXPECT_EQ(c.now(), time_point{} + 5ms);
  EXPECT_EQ(s.cancelled_count(), 2u);
}

TEST(ThreadSleeperTest, ZeroAndAlreadyStoppedReturnAtOnce) {
  sturdy::thread_sleeper s;
  EXPECT_TRUE(s.sleep_for(0ns, {}));
  std::stop_source src;
  src.request_stop();
  EXPECT_FALSE(s.sleep_for(std::chrono::hours(1), src.get_token()));
}

TEST(ThreadSleeperTest, StopFromAnotherThreadInterruptsALongSleep) {
  sturdy::thread_sleeper s;
  std::stop_source src;
  // The other thread stops us as soon as we are (about to be) asleep; the
  // hour-long sleep can only end through the stop request.
  std::jthread stopper([&] { src.request_stop(); });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(s.sleep_for(std::chrono::hours(1), src.get_token()));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::minutes(1));
}

TEST(ThreadSleeperTest, SleepsTheWholeDurationWhenNotStopped) {
  sturdy::thread_sleeper s;
  std::stop_source src;  // stop possible, never requested
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(s.sleep_for(2ms, src.get_token()));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 2ms);
}

}  // namespace

namespace {

TEST(ThreadSleeperTest, HugeDurationsNeitherOverflowNorReturnEarly) {
  sturdy::thread_sleeper s;
  std::stop_source src;
  // duration::max() used to overflow `now + d` and return true at once; now
  // only the stop request can end it.
  std::jthread stopper([&] { src.request_stop(); });
  EXPECT_FALSE(s.sleep_for(sturdy::duration::max(), src.get_token()));
}

TEST(ThreadSleeperTest, CancellableSleepAllocatesNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "no counting allocator in this build";
  sturdy::thread_sleeper s;
  std::stop_source src;
  const auto token = src.get_token();
  sturdy::testing::allocation_scope scope;
  EXPECT_TRUE(s.sleep_for(std::chrono::microseconds(50), token));
  EXPECT_EQ(scope.allocations(), 0u);
}

TEST(TimeArithmeticTest, SaturatesInsteadOfOverflowing) {
  using sturdy::duration;
  using sturdy::time_point;
  static_assert(sturdy::detail::saturating_add(duration::max(), duration(1)) == duration::max());
  static_assert(sturdy::detail::saturating_add(duration(1), duration(2)) == duration(3));
  static_assert(sturdy::detail::saturating_add(time_point::max() - duration(1), duration(5)) == time_point::max());
  static_assert(sturdy::detail::saturating_add(time_point{}, duration(5)) == time_point{} + duration(5));
  static_assert(sturdy::detail::time_between(time_point{} + duration(5), time_point{}) == duration::zero());
  static_assert(sturdy::detail::time_between(time_point::min(), time_point::max()) == duration::max());
  SUCCEED();
}

}  // namespace
