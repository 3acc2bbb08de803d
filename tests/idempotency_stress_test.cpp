// Concurrency stress of sturdy/idempotency.hpp (ctest label `concurrency`,
// run under TSan): exactly-once per key with 8 threads racing, an exception
// never lost while waiters take over, and mixed keys with eviction. Real
// clock and thread_sleeper: waiting duplicates park and are woken.
#include <atomic>
#include <barrier>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/idempotency.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "support/stress.hpp"

namespace {

// `prefix` + `n`, built by appending: GCC 12 at -O3 raises a false
// -Wrestrict on `"literal" + std::to_string(n)`.
std::string numbered(std::string_view prefix, long long n) {
  std::string out(prefix);
  out += std::to_string(n);
  return out;
}

using namespace std::chrono_literals;

constexpr int kThreads = 8;

const sturdy::idempotency_policy kWait{.in_flight = sturdy::in_flight_policy::wait, .wait_timeout = 60s};

TEST(IdempotencyStressTest, EightThreadsRacingOnOneKeyRunFnExactlyOncePerRound) {
  const auto rounds = static_cast<int>(sturdy::test::stress_iterations(10000) / 2);
  sturdy::idempotency_cache<std::uint64_t> cache({.policy = kWait}, {.shards = 8, .max_entries = 1 << 16});
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(rounds));
  std::vector<std::uint64_t> seen(static_cast<std::size_t>(rounds) * kThreads);
  std::atomic<int> replays{0};
  std::barrier sync(kThreads);
  auto worker = [&](int t) {
    for (int round = 0; round < rounds; ++round) {
      sync.arrive_and_wait();
      const std::string key = numbered("round-", round);
      auto r = cache.execute(key, 1, [&] {
        runs[static_cast<std::size_t>(round)].fetch_add(1, std::memory_order_relaxed);
        return static_cast<std::uint64_t>(round) * 7919U + static_cast<std::uint64_t>(t);
      });
      ASSERT_TRUE(r.result.has_value()) << r.result.error().message();
      if (r.replayed) replays.fetch_add(1, std::memory_order_relaxed);
      seen[static_cast<std::size_t>(round) * kThreads + static_cast<std::size_t>(t)] = r.result.value();
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  for (int round = 0; round < rounds; ++round) {
    ASSERT_EQ(runs[static_cast<std::size_t>(round)].load(), 1) << "round " << round;
    const auto first = seen[static_cast<std::size_t>(round) * kThreads];
    for (int t = 1; t < kThreads; ++t) {
      ASSERT_EQ(seen[static_cast<std::size_t>(round) * kThreads + static_cast<std::size_t>(t)], first)
          << "round " << round;
    }
  }
  EXPECT_EQ(replays.load(), rounds * (kThreads - 1));
  EXPECT_EQ(cache.stats().misses, static_cast<std::uint64_t>(rounds));
}

TEST(IdempotencyStressTest, ThrowingOwnerIsRetriedByOneWaiterAndNoExceptionIsLost) {
  const auto rounds = static_cast<int>(sturdy::test::stress_iterations(2000) / 2);
  sturdy::idempotency_cache<int> cache({.policy = kWait}, {.shards = 8, .max_entries = 1 << 16});
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(rounds));
  std::atomic<int> thrown{0};
  std::atomic<int> values{0};
  std::barrier sync(kThreads);
  auto worker = [&] {
    for (int round = 0; round < rounds; ++round) {
      sync.arrive_and_wait();
      const std::string key = numbered("r", round);
      try {
        auto r = cache.execute(key, 1, [&]() -> int {
          if (runs[static_cast<std::size_t>(round)].fetch_add(1) == 0) throw std::runtime_error("first");
          return round;
        });
        ASSERT_EQ(r.result.value(), round);
        values.fetch_add(1);
      } catch (const std::runtime_error&) {
        thrown.fetch_add(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker);
  for (auto& th : threads) th.join();
  for (int round = 0; round < rounds; ++round) ASSERT_EQ(runs[static_cast<std::size_t>(round)].load(), 2);
  EXPECT_EQ(thrown.load(), rounds);  // exactly the thrower saw the exception
  EXPECT_EQ(values.load(), rounds * (kThreads - 1));
}

TEST(IdempotencyStressTest, MixedKeysWithEvictionAndBothPoliciesStayConsistent) {
  const auto ops = sturdy::test::stress_iterations(200'000);
  // Small bound: constant eviction while other threads replay and wait.
  sturdy::idempotency_cache<std::uint64_t> cache({}, {.shards = 4, .max_entries = 64});
  std::atomic<std::uint64_t> bad{0};
  std::atomic<std::uint64_t> mismatches{0};
  auto worker = [&](std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    for (std::uint64_t i = 0; i < ops / 4; ++i) {
      const std::uint64_t k = gen() % 256;
      const std::string key = numbered("key-", k);
      const bool wait = (gen() & 1) != 0;
      sturdy::idempotency_policy p;
      if (wait) p = kWait;
      auto r = cache.execute(key, k, p, [k] { return k * 31; });
      // Every value ever stored for a key is k * 31, whoever ran it. Besides
      // values: in_progress (reject policy only), and key_mismatch when the
      // key was evicted and re-acquired by a mismatching payload below.
      if (r.result.has_value()) {
        if (r.result.value() != k * 31) bad.fetch_add(1);
      } else if (r.result.error() == sturdy::errc::key_mismatch) {
        mismatches.fetch_add(1);
      } else if (r.result.error() != sturdy::errc::in_progress || wait) {
        ADD_FAILURE() << r.result.error().message();
        bad.fetch_add(1);
      }
      if ((gen() & 63) == 0) {  // a mismatching payload now and then
        auto m = cache.execute(key, k + 1, [k] { return k * 31; });
        if (m.result.has_value() && m.result.value() != k * 31) bad.fetch_add(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 4; ++t) threads.emplace_back(worker, 42 + t);
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0U);
  const auto s = cache.stats();
  EXPECT_LE(s.entries, 64U);
  EXPECT_GT(s.evictions, 0U);
  EXPECT_GT(s.hits, 0U);
}

TEST(IdempotencyStressTest, LeasesRunningOutUnderEvictionKeepEveryValueConsistent) {
  // A lease far shorter than the work: owners are taken over, their entries
  // evicted, and late completions re-acquire keys, while a tiny bound keeps
  // the fail-fast bookkeeping of in-progress entries busy.
  const auto ops = sturdy::test::stress_iterations(40'000);
  sturdy::idempotency_cache<std::uint64_t> cache({.lease = 1us, .policy = kWait},
                                                 {.shards = 2, .max_entries = 8});
  std::atomic<std::uint64_t> bad{0};
  std::atomic<std::uint64_t> stored{0};
  auto worker = [&](std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    for (std::uint64_t i = 0; i < ops / 4; ++i) {
      const std::uint64_t k = gen() % 32;
      const std::string key = numbered("lk-", k);
      auto r = cache.execute(key, 1, [k] {
        std::uint64_t x = k;
        for (int j = 0; j < 200; ++j) x = x * 6364136223846793005ULL + 1;  // outlive the lease
        sturdy::testing::escape(&x);
        return k * 31;
      });
      if (r.result.has_value()) {
        if (r.result.value() != k * 31) bad.fetch_add(1);
        stored.fetch_add(1, std::memory_order_relaxed);
      } else if (r.result.error() != sturdy::errc::stale_token &&
                 r.result.error() != sturdy::errc::capacity_exceeded &&
                 r.result.error() != sturdy::errc::wait_timeout) {
        ADD_FAILURE() << r.result.error().message();
        bad.fetch_add(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 4; ++t) threads.emplace_back(worker, 7 + t);
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0U);
  EXPECT_GT(stored.load(), 0U);
  const auto st = cache.stats();
  EXPECT_LE(st.entries, 8U);
}

TEST(IdempotencyStressTest, ExpiredLeasesAreTakenOverOnceUnderContention) {
  // Owners that "crash" (never complete) with a short real lease; racing
  // callers take over: each takeover must hand the key to exactly one caller.
  const auto rounds = static_cast<int>(sturdy::test::stress_iterations(2000) / 10);
  sturdy::memory_idempotency_store<sturdy::outcome<int>> store({.shards = 4, .max_entries = 1 << 14});
  std::barrier sync(kThreads);
  std::vector<std::atomic<int>> acquired(static_cast<std::size_t>(rounds));
  auto worker = [&] {
    for (int round = 0; round < rounds; ++round) {
      const std::string key = numbered("lease-", round);
      sync.arrive_and_wait();
      auto b = store.begin(key, 1, 1ns);  // expires at once: every begin may take over
      ASSERT_TRUE(b.has_value());
      if (b.value().status == sturdy::begin_status::acquired) {
        acquired[static_cast<std::size_t>(round)].fetch_add(1);
        // Only the newest token may complete; older ones are refused.
        (void)store.complete(key, b.value().token, sturdy::outcome<int>(round), 1h);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker);
  for (auto& th : threads) th.join();
  for (int round = 0; round < rounds; ++round) {
    auto b = store.begin(numbered("lease-", round), 1, 1h);
    ASSERT_TRUE(b.has_value());
    // Someone completed it; once completed nobody acquires it again.
    ASSERT_EQ(b.value().status, sturdy::begin_status::completed);
    ASSERT_GE(acquired[static_cast<std::size_t>(round)].load(), 1);
  }
}

}  // namespace
