// Chaos layers shared by many threads: the set of selected calls depends only
// on (seed, call number), so the total injected is the same for every
// interleaving, and flipping the switch from another thread is race-free.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/chaos.hpp"
#include "support/stress.hpp"

namespace {

sturdy::result<int> ok() { return 1; }

TEST(ChaosStressTest, InjectedCountIsIndependentOfInterleaving) {
  const std::uint64_t per_thread = sturdy::test::stress_iterations(200000);
  constexpr int threads = 4;
  constexpr double rate = 0.25;
  constexpr std::uint64_t seed = 1234;
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = rate, .seed = seed},
                             sturdy::chaos_error{sturdy::errc::store_unavailable});
  std::atomic<std::uint64_t> failures{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::uint64_t mine = 0;
      for (std::uint64_t i = 0; i < per_thread; ++i) mine += chaos.execute(ok) ? 0 : 1;
      failures.fetch_add(mine);
    });
  }
  for (auto& th : pool) th.join();
  const std::uint64_t total = per_thread * threads;
  std::uint64_t expected = 0;
  for (std::uint64_t k = 1; k <= total; ++k) expected += sturdy::detail::chaos_unit(seed, k) < rate ? 1 : 0;
  EXPECT_EQ(chaos.calls(), total);
  EXPECT_EQ(chaos.injected(), expected);
  EXPECT_EQ(failures.load(), expected);
}

TEST(ChaosStressTest, SwitchFlippedWhileThreadsCall) {
  const std::uint64_t per_thread = sturdy::test::stress_iterations(100000);
  sturdy::chaos_switch sw;
  sturdy::chaos_policy chaos({.enabled = sw, .injection_rate = 1.0},
                             sturdy::chaos_error{sturdy::errc::store_unavailable});
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> failures{0};
  std::thread flipper([&] {
    bool on = false;
    while (!done.load()) sw.set(on = !on);
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < 2; ++t) {
    pool.emplace_back([&] {
      for (std::uint64_t i = 0; i < per_thread; ++i) failures.fetch_add(chaos.execute(ok) ? 0 : 1);
    });
  }
  for (auto& th : pool) th.join();
  done = true;
  flipper.join();
  // With rate 1, every call counted while enabled was injected.
  EXPECT_EQ(chaos.injected(), chaos.calls());
  EXPECT_EQ(failures.load(), chaos.injected());
}

}  // namespace
