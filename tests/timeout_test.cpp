// Tests of sturdy::timeout_policy, driven by the manual timer: the token
// fires at exactly the deadline, nested timeouts (the earlier wins), callees
// honouring or ignoring the token under both late-result policies, caller
// cancellation vs timeout, composition with today's compose(), the decision
// core, allocation counts and extreme durations.
#include "sturdy/timeout.hpp"

#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <string>

#include <gtest/gtest.h>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/manual_timer.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::call_context;
using sturdy::cancel_reason;
using sturdy::duration;
using sturdy::errc;
using sturdy::late_result;
using sturdy::result;
using sturdy::time_point;
using sturdy::timeout_policy;
using sturdy::testing::manual_timer;
using sturdy::testing::recording_listener;

class TimeoutTest : public ::testing::Test {
 protected:
  manual_timer timers;
  recording_listener events;
  timeout_policy<recording_listener> limit(duration t, late_result late = late_result::pass_through) {
    return timeout_policy<recording_listener>({.timeout = t, .on_late = late}, timers.service(), events);
  }
};

TEST_F(TimeoutTest, TokenFiresAtExactlyTheDeadline) {
  const time_point start = timers.now();
  auto r = limit(100ms).execute([&](const call_context& ctx) -> result<int> {
    EXPECT_EQ(ctx.deadline.at(), start + 100ms);
    EXPECT_EQ(ctx.remaining(), 100ms);
    timers.advance(100ms - duration(1));
    EXPECT_FALSE(ctx.stop_requested());
    timers.advance(duration(1));
    EXPECT_TRUE(ctx.stop_requested());
    EXPECT_EQ(ctx.token.reason(), cancel_reason::deadline);
    return sturdy::failure(std::make_error_code(std::errc::operation_canceled));  // honoured it
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  ASSERT_EQ(events.count<sturdy::timeout_expired>(), 1u);
  const auto e = events.of<sturdy::timeout_expired>()[0];
  EXPECT_EQ(e.timeout, 100ms);
  EXPECT_EQ(e.budget, 100ms);
  EXPECT_FALSE(e.late_success);
  EXPECT_EQ(e.failure.code, std::errc::operation_canceled);
  EXPECT_EQ(timers.service().armed(), 0u);
}

TEST_F(TimeoutTest, OnTimeResultPassesUnchangedAndNothingIsEmitted) {
  auto r = limit(100ms).execute([&] {
    timers.advance(99ms);
    return result<std::string>("ok");
  });
  EXPECT_EQ(r.value(), "ok");
  auto f = limit(100ms).execute([] { return result<int>(std::make_error_code(std::errc::io_error)); });
  EXPECT_EQ(f.error(), std::errc::io_error);
  EXPECT_EQ(events.size(), 0u);
  timers.advance(1h);  // the disarmed timers never fire
  EXPECT_EQ(timers.service().armed(), 0u);
}

TEST_F(TimeoutTest, IgnoredTokenLateSuccessPassesThroughByDefault) {
  auto r = limit(10ms).execute([&] {
    timers.advance(50ms);  // ignores the token
    return 42;
  });
  static_assert(std::is_same_v<decltype(r), result<int>>);
  EXPECT_EQ(r.value(), 42);
  ASSERT_EQ(events.count<sturdy::timeout_expired>(), 1u);
  const auto e = events.of<sturdy::timeout_expired>()[0];
  EXPECT_TRUE(e.late_success);
  EXPECT_EQ(e.action, late_result::pass_through);
}

TEST_F(TimeoutTest, IgnoredTokenLateSuccessIsDiscardedAndDestroyedUnderDiscard) {
  int alive = 0;
  struct tracked {
    int* alive;
    explicit tracked(int* a) : alive(a) { ++*alive; }
    tracked(tracked&& o) noexcept : alive(o.alive) { ++*alive; }
    tracked(const tracked&) = delete;
    ~tracked() { --*alive; }
  };
  {
    auto r = limit(10ms, late_result::discard).execute([&] {
      timers.advance(10ms);
      return result<tracked>(tracked(&alive));
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::deadline_exceeded);
    EXPECT_EQ(alive, 0);  // the late value was destroyed
  }
  const auto e = events.of<sturdy::timeout_expired>().at(0);
  EXPECT_TRUE(e.late_success);
  EXPECT_EQ(e.action, late_result::discard);
}

TEST_F(TimeoutTest, LateFailureIsDeadlineExceededUnderBothPolicies) {
  for (auto policy : {late_result::pass_through, late_result::discard}) {
    auto r = limit(10ms, policy).execute([&] {
      timers.advance(20ms);
      return result<int>(std::make_error_code(std::errc::io_error));
    });
    EXPECT_EQ(r.error(), errc::deadline_exceeded);
  }
  EXPECT_EQ(events.count<sturdy::timeout_expired>(), 2u);
}

TEST_F(TimeoutTest, CallerCancellationIsCancelledNotDeadlineExceeded) {
  sturdy::cancel_source caller;
  const call_context ctx{.token = caller.token()};
  auto r = limit(100ms).execute(
      [&](const call_context& c) -> result<int> {
        caller.request_stop();
        EXPECT_EQ(c.token.reason(), cancel_reason::cancelled);
        timers.advance(200ms);  // the deadline passes too: the first reason stays
        EXPECT_EQ(c.token.reason(), cancel_reason::cancelled);
        return sturdy::failure(std::make_error_code(std::errc::operation_canceled));
      },
      ctx);
  EXPECT_EQ(r.error(), errc::cancelled);
  EXPECT_EQ(events.count<sturdy::timeout_expired>(), 0u);
  // A success that finished despite the cancellation is kept.
  sturdy::cancel_source c2;
  auto ok = limit(100ms).execute(
      [&] {
        c2.request_stop();
        return 5;
      },
      call_context{.token = c2.token()});
  EXPECT_EQ(ok.value(), 5);
}

TEST_F(TimeoutTest, TimeoutBeforeCallerCancellationIsDeadlineExceeded) {
  sturdy::cancel_source caller;
  auto r = limit(100ms).execute(
      [&](const call_context& c) -> result<int> {
        timers.advance(100ms);
        caller.request_stop();
        EXPECT_EQ(c.token.reason(), cancel_reason::deadline);
        return sturdy::failure(std::make_error_code(std::errc::operation_canceled));
      },
      call_context{.token = caller.token()});
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
}

TEST_F(TimeoutTest, AlreadyCancelledOrExpiredCallsAreNotStarted) {
  int calls = 0;
  sturdy::cancel_source caller;
  caller.request_stop();
  auto r1 = limit(1s).execute([&] { return ++calls; }, call_context{.token = caller.token()});
  EXPECT_EQ(r1.error(), errc::cancelled);
  const auto passed = sturdy::deadline::at(timers.now(), timers.service().clock());
  auto r2 = limit(1s).execute([&] { return ++calls; }, call_context{.deadline = passed});
  EXPECT_EQ(r2.error(), errc::deadline_exceeded);
  std::stop_source ss;
  ss.request_stop();
  auto r3 = limit(1s).execute([&] { return ++calls; }, ss.get_token());
  EXPECT_EQ(r3.error(), errc::cancelled);
  EXPECT_EQ(calls, 0);
  const auto rejected = events.of<sturdy::timeout_rejected>();
  ASSERT_EQ(rejected.size(), 3u);
  EXPECT_EQ(rejected[0].code, errc::cancelled);
  EXPECT_EQ(rejected[1].code, errc::deadline_exceeded);
}

TEST_F(TimeoutTest, NestedTimeoutsTheEarlierWinsEitherWay) {
  // Inner shorter: the inner deadline applies and the inner layer reports.
  {
    auto outer = limit(100ms);
    auto inner = limit(30ms);
    time_point seen{};
    auto r = outer.execute([&](const call_context& octx) {
      return inner.execute(
          [&](const call_context& ictx) -> result<int> {
            seen = ictx.deadline.at();
            timers.advance(30ms);
            EXPECT_TRUE(ictx.stop_requested());
            EXPECT_FALSE(octx.stop_requested());
            return sturdy::failure(std::make_error_code(std::errc::operation_canceled));
          },
          octx);
    });
    EXPECT_EQ(seen, timers.now());
    EXPECT_EQ(r.error(), errc::deadline_exceeded);
  }
  // Inner longer: it cannot extend the outer deadline; the outer timer fires
  // the inner token with the deadline reason.
  {
    const time_point start = timers.now();
    auto outer = limit(20ms);
    auto inner = limit(500ms);
    auto r = outer.execute([&](const call_context& octx) {
      return inner.execute(
          [&](const call_context& ictx) -> result<int> {
            EXPECT_EQ(ictx.deadline.at(), start + 20ms);
            timers.advance(20ms);
            EXPECT_EQ(ictx.token.reason(), cancel_reason::deadline);
            return sturdy::failure(std::make_error_code(std::errc::operation_canceled));
          },
          octx);
    });
    EXPECT_EQ(r.error(), errc::deadline_exceeded);
  }
  EXPECT_EQ(timers.service().armed(), 0u);
}

TEST_F(TimeoutTest, CalleeThrowingAfterTheDeadlineRethrowsAndReports) {
  EXPECT_THROW((void)limit(5ms).execute([&]() -> int {
    timers.advance(5ms);
    throw std::runtime_error("late");
  }),
               std::runtime_error);
  ASSERT_EQ(events.count<sturdy::timeout_expired>(), 1u);
  EXPECT_TRUE(events.of<sturdy::timeout_expired>()[0].failure.exception_is<std::runtime_error>());
  EXPECT_EQ(timers.service().armed(), 0u);
  EXPECT_THROW((void)limit(5ms).execute([]() -> int { throw std::logic_error("early"); }), std::logic_error);
  EXPECT_EQ(events.count<sturdy::timeout_expired>(), 1u);
}

TEST_F(TimeoutTest, ZeroOneNanosecondAndMaxTimeouts) {
  int calls = 0;
  auto zero = limit(duration::zero()).execute([&] { return ++calls; });
  EXPECT_EQ(zero.error(), errc::deadline_exceeded);
  EXPECT_EQ(calls, 0);
  auto one = limit(duration(1)).execute([&](const call_context& ctx) {
    EXPECT_FALSE(ctx.stop_requested());
    timers.advance(duration(1));
    EXPECT_TRUE(ctx.stop_requested());
    return ++calls;
  });
  EXPECT_EQ(one.value(), 1);  // late success, passed through
  auto forever = limit(duration::max()).execute([&](const call_context& ctx) {
    EXPECT_TRUE(ctx.deadline.is_none());
    timers.advance(24h * 365 * 100);
    EXPECT_FALSE(ctx.stop_requested());
    return ++calls;
  });
  EXPECT_EQ(forever.value(), 2);
  EXPECT_EQ(limit(-1ns).execute([] { return 1; }).error(), errc::invalid_options);
  ASSERT_EQ(events.count<sturdy::options_rejected>(), 1u);
  EXPECT_EQ(events.of<sturdy::options_rejected>()[0].message, "timeout_options.timeout must be >= 0");
}

TEST_F(TimeoutTest, OptionsRejectedIsEmittedOncePerPolicy) {
  auto bad = limit(-1ns);
  (void)bad.execute([] { return 1; });
  (void)bad.execute([] { return 1; });
  EXPECT_EQ(events.count<sturdy::options_rejected>(), 1u);
}

TEST_F(TimeoutTest, DecisionCoreNeedsNoClock) {
  auto p = limit(100ms, late_result::discard);
  const time_point now = time_point(5s);
  const auto s = p.decide_start(call_context{}, now);
  EXPECT_TRUE(s.run);
  EXPECT_EQ(s.deadline.at(), now + 100ms);
  EXPECT_EQ(s.budget, 100ms);
  EXPECT_FALSE(p.decide_end(cancel_reason::none, false).replace);
  EXPECT_TRUE(p.decide_end(cancel_reason::deadline, true).replace);
  EXPECT_TRUE(p.decide_end(cancel_reason::deadline, true).late);
  EXPECT_EQ(p.decide_end(cancel_reason::cancelled, false).code, errc::cancelled);
  EXPECT_FALSE(p.decide_end(cancel_reason::cancelled, true).replace);
  EXPECT_FALSE(limit(100ms).decide_end(cancel_reason::deadline, true).replace);
}

TEST_F(TimeoutTest, StdStopTokenIsLinkedWithoutAllocating) {
  std::stop_source ss;
  auto r = limit(1s).execute(
      [&](const call_context& ctx) -> result<int> {
        ss.request_stop();
        EXPECT_EQ(ctx.token.reason(), cancel_reason::cancelled);
        return sturdy::failure(std::make_error_code(std::errc::operation_canceled));
      },
      ss.get_token());
  EXPECT_EQ(r.error(), errc::cancelled);
}

TEST_F(TimeoutTest, NoAllocationWhetherOrNotTheTimeoutFires) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not linked (TSan)";
  timeout_policy<> plain({.timeout = 10ms}, timers.service());
  sturdy::cancel_source caller;
  std::stop_source ss;
  (void)plain.execute([] { return 1; });  // warm-up (thread-local shard seed)
  sturdy::testing::allocation_scope scope;
  auto on_time = plain.execute([] { return 1; });
  auto fired = plain.execute([&](const call_context& ctx) {
    timers.advance(10ms);
    return ctx.stop_requested() ? 2 : 3;
  });
  auto linked = plain.execute([] { return 4; }, call_context{.token = caller.token()});
  auto std_linked = plain.execute([] { return 5; }, ss.get_token());
  EXPECT_EQ(on_time.value() + fired.value() + linked.value() + std_linked.value(), 12);
  EXPECT_EQ(scope.allocations(), 0u);
}

// --- composition with today's compose() ----------------------------------------

TEST_F(TimeoutTest, ComposesWithTodaysPipelineAsACopiedValue) {
  sturdy::circuit_breaker<> breaker({});
  auto pipeline = sturdy::compose(limit(50ms), breaker);
  auto r = pipeline.execute([&] {
    timers.advance(60ms);
    return result<int>(std::make_error_code(std::errc::io_error));
  });
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  auto ok = pipeline.execute([] { return result<int>(1); });
  EXPECT_EQ(ok.value(), 1);
  std::stop_source ss;
  auto c = pipeline.execute(
      [&] {
        ss.request_stop();
        return result<int>(std::make_error_code(std::errc::io_error));
      },
      ss.get_token());
  EXPECT_EQ(c.error(), errc::cancelled);
}

TEST_F(TimeoutTest, PerAttemptTimeoutInsideRetryGivesExactAttemptsAndDelays) {
  // retry(timeout(fn)): the first attempt overruns its 50 ms and is reported
  // as deadline_exceeded (late failure), which the retry retries after its
  // backoff; the second attempt is on time.
  sturdy::testing::recording_sleeper sleeper(timers.clock());
  sturdy::retry_policy<sturdy::backoff, sturdy::testing::manual_clock, sturdy::testing::recording_sleeper> retry(
      {.max_attempts = 3, .backoff = sturdy::backoff::constant(10ms)}, timers.clock(), sleeper);
  auto pipeline = sturdy::compose(retry, limit(50ms));
  int attempts = 0;
  const time_point start = timers.now();
  auto r = pipeline.execute([&]() -> result<int> {
    ++attempts;
    if (attempts == 1) {
      timers.advance(80ms);
      return sturdy::failure(std::make_error_code(std::errc::io_error));
    }
    timers.advance(5ms);
    return 7;
  });
  EXPECT_EQ(r.value(), 7);
  EXPECT_EQ(attempts, 2);
  ASSERT_EQ(sleeper.delays().size(), 1u);
  EXPECT_EQ(sleeper.delays()[0], 10ms);
  EXPECT_EQ(timers.now() - start, 80ms + 10ms + 5ms);
  EXPECT_EQ(events.count<sturdy::timeout_expired>(), 1u);
}

}  // namespace
