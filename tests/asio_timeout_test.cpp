// Tests of sturdy/asio/timeout.hpp: async_timeout's timelines on virtual
// time (exact), the late-result rule, cancellation from every side, each
// completion token, exactly-once completion and no leaks.

#include "sturdy/asio/timeout.hpp"

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
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>

#include "support/constant_allocations.hpp"
#include "support/asio_manual_op.hpp"
#include "support/other_io_context_attempt.hpp"
#include "sturdy/testing/asio_virtual_clock.hpp"
#include "sturdy/testing/counting_allocator.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using sturdy::testing::asio_virtual_clock;
using sturdy::testing::asio_virtual_timer;
using sturdy::testing::manual_op;
using sturdy::testing::run_for;
using opts = sturdy::asio::async_timeout_options;

sturdy::duration vnow() { return asio_virtual_clock::now().time_since_epoch(); }

template <class R>
using completion = sturdy::testing::recorded_completion<R>;
using sturdy::testing::recorder;

class AsioTimeout : public ::testing::Test {
 protected:
  void SetUp() override { asio_virtual_clock::reset(); }
  net::io_context io;
};

// An attempt on a virtual timer of `d`: void(error_code) -> result<void>.
struct timer_attempt {
  asio_virtual_timer& t;
  sturdy::duration d;
  auto operator()(const sturdy::call_context&) const {
    t.expires_after(d);
    return t.async_wait(net::deferred);
  }
};

TEST_F(AsioTimeout, CompletesBeforeTheTimerUnchanged) {
  manual_op<int> op;
  completion<sturdy::result<int>> c;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, [&] { return op.start(); },
                                                  recorder(io, c));
  run_for(io, 4ms);
  ASSERT_TRUE(op.pending());
  op.complete(7);
  run_for(io, 1ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->value(), 7);
  EXPECT_EQ(c.at, sturdy::duration(4ms));
  EXPECT_EQ(op.seen, net::cancellation_type::none);  // never cancelled
  run_for(io, 20ms);                                 // the timer was cancelled: nothing more happens
  EXPECT_EQ(c.calls, 1);
}

TEST_F(AsioTimeout, TimerFiresCancelsTheAttemptAtExactlyTheTimeout) {
  asio_virtual_timer t(io);
  completion<sturdy::result<void>> c;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, timer_attempt{t, 50ms}, recorder(io, c));
  run_for(io, 9ms);
  EXPECT_EQ(c.calls, 0);
  run_for(io, 1ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(10ms));
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  run_for(io, 60ms);
  EXPECT_EQ(c.calls, 1);
}

TEST_F(AsioTimeout, CancellationTypeIsConfigurableDefaultTerminal) {
  for (auto type : {net::cancellation_type::terminal, net::cancellation_type::partial, net::cancellation_type::total}) {
    manual_op<int> op;
    completion<sturdy::result<int>> c;
    opts o{.timeout = 5ms};
    if (type != net::cancellation_type::terminal) o.cancel_type = type;
    sturdy::asio::async_timeout<asio_virtual_timer>(o, [&] { return op.start(); }, recorder(io, c));
    run_for(io, 5ms);
    EXPECT_EQ(op.seen, type);
    EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  }
  EXPECT_EQ(opts{}.cancel_type, net::cancellation_type::terminal);
}

// The late-result rule of the blocking timeout, for an attempt that ignores
// the cancellation: the call waits for it (it may use the caller's memory).
TEST_F(AsioTimeout, IgnoredCancellationLateSuccessPassesThroughByDefault) {
  manual_op<int> op;
  op.honour_cancel = false;
  completion<sturdy::result<int>> c;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, [&] { return op.start(); },
                                                  recorder(io, c));
  run_for(io, 20ms);
  EXPECT_EQ(op.seen, net::cancellation_type::terminal);
  EXPECT_EQ(c.calls, 0);  // still waiting for the attempt
  op.complete(5);
  run_for(io, 1ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->value(), 5);
  EXPECT_EQ(c.at, sturdy::duration(20ms));
}

TEST_F(AsioTimeout, IgnoredCancellationLateSuccessIsDiscardedUnderDiscard) {
  manual_op<int> op;
  op.honour_cancel = false;
  completion<sturdy::result<int>> c;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms, .on_late = sturdy::late_result::discard},
                                                  [&] { return op.start(); }, recorder(io, c));
  run_for(io, 20ms);
  op.complete(5);
  run_for(io, 1ms);
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
}

TEST_F(AsioTimeout, LateFailureIsDeadlineExceededUnderBothPolicies) {
  for (auto late : {sturdy::late_result::pass_through, sturdy::late_result::discard}) {
    manual_op<int> op;
    op.honour_cancel = false;
    completion<sturdy::result<int>> c;
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms, .on_late = late}, [&] { return op.start(); },
                                                    recorder(io, c));
    run_for(io, 15ms);
    op.complete(sturdy::make_failure<sturdy::result<int>>(std::make_error_code(std::errc::io_error)));
    run_for(io, 1ms);
    EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  }
}

// "Late" for the async timeout: the timer's handler reached the operation's
// strand before the attempt's completion did (docs/async.md, Timeouts). Both
// at the same virtual instant as the deadline, only the order differs.
//
// Two calls with a 5 ms timeout whose attempts ignore cancellation: `op`
// will succeed with 7, `failing` fail with io_error. Pinned (not movable):
// the attempts are captured by reference.
struct racing_the_deadline {
  sturdy::duration t0 = vnow();
  manual_op<int> op, failing;
  completion<sturdy::result<int>> c, f;
  racing_the_deadline(net::io_context& io, sturdy::late_result late) {
    op.honour_cancel = false;
    failing.honour_cancel = false;
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 5ms, .on_late = late}, [this] { return op.start(); },
                                                    recorder(io, c));
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 5ms, .on_late = late},
                                                    [this] { return failing.start(); }, recorder(io, f));
  }
  racing_the_deadline(const racing_the_deadline&) = delete;
  racing_the_deadline& operator=(const racing_the_deadline&) = delete;
  // Both attempts post their completions now; then every ready handler runs.
  void complete_both(net::io_context& io) {
    op.complete(7);
    failing.complete(sturdy::make_failure<sturdy::result<int>>(std::make_error_code(std::errc::io_error)));
    run_for(io, 0ms);
    ASSERT_EQ(c.calls, 1);
    ASSERT_EQ(f.calls, 1);
    EXPECT_EQ(c.at, t0 + sturdy::duration(5ms));  // the deadline
    EXPECT_EQ(f.at, t0 + sturdy::duration(5ms));
  }
};

// The attempts post their completions at the deadline before the timers'
// handlers are queued (time has reached 5 ms, nothing has run yet): they are
// ahead on the strand, so on time, even under `discard`, and never cancelled.
TEST_F(AsioTimeout, Issue17_ACompletionQueuedBeforeTheTimersHandlerIsNotLate) {
  for (auto late : {sturdy::late_result::pass_through, sturdy::late_result::discard}) {
    racing_the_deadline r(io, late);
    run_for(io, 4ms);
    asio_virtual_clock::advance(1ms);  // the deadline: both timers are due, their handlers not yet queued
    r.complete_both(io);
    EXPECT_EQ(r.c.value->value(), 7);
    EXPECT_EQ(r.op.seen, net::cancellation_type::none);
    EXPECT_EQ(r.f.value->error(), std::make_error_code(std::errc::io_error));  // its own failure, not a timeout
    EXPECT_EQ(r.failing.seen, net::cancellation_type::none);
  }
}

// The attempts post their completions at the same instant, after the
// timers' handlers ran (they were cancelled first): late. A success then
// follows `on_late`; a failure is deadline_exceeded under both.
TEST_F(AsioTimeout, Issue17_ACompletionQueuedAfterTheTimersHandlerIsLate) {
  for (auto late : {sturdy::late_result::pass_through, sturdy::late_result::discard}) {
    racing_the_deadline r(io, late);
    run_for(io, 5ms);
    EXPECT_EQ(r.op.seen, net::cancellation_type::terminal);
    EXPECT_EQ(r.failing.seen, net::cancellation_type::terminal);
    r.complete_both(io);
    if (late == sturdy::late_result::discard) {
      EXPECT_EQ(r.c.value->error(), sturdy::errc::deadline_exceeded);
    } else {
      EXPECT_EQ(r.c.value->value(), 7);
    }
    EXPECT_EQ(r.f.value->error(), sturdy::errc::deadline_exceeded);
  }
}

// A real attempt due at the deadline: a timer of exactly the timeout, armed
// after the timeout's own (the attempt starts after the timer is armed).
// Asio 1.26's timer queue hands out these two timers, due at one instant, in
// the order they were armed, so the timeout's handler reaches the strand
// first: late.
TEST_F(AsioTimeout, Issue17_AnAttemptDueAtTheDeadlineAndQueuedBehindTheTimerIsLate) {
  asio_virtual_timer t(io);
  completion<sturdy::result<void>> pass, discard;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 5ms}, timer_attempt{t, 5ms}, recorder(io, pass));
  run_for(io, 5ms);
  EXPECT_TRUE(pass.value->has_value());  // late, passed through
  asio_virtual_timer u(io);
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 5ms, .on_late = sturdy::late_result::discard},
                                                  timer_attempt{u, 5ms}, recorder(io, discard));
  run_for(io, 5ms);
  ASSERT_EQ(discard.calls, 1);
  EXPECT_EQ(discard.at, sturdy::duration(10ms));
  EXPECT_EQ(discard.value->error(), sturdy::errc::deadline_exceeded);  // late: destroyed
}

TEST_F(AsioTimeout, AbandonAfterStopsWaitingAndAbsorbsTheLateCompletion) {
  manual_op<int> op;
  op.honour_cancel = false;
  completion<sturdy::result<int>> c;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms, .abandon_after = 5ms},
                                                  [&] { return op.start(); }, recorder(io, c));
  run_for(io, 14ms);
  EXPECT_EQ(c.calls, 0);
  run_for(io, 1ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(15ms));
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  op.complete(9);  // late: absorbed
  run_for(io, 5ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
}

TEST_F(AsioTimeout, CallerCancelBeforeStartLaunchesNothing) {
  manual_op<int> op;
  completion<sturdy::result<int>> c;
  net::cancellation_signal sig;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, [&] { return op.start(); },
                                                  net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  sig.emit(net::cancellation_type::terminal);  // before the operation's first step: remembered
  run_for(io, 1ms);
  EXPECT_EQ(op.started, 0);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), sturdy::errc::cancelled);
}

TEST_F(AsioTimeout, CallerCancelDuringIsForwardedWithItsType) {
  manual_op<int> op;
  completion<sturdy::result<int>> c;
  net::cancellation_signal sig;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, [&] { return op.start(); },
                                                  net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  run_for(io, 3ms);
  sig.emit(net::cancellation_type::partial);
  run_for(io, 1ms);
  EXPECT_EQ(op.seen, net::cancellation_type::partial);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(3ms));  // at the signal's instant
  EXPECT_EQ(c.value->error(), sturdy::errc::cancelled);  // not deadline_exceeded: the caller asked
  EXPECT_FALSE(sig.slot().has_handler());                // the slot is cleared
}

TEST_F(AsioTimeout, CallerCancelledButTheAttemptSucceededKeepsTheSuccess) {
  manual_op<int> op;
  op.honour_cancel = false;
  completion<sturdy::result<int>> c;
  net::cancellation_signal sig;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, [&] { return op.start(); },
                                                  net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  run_for(io, 2ms);
  sig.emit(net::cancellation_type::terminal);
  run_for(io, 1ms);
  op.complete(3);
  run_for(io, 1ms);
  EXPECT_EQ(c.value->value(), 3);
}

TEST_F(AsioTimeout, AttemptSeesTheTightenedDeadlineAndItsOwnToken) {
  manual_op<int> op;
  completion<sturdy::result<int>> c;
  sturdy::duration remaining{};
  const sturdy::call_context* seen = nullptr;
  sturdy::asio::async_timeout<asio_virtual_timer>(
      opts{.timeout = 10ms},
      [&](const sturdy::call_context& ctx) {
        remaining = ctx.remaining();
        seen = &ctx;
        return op.start();
      },
      recorder(io, c));
  run_for(io, 0ms);
  EXPECT_EQ(remaining, sturdy::duration(10ms));
  ASSERT_NE(seen, nullptr);
  EXPECT_TRUE(seen->token.stop_possible());
  EXPECT_FALSE(seen->stop_requested());
  run_for(io, 6ms);
  EXPECT_EQ(seen->remaining(), sturdy::duration(4ms));  // the context stays valid while the attempt runs
  run_for(io, 4ms);
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
}

TEST_F(AsioTimeout, CallersEarlierDeadlineWinsAndItsTokenIsForwarded) {
  sturdy::testing::asio_virtual_clock_source clock;
  {  // the caller's deadline (4 ms) is earlier than the timeout (10 ms)
    manual_op<int> op;
    completion<sturdy::result<int>> c;
    sturdy::call_context ctx;
    ctx.deadline = sturdy::deadline::after(4ms, sturdy::clock_ref::of(clock));
    sturdy::duration remaining{};
    sturdy::asio::async_timeout<asio_virtual_timer>(
        opts{.timeout = 10ms}, ctx,
        [&](const sturdy::call_context& inner) {
          remaining = inner.remaining();
          return op.start();
        },
        recorder(io, c));
    run_for(io, 4ms);
    EXPECT_EQ(remaining, sturdy::duration(4ms));
    EXPECT_EQ(c.at, sturdy::duration(4ms));
    EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  }
  {  // the caller's sturdy token fires during the attempt
    manual_op<int> op;
    completion<sturdy::result<int>> c;
    sturdy::cancel_source caller;
    sturdy::call_context ctx;
    ctx.token = caller.token();
    const sturdy::call_context* inner = nullptr;
    sturdy::asio::async_timeout<asio_virtual_timer>(
        opts{.timeout = 10ms, .cancel_type = net::cancellation_type::partial}, ctx,
        [&](const sturdy::call_context& i) {
          inner = &i;
          return op.start();
        },
        recorder(io, c));
    run_for(io, 2ms);
    const sturdy::duration stopped_at = vnow();
    caller.request_stop();
    EXPECT_TRUE(inner->stop_requested());  // linked at once
    run_for(io, 1ms);
    EXPECT_EQ(op.seen, net::cancellation_type::partial);
    EXPECT_EQ(c.value->error(), sturdy::errc::cancelled);
    EXPECT_EQ(c.at, stopped_at);
  }
  {  // the caller's token had fired before: nothing launched
    manual_op<int> op;
    completion<sturdy::result<int>> c;
    sturdy::cancel_source caller;
    caller.request(sturdy::cancel_reason::deadline);
    sturdy::call_context ctx;
    ctx.token = caller.token();
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{}, ctx, [&] { return op.start(); }, recorder(io, c));
    run_for(io, 1ms);
    EXPECT_EQ(op.started, 0);
    EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  }
}

TEST_F(AsioTimeout, DurationExtremes) {
  {  // 0: never starts
    manual_op<int> op;
    completion<sturdy::result<int>> c;
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 0ns}, [&] { return op.start(); }, recorder(io, c));
    run_for(io, 1ms);
    EXPECT_EQ(op.started, 0);
    EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  }
  {  // 1 ns: times out on the first step
    asio_virtual_timer t(io);
    completion<sturdy::result<void>> c;
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 1ns}, timer_attempt{t, 5ms}, recorder(io, c));
    run_for(io, 1ms);
    EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  }
  {  // duration::max(): no timeout of its own; abandon_after at max too
    asio_virtual_timer t(io);
    completion<sturdy::result<void>> c;
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = sturdy::duration::max()}, timer_attempt{t, 50ms},
                                                    recorder(io, c));
    run_for(io, 50ms);
    EXPECT_TRUE(c.value.has_value() && c.value->has_value());
  }
  {  // abandon_after 0: completes at the deadline
    manual_op<int> op;
    op.honour_cancel = false;
    completion<sturdy::result<int>> c;
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 3ms, .abandon_after = 0ns},
                                                    [&] { return op.start(); }, recorder(io, c));
    run_for(io, 3ms);
    EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
    op.complete(1);
    run_for(io, 1ms);
    EXPECT_EQ(c.calls, 1);
  }
}

TEST_F(AsioTimeout, InvalidOptionsAreRefusedWithTheFieldNamed) {
  EXPECT_EQ(opts{.timeout = -1ns}.validation_message(), "async_timeout_options.timeout must be >= 0");
  EXPECT_EQ(opts{.abandon_after = -1ns}.validation_message(), "async_timeout_options.abandon_after must be >= 0");
  EXPECT_EQ((opts{.cancel_type = net::cancellation_type::none}.validation_message()),
            "async_timeout_options.cancel_type must be terminal, partial or total");
  EXPECT_EQ((opts{.on_late = static_cast<sturdy::late_result>(9)}.validation_message()),
            "async_timeout_options.on_late must be late_result::pass_through or late_result::discard");
  EXPECT_TRUE(opts{}.validation_message().empty());
  manual_op<int> op;
  completion<sturdy::result<int>> c;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = -1ns}, [&] { return op.start(); }, recorder(io, c));
  EXPECT_EQ(c.calls, 0);  // never inline
  run_for(io, 1ms);
  EXPECT_EQ(op.started, 0);
  EXPECT_EQ(c.value->error(), sturdy::errc::invalid_options);
}

TEST_F(AsioTimeout, MakeAttemptThrowingIsAFatalFailure) {
  completion<sturdy::result<int>> c;
  manual_op<int> op;
  sturdy::asio::async_timeout<asio_virtual_timer>(
      opts{.timeout = 10ms},
      [&]() -> decltype(op.start()) { throw std::runtime_error("no connection"); }, recorder(io, c));
  run_for(io, 20ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), std::make_error_code(std::errc::state_not_recoverable));
}

// --- completion tokens -----------------------------------------------------------

net::awaitable<sturdy::result<int>> coro_attempt(asio_virtual_timer& t, sturdy::duration d) {
  t.expires_after(d);
  co_await t.async_wait(net::use_awaitable);
  co_return 11;
}

struct coro_maker {
  asio_virtual_timer& t;
  sturdy::duration d;
  net::awaitable<sturdy::result<int>> operator()() const { return coro_attempt(t, d); }
};

net::awaitable<void> await_timeout(asio_virtual_timer& t, completion<sturdy::result<int>>& c) {
  sturdy::result<int> r =
      co_await sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, coro_maker{t, 3ms},
                                                               net::use_awaitable);
  ++c.calls;
  c.value.emplace(std::move(r));
  c.at = vnow();
}

TEST_F(AsioTimeout, UseAwaitableWithAnAwaitableAttempt) {
  asio_virtual_timer t(io);
  completion<sturdy::result<int>> c;
  net::co_spawn(io, await_timeout(t, c), net::detached);
  run_for(io, 5ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->value(), 11);
  EXPECT_EQ(c.at, sturdy::duration(3ms));
}

TEST_F(AsioTimeout, AnAwaitableAttemptIsCancelledAtTheTimeout) {
  asio_virtual_timer t(io);
  completion<sturdy::result<int>> c;
  sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 2ms}, coro_maker{t, 30ms}, recorder(io, c));
  run_for(io, 2ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);  // the coroutine threw operation_aborted: late failure
}

TEST_F(AsioTimeout, UseFutureAndDeferred) {
  asio_virtual_timer t(io);
  std::future<sturdy::result<void>> f = sturdy::asio::async_timeout<asio_virtual_timer>(
      opts{.timeout = 10ms}, timer_attempt{t, 2ms}, net::bind_executor(io, net::use_future));
  run_for(io, 2ms);
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(f.get().has_value());

  // A deferred operation launched after the options and the context are gone.
  asio_virtual_timer t2(io);
  auto deferred = [&] {
    const opts o{.timeout = 1ms};
    const sturdy::call_context ctx{};
    return sturdy::asio::async_timeout<asio_virtual_timer>(o, ctx, timer_attempt{t2, 5ms}, net::deferred);
  }();
  completion<sturdy::result<void>> c;
  std::move(deferred)(recorder(io, c));
  run_for(io, 1ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
}

TEST_F(AsioTimeout, NothingLeaksTheStateIsReleasedAfterCompletion) {
  auto sentinel = std::make_shared<int>(0);
  manual_op<int> op;
  op.honour_cancel = false;
  completion<sturdy::result<int>> c;
  sturdy::asio::async_timeout<asio_virtual_timer>(
      opts{.timeout = 5ms, .abandon_after = 1ms},
      [&, s = sentinel] {
        (void)s;
        return op.start();
      },
      recorder(io, c));
  run_for(io, 6ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(sentinel.use_count(), 2);  // abandoned: the state lives until the attempt returns
  op.complete(1);
  run_for(io, 1ms);
  EXPECT_EQ(sentinel.use_count(), 1);  // released
  EXPECT_EQ(sturdy::testing::poll_all(io), 0u);
}

TEST_F(AsioTimeout, DestroyingTheIoContextWithTheOperationPendingUnlinksFromTheCallersToken) {
  sturdy::cancel_source caller;
  {
    net::io_context local;
    manual_op<int> op;
    sturdy::call_context ctx;
    ctx.token = caller.token();
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, ctx, [&] { return op.start(); },
                                                    net::bind_executor(local, [](sturdy::result<int>) {}));
    run_for(local, 1ms);
    op.complete(0);  // posts into `local`, never run
  }
  caller.request_stop();  // nothing registered on it refers to the destroyed operation
  SUCCEED();
}

TEST_F(AsioTimeout, AllocationsPerCallAreConstant) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "no counting allocator in this build";
  asio_virtual_timer t(io);
  int calls = 0;
  auto one = [&] {
    sturdy::testing::allocation_scope scope;
    sturdy::asio::async_timeout<asio_virtual_timer>(opts{.timeout = 10ms}, timer_attempt{t, 2ms},
                                                    net::bind_executor(io, [&](sturdy::result<void>) { ++calls; }));
    run_for(io, 3ms);
    return scope.allocations();
  };
  sturdy::testing::expect_constant_allocations("async_timeout", one);
  EXPECT_EQ(calls, 3);
}

}  // namespace

// --- outstanding work on the handler's executor ----------------------------

TEST(AsioTimeoutWork, KeepsWorkOnTheHandlersExecutorWhileTheAttemptRunsElsewhere) {
  const auto w = sturdy::testing::run_with_attempt_on_other_io_context(
      [](net::io_context& a, sturdy::testing::other_io_context_attempt attempt, bool& called) {
        opts o;
        o.timeout = sturdy::duration::max();  // no timer of its own on `a`: only the operation's work keeps a.run() going
        sturdy::asio::async_timeout(o, attempt, net::bind_executor(a, [&called](sturdy::result<void> r) {
                                      EXPECT_TRUE(r.has_value());
                                      called = true;
                                    }));
      });
  EXPECT_TRUE(w.called_before_run_returned) << "io_context::run() returned while the operation was pending";
  EXPECT_TRUE(w.called);
}
