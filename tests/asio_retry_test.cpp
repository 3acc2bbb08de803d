// Tests of sturdy/asio/retry.hpp: async_retry's timelines on virtual time
// (attempt times are the backoff delays), budgets, deadlines, every
// completion token, cancellation at each point, and allocation.

#include "sturdy/asio/retry.hpp"
#include "sturdy/asio/compose.hpp"
#include "sturdy/asio/timeout.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "support/other_io_context_attempt.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry_budget.hpp"
#include "sturdy/testing/asio_virtual_clock.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/recording_listener.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using sturdy::call_context;
using sturdy::errc;
using sturdy::testing::asio_virtual_clock;
using sturdy::testing::asio_virtual_clock_source;
using sturdy::testing::asio_virtual_timer;
using sturdy::testing::run_for;

using policy_type = sturdy::retry_policy<sturdy::backoff, asio_virtual_clock_source>;

sturdy::duration vnow() { return asio_virtual_clock::now().time_since_epoch(); }

// The drivers' constraint names every call they make on a policy: a core
// without abandon() (the teardown refund) is refused at the constraint.
struct core_without_abandon {
  using state_type = policy_type::state_type;
  policy_type p;
  sturdy::retry_decision begin(state_type& s, const call_context& c) const { return p.begin(s, c); }
  call_context attempt_context(const state_type& s, const call_context& c) const { return p.attempt_context(s, c); }
  sturdy::retry_decision on_failure(state_type& s, const sturdy::failure_info& f, sturdy::retry_hint h,
                                    sturdy::cancel_reason w, const sturdy::retry_after_source& i) const {
    return p.on_failure(s, f, h, w, i);
  }
  sturdy::retry_decision after_wait(state_type& s, const sturdy::failure_info& f, bool c,
                                    sturdy::cancel_reason w) const {
    return p.after_wait(s, f, c, w);
  }
  void on_success(const state_type& s) const noexcept { p.on_success(s); }
};
static_assert(sturdy::asio::detail::retry_core<policy_type>);
static_assert(sturdy::asio::detail::retry_core<sturdy::asio::shared_policy<policy_type>>);
static_assert(!sturdy::asio::detail::retry_core<core_without_abandon>);

policy_type constant(std::uint32_t attempts, sturdy::duration delay, sturdy::retry_budget_ref budget = {},
                     sturdy::duration max_elapsed = sturdy::duration::zero()) {
  return policy_type(sturdy::retry_options{.max_attempts = attempts,
                                           .backoff = sturdy::backoff::constant(delay),
                                           .max_elapsed = max_elapsed,
                                           .budget = budget});
}

// A dependency on virtual time: each call takes `latency`, then fails with
// failures[i] (none past the end: success, value 42). One timer, reused: a
// call allocates nothing of its own. Completes through the handler's
// associated executor; a cancelled call completes with operation_canceled.
struct service {
  explicit service(net::io_context& c, sturdy::duration l = 0ms, std::vector<std::error_code> f = {})
      : timer(c), latency(l), failures(std::move(f)) {}
  asio_virtual_timer timer;
  sturdy::duration latency;
  std::vector<std::error_code> failures;
  std::vector<sturdy::duration> called_at;
  std::vector<std::uint32_t> attempt_numbers;
  int cancelled = 0;

  template <class Token>
  auto call(const call_context& c, Token&& token) {
    called_at.push_back(vnow());
    attempt_numbers.push_back(c.attempt);
    const std::size_t i = called_at.size() - 1;
    const std::error_code f = i < failures.size() ? failures[i] : std::error_code{};
    return net::async_initiate<Token, void(std::error_code, int)>(
        [this, f](auto handler) {
          timer.expires_after(latency);
          auto slot = net::get_associated_cancellation_slot(handler);
          auto ex = net::get_associated_executor(handler);
          auto alloc = net::get_associated_allocator(handler);
          timer.async_wait(net::bind_cancellation_slot(
              slot, net::bind_executor(ex, net::bind_allocator(alloc, [this, f, h = std::move(handler)](boost::system::error_code ec) mutable {
                if (ec) {
                  ++cancelled;
                  std::move(h)(std::make_error_code(std::errc::operation_canceled), -1);
                  return;
                }
                std::move(h)(f, 42);
              }))));
        },
        token);
  }
  auto maker() {
    return [this](const call_context& c) { return call(c, net::deferred); };
  }
};

const std::error_code io_error = std::make_error_code(std::errc::io_error);

struct completion {
  std::optional<sturdy::result<int>> value;
  sturdy::duration at{-1};
  int calls = 0;
};

auto recorder(net::io_context& io, completion& c) {
  return net::bind_executor(io, [&c](sturdy::result<int> r) {
    ++c.calls;
    c.at = vnow();
    c.value.emplace(std::move(r));
  });
}

struct cancellable {
  net::cancellation_signal signal;
  auto token(net::io_context& io, completion& c) {
    return net::bind_cancellation_slot(signal.slot(), recorder(io, c));
  }
};

// A deferred attempt as an awaitable attempt (for the coroutine driver's
// awaitable case). A named type: GCC 12 warns about a lambda's type in a
// coroutine frame in a main file.
template <class Maker>
struct awaitable_attempt {
  Maker make;
  net::awaitable<sturdy::result<int>> operator()(const call_context& c) {
    auto [ec, v] = co_await make(c)(net::as_tuple(net::use_awaitable));
    if (ec) co_return ec;
    co_return v;
  }
};

class AsioRetry : public ::testing::Test {
 protected:
  void SetUp() override { asio_virtual_clock::reset(); }
  net::io_context io;
};

// How a test launches async_retry:
//   callback           a callback token (retry_op, the general driver);
//   awaitable_deferred co_await async_retry(..., use_awaitable) with the
//                      deferred attempt (the coroutine driver);
//   awaitable_attempt  the same with an awaitable attempt.
// The coroutine modes co_spawn a caller coroutine bound to the test's
// cancellation slot; it opts out of Asio's throw_if_cancelled so that its
// own co_await returns async_retry's result even after a cancellation
// (AsioRetryDriver.CoroutineDriverNeverThrowsOnCancellation covers the
// default).
enum class driver { callback, awaitable_deferred, awaitable_attempt };

class AsioRetryDriver : public AsioRetry, public ::testing::WithParamInterface<driver> {
 protected:
  template <class Policy, class Maker>
  void start(const Policy& policy, const call_context& ctx, Maker make, completion& done, cancellable* c = nullptr) {
    switch (GetParam()) {
      case driver::callback:
        if (c != nullptr) {
          sturdy::asio::async_retry<asio_virtual_timer>(policy, ctx, std::move(make), c->token(io, done));
        } else {
          sturdy::asio::async_retry<asio_virtual_timer>(policy, ctx, std::move(make), recorder(io, done));
        }
        return;
      case driver::awaitable_deferred:
        return spawn(caller(policy, ctx, std::move(make), done, gate_), c);
      case driver::awaitable_attempt:
        return spawn(caller(policy, ctx, awaitable_attempt<Maker>{std::move(make)}, done, gate_), c);
    }
  }
  template <class Policy, class Maker>
  void start(const Policy& policy, Maker make, completion& done, cancellable* c = nullptr) {
    start(policy, call_context{}, std::move(make), done, c);
  }

  // Coroutine modes: the caller first waits 1 ms (virtual) before it calls
  // async_retry, so a test can cancel it before async_retry starts.
  bool gate_ = false;

 private:
  template <class Policy, class Maker>
  static net::awaitable<void> caller(Policy policy, call_context ctx, Maker make, completion& done, bool gate) {
    co_await net::this_coro::throw_if_cancelled(false);
    if (gate) {
      asio_virtual_timer t(co_await net::this_coro::executor);
      t.expires_after(1ms);
      (void)co_await t.async_wait(net::as_tuple(net::use_awaitable));
    }
    sturdy::result<int> r =
        co_await sturdy::asio::async_retry<asio_virtual_timer>(policy, ctx, std::move(make), net::use_awaitable);
    ++done.calls;
    done.at = vnow();
    done.value.emplace(std::move(r));
  }
  void spawn(net::awaitable<void> a, cancellable* c) {
    if (c != nullptr) {
      net::co_spawn(io, std::move(a), net::bind_cancellation_slot(c->signal.slot(), net::detached));
    } else {
      net::co_spawn(io, std::move(a), net::detached);
    }
  }
};

std::string driver_name(const ::testing::TestParamInfo<driver>& info) {
  switch (info.param) {
    case driver::callback:
      return "Callback";
    case driver::awaitable_deferred:
      return "AwaitableDeferred";
    case driver::awaitable_attempt:
      return "AwaitableAttempt";
  }
  return "Unknown";
}

TEST_P(AsioRetryDriver, AttemptsStartExactlyAtTheBackoffDelays) {
  service svc(io, 10ms, {io_error, io_error});
  const auto policy = constant(4, 100ms);
  completion done;
  start(policy, svc.maker(), done);
  EXPECT_EQ(done.calls, 0);  // never inside the initiating function
  run_for(io, 1s);
  // attempt 1 at 0 (fails at 10), waits 100: attempt 2 at 110 (fails at 120), attempt 3 at 220, succeeds at 230.
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{0ms, 110ms, 220ms}));
  EXPECT_EQ(svc.attempt_numbers, (std::vector<std::uint32_t>{1, 2, 3}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.at, 230ms);
  EXPECT_EQ(done.value->value(), 42);
}

TEST_P(AsioRetryDriver, ExhaustionReturnsTheLastFailureUnchanged) {
  service svc(io, 0ms, {io_error, io_error, std::make_error_code(std::errc::timed_out)});
  const auto policy = constant(3, 5ms);
  completion done;
  start(policy, svc.maker(), done);
  run_for(io, 100ms);
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{0ms, 5ms, 10ms}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->error(), std::errc::timed_out);
}

TEST_P(AsioRetryDriver, AnExhaustedBudgetStopsWithBudgetExhausted) {
  sturdy::token_bucket_budget budget({.max_tokens = 2, .token_ratio = 0.1});
  service svc(io, 0ms, {io_error, io_error});
  const auto policy = constant(5, 5ms, budget);
  completion done;
  start(policy, svc.maker(), done);
  run_for(io, 100ms);
  EXPECT_EQ(svc.called_at.size(), 1u);
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->error(), errc::budget_exhausted);
}

TEST_P(AsioRetryDriver, NoAttemptStartsPastTheDeadline) {
  service svc(io, 0ms, {io_error, io_error, io_error, io_error});
  const auto policy = constant(10, 100ms, {}, 250ms);
  completion done;
  start(policy, svc.maker(), done);
  run_for(io, 1s);
  // 0, 100, 200; at 200 the next delay (100) does not fit in the 50 left.
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{0ms, 100ms, 200ms}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.at, 200ms);
  EXPECT_EQ(done.value->error(), errc::deadline_exceeded);
}

TEST_P(AsioRetryDriver, TheContextDeadlineAndAttemptNumberReachTheAttempt) {
  service svc(io, 0ms, {io_error});
  const auto policy = constant(3, 10ms);
  asio_virtual_clock_source src;
  const call_context ctx{.deadline = sturdy::deadline::after(300ms, sturdy::clock_ref::of(src), src.now())};
  std::vector<sturdy::time_point> seen;
  completion done;
  start(policy, ctx,
        [&](const call_context& c) {
          seen.push_back(c.deadline.at());
          return svc.call(c, net::deferred);
        },
        done);
  run_for(io, 100ms);
  ASSERT_EQ(done.calls, 1);
  EXPECT_TRUE(done.value->has_value());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], sturdy::time_point(300ms));
  EXPECT_EQ(seen[1], sturdy::time_point(300ms));
  EXPECT_EQ(svc.attempt_numbers, (std::vector<std::uint32_t>{1, 2}));
}

TEST_P(AsioRetryDriver, InvalidOptionsAttemptNothing) {
  service svc(io);
  const policy_type policy(sturdy::retry_options{.max_attempts = 0});
  completion done;
  start(policy, svc.maker(), done);
  run_for(io, 10ms);
  EXPECT_TRUE(svc.called_at.empty());
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->error(), errc::invalid_options);
}

// options_rejected comes once per policy, as with the blocking execute,
// though each call runs on its own copy of the policy.
TEST_P(AsioRetryDriver, InvalidOptionsAreReportedOncePerPolicy) {
  sturdy::testing::recording_listener events;
  using listening_policy = sturdy::retry_policy<sturdy::backoff, asio_virtual_clock_source, sturdy::thread_sleeper,
                                                sturdy::testing::recording_listener>;
  const listening_policy policy(sturdy::retry_options{.max_attempts = 0}, asio_virtual_clock_source{},
                                sturdy::thread_sleeper{}, events);
  service svc(io);
  completion first, second;
  // The coroutine modes' caller copies the policy it is given: here the
  // caller's coroutine uses the test's policy itself.
  const auto call = [&](completion& done) {
    if (GetParam() == driver::callback) return start(policy, svc.maker(), done);
    net::co_spawn(
        io,
        [&]() -> net::awaitable<void> {
          sturdy::result<int> r =
              GetParam() == driver::awaitable_deferred
                  ? co_await sturdy::asio::async_retry<asio_virtual_timer>(policy, svc.maker(), net::use_awaitable)
                  : co_await sturdy::asio::async_retry<asio_virtual_timer>(
                        policy, awaitable_attempt<decltype(svc.maker())>{svc.maker()}, net::use_awaitable);
          ++done.calls;
          done.value.emplace(std::move(r));
        },
        net::detached);
  };
  call(first);
  call(second);
  run_for(io, 10ms);
  EXPECT_TRUE(svc.called_at.empty());
  ASSERT_EQ(first.calls, 1);
  ASSERT_EQ(second.calls, 1);
  EXPECT_EQ(second.value->error(), errc::invalid_options);
  EXPECT_EQ(events.count<sturdy::options_rejected>(), 1u);
}

TEST_P(AsioRetryDriver, DurationExtremes) {
  {  // 0: the retries follow at once
    service svc(io, 0ms, {io_error, io_error});
    completion done;
    start(constant(3, 0ns), svc.maker(), done);
    run_for(io, 1ms);
    EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{0ms, 0ms, 0ms}));
    ASSERT_EQ(done.calls, 1);
    EXPECT_EQ(done.value->value(), 42);
  }
  {  // 1 ns: the retry comes on the next step of virtual time (1 ms)
    service svc(io, 0ms, {io_error});
    completion done;
    start(constant(3, 1ns), svc.maker(), done);
    run_for(io, 2ms);
    ASSERT_EQ(svc.called_at.size(), 2u);
    EXPECT_GT(svc.called_at[1], svc.called_at[0]);
    EXPECT_LE(svc.called_at[1] - svc.called_at[0], 1ms);
    EXPECT_EQ(done.calls, 1);
  }
  {  // duration::max(): the wait saturates; a cancel still ends it at once
    service svc(io, 0ms, {io_error});
    completion done;
    cancellable c;
    start(constant(3, sturdy::duration::max()), svc.maker(), done, &c);
    run_for(io, 1s);
    EXPECT_EQ(svc.called_at.size(), 1u);
    EXPECT_EQ(done.calls, 0);
    c.signal.emit(net::cancellation_type::terminal);
    run_for(io, 1ms);
    ASSERT_EQ(done.calls, 1);
    EXPECT_EQ(done.value->error(), errc::cancelled);
  }
}

// --- completion tokens --------------------------------------------------------

TEST_F(AsioRetry, UseAwaitable) {
  service svc(io, 1ms, {io_error});
  const auto policy = constant(3, 20ms);
  completion done;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        sturdy::result<int> r =
            co_await sturdy::asio::async_retry<asio_virtual_timer>(policy, svc.maker(), net::use_awaitable);
        ++done.calls;
        done.at = vnow();
        done.value.emplace(std::move(r));
      },
      net::detached);
  run_for(io, 100ms);
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.at, 22ms);
  EXPECT_EQ(done.value->value(), 42);
}

TEST_F(AsioRetry, AwaitableAttempts) {
  const auto policy = constant(3, 20ms);
  std::vector<sturdy::duration> at;
  completion done;
  sturdy::asio::async_retry<asio_virtual_timer>(
      policy,
      [&](const call_context& c) -> net::awaitable<sturdy::result<int>> {
        at.push_back(vnow());
        if (c.attempt < 3) co_return io_error;
        co_return static_cast<int>(c.attempt);
      },
      recorder(io, done));
  run_for(io, 100ms);
  EXPECT_EQ(at, (std::vector<sturdy::duration>{0ms, 20ms, 40ms}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->value(), 3);
}

TEST_F(AsioRetry, UseFuture) {
  service svc(io, 1ms, {io_error});
  const auto policy = constant(3, 20ms);
  std::future<sturdy::result<int>> f =
      sturdy::asio::async_retry<asio_virtual_timer>(policy, svc.maker(), net::bind_executor(io, net::use_future));
  run_for(io, 100ms);
  // use_future completes on the system executor (another thread): wait for
  // it, bounded.
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get().value(), 42);
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{0ms, 21ms}));
}

TEST_F(AsioRetry, DeferredStartsNothingUntilLaunched) {
  service svc(io, 0ms, {io_error});
  const auto policy = constant(3, 20ms);
  auto op = sturdy::asio::async_retry<asio_virtual_timer>(policy, svc.maker(), net::deferred);
  run_for(io, 50ms);
  EXPECT_TRUE(svc.called_at.empty());
  completion done;
  std::move(op)(recorder(io, done));
  run_for(io, 50ms);
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{50ms, 70ms}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->value(), 42);
}

TEST_F(AsioRetry, RetryLayerFitsTheAsyncLayerShape) {
  service svc(io, 0ms, {io_error});
  const sturdy::asio::retry_layer<policy_type, asio_virtual_timer> layer(constant(3, 10ms));
  completion done;
  layer.async_run(call_context{}, svc.maker(), recorder(io, done));
  run_for(io, 50ms);
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{0ms, 10ms}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->value(), 42);
}

TEST_F(AsioRetry, DeferredOwnsItsPolicy) {
  service svc(io, 0ms, {io_error});
  auto op = [&] {
    const auto policy = constant(3, 20ms);  // gone before the launch
    return sturdy::asio::async_retry<asio_virtual_timer>(policy, svc.maker(), net::deferred);
  }();
  completion done;
  std::move(op)(recorder(io, done));
  run_for(io, 50ms);
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{0ms, 20ms}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->value(), 42);
}

TEST_F(AsioRetry, ComposedOutsideAPerAttemptTimeout) {
  // Each attempt takes 50 ms; the timeout cuts it at 30 ms (deadline_exceeded, retryable); the retry
  // waits 10 ms and tries again: attempts at 0, 40, 80; the third gives up with the timeout's error.
  service svc(io, 50ms);
  auto pipeline = sturdy::asio::compose(sturdy::asio::retry_layer<policy_type, asio_virtual_timer>(constant(3, 10ms)),
                                        sturdy::asio::timeout_layer<asio_virtual_timer>{{.timeout = 30ms}});
  completion done;
  pipeline.async_run(call_context{}, svc.maker(), recorder(io, done));
  run_for(io, 300ms);
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{0ms, 40ms, 80ms}));
  EXPECT_EQ(svc.attempt_numbers, (std::vector<std::uint32_t>{1, 2, 3}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.at, 110ms);
  EXPECT_FALSE(done.value->has_value());
}

// --- a breaker inside the retry: its retry_after() -----------------------------

using breaker_t = sturdy::circuit_breaker<asio_virtual_clock_source>;

// A breaker that the first failure opens for `open_for`, opened at the
// current virtual time.
std::unique_ptr<breaker_t> open_breaker(sturdy::duration open_for) {
  sturdy::circuit_breaker_options o;
  o.consecutive_failure_threshold = 1;
  o.failure_rate_threshold = 0;
  o.open_duration = open_for;
  auto b = std::make_unique<breaker_t>(o);
  auto permit = b->try_acquire();
  b->record(permit.value(), sturdy::call_outcome::failure);
  return b;
}

// Awaits `a` and records its result in `done`.
net::awaitable<void> await_into(net::awaitable<sturdy::result<int>> a, completion& done) {
  sturdy::result<int> r = co_await std::move(a);
  ++done.calls;
  done.at = vnow();
  done.value.emplace(std::move(r));
}

// Runs `pipeline` over `svc` with a callback, or co_awaited with
// use_awaitable (the coroutine driver), into `done`.
template <class Pipeline>
void run_pipeline(net::io_context& io, const Pipeline& pipeline, service& svc, bool awaitable, completion& done) {
  if (awaitable) {
    net::co_spawn(io, await_into(pipeline.async_run(call_context{}, svc.maker(), net::use_awaitable), done),
                  net::detached);
  } else {
    pipeline.async_run(call_context{}, svc.maker(), recorder(io, done));
  }
}

// The blocking driver's sleeper on the same virtual time.
struct virtual_sleeper {
  bool sleep_for(sturdy::duration d, const std::stop_token&) const {
    asio_virtual_clock::advance(d);
    return true;
  }
};

// Both drivers apply one rule (retry_policy::on_failure): a retry outside a
// breaker that refuses (errc::circuit_open, the dependency not called) waits
// the breaker's retry_after() plus the backoff's delay, here 50 + 10 ms, and
// the probe then goes through.
TEST_F(AsioRetry, ComposedRetryWaitsForTheBreakersRetryAfterPlusBackoff) {
  for (const bool awaitable : {false, true}) {
    asio_virtual_clock::reset();
    SCOPED_TRACE(awaitable ? "use_awaitable" : "callback");
    const auto breaker = open_breaker(50ms);
    ASSERT_EQ(breaker->retry_after(), sturdy::duration(50ms));
    service svc(io);
    auto pipeline = sturdy::asio::compose(sturdy::asio::retry_layer<policy_type, asio_virtual_timer>(constant(3, 10ms)),
                                          sturdy::asio::breaker_layer{*breaker});
    EXPECT_EQ(pipeline.retry_after(), sturdy::duration(50ms));  // a pipeline is itself a retry_after_source
    completion done;
    run_pipeline(io, pipeline, svc, awaitable, done);
    run_for(io, 200ms);
    EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{60ms}));  // exactly retry_after + backoff
    ASSERT_EQ(done.calls, 1);
    EXPECT_EQ(done.at, sturdy::duration(60ms));
    EXPECT_EQ(done.value->value(), 42);
    EXPECT_EQ(breaker->state(), sturdy::breaker_state::closed);  // the probe's success closed it
  }
  {  // the blocking compose, on the same virtual time
    asio_virtual_clock::reset();
    const auto breaker = open_breaker(50ms);
    using blocking_policy = sturdy::retry_policy<sturdy::backoff, asio_virtual_clock_source, virtual_sleeper>;
    auto pipeline = sturdy::compose(
        blocking_policy(sturdy::retry_options{.max_attempts = 3, .backoff = sturdy::backoff::constant(10ms)},
                        asio_virtual_clock_source{}, virtual_sleeper{}),
        *breaker);
    std::vector<sturdy::duration> called_at;
    const sturdy::result<int> r = pipeline.execute([&]() -> sturdy::result<int> {
      called_at.push_back(vnow());
      return 42;
    });
    EXPECT_EQ(called_at, (std::vector<sturdy::duration>{60ms}));
    EXPECT_EQ(r.value(), 42);
  }
}

// The breaker's retry_after() beyond the deadline: no wait that could not
// end in an attempt; circuit_open at once.
TEST_F(AsioRetry, ComposedRetryGivesUpAtOnceWhenTheBreakerOpensPastTheDeadline) {
  for (const bool awaitable : {false, true}) {
    asio_virtual_clock::reset();
    SCOPED_TRACE(awaitable ? "use_awaitable" : "callback");
    const auto breaker = open_breaker(50ms);
    service svc(io);
    auto pipeline = sturdy::asio::compose(
        sturdy::asio::retry_layer<policy_type, asio_virtual_timer>(constant(3, 10ms, {}, 40ms)),
        sturdy::asio::breaker_layer{*breaker});
    completion done;
    run_pipeline(io, pipeline, svc, awaitable, done);
    run_for(io, 200ms);
    EXPECT_TRUE(svc.called_at.empty());
    ASSERT_EQ(done.calls, 1);
    EXPECT_EQ(done.at, sturdy::duration(0ms));
    EXPECT_EQ(done.value->error(), errc::circuit_open);
  }
}

// The source handed to retry_layer points into the pipeline's shared
// layers: a deferred call outlives the pipeline object that made it.
TEST_F(AsioRetry, ComposedRetryAfterSourceOutlivesThePipelineObject) {
  const auto breaker = open_breaker(50ms);
  service svc(io);
  auto op = [&] {
    auto pipeline = sturdy::asio::compose(
        sturdy::asio::retry_layer<policy_type, asio_virtual_timer>(constant(3, 10ms)),
        sturdy::asio::breaker_layer{*breaker});
    return pipeline.async_run(call_context{}, svc.maker(), net::deferred);
  }();  // the pipeline object is gone
  completion done;
  std::move(op)(recorder(io, done));
  run_for(io, 200ms);
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{60ms}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->value(), 42);
}

// async_retry's own overload: the caller passes what sits inside the
// attempt by shared ownership; the call holds it until it completes.
TEST_F(AsioRetry, AnExplicitRetryAfterSourceIsHonoured) {
  std::shared_ptr<breaker_t> breaker = open_breaker(50ms);
  breaker_t* const b = breaker.get();
  const std::weak_ptr<breaker_t> watch = breaker;
  service svc(io);
  completion done;
  sturdy::asio::async_retry<asio_virtual_timer>(
      constant(3, 10ms), call_context{}, std::move(breaker),
      [&svc, b](const call_context& c) {
        return sturdy::asio::breaker_layer{*b}.async_run(c, svc.maker(), net::deferred);
      },
      recorder(io, done));
  EXPECT_FALSE(watch.expired()) << "the call must own its retry_after source";
  run_for(io, 200ms);
  EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{60ms}));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->value(), 42);
  EXPECT_TRUE(watch.expired()) << "released when the call completed";
}

// --- cancellation -------------------------------------------------------------

TEST_P(AsioRetryDriver, CancelledBeforeTheFirstStepAttemptsNothing) {
  service svc(io);
  const auto policy = constant(3, 10ms);
  completion done;
  cancellable c;
  std::weak_ptr<int> alive;
  {
    auto sentinel = std::make_shared<int>(0);
    alive = sentinel;
    auto make = [&svc, sentinel](const call_context& ctx) { return svc.call(ctx, net::deferred); };
    // Coroutine modes: the caller's co_spawn delivers a signal through its
    // executor, so cancel the caller while it waits before async_retry;
    // its cancellation state remembers the signal.
    gate_ = GetParam() != driver::callback;
    start(policy, make, done, &c);
  }
  if (gate_) io.poll();                             // the caller waits at its gate
  c.signal.emit(net::cancellation_type::terminal);  // before any step of async_retry ran
  run_for(io, 50ms);
  EXPECT_TRUE(svc.called_at.empty());
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->error(), errc::cancelled);
  EXPECT_TRUE(alive.expired());  // the operation's state is gone
}

TEST_P(AsioRetryDriver, AFiredContextTokenAttemptsNothing) {
  service svc(io);
  const auto policy = constant(3, 10ms);
  sturdy::cancel_source stop;
  stop.request_stop();
  completion done;
  start(policy, call_context{.token = stop.token()}, svc.maker(), done);
  run_for(io, 50ms);
  EXPECT_TRUE(svc.called_at.empty());
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->error(), errc::cancelled);
}

TEST_P(AsioRetryDriver, CancelDuringAnAttemptReachesItAndIsNotAFailure) {
  sturdy::token_bucket_budget budget({.max_tokens = 10, .token_ratio = 1});
  service svc(io, 1s);
  const auto policy = constant(3, 10ms, budget);
  completion done;
  cancellable c;
  const std::uint32_t tokens_before = budget.milli_tokens();
  start(policy, svc.maker(), done, &c);
  run_for(io, 30ms);
  c.signal.emit(net::cancellation_type::terminal);
  run_for(io, 10ms);
  EXPECT_EQ(svc.cancelled, 1);
  EXPECT_EQ(svc.called_at.size(), 1u);
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.at, 30ms);
  EXPECT_EQ(done.value->error(), std::errc::operation_canceled);  // the attempt's own, definitive
  EXPECT_EQ(budget.milli_tokens(), tokens_before);                // neutral: no token taken
  run_for(io, 1s);
  EXPECT_EQ(done.calls, 1);
}

TEST_P(AsioRetryDriver, CancelDuringBackoffStopsAtOnceAndRefundsTheTicket) {
  sturdy::token_bucket_budget budget({.max_tokens = 10, .token_ratio = 1});
  service svc(io, 0ms, {io_error, io_error});
  const std::uint32_t tokens_before = budget.milli_tokens();
  const auto policy = constant(3, 100ms, budget);
  completion done;
  cancellable c;
  start(policy, svc.maker(), done, &c);
  run_for(io, 40ms);
  c.signal.emit(net::cancellation_type::terminal);
  run_for(io, 1ms);
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.at, 40ms);
  EXPECT_EQ(done.value->error(), errc::cancelled);
  run_for(io, 1s);
  EXPECT_EQ(svc.called_at.size(), 1u);  // no attempt after the cancel
  EXPECT_EQ(done.calls, 1);
  EXPECT_EQ(budget.milli_tokens(), tokens_before - 1000);  // the one failure; the retry not charged
}

TEST_P(AsioRetryDriver, CancelThroughTheContextTokenDuringBackoff) {
  service svc(io, 0ms, {io_error, io_error});
  const auto policy = constant(3, 100ms);
  sturdy::cancel_source stop;
  completion done;
  start(policy, call_context{.token = stop.token()}, svc.maker(), done);
  run_for(io, 40ms);
  stop.request_stop();
  run_for(io, 1ms);
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->error(), errc::cancelled);
  EXPECT_EQ(svc.called_at.size(), 1u);
}

// --- one policy shared by every call --------------------------------------------

// A by-value listener with state of its own: each retry_scheduled appends
// the listener's own running count to `seen`.
struct counting_listener {
  std::vector<int>* seen;
  int n = 0;
  void operator()(const sturdy::retry_scheduled&) { seen->push_back(++n); }
  template <class Event>
  void operator()(const Event&) {}
};
using counted_policy =
    sturdy::retry_policy<sturdy::backoff, asio_virtual_clock_source, sturdy::thread_sleeper, counting_listener>;

counted_policy counted(std::vector<int>& seen) {
  return counted_policy(sturdy::retry_options{.max_attempts = 3, .backoff = sturdy::backoff::constant(10ms)},
                        asio_virtual_clock_source{}, sturdy::thread_sleeper{}, counting_listener{&seen});
}

// async_retry(shared_ptr<const Policy>, ...) and retry_layer{shared_ptr}: the
// calls run on the one policy, so its by-value listener counts all of them
// (1, 2, 3); a policy passed by reference is copied per call (1, 1, 1).
TEST_F(AsioRetry, ASharedPolicyIsOnePolicyAcrossCalls) {
  enum class how { callback, awaitable, layer, copied };
  for (const how mode : {how::callback, how::awaitable, how::layer, how::copied}) {
    SCOPED_TRACE(static_cast<int>(mode));
    std::vector<int> seen;
    const auto shared = std::make_shared<const counted_policy>(counted(seen));
    const counted_policy local = counted(seen);
    static_assert(std::is_same_v<decltype(sturdy::asio::retry_layer{shared}),
                                 sturdy::asio::retry_layer<sturdy::asio::shared_policy<counted_policy>>>);
    const auto pipeline = sturdy::asio::compose(sturdy::asio::retry_layer<sturdy::asio::shared_policy<counted_policy>,
                                                                          asio_virtual_timer>(shared));
    for (int call = 0; call < 3; ++call) {
      service svc(io, 0ms, {io_error});  // one failure, then a success: one retry per call
      completion done;
      switch (mode) {
        case how::callback:
          sturdy::asio::async_retry<asio_virtual_timer>(shared, svc.maker(), recorder(io, done));
          break;
        case how::awaitable:
          net::co_spawn(io,
                        await_into(sturdy::asio::async_retry<asio_virtual_timer>(shared, svc.maker(), net::use_awaitable),
                                   done),
                        net::detached);
          break;
        case how::layer:
          pipeline.async_run(call_context{}, svc.maker(), recorder(io, done));
          break;
        case how::copied:
          sturdy::asio::async_retry<asio_virtual_timer>(local, svc.maker(), recorder(io, done));
          break;
      }
      run_for(io, 50ms);
      ASSERT_EQ(done.calls, 1);
      EXPECT_EQ(done.value->value(), 42);
    }
    EXPECT_EQ(seen, mode == how::copied ? (std::vector<int>{1, 1, 1}) : (std::vector<int>{1, 2, 3}));
  }
}

TEST_F(AsioRetry, ANullSharedPolicyIsRefusedAndAttemptsNothing) {
  service svc(io);
  completion done;
  sturdy::asio::async_retry<asio_virtual_timer>(std::shared_ptr<const policy_type>(), svc.maker(),
                                                recorder(io, done));
  run_for(io, 1ms);
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.value->error(), errc::invalid_options);
  EXPECT_TRUE(svc.called_at.empty());
}

// --- the io_context destroyed or shut down mid-backoff ----------------------------

// Awaits async_retry on the coroutine driver (a deferred attempt); records
// the result (never reached here: the io_context goes first).
template <class Policy, class Maker>
net::awaitable<void> retry_into(Policy policy, Maker make, completion& done) {
  sturdy::result<int> r = co_await sturdy::asio::async_retry<asio_virtual_timer>(policy, std::move(make), net::use_awaitable);
  ++done.calls;
  done.value.emplace(std::move(r));
}

// An io_context whose shutdown() (protected in Asio) the test can call.
struct shutdownable_io_context : net::io_context {
  using net::io_context::shutdown;
};

// The handlers are destroyed without running, and with them the retry's
// state: the ticket it took from the budget for the retry that never runs
// is refunded, as a cancelled wait's is (retry_policy::abandon). No
// completion, no event.
TEST(AsioRetryTeardown, DestroyingTheIoContextMidBackoffRefundsTheTicket) {
  for (const bool coroutine : {false, true}) {
    for (const bool shutdown_only : {false, true}) {
      SCOPED_TRACE(std::string(coroutine ? "coroutine driver" : "retry_op") +
                   (shutdown_only ? ", shutdown()" : ", destroyed"));
      asio_virtual_clock::reset();
      // A budget that charges each admitted retry (and takes back a refund).
      sturdy::ratio_budget<asio_virtual_clock_source> budget({.ratio = 0.5, .window = 10s});
      sturdy::testing::recording_listener listener;
      const sturdy::retry_policy<sturdy::backoff, asio_virtual_clock_source, sturdy::thread_sleeper,
                                 sturdy::testing::recording_listener>
          policy(sturdy::retry_options{.max_attempts = 3, .backoff = sturdy::backoff::constant(100ms), .budget = budget},
                 asio_virtual_clock_source{}, sturdy::thread_sleeper{}, listener);
      completion done;
      std::weak_ptr<int> alive;
      {
        auto io = std::make_unique<shutdownable_io_context>();
        // The dependency's timer belongs to *io: it goes first (below); the
        // waiting retry never calls it again.
        auto svc = std::make_unique<service>(*io, 0ms, std::vector<std::error_code>{io_error, io_error});
        auto sentinel = std::make_shared<int>(0);
        alive = sentinel;
        auto make = [s = svc.get(), sentinel](const call_context& c) { return s->call(c, net::deferred); };
        if (coroutine) {
          net::co_spawn(*io, retry_into(policy, std::move(make), done), net::detached);
        } else {
          sturdy::asio::async_retry<asio_virtual_timer>(policy, std::move(make), recorder(*io, done));
        }
        sentinel.reset();
        run_for(*io, 40ms);  // attempt 1 failed at 0 ms; the retry waits until 100 ms with its ticket
        ASSERT_EQ(svc->called_at.size(), 1u);
        EXPECT_EQ(budget.requests_in_window(), 1u);
        EXPECT_EQ(budget.retries_in_window(), 1u);  // the retry's ticket is out
        listener.clear();
        svc.reset();
        if (shutdown_only) {
          io->shutdown();  // the handlers go now; the io_context object stays until the scope ends
          EXPECT_EQ(budget.retries_in_window(), 0u);
        }
        io.reset();
      }
      EXPECT_EQ(done.calls, 0);                         // handlers destroyed without running
      EXPECT_TRUE(alive.expired());                     // the operation's state is gone
      EXPECT_EQ(budget.requests_in_window(), 1u);      // the first attempt counted
      EXPECT_EQ(budget.retries_in_window(), 0u);       // the retry's ticket came back
      EXPECT_EQ(listener.size(), 0u);                   // no event emitted during teardown
    }
  }
}

// --- allocation ---------------------------------------------------------------

TEST_P(AsioRetryDriver, SteadyStateRetriesAllocateNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not linked (TSan)";
  service svc(io, 1ms, std::vector<std::error_code>(40, io_error));
  const auto policy = constant(50, 10ms);
  completion done;
  // Warm up Asio's per-thread recycling caches with one whole call.
  start(policy, svc.maker(), done);
  run_for(io, 2s);
  ASSERT_EQ(done.calls, 1);
  svc.called_at.clear();
  svc.called_at.reserve(64);  // the test's own bookkeeping allocates nothing below
  svc.attempt_numbers.clear();
  svc.attempt_numbers.reserve(64);
  svc.failures.assign(40, io_error);
  done = completion{};
  sturdy::testing::allocation_scope first;
  start(policy, svc.maker(), done);
  run_for(io, 25ms);  // the first attempts and waits
  const std::uint64_t first_allocations = first.allocations();
  sturdy::testing::allocation_scope steady;
  run_for(io, 2s);  // 38 more retries: timer waits and attempts
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(svc.called_at.size(), 41u);
  EXPECT_EQ(steady.allocations(), 0u);
  // The first operation (measured: 4): its state block (one make_shared),
  // its strand's implementation, and Asio's first posts of the call (the
  // test's service allocates nothing).
  EXPECT_LE(first_allocations, 4u);
  std::printf("first call allocated %llu block(s)\n", static_cast<unsigned long long>(first_allocations));
}

// --- the coroutine driver (use_awaitable) -------------------------------------

// With Asio's default throw_if_cancelled (true), a cancel during the backoff
// or during an attempt still returns async_retry's result to the caller:
// the driver never co_awaits once the caller's cancellation state is set.
TEST_F(AsioRetry, CoroutineDriverNeverThrowsOnCancellation) {
  for (const sturdy::duration cancel_at : {sturdy::duration(5ms), sturdy::duration(40ms)}) {
    asio_virtual_clock::reset();
    service svc(io, 10ms, {io_error, io_error});  // attempt 0..10, backoff 10..110
    const auto policy = constant(3, 100ms);
    completion done;
    bool threw = false;
    cancellable c;
    net::co_spawn(
        io,
        [&]() -> net::awaitable<void> {
          try {
            sturdy::result<int> r = co_await sturdy::asio::async_retry<asio_virtual_timer>(
                policy, awaitable_attempt<decltype(svc.maker())>{svc.maker()}, net::use_awaitable);
            ++done.calls;
            done.at = vnow();
            done.value.emplace(std::move(r));
          } catch (const std::exception&) {
            threw = true;
          }
        },
        net::bind_cancellation_slot(c.signal.slot(), net::detached));
    run_for(io, cancel_at);
    c.signal.emit(net::cancellation_type::terminal);
    run_for(io, 1s);
    EXPECT_FALSE(threw);
    ASSERT_EQ(done.calls, 1);
    EXPECT_EQ(done.at, cancel_at);
    EXPECT_EQ(svc.called_at.size(), 1u);
    if (cancel_at == 5ms) {
      EXPECT_EQ(done.value->error(), std::errc::operation_canceled);  // the attempt's own
    } else {
      EXPECT_EQ(done.value->error(), errc::cancelled);  // during the backoff
    }
  }
}

// An exception escaping an awaitable attempt is a failure (retried); when
// the loop stops on it, the result is std::errc::state_not_recoverable. Both
// drivers.
struct throwing_attempt {
  int* calls;
  int throw_first;
  net::awaitable<sturdy::result<int>> operator()(const call_context&) const {
    if (++*calls <= throw_first) throw std::runtime_error("attempt failed");
    co_return 7;
  }
};

TEST_F(AsioRetry, AnExceptionFromAnAwaitableAttemptIsAFailure) {
  for (const bool coroutine : {false, true}) {
    for (const int throw_first : {1, 3}) {
      asio_virtual_clock::reset();
      int calls = 0;
      completion done;
      const auto policy = constant(3, 10ms);
      if (coroutine) {
        net::co_spawn(
            io,
            [&]() -> net::awaitable<void> {
              sturdy::result<int> r = co_await sturdy::asio::async_retry<asio_virtual_timer>(
                  policy, throwing_attempt{&calls, throw_first}, net::use_awaitable);
              ++done.calls;
              done.value.emplace(std::move(r));
            },
            net::detached);
      } else {
        sturdy::asio::async_retry<asio_virtual_timer>(policy, throwing_attempt{&calls, throw_first},
                                                      recorder(io, done));
      }
      run_for(io, 100ms);
      ASSERT_EQ(done.calls, 1) << coroutine;
      if (throw_first == 1) {
        EXPECT_EQ(calls, 2) << coroutine;
        EXPECT_EQ(done.value->value(), 7) << coroutine;
      } else {
        EXPECT_EQ(calls, 3) << coroutine;
        EXPECT_EQ(done.value->error(), std::errc::state_not_recoverable) << coroutine;
      }
    }
  }
}

// A maker (not a coroutine) that throws synchronously is an attempt that
// threw, as with the blocking execute: a failure, retried; on exhaustion the
// result is std::errc::state_not_recoverable. Exactly one completion.
TEST_P(AsioRetryDriver, AMakerThatThrowsSynchronouslyIsAFailedAttempt) {
  for (const int throw_first : {1, 3}) {
    asio_virtual_clock::reset();
    service svc(io);
    int made = 0;
    completion done;
    start(constant(3, 10ms),
          [&](const call_context& c) {
            if (++made <= throw_first) throw std::runtime_error("maker failed");
            return svc.call(c, net::deferred);
          },
          done);
    EXPECT_NO_THROW(run_for(io, 100ms)) << throw_first;
    ASSERT_EQ(done.calls, 1) << throw_first;
    if (throw_first == 1) {
      EXPECT_EQ(made, 2);
      EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{10ms}));
      EXPECT_EQ(done.value->value(), 42);
    } else {
      EXPECT_EQ(made, 3);
      EXPECT_TRUE(svc.called_at.empty());
      EXPECT_EQ(done.value->error(), std::errc::state_not_recoverable);
    }
  }
}

// A hint carried by a thrown retry_after_error is read, as by the blocking
// driver: a 500 ms delay hint replaces the 10 ms backoff; do_not_retry stops.
TEST_P(AsioRetryDriver, AHintCarriedByAThrownRetryAfterErrorIsHonoured) {
  for (const bool stop : {false, true}) {
    asio_virtual_clock::reset();
    service svc(io);
    int made = 0;
    completion done;
    const sturdy::retry_hint hint = stop ? sturdy::retry_hint::do_not_retry() : sturdy::retry_hint::after(500ms);
    start(constant(3, 10ms),
          [&](const call_context& c) {
            if (++made == 1) throw sturdy::retry_after_error(hint);
            return svc.call(c, net::deferred);
          },
          done);
    EXPECT_NO_THROW(run_for(io, 1s)) << stop;
    ASSERT_EQ(done.calls, 1) << stop;
    if (stop) {
      EXPECT_EQ(made, 1);
      EXPECT_FALSE(done.value->has_value());
      EXPECT_EQ(done.at, 0ms);
    } else {
      EXPECT_EQ(made, 2);
      EXPECT_EQ(svc.called_at, (std::vector<sturdy::duration>{500ms}));
      EXPECT_EQ(done.value->value(), 42);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, AsioRetryDriver,
                         ::testing::Values(driver::callback, driver::awaitable_deferred, driver::awaitable_attempt),
                         driver_name);

}  // namespace

// --- outstanding work on the handler's executor ----------------------------

// The handler's executor is an io_context's (the strand over the concrete
// type): the operation tracks work on it while the attempt runs elsewhere.
TEST(AsioRetryWork, KeepsWorkOnTheHandlersExecutorWhileTheAttemptRunsElsewhere) {
  const auto w = sturdy::testing::run_with_attempt_on_other_io_context(
      [](net::io_context& a, sturdy::testing::other_io_context_attempt attempt, bool& called) {
        sturdy::asio::async_retry<asio_virtual_timer>(constant(1, 0ms), attempt,
                                                      net::bind_executor(a, [&called](sturdy::result<void> r) {
                                                        EXPECT_TRUE(r.has_value());
                                                        called = true;
                                                      }));
      });
  EXPECT_TRUE(w.called_before_run_returned) << "io_context::run() returned while the operation was pending";
  EXPECT_TRUE(w.called);
}
