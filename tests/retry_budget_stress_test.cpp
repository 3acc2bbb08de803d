// Budgets and a shared retry policy hammered from several threads. Run
// under ThreadSanitizer by the `concurrency` ctest label.
#include <atomic>
#include <cstdint>
#include <random>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "support/stress.hpp"

namespace {

using sturdy::attempt_outcome;
using sturdy::testing::manual_clock;

constexpr int kThreads = 4;

template <class F>
void run_threads(F&& body) {
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      body(t);
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
}

TEST(TokenBucketStressTest, NoLostUpdatesAndNeverOutOfRange) {
  const std::uint64_t n = sturdy::test::stress_iterations(1'000'000);
  // Failures only, fewer than the bucket holds: the count is exact.
  {
    sturdy::token_bucket_budget b({.max_tokens = 1000, .token_ratio = 0.001});
    run_threads([&](int) {
      for (int i = 0; i < 200; ++i) b.record_failure();
    });
    EXPECT_EQ(b.milli_tokens(), (1000u - kThreads * 200u) * 1000u);
    // Successes only from there, fewer than fill it: exact again.
    run_threads([&](int) {
      for (int i = 0; i < 1000; ++i) b.record_success();
    });
    EXPECT_EQ(b.milli_tokens(), (1000u - kThreads * 200u) * 1000u + kThreads * 1000u);
  }
  // Mixed: every observation stays within [0, max].
  sturdy::token_bucket_budget b({.max_tokens = 10, .token_ratio = 0.5});
  std::atomic<bool> out_of_range{false};
  std::atomic<std::uint64_t> allowed{0};
  run_threads([&](int t) {
    std::mt19937_64 gen(static_cast<std::uint64_t>(t) + 1);
    for (std::uint64_t i = 0; i < n; ++i) {
      if (gen() % 3 == 0) {
        b.on_outcome(attempt_outcome::success);
      } else {
        b.on_outcome(attempt_outcome::failure);
      }
      if (b.try_retry(0)) allowed.fetch_add(1, std::memory_order_relaxed);
      const auto m = b.milli_tokens();
      if (m > 10'000u) out_of_range.store(true);
    }
  });
  EXPECT_FALSE(out_of_range.load());
  EXPECT_GT(allowed.load(), 0u);
}

TEST(RatioBudgetStressTest, ConcurrentRetriesNeverOvershootTheShare) {
  const std::uint64_t n = sturdy::test::stress_iterations(500'000);
  manual_clock clock;  // frozen: one window for the whole run
  const sturdy::ratio_budget_options opts{.ratio = 0.1, .window = std::chrono::seconds(10),
                                          .min_retries_per_second = 5};
  sturdy::ratio_budget<manual_clock> b(opts, clock);
  std::atomic<std::uint64_t> granted{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<bool> overshoot{false};
  run_threads([&](int) {
    for (std::uint64_t i = 0; i < n; ++i) {
      b.record_request();
      requests.fetch_add(1, std::memory_order_acq_rel);
      for (int r = 0; r < 2; ++r) {
        if (!b.try_acquire_retry()) break;
        const std::uint64_t g = granted.fetch_add(1, std::memory_order_acq_rel) + 1;
        // The grants so far fit the share of the requests recorded so far
        // (the budget may be ahead of `requests` by one in-flight request
        // per thread).
        const std::uint64_t req = requests.load(std::memory_order_acquire);
        if (static_cast<double>(g) > b.allowance(req + kThreads)) overshoot.store(true);
      }
    }
  });
  EXPECT_FALSE(overshoot.load());
  const auto now = clock.now();
  EXPECT_EQ(b.requests_in_window(now), requests.load());  // no lost increments
  EXPECT_EQ(b.retries_in_window(now), granted.load());    // every denial undone exactly
  EXPECT_LE(static_cast<double>(granted.load()), b.allowance(requests.load()));
  EXPECT_GE(static_cast<double>(granted.load()), b.allowance(requests.load()) * 0.95);
}

TEST(RatioBudgetStressTest, WindowRollsOverWhileHammered) {
  const std::uint64_t n = sturdy::test::stress_iterations(250'000);
  manual_clock clock;
  sturdy::ratio_budget<manual_clock> b({.ratio = 0.5, .window = std::chrono::milliseconds(100),
                                        .min_retries_per_second = 0},
                                       clock);
  run_threads([&](int t) {
    for (std::uint64_t i = 0; i < n; ++i) {
      b.record_request();
      (void)b.try_acquire_retry();
      if (t == 0 && i % 64 == 0) clock.advance(std::chrono::milliseconds(3));
    }
  });
  // Slices expired and were reused under contention; the counts of the
  // live window stay plausible (each is at most what was ever recorded).
  const auto now = clock.now();
  EXPECT_GT(b.requests_in_window(now), 0u);
  EXPECT_LE(b.requests_in_window(now), kThreads * n);
  EXPECT_LE(b.retries_in_window(now), kThreads * n);
}

TEST(AdaptiveThrottleStressTest, CountsEveryRequestAndAccept) {
  const std::uint64_t n = sturdy::test::stress_iterations(500'000);
  manual_clock clock;
  sturdy::adaptive_throttle<manual_clock> t({}, clock);
  std::atomic<std::uint64_t> admitted{0};
  run_threads([&](int id) {
    std::mt19937_64 gen(static_cast<std::uint64_t>(id) + 100);
    for (std::uint64_t i = 0; i < n; ++i) {
      t.on_attempt(false);
      t.on_outcome(i % 4 == 0 ? attempt_outcome::success : attempt_outcome::failure);
      if (t.try_retry(gen())) {
        // The protocol: an admitted retry is sent and counted with its outcome.
        admitted.fetch_add(1, std::memory_order_relaxed);
        t.on_attempt(true);
        t.on_outcome(attempt_outcome::failure);
      }
    }
  });
  const auto now = clock.now();
  EXPECT_EQ(t.requests_in_window(now), 2 * kThreads * n);
  EXPECT_EQ(t.accepts_in_window(now), kThreads * ((n + 3) / 4));
  EXPECT_GT(admitted.load(), 0u);
  EXPECT_LT(admitted.load(), kThreads * n);
}

TEST(RetryPolicyStressTest, SharedPolicyWithDefaultGeneratorAndBudget) {
  const std::uint64_t n = sturdy::test::stress_iterations(100'000);
  sturdy::token_bucket_budget budget({.max_tokens = 100, .token_ratio = 1});
  // Zero delays: the default thread_sleeper returns at once. Full jitter of
  // zero still draws from the thread-local generator on every retry.
  const sturdy::retry_policy<> policy(sturdy::retry_options{
      .max_attempts = 3,
      .backoff = {.jitter = sturdy::jitter::decorrelated, .base = sturdy::duration::zero(),
                  .cap = sturdy::duration::zero()},
      .budget = budget});
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> calls{0};
  run_threads([&](int) {
    std::uint64_t local = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      auto r = policy.execute([&]() -> sturdy::result<std::uint64_t> {
        calls.fetch_add(1, std::memory_order_relaxed);
        if (++local % 3 != 0) return std::make_error_code(std::errc::resource_unavailable_try_again);
        return local;
      });
      if (r) ok.fetch_add(1, std::memory_order_relaxed);
    }
  });
  EXPECT_GT(ok.load(), 0u);
  EXPECT_GE(calls.load(), kThreads * n);
  EXPECT_LE(calls.load(), 3 * kThreads * n);
  EXPECT_LE(budget.milli_tokens(), 100'000u);
}

}  // namespace
