// Tests of sturdy/asio/idempotency.hpp: async_execute on virtual time. A
// duplicate of a key in flight waits asynchronously (no thread blocks: the
// test is single-threaded) and is woken by the owner's completion at that
// instant; the rules are the blocking execute's.

#include "sturdy/asio/idempotency.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <vector>

#include "support/asio_manual_op.hpp"
#include "sturdy/testing/asio_virtual_clock.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using sturdy::testing::asio_virtual_clock;
using sturdy::testing::asio_virtual_clock_source;
using sturdy::testing::asio_virtual_timer;
using sturdy::testing::manual_op;
using sturdy::testing::run_for;
using cache_t = sturdy::idempotency_cache<int, asio_virtual_clock_source>;
using R = sturdy::result<int>;
using IR = sturdy::idempotency_result<R>;

sturdy::duration vnow() { return asio_virtual_clock::now().time_since_epoch(); }

using completion = sturdy::testing::recorded_completion<IR>;
using sturdy::testing::recorder;

sturdy::idempotency_options waiting(sturdy::duration wait_timeout = 5s) {
  sturdy::idempotency_options o;
  o.policy.in_flight = sturdy::in_flight_policy::wait;
  o.policy.wait_timeout = wait_timeout;
  return o;
}

class AsioIdempotency : public ::testing::Test {
 protected:
  void SetUp() override { asio_virtual_clock::reset(); }
  net::io_context io;
};

TEST_F(AsioIdempotency, FirstCallRunsTheWorkLaterCallsReplay) {
  cache_t cache;
  manual_op<int> op;
  completion a, b;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return op.start(); }, recorder(io, a));
  run_for(io, 2ms);
  op.complete(42);
  run_for(io, 1ms);
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.value->result.value(), 42);
  EXPECT_FALSE(a.value->replayed);
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return op.start(); }, recorder(io, b));
  run_for(io, 1ms);
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(b.value->result.value(), 42);
  EXPECT_TRUE(b.value->replayed);
  EXPECT_EQ(op.started, 1);  // exactly once
  // The blocking driver sees the same store.
  auto blocking = cache.execute("k", 1, [] { return 0; });
  EXPECT_TRUE(blocking.replayed);
  EXPECT_EQ(blocking.result.value(), 42);
}

TEST_F(AsioIdempotency, DuplicateWaitsWithoutBlockingAndIsWokenAtTheCompletion) {
  cache_t cache(waiting());
  manual_op<int> owner;
  manual_op<int> other;
  std::vector<completion> waiters(4);
  completion first;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  for (auto& w : waiters) {
    sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return other.start(); }, recorder(io, w));
  }
  run_for(io, 6ms);  // they are parked: this thread is free
  for (auto& w : waiters) EXPECT_EQ(w.calls, 0);
  EXPECT_EQ(cache.stats().waits, 4u);
  owner.complete(7);  // at t = 7 ms
  run_for(io, 0ms);
  for (auto& w : waiters) {
    ASSERT_EQ(w.calls, 1);
    EXPECT_EQ(w.at, sturdy::duration(7ms));  // woken by the completion, not by polling
    EXPECT_EQ(w.value->result.value(), 7);
    EXPECT_TRUE(w.value->replayed);
  }
  EXPECT_EQ(other.started, 0);
  EXPECT_EQ(first.value->result.value(), 7);
}

TEST_F(AsioIdempotency, RejectPolicyAnswersInProgress) {
  cache_t cache;
  manual_op<int> owner;
  completion first, dup;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, dup));
  run_for(io, 1ms);
  EXPECT_EQ(dup.value->result.error(), sturdy::errc::in_progress);
  EXPECT_EQ(owner.started, 1);
}

TEST_F(AsioIdempotency, WaiterTimesOutAtExactlyWaitTimeoutAndLeavesTheList) {
  cache_t cache(waiting(20ms));
  manual_op<int> owner;
  completion first, dup;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, dup));
  run_for(io, 20ms);
  EXPECT_EQ(dup.calls, 1);
  EXPECT_EQ(dup.at, sturdy::duration(21ms));
  EXPECT_EQ(dup.value->result.error(), sturdy::errc::wait_timeout);
  EXPECT_EQ(cache.stats().wait_timeouts, 1u);
  owner.complete(3);  // wakes nobody (the node left the list)
  run_for(io, 1ms);
  EXPECT_EQ(dup.calls, 1);
  EXPECT_EQ(first.value->result.value(), 3);
}

TEST_F(AsioIdempotency, OwnersFailureNotCachedOneWaiterRunsTheWork) {
  cache_t cache(waiting());
  manual_op<int> owner, second;
  completion first, dup;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return second.start(); }, recorder(io, dup));
  run_for(io, 1ms);
  owner.complete(sturdy::make_failure<R>(std::make_error_code(std::errc::io_error)));
  run_for(io, 1ms);
  EXPECT_EQ(first.value->result.error(), std::make_error_code(std::errc::io_error));
  EXPECT_EQ(second.started, 1);  // the waiter acquired the released key
  second.complete(9);
  run_for(io, 1ms);
  EXPECT_EQ(dup.value->result.value(), 9);
  EXPECT_FALSE(dup.value->replayed);
}

TEST_F(AsioIdempotency, CancellingAParkedWaiterAnswersAtOnceAndLeavesTheList) {
  cache_t cache(waiting());
  manual_op<int> owner;
  completion first, dup;
  net::cancellation_signal sig;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); },
                                                  net::bind_cancellation_slot(sig.slot(), recorder(io, dup)));
  run_for(io, 4ms);
  sig.emit(net::cancellation_type::total);
  run_for(io, 0ms);
  EXPECT_EQ(dup.calls, 1);
  EXPECT_EQ(dup.at, sturdy::duration(5ms));
  EXPECT_EQ(dup.value->result.error(), sturdy::errc::cancelled);
  owner.complete(1);
  run_for(io, 1ms);
  EXPECT_EQ(dup.calls, 1);
  EXPECT_EQ(first.value->result.value(), 1);
}

TEST_F(AsioIdempotency, CancelBeforeStartRunsNothing) {
  cache_t cache;
  manual_op<int> op;
  completion c;
  net::cancellation_signal sig;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return op.start(); },
                                                  net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  sig.emit(net::cancellation_type::terminal);
  run_for(io, 1ms);
  EXPECT_EQ(op.started, 0);
  EXPECT_EQ(c.value->result.error(), sturdy::errc::cancelled);
  EXPECT_EQ(cache.stats().entries, 0u);  // the key was never taken
}

TEST_F(AsioIdempotency, CancellingTheRunningWorkIsForwardedAndReleasesTheKey) {
  cache_t cache;
  manual_op<int> op, again;
  completion c, d;
  net::cancellation_signal sig;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return op.start(); },
                                                  net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  run_for(io, 2ms);
  sig.emit(net::cancellation_type::partial);
  run_for(io, 0ms);
  EXPECT_EQ(op.seen, net::cancellation_type::partial);
  EXPECT_EQ(c.value->result.error(), std::make_error_code(std::errc::operation_canceled));
  // A failure that is not cached released the key: the next call runs the work.
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return again.start(); }, recorder(io, d));
  run_for(io, 1ms);
  EXPECT_EQ(again.started, 1);
}

TEST_F(AsioIdempotency, CallersDeadlineAndTokenEndTheWait) {
  asio_virtual_clock_source clock;
  cache_t cache(waiting(1s));
  manual_op<int> owner;
  completion first, by_deadline, by_token;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  sturdy::call_context ctx;
  ctx.deadline = sturdy::deadline::after(10ms, sturdy::clock_ref::of(clock));
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, cache.options().policy, ctx,
                                                  [&] { return owner.start(); }, recorder(io, by_deadline));
  sturdy::cancel_source caller;
  sturdy::call_context ctx2;
  ctx2.token = caller.token();
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, cache.options().policy, ctx2,
                                                  [&] { return owner.start(); }, recorder(io, by_token));
  run_for(io, 3ms);
  caller.request_stop();  // at 4 ms
  run_for(io, 0ms);
  EXPECT_EQ(by_token.at, sturdy::duration(4ms));
  EXPECT_EQ(by_token.value->result.error(), sturdy::errc::cancelled);
  run_for(io, 7ms);
  EXPECT_EQ(by_deadline.at, sturdy::duration(11ms));
  EXPECT_EQ(by_deadline.value->result.error(), sturdy::errc::deadline_exceeded);
  owner.complete(5);
  run_for(io, 1ms);
  EXPECT_EQ(first.value->result.value(), 5);
  EXPECT_EQ(by_token.calls + by_deadline.calls, 2);
}

// A fired ctx.token (either reason) on a free key: refused with its errc
// before the store is asked; the work never starts, the key stays free.
TEST_F(AsioIdempotency, Issue17_AFiredTokenNeverAcquiresAFreeKey) {
  for (const sturdy::cancel_reason why : {sturdy::cancel_reason::cancelled, sturdy::cancel_reason::deadline}) {
    SCOPED_TRACE(static_cast<int>(why));
    cache_t cache;
    manual_op<int> op, again;
    completion c, d;
    sturdy::cancel_source caller;
    ASSERT_TRUE(caller.request(why));
    sturdy::call_context ctx;
    ctx.token = caller.token();
    sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, cache.options().policy, ctx,
                                                    [&] { return op.start(); }, recorder(io, c));
    run_for(io, 1ms);
    EXPECT_EQ(op.started, 0);
    ASSERT_EQ(c.calls, 1);
    ASSERT_FALSE(c.value->result.has_value());
    EXPECT_EQ(c.value->result.error(), sturdy::to_errc(why));
    EXPECT_FALSE(c.value->replayed);
    EXPECT_EQ(cache.stats().entries, 0u);  // the key is still free
    EXPECT_EQ(cache.stats().misses, 0u);
    // A later call with a live token runs the work.
    sturdy::cancel_source live;
    sturdy::call_context ok;
    ok.token = live.token();
    sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, cache.options().policy, ok,
                                                    [&] { return again.start(); }, recorder(io, d));
    run_for(io, 1ms);
    EXPECT_EQ(again.started, 1);
    again.complete(3);
    run_for(io, 1ms);
    EXPECT_EQ(d.value->result.value(), 3);
    EXPECT_FALSE(d.value->replayed);
  }
}

// A completed key is not replayed to a fired token, and ctx.deadline
// already passed (at the deadline counts) is refused the same way, as the
// blocking execute does.
TEST_F(AsioIdempotency, Issue17_AFiredTokenOrAPassedDeadlineGetsNoReplayAndRunsNothing) {
  asio_virtual_clock_source clock;
  cache_t cache;
  manual_op<int> op;
  completion fired, passed, free_key, one_ns;
  sturdy::cancel_source caller;
  caller.request_stop();
  sturdy::call_context ctx;
  ctx.token = caller.token();
  sturdy::call_context late;
  late.deadline = sturdy::deadline::at(clock.now(), sturdy::clock_ref::of(clock));
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "free", 1, cache.options().policy, late,
                                                  [&] { return op.start(); }, recorder(io, free_key));
  run_for(io, 1ms);
  EXPECT_EQ(op.started, 0);
  ASSERT_FALSE(free_key.value->result.has_value());
  EXPECT_EQ(free_key.value->result.error(), sturdy::errc::deadline_exceeded);
  EXPECT_EQ(cache.stats().entries, 0u);
  // 1 ns left still runs.
  sturdy::call_context just;
  just.deadline = sturdy::deadline::after(1ns, sturdy::clock_ref::of(clock));
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, cache.options().policy, just,
                                                  [&] { return op.start(); }, recorder(io, one_ns));
  run_for(io, 0ms);
  EXPECT_EQ(op.started, 1);
  op.complete(4);
  run_for(io, 1ms);
  EXPECT_EQ(one_ns.value->result.value(), 4);
  // "k" is completed now.
  late.deadline = sturdy::deadline::at(clock.now(), sturdy::clock_ref::of(clock));
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, cache.options().policy, ctx,
                                                  [&] { return op.start(); }, recorder(io, fired));
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, cache.options().policy, late,
                                                  [&] { return op.start(); }, recorder(io, passed));
  run_for(io, 1ms);
  EXPECT_EQ(op.started, 1);
  EXPECT_EQ(fired.value->result.error(), sturdy::errc::cancelled);
  EXPECT_EQ(passed.value->result.error(), sturdy::errc::deadline_exceeded);
  EXPECT_FALSE(fired.value->replayed || passed.value->replayed);
  EXPECT_EQ(cache.stats().hits, 0u);
}

TEST_F(AsioIdempotency, InvalidPolicyIsRefusedWithTheFieldNamed) {
  cache_t cache;
  manual_op<int> op;
  completion c;
  sturdy::idempotency_policy bad;
  bad.wait_timeout = -1ns;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, bad, sturdy::call_context{},
                                                  [&] { return op.start(); }, recorder(io, c));
  run_for(io, 1ms);
  EXPECT_EQ(op.started, 0);
  EXPECT_EQ(c.value->result.error(), sturdy::errc::invalid_options);
  completion empty_key;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "", 1, [&] { return op.start(); }, recorder(io, empty_key));
  run_for(io, 1ms);
  EXPECT_EQ(empty_key.value->result.error(), sturdy::errc::missing_key);
}

net::awaitable<R> coro_work(asio_virtual_timer& t) {
  t.expires_after(3ms);
  co_await t.async_wait(net::use_awaitable);
  co_return 31;
}
struct coro_maker {
  asio_virtual_timer& t;
  net::awaitable<R> operator()() const { return coro_work(t); }
};
net::awaitable<void> await_execute(cache_t& cache, asio_virtual_timer& t, completion& c) {
  IR r = co_await sturdy::asio::async_execute<asio_virtual_timer>(cache, "coro", 1, coro_maker{t}, net::use_awaitable);
  ++c.calls;
  c.value.emplace(std::move(r));
  c.at = vnow();
}

TEST_F(AsioIdempotency, CompletionTokens) {
  cache_t cache;
  asio_virtual_timer t(io);
  completion c;
  net::co_spawn(io, await_execute(cache, t, c), net::detached);
  run_for(io, 3ms);
  EXPECT_EQ(c.value->result.value(), 31);
  EXPECT_EQ(c.at, sturdy::duration(3ms));

  std::future<IR> f = sturdy::asio::async_execute<asio_virtual_timer>(cache, "coro", 1, coro_maker{t},
                                                                      net::bind_executor(io, net::use_future));
  run_for(io, 0ms);
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(f.get().replayed);

  // deferred: the key and the policy are copied (the originals are gone at launch).
  auto d = [&] {
    std::string key = "deferred";
    return sturdy::asio::async_execute<asio_virtual_timer>(cache, key, 1, coro_maker{t}, net::deferred);
  }();
  completion e;
  std::move(d)(recorder(io, e));
  run_for(io, 3ms);
  EXPECT_EQ(e.value->result.value(), 31);
}

TEST_F(AsioIdempotency, DestroyingTheIoContextTakesTheWaiterOffTheList) {
  cache_t cache(waiting());
  manual_op<int> owner;
  completion first;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  {
    net::io_context local;
    manual_op<int> unused;
    sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return unused.start(); },
                                                    net::bind_executor(local, [](IR) {}));
    run_for(local, 1ms);
    EXPECT_EQ(cache.stats().waits, 1u);
  }
  owner.complete(2);  // the store wakes its (now empty) list: nothing dangles (ASan)
  run_for(io, 1ms);
  EXPECT_EQ(first.value->result.value(), 2);
}

// A store that cannot wake waiters (as the Redis store): the memory store
// with its waiter list unused. The async driver then polls on the Timer,
// poll_initial doubling up to poll_max, as the blocking driver does.
struct polling_store {
  using value_type = sturdy::outcome<int>;
  using options_type = sturdy::memory_store_options;
  static constexpr bool wakes_waiters = false;
  polling_store(options_type o, asio_virtual_clock_source c) : inner(std::move(o), c) {}
  sturdy::memory_idempotency_store<value_type, asio_virtual_clock_source> inner;
  int begins = 0;  // how often the cache asked (each poll asks once)
  auto begin(std::string_view k, std::uint64_t f, sturdy::duration lease, sturdy::idempotency_waiter*) {
    ++begins;
    return inner.begin(k, f, lease, nullptr);
  }
  auto complete(std::string_view k, sturdy::fencing_token t, value_type v, sturdy::duration ttl) {
    return inner.complete(k, t, std::move(v), ttl);
  }
  auto abandon(std::string_view k, sturdy::fencing_token t) { return inner.abandon(k, t); }
  void cancel_wait(std::string_view, sturdy::idempotency_waiter&) noexcept {}
  [[nodiscard]] sturdy::idempotency_store_stats stats() const { return inner.stats(); }
};

TEST_F(AsioIdempotency, StoreThatCannotWakeWaitersIsPolledOnTheTimer) {
  sturdy::idempotency_cache<int, asio_virtual_clock_source, sturdy::thread_sleeper, sturdy::null_listener,
                            polling_store>
      cache(waiting());  // poll_initial 1 ms, poll_max 50 ms
  manual_op<int> owner, other;
  completion first, dup;
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return other.start(); }, recorder(io, dup));
  run_for(io, 6ms);  // polls at 1, 2 and 4 ms; the next at 8 ms
  owner.complete(6);  // at 7 ms
  run_for(io, 0ms);
  EXPECT_EQ(dup.calls, 0);
  run_for(io, 1ms);
  EXPECT_EQ(dup.calls, 1);
  EXPECT_EQ(dup.at, sturdy::duration(8ms));
  EXPECT_EQ(dup.value->result.value(), 6);
  EXPECT_TRUE(dup.value->replayed);
  EXPECT_EQ(other.started, 0);
}

// The poll sleep (a store that cannot wake waiters) ends at once on the
// caller's Asio cancellation or ctx.token, not at the next poll: the answer
// comes at that instant, the store is not asked again, and a key the owner
// then releases is not taken by the departed waiter.
TEST_F(AsioIdempotency, CancellingAPollingWaiterAnswersAtOnceAndStopsPolling) {
  sturdy::idempotency_cache<int, asio_virtual_clock_source, sturdy::thread_sleeper, sturdy::null_listener,
                            polling_store>
      cache(waiting());  // poll_initial 1 ms, poll_max 50 ms
  manual_op<int> owner, other;
  completion first, by_slot, by_token;
  net::cancellation_signal sig;
  sturdy::cancel_source caller;
  sturdy::call_context ctx;
  ctx.token = caller.token();
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return owner.start(); }, recorder(io, first));
  run_for(io, 1ms);
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, [&] { return other.start(); },
                                                  net::bind_cancellation_slot(sig.slot(), recorder(io, by_slot)));
  sturdy::asio::async_execute<asio_virtual_timer>(cache, "k", 1, cache.options().policy, ctx,
                                                  [&] { return other.start(); }, recorder(io, by_token));
  run_for(io, 5ms);  // both poll at 1, 2 and 4 ms; the next at 8 ms
  const int begins = cache.store().begins;
  sig.emit(net::cancellation_type::terminal);  // at 6 ms
  caller.request_stop();
  run_for(io, 0ms);
  ASSERT_EQ(by_slot.calls, 1);
  ASSERT_EQ(by_token.calls, 1);
  EXPECT_EQ(by_slot.at, sturdy::duration(6ms));
  EXPECT_EQ(by_token.at, sturdy::duration(6ms));
  EXPECT_EQ(by_slot.value->result.error(), sturdy::errc::cancelled);
  EXPECT_EQ(by_token.value->result.error(), sturdy::errc::cancelled);
  EXPECT_EQ(cache.store().begins, begins);  // refused without asking the store
  owner.complete(sturdy::make_failure<R>(std::make_error_code(std::errc::io_error)));  // not cached: the key is free
  run_for(io, 100ms);
  EXPECT_EQ(cache.store().begins, begins);  // no poll timer left behind
  EXPECT_EQ(other.started, 0);
  EXPECT_EQ(by_slot.calls + by_token.calls, 2);
  EXPECT_EQ(first.value->result.error(), std::make_error_code(std::errc::io_error));
}

}  // namespace
