// Concurrency tests of sturdy/asio/timeout.hpp and compose.hpp (run under
// TSan). First: timeouts on
// a multi-threaded io_context, the attempt's completion racing the timer,
// the caller's Asio cancellation and the caller's sturdy token (fired from
// another thread). Asserts: every handler runs exactly once, with one of
// the outcomes the rules allow; every operation's state is released.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "sturdy/asio/compose.hpp"
#include "sturdy/asio/timeout.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/concurrency_limiter.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;

struct call_slot {
  explicit call_slot(net::io_context& io) : strand(net::make_strand(io)), attempt_timer(io) {}
  net::strand<net::io_context::executor_type> strand;
  net::steady_timer attempt_timer;
  net::cancellation_signal signal;
  sturdy::cancel_source caller;
  std::atomic<int> calls{0};
};

TEST(AsioTimeoutStress, AttemptsRacingTimersAndCancellations) {
  constexpr int ops = 1500;
  net::io_context io;
  std::vector<std::unique_ptr<call_slot>> slots;
  for (int i = 0; i < ops; ++i) slots.push_back(std::make_unique<call_slot>(io));
  std::atomic<int> ok{0}, timed_out{0}, cancelled{0}, other{0};
  auto sentinel = std::make_shared<int>(0);
  std::mt19937 rng(1234);
  for (int i = 0; i < ops; ++i) {
    call_slot& s = *slots[static_cast<std::size_t>(i)];
    const auto attempt = std::chrono::microseconds(rng() % 400);
    const auto limit = std::chrono::microseconds(rng() % 400);
    const unsigned what = rng() % 4;  // 0: nothing, 1: Asio cancel, 2: sturdy token from a thread, 3: abandon
    net::post(s.strand, [&, attempt, limit, what, keep = sentinel] {
      sturdy::call_context ctx;
      ctx.token = s.caller.token();
      sturdy::asio::async_timeout_options o{.timeout = limit};
      if (what == 3) o.abandon_after = 50us;
      sturdy::asio::async_timeout(
          o, ctx,
          [&s, attempt, keep](const sturdy::call_context&) {
            s.attempt_timer.expires_after(attempt);
            return s.attempt_timer.async_wait(net::deferred);
          },
          net::bind_cancellation_slot(s.signal.slot(), net::bind_executor(s.strand, [&s, &ok, &timed_out, &cancelled,
                                                                                     &other](sturdy::result<void> r) {
                                        s.calls.fetch_add(1);
                                        if (r) {
                                          ok.fetch_add(1);
                                        } else if (r.error() == sturdy::errc::deadline_exceeded) {
                                          timed_out.fetch_add(1);
                                        } else if (r.error() == sturdy::errc::cancelled) {
                                          cancelled.fetch_add(1);
                                        } else {
                                          other.fetch_add(1);
                                        }
                                      })));
      if (what == 1) net::post(s.strand, [&s] { s.signal.emit(net::cancellation_type::terminal); });
    });
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&] { io.run(); });
  // Fire some callers' sturdy tokens from this thread, racing the operations.
  std::mt19937 pick(99);
  for (int i = 0; i < ops; ++i) {
    if (pick() % 4 == 2) slots[static_cast<std::size_t>(i)]->caller.request_stop();
  }
  for (auto& t : threads) t.join();
  for (auto& s : slots) EXPECT_EQ(s->calls.load(), 1);
  EXPECT_EQ(ok.load() + timed_out.load() + cancelled.load(), ops);
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(timed_out.load(), 0);
  EXPECT_EQ(sentinel.use_count(), 1);  // every operation's state released
}

// A composed pipeline (overall timeout, breaker, limiter, per-attempt
// timeout) shared by calls on three threads, with caller cancellations:
// every handler once; the limiter ends with nothing in flight or queued.
TEST(AsioTimeoutStress, ComposedPipelineSharedAcrossThreads) {
  constexpr int ops = 1000;
  net::io_context io;
  sturdy::concurrency_limiter<> limiter({.max_queue = ops}, sturdy::fixed_limit({.limit = 4}));
  sturdy::circuit_breaker<> breaker(sturdy::circuit_breaker_options{});
  auto pipeline = sturdy::asio::compose(
      sturdy::asio::timeout_layer<>{{.timeout = 2ms}}, sturdy::asio::breaker_layer{breaker},
      sturdy::asio::limiter_layer{limiter, std::chrono::nanoseconds(1s)},
      sturdy::asio::timeout_layer<>{{.timeout = 300us}});
  std::vector<std::unique_ptr<call_slot>> slots;
  for (int i = 0; i < ops; ++i) slots.push_back(std::make_unique<call_slot>(io));
  std::atomic<int> answered{0};
  std::mt19937 rng(77);
  for (int i = 0; i < ops; ++i) {
    call_slot& s = *slots[static_cast<std::size_t>(i)];
    const auto attempt = std::chrono::microseconds(rng() % 500);
    const bool cancel = rng() % 4 == 0;
    net::post(s.strand, [&, attempt, cancel] {
      pipeline.async_run(
          [&s, attempt] {
            s.attempt_timer.expires_after(attempt);
            return s.attempt_timer.async_wait(net::deferred);
          },
          net::bind_cancellation_slot(s.signal.slot(), net::bind_executor(s.strand, [&s, &answered](sturdy::result<void>) {
                                        s.calls.fetch_add(1);
                                        answered.fetch_add(1);
                                      })));
      if (cancel) net::post(s.strand, [&s] { s.signal.emit(net::cancellation_type::terminal); });
    });
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();
  for (auto& s : slots) EXPECT_EQ(s->calls.load(), 1);
  EXPECT_EQ(answered.load(), ops);
  EXPECT_EQ(limiter.in_flight(), 0u);
  EXPECT_EQ(limiter.queued(), 0u);
}

}  // namespace
