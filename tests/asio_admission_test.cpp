// Tests of sturdy/asio/admission.hpp: async admission for the concurrency
// limiter, the rate limiter and the breaker, on virtual time.

#include "sturdy/asio/admission.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include "support/constant_allocations.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/rate_limiter.hpp"
#include "sturdy/testing/asio_virtual_clock.hpp"
#include "sturdy/testing/counting_allocator.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using sturdy::testing::asio_virtual_clock;
using sturdy::testing::asio_virtual_clock_source;
using sturdy::testing::asio_virtual_timer;
using sturdy::testing::run_for;
using limiter_t = sturdy::concurrency_limiter<sturdy::fixed_limit, asio_virtual_clock_source>;
using permit_t = limiter_t::permit;
using rate_t = sturdy::rate_limiter<asio_virtual_clock_source>;

sturdy::duration vnow() { return asio_virtual_clock::now().time_since_epoch(); }

limiter_t make_limiter(std::uint32_t limit, std::uint32_t queue = 10) {
  return limiter_t({.max_queue = queue, .max_wait = 50ms}, sturdy::fixed_limit({.limit = limit}));
}

// Records one completion: its value, when, and how many times.
template <class T>
struct completion {
  std::optional<T> value;
  sturdy::duration at{-1};
  int calls = 0;
};

template <class T>
auto recorder(net::io_context& io, completion<T>& c) {
  return net::bind_executor(io, [&c](T v) {
    ++c.calls;
    c.at = vnow();
    c.value.emplace(std::move(v));
  });
}

class AsioAdmission : public ::testing::Test {
 protected:
  void SetUp() override { asio_virtual_clock::reset(); }
  net::io_context io;
};

TEST_F(AsioAdmission, VirtualTimerFiresExactlyAtItsExpiry) {
  asio_virtual_timer t(io, 5ms);
  sturdy::duration fired{-1};
  t.async_wait([&](boost::system::error_code ec) {
    EXPECT_FALSE(ec);
    fired = vnow();
  });
  run_for(io, 4ms);
  EXPECT_EQ(fired, sturdy::duration(-1));
  run_for(io, 3ms);
  EXPECT_EQ(fired, sturdy::duration(5ms));
}

TEST_F(AsioAdmission, FreePermitCompletesThroughTheExecutorNeverInline) {
  auto limiter = make_limiter(1);
  completion<sturdy::result<permit_t>> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, recorder(io, c));
  EXPECT_EQ(c.calls, 0);  // not inside the initiating function
  EXPECT_EQ(limiter.in_flight(), 1u);
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  ASSERT_TRUE(c.value->has_value());
  c.value.reset();  // permit released
  EXPECT_EQ(limiter.in_flight(), 0u);
}

TEST_F(AsioAdmission, QueuedWaiterTimesOutAtExactlyMaxWait) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  ASSERT_TRUE(held);
  completion<sturdy::result<permit_t>> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, recorder(io, c));
  run_for(io, 49ms);
  EXPECT_EQ(c.calls, 0);
  EXPECT_EQ(limiter.queued(), 1u);
  run_for(io, 5ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(50ms));
  EXPECT_EQ(c.value->error(), sturdy::errc::limit_exceeded);
  EXPECT_EQ(limiter.queued(), 0u);
  EXPECT_EQ(limiter.metrics().timed_out, 1u);
}

TEST_F(AsioAdmission, ReleasedPermitIsHandedToTheWaiterAtThatInstant) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  completion<sturdy::result<permit_t>> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, recorder(io, c));
  run_for(io, 20ms);
  held.value().record_success();
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(20ms));
  ASSERT_TRUE(c.value->has_value());
  EXPECT_EQ(limiter.in_flight(), 1u);
  run_for(io, 100ms);  // the timer was cancelled: no second completion
  EXPECT_EQ(c.calls, 1);
  c.value.reset();
  EXPECT_EQ(limiter.in_flight(), 0u);
}

TEST_F(AsioAdmission, MaxWaitAtOneNanosecondAndAtMax) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  completion<sturdy::result<permit_t>> tiny, forever;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, sturdy::duration(1), recorder(io, tiny));
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, sturdy::duration::max(), recorder(io, forever));
  run_for(io, 1ms);
  ASSERT_EQ(tiny.calls, 1);
  EXPECT_EQ(tiny.value->error(), sturdy::errc::limit_exceeded);
  EXPECT_EQ(tiny.at, sturdy::duration(1ms));  // the first step after 1 ns
  run_for(io, 1000ms);
  EXPECT_EQ(forever.calls, 0);  // duration::max() never wraps into the past
  held.value().record_success();
  run_for(io, 0ms);
  ASSERT_EQ(forever.calls, 1);
  EXPECT_TRUE(forever.value->has_value());
}

TEST_F(AsioAdmission, NoQueueMeansTryAcquire) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  completion<sturdy::result<permit_t>> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 0ns, recorder(io, c));
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), sturdy::errc::limit_exceeded);
  EXPECT_EQ(limiter.metrics().rejected, 1u);
}

TEST_F(AsioAdmission, CancelWhileQueuedLeavesTheQueue) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  net::cancellation_signal sig;
  completion<sturdy::result<permit_t>> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  run_for(io, 10ms);
  EXPECT_EQ(limiter.queued(), 1u);
  sig.emit(net::cancellation_type::total);
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(10ms));
  EXPECT_EQ(c.value->error(), sturdy::errc::cancelled);
  EXPECT_EQ(limiter.queued(), 0u);
  EXPECT_FALSE(sig.slot().has_handler());  // the slot was cleared
  held.value().record_success();
  EXPECT_EQ(limiter.in_flight(), 0u);  // nobody got the released permit
  run_for(io, 100ms);
  EXPECT_EQ(c.calls, 1);
}

TEST_F(AsioAdmission, CancelBeforeTheWaitStartsIsRemembered) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  net::cancellation_signal sig;
  completion<sturdy::result<permit_t>> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  sig.emit(net::cancellation_type::terminal);  // before the queued wait began
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), sturdy::errc::cancelled);
  EXPECT_EQ(limiter.queued(), 0u);
  EXPECT_EQ(limiter.in_flight(), 1u);
}

TEST_F(AsioAdmission, CancelRacingAHandOverReleasesThePermit) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  net::cancellation_signal sig;
  completion<sturdy::result<permit_t>> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  run_for(io, 1ms);
  held.value().record_success();  // handed to the waiter (its wake-up is posted)...
  EXPECT_EQ(limiter.in_flight(), 1u);
  sig.emit(net::cancellation_type::partial);  // ...and the caller cancels before it runs
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), sturdy::errc::cancelled);
  EXPECT_EQ(limiter.in_flight(), 0u);  // the permit did not leak
}

TEST_F(AsioAdmission, DestroyingTheIoContextTakesTheWaiterOut) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  int calls = 0;
  {
    net::io_context local;
    sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms,
                                                    net::bind_executor(local, [&](sturdy::result<permit_t>) { ++calls; }));
    run_for(local, 1ms);
    EXPECT_EQ(limiter.queued(), 1u);
  }
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(limiter.queued(), 0u);
  held.value().record_success();
  EXPECT_EQ(limiter.in_flight(), 0u);
}

TEST_F(AsioAdmission, FifoOrderAmongAsyncWaiters) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  completion<sturdy::result<permit_t>> a, b;
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, recorder(io, a));
  run_for(io, 1ms);
  sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, recorder(io, b));
  run_for(io, 1ms);
  held.value().record_success();
  run_for(io, 3ms);
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.at, sturdy::duration(2ms));
  EXPECT_EQ(b.calls, 0);
  a.value.reset();  // releases: b is next
  run_for(io, 0ms);
  ASSERT_EQ(b.calls, 1);
  EXPECT_EQ(b.at, sturdy::duration(5ms));
  EXPECT_TRUE(b.value->has_value());
}

TEST_F(AsioAdmission, WorksWithUseAwaitable) {
  auto limiter = make_limiter(1);
  auto held = limiter.try_acquire();
  sturdy::duration got_at{-1};
  bool granted = false;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        auto p = co_await sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms, net::use_awaitable);
        granted = p.has_value();
        got_at = vnow();
      },
      net::detached);
  run_for(io, 7ms);
  held.value().record_success();
  run_for(io, 1ms);
  EXPECT_TRUE(granted);
  EXPECT_EQ(got_at, sturdy::duration(7ms));
  EXPECT_EQ(limiter.in_flight(), 0u);  // the coroutine's permit went out of scope
}

TEST_F(AsioAdmission, FastPathAllocatesNothingInTheSteadyState) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "no counting allocator in this build";
  auto limiter = make_limiter(4);
  int calls = 0;
  auto once = [&] {
    sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms,
                                                    net::bind_executor(io, [&](sturdy::result<permit_t> p) {
                                                      calls += p.has_value() ? 1 : 0;
                                                    }));
    sturdy::testing::poll_all(io);
  };
  once();  // the first operation on this thread fills Asio's recycling cache
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) once();
  EXPECT_EQ(scope.allocations(), 0u);
  EXPECT_EQ(calls, 1001);
  EXPECT_EQ(limiter.in_flight(), 0u);
}

TEST_F(AsioAdmission, WaitingPathAllocatesAConstantAmount) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "no counting allocator in this build";
  auto limiter = make_limiter(1);
  int calls = 0;
  auto one_wait = [&] {
    auto held = limiter.try_acquire();
    sturdy::testing::allocation_scope scope;
    sturdy::asio::async_acquire<asio_virtual_timer>(limiter, 50ms,
                                                    net::bind_executor(io, [&](sturdy::result<permit_t> p) {
                                                      calls += p.has_value() ? 1 : 0;
                                                    }));
    run_for(io, 1ms);
    held.value().record_success();
    run_for(io, 1ms);
    return scope.allocations();
  };
  sturdy::testing::expect_constant_allocations("async_acquire waiting path", one_wait);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(limiter.in_flight(), 0u);
}

// --- rate limiter -------------------------------------------------------------

rate_t make_rate() { return rate_t({.rate = 1, .period = 10ms, .burst = 1}); }

TEST_F(AsioAdmission, RateLimiterTurnIsWaitedForOnTheTimer) {
  auto rl = make_rate();
  completion<sturdy::rate_limit_decision> a, b;
  sturdy::asio::async_acquire<asio_virtual_timer>(rl, 100ms, recorder(io, a));
  sturdy::asio::async_acquire<asio_virtual_timer>(rl, 100ms, recorder(io, b));
  run_for(io, 9ms);
  ASSERT_EQ(a.calls, 1);
  EXPECT_TRUE(a.value->allowed);
  EXPECT_EQ(a.at, sturdy::duration(0));
  EXPECT_EQ(b.calls, 0);
  run_for(io, 1ms);
  ASSERT_EQ(b.calls, 1);
  EXPECT_TRUE(b.value->allowed);
  EXPECT_EQ(b.at, sturdy::duration(10ms));
  EXPECT_EQ(b.value->waited, sturdy::duration(10ms));
}

TEST_F(AsioAdmission, RateLimiterRefusesATurnBeyondMaxWait) {
  auto rl = make_rate();
  (void)rl.try_acquire();
  completion<sturdy::rate_limit_decision> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(rl, 5ms, recorder(io, c));
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_FALSE(c.value->allowed);
  EXPECT_EQ(c.value->error(), sturdy::errc::rate_limited);
  EXPECT_EQ(c.value->retry_after, sturdy::duration(10ms));
}

TEST_F(AsioAdmission, RateLimiterCancelGivesTheReservationBack) {
  auto rl = make_rate();
  (void)rl.try_acquire();
  net::cancellation_signal sig;
  completion<sturdy::rate_limit_decision> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(rl, 100ms, net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  run_for(io, 5ms);
  sig.emit(net::cancellation_type::total);
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->reason, sturdy::rate_limit_reason::cancelled);
  EXPECT_EQ(c.at, sturdy::duration(5ms));
  // The turn at 10 ms is free again: a plain try_acquire gets it then.
  EXPECT_EQ(rl.try_acquire().retry_after, sturdy::duration(5ms));
  run_for(io, 5ms);
  EXPECT_TRUE(rl.try_acquire().allowed);
  run_for(io, 100ms);
  EXPECT_EQ(c.calls, 1);
}

TEST_F(AsioAdmission, RateLimiterCancelBeforeTheWaitStarts) {
  auto rl = make_rate();
  (void)rl.try_acquire();
  net::cancellation_signal sig;
  completion<sturdy::rate_limit_decision> c;
  sturdy::asio::async_acquire<asio_virtual_timer>(rl, 100ms, net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  sig.emit(net::cancellation_type::terminal);
  run_for(io, 0ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->reason, sturdy::rate_limit_reason::cancelled);
  EXPECT_EQ(rl.try_acquire().retry_after, sturdy::duration(10ms));  // given back
}

TEST_F(AsioAdmission, RateLimiterDestroyedIoContextGivesTheTurnBack) {
  auto rl = make_rate();
  (void)rl.try_acquire();
  {
    net::io_context local;
    sturdy::asio::async_acquire<asio_virtual_timer>(rl, 100ms,
                                                    net::bind_executor(local, [](sturdy::rate_limit_decision) {}));
    run_for(local, 1ms);
  }
  EXPECT_EQ(rl.try_acquire().retry_after, sturdy::duration(9ms));
}

// --- breaker ------------------------------------------------------------------

TEST_F(AsioAdmission, BreakerAdmissionThroughAnyToken) {
  sturdy::circuit_breaker<asio_virtual_clock_source> breaker(sturdy::circuit_breaker_options{});
  int admitted = 0;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        auto p = co_await sturdy::asio::async_acquire(breaker, net::use_awaitable);
        if (p) {
          ++admitted;
          breaker.record(p.value(), sturdy::call_outcome::success);
        }
      },
      net::detached);
  run_for(io, 0ms);
  EXPECT_EQ(admitted, 1);
}

}  // namespace
