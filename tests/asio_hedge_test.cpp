// Tests of sturdy/asio/hedge.hpp: the decision core (pure), the latency
// histogram, and async_hedge's timelines on virtual time.

#include "sturdy/asio/hedge.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <cstdio>
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "support/constant_allocations.hpp"
#include "sturdy/retry_budget.hpp"
#include "sturdy/testing/asio_virtual_clock.hpp"
#include "sturdy/testing/counting_allocator.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using sturdy::asio::hedge_action;
using sturdy::asio::hedge_decider;
using sturdy::asio::hedge_verdict;
using sturdy::testing::asio_virtual_clock;
using sturdy::testing::asio_virtual_timer;
using sturdy::testing::run_for;
using kind = hedge_action::kind;

sturdy::duration vnow() { return asio_virtual_clock::now().time_since_epoch(); }

// --- the decision core ---------------------------------------------------------

TEST(HedgeDecider, LaunchesOnEachDelayUpToMaxThenWaits) {
  hedge_decider d(3, 10ms);
  EXPECT_EQ(d.start(), (hedge_action{kind::launch, 0, 10ms}));
  EXPECT_EQ(d.on_delay_elapsed(), (hedge_action{kind::launch, 1, 10ms}));
  EXPECT_EQ(d.on_delay_elapsed(), (hedge_action{kind::launch, 2, sturdy::duration::max()}));
  EXPECT_EQ(d.on_delay_elapsed(), hedge_action{});
  EXPECT_EQ(d.on_result(1, hedge_verdict::accepted), (hedge_action{kind::finish, 1, sturdy::duration::max()}));
  EXPECT_EQ(d.running_mask(), 0b101);  // the driver cancels 0 and 2
  EXPECT_EQ(d.on_result(0, hedge_verdict::accepted), hedge_action{});  // a late loser changes nothing
}

TEST(HedgeDecider, RetryableFailureLaunchesTheNextAtOnce) {
  hedge_decider d(3, 10ms);
  (void)d.start();
  EXPECT_EQ(d.on_result(0, hedge_verdict::retryable), (hedge_action{kind::launch, 1, 10ms}));
  EXPECT_EQ(d.on_result(1, hedge_verdict::retryable), (hedge_action{kind::launch, 2, sturdy::duration::max()}));
  // All failed: the primary's failure.
  EXPECT_EQ(d.on_result(2, hedge_verdict::retryable), (hedge_action{kind::finish, 0, sturdy::duration::max()}));
}

TEST(HedgeDecider, FatalFailureEndsTheCall) {
  hedge_decider d(3, 10ms);
  (void)d.start();
  (void)d.on_delay_elapsed();
  EXPECT_EQ(d.on_result(1, hedge_verdict::fatal), (hedge_action{kind::finish, 1, sturdy::duration::max()}));
  EXPECT_TRUE(d.finished());
}

TEST(HedgeDecider, ExhaustedBudgetStopsNewHedgesButNeverTheRunningOnes) {
  sturdy::token_bucket_budget budget({.max_tokens = 2, .token_ratio = 1});
  budget.on_outcome(sturdy::attempt_outcome::failure);  // 1 token left: no retry allowed (needs > 1)
  hedge_decider d(3, 10ms, budget);
  EXPECT_EQ(d.start().what, kind::launch);
  EXPECT_EQ(d.on_delay_elapsed(), hedge_action{});  // denied: wait, nothing cancelled
  EXPECT_EQ(d.hedges_denied(), 1u);
  EXPECT_EQ(d.running_mask(), 0b1);
  EXPECT_EQ(d.on_result(0, hedge_verdict::accepted).what, kind::finish);
}

TEST(HedgeDecider, CancelStopsLaunchesAndFinishesWhenAllReturned) {
  hedge_decider d(4, 10ms);
  (void)d.start();
  (void)d.on_delay_elapsed();
  d.on_cancel();
  EXPECT_EQ(d.on_delay_elapsed(), hedge_action{});
  EXPECT_EQ(d.on_result(1, hedge_verdict::retryable), hedge_action{});  // no launch at once either
  EXPECT_EQ(d.on_result(0, hedge_verdict::retryable), (hedge_action{kind::finish, 0, sturdy::duration::max()}));
}

TEST(HedgeDecider, ZeroDelayAndSingleAttempt) {
  hedge_decider all(2, 0ns);
  EXPECT_EQ(all.start(), (hedge_action{kind::launch, 0, 0ns}));
  hedge_decider one(1, 10ms);
  EXPECT_EQ(one.start(), (hedge_action{kind::launch, 0, sturdy::duration::max()}));
  EXPECT_EQ(one.on_result(0, hedge_verdict::retryable).what, kind::finish);
}

// --- the histogram ------------------------------------------------------------

TEST(LatencyHistogram, BucketsAreMonotonicWithBoundedError) {
  using H = sturdy::asio::latency_histogram;
  std::uint32_t last = 0;
  for (std::int64_t v = 1; v < (std::int64_t{1} << 40); v = v * 3 / 2 + 1) {
    const std::uint32_t i = H::index_of(sturdy::duration(v));
    EXPECT_GE(i, last);
    last = i;
    const auto ub = H::upper_bound_of(i);
    EXPECT_GE(ub.count(), v);
    EXPECT_LE(static_cast<double>(ub.count()), static_cast<double>(v) * 1.125 + 1);
  }
  EXPECT_EQ(H::index_of(sturdy::duration::max()), H::buckets - 1);
  EXPECT_EQ(H::upper_bound_of(H::buckets - 1), sturdy::duration::max());
}

TEST(LatencyHistogram, QuantileOfAUniformSpread) {
  sturdy::asio::latency_histogram h(1000);
  EXPECT_FALSE(h.quantile(0.95));
  for (int ms = 1; ms <= 100; ++ms) h.record(std::chrono::milliseconds(ms));
  EXPECT_FALSE(h.quantile(0.95, 101));
  const auto p95 = *h.quantile(0.95, 100);
  EXPECT_GE(p95, 95ms);
  EXPECT_LE(p95, 95ms * 1.125);
}

TEST(LatencyHistogram, ForgetsOldWindows) {
  sturdy::asio::latency_histogram h(10);
  for (int i = 0; i < 10; ++i) h.record(1s);
  for (int i = 0; i < 20; ++i) h.record(1ms);  // two fresh windows
  EXPECT_LE(*h.quantile(1.0), 2ms);
  EXPECT_EQ(h.samples(), 10u);  // the full window; the current one just rotated
}

// --- the driver, on virtual time ----------------------------------------------

// A fake call: completes after `latency` with `fail` (or value), or with
// operation_canceled when cancelled. void(std::error_code, int).
struct fake_server {
  fake_server(net::io_context& c, std::vector<sturdy::duration> l, std::vector<std::error_code> f = {})
      : io(c), latencies(std::move(l)), failures(std::move(f)) {}
  net::io_context& io;
  std::vector<sturdy::duration> latencies;
  std::vector<std::error_code> failures;
  std::vector<sturdy::duration> launched_at;
  std::vector<std::uint64_t> keys;
  int cancelled = 0;
  int finished = 0;

  template <class Token>
  auto call(std::uint32_t i, Token&& token) {
    launched_at.push_back(vnow());
    return net::async_initiate<Token, void(std::error_code, int)>(
        [this, i](auto handler) {
          auto timer = std::make_shared<asio_virtual_timer>(io, latencies.at(i));
          auto slot = net::get_associated_cancellation_slot(handler);
          timer->async_wait(net::bind_cancellation_slot(
              slot, [this, timer, i, h = std::move(handler)](boost::system::error_code ec) mutable {
                if (ec) {
                  ++cancelled;
                  std::move(h)(std::make_error_code(std::errc::operation_canceled), -1);
                  return;
                }
                ++finished;
                std::error_code f = i < failures.size() ? failures[i] : std::error_code{};
                std::move(h)(f, static_cast<int>(i));
              }));
        },
        token);
  }
  auto maker() {
    return [this](const sturdy::asio::hedge_attempt& a) {
      keys.push_back(a.key);
      return call(a.index, net::deferred);
    };
  }
};

struct hedge_completion {
  std::optional<sturdy::result<int>> value;
  sturdy::duration at{-1};
  int calls = 0;
};

auto recorder(net::io_context& io, hedge_completion& c) {
  return net::bind_executor(io, [&c](sturdy::result<int> r) {
    ++c.calls;
    c.at = vnow();
    c.value.emplace(std::move(r));
  });
}

class AsioHedge : public ::testing::Test {
 protected:
  void SetUp() override { asio_virtual_clock::reset(); }
  net::io_context io;
};

TEST_F(AsioHedge, LaunchesAtEachDelayAndTheFirstAnswerWins) {
  fake_server s{io, {100ms, 50ms, 5ms}};
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 3, .delay = 10ms}, s.maker(), recorder(io, c));
  run_for(io, 200ms);
  EXPECT_EQ(s.launched_at, (std::vector<sturdy::duration>{0ms, 10ms, 20ms}));
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(25ms));
  EXPECT_EQ(c.value->value(), 2);
  EXPECT_EQ(s.cancelled, 2);  // both losers, at 25 ms
  EXPECT_EQ(s.finished, 1);
  ASSERT_EQ(s.keys.size(), 3u);
  EXPECT_EQ(s.keys[0], s.keys[1]);  // one idempotency key for every hedge
  EXPECT_EQ(s.keys[1], s.keys[2]);
}

TEST_F(AsioHedge, FastPrimaryNeedsNoHedge) {
  fake_server s{io, {5ms, 5ms}};
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 2, .delay = 10ms}, s.maker(), recorder(io, c));
  run_for(io, 100ms);
  EXPECT_EQ(s.launched_at, (std::vector<sturdy::duration>{0ms}));
  EXPECT_EQ(c.at, sturdy::duration(5ms));
  EXPECT_EQ(c.value->value(), 0);
}

TEST_F(AsioHedge, RetryableFailureLaunchesTheNextAtOnceAndRestartsTheDelay) {
  fake_server s{io, {3ms, 100ms, 100ms}, {std::make_error_code(std::errc::io_error)}};
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 3, .delay = 10ms}, s.maker(), recorder(io, c));
  run_for(io, 300ms);
  EXPECT_EQ(s.launched_at, (std::vector<sturdy::duration>{0ms, 3ms, 13ms}));
  EXPECT_EQ(c.at, sturdy::duration(103ms));
  EXPECT_EQ(c.value->value(), 1);
}

TEST_F(AsioHedge, AllFailedReturnsThePrimarysFailure) {
  fake_server s{io,
                {30ms, 20ms},
                {std::make_error_code(std::errc::io_error), std::make_error_code(std::errc::connection_reset)}};
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 2, .delay = 10ms}, s.maker(), recorder(io, c));
  run_for(io, 100ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(30ms));
  EXPECT_EQ(c.value->error(), std::errc::io_error);
}

TEST_F(AsioHedge, FatalFailureEndsTheCallAndCancelsTheOthers) {
  fake_server s{io, {100ms, 5ms}, {{}, std::make_error_code(std::errc::permission_denied)}};
  hedge_completion c;
  sturdy::asio::hedge_options o{.max_attempts = 2, .delay = 10ms};
  o.retryable = [](const sturdy::failure_info& f) { return f.code != std::errc::permission_denied; };
  sturdy::asio::async_hedge<asio_virtual_timer>(o, s.maker(), recorder(io, c));
  run_for(io, 200ms);
  EXPECT_EQ(c.at, sturdy::duration(15ms));
  EXPECT_EQ(c.value->error(), std::errc::permission_denied);
  EXPECT_EQ(s.cancelled, 1);
}

TEST_F(AsioHedge, ExhaustedBudgetNeverCancelsTheRunningPrimary) {
  sturdy::token_bucket_budget budget({.max_tokens = 2, .token_ratio = 1});
  budget.on_outcome(sturdy::attempt_outcome::failure);
  fake_server s{io, {100ms, 5ms}};
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 2, .delay = 10ms, .budget = budget}, s.maker(),
                                                recorder(io, c));
  run_for(io, 200ms);
  EXPECT_EQ(s.launched_at, (std::vector<sturdy::duration>{0ms}));
  EXPECT_EQ(c.at, sturdy::duration(100ms));
  EXPECT_EQ(c.value->value(), 0);
  EXPECT_EQ(s.cancelled, 0);
}

TEST_F(AsioHedge, BudgetCountsHedgesAsRetries) {
  sturdy::token_bucket_budget budget({.max_tokens = 10, .token_ratio = 1});
  fake_server s{io, {100ms, 5ms}};
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 2, .delay = 10ms, .budget = budget}, s.maker(),
                                                recorder(io, c));
  run_for(io, 200ms);
  EXPECT_EQ(s.launched_at.size(), 2u);
  // The winner's success returned a token to a full bucket; the cancelled
  // primary was neutral (not a failure).
  EXPECT_TRUE(budget.try_retry(0));
  EXPECT_EQ(budget.tokens(), 10.0);
}

TEST_F(AsioHedge, CancelBetweenHedgesStopsLaunchesAndCancelsTheRunning) {
  fake_server s{io, {100ms, 100ms, 100ms}};
  net::cancellation_signal sig;
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 3, .delay = 10ms}, s.maker(),
                                                net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  run_for(io, 15ms);
  sig.emit(net::cancellation_type::terminal);
  run_for(io, 200ms);
  EXPECT_EQ(s.launched_at, (std::vector<sturdy::duration>{0ms, 10ms}));
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.at, sturdy::duration(15ms));
  EXPECT_EQ(c.value->error(), std::errc::operation_canceled);  // the primary's result
  EXPECT_EQ(s.cancelled, 2);
  EXPECT_FALSE(sig.slot().has_handler());
}

TEST_F(AsioHedge, CancelBeforeStartLaunchesNothing) {
  fake_server s{io, {100ms}};
  net::cancellation_signal sig;
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 3, .delay = 10ms}, s.maker(),
                                                net::bind_cancellation_slot(sig.slot(), recorder(io, c)));
  sig.emit(net::cancellation_type::total);
  run_for(io, 50ms);
  EXPECT_TRUE(s.launched_at.empty());
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->error(), sturdy::errc::cancelled);
}

TEST_F(AsioHedge, InvalidOptionsAreRefusedWithTheFieldNamed) {
  fake_server s{io, {1ms}};
  hedge_completion c;
  sturdy::asio::hedge_options o{.max_attempts = 17};
  EXPECT_EQ(o.validation_message(), "hedge_options.max_attempts must be between 1 and 16");
  sturdy::asio::async_hedge<asio_virtual_timer>(o, s.maker(), recorder(io, c));
  run_for(io, 5ms);
  EXPECT_EQ(c.value->error(), sturdy::errc::invalid_options);
  EXPECT_TRUE(s.launched_at.empty());
}

TEST_F(AsioHedge, DurationExtremes) {
  for (sturdy::duration d : {sturdy::duration::zero(), sturdy::duration(1), sturdy::duration::max()}) {
    asio_virtual_clock::reset();
    fake_server s{io, {20ms, 5ms}};
    hedge_completion c;
    sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 2, .delay = d}, s.maker(), recorder(io, c));
    run_for(io, 50ms);
    ASSERT_EQ(c.calls, 1);
    if (d == sturdy::duration::max()) {
      EXPECT_EQ(s.launched_at.size(), 1u);
      EXPECT_EQ(c.at, sturdy::duration(20ms));
    } else {
      EXPECT_EQ(s.launched_at.size(), 2u);
      EXPECT_EQ(c.at, d == sturdy::duration::zero() ? sturdy::duration(5ms) : sturdy::duration(6ms));
    }
  }
}

TEST_F(AsioHedge, AdaptiveDelayIsTheHistogramsPercentile) {
  auto h = std::make_shared<sturdy::asio::latency_histogram>(1000);
  for (int ms = 1; ms <= 100; ++ms) h->record(std::chrono::milliseconds(ms));
  const auto p95 = *h->quantile(0.95, 100);
  fake_server s{io, {500ms, 5ms}};
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>(
      {.max_attempts = 2, .delay = 1s, .latencies = h, .percentile = 0.95, .min_samples = 100}, s.maker(),
      recorder(io, c));
  run_for(io, 600ms);
  ASSERT_EQ(s.launched_at.size(), 2u);
  EXPECT_EQ(s.launched_at[1], std::chrono::ceil<std::chrono::milliseconds>(p95));
  EXPECT_EQ(h->samples(), 101u);  // the primary's (censored) latency was recorded
}

TEST_F(AsioHedge, AwaitableAttempts) {
  std::vector<sturdy::duration> launched;
  auto make = [&](const sturdy::asio::hedge_attempt& a) -> net::awaitable<sturdy::result<int>> {
    launched.push_back(vnow());
    asio_virtual_timer t(co_await net::this_coro::executor, a.index == 0 ? 50ms : 3ms);
    auto [ec] = co_await t.async_wait(net::as_tuple(net::use_awaitable));
    if (ec) co_return sturdy::result<int>(std::make_error_code(std::errc::operation_canceled));
    co_return sturdy::result<int>(static_cast<int>(a.index) + 40);
  };
  std::optional<sturdy::result<int>> got;
  sturdy::duration at{-1};
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        got = co_await sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 2, .delay = 10ms}, make,
                                                                      net::use_awaitable);
        at = vnow();
      },
      net::detached);
  run_for(io, 100ms);
  EXPECT_EQ(launched, (std::vector<sturdy::duration>{0ms, 10ms}));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value(), 41);
  EXPECT_EQ(at, sturdy::duration(13ms));
}

TEST_F(AsioHedge, ErrorInAResultIsNotASuccess) {
  // The trap of awaitable operator||: here an error result is a failure, so
  // the slower success wins.
  fake_server s{io, {1ms, 30ms}, {std::make_error_code(std::errc::io_error)}};
  hedge_completion c;
  sturdy::asio::async_hedge<asio_virtual_timer>({.max_attempts = 2, .delay = 10ms}, s.maker(), recorder(io, c));
  run_for(io, 100ms);
  EXPECT_EQ(c.value->value(), 1);
  EXPECT_EQ(c.at, sturdy::duration(31ms));
}

// A deferred async_hedge launched after the options it was given are gone
// (a temporary, as a layer or a helper function returns it): the operation
// must own a copy, not point at them (ASan: stack-use-after-scope before).
TEST_F(AsioHedge, DeferredOperationOwnsItsOptions) {
  fake_server s{io, {30ms, 5ms}};
  auto deferred = [&] {
    const sturdy::asio::hedge_options o{.max_attempts = 2, .delay = 10ms};
    return sturdy::asio::async_hedge<asio_virtual_timer>(o, s.maker(), net::deferred);
  }();
  {  // reuse the stack the options lived on
    volatile char scribble[256];
    for (auto& c : scribble) c = static_cast<char>(0xff);
  }
  hedge_completion c;
  std::move(deferred)(recorder(io, c));
  run_for(io, 20ms);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.value->value(), 1);  // the hedge launched at 10 ms won at 15 ms
  EXPECT_EQ(c.at, sturdy::duration(15ms));
}

TEST_F(AsioHedge, AllocationsPerCallAreConstantInTheSteadyState) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "no counting allocator in this build";
  fake_server s{io, {20ms, 5ms}};
  s.launched_at.reserve(64);
  s.keys.reserve(64);
  const sturdy::asio::hedge_options o{.max_attempts = 2, .delay = 10ms};
  int calls = 0;
  auto one = [&] {
    sturdy::testing::allocation_scope scope;
    sturdy::asio::async_hedge<asio_virtual_timer>(o, s.maker(),
                                                  net::bind_executor(io, [&](sturdy::result<int>) { ++calls; }));
    run_for(io, 30ms);
    return scope.allocations();
  };
  sturdy::testing::expect_constant_allocations("async_hedge", one);
  EXPECT_EQ(calls, 3);
}

}  // namespace
