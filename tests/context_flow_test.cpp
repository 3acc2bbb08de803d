// Tests of the call context flowing through every layer (issue 14, phase 2):
// compose(timeout, retry, timeout, breaker) hands the innermost call the
// earliest deadline and a token that fires on caller cancellation or on a
// timeout; retry + per-attempt timeout + overall timeout with exact attempt
// counts, delays and deadlines; the breaker and the retry reading the
// context's token and deadline; make_policy middleware seeing the context;
// the std::stop_token wrappers; sleepers woken by sturdy's token. Time comes
// from the manual timer only.
#include <chrono>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/chaos.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/context.hpp"
#include "sturdy/idempotency.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/rate_limiter.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/manual_timer.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"
#include "sturdy/timeout.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::call_context;
using sturdy::cancel_reason;
using sturdy::duration;
using sturdy::errc;
using sturdy::result;
using sturdy::time_point;
using sturdy::testing::manual_clock;
using sturdy::testing::manual_timer;
using sturdy::testing::recording_listener;
using sturdy::testing::recording_sleeper;

using test_retry = sturdy::retry_policy<sturdy::backoff, manual_clock, recording_sleeper, recording_listener>;
using test_breaker = sturdy::circuit_breaker<manual_clock>;

result<int> io_error() { return sturdy::failure(std::make_error_code(std::errc::io_error)); }

struct seen {
  time_point deadline;
  std::uint32_t attempt;
  cancel_reason reason_at_return;
};

class ContextFlowTest : public ::testing::Test {
 protected:
  manual_timer timers;
  recording_sleeper sleeper{timers.clock()};
  recording_listener timeout_events;
  recording_listener retry_events;
  sturdy::timeout_policy<recording_listener> limit(duration t) {
    return sturdy::timeout_policy<recording_listener>({.timeout = t}, timers.service(), timeout_events);
  }
  test_retry retry(std::uint32_t attempts, duration backoff, sturdy::retry_budget_ref budget = {}) {
    return test_retry({.max_attempts = attempts, .backoff = sturdy::backoff::constant(backoff), .budget = budget},
                      timers.clock(), sleeper, retry_events);
  }
};

// The Tests bullet of issue 14: retry + per-attempt timeout + overall timeout
// together, with exact attempt counts, delays and the deadline each attempt
// receives. overall 140 ms > retry (5 attempts, 10 ms apart) > per attempt
// 50 ms > breaker > callee:
//   attempt 1, t=0:   deadline 50 (per attempt); ignores the token, returns
//                     at 60: deadline_exceeded (late), retried after 10 ms;
//   attempt 2, t=70:  deadline 120; fails on time at 90 (io_error);
//                     estimate (60+20)/2 = 40, 10 + 40 <= 50 left: retried;
//   attempt 3, t=100: deadline 140 (the overall one: 100 + 50 is later);
//                     the overall timer fires at 140 while it runs; the
//                     retry stops (its caller's token fired: deadline).
TEST_F(ContextFlowTest, RetryPerAttemptAndOverallTimeoutExactAttemptsDelaysAndDeadlines) {
  test_breaker breaker({}, timers.clock());
  auto pipeline = sturdy::compose(limit(140ms), retry(5, 10ms), limit(50ms), breaker);
  const time_point start = timers.now();
  std::vector<seen> calls;
  auto r = pipeline.execute([&](const call_context& ctx) -> result<int> {
    switch (ctx.attempt) {
      case 1:
        timers.advance(60ms);
        break;
      case 2:
        timers.advance(20ms);
        break;
      default:
        timers.advance(40ms);
        break;
    }
    calls.push_back({ctx.deadline.at(), ctx.attempt, ctx.token.reason()});
    return io_error();
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].deadline, start + 50ms);
  EXPECT_EQ(calls[1].deadline, start + 120ms);
  EXPECT_EQ(calls[2].deadline, start + 140ms);  // an inner layer only shortens
  EXPECT_EQ(calls[0].attempt, 1u);
  EXPECT_EQ(calls[1].attempt, 2u);
  EXPECT_EQ(calls[2].attempt, 3u);
  EXPECT_EQ(calls[0].reason_at_return, cancel_reason::deadline);  // the per-attempt timer
  EXPECT_EQ(calls[1].reason_at_return, cancel_reason::none);
  EXPECT_EQ(calls[2].reason_at_return, cancel_reason::deadline);  // the overall timer, through the link
  EXPECT_EQ(sleeper.delays(), (std::vector<duration>{10ms, 10ms}));
  EXPECT_EQ(timers.now() - start, 140ms);
  EXPECT_EQ(retry_events.count<sturdy::retry_deadline_exceeded>(), 1u);
  EXPECT_EQ(retry_events.count<sturdy::retry_scheduled>(), 2u);
  EXPECT_EQ(retry_events.count<sturdy::retries_exhausted>(), 0u);
  // Per attempt: attempts 1 and 3 (its token fired while it ran); overall: once.
  EXPECT_EQ(timeout_events.count<sturdy::timeout_expired>(), 3u);
  EXPECT_EQ(breaker.metrics().failures, 3u);
}

// Retry never starts an attempt it cannot finish: the caller's deadline
// (not max_elapsed) is what it plans against.
TEST_F(ContextFlowTest, RetryStopsBeforeAnAttemptThatCannotFinishByTheCallersDeadline) {
  auto policy = retry(10, 30ms);
  const time_point start = timers.now();
  const call_context ctx{.deadline = sturdy::deadline::at(start + 100ms, timers.service().clock())};
  std::vector<seen> calls;
  auto r = policy.execute(
      [&](const call_context& c) -> result<int> {
        calls.push_back({c.deadline.at(), c.attempt, c.token.reason()});
        timers.advance(25ms);
        return io_error();
      },
      ctx);
  // t=25: estimate 25, 30 + 25 <= 75 left: sleep to 55; t=80: 30 + 25 > 20: stop.
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].deadline, start + 100ms);
  EXPECT_EQ(calls[1].deadline, start + 100ms);
  EXPECT_EQ(calls[1].attempt, 2u);
  EXPECT_EQ(sleeper.delays(), (std::vector<duration>{30ms}));
  EXPECT_EQ(retry_events.count<sturdy::retry_deadline_exceeded>(), 1u);
}

TEST_F(ContextFlowTest, RetryMaxElapsedAndContextDeadlineTheEarlierIsHandedDown) {
  auto policy = test_retry({.max_attempts = 1, .max_elapsed = 30ms}, timers.clock(), sleeper, retry_events);
  const time_point start = timers.now();
  time_point got{};
  const call_context later{.deadline = sturdy::deadline::at(start + 100ms, timers.service().clock())};
  (void)policy.execute([&](const call_context& c) { got = c.deadline.at(); return 1; }, later);
  EXPECT_EQ(got, start + 30ms);
  const call_context earlier{.deadline = sturdy::deadline::at(start + 10ms, timers.service().clock())};
  (void)policy.execute([&](const call_context& c) { got = c.deadline.at(); return 1; }, earlier);
  EXPECT_EQ(got, start + 10ms);
  // A context whose deadline has passed: never called.
  timers.advance(10ms);
  int called = 0;
  auto r = policy.execute([&] { return ++called; }, earlier);
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  EXPECT_EQ(called, 0);
}

TEST_F(ContextFlowTest, RetryTellsCallerCancellationFromADeadlineAndOnlyTheDeadlineCostsBudget) {
  sturdy::token_bucket_budget budget({.max_tokens = 10, .token_ratio = 1});
  auto policy = retry(5, 10ms, budget);
  const auto before = budget.tokens();
  {
    sturdy::cancel_source caller;
    auto r = policy.execute(
        [&]() -> result<int> {
          caller.request_stop();
          return io_error();
        },
        call_context{.token = caller.token()});
    EXPECT_EQ(r.error(), errc::cancelled);
    EXPECT_EQ(budget.tokens(), before);  // neutral
    EXPECT_EQ(retry_events.count<sturdy::retry_cancelled>(), 1u);
  }
  {
    sturdy::cancel_source timer;
    auto r = policy.execute(
        [&]() -> result<int> {
          timer.request(cancel_reason::deadline);
          return io_error();
        },
        call_context{.token = timer.token()});
    EXPECT_EQ(r.error(), errc::deadline_exceeded);
    EXPECT_LT(budget.tokens(), before);  // a failure
    EXPECT_EQ(retry_events.count<sturdy::retry_deadline_exceeded>(), 1u);
  }
  // A token fired before the call: nothing is called, each reason its errc.
  sturdy::cancel_source done;
  done.request(cancel_reason::deadline);
  int called = 0;
  EXPECT_EQ(policy.execute([&] { return ++called; }, call_context{.token = done.token()}).error(),
            errc::deadline_exceeded);
  EXPECT_EQ(called, 0);
}

TEST_F(ContextFlowTest, RetrySleepIsCutShortByTheContextToken) {
  auto policy = retry(3, 10ms);
  sturdy::cancel_source caller;
  sleeper.on_sleep([&](duration) { caller.request_stop(); });
  auto r = policy.execute([] { return io_error(); }, call_context{.token = caller.token()});
  EXPECT_EQ(r.error(), errc::cancelled);
  EXPECT_EQ(sleeper.cancelled_count(), 1u);
  EXPECT_EQ(sleeper.count(), 0u);
}

// compose(retry, timeout, breaker) with the caller cancelling mid-call: the
// innermost token fires with `cancelled`, everything reports errc::cancelled,
// and the breaker records the failure as ignored (the dependency did not fail).
TEST_F(ContextFlowTest, CallerCancellationReachesTheInnermostCallAndTheBreakerIgnoresIt) {
  test_breaker breaker({}, timers.clock());
  auto pipeline = sturdy::compose(retry(3, 10ms), limit(50ms), breaker);
  std::stop_source caller;
  cancel_reason inner = cancel_reason::none;
  auto r = pipeline.execute(
      [&](const call_context& ctx) -> result<int> {
        caller.request_stop();
        inner = ctx.token.reason();
        return io_error();
      },
      caller.get_token());
  EXPECT_EQ(inner, cancel_reason::cancelled);
  EXPECT_EQ(r.error(), errc::cancelled);
  const auto m = breaker.metrics();
  EXPECT_EQ(m.failures, 0u);
  EXPECT_EQ(m.ignored, 1u);
  EXPECT_EQ(sleeper.count(), 0u);
}

TEST_F(ContextFlowTest, BreakerRefusesAFiredTokenAndCountsADeadlineAsASlowFailure) {
  test_breaker breaker({.slow_call_duration = 1h}, timers.clock());
  sturdy::cancel_source src;
  src.request(cancel_reason::deadline);
  int called = 0;
  auto refused = breaker.execute([&] { return ++called; }, call_context{.token = src.token()});
  EXPECT_EQ(refused.error(), errc::deadline_exceeded);
  EXPECT_EQ(called, 0);
  EXPECT_EQ(breaker.metrics().calls, 0u);

  sturdy::cancel_source late;
  auto r = breaker.execute(
      [&](const call_context& ctx) -> result<int> {
        late.request(cancel_reason::deadline);  // an enclosing timer fires while it runs
        EXPECT_TRUE(ctx.stop_requested());
        return io_error();
      },
      call_context{.token = late.token()});
  EXPECT_EQ(r.error(), std::errc::io_error);  // the callee's own error, unchanged
  const auto m = breaker.metrics();
  EXPECT_EQ(m.failures, 1u);
  EXPECT_EQ(m.slow_calls, 1u);  // outlived its budget: slow without a clock read
  // A callable taking only the context works with execute(fn).
  auto ok = breaker.execute([](const call_context& ctx) { return static_cast<int>(ctx.attempt); });
  EXPECT_EQ(ok.value(), 1);
}

TEST_F(ContextFlowTest, MakePolicyMiddlewareSeesAndMayShortenTheContext) {
  std::vector<std::string> log;
  auto observe = sturdy::make_policy([&](auto&& next, const call_context& ctx) {
    log.push_back("attempt " + std::to_string(ctx.attempt));
    return next();
  });
  auto shorten = sturdy::make_policy([&](auto&& next) {
    const time_point now = timers.now();
    call_context mine{.deadline = sturdy::deadline::after(5ms, timers.service().clock(), now)};
    return next(mine);
  });
  auto pipeline = sturdy::compose(limit(50ms), observe, shorten);
  const time_point start = timers.now();
  time_point got{};
  auto r = pipeline.execute([&](const call_context& ctx) {
    got = ctx.deadline.at();
    return 3;
  });
  EXPECT_EQ(r.value(), 3);
  EXPECT_EQ(got, start + 5ms);
  EXPECT_EQ(log, (std::vector<std::string>{"attempt 1"}));
}

TEST_F(ContextFlowTest, NestedTimeoutsInAPipelineTheInnermostSeesTheEarliest) {
  auto pipeline = sturdy::compose(limit(30ms), limit(80ms));
  const time_point start = timers.now();
  cancel_reason at_return = cancel_reason::none;
  auto r = pipeline.execute([&](const call_context& ctx) -> result<int> {
    EXPECT_EQ(ctx.deadline.at(), start + 30ms);
    timers.advance(30ms);
    at_return = ctx.token.reason();
    return io_error();
  });
  EXPECT_EQ(at_return, cancel_reason::deadline);
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
}

TEST_F(ContextFlowTest, ContextFlowAllocatesNothingWhenNoTimeoutFires) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not linked (TSan)";
  test_breaker breaker({}, timers.clock());
  auto pipeline = sturdy::compose(limit(1s), retry(3, 10ms), limit(100ms), breaker);
  std::stop_source caller;
  (void)pipeline.execute([] { return 1; });  // warm up (timer shards)
  sturdy::testing::allocation_scope counter;
  auto a = pipeline.execute([](const call_context& ctx) { return static_cast<int>(ctx.attempt); });
  auto b = pipeline.execute([] { return 2; }, caller.get_token());
  EXPECT_EQ(counter.allocations(), 0u);
  EXPECT_EQ(a.value(), 1);
  EXPECT_EQ(b.value(), 2);
}

// --- the idempotency cache's wait for an in-flight duplicate ------------------

using cache_t = sturdy::idempotency_cache<int, manual_clock, recording_sleeper>;

class CacheWaitTest : public ContextFlowTest {
 protected:
  std::unique_ptr<cache_t> cache = std::make_unique<cache_t>(
      sturdy::idempotency_options{}, sturdy::memory_store_options{.shards = 4, .max_entries = 1024}, timers.clock(),
      sleeper);
  sturdy::idempotency_policy waiting(duration timeout) {
    return {.in_flight = sturdy::in_flight_policy::wait, .wait_timeout = timeout};
  }
  call_context until(duration d) {
    return {.deadline = sturdy::deadline::after(d, timers.service().clock())};
  }
};

TEST_F(CacheWaitTest, TheWaitStopsAtTheCallersDeadlineWhenItComesFirst) {
  ASSERT_EQ(cache->store().begin("k", 1, 30s).value().status, sturdy::begin_status::acquired);
  int runs = 0;
  auto r = cache->execute("k", 1, waiting(5s), [&] { return ++runs; }, until(2s));
  EXPECT_EQ(r.result.error(), errc::deadline_exceeded);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(sleeper.total(), duration(2s));
  EXPECT_EQ(cache->stats().wait_timeouts, 0u);  // the cache's own limit did not end it
  // A later caller deadline leaves the cache's own limit in charge.
  sleeper.clear();
  auto w = cache->execute("k", 1, waiting(5s), [&] { return ++runs; }, until(1h));
  EXPECT_EQ(w.result.error(), errc::wait_timeout);
  EXPECT_EQ(sleeper.total(), duration(5s));
  EXPECT_EQ(cache->stats().wait_timeouts, 1u);
}

TEST_F(CacheWaitTest, TheCallersTokenWakesTheWaiter) {
  ASSERT_EQ(cache->store().begin("k", 1, 30s).value().status, sturdy::begin_status::acquired);
  sturdy::cancel_source caller;
  sleeper.on_sleep([&](duration) { caller.request_stop(); });
  int runs = 0;
  auto r = cache->execute("k", 1, waiting(5s), [&] { return ++runs; }, call_context{.token = caller.token()});
  EXPECT_EQ(r.result.error(), errc::cancelled);
  EXPECT_EQ(sleeper.cancelled_count(), 1u);
  EXPECT_EQ(sleeper.total(), duration::zero());
  EXPECT_EQ(runs, 0);
}

TEST_F(CacheWaitTest, TheCallableReceivesTheContextAndTheOutcomeIsStored) {
  const call_context ctx = until(3s);
  auto r = cache->execute("k", 1, [&](const call_context& c) { return c.deadline == ctx.deadline ? 1 : 2; }, ctx);
  EXPECT_EQ(r.result.value(), 1);
  auto again = cache->execute("k", 1, [] { return 3; });
  EXPECT_TRUE(again.replayed);
  EXPECT_EQ(again.result.value(), 1);
}

// --- the limiters and chaos map the context onto their waits ------------------

TEST_F(ContextFlowTest, ConcurrencyLimiterRefusesAFiredTokenOrAPassedDeadlineWithTheRightErrc) {
  sturdy::concurrency_limiter<sturdy::fixed_limit, manual_clock> limiter({}, sturdy::fixed_limit(), timers.clock());
  sturdy::cancel_source caller;
  caller.request_stop();
  EXPECT_EQ(limiter.acquire(1s, call_context{.token = caller.token()}).error(), errc::cancelled);
  sturdy::cancel_source timer;
  timer.request(cancel_reason::deadline);
  EXPECT_EQ(limiter.acquire(1s, call_context{.token = timer.token()}).error(), errc::deadline_exceeded);
  const call_context passed{.deadline = sturdy::deadline::after(duration::zero(), timers.service().clock())};
  int called = 0;
  EXPECT_EQ(limiter.execute([&] { return ++called; }, passed).error(), errc::deadline_exceeded);
  EXPECT_EQ(called, 0);
  const call_context ctx = {.deadline = sturdy::deadline::after(1s, timers.service().clock()), .attempt = 4};
  auto r = limiter.execute([](const call_context& c) { return static_cast<int>(c.attempt); }, ctx);
  EXPECT_EQ(r.value(), 4);
  EXPECT_EQ(limiter.in_flight(), 0u);
}

TEST_F(ContextFlowTest, RateLimiterWaitStopsAtTheContextDeadlineOrToken) {
  using limiter_t = sturdy::rate_limiter<manual_clock, recording_sleeper>;
  limiter_t limiter({.rate = 10, .period = 1s, .burst = 1, .max_wait = 1s}, timers.clock(), sleeper);
  ASSERT_TRUE(limiter.try_acquire(1).allowed);  // the next turn is 100 ms away
  // A deadline 50 ms away: the turn cannot come in time; refused without sleeping.
  int called = 0;
  auto r = limiter.execute([&] { return ++called; },
                           call_context{.deadline = sturdy::deadline::after(50ms, timers.service().clock())});
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  EXPECT_EQ(sleeper.count(), 0u);
  // A token fired for a deadline while it sleeps: deadline_exceeded, the turn given back.
  sturdy::cancel_source timer;
  sleeper.on_sleep([&](duration) { timer.request(cancel_reason::deadline); });
  auto cut = limiter.execute([&] { return ++called; }, call_context{.token = timer.token()});
  EXPECT_EQ(cut.error(), errc::deadline_exceeded);
  EXPECT_EQ(sleeper.cancelled_count(), 1u);
  EXPECT_EQ(called, 0);
  // No token: it sleeps its turn and runs, handing the context on.
  sleeper.on_sleep({});
  auto ok = limiter.execute([](const call_context& c) { return static_cast<int>(c.attempt); }, call_context{});
  EXPECT_EQ(ok.value(), 1);
  EXPECT_EQ(sleeper.delays(), (std::vector<duration>{100ms}));
}

TEST_F(ContextFlowTest, ChaosLatencyIsCutShortByTheContextToken) {
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0},
                             sturdy::chaos_latency{2s}, timers.clock(), sleeper);
  sturdy::cancel_source timer;
  timer.request(cancel_reason::deadline);
  int called = 0;
  auto r = chaos.execute([&] { return ++called; }, call_context{.token = timer.token()});
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  EXPECT_EQ(called, 0);
  auto ok = chaos.execute([](const call_context& c) { return static_cast<int>(c.attempt); }, call_context{});
  EXPECT_EQ(ok.value(), 1);
  EXPECT_EQ(sleeper.delays(), (std::vector<duration>{2s}));
}

TEST(ThreadSleeperTest, SturdyTokenWakesItAndAFiredTokenSkipsTheSleep) {
  sturdy::thread_sleeper s;
  sturdy::cancel_source fired;
  fired.request_stop();
  EXPECT_FALSE(s.sleep_for(std::chrono::hours(1), fired.token()));
  EXPECT_TRUE(s.sleep_for(duration::zero(), sturdy::cancel_token{}));
  sturdy::cancel_source later;
  std::thread t([&] { later.request_stop(); });
  // An hour-long sleep returns only because the token fires.
  EXPECT_FALSE(s.sleep_for(std::chrono::hours(1), later.token()));
  t.join();
}

}  // namespace
