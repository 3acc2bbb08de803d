// Concurrency stress tests of sturdy::concurrency_limiter (run under TSan).
// Threads acquire (without waiting, waiting with short real-time bounds,
// waiting until cancelled by another thread) while others release; the
// invariants:
//   - in flight never exceeds the limit (counted by the holders themselves);
//   - every waiter node is woken at most once, and exactly once when it was
//     handed a permit; every wait ends (the threads join);
//   - after quiescence in_flight == 0, queued == 0 and the capacity is the
//     limit (no permit leaked to a waiter that left).
#include "sturdy/concurrency_limiter.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <stop_token>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/stress.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::errc;
using sturdy::limiter_waiter;
using sturdy::wait_status;

constexpr int kThreads = 6;
constexpr std::uint32_t kLimit = 3;

// Holders count themselves in and out around their permit.
struct holders {
  std::atomic<std::uint32_t> now{0};
  std::atomic<std::uint32_t> max{0};
  void enter() {
    const std::uint32_t n = now.fetch_add(1, std::memory_order_acq_rel) + 1;
    std::uint32_t m = max.load(std::memory_order_relaxed);
    while (n > m && !max.compare_exchange_weak(m, n, std::memory_order_relaxed)) {
    }
  }
  void leave() { now.fetch_sub(1, std::memory_order_acq_rel); }
};

template <class Limiter>
void check_quiescent(Limiter& l, std::uint32_t limit) {
  EXPECT_EQ(l.in_flight(), 0u);
  EXPECT_EQ(l.queued(), 0u);
  std::vector<typename Limiter::permit> all;
  for (std::uint32_t i = 0; i < limit; ++i) {
    auto r = l.try_acquire();
    ASSERT_TRUE(r) << "capacity shrank";
    all.push_back(std::move(r).value());
  }
  EXPECT_FALSE(l.try_acquire()) << "capacity grew";
}

TEST(ConcurrencyLimiterStressTest, BlockingWaitersTimingOutAndCancelledNeverBreakTheLimit) {
  for (auto order : {sturdy::queue_order::fifo, sturdy::queue_order::lifo}) {
    sturdy::concurrency_limiter<> l({.max_queue = 8, .order = order}, sturdy::fixed_limit({.limit = kLimit}));
    holders h;
    const std::uint64_t iterations = sturdy::test::stress_iterations(20'000);
    std::atomic<std::uint64_t> granted{0}, limited{0}, cancelled{0};
    std::atomic<bool> done{false};
    struct slot {
      std::mutex mu;
      std::stop_source source;
    };
    std::vector<slot> slots(kThreads);
    std::vector<std::thread> threads;
    // A canceller requests stop on random workers' current sources.
    std::thread canceller([&] {
      std::mt19937 gen(99);
      while (!done.load(std::memory_order_acquire)) {
        slot& s = slots[gen() % kThreads];
        {
          std::lock_guard lock(s.mu);
          s.source.request_stop();
        }
        std::this_thread::yield();
      }
    });
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 gen(static_cast<unsigned>(t) + 1);
        for (std::uint64_t i = 0; i < iterations / kThreads; ++i) {
          std::stop_token token;
          {
            slot& mine = slots[static_cast<std::size_t>(t)];
            std::lock_guard lock(mine.mu);
            if (mine.source.stop_requested()) mine.source = std::stop_source();
            token = mine.source.get_token();
          }
          const unsigned kind = gen() % 4;
          sturdy::result<decltype(l)::permit> r = make_error_code(errc::limit_exceeded);
          if (kind == 0) {
            r = l.try_acquire();
          } else if (kind == 1) {
            r = l.acquire(std::chrono::microseconds(gen() % 50));
          } else {
            r = l.acquire(1h, token);
          }
          if (!r) {
            (r.error() == errc::cancelled ? cancelled : limited).fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          granted.fetch_add(1, std::memory_order_relaxed);
          h.enter();
          std::this_thread::yield();
          h.leave();
          r.value().record(static_cast<sturdy::limit_outcome>(gen() % 3));
        }
      });
    }
    for (auto& th : threads) th.join();
    done.store(true, std::memory_order_release);
    canceller.join();
    EXPECT_LE(h.max.load(), kLimit);
    EXPECT_GT(granted.load(), 0u);
    EXPECT_EQ(granted + limited + cancelled, iterations / kThreads * kThreads);
    check_quiescent(l, kLimit);
  }
}

// The core API with nodes whose wake-ups are counted: each node is woken at
// most once, exactly once if it was handed a permit, never after it left.
struct counted_node {
  std::atomic<int> wakes{0};
  limiter_waiter node{[](limiter_waiter& w) noexcept {
                        static_cast<counted_node*>(w.context())->wakes.fetch_add(1, std::memory_order_relaxed);
                      },
                      this};
};

TEST(ConcurrencyLimiterStressTest, NoWaiterIsWokenTwiceOrNever) {
  sturdy::concurrency_limiter<sturdy::aimd_limit> l(
      {.max_queue = 16}, sturdy::aimd_limit({.initial_limit = kLimit, .min_limit = 1, .max_limit = 6}));
  holders h;
  const std::uint64_t iterations = sturdy::test::stress_iterations(20'000);
  std::atomic<std::uint64_t> twice{0}, never{0}, woken_after_leaving{0}, over_limit{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 gen(static_cast<unsigned>(t) + 7);
      for (std::uint64_t i = 0; i < iterations / kThreads; ++i) {
        counted_node n;
        wait_status s = l.enqueue(n.node, std::chrono::microseconds(1 + gen() % 100));
        const bool queued = s == wait_status::waiting;
        const int give_up_after = static_cast<int>(gen() % 200);
        for (int spins = 0; s == wait_status::waiting; ++spins) {
          std::this_thread::yield();
          s = spins == give_up_after ? (l.leave(n.node) ? wait_status::cancelled : wait_status::granted)
                                     : l.poll(n.node, false);
        }
        if (s == wait_status::granted) {
          // Woken exactly once when it was queued; never when enqueue granted.
          const int w = n.wakes.load(std::memory_order_relaxed);
          if (w > 1) twice.fetch_add(1);
          if (queued && w == 0) never.fetch_add(1);
          if (!queued && w != 0) twice.fetch_add(1);
          auto p = l.adopt(n.node);
          h.enter();
          if (h.now.load() > 6) over_limit.fetch_add(1);  // 6 = max_limit
          std::this_thread::yield();
          h.leave();
          p.record(static_cast<sturdy::limit_outcome>(gen() % 3));
        } else if (n.wakes.load(std::memory_order_relaxed) != 0) {
          woken_after_leaving.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(twice.load(), 0u);
  EXPECT_EQ(never.load(), 0u);
  EXPECT_EQ(woken_after_leaving.load(), 0u);
  EXPECT_EQ(over_limit.load(), 0u);
  EXPECT_EQ(l.in_flight(), 0u);
  EXPECT_EQ(l.queued(), 0u);
}

TEST(ConcurrencyLimiterStressTest, PartitionedLimiterKeepsCountsExact) {
  sturdy::concurrency_limiter<> l({.max_queue = 8, .partitions = {{"live", 0.75}, {"batch", 0.25}}},
                                  sturdy::fixed_limit({.limit = 4}));
  holders h;
  const std::uint64_t iterations = sturdy::test::stress_iterations(20'000);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 gen(static_cast<unsigned>(t) + 31);
      const sturdy::partition_id p{static_cast<std::uint32_t>(t % 2)};
      for (std::uint64_t i = 0; i < iterations / kThreads; ++i) {
        auto r = gen() % 2 ? l.try_acquire(p) : l.acquire(std::chrono::microseconds(gen() % 30), {}, sturdy::time_point::max(), p);
        if (!r) continue;
        h.enter();
        std::this_thread::yield();
        h.leave();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(h.max.load(), 4u);
  EXPECT_EQ(l.in_flight(sturdy::partition_id{0}), 0u);
  EXPECT_EQ(l.in_flight(sturdy::partition_id{1}), 0u);
  check_quiescent(l, 4);
}

}  // namespace

// try_acquire admits with one fetch_add and takes it back when refused. A
// release that hands its slot to a waiter while such a refusal is in
// progress sees no room (the refused increment still counts); the refusal's
// undo must then serve the waiter, or it would wait for the next release.
// The one permit is passed from caller to waiter round after round (it is
// never free, so the hammering threads are always refused) while two
// a thread hammers try_acquire: every waiter gets it.
TEST(ConcurrencyLimiterStressTest, RefusedTryAcquireNeverStrandsAWaiter) {
  using limiter = sturdy::concurrency_limiter<>;
  limiter l({.max_queue = 1}, sturdy::fixed_limit({.limit = 1}));
  const std::uint64_t rounds = 300;  // a stranded waiter showed within 3 rounds when the undo served nobody
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> admitted{0};
  auto first = l.try_acquire();
  ASSERT_TRUE(first);
  limiter::permit held = std::move(first).value();
  std::vector<std::thread> hammers;
  for (int t = 0; t < 1; ++t) {  // one: more would starve the waiter threads on small machines
    hammers.emplace_back([&] {
      while (!done.load(std::memory_order_acquire)) {
        auto r = l.try_acquire();
        (r ? admitted : refused).fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (std::uint64_t i = 0; i < rounds; ++i) {
    limiter::permit next;
    std::thread waiter([&] {
      // Bounded so a stranded waiter fails the test instead of hanging it;
      // served within microseconds when the hand-over works.
      auto r = l.acquire(std::chrono::seconds(20));
      if (r) next = std::move(r).value();
    });
    while (l.queued() == 0) std::this_thread::yield();
    held.record_success();
    waiter.join();
    ASSERT_TRUE(next.active()) << "round " << i << ": the waiter was stranded";
    held = std::move(next);
  }
  done.store(true, std::memory_order_release);
  for (auto& th : hammers) th.join();
  held.record_success();
  EXPECT_EQ(admitted.load(), 0u);  // the permit was never free
  EXPECT_GT(refused.load(), rounds);
  check_quiescent(l, 1);
}
