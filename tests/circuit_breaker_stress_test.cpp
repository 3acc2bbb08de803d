// Concurrency stress tests of sturdy::circuit_breaker (run under TSan).
// Several threads make millions of calls with random outcomes while others
// advance the clock; the invariants of issue 4 are checked:
//   - never more probes in flight than permitted per half-open generation;
//   - every admitted call is recorded exactly once (as a counted call, an
//     ignored one, or a stale one), every rejection is counted;
//   - no counts are lost in the closed state (measured after quiescence).
#include "sturdy/circuit_breaker.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/manual_clock.hpp"
#include "support/stress.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::breaker_state;
using sturdy::call_outcome;
using sturdy::testing::manual_clock;

constexpr int kThreads = 4;

struct tally {
  std::atomic<std::uint64_t> admitted{0}, rejected{0}, recorded{0}, counted{0}, failures{0}, slow{0},
      ignored{0};
};

TEST(CircuitBreakerStressTest, ClosedStateLosesNoCounts) {
  manual_clock clock;
  // Rules that cannot fire: the windows hold every call, minimum never met.
  sturdy::circuit_breaker<manual_clock> b({.consecutive_failure_threshold = 0,
                                           .failure_rate_threshold = 1.0,
                                           .slow_call_duration = 10ms,
                                           .count_window_size = 1'000'000,
                                           .time_window = 1h,
                                           .minimum_calls = 1'000'000},
                                          clock);
  const std::uint64_t per_thread = std::min<std::uint64_t>(sturdy::test::stress_iterations(200'000), 240'000);
  tally t;
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      start.arrive_and_wait();  // maximise overlap
      std::mt19937_64 gen(1000 + id);
      std::uniform_int_distribution<int> pct(0, 99);
      for (std::uint64_t i = 0; i < per_thread; ++i) {
        auto p = b.try_acquire();
        ASSERT_TRUE(p);
        const int r = pct(gen);
        if (r < 80) {
          b.record(p.value(), call_outcome::success);
          t.counted.fetch_add(1, std::memory_order_relaxed);
        } else if (r < 90) {
          b.record(p.value(), call_outcome::failure);
          t.counted.fetch_add(1, std::memory_order_relaxed);
          t.failures.fetch_add(1, std::memory_order_relaxed);
        } else if (r < 95) {
          b.record(p.value(), call_outcome::success, 20ms);  // slow
          t.counted.fetch_add(1, std::memory_order_relaxed);
          t.slow.fetch_add(1, std::memory_order_relaxed);
        } else {
          b.record(p.value(), call_outcome::ignored);
          t.ignored.fetch_add(1, std::memory_order_relaxed);
        }
        if (id == 0 && i % 1024 == 0) clock.advance(1ms);
        if (id == 1 && i % 4096 == 0) (void)b.metrics();  // snapshots race with records
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto m = b.metrics();
  EXPECT_EQ(m.state, breaker_state::closed);
  EXPECT_EQ(m.calls, t.counted.load());
  EXPECT_EQ(m.failures, t.failures.load());
  EXPECT_EQ(m.slow_calls, t.slow.load());
  EXPECT_EQ(m.ignored, t.ignored.load());
  EXPECT_EQ(m.stale, 0u);
  EXPECT_EQ(m.count_window.calls, t.counted.load());
  EXPECT_EQ(m.count_window.failures, t.failures.load());
  EXPECT_EQ(m.count_window.slow_calls, t.slow.load());
  EXPECT_EQ(m.time_window.calls, t.counted.load());
  EXPECT_EQ(m.time_window.failures, t.failures.load());
  EXPECT_EQ(m.time_window.slow_calls, t.slow.load());
}

// Folding per-thread counters into the windows must not invent bursts: with
// a steady 1-in-16 failure rate on every thread, a 50 % rate rule must never
// fire, however the folding thread is descheduled.
TEST(CircuitBreakerStressTest, FoldingCountersNeverInventsAFailureBurst) {
  sturdy::circuit_breaker<> b({.consecutive_failure_threshold = 0,
                               .failure_rate_threshold = 0.5,
                               .count_window_size = 100,
                               .minimum_calls = 100});
  const std::uint64_t per_thread = sturdy::test::stress_iterations(1'000'000);
  std::latch start(kThreads);
  std::atomic<std::uint64_t> rejected{0};
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (std::uint64_t i = 1; i <= per_thread; ++i) {
        auto p = b.try_acquire();
        if (!p) {
          rejected.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        b.record(p.value(), i % 16 == 0 ? call_outcome::failure : call_outcome::success);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(rejected.load(), 0u);
  EXPECT_EQ(b.state(), breaker_state::closed);
  const auto m = b.metrics();
  EXPECT_EQ(m.failures, per_thread / 16 * kThreads);
}

// An operator resetting, disabling or switching a busy closed breaker to
// metrics_only must not make the switch itself reject calls: every state
// involved admits every call, so no call may ever see circuit_open. Many
// stripes make each transition's counter sum long.
TEST(CircuitBreakerStressTest, ManualSwitchesBetweenAdmittingStatesNeverRejectACall) {
  // The rate rule is on (transitions sum the counters) but cannot fire: it
  // needs a window of a million calls that all failed.
  sturdy::circuit_breaker<> b({.consecutive_failure_threshold = 0,
                               .failure_rate_threshold = 1.0,
                               .count_window_size = 1'000'000,
                               .minimum_calls = 1'000'000,
                               .counter_stripes = 1024});
  const std::uint64_t per_thread = sturdy::test::stress_iterations(300'000);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> rejected{0}, recorded{0}, switches{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads - 1; ++id) {
    threads.emplace_back([&, id] {
      start.arrive_and_wait();
      std::mt19937_64 gen(3000 + id);
      for (std::uint64_t i = 0; i < per_thread; ++i) {
        auto p = b.try_acquire();
        if (!p) {
          rejected.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        b.record(p.value(), gen() % 8 == 0 ? call_outcome::failure : call_outcome::success);
        recorded.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  threads.emplace_back([&] {
    start.arrive_and_wait();
    for (std::uint64_t i = 0; !done.load(std::memory_order_relaxed); ++i) {
      switch (i % 3) {
        case 0: b.reset(); break;
        case 1: b.disable(); break;
        default: b.metrics_only(); break;
      }
      switches.fetch_add(1, std::memory_order_relaxed);
    }
  });
  for (int id = 0; id < kThreads - 1; ++id) threads[static_cast<std::size_t>(id)].join();
  done.store(true);
  threads.back().join();
  const auto m = b.metrics();
  EXPECT_GT(switches.load(), 0u);
  EXPECT_EQ(rejected.load(), 0u);
  EXPECT_EQ(m.rejections, 0u);
  EXPECT_EQ(m.calls + m.stale, recorded.load());
}

// Probes in flight per half-open generation, as seen by the test: raised
// after a probe permit is returned, lowered before it is recorded, so it never
// exceeds what the breaker itself holds.
struct probe_tracker {
  static constexpr std::size_t size = 1 << 16;
  std::unique_ptr<std::atomic<int>[]> in_flight = std::make_unique<std::atomic<int>[]>(size);
  std::atomic<int> worst{0};
  void admitted(std::uint64_t generation) {
    const int v = in_flight[generation % size].fetch_add(1, std::memory_order_relaxed) + 1;
    int w = worst.load(std::memory_order_relaxed);
    while (v > w && !worst.compare_exchange_weak(w, v, std::memory_order_relaxed)) {
    }
  }
  void done(std::uint64_t generation) { in_flight[generation % size].fetch_sub(1, std::memory_order_relaxed); }
};

void run_transitions(const sturdy::circuit_breaker_options& o, bool manual_changes, bool check_probes) {
  manual_clock clock;
  sturdy::circuit_breaker<manual_clock> b(o, clock);
  const std::uint64_t per_thread = sturdy::test::stress_iterations(250'000);
  tally t;
  probe_tracker probes;
  std::atomic<std::uint64_t> half_open_admissions{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      start.arrive_and_wait();
      std::mt19937_64 gen(2000 + id);
      std::uniform_int_distribution<int> pct(0, 99);
      for (std::uint64_t i = 0; i < per_thread; ++i) {
        const int r = pct(gen);
        if (r < 3) {
          clock.advance(std::chrono::microseconds(std::uniform_int_distribution<int>(1, 3000)(gen)));
          continue;
        }
        if (manual_changes && r == 3 && i % 64 == 0) {
          switch (std::uniform_int_distribution<int>(0, 3)(gen)) {
            case 0: b.force_open(); break;
            case 1: b.disable(); break;
            case 2: b.metrics_only(); break;
            default: b.reset(); break;
          }
          continue;
        }
        auto p = b.try_acquire();
        if (!p) {
          EXPECT_EQ(p.error(), sturdy::errc::circuit_open);
          t.rejected.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        t.admitted.fetch_add(1, std::memory_order_relaxed);
        const sturdy::breaker_permit permit = p.value();
        if (permit.is_probe()) {
          half_open_admissions.fetch_add(1, std::memory_order_relaxed);
          probes.admitted(permit.generation());
        }
        const int o2 = pct(gen);
        const call_outcome outcome =
            o2 < 60 ? call_outcome::success : (o2 < 92 ? call_outcome::failure : call_outcome::ignored);
        if (permit.is_probe()) probes.done(permit.generation());
        b.record(permit, outcome, std::chrono::milliseconds(o2 % 3));
        t.recorded.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto m = b.metrics();
  // Every admitted call was recorded once and landed in exactly one bucket.
  EXPECT_EQ(t.admitted.load(), t.recorded.load());
  EXPECT_EQ(m.calls + m.ignored + m.stale, t.recorded.load());
  EXPECT_EQ(m.rejections, t.rejected.load());
  if (check_probes) {
    EXPECT_LE(probes.worst.load(), static_cast<int>(o.half_open_probes));
    EXPECT_GT(half_open_admissions.load(), 0u);  // the test reached half_open
  }
}

TEST(CircuitBreakerStressTest, HalfOpenNeverAdmitsMoreProbesThanPermitted) {
  run_transitions({.consecutive_failure_threshold = 3,
                   .failure_rate_threshold = 0.5,
                   .count_window_size = 20,
                   .minimum_calls = 10,
                   .open_duration = 1ms,
                   .half_open_probes = 3,
                   .half_open_success_ratio = 0.6,
                   .probe_lease = 1h},
                  false, true);
}

TEST(CircuitBreakerStressTest, LeasesTimeWindowsAndManualChangesUnderContention) {
  run_transitions({.consecutive_failure_threshold = 4,
                   .failure_rate_threshold = 0.4,
                   .slow_call_duration = 1ms,
                   .slow_call_rate_threshold = 0.9,
                   .count_window_size = 50,
                   .time_window = 10ms,
                   .time_window_buckets = 5,
                   .minimum_calls = 5,
                   .open_duration = 500us,
                   .open_duration_growth = 2.0,
                   .max_open_duration = 5ms,
                   .half_open_probes = 2,
                   .probe_lease = 1ms},
                  true, false);
}

}  // namespace
