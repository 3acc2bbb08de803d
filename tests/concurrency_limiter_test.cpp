// sturdy::concurrency_limiter: admission, the waiter queue (through the
// non-blocking core and through the blocking driver), outcomes, partitions,
// validation, composition and allocation. Time comes from manual_clock; a
// blocked waiter is woken by the test (stop request, release,
// recheck_waiters), never by sleeping.
#include "sturdy/concurrency_limiter.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"
#include "support/limiter_node.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::errc;
using sturdy::partition_id;
using sturdy::wait_status;
using sturdy::testing::manual_clock;

using fixed_limiter = sturdy::concurrency_limiter<sturdy::fixed_limit, manual_clock>;

using sturdy::test::counted_node;

// Spins (yielding, never sleeping) until `cond` holds.
template <class F>
void wait_until(F cond) {
  while (!cond()) std::this_thread::yield();
}

TEST(ConcurrencyLimiterTest, TryAcquireAdmitsUpToTheLimitThenRejects) {
  manual_clock clock;
  fixed_limiter l({}, sturdy::fixed_limit({.limit = 2}), clock);
  auto a = l.try_acquire();
  auto b = l.try_acquire();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a.value().in_flight_at_admission(), 1u);
  EXPECT_EQ(b.value().in_flight_at_admission(), 2u);
  auto c = l.try_acquire();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), errc::limit_exceeded);
  EXPECT_EQ(l.in_flight(), 2u);
  a.value().record_success();
  EXPECT_EQ(l.in_flight(), 1u);
  EXPECT_TRUE(l.try_acquire());  // released again at once (temporary)
  EXPECT_EQ(l.in_flight(), 1u);
  EXPECT_EQ(l.metrics().rejected, 1u);
}

TEST(ConcurrencyLimiterTest, PermitIsMoveOnlyAndReleasesExactlyOnce) {
  static_assert(!std::is_copy_constructible_v<fixed_limiter::permit>);
  static_assert(std::is_nothrow_move_constructible_v<fixed_limiter::permit>);
  manual_clock clock;
  fixed_limiter l({}, sturdy::fixed_limit({.limit = 1}), clock);
  {
    auto r = l.try_acquire();
    ASSERT_TRUE(r);
    fixed_limiter::permit p = std::move(r).value();
    fixed_limiter::permit q = std::move(p);
    EXPECT_FALSE(p.active());  // NOLINT(bugprone-use-after-move): tested on purpose
    EXPECT_TRUE(q.active());
    EXPECT_EQ(l.in_flight(), 1u);
    q.record_dropped();
    q.record_success();  // a second report does nothing
    EXPECT_EQ(l.in_flight(), 0u);
    EXPECT_EQ(l.metrics().dropped, 1u);
  }
  EXPECT_EQ(l.in_flight(), 0u);
  {
    auto r = l.try_acquire();
    ASSERT_TRUE(r);
    fixed_limiter::permit p = std::move(r).value();
    auto r2 = l.try_acquire();
    EXPECT_FALSE(r2);
    p = fixed_limiter::permit();  // move-assigning releases the old one
    EXPECT_EQ(l.in_flight(), 0u);
  }
}

TEST(ConcurrencyLimiterTest, QueuedWaitersAreServedFifo) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  counted_node a, b, c;
  EXPECT_EQ(l.enqueue(a.node, 1s), wait_status::waiting);
  EXPECT_EQ(l.enqueue(b.node, 1s), wait_status::waiting);
  EXPECT_EQ(l.enqueue(c.node, 1s), wait_status::waiting);
  EXPECT_EQ(l.queued(), 3u);
  EXPECT_FALSE(l.try_acquire());  // queued callers are not overtaken
  held.value().record_success();
  EXPECT_EQ(a.wakes, 1);
  EXPECT_EQ(b.wakes + c.wakes, 0);
  EXPECT_EQ(l.poll(a.node, false), wait_status::granted);
  EXPECT_EQ(l.in_flight(), 1u);
  EXPECT_EQ(l.queued(), 2u);
  l.adopt(a.node).record_success();
  EXPECT_EQ(b.wakes, 1);
  l.adopt(b.node).record_success();
  EXPECT_EQ(c.wakes, 1);
  l.adopt(c.node).record_success();
  EXPECT_EQ(l.in_flight(), 0u);
  EXPECT_EQ(l.queued(), 0u);
}

TEST(ConcurrencyLimiterTest, LifoServesTheNewestWaiter) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 10, .order = sturdy::queue_order::lifo}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  counted_node a, b, c;
  (void)l.enqueue(a.node, 1s);
  (void)l.enqueue(b.node, 1s);
  (void)l.enqueue(c.node, 1s);
  held.value().record_success();
  EXPECT_EQ(c.wakes, 1);
  l.adopt(c.node).record_success();
  EXPECT_EQ(b.wakes, 1);
  l.adopt(b.node).record_success();
  EXPECT_EQ(a.wakes, 1);
  l.adopt(a.node).record_success();
}

TEST(ConcurrencyLimiterTest, QueueIsBoundedAndNoWaitMeansNoQueue) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 1}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  counted_node a, b, z;
  EXPECT_EQ(l.enqueue(z.node, 0ns), wait_status::limit_exceeded);  // max_wait 0: never queues
  EXPECT_EQ(l.enqueue(a.node, 1s), wait_status::waiting);
  EXPECT_EQ(l.enqueue(b.node, 1s), wait_status::limit_exceeded);  // queue full
  EXPECT_EQ(l.metrics().rejected, 2u);
  EXPECT_TRUE(l.leave(a.node));
}

TEST(ConcurrencyLimiterTest, WaiterTimesOutWithLimitExceededOrDeadlineExceeded) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  counted_node by_wait, by_deadline;
  EXPECT_EQ(l.enqueue(by_wait.node, 10ms), wait_status::waiting);
  EXPECT_EQ(l.enqueue(by_deadline.node, 1h, clock.now() + 5ms), wait_status::waiting);
  clock.advance(5ms - 1ns);
  EXPECT_EQ(l.poll(by_deadline.node, false), wait_status::waiting);
  clock.advance(1ns);
  EXPECT_EQ(l.poll(by_deadline.node, false), wait_status::deadline_exceeded);
  EXPECT_EQ(l.poll(by_wait.node, false), wait_status::waiting);
  clock.advance(5ms);
  EXPECT_EQ(l.poll(by_wait.node, false), wait_status::limit_exceeded);
  EXPECT_EQ(l.queued(), 0u);
  EXPECT_EQ(l.metrics().timed_out, 2u);
  // A deadline already passed is refused at once, even with a free permit.
  held.value().record_success();
  counted_node late;
  EXPECT_EQ(l.enqueue(late.node, 1s, clock.now()), wait_status::deadline_exceeded);
  EXPECT_EQ(l.in_flight(), 0u);
}

// Failsafe #393: waiters that timed out were later handed permits nobody
// released, until the bulkhead's capacity was zero for good. Here a node
// that left is unlinked under the hand-over lock, so the permit goes to the
// next waiter or back to the pool.
TEST(ConcurrencyLimiterTest, Issue393_TimedOutWaitersNeverReceivePermits) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 100}, sturdy::fixed_limit({.limit = 2}), clock);
  for (int round = 0; round < 50; ++round) {
    auto a = l.try_acquire();
    auto b = l.try_acquire();
    ASSERT_TRUE(a && b);
    std::vector<counted_node> nodes(5);
    for (auto& n : nodes) ASSERT_EQ(l.enqueue(n.node, 1ms), wait_status::waiting);
    clock.advance(1ms);
    for (auto& n : nodes) EXPECT_EQ(l.poll(n.node, false), wait_status::limit_exceeded);
    a.value().record_success();
    b.value().record_dropped();
    for (auto& n : nodes) EXPECT_EQ(n.wakes, 0);
    ASSERT_EQ(l.in_flight(), 0u);
  }
  auto a = l.try_acquire();
  auto b = l.try_acquire();
  EXPECT_TRUE(a && b);  // full capacity after 250 abandoned waits
}

// resilience4j #332: a call cancelled while it ran never released its
// permit. A permit released on every path (cancelled outcome, exception,
// destruction unreported) keeps capacity intact.
TEST(ConcurrencyLimiterTest, Issue332_CancelledCallsReleaseTheirPermits) {
  manual_clock clock;
  fixed_limiter l({}, sturdy::fixed_limit({.limit = 1}), clock);
  for (int i = 0; i < 100; ++i) {
    auto r = l.execute([]() -> sturdy::result<int> { return sturdy::make_error_code(errc::cancelled); });
    EXPECT_EQ(r.error(), errc::cancelled);
    { auto dropped_on_floor = l.try_acquire(); }  // destroyed unreported
    EXPECT_THROW((void)l.execute([]() -> int { throw std::runtime_error("x"); }), std::runtime_error);
    std::stop_source stop;
    stop.request_stop();
    EXPECT_EQ(l.execute([] { return 1; }, stop.get_token()).error(), errc::cancelled);
  }
  EXPECT_EQ(l.in_flight(), 0u);
  EXPECT_TRUE(l.try_acquire());
}

TEST(ConcurrencyLimiterTest, GrantedNodeThatTriesToLeaveKeepsItsPermit) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  counted_node a;
  (void)l.enqueue(a.node, 1s);
  held.value().record_success();  // a is granted...
  EXPECT_FALSE(l.leave(a.node));  // ...so leaving fails: the permit is a's
  EXPECT_EQ(l.in_flight(), 1u);
  l.adopt(a.node).record_ignored();
  EXPECT_EQ(l.in_flight(), 0u);
}

TEST(ConcurrencyLimiterTest, BlockingAcquireIsHandedAReleasedPermit) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  std::atomic<int> got{-1};
  std::thread waiter([&] {
    auto r = l.acquire(1h);
    got = r ? 1 : 0;
  });
  wait_until([&] { return l.queued() == 1; });
  held.value().record_success();
  waiter.join();
  EXPECT_EQ(got.load(), 1);
  EXPECT_EQ(l.in_flight(), 0u);  // the waiter's permit was released when it returned
}

TEST(ConcurrencyLimiterTest, BlockingAcquireIsCancelledByStopToken) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  std::stop_source stop;
  std::error_code ec;
  std::thread waiter([&] {
    auto r = l.acquire(1h, stop.get_token());
    if (!r) ec = r.error();
  });
  wait_until([&] { return l.queued() == 1; });
  stop.request_stop();
  waiter.join();
  EXPECT_EQ(ec, errc::cancelled);
  EXPECT_EQ(l.queued(), 0u);
  EXPECT_EQ(l.metrics().cancelled, 1u);
  held.value().record_success();
  EXPECT_EQ(l.in_flight(), 0u);  // not handed to the waiter that left
  EXPECT_TRUE(l.try_acquire());
}

TEST(ConcurrencyLimiterTest, BlockingAcquireTimesOutOnTheManualClock) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  std::error_code ec;
  std::thread waiter([&] {
    auto r = l.acquire(50ms, {}, clock.now() + 20ms);
    if (!r) ec = r.error();
  });
  wait_until([&] { return l.queued() == 1; });
  l.recheck_waiters();  // woken before its time: waits on
  clock.advance(20ms);
  l.recheck_waiters();
  waiter.join();
  EXPECT_EQ(ec, errc::deadline_exceeded);
  EXPECT_EQ(l.queued(), 0u);
}

TEST(ConcurrencyLimiterTest, BlockingAcquireChecksTheDeadlineFirst) {
  manual_clock clock(sturdy::time_point{} + 1h);
  fixed_limiter l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}), clock);
  EXPECT_EQ(l.acquire(1s, {}, clock.now()).error(), errc::deadline_exceeded);  // passed: refused with a free permit
  EXPECT_EQ(l.in_flight(), 0u);
  auto p = l.acquire(1s, {}, clock.now() + 1ns);  // a permit is free and the deadline ahead: no wait
  ASSERT_TRUE(p);
  EXPECT_EQ(l.in_flight(), 1u);
  EXPECT_EQ(l.metrics().rejected, 1u);
}

TEST(ConcurrencyLimiterTest, BlockingAcquireTimesOutOnTheSteadyClock) {
  // max_wait 1 ns on the real clock: the wait ends without any help.
  sturdy::concurrency_limiter<> l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}));
  auto held = l.try_acquire();
  auto r = l.acquire(1ns);
  EXPECT_EQ(r.error(), errc::limit_exceeded);
  std::stop_source stop;
  stop.request_stop();
  EXPECT_EQ(l.acquire(sturdy::duration::max(), stop.get_token()).error(), errc::cancelled);
}

TEST(ConcurrencyLimiterTest, ExecuteClassifiesOutcomes) {
  manual_clock clock;
  sturdy::concurrency_limiter<sturdy::aimd_limit, manual_clock> l(
      {}, sturdy::aimd_limit({.initial_limit = 10, .min_limit = 1, .max_limit = 100}), clock);
  auto ok = l.execute([&] {
    clock.advance(3ms);
    return 7;
  });
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok.value(), 7);
  EXPECT_EQ(l.metrics().samples, 1u);
  EXPECT_EQ(l.limit(), 10u);  // in flight 1 * 2 < 10: app-limited
  auto timed_out = l.execute([]() -> sturdy::result<int> { return sturdy::make_error_code(errc::deadline_exceeded); });
  EXPECT_EQ(timed_out.error(), errc::deadline_exceeded);
  EXPECT_EQ(l.metrics().dropped, 1u);
  EXPECT_EQ(l.limit(), 9u);  // floor(10 * 0.9)
  auto other = l.execute([]() -> sturdy::result<int> { return std::make_error_code(std::errc::no_such_file_or_directory); });
  EXPECT_FALSE(other);
  EXPECT_EQ(l.metrics().samples, 3u);  // an answered error is a latency sample
  EXPECT_THROW((void)l.execute([]() -> int { throw std::logic_error("boom"); }), std::logic_error);
  EXPECT_EQ(l.metrics().samples, 3u);  // an exception is ignored
  EXPECT_EQ(l.in_flight(), 0u);
}

TEST(ConcurrencyLimiterTest, CustomClassifierTurns503IntoDrops) {
  manual_clock clock;
  sturdy::concurrency_limiter<sturdy::aimd_limit, manual_clock> l(
      {.classify = [](const sturdy::failure_info& f) {
         return f.code == std::errc::connection_refused ? sturdy::limit_outcome::dropped
                                                        : sturdy::limit_outcome::success;
       }},
      sturdy::aimd_limit({.initial_limit = 20, .min_limit = 1}), clock);
  (void)l.execute([]() -> sturdy::result<int> { return std::make_error_code(std::errc::connection_refused); });
  EXPECT_EQ(l.metrics().dropped, 1u);
  EXPECT_EQ(l.limit(), 18u);
}

TEST(ConcurrencyLimiterTest, RaisedLimitServesWaiters) {
  manual_clock clock;
  sturdy::concurrency_limiter<sturdy::aimd_limit, manual_clock> l(
      {.max_queue = 10}, sturdy::aimd_limit({.initial_limit = 2, .min_limit = 1, .max_limit = 10}), clock);
  auto a = l.try_acquire();
  auto b = l.try_acquire();
  counted_node w1, w2;
  (void)l.enqueue(w1.node, 1s);
  (void)l.enqueue(w2.node, 1s);
  a.value().record_success();  // in flight 1*2 >= 2: limit 3; hands a's permit over and serves one more
  EXPECT_EQ(l.limit(), 3u);
  EXPECT_EQ(w1.wakes, 1);
  EXPECT_EQ(w2.wakes, 1);
  EXPECT_EQ(l.in_flight(), 3u);
  l.adopt(w1.node).record_ignored();
  l.adopt(w2.node).record_ignored();
  b.value().record_ignored();
  EXPECT_EQ(l.in_flight(), 0u);
}

TEST(ConcurrencyLimiterTest, LoweredLimitHoldsWaitersUntilInFlightFallsBelowIt) {
  manual_clock clock;
  sturdy::concurrency_limiter<sturdy::aimd_limit, manual_clock> l(
      {.max_queue = 10}, sturdy::aimd_limit({.initial_limit = 4, .min_limit = 1, .max_limit = 10, .backoff_ratio = 0.5}),
      clock);
  std::vector<decltype(l)::permit> held;
  for (int i = 0; i < 4; ++i) held.push_back(std::move(l.try_acquire()).value());
  counted_node w;
  (void)l.enqueue(w.node, 1s);
  held[0].record_dropped();  // limit 2; in flight 3 > 2: not handed over
  EXPECT_EQ(l.limit(), 2u);
  EXPECT_EQ(w.wakes, 0);
  held[1].record_ignored();  // in flight 2: still at the limit
  EXPECT_EQ(w.wakes, 0);
  held[2].record_ignored();  // in flight 1 < 2: handed over
  EXPECT_EQ(w.wakes, 1);
  l.adopt(w.node).record_ignored();
  held[3].record_ignored();
  EXPECT_EQ(l.in_flight(), 0u);
}

TEST(ConcurrencyLimiterTest, PartitionsBorrowIdleSharesAndGiveThemBackUnderContention) {
  manual_clock clock;
  fixed_limiter l({.max_queue = 20, .partitions = {{"live", 0.8}, {"batch", 0.2}}},
                  sturdy::fixed_limit({.limit = 10}), clock);
  const partition_id live = *l.find_partition("live");
  const partition_id batch = *l.find_partition("batch");
  EXPECT_FALSE(l.find_partition("nope"));
  EXPECT_EQ(l.partition_limit(live), 8u);
  EXPECT_EQ(l.partition_limit(batch), 2u);
  // live is idle: batch borrows the whole limit.
  std::vector<fixed_limiter::permit> batch_permits;
  for (int i = 0; i < 10; ++i) batch_permits.push_back(std::move(l.try_acquire(batch)).value());
  EXPECT_EQ(l.in_flight(batch), 10u);
  EXPECT_FALSE(l.try_acquire(live));
  // live and batch both queue; every released batch permit goes to live
  // until live holds its share, although batch queued first.
  std::vector<counted_node> batch_waiters(3), live_waiters(9);
  for (auto& n : batch_waiters) ASSERT_EQ(l.enqueue(n.node, 1s, sturdy::time_point::max(), batch), wait_status::waiting);
  for (auto& n : live_waiters) ASSERT_EQ(l.enqueue(n.node, 1s, sturdy::time_point::max(), live), wait_status::waiting);
  std::vector<fixed_limiter::permit> live_permits;
  for (int i = 0; i < 8; ++i) {
    batch_permits[static_cast<std::size_t>(i)].record_success();
    ASSERT_EQ(live_waiters[static_cast<std::size_t>(i)].wakes, 1) << i;
    live_permits.push_back(l.adopt(live_waiters[static_cast<std::size_t>(i)].node));
  }
  EXPECT_EQ(l.in_flight(live), 8u);
  EXPECT_EQ(l.in_flight(batch), 2u);
  // live is at its share: the next permit goes to the oldest waiter, batch's.
  batch_permits[8].record_success();
  EXPECT_EQ(batch_waiters[0].wakes, 1);
  EXPECT_EQ(live_waiters[8].wakes, 0);
  live_permits.push_back(l.adopt(batch_waiters[0].node));
  for (auto* n : {&batch_waiters[1], &batch_waiters[2], &live_waiters[8]}) EXPECT_TRUE(l.leave(n->node));
  live_permits.clear();
  batch_permits.clear();
  EXPECT_EQ(l.in_flight(), 0u);
  EXPECT_EQ(l.in_flight(live), 0u);
  EXPECT_EQ(l.in_flight(batch), 0u);
  // An unknown partition is refused.
  EXPECT_EQ(l.try_acquire(partition_id{7}).error(), errc::invalid_options);
}

TEST(ConcurrencyLimiterTest, InvalidOptionsRefuseEveryCallAndReportOnce) {
  manual_clock clock;
  sturdy::testing::recording_listener events;
  sturdy::concurrency_limiter<sturdy::aimd_limit, manual_clock, sturdy::testing::recording_listener> l(
      {}, sturdy::aimd_limit({.backoff_ratio = 2.0}), clock, events);
  EXPECT_FALSE(l.valid());
  EXPECT_EQ(l.validation_message(), "aimd_limit_options.backoff_ratio must be in [0.5, 1)");
  EXPECT_EQ(l.try_acquire().error(), errc::invalid_options);
  EXPECT_EQ(l.acquire(1s).error(), errc::invalid_options);
  EXPECT_EQ(l.execute([] { return 1; }).error(), errc::invalid_options);
  const auto rejected = events.of<sturdy::options_rejected>();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].primitive, "concurrency_limiter");
  EXPECT_EQ(rejected[0].message, "aimd_limit_options.backoff_ratio must be in [0.5, 1)");
}

TEST(ConcurrencyLimiterTest, EveryOptionIsValidated) {
  using O = sturdy::concurrency_limiter_options;
  EXPECT_EQ(O{.max_queue = (1u << 30) + 1}.validation_message(), "concurrency_limiter_options.max_queue must be <= 2^30");
  EXPECT_EQ(O{.max_wait = -1ns}.validation_message(), "concurrency_limiter_options.max_wait must be >= 0");
  EXPECT_EQ(O{.order = static_cast<sturdy::queue_order>(7)}.validation_message(),
            "concurrency_limiter_options.order must be fifo or lifo");
  EXPECT_EQ((O{.partitions = {{"", 0.5}}}.validation_message()),
            "concurrency_limiter_options.partitions must have non-empty names");
  EXPECT_EQ((O{.partitions = {{"a", 0.0}}}.validation_message()),
            "concurrency_limiter_options.partitions share must be in (0, 1]");
  EXPECT_EQ((O{.partitions = {{"a", 0.5}, {"a", 0.5}}}.validation_message()),
            "concurrency_limiter_options.partitions must have unique names");
  EXPECT_EQ((O{.partitions = {{"a", 0.6}, {"b", 0.5}}}.validation_message()),
            "concurrency_limiter_options.partitions shares must sum to at most 1");
  std::vector<sturdy::limiter_partition> many(65, {"x", 0.01});
  for (std::size_t i = 0; i < many.size(); ++i) many[i].name = "p" + std::to_string(i);
  EXPECT_EQ(O{.partitions = many}.validation_message(),
            "concurrency_limiter_options.partitions must hold at most 64 partitions");
  EXPECT_TRUE(O{}.validate());
  EXPECT_TRUE((O{.max_queue = 1u << 30, .max_wait = sturdy::duration::max()}.validate()));
  EXPECT_EQ(O{.max_wait = -1ns}.validate().error(), errc::invalid_options);
}

TEST(ConcurrencyLimiterTest, MaxWaitAtExtremes) {
  manual_clock clock(sturdy::time_point::max() - 1h);  // near the end of time
  fixed_limiter l({.max_queue = 10}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  counted_node a, b;
  EXPECT_EQ(l.enqueue(a.node, sturdy::duration::max()), wait_status::waiting);  // saturates, never wraps
  EXPECT_EQ(l.enqueue(b.node, 1ns), wait_status::waiting);
  clock.advance(1ns);
  EXPECT_EQ(l.poll(b.node, false), wait_status::limit_exceeded);
  clock.advance(59min);
  EXPECT_EQ(l.poll(a.node, false), wait_status::waiting);
  EXPECT_TRUE(l.leave(a.node));
}

TEST(ConcurrencyLimiterTest, EventsReportRejectionsAndLimitChanges) {
  manual_clock clock;
  sturdy::testing::recording_listener events;
  sturdy::concurrency_limiter<sturdy::aimd_limit, manual_clock, sturdy::testing::recording_listener> l(
      {}, sturdy::aimd_limit({.initial_limit = 1, .min_limit = 1}), clock, events);
  auto held = l.try_acquire();
  EXPECT_FALSE(l.try_acquire());
  held.value().record_success();
  const auto rejected = events.of<sturdy::limiter_rejected>();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].reason, errc::limit_exceeded);
  const auto changed = events.of<sturdy::limiter_limit_changed>();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].from, 1u);
  EXPECT_EQ(changed[0].to, 2u);
}

TEST(ConcurrencyLimiterTest, ComposesAsAPinnedLayerHeldByReference) {
  manual_clock clock;
  sturdy::testing::recording_sleeper sleeper(clock);
  fixed_limiter l({}, sturdy::fixed_limit({.limit = 1}), clock);
  auto held = l.try_acquire();
  sturdy::retry_policy<sturdy::backoff, manual_clock, sturdy::testing::recording_sleeper> retry(
      {.max_attempts = 3, .backoff = sturdy::backoff::constant(10ms)}, clock, sleeper);
  auto pipeline = sturdy::compose(retry, l);
  static_assert(std::is_same_v<std::tuple_element_t<1, std::remove_reference_t<decltype(pipeline.layers())>>, fixed_limiter&>);
  int calls = 0;
  // Every attempt is refused by the limiter: limit_exceeded each time.
  auto r = pipeline.execute([&] { return ++calls; });
  EXPECT_EQ(r.error(), errc::limit_exceeded);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(l.metrics().rejected, 3u);
  held.value().record_success();
  auto ok = pipeline.execute([&] { return ++calls; });
  EXPECT_EQ(ok.value(), 1);
  EXPECT_EQ(l.in_flight(), 0u);
}

TEST(ConcurrencyLimiterTest, FastPathsAllocateNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not linked (TSan)";
  manual_clock clock;
  fixed_limiter l({.max_queue = 4}, sturdy::fixed_limit({.limit = 2}), clock);
  sturdy::concurrency_limiter<sturdy::gradient2_limit, manual_clock> g({}, {}, clock);
  sturdy::concurrency_limiter<sturdy::envoy_gradient_limit, manual_clock> e({}, {}, clock);
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    auto p = l.try_acquire();
    auto q = l.try_acquire();
    (void)l.try_acquire();
    counted_node n;
    (void)l.enqueue(n.node, 1s);
    q.value().record_success();
    l.adopt(n.node).record_dropped();
    (void)l.execute([] { return 1; });
    auto gp = g.try_acquire();
    clock.advance(1ms);
    gp.value().record_success();
    (void)e.execute([&] {
      clock.advance(1ms);
      return 2;
    });
  }
  EXPECT_EQ(scope.allocations(), 0u);
}

TEST(ConcurrencyLimiterTest, WaitingPathAllocatesNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not linked (TSan)";
  manual_clock clock;
  fixed_limiter l({.max_queue = 4}, sturdy::fixed_limit({.limit = 1}), clock);
  std::stop_source stop;  // its state is allocated here, by the caller
  auto held = l.try_acquire();
  std::uint64_t allocations = 99;
  bool granted = false;
  std::thread waiter([&] {
    sturdy::testing::allocation_scope scope;  // counts this thread only
    auto r = l.acquire(1h, stop.get_token());  // waits, with a stop callback
    granted = r.has_value();
    allocations = scope.allocations();
  });
  wait_until([&] { return l.queued() == 1; });
  held.value().record_success();
  waiter.join();
  EXPECT_TRUE(granted);
  EXPECT_EQ(allocations, 0u);
}

}  // namespace
