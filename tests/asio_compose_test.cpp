// Tests of sturdy/asio/compose.hpp: the order of layers (first outermost),
// the context and the caller's cancellation flowing inward, the admission
// adapters (limiter, rate limiter, breaker), hedge and timeout layers, a
// retry-shaped test layer (make_inner called more than once), each
// completion token. Virtual time: timelines are exact.

#include "sturdy/asio/compose.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/asio_manual_op.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/rate_limiter.hpp"
#include "sturdy/testing/asio_virtual_clock.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using sturdy::testing::asio_virtual_clock;
using sturdy::testing::asio_virtual_clock_source;
using sturdy::testing::asio_virtual_timer;
using sturdy::testing::manual_op;
using sturdy::testing::run_for;
using R = sturdy::result<int>;
using limiter_t = sturdy::concurrency_limiter<sturdy::fixed_limit, asio_virtual_clock_source>;
using breaker_t = sturdy::circuit_breaker<asio_virtual_clock_source>;
using timeout_l = sturdy::asio::timeout_layer<asio_virtual_timer>;

sturdy::duration vnow() { return asio_virtual_clock::now().time_since_epoch(); }

using completion = sturdy::testing::recorded_completion<R>;
using sturdy::testing::recorder;

class AsioCompose : public ::testing::Test {
 protected:
  void SetUp() override { asio_virtual_clock::reset(); }
  net::io_context io;
};

// --- a retry-shaped test layer: runs the inner operation until it succeeds,
// at most `max` times, numbering the attempts in the context; logs its name.
template <class MakeInner>
struct again_op {
  using Rr = sturdy::asio::detail::inner_result_t<MakeInner>;
  sturdy::call_context ctx;
  MakeInner make;
  int max;
  int n = 0;
  template <class Self>
  void operator()(Self& self) {
    launch(self);
  }
  template <class Self>
  void operator()(Self& self, Rr r) {
    if (!r && n < max) return launch(self);
    self.complete(std::move(r));
  }
  template <class Self>
  void launch(Self& self) {
    sturdy::call_context c = ctx;
    c.attempt = static_cast<std::uint32_t>(++n);
    auto op = sturdy::asio::detail::make_with_context(make, c);
    const net::any_io_executor ex = net::get_associated_executor(self);
    sturdy::asio::detail::start_attempt<Rr>(ex, std::move(op), std::move(self));
  }
};
struct again_layer {
  std::vector<std::string>* log;
  std::string name;
  int max = 1;
  template <class MakeInner, class Token>
  auto async_run(const sturdy::call_context& ctx, MakeInner&& make_inner, Token&& token) const {
    log->push_back(name);
    using Rr = sturdy::asio::detail::inner_result_t<std::decay_t<MakeInner>>;
    return net::async_compose<Token, void(Rr)>(again_op<std::decay_t<MakeInner>>{ctx, std::forward<MakeInner>(make_inner), max},
                                               token);
  }
};

TEST_F(AsioCompose, FirstLayerIsOutermostAndTheContextFlowsInward) {
  std::vector<std::string> log;
  std::vector<std::uint32_t> attempts;
  std::vector<sturdy::duration> remaining;
  auto pipeline = sturdy::asio::compose(again_layer{&log, "outer", 1}, timeout_l{{.timeout = 50ms}},
                                        again_layer{&log, "retry", 3}, timeout_l{{.timeout = 10ms}});
  manual_op<int> op;
  completion c;
  pipeline.async_run(
      [&](const sturdy::call_context& ctx) {
        attempts.push_back(ctx.attempt);
        remaining.push_back(ctx.remaining());
        return op.start();
      },
      recorder(io, c));
  run_for(io, 0ms);
  // Attempt 1 at 0 ms: the per-attempt timeout (10 ms) is the tighter deadline.
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(remaining[0], sturdy::duration(10ms));
  run_for(io, 10ms);  // attempt 1 times out; the retry layer runs attempt 2
  ASSERT_EQ(attempts.size(), 2u);
  op.complete(sturdy::make_failure<R>(std::make_error_code(std::errc::io_error)));  // attempt 2 fails at once
  run_for(io, 0ms);
  ASSERT_EQ(attempts.size(), 3u);
  run_for(io, 5ms);
  op.complete(8);
  run_for(io, 0ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->value(), 8);
  EXPECT_EQ(attempts, (std::vector<std::uint32_t>{1, 2, 3}));  // the retry layer's numbering reaches the attempt
  EXPECT_EQ(log.front(), "outer");                              // started first
  EXPECT_EQ(log[1], "retry");
  EXPECT_EQ(remaining[2], sturdy::duration(10ms));  // 15 ms into the 50 ms overall: 35 left, 10 per attempt
}

TEST_F(AsioCompose, OverallTimeoutBoundsTheRetriesAndTheInnerDeadlineNeverGrows) {
  std::vector<std::string> log;
  std::vector<sturdy::duration> remaining;
  auto pipeline = sturdy::asio::compose(timeout_l{{.timeout = 25ms}}, again_layer{&log, "retry", 5},
                                        timeout_l{{.timeout = 10ms}});
  asio_virtual_timer t(io);
  completion c;
  pipeline.async_run(
      [&](const sturdy::call_context& ctx) {
        remaining.push_back(ctx.remaining());
        return net::async_compose<decltype(net::deferred), void(R)>(
            [&t, started = false](auto& self, boost::system::error_code ec = {}) mutable {
              if (!started) {
                started = true;
                t.expires_after(100ms);
                return t.async_wait(std::move(self));
              }
              self.complete(ec ? R(std::make_error_code(std::errc::timed_out)) : R(1));
            },
            net::deferred, t);
      },
      recorder(io, c));
  run_for(io, 30ms);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(25ms));
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  EXPECT_EQ(remaining, (std::vector<sturdy::duration>{10ms, 10ms, 5ms}));  // the third gets what is left
}

TEST_F(AsioCompose, LimiterLayerQueuesAndTheOuterTimeoutTakesTheWaiterOut) {
  limiter_t limiter({.max_queue = 4}, sturdy::fixed_limit({.limit = 1}));
  auto held = limiter.try_acquire();
  ASSERT_TRUE(held);
  manual_op<int> op;
  completion c;
  auto pipeline = sturdy::asio::compose(timeout_l{{.timeout = 10ms}},
                                        sturdy::asio::limiter_layer<limiter_t, asio_virtual_timer>{limiter, 1s});
  pipeline.async_run([&] { return op.start(); }, recorder(io, c));
  run_for(io, 5ms);
  EXPECT_EQ(limiter.queued(), 1u);
  run_for(io, 5ms);
  EXPECT_EQ(c.at, sturdy::duration(10ms));
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  EXPECT_EQ(limiter.queued(), 0u);
  EXPECT_EQ(op.started, 0);
  held.value().record_success();
  EXPECT_EQ(limiter.in_flight(), 0u);
}

TEST_F(AsioCompose, CallersCancellationReachesTheAttemptThroughEveryLayer) {
  limiter_t limiter({}, sturdy::fixed_limit({.limit = 2}));
  breaker_t breaker(sturdy::circuit_breaker_options{});
  manual_op<int> op;
  completion c;
  net::cancellation_signal sig;
  auto pipeline = sturdy::asio::compose(
      timeout_l{{.timeout = 1s}}, sturdy::asio::breaker_layer{breaker},
      sturdy::asio::limiter_layer<limiter_t, asio_virtual_timer>{limiter, 0ns}, timeout_l{{.timeout = 500ms}});
  pipeline.async_run([&] { return op.start(); }, net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  run_for(io, 3ms);
  ASSERT_EQ(op.started, 1);
  EXPECT_EQ(limiter.in_flight(), 1u);
  sig.emit(net::cancellation_type::partial);
  run_for(io, 0ms);
  EXPECT_EQ(op.seen, net::cancellation_type::partial);  // the type survives four layers
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(3ms));
  EXPECT_EQ(c.value->error(), sturdy::errc::cancelled);
  EXPECT_EQ(limiter.in_flight(), 0u);  // the permit came back
  const auto m = breaker.metrics();
  EXPECT_EQ(m.failures, 0u);  // the caller left: not the dependency's failure
}

TEST_F(AsioCompose, BreakerLayerRecordsOutcomesAndRejectsWhenOpen) {
  sturdy::circuit_breaker_options o;
  o.consecutive_failure_threshold = 2;
  o.failure_rate_threshold = 0;
  breaker_t breaker(o);
  auto pipeline = sturdy::asio::compose(sturdy::asio::breaker_layer{breaker});
  manual_op<int> op;
  for (int i = 0; i < 2; ++i) {
    completion c;
    pipeline.async_run([&] { return op.start(); }, recorder(io, c));
    run_for(io, 1ms);
    op.complete(sturdy::make_failure<R>(std::make_error_code(std::errc::io_error)));
    run_for(io, 0ms);
    EXPECT_EQ(c.value->error(), std::make_error_code(std::errc::io_error));
  }
  completion rejected;
  pipeline.async_run([&] { return op.start(); }, recorder(io, rejected));
  EXPECT_EQ(rejected.calls, 0);  // never inline
  run_for(io, 0ms);
  EXPECT_EQ(rejected.value->error(), sturdy::errc::circuit_open);
  EXPECT_EQ(op.started, 2);
}

TEST_F(AsioCompose, RateLimiterLayerWaitsForItsTurnAndRefusesBeyondMaxWait) {
  sturdy::rate_limiter<asio_virtual_clock_source> rl({.rate = 1, .period = 10ms, .burst = 1});
  auto pipeline = sturdy::asio::compose(
      sturdy::asio::rate_limiter_layer<decltype(rl), asio_virtual_timer>{rl, 15ms});
  manual_op<int> a, b, d;
  completion ca, cb, cd;
  pipeline.async_run([&] { return a.start(); }, recorder(io, ca));
  pipeline.async_run([&] { return b.start(); }, recorder(io, cb));
  pipeline.async_run([&] { return d.start(); }, recorder(io, cd));
  run_for(io, 0ms);
  EXPECT_EQ(a.started, 1);
  EXPECT_EQ(b.started, 0);
  EXPECT_EQ(cd.value->error(), sturdy::errc::rate_limited);  // its turn is 20 ms away: beyond 15 ms
  run_for(io, 10ms);
  EXPECT_EQ(b.started, 1);  // at its turn
  a.complete(1);
  b.complete(2);
  run_for(io, 0ms);
  EXPECT_EQ(ca.value->value(), 1);
  EXPECT_EQ(cb.value->value(), 2);
}

TEST_F(AsioCompose, ContextWhoseTokenFiredIsNotAdmitted) {
  limiter_t limiter({}, sturdy::fixed_limit({.limit = 2}));
  sturdy::cancel_source caller;
  caller.request(sturdy::cancel_reason::deadline);
  sturdy::call_context ctx;
  ctx.token = caller.token();
  manual_op<int> op;
  completion c;
  sturdy::asio::compose(sturdy::asio::limiter_layer<limiter_t, asio_virtual_timer>{limiter})
      .async_run(ctx, [&] { return op.start(); }, recorder(io, c));
  EXPECT_EQ(c.calls, 0);
  run_for(io, 0ms);
  EXPECT_EQ(c.value->error(), sturdy::errc::deadline_exceeded);
  EXPECT_EQ(op.started, 0);
  EXPECT_EQ(limiter.in_flight(), 0u);
}

TEST_F(AsioCompose, HedgeLayerInsideATimeout) {
  std::vector<std::unique_ptr<manual_op<int>>> ops;
  completion c;
  auto pipeline = sturdy::asio::compose(
      timeout_l{{.timeout = 100ms}},
      sturdy::asio::hedge_layer<asio_virtual_timer>{{.max_attempts = 2, .delay = 10ms}});
  pipeline.async_run(
      [&](const sturdy::call_context& ctx) {
        EXPECT_TRUE(ctx.token.stop_possible());  // the timeout's token reaches every hedge
        ops.push_back(std::make_unique<manual_op<int>>());
        return ops.back()->start();
      },
      recorder(io, c));
  run_for(io, 10ms);
  ASSERT_EQ(ops.size(), 2u);  // the hedge launched at 10 ms
  ops[1]->complete(4);
  run_for(io, 0ms);
  EXPECT_EQ(c.value->value(), 4);
  EXPECT_EQ(c.at, sturdy::duration(10ms));
  EXPECT_EQ(ops[0]->seen, net::cancellation_type::terminal);  // the loser was cancelled
}

net::awaitable<R> coro_attempt(asio_virtual_timer& t) {
  t.expires_after(2ms);
  co_await t.async_wait(net::use_awaitable);
  co_return 12;
}
struct coro_maker {
  asio_virtual_timer& t;
  net::awaitable<R> operator()(const sturdy::call_context&) const { return coro_attempt(t); }
};
net::awaitable<void> run_awaited(asio_virtual_timer& t, limiter_t& limiter, completion& c) {
  // A temporary pipeline: the layers live as long as the operation needs them.
  R r = co_await sturdy::asio::compose(timeout_l{{.timeout = 10ms}},
                                       sturdy::asio::limiter_layer<limiter_t, asio_virtual_timer>{limiter})
            .async_run(coro_maker{t}, net::use_awaitable);
  ++c.calls;
  c.value.emplace(std::move(r));
  c.at = vnow();
}

TEST_F(AsioCompose, CompletionTokensAndAwaitableAttempts) {
  limiter_t limiter({}, sturdy::fixed_limit({.limit = 2}));
  asio_virtual_timer t(io);
  completion c;
  net::co_spawn(io, run_awaited(t, limiter, c), net::detached);
  run_for(io, 2ms);
  EXPECT_EQ(c.value->value(), 12);
  EXPECT_EQ(c.at, sturdy::duration(2ms));

  std::future<R> f = sturdy::asio::compose(sturdy::asio::limiter_layer<limiter_t, asio_virtual_timer>{limiter})
                         .async_run(coro_maker{t}, net::bind_executor(io, net::use_future));
  run_for(io, 2ms);
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(f.get().value(), 12);

  auto deferred = sturdy::asio::compose(timeout_l{{.timeout = 1ms}}).async_run(coro_maker{t}, net::deferred);
  completion d;
  std::move(deferred)(recorder(io, d));
  run_for(io, 1ms);
  EXPECT_EQ(d.value->error(), sturdy::errc::deadline_exceeded);
  EXPECT_EQ(limiter.in_flight(), 0u);
}

}  // namespace
