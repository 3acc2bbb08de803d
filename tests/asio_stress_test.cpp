// Concurrency tests of sturdy::asio (run under TSan): limiters, rate
// limiters and hedges shared by a multi-threaded io_context, with
// cancellations racing hand-overs and completions. Asserts: every handler
// runs exactly once, no permit or queue slot leaks. Outcomes depend on the
// scheduling; the invariants do not.

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
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "sturdy/asio/admission.hpp"
#include "sturdy/asio/hedge.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/rate_limiter.hpp"
#include "sturdy/retry_budget.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;

void run_threads(net::io_context& io, int n) {
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();
}

struct op_slot {
  explicit op_slot(net::io_context& io) : strand(net::make_strand(io)) {}
  net::strand<net::io_context::executor_type> strand;
  net::cancellation_signal signal;
  std::atomic<int> calls{0};
};

TEST(AsioStress, SharedConcurrencyLimiterWithCancellations) {
  constexpr int ops = 2000;
  net::io_context io;
  sturdy::concurrency_limiter<> limiter({.max_queue = ops, .max_wait = 10s}, sturdy::fixed_limit({.limit = 3}));
  std::vector<std::unique_ptr<op_slot>> slots;
  for (int i = 0; i < ops; ++i) slots.push_back(std::make_unique<op_slot>(io));
  std::atomic<int> granted{0};
  std::atomic<int> cancelled{0};
  std::mt19937 rng(42);
  for (int i = 0; i < ops; ++i) {
    op_slot& s = *slots[static_cast<std::size_t>(i)];
    const bool cancel = rng() % 3 == 0;
    net::post(s.strand, [&, cancel] {
      sturdy::asio::async_acquire(
          limiter, 10s,
          net::bind_cancellation_slot(
              s.signal.slot(), net::bind_executor(s.strand, [&](sturdy::result<sturdy::concurrency_limiter<>::permit> p) {
                s.calls.fetch_add(1);
                if (p) {
                  granted.fetch_add(1);
                  // Hold the permit across one more trip through the io_context.
                  auto held = std::make_shared<sturdy::concurrency_limiter<>::permit>(std::move(p).value());
                  net::post(s.strand, [held] { held->record_success(); });
                } else {
                  EXPECT_EQ(p.error(), sturdy::errc::cancelled);
                  cancelled.fetch_add(1);
                }
              })));
      if (cancel) net::post(s.strand, [&s] { s.signal.emit(net::cancellation_type::terminal); });
    });
  }
  run_threads(io, 4);
  for (auto& s : slots) EXPECT_EQ(s->calls.load(), 1);
  EXPECT_EQ(granted.load() + cancelled.load(), ops);
  EXPECT_GT(granted.load(), 0);
  EXPECT_EQ(limiter.in_flight(), 0u);
  EXPECT_EQ(limiter.queued(), 0u);
}

TEST(AsioStress, SharedRateLimiterWithCancellations) {
  constexpr int ops = 1000;
  net::io_context io;
  sturdy::rate_limiter<> rl({.rate = 1, .period = 20us, .burst = 4});
  std::vector<std::unique_ptr<op_slot>> slots;
  for (int i = 0; i < ops; ++i) slots.push_back(std::make_unique<op_slot>(io));
  std::atomic<int> allowed{0};
  std::mt19937 rng(7);
  for (int i = 0; i < ops; ++i) {
    op_slot& s = *slots[static_cast<std::size_t>(i)];
    const bool cancel = rng() % 4 == 0;
    net::post(s.strand, [&, cancel] {
      sturdy::asio::async_acquire(rl, 1s,
                                  net::bind_cancellation_slot(s.signal.slot(),
                                                              net::bind_executor(s.strand, [&](sturdy::rate_limit_decision d) {
                                                                s.calls.fetch_add(1);
                                                                if (d.allowed) allowed.fetch_add(1);
                                                              })));
      if (cancel) net::post(s.strand, [&s] { s.signal.emit(net::cancellation_type::total); });
    });
  }
  run_threads(io, 4);
  for (auto& s : slots) EXPECT_EQ(s->calls.load(), 1);
  EXPECT_GT(allowed.load(), 0);
}

TEST(AsioStress, HedgesSharingAHistogramAndABudget) {
  constexpr int calls = 400;
  net::io_context io;
  sturdy::token_bucket_budget budget({.max_tokens = 20, .token_ratio = 0.5});
  sturdy::asio::hedge_options opts{.max_attempts = 3, .delay = 200us, .budget = budget};
  opts.latencies = std::make_shared<sturdy::asio::latency_histogram>(100);
  opts.min_samples = 20;
  std::vector<std::unique_ptr<op_slot>> slots;
  for (int i = 0; i < calls; ++i) slots.push_back(std::make_unique<op_slot>(io));
  std::atomic<int> attempts_started{0};
  std::atomic<int> attempts_done{0};
  auto make = [&](const sturdy::asio::hedge_attempt& a) {
    attempts_started.fetch_add(1);
    const auto wait = std::chrono::microseconds((a.key * 7919 + a.index * 104729) % 900);
    auto timer = std::make_shared<net::steady_timer>(io, wait);
    return timer->async_wait(net::deferred([timer, &attempts_done](boost::system::error_code ec) {
      attempts_done.fetch_add(1);
      return net::deferred.values(ec);
    }));
  };
  std::mt19937 rng(3);
  for (int i = 0; i < calls; ++i) {
    op_slot& s = *slots[static_cast<std::size_t>(i)];
    const bool cancel = rng() % 5 == 0;
    net::post(s.strand, [&, cancel] {
      sturdy::asio::async_hedge(opts, make,
                                net::bind_cancellation_slot(s.signal.slot(),
                                                            net::bind_executor(s.strand, [&](sturdy::result<void>) {
                                                              s.calls.fetch_add(1);
                                                            })));
      if (cancel) net::post(s.strand, [&s] { s.signal.emit(net::cancellation_type::terminal); });
    });
  }
  run_threads(io, 4);
  for (auto& s : slots) EXPECT_EQ(s->calls.load(), 1);
  EXPECT_EQ(attempts_started.load(), attempts_done.load());  // every loser returned
  EXPECT_GE(attempts_started.load(), calls * 8 / 10);
  EXPECT_GT(opts.latencies->samples(), 0u);
}

}  // namespace
