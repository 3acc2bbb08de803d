// Tests of sturdy/context.hpp: the token, callbacks, the std::stop_token
// bridge, deadlines on one clock, call_context and the callable detection;
// and the coarse clock of sturdy/clock.hpp.
#include "sturdy/context.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/clock.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::call_context;
using sturdy::cancel_reason;
using sturdy::duration;
using sturdy::time_point;

TEST(CancelTokenTest, DefaultTokenNeverFires) {
  sturdy::cancel_token t;
  EXPECT_FALSE(t.stop_possible());
  EXPECT_FALSE(t.stop_requested());
  EXPECT_EQ(t.reason(), cancel_reason::none);
}

TEST(CancelTokenTest, FiresOnceAndTheFirstReasonWins) {
  sturdy::cancel_source src;
  auto t = src.token();
  EXPECT_TRUE(t.stop_possible());
  EXPECT_FALSE(t.stop_requested());
  EXPECT_TRUE(src.request(cancel_reason::deadline));
  EXPECT_FALSE(src.request_stop());
  EXPECT_TRUE(t.stop_requested());
  EXPECT_EQ(t.reason(), cancel_reason::deadline);
  EXPECT_FALSE(src.request(cancel_reason::none));
}

TEST(CancelTokenTest, CallbacksRunOnceOnFireWithTheReasonAndNotAfterDeregistration) {
  sturdy::cancel_source src;
  std::vector<cancel_reason> seen;
  int plain = 0;
  {
    sturdy::cancel_callback gone(src.token(), [&] { ++plain; });
  }
  sturdy::cancel_callback a(src.token(), [&](cancel_reason r) { seen.push_back(r); });
  sturdy::cancel_callback b(src.token(), [&] { ++plain; });
  src.request_stop();
  src.request_stop();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], cancel_reason::cancelled);
  EXPECT_EQ(plain, 1);
}

TEST(CancelTokenTest, CallbackRegisteredAfterFiringRunsAtOnce) {
  sturdy::cancel_source src;
  src.request(cancel_reason::deadline);
  cancel_reason got = cancel_reason::none;
  sturdy::cancel_callback cb(src.token(), [&](cancel_reason r) { got = r; });
  EXPECT_EQ(got, cancel_reason::deadline);
}

TEST(CancelTokenTest, RegisteringAndFiringAllocateNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not linked (TSan)";
  sturdy::testing::allocation_scope scope;
  sturdy::cancel_source src;
  int n = 0;
  {
    sturdy::cancel_callback cb(src.token(), [&] { ++n; });
    src.request_stop();
  }
  EXPECT_EQ(n, 1);
  EXPECT_EQ(scope.allocations(), 0u);
}

TEST(CancelTokenTest, StdStopBridgeIsRequestedWhenTheTokenFiresAndAllocatesOnce) {
  sturdy::cancel_source src;
  sturdy::testing::allocation_scope scope;
  sturdy::std_stop_bridge bridge(src.token());
  std::stop_token st = bridge.get();
  if (sturdy::testing::counting_new_installed()) {
    EXPECT_LE(scope.allocations(), 1u);
  }
  EXPECT_FALSE(st.stop_requested());
  src.request_stop();
  EXPECT_TRUE(st.stop_requested());
}

TEST(CancelTokenTest, DeregistrationWaitsForACallbackRunningOnAnotherThread) {
  sturdy::cancel_source src;
  std::atomic<int> phase{0};
  auto cb = std::make_unique<sturdy::cancel_callback<std::function<void()>>>(src.token(), std::function<void()>([&] {
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    phase.store(3);
  }));
  std::thread firer([&] { src.request_stop(); });
  while (phase.load() != 1) std::this_thread::yield();
  std::thread releaser([&] { phase.store(2); });
  cb.reset();  // must not return before the callback finished
  EXPECT_EQ(phase.load(), 3);
  firer.join();
  releaser.join();
}

TEST(LinkedCancelSourceTest, FiresWithTheParentsReasonOrItsOwnAndDetachesOnUnlink) {
  sturdy::cancel_source parent;
  {
    sturdy::linked_cancel_source child(parent.token());
    parent.request(cancel_reason::deadline);
    EXPECT_EQ(child.reason(), cancel_reason::deadline);
  }
  sturdy::cancel_source p2;
  sturdy::linked_cancel_source own(p2.token());
  EXPECT_TRUE(own.request(cancel_reason::deadline));
  p2.request_stop();  // too late: the first reason stays
  EXPECT_EQ(own.token().reason(), cancel_reason::deadline);
  sturdy::cancel_source p3;
  sturdy::linked_cancel_source detached(p3.token());
  detached.unlink();
  p3.request_stop();
  EXPECT_FALSE(detached.token().stop_requested());
  sturdy::cancel_source fired;
  fired.request_stop();
  sturdy::linked_cancel_source late(fired.token());  // the parent had fired already
  EXPECT_EQ(late.reason(), cancel_reason::cancelled);
}

TEST(LinkedCancelSourceTest, StdStopTokenRequestIsACancellationAndLinkingAllocatesNothing) {
  std::stop_source ss;
  sturdy::cancel_source parent;
  sturdy::testing::allocation_scope scope;
  {
    sturdy::linked_cancel_source child(parent.token(), ss.get_token());
    ss.request_stop();
    EXPECT_EQ(child.reason(), cancel_reason::cancelled);
  }
  if (sturdy::testing::counting_new_installed()) {
    EXPECT_EQ(scope.allocations(), 0u);
  }
}

// --- deadlines ----------------------------------------------------------------

TEST(DeadlineTest, NoneHasMaxRemainingAndNeverExpires) {
  sturdy::deadline d;
  EXPECT_TRUE(d.is_none());
  EXPECT_EQ(d.remaining(), duration::max());
  EXPECT_FALSE(d.expired());
  EXPECT_TRUE(sturdy::deadline::after(duration::max()).is_none());
}

TEST(DeadlineTest, ZeroOneNanosecondAndMaxBudgets) {
  sturdy::testing::manual_clock clock(time_point(1s));
  const auto ref = sturdy::clock_ref::of(clock);
  const auto zero = sturdy::deadline::after(duration::zero(), ref);
  EXPECT_TRUE(zero.expired());
  EXPECT_EQ(zero.remaining(), duration::zero());
  const auto one = sturdy::deadline::after(duration(1), ref);
  EXPECT_FALSE(one.expired());
  EXPECT_EQ(one.remaining(), duration(1));
  clock.advance(duration(1));
  EXPECT_TRUE(one.expired());
  EXPECT_TRUE(sturdy::deadline::after(duration::max(), ref).is_none());
  EXPECT_TRUE(sturdy::deadline::after(-5s, ref).expired());  // negative is zero
}

TEST(DeadlineTest, EarliestOnOneClockKeepsTheEarlierAndNeverExtends) {
  sturdy::testing::manual_clock clock;
  const auto ref = sturdy::clock_ref::of(clock);
  const auto now = clock.now();
  const auto a = sturdy::deadline::after(100ms, ref, now);
  const auto b = sturdy::deadline::after(50ms, ref, now);
  EXPECT_EQ(a.earliest(b, now), b);
  EXPECT_EQ(b.earliest(a, now), b);
  EXPECT_EQ(a.earliest(sturdy::deadline(), now), a);
  EXPECT_EQ(sturdy::deadline::at(time_point::max(), ref).earliest(a, now), a);
}

TEST(DeadlineTest, EarliestAcrossClocksGoesThroughTheRemainingDuration) {
  // Two clocks that disagree about "now": a deadline of the other clock is
  // carried over by what it has left, never by its raw time point.
  sturdy::testing::manual_clock mine(time_point(10s));
  sturdy::testing::manual_clock other(time_point(1000s));
  const auto other_d = sturdy::deadline::after(30ms, sturdy::clock_ref::of(other));
  const auto my_ref = sturdy::clock_ref::of(mine);
  const auto own = sturdy::deadline::after(100ms, my_ref);
  const auto e = own.earliest(other_d, mine.now());
  EXPECT_EQ(e.clock(), my_ref);
  EXPECT_EQ(e.at(), time_point(10s) + 30ms);
  // And none on one clock takes the other's remaining time on its own.
  const auto e2 = sturdy::deadline::at(time_point::max(), my_ref).earliest(other_d, mine.now());
  EXPECT_EQ(e2.at(), time_point(10s) + 30ms);
}

TEST(DeadlineTest, StatelessClockReferencesCompareEqual) {
  sturdy::steady_clock_source a;
  sturdy::steady_clock_source b;
  EXPECT_EQ(sturdy::clock_ref::of(a), sturdy::clock_ref::of(b));
  EXPECT_EQ(sturdy::clock_ref::of(a), sturdy::clock_ref());
  sturdy::coarse_steady_clock_source c;
  EXPECT_NE(sturdy::clock_ref::of(c), sturdy::clock_ref());
}

TEST(CallContextTest, WithDeadlineOnlyShortens) {
  sturdy::testing::manual_clock clock;
  const auto ref = sturdy::clock_ref::of(clock);
  call_context outer{.deadline = sturdy::deadline::after(50ms, ref)};
  const auto inner = outer.with_deadline(sturdy::deadline::after(200ms, ref), clock.now());
  EXPECT_EQ(inner.deadline, outer.deadline);
  const auto shorter = outer.with_deadline(sturdy::deadline::after(20ms, ref), clock.now());
  EXPECT_EQ(shorter.remaining(), 20ms);
}

TEST(CallContextTest, CallablesTakingTheContextGetItOthersAreCalledBare) {
  sturdy::cancel_source src;
  const call_context ctx{.token = src.token(), .deadline = {}, .attempt = 3};
  auto with = sturdy::invoke_with_context([](const call_context& c) { return static_cast<int>(c.attempt); }, ctx);
  auto without = sturdy::invoke_with_context([] { return 7; }, ctx);
  static_assert(std::is_same_v<decltype(with), sturdy::result<int>>);
  EXPECT_EQ(with.value(), 3);
  EXPECT_EQ(without.value(), 7);
  static_assert(sturdy::context_callable<decltype([](const call_context&) {})>);
  static_assert(!sturdy::context_callable<decltype([] {})>);
  static_assert(!sturdy::context_invocable<decltype([](call_context&) {})>);
}

// --- the coarse clock ---------------------------------------------------------

TEST(CoarseClockTest, NeverAheadOfTheSteadyClockAndWithinItsResolution) {
  const duration res = sturdy::coarse_steady_clock_source::resolution();
  EXPECT_GT(res, duration::zero());
  sturdy::coarse_steady_clock_source coarse;
  for (int i = 0; i < 1000; ++i) {
    const time_point c = coarse.now();
    const time_point s = std::chrono::steady_clock::now();
    ASSERT_LE(c, s);
    ASSERT_LE(s - c, res + 50ms) << "coarse clock lags more than its resolution (+ scheduling slack)";
  }
}

TEST(CoarseClockTest, Monotonic) {
  sturdy::coarse_steady_clock_source coarse;
  time_point last = coarse.now();
  for (int i = 0; i < 100000; ++i) {
    const time_point t = coarse.now();
    ASSERT_GE(t, last);
    last = t;
  }
}

}  // namespace
