// Concurrency stress of sturdy/idempotency.hpp (ctest label `concurrency`,
// run under TSan): exactly-once per key with 8 threads racing, an exception
// never lost while waiters take over, and mixed keys with eviction. Real
// clock and thread_sleeper: waiting duplicates park and are woken. Then the
// replay path of the memory store (its shard's read lock) against every
// write path, on a shared manual clock.
#include <atomic>
#include <barrier>
#include <cstdint>
#include <functional>
#include <future>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/idempotency.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
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

// A value whose copy runs `on_copy` once when armed: lets a test act while a
// replay copies the value out with its shard locked.
struct copy_probe {
  static inline std::function<void()> on_copy;
  int v = 0;
  explicit copy_probe(int x) : v(x) {}
  copy_probe(const copy_probe& o) : v(o.v) {
    if (auto hook = std::exchange(on_copy, nullptr)) hook();
  }
  copy_probe(copy_probe&&) noexcept = default;
  copy_probe& operator=(const copy_probe&) = default;
  copy_probe& operator=(copy_probe&&) noexcept = default;
  ~copy_probe() = default;
};

TEST(IdempotencyStressTest, AReplayHoldsOnlyTheReadLockSoAnotherReplayOfTheKeyOverlapsIt) {
  sturdy::memory_idempotency_store<copy_probe> store({.shards = 1, .max_entries = 16});
  auto b = store.begin("k", 1, 60s).value();
  ASSERT_TRUE(store.complete("k", b.token, copy_probe(7), 1h).has_value());
  std::future<int> other;
  std::future_status overlapped = std::future_status::timeout;
  copy_probe::on_copy = [&] {
    // Inside the first replay's copy, its shard locked: a second replay of
    // the same key on another thread completes at once under a shared lock;
    // under an exclusive one it would wait for this copy, past the bound.
    other = std::async(std::launch::async, [&] { return store.begin("k", 1, 60s).value().value->v; });
    overlapped = other.wait_for(30s);
  };
  auto first = store.begin("k", 1, 60s);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first.value().value->v, 7);
  EXPECT_EQ(overlapped, std::future_status::ready);
  EXPECT_EQ(other.get(), 7);
  EXPECT_EQ(store.stats().hits, 2U);
}

TEST(IdempotencyStressTest,
     ReplaysRacingCompletionsEvictionsAndExpiryReturnOnlyStoredValuesAndCountEveryHit) {
  // Two threads replay 16 hot keys (completing those they acquire, with a
  // short TTL, and moving the shared clock so TTLs run out) while a third
  // churns unique keys through a tiny bound (constant eviction) and a fourth
  // reads stats and memory usage: read-side replays race every write path.
  const auto ops = sturdy::test::stress_iterations(200'000);
  using store_t =
      sturdy::memory_idempotency_store<sturdy::outcome<std::uint64_t>, sturdy::testing::manual_clock>;
  sturdy::testing::manual_clock clock;
  store_t store({.shards = 2, .max_entries = 32}, clock);
  std::atomic<std::uint64_t> bad{0};
  std::atomic<std::uint64_t> replays{0};
  std::atomic<bool> done{false};
  const auto check = [&](const sturdy::result<sturdy::begin_outcome<sturdy::outcome<std::uint64_t>>>& b,
                         std::uint64_t expected) {
    if (!b.has_value()) {
      if (b.error() != sturdy::errc::capacity_exceeded) bad.fetch_add(1);
      return false;
    }
    if (b.value().status == sturdy::begin_status::mismatch) bad.fetch_add(1);
    if (b.value().status != sturdy::begin_status::completed) return false;
    replays.fetch_add(1, std::memory_order_relaxed);
    if (!b.value().value.has_value() || b.value().value->value() != expected) bad.fetch_add(1);
    return true;
  };
  const auto finish = [&](std::string_view key, sturdy::fencing_token token, std::uint64_t v,
                          sturdy::duration ttl) {
    auto c = store.complete(key, token, sturdy::outcome<std::uint64_t>(v), ttl);
    // stale_token: the 1 s lease ran out on the moving clock and the entry
    // was evicted or taken over.
    if (!c.has_value() && c.error() != sturdy::errc::stale_token) bad.fetch_add(1);
  };
  auto replayer = [&](std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    for (std::uint64_t i = 0; i < ops / 4; ++i) {
      if ((i & 63) == 0) clock.advance(1ms);
      const std::uint64_t k = gen() % 16;
      const std::string key = numbered("hot-", static_cast<long long>(k));
      auto b = store.begin(key, k, 1s);
      if (check(b, k * 31) || !b.has_value() || b.value().status != sturdy::begin_status::acquired) continue;
      if ((gen() & 7) == 0) {
        auto a = store.abandon(key, b.value().token);
        if (!a.has_value() && a.error() != sturdy::errc::stale_token) bad.fetch_add(1);
      } else {
        finish(key, b.value().token, k * 31, 20ms);
      }
    }
  };
  auto churn = [&] {
    for (std::uint64_t i = 0; i < ops / 4; ++i) {
      const std::string key = numbered("cold-", static_cast<long long>(i));
      auto b = store.begin(key, i, 1s);
      if (!b.has_value() || b.value().status != sturdy::begin_status::acquired) {
        (void)check(b, i * 31);
        continue;
      }
      finish(key, b.value().token, i * 31, 1h);
      auto again = store.begin(key, i, 1s);  // a replay, or evicted meanwhile: acquired
      if (!check(again, i * 31) && again.has_value() &&
          again.value().status == sturdy::begin_status::acquired)
        (void)store.abandon(key, again.value().token);
    }
  };
  auto reader = [&] {
    while (!done.load()) {
      if (store.stats().entries > 32) bad.fetch_add(1);
      const std::size_t bytes = store.memory_usage();
      sturdy::testing::escape(&bytes);
      std::this_thread::yield();
    }
  };
  std::thread r(reader);
  std::vector<std::thread> threads;
  threads.emplace_back(replayer, 11);
  threads.emplace_back(replayer, 12);
  threads.emplace_back(churn);
  for (auto& th : threads) th.join();
  done.store(true);
  r.join();
  EXPECT_EQ(bad.load(), 0U);
  const auto st = store.stats();
  EXPECT_EQ(st.hits, replays.load());  // striped hits lose none
  EXPECT_LE(st.entries, 32U);
  EXPECT_GT(st.evictions, 0U);
  EXPECT_GT(st.expirations, 0U);
  EXPECT_GT(replays.load(), 0U);
}

}  // namespace
