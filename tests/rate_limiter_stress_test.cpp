// Concurrency tests of sturdy::rate_limiter (label concurrency: run under
// TSan). Many threads share one limiter and one manual clock that they
// advance themselves; each records the time and size of every admission.
// After the run, every window of the merged admissions must hold the bound
// admitted <= t/T + B, and the limiter must not have admitted less than the
// refill allowed while demand never stopped.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/rate_limiter.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_sleeper.hpp"
#include "support/stress.hpp"

using namespace std::chrono_literals;
using sturdy::duration;
using sturdy::time_point;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_sleeper;

namespace {

using admission = std::pair<std::int64_t, std::int64_t>;  // (time ns, n)

// The largest excess over t/T of any window, in ns of tokens: must be <= B*T.
std::int64_t worst_window(std::vector<admission> all, std::int64_t T) {
  std::sort(all.begin(), all.end());
  std::int64_t sum = 0;
  std::int64_t min_before = std::numeric_limits<std::int64_t>::max();
  std::int64_t worst = std::numeric_limits<std::int64_t>::min();
  for (const auto& [t, n] : all) {
    min_before = std::min(min_before, sum * T - t);
    sum += n;
    worst = std::max(worst, sum * T - t - min_before);
  }
  return worst;
}

TEST(RateLimiterStressTest, ManyThreadsNeverExceedTheBoundInAnyWindow) {
  constexpr int kThreads = 8;
  constexpr std::int64_t kBurst = 5;
  const sturdy::rate_limiter_options o{.rate = 1000, .period = 1s, .burst = kBurst};
  const std::int64_t T = o.interval().count();  // 1 ms
  manual_clock clock;
  sturdy::rate_limiter<manual_clock> limiter(o, clock);
  const std::uint64_t per_thread = sturdy::test::stress_iterations(200'000);
  std::vector<std::vector<admission>> admitted(kThreads);
  std::vector<std::int64_t> totals(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937_64 gen(1000 + static_cast<std::uint64_t>(i));
      std::uniform_int_distribution<int> size(1, 2);
      std::uniform_int_distribution<std::int64_t> step(0, T / 4);
      const bool caller_time = i % 2 == 0;
      for (std::uint64_t k = 0; k < per_thread; ++k) {
        if ((k & 7) == 0) clock.advance(duration(step(gen)));
        const int n = size(gen);
        // Even threads pass the time in (so the decision time is known
        // exactly and recorded); odd ones let the limiter read the clock
        // (counted in the totals only).
        if (caller_time) {
          const time_point now = clock.now();
          if (limiter.try_acquire_at(now, static_cast<std::uint64_t>(n)).allowed) {
            admitted[static_cast<std::size_t>(i)].emplace_back(now.time_since_epoch().count(), n);
            totals[static_cast<std::size_t>(i)] += n;
          }
        } else if (limiter.try_acquire(static_cast<std::uint64_t>(n)).allowed) {
          totals[static_cast<std::size_t>(i)] += n;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<admission> all;
  for (const auto& v : admitted) all.insert(all.end(), v.begin(), v.end());
  std::int64_t total = 0;
  for (const std::int64_t t : totals) total += t;
  const std::int64_t elapsed = clock.now().time_since_epoch().count();
  ASSERT_GT(elapsed, 100 * T);
  ASSERT_FALSE(all.empty());
  EXPECT_LE(worst_window(all, T), kBurst * T);
  EXPECT_LE(total, elapsed / T + kBurst);
  // Demand never stopped, so the limiter admitted (nearly) all it could.
  EXPECT_GE(total, elapsed / T - elapsed / T / 100 - kBurst);
}

// A sleeper that does not move the clock and, on the threads that ask for
// it, is cancelled mid-sleep (as if a stop request came while waiting).
thread_local std::stop_source* cancel_next_sleep = nullptr;
struct cancelling_sleeper {
  bool sleep_for(duration, std::stop_token stop) const {
    if (cancel_next_sleep != nullptr) cancel_next_sleep->request_stop();
    return !stop.stop_requested();
  }
};

TEST(RateLimiterStressTest, ReservationsAndCancellationsNeverAdmitMore) {
  constexpr int kThreads = 6;
  constexpr std::int64_t kBurst = 3;
  const sturdy::rate_limiter_options o{.rate = 100, .period = 1s, .burst = kBurst};
  const std::int64_t T = o.interval().count();  // 10 ms
  manual_clock clock;
  sturdy::rate_limiter<manual_clock, cancelling_sleeper> limiter(o, clock);
  const std::uint64_t per_thread = sturdy::test::stress_iterations(50'000);
  std::vector<std::vector<admission>> reserved(kThreads);
  std::vector<std::int64_t> totals(kThreads, 0);
  std::atomic<std::int64_t> cancelled{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937_64 gen(77 + static_cast<std::uint64_t>(i));
      for (std::uint64_t k = 0; k < per_thread; ++k) {
        std::stop_source stop;
        cancel_next_sleep = (gen() & 3) == 0 ? &stop : nullptr;
        const auto d = limiter.acquire(1, duration(3 * T), stop.get_token());
        if (d.allowed) {
          ++totals[static_cast<std::size_t>(i)];
          // A reservation's turn is exactly the state it left (GCRA's
          // TAT - tau): record it.
          if (d.waited > duration::zero())
            reserved[static_cast<std::size_t>(i)].emplace_back(sturdy::detail::from_biased(d.ticket), 1);
        } else if (d.reason == sturdy::rate_limit_reason::cancelled) {
          cancelled.fetch_add(1, std::memory_order_relaxed);
        }
        if ((k & 15) == 0) clock.advance(duration(T / 4));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<admission> all;
  for (const auto& v : reserved) all.insert(all.end(), v.begin(), v.end());
  std::int64_t total = 0;
  for (const std::int64_t t : totals) total += t;
  ASSERT_FALSE(all.empty());
  ASSERT_GT(cancelled.load(), 0);
  EXPECT_LE(worst_window(all, T), kBurst * T);
  // Every turn is at most max_wait after the last time any thread read.
  const std::int64_t horizon = clock.now().time_since_epoch().count() + 3 * T;
  EXPECT_LE(total, horizon / T + kBurst);
}

}  // namespace
