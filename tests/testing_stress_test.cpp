// The test doubles are shared between threads in the stress tests of every
// primitive; here they are hammered from several threads themselves.
#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"
#include "support/stress.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::time_point;

TEST(ManualClockStressTest, ConcurrentAdvancesAreNeverLostAndTimeIsMonotonic) {
  sturdy::testing::manual_clock clock;
  const std::uint64_t n = sturdy::test::stress_iterations(200'000);
  std::atomic<bool> backwards{false};
  auto work = [&] {
    time_point last = clock.now();
    for (std::uint64_t i = 0; i < n; ++i) {
      clock.advance(1ns);
      const time_point now = clock.now();
      if (now < last) backwards = true;
      last = now;
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_FALSE(backwards.load());
  EXPECT_EQ(clock.now(), time_point{} + std::chrono::nanoseconds(2 * n));
}

TEST(RecordingSleeperStressTest, TwoThreadsRecordEverySleep) {
  sturdy::testing::manual_clock clock;
  sturdy::testing::recording_sleeper sleeper(clock);
  const std::uint64_t n = sturdy::test::stress_iterations(20'000);
  auto work = [&] {
    for (std::uint64_t i = 0; i < n; ++i) ASSERT_TRUE(sleeper.sleep_for(1us, {}));
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_EQ(sleeper.count(), 2 * n);
  EXPECT_EQ(sleeper.total(), std::chrono::microseconds(2 * n));
  EXPECT_EQ(clock.now(), time_point{} + std::chrono::microseconds(2 * n));
}

struct ping {
  int thread;
  std::uint64_t i;
};

TEST(RecordingListenerStressTest, TwoThreadsRecordEveryEventInPerThreadOrder) {
  sturdy::testing::recording_listener events;
  const std::uint64_t n = sturdy::test::stress_iterations(20'000);
  auto work = [&](int t) {
    for (std::uint64_t i = 0; i < n; ++i) events(ping{t, i});
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  const auto all = events.of<ping>();
  ASSERT_EQ(all.size(), 2 * n);
  std::uint64_t next[2] = {0, 0};
  for (const auto& p : all) {
    ASSERT_EQ(p.i, next[p.thread]);
    ++next[p.thread];
  }
  EXPECT_EQ(events.count<int>(), 0u);
}

}  // namespace
