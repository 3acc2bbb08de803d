// TSan stress of the call context's waits: threads blocked in a
// thread_sleeper, a retry's backoff sleep, a concurrency limiter's queue and
// an idempotency cache's wait for an in-flight duplicate, each woken only by
// its own sturdy::cancel_token fired from another thread (every wait is an
// hour long: a thread returns only because its token fired). Whether the
// token fires before or during the wait, the call returns its errc; no wait
// is lost, nothing races.
#include <atomic>
#include <chrono>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/context.hpp"
#include "sturdy/idempotency.hpp"
#include "sturdy/retry.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::call_context;
using sturdy::cancel_reason;
using sturdy::errc;

constexpr int kThreads = 8;
constexpr int kRounds = 20;

// Runs `wait(ctx)` (returning an error code) on kThreads threads, each with
// its own source, fires every source from this thread (half as cancelled,
// half as a deadline), and checks each call returned the errc of its reason.
template <class Wait>
void fire_all(Wait wait) {
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::unique_ptr<sturdy::cancel_source>> sources;
    for (int i = 0; i < kThreads; ++i) sources.push_back(std::make_unique<sturdy::cancel_source>());
    std::vector<std::error_code> got(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] { got[i] = wait(call_context{.token = sources[i]->token()}); });
    }
    for (int i = 0; i < kThreads; ++i) {
      sources[i]->request(i % 2 == 0 ? cancel_reason::cancelled : cancel_reason::deadline);
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
      EXPECT_EQ(got[i], sturdy::make_error_code(i % 2 == 0 ? errc::cancelled : errc::deadline_exceeded))
          << "thread " << i;
    }
  }
}

TEST(ContextFlowStressTest, ThreadSleepersAreWokenByTheirTokens) {
  const sturdy::thread_sleeper sleeper;
  fire_all([&](const call_context& ctx) {
    return sleeper.sleep_for(1h, ctx.token) ? std::error_code{} : sturdy::make_error_code(sturdy::to_errc(ctx.token.reason()));
  });
}

TEST(ContextFlowStressTest, RetryBackoffSleepsAreWokenByTheirTokens) {
  const sturdy::retry_policy<> policy({.max_attempts = 3, .backoff = sturdy::backoff::constant(1h)});
  fire_all([&](const call_context& ctx) {
    auto r = policy.execute([]() -> sturdy::result<int> { return std::make_error_code(std::errc::io_error); }, ctx);
    return r.error();
  });
}

TEST(ContextFlowStressTest, LimiterWaitersAreWokenByTheirTokens) {
  sturdy::concurrency_limiter<> limiter({.max_queue = kThreads, .max_wait = 1h},
                                       sturdy::fixed_limit({.limit = 1}));
  std::vector<sturdy::concurrency_limiter<>::permit> permits;  // every permit held: callers queue
  while (true) {
    auto more = limiter.acquire(0s);
    if (!more) break;
    permits.push_back(std::move(more).value());
  }
  std::atomic<int> ran{0};
  fire_all([&](const call_context& ctx) {
    auto r = limiter.execute([&] { return ++ran; }, ctx);
    return r.error();
  });
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(limiter.queued(), 0u);
}

TEST(ContextFlowStressTest, CacheWaitersAreWokenByTheirTokens) {
  sturdy::idempotency_cache<int> cache({});
  auto owner = cache.store().begin("k", 1, 1h);
  ASSERT_EQ(owner.value().status, sturdy::begin_status::acquired);
  const sturdy::idempotency_policy waiting{.in_flight = sturdy::in_flight_policy::wait, .wait_timeout = 1h};
  std::atomic<int> ran{0};
  fire_all([&](const call_context& ctx) {
    auto r = cache.execute("k", 1, waiting, [&] { return ++ran; }, ctx);
    return r.result.error();
  });
  EXPECT_EQ(ran.load(), 0);
}

}  // namespace
