// Unit tests of sturdy::rate_limiter and its decision core (detail::gcra):
// hand-derived sequences with the manual clock (burst, steady rate, weighted
// requests, peeks, a request larger than the burst, the ends of the clock's
// range), validation naming each field, acquire through the recording
// sleeper (reservation, cancellation giving the turn back, deadline),
// execute/compose, chained limits, headers, quiescence, no allocation, and a
// property test against a sequential reference token bucket over random
// arrival sequences checking the bound in every window.
#include "sturdy/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include "sturdy/pipeline.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

using namespace std::chrono_literals;
using sturdy::duration;
using sturdy::rate_limit_decision;
using sturdy::rate_limit_reason;
using sturdy::rate_limiter_options;
using sturdy::time_point;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_sleeper;

namespace {

using test_limiter = sturdy::rate_limiter<manual_clock, recording_sleeper>;

struct fixture {
  explicit fixture(rate_limiter_options o, time_point start = time_point{})
      : clock(start), sleeper(clock), limiter(o, clock, sleeper) {}
  manual_clock clock;
  recording_sleeper sleeper;
  test_limiter limiter;
};

// --- the core, hand-derived ---------------------------------------------------

TEST(GcraTest, BurstThenSteadyRate) {
  // T = 1 s, B = 3, tau = 3 s. From idle at t = 10 s: three admitted at once.
  const sturdy::detail::gcra g(1'000'000'000, 3);
  const std::uint64_t t0 = sturdy::detail::to_biased(std::int64_t{10'000'000'000});
  std::uint64_t z = 0;
  for (std::uint64_t i = 0; i < 3; ++i) {
    const auto o = g.decide(z, t0, 1);
    ASSERT_EQ(o.verdict, sturdy::detail::gcra_verdict::admitted);
    EXPECT_EQ(o.remaining, 2 - i);
    EXPECT_EQ(o.reset_after, std::chrono::seconds(i + 1));
    z = o.state;
  }
  const auto refused = g.decide(z, t0, 1);
  EXPECT_EQ(refused.verdict, sturdy::detail::gcra_verdict::limited);
  EXPECT_EQ(refused.wait, 1s);
  EXPECT_EQ(refused.state, z);
  // 0.5 s later still refused (0.5 s to go); 1 s later one more.
  EXPECT_EQ(g.decide(z, t0 + 500'000'000, 1).wait, 500ms);
  const auto next = g.decide(z, t0 + 1'000'000'000, 1);
  EXPECT_EQ(next.verdict, sturdy::detail::gcra_verdict::admitted);
  EXPECT_EQ(next.remaining, 0u);
  EXPECT_EQ(next.reset_after, 3s);
}

TEST(GcraTest, WeightedRequestsAndPeek) {
  const sturdy::detail::gcra g(100, 10);  // T = 100 ns, B = 10
  const std::uint64_t t = sturdy::detail::to_biased(std::int64_t{1'000'000});
  auto a = g.decide(0, t, 7);
  ASSERT_EQ(a.verdict, sturdy::detail::gcra_verdict::admitted);
  EXPECT_EQ(a.remaining, 3u);
  auto b = g.decide(a.state, t, 4);  // 3 left: 4 must wait one interval
  EXPECT_EQ(b.verdict, sturdy::detail::gcra_verdict::limited);
  EXPECT_EQ(b.wait, 100ns);
  EXPECT_EQ(b.remaining, 3u);
  auto peek = g.decide(a.state, t, 0);
  EXPECT_EQ(peek.verdict, sturdy::detail::gcra_verdict::admitted);
  EXPECT_EQ(peek.state, a.state);
  EXPECT_EQ(peek.remaining, 3u);
  auto c = g.decide(a.state, t, 3);
  ASSERT_EQ(c.verdict, sturdy::detail::gcra_verdict::admitted);
  auto peek_empty = g.decide(c.state, t, 0);
  EXPECT_EQ(peek_empty.verdict, sturdy::detail::gcra_verdict::limited);
  EXPECT_EQ(peek_empty.wait, 100ns);
  EXPECT_EQ(peek_empty.state, c.state);
}

TEST(GcraTest, RequestLargerThanTheBurstIsNeverAdmitted) {
  const sturdy::detail::gcra g(100, 10);
  const std::uint64_t t = sturdy::detail::to_biased(std::int64_t{0});
  const auto o = g.decide(0, t, 11, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(o.verdict, sturdy::detail::gcra_verdict::exceeds_burst);
  EXPECT_EQ(o.wait, duration::max());
  EXPECT_EQ(o.state, 0u);
  EXPECT_EQ(o.remaining, 10u);
}

TEST(GcraTest, EndsOfTheClockRangeNeverOverflow) {
  // tau = 2^62 ns: now - tau and base + n*T straddle both ends.
  const std::uint64_t T = std::uint64_t{1} << 61;
  const sturdy::detail::gcra g(T, 2);
  for (const std::int64_t now :
       {std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(), std::int64_t{0},
        std::numeric_limits<std::int64_t>::max() - 1}) {
    const std::uint64_t t = sturdy::detail::to_biased(now);
    auto a = g.decide(0, t, 2);
    if (now == std::numeric_limits<std::int64_t>::min()) {
      // now - tau is before the range: the floor is the range's start, so
      // the bucket starts empty there (stricter, never looser).
      EXPECT_EQ(a.verdict, sturdy::detail::gcra_verdict::limited);
      continue;
    }
    ASSERT_EQ(a.verdict, sturdy::detail::gcra_verdict::admitted) << now;
    EXPECT_LE(a.state, t);
    const auto b = g.decide(a.state, t, 1);
    EXPECT_EQ(b.verdict, sturdy::detail::gcra_verdict::limited);
    EXPECT_EQ(b.wait, duration(static_cast<std::int64_t>(T)));
    // A reservation wanting to wait "forever" stays in range.
    const auto r = g.decide(a.state, t, 2, std::numeric_limits<std::uint64_t>::max());
    if (t <= std::numeric_limits<std::uint64_t>::max() - 2 * T) {
      EXPECT_EQ(r.verdict, sturdy::detail::gcra_verdict::admitted);
      EXPECT_EQ(r.wait, duration(static_cast<std::int64_t>(2 * T)));
    } else {
      EXPECT_EQ(r.verdict, sturdy::detail::gcra_verdict::limited);  // the turn is past the end of time
    }
  }
}

// --- the limiter ------------------------------------------------------------

TEST(RateLimiterTest, BurstMeansRequestsAdmittedAtOneInstant) {
  fixture f({.rate = 10, .period = 1s, .burst = 4});
  for (int i = 0; i < 4; ++i) {
    const rate_limit_decision d = f.limiter.try_acquire();
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, static_cast<std::uint64_t>(3 - i));
    EXPECT_EQ(d.limit, 4u);
    EXPECT_EQ(d.retry_after, duration::zero());
    EXPECT_FALSE(d.error());
  }
  const rate_limit_decision no = f.limiter.try_acquire();
  EXPECT_FALSE(no.allowed);
  EXPECT_EQ(no.reason, rate_limit_reason::rate_limited);
  EXPECT_EQ(no.error(), sturdy::errc::rate_limited);
  EXPECT_EQ(no.retry_after, 100ms);
  EXPECT_EQ(no.reset_after, 400ms);
  f.clock.advance(100ms);
  EXPECT_TRUE(f.limiter.try_acquire().allowed);
  EXPECT_FALSE(f.limiter.try_acquire().allowed);
}

TEST(RateLimiterTest, DefaultBurstOneNeverExceedsRateInAnyPeriodWindow) {
  fixture f({.rate = 3, .period = 1s});  // T = 333'333'334 ns (rounded up)
  EXPECT_EQ(f.limiter.options().interval(), 333'333'334ns);
  std::vector<time_point> admitted;
  for (int step = 0; step < 3000; ++step) {
    if (f.limiter.try_acquire().allowed) admitted.push_back(f.clock.now());
    f.clock.advance(1ms);
  }
  ASSERT_GE(admitted.size(), 8u);
  for (std::size_t i = 0; i + 3 < admitted.size(); ++i) EXPECT_GE(admitted[i + 3] - admitted[i], 1s);
}

TEST(RateLimiterTest, PeekChangesNothing) {
  fixture f({.rate = 1, .period = 1s, .burst = 2});
  auto p = f.limiter.try_acquire(0);
  EXPECT_TRUE(p.allowed);
  EXPECT_EQ(p.remaining, 2u);
  EXPECT_EQ(p.ticket, 0u);
  EXPECT_TRUE(f.limiter.quiescent());
  ASSERT_TRUE(f.limiter.try_acquire(2).allowed);
  p = f.limiter.try_acquire(0);
  EXPECT_FALSE(p.allowed);
  EXPECT_EQ(p.retry_after, 1s);
  EXPECT_EQ(p.reason, rate_limit_reason::rate_limited);
}

TEST(RateLimiterTest, RequestLargerThanBurstRefusedWithDistinctReasonAndNeverWaits) {
  fixture f({.rate = 1, .period = 1s, .burst = 2});
  auto d = f.limiter.try_acquire(3);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, rate_limit_reason::exceeds_burst);
  EXPECT_EQ(d.retry_after, duration::max());
  EXPECT_EQ(d.error(), sturdy::errc::rate_limited);
  d = f.limiter.acquire(3, duration::max());
  EXPECT_EQ(d.reason, rate_limit_reason::exceeds_burst);
  EXPECT_EQ(f.sleeper.count(), 0u);
  EXPECT_TRUE(f.limiter.quiescent());
}

TEST(RateLimiterTest, ValidationNamesEachField) {
  const std::map<std::string, rate_limiter_options> bad = {
      {"rate_limiter_options.rate must be >= 1", {.rate = 0}},
      {"rate_limiter_options.period must be > 0", {.period = duration::zero()}},
      {"rate_limiter_options.period must be > 0", {.period = -1ns}},
      {"rate_limiter_options.rate must be <= period", {.rate = 2, .period = 1ns}},
      {"rate_limiter_options.burst must be >= 1", {.burst = 0}},
      {"rate_limiter_options.burst is too large", {.rate = 1, .period = duration::max(), .burst = 2}},
      {"rate_limiter_options.max_wait must be >= 0", {.max_wait = -1ns}},
  };
  for (const auto& [message, o] : bad) {
    EXPECT_EQ(o.validation_message().substr(0, message.size()), message);
    EXPECT_EQ(o.validate().error(), sturdy::errc::invalid_options);
  }
  EXPECT_TRUE(rate_limiter_options{}.validate().has_value());
}

TEST(RateLimiterTest, InvalidOptionsRefuseEveryCallAndReportOnce) {
  sturdy::testing::recording_listener listener;
  sturdy::rate_limiter<manual_clock, recording_sleeper, sturdy::testing::recording_listener> l(
      {.rate = 0}, manual_clock(), recording_sleeper(manual_clock()), listener);
  for (int i = 0; i < 3; ++i) {
    const auto d = l.try_acquire();
    EXPECT_EQ(d.reason, rate_limit_reason::invalid_options);
    EXPECT_EQ(d.error(), sturdy::errc::invalid_options);
  }
  EXPECT_EQ(l.acquire().reason, rate_limit_reason::invalid_options);
  auto r = l.execute([] { return 1; });
  EXPECT_EQ(r.error(), sturdy::errc::invalid_options);
  EXPECT_EQ(listener.count<sturdy::options_rejected>(), 1u);
  EXPECT_EQ(l.options_status().error(), sturdy::errc::invalid_options);
}

TEST(RateLimiterTest, EveryDurationAtZeroOneNanosecondAndMax) {
  // period 1 ns: one request per ns.
  fixture one({.rate = 1, .period = 1ns, .burst = 1});
  EXPECT_TRUE(one.limiter.try_acquire().allowed);
  EXPECT_FALSE(one.limiter.try_acquire().allowed);
  one.clock.advance(1ns);
  EXPECT_TRUE(one.limiter.try_acquire().allowed);
  // period max: one request, then never again within the clock's range.
  fixture huge({.rate = 1, .period = duration::max(), .burst = 1});
  EXPECT_TRUE(huge.limiter.try_acquire().allowed);
  auto d = huge.limiter.try_acquire();
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, duration::max());
  // max_wait 0, 1 ns, max.
  for (const duration w : {duration::zero(), duration(1), duration::max()}) {
    fixture f({.rate = 1, .period = 1ns, .burst = 1, .max_wait = w});
    EXPECT_TRUE(f.limiter.execute([] { return 1; }).has_value());
    EXPECT_EQ(f.limiter.execute([] { return 1; }).has_value(), w > duration::zero()) << w.count();
  }
}

TEST(RateLimiterTest, TimeFarInTheFutureAndAtTheEndOfTheRange) {
  for (const time_point start : {time_point(duration(std::numeric_limits<std::int64_t>::max() - 10)),
                                 time_point::max(), time_point(std::chrono::hours(200 * 24 * 365))}) {
    fixture f({.rate = 1, .period = 1s, .burst = 2}, start);
    EXPECT_TRUE(f.limiter.try_acquire().allowed);
    EXPECT_TRUE(f.limiter.try_acquire().allowed);
    const auto d = f.limiter.try_acquire();
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after, 1s);
    EXPECT_EQ(d.reset_after, 2s);
  }
}

TEST(RateLimiterTest, CallerSuppliedTimeMatchesTheClock) {
  fixture f({.rate = 10, .period = 1s, .burst = 2});
  sturdy::rate_limiter<> other({.rate = 10, .period = 1s, .burst = 2});
  const time_point t = f.clock.now();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f.limiter.try_acquire(), other.try_acquire_at(t)) << i;
  // An older time than one already used is only stricter.
  EXPECT_FALSE(other.try_acquire_at(t - 1h).allowed);
}

TEST(RateLimiterTest, AcquireReservesAndSleepsExactlyUntilItsTurn) {
  fixture f({.rate = 10, .period = 1s, .burst = 1});
  EXPECT_TRUE(f.limiter.try_acquire().allowed);
  const auto d = f.limiter.acquire(1, 1s);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.waited, 100ms);
  ASSERT_EQ(f.sleeper.delays(), std::vector<duration>{100ms});
  // The turn after that one is 100 ms later still: a second waiter queues.
  EXPECT_FALSE(f.limiter.try_acquire().allowed);
  const auto late = f.limiter.acquire(1, 50ms);
  EXPECT_EQ(late.reason, rate_limit_reason::rate_limited);
  EXPECT_EQ(late.retry_after, 100ms);
  EXPECT_EQ(f.sleeper.count(), 1u);
}

TEST(RateLimiterTest, AcquireRefusesATurnAfterTheDeadline) {
  fixture f({.rate = 10, .period = 1s, .burst = 1});
  EXPECT_TRUE(f.limiter.try_acquire().allowed);
  const auto d = f.limiter.acquire(1, 1s, {}, f.clock.now() + 50ms);
  EXPECT_EQ(d.reason, rate_limit_reason::deadline_exceeded);
  EXPECT_EQ(d.error(), sturdy::errc::deadline_exceeded);
  EXPECT_EQ(f.sleeper.count(), 0u);
  EXPECT_TRUE(f.limiter.acquire(1, 1s, {}, f.clock.now() + 100ms).allowed);
  // A deadline already reached with a free turn: refused, like the
  // concurrency limiter and the timeout (the caller gave up), and nothing is
  // taken.
  fixture g({.rate = 10, .period = 1s, .burst = 1});
  const auto late = g.limiter.acquire(1, 1s, {}, g.clock.now() - 1s);
  EXPECT_FALSE(late.allowed);
  EXPECT_EQ(late.reason, rate_limit_reason::deadline_exceeded);
  EXPECT_FALSE(g.limiter.acquire(1, 1s, {}, g.clock.now()).allowed);
  EXPECT_TRUE(g.limiter.try_acquire().allowed) << "a refused acquire must not take the turn";
}

TEST(RateLimiterTest, CancelledWhileSleepingGivesTheTurnBack) {
  fixture f({.rate = 10, .period = 1s, .burst = 1});
  EXPECT_TRUE(f.limiter.try_acquire().allowed);
  std::stop_source stop;
  f.sleeper.on_sleep([&](duration) { stop.request_stop(); });
  const auto d = f.limiter.acquire(1, 1s, stop.get_token());
  EXPECT_EQ(d.reason, rate_limit_reason::cancelled);
  EXPECT_EQ(d.error(), sturdy::errc::cancelled);
  EXPECT_EQ(f.sleeper.cancelled_count(), 1u);
  // Given back: the next turn is again 100 ms after the first request.
  const auto peek = f.limiter.try_acquire(0);
  EXPECT_EQ(peek.retry_after, 100ms);
  // Already stopped: refused before reserving.
  EXPECT_EQ(f.limiter.acquire(1, 1s, stop.get_token()).reason, rate_limit_reason::cancelled);
}

TEST(RateLimiterTest, CancelledBehindALaterReservationForfeitsItsTurn) {
  fixture f({.rate = 10, .period = 1s, .burst = 1});
  EXPECT_TRUE(f.limiter.try_acquire().allowed);
  std::stop_source stop;
  bool reserved_behind = false;
  f.sleeper.on_sleep([&](duration) {
    if (reserved_behind) return;
    reserved_behind = true;
    // Another caller reserves the turn after ours while we sleep ...
    const auto other = f.limiter.try_acquire_at(f.clock.now() + 200ms);
    EXPECT_TRUE(other.allowed);
    stop.request_stop();  // ... then we are cancelled.
  });
  EXPECT_EQ(f.limiter.acquire(1, 1s, stop.get_token()).reason, rate_limit_reason::cancelled);
  // Our turn is not given back (stricter, never looser).
  EXPECT_EQ(f.limiter.try_acquire(0).retry_after, 300ms);
}

struct throwing_sleeper {
  bool sleep_for(duration, std::stop_token) const { throw std::runtime_error("sleeper failed"); }
};

TEST(RateLimiterTest, ASleeperThatThrowsGivesTheTurnBackAndPropagates) {
  manual_clock clock;
  sturdy::rate_limiter<manual_clock, throwing_sleeper> l({.rate = 10, .period = 1s, .burst = 1}, clock);
  EXPECT_TRUE(l.try_acquire().allowed);
  EXPECT_THROW((void)l.acquire(1, 1s), std::runtime_error);
  EXPECT_EQ(l.try_acquire(0).retry_after, 100ms);  // the reservation was given back
}

TEST(RateLimiterTest, GiveBackTakesExactlyTheDecisionsTokens) {
  fixture f({.rate = 1, .period = 1s, .burst = 5});
  const auto three = f.limiter.try_acquire(3);
  ASSERT_TRUE(three.allowed);
  EXPECT_EQ(three.requested, 3u);
  EXPECT_TRUE(f.limiter.give_back(three));
  EXPECT_FALSE(f.limiter.give_back(three));  // once only
  EXPECT_EQ(f.limiter.try_acquire(0).remaining, 5u);
  EXPECT_FALSE(f.limiter.give_back(f.limiter.try_acquire(0)));  // a peek took nothing
}

TEST(RateLimiterTest, ExecuteRunsOnlyWhenAdmittedAndComposesByReference) {
  fixture f({.rate = 1, .period = 1s, .burst = 1});
  int calls = 0;
  auto pipeline = sturdy::compose(f.limiter);
  static_assert(std::is_same_v<std::tuple_element_t<0, std::remove_reference_t<decltype(pipeline.layers())>>,
                               test_limiter&>);
  auto ok = pipeline.execute([&] { return ++calls; });
  EXPECT_EQ(ok.value(), 1);
  auto refused = pipeline.execute([&] { return ++calls; });
  EXPECT_EQ(refused.error(), sturdy::errc::rate_limited);
  EXPECT_EQ(calls, 1);
  f.clock.advance(1s);
  EXPECT_THROW((void)f.limiter.execute([]() -> int { throw 1; }), int);  // once admitted
  EXPECT_FALSE(f.limiter.try_acquire(0).allowed);                        // its token stays used
}

TEST(RateLimiterTest, ExecuteWithMaxWaitWaitsThroughTheSleeperAndTakesTheStopToken) {
  fixture f({.rate = 10, .period = 1s, .burst = 1, .max_wait = 1s});
  EXPECT_TRUE(f.limiter.execute([] { return 1; }).has_value());
  EXPECT_TRUE(f.limiter.execute([] { return 2; }).has_value());
  EXPECT_EQ(f.sleeper.delays(), std::vector<duration>{100ms});
  std::stop_source stop;
  stop.request_stop();
  auto pipeline = sturdy::compose(f.limiter);
  EXPECT_EQ(pipeline.execute([] { return 3; }, stop.get_token()).error(), sturdy::errc::cancelled);
}

TEST(RateLimiterTest, ChainedLimitsComposeAndGiveBackOnRefusal) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  test_limiter per_second({.rate = 10, .period = 1s, .burst = 10}, clock, sleeper);
  test_limiter per_minute({.rate = 100, .period = 1min, .burst = 15}, clock, sleeper);
  int admitted = 0;
  for (int second = 0; second < 60; ++second) {
    for (int i = 0; i < 50; ++i)
      admitted += sturdy::try_acquire_all(1, per_second, per_minute).allowed ? 1 : 0;
    clock.advance(1s);
  }
  // 15 at once, then 100 per minute: 15 + 59 s * (100 / 60 s) rounded down.
  EXPECT_EQ(admitted, 15 + 98);
  // compose order: refusals of the second limiter cost the first a token.
  auto both = sturdy::compose(per_second, per_minute);
  (void)both.execute([] { return 0; });
  // try_acquire_all gives back: a refusal by per_minute left per_second's
  // tokens as they were.
  fixture a({.rate = 10, .period = 1s, .burst = 10});
  fixture b({.rate = 1, .period = 1min, .burst = 1});
  EXPECT_TRUE(sturdy::try_acquire_all(1, a.limiter, b.limiter).allowed);
  EXPECT_FALSE(sturdy::try_acquire_all(1, a.limiter, b.limiter).allowed);
  EXPECT_EQ(a.limiter.try_acquire(0).remaining, 9u);
}

TEST(RateLimiterTest, WritesRetryAfterAndRateLimitHeaders) {
  fixture f({.rate = 2, .period = 1s, .burst = 3});
  std::map<std::string, std::string> h;
  const auto set = [&](std::string_view n, std::string_view v) { h[std::string(n)] = std::string(v); };
  f.limiter.try_acquire().write_headers(set);
  EXPECT_EQ(h["RateLimit-Limit"], "3");
  EXPECT_EQ(h["RateLimit-Remaining"], "2");
  EXPECT_EQ(h["RateLimit-Reset"], "1");  // 500 ms rounded up
  EXPECT_EQ(h.count("Retry-After"), 0u);
  (void)f.limiter.try_acquire(2);
  h.clear();
  f.limiter.try_acquire().write_headers(set);
  EXPECT_EQ(h["RateLimit-Remaining"], "0");
  EXPECT_EQ(h["Retry-After"], "1");  // 500 ms rounded up, never 0
  EXPECT_EQ(h["RateLimit-Reset"], "2");
}

TEST(RateLimiterTest, QuiescentExactlyWhenTheBucketIsFull) {
  fixture f({.rate = 10, .period = 1s, .burst = 2});
  EXPECT_TRUE(f.limiter.quiescent());
  ASSERT_TRUE(f.limiter.try_acquire().allowed);
  EXPECT_FALSE(f.limiter.quiescent());
  f.clock.advance(99ms);
  EXPECT_FALSE(f.limiter.quiescent());
  f.clock.advance(1ms);
  EXPECT_TRUE(f.limiter.quiescent());
  EXPECT_TRUE(f.limiter.quiescent_at(f.clock.now()));
  // A quiescent limiter decides exactly like a fresh one.
  fixture fresh({.rate = 10, .period = 1s, .burst = 2}, f.clock.now());
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(f.limiter.try_acquire().remaining, fresh.limiter.try_acquire().remaining);
  static_assert(!std::is_copy_constructible_v<test_limiter> && !std::is_move_constructible_v<test_limiter>);
}

TEST(RateLimiterTest, HotPathAllocatesNothing) {
  ASSERT_TRUE(sturdy::testing::counting_new_installed());
  sturdy::rate_limiter<> l({.rate = 1000, .period = 1s, .burst = 10});
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    (void)l.try_acquire();
    (void)l.try_acquire(0);
    (void)l.execute([] { return 1; });
    (void)l.quiescent();
  }
  EXPECT_EQ(scope.allocations(), 0u);
}

TEST(RateLimiterTest, EmitsRejections) {
  sturdy::testing::recording_listener listener;
  sturdy::rate_limiter<manual_clock, recording_sleeper, sturdy::testing::recording_listener> l(
      {.rate = 1, .period = 1s}, manual_clock(), recording_sleeper(manual_clock()), listener);
  (void)l.try_acquire();
  (void)l.try_acquire();
  (void)l.try_acquire(5);
  ASSERT_EQ(listener.count<sturdy::rate_limit_rejected>(), 2u);
  EXPECT_EQ(listener.of<sturdy::rate_limit_rejected>()[1].reason, rate_limit_reason::exceeds_burst);
}

// --- property: against a sequential reference over random arrivals ------------

// The textbook token bucket, in units of T-nanoseconds-per-token so that it
// is exact: `level` ns worth of tokens, capped at B*T.
struct reference_bucket {
  std::int64_t T, B, level, last;
  rate_limit_decision take(std::int64_t now, std::int64_t n) {
    level = std::min(B * T, level + (now - last));
    last = now;
    rate_limit_decision d;
    d.limit = static_cast<std::uint64_t>(B);
    if (n > B) {
      d.reason = rate_limit_reason::exceeds_burst;
      d.retry_after = duration::max();
    } else {
      const std::int64_t need = (n == 0 ? 1 : n) * T;
      d.allowed = level >= need;
      d.reason = d.allowed ? rate_limit_reason::admitted : rate_limit_reason::rate_limited;
      d.retry_after = d.allowed ? duration::zero() : duration(need - level);
      if (d.allowed && n > 0) level -= need;
    }
    d.remaining = static_cast<std::uint64_t>(level / T);
    d.reset_after = duration(B * T - level);
    return d;
  }
};

TEST(RateLimiterPropertyTest, MatchesTheReferenceAndHoldsTheBoundInEveryWindow) {
  std::mt19937_64 gen(20261206);
  for (int round = 0; round < 200; ++round) {
    const std::int64_t rate = std::uniform_int_distribution<std::int64_t>(1, 50)(gen);
    const std::int64_t period = std::uniform_int_distribution<std::int64_t>(rate, 10'000)(gen);
    const std::int64_t burst = std::uniform_int_distribution<std::int64_t>(1, 8)(gen);
    const rate_limiter_options o{.rate = static_cast<std::uint64_t>(rate),
                                 .period = duration(period),
                                 .burst = static_cast<std::uint64_t>(burst)};
    const std::int64_t T = o.interval().count();
    const std::int64_t start = std::uniform_int_distribution<std::int64_t>(-1'000'000, 1'000'000)(gen);
    fixture f(o, time_point(duration(start)));
    reference_bucket ref{T, burst, burst * T, start};
    std::vector<std::pair<std::int64_t, std::int64_t>> admitted;  // (time, n)
    for (int step = 0; step < 500; ++step) {
      const int gap_kind = std::uniform_int_distribution<int>(0, 3)(gen);
      const std::int64_t gap = gap_kind == 0 ? 0 : std::uniform_int_distribution<std::int64_t>(0, 2 * T)(gen);
      f.clock.advance(duration(gap));
      const std::int64_t n = std::uniform_int_distribution<std::int64_t>(0, burst + 1)(gen);
      const rate_limit_decision got = f.limiter.try_acquire(static_cast<std::uint64_t>(n));
      rate_limit_decision want = ref.take(f.clock.now().time_since_epoch().count(), n);
      want.ticket = got.ticket;
      want.requested = static_cast<std::uint64_t>(n);
      ASSERT_EQ(got, want) << "round " << round << " step " << step << " n " << n;
      if (got.allowed && n > 0) admitted.emplace_back(f.clock.now().time_since_epoch().count(), n);
    }
    // Every window [a_i, a_j]: sum n <= (a_j - a_i) / T + B, i.e.
    // (S_j*T - a_j) - (S_{i-1}*T - a_i) <= B*T, with a running minimum.
    std::int64_t sum = 0;
    std::int64_t min_before = std::numeric_limits<std::int64_t>::max();
    for (const auto& [t, n] : admitted) {
      min_before = std::min(min_before, sum * T - t);
      sum += n;
      ASSERT_LE(sum * T - t - min_before, burst * T) << "round " << round;
    }
  }
}

}  // namespace
